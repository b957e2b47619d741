//! A stride-1 convolution fused with activation and max pooling of pairs
//! (as [`conv1d_act_maxpool2_forward`](crate::conv1d::conv1d_act_maxpool2_forward)
//! and its backward pass) on the AMX-BF16 tiles, reading its operands
//! without packing them per tap.
//!
//! `tdpbf16ps` multiplies a tile of A's rows of word pairs by a tile of B
//! whose row q holds, per column, the pair of B's rows 2q and 2q + 1. Here
//! the pair of rows is a pair of taps of one input channel, (2p, 2p + 1),
//! so that column j's word is (x[c, j + 2p], x[c, j + 2p + 1]): word j + 2p
//! of one interleaved copy of the channel, whose word i is (x[c, i],
//! x[c, i + 1]). A tile's 16 rows are 16 input channels at the same tap
//! pair, one channel's copy apart: a constant stride, so the tile is read
//! straight from the copy, for every tap pair and every column block. The
//! copy is one word per input value, rounded once per sample; packing B's
//! rows per tap (what [`crate::bf16`]'s `rows` does for any product) wrote
//! k/2 words per input value.
//!
//! The weights become A's tiles once per call: per 16 output channels, per
//! 16 input channels, per tap pair, words (w[o, c, 2p], w[o, c, 2p + 1]),
//! with zeros past the channels and, for an odd k, as the last pair's
//! second tap. That zero meets x[c, j + k], outside output j's window: a
//! finite value there adds nothing, but an infinite one would add a NaN,
//! so a sample whose rounded input holds one runs on the general path.
//!
//! The backward pass reads its operands the same way: the input gradient
//! ([`input_grad_block`]) from a copy of the output gradient interleaved
//! by pairs of output channels, read at every tap; the weight gradient
//! ([`weight_grad_block`]) as dwᵀ, A's tiles read from one rounded copy of
//! the input at every tap, the output gradient transposed into B's tiles
//! once.

#[cfg(target_arch = "x86_64")]
use crate::bf16::lane_mask;
use crate::conv1d::{Conv1dParams, PoolPairs};
use crate::scratch::{line_aligned, with_halves, with_scratch, with_words, LINE_SLACK};
use crate::simd::SimdPath;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Output columns per block: the block's sums (32 output channels × 512
/// columns, 64 KiB) are pooled while they are in cache, as on the other
/// paths.
const BLOCK: usize = 512;

/// One row of a tile (16 words) on a cache line of its own.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// The weights as A's tiles, for one call: the forward pass's
/// ([`TileWeights::new`]: rows the output channels, the sum over the input
/// channels) or the input gradient's ([`TileWeights::input_grad`]: rows the
/// input channels, the sum over the output channels).
pub(crate) struct TileWeights {
    /// The rows of the copy the sum runs over, 16 to a step: input
    /// channels in the forward pass, pairs of output channels in the input
    /// gradient.
    chans: usize,
    /// The rows of the product.
    rows: usize,
    /// Shifts of the copy per 16 of its rows, each one step of the sum:
    /// tap pairs, ⌈k/2⌉, in the forward pass; taps, k, in the input
    /// gradient.
    shifts: usize,
    /// Tiles of 16 rows: an even number for the forward pass (blocks of
    /// 32), ⌈rows/16⌉ for the input gradient (blocks of 16).
    row_tiles: usize,
    /// Per tile of rows, per step: 16 rows × 16 words, each row one cache
    /// line.
    words: Vec<Line>,
}

/// Whether [`TileWeights`] runs a convolution on `path`: AMX-BF16, stride
/// 1, no dilation, one group, and enough output channels and columns for
/// the tiles to pay (as [`crate::bf16`]'s `rows` asks of a product: at
/// least 16 rows and 256 columns).
pub(crate) fn applies(p: &Conv1dParams, path: SimdPath, lp2: usize) -> bool {
    path == SimdPath::AmxBf16
        && p.stride == 1
        && p.dilation == 1
        && p.groups == 1
        && p.c_out >= 16
        && 2 * lp2 >= 256
}

impl TileWeights {
    /// Steps of the sum: ⌈chans/16⌉ · shifts, channels outer.
    fn steps(&self) -> usize {
        self.chans.div_ceil(16) * self.shifts
    }

