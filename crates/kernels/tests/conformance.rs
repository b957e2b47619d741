//! The fast kernels against the naive f64 references, on every SIMD path
//! this CPU offers, over random shapes at awkward sizes (SIMD width ± 1),
//! strides, dilations, paddings and groups.
//!
//! Tolerance: the normwise error ‖fast − ref‖∞ / max(‖ref‖∞, 1) ≤ 1e-5 for
//! all kernels whose sums are shorter than ~10⁴ terms; the dense kernels at
//! 80,000 inputs are held to 2e-5 (see `dense_long_sums`), since f32
//! accumulation error grows with the length of the sum.

mod common;
use common::{
    data, f64s, rel, same_bits, skewed, winograd_amplification, STREAMED, STREAMED_CASES,
};
use kernels::conv1d::{conv1d_backward, conv1d_forward, Conv1dParams, Padding};
use kernels::conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
use kernels::dense::{dense_backward, dense_forward};
use kernels::gemm::gemm_rows;
use kernels::pool::{self, Pool1dParams, Pool2dParams, PoolKind};
use kernels::{reference, with_path, SimdPath};
use proptest::prelude::*;

const LENGTHS: [usize; 14] = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 129];

fn padding() -> impl Strategy<Value = Padding> {
    prop_oneof![
        Just(Padding::Valid),
        Just(Padding::Same),
        (0usize..3, 0usize..3).prop_map(|(a, b)| Padding::Explicit(a, b))
    ]
}

proptest! {
    // Many draws are rejected (shapes that cannot work, near ties): allow
    // for that when PROPTEST_CASES asks for thousands of cases.
    #![proptest_config(ProptestConfig { max_global_rejects: 1 << 20, ..ProptestConfig::with_cases(64) })]

    #[test]
    fn conv1d_matches_reference(
        cig in 1usize..4, cog in 1usize..5, groups in 1usize..3, k in 1usize..6,
        stride in 1usize..3, dilation in 1usize..3, pad in padding(), batch in 1usize..3,
        li in 0usize..LENGTHS.len(), extra in 0usize..20, seed in 0u64..1000,
    ) {
        let p = Conv1dParams::new(cig * groups, cog * groups, k).stride(stride).dilation(dilation).padding(pad).groups(groups);
        let l = LENGTHS[li] + extra;
        prop_assume!(p.validate(l).is_ok());
        let lo = p.l_out(l);
        let x = data(batch * p.c_in * l, seed);
        let w = data(p.weight_len(), seed + 1);
        let b = data(p.c_out, seed + 2);
        let dy = data(batch * p.c_out * lo, seed + 3);
        let y_ref = reference::conv1d_forward(&p, &f64s(&x), batch, l, &f64s(&w), Some(&f64s(&b)));
        let (dx_ref, dw_ref, db_ref) = reference::conv1d_backward(&p, &f64s(&x), batch, l, &f64s(&w), &f64s(&dy));
        for path in SimdPath::available() {
            with_path(path, || {
                let mut y = vec![0f32; y_ref.len()];
                conv1d_forward(&p, &x, batch, l, &w, Some(&b), &mut y).expect("valid kernel parameters");
                assert!(rel(&y, &y_ref) <= 1e-5, "{path} forward {p:?} l={l}: {}", rel(&y, &y_ref));
                let mut dx = vec![0f32; x.len()];
                let mut dw = vec![0f32; w.len()];
                let mut db = vec![0f32; b.len()];
                conv1d_backward(&p, &x, batch, l, &w, &dy, Some(&mut dx), &mut dw, Some(&mut db)).expect("valid kernel parameters");
                assert!(rel(&dx, &dx_ref) <= 1e-5, "{path} dx {p:?} l={l}: {}", rel(&dx, &dx_ref));
                assert!(rel(&dw, &dw_ref) <= 1e-5, "{path} dw {p:?} l={l}: {}", rel(&dw, &dw_ref));
                assert!(rel(&db, &db_ref) <= 1e-5, "{path} db {p:?}");
            });
        }
    }

    #[test]
    fn conv2d_matches_reference(
        cig in 1usize..3, cog in 1usize..4, groups in 1usize..3, k in 1usize..4,
        stride in 1usize..3, dilation in 1usize..3, pad in padding(), batch in 1usize..3,
        h in 1usize..12, w_ in 1usize..19, seed in 0u64..1000,
    ) {
        let p = Conv2dParams::new(cig * groups, cog * groups, k).stride(stride).dilation(dilation).padding(pad).groups(groups);
        prop_assume!(p.validate(h, w_).is_ok());
        let (ho, wo) = p.out_hw(h, w_);
        let x = data(batch * p.c_in * h * w_, seed);
        let w = data(p.weight_len(), seed + 1);
        let b = data(p.c_out, seed + 2);
        let dy = data(batch * p.c_out * ho * wo, seed + 3);
        let y_ref = reference::conv2d_forward(&p, &f64s(&x), batch, h, w_, &f64s(&w), Some(&f64s(&b)));
        let (dx_ref, dw_ref, db_ref) = reference::conv2d_backward(&p, &f64s(&x), batch, h, w_, &f64s(&w), &f64s(&dy));
        for path in SimdPath::available() {
            with_path(path, || {
                let mut y = vec![0f32; y_ref.len()];
                conv2d_forward(&p, &x, batch, h, w_, &w, Some(&b), &mut y).expect("valid kernel parameters");
                assert!(rel(&y, &y_ref) <= 1e-5, "{path} forward {p:?}");
                let mut dx = vec![0f32; x.len()];
                let mut dw = vec![0f32; w.len()];
                let mut db = vec![0f32; b.len()];
                conv2d_backward(&p, &x, batch, h, w_, &w, &dy, Some(&mut dx), &mut dw, Some(&mut db)).expect("valid kernel parameters");
                assert!(rel(&dx, &dx_ref) <= 1e-5, "{path} dx {p:?}");
                assert!(rel(&dw, &dw_ref) <= 1e-5, "{path} dw {p:?}");
                assert!(rel(&db, &db_ref) <= 1e-5, "{path} db {p:?}");
            });
        }
    }

    #[test]
    fn dense_matches_reference(batch in 1usize..7, ni in 0usize..LENGTHS.len(), n_out in 1usize..10, seed in 0u64..1000) {
        let n_in = LENGTHS[ni];
        let x = data(batch * n_in, seed);
        let w = data(n_out * n_in, seed + 1);
        let b = data(n_out, seed + 2);
        let dy = data(batch * n_out, seed + 3);
        let y_ref = reference::dense_forward(&f64s(&x), batch, n_in, &f64s(&w), n_out, Some(&f64s(&b)));
        let (dx_ref, dw_ref, db_ref) = reference::dense_backward(&f64s(&x), batch, n_in, &f64s(&w), n_out, &f64s(&dy));
        for path in SimdPath::available() {
            with_path(path, || {
                let mut y = vec![0f32; batch * n_out];
                dense_forward(&x, batch, n_in, &w, n_out, Some(&b), &mut y).unwrap();
                assert!(rel(&y, &y_ref) <= 1e-5, "{path} dense forward");
                let (mut dx, mut dw, mut db) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; n_out]);
                dense_backward(&x, batch, n_in, &w, n_out, &dy, Some(&mut dx), &mut dw, Some(&mut db)).unwrap();
                assert!(rel(&dx, &dx_ref) <= 1e-5, "{path} dense dx");
                assert!(rel(&dw, &dw_ref) <= 1e-5, "{path} dense dw");
                assert!(rel(&db, &db_ref) <= 1e-5, "{path} dense db");
            });
        }
    }

    #[test]
    fn pooling_matches_reference(
        max in any::<bool>(), size in 1usize..5, stride in 1usize..4, pad in 0usize..3,
        rows in 1usize..5, li in 0usize..LENGTHS.len(), h in 1usize..9, seed in 0u64..1000,
    ) {
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let p = Pool1dParams { kind, size, stride, pad };
        let l = LENGTHS[li];
        prop_assume!(p.validate(l).is_ok());
        let lo = p.l_out(l);
        let x = data(rows * l, seed);
        let dy = data(rows * lo, seed + 1);
        let y_ref = reference::pool1d_forward(&p, &f64s(&x), rows, l);
        let dx_ref = reference::pool1d_backward(&p, &f64s(&x), rows, l, &f64s(&dy));
        for path in SimdPath::available() {
            with_path(path, || {
                let mut y = vec![0f32; rows * lo];
                pool::pool1d_forward(&p, &x, rows, l, &mut y).expect("valid kernel parameters");
                assert!(rel(&y, &y_ref) <= 1e-6, "{path} pool1d {p:?} l={l}");
                let mut dx = vec![0f32; x.len()];
                pool::pool1d_backward(&p, &x, rows, l, &dy, &mut dx).expect("valid kernel parameters");
                assert!(rel(&dx, &dx_ref) <= 1e-6, "{path} pool1d backward {p:?} l={l}");
            });
        }
        let p2 = Pool2dParams { kind, size: (size, size.max(2) - 1), stride: (stride, stride), pad: (pad, 0) };
        let w = l.min(17);
        prop_assume!(p2.validate(h, w).is_ok());
        let (ho, wo) = p2.out_hw(h, w);
        let x2 = data(rows * h * w, seed + 5);
        let y2_ref = reference::pool2d_forward(&p2, &f64s(&x2), rows, h, w);
        for path in SimdPath::available() {
            with_path(path, || {
                let mut y2 = vec![0f32; rows * ho * wo];
                pool::pool2d_forward(&p2, &x2, rows, h, w, &mut y2).expect("valid kernel parameters");
                assert!(rel(&y2, &y2_ref) <= 1e-6, "{path} pool2d {p2:?} {h}×{w}");
            });
        }
    }
}

