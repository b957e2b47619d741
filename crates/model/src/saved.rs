//! Saved models: `DIR/model.toml` (what the model is: its kind, spec,
//! markers with their alleles, the trait's scaling) and
//! `DIR/model.safetensors` (the tensors: weights by layer name, and the
//! per-marker standardization). Both are written to temporary files and
//! renamed. A saved model predicts new genotype files whose markers are
//! matched by ID and allele.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use geno::{Marker, PackedGenotypes, Standardizer};
use nn::{Backend, Network};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, ModelError, Result, TransferError};
use crate::image::{ImageMeta, ImageModel};
use crate::spec::ModelSpec;
use crate::train::{Fitted, InputMap, ScaledTrait, TargetScale};
use crate::transfer::{Provenance, SourceWeights};

const FORMAT: &str = "genocnn-model";
/// The version of `model.toml` this build writes and reads.
const VERSION: u32 = 1;

/// The markers of a saved model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MarkerTable {
    pub id: Vec<String>,
    pub a1: Vec<String>,
    pub a2: Vec<String>,
}

impl MarkerTable {
    pub fn from_markers(m: &[Marker]) -> Self {
        MarkerTable {
            id: m.iter().map(|x| x.id.clone()).collect(),
            a1: m.iter().map(|x| x.a1.clone()).collect(),
            a2: m.iter().map(|x| x.a2.clone()).collect(),
        }
    }
}

/// What kind of model a directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A neural network (`spec` holds its layers).
    Network,
    /// A linear model on centred dosages: prediction = intercept + Σ (x − center)·effect
    /// (SNP-BLUP, equivalent to a GBLUP fit).
    Linear,
    /// An image classifier (`spec` holds its layers, `image` its input).
    Image,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    kind: ModelKind,
    #[serde(default)]
    trait_name: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    n_train: usize,
    target_mean: f64,
    target_sd: f64,
    #[serde(default)]
    intercept: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<ImageMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<ModelSpec>,
    #[serde(default)]
    markers: MarkerTable,
    /// Where a transferred or fine-tuned model came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transfer: Option<Provenance>,
    /// A multi-trait network's traits, one output each, in order (a
    /// single-trait one has `trait_name`, `target_mean` and `target_sd`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    traits: Vec<TraitRecord>,
    /// The predictor traits a network sees as input channels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    predictor_traits: Vec<TraitRecord>,
}

/// A trait's name and scaling in `model.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TraitRecord {
    name: String,
    mean: f64,
    sd: f64,
}

impl TraitRecord {
    fn of(t: &ScaledTrait) -> Self {
        TraitRecord {
            name: t.name.clone(),
            mean: t.scale.mean,
            sd: t.scale.sd,
        }
    }

    fn scaled(&self) -> ScaledTrait {
        ScaledTrait {
            name: self.name.clone(),
            scale: TargetScale {
                mean: self.mean,
                sd: self.sd,
            },
        }
    }
}

/// A linear model on centred dosages (used for SNP-BLUP from GBLUP).
#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    pub markers: Vec<Marker>,
    /// Dosage centre per marker (2p); missing calls take this value.
    pub center: Vec<f64>,
    pub effects: Vec<f64>,
    pub intercept: f64,
    pub trait_name: String,
    pub n_train: usize,
}

impl LinearModel {
    /// Predictions for the individuals of `g`, read through `map`.
    pub fn predict(&self, g: &PackedGenotypes, map: &InputMap) -> Vec<f64> {
        let n = g.n_individuals();
        let mut out = vec![self.intercept; n];
        for (k, (&c, &b)) in self.center.iter().zip(&self.effects).enumerate() {
            let j = map.cols.as_ref().map_or(k, |cols| cols[k]);
            // Dosage by code 00, 01 (missing), 10, 11; flipped markers count the other allele.
            let d = if map.flipped[k] {
                [0.0, c, 1.0, 2.0]
            } else {
                [2.0, c, 1.0, 0.0]
            };
            let t = d.map(|x| (x - c) * b);
            for (i, o) in out.iter_mut().enumerate() {
                *o += t[g.code(i, j) as usize];
            }
        }
        out
    }
}

