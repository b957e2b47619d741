//! 1D convolution over NCL tensors (batch, channels, length), with stride,
//! dilation, padding and groups; weights are (c_out, c_in / groups, k), as in
//! PyTorch and candle.
//!
//! Stride 1 runs with no im2col copy: the rows of the GEMM's right operand
//! are shifted views of the padded input ([`gemm_rows`]); the weight
//! gradient is a tile of long dot products ([`gemm_dots`]). Stride > 1
//! gathers columns first. Work is spread over the batch with rayon, and
//! inside the GEMM when the batch is a single sample.

use crate::error::{check_len, require, KernelError};
use rayon::prelude::*;

use crate::gemm::{gemm_dots, gemm_rows, gemm_rows_bias, transpose_groups};
use crate::scratch::{sum, with_scratch};
use crate::simd::{SendPtr, SimdPath};

/// How the input is padded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding.
    Valid,
    /// Keras' `same`: the output length is ceil(l_in / stride), padding
    /// split as evenly as possible, the extra element on the right.
    Same,
    /// Explicit left and right padding.
    Explicit(usize, usize),
}

/// The shape arithmetic and options of a 1D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dParams {
    pub c_in: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub dilation: usize,
    pub padding: Padding,
    pub groups: usize,
}

impl Conv1dParams {
    /// A valid (unpadded), stride-1, ungrouped convolution.
    pub fn new(c_in: usize, c_out: usize, k: usize) -> Self {
        Conv1dParams {
            c_in,
            c_out,
            k,
            stride: 1,
            dilation: 1,
            padding: Padding::Valid,
            groups: 1,
        }
    }

    pub fn stride(mut self, s: usize) -> Self {
        self.stride = s;
        self
    }

    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = d;
        self
    }

    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = p;
        self
    }

    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    /// The span of the kernel: dilation·(k − 1) + 1.
    pub fn span(&self) -> usize {
        self.dilation * (self.k - 1) + 1
    }

    /// Left and right padding for an input of length `l_in`.
    pub fn pads(&self, l_in: usize) -> (usize, usize) {
        match self.padding {
            Padding::Valid => (0, 0),
            Padding::Explicit(l, r) => (l, r),
            Padding::Same => {
                let out = l_in.div_ceil(self.stride);
                let total = ((out.max(1) - 1) * self.stride + self.span()).saturating_sub(l_in);
                (total / 2, total - total / 2)
            }
        }
    }

    /// The output length for an input of length `l_in` (0 if the kernel does not fit).
    pub fn l_out(&self, l_in: usize) -> usize {
        let (pl, pr) = self.pads(l_in);
        let lp = l_in + pl + pr;
        if lp < self.span() {
            0
        } else {
            (lp - self.span()) / self.stride + 1
        }
    }

    /// Input channels per group.
    pub fn c_in_g(&self) -> usize {
        self.c_in / self.groups
    }

    /// Output channels per group.
    pub fn c_out_g(&self) -> usize {
        self.c_out / self.groups
    }

    /// Number of weights: c_out × c_in/groups × k.
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in_g() * self.k
    }

    /// Checks the options against an input length.
    pub fn validate(&self, l_in: usize) -> Result<(), String> {
        if self.c_in == 0
            || self.c_out == 0
            || self.k == 0
            || self.stride == 0
            || self.dilation == 0
            || self.groups == 0
        {
            return Err(format!("conv1d: channels, kernel, stride, dilation and groups must be at least 1 ({self:?})"));
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(format!(
                "conv1d: groups = {} must divide both the input channels ({}) and the filters ({})",
                self.groups, self.c_in, self.c_out
            ));
        }
        if self.l_out(l_in) == 0 {
            return Err(format!(
                "conv1d: a kernel spanning {} positions does not fit an input of length {l_in} with padding {:?}",
                self.span(),
                self.pads(l_in)
            ));
        }
        Ok(())
    }

    /// Multiply-adds × 2 of the forward pass over a batch.
    pub fn flops(&self, batch: usize, l_in: usize) -> f64 {
        2.0 * (batch * self.c_out * self.l_out(l_in) * self.c_in_g() * self.k) as f64
    }
}

/// The path a convolution runs on: the thread's, except that one input
/// channel per group (a genomic CNN's first layer, a depthwise layer) runs
/// in f32 on the bf16 path. Its k products per output leave nothing for
/// bf16's pairs to speed up, and rounding its input costs more than they
/// do; the fused and unfused forms then agree at f32's precision.
fn path_for(p: &Conv1dParams) -> SimdPath {
    let path = SimdPath::current();
    if p.c_in_g() == 1 {
        path.fp32()
    } else {
        path
    }
}

/// Runs `f` on one sample's input (c_in × l) padded to c_in × (pl + l + pr),
/// copying only when there is padding.
fn with_padded<R>(p: &Conv1dParams, x: &[f32], l: usize, f: impl FnOnce(&[f32]) -> R) -> R {
    let (pl, pr) = p.pads(l);
    if pl + pr == 0 {
        return f(x);
    }
    let lp = l + pl + pr;
    with_scratch(p.c_in * lp, |xp| {
        for ch in 0..p.c_in {
            let row = &mut xp[ch * lp..(ch + 1) * lp];
            row[..pl].fill(0.0);
            row[pl..pl + l].copy_from_slice(&x[ch * l..(ch + 1) * l]);
            row[pl + l..].fill(0.0);
        }
        f(xp)
    })
}

