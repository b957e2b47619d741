//! 2D convolution over NCHW tensors, with stride, dilation, padding and
//! groups; weights are (c_out, c_in / groups, kh, kw). Columns are gathered
//! (im2col) per sample and multiplied with [`gemm_rows`]; the weight
//! gradient uses [`gemm_dots`]; the input gradient scatters columns back.

use crate::error::{check_len, require, KernelError};
use rayon::prelude::*;

use crate::conv1d::Padding;
use crate::gemm::{gemm_dots, gemm_rows};
use crate::scratch::with_scratch;
use crate::simd::{SendPtr, SimdPath};

/// The shape arithmetic and options of a 2D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub c_in: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    /// (rows, columns).
    pub stride: (usize, usize),
    pub dilation: (usize, usize),
    /// Padding of rows and of columns, each as [`Padding`].
    pub padding: (Padding, Padding),
    pub groups: usize,
}

impl Conv2dParams {
    /// A valid, stride-1, ungrouped k × k convolution.
    pub fn new(c_in: usize, c_out: usize, k: usize) -> Self {
        Conv2dParams {
            c_in,
            c_out,
            kh: k,
            kw: k,
            stride: (1, 1),
            dilation: (1, 1),
            padding: (Padding::Valid, Padding::Valid),
            groups: 1,
        }
    }

    pub fn padding(mut self, p: Padding) -> Self {
        self.padding = (p, p);
        self
    }

    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }

    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }

    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }

    fn axis(&self, a: usize) -> crate::conv1d::Conv1dParams {
        let (k, s, d, p) = if a == 0 {
            (self.kh, self.stride.0, self.dilation.0, self.padding.0)
        } else {
            (self.kw, self.stride.1, self.dilation.1, self.padding.1)
        };
        crate::conv1d::Conv1dParams::new(1, 1, k)
            .stride(s)
            .dilation(d)
            .padding(p)
    }

    /// ((top, bottom), (left, right)) padding for an h × w input.
    pub fn pads(&self, h: usize, w: usize) -> ((usize, usize), (usize, usize)) {
        (self.axis(0).pads(h), self.axis(1).pads(w))
    }

    /// Output height and width.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (self.axis(0).l_out(h), self.axis(1).l_out(w))
    }

    pub fn weight_len(&self) -> usize {
        self.c_out * (self.c_in / self.groups.max(1)) * self.kh * self.kw
    }

    pub fn validate(&self, h: usize, w: usize) -> Result<(), String> {
        if self.c_in == 0 || self.c_out == 0 || self.groups == 0 {
            return Err("conv2d: channels and groups must be at least 1".into());
        }
        if !self.c_in.is_multiple_of(self.groups) || !self.c_out.is_multiple_of(self.groups) {
            return Err(format!(
                "conv2d: groups = {} must divide both the input channels ({}) and the filters ({})",
                self.groups, self.c_in, self.c_out
            ));
        }
        self.axis(0)
            .validate(h)
            .map_err(|e| e.replace("conv1d", "conv2d (rows)"))?;
        self.axis(1)
            .validate(w)
            .map_err(|e| e.replace("conv1d", "conv2d (columns)"))
    }

    pub fn flops(&self, batch: usize, h: usize, w: usize) -> f64 {
        let (ho, wo) = self.out_hw(h, w);
        2.0 * (batch * self.c_out * ho * wo * (self.c_in / self.groups) * self.kh * self.kw) as f64
    }
}

struct Geo {
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    pt: usize,
    pl: usize,
}

impl Geo {
    fn new(p: &Conv2dParams, h: usize, w: usize) -> Self {
        let ((pt, _), (pl, _)) = p.pads(h, w);
        let (ho, wo) = p.out_hw(h, w);
        Geo {
            h,
            w,
            ho,
            wo,
            pt,
            pl,
        }
    }
}

