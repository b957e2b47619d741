//! Winograd's minimal filtering F(4, k) for the fused 1D convolution +
//! activation + max pool 2 ([`conv1d_act_maxpool2_forward`], and the input
//! gradient of its backward pass, a correlation of the output gradient with
//! the flipped weights): four outputs of a k-tap correlation from α = k + 3
//! products per (input, output) channel pair instead of 4·k, so that the
//! convolution's products shrink 2.5× at k = 5 (the genomic CNN's second
//! layer: 16 → 32 channels). The weight gradient, Σ_q z[q]·x[q + t], is
//! F(k, 4) at the same points: per tile of 4 positions q, k outputs of a
//! 4-tap correlation ([`weight_grad_sample`]).
//!
//! For a tile of α inputs d and taps g, y = Aᵀ [(G g) ⊙ (Bᵀ d)] (Lavin &
//! Gray 2016). Summed over input channels, each of the α points ξ is a
//! matrix product M_ξ = U_ξ · V_ξ, with U_ξ = (G w)_ξ (c_out × c_in, once
//! per call) and V_ξ the transformed inputs (c_in × tiles): the products
//! run on [`gemm_rows`], the transforms on vectors of tiles. The inputs are
//! first split by position modulo 4 (four "phases"), so that the i-th
//! input of consecutive tiles is a contiguous run; the outputs are pooled
//! in the same phases (positions 4q, 4q + 1 and 4q + 2, 4q + 3 are the two
//! pooling pairs of tile q) and only the pooled values are interleaved.
//!
//! The matrices are those of Toom–Cook at the points 0, ±1, ±2, ±½ and ∞,
//! built in f64 ([`Transforms::new`]): Aᵀ[j][ξ] = a_ξ^j, G[ξ][t] = a_ξ^t /
//! Π_(η≠ξ)(a_ξ − a_η), and row ξ of Bᵀ the coefficients of Π_(η≠ξ)(x −
//! a_η); the point at infinity takes the last tap, the last output and
//! the coefficients of Π_η(x − a_η). The result differs from the direct
//! sum by rounding alone, but the transforms amplify that rounding: by up
//! to max_j Σ_ξ |Aᵀ_jξ|·‖G_ξ‖₁·‖Bᵀ_ξ‖₁ / k against the direct sum's (16 to
//! 19 for these points). The conformance tests hold it to the unfused
//! kernels' tolerances (1e-5 relative for the outputs, 1e-4 for the
//! gradients) times that factor.
//!
//! [`conv1d_act_maxpool2_forward`]: crate::conv1d::conv1d_act_maxpool2_forward

use std::cell::Cell;
use std::sync::OnceLock;

use pulp::{Simd, WithSimd};

use crate::conv1d::Conv1dParams;
use crate::gemm::{gemm_dots, gemm_rows};
use crate::scratch::with_scratch;
use crate::simd::{loadu, storeu, SimdPath};

/// Outputs per tile.
const M: usize = 4;
/// The finite points, in the order they are taken (α − 1 of them).
const POINTS: [f64; 6] = [0.0, 1.0, -1.0, 2.0, -2.0, 0.5];
/// The seventh point (k = 5 needs 7 finite points).
const POINT_7: f64 = -0.5;
/// Tiles per block: the block's transformed inputs, products and outputs
/// stay in L2 (32 output channels: 8 · 32 · 128 f32 = 128 KiB of products).
const BLOCK: usize = 128;
/// Tiles per block of the weight gradient, whose sums over tiles are dot
/// products reduced across lanes once per block (512 measured as fast as
/// 128 on the Zen 4, with a quarter of the reductions).
const GRAD_BLOCK: usize = 512;

/// Whether the fused forward pass runs these options through F(4, k): a
/// stride-1, undilated, ungrouped convolution of 3 to 5 taps with at least
/// 4 input channels (with fewer, the transforms cost more than they save),
/// on an f32 path (bf16's rounding would compound with the transforms'),
/// unless [`with_winograd`] or `GENOCNN_WINOGRAD` turn it off.
pub(crate) fn applies(p: &Conv1dParams, path: SimdPath) -> bool {
    shape_applies(p, path, p.c_in) && forced().unwrap_or(true)
}

/// Whether the fused backward pass runs the weight gradient through
/// F(k, 4): the forward pass's conditions, on a path where
/// [`backward_pays`].
pub(crate) fn applies_to_weight_grad(p: &Conv1dParams, path: SimdPath) -> bool {
    shape_applies(p, path, p.c_in) && forced().unwrap_or_else(|| backward_pays(path))
}

/// Whether the fused backward pass runs the input gradient (a correlation
/// of the c_out rows of the output gradient) through F(4, k): as
/// [`applies_to_weight_grad`], with c_out as the correlation's input
/// channels.
pub(crate) fn applies_to_input_grad(p: &Conv1dParams, path: SimdPath) -> bool {
    shape_applies(p, path, p.c_out) && forced().unwrap_or_else(|| backward_pays(path))
}

fn shape_applies(p: &Conv1dParams, path: SimdPath, channels: usize) -> bool {
    p.stride == 1
        && p.dilation == 1
        && p.groups == 1
        && (3..=5).contains(&p.k)
        && channels >= 4
        && !path.is_bf16()
}

/// Whether the backward pass saves time through the transforms on `path`.
/// It does where the multiply-adds are the scarce resource: 8-lane paths
/// (AVX2: on the Xeon below, the genomic CNN's 16 → 32 layer's backward
/// pass took 14.5–15.7 ms through them, 17.4–20.2 direct), and AVX-512 on
/// AMD, whose Zen 4 runs 512-bit multiply-adds as two halves (where they
/// were first measured). Intel's AVX-512 cores run them at full width, and
/// there the backward transforms' extra passes over memory cost more than
/// the products they save: on the 2-core Xeon with AMX, `genocnn bench
/// kernels --paths avx512 --filter g_conv2pool_b` took 7.2–7.6 ms direct
/// against 10.0–10.4 (interleaved), and the genomic epoch 1.58–1.63 s
/// against 1.77–1.79. The forward pass keeps F(4, k) there: 3.5–3.8 ms
/// either way in `bench kernels`, but 0.88–0.91 s per 3 epochs through the
/// transforms against 1.06 direct in training (`GENOCNN_PROFILE=1`).
fn backward_pays(path: SimdPath) -> bool {
    path != SimdPath::Avx512 || !full_width_fma512()
}

