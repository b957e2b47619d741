//! Training a network on genotypes: mini-batches decoded from the packed
//! store, standardization learned from the training individuals only, a
//! validation split drawn from them for early stopping, and predictions in
//! the trait's units.

use geno::{Marker, PackedGenotypes, Standardizer};
use nn::{Backend, Loss, Network, Profile};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::spec::{InputEncoding, ModelSpec};
use crate::trainer::{self, EpochCore, Task, TrainOptions};
use crate::transfer::Provenance;

/// How the model's markers are read from a genotype store: for each model
/// marker, its column in the store (None: the same column) and whether its
/// alleles are swapped there.
#[derive(Clone, Debug)]
pub struct InputMap {
    pub cols: Option<Vec<usize>>,
    pub flipped: Vec<bool>,
}

impl InputMap {
    /// The identity map for a store with `m` markers.
    pub fn identity(m: usize) -> Self {
        InputMap {
            cols: None,
            flipped: vec![false; m],
        }
    }
}

/// Decoding tables for one encoding channel, with flipped markers' homozygote
/// entries swapped.
fn channel_luts(
    enc: InputEncoding,
    channel: usize,
    st: &Standardizer,
    flipped: &[bool],
) -> Vec<[f32; 4]> {
    flipped
        .iter()
        .enumerate()
        .map(|(j, &f)| {
            let mut t = match enc {
                InputEncoding::Standardized => st.lut[j],
                InputEncoding::OneHot => {
                    // Codes 00, 01, 10, 11 are dosages 2, missing, 1, 0.
                    let dose = [Some(2), None, Some(1), Some(0)];
                    dose.map(|d: Option<usize>| if d == Some(channel) { 1.0 } else { 0.0 })
                }
            };
            if f {
                t.swap(0, 3);
            }
            t
        })
        .collect()
}

/// Decodes mini-batches of network input from a genotype store.
pub struct BatchDecoder<'a> {
    g: &'a PackedGenotypes,
    cols: Option<Vec<usize>>,
    luts: Vec<Vec<[f32; 4]>>,
    m: usize,
    buf: Vec<f32>,
}

impl<'a> BatchDecoder<'a> {
    pub fn new(
        g: &'a PackedGenotypes,
        enc: InputEncoding,
        st: &Standardizer,
        map: &InputMap,
    ) -> Self {
        let luts = (0..enc.channels())
            .map(|c| channel_luts(enc, c, st, &map.flipped))
            .collect();
        BatchDecoder {
            g,
            cols: map.cols.clone(),
            luts,
            m: map.flipped.len(),
            buf: Vec::new(),
        }
    }

    /// The input of individuals `rows`: batch × channels × markers.
    pub fn decode(&mut self, rows: &[usize]) -> (Vec<f32>, [usize; 3]) {
        let (b, c, m) = (rows.len(), self.luts.len(), self.m);
        let mut out = vec![0f32; b * c * m];
        self.buf.resize(b * m, 0.0);
        for (ch, lut) in self.luts.iter().enumerate() {
            let dst = if c == 1 {
                &mut out[..]
            } else {
                &mut self.buf[..]
            };
            match &self.cols {
                None => self.g.decode_rows(rows, 0..m, lut, dst),
                Some(cols) => self.g.decode_rows_mapped(rows, cols, lut, dst),
            }
            if c > 1 {
                for r in 0..b {
                    out[(r * c + ch) * m..(r * c + ch + 1) * m]
                        .copy_from_slice(&self.buf[r * m..(r + 1) * m]);
                }
            }
        }
        (out, [b, c, m])
    }
}

/// The target's scaling: the network learns (y − mean) / sd.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TargetScale {
    pub mean: f64,
    pub sd: f64,
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    /// The training phase (1-based; 2 while fine-tuning).
    pub phase: usize,
    pub lr: f32,
    /// Mean training loss (standardized units), penalties included.
    pub train_loss: f64,
    /// Validation loss, NaN without a validation split.
    pub val_loss: f64,
    /// Pearson r between validation predictions and observations.
    pub val_r: f64,
    pub seconds: f64,
}

/// Progress reported during training; `R` is the epoch report.
pub enum Event<'a, R = EpochReport> {
    Start {
        epochs: usize,
        batches_per_epoch: usize,
        n_train: usize,
        n_val: usize,
    },
    Batch {
        epoch: usize,
        batch: usize,
        loss: f64,
    },
    Epoch(&'a R),
}

/// A trained network with everything needed to predict.
pub struct Fitted<B: Backend> {
    pub spec: ModelSpec,
    pub network: Network<B>,
    pub standardizer: Standardizer,
    pub markers: Vec<Marker>,
    pub target: TargetScale,
    pub history: Vec<EpochReport>,
    /// The epoch whose weights were kept (0-based).
    pub best_epoch: usize,
    pub n_train: usize,
    pub n_val: usize,
    pub seed: u64,
    /// Per-layer times of the training run, when asked for.
    pub profile: Option<Profile>,
    /// The source model and the phases, for a transferred or fine-tuned model.
    pub provenance: Provenance,
}

