//! Shared test helpers: deterministic data and error measures.
#![allow(dead_code)]

/// `n` values in [-1, 1) from a xorshift generator seeded by `seed`.
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The cases of the streamed-store tests: (m, n, k) of the product, and
/// per case (ldc, skew, parallel): rows 16 floats apart (streamed) or not,
/// C starting `skew` floats past a 64-byte line.
pub const STREAMED: (usize, usize, usize) = (64, 32_800, 5);
pub const STREAMED_CASES: [(usize, usize, bool); 4] = [
    (STREAMED.1 + 16, 0, true),
    (STREAMED.1 + 16, 1, true),
    (STREAMED.1 + 16, 3, false),
    (STREAMED.1 + 5, 2, true),
];

/// A NaN-filled buffer of `len` values after a margin, and the index in it
/// `skew` floats past a 64-byte line, where the tested C starts.
pub fn skewed(len: usize, skew: usize) -> (Vec<f32>, usize) {
    let store = vec![f32::NAN; 64 + len];
    let at = (64 - store.as_ptr() as usize % 64) % 64 / 4 + skew;
    (store, at)
}

/// Whether two outputs hold the same bits (NaN where either is NaN).
pub fn same_bits(x: &[f32], y: &[f32]) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y)
            .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()))
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Normwise error of `got` against `want`: ‖got − want‖∞ / max(‖want‖∞, 1).
///
/// The test data are O(1) (in [-1, 1)), so every output is a sum of O(1)
/// terms. When a small output tensor's sums cancel to near zero, f32
/// rounding leaves an absolute error of the terms' size, not of the
/// result's: scaling by at least 1 keeps such draws (a 1-weight gradient,
/// a single dense output) from failing on rounding alone, while any real
/// error (of the terms' size) still shows.
pub fn rel(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths differ");
    let scale = want.iter().fold(1f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0f64, |m, (g, w)| m.max((*g as f64 - w).abs()))
        / scale
}

/// How much Winograd's F(m, r) at the points 0, ±1, ±2, ±½ and ∞ (the
/// kernels' minimal filtering) can amplify rounding, relative to the direct
/// sum of r products:
///
///   max_j Σ_ξ |Aᵀ_jξ| · ‖G_ξ‖₁ · ‖Bᵀ_ξ‖₁ / r.
///
/// Each product (G g)_ξ · (Bᵀ d)_ξ carries rounding relative to
/// ‖G_ξ‖₁·max|g| · ‖Bᵀ_ξ‖₁·max|d|, and Aᵀ adds the α of them with weights
/// |Aᵀ_jξ|; the direct sum's bound is r·max|g|·max|d|. So a tolerance that
/// rounding alone cannot fail for the direct kernel, times this factor, is
/// one that rounding alone cannot fail through the transforms either. The
/// matrices are Toom–Cook's, built here in f64 from the points alone: Aᵀ_jξ
/// = a_ξ^j, G_ξt = a_ξ^t / Π_(η≠ξ)(a_ξ − a_η), Bᵀ_ξ the coefficients of
/// Π_(η≠ξ)(x − a_η); ∞ takes the last tap, the last output, and Π_η(x − a_η).
pub fn winograd_amplification(m: usize, r: usize) -> f64 {
    let alpha = m + r - 1;
    let points: &[f64] = &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5][..alpha - 1];
    // Σ |coefficients| of Π (x − a) over the points given.
    let coefficients = |pts: &mut dyn Iterator<Item = f64>| {
        let mut c = vec![1.0f64];
        for a in pts {
            let mut next = vec![0.0; c.len() + 1];
            for (i, ci) in c.iter().enumerate() {
                next[i + 1] += ci;
                next[i] -= a * ci;
            }
            c = next;
        }
        c.iter().map(|v| v.abs()).sum::<f64>()
    };
    let mut per_output = vec![0f64; m];
    for (xi, &a) in points.iter().enumerate() {
        let others = || points.iter().enumerate().filter(move |&(eta, _)| eta != xi);
        let denominator: f64 = others().map(|(_, &b)| (a - b).abs()).product();
        let g: f64 = (0..r).map(|t| a.abs().powi(t as i32)).sum::<f64>() / denominator;
        let b = coefficients(&mut others().map(|(_, &b)| b));
        for (j, s) in per_output.iter_mut().enumerate() {
            *s += a.abs().powi(j as i32) * g * b;
        }
    }
    per_output[m - 1] += coefficients(&mut points.iter().copied());
    per_output.iter().fold(0f64, |x, &y| x.max(y)) / r as f64
}
