//! `genocnn qc`

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use geno::{run_qc, AtomicFile, PhenoTable, QcFilters};
use serde_json::json;

use super::output::{csv_field, ensure_dir, num, push_num, spinner, table, write_json};
use super::{GenoArgs, PhenoArgs};

#[derive(Args, Debug)]
pub struct QcArgs {
    #[command(flatten)]
    pub geno: GenoArgs,
    #[command(flatten)]
    pub pheno: PhenoArgs,
    /// Remove markers with minor allele frequency below X (PLINK --maf).
    #[arg(long, value_name = "X")]
    pub maf: Option<f64>,
    /// Remove markers with a missing-call rate above X (PLINK --geno).
    #[arg(long, value_name = "X")]
    pub geno_missing: Option<f64>,
    /// Remove individuals with a missing-call rate above X (PLINK --mind).
    #[arg(long, value_name = "X")]
    pub mind: Option<f64>,
    /// Output directory.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(a: QcArgs) -> Result<()> {
    let filters = QcFilters {
        maf: a.maf,
        geno_missing: a.geno_missing,
        mind: a.mind,
    };
    filters.validate()?;
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    pb.set_message("computing QC statistics");
    let report = run_qc(&g, &filters)?;
    pb.finish_and_clear();
    // Nothing left is not a result: say which filter emptied it, write nothing.
    if report.kept_individuals.is_empty() || report.kept_markers.is_empty() {
        bail!(
            "{}: the filters remove every {} ({} of {} individuals by --mind, {} of {} markers by --geno-missing and {} by --maf); nothing would be written. Loosen the thresholds",
            a.geno.geno.display(),
            if report.kept_markers.is_empty() { "marker" } else { "individual" },
            report.removed_by_mind,
            g.n_individuals(),
            report.removed_by_geno,
            g.n_markers(),
            report.removed_by_maf
        );
    }
    ensure_dir(&a.out)?;

    let phenotyped = match (&a.pheno.pheno, &a.pheno.trait_) {
        (Some(p), Some(t)) => {
            let table = PhenoTable::read(p)?;
            let tr = table.select(t, g.individuals())?;
            let kept = report
                .kept_individuals
                .iter()
                .filter(|&&i| !tr.values[i].is_nan())
                .count();
            Some((tr, kept))
        }
        _ => None,
    };

    // markers.csv
    let mut f = AtomicFile::create(a.out.join("markers.csv"))?;
    let mut line = String::from("marker,chromosome,position,a1,a2,a1_freq,maf,missing_rate,kept\n");
    for (mk, q) in g.markers().iter().zip(&report.markers) {
        write!(
            line,
            "{},{},{},{},{},",
            csv_field(&mk.id),
            csv_field(&mk.chromosome),
            mk.position,
            csv_field(&mk.a1),
            csv_field(&mk.a2),
        )?;
        for v in [q.a1_freq, q.maf, Some(q.missing_rate)] {
            push_num(&mut line, v);
            line.push(',');
        }
        writeln!(line, "{}", q.kept())?;
        if line.len() > 1 << 16 {
            f.write_all(line.as_bytes())?;
            line.clear();
        }
    }
    f.write_all(line.as_bytes())?;
    f.commit()?;

    // individuals.csv
    let mut f = AtomicFile::create(a.out.join("individuals.csv"))?;
    let mut text = String::from("id,call_rate,kept\n");
    for (ind, q) in g.individuals().iter().zip(&report.individuals) {
        writeln!(
            text,
            "{},{},{}",
            csv_field(&ind.iid),
            num(Some(q.call_rate)),
            q.kept
        )?;
    }
    f.write_all(text.as_bytes())?;
    f.commit()?;

    let wrote_bed = filters.any();
    if wrote_bed {
        geno::write_plink(
            &g,
            &a.out.join("qc.bed"),
            Some(&report.kept_individuals),
            Some(&report.kept_markers),
        )?;
    }

    let monomorphic: Vec<&str> = g
        .markers()
        .iter()
        .zip(&report.markers)
        .filter(|(_, q)| q.monomorphic)
        .map(|(m, _)| m.id.as_str())
        .collect();
    let mut summary = json!({
        "geno": a.geno.geno.display().to_string(),
        "format": a.geno.reader().resolved_format().to_string(),
        "n_individuals": g.n_individuals(),
        "n_markers": g.n_markers(),
        "n_individuals_kept": report.kept_individuals.len(),
        "n_markers_kept": report.kept_markers.len(),
        "mean_maf": report.mean_maf,
        "missing_rate": report.missing_rate,
        "n_monomorphic": report.n_monomorphic,
        "monomorphic_markers": monomorphic.iter().take(100).collect::<Vec<_>>(),
        "filters": { "maf": filters.maf, "geno_missing": filters.geno_missing, "mind": filters.mind },
        "removed": {
            "individuals_by_mind": report.removed_by_mind,
            "markers_by_geno_missing": report.removed_by_geno,
            "markers_by_maf": report.removed_by_maf,
        },
    });
    if let Some((tr, kept)) = &phenotyped {
        summary["trait"] = json!(tr.name);
        summary["n_phenotyped"] = json!(tr.n_phenotyped);
        summary["n_phenotyped_kept"] = json!(kept);
        summary["n_pheno_rows"] = json!(tr.n_rows);
        summary["n_pheno_matched"] = json!(tr.n_matched);
    }
    write_json(&a.out.join("summary.json"), &summary)?;

    let mut rows = vec![
        (
            "genotypes",
            format!(
                "{} ({})",
                a.geno.geno.display(),
                a.geno.reader().resolved_format()
            ),
        ),
        (
            "individuals",
            format!(
                "{} read, {} kept",
                g.n_individuals(),
                report.kept_individuals.len()
            ),
        ),
        (
            "markers",
            format!("{} read, {} kept", g.n_markers(), report.kept_markers.len()),
        ),
        ("mean MAF", format!("{:.4}", report.mean_maf)),
        (
            "missing calls",
            format!("{:.4}%", 100.0 * report.missing_rate),
        ),
        (
            "monomorphic",
            if monomorphic.is_empty() {
                "0".to_string()
            } else {
                format!(
                    "{} ({}{})",
                    monomorphic.len(),
                    monomorphic
                        .iter()
                        .take(5)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if monomorphic.len() > 5 { ", …" } else { "" }
                )
            },
        ),
    ];
    if filters.any() {
        rows.push((
            "removed",
            format!(
                "{} individuals by --mind, {} markers by --geno-missing, {} by --maf",
                report.removed_by_mind, report.removed_by_geno, report.removed_by_maf
            ),
        ));
    }
    if let Some((tr, kept)) = &phenotyped {
        let matched = if tr.n_rows == tr.n_matched {
            String::new()
        } else {
            format!(
                "; {} of {} table rows matched a genotype ID",
                tr.n_matched, tr.n_rows
            )
        };
        rows.push((
            "phenotyped",
            format!(
                "{} ({} after QC) for trait {}{matched}",
                tr.n_phenotyped, kept, tr.name
            ),
        ));
    }
    let mut outputs = format!(
        "{} {} {}",
        a.out.join("summary.json").display(),
        a.out.join("markers.csv").display(),
        a.out.join("individuals.csv").display()
    );
    if wrote_bed {
        outputs.push_str(&format!(" {}", a.out.join("qc.bed").display()));
    }
    rows.push(("wrote", outputs));
    print!("{}", table(&rows));
    Ok(())
}