/// A model read back from disk.
pub enum SavedModel<B: Backend> {
    Network(Box<Fitted<B>>),
    Linear(LinearModel),
    Image(Box<ImageModel<B>>),
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_files(
    dir: &Path,
    header: &Header,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Io(dir.display().to_string(), e))?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s, v)| (n, s, le_bytes(&v)))
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| ModelError::Save {
                    path: dir.join("model.safetensors").display().to_string(),
                    message: e.to_string(),
                })?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let data = safetensors::tensor::serialize(views, None).map_err(|e| ModelError::Save {
        path: dir.join("model.safetensors").display().to_string(),
        message: e.to_string(),
    })?;
    geno::write_atomic(dir.join("model.safetensors"), &data)?;
    let text = toml::to_string(header).map_err(|e| ModelError::Save {
        path: dir.join("model.toml").display().to_string(),
        message: e.to_string(),
    })?;
    geno::write_atomic(dir.join("model.toml"), text.as_bytes())?;
    Ok(())
}

/// A tensor to save: (name, shape, values).
type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A network's parameters as (name, shape, values).
fn param_tensors<B: Backend>(network: &Network<B>) -> Result<Vec<NamedTensor>> {
    let backend = &network.backend;
    network
        .params()
        .into_iter()
        .map(|p| {
            Ok((
                p.name.clone(),
                backend.shape(&p.value),
                backend.to_vec(&p.value)?,
            ))
        })
        .collect()
}

/// Saves a trained network.
pub fn save_network<B: Backend>(f: &Fitted<B>, dir: &Path) -> Result<()> {
    let mut tensors = vec![
        (
            "input.mean".to_string(),
            vec![f.standardizer.mean.len()],
            f.standardizer.mean.clone(),
        ),
        (
            "input.sd".to_string(),
            vec![f.standardizer.sd.len()],
            f.standardizer.sd.clone(),
        ),
    ];
    tensors.extend(param_tensors(&f.network)?);
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kind: ModelKind::Network,
        trait_name: f.traits[0].name.clone(),
        seed: f.seed,
        n_train: f.n_train,
        target_mean: f.traits[0].scale.mean,
        target_sd: f.traits[0].scale.sd,
        intercept: 0.0,
        image: None,
        spec: Some(f.spec.clone()),
        markers: MarkerTable::from_markers(&f.markers),
        transfer: provenance(&f.provenance),
        traits: if f.traits.len() > 1 {
            f.traits.iter().map(TraitRecord::of).collect()
        } else {
            Vec::new()
        },
        predictor_traits: f.predictors.iter().map(TraitRecord::of).collect(),
    };
    write_files(dir, &header, tensors)
}

/// The provenance to write: none for a model trained from scratch in one phase.
fn provenance(p: &Provenance) -> Option<Provenance> {
    (p.source.is_some() || p.phases.len() > 1 || p.phases.iter().any(|ph| !ph.frozen.is_empty()))
        .then(|| p.clone())
}

/// Saves a trained image classifier.
pub fn save_image<B: Backend>(m: &ImageModel<B>, dir: &Path) -> Result<()> {
    let tensors = param_tensors(&m.network)?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kind: ModelKind::Image,
        trait_name: String::new(),
        seed: m.seed,
        n_train: m.n_train,
        target_mean: 0.0,
        target_sd: 1.0,
        intercept: 0.0,
        image: Some(m.meta.clone()),
        spec: Some(m.spec.clone()),
        markers: MarkerTable::default(),
        transfer: provenance(&m.provenance),
        traits: Vec::new(),
        predictor_traits: Vec::new(),
    };
    write_files(dir, &header, tensors)
}

/// Reads a tensor by name: (shape, values).
type TensorGetter<'a> = dyn Fn(&str) -> Result<(Vec<usize>, Vec<f32>)> + 'a;

