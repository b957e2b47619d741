//! genocnn's network engine.
//!
//! - [`Backend`]: the operations a network needs, forward and backward; the
//!   [`Native`] backend runs them on the `kernels` crate, the candle one
//!   (features `candle`, `cuda`) on candle-core.
//! - [`layers`]: one file per layer kind (its spec, shape inference,
//!   parameters and passes), containers included; [`LayerSpec`] is their
//!   Keras-like vocabulary, read from TOML.
//! - [`Network`]: built from specs with shape checks, then fused
//!   ([`fuse`]); forward passes take a [`Ctx`] and return a [`Pass`] that the
//!   caller owns, backward passes read it back.
//! - Losses ([`Loss`]), optimizers and learning-rate schedules ([`Schedule`]),
//!   and one optimizer step ([`train_step`]).
//!
//! The dense head (dense layers, activations, dropout, losses, optimizers)
//! lives here with the convolutional base: both run through the same
//! backend trait and the same backprop.

pub mod backend;
pub mod candle;
pub mod error;
pub mod fuse;
pub mod layers;
pub mod native;
pub mod network;
pub mod optim;
pub mod param;
pub mod pass;
pub mod spec;
pub mod step;

pub use backend::{Backend, Update};
#[cfg(feature = "candle")]
pub use candle::Candle;
pub use candle::CandleDevice;
pub use error::{NnError, Result};
pub use kernels::Precision;
pub use layers::{Layer, LayerSpec};
pub use native::{HostTensor, Native};
pub use network::{Network, NetworkBuilder};
pub use optim::{Loss, Optimizer, Schedule, ScheduleState};
pub use param::{Gradients, HostSlots, Init, OptState, Param};
pub use pass::{Ctx, Mode, Pass, Profile, ProfileRow};
pub use step::{train_step, StepOutcome};
