//! `genocnn cv`: CNN, MLP and GBLUP on the same folds, and `genocnn cv merge`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::train::{parse_device, select_traits, trait_data, with_engine, Engine};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use eval::report::{self, Prediction, Record};
use eval::Folds;
use geno::{PhenoTable, TraitSelector};
use indicatif::{ProgressBar, ProgressStyle};
use model::ModelSpec;
use serde_json::json;

use super::output::{spinner, write_json};
use super::rundir::{kill_hook, RunDir, RunRecord};
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
    /// Genotypes: PLINK .bed (or its prefix), PLINK .raw, VCF (.vcf, .vcf.gz) or BCF, or a CSV/TSV/whitespace dosage matrix.
    #[arg(long, value_name = "PATH")]
    pub geno: PathBuf,
    /// Override the format implied by the extension: plink, raw, csv or vcf.
    #[arg(long, value_name = "FORMAT", value_parser = clap::value_parser!(geno::GenoFormat))]
    pub geno_format: Option<geno::GenoFormat>,
    /// VCF/BCF: the FORMAT field read: GT (hard calls, counting ALT) or DS
    /// (imputed ALT dosages, stored as the nearest of 0, 1 and 2).
    #[arg(long, value_enum, default_value = "gt")]
    pub vcf_field: super::VcfFieldArg,
    /// Only the individuals listed in FILE (FID IID, or IID, per line; PLINK's --keep).
    /// A PLINK .bed is read only where they lie, never copied.
    #[arg(long, value_name = "FILE")]
    pub keep: Option<PathBuf>,
    /// Only the markers listed in FILE (IDs; PLINK's --extract). A PLINK .bed
    /// is read only where they lie, never copied.
    #[arg(long, value_name = "FILE")]
    pub extract: Option<PathBuf>,
    /// How calls are read: additive (0/1/2) or inbred (0/1 = the two homozygotes).
    #[arg(long, value_enum, default_value = "additive")]
    pub coding: super::Coding,
    /// Phenotypes: a table with an ID column, a headerless file in genotype order, or a .fam.
    #[arg(long, value_name = "PATH")]
    pub pheno: PathBuf,
    /// The trait: a column name, or its number among the trait columns
    /// counting from 1; several, comma-separated, for multi-trait networks
    /// (one output per trait) and multi-trait GBLUP (`mtgblup`, then the baseline).
    #[arg(long = "trait", value_name = "NAME|N[,…]")]
    pub trait_: TraitSelector,
    /// Traits whose records the test individuals keep (CV2): networks see
    /// them as inputs, multi-trait GBLUP models them jointly; never evaluated.
    #[arg(long, value_name = "NAME|N,…")]
    pub predictor_traits: Option<TraitSelector>,
    /// cv1: the test individuals have no record of any trait. cv2: they keep
    /// the records of --predictor-traits (or, without it, of the other
    /// traits, each trait in turn being predicted).
    #[arg(long, default_value = "cv1", value_parser = clap::value_parser!(cv::Scheme))]
    pub scheme: cv::Scheme,
    /// Models, comma-separated: gblup, rkhs, mtgblup (multi-trait GBLUP), or
    /// model configs (named by their file stem; `single:CONFIG` trains one
    /// network per trait on its own records, named STEM-st).
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
    /// Number format of the networks' matrix products: auto, fp32 or bf16
    /// (see `train --help`).
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: super::train::PrecisionArg,
    /// Keep each fold's trained model in OUT/models/MODEL/rREPEAT-fFOLD
    /// (networks, and GBLUP as SNP-BLUP effects), for `genocnn explain`.
    #[arg(long)]
    pub save_models: bool,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// A model of the comparison, as named on the command line.
enum ModelArg {
    Gblup,
    Rkhs,
    MultiGblup,
    Network { spec: Box<ModelSpec>, single: bool },
    Search(Box<model::SearchSpec>),
}

impl ModelArg {
    fn name(&self) -> String {
        match self {
            ModelArg::Gblup => "gblup".into(),
            ModelArg::Rkhs => "rkhs".into(),
            ModelArg::MultiGblup => "mtgblup".into(),
            ModelArg::Network { spec, single } => {
                if *single {
                    format!("{}-st", spec.name)
                } else {
                    spec.name.clone()
                }
            }
            ModelArg::Search(s) => s.name.clone(),
        }
    }

