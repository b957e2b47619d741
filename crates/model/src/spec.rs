//! Model specs: a TOML file with the input encoding, the layers and the
//! training settings. Each key is checked; an unknown key, or a shape that
//! cannot work, is an error that names the layer and the key.

use std::path::Path;

use nn::Init;
use nn::{LayerSpec, Loss, Optimizer, Schedule};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// How genotypes enter the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputEncoding {
    /// One channel: the dosage standardized with the training individuals'
    /// mean and SD; missing calls at 0 (the mean).
    #[default]
    Standardized,
    /// Three channels: indicators of dosage 0, 1 and 2; missing calls all 0.
    OneHot,
}

impl InputEncoding {
    pub fn channels(self) -> usize {
        match self {
            InputEncoding::Standardized => 1,
            InputEncoding::OneHot => 3,
        }
    }
}

fn default_epochs() -> usize {
    100
}
fn default_batch() -> usize {
    32
}
fn default_lr() -> f32 {
    1e-3
}
fn default_val() -> f64 {
    0.1
}
fn default_patience() -> usize {
    10
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    #[serde(default)]
    pub loss: Loss,
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    #[serde(default = "default_lr")]
    pub lr: f32,
    #[serde(default)]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub schedule: Schedule,
    /// Fraction of the training individuals held out for early stopping (0: none).
    #[serde(default = "default_val")]
    pub val_fraction: f64,
    /// Epochs without a better validation loss before stopping.
    #[serde(default = "default_patience")]
    pub patience: usize,
}

impl Default for TrainingSpec {
    fn default() -> Self {
        TrainingSpec {
            loss: Loss::default(),
            epochs: default_epochs(),
            batch_size: default_batch(),
            lr: default_lr(),
            optimizer: Optimizer::default(),
            schedule: Schedule::default(),
            val_fraction: default_val(),
            patience: default_patience(),
        }
    }
}

impl TrainingSpec {
    /// Checks the settings once.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, m: String| Err(ModelError::spec_key("", key, m));
        if self.epochs == 0 {
            return bad(
                "training.epochs",
                "training.epochs must be at least 1".into(),
            );
        }
        if self.batch_size == 0 {
            return bad(
                "training.batch_size",
                "training.batch_size must be at least 1".into(),
            );
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(
                "training.lr",
                format!("training.lr = {}: expected a positive number", self.lr),
            );
        }
        if !(0.0..0.9).contains(&self.val_fraction) {
            return bad(
                "training.val_fraction",
                format!(
                    "training.val_fraction = {}: expected a value in [0, 0.9)",
                    self.val_fraction
                ),
            );
        }
        Ok(())
    }
}

/// A model: its name, input encoding, initialization, layers and training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    /// Where the spec was read from (its file), for errors; not saved.
    #[serde(skip)]
    pub origin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub input: InputEncoding,
    #[serde(default)]
    pub init: Init,
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub training: TrainingSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    input: InputEncoding,
    #[serde(default)]
    init: Init,
    layers: Vec<toml::Value>,
    #[serde(default)]
    training: TrainingSpec,
}

/// A layer's error: (where, its type, the message).
type LayerError = (String, String, String);

/// Reads one layer at `at` (`3`, `3.branch.1.layers.0`). An error in a
/// container is reported at the nested layer that causes it.
fn parse_layer(v: &toml::Value, at: &str) -> std::result::Result<LayerSpec, LayerError> {
    let kind = v.get("type").and_then(|t| t.as_str()).unwrap_or("?");
    LayerSpec::deserialize(v.clone()).map_err(|e| {
        // Containers: find the nested layer at fault.
        let lists: Vec<(String, &toml::Value)> = match kind {
            "sequential" | "residual" => v
                .get("layers")
                .into_iter()
                .map(|l| (format!("{at}.layers"), l))
                .collect(),
            "branches" => v
                .get("branch")
                .and_then(|b| b.as_array())
                .into_iter()
                .flatten()
                .enumerate()
                .filter_map(|(k, b)| {
                    b.get("layers")
                        .map(|l| (format!("{at}.branch.{k}.layers"), l))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (prefix, list) in lists {
            for (j, child) in list.as_array().into_iter().flatten().enumerate() {
                if let Err(inner) = parse_layer(child, &format!("{prefix}.{j}")) {
                    return inner;
                }
            }
        }
        (
            at.to_string(),
            kind.to_string(),
            e.message().trim().to_string(),
        )
    })
}

impl ModelSpec {
    /// Parses a spec; `default_name` is used when the file names none.
    pub fn from_toml(text: &str, default_name: &str, origin: &str) -> Result<Self> {
        let raw: RawSpec =
            toml::from_str(text).map_err(|e| ModelError::spec(origin, e.to_string()))?;
        let mut layers = Vec::with_capacity(raw.layers.len());
        for (i, v) in raw.layers.into_iter().enumerate() {
            let layer = parse_layer(&v, &i.to_string())
                .map_err(|(at, kind, m)| ModelError::spec_layer(origin, at, kind, m))?;
            layers.push(layer);
        }
        if layers.is_empty() {
            return Err(ModelError::spec_key(
                origin,
                "layers",
                "the model has no layers",
            ));
        }
        raw.training.validate().map_err(|e| e.within(origin))?;
        Ok(ModelSpec {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            origin: Some(origin.to_string()),
            description: raw.description,
            input: raw.input,
            init: raw.init,
            layers,
            training: raw.training,
        })
    }

    /// Reads a spec file; the model's name defaults to the file stem.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = geno::textio::read_text(path)
            .map_err(|e| ModelError::Io(path.display().to_string(), e))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        Self::from_toml(&text, stem, &path.display().to_string())
    }

    /// Gives the output layer (the last, a dense layer) `k` units: one per
    /// class, or one per trait. `what` names the option asking, for the error.
    pub fn set_output_units(&mut self, k: usize, what: &str) -> Result<()> {
        let origin = self.origin();
        match self.layers.last_mut() {
            Some(LayerSpec::Dense(d)) => {
                d.units = k;
                Ok(())
            }
            other => Err(ModelError::spec(
                origin,
                format!(
                    "{what}: model '{}' must end with a dense layer (one unit per output), not {}",
                    self.name,
                    other.map_or("nothing", |l| l.kind())
                ),
            )),
        }
    }

    /// Where the spec came from, for errors: its file, or its name.
    pub fn origin(&self) -> String {
        self.origin
            .clone()
            .unwrap_or_else(|| format!("model '{}'", self.name))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a spec serializes")
    }
}
