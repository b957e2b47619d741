//! Errors of the evaluation crate.

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Parse(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("plot: {0}")]
    Plot(String),
}

pub type Result<T> = std::result::Result<T, EvalError>;
