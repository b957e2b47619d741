//! `genocnn train` and `genocnn predict`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use geno::{PhenoTable, TraitSelector};
use model::{ModelSpec, SavedModel};
#[cfg(feature = "candle")]
use nn::Candle;
use nn::{Backend, CandleDevice, Native};
use serde_json::json;

use super::output::{
    csv_field, csv_header, ensure_dir, num, refuse_input_as_output, spinner, table, write_json,
    EpochProgress,
};
use super::rundir::{kill_hook, RunDir, RunRecord};
use super::transfer::TransferArgs;
use super::{GenoArgs, PhenoArgs};
use model::transfer::SourceWeights;

/// Compute options shared by the commands that run networks.
#[derive(Args, Debug, Clone)]
pub struct ComputeArgs {
    /// Worker threads of the native backend (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where networks run: native (genocnn's CPU kernels), candle-cpu, or
    /// cuda[:N] (builds with the `candle` / `cuda` features).
    #[arg(long, default_value = "native")]
    pub device: String,
    /// Number format of the matrix products: fp32, or bf16 operands with f32
    /// sums (needs AVX512-BF16; weights and optimizer state stay f32); auto
    /// is bf16 on the native backend where the CPU has AVX512-BF16, else
    /// fp32 (and fp32 in `explain`, whose attributions are held to exact
    /// identities).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: PrecisionArg,
}

/// `--precision`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrecisionArg {
    /// bf16 on the native backend where the CPU has AVX512-BF16, else fp32.
    Auto,
    Fp32,
    Bf16,
}

impl PrecisionArg {
    /// The precision this asks of the native backend, `auto` being `auto`.
    fn native(self, auto: nn::Precision) -> nn::Precision {
        match self {
            PrecisionArg::Auto => auto,
            PrecisionArg::Fp32 => nn::Precision::Fp32,
            PrecisionArg::Bf16 => nn::Precision::Bf16,
        }
    }
}

/// The backend that runs networks, chosen once from `--device`.
#[derive(Clone, Debug)]
pub enum Engine {
    Native(Native),
    #[cfg(feature = "candle")]
    Candle(Candle),
}

/// Runs `$body` with `$b` bound to the engine's backend, whichever it is.
macro_rules! with_engine {
    ($engine:expr, $b:ident => $body:expr) => {
        match $engine {
            $crate::cli::train::Engine::Native($b) => $body,
            #[cfg(feature = "candle")]
            $crate::cli::train::Engine::Candle($b) => $body,
        }
    };
}
pub(crate) use with_engine;

/// Opens a candle device, or says how to build with it.
fn candle(device: CandleDevice) -> Result<Engine> {
    #[cfg(feature = "candle")]
    return Ok(Engine::Candle(Candle::new(device)?));
    #[cfg(not(feature = "candle"))]
    return Err(nn::candle::not_built(device).into());
}

/// Parses `--device`: native, candle-cpu, cuda or cuda:N. The native
/// backend gets `native` (its thread pool) and the precision; bf16 runs on
/// it only (`auto` is fp32 on the others).
pub fn parse_device(device: &str, native: Native, precision: PrecisionArg) -> Result<Engine> {
    parse_device_with(device, native, precision, nn::Precision::preferred())
}

/// [`parse_device`] with `auto` meaning `auto` on the native backend.
fn parse_device_with(
    device: &str,
    native: Native,
    precision: PrecisionArg,
    auto: nn::Precision,
) -> Result<Engine> {
    if precision == PrecisionArg::Bf16 && !matches!(device, "native" | "cpu") {
        bail!("--precision bf16 runs on the native backend only, not on --device {device}");
    }
    match device {
        "native" | "cpu" => Ok(Engine::Native(
            native.with_precision(precision.native(auto))?,
        )),
        "candle-cpu" | "candle" => candle(CandleDevice::Cpu),
        d if d == "cuda" || d.starts_with("cuda:") => {
            let n = match d.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n.parse().with_context(|| {
                    format!("--device {d}: expected cuda:N with N a device number")
                })?,
            };
            candle(CandleDevice::Cuda(n))
        }
        other => bail!("--device {other}: expected native, candle-cpu, cuda or cuda:N"),
    }
}

