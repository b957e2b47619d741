//! Run-time SIMD dispatch. Each kernel body is written once, generic over
//! pulp's `Simd`, and runs on the best path this CPU offers: AVX-512
//! (x86-64-v4), AVX2 + FMA (x86-64-v3), or the portable scalar path (also
//! NEON on aarch64, through pulp). The path can be forced with the
//! environment variable `GENOCNN_SIMD=avx512|avx2|scalar`, or per thread
//! with [`with_path`], so that tests can run and compare every path.
//!
//! Two paths change the numbers: [`SimdPath::Avx512Bf16`] runs the matrix
//! products (convolutions, dense layers and their gradients) with bf16
//! operands and f32 sums (`vdpbf16ps`, see [`crate::bf16`]), and everything
//! else as [`SimdPath::Avx512`]; [`SimdPath::AmxBf16`] is the same with the
//! products of [`gemm_rows`](crate::gemm::gemm_rows) (convolutions and their
//! input gradients, dense input gradients) on the AMX tile unit
//! (`tdpbf16ps`). They are never chosen by detection: a backend asks for
//! bf16 ([`Precision::Bf16`]: the command line's `--precision bf16`, or its
//! default `auto` where [`Precision::preferred`] says bf16), which takes
//! AMX where the CPU has it and Linux grants it, or
//! `GENOCNN_SIMD=amxbf16|avx512bf16` forces one.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use pulp::{Simd, WithSimd};

/// An instruction-set path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdPath {
    /// Portable code, one lane at a time.
    Scalar,
    /// AVX2 with FMA: 8 f32 lanes.
    Avx2,
    /// AVX-512: 16 f32 lanes.
    Avx512,
    /// AVX-512, with the matrix products in bf16 (f32 accumulation).
    Avx512Bf16,
    /// As [`SimdPath::Avx512Bf16`], with the products of row-offset matrix
    /// products (convolutions) on the AMX tile unit.
    AmxBf16,
}

impl fmt::Display for SimdPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SimdPath::Scalar => "scalar",
            SimdPath::Avx2 => "avx2",
            SimdPath::Avx512 => "avx512",
            SimdPath::Avx512Bf16 => "avx512bf16",
            SimdPath::AmxBf16 => "amxbf16",
        })
    }
}

impl FromStr for SimdPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "scalar" | "portable" => Ok(SimdPath::Scalar),
            "avx2" | "v3" => Ok(SimdPath::Avx2),
            "avx512" | "avx-512" | "v4" => Ok(SimdPath::Avx512),
            "avx512bf16" | "bf16" => Ok(SimdPath::Avx512Bf16),
            "amxbf16" | "amx" => Ok(SimdPath::AmxBf16),
            other => Err(format!(
                "unknown SIMD path '{other}'; expected amxbf16, avx512bf16, avx512, avx2 or scalar"
            )),
        }
    }
}

