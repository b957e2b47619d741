//! Errors of the GBLUP crate.

#[derive(Debug, thiserror::Error)]
pub enum GblupError {
    /// Data that cannot support the model.
    #[error("{0}")]
    Data(String),
    /// A numerical failure.
    #[error("{0}")]
    Numeric(String),
    #[error(transparent)]
    Geno(#[from] geno::GenoError),
}

pub type Result<T> = std::result::Result<T, GblupError>;
