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
//! - [`Int8Path::Amx`]: the AMX tile unit's `tdpbusd` (Intel Sapphire Rapids
//!   and later, where Linux grants the tile state; [`crate::amx`]): a 16 × 64
//!   byte tile of X's rows times a 64 × 16 one of its columns into 16 × 16
//!   int32 sums per instruction. Tile block: 32 rows × 32 columns (four sum
//!   tiles, two of rows and two of columns).
//! - none: a CPU without VNNI has no int8 path; the caller keeps its f32 path
//!   (`GENOCNN_SIMD=avx2` or `scalar` also chooses that).
//!
//! `GENOCNN_INT8=vnni` keeps a CPU with AMX on the VNNI path, and
//! `GENOCNN_INT8=off` on the f32 path.
//!
//! [`crate::reference::gram_u8`] is the naive loop the path is tested against.

use std::cell::Cell;

use rayon::prelude::*;

use crate::simd::{SendPtr, SimdPath};

/// An int8 matrix-product path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Int8Path {
    /// AVX-512 with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// The AMX tile unit (`tdpbusd`).
    Amx,
}

impl std::fmt::Display for Int8Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Int8Path::Avx512Vnni => "avx512-vnni",
            Int8Path::Amx => "amx-int8",
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
            Int8Path::Amx => crate::amx::int8_available(),
        }
    }

    /// The int8 paths this CPU can run, best first.
    pub fn available() -> Vec<Int8Path> {
        [Int8Path::Amx, Int8Path::Avx512Vnni]
            .into_iter()
            .filter(|p| p.is_available())
            .collect()
    }

    /// The int8 path in force: none unless the f32 path in force
    /// ([`SimdPath::current`], which `GENOCNN_SIMD` sets) is AVX-512; then
    /// AMX where the CPU has it and Linux grants it, else VNNI where the CPU
    /// has it. `GENOCNN_INT8=vnni` skips AMX, `GENOCNN_INT8=off` both.
    pub fn current() -> Option<Int8Path> {
        if SimdPath::current().fp32() != SimdPath::Avx512 {
            return None;
        }
        if let Some(p) = INT8_OVERRIDE.with(Cell::get) {
            return p;
        }
        let choice = *CHOICE.get_or_init(|| match std::env::var("GENOCNN_INT8") {
            Err(_) => Choice::Best,
            Ok(v) => match v.to_ascii_lowercase().as_str() {
                "amx" | "auto" | "" => Choice::Best,
                "vnni" | "avx512-vnni" => Choice::Vnni,
                "off" | "none" | "f32" => Choice::Off,
                other => {
                    eprintln!(
                        "warning: GENOCNN_INT8: unknown int8 path '{other}'; expected amx, vnni or off; using the best this CPU has"
                    );
                    Choice::Best
                }
            },
        });
        let candidates: &[Int8Path] = match choice {
            Choice::Best => &[Int8Path::Amx, Int8Path::Avx512Vnni],
            Choice::Vnni => &[Int8Path::Avx512Vnni],
            Choice::Off => &[],
        };
        candidates.iter().copied().find(|p| p.is_available())
    }
}

/// What `GENOCNN_INT8` asks for.
#[derive(Clone, Copy)]
enum Choice {
    Best,
    Vnni,
    Off,
}

static CHOICE: std::sync::OnceLock<Choice> = std::sync::OnceLock::new();

thread_local! {
    static INT8_OVERRIDE: Cell<Option<Option<Int8Path>>> = const { Cell::new(None) };
}

/// Runs `f` with the int8 path `path` (`None`: no int8 path) forced on this
/// thread, where the f32 path in force is AVX-512 (as [`Int8Path::current`]
/// requires), so that tests can run the GRM on each path.
///
/// # Panics
/// If the path is not available on this CPU.
pub fn with_int8_path<R>(path: Option<Int8Path>, f: impl FnOnce() -> R) -> R {
    if let Some(p) = path {
        assert!(
            p.is_available(),
            "int8 path {p} is not available on this CPU"
        );
    }
    crate::simd::with_override(&INT8_OVERRIDE, Some(path), f)
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
    let job = Job {
        n,
        k,
        x,
        ldx,
        cp: SendPtr(c.as_mut_ptr()),
        ldc,
        parallel,
    };
    match path {
        Int8Path::Avx512Vnni => gram_vnni(job),
        Int8Path::Amx => gram_amx(job),
    }
}

