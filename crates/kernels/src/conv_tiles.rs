//! A stride-1 convolution's fused forward pass (activation and max pooling
//! of pairs, as [`conv1d_act_maxpool2_forward`](crate::conv1d::conv1d_act_maxpool2_forward))
//! on the AMX-BF16 tiles, reading its input without packing it per tap.
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

#[cfg(target_arch = "x86_64")]
use crate::bf16::lane_mask;
use crate::conv1d::{Conv1dParams, PoolPairs};
use crate::scratch::{line_aligned, with_scratch, with_words, LINE_SLACK};
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

/// The weights as A's tiles, for one call.
pub(crate) struct TileWeights {
    c_in: usize,
    c_out: usize,
    /// Tap pairs, ⌈k/2⌉.
    pairs: usize,
    /// Tiles of 16 output channels, an even number (blocks of 32).
    row_tiles: usize,
    /// Per tile of output channels, per step: 16 rows × 16 words, each row
    /// one cache line.
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
    /// Steps of the sum: ⌈c_in/16⌉ · pairs, input channels outer.
    fn steps(&self) -> usize {
        self.c_in.div_ceil(16) * self.pairs
    }

    /// Rounds and arranges w (c_out × c_in × k).
    pub(crate) fn new(p: &Conv1dParams, w: &[f32]) -> TileWeights {
        let (c_in, c_out, k) = (p.c_in, p.c_out, p.k);
        let pairs = k.div_ceil(2);
        let steps = c_in.div_ceil(16) * pairs;
        let row_tiles = c_out.div_ceil(32) * 2;
        let mut words = vec![Line([0; 16]); row_tiles * steps * 16];
        let half = |o: usize, c: usize, t: usize| -> u32 {
            if o < c_out && c < c_in && t < k {
                crate::bf16::to_bits(w[(o * c_in + c) * k + t]) as u32
            } else {
                0
            }
        };
        for rt in 0..row_tiles {
            for s in 0..steps {
                let (cb, pair) = (s / pairs, s % pairs);
                let tile = &mut words[(rt * steps + s) * 16..][..16];
                for (r, line) in tile.iter_mut().enumerate() {
                    for (col, word) in line.0.iter_mut().enumerate() {
                        let (o, c) = (16 * rt + r, 16 * cb + col);
                        *word = half(o, c, 2 * pair) | half(o, c, 2 * pair + 1) << 16;
                    }
                }
            }
        }
        TileWeights {
            c_in,
            c_out,
            pairs,
            row_tiles,
            words,
        }
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
    let mut stride = (cols32 + 2 * tw.pairs).div_ceil(16) * 16;
    if stride.is_multiple_of(1024) {
        stride += 16;
    }
    let channels = tw.c_in.div_ceil(16) * 16;
    // Sums 2 KiB apart: a tile's rows fall in two of the L1 cache's sets.
    let t_stride = BLOCK;
    with_words(channels * stride + LINE_SLACK / 4, |copy| {
        let copy = line_aligned(copy, channels * stride);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path was chosen only where the CPU has AVX512-BF16;
        // xp holds c_in rows of lpad values, `copy` `channels` rows of
        // `stride` words.
        let finite = unsafe { interleave(xp, tw.c_in, lpad, channels, stride, copy) };
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
                for o in 0..tw.c_out {
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
/// rounded to bf16 (x past lpad, and channels past c_in, read as 0), for i
/// below `stride`. False if a rounded value is infinite or NaN.
///
/// # Safety
/// `xp` holds c_in rows of lpad values; `copy` `channels` ≥ c_in rows of
/// `stride` words (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn interleave(
    xp: &[f32],
    c_in: usize,
    lpad: usize,
    channels: usize,
    stride: usize,
    copy: &mut [u32],
) -> bool {
    let idx = _mm512_loadu_si512(crate::bf16::INTERLEAVE.as_ptr() as *const _);
    let exp = _mm512_set1_epi16(0x7f80);
    let mut bad: __mmask32 = 0;
    for c in 0..channels {
        let out = copy.as_mut_ptr().add(c * stride);
        if c >= c_in {
            std::ptr::write_bytes(out, 0, stride);
            continue;
        }
        let row = xp.as_ptr().add(c * lpad);
        let mut i = 0;
        while i < stride {
            let lo = _mm512_maskz_loadu_ps(lane_mask(lpad.saturating_sub(i)), row.add(i));
            let hi = _mm512_maskz_loadu_ps(lane_mask(lpad.saturating_sub(i + 1)), row.add(i + 1));
            let h: __m512i = core::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo));
            bad |= _mm512_cmpeq_epi16_mask(_mm512_and_si512(h, exp), exp);
            _mm512_storeu_si512(out.add(i) as *mut _, _mm512_permutexvar_epi16(idx, h));
            i += 16;
        }
    }
    bad == 0
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
                let (cb, pair) = (s / tw.pairs, s % tw.pairs);
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
