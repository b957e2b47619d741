//! Scoring attributions against known loci (`--truth`), and the agreement
//! of attributions between models.

use std::collections::HashMap;
use std::path::Path;

use geno::Marker;

use crate::error::{ExplainError, Result};

/// A known locus: a chromosome and a base-pair position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locus {
    pub chromosome: String,
    pub position: i64,
    /// The marker it was named by, if it was.
    pub marker: Option<String>,
}

/// Reads a truth file: CSV or TSV with a header holding `marker`, or
/// `chromosome` and `position` (also `chr`/`chrom` and `pos`/`bp`); other
/// columns are ignored. Markers are placed by the genotype file's map.
pub fn read_truth(path: &Path, markers: &[Marker]) -> Result<Vec<Locus>> {
    let text = std::fs::read_to_string(path).map_err(|e| ExplainError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let err = |line: usize, message: String| ExplainError::Truth {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((hl, header)) = lines.next() else {
        return Err(err(
            1,
            "the file is empty; expected a header with marker, or chromosome and position".into(),
        ));
    };
    let delim = if header.contains('\t') { '\t' } else { ',' };
    let split = |l: &str| -> Vec<String> {
        l.split(delim)
            .map(|f| f.trim().trim_matches('"').to_string())
            .collect()
    };
    let names: Vec<String> = split(header)
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let col = |alts: &[&str]| names.iter().position(|n| alts.contains(&n.as_str()));
    let c_marker = col(&["marker", "snp", "id", "rs"]);
    let c_chr = col(&["chromosome", "chr", "chrom"]);
    let c_pos = col(&["position", "pos", "bp"]);
    if c_marker.is_none() && (c_chr.is_none() || c_pos.is_none()) {
        return Err(err(
            hl + 1,
            format!(
                "the header has no 'marker' column and no 'chromosome' and 'position' columns (found: {})",
                names.join(", ")
            ),
        ));
    }
    let by_id: HashMap<&str, &Marker> = markers.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut out = Vec::new();
    for (k, line) in lines {
        let f = split(line);
        let field = |c: usize| -> Result<&str> {
            f.get(c).map(|s| s.as_str()).ok_or_else(|| {
                err(
                    k + 1,
                    format!(
                        "found {} fields, but the header names column {} '{}'",
                        f.len(),
                        c + 1,
                        names[c]
                    ),
                )
            })
        };
        let named = match c_marker {
            Some(c) => Some(field(c)?.to_string()),
            None => None,
        };
        let placed = named.as_deref().and_then(|id| by_id.get(id));
        let locus = match (placed, c_chr, c_pos) {
            (Some(mk), _, _) => Locus {
                chromosome: mk.chromosome.clone(),
                position: mk.position,
                marker: named.clone(),
            },
            (None, Some(cc), Some(cp)) => {
                let pos = field(cp)?;
                let position = pos.parse::<i64>().map_err(|_| {
                    err(
                        k + 1,
                        format!(
                            "column {} ('{}'): '{pos}' is not a base-pair position",
                            cp + 1,
                            names[cp]
                        ),
                    )
                })?;
                Locus {
                    chromosome: field(cc)?.to_string(),
                    position,
                    marker: named.clone(),
                }
            }
            _ => {
                return Err(err(
                    k + 1,
                    format!(
                        "marker '{}' is not in the genotype file, and the file has no chromosome and position columns to place it",
                        named.unwrap_or_default()
                    ),
                ))
            }
        };
        out.push(locus);
    }
    if out.is_empty() {
        return Err(err(hl + 1, "the file lists no loci".into()));
    }
    Ok(out)
}

/// How well one attribution finds the known loci.
#[derive(Clone, Debug, PartialEq)]
pub struct Recovery {
    /// Loci with a top marker within the window.
    pub hits: usize,
    pub loci: usize,
    pub recall: f64,
    /// The share of top markers within the window of some locus.
    pub precision: f64,
    /// AUC of the attribution as a detector of markers near a locus
    /// (None when every marker or none is near one).
    pub auc: Option<f64>,
}

/// Whether each marker lies within `window` bp of some locus.
pub fn near_loci(markers: &[Marker], loci: &[Locus], window: i64) -> Vec<bool> {
    markers
        .iter()
        .map(|m| {
            loci.iter()
                .any(|l| l.chromosome == m.chromosome && (l.position - m.position).abs() <= window)
        })
        .collect()
}

/// The indices of the `top` largest values (NaN last; ties by index).
pub fn top_indices(values: &[f64], top: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    let key = |v: f64| if v.is_nan() { f64::NEG_INFINITY } else { v };
    idx.sort_by(|&a, &b| key(values[b]).total_cmp(&key(values[a])).then(a.cmp(&b)));
    idx.truncate(top);
    idx
}

/// Scores `values` (one per marker; larger = more important) against `loci`.
pub fn score(
    values: &[f64],
    markers: &[Marker],
    loci: &[Locus],
    top: usize,
    window: i64,
) -> Recovery {
    let top_idx = top_indices(values, top);
    let hits = loci
        .iter()
        .filter(|l| {
            top_idx.iter().any(|&j| {
                markers[j].chromosome == l.chromosome
                    && (markers[j].position - l.position).abs() <= window
            })
        })
        .count();
    let near = near_loci(markers, loci, window);
    let near_top = top_idx.iter().filter(|&&j| near[j]).count();
    let labels: Vec<f64> = near.iter().map(|&b| f64::from(u8::from(b))).collect();
    let clean: Vec<f64> = values
        .iter()
        .map(|&v| if v.is_nan() { f64::NEG_INFINITY } else { v })
        .collect();
    Recovery {
        hits,
        loci: loci.len(),
        recall: hits as f64 / loci.len().max(1) as f64,
        precision: near_top as f64 / top_idx.len().max(1) as f64,
        auc: eval::metrics::auc(&clean, &labels),
    }
}

/// Spearman's rank correlation.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    eval::metrics::pearson(&eval::metrics::ranks(a), &eval::metrics::ranks(b))
}

/// The mean Spearman correlation over every pair of `runs` (pairs where
/// one side is constant have none, and are left out; None when no pair is left).
pub fn mean_pairwise_spearman(runs: &[&[f64]]) -> Option<f64> {
    let mut s = Vec::new();
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            let r = spearman(runs[i], runs[j]);
            if r.is_finite() {
                s.push(r);
            }
        }
    }
    (!s.is_empty()).then(|| s.iter().sum::<f64>() / s.len() as f64)
}