/// The native backend with `threads` worker threads of its own (None: the
/// caller's pool, all cores by default).
pub fn native_backend(threads: Option<usize>) -> Result<Native> {
    match threads {
        None => Ok(Native::new()),
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => Ok(Native::with_threads(t)?),
    }
}

impl ComputeArgs {
    /// Opens the device once, the native backend with its threads.
    pub fn apply(&self) -> Result<Engine> {
        parse_device(&self.device, native_backend(self.threads)?, self.precision)
    }

    /// As [`ComputeArgs::apply`], with `auto` meaning fp32: for the
    /// explanations, whose attributions are held to exact identities (the
    /// completeness of Integrated Gradients) that bf16's rounding of every
    /// gradient product would blur, at a cost small beside training.
    pub fn apply_exact(&self) -> Result<Engine> {
        parse_device_with(
            &self.device,
            native_backend(self.threads)?,
            self.precision,
            nn::Precision::Fp32,
        )
    }
}

/// The backend and the precision of its matrix products, for the terminal.
pub fn compute_line(backend: &impl Backend) -> String {
    format!(
        "{}, {} matrix products",
        backend.name(),
        backend.precision()
    )
}

/// The worker threads an engine's networks run on.
pub fn engine_threads(engine: &Engine) -> usize {
    match engine {
        Engine::Native(n) => n.threads(),
        #[cfg(feature = "candle")]
        Engine::Candle(_) => rayon::current_num_threads(),
    }
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub geno: GenoArgs,
    #[command(flatten)]
    pub pheno: PhenoArgs,
    /// Model config (TOML), e.g. configs/cnn1d-pez.toml (default with
    /// --init-from: the source model's).
    #[arg(long, value_name = "CONFIG", required_unless_present = "init_from")]
    pub model: Option<PathBuf>,
    /// Override the config's number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the config's batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Override the config's learning rate.
    #[arg(long)]
    pub lr: Option<f32>,
    /// Override the fraction of training individuals held out for early stopping (0: none).
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// Override the early-stopping patience (epochs).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Random seed: the same seed and thread count give bit-identical weights.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Traits the network sees as inputs besides the genotypes (one
    /// constant input channel each, standardized; a missing record reads as
    /// the training mean): the CV2 scheme's records of other traits.
    /// `predict` then needs them in --pheno.
    #[arg(long, value_name = "NAME|N,…")]
    pub predictor_traits: Option<TraitSelector>,
    #[command(flatten)]
    pub transfer: TransferArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The spec of a run: the config given, or else the `--init-from` model's.
pub fn run_spec(config: Option<&Path>, source: Option<&SourceWeights>) -> Result<ModelSpec> {
    match (config, source) {
        (Some(p), _) => Ok(ModelSpec::from_file(p)?),
        (None, Some(s)) => s
            .spec
            .clone()
            .with_context(|| format!("{} holds no model spec; give --model", s.dir.display())),
        (None, None) => bail!("give --model CONFIG (or --init-from DIR)"),
    }
}

/// The traits of `--trait` (comma-separated for several) and of
/// `--predictor-traits`: each named once, none in both lists.
pub fn select_traits(
    table: &PhenoTable,
    traits: &TraitSelector,
    predictors: Option<&TraitSelector>,
    individuals: &[geno::Individual],
) -> Result<(Vec<geno::Trait>, Vec<geno::Trait>)> {
    let pick = |sel: &TraitSelector| -> Result<Vec<geno::Trait>> {
        Ok(sel
            .list()
            .iter()
            .map(|s| table.select(s, individuals))
            .collect::<geno::Result<Vec<_>>>()?)
    };
    let t = pick(traits)?;
    let p = match predictors {
        Some(sel) => pick(sel)?,
        None => Vec::new(),
    };
    let all: Vec<&geno::Trait> = t.iter().chain(&p).collect();
    for (k, x) in all.iter().enumerate() {
        if all[..k].iter().any(|y| y.name == x.name) {
            bail!(
                "trait {} is named twice in --trait and --predictor-traits; each trait is either predicted or a predictor, once",
                x.name
            );
        }
    }
    Ok((t, p))
}

/// What a network learns from: the traits it predicts and its predictor traits.
pub fn trait_data<'a>(
    traits: &'a [geno::Trait],
    predictors: &'a [geno::Trait],
) -> model::TraitData<'a> {
    let col = |t: &'a geno::Trait| model::TraitColumn {
        name: &t.name,
        values: &t.values,
    };
    model::TraitData {
        targets: traits.iter().map(col).collect(),
        predictors: predictors.iter().map(col).collect(),
    }
}