/// Gathers columns: col[(ci, t), j] = xp[ci, j·stride + t·dil] for channels of group `g`.
fn im2col(p: &Conv1dParams, xp: &[f32], lp: usize, lo: usize, g: usize, col: &mut [f32]) {
    let (cig, k) = (p.c_in_g(), p.k);
    for ci in 0..cig {
        let row = &xp[(g * cig + ci) * lp..(g * cig + ci + 1) * lp];
        for t in 0..k {
            let dst = &mut col[(ci * k + t) * lo..(ci * k + t + 1) * lo];
            for (j, d) in dst.iter_mut().enumerate() {
                *d = row[j * p.stride + t * p.dilation];
            }
        }
    }
}

/// Forward pass: y (batch × c_out × l_out) = conv(x (batch × c_in × l)) + bias.
///
/// # Panics
/// If the options are invalid for `l` or a slice has the wrong length.
pub fn conv1d_forward(
    p: &Conv1dParams,
    x: &[f32],
    batch: usize,
    l: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "conv1d_forward",
        message,
    })?;
    let lo = p.l_out(l);
    check_len("conv1d_forward", "x", x.len(), batch * p.c_in * l)?;
    check_len("conv1d_forward", "weight", w.len(), p.weight_len())?;
    check_len("conv1d_forward", "y", y.len(), batch * p.c_out * lo)?;
    let path = path_for(p);
    let inner_par = batch == 1;
    let sample =
        |(xb, yb): (&[f32], &mut [f32])| forward_sample(path, p, xb, l, lo, w, bias, yb, inner_par);
    if batch > 1 {
        x.par_chunks(p.c_in * l)
            .zip(y.par_chunks_mut(p.c_out * lo))
            .for_each(sample);
    } else {
        x.chunks(p.c_in * l)
            .zip(y.chunks_mut(p.c_out * lo))
            .for_each(sample);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn forward_sample(
    path: SimdPath,
    p: &Conv1dParams,
    x: &[f32],
    l: usize,
    lo: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    par: bool,
) {
    let (pl, pr) = p.pads(l);
    let lp = l + pl + pr;
    let (cig, cog, k, dil) = (p.c_in_g(), p.c_out_g(), p.k, p.dilation);
    let run = |xp: &[f32], y: &mut [f32]| {
        for g in 0..p.groups {
            let wg = &w[g * cog * cig * k..(g + 1) * cog * cig * k];
            let yg = &mut y[g * cog * lo..(g + 1) * cog * lo];
            // The bias enters the GEMM's accumulators: no extra pass over y.
            let bg = bias.map(|b| &b[g * cog..(g + 1) * cog]);
            if p.stride == 1 {
                let boff = move |r: usize| (g * cig + r / k) * lp + (r % k) * dil;
                gemm_rows_bias(
                    path,
                    cog,
                    lo,
                    cig * k,
                    wg,
                    cig * k,
                    xp,
                    boff,
                    bg,
                    yg,
                    lo,
                    false,
                    par,
                );
            } else {
                with_scratch(cig * k * lo, |col| {
                    im2col(p, xp, lp, lo, g, col);
                    gemm_rows_bias(
                        path,
                        cog,
                        lo,
                        cig * k,
                        wg,
                        cig * k,
                        col,
                        |r| r * lo,
                        bg,
                        yg,
                        lo,
                        false,
                        par,
                    );
                });
            }
        }
    };
    with_padded(p, x, l, |xp| run(xp, y));
}

/// Backward pass. Given the forward input `x` and the output gradient `dy`,
/// adds the weight gradient to `dw`, the bias gradient to `db`, and writes
/// the input gradient to `dx` (when asked for).
///
/// # Panics
/// If the options are invalid for `l` or a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_backward(
    p: &Conv1dParams,
    x: &[f32],
    batch: usize,
    l: usize,
    w: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "conv1d_backward",
        message,
    })?;
    let lo = p.l_out(l);
    check_len("conv1d_backward", "x", x.len(), batch * p.c_in * l)?;
    check_len("conv1d_backward", "weight", w.len(), p.weight_len())?;
    check_len("conv1d_backward", "dy", dy.len(), batch * p.c_out * lo)?;
    check_len("conv1d_backward", "dw", dw.len(), p.weight_len())?;
    let path = path_for(p);

    if let Some(db) = db {
        check_len("conv1d_backward", "db", db.len(), p.c_out)?;
        for b in 0..batch {
            for co in 0..p.c_out {
                let row = &dy[(b * p.c_out + co) * lo..(b * p.c_out + co + 1) * lo];
                db[co] += sum(row) as f32;
            }
        }
    }

    // Weight gradient: partial sums over fixed runs of samples, then reduced
    // in order (the same numbers on any thread count).
    let wl = p.weight_len();
    let chunk = crate::grad_chunk(batch);
    let partial: Vec<Vec<f32>> = (0..batch.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; wl];
            for b in c * chunk..((c + 1) * chunk).min(batch) {
                weight_grad_sample(
                    path,
                    p,
                    &x[b * p.c_in * l..(b + 1) * p.c_in * l],
                    l,
                    lo,
                    &dy[b * p.c_out * lo..(b + 1) * p.c_out * lo],
                    &mut acc,
                    batch == 1,
                );
            }
            acc
        })
        .collect();
    for part in partial {
        dw.iter_mut().zip(part).for_each(|(d, v)| *d += v);
    }

    if let Some(dx) = dx {
        check_len("conv1d_backward", "dx", dx.len(), batch * p.c_in * l)?;
        let dxp = SendPtr(dx.as_mut_ptr());
        let sample = |b: usize| {
            // Each sample writes its own disjoint slice of dx.
            let dxb = unsafe {
                std::slice::from_raw_parts_mut(dxp.get().add(b * p.c_in * l), p.c_in * l)
            };
            input_grad_sample(
                path,
                p,
                l,
                lo,
                w,
                &dy[b * p.c_out * lo..(b + 1) * p.c_out * lo],
                dxb,
                batch == 1,
            );
        };
        if batch > 1 {
            (0..batch).into_par_iter().for_each(sample);
        } else {
            (0..batch).for_each(sample);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn weight_grad_sample(
    path: SimdPath,
    p: &Conv1dParams,
    x: &[f32],
    l: usize,
    lo: usize,
    dy: &[f32],
    dw: &mut [f32],
    par: bool,
) {
    let (pl, pr) = p.pads(l);
    let lp = l + pl + pr;
    let (cig, cog, k, dil) = (p.c_in_g(), p.c_out_g(), p.k, p.dilation);
    let run = |xp: &[f32], dw: &mut [f32]| {
        for g in 0..p.groups {
            let dwg = &mut dw[g * cog * cig * k..(g + 1) * cog * cig * k];
            let aoff = move |i: usize| (g * cog + i) * lo;
            if p.stride == 1 {
                let boff = move |r: usize| (g * cig + r / k) * lp + (r % k) * dil;
                gemm_dots(
                    path,
                    cog,
                    cig * k,
                    lo,
                    dy,
                    aoff,
                    xp,
                    boff,
                    dwg,
                    cig * k,
                    true,
                    par,
                );
            } else {
                with_scratch(cig * k * lo, |col| {
                    im2col(p, xp, lp, lo, g, col);
                    gemm_dots(
                        path,
                        cog,
                        cig * k,
                        lo,
                        dy,
                        aoff,
                        col,
                        |r| r * lo,
                        dwg,
                        cig * k,
                        true,
                        par,
                    );
                });
            }
        }
    };
    with_padded(p, x, l, |xp| run(xp, dw));
}

/// The weights (c_out, c_in / groups, k) rearranged per group as
/// wt[ci][(co, t)]: the left operand of the input gradient's GEMM.
fn transpose_weights(p: &Conv1dParams, w: &[f32], wt: &mut [f32]) {
    transpose_groups(w, p.groups, p.c_out_g(), p.c_in_g(), p.k, wt);
}

#[allow(clippy::too_many_arguments)]
fn input_grad_sample(
    path: SimdPath,
    p: &Conv1dParams,
    l: usize,
    lo: usize,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    par: bool,
) {
    let (pl, _) = p.pads(l);
    let (cig, cog, k, dil) = (p.c_in_g(), p.c_out_g(), p.k, p.dilation);
    if p.stride == 1 {
        // dx[ci, j] = Σ_(co,t) w[co, ci, t] · dy[co, j + pl − t·dil], dy zero outside [0, lo),
        // with the weights rearranged per group as wt[ci][(co, t)].
        let front = (k - 1) * dil;
        let ld = front + lo.max(pl + l);
        with_scratch(p.weight_len(), |wt| {
            transpose_weights(p, w, wt);
            with_scratch(p.c_out * ld, |dyp| {
                for co in 0..p.c_out {
                    let row = &mut dyp[co * ld..(co + 1) * ld];
                    row[..front].fill(0.0);
                    row[front..front + lo].copy_from_slice(&dy[co * lo..(co + 1) * lo]);
                    row[front + lo..].fill(0.0);
                }
                for g in 0..p.groups {
                    let wtg = &wt[g * cig * cog * k..(g + 1) * cig * cog * k];
                    let boff = move |r: usize| (g * cog + r / k) * ld + front + pl - (r % k) * dil;
                    let dxg = &mut dx[g * cig * l..(g + 1) * cig * l];
                    gemm_rows(
                        path,
                        cig,
                        l,
                        cog * k,
                        wtg,
                        cog * k,
                        dyp,
                        boff,
                        dxg,
                        l,
                        false,
                        par,
                    );
                }
            });
        });
    } else {
        // dcol[(ci, t), j] = Σ_co w[co, ci, t] · dy[co, j], then scattered back.
        dx.fill(0.0);
        with_scratch(cig * k * lo, |dcol| {
            for g in 0..p.groups {
                let wg = &w[g * cog * cig * k..(g + 1) * cog * cig * k];
                // A = wgᵀ: row (ci, t) holds w[co, ci, t] for each co, stride cig·k.
                with_scratch(cig * k * cog, |a| {
                    for r in 0..cig * k {
                        for co in 0..cog {
                            a[r * cog + co] = wg[co * cig * k + r];
                        }
                    }
                    gemm_rows(
                        path,
                        cig * k,
                        lo,
                        cog,
                        a,
                        cog,
                        dy,
                        move |co| (g * cog + co) * lo,
                        dcol,
                        lo,
                        false,
                        par,
                    );
                });
                for ci in 0..cig {
                    let dxr = &mut dx[(g * cig + ci) * l..(g * cig + ci + 1) * l];
                    for t in 0..k {
                        let src = &dcol[(ci * k + t) * lo..(ci * k + t + 1) * lo];
                        for (j, &v) in src.iter().enumerate() {
                            let q = j * p.stride + t * dil;
                            if q >= pl && q - pl < l {
                                dxr[q - pl] += v;
                            }
                        }
                    }
                }
            }
        });
    }
}

/// Max pooling of pairs followed by the activation. The mask records, per
/// pooled value, the activation's derivative at the maximum, negated when
/// the second of the pair won: all that the backward pass needs, so that
/// the pooled output itself need not be kept for it. An empty mask: none
/// is written (inference, where no backward pass follows). A bias, when
/// given, is added to each pair's maximum (rather than to both values:
/// rounding is monotonic, so the maximum is the same value, and the pair's
/// winner the same except where the two round to one value).
pub(crate) struct PoolPairs<'a> {
    pub(crate) act: crate::Activation,
    pub(crate) src: &'a [f32],
    pub(crate) bias: Option<f32>,
    pub(crate) y: &'a mut [f32],
    pub(crate) mask: &'a mut [f32],
}

impl pulp::WithSimd for PoolPairs<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, s: S) {
        match self.bias {
            None => self.pool(s, |m| m),
            Some(b) => self.pool(s, move |m| m + b),
        }
    }
}