/// col[(ci, ky, kx), (oy, ox)] = x[g·cig + ci, oy·sy + ky·dy − pt, ox·sx + kx·dx − pl] (0 outside).
fn im2col(p: &Conv2dParams, x: &[f32], geo: &Geo, g: usize, col: &mut [f32]) {
    let cig = p.c_in / p.groups;
    let n = geo.ho * geo.wo;
    for ci in 0..cig {
        let plane = &x[(g * cig + ci) * geo.h * geo.w..(g * cig + ci + 1) * geo.h * geo.w];
        for ky in 0..p.kh {
            for kx in 0..p.kw {
                let r = (ci * p.kh + ky) * p.kw + kx;
                let dst = &mut col[r * n..(r + 1) * n];
                for oy in 0..geo.ho {
                    let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize - geo.pt as isize;
                    let out = &mut dst[oy * geo.wo..(oy + 1) * geo.wo];
                    if iy < 0 || iy as usize >= geo.h {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * geo.w..(iy as usize + 1) * geo.w];
                    for (ox, o) in out.iter_mut().enumerate() {
                        let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize - geo.pl as isize;
                        *o = if ix >= 0 && (ix as usize) < geo.w {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// Adds columns back: the transpose of [`im2col`].
fn col2im(p: &Conv2dParams, col: &[f32], geo: &Geo, g: usize, dx: &mut [f32]) {
    let cig = p.c_in / p.groups;
    let n = geo.ho * geo.wo;
    for ci in 0..cig {
        let plane = &mut dx[(g * cig + ci) * geo.h * geo.w..(g * cig + ci + 1) * geo.h * geo.w];
        for ky in 0..p.kh {
            for kx in 0..p.kw {
                let r = (ci * p.kh + ky) * p.kw + kx;
                let src = &col[r * n..(r + 1) * n];
                for oy in 0..geo.ho {
                    let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize - geo.pt as isize;
                    if iy < 0 || iy as usize >= geo.h {
                        continue;
                    }
                    let row = &mut plane[iy as usize * geo.w..(iy as usize + 1) * geo.w];
                    for ox in 0..geo.wo {
                        let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize - geo.pl as isize;
                        if ix >= 0 && (ix as usize) < geo.w {
                            row[ix as usize] += src[oy * geo.wo + ox];
                        }
                    }
                }
            }
        }
    }
}

/// Forward pass: y (batch × c_out × ho × wo) = conv(x (batch × c_in × h × w)) + bias.
///
/// # Panics
/// If the options are invalid for h × w or a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward(
    p: &Conv2dParams,
    x: &[f32],
    batch: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(h, w).map_err(|message| KernelError::Params {
        op: "conv2d_forward",
        message,
    })?;
    let geo = Geo::new(p, h, w);
    let n = geo.ho * geo.wo;
    check_len("conv2d_forward", "x", x.len(), batch * p.c_in * h * w)?;
    check_len("conv2d_forward", "weight", wt.len(), p.weight_len())?;
    check_len("conv2d_forward", "y", y.len(), batch * p.c_out * n)?;
    let path = SimdPath::current();
    if let Some(wide) = Wide::new(p, h, w) {
        let (ho, wo) = (wide.ho, wide.wo);
        let plan = wide.plan(path, p, wt);
        x.par_chunks(p.c_in * h * w)
            .zip(y.par_chunks_mut(p.c_out * n))
            .for_each(|(xb, yb)| {
                wide.sample_forward(p, &plan, xb, wt, bias, |yw| {
                    for co in 0..p.c_out {
                        for oy in 0..ho {
                            yb[(co * ho + oy) * wo..][..wo]
                                .copy_from_slice(&yw[co * wide.n + oy * wide.wp..][..wo]);
                        }
                    }
                })
            });
        return Ok(());
    }
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let kk = cig * p.kh * p.kw;
    let par = batch == 1;
    x.par_chunks(p.c_in * h * w)
        .zip(y.par_chunks_mut(p.c_out * n))
        .for_each(|(xb, yb)| {
            with_scratch(kk * n, |col| {
                for g in 0..p.groups {
                    im2col(p, xb, &geo, g, col);
                    let wg = &wt[g * cog * kk..(g + 1) * cog * kk];
                    gemm_rows(
                        path,
                        cog,
                        n,
                        kk,
                        wg,
                        kk,
                        col,
                        |r| r * n,
                        &mut yb[g * cog * n..(g + 1) * cog * n],
                        n,
                        false,
                        par,
                    );
                }
            });
            if let Some(b) = bias {
                for (co, row) in yb.chunks_mut(n).enumerate() {
                    row.iter_mut().for_each(|v| *v += b[co]);
                }
            }
        });
    Ok(())
}

/// Backward pass: adds the weight and bias gradients to `dw` and `db`, and
/// writes the input gradient to `dx` when asked for.
///
/// # Panics
/// If the options are invalid for h × w or a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    p: &Conv2dParams,
    x: &[f32],
    batch: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> crate::error::Result<()> {
    p.validate(h, w).map_err(|message| KernelError::Params {
        op: "conv2d_backward",
        message,
    })?;
    let geo = Geo::new(p, h, w);
    let n = geo.ho * geo.wo;
    check_len("conv2d_backward", "x", x.len(), batch * p.c_in * h * w)?;
    check_len("conv2d_backward", "dy", dy.len(), batch * p.c_out * n)?;
    check_len("conv2d_backward", "dw", dw.len(), p.weight_len())?;
    if let Some(wide) = Wide::new(p, h, w) {
        let (ho, wo, row) = (wide.ho, wide.wo, wide.grad_row());
        let fill = |b: usize, gw: &mut [f32]| {
            for co in 0..p.c_out {
                for oy in 0..ho {
                    gw[co * row + wide.front + oy * wide.wp..][..wo]
                        .copy_from_slice(&dy[((b * p.c_out + co) * ho + oy) * wo..][..wo]);
                }
            }
        };
        wide_backward(p, &wide, x, batch, wt, fill, dx, dw, db);
        return Ok(());
    }
    let path = SimdPath::current();
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let kk = cig * p.kh * p.kw;
    if let Some(db) = db {
        for b in 0..batch {
            for co in 0..p.c_out {
                let row = &dy[(b * p.c_out + co) * n..(b * p.c_out + co + 1) * n];
                db[co] += crate::scratch::sum(row) as f32;
            }
        }
    }
    if let Some(d) = &dx {
        check_len("conv2d_backward", "dx", d.len(), batch * p.c_in * h * w)?;
    }
    let dxp = dx.map(|d| SendPtr(d.as_mut_ptr()));
    // Transposed weights per group: wtt[(ci, ky, kx)][co].
    let mut wtt = vec![0f32; p.weight_len()];
    for g in 0..p.groups {
        for co in 0..cog {
            for r in 0..kk {
                wtt[g * kk * cog + r * cog + co] = wt[(g * cog + co) * kk + r];
            }
        }
    }
    let chunk = crate::grad_chunk(batch);
    let partial: Vec<Vec<f32>> = (0..batch.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; p.weight_len()];
            with_scratch(kk * n, |col| {
                for b in c * chunk..((c + 1) * chunk).min(batch) {
                    let xb = &x[b * p.c_in * h * w..(b + 1) * p.c_in * h * w];
                    let dyb = &dy[b * p.c_out * n..(b + 1) * p.c_out * n];
                    let dxb = dxp.map(|d| unsafe {
                        let s = std::slice::from_raw_parts_mut(
                            d.0.add(b * p.c_in * h * w),
                            p.c_in * h * w,
                        );
                        s.fill(0.0);
                        s
                    });
                    let mut dxb = dxb;
                    for g in 0..p.groups {
                        im2col(p, xb, &geo, g, col);
                        let aoff = move |i: usize| (g * cog + i) * n;
                        gemm_dots(
                            path,
                            cog,
                            kk,
                            n,
                            dyb,
                            aoff,
                            col,
                            |r| r * n,
                            &mut acc[g * cog * kk..(g + 1) * cog * kk],
                            kk,
                            true,
                            false,
                        );
                        if let Some(dxb) = dxb.as_deref_mut() {
                            let a = &wtt[g * kk * cog..(g + 1) * kk * cog];
                            gemm_rows(
                                path,
                                kk,
                                n,
                                cog,
                                a,
                                cog,
                                dyb,
                                move |co| (g * cog + co) * n,
                                col,
                                n,
                                false,
                                false,
                            );
                            col2im(p, col, &geo, g, dxb);
                        }
                    }
                }
            });
            acc
        })
        .collect();
    for part in partial {
        dw.iter_mut().zip(part).for_each(|(d, v)| *d += v);
    }
    Ok(())
}

/// The layout of the direct path for stride-1, undilated convolutions.
/// Each input channel is zero-padded to hp × wp and followed by slack, so
/// that row r = (ci, ky, kx) of the product is the padded plane shifted by
/// ky·wp + kx: no im2col copy. Outputs are computed for every column of
/// the padded width ("wide" rows); those at ox ≥ wo are discarded.
#[derive(Clone, Copy, Debug)]
struct Wide {
    h: usize,
    w: usize,
    wp: usize,
    pt: usize,
    pl: usize,
    ho: usize,
    wo: usize,
    /// Wide output length per channel: ho·wp rounded up to 16.
    n: usize,
    /// Padded plane with its slack, per input channel.
    plane: usize,
    /// Zeros in front of each gradient row (the largest shift).
    front: usize,
    /// The padded plane rounded up to 16 (the input gradient's wide length).
    nq: usize,
}

/// [`Wide::plan`].
struct Plan {
    offs: Vec<usize>,
    /// The path the product runs on.
    path: SimdPath,
    /// The weights rounded to bf16 when the convolution rounds its
    /// operands itself ([`rounding`]); the input is then rounded as it is
    /// padded.
    weights: Option<Vec<f32>>,
}

/// On [`SimdPath::AmxBf16`], a product of `rows` × `cols` too small for the
/// tiles runs as f32 FMAs on operands rounded to bf16 ([`crate::bf16`]),
/// which a call of the product rounds on every call: the weights again for
/// every sample, the input in a pass of its own. There the convolution
/// rounds them itself, once: the weights per layer call (returned), the
/// input as it is padded; the product then runs on the f32 path, with the
/// same products and sums. Elsewhere: `path`, and no copy.
fn rounding(path: SimdPath, rows: usize, cols: usize, w: &[f32]) -> (SimdPath, Option<Vec<f32>>) {
    if path != SimdPath::AmxBf16 || crate::bf16::takes_tiles(rows, cols) {
        return (path, None);
    }
    let mut r = vec![0f32; w.len()];
    crate::bf16::round_f32(w, &mut r);
    (path.fp32(), Some(r))
}

impl Wide {
    fn new(p: &Conv2dParams, h: usize, w: usize) -> Option<Wide> {
        if p.stride != (1, 1) || p.dilation != (1, 1) {
            return None;
        }
        let ((pt, pb), (pl, pr)) = p.pads(h, w);
        let (hp, wp) = (h + pt + pb, w + pl + pr);
        let (ho, wo) = p.out_hw(h, w);
        let n = (ho * wp).next_multiple_of(16);
        let front = (p.kh - 1) * wp + p.kw - 1;
        Some(Wide {
            h,
            w,
            wp,
            pt,
            pl,
            ho,
            wo,
            n,
            plane: front + n,
            front,
            nq: (hp * wp).next_multiple_of(16),
        })
    }

    /// Offset of row r = (ci, ky, kx) of a group's product in the padded input.
    #[inline(always)]
    fn boff(&self, p: &Conv2dParams, g: usize, r: usize) -> usize {
        let cig = p.c_in / p.groups;
        let (ci, rest) = (r / (p.kh * p.kw), r % (p.kh * p.kw));
        (g * cig + ci) * self.plane + (rest / p.kw) * self.wp + rest % p.kw
    }

    /// Offset in the padded input of each row r = (ci, ky, kx) of the
    /// products, group after group (c_in·kh·kw in all), computed once per
    /// call of a layer and read by every sample's product.
    fn offsets(&self, p: &Conv2dParams) -> Vec<usize> {
        let mut offs = Vec::with_capacity(p.c_in * p.kh * p.kw);
        for ci in 0..p.c_in {
            for ky in 0..p.kh {
                offs.extend((0..p.kw).map(|kx| ci * self.plane + ky * self.wp + kx));
            }
        }
        offs
    }

    /// For the input gradient: the offset in the wide output gradient of
    /// each row r = (co, ky, kx), output channel co's gradient shifted back
    /// by ky·wp + kx, group after group (c_out·kh·kw in all).
    fn grad_offsets(&self, p: &Conv2dParams) -> Vec<usize> {
        let row = self.grad_row();
        let mut offs = Vec::with_capacity(p.c_out * p.kh * p.kw);
        for co in 0..p.c_out {
            for ky in 0..p.kh {
                offs.extend((0..p.kw).map(|kx| co * row + self.front - ky * self.wp - kx));
            }
        }
        offs
    }

    /// Zero-pads each channel of one sample (c × h × w) into `dst` (c × plane).
    /// With `round`, the padded values are then rounded to bf16 in place
    /// ([`rounding`]).
    fn pad(&self, src: &[f32], c: usize, dst: &mut [f32], round: bool) {
        dst.fill(0.0);
        for ch in 0..c {
            for iy in 0..self.h {
                let o = ch * self.plane + (iy + self.pt) * self.wp + self.pl;
                dst[o..o + self.w].copy_from_slice(&src[(ch * self.h + iy) * self.w..][..self.w]);
            }
        }
        if round {
            crate::bf16::round_in_place(dst);
        }
    }

    /// The wide output of one sample (c_out × n), bias included.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        path: SimdPath,
        p: &Conv2dParams,
        offs: &[usize],
        xp: &[f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        yw: &mut [f32],
    ) {
        let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
        let kk = cig * p.kh * p.kw;
        for g in 0..p.groups {
            let offs = &offs[g * kk..(g + 1) * kk];
            crate::gemm::gemm_rows_bias(
                path,
                cog,
                self.n,
                kk,
                &wt[g * cog * kk..(g + 1) * cog * kk],
                kk,
                xp,
                |r| offs[r],
                bias.map(|b| &b[g * cog..(g + 1) * cog]),
                &mut yw[g * cog * self.n..(g + 1) * cog * self.n],
                self.n,
                false,
                false,
            );
        }
    }

    /// What every sample's forward pass reads: the rows' offsets, and the
    /// path and weights its product runs on ([`rounding`]).
    fn plan(&self, path: SimdPath, p: &Conv2dParams, wt: &[f32]) -> Plan {
        let (path, weights) = rounding(path, p.c_out / p.groups, self.n, wt);
        Plan {
            offs: self.offsets(p),
            path,
            weights,
        }
    }

    /// Pads one sample, computes its wide output and hands it to `take`.
    #[allow(clippy::too_many_arguments)]
    fn sample_forward(
        &self,
        p: &Conv2dParams,
        plan: &Plan,
        xb: &[f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        take: impl FnOnce(&[f32]),
    ) {
        with_scratch(p.c_in * self.plane + p.c_out * self.n, |buf| {
            let (xp, yw) = buf.split_at_mut(p.c_in * self.plane);
            self.pad(xb, p.c_in, xp, plan.weights.is_some());
            let wt = plan.weights.as_deref().unwrap_or(wt);
            self.forward(plan.path, p, &plan.offs, xp, wt, bias, yw);
            take(yw);
        })
    }

    /// Length of one output channel's gradient row: zeros in front, then the
    /// wide gradient (zero at discarded columns and past the last row).
    fn grad_row(&self) -> usize {
        self.front + self.nq
    }

    /// From the wide output gradient of one sample (c_out rows of
    /// [`Wide::grad_row`]), writes the input gradient (c_in × h × w) to `dx`,
    /// through the wide buffer `dxp` (c_in × nq).
    #[allow(clippy::too_many_arguments)]
    fn backward_dx(
        &self,
        path: SimdPath,
        p: &Conv2dParams,
        goffs: &[usize],
        wtt: &[f32],
        gw: &[f32],
        dxp: &mut [f32],
        dx: &mut [f32],
    ) {
        let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
        let kko = cog * p.kh * p.kw;
        for g in 0..p.groups {
            let offs = &goffs[g * kko..(g + 1) * kko];
            gemm_rows(
                path,
                cig,
                self.nq,
                kko,
                &wtt[g * cig * kko..(g + 1) * cig * kko],
                kko,
                gw,
                |r| offs[r],
                &mut dxp[g * cig * self.nq..(g + 1) * cig * self.nq],
                self.nq,
                false,
                false,
            );
        }
        for ci in 0..p.c_in {
            for iy in 0..self.h {
                let o = ci * self.nq + (iy + self.pt) * self.wp + self.pl;
                dx[(ci * self.h + iy) * self.w..][..self.w].copy_from_slice(&dxp[o..o + self.w]);
            }
        }
    }

    /// Adds the weight gradient of `count` samples to `acc`: their padded
    /// inputs (c_in × plane each) and wide output gradients (c_out rows of
    /// [`Wide::grad_row`] each) lie one after the other.
    fn backward_dw(
        &self,
        path: SimdPath,
        p: &Conv2dParams,
        count: usize,
        xps: &[f32],
        gws: &[f32],
        acc: &mut [f32],
    ) {
        let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
        let kk = cig * p.kh * p.kw;
        let (me, pp, row) = (*self, *p, self.grad_row());
        let segs = crate::gemm::Segments {
            count,
            a_stride: p.c_out * row,
            b_stride: p.c_in * self.plane,
        };
        for g in 0..p.groups {
            crate::gemm::gemm_dots_segments(
                path,
                cog,
                kk,
                self.n,
                segs,
                gws,
                move |i| (g * cog + i) * row + me.front,
                xps,
                move |r| me.boff(&pp, g, r),
                &mut acc[g * cog * kk..(g + 1) * cog * kk],
                kk,
            );
        }
    }
}

/// Weights rearranged for the input gradient of the direct path, per group:
/// wtt[ci][(co, ky, kx)] = w[co][ci][ky][kx].
fn wide_weights_t(p: &Conv2dParams, wt: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; p.weight_len()];
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    crate::gemm::transpose_groups(wt, p.groups, cog, cig, p.kh * p.kw, &mut out);
    out
}

/// The direct path's backward pass over a batch: `fill` writes the wide
/// output gradient of sample b (c_out rows of [`Wide::grad_row`], zeroed
/// beforehand except for the leading zeros it must keep) and returns its
/// per-channel sums for the bias gradient.
#[allow(clippy::too_many_arguments)]
fn wide_backward(
    p: &Conv2dParams,
    geo: &Wide,
    x: &[f32],
    batch: usize,
    wt: &[f32],
    fill: impl Fn(usize, &mut [f32]) + Sync,
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    let path = SimdPath::current();
    let (h, w) = (geo.h, geo.w);
    let xs = p.c_in * h * w;
    // On AMX-BF16 the weight gradient's dot products always run as f32
    // FMAs on rounded operands, and the input gradient's product where it
    // is too small for the tiles ([`rounding`]): the inputs are rounded as
    // they are padded and each output gradient once, in place, after its
    // bias sums.
    let round = path == SimdPath::AmxBf16;
    let dw_path = if round { path.fp32() } else { path };
    let wtt = wide_weights_t(p, wt);
    let (dx_path, wtt_rounded) = rounding(path, p.c_in / p.groups, geo.nq, &wtt);
    let wtt = wtt_rounded.unwrap_or(wtt);
    let goffs = geo.grad_offsets(p);
    let dxp = dx.map(|d| {
        assert_eq!(d.len(), batch * xs, "conv2d backward: dx length");
        SendPtr(d.as_mut_ptr())
    });
    let row = geo.grad_row();
    let chunk = crate::grad_chunk(batch);
    let need_db = db.is_some();
    // With short rows, samples are taken 8 at a time, so that the weight
    // gradient's dot products run over all of them before their lanes are
    // reduced; long rows are better kept in L1, one sample at a time.
    let group = if geo.n <= 256 { 8 } else { 1 };
    let parts: Vec<(Vec<f32>, Vec<f64>)> = (0..batch.div_ceil(chunk))
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; p.weight_len()];
            let mut bsum = vec![0f64; if need_db { p.c_out } else { 0 }];
            let (xs1, gw1) = (p.c_in * geo.plane, p.c_out * row);
            let sizes = [group * xs1, group * gw1, p.c_in * geo.nq];
            with_scratch(sizes.iter().sum(), |buf| {
                let (xps, rest) = buf.split_at_mut(sizes[0]);
                let (gws, dxw) = rest.split_at_mut(sizes[1]);
                let (b0, b1) = (c * chunk, ((c + 1) * chunk).min(batch));
                for g0 in (b0..b1).step_by(group) {
                    let count = group.min(b1 - g0);
                    for k in 0..count {
                        let b = g0 + k;
                        let xp = &mut xps[k * xs1..(k + 1) * xs1];
                        let gw = &mut gws[k * gw1..(k + 1) * gw1];
                        geo.pad(&x[b * xs..(b + 1) * xs], p.c_in, xp, round);
                        gw.fill(0.0);
                        fill(b, gw);
                        if need_db {
                            for (co, s) in bsum.iter_mut().enumerate() {
                                *s += crate::scratch::sum(&gw[co * row..(co + 1) * row]);
                            }
                        }
                        if round {
                            crate::bf16::round_in_place(gw);
                        }
                        if let Some(d) = dxp {
                            let dxb =
                                unsafe { std::slice::from_raw_parts_mut(d.0.add(b * xs), xs) };
                            geo.backward_dx(dx_path, p, &goffs, &wtt, gw, dxw, dxb);
                        }
                    }
                    geo.backward_dw(
                        dw_path,
                        p,
                        count,
                        &xps[..count * xs1],
                        &gws[..count * gw1],
                        &mut acc,
                    );
                }
            });
            (acc, bsum)
        })
        .collect();
    let mut total = vec![0f64; if need_db { p.c_out } else { 0 }];
    for (acc, bsum) in parts {
        dw.iter_mut().zip(acc).for_each(|(d, v)| *d += v);
        total.iter_mut().zip(bsum).for_each(|(t, v)| *t += v);
    }
    if let Some(db) = db {
        db.iter_mut().zip(total).for_each(|(d, v)| *d += v as f32);
    }
}

/// Whether [`conv2d_act_maxpool2_forward`] can run these options: a
/// stride-1, undilated convolution whose output is at least 2 × 2.
pub fn fusable_with_pool2(p: &Conv2dParams, h: usize, w: usize) -> bool {
    let (ho, wo) = p.out_hw(h, w);
    p.validate(h, w).is_ok() && Wide::new(p, h, w).is_some() && ho >= 2 && wo >= 2
}

/// A stride-1 2D convolution, its monotonic activation and a 2 × 2 max pool
/// (stride 2, rows and columns past an even size dropped), fused: the
/// convolution's output is never stored. `mask` (twice the length of `y`)
/// receives per sample the window position of each maximum (2·row +
/// column, as f32), then the activation's derivative at each pooled value:
/// all that the backward pass needs. An empty `mask` asks for none
/// (inference): only y is written.
///
/// # Panics
/// If [`fusable_with_pool2`] is false, the activation is not monotonic, or
/// a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_act_maxpool2_forward(
    p: &Conv2dParams,
    act: crate::Activation,
    x: &[f32],
    batch: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    mask: &mut [f32],
) -> crate::error::Result<()> {
    require(
        "conv2d_act_maxpool2_forward",
        fusable_with_pool2(p, h, w),
        "conv2d + max pool 2: not fusable",
    )?;
    require(
        "conv2d_act_maxpool2_forward",
        act.is_monotonic(),
        "fused pooling needs a monotonic activation",
    )?;
    let wide = Wide::new(p, h, w).expect("checked by fusable_with_pool2");
    let (hq, wq) = (wide.ho / 2, wide.wo / 2);
    let ps = p.c_out * hq * wq;
    check_len(
        "conv2d_act_maxpool2_forward",
        "x",
        x.len(),
        batch * p.c_in * h * w,
    )?;
    check_len(
        "conv2d_act_maxpool2_forward",
        "weight",
        wt.len(),
        p.weight_len(),
    )?;
    check_len("conv2d_act_maxpool2_forward", "y", y.len(), batch * ps)?;
    if !mask.is_empty() {
        check_len(
            "conv2d_act_maxpool2_forward",
            "mask",
            mask.len(),
            2 * y.len(),
        )?;
    }
    let path = SimdPath::current();
    let pool = |yw: &[f32], yb: &mut [f32], ab: &mut [f32], deriv: &mut [f32]| {
        PoolWindows {
            act,
            c_out: p.c_out,
            n: wide.n,
            wp: wide.wp,
            hq,
            wq,
            yw,
            y: yb,
            at: ab,
            deriv,
        }
        .run(path)
    };
    let plan = wide.plan(path, p, wt);
    if mask.is_empty() {
        x.par_chunks(p.c_in * h * w)
            .zip(y.par_chunks_mut(ps))
            .for_each(|(xb, yb)| {
                wide.sample_forward(p, &plan, xb, wt, bias, |yw| pool(yw, yb, &mut [], &mut []))
            });
        return Ok(());
    }
    x.par_chunks(p.c_in * h * w)
        .zip(y.par_chunks_mut(ps).zip(mask.par_chunks_mut(2 * ps)))
        .for_each(|(xb, (yb, mb))| {
            let (ab, deriv) = mb.split_at_mut(ps);
            wide.sample_forward(p, &plan, xb, wt, bias, |yw| pool(yw, yb, ab, deriv))
        });
    Ok(())
}

