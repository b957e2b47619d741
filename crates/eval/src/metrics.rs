//! Accuracy metrics of predictions, summaries over folds, and the paired
//! t-test that compares each model with GBLUP on the same folds.

/// The metrics of one model on one test fold.
#[derive(Clone, Debug, PartialEq)]
pub struct Metrics {
    pub n: usize,
    /// Pearson correlation (predictive ability).
    pub r: f64,
    pub spearman: f64,
    pub mse: f64,
    /// 1 − SSE/SST on the test individuals.
    pub r2: f64,
    /// Slope of observed on predicted (1 is unbiased; below 1, over-dispersed predictions).
    pub slope: f64,
    /// Share of the top 10% by observation that are in the top 10% by prediction.
    pub top10: f64,
    /// Area under the ROC curve (binary traits only).
    pub auc: Option<f64>,
}

/// The names of the metrics, in CSV order.
pub const NAMES: [&str; 8] = [
    "n",
    "r",
    "spearman",
    "mse",
    "r2",
    "slope",
    "top10_overlap",
    "auc",
];

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Pearson correlation; NaN when undefined (fewer than 2 values, or no spread).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (mean(x), mean(y));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

/// Ranks with ties given their mean rank.
pub fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = rank;
        }
        i = j + 1;
    }
    r
}

/// AUC by the rank-sum (Mann–Whitney) formula; None unless both classes occur.
pub fn auc(pred: &[f64], obs: &[f64]) -> Option<f64> {
    let pos = obs.iter().filter(|&&o| o == 1.0).count();
    let neg = obs.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let r = ranks(pred);
    let sum_pos: f64 = r
        .iter()
        .zip(obs)
        .filter(|(_, &o)| o == 1.0)
        .map(|(r, _)| r)
        .sum();
    Some((sum_pos - (pos * (pos + 1)) as f64 / 2.0) / (pos * neg) as f64)
}

fn top_overlap(pred: &[f64], obs: &[f64], frac: f64) -> f64 {
    let k = ((pred.len() as f64 * frac).round() as usize).max(1);
    let top = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]));
        idx.truncate(k);
        idx
    };
    let (tp, to) = (top(pred), top(obs));
    tp.iter().filter(|i| to.contains(i)).count() as f64 / k as f64
}

impl Metrics {
    /// All metrics of predictions against observations; AUC when every
    /// observation is 0 or 1.
    pub fn compute(pred: &[f64], obs: &[f64]) -> Metrics {
        let n = pred.len();
        let mo = mean(obs);
        let mp = mean(pred);
        let sse: f64 = pred.iter().zip(obs).map(|(p, o)| (o - p).powi(2)).sum();
        let sst: f64 = obs.iter().map(|o| (o - mo).powi(2)).sum();
        let spp: f64 = pred.iter().map(|p| (p - mp).powi(2)).sum();
        let spo: f64 = pred.iter().zip(obs).map(|(p, o)| (p - mp) * (o - mo)).sum();
        let binary = obs.iter().all(|&o| o == 0.0 || o == 1.0);
        Metrics {
            n,
            r: pearson(pred, obs),
            spearman: pearson(&ranks(pred), &ranks(obs)),
            mse: sse / n as f64,
            r2: 1.0 - sse / sst,
            slope: spo / spp,
            top10: top_overlap(pred, obs, 0.1),
            auc: if binary { auc(pred, obs) } else { None },
        }
    }

    /// Values in the order of [`NAMES`].
    pub fn values(&self) -> [f64; 8] {
        [
            self.n as f64,
            self.r,
            self.spearman,
            self.mse,
            self.r2,
            self.slope,
            self.top10,
            self.auc.unwrap_or(f64::NAN),
        ]
    }
}

/// Mean and standard error of finite values.
pub fn mean_se(x: &[f64]) -> (f64, f64) {
    let v: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = mean(&v);
    if v.len() < 2 {
        return (m, f64::NAN);
    }
    let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, (var / v.len() as f64).sqrt())
}

