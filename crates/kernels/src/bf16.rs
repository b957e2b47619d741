//! bf16 matrix products with f32 sums: the [`SimdPath::Avx512Bf16`] and
//! [`SimdPath::AmxBf16`] paths.
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
//!   When B's rows are shifted views of one input (a convolution's, stride
//!   1), B is not packed: neighbouring rows pair up in place, and rows with
//!   no neighbour (the last of an odd number of taps) pair with one another
//!   through a small interleaved copy ([`rows_direct`]).
//! - [`gemm_dots`](crate::gemm::gemm_dots): both operands are rounded once
//!   into bf16 copies of the spans the rows cover; a dot product then pairs
//!   neighbouring elements of both rows, 32 per instruction. Long rows that
//!   do not overlap (a dense layer's) are streamed instead: A is rounded a
//!   chunk at a time, B in registers as it is read, and on threads the sum
//!   is split into a fixed number of parts ([`dots_streamed`]).
//!
//! On the [`SimdPath::AmxBf16`] path (a CPU with the AMX tile unit), a
//! `gemm_rows` call with at least 16 rows and 256 columns of C runs on the
//! tiles (`tdpbf16ps`, module `amx`): the packed panel above is a B tile's
//! layout at a 256-byte stride, A's rounded rows are read as tiles, and C
//! is summed in blocks of 32 × 32. Smaller calls, and dot products that are
//! not streamed, run there as f32 FMAs on operands rounded to bf16 (the
//! same products and sums), since on such CPUs `vdpbf16ps` runs at half
//! the f32 FMAs' rate.
//!
//! [`to_bits`] is the scalar reference for the rounding; the tests compare
//! the kernels with f64 sums of the rounded operands, and with the exact
//! products within a bound derived from the 8-bit mantissa.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use rayon::prelude::*;

use crate::scratch::{line_aligned, with_halves, with_words, LINE_SLACK};
use crate::simd::SendPtr;
#[cfg(doc)]
use crate::simd::SimdPath;

/// Columns of B per packed panel of [`rows`].
const PANEL: usize = 64;
/// The fewest rows of A (C) for which [`rows`] runs on the AMX tiles.
const AMX_MIN_ROWS: usize = 16;
/// The fewest columns of C for which [`rows`] runs on the AMX tiles.
const AMX_MIN_COLS: usize = 256;
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

/// The bf16 paths of [`gemm_rows_bias`](crate::gemm::gemm_rows_bias), after
/// its bounds checks: C[i·ldc + j] (= or +=) bias[i] + Σ_r A[i·lda + r] · B[offs[r] + j];
/// on `path` (the caller checked that the CPU has it): on
/// [`SimdPath::AmxBf16`], on the tiles where the call is large enough and
/// in f32 FMAs on rounded operands where it is not.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rows(
    path: crate::simd::SimdPath,
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
    // The tiles pay where a call has rows and columns enough to fill them:
    // each 64-column panel of B is packed whatever m is, and a tile of A
    // holds 16 rows. On the 2-core Xeon, LeNet-5's convolutions (6 rows;
    // 16 rows of 100 columns per image) ran slower on the tiles than on
    // the direct path (`bench kernels`: lenet_conv1 0.60 against 0.40 ms,
    // lenet_conv2 1.36 against 1.22), the genomic ones (32 rows; 16 rows
    // of the input gradient) faster (g_conv2pool_f 3.6 against 5.4 ms).
    let amx = path == crate::simd::SimdPath::AmxBf16;
    if amx && !takes_tiles(m, n) {
        // Too small for the tiles: f32 FMAs on operands rounded to bf16.
        // The products are the same (a product of two bf16 values is exact
        // in f32) and so is the f32 summation's bound. On CPUs with the
        // tiles `vdpbf16ps` runs at half the f32 FMAs' rate (the 2-core
        // Xeon's peaks: 217–232 against 445–490 GFLOP/s), and LeNet-5
        // trained in 1.59–1.67 s per epoch this way against 2.02–2.06 on
        // `vdpbf16ps`. B is rounded over the span its rows cover (a
        // sample's input, for a convolution).
        let lo = offs.iter().copied().min().unwrap_or(0);
        let hi = offs.iter().map(|&o| o + n).max().unwrap_or(0);
        return crate::scratch::with_scratch(m * k + (hi - lo), |buf| {
            let (ar, br) = buf.split_at_mut(m * k);
            for i in 0..m {
                round_f32(&a[i * lda..i * lda + k], &mut ar[i * k..(i + 1) * k]);
            }
            round_f32(&b[lo..hi], br);
            crate::gemm::gemm_rows_bias(
                crate::simd::SimdPath::Avx512,
                m,
                n,
                k,
                ar,
                k,
                br,
                |r| offs[r] - lo,
                bias,
                c,
                ldc,
                accumulate,
                parallel,
            );
        });
    }
    if !amx {
        if let Some(prep) = Prepared::take(m, k, a, lda, offs) {
            let mut prep = prep;
            rows_direct(&mut prep, n, b, offs, bias, c, ldc, accumulate, parallel);
            prep.give_back();
            return;
        }
    }
    let kp = k.div_ceil(2);
    // On AMX, A's rows are read as tiles of 16 rows × 16 words: rows padded
    // to a multiple of 16, words to a multiple of 16, with zeros.
    let (mp, kpp) = if amx {
        (m.div_ceil(16) * 16, kp.div_ceil(16) * 16)
    } else {
        (m, kp)
    };
    // On a cache line, as the panels below: a tile row is then one line.
    let mut ap_buf = vec![0u32; mp * kpp + LINE_SLACK / 4];
    let ap = line_aligned(&mut ap_buf, mp * kpp);
    // Each row rounded in vectors, then read as pairs: word p is element
    // 2p in its low half and 2p + 1 (0 past the end) in its high half.
    let mut row16 = vec![0u16; 2 * kp];
    for (i, words) in ap.chunks_exact_mut(kpp.max(1)).enumerate().take(m) {
        round_into(&a[i * lda..i * lda + k], &mut row16[..k]);
        for (w, h) in words.iter_mut().zip(row16.chunks_exact(2)) {
            *w = h[0] as u32 | (h[1] as u32) << 16;
        }
    }
    let bias: Vec<f32> = match bias {
        Some(x) => x[..m].to_vec(),
        None => vec![0.0; m],
    };
    // A large C is stored with streaming stores from its first 64-byte
    // line on, as on the f32 paths ([`crate::gemm::gemm_rows`]).
    let stream = crate::gemm::streams_c(m, n, ldc, accumulate);
    let head = if stream {
        crate::gemm::stream_head(c, n)
    } else {
        0
    };
    let cp = SendPtr(c.as_mut_ptr());
    let bp = SendPtr(b.as_ptr() as *mut f32);
    let run = |j0: usize, j1: usize, stream: bool| {
        // Rows kp..kpp stay zero: the tiles read them.
        let mut panel_buf = vec![0u32; kpp.max(1) * PANEL + LINE_SLACK / 4];
        let panel = line_aligned(&mut panel_buf, kpp.max(1) * PANEL);
        let p = Rows {
            m,
            k,
            kp,
            kpp,
            ap,
            b: bp.get(),
            offs,
            bias: &bias,
            c: cp.get(),
            ldc,
            accumulate,
        };
        // SAFETY: the caller checked every row of A, B and C against its
        // slice; [j0, j1) is this call's own columns of C, and streamed
        // ones start on a 64-byte line.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            if amx {
                amx::rows(&p, j0, j1, panel, stream)
            } else if stream {
                rows_avx512::<true>(&p, j0, j1, panel)
            } else {
                rows_avx512::<false>(&p, j0, j1, panel)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (j0, j1, panel, p, stream);
            unreachable!("the bf16 path exists on x86-64 only")
        }
    };
    if head > 0 {
        run(0, head, false);
    }
    let block = 16 * PANEL;
    let threads = rayon::current_num_threads();
    let rest = n - head;
    if parallel && threads > 1 && rest >= 2 * block && (m * n * k) >= crate::PARALLEL_WORK {
        (0..rest.div_ceil(block))
            .into_par_iter()
            .for_each(|p| run(head + p * block, head + ((p + 1) * block).min(rest), stream));
    } else {
        run(head, n, stream);
    }
}

/// The rows of B as `vdpbf16ps` pairs them when most rows lie one element
/// after (or before) the row before, as a convolution's shifted views of
/// its input do (row (c, t) of a kernel of width k starts at c·l + t; the
/// input gradient's rows run backwards). Each entry is (low row, high
/// row): B[offs(high)] follows B[offs(low)], and a row without such a
/// neighbour stands alone (its partner's weight is 0). `None` when
/// fewer than two thirds of the rows pair up: then packing B ([`rows`]'s
/// panels) wastes less. The pairs go to `plan` as (low, high) word pairs
/// (high [`LONE`] for a row alone); the count is returned.
fn adjacent_pairs(offs: &[usize], plan: &mut [u32]) -> Option<usize> {
    let k = offs.len();
    let (mut r, mut np, mut singles) = (0, 0, 0);
    while r < k {
        let (lo, hi) = if r + 1 < k && offs[r + 1] == offs[r] + 1 {
            (r, r + 1)
        } else if r + 1 < k && offs[r] == offs[r + 1] + 1 {
            (r + 1, r)
        } else {
            singles += 1;
            (r, LONE as usize)
        };
        plan[2 * np] = lo as u32;
        plan[2 * np + 1] = hi as u32;
        np += 1;
        r += if hi == LONE as usize { 1 } else { 2 };
    }
    (k >= 2 && 2 * singles <= np && k < LONE as usize).then_some(np)
}