/// Backward pass of [`conv2d_act_maxpool2_forward`], from its input, its
/// `mask` and the pooled gradient `dy`: adds to `dw` and `db`, and writes
/// `dx` when asked for.
///
/// # Panics
/// If [`fusable_with_pool2`] is false or a slice has the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_act_maxpool2_backward(
    p: &Conv2dParams,
    x: &[f32],
    batch: usize,
    h: usize,
    w: usize,
    wt: &[f32],
    mask: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) -> crate::error::Result<()> {
    require(
        "conv2d_act_maxpool2_backward",
        fusable_with_pool2(p, h, w),
        "conv2d + max pool 2: not fusable",
    )?;
    let wide = Wide::new(p, h, w).expect("checked by fusable_with_pool2");
    let (hq, wq) = (wide.ho / 2, wide.wo / 2);
    let ps = p.c_out * hq * wq;
    check_len(
        "conv2d_act_maxpool2_backward",
        "x",
        x.len(),
        batch * p.c_in * h * w,
    )?;
    check_len("conv2d_act_maxpool2_backward", "dy", dy.len(), batch * ps)?;
    check_len(
        "conv2d_act_maxpool2_backward",
        "mask",
        mask.len(),
        2 * dy.len(),
    )?;
    check_len(
        "conv2d_act_maxpool2_backward",
        "dw",
        dw.len(),
        p.weight_len(),
    )?;
    let row = wide.grad_row();
    let path = SimdPath::current();
    let fill = |b: usize, gw: &mut [f32]| {
        let (at, deriv) = mask[2 * b * ps..2 * (b + 1) * ps].split_at(ps);
        UnpoolWindows {
            c_out: p.c_out,
            row,
            front: wide.front,
            wp: wide.wp,
            hq,
            wq,
            dy: &dy[b * ps..(b + 1) * ps],
            at,
            deriv,
            gw,
        }
        .run(path)
    };
    wide_backward(p, &wide, x, batch, wt, fill, dx, dw, db);
    Ok(())
}

