//! Every backward pass against central finite differences computed in f64.
//!
//! For each kernel f, the scalar L = Σ r ⊙ f(θ) with a fixed random r has
//! gradient backward(dy = r). The finite differences (L(θ + h) − L(θ − h)) / 2h
//! use f64 definitions of the forward pass (the `reference` module, or the
//! formula written out here) with h = 1e-5, so they are accurate to ~1e-9;
//! the f32 kernels must agree to 1e-4 relative. Every test runs on every
//! SIMD path this CPU has (scalar, AVX2, AVX-512), each in turn.

mod common;
use common::{data, f64s};
use kernels::conv1d::{conv1d_backward, Conv1dParams, Padding};
use kernels::conv2d::{conv2d_backward, Conv2dParams};
use kernels::dense::dense_backward;
use kernels::norm::{batchnorm_backward, batchnorm_forward_train};
use kernels::pool::{self, Pool1dParams, Pool2dParams, PoolKind};
use kernels::{reference, softmax_cross_entropy, with_path, Activation, SimdPath};

/// Runs `body` on every SIMD path this CPU has, naming the path on failure.
fn on_every_path(body: impl Fn()) {
    for path in SimdPath::available() {
        eprintln!("SIMD path {path}");
        with_path(path, &body);
    }
}

/// Checks `grad` against central differences of `loss` around `theta`.
fn check(name: &str, theta: &[f32], grad: &[f32], loss: impl Fn(&[f64]) -> f64) {
    let h = 1e-5;
    let base = f64s(theta);
    let mut worst = 0f64;
    let scale = grad
        .iter()
        .fold(0f64, |m, g| m.max(g.abs() as f64))
        .max(1e-3);
    for i in 0..theta.len() {
        let mut p = base.clone();
        p[i] += h;
        let lp = loss(&p);
        p[i] -= 2.0 * h;
        let lm = loss(&p);
        let fd = (lp - lm) / (2.0 * h);
        worst = worst.max((fd - grad[i] as f64).abs() / scale);
    }
    assert!(worst <= 1e-4, "{name}: worst relative difference {worst}");
}

fn dot(a: &[f64], r: &[f32]) -> f64 {
    a.iter().zip(r).map(|(x, y)| x * *y as f64).sum()
}

#[test]
fn conv1d_gradients() {
    on_every_path(|| {
        for p in [
            Conv1dParams::new(2, 3, 3),
            Conv1dParams::new(2, 4, 2)
                .stride(2)
                .dilation(2)
                .padding(Padding::Same),
            Conv1dParams::new(4, 4, 3)
                .groups(2)
                .padding(Padding::Explicit(2, 1)),
            Conv1dParams::new(3, 3, 4).groups(3).padding(Padding::Same),
        ] {
            let (batch, l) = (2, 11);
            let lo = p.l_out(l);
            let x = data(batch * p.c_in * l, 1);
            let w = data(p.weight_len(), 2);
            let b = data(p.c_out, 3);
            let r = data(batch * p.c_out * lo, 4);
            let (mut dx, mut dw, mut db) = (
                vec![0f32; x.len()],
                vec![0f32; w.len()],
                vec![0f32; b.len()],
            );
            conv1d_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &r,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid kernel parameters");
            let (xd, wd, bd) = (f64s(&x), f64s(&w), f64s(&b));
            check("conv1d dx", &x, &dx, |t| {
                dot(
                    &reference::conv1d_forward(&p, t, batch, l, &wd, Some(&bd)),
                    &r,
                )
            });
            check("conv1d dw", &w, &dw, |t| {
                dot(
                    &reference::conv1d_forward(&p, &xd, batch, l, t, Some(&bd)),
                    &r,
                )
            });
            check("conv1d db", &b, &db, |t| {
                dot(
                    &reference::conv1d_forward(&p, &xd, batch, l, &wd, Some(t)),
                    &r,
                )
            });
        }
    });
}

