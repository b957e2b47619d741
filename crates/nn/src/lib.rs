//! genocnn's network engine.
//!
//! - [`Backend`]: the operations a network needs, forward and backward; the
//!   [`Native`] backend runs them on the `kernels` crate.
//! - [`LayerSpec`]: layers with a Keras-like vocabulary, read from TOML.
//! - [`Network`]: built from specs with shape checks, trained by
//!   forward/backward passes and an [`Optimizer`] step.
//! - Losses ([`Loss`]) and learning-rate schedules ([`Schedule`]).
//!
//! The dense head (dense layers, activations, dropout, losses, optimizers)
//! lives here with the convolutional base: both run through the same
//! backend trait and the same backprop.

pub mod backend;
pub mod candle;
pub mod error;
pub mod native;
pub mod network;
pub mod optim;
pub mod spec;

pub use backend::{Backend, Update};
pub use candle::{Candle, CandleDevice};
pub use error::{NnError, Result};
pub use native::{HostTensor, Native};
pub use network::{Init, Mode, Network, Param};
pub use optim::{Loss, Optimizer, Schedule, ScheduleState};
pub use spec::LayerSpec;
