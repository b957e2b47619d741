//! The candle backend: the same networks on candle-core's CPU and CUDA
//! devices (cargo features `candle` and `cuda`, both off by default).
//!
//! Forward passes map each op to candle ops: convolutions as gathers and
//! matrix products, pools as reshapes and reductions (or gathers, for
//! strided and padded windows). Each backward pass
//! is the vector-Jacobian product of its forward op, taken with candle's
//! autograd: the op is run again on variables and `Σ y·dy` is differentiated.
//! Tensor names and layouts are those of the native backend, so saved
//! weights move freely between the two.
//!
//! The fused operations are the trait's defaults, composed of the
//! primitives below.
//!
//! Without the `candle` feature there is no `Candle` type; [`not_built`]
//! is the error that says how to build with it.

/// Where a candle backend runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CandleDevice {
    Cpu,
    /// A CUDA device by ordinal.
    Cuda(usize),
}

impl std::fmt::Display for CandleDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CandleDevice::Cpu => write!(f, "candle-cpu"),
            CandleDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

use crate::error::NnError;

/// The error for a candle device asked of a build without the backend:
/// it says which feature to build with.
pub fn not_built(device: CandleDevice) -> NnError {
    let feature = match device {
        CandleDevice::Cpu => "candle",
        CandleDevice::Cuda(_) => "cuda",
    };
    NnError::Backend {
        backend: device.to_string(),
        message: format!(
            "this genocnn was built without the candle backend; rebuild with `cargo build --release --features {feature}`{}",
            if feature == "cuda" {
                " (this needs the CUDA toolkit; see README, 'Building for a GPU')"
            } else {
                ""
            }
        ),
    }
}

#[cfg(feature = "candle")]
pub use real::Candle;

#[cfg(feature = "candle")]
mod real {
    use candle_core::{DType, Device, Tensor, Var, D};

    use super::CandleDevice;
    use crate::backend::{Backend, BnGrads, BnSaved, BnTrain, Grads, Update};
    use crate::error::{NnError, Result};
    use kernels::conv1d::Conv1dParams;
    use kernels::conv2d::Conv2dParams;
    use kernels::pool::{Pool1dParams, Pool2dParams, PoolKind};
    use kernels::Activation;

    /// The candle backend on one device.
    #[derive(Clone, Debug)]
    pub struct Candle {
        device: Device,
        which: CandleDevice,
    }

    type C<T> = candle_core::Result<T>;

    impl Candle {
        /// Opens the device: the CPU, or a CUDA device (with the `cuda` feature).
        pub fn new(which: CandleDevice) -> Result<Self> {
            let device = match which {
                CandleDevice::Cpu => Device::Cpu,
                CandleDevice::Cuda(n) => {
                    if !cfg!(feature = "cuda") {
                        return Err(NnError::Backend {
                            backend: which.to_string(),
                            message: "this genocnn was built without CUDA; rebuild with `cargo build --release --features cuda` (see README, 'Building for a GPU')".into(),
                        });
                    }
                    Device::new_cuda(n).map_err(|e| NnError::Backend {
                        backend: which.to_string(),
                        message: format!("cannot open CUDA device {n}: {e}"),
                    })?
                }
            };
            Ok(Candle { device, which })
        }

        fn err(&self, e: candle_core::Error) -> NnError {
            NnError::Backend {
                backend: self.which.to_string(),
                message: e.to_string(),
            }
        }

        /// The vector-Jacobian product of `f` at `inputs` with cotangent `dy`:
        /// the gradient of Σ f(inputs)·dy with respect to each input.
        fn vjp(
            &self,
            inputs: &[&Tensor],
            dy: &Tensor,
            f: impl Fn(&[Tensor]) -> C<Tensor>,
        ) -> Result<Vec<Tensor>> {
            let run = || -> C<Vec<Tensor>> {
                let vars = inputs
                    .iter()
                    .map(|t| Var::from_tensor(t))
                    .collect::<C<Vec<_>>>()?;
                let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
                let y = f(&ts)?;
                let g = (y * dy)?.sum_all()?.backward()?;
                // Detached: a gradient must not keep the graph it came from
                // (and, through the parameters it updates, every earlier one).
                vars.iter()
                    .map(|v| match g.get(v.as_tensor()) {
                        Some(t) => Ok(t.detach()),
                        None => Ok(v.as_tensor().zeros_like()?.detach()),
                    })
                    .collect()
            };
            run().map_err(|e| self.err(e))
        }
    }

