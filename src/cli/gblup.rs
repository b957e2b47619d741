//! `genocnn grm` and `genocnn gblup`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use gblup::KernelChoice;
use geno::{PhenoTable, TraitSelector};
use serde_json::json;

use super::output::{csv_field, csv_header, ensure_dir, num, spinner, table, write_json};
use super::{GenoArgs, PhenoArgs};

#[derive(Args, Debug)]
pub struct GrmArgs {
    #[command(flatten)]
    pub geno: GenoArgs,
    /// Output prefix: PREFIX.grm.bin, PREFIX.grm.N.bin, PREFIX.grm.id (GCTA's binary format).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// The memory the GRM may use (500M, 2G, …; default: half of the
    /// machine's). When the n × n matrix (12 n² bytes while summed) and the
    /// genotypes (n m / 4 bytes) exceed it, rows are computed a panel at a
    /// time and written as they are done.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
}

/// Bytes from `500M`, `2G`, `1.5GB`, `64k` or a plain number.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((k, _)) => t.split_at(k),
        None => (t, ""),
    };
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("'{s}': expected a size such as 500M or 2G")),
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok((v * scale) as u64),
        _ => Err(format!("'{s}': expected a size such as 500M or 2G")),
    }
}

/// Half of the machine's memory (MemTotal), or 4 GiB where it cannot be read.
fn default_budget() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(4 << 30, |kb| kb * 1024 / 2)
}

pub fn run_grm(a: GrmArgs) -> Result<()> {
    let start = Instant::now();
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir)?;
    }
    let budget = a.memory_budget.unwrap_or_else(default_budget);
    let n = g.n_individuals();
    let packed = g.packed().len() as u64;
    if packed > budget {
        bail!(
            "the genotypes take {} at 2 bits per call, more than the memory budget of {}; choose individuals or markers with --keep/--extract, or raise --memory-budget",
            human_bytes(packed),
            human_bytes(budget)
        );
    }
    let (n_polymorphic, mean_diagonal, how) = if packed + gblup::grm::in_memory_bytes(n) <= budget {
        pb.set_message("computing the GRM");
        let grm = gblup::vanraden(&g);
        pb.set_message("writing");
        gblup::grm::write_gcta(&a.out, &g, &grm.kinship)?;
        (
            grm.n_polymorphic,
            grm.kinship.mean_diagonal(),
            "in memory".to_string(),
        )
    } else {
        // Panels share what the genotypes leave of the budget, at most
        // 768 MiB: with the decoded block and the genotypes, a 40,000 ×
        // 20,000 GRM peaks near 1.3 GB.
        let panel = ((budget - packed) / 2).clamp(64 << 20, 768 << 20);
        pb.finish_and_clear();
        let bar = indicatif::ProgressBar::new(n as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "GRM rows [{bar:30}] {pos}/{len} [{elapsed} < {eta}]",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        let s = gblup::grm::write_gcta_streamed(&a.out, &g, panel, &mut |done| {
            bar.set_position(done as u64)
        })?;
        bar.finish_and_clear();
        (
            s.n_polymorphic,
            s.mean_diagonal,
            format!(
                "by {} row panels (the n × n matrix, {}, exceeds the budget of {})",
                s.panels,
                human_bytes(gblup::grm::in_memory_bytes(n)),
                human_bytes(budget)
            ),
        )
    };
    pb.finish_and_clear();
    print!(
        "{}",
        table(&[
            ("individuals", g.n_individuals().to_string()),
            (
                "markers",
                format!("{} ({} polymorphic)", g.n_markers(), n_polymorphic)
            ),
            ("mean diagonal", format!("{mean_diagonal:.4}")),
            ("computed", how),
            ("time", format!("{:.2} s", start.elapsed().as_secs_f64())),
            (
                "wrote",
                format!("{}.grm.bin .grm.N.bin .grm.id", a.out.display())
            ),
        ])
    );
    Ok(())
}

