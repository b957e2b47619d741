//! `genocnn qc`

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use geno::{run_qc, AtomicFile, PhenoTable, QcFilters};
use rayon::prelude::*;
use serde_json::json;

use super::output::{
    csv_field, num, push_csv_field, push_i64, push_num, spinner, table, write_json, OutDir,
};
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

/// What `qc` found, from either the streamed or the in-memory pass.
struct Outcome {
    individuals: Vec<geno::Individual>,
    n_markers: usize,
    /// markers.csv: whole, or already written by the streamed pass.
    markers_csv: MarkersCsv,
    ind_qc: Vec<geno::IndividualQc>,
    kept_individuals: Vec<usize>,
    n_kept_markers: usize,
    removed_by_mind: usize,
    removed_by_geno: usize,
    removed_by_maf: usize,
    mean_maf: f64,
    missing_rate: f64,
    n_monomorphic: usize,
    /// The first 100 monomorphic markers.
    monomorphic: Vec<String>,
    /// With a filter on: the markers kept (all individuals), to write.
    kept: Option<geno::PackedGenotypes>,
}

enum MarkersCsv {
    Text(String),
    /// Written as the blocks were counted; committed once all is well.
    Written(AtomicFile),
}

const MARKERS_HEADER: &str = "marker,chromosome,position,a1,a2,a1_freq,maf,missing_rate,kept\n";

/// One markers.csv line.
fn marker_line(line: &mut String, mk: &geno::Marker, q: &geno::MarkerQc) {
    push_csv_field(line, &mk.id);
    line.push(',');
    push_csv_field(line, &mk.chromosome);
    line.push(',');
    push_i64(line, mk.position);
    line.push(',');
    push_csv_field(line, &mk.a1);
    line.push(',');
    push_csv_field(line, &mk.a2);
    line.push(',');
    for v in [q.a1_freq, q.maf, Some(q.missing_rate)] {
        push_num(line, v);
        line.push(',');
    }
    line.push_str(if q.kept() { "true\n" } else { "false\n" });
}

/// The whole fileset in memory: any format, and the errors of its reader.
fn in_memory(a: &QcArgs, filters: &QcFilters, pb: &indicatif::ProgressBar) -> Result<Outcome> {
    let g = a.geno.load()?;
    pb.set_message("computing QC statistics");
    let report = run_qc(&g, filters)?;
    let mut markers_csv = String::from(MARKERS_HEADER);
    for (mk, q) in g.markers().iter().zip(&report.markers) {
        marker_line(&mut markers_csv, mk, q);
    }
    let monomorphic = g
        .markers()
        .iter()
        .zip(&report.markers)
        .filter(|(_, q)| q.monomorphic)
        .take(100)
        .map(|(m, _)| m.id.clone())
        .collect();
    let kept = filters.any().then(|| {
        g.subset(
            &(0..g.n_individuals()).collect::<Vec<_>>(),
            &report.kept_markers,
        )
    });
    Ok(Outcome {
        individuals: g.individuals().to_vec(),
        n_markers: g.n_markers(),
        markers_csv: MarkersCsv::Text(markers_csv),
        ind_qc: report.individuals,
        kept_individuals: report.kept_individuals,
        n_kept_markers: report.kept_markers.len(),
        removed_by_mind: report.removed_by_mind,
        removed_by_geno: report.removed_by_geno,
        removed_by_maf: report.removed_by_maf,
        mean_maf: report.mean_maf,
        missing_rate: report.missing_rate,
        n_monomorphic: report.n_monomorphic,
        monomorphic,
        kept,
    })
}

/// Markers per block of the streamed pass.
const BLOCK: usize = 1 << 14;