/// Whether this CPU's AVX-512 multiply-adds run at full width: Intel's.
fn full_width_fma512() -> bool {
    static INTEL: OnceLock<bool> = OnceLock::new();
    *INTEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: CPUID leaf 0 exists on every x86-64 CPU.
            #[allow(unused_unsafe)]
            let id = unsafe { std::arch::x86_64::__cpuid(0) };
            // The vendor string "GenuineIntel" is in EBX, EDX, ECX.
            id.ebx == u32::from_le_bytes(*b"Genu")
                && id.edx == u32::from_le_bytes(*b"ineI")
                && id.ecx == u32::from_le_bytes(*b"ntel")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

static FORCED: OnceLock<Option<bool>> = OnceLock::new();

thread_local! {
    static OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The choice forced on this thread: a [`with_winograd`] override, else
/// `GENOCNN_WINOGRAD`.
fn forced() -> Option<bool> {
    OVERRIDE.with(Cell::get).or_else(|| {
        *FORCED.get_or_init(|| {
            let v = std::env::var("GENOCNN_WINOGRAD").ok()?;
            match v.to_ascii_lowercase().as_str() {
                "on" | "1" | "yes" => Some(true),
                "off" | "0" | "no" => Some(false),
                "auto" | "" => None,
                _ => {
                    eprintln!(
                        "warning: GENOCNN_WINOGRAD={v}: expected on, off or auto; using auto"
                    );
                    None
                }
            }
        })
    })
}

/// Runs `f` with Winograd's F(4, k) forced on or off for the fused 1D
/// convolution + pool on this thread, wherever it applies (f32 paths,
/// stride 1, undilated, ungrouped, 3 to 5 taps, at least 4 channels
/// summed): tests run both, and `genocnn bench` can time both
/// (`GENOCNN_WINOGRAD`). Kernels read it on the calling thread.
pub fn with_winograd<R>(on: bool, f: impl FnOnce() -> R) -> R {
    crate::simd::with_override(&OVERRIDE, Some(on), f)
}

/// The F(4, k) matrices in f32.
#[derive(Clone, Debug)]
pub(crate) struct Transforms {
    k: usize,
    alpha: usize,
    /// Aᵀ: M × α.
    at: Vec<f32>,
    /// G: α × k.
    g: Vec<f32>,
    /// Bᵀ: α × α.
    bt: Vec<f32>,
    /// Whether the finite points are symmetric about 0 (k = 3 and 5): then
    /// row 0 of Bᵀ has even-indexed terms only, the last row odd-indexed
    /// ones, and the rows of each pair ±a differ in the sign of the odd ones.
    paired: bool,
    /// F(k, 4) at the same points (the same Bᵀ), for the weight gradient
    /// Σ_q z[q]·x[q + t], t < k, by tiles of 4 positions q: Aᵀ (k × α) ...
    at_k: Vec<f32>,
    /// ... and G (α × 4), applied to the output gradient's tiles.
    g_4: Vec<f32>,
}

impl Transforms {
    /// Toom–Cook at α − 1 finite points and ∞ (see the module's notes), built in f64.
    pub(crate) fn new(k: usize) -> Transforms {
        let alpha = M + k - 1;
        let finite: Vec<f64> = POINTS
            .iter()
            .copied()
            .chain([POINT_7])
            .take(alpha - 1)
            .collect();
        assert_eq!(finite.len(), alpha - 1, "F(4, {k}) needs {alpha} points");
        // Coefficients (lowest first) of Π (x − a) over the given points.
        let poly = |pts: &mut dyn Iterator<Item = f64>| {
            let mut c = vec![1.0f64];
            for a in pts {
                let mut next = vec![0.0; c.len() + 1];
                for (i, &ci) in c.iter().enumerate() {
                    next[i + 1] += ci;
                    next[i] -= a * ci;
                }
                c = next;
            }
            c
        };
        let (mut at, mut g, mut bt) = (
            vec![0f64; M * alpha],
            vec![0f64; alpha * k],
            vec![0f64; alpha * alpha],
        );
        // F(k, 4) at the same points, for the weight gradient.
        let (mut at_k, mut g_4) = (vec![0f64; k * alpha], vec![0f64; alpha * M]);
        for (xi, &a) in finite.iter().enumerate() {
            for j in 0..M {
                at[j * alpha + xi] = a.powi(j as i32);
            }
            let f: f64 = finite
                .iter()
                .enumerate()
                .filter(|&(eta, _)| eta != xi)
                .map(|(_, &b)| a - b)
                .product();
            for t in 0..k {
                g[xi * k + t] = a.powi(t as i32) / f;
                at_k[t * alpha + xi] = a.powi(t as i32);
            }
            for j in 0..M {
                g_4[xi * M + j] = a.powi(j as i32) / f;
            }
            let c = poly(
                &mut finite
                    .iter()
                    .enumerate()
                    .filter(|&(eta, _)| eta != xi)
                    .map(|(_, &b)| b),
            );
            bt[xi * alpha..xi * alpha + c.len()].copy_from_slice(&c);
        }
        let inf = alpha - 1;
        at[(M - 1) * alpha + inf] = 1.0;
        g[inf * k + k - 1] = 1.0;
        at_k[(k - 1) * alpha + inf] = 1.0;
        g_4[inf * M + M - 1] = 1.0;
        let c = poly(&mut finite.iter().copied());
        bt[inf * alpha..inf * alpha + c.len()].copy_from_slice(&c);
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        let row = |xi: usize| &bt[xi * alpha..(xi + 1) * alpha];
        let paired = alpha.is_multiple_of(2)
            && row(0).iter().skip(1).step_by(2).all(|&c| c == 0.0)
            && row(alpha - 1).iter().step_by(2).all(|&c| c == 0.0)
            && (1..alpha - 1).step_by(2).all(|xi| {
                (0..alpha)
                    .all(|i| row(xi + 1)[i] == if i % 2 == 0 { row(xi)[i] } else { -row(xi)[i] })
            });
        Transforms {
            k,
            alpha,
            at: f32s(at),
            g: f32s(g),
            bt: f32s(bt),
            paired,
            at_k: f32s(at_k),
            g_4: f32s(g_4),
        }
    }

    /// U[ξ][co][ci] = Σ_t G[ξ][t] · w[co][ci][t], summed in f64: the
    /// forward pass's weights.
    pub(crate) fn weights(&self, p: &Conv1dParams, w: &[f32]) -> Vec<f32> {
        self.transform(p, w, false)
    }

    /// U[ξ][ci][co] = Σ_t G[ξ][t] · w[co][ci][k − 1 − t]: the weights of the
    /// input gradient, a correlation of the output gradient with the taps
    /// reversed and the channels swapped.
    pub(crate) fn weights_flipped(&self, p: &Conv1dParams, w: &[f32]) -> Vec<f32> {
        self.transform(p, w, true)
    }

    fn transform(&self, p: &Conv1dParams, w: &[f32], flipped: bool) -> Vec<f32> {
        let (k, alpha) = (self.k, self.alpha);
        let mut u = vec![0f32; alpha * p.c_out * p.c_in];
        for xi in 0..alpha {
            for co in 0..p.c_out {
                for ci in 0..p.c_in {
                    let taps = &w[(co * p.c_in + ci) * k..][..k];
                    let s: f64 = (0..k)
                        .map(|t| {
                            let wt = if flipped { taps[k - 1 - t] } else { taps[t] };
                            wt as f64 * self.g[xi * k + t] as f64
                        })
                        .sum();
                    let at = if flipped {
                        (xi * p.c_in + ci) * p.c_out + co
                    } else {
                        (xi * p.c_out + co) * p.c_in + ci
                    };
                    u[at] = s as f32;
                }
            }
        }
        u
    }
}

/// One sample's pooled output and mask, as the fused forward pass defines
/// them, from its padded input `xp` (c_in × lpad), the transformed weights
/// `u` ([`Transforms::weights`]) and the bias: y (c_out × lp2) and, unless
/// `mask` is empty, the signed derivatives (c_out × lp2).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_pool_sample(
    path: SimdPath,
    tr: &Transforms,
    p: &Conv1dParams,
    act: crate::Activation,
    xp: &[f32],
    lpad: usize,
    u: &[f32],
    bias: Option<&[f32]>,
    lp2: usize,
    y: &mut [f32],
    mask: &mut [f32],
) {
    let rows = Rows {
        x: xp,
        ld: lpad,
        off: 0,
        len: lpad,
    };
    // Tiles of 4 outputs covering the 2·lp2 that are pooled.
    let tiles = (2 * lp2).div_ceil(M);
    correlate(
        path,
        tr,
        p.c_in,
        p.c_out,
        u,
        bias,
        rows,
        tiles,
        |q0, nb, nbv, yq| {
            path.dispatch(PoolPhases {
                vector: x86::applies(path),
                act,
                cout: p.c_out,
                nbv,
                nb,
                q0,
                lp2,
                yq,
                y: &mut *y,
                mask: &mut *mask,
            })
        },
    );
}

/// The input gradient of one block of a stride-1 convolution:
/// dx[ci][i] = Σ_(co, t) w[co][ci][t] · z[co][off + i + k − 1 − t] for
/// i < n, a correlation of the output gradient's rows `z` (c_out rows of
/// `ld`, read from `off`, `len` values each) with the flipped weights `u`
/// ([`Transforms::weights_flipped`]); row ci of the result goes to
/// `dx[ci·ldx..][..n]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn input_grad_block(
    path: SimdPath,
    tr: &Transforms,
    p: &Conv1dParams,
    u: &[f32],
    z: &[f32],
    ld: usize,
    off: usize,
    len: usize,
    n: usize,
    dx: &mut [f32],
    ldx: usize,
) {
    let rows = Rows { x: z, ld, off, len };
    let (cin, cout) = (p.c_out, p.c_in);
    assert!(
        cout == 0 || (cout - 1) * ldx + n <= dx.len(),
        "input gradient too short"
    );
    correlate(
        path,
        tr,
        cin,
        cout,
        u,
        None,
        rows,
        n.div_ceil(M),
        |q0, nb, nbv, yq| {
            // Positions 4(q0 + q) + j < n of each row, from the 4 phases.
            let start = M * q0;
            let count = (M * nb).min(n - start);
            for co in 0..cout {
                let ph: [&[f32]; M] = core::array::from_fn(|j| &yq[(co * M + j) * nbv..][..nbv]);
                let out = &mut dx[co * ldx + start..][..count];
                let whole = if x86::applies(path) {
                    count / 64 * 64
                } else {
                    0
                };
                #[cfg(target_arch = "x86_64")]
                if whole > 0 {
                    // Safety: AVX-512F is on this path; whole / 4 ≤ nbv values of
                    // each phase and whole ≤ out.len().
                    unsafe {
                        x86::interleave4(ph.map(|r| r.as_ptr()), whole / M, out.as_mut_ptr())
                    };
                }
                for (i, o) in out.iter_mut().enumerate().skip(whole) {
                    *o = ph[i % M][i / M];
                }
            }
        },
    );
}

