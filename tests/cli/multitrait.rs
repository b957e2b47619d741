//! Multi-trait networks and GBLUP: `train`/`predict` with several traits
//! and predictor traits, and `cv` in the CV1 and CV2 schemes.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{fails, ok, read_csv, read_json, s};

const TINY_MLP: &str = r#"
name = "tinymlp"
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
units = 8
activation = "relu"
[[layers]]
type = "dense"
units = 1
[training]
epochs = 6
lr = 0.003
val_fraction = 0.15
patience = 3
"#;

/// Two correlated traits (rg 0.8) on 400 individuals × 500 markers, the
/// second missing for 70%; returns (prefix, pheno, config).
fn sim(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let out = dir.join("mt");
    ok(&[
        "simulate",
        "--n",
        "400",
        "--snps",
        "500",
        "--qtl",
        "40",
        "--traits",
        "2",
        "--h2",
        "0.6,0.5",
        "--genetic-correlation",
        "0.8",
        "--missing-rate",
        "0,0.7",
        "--seed",
        "4",
        "--no-csv",
        "--out",
        s(&out),
    ]);
    let cfg = dir.join("tinymlp.toml");
    fs::write(&cfg, TINY_MLP).unwrap();
    (out.with_extension("bed"), dir.join("mt.pheno.csv"), cfg)
}

#[test]
fn a_multi_trait_network_trains_saves_and_predicts_each_trait() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno, cfg) = sim(dir.path());
    let m = dir.path().join("model");
    ok(&[
        "train",
        "--geno",
        s(&bed),
        "--pheno",
        s(&pheno),
        "--trait",
        "trait1,trait2",
        "--model",
        s(&cfg),
        "--seed",
        "2",
        "--out",
        s(&m),
    ]);
    let j = read_json(&m.join("summary.json"));
    assert_eq!(j["traits"], serde_json::json!(["trait1", "trait2"]));
    // Every individual has trait1, so all 400 train (less the validation split).
    assert_eq!(
        j["n_train"].as_u64().unwrap() + j["n_val"].as_u64().unwrap(),
        400
    );
    let toml = fs::read_to_string(m.join("model.toml")).unwrap();
    assert!(
        toml.contains("[[traits]]") && toml.contains("name = \"trait2\""),
        "{toml}"
    );
    let p = dir.path().join("p.csv");
    ok(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&bed),
        "--out",
        s(&p),
    ]);
    let (h, rows) = read_csv(&p);
    assert_eq!(h, ["id", "trait1", "trait2"]);
    assert_eq!(rows.len(), 400);
    // --trait picks and orders; an unknown one is refused, naming the model's.
    let p2 = dir.path().join("p2.csv");
    ok(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&bed),
        "--trait",
        "trait2",
        "--out",
        s(&p2),
    ]);
    let (h2, rows2) = read_csv(&p2);
    assert_eq!(h2, ["id", "trait2"]);
    assert!(rows2.iter().zip(&rows).all(|(a, b)| a[1] == b[2]));
    let e = fails(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&bed),
        "--trait",
        "yield",
        "--out",
        s(&p2),
    ]);
    assert!(
        e.contains("--trait yield: the model predicts trait1, trait2"),
        "{e}"
    );
    // Predictions in each trait's units: their means are near the traits'.
    let (_, ph) = read_csv(&pheno);
    for c in 1..=2 {
        let obs: Vec<f64> = ph.iter().filter_map(|r| r[c].parse().ok()).collect();
        let pred: Vec<f64> = rows.iter().map(|r| r[c].parse().unwrap()).collect();
        let mo = obs.iter().sum::<f64>() / obs.len() as f64;
        let mp = pred.iter().sum::<f64>() / pred.len() as f64;
        let sd = (obs.iter().map(|x| (x - mo).powi(2)).sum::<f64>() / obs.len() as f64).sqrt();
        assert!(
            (mp - mo).abs() < 0.5 * sd,
            "trait{c}: mean prediction {mp}, observed {mo}"
        );
    }
    // The same seed gives the same weights.
    let train2 = |out: &Path| {
        ok(&[
            "train",
            "--geno",
            s(&bed),
            "--pheno",
            s(&pheno),
            "--trait",
            "trait1,trait2",
            "--model",
            s(&cfg),
            "--seed",
            "2",
            "--threads",
            "2",
            "--out",
            s(out),
        ])
    };
    let (m2, m3) = (dir.path().join("model2"), dir.path().join("model3"));
    train2(&m2);
    train2(&m3);
    assert_eq!(
        fs::read(m2.join("model.safetensors")).unwrap(),
        fs::read(m3.join("model.safetensors")).unwrap()
    );
}

/// A network that can see its predictor channel's level directly.
const POOLED: &str = r#"
name = "pooled"
[[layers]]
type = "conv1d"
filters = 2
kernel = 1
[[layers]]
type = "global_avg_pool"
[[layers]]
type = "dense"
units = 1
[training]
epochs = 30
lr = 0.01
val_fraction = 0.0
"#;