/// A pair's high row when its low row stands alone.
const LONE: u32 = u32::MAX;

/// A's side of [`rows_direct`]: its rows paired as the plan pairs B's rows
/// and rounded to bf16 words, with each pair's place in B. A convolution
/// calls the product once per sample with the same weights, so the last
/// few are kept per thread and reused when A's values, its shape and B's
/// row offsets (relative to the lowest: a convolution's column blocks
/// shift them all) are all the same again, compared in full, so that a
/// weight that changed is never served stale.
struct Prepared {
    m: usize,
    k: usize,
    /// A's m × k values, contiguous, as they were.
    a: Vec<f32>,
    /// B's row offsets less the lowest.
    offs: Vec<usize>,
    /// Pairs of neighbouring rows of B (and rows left alone, at most one).
    np: usize,
    /// Pairs of rows that have no neighbour to pair with: a convolution's
    /// last tap of each channel when the taps are odd in number, paired
    /// across channels ([`cross_words`]).
    nc: usize,
    /// A's words, np + nc per row (m rows): its neighbour pairs, then its
    /// cross pairs. Then per neighbour pair its low row's offset in B less
    /// the lowest offset, [`LONE_BIT`] set for a row alone; then per cross
    /// pair its two rows' offsets in B, less the lowest.
    words: Vec<u32>,
    /// The rounded windows for the last n columns asked for ([`Layout`]).
    layout: Option<Layout>,
}

/// Where [`rows_direct`] rounds B's windows for a product of n columns:
/// per entry of `rel` (a neighbour pair's low row, or one row of a cross
/// pair) its start in the rounded buffer (with [`LONE_BIT`]), and the
/// clusters of overlapping windows as (first offset, end, place in the
/// buffer), offsets relative to B's lowest row offset.
struct Layout {
    n: usize,
    starts: Vec<u32>,
    clusters: Vec<u32>,
    total: usize,
}

impl Layout {
    /// Each entry reads n + 1 values from its row's offset. Windows that
    /// overlap (a channel's taps) form one cluster, rounded once; the gaps
    /// between clusters (the rest of each channel's row, when a convolution
    /// works on a block of columns) are skipped.
    fn new(rel: &[u32], n: usize) -> Layout {
        let np = rel.len();
        let mut order: Vec<u32> = (0..np as u32).collect();
        order.sort_unstable_by_key(|&q| rel[q as usize] & !LONE_BIT);
        let mut starts = vec![0u32; np];
        let mut clusters: Vec<u32> = Vec::new();
        let mut total = 0usize;
        for &q in &order {
            let r = rel[q as usize];
            let start = (r & !LONE_BIT) as usize;
            let end = start + n + 1;
            let nc = clusters.len() / 3;
            if nc > 0 && start <= clusters[3 * nc - 2] as usize {
                let grown = (clusters[3 * nc - 2] as usize).max(end);
                total += grown - clusters[3 * nc - 2] as usize;
                clusters[3 * nc - 2] = grown as u32;
            } else {
                clusters.extend([start as u32, end as u32, total as u32]);
                total += end - start;
            }
            let c = &clusters[clusters.len() - 3..];
            starts[q as usize] = (c[2] + (start as u32 - c[0])) | (r & LONE_BIT);
        }
        Layout {
            n,
            starts,
            clusters,
            total,
        }
    }
}

/// The flag of a pair whose low row stands alone.
const LONE_BIT: u32 = 1 << 31;

/// Prepared A sides kept per thread.
const KEPT: usize = 8;

thread_local! {
    static PREPARED: std::cell::RefCell<Vec<Prepared>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Prepared {
    /// The prepared A for this product: a kept one when it matches, else a
    /// new one; `None` when B's rows do not pair up ([`adjacent_pairs`]).
    /// It is taken out of the thread's list while in use, so that a nested
    /// call on this thread (rayon may run one while this one waits) never
    /// shares it.
    fn take(m: usize, k: usize, a: &[f32], lda: usize, offs: &[usize]) -> Option<Prepared> {
        // Bit for bit: the same bits round to the same pairs.
        let bytes = |x: &[f32]| -> &[u8] {
            // SAFETY: any f32 is 4 initialized bytes.
            unsafe { std::slice::from_raw_parts(x.as_ptr() as *const u8, 4 * x.len()) }
        };
        let lo = offs.iter().copied().min().unwrap_or(0);
        let same = |p: &Prepared| {
            p.m == m
                && p.k == k
                && p.offs.iter().zip(offs).all(|(&r, &o)| r == o - lo)
                && (0..m)
                    .all(|i| bytes(&p.a[i * k..(i + 1) * k]) == bytes(&a[i * lda..i * lda + k]))
        };
        let kept = PREPARED.with(|c| {
            let mut c = c.borrow_mut();
            let at = c.iter().position(same)?;
            Some(c.remove(at))
        });
        if kept.is_some() {
            return kept;
        }
        with_words(2 * k + 1, |plan| {
            let entries = adjacent_pairs(offs, plan)?;
            if offs.iter().max().unwrap_or(&0) - lo >= LONE_BIT as usize {
                return None;
            }
            // The neighbour pairs first; the rows alone then paired with
            // one another, the last left alone if their number is odd.
            let plan = &plan[..2 * entries];
            let mut pairs: Vec<(u32, u32)> = plan
                .chunks_exact(2)
                .filter(|e| e[1] != LONE)
                .map(|e| (e[0], e[1]))
                .collect();
            let alone: Vec<u32> = plan
                .chunks_exact(2)
                .filter(|e| e[1] == LONE)
                .map(|e| e[0])
                .collect();
            let cross: Vec<(u32, u32)> = alone.chunks_exact(2).map(|e| (e[0], e[1])).collect();
            if alone.len() % 2 == 1 {
                pairs.push((alone[alone.len() - 1], LONE));
            }
            let (np, nc) = (pairs.len(), cross.len());
            let per = np + nc;
            let mut words = vec![0u32; m * per + np + 2 * nc];
            let (ap, rel) = words.split_at_mut(m * per);
            with_halves(k, |row16| {
                for i in 0..m {
                    round_into(&a[i * lda..i * lda + k], row16);
                    for (q, &(l, h)) in pairs.iter().chain(&cross).enumerate() {
                        let high = if h == LONE {
                            0
                        } else {
                            row16[h as usize] as u32
                        };
                        ap[i * per + q] = row16[l as usize] as u32 | high << 16;
                    }
                }
            });
            let at = |r: u32| (offs[r as usize] - lo) as u32;
            for (q, &(l, h)) in pairs.iter().enumerate() {
                rel[q] = at(l) | if h == LONE { LONE_BIT } else { 0 };
            }
            for (c, &(x, y)) in cross.iter().enumerate() {
                rel[np + 2 * c] = at(x);
                rel[np + 2 * c + 1] = at(y);
            }
            let mut copy = Vec::with_capacity(m * k);
            for i in 0..m {
                copy.extend_from_slice(&a[i * lda..i * lda + k]);
            }
            Some(Prepared {
                m,
                k,
                a: copy,
                offs: offs.iter().map(|&o| o - lo).collect(),
                np,
                nc,
                words,
                layout: None,
            })
        })
    }

    /// Keeps it for the next call on this thread (the oldest goes first).
    fn give_back(self) {
        PREPARED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= KEPT {
                c.remove(0);
            }
            c.push(self);
        });
    }
}

/// [`rows`] without packing B: B's span is rounded to bf16 once, and the
/// pair of rows (r, r + 1) at column j is then the 32-bit word at bf16
/// index offs(r) + j of it, read straight from there. Rows without a
/// neighbour are paired with one another ([`cross_words`]: a kernel of 5
/// taps then costs 2.5 pairs per channel, not 3 with a lone row's partner
/// half masked off; the genomic CNN's second layer's forward pass took
/// 3.28–3.66 ms against 3.62–4.19 in seven interleaved pairs on a Zen 4),
/// and one left over has its partner half masked off. The products are the
/// same bf16 products with f32 sums; only the pairing of the sum's terms
/// differs.
#[allow(clippy::too_many_arguments)]
fn rows_direct(
    prep: &mut Prepared,
    n: usize,
    b: &[f32],
    offs: &[usize],
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    let (m, np, nc) = (prep.m, prep.np, prep.nc);
    let lo = offs.iter().copied().min().unwrap_or(0);
    let (ap, rel) = prep.words.split_at(m * (np + nc));
    // Only the windows the pairs read are rounded ([`Layout`]); kept with
    // A's pairs, since the calls of a convolution ask for the same n.
    if prep.layout.as_ref().is_none_or(|l| l.n != n) {
        prep.layout = Some(Layout::new(rel, n));
    }
    let layout = prep.layout.as_ref().expect("set above");
    let (starts, clusters, total) = (&layout.starts[..], &layout.clusters[..], layout.total);
    with_halves(total, |xb| {
        for c in clusters.chunks(3) {
            let (from, to, at) = (lo + c[0] as usize, lo + c[1] as usize, c[2] as usize);
            let end = to.min(b.len());
            round_into(&b[from..end], &mut xb[at..at + end - from]);
            xb[at + end - from..at + to - from].fill(0);
        }
        let npad = n.div_ceil(32) * 32;
        with_words(nc * npad, |z| {
            cross_words(xb, &starts[np..], n, npad, z);
            let cp = SendPtr(c.as_mut_ptr());
            let xp = SendPtr(xb.as_ptr() as *mut u16);
            let d = Direct {
                m,
                np,
                nc,
                ap,
                starts: &starts[..np],
                z,
                npad,
                bias,
                ldc,
                accumulate,
            };
            let run = |j0: usize, j1: usize| {
                // SAFETY: the caller checked every row of A, B and C
                // against its slice; xb covers every row's columns plus
                // one, z every cross pair's npad columns; [j0, j1) is this
                // call's own columns of C, and j0 is a multiple of 64.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    direct_avx512(&d, xp.get(), cp.get(), j0, j1)
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (j0, j1, cp, xp, &d);
                    unreachable!("the bf16 path exists on x86-64 only")
                }
            };
            let block = 16 * PANEL;
            let threads = rayon::current_num_threads();
            let work = m * n * (np + nc);
            if parallel && threads > 1 && n >= 2 * block && work >= crate::PARALLEL_WORK {
                (0..n.div_ceil(block))
                    .into_par_iter()
                    .for_each(|p| run(p * block, ((p + 1) * block).min(n)));
            } else {
                run(0, n);
            }
        })
    });
}

