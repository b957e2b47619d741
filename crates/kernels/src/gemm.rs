//! The two matrix-product micro-kernels that every weighted layer runs on.
//!
//! - [`gemm_rows`]: C = A · B, where row r of B is any slice of a buffer
//!   (`b[boff(r)..]`). With rows that are shifted views of one padded input,
//!   this is a convolution with no im2col copy; with plain rows it is a GEMM.
//!   Register tile: 4 rows of A × 4 vectors of B (64 columns on AVX-512).
//! - [`gemm_dots`]: C[i, j] = ⟨A_i, B_j⟩ over a long common length, the shape
//!   of weight gradients and of dense layers with many inputs. Register
//!   tile: 4 × 4 dot products, vectorized along the length, which is cut
//!   into cache-sized chunks.
//!
//! Both are written once, generic over pulp's `Simd`, and dispatched by
//! [`SimdPath`]; `reference` holds the naive loops they are tested against.

use pulp::{Simd, WithSimd};
use rayon::prelude::*;

use crate::simd::{loadu, storeu, stream_store, SendPtr, SimdPath};

const MR: usize = 4;
const NV: usize = 4;
/// Length of the chunks of [`gemm_dots`], in f32 (4 KiB per row: a 4 × 4 tile of rows stays in L1).
const DOT_CHUNK: usize = 1024;

/// C[i·ldc + j] (= or +=) Σ_r A[i·lda + r] · B[boff(r) + j], for i < m, j < n, r < k.
///
/// # Panics
/// If any row of A, B or C would fall outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows<F: Fn(usize) -> usize + Copy + Sync>(
    path: SimdPath,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    boff: F,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    gemm_rows_bias(
        path, m, n, k, a, lda, b, boff, None, c, ldc, accumulate, parallel,
    )
}

/// [`gemm_rows`] with a bias added to each row of C in the same pass:
/// C[i·ldc + j] (= or +=) bias[i] + Σ_r A[i·lda + r] · B[boff(r) + j].
///
/// # Panics
/// If any row of A, B or C would fall outside its slice, or the bias is shorter than m.
#[allow(clippy::too_many_arguments)]
pub fn gemm_rows_bias<F: Fn(usize) -> usize + Copy + Sync>(
    path: SimdPath,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    boff: F,
    bias: Option<&[f32]>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if let Some(bias) = bias {
        assert!(bias.len() >= m, "gemm_rows: bias too short");
    }
    let bias_slice = bias;
    let bias = BiasPtr(bias.map_or(std::ptr::null(), |b| b.as_ptr()));
    assert!(
        k == 0 || (m - 1) * lda + k <= a.len(),
        "gemm_rows: A too short"
    );
    assert!((m - 1) * ldc + n <= c.len(), "gemm_rows: C too short");
    with_offsets(k, boff, |offs| {
        for (r, &o) in offs.iter().enumerate() {
            assert!(o + n <= b.len(), "gemm_rows: row {r} of B out of bounds");
        }
        if path.is_bf16() {
            return crate::bf16::rows(
                path, m, n, k, a, lda, b, offs, bias_slice, c, ldc, accumulate, parallel,
            );
        }
        // A large C that is written, not added to, bypasses the caches:
        // from its first 64-byte line on, when every row starts at the same
        // place in a line.
        let stream = streams(path, m, n, ldc, accumulate);
        let head = if stream { stream_head(c, n) } else { 0 };
        let cp = SendPtr(c.as_mut_ptr());
        let offs = OffsPtr(offs.as_ptr());
        let run = |j0: usize, j1: usize, stream: bool| {
            path.dispatch(RowsOp {
                m,
                k,
                j0,
                j1,
                a: a.as_ptr(),
                lda,
                b: b.as_ptr(),
                offs,
                c: cp,
                ldc,
                accumulate,
                bias,
                stream,
            })
        };
        if head > 0 {
            run(0, head, false);
        }
        let block = 64 * path.lanes().max(4);
        let threads = rayon::current_num_threads();
        let rest = n - head;
        if parallel && threads > 1 && rest >= 2 * block && (m * n * k) >= crate::PARALLEL_WORK {
            let parts = rest.div_ceil(block);
            (0..parts)
                .into_par_iter()
                .for_each(|p| run(head + p * block, head + ((p + 1) * block).min(rest), stream));
        } else {
            run(head, n, stream);
        }
    })
}

