//! Optimizer steps over parameter tensors: SGD with momentum (and
//! Nesterov) and Adam/AdamW, split over threads and vectorized.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::error::{check_len, Result};
use crate::simd::SimdPath;

const CHUNK: usize = 1 << 14;

/// Adam's hyperparameters for one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: weight decay applied to the weights directly, not through the gradient.
    pub decoupled: bool,
    /// The step number, from 1 (for the bias corrections).
    pub step: u32,
}

struct AdamOp<'a> {
    h: AdamStep,
    p: &'a mut [f32],
    g: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl WithSimd for AdamOp<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let AdamOp { h, p, g, m, v } = self;
        let c1 = 1.0 / (1.0 - h.beta1.powi(h.step as i32));
        let c2 = 1.0 / (1.0 - h.beta2.powi(h.step as i32));
        let (b1, b2) = (h.beta1, h.beta2);
        let (wd_grad, wd_direct) = if h.decoupled {
            (0.0, h.lr * h.weight_decay)
        } else {
            (h.weight_decay, 0.0)
        };
        for (((p, &g0), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = g0 + wd_grad * *p;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let step = (*m * c1) / ((*v * c2).sqrt() + h.eps);
            *p -= wd_direct * *p + h.lr * step;
        }
    }
}

/// One Adam (or AdamW) step on parameters `p` with gradient `g` and moments `m`, `v`.
///
/// # Errors
/// [`KernelError::Length`](crate::KernelError::Length) if `g`, `m` or `v`
/// is not as long as `p`; nothing is written then.
pub fn adam_step(
    h: AdamStep,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    check_len("adam_step", "gradient", g.len(), p.len())?;
    check_len("adam_step", "first moment", m.len(), p.len())?;
    check_len("adam_step", "second moment", v.len(), p.len())?;
    let path = SimdPath::current();
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| path.dispatch(AdamOp { h, p, g, m, v }));
    Ok(())
}

/// One SGD step with momentum (0 for plain SGD) and optional Nesterov
/// momentum; `vel` is the velocity.
pub fn sgd_step(
    lr: f32,
    momentum: f32,
    nesterov: bool,
    weight_decay: f32,
    p: &mut [f32],
    g: &[f32],
    vel: &mut [f32],
) -> Result<()> {
    check_len("sgd_step", "gradient", g.len(), p.len())?;
    check_len("sgd_step", "velocity", vel.len(), p.len())?;
    for ((p, &g0), v) in p.iter_mut().zip(g).zip(vel.iter_mut()) {
        let g = g0 + weight_decay * *p;
        *v = momentum * *v + g;
        let step = if nesterov { g + momentum * *v } else { *v };
        *p -= lr * step;
    }
    Ok(())
}
