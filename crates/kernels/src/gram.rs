//! Gram matrices of small unsigned integers, exactly, in integer arithmetic:
//! C += X Xᵀ (lower triangle) for an n × k matrix X of bytes, with int8
//! products and int32 sums. Genotype dosages are 0, 1 or 2, so the cross
//! product behind a genomic relationship matrix needs no floating point:
//! centring and scaling are corrections applied afterwards (crate `gblup`).
//!
//! Paths, chosen at run time ([`Int8Path::current`]):
//! - [`Int8Path::Avx512Vnni`]: `vpdpbusd` (AVX512-VNNI, on Intel Ice Lake and
//!   later, AMD Zen 4 and later): 64 byte products summed into 16 int32 lanes
//!   per instruction. Register tile: 8 rows × 32 columns.
//! - none: a CPU without VNNI has no int8 path; the caller keeps its f32 path
//!   (`GENOCNN_SIMD=avx2` or `scalar` also chooses that).
//!
//! AMX-INT8 (`tdpbusd`) is not written: no machine this code has run on had
//! the tile unit, and a path that has never run is not shipped.
//!
//! [`crate::reference::gram_u8`] is the naive loop the path is tested against.

use rayon::prelude::*;

use crate::simd::{SendPtr, SimdPath};

/// An int8 matrix-product path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Path {
    /// AVX-512 with VNNI (`vpdpbusd`).
    Avx512Vnni,
}

impl std::fmt::Display for Int8Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Int8Path::Avx512Vnni => "avx512-vnni",
        })
    }
}

impl Int8Path {
    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Int8Path::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Int8Path::Avx512Vnni => false,
        }
    }

    /// The int8 path in force: VNNI where the CPU has it and the f32 path in
    /// force ([`SimdPath::current`], which `GENOCNN_SIMD` sets) is AVX-512;
    /// none otherwise.
    pub fn current() -> Option<Int8Path> {
        (SimdPath::current().fp32() == SimdPath::Avx512 && Int8Path::Avx512Vnni.is_available())
            .then_some(Int8Path::Avx512Vnni)
    }
}

/// Rows of X per register tile.
const MR: usize = 8;
/// Columns of X Xᵀ per register tile (two vectors of 16 int32).
const NR: usize = 32;
/// Rows per parallel task (a multiple of MR).
const MC: usize = 64;
/// Bytes of each row per pass (the packed 32-column panel is 128 KiB, and
/// a task's 64 rows 256 KiB: both in L2). Each pass reads and writes the
/// C tiles again, from memory: 4096 ran the 4096 × 16384 product at
/// 320–350 G products/s on a 2-core Zen 4, 1024 at 280, 512 at 235,
/// 8192 at 330–340.
const KC: usize = 4096;

