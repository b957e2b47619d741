//! The fused convolution + activation + max pool of 2 of
//! [`conv1d`](crate::conv1d) when the input has one channel: the first layer
//! of a genomic CNN, whose input is one row of dosages.
//!
//! With one input channel the product behind the convolution has k terms
//! per output, too few for the general kernel's matrix product to amortize
//! its tile's stores and reloads (it ran at 15% of the AVX-512 peak). Here
//! the input is split once into its even and odd positions, E[t] = x[2t]
//! and O[t] = x[2t + 1], so that the two outputs of each pooling window are
//! two vectors of sums over plain unaligned loads:
//!
//! - z[2j]     = b + Σ_t w[t] · x[2j + t]: E[j + t/2] for even t, O[j + (t−1)/2] for odd t;
//! - z[2j + 1] = b + Σ_t w[t] · x[2j + 1 + t]: O[j + t/2] for even t, E[j + (t+1)/2] for odd t.
//!
//! Each load serves four output channels, the window's maximum and the
//! activation are taken in registers, and only the pooled output and its
//! mask are stored. The backward pass runs the same split the other way:
//! the weight gradient Σ_j (g·m⁺)[j] · x[2j + t] + (g·m⁻)[j] · x[2j + 1 + t]
//! is summed in registers, per channel and tap, from the pooled gradient g
//! and the mask m, so the convolution's output gradient is never formed.
//!
//! Products are f32 on every path, `--precision bf16` included, as for
//! every convolution with one input channel per group (`path_for` in
//! [`conv1d`](crate::conv1d)).

use pulp::{Simd, WithSimd};

use crate::conv1d::Conv1dParams;
use crate::scratch::with_scratch;
use crate::simd::{loadu, SimdPath};
use crate::Activation;

/// Channels whose sums share each load.
const GROUP: usize = 4;

/// Whether the kernels here run this convolution: one input channel,
/// stride 1, no dilation, and a kernel size they are compiled for.
pub(crate) fn applies(p: &Conv1dParams) -> bool {
    p.c_in == 1 && p.groups == 1 && p.stride == 1 && p.dilation == 1 && (1..=MAX_K).contains(&p.k)
}

/// Whether the forward kernel computes this activation in registers.
pub(crate) fn forward_applies(p: &Conv1dParams, act: Activation) -> bool {
    applies(p) && matches!(act, Activation::Relu | Activation::Linear)
}

/// The largest kernel size compiled for.
const MAX_K: usize = 12;

/// Evaluates `$body` with the const `$K` equal to the run-time `$k`, for
/// each kernel size 1..=[`MAX_K`] that the kernels are compiled for.
macro_rules! with_k {
    ($k:expr, $K:ident, $body:expr) => {
        with_k!(@ $k, $K, $body, 1 2 3 4 5 6 7 8 9 10 11 12)
    };
    (@ $k:expr, $K:ident, $body:expr, $($n:literal)*) => {
        match $k {
            $($n => {
                const $K: usize = $n;
                $body
            })*
            _ => unreachable!("applies() bounds k"),
        }
    };
}

/// Runs `f` on the even and odd positions of the padded input row of one
/// sample, each padded with zeros to a whole number of vectors past what
/// the sums read: E and O have `len` entries each.
fn with_split<R>(
    p: &Conv1dParams,
    x: &[f32],
    len: usize,
    f: impl FnOnce(&[f32], &[f32]) -> R,
) -> R {
    let l = x.len();
    let (pl, _) = p.pads(l);
    with_scratch(2 * len, |buf| {
        let (e, o) = buf.split_at_mut(len);
        // Position i of the padded row is x[i − pl], or 0 outside x.
        let at = |i: usize| {
            if i >= pl && i - pl < l {
                x[i - pl]
            } else {
                0.0
            }
        };
        // The interior, a pair of x at a time: x[start] sits at an even
        // padded position, 2·t0.
        let start = pl % 2;
        let t0 = (pl + start) / 2;
        let pairs = (l.saturating_sub(start) / 2).min(len.saturating_sub(t0));
        let src = &x[start.min(l)..start.min(l) + 2 * pairs];
        for ((pair, e), o) in src
            .chunks_exact(2)
            .zip(&mut e[t0.min(len)..])
            .zip(&mut o[t0.min(len)..])
        {
            *e = pair[0];
            *o = pair[1];
        }
        let inner = (t0.min(len), t0 + pairs);
        for t in (0..inner.0).chain(inner.1..len) {
            e[t] = at(2 * t);
            o[t] = at(2 * t + 1);
        }
        f(e, o)
    })
}

/// Entries of E and O that the sums of `lp2` windows read, rounded up to
/// whole vectors of the widest path (16 lanes) and one more.
fn split_len(lp2: usize, k: usize) -> usize {
    lp2.next_multiple_of(16) + k / 2 + 16
}