#[test]
fn dense_long_sums() {
    // The genomic dense layer: 79,904 inputs. Normwise relative error ≤ 2e-5.
    let (batch, n_in, n_out) = (4, 79_904, 3);
    let x = data(batch * n_in, 1);
    let w = data(n_out * n_in, 2);
    let y_ref = reference::dense_forward(&f64s(&x), batch, n_in, &f64s(&w), n_out, None);
    for path in SimdPath::available() {
        with_path(path, || {
            let mut y = vec![0f32; batch * n_out];
            dense_forward(&x, batch, n_in, &w, n_out, None, &mut y).unwrap();
            let e = rel(&y, &y_ref);
            assert!(e <= 2e-5, "{path}: {e}");
        });
    }
}

/// A product whose C is 8 MiB or more, written rather than added to, is
/// stored with streaming stores from C's first 64-byte line on (the dense
/// layer's gradients). Each f32 path, one thread and several, C starting
/// 0–3 floats past a line, and rows a multiple of 16 apart (streamed) or
/// not (ordinary stores): every value within f32's rounding of its 5-term
/// sum (Higham's γ₆ with u = 2⁻²⁴), nothing outside C's columns written.
#[test]
fn large_products_stream_their_stores() {
    let (m, n, k) = STREAMED;
    let a = data(m * k, 31);
    let boff = |r: usize| r * (n + 3);
    let b = data(k * (n + 3), 32);
    let mut want = vec![0f64; m * n];
    let mut size = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            for r in 0..k {
                let t = a[i * k + r] as f64 * b[boff(r) + j] as f64;
                want[i * n + j] += t;
                size[i * n + j] += t.abs();
            }
        }
    }
    let bound = 6.0 * 2f64.powi(-24);
    for path in SimdPath::available().into_iter().filter(|p| !p.is_bf16()) {
        for (ldc, skew, parallel) in STREAMED_CASES {
            let (mut store, at) = skewed(m * ldc, skew);
            let c = &mut store[at..at + (m - 1) * ldc + n];
            gemm_rows(path, m, n, k, &a, k, &b, boff, c, ldc, false, parallel);
            for i in 0..m {
                for j in 0..ldc.min(c.len() - i * ldc) {
                    let got = c[i * ldc + j];
                    if j >= n {
                        assert!(got.is_nan(), "{path} ldc={ldc}: ({i}, {j}) past n written");
                        continue;
                    }
                    let e = (got as f64 - want[i * n + j]).abs();
                    assert!(
                        e <= bound * size[i * n + j] + 1e-30,
                        "{path} ldc={ldc} skew={skew} parallel={parallel}: ({i}, {j}) {got} against {}",
                        want[i * n + j]
                    );
                }
            }
            assert!(
                store[..at].iter().all(|v| v.is_nan()),
                "{path}: before C written"
            );
            // Where C starts does not change a value: the first columns,
            // stored before C's first full line, are summed as the rest.
            let (mut other, at2) = skewed(m * ldc, (skew + 1) % 4);
            let len = (m - 1) * ldc + n;
            let c2 = &mut other[at2..at2 + len];
            gemm_rows(path, m, n, k, &a, k, &b, boff, c2, ldc, false, parallel);
            let same = same_bits(c2, &store[at..at + len]);
            assert!(
                same,
                "{path} ldc={ldc}: C skewed by {skew} and by {} differ",
                (skew + 1) % 4
            );
        }
    }
}