fn to_targets(loss: Loss, y: &[f64], rows: &[usize], scale: TargetScale) -> Vec<f32> {
    rows.iter()
        .map(|&i| match loss {
            Loss::Mse | Loss::Huber => ((y[i] - scale.mean) / scale.sd) as f32,
            _ => y[i] as f32,
        })
        .collect()
}

/// Trains `spec` on the individuals `train` (those with a value in `y`).
pub fn fit<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    g: &PackedGenotypes,
    y: &[f64],
    train: &[usize],
    seed: u64,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Fitted<B>> {
    spec.training.validate()?;
    let network = build_network(backend, spec, g.n_markers(), seed)?;
    fit_with(
        network,
        spec,
        g,
        y,
        train,
        seed,
        &TrainOptions::default(),
        on,
    )
}

/// The spec's network for genotypes of `n_markers` markers, initialized from `seed`.
pub fn build_network<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    n_markers: usize,
    seed: u64,
) -> Result<Network<B>> {
    let input_shape = [spec.input.channels(), n_markers];
    Ok(Network::build(
        backend,
        &spec.layers,
        &input_shape,
        spec.init,
        seed,
    )?)
}

/// The genomic task of the training loop: batches decoded from the packed
/// store, and the validation split's loss and r after each epoch.
struct GenomicTask<'a, 'g> {
    decoder: BatchDecoder<'g>,
    y: &'a [f64],
    val: &'a [usize],
    loss: Loss,
    width: usize,
    scale: TargetScale,
}

impl<B: Backend> Task<B> for GenomicTask<'_, '_> {
    type Report = EpochReport;

    fn batch(
        &mut self,
        backend: &B,
        rows: &[usize],
        _epoch: usize,
    ) -> Result<(B::Tensor, Vec<f32>)> {
        let (x, shape) = self.decoder.decode(rows);
        let x = backend.tensor(x, &shape)?;
        Ok((x, to_targets(self.loss, self.y, rows, self.scale)))
    }

    fn end_epoch(
        &mut self,
        network: &Network<B>,
        core: &EpochCore,
    ) -> Result<(Option<f64>, EpochReport)> {
        let (val_loss, val_r) = if self.val.is_empty() {
            (None, f64::NAN)
        } else {
            let out = raw_outputs(network, &mut self.decoder, self.val, self.width)?;
            let targets = to_targets(self.loss, self.y, self.val, self.scale);
            let (l, _) = self.loss.eval(&out, self.width, &targets);
            let pred = outputs_to_predictions(self.loss, &out, self.width, self.scale);
            let obs: Vec<f64> = self.val.iter().map(|&i| self.y[i]).collect();
            (Some(l), eval::metrics::pearson(&pred, &obs))
        };
        let report = EpochReport {
            epoch: core.epoch,
            phase: core.phase,
            lr: core.lr,
            train_loss: core.train_loss,
            val_loss: val_loss.unwrap_or(f64::NAN),
            val_r,
            seconds: core.started.elapsed().as_secs_f64(),
        };
        Ok((val_loss, report))
    }
}