    /// Rounds and arranges w (c_out × c_in × k) for the forward pass: per
    /// 16 input channels, per tap pair p, row o, word (w[o, c, 2p], w[o, c,
    /// 2p + 1]), zeros past the channels and the taps.
    pub(crate) fn new(p: &Conv1dParams, w: &[f32]) -> TileWeights {
        let (c_in, c_out, k) = (p.c_in, p.c_out, p.k);
        let pairs = k.div_ceil(2);
        let half = |o: usize, c: usize, t: usize| -> u32 {
            if o < c_out && c < c_in && t < k {
                crate::bf16::to_bits(w[(o * c_in + c) * k + t]) as u32
            } else {
                0
            }
        };
        TileWeights {
            chans: c_in,
            rows: c_out,
            shifts: pairs,
            row_tiles: c_out.div_ceil(32) * 2,
            words: Vec::new(),
        }
        .arrange(|o, cb, pair, col| {
            let c = 16 * cb + col;
            half(o, c, 2 * pair) | half(o, c, 2 * pair + 1) << 16
        })
    }

    /// Rounds and arranges w for the input gradient: per 16 pairs of output
    /// channels, per tap t, row ci, word (w[2c, ci, t], w[2c + 1, ci, t]),
    /// the pair that meets (dz[2c, i + base − t], dz[2c + 1, i + base − t])
    /// in [`input_grad_block`]: pairs of channels rather than of taps, as
    /// the sum over 32 output channels fills a tile's step and the kernel
    /// needs no tap that is not there.
    pub(crate) fn input_grad(p: &Conv1dParams, w: &[f32]) -> TileWeights {
        let (c_in, c_out, k) = (p.c_in, p.c_out, p.k);
        let half = |co: usize, ci: usize, t: usize| -> u32 {
            if co < c_out && ci < c_in {
                crate::bf16::to_bits(w[(co * c_in + ci) * k + t]) as u32
            } else {
                0
            }
        };
        TileWeights {
            chans: c_out.div_ceil(2),
            rows: c_in,
            shifts: k,
            row_tiles: c_in.div_ceil(16),
            words: Vec::new(),
        }
        .arrange(|ci, cb, t, col| {
            let co = 32 * cb + 2 * col;
            half(co, ci, t) | half(co + 1, ci, t) << 16
        })
    }

    /// Fills the words: per tile of rows, per step (16 rows of the copy
    /// `cb`, shift), row r's word col is `word(r, cb, shift, col)`.
    fn arrange(mut self, word: impl Fn(usize, usize, usize, usize) -> u32) -> TileWeights {
        let steps = self.steps();
        self.words = vec![Line([0; 16]); self.row_tiles * steps * 16];
        for rt in 0..self.row_tiles {
            for s in 0..steps {
                let (cb, shift) = (s / self.shifts, s % self.shifts);
                let tile = &mut self.words[(rt * steps + s) * 16..][..16];
                for (r, line) in tile.iter_mut().enumerate() {
                    for (col, w) in line.0.iter_mut().enumerate() {
                        *w = word(16 * rt + r, cb, shift, col);
                    }
                }
            }
        }
        self
    }
}

