//! Transfer learning: a network started from a saved model's weights
//! (every tensor whose name and shape match), layers frozen by path or as
//! the convolutional base, and the phases of a fine-tuning run (the head
//! on a frozen base, then named layers unfrozen at a lower rate).
//!
//! Paths are spec paths (`layers.3`, `layers.2.branch.0`): freezing a
//! container freezes everything inside it.

use std::path::PathBuf;

use nn::{Backend, LayerSpec, Network};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Result, TransferError};

/// Layers named on the command line: the base, the head, or spec paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerSelection {
    /// Every top-level layer before the first `flatten`, global pool or
    /// `dense` layer: the convolutional base.
    Base,
    /// The top-level layers from the first `flatten`, global pool or
    /// `dense` layer on.
    Head,
    /// Every layer.
    All,
    /// Spec paths, such as `layers.0,layers.2`.
    Paths(Vec<String>),
}

impl LayerSelection {
    /// Parses `base`, `head`, `all` or a comma-separated list of paths
    /// (`layers.` may be left off: `0,2` means `layers.0,layers.2`).
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        match text.trim() {
            "base" => return Ok(LayerSelection::Base),
            "head" => return Ok(LayerSelection::Head),
            "all" => return Ok(LayerSelection::All),
            _ => {}
        }
        let mut paths = Vec::new();
        for p in text.split(',') {
            let p = p.trim().trim_end_matches('.');
            if p.is_empty() {
                return Err(format!(
                    "'{text}': expected base, head, all, or layer paths such as layers.0,layers.2"
                ));
            }
            paths.push(if p == "layers" || p.starts_with("layers.") {
                p.to_string()
            } else {
                format!("layers.{p}")
            });
        }
        Ok(LayerSelection::Paths(paths))
    }
}

/// The index of the first top-level spec layer of the head: the first
/// `flatten`, global pool or `dense` layer (the spec's length when none).
pub fn head_start(layers: &[LayerSpec]) -> usize {
    layers
        .iter()
        .position(|l| {
            matches!(
                l.kind(),
                "flatten" | "dense" | "global_avg_pool" | "global_max_pool"
            )
        })
        .unwrap_or(layers.len())
}

/// The spec paths a selection names, checked against the built network:
/// a path that names no layer is an error that lists the top-level paths.
pub fn resolve<B: Backend>(
    sel: &LayerSelection,
    layers: &[LayerSpec],
    network: &Network<B>,
    flag: &str,
) -> Result<Vec<String>> {
    let top = |r: std::ops::Range<usize>| r.map(|i| format!("layers.{i}")).collect::<Vec<_>>();
    let h = head_start(layers);
    let paths = match sel {
        LayerSelection::Base => {
            if h == 0 {
                return Err(TransferError::NoBase {
                    flag: flag.to_string(),
                    first: layers.first().map_or("missing", |l| l.kind()).to_string(),
                }
                .into());
            }
            top(0..h)
        }
        LayerSelection::Head => {
            if h == layers.len() {
                return Err(TransferError::NoHead {
                    flag: flag.to_string(),
                }
                .into());
            }
            top(h..layers.len())
        }
        LayerSelection::All => top(0..layers.len()),
        LayerSelection::Paths(p) => p.clone(),
    };
    let unknown: Vec<&str> = paths
        .iter()
        .filter(|p| network.find(p).is_none())
        .map(|p| p.as_str())
        .collect();
    if !unknown.is_empty() {
        return Err(TransferError::UnknownLayers {
            flag: flag.to_string(),
            unknown: unknown.iter().map(|u| u.to_string()).collect(),
            layers: describe_top(layers),
        }
        .into());
    }
    Ok(paths)
}

