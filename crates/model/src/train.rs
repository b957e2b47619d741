//! Training a network on genotypes: mini-batches decoded from the packed
//! store, standardization learned from the training individuals only, a
//! validation split drawn from them for early stopping, and predictions in
//! the trait's units.

use std::time::Instant;

use geno::{Marker, PackedGenotypes, Standardizer};
use nn::{Backend, Loss, Mode, Network, ScheduleState};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::spec::{InputEncoding, ModelSpec};

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
}

fn to_targets(loss: Loss, y: &[f64], rows: &[usize], scale: TargetScale) -> Vec<f32> {
    rows.iter()
        .map(|&i| match loss {
            Loss::Mse | Loss::Huber => ((y[i] - scale.mean) / scale.sd) as f32,
            _ => y[i] as f32,
        })
        .collect()
}

/// One optimizer step on a batch: forward, loss, backward, penalties and
/// update. Returns the loss (penalties included) and the outputs.
pub(crate) fn train_step<B: Backend>(
    network: &mut Network<B>,
    x: &B::Tensor,
    loss: Loss,
    width: usize,
    targets: &[f32],
    update: &nn::Update,
    epoch: usize,
) -> Result<(f64, Vec<f32>)> {
    let backend = network.backend.clone();
    network.zero_grad();
    let out = network.forward(x, Mode::Train)?;
    let out_v = backend.to_vec(&out)?;
    let (l, dy) = loss.eval(&out_v, width, targets);
    let dy = backend.tensor(dy, &backend.shape(&out))?;
    network.backward(&dy, false)?;
    let pen = network.apply_penalties()?;
    network.step(update)?;
    let l = l + pen as f64;
    if !l.is_finite() {
        let lr = match update {
            nn::Update::Sgd { lr, .. } | nn::Update::Adam { lr, .. } => *lr,
        };
        return Err(ModelError::Training(format!(
            "training diverged in epoch {} (the loss is {l}); try a lower learning rate than {lr}",
            epoch + 1
        )));
    }
    Ok((l, out_v))
}

/// Early stopping on a validation loss, keeping the best epoch's weights.
pub(crate) struct EarlyStopping {
    best: Option<(f64, usize, Vec<Vec<f32>>)>,
    since_best: usize,
    patience: usize,
}

impl EarlyStopping {
    pub(crate) fn new(patience: usize) -> Self {
        EarlyStopping {
            best: None,
            since_best: 0,
            patience: patience.max(1),
        }
    }

    /// Records an epoch's validation loss; true when training should stop.
    pub(crate) fn stop_after<B: Backend>(
        &mut self,
        network: &mut Network<B>,
        val_loss: f64,
        epoch: usize,
    ) -> Result<bool> {
        if self.best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            let backend = network.backend.clone();
            let weights = network
                .params()
                .iter()
                .map(|p| backend.to_vec(&p.value))
                .collect::<nn::Result<Vec<_>>>()?;
            self.best = Some((val_loss, epoch, weights));
            self.since_best = 0;
            Ok(false)
        } else {
            self.since_best += 1;
            Ok(self.since_best >= self.patience)
        }
    }

    /// Puts the best epoch's weights back; returns that epoch (or `last`
    /// when no validation loss was recorded).
    pub(crate) fn restore<B: Backend>(
        self,
        network: &mut Network<B>,
        last: usize,
    ) -> Result<usize> {
        let Some((_, epoch, weights)) = self.best else {
            return Ok(last);
        };
        let backend = network.backend.clone();
        for (p, w) in network.params().into_iter().zip(weights) {
            let shape = backend.shape(&p.value);
            p.value = backend.tensor(w, &shape)?;
        }
        Ok(epoch)
    }
}

