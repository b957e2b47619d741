//! The native backend: host tensors and genocnn's SIMD kernels.

use kernels::conv1d::{conv1d_backward, conv1d_forward, Conv1dParams};
use kernels::conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
use kernels::dense::{dense_backward, dense_forward};
use kernels::norm;
use kernels::pool::{self, Pool1dParams, Pool2dParams, PoolKind};
use kernels::{Activation, SimdPath};

use crate::backend::{Backend, BnGrads, BnSaved, Grads, Update};
use crate::error::{NnError, Result};

/// A row-major f32 tensor in host memory.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Large buffers freed by tensors, kept for reuse: training allocates the
/// same activation and gradient sizes every batch, and filling fresh memory
/// with zeros only to overwrite it costs as much as a pooling pass.
struct Pool {
    /// Free buffers, oldest first.
    free: Vec<Vec<f32>>,
    /// The sizes recently asked of [`take`], newest last: only buffers of
    /// these capacities are kept, so that buffers nobody asks for again
    /// (input batches, made by the caller) cannot crowd out those that are.
    wanted: Vec<usize>,
}

static POOL: std::sync::Mutex<Pool> = std::sync::Mutex::new(Pool {
    free: Vec::new(),
    wanted: Vec::new(),
});
const POOLED_MIN: usize = 1 << 16;
/// At most this many floats are kept (80 MB): enough for a batch's
/// activations and gradients to be reused. When a freed buffer would pass
/// it, the oldest go first.
const POOLED_MAX_FLOATS: usize = 20 << 20;
const WANTED_SIZES: usize = 64;

/// A buffer of `n` floats with unspecified (initialized) contents.
fn take(n: usize) -> Vec<f32> {
    if n >= POOLED_MIN {
        let mut pool = POOL.lock().expect("tensor pool");
        if !pool.wanted.contains(&n) {
            if pool.wanted.len() == WANTED_SIZES {
                pool.wanted.remove(0);
            }
            pool.wanted.push(n);
        }
        let best = pool
            .free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n && v.capacity() <= 2 * n)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        if let Some(i) = best {
            let mut v = pool.free.remove(i);
            drop(pool);
            if v.len() >= n {
                v.truncate(n);
            } else {
                v.resize(n, 0.0);
            }
            return v;
        }
    }
    vec![0.0; n]
}

impl Drop for HostTensor {
    fn drop(&mut self) {
        let cap = self.data.capacity();
        if (POOLED_MIN..=POOLED_MAX_FLOATS).contains(&cap) {
            if let Ok(mut pool) = POOL.lock() {
                if !pool.wanted.contains(&cap) {
                    return;
                }
                let mut held: usize = pool.free.iter().map(|v| v.capacity()).sum();
                while held + cap > POOLED_MAX_FLOATS {
                    held -= pool.free.remove(0).capacity();
                }
                pool.free.push(std::mem::take(&mut self.data));
            }
        }
    }
}

impl HostTensor {
    pub fn new(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(NnError::Shape {
                op: "tensor",
                message: format!(
                    "shape {shape:?} holds {n} values, but {} were given",
                    data.len()
                ),
            });
        }
        Ok(HostTensor {
            shape: shape.to_vec(),
            data,
        })
    }

    fn zeros(shape: &[usize]) -> Self {
        let mut data = take(shape.iter().product());
        data.fill(0.0);
        HostTensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A tensor whose every element the caller overwrites.
    fn scratch(shape: &[usize]) -> Self {
        HostTensor {
            shape: shape.to_vec(),
            data: take(shape.iter().product()),
        }
    }
}

/// genocnn's own CPU backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Native;

fn want(op: &'static str, t: &HostTensor, rank: usize) -> Result<()> {
    if t.shape.len() != rank {
        return Err(NnError::Shape {
            op,
            message: format!("expected a rank-{rank} tensor, got shape {:?}", t.shape),
        });
    }
    Ok(())
}

