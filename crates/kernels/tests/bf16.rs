//! The bf16 paths (issue 17): their rounding against the scalar reference
//! `bf16::to_bits`, their two matrix products against f64 sums, and every
//! weighted layer's forward and backward against the f64 references.
//!
//! Two bounds, both derived, none fitted:
//! - against the f64 sum of the operands rounded to bf16, only the f32
//!   accumulation differs: |C − Σ bf16(a)·bf16(b)| ≤ L·2⁻²³·Σ|a·b| for a sum
//!   of L products (Higham's γ_L with f32's u = 2⁻²⁴, doubled for the pair
//!   sums of `vdpbf16ps` and the final reduction);
//! - against the exact products, each operand's rounding adds at most 2⁻⁸
//!   (bf16 keeps 8 significant bits), so a product's at most
//!   2⁻⁷ + 2⁻¹⁶: |C − Σ a·b| ≤ (2⁻⁷ + 2⁻¹⁶ + L·2⁻²³)·Σ|a·b|.
//!
//! Sizes sit at the register tiles (6 rows; 16, 64 columns; 32-element
//! chunks of a dot product), the parallel blocks and the dot-product chunk
//! (2048), each ± 1; on AMX, at its tiles (16 rows, 32 columns, 32-element
//! steps of the sum). Every test runs once per bf16 path: `avx512bf16`
//! (`vdpbf16ps`) and `amxbf16` (the AMX tiles for the row-offset products,
//! `vdpbf16ps` for the rest), each skipped, with a message, where the CPU
//! cannot run it.

mod common;

mod avx512bf16 {
    const PATH: kernels::SimdPath = kernels::SimdPath::Avx512Bf16;
    include!("bf16/cases.rs");
}

mod amxbf16 {
    const PATH: kernels::SimdPath = kernels::SimdPath::AmxBf16;
    include!("bf16/cases.rs");
}