/// A PLINK fileset a block of markers at a time ([`geno::PlinkBlocks`]):
/// the same figures as [`in_memory`] without holding the `.bed` or the
/// `.bim` (a second pass when `--mind` needs every individual's missing
/// calls first). `None` when the input is not a plain PLINK fileset, or
/// the streamed reader finds a fault: the in-memory reader then runs, and
/// gives its precise error. markers.csv is written as the blocks are
/// counted, on a thread of its own; an error writing it is an error.
fn streamed(a: &QcArgs, filters: &QcFilters) -> Result<Option<Outcome>> {
    // GENOCNN_QC_IN_MEMORY=1: the in-memory pass for any input (a test
    // hook: the tests compare the two passes' files byte for byte).
    if a.geno.reader().resolved_format() != geno::GenoFormat::Plink
        || a.geno.coding != super::Coding::Additive
        || a.geno.keep.is_some()
        || a.geno.extract.is_some()
        || std::env::var_os("GENOCNN_QC_IN_MEMORY").is_some()
    {
        return Ok(None);
    }
    // A thread of its own reads the next block (the .bim's parsing and
    // the .bed's bytes) while the current one is counted and formatted;
    // counted blocks go back to it for their memory.
    let pass = |each: &mut dyn FnMut(&geno::PackedGenotypes)| -> Option<Vec<geno::Individual>> {
        let mut blocks = geno::PlinkBlocks::open(&a.geno.geno).ok()?;
        let individuals = blocks.individuals().to_vec();
        std::thread::scope(|s| {
            let (ahead, blocks_in) = std::sync::mpsc::sync_channel(1);
            let (done, returned) = std::sync::mpsc::channel();
            let reader = s.spawn(move || -> bool {
                let mut first = true;
                loop {
                    while let Ok(g) = returned.try_recv() {
                        blocks.recycle(g);
                    }
                    // A short first block: the counting starts sooner.
                    let size = if first { BLOCK / 16 } else { BLOCK };
                    first = false;
                    match blocks.next_block(size) {
                        Ok(Some(g)) => {
                            if ahead.send(g).is_err() {
                                return false;
                            }
                        }
                        Ok(None) => return true,
                        Err(_) => return false,
                    }
                }
            });
            for g in blocks_in {
                each(&g);
                // The reader may have finished: then the block is dropped.
                let _ = done.send(g);
            }
            reader.join().unwrap_or(false)
        })
        .then_some(individuals)
    };
    let mut miss: Vec<u32> = Vec::new();
    let mut m = 0;
    // Adds a block's missing calls per individual to the totals.
    let add_missing = |miss: &mut Vec<u32>, k: Vec<u32>| {
        if miss.is_empty() {
            *miss = k;
        } else {
            miss.iter_mut().zip(k).for_each(|(a, b)| *a += b);
        }
    };
    if filters.mind.is_some()
        && pass(&mut |g| {
            add_missing(&mut miss, g.missing_per_individual(0..g.n_markers()));
            m += g.n_markers();
        })
        .is_none()
    {
        return Ok(None);
    }
    let mut ind_qc: Vec<geno::IndividualQc> = Vec::new();
    let mut kept_individuals: Vec<usize> = Vec::new();
    let mut markers_file = AtomicFile::create(a.out.join("markers.csv"))?;
    markers_file.write_all(MARKERS_HEADER.as_bytes())?;
    let (to_writer, texts) = std::sync::mpsc::sync_channel::<String>(4);
    let (mut n_markers, mut n_kept, mut removed_geno, mut removed_maf) = (0, 0, 0, 0);
    let (mut maf_sum, mut maf_count, mut n_mono) = (0f64, 0usize, 0usize);
    let mut monomorphic = Vec::new();
    let (mut any_two, mut any_one) = (false, false);
    let mut kept_markers: Vec<geno::Marker> = Vec::new();
    let mut kept_data: Vec<u8> = Vec::new();
    let (individuals, written) = std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<AtomicFile> {
            for text in texts {
                markers_file.write_all(text.as_bytes())?;
            }
            Ok(markers_file)
        });
        let individuals = pass(&mut |g| {
            let n = g.n_individuals();
            if ind_qc.is_empty() && filters.mind.is_some() {
                ind_qc = geno::individual_qc(&miss, m, filters);
                kept_individuals = (0..n).filter(|&i| ind_qc[i].kept).collect();
            }
            let all_kept = filters.mind.is_none() || kept_individuals.len() == n;
            // The markers' counts and lines on every core, in chunks whose
            // lines are joined in order; each individual's missing calls beside.
            let kept_ref = &kept_individuals;
            let per_chunk = |js: std::ops::Range<usize>| {
                let mut text = String::with_capacity(64 * js.len());
                let mut out = Vec::with_capacity(js.len());
                for j in js {
                    let all = g.counts(j);
                    let c = if all_kept {
                        all
                    } else {
                        g.counts_among(j, kept_ref)
                    };
                    let q = geno::marker_qc(&c, filters);
                    marker_line(&mut text, &g.markers()[j], &q);
                    out.push((all, q));
                }
                (out, text)
            };
            let mb = g.n_markers();
            let chunk = mb.div_ceil(16).max(1);
            let (chunks, block_miss) = rayon::join(
                || {
                    (0..mb.div_ceil(chunk))
                        .into_par_iter()
                        .map(|k| per_chunk(k * chunk..((k + 1) * chunk).min(mb)))
                        .collect::<Vec<_>>()
                },
                || {
                    filters
                        .mind
                        .is_none()
                        .then(|| g.missing_per_individual(0..mb))
                },
            );
            if let Some(k) = block_miss {
                add_missing(&mut miss, k);
            }
            let mut j = 0;
            for (stats, text) in chunks {
                // A writer gone has failed: its error is reported after the pass.
                let _ = to_writer.send(text);
                for (all, q) in stats {
                    let mk = &g.markers()[j];
                    any_two |= all.hom_a1 > 0;
                    any_one |= all.het > 0;
                    if let Some(v) = q.maf {
                        maf_sum += v;
                        maf_count += 1;
                    }
                    if q.monomorphic {
                        n_mono += 1;
                        if monomorphic.len() < 100 {
                            monomorphic.push(mk.id.clone());
                        }
                    }
                    match q.removed_by {
                        Some(geno::qc::MarkerFilter::GenoMissing) => removed_geno += 1,
                        Some(geno::qc::MarkerFilter::Maf) => removed_maf += 1,
                        None => {
                            n_kept += 1;
                            if filters.any() {
                                kept_markers.push(mk.clone());
                                kept_data.extend_from_slice(g.snp(j));
                            }
                        }
                    }
                    j += 1;
                }
            }
            n_markers += g.n_markers();
        });
        drop(to_writer);
        (
            individuals,
            writer.join().expect("the markers.csv writer panicked"),
        )
    });
    let markers_file = written?;
    let Some(individuals) = individuals else {
        return Ok(None);
    };
    let n = individuals.len();
    if filters.mind.is_none() {
        ind_qc = geno::individual_qc(&miss, n_markers, filters);
        kept_individuals = (0..n).collect();
    }
    if !any_two && any_one {
        eprintln!(
            "note: {}: every call is 0 or 1; they are read as dosages 0 and 1 (1 = a heterozygote). If these are inbred lines coded 0/1 (the two homozygotes), give --coding inbred",
            a.geno.geno.display()
        );
    }
    let total_missing: u64 = miss.iter().map(|&k| k as u64).sum();
    let kept = filters
        .any()
        .then(|| geno::PackedGenotypes::from_packed(individuals.clone(), kept_markers, kept_data));
    Ok(Some(Outcome {
        n_markers,
        markers_csv: MarkersCsv::Written(markers_file),
        removed_by_mind: n - kept_individuals.len(),
        ind_qc,
        kept_individuals,
        n_kept_markers: n_kept,
        removed_by_geno: removed_geno,
        removed_by_maf: removed_maf,
        mean_maf: if maf_count == 0 {
            0.0
        } else {
            maf_sum / maf_count as f64
        },
        missing_rate: if n * n_markers == 0 {
            0.0
        } else {
            total_missing as f64 / (n as f64 * n_markers as f64)
        },
        n_monomorphic: n_mono,
        monomorphic,
        kept,
        individuals,
    }))
}