impl PoolPairs<'_> {
    /// The pooling, with `add` applied to each maximum before the
    /// activation.
    #[inline(always)]
    fn pool<S: pulp::Simd>(self, _s: S, add: impl Fn(f32) -> f32 + Copy) {
        let PoolPairs {
            act, src, y, mask, ..
        } = self;
        let n = y.len();
        let src = &src[..2 * n];
        if mask.is_empty() {
            #[inline(always)]
            fn pool_only(src: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
                for (o, pair) in y.iter_mut().zip(src.chunks_exact(2)) {
                    *o = f(if pair[1] > pair[0] { pair[1] } else { pair[0] });
                }
            }
            return match act {
                crate::Activation::Relu => pool_only(src, y, |m| {
                    let m = add(m);
                    if m > 0.0 {
                        m
                    } else {
                        0.0
                    }
                }),
                crate::Activation::Linear => pool_only(src, y, add),
                a => pool_only(src, y, |m| a.apply(add(m))),
            };
        }
        let mask = &mut mask[..n];
        // Monomorphized per activation, so that each loop is vectorized.
        #[inline(always)]
        fn pool(
            src: &[f32],
            y: &mut [f32],
            mask: &mut [f32],
            f: impl Fn(f32) -> f32,
            d: impl Fn(f32) -> f32,
        ) {
            for j in 0..y.len() {
                let (a, b) = (src[2 * j], src[2 * j + 1]);
                let second = b > a;
                let out = f(if second { b } else { a });
                let der = d(out);
                y[j] = out;
                mask[j] = if second { -der } else { der };
            }
        }
        match act {
            crate::Activation::Relu => pool(
                src,
                y,
                mask,
                |m| {
                    let m = add(m);
                    if m > 0.0 {
                        m
                    } else {
                        0.0
                    }
                },
                |o| if o > 0.0 { 1.0 } else { 0.0 },
            ),
            crate::Activation::Linear => pool(src, y, mask, add, |_| 1.0),
            a => pool(
                src,
                y,
                mask,
                |m| a.apply(add(m)),
                |o| a.derivative_from_output(o),
            ),
        }
    }
}

