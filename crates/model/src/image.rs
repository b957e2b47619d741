//! Training image classifiers (LeNet-5 on MNIST, VGG-style nets on
//! CIFAR-10) on the same engine as the genomic models: mini-batches of
//! pixels scaled to [0, 1], augmented on the fly when asked, softmax
//! cross-entropy, and the optimizers and schedules of the spec.

use nn::{Backend, Loss, Network, Profile};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vision::augment::Augmenter;
use vision::ImageSet;

use crate::error::{DataError, ModelError, Result};
use crate::spec::ModelSpec;
use crate::trainer::{self, EpochCore, Task, TrainOptions};
use crate::transfer::Provenance;

/// What an image model expects: the shape of one image, the number of
/// classes, and the data set it was trained on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    pub dataset: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
    /// The original label of each output class, when the model was
    /// trained on some classes only (`--classes 5-9`: 5, 6, 7, 8, 9);
    /// empty when output k is label k.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<u32>,
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageEpoch {
    pub epoch: usize,
    /// The training phase (1-based; 2 while fine-tuning).
    pub phase: usize,
    pub lr: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    /// On the validation split drawn from the training images (NaN without one).
    pub val_loss: f64,
    pub val_accuracy: f64,
    /// On the test set when one is given (NaN otherwise); reported only,
    /// never used to choose weights.
    pub test_accuracy: f64,
    /// Training time of the epoch (evaluation excluded).
    pub seconds: f64,
}

/// Progress reported during image training.
pub type ImageEvent<'a> = crate::train::Event<'a, ImageEpoch>;

/// Options of [`fit_images`] beyond the spec.
#[derive(Default)]
pub struct ImageOptions<'a> {
    pub augment: Option<&'a Augmenter>,
    /// Evaluated after each epoch for the history.
    pub test: Option<&'a ImageSet>,
    /// The data set's name, kept with the model.
    pub dataset: String,
    /// Time each layer.
    pub profile: bool,
    /// The original labels of the classes kept (`--classes`), recorded
    /// with the model.
    pub labels: Vec<u32>,
    /// The run's phases (see [`TrainOptions::phases`]).
    pub phases: Vec<crate::transfer::Phase>,
}

/// A trained image classifier.
pub struct ImageModel<B: Backend> {
    pub spec: ModelSpec,
    pub network: Network<B>,
    pub meta: ImageMeta,
    pub history: Vec<ImageEpoch>,
    pub best_epoch: usize,
    pub n_train: usize,
    pub n_val: usize,
    pub seed: u64,
    /// Per-layer times of the training run, when asked for.
    pub profile: Option<Profile>,
    /// The source model and the phases, for a transferred or fine-tuned model.
    pub provenance: Provenance,
}

/// Accuracy, loss and confusion matrix on a labelled set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
    /// confusion[true][predicted] counts.
    pub confusion: Vec<Vec<u64>>,
    pub n: usize,
}

/// Pixels of images `rows`, scaled to [0, 1], as one batch.
pub fn gather(set: &ImageSet, rows: &[usize]) -> Vec<f32> {
    let size = set.channels * set.height * set.width;
    let mut out = Vec::with_capacity(rows.len() * size);
    for &r in rows {
        out.extend(
            set.images[r * size..(r + 1) * size]
                .iter()
                .map(|&p| p as f32 * (1.0 / 255.0)),
        );
    }
    out
}

fn check_shape(set: &ImageSet, meta: &ImageMeta, what: &str) -> Result<()> {
    if (set.channels, set.height, set.width) != (meta.channels, meta.height, meta.width) {
        return Err(DataError::ImageShape {
            what: what.to_string(),
            found: [set.channels, set.height, set.width],
            expected: [meta.channels, meta.height, meta.width],
        }
        .into());
    }
    Ok(())
}

fn check_set(set: &ImageSet, meta: &ImageMeta, what: &str) -> Result<()> {
    check_shape(set, meta, what)?;
    if let Some(k) = set.labels.iter().position(|&l| l as usize >= meta.classes) {
        return Err(DataError::Target {
            loss: "softmax_cross_entropy",
            expected: format!("a class below {}", meta.classes),
            individual: format!("{what} image {k}"),
            value: f64::from(set.labels[k]),
        }
        .into());
    }
    Ok(())
}