pub fn run(a: QcArgs) -> Result<()> {
    let filters = QcFilters {
        maf: a.maf,
        geno_missing: a.geno_missing,
        mind: a.mind,
    };
    filters.validate()?;
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    // A folder made here goes again if the run fails (the streamed pass
    // writes markers.csv as it goes).
    let out_dir = OutDir::create(&a.out)?;
    let o = match streamed(&a, &filters)? {
        Some(o) => o,
        None => in_memory(&a, &filters, &pb)?,
    };
    pb.finish_and_clear();
    // Nothing left is not a result: say which filter emptied it, write nothing.
    if o.kept_individuals.is_empty() || o.n_kept_markers == 0 {
        bail!(
            "{}: the filters remove every {} ({} of {} individuals by --mind, {} of {} markers by --geno-missing and {} by --maf); nothing would be written. Loosen the thresholds",
            a.geno.geno.display(),
            if o.n_kept_markers == 0 { "marker" } else { "individual" },
            o.removed_by_mind,
            o.individuals.len(),
            o.removed_by_geno,
            o.n_markers,
            o.removed_by_maf
        );
    }

    let phenotyped = match (&a.pheno.pheno, &a.pheno.trait_) {
        (Some(p), Some(t)) => {
            let table = PhenoTable::read(p)?;
            let tr = table.select(t, &o.individuals)?;
            let kept = o
                .kept_individuals
                .iter()
                .filter(|&&i| !tr.values[i].is_nan())
                .count();
            Some((tr, kept))
        }
        _ => None,
    };

    match o.markers_csv {
        MarkersCsv::Text(text) => geno::write_atomic(a.out.join("markers.csv"), text.as_bytes())?,
        MarkersCsv::Written(f) => f.commit()?,
    }

    // individuals.csv
    let mut f = AtomicFile::create(a.out.join("individuals.csv"))?;
    let mut text = String::from("id,call_rate,kept\n");
    for (ind, q) in o.individuals.iter().zip(&o.ind_qc) {
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
    if let Some(kept) = &o.kept {
        geno::write_plink(kept, &a.out.join("qc.bed"), Some(&o.kept_individuals), None)?;
    }
    let monomorphic = &o.monomorphic;
    let mut summary = json!({
        "geno": a.geno.geno.display().to_string(),
        "format": a.geno.reader().resolved_format().to_string(),
        "n_individuals": o.individuals.len(),
        "n_markers": o.n_markers,
        "n_individuals_kept": o.kept_individuals.len(),
        "n_markers_kept": o.n_kept_markers,
        "mean_maf": o.mean_maf,
        "missing_rate": o.missing_rate,
        "n_monomorphic": o.n_monomorphic,
        "monomorphic_markers": monomorphic,
        "filters": { "maf": filters.maf, "geno_missing": filters.geno_missing, "mind": filters.mind },
        "removed": {
            "individuals_by_mind": o.removed_by_mind,
            "markers_by_geno_missing": o.removed_by_geno,
            "markers_by_maf": o.removed_by_maf,
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
                o.individuals.len(),
                o.kept_individuals.len()
            ),
        ),
        (
            "markers",
            format!("{} read, {} kept", o.n_markers, o.n_kept_markers),
        ),
        ("mean MAF", format!("{:.4}", o.mean_maf)),
        ("missing calls", format!("{:.4}%", 100.0 * o.missing_rate)),
        (
            "monomorphic",
            if monomorphic.is_empty() {
                "0".to_string()
            } else {
                format!(
                    "{} ({}{})",
                    o.n_monomorphic,
                    monomorphic
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if o.n_monomorphic > 5 { ", …" } else { "" }
                )
            },
        ),
    ];
    if filters.any() {
        rows.push((
            "removed",
            format!(
                "{} individuals by --mind, {} markers by --geno-missing, {} by --maf",
                o.removed_by_mind, o.removed_by_geno, o.removed_by_maf
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
    out_dir.keep();
    Ok(())
}