/// Writes the gradient of the convolution's output at positions
/// q_base, q_base + 1, … (q_base even) into `row`, from the pooled
/// gradient `dy` and the signed-derivative `mask` of [`PoolPairs`]:
/// the winner of each pair gets dy · derivative, the other 0, and
/// positions outside the pooled pairs get 0.
struct UnpoolRow<'a> {
    q_base: isize,
    dy: &'a [f32],
    mask: &'a [f32],
    row: &'a mut [f32],
}

impl pulp::WithSimd for UnpoolRow<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _s: S) {
        let UnpoolRow {
            q_base,
            dy,
            mask,
            row,
        } = self;
        debug_assert!(q_base % 2 == 0);
        let pairs = row.len() / 2;
        let jb = q_base / 2;
        let lp2 = dy.len() as isize;
        // Pairs [pa, pb) of the row map to pooled values jb + pa … jb + pb.
        let pa = (-jb).clamp(0, pairs as isize) as usize;
        let pb = (lp2 - jb).clamp(pa as isize, pairs as isize) as usize;
        row[..2 * pa].fill(0.0);
        row[2 * pb..].fill(0.0);
        if pb > pa {
            let j0 = (jb + pa as isize) as usize;
            let (dy, mask) = (&dy[j0..j0 + pb - pa], &mask[j0..j0 + pb - pa]);
            let out = &mut row[2 * pa..2 * pb];
            // Selects, so that the compiler vectorizes the interleaved
            // stores, and so that the loser of a pair gets 0, not g · 0
            // (a NaN where g is infinite).
            for ((o, &g), &m) in out.chunks_exact_mut(2).zip(dy).zip(mask) {
                let second = m.is_sign_negative();
                o[0] = if second { 0.0 } else { g * m };
                o[1] = if second { g * -m } else { 0.0 };
            }
        }
    }
}