/// Adds one sample's weight and bias gradients to `dw` (c_out × c_in × k)
/// and `db`, from its padded input `xp` (c_in × lpad) and the pooled
/// gradient `dy` and `mask` of the forward pass (c_out × lp2 each): with z
/// the convolution's output gradient (the unpooled dy), dw[co][ci][t] +=
/// Σ_q z[co][q]·x[ci][q + t] by F(k, 4) over tiles of 4 positions q, each
/// point ξ a sum over tiles of (G z)_ξ · (Bᵀ x)_ξ ([`gemm_dots`]), and
/// Aᵀ applied once per sample.
#[allow(clippy::too_many_arguments)]
pub(crate) fn weight_grad_sample(
    path: SimdPath,
    tr: &Transforms,
    p: &Conv1dParams,
    xp: &[f32],
    lpad: usize,
    dy: &[f32],
    mask: &[f32],
    lp2: usize,
    dw: &mut [f32],
    db: &mut [f64],
) {
    let (cin, cout, alpha, k) = (p.c_in, p.c_out, tr.alpha, tr.k);
    let tiles = (2 * lp2).div_ceil(M);
    if tiles == 0 {
        return;
    }
    let lanes = path.lanes().max(1);
    let nbv = GRAD_BLOCK.min(tiles).next_multiple_of(4 * lanes);
    let tp = tiles.next_multiple_of(nbv) + alpha / M + 1;
    let sizes = [
        cin * M * tp,
        cout * M * tp,
        alpha * cin * nbv,
        alpha * cout * nbv,
        alpha * cout * cin,
    ];
    with_scratch(sizes.iter().sum(), |buf| {
        let (ph, rest) = buf.split_at_mut(sizes[0]);
        let (zph, rest) = rest.split_at_mut(sizes[1]);
        let (v, rest) = rest.split_at_mut(sizes[2]);
        let (zt, acc) = rest.split_at_mut(sizes[3]);
        acc.fill(0.0);
        let rows = Rows {
            x: xp,
            ld: lpad,
            off: 0,
            len: lpad,
        };
        path.dispatch(SplitPhases {
            vector: x86::applies(path),
            cin,
            rows,
            tp,
            ph,
        });
        path.dispatch(UnpoolPhases {
            vector: x86::applies(path),
            cout,
            lp2,
            tp,
            dy,
            mask,
            zph,
            db,
        });
        let mut q0 = 0;
        while q0 < tiles {
            let nb = GRAD_BLOCK.min(tiles - q0);
            input_transform(path, tr, cin, tp, nbv, q0, ph, v);
            // Zt[ξ][co][q] = Σ_j G₄[ξ][j] · z[co][4(q0 + q) + j].
            combine(
                path,
                &tr.g_4,
                (M, alpha),
                cout,
                nbv,
                None,
                zph,
                move |co, j| (co * M + j) * tp + q0,
                zt,
                move |co, xi| (xi * cout + co) * nbv,
            );
            for xi in 0..alpha {
                gemm_dots(
                    path,
                    cout,
                    cin,
                    nb,
                    zt,
                    move |co| (xi * cout + co) * nbv,
                    v,
                    move |ci| (xi * cin + ci) * nbv,
                    &mut acc[xi * cout * cin..(xi + 1) * cout * cin],
                    cin,
                    true,
                    false,
                );
            }
            q0 += nb;
        }
        // dw[co][ci][t] += Σ_ξ Aᵀ[t][ξ] · acc[ξ][co][ci].
        for co in 0..cout {
            for ci in 0..cin {
                let d = &mut dw[(co * cin + ci) * k..][..k];
                for (t, dv) in d.iter_mut().enumerate() {
                    let s: f64 = (0..alpha)
                        .map(|xi| {
                            tr.at_k[t * alpha + xi] as f64 * acc[(xi * cout + co) * cin + ci] as f64
                        })
                        .sum();
                    *dv += s as f32;
                }
            }
        }
    })
}

