//! bf16 matrix products with f32 sums: the [`SimdPath::Avx512Bf16`] path.
//!
//! bf16 keeps f32's 8-bit exponent and 7 of its 23 mantissa bits, so an
//! operand rounded to bf16 is within 2⁻⁸ of itself (relative), and the
//! product of two is exact in f32. The kernels here round both operands of
//! every product to bf16 (nearest even, as `vcvtne2ps2bf16` does) and sum
//! pairs of products into f32 accumulators with `vdpbf16ps` (AVX512-BF16):
//! the precision PyTorch autocast and Keras `mixed_bfloat16` give a CPU's
//! matrix products, at twice the products per instruction of an f32 FMA.
//!
//! - [`gemm_rows`](crate::gemm::gemm_rows) on this path: A is rounded once
//!   into pairs along the sum (a 32-bit word each); B is packed per panel of
//!   64 columns into the interleaved pairs `vdpbf16ps` reads (row pair
//!   (2p, 2p + 1) of column j is word p·64 + j), so that one packing serves
//!   every row of A. The register tile is 6 rows × 4 vectors of 16 columns.
//! - [`gemm_dots`](crate::gemm::gemm_dots): both operands are rounded once
//!   into bf16 copies of the spans the rows cover; a dot product then pairs
//!   neighbouring elements of both rows, 32 per instruction.
//!
//! [`to_bits`] is the scalar reference for the rounding; the tests compare
//! the kernels with f64 sums of the rounded operands, and with the exact
//! products within a bound derived from the 8-bit mantissa.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::simd::SendPtr;
#[cfg(doc)]
use crate::simd::SimdPath;

/// Columns of B per packed panel of [`rows`].
const PANEL: usize = 64;
/// Elements per chunk of a dot product (4 KiB of bf16 per row).
const DOT_CHUNK: usize = 2048;

/// Whether this CPU has the bf16 path: AVX-512 (F, BW) with AVX512-BF16.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512bf16")
            && crate::SimdPath::Avx512.is_available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The bf16 bits of `x`, rounded to the nearest (ties to even) as