/// The fewest bytes of C for which [`gemm_rows`] writes it with streaming
/// (non-temporal) stores, which skip reading each line into the cache
/// before it is overwritten. A C this large is not read again from the
/// cache anyway: the genomic dense layer's weight gradient (20 MB, read
/// next by the optimizer) and input gradient (10 MB). Smaller ones, which
/// the next layer reads while they are still in L2, keep ordinary stores.
const STREAM_BYTES: usize = 8 << 20;

/// Whether [`gemm_rows`] streams C's stores: a large C written, not added
/// to, whose rows all start at the same place in a 64-byte line, on the
/// AVX-512 and AVX2 paths (and the bf16 path, in [`crate::bf16`]).
fn streams(path: SimdPath, m: usize, n: usize, ldc: usize, accumulate: bool) -> bool {
    matches!(path, SimdPath::Avx512 | SimdPath::Avx2) && streams_c(m, n, ldc, accumulate)
}

/// [`streams`] apart from the path.
pub(crate) fn streams_c(m: usize, n: usize, ldc: usize, accumulate: bool) -> bool {
    cfg!(target_arch = "x86_64")
        && !accumulate
        && 4 * m * n >= STREAM_BYTES
        && (m == 1 || ldc.is_multiple_of(16))
}

/// The columns of C before its first 64-byte line, where a streamed C
/// starts with ordinary stores.
pub(crate) fn stream_head(c: &[f32], n: usize) -> usize {
    ((64 - c.as_ptr() as usize % 64) % 64 / 4).min(n)
}