#[test]
fn paths_agree_on_the_benchmark_shapes() {
    // The portable path and each SIMD path give the same results (to f32
    // rounding: the order of the sums differs) on the same inputs.
    let p = Conv1dParams::new(16, 32, 5);
    let (batch, l) = (3, 999);
    let x = data(batch * 16 * l, 7);
    let w = data(p.weight_len(), 8);
    let dy = data(batch * 32 * p.l_out(l), 9);
    let run = |path| {
        with_path(path, || {
            let mut y = vec![0f32; batch * 32 * p.l_out(l)];
            conv1d_forward(&p, &x, batch, l, &w, None, &mut y).expect("valid kernel parameters");
            let mut dx = vec![0f32; x.len()];
            let mut dw = vec![0f32; w.len()];
            conv1d_backward(&p, &x, batch, l, &w, &dy, Some(&mut dx), &mut dw, None)
                .expect("valid kernel parameters");
            (y, dx, dw)
        })
    };
    let (ys, dxs, dws) = run(SimdPath::Scalar);
    for path in SimdPath::available() {
        let (y, dx, dw) = run(path);
        assert!(rel(&y, &f64s(&ys)) <= 1e-6, "{path} y");
        assert!(rel(&dx, &f64s(&dxs)) <= 1e-6, "{path} dx");
        assert!(rel(&dw, &f64s(&dws)) <= 1e-5, "{path} dw");
    }
}

#[test]
fn env_selects_the_path() {
    // GENOCNN_SIMD is read once per process; a child process checks it.
    let exe = std::env::current_exe().unwrap();
    for path in SimdPath::available() {
        let out = std::process::Command::new(&exe)
            .args([
                "--exact",
                "print_current_path",
                "--nocapture",
                "--include-ignored",
            ])
            .env("GENOCNN_SIMD", path.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("current path: {path}")),
            "{path}: {text}"
        );
    }
}

#[test]
#[ignore = "run by env_selects_the_path in a child process"]
fn print_current_path() {
    println!("current path: {}", SimdPath::current());
}

#[test]
fn large_shapes_take_the_parallel_paths() {
    // Sizes past the thresholds where the GEMMs split work over threads.
    let (batch, n_in, n_out) = (8, 5000, 20);
    let x = data(batch * n_in, 31);
    let w = data(n_out * n_in, 32);
    let dy = data(batch * n_out, 33);
    let (dx_ref, dw_ref, _) =
        reference::dense_backward(&f64s(&x), batch, n_in, &f64s(&w), n_out, &f64s(&dy));
    let y_ref = reference::dense_forward(&f64s(&x), batch, n_in, &f64s(&w), n_out, None);
    let mut y = vec![0f32; batch * n_out];
    dense_forward(&x, batch, n_in, &w, n_out, None, &mut y).unwrap();
    assert!(rel(&y, &y_ref) <= 1e-5, "dense y {}", rel(&y, &y_ref));
    let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
    dense_backward(
        &x,
        batch,
        n_in,
        &w,
        n_out,
        &dy,
        Some(&mut dx),
        &mut dw,
        None,
    )
    .unwrap();
    assert!(rel(&dx, &dx_ref) <= 1e-5, "dense dx {}", rel(&dx, &dx_ref));
    assert!(rel(&dw, &dw_ref) <= 1e-5, "dense dw {}", rel(&dw, &dw_ref));
    for batch in [1, 3] {
        let p = Conv1dParams::new(2, 5, 5);
        let l = 3000;
        let x = data(batch * 2 * l, 34);
        let w = data(p.weight_len(), 35);
        let dy = data(batch * 5 * p.l_out(l), 36);
        let y_ref = reference::conv1d_forward(&p, &f64s(&x), batch, l, &f64s(&w), None);
        let (dx_ref, dw_ref, _) =
            reference::conv1d_backward(&p, &f64s(&x), batch, l, &f64s(&w), &f64s(&dy));
        let mut y = vec![0f32; y_ref.len()];
        conv1d_forward(&p, &x, batch, l, &w, None, &mut y).expect("valid kernel parameters");
        assert!(rel(&y, &y_ref) <= 1e-5, "conv y batch {batch}");
        let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
        conv1d_backward(&p, &x, batch, l, &w, &dy, Some(&mut dx), &mut dw, None)
            .expect("valid kernel parameters");
        assert!(rel(&dx, &dx_ref) <= 1e-5, "conv dx batch {batch}");
        assert!(
            rel(&dw, &dw_ref) <= 1e-5,
            "conv dw batch {batch}: {}",
            rel(&dw, &dw_ref)
        );
    }
}