    /// The predictor on the engine's backend.
    fn predictor<'a>(self, engine: &Engine) -> Box<dyn cv::Predictor + 'a> {
        match self {
            ModelArg::Gblup => Box::new(cv::Gblup::vanraden()),
            ModelArg::Rkhs => Box::new(cv::Gblup::rkhs()),
            ModelArg::MultiGblup => Box::new(cv::MultiGblup),
            ModelArg::Network { spec, single } => {
                with_engine!(engine.clone(), b => Box::new(cv::NetworkModel {
                    backend: b,
                    spec: *spec,
                    single,
                }))
            }
            ModelArg::Search(search) => {
                with_engine!(engine.clone(), b => Box::new(cv::SearchModel {
                    backend: b,
                    search: *search,
                }))
            }
        }
    }
}

fn parse_models(list: &[String], epochs: Option<usize>) -> Result<Vec<ModelArg>> {
    let mut out = Vec::new();
    for m in list {
        let model = match m.to_ascii_lowercase().as_str() {
            "gblup" => ModelArg::Gblup,
            "rkhs" => ModelArg::Rkhs,
            "mtgblup" => ModelArg::MultiGblup,
            _ => {
                let (single, file) = match m.strip_prefix("single:") {
                    Some(f) => (true, f),
                    None => (false, m.as_str()),
                };
                let path = Path::new(file);
                if !path.exists() {
                    bail!(
                        "--models: '{m}' is neither gblup, rkhs, mtgblup nor an existing model config file"
                    );
                }
                let mut spec = ModelSpec::from_file(path)?;
                if let Some(e) = epochs {
                    spec.training.epochs = e;
                }
                ModelArg::Network {
                    spec: Box::new(spec),
                    single,
                }
            }
        };
        if out.iter().any(|o: &ModelArg| o.name() == model.name()) {
            bail!("--models: '{}' appears twice", model.name());
        }
        out.push(model);
    }
    Ok(out)
}

pub fn run(a: CvArgs, resume: Option<RunRecord>) -> Result<()> {
    match (a.merge, a.run) {
        (Some(CvSub::Merge(m)), _) => merge(m),
        (None, Some(r)) => run_cv(r, resume),
        (None, None) => {
            bail!("cv needs --geno, --pheno, --trait, --models and --out (or the merge subcommand)")
        }
    }
}

