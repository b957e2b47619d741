//! The weight gradient of a stride-1 1D convolution with its input
//! channels in the vector lanes, for the fused convolution + pool's
//! backward pass on the AVX-512 f32 path:
//! dw[co, ci, t] += Σ_q dz[co, q] · x[ci, q + t·dil].
//!
//! The general kernel ([`gemm_dots`](crate::gemm::gemm_dots)) takes each
//! (co; ci, t) as a dot product along q: two loads per two multiply-adds'
//! worth of rows, most of them unaligned (x shifted by t), and every
//! accumulator reduced across its lanes at the end of each chunk. On the
//! genomic CNN's second layer (16 → 32 channels, 5 taps, 4,995 positions)
//! it ran at about half of the AVX-512 peak. Here the input is transposed
//! once per block into rows of one vector, row q holding x[ci, q] for 16
//! input channels, so that lane ci of a sum is dw[co, ci, t] itself:
//!
//! - per position q, the k rows q + t·dil are aligned loads, and one
//!   broadcast of dz[co, q] per output channel multiplies them;
//! - 4 output channels × up to 5 taps stay in 20 registers: 9 loads per
//!   20 multiply-adds;
//! - lanes are never reduced. Each sum runs over at most [`RUN`]
//!   positions in its register, then is added to a total, so that a long
//!   block (5,120 positions) does not sum 5,120 terms in one f32.

use crate::conv1d::Conv1dParams;
use crate::simd::SimdPath;

/// Output channels per block of sums.
const CO_BLOCK: usize = 4;
/// Taps per block of sums.
const T_BLOCK: usize = 5;
/// Positions summed in registers before they are added to the totals.
const RUN: usize = 512;

/// Whether [`weight_grad`] runs this convolution on `path`: the AVX-512
/// f32 path (the one measured), ungrouped, stride 1.
pub(crate) fn applies(p: &Conv1dParams, path: SimdPath) -> bool {
    cfg!(target_arch = "x86_64") && path == SimdPath::Avx512 && p.groups == 1 && p.stride == 1
}

