//! Pooling, 1D and 2D, max and average, with kernel, stride and padding;
//! global average and max. Average pooling counts only the window's
//! elements that fall inside the input (Keras' behaviour). Max-pool backward
//! routes each gradient to the first maximum of its window.
//!
//! Rows (1D) or planes (2D) are independent: they are spread over threads
//! with rayon, and each inner loop runs under the dispatched SIMD path so
//! that the compiler vectorizes it for the CPU at hand.

use crate::error::{check_len, require, KernelError};
use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::simd::SimdPath;

/// Max or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A 1D pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool1dParams {
    pub kind: PoolKind,
    pub size: usize,
    pub stride: usize,
    /// Padding on both sides.
    pub pad: usize,
}

impl Pool1dParams {
    pub fn new(kind: PoolKind, size: usize) -> Self {
        Pool1dParams {
            kind,
            size,
            stride: size,
            pad: 0,
        }
    }

    /// Output length (0 if the window does not fit).
    pub fn l_out(&self, l: usize) -> usize {
        let lp = l + 2 * self.pad;
        if lp < self.size || self.stride == 0 {
            0
        } else {
            (lp - self.size) / self.stride + 1
        }
    }

    /// Checks the options against an input length.
    pub fn validate(&self, l: usize) -> Result<(), String> {
        if self.size == 0 || self.stride == 0 {
            return Err("pooling: size and stride must be at least 1".into());
        }
        if self.pad >= self.size {
            return Err(format!(
                "pooling: padding {} must be smaller than the window {}",
                self.pad, self.size
            ));
        }
        if self.l_out(l) == 0 {
            return Err(format!(
                "pooling: a window of {} does not fit an input of length {l}",
                self.size
            ));
        }
        Ok(())
    }
}

/// A 2D pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kind: PoolKind,
    pub size: (usize, usize),
    pub stride: (usize, usize),
    pub pad: (usize, usize),
}

impl Pool2dParams {
    pub fn new(kind: PoolKind, size: usize) -> Self {
        Pool2dParams {
            kind,
            size: (size, size),
            stride: (size, size),
            pad: (0, 0),
        }
    }

    fn rows(&self) -> Pool1dParams {
        Pool1dParams {
            kind: self.kind,
            size: self.size.0,
            stride: self.stride.0,
            pad: self.pad.0,
        }
    }

    fn cols(&self) -> Pool1dParams {
        Pool1dParams {
            kind: self.kind,
            size: self.size.1,
            stride: self.stride.1,
            pad: self.pad.1,
        }
    }

    /// Output height and width.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (self.rows().l_out(h), self.cols().l_out(w))
    }

    pub fn validate(&self, h: usize, w: usize) -> Result<(), String> {
        self.rows().validate(h)?;
        self.cols().validate(w)
    }
}

/// The window of output j: input positions [lo, hi).
#[inline(always)]
fn window(j: usize, stride: usize, size: usize, pad: usize, l: usize) -> (usize, usize) {
    let start = (j * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + size as isize).max(0) as usize).min(l);
    (lo, hi)
}

struct Pool1dRow<'a> {
    p: Pool1dParams,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for Pool1dRow<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let Pool1dRow { p, x, y } = self;
        let l = x.len();
        if p.kind == PoolKind::Max && p.pad == 0 && p.size == 2 && p.stride == 2 {
            // The common case, in a form the compiler vectorizes.
            let n = y.len();
            let x = &x[..2 * n];
            for j in 0..n {
                let (a, b) = (x[2 * j], x[2 * j + 1]);
                y[j] = if b > a { b } else { a };
            }
            return;
        }
        for (j, o) in y.iter_mut().enumerate() {
            let (lo, hi) = window(j, p.stride, p.size, p.pad, l);
            let win = &x[lo..hi];
            *o = match p.kind {
                PoolKind::Max => {
                    win.iter()
                        .copied()
                        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a })
                }
                PoolKind::Avg => win.iter().sum::<f32>() / win.len() as f32,
            };
        }
    }
}

struct Pool1dBackRow<'a> {
    p: Pool1dParams,
    x: &'a [f32],
    dy: &'a [f32],
    dx: &'a mut [f32],
}

