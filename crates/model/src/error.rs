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
    /// Data that do not fit the model or the training run.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A transfer (`--init-from`, `--freeze`, `--unfreeze`) that cannot be
    /// done.
    #[error(transparent)]
    Transfer(#[from] TransferError),
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

/// Up to `k` items joined by ", ", with "…" when there were more.
fn some(items: &[String], k: usize) -> String {
    let mut s = items.iter().take(k).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > k {
        s.push_str(", …");
    }
    s
}

/// Data that do not fit the model or the training run. Each variant
/// carries the values a caller needs to act on it; the wording is only
/// the display.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DataError {
    /// No trait was given to train on.
    #[error("no trait to train on")]
    NoTrait,
    /// A trait (or predictor) column whose length is not the number of
    /// genotyped individuals.
    #[error("trait {trait_name} has {found} values for {expected} genotyped individuals")]
    TraitLength {
        trait_name: String,
        found: usize,
        expected: usize,
    },
    /// Too few records to train: `what` says of what
    /// ("training individuals have a phenotype", "training images").
    #[error("only {found} {what}; at least {needed} are needed")]
    TooFew {
        what: &'static str,
        found: usize,
        needed: usize,
    },
    /// A trait with no record among the training individuals.
    #[error("trait {trait_name} has no record among the training individuals")]
    NoRecords { trait_name: String },
    /// A training target the loss cannot take: `expected` says what it
    /// needs ("a 0/1 trait", "class numbers 0, 1, …", "a class below 10").
    #[error("{loss} needs {expected}, but {individual} has {value}")]
    Target {
        loss: &'static str,
        expected: String,
        individual: String,
        value: f64,
    },
    /// Images whose shape is not the model's (channels, height, width).
    #[error(
        "the {what} images are {}×{}×{} (channels × height × width), the model expects {}×{}×{}",
        found[0], found[1], found[2], expected[0], expected[1], expected[2]
    )]
    ImageShape {
        what: String,
        found: [usize; 3],
        expected: [usize; 3],
    },
    /// A predictor-trait list that is not the model's.
    #[error(
        "the model sees {} predictor trait{} ({}), but {found} were given",
        expected.len(), if expected.len() == 1 { "" } else { "s" }, expected.join(", ")
    )]
    Predictors { expected: Vec<String>, found: usize },
    /// Markers of the model that the genotype `file` lacks.
    #[error("{file}: {} of the model's {total} markers are missing, for example {}", missing.len(), some(missing, 5))]
    MissingMarkers {
        file: String,
        missing: Vec<String>,
        total: usize,
    },
    /// Markers whose alleles match the model's neither way; each entry
    /// reads `ID (A1/A2 in the model, A1/A2 in the file)`.
    #[error("{file}: {} markers have alleles that match neither way, for example {}", mismatched.len(), some(mismatched, 3))]
    Alleles {
        file: String,
        mismatched: Vec<String>,
    },
}

/// A transfer of weights or a freezing schedule that cannot be done.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TransferError {
    /// `--init-from` a saved linear (GBLUP) model.
    #[error("--init-from {dir}: it holds a linear (GBLUP) model, which has no layers to transfer; give a network trained by `genocnn train` or `genocnn image train`")]
    LinearSource { dir: String },
    /// `flag base` on a network whose first layer already belongs to the head.
    #[error("{flag} base: the network has no convolutional base (its first layer, layers.0, is a {first} layer)")]
    NoBase { flag: String, first: String },
    /// `flag head` on a network without a flatten, global pool or dense layer.
    #[error("{flag} head: the network has no flatten, global pool or dense layer, so no head")]
    NoHead { flag: String },
    /// Layer paths that name no layer; `layers` lists the top-level ones.
    #[error("{flag}: {} names no layer of the network; its top-level layers are {layers}", unknown.join(", "))]
    UnknownLayers {
        flag: String,
        unknown: Vec<String>,
        layers: String,
    },
    /// No tensor of the source matches the new network by name and shape;
    /// each entry reads `name [shape]`.
    #[error("--init-from {dir}: no tensor matches the new network by name and shape (the source has {}; the network needs {})", shorten(offered), shorten(needed))]
    NoMatch {
        dir: String,
        offered: Vec<String>,
        needed: Vec<String>,
    },
    /// A phase (counted from 1) that freezes every trainable layer.
    #[error("phase {phase}: freezing {} leaves nothing to train", frozen.join(", "))]
    NothingToTrain { phase: usize, frozen: Vec<String> },
}

/// Up to six items, then how many more.
fn shorten(items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(6).map(|s| s.as_str()).collect();
    let more = items.len().saturating_sub(6);
    if more > 0 {
        format!("{}, and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

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
