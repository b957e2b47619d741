//! Elementwise activations with their derivatives, and softmax fused with
//! cross-entropy. Large tensors are split over threads, and every loop runs
//! under the dispatched SIMD path so that the compiler vectorizes it.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::error::{check_len, KernelError, Result};
use crate::simd::SimdPath;

/// Elements per parallel chunk.
const CHUNK: usize = 1 << 15;

struct Fwd<'a> {
    a: Activation,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for Fwd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let Fwd { a, x, y } = self;
        match a {
            Activation::Linear => y.copy_from_slice(x),
            Activation::Relu => y
                .iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = if v > 0.0 { v } else { 0.0 }),
            Activation::LeakyRelu(al) => y
                .iter_mut()
                .zip(x)
                .for_each(|(o, &v)| *o = if v > 0.0 { v } else { al * v }),
            a => y.iter_mut().zip(x).for_each(|(o, &v)| *o = a.apply(v)),
        }
    }
}

struct Bwd<'a> {
    a: Activation,
    x: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
}

impl WithSimd for Bwd<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let Bwd { a, x, dy, dx } = self;
        match a {
            Activation::Linear => dx.copy_from_slice(dy),
            Activation::Relu => dx
                .iter_mut()
                .zip(x.iter().zip(dy))
                .for_each(|(o, (&v, &d))| *o = if v > 0.0 { d } else { 0.0 }),
            Activation::LeakyRelu(al) => dx
                .iter_mut()
                .zip(x.iter().zip(dy))
                .for_each(|(o, (&v, &d))| *o = if v > 0.0 { d } else { al * d }),
            a => dx
                .iter_mut()
                .zip(x.iter().zip(dy))
                .for_each(|(o, (&v, &d))| *o = d * a.derivative(v)),
        }
    }
}

/// An activation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Linear,
    Relu,
    LeakyRelu(f32),
    Elu(f32),
    Softplus,
    Tanh,
    Sigmoid,
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

#[inline]
fn softplus(x: f32) -> f32 {
    // log(1 + e^x) without overflow.
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

impl Activation {
    /// f(x).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Linear => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    x
                } else {
                    a * x.exp_m1()
                }
            }
            Activation::Softplus => softplus(x),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => sigmoid(x),
        }
    }

    /// f′(x).
    #[inline]
    pub fn derivative(self, x: f32) -> f32 {
        match self {
            Activation::Linear => 1.0,
            Activation::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Activation::Elu(a) => {
                if x > 0.0 {
                    1.0
                } else {
                    a * x.exp()
                }
            }
            Activation::Softplus => sigmoid(x),
            Activation::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
        }
    }

    /// y = f(x), elementwise.
    pub fn forward(self, x: &[f32], y: &mut [f32]) -> Result<()> {
        check_len("activation_forward", "y", y.len(), x.len())?;
        let path = SimdPath::current();
        x.par_chunks(CHUNK)
            .zip(y.par_chunks_mut(CHUNK))
            .for_each(|(x, y)| path.dispatch(Fwd { a: self, x, y }));
        Ok(())
    }

    /// dx = dy · f′(x), elementwise, from the pre-activation x.
    pub fn backward(self, x: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
        check_len("activation_backward", "dy", dy.len(), x.len())?;
        check_len("activation_backward", "dx", dx.len(), x.len())?;
        let path = SimdPath::current();
        x.par_chunks(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .zip(dx.par_chunks_mut(CHUNK))
            .for_each(|((x, dy), dx)| path.dispatch(Bwd { a: self, x, dy, dx }));
        Ok(())
    }

    /// In place: x ← f(x).
    pub fn forward_inplace(self, x: &mut [f32]) {
        x.iter_mut().for_each(|v| *v = self.apply(*v));
    }

    /// f′ at the point whose output is y = f(x), for the activations where
    /// y determines it (all of these; for ReLU at 0, the derivative 0).
    #[inline]
    pub fn derivative_from_output(self, y: f32) -> f32 {
        match self {
            Activation::Linear => 1.0,
            Activation::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Activation::LeakyRelu(a) => {
                if y > 0.0 {
                    1.0
                } else {
                    a
                }
            }
            Activation::Elu(a) => {
                if y > 0.0 {
                    1.0
                } else {
                    y + a
                }
            }
            Activation::Softplus => 1.0 - (-y).exp(),
            Activation::Tanh => 1.0 - y * y,
            Activation::Sigmoid => y * (1.0 - y),
        }
    }

    /// Whether f never decreases (then max pooling commutes with it).
    pub fn is_monotonic(self) -> bool {
        match self {
            Activation::LeakyRelu(a) | Activation::Elu(a) => a >= 0.0,
            _ => true,
        }
    }
}

/// Softmax over each row of `logits` (batch × classes) fused with the mean
/// cross-entropy against `labels`. Writes the probabilities and the gradient
/// of the mean loss with respect to the logits; returns the mean loss.
///
/// # Errors
/// [`KernelError::Length`](crate::KernelError::Length) if a slice's length
/// does not match the shapes, and
/// [`KernelError::Params`](crate::KernelError::Params) if a label is not
/// below `classes`; nothing is written then.
pub fn softmax_cross_entropy(
    logits: &[f32],
    batch: usize,
    classes: usize,
    labels: &[usize],
    probs: &mut [f32],
    dlogits: &mut [f32],
) -> Result<f32> {
    const OP: &str = "softmax_cross_entropy";
    check_len(OP, "logits", logits.len(), batch * classes)?;
    check_len(OP, "labels", labels.len(), batch)?;
    check_len(OP, "probabilities", probs.len(), batch * classes)?;
    check_len(OP, "dlogits", dlogits.len(), batch * classes)?;
    if let Some((b, label)) = labels.iter().enumerate().find(|(_, &l)| l >= classes) {
        return Err(KernelError::Params {
            op: OP,
            message: format!("the label of sample {b} is {label}, not below {classes}"),
        });
    }
    let mut loss = 0f64;
    for b in 0..batch {
        let z = &logits[b * classes..(b + 1) * classes];
        let p = &mut probs[b * classes..(b + 1) * classes];
        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0f64;
        for (pi, &zi) in p.iter_mut().zip(z) {
            *pi = (zi - m).exp();
            sum += *pi as f64;
        }
        let label = labels[b];
        loss += sum.ln() - (z[label] - m) as f64;
        let inv = (1.0 / sum) as f32;
        let d = &mut dlogits[b * classes..(b + 1) * classes];
        for (k, (pi, di)) in p.iter_mut().zip(d.iter_mut()).enumerate() {
            *pi *= inv;
            *di = (*pi - if k == label { 1.0 } else { 0.0 }) / batch as f32;
        }
    }
    Ok((loss / batch as f64) as f32)
}