/// Builds the spec's network and loads its weights, by name, from `get`.
fn build_loaded<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    input_shape: &[usize],
    seed: u64,
    st_path: &Path,
    get: &TensorGetter,
) -> Result<Network<B>> {
    let mut network = Network::build(backend.clone(), &spec.layers, input_shape, spec.init, seed)?;
    for p in network.params_mut() {
        let (shape, v) = get(&p.name)?;
        let want = backend.shape(&p.value);
        if shape != want {
            return Err(saved_err(
                st_path,
                format!(
                    "tensor '{}' has shape {shape:?}, the spec needs {want:?}",
                    p.name
                ),
            ));
        }
        p.value = backend.tensor(v, &shape)?;
    }
    Ok(network)
}

/// Saves a linear (SNP-BLUP) model.
pub fn save_linear(m: &LinearModel, dir: &Path) -> Result<()> {
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        kind: ModelKind::Linear,
        trait_name: m.trait_name.clone(),
        seed: 0,
        n_train: m.n_train,
        target_mean: 0.0,
        target_sd: 1.0,
        intercept: m.intercept,
        image: None,
        spec: None,
        markers: MarkerTable::from_markers(&m.markers),
        transfer: None,
        traits: Vec::new(),
        predictor_traits: Vec::new(),
    };
    let k = m.center.len();
    let tensors = vec![
        (
            "input.mean".to_string(),
            vec![k],
            m.center.iter().map(|&v| v as f32).collect(),
        ),
        (
            "snp.effects".to_string(),
            vec![k],
            m.effects.iter().map(|&v| v as f32).collect(),
        ),
    ];
    write_files(dir, &header, tensors)
}

