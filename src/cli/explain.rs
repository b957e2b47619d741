//! `genocnn explain`: which markers drive a genomic model's predictions,
//! beside the single-marker association scan, scored against known loci
//! when they are given.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use explain::{Explanation, LinearExplainer, Method, NetworkExplainer, Settings};
use geno::{Marker, PackedGenotypes, PhenoTable};
use indicatif::{ProgressBar, ProgressStyle};
use model::SavedModel;
use nn::Backend;
use serde_json::{json, Map, Value};

use super::output::{csv_field, ensure_dir, num, spinner, write_json, OutDir};
use super::train::{with_engine, ComputeArgs};
use super::{GenoArgs, PhenoArgs};

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Saved models: folders written by `train`, `gblup` or `cv --save-models`
    /// (models of one kind are averaged; a whole `cv` folder is explained per
    /// kind of model, into OUT/NAME).
    #[arg(long, value_name = "DIR", num_args = 1.., required = true)]
    pub model: Vec<PathBuf>,
    #[command(flatten)]
    pub geno: GenoArgs,
    #[command(flatten)]
    pub pheno: PhenoArgs,
    /// Attribution methods, comma-separated: saliency, grad_input,
    /// integrated_gradients, smoothgrad, gradcam, permutation.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "saliency,grad_input,integrated_gradients,smoothgrad,gradcam"
    )]
    pub methods: Vec<String>,
    /// The individuals whose predictions are explained: all, or IDs, comma-separated.
    #[arg(long, default_value = "all")]
    pub individuals: String,
    /// Known loci (CSV/TSV: marker, or chromosome and position), e.g. simulate's PREFIX.qtl.csv.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// A locus counts as found when a top marker lies within this many bp of it.
    #[arg(long, default_value_t = 100_000)]
    pub window: i64,
    /// How many top markers of each method are scored.
    #[arg(long, default_value_t = 100)]
    pub top: usize,
    /// Integrated Gradients: pieces of the path at first (the worst are
    /// halved until completeness holds to 0.5%, up to 1024 gradient evaluations).
    #[arg(long, default_value_t = 32)]
    pub ig_steps: usize,
    /// SmoothGrad: noisy copies per individual.
    #[arg(long, default_value_t = 16)]
    pub smoothgrad_samples: usize,
    /// SmoothGrad: noise sd as a fraction of each input's range.
    #[arg(long, default_value_t = 0.15)]
    pub smoothgrad_noise: f64,
    /// Permutation: markers per shuffled window.
    #[arg(long, default_value_t = 10)]
    pub perm_window: usize,
    /// Permutation: shuffles per window.
    #[arg(long, default_value_t = 1)]
    pub perm_repeats: usize,
    /// Seeds SmoothGrad's noise and the shuffles.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Output directory: markers.csv, manhattan.png/.svg, summary.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// The model folders under `path`: itself when it holds model.toml, else
/// every folder below it that does.
fn model_dirs(path: &Path) -> Result<Vec<PathBuf>> {
    if path.join("model.toml").is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        bail!(
            "--model {}: not a folder (expected one written by train, gblup or cv --save-models)",
            path.display()
        );
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                if p.join("model.toml").is_file() {
                    found.push(p);
                } else {
                    stack.push(p);
                }
            }
        }
    }
    found.sort();
    if found.is_empty() {
        bail!(
            "--model {}: holds no model.toml, nor any folder that does (save fold models with `cv --save-models`)",
            path.display()
        );
    }
    Ok(found)
}

pub fn run(a: ExplainArgs) -> Result<()> {
    let engine = a.compute.apply_exact()?;
    with_engine!(engine, b => explain_with(a, b))
}

/// A number with 6 significant digits for a CSV cell.
fn sig(v: f64) -> String {
    if !v.is_finite() {
        return "NA".into();
    }
    let r: f64 = format!("{v:.5e}").parse().unwrap_or(v);
    format!("{r}")
}