/// The words [`direct_tile`] reads for pairs of rows of B that are not
/// neighbours (`rows`: per cross pair, the two rows' starts in the rounded
/// span `xb`): per pair, per group of 32 columns from t, the 16 words of
/// the even columns t, t + 2, … (row x's value in the low half, row y's
/// in the high), then the 16 of the odd columns, as a neighbour pair's two
/// loads give them. Columns past n are 0.
fn cross_words(xb: &[u16], rows: &[u32], n: usize, npad: usize, z: &mut [u32]) {
    for (pair, zp) in rows.chunks_exact(2).zip(z.chunks_exact_mut(npad)) {
        let (x, y) = (&xb[pair[0] as usize..][..n], &xb[pair[1] as usize..][..n]);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the bf16 path is only chosen where `available()`; x and
        // y hold n values, zp npad ≥ n words.
        unsafe {
            cross_avx512(x, y, zp)
        };
        #[cfg(not(target_arch = "x86_64"))]
        for (t, w) in zp.iter_mut().enumerate() {
            let (g, l) = (t / 32 * 32, t % 32);
            let col = g + if l < 16 { 2 * l } else { 2 * (l - 16) + 1 };
            *w = if col < n {
                x[col] as u32 | (y[col] as u32) << 16
            } else {
                0
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn cross_avx512(x: &[u16], y: &[u16], z: &mut [u32]) {
    let n = x.len();
    let low = _mm512_set1_epi32(0xffff);
    let mut t = 0;
    while t < n {
        let mask: __mmask32 = if n - t >= 32 {
            u32::MAX
        } else {
            (1u32 << (n - t)) - 1
        };
        // Word l of each: columns t + 2l (low half) and t + 2l + 1 (high).
        let xv = _mm512_maskz_loadu_epi16(mask, x.as_ptr().add(t) as *const _);
        let yv = _mm512_maskz_loadu_epi16(mask, y.as_ptr().add(t) as *const _);
        let even = _mm512_or_si512(_mm512_and_si512(xv, low), _mm512_slli_epi32::<16>(yv));
        let odd = _mm512_or_si512(_mm512_srli_epi32::<16>(xv), _mm512_andnot_si512(low, yv));
        _mm512_storeu_si512(z.as_mut_ptr().add(t) as *mut _, even);
        _mm512_storeu_si512(z.as_mut_ptr().add(t + 16) as *mut _, odd);
        t += 32;
    }
}

/// `src` rounded to bf16 into `dst` (the same length).
fn round_into(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the bf16 path is only chosen where `available()`; the two
    // slices have the same length.
    unsafe {
        round_avx512(src, dst)
    };
    #[cfg(not(target_arch = "x86_64"))]
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = to_bits(s);
    }
}

/// One product of [`rows_direct`], shared by its column blocks.
struct Direct<'a> {
    m: usize,
    np: usize,
    nc: usize,
    /// A's words, np + nc per row: neighbour pairs, then cross pairs.
    ap: &'a [u32],
    /// Per neighbour pair: the bf16 index in the rounded span of its low
    /// row, with the top bit set when that row stands alone.
    starts: &'a [u32],
    /// The cross pairs' words ([`cross_words`]), npad per pair.
    z: &'a [u32],
    npad: usize,
    bias: Option<&'a [f32]>,
    ldc: usize,
    accumulate: bool,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn direct_avx512(d: &Direct, xb: *const u16, c: *mut f32, j0: usize, j1: usize) {
    let mut j = j0;
    while j < j1 {
        let w = (j1 - j).min(PANEL);
        let two = w > 32;
        let mut i = 0;
        while i < d.m {
            let r = (d.m - i).min(6);
            match (r, two) {
                (6, true) => direct_tile::<6, 2>(d, xb, c, i, j, w),
                (6, false) => direct_tile::<6, 1>(d, xb, c, i, j, w),
                (5, true) => direct_tile::<5, 2>(d, xb, c, i, j, w),
                (5, false) => direct_tile::<5, 1>(d, xb, c, i, j, w),
                (4, true) => direct_tile::<4, 2>(d, xb, c, i, j, w),
                (4, false) => direct_tile::<4, 1>(d, xb, c, i, j, w),
                (3, true) => direct_tile::<3, 2>(d, xb, c, i, j, w),
                (3, false) => direct_tile::<3, 1>(d, xb, c, i, j, w),
                (2, true) => direct_tile::<2, 2>(d, xb, c, i, j, w),
                (2, false) => direct_tile::<2, 1>(d, xb, c, i, j, w),
                (_, true) => direct_tile::<1, 2>(d, xb, c, i, j, w),
                (_, false) => direct_tile::<1, 1>(d, xb, c, i, j, w),
            }
            i += r;
        }
        j += w;
    }
}

/// Output column t of a group of 32 from its even- and odd-column sums:
/// `EVEN_ODD[0]` gives columns 0–15, `EVEN_ODD[1]` columns 16–31 (index
/// < 16: the even sums' lane, else the odd sums' lane − 16).
#[cfg(target_arch = "x86_64")]
const EVEN_ODD: [[i32; 16]; 2] = {
    let mut t = [[0i32; 16]; 2];
    let mut h = 0;
    while h < 2 {
        let mut l = 0;
        while l < 16 {
            let col = 16 * h + l;
            t[h][l] = if col % 2 == 0 {
                (col / 2) as i32
            } else {
                16 + (col / 2) as i32
            };
            l += 1;
        }
        h += 1;
    }
    t
};

/// Rows [i, i + R) of C, columns [j, j + w) (w ≤ 32·G), reading B's pairs
/// straight from the rounded span. A 32-bit load at an even bf16 offset
/// holds the pairs of the even columns of a group of 32, one at the next
/// (odd) offset those of the odd columns: each group keeps an even and an
/// odd sum, interleaved into columns once, at the end.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn direct_tile<const R: usize, const G: usize>(
    d: &Direct,
    xb: *const u16,
    c: *mut f32,
    i: usize,
    j: usize,
    w: usize,
) {
    let mut even = [[_mm512_setzero_ps(); G]; R];
    let mut odd = [[_mm512_setzero_ps(); G]; R];
    if let Some(bias) = d.bias {
        for r in 0..R {
            even[r] = [_mm512_set1_ps(bias[i + r]); G];
            odd[r] = even[r];
        }
    }
    // Columns of each group, and the lanes its even and odd loads fill.
    let wg: [usize; G] = core::array::from_fn(|g| (w - 32 * g).min(32));
    let em: [__mmask16; G] = core::array::from_fn(|g| lane_mask(wg[g].div_ceil(2)));
    let om: [__mmask16; G] = core::array::from_fn(|g| lane_mask(wg[g] / 2));
    let low = _mm512_set1_epi32(0xffff);
    let per = d.np + d.nc;
    let a = d.ap.as_ptr().add(i * per);
    for q in 0..per {
        let (be, bo): ([__m512i; G], [__m512i; G]) = if q < d.np {
            let start = d.starts[q];
            let src = xb.add((start & !(1 << 31)) as usize + j);
            let mut be = core::array::from_fn(|g| {
                _mm512_maskz_loadu_epi32(em[g], src.add(32 * g) as *const i32)
            });
            let mut bo = core::array::from_fn(|g| {
                _mm512_maskz_loadu_epi32(om[g], src.add(32 * g + 1) as *const i32)
            });
            if start >> 31 != 0 {
                for g in 0..G {
                    be[g] = _mm512_and_si512(be[g], low);
                    bo[g] = _mm512_and_si512(bo[g], low);
                }
            }
            (be, bo)
        } else {
            // A cross pair: its words are laid out as the loads above
            // give a neighbour pair's (j is a multiple of 32).
            let src = d.z.as_ptr().add((q - d.np) * d.npad + j);
            (
                core::array::from_fn(|g| {
                    _mm512_maskz_loadu_epi32(em[g], src.add(32 * g) as *const i32)
                }),
                core::array::from_fn(|g| {
                    _mm512_maskz_loadu_epi32(om[g], src.add(32 * g + 16) as *const i32)
                }),
            )
        };
        for r in 0..R {
            let av: __m512bh = core::mem::transmute(_mm512_set1_epi32(*a.add(r * per + q) as i32));
            for g in 0..G {
                even[r][g] = _mm512_dpbf16_ps(
                    even[r][g],
                    av,
                    core::mem::transmute::<__m512i, __m512bh>(be[g]),
                );
                odd[r][g] = _mm512_dpbf16_ps(
                    odd[r][g],
                    av,
                    core::mem::transmute::<__m512i, __m512bh>(bo[g]),
                );
            }
        }
    }
    let idx = [
        _mm512_loadu_si512(EVEN_ODD[0].as_ptr() as *const _),
        _mm512_loadu_si512(EVEN_ODD[1].as_ptr() as *const _),
    ];
    for r in 0..R {
        let cr = c.add((i + r) * d.ldc + j);
        for g in 0..G {
            for (h, &ix) in idx.iter().enumerate() {
                let cols = wg[g].saturating_sub(16 * h);
                if cols == 0 {
                    continue;
                }
                let mask = lane_mask(cols);
                let x = _mm512_permutex2var_ps(even[r][g], ix, odd[r][g]);
                let at = cr.add(32 * g + 16 * h);
                let out = if d.accumulate {
                    _mm512_add_ps(_mm512_maskz_loadu_ps(mask, at), x)
                } else {
                    x
                };
                _mm512_mask_storeu_ps(at, mask, out);
            }
        }
    }
}

/// One product of [`rows`], shared by its column blocks.
struct Rows<'a> {
    m: usize,
    k: usize,
    /// Words (pairs) per row of A that hold values: ⌈k/2⌉.
    kp: usize,
    /// Words per row of `ap` (kp, or on AMX kp rounded up to 16).
    kpp: usize,
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
pub(crate) const INTERLEAVE: [i16; 32] = {
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
unsafe fn rows_avx512<const STREAM: bool>(p: &Rows, j0: usize, j1: usize, panel: &mut [u32]) {
    let mut j = j0;
    while j < j1 {
        let w = (j1 - j).min(PANEL);
        let nv = w.div_ceil(16);
        pack_panel(p, j, w, panel);
        let mut i = 0;
        while i < p.m {
            let r = (p.m - i).min(6);
            match r {
                6 => rows_tile_v::<6, STREAM>(p, panel, i, j, w, nv),
                5 => rows_tile_v::<5, STREAM>(p, panel, i, j, w, nv),
                4 => rows_tile_v::<4, STREAM>(p, panel, i, j, w, nv),
                3 => rows_tile_v::<3, STREAM>(p, panel, i, j, w, nv),
                2 => rows_tile_v::<2, STREAM>(p, panel, i, j, w, nv),
                _ => rows_tile_v::<1, STREAM>(p, panel, i, j, w, nv),
            }
            i += r;
        }
        j += w;
    }
    if STREAM {
        // Streaming stores are weakly ordered: done before this thread
        // reports the work finished.
        _mm_sfence();
    }
}

/// Packs columns [j, j + w) (w ≤ [`PANEL`]) of every pair of rows of B
/// into `panel`: word q·PANEL + c holds row 2q's column j + c in its low
/// half and row 2q + 1's in its high half, both rounded to bf16; words
/// past w are zeros.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_panel(p: &Rows, j: usize, w: usize, panel: &mut [u32]) {
    let idx = _mm512_loadu_si512(INTERLEAVE.as_ptr() as *const _);
    for q in 0..p.kp {
        let r0 = p.b.add(p.offs[2 * q] + j);
        let r1 = (2 * q + 1 < p.k).then(|| p.b.add(p.offs[2 * q + 1] + j));
        for v in 0..w.div_ceil(16) {
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
}

/// The mask of the first `cols` (at most 16) f32 lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn lane_mask(cols: usize) -> __mmask16 {
    if cols >= 16 {
        0xffff
    } else {
        (1u16 << cols) - 1
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_tile_v<const R: usize, const STREAM: bool>(
    p: &Rows,
    panel: &[u32],
    i: usize,
    j: usize,
    w: usize,
    nv: usize,
) {
    match nv {
        4 => rows_tile::<R, 4, STREAM>(p, panel, i, j, w),
        3 => rows_tile::<R, 3, STREAM>(p, panel, i, j, w),
        2 => rows_tile::<R, 2, STREAM>(p, panel, i, j, w),
        _ => rows_tile::<R, 1, STREAM>(p, panel, i, j, w),
    }
}

/// Rows [i, i + R) of C, columns [j, j + w) (w ≤ 16·V, the last vector
/// masked), from the packed panel; with STREAM, full vectors are stored
/// with streaming stores (C's columns then start on a 64-byte line).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn rows_tile<const R: usize, const V: usize, const STREAM: bool>(
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
    let a = p.ap.as_ptr().add(i * p.kpp);
    let pp = panel.as_ptr();
    for q in 0..p.kp {
        let bv: [__m512bh; V] = core::array::from_fn(|v| {
            core::mem::transmute(_mm512_loadu_si512(pp.add(q * PANEL + 16 * v) as *const _))
        });
        for (r, accr) in acc.iter_mut().enumerate() {
            let av: __m512bh =
                core::mem::transmute(_mm512_set1_epi32(*a.add(r * p.kpp + q) as i32));
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
            if STREAM && mask == 0xffff {
                crate::simd::stream_store_avx512(cr.add(16 * v), out);
            } else {
                _mm512_mask_storeu_ps(cr.add(16 * v), mask, out);
            }
        }
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

/// Whether [`rows`] runs an m × n product on the AMX tiles (on
/// [`SimdPath::AmxBf16`](crate::simd::SimdPath::AmxBf16)); a smaller one
/// runs as f32 FMAs on operands rounded to bf16.
pub(crate) fn takes_tiles(m: usize, n: usize) -> bool {
    m >= AMX_MIN_ROWS && n >= AMX_MIN_COLS
}

/// `x` rounded to bf16 values in place ([`round_f32`]).
pub(crate) fn round_in_place(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the bf16 path's features are available (checked); each
        // vector is read before it is written.
        unsafe { round_f32_avx512(x.as_ptr(), x.as_mut_ptr(), x.len()) };
        return;
    }
    for v in x.iter_mut() {
        *v = round(*v);
    }
}

/// `src` rounded to bf16 values (nearest, ties to even, as [`to_bits`]),
/// in f32.
pub(crate) fn round_f32(src: &[f32], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: the bf16 path's features are available (checked); n
        // values of each slice.
        unsafe { round_f32_avx512(src.as_ptr(), dst.as_mut_ptr(), src.len().min(dst.len())) };
        return;
    }
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = round(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn round_f32_avx512(src: *const f32, dst: *mut f32, n: usize) {
    let mut l = 0;
    while l + 16 <= n {
        let v = _mm512_loadu_ps(src.add(l));
        let h: __m256i = core::mem::transmute(_mm512_cvtneps_pbh(v));
        let x = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_storeu_si512(dst.add(l) as *mut _, x);
        l += 16;
    }
    if l < n {
        // The tail in one masked vector.
        let mask = lane_mask(n - l);
        let v = _mm512_maskz_loadu_ps(mask, src.add(l));
        let h: __m256i = core::mem::transmute(_mm512_cvtneps_pbh(v));
        let x = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_mask_storeu_epi32(dst.add(l) as *mut _, mask, x);
    }
}

/// The bf16 paths of [`gemm_dots`](crate::gemm::gemm_dots) and
/// [`gemm_dots_segments`](crate::gemm::gemm_dots_segments), after their
/// bounds checks and after C was zeroed where it is not accumulated into:
/// C[i·ldc + j] += Σ_s Σ_l A[aoff(i) + s·a_stride + l] · B[boff(j) + s·b_stride + l].
#[allow(clippy::too_many_arguments)]
pub(crate) fn dots<FA, FB>(
    path: crate::simd::SimdPath,
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
    // Rows that do not overlap (a dense layer's) are rounded a chunk at a
    // time into buffers that stay in cache, rather than whole: the whole
    // would be written out and read back, twice the traffic of the f32
    // operands themselves.
    let disjoint = |count: usize, off: &dyn Fn(usize) -> usize| {
        let mut starts: Vec<usize> = (0..count).map(off).collect();
        starts.sort_unstable();
        starts.windows(2).all(|w| w[1] >= w[0] + len)
    };
    if segs.count == 1 && streams_dense(len) && disjoint(m, &aoff) && disjoint(n, &boff) {
        return dots_streamed(path, m, n, len, a, aoff, b, boff, None, c, ldc, parallel);
    }
    let (alo, ahi) = span(m, &aoff, segs.a_stride);
    let (blo, bhi) = span(n, &boff, segs.b_stride);
    let ao: Vec<usize> = (0..m).map(|i| aoff(i) - alo).collect();
    let bo: Vec<usize> = (0..n).map(|j| boff(j) - blo).collect();
    let cp = SendPtr(c.as_mut_ptr());
    let parallel = parallel && m * n * len * segs.count >= crate::PARALLEL_WORK;
    if path == crate::simd::SimdPath::AmxBf16 {
        // On a CPU with the AMX tiles, f32 FMAs on the rounded spans, as
        // [`rows`] runs its small calls there.
        crate::scratch::with_scratch((ahi - alo) + (bhi - blo), |buf| {
            let (ar, br) = buf.split_at_mut(ahi - alo);
            round_f32(&a[alo..ahi], ar);
            round_f32(&b[blo..bhi], br);
            let (ar, br) = (&*ar, &*br);
            split_columns(n, parallel, |j0, j1| {
                // SAFETY: the caller checked every segment of every row
                // against its slice (so against the rounded spans), and C's
                // rows; [j0, j1) is this call's own columns of C.
                unsafe {
                    crate::gemm::dots_columns(
                        crate::simd::SimdPath::Avx512,
                        m,
                        (j0, j1),
                        len,
                        segs,
                        (ar, |i| ao[i]),
                        (br, |j| bo[j]),
                        cp,
                        ldc,
                    )
                }
            });
        });
        return;
    }
    // Each operand's span rounded once: rows may overlap (a convolution's
    // do), and every row is read by many tiles.
    with_halves(ahi - alo, |ar| {
        with_halves(bhi - blo, |br| {
            round_into(&a[alo..ahi], ar);
            round_into(&b[blo..bhi], br);
            let (ar, br) = (SendPtr(ar.as_mut_ptr()), SendPtr(br.as_mut_ptr()));
            let run = |j0: usize, j1: usize| {
                let d = Dots {
                    m,
                    j0,
                    j1,
                    len,
                    segs,
                    a: ar.get(),
                    ao: &ao,
                    b: br.get(),
                    bo: &bo,
                    c: cp.get(),
                    ldc,
                };
                // SAFETY: the caller checked every segment of every row
                // against its slice (so against the rounded spans), and C's
                // rows; [j0, j1) is this call's own columns of C.
                unsafe { run_dots(&d) }
            };
            split_columns(n, parallel, run);
        })
    });
}

/// [`dots`] over rows that do not overlap (a dense layer's). Per chunk of
/// [`DOT_CHUNK`] along the sum, a block of A's rows is rounded into a
/// buffer that stays in cache, and B's rows are read as f32 and rounded in
/// registers ([`streamed_tile`]). Rounding B's chunk into a buffer
/// first made a pass over memory that the products then could not overlap:
/// `perf` put 40% of the genomic dense layer's forward pass (79,904 → 64,
/// batch 32, 5.1 M weights) in that rounding.
///
/// The sum is split into [`SUM_PARTS`] runs of chunks, each into its own
/// copy of C, added to C in order, and on threads the parts run side by
/// side: every weight and input is then read once, where splitting C's
/// columns made every thread read all of A, and splitting A's rows all of
/// B. The parts follow neither the thread count nor the rows, so the
/// numbers are the same on any number of threads, and each row's the same
/// alone as in any batch (a prediction does not depend on its batch).
///
/// On [`SimdPath::AmxBf16`] the chunks run on the tiles ([`streamed_tiles`]).
#[allow(clippy::too_many_arguments)]
fn dots_streamed<FA, FB>(
    path: crate::simd::SimdPath,
    m: usize,
    n: usize,
    len: usize,
    a: &[f32],
    aoff: FA,
    b: &[f32],
    boff: FB,
    packed: Option<&PackedPanels>,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) where
    FA: Fn(usize) -> usize + Copy + Sync,
    FB: Fn(usize) -> usize + Copy + Sync,
{
    let chunks = len.div_ceil(DOT_CHUNK);
    // Chunks [k0, k1) of every row, added to C' (m × n, ldc' apart) at cp.
    let run = |k0: usize, k1: usize, cp: SendPtr<f32>, ldc: usize| {
        if path == crate::simd::SimdPath::AmxBf16 {
            return streamed_tiles(m, n, len, (a, aoff), (b, boff), packed, (k0, k1), cp, ldc);
        }
        with_halves(STREAM_ROWS.min(m) * DOT_CHUNK, |ab| {
            let mut bo = vec![0usize; n];
            for kc in k0..k1 {
                let l0 = kc * DOT_CHUNK;
                let cl = (len - l0).min(DOT_CHUNK);
                bo.iter_mut()
                    .enumerate()
                    .for_each(|(j, o)| *o = boff(j) + l0);
                for i0 in (0..m).step_by(STREAM_ROWS) {
                    let mb = (m - i0).min(STREAM_ROWS);
                    for i in 0..mb {
                        let o = aoff(i0 + i) + l0;
                        round_into(&a[o..o + cl], &mut ab[i * DOT_CHUNK..][..cl]);
                    }
                    let t = Streamed {
                        m: mb,
                        n,
                        len: cl,
                        a: ab.as_ptr(),
                        b: b.as_ptr(),
                        bo: &bo,
                        // SAFETY: row i0 of C' is inside it.
                        c: unsafe { cp.get().add(i0 * ldc) },
                        ldc,
                    };
                    // SAFETY: the caller checked every row of A and B
                    // against its slice, and C's rows; the buffer holds cl
                    // values for each of the block's rows; C' is this
                    // call's own.
                    unsafe { run_streamed(&t) }
                }
            }
        })
    };
    let per = chunks.div_ceil(SUM_PARTS);
    let part = |p: usize| {
        let mut part = vec![0f32; m * n];
        run(
            p * per,
            ((p + 1) * per).min(chunks),
            SendPtr(part.as_mut_ptr()),
            n,
        );
        part
    };
    let count = chunks.div_ceil(per);
    let parts: Vec<Vec<f32>> = if parallel && m * n * len >= crate::PARALLEL_WORK {
        (0..count).into_par_iter().map(part).collect()
    } else {
        (0..count).map(part).collect()
    };
    for part in &parts {
        for (crow, prow) in c.chunks_mut(ldc).zip(part.chunks(n)) {
            crow[..n].iter_mut().zip(prow).for_each(|(c, p)| *c += p);
        }
    }
}

/// [`dots_streamed`]'s chunks [k0, k1) on the AMX tiles, added to C' (m ×
/// n at `cp`, rows `ldc` apart). Per chunk, B's rows are rounded and packed
/// once into panels of tile rows ([`pack_transposed`]: word q·[`PANEL`] + c
/// holds column c's elements 2q and 2q + 1); then per block of up to
/// [`STREAM_ROWS`] of A's rows, each row is rounded into a buffer whose rows
/// are whole tile rows ([`TILE_STRIDE`] apart, zeros past the chunk's end),
/// and C's 32 × 32 blocks add their products in the tiles. Every term of
/// C[i, j]'s chunk is a product of the same two bf16 values as on
/// `vdpbf16ps`, summed in f32 in the tile unit's order.
///
/// Rows of the buffer past a block's last row, and columns of a panel past
/// B's last row, hold whatever the buffers held before: they meet only the
/// sums of C's rows and columns that are not stored.
#[allow(clippy::too_many_arguments)]
fn streamed_tiles<FA, FB>(
    m: usize,
    n: usize,
    len: usize,
    (a, aoff): (&[f32], FA),
    (b, boff): (&[f32], FB),
    packed: Option<&PackedPanels>,
    (k0, k1): (usize, usize),
    cp: SendPtr<f32>,
    ldc: usize,
) where
    FA: Fn(usize) -> usize,
    FB: Fn(usize) -> usize,
{
    let rows = STREAM_ROWS.min(m).div_ceil(32) * 32;
    // Both buffers start on a cache line, so that each tile row (64 bytes;
    // rows 4,160 and 256 bytes apart) is one line.
    with_halves(rows * TILE_STRIDE + LINE_SLACK / 2, |ab| {
        let ab = line_aligned(ab, rows * TILE_STRIDE);
        let panels = PackedPanels::chunk_words(n);
        // With B packed already, no buffer of its own.
        let own = if packed.is_some() {
            0
        } else {
            panels + LINE_SLACK / 4
        };
        with_words(own, |buf| {
            let mut bo = vec![0usize; n];
            for kc in k0..k1 {
                let l0 = kc * DOT_CHUNK;
                let cl = (len - l0).min(DOT_CHUNK);
                let steps = cl.div_ceil(32);
                let bp: &[u32] = match packed {
                    Some(pk) => pk.chunk(kc),
                    None => {
                        let bp = line_aligned(buf, panels);
                        bo.iter_mut()
                            .enumerate()
                            .for_each(|(j, o)| *o = boff(j) + l0);
                        // SAFETY: the caller checked that each of B's rows holds
                        // `len` values from boff(j), so cl from boff(j) + l0.
                        unsafe { pack_chunk(b, &bo, cl, bp) };
                        bp
                    }
                };
                for i0 in (0..m).step_by(STREAM_ROWS) {
                    let mb = (m - i0).min(STREAM_ROWS);
                    for i in 0..mb {
                        let o = aoff(i0 + i) + l0;
                        let row = &mut ab[i * TILE_STRIDE..][..32 * steps];
                        round_into(&a[o..o + cl], &mut row[..cl]);
                        row[cl..].fill(0);
                    }
                    // SAFETY: the tiles are granted (the path was chosen
                    // only then); `ab` holds whole 32-row blocks of
                    // TILE_STRIDE halves, `bp` whole panels of DOT_CHUNK / 2
                    // rows; rows i0.. of C' are this call's own.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        amx::streamed(ab, mb, steps, bp, n, cp.get().add(i0 * ldc), ldc)
                    };
                }
            }
        })
    });
}

/// Packs `cl` values (one chunk) of the rows of B that start at `offs`
/// into the consecutive panels of `dst` ([`pack_transposed`], [`PANEL`]
/// rows per panel of [`DOT_CHUNK`] / 2 tile rows).
///
/// # Safety
/// AVX512-BF16 is available; each row holds `cl` values from its offset;
/// `dst` holds ⌈offs.len() / PANEL⌉ panels.
unsafe fn pack_chunk(b: &[f32], offs: &[usize], cl: usize, dst: &mut [u32]) {
    for (cols, panel) in offs
        .chunks(PANEL)
        .zip(dst.chunks_exact_mut(DOT_CHUNK / 2 * PANEL))
    {
        #[cfg(target_arch = "x86_64")]
        pack_transposed(b.as_ptr(), cols, cl, panel, PANEL);
    }
}

/// Whether a dense layer's forward product with `n_in` inputs runs
/// [`dots_streamed`] (its rows never overlap): a sum longer than a chunk.
pub(crate) fn streams_dense(n_in: usize) -> bool {
    n_in > DOT_CHUNK
}

/// A long product's B operand (a dense layer's weights: `n` rows of `len`
/// values, one after the other) rounded and packed once, chunk by chunk,
/// into the panels that [`streamed_tiles`] otherwise packs on every call
/// ([`pack_transposed`]), for many products with the same B: an inference
/// over many batches. The products are the same, bit for bit.
pub(crate) struct PackedPanels {
    n: usize,
    len: usize,
    words: Vec<u32>,
    /// Where the first chunk's panels start: a 64-byte line.
    start: usize,
}

impl PackedPanels {
    /// Words per chunk: n's panels of [`DOT_CHUNK`] / 2 rows.
    fn chunk_words(n: usize) -> usize {
        n.div_ceil(PANEL) * (DOT_CHUNK / 2 * PANEL)
    }

    /// Packs `b` (n × len). Needs AVX512-BF16 (the caller's path).
    ///
    /// # Panics
    /// If `b` is shorter than n · len, or the CPU lacks AVX512-BF16.
    pub(crate) fn new(b: &[f32], n: usize, len: usize) -> Self {
        assert!(b.len() >= n * len, "PackedPanels: B too short");
        assert!(available(), "PackedPanels: no AVX512-BF16");
        let per = Self::chunk_words(n);
        let chunks = len.div_ceil(DOT_CHUNK);
        let mut words = vec![0u32; chunks * per + 16];
        let start = words.as_ptr().align_offset(64).min(16);
        let offs: Vec<usize> = (0..n).map(|j| j * len).collect();
        for kc in 0..chunks {
            let l0 = kc * DOT_CHUNK;
            let cl = (len - l0).min(DOT_CHUNK);
            let at: Vec<usize> = offs.iter().map(|o| o + l0).collect();
            let chunk = &mut words[start + kc * per..start + (kc + 1) * per];
            // SAFETY: AVX512-BF16 is available (asserted); each row holds
            // len values from its offset, so cl from offset + l0.
            unsafe { pack_chunk(b, &at, cl, chunk) };
        }
        PackedPanels {
            n,
            len,
            words,
            start,
        }
    }

    /// Chunk kc's panels.
    fn chunk(&self, kc: usize) -> &[u32] {
        let per = Self::chunk_words(self.n);
        &self.words[self.start + kc * per..self.start + (kc + 1) * per]
    }
}

/// C (m × n, rows `ldc` apart) = the dot products of A's rows (`len`
/// values from aoff(i), not overlapping) with the rows of a packed B, on
/// the AMX tiles: [`dots`]'s streamed path without packing B. The same
/// sums, bit for bit, as [`dots`] on `SimdPath::AmxBf16` with B unpacked.
///
/// # Panics
/// If the tiles are not available, the packed B is not n × len, len is not
/// longer than [`DOT_CHUNK`], or a row of A or C falls outside its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dots_packed(
    m: usize,
    n: usize,
    len: usize,
    a: &[f32],
    aoff: impl Fn(usize) -> usize + Copy + Sync,
    b: &PackedPanels,
    c: &mut [f32],
    ldc: usize,
    parallel: bool,
) {
    let path = crate::simd::SimdPath::AmxBf16;
    assert!(path.is_available(), "dots_packed: no AMX tiles");
    assert!(b.n == n && b.len == len, "dots_packed: B is not n × len");
    assert!(len > DOT_CHUNK, "dots_packed: a sum of one chunk");
    assert!(
        m == 0 || (m - 1) * ldc + n <= c.len(),
        "dots_packed: C too short"
    );
    for i in 0..m {
        assert!(
            aoff(i) + len <= a.len(),
            "dots_packed: row {i} of A out of bounds"
        );
    }
    for i in 0..m {
        c[i * ldc..i * ldc + n].fill(0.0);
    }
    // B's rows are never read: the packed panels stand for them.
    dots_streamed(
        path,
        m,
        n,
        len,
        a,
        aoff,
        &[],
        |_| 0,
        Some(b),
        c,
        ldc,
        parallel,
    );
}

/// The stride, in bf16 values, of [`streamed_tiles`]' rounded rows of A: a
/// chunk and one tile row more, so that a tile's 16 rows do not all fall
/// in the same sets of the L1 cache (4 KiB apart, they would).
const TILE_STRIDE: usize = DOT_CHUNK + 32;

/// Packs `cl` elements of the rows of B that start at `rows` (at most
/// `width`, a multiple of 16) into `panel`, as the B operand of
/// `tdpbf16ps` reads them: word q·width + c holds row c's element 2q in its
/// low half and 2q + 1 in its high half, rounded to bf16, zeros past `cl`
/// (to a multiple of 32) and past the last row (to a multiple of 16). Per
/// 32 elements, 16 rows are rounded into 16 vectors of words and
/// transposed ([`transpose16`]).
///
/// # Safety
/// Each row must hold `cl` values from its offset in `b`; `panel` must hold
/// ⌈cl/32⌉·16 rows of `width` words.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn pack_transposed(
    b: *const f32,
    rows: &[usize],
    cl: usize,
    panel: &mut [u32],
    width: usize,
) {
    debug_assert!(rows.len() <= width && width.is_multiple_of(16));
    for (g, group) in rows.chunks(16).enumerate() {
        let mut l = 0;
        while l < cl {
            let left = cl - l;
            let (ml, mh) = (lane_mask(left), lane_mask(left.saturating_sub(16)));
            let mut v = [_mm512_setzero_si512(); 16];
            for (x, &o) in v.iter_mut().zip(group) {
                let lo = _mm512_maskz_loadu_ps(ml, b.add(o + l));
                let hi = _mm512_maskz_loadu_ps(mh, b.add(o + l + 16));
                *x = core::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
            }
            transpose16(&mut v);
            let q0 = l / 2;
            for (q, x) in v.iter().enumerate() {
                _mm512_storeu_si512(
                    panel.as_mut_ptr().add((q0 + q) * width + 16 * g) as *mut _,
                    *x,
                );
            }
            l += 32;
        }
    }
}

/// Transposes 16 × 16 words: afterwards vector i holds what was lane i of
/// each vector, in order.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn transpose16(r: &mut [__m512i; 16]) {
    let mut t = [_mm512_setzero_si512(); 16];
    // Pairs of words, then pairs of pairs, within each 128-bit lane.
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for i in 0..4 {
        let (a, b, c, d) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        r[4 * i] = _mm512_unpacklo_epi64(a, c);
        r[4 * i + 1] = _mm512_unpackhi_epi64(a, c);
        r[4 * i + 2] = _mm512_unpacklo_epi64(b, d);
        r[4 * i + 3] = _mm512_unpackhi_epi64(b, d);
    }
    // Then the 128-bit lanes: even and odd ones of vectors 4 apart, then
    // of vectors 8 apart.
    for h in 0..2 {
        for i in 0..4 {
            let (a, b) = (r[8 * h + i], r[8 * h + i + 4]);
            t[8 * h + i] = _mm512_shuffle_i32x4::<0x88>(a, b);
            t[8 * h + i + 4] = _mm512_shuffle_i32x4::<0xdd>(a, b);
        }
    }
    for i in 0..8 {
        r[i] = _mm512_shuffle_i32x4::<0x88>(t[i], t[i + 8]);
        r[i + 8] = _mm512_shuffle_i32x4::<0xdd>(t[i], t[i + 8]);
    }
}

/// The parts [`dots_streamed`] splits a long sum into on threads (8 keep 8
/// threads busy; 40 chunks of the genomic dense layer make 5 per part).
const SUM_PARTS: usize = 8;

/// Rows of A per block of [`dots_streamed`]: their rounded chunk (up to 512
/// KiB) and a quad of B's rows (32 KiB of f32) stay in L2 while the block
/// runs, and B's chunk is read from memory once per block: once per batch
/// of up to 128 rows. At 32, inference at batch 256 read the genomic dense
/// layer's 20 MB of weights 8 times per batch; at 128, the peer genomic
/// CNN predicted at 4,870–5,310 samples/s against 4,410–5,100 in seven
/// interleaved pairs on a Zen 4 (medians 5,130 and 4,870), though a later
/// set of six rotations found the two within noise (4,570–5,390 against
/// 4,690–5,150): a small gain at most, on a machine whose timings drift by
/// more than that. Training's batches of 32 run as before, and no sum
/// changes (each row's terms are added in the same order in any block).
const STREAM_ROWS: usize = 128;

/// Runs the dot-product tiles of `d` on the bf16 path.
///
/// # Safety
/// Every row of `d` must lie inside its buffer for `d.len` values per
/// segment, and columns [j0, j1) of C must be this call's own.
unsafe fn run_dots(d: &Dots) {
    #[cfg(target_arch = "x86_64")]
    dots_avx512(d);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = d;
        unreachable!("the bf16 path exists on x86-64 only")
    }
}

/// Runs `run(j0, j1)` over C's n columns: split among the threads, in
/// blocks of a multiple of 4, when `parallel` and there are several.
fn split_columns(n: usize, parallel: bool, run: impl Fn(usize, usize) + Sync) {
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && n >= 8 {
        let per = n.div_ceil(threads).div_ceil(4) * 4;
        (0..n.div_ceil(per))
            .into_par_iter()
            .for_each(|p| run(p * per, ((p + 1) * per).min(n)));
    } else {
        run(0, n);
    }
}

struct Dots<'a> {
    m: usize,
    j0: usize,
    j1: usize,
    len: usize,
    segs: crate::gemm::Segments,
    /// The rounded spans, and each row's start in them (the closures'
    /// offsets, computed once per call rather than per tile and segment).
    a: *const u16,
    ao: &'a [usize],
    b: *const u16,
    bo: &'a [usize],
    c: *mut f32,
    ldc: usize,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_avx512(d: &Dots) {
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
                    (6, 4) => dots_tile::<6, 4>(d, i, j, l0, l1),
                    (6, _) => dots_tile_dyn::<6>(d, i, j, q, l0, l1),
                    (5, 4) => dots_tile::<5, 4>(d, i, j, l0, l1),
                    (5, _) => dots_tile_dyn::<5>(d, i, j, q, l0, l1),
                    (4, 4) => dots_tile::<4, 4>(d, i, j, l0, l1),
                    (4, _) => dots_tile_dyn::<4>(d, i, j, q, l0, l1),
                    (3, _) => dots_tile_dyn::<3>(d, i, j, q, l0, l1),
                    (2, _) => dots_tile_dyn::<2>(d, i, j, q, l0, l1),
                    _ => dots_tile_dyn::<1>(d, i, j, q, l0, l1),
                }
                j += q;
            }
            i += r;
        }
        l0 = l1;
    }
}

