//! Intel AMX (Advanced Matrix Extensions): whether this CPU has the tile
//! unit and Linux grants this process its state, and the tile
//! configuration the kernels load.
//!
//! The tile unit holds eight tiles (`tmm0`–`tmm7`) of up to 16 rows × 64
//! bytes. One `tdpbusd` adds a 16 × 64 byte matrix times a 64 × 16 one
//! (int8 products, int32 sums) into a 16 × 16 int32 tile; one `tdpbf16ps`
//! a 16 × 32 bf16 matrix times a 32 × 16 one into 16 × 16 f32 sums. The
//! second operand is stored in VNNI order: row `r` of its tile holds, for
//! each of the 16 columns, the 4 bytes (or 2 bf16) of rows 4r..4r+4 (2r..2r+2).
//!
//! Stable Rust has no AMX intrinsics, so the instructions are written with
//! `asm!` (LLVM's assembler knows them). Linux hands out the tile state only
//! on request: `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once
//! per process, before the first tile instruction (without it that
//! instruction kills the process with SIGILL). Where the CPU lacks the unit
//! or the kernel refuses, [`int8_available`] and [`bf16_available`] say no
//! and the callers keep their AVX-512 paths.

/// Whether this CPU has AMX-INT8 (`tdpbusd`) and AVX-512 (for the code
/// around the tiles), and Linux has granted this process the tile state.
pub fn int8_available() -> bool {
    imp::granted() && imp::cpu_has(imp::AMX_INT8)
}

/// Whether this CPU has AMX-BF16 (`tdpbf16ps`) and AVX-512, and Linux has
/// granted this process the tile state.
pub fn bf16_available() -> bool {
    imp::granted() && imp::cpu_has(imp::AMX_BF16)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use std::sync::OnceLock;

    /// CPUID leaf 7, subleaf 0, EDX bits.
    pub(super) const AMX_BF16: u32 = 1 << 22;
    const AMX_TILE: u32 = 1 << 24;
    pub(super) const AMX_INT8: u32 = 1 << 25;

    /// Whether the CPU has all of `bits` (and AVX-512). CPUID is asked once:
    /// under a hypervisor each CPUID leaves the guest, and the kernels ask
    /// on every call (`SimdPath::is_available`; 1% of LeNet-5's training
    /// time on the Xeon's VM, by `perf`, when it asked each time).
    #[allow(unused_unsafe)]
    pub(super) fn cpu_has(bits: u32) -> bool {
        static EDX: OnceLock<u32> = OnceLock::new();
        let edx = *EDX.get_or_init(|| {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that has
                // AVX-512, which is checked first.
                unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx
            } else {
                0
            }
        });
        edx & bits == bits
    }

    /// Asks Linux, once, for the tile state; whether it was granted.
    pub(super) fn granted() -> bool {
        static GRANTED: OnceLock<bool> = OnceLock::new();
        *GRANTED.get_or_init(|| {
            if !cpu_has(AMX_TILE) {
                return false;
            }
            const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
            const XFEATURE_XTILEDATA: libc::c_long = 18;
            // SAFETY: arch_prctl with this code only changes which extended
            // state the kernel will save for this process; it returns
            // an error (EINVAL, EPERM) where it refuses.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_arch_prctl,
                    ARCH_REQ_XCOMP_PERM,
                    XFEATURE_XTILEDATA,
                )
            };
            r == 0
        })
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub(super) const AMX_BF16: u32 = 0;
    pub(super) const AMX_INT8: u32 = 0;
    pub(super) fn cpu_has(_: u32) -> bool {
        false
    }
    pub(super) fn granted() -> bool {
        false
    }
}

/// The tile configuration (`ldtilecfg`'s 64 bytes): palette 1, and every
/// one of the eight tiles 16 rows × 64 bytes.
#[cfg(target_arch = "x86_64")]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// The tile unit, configured with eight tiles of 16 rows × 64 bytes, for
/// the life of this value on this thread; dropping it releases the tile
/// state (`tilerelease`), so that the thread's context switches stop saving
/// it.
#[cfg(target_arch = "x86_64")]
pub(crate) struct Tiles(std::marker::PhantomData<*const ()>);

