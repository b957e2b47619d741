//! Quality control with PLINK's meanings: `--mind` removes individuals whose
//! missing-call rate exceeds a threshold, then `--geno` removes markers whose
//! missing-call rate exceeds one, then `--maf` removes markers whose minor
//! allele frequency is below one. Marker statistics are computed over the
//! individuals that remain after `--mind`.

use crate::error::{GenoError, Result};
use crate::packed::PackedGenotypes;

/// The filters; `None` is off.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QcFilters {
    /// Remove markers with minor allele frequency below this.
    pub maf: Option<f64>,
    /// Remove markers with a missing-call rate above this.
    pub geno_missing: Option<f64>,
    /// Remove individuals with a missing-call rate above this.
    pub mind: Option<f64>,
}

impl QcFilters {
    /// Checks the thresholds once: rates in [0, 1], MAF in [0, 0.5].
    pub fn validate(&self) -> Result<()> {
        let check = |name: &str, v: Option<f64>, hi: f64| match v {
            Some(x) if !(0.0..=hi).contains(&x) || x.is_nan() => Err(GenoError::Usage(format!(
                "--{name} {x}: expected a value between 0 and {hi}"
            ))),
            _ => Ok(()),
        };
        check("maf", self.maf, 0.5)?;
        check("geno-missing", self.geno_missing, 1.0)?;
        check("mind", self.mind, 1.0)
    }

    /// Whether any filter is on.
    pub fn any(&self) -> bool {
        self.maf.is_some() || self.geno_missing.is_some() || self.mind.is_some()
    }
}

/// Why a marker was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MarkerFilter {
    GenoMissing,
    Maf,
}

/// Statistics and fate of one marker.
#[derive(Clone, Debug, PartialEq)]
pub struct MarkerQc {
    /// Frequency of A1 among called alleles; `None` when nothing is called.
    pub a1_freq: Option<f64>,
    pub maf: Option<f64>,
    pub missing_rate: f64,
    pub monomorphic: bool,
    pub removed_by: Option<MarkerFilter>,
}

impl MarkerQc {
    pub fn kept(&self) -> bool {
        self.removed_by.is_none()
    }
}

/// Statistics and fate of one individual.
#[derive(Clone, Debug, PartialEq)]
pub struct IndividualQc {
    /// Fraction of markers with a call.
    pub call_rate: f64,
    pub kept: bool,
}

/// The outcome of QC.
#[derive(Clone, Debug)]
pub struct QcReport {
    pub markers: Vec<MarkerQc>,
    pub individuals: Vec<IndividualQc>,
    /// Indices of the individuals kept.
    pub kept_individuals: Vec<usize>,
    /// Indices of the markers kept.
    pub kept_markers: Vec<usize>,
    pub removed_by_mind: usize,
    pub removed_by_geno: usize,
    pub removed_by_maf: usize,
    /// Fraction of all calls that are missing, before any filter.
    pub missing_rate: f64,
    /// Mean MAF over markers with at least one call.
    pub mean_maf: f64,
    /// Markers with one allele only (or no calls).
    pub n_monomorphic: usize,
}

/// The per-individual statistics and fates from each one's count of
/// missing calls over `m` markers (`--mind` applied).
pub fn individual_qc(miss: &[u32], m: usize, filters: &QcFilters) -> Vec<IndividualQc> {
    miss.iter()
        .map(|&k| {
            let rate = if m == 0 { 0.0 } else { k as f64 / m as f64 };
            IndividualQc {
                call_rate: 1.0 - rate,
                kept: filters.mind.is_none_or(|t| rate <= t),
            }
        })
        .collect()
}

/// One marker's statistics and fate from its counts over the individuals
/// kept (`--geno` first, then `--maf`).
pub fn marker_qc(c: &crate::packed::GenoCounts, filters: &QcFilters) -> MarkerQc {
    let a1_freq = c.a1_freq();
    let maf = a1_freq.map(|p| p.min(1.0 - p));
    let missing_rate = c.missing_rate();
    let removed_by = if filters.geno_missing.is_some_and(|t| missing_rate > t) {
        Some(MarkerFilter::GenoMissing)
    } else if filters.maf.is_some_and(|t| maf.is_none_or(|v| v < t)) {
        Some(MarkerFilter::Maf)
    } else {
        None
    };
    MarkerQc {
        a1_freq,
        maf,
        missing_rate,
        monomorphic: maf.is_none_or(|v| v == 0.0),
        removed_by,
    }
}

/// Runs QC on the whole store.
pub fn run_qc(g: &PackedGenotypes, filters: &QcFilters) -> Result<QcReport> {
    filters.validate()?;
    let (n, m) = (g.n_individuals(), g.n_markers());
    let miss = g.missing_per_individual(0..m);
    let total_missing: u64 = miss.iter().map(|&k| k as u64).sum();
    let individuals = individual_qc(&miss, m, filters);
    let kept_individuals: Vec<usize> = (0..n).filter(|&i| individuals[i].kept).collect();
    let all_kept = kept_individuals.len() == n;

    let mut markers = Vec::with_capacity(m);
    let mut maf_sum = 0.0;
    let mut maf_count = 0usize;
    for j in 0..m {
        let c = if all_kept {
            g.counts(j)
        } else {
            g.counts_among(j, &kept_individuals)
        };
        let q = marker_qc(&c, filters);
        if let Some(v) = q.maf {
            maf_sum += v;
            maf_count += 1;
        }
        markers.push(q);
    }
    let kept_markers: Vec<usize> = (0..m).filter(|&j| markers[j].kept()).collect();
    let count = |f: MarkerFilter| markers.iter().filter(|q| q.removed_by == Some(f)).count();
    Ok(QcReport {
        removed_by_mind: n - kept_individuals.len(),
        removed_by_geno: count(MarkerFilter::GenoMissing),
        removed_by_maf: count(MarkerFilter::Maf),
        n_monomorphic: markers.iter().filter(|q| q.monomorphic).count(),
        missing_rate: if n * m == 0 {
            0.0
        } else {
            total_missing as f64 / (n as f64 * m as f64)
        },
        mean_maf: if maf_count == 0 {
            0.0
        } else {
            maf_sum / maf_count as f64
        },
        markers,
        individuals,
        kept_individuals,
        kept_markers,
    })
}