/// The output gradient z by phase, from the pooled gradient and the
/// forward pass's signed-derivative mask: z[co][4T + j] for pair p = 2T +
/// j / 2 is dy·m⁺ at its first place and dy·(−m)⁺ at its second (m the
/// mask), zero past the pooled pairs; adds each row's sum to `db`.
struct UnpoolPhases<'a> {
    vector: bool,
    cout: usize,
    lp2: usize,
    tp: usize,
    dy: &'a [f32],
    mask: &'a [f32],
    zph: &'a mut [f32],
    db: &'a mut [f64],
}

impl WithSimd for UnpoolPhases<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let UnpoolPhases {
            vector,
            cout,
            lp2,
            tp,
            dy,
            mask,
            zph,
            db,
        } = self;
        for co in 0..cout {
            let (g, m) = (
                &dy[co * lp2..(co + 1) * lp2],
                &mask[co * lp2..(co + 1) * lp2],
            );
            let rows = &mut zph[co * M * tp..(co + 1) * M * tp];
            rows.fill(0.0);
            let (z0, rest) = rows.split_at_mut(tp);
            let (z1, rest) = rest.split_at_mut(tp);
            let (z2, z3) = rest.split_at_mut(tp);
            // Whole tiles (both pairs pooled), then a last half tile; runs
            // of 16 tiles by permutations where AVX-512 runs.
            let whole = lp2 / 2;
            let fast = if vector { whole / 16 * 16 } else { 0 };
            #[cfg(target_arch = "x86_64")]
            if fast > 0 {
                // Safety: AVX-512F is on this path; 2·fast ≤ lp2 values of g
                // and m, and fast ≤ tp values of each phase row.
                unsafe {
                    x86::unpool_phases(
                        g.as_ptr(),
                        m.as_ptr(),
                        fast,
                        [
                            z0.as_mut_ptr(),
                            z1.as_mut_ptr(),
                            z2.as_mut_ptr(),
                            z3.as_mut_ptr(),
                        ],
                    )
                };
            }
            for t in fast..whole {
                let (g0, m0, g1, m1) = (g[2 * t], m[2 * t], g[2 * t + 1], m[2 * t + 1]);
                z0[t] = g0 * m0.max(0.0);
                z1[t] = g0 * (-m0).max(0.0);
                z2[t] = g1 * m1.max(0.0);
                z3[t] = g1 * (-m1).max(0.0);
            }
            if lp2 % 2 == 1 {
                let (g0, m0) = (g[lp2 - 1], m[lp2 - 1]);
                z0[whole] = g0 * m0.max(0.0);
                z1[whole] = g0 * (-m0).max(0.0);
            }
            let n = whole + lp2 % 2;
            db[co] += crate::scratch::sum(&z0[..n])
                + crate::scratch::sum(&z1[..n])
                + crate::scratch::sum(&z2[..n])
                + crate::scratch::sum(&z3[..n]);
        }
    }
}

/// `len` values of each of a correlation's input rows: row c is
/// `x[c·ld + off..][..len]`; past it, zeros.
#[derive(Clone, Copy)]
struct Rows<'a> {
    x: &'a [f32],
    ld: usize,
    off: usize,
    len: usize,
}

/// The correlation of `cin` input rows with the transformed weights `u`
/// (α × cout × cin) and a bias, tile by tile (4 outputs each), for `tiles`
/// tiles: hands each block of nb ≤ [`BLOCK`] tiles from q0 on to `take` as
/// its outputs by phase, Y[co][j][q] at (co·4 + j)·nbv + q.
#[allow(clippy::too_many_arguments)]
fn correlate(
    path: SimdPath,
    tr: &Transforms,
    cin: usize,
    cout: usize,
    u: &[f32],
    bias: Option<&[f32]>,
    rows: Rows<'_>,
    tiles: usize,
    mut take: impl FnMut(usize, usize, usize, &[f32]),
) {
    let alpha = tr.alpha;
    assert_eq!(u.len(), alpha * cout * cin, "transformed weights");
    if tiles == 0 {
        return;
    }
    let lanes = path.lanes().max(1);
    // Vectors of tiles are taken 4 at a time (independent sums).
    let nbv = BLOCK.min(tiles).next_multiple_of(4 * lanes);
    // Phase rows: input 4q + i is phase i % 4 at q + i / 4, read up to the
    // last block's vectors plus α / 4.
    let tp = tiles.next_multiple_of(nbv) + alpha / M + 1;
    let sizes = [
        cin * M * tp,
        alpha * cin * nbv,
        alpha * cout * nbv,
        cout * M * nbv,
    ];
    with_scratch(sizes.iter().sum(), |buf| {
        let (ph, rest) = buf.split_at_mut(sizes[0]);
        let (v, rest) = rest.split_at_mut(sizes[1]);
        let (mm, yq) = rest.split_at_mut(sizes[2]);
        path.dispatch(SplitPhases {
            vector: x86::applies(path),
            cin,
            rows,
            tp,
            ph,
        });
        let mut q0 = 0;
        while q0 < tiles {
            let nb = BLOCK.min(tiles - q0);
            input_transform(path, tr, cin, tp, nbv, q0, ph, v);
            for xi in 0..alpha {
                gemm_rows(
                    path,
                    cout,
                    nbv,
                    cin,
                    &u[xi * cout * cin..(xi + 1) * cout * cin],
                    cin,
                    v,
                    move |ci| (xi * cin + ci) * nbv,
                    &mut mm[xi * cout * nbv..(xi + 1) * cout * nbv],
                    nbv,
                    false,
                    false,
                );
            }
            // Y[co][j][q] = bias[co] + Σ_ξ Aᵀ[j][ξ] · M_ξ[co][q], j < 4.
            combine(
                path,
                &tr.at,
                (alpha, M),
                cout,
                nbv,
                bias,
                mm,
                move |co, xi| (xi * cout + co) * nbv,
                yq,
                move |co, j| (co * M + j) * nbv,
            );
            take(q0, nb, nbv, yq);
            q0 += nb;
        }
    })
}