/// The arguments of [`gram_lower_u8`], checked, with C as a pointer that
/// the tasks share (each writes its own rows).
struct Job<'a> {
    n: usize,
    k: usize,
    x: &'a [u8],
    ldx: usize,
    cp: SendPtr<i32>,
    ldc: usize,
    parallel: bool,
}

/// Runs `run` on blocks 0..blocks, largest last index first (the row
/// blocks lowest in the triangle have the most columns), in parallel
/// when asked and worth it.
fn for_blocks(blocks: usize, parallel: bool, run: impl Fn(usize) + Sync + Send) {
    if parallel && rayon::current_num_threads() > 1 && blocks > 1 {
        (0..blocks).into_par_iter().rev().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

/// [`gram_lower_u8`] on the VNNI path.
fn gram_vnni(job: Job) {
    let (n, k, x, ldx) = (job.n, job.k, job.x, job.ldx);
    let (cp, ldc, parallel) = (job.cp, job.ldc, job.parallel);
    let mut panel = Vec::new();
    let mut k0 = 0;
    while k0 < k {
        let kc = KC.min(k - k0);
        let groups = kc.div_ceil(4);
        pack_columns(n, kc, groups, &x[k0..], ldx, &mut panel, parallel);
        let panel = &panel[..];
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
                        // SAFETY: VNNI is available (checked by the caller);
                        // the rows r0..r0+mr of X and of C are in bounds,
                        // and the tasks write disjoint rows of C.
                        unsafe { vnni::tile(&x[k0..], ldx, r0, mr, kc, bp, j0, n, cp, ldc) }
                    }
                    r0 += mr;
                }
                j0 += NR;
            }
        };
        for_blocks(n.div_ceil(MC), parallel, run);
        k0 += kc;
    }
}

/// Rows (and columns) of X Xᵀ per AMX tile block: two tiles of 16.
const AMX_B: usize = 32;
/// Rows per parallel task on the AMX path (a multiple of [`AMX_B`]).
const AMX_MC: usize = 64;
/// Bytes of each row per pass on the AMX path (a multiple of 64).
const AMX_KC: usize = 4096;