/// `layers.0 (conv1d), layers.1 (max_pool1d), …`.
pub fn describe_top(layers: &[LayerSpec]) -> String {
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| format!("layers.{i} ({})", l.kind()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a parameter name lies inside one of `paths`.
pub fn inside(name: &str, paths: &[String]) -> bool {
    paths
        .iter()
        .any(|p| name.starts_with(p.as_str()) && name.as_bytes().get(p.len()) == Some(&b'.'))
}

/// A saved model's parameters, read to start another network from.
pub struct SourceWeights {
    pub dir: PathBuf,
    /// (name, shape, values), input standardization excluded.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// SHA-256 of its `model.safetensors`, in hex.
    pub sha256: String,
    /// The original class labels of an image model's outputs (0, 1, … when
    /// it was trained on every class); empty for genomic models.
    pub class_labels: Vec<u32>,
    /// Its spec, for a run that gives no config of its own.
    pub spec: Option<crate::spec::ModelSpec>,
}

/// A tensor that could not be copied: its name and its shape in the
/// source and in the new network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub name: String,
    pub source_shape: Vec<usize>,
    pub shape: Vec<usize>,
}

/// What [`init_from`] did with each tensor of the new network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    /// Copied: the same name and shape in the source.
    pub copied: Vec<String>,
    /// In both, with different shapes: freshly initialised.
    pub skipped: Vec<Skipped>,
    /// Not in the source, or left out on purpose (`reinit`): freshly initialised.
    pub initialised: Vec<String>,
}

/// SHA-256 of some bytes, in hex (as `sha256sum` prints it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Copies into `network` every tensor of `source` whose name and shape
/// match, except those inside the `reinit` paths. A source none of whose
/// tensors match is an error that names both sides' tensors.
pub fn init_from<B: Backend>(
    network: &mut Network<B>,
    source: &SourceWeights,
    reinit: &[String],
) -> Result<TransferReport> {
    let backend = network.backend.clone();
    let mut report = TransferReport::default();
    for p in network.params_mut() {
        let shape = backend.shape(&p.value);
        match source.tensors.iter().find(|(n, _, _)| *n == p.name) {
            Some(_) if inside(&p.name, reinit) => report.initialised.push(p.name.clone()),
            Some((_, s, v)) if *s == shape => {
                p.value = backend.tensor(v.clone(), &shape)?;
                report.copied.push(p.name.clone());
            }
            Some((_, s, _)) => report.skipped.push(Skipped {
                name: p.name.clone(),
                source_shape: s.clone(),
                shape,
            }),
            None => report.initialised.push(p.name.clone()),
        }
    }
    if report.copied.is_empty() {
        let mine: Vec<String> = network
            .params()
            .iter()
            .map(|p| format!("{} {:?}", p.name, backend.shape(&p.value)))
            .collect();
        let theirs: Vec<String> = source
            .tensors
            .iter()
            .map(|(n, s, _)| format!("{n} {s:?}"))
            .collect();
        return Err(TransferError::NoMatch {
            dir: source.dir.display().to_string(),
            offered: theirs,
            needed: mine,
        }
        .into());
    }
    Ok(report)
}

/// One phase of a training run: the layers frozen while it runs, its
/// epochs and its learning rate. A run of one phase that freezes nothing
/// is ordinary training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub frozen: Vec<String>,
    pub epochs: usize,
    pub lr: f32,
}

/// What a phase did, as `model.toml` and `summary.json` record it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub phase: usize,
    pub frozen: Vec<String>,
    pub lr: f32,
    pub epochs_run: usize,
    /// The epoch (1-based, counted over the whole run) whose weights the
    /// phase kept.
    pub best_epoch: usize,
    /// Values the optimizer updated in this phase.
    pub trainable_values: usize,
}

/// Where a model came from: the source model and what each phase froze.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The `--init-from` directory, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_sha256: Option<String>,
    #[serde(default)]
    pub copied: usize,
    #[serde(default)]
    pub skipped: usize,
    #[serde(default)]
    pub initialised: usize,
    #[serde(default)]
    pub phases: Vec<PhaseRecord>,
}

/// Checks a run's phases against the network before any training: every
/// phase leaves something to learn.
pub fn check_phases<B: Backend>(network: &mut Network<B>, phases: &[Phase]) -> Result<()> {
    for (k, ph) in phases.iter().enumerate() {
        apply_frozen(network, &ph.frozen);
        if network.n_trainable() == 0 {
            apply_frozen(network, &[]);
            return Err(TransferError::NothingToTrain {
                phase: k + 1,
                frozen: ph.frozen.clone(),
            }
            .into());
        }
    }
    apply_frozen(network, &[]);
    Ok(())
}

/// Freezes exactly the layers at `paths` (and unfreezes every other).
pub fn apply_frozen<B: Backend>(network: &mut Network<B>, paths: &[String]) {
    for p in network.params_mut() {
        p.frozen = false;
    }
    network.set_frozen(paths, true);
}