/// ph[c][phase][q] = row c [4q + phase] of [`Rows`], zero past its end.
struct SplitPhases<'a> {
    vector: bool,
    cin: usize,
    rows: Rows<'a>,
    tp: usize,
    ph: &'a mut [f32],
}

impl WithSimd for SplitPhases<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        let SplitPhases {
            vector,
            cin,
            rows,
            tp,
            ph,
        } = self;
        // Whole quads of the row that the phase rows hold.
        let whole = (rows.len / M).min(tp);
        // Runs of 16 quads by permutations where AVX-512 runs; the rest below.
        let fast = if vector { whole / 16 * 16 } else { 0 };
        for ci in 0..cin {
            let row = &rows.x[ci * rows.ld + rows.off..][..rows.len];
            let dst = &mut ph[ci * M * tp..(ci + 1) * M * tp];
            let (p0, rest) = dst.split_at_mut(tp);
            let (p1, rest) = rest.split_at_mut(tp);
            let (p2, p3) = rest.split_at_mut(tp);
            let src = &row[..M * whole];
            let (p0w, p1w, p2w, p3w) = (
                &mut p0[..whole],
                &mut p1[..whole],
                &mut p2[..whole],
                &mut p3[..whole],
            );
            #[cfg(target_arch = "x86_64")]
            if fast > 0 {
                // Safety: AVX-512F is on this path; 4·fast ≤ row.len() and
                // fast ≤ each phase row's length.
                unsafe {
                    x86::split4(
                        src.as_ptr(),
                        fast,
                        [
                            p0w.as_mut_ptr(),
                            p1w.as_mut_ptr(),
                            p2w.as_mut_ptr(),
                            p3w.as_mut_ptr(),
                        ],
                    )
                };
            }
            for q in fast..whole {
                p0w[q] = src[M * q];
                p1w[q] = src[M * q + 1];
                p2w[q] = src[M * q + 2];
                p3w[q] = src[M * q + 3];
            }
            for (phase, dst) in [p0, p1, p2, p3].into_iter().enumerate() {
                for (q, d) in dst.iter_mut().enumerate().skip(whole) {
                    *d = row.get(M * q + phase).copied().unwrap_or(0.0);
                }
            }
        }
    }
}

/// V[ξ][ci][q] = Σ_i Bᵀ[ξ][i] · x[ci][4(q0 + q) + i] for the block's
/// tiles, from the input's phases `ph` ([`SplitPhases`]): by the ± pairs of
/// points where they exist ([`InputTransform`]), else as any small matrix.
#[allow(clippy::too_many_arguments)]
fn input_transform(
    path: SimdPath,
    tr: &Transforms,
    cin: usize,
    tp: usize,
    nbv: usize,
    q0: usize,
    ph: &[f32],
    v: &mut [f32],
) {
    if tr.paired {
        return path.dispatch(InputTransform {
            tr,
            cin,
            tp,
            nbv,
            q0,
            ph,
            v,
        });
    }
    let alpha = tr.alpha;
    // Row i of tile q's inputs: phase i % 4, shifted by i / 4.
    combine(
        path,
        &tr.bt,
        (alpha, alpha),
        cin,
        nbv,
        None,
        ph,
        move |ci, i| (ci * M + i % M) * tp + q0 + i / M,
        v,
        move |ci, xi| (xi * cin + ci) * nbv,
    );
}

/// out[o(g, r) + q] = bias[g] + Σ_i c[r·I + i] · x[xo(g, i) + q] for each
/// group g < groups, r < R, i < I and q < nbv, with (I, R) = `shape`: one of
/// the transforms' small matrices (c: R × I) applied to rows of tiles, a
/// vector of tiles at a time, each input vector loaded once for all R
/// outputs. A zero bias where there is none.
#[allow(clippy::too_many_arguments)]
fn combine(
    path: SimdPath,
    c: &[f32],
    shape: (usize, usize),
    groups: usize,
    nbv: usize,
    bias: Option<&[f32]>,
    x: &[f32],
    xo: impl Fn(usize, usize) -> usize,
    out: &mut [f32],
    oo: impl Fn(usize, usize) -> usize,
) {
    let (ni, nr) = shape;
    assert_eq!(c.len(), ni * nr, "transform matrix");
    assert!(
        nbv.is_multiple_of(path.lanes().max(1)),
        "whole vectors of tiles"
    );
    for g in 0..groups {
        assert!((0..ni).all(|i| xo(g, i) + nbv <= x.len()), "input rows");
        assert!((0..nr).all(|r| oo(g, r) + nbv <= out.len()), "output rows");
    }
    path.dispatch(Combine {
        c,
        shape,
        groups,
        nbv,
        bias,
        x,
        xo,
        out,
        oo,
    })
}

/// [`combine`] after its bounds checks.
struct Combine<'a, FI, FO> {
    c: &'a [f32],
    shape: (usize, usize),
    groups: usize,
    nbv: usize,
    bias: Option<&'a [f32]>,
    x: &'a [f32],
    xo: FI,
    out: &'a mut [f32],
    oo: FO,
}

impl<FI: Fn(usize, usize) -> usize, FO: Fn(usize, usize) -> usize> WithSimd
    for Combine<'_, FI, FO>
{
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        // The shapes F(4, k) and F(k, 4) take (α = 6, 7, 8), known at
        // compile time so that the sums unroll.
        match self.shape {
            (4, 6) => self.run::<S, 4, 6>(s),
            (4, 7) => self.run::<S, 4, 7>(s),
            (4, 8) => self.run::<S, 4, 8>(s),
            (6, 4) => self.run::<S, 6, 4>(s),
            (7, 4) => self.run::<S, 7, 4>(s),
            (8, 4) => self.run::<S, 8, 4>(s),
            (6, 6) => self.run::<S, 6, 6>(s),
            (7, 7) => self.run::<S, 7, 7>(s),
            (8, 8) => self.run::<S, 8, 8>(s),
            shape => unreachable!("a transform of shape {shape:?}"),
        }
    }
}