/// The 2 × 2 max pool (stride 2) of one sample's wide convolution output
/// `yw` (c_out rows of n, wp wide), then the activation: writes the pooled
/// `y` (c_out × hq × wq) and, unless `at` is empty (inference), the window
/// position of each maximum (2·row + column, as f32) to `at` and the
/// activation's derivative at each pooled value to `deriv`. Each window's
/// rows are compared first, then its columns: the upper row and the left
/// column win ties. A row of windows at a time: [`windows::pool_row`], or
/// on the AVX-512 paths its vector form, which loads both rows of up to 16
/// windows at once and splits their columns with a permutation (the
/// compiler, left to itself, gathers them one by one).
struct PoolWindows<'a> {
    act: crate::Activation,
    c_out: usize,
    n: usize,
    wp: usize,
    hq: usize,
    wq: usize,
    yw: &'a [f32],
    y: &'a mut [f32],
    at: &'a mut [f32],
    deriv: &'a mut [f32],
}

impl PoolWindows<'_> {
    fn run(self, path: SimdPath) {
        let PoolWindows {
            act,
            c_out,
            n,
            wp,
            hq,
            wq,
            yw,
            y,
            at,
            deriv,
        } = self;
        let train = !at.is_empty();
        let vector = windows::vector(path);
        for co in 0..c_out {
            let src = &yw[co * n..];
            for py in 0..hq {
                let r0 = &src[2 * py * wp..][..2 * wq];
                let r1 = &src[(2 * py + 1) * wp..][..2 * wq];
                let o = (co * hq + py) * wq;
                let ar = if train {
                    &mut at[o..o + wq]
                } else {
                    &mut [][..]
                };
                windows::pool_row(vector, r0, r1, &mut y[o..o + wq], ar);
            }
        }
        path.dispatch(ActivateInPlace { act, y, deriv });
    }
}

