// The body of tests/bf16.rs, compiled once per bf16 path (PATH).

use crate::common::{data, f64s, same_bits, skewed, STREAMED, STREAMED_CASES};
use kernels::bf16::{from_bits, round, to_bits};
use kernels::conv1d::{conv1d_backward, conv1d_forward, Conv1dParams, Padding};
use kernels::conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
use kernels::dense::{dense_backward, dense_forward};
use kernels::gemm::{gemm_dots, gemm_dots_segments, gemm_rows_bias, Segments};
use kernels::{reference, with_path, SimdPath};

fn skip() -> bool {
    if PATH.is_available() {
        return false;
    }
    eprintln!("skipped: this CPU cannot run the {PATH} path");
    true
}

fn accumulation_bound(len: usize) -> f64 {
    len as f64 * 2f64.powi(-23)
}

fn product_bound(len: usize) -> f64 {
    2f64.powi(-7) + 2f64.powi(-16) + accumulation_bound(len)
}

/// Bit patterns that test the rounding: ties, values just off ties, the
/// largest finite values, denormals, infinities, NaN, signed zeros.
fn awkward_values() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        1e-40,
        -1e-40,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for base in [
        0x3f80_0000u32,
        0x4049_0fdb,
        0x7f7f_0000,
        0x0080_0000,
        0xbf80_0000,
    ] {
        for low in [
            0x7fffu32, 0x8000, 0x8001, 0x1_7fff, 0x1_8000, 0x1_8001, 0xffff,
        ] {
            v.push(f32::from_bits(base | low));
        }
    }
    let mut s = 0x9e37_79b9u32;
    for _ in 0..20_000 {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let x = f32::from_bits(s);
        if !x.is_nan() {
            v.push(x);
        }
    }
    v
}

