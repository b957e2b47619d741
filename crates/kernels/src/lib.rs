//! f32 compute kernels for genocnn: convolution (1D and 2D), pooling, dense
//! layers, activations, softmax cross-entropy, batch normalization and
//! dropout; forward and backward. This crate depends on no other crate of
//! genocnn's.
//!
//! Layouts are NCL (batch, channels, length) and NCHW; weights are stored as
//! in PyTorch and candle. Every kernel has a naive f64 reference in
//! [`reference`] (or, for elementwise ones, its definition in the tests),
//! and SIMD paths are chosen at run time ([`SimdPath`]).

pub mod act;
pub mod cases;
pub mod conv1d;
pub mod conv2d;
pub mod dense;
pub mod gemm;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reference;
mod scratch;
pub mod simd;

pub use act::{softmax_cross_entropy, Activation};
pub use conv1d::{conv1d_backward, conv1d_forward, Conv1dParams, Padding};
pub use conv2d::{conv2d_backward, conv2d_forward, Conv2dParams};
pub use dense::{dense_backward, dense_forward};
pub use pool::{Pool1dParams, Pool2dParams, PoolKind};
pub use simd::{with_path, SimdPath};