/// Writes `predictions.csv` (every individual: id, set, GEBV, observed) and
/// returns the test individuals with an observed value and their r.
fn write_predictions(
    out: &std::path::Path,
    g: &geno::PackedGenotypes,
    tr: &geno::Trait,
    test: Option<&geno::Trait>,
    train: &[usize],
    gebv: &[f64],
) -> Result<(Vec<usize>, Option<f64>)> {
    let in_train: std::collections::HashSet<usize> = train.iter().copied().collect();
    let mut test_rows = Vec::new();
    let mut text = String::from("id,set,gebv,observed\n");
    for (i, ind) in g.individuals().iter().enumerate() {
        let (set, obs) = if in_train.contains(&i) {
            ("train", Some(tr.values[i]))
        } else {
            let o = test.map(|t| t.values[i]).filter(|v| !v.is_nan());
            if o.is_some() {
                test_rows.push(i);
            }
            ("test", o)
        };
        writeln!(
            text,
            "{},{set},{},{}",
            csv_field(&ind.iid),
            num(Some(gebv[i])),
            num(obs)
        )?;
    }
    geno::write_atomic(out.join("predictions.csv"), text.as_bytes())?;
    let test_r = test.map(|t| {
        let p: Vec<f64> = test_rows.iter().map(|&i| gebv[i]).collect();
        let o: Vec<f64> = test_rows.iter().map(|&i| t.values[i]).collect();
        eval::metrics::pearson(&p, &o)
    });
    Ok((test_rows, test_r))
}

/// `gblup --solver pcg`: h2 given or by Haseman–Elston regression, then the
/// mixed-model equations by PCG over the packed genotypes.
fn run_pcg(
    a: &GblupArgs,
    g: &geno::PackedGenotypes,
    tr: &geno::Trait,
    test: Option<&geno::Trait>,
    start: Instant,
    read_s: f64,
) -> Result<()> {
    let pb = spinner("estimating h2 (Haseman–Elston regression)");
    let t0 = Instant::now();
    let z = gblup::pcg::Genotypes::new(g);
    let (h2, source) = match a.h2 {
        Some(h) => {
            if !(h > 0.0 && h < 1.0) {
                bail!("--h2 {h}: expected a heritability strictly between 0 and 1");
            }
            (h, "given (--h2)".to_string())
        }
        None => {
            let he = gblup::pcg::he_regression(&z, &tr.values, 30, 1)?;
            let h = he.clamp(0.01, 0.99);
            let note = if h != he {
                format!(" (the estimate {he:.4} clamped)")
            } else {
                String::new()
            };
            let n_records = tr.values.iter().filter(|v| !v.is_nan()).count();
            let mc = match a.h2_method {
                H2Method::McReml => true,
                H2Method::He => false,
                H2Method::Auto => n_records <= 20_000,
            };
            if mc {
                pb.set_message(format!("Monte-Carlo REML from h2 = {h:.3}"));
                let r = gblup::pcg::mc_reml(&z, &tr.values, h, 25, 1)?;
                (
                    r.h2,
                    format!(
                        "Monte-Carlo REML, 25 samples, {} evaluations from the Haseman–Elston {h:.4}",
                        r.history.len()
                    ),
                )
            } else {
                (
                    h,
                    format!("Haseman–Elston regression, 30 random probes{note}"),
                )
            }
        }
    };
    let he_s = t0.elapsed().as_secs_f64();
    pb.set_message(format!("PCG at h2 = {h2:.4}"));
    let t1 = Instant::now();
    let fit = gblup::pcg::fit_with(&z, &tr.values, h2, gblup::pcg::PcgOptions::default())?;
    let pcg_s = t1.elapsed().as_secs_f64();
    pb.finish_and_clear();
    ensure_dir(&a.out)?;
    let (test_rows, test_r) = write_predictions(&a.out, g, tr, test, &fit.train, &fit.gebv)?;
    let lm = model::LinearModel {
        markers: g.markers().to_vec(),
        center: fit.centers.clone(),
        effects: fit.snp_effects.clone(),
        intercept: fit.mean,
        trait_name: tr.name.clone(),
        n_train: fit.train.len(),
    };
    model::save_linear(&lm, &a.out)?;
    let total_s = start.elapsed().as_secs_f64();
    let finite = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "kernel": "vanraden",
            "solver": "pcg",
            "trait": tr.name,
            "h2": fit.h2,
            "h2_source": source,
            "var_g": fit.var_g,
            "var_e": fit.var_e,
            "beta": [fit.mean],
            "pcg_iterations": fit.iterations,
            "pcg_relative_residual": fit.residual,
            "n_train": fit.train.len(),
            "n_test": test_rows.len(),
            "test_r": test_r.map(finite),
            "n_markers": g.n_markers(),
            "seconds": { "read": read_s, "h2": he_s, "pcg_blup": pcg_s, "total": total_s },
        }),
    )?;
    let mut rows = vec![
        (
            "kernel",
            "VanRaden GRM, never formed (PCG over the genotypes)".to_string(),
        ),
        (
            "individuals",
            format!(
                "{} for training of {} genotyped",
                fit.train.len(),
                g.n_individuals()
            ),
        ),
        ("markers", g.n_markers().to_string()),
        ("h2", format!("{:.4}, {source}", fit.h2)),
        (
            "var_g, var_e",
            format!("{:.5}, {:.5}", fit.var_g, fit.var_e),
        ),
        (
            "PCG",
            format!(
                "{} iterations, relative residual {:.1e}",
                fit.iterations, fit.residual
            ),
        ),
    ];
    if let Some(r) = test_r {
        rows.push((
            "test_r",
            format!("{r:.4} on {} individuals", test_rows.len()),
        ));
    }
    rows.push((
        "time",
        format!("{total_s:.2} s (read {read_s:.2}, h2 {he_s:.2}, PCG + BLUP {pcg_s:.2})"),
    ));
    rows.push(("wrote", format!("{}", a.out.display())));
    print!("{}", table(&rows));
    Ok(())
}