impl WithSimd for Pool1dBackRow<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let Pool1dBackRow { p, x, dy, dx } = self;
        let l = x.len();
        if p.kind == PoolKind::Max && p.pad == 0 && p.size == 2 && p.stride == 2 {
            // Every element of a full pair is written; an odd last element gets 0.
            if l % 2 == 1 {
                dx[l - 1] = 0.0;
            }
            let n = dy.len();
            let (x, dx2) = (&x[..2 * n], &mut dx[..2 * n]);
            for j in 0..n {
                let second = x[2 * j + 1] > x[2 * j];
                let d = dy[j];
                dx2[2 * j] = if second { 0.0 } else { d };
                dx2[2 * j + 1] = if second { d } else { 0.0 };
            }
            return;
        }
        dx.fill(0.0);
        for (j, &d) in dy.iter().enumerate() {
            let (lo, hi) = window(j, p.stride, p.size, p.pad, l);
            match p.kind {
                PoolKind::Max => {
                    let mut arg = lo;
                    for q in lo + 1..hi {
                        if x[q] > x[arg] {
                            arg = q;
                        }
                    }
                    dx[arg] += d;
                }
                PoolKind::Avg => {
                    let share = d / (hi - lo) as f32;
                    dx[lo..hi].iter_mut().for_each(|v| *v += share);
                }
            }
        }
    }
}

/// Rows per parallel task: about 16 K inputs.
fn rows_per_task(l: usize) -> usize {
    (1 << 14) / l.max(1) + 1
}

/// Runs `f` on each (input row, output row), rows spread over threads.
fn par_rows(x: &[f32], l: usize, y: &mut [f32], lo: usize, f: impl Fn(&[f32], &mut [f32]) + Sync) {
    let per = rows_per_task(l);
    x.par_chunks(l * per)
        .zip(y.par_chunks_mut(lo * per))
        .for_each(|(xs, ys)| {
            for (xr, yr) in xs.chunks(l).zip(ys.chunks_mut(lo)) {
                f(xr, yr);
            }
        });
}

/// Runs `f` on each (input row, output-gradient row, input-gradient row).
fn par_rows_back(
    x: &[f32],
    l: usize,
    dy: &[f32],
    lo: usize,
    dx: &mut [f32],
    f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync,
) {
    let per = rows_per_task(l);
    x.par_chunks(l * per)
        .zip(dy.par_chunks(lo * per))
        .zip(dx.par_chunks_mut(l * per))
        .for_each(|((xs, dys), dxs)| {
            for ((xr, dyr), dxr) in xs.chunks(l).zip(dys.chunks(lo)).zip(dxs.chunks_mut(l)) {
                f(xr, dyr, dxr);
            }
        });
}

/// 1D pooling forward over `rows` rows (batch × channels) of length `l`.
///
/// # Panics
/// If the window does not fit or a slice has the wrong length.
pub fn pool1d_forward(
    p: &Pool1dParams,
    x: &[f32],
    rows: usize,
    l: usize,
    y: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "pool1d_forward",
        message,
    })?;
    let lo = p.l_out(l);
    check_len("pool1d_forward", "x", x.len(), rows * l)?;
    check_len("pool1d_forward", "y", y.len(), rows * lo)?;
    let path = SimdPath::current();
    par_rows(x, l, y, lo, |xr, yr| {
        path.dispatch(Pool1dRow {
            p: *p,
            x: xr,
            y: yr,
        })
    });
    Ok(())
}

/// 1D pooling backward: writes dx from the forward input and dy.
///
/// # Panics
/// If the window does not fit or a slice has the wrong length.
pub fn pool1d_backward(
    p: &Pool1dParams,
    x: &[f32],
    rows: usize,
    l: usize,
    dy: &[f32],
    dx: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(l).map_err(|message| KernelError::Params {
        op: "pool1d_backward",
        message,
    })?;
    let lo = p.l_out(l);
    check_len("pool1d_backward", "x", x.len(), rows * l)?;
    check_len("pool1d_backward", "dy", dy.len(), rows * lo)?;
    check_len("pool1d_backward", "dx", dx.len(), rows * l)?;
    let path = SimdPath::current();
    par_rows_back(x, l, dy, lo, dx, |xr, dyr, dxr| {
        path.dispatch(Pool1dBackRow {
            p: *p,
            x: xr,
            dy: dyr,
            dx: dxr,
        })
    });
    Ok(())
}