/// `  [2]` after an epoch of a fine-tuning phase.
pub fn phase_tag(phase: usize) -> String {
    if phase > 1 {
        format!(" [{phase}]")
    } else {
        String::new()
    }
}

/// Applies the command line's overrides of a spec's training settings and checks them.
pub fn override_training(
    spec: &mut ModelSpec,
    epochs: Option<usize>,
    batch_size: Option<usize>,
    lr: Option<f32>,
) -> Result<()> {
    let t = &mut spec.training;
    if let Some(v) = epochs {
        t.epochs = v;
    }
    if let Some(v) = batch_size {
        t.batch_size = v;
    }
    if let Some(v) = lr {
        t.lr = v;
    }
    t.validate()?;
    Ok(())
}

pub fn run_train(a: TrainArgs, resume: Option<RunRecord>) -> Result<()> {
    let engine = a.compute.apply()?;
    let threads = engine_threads(&engine);
    with_engine!(engine, b => train_with(a, b, threads, resume))
}

/// The epoch reports in a checkpoint (f64 as bits: NaN has no JSON form).
type SavedReport = (usize, usize, f32, u64, u64, u64, u64);

fn save_report(r: &model::EpochReport) -> SavedReport {
    (
        r.epoch,
        r.phase,
        r.lr,
        r.train_loss.to_bits(),
        r.val_loss.to_bits(),
        r.val_r.to_bits(),
        r.seconds.to_bits(),
    )
}

fn load_report(s: &SavedReport) -> model::EpochReport {
    model::EpochReport {
        epoch: s.0,
        phase: s.1,
        lr: s.2,
        train_loss: f64::from_bits(s.3),
        val_loss: f64::from_bits(s.4),
        val_r: f64::from_bits(s.5),
        seconds: f64::from_bits(s.6),
    }
}