/// One sample: `xp` (c_in × lpad, padded) convolved, the bias added, pooled
/// in pairs and activated into y (c_out × lp2), with the mask of
/// [`PoolPairs`] when `mask` is not empty. False, with nothing written,
/// when the rounded input holds an infinity or a NaN (see the module's
/// documentation): the caller then runs the general path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_pool_sample(
    tw: &TileWeights,
    act: crate::Activation,
    xp: &[f32],
    lpad: usize,
    bias: Option<&[f32]>,
    lp2: usize,
    y: &mut [f32],
    mask: &mut [f32],
) -> bool {
    let cols = 2 * lp2;
    let cols32 = cols.div_ceil(32) * 32;
    // The copy's stride in words: every column block's tiles read up to
    // 2·(pairs − 1) + 16 words past its first column. Not a multiple of
    // 4 KiB, so that a tile's 16 rows do not share the L1 cache's sets.
    let mut stride = (cols32 + 2 * tw.shifts).div_ceil(16) * 16;
    if stride.is_multiple_of(1024) {
        stride += 16;
    }
    let channels = tw.chans.div_ceil(16) * 16;
    // Sums 2 KiB apart: a tile's rows fall in two of the L1 cache's sets.
    let t_stride = BLOCK;
    with_words(channels * stride + LINE_SLACK / 4, |copy| {
        let copy = line_aligned(copy, channels * stride);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path was chosen only where the CPU has AVX512-BF16;
        // xp holds c_in rows of lpad values, `copy` `channels` rows of
        // `stride` words.
        let finite = unsafe { interleave(xp, tw.chans, lpad, lpad, channels, stride, copy) };
        #[cfg(not(target_arch = "x86_64"))]
        let finite = false;
        if !finite {
            return false;
        }
        with_scratch(tw.row_tiles * 16 * t_stride + LINE_SLACK / 4, |t| {
            let t = line_aligned(t, tw.row_tiles * 16 * t_stride);
            let mut j0 = 0;
            while j0 < cols {
                let n = BLOCK.min(cols - j0);
                // SAFETY: the tiles are granted (the path was chosen only
                // then); the copy holds the words every tile reads (its
                // stride covers the last block's 32-column steps and the tap
                // pairs past them), `t` row_tiles · 16 rows of t_stride ≥ n
                // rounded up to 32.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    sums(tw, copy, stride, j0, n, t, t_stride)
                };
                for o in 0..tw.rows {
                    let src = &t[o * t_stride..o * t_stride + n];
                    let at = o * lp2 + j0 / 2;
                    let mr = if mask.is_empty() {
                        &mut []
                    } else {
                        &mut mask[at..at + n / 2]
                    };
                    SimdPath::AmxBf16.dispatch(PoolPairs {
                        act,
                        src,
                        bias: bias.map(|b| b[o]),
                        y: &mut y[at..at + n / 2],
                        mask: mr,
                    });
                }
                j0 += n;
            }
        });
        true
    })
}

/// Writes word i of channel c's row of `copy` as (x[c, i], x[c, i + 1])
/// rounded to bf16, for i below `stride`; x holds `rows` rows `ld` apart,
/// and reads as 0 past `len` and on channels past `rows`. False if a
/// rounded value is infinite or NaN.
///
/// # Safety
/// `x` holds `rows` rows of `ld` ≥ len values (the last one len); `copy`
/// `channels` ≥ rows rows of `stride` words (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave(
    x: &[f32],
    rows: usize,
    ld: usize,
    len: usize,
    channels: usize,
    stride: usize,
    copy: &mut [u32],
) -> bool {
    let mut bad = 0;
    for c in 0..channels {
        let out = copy.as_mut_ptr().add(c * stride);
        if c >= rows {
            std::ptr::write_bytes(out, 0, stride);
            continue;
        }
        let row = x.as_ptr().add(c * ld);
        bad |= word_pairs(
            row,
            len,
            row.wrapping_add(1),
            len.saturating_sub(1),
            out,
            stride,
        );
    }
    bad == 0
}

/// Writes `stride` words at `out`, word i (lo[i], hi[i]) rounded to bf16,
/// each read as 0 at and past its length; the mask of the rounded values
/// that are infinite or NaN.
///
/// # Safety
/// lo and hi hold their lengths of values; out `stride` words (a multiple
/// of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn word_pairs(
    lo: *const f32,
    lo_len: usize,
    hi: *const f32,
    hi_len: usize,
    out: *mut u32,
    stride: usize,
) -> __mmask32 {
    let idx = _mm512_loadu_si512(crate::bf16::INTERLEAVE.as_ptr() as *const _);
    let exp = _mm512_set1_epi16(0x7f80);
    let mut bad: __mmask32 = 0;
    let mut i = 0;
    while i < stride {
        // A masked lane is not read: the addresses past the rows are not
        // dereferenced.
        let l = _mm512_maskz_loadu_ps(lane_mask(lo_len.saturating_sub(i)), lo.wrapping_add(i));
        let h = _mm512_maskz_loadu_ps(lane_mask(hi_len.saturating_sub(i)), hi.wrapping_add(i));
        let v: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(h, l));
        bad |= _mm512_cmpeq_epi16_mask(_mm512_and_si512(v, exp), exp);
        _mm512_storeu_si512(out.add(i) as *mut _, _mm512_permutexvar_epi16(idx, v));
        i += 16;
    }
    bad
}