#[cfg(target_arch = "x86_64")]
impl Tiles {
    /// Configures the tiles on this thread, first asking Linux for the
    /// tile state if no caller has yet (a kernel called on an AMX path
    /// directly, without [`crate::SimdPath::is_available`], would
    /// otherwise die of SIGILL at its first tile instruction).
    ///
    /// # Panics
    /// If Linux refuses the tile state (or the CPU has no tiles).
    ///
    /// # Safety
    /// The CPU has the tile instructions the caller then issues, and no
    /// other [`Tiles`] is alive on this thread.
    pub(crate) unsafe fn new() -> Tiles {
        assert!(
            imp::granted(),
            "the AMX tile state is not available to this process (the CPU lacks the tiles or Linux refused them)"
        );
        let mut cfg = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            cfg.colsb[t] = 64;
            cfg.rows[t] = 16;
        }
        std::arch::asm!(
            "ldtilecfg [{cfg}]",
            cfg = in(reg) &cfg,
            options(nostack, readonly, preserves_flags),
        );
        Tiles(std::marker::PhantomData)
    }
}

#[cfg(target_arch = "x86_64")]
impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: the tiles were configured by `new` on this thread (the
        // value is not Send).
        unsafe { std::arch::asm!("tilerelease", options(nostack, nomem, preserves_flags)) };
    }
}

/// Zeroes the four sum tiles, tmm0–tmm3, of a 2 × 2 tile block.
///
/// # Safety
/// The tiles are configured ([`Tiles`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn zero_sums() {
    std::arch::asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem, preserves_flags)
    );
}

/// Loads the four sum tiles of a 2 × 2 tile block from one 32 × 32 block
/// of 4-byte sums at `from`, rows `ld` bytes apart, laid out as
/// [`store_sums`] stores them.
///
/// # Safety
/// The tiles are configured ([`Tiles`]); `from` has 31 · ld + 128 readable
/// bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn load_sums(from: *const u8, ld: usize) {
    std::arch::asm!(
        "tileloadd tmm0, [{f0} + {ld}*1]",
        "tileloadd tmm1, [{f1} + {ld}*1]",
        "tileloadd tmm2, [{f2} + {ld}*1]",
        "tileloadd tmm3, [{f3} + {ld}*1]",
        f0 = in(reg) from,
        f1 = in(reg) from.add(64),
        f2 = in(reg) from.add(16 * ld),
        f3 = in(reg) from.add(16 * ld + 64),
        ld = in(reg) ld,
        options(nostack, readonly, preserves_flags)
    );
}

/// Stores the four sum tiles of a 2 × 2 tile block as one 32 × 32 block of
/// 4-byte sums at `out`, rows `ld` bytes apart: tmm0 is rows 0–15 ×
/// columns 0–15, tmm1 rows 0–15 × columns 16–31, tmm2 rows 16–31 ×
/// columns 0–15, tmm3 rows 16–31 × columns 16–31.
///
/// # Safety
/// The tiles are configured ([`Tiles`]); `out` has 31 · ld + 128 writable
/// bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_sums(out: *mut u8, ld: usize) {
    store_four(
        out,
        out.add(64),
        out.add(16 * ld),
        out.add(16 * ld + 64),
        ld,
    );
}

/// Stores tmm0–tmm3 at o0–o3, rows `ld` bytes apart.
///
/// # Safety
/// The tiles are configured ([`Tiles`]); each of o0–o3 has 15 · ld + 64
/// writable bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_four(o0: *mut u8, o1: *mut u8, o2: *mut u8, o3: *mut u8, ld: usize) {
    std::arch::asm!(
        "tilestored [{o0} + {ld}*1], tmm0",
        "tilestored [{o1} + {ld}*1], tmm1",
        "tilestored [{o2} + {ld}*1], tmm2",
        "tilestored [{o3} + {ld}*1], tmm3",
        o0 = in(reg) o0,
        o1 = in(reg) o1,
        o2 = in(reg) o2,
        o3 = in(reg) o3,
        ld = in(reg) ld,
        options(nostack, preserves_flags)
    );
}