fn train_with<B: Backend>(
    a: TrainArgs,
    backend: B,
    threads: usize,
    resume: Option<RunRecord>,
) -> Result<()> {
    let source = a.transfer.source()?;
    let mut spec = run_spec(a.model.as_deref(), source.as_ref())?;
    override_training(&mut spec, a.epochs, a.batch_size, a.lr)?;
    let t = &mut spec.training;
    if let Some(v) = a.val_fraction {
        t.val_fraction = v;
    }
    if let Some(v) = a.patience {
        t.patience = v;
    }
    t.validate()?;
    let (Some(pheno), Some(trait_sel)) = (&a.pheno.pheno, &a.pheno.trait_) else {
        bail!("train needs --pheno and --trait");
    };
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    let phenos = PhenoTable::read(pheno)?;
    let (traits, predictors) = select_traits(
        &phenos,
        trait_sel,
        a.predictor_traits.as_ref(),
        g.individuals(),
    )?;
    pb.finish_and_clear();
    if traits.len() > 1 {
        spec.set_output_units(traits.len(), "--trait")?;
    }
    let train: Vec<usize> = (0..g.n_individuals())
        .filter(|&i| traits.iter().any(|t| !t.values[i].is_nan()))
        .collect();
    let names: Vec<&str> = traits.iter().map(|t| t.name.as_str()).collect();
    let pnames: Vec<&str> = predictors.iter().map(|t| t.name.as_str()).collect();
    eprintln!(
        "training {} on {} individuals × {} markers (trait{} {}{}), {}",
        spec.name,
        train.len(),
        g.n_markers(),
        if names.len() > 1 { "s" } else { "" },
        names.join(", "),
        if pnames.is_empty() {
            String::new()
        } else {
            format!("; predictor traits {}", pnames.join(", "))
        },
        backend.name()
    );
    let data = trait_data(&traits, &predictors);
    // The folder appears once the inputs are read and checked; the run
    // writes into its staging folder, and its files move into place at the end.
    let run = match resume {
        Some(r) => RunDir::resume(&a.out, r),
        None => RunDir::start(&a.out, "train", Some(backend.precision().to_string()))?,
    };
    let dir = run.stage().to_path_buf();
    let ck_path = dir.join("checkpoint.safetensors");
    let (resume_ck, prior) = if run.resumed() && ck_path.exists() {
        let (ck, caller) = model::Checkpoint::read(&ck_path)?;
        let saved: Vec<SavedReport> = serde_json::from_str(&caller)
            .with_context(|| format!("{}: bad epoch reports", ck_path.display()))?;
        eprintln!(
            "resuming from the checkpoint after epoch {} ({})",
            ck.epochs_done,
            ck_path.display()
        );
        (
            Some(Box::new(ck)),
            saved.iter().map(load_report).collect::<Vec<_>>(),
        )
    } else {
        if run.resumed() {
            eprintln!("resuming: no epoch had finished, so the run starts again");
        }
        (None, Vec::new())
    };

    let mut network =
        model::build_network(backend, &spec, g.n_markers(), predictors.len(), a.seed)?;
    let plan = a
        .transfer
        .plan(source, &spec, &mut network, Vec::new(), None)?;
    eprint!("{}", plan.describe());
    let opts = model::TrainOptions {
        profile: false,
        phases: plan.phases.clone(),
        checkpoints: true,
        resume: resume_ck,
    };
    let start = Instant::now();
    let mut progress = EpochProgress::new();
    let mut reports: Vec<SavedReport> = prior.iter().map(save_report).collect();
    let mut ck_error: Option<anyhow::Error> = None;
    let fitted = model::fit_with(
        network,
        &spec,
        &g,
        &data,
        &train,
        a.seed,
        &opts,
        &mut |ev| {
            match &ev {
                model::Event::Epoch(r) => reports.push(save_report(r)),
                model::Event::Checkpoint(ck) => {
                    let written = serde_json::to_string(&reports)
                        .map_err(anyhow::Error::from)
                        .and_then(|caller| Ok(ck.write(&ck_path, &caller)?));
                    match written {
                        Ok(()) => kill_hook("GENOCNN_KILL_AFTER_EPOCH", ck.epochs_done),
                        Err(e) => {
                            ck_error.get_or_insert(e);
                        }
                    }
                }
                _ => {}
            }
            progress.on(ev, |r| {
                // With no validation split, there is no validation loss to show.
                let val = if r.val_loss.is_finite() {
                    format!("  val_loss {:.4}  val_r {:.3}", r.val_loss, r.val_r)
                } else {
                    String::new()
                };
                (
                    format!(
                        "  epoch {:>3}{}  lr {:.2e}  loss {:.4}{val}  {:.2}s",
                        r.epoch + 1,
                        phase_tag(r.phase),
                        r.lr,
                        r.train_loss,
                        r.seconds
                    ),
                    format!("loss {:.4}{val}", r.train_loss),
                )
            })
        },
    )?;
    let bar = progress.bar;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if let Some(e) = ck_error {
        return Err(e.context("cannot write the training checkpoint"));
    }
    let mut fitted = fitted;
    fitted.provenance = plan.provenance(&fitted.provenance);
    if !prior.is_empty() {
        let new = std::mem::take(&mut fitted.history);
        fitted.history = prior.into_iter().chain(new).collect();
    }

    let mut hist = String::from("epoch,lr,train_loss,val_loss,val_r,seconds,phase\n");
    for r in &fitted.history {
        writeln!(
            hist,
            "{},{},{},{},{},{},{}",
            r.epoch + 1,
            r.lr,
            num(Some(r.train_loss)),
            num(Some(r.val_loss)),
            num(Some(r.val_r)),
            num(Some(r.seconds)),
            r.phase
        )?;
    }
    geno::write_atomic(dir.join("history.csv"), hist.as_bytes())?;
    model::save_network(&fitted, &dir)?;
    let best = &fitted.history[fitted.best_epoch];
    let spe = fitted.history.iter().map(|r| r.seconds).sum::<f64>() / fitted.history.len() as f64;
    let n_params = fitted.network.n_trainable();
    let finite = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    write_json(
        &dir.join("summary.json"),
        &json!({
            "model": spec.name,
            "config": a.model.as_ref().map(|p| p.display().to_string()),
            "trait": names.join(","),
            "traits": names,
            "predictor_traits": pnames,
            "n_train": fitted.n_train,
            "n_val": fitted.n_val,
            "n_markers": g.n_markers(),
            "n_parameters": n_params,
            "epochs_run": fitted.history.len(),
            "best_epoch": fitted.best_epoch + 1,
            "train_loss": finite(best.train_loss),
            "val_loss": finite(best.val_loss),
            "val_r": finite(best.val_r),
            "seconds_per_epoch": spe,
            "seconds_total": secs,
            "seed": a.seed,
            "threads": threads,
            "precision": fitted.network.backend.precision().to_string(),
            "backend": fitted.network.backend.name(),
            "transfer": a.transfer.any().then(|| plan.json(&fitted.provenance)),
            "resumed": run.resumed(),
        }),
    )?;
    run.commit()?;
    print!(
        "{}",
        table(&[
            (
                "model",
                format!("{} ({} trainable parameters)", spec.name, n_params)
            ),
            (
                "epochs",
                if fitted.n_val > 0 {
                    format!(
                        "{} run, best {}",
                        fitted.history.len(),
                        fitted.best_epoch + 1
                    )
                } else {
                    format!(
                        "{} run (no validation split: the last epoch's weights are kept)",
                        fitted.history.len()
                    )
                }
            ),
            (
                if fitted.n_val > 0 {
                    "best epoch"
                } else {
                    "last epoch"
                },
                if fitted.n_val > 0 {
                    format!(
                        "loss {:.4}, val_loss {:.4}, val_r {:.3}",
                        best.train_loss, best.val_loss, best.val_r
                    )
                } else {
                    format!("loss {:.4}", best.train_loss)
                }
            ),
            ("time", format!("{spe:.2} s per epoch, {secs:.1} s in all")),
            ("compute", compute_line(&fitted.network.backend),),
            (
                "wrote",
                format!(
                    "{} {} {} {}",
                    a.out.join("model.toml").display(),
                    a.out.join("model.safetensors").display(),
                    a.out.join("history.csv").display(),
                    a.out.join("summary.json").display()
                )
            ),
        ])
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    /// A directory written by `genocnn train` (or `genocnn gblup`).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    #[command(flatten)]
    pub geno: GenoArgs,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Phenotypes holding the records of the model's predictor traits
    /// (a network trained with --predictor-traits), by their names.
    #[arg(long, value_name = "PATH")]
    pub pheno: Option<PathBuf>,
    /// Of a multi-trait model, write only these traits (comma-separated
    /// names, in this order; default: all).
    #[arg(long = "trait", value_name = "NAME,…", value_delimiter = ',')]
    pub traits: Vec<String>,
    /// Output CSV: id,prediction (a multi-trait model: id and one column per trait).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// The records of a network's predictor traits over the individuals of
/// `g`, read by name from `--pheno`.
fn predictor_records<B: Backend>(
    f: &model::Fitted<B>,
    pheno: Option<&Path>,
    g: &geno::PackedGenotypes,
) -> Result<Vec<Vec<f64>>> {
    if f.predictors.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = f.predictors.iter().map(|p| p.name.as_str()).collect();
    let Some(pheno) = pheno else {
        bail!(
            "the model sees the predictor traits {} as inputs: give their records with --pheno",
            names.join(", ")
        );
    };
    let table = PhenoTable::read(pheno)?;
    names
        .iter()
        .map(|n| {
            Ok(table
                .select(&TraitSelector::Name(n.to_string()), g.individuals())?
                .values)
        })
        .collect()
}

pub fn run_predict(a: PredictArgs) -> Result<()> {
    let engine = a.compute.apply()?;
    with_engine!(engine, b => predict_with(a, b))
}

fn predict_with<B: Backend>(a: PredictArgs, backend: B) -> Result<()> {
    let mut inputs = vec![("--geno", a.geno.geno.as_path())];
    if let Some(p) = &a.pheno {
        inputs.push(("--pheno", p.as_path()));
    }
    refuse_input_as_output(&a.out, &inputs)?;
    let saved = model::load(&a.model, backend)?;
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    pb.finish_and_clear();
    let file = a.geno.geno.display().to_string();
    let (names, preds, report) = match saved {
        SavedModel::Network(f) => {
            let (map, report) = model::match_markers(&f.markers, &g, &file)?;
            let rows: Vec<usize> = (0..g.n_individuals()).collect();
            let records = predictor_records(&f, a.pheno.as_deref(), &g)?;
            let refs: Vec<&[f64]> = records.iter().map(|v| v.as_slice()).collect();
            let all = f.predict_traits(&g, &rows, &map, &refs)?;
            let model_names: Vec<&str> = f.traits.iter().map(|t| t.name.as_str()).collect();
            let picked: Vec<usize> = if a.traits.is_empty() {
                (0..model_names.len()).collect()
            } else {
                a.traits
                    .iter()
                    .map(|t| {
                        model_names.iter().position(|m| m == t).with_context(|| {
                            format!("--trait {t}: the model predicts {}", model_names.join(", "))
                        })
                    })
                    .collect::<Result<_>>()?
            };
            let names: Vec<String> = if model_names.len() > 1 {
                picked.iter().map(|&k| model_names[k].to_string()).collect()
            } else {
                vec!["prediction".into()]
            };
            let preds = picked.iter().map(|&k| all[k].clone()).collect();
            (names, preds, report)
        }
        SavedModel::Linear(m) => {
            let (map, report) = model::match_markers(&m.markers, &g, &file)?;
            (vec!["prediction".into()], vec![m.predict(&g, &map)], report)
        }
        SavedModel::Image(_) => bail!(
            "{} holds an image classifier; use `genocnn image eval --model {}`",
            a.model.display(),
            a.model.display()
        ),
    };
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let refs: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    let mut text = csv_header("id", &refs);
    for (i, ind) in g.individuals().iter().enumerate() {
        text.push_str(&csv_field(&ind.iid));
        for p in &preds {
            write!(text, ",{}", num(Some(p[i])))?;
        }
        text.push('\n');
    }
    geno::write_atomic(&a.out, text.as_bytes())?;
    let mut notes = String::new();
    if report.flipped > 0 {
        notes.push_str(&format!(
            ", {} with A1/A2 swapped (flipped)",
            report.flipped
        ));
    }
    if report.unchecked > 0 {
        notes.push_str(&format!(
            ", {} matched by ID only (alleles unknown)",
            report.unchecked
        ));
    }
    println!(
        "predicted {} individuals from {} (markers matched by ID{notes}); wrote {}",
        g.n_individuals(),
        file,
        a.out.display()
    );
    Ok(())
}