/// One case of the fused 1D convolution + activation + max pool of 2
/// against the three kernels run one after the other, forward and
/// backward, on every SIMD path.
///
/// The fused pass may compute the convolution another way (blocked, or
/// through Winograd's transforms), so its sums differ from the unfused
/// kernel's by rounding, and a window whose two values are that close may
/// be resolved either way: both are valid subgradients, and so are both
/// derivatives of a ReLU whose input is within rounding of its kink. So
/// the pooled values are checked against the unfused kernels, each
/// window's choice is checked to be a maximum within that rounding, and
/// the backward pass is checked against the unfused backward kernels run
/// with the fused pass's choices.
fn fused_conv_pool_case(
    p: Conv1dParams,
    l: usize,
    batch: usize,
    act: kernels::Activation,
    seed: u64,
) -> Result<(), TestCaseError> {
    use kernels::pool::{pool1d_forward, Pool1dParams, PoolKind};
    prop_assume!(p.validate(l).is_ok() && p.l_out(l) >= 2);
    let lo = p.l_out(l);
    let lp2 = lo / 2;
    let x = data(batch * p.c_in * l, seed);
    let w = data(p.weight_len(), seed + 1);
    let b = data(p.c_out, seed + 2);
    let dy = data(batch * p.c_out * lp2, seed + 3);
    // Unfused: conv, activation, pool.
    let mut z = vec![0f32; batch * p.c_out * lo];
    conv1d_forward(&p, &x, batch, l, &w, Some(&b), &mut z).expect("valid kernel parameters");
    let mut a = vec![0f32; z.len()];
    act.forward(&z, &mut a).unwrap();
    let mut y_ref = vec![0f32; dy.len()];
    let pp = Pool1dParams::new(PoolKind::Max, 2);
    pool1d_forward(&pp, &a, batch * p.c_out, lo, &mut y_ref).expect("valid kernel parameters");
    // The activation's derivative at every z.
    let mut derivative = vec![0f32; z.len()];
    act.backward(&z, &vec![1f32; z.len()], &mut derivative)
        .unwrap();
    let z_scale = z.iter().fold(1f64, |m, v| m.max(v.abs() as f64));
    // Each f32 path with Winograd's transforms forced on and off, where
    // they apply (bench kernels and the README say which is the default).
    let runs = SimdPath::available()
        .into_iter()
        .flat_map(|path| [(path, true), (path, false)]);
    for (path, wino) in runs {
        let under = |f: &mut dyn FnMut()| with_path(path, || kernels::with_winograd(wino, f));
        let close = |what: &str, got: &[f32], want: &[f32], tol: f64| {
            let e = rel(got, &f64s(want));
            assert!(
                e <= tol,
                "{path} (Winograd {wino}) {what} {e}, tolerance {tol:e}"
            );
        };
        // Where a pass runs Winograd's minimal filtering (f32 paths, stride
        // 1, undilated, ungrouped, 3 to 5 taps, at least 4 channels summed),
        // its rounding may grow by the transforms' amplification: the
        // direct kernels' tolerances are scaled by it (13 to 19 here).
        let winograd = |channels: usize, m: usize, r: usize| {
            let on = wino
                && !path.is_bf16()
                && p.stride == 1
                && p.dilation == 1
                && p.groups == 1
                && (3..=5).contains(&p.k)
                && channels >= 4;
            if on {
                winograd_amplification(m, r)
            } else {
                1.0
            }
        };
        let (tol_y, tol_dx, tol_dw) = (
            1e-5 * winograd(p.c_in, 4, p.k),
            1e-4 * winograd(p.c_out, 4, p.k),
            1e-4 * winograd(p.c_in, p.k, 4),
        );
        let (mut y, mut mask) = (vec![0f32; dy.len()], vec![0f32; dy.len()]);
        under(&mut || {
            kernels::conv1d::conv1d_act_maxpool2_forward(
                &p,
                act,
                &x,
                batch,
                l,
                &w,
                Some(&b),
                &mut y,
                &mut mask,
            )
            .expect("valid kernel parameters");
            // Inference (no mask) pools the same values.
            let mut y_only = vec![0f32; dy.len()];
            kernels::conv1d::conv1d_act_maxpool2_forward(
                &p,
                act,
                &x,
                batch,
                l,
                &w,
                Some(&b),
                &mut y_only,
                &mut [],
            )
            .expect("valid kernel parameters");
            assert_eq!(y_only, y, "{path} (Winograd {wino}) y without a mask");
        });
        close("y", &y, &y_ref, tol_y);
        // Each window's choice (the mask's sign: negative for the second)
        // and derivative, against the unfused values, within the rounding
        // of two sums that the forward tolerance allows.
        let slack = (2.0 * tol_y * z_scale) as f32;
        let mut dz = vec![0f32; z.len()];
        for (row, (zr, dzr)) in z.chunks(lo).zip(dz.chunks_mut(lo)).enumerate() {
            for j in 0..lp2 {
                let (at, m) = (row * lp2 + j, mask[row * lp2 + j]);
                let pick = 2 * j + usize::from(m.is_sign_negative());
                let other = 4 * j + 1 - pick;
                assert!(
                    zr[pick] >= zr[other] - slack,
                    "{path} window {j} of row {row} picked {} over {}",
                    zr[pick],
                    zr[other]
                );
                let want = derivative[row * lo + pick];
                let at_kink = act == kernels::Activation::Relu && zr[pick].abs() <= slack;
                let d = if at_kink && (m.abs() == 0.0 || m.abs() == 1.0) {
                    m.abs()
                } else {
                    assert!(
                        (m.abs() - want).abs() <= 2.0 * slack + 1e-6,
                        "{path} window {j} of row {row}: derivative {} against {want}",
                        m.abs()
                    );
                    want
                };
                dzr[pick] = dy[at] * d;
            }
        }
        let (mut dx_ref, mut dw_ref, mut db_ref) = (
            vec![0f32; x.len()],
            vec![0f32; w.len()],
            vec![0f32; b.len()],
        );
        conv1d_backward(
            &p,
            &x,
            batch,
            l,
            &w,
            &dz,
            Some(&mut dx_ref),
            &mut dw_ref,
            Some(&mut db_ref),
        )
        .expect("valid kernel parameters");
        // Backward, with and without the input gradient (the first layer
        // of a network needs none).
        under(&mut || {
            let (mut dx, mut dw, mut db) = (
                vec![0f32; x.len()],
                vec![0f32; w.len()],
                vec![0f32; b.len()],
            );
            kernels::conv1d::conv1d_act_maxpool2_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &mask,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid kernel parameters");
            close("dx", &dx, &dx_ref, tol_dx);
            close("dw", &dw, &dw_ref, tol_dw);
            close("db", &db, &db_ref, 1e-4);
            let (mut dw2, mut db2) = (vec![0f32; w.len()], vec![0f32; b.len()]);
            kernels::conv1d::conv1d_act_maxpool2_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &mask,
                &dy,
                None,
                &mut dw2,
                Some(&mut db2),
            )
            .expect("valid kernel parameters");
            close("dw without dx", &dw2, &dw_ref, tol_dw);
            close("db without dx", &db2, &db_ref, 1e-4);
        });
    }
    Ok(())
}