/// Conv-output columns per block of the fused convolution + pooling.
const FUSED_BLOCK: usize = 512;

/// A convolution, a monotonic activation and max pooling over windows of 2
/// (stride 2), fused: the convolution's output is computed block by block
/// into a cache-resident tile and pooled at once, never stored. Writes the
/// pooled output y (batch × c_out × ⌊l_out/2⌋) and, per pooled value, the
/// activation's derivative there, negated when the second of its two
/// inputs was the larger: the mask that the backward pass reads. An empty
/// `mask` asks for none (inference): only y is written.
///
/// # Panics
/// If the options are invalid for `l`, the activation is not monotonic, or
/// a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_act_maxpool2_forward(
    p: &Conv1dParams,
    act: crate::Activation,
    x: &[f32],
    batch: usize,
    l: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    mask: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "conv1d_act_maxpool2_forward",
        message,
    })?;
    require(
        "conv1d_act_maxpool2_forward",
        act.is_monotonic(),
        "fused pooling needs a monotonic activation",
    )?;
    let lo = p.l_out(l);
    let lp2 = lo / 2;
    require(
        "conv1d_act_maxpool2_forward",
        lp2 > 0,
        "conv1d + max-pool 2: the convolution gives fewer than 2 values",
    )?;
    check_len(
        "conv1d_act_maxpool2_forward",
        "x",
        x.len(),
        batch * p.c_in * l,
    )?;
    check_len(
        "conv1d_act_maxpool2_forward",
        "weight",
        w.len(),
        p.weight_len(),
    )?;
    check_len(
        "conv1d_act_maxpool2_forward",
        "y",
        y.len(),
        batch * p.c_out * lp2,
    )?;
    if !mask.is_empty() {
        check_len("conv1d_act_maxpool2_forward", "mask", mask.len(), y.len())?;
    }
    let path = path_for(p);
    let (pl, pr) = p.pads(l);
    let lpad = l + pl + pr;
    let (cig, cog, k, dil) = (p.c_in_g(), p.c_out_g(), p.k, p.dilation);
    let single = crate::conv1d_in1::forward_applies(p, act);
    let relu = act == crate::Activation::Relu;
    let winograd = (!single && crate::winograd::applies(p, path)).then(|| {
        let tr = crate::winograd::Transforms::new(k);
        let u = tr.weights(p, w);
        (tr, u)
    });
    let tiles = (!single && crate::conv_tiles::applies(p, path, lp2))
        .then(|| crate::conv_tiles::TileWeights::new(p, w));
    let sample = |((xb, yb), ab): ((&[f32], &mut [f32]), &mut [f32])| {
        if single {
            return crate::conv1d_in1::forward_sample(path, p, relu, xb, w, bias, lp2, yb, ab);
        }
        if let Some(tw) = &tiles {
            let done = with_padded(p, xb, l, |xp| {
                crate::conv_tiles::forward_pool_sample(tw, act, xp, lpad, bias, lp2, yb, ab)
            });
            if done {
                return;
            }
        }
        if let Some((tr, u)) = &winograd {
            return with_padded(p, xb, l, |xp| {
                crate::winograd::forward_pool_sample(
                    path, tr, p, act, xp, lpad, u, bias, lp2, yb, ab,
                )
            });
        }
        with_padded(p, xb, l, |xp| {
            with_scratch(cog * FUSED_BLOCK, |tile| {
                let mut j0 = 0;
                while j0 < 2 * lp2 {
                    let n = FUSED_BLOCK.min(2 * lp2 - j0);
                    for g in 0..p.groups {
                        let wg = &w[g * cog * cig * k..(g + 1) * cog * cig * k];
                        let bg = bias.map(|b| &b[g * cog..(g + 1) * cog]);
                        let t = &mut tile[..cog * n];
                        if p.stride == 1 {
                            let boff =
                                move |r: usize| (g * cig + r / k) * lpad + (r % k) * dil + j0;
                            gemm_rows_bias(
                                path,
                                cog,
                                n,
                                cig * k,
                                wg,
                                cig * k,
                                xp,
                                boff,
                                bg,
                                t,
                                n,
                                false,
                                false,
                            );
                        } else {
                            with_scratch(cig * k * n, |col| {
                                for ci in 0..cig {
                                    let row = &xp[(g * cig + ci) * lpad..(g * cig + ci + 1) * lpad];
                                    for tt in 0..k {
                                        let dst =
                                            &mut col[(ci * k + tt) * n..(ci * k + tt + 1) * n];
                                        for (jj, d) in dst.iter_mut().enumerate() {
                                            *d = row[(j0 + jj) * p.stride + tt * dil];
                                        }
                                    }
                                }
                                gemm_rows_bias(
                                    path,
                                    cog,
                                    n,
                                    cig * k,
                                    wg,
                                    cig * k,
                                    col,
                                    |r| r * n,
                                    bg,
                                    t,
                                    n,
                                    false,
                                    false,
                                );
                            });
                        }
                        for co in 0..cog {
                            let src = &t[co * n..(co + 1) * n];
                            let o = (g * cog + co) * lp2 + j0 / 2;
                            let yr = &mut yb[o..o + n / 2];
                            let mr = if ab.is_empty() {
                                &mut []
                            } else {
                                &mut ab[o..o + n / 2]
                            };
                            path.dispatch(PoolPairs {
                                act,
                                src,
                                bias: None,
                                y: yr,
                                mask: mr,
                            });
                        }
                    }
                    j0 += n;
                }
            })
        })
    };
    let (xs, ys, as_) = (p.c_in * l, p.c_out * lp2, p.c_out * lp2);
    let no_mask = mask.is_empty();
    if batch > 1 && no_mask {
        x.par_chunks(xs)
            .zip(y.par_chunks_mut(ys))
            .for_each(|s| sample((s, &mut [])));
    } else if batch > 1 {
        x.par_chunks(xs)
            .zip(y.par_chunks_mut(ys))
            .zip(mask.par_chunks_mut(as_))
            .for_each(sample);
    } else if no_mask {
        x.chunks(xs)
            .zip(y.chunks_mut(ys))
            .for_each(|s| sample((s, &mut [])));
    } else {
        x.chunks(xs)
            .zip(y.chunks_mut(ys))
            .zip(mask.chunks_mut(as_))
            .for_each(sample);
    }
    Ok(())
}