/// C[i·ldc + j] += Σ_r X[i·ldx + r] · X[j·ldx + r] for j ≤ i < n, r < k:
/// the lower triangle (with the diagonal) of X Xᵀ, in exact int32 sums.
/// Every value of X must be at most 127, and the sums must fit in i32
/// (k · 127² < 2³¹ always does for k < 133,000; dosages ≤ 2 allow k < 5 × 10⁸).
///
/// # Panics
/// If X or C is too short, a value of X exceeds 127, or the path is not
/// available on this CPU.
#[allow(clippy::too_many_arguments)]
pub fn gram_lower_u8(
    path: Int8Path,
    n: usize,
    k: usize,
    x: &[u8],
    ldx: usize,
    c: &mut [i32],
    ldc: usize,
    parallel: bool,
) {
    assert!(path.is_available(), "int8 path {path} is not available");
    if n == 0 || k == 0 {
        return;
    }
    assert!(
        ldx >= k && (n - 1) * ldx + k <= x.len(),
        "gram_lower_u8: X too short"
    );
    assert!(
        ldc >= n && (n - 1) * ldc + n <= c.len(),
        "gram_lower_u8: C too short"
    );
    let cp = SendPtr(c.as_mut_ptr());
    let mut panel = Vec::new();
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        pack_columns(n, kc, &x[k0..], ldx, &mut panel, parallel);
        let panel = &panel[..];
        let groups = kc.div_ceil(4);
        let run = |ib: usize| {
            let i0 = ib * MC;
            let i1 = (i0 + MC).min(n);
            // Column panels that meet the triangle of rows i0..i1.
            let mut j0 = 0;
            while j0 < i1 {
                let bp = &panel[(j0 / 16) * groups * 64..];
                let mut r0 = i0;
                while r0 < i1 {
                    let mr = MR.min(i1 - r0);
                    if j0 < r0 + mr {
                        // SAFETY: the path is available (checked above); the
                        // rows r0..r0+mr of X and of C are in bounds, and the
                        // tasks write disjoint rows of C.
                        unsafe {
                            match path {
                                Int8Path::Avx512Vnni => {
                                    vnni::tile(&x[k0..], ldx, r0, mr, kc, bp, j0, n, cp, ldc)
                                }
                            }
                        }
                    }
                    r0 += mr;
                }
                j0 += NR;
            }
        };
        let blocks = n.div_ceil(MC);
        if parallel && rayon::current_num_threads() > 1 && blocks > 1 {
            // Largest row blocks first: they have the most columns.
            (0..blocks).into_par_iter().rev().for_each(run);
        } else {
            (0..blocks).for_each(run);
        }
        k0 += kc;
    }
}

