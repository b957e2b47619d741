//! The errors of a cross-validation, in the house style of
//! `geno::GenoError`: what was asked, and what was expected.

#[derive(Debug, thiserror::Error)]
pub enum CvError {
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error(transparent)]
    Gblup(#[from] gblup::GblupError),
    #[error(transparent)]
    Eval(#[from] eval::EvalError),
    #[error(transparent)]
    Geno(#[from] geno::GenoError),
    /// A job store's folder that cannot be created.
    #[error("cannot create {}: {source}", path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A plan that cannot run, and why.
    #[error("{0}")]
    Plan(String),
    /// A fit that failed, with where it was.
    #[error("repeat {repeat} fold {fold} model {model}: {source}")]
    Fold {
        repeat: usize,
        fold: usize,
        model: String,
        #[source]
        source: Box<CvError>,
    },
}

pub type Result<T> = std::result::Result<T, CvError>;