/// Columns of the input gradient per block of the fused backward pass. A
/// genomic CNN's second layer (4,998 columns on the peer case) runs in one
/// block: on the bf16 path, 2,048 (three blocks) took 6.8–7.0 ms against
/// 6.2–6.5 for 5,120 in interleaved pairs on a Zen 4 (each block rounds the
/// operands' spans again); 3,072 and 8,192 measured 6.6–6.9 and 6.3–6.8,
/// and the f32 path (Winograd) did not move.
const BACKWARD_BLOCK: usize = 5120;

/// Backward pass of [`conv1d_act_maxpool2_forward`], from its `mask` and
/// the pooled gradient `dy`: adds to `dw` and `db`, and writes `dx` when
/// asked for.
///
/// For stride-1 convolutions padded by less than the kernel's span on each
/// side, the gradient of the convolution's output is never stored either:
/// block by block, it is rebuilt from `dy` and `mask` into a cache-resident
/// tile (with a halo of span − 1 columns), which feeds the input gradient of
/// that block and the weight and bias gradients of the columns it owns.
/// Other options build the whole gradient and run [`conv1d_backward`].
///
/// # Panics
/// If the options are invalid for `l` or a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv1d_act_maxpool2_backward(
    p: &Conv1dParams,
    x: &[f32],
    batch: usize,
    l: usize,
    w: &[f32],
    mask: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "conv1d_act_maxpool2_backward",
        message,
    })?;
    let lo = p.l_out(l);
    let lp2 = lo / 2;
    check_len(
        "conv1d_act_maxpool2_backward",
        "x",
        x.len(),
        batch * p.c_in * l,
    )?;
    check_len(
        "conv1d_act_maxpool2_backward",
        "weight",
        w.len(),
        p.weight_len(),
    )?;
    check_len(
        "conv1d_act_maxpool2_backward",
        "dy",
        dy.len(),
        batch * p.c_out * lp2,
    )?;
    check_len("conv1d_act_maxpool2_backward", "mask", mask.len(), dy.len())?;
    check_len(
        "conv1d_act_maxpool2_backward",
        "dw",
        dw.len(),
        p.weight_len(),
    )?;
    let path = path_for(p);
    let (pl, pr) = p.pads(l);
    let front = (p.k - 1) * p.dilation;
    if dx.is_none() && crate::conv1d_in1::applies(p) {
        if let Some(db) = &db {
            check_len("conv1d_act_maxpool2_backward", "db", db.len(), p.c_out)?;
        }
        let ys = p.c_out * lp2;
        grad_parts(p, batch, dw, db, |b, dw_part, db_part| {
            crate::conv1d_in1::backward_sample(
                path,
                p,
                &x[b * l..(b + 1) * l],
                lp2,
                &dy[b * ys..(b + 1) * ys],
                &mask[b * ys..(b + 1) * ys],
                dw_part,
                db_part,
            )
        });
        return Ok(());
    }
    if p.stride != 1 || pl > front || pr > front {
        return with_scratch(batch * p.c_out * lo, |dz| {
            dz.par_chunks_mut(lo)
                .zip(dy.par_chunks(lp2).zip(mask.par_chunks(lp2)))
                .for_each(|(row, (dyr, mr))| {
                    path.dispatch(UnpoolRow {
                        q_base: 0,
                        dy: dyr,
                        mask: mr,
                        row,
                    })
                });
            conv1d_backward(p, x, batch, l, w, dz, dx, dw, db)
        });
    }
    if let Some(db) = &db {
        check_len("conv1d_act_maxpool2_backward", "db", db.len(), p.c_out)?;
    }
    if let Some(dx) = &dx {
        check_len(
            "conv1d_act_maxpool2_backward",
            "dx",
            dx.len(),
            batch * p.c_in * l,
        )?;
    }
    let winograd = WinogradBackward::new(p, path, w, dx.is_some());
    let wino_dx = winograd.as_ref().is_some_and(|wb| wb.dx.is_some());
    // On AMX-BF16, the input and weight gradients on the tiles, reading
    // the output gradient and the input without packing them per tap.
    let tiles = crate::conv_tiles::applies(p, path, lp2);
    let tiles_dx =
        (tiles && dx.is_some()).then(|| crate::conv_tiles::TileWeights::input_grad(p, w));
    // For the general path's input gradient, the weights per group as
    // wt[ci][(co, t)].
    let general_dx = dx.is_some() && !wino_dx && tiles_dx.is_none();
    let mut wt = vec![0f32; if general_dx { p.weight_len() } else { 0 }];
    if general_dx {
        transpose_weights(p, w, &mut wt);
    }
    let dxp = dx.map(|d| SendPtr(d.as_mut_ptr()));
    let (xs, ys) = (p.c_in * l, p.c_out * lp2);
    grad_parts(p, batch, dw, db, |b, dw_part, db_part| {
        // Each sample writes its own disjoint slice of dx.
        let dxb = dxp.map(|d| unsafe { std::slice::from_raw_parts_mut(d.get().add(b * xs), xs) });
        FusedBackward {
            path,
            p,
            l,
            lp2,
            front,
            wt: &wt,
            winograd: winograd.as_ref(),
            tiles_dx: tiles_dx.as_ref(),
            tiles_dw: tiles,
            mask: &mask[b * ys..(b + 1) * ys],
            dy: &dy[b * ys..(b + 1) * ys],
            par: batch == 1,
        }
        .sample(&x[b * xs..(b + 1) * xs], dxb, dw_part, db_part);
    });
    Ok(())
}