/// `vcvtne2ps2bf16` rounds: an f32 denormal becomes a zero of its sign, a
/// NaN stays a quiet NaN, and a value past bf16's largest becomes ±∞.
pub fn to_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) as u16) | 0x0040;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 value of bf16 bits.
pub fn from_bits(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` rounded to bf16 (and back to f32, exactly).
pub fn round(x: f32) -> f32 {
    from_bits(to_bits(x))
}

/// Two f32 as one word of bf16 pair: `lo` in the low half.
fn pair(lo: f32, hi: f32) -> u32 {
    to_bits(lo) as u32 | (to_bits(hi) as u32) << 16
}

/// The bf16 path of [`gemm_rows_bias`](crate::gemm::gemm_rows_bias), after
/// its bounds checks: C[i·ldc + j] (= or +=) bias[i] + Σ_r A[i·lda + r] · B[offs[r] + j].
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    offs: &[usize],
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let kp = k.div_ceil(2);
    let mut ap = vec![0u32; m * kp];
    for i in 0..m {
        let row = &a[i * lda..];
        for p in 0..kp {
            let hi = if 2 * p + 1 < k { row[2 * p + 1] } else { 0.0 };
            ap[i * kp + p] = pair(row[2 * p], hi);
        }
    }
    let bias: Vec<f32> = match bias {
        Some(x) => x[..m].to_vec(),
        None => vec![0.0; m],
    };
    let cp = SendPtr(c.as_mut_ptr());
    let bp = SendPtr(b.as_ptr() as *mut f32);
    let run = |j0: usize, j1: usize| {
        let mut panel = vec![0u32; kp.max(1) * PANEL];
        // SAFETY: the caller checked every row of A, B and C against its
        // slice; [j0, j1) is this call's own columns of C.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            rows_avx512(
                &Rows {
                    m,
                    k,
                    kp,
                    ap: &ap,
                    b: bp.get(),
                    offs,
                    bias: &bias,
                    c: cp.get(),
                    ldc,
                    accumulate,
                },
                j0,
                j1,
                &mut panel,
            )
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (j0, j1, &mut panel, cp, bp);
            unreachable!("the bf16 path exists on x86-64 only")
        }
    };
    let block = 16 * PANEL;
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && n >= 2 * block && (m * n * k) >= 1 << 16 {
        (0..n.div_ceil(block))
            .into_par_iter()
            .for_each(|p| run(p * block, ((p + 1) * block).min(n)));
    } else {
        run(0, n);
    }
}

/// One product of [`rows`], shared by its column blocks.
struct Rows<'a> {
    m: usize,
    k: usize,
    kp: usize,
    ap: &'a [u32],
    b: *const f32,
    offs: &'a [usize],
    bias: &'a [f32],
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
}

/// Word index p of a packed pair of rows holds, at 16-bit lane 2j, row 2p's
/// column j and at lane 2j + 1 row 2p + 1's: the permutation that takes
/// `vcvtne2ps2bf16`'s [x0 … x15, y0 … y15] there.
#[cfg(target_arch = "x86_64")]
const INTERLEAVE: [i16; 32] = {
    let mut t = [0i16; 32];
    let mut j = 0;
    while j < 16 {
        t[2 * j] = j as i16;
        t[2 * j + 1] = 16 + j as i16;
        j += 1;
    }
    t
};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_avx512(p: &Rows, j0: usize, j1: usize, panel: &mut [u32]) {
    let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr() as *const _);
    let mut j = j0;
    while j < j1 {
        let w = (j1 - j).min(PANEL);
        let nv = w.div_ceil(16);
        // Pack columns [j, j + w) of every pair of rows of B.
        for q in 0..p.kp {
            let r0 = p.b.add(p.offs[2 * q] + j);
            let r1 = (2 * q + 1 < p.k).then(|| p.b.add(p.offs[2 * q + 1] + j));
            for v in 0..nv {
                let mask = lane_mask(w - 16 * v);
                let x = _mm512_maskz_loadu_ps(mask, r0.add(16 * v));
                let y = match r1 {
                    Some(r1) => _mm512_maskz_loadu_ps(mask, r1.add(16 * v)),
                    None => _mm512_setzero_ps(),
                };
                let h: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(y, x));
                _mm512_storeu_si512(
                    panel.as_mut_ptr().add(q * PANEL + 16 * v) as *mut _,
                    _mm512_permutexvar_epi16(idx, h),
                );
            }
        }
        let mut i = 0;
        while i < p.m {
            let r = (p.m - i).min(6);
            match r {
                6 => rows_tile_v::<6>(p, panel, i, j, w, nv),
                5 => rows_tile_v::<5>(p, panel, i, j, w, nv),
                4 => rows_tile_v::<4>(p, panel, i, j, w, nv),
                3 => rows_tile_v::<3>(p, panel, i, j, w, nv),
                2 => rows_tile_v::<2>(p, panel, i, j, w, nv),
                _ => rows_tile_v::<1>(p, panel, i, j, w, nv),
            }
            i += r;
        }
        j += w;
    }
}

/// The mask of the first `cols` (at most 16) f32 lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lane_mask(cols: usize) -> __mmask16 {
    if cols >= 16 {
        0xffff
    } else {
        (1u16 << cols) - 1
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_tile_v<const R: usize>(
    p: &Rows,
    panel: &[u32],
    i: usize,
    j: usize,
    w: usize,
    nv: usize,
) {
    match nv {
        4 => rows_tile::<R, 4>(p, panel, i, j, w),
        3 => rows_tile::<R, 3>(p, panel, i, j, w),
        2 => rows_tile::<R, 2>(p, panel, i, j, w),
        _ => rows_tile::<R, 1>(p, panel, i, j, w),
    }
}

/// Rows [i, i + R) of C, columns [j, j + w) (w ≤ 16·V, the last vector
/// masked), from the packed panel.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_tile<const R: usize, const V: usize>(
    p: &Rows,
    panel: &[u32],
    i: usize,
    j: usize,
    w: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); V]; R];
    for (r, accr) in acc.iter_mut().enumerate() {
        *accr = [_mm512_set1_ps(p.bias[i + r]); V];
    }
    let a = p.ap.as_ptr().add(i * p.kp);
    let pp = panel.as_ptr();
    for q in 0..p.kp {
        let bv: [__m512bh; V] = core::array::from_fn(|v| {
            core::mem::transmute(_mm512_loadu_si512(pp.add(q * PANEL + 16 * v) as *const _))
        });
        for (r, accr) in acc.iter_mut().enumerate() {
            let av: __m512bh = core::mem::transmute(_mm512_set1_epi32(*a.add(r * p.kp + q) as i32));
            for v in 0..V {
                accr[v] = _mm512_dpbf16_ps(accr[v], av, bv[v]);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        let cr = p.c.add((i + r) * p.ldc + j);
        for (v, x) in accr.iter().enumerate() {
            let mask = lane_mask(w - 16 * v);
            let out = if p.accumulate {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, cr.add(16 * v)), *x)
            } else {
                *x
            };
            _mm512_mask_storeu_ps(cr.add(16 * v), mask, out);
        }
    }
}

/// A span of an f32 buffer rounded to bf16 once, so that the rows of a
/// dot-product kernel, which may overlap, are read as bf16.
struct Rounded {
    bits: Vec<u16>,
    /// The buffer index of `bits[0]`.
    start: usize,
}

impl Rounded {
    /// `x[start..end]` rounded.
    fn new(x: &[f32], start: usize, end: usize) -> Rounded {
        let src = &x[start..end];
        let mut bits = vec![0u16; src.len()];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` was checked when the path was chosen; the
        // two slices have the same length.
        unsafe {
            round_avx512(src, &mut bits)
        };
        #[cfg(not(target_arch = "x86_64"))]
        for (d, &s) in bits.iter_mut().zip(src) {
            *d = to_bits(s);
        }
        Rounded { bits, start }
    }

    fn at(&self, offset: usize) -> *const u16 {
        self.bits[offset - self.start..].as_ptr()
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_avx512(src: &[f32], dst: &mut [u16]) {
    let n = src.len();
    let mut l = 0;
    while l + 32 <= n {
        let lo = _mm512_loadu_ps(src.as_ptr().add(l));
        let hi = _mm512_loadu_ps(src.as_ptr().add(l + 16));
        let h: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
        _mm512_storeu_si512(dst.as_mut_ptr().add(l) as *mut _, h);
        l += 32;
    }
    for t in l..n {
        dst[t] = to_bits(src[t]);
    }
}

/// The bf16 path of [`gemm_dots`](crate::gemm::gemm_dots) and
/// [`gemm_dots_segments`](crate::gemm::gemm_dots_segments), after their
/// bounds checks and after C was zeroed where it is not accumulated into:
/// C[i·ldc + j] += Σ_s Σ_l A[aoff(i) + s·a_stride + l] · B[boff(j) + s·b_stride + l].
#[allow(clippy::too_many_arguments)]
pub(crate) fn dots<FA, FB>(
    m: usize,
    n: usize,
    len: usize,
    segs: crate::gemm::Segments,
    a: &[f32],
    aoff: FA,
    b: &[f32],
    boff: FB,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) where
    FA: Fn(usize) -> usize + Copy + Sync,
    FB: Fn(usize) -> usize + Copy + Sync,
{
    if len == 0 || segs.count == 0 {
        return;
    }
    let span = |count: usize, off: &dyn Fn(usize) -> usize, stride: usize| {
        let lo = (0..count).map(off).min().unwrap_or(0);
        let hi = (0..count)
            .map(|i| off(i) + (segs.count - 1) * stride + len)
            .max()
            .unwrap_or(0);
        (lo, hi)
    };
    let (alo, ahi) = span(m, &aoff, segs.a_stride);
    let (blo, bhi) = span(n, &boff, segs.b_stride);
    let ar = Rounded::new(a, alo, ahi);
    let br = Rounded::new(b, blo, bhi);
    let cp = SendPtr(c.as_mut_ptr());
    let run = |j0: usize, j1: usize| {
        let d = Dots {
            m,
            j0,
            j1,
            len,
            segs,
            a: &ar,
            aoff,
            b: &br,
            boff,
            c: cp.get(),
            ldc,
        };
        // SAFETY: the caller checked every segment of every row against
        // its slice (so against the rounded spans), and C's rows; [j0, j1)
        // is this call's own columns of C.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            dots_avx512(&d)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = d;
            unreachable!("the bf16 path exists on x86-64 only")
        }
    };
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && n >= 8 && m * n * len * segs.count >= 1 << 16 {
        let per = n.div_ceil(threads).div_ceil(4) * 4;
        (0..n.div_ceil(per))
            .into_par_iter()
            .for_each(|p| run(p * per, ((p + 1) * per).min(n)));
    } else {
        run(0, n);
    }
}

