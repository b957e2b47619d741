//! Training a network on genotypes: mini-batches decoded from the packed
//! store, standardization learned from the training individuals only, a
//! validation split drawn from them for early stopping, and predictions in
//! the trait's units.

use geno::{Marker, PackedGenotypes, Standardizer};
use nn::{Backend, Loss, Network, Profile};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{DataError, ModelError, Result};
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

/// Decodes mini-batches of network input from a genotype store: the
/// encoding's channels, then one constant channel per predictor trait (its
/// standardized record, 0 where missing).
pub struct BatchDecoder<'a> {
    g: &'a PackedGenotypes,
    cols: Option<Vec<usize>>,
    luts: Vec<Vec<[f32; 4]>>,
    m: usize,
    buf: Vec<f32>,
    /// Predictor channels × individuals of `g`.
    extra: Vec<Vec<f32>>,
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
            extra: Vec::new(),
        }
    }

    /// Adds the predictor traits' channels: each trait's values over the
    /// individuals of the store (NaN where missing), standardized by its scale.
    pub fn with_predictors(mut self, values: &[&[f64]], scales: &[TargetScale]) -> Self {
        self.extra = values
            .iter()
            .zip(scales)
            .map(|(v, s)| {
                v.iter()
                    .map(|&x| {
                        if x.is_nan() {
                            0.0
                        } else {
                            ((x - s.mean) / s.sd) as f32
                        }
                    })
                    .collect()
            })
            .collect();
        self
    }

    /// The input of individuals `rows`: batch × channels × markers.
    pub fn decode(&mut self, rows: &[usize]) -> (Vec<f32>, [usize; 3]) {
        let (b, m) = (rows.len(), self.m);
        let c = self.luts.len() + self.extra.len();
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
        let c0 = self.luts.len();
        for (k, e) in self.extra.iter().enumerate() {
            for (r, &i) in rows.iter().enumerate() {
                out[(r * c + c0 + k) * m..(r * c + c0 + k + 1) * m].fill(e[i]);
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

impl TargetScale {
    /// The mean and sd of `y` over `rows` with a record (sd 1 where it is 0
    /// or undefined).
    pub fn of(y: &[f64], rows: &[usize]) -> Self {
        let v: Vec<f64> = rows.iter().map(|&i| y[i]).filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return TargetScale { mean: 0.0, sd: 1.0 };
        }
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let sd = if v.len() > 1 {
            (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
        } else {
            0.0
        };
        TargetScale {
            mean,
            sd: if sd > 0.0 { sd } else { 1.0 },
        }
    }
}

/// A trait a network predicts or sees, with its name and scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct ScaledTrait {
    pub name: String,
    pub scale: TargetScale,
}

/// A trait's records over the individuals of the genotype store (NaN where
/// missing).
#[derive(Clone, Copy, Debug)]
pub struct TraitColumn<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
}

/// What a network learns from: the traits it predicts, one output each
/// (records may be missing: the loss skips them), and the predictor traits
/// it sees as inputs (CV2: records of other traits on the individuals
/// predicted), one constant input channel each.
#[derive(Clone, Debug)]
pub struct TraitData<'a> {
    pub targets: Vec<TraitColumn<'a>>,
    pub predictors: Vec<TraitColumn<'a>>,
}

