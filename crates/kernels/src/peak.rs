//! The machine's measured peak for each path: multiply-adds on registers
//! only, with enough independent chains to hide the instruction's latency,
//! on every thread at once. `genocnn bench kernels` divides a kernel's
//! GFLOP/s by its path's peak.
//!
//! A multiply-add counts 2 flops; `vdpbf16ps` does 32 of them per
//! 512-bit instruction (two bf16 products per f32 lane), so its peak is
//! counted the same way as the bf16 kernels count theirs.

use std::time::Instant;

use rayon::prelude::*;

use crate::gram::Int8Path;
use crate::simd::SimdPath;

/// Independent accumulator chains per thread.
const CHAINS: usize = 12;

/// Int8 products of one round of the AMX probe: four `tdpbusd` (16 × 64
/// times 64 × 16) into four resident sum tiles, as the Gram kernel's tile
/// block issues them.
const AMX_PRODUCTS: usize = 4 * 16 * 16 * 64;

/// Flops of one round of the probe on `path`: `CHAINS` multiply-add
/// instructions of the path's width.
fn flops_per_round(path: SimdPath) -> f64 {
    if path == SimdPath::AmxBf16 {
        // Four `tdpbf16ps`, each 16 × 16 sums of 32 products.
        return (4 * 16 * 16 * 32 * 2) as f64;
    }
    let products = if path.is_bf16() { 2 } else { 1 };
    (CHAINS * 2 * products * probe_lanes(path)) as f64
}

/// f32 lanes of the probe on `path`. The scalar path's code is compiled
/// for baseline x86-64, whose compiler widens loops to SSE2's 4 lanes
/// (multiply and add, no FMA), so its probe does the same: the peak that
/// path can reach, not one lane's.
fn probe_lanes(path: SimdPath) -> usize {
    match path {
        #[cfg(target_arch = "x86_64")]
        SimdPath::Scalar => 4,
        p => p.lanes(),
    }
}