/// The paired t-test of differences d (two-sided): (mean, t, p-value).
pub fn paired_t(d: &[f64]) -> (f64, f64, f64) {
    let (m, se) = mean_se(d);
    if se.is_nan() || se <= 0.0 {
        return (m, f64::NAN, f64::NAN);
    }
    let t = m / se;
    let df = (d.len() - 1) as f64;
    (m, t, student_t_two_sided(t, df))
}

/// P(|T| > |t|) for Student's t with `df` degrees of freedom.
pub fn student_t_two_sided(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    incomplete_beta(x, df / 2.0, 0.5)
}

/// ln Γ(x) (Lanczos).
pub fn ln_gamma(x: f64) -> f64 {
    // Lanczos approximation (g = 7, n = 9).
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + 7.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b).
pub fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(x, a, b) / a
    } else {
        1.0 - front * beta_cf(1.0 - x, b, a) / b
    }
}

/// Continued fraction for the incomplete beta (Lentz's method).
fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    let tiny = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < tiny {
        d = tiny;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < tiny {
            d = tiny;
        }
        c = 1.0 + aa / c;
        if c.abs() < tiny {
            c = tiny;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_distribution_matches_tables() {
        // Two-sided critical values: t(0.975, 4) = 2.776, t(0.975, 9) = 2.262, t(0.995, 29) = 2.756.
        assert!((student_t_two_sided(2.776445, 4.0) - 0.05).abs() < 1e-5);
        assert!((student_t_two_sided(2.262157, 9.0) - 0.05).abs() < 1e-5);
        assert!((student_t_two_sided(2.756386, 29.0) - 0.01).abs() < 1e-5);
        assert!((student_t_two_sided(0.0, 5.0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn metrics_of_known_cases() {
        let obs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        let pred: Vec<f64> = obs.iter().map(|o| 0.5 * o + 1.0).collect();
        let m = Metrics::compute(&pred, &obs);
        assert!((m.r - 1.0).abs() < 1e-12 && (m.spearman - 1.0).abs() < 1e-12);
        assert!(
            (m.slope - 2.0).abs() < 1e-12,
            "observed rises 2 per unit of prediction"
        );
        assert_eq!(m.top10, 1.0);
        assert!(m.auc.is_none());
        let bin = [0.0, 0.0, 1.0, 1.0, 0.0, 1.0];
        let p = [0.1, 0.4, 0.35, 0.8, 0.2, 0.9];
        // Of the 9 (positive, negative) pairs, 8 are ordered correctly.
        assert!((auc(&p, &bin).unwrap() - 8.0 / 9.0).abs() < 1e-12);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn mse_r2_and_slope_by_hand() {
        // Worked by hand: errors 1, 0, 1, 1 give SSE 3 and MSE 0.75; the
        // observations' mean is 3.25, SST 6.75, so R² = 1 − 3/6.75 = 5/9;
        // Σ(p − 2.5)(o − 3.25) = 5.5 over Σ(p − 2.5)² = 5 gives slope 1.1.
        let m = Metrics::compute(&[1.0, 2.0, 3.0, 4.0], &[2.0, 2.0, 4.0, 5.0]);
        assert_eq!(m.n, 4);
        assert!((m.mse - 0.75).abs() < 1e-15);
        assert!((m.r2 - 5.0 / 9.0).abs() < 1e-15);
        assert!((m.slope - 1.1).abs() < 1e-14);
        // r = 5.5 / sqrt(5 × 6.75).
        assert!((m.r - 5.5 / (5.0f64 * 6.75).sqrt()).abs() < 1e-15);
        // Predicting the mean scores R² = 0; worse than the mean, below 0,
        // while r says nothing of the scale.
        let flat = Metrics::compute(&[3.25; 4], &[2.0, 2.0, 4.0, 5.0]);
        assert!(flat.r2.abs() < 1e-15 && (flat.mse - 6.75 / 4.0).abs() < 1e-15);
        let scaled = Metrics::compute(&[10.0, 20.0, 30.0, 40.0], &[2.0, 2.0, 4.0, 5.0]);
        assert!(scaled.r2 < -100.0 && (scaled.r - m.r).abs() < 1e-12);
    }
}