/// One chunk of [`dots_streamed`] for a block of A's rows: C[i·ldc + j] +=
/// Σ_l A[i·DOT_CHUNK + l] · B[bo[j] + l] for l < len, with A rounded (a
/// block of at most [`STREAM_ROWS`] rows) and B in f32.
struct Streamed<'a> {
    m: usize,
    n: usize,
    len: usize,
    a: *const u16,
    b: *const f32,
    bo: &'a [usize],
    c: *mut f32,
    ldc: usize,
}

/// Runs the tiles of `t` on the bf16 path.
///
/// # Safety
/// Row i of A must hold `t.len` values at i·DOT_CHUNK, B's rows `t.len`
/// values from bo[j], and C's m × n values must be this call's own.
unsafe fn run_streamed(t: &Streamed) {
    #[cfg(target_arch = "x86_64")]
    streamed_avx512(t);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = t;
        unreachable!("the bf16 path exists on x86-64 only")
    }
}

/// The tiles of a [`Streamed`] chunk: 6 rows of A by 4 of B, B's quads
/// outermost, so that a quad's chunk (32 KiB of f32) stays in L1 while
/// every tile of A's rows runs past it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn streamed_avx512(t: &Streamed) {
    let mut j = 0;
    while j < t.n {
        let q = (t.n - j).min(4);
        let mut i = 0;
        while i < t.m {
            let r = (t.m - i).min(6);
            match r {
                6 => streamed_rows::<6>(t, i, j, q),
                5 => streamed_rows::<5>(t, i, j, q),
                4 => streamed_rows::<4>(t, i, j, q),
                3 => streamed_rows::<3>(t, i, j, q),
                2 => streamed_rows::<2>(t, i, j, q),
                _ => streamed_rows::<1>(t, i, j, q),
            }
            i += r;
        }
        j += q;
    }
}

