//! `genocnn cv`: CNN, MLP and GBLUP on the same folds, and `genocnn cv merge`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::train::{parse_device, with_engine, Engine};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use eval::report::{self, Prediction, Record};
use eval::{Folds, Metrics};
use gblup::KernelChoice;
use geno::{PackedGenotypes, PhenoTable, TraitSelector};
use indicatif::{ProgressBar, ProgressStyle};
use model::ModelSpec;
use serde_json::json;

use super::output::{ensure_dir, spinner, write_json};
use super::GenoArgs;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CvArgs {
    #[command(subcommand)]
    pub merge: Option<CvSub>,
    #[command(flatten)]
    pub run: Option<CvRun>,
}

#[derive(Subcommand, Debug)]
pub enum CvSub {
    /// Combine the outputs of single-fold runs (`cv --fold K`) into one comparison.
    Merge(MergeArgs),
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Output directory of the combined comparison.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The directories written by `genocnn cv --fold K`.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

/// The options of a cross-validation run. (The genotype and phenotype
/// options are listed here rather than flattened from `GenoArgs` and
/// `PhenoArgs`: clap cannot tell whether an optional group of nested groups
/// was given, which `cv merge` needs.)
#[derive(Args, Debug)]
pub struct CvRun {
    /// Genotypes: PLINK .bed (or its prefix), PLINK .raw, or a CSV/TSV/whitespace dosage matrix.
    #[arg(long, value_name = "PATH")]
    pub geno: PathBuf,
    /// Override the format implied by the extension: plink, raw or csv.
    #[arg(long, value_name = "FORMAT", value_parser = clap::value_parser!(geno::GenoFormat))]
    pub geno_format: Option<geno::GenoFormat>,
    /// Phenotypes: a table with an ID column, a headerless file in genotype order, or a .fam.
    #[arg(long, value_name = "PATH")]
    pub pheno: PathBuf,
    /// The trait: a column name, or its number among the trait columns counting from 1.
    #[arg(long = "trait", value_name = "NAME|N")]
    pub trait_: TraitSelector,
    /// Models, comma-separated: gblup, rkhs, or model configs (named by their file stem).
    #[arg(long, value_delimiter = ',', required = true)]
    pub models: Vec<String>,
    /// Number of folds (with --groups: 0 for one fold per group).
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Repeats of the k-fold split, each shuffled anew.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Random seed: the same seed gives the same folds, weights and numbers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Leave-group-out folds by this column of the phenotype file (families, testers, environments).
    #[arg(long, value_name = "COLUMN")]
    pub groups: Option<TraitSelector>,
    /// Reuse folds from a folds.csv (id,repeat,fold).
    #[arg(long, value_name = "FILE", conflicts_with = "groups")]
    pub fold_file: Option<PathBuf>,
    /// Run only fold K (from 1) of each repeat; combine runs with `genocnn cv merge`.
    #[arg(long, value_name = "K")]
    pub fold: Option<usize>,
    /// Folds run in parallel (each with threads / jobs threads).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// A hyperparameter search (TOML: base model, grid or random ranges):
    /// inner folds on each outer training part choose a configuration, which
    /// is recorded in metrics.csv's note column.
    #[arg(long, value_name = "SPEC.toml")]
    pub search: Option<PathBuf>,
    /// Override every network config's number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Worker threads in all (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Where networks run: native, candle-cpu or cuda[:N] (see `train --help`).
    #[arg(long, default_value = "native")]
    pub device: String,
    /// Keep each fold's trained model in OUT/models/MODEL/rREPEAT-fFOLD
    /// (networks, and GBLUP as SNP-BLUP effects), for `genocnn explain`.
    #[arg(long)]
    pub save_models: bool,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Where a fold's model is kept, when models are kept.
struct Keep<'a> {
    root: &'a Path,
    trait_name: &'a str,
}

impl Keep<'_> {
    fn dir(&self, model: &str, t: &Task) -> PathBuf {
        self.root
            .join("models")
            .join(model)
            .join(format!("r{}-f{}", t.repeat + 1, t.fold + 1))
    }
}

/// A model of the comparison.
enum CvModel {
    Gblup,
    Rkhs,
    Network(Box<ModelSpec>),
    Search(Box<model::SearchSpec>),
}

