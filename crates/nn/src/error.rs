//! Errors of the network engine.

/// A failure to build or run a network.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// A layer whose options or input shape cannot work. `at` is the
    /// layer's place in the spec: its index for a top-level layer (`3`),
    /// its path below that for a nested one (`3.branch.1.layers.0`).
    #[error("layer {at} ({kind}): {message}")]
    Layer {
        at: String,
        kind: String,
        message: String,
    },
    /// A tensor of the wrong shape reached an operation.
    #[error("{op}: {message}")]
    Shape { op: &'static str, message: String },
    /// The backend could not run an operation.
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// A pass asked of a network that cannot give it (a backward pass
    /// without a recorded forward pass, a layer path that does not exist).
    #[error("{0}")]
    Pass(String),
    /// A kernel refused its parameters or buffers.
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
}

pub type Result<T> = std::result::Result<T, NnError>;