/// Trains `spec` on the individuals `train` (those with a value in `y`).
pub fn fit<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    g: &PackedGenotypes,
    y: &[f64],
    train: &[usize],
    seed: u64,
    on: &mut dyn FnMut(Event),
) -> Result<Fitted<B>> {
    let t = &spec.training;
    t.validate()?;
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

    let input_shape = [spec.input.channels(), g.n_markers()];
    let mut network = Network::build(backend.clone(), &spec.layers, &input_shape, spec.init, seed)?;
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
    let mut decoder = BatchDecoder::new(g, spec.input, &standardizer, &map);
    let bs = t.batch_size;
    let batches = fit_rows.len().div_ceil(bs);
    on(Event::Start {
        epochs: t.epochs,
        batches_per_epoch: batches,
        n_train: fit_rows.len(),
        n_val,
    });

    let mut sched = ScheduleState::new(t.schedule, t.lr, t.epochs);
    let mut history = Vec::new();
    let mut stopper = EarlyStopping::new(t.patience);
    let mut step = 0u32;
    for epoch in 0..t.epochs {
        let start = Instant::now();
        let lr = sched.lr(epoch);
        fit_rows.shuffle(&mut rng);
        let mut total = 0.0;
        for (k, rows) in fit_rows.chunks(bs).enumerate() {
            let (x, shape) = decoder.decode(rows);
            let x = backend.tensor(x, &shape)?;
            let targets = to_targets(loss, y, rows, scale);
            step += 1;
            let update = t.optimizer.update(lr, step);
            let (l, _) = train_step(&mut network, &x, loss, width, &targets, &update, epoch)?;
            total += l * rows.len() as f64;
            on(Event::Batch {
                epoch,
                batch: k,
                loss: l,
            });
        }
        let train_loss = total / fit_rows.len() as f64;
        let (val_loss, val_r) = if val.is_empty() {
            (f64::NAN, f64::NAN)
        } else {
            let out = raw_outputs(&mut network, &backend, &mut decoder, &val, width)?;
            let targets = to_targets(loss, y, &val, scale);
            let (l, _) = loss.eval(&out, width, &targets);
            let pred = outputs_to_predictions(loss, &out, width, scale);
            let obs: Vec<f64> = val.iter().map(|&i| y[i]).collect();
            (l, eval::metrics::pearson(&pred, &obs))
        };
        sched.observe(if val.is_empty() { train_loss } else { val_loss });
        let report = EpochReport {
            epoch,
            lr,
            train_loss,
            val_loss,
            val_r,
            seconds: start.elapsed().as_secs_f64(),
        };
        on(Event::Epoch(&report));
        history.push(report);
        if !val.is_empty() && stopper.stop_after(&mut network, val_loss, epoch)? {
            break;
        }
    }
    let best_epoch = stopper.restore(&mut network, history.len() - 1)?;
    Ok(Fitted {
        spec: spec.clone(),
        network,
        standardizer,
        markers: g.markers().to_vec(),
        target: scale,
        history,
        best_epoch,
        n_train: fit_rows.len(),
        n_val,
        seed,
    })
}

/// Network outputs for `rows`, in evaluation mode, in batches.
fn raw_outputs<B: Backend>(
    network: &mut Network<B>,
    backend: &B,
    decoder: &mut BatchDecoder,
    rows: &[usize],
    width: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for chunk in rows.chunks(256) {
        let (x, shape) = decoder.decode(chunk);
        let y = network.forward(&backend.tensor(x, &shape)?, Mode::Eval)?;
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
        &mut self,
        g: &PackedGenotypes,
        rows: &[usize],
        map: &InputMap,
    ) -> Result<Vec<f64>> {
        let width: usize = self.network.output_shape.iter().product();
        let backend = self.network.backend.clone();
        let mut decoder = BatchDecoder::new(g, self.spec.input, &self.standardizer, map);
        let out = raw_outputs(&mut self.network, &backend, &mut decoder, rows, width)?;
        Ok(outputs_to_predictions(
            self.spec.training.loss,
            &out,
            width,
            self.target,
        ))
    }

    /// Predictions for individuals `rows` of the store the model was trained on.
    pub fn predict(&mut self, g: &PackedGenotypes, rows: &[usize]) -> Result<Vec<f64>> {
        let map = InputMap::identity(g.n_markers());
        self.predict_mapped(g, rows, &map)
    }
}