/// The input at the two positions of tap t for the windows [j, j + lanes):
/// x[2j + t] and x[2j + 1 + t], from the even and odd halves.
///
/// # Safety
/// `e` and `o` must hold j + lanes + t/2 + 1 entries.
#[inline(always)]
unsafe fn tap<S: Simd>(e: &[f32], o: &[f32], j: usize, t: usize) -> (S::f32s, S::f32s) {
    let h = t / 2;
    if t.is_multiple_of(2) {
        (
            loadu::<S>(e.as_ptr().add(j + h)),
            loadu::<S>(o.as_ptr().add(j + h)),
        )
    } else {
        (
            loadu::<S>(o.as_ptr().add(j + h)),
            loadu::<S>(e.as_ptr().add(j + h + 1)),
        )
    }
}

/// Forward pass of one sample: y (c_out × lp2) and, unless empty, its mask.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_sample(
    path: SimdPath,
    p: &Conv1dParams,
    relu: bool,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    lp2: usize,
    y: &mut [f32],
    mask: &mut [f32],
) {
    with_split(p, x, split_len(lp2, p.k), |e, o| {
        with_k!(
            p.k,
            K,
            path.dispatch(Forward::<K> {
                relu,
                e,
                o,
                w,
                bias,
                lp2,
                c_out: p.c_out,
                y,
                mask
            })
        )
    })
}

struct Forward<'a, const K: usize> {
    relu: bool,
    e: &'a [f32],
    o: &'a [f32],
    w: &'a [f32],
    bias: Option<&'a [f32]>,
    lp2: usize,
    c_out: usize,
    y: &'a mut [f32],
    mask: &'a mut [f32],
}

impl<const K: usize> WithSimd for Forward<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        let lanes = S::F32_LANES;
        // A group of channels at a time along the whole row: few output
        // rows are written at once, and E and O stay in L2 between groups.
        let mut c = 0;
        while c + GROUP <= self.c_out {
            for j in (0..self.lp2).step_by(lanes) {
                self.block::<S, GROUP>(s, c, j);
            }
            c += GROUP;
        }
        while c < self.c_out {
            for j in (0..self.lp2).step_by(lanes) {
                self.block::<S, 1>(s, c, j);
            }
            c += 1;
        }
    }
}

impl<const K: usize> Forward<'_, K> {
    /// Channels [c, c + G), windows [j, j + lanes) (fewer at the end).
    #[inline(always)]
    fn block<S: Simd, const G: usize>(&self, s: S, c: usize, j: usize) {
        debug_assert!(j + S::F32_LANES + K / 2 < self.e.len().min(self.o.len()));
        let b: [f32; G] = core::array::from_fn(|g| self.bias.map_or(0.0, |b| b[c + g]));
        let mut ze: [S::f32s; G] = core::array::from_fn(|g| s.splat_f32s(b[g]));
        let mut zo = ze;
        // SAFETY: E and O hold split_len(lp2, K) ≥ j + lanes + K/2 entries.
        unsafe {
            for t in 0..K {
                let (ve, vo) = tap::<S>(self.e, self.o, j, t);
                for g in 0..G {
                    let wv = s.splat_f32s(*self.w.get_unchecked((c + g) * K + t));
                    ze[g] = s.mul_add_e_f32s(wv, ve, ze[g]);
                    zo[g] = s.mul_add_e_f32s(wv, vo, zo[g]);
                }
            }
        }
        let n = (self.lp2 - j).min(S::F32_LANES);
        let (zero, one) = (s.splat_f32s(0.0), s.splat_f32s(1.0));
        // Raw pointers: the rows of y and the mask are written through
        // `partial_store`, which takes the slice it may fill.
        let (yp, mp) = (self.y.as_ptr() as *mut f32, self.mask.as_ptr() as *mut f32);
        for g in 0..G {
            // As PoolPairs: the second wins only when strictly larger.
            let second = s.greater_than_f32s(zo[g], ze[g]);
            let m = s.select_f32s(second, zo[g], ze[g]);
            let (out, der) = if self.relu {
                let pos = s.greater_than_f32s(m, zero);
                (s.select_f32s(pos, m, zero), s.select_f32s(pos, one, zero))
            } else {
                (m, one)
            };
            let at = (c + g) * self.lp2 + j;
            // SAFETY: row c + g of y (and of the mask, when kept) has lp2
            // entries from (c + g)·lp2, and j + n ≤ lp2.
            unsafe {
                s.partial_store_f32s(std::slice::from_raw_parts_mut(yp.add(at), n), out);
                if !self.mask.is_empty() {
                    let mk = s.select_f32s(second, s.neg_f32s(der), der);
                    s.partial_store_f32s(std::slice::from_raw_parts_mut(mp.add(at), n), mk);
                }
            }
        }
    }
}