/// t[o, j] = Σ_c Σ_t w[o, c, t] · x[c, j0 + j + t] for the row tiles'
/// output channels and j < n rounded up to 32, from the tiles.
///
/// # Safety
/// As [`forward_pool_sample`] calls it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn sums(
    tw: &TileWeights,
    copy: &[u32],
    stride: usize,
    j0: usize,
    n: usize,
    t: &mut [f32],
    t_stride: usize,
) {
    let _tiles = crate::amx::Tiles::new();
    let ldb = 4 * stride;
    let mut jb = 0;
    while jb < n {
        for rt in (0..tw.row_tiles).step_by(2) {
            crate::amx::zero_sums();
            let steps = tw.steps();
            for s in 0..steps {
                let (cb, pair) = (s / tw.shifts, s % tw.shifts);
                let a0 = tw.words.as_ptr().add((rt * steps + s) * 16) as *const u32;
                let a1 = tw.words.as_ptr().add(((rt + 1) * steps + s) * 16) as *const u32;
                let b0 = copy.as_ptr().add(16 * cb * stride + j0 + jb + 2 * pair);
                crate::amx::bf16_step(
                    a0 as *const u8,
                    a1 as *const u8,
                    64,
                    b0 as *const u8,
                    b0.add(16) as *const u8,
                    ldb,
                );
            }
            crate::amx::store_sums(
                t.as_mut_ptr().add(rt * 16 * t_stride + jb) as *mut u8,
                4 * t_stride,
            );
        }
        jb += 32;
    }
}

/// The copy's stride in words for `need` words a row: whole tile rows, and
/// not a multiple of 4 KiB, so that a tile's 16 rows do not share the L1
/// cache's sets.
fn copy_stride(need: usize) -> usize {
    let stride = need.div_ceil(16) * 16;
    if stride.is_multiple_of(1024) {
        stride + 16
    } else {
        stride
    }
}

/// One block of a convolution's input gradient (the fused backward pass of
/// [`crate::conv1d::conv1d_act_maxpool2_backward`]): dx[ci, j] = Σ_co Σ_t
/// w[co, ci, t] · dz[co, j + base − t] for j < n, where dz is `tile`'s
/// `c_out` rows, `ld` apart, of `width` values (read as 0 past width),
/// written to dx's c_in rows, `ldx` apart. `tw` is
/// [`TileWeights::input_grad`].
///
/// The sum pairs output channels: B's tile row q, column j, holds (dz[2q,
/// j + base − t], dz[2q + 1, j + base − t]), word j + base − t of a copy of
/// rows 2q and 2q + 1 interleaved, so that a tile is read straight from the
/// copy at every tap and column, 16 pairs of channels one copy's row apart.
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_grad_block(
    tw: &TileWeights,
    tile: &[f32],
    c_out: usize,
    ld: usize,
    width: usize,
    base: usize,
    n: usize,
    dx: &mut [f32],
    ldx: usize,
) {
    let k = tw.shifts;
    assert!(tw.chans == c_out.div_ceil(2));
    assert!(base + 1 >= k && width <= ld && tile.len() >= (c_out - 1) * ld + width);
    assert!(dx.len() >= (tw.rows - 1) * ldx + n);
    let n64 = n.div_ceil(64) * 64;
    let stride = copy_stride(base + n64);
    let channels = tw.chans.div_ceil(16) * 16;
    with_words(channels * stride + LINE_SLACK / 4, |copy| {
        let copy = line_aligned(copy, channels * stride);
        // SAFETY: the path was chosen only where the CPU has AVX512-BF16
        // and the tiles are granted; `tile` holds the rows read (checked
        // above, the last of an odd c_out read as zeros), `copy` `channels`
        // rows of `stride` words; every tile reads words base + jb − t ..
        // + 64 of its rows, within the stride; dx holds the rows' n
        // columns (checked above).
        #[cfg(target_arch = "x86_64")]
        unsafe {
            for c in 0..channels {
                let out = copy.as_mut_ptr().add(c * stride);
                let (lo, hi) = (2 * c, 2 * c + 1);
                let len = |r: usize| if r < c_out { width } else { 0 };
                let at = |r: usize| tile.as_ptr().wrapping_add(r * ld);
                word_pairs(at(lo), len(lo), at(hi), len(hi), out, stride);
            }
            input_grad_sums(tw, copy, stride, base, n, dx, ldx)
        };
    })
}

