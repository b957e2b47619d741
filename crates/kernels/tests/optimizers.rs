//! The optimizer steps against f64 references written from their papers'
//! definitions (issue 16: no test covered them): SGD with momentum and
//! Nesterov momentum in PyTorch's form, Adam (Kingma & Ba 2015, ε outside
//! the square root of the bias-corrected second moment) with L2 weight
//! decay through the gradient, and AdamW (Loshchilov & Hutter 2019) with
//! decoupled decay. Five steps on vectors longer than one parallel chunk
//! (2^14) plus a SIMD tail, on every SIMD path this CPU can run.

mod common;
use common::data;
use kernels::optim::{adam_step, sgd_step, AdamStep};
use kernels::{with_path, SimdPath};

const N: usize = (1 << 14) + 37;

/// Parameters are O(1) and move by O(lr) per step: an element near 0 after
/// a few steps carries the f32 rounding of O(1) values, so the error is
/// measured against max(|want|, 1), as the other kernel tests do. A wrong
/// bias correction, decay or momentum moves elements by O(lr) = 1e-2.
fn assert_close(name: &str, got: &[f32], want: &[f64]) {
    for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs() / w.abs().max(1.0);
        assert!(err < 1e-6, "{name}: element {k}: {g} vs {w}");
    }
}

/// Adam or AdamW in f64: returns the parameters after `steps` steps with
/// gradients `grads[t]`.
fn adam_reference(p0: &[f32], grads: &[Vec<f32>], h: AdamStep) -> Vec<f64> {
    let (b1, b2, eps, lr, wd) = (
        h.beta1 as f64,
        h.beta2 as f64,
        h.eps as f64,
        h.lr as f64,
        h.weight_decay as f64,
    );
    let mut p: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
    let mut m = vec![0f64; p.len()];
    let mut v = vec![0f64; p.len()];
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        for i in 0..p.len() {
            let mut gi = g[i] as f64;
            if h.decoupled {
                // AdamW: θ ← θ − lr·λ·θ, then the Adam step on the plain gradient.
                p[i] -= lr * wd * p[i];
            } else {
                // Adam with L2: the decay enters the gradient.
                gi += wd * p[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let mh = m[i] / (1.0 - b1.powi(t));
            let vh = v[i] / (1.0 - b2.powi(t));
            p[i] -= lr * mh / (vh.sqrt() + eps);
        }
    }
    p
}

fn paths() -> Vec<SimdPath> {
    [SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512]
        .into_iter()
        .filter(|p| p.is_available())
        .collect()
}

#[test]
fn adam_and_adamw_match_their_definitions_on_every_path() {
    let p0 = data(N, 1);
    let grads: Vec<Vec<f32>> = (0..5).map(|t| data(N, 10 + t)).collect();
    for path in paths() {
        for (decoupled, wd) in [(false, 0.0), (false, 0.01), (true, 0.01)] {
            let mut p = p0.clone();
            let (mut m, mut v) = (vec![0f32; N], vec![0f32; N]);
            for (t, g) in grads.iter().enumerate() {
                let h = AdamStep {
                    lr: 1e-2,
                    beta1: 0.9,
                    beta2: 0.999,
                    eps: 1e-7,
                    weight_decay: wd,
                    decoupled,
                    step: t as u32 + 1,
                };
                with_path(path, || adam_step(h, &mut p, g, &mut m, &mut v).unwrap());
            }
            let h = AdamStep {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-7,
                weight_decay: wd,
                decoupled,
                step: 0,
            };
            assert_close(
                &format!("{path} adam decoupled={decoupled} wd={wd}"),
                &p,
                &adam_reference(&p0, &grads, h),
            );
        }
    }
}

#[test]
fn sgd_momentum_and_nesterov_match_their_definitions() {
    let p0 = data(N, 2);
    let grads: Vec<Vec<f32>> = (0..5).map(|t| data(N, 20 + t)).collect();
    for (momentum, nesterov, wd) in [(0.0, false, 0.0), (0.9, false, 0.0), (0.9, true, 1e-3)] {
        let mut p = p0.clone();
        let mut vel = vec![0f32; N];
        for g in &grads {
            sgd_step(0.05, momentum, nesterov, wd, &mut p, g, &mut vel).unwrap();
        }
        // PyTorch's SGD: g ← g + λθ; b ← μb + g; step = g + μb (Nesterov) or b.
        let (mu, lr, wd) = (momentum as f64, 0.05f64, wd as f64);
        let mut want: Vec<f64> = p0.iter().map(|&x| x as f64).collect();
        let mut b = vec![0f64; N];
        for g in &grads {
            for i in 0..N {
                let gi = g[i] as f64 + wd * want[i];
                b[i] = mu * b[i] + gi;
                let step = if nesterov { gi + mu * b[i] } else { b[i] };
                want[i] -= lr * step;
            }
        }
        assert_close(&format!("sgd μ={momentum} nesterov={nesterov}"), &p, &want);
    }
}