fn explain_with<B: Backend>(a: ExplainArgs, backend: B) -> Result<()> {
    let start = Instant::now();
    let mut methods = Vec::new();
    for m in &a.methods {
        let m = Method::parse(m)?;
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let mut dirs = Vec::new();
    for p in &a.model {
        dirs.extend(model_dirs(p)?);
    }
    let out_dir = OutDir::create(&a.out)?;
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    pb.finish_and_clear();
    let file = a.geno.geno.display().to_string();
    let trait_ = match (&a.pheno.pheno, &a.pheno.trait_) {
        (Some(p), Some(t)) => Some(PhenoTable::read(p)?.select(t, g.individuals())?),
        _ => None,
    };
    let rows = choose_individuals(&a.individuals, &g)?;
    let settings = Settings {
        ig_steps: a.ig_steps.max(1),
        smoothgrad_samples: a.smoothgrad_samples.max(1),
        smoothgrad_noise: a.smoothgrad_noise,
        perm_window: a.perm_window.max(1),
        perm_repeats: a.perm_repeats.max(1),
        seed: a.seed,
        ..Settings::default()
    };

    // Models of one kind are averaged; several kinds (a cv folder) are
    // explained one after the other, each into OUT/NAME.
    let mut groups: Vec<(String, Group<B>)> = Vec::new();
    for dir in &dirs {
        let saved = model::load(dir, backend.clone())
            .with_context(|| format!("cannot load the model in {}", dir.display()))?;
        let name = match &saved {
            SavedModel::Network(f) => f.spec.name.clone(),
            SavedModel::Linear(_) => "gblup".to_string(),
            SavedModel::Image(_) => bail!(
                "{} holds an image classifier; use `genocnn image explain --model {}`",
                dir.display(),
                dir.display()
            ),
        };
        match groups.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push((dir.clone(), saved)),
            None => groups.push((name, vec![(dir.clone(), saved)])),
        }
    }
    let shared = Shared {
        a: &a,
        g: &g,
        file: &file,
        trait_: trait_.as_ref(),
        rows: &rows,
        methods: &methods,
        settings: &settings,
        start,
    };
    if groups.len() == 1 {
        let (name, group) = groups.pop().expect("one group");
        explain_group(&shared, &name, group, &a.out)?;
        out_dir.keep();
        return Ok(());
    }
    eprintln!(
        "{} kinds of model: {}; each is explained into {}/NAME",
        groups.len(),
        groups
            .iter()
            .map(|(n, v)| format!(
                "{n} ({} model{})",
                v.len(),
                if v.len() == 1 { "" } else { "s" }
            ))
            .collect::<Vec<_>>()
            .join(", "),
        a.out.display()
    );
    for (name, group) in groups {
        let out = a.out.join(&name);
        ensure_dir(&out)?;
        println!("== {name} ==");
        explain_group(&shared, &name, group, &out)?;
    }
    out_dir.keep();
    Ok(())
}

/// Saved models of one kind, with their folders.
type Group<B> = Vec<(PathBuf, SavedModel<B>)>;

/// What every group of models is explained with.
struct Shared<'a> {
    a: &'a ExplainArgs,
    g: &'a PackedGenotypes,
    file: &'a str,
    trait_: Option<&'a geno::Trait>,
    rows: &'a [usize],
    methods: &'a [Method],
    settings: &'a Settings,
    start: Instant,
}