#[test]
fn scalar_rounding_is_nearest_even() {
    assert_eq!(to_bits(1.0), 0x3f80);
    // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: even (1) wins.
    assert_eq!(to_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
    // 1 + 3·2⁻⁸ is halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: even (1 + 2⁻⁶) wins.
    assert_eq!(to_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
    assert_eq!(to_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
    assert_eq!(to_bits(f32::MAX), 0x7f80, "past bf16's largest: +inf");
    assert_eq!(to_bits(1e-40), 0, "an f32 denormal flushes to zero");
    assert_eq!(to_bits(-1e-40), 0x8000);
    assert!(from_bits(to_bits(f32::NAN)).is_nan());
    for x in awkward_values() {
        let r = round(x);
        if x.is_finite() && x.abs() >= f32::MIN_POSITIVE && r.is_finite() {
            assert!(
                ((r - x) as f64).abs() <= (x as f64).abs() * 2f64.powi(-8),
                "{x:e} rounded to {r:e}"
            );
        }
    }
}

#[test]
fn kernels_round_as_the_scalar_reference() {
    if skip() {
        return;
    }
    let a = awkward_values();
    let m = a.len();
    // A product with 1.0 is the rounded operand itself, exactly.
    let mut c = vec![f32::NAN; m];
    gemm_dots(
        PATH,
        m,
        1,
        1,
        &a,
        |i| i,
        &[1.0],
        |_| 0,
        &mut c,
        1,
        false,
        true,
    );
    let mut c2 = vec![f32::NAN; m];
    gemm_rows_bias(
        PATH,
        m,
        1,
        1,
        &a,
        1,
        &[1.0],
        |_| 0,
        None,
        &mut c2,
        1,
        false,
        true,
    );
    for (i, &x) in a.iter().enumerate() {
        let want = round(x);
        for (what, got) in [("dots", c[i]), ("rows", c2[i])] {
            assert!(
                got == want || (got.is_nan() && want.is_nan()),
                "{what}: {x:e} ({:#010x}) became {got:e}, the reference {want:e}",
                x.to_bits()
            );
        }
    }
}

/// A row of an operand is rounded in vectors of 32, then the rest one by
/// one: at every length up to past two vectors, a product with the
/// identity gives each rounded value back, as the scalar reference rounds
/// it (A's rows in `gemm_rows`, both operands in `gemm_dots`).
#[test]
fn rows_of_every_length_round_as_the_scalar_reference() {
    if skip() {
        return;
    }
    // Values whose rounding is finite (an infinity times the identity's
    // zeros would make NaN of every sum).
    let values: Vec<f32> = awkward_values()
        .into_iter()
        .filter(|x| round(*x).is_finite())
        .collect();
    for len in 1..=70 {
        let a = &values[3 * len..4 * len];
        let mut eye = vec![0f32; len * len];
        for r in 0..len {
            eye[r * len + r] = 1.0;
        }
        let mut rows = vec![f32::NAN; len];
        gemm_rows_bias(
            PATH,
            1,
            len,
            len,
            a,
            len,
            &eye,
            |r| r * len,
            None,
            &mut rows,
            len,
            false,
            true,
        );
        let mut dots = vec![f32::NAN; len];
        gemm_dots(
            PATH,
            1,
            len,
            len,
            a,
            |_| 0,
            &eye,
            |j| j * len,
            &mut dots,
            len,
            false,
            true,
        );
        for (j, &x) in a.iter().enumerate() {
            let want = round(x);
            for (what, got) in [("rows", rows[j]), ("dots", dots[j])] {
                assert!(
                    got == want,
                    "{what}, length {len}: {x:e} became {got:e} at {j}, the reference {want:e}"
                );
            }
        }
    }
}

/// Checks `got` against the two derived bounds. `terms(i, j)` lists the
/// products (a, b) of output (i, j); `added(i, j)` the values added to
/// them (what C held, when accumulated into; the bias), each of which also
/// counts, by its size, in the bound.
fn check(
    what: &str,
    got: &[f32],
    rows: usize,
    cols: usize,
    ldc: usize,
    added: impl Fn(usize, usize) -> Vec<f32>,
    terms: impl Fn(usize, usize) -> Vec<(f32, f32)>,
) {
    for i in 0..rows {
        for j in 0..cols {
            let t = terms(i, j);
            let adds = added(i, j);
            let base: f64 = adds.iter().map(|&x| x as f64).sum();
            let rounded: f64 = t
                .iter()
                .map(|&(a, b)| round(a) as f64 * round(b) as f64)
                .sum();
            let exact: f64 = t.iter().map(|&(a, b)| a as f64 * b as f64).sum();
            let size: f64 = t
                .iter()
                .map(|&(a, b)| (a as f64 * b as f64).abs())
                .sum::<f64>()
                + adds.iter().map(|&x| (x as f64).abs()).sum::<f64>();
            let g = got[i * ldc + j] as f64;
            let l = t.len() + adds.len() + 2;
            assert!(
                (g - base - rounded).abs() <= accumulation_bound(l) * size + 1e-30,
                "{what} ({i}, {j}), {} terms: {g} against the rounded sum {}",
                t.len(),
                base + rounded
            );
            assert!(
                (g - base - exact).abs() <= product_bound(l) * size + 1e-30,
                "{what} ({i}, {j}): {g} against the exact sum {}",
                base + exact
            );
        }
    }
}

#[test]
fn rows_products_are_bf16_products_with_f32_sums() {
    if skip() {
        return;
    }
    let mut seed = 1;
    for &m in &[1, 2, 5, 6, 7, 12, 13, 16, 17, 33] {
        // n from 256 on with m from 16 on: the AMX tiles (amxbf16).
        for &n in &[1, 15, 16, 17, 63, 64, 65, 129, 256, 257, 2049] {
            for &k in &[0, 1, 2, 3, 31, 32, 33, 100] {
                if n > 300 && (m > 6 || k > 33) {
                    continue;
                }
                seed += 1;
                let lda = k + 1;
                let a = data(m * lda, seed);
                let ldb = n + 3;
                let b = data(3 * (k + 1) * ldb, seed + 1);
                let bias = data(m, seed + 2);
                let ldc = n + 2;
                let c0 = data(m * ldc, seed + 3);
                // Rows of B in reverse order, shifted by one (packed into
                // panels); or as a convolution's views, 5 taps a row apart
                // each one element on (read in place, the fifth alone);
                // or as its input gradient's, each one element back; or
                // with gaps between the channels, as a block of columns of
                // a long convolution has (rounded window by window).
                let layouts: [&(dyn Fn(usize) -> usize + Sync); 4] = [
                    &|r| (k - r) * ldb + 1,
                    &|r| (r / 5) * ldb + r % 5,
                    &|r| (r / 5) * ldb + 4 - r % 5,
                    &|r| (r / 5) * 3 * ldb + r % 5 + 2,
                ];
                for (layout, (accumulate, with_bias)) in
                    (0..4).flat_map(|l| {
                        [(false, false), (true, true), (true, false)].map(|x| (l, x))
                    })
                {
                    let boff = |r: usize| layouts[layout](r);
                    let mut c = c0.clone();
                    gemm_rows_bias(
                        PATH,
                        m,
                        n,
                        k,
                        &a,
                        lda,
                        &b,
                        boff,
                        with_bias.then_some(&bias[..]),
                        &mut c,
                        ldc,
                        accumulate,
                        true,
                    );
                    check(
                        &format!("rows m={m} n={n} k={k} layout={layout} acc={accumulate}"),
                        &c,
                        m,
                        n,
                        ldc,
                        |i, j| {
                            let mut v = Vec::new();
                            if accumulate {
                                v.push(c0[i * ldc + j]);
                            }
                            if with_bias {
                                v.push(bias[i]);
                            }
                            v
                        },
                        |i, j| (0..k).map(|r| (a[i * lda + r], b[boff(r) + j])).collect(),
                    );
                    // Columns past n are left alone.
                    for i in 0..m {
                        for j in n..ldc {
                            if i * ldc + j < c.len() {
                                assert_eq!(c[i * ldc + j], c0[i * ldc + j], "column {j} written");
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn dot_products_are_bf16_products_with_f32_sums() {
    if skip() {
        return;
    }
    let mut seed = 100;
    for &(m, n) in &[(1, 1), (6, 4), (7, 5), (13, 9), (3, 40), (130, 3)] {
        for &len in &[1, 2, 31, 32, 33, 63, 64, 65, 2047, 2048, 2049, 4100] {
            seed += 1;
            // Rows of A one element apart, or (with B's third layout) far
            // apart in pairs.
            let far = 3 * len + 100;
            let a = data(m * far + 2, seed);
            let b = data(n * far + 7, seed + 1);
            let ldc = n + 1;
            let c0 = data(m * ldc, seed + 2);
            // Overlapping rows of B, one element apart, as a convolution's
            // (rounded whole); or rows apart, as a dense layer's (rounded a
            // chunk at a time when longer than one), in reverse order; or
            // pairs of rows 2 apart, the pairs far apart, as a convolution's
            // input channels read a block at a time.
            let layouts: [&(dyn Fn(usize) -> usize + Sync); 3] =
                [&|j| j, &|j| (n - 1 - j) * (len + 1) + 3, &|j| {
                    (j / 2) * far + (j % 2) * 2 + 5
                }];
            for (layout, accumulate) in (0..3).flat_map(|l| [(l, false), (l, true)]) {
                let aoff = move |i: usize| {
                    if layout == 2 {
                        (m - 1 - i) / 2 * far + (i % 2) + 1
                    } else {
                        i * (len + 1) + 1
                    }
                };
                let boff = |j: usize| layouts[layout](j);
                let mut c = c0.clone();
                gemm_dots(
                    PATH, m, n, len, &a, aoff, &b, boff, &mut c, ldc, accumulate, true,
                );
                check(
                    &format!("dots m={m} n={n} len={len} layout={layout} acc={accumulate}"),
                    &c,
                    m,
                    n,
                    ldc,
                    |i, j| {
                        if accumulate {
                            vec![c0[i * ldc + j]]
                        } else {
                            vec![]
                        }
                    },
                    |i, j| (0..len).map(|l| (a[aoff(i) + l], b[boff(j) + l])).collect(),
                );
            }
        }
    }
    // Segments: the same dot product over 3 samples.
    let (m, n, len) = (7, 5, 33);
    let segs = Segments {
        count: 3,
        a_stride: m * len,
        b_stride: n * len + 2,
    };
    let a = data(3 * m * len, 7);
    let b = data(3 * (n * len + 2), 8);
    let c0 = data(m * n, 9);
    let mut c = c0.clone();
    let aoff = |i: usize| i * len;
    let boff = |j: usize| j * len;
    gemm_dots_segments(PATH, m, n, len, segs, &a, aoff, &b, boff, &mut c, n);
    let (a, b) = (&a, &b);
    check(
        "segments",
        &c,
        m,
        n,
        n,
        |i, j| vec![c0[i * n + j]],
        |i, j| {
            (0..3)
                .flat_map(|s| {
                    (0..len).map(move |l| {
                        (
                            a[aoff(i) + s * segs.a_stride + l],
                            b[boff(j) + s * segs.b_stride + l],
                        )
                    })
                })
                .collect()
        },
    );
}

/// ‖got − want‖∞ ≤ (2⁻⁷ + 2⁻¹⁶ + L·2⁻²³) · ‖|·|-reference‖∞ + the f32
/// rounding of the result, where the |·|-reference is the same layer run
/// on the absolute values of its inputs (so it bounds Σ|a·b| of every
/// output) and L the longest sum.
fn assert_within(what: &str, got: &[f32], want: &[f64], size: &[f64], len: usize) {
    let (err, scale) = error_and_scale(got, want, size);
    let bound = product_bound(len + 2) * scale;
    assert!(
        err <= bound * 1.0001 + 1e-6 * 2f64.powi(-7),
        "{what}: error {err:e}, bound {bound:e}"
    );
}

/// The products are those of the operands rounded to bf16: ‖got − want‖∞
/// ≤ (L + 2)·2⁻²³ · ‖|·|-reference‖∞, with `want` the f64 reference run on
/// the rounded operands. Only f32 accumulation is allowed for, so an
/// operand left unrounded (an error near 2⁻⁹ of a term) shows.
fn assert_rounded(what: &str, got: &[f32], want: &[f64], size: &[f64], len: usize) {
    let (err, scale) = error_and_scale(got, want, size);
    let bound = accumulation_bound(len + 2) * scale;
    assert!(
        err <= bound * 1.0001,
        "{what}: error {err:e} against the rounded operands' sums, bound {bound:e}"
    );
}

/// ‖got − want‖∞ and ‖size‖∞.
fn error_and_scale(got: &[f32], want: &[f64], size: &[f64]) -> (f64, f64) {
    assert_eq!(got.len(), want.len());
    let err = got
        .iter()
        .zip(want)
        .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()));
    (err, size.iter().fold(0f64, |m, v| m.max(v.abs())))
}

/// The values rounded to bf16, in f64.
fn rounded(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| round(x) as f64).collect()
}

fn abs(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| x.abs()).collect()
}

#[test]
fn conv1d_in_bf16_matches_the_reference() {
    if skip() {
        return;
    }
    // The last two are grouped: a depthwise convolution (3 groups, 2
    // filters each, as a separable convolution's first half) and 2 groups.
    let cases = [
        (1, 16, 5, 1, 1, Padding::Same, 3, 200, 1),
        (3, 8, 3, 2, 1, Padding::Valid, 2, 65, 1),
        (4, 12, 4, 1, 2, Padding::Explicit(1, 2), 3, 33, 1),
        (16, 32, 9, 1, 1, Padding::Same, 4, 300, 1),
        (3, 6, 3, 1, 1, Padding::Valid, 4, 20, 3),
        (4, 6, 3, 1, 1, Padding::Same, 2, 37, 2),
    ];
    for (seed, &(ci, co, k, stride, dilation, pad, batch, l, groups)) in cases.iter().enumerate() {
        let p = Conv1dParams::new(ci, co, k)
            .stride(stride)
            .dilation(dilation)
            .padding(pad)
            .groups(groups);
        let lo = p.l_out(l);
        let s = seed as u64 * 10;
        let (x, w, b, dy) = (
            data(batch * ci * l, s),
            data(p.weight_len(), s + 1),
            data(co, s + 2),
            data(batch * co * lo, s + 3),
        );
        let (xd, wd, bd, dyd) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
        let y_ref = reference::conv1d_forward(&p, &xd, batch, l, &wd, Some(&bd));
        let y_abs = reference::conv1d_forward(&p, &abs(&xd), batch, l, &abs(&wd), Some(&abs(&bd)));
        let (dx_ref, dw_ref, _) = reference::conv1d_backward(&p, &xd, batch, l, &wd, &dyd);
        let (dx_abs, dw_abs, _) =
            reference::conv1d_backward(&p, &abs(&xd), batch, l, &abs(&wd), &abs(&dyd));
        with_path(PATH, || {
            let mut y = vec![0f32; y_ref.len()];
            conv1d_forward(&p, &x, batch, l, &w, Some(&b), &mut y).expect("valid parameters");
            assert_within(
                &format!("conv1d forward {p:?}"),
                &y,
                &y_ref,
                &y_abs,
                ci / groups * k,
            );
            let y32 = with_path(SimdPath::Avx512, || {
                let mut y = vec![0f32; y_ref.len()];
                conv1d_forward(&p, &x, batch, l, &w, Some(&b), &mut y).expect("valid parameters");
                y
            });
            // One input channel per group runs in f32 at either precision
            // (too few products per output for bf16 to pay); the rest in bf16.
            if ci / groups == 1 {
                assert_eq!(y, y32, "conv1d {p:?} took a bf16 path");
            } else {
                assert_ne!(y, y32, "conv1d {p:?} took the f32 path");
            }
            let (mut dx, mut dw, mut db) =
                (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; co]);
            conv1d_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid parameters");
            assert_within(
                &format!("conv1d dx {p:?}"),
                &dx,
                &dx_ref,
                &dx_abs,
                co / groups * k,
            );
            assert_within(
                &format!("conv1d dw {p:?}"),
                &dw,
                &dw_ref,
                &dw_abs,
                batch * lo,
            );
        });
    }
}

#[test]
fn conv2d_in_bf16_matches_the_reference() {
    if skip() {
        return;
    }
    // LeNet-5's two convolutions, and an odd-sized padded one.
    let cases = [
        (1, 6, 5, Padding::Same, 2, 28, 28),
        (6, 16, 5, Padding::Valid, 2, 14, 14),
        (3, 5, 3, Padding::Explicit(1, 1), 3, 9, 13),
    ];
    for (seed, &(ci, co, k, pad, batch, h, w_)) in cases.iter().enumerate() {
        let p = Conv2dParams::new(ci, co, k).padding(pad);
        let (ho, wo) = p.out_hw(h, w_);
        let s = 50 + seed as u64 * 10;
        let (x, w, b, dy) = (
            data(batch * ci * h * w_, s),
            data(p.weight_len(), s + 1),
            data(co, s + 2),
            data(batch * co * ho * wo, s + 3),
        );
        let (xd, wd, bd, dyd) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
        let y_ref = reference::conv2d_forward(&p, &xd, batch, h, w_, &wd, Some(&bd));
        let y_abs =
            reference::conv2d_forward(&p, &abs(&xd), batch, h, w_, &abs(&wd), Some(&abs(&bd)));
        let (dx_ref, dw_ref, _) = reference::conv2d_backward(&p, &xd, batch, h, w_, &wd, &dyd);
        let (dx_abs, dw_abs, _) =
            reference::conv2d_backward(&p, &abs(&xd), batch, h, w_, &abs(&wd), &abs(&dyd));
        let (xr, wr, dyr) = (rounded(&x), rounded(&w), rounded(&dy));
        let y_rnd = reference::conv2d_forward(&p, &xr, batch, h, w_, &wr, Some(&bd));
        let (dx_rnd, dw_rnd, _) = reference::conv2d_backward(&p, &xr, batch, h, w_, &wr, &dyr);
        with_path(PATH, || {
            let mut y = vec![0f32; y_ref.len()];
            conv2d_forward(&p, &x, batch, h, w_, &w, Some(&b), &mut y).expect("valid parameters");
            assert_within(
                &format!("conv2d forward {p:?}"),
                &y,
                &y_ref,
                &y_abs,
                ci * k * k,
            );
            assert_rounded(
                &format!("conv2d forward {p:?}"),
                &y,
                &y_rnd,
                &y_abs,
                ci * k * k,
            );
            let y32 = with_path(SimdPath::Avx512, || {
                let mut y = vec![0f32; y_ref.len()];
                conv2d_forward(&p, &x, batch, h, w_, &w, Some(&b), &mut y)
                    .expect("valid parameters");
                y
            });
            assert_ne!(y, y32, "conv2d took the f32 path");
            let (mut dx, mut dw, mut db) =
                (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; co]);
            conv2d_backward(
                &p,
                &x,
                batch,
                h,
                w_,
                &w,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .expect("valid parameters");
            assert_within(
                &format!("conv2d dx {p:?}"),
                &dx,
                &dx_ref,
                &dx_abs,
                co * k * k,
            );
            assert_within(
                &format!("conv2d dw {p:?}"),
                &dw,
                &dw_ref,
                &dw_abs,
                batch * ho * wo,
            );
            assert_rounded(&format!("conv2d dx {p:?}"), &dx, &dx_rnd, &dx_abs, co * k * k);
            assert_rounded(
                &format!("conv2d dw {p:?}"),
                &dw,
                &dw_rnd,
                &dw_abs,
                batch * ho * wo,
            );
        });
    }
}

/// A product whose C is 8 MiB or more, written rather than added to (the
/// dense layer's gradients), is stored with streaming stores from C's
/// first 64-byte line on (on amxbf16, whole 32 × 32 blocks through a
/// buffer, since a tile store cannot stream): C starting 0–3 floats past a
/// line, rows a multiple of 16 apart (streamed) or not, one thread and
/// several.
#[test]
fn large_products_stream_their_stores() {
    if skip() {
        return;
    }
    let (m, n, k) = STREAMED;
    let a = data(m * k, 61);
    let boff = |r: usize| r * (n + 3);
    let b = data(k * (n + 3), 62);
    for (ldc, skew, parallel) in STREAMED_CASES {
        let (mut store, at) = skewed(m * ldc, skew);
        let c = &mut store[at..at + (m - 1) * ldc + n];
        gemm_rows_bias(
            PATH, m, n, k, &a, k, &b, boff, None, c, ldc, false, parallel,
        );
        check(
            &format!("streamed rows ldc={ldc} skew={skew} parallel={parallel}"),
            c,
            m,
            n,
            ldc,
            |_, _| vec![],
            |i, j| (0..k).map(|r| (a[i * k + r], b[boff(r) + j])).collect(),
        );
        for i in 0..m - 1 {
            assert!(
                c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()),
                "columns past n written"
            );
        }
        assert!(store[..at].iter().all(|v| v.is_nan()), "before C written");
        // Where C starts does not change a value.
        let (mut other, at2) = skewed(m * ldc, (skew + 1) % 4);
        let len = (m - 1) * ldc + n;
        let c2 = &mut other[at2..at2 + len];
        gemm_rows_bias(
            PATH, m, n, k, &a, k, &b, boff, None, c2, ldc, false, parallel,
        );
        let same = same_bits(c2, &store[at..at + len]);
        assert!(
            same,
            "ldc={ldc}: C skewed by {skew} and by {} differ",
            (skew + 1) % 4
        );
    }
}

/// A dense layer's long dot products (rows that do not overlap, longer
/// than a chunk): A is rounded a block of up to 128 rows at a time, B in
/// registers (avx512bf16) or into tile rows once per chunk (amxbf16), and,
/// past the parallel threshold, the sum is split into 8 parts added in
/// order. Sizes at the row block and the tiles' edges (± 1), the B quad
/// (4 + 3) and the 32-element step (± 1), each on one thread and on the
/// global pool, and each row alone, which must all give the same bits.
#[test]
fn long_dot_products_split_along_the_sum() {
    if skip() {
        return;
    }
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool of one thread");
    for (seed, &(m, n, len, parallel)) in [
        (33, 5, 4100, false),
        (31, 9, 2049, true),
        (40, 7, 30_001, true),
        (9, 33, 29_999, true),
        // The tiles' edges: a block of 128 rows and one more, a panel of
        // 64 columns and one more, whole 16-row and 32-column tiles and
        // one more, a chunk's last step of 32 elements ± 1.
        (129, 65, 4097, true),
        (16, 17, 2080, false),
        (17, 32, 4127, true),
    ]
    .iter()
    .enumerate()
    {
        let s = 400 + 10 * seed as u64;
        let a = data(m * len + 3, s);
        let boff = |j: usize| (n - 1 - j) * (len + 2) + 1;
        // NaN between B's rows: a lane read past a row's end would show.
        let mut b = vec![f32::NAN; n * (len + 2)];
        for j in 0..n {
            b[boff(j)..boff(j) + len].copy_from_slice(&data(len, s + 1 + j as u64));
        }
        let aoff = |i: usize| i * len + 3;
        let ldc = n + 2;
        let c0 = data(m * ldc, s + 2);
        let run = || {
            let mut c = c0.clone();
            gemm_dots(
                PATH, m, n, len, &a, aoff, &b, boff, &mut c, ldc, true, parallel,
            );
            c
        };
        let c = run();
        check(
            &format!("long dots m={m} n={n} len={len} parallel={parallel}"),
            &c,
            m,
            n,
            ldc,
            |i, j| vec![c0[i * ldc + j]],
            |i, j| (0..len).map(|l| (a[aoff(i) + l], b[boff(j) + l])).collect(),
        );
        for i in 0..m {
            assert_eq!(
                c[i * ldc + n..(i + 1) * ldc],
                c0[i * ldc + n..(i + 1) * ldc],
                "columns past n written"
            );
        }
        assert_eq!(
            one.install(run),
            c,
            "1 thread against the pool, m={m} n={n} len={len}"
        );
        // Each row alone (a batch of one, below the parallel threshold)
        // gives the same bits as in the whole: the sum is split into the
        // same parts whatever the rows and threads.
        for i in 0..m {
            let mut row = c0[i * ldc..(i + 1) * ldc].to_vec();
            gemm_dots(
                PATH,
                1,
                n,
                len,
                &a,
                |_| aoff(i),
                &b,
                boff,
                &mut row,
                ldc,
                true,
                parallel,
            );
            assert!(
                same_bits(&row[..n], &c[i * ldc..i * ldc + n]),
                "row {i} alone against in the whole, m={m} n={n} len={len}"
            );
        }
    }
}

#[test]
fn dense_in_bf16_matches_the_reference() {
    if skip() {
        return;
    }
    for (seed, &(batch, n_in, n_out)) in [(1, 1, 1), (3, 33, 7), (32, 5000, 16), (5, 80_000, 3)]
        .iter()
        .enumerate()
    {
        let s = 90 + seed as u64 * 10;
        let (x, w, b, dy) = (
            data(batch * n_in, s),
            data(n_out * n_in, s + 1),
            data(n_out, s + 2),
            data(batch * n_out, s + 3),
        );
        let (xd, wd, bd, dyd) = (f64s(&x), f64s(&w), f64s(&b), f64s(&dy));
        let y_ref = reference::dense_forward(&xd, batch, n_in, &wd, n_out, Some(&bd));
        let y_abs =
            reference::dense_forward(&abs(&xd), batch, n_in, &abs(&wd), n_out, Some(&abs(&bd)));
        let (dx_ref, dw_ref, _) = reference::dense_backward(&xd, batch, n_in, &wd, n_out, &dyd);
        let (dx_abs, dw_abs, _) =
            reference::dense_backward(&abs(&xd), batch, n_in, &abs(&wd), n_out, &abs(&dyd));
        with_path(PATH, || {
            let mut y = vec![0f32; batch * n_out];
            dense_forward(&x, batch, n_in, &w, n_out, Some(&b), &mut y).unwrap();
            assert_within("dense forward", &y, &y_ref, &y_abs, n_in);
            if n_in > 1 {
                let y32 = with_path(SimdPath::Avx512, || {
                    let mut y = vec![0f32; batch * n_out];
                    dense_forward(&x, batch, n_in, &w, n_out, Some(&b), &mut y).unwrap();
                    y
                });
                assert_ne!(y, y32, "dense took the f32 path");
            }
            let (mut dx, mut dw, mut db) =
                (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; n_out]);
            dense_backward(
                &x,
                batch,
                n_in,
                &w,
                n_out,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
            )
            .unwrap();
            assert_within("dense dx", &dx, &dx_ref, &dx_abs, n_out);
            assert_within("dense dw", &dw, &dw_ref, &dw_abs, batch);
        });
    }
}

#[test]
fn the_bf16_path_is_not_an_f32_path() {
    // Detection never chooses it, and `available()` (which the f32
    // conformance tests iterate) does not list it.
    assert!(!SimdPath::available().contains(&PATH));
    assert_ne!(SimdPath::detect(), PATH);
    assert_eq!(PATH.fp32(), SimdPath::Avx512);
    assert_eq!(PATH.to_string().parse::<SimdPath>(), Ok(PATH));
    assert!(PATH.is_bf16());
    assert!(SimdPath::available_bf16().contains(&PATH) == PATH.is_available());
}

/// The bf16 path keeps A's prepared pairs from call to call (a convolution
/// multiplies every sample by the same weights): a changed weight, a
/// changed row offset or another shape must never be served the kept ones.
#[test]
fn kept_weights_are_never_served_stale() {
    if skip() {
        return;
    }
    let (m, n, k) = (6, 40, 10);
    let mut a = data(m * k, 7);
    let b = data(3 * 64, 8);
    let conv = |r: usize| (r / 5) * 64 + r % 5;
    let run = |a: &[f32], boff: &(dyn Fn(usize) -> usize + Sync)| {
        let mut c = vec![0f32; m * n];
        gemm_rows_bias(PATH, m, n, k, a, k, &b, boff, None, &mut c, n, false, false);
        c
    };
    let want = |a: &[f32], boff: &dyn Fn(usize) -> usize| -> Vec<f64> {
        (0..m * n)
            .map(|t| {
                let (i, j) = (t / n, t % n);
                (0..k)
                    .map(|r| round(a[i * k + r]) as f64 * round(b[boff(r) + j]) as f64)
                    .sum()
            })
            .collect()
    };
    let close = |got: &[f32], want: &[f64]| {
        got.iter()
            .zip(want)
            .all(|(&g, &w)| (g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()))
    };
    let first = run(&a, &conv);
    assert!(close(&first, &want(&a, &conv)));
    assert_eq!(run(&a, &conv), first, "the same product twice differs");
    // One weight changed, in place: the same pointer, shape and offsets.
    a[3 * k + 7] += 0.5;
    assert!(
        close(&run(&a, &conv), &want(&a, &conv)),
        "a stale A was used"
    );
    // The same weights with other offsets (shifted by one).
    let shifted = |r: usize| conv(r) + 1;
    assert!(close(&run(&a, &shifted), &want(&a, &shifted)));
}

/// What `--precision auto` picks (`Precision::preferred`): bf16 where the
/// CPU has AVX512-BF16 and no f32 path is forced; under a forced path, that
/// path's precision.
#[test]
fn the_preferred_precision_follows_the_cpu_and_a_forced_path() {
    use kernels::Precision;
    for path in [SimdPath::Scalar, SimdPath::Avx2, SimdPath::Avx512] {
        if path.is_available() {
            assert_eq!(
                with_path(path, Precision::preferred),
                Precision::Fp32,
                "{path}"
            );
        }
    }
    if PATH.is_available() {
        assert_eq!(with_path(PATH, Precision::preferred), Precision::Bf16);
    }
    if std::env::var_os("GENOCNN_SIMD").is_none() {
        let want = if SimdPath::Avx512Bf16.is_available() {
            Precision::Bf16
        } else {
            Precision::Fp32
        };
        assert_eq!(Precision::preferred(), want);
    }
    // bf16 takes the best bf16 path (AMX first), unless one is forced.
    if let Some(&best) = SimdPath::available_bf16().first() {
        assert_eq!(Precision::Bf16.path(SimdPath::Avx512), Ok(best));
    }
    if PATH.is_available() {
        assert_eq!(Precision::Bf16.path(PATH), Ok(PATH));
        assert_eq!(Precision::Fp32.path(PATH), Ok(SimdPath::Avx512));
    }
}

/// Integers in −3..=3: exact in bf16, and so are their products and any
/// f32 sum of a few thousand of them, in any order.
fn small_ints(n: usize, seed: u64) -> Vec<f32> {
    data(n, seed).iter().map(|v| (v * 3.0).round()).collect()
}

/// The output gradient of a fused convolution + max pool of 2, in f64:
/// each pooled gradient (rows of lp2) times the derivative in its mask, at
/// the winner of its pair (the second when the mask is negative), zeros
/// elsewhere (rows of lo).
fn unpooled(dy: &[f32], mask: &[f32], lp2: usize, lo: usize) -> Vec<f64> {
    let mut dz = vec![0f64; dy.len() / lp2 * lo];
    for row in 0..dy.len() / lp2 {
        for j in 0..lp2 {
            let m = mask[row * lp2 + j];
            let second = usize::from(m.is_sign_negative());
            dz[row * lo + 2 * j + second] = dy[row * lp2 + j] as f64 * m.abs() as f64;
        }
    }
    dz
}

/// The fused convolution + ReLU + max pool of 2's backward pass (a genomic
/// CNN's second layer) in bf16, on small integers: bf16 holds them
/// exactly, and every sum of their products is exact in f32 in any order,
/// so the pass must equal the f64 reference exactly (a term dropped or
/// counted twice shows, as it would not under a rounding bound). The
/// reference unpools `dy` by the forward pass's mask (the winner of each
/// pair gets dy times the derivative, `-` marking the second). The lengths
/// give the pass's blocks of input-gradient columns: one, one and a column,
/// and three with a tail.
///
/// On amxbf16, the cases from the genomic layer on run the input and
/// weight gradients on the tiles (16 output channels or more): the genomic
/// layer; 17 input channels (a second tile of rows, mostly zeros) and 20
/// output channels (a second, partial tile of columns) with an even kernel;
/// an odd kernel over 16 output channels (a tile of columns past them) with
/// 'same' padding; and lengths past a block of 5,120 columns and the 64
/// columns of a tile block, with padding on both sides, so that a block's
/// halo and the tails of both products are read, once with an odd number
/// of output channels (the input gradient pairs them).
#[test]
fn fused_conv_pool_backward_in_bf16_is_exact_on_integers() {
    use kernels::conv1d::{conv1d_act_maxpool2_backward, conv1d_act_maxpool2_forward};
    use kernels::Activation;
    if skip() {
        return;
    }
    let same = Conv1dParams::new(6, 8, 5).padding(Padding::Same);
    let cases = [
        (same, 301usize),
        (same, 5120),
        (same, 5121),
        (same, 10_301),
        (Conv1dParams::new(16, 32, 5), 4998),
        (Conv1dParams::new(17, 20, 4), 700),
        (Conv1dParams::new(3, 16, 3).padding(Padding::Same), 601),
        (Conv1dParams::new(5, 17, 4).padding(Padding::Same), 5185),
        (Conv1dParams::new(16, 32, 5).padding(Padding::Same), 10_301),
    ];
    let batch = 2;
    for (case, (p, l)) in cases.into_iter().enumerate() {
        let seed = 1 + case as u64;
        let lo = p.l_out(l);
        let lp2 = lo / 2;
        let (x, w, b, dy) = (
            small_ints(batch * p.c_in * l, seed * 10),
            small_ints(p.weight_len(), seed * 10 + 1),
            small_ints(p.c_out, seed * 10 + 2),
            small_ints(batch * p.c_out * lp2, seed * 10 + 3),
        );
        assert!(x.iter().chain(&w).chain(&dy).all(|v| v.abs() <= 3.0));
        let (dx, dw, mask) = with_path(PATH, || {
            let (mut y, mut mask) = (vec![0f32; dy.len()], vec![0f32; dy.len()]);
            conv1d_act_maxpool2_forward(
                &p,
                Activation::Relu,
                &x,
                batch,
                l,
                &w,
                Some(&b),
                &mut y,
                &mut mask,
            )
            .expect("valid parameters");
            let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
            conv1d_act_maxpool2_backward(
                &p,
                &x,
                batch,
                l,
                &w,
                &mask,
                &dy,
                Some(&mut dx),
                &mut dw,
                None,
            )
            .expect("valid parameters");
            (dx, dw, mask)
        });
        let dz = unpooled(&dy, &mask, lp2, lo);
        assert!(dz.iter().any(|&v| v != 0.0), "{p:?}, l={l}: no gradient reached");
        let (dx_ref, dw_ref, _) =
            reference::conv1d_backward(&p, &f64s(&x), batch, l, &f64s(&w), &dz);
        assert_eq!(f64s(&dx), dx_ref, "fused dx in bf16, {p:?}, l={l}");
        assert_eq!(f64s(&dw), dw_ref, "fused dw in bf16, {p:?}, l={l}");
    }
}

/// The fused convolution + activation + max pool of 2's forward pass on
/// the bf16 path, on small integers (every bf16 operand and f32 sum
/// exact): the pooled output and the mask equal, bit for bit, the f64
/// reference convolution pooled by the kernel's rule (the second of a pair
/// wins only when strictly larger, so the many ties of integers test it;
/// the mask holds the activation's derivative, negated, −0 included, when
/// the second won), and inference (no mask) writes the same output. The
/// cases cover the genomic CNN's second layer, the products' 6-row tiles
/// and their tails (8 and 13 output channels), the pass's column blocks of
/// 512 and their tails (lengths ± 1 about a block, an odd and an even
/// number of pooled values), padding, groups, a dilation (rows that do not
/// pair up) and an activation other than ReLU and the identity.
#[test]
fn fused_conv_pool_forward_in_bf16_is_exact_on_integers() {
    use kernels::conv1d::conv1d_act_maxpool2_forward;
    use kernels::Activation;
    if skip() {
        return;
    }
    let cases = [
        (Conv1dParams::new(16, 32, 5), 4998, Activation::Relu),
        (
            Conv1dParams::new(6, 8, 5).padding(Padding::Same),
            301,
            Activation::Relu,
        ),
        (Conv1dParams::new(3, 13, 3), 1029, Activation::Relu),
        (Conv1dParams::new(3, 13, 3), 1031, Activation::Linear),
        (Conv1dParams::new(4, 7, 4), 517, Activation::Relu),
        (Conv1dParams::new(4, 6, 3).groups(2), 700, Activation::Relu),
        (
            Conv1dParams::new(4, 6, 3).dilation(2),
            300,
            Activation::Relu,
        ),
        (Conv1dParams::new(4, 6, 3), 300, Activation::Elu(1.0)),
        // On amxbf16, the tiles read the input in place: 16 input channels
        // and one more (two blocks, the second mostly zeros), output
        // channels past a tile of 16 but short of 32, an even kernel, and
        // 'same' padding on an odd length whose columns end inside a
        // block of 32.
        (Conv1dParams::new(17, 20, 4), 700, Activation::Relu),
        (
            Conv1dParams::new(3, 16, 3).padding(Padding::Same),
            601,
            Activation::Linear,
        ),
    ];
    for (case, (p, l, act)) in cases.into_iter().enumerate() {
        let batch = 2;
        let seed = 50 + 10 * case as u64;
        let (x, w, b) = (
            small_ints(batch * p.c_in * l, seed),
            small_ints(p.weight_len(), seed + 1),
            small_ints(p.c_out, seed + 2),
        );
        let lo = p.l_out(l);
        let lp2 = lo / 2;
        let z = reference::conv1d_forward(&p, &f64s(&x), batch, l, &f64s(&w), Some(&f64s(&b)));
        let (mut y_ref, mut mask_ref) = (vec![0f32; batch * p.c_out * lp2], vec![]);
        for (row, zr) in z.chunks(lo).enumerate() {
            for j in 0..lp2 {
                let (first, second) = (zr[2 * j] as f32, zr[2 * j + 1] as f32);
                let won = second > first;
                let out = act.apply(if won { second } else { first });
                let der = act.derivative_from_output(out);
                y_ref[row * lp2 + j] = out;
                mask_ref.push(if won { -der } else { der });
            }
        }
        let (y, mask, y_only) = with_path(PATH, || {
            let (mut y, mut mask) = (vec![f32::NAN; y_ref.len()], vec![f32::NAN; y_ref.len()]);
            conv1d_act_maxpool2_forward(&p, act, &x, batch, l, &w, Some(&b), &mut y, &mut mask)
                .expect("valid parameters");
            let mut y_only = vec![f32::NAN; y_ref.len()];
            conv1d_act_maxpool2_forward(&p, act, &x, batch, l, &w, Some(&b), &mut y_only, &mut [])
                .expect("valid parameters");
            (y, mask, y_only)
        });
        let what = format!("{p:?} on {l}, {act:?}");
        assert!(same_bits(&y, &y_ref), "pooled output, {what}");
        assert!(same_bits(&mask, &mask_ref), "mask, {what}");
        assert!(
            same_bits(&y_only, &y_ref),
            "pooled output without a mask, {what}"
        );
        let seconds = mask_ref.iter().filter(|m| m.is_sign_negative()).count();
        assert!(
            seconds > 0 && seconds < mask_ref.len(),
            "both sides of a pair win, {what}"
        );
    }
}

/// An infinite input stays inside the windows that hold it. On amxbf16 the
/// tiles pair an odd kernel's last tap with a zero weight that meets the
/// value just past an output's window: 0 · ∞ would put a NaN in an output
/// whose window is finite, so such a sample runs on the general path.
#[test]
fn fused_conv_pool_forward_keeps_an_infinity_in_its_window() {
    use kernels::conv1d::conv1d_act_maxpool2_forward;
    use kernels::Activation;
    if skip() {
        return;
    }
    let (p, l, batch) = (Conv1dParams::new(16, 16, 5), 600, 2);
    let mut x = small_ints(batch * p.c_in * l, 71);
    let (w, b) = (small_ints(p.weight_len(), 72), small_ints(p.c_out, 73));
    // Output 96's window ends at 100, and output 97's (its pair's second)
    // holds the infinity: where that gives -∞ the pair's maximum is output
    // 96, finite, and a NaN there would show.
    x[3 * l + 101] = f32::INFINITY;
    let lo = p.l_out(l);
    let lp2 = lo / 2;
    let z = reference::conv1d_forward(&p, &f64s(&x), batch, l, &f64s(&w), Some(&f64s(&b)));
    // Pooled as the kernels pool: the second wins only when greater.
    let y_ref: Vec<f32> = z
        .chunks(lo)
        .flat_map(|zr| {
            (0..lp2).map(move |j| {
                let (first, second) = (zr[2 * j] as f32, zr[2 * j + 1] as f32);
                Activation::Relu.apply(if second > first { second } else { first })
            })
        })
        .collect();
    let mut y = vec![f32::NAN; y_ref.len()];
    with_path(PATH, || {
        conv1d_act_maxpool2_forward(&p, Activation::Relu, &x, batch, l, &w, Some(&b), &mut y, &mut [])
            .expect("valid parameters")
    });
    let finite = y_ref.iter().filter(|v| v.is_finite()).count();
    assert!(finite < y_ref.len() && finite > y_ref.len() / 2);
    for (i, (g, r)) in y.iter().zip(&y_ref).enumerate() {
        if r.is_finite() {
            assert_eq!(g, r, "pooled output {i}: {g} against {r}");
        }
    }
}

/// Infinities in the backward pass stay in the sums that hold them: an
/// infinite input in the genomic layer's last columns, and an infinite
/// output gradient. On amxbf16 the weight gradient's tiles sum each tap
/// over whole steps of 32 columns, past the last one that has a gradient,
/// where the output gradient is zero: 0 · ∞ would put a NaN in the
/// gradients of the taps whose sums never reach the infinite input, so
/// such a block runs on the general path. Every gradient is then what the
/// f64 reference gives: equal where finite, the same infinity, or NaN.
#[test]
fn fused_conv_pool_backward_keeps_an_infinity_in_its_sums() {
    use kernels::conv1d::{conv1d_act_maxpool2_backward, conv1d_act_maxpool2_forward};
    use kernels::Activation;
    if skip() {
        return;
    }
    let (p, l, batch) = (Conv1dParams::new(16, 32, 5), 4998, 2);
    let (lo, lp2) = (p.l_out(l), p.l_out(l) / 2);
    for (case, (x_inf, dy_inf)) in [(true, false), (false, true)].into_iter().enumerate() {
        let seed = 80 + 10 * case as u64;
        let mut x = small_ints(batch * p.c_in * l, seed);
        let (w, b) = (small_ints(p.weight_len(), seed + 1), small_ints(p.c_out, seed + 2));
        let mut dy = small_ints(batch * p.c_out * lp2, seed + 3);
        if x_inf {
            // Taps 0–2 reach column 4,996 only from outputs 4,994 and past,
            // which the convolution does not have (4,994 outputs).
            x[(p.c_in + 3) * l + 4996] = f32::INFINITY;
        }
        if dy_inf {
            dy[(p.c_out + 5) * lp2 + 100] = f32::INFINITY;
        }
        let (dx, dw, mask) = with_path(PATH, || {
            let (mut y, mut mask) = (vec![0f32; dy.len()], vec![0f32; dy.len()]);
            conv1d_act_maxpool2_forward(&p, Activation::Relu, &x, batch, l, &w, Some(&b), &mut y, &mut mask)
                .expect("valid parameters");
            let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
            conv1d_act_maxpool2_backward(&p, &x, batch, l, &w, &mask, &dy, Some(&mut dx), &mut dw, None)
                .expect("valid parameters");
            (dx, dw, mask)
        });
        let dz = unpooled(&dy, &mask, lp2, lo);
        let (dx_ref, dw_ref, _) = reference::conv1d_backward(&p, &f64s(&x), batch, l, &f64s(&w), &dz);
        for (what, got, want) in [("dx", &dx, &dx_ref), ("dw", &dw, &dw_ref)] {
            let finite = want.iter().filter(|v| v.is_finite()).count();
            assert!(finite > want.len() / 2, "{what}: the infinity reaches too much");
            if what == "dw" || dy_inf {
                assert!(finite < want.len(), "{what}: the infinity reaches nothing");
            }
            for (i, (&g, &r)) in got.iter().zip(want.iter()).enumerate() {
                assert!(
                    g as f64 == r || (g.is_nan() && r.is_nan()),
                    "case {case}, {what}[{i}]: {g} against {r}"
                );
            }
        }
    }
}

/// The fused 2D convolution + ReLU + 2 × 2 max pool (LeNet-5's layers) on
/// the bf16 path, forward and backward, on small integers: exact in bf16
/// and in every f32 sum, so the pooled output equals the f64 reference's,
/// each recorded maximum is a maximum of its window, and the gradients
/// equal the f64 reference's exactly, the convolution's output gradient
/// unpooled by the recorded positions and derivatives. Random data then
/// shows that the path rounds (its output differs from f32's).
#[test]
fn fused_conv2d_pool_in_bf16_is_exact_on_integers() {
    use kernels::conv2d::{conv2d_act_maxpool2_backward, conv2d_act_maxpool2_forward};
    use kernels::Activation;
    if skip() {
        return;
    }
    let cases = [
        (6, 16, 5, Padding::Valid, 3, 14, 14),
        (3, 8, 3, Padding::Same, 2, 12, 31),
        (2, 5, 5, Padding::Same, 2, 28, 28),
        // 16 input channels and one more, with an even kernel and 'same'
        // padding on odd sizes; and on amxbf16 a product on the tiles (at
        // least 16 rows and 256 columns: 33 output channels, past a block
        // of 32, by 320 wide columns).
        (17, 20, 4, Padding::Same, 2, 9, 11),
        (3, 33, 3, Padding::Valid, 2, 10, 40),
    ];
    for (case, &(ci, co, k, pad, batch, h, w_)) in cases.iter().enumerate() {
        let p = Conv2dParams::new(ci, co, k).padding(pad);
        let (ho, wo) = p.out_hw(h, w_);
        let (hq, wq) = (ho / 2, wo / 2);
        let ps = co * hq * wq;
        let s = 100 + 10 * case as u64;
        let (x, w, b, dy) = (
            small_ints(batch * ci * h * w_, s),
            small_ints(p.weight_len(), s + 1),
            small_ints(co, s + 2),
            small_ints(batch * ps, s + 3),
        );
        let fused = |x: &[f32], w: &[f32]| {
            with_path(PATH, || {
                let (mut y, mut mask) = (vec![0f32; batch * ps], vec![0f32; 2 * batch * ps]);
                conv2d_act_maxpool2_forward(
                    &p,
                    Activation::Relu,
                    x,
                    batch,
                    h,
                    w_,
                    w,
                    Some(&b),
                    &mut y,
                    &mut mask,
                )
                .expect("valid parameters");
                let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f32; w.len()]);
                conv2d_act_maxpool2_backward(
                    &p,
                    x,
                    batch,
                    h,
                    w_,
                    w,
                    &mask,
                    &dy,
                    Some(&mut dx),
                    &mut dw,
                    None,
                )
                .expect("valid parameters");
                (y, mask, dx, dw)
            })
        };
        let (y, mask, dx, dw) = fused(&x, &w);
        let z = reference::conv2d_forward(&p, &f64s(&x), batch, h, w_, &f64s(&w), Some(&f64s(&b)));
        let mut dz = vec![0f64; z.len()];
        for n in 0..batch {
            let (at, der) = mask[2 * n * ps..2 * (n + 1) * ps].split_at(ps);
            for c in 0..co {
                for i in 0..hq {
                    for j in 0..wq {
                        let q = (c * hq + i) * wq + j;
                        let zi = |r: usize, col: usize| ((n * co + c) * ho + r) * wo + col;
                        let window = [
                            zi(2 * i, 2 * j),
                            zi(2 * i, 2 * j + 1),
                            zi(2 * i + 1, 2 * j),
                            zi(2 * i + 1, 2 * j + 1),
                        ];
                        let max = window.iter().map(|&t| z[t]).fold(f64::MIN, f64::max);
                        assert_eq!(
                            y[n * ps + q] as f64,
                            max.max(0.0),
                            "case {case}: pooled output"
                        );
                        let pos = at[q] as usize;
                        assert!(
                            pos < 4 && z[window[pos]] == max,
                            "case {case}: position {pos} is no maximum"
                        );
                        dz[window[pos]] = dy[n * ps + q] as f64 * der[q] as f64;
                    }
                }
            }
        }
        assert!(
            dz.iter().any(|&v| v != 0.0),
            "case {case}: no gradient reached"
        );
        let (dx_ref, dw_ref, _) =
            reference::conv2d_backward(&p, &f64s(&x), batch, h, w_, &f64s(&w), &dz);
        assert_eq!(f64s(&dx), dx_ref, "case {case}: fused dx in bf16");
        assert_eq!(f64s(&dw), dw_ref, "case {case}: fused dw in bf16");
        // On random data the path rounds: its output is not f32's.
        let (xr, wr) = (data(x.len(), s + 4), data(w.len(), s + 5));
        let y16 = fused(&xr, &wr).0;
        let y32 = with_path(SimdPath::Avx512, || {
            let mut y = vec![0f32; batch * ps];
            conv2d_act_maxpool2_forward(
                &p,
                Activation::Relu,
                &xr,
                batch,
                h,
                w_,
                &wr,
                Some(&b),
                &mut y,
                &mut [],
            )
            .expect("valid parameters");
            y
        });
        assert_ne!(y16, y32, "case {case}: the fused pass took the f32 path");
    }
}

/// Dense weights prepared once for an inference give the forward pass's
/// outputs bit for bit: on the AMX tiles, where they are packed once (rows
/// at a panel's 64 ± 1, sums past 1 to 3 chunks of 2048 with tails, batches
/// past a block of 128 rows); elsewhere nothing is prepared. Prepared on
/// the tiles and used on another path, the weights themselves serve.
#[test]
fn prepared_dense_weights_give_the_same_outputs() {
    use kernels::dense::{dense_forward_prepared, DenseWeights};
    if skip() {
        return;
    }
    for (batch, n_in, n_out) in [
        (1, 2049, 1),
        (3, 4097, 17),
        (33, 5000, 64),
        (130, 6145, 65),
        (7, 3 * 2048 + 31, 130),
    ] {
        let x = data(batch * n_in, 41);
        let w = data(n_out * n_in, 42);
        let b = data(n_out, 43);
        let forward = |prepared: Option<&DenseWeights>| {
            let mut y = vec![f32::NAN; batch * n_out];
            match prepared {
                Some(p) => dense_forward_prepared(&x, batch, n_in, &w, p, n_out, Some(&b), &mut y),
                None => dense_forward(&x, batch, n_in, &w, n_out, Some(&b), &mut y),
            }
            .expect("valid shapes");
            y
        };
        with_path(PATH, || {
            let prepared = DenseWeights::prepare(&w, n_in, n_out);
            assert_eq!(
                prepared.is_some(),
                PATH == SimdPath::AmxBf16,
                "{PATH}: prepared {batch} × {n_in} → {n_out}"
            );
            let Some(p) = prepared else { return };
            assert!(
                same_bits(&forward(Some(&p)), &forward(None)),
                "{PATH}: {batch} × {n_in} → {n_out} prepared"
            );
            for other in [SimdPath::Avx512Bf16, SimdPath::Avx512] {
                with_path(other, || {
                    assert!(
                        same_bits(&forward(Some(&p)), &forward(None)),
                        "prepared on {PATH}, run on {other}: {batch} × {n_in} → {n_out}"
                    );
                });
            }
        });
    }
    // A sum of one chunk is not packed per call: nothing to prepare.
    with_path(PATH, || {
        assert!(DenseWeights::prepare(&data(3 * 2048, 1), 2048, 3).is_none());
    });
}
