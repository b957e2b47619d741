//! `genocnn cv`: outputs, determinism, no leakage of test phenotypes, folds
//! by group and from a file, single-fold runs merged.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{ok, read_csv, read_json, s};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const TINY_CNN: &str = r#"
name = "tinycnn"
[[layers]]
type = "conv1d"
filters = 4
kernel = 4
stride = 4
activation = "relu"
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.2
[[layers]]
type = "dense"
units = 1
[training]
epochs = 4
val_fraction = 0.15
patience = 3
"#;

fn cv(dir: &Path, pheno: &Path, extra: &[&str], out: &str) -> PathBuf {
    let cfg = dir.join("tinycnn.toml");
    fs::write(&cfg, TINY_CNN).unwrap();
    let out = dir.join(out);
    let models = format!("gblup,{}", cfg.display());
    let bed = root().join("data/example.bed");
    let mut args = vec![
        "cv",
        "--geno",
        s(&bed),
        "--pheno",
        s(pheno),
        "--trait",
        "trait",
        "--seed",
        "5",
        "--threads",
        "2",
        "--out",
        s(&out),
    ];
    if !extra.contains(&"--models") {
        args.extend_from_slice(&["--models", &models]);
    }
    if !extra.contains(&"--folds") {
        args.extend_from_slice(&["--folds", "3"]);
    }
    args.extend_from_slice(extra);
    let a: Vec<&str> = args.to_vec();
    ok(&a);
    out
}

fn example_pheno() -> PathBuf {
    root().join("data/example.pheno.csv")
}

#[test]
fn cv_writes_every_output_and_repeats_itself() {
    let dir = tempfile::tempdir().unwrap();
    let a = cv(dir.path(), &example_pheno(), &[], "a");
    for f in [
        "metrics.csv",
        "predictions.csv",
        "folds.csv",
        "timings.csv",
        "summary.json",
        "report.md",
        "r_by_fold.svg",
        "r_by_fold.png",
        "observed_vs_predicted.svg",
        "observed_vs_predicted.png",
    ] {
        assert!(a.join(f).exists(), "{f}");
    }
    let j = read_json(&a.join("summary.json"));
    for m in ["gblup", "tinycnn"] {
        for k in [
            "r_mean",
            "r_se",
            "mse_mean",
            "spearman_mean",
            "slope_mean",
            "top10_overlap_mean",
            "r2_mean",
        ] {
            assert!(j["models"][m].get(k).is_some(), "{m}.{k}");
        }
    }
    assert!(j["paired_vs_gblup"]["tinycnn"]["p_value"].is_number());
    let (h, rows) = read_csv(&a.join("metrics.csv"));
    assert_eq!(h[..4], ["model", "repeat", "fold", "n"]);
    assert_eq!(rows.len(), 6);
    let (h, rows) = read_csv(&a.join("predictions.csv"));
    assert_eq!(
        h,
        [
            "id",
            "repeat",
            "fold",
            "model",
            "prediction",
            "observed",
            "trait"
        ]
    );
    assert_eq!(rows.len(), 2 * 600);
    let report = fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        report.contains("| gblup |") && report.contains("tinycnn"),
        "{report}"
    );
    // The same seed gives an identical metrics.csv.
    let b = cv(dir.path(), &example_pheno(), &[], "b");
    assert_eq!(
        fs::read(a.join("metrics.csv")).unwrap(),
        fs::read(b.join("metrics.csv")).unwrap()
    );
    assert_eq!(
        fs::read(a.join("folds.csv")).unwrap(),
        fs::read(b.join("folds.csv")).unwrap()
    );
}