impl SimdPath {
    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            SimdPath::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => pulp::x86::V3::try_new().is_some(),
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 => pulp::x86::V4::try_new().is_some(),
            SimdPath::Avx512Bf16 => crate::bf16::available(),
            SimdPath::AmxBf16 => crate::bf16::available() && crate::amx::bf16_available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The f32 paths this CPU can run, best first (the paths that give
    /// f32 results; the bf16 paths are not among them).
    pub fn available() -> Vec<SimdPath> {
        [SimdPath::Avx512, SimdPath::Avx2, SimdPath::Scalar]
            .into_iter()
            .filter(|p| p.is_available())
            .collect()
    }

    /// The best path this CPU offers.
    pub fn detect() -> SimdPath {
        Self::available()[0]
    }

    /// Whether the matrix products of this path round their operands to bf16.
    pub fn is_bf16(self) -> bool {
        matches!(self, SimdPath::Avx512Bf16 | SimdPath::AmxBf16)
    }

    /// The bf16 paths this CPU can run, best first.
    pub fn available_bf16() -> Vec<SimdPath> {
        [SimdPath::AmxBf16, SimdPath::Avx512Bf16]
            .into_iter()
            .filter(|p| p.is_available())
            .collect()
    }

    /// The f32 path this one runs everything but its matrix products on.
    pub fn fp32(self) -> SimdPath {
        match self {
            SimdPath::Avx512Bf16 | SimdPath::AmxBf16 => SimdPath::Avx512,
            p => p,
        }
    }

    /// The path in force for this thread: a [`with_path`] override, else
    /// `GENOCNN_SIMD` (when available), else the best detected.
    pub fn current() -> SimdPath {
        Self::forced().unwrap_or_else(Self::detect)
    }

    /// The path forced on this thread, by a [`with_path`] override or by
    /// `GENOCNN_SIMD` (when available); `None` when the path is detected.
    pub fn forced() -> Option<SimdPath> {
        if let Some(p) = OVERRIDE.with(Cell::get) {
            return Some(p);
        }
        *FORCED.get_or_init(|| {
            let v = std::env::var("GENOCNN_SIMD").ok()?;
            match v.parse::<SimdPath>() {
                Ok(p) if p.is_available() => Some(p),
                Ok(p) => {
                    eprintln!(
                        "warning: GENOCNN_SIMD={p} is not available on this CPU; using {}",
                        Self::detect()
                    );
                    None
                }
                Err(e) => {
                    eprintln!("warning: GENOCNN_SIMD: {e}; using {}", Self::detect());
                    None
                }
            }
        })
    }

    /// f32 lanes per vector on this path.
    pub fn lanes(self) -> usize {
        match self {
            SimdPath::Scalar => 1,
            SimdPath::Avx2 => 8,
            SimdPath::Avx512 | SimdPath::Avx512Bf16 | SimdPath::AmxBf16 => 16,
        }
    }

    /// Runs `op` on this path.
    ///
    /// # Panics
    /// If the path is not available on this CPU.
    #[inline(always)]
    pub fn dispatch<Op: WithSimd>(self, op: Op) -> Op::Output {
        match self {
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx512 | SimdPath::Avx512Bf16 | SimdPath::AmxBf16 => Simd::vectorize(
                pulp::x86::V4::try_new().expect("AVX-512 is not available on this CPU"),
                op,
            ),
            #[cfg(target_arch = "x86_64")]
            SimdPath::Avx2 => Simd::vectorize(
                pulp::x86::V3::try_new().expect("AVX2/FMA is not available on this CPU"),
                op,
            ),
            #[cfg(not(target_arch = "x86_64"))]
            SimdPath::Avx512 | SimdPath::Avx512Bf16 | SimdPath::AmxBf16 | SimdPath::Avx2 => {
                pulp::Arch::new().dispatch(op)
            }
            SimdPath::Scalar => Simd::vectorize(pulp::Scalar::new(), op),
        }
    }
}

/// The number format of the matrix products: f32, or bf16 operands with
/// f32 sums (`--precision`). Weights, optimizer state and every other
/// operation stay f32 either way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

impl Precision {
    /// The path that runs this precision, or why this CPU has none: bf16
    /// needs AVX512-BF16 (Intel Cooper Lake and Sapphire Rapids on, AMD Zen 4
    /// on), and takes the AMX tiles where the CPU has them (Sapphire Rapids
    /// on) unless `base`, the path in force, is a forced bf16 path. `Fp32`
    /// keeps `base`'s f32 path.
    pub fn path(self, base: SimdPath) -> Result<SimdPath, String> {
        match self {
            Precision::Fp32 => Ok(base.fp32()),
            Precision::Bf16 if base.is_bf16() => Ok(base),
            Precision::Bf16 if SimdPath::AmxBf16.is_available() => Ok(SimdPath::AmxBf16),
            Precision::Bf16 if SimdPath::Avx512Bf16.is_available() => Ok(SimdPath::Avx512Bf16),
            Precision::Bf16 => Err(
                "bf16 matrix products need a CPU with AVX512-BF16, which this one lacks; \
                 use --precision fp32"
                    .into(),
            ),
        }
    }

