//! Results of a cross-validation: per-fold records, the summary over folds,
//! the paired comparison with GBLUP, and their CSV, JSON and Markdown forms.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::error::{EvalError, Result};
use crate::metrics::{mean_se, paired_t, Metrics, NAMES};

/// One model on one fold.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub model: String,
    /// The trait predicted (the last column of `metrics.csv`).
    pub trait_name: String,
    pub repeat: usize,
    pub fold: usize,
    pub metrics: Metrics,
    pub seconds: f64,
    /// Model-specific notes, e.g. the configuration a nested search chose.
    pub note: String,
}

/// One test prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    pub id: String,
    pub repeat: usize,
    pub fold: usize,
    pub model: String,
    pub trait_name: String,
    pub prediction: f64,
    pub observed: f64,
}

fn num(v: f64) -> String {
    if v.is_finite() {
        let s = format!("{v:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" || s.is_empty() {
            "0".into()
        } else {
            s.into()
        }
    } else {
        "NA".into()
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `metrics.csv`: model, repeat, fold (from 1), the metrics, note, trait.
/// The same seed gives the same file (times are kept apart, in
/// `timings.csv`).
pub fn metrics_csv(records: &[Record]) -> String {
    let mut s = format!("model,repeat,fold,{},note,trait\n", NAMES.join(","));
    for r in records {
        let vals: Vec<String> = r.metrics.values().iter().map(|&v| num(v)).collect();
        writeln!(
            s,
            "{},{},{},{},{},{}",
            quote(&r.model),
            r.repeat + 1,
            r.fold + 1,
            vals.join(","),
            quote(&r.note),
            quote(&r.trait_name)
        )
        .expect("write");
    }
    s
}

/// `timings.csv`: model, repeat, fold, seconds, trait.
pub fn timings_csv(records: &[Record]) -> String {
    let mut s = String::from("model,repeat,fold,seconds,trait\n");
    for r in records {
        writeln!(
            s,
            "{},{},{},{},{}",
            quote(&r.model),
            r.repeat + 1,
            r.fold + 1,
            num(r.seconds),
            quote(&r.trait_name)
        )
        .expect("write");
    }
    s
}

/// `predictions.csv`: id, repeat, fold, model, prediction, observed, trait.
pub fn predictions_csv(preds: &[Prediction]) -> String {
    let mut s = String::from("id,repeat,fold,model,prediction,observed,trait\n");
    for p in preds {
        writeln!(
            s,
            "{},{},{},{},{},{},{}",
            quote(&p.id),
            p.repeat + 1,
            p.fold + 1,
            quote(&p.model),
            num(p.prediction),
            num(p.observed),
            quote(&p.trait_name)
        )
        .expect("write");
    }
    s
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn parse_num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// Reads a `metrics.csv` written by [`metrics_csv`], with the seconds from
/// the `timings.csv` beside it when present.
pub fn read_metrics(path: &Path) -> Result<Vec<Record>> {
    let text =
        geno::textio::read_text(path).map_err(|e| EvalError::Io(path.display().to_string(), e))?;
    type Key = (String, String, String, String);
    let timings: BTreeMap<Key, f64> = geno::textio::read_text(&path.with_file_name("timings.csv"))
        .map(|t| {
            t.lines()
                .skip(1)
                .filter_map(|l| {
                    let f = split_csv(l);
                    (f.len() >= 4).then(|| {
                        let tr = f.get(4).cloned().unwrap_or_default();
                        (
                            (f[0].clone(), f[1].clone(), f[2].clone(), tr),
                            parse_num(&f[3]),
                        )
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let old = format!("model,repeat,fold,{},note", NAMES.join(","));
    let want = format!("{old},trait");
    let fields = if header == want {
        5 + NAMES.len()
    } else if header == old {
        4 + NAMES.len()
    } else {
        return Err(EvalError::File {
            path: path.into(),
            line: Some(1),
            message: format!("expected the header {want}"),
        });
    };
    let mut out = Vec::new();
    for (no, line) in lines.enumerate() {
        let f = split_csv(line);
        if f.len() != fields {
            return Err(EvalError::File {
                path: path.into(),
                line: Some(no + 2),
                message: format!("expected {fields} fields, found {}", f.len()),
            });
        }
        let trait_name = f.get(4 + NAMES.len()).cloned().unwrap_or_default();
        let v: Vec<f64> = f[3..3 + NAMES.len()].iter().map(|s| parse_num(s)).collect();
        let idx = |s: &str| {
            s.parse::<usize>()
                .map(|x| x.saturating_sub(1))
                .map_err(|_| EvalError::File {
                    path: path.into(),
                    line: Some(no + 2),
                    message: format!("'{s}' is not a number"),
                })
        };
        let key = (f[0].clone(), f[1].clone(), f[2].clone(), trait_name.clone());
        out.push(Record {
            model: f[0].clone(),
            trait_name,
            repeat: idx(&f[1])?,
            fold: idx(&f[2])?,
            metrics: Metrics {
                n: v[0] as usize,
                r: v[1],
                spearman: v[2],
                mse: v[3],
                r2: v[4],
                slope: v[5],
                top10: v[6],
                auc: v[7].is_finite().then_some(v[7]),
            },
            seconds: timings.get(&key).copied().unwrap_or(f64::NAN),
            note: f[3 + NAMES.len()].clone(),
        });
    }
    Ok(out)
}

/// Reads a `predictions.csv` written by [`predictions_csv`].
pub fn read_predictions(path: &Path) -> Result<Vec<Prediction>> {
    let text =
        geno::textio::read_text(path).map_err(|e| EvalError::Io(path.display().to_string(), e))?;
    let mut out = Vec::new();
    for (no, line) in text.lines().enumerate().skip(1) {
        let f = split_csv(line);
        if f.len() != 6 && f.len() != 7 {
            return Err(EvalError::File {
                path: path.into(),
                line: Some(no + 1),
                message: format!("expected 7 fields, found {}", f.len()),
            });
        }
        out.push(Prediction {
            trait_name: f.get(6).cloned().unwrap_or_default(),
            id: f[0].clone(),
            repeat: f[1].parse::<usize>().unwrap_or(1).saturating_sub(1),
            fold: f[2].parse::<usize>().unwrap_or(1).saturating_sub(1),
            model: f[3].clone(),
            prediction: parse_num(&f[4]),
            observed: parse_num(&f[5]),
        });
    }
    Ok(out)
}

/// The traits in the order they first appear.
pub fn trait_order(records: &[Record]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in records {
        if !seen.contains(&r.trait_name) {
            seen.push(r.trait_name.clone());
        }
    }
    seen
}

/// The models in the order they first appear.
pub fn model_order(records: &[Record]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in records {
        if !seen.contains(&r.model) {
            seen.push(r.model.clone());
        }
    }
    seen
}

/// Per-model summary over folds.
#[derive(Clone, Debug)]
pub struct ModelSummary {
    pub model: String,
    pub folds: usize,
    /// (mean, SE) of each metric in [`NAMES`] order, skipping n.
    pub stats: BTreeMap<&'static str, (f64, f64)>,
    pub seconds_mean: f64,
}

/// A model compared with the baseline on the same folds.
#[derive(Clone, Debug)]
pub struct Paired {
    pub model: String,
    pub folds: usize,
    pub r_diff_mean: f64,
    pub r_diff_se: f64,
    pub t: f64,
    pub p_value: f64,
    pub wins: usize,
}

/// The summary of a cross-validation.
#[derive(Clone, Debug)]
pub struct Summary {
    pub models: Vec<ModelSummary>,
    pub baseline: Option<String>,
    pub paired: Vec<Paired>,
}

/// Summarizes records; models are compared with `baseline` fold by fold.
pub fn summarize(records: &[Record], baseline: &str) -> Summary {
    let order = model_order(records);
    let models = order
        .iter()
        .map(|m| {
            let rs: Vec<&Record> = records.iter().filter(|r| &r.model == m).collect();
            let mut stats = BTreeMap::new();
            for (k, name) in NAMES.iter().enumerate().skip(1) {
                let v: Vec<f64> = rs.iter().map(|r| r.metrics.values()[k]).collect();
                stats.insert(*name, mean_se(&v));
            }
            let secs: Vec<f64> = rs.iter().map(|r| r.seconds).collect();
            ModelSummary {
                model: m.clone(),
                folds: rs.len(),
                stats,
                seconds_mean: mean_se(&secs).0,
            }
        })
        .collect();
    let base: BTreeMap<(usize, usize), f64> = records
        .iter()
        .filter(|r| r.model == baseline)
        .map(|r| ((r.repeat, r.fold), r.metrics.r))
        .collect();
    let paired = if base.is_empty() {
        Vec::new()
    } else {
        order
            .iter()
            .filter(|m| *m != baseline)
            .map(|m| {
                let d: Vec<f64> = records
                    .iter()
                    .filter(|r| &r.model == m)
                    .filter_map(|r| base.get(&(r.repeat, r.fold)).map(|b| r.metrics.r - b))
                    .collect();
                let (mean, t, p) = paired_t(&d);
                Paired {
                    model: m.clone(),
                    folds: d.len(),
                    r_diff_mean: mean,
                    r_diff_se: mean_se(&d).1,
                    t,
                    p_value: p,
                    wins: d.iter().filter(|&&x| x > 0.0).count(),
                }
            })
            .collect()
    };
    Summary {
        models,
        baseline: (!base.is_empty()).then(|| baseline.to_string()),
        paired,
    }
}

fn jnum(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

impl Summary {
    /// `{"models": {NAME: {"r_mean", "r_se", …}}, "paired_vs_gblup": {…}}`.
    pub fn to_json(&self, extra: Value) -> Value {
        let mut models = serde_json::Map::new();
        for m in &self.models {
            let mut o = serde_json::Map::new();
            o.insert("folds".into(), json!(m.folds));
            for (name, (mean, se)) in &m.stats {
                o.insert(format!("{name}_mean"), jnum(*mean));
                o.insert(format!("{name}_se"), jnum(*se));
            }
            o.insert("seconds_per_fold".into(), jnum(m.seconds_mean));
            models.insert(m.model.clone(), Value::Object(o));
        }
        let mut paired = serde_json::Map::new();
        for p in &self.paired {
            paired.insert(
                p.model.clone(),
                json!({
                    "folds": p.folds,
                    "r_diff_mean": jnum(p.r_diff_mean),
                    "r_diff_se": jnum(p.r_diff_se),
                    "t": jnum(p.t),
                    "p_value": jnum(p.p_value),
                    "folds_better": p.wins,
                }),
            );
        }
        let mut out =
            json!({ "models": models, "paired_vs_gblup": paired, "baseline": self.baseline });
        if let (Value::Object(o), Value::Object(e)) = (&mut out, extra) {
            o.extend(e);
        }
        out
    }

    /// The comparison table, as Markdown (also readable in a terminal).
    pub fn table(&self) -> String {
        let mut s = String::from("| model | r (mean ± SE) | Spearman | MSE | slope | top-10% | Δr vs GBLUP (p) | s/fold |\n|---|---|---|---|---|---|---|---|\n");
        for m in &self.models {
            let st = |k: &str| m.stats.get(k).copied().unwrap_or((f64::NAN, f64::NAN));
            let (r, rse) = st("r");
            let delta = match self.paired.iter().find(|p| p.model == m.model) {
                Some(p) => format!(
                    "{:+.3} ± {:.3} (p = {})",
                    p.r_diff_mean,
                    p.r_diff_se,
                    fmt_p(p.p_value)
                ),
                None if self.baseline.as_deref() == Some(m.model.as_str()) => "baseline".into(),
                None => "–".into(),
            };
            writeln!(
                s,
                "| {} | {:.3} ± {:.3} | {:.3} | {:.4} | {:.2} | {:.2} | {} | {:.1} |",
                m.model,
                r,
                rse,
                st("spearman").0,
                st("mse").0,
                st("slope").0,
                st("top10_overlap").0,
                delta,
                m.seconds_mean
            )
            .expect("write");
        }
        s
    }

    /// One sentence per model on how it compares with the baseline.
    pub fn verdicts(&self) -> Vec<String> {
        self.paired
            .iter()
            .map(|p| {
                let base = self.baseline.as_deref().unwrap_or("gblup");
                let (what, sig) = if !p.p_value.is_finite() {
                    ("cannot be compared", false)
                } else if p.p_value < 0.05 {
                    (if p.r_diff_mean > 0.0 { "beats" } else { "falls behind" }, true)
                } else {
                    ("is not distinguishable from", false)
                };
                format!(
                    "{} {what} {base}: Δr = {:+.3} ± {:.3} over {} paired folds (better in {} of them), paired t-test p = {}{}",
                    p.model,
                    p.r_diff_mean,
                    p.r_diff_se,
                    p.folds,
                    p.wins,
                    fmt_p(p.p_value),
                    if sig { "." } else { "; the difference is within fold-to-fold noise." }
                )
            })
            .collect()
    }
}

pub fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        "NA".into()
    } else if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}