impl CvModel {
    fn name(&self) -> String {
        match self {
            CvModel::Gblup => "gblup".into(),
            CvModel::Rkhs => "rkhs".into(),
            CvModel::Network(s) => s.name.clone(),
            CvModel::Search(s) => s.name.clone(),
        }
    }
}

fn parse_models(list: &[String], epochs: Option<usize>) -> Result<Vec<CvModel>> {
    let mut out = Vec::new();
    for m in list {
        let model = match m.to_ascii_lowercase().as_str() {
            "gblup" => CvModel::Gblup,
            "rkhs" => CvModel::Rkhs,
            _ => {
                let path = Path::new(m);
                if !path.exists() {
                    bail!(
                        "--models: '{m}' is neither gblup, rkhs nor an existing model config file"
                    );
                }
                let mut spec = ModelSpec::from_file(path)?;
                if let Some(e) = epochs {
                    spec.training.epochs = e;
                }
                CvModel::Network(Box::new(spec))
            }
        };
        if out.iter().any(|o: &CvModel| o.name() == model.name()) {
            bail!("--models: '{}' appears twice", model.name());
        }
        out.push(model);
    }
    Ok(out)
}

pub fn run(a: CvArgs) -> Result<()> {
    match (a.merge, a.run) {
        (Some(CvSub::Merge(m)), _) => merge(m),
        (None, Some(r)) => run_cv(r),
        (None, None) => {
            bail!("cv needs --geno, --pheno, --trait, --models and --out (or the merge subcommand)")
        }
    }
}

struct Task {
    repeat: usize,
    fold: usize,
    model: usize,
}