impl<FI: Fn(usize, usize) -> usize, FO: Fn(usize, usize) -> usize> Combine<'_, FI, FO> {
    #[inline(always)]
    fn run<S: Simd, const I: usize, const R: usize>(self, s: S) {
        let Combine {
            c,
            groups,
            nbv,
            bias,
            x,
            xo,
            out,
            oo,
            ..
        } = self;
        for g in 0..groups {
            let b = s.splat_f32s(bias.map_or(0.0, |b| b[g]));
            let xb: [usize; I] = core::array::from_fn(|i| xo(g, i));
            let ob: [usize; R] = core::array::from_fn(|r| oo(g, r));
            let mut q = 0;
            while q < nbv {
                // Safety: xo(g, i) + nbv ≤ x.len(), checked by `combine`.
                let d: [S::f32s; I] =
                    core::array::from_fn(|i| unsafe { loadu::<S>(x.as_ptr().add(xb[i] + q)) });
                for r in 0..R {
                    let mut acc = b;
                    for i in 0..I {
                        acc = s.mul_add_e_f32s(s.splat_f32s(c[r * I + i]), d[i], acc);
                    }
                    // Safety: oo(g, r) + nbv ≤ out.len(), checked by `combine`.
                    unsafe { storeu::<S>(out.as_mut_ptr().add(ob[r] + q), acc) };
                }
                q += S::F32_LANES;
            }
        }
    }
}

/// V[ξ][ci][q] = Σ_i Bᵀ[ξ][i] · x[ci][4(q0 + q) + i] for the block's tiles,
/// for point sets symmetric about 0.
struct InputTransform<'a> {
    tr: &'a Transforms,
    cin: usize,
    tp: usize,
    nbv: usize,
    q0: usize,
    ph: &'a [f32],
    v: &'a mut [f32],
}

impl WithSimd for InputTransform<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, s: S) {
        match self.tr.alpha {
            6 => self.run_paired::<S, 6, 3>(s),
            8 => self.run_paired::<S, 8, 4>(s),
            a => unreachable!("paired F(4, k) with α = {a}"),
        }
    }
}

impl InputTransform<'_> {
    /// For point sets symmetric about 0 ([`Transforms::paired`]): row 0 of
    /// Bᵀ has only even-indexed terms, the last row only odd ones, and rows
    /// 2p + 1 and 2p + 2 (points ±a) are E ± O, E and O the even- and
    /// odd-indexed terms of row 2p + 1: about half the products.
    #[inline(always)]
    fn run_paired<S: Simd, const A: usize, const H: usize>(self, s: S) {
        let InputTransform {
            tr,
            cin,
            tp,
            nbv,
            q0,
            ph,
            v,
        } = self;
        let lanes = S::F32_LANES;
        assert!(v.len() >= A * cin * nbv && tr.bt.len() == A * A && 2 * H == A);
        let bt = &tr.bt;
        let zero = s.splat_f32s(0.0);
        let store = |v: &mut [f32], xi: usize, ci: usize, q: usize, x: S::f32s| {
            // Safety: (ξ·cin + ci)·nbv + q + lanes ≤ α·cin·nbv, checked above.
            unsafe { storeu::<S>(v.as_mut_ptr().add((xi * cin + ci) * nbv + q), x) }
        };
        for ci in 0..cin {
            // Row i of the tile's inputs: phase i % 4, shifted by i / 4.
            let base: [usize; A] = core::array::from_fn(|i| (ci * M + i % M) * tp + q0 + i / M);
            assert!(base.iter().all(|&b| b + nbv <= ph.len()));
            let mut q = 0;
            while q < nbv {
                // Safety: base[i] + nbv ≤ ph.len(), checked above.
                let d: [S::f32s; A] =
                    core::array::from_fn(|i| unsafe { loadu::<S>(ph.as_ptr().add(base[i] + q)) });
                let part = |xi: usize, odd: usize| {
                    let mut acc = zero;
                    for h in 0..H {
                        let i = 2 * h + odd;
                        acc = s.mul_add_e_f32s(s.splat_f32s(bt[xi * A + i]), d[i], acc);
                    }
                    acc
                };
                store(v, 0, ci, q, part(0, 0));
                for xi in (1..A - 1).step_by(2) {
                    let (e, o) = (part(xi, 0), part(xi, 1));
                    store(v, xi, ci, q, s.add_f32s(e, o));
                    store(v, xi + 1, ci, q, s.sub_f32s(e, o));
                }
                store(v, A - 1, ci, q, part(A - 1, 1));
                q += lanes;
            }
        }
    }
}

/// Pools the block's outputs pair by pair (phases 0 and 1, then 2 and 3),
/// applies the activation and writes y and the signed-derivative mask at
/// pooled positions 2(q0 + q) and 2(q0 + q) + 1, those below lp2: the
/// values and mask of the direct path's pooling of pairs.
struct PoolPhases<'a> {
    vector: bool,
    act: crate::Activation,
    cout: usize,
    nbv: usize,
    nb: usize,
    q0: usize,
    lp2: usize,
    yq: &'a [f32],
    y: &'a mut [f32],
    mask: &'a mut [f32],
}

impl WithSimd for PoolPhases<'_> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: Simd>(self, _s: S) {
        match self.act {
            crate::Activation::Relu => self.run(
                |m| if m > 0.0 { m } else { 0.0 },
                |o| {
                    if o > 0.0 {
                        1.0
                    } else {
                        0.0
                    }
                },
            ),
            crate::Activation::Linear => self.run(|m| m, |_| 1.0),
            a => self.run(|m| a.apply(m), |o| a.derivative_from_output(o)),
        }
    }
}