fn conv1d_check(x: &HostTensor, p: &Conv1dParams) -> Result<(usize, usize)> {
    want("conv1d", x, 3)?;
    let (batch, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
    if c != p.c_in {
        return Err(NnError::Shape {
            op: "conv1d",
            message: format!("input has {c} channels, the layer expects {}", p.c_in),
        });
    }
    p.validate(l).map_err(|message| NnError::Shape {
        op: "conv1d",
        message,
    })?;
    Ok((batch, l))
}

fn conv2d_check(x: &HostTensor, p: &Conv2dParams) -> Result<(usize, usize, usize)> {
    want("conv2d", x, 4)?;
    let (batch, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    if c != p.c_in {
        return Err(NnError::Shape {
            op: "conv2d",
            message: format!("input has {c} channels, the layer expects {}", p.c_in),
        });
    }
    p.validate(h, w).map_err(|message| NnError::Shape {
        op: "conv2d",
        message,
    })?;
    Ok((batch, h, w))
}

impl Backend for Native {
    type Tensor = HostTensor;

    fn name(&self) -> String {
        format!(
            "native ({}, {} threads)",
            SimdPath::current(),
            rayon::current_num_threads()
        )
    }

    fn tensor(&self, data: Vec<f32>, shape: &[usize]) -> Result<HostTensor> {
        HostTensor::new(data, shape)
    }

    fn to_vec(&self, t: &HostTensor) -> Result<Vec<f32>> {
        Ok(t.data.clone())
    }

    fn shape(&self, t: &HostTensor) -> Vec<usize> {
        t.shape.clone()
    }

    fn reshape(&self, mut t: HostTensor, shape: &[usize]) -> Result<HostTensor> {
        HostTensor::new(std::mem::take(&mut t.data), shape)
    }

    fn conv1d(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv1dParams,
    ) -> Result<HostTensor> {
        let (batch, l) = conv1d_check(x, p)?;
        let mut y = HostTensor::scratch(&[batch, p.c_out, p.l_out(l)]);
        conv1d_forward(
            p,
            &x.data,
            batch,
            l,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
        );
        Ok(y)
    }

    fn conv1d_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        dy: &HostTensor,
        p: &Conv1dParams,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, l) = conv1d_check(x, p)?;
        let mut dx = need_dx.then(|| HostTensor::scratch(&x.shape));
        let mut dw = HostTensor::zeros(&w.shape);
        let mut db = HostTensor::zeros(&[p.c_out]);
        conv1d_backward(
            p,
            &x.data,
            batch,
            l,
            &w.data,
            &dy.data,
            dx.as_mut().map(|d| &mut d.data[..]),
            &mut dw.data,
            Some(&mut db.data),
        );
        Ok((dx, dw, db))
    }

    fn conv1d_act_pool2(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv1dParams,
        act: Activation,
    ) -> Result<(HostTensor, HostTensor)> {
        let (batch, l) = conv1d_check(x, p)?;
        let lp2 = p.l_out(l) / 2;
        if lp2 == 0 || !act.is_monotonic() {
            return Err(NnError::Shape {
                op: "conv1d + max pool",
                message: format!("cannot fuse (pooled length {lp2}, activation {act:?})"),
            });
        }
        let mut y = HostTensor::scratch(&[batch, p.c_out, lp2]);
        let mut mask = HostTensor::scratch(&[batch, p.c_out, lp2]);
        kernels::conv1d::conv1d_act_maxpool2_forward(
            p,
            act,
            &x.data,
            batch,
            l,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
            &mut mask.data,
        );
        Ok((y, mask))
    }

    fn conv1d_act_pool2_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        mask: &HostTensor,
        dy: &HostTensor,
        p: &Conv1dParams,
        _act: Activation,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, l) = conv1d_check(x, p)?;
        let mut dx = need_dx.then(|| HostTensor::scratch(&x.shape));
        let mut dw = HostTensor::zeros(&w.shape);
        let mut db = HostTensor::zeros(&[p.c_out]);
        kernels::conv1d::conv1d_act_maxpool2_backward(
            p,
            &x.data,
            batch,
            l,
            &w.data,
            &mask.data,
            &dy.data,
            dx.as_mut().map(|d| &mut d.data[..]),
            &mut dw.data,
            Some(&mut db.data),
        );
        Ok((dx, dw, db))
    }

    fn conv2d_act_pool2(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv2dParams,
        act: Activation,
    ) -> Result<(HostTensor, HostTensor)> {
        let (batch, h, wd) = conv2d_check(x, p)?;
        if !kernels::conv2d::fusable_with_pool2(p, h, wd) || !act.is_monotonic() {
            return Err(NnError::Shape {
                op: "conv2d + max pool",
                message: format!("cannot fuse ({p:?} on {h}×{wd}, activation {act:?})"),
            });
        }
        let (ho, wo) = p.out_hw(h, wd);
        let shape = [batch, p.c_out, ho / 2, wo / 2];
        let mut y = HostTensor::scratch(&shape);
        // Per sample: the window positions, then the activation's derivatives.
        let mut mask = HostTensor::scratch(&[batch, 2, p.c_out, ho / 2, wo / 2]);
        kernels::conv2d::conv2d_act_maxpool2_forward(
            p,
            act,
            &x.data,
            batch,
            h,
            wd,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
            &mut mask.data,
        );
        Ok((y, mask))
    }

    fn conv2d_act_pool2_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        mask: &HostTensor,
        dy: &HostTensor,
        p: &Conv2dParams,
        _act: Activation,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, h, wd) = conv2d_check(x, p)?;
        let mut dx = need_dx.then(|| HostTensor::scratch(&x.shape));
        let mut dw = HostTensor::zeros(&w.shape);
        let mut db = HostTensor::zeros(&[p.c_out]);
        kernels::conv2d::conv2d_act_maxpool2_backward(
            p,
            &x.data,
            batch,
            h,
            wd,
            &w.data,
            &mask.data,
            &dy.data,
            dx.as_mut().map(|d| &mut d.data[..]),
            &mut dw.data,
            Some(&mut db.data),
        );
        Ok((dx, dw, db))
    }

    fn conv2d(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv2dParams,
    ) -> Result<HostTensor> {
        let (batch, h, wd) = conv2d_check(x, p)?;
        let (ho, wo) = p.out_hw(h, wd);
        let mut y = HostTensor::scratch(&[batch, p.c_out, ho, wo]);
        conv2d_forward(
            p,
            &x.data,
            batch,
            h,
            wd,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
        );
        Ok(y)
    }

    fn conv2d_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        dy: &HostTensor,
        p: &Conv2dParams,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, h, wd) = conv2d_check(x, p)?;
        let mut dx = need_dx.then(|| HostTensor::scratch(&x.shape));
        let mut dw = HostTensor::zeros(&w.shape);
        let mut db = HostTensor::zeros(&[p.c_out]);
        conv2d_backward(
            p,
            &x.data,
            batch,
            h,
            wd,
            &w.data,
            &dy.data,
            dx.as_mut().map(|d| &mut d.data[..]),
            &mut dw.data,
            Some(&mut db.data),
        );
        Ok((dx, dw, db))
    }

    fn pool1d(&self, x: &HostTensor, p: &Pool1dParams, act: Activation) -> Result<HostTensor> {
        want("pool1d", x, 3)?;
        let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
        p.validate(l).map_err(|message| NnError::Shape {
            op: "pool1d",
            message,
        })?;
        let mut y = HostTensor::scratch(&[b, c, p.l_out(l)]);
        match act {
            Activation::Linear => pool::pool1d_forward(p, &x.data, b * c, l, &mut y.data),
            a => {
                pool::pool1d_forward(p, &x.data, b * c, l, &mut y.data);
                a.forward_inplace(&mut y.data);
            }
        }
        Ok(y)
    }

    fn pool1d_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        p: &Pool1dParams,
        act: Activation,
    ) -> Result<HostTensor> {
        let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
        let mut dx = HostTensor::scratch(&x.shape);
        match act {
            Activation::Linear => {
                pool::pool1d_backward(p, &x.data, b * c, l, &dy.data, &mut dx.data)
            }
            a => {
                let mut pooled = vec![0f32; dy.data.len()];
                pool::pool1d_forward(p, &x.data, b * c, l, &mut pooled);
                let mut dpooled = vec![0f32; dy.data.len()];
                a.backward(&pooled, &dy.data, &mut dpooled);
                pool::pool1d_backward(p, &x.data, b * c, l, &dpooled, &mut dx.data);
            }
        }
        Ok(dx)
    }

    fn pool2d(&self, x: &HostTensor, p: &Pool2dParams) -> Result<HostTensor> {
        want("pool2d", x, 4)?;
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        p.validate(h, w).map_err(|message| NnError::Shape {
            op: "pool2d",
            message,
        })?;
        let (ho, wo) = p.out_hw(h, w);
        let mut y = HostTensor::scratch(&[b, c, ho, wo]);
        pool::pool2d_forward(p, &x.data, b * c, h, w, &mut y.data);
        Ok(y)
    }

    fn pool2d_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        p: &Pool2dParams,
    ) -> Result<HostTensor> {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let mut dx = HostTensor::scratch(&x.shape);
        pool::pool2d_backward(p, &x.data, b * c, h, w, &dy.data, &mut dx.data);
        Ok(dx)
    }

    fn global_pool(&self, x: &HostTensor, kind: PoolKind) -> Result<HostTensor> {
        if x.shape.len() < 3 {
            return Err(NnError::Shape {
                op: "global pool",
                message: format!("expected (batch, channels, …), got {:?}", x.shape),
            });
        }
        let (b, c) = (x.shape[0], x.shape[1]);
        let l = x.data.len() / (b * c).max(1);
        let mut y = HostTensor::scratch(&[b, c]);
        pool::global_pool_forward(kind, &x.data, b * c, l, &mut y.data);
        Ok(y)
    }

    fn global_pool_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        kind: PoolKind,
    ) -> Result<HostTensor> {
        let (b, c) = (x.shape[0], x.shape[1]);
        let l = x.data.len() / (b * c).max(1);
        let mut dx = HostTensor::scratch(&x.shape);
        pool::global_pool_backward(kind, &x.data, b * c, l, &dy.data, &mut dx.data);
        Ok(dx)
    }

    fn dense(&self, x: &HostTensor, w: &HostTensor, b: Option<&HostTensor>) -> Result<HostTensor> {
        want("dense", x, 2)?;
        let (batch, n_in, n_out) = (x.shape[0], x.shape[1], w.shape[0]);
        if w.shape[1] != n_in {
            return Err(NnError::Shape {
                op: "dense",
                message: format!(
                    "input has {n_in} features, the layer expects {}",
                    w.shape[1]
                ),
            });
        }
        let mut y = HostTensor::scratch(&[batch, n_out]);
        dense_forward(
            &x.data,
            batch,
            n_in,
            &w.data,
            n_out,
            b.map(|b| &b.data[..]),
            &mut y.data,
        );
        Ok(y)
    }

    fn dense_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        dy: &HostTensor,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, n_in, n_out) = (x.shape[0], x.shape[1], w.shape[0]);
        let mut dx = need_dx.then(|| HostTensor::scratch(&x.shape));
        let mut dw = HostTensor::scratch(&w.shape);
        let mut db = HostTensor::scratch(&[n_out]);
        dense_backward(
            &x.data,
            batch,
            n_in,
            &w.data,
            n_out,
            &dy.data,
            dx.as_mut().map(|d| &mut d.data[..]),
            &mut dw.data,
            Some(&mut db.data),
        );
        Ok((dx, dw, db))
    }

    fn activation(&self, x: &HostTensor, a: Activation) -> Result<HostTensor> {
        let mut y = HostTensor::scratch(&x.shape);
        a.forward(&x.data, &mut y.data);
        Ok(y)
    }

    fn activation_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        a: Activation,
    ) -> Result<HostTensor> {
        let mut dx = HostTensor::scratch(&x.shape);
        a.backward(&x.data, &dy.data, &mut dx.data);
        Ok(dx)
    }

    fn batchnorm_train(
        &self,
        x: &HostTensor,
        gamma: &HostTensor,
        beta: &HostTensor,
        running_mean: &mut HostTensor,
        running_var: &mut HostTensor,
        eps: f32,
        momentum: f32,
    ) -> Result<(HostTensor, BnSaved<HostTensor>)> {
        let (b, c) = (x.shape[0], x.shape[1]);
        let s = x.data.len() / (b * c).max(1);
        let mut y = HostTensor::scratch(&x.shape);
        let cache = norm::batchnorm_forward_train(
            &x.data,
            b,
            c,
            s,
            &gamma.data,
            &beta.data,
            eps,
            momentum,
            &mut running_mean.data,
            &mut running_var.data,
            &mut y.data,
        );
        Ok((
            y,
            BnSaved {
                mean: HostTensor::new(cache.mean, &[c])?,
                inv_std: HostTensor::new(cache.inv_std, &[c])?,
            },
        ))
    }

    fn batchnorm_infer(
        &self,
        x: &HostTensor,
        gamma: &HostTensor,
        beta: &HostTensor,
        running_mean: &HostTensor,
        running_var: &HostTensor,
        eps: f32,
    ) -> Result<HostTensor> {
        let (b, c) = (x.shape[0], x.shape[1]);
        let s = x.data.len() / (b * c).max(1);
        let mut y = HostTensor::scratch(&x.shape);
        norm::batchnorm_forward_infer(
            &x.data,
            b,
            c,
            s,
            &gamma.data,
            &beta.data,
            eps,
            &running_mean.data,
            &running_var.data,
            &mut y.data,
        );
        Ok(y)
    }

    fn batchnorm_backward(
        &self,
        x: &HostTensor,
        gamma: &HostTensor,
        saved: &BnSaved<HostTensor>,
        dy: &HostTensor,
    ) -> Result<BnGrads<HostTensor>> {
        let (b, c) = (x.shape[0], x.shape[1]);
        let s = x.data.len() / (b * c).max(1);
        let cache = norm::BatchNormCache {
            mean: saved.mean.data.clone(),
            inv_std: saved.inv_std.data.clone(),
        };
        let mut dx = HostTensor::scratch(&x.shape);
        let mut dg = HostTensor::zeros(&[c]);
        let mut dbeta = HostTensor::zeros(&[c]);
        norm::batchnorm_backward(
            &x.data,
            b,
            c,
            s,
            &gamma.data,
            &cache,
            &dy.data,
            &mut dx.data,
            &mut dg.data,
            &mut dbeta.data,
        );
        Ok((dx, dg, dbeta))
    }

    fn dropout_mask(&self, shape: &[usize], rate: f32, seed: u64) -> Result<HostTensor> {
        let mut m = HostTensor::scratch(shape);
        norm::dropout_mask(rate, seed, &mut m.data);
        Ok(m)
    }

    fn mul(&self, a: &HostTensor, b: &HostTensor) -> Result<HostTensor> {
        Ok(HostTensor {
            shape: a.shape.clone(),
            data: a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect(),
        })
    }

    fn add_scaled(&self, a: &mut HostTensor, b: &HostTensor, s: f32) -> Result<()> {
        a.data
            .iter_mut()
            .zip(&b.data)
            .for_each(|(x, y)| *x += s * y);
        Ok(())
    }

    fn add_penalty(&self, w: &HostTensor, grad: &mut HostTensor, l1: f32, l2: f32) -> Result<f32> {
        let mut pen = 0f64;
        for (g, &v) in grad.data.iter_mut().zip(&w.data) {
            *g += l1 * v.signum() * f32::from(v != 0.0) + 2.0 * l2 * v;
            pen += (l1 * v.abs() + l2 * v * v) as f64;
        }
        Ok(pen as f32)
    }

    fn update(
        &self,
        param: &mut HostTensor,
        grad: &HostTensor,
        state: &mut Vec<HostTensor>,
        u: &Update,
    ) -> Result<()> {
        match *u {
            Update::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            } => {
                if state.is_empty() {
                    state.push(HostTensor::zeros(&param.shape));
                }
                kernels::optim::sgd_step(
                    lr,
                    momentum,
                    nesterov,
                    weight_decay,
                    &mut param.data,
                    &grad.data,
                    &mut state[0].data,
                );
            }
            Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                step,
            } => {
                if state.is_empty() {
                    state.push(HostTensor::zeros(&param.shape));
                    state.push(HostTensor::zeros(&param.shape));
                }
                let (m, v) = state.split_at_mut(1);
                let h = kernels::optim::AdamStep {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    decoupled,
                    step,
                };
                kernels::optim::adam_step(
                    h,
                    &mut param.data,
                    &grad.data,
                    &mut m[0].data,
                    &mut v[0].data,
                );
            }
        }
        Ok(())
    }
}