/// R rows of A against q ≤ 4 rows of B.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn streamed_rows<const R: usize>(t: &Streamed, i: usize, j: usize, q: usize) {
    if q == 4 {
        streamed_tile::<R, 4>(t, i, j);
    } else {
        for jj in j..j + q {
            streamed_tile::<R, 1>(t, i, jj);
        }
    }
}

/// C[i..i + R, j..j + Q] += the chunk's dot products ([`streamed_run`]).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn streamed_tile<const R: usize, const Q: usize>(t: &Streamed, i: usize, j: usize) {
    let mut acc = [[_mm512_setzero_ps(); Q]; R];
    let ap: [*const u16; R] = core::array::from_fn(|r| t.a.add((i + r) * DOT_CHUNK));
    let bp: [*const f32; Q] = core::array::from_fn(|q| t.b.add(t.bo[j + q]));
    streamed_run::<R, Q>(&mut acc, ap, bp, t.len);
    for (r, accr) in acc.iter().enumerate() {
        for (q, x) in accr.iter().enumerate() {
            *t.c.add((i + r) * t.ldc + j + q) += _mm512_reduce_add_ps(*x);
        }
    }
}

/// The sums of [`streamed_tile`] over `len` elements: per 32, each of B's
/// Q rows is loaded as two f32 vectors and rounded into one of bf16 pairs
/// (`vcvtne2ps2bf16`), then meets each of A's R rows in a `vdpbf16ps`;
/// whole steps with plain loads, then the last masked on both sides, so
/// that nothing past a row's end is read. A function of its own, as
/// [`dots_run`], so that the accumulators stay in registers.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn streamed_run<const R: usize, const Q: usize>(
    out: &mut [[__m512; Q]; R],
    ap: [*const u16; R],
    bp: [*const f32; Q],
    len: usize,
) {
    let mut acc = *out;
    let mut l = 0;
    while l + 32 <= len {
        streamed_step::<R, Q>(&mut acc, &ap, &bp, l, u32::MAX);
        l += 32;
    }
    if l < len {
        streamed_step::<R, Q>(&mut acc, &ap, &bp, l, (1u32 << (len - l)) - 1);
    }
    *out = acc;
}