    /// The precision chosen where none is asked for (`--precision auto`):
    /// bf16 where this CPU has AVX512-BF16, unless an f32 path is forced
    /// ([`with_path`], `GENOCNN_SIMD`); a forced bf16 path gives bf16.
    pub fn preferred() -> Precision {
        let bf16 = match SimdPath::forced() {
            Some(p) => p.is_bf16(),
            None => SimdPath::Avx512Bf16.is_available(),
        };
        if bf16 {
            Precision::Bf16
        } else {
            Precision::Fp32
        }
    }
}

static FORCED: OnceLock<Option<SimdPath>> = OnceLock::new();

thread_local! {
    static OVERRIDE: Cell<Option<SimdPath>> = const { Cell::new(None) };
}

/// Runs `f` with `path` forced on this thread (kernels read the path on the
/// calling thread and carry it into their worker threads).
///
/// # Panics
/// If the path is not available on this CPU.
pub fn with_path<R>(path: SimdPath, f: impl FnOnce() -> R) -> R {
    assert!(
        path.is_available(),
        "SIMD path {path} is not available on this CPU"
    );
    with_override(&OVERRIDE, Some(path), f)
}

/// Runs `f` with `cell` (a thread's override of some choice) set to
/// `value`, and puts the previous value back afterwards, also when `f`
/// panics (caught further up, as a test harness or a worker pool does), so
/// that no choice stays forced on the thread.
pub(crate) fn with_override<T: Copy + 'static, R>(
    cell: &'static std::thread::LocalKey<Cell<T>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static std::thread::LocalKey<Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|o| o.set(self.1));
        }
    }
    let _restore = Restore(cell, cell.with(|o| o.replace(value)));
    f()
}

/// Unaligned load of one vector from `p`.
///
/// # Safety
/// `p..p + S::F32_LANES` must be readable.
#[inline(always)]
pub(crate) unsafe fn loadu<S: Simd>(p: *const f32) -> S::f32s {
    core::ptr::read_unaligned(p as *const S::f32s)
}

/// Unaligned store of one vector to `p`.
///
/// # Safety
/// `p..p + S::F32_LANES` must be writable.
#[inline(always)]
pub(crate) unsafe fn storeu<S: Simd>(p: *mut f32, v: S::f32s) {
    core::ptr::write_unaligned(p as *mut S::f32s, v)
}

/// Streaming (non-temporal) store of one vector to `p`, which skips the
/// caches: `vmovntps` for 16 and 8 lanes, an ordinary store otherwise. The
/// caller fences (`sfence`) before another thread reads what it wrote.
///
/// # Safety
/// `p..p + S::F32_LANES` must be writable, and `p` aligned to the vector's
/// width (64 bytes for 16 lanes, 32 for 8).
#[inline(always)]
pub(crate) unsafe fn stream_store<S: Simd>(p: *mut f32, v: S::f32s) {
    debug_assert_eq!(p as usize % (4 * S::F32_LANES), 0, "unaligned stream");
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::*;
        if S::F32_LANES == 16 {
            return _mm512_stream_ps(p, core::mem::transmute_copy::<S::f32s, __m512>(&v));
        }
        if S::F32_LANES == 8 {
            return _mm256_stream_ps(p, core::mem::transmute_copy::<S::f32s, __m256>(&v));
        }
    }
    storeu::<S>(p, v)
}

/// [`stream_store`] of an AVX-512 vector.
///
/// # Safety
/// As [`stream_store`]: `p` writable for 16 values and 64-byte aligned, on
/// a CPU with AVX-512.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn stream_store_avx512(p: *mut f32, v: core::arch::x86_64::__m512) {
    debug_assert_eq!(p as usize % 64, 0, "unaligned stream");
    core::arch::x86_64::_mm512_stream_ps(p, v)
}

/// A raw pointer that may cross threads; the kernels hand disjoint parts of
/// one output to different threads.
pub(crate) struct SendPtr<T = f32>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole wrapper).
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Lane permutations and masks shared by the AVX-512 kernels that split and
/// interleave pairs of vectors (2 × 2 and 1D pooling of pairs).
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use std::arch::x86_64::__mmask16;

    /// Lanes 0, 2, …, 30 of two vectors (`vpermt2ps` indices): their even elements.
    pub(crate) const EVEN: [i32; 16] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
    /// Lanes 1, 3, …, 31 of two vectors: their odd elements.
    pub(crate) const ODD: [i32; 16] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];
    /// The first halves of two vectors interleaved (a0, b0, a1, b1, …).
    pub(crate) const LOW: [i32; 16] = [0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23];
    /// Their second halves interleaved (a8, b8, …, a15, b15).
    pub(crate) const HIGH: [i32; 16] =
        [8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31];

    /// The mask of the first min(n, 16) lanes.
    pub(crate) fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }
}