/// The activation over `y` in place and, unless `deriv` is empty, its
/// derivative at each output: contiguous, monomorphized per activation so
/// that the compiler vectorizes it.
struct ActivateInPlace<'a> {
    act: crate::Activation,
    y: &'a mut [f32],
    deriv: &'a mut [f32],
}

impl pulp::WithSimd for ActivateInPlace<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _s: S) {
        #[inline(always)]
        fn run(y: &mut [f32], deriv: &mut [f32], f: impl Fn(f32) -> f32, d: impl Fn(f32) -> f32) {
            if deriv.is_empty() {
                y.iter_mut().for_each(|v| *v = f(*v));
                return;
            }
            for (v, dv) in y.iter_mut().zip(deriv.iter_mut()) {
                *v = f(*v);
                *dv = d(*v);
            }
        }
        let ActivateInPlace { act, y, deriv } = self;
        match act {
            crate::Activation::Relu => run(
                y,
                deriv,
                |m| m.max(0.0),
                |o| if o > 0.0 { 1.0 } else { 0.0 },
            ),
            crate::Activation::Linear => run(y, deriv, |m| m, |_| 1.0),
            a => run(y, deriv, |m| a.apply(m), |o| a.derivative_from_output(o)),
        }
    }
}

/// The wide gradient of one sample's convolution output from the pooled
/// gradient `dy` and the forward pass's window positions `at` and
/// derivatives `deriv` ([`PoolWindows`]): each window's four places get
/// dy · derivative at the maximum's, zero at the others. Writes, per output
/// channel, the rows of `gw` from `front` on (c_out rows of `row`); the
/// rest must already be zero. A row of windows at a time, as
/// [`PoolWindows`] runs.
struct UnpoolWindows<'a> {
    c_out: usize,
    row: usize,
    front: usize,
    wp: usize,
    hq: usize,
    wq: usize,
    dy: &'a [f32],
    at: &'a [f32],
    deriv: &'a [f32],
    gw: &'a mut [f32],
}