#[test]
fn predictor_traits_are_inputs_that_predict_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno, _) = sim(dir.path());
    let cfg = dir.path().join("pooled.toml");
    fs::write(&cfg, POOLED).unwrap();
    let m = dir.path().join("model");
    ok(&[
        "train",
        "--geno",
        s(&bed),
        "--pheno",
        s(&pheno),
        "--trait",
        "trait2",
        "--predictor-traits",
        "trait1",
        "--model",
        s(&cfg),
        "--out",
        s(&m),
    ]);
    let j = read_json(&m.join("summary.json"));
    assert_eq!(j["predictor_traits"], serde_json::json!(["trait1"]));
    let p = dir.path().join("p.csv");
    let e = fails(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&bed),
        "--out",
        s(&p),
    ]);
    assert!(e.contains("trait1") && e.contains("--pheno"), "{e}");
    assert!(!p.exists());
    ok(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&bed),
        "--pheno",
        s(&pheno),
        "--out",
        s(&p),
    ]);
    let (h, rows) = read_csv(&p);
    assert_eq!(h, ["id", "prediction"]);
    // The network uses the record: predictions follow trait1.
    let (_, ph) = read_csv(&pheno);
    let a: Vec<f64> = ph.iter().map(|r| r[1].parse().unwrap()).collect();
    let b: Vec<f64> = rows.iter().map(|r| r[1].parse().unwrap()).collect();
    let r = eval::metrics::pearson(&a, &b);
    assert!(r > 0.3, "r(trait1, prediction of trait2) = {r}");
}

fn cv_run(bed: &Path, pheno: &Path, models: &str, extra: &[&str], out: &Path) {
    let mut args = vec![
        "cv",
        "--geno",
        s(bed),
        "--pheno",
        s(pheno),
        "--models",
        models,
        "--folds",
        "3",
        "--seed",
        "7",
        "--threads",
        "2",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    ok(&args);
}

/// Mean r of a model on a trait over the folds of a metrics.csv.
fn mean_r(dir: &Path, model: &str, trait_name: &str) -> f64 {
    let (h, rows) = read_csv(&dir.join("metrics.csv"));
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let rs: Vec<f64> = rows
        .iter()
        .filter(|r| r[col("model")] == model && r[col("trait")] == trait_name)
        .map(|r| r[col("r")].parse().unwrap())
        .collect();
    assert_eq!(rs.len(), 3, "{model} {trait_name}: {rows:?}");
    rs.iter().sum::<f64>() / 3.0
}

#[test]
fn cv1_and_cv2_compare_multi_trait_models_per_trait() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno, cfg) = sim(dir.path());
    let models = format!("gblup,{},single:{}", cfg.display(), cfg.display());
    // CV1: both traits predicted from genotypes; mtgblup joins as the baseline.
    let c1 = dir.path().join("cv1");
    cv_run(&bed, &pheno, &models, &["--trait", "trait1,trait2"], &c1);
    let j = read_json(&c1.join("summary.json"));
    assert_eq!(j["baseline"], "mtgblup");
    for t in ["trait1", "trait2"] {
        for m in ["mtgblup", "gblup", "tinymlp", "tinymlp-st"] {
            let r = mean_r(&c1, m, t);
            assert!(r.is_finite() && r.abs() <= 1.0, "{m} {t}: {r}");
            assert!(
                j["by_trait"][t]["models"][m]["r_mean"].is_number(),
                "{m} {t}"
            );
        }
        assert!(j["by_trait"][t]["paired_vs_gblup"]["gblup"]["p_value"].is_number());
        assert!(c1.join(format!("r_by_fold_{t}.png")).exists());
    }
    let (h, preds) = read_csv(&c1.join("predictions.csv"));
    assert_eq!(h.last().unwrap(), "trait");
    // Each trait is scored on the test individuals with its record only.
    let n2 = preds
        .iter()
        .filter(|r| r[3] == "gblup" && r[6] == "trait2")
        .count();
    assert!((90..=150).contains(&n2), "{n2}");

    // CV2: the test individuals keep trait1; mtgblup and the network see it.
    let c2 = dir.path().join("cv2");
    let models2 = format!("mtgblup,gblup,{}", cfg.display());
    cv_run(
        &bed,
        &pheno,
        &models2,
        &[
            "--trait",
            "trait2",
            "--predictor-traits",
            "trait1",
            "--scheme",
            "cv2",
        ],
        &c2,
    );
    let (_, rows) = read_csv(&c2.join("metrics.csv"));
    assert!(rows.iter().all(|r| r.last().unwrap() == "trait2"));
    // CV2's own trait1 records raise mtgblup's r (the folds differ: CV2's
    // are drawn over the individuals with trait2, CV1's over all).
    let (cv1_r, cv2_r) = (
        mean_r(&c1, "mtgblup", "trait2"),
        mean_r(&c2, "mtgblup", "trait2"),
    );
    assert!(
        cv2_r > cv1_r + 0.05,
        "mtgblup on trait2: CV1 {cv1_r}, CV2 {cv2_r}"
    );
    assert!(mean_r(&c2, "tinymlp", "trait2").is_finite());
    // GBLUP does not use predictor traits: the same as a single-trait run
    // on the same folds.
    let c4 = dir.path().join("single");
    cv_run(&bed, &pheno, "gblup", &["--trait", "trait2"], &c4);
    assert_eq!(
        mean_r(&c2, "gblup", "trait2"),
        mean_r(&c4, "gblup", "trait2")
    );

    // CV2 without predictor traits: each trait in turn, the other kept.
    let c3 = dir.path().join("cv2r");
    cv_run(
        &bed,
        &pheno,
        "gblup",
        &["--trait", "trait1,trait2", "--scheme", "cv2"],
        &c3,
    );
    // The same folds as CV1 and the same REML fits: only the test
    // individuals' trait1 records are added.
    assert!(mean_r(&c3, "mtgblup", "trait2") > cv1_r, "{cv1_r}");
}