/// Trains `network` (built for `spec`, or loaded) on the individuals
/// `train` (those with a value in `y`): linfa's `FitWith`, for training
/// that starts from given weights.
#[allow(clippy::too_many_arguments)]
pub fn fit_with<B: Backend>(
    mut network: Network<B>,
    spec: &ModelSpec,
    g: &PackedGenotypes,
    y: &[f64],
    train: &[usize],
    seed: u64,
    opts: &TrainOptions,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Fitted<B>> {
    let t = &spec.training;
    t.validate()?;
    let input_shape = [spec.input.channels(), g.n_markers()];
    if network.input_shape != input_shape {
        return Err(ModelError::Spec(format!(
            "model '{}': the network takes inputs of {:?}, but the genotypes give {input_shape:?} ({} markers)",
            spec.name,
            network.input_shape,
            g.n_markers()
        )));
    }
    let train: Vec<usize> = train.iter().copied().filter(|&i| !y[i].is_nan()).collect();
    if train.len() < 2 {
        return Err(ModelError::Data(format!(
            "only {} training individuals have a phenotype; at least 2 are needed",
            train.len()
        )));
    }
    let loss = t.loss;
    match loss {
        Loss::BinaryCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y[i] != 0.0 && y[i] != 1.0) {
                return Err(ModelError::Data(format!(
                    "binary_cross_entropy needs a 0/1 trait, but individual {} has {}",
                    g.individuals()[i].iid,
                    y[i]
                )));
            }
        }
        Loss::SoftmaxCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y[i] < 0.0 || y[i].fract() != 0.0) {
                return Err(ModelError::Data(format!(
                    "softmax_cross_entropy needs class numbers 0, 1, …, but individual {} has {}",
                    g.individuals()[i].iid,
                    y[i]
                )));
            }
        }
        _ => {}
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = train.clone();
    order.shuffle(&mut rng);
    let n_val = (t.val_fraction * order.len() as f64).round() as usize;
    let n_val = if t.val_fraction > 0.0 {
        n_val.clamp(1, order.len() - 1)
    } else {
        0
    };
    let val: Vec<usize> = order[..n_val].to_vec();
    let mut fit_rows: Vec<usize> = order[n_val..].to_vec();
    fit_rows.sort_unstable();

    // Everything learned comes from the training individuals only.
    let standardizer = Standardizer::fit(g, Some(&train));
    let scale = match loss {
        Loss::Mse | Loss::Huber => {
            let v: Vec<f64> = train.iter().map(|&i| y[i]).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let sd =
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
            TargetScale {
                mean,
                sd: if sd > 0.0 { sd } else { 1.0 },
            }
        }
        _ => TargetScale { mean: 0.0, sd: 1.0 },
    };

    let width: usize = network.output_shape.iter().product();
    match loss {
        Loss::SoftmaxCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y[i] as usize >= width) {
                return Err(ModelError::Data(format!(
                    "individual {} has class {}, but the last layer has {width} outputs",
                    g.individuals()[i].iid,
                    y[i]
                )));
            }
        }
        _ if width != 1 || network.output_shape.len() != 1 => {
            return Err(ModelError::Spec(format!(
                "model '{}': the last layer gives {:?} values per individual; a {:?} model needs one (end with a dense layer of 1 unit)",
                spec.name, network.output_shape, loss
            )))
        }
        _ => {}
    }
    let map = InputMap::identity(g.n_markers());
    let backend = network.backend.clone();
    let decoder = BatchDecoder::new(g, spec.input, &standardizer, &map);
    let mut task = GenomicTask {
        decoder,
        y,
        val: &val,
        loss,
        width,
        scale,
    };
    let trained = backend.install(|| {
        trainer::run(
            &mut network,
            t,
            &mut task,
            &mut fit_rows,
            n_val,
            &mut rng,
            seed,
            loss,
            width,
            opts,
            on,
        )
    })?;
    Ok(Fitted {
        spec: spec.clone(),
        network,
        standardizer,
        markers: g.markers().to_vec(),
        target: scale,
        history: trained.history,
        best_epoch: trained.best_epoch,
        n_train: fit_rows.len(),
        n_val,
        seed,
        profile: trained.profile,
        provenance: Provenance {
            phases: trained.phases,
            ..Provenance::default()
        },
    })
}

/// Network outputs for `rows`, in evaluation mode, in batches.
fn raw_outputs<B: Backend>(
    network: &Network<B>,
    decoder: &mut BatchDecoder,
    rows: &[usize],
    width: usize,
) -> Result<Vec<f32>> {
    let backend = &network.backend;
    let mut out = Vec::with_capacity(rows.len() * width);
    for chunk in rows.chunks(256) {
        let (x, shape) = decoder.decode(chunk);
        let y = network.predict(&backend.tensor(x, &shape)?)?;
        out.extend(backend.to_vec(&y)?);
    }
    Ok(out)
}

/// Turns network outputs into predictions in the trait's units: the
/// regression value, the probability of a binary trait, or the class.
pub fn outputs_to_predictions(
    loss: Loss,
    out: &[f32],
    width: usize,
    scale: TargetScale,
) -> Vec<f64> {
    match loss {
        Loss::Mse | Loss::Huber => out
            .iter()
            .map(|&o| o as f64 * scale.sd + scale.mean)
            .collect(),
        Loss::BinaryCrossEntropy => out
            .iter()
            .map(|&o| 1.0 / (1.0 + (-(o as f64)).exp()))
            .collect(),
        Loss::SoftmaxCrossEntropy => out
            .chunks(width)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                        if v > bv {
                            (i, v)
                        } else {
                            (bi, bv)
                        }
                    })
                    .0 as f64
            })
            .collect(),
    }
}

impl<B: Backend> Fitted<B> {
    /// Predictions for individuals `rows` of a store laid out as the model's
    /// markers through `map`.
    pub fn predict_mapped(
        &self,
        g: &PackedGenotypes,
        rows: &[usize],
        map: &InputMap,
    ) -> Result<Vec<f64>> {
        let width: usize = self.network.output_shape.iter().product();
        let mut decoder = BatchDecoder::new(g, self.spec.input, &self.standardizer, map);
        let out = self
            .network
            .backend
            .install(|| raw_outputs(&self.network, &mut decoder, rows, width))?;
        Ok(outputs_to_predictions(
            self.spec.training.loss,
            &out,
            width,
            self.target,
        ))
    }

    /// Predictions for individuals `rows` of the store the model was trained on.
    pub fn predict(&self, g: &PackedGenotypes, rows: &[usize]) -> Result<Vec<f64>> {
        let map = InputMap::identity(g.n_markers());
        self.predict_mapped(g, rows, &map)
    }
}