/// One step of 32 elements of [`streamed_run`]: lanes outside `mask` read
/// as 0 (and are not read).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn streamed_step<const R: usize, const Q: usize>(
    acc: &mut [[__m512; Q]; R],
    ap: &[*const u16; R],
    bp: &[*const f32; Q],
    l: usize,
    mask: __mmask32,
) {
    // Loops rather than closures: a closure is not compiled with the
    // caller's target features, so its intrinsics would not be inlined.
    let full = mask == u32::MAX;
    let (ml, mh) = (mask as __mmask16, (mask >> 16) as __mmask16);
    let mut bv: [__m512bh; Q] =
        [core::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); Q];
    for q in 0..Q {
        let (lo, hi) = if full {
            (
                _mm512_loadu_ps(bp[q].add(l)),
                _mm512_loadu_ps(bp[q].add(l + 16)),
            )
        } else {
            (
                _mm512_maskz_loadu_ps(ml, bp[q].add(l)),
                _mm512_maskz_loadu_ps(mh, bp[q].add(l + 16)),
            )
        };
        bv[q] = _mm512_cvtne2ps_pbh(hi, lo);
    }
    for r in 0..R {
        let av: __m512bh = if full {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(ap[r].add(l) as *const _))
        } else {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_maskz_loadu_epi16(
                mask,
                ap[r].add(l) as *const i16,
            ))
        };
        for q in 0..Q {
            acc[r][q] = _mm512_dpbf16_ps(acc[r][q], av, bv[q]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_tile_dyn<const R: usize>(
    d: &Dots,
    i: usize,
    j: usize,
    q: usize,
    l0: usize,
    l1: usize,
) {
    for jj in j..j + q {
        dots_tile::<R, 1>(d, i, jj, l0, l1);
    }
}

/// C[i..i + R, j..j + Q] += the dot products over [l0, l1), 32 elements per
/// instruction, the last 32 masked.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_tile<const R: usize, const Q: usize>(
    d: &Dots,
    i: usize,
    j: usize,
    l0: usize,
    l1: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); Q]; R];
    for sg in 0..d.segs.count {
        let (ao, bo) = (sg * d.segs.a_stride, sg * d.segs.b_stride);
        let ap: [*const u16; R] = core::array::from_fn(|r| d.a.add(d.ao[i + r] + ao));
        let bp: [*const u16; Q] = core::array::from_fn(|q| d.b.add(d.bo[j + q] + bo));
        let ap: [*const u16; R] = core::array::from_fn(|r| ap[r].add(l0));
        let bp: [*const u16; Q] = core::array::from_fn(|q| bp[q].add(l0));
        dots_run::<R, Q>(&mut acc, ap, bp, l1 - l0);
    }
    for (r, accr) in acc.iter().enumerate() {
        for (q, x) in accr.iter().enumerate() {
            *d.c.add((i + r) * d.ldc + j + q) += _mm512_reduce_add_ps(*x);
        }
    }
}