/// The Winograd tolerances' amplification factors, against the same
/// maxima worked out separately in exact rational arithmetic (Python's
/// `fractions`): F(4, 3), F(4, 4), F(4, 5) and the weight gradient's
/// F(3, 4), F(5, 4).
#[test]
fn winograd_amplification_is_toom_cooks() {
    for (m, r, want) in [
        (4, 3, 16.0),
        (4, 4, 331.0 / 18.0),
        (4, 5, 781.0 / 45.0),
        (3, 4, 40.0 / 3.0),
        (5, 4, 695.0 / 36.0),
    ] {
        let got = winograd_amplification(m, r);
        assert!(
            (got - want).abs() <= 1e-12 * want,
            "F({m}, {r}): {got} against {want}"
        );
    }
}

/// `with_winograd` chooses how each pass of the fused 1D convolution + pool
/// runs on every f32 path: forced on and off, the genomic CNN's second
/// layer (16 → 32, 5 taps) gives a forward pass, an input gradient and a
/// weight gradient rounded differently (so each pass really ran another
/// way), all within the tolerances of `fused_conv_pool_case`, which runs
/// both on random shapes.
#[test]
fn with_winograd_switches_every_pass() {
    use kernels::conv1d::{conv1d_act_maxpool2_backward, conv1d_act_maxpool2_forward};
    let p = Conv1dParams::new(16, 32, 5);
    let (batch, l) = (2, 700);
    let lp2 = p.l_out(l) / 2;
    let x = data(batch * p.c_in * l, 1);
    let w = data(p.weight_len(), 2);
    let b = data(p.c_out, 3);
    let dy = data(batch * p.c_out * lp2, 4);
    for path in SimdPath::available() {
        // The mask of one run serves both backward passes.
        let mut mask = vec![0f32; dy.len()];
        let run = |on: bool, mask: &mut [f32], mask_in: &[f32]| {
            with_path(path, || {
                kernels::with_winograd(on, || {
                    let mut y = vec![0f32; dy.len()];
                    conv1d_act_maxpool2_forward(
                        &p,
                        kernels::Activation::Relu,
                        &x,
                        batch,
                        l,
                        &w,
                        Some(&b),
                        &mut y,
                        mask,
                    )
                    .expect("valid kernel parameters");
                    let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
                    let m = if mask_in.is_empty() { &*mask } else { mask_in };
                    conv1d_act_maxpool2_backward(
                        &p,
                        &x,
                        batch,
                        l,
                        &w,
                        m,
                        &dy,
                        Some(&mut dx),
                        &mut dw,
                        None,
                    )
                    .expect("valid kernel parameters");
                    (y, dx, dw)
                })
            })
        };
        let direct = run(false, &mut mask, &[]);
        let mut mask_on = vec![0f32; dy.len()];
        let transformed = run(true, &mut mask_on, &mask);
        for (what, a, b, tol) in [
            (
                "y",
                &direct.0,
                &transformed.0,
                1e-5 * winograd_amplification(4, 5),
            ),
            (
                "dx",
                &direct.1,
                &transformed.1,
                2e-4 * winograd_amplification(4, 5),
            ),
            (
                "dw",
                &direct.2,
                &transformed.2,
                2e-4 * winograd_amplification(5, 4),
            ),
        ] {
            assert!(
                !same_bits(a, b),
                "{path} {what}: the same bits with and without Winograd"
            );
            let e = rel(b, &f64s(a));
            assert!(e <= tol, "{path} {what}: {e} apart, tolerance {tol:e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { max_global_rejects: 1 << 20, ..ProptestConfig::with_cases(32) })]

    /// The fused convolution + activation + max pool of 2 equals the three
    /// kernels run one after the other, forward and backward.
    #[test]
    fn fused_conv_pool_equals_the_unfused_kernels(
        cig in 1usize..3, cog in 1usize..4, groups in 1usize..3, k in 1usize..6, dilation in 1usize..3,
        stride in 1usize..4, pad in padding(), batch in 1usize..4, l in prop_oneof![4usize..300, 2000usize..4500, 5000usize..10600], relu in any::<bool>(), seed in 0u64..1000,
    ) {
        let p = Conv1dParams::new(cig * groups, cog * groups, k).stride(stride).dilation(dilation).padding(pad).groups(groups);
        let act = if relu { kernels::Activation::Relu } else { kernels::Activation::Tanh };
        fused_conv_pool_case(p, l, batch, act, seed)?;
    }

    /// The same with 4 or more input channels and 3 to 5 taps, where the
    /// fused forward pass runs Winograd's F(4, k) (and, with 4 or more
    /// output channels, the input gradient too): lengths from one tile to
    /// several blocks of 128 tiles and of the backward pass's 5,120
    /// columns, tails of every length.
    #[test]
    fn winograd_conv_pool_equals_the_unfused_kernels(
        cin in 4usize..18, cout in 1usize..10, k in 3usize..6, pad in padding(), batch in 1usize..3,
        l in prop_oneof![8usize..80, 500usize..1200, 2040usize..4200, 5100usize..10400], act in 0usize..3, seed in 0u64..1000,
    ) {
        use kernels::Activation;
        let p = Conv1dParams::new(cin, cout, k).padding(pad);
        let act = [Activation::Relu, Activation::Tanh, Activation::Linear][act];
        fused_conv_pool_case(p, l, batch, act, seed)?;
    }

    /// The fused 2D convolution + activation + 2 × 2 max pool equals the
    /// three kernels run one after the other, forward and backward.
    #[test]
    fn fused_conv2d_pool_equals_the_unfused_kernels(
        cig in 1usize..3, cog in 1usize..4, groups in 1usize..3, k in 1usize..5,
        pad in padding(), batch in 1usize..3, h in 2usize..15, w_ in 2usize..72, relu in any::<bool>(), seed in 0u64..1000,
    ) {
        use kernels::conv2d::{conv2d_act_maxpool2_backward, conv2d_act_maxpool2_forward, fusable_with_pool2};
        use kernels::pool::{pool2d_backward, pool2d_forward, Pool2dParams, PoolKind};
        use kernels::Activation;
        let p = Conv2dParams::new(cig * groups, cog * groups, k).padding(pad).groups(groups);
        prop_assume!(fusable_with_pool2(&p, h, w_));
        let act = if relu { Activation::Relu } else { Activation::Tanh };
        let (ho, wo) = p.out_hw(h, w_);
        let (hq, wq) = (ho / 2, wo / 2);
        let x = data(batch * p.c_in * h * w_, seed);
        let w = data(p.weight_len(), seed + 1);
        let b = data(p.c_out, seed + 2);
        let dy = data(batch * p.c_out * hq * wq, seed + 3);
        let mut z = vec![0f32; batch * p.c_out * ho * wo];
        conv2d_forward(&p, &x, batch, h, w_, &w, Some(&b), &mut z).expect("valid kernel parameters");
        let mut a = vec![0f32; z.len()];
        act.forward(&z, &mut a).unwrap();
        let pp = Pool2dParams::new(PoolKind::Max, 2);
        // Near ties and ReLU kinks may be resolved either way: leave such
        // draws out (looked for before the activation, as in 1D).
        let clear = z.chunks(ho * wo).all(|pl| {
            (0..hq * wq).all(|q| {
                let (py, px) = (q / wq, q % wq);
                let mut v: Vec<f32> = (0..4).map(|k| pl[(2 * py + k / 2) * wo + 2 * px + k % 2]).collect();
                v.sort_by(|a, b| b.total_cmp(a));
                // A near tie, or a ReLU's kink at a maximum within rounding of 0.
                v[0] - v[1] > 1e-6 && !(relu && v[0].abs() <= 1e-6)
            })
        });
        prop_assume!(clear);
        let mut y_ref = vec![0f32; dy.len()];
        pool2d_forward(&pp, &a, batch * p.c_out, ho, wo, &mut y_ref).expect("valid kernel parameters");
        let mut da = vec![0f32; z.len()];
        pool2d_backward(&pp, &a, batch * p.c_out, ho, wo, &dy, &mut da).expect("valid kernel parameters");
        let mut dz = vec![0f32; z.len()];
        act.backward(&z, &da, &mut dz).unwrap();
        let (mut dx_ref, mut dw_ref, mut db_ref) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; b.len()]);
        conv2d_backward(&p, &x, batch, h, w_, &w, &dz, Some(&mut dx_ref), &mut dw_ref, Some(&mut db_ref)).expect("valid kernel parameters");
        for path in SimdPath::available() {
            with_path(path, || {
                let (mut y, mut mask) = (vec![0f32; dy.len()], vec![0f32; 2 * dy.len()]);
                conv2d_act_maxpool2_forward(&p, act, &x, batch, h, w_, &w, Some(&b), &mut y, &mut mask).expect("valid kernel parameters");
                assert!(rel(&y, &f64s(&y_ref)) <= 1e-5, "{path} y {}", rel(&y, &f64s(&y_ref)));
                // Inference (no mask) pools the same values.
                let mut y_only = vec![0f32; dy.len()];
                conv2d_act_maxpool2_forward(&p, act, &x, batch, h, w_, &w, Some(&b), &mut y_only, &mut []).expect("valid kernel parameters");
                assert_eq!(y_only, y, "{path} y without a mask");
                let (mut dx, mut dw, mut db) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; b.len()]);
                conv2d_act_maxpool2_backward(&p, &x, batch, h, w_, &w, &mask, &dy, Some(&mut dx), &mut dw, Some(&mut db)).expect("valid kernel parameters");
                assert!(rel(&dx, &f64s(&dx_ref)) <= 1e-4, "{path} dx {}", rel(&dx, &f64s(&dx_ref)));
                assert!(rel(&dw, &f64s(&dw_ref)) <= 1e-4, "{path} dw {}", rel(&dw, &f64s(&dw_ref)));
                assert!(rel(&db, &f64s(&db_ref)) <= 1e-4, "{path} db {}", rel(&db, &f64s(&db_ref)));
            });
        }
    }
}