#[test]
fn test_phenotypes_never_reach_training() {
    // Replace the phenotypes of fold 1's test individuals by extreme values:
    // fold 1's predictions must not change, for every model.
    let dir = tempfile::tempdir().unwrap();
    let a = cv(dir.path(), &example_pheno(), &["--fold", "1"], "clean");
    let (_, folds) = read_csv(&a.join("folds.csv"));
    let test: std::collections::HashSet<String> = folds
        .iter()
        .filter(|r| r[2] == "1")
        .map(|r| r[0].clone())
        .collect();
    let text = fs::read_to_string(example_pheno()).unwrap();
    let mut out = String::new();
    for (k, line) in text.lines().enumerate() {
        let id = line.split(',').next().unwrap();
        if k > 0 && test.contains(id) {
            out.push_str(&format!("{id},1000000\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    let poisoned = dir.path().join("poisoned.csv");
    fs::write(&poisoned, out).unwrap();
    let fold_file = a.join("folds.csv");
    let b = cv(
        dir.path(),
        &poisoned,
        &["--fold", "1", "--fold-file", s(&fold_file)],
        "poisoned",
    );
    let preds = |d: &Path| -> Vec<(String, String, String)> {
        read_csv(&d.join("predictions.csv"))
            .1
            .into_iter()
            .map(|r| (r[0].clone(), r[3].clone(), r[4].clone()))
            .collect()
    };
    let (pa, pb) = (preds(&a), preds(&b));
    assert_eq!(pa.len(), 2 * test.len());
    assert_eq!(pa, pb, "predictions changed when test phenotypes changed");
}

#[test]
fn single_folds_merge_into_the_full_comparison() {
    let dir = tempfile::tempdir().unwrap();
    let full = cv(dir.path(), &example_pheno(), &[], "full");
    let parts: Vec<PathBuf> = (1..=3)
        .map(|k| {
            cv(
                dir.path(),
                &example_pheno(),
                &["--fold", &k.to_string()],
                &format!("part{k}"),
            )
        })
        .collect();
    let merged = dir.path().join("merged");
    let mut args = vec!["cv", "merge", "--out", s(&merged)];
    for p in &parts {
        args.push(s(p));
    }
    ok(&args);
    assert_eq!(
        fs::read(full.join("metrics.csv")).unwrap(),
        fs::read(merged.join("metrics.csv")).unwrap()
    );
    let j = read_json(&merged.join("summary.json"));
    assert_eq!(j["models"]["gblup"]["folds"], 3);
    // Two of the three folds are not a comparison: refused, naming the gap.
    let e = crate::common::fails(&[
        "cv",
        "merge",
        "--out",
        s(&dir.path().join("partial")),
        s(&parts[0]),
        s(&parts[2]),
    ]);
    assert!(
        e.contains("model gblup (trait trait) lacks 1 of the 3 folds")
            && e.contains("repeat 1 fold 2"),
        "{e}"
    );

    // The merge is staged like every run (issue 16): its manifest, written
    // last, lists its files; a failed merge into its folder leaves the
    // earlier merge's files as they were, and nothing staged behind.
    let manifest = read_json(&merged.join("genocnn-run.json"));
    assert_eq!(manifest["command"], "cv merge");
    let files: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in [
        "folds.csv",
        "metrics.csv",
        "predictions.csv",
        "summary.json",
    ] {
        assert!(files.contains(&f), "{f} not in {files:?}");
    }
    let before: Vec<Vec<u8>> = files
        .iter()
        .filter(|f| merged.join(f).is_file())
        .map(|f| fs::read(merged.join(f)).unwrap())
        .collect();
    crate::common::fails(&[
        "cv",
        "merge",
        "--out",
        s(&merged),
        s(&parts[0]),
        s(&parts[2]),
    ]);
    let after: Vec<Vec<u8>> = files
        .iter()
        .filter(|f| merged.join(f).is_file())
        .map(|f| fs::read(merged.join(f)).unwrap())
        .collect();
    assert!(
        before == after,
        "a failed merge changed the earlier merge's files"
    );
    assert!(!merged.join(".partial").exists());
    // A merge killed part-way leaves a staging folder that the next merge
    // clears (a merge has no --resume); a killed `cv` run's is kept.
    let stage = merged.join(".partial");
    fs::create_dir_all(&stage).unwrap();
    fs::write(
        stage.join("run.json"),
        r#"{"command":"cv merge","argv":[],"cwd":"/","version":"0","started":0}"#,
    )
    .unwrap();
    fs::write(stage.join("metrics.csv"), "half-written").unwrap();
    ok(&args);
    assert!(!stage.exists());
    assert_eq!(
        fs::read(full.join("metrics.csv")).unwrap(),
        fs::read(merged.join("metrics.csv")).unwrap()
    );
    fs::create_dir_all(&stage).unwrap();
    fs::write(
        stage.join("run.json"),
        r#"{"command":"cv","argv":[],"cwd":"/","version":"0","started":0}"#,
    )
    .unwrap();
    let e = crate::common::fails(&args);
    assert!(
        e.contains("unfinished `genocnn cv` run") && e.contains("--resume"),
        "{e}"
    );
    assert!(
        stage.join("run.json").exists(),
        "the killed cv run's state was removed"
    );
}

#[test]
fn leave_group_out_keeps_families_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = fs::read_to_string(example_pheno()).unwrap();
    let mut out = String::from("id,trait,family\n");
    for (k, line) in text.lines().enumerate().skip(1) {
        out.push_str(&format!("{line},fam{}\n", k % 7));
    }
    let p = dir.path().join("fam.csv");
    fs::write(&p, out).unwrap();
    let d = cv(
        dir.path(),
        &p,
        &["--groups", "family", "--folds", "0"],
        "groups",
    );
    let (_, folds) = read_csv(&d.join("folds.csv"));
    let mut fam_fold = std::collections::HashMap::new();
    for r in &folds {
        let k: usize = r[0].trim_start_matches("ind").parse().unwrap();
        let fam = k % 7;
        let prev = fam_fold.insert(fam, r[2].clone());
        assert!(
            prev.is_none_or(|f| f == r[2]),
            "family {fam} split over folds"
        );
    }
    assert_eq!(read_json(&d.join("summary.json"))["folds"], 7);
}

#[test]
fn nested_search_records_its_choice_per_outer_fold() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tinycnn.toml"), TINY_CNN).unwrap();
    fs::write(
        dir.path().join("search.toml"),
        "base = \"tinycnn.toml\"\nmode = \"grid\"\ninner_folds = 2\n[space]\nfilters = [2, 4]\nlr = [0.001]\n",
    )
    .unwrap();
    let search = dir.path().join("search.toml");
    let d = cv(
        dir.path(),
        &example_pheno(),
        &["--search", s(&search)],
        "search",
    );
    let (h, rows) = read_csv(&d.join("metrics.csv"));
    let note_col = h.iter().position(|c| c == "note").unwrap();
    let chosen: Vec<&Vec<String>> = rows.iter().filter(|r| r[0] == "search").collect();
    assert_eq!(chosen.len(), 3);
    for r in chosen {
        let note = &r[note_col];
        assert!(
            note.starts_with("chosen: filters=")
                && note.contains("lr=0.001")
                && note.contains("inner r="),
            "{note}"
        );
    }
    let j = read_json(&d.join("summary.json"));
    assert!(j["paired_vs_gblup"]["search"]["r_diff_mean"].is_number());
    // An unknown key in the search space is refused, naming it.
    fs::write(&search, "base = \"tinycnn.toml\"\n[space]\nfilterz = [2]\n").unwrap();
    let err = crate::common::fails(&[
        "cv",
        "--geno",
        s(&root().join("data/example.bed")),
        "--pheno",
        s(&example_pheno()),
        "--trait",
        "trait",
        "--models",
        "gblup",
        "--search",
        s(&search),
        "--out",
        s(&dir.path().join("bad")),
    ]);
    assert!(err.contains("unknown search key 'filterz'"), "{err}");
}

#[test]
fn the_container_architectures_run_cv_and_reload() {
    // inception1d (branches), resnet1d (residual blocks) and dualcnn (summed
    // towers) in cv beside GBLUP, on the same folds; then a trained one
    // saved, reloaded and predicting what it predicted in training.
    let dir = tempfile::tempdir().unwrap();
    let cfg = |c: &str| root().join("configs").join(c).display().to_string();
    let models = format!(
        "gblup,{},{},{}",
        cfg("inception1d.toml"),
        cfg("resnet1d.toml"),
        cfg("dualcnn.toml")
    );
    let out = dir.path().join("cv");
    let bed = root().join("data/example.bed");
    let pheno = example_pheno();
    ok(&[
        "cv",
        "--geno",
        s(&bed),
        "--pheno",
        s(&pheno),
        "--trait",
        "trait",
        "--models",
        &models,
        "--folds",
        "2",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--out",
        s(&out),
    ]);
    let (h, rows) = read_csv(&out.join("metrics.csv"));
    let (mi, ri) = (
        h.iter().position(|c| c == "model").unwrap(),
        h.iter().position(|c| c == "r").unwrap(),
    );
    for m in ["gblup", "inception1d", "resnet1d", "dualcnn"] {
        let rs: Vec<f64> = rows
            .iter()
            .filter(|r| r[mi] == m)
            .map(|r| r[ri].parse().unwrap())
            .collect();
        assert_eq!(rs.len(), 2, "{m}: {rows:?}");
        assert!(
            rs.iter().all(|r| r.is_finite() && r.abs() <= 1.0),
            "{m}: {rs:?}"
        );
    }

    let model = dir.path().join("resnet");
    let cfg_path = cfg("resnet1d.toml");
    ok(&crate::common::train_example_args(
        Path::new(&cfg_path),
        &model,
        &["--epochs", "2", "--val-fraction", "0"],
    ));
    // The saved weights are named after the nesting.
    let toml = fs::read_to_string(model.join("model.toml")).unwrap();
    assert!(toml.contains("type = \"residual\""), "{toml}");
    let st = fs::read(model.join("model.safetensors")).unwrap();
    let st = String::from_utf8_lossy(&st[..st.len().min(4096)]).into_owned();
    assert!(
        st.contains("layers.4.shortcut.weight") && st.contains("layers.2.layers.1.running_var"),
        "{st}"
    );
    let pred = dir.path().join("p.csv");
    ok(&[
        "predict",
        "--model",
        s(&model),
        "--geno",
        s(&bed),
        "--out",
        s(&pred),
    ]);
    let (_, p) = read_csv(&pred);
    assert_eq!(p.len(), 600);
    assert!(p.iter().all(|r| r[1].parse::<f64>().unwrap().is_finite()));
}

#[test]
fn keep_and_extract_give_the_cv_of_the_cut_fileset() {
    let dir = tempfile::tempdir().unwrap();
    let example = root().join("data/example.bed");
    let bim = fs::read_to_string(example.with_extension("bim")).unwrap();
    let fam = fs::read_to_string(example.with_extension("fam")).unwrap();
    let extract = dir.path().join("e.txt");
    let ids: String = bim
        .lines()
        .step_by(2)
        .map(|l| format!("{}\n", l.split('\t').nth(1).unwrap()))
        .collect();
    fs::write(&extract, ids).unwrap();
    let keep = dir.path().join("k.txt");
    let iids: String = fam
        .lines()
        .take(400)
        .map(|l| format!("{}\n", l.split_whitespace().nth(1).unwrap()))
        .collect();
    fs::write(&keep, iids).unwrap();
    let cut = dir.path().join("cut.bed");
    let lists = ["--keep", s(&keep), "--extract", s(&extract)];
    let mut args = vec!["convert", "--geno", s(&example), "--out", s(&cut)];
    args.extend_from_slice(&lists);
    ok(&args);
    let pheno = root().join("data/example.pheno.csv");
    let run = |geno: &Path, extra: &[&str], out: &Path| {
        let mut args = vec![
            "cv",
            "--geno",
            s(geno),
            "--pheno",
            s(&pheno),
            "--trait",
            "trait",
            "--models",
            "gblup",
            "--folds",
            "3",
            "--seed",
            "5",
            "--out",
            s(out),
        ];
        args.extend_from_slice(extra);
        ok(&args);
    };
    let (selected, whole) = (dir.path().join("selected"), dir.path().join("cut"));
    run(&example, &lists, &selected);
    run(&cut, &[], &whole);
    for f in ["metrics.csv", "predictions.csv", "folds.csv"] {
        assert!(
            fs::read(selected.join(f)).unwrap() == fs::read(whole.join(f)).unwrap(),
            "{f} differs"
        );
    }
    let (_, rows) = read_csv(&selected.join("predictions.csv"));
    assert_eq!(rows.len(), 400);
}

/// The precision of each run's networks is in `summary.json` (null where
/// only GBLUP ran), and `cv merge` refuses folds whose networks ran in
/// different precisions, as `--precision auto` gives on a cluster of
/// mixed CPUs.
#[test]
fn merge_refuses_folds_run_in_different_precisions() {
    let dir = tempfile::tempdir().unwrap();
    let a = cv(
        dir.path(),
        &example_pheno(),
        &["--fold", "1", "--precision", "fp32"],
        "a",
    );
    assert_eq!(read_json(&a.join("summary.json"))["precision"], "fp32");
    // Fold 2 as a machine with AVX512-BF16 runs it by default: in bf16
    // where this CPU has it, else its summary says so by hand.
    let b = if kernels::SimdPath::Avx512Bf16.is_available() {
        cv(
            dir.path(),
            &example_pheno(),
            &["--fold", "2", "--precision", "bf16"],
            "b",
        )
    } else {
        let b = cv(
            dir.path(),
            &example_pheno(),
            &["--fold", "2", "--precision", "fp32"],
            "b",
        );
        let summary = fs::read_to_string(b.join("summary.json")).unwrap();
        assert!(summary.contains(r#""precision": "fp32""#), "{summary}");
        fs::write(
            b.join("summary.json"),
            summary.replace(r#""precision": "fp32""#, r#""precision": "bf16""#),
        )
        .unwrap();
        b
    };
    let e = crate::common::fails(&[
        "cv",
        "merge",
        "--out",
        s(&dir.path().join("merged")),
        s(&a),
        s(&b),
    ]);
    assert!(
        e.contains(&format!("{} ran its networks in bf16", b.display()))
            && e.contains("in fp32")
            && e.contains("same --precision"),
        "{e}"
    );
    // GBLUP alone has no precision.
    let out = cv(
        dir.path(),
        &example_pheno(),
        &["--models", "gblup", "--fold", "3"],
        "gblup",
    );
    assert!(read_json(&out.join("summary.json"))["precision"].is_null());
}
