//! The native backend: host tensors and genocnn's SIMD kernels.

use kernels::conv1d::{conv1d_backward, conv1d_forward, Conv1dParams};
use kernels::conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
use kernels::dense::{dense_backward, dense_forward};
use kernels::norm;
use kernels::pool::{self, Pool1dParams, Pool2dParams, PoolKind};
use kernels::{Activation, Precision, SimdPath};

use std::sync::{Arc, Mutex};

use crate::backend::{shape_err, Backend, BnGrads, BnSaved, BnTrain, Grads, Update};
use crate::error::{NnError, Result};

/// A row-major f32 tensor in host memory. Tensors made by a [`Native`]
/// backend give their buffer back to that backend's pool when dropped.
#[derive(Clone, Debug)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
    pool: Option<Arc<BufferPool>>,
}

impl PartialEq for HostTensor {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.data == other.data
    }
}

/// Large buffers freed by tensors, kept for reuse: training allocates the
/// same activation and gradient sizes every batch, and filling fresh memory
/// with zeros only to overwrite it costs as much as a pooling pass. Each
/// [`Native`] backend owns one (its clones share it).
#[derive(Debug, Default)]
pub struct BufferPool(Mutex<PoolState>);

#[derive(Debug, Default)]
struct PoolState {
    /// Free buffers, oldest first.
    free: Vec<Vec<f32>>,
    /// The sizes recently asked of [`BufferPool::take`], newest last: only
    /// buffers of these capacities are kept, so that buffers nobody asks for
    /// again (input batches, made by the caller) cannot crowd out those that are.
    wanted: Vec<usize>,
}

const POOLED_MIN: usize = 1 << 16;
/// At most this many floats are kept (160 MB): enough for a batch's
/// activations and gradients to be reused, inference's batches of 256
/// included. When a freed buffer would pass it, the oldest go first. At
/// 80 MB, the peer genomic CNN's inference (two activations of 20.5 M
/// floats per batch of 256) took 36 buffers of 16–20.5 M floats fresh from
/// the system, zeroed, in a 3-epoch `bench train`, against 2 now; its rate
/// went from 4,272–4,905 to 4,556–5,056 samples/s in seven interleaved pairs on a
/// Zen 4, and the peak RSS from 342 to 367 MB. Training's buffers (5.1 M
/// floats at most) were reused at either size.
const POOLED_MAX_FLOATS: usize = 40 << 20;
const WANTED_SIZES: usize = 64;

impl BufferPool {
    /// A buffer of `n` floats with unspecified (initialized) contents.
    fn take(&self, n: usize) -> Vec<f32> {
        if n >= POOLED_MIN {
            let mut pool = self.0.lock().expect("tensor pool");
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

    /// Keeps a freed buffer when its size is one that is asked for.
    fn give(&self, data: &mut Vec<f32>) {
        let cap = data.capacity();
        if (POOLED_MIN..=POOLED_MAX_FLOATS).contains(&cap) {
            if let Ok(mut pool) = self.0.lock() {
                if !pool.wanted.contains(&cap) {
                    return;
                }
                let mut held: usize = pool.free.iter().map(|v| v.capacity()).sum();
                while held + cap > POOLED_MAX_FLOATS {
                    held -= pool.free.remove(0).capacity();
                }
                pool.free.push(std::mem::take(data));
            }
        }
    }
}

impl Drop for HostTensor {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.give(&mut self.data);
        }
    }
}

impl HostTensor {
    /// The values, taken out of the tensor (which then gives nothing back to a pool).
    pub fn into_data(mut self) -> Vec<f32> {
        std::mem::take(&mut self.data)
    }

    /// A tensor of `data` (which must hold `shape`'s number of values),
    /// owned by no backend's pool.
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
            pool: None,
        })
    }
}