    fn act(x: &Tensor, a: Activation) -> C<Tensor> {
        match a {
            Activation::Linear => Ok(x.clone()),
            Activation::Relu => x.relu(),
            Activation::LeakyRelu(s) => x.maximum(&x.affine(s as f64, 0.0)?),
            Activation::Elu(alpha) => {
                // relu(x) + min(0, α(eᵡ − 1)), differentiable piece by piece.
                x.relu()?
                    + x.exp()?
                        .affine(alpha as f64, -(alpha as f64))?
                        .minimum(0f64)?
            }
            Activation::Softplus => {
                // max(x, 0) + log(1 + e^(−|x|)), stably.
                x.relu()? + (x.abs()?.neg()?.exp()? + 1f64)?.log()?
            }
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => (x.neg()?.exp()? + 1f64)?.recip(),
        }
    }

    /// Pads dimension `dim` with zeros when needed.
    fn pad(x: &Tensor, dim: usize, lo: usize, hi: usize) -> C<Tensor> {
        if lo == 0 && hi == 0 {
            Ok(x.clone())
        } else {
            x.pad_with_zeros(dim, lo, hi)
        }
    }

    /// A grouped convolution as unfold + matrix product: `cols` gathers, for
    /// each output position and tap, the input value (dimension 2 of the
    /// padded input, flattened), and the weights multiply the gathered
    /// columns. Written with differentiable ops only, so the backward pass is
    /// exact for any stride, dilation and groups.
    fn unfold_conv(
        xp: &Tensor,
        idx: &[u32],
        positions: usize,
        taps: usize,
        w: &Tensor,
        groups: usize,
    ) -> C<Tensor> {
        let (b, c, _) = xp.dims3()?;
        let c_out = w.dim(0)?;
        let (cig, cog) = (c / groups, c_out / groups);
        let idx = Tensor::from_vec(idx.to_vec(), idx.len(), xp.device())?;
        let cols = xp.index_select(&idx, 2)?; // (B, C, P·T)
        let mut outs = Vec::with_capacity(groups);
        for g in 0..groups {
            let cg = cols
                .narrow(1, g * cig, cig)?
                .reshape((b, cig, positions, taps))?
                .permute((0, 2, 1, 3))?
                .reshape((b * positions, cig * taps))?;
            let wg = w.narrow(0, g * cog, cog)?.reshape((cog, cig * taps))?;
            let y = cg.matmul(&wg.t()?)?.reshape((b, positions, cog))?;
            outs.push(y.transpose(1, 2)?);
        }
        let y = if groups == 1 {
            outs.remove(0)
        } else {
            Tensor::cat(&outs, 1)?
        };
        y.contiguous()
    }

