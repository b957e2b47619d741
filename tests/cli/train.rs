//! `genocnn train` and `genocnn predict`: outputs, reproducibility, marker
//! matching by ID and allele, and learning on a simulated trait.

use std::fs;
use std::path::Path;

use geno::{GenoReader, Individual, Marker, PackedGenotypes};

use crate::common::{fails, ok, read_csv, read_json, s, train_example_args};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const SMALL: &str = r#"
name = "small"
[[layers]]
type = "conv1d"
filters = 4
kernel = 5
stride = 2
activation = "relu"
[[layers]]
type = "max_pool1d"
size = 2
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.1
[[layers]]
type = "dense"
units = 8
activation = "relu"
[[layers]]
type = "dense"
units = 1
[training]
epochs = 3
batch_size = 32
lr = 0.001
val_fraction = 0.2
patience = 5
"#;

fn train(dir: &Path, config: &Path, seed: &str) -> std::path::PathBuf {
    let out = dir.join(format!("model_{seed}"));
    train_example(config, &out, &["--seed", seed, "--threads", "2"]);
    out
}

/// Trains `config` on the bundled example into `out`; returns the output.
fn train_example(config: &Path, out: &Path, extra: &[&str]) -> String {
    ok(&train_example_args(config, out, extra))
}

fn predictions(p: &Path) -> Vec<f64> {
    let (h, rows) = read_csv(p);
    assert_eq!(h, ["id", "prediction"]);
    rows.iter().map(|r| r[1].parse().unwrap()).collect()
}

#[test]
fn train_writes_its_outputs_and_predict_reloads_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let m1 = train(dir.path(), &config, "7");
    for f in [
        "history.csv",
        "model.safetensors",
        "model.toml",
        "summary.json",
    ] {
        assert!(m1.join(f).exists(), "{f}");
    }
    let j = read_json(&m1.join("summary.json"));
    for key in [
        "epochs_run",
        "best_epoch",
        "train_loss",
        "val_loss",
        "val_r",
        "seconds_per_epoch",
    ] {
        assert!(j.get(key).is_some(), "summary.json lacks {key}");
    }
    assert_eq!(
        j["n_train"].as_u64().unwrap() + j["n_val"].as_u64().unwrap(),
        600
    );
    let (h, rows) = read_csv(&m1.join("history.csv"));
    assert_eq!(h[..5], ["epoch", "lr", "train_loss", "val_loss", "val_r"]);
    assert_eq!(rows.len(), j["epochs_run"].as_u64().unwrap() as usize);

    // The same seed and thread count give bit-identical weights.
    let m2 = train(dir.path(), &config, "7");
    assert_eq!(
        fs::read(m1.join("model.safetensors")).unwrap(),
        fs::read(m2.join("model.safetensors")).unwrap()
    );
    let m3 = train(dir.path(), &config, "8");
    assert_ne!(
        fs::read(m1.join("model.safetensors")).unwrap(),
        fs::read(m3.join("model.safetensors")).unwrap()
    );

    // Predict the same genotypes from the .bed and from a CSV copy (markers by ID).
    let ex = root().join("data/example.bed");
    let p_bed = dir.path().join("bed.csv");
    ok(&[
        "predict",
        "--model",
        s(&m1),
        "--geno",
        s(&ex),
        "--out",
        s(&p_bed),
    ]);
    let csv = dir.path().join("geno.csv");
    ok(&["convert", "--geno", s(&ex), "--out", s(&csv)]);
    let p_csv = dir.path().join("csv.csv");
    let out = ok(&[
        "predict",
        "--model",
        s(&m1),
        "--geno",
        s(&csv),
        "--out",
        s(&p_csv),
    ]);
    assert!(out.contains("predicted 600"), "{out}");
    let (a, b) = (predictions(&p_bed), predictions(&p_csv));
    assert_eq!(a.len(), 600);
    assert_eq!(a, b);
    assert!(
        a.iter().any(|v| (v - a[0]).abs() > 1e-6),
        "predictions vary"
    );
}

/// `--val-fraction 0` (as the peer benchmarks train): every individual is
/// trained on, every epoch runs, and the last epoch's weights are kept.
#[test]
fn no_validation_split_trains_on_everyone_for_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let out = dir.path().join("m");
    let text = train_example(
        &config,
        &out,
        &["--val-fraction", "0", "--epochs", "4", "--patience", "1"],
    );
    assert!(text.contains("no validation split"), "{text}");
    assert!(!text.contains("NaN"), "{text}");
    let j = read_json(&out.join("summary.json"));
    assert_eq!(j["n_val"], 0);
    assert_eq!(j["n_train"], 600);
    assert_eq!(j["epochs_run"], 4);
    assert_eq!(j["best_epoch"], 4);
    assert!(j["val_loss"].is_null() && j["val_r"].is_null(), "{j}");
    let (_, rows) = read_csv(&out.join("history.csv"));
    assert!(rows.iter().all(|r| r[3] == "NA" && r[4] == "NA"));
}