/// Adds to `dw` (c_out × c_in × k) the weight gradient of `n` output
/// positions from q0: dz[co, q] is `dz[co·ldz + dz_off + q − q0]`, and
/// x[ci, j] is `xp[ci·lpad + j]` (the padded input). Always runs (true):
/// the form of the fused pass's weight-gradient kernels.
///
/// # Panics
/// If [`applies`] does not hold, or a slice is too short for the positions.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad(
    p: &Conv1dParams,
    dz: &[f32],
    ldz: usize,
    dz_off: usize,
    n: usize,
    xp: &[f32],
    lpad: usize,
    q0: usize,
    dw: &mut [f32],
) -> bool {
    assert!(
        applies(p, SimdPath::Avx512) && SimdPath::Avx512.is_available(),
        "conv1d_dw: not on this path"
    );
    let span = (p.k - 1) * p.dilation;
    assert!(p.c_out == 0 || (p.c_out - 1) * ldz + dz_off + n <= dz.len());
    assert!(p.c_in == 0 || (p.c_in - 1) * lpad + q0 + n + span <= xp.len());
    assert!(q0 + n + span <= lpad);
    assert_eq!(dw.len(), p.weight_len());
    if n == 0 {
        return true;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let rows = n + span;
        // The transposed input: 16 floats per row, from a 64-byte line.
        crate::scratch::with_scratch(rows * 16 + 16, |buf| {
            let xt = crate::scratch::line_aligned(buf, rows * 16);
            for cb in (0..p.c_in).step_by(16) {
                let cw = (p.c_in - cb).min(16);
                // SAFETY: AVX-512 is available (asserted); rows cb..cb + cw
                // of xp hold q0 + rows values (asserted above), xt rows × 16.
                unsafe {
                    imp::transpose_in(xp, lpad, cb, cw, q0, rows, xt);
                    imp::sums(p, dz, ldz, dz_off, n, xt, cb, cw, dw);
                }
            }
        })
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use super::{CO_BLOCK, RUN, T_BLOCK};
    use crate::conv1d::Conv1dParams;

    /// xt[r·16 + c] = xp[(cb + c)·lpad + q0 + r] for r < rows, c < cw, and
    /// 0 for c ≥ cw: 16 × 16 blocks loaded (masked at the tail), transposed
    /// in registers.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn transpose_in(
        xp: &[f32],
        lpad: usize,
        cb: usize,
        cw: usize,
        q0: usize,
        rows: usize,
        xt: &mut [f32],
    ) {
        let mut r0 = 0;
        while r0 < rows {
            let left = (rows - r0).min(16);
            let mask: __mmask16 = if left == 16 {
                0xffff
            } else {
                (1u16 << left) - 1
            };
            let mut v = [_mm512_setzero_si512(); 16];
            for (c, x) in v.iter_mut().enumerate().take(cw) {
                let src = xp.as_ptr().add((cb + c) * lpad + q0 + r0);
                *x = _mm512_castps_si512(_mm512_maskz_loadu_ps(mask, src));
            }
            crate::bf16::transpose16(&mut v);
            for (i, x) in v.iter().enumerate().take(left) {
                _mm512_store_si512(xt.as_mut_ptr().add((r0 + i) * 16) as *mut _, *x);
            }
            r0 += 16;
        }
    }

    /// The sums of [`super::weight_grad`] for input channels cb..cb + cw,
    /// from the transposed input `xt` (64-byte aligned).
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sums(
        p: &Conv1dParams,
        dz: &[f32],
        ldz: usize,
        dz_off: usize,
        n: usize,
        xt: &[f32],
        cb: usize,
        cw: usize,
        dw: &mut [f32],
    ) {
        let mut co = 0;
        while co < p.c_out {
            let r = (p.c_out - co).min(CO_BLOCK);
            let mut t0 = 0;
            while t0 < p.k {
                let t = (p.k - t0).min(T_BLOCK);
                let b = Block {
                    p,
                    dz,
                    ldz,
                    dz_off,
                    n,
                    xt,
                    cb,
                    cw,
                    co,
                    t0,
                };
                // Every (r, t) that the loops above give.
                macro_rules! run {
                    ($($r:literal $t:literal),*) => {
                        match (r, t) {
                            $(($r, $t) => b.run::<$r, $t>(dw),)*
                            _ => unreachable!("blocks of up to {CO_BLOCK} × {T_BLOCK}"),
                        }
                    };
                }
                run!(4 5, 4 4, 4 3, 4 2, 4 1, 3 5, 3 4, 3 3, 3 2, 3 1,
                     2 5, 2 4, 2 3, 2 2, 2 1, 1 5, 1 4, 1 3, 1 2, 1 1);
                t0 += t;
            }
            co += r;
        }
    }

    /// One block of output channels co..co + R and taps t0..t0 + T.
    struct Block<'a> {
        p: &'a Conv1dParams,
        dz: &'a [f32],
        ldz: usize,
        dz_off: usize,
        n: usize,
        xt: &'a [f32],
        cb: usize,
        cw: usize,
        co: usize,
        t0: usize,
    }

    impl Block<'_> {
        #[target_feature(enable = "avx512f")]
        unsafe fn run<const R: usize, const T: usize>(&self, dw: &mut [f32]) {
            let dil = self.p.dilation;
            let mut total = [[_mm512_setzero_ps(); T]; R];
            let dz: [*const f32; R] = core::array::from_fn(|c| {
                self.dz.as_ptr().add((self.co + c) * self.ldz + self.dz_off)
            });
            let xt = self.xt.as_ptr();
            let mut q0 = 0;
            while q0 < self.n {
                let q1 = (q0 + RUN).min(self.n);
                let mut acc = [[_mm512_setzero_ps(); T]; R];
                for q in q0..q1 {
                    let x: [__m512; T] = core::array::from_fn(|t| {
                        _mm512_load_ps(xt.add((q + (self.t0 + t) * dil) * 16))
                    });
                    for c in 0..R {
                        let g = _mm512_set1_ps(*dz[c].add(q));
                        for t in 0..T {
                            acc[c][t] = _mm512_fmadd_ps(g, x[t], acc[c][t]);
                        }
                    }
                }
                for c in 0..R {
                    for t in 0..T {
                        total[c][t] = _mm512_add_ps(total[c][t], acc[c][t]);
                    }
                }
                q0 = q1;
            }
            let (c_in, k) = (self.p.c_in, self.p.k);
            for (c, row) in total.iter().enumerate() {
                for (t, v) in row.iter().enumerate() {
                    let mut lanes = [0f32; 16];
                    _mm512_storeu_ps(lanes.as_mut_ptr(), *v);
                    for (ci, &s) in lanes.iter().enumerate().take(self.cw) {
                        dw[((self.co + c) * c_in + self.cb + ci) * k + self.t0 + t] += s;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers, so that every sum below is exact in f32 and the
    /// kernel must equal the naive loops bit for bit.
    fn ints(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + seed * 13 + (i * i) % 11) % 9) as f32 - 4.0)
            .collect()
    }

    /// Against the naive sum, on input channels at the lane width ± 1 and
    /// past it, output channels and taps past a block's, dilations, and
    /// positions around a run's and a transpose block's ends.
    #[test]
    fn weight_grad_equals_the_naive_sum() {
        if !SimdPath::Avx512.is_available() {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        for (c_in, c_out, k, dil) in [
            (16, 32, 5, 1),
            (15, 4, 5, 1),
            (17, 5, 6, 1),
            (1, 3, 3, 2),
            (33, 9, 7, 1),
            (16, 1, 11, 3),
        ] {
            for n in [1, 15, 16, 17, 511, 512, 513, 1100] {
                let p = Conv1dParams::new(c_in, c_out, k).dilation(dil);
                let span = (k - 1) * dil;
                let (q0, dz_off, ldz) = (3, 2, n + 5);
                let lpad = q0 + n + span + 4;
                let xp = ints(c_in * lpad, 1);
                let dz = ints(c_out * ldz, 2);
                let mut dw = ints(p.weight_len(), 3);
                let mut want: Vec<f64> = dw.iter().map(|&v| v as f64).collect();
                for co in 0..c_out {
                    for ci in 0..c_in {
                        for t in 0..k {
                            want[(co * c_in + ci) * k + t] += (0..n)
                                .map(|q| {
                                    dz[co * ldz + dz_off + q] as f64
                                        * xp[ci * lpad + q0 + q + t * dil] as f64
                                })
                                .sum::<f64>();
                        }
                    }
                }
                weight_grad(&p, &dz, ldz, dz_off, n, &xp, lpad, q0, &mut dw);
                for (i, (&got, &w)) in dw.iter().zip(&want).enumerate() {
                    assert_eq!(
                        got as f64, w,
                        "c_in {c_in} c_out {c_out} k {k} dil {dil} n {n}: dw[{i}]"
                    );
                }
            }
        }
    }
}