/// Invalid parameters and buffers are errors a caller can report, not
/// panics (issue 16): each names the operation and what is wrong.
#[test]
fn kernels_refuse_bad_parameters_and_buffers_with_typed_errors() {
    use kernels::conv1d::{conv1d_forward, Conv1dParams};
    use kernels::pool::{pool2d_backward, Pool2dParams, PoolKind};
    use kernels::KernelError;
    // A kernel of 5 over 3 values, without padding.
    let p = Conv1dParams::new(1, 1, 5);
    let (x, w) = (vec![0f32; 3], vec![0f32; 5]);
    let mut y = vec![0f32; 1];
    match conv1d_forward(&p, &x, 1, 3, &w, None, &mut y) {
        Err(KernelError::Params { op, .. }) => assert_eq!(op, "conv1d_forward"),
        other => panic!("expected a parameter error, got {other:?}"),
    }
    // A weight buffer of the wrong length.
    let p = Conv1dParams::new(1, 2, 3);
    let x = vec![0f32; 10];
    let mut y = vec![0f32; 2 * 8];
    assert_eq!(
        conv1d_forward(&p, &x, 1, 10, &[0.0; 5], None, &mut y),
        Err(KernelError::Length {
            op: "conv1d_forward",
            buffer: "weight",
            found: 5,
            expected: 6
        })
    );
    // Pooling with a window larger than the input.
    let pp = Pool2dParams::new(PoolKind::Max, 4);
    let mut dx = vec![0f32; 4];
    let e = pool2d_backward(&pp, &[0.0; 4], 1, 2, 2, &[0.0; 1], &mut dx).unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::Params {
                op: "pool2d_backward",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with("pool2d_backward: "), "{e}");
}