/// Swaps A1/A2 of every third marker (and the calls with them), and
/// reverses the marker order: the predictions must not change.
#[test]
fn swapped_alleles_are_flipped_and_missing_markers_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("small.toml");
    fs::write(&config, SMALL).unwrap();
    let m = train(dir.path(), &config, "3");
    let ex = root().join("data/example.bed");
    let g = GenoReader::new(&ex).read().unwrap();
    let order: Vec<usize> = (0..g.n_markers()).rev().collect();
    let markers: Vec<Marker> = order
        .iter()
        .map(|&j| {
            let mut mk = g.markers()[j].clone();
            if j % 3 == 0 {
                std::mem::swap(&mut mk.a1, &mut mk.a2);
            }
            mk
        })
        .collect();
    let inds: Vec<Individual> = g.individuals().to_vec();
    let swapped = PackedGenotypes::from_fn(inds, markers, |i, k| {
        let j = order[k];
        g.dosage(i, j)
            .map(|d| if j.is_multiple_of(3) { 2 - d } else { d })
    });
    let sw = dir.path().join("swapped.bed");
    geno::write_plink(&swapped, &sw, None, None).unwrap();
    let (p0, p1) = (dir.path().join("p0.csv"), dir.path().join("p1.csv"));
    ok(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&ex),
        "--out",
        s(&p0),
    ]);
    let out = ok(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&sw),
        "--out",
        s(&p1),
    ]);
    assert!(out.contains("1000 with A1/A2 swapped"), "{out}");
    let (a, b) = (predictions(&p0), predictions(&p1));
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }

    // Drop 7 markers: an error that counts them and names a few.
    let keep: Vec<usize> = (7..g.n_markers()).collect();
    let rows: Vec<usize> = (0..g.n_individuals()).collect();
    let fewer = g.subset(&rows, &keep);
    let fw = dir.path().join("fewer.bed");
    geno::write_plink(&fewer, &fw, None, None).unwrap();
    let err = fails(&[
        "predict",
        "--model",
        s(&m),
        "--geno",
        s(&fw),
        "--out",
        s(&dir.path().join("p2.csv")),
    ]);
    assert!(
        err.contains("7 of the model's 3000 markers are missing") && err.contains("snp1, snp2"),
        "{err}"
    );
    assert!(!dir.path().join("p2.csv").exists());
}

#[test]
fn configs_with_unknown_keys_or_impossible_shapes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    fs::write(
        &bad,
        SMALL.replace("filters = 4", "filters = 4\nfiltres = 3"),
    )
    .unwrap();
    let ex = root().join("data/example");
    let args = |cfg: &Path| {
        vec![
            "train".to_string(),
            "--geno".into(),
            s(&ex.with_extension("bed")).into(),
            "--pheno".into(),
            s(&ex.with_extension("pheno.csv")).into(),
            "--trait".into(),
            "trait".into(),
            "--model".into(),
            s(cfg).into(),
            "--out".into(),
            s(&dir.path().join("o")).into(),
        ]
    };
    let a = args(&bad);
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("bad.toml")
            && err.contains("layer 0 (conv1d)")
            && err.contains("unknown field `filtres`"),
        "{err}"
    );
    fs::write(&bad, SMALL.replace("kernel = 5", "kernel = 5000")).unwrap();
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("layer 0 (conv1d)") && err.contains("does not fit an input of length 3000"),
        "{err}"
    );
    fs::write(&bad, SMALL.replace("units = 1\n", "units = 2\n")).unwrap();
    let err = fails(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        err.contains("needs 1 (") && err.contains("dense layer of 1 unit"),
        "{err}"
    );
}

/// The learning figure of the issue: cnn1d-pez on a simulated additive
/// trait (2000 × 5000, 100 QTL, h2 = 0.5) reaches a validation r ≥ 0.45.
#[test]
fn cnn1d_pez_learns_a_simulated_trait() {
    let dir = tempfile::tempdir().unwrap();
    let sim = dir.path().join("sim");
    ok(&[
        "simulate",
        "--n",
        "2000",
        "--snps",
        "5000",
        "--qtl",
        "100",
        "--h2",
        "0.5",
        "--seed",
        "11",
        "--no-csv",
        "--out",
        s(&sim),
    ]);
    let out = dir.path().join("pez");
    ok(&[
        "train",
        "--geno",
        s(&sim.with_extension("bed")),
        "--pheno",
        &format!("{}.pheno.csv", sim.display()),
        "--trait",
        "trait",
        "--model",
        s(&root().join("configs/cnn1d-pez.toml")),
        "--val-fraction",
        "0.2",
        "--seed",
        "1",
        "--out",
        s(&out),
    ]);
    let j = read_json(&out.join("summary.json"));
    let r = j["val_r"].as_f64().unwrap();
    eprintln!("cnn1d-pez validation r = {r:.3}");
    assert!(r >= 0.45, "validation r {r}");
}