#[test]
fn conv2d_gradients() {
    on_every_path(|| {
        for p in [
            Conv2dParams::new(2, 3, 3).padding(Padding::Same),
            Conv2dParams::new(2, 2, 2).stride(2).dilation(1).groups(2),
        ] {
            let (batch, h, w_) = (2, 6, 5);
            let (ho, wo) = p.out_hw(h, w_);
            let x = data(batch * p.c_in * h * w_, 5);
            let w = data(p.weight_len(), 6);
            let b = data(p.c_out, 7);
            let r = data(batch * p.c_out * ho * wo, 8);
            let (mut dx, mut dw, mut db) = (
                vec![0f32; x.len()],
                vec![0f32; w.len()],
                vec![0f32; b.len()],
            );
            conv2d_backward(
                &p,
                &x,
                batch,
                h,
                w_,
                &w,
                &r,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid kernel parameters");
            let (xd, wd, bd) = (f64s(&x), f64s(&w), f64s(&b));
            check("conv2d dx", &x, &dx, |t| {
                dot(
                    &reference::conv2d_forward(&p, t, batch, h, w_, &wd, Some(&bd)),
                    &r,
                )
            });
            check("conv2d dw", &w, &dw, |t| {
                dot(
                    &reference::conv2d_forward(&p, &xd, batch, h, w_, t, Some(&bd)),
                    &r,
                )
            });
            check("conv2d db", &b, &db, |t| {
                dot(
                    &reference::conv2d_forward(&p, &xd, batch, h, w_, &wd, Some(t)),
                    &r,
                )
            });
        }
    });
}

#[test]
fn dense_gradients() {
    on_every_path(|| {
        let (batch, n_in, n_out) = (3, 37, 5);
        let x = data(batch * n_in, 9);
        let w = data(n_out * n_in, 10);
        let b = data(n_out, 11);
        let r = data(batch * n_out, 12);
        let (mut dx, mut dw, mut db) =
            (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; n_out]);
        dense_backward(
            &x,
            batch,
            n_in,
            &w,
            n_out,
            &r,
            Some(&mut dx),
            &mut dw,
            Some(&mut db),
        )
        .unwrap();
        let (xd, wd, bd) = (f64s(&x), f64s(&w), f64s(&b));
        check("dense dx", &x, &dx, |t| {
            dot(
                &reference::dense_forward(t, batch, n_in, &wd, n_out, Some(&bd)),
                &r,
            )
        });
        check("dense dw", &w, &dw, |t| {
            dot(
                &reference::dense_forward(&xd, batch, n_in, t, n_out, Some(&bd)),
                &r,
            )
        });
        check("dense db", &b, &db, |t| {
            dot(
                &reference::dense_forward(&xd, batch, n_in, &wd, n_out, Some(t)),
                &r,
            )
        });
    });
}

#[test]
fn pooling_gradients() {
    on_every_path(|| {
        for kind in [PoolKind::Max, PoolKind::Avg] {
            for p in [
                Pool1dParams::new(kind, 2),
                Pool1dParams {
                    kind,
                    size: 3,
                    stride: 2,
                    pad: 1,
                },
            ] {
                let (rows, l) = (3, 13);
                let x = data(rows * l, 13);
                let r = data(rows * p.l_out(l), 14);
                let mut dx = vec![0f32; x.len()];
                pool::pool1d_backward(&p, &x, rows, l, &r, &mut dx)
                    .expect("valid kernel parameters");
                check("pool1d", &x, &dx, |t| {
                    dot(&reference::pool1d_forward(&p, t, rows, l), &r)
                });
            }
            let p = Pool2dParams {
                kind,
                size: (2, 3),
                stride: (2, 2),
                pad: (1, 1),
            };
            let (planes, h, w) = (2, 5, 7);
            let (ho, wo) = p.out_hw(h, w);
            let x = data(planes * h * w, 15);
            let r = data(planes * ho * wo, 16);
            let mut dx = vec![0f32; x.len()];
            pool::pool2d_backward(&p, &x, planes, h, w, &r, &mut dx)
                .expect("valid kernel parameters");
            check("pool2d", &x, &dx, |t| {
                dot(&reference::pool2d_forward(&p, t, planes, h, w), &r)
            });

            let (rows, l) = (3, 9);
            let x = data(rows * l, 17);
            let r = data(rows, 18);
            let mut dx = vec![0f32; x.len()];
            pool::global_pool_backward(kind, &x, rows, l, &r, &mut dx).unwrap();
            check("global pool", &x, &dx, |t| {
                t.chunks(l)
                    .zip(&r)
                    .map(|(row, &rv)| {
                        let v = match kind {
                            PoolKind::Max => row.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            PoolKind::Avg => row.iter().sum::<f64>() / l as f64,
                        };
                        v * rv as f64
                    })
                    .sum()
            });
        }
    });
}

fn act64(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Linear => x,
        Activation::Relu => x.max(0.0),
        Activation::LeakyRelu(al) => {
            if x > 0.0 {
                x
            } else {
                al as f64 * x
            }
        }
        Activation::Elu(al) => {
            if x > 0.0 {
                x
            } else {
                al as f64 * (x.exp() - 1.0)
            }
        }
        Activation::Softplus => (1.0 + x.exp()).ln(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
    }
}

#[test]
fn activation_gradients() {
    on_every_path(|| {
        // Values away from the kinks at 0, where the derivative is not defined.
        let x: Vec<f32> = data(64, 19)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v } * 3.0)
            .collect();
        let r = data(64, 20);
        for a in [
            Activation::Linear,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Elu(1.0),
            Activation::Softplus,
            Activation::Tanh,
            Activation::Sigmoid,
        ] {
            let mut y = vec![0f32; 64];
            a.forward(&x, &mut y).unwrap();
            for (yv, xv) in y.iter().zip(&x) {
                assert!(
                    (*yv as f64 - act64(a, *xv as f64)).abs() < 1e-6 * (1.0 + yv.abs() as f64),
                    "{a:?} forward"
                );
            }
            let mut dx = vec![0f32; 64];
            a.backward(&x, &r, &mut dx).unwrap();
            check(&format!("{a:?}"), &x, &dx, |t| {
                t.iter()
                    .zip(&r)
                    .map(|(v, rv)| act64(a, *v) * *rv as f64)
                    .sum()
            });
        }
    });
}

