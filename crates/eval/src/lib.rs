//! genocnn's evaluation: cross-validation folds ([`Folds`]), accuracy
//! metrics ([`Metrics`]), the summary over folds with each model compared
//! with GBLUP by a paired t-test ([`report`]), and plots ([`plots`]).

pub mod error;
pub mod folds;
pub mod metrics;
pub mod plots;
pub mod report;

pub use error::{EvalError, Result};
pub use folds::Folds;
pub use metrics::Metrics;
pub use report::{Prediction, Record, Summary};