/// genocnn's own CPU backend: its buffer pool, and the thread pool its
/// kernels run on (by default the caller's rayon pool).
#[derive(Clone, Debug, Default)]
pub struct Native {
    buffers: Arc<BufferPool>,
    threads: Option<Arc<rayon::ThreadPool>>,
    /// The kernels' path, when chosen for this backend (`--precision`);
    /// None: the path in force ([`SimdPath::current`]).
    path: Option<SimdPath>,
}

impl Native {
    /// The dense layer's forward pass, with prepared weights where given.
    fn dense_with(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        prepared: Option<&kernels::dense::DenseWeights>,
    ) -> Result<HostTensor> {
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
        let mut y = self.scratch(&[batch, n_out]);
        let bias = b.map(|b| &b.data[..]);
        match prepared {
            Some(p) => kernels::dense::dense_forward_prepared(
                &x.data,
                batch,
                n_in,
                &w.data,
                p,
                n_out,
                bias,
                &mut y.data,
            )?,
            None => dense_forward(&x.data, batch, n_in, &w.data, n_out, bias, &mut y.data)?,
        }
        Ok(y)
    }

    /// A backend on the caller's rayon pool.
    pub fn new() -> Self {
        Native::default()
    }

    /// A backend whose kernels run on a pool of its own of `threads` threads.
    pub fn with_threads(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| NnError::Backend {
                backend: "native".into(),
                message: format!("cannot start {threads} worker threads: {e}"),
            })?;
        Ok(Native {
            buffers: Arc::default(),
            threads: Some(Arc::new(pool)),
            path: None,
        })
    }

    /// This backend with its matrix products in `precision`: bf16 runs them
    /// on the best bf16 path ([`SimdPath::AmxBf16`] where the CPU has AMX,
    /// else [`SimdPath::Avx512Bf16`]; an error where the CPU has neither),
    /// fp32 on the path in force.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.path = match precision {
            Precision::Fp32 => None,
            p => Some(
                p.path(SimdPath::current())
                    .map_err(|message| NnError::Backend {
                        backend: "native".into(),
                        message,
                    })?,
            ),
        };
        Ok(self)
    }

    /// This backend on `path` (tests compare the paths; `--precision`
    /// chooses through [`Native::with_precision`]).
    pub fn with_path(mut self, path: SimdPath) -> Result<Self> {
        if !path.is_available() {
            return Err(NnError::Backend {
                backend: "native".into(),
                message: format!("the SIMD path {path} is not available on this CPU"),
            });
        }
        self.path = Some(path);
        Ok(self)
    }

    /// The path the kernels run on.
    pub fn path(&self) -> SimdPath {
        self.path.unwrap_or_else(SimdPath::current)
    }

    /// The worker threads the kernels run on.
    pub fn threads(&self) -> usize {
        match &self.threads {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// The pool of freed buffers.
    pub fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    fn own(&self, data: Vec<f32>, shape: &[usize]) -> HostTensor {
        HostTensor {
            shape: shape.to_vec(),
            data,
            pool: Some(self.buffers.clone()),
        }
    }

    fn zeros_t(&self, shape: &[usize]) -> HostTensor {
        let mut data = self.buffers.take(shape.iter().product());
        data.fill(0.0);
        self.own(data, shape)
    }

    /// A tensor whose every element the caller overwrites.
    fn scratch(&self, shape: &[usize]) -> HostTensor {
        self.own(self.buffers.take(shape.iter().product()), shape)
    }
}

fn same_shape(op: &'static str, a: &HostTensor, b: &HostTensor) -> Result<()> {
    if a.shape != b.shape {
        return Err(shape_err(
            op,
            format!("shapes {:?} and {:?} differ", a.shape, b.shape),
        ));
    }
    Ok(())
}

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
        format!("native ({}, {} threads)", self.path(), self.threads())
    }

    /// That of its path: bf16 where [`Native::with_precision`] asked for it
    /// or `GENOCNN_SIMD=amxbf16|avx512bf16` forces it.
    fn precision(&self) -> Precision {
        if self.path().is_bf16() {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }

    fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        // The kernels read the path on the thread that calls them, and
        // carry it into their workers. The network runs on a worker of a
        // pool, so the path is chosen here, on the caller's thread (this
        // backend's own, or the one in force there), and set on the worker
        // for the run: a worker waiting inside one network's pass may take
        // up another network's whole pass (tests run them side by side),
        // which must not run on the first one's path.
        let path = self.path();
        let run = || kernels::with_path(path, f);
        match &self.threads {
            Some(pool) => pool.install(run),
            // On a worker of the global pool, so that the kernels' parallel
            // loops are forks and joins among its threads, rather than jobs
            // injected from outside it, which leave the caller asleep and
            // wake it again every time.
            None => rayon::scope(|_| run()),
        }
    }

    fn tensor(&self, data: Vec<f32>, shape: &[usize]) -> Result<HostTensor> {
        let mut t = HostTensor::new(data, shape)?;
        t.pool = Some(self.buffers.clone());
        Ok(t)
    }

    fn to_vec(&self, t: &HostTensor) -> Result<Vec<f32>> {
        Ok(t.data.clone())
    }

    fn shape(&self, t: &HostTensor) -> Vec<usize> {
        t.shape.clone()
    }

    fn reshape(&self, mut t: HostTensor, shape: &[usize]) -> Result<HostTensor> {
        let n: usize = shape.iter().product();
        if n != t.data.len() {
            return Err(shape_err(
                "reshape",
                format!("shape {:?} cannot become {shape:?}", t.shape),
            ));
        }
        t.shape = shape.to_vec();
        Ok(t)
    }

    fn conv1d(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv1dParams,
    ) -> Result<HostTensor> {
        let (batch, l) = conv1d_check(x, p)?;
        let mut y = self.scratch(&[batch, p.c_out, p.l_out(l)]);
        conv1d_forward(
            p,
            &x.data,
            batch,
            l,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
        )?;
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
        let mut dx = need_dx.then(|| self.scratch(&x.shape));
        let mut dw = self.zeros_t(&w.shape);
        let mut db = self.zeros_t(&[p.c_out]);
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
        )?;
        Ok((dx, dw, db))
    }

    /// The mask is made only when kept (`keep` false: inference).
    fn conv1d_act_pool2(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv1dParams,
        act: Activation,
        keep: bool,
    ) -> Result<(HostTensor, Option<HostTensor>)> {
        let (batch, l) = conv1d_check(x, p)?;
        let lp2 = p.l_out(l) / 2;
        if lp2 == 0 || !act.is_monotonic() {
            return Err(NnError::Shape {
                op: "conv1d + max pool",
                message: format!("cannot fuse (pooled length {lp2}, activation {act:?})"),
            });
        }
        let mut y = self.scratch(&[batch, p.c_out, lp2]);
        let mut mask = keep.then(|| self.scratch(&[batch, p.c_out, lp2]));
        kernels::conv1d::conv1d_act_maxpool2_forward(
            p,
            act,
            &x.data,
            batch,
            l,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
            mask.as_mut().map_or(&mut [], |m| &mut m.data[..]),
        )?;
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
        let mut dx = need_dx.then(|| self.scratch(&x.shape));
        let mut dw = self.zeros_t(&w.shape);
        let mut db = self.zeros_t(&[p.c_out]);
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
        )?;
        Ok((dx, dw, db))
    }

    fn conv2d_act_pool2(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        b: Option<&HostTensor>,
        p: &Conv2dParams,
        act: Activation,
        keep: bool,
    ) -> Result<(HostTensor, Option<HostTensor>)> {
        let (batch, h, wd) = conv2d_check(x, p)?;
        if !kernels::conv2d::fusable_with_pool2(p, h, wd) || !act.is_monotonic() {
            return Err(NnError::Shape {
                op: "conv2d + max pool",
                message: format!("cannot fuse ({p:?} on {h}×{wd}, activation {act:?})"),
            });
        }
        let (ho, wo) = p.out_hw(h, wd);
        let shape = [batch, p.c_out, ho / 2, wo / 2];
        let mut y = self.scratch(&shape);
        // Per sample: the window positions, then the activation's derivatives.
        let mut mask = keep.then(|| self.scratch(&[batch, 2, p.c_out, ho / 2, wo / 2]));
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
            mask.as_mut().map_or(&mut [], |m| &mut m.data[..]),
        )?;
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
        let mut dx = need_dx.then(|| self.scratch(&x.shape));
        let mut dw = self.zeros_t(&w.shape);
        let mut db = self.zeros_t(&[p.c_out]);
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
        )?;
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
        let mut y = self.scratch(&[batch, p.c_out, ho, wo]);
        conv2d_forward(
            p,
            &x.data,
            batch,
            h,
            wd,
            &w.data,
            b.map(|b| &b.data[..]),
            &mut y.data,
        )?;
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
        let mut dx = need_dx.then(|| self.scratch(&x.shape));
        let mut dw = self.zeros_t(&w.shape);
        let mut db = self.zeros_t(&[p.c_out]);
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
        )?;
        Ok((dx, dw, db))
    }

    fn pool1d(&self, x: &HostTensor, p: &Pool1dParams) -> Result<HostTensor> {
        self.pool1d_act(x, p, Activation::Linear)
    }

    fn pool1d_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        p: &Pool1dParams,
    ) -> Result<HostTensor> {
        self.pool1d_act_backward(x, dy, p, Activation::Linear)
    }

    fn pool1d_act(&self, x: &HostTensor, p: &Pool1dParams, act: Activation) -> Result<HostTensor> {
        want("pool1d", x, 3)?;
        let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
        p.validate(l).map_err(|message| NnError::Shape {
            op: "pool1d",
            message,
        })?;
        let mut y = self.scratch(&[b, c, p.l_out(l)]);
        pool::pool1d_forward(p, &x.data, b * c, l, &mut y.data)?;
        if act != Activation::Linear {
            act.forward_inplace(&mut y.data);
        }
        Ok(y)
    }

    fn pool1d_act_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        p: &Pool1dParams,
        act: Activation,
    ) -> Result<HostTensor> {
        let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2]);
        let mut dx = self.scratch(&x.shape);
        match act {
            Activation::Linear => {
                pool::pool1d_backward(p, &x.data, b * c, l, &dy.data, &mut dx.data)?
            }
            a => {
                let mut pooled = vec![0f32; dy.data.len()];
                pool::pool1d_forward(p, &x.data, b * c, l, &mut pooled)?;
                let mut dpooled = vec![0f32; dy.data.len()];
                a.backward(&pooled, &dy.data, &mut dpooled)?;
                pool::pool1d_backward(p, &x.data, b * c, l, &dpooled, &mut dx.data)?;
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
        let mut y = self.scratch(&[b, c, ho, wo]);
        pool::pool2d_forward(p, &x.data, b * c, h, w, &mut y.data)?;
        Ok(y)
    }

    fn pool2d_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        p: &Pool2dParams,
    ) -> Result<HostTensor> {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
        let mut dx = self.scratch(&x.shape);
        pool::pool2d_backward(p, &x.data, b * c, h, w, &dy.data, &mut dx.data)?;
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
        let mut y = self.scratch(&[b, c]);
        pool::global_pool_forward(kind, &x.data, b * c, l, &mut y.data)?;
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
        let mut dx = self.scratch(&x.shape);
        pool::global_pool_backward(kind, &x.data, b * c, l, &dy.data, &mut dx.data)?;
        Ok(dx)
    }

    /// On the AMX tiles, the weights rounded and packed into tile rows
    /// once ([`kernels::dense::DenseWeights`]), not by every batch.
    fn dense_prepare(&self, w: &HostTensor) -> Option<crate::backend::Prepared> {
        let (n_out, n_in) = (*w.shape.first()?, *w.shape.get(1)?);
        kernels::dense::DenseWeights::prepare(&w.data, n_in, n_out)
            .map(|p| Box::new(p) as crate::backend::Prepared)
    }

    fn dense_prepared(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        prepared: &crate::backend::Prepared,
        b: Option<&HostTensor>,
    ) -> Result<HostTensor> {
        let Some(p) = prepared.downcast_ref::<kernels::dense::DenseWeights>() else {
            return self.dense(x, w, b);
        };
        self.dense_with(x, w, b, Some(p))
    }

    fn dense(&self, x: &HostTensor, w: &HostTensor, b: Option<&HostTensor>) -> Result<HostTensor> {
        self.dense_with(x, w, b, None)
    }

    fn dense_backward(
        &self,
        x: &HostTensor,
        w: &HostTensor,
        dy: &HostTensor,
        need_dx: bool,
    ) -> Result<Grads<HostTensor>> {
        let (batch, n_in, n_out) = (x.shape[0], x.shape[1], w.shape[0]);
        let mut dx = need_dx.then(|| self.scratch(&x.shape));
        let mut dw = self.scratch(&w.shape);
        let mut db = self.scratch(&[n_out]);
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
        )?;
        Ok((dx, dw, db))
    }

    fn activation(&self, x: &HostTensor, a: Activation) -> Result<HostTensor> {
        let mut y = self.scratch(&x.shape);
        a.forward(&x.data, &mut y.data)?;
        Ok(y)
    }

    fn activation_backward(
        &self,
        x: &HostTensor,
        dy: &HostTensor,
        a: Activation,
    ) -> Result<HostTensor> {
        let mut dx = self.scratch(&x.shape);
        a.backward(&x.data, &dy.data, &mut dx.data)?;
        Ok(dx)
    }

    fn batchnorm_train(
        &self,
        x: &HostTensor,
        gamma: &HostTensor,
        beta: &HostTensor,
        running_mean: &HostTensor,
        running_var: &HostTensor,
        eps: f32,
        momentum: f32,
    ) -> Result<BnTrain<HostTensor>> {
        let (b, c) = (x.shape[0], x.shape[1]);
        let mut running_mean = self.own(running_mean.data.clone(), &running_mean.shape);
        let mut running_var = self.own(running_var.data.clone(), &running_var.shape);
        let s = x.data.len() / (b * c).max(1);
        let mut y = self.scratch(&x.shape);
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
        )?;
        Ok((
            y,
            BnSaved {
                mean: self.own(cache.mean, &[c]),
                inv_std: self.own(cache.inv_std, &[c]),
            },
            running_mean,
            running_var,
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
        let mut y = self.scratch(&x.shape);
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
        )?;
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
        let mut dx = self.scratch(&x.shape);
        let mut dg = self.zeros_t(&[c]);
        let mut dbeta = self.zeros_t(&[c]);
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
        )?;
        Ok((dx, dg, dbeta))
    }

    fn dropout_mask(&self, shape: &[usize], rate: f32, seed: u64) -> Result<HostTensor> {
        let mut m = self.scratch(shape);
        norm::dropout_mask(rate, seed, &mut m.data)?;
        Ok(m)
    }

    fn mul(&self, a: &HostTensor, b: &HostTensor) -> Result<HostTensor> {
        same_shape("mul", a, b)?;
        let mut y = self.scratch(&a.shape);
        y.data
            .iter_mut()
            .zip(a.data.iter().zip(&b.data))
            .for_each(|(o, (x, y))| *o = x * y);
        Ok(y)
    }

    fn concat_channels(&self, parts: &[&HostTensor]) -> Result<HostTensor> {
        let first = parts
            .first()
            .ok_or_else(|| shape_err("concat", "nothing to join"))?;
        if first.shape.len() < 2 {
            return Err(shape_err(
                "concat",
                format!("expected (batch, channels, …), got {:?}", first.shape),
            ));
        }
        let (batch, rest) = (first.shape[0], &first.shape[2..]);
        for p in parts {
            if p.shape.len() != first.shape.len() || p.shape[0] != batch || &p.shape[2..] != rest {
                return Err(shape_err(
                    "concat",
                    format!(
                        "cannot join {:?} and {:?} along the channels",
                        first.shape, p.shape
                    ),
                ));
            }
        }
        let channels: usize = parts.iter().map(|p| p.shape[1]).sum();
        let mut shape = first.shape.clone();
        shape[1] = channels;
        let mut y = self.scratch(&shape);
        let per: Vec<usize> = parts.iter().map(|p| p.data.len() / batch.max(1)).collect();
        let row = per.iter().sum::<usize>();
        for b in 0..batch {
            let mut o = b * row;
            for (p, &n) in parts.iter().zip(&per) {
                y.data[o..o + n].copy_from_slice(&p.data[b * n..(b + 1) * n]);
                o += n;
            }
        }
        Ok(y)
    }

    fn split_channels(&self, t: &HostTensor, sizes: &[usize]) -> Result<Vec<HostTensor>> {
        if t.shape.len() < 2 || sizes.iter().sum::<usize>() != t.shape[1] {
            return Err(shape_err(
                "split",
                format!("cannot cut {:?} into {sizes:?} channels", t.shape),
            ));
        }
        let batch = t.shape[0];
        let inner: usize = t.shape[2..].iter().product();
        let row = t.shape[1] * inner;
        let mut out = Vec::with_capacity(sizes.len());
        let mut offset = 0;
        for &c in sizes {
            let mut shape = t.shape.clone();
            shape[1] = c;
            let mut part = self.scratch(&shape);
            let n = c * inner;
            for b in 0..batch {
                part.data[b * n..(b + 1) * n]
                    .copy_from_slice(&t.data[b * row + offset..b * row + offset + n]);
            }
            offset += n;
            out.push(part);
        }
        Ok(out)
    }

    fn add_scaled(&self, a: &mut HostTensor, b: &HostTensor, s: f32) -> Result<()> {
        same_shape("add", a, b)?;
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
                    state.push(self.zeros_t(&param.shape));
                }
                kernels::optim::sgd_step(
                    lr,
                    momentum,
                    nesterov,
                    weight_decay,
                    &mut param.data,
                    &grad.data,
                    &mut state[0].data,
                )?;
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
                    state.push(self.zeros_t(&param.shape));
                    state.push(self.zeros_t(&param.shape));
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
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::BufferPool;

    /// The buffers of a batch are kept whole: two activations of the peer
    /// genomic CNN's inference at batch 256 (20.5 M floats each) are both
    /// kept for the next batch, not one of them dropped (and then zeroed
    /// afresh); and a size nobody asked for is not kept.
    #[test]
    fn a_batch_of_256_gets_its_buffers_back() {
        let pool = BufferPool::default();
        let n = 256 * 16 * 4998;
        let (mut a, mut b) = (pool.take(n), pool.take(n));
        pool.give(&mut a);
        pool.give(&mut b);
        let kept = |pool: &BufferPool| pool.0.lock().expect("pool").free.len();
        assert_eq!(kept(&pool), 2, "both buffers kept");
        let (c, d) = (pool.take(n), pool.take(n));
        assert_eq!(kept(&pool), 0, "both handed out again");
        assert_eq!((c.len(), d.len()), (n, n));
        let mut other = vec![0f32; 1 << 17];
        pool.give(&mut other);
        assert_eq!(
            other.capacity(),
            1 << 17,
            "a size never asked for is not kept"
        );
        assert_eq!(kept(&pool), 0);
    }
}
