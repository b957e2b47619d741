//! A convolution and the max pool after it, fused by the fusion pass
//! ([`crate::fuse`]); never written in a spec. It holds the two layers it
//! was made of, and runs as them when the pass asks for every layer's
//! output or for no fusion.
//!
//! Two fusions:
//! - [`Fused::Pool2`]: a convolution with a monotonic activation and a max
//!   pool of 2 (2 × 2 in 2D, stride 2): one backend operation, whose output
//!   is the pooled one (the native backend never stores the convolution's).
//! - [`Fused::Deferred`]: any other max pool after a convolution with a
//!   monotonic activation. Max pooling commutes with such an activation, so
//!   the activation moves after the pool: the same function, applied to a
//!   fraction of the values.

use super::conv::{Conv, ConvGeom};
use super::pool::{Pool, PoolGeom};
use super::{mismatch, Layer};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};

/// Which fusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fused {
    Pool2,
    Deferred,
}

/// A fused convolution + max pool.
pub struct ConvPool<B: Backend> {
    conv: Conv<B>,
    pool: Pool,
    how: Fused,
}

impl<B: Backend> ConvPool<B> {
    pub(crate) fn new(conv: Conv<B>, pool: Pool, how: Fused) -> Self {
        ConvPool { conv, pool, how }
    }
}

impl<B: Backend> Layer<B> for ConvPool<B> {
    fn kind(&self) -> &'static str {
        "conv+pool"
    }

    /// The pool's path: the layer's output is the pool's.
    fn path(&self) -> &str {
        &self.pool.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.pool.shape
    }

    /// Saves nothing when run as its parts (they save their own); else
    /// [x, mask] (`Pool2`), [x, z] (`Deferred` 1D) or [x, z, pooled]
    /// (`Deferred` 2D), z being the convolution's linear output.
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        if f.ctx.unfused {
            let h = f.run(&self.conv, x)?;
            let y = f.run(&self.pool, h)?;
            f.save(Vec::new());
            return Ok(y);
        }
        let be = f.backend;
        let c = &self.conv;
        let (w, bias, act) = (&c.w.value, c.b.as_ref().map(|b| &b.value), c.act);
        match (self.how, self.pool.geom) {
            (Fused::Pool2, _) => {
                // Unrecorded (no backward pass will follow): the output alone.
                let keep = f.record;
                let (y, mask) = match c.geom {
                    ConvGeom::One(p) => be.conv1d_act_pool2(&x, w, bias, &p, act, keep)?,
                    ConvGeom::Two(p) => be.conv2d_act_pool2(&x, w, bias, &p, act, keep)?,
                };
                if let Some(mask) = mask {
                    f.save(vec![x, mask]);
                }
                Ok(y)
            }
            (Fused::Deferred, PoolGeom::One(p)) => {
                let z = c.linear(be, &x)?;
                let y = be.pool1d_act(&z, &p, act)?;
                f.save(vec![x, z]);
                Ok(y)
            }
            (Fused::Deferred, PoolGeom::Two(p)) => {
                let z = c.linear(be, &x)?;
                let pooled = be.pool2d(&z, &p)?;
                let y = be.activation(&pooled, act)?;
                f.save(vec![x, z, pooled]);
                Ok(y)
            }
        }
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let be = b.backend;
        let c = &self.conv;
        match (b.saved()?, self.how, self.pool.geom) {
            ([], _, _) => {
                let dh = b
                    .run(&self.pool, dy, true)?
                    .ok_or_else(|| mismatch::<B>(self))?;
                b.run(&self.conv, dh, need_dx)
            }
            ([x, mask], Fused::Pool2, _) => {
                let (dx, dw, db) = match c.geom {
                    ConvGeom::One(p) => {
                        be.conv1d_act_pool2_backward(x, &c.w.value, mask, &dy, &p, c.act, need_dx)?
                    }
                    ConvGeom::Two(p) => {
                        be.conv2d_act_pool2_backward(x, &c.w.value, mask, &dy, &p, c.act, need_dx)?
                    }
                };
                b.accumulate(&c.w, dw)?;
                if let Some(bias) = &c.b {
                    b.accumulate(bias, db)?;
                }
                Ok(dx)
            }
            ([x, z], Fused::Deferred, PoolGeom::One(p)) => {
                let dz = be.pool1d_act_backward(z, &dy, &p, c.act)?;
                c.linear_backward(b, x, &dz, need_dx)
            }
            ([x, z, pooled], Fused::Deferred, PoolGeom::Two(p)) => {
                let dp = be.activation_backward(pooled, &dy, c.act)?;
                let dz = be.pool2d_backward(z, &dp, &p)?;
                c.linear_backward(b, x, &dz, need_dx)
            }
            _ => Err(mismatch::<B>(self)),
        }
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.conv.visit_params(f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.conv.visit_params_mut(f);
    }

    fn children(&self) -> Vec<&dyn Layer<B>> {
        vec![&self.conv, &self.pool]
    }
}