/// `1.5 GiB`, `300 MiB`.
fn human_bytes(b: u64) -> String {
    let g = b as f64 / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KernelArg {
    Vanraden,
    Rkhs,
}

#[derive(Args, Debug)]
pub struct GblupArgs {
    #[command(flatten)]
    pub geno: GenoArgs,
    #[command(flatten)]
    pub pheno: PhenoArgs,
    /// A second trait holding the observed values of the individuals missing --trait: reports test_r.
    #[arg(long, value_name = "NAME|N")]
    pub test_trait: Option<TraitSelector>,
    /// The kernel: VanRaden's GRM (GBLUP) or a Gaussian kernel (RKHS).
    #[arg(long, value_enum, default_value = "vanraden")]
    pub kernel: KernelArg,
    /// Covariates (fixed effects besides the intercept): a table with an ID column, or headerless in genotype order.
    #[arg(long, value_name = "FILE", requires = "covar_names")]
    pub covar: Option<PathBuf>,
    /// The covariate columns, comma-separated.
    #[arg(long, value_name = "A,B", value_delimiter = ',', requires = "covar")]
    pub covar_names: Vec<TraitSelector>,
    /// The solver: exact (spectral REML and a direct BLUP, memory of n × n),
    /// pcg (conjugate gradients over the genotypes, never forming G), or auto
    /// (pcg when the n × n matrices would exceed --memory-budget).
    #[arg(long, value_enum, default_value = "auto")]
    pub solver: SolverArg,
    /// The heritability the PCG solver uses; estimated (see --h2-method)
    /// when absent.
    #[arg(long, value_name = "H2")]
    pub h2: Option<f64>,
    /// How the PCG solver estimates h2: mc-reml (Monte-Carlo REML, as
    /// BOLT-REML), he (Haseman–Elston regression, one pass), or auto
    /// (mc-reml up to 20,000 individuals with the trait, he beyond).
    #[arg(long, value_enum, default_value = "auto")]
    pub h2_method: H2Method,
    /// The memory the exact solver may use (500M, 2G, …; default: half of
    /// the machine's); `--solver auto` turns to PCG beyond it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub memory_budget: Option<u64>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum H2Method {
    Auto,
    McReml,
    He,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SolverArg {
    Auto,
    Exact,
    Pcg,
}

/// Bytes the exact solver holds at its peak for n individuals, beyond the
/// genotypes: 12 n² while the GRM is summed (f64 sums and int32 products,
/// with missing calls; 8 n² without), then 4 n² for the f32 GRM and 8 n²
/// for the one f64 training-kernel matrix that REML and the BLUP share.
/// RKHS adds the f32 distances and one f32 kernel per θ. (Measured at
/// 10,000 × 50,000 with VanRaden: 1.24 GB peak RSS, against 1.33 GB for
/// this bound with the genotypes.)
fn exact_bytes(n: usize, kernel: &KernelArg) -> u64 {
    let n2 = (n as u64) * (n as u64);
    match kernel {
        KernelArg::Vanraden => 12 * n2,
        KernelArg::Rkhs => {
            let thetas = match KernelChoice::rkhs() {
                KernelChoice::Rkhs { thetas } => thetas.len() as u64,
                KernelChoice::VanRaden => 0,
            };
            (4 * (2 + thetas) + 8) * n2
        }
    }
}

pub fn run_gblup(a: GblupArgs) -> Result<()> {
    let start = Instant::now();
    let (Some(pheno), Some(trait_sel)) = (&a.pheno.pheno, &a.pheno.trait_) else {
        bail!("gblup needs --pheno and --trait");
    };
    if trait_sel.list().len() > 1 {
        return run_multi(&a, pheno, trait_sel, start);
    }
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    let table_p = PhenoTable::read(pheno)?;
    let tr = table_p.select(trait_sel, g.individuals())?;
    let test = match &a.test_trait {
        Some(t) => Some(table_p.select(t, g.individuals())?),
        None => None,
    };
    let mut covs = Vec::new();
    if let Some(path) = &a.covar {
        let ct = PhenoTable::read(path)?;
        for name in &a.covar_names {
            covs.push(ct.select_as(name, g.individuals(), "covariate")?.values);
        }
    }
    let read_s = start.elapsed().as_secs_f64();
    let budget = a.memory_budget.unwrap_or_else(default_budget);
    let pcg = match a.solver {
        SolverArg::Exact => false,
        SolverArg::Pcg => true,
        SolverArg::Auto => {
            g.packed().len() as u64 + exact_bytes(g.n_individuals(), &a.kernel) > budget
        }
    };
    if pcg {
        if !matches!(a.kernel, KernelArg::Vanraden) || a.covar.is_some() {
            bail!("the PCG solver fits VanRaden GBLUP with an intercept only; drop --kernel rkhs and --covar, or give --solver exact");
        }
        pb.finish_and_clear();
        if a.solver == SolverArg::Auto {
            eprintln!(
                "note: {} individuals: the exact solver's n × n matrices ({}) exceed the memory budget ({}); solving by PCG (--solver exact to insist)",
                g.n_individuals(),
                human_bytes(exact_bytes(g.n_individuals(), &a.kernel)),
                human_bytes(budget)
            );
        }
        return run_pcg(&a, &g, &tr, test.as_ref(), start, read_s);
    } else if a.h2.is_some() {
        bail!("--h2 is for --solver pcg; the exact solver estimates h2 by REML");
    }
    pb.set_message("computing the GRM");
    let t0 = Instant::now();
    let grm = gblup::vanraden(&g);
    let grm_s = t0.elapsed().as_secs_f64();
    pb.set_message("REML and BLUP");
    let t1 = Instant::now();
    let kernel = match a.kernel {
        KernelArg::Vanraden => KernelChoice::VanRaden,
        KernelArg::Rkhs => KernelChoice::rkhs(),
    };
    let train: Vec<usize> = (0..g.n_individuals()).collect();
    let fit = match gblup::fit(&g, &grm, &tr.values, &covs, &train, &kernel) {
        Err(gblup::GblupError::ConstantTrait { value, n }) => bail!(
            "{}: trait {} is constant (all {n} records are {value}); there is no variance to estimate or predict",
            pheno.display(),
            tr.name
        ),
        Err(gblup::GblupError::ConstantCovariate { index, value, n }) => bail!(
            "{}: covariate {} is constant ({value}) on the {n} individuals with the trait, so it duplicates the intercept; drop it",
            a.covar.as_ref().map_or(String::new(), |p| p.display().to_string()),
            a.covar_names[index - 1]
        ),
        other => other?,
    };
    let fit_s = t1.elapsed().as_secs_f64();
    pb.finish_and_clear();
    // The folder appears only once the inputs are read and the fit is done.
    ensure_dir(&a.out)?;

    let (test_rows, test_r) =
        write_predictions(&a.out, &g, &tr, test.as_ref(), &fit.train, &fit.gebv)?;
    if let Some(eff) = &fit.snp_effects {
        let lm = model::LinearModel {
            markers: g.markers().to_vec(),
            center: fit.centers.clone(),
            effects: eff.clone(),
            intercept: fit.reml.beta[0],
            trait_name: tr.name.clone(),
            n_train: fit.train.len(),
        };
        model::save_linear(&lm, &a.out)?;
    }
    let r = &fit.reml;
    let total_s = start.elapsed().as_secs_f64();
    let finite = |v: f64| if v.is_finite() { json!(v) } else { json!(null) };
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "kernel": format!("{:?}", a.kernel).to_lowercase(),
            "solver": "exact",
            "theta": fit.theta,
            "trait": tr.name,
            "h2": r.h2,
            "h2_se": finite(r.h2_se),
            "var_g": r.var_g,
            "var_e": r.var_e,
            "delta": r.delta,
            "loglik": r.loglik,
            "beta": r.beta,
            "n_train": fit.train.len(),
            "n_test": test_rows.len(),
            "test_r": test_r.map(finite),
            "n_markers": g.n_markers(),
            "n_monomorphic": g.n_markers() - grm.n_polymorphic,
            "grm_mean_diagonal": grm.kinship.mean_diagonal(),
            "seconds": { "read": read_s, "grm": grm_s, "reml_blup": fit_s, "total": total_s },
        }),
    )?;
    let mut rows = vec![
        (
            "kernel",
            match fit.theta {
                Some(t) => format!("RKHS, Gaussian, θ = {t} (by REML likelihood)"),
                None => "VanRaden GRM".to_string(),
            },
        ),
        (
            "individuals",
            format!(
                "{} for training of {} genotyped",
                fit.train.len(),
                g.n_individuals()
            ),
        ),
        (
            "markers",
            format!(
                "{} ({} monomorphic or uncalled, which add nothing)",
                g.n_markers(),
                g.n_markers() - grm.n_polymorphic
            ),
        ),
        ("h2", format!("{:.4} ± {:.4}", r.h2, r.h2_se)),
        ("var_g, var_e", format!("{:.5}, {:.5}", r.var_g, r.var_e)),
        ("REML loglik", format!("{:.3}", r.loglik)),
    ];
    if let Some(tr2) = test_r {
        rows.push((
            "test_r",
            format!("{tr2:.4} on {} individuals", test_rows.len()),
        ));
    }
    rows.push((
        "time",
        format!("{total_s:.2} s (read {read_s:.2}, GRM {grm_s:.2}, REML+BLUP {fit_s:.2})"),
    ));
    rows.push(("wrote", format!("{}", a.out.display())));
    print!("{}", table(&rows));
    Ok(())
}