/// The other kernels (dense, batch norm, activations, softmax, global
/// pooling, the optimizers, dropout) refuse a buffer of the wrong length or
/// a parameter they cannot use with a typed error, and write nothing then
/// (issue 16): each case names the operation, the buffer, and both lengths.
#[test]
fn every_kernel_reports_wrong_lengths_as_typed_errors_and_writes_nothing() {
    use kernels::norm::{
        batchnorm_backward, batchnorm_forward_infer, batchnorm_forward_train, dropout_mask,
        BatchNormCache,
    };
    use kernels::optim::{adam_step, sgd_step, AdamStep};
    use kernels::pool::{global_pool_backward, global_pool_forward};
    use kernels::{softmax_cross_entropy, Activation, KernelError};
    fn length(
        op: &'static str,
        buffer: &'static str,
        found: usize,
        expected: usize,
    ) -> KernelError {
        KernelError::Length {
            op,
            buffer,
            found,
            expected,
        }
    }
    const SENTINEL: f32 = 7.25;
    let untouched = |v: &[f32]| v.iter().all(|&x| x == SENTINEL);

    // Dense: batch 2, 3 → 4.
    let (x, w) = (vec![1f32; 6], vec![1f32; 12]);
    let mut y = vec![SENTINEL; 8];
    assert_eq!(
        dense_forward(&x, 2, 3, &w[..11], 4, None, &mut y),
        Err(length("dense_forward", "weight", 11, 12))
    );
    assert_eq!(
        dense_forward(&x, 2, 3, &w, 4, Some(&[0.0; 3]), &mut y),
        Err(length("dense_forward", "bias", 3, 4))
    );
    assert!(untouched(&y));
    let (mut dw, mut db, mut dx) = (vec![SENTINEL; 12], vec![SENTINEL; 4], vec![SENTINEL; 5]);
    assert_eq!(
        dense_backward(
            &x,
            2,
            3,
            &w,
            4,
            &[0.0; 8],
            Some(&mut dx),
            &mut dw,
            Some(&mut db)
        ),
        Err(length("dense_backward", "dx", 5, 6))
    );
    assert!(untouched(&dw) && untouched(&db) && untouched(&dx));

    // Batch norm: batch 2, 3 channels, 2 positions.
    let x = vec![1f32; 12];
    let (mut rm, mut rv, mut y) = (vec![SENTINEL; 3], vec![SENTINEL; 3], vec![SENTINEL; 12]);
    assert_eq!(
        batchnorm_forward_train(
            &x, 2, 3, 2, &[1.0; 3], &[0.0; 2], 1e-5, 0.1, &mut rm, &mut rv, &mut y
        ),
        Err(length("batchnorm_forward_train", "beta", 2, 3))
    );
    assert!(untouched(&rm) && untouched(&rv) && untouched(&y));
    assert_eq!(
        batchnorm_forward_infer(
            &x, 2, 3, 2, &[1.0; 3], &[0.0; 3], 1e-5, &[0.0; 3], &[1.0; 4], &mut y
        ),
        Err(length("batchnorm_forward_infer", "running variance", 4, 3))
    );
    assert!(untouched(&y));
    let cache = BatchNormCache {
        mean: vec![0.0; 3],
        inv_std: vec![1.0; 2],
    };
    let (mut dx, mut dg, mut dbeta) = (vec![SENTINEL; 12], vec![SENTINEL; 3], vec![SENTINEL; 3]);
    assert_eq!(
        batchnorm_backward(
            &x, 2, 3, 2, &[1.0; 3], &cache, &[0.0; 12], &mut dx, &mut dg, &mut dbeta
        ),
        Err(length("batchnorm_backward", "saved inverse std", 2, 3))
    );
    assert!(untouched(&dx) && untouched(&dg) && untouched(&dbeta));

    // Activations.
    let mut y = vec![SENTINEL; 4];
    assert_eq!(
        Activation::Relu.forward(&[1.0; 5], &mut y),
        Err(length("activation_forward", "y", 4, 5))
    );
    assert_eq!(
        Activation::Tanh.backward(&[1.0; 4], &[1.0; 3], &mut y),
        Err(length("activation_backward", "dy", 3, 4))
    );
    assert!(untouched(&y));

    // Softmax cross-entropy: a label past the classes, and short labels.
    let (mut probs, mut dz) = (vec![SENTINEL; 6], vec![SENTINEL; 6]);
    let e = softmax_cross_entropy(&[0.0; 6], 2, 3, &[0, 3], &mut probs, &mut dz).unwrap_err();
    assert!(
        matches!(e, KernelError::Params { op: "softmax_cross_entropy", ref message } if message.contains("sample 1 is 3")),
        "{e}"
    );
    assert_eq!(
        softmax_cross_entropy(&[0.0; 6], 2, 3, &[0], &mut probs, &mut dz),
        Err(length("softmax_cross_entropy", "labels", 1, 2))
    );
    assert!(untouched(&probs) && untouched(&dz));

    // Global pooling: short outputs, and rows of length 0.
    let mut y = vec![SENTINEL; 2];
    assert_eq!(
        global_pool_forward(PoolKind::Max, &[1.0; 6], 3, 2, &mut y),
        Err(length("global_pool_forward", "y", 2, 3))
    );
    assert!(matches!(
        global_pool_forward(PoolKind::Avg, &[], 2, 0, &mut y),
        Err(KernelError::Params {
            op: "global_pool_forward",
            ..
        })
    ));
    let mut dx = vec![SENTINEL; 6];
    assert_eq!(
        global_pool_backward(PoolKind::Avg, &[1.0; 6], 3, 2, &[1.0; 2], &mut dx),
        Err(length("global_pool_backward", "dy", 2, 3))
    );
    assert!(untouched(&y) && untouched(&dx));

    // Optimizers.
    let mut p = vec![SENTINEL; 4];
    let (mut m, mut v) = (vec![SENTINEL; 4], vec![SENTINEL; 3]);
    let h = AdamStep {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        step: 1,
    };
    assert_eq!(
        adam_step(h, &mut p, &[1.0; 4], &mut m, &mut v),
        Err(length("adam_step", "second moment", 3, 4))
    );
    assert_eq!(
        sgd_step(0.1, 0.9, false, 0.0, &mut p, &[1.0; 5], &mut m),
        Err(length("sgd_step", "gradient", 5, 4))
    );
    assert!(untouched(&p) && untouched(&m) && untouched(&v));

    // Dropout at a rate of 1 or NaN.
    let mut mask = vec![SENTINEL; 4];
    for rate in [1.0, f32::NAN, -0.1] {
        let e = dropout_mask(rate, 1, &mut mask).unwrap_err();
        assert!(
            matches!(
                e,
                KernelError::Params {
                    op: "dropout_mask",
                    ..
                }
            ),
            "{e}"
        );
    }
    assert!(untouched(&mask));
}

