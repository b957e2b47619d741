//! Errors of model building, training, saving and prediction.

/// The layer a spec error is about: its place (`3`, or `3.branch.1.layers.0`
/// inside a container) and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerAt {
    pub at: String,
    pub kind: String,
}

fn spec_text(origin: &str, layer: &Option<LayerAt>, message: &str) -> String {
    let mut s = String::new();
    if !origin.is_empty() {
        s.push_str(origin);
        s.push_str(": ");
    }
    if let Some(l) = layer {
        s.push_str(&format!("layer {} ({}): ", l.at, l.kind));
    }
    s.push_str(message);
    s
}

/// A failure in the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model or search spec that cannot be used: where it came from (its
    /// file, or the model's name; empty when only the caller knows), the
    /// layer at fault and the key when there is one, and why.
    #[error("{}", spec_text(origin, layer, message))]
    Spec {
        origin: String,
        layer: Option<LayerAt>,
        key: Option<String>,
        message: String,
    },
    /// A model or checkpoint that cannot be written.
    #[error("cannot write {path}: {message}")]
    Save { path: String, message: String },
    /// A training checkpoint that cannot be read or does not fit the run.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: String, message: String },
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

impl ModelError {
    /// A spec error from `origin` with no particular layer or key.
    pub fn spec(origin: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError::Spec {
            origin: origin.into(),
            layer: None,
            key: None,
            message: message.into(),
        }
    }

    /// A spec error about a key (`training.epochs`, `space.lr`).
    pub fn spec_key(
        origin: impl Into<String>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ModelError::Spec {
            origin: origin.into(),
            layer: None,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// A spec error about a layer.
    pub fn spec_layer(
        origin: impl Into<String>,
        at: impl Into<String>,
        kind: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ModelError::Spec {
            origin: origin.into(),
            layer: Some(LayerAt {
                at: at.into(),
                kind: kind.into(),
            }),
            key: None,
            message: message.into(),
        }
    }

    /// The same error, from `origin` when it had none.
    pub fn within(self, origin: &str) -> Self {
        match self {
            ModelError::Spec {
                origin: o,
                layer,
                key,
                message,
            } if o.is_empty() => ModelError::Spec {
                origin: origin.to_string(),
                layer,
                key,
                message,
            },
            other => other,
        }
    }
}