/// The index of the largest value (the first of ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

fn evaluate_rows<B: Backend>(
    network: &Network<B>,
    set: &ImageSet,
    rows: &[usize],
    classes: usize,
) -> Result<Evaluation> {
    let backend = network.backend.clone();
    let shape = [set.channels, set.height, set.width];
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut total = 0.0;
    for chunk in rows.chunks(256) {
        let x = backend.tensor(
            gather(set, chunk),
            &[chunk.len(), shape[0], shape[1], shape[2]],
        )?;
        let out = backend.to_vec(&network.predict(&x)?)?;
        let targets: Vec<f32> = chunk.iter().map(|&r| set.labels[r] as f32).collect();
        let (l, _) = Loss::SoftmaxCrossEntropy.eval(&out, classes, &targets)?;
        total += l * chunk.len() as f64;
        for (row, &r) in out.chunks(classes).zip(chunk) {
            confusion[set.labels[r] as usize][argmax(row)] += 1;
        }
    }
    let correct: u64 = (0..classes).map(|c| confusion[c][c]).sum();
    let n = rows.len();
    Ok(Evaluation {
        accuracy: correct as f64 / n.max(1) as f64,
        loss: total / n.max(1) as f64,
        confusion,
        n,
    })
}

/// The image task of the training loop: batches of (augmented) pixels,
/// the training accuracy, and the validation and test sets after each epoch.
struct ImageTask<'a> {
    train: &'a ImageSet,
    opts: &'a ImageOptions<'a>,
    val: Vec<usize>,
    test_rows: Vec<usize>,
    classes: usize,
    n_fit: usize,
    correct: usize,
}

impl<B: Backend> Task<B> for ImageTask<'_> {
    type Report = ImageEpoch;

    fn batch(
        &mut self,
        backend: &B,
        rows: &[usize],
        epoch: usize,
    ) -> Result<(B::Tensor, Vec<f32>)> {
        let set = self.train;
        let (c, h, w) = (set.channels, set.height, set.width);
        let mut x = gather(set, rows);
        if let Some(a) = self.opts.augment {
            a.apply_batch(&mut x, rows, epoch, c, h, w, a.spec.cval / 255.0);
        }
        let x = backend.tensor(x, &[rows.len(), c, h, w])?;
        let targets = rows.iter().map(|&r| set.labels[r] as f32).collect();
        Ok((x, targets))
    }

    fn observe(&mut self, outputs: &[f32], targets: &[f32]) {
        self.correct += outputs
            .chunks(self.classes)
            .zip(targets)
            .filter(|(o, &t)| argmax(o) == t as usize)
            .count();
    }

    fn end_epoch(
        &mut self,
        network: &Network<B>,
        core: &EpochCore,
    ) -> Result<(Option<f64>, ImageEpoch)> {
        let (val_loss, val_accuracy) = if self.val.is_empty() {
            (None, f64::NAN)
        } else {
            let e = evaluate_rows(network, self.train, &self.val, self.classes)?;
            (Some(e.loss), e.accuracy)
        };
        let test_accuracy = match self.opts.test {
            Some(s) => evaluate_rows(network, s, &self.test_rows, self.classes)?.accuracy,
            None => f64::NAN,
        };
        let report = ImageEpoch {
            epoch: core.epoch,
            phase: core.phase,
            lr: core.lr,
            train_loss: core.train_loss,
            train_accuracy: std::mem::take(&mut self.correct) as f64 / self.n_fit as f64,
            val_loss: val_loss.unwrap_or(f64::NAN),
            val_accuracy,
            test_accuracy,
            seconds: core.train_seconds,
        };
        Ok((val_loss, report))
    }
}

/// Trains `spec` on `train` (softmax cross-entropy over the classes).
pub fn fit_images<B: Backend>(
    backend: B,
    spec: &ModelSpec,
    train: &ImageSet,
    opts: &ImageOptions,
    seed: u64,
    on: &mut (dyn FnMut(ImageEvent) + Send),
) -> Result<ImageModel<B>> {
    spec.training.validate()?;
    let input_shape = [train.channels, train.height, train.width];
    let network = Network::build(backend, &spec.layers, &input_shape, spec.init, seed)?;
    fit_images_with(network, spec, train, opts, seed, on)
}