/// Packs columns 0..kc of X's n rows for `vpdpbusd`: for each block of 16
/// rows (padded with zero rows to a multiple of 32 rows), for each group of
/// 4 columns, 16 rows × 4 bytes (64 bytes); a short last group is padded
/// with zeros.
fn pack_columns(n: usize, kc: usize, x: &[u8], ldx: usize, out: &mut Vec<u8>, parallel: bool) {
    let groups = kc.div_ceil(4);
    let blocks = n.div_ceil(NR) * (NR / 16);
    out.clear();
    out.resize(blocks * groups * 64, 0);
    let pack = |(jb, dst): (usize, &mut [u8])| {
        let mut high = 0u8;
        for jj in 0..16 {
            let j = jb * 16 + jj;
            if j >= n {
                break;
            }
            let row = &x[j * ldx..j * ldx + kc];
            for (g, quad) in row.chunks(4).enumerate() {
                for (q, &v) in quad.iter().enumerate() {
                    dst[g * 64 + jj * 4 + q] = v;
                    high |= v;
                }
            }
        }
        high
    };
    // In parallel with the product: on one thread, packing took a sixth of
    // the product's time (4096 × 16384), the other thread idle.
    let high = if parallel {
        out.par_chunks_exact_mut(groups * 64)
            .enumerate()
            .map(pack)
            .reduce(|| 0, |a, b| a | b)
    } else {
        out.chunks_exact_mut(groups * 64)
            .enumerate()
            .map(pack)
            .fold(0, |a, b| a | b)
    };
    assert!(high < 128, "gram_lower_u8: a value of X exceeds 127");
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{SendPtr, MR, NR};
    use std::arch::x86_64::*;

    /// Four bytes of a row at column 4g (zero beyond column kc).
    #[inline(always)]
    unsafe fn quad(row: *const u8, g: usize, kc: usize) -> i32 {
        let c = 4 * g;
        if c + 4 <= kc {
            (row.add(c) as *const i32).read_unaligned()
        } else {
            let mut b = [0u8; 4];
            for (q, v) in b.iter_mut().enumerate() {
                if c + q < kc {
                    *v = *row.add(c + q);
                }
            }
            i32::from_le_bytes(b)
        }
    }

    /// Adds rows r0..r0+mr × columns j0..j0+32 (j ≤ i, j < n) of X Xᵀ over
    /// columns 0..kc of X into C.
    ///
    /// # Safety
    /// AVX512-VNNI is available; rows r0..r0+mr of X (with kc columns) and
    /// of C exist; `bp` holds the packed panel of rows j0..j0+32.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn tile(
        x: &[u8],
        ldx: usize,
        r0: usize,
        mr: usize,
        kc: usize,
        bp: &[u8],
        j0: usize,
        n: usize,
        c: SendPtr<i32>,
        ldc: usize,
    ) {
        let groups = kc.div_ceil(4);
        let full = kc / 4;
        let b0 = bp.as_ptr();
        let b1 = b0.add(groups * 64);
        let mut rows = [x.as_ptr(); MR];
        for (t, r) in rows.iter_mut().enumerate() {
            // Rows past mr repeat the last one; their sums are not stored.
            *r = x.as_ptr().add((r0 + t.min(mr - 1)) * ldx);
        }
        let mut acc0 = [_mm512_setzero_si512(); MR];
        let mut acc1 = [_mm512_setzero_si512(); MR];
        for g in 0..full {
            let v0 = _mm512_loadu_si512(b0.add(g * 64) as *const _);
            let v1 = _mm512_loadu_si512(b1.add(g * 64) as *const _);
            for t in 0..MR {
                // The row's 4 bytes broadcast by the instruction itself
                // ({1to16}): a separate `vpbroadcastd` (what the intrinsics
                // compile to, the broadcast serving two products) took a
                // vector-unit slot on Zen 4, 250 → 280 G products/s.
                // The packed panel is then the unsigned operand, the row
                // the signed one: both hold values ≤ 127.
                let p = rows[t].add(4 * g);
                std::arch::asm!(
                    "vpdpbusd {a0}, {v0}, dword ptr [{p}]{{1to16}}",
                    "vpdpbusd {a1}, {v1}, dword ptr [{p}]{{1to16}}",
                    a0 = inout(zmm_reg) acc0[t],
                    a1 = inout(zmm_reg) acc1[t],
                    v0 = in(zmm_reg) v0,
                    v1 = in(zmm_reg) v1,
                    p = in(reg) p,
                    options(pure, readonly, nostack, preserves_flags),
                );
            }
        }
        if full < groups {
            let g = full;
            let v0 = _mm512_loadu_si512(b0.add(g * 64) as *const _);
            let v1 = _mm512_loadu_si512(b1.add(g * 64) as *const _);
            for t in 0..MR {
                let a = _mm512_set1_epi32(quad(rows[t], g, kc));
                acc0[t] = _mm512_dpbusd_epi32(acc0[t], a, v0);
                acc1[t] = _mm512_dpbusd_epi32(acc1[t], a, v1);
            }
        }
        let cp = c.get();
        let whole = j0 + NR <= r0 + 1 && j0 + NR <= n;
        for t in 0..mr {
            let i = r0 + t;
            let dst = cp.add(i * ldc + j0);
            if whole {
                let p0 = dst as *mut __m512i;
                let p1 = dst.add(16) as *mut __m512i;
                _mm512_storeu_si512(p0, _mm512_add_epi32(_mm512_loadu_si512(p0), acc0[t]));
                _mm512_storeu_si512(p1, _mm512_add_epi32(_mm512_loadu_si512(p1), acc1[t]));
            } else {
                let mut s = [0i32; NR];
                _mm512_storeu_si512(s.as_mut_ptr() as *mut __m512i, acc0[t]);
                _mm512_storeu_si512(s.as_mut_ptr().add(16) as *mut __m512i, acc1[t]);
                let end = (i + 1).min(n).min(j0 + NR);
                for j in j0..end {
                    *cp.add(i * ldc + j) += s[j - j0];
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod vnni {
    use super::SendPtr;
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile(
        _: &[u8],
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: &[u8],
        _: usize,
        _: usize,
        _: SendPtr<i32>,
        _: usize,
    ) {
        unreachable!("AVX512-VNNI exists only on x86-64")
    }
}