impl<'a> TraitData<'a> {
    /// One trait, no predictors.
    pub fn single(name: &'a str, values: &'a [f64]) -> Self {
        TraitData {
            targets: vec![TraitColumn { name, values }],
            predictors: Vec::new(),
        }
    }
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
    /// The run's state after an epoch, when [`crate::TrainOptions::checkpoints`] asks.
    Checkpoint(&'a crate::checkpoint::Checkpoint),
}

/// A trained network with everything needed to predict.
pub struct Fitted<B: Backend> {
    pub spec: ModelSpec,
    pub network: Network<B>,
    pub standardizer: Standardizer,
    pub markers: Vec<Marker>,
    /// The traits predicted, one output each, in order.
    pub traits: Vec<ScaledTrait>,
    /// The predictor traits, one input channel each after the genotypes'.
    pub predictors: Vec<ScaledTrait>,
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

/// The targets of `rows`, batch × traits (NaN where missing; standardized
/// for regression losses).
fn to_targets(loss: Loss, ys: &[&[f64]], rows: &[usize], scales: &[TargetScale]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&i| {
            ys.iter().zip(scales).map(move |(y, s)| match loss {
                Loss::Mse | Loss::Huber => ((y[i] - s.mean) / s.sd) as f32,
                _ => y[i] as f32,
            })
        })
        .collect()
}

/// Trains `spec` on the individuals `train` with a record of some target
/// trait.
pub fn fit<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    g: &PackedGenotypes,
    data: &TraitData,
    train: &[usize],
    seed: u64,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Fitted<B>> {
    spec.training.validate()?;
    let network = build_network(backend, spec, g.n_markers(), data.predictors.len(), seed)?;
    fit_with(
        network,
        spec,
        g,
        data,
        train,
        seed,
        &TrainOptions::default(),
        on,
    )
}

/// The spec's network for genotypes of `n_markers` markers and
/// `predictors` predictor-trait channels, initialized from `seed`.
pub fn build_network<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    n_markers: usize,
    predictors: usize,
    seed: u64,
) -> Result<Network<B>> {
    let input_shape = [spec.input.channels() + predictors, n_markers];
    Network::build(backend, &spec.layers, &input_shape, spec.init, seed).map_err(|e| match e {
        // A layer that cannot take its input: name the config it came from.
        nn::NnError::Layer { at, kind, message } => {
            ModelError::spec_layer(spec.origin(), at, kind, message)
        }
        other => other.into(),
    })
}