/// The sums of [`dots_tile`] over `len` elements from the pointers: whole
/// steps of 32 with plain loads, then one masked. A function of its own,
/// with nothing else live: inlined into the tile's loops, with the mask
/// chosen per step, LLVM kept some of the 24 accumulators on the stack
/// (a load and a store around each `vdpbf16ps`), and how much that cost
/// changed with where the stack happened to fall in a cache line.
#[cfg(target_arch = "x86_64")]
#[inline(never)]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn dots_run<const R: usize, const Q: usize>(
    out: &mut [[__m512; Q]; R],
    ap: [*const u16; R],
    bp: [*const u16; Q],
    len: usize,
) {
    let mut acc = *out;
    let mut l = 0;
    while l + 32 <= len {
        dots_step::<R, Q>(&mut acc, &ap, &bp, l, u32::MAX);
        l += 32;
    }
    if l < len {
        dots_step::<R, Q>(&mut acc, &ap, &bp, l, (1u32 << (len - l)) - 1);
    }
    *out = acc;
}

/// One step of 32 elements of [`dots_tile`]: lanes outside `mask` read as 0.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn dots_step<const R: usize, const Q: usize>(
    acc: &mut [[__m512; Q]; R],
    ap: &[*const u16; R],
    bp: &[*const u16; Q],
    l: usize,
    mask: __mmask32,
) {
    // A plain function rather than a closure, for the reason in
    // [`streamed_step`].
    #[inline(always)]
    unsafe fn load(p: *const u16, mask: __mmask32) -> __m512bh {
        if mask == u32::MAX {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(p as *const _))
        } else {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_maskz_loadu_epi16(
                mask,
                p as *const i16,
            ))
        }
    }
    let mut bv: [__m512bh; Q] =
        [core::mem::transmute::<__m512i, __m512bh>(_mm512_setzero_si512()); Q];
    for q in 0..Q {
        bv[q] = load(bp[q].add(l), mask);
    }
    for r in 0..R {
        let av = load(ap[r].add(l), mask);
        for q in 0..Q {
            acc[r][q] = _mm512_dpbf16_ps(acc[r][q], av, bv[q]);
        }
    }
}