#[test]
fn softmax_cross_entropy_gradient() {
    on_every_path(|| {
        let (batch, classes) = (4, 7);
        let z: Vec<f32> = data(batch * classes, 21).iter().map(|v| v * 4.0).collect();
        let labels = [0, 6, 3, 3];
        let (mut probs, mut dz) = (vec![0f32; z.len()], vec![0f32; z.len()]);
        let loss = softmax_cross_entropy(&z, batch, classes, &labels, &mut probs, &mut dz).unwrap();
        let ce = |t: &[f64]| {
            t.chunks(classes)
                .zip(&labels)
                .map(|(row, &lab)| {
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    s.ln() + m - row[lab]
                })
                .sum::<f64>()
                / batch as f64
        };
        assert!((loss as f64 - ce(&f64s(&z))).abs() < 1e-5);
        for row in probs.chunks(classes) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        check("softmax cross-entropy", &z, &dz, ce);
    });
}

#[test]
fn batchnorm_gradients() {
    on_every_path(|| {
        let (batch, channels, spatial) = (3, 2, 5);
        let eps = 1e-5f32;
        let x = data(batch * channels * spatial, 22);
        let gamma = vec![1.3f32, -0.7];
        let beta = vec![0.2f32, 0.5];
        let r = data(x.len(), 23);
        let (mut rm, mut rv) = (vec![0f32; channels], vec![1f32; channels]);
        let mut y = vec![0f32; x.len()];
        let cache = batchnorm_forward_train(
            &x, batch, channels, spatial, &gamma, &beta, eps, 0.1, &mut rm, &mut rv, &mut y,
        )
        .unwrap();
        let bn = |t: &[f64], g: &[f64], b: &[f64]| -> f64 {
            let mut l = 0.0;
            for c in 0..channels {
                let idx: Vec<usize> = (0..batch)
                    .flat_map(|bb| (0..spatial).map(move |s| (bb * channels + c) * spatial + s))
                    .collect();
                let n = idx.len() as f64;
                let mean = idx.iter().map(|&i| t[i]).sum::<f64>() / n;
                let var = idx.iter().map(|&i| (t[i] - mean).powi(2)).sum::<f64>() / n;
                for &i in &idx {
                    l += (g[c] * (t[i] - mean) / (var + eps as f64).sqrt() + b[c]) * r[i] as f64;
                }
            }
            l
        };
        let (mut dx, mut dg, mut db) = (
            vec![0f32; x.len()],
            vec![0f32; channels],
            vec![0f32; channels],
        );
        batchnorm_backward(
            &x, batch, channels, spatial, &gamma, &cache, &r, &mut dx, &mut dg, &mut db,
        )
        .unwrap();
        let (xd, gd, bd) = (f64s(&x), f64s(&gamma), f64s(&beta));
        check("batchnorm dx", &x, &dx, |t| bn(t, &gd, &bd));
        check("batchnorm dgamma", &gamma, &dg, |t| bn(&xd, t, &bd));
        check("batchnorm dbeta", &beta, &db, |t| bn(&xd, &gd, t));
        // Running statistics moved 10% of the way to the batch's, computed here
        // from the data (the variance unbiased, as PyTorch keeps it), starting
        // from mean 0 and variance 1, and twice over for the second step.
        let stats = |c: usize| {
            let v: Vec<f64> = (0..batch)
                .flat_map(|b| (0..spatial).map(move |s| (b * channels + c) * spatial + s))
                .map(|i| x[i] as f64)
                .collect();
            let n = v.len() as f64;
            let mean = v.iter().sum::<f64>() / n;
            let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (mean, var)
        };
        for c in 0..channels {
            let (mean, var) = stats(c);
            assert!((rm[c] as f64 - 0.1 * mean).abs() < 1e-6, "running mean {c}");
            assert!(
                (rv[c] as f64 - (0.9 + 0.1 * var)).abs() < 1e-6,
                "running var {c}"
            );
        }
        let mut y2 = vec![0f32; x.len()];
        batchnorm_forward_train(
            &x, batch, channels, spatial, &gamma, &beta, eps, 0.1, &mut rm, &mut rv, &mut y2,
        )
        .unwrap();
        for c in 0..channels {
            let (mean, var) = stats(c);
            assert!(
                (rm[c] as f64 - 0.19 * mean).abs() < 1e-6,
                "second step, mean {c}"
            );
            assert!(
                (rv[c] as f64 - (0.81 + 0.19 * var)).abs() < 1e-6,
                "second step, var {c}"
            );
        }
    });
}

#[test]
fn dropout_mask_is_seeded_and_scaled() {
    let mut a = vec![0f32; 10_000];
    let mut b = vec![0f32; 10_000];
    kernels::norm::dropout_mask(0.3, 42, &mut a).unwrap();
    kernels::norm::dropout_mask(0.3, 42, &mut b).unwrap();
    assert_eq!(a, b);
    let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / 1e4;
    assert!((dropped - 0.3).abs() < 0.02, "{dropped}");
    assert!(a.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    kernels::norm::dropout_mask(0.3, 43, &mut b).unwrap();
    assert_ne!(a, b);
}
