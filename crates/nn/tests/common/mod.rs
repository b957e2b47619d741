//! Helpers shared by the nn integration tests.
#![allow(dead_code)]

use nn::LayerSpec;

/// The `[[layers]]` of a TOML model text.
pub fn layers(toml_text: &str) -> Vec<LayerSpec> {
    #[derive(serde::Deserialize)]
    struct L {
        layers: Vec<LayerSpec>,
    }
    toml::from_str::<L>(toml_text).expect("valid layers").layers
}

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
