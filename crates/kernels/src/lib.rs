//! Compute kernels for genocnn. In f32: convolution (1D and 2D), pooling, dense
//! layers, activations, softmax cross-entropy, batch normalization and
//! dropout; forward and backward. In integers: the Gram matrix of genotype
//! dosages behind the GRM ([`gram`]). This crate depends on no other crate
//! of genocnn's.
//!
//! Layouts are NCL (batch, channels, length) and NCHW; weights are stored as
//! in PyTorch and candle. Every kernel has a naive f64 reference in
//! [`reference`] (or, for elementwise ones, its definition in the tests),
//! and SIMD paths are chosen at run time ([`SimdPath`]).

pub mod act;
pub mod amx;
pub mod bf16;
pub mod cases;
pub mod conv1d;
mod conv1d_dw;
mod conv1d_in1;
pub mod conv2d;
mod conv_tiles;
pub mod dense;
pub mod error;
pub mod gemm;
pub mod gram;
pub mod norm;
pub mod optim;
pub mod peak;
pub mod pool;
pub mod reference;
mod scratch;
pub mod simd;
mod winograd;

pub use act::{softmax_cross_entropy, Activation};
pub use conv1d::{conv1d_backward, conv1d_forward, Conv1dParams, Padding};
pub use conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
pub use dense::{dense_backward, dense_forward};
pub use error::KernelError;
pub use gram::{gram_lower_u8, with_int8_path, Int8Path};
pub use pool::{Pool1dParams, Pool2dParams, PoolKind};
/// pulp's traits, for crates that run their own code on a [`SimdPath`]
/// ([`SimdPath::dispatch`]).
pub use pulp::{Simd as PulpSimd, WithSimd};
pub use simd::{with_path, Precision, SimdPath};
pub use winograd::with_winograd;

/// The fewest multiply-adds for which a matrix product splits its columns
/// over threads. Below it, waking the pool's sleeping threads and joining
/// them costs more than the second core saves: on the 2-core Zen 4, LeNet-5's
/// 400 → 120 dense layer at batch 64 (3.1 M) took 0.083 ms on two threads
/// and 0.062 ms on one (f32), 0.123 and 0.054 ms in bf16 (`genocnn bench
/// kernels --filter l_dense`).
pub(crate) const PARALLEL_WORK: usize = 1 << 23;

/// The number of partial sums a weight gradient over a batch is split into
/// (each a fixed run of samples, summed in order at the end). It does not
/// follow the thread count, so that a run gives the same numbers on 1, 2 or
/// 16 threads; 8 parts keep 8 threads busy and cost 8 weight-sized buffers.
pub const GRAD_PARTS: usize = 8;

/// Samples per partial sum of a weight gradient over `batch` samples.
pub fn grad_chunk(batch: usize) -> usize {
    batch.div_ceil(GRAD_PARTS).max(1)
}