fn saved_err(path: &Path, message: impl Into<String>) -> ModelError {
    ModelError::Saved {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// A model directory's header, its paths and the bytes of its tensors.
struct Opened {
    header: Header,
    toml_path: PathBuf,
    st_path: PathBuf,
    bytes: Vec<u8>,
}

fn open(dir: &Path) -> Result<Opened> {
    let toml_path = dir.join("model.toml");
    let st_path: PathBuf = dir.join("model.safetensors");
    let text = geno::textio::read_text(&toml_path)
        .map_err(|e| ModelError::Io(toml_path.display().to_string(), e))?;
    let header: Header = toml::from_str(&text).map_err(|e| saved_err(&toml_path, e.to_string()))?;
    if header.format != FORMAT {
        return Err(saved_err(
            &toml_path,
            format!("not a genocnn model (format = '{}')", header.format),
        ));
    }
    if header.version != VERSION {
        return Err(saved_err(
            &toml_path,
            format!(
                "version = {}; this genocnn reads version {VERSION} models{}",
                header.version,
                if header.version > VERSION {
                    " (the model was written by a newer genocnn)"
                } else {
                    ""
                }
            ),
        ));
    }
    let bytes =
        std::fs::read(&st_path).map_err(|e| ModelError::Io(st_path.display().to_string(), e))?;
    Ok(Opened {
        header,
        toml_path,
        st_path,
        bytes,
    })
}

/// An F32 tensor's values.
fn f32_values(st_path: &Path, name: &str, t: &TensorView) -> Result<Vec<f32>> {
    if t.dtype() != Dtype::F32 {
        return Err(saved_err(
            st_path,
            format!("tensor '{name}' is {:?}, expected F32", t.dtype()),
        ));
    }
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A saved network's (genomic or image) parameters, to start another
/// network from (`--init-from`). A linear model is refused: it has no
/// layers to give.
pub fn read_weights(dir: &Path) -> Result<SourceWeights> {
    let o = open(dir)?;
    if o.header.kind == ModelKind::Linear {
        return Err(TransferError::LinearSource {
            dir: dir.display().to_string(),
        }
        .into());
    }
    let st =
        SafeTensors::deserialize(&o.bytes).map_err(|e| saved_err(&o.st_path, e.to_string()))?;
    let mut tensors = Vec::new();
    for (name, t) in st.tensors() {
        if name.starts_with("input.") {
            continue;
        }
        let v = f32_values(&o.st_path, &name, &t)?;
        tensors.push((name, t.shape().to_vec(), v));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let class_labels = match &o.header.image {
        Some(m) if m.labels.is_empty() => (0..m.classes as u32).collect(),
        Some(m) => m.labels.clone(),
        None => Vec::new(),
    };
    Ok(SourceWeights {
        dir: dir.to_path_buf(),
        tensors,
        sha256: crate::transfer::sha256_hex(&o.bytes),
        class_labels,
        spec: o.header.spec.clone(),
    })
}

/// Loads a saved model onto a backend.
pub fn load<B: Backend>(dir: &Path, backend: B) -> Result<SavedModel<B>> {
    let Opened {
        header,
        toml_path,
        st_path,
        bytes,
    } = open(dir)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| saved_err(&st_path, e.to_string()))?;
    let get = |name: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let t = st
            .tensor(name)
            .map_err(|_| saved_err(&st_path, format!("tensor '{name}' is missing")))?;
        let v = f32_values(&st_path, name, &t)?;
        if let Some(k) = v.iter().position(|x| !x.is_finite()) {
            return Err(saved_err(
                &st_path,
                format!(
                    "tensor '{name}' holds {} at index {k}; a saved model's values must be finite",
                    v[k]
                ),
            ));
        }
        Ok((t.shape().to_vec(), v))
    };
    if header.kind == ModelKind::Image {
        let spec = header
            .spec
            .ok_or_else(|| saved_err(&toml_path, "an image model needs its [spec]"))?;
        let meta = header
            .image
            .ok_or_else(|| saved_err(&toml_path, "an image model needs its [image] table"))?;
        let input_shape = [meta.channels, meta.height, meta.width];
        let network = build_loaded(backend, &spec, &input_shape, header.seed, &st_path, &get)?;
        return Ok(SavedModel::Image(Box::new(ImageModel {
            spec,
            network,
            meta,
            history: Vec::new(),
            best_epoch: 0,
            n_train: header.n_train,
            n_val: 0,
            seed: header.seed,
            profile: None,
            provenance: header.transfer.unwrap_or_default(),
        })));
    }
    let mk = &header.markers;
    if mk.a1.len() != mk.id.len() || mk.a2.len() != mk.id.len() {
        return Err(saved_err(
            &toml_path,
            format!(
                "[markers] has {} IDs but {} a1 and {} a2 alleles; each marker needs one of each",
                mk.id.len(),
                mk.a1.len(),
                mk.a2.len()
            ),
        ));
    }
    let markers: Vec<Marker> = (0..mk.id.len())
        .map(|j| Marker {
            a1: mk.a1[j].clone(),
            a2: mk.a2[j].clone(),
            ..Marker::from_id(mk.id[j].clone())
        })
        .collect();
    let (_, mean) = get("input.mean")?;
    if mean.len() != markers.len() {
        return Err(saved_err(
            &st_path,
            format!(
                "input.mean has {} values for {} markers",
                mean.len(),
                markers.len()
            ),
        ));
    }
    match header.kind {
        ModelKind::Linear => {
            let (_, eff) = get("snp.effects")?;
            if eff.len() != markers.len() {
                return Err(saved_err(
                    &st_path,
                    format!(
                        "snp.effects has {} values for {} markers",
                        eff.len(),
                        markers.len()
                    ),
                ));
            }
            Ok(SavedModel::Linear(LinearModel {
                markers,
                center: mean.iter().map(|&v| v as f64).collect(),
                effects: eff.iter().map(|&v| v as f64).collect(),
                intercept: header.intercept,
                trait_name: header.trait_name,
                n_train: header.n_train,
            }))
        }
        ModelKind::Image => unreachable!("image models return above"),
        ModelKind::Network => {
            let spec = header
                .spec
                .ok_or_else(|| saved_err(&toml_path, "a network model needs its [spec]"))?;
            let (_, sd) = get("input.sd")?;
            if sd.len() != markers.len() {
                return Err(saved_err(
                    &st_path,
                    format!(
                        "input.sd has {} values for {} markers",
                        sd.len(),
                        markers.len()
                    ),
                ));
            }
            let standardizer = Standardizer::from_moments(mean, sd);
            let predictors: Vec<ScaledTrait> = header
                .predictor_traits
                .iter()
                .map(TraitRecord::scaled)
                .collect();
            let traits: Vec<ScaledTrait> = if header.traits.is_empty() {
                vec![ScaledTrait {
                    name: header.trait_name.clone(),
                    scale: TargetScale {
                        mean: header.target_mean,
                        sd: header.target_sd,
                    },
                }]
            } else {
                header.traits.iter().map(TraitRecord::scaled).collect()
            };
            let input_shape = [spec.input.channels() + predictors.len(), markers.len()];
            let network = build_loaded(backend, &spec, &input_shape, header.seed, &st_path, &get)?;
            Ok(SavedModel::Network(Box::new(Fitted {
                spec,
                network,
                standardizer,
                markers,
                traits,
                predictors,
                history: Vec::new(),
                best_epoch: 0,
                n_train: header.n_train,
                n_val: 0,
                seed: header.seed,
                profile: None,
                provenance: header.transfer.unwrap_or_default(),
            })))
        }
    }
}

/// How a new genotype file's markers were matched to a model's.
#[derive(Clone, Debug, PartialEq)]
pub struct MatchReport {
    pub flipped: usize,
    /// Markers whose alleles could not be compared (unknown on one side).
    pub unchecked: usize,
}

fn unknown_alleles(a1: &str, a2: &str) -> bool {
    (a1 == "A" && a2 == "B") || a2 == "0" || a1 == "0"
}

/// Matches the model's markers to `g`'s by ID and alleles. A marker whose
/// A1 and A2 are swapped is read flipped. Missing markers are an error that
/// lists a few of them and the count.
pub fn match_markers(
    model: &[Marker],
    g: &PackedGenotypes,
    file: &str,
) -> Result<(InputMap, MatchReport)> {
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(g.n_markers());
    for (j, m) in g.markers().iter().enumerate() {
        index.entry(m.id.as_str()).or_insert(j);
    }
    let mut cols = Vec::with_capacity(model.len());
    let mut flipped = Vec::with_capacity(model.len());
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut report = MatchReport {
        flipped: 0,
        unchecked: 0,
    };
    for m in model {
        let Some(&j) = index.get(m.id.as_str()) else {
            missing.push(m.id.as_str());
            continue;
        };
        let n = &g.markers()[j];
        // A file (or a model) without alleles (a CSV matrix gives the
        // placeholders A/B) can only be matched by ID: count every such
        // marker, whatever letters the other side has.
        let placeholder = |x: &Marker| x.a1 == "A" && x.a2 == "B";
        let flip = if placeholder(n) || placeholder(m) {
            report.unchecked += 1;
            false
        } else if n.a1 == m.a1
            && (n.a2 == m.a2 || unknown_alleles(&n.a1, &n.a2) || unknown_alleles(&m.a1, &m.a2))
        {
            false
        } else if n.a1 == m.a2 && (n.a2 == m.a1 || n.a2 == "0") {
            true
        } else if unknown_alleles(&n.a1, &n.a2) || unknown_alleles(&m.a1, &m.a2) {
            report.unchecked += 1;
            false
        } else {
            mismatched.push(format!(
                "{} ({}/{} in the model, {}/{} in the file)",
                m.id, m.a1, m.a2, n.a1, n.a2
            ));
            false
        };
        report.flipped += usize::from(flip);
        cols.push(j);
        flipped.push(flip);
    }
    if !missing.is_empty() {
        return Err(DataError::MissingMarkers {
            file: file.to_string(),
            missing: missing.iter().map(|m| m.to_string()).collect(),
            total: model.len(),
        }
        .into());
    }
    if !mismatched.is_empty() {
        return Err(DataError::Alleles {
            file: file.to_string(),
            mismatched,
        }
        .into());
    }
    let identity = cols.iter().enumerate().all(|(k, &j)| k == j) && cols.len() == g.n_markers();
    Ok((
        InputMap {
            cols: if identity { None } else { Some(cols) },
            flipped,
        },
        report,
    ))
}