/// One step of a 2 × 2 tile block in bf16: A's two tiles of 16 rows (at a0
/// and a1, rows `lda` bytes apart) into tmm4 and tmm5, B's two (at b0 and
/// b1, rows `ldb` bytes apart) into tmm6 and tmm7, and their four products
/// (`tdpbf16ps`) added to the sum tiles tmm0–tmm3, laid out as
/// [`store_sums`] stores them.
///
/// # Safety
/// The tiles are configured ([`Tiles`]) and AMX-BF16 is available; each
/// operand has 15 rows of its stride and 64 bytes readable.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn bf16_step(
    a0: *const u8,
    a1: *const u8,
    lda: usize,
    b0: *const u8,
    b1: *const u8,
    ldb: usize,
) {
    std::arch::asm!(
        "tileloadd tmm4, [{a0} + {lda}*1]",
        "tileloadd tmm5, [{a1} + {lda}*1]",
        "tileloadd tmm6, [{b0} + {ldb}*1]",
        "tileloadd tmm7, [{b1} + {ldb}*1]",
        "tdpbf16ps tmm0, tmm4, tmm6",
        "tdpbf16ps tmm1, tmm4, tmm7",
        "tdpbf16ps tmm2, tmm5, tmm6",
        "tdpbf16ps tmm3, tmm5, tmm7",
        a0 = in(reg) a0,
        a1 = in(reg) a1,
        b0 = in(reg) b0,
        b1 = in(reg) b1,
        lda = in(reg) lda,
        ldb = in(reg) ldb,
        options(nostack, readonly, preserves_flags)
    );
}

/// Stores the four sum tiles as one 16 × 64 block of 4-byte sums at `out`,
/// rows `ld` bytes apart: tmm0 columns 0–15, tmm1 16–31, tmm2 32–47, tmm3
/// 48–63 (the layout of [`bf16_step_1x4`]).
///
/// # Safety
/// The tiles are configured ([`Tiles`]); `out` has 15 · ld + 256 writable
/// bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn store_sums_row(out: *mut u8, ld: usize) {
    store_four(out, out.add(64), out.add(128), out.add(192), ld);
}

/// One step of a 1 × 4 tile block in bf16: A's tile of 16 rows (at `a`,
/// rows `lda` bytes apart) into tmm4, and B's four tiles side by side (at
/// b, b + 64, b + 128 and b + 192, rows `ldb` bytes apart) in turn through
/// tmm5–tmm7, their products (`tdpbf16ps`) added to tmm0–tmm3, laid out as
/// [`store_sums_row`] stores them. For a block of 16 rows, where the 2 × 2
/// step of [`bf16_step`] would multiply A twice.
///
/// # Safety
/// The tiles are configured ([`Tiles`]) and AMX-BF16 is available; A has
/// 15 rows of its stride and 64 bytes readable, B 15 rows of its stride
/// and 256 bytes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn bf16_step_1x4(a: *const u8, lda: usize, b: *const u8, ldb: usize) {
    std::arch::asm!(
        "tileloadd tmm4, [{a} + {lda}*1]",
        "tileloadd tmm5, [{b0} + {ldb}*1]",
        "tileloadd tmm6, [{b1} + {ldb}*1]",
        "tdpbf16ps tmm0, tmm4, tmm5",
        "tileloadd tmm7, [{b2} + {ldb}*1]",
        "tdpbf16ps tmm1, tmm4, tmm6",
        "tileloadd tmm5, [{b3} + {ldb}*1]",
        "tdpbf16ps tmm2, tmm4, tmm7",
        "tdpbf16ps tmm3, tmm4, tmm5",
        a = in(reg) a,
        lda = in(reg) lda,
        b0 = in(reg) b,
        b1 = in(reg) b.add(64),
        b2 = in(reg) b.add(128),
        b3 = in(reg) b.add(192),
        ldb = in(reg) ldb,
        options(nostack, readonly, preserves_flags)
    );
}
