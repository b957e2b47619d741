//! Errors of the network engine.

/// A failure to build or run a network.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A layer whose options or input shape cannot work.
    #[error("layer {index} ({kind}): {message}")]
    Layer {
        index: usize,
        kind: String,
        message: String,
    },
    /// A tensor of the wrong shape reached an operation.
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    /// The backend could not run an operation.
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// Training diverged or cannot continue.
    #[error("{0}")]
    Training(String),
}

pub type Result<T> = std::result::Result<T, NnError>;