/// [`rows`] on the AMX tile unit: B's pairs of rows packed per panel as on
/// the AVX-512 path (which is the layout of a tile of B: 16 words of a
/// pair row, the next pair row [`PANEL`] words on), A's rows read as tiles
/// in place, and blocks of 32 rows × 32 columns of C summed in four tiles.
#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{lane_mask, pack_panel, Rows, DOT_CHUNK, PANEL, TILE_STRIDE};
    use std::arch::x86_64::*;

    /// Columns [j0, j1) of C.
    ///
    /// # Safety
    /// AMX-BF16 is available and no other tile configuration is alive on
    /// this thread; `p` is checked as [`super::rows`] checks it, with
    /// `p.ap` holding ⌈m/16⌉·16 rows of `p.kpp` words (a multiple of 16),
    /// and `panel` `p.kpp` · [`PANEL`] words whose rows from `p.kp` on are
    /// zeros.
    ///
    /// With `stream`, whole blocks go to C with streaming stores (through a
    /// buffer: a tile store cannot stream), so that a large C is not read
    /// into the cache before it is written: the dense layers' gradients,
    /// whose C (the weight gradient, 64 × 79,904 in the genomic CNN) is
    /// written once per step and read by the optimizer after everything
    /// else. `p.c` is then 64-byte aligned at column j0 of every row.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn rows(p: &Rows, j0: usize, j1: usize, panel: &mut [u32], stream: bool) {
        let _tiles = crate::amx::Tiles::new();
        let mut out = [0f32; 32 * 32];
        let mut line = Lines([0f32; 32 * 32]);
        let mt = p.m.div_ceil(16);
        let steps = p.kpp / 16;
        // Whole blocks without a bias start their sum tiles at zero or,
        // accumulating, from C, and are stored into C straight from the
        // tiles (the dense layers' gradients: `bench kernels`' g_dense_b
        // 2.2–2.8 → 1.8–2.3 ms on the Xeon). Started from tiles of the bias
        // and stored the same way, the genomic forward pass ran slower
        // (g_conv2pool_f 3.3–3.5 → 3.6–4.2 ms), so blocks with a bias go
        // through `out`.
        let biased = p.bias.iter().any(|b| b.to_bits() != 0);
        let mut j = j0;
        while j < j1 {
            let w = (j1 - j).min(PANEL);
            pack_panel(p, j, w, panel);
            let mut h = 0;
            while h < w {
                let wh = (w - h).min(32);
                let mut t = 0;
                while t < mt {
                    let a = p.ap.as_ptr().add(t * 16 * p.kpp);
                    let b = panel.as_ptr().add(h);
                    let c = p.c.add(t * 16 * p.ldc + j + h);
                    let whole = t * 16 + 32 <= p.m && wh == 32;
                    let in_place = whole && !biased;
                    if in_place {
                        let line = stream.then_some(&mut line);
                        block_in_place(a, p.kpp, b, steps, c, p.ldc, p.accumulate, line);
                    } else if t + 1 < mt {
                        block::<true>(a, p.kpp, b, steps, &mut out);
                    } else {
                        block::<false>(a, p.kpp, b, steps, &mut out);
                    }
                    if !in_place {
                        store(p, &out, t * 16, (t * 16 + 32).min(p.m), j + h, wh);
                    }
                    t += 2;
                }
                h += 32;
            }
            j += w;
        }
        if stream {
            _mm_sfence();
        }
    }

    /// A block's sums on cache lines of their own.
    #[repr(C, align(64))]
    struct Lines([f32; 32 * 32]);

    /// The sums of 16 (or with TWO 32) rows of A's words from `a` (rows
    /// `kpp` words apart) times 32 columns of the panel from `b`, over
    /// `steps` · 16 words, into `out` (32 × 32, row-major; without TWO,
    /// rows 16–31 hold nothing of use).
    #[inline]
    unsafe fn block<const TWO: bool>(
        a: *const u32,
        kpp: usize,
        b: *const u32,
        steps: usize,
        out: &mut [f32; 32 * 32],
    ) {
        crate::amx::zero_sums();
        products::<TWO>(a, kpp, b, steps);
        crate::amx::store_sums(out.as_mut_ptr() as *mut u8, 128);
    }

    /// Adds to the sum tiles the products of 16 (or with TWO 32) rows of
    /// A's words from `a` (rows `kpp` words apart) with 32 columns of the
    /// panel from `b`, over `steps` · 16 words.
    #[inline]
    unsafe fn products<const TWO: bool>(a: *const u32, kpp: usize, b: *const u32, steps: usize) {
        let lda = 4 * kpp;
        let ldb = 4 * PANEL;
        for s in 0..steps {
            let a0 = a.add(16 * s);
            let b0 = b.add(16 * PANEL * s);
            // With one tile of A's rows, it stands for both: the second
            // pair of sums (rows 16–31 of the block) is never read.
            let a1 = if TWO { a0.add(16 * kpp) } else { a0 };
            crate::amx::bf16_step(
                a0 as *const u8,
                a1 as *const u8,
                lda,
                b0 as *const u8,
                b0.add(16) as *const u8,
                ldb,
            );
        }
    }

    /// A whole 32 × 32 block of C at `c` (rows `ldc` floats apart): its four
    /// sum tiles zeroed or, accumulating, loaded from C, the products of 32
    /// rows of A's words from `a` with 32 columns of the panel from `b`
    /// added over `steps` · 16 words, and the tiles stored into C, or with
    /// `stream` into its buffer and streamed from there into C (each row
    /// then 64-byte aligned).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_in_place(
        a: *const u32,
        kpp: usize,
        b: *const u32,
        steps: usize,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        stream: Option<&mut Lines>,
    ) {
        if accumulate {
            crate::amx::load_sums(c as *const u8, 4 * ldc);
        } else {
            crate::amx::zero_sums();
        }
        products::<true>(a, kpp, b, steps);
        let Some(line) = stream else {
            crate::amx::store_sums(c as *mut u8, 4 * ldc);
            return;
        };
        crate::amx::store_sums(line.0.as_mut_ptr() as *mut u8, 128);
        for (r, row) in line.0.chunks_exact(32).enumerate() {
            let cr = c.add(r * ldc);
            crate::simd::stream_store_avx512(cr, _mm512_load_ps(row.as_ptr()));
            crate::simd::stream_store_avx512(cr.add(16), _mm512_load_ps(row.as_ptr().add(16)));
        }
    }

    /// C (mb × n at `c`, rows `ldc` apart) += the products of A's rounded
    /// rows in `ab` ([`TILE_STRIDE`] values apart; whole blocks of 32 rows
    /// readable) with B's packed panels in `bp` ([`DOT_CHUNK`] / 2 rows of
    /// [`PANEL`] words each), over `steps` · 32 elements: whole 32 × 32
    /// blocks of C loaded into the sum tiles and stored back in place,
    /// partial ones through a buffer.
    ///
    /// # Safety
    /// AMX-BF16 is available and no other tile configuration is alive on
    /// this thread; the buffers are as [`super::streamed_tiles`] fills
    /// them; C's mb × n values are this call's own.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn streamed(
        ab: &[u16],
        mb: usize,
        steps: usize,
        bp: &[u32],
        n: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let _tiles = crate::amx::Tiles::new();
        let kpp = TILE_STRIDE / 2;
        let mut out = [0f32; 32 * 32];
        for jb in (0..n).step_by(32) {
            let b = bp
                .as_ptr()
                .add(jb / PANEL * (DOT_CHUNK / 2 * PANEL) + jb % PANEL);
            let w = (n - jb).min(32);
            for ib in (0..mb).step_by(32) {
                let a = ab.as_ptr().add(ib * TILE_STRIDE) as *const u32;
                let cb = c.add(ib * ldc + jb);
                let h = (mb - ib).min(32);
                if h == 32 && w == 32 {
                    block_in_place(a, kpp, b, steps, cb, ldc, true, None);
                    continue;
                }
                for i in 0..h {
                    core::ptr::copy_nonoverlapping(
                        cb.add(i * ldc),
                        out.as_mut_ptr().add(32 * i),
                        w,
                    );
                }
                block_in_place(a, kpp, b, steps, out.as_mut_ptr(), 32, true, None);
                for i in 0..h {
                    core::ptr::copy_nonoverlapping(out.as_ptr().add(32 * i), cb.add(i * ldc), w);
                }
            }
        }
    }

    /// Rows [i0, i1) of C, columns [j, j + w) (w ≤ 32), from `out`: the
    /// row's bias plus the sums, added to C when accumulating.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn store(p: &Rows, out: &[f32; 32 * 32], i0: usize, i1: usize, j: usize, w: usize) {
        for i in i0..i1 {
            let cr = p.c.add(i * p.ldc + j);
            for v in 0..w.div_ceil(16) {
                let mask = lane_mask(w - 16 * v);
                let sum = _mm512_loadu_ps(out.as_ptr().add((i - i0) * 32 + 16 * v));
                let mut x = _mm512_add_ps(_mm512_set1_ps(p.bias[i]), sum);
                if p.accumulate {
                    x = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, cr.add(16 * v)), x);
                }
                _mm512_mask_storeu_ps(cr.add(16 * v), mask, x);
            }
        }
    }
}
