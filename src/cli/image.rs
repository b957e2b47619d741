//! `genocnn image train|eval|augment-preview`: the 2D image path (LeNet-5
//! on MNIST, VGG-style nets on CIFAR-10) on the same engine as the genomic
//! models.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use model::{Evaluation, ImageOptions, SavedModel};
use serde_json::json;
use vision::augment::{AugmentSpec, Augmenter};
use vision::ImageSet;

use super::output::{
    ensure_dir, median_after_first, num, spinner, table, write_json, EpochProgress, OutDir,
};
use super::train::{
    compute_line, engine_threads, override_training, phase_tag, run_spec, with_engine, ComputeArgs,
};
use super::transfer::TransferArgs;
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
    /// What a saved classifier sees: activations, filter patterns, Grad-CAM, deletion check.
    Explain(ImageExplainArgs),
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
                let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
                let (present, missing): (Vec<PathBuf>, Vec<&str>) = {
                    let mut present = Vec::new();
                    let mut missing = Vec::new();
                    for (n, p) in names.iter().zip(paths) {
                        if p.exists() {
                            present.push(p);
                        } else {
                            missing.push(n.as_str());
                        }
                    }
                    (present, missing)
                };
                if present.is_empty() {
                    bail!(
                        "{}: no CIFAR-10 {} batch found (expected {})",
                        dir.display(),
                        if train { "training" } else { "test" },
                        names.join(", ")
                    );
                }
                if !missing.is_empty() {
                    // Never part of the data without a word.
                    eprintln!(
                        "warning: {}: reading {} of the {} CIFAR-10 {} batches; {} missing",
                        dir.display(),
                        present.len(),
                        names.len(),
                        if train { "training" } else { "test" },
                        missing.join(", ")
                    );
                }
                let paths = present;
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
    /// Model config (TOML), e.g. configs/lenet5.toml (default with
    /// --init-from: the source model's).
    #[arg(long, value_name = "CONFIG", required_unless_present = "init_from")]
    pub model: Option<PathBuf>,
    /// Keep only these classes, in training and test sets alike, relabelled
    /// 0…k−1 in this order: 5,6,7,8,9 or 5-9. The last dense layer gets k
    /// units; from --init-from with other classes, it is initialised afresh.
    #[arg(long, value_name = "LIST")]
    pub classes: Option<String>,
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
    /// Train on the first N training images only (of --classes, when given).
    #[arg(long, value_name = "N")]
    pub train_limit: Option<usize>,
    /// Random seed: the same seed and thread count give bit-identical weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub transfer: TransferArgs,
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
        ImageCommand::Explain(a) => run_explain(a),
    }
}

fn read_augment(path: &Path) -> Result<AugmentSpec> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    AugmentSpec::from_toml(&text, &path.display().to_string()).map_err(anyhow::Error::msg)
}

/// The names of a model's classes: the data set's, or those kept by `--classes`.
fn model_class_names(dataset: Dataset, labels: &[u32]) -> Vec<String> {
    let all = dataset.class_names();
    if labels.is_empty() {
        return all;
    }
    labels
        .iter()
        .map(|&l| {
            all.get(l as usize)
                .cloned()
                .unwrap_or_else(|| l.to_string())
        })
        .collect()
}

/// A test set as a model sees it: only its classes, relabelled, when it
/// was trained with `--classes`.
fn for_model(set: ImageSet, labels: &[u32]) -> ImageSet {
    if labels.is_empty() {
        return set;
    }
    let keep: Vec<u8> = labels.iter().map(|&l| l as u8).collect();
    set.select_classes(&keep)
}