/// [`gram_lower_u8`] on the AMX path. Per pass of up to [`AMX_KC`] columns,
/// X's rows are copied into rows of a multiple of 64 bytes (zeros after
/// the last column, and zero rows up to a multiple of 32), which the tile
/// loads read in place, and its columns are packed in VNNI order
/// ([`pack_columns`], 16 groups of 4 bytes per tile).
fn gram_amx(job: Job) {
    let (n, k, x, ldx) = (job.n, job.k, job.x, job.ldx);
    let (cp, ldc, parallel) = (job.cp, job.ldc, job.parallel);
    let rows_p = n.div_ceil(AMX_B) * AMX_B;
    let mut panel = Vec::new();
    let mut rows = Vec::new();
    let mut k0 = 0;
    while k0 < k {
        let kc = AMX_KC.min(k - k0);
        let kp = kc.div_ceil(64) * 64;
        pack_columns(n, kc, kp / 4, &x[k0..], ldx, &mut panel, parallel);
        // Rows one cache line longer than kp: at a stride of a multiple of
        // 4 KiB a tile's 16 rows would share one set of the L1 cache.
        let lda = kp + 64;
        // Every byte is written by the copy (the row, then zeros), so the
        // buffer is not cleared first.
        rows.resize(rows_p * lda, 0u8);
        let copy = |(i, dst): (usize, &mut [u8])| {
            if i < n {
                dst[..kc].copy_from_slice(&x[i * ldx + k0..i * ldx + k0 + kc]);
                dst[kc..].fill(0);
            } else {
                dst.fill(0);
            }
        };
        if parallel {
            rows.par_chunks_exact_mut(lda).enumerate().for_each(copy);
        } else {
            rows.chunks_exact_mut(lda).enumerate().for_each(copy);
        }
        let (panel, rows) = (&panel[..], &rows[..]);
        let run = |ib: usize| {
            let i0 = ib * AMX_MC;
            let i1 = (i0 + AMX_MC).min(n);
            // SAFETY: AMX-INT8 is available (checked by the caller), and no
            // other `Tiles` lives on this thread (tasks do not nest here).
            let _tiles = unsafe { crate::amx::Tiles::new() };
            let mut sums = [0i32; AMX_B * AMX_B];
            let mut j0 = 0;
            while j0 < i1 {
                let b0 = &panel[(j0 / 16) * kp * 16..(j0 / 16 + 2) * kp * 16];
                let mut r0 = i0;
                while r0 < i1 {
                    if j0 < r0 + AMX_B {
                        let a = &rows[r0 * lda..(r0 + AMX_B) * lda];
                        // SAFETY: the tiles are configured; `a` holds 32
                        // rows of kp bytes, `b0` two blocks of kp/4 rows
                        // of 64 bytes; the tasks write disjoint rows of C,
                        // rows r0..min(r0 + 32, i1) < n.
                        unsafe {
                            amx::block(a, lda, kp, b0, &mut sums);
                            amx::add_lower(&sums, r0, i1.min(r0 + AMX_B), j0, n, cp, ldc);
                        }
                    }
                    r0 += AMX_B;
                }
                j0 += AMX_B;
            }
        };
        for_blocks(n.div_ceil(AMX_MC), parallel, run);
        k0 += kc;
    }
}