/// Explains models of one kind (averaged when there are several) into `out`.
fn explain_group<B: Backend>(sh: &Shared, name: &str, group: Group<B>, out: &Path) -> Result<()> {
    let Shared {
        a,
        g,
        file,
        trait_,
        rows,
        methods,
        settings,
        start,
    } = *sh;
    let observed = trait_.map(|t| t.values.as_slice());
    let dirs: Vec<PathBuf> = group.iter().map(|(d, _)| d.clone()).collect();
    let (kind, backend_name, precision) = match &group[0].1 {
        SavedModel::Network(f) => (
            "network",
            f.network.backend.name(),
            Some(f.network.backend.precision().to_string()),
        ),
        _ => ("linear", "none (linear model)".to_string(), None),
    };
    // Every model is explained on the genotype file's markers, matched by ID and allele.
    let mut runs: Vec<(Explanation, Vec<usize>, Vec<bool>)> = Vec::new();
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} [{elapsed} < {eta}]")
            .expect("valid template")
            .progress_chars("=> "),
    );
    for (k, (_, saved)) in group.into_iter().enumerate() {
        let label = format!("model {}/{}", k + 1, dirs.len());
        let mut progress = |what: &str, done: usize, of: usize| {
            bar.set_length(of as u64);
            bar.set_position(done as u64);
            bar.set_message(format!("{label}: {what}"));
        };
        let (ex, markers) = match saved {
            SavedModel::Network(f) => {
                let (map, _) = model::match_markers(&f.markers, g, file)?;
                let ex = NetworkExplainer::new(&f, g, &map)?;
                let out = ex.explain(rows, methods, settings, observed, &mut progress)?;
                (out, map)
            }
            SavedModel::Linear(m) => {
                let (map, _) = model::match_markers(&m.markers, g, file)?;
                let ex = LinearExplainer {
                    model: &m,
                    g,
                    map: &map,
                };
                let out = ex.explain(rows, methods, settings, observed, &mut progress)?;
                (out, map)
            }
            SavedModel::Image(_) => unreachable!("refused above"),
        };
        let cols: Vec<usize> = match &markers.cols {
            Some(c) => c.clone(),
            None => (0..markers.flipped.len()).collect(),
        };
        runs.push((ex, cols, markers.flipped.clone()));
    }
    bar.finish_and_clear();
    if runs.iter().any(|r| r.1 != runs[0].1) {
        bail!("explain averages models on the same markers, but the models given were trained on different markers");
    }
    let (cols, flipped) = (runs[0].1.clone(), runs[0].2.clone());
    for (dir, r) in dirs.iter().zip(&runs) {
        if let Some(a) =
            r.0.get(Method::Saliency)
                .or_else(|| r.0.get(Method::SnpBlup))
        {
            if a.values.iter().all(|&v| v == 0.0) {
                eprintln!(
                    "warning: {}: the prediction does not depend on any marker for these individuals (a constant model: its units may have died in training); its attributions are all 0",
                    dir.display()
                );
            }
        }
    }
    let markers: Vec<Marker> = cols.iter().map(|&j| g.markers()[j].clone()).collect();
    let m = markers.len();

    // The methods every model gave, averaged (each scaled to a mean of 1 first
    // when there are several models), and their agreement between models.
    let present: Vec<Method> = runs[0]
        .0
        .attributions
        .iter()
        .map(|x| x.method)
        .filter(|&k| runs.iter().all(|r| r.0.get(k).is_some()))
        .collect();
    let n_models = runs.len();
    let mut columns: Vec<(Method, Vec<f64>)> = Vec::new();
    let mut stability = Map::new();
    let mut seconds = Map::new();
    for &k in &present {
        let each: Vec<&[f64]> = runs
            .iter()
            .map(|r| r.0.get(k).expect("present").values.as_slice())
            .collect();
        let avg = if n_models == 1 {
            each[0].to_vec()
        } else {
            let mut s = vec![0f64; m];
            for v in &each {
                let scale = v.iter().map(|x| x.abs()).sum::<f64>() / m as f64;
                let scale = if scale > 0.0 { scale } else { 1.0 };
                for (a, &x) in s.iter_mut().zip(*v) {
                    *a += x / scale / n_models as f64;
                }
            }
            s
        };
        // null when no pair of models has a rank correlation (a map all zeros).
        stability.insert(
            k.name().into(),
            json!(explain::recovery::mean_pairwise_spearman(&each)),
        );
        let secs: f64 = runs
            .iter()
            .map(|r| r.0.get(k).expect("present").seconds)
            .sum();
        seconds.insert(k.name().into(), json!(secs));
        columns.push((k, avg));
    }

    // The association scan, on every phenotyped individual of the file.
    let gwas = trait_.as_ref().map(|t| {
        let pb = spinner("association scan");
        let s = explain::gwas::scan(g, &t.values);
        pb.finish_and_clear();
        let per: Vec<explain::gwas::Association> = cols.iter().map(|&j| s[j]).collect();
        per
    });
    let gwas_p: Option<Vec<f64>> = gwas.as_ref().map(|s| s.iter().map(|x| x.log10p).collect());

    // Truth scoring.
    let loci = match &a.truth {
        Some(p) => Some(explain::recovery::read_truth(p, g.markers())?),
        None => None,
    };
    let mut recovery = Map::new();
    let mut scored: Vec<(String, explain::Recovery)> = Vec::new();
    if let Some(loci) = &loci {
        for (k, v) in &columns {
            scored.push((
                k.name().into(),
                explain::recovery::score(v, &markers, loci, a.top, a.window),
            ));
        }
        if let Some(p) = &gwas_p {
            scored.push((
                "gwas".into(),
                explain::recovery::score(p, &markers, loci, a.top, a.window),
            ));
        }
        for (name, r) in &scored {
            recovery.insert(
                name.clone(),
                json!({"hits": r.hits, "loci": r.loci, "recall": r.recall,
                       "precision": r.precision, "auc": r.auc}),
            );
        }
    }

    // markers.csv
    let ranks = |v: &[f64]| -> Vec<usize> {
        let mut r = vec![0; v.len()];
        for (pos, j) in explain::recovery::top_indices(v, v.len())
            .into_iter()
            .enumerate()
        {
            r[j] = pos + 1;
        }
        r
    };
    let col_ranks: Vec<Vec<usize>> = columns.iter().map(|(_, v)| ranks(v)).collect();
    let gwas_ranks = gwas_p.as_ref().map(|p| ranks(p));
    let mut csv = String::from("marker,chromosome,position");
    for (k, _) in &columns {
        write!(csv, ",{}", k.name())?;
    }
    if gwas.is_some() {
        csv.push_str(",gwas_log10p,gwas_beta");
    }
    for (k, _) in &columns {
        write!(csv, ",rank_{}", k.name())?;
    }
    if gwas.is_some() {
        csv.push_str(",rank_gwas");
    }
    csv.push('\n');
    for j in 0..m {
        let mk = &markers[j];
        write!(
            csv,
            "{},{},{}",
            csv_field(&mk.id),
            csv_field(&mk.chromosome),
            mk.position
        )?;
        for (_, v) in &columns {
            write!(csv, ",{}", sig(v[j]))?;
        }
        if let Some(s) = &gwas {
            // The slope per A1 allele of the model's coding.
            let beta = if flipped[j] { -s[j].beta } else { s[j].beta };
            write!(csv, ",{},{}", sig(s[j].log10p), sig(beta))?;
        }
        for r in &col_ranks {
            write!(csv, ",{}", r[j])?;
        }
        if let Some(r) = &gwas_ranks {
            write!(csv, ",{}", r[j])?;
        }
        csv.push('\n');
    }
    geno::write_atomic(out.join("markers.csv"), csv.as_bytes())?;

    // manhattan.png / .svg
    let chroms: Vec<String> = markers.iter().map(|x| x.chromosome.clone()).collect();
    let positions: Vec<i64> = markers.iter().map(|x| x.position).collect();
    let ids: Vec<String> = markers.iter().map(|x| x.id.clone()).collect();
    let mut panels: Vec<eval::plots::ManhattanPanel> = columns
        .iter()
        .map(|(k, v)| eval::plots::ManhattanPanel {
            title: format!("{name} — {}", k.name()),
            y_label: if *k == Method::Permutation {
                "loss in r".into()
            } else {
                "mean |attribution|".into()
            },
            values: v,
        })
        .collect();
    if let Some(p) = &gwas_p {
        panels.push(eval::plots::ManhattanPanel {
            title: format!(
                "single-marker association scan ({})",
                trait_.as_ref().map_or("", |t| t.name.as_str())
            ),
            y_label: "-log10 p".into(),
            values: p,
        });
    }
    let truth_marks: Vec<(String, i64)> = loci
        .iter()
        .flatten()
        .map(|l| (l.chromosome.clone(), l.position))
        .collect();
    eval::plots::manhattan(
        &out.join("manhattan"),
        &panels,
        &eval::plots::ManhattanLayout {
            chromosomes: &chroms,
            positions: &positions,
            ids: &ids,
            truth: &truth_marks,
            label_top: 3,
        },
    )?;

    // summary.json
    let ig_worst = runs
        .iter()
        .filter_map(|r| r.0.ig.as_ref().map(|c| c.worst))
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    let first = &runs[0].0;
    let top_json: Map<String, Value> = columns
        .iter()
        .map(|(k, v)| {
            let top: Vec<Value> = explain::recovery::top_indices(v, 10)
                .into_iter()
                .map(|j| {
                    json!({"marker": markers[j].id, "chromosome": markers[j].chromosome,
                                 "position": markers[j].position, "value": v[j]})
                })
                .collect();
            (k.name().to_string(), Value::Array(top))
        })
        .collect();
    let mut summary = json!({
        "model": name,
        "model_kind": kind,
        "precision": precision,
        "models": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "n_models": n_models,
        "genotypes": file,
        "trait": trait_.as_ref().map(|t| t.name.clone()),
        "n_individuals": rows.len(),
        "n_markers": m,
        "methods": columns.iter().map(|(k, _)| k.name()).collect::<Vec<_>>(),
        "settings": {
            "ig_steps": settings.ig_steps, "ig_tolerance": settings.ig_tolerance,
            "ig_max_steps": settings.ig_max_steps,
            "smoothgrad_samples": settings.smoothgrad_samples,
            "smoothgrad_noise": settings.smoothgrad_noise,
            "perm_window": settings.perm_window, "perm_repeats": settings.perm_repeats,
            "seed": settings.seed, "top": a.top, "window": a.window,
        },
        "ig_completeness_error": ig_worst,
        "seconds": seconds,
        "seconds_total": start.elapsed().as_secs_f64(),
        "top": top_json,
        "backend": backend_name,
    });
    let obj = summary.as_object_mut().expect("an object");
    if let Some(c) = &first.ig {
        obj.insert(
            "integrated_gradients".into(),
            json!({"completeness_error_worst": ig_worst, "completeness_error_median": c.median,
                   "max_steps": runs.iter().filter_map(|r| r.0.ig.as_ref().map(|c| c.max_steps)).max(),
                   "refined_individuals": runs.iter().filter_map(|r| r.0.ig.as_ref().map(|c| c.refined)).sum::<usize>(),
                   "error_floor": c.floor,
                   "near_baseline_individuals": runs.iter().filter_map(|r| r.0.ig.as_ref().map(|c| c.near_baseline)).sum::<usize>(),
                   "baseline": c.baseline}),
        );
    }
    if let Some(l) = &first.gradcam {
        obj.insert(
            "gradcam".into(),
            json!({"layer": l.path, "kind": l.kind, "channels": l.channels,
                   "positions": l.positions, "mapping": l.mapping}),
        );
    }
    if let Some((r, what)) = first.permutation_base {
        obj.insert(
            "permutation".into(),
            json!({"unshuffled_r": r, "against": what}),
        );
    }
    if n_models > 1 {
        obj.insert("stability".into(), Value::Object(stability));
    }
    if !recovery.is_empty() {
        obj.insert("recovery".into(), Value::Object(recovery));
    }
    if let Some(s) = &gwas {
        obj.insert(
            "gwas".into(),
            json!({"n": s.iter().map(|x| x.n).max(),
                   "max_log10p": s.iter().map(|x| x.log10p).fold(0.0, f64::max)}),
        );
    }
    if !first.notes.is_empty() {
        obj.insert("notes".into(), json!(first.notes));
    }
    write_json(&out.join("summary.json"), &summary)?;

    // The terminal: the top markers, then the scores against the truth.
    let lead = &columns[0];
    println!(
        "explained {} ({} model{}) on {} individuals × {} markers; top markers by {}:",
        name,
        n_models,
        if n_models == 1 { "" } else { "s" },
        rows.len(),
        m,
        lead.0.name()
    );
    let shown: Vec<&(Method, Vec<f64>)> = columns.iter().take(4).collect();
    let mut head = format!(
        "  {:>4}  {:<16} {:>5} {:>11}",
        "rank", "marker", "chr", "position"
    );
    for (k, _) in &shown {
        write!(head, " {:>12}", short(k.name()))?;
    }
    if gwas.is_some() {
        write!(head, " {:>11}", "gwas_log10p")?;
    }
    println!("{head}");
    for (pos, j) in explain::recovery::top_indices(&lead.1, 10)
        .into_iter()
        .enumerate()
    {
        let mk = &markers[j];
        let mut line = format!(
            "  {:>4}  {:<16} {:>5} {:>11}",
            pos + 1,
            mk.id,
            mk.chromosome,
            mk.position
        );
        for (_, v) in &shown {
            write!(line, " {:>12.4e}", v[j])?;
        }
        if let Some(p) = &gwas_p {
            write!(line, " {:>11.2}", p[j])?;
        }
        println!("{line}");
    }
    if !scored.is_empty() {
        println!(
            "recovery of {} known loci (top {} markers, window {} bp):",
            scored[0].1.loci, a.top, a.window
        );
        println!(
            "  {:<22} {:>6} {:>7} {:>9} {:>6}",
            "method", "hits", "recall", "precision", "auc"
        );
        for (name, r) in &scored {
            println!(
                "  {:<22} {:>6} {:>7.2} {:>9.2} {:>6}",
                name,
                format!("{}/{}", r.hits, r.loci),
                r.recall,
                r.precision,
                r.auc.map_or("NA".into(), |v| num(Some(v)))
            );
        }
    }
    if let Some(e) = ig_worst {
        println!("integrated gradients: worst completeness error {e:.2e}");
    }
    for n in &first.notes {
        println!("note: {n}");
    }
    println!(
        "wrote {}/{{markers.csv, manhattan.png, manhattan.svg, summary.json}}",
        out.display()
    );
    Ok(())
}

fn short(name: &str) -> &str {
    match name {
        "integrated_gradients" => "int_grad",
        other => other,
    }
}

/// The rows of `all`, or of the IDs listed.
fn choose_individuals(spec: &str, g: &PackedGenotypes) -> Result<Vec<usize>> {
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok((0..g.n_individuals()).collect());
    }
    let mut rows = Vec::new();
    for id in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match g.individuals().iter().position(|i| i.iid == id) {
            Some(r) => rows.push(r),
            None => bail!(
                "--individuals: '{id}' is not an individual of the genotype file (IIDs such as '{}')",
                g.individuals()
                    .iter()
                    .take(3)
                    .map(|i| i.iid.as_str())
                    .collect::<Vec<_>>()
                    .join("', '")
            ),
        }
    }
    if rows.is_empty() {
        bail!("--individuals: expected all or a list of IDs");
    }
    Ok(rows)
}