/// Writes confusion.csv and confusion.png into `dir`.
fn write_confusion(
    dir: &Path,
    e: &Evaluation,
    model: &str,
    dataset: Dataset,
    labels: &[u32],
) -> Result<()> {
    let names = model_class_names(dataset, labels);
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
    let source = a.transfer.source()?;
    let mut spec = run_spec(a.model.as_deref(), source.as_ref())?;
    override_training(&mut spec, a.epochs, a.batch_size, a.lr)?;
    let augment = match &a.augment {
        Some(p) => Some(Augmenter::new(read_augment(p)?, a.seed)),
        None => None,
    };
    let mut train = load_data(&a.data, true)?;
    let mut test = load_data(&a.data, false)?;
    let n_classes = a.data.dataset.class_names().len();
    let labels: Vec<u32> = match &a.classes {
        Some(text) => {
            let keep = vision::parse_classes(text, n_classes).map_err(anyhow::Error::msg)?;
            train = train.select_classes(&keep);
            test = test.select_classes(&keep);
            if train.is_empty() {
                bail!(
                    "--classes {text}: {} has no training image of these classes",
                    a.data.data_dir.display()
                );
            }
            spec.set_output_units(keep.len(), "--classes")?;
            keep.iter().map(|&c| c as u32).collect()
        }
        None => Vec::new(),
    };
    let out_dir = OutDir::create(&a.out)?;
    if let Some(n) = a.train_limit {
        if n == 0 {
            bail!("--train-limit must be at least 1");
        }
        let n = n.min(train.len());
        let size = train.channels * train.height * train.width;
        train.images.truncate(n * size);
        train.labels.truncate(n);
    }
    let input_shape = [train.channels, train.height, train.width];
    let mut network = nn::Network::build(backend, &spec.layers, &input_shape, spec.init, a.seed)?;
    // A source trained on other classes gives no output layer.
    let mine: Vec<u32> = if labels.is_empty() {
        (0..network.output_shape.iter().product::<usize>() as u32).collect()
    } else {
        labels.clone()
    };
    let (reinit, note) = match &source {
        Some(s) if !s.class_labels.is_empty() && s.class_labels != mine => {
            let out = format!("layers.{}", spec.layers.len() - 1);
            let note = format!(
                "output layer {out} replaced: the source's classes are {:?}, these {:?}",
                s.class_labels, mine
            );
            (vec![out], Some(note))
        }
        _ => (Vec::new(), None),
    };
    let plan = a.transfer.plan(source, &spec, &mut network, reinit, note)?;
    eprint!("{}", plan.describe());
    eprintln!(
        "training {} on {} {} images ({}×{}×{}{}), testing on {}, {}{}",
        spec.name,
        train.len(),
        a.data.dataset.name(),
        train.channels,
        train.height,
        train.width,
        if labels.is_empty() {
            String::new()
        } else {
            format!(", classes {labels:?}")
        },
        test.len(),
        network.backend.name(),
        if augment.is_some() { ", augmented" } else { "" }
    );
    let start = Instant::now();
    let opts = ImageOptions {
        augment: augment.as_ref(),
        test: Some(&test),
        dataset: a.data.dataset.name().into(),
        profile: false,
        labels: labels.clone(),
        phases: plan.phases.clone(),
    };
    let mut progress = EpochProgress::new();
    let fitted = model::fit_images_with(network, &spec, &train, &opts, a.seed, &mut |ev| {
        progress.on(ev, |r| {
            (
                format!(
                    "  epoch {:>3}{}  lr {:.2e}  loss {:.4}  train acc {:.4}  test acc {:.4}  {:.2}s",
                    r.epoch + 1,
                    phase_tag(r.phase),
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
    let mut fitted = fitted;
    fitted.provenance = plan.provenance(&fitted.provenance);

    let mut hist = String::from(
        "epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,test_accuracy,seconds,phase\n",
    );
    for r in &fitted.history {
        writeln!(
            hist,
            "{},{},{},{},{},{},{},{},{}",
            r.epoch + 1,
            r.lr,
            num(Some(r.train_loss)),
            num(Some(r.train_accuracy)),
            num(Some(r.val_loss)),
            num(Some(r.val_accuracy)),
            num(Some(r.test_accuracy)),
            num(Some(r.seconds)),
            r.phase
        )?;
    }
    geno::write_atomic(a.out.join("history.csv"), hist.as_bytes())?;
    model::save_image(&fitted, &a.out)?;
    let e = fitted.evaluate(&test)?;
    write_confusion(&a.out, &e, &spec.name, a.data.dataset, &labels)?;
    let times: Vec<f64> = fitted.history.iter().map(|r| r.seconds).collect();
    let spe = times.iter().sum::<f64>() / times.len() as f64;
    let median_after_first = median_after_first(&times);
    let n_params = fitted.network.n_trainable();
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "model": spec.name,
            "config": a.model.as_ref().map(|p| p.display().to_string()),
            "dataset": a.data.dataset.name(),
            "classes": (!labels.is_empty()).then(|| labels.clone()),
            "train_limit": a.train_limit,
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
            "precision": fitted.network.backend.precision().to_string(),
            "backend": fitted.network.backend.name(),
            "transfer": a.transfer.any().then(|| plan.json(&fitted.provenance)),
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
            ("compute", compute_line(&fitted.network.backend)),
            ("wrote", format!("{}/{{model.toml, model.safetensors, history.csv, summary.json, confusion.csv, confusion.png}}", a.out.display())),
        ])
    );
    out_dir.keep();
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
    let out_dir = OutDir::create(&a.out)?;
    let test = for_model(load_data(&a.data, false)?, &m.meta.labels);
    let start = Instant::now();
    let e = m.evaluate(&test)?;
    let secs = start.elapsed().as_secs_f64();
    write_confusion(&a.out, &e, &m.spec.name, a.data.dataset, &m.meta.labels)?;
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
    out_dir.keep();
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

#[derive(Args, Debug)]
pub struct ImageExplainArgs {
    /// A directory written by `genocnn image train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Test images to look at, by index, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2,3,4,5,6,7")]
    pub images: Vec<usize>,
    /// Also draw Grad-CAM for this class (besides the predicted one).
    #[arg(long)]
    pub class: Option<usize>,
    /// Filter patterns: steps of gradient ascent from noise.
    #[arg(long, default_value_t = 40)]
    pub ascent_steps: usize,
    /// Filter patterns: step size (times the gradient over its root mean square).
    #[arg(long, default_value_t = 0.01)]
    pub ascent_step_size: f32,
    /// The deletion check: steps from no pixel deleted to all.
    #[arg(long, default_value_t = 28)]
    pub deletion_steps: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output directory for the pictures and summary.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

fn run_explain(a: ImageExplainArgs) -> Result<()> {
    let engine = a.compute.apply_exact()?;
    with_engine!(engine, b => explain_with(a, b))
}

fn explain_with<B: Backend>(a: ImageExplainArgs, backend: B) -> Result<()> {
    use explain::image::{deprocess, overlay, to_grey, Ascent, ImageExplainer};
    use vision::preview::Grid;
    let start = Instant::now();
    let SavedModel::Image(m) = model::load(&a.model, backend)? else {
        bail!(
            "{} does not hold an image classifier (use `genocnn explain` for genotype models)",
            a.model.display()
        );
    };
    if a.images.is_empty() {
        bail!("--images: expected at least one image index");
    }
    let classes = m.meta.classes;
    if let Some(k) = a.class.filter(|&k| k >= classes) {
        bail!(
            "--class {k}: the model has {classes} classes (0 to {})",
            classes - 1
        );
    }
    let out_dir = OutDir::create(&a.out)?;
    let test = for_model(load_data(&a.data, false)?, &m.meta.labels);
    let ex = ImageExplainer::new(&m)?;
    let x = ex.pixels(&test, &a.images)?;
    let n = a.images.len();
    let [c, h, w] = [m.meta.channels, m.meta.height, m.meta.width];
    let img = c * h * w;
    let probs = ex.probabilities(x.clone(), n)?;
    let predicted = ex.predicted(&probs);
    let mut wrote = Vec::new();

    // The intermediate activations: one row per image, one tile per channel.
    let pb = spinner("activations");
    for layer in ex.activations(x.clone(), n)? {
        let tiles: Vec<Vec<f32>> = layer.maps.iter().flatten().map(|v| to_grey(v)).collect();
        let name = format!("activations_{}.png", layer.label);
        Grid {
            images: &tiles,
            channels: 1,
            h: layer.h,
            w: layer.w,
            cols: layer.channels,
            scale: (84 / layer.h.max(1)).clamp(1, 8),
        }
        .write_png(&a.out.join(&name))?;
        wrote.push(name);
    }

    // The filters' preferred inputs.
    pb.set_message("filter patterns (gradient ascent)");
    let ascent = Ascent {
        steps: a.ascent_steps,
        step_size: a.ascent_step_size,
        seed: a.seed,
    };
    let mut filters_json = serde_json::Map::new();
    for f in ex.filters(&ascent)? {
        let tiles: Vec<Vec<f32>> = f.patterns.iter().map(|p| deprocess(p)).collect();
        let name = format!("filters_{}.png", f.label);
        Grid {
            images: &tiles,
            channels: c,
            h,
            w,
            cols: tiles.len().min(8),
            scale: 3,
        }
        .write_png(&a.out.join(&name))?;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        filters_json.insert(
            f.label.clone(),
            json!({"filters": f.patterns.len(), "mean_activation_start": mean(&f.start),
                   "mean_activation_end": mean(&f.end),
                   "filters_increased": f.start.iter().zip(&f.end).filter(|(s, e)| e > s).count(),
                   "filters_silent": f.start.iter().zip(&f.end).filter(|(s, e)| e <= s && **s <= 0.0).count(),
                   "restarted_from_uniform_noise": f.restarted}),
        );
        wrote.push(name);
    }

    // Grad-CAM: the image, its heatmap for the predicted class, and for --class.
    pb.set_message("grad-cam and the deletion check");
    let mut tiles = Vec::new();
    let mut per_image = Vec::new();
    let (mut cam_auc, mut rand_auc) = (0.0, 0.0);
    for (r, &idx) in a.images.iter().enumerate() {
        let xi = &x[r * img..(r + 1) * img];
        let mut rgb = Vec::with_capacity(3 * h * w);
        for ch in 0..3 {
            let src = if c >= 3 { ch } else { 0 };
            rgb.extend(xi[src * h * w..(src + 1) * h * w].iter().map(|v| v * 255.0));
        }
        tiles.push(rgb);
        tiles.push(overlay(xi, c, &ex.gradcam(xi, predicted[r])?));
        if let Some(k) = a.class {
            tiles.push(overlay(xi, c, &ex.gradcam(xi, k)?));
        }
        let (g_auc, r_auc, class) = ex.deletion_pair(xi, a.deletion_steps, a.seed ^ idx as u64)?;
        cam_auc += g_auc / n as f64;
        rand_auc += r_auc / n as f64;
        per_image.push(
            json!({"image": idx, "label": test.labels[idx], "predicted": class,
                              "probability": probs[r * classes + class],
                              "deletion_gradcam_auc": g_auc, "deletion_random_auc": r_auc}),
        );
    }
    Grid {
        images: &tiles,
        channels: 3,
        h,
        w,
        cols: if a.class.is_some() { 3 } else { 2 },
        scale: (112 / h.max(1)).clamp(1, 8),
    }
    .write_png(&a.out.join("gradcam.png"))?;
    wrote.push("gradcam.png".into());
    pb.finish_and_clear();

    write_json(
        &a.out.join("summary.json"),
        &json!({
            "model": m.spec.name,
            "model_dir": a.model.display().to_string(),
            "dataset": a.data.dataset.name(),
            "images": per_image,
            "class": a.class,
            "gradcam_layer": ex.cam_layer_name()?,
            "filters": {"steps": a.ascent_steps,
                        "step_size": a.ascent_step_size.to_string().parse::<f64>().unwrap_or(f64::NAN),
                        "start": "0.5 + uniform(-0.1, 0.1) noise; filters silent there, uniform(0, 1) noise",
                        "layers": filters_json},
            "deletion": {"gradcam_auc": cam_auc, "random_auc": rand_auc,
                         "steps": a.deletion_steps, "deleted_value": 0.0},
            "files": wrote,
            "seconds": start.elapsed().as_secs_f64(),
            "backend": m.network.backend.name(),
        }),
    )?;
    print!(
        "{}",
        table(&[
            ("model", format!("{} ({})", m.spec.name, a.model.display())),
            ("grad-cam layer", ex.cam_layer_name()?),
            (
                "deletion",
                format!(
                    "area under the class probability: {cam_auc:.3} deleting by Grad-CAM, {rand_auc:.3} at random ({} images; smaller is more faithful)",
                    n
                )
            ),
            ("wrote", format!("{}/{{{}, summary.json}}", a.out.display(), wrote.join(", "))),
        ])
    );
    out_dir.keep();
    Ok(())
}