/// A convolution with one input channel (a genomic CNN's first layer) +
/// ReLU or linear + max pool of 2 has kernels of its own: they are held
/// to the naive f64 reference written out here (the convolution from
/// `reference`, then the window's maximum and the activation's
/// derivative), on every path, at pooled lengths around the vector widths
/// (7–9, 15–17, 31–33), every kernel size they are compiled for and the
/// first one they are not (13), every padding, with and without a bias
/// and a mask, and on the bf16 path (which runs them in f32).
#[test]
fn single_channel_conv_pool_matches_the_naive_reference() {
    use kernels::conv1d::{conv1d_act_maxpool2_backward, conv1d_act_maxpool2_forward};
    use kernels::Activation;
    let mut paths = SimdPath::available();
    paths.extend(SimdPath::available_bf16());
    let mut cases = 0;
    for k in 1..=13usize {
        for pad in [Padding::Valid, Padding::Same, Padding::Explicit(3, 1)] {
            for lp2 in [1usize, 7, 8, 9, 15, 16, 17, 31, 32, 33, 200] {
                for (act, bias, c_out) in [
                    (Activation::Relu, true, 5usize),
                    (Activation::Linear, false, 4),
                ] {
                    let p = Conv1dParams::new(1, c_out, k).padding(pad);
                    // The input length that gives 2·lp2 or 2·lp2 + 1 outputs.
                    let Some(l) = (1..4 * lp2 + 40).find(|&l| {
                        p.validate(l).is_ok() && p.l_out(l) / 2 == lp2 && p.l_out(l) % 2 == (k % 2)
                    }) else {
                        continue;
                    };
                    let batch = 3;
                    let lo = p.l_out(l);
                    let seed = (k * 1000 + lp2) as u64;
                    let x = data(batch * l, seed);
                    let w = data(p.weight_len(), seed + 1);
                    let b = data(c_out, seed + 2);
                    let dy = data(batch * c_out * lp2, seed + 3);
                    let bias = bias.then_some(&b[..]);
                    let z = reference::conv1d_forward(
                        &p,
                        &f64s(&x),
                        batch,
                        l,
                        &f64s(&w),
                        bias.map(f64s).as_deref(),
                    );
                    // Leave out draws with a near tie in a window or a ReLU
                    // kink at its maximum: either choice is a valid subgradient.
                    let clear = z.chunks(lo).all(|r| {
                        r[..2 * lp2].chunks(2).all(|v| {
                            (v[0] - v[1]).abs() > 1e-5
                                && (act == Activation::Linear || v[0].max(v[1]).abs() > 1e-5)
                        })
                    });
                    if !clear {
                        continue;
                    }
                    let relu = act == Activation::Relu;
                    let (mut y_ref, mut dz) = (vec![0f64; dy.len()], vec![0f64; z.len()]);
                    for (row, (zr, dzr)) in z.chunks(lo).zip(dz.chunks_mut(lo)).enumerate() {
                        for j in 0..lp2 {
                            let second = zr[2 * j + 1] > zr[2 * j];
                            let m = zr[2 * j + usize::from(second)];
                            let (out, der) = if relu && m <= 0.0 {
                                (0.0, 0.0)
                            } else {
                                (m, 1.0)
                            };
                            y_ref[row * lp2 + j] = out;
                            dzr[2 * j + usize::from(second)] = dy[row * lp2 + j] as f64 * der;
                        }
                    }
                    let (_, dw_ref, db_ref) =
                        reference::conv1d_backward(&p, &f64s(&x), batch, l, &f64s(&w), &dz);
                    // k = 13 runs the general kernels, whose bf16 path
                    // tests/bf16.rs holds to bf16's own bound.
                    for &path in paths.iter().filter(|p| k <= 12 || !p.is_bf16()) {
                        with_path(path, || {
                            let (mut y, mut mask) = (vec![0f32; dy.len()], vec![0f32; dy.len()]);
                            conv1d_act_maxpool2_forward(
                                &p, act, &x, batch, l, &w, bias, &mut y, &mut mask,
                            )
                            .expect("valid kernel parameters");
                            let what = format!("{path} k={k} {pad:?} l={l} lp2={lp2} {act:?}");
                            let tol = 1e-5;
                            assert!(rel(&y, &y_ref) <= tol, "{what} y {}", rel(&y, &y_ref));
                            let mut y2 = vec![0f32; dy.len()];
                            conv1d_act_maxpool2_forward(
                                &p,
                                act,
                                &x,
                                batch,
                                l,
                                &w,
                                bias,
                                &mut y2,
                                &mut [],
                            )
                            .expect("valid kernel parameters");
                            assert_eq!(y, y2, "{what}: the output without a mask");
                            let (mut dw, mut db) = (vec![0.5f32; w.len()], vec![0.25f32; c_out]);
                            conv1d_act_maxpool2_backward(
                                &p,
                                &x,
                                batch,
                                l,
                                &w,
                                &mask,
                                &dy,
                                None,
                                &mut dw,
                                Some(&mut db),
                            )
                            .expect("valid kernel parameters");
                            // The backward pass adds to what dw and db held.
                            let dw_want: Vec<f64> = dw_ref.iter().map(|v| v + 0.5).collect();
                            let db_want: Vec<f64> = db_ref.iter().map(|v| v + 0.25).collect();
                            assert!(
                                rel(&dw, &dw_want) <= tol,
                                "{what} dw {}",
                                rel(&dw, &dw_want)
                            );
                            assert!(
                                rel(&db, &db_want) <= tol,
                                "{what} db {}",
                                rel(&db, &db_want)
                            );
                        });
                    }
                    cases += 1;
                }
            }
        }
    }
    assert!(cases >= 150, "only {cases} cases were clear of ties");
}

/// A panic inside `with_path` (caught, as a test harness or a worker pool
/// catches it) leaves no path forced on the thread, and nested overrides
/// unwind to the one outside them.
#[test]
fn with_path_restores_the_path_after_a_panic() {
    let detected = SimdPath::current();
    let inner = SimdPath::Scalar;
    let outer = SimdPath::available()[0];
    let caught = std::panic::catch_unwind(|| {
        with_path(inner, || {
            assert_eq!(SimdPath::current(), inner);
            panic!("a kernel failed");
        })
    });
    assert!(caught.is_err());
    assert_eq!(SimdPath::current(), detected);
    with_path(outer, || {
        let _ = std::panic::catch_unwind(|| with_path(inner, || panic!("inner")));
        assert_eq!(SimdPath::current(), outer);
    });
    assert_eq!(SimdPath::current(), detected);
}