thread_local! {
    static OFFSETS: std::cell::RefCell<Vec<Vec<usize>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` on the row offsets boff(0), …, boff(k − 1), computed once: the
/// micro-kernel then reads them instead of evaluating `boff` (often a
/// division by the kernel size) in its innermost loop.
fn with_offsets<F: Fn(usize) -> usize, R>(k: usize, boff: F, f: impl FnOnce(&[usize]) -> R) -> R {
    let mut buf = OFFSETS.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    buf.clear();
    buf.extend((0..k).map(boff));
    let out = f(&buf);
    OFFSETS.with(|p| p.borrow_mut().push(buf));
    out
}

/// The rows' offsets, shared by the threads of one product.
#[derive(Clone, Copy)]
struct OffsPtr(*const usize);
unsafe impl Send for OffsPtr {}
unsafe impl Sync for OffsPtr {}

/// A row-bias pointer (null for none) that may cross threads.
#[derive(Clone, Copy)]
struct BiasPtr(*const f32);
unsafe impl Send for BiasPtr {}
unsafe impl Sync for BiasPtr {}

impl BiasPtr {
    #[inline(always)]
    fn at(self, i: usize) -> f32 {
        if self.0.is_null() {
            0.0
        } else {
            unsafe { *self.0.add(i) }
        }
    }
}

struct RowsOp {
    m: usize,
    k: usize,
    j0: usize,
    j1: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    offs: OffsPtr,
    c: SendPtr,
    ldc: usize,
    accumulate: bool,
    bias: BiasPtr,
    /// Store C's full vectors with streaming stores (each is then aligned
    /// to its width: columns from a 64-byte line on, in steps of vectors).
    stream: bool,
}

impl WithSimd for RowsOp {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // Two forms, so that the ordinary one has no test per store.
        if self.stream {
            self.columns::<S, true>(s)
        } else {
            self.columns::<S, false>(s)
        }
    }
}

impl RowsOp {
    #[inline(always)]
    fn columns<S: Simd, const STREAM: bool>(&self, s: S) {
        let lanes = S::F32_LANES;
        let mut j = self.j0;
        // Full tiles of NV vectors, then single vectors, then scalar columns.
        while j + NV * lanes <= self.j1 {
            self.column_tile::<S, NV, STREAM>(s, j);
            j += NV * lanes;
        }
        while j + lanes <= self.j1 {
            self.column_tile::<S, 1, STREAM>(s, j);
            j += lanes;
        }
        // The last columns, one at a time, by the same fused multiply-adds
        // in the same order as a vector lane: a column's value does not
        // depend on whether it falls in a vector, so neither does it on
        // where C starts in a cache line (a streamed C's first columns).
        for jj in j..self.j1 {
            for i in 0..self.m {
                let mut acc = self.bias.at(i);
                for r in 0..self.k {
                    unsafe {
                        acc = (*self.a.add(i * self.lda + r))
                            .mul_add(*self.b.add(*self.offs.0.add(r) + jj), acc);
                    }
                }
                unsafe {
                    let cp = self.c.0.add(i * self.ldc + jj);
                    *cp = if self.accumulate { *cp + acc } else { acc };
                }
            }
        }
        if STREAM {
            // Streaming stores are weakly ordered: done before this thread
            // reports the work finished.
            #[cfg(target_arch = "x86_64")]
            // SAFETY: SSE is part of x86-64.
            unsafe {
                core::arch::x86_64::_mm_sfence()
            };
        }
    }

    #[inline(always)]
    fn column_tile<S: Simd, const V: usize, const STREAM: bool>(&self, s: S, j: usize) {
        let mut i = 0;
        // With 32 vector registers (AVX-512), 6 rows × V vectors share each
        // load of B among more FMAs (when the sum is long enough to pay for
        // the larger tile's set-up and stores).
        if S::F32_LANES == 16 && self.k >= 8 {
            while i + 6 <= self.m {
                self.tile::<S, 6, V, STREAM>(s, i, j);
                i += 6;
            }
            if self.m - i == 5 {
                self.tile::<S, 5, V, STREAM>(s, i, j);
                return;
            }
        }
        while i + MR <= self.m {
            self.tile::<S, MR, V, STREAM>(s, i, j);
            i += MR;
        }
        match self.m - i {
            3 => self.tile::<S, 3, V, STREAM>(s, i, j),
            2 => self.tile::<S, 2, V, STREAM>(s, i, j),
            1 => self.tile::<S, 1, V, STREAM>(s, i, j),
            _ => {}
        }
    }

    #[inline(always)]
    fn tile<S: Simd, const R: usize, const V: usize, const STREAM: bool>(
        &self,
        s: S,
        i: usize,
        j: usize,
    ) {
        let lanes = S::F32_LANES;
        let zero = s.splat_f32s(0.0);
        let mut acc: [[S::f32s; V]; R] =
            core::array::from_fn(|row| [s.splat_f32s(self.bias.at(i + row)); V]);
        unsafe {
            for r in 0..self.k {
                let bp = self.b.add(*self.offs.0.add(r) + j);
                let mut bv = [zero; V];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = loadu::<S>(bp.add(v * lanes));
                }
                for (row, accr) in acc.iter_mut().enumerate() {
                    let av = s.splat_f32s(*self.a.add((i + row) * self.lda + r));
                    for v in 0..V {
                        accr[v] = s.mul_add_e_f32s(av, bv[v], accr[v]);
                    }
                }
            }
            for (row, accr) in acc.iter().enumerate() {
                let cp = self.c.0.add((i + row) * self.ldc + j);
                for (v, x) in accr.iter().enumerate() {
                    let p = cp.add(v * lanes);
                    let out = if self.accumulate {
                        s.add_f32s(loadu::<S>(p), *x)
                    } else {
                        *x
                    };
                    if STREAM {
                        stream_store::<S>(p, out);
                    } else {
                        storeu::<S>(p, out);
                    }
                }
            }
        }
    }
}

/// Convolution weights w[g][co][ci][t] (per group: cog × cig × taps)
/// rearranged as out[g][ci][co][t]: per group, the left operand of an
/// input gradient's GEMM.
pub(crate) fn transpose_groups(
    w: &[f32],
    groups: usize,
    cog: usize,
    cig: usize,
    taps: usize,
    out: &mut [f32],
) {
    for g in 0..groups {
        for co in 0..cog {
            for ci in 0..cig {
                let src = &w[((g * cog + co) * cig + ci) * taps..][..taps];
                out[((g * cig + ci) * cog + co) * taps..][..taps].copy_from_slice(src);
            }
        }
    }
}

/// C[i·ldc + j] (= or +=) Σ_l A[aoff(i) + l] · B[boff(j) + l], for i < m, j < n, l < len.
///
/// # Panics
/// If any row of A, B or C would fall outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_dots<FA, FB>(
    path: SimdPath,
    m: usize,
    n: usize,
    len: usize,
    a: &[f32],
    aoff: FA,
    b: &[f32],
    boff: FB,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    parallel: bool,
) where
    FA: Fn(usize) -> usize + Copy + Sync,
    FB: Fn(usize) -> usize + Copy + Sync,
{
    if m == 0 || n == 0 {
        return;
    }
    assert!((m - 1) * ldc + n <= c.len(), "gemm_dots: C too short");
    for i in 0..m {
        assert!(
            aoff(i) + len <= a.len(),
            "gemm_dots: row {i} of A out of bounds"
        );
    }
    for j in 0..n {
        assert!(
            boff(j) + len <= b.len(),
            "gemm_dots: row {j} of B out of bounds"
        );
    }
    if !accumulate {
        for i in 0..m {
            c[i * ldc..i * ldc + n].fill(0.0);
        }
    }
    if path.is_bf16() {
        return crate::bf16::dots(
            path,
            m,
            n,
            len,
            Segments::ONE,
            a,
            aoff,
            b,
            boff,
            c,
            ldc,
            parallel,
        );
    }
    let cp = SendPtr(c.as_mut_ptr());
    let run = |j0: usize, j1: usize| {
        path.dispatch(DotsOp {
            m,
            j0,
            j1,
            len,
            segs: Segments::ONE,
            a: a.as_ptr(),
            aoff,
            b: b.as_ptr(),
            boff,
            c: cp,
            ldc,
        })
    };
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && n >= 2 * MR && m * n * len >= crate::PARALLEL_WORK {
        // Split the columns of C (rows of B) into one group of tiles per thread.
        let per = n.div_ceil(threads).div_ceil(MR) * MR;
        (0..n.div_ceil(per))
            .into_par_iter()
            .for_each(|p| run(p * per, ((p + 1) * per).min(n)));
    } else {
        run(0, n);
    }
}

/// Repeats of a dot product's rows: segment s of row i of A starts at
/// aoff(i) + s·a_stride (and likewise for B), and every segment adds to the
/// same dot product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segments {
    pub count: usize,
    pub a_stride: usize,
    pub b_stride: usize,
}

impl Segments {
    pub const ONE: Segments = Segments {
        count: 1,
        a_stride: 0,
        b_stride: 0,
    };
}

/// C[i·ldc + j] += Σ_s Σ_l A[aoff(i) + s·a_stride + l] · B[boff(j) + s·b_stride + l]:
/// [`gemm_dots`] summed over segments (such as the samples of a batch)
/// before the lanes are reduced, for short rows. Single-threaded.
///
/// # Panics
/// If any segment of a row of A or B would fall outside its slice.
#[allow(clippy::too_many_arguments)]
pub fn gemm_dots_segments<FA, FB>(
    path: SimdPath,
    m: usize,
    n: usize,
    len: usize,
    segs: Segments,
    a: &[f32],
    aoff: FA,
    b: &[f32],
    boff: FB,
    c: &mut [f32],
    ldc: usize,
) where
    FA: Fn(usize) -> usize + Copy + Sync,
    FB: Fn(usize) -> usize + Copy + Sync,
{
    if m == 0 || n == 0 || segs.count == 0 {
        return;
    }
    let last = segs.count - 1;
    assert!((m - 1) * ldc + n <= c.len(), "gemm_dots: C too short");
    for i in 0..m {
        assert!(
            aoff(i) + last * segs.a_stride + len <= a.len(),
            "gemm_dots: row {i} of A out of bounds"
        );
    }
    for j in 0..n {
        assert!(
            boff(j) + last * segs.b_stride + len <= b.len(),
            "gemm_dots: row {j} of B out of bounds"
        );
    }
    if path.is_bf16() {
        return crate::bf16::dots(path, m, n, len, segs, a, aoff, b, boff, c, ldc, false);
    }
    let c = SendPtr(c.as_mut_ptr());
    // SAFETY: every segment of every row was checked above, and all of C's
    // columns are this call's.
    unsafe { dots_columns(path, m, (0, n), len, segs, (a, aoff), (b, boff), c, ldc) }
}

/// Columns [j0, j1) of [`gemm_dots_segments`] on the f32 `path`, C added
/// to through a pointer that callers on several threads share (each its
/// own columns); the AMX bf16 path runs its dot products here, as f32 FMAs
/// on operands already rounded to bf16 ([`crate::bf16`]).
///
/// # Safety
/// Every segment of every row lies in `a` and `b`, and columns [j0, j1)
/// of C's m rows are this call's own.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dots_columns<FA, FB>(
    path: SimdPath,
    m: usize,
    (j0, j1): (usize, usize),
    len: usize,
    segs: Segments,
    (a, aoff): (&[f32], FA),
    (b, boff): (&[f32], FB),
    c: SendPtr<f32>,
    ldc: usize,
) where
    FA: Fn(usize) -> usize + Copy + Sync,
    FB: Fn(usize) -> usize + Copy + Sync,
{
    path.dispatch(DotsOp {
        m,
        j0,
        j1,
        len,
        segs,
        a: a.as_ptr(),
        aoff,
        b: b.as_ptr(),
        boff,
        c,
        ldc,
    })
}

struct DotsOp<FA, FB> {
    m: usize,
    j0: usize,
    j1: usize,
    len: usize,
    segs: Segments,
    a: *const f32,
    aoff: FA,
    b: *const f32,
    boff: FB,
    c: SendPtr,
    ldc: usize,
}

impl<FA: Fn(usize) -> usize + Copy, FB: Fn(usize) -> usize + Copy> WithSimd for DotsOp<FA, FB> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let mut l0 = 0;
        while l0 < self.len {
            let l1 = (l0 + DOT_CHUNK).min(self.len);
            let mut i = 0;
            // With 32 vector registers (AVX-512), tiles of 6 rows of A share
            // each load of B among more FMAs.
            let rows = if S::F32_LANES == 16 { 6 } else { MR };
            while i < self.m {
                let r = (self.m - i).min(rows);
                let mut j = self.j0;
                while j < self.j1 {
                    let q = (self.j1 - j).min(MR);
                    match (r, q) {
                        (6, 4) => self.tile::<S, 6, 4>(s, i, j, l0, l1),
                        (6, _) => self.tile_dyn::<S, 6>(s, i, j, q, l0, l1),
                        (5, 4) => self.tile::<S, 5, 4>(s, i, j, l0, l1),
                        (5, _) => self.tile_dyn::<S, 5>(s, i, j, q, l0, l1),
                        (4, 4) => self.tile::<S, 4, 4>(s, i, j, l0, l1),
                        (4, 3) => self.tile::<S, 4, 3>(s, i, j, l0, l1),
                        (4, 2) => self.tile::<S, 4, 2>(s, i, j, l0, l1),
                        (4, 1) => self.tile::<S, 4, 1>(s, i, j, l0, l1),
                        (3, _) => self.tile_dyn::<S, 3>(s, i, j, q, l0, l1),
                        (2, _) => self.tile_dyn::<S, 2>(s, i, j, q, l0, l1),
                        _ => self.tile_dyn::<S, 1>(s, i, j, q, l0, l1),
                    }
                    j += q;
                }
                i += r;
            }
            l0 = l1;
        }
    }
}

impl<FA: Fn(usize) -> usize + Copy, FB: Fn(usize) -> usize + Copy> DotsOp<FA, FB> {
    #[inline(always)]
    fn tile_dyn<S: Simd, const R: usize>(
        &self,
        s: S,
        i: usize,
        j: usize,
        q: usize,
        l0: usize,
        l1: usize,
    ) {
        for jj in j..j + q {
            self.tile::<S, R, 1>(s, i, jj, l0, l1);
        }
    }

    #[inline(always)]
    fn tile<S: Simd, const R: usize, const Q: usize>(
        &self,
        s: S,
        i: usize,
        j: usize,
        l0: usize,
        l1: usize,
    ) {
        let lanes = S::F32_LANES;
        let zero = s.splat_f32s(0.0);
        let mut acc = [[zero; Q]; R];
        unsafe {
            let mut tail = [[0f32; Q]; R];
            for sg in 0..self.segs.count {
                let (ao, bo) = (sg * self.segs.a_stride, sg * self.segs.b_stride);
                let ap: [*const f32; R] =
                    core::array::from_fn(|r| self.a.add((self.aoff)(i + r) + ao));
                let bp: [*const f32; Q] =
                    core::array::from_fn(|q| self.b.add((self.boff)(j + q) + bo));
                let mut l = l0;
                while l + lanes <= l1 {
                    let bv: [S::f32s; Q] = core::array::from_fn(|q| loadu::<S>(bp[q].add(l)));
                    for r in 0..R {
                        let av = loadu::<S>(ap[r].add(l));
                        for q in 0..Q {
                            acc[r][q] = s.mul_add_e_f32s(av, bv[q], acc[r][q]);
                        }
                    }
                    l += lanes;
                }
                for ll in l..l1 {
                    for r in 0..R {
                        let av = *ap[r].add(ll);
                        for q in 0..Q {
                            tail[r][q] += av * *bp[q].add(ll);
                        }
                    }
                }
            }
            for r in 0..R {
                for q in 0..Q {
                    let cp = self.c.0.add((i + r) * self.ldc + j + q);
                    *cp += s.reduce_sum_f32s(acc[r][q]) + tail[r][q];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 2001) as f32 / 1000.0
                    - 1.0
            })
            .collect()
    }

    #[test]
    fn rows_and_dots_match_naive_on_every_path() {
        for path in SimdPath::available() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (3, 17, 5),
                (4, 64, 7),
                (5, 65, 9),
                (9, 130, 3),
                (32, 257, 80),
                (11, 70, 33),
                (6, 15, 0),
            ] {
                let a = data(m * k + 3, 1);
                let b = data((k + 2) * (n + 5), 2);
                let boff = |r: usize| r * (n + 5) + 2;
                let mut c = data(m * (n + 1), 3);
                let c0 = c.clone();
                gemm_rows(path, m, n, k, &a, k, &b, boff, &mut c, n + 1, true, true);
                for i in 0..m {
                    for j in 0..n {
                        let want: f64 = c0[i * (n + 1) + j] as f64
                            + (0..k)
                                .map(|r| a[i * k + r] as f64 * b[boff(r) + j] as f64)
                                .sum::<f64>();
                        let got = c[i * (n + 1) + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-4,
                            "{path} rows m={m} n={n} k={k}: {got} vs {want}"
                        );
                    }
                }
                // dots: A rows of length k at i*k, B rows at boff.
                let len = n;
                let aoff = |i: usize| i * (len + 1);
                let a2 = data(m * (len + 1), 4);
                let mut c2 = vec![0f32; m * k];
                gemm_dots(
                    path, m, k, len, &a2, aoff, &b, boff, &mut c2, k, false, true,
                );
                for i in 0..m {
                    for j in 0..k {
                        let want: f64 = (0..len)
                            .map(|l| a2[aoff(i) + l] as f64 * b[boff(j) + l] as f64)
                            .sum();
                        let got = c2[i * k + j] as f64;
                        assert!(
                            (got - want).abs() < 1e-3,
                            "{path} dots m={m} n={k} len={len}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
