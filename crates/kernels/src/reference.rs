//! Naive scalar references in f64, written straight from the definitions.
//! The fast f32 kernels are tested against these, and the gradients of the
//! kernels against central finite differences of these.

use crate::conv1d::Conv1dParams;
use crate::conv2d::Conv2dParams;
use crate::pool::{Pool1dParams, Pool2dParams, PoolKind};

/// 1D convolution forward.
pub fn conv1d_forward(
    p: &Conv1dParams,
    x: &[f64],
    batch: usize,
    l: usize,
    w: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let lo = p.l_out(l);
    let (pl, _) = p.pads(l);
    let (cig, cog) = (p.c_in_g(), p.c_out_g());
    let mut y = vec![0f64; batch * p.c_out * lo];
    for b in 0..batch {
        for co in 0..p.c_out {
            let g = co / cog;
            for j in 0..lo {
                let mut acc = bias.map_or(0.0, |b| b[co]);
                for ci in 0..cig {
                    for t in 0..p.k {
                        let q = (j * p.stride + t * p.dilation) as isize - pl as isize;
                        if q >= 0 && (q as usize) < l {
                            acc += w[(co * cig + ci) * p.k + t]
                                * x[(b * p.c_in + g * cig + ci) * l + q as usize];
                        }
                    }
                }
                y[(b * p.c_out + co) * lo + j] = acc;
            }
        }
    }
    y
}