    fn conv1d_op(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv1dParams) -> C<Tensor> {
        let l = x.dim(2)?;
        let (pl, pr) = p.pads(l);
        let lo = p.l_out(l);
        let idx: Vec<u32> = (0..lo)
            .flat_map(|j| (0..p.k).map(move |t| (j * p.stride + t * p.dilation) as u32))
            .collect();
        let y = unfold_conv(&pad(x, 2, pl, pr)?, &idx, lo, p.k, w, p.groups)?;
        match b {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1))?),
            None => Ok(y),
        }
    }

    fn conv2d_op(x: &Tensor, w: &Tensor, b: Option<&Tensor>, p: &Conv2dParams) -> C<Tensor> {
        let (bsz, c, h, wd) = x.dims4()?;
        let ((pt, pb), (pl, pr)) = p.pads(h, wd);
        let (ho, wo) = p.out_hw(h, wd);
        let wp = wd + pl + pr;
        let xp = pad(&pad(x, 2, pt, pb)?, 3, pl, pr)?;
        let hp = h + pt + pb;
        let mut idx = Vec::with_capacity(ho * wo * p.kh * p.kw);
        for oy in 0..ho {
            for ox in 0..wo {
                for ky in 0..p.kh {
                    for kx in 0..p.kw {
                        let iy = oy * p.stride.0 + ky * p.dilation.0;
                        let ix = ox * p.stride.1 + kx * p.dilation.1;
                        idx.push((iy * wp + ix) as u32);
                    }
                }
            }
        }
        let flat = xp.reshape((bsz, c, hp * wp))?;
        let y = unfold_conv(&flat, &idx, ho * wo, p.kh * p.kw, w, p.groups)?
            .reshape((bsz, p.c_out, ho, wo))?;
        match b {
            Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?),
            None => Ok(y),
        }
    }

    /// Pooling with windows that tile the input (stride = size), as a
    /// reshape and a reduction: differentiable with candle's own reductions.
    /// (candle 0.11's max_pool2d gradient is scaled by 1/window, so it is
    /// not used.) Rows and columns that no window reaches are cut off.
    fn pool2d_op(
        x: &Tensor,
        kind: PoolKind,
        size: (usize, usize),
        stride: (usize, usize),
    ) -> C<Tensor> {
        if size != stride {
            candle_core::bail!(
                "pooling with a stride {stride:?} other than its size {size:?} is not supported on candle; use --device native"
            );
        }
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = (h / size.0, w / size.1);
        let win = x
            .narrow(2, 0, ho * size.0)?
            .narrow(3, 0, wo * size.1)?
            .reshape((b, c, ho, size.0, wo, size.1))?;
        match kind {
            PoolKind::Max => {
                max_first(&win.permute((0, 1, 2, 4, 3, 5))?.contiguous()?.reshape((
                    b,
                    c,
                    ho,
                    wo,
                    size.0 * size.1,
                ))?)
            }
            PoolKind::Avg => win.mean(5)?.mean(3),
        }
    }

    /// The maximum over the last dimension, differentiable with the native
    /// kernels' convention: the gradient goes to the first maximum of each
    /// window (candle's own max gives it to every tied value, which after a
    /// ReLU, with its exact zeros, is no subgradient).
    fn max_first(win: &Tensor) -> C<Tensor> {
        let d = win.rank() - 1;
        let taps = win.dim(d)?;
        let first = win.detach().argmax_keepdim(d)?;
        let mut shape = vec![1; win.rank()];
        shape[d] = taps;
        let at = Tensor::arange(0u32, taps as u32, win.device())?.reshape(shape)?;
        first
            .broadcast_eq(&at)?
            .where_cond(win, &win.zeros_like()?)?
            .sum(d)
    }

    /// Pooling over any windows (stride other than the size, padding): the
    /// window values are gathered from the padded planes (flattened in
    /// dimension 2), then reduced. Padding is −∞ for max; an average divides
    /// by the window's values inside the input, as the native kernels do.
    fn pool_gather(
        xp: &Tensor,
        kind: PoolKind,
        idx: &[u32],
        positions: usize,
        taps: usize,
        counts: &[f32],
    ) -> C<Tensor> {
        let (b, c, _) = xp.dims3()?;
        let idx = Tensor::from_vec(idx.to_vec(), idx.len(), xp.device())?;
        let win = xp.index_select(&idx, 2)?.reshape((b, c, positions, taps))?;
        match kind {
            PoolKind::Max => max_first(&win),
            PoolKind::Avg => {
                let n = Tensor::from_vec(counts.to_vec(), positions, xp.device())?;
                win.sum(3)?.broadcast_div(&n)
            }
        }
    }

    /// Pads dimension `dim` with `lo` and `hi` values of `v`.
    fn pad_value(x: &Tensor, dim: usize, lo: usize, hi: usize, v: f32) -> C<Tensor> {
        if lo == 0 && hi == 0 {
            return Ok(x.clone());
        }
        if v == 0.0 {
            return x.pad_with_zeros(dim, lo, hi);
        }
        let side = |n: usize| -> C<Tensor> {
            let mut shape = x.dims().to_vec();
            shape[dim] = n;
            Tensor::full(v, shape, x.device())
        };
        let mut parts = Vec::new();
        if lo > 0 {
            parts.push(side(lo)?);
        }
        parts.push(x.clone());
        if hi > 0 {
            parts.push(side(hi)?);
        }
        Tensor::cat(&parts, dim)
    }

    fn pad_fill(kind: PoolKind) -> f32 {
        match kind {
            PoolKind::Max => f32::NEG_INFINITY,
            PoolKind::Avg => 0.0,
        }
    }

    fn pool1d_op(x: &Tensor, p: &Pool1dParams) -> C<Tensor> {
        let (b, c, l) = x.dims3()?;
        if p.stride == p.size && p.pad == 0 {
            let y = pool2d_op(
                &x.reshape((b, c, 1, l))?,
                p.kind,
                (1, p.size),
                (1, p.stride),
            )?;
            let lo = y.dim(3)?;
            y.reshape((b, c, lo))
        } else {
            let lo = p.l_out(l);
            let xp = pad_value(x, 2, p.pad, p.pad, pad_fill(p.kind))?;
            let mut idx = Vec::with_capacity(lo * p.size);
            let mut counts = Vec::with_capacity(lo);
            for j in 0..lo {
                let start = j * p.stride;
                for t in 0..p.size {
                    idx.push((start + t) as u32);
                }
                let inside = (start..start + p.size)
                    .filter(|&i| i >= p.pad && i < p.pad + l)
                    .count();
                counts.push(inside as f32);
            }
            pool_gather(&xp, p.kind, &idx, lo, p.size, &counts)
        }
    }

    fn pool2d_any(x: &Tensor, p: &Pool2dParams) -> C<Tensor> {
        if p.stride == p.size && p.pad == (0, 0) {
            return pool2d_op(x, p.kind, p.size, p.stride);
        }
        let (b, c, h, w) = x.dims4()?;
        let (ho, wo) = p.out_hw(h, w);
        let fill = pad_fill(p.kind);
        let xp = pad_value(
            &pad_value(x, 2, p.pad.0, p.pad.0, fill)?,
            3,
            p.pad.1,
            p.pad.1,
            fill,
        )?;
        let (hp, wp) = (h + 2 * p.pad.0, w + 2 * p.pad.1);
        let taps = p.size.0 * p.size.1;
        let mut idx = Vec::with_capacity(ho * wo * taps);
        let mut counts = Vec::with_capacity(ho * wo);
        for oy in 0..ho {
            for ox in 0..wo {
                let (y0, x0) = (oy * p.stride.0, ox * p.stride.1);
                let mut inside = 0;
                for ky in 0..p.size.0 {
                    for kx in 0..p.size.1 {
                        let (iy, ix) = (y0 + ky, x0 + kx);
                        idx.push((iy * wp + ix) as u32);
                        if iy >= p.pad.0 && iy < p.pad.0 + h && ix >= p.pad.1 && ix < p.pad.1 + w {
                            inside += 1;
                        }
                    }
                }
                counts.push(inside as f32);
            }
        }
        pool_gather(
            &xp.reshape((b, c, hp * wp))?,
            p.kind,
            &idx,
            ho * wo,
            taps,
            &counts,
        )?
        .reshape((b, c, ho, wo))
    }

    fn global_op(x: &Tensor, kind: PoolKind) -> C<Tensor> {
        let f = x.flatten_from(2)?;
        match kind {
            PoolKind::Max => max_first(&f),
            PoolKind::Avg => f.mean(D::Minus1),
        }
    }

    fn dense_op(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> C<Tensor> {
        let y = x.matmul(&w.t()?)?;
        match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    /// The shape of per-channel statistics for an input of rank `r`: (1, C, 1, …).
    fn channel_shape(x: &Tensor) -> Vec<usize> {
        let mut s = vec![1; x.rank()];
        s[1] = x.dim(1).unwrap_or(1);
        s
    }

    /// Dimensions reduced by batch norm: all but the channels.
    fn bn_dims(x: &Tensor) -> Vec<usize> {
        (0..x.rank()).filter(|&d| d != 1).collect()
    }

    impl Backend for Candle {
        type Tensor = Tensor;

        fn name(&self) -> String {
            format!("candle ({})", self.which)
        }

        fn tensor(&self, data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
            if data.len() != shape.iter().product::<usize>() {
                return Err(NnError::Shape {
                    op: "tensor",
                    message: format!("{} values for shape {shape:?}", data.len()),
                });
            }
            Tensor::from_vec(data, shape, &self.device).map_err(|e| self.err(e))
        }

        fn to_vec(&self, t: &Tensor) -> Result<Vec<f32>> {
            t.flatten_all()
                .and_then(|f| f.to_vec1::<f32>())
                .map_err(|e| self.err(e))
        }

        fn shape(&self, t: &Tensor) -> Vec<usize> {
            t.dims().to_vec()
        }

        fn reshape(&self, t: Tensor, shape: &[usize]) -> Result<Tensor> {
            t.reshape(shape).map_err(|e| self.err(e))
        }

        fn conv1d(
            &self,
            x: &Tensor,
            w: &Tensor,
            b: Option<&Tensor>,
            p: &Conv1dParams,
        ) -> Result<Tensor> {
            conv1d_op(x, w, b, p).map_err(|e| self.err(e))
        }

        fn conv1d_backward(
            &self,
            x: &Tensor,
            w: &Tensor,
            dy: &Tensor,
            p: &Conv1dParams,
            need_dx: bool,
        ) -> Result<Grads<Tensor>> {
            let p = *p;
            let g = self.vjp(&[x, w], dy, |t| conv1d_op(&t[0], &t[1], None, &p))?;
            let db = dy.sum((0, 2)).map_err(|e| self.err(e))?;
            Ok((need_dx.then(|| g[0].clone()), g[1].clone(), db))
        }

        fn conv2d(
            &self,
            x: &Tensor,
            w: &Tensor,
            b: Option<&Tensor>,
            p: &Conv2dParams,
        ) -> Result<Tensor> {
            conv2d_op(x, w, b, p).map_err(|e| self.err(e))
        }

        fn conv2d_backward(
            &self,
            x: &Tensor,
            w: &Tensor,
            dy: &Tensor,
            p: &Conv2dParams,
            need_dx: bool,
        ) -> Result<Grads<Tensor>> {
            let p = *p;
            let g = self.vjp(&[x, w], dy, |t| conv2d_op(&t[0], &t[1], None, &p))?;
            let db = dy.sum((0, 2, 3)).map_err(|e| self.err(e))?;
            Ok((need_dx.then(|| g[0].clone()), g[1].clone(), db))
        }

        fn pool1d(&self, x: &Tensor, p: &Pool1dParams) -> Result<Tensor> {
            pool1d_op(x, p).map_err(|e| self.err(e))
        }

        fn pool1d_backward(&self, x: &Tensor, dy: &Tensor, p: &Pool1dParams) -> Result<Tensor> {
            let p = *p;
            Ok(self.vjp(&[x], dy, |t| pool1d_op(&t[0], &p))?.remove(0))
        }

        fn pool2d(&self, x: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
            pool2d_any(x, p).map_err(|e| self.err(e))
        }

        fn pool2d_backward(&self, x: &Tensor, dy: &Tensor, p: &Pool2dParams) -> Result<Tensor> {
            let p = *p;
            Ok(self.vjp(&[x], dy, |t| pool2d_any(&t[0], &p))?.remove(0))
        }

        fn global_pool(&self, x: &Tensor, kind: PoolKind) -> Result<Tensor> {
            global_op(x, kind).map_err(|e| self.err(e))
        }

        fn global_pool_backward(&self, x: &Tensor, dy: &Tensor, kind: PoolKind) -> Result<Tensor> {
            Ok(self.vjp(&[x], dy, |t| global_op(&t[0], kind))?.remove(0))
        }

        fn dense(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
            dense_op(x, w, b).map_err(|e| self.err(e))
        }

        fn dense_backward(
            &self,
            x: &Tensor,
            w: &Tensor,
            dy: &Tensor,
            need_dx: bool,
        ) -> Result<Grads<Tensor>> {
            let run = || -> C<Grads<Tensor>> {
                let dw = dy.t()?.matmul(x)?;
                let db = dy.sum(0)?;
                let dx = if need_dx { Some(dy.matmul(w)?) } else { None };
                Ok((dx, dw, db))
            };
            run().map_err(|e| self.err(e))
        }

        fn activation(&self, x: &Tensor, a: Activation) -> Result<Tensor> {
            act(x, a).map_err(|e| self.err(e))
        }

        fn activation_backward(&self, x: &Tensor, dy: &Tensor, a: Activation) -> Result<Tensor> {
            match a {
                // At the kink the native convention, f′(0) = 0 (ReLU) or the
                // slope (leaky): candle's autograd takes f′(0) = 1, which
                // differs where an input is exactly 0 (after another ReLU).
                Activation::Relu | Activation::LeakyRelu(_) => {
                    let slope = match a {
                        Activation::LeakyRelu(s) => s as f64,
                        _ => 0.0,
                    };
                    let run = || -> C<Tensor> {
                        let d = x
                            .gt(0f64)?
                            .to_dtype(DType::F32)?
                            .affine(1.0 - slope, slope)?;
                        dy * d
                    };
                    run().map_err(|e| self.err(e))
                }
                _ => Ok(self.vjp(&[x], dy, |t| act(&t[0], a))?.remove(0)),
            }
        }

        fn batchnorm_train(
            &self,
            x: &Tensor,
            gamma: &Tensor,
            beta: &Tensor,
            running_mean: &Tensor,
            running_var: &Tensor,
            eps: f32,
            momentum: f32,
        ) -> Result<BnTrain<Tensor>> {
            let run = || -> C<BnTrain<Tensor>> {
                let cs = channel_shape(x);
                let dims = bn_dims(x);
                let n = (x.elem_count() / x.dim(1)?) as f64;
                let mean = x.mean_keepdim(dims.as_slice())?;
                let centred = x.broadcast_sub(&mean)?;
                let var = centred.sqr()?.mean_keepdim(dims.as_slice())?;
                let inv_std = (var.clone() + eps as f64)?.sqrt()?.recip()?;
                let y = centred
                    .broadcast_mul(&inv_std)?
                    .broadcast_mul(&gamma.reshape(cs.as_slice())?)?
                    .broadcast_add(&beta.reshape(cs.as_slice())?)?;
                let c = x.dim(1)?;
                let unbiased = if n > 1.0 {
                    var.affine(n / (n - 1.0), 0.0)?
                } else {
                    var
                };
                let m = momentum as f64;
                let rm = (running_mean.affine(1.0 - m, 0.0)? + mean.reshape(c)?.affine(m, 0.0)?)?;
                let rv =
                    (running_var.affine(1.0 - m, 0.0)? + unbiased.reshape(c)?.affine(m, 0.0)?)?;
                Ok((
                    y,
                    BnSaved {
                        mean: mean.reshape(c)?,
                        inv_std: inv_std.reshape(c)?,
                    },
                    rm,
                    rv,
                ))
            };
            run().map_err(|e| self.err(e))
        }

        fn batchnorm_infer(
            &self,
            x: &Tensor,
            gamma: &Tensor,
            beta: &Tensor,
            running_mean: &Tensor,
            running_var: &Tensor,
            eps: f32,
        ) -> Result<Tensor> {
            let run = || -> C<Tensor> {
                let cs = channel_shape(x);
                let inv = (running_var.clone() + eps as f64)?.sqrt()?.recip()?;
                x.broadcast_sub(&running_mean.reshape(cs.as_slice())?)?
                    .broadcast_mul(&(inv * gamma)?.reshape(cs.as_slice())?)?
                    .broadcast_add(&beta.reshape(cs.as_slice())?)
            };
            run().map_err(|e| self.err(e))
        }

        fn batchnorm_backward(
            &self,
            x: &Tensor,
            gamma: &Tensor,
            saved: &BnSaved<Tensor>,
            dy: &Tensor,
        ) -> Result<BnGrads<Tensor>> {
            // The closed form, with the batch statistics of the forward pass.
            let run = || -> C<BnGrads<Tensor>> {
                let cs = channel_shape(x);
                let dims = bn_dims(x);
                let c = x.dim(1)?;
                let mean = saved.mean.reshape(cs.as_slice())?;
                let inv = saved.inv_std.reshape(cs.as_slice())?;
                let xhat = x.broadcast_sub(&mean)?.broadcast_mul(&inv)?;
                let dbeta = dy.sum_keepdim(dims.as_slice())?;
                let dgamma = (dy * &xhat)?.sum_keepdim(dims.as_slice())?;
                let n = (x.elem_count() / c) as f64;
                // dx = γ·inv/n · (n·dy − Σdy − x̂·Σ(dy·x̂))
                let inner = dy
                    .affine(n, 0.0)?
                    .broadcast_sub(&dbeta)?
                    .broadcast_sub(&xhat.broadcast_mul(&dgamma)?)?;
                let scale = (gamma
                    .reshape(cs.as_slice())?
                    .broadcast_mul(&inv)?
                    .affine(1.0 / n, 0.0))?;
                let dx = inner.broadcast_mul(&scale)?;
                Ok((dx, dgamma.reshape(c)?, dbeta.reshape(c)?))
            };
            run().map_err(|e| self.err(e))
        }

        fn dropout_mask(&self, shape: &[usize], rate: f32, seed: u64) -> Result<Tensor> {
            // The native backend's mask, so that both backends drop the same units.
            let mut m = vec![0f32; shape.iter().product()];
            kernels::norm::dropout_mask(rate, seed, &mut m)?;
            self.tensor(m, shape)
        }

        fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
            (a * b).map_err(|e| self.err(e))
        }

        fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
            (a + b).map_err(|e| self.err(e))
        }

        fn concat_channels(&self, parts: &[&Tensor]) -> Result<Tensor> {
            Tensor::cat(parts, 1).map_err(|e| self.err(e))
        }

        fn split_channels(&self, t: &Tensor, sizes: &[usize]) -> Result<Vec<Tensor>> {
            let mut start = 0;
            sizes
                .iter()
                .map(|&n| {
                    let part = t.narrow(1, start, n).and_then(|p| p.contiguous());
                    start += n;
                    part.map_err(|e| self.err(e))
                })
                .collect()
        }

        fn add_scaled(&self, a: &mut Tensor, b: &Tensor, s: f32) -> Result<()> {
            *a = (&*a + b.affine(s as f64, 0.0).map_err(|e| self.err(e))?)
                .map_err(|e| self.err(e))?;
            Ok(())
        }

        fn add_penalty(&self, w: &Tensor, grad: &mut Tensor, l1: f32, l2: f32) -> Result<f32> {
            if l1 == 0.0 && l2 == 0.0 {
                return Ok(0.0);
            }
            let run = || -> C<(Tensor, f32)> {
                let g = ((&*grad + w.sign()?.affine(l1 as f64, 0.0)?)?
                    + w.affine(2.0 * l2 as f64, 0.0)?)?;
                let pen = (w.abs()?.sum_all()?.affine(l1 as f64, 0.0)?
                    + w.sqr()?.sum_all()?.affine(l2 as f64, 0.0)?)?
                .to_scalar::<f32>()?;
                Ok((g, pen))
            };
            let (g, pen) = run().map_err(|e| self.err(e))?;
            *grad = g;
            Ok(pen)
        }

        fn update(
            &self,
            param: &mut Tensor,
            grad: &Tensor,
            state: &mut Vec<Tensor>,
            u: &Update,
        ) -> Result<()> {
            let run = |param: &Tensor, state: &mut Vec<Tensor>| -> C<Tensor> {
                match *u {
                    Update::Sgd {
                        lr,
                        momentum,
                        nesterov,
                        weight_decay,
                    } => {
                        if state.is_empty() {
                            state.push(param.zeros_like()?);
                        }
                        let g = (grad + param.affine(weight_decay as f64, 0.0)?)?;
                        let v = (state[0].affine(momentum as f64, 0.0)? + &g)?;
                        let step = if nesterov {
                            (&g + v.affine(momentum as f64, 0.0)?)?
                        } else {
                            v.clone()
                        };
                        state[0] = v;
                        param - step.affine(lr as f64, 0.0)?
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
                            state.push(param.zeros_like()?);
                            state.push(param.zeros_like()?);
                        }
                        let (b1, b2) = (beta1 as f64, beta2 as f64);
                        let c1 = 1.0 / (1.0 - beta1.powi(step as i32)) as f64;
                        let c2 = 1.0 / (1.0 - beta2.powi(step as i32)) as f64;
                        let (wd_grad, wd_direct) = if decoupled {
                            (0.0, (lr * weight_decay) as f64)
                        } else {
                            (weight_decay as f64, 0.0)
                        };
                        let g = (grad + param.affine(wd_grad, 0.0)?)?;
                        let m = (state[0].affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
                        let v = (state[1].affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
                        let denom = (v.affine(c2, 0.0)?.sqrt()? + eps as f64)?;
                        let stepv = (m.affine(c1, 0.0)? / denom)?;
                        state[0] = m;
                        state[1] = v;
                        (param - param.affine(wd_direct, 0.0)?)? - stepv.affine(lr as f64, 0.0)?
                    }
                }
            };
            *param = run(param, state).map_err(|e| self.err(e))?.detach();
            for t in state.iter_mut() {
                *t = t.detach();
            }
            Ok(())
        }
    }
}