impl PoolPhases<'_> {
    #[inline(always)]
    fn run(self, f: impl Fn(f32) -> f32, d: impl Fn(f32) -> f32) {
        let PoolPhases {
            vector,
            act,
            cout,
            nbv,
            nb,
            q0,
            lp2,
            yq,
            y,
            mask,
        } = self;
        // Pairs whose two pooled positions both exist, then a last half pair.
        let full = nb.min((lp2 / 2).saturating_sub(q0));
        let half = full < nb && 2 * (q0 + full) < lp2;
        let train = !mask.is_empty();
        #[cfg(target_arch = "x86_64")]
        if vector && matches!(act, crate::Activation::Relu | crate::Activation::Linear) {
            let relu = act == crate::Activation::Relu;
            for co in 0..cout {
                let a: [&[f32]; M] = core::array::from_fn(|j| &yq[(co * M + j) * nbv..][..nbv]);
                let o = co * lp2 + 2 * q0;
                assert!(
                    full <= nbv
                        && o + 2 * full <= y.len()
                        && (!train || o + 2 * full <= mask.len())
                );
                let mk = if train {
                    mask[o..].as_mut_ptr()
                } else {
                    std::ptr::null_mut()
                };
                // Safety: AVX-512F is on this path; the lengths are checked above.
                unsafe {
                    x86::pool_phases(relu, a.map(|r| r.as_ptr()), full, y[o..].as_mut_ptr(), mk)
                };
                if half {
                    let second = a[1][full] > a[0][full];
                    let out = f(if second { a[1][full] } else { a[0][full] });
                    y[o + 2 * full] = out;
                    if train {
                        let der = d(out);
                        mask[o + 2 * full] = if second { -der } else { der };
                    }
                }
            }
            return;
        }
        let _ = (vector, act);
        // The pooled values and signed derivatives of the block's pairs, by
        // phase pair, contiguous (so that the compiler vectorizes the
        // pooling), then interleaved into y and the mask.
        let mut o = [[0f32; BLOCK + 1]; 2];
        let mut m = [[0f32; BLOCK + 1]; 2];
        let count = full + half as usize;
        for co in 0..cout {
            for pair in 0..2 {
                let a = &yq[(co * M + 2 * pair) * nbv..][..count];
                let b = &yq[(co * M + 2 * pair + 1) * nbv..][..count];
                let (op, mp) = (&mut o[pair][..count], &mut m[pair][..count]);
                for q in 0..count {
                    let second = b[q] > a[q];
                    let out = f(if second { b[q] } else { a[q] });
                    let der = d(out);
                    op[q] = out;
                    mp[q] = if second { -der } else { der };
                }
            }
            interleave(
                &o[0][..full],
                &o[1][..full],
                &mut y[co * lp2 + 2 * q0..][..2 * full],
            );
            if half {
                y[co * lp2 + 2 * (q0 + full)] = o[0][full];
            }
            if train {
                interleave(
                    &m[0][..full],
                    &m[1][..full],
                    &mut mask[co * lp2 + 2 * q0..][..2 * full],
                );
                if half {
                    mask[co * lp2 + 2 * (q0 + full)] = m[0][full];
                }
            }
        }
    }
}

/// out[2q] = even[q], out[2q + 1] = odd[q].
#[inline(always)]
fn interleave(even: &[f32], odd: &[f32], out: &mut [f32]) {
    let n = even.len();
    let (odd, out) = (&odd[..n], &mut out[..2 * n]);
    for q in 0..n {
        out[2 * q] = even[q];
        out[2 * q + 1] = odd[q];
    }
}

/// The AVX-512 forms of the phase split and of the pooling of phases.
mod x86 {
    use crate::simd::SimdPath;

    /// Whether `path` runs them.
    pub(super) fn applies(path: SimdPath) -> bool {
        cfg!(target_arch = "x86_64") && path.fp32() == SimdPath::Avx512
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) use imp::*;

    #[cfg(target_arch = "x86_64")]
    mod imp {
        use std::arch::x86_64::*;

        use crate::simd::avx512::{lanes, EVEN, HIGH, LOW, ODD};

        /// p[phase][q] = row[4q + phase] for q < quads (a multiple of 16).
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn split4(row: *const f32, quads: usize, p: [*mut f32; 4]) {
            let even = _mm512_loadu_si512(EVEN.as_ptr() as *const _);
            let odd = _mm512_loadu_si512(ODD.as_ptr() as *const _);
            let mut q = 0;
            while q < quads {
                let v: [__m512; 4] = [0, 1, 2, 3].map(|i| _mm512_loadu_ps(row.add(4 * q + 16 * i)));
                let (e01, o01) = (
                    _mm512_permutex2var_ps(v[0], even, v[1]),
                    _mm512_permutex2var_ps(v[0], odd, v[1]),
                );
                let (e23, o23) = (
                    _mm512_permutex2var_ps(v[2], even, v[3]),
                    _mm512_permutex2var_ps(v[2], odd, v[3]),
                );
                _mm512_storeu_ps(p[0].add(q), _mm512_permutex2var_ps(e01, even, e23));
                _mm512_storeu_ps(p[1].add(q), _mm512_permutex2var_ps(o01, even, o23));
                _mm512_storeu_ps(p[2].add(q), _mm512_permutex2var_ps(e01, odd, e23));
                _mm512_storeu_ps(p[3].add(q), _mm512_permutex2var_ps(o01, odd, o23));
                q += 16;
            }
        }

        /// The output gradient's four phases from pairs of pooled values:
        /// for t < tiles (a multiple of 16), z[0][t] = g[2t]·m[2t]⁺,
        /// z[1][t] = g[2t]·(−m[2t])⁺, z[2][t] = g[2t + 1]·m[2t + 1]⁺,
        /// z[3][t] = g[2t + 1]·(−m[2t + 1])⁺.
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn unpool_phases(
            g: *const f32,
            m: *const f32,
            tiles: usize,
            z: [*mut f32; 4],
        ) {
            let even = _mm512_loadu_si512(EVEN.as_ptr() as *const _);
            let odd = _mm512_loadu_si512(ODD.as_ptr() as *const _);
            let zero = _mm512_setzero_ps();
            let mut t = 0;
            while t < tiles {
                let (g0, g1) = (
                    _mm512_loadu_ps(g.add(2 * t)),
                    _mm512_loadu_ps(g.add(2 * t + 16)),
                );
                let (m0, m1) = (
                    _mm512_loadu_ps(m.add(2 * t)),
                    _mm512_loadu_ps(m.add(2 * t + 16)),
                );
                let pairs = [
                    (
                        _mm512_permutex2var_ps(g0, even, g1),
                        _mm512_permutex2var_ps(m0, even, m1),
                    ),
                    (
                        _mm512_permutex2var_ps(g0, odd, g1),
                        _mm512_permutex2var_ps(m0, odd, m1),
                    ),
                ];
                for (h, (gv, mv)) in pairs.into_iter().enumerate() {
                    let first = _mm512_mul_ps(gv, _mm512_max_ps(mv, zero));
                    let second = _mm512_mul_ps(gv, _mm512_max_ps(_mm512_sub_ps(zero, mv), zero));
                    _mm512_storeu_ps(z[2 * h].add(t), first);
                    _mm512_storeu_ps(z[2 * h + 1].add(t), second);
                }
                t += 16;
            }
        }