impl UnpoolWindows<'_> {
    fn run(self, path: SimdPath) {
        let UnpoolWindows {
            c_out,
            row,
            front,
            wp,
            hq,
            wq,
            dy,
            at,
            deriv,
            gw,
        } = self;
        let vector = windows::vector(path);
        for co in 0..c_out {
            let dst = &mut gw[co * row + front..];
            for py in 0..hq {
                let o = (co * hq + py) * wq;
                let (d0, d1) = dst[2 * py * wp..].split_at_mut(wp);
                windows::unpool_row(
                    vector,
                    &dy[o..o + wq],
                    &at[o..o + wq],
                    &deriv[o..o + wq],
                    &mut d0[..2 * wq],
                    &mut d1[..2 * wq],
                );
            }
        }
    }
}

/// One row of 2 × 2 windows: the scalar reference and its AVX-512 form.
mod windows {
    use crate::simd::SimdPath;

    /// Whether `path` runs the AVX-512 forms.
    pub(super) fn vector(path: SimdPath) -> bool {
        cfg!(target_arch = "x86_64") && path.fp32() == SimdPath::Avx512
    }

    /// Windows j < y.len() over rows r0 and r1 (2 values per window each):
    /// the maximum to `y` and, unless `at` is empty, its position (2·row +
    /// column) to `at`. The upper row, then the left column, win ties.
    pub(super) fn pool_row(vector: bool, r0: &[f32], r1: &[f32], y: &mut [f32], at: &mut [f32]) {
        let wq = y.len();
        assert!(r0.len() >= 2 * wq && r1.len() >= 2 * wq && (at.is_empty() || at.len() == wq));
        #[cfg(target_arch = "x86_64")]
        if vector {
            let at = if at.is_empty() {
                std::ptr::null_mut()
            } else {
                at.as_mut_ptr()
            };
            // Safety: AVX-512F is on these paths; the lengths are checked above.
            return unsafe { x86::pool_row(r0.as_ptr(), r1.as_ptr(), wq, y.as_mut_ptr(), at) };
        }
        let _ = vector;
        for j in 0..wq {
            let (a0, a1, b0, b1) = (r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1]);
            let (l0, l1) = (b0 > a0, b1 > a1);
            let v0 = if l0 { b0 } else { a0 };
            let v1 = if l1 { b1 } else { a1 };
            let right = v1 > v0;
            y[j] = if right { v1 } else { v0 };
            if !at.is_empty() {
                at[j] = if right {
                    if l1 {
                        3.0
                    } else {
                        1.0
                    }
                } else if l0 {
                    2.0
                } else {
                    0.0
                };
            }
        }
    }

    /// The gradients of a row of windows: dy · deriv at each window's
    /// position `at`, zero at its other three places, into `top` and
    /// `bottom` (2 values per window each).
    pub(super) fn unpool_row(
        vector: bool,
        dy: &[f32],
        at: &[f32],
        deriv: &[f32],
        top: &mut [f32],
        bottom: &mut [f32],
    ) {
        let wq = dy.len();
        assert!(
            at.len() == wq && deriv.len() == wq && top.len() == 2 * wq && bottom.len() == 2 * wq
        );
        #[cfg(target_arch = "x86_64")]
        if vector {
            // Safety: AVX-512F is on these paths; the lengths are checked above.
            return unsafe {
                x86::unpool_row(
                    dy.as_ptr(),
                    at.as_ptr(),
                    deriv.as_ptr(),
                    wq,
                    top.as_mut_ptr(),
                    bottom.as_mut_ptr(),
                )
            };
        }
        let _ = vector;
        for j in 0..wq {
            let (v, k) = (dy[j] * deriv[j], at[j]);
            top[2 * j] = if k == 0.0 { v } else { 0.0 };
            top[2 * j + 1] = if k == 1.0 { v } else { 0.0 };
            bottom[2 * j] = if k == 2.0 { v } else { 0.0 };
            bottom[2 * j + 1] = if k == 3.0 { v } else { 0.0 };
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod x86 {
        use std::arch::x86_64::*;

        use crate::simd::avx512::{lanes, EVEN, HIGH, LOW, ODD};

        /// [`super::pool_row`], 16 windows per step (`at` null: no positions).
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn pool_row(
            r0: *const f32,
            r1: *const f32,
            wq: usize,
            y: *mut f32,
            at: *mut f32,
        ) {
            let even = _mm512_loadu_si512(EVEN.as_ptr() as *const _);
            let odd = _mm512_loadu_si512(ODD.as_ptr() as *const _);
            // The column of each lane of a row's 32 values: 0, 1, 0, 1, …
            let column = _mm512_setr_ps(
                0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0,
            );
            let two = _mm512_set1_ps(2.0);
            let mut j = 0;
            while j < wq {
                let m = (wq - j).min(16);
                let (lo, hi) = (lanes(2 * m), lanes((2 * m).saturating_sub(16)));
                let a_lo = _mm512_maskz_loadu_ps(lo, r0.add(2 * j));
                let a_hi = _mm512_maskz_loadu_ps(hi, r0.add(2 * j + 16));
                let b_lo = _mm512_maskz_loadu_ps(lo, r1.add(2 * j));
                let b_hi = _mm512_maskz_loadu_ps(hi, r1.add(2 * j + 16));
                // The rows: the lower wins only where strictly greater.
                let l_lo = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b_lo, a_lo);
                let l_hi = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b_hi, a_hi);
                let v_lo = _mm512_mask_blend_ps(l_lo, a_lo, b_lo);
                let v_hi = _mm512_mask_blend_ps(l_hi, a_hi, b_hi);
                // Then the columns: the right wins only where strictly greater.
                let v0 = _mm512_permutex2var_ps(v_lo, even, v_hi);
                let v1 = _mm512_permutex2var_ps(v_lo, odd, v_hi);
                let right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v1, v0);
                let w = lanes(m);
                _mm512_mask_storeu_ps(y.add(j), w, _mm512_mask_blend_ps(right, v0, v1));
                if !at.is_null() {
                    let c_lo = _mm512_mask_add_ps(column, l_lo, column, two);
                    let c_hi = _mm512_mask_add_ps(column, l_hi, column, two);
                    let s0 = _mm512_permutex2var_ps(c_lo, even, c_hi);
                    let s1 = _mm512_permutex2var_ps(c_lo, odd, c_hi);
                    _mm512_mask_storeu_ps(at.add(j), w, _mm512_mask_blend_ps(right, s0, s1));
                }
                j += 16;
            }
        }

        /// [`super::unpool_row`], 16 windows per step.
        #[target_feature(enable = "avx512f")]
        pub(super) unsafe fn unpool_row(
            dy: *const f32,
            at: *const f32,
            deriv: *const f32,
            wq: usize,
            top: *mut f32,
            bottom: *mut f32,
        ) {
            let low = _mm512_loadu_si512(LOW.as_ptr() as *const _);
            let high = _mm512_loadu_si512(HIGH.as_ptr() as *const _);
            let place = [0.0, 1.0, 2.0, 3.0].map(|k| _mm512_set1_ps(k));
            let mut j = 0;
            while j < wq {
                let m = (wq - j).min(16);
                let w = lanes(m);
                let v = _mm512_mul_ps(
                    _mm512_maskz_loadu_ps(w, dy.add(j)),
                    _mm512_maskz_loadu_ps(w, deriv.add(j)),
                );
                let k = _mm512_maskz_loadu_ps(w, at.add(j));
                let (lo, hi) = (lanes(2 * m), lanes((2 * m).saturating_sub(16)));
                for (row, left) in [(top, 0), (bottom, 2)] {
                    let l =
                        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_EQ_OQ>(k, place[left]), v);
                    let r = _mm512_maskz_mov_ps(
                        _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(k, place[left + 1]),
                        v,
                    );
                    _mm512_mask_storeu_ps(row.add(2 * j), lo, _mm512_permutex2var_ps(l, low, r));
                    _mm512_mask_storeu_ps(
                        row.add(2 * j + 16),
                        hi,
                        _mm512_permutex2var_ps(l, high, r),
                    );
                }
                j += 16;
            }
        }
    }
}