/// Backward pass of one sample: adds the weight gradient to `dw` (c_out ×
/// k) and the bias gradient to `db`, from the pooled gradient `dy` and the
/// `mask` of [`forward_sample`] (or of the general kernel: the same).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_sample(
    path: SimdPath,
    p: &Conv1dParams,
    x: &[f32],
    lp2: usize,
    dy: &[f32],
    mask: &[f32],
    dw: &mut [f32],
    db: &mut [f64],
) {
    with_split(p, x, split_len(lp2, p.k), |e, o| {
        with_k!(
            p.k,
            K,
            path.dispatch(Backward::<K> {
                e,
                o,
                dy,
                mask,
                lp2,
                c_out: p.c_out,
                dw,
                db
            })
        )
    })
}

struct Backward<'a, const K: usize> {
    e: &'a [f32],
    o: &'a [f32],
    dy: &'a [f32],
    mask: &'a [f32],
    lp2: usize,
    c_out: usize,
    dw: &'a mut [f32],
    db: &'a mut [f64],
}

impl<const K: usize> WithSimd for Backward<'_, K> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(mut self, s: S) {
        let mut c = 0;
        // Four channels share each load of the input when their sums fit
        // in the registers (AVX-512 has 32).
        if S::F32_LANES >= 16 && K <= 5 {
            while c + GROUP <= self.c_out {
                self.channels::<S, GROUP>(s, c);
                c += GROUP;
            }
        }
        while c < self.c_out {
            self.channels::<S, 1>(s, c);
            c += 1;
        }
    }
}

impl<const K: usize> Backward<'_, K> {
    #[inline(always)]
    fn channels<S: Simd, const G: usize>(&mut self, s: S, c: usize) {
        let lanes = S::F32_LANES;
        let zero = s.splat_f32s(0.0);
        let mut acc = [[zero; K]; G];
        let mut bacc = [zero; G];
        let full = self.lp2 / lanes * lanes;
        let mut j = 0;
        let step = |j: usize, ge: [S::f32s; G], go: [S::f32s; G], acc: &mut [[S::f32s; K]; G]| {
            debug_assert!(j + lanes + K / 2 < self.e.len().min(self.o.len()));
            // SAFETY: E and O hold split_len(lp2, K) ≥ j + lanes + K/2 entries.
            unsafe {
                for t in 0..K {
                    let (ve, vo) = tap::<S>(self.e, self.o, j, t);
                    for (a, (&ge, &go)) in acc.iter_mut().zip(ge.iter().zip(&go)) {
                        a[t] = s.mul_add_e_f32s(ge, ve, a[t]);
                        a[t] = s.mul_add_e_f32s(go, vo, a[t]);
                    }
                }
            }
        };
        // The winner of each window takes g times the derivative: the
        // first (even) position when the mask is positive, else the second.
        let split = |d: S::f32s, m: S::f32s| {
            let gm = s.mul_f32s(d, m);
            let first = s.greater_than_f32s(m, zero);
            (
                s.select_f32s(first, gm, zero),
                s.select_f32s(first, zero, s.neg_f32s(gm)),
            )
        };
        while j < full {
            let mut ge = [zero; G];
            let mut go = [zero; G];
            for g in 0..G {
                let at = (c + g) * self.lp2 + j;
                // SAFETY: j + lanes ≤ lp2 within row c + g.
                let (d, m) = unsafe {
                    (
                        loadu::<S>(self.dy.as_ptr().add(at)),
                        loadu::<S>(self.mask.as_ptr().add(at)),
                    )
                };
                (ge[g], go[g]) = split(d, m);
                bacc[g] = s.add_f32s(bacc[g], s.add_f32s(ge[g], go[g]));
            }
            step(j, ge, go, &mut acc);
            j += lanes;
        }
        if j < self.lp2 {
            let n = self.lp2 - j;
            let mut ge = [zero; G];
            let mut go = [zero; G];
            for g in 0..G {
                let at = (c + g) * self.lp2 + j;
                let d = s.partial_load_f32s(&self.dy[at..at + n]);
                let m = s.partial_load_f32s(&self.mask[at..at + n]);
                (ge[g], go[g]) = split(d, m);
                bacc[g] = s.add_f32s(bacc[g], s.add_f32s(ge[g], go[g]));
            }
            step(j, ge, go, &mut acc);
        }
        for (g, (a, b)) in acc.iter().zip(&bacc).enumerate() {
            for (d, &v) in self.dw[(c + g) * K..(c + g + 1) * K].iter_mut().zip(a) {
                *d += s.reduce_sum_f32s(v);
            }
            self.db[c + g] += s.reduce_sum_f32s(*b) as f64;
        }
    }
}