        /// out[4q + j] = a[j][q] for q < quads (a multiple of 16).
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn interleave4(
            a: [*const f32; 4],
            quads: usize,
            out: *mut f32,
        ) {
            let low = _mm512_loadu_si512(LOW.as_ptr() as *const _);
            let high = _mm512_loadu_si512(HIGH.as_ptr() as *const _);
            let mut q = 0;
            while q < quads {
                let x: [__m512; 4] = [0, 1, 2, 3].map(|j| _mm512_loadu_ps(a[j].add(q)));
                // (a0, a2) and (a1, a3) interleaved, then those two.
                let (e_lo, e_hi) = (
                    _mm512_permutex2var_ps(x[0], low, x[2]),
                    _mm512_permutex2var_ps(x[0], high, x[2]),
                );
                let (o_lo, o_hi) = (
                    _mm512_permutex2var_ps(x[1], low, x[3]),
                    _mm512_permutex2var_ps(x[1], high, x[3]),
                );
                let o = out.add(4 * q);
                _mm512_storeu_ps(o, _mm512_permutex2var_ps(e_lo, low, o_lo));
                _mm512_storeu_ps(o.add(16), _mm512_permutex2var_ps(e_lo, high, o_lo));
                _mm512_storeu_ps(o.add(32), _mm512_permutex2var_ps(e_hi, low, o_hi));
                _mm512_storeu_ps(o.add(48), _mm512_permutex2var_ps(e_hi, high, o_hi));
                q += 16;
            }
        }

        /// Pools phases (a[0], a[1]) into out[2q] and (a[2], a[3]) into
        /// out[2q + 1] for q < n, with ReLU or none, and (unless `mask` is
        /// null) the signed derivatives: as the scalar pooling of pairs.
        #[target_feature(enable = "avx512f")]
        pub(in super::super) unsafe fn pool_phases(
            relu: bool,
            a: [*const f32; 4],
            n: usize,
            out: *mut f32,
            mask: *mut f32,
        ) {
            let low = _mm512_loadu_si512(LOW.as_ptr() as *const _);
            let high = _mm512_loadu_si512(HIGH.as_ptr() as *const _);
            let (zero, one) = (_mm512_setzero_ps(), _mm512_set1_ps(1.0));
            let sign = _mm512_set1_epi32(i32::MIN);
            let mut q = 0;
            while q < n {
                let m = (n - q).min(16);
                let w = lanes(m);
                // Whole vectors unmasked (masked stores are slow on some CPUs).
                let x: [__m512; 4] = if m == 16 {
                    [0, 1, 2, 3].map(|j| _mm512_loadu_ps(a[j].add(q)))
                } else {
                    [0, 1, 2, 3].map(|j| _mm512_maskz_loadu_ps(w, a[j].add(q)))
                };
                let mut o = [zero; 2];
                let mut g = [zero; 2];
                for pair in 0..2 {
                    let (first, second) = (x[2 * pair], x[2 * pair + 1]);
                    let later = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(second, first);
                    let mx = _mm512_mask_blend_ps(later, first, second);
                    let (v, der) = if relu {
                        let v = _mm512_max_ps(mx, zero);
                        (
                            v,
                            _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, zero), one),
                        )
                    } else {
                        (mx, one)
                    };
                    o[pair] = v;
                    // The derivative, negated where the second of the pair won.
                    let bits = _mm512_castps_si512(der);
                    g[pair] = _mm512_castsi512_ps(_mm512_mask_xor_epi32(bits, later, bits, sign));
                }
                if m == 16 {
                    _mm512_storeu_ps(out.add(2 * q), _mm512_permutex2var_ps(o[0], low, o[1]));
                    _mm512_storeu_ps(
                        out.add(2 * q + 16),
                        _mm512_permutex2var_ps(o[0], high, o[1]),
                    );
                    if !mask.is_null() {
                        _mm512_storeu_ps(mask.add(2 * q), _mm512_permutex2var_ps(g[0], low, g[1]));
                        _mm512_storeu_ps(
                            mask.add(2 * q + 16),
                            _mm512_permutex2var_ps(g[0], high, g[1]),
                        );
                    }
                    q += 16;
                    continue;
                }
                let (lo, hi) = (lanes(2 * m), lanes((2 * m).saturating_sub(16)));
                _mm512_mask_storeu_ps(out.add(2 * q), lo, _mm512_permutex2var_ps(o[0], low, o[1]));
                _mm512_mask_storeu_ps(
                    out.add(2 * q + 16),
                    hi,
                    _mm512_permutex2var_ps(o[0], high, o[1]),
                );
                if !mask.is_null() {
                    _mm512_mask_storeu_ps(
                        mask.add(2 * q),
                        lo,
                        _mm512_permutex2var_ps(g[0], low, g[1]),
                    );
                    _mm512_mask_storeu_ps(
                        mask.add(2 * q + 16),
                        hi,
                        _mm512_permutex2var_ps(g[0], high, g[1]),
                    );
                }
                q += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Aᵀ[(G g) ⊙ (Bᵀ d)] is the correlation Σ_t g[t] d[j + t], in f64
    /// arithmetic on the f32 matrices, for every tap count used; and the
    /// same for F(k, 4), the weight gradient's, at the same points.
    #[test]
    fn the_transforms_compute_a_correlation() {
        for k in 3..=5 {
            let tr = Transforms::new(k);
            assert_eq!(
                tr.paired,
                k != 4,
                "k {k}: the points are symmetric but for k = 4"
            );
            let alpha = tr.alpha;
            let g: Vec<f64> = (0..k)
                .map(|t| 0.3 + 0.7 * t as f64 - 0.1 * (t * t) as f64)
                .collect();
            let d: Vec<f64> = (0..alpha).map(|i| (i as f64 * 1.7).sin()).collect();
            let gg: Vec<f64> = (0..alpha)
                .map(|xi| (0..k).map(|t| tr.g[xi * k + t] as f64 * g[t]).sum())
                .collect();
            let bd: Vec<f64> = (0..alpha)
                .map(|xi| {
                    (0..alpha)
                        .map(|i| tr.bt[xi * alpha + i] as f64 * d[i])
                        .sum()
                })
                .collect();
            for j in 0..M {
                let y: f64 = (0..alpha)
                    .map(|xi| tr.at[j * alpha + xi] as f64 * gg[xi] * bd[xi])
                    .sum();
                let want: f64 = (0..k).map(|t| g[t] * d[j + t]).sum();
                assert!(
                    (y - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "k {k} output {j}: {y} against {want}"
                );
            }
            // F(k, 4), the weight gradient's: Σ_j z[j]·d[j + t] for t < k.
            let z: Vec<f64> = (0..M).map(|j| 0.9 - 0.4 * j as f64).collect();
            let gz: Vec<f64> = (0..alpha)
                .map(|xi| (0..M).map(|j| tr.g_4[xi * M + j] as f64 * z[j]).sum())
                .collect();
            for t in 0..k {
                let y: f64 = (0..alpha)
                    .map(|xi| tr.at_k[t * alpha + xi] as f64 * gz[xi] * bd[xi])
                    .sum();
                let want: f64 = (0..M).map(|j| z[j] * d[j + t]).sum();
                assert!(
                    (y - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "k {k} tap {t}: {y} against {want}"
                );
            }
        }
    }
}