/// Runs `rounds` rounds of the probe on this thread and returns a value
/// that depends on every chain (so that nothing is optimized away).
fn probe(path: SimdPath, rounds: usize) -> f32 {
    match path {
        #[cfg(target_arch = "x86_64")]
        SimdPath::Scalar => unsafe { x86::mul_add128(rounds) },
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2 => unsafe { x86::fma256(rounds) },
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => unsafe { x86::fma512(rounds) },
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512Bf16 => unsafe { x86::dpbf16(rounds) },
        // SAFETY: the path is available (the callers assert it), and no
        // other tile configuration is alive on a thread that runs a probe.
        #[cfg(target_arch = "x86_64")]
        SimdPath::AmxBf16 => unsafe { x86::tdpbf16ps(rounds) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => scalar(rounds),
    }
}

/// Chain `k`'s starting value: the chains differ, so that no compiler
/// can merge them into one.
fn start(k: usize) -> f32 {
    k as f32 * 1e-3
}

/// One f32 at a time, where there is no x86 vector unit.
#[cfg(not(target_arch = "x86_64"))]
#[inline(never)]
fn scalar(rounds: usize) -> f32 {
    let mut acc: [f32; CHAINS] = std::array::from_fn(start);
    let (a, b) = (
        std::hint::black_box(0.999_f32),
        std::hint::black_box(1e-3_f32),
    );
    for _ in 0..rounds {
        for c in &mut acc {
            *c = *c * a + b;
        }
        // One opaque step per round keeps the compiler from widening the
        // chains into vectors, which the scalar path does not have.
        acc[0] = std::hint::black_box(acc[0]);
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{start, CHAINS};
    use std::arch::x86_64::*;

    /// SSE2 (baseline x86-64): a multiply, then an add.
    pub(super) unsafe fn mul_add128(rounds: usize) -> f32 {
        let a = _mm_set1_ps(std::hint::black_box(0.999));
        let b = _mm_set1_ps(std::hint::black_box(1e-3));
        let mut acc: [__m128; CHAINS] = std::array::from_fn(|k| _mm_set1_ps(start(k)));
        for _ in 0..rounds {
            for c in &mut acc {
                *c = _mm_add_ps(_mm_mul_ps(*c, a), b);
            }
        }
        let mut s = _mm_setzero_ps();
        for c in acc {
            s = _mm_add_ps(s, c);
        }
        let mut out = [0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma256(rounds: usize) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-3));
        let mut acc: [__m256; CHAINS] = std::array::from_fn(|k| _mm256_set1_ps(start(k)));
        for _ in 0..rounds {
            for c in &mut acc {
                *c = _mm256_fmadd_ps(*c, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for c in acc {
            s = _mm256_add_ps(s, c);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), s);
        out.iter().sum()
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma512(rounds: usize) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-3));
        let mut acc: [__m512; CHAINS] = std::array::from_fn(|k| _mm512_set1_ps(start(k)));
        for _ in 0..rounds {
            for c in &mut acc {
                *c = _mm512_fmadd_ps(*c, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for c in acc {
            s = _mm512_add_ps(s, c);
        }
        _mm512_reduce_add_ps(s)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn dpbf16(rounds: usize) -> f32 {
        let x = _mm512_set1_ps(std::hint::black_box(0.5));
        let y = _mm512_set1_ps(std::hint::black_box(1e-3));
        let a: __m512bh = _mm512_cvtne2ps_pbh(x, x);
        let b: __m512bh = _mm512_cvtne2ps_pbh(y, y);
        let mut acc: [__m512; CHAINS] = std::array::from_fn(|k| _mm512_set1_ps(start(k)));
        for _ in 0..rounds {
            for c in &mut acc {
                *c = _mm512_dpbf16_ps(*c, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for c in acc {
            s = _mm512_add_ps(s, c);
        }
        _mm512_reduce_add_ps(s)
    }

    /// `vpdpbusd`: per int32 lane, c ← c + Σ of 4 byte products (1 · 1).
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn dpbusd(rounds: usize) -> i64 {
        let a = _mm512_set1_epi8(std::hint::black_box(1));
        let mut acc: [__m512i; CHAINS] =
            std::array::from_fn(|k| _mm512_set1_epi32(std::hint::black_box(k as i32)));
        for _ in 0..rounds {
            for c in &mut acc {
                *c = _mm512_dpbusd_epi32(*c, a, a);
            }
        }
        acc.iter()
            .map(|&c| {
                let mut out = [0i32; 16];
                _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, c);
                out.iter().map(|&v| v as i64).sum::<i64>()
            })
            .sum()
    }

    /// Four sum tiles (tmm0–3) gain, per round, the products of two tiles
    /// (tmm4–5) of `ones` with two others (tmm6–7), by `tdpbusd` (INT8: 64
    /// products of bytes 1 · 1 per sum) or `tdpbf16ps` (32 of bf16 1.0 ·
    /// 1.0); the sums come back as bits (int32 or f32), 32 × 32.
    ///
    /// # Safety
    /// The AMX path (int8 or bf16) is available and granted, and no
    /// [`crate::amx::Tiles`] is alive on this thread.
    unsafe fn amx_probe<const INT8: bool>(ones: &[u8; 1024], rounds: usize) -> [u32; 1024] {
        let _tiles = crate::amx::Tiles::new();
        let mut sums = [0u32; 1024];
        crate::amx::zero_sums();
        std::arch::asm!(
            "tileloadd tmm4, [{p} + {ld}*1]",
            "tileloadd tmm5, [{p} + {ld}*1]",
            "tileloadd tmm6, [{p} + {ld}*1]",
            "tileloadd tmm7, [{p} + {ld}*1]",
            p = in(reg) ones.as_ptr(),
            ld = in(reg) 64usize,
            options(nostack, readonly, preserves_flags)
        );
        for _ in 0..rounds {
            if INT8 {
                std::arch::asm!(
                    "tdpbusd tmm0, tmm4, tmm6",
                    "tdpbusd tmm1, tmm4, tmm7",
                    "tdpbusd tmm2, tmm5, tmm6",
                    "tdpbusd tmm3, tmm5, tmm7",
                    options(nostack, nomem, preserves_flags)
                );
            } else {
                std::arch::asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem, preserves_flags)
                );
            }
        }
        crate::amx::store_sums(sums.as_mut_ptr() as *mut u8, 128);
        sums
    }

    /// AMX `tdpbf16ps` ([`amx_probe`]): the sum of the four tiles' sums.
    ///
    /// # Safety
    /// AMX-BF16 is available and granted, and no [`crate::amx::Tiles`] is
    /// alive on this thread.
    pub(super) unsafe fn tdpbf16ps(rounds: usize) -> f32 {
        let ones: [u8; 1024] = core::array::from_fn(|b| if b % 2 == 1 { 0x3f } else { 0x80 });
        amx_probe::<false>(&ones, rounds)
            .iter()
            .map(|&b| f32::from_bits(b))
            .sum()
    }

    /// AMX `tdpbusd` ([`amx_probe`]): the sum of the four tiles' int32 sums.
    ///
    /// # Safety
    /// AMX-INT8 is available and granted, and no [`crate::amx::Tiles`] is
    /// alive on this thread.
    pub(super) unsafe fn tdpbusd(rounds: usize) -> i64 {
        amx_probe::<true>(&[1u8; 1024], rounds)
            .iter()
            .map(|&b| b as i32 as i64)
            .sum()
    }
}

/// The peak GFLOP/s of `path` on the current rayon pool: every thread runs
/// the probe at once for about `seconds`, and the best of three trials is
/// kept (a shared machine only ever slows a trial down).
///
/// # Panics
/// If the path is not available on this CPU.
pub fn peak_gflops(path: SimdPath, seconds: f64) -> f64 {
    assert!(path.is_available(), "SIMD path {path} is not available");
    peak_of(|rounds| probe(path, rounds), flops_per_round(path), seconds)
}

/// The peak rate of int8 products (each a multiply and an add into an
/// int32 sum; `vpdpbusd` does 64 per 512-bit instruction) of `path`, in
/// billions per second, measured as [`peak_gflops`] is.
///
/// # Panics
/// If the path is not available on this CPU.
pub fn peak_int8_gproducts(path: Int8Path, seconds: f64) -> f64 {
    assert!(path.is_available(), "int8 path {path} is not available");
    let per_round = match path {
        Int8Path::Avx512Vnni => CHAINS * 64,
        Int8Path::Amx => AMX_PRODUCTS,
    };
    let probe = |rounds| match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path is available (asserted above).
        Int8Path::Avx512Vnni => unsafe { x86::dpbusd(rounds) as f32 },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the path is available (asserted above), and no other
        // tile configuration is alive on a thread that runs a probe.
        Int8Path::Amx => unsafe { x86::tdpbusd(rounds) as f32 },
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("int8 paths exist only on x86-64"),
    };
    peak_of(probe, per_round as f64, seconds)
}

/// The best of three trials of `probe` on every thread of the pool at once,
/// each about `seconds` long, in billions of `per_round` units per second.
fn peak_of(probe: impl Fn(usize) -> f32 + Sync, per_round: f64, seconds: f64) -> f64 {
    // Calibrate: rounds that take about `seconds` on one thread.
    let mut rounds = 1 << 12;
    loop {
        let t = Instant::now();
        std::hint::black_box(probe(rounds));
        let s = t.elapsed().as_secs_f64();
        if s > seconds / 4.0 || rounds > 1 << 34 {
            rounds = ((rounds as f64) * seconds / s.max(1e-9)) as usize;
            break;
        }
        rounds *= 4;
    }
    let threads = rayon::current_num_threads();
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|_| probe(rounds)).sum();
        std::hint::black_box(sink);
        let s = t.elapsed().as_secs_f64();
        best = best.max(threads as f64 * rounds as f64 * per_round / s / 1e9);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each available path's probe gives the value of its chains computed
    /// naively: chain k starts at k·10⁻³ and takes c ← c·a + b (bf16:
    /// c ← c + 2·0.5·10⁻³ per lane, the operands rounded to bf16), `rounds`
    /// times; the result is the sum over chains and lanes.
    #[test]
    fn probes_compute_what_they_claim() {
        let rounds = 50;
        let fma = |k: usize| (0..rounds).fold(start(k) as f64, |c, _| c * 0.999 + 1e-3);
        let r = |x: f32| crate::bf16::round(x) as f64;
        let dot = |k: usize| start(k) as f64 + rounds as f64 * 2.0 * r(0.5) * r(1e-3);
        for path in [
            SimdPath::Scalar,
            SimdPath::Avx2,
            SimdPath::Avx512,
            SimdPath::Avx512Bf16,
        ] {
            if !path.is_available() {
                continue;
            }
            let got = probe(path, rounds) as f64;
            let lanes = probe_lanes(path) as f64;
            let want: f64 = (0..CHAINS)
                .map(|k| if path.is_bf16() { dot(k) } else { fma(k) })
                .sum::<f64>()
                * lanes;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "{path}: {got} vs {want}"
            );
        }
    }

    /// The AMX bf16 probe: 4 tiles of 256 f32 sums, each gaining 32
    /// products of 1 · 1 per round (exact in f32 at these sizes).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_amx_bf16_probe_computes_what_it_claims() {
        if !SimdPath::AmxBf16.is_available() {
            eprintln!("skipped: no AMX-BF16 on this CPU (or not granted)");
            return;
        }
        for rounds in [0, 1, 50] {
            // SAFETY: AMX-BF16 is available (checked above).
            let got = unsafe { x86::tdpbf16ps(rounds) };
            assert_eq!(got, (4 * 256 * 32 * rounds) as f32);
            assert_eq!(probe(SimdPath::AmxBf16, rounds), got);
        }
    }

    /// The AMX int8 probe: 4 tiles of 256 sums, each gaining 64 products of
    /// 1 · 1 per round.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_amx_int8_probe_computes_what_it_claims() {
        if !Int8Path::Amx.is_available() {
            eprintln!("skipped: no AMX-INT8 on this CPU (or not granted)");
            return;
        }
        for rounds in [0, 1, 50] {
            // SAFETY: AMX-INT8 is available (checked above).
            let got = unsafe { x86::tdpbusd(rounds) };
            assert_eq!(got, 4 * 256 * 64 * rounds as i64);
        }
    }

    /// The int8 probe: chain k starts at k in each of 16 lanes and gains
    /// 4 products of 1 · 1 per round.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_int8_probe_computes_what_it_claims() {
        if !Int8Path::Avx512Vnni.is_available() {
            eprintln!("skipped: no AVX512-VNNI on this CPU");
            return;
        }
        let rounds = 50;
        // SAFETY: VNNI is available (checked above).
        let got = unsafe { x86::dpbusd(rounds) };
        let want: i64 = (0..CHAINS as i64)
            .map(|k| 16 * (k + 4 * rounds as i64))
            .sum();
        assert_eq!(got, want);
    }
}