/// Packs columns 0..kc of X's n rows for `vpdpbusd` and `tdpbusd`: for each
/// block of 16 rows (padded with zero rows to a multiple of 32 rows), for
/// each of `groups` ≥ ⌈kc/4⌉ groups of 4 columns, 16 rows × 4 bytes (64
/// bytes); a short last group, and the groups after it, are zeros.
fn pack_columns(
    n: usize,
    kc: usize,
    groups: usize,
    x: &[u8],
    ldx: usize,
    out: &mut Vec<u8>,
    parallel: bool,
) {
    let blocks = n.div_ceil(NR) * (NR / 16);
    out.clear();
    out.resize(blocks * groups * 64, 0);
    let pack = |(jb, dst): (usize, &mut [u8])| {
        let mut high = 0u32;
        let full = kc / 4;
        for jj in 0..16 {
            let j = jb * 16 + jj;
            if j >= n {
                break;
            }
            let row = &x[j * ldx..j * ldx + kc];
            // Four bytes at a time: whole groups as words.
            for (g, quad) in row[..4 * full].chunks_exact(4).enumerate() {
                let w = u32::from_ne_bytes([quad[0], quad[1], quad[2], quad[3]]);
                dst[g * 64 + jj * 4..g * 64 + jj * 4 + 4].copy_from_slice(&w.to_ne_bytes());
                high |= w;
            }
            for (q, &v) in row[4 * full..].iter().enumerate() {
                dst[full * 64 + jj * 4 + q] = v;
                high |= v as u32;
            }
        }
        (high & 0x8080_8080 != 0) as u8 * 128
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

#[cfg(target_arch = "x86_64")]
mod amx {
    use super::{SendPtr, AMX_B};
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// The 32 × 32 block of X Xᵀ over the kp columns of 32 rows of X (`a`,
    /// rows of kp bytes lda apart) and the packed panel of 32 columns (`b`:
    /// two blocks of 16 columns, each kp/4 rows of 64 bytes), into `sums`
    /// (row-major).
    /// Tiles: sums 0–3 (rows 0–15 × columns 0–15, 0–15 × 16–31, 16–31 ×
    /// 0–15, 16–31 × 16–31), rows 4–5, columns 6–7.
    ///
    /// # Safety
    /// The tiles are configured as [`crate::amx::Tiles`] does; kp is a
    /// multiple of 64; `a` holds 31 · lda + kp bytes and `b` 32 · kp.
    #[inline]
    pub(super) unsafe fn block(
        a: &[u8],
        lda: usize,
        kp: usize,
        b: &[u8],
        sums: &mut [i32; AMX_B * AMX_B],
    ) {
        debug_assert!(kp.is_multiple_of(64) && a.len() >= 31 * lda + kp && b.len() >= 32 * kp);
        let a0 = a.as_ptr();
        let a1 = a0.add(16 * lda);
        let b0 = b.as_ptr();
        let b1 = b0.add(16 * kp);
        crate::amx::zero_sums();
        for s in 0..kp / 64 {
            // 64 columns of X: 64 bytes of each row, 16 groups of the panel.
            asm!(
                "tileloadd tmm4, [{a0} + {lda}*1]",
                "tileloadd tmm5, [{a1} + {lda}*1]",
                "tileloadd tmm6, [{b0} + {ldb}*1]",
                "tileloadd tmm7, [{b1} + {ldb}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a0 = in(reg) a0.add(64 * s),
                a1 = in(reg) a1.add(64 * s),
                b0 = in(reg) b0.add(1024 * s),
                b1 = in(reg) b1.add(1024 * s),
                lda = in(reg) lda,
                ldb = in(reg) 64usize,
                options(nostack, readonly, preserves_flags)
            );
        }
        let out = sums.as_mut_ptr() as *mut u8;
        crate::amx::store_sums(out, 128);
    }

    /// Adds `sums` (rows r0..r1 × columns j0..j0+32 of X Xᵀ) into C where
    /// j ≤ i and j < n.
    ///
    /// # Safety
    /// AVX-512 is available; rows r0..r1 of C (ldc ≥ n) exist, and no other
    /// thread writes them.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_lower(
        sums: &[i32; AMX_B * AMX_B],
        r0: usize,
        r1: usize,
        j0: usize,
        n: usize,
        c: SendPtr<i32>,
        ldc: usize,
    ) {
        let cp = c.get();
        for i in r0..r1 {
            let s = sums.as_ptr().add((i - r0) * AMX_B);
            let dst = cp.add(i * ldc + j0);
            let end = (i + 1).min(n).min(j0 + AMX_B);
            if end <= j0 {
                continue;
            }
            let len = end - j0;
            let m0: __mmask16 = if len >= 16 { !0 } else { (1u16 << len) - 1 };
            let m1: __mmask16 = if len >= 32 {
                !0
            } else if len > 16 {
                (1u16 << (len - 16)) - 1
            } else {
                0
            };
            let v0 = _mm512_loadu_si512(s as *const __m512i);
            let v1 = _mm512_loadu_si512(s.add(16) as *const __m512i);
            let c0 = _mm512_maskz_loadu_epi32(m0, dst);
            _mm512_mask_storeu_epi32(dst, m0, _mm512_add_epi32(c0, v0));
            if m1 != 0 {
                let c1 = _mm512_maskz_loadu_epi32(m1, dst.add(16));
                _mm512_mask_storeu_epi32(dst.add(16), m1, _mm512_add_epi32(c1, v1));
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod amx {
    use super::{SendPtr, AMX_B};
    pub(super) unsafe fn block(
        _: &[u8],
        _: usize,
        _: usize,
        _: &[u8],
        _: &mut [i32; AMX_B * AMX_B],
    ) {
        unreachable!("AMX exists only on x86-64")
    }
    pub(super) unsafe fn add_lower(
        _: &[i32; AMX_B * AMX_B],
        _: usize,
        _: usize,
        _: usize,
        _: usize,
        _: SendPtr<i32>,
        _: usize,
    ) {
        unreachable!("AMX exists only on x86-64")
    }
}
