//! `genocnn image train|eval|augment-preview`: the 2D image path (LeNet-5
//! on MNIST, VGG-style nets on CIFAR-10) on the same engine as the genomic
//! models.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use model::{Evaluation, ImageOptions, ModelSpec, SavedModel};
use serde_json::json;
use vision::augment::{AugmentSpec, Augmenter};
use vision::ImageSet;

use super::output::{
    ensure_dir, median_after_first, num, spinner, table, write_json, EpochProgress,
};
use super::train::{engine_threads, override_training, with_engine, ComputeArgs};
use nn::Backend;

#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Train an image classifier and evaluate it on the test split.
    Train(ImageTrainArgs),
    /// Evaluate a saved image classifier on a test split.
    Eval(ImageEvalArgs),
    /// Write a PNG grid of augmented training images, to look at a spec.
    AugmentPreview(PreviewArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Dataset {
    /// MNIST IDX files: train-* and t10k-* images and labels, plain or .gz.
    Mnist,
    /// CIFAR-10 binary batches: data_batch_1..5.bin and test_batch.bin.
    Cifar10,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Mnist => "mnist",
            Dataset::Cifar10 => "cifar10",
        }
    }

    fn class_names(self) -> Vec<String> {
        match self {
            Dataset::Mnist => (0..10).map(|d| d.to_string()).collect(),
            Dataset::Cifar10 => [
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// Reads the training or the test split from `dir`.
    fn read(self, dir: &Path, train: bool) -> Result<ImageSet> {
        match self {
            Dataset::Mnist => Ok(vision::read_mnist(
                dir,
                if train { "train" } else { "t10k" },
            )?),
            Dataset::Cifar10 => {
                // Accept the folder of the batches or the one above it.
                let sub = dir.join("cifar-10-batches-bin");
                let dir = if sub.is_dir() { sub } else { dir.to_path_buf() };
                let names: Vec<String> = if train {
                    (1..=5).map(|k| format!("data_batch_{k}.bin")).collect()
                } else {
                    vec!["test_batch.bin".into()]
                };
                let paths: Vec<PathBuf> = names
                    .iter()
                    .map(|n| dir.join(n))
                    .filter(|p| p.exists())
                    .collect();
                if paths.is_empty() {
                    bail!(
                        "{}: no CIFAR-10 {} batch found (expected {})",
                        dir.display(),
                        if train { "training" } else { "test" },
                        names.join(", ")
                    );
                }
                Ok(vision::read_cifar(&paths)?)
            }
        }
    }
}

#[derive(Args, Debug)]
pub struct DataArgs {
    /// Which data set the folder holds.
    #[arg(long, value_enum)]
    pub dataset: Dataset,
    /// The folder with the data set's files, e.g. data/mnist.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImageTrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Model config (TOML), e.g. configs/lenet5.toml.
    #[arg(long, value_name = "CONFIG")]
    pub model: PathBuf,
    /// Override the config's number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the config's batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override the config's learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Augmentation spec (TOML, Keras ImageDataGenerator keys), applied per batch.
    #[arg(long, value_name = "SPEC.toml")]
    pub augment: Option<PathBuf>,
    /// Train on the first N training images only.
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Random seed: the same seed and thread count give bit-identical weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct ImageEvalArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A directory written by `genocnn image train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output directory for summary.json and the confusion matrix.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Augmentation spec (TOML).
    #[arg(long, value_name = "SPEC.toml")]
    pub augment: PathBuf,
    /// How many training images (one row each).
    #[arg(long, default_value_t = 8)]
    pub images: usize,
    /// Augmented versions per image, after the original.
    #[arg(long, default_value_t = 7)]
    pub variants: usize,
    /// Pixel size of the drawing.
    #[arg(long, default_value_t = 3)]
    pub scale: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output PNG.
    #[arg(long, value_name = "FILE.png")]
    pub out: PathBuf,
}

pub fn run(a: ImageArgs) -> Result<()> {
    match a.command {
        ImageCommand::Train(a) => run_train(a),
        ImageCommand::Eval(a) => run_eval(a),
        ImageCommand::AugmentPreview(a) => run_preview(a),
    }
}

fn read_augment(path: &Path) -> Result<AugmentSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    AugmentSpec::from_toml(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
}

/// Writes confusion.csv and confusion.png into `dir`.
fn write_confusion(dir: &Path, e: &Evaluation, model: &str, dataset: Dataset) -> Result<()> {
    let names = dataset.class_names();
    let title = format!(
        "{model} on {} test: error {:.2}%",
        dataset.name(),
        100.0 * (1.0 - e.accuracy)
    );
    let mut csv = String::from("true\\predicted");
    for n in &names {
        write!(csv, ",{n}")?;
    }
    csv.push('\n');
    for (t, row) in e.confusion.iter().enumerate() {
        csv.push_str(&names[t]);
        for c in row {
            write!(csv, ",{c}")?;
        }
        csv.push('\n');
    }
    geno::write_atomic(dir.join("confusion.csv"), csv.as_bytes())?;
    eval::plots::confusion_png(&dir.join("confusion.png"), &e.confusion, &names, &title)?;
    Ok(())
}

fn load_data(d: &DataArgs, train: bool) -> Result<ImageSet> {
    let what = if train { "training" } else { "test" };
    let pb = spinner(format!(
        "reading the {} {what} split from {}",
        d.dataset.name(),
        d.data_dir.display()
    ));
    let set = d.dataset.read(&d.data_dir, train)?;
    pb.finish_and_clear();
    Ok(set)
}

fn run_train(a: ImageTrainArgs) -> Result<()> {
    let engine = a.compute.apply()?;
    let threads = engine_threads(&engine);
    with_engine!(engine, b => train_with(a, b, threads))
}

fn train_with<B: Backend>(a: ImageTrainArgs, backend: B, threads: usize) -> Result<()> {
    let mut spec = ModelSpec::from_file(&a.model)?;
    override_training(&mut spec, a.epochs, a.batch_size, a.lr)?;
    let augment = match &a.augment {
        Some(p) => Some(Augmenter::new(read_augment(p)?, a.seed)),
        None => None,
    };
    ensure_dir(&a.out)?;
    let mut train = load_data(&a.data, true)?;
    if let Some(n) = a.train_limit {
        if n == 0 {
            bail!("--train-limit must be at least 1");
        }
        let n = n.min(train.len());
        let size = train.channels * train.height * train.width;
        train.images.truncate(n * size);
        train.labels.truncate(n);
    }
    let test = load_data(&a.data, false)?;
    eprintln!(
        "training {} on {} {} images ({}×{}×{}), testing on {}, {}{}",
        spec.name,
        train.len(),
        a.data.dataset.name(),
        train.channels,
        train.height,
        train.width,
        test.len(),
        backend.name(),
        if augment.is_some() { ", augmented" } else { "" }
    );
    let start = Instant::now();
    let opts = ImageOptions {
        augment: augment.as_ref(),
        test: Some(&test),
        dataset: a.data.dataset.name().into(),
        profile: false,
    };
    let mut progress = EpochProgress::new();
    let fitted = model::fit_images(backend, &spec, &train, &opts, a.seed, &mut |ev| {
        progress.on(ev, |r| {
            (
                format!(
                    "  epoch {:>3}  lr {:.2e}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.2}s",
                    r.epoch + 1,
                    r.lr,
                    r.train_loss,
                    r.train_accuracy,
                    r.test_accuracy,
                    r.seconds
                ),
                format!("test error {:.2}%", 100.0 * (1.0 - r.test_accuracy)),
            )
        })
    })?;
    let bar = progress.bar;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();

    let mut hist = String::from(
        "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,test_accuracy,seconds\n",
    );
    for r in &fitted.history {
        writeln!(
            hist,
            "{},{},{},{},{},{},{},{}",
            r.epoch + 1,
            r.lr,
            num(Some(r.train_loss)),
            num(Some(r.train_accuracy)),
            num(Some(r.val_loss)),
            num(Some(r.val_accuracy)),
            num(Some(r.test_accuracy)),
            num(Some(r.seconds))
        )?;
    }
    geno::write_atomic(a.out.join("history.csv"), hist.as_bytes())?;
    model::save_image(&fitted, &a.out)?;
    let e = fitted.evaluate(&test)?;
    write_confusion(&a.out, &e, &spec.name, a.data.dataset)?;
    let times: Vec<f64> = fitted.history.iter().map(|r| r.seconds).collect();
    let spe = times.iter().sum::<f64>() / times.len() as f64;
    let median_after_first = median_after_first(&times);
    let n_params = fitted.network.n_trainable();
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "model": spec.name,
            "config": a.model.display().to_string(),
            "dataset": a.data.dataset.name(),
            "n_train": fitted.n_train,
            "n_val": fitted.n_val,
            "n_test": e.n,
            "n_parameters": n_params,
            "epochs": fitted.history.len(),
            "best_epoch": fitted.best_epoch + 1,
            "batch_size": spec.training.batch_size,
            "augment": a.augment.as_ref().map(|p| p.display().to_string()),
            "test_accuracy": e.accuracy,
            "test_error": 1.0 - e.accuracy,
            "test_loss": e.loss,
            "seconds_per_epoch": spe,
            "seconds_per_epoch_median_after_first": median_after_first,
            "seconds_total": secs,
            "seed": a.seed,
            "threads": threads,
            "backend": fitted.network.backend.name(),
        }),
    )?;
    print!(
        "{}",
        table(&[
            (
                "model",
                format!("{} ({} trainable parameters)", spec.name, n_params)
            ),
            ("epochs", format!("{}", fitted.history.len())),
            (
                "test",
                format!(
                    "accuracy {:.4}, error {:.2}% ({} images)",
                    e.accuracy,
                    100.0 * (1.0 - e.accuracy),
                    e.n
                )
            ),
            (
                "time",
                format!(
                    "{spe:.2} s per epoch (median after the first {median_after_first:.2} s), {secs:.1} s in all"
                )
            ),
            ("wrote", format!("{}/{{model.toml, model.safetensors, history.csv, summary.json, confusion.csv, confusion.png}}", a.out.display())),
        ])
    );
    Ok(())
}

fn run_eval(a: ImageEvalArgs) -> Result<()> {
    let engine = a.compute.apply()?;
    with_engine!(engine, b => eval_with(a, b))
}

fn eval_with<B: Backend>(a: ImageEvalArgs, backend: B) -> Result<()> {
    let SavedModel::Image(m) = model::load(&a.model, backend)? else {
        bail!(
            "{} does not hold an image classifier (use `genocnn predict` for genotype models)",
            a.model.display()
        );
    };
    if !m.meta.dataset.is_empty() && m.meta.dataset != a.data.dataset.name() {
        eprintln!(
            "note: the model was trained on {}, evaluating on {}",
            m.meta.dataset,
            a.data.dataset.name()
        );
    }
    ensure_dir(&a.out)?;
    let test = load_data(&a.data, false)?;
    let start = Instant::now();
    let e = m.evaluate(&test)?;
    let secs = start.elapsed().as_secs_f64();
    write_confusion(&a.out, &e, &m.spec.name, a.data.dataset)?;
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "model": m.spec.name,
            "model_dir": a.model.display().to_string(),
            "dataset": a.data.dataset.name(),
            "n_test": e.n,
            "test_accuracy": e.accuracy,
            "test_error": 1.0 - e.accuracy,
            "test_loss": e.loss,
            "seconds": secs,
            "images_per_second": e.n as f64 / secs,
            "backend": m.network.backend.name(),
        }),
    )?;
    print!(
        "{}",
        table(&[
            ("model", format!("{} ({})", m.spec.name, a.model.display())),
            (
                "test",
                format!(
                    "accuracy {:.4}, error {:.2}% ({} images, {:.0} images/s)",
                    e.accuracy,
                    100.0 * (1.0 - e.accuracy),
                    e.n,
                    e.n as f64 / secs
                )
            ),
            (
                "wrote",
                format!(
                    "{}/{{summary.json, confusion.csv, confusion.png}}",
                    a.out.display()
                )
            ),
        ])
    );
    Ok(())
}

fn run_preview(a: PreviewArgs) -> Result<()> {
    let spec = read_augment(&a.augment)?;
    if a.images == 0 || a.scale == 0 {
        bail!("--images and --scale must be at least 1");
    }
    let set = load_data(&a.data, true)?;
    let (c, h, w) = (set.channels, set.height, set.width);
    let size = c * h * w;
    let aug = Augmenter::new(spec, a.seed);
    let n = a.images.min(set.len());
    let mut tiles = Vec::new();
    for i in 0..n {
        let orig: Vec<f32> = set.images[i * size..(i + 1) * size]
            .iter()
            .map(|&p| p as f32)
            .collect();
        tiles.push(orig.clone());
        for v in 0..a.variants {
            let t = aug.transform(v, i, h, w);
            let mut out = vec![0f32; size];
            t.apply(&orig, c, h, w, aug.spec.fill_mode, aug.spec.cval, &mut out);
            tiles.push(out);
        }
    }
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    vision::preview::Grid {
        images: &tiles,
        channels: c,
        h,
        w,
        cols: a.variants + 1,
        scale: a.scale,
    }
    .write_png(&a.out)?;
    println!(
        "wrote {}: {n} images (rows), each as the original then {} augmented versions",
        a.out.display(),
        a.variants
    );
    Ok(())
}
