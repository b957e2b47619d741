//! 2D convolution over NCHW tensors, with stride, dilation, padding and
//! groups; weights are (c_out, c_in / groups, kh, kw). Columns are gathered
//! (im2col) per sample and multiplied with [`gemm_rows`]; the weight
//! gradient uses [`gemm_dots`]; the input gradient scatters columns back.

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
        if self.c_in % self.groups != 0 || self.c_out % self.groups != 0 {
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
) {
    p.validate(h, w).unwrap_or_else(|e| panic!("{e}"));
    let geo = Geo::new(p, h, w);
    let n = geo.ho * geo.wo;
    assert_eq!(x.len(), batch * p.c_in * h * w, "conv2d: x length");
    assert_eq!(wt.len(), p.weight_len(), "conv2d: weight length");
    assert_eq!(y.len(), batch * p.c_out * n, "conv2d: y length");
    let path = SimdPath::current();
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
) {
    p.validate(h, w).unwrap_or_else(|e| panic!("{e}"));
    let geo = Geo::new(p, h, w);
    let n = geo.ho * geo.wo;
    assert_eq!(x.len(), batch * p.c_in * h * w, "conv2d backward: x length");
    assert_eq!(dy.len(), batch * p.c_out * n, "conv2d backward: dy length");
    assert_eq!(dw.len(), p.weight_len(), "conv2d backward: dw length");
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
    let dxp = dx.map(|d| {
        assert_eq!(
            d.len(),
            batch * p.c_in * h * w,
            "conv2d backward: dx length"
        );
        SendPtr(d.as_mut_ptr())
    });
    // Transposed weights per group: wtt[(ci, ky, kx)][co].
    let mut wtt = vec![0f32; p.weight_len()];
    for g in 0..p.groups {
        for co in 0..cog {
            for r in 0..kk {
                wtt[g * kk * cog + r * cog + co] = wt[(g * cog + co) * kk + r];
            }
        }
    }
    let chunk = batch.div_ceil(rayon::current_num_threads()).max(1);
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
}