/// The products of [`input_grad_block`], 16 rows × 64 columns at a time,
/// stored straight into dx where the block is whole.
///
/// # Safety
/// As [`input_grad_block`] calls it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn input_grad_sums(
    tw: &TileWeights,
    copy: &[u32],
    stride: usize,
    base: usize,
    n: usize,
    dx: &mut [f32],
    ldx: usize,
) {
    let _tiles = crate::amx::Tiles::new();
    let steps = tw.steps();
    let mut buf = [Line([0; 16]); 64];
    for rt in 0..tw.row_tiles {
        let rows = 16.min(tw.rows - 16 * rt);
        let mut jb = 0;
        while jb < n {
            crate::amx::zero_sums();
            for s in 0..steps {
                let (cb, t) = (s / tw.shifts, s % tw.shifts);
                let a = tw.words.as_ptr().add((rt * steps + s) * 16);
                let b = copy.as_ptr().add(16 * cb * stride + base + jb - t);
                crate::amx::bf16_step_1x4(a as *const u8, 64, b as *const u8, 4 * stride);
            }
            let out = dx.as_mut_ptr().add(16 * rt * ldx + jb);
            let cols = 64.min(n - jb);
            if rows == 16 && cols == 64 {
                crate::amx::store_sums_row(out as *mut u8, 4 * ldx);
            } else {
                crate::amx::store_sums_row(buf.as_mut_ptr() as *mut u8, 256);
                let sums = buf.as_ptr() as *const f32;
                for r in 0..rows {
                    std::ptr::copy_nonoverlapping(sums.add(64 * r), out.add(r * ldx), cols);
                }
            }
            jb += 64;
        }
    }
}

/// One block of a convolution's weight gradient (the fused backward pass of
/// [`crate::conv1d::conv1d_act_maxpool2_backward`]): adds to dw (c_out ×
/// c_in × k) Σ_{q < nq} dz[co, q] · x[ci, q + t], where dz is the `nq`
/// values of `tile`'s rows (`ld` apart) from `ua`, and x the rows of `xp`
/// (`lpad` apart) from `qa`, read as 0 past lpad.
///
/// The product is dwᵀ: A's tile is 16 input channels at one tap, whose
/// row's word pairs (x[ci, q + t], x[ci, q + t + 1]) over q are simply the
/// rounded row from q + t, so every tap is read from one rounded copy of x
/// (a tap apart, 2 bytes); B is dz transposed into tile rows once
/// ([`crate::bf16::pack_transposed`]). The sums run over the whole block
/// in the tiles, two taps by 32 output channels at a time. Columns q past
/// nq (to a multiple of 32) meet zeros in dz but x's values, so a block
/// whose rounded x holds an infinity or a NaN returns false, with nothing
/// added: the caller then runs the general path.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad_block(
    p: &Conv1dParams,
    tile: &[f32],
    ld: usize,
    ua: usize,
    nq: usize,
    xp: &[f32],
    lpad: usize,
    qa: usize,
    dw: &mut [f32],
) -> bool {
    let (c_in, c_out, k) = (p.c_in, p.c_out, p.k);
    let pairs = k.div_ceil(2);
    let nq32 = nq.div_ceil(32) * 32;
    // Every A tile reads 32 values from q + t, q < nq32, t < 2·pairs.
    let xlen = nq32 + 2 * pairs;
    let mut xs = xlen.div_ceil(32) * 32;
    if (2 * xs).is_multiple_of(4096) {
        xs += 32;
    }
    let channels = c_in.div_ceil(16) * 16;
    let cpad = c_out.div_ceil(32) * 32;
    let panel_words = nq32 / 2 * cpad;
    with_halves(channels * xs + LINE_SLACK / 2, |xc| {
        let xc = line_aligned(xc, channels * xs);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path was chosen only where the CPU has AVX512-BF16;
        // xp holds c_in rows of lpad values, xc `channels` rows of xs.
        let finite = unsafe { round_rows(xp, c_in, lpad, qa, channels, xs, xc) };
        #[cfg(not(target_arch = "x86_64"))]
        let finite = false;
        if !finite {
            return false;
        }
        with_words(panel_words + LINE_SLACK / 4, |panel| {
            let panel = line_aligned(panel, panel_words);
            let rows: Vec<usize> = (0..c_out).map(|co| co * ld + ua).collect();
            // SAFETY: as above; each of tile's rows holds nq values from
            // ua, the panel nq32 / 2 rows of cpad words; the tiles are
            // granted.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                crate::bf16::pack_transposed(tile.as_ptr(), &rows, nq, panel, cpad);
                weight_grad_sums(p, xc, xs, panel, cpad, nq32 / 32, dw);
            }
        });
        true
    })
}

