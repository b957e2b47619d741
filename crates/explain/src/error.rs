//! The errors of explanations, in the house style of `geno::GenoError`:
//! the file, the line, and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Nn(#[from] nn::NnError),
    #[error(transparent)]
    Geno(#[from] geno::GenoError),
    #[error(transparent)]
    Vision(#[from] vision::VisionError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A truth file that cannot be read, at a line (1-based).
    #[error("{}, line {line}: {message}", path.display())]
    Truth {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Options or inputs that cannot be explained, and why.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, ExplainError>;