fn run_cv(a: CvRun, resume: Option<RunRecord>) -> Result<()> {
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
        models.push(ModelArg::Search(Box::new(spec)));
    }
    let geno_args = GenoArgs {
        geno: a.geno.clone(),
        geno_format: a.geno_format,
        geno_delimiter: None,
        geno_header: None,
        geno_ids: None,
        vcf_field: a.vcf_field,
        keep: a.keep.clone(),
        extract: a.extract.clone(),
        coding: a.coding,
    };
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    // Networks run on each job's pool (installed below), as GBLUP does.
    let engine = parse_device(&a.device, nn::Native::new(), a.precision)?;
    // What `--precision auto` chose, where a network runs (null for GBLUP
    // and RKHS alone): `cv merge` refuses to mix runs that differ in it.
    let precision = models
        .iter()
        .any(|m| matches!(m, ModelArg::Network { .. } | ModelArg::Search(_)))
        .then(|| with_engine!(&engine, b => nn::Backend::precision(b)).to_string());
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let pb = spinner(format!("reading {}", a.geno.display()));
    let g = geno_args.load()?;
    let table = PhenoTable::read(&a.pheno)?;
    let (traits, predictors) = select_traits(
        &table,
        &a.trait_,
        a.predictor_traits.as_ref(),
        g.individuals(),
    )?;
    for t in &traits {
        let v: Vec<f64> = t.values.iter().copied().filter(|x| !x.is_nan()).collect();
        if let Some(&first) = v.first() {
            if v.iter().all(|&x| x == first) {
                bail!(
                    "{}: trait {} is constant (all {} records are {first}); there is nothing to predict",
                    a.pheno.display(),
                    t.name,
                    v.len()
                );
            }
        }
    }
    let multi = traits.len() > 1 || !predictors.is_empty();
    // With several traits, multi-trait GBLUP is the baseline, and the
    // univariate GBLUP is reported beside it.
    if multi
        && models.iter().any(|m| matches!(m, ModelArg::Gblup))
        && !models.iter().any(|m| matches!(m, ModelArg::MultiGblup))
    {
        eprintln!("several traits: mtgblup (multi-trait GBLUP) added as the baseline");
        let at = models
            .iter()
            .position(|m| matches!(m, ModelArg::Gblup))
            .expect("gblup is there");
        models.insert(at, ModelArg::MultiGblup);
    }
    if !multi && models.iter().any(|m| matches!(m, ModelArg::MultiGblup)) {
        bail!("--models mtgblup needs several traits (--trait a,b) or --predictor-traits");
    }
    let baseline = if multi && models.iter().any(|m| matches!(m, ModelArg::MultiGblup)) {
        "mtgblup"
    } else {
        "gblup"
    };
    let ids: Vec<String> = g.individuals().iter().map(|i| i.iid.clone()).collect();
    let columns = trait_data(&traits, &predictors);
    let eligible: Vec<usize> = (0..g.n_individuals())
        .filter(|&i| traits.iter().any(|t| !t.values[i].is_nan()))
        .collect();
    let folds = if let Some(f) = &a.fold_file {
        Folds::from_csv(f, &ids, &eligible)?
    } else if let Some(col) = &a.groups {
        let mut groups = table.column_text(col, g.individuals())?;
        for (i, gr) in groups.iter_mut().enumerate() {
            if !eligible.contains(&i) {
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
    // The folder appears once the inputs are read and the folds drawn. The
    // run writes into its staging folder, keeps each finished job there
    // (for --resume), and its files move into place at the end.
    let run = match resume {
        Some(r) => RunDir::resume(&a.out, r),
        None => RunDir::start(&a.out, "cv", precision.clone())?,
    };
    let dir = run.stage().to_path_buf();
    let store = cv::JobStore::new(&dir.join("jobs"))?;
    geno::write_atomic(dir.join("folds.csv"), folds.to_csv(&ids).as_bytes())?;
    let names: Vec<String> = models.iter().map(ModelArg::name).collect();
    let predictors_boxed: Vec<Box<dyn cv::Predictor>> =
        models.into_iter().map(|m| m.predictor(&engine)).collect();
    let needs_grm = predictors_boxed.iter().any(|m| m.needs_grm());
    let grm = if needs_grm {
        pb.set_message("computing the GRM");
        Some(gblup::vanraden(&g))
    } else {
        None
    };
    pb.finish_and_clear();
    let plan = cv::Plan {
        g: &g,
        grm: grm.as_ref(),
        traits: columns.targets,
        predictors: columns.predictors,
        scheme: a.scheme,
        folds: &folds,
        only_fold: a.fold.map(|k| k - 1),
        models: predictors_boxed,
        ids: &ids,
        seed: a.seed,
        keep: a.save_models.then(|| dir.clone()),
    };
    let n_jobs = plan.jobs()?.len();
    let trait_names: Vec<&str> = traits.iter().map(|t| t.name.as_str()).collect();
    eprintln!(
        "{} individuals with {} ({} markers); {} folds × {} repeat(s); {}{}models: {}",
        eligible.len(),
        trait_names.join(", "),
        g.n_markers(),
        folds.k,
        folds.repeats(),
        if multi {
            format!("scheme {}; ", a.scheme.name().to_uppercase())
        } else {
            String::new()
        },
        if predictors.is_empty() {
            String::new()
        } else {
            format!(
                "predictor traits {}; ",
                predictors
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        },
        names.join(", ")
    );
    let bar = ProgressBar::new(n_jobs as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:30}] {pos}/{len} fits {msg} [{elapsed} < {eta}]",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let show = |j: &cv::Job, recs: &[Record], kept: bool| {
        for rec in recs {
            let how = if kept {
                "kept from the killed run".to_string()
            } else {
                format!("{:.1} s", rec.seconds)
            };
            bar.println(format!(
                "  repeat {} fold {} {:<16} {}r = {:.3}  ({how})",
                j.repeat + 1,
                j.fold + 1,
                rec.model,
                if multi {
                    format!("{:<10} ", rec.trait_name)
                } else {
                    String::new()
                },
                rec.metrics.r,
            ));
        }
        bar.inc(1);
    };
    let (records, preds) = plan.run(a.jobs, threads, Some(&store), &|p| match p {
        cv::Progress::Started(j, name) => bar.set_message(format!(
            "repeat {} fold {} {name}",
            j.repeat + 1,
            j.fold + 1
        )),
        cv::Progress::Finished(j, recs) => {
            show(j, recs, false);
            kill_hook(
                "GENOCNN_KILL_AFTER_JOBS",
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1,
            );
        }
        cv::Progress::Kept(j, recs) => show(j, recs, true),
    })?;
    bar.finish_and_clear();
    let extra = json!({
        "trait": trait_names.join(","),
        "traits": trait_names,
        "predictor_traits": predictors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        "scheme": a.scheme.name(),
        "n_phenotyped": eligible.len(),
        "n_markers": g.n_markers(),
        "folds": folds.k,
        "repeats": folds.repeats(),
        "seed": a.seed,
        "precision": precision,
        "only_fold": a.fold,
        "seconds_total": start.elapsed().as_secs_f64(),
        "resumed": run.resumed(),
    });
    write_outputs(&dir, &a.out, &records, &preds, baseline, extra)?;
    run.commit()
}

/// A file-name-safe form of a trait's name, for its plots.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Writes the CSVs, the summary, the report and the plots: one comparison
/// per trait (each against `baseline` on the same folds).
fn write_outputs(
    dir: &Path,
    shown: &Path,
    records: &[Record],
    preds: &[Prediction],
    baseline: &str,
    extra: serde_json::Value,
) -> Result<()> {
    let precision = match extra["precision"].as_str() {
        Some("bf16") => Some("bf16 operands with f32 sums (--precision fp32 for f32)"),
        Some(_) => Some("fp32"),
        None => None,
    };
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
    let traits = report::trait_order(records);
    let multi = traits.len() > 1 || baseline == "mtgblup";
    let mut md = String::new();
    let mut by_trait = serde_json::Map::new();
    let mut single_json = None;
    let mut all_plots = Vec::new();
    for t in &traits {
        let recs: Vec<Record> = records
            .iter()
            .filter(|r| &r.trait_name == t)
            .cloned()
            .collect();
        let tp: Vec<Prediction> = preds
            .iter()
            .filter(|p| &p.trait_name == t)
            .cloned()
            .collect();
        let summary = report::summarize(&recs, baseline);
        let table = summary.table();
        let verdicts = summary.verdicts();
        let suffix = if multi {
            format!("_{}", file_safe(t))
        } else {
            String::new()
        };
        let plots = eval::plots::write_plots(dir, &recs, &tp, t, &suffix)?;
        if multi {
            md.push_str(&format!("## {t}\n\n{table}\n"));
            by_trait.insert(t.clone(), summary.to_json(json!({})));
            println!("\n{t}:");
        } else {
            md.push_str(&format!("# Cross-validation: {t}\n\n{table}\n"));
            single_json = Some(summary.to_json(extra.clone()));
            println!();
        }
        for v in &verdicts {
            md.push_str(&format!("- {v}\n"));
        }
        md.push('\n');
        for p in &plots {
            if p.extension().is_some_and(|e| e == "png") {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                md.push_str(&format!("![{name}]({name})\n"));
            }
        }
        md.push('\n');
        println!("{table}");
        for v in &verdicts {
            println!("{v}");
        }
        all_plots.extend(plots);
    }
    let summary = match single_json {
        Some(j) if !multi => j,
        _ => {
            let mut out = json!({ "baseline": baseline, "by_trait": by_trait });
            if let (serde_json::Value::Object(o), serde_json::Value::Object(e)) = (&mut out, extra)
            {
                o.extend(e);
            }
            out
        }
    };
    write_json(&dir.join("summary.json"), &summary)?;
    let head = if multi {
        format!(
            "# Cross-validation: {} (baseline {baseline})\n\n",
            traits.join(", ")
        )
    } else {
        String::new()
    };
    md = format!("{head}{md}");
    if let Some(p) = precision {
        md.push_str(&format!("The networks' matrix products ran in {p}.\n\n"));
    }
    md.push_str("r: Pearson correlation of predictions with observations on the test fold (predictive ability); slope: regression of observed on predicted (1 = unbiased); top-10%: share of the best 10% by observation also in the best 10% by prediction; Δr: paired difference from the baseline over the same folds, with a two-sided paired t-test.\n");
    geno::write_atomic(dir.join("report.md"), md.as_bytes())?;
    if let Some(p) = precision {
        println!("\nnetworks' matrix products: {p}");
    }
    println!(
        "\nwrote {}/{{metrics.csv, predictions.csv, folds.csv, timings.csv, summary.json, report.md}}",
        shown.display()
    );
    println!(
        "plots: {}",
        all_plots
            .iter()
            .map(|p| match p.strip_prefix(dir) {
                Ok(rel) => shown.join(rel).display().to_string(),
                Err(_) => p.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}

fn merge(m: MergeArgs) -> Result<()> {
    let mut records: Vec<Record> = Vec::new();
    let mut preds: Vec<Prediction> = Vec::new();
    let mut folds_csv: Option<String> = None;
    let mut trait_name = String::from("trait");
    // The precision each directory's networks ran in, where they ran any.
    let mut precision: Option<(String, &PathBuf)> = None;
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
                // (the trait's name is in the records; kept for the summary)
                if let Some(t) = v["trait"].as_str() {
                    trait_name = t.to_string();
                }
                if let Some(p) = v["precision"].as_str() {
                    match &precision {
                        None => precision = Some((p.to_string(), d)),
                        Some((first, dir)) if first != p => bail!(
                            "cv merge: {} ran its networks in {p}, {} in {first}; \
                             merged folds must share a precision (`--precision auto` \
                             is bf16 on CPUs with AVX512-BF16 and fp32 elsewhere): \
                             run the folds again with the same --precision fp32 or bf16",
                            d.display(),
                            dir.display()
                        ),
                        _ => {}
                    }
                }
            }
        }
    }
    records.sort_by_key(|r| (r.repeat, r.fold));
    // Every model and trait must have every fold of every repeat in folds.csv.
    if let Some(f) = &folds_csv {
        let mut want: std::collections::BTreeSet<(usize, usize)> = Default::default();
        for line in f.lines().skip(1) {
            let cells: Vec<&str> = line.rsplitn(3, ',').collect();
            if let [fold, repeat, _] = cells[..] {
                if let (Ok(r), Ok(k)) = (repeat.parse::<usize>(), fold.parse::<usize>()) {
                    want.insert((r - 1, k - 1));
                }
            }
        }
        let mut have: std::collections::BTreeMap<(&str, &str), Vec<(usize, usize)>> =
            Default::default();
        for r in &records {
            have.entry((r.model.as_str(), r.trait_name.as_str()))
                .or_default()
                .push((r.repeat, r.fold));
        }
        for ((model, trait_name), got) in &have {
            let missing: Vec<String> = want
                .iter()
                .filter(|w| !got.contains(w))
                .map(|(r, k)| format!("repeat {} fold {}", r + 1, k + 1))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "cv merge: model {model}{} lacks {} of the {} folds in folds.csv ({}); merge the directories of every fold",
                    if trait_name.is_empty() {
                        String::new()
                    } else {
                        format!(" (trait {trait_name})")
                    },
                    missing.len(),
                    want.len(),
                    missing.join(", ")
                );
            }
        }
    }
    // Staged like every run: a merge killed part-way leaves `--out` as it was.
    let run = RunDir::start(&m.out, "cv merge", None)?;
    let dir = run.stage().to_path_buf();
    if let Some(f) = folds_csv {
        geno::write_atomic(dir.join("folds.csv"), f.as_bytes())?;
    }
    let baseline = if records.iter().any(|r| r.model == "mtgblup") {
        "mtgblup"
    } else {
        "gblup"
    };
    write_outputs(
        &dir,
        &m.out,
        &records,
        &preds,
        baseline,
        json!({
            "trait": trait_name,
            "precision": precision.map(|(p, _)| p),
            "merged_from": m.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        }),
    )?;
    run.commit()
}