/// A d × d row-major matrix as nested arrays.
fn nested(v: &[f64], d: usize) -> serde_json::Value {
    json!(v.chunks(d).collect::<Vec<_>>())
}

/// `gblup --trait a,b,…`: multi-trait GBLUP.
fn run_multi(
    a: &GblupArgs,
    pheno: &std::path::Path,
    trait_sel: &TraitSelector,
    start: Instant,
) -> Result<()> {
    if a.covar.is_some() || a.test_trait.is_some() || !matches!(a.kernel, KernelArg::Vanraden) {
        bail!("gblup with several traits takes neither --covar, --test-trait nor --kernel rkhs");
    }
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    let table_p = PhenoTable::read(pheno)?;
    let (traits, _) = super::train::select_traits(&table_p, trait_sel, None, g.individuals())?;
    pb.set_message("computing the GRM");
    let t0 = Instant::now();
    let grm = gblup::vanraden(&g);
    let grm_s = t0.elapsed().as_secs_f64();
    pb.set_message("multi-trait REML and BLUP");
    let t1 = Instant::now();
    let y: Vec<Vec<f64>> = traits.iter().map(|t| t.values.clone()).collect();
    let train: Vec<usize> = (0..g.n_individuals())
        .filter(|&i| y.iter().any(|t| !t[i].is_nan()))
        .collect();
    let fit = gblup::fit_multi(&grm, &y, &train)?;
    let fit_s = t1.elapsed().as_secs_f64();
    pb.finish_and_clear();
    ensure_dir(&a.out)?;
    let d = traits.len();
    let names: Vec<&str> = traits.iter().map(|t| t.name.as_str()).collect();
    let pred = fit.predictions();
    let mut text = csv_header("id,set", &names);
    for (i, ind) in g.individuals().iter().enumerate() {
        let set = if y.iter().any(|t| !t[i].is_nan()) {
            "train"
        } else {
            "test"
        };
        write!(text, "{},{set}", csv_field(&ind.iid))?;
        for p in &pred {
            write!(text, ",{}", num(Some(p[i])))?;
        }
        text.push('\n');
    }
    geno::write_atomic(a.out.join("predictions.csv"), text.as_bytes())?;
    let mv = &fit.mv;
    let h2 = mv.h2();
    let total_s = start.elapsed().as_secs_f64();
    write_json(
        &a.out.join("summary.json"),
        &json!({
            "kernel": "vanraden",
            "traits": names,
            "vg": nested(&mv.vg, d),
            "ve": nested(&mv.ve, d),
            "rg": nested(&mv.rg(), d),
            "re": nested(&mv.re(), d),
            "h2": h2,
            "intercepts": mv.beta,
            "loglik": mv.loglik,
            "n_complete": fit.complete.len(),
            "n_with_records": fit.rows.len(),
            "reml_records": fit.reml_records,
            "n_records": y.iter().map(|t| t.iter().filter(|v| !v.is_nan()).count()).collect::<Vec<_>>(),
            "reml_iterations": mv.iterations,
            "blup_cg_iterations": fit.cg_iterations,
            "univariate": fit.univariate.iter().zip(&names).map(|(u, n)| json!({
                "trait": n, "h2": u.h2, "var_g": u.var_g, "var_e": u.var_e, "n": u.n,
            })).collect::<Vec<_>>(),
            "missing_records": if fit.reml_records == "all" {
                "Vg and Ve by REML over every observed record (the dense covariance of the observed records where some are missing); the BLUP of every individual uses all the records"
            } else {
                "Vg and Ve by REML over the individuals with every trait recorded (too many records for the dense likelihood); the BLUP of every individual uses all the records"
            },
            "seconds": { "grm": grm_s, "reml_blup": fit_s, "total": total_s },
        }),
    )?;
    let fmt_m = |v: &[f64]| {
        v.chunks(d)
            .map(|r| {
                r.iter()
                    .map(|x| format!("{x:.5}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let rows = vec![
        ("traits", names.join(", ")),
        (
            "individuals",
            format!(
                "{} with every trait, {} with any, of {} genotyped; REML over {}",
                fit.complete.len(),
                train.len(),
                g.n_individuals(),
                if fit.reml_records == "all" {
                    "every record"
                } else {
                    "the complete individuals"
                }
            ),
        ),
        ("Vg", fmt_m(&mv.vg)),
        ("Ve", fmt_m(&mv.ve)),
        ("rg", fmt_m(&mv.rg())),
        (
            "h2",
            format!(
                "{} (univariate {})",
                h2.iter()
                    .map(|h| format!("{h:.4}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                fit.univariate
                    .iter()
                    .map(|u| format!("{:.4}", u.h2))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        (
            "REML loglik",
            format!("{:.3} ({} BFGS iterations)", mv.loglik, mv.iterations),
        ),
        (
            "time",
            format!("{total_s:.2} s (GRM {grm_s:.2}, REML+BLUP {fit_s:.2})"),
        ),
        ("wrote", format!("{}", a.out.display())),
    ];
    print!("{}", table(&rows));
    Ok(())
}
