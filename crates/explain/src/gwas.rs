//! The single-marker association scan beside the attributions: for each
//! marker, the least-squares regression of the trait on the dosage (A1
//! counts) over the individuals with a phenotype and a call, and the
//! two-sided t test of its slope.

use geno::PackedGenotypes;
use rayon::prelude::*;

/// One marker's association.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Association {
    /// The slope per A1 allele (NaN when the marker does not vary).
    pub beta: f64,
    pub se: f64,
    /// −log10 of the two-sided p value (0 when the slope is not defined).
    pub log10p: f64,
    /// Individuals used.
    pub n: usize,
}

/// −log10 P(|T| > |t|) for Student's t with `df` degrees of freedom,
/// accurate far into the tail (where p underflows a double).
pub fn t_log10p(t: f64, df: f64) -> f64 {
    if !t.is_finite() || df <= 0.0 {
        return if t.is_infinite() { f64::INFINITY } else { 0.0 };
    }
    let p = eval::metrics::student_t_two_sided(t, df);
    if p > 1e-280 {
        return -p.log10();
    }
    t_log10p_tail(t, df)
}

/// −log10 P(|T| > |t|) in log space: ln f(t) plus the log of the tail
/// integral of f(u)/f(t) from |t|, by Simpson's rule over the 60 scale
/// lengths where the integrand lives.
pub fn t_log10p_tail(t: f64, df: f64) -> f64 {
    use eval::metrics::ln_gamma;
    let t = t.abs();
    let ln_f = |u: f64| -(df + 1.0) / 2.0 * (u * u / df).ln_1p();
    let ln_c =
        ln_gamma((df + 1.0) / 2.0) - ln_gamma(df / 2.0) - 0.5 * (df * std::f64::consts::PI).ln();
    // The integrand falls by e about every `scale` (the inverse log-slope at t).
    let scale = (df + t * t) / ((df + 1.0) * t.max(1e-3));
    let (n, span) = (2000usize, 60.0 * scale);
    let h = span / n as f64;
    let f0 = ln_f(t);
    let mut sum = 0.0;
    for k in 0..=n {
        let w = if k == 0 || k == n {
            1.0
        } else if k % 2 == 1 {
            4.0
        } else {
            2.0
        };
        sum += w * (ln_f(t + k as f64 * h) - f0).exp();
    }
    let ln_p = std::f64::consts::LN_2 + ln_c + f0 + (sum * h / 3.0).ln();
    -ln_p / std::f64::consts::LN_10
}

/// The scan over every marker of `g`, with `y` per individual (NaN: no
/// phenotype).
pub fn scan(g: &PackedGenotypes, y: &[f64]) -> Vec<Association> {
    let rows: Vec<usize> = (0..g.n_individuals())
        .filter(|&i| y[i].is_finite())
        .collect();
    // Dosage by code 00, 01 (missing), 10, 11.
    const DOSE: [f64; 4] = [2.0, f64::NAN, 1.0, 0.0];
    (0..g.n_markers())
        .into_par_iter()
        .map(|j| {
            let (mut n, mut sx, mut sy, mut sxx, mut sxy, mut syy) =
                (0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
            for &i in &rows {
                let x = DOSE[g.code(i, j) as usize];
                if x.is_nan() {
                    continue;
                }
                let v = y[i];
                n += 1;
                sx += x;
                sy += v;
                sxx += x * x;
                sxy += x * v;
                syy += v * v;
            }
            let nf = n as f64;
            let cxx = sxx - sx * sx / nf;
            let cxy = sxy - sx * sy / nf;
            let cyy = syy - sy * sy / nf;
            if n < 3 || cxx <= 1e-12 * nf {
                return Association {
                    beta: f64::NAN,
                    se: f64::NAN,
                    log10p: 0.0,
                    n,
                };
            }
            let beta = cxy / cxx;
            let rss = (cyy - beta * cxy).max(0.0);
            let df = nf - 2.0;
            let se = (rss / df / cxx).sqrt();
            let t = if se > 0.0 { beta / se } else { f64::INFINITY };
            Association {
                beta,
                se,
                log10p: t_log10p(t, df),
                n,
            }
        })
        .collect()
}
