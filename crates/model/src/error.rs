//! Errors of model building, training, saving and prediction.

/// A failure in the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model spec that cannot be used.
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Nn(#[from] nn::NnError),
    #[error(transparent)]
    Geno(#[from] geno::GenoError),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// A saved model that cannot be read.
    #[error("{path}: {message}")]
    Saved { path: String, message: String },
    /// Genotypes that do not fit the model.
    #[error("{0}")]
    Data(String),
    /// A transfer (`--init-from`, `--freeze`, `--unfreeze`) that cannot be
    /// done: the message names the paths.
    #[error("{0}")]
    Transfer(String),
    /// Training that cannot continue.
    #[error("{0}")]
    Training(String),
    /// A trait whose training records are all the same value.
    #[error("trait {trait_name} is constant: all {n} training records are {value}; there is nothing to learn")]
    ConstantTrait {
        trait_name: String,
        value: f64,
        n: usize,
    },
    /// Training that diverged: the loss or the outputs left any sensible range.
    #[error("training diverged in epoch {epoch} ({what}); try a lower learning rate than {lr}")]
    Diverged { epoch: usize, what: String, lr: f32 },
}

pub type Result<T> = std::result::Result<T, ModelError>;