/// The genomic task of the training loop: batches decoded from the packed
/// store, and the validation split's loss and r after each epoch.
struct GenomicTask<'a, 'g> {
    decoder: BatchDecoder<'g>,
    ys: Vec<&'a [f64]>,
    val: &'a [usize],
    loss: Loss,
    width: usize,
    scales: Vec<TargetScale>,
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
        Ok((x, to_targets(self.loss, &self.ys, rows, &self.scales)))
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
            let targets = to_targets(self.loss, &self.ys, self.val, &self.scales);
            let (l, _) = self.loss.eval(&out, self.width, &targets)?;
            let pred = outputs_to_predictions(self.loss, &out, self.width, &self.scales);
            // Each trait's r over the validation individuals with its
            // record, averaged over the traits.
            let d = self.ys.len();
            let rs: Vec<f64> = (0..d)
                .map(|t| {
                    let (p, o): (Vec<f64>, Vec<f64>) = self
                        .val
                        .iter()
                        .enumerate()
                        .filter(|(_, &i)| !self.ys[t][i].is_nan())
                        .map(|(k, &i)| (pred[k * d + t], self.ys[t][i]))
                        .unzip();
                    eval::metrics::pearson(&p, &o)
                })
                .collect();
            (Some(l), rs.iter().sum::<f64>() / d as f64)
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
/// `train` with a record of some target trait of `data`: linfa's
/// `FitWith`, for training that starts from given weights.
#[allow(clippy::too_many_arguments)]
pub fn fit_with<B: Backend>(
    mut network: Network<B>,
    spec: &ModelSpec,
    g: &PackedGenotypes,
    data: &TraitData,
    train: &[usize],
    seed: u64,
    opts: &TrainOptions,
    on: &mut (dyn FnMut(Event) + Send),
) -> Result<Fitted<B>> {
    let t = &spec.training;
    t.validate()?;
    let d = data.targets.len();
    if d == 0 {
        return Err(DataError::NoTrait.into());
    }
    let n = g.n_individuals();
    if let Some(c) = data
        .targets
        .iter()
        .chain(&data.predictors)
        .find(|c| c.values.len() != n)
    {
        return Err(DataError::TraitLength {
            trait_name: c.name.to_string(),
            found: c.values.len(),
            expected: n,
        }
        .into());
    }
    let ys: Vec<&[f64]> = data.targets.iter().map(|c| c.values).collect();
    let input_shape = [spec.input.channels() + data.predictors.len(), g.n_markers()];
    if network.input_shape != input_shape {
        return Err(ModelError::spec(spec.origin(), format!(
            "the network takes inputs of {:?}, but the genotypes give {input_shape:?} ({} markers{})",
            network.input_shape,
            g.n_markers(),
            if data.predictors.is_empty() {
                String::new()
            } else {
                format!(", {} predictor traits", data.predictors.len())
            }
        )));
    }
    let train: Vec<usize> = train
        .iter()
        .copied()
        .filter(|&i| ys.iter().any(|y| !y[i].is_nan()))
        .collect();
    if train.len() < 2 {
        return Err(DataError::TooFew {
            what: "training individuals have a phenotype",
            found: train.len(),
            needed: 2,
        }
        .into());
    }
    let loss = t.loss;
    if d > 1 && !matches!(loss, Loss::Mse | Loss::Huber) {
        return Err(ModelError::spec_key(
            spec.origin(),
            "training.loss",
            format!("several traits need a regression loss (mse or huber), not {loss:?}"),
        ));
    }
    let y0 = ys[0];
    match loss {
        Loss::BinaryCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y0[i] != 0.0 && y0[i] != 1.0) {
                return Err(DataError::Target {
                    loss: "binary_cross_entropy",
                    expected: "a 0/1 trait".into(),
                    individual: format!("individual {}", g.individuals()[i].iid),
                    value: y0[i],
                }
                .into());
            }
        }
        Loss::SoftmaxCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y0[i] < 0.0 || y0[i].fract() != 0.0) {
                return Err(DataError::Target {
                    loss: "softmax_cross_entropy",
                    expected: "class numbers 0, 1, …".into(),
                    individual: format!("individual {}", g.individuals()[i].iid),
                    value: y0[i],
                }
                .into());
            }
        }
        _ => {}
    }
    for c in &data.targets {
        let v: Vec<f64> = train
            .iter()
            .map(|&i| c.values[i])
            .filter(|x| !x.is_nan())
            .collect();
        let Some(&first) = v.first() else {
            return Err(DataError::NoRecords {
                trait_name: c.name.to_string(),
            }
            .into());
        };
        if matches!(loss, Loss::Mse | Loss::Huber) && v.len() > 1 && v.iter().all(|&x| x == first) {
            return Err(ModelError::ConstantTrait {
                trait_name: c.name.to_string(),
                value: first,
                n: v.len(),
            });
        }
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
    let scales: Vec<TargetScale> = ys
        .iter()
        .map(|y| match loss {
            Loss::Mse | Loss::Huber => TargetScale::of(y, &train),
            _ => TargetScale { mean: 0.0, sd: 1.0 },
        })
        .collect();
    let predictors: Vec<ScaledTrait> = data
        .predictors
        .iter()
        .map(|c| ScaledTrait {
            name: c.name.to_string(),
            scale: TargetScale::of(c.values, &train),
        })
        .collect();

    let width: usize = network.output_shape.iter().product();
    match loss {
        Loss::SoftmaxCrossEntropy => {
            if let Some(&i) = train.iter().find(|&&i| y0[i] as usize >= width) {
                return Err(DataError::Target {
                    loss: "softmax_cross_entropy",
                    expected: format!("a class below {width}, the last layer's outputs"),
                    individual: format!("individual {}", g.individuals()[i].iid),
                    value: y0[i],
                }
                .into());
            }
        }
        _ if width != d || network.output_shape.len() != 1 => {
            return Err(ModelError::spec(spec.origin(), format!(
                "the last layer gives {:?} values per individual; a {:?} model of {d} trait{} needs {d} (end with a dense layer of {d} unit{})",
                network.output_shape,
                loss,
                if d == 1 { "" } else { "s" },
                if d == 1 { "" } else { "s" },
            )))
        }
        _ => {}
    }
    let map = InputMap::identity(g.n_markers());
    let backend = network.backend.clone();
    let pred_values: Vec<&[f64]> = data.predictors.iter().map(|c| c.values).collect();
    let pred_scales: Vec<TargetScale> = predictors.iter().map(|p| p.scale).collect();
    let decoder = BatchDecoder::new(g, spec.input, &standardizer, &map)
        .with_predictors(&pred_values, &pred_scales);
    let mut task = GenomicTask {
        decoder,
        ys: ys.clone(),
        val: &val,
        loss,
        width,
        scales: scales.clone(),
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
        traits: data
            .targets
            .iter()
            .zip(scales)
            .map(|(c, scale)| ScaledTrait {
                name: c.name.to_string(),
                scale,
            })
            .collect(),
        predictors,
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
/// Individuals per forward pass when predicting. Each layer's output for
/// the whole batch is written before the next layer reads it: at 64 a
/// genomic CNN's intermediates stay in cache, at 256 they went out to
/// memory and back. On the 2-core Xeon, `genocnn predict` of the peer
/// genomic CNN (2,000 individuals × 10,000 markers, amxbf16) took 0.30–0.34
/// s end to end at 32 and 64 against 0.40–0.43 at 256 and 128 (0.36 at 16,
/// 0.33–0.36 at 48 and 96), with the same predictions to the bit: on the native backend every
/// individual's output is computed alone (the dense layers' sums add each
/// row's terms in the same order in any batch).
const PREDICT_BATCH: usize = 64;

fn raw_outputs<B: Backend>(
    network: &Network<B>,
    decoder: &mut BatchDecoder,
    rows: &[usize],
    width: usize,
) -> Result<Vec<f32>> {
    let backend = &network.backend;
    let mut out = Vec::with_capacity(rows.len() * width);
    for chunk in rows.chunks(PREDICT_BATCH) {
        let (x, shape) = decoder.decode(chunk);
        let y = network.predict(&backend.tensor(x, &shape)?)?;
        out.extend(backend.to_vec(&y)?);
    }
    Ok(out)
}

/// Turns network outputs into predictions in the traits' units: the
/// regression values (batch × traits, each with its own scale), the
/// probability of a binary trait, or the class.
pub fn outputs_to_predictions(
    loss: Loss,
    out: &[f32],
    width: usize,
    scales: &[TargetScale],
) -> Vec<f64> {
    match loss {
        Loss::Mse | Loss::Huber => out
            .iter()
            .enumerate()
            .map(|(k, &o)| {
                let s = scales[k % scales.len()];
                o as f64 * s.sd + s.mean
            })
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
    /// The scales of the traits predicted.
    pub fn scales(&self) -> Vec<TargetScale> {
        self.traits.iter().map(|t| t.scale).collect()
    }

    /// Predictions for individuals `rows` of a store laid out as the model's
    /// markers through `map`, traits × rows; `predictors` gives the
    /// predictor traits' records over the individuals of `g` (NaN where
    /// missing, read as the training mean), one per [`Fitted::predictors`].
    pub fn predict_traits(
        &self,
        g: &PackedGenotypes,
        rows: &[usize],
        map: &InputMap,
        predictors: &[&[f64]],
    ) -> Result<Vec<Vec<f64>>> {
        if predictors.len() != self.predictors.len() {
            return Err(DataError::Predictors {
                expected: self.predictors.iter().map(|p| p.name.clone()).collect(),
                found: predictors.len(),
            }
            .into());
        }
        let width: usize = self.network.output_shape.iter().product();
        let scales: Vec<TargetScale> = self.predictors.iter().map(|p| p.scale).collect();
        let mut decoder = BatchDecoder::new(g, self.spec.input, &self.standardizer, map)
            .with_predictors(predictors, &scales);
        let out = self
            .network
            .backend
            .install(|| raw_outputs(&self.network, &mut decoder, rows, width))?;
        let flat = outputs_to_predictions(self.spec.training.loss, &out, width, &self.scales());
        let d = match self.spec.training.loss {
            Loss::Mse | Loss::Huber => width,
            _ => 1,
        };
        Ok((0..d)
            .map(|t| (0..rows.len()).map(|r| flat[r * d + t]).collect())
            .collect())
    }

    /// Predictions of the first trait for individuals `rows` of a store laid
    /// out as the model's markers through `map` (a model without predictor
    /// traits).
    pub fn predict_mapped(
        &self,
        g: &PackedGenotypes,
        rows: &[usize],
        map: &InputMap,
    ) -> Result<Vec<f64>> {
        Ok(self.predict_traits(g, rows, map, &[])?.swap_remove(0))
    }

    /// Predictions of the first trait for individuals `rows` of the store
    /// the model was trained on.
    pub fn predict(&self, g: &PackedGenotypes, rows: &[usize]) -> Result<Vec<f64>> {
        let map = InputMap::identity(g.n_markers());
        self.predict_mapped(g, rows, &map)
    }
}