/// Trains `network` (built for `spec`, or loaded) on `train`.
pub fn fit_images_with<B: Backend>(
    mut network: Network<B>,
    spec: &ModelSpec,
    train: &ImageSet,
    opts: &ImageOptions,
    seed: u64,
    on: &mut (dyn FnMut(ImageEvent) + Send),
) -> Result<ImageModel<B>> {
    let t = &spec.training;
    t.validate()?;
    if t.loss != Loss::SoftmaxCrossEntropy {
        return Err(ModelError::spec(
            spec.origin(),
            format!(
                "image classification needs training.loss = \"softmax_cross_entropy\", not {:?}",
                t.loss
            ),
        ));
    }
    if train.len() < 2 {
        return Err(DataError::TooFew {
            what: "training images",
            found: train.len(),
            needed: 2,
        }
        .into());
    }
    let input_shape = [train.channels, train.height, train.width];
    if network.input_shape != input_shape {
        return Err(ModelError::spec(
            spec.origin(),
            format!(
                "the network takes images of {:?}, but the training images are {input_shape:?}",
                network.input_shape
            ),
        ));
    }
    let classes: usize = network.output_shape.iter().product();
    if network.output_shape.len() != 1 || classes < 2 {
        return Err(ModelError::spec(spec.origin(), format!(
            "the last layer gives {:?} values per image; a classifier ends with a dense layer of one unit per class",
            network.output_shape
        )));
    }
    let meta = ImageMeta {
        dataset: opts.dataset.clone(),
        channels: train.channels,
        height: train.height,
        width: train.width,
        classes,
        labels: opts.labels.clone(),
    };
    check_set(train, &meta, "training")?;
    if let Some(test) = opts.test {
        check_set(test, &meta, "test")?;
    }

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rng);
    let n_val = if t.val_fraction > 0.0 {
        ((t.val_fraction * order.len() as f64).round() as usize).clamp(1, order.len() - 1)
    } else {
        0
    };
    let val: Vec<usize> = order[..n_val].to_vec();
    let mut fit_rows: Vec<usize> = order[n_val..].to_vec();
    fit_rows.sort_unstable();
    let mut task = ImageTask {
        train,
        opts,
        val,
        test_rows: opts
            .test
            .map(|s| (0..s.len()).collect())
            .unwrap_or_default(),
        classes,
        n_fit: fit_rows.len(),
        correct: 0,
    };
    let backend = network.backend.clone();
    let run_opts = TrainOptions {
        profile: opts.profile,
        phases: opts.phases.clone(),
        ..TrainOptions::default()
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
            Loss::SoftmaxCrossEntropy,
            classes,
            &run_opts,
            on,
        )
    })?;
    Ok(ImageModel {
        spec: spec.clone(),
        network,
        meta,
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

impl<B: Backend> ImageModel<B> {
    /// Accuracy, loss and confusion matrix on a labelled set.
    pub fn evaluate(&self, set: &ImageSet) -> Result<Evaluation> {
        check_set(set, &self.meta, "evaluation")?;
        let rows: Vec<usize> = (0..set.len()).collect();
        self.network
            .backend
            .install(|| evaluate_rows(&self.network, set, &rows, self.meta.classes))
    }

    /// Predicted classes of every image in `set`.
    pub fn predict(&self, set: &ImageSet) -> Result<Vec<usize>> {
        check_shape(set, &self.meta, "input")?;
        let backend = self.network.backend.clone();
        let mut pred = Vec::with_capacity(set.len());
        let rows: Vec<usize> = (0..set.len()).collect();
        for chunk in rows.chunks(256) {
            let x = backend.tensor(
                gather(set, chunk),
                &[chunk.len(), set.channels, set.height, set.width],
            )?;
            let out = backend.to_vec(&self.network.predict(&x)?)?;
            pred.extend(out.chunks(self.meta.classes).map(argmax));
        }
        Ok(pred)
    }
}