/// 2D pooling forward over `planes` planes (batch × channels) of h × w.
///
/// # Panics
/// If the window does not fit or a slice has the wrong length.
pub fn pool2d_forward(
    p: &Pool2dParams,
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    y: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(h, w).map_err(|message| KernelError::Params {
        op: "pool2d_forward",
        message,
    })?;
    let (ho, wo) = p.out_hw(h, w);
    check_len("pool2d_forward", "x", x.len(), planes * h * w)?;
    check_len("pool2d_forward", "y", y.len(), planes * ho * wo)?;
    x.par_chunks(h * w)
        .zip(y.par_chunks_mut(ho * wo))
        .for_each(|(xp, yp)| {
            for oy in 0..ho {
                let (r0, r1) = window(oy, p.stride.0, p.size.0, p.pad.0, h);
                for ox in 0..wo {
                    let (c0, c1) = window(ox, p.stride.1, p.size.1, p.pad.1, w);
                    let mut best = f32::NEG_INFINITY;
                    let mut sum = 0f32;
                    for r in r0..r1 {
                        for &v in &xp[r * w + c0..r * w + c1] {
                            best = if v > best { v } else { best };
                            sum += v;
                        }
                    }
                    yp[oy * wo + ox] = match p.kind {
                        PoolKind::Max => best,
                        PoolKind::Avg => sum / ((r1 - r0) * (c1 - c0)) as f32,
                    };
                }
            }
        });
    Ok(())
}

/// 2D pooling backward.
///
/// # Panics
/// If the window does not fit or a slice has the wrong length.
pub fn pool2d_backward(
    p: &Pool2dParams,
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    dy: &[f32],
    dx: &mut [f32],
) -> crate::error::Result<()> {
    p.validate(h, w).map_err(|message| KernelError::Params {
        op: "pool2d_backward",
        message,
    })?;
    let (ho, wo) = p.out_hw(h, w);
    check_len("pool2d_backward", "x", x.len(), planes * h * w)?;
    check_len("pool2d_backward", "dy", dy.len(), planes * ho * wo)?;
    check_len("pool2d_backward", "dx", dx.len(), planes * h * w)?;
    x.par_chunks(h * w)
        .zip(dy.par_chunks(ho * wo))
        .zip(dx.par_chunks_mut(h * w))
        .for_each(|((xp, dyp), dxp)| {
            dxp.fill(0.0);
            for oy in 0..ho {
                let (r0, r1) = window(oy, p.stride.0, p.size.0, p.pad.0, h);
                for ox in 0..wo {
                    let (c0, c1) = window(ox, p.stride.1, p.size.1, p.pad.1, w);
                    let d = dyp[oy * wo + ox];
                    match p.kind {
                        PoolKind::Max => {
                            let mut arg = r0 * w + c0;
                            for r in r0..r1 {
                                for q in r * w + c0..r * w + c1 {
                                    if xp[q] > xp[arg] {
                                        arg = q;
                                    }
                                }
                            }
                            dxp[arg] += d;
                        }
                        PoolKind::Avg => {
                            let share = d / ((r1 - r0) * (c1 - c0)) as f32;
                            for r in r0..r1 {
                                dxp[r * w + c0..r * w + c1]
                                    .iter_mut()
                                    .for_each(|v| *v += share);
                            }
                        }
                    }
                }
            }
        });
    Ok(())
}

/// Global pooling: one value per row of length `l`.
pub fn global_pool_forward(
    kind: PoolKind,
    x: &[f32],
    rows: usize,
    l: usize,
    y: &mut [f32],
) -> crate::error::Result<()> {
    check_len("global_pool_forward", "x", x.len(), rows * l)?;
    check_len("global_pool_forward", "y", y.len(), rows)?;
    require("global_pool_forward", l > 0, "the input has length 0")?;
    for (o, r) in y.iter_mut().zip(x.chunks(l)) {
        *o = match kind {
            PoolKind::Max => r.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            PoolKind::Avg => (r.iter().map(|&v| v as f64).sum::<f64>() / l as f64) as f32,
        };
    }
    Ok(())
}

/// Global pooling backward.
pub fn global_pool_backward(
    kind: PoolKind,
    x: &[f32],
    rows: usize,
    l: usize,
    dy: &[f32],
    dx: &mut [f32],
) -> crate::error::Result<()> {
    check_len("global_pool_backward", "x", x.len(), rows * l)?;
    check_len("global_pool_backward", "dy", dy.len(), rows)?;
    check_len("global_pool_backward", "dx", dx.len(), rows * l)?;
    require("global_pool_backward", l > 0, "the input has length 0")?;
    for ((r, d), out) in x.chunks(l).zip(dy).zip(dx.chunks_mut(l)) {
        match kind {
            PoolKind::Max => {
                out.fill(0.0);
                let mut arg = 0;
                for q in 1..l {
                    if r[q] > r[arg] {
                        arg = q;
                    }
                }
                out[arg] = *d;
            }
            PoolKind::Avg => out.fill(*d / l as f32),
        }
    }
    Ok(())
}