struct Dots<'a, FA, FB> {
    m: usize,
    j0: usize,
    j1: usize,
    len: usize,
    segs: crate::gemm::Segments,
    a: &'a Rounded,
    aoff: FA,
    b: &'a Rounded,
    boff: FB,
    c: *mut f32,
    ldc: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_avx512<FA, FB>(d: &Dots<FA, FB>)
where
    FA: Fn(usize) -> usize + Copy,
    FB: Fn(usize) -> usize + Copy,
{
    let mut l0 = 0;
    while l0 < d.len {
        let l1 = (l0 + DOT_CHUNK).min(d.len);
        let mut i = 0;
        while i < d.m {
            let r = (d.m - i).min(6);
            let mut j = d.j0;
            while j < d.j1 {
                let q = (d.j1 - j).min(4);
                match (r, q) {
                    (6, 4) => dots_tile::<FA, FB, 6, 4>(d, i, j, l0, l1),
                    (6, _) => dots_tile_dyn::<FA, FB, 6>(d, i, j, q, l0, l1),
                    (5, 4) => dots_tile::<FA, FB, 5, 4>(d, i, j, l0, l1),
                    (5, _) => dots_tile_dyn::<FA, FB, 5>(d, i, j, q, l0, l1),
                    (4, 4) => dots_tile::<FA, FB, 4, 4>(d, i, j, l0, l1),
                    (4, _) => dots_tile_dyn::<FA, FB, 4>(d, i, j, q, l0, l1),
                    (3, _) => dots_tile_dyn::<FA, FB, 3>(d, i, j, q, l0, l1),
                    (2, _) => dots_tile_dyn::<FA, FB, 2>(d, i, j, q, l0, l1),
                    _ => dots_tile_dyn::<FA, FB, 1>(d, i, j, q, l0, l1),
                }
                j += q;
            }
            i += r;
        }
        l0 = l1;
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_tile_dyn<FA, FB, const R: usize>(
    d: &Dots<FA, FB>,
    i: usize,
    j: usize,
    q: usize,
    l0: usize,
    l1: usize,
) where
    FA: Fn(usize) -> usize + Copy,
    FB: Fn(usize) -> usize + Copy,
{
    for jj in j..j + q {
        dots_tile::<FA, FB, R, 1>(d, i, jj, l0, l1);
    }
}

/// C[i..i + R, j..j + Q] += the dot products over [l0, l1), 32 elements per
/// instruction, the last 32 masked.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_tile<FA, FB, const R: usize, const Q: usize>(
    d: &Dots<FA, FB>,
    i: usize,
    j: usize,
    l0: usize,
    l1: usize,
) where
    FA: Fn(usize) -> usize + Copy,
    FB: Fn(usize) -> usize + Copy,
{
    let mut acc = [[_mm512_setzero_ps(); Q]; R];
    for sg in 0..d.segs.count {
        let (ao, bo) = (sg * d.segs.a_stride, sg * d.segs.b_stride);
        let ap: [*const u16; R] = core::array::from_fn(|r| d.a.at((d.aoff)(i + r) + ao));
        let bp: [*const u16; Q] = core::array::from_fn(|q| d.b.at((d.boff)(j + q) + bo));
        let mut l = l0;
        while l < l1 {
            let mask: __mmask32 = if l1 - l >= 32 {
                u32::MAX
            } else {
                (1u32 << (l1 - l)) - 1
            };
            let bv: [__m512bh; Q] = core::array::from_fn(|q| {
                core::mem::transmute(_mm512_maskz_loadu_epi16(mask, bp[q].add(l) as *const i16))
            });
            for r in 0..R {
                let av: __m512bh = core::mem::transmute(_mm512_maskz_loadu_epi16(
                    mask,
                    ap[r].add(l) as *const i16,
                ));
                for q in 0..Q {
                    acc[r][q] = _mm512_dpbf16_ps(acc[r][q], av, bv[q]);
                }
            }
            l += 32;
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        for (q, x) in accr.iter().enumerate() {
            *d.c.add((i + r) * d.ldc + j + q) += _mm512_reduce_add_ps(*x);
        }
    }
}