fn run_cv(a: CvRun) -> Result<()> {
    let start = Instant::now();
    let mut models = parse_models(&a.models, a.epochs)?;
    if let Some(path) = &a.search {
        let spec = model::SearchSpec::from_file(path)?;
        if models.iter().any(|m| m.name() == spec.name) {
            bail!(
                "--search: a model named '{}' is already in --models",
                spec.name
            );
        }
        eprintln!(
            "search {}: {} candidates × {} inner folds per outer fold",
            spec.name,
            spec.candidates.len(),
            spec.inner_folds
        );
        models.push(CvModel::Search(Box::new(spec)));
    }
    let (pheno, trait_sel) = (&a.pheno, &a.trait_);
    let geno_args = GenoArgs {
        geno: a.geno.clone(),
        geno_format: a.geno_format,
        geno_delimiter: None,
        geno_header: None,
        geno_ids: None,
    };
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    // Networks run on each job's pool (installed below), as GBLUP does.
    let engine = parse_device(&a.device, nn::Native::new())?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    ensure_dir(&a.out)?;
    let pb = spinner(format!("reading {}", a.geno.display()));
    let g = geno_args.reader().read()?;
    let table = PhenoTable::read(pheno)?;
    let tr = table.select(trait_sel, g.individuals())?;
    let ids: Vec<String> = g.individuals().iter().map(|i| i.iid.clone()).collect();
    let eligible: Vec<usize> = (0..g.n_individuals())
        .filter(|&i| !tr.values[i].is_nan())
        .collect();
    let folds = if let Some(f) = &a.fold_file {
        Folds::from_csv(f, &ids)?
    } else if let Some(col) = &a.groups {
        let mut groups = table.column_text(col, g.individuals())?;
        for (i, gr) in groups.iter_mut().enumerate() {
            if tr.values[i].is_nan() {
                *gr = None;
            }
        }
        Folds::by_group(&groups, a.folds, a.repeats, a.seed)?
    } else {
        Folds::kfold(g.n_individuals(), &eligible, a.folds, a.repeats, a.seed)?
    };
    if let Some(k) = a.fold {
        if k == 0 || k > folds.k {
            bail!("--fold {k}: expected a fold between 1 and {}", folds.k);
        }
    }
    geno::write_atomic(a.out.join("folds.csv"), folds.to_csv(&ids).as_bytes())?;
    let needs_grm = models
        .iter()
        .any(|m| matches!(m, CvModel::Gblup | CvModel::Rkhs));
    let grm = if needs_grm {
        pb.set_message("computing the GRM");
        Some(gblup::vanraden(&g))
    } else {
        None
    };
    pb.finish_and_clear();

    let fold_list: Vec<usize> = match a.fold {
        Some(k) => vec![k - 1],
        None => (0..folds.k).collect(),
    };
    let n_models = models.len();
    let tasks: Vec<Task> = (0..folds.repeats())
        .flat_map(|r| {
            fold_list.iter().flat_map(move |&f| {
                (0..n_models).map(move |m| Task {
                    repeat: r,
                    fold: f,
                    model: m,
                })
            })
        })
        .collect();
    eprintln!(
        "{} individuals with {} ({} markers); {} folds × {} repeat(s); models: {}",
        eligible.len(),
        tr.name,
        g.n_markers(),
        folds.k,
        folds.repeats(),
        models
            .iter()
            .map(CvModel::name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let keep = a.save_models.then(|| Keep {
        root: &a.out,
        trait_name: &tr.name,
    });
    let bar = ProgressBar::new(tasks.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} fits {msg} [{elapsed} < {eta}]",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));

    let results: Mutex<Vec<(usize, Record, Vec<Prediction>)>> = Mutex::new(Vec::new());
    let next = Mutex::new(0usize);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let jobs = a.jobs.min(tasks.len()).max(1);
    let per_job = (threads / jobs).max(1);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                let pool = match rayon::ThreadPoolBuilder::new().num_threads(per_job).build() {
                    Ok(p) => p,
                    Err(e) => {
                        *failure.lock().expect("lock") = Some(e.into());
                        return;
                    }
                };
                loop {
                    let k = {
                        let mut n = next.lock().expect("lock");
                        if *n >= tasks.len() || failure.lock().expect("lock").is_some() {
                            break;
                        }
                        *n += 1;
                        *n - 1
                    };
                    let t = &tasks[k];
                    let m = &models[t.model];
                    bar.set_message(format!(
                        "repeat {} fold {} {}",
                        t.repeat + 1,
                        t.fold + 1,
                        m.name()
                    ));
                    let out = pool.install(|| {
                        run_task(
                            keep.as_ref(),
                            &engine,
                            &g,
                            grm.as_ref(),
                            &tr.values,
                            &folds,
                            t,
                            m,
                            &ids,
                            a.seed,
                        )
                    });
                    match out {
                        Ok((rec, preds)) => {
                            bar.println(format!(
                                "  repeat {} fold {} {:<16} r = {:.3}  ({:.1} s)",
                                t.repeat + 1,
                                t.fold + 1,
                                rec.model,
                                rec.metrics.r,
                                rec.seconds
                            ));
                            results.lock().expect("lock").push((k, rec, preds));
                        }
                        Err(e) => {
                            *failure.lock().expect("lock") = Some(e.context(format!(
                                "repeat {} fold {} model {}",
                                t.repeat + 1,
                                t.fold + 1,
                                m.name()
                            )));
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    let mut results = results.into_inner().expect("lock");
    results.sort_by_key(|(k, _, _)| *k);
    let records: Vec<Record> = results.iter().map(|(_, r, _)| r.clone()).collect();
    let preds: Vec<Prediction> = results.into_iter().flat_map(|(_, _, p)| p).collect();
    let extra = json!({
        "trait": tr.name,
        "n_phenotyped": eligible.len(),
        "n_markers": g.n_markers(),
        "folds": folds.k,
        "repeats": folds.repeats(),
        "seed": a.seed,
        "only_fold": a.fold,
        "seconds_total": start.elapsed().as_secs_f64(),
    });
    write_outputs(&a.out, &records, &preds, &tr.name, extra)
}

/// Trains a network on `train` with the engine's backend and predicts
/// `test`; returns the predictions, the epochs run and the best epoch.
#[allow(clippy::too_many_arguments)]
fn fit_predict(
    save: Option<(PathBuf, &str)>,
    engine: &Engine,
    spec: &model::ModelSpec,
    g: &PackedGenotypes,
    y: &[f64],
    train: &[usize],
    test: &[usize],
    seed: u64,
) -> Result<(Vec<f64>, usize, usize)> {
    with_engine!(engine.clone(), b => {
        let f = model::fit(b, spec, g, y, train, seed, &mut |_| {})?;
        if let Some((dir, trait_name)) = save {
            model::save_network(&f, &dir, trait_name)?;
        }
        Ok((f.predict(g, test)?, f.history.len(), f.best_epoch))
    })
}

#[allow(clippy::too_many_arguments)]
fn run_task(
    keep: Option<&Keep>,
    engine: &Engine,
    g: &PackedGenotypes,
    grm: Option<&gblup::Grm>,
    y: &[f64],
    folds: &Folds,
    t: &Task,
    m: &CvModel,
    ids: &[String],
    seed: u64,
) -> Result<(Record, Vec<Prediction>)> {
    let start = Instant::now();
    let (train, test) = folds.split(t.repeat, t.fold);
    if test.is_empty() {
        bail!("the test fold is empty");
    }
    // Only the training individuals' phenotypes reach the model.
    let mut masked = vec![f64::NAN; y.len()];
    for &i in &train {
        masked[i] = y[i];
    }
    let (pred, note) = match m {
        CvModel::Gblup | CvModel::Rkhs => {
            let kernel = if matches!(m, CvModel::Gblup) {
                KernelChoice::VanRaden
            } else {
                KernelChoice::rkhs()
            };
            let grm = grm.context("the GRM was not computed")?;
            let fit = gblup::fit(g, grm, &masked, &[], &train, &kernel)?;
            let b0 = fit.reml.beta[0];
            if let (Some(k), Some(eff)) = (keep, &fit.snp_effects) {
                let lm = model::LinearModel {
                    markers: g.markers().to_vec(),
                    center: fit.centers.clone(),
                    effects: eff.clone(),
                    intercept: b0,
                    trait_name: k.trait_name.to_string(),
                    n_train: fit.train.len(),
                };
                model::save_linear(&lm, &k.dir(&m.name(), t))?;
            }
            let note = match fit.theta {
                Some(th) => format!("h2={:.3};theta={th}", fit.reml.h2),
                None => format!("h2={:.3}", fit.reml.h2),
            };
            (
                test.iter().map(|&i| b0 + fit.gebv[i]).collect::<Vec<f64>>(),
                note,
            )
        }
        CvModel::Network(spec) => {
            let s = seed.wrapping_add(1000 * t.repeat as u64 + t.fold as u64);
            let save = keep.map(|k| (k.dir(&m.name(), t), k.trait_name));
            let (pred, epochs, best) =
                fit_predict(save, engine, spec, g, &masked, &train, &test, s)?;
            (pred, format!("epochs={epochs};best={}", best + 1))
        }
        CvModel::Search(search) => {
            // Inner folds on the training part only choose the configuration.
            let s = seed.wrapping_add(1000 * t.repeat as u64 + t.fold as u64);
            let inner = Folds::kfold(
                g.n_individuals(),
                &train,
                search.inner_folds,
                1,
                s ^ search.seed,
            )?;
            let mut best: Option<(f64, usize)> = None;
            for (ci, cand) in search.candidates.iter().enumerate() {
                let spec = cand.apply(&search.base)?;
                let mut rs = Vec::new();
                for k in 0..inner.k {
                    let (itrain, itest) = inner.split(0, k);
                    let mut inner_y = vec![f64::NAN; y.len()];
                    for &i in &itrain {
                        inner_y[i] = masked[i];
                    }
                    let (p, _, _) = fit_predict(
                        None,
                        engine,
                        &spec,
                        g,
                        &inner_y,
                        &itrain,
                        &itest,
                        s.wrapping_add(k as u64),
                    )?;
                    let o: Vec<f64> = itest.iter().map(|&i| masked[i]).collect();
                    rs.push(eval::metrics::pearson(&p, &o));
                }
                let mean = rs.iter().filter(|v| v.is_finite()).sum::<f64>() / rs.len() as f64;
                if best.is_none_or(|(b, _)| mean > b) {
                    best = Some((mean, ci));
                }
            }
            let (inner_r, ci) = best.context("the search has no candidates")?;
            let spec = search.candidates[ci].apply(&search.base)?;
            let save = keep.map(|k| (k.dir(&m.name(), t), k.trait_name));
            let (pred, _, _) = fit_predict(save, engine, &spec, g, &masked, &train, &test, s)?;
            let note = format!(
                "chosen: {} (inner r={inner_r:.3})",
                search.candidates[ci].describe()
            );
            (pred, note)
        }
    };
    let obs: Vec<f64> = test.iter().map(|&i| y[i]).collect();
    let metrics = Metrics::compute(&pred, &obs);
    let name = m.name();
    let preds = test
        .iter()
        .zip(pred.iter().zip(&obs))
        .map(|(&i, (&p, &o))| Prediction {
            id: ids[i].clone(),
            repeat: t.repeat,
            fold: t.fold,
            model: name.clone(),
            prediction: p,
            observed: o,
        })
        .collect();
    Ok((
        Record {
            model: name,
            repeat: t.repeat,
            fold: t.fold,
            metrics,
            seconds: start.elapsed().as_secs_f64(),
            note,
        },
        preds,
    ))
}

fn write_outputs(
    dir: &Path,
    records: &[Record],
    preds: &[Prediction],
    trait_name: &str,
    extra: serde_json::Value,
) -> Result<()> {
    geno::write_atomic(
        dir.join("metrics.csv"),
        report::metrics_csv(records).as_bytes(),
    )?;
    geno::write_atomic(
        dir.join("timings.csv"),
        report::timings_csv(records).as_bytes(),
    )?;
    geno::write_atomic(
        dir.join("predictions.csv"),
        report::predictions_csv(preds).as_bytes(),
    )?;
    let summary = report::summarize(records, "gblup");
    write_json(&dir.join("summary.json"), &summary.to_json(extra))?;
    let table = summary.table();
    let verdicts = summary.verdicts();
    let plots = eval::plots::write_plots(dir, records, preds, trait_name)?;
    let mut md = format!("# Cross-validation: {trait_name}\n\n{table}\n");
    for v in &verdicts {
        md.push_str(&format!("- {v}\n"));
    }
    md.push_str("\nr: Pearson correlation of predictions with observations on the test fold (predictive ability); slope: regression of observed on predicted (1 = unbiased); top-10%: share of the best 10% by observation also in the best 10% by prediction; Δr: paired difference from GBLUP over the same folds, with a two-sided paired t-test.\n\n");
    for p in &plots {
        if p.extension().is_some_and(|e| e == "png") {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            md.push_str(&format!("![{name}]({name})\n"));
        }
    }
    geno::write_atomic(dir.join("report.md"), md.as_bytes())?;
    println!("\n{table}");
    for v in &verdicts {
        println!("{v}");
    }
    println!(
        "\nwrote {}/{{metrics.csv, predictions.csv, folds.csv, timings.csv, summary.json, report.md}}",
        dir.display()
    );
    println!(
        "plots: {}",
        plots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

fn merge(m: MergeArgs) -> Result<()> {
    ensure_dir(&m.out)?;
    let mut records: Vec<Record> = Vec::new();
    let mut preds: Vec<Prediction> = Vec::new();
    let mut folds_csv: Option<String> = None;
    let mut trait_name = String::from("trait");
    for d in &m.dirs {
        let recs = report::read_metrics(&d.join("metrics.csv"))?;
        for r in recs {
            if records
                .iter()
                .any(|x| x.model == r.model && x.repeat == r.repeat && x.fold == r.fold)
            {
                bail!(
                    "{}: model {} repeat {} fold {} appears in more than one directory",
                    d.display(),
                    r.model,
                    r.repeat + 1,
                    r.fold + 1
                );
            }
            records.push(r);
        }
        preds.extend(report::read_predictions(&d.join("predictions.csv"))?);
        let f = std::fs::read_to_string(d.join("folds.csv"))
            .with_context(|| format!("{}: folds.csv", d.display()))?;
        match &folds_csv {
            None => folds_csv = Some(f),
            Some(prev) if *prev != f => bail!("{}: its folds.csv differs from the first directory's; merged runs must share their folds", d.display()),
            _ => {}
        }
        if let Ok(text) = std::fs::read_to_string(d.join("summary.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Some(t) = v["trait"].as_str() {
                    trait_name = t.to_string();
                }
            }
        }
    }
    records.sort_by_key(|r| (r.repeat, r.fold));
    if let Some(f) = folds_csv {
        geno::write_atomic(m.out.join("folds.csv"), f.as_bytes())?;
    }
    write_outputs(
        &m.out,
        &records,
        &preds,
        &trait_name,
        json!({ "trait": trait_name, "merged_from": m.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>() }),
    )
}