/// 1D convolution backward: (dx, dw, db).
pub fn conv1d_backward(
    p: &Conv1dParams,
    x: &[f64],
    batch: usize,
    l: usize,
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let lo = p.l_out(l);
    let (pl, _) = p.pads(l);
    let (cig, cog) = (p.c_in_g(), p.c_out_g());
    let mut dx = vec![0f64; batch * p.c_in * l];
    let mut dw = vec![0f64; p.weight_len()];
    let mut db = vec![0f64; p.c_out];
    for b in 0..batch {
        for co in 0..p.c_out {
            let g = co / cog;
            for j in 0..lo {
                let d = dy[(b * p.c_out + co) * lo + j];
                db[co] += d;
                for ci in 0..cig {
                    for t in 0..p.k {
                        let q = (j * p.stride + t * p.dilation) as isize - pl as isize;
                        if q >= 0 && (q as usize) < l {
                            let xi = (b * p.c_in + g * cig + ci) * l + q as usize;
                            let wi = (co * cig + ci) * p.k + t;
                            dw[wi] += d * x[xi];
                            dx[xi] += d * w[wi];
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// 2D convolution forward (NCHW).
pub fn conv2d_forward(
    p: &Conv2dParams,
    x: &[f64],
    batch: usize,
    h: usize,
    w_: usize,
    w: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let (ho, wo) = p.out_hw(h, w_);
    let ((pt, _), (pleft, _)) = p.pads(h, w_);
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let mut y = vec![0f64; batch * p.c_out * ho * wo];
    for b in 0..batch {
        for co in 0..p.c_out {
            let g = co / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b[co]);
                    for ci in 0..cig {
                        for ky in 0..p.kh {
                            for kx in 0..p.kw {
                                let iy =
                                    (oy * p.stride.0 + ky * p.dilation.0) as isize - pt as isize;
                                let ix =
                                    (ox * p.stride.1 + kx * p.dilation.1) as isize - pleft as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w_ {
                                    let xv = x[((b * p.c_in + g * cig + ci) * h + iy as usize)
                                        * w_
                                        + ix as usize];
                                    let wv = w[((co * cig + ci) * p.kh + ky) * p.kw + kx];
                                    acc += xv * wv;
                                }
                            }
                        }
                    }
                    y[((b * p.c_out + co) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// 2D convolution backward: (dx, dw, db).
pub fn conv2d_backward(
    p: &Conv2dParams,
    x: &[f64],
    batch: usize,
    h: usize,
    w_: usize,
    w: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (ho, wo) = p.out_hw(h, w_);
    let ((pt, _), (pleft, _)) = p.pads(h, w_);
    let (cig, cog) = (p.c_in / p.groups, p.c_out / p.groups);
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; w.len()];
    let mut db = vec![0f64; p.c_out];
    for b in 0..batch {
        for co in 0..p.c_out {
            let g = co / cog;
            for oy in 0..ho {
                for ox in 0..wo {
                    let d = dy[((b * p.c_out + co) * ho + oy) * wo + ox];
                    db[co] += d;
                    for ci in 0..cig {
                        for ky in 0..p.kh {
                            for kx in 0..p.kw {
                                let iy =
                                    (oy * p.stride.0 + ky * p.dilation.0) as isize - pt as isize;
                                let ix =
                                    (ox * p.stride.1 + kx * p.dilation.1) as isize - pleft as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w_ {
                                    let xi = ((b * p.c_in + g * cig + ci) * h + iy as usize) * w_
                                        + ix as usize;
                                    let wi = ((co * cig + ci) * p.kh + ky) * p.kw + kx;
                                    dw[wi] += d * x[xi];
                                    dx[xi] += d * w[wi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// Dense forward: y[b, o] = Σ_i x[b, i] w[o, i] + bias[o].
pub fn dense_forward(
    x: &[f64],
    batch: usize,
    n_in: usize,
    w: &[f64],
    n_out: usize,
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let mut y = vec![0f64; batch * n_out];
    for b in 0..batch {
        for o in 0..n_out {
            let mut acc = bias.map_or(0.0, |b| b[o]);
            for i in 0..n_in {
                acc += x[b * n_in + i] * w[o * n_in + i];
            }
            y[b * n_out + o] = acc;
        }
    }
    y
}

/// Dense backward: (dx, dw, db).
pub fn dense_backward(
    x: &[f64],
    batch: usize,
    n_in: usize,
    w: &[f64],
    n_out: usize,
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0f64; batch * n_in];
    let mut dw = vec![0f64; n_out * n_in];
    let mut db = vec![0f64; n_out];
    for b in 0..batch {
        for o in 0..n_out {
            let d = dy[b * n_out + o];
            db[o] += d;
            for i in 0..n_in {
                dw[o * n_in + i] += d * x[b * n_in + i];
                dx[b * n_in + i] += d * w[o * n_in + i];
            }
        }
    }
    (dx, dw, db)
}

/// 1D pooling forward over (batch·channels) rows of length l.
pub fn pool1d_forward(p: &Pool1dParams, x: &[f64], rows: usize, l: usize) -> Vec<f64> {
    let lo = p.l_out(l);
    let mut y = vec![0f64; rows * lo];
    for r in 0..rows {
        for j in 0..lo {
            let mut best = f64::NEG_INFINITY;
            let mut sum = 0.0;
            let mut count = 0;
            for t in 0..p.size {
                let q = (j * p.stride + t) as isize - p.pad as isize;
                if q >= 0 && (q as usize) < l {
                    let v = x[r * l + q as usize];
                    best = best.max(v);
                    sum += v;
                    count += 1;
                }
            }
            y[r * lo + j] = match p.kind {
                PoolKind::Max => best,
                PoolKind::Avg => sum / count.max(1) as f64,
            };
        }
    }
    y
}

/// 1D pooling backward: max routes each gradient to the first argmax of its
/// window; average spreads it evenly over the window's valid elements.
pub fn pool1d_backward(p: &Pool1dParams, x: &[f64], rows: usize, l: usize, dy: &[f64]) -> Vec<f64> {
    let lo = p.l_out(l);
    let mut dx = vec![0f64; rows * l];
    for r in 0..rows {
        for j in 0..lo {
            let valid: Vec<usize> = (0..p.size)
                .filter_map(|t| {
                    let q = (j * p.stride + t) as isize - p.pad as isize;
                    (q >= 0 && (q as usize) < l).then_some(q as usize)
                })
                .collect();
            let d = dy[r * lo + j];
            match p.kind {
                PoolKind::Max => {
                    let mut arg = valid[0];
                    for &q in &valid {
                        if x[r * l + q] > x[r * l + arg] {
                            arg = q;
                        }
                    }
                    dx[r * l + arg] += d;
                }
                PoolKind::Avg => {
                    for &q in &valid {
                        dx[r * l + q] += d / valid.len() as f64;
                    }
                }
            }
        }
    }
    dx
}

/// 2D pooling forward over (batch·channels) planes of h × w.
pub fn pool2d_forward(p: &Pool2dParams, x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = p.out_hw(h, w);
    let mut y = vec![0f64; planes * ho * wo];
    for c in 0..planes {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = f64::NEG_INFINITY;
                let mut sum = 0.0;
                let mut count = 0;
                for ky in 0..p.size.0 {
                    for kx in 0..p.size.1 {
                        let iy = (oy * p.stride.0 + ky) as isize - p.pad.0 as isize;
                        let ix = (ox * p.stride.1 + kx) as isize - p.pad.1 as isize;
                        if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                            let v = x[(c * h + iy as usize) * w + ix as usize];
                            best = best.max(v);
                            sum += v;
                            count += 1;
                        }
                    }
                }
                y[(c * ho + oy) * wo + ox] = match p.kind {
                    PoolKind::Max => best,
                    PoolKind::Avg => sum / count.max(1) as f64,
                };
            }
        }
    }
    y
}

/// The lower triangle (with the diagonal) of X Xᵀ for an n × k byte matrix X
/// (row-major, row stride `ldx`), summed in u64: entry (i, j), j ≤ i, at
/// i·n + j; the upper triangle is 0.
pub fn gram_u8(n: usize, k: usize, x: &[u8], ldx: usize) -> Vec<u64> {
    let mut c = vec![0u64; n * n];
    for i in 0..n {
        for j in 0..=i {
            c[i * n + j] = (0..k)
                .map(|r| x[i * ldx + r] as u64 * x[j * ldx + r] as u64)
                .sum();
        }
    }
    c
}