/// Sums a weight and bias gradient over a batch in [`crate::GRAD_PARTS`]
/// partial sums of fixed runs of samples, in parallel, then adds them in
/// order to `dw` and `db`: `sample(b, dw_part, db_part)` adds sample b's.
fn grad_parts(
    p: &Conv1dParams,
    batch: usize,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    sample: impl Fn(usize, &mut [f32], &mut [f64]) + Sync,
) {
    let chunk = crate::grad_chunk(batch);
    let parts: Vec<(Vec<f32>, Vec<f64>)> = (0..batch.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut dw_part = vec![0f32; p.weight_len()];
            let mut db_part = vec![0f64; p.c_out];
            for b in c * chunk..((c + 1) * chunk).min(batch) {
                sample(b, &mut dw_part, &mut db_part);
            }
            (dw_part, db_part)
        })
        .collect();
    for (dw_part, _) in &parts {
        dw.iter_mut().zip(dw_part).for_each(|(d, v)| *d += v);
    }
    if let Some(db) = db {
        for (co, d) in db.iter_mut().enumerate() {
            *d += parts.iter().map(|(_, s)| s[co]).sum::<f64>() as f32;
        }
    }
}

/// Winograd's F(4, k) (and F(k, 4)) in the fused backward pass: the input
/// gradient's flipped weights where it runs through them, and whether the
/// weight gradient does ([`crate::winograd`]).
struct WinogradBackward {
    tr: crate::winograd::Transforms,
    dx: Option<Vec<f32>>,
    dw: bool,
}

impl WinogradBackward {
    fn new(p: &Conv1dParams, path: SimdPath, w: &[f32], need_dx: bool) -> Option<Self> {
        let dx = need_dx && crate::winograd::applies_to_input_grad(p, path);
        let dw = crate::winograd::applies_to_weight_grad(p, path);
        (dx || dw).then(|| {
            let tr = crate::winograd::Transforms::new(p.k);
            let dx = dx.then(|| tr.weights_flipped(p, w));
            WinogradBackward { tr, dx, dw }
        })
    }
}

/// A kernel that adds a block's weight gradient to dw, from the block's
/// output gradient (its rows `ld` apart, from column `ua`), `nq` output
/// positions from `qa`, and the padded input: whether it ran.
type WeightGradBlock =
    fn(&Conv1dParams, &[f32], usize, usize, usize, &[f32], usize, usize, &mut [f32]) -> bool;

/// One sample of the fused backward pass of [`conv1d_act_maxpool2_backward`].
struct FusedBackward<'a> {
    path: SimdPath,
    p: &'a Conv1dParams,
    l: usize,
    lp2: usize,
    front: usize,
    wt: &'a [f32],
    /// Winograd's transforms, where the input or weight gradient runs through them.
    winograd: Option<&'a WinogradBackward>,
    /// The weights as the tiles' A operand, where the input gradient runs
    /// on them ([`crate::conv_tiles::input_grad_block`]).
    tiles_dx: Option<&'a crate::conv_tiles::TileWeights>,
    /// Whether the weight gradient runs on the tiles
    /// ([`crate::conv_tiles::weight_grad_block`]).
    tiles_dw: bool,
    mask: &'a [f32],
    dy: &'a [f32],
    par: bool,
}

