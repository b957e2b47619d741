//! `batch_norm`: normalization over the channels (dimension 1) with a
//! learned scale (`PATH.gamma`) and shift (`PATH.beta`). Training passes
//! use the batch's statistics and move the running ones
//! (`PATH.running_mean`, `PATH.running_var`) by `momentum`; evaluation
//! passes use the running statistics, and their backward pass is that of
//! the fixed affine map they then are.

use serde::{Deserialize, Serialize};

use super::{mismatch, At, Builder, Layer, SpecNode};
use crate::backend::{Backend, BnSaved};
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};

fn bn_momentum() -> f32 {
    0.1
}
fn bn_eps() -> f32 {
    1e-5
}

/// Batch normalization; running statistics move by `momentum` per batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    #[serde(default = "bn_momentum")]
    pub momentum: f32,
    #[serde(default = "bn_eps")]
    pub eps: f32,
}

impl SpecNode for BatchNormSpec {}

/// A built batch-norm layer.
pub struct BatchNorm<B: Backend> {
    path: String,
    eps: f32,
    momentum: f32,
    gamma: Param<B>,
    beta: Param<B>,
    mean: Param<B>,
    var: Param<B>,
    shape: Vec<usize>,
}

pub fn build<B: Backend>(
    bn: &BatchNormSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    if input.is_empty() {
        return Err(at.err("needs an input with channels"));
    }
    if !(bn.eps > 0.0 && bn.eps.is_finite() && (0.0..=1.0).contains(&bn.momentum)) {
        return Err(at.err(format!(
            "eps = {}, momentum = {}: expected eps > 0 and momentum in [0, 1]",
            bn.eps, bn.momentum
        )));
    }
    let c = input[0];
    Ok(Box::new(BatchNorm {
        path: at.path.clone(),
        eps: bn.eps,
        momentum: bn.momentum,
        gamma: cx.constant(at.name("gamma"), c, 1.0, true)?,
        beta: cx.constant(at.name("beta"), c, 0.0, true)?,
        mean: cx.constant(at.name("running_mean"), c, 0.0, false)?,
        var: cx.constant(at.name("running_var"), c, 1.0, false)?,
        shape: input.to_vec(),
    }))
}

impl<B: Backend> BatchNorm<B> {
    /// Gradients of gamma and beta after an evaluation pass, on the host:
    /// Σ dy·(x − mean)/√(var + eps) and Σ dy per channel.
    fn eval_param_grads(
        &self,
        be: &B,
        x: &B::Tensor,
        dy: &B::Tensor,
    ) -> Result<(B::Tensor, B::Tensor)> {
        let (xs, dys) = (be.to_vec(x)?, be.to_vec(dy)?);
        let (mean, var) = (be.to_vec(&self.mean.value)?, be.to_vec(&self.var.value)?);
        let c = mean.len();
        let batch = be.shape(x)[0];
        let spatial = xs.len() / (batch * c).max(1);
        let (mut dg, mut db) = (vec![0f64; c], vec![0f64; c]);
        for (k, (&xv, &d)) in xs.iter().zip(&dys).enumerate() {
            let ch = (k / spatial) % c;
            let inv = 1.0 / (var[ch] as f64 + self.eps as f64).sqrt();
            dg[ch] += d as f64 * (xv as f64 - mean[ch] as f64) * inv;
            db[ch] += d as f64;
        }
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        Ok((be.tensor(f32s(dg), &[c])?, be.tensor(f32s(db), &[c])?))
    }
}

impl<B: Backend> Layer<B> for BatchNorm<B> {
    fn kind(&self) -> &'static str {
        "batch_norm"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    /// Training saves the input and the batch statistics; evaluation the
    /// input. A frozen batch norm runs as in evaluation, in training too,
    /// and keeps its running statistics.
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let be = f.backend;
        let (g, b) = (&self.gamma.value, &self.beta.value);
        if f.training() && !self.gamma.frozen {
            let (y, s, mean, var) = be.batchnorm_train(
                &x,
                g,
                b,
                &self.mean.value,
                &self.var.value,
                self.eps,
                self.momentum,
            )?;
            f.set_stat(&self.mean, mean);
            f.set_stat(&self.var, var);
            f.save(vec![x, s.mean, s.inv_std]);
            Ok(y)
        } else {
            let y = be.batchnorm_infer(&x, g, b, &self.mean.value, &self.var.value, self.eps)?;
            f.save(vec![x]);
            Ok(y)
        }
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        _need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let be = b.backend;
        match b.saved()? {
            [x, mean, inv_std] => {
                let saved = BnSaved {
                    mean: mean.clone(),
                    inv_std: inv_std.clone(),
                };
                let (dx, dg, dbeta) = be.batchnorm_backward(x, &self.gamma.value, &saved, &dy)?;
                b.accumulate(&self.gamma, dg)?;
                b.accumulate(&self.beta, dbeta)?;
                Ok(Some(dx))
            }
            [x] => {
                // y = γ·(x − mean)/√(var + eps) + β: dx = γ/√(var + eps)·dy,
                // which is the same map on dy with zero mean and shift.
                let zero = be.zeros(&[self.shape[0]])?;
                let dx = be.batchnorm_infer(
                    &dy,
                    &self.gamma.value,
                    &zero,
                    &zero,
                    &self.var.value,
                    self.eps,
                )?;
                if b.wants_params() {
                    let (dg, dbeta) = self.eval_param_grads(be, x, &dy)?;
                    b.accumulate(&self.gamma, dg)?;
                    b.accumulate(&self.beta, dbeta)?;
                }
                Ok(Some(dx))
            }
            _ => Err(mismatch::<B>(self)),
        }
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        for p in [&self.gamma, &self.beta, &self.mean, &self.var] {
            f(p);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        for p in [
            &mut self.gamma,
            &mut self.beta,
            &mut self.mean,
            &mut self.var,
        ] {
            f(p);
        }
    }
}