/// Rounds x[ci, qa + e] (0 past lpad) into row ci of `xc` for e below xs,
/// and zeros into rows past c_in. False if a rounded value is infinite or
/// NaN.
///
/// # Safety
/// `xp` holds c_in rows of lpad values; `xc` `channels` rows of `xs` (a
/// multiple of 32) values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_rows(
    xp: &[f32],
    c_in: usize,
    lpad: usize,
    qa: usize,
    channels: usize,
    xs: usize,
    xc: &mut [u16],
) -> bool {
    let exp = _mm512_set1_epi16(0x7f80);
    let mut bad: __mmask32 = 0;
    let len = lpad.saturating_sub(qa);
    for c in 0..channels {
        let out = xc.as_mut_ptr().add(c * xs);
        if c >= c_in {
            std::ptr::write_bytes(out, 0, xs);
            continue;
        }
        let row = xp.as_ptr().add(c * lpad + qa.min(lpad));
        let mut e = 0;
        while e < xs {
            let lo = _mm512_maskz_loadu_ps(lane_mask(len.saturating_sub(e)), row.add(e));
            let hi = _mm512_maskz_loadu_ps(lane_mask(len.saturating_sub(e + 16)), row.add(e + 16));
            let h: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            bad |= _mm512_cmpeq_epi16_mask(_mm512_and_si512(h, exp), exp);
            _mm512_storeu_si512(out.add(e) as *mut _, h);
            e += 32;
        }
    }
    bad == 0
}

/// The products of [`weight_grad_block`]: per 16 input channels, per 32
/// output channels, per tap pair, the 2 × 2 tile block (taps 2p and 2p + 1
/// by the two halves of the output channels) summed over the block's
/// `steps` column steps, then added to dw.
///
/// # Safety
/// As [`weight_grad_block`] calls it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn weight_grad_sums(
    p: &Conv1dParams,
    xc: &[u16],
    xs: usize,
    panel: &[u32],
    cpad: usize,
    steps: usize,
    dw: &mut [f32],
) {
    let (c_in, c_out, k) = (p.c_in, p.c_out, p.k);
    let _tiles = crate::amx::Tiles::new();
    let mut buf = [Line([0; 16]); 64];
    for cb in 0..c_in.div_ceil(16) {
        for ct in (0..cpad / 16).step_by(2) {
            for t0 in (0..k).step_by(2) {
                // An odd kernel's last tap goes alone (A's second tile is
                // its first again, and its sums are not read).
                let t1 = if t0 + 1 < k { t0 + 1 } else { t0 };
                crate::amx::zero_sums();
                let a = xc.as_ptr().add(16 * cb * xs);
                let b = panel.as_ptr().add(16 * ct);
                for s in 0..steps {
                    crate::amx::bf16_step(
                        a.add(32 * s + t0) as *const u8,
                        a.add(32 * s + t1) as *const u8,
                        2 * xs,
                        b.add(16 * s * cpad) as *const u8,
                        b.add(16 * s * cpad + 16) as *const u8,
                        4 * cpad,
                    );
                }
                crate::amx::store_sums(buf.as_mut_ptr() as *mut u8, 128);
                let sums = std::slice::from_raw_parts(buf.as_ptr() as *const f32, 1024);
                for (slot, t) in [t0, t1]
                    .into_iter()
                    .enumerate()
                    .take(1 + (t1 != t0) as usize)
                {
                    for r in 0..16.min(c_in - 16 * cb) {
                        let ci = 16 * cb + r;
                        for c in 0..32.min(c_out - 16 * ct) {
                            dw[((16 * ct + c) * c_in + ci) * k + t] +=
                                sums[(16 * slot + r) * 32 + c];
                        }
                    }
                }
            }
        }
    }
}
