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