#[test]
fn multi_trait_mistakes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno, cfg) = sim(dir.path());
    let out = dir.path().join("x");
    let base = |extra: &[&str], models: &str| {
        let mut a = vec![
            "cv",
            "--geno",
            s(&bed),
            "--pheno",
            s(&pheno),
            "--models",
            models,
            "--out",
            s(&out),
        ];
        a.extend_from_slice(extra);
        fails(&a)
    };
    let e = base(
        &["--trait", "trait2", "--predictor-traits", "trait1"],
        "gblup",
    );
    assert!(e.contains("--scheme cv2"), "{e}");
    let e = base(&["--trait", "trait2", "--scheme", "cv2"], "gblup");
    assert!(e.contains("CV2 needs"), "{e}");
    let e = base(&["--trait", "trait2"], "mtgblup");
    assert!(e.contains("mtgblup needs several traits"), "{e}");
    let e = base(
        &[
            "--trait",
            "trait1,trait2",
            "--predictor-traits",
            "trait2",
            "--scheme",
            "cv2",
        ],
        "gblup",
    );
    assert!(e.contains("trait trait2 is named twice"), "{e}");
    let e = fails(&[
        "train",
        "--geno",
        s(&bed),
        "--pheno",
        s(&pheno),
        "--trait",
        "trait1,trait1",
        "--model",
        s(&cfg),
        "--out",
        s(&out),
    ]);
    assert!(e.contains("named twice"), "{e}");
}

/// CV2 keeps the test individuals' predictor traits, never their targets:
/// poisoning fold 1's test records of trait2 leaves every prediction of
/// trait2 on fold 1 unchanged, for every model, with explicit predictor
/// traits and in the rotating scheme alike.
#[test]
fn cv2_never_shows_a_model_the_test_targets() {
    let dir = tempfile::tempdir().unwrap();
    let (bed, pheno, cfg) = sim(dir.path());
    let models = format!("mtgblup,gblup,{}", cfg.display());
    for (name, extra) in [
        (
            "explicit",
            vec!["--trait", "trait2", "--predictor-traits", "trait1"],
        ),
        ("rotating", vec!["--trait", "trait1,trait2"]),
    ] {
        let clean = dir.path().join(format!("{name}-clean"));
        let mut args = extra.clone();
        args.extend(["--scheme", "cv2", "--fold", "1"]);
        cv_run(&bed, &pheno, &models, &args, &clean);
        let (_, folds) = read_csv(&clean.join("folds.csv"));
        let test: std::collections::HashSet<String> = folds
            .iter()
            .filter(|r| r[2] == "1")
            .map(|r| r[0].clone())
            .collect();
        let (h, rows) = read_csv(&pheno);
        let mut text = h.join(",") + "\n";
        for r in &rows {
            let v2 = if test.contains(&r[0]) && r[2] != "NA" {
                "1000000"
            } else {
                &r[2]
            };
            text.push_str(&format!("{},{},{v2}\n", r[0], r[1]));
        }
        let poisoned = dir.path().join(format!("{name}.csv"));
        fs::write(&poisoned, text).unwrap();
        let bad = dir.path().join(format!("{name}-poisoned"));
        let fold_file = clean.join("folds.csv");
        args.extend(["--fold-file", s(&fold_file)]);
        cv_run(&bed, &poisoned, &models, &args, &bad);
        let preds = |d: &Path| -> Vec<(String, String, String)> {
            read_csv(&d.join("predictions.csv"))
                .1
                .into_iter()
                .filter(|r| r[6] == "trait2")
                .map(|r| (r[0].clone(), r[3].clone(), r[4].clone()))
                .collect()
        };
        let (pa, pb) = (preds(&clean), preds(&bad));
        assert!(pa.len() > 3 * 20, "{name}: {}", pa.len());
        assert_eq!(
            pa, pb,
            "{name}: predictions of trait2 changed with its test records"
        );
    }
}