impl FusedBackward<'_> {
    fn sample(&self, x: &[f32], mut dx: Option<&mut [f32]>, dw: &mut [f32], db: &mut [f64]) {
        let &FusedBackward {
            path,
            p,
            l,
            lp2,
            front,
            wt,
            winograd,
            tiles_dx,
            tiles_dw,
            mask,
            dy,
            par,
        } = self;
        let (pl, pr) = p.pads(l);
        let lpad = l + pl + pr;
        let (cig, cog, k, dil) = (p.c_in_g(), p.c_out_g(), p.k, p.dilation);
        // A tile row: an even start, the halo, the block, and room for a last pair.
        let ld = front + BACKWARD_BLOCK + 3;
        let wino_dw = winograd.filter(|wb| wb.dw);
        with_padded(p, x, l, |xp| {
            if let Some(wb) = wino_dw {
                crate::winograd::weight_grad_sample(
                    path, &wb.tr, p, xp, lpad, dy, mask, lp2, dw, db,
                );
                if dx.is_none() {
                    return;
                }
            }
            with_scratch(p.c_out * ld, |tile| {
                let mut i0 = 0;
                while i0 < l {
                    let n = BACKWARD_BLOCK.min(l - i0);
                    // The block's input-gradient columns [i0, i0 + n) read the
                    // output gradient at positions [q_start, i0 + pl + n).
                    let q_start = (i0 + pl) as isize - front as isize;
                    let q_base = q_start.div_euclid(2) * 2;
                    let off = (q_start - q_base) as usize;
                    let width = (front + n + off).next_multiple_of(2);
                    for co in 0..p.c_out {
                        path.dispatch(UnpoolRow {
                            q_base,
                            dy: &dy[co * lp2..(co + 1) * lp2],
                            mask: &mask[co * lp2..(co + 1) * lp2],
                            row: &mut tile[co * ld..co * ld + width],
                        });
                    }
                    let wino_dx = winograd.and_then(|wb| wb.dx.as_deref().map(|u| (&wb.tr, u)));
                    if let (Some(dx), Some((tr, u))) = (dx.as_deref_mut(), wino_dx) {
                        crate::winograd::input_grad_block(
                            path,
                            tr,
                            p,
                            u,
                            tile,
                            ld,
                            off,
                            width - off,
                            n,
                            &mut dx[i0..],
                            l,
                        );
                    } else if let Some(dx) = dx.as_deref_mut() {
                        // dx[ci, i] = Σ_(co,t) w[co, ci, t] · dz[co, i + pl − t·dil].
                        if let Some(tw) = tiles_dx {
                            crate::conv_tiles::input_grad_block(
                                tw,
                                tile,
                                p.c_out,
                                ld,
                                width,
                                off + front,
                                n,
                                &mut dx[i0..],
                                l,
                            );
                        }
                        for g in (0..p.groups).filter(|_| tiles_dx.is_none()) {
                            let boff = move |r: usize| {
                                (g * cog + r / k) * ld + off + front - (r % k) * dil
                            };
                            gemm_rows(
                                path,
                                cig,
                                n,
                                cog * k,
                                &wt[g * cig * cog * k..(g + 1) * cig * cog * k],
                                cog * k,
                                tile,
                                boff,
                                &mut dx[g * cig * l + i0..],
                                l,
                                false,
                                par,
                            );
                        }
                    }
                    // The output positions this block owns: [i0 + pl, i0 + pl + n),
                    // from 0 for the first block (its halo holds the rest).
                    let qa = if i0 == 0 { 0 } else { i0 + pl };
                    let qb = (i0 + pl + n).min(2 * lp2);
                    if qa < qb && wino_dw.is_none() {
                        let ua = (qa as isize - q_base) as usize;
                        // On the AMX tiles, or on AVX-512 in f32 with the
                        // input channels in the lanes (one thread per
                        // sample: not for a batch of 1); else the general
                        // dot products.
                        let kernel: Option<WeightGradBlock> = if tiles_dw {
                            Some(crate::conv_tiles::weight_grad_block)
                        } else if !par && crate::conv1d_dw::applies(p, path) {
                            Some(crate::conv1d_dw::weight_grad)
                        } else {
                            None
                        };
                        let done =
                            kernel.is_some_and(|f| f(p, tile, ld, ua, qb - qa, xp, lpad, qa, dw));
                        for g in (0..p.groups).filter(|_| !done) {
                            gemm_dots(
                                path,
                                cog,
                                cig * k,
                                qb - qa,
                                tile,
                                move |i: usize| (g * cog + i) * ld + ua,
                                xp,
                                move |r: usize| (g * cig + r / k) * lpad + (r % k) * dil + qa,
                                &mut dw[g * cog * cig * k..(g + 1) * cog * cig * k],
                                cig * k,
                                true,
                                par,
                            );
                        }
                        for (co, d) in db.iter_mut().enumerate() {
                            *d += sum(&tile[co * ld + ua..co * ld + ua + qb - qa]);
                        }
                    }
                    i0 += n;
                }
            })
        })
    }
}
