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
    /// Every training record of the trait has the same value: there is no
    /// variance to partition.
    #[error("the trait is constant: all {n} training records are {value}; there is no variance to estimate or predict")]
    ConstantTrait { value: f64, n: usize },
    /// Genotypes without a single polymorphic marker (all monomorphic or
    /// all missing): the relationship matrix is zero and nothing can be
    /// estimated from it.
    #[error("none of the {n_markers} markers varies between individuals (all are monomorphic, uncalled, or the same call in everyone), so the genotypes say nothing about relationships; check the file and the QC filters")]
    NoVariation { n_markers: usize },
    /// A covariate that is constant on the training individuals, and so
    /// collinear with the intercept.
    #[error("covariate {index} is constant ({value}) on the {n} training individuals, so it duplicates the intercept; drop it")]
    ConstantCovariate { index: usize, value: f64, n: usize },
}

/// The first value of `v`, when every value equals it.
pub(crate) fn constant(v: &[f64]) -> Option<f64> {
    let first = *v.first()?;
    v.iter().all(|&x| x == first).then_some(first)
}

pub type Result<T> = std::result::Result<T, GblupError>;
