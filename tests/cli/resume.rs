//! Kills and resumption (issue 16): a run killed with SIGKILL leaves its
//! output folder as the previous run left it, and `--resume` finishes it
//! with the same files as a run that was never stopped.
//!
//! The kills come from the binary's test hooks (`GENOCNN_KILL_AFTER_EPOCH`,
//! `GENOCNN_KILL_AFTER_JOBS`): a real SIGKILL, sent at a chosen point so
//! that the tests do not depend on timing.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::common::{example_bed, example_pheno, fails, ok, s};

/// Runs genocnn with `env` set; asserts that SIGKILL ended it.
fn killed(env: (&str, &str), args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_genocnn"))
        .env(env.0, env.1)
        .args(args)
        .output()
        .expect("run genocnn");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "expected SIGKILL; status {:?}, stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train_args<'a>(out: &'a Path, config: &'a str) -> Vec<&'a str> {
    let extra = ["--epochs", "6", "--threads", "2"];
    crate::common::train_example_args(Path::new(config), out, &extra)
}

fn config() -> String {
    // cnn1d-pez: convolutions, batch norm, dropout, Adam, a validation
    // split and early stopping; all of their state must survive the kill.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/cnn1d-pez.toml")
        .display()
        .to_string()
}

#[test]
fn a_killed_training_run_resumes_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let full = dir.path().join("full");
    ok(&train_args(&full, &cfg));

    let out = dir.path().join("killed");
    killed(("GENOCNN_KILL_AFTER_EPOCH", "2"), &train_args(&out, &cfg));
    // Nothing of the killed run is in the folder yet: only its staging.
    let visible: Vec<_> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(visible, vec![".partial".to_string()]);
    assert!(out.join(".partial/checkpoint.safetensors").exists());
    // Starting it again without --resume is refused, saying how to resume.
    let e = fails(&train_args(&out, &cfg));
    assert!(
        e.contains("holds an unfinished `genocnn train` run") && e.contains("--resume"),
        "{e}"
    );

    let log = ok(&["train", "--resume", s(&out)]);
    assert!(log.contains("6 run"), "{log}");
    assert_eq!(
        fs::read(full.join("model.safetensors")).unwrap(),
        fs::read(out.join("model.safetensors")).unwrap(),
        "the resumed model differs from the uninterrupted one"
    );
    // The history is the whole run's, with the same losses (not times).
    let losses = |p: &Path| -> Vec<String> {
        fs::read_to_string(p.join("history.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&full), losses(&out));
    assert!(!out.join(".partial").exists());
    let manifest = crate::common::read_json(&out.join("genocnn-run.json"));
    assert_eq!(manifest["command"], "train");
    assert_eq!(manifest["files"].as_array().unwrap().len(), 4);
    // A finished run has nothing to resume.
    let e = fails(&["train", "--resume", s(&out)]);
    assert!(e.contains("there is nothing to resume"), "{e}");
}

#[test]
fn a_run_killed_in_its_first_epoch_starts_again_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let full = dir.path().join("full");
    ok(&train_args(&full, &cfg));
    let out = dir.path().join("k");
    // A kill before the first checkpoint: the kill after epoch 1, with
    // that checkpoint removed, as if the kill had come a moment earlier.
    killed(("GENOCNN_KILL_AFTER_EPOCH", "1"), &train_args(&out, &cfg));
    fs::remove_file(out.join(".partial/checkpoint.safetensors")).unwrap();
    ok(&["train", "--resume", s(&out)]);
    assert_eq!(
        fs::read(full.join("model.safetensors")).unwrap(),
        fs::read(out.join("model.safetensors")).unwrap()
    );
}

fn cv_args<'a>(out: &'a Path, seed: &'a str, mlp: &'a str) -> Vec<&'a str> {
    vec![
        "cv",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--models",
        mlp,
        "--folds",
        "3",
        "--epochs",
        "3",
        "--seed",
        seed,
        "--out",
        s(out),
    ]
}

#[test]
fn a_killed_cv_leaves_the_old_run_whole_and_resumes_to_the_same_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mlp = format!(
        "gblup,{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("configs/mlp.toml")
            .display()
    );
    let full = dir.path().join("full");
    ok(&cv_args(&full, "7", &mlp));

    // The folder holds an earlier run (another seed, so other folds).
    let out = dir.path().join("cv");
    ok(&cv_args(&out, "1", &mlp));
    let before: Vec<(String, Vec<u8>)> = ["folds.csv", "metrics.csv", "predictions.csv"]
        .iter()
        .map(|f| (f.to_string(), fs::read(out.join(f)).unwrap()))
        .collect();
    // A new run into it is killed after 3 of its 6 jobs.
    killed(("GENOCNN_KILL_AFTER_JOBS", "3"), &cv_args(&out, "7", &mlp));
    for (f, bytes) in &before {
        assert_eq!(
            &fs::read(out.join(f)).unwrap(),
            bytes,
            "{f} changed: the folder mixes two runs"
        );
    }
    let kept = fs::read_dir(out.join(".partial/jobs")).unwrap().count();
    assert_eq!(kept, 3, "3 finished jobs kept for the resume");

    let log = ok(&["cv", "--resume", s(&out)]);
    assert!(log.contains("| mlp |"), "{log}");
    for f in ["metrics.csv", "predictions.csv", "folds.csv"] {
        assert_eq!(
            fs::read(full.join(f)).unwrap(),
            fs::read(out.join(f)).unwrap(),
            "{f}: the resumed run differs from the uninterrupted one"
        );
    }
    let manifest = crate::common::read_json(&out.join("genocnn-run.json"));
    assert_eq!(manifest["command"], "cv");
    assert!(manifest["argv"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "7"));
    let summary = crate::common::read_json(&out.join("summary.json"));
    assert_eq!(summary["resumed"], true);
}

#[test]
fn resume_says_what_is_wrong_with_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let e = fails(&["cv", "--resume", s(dir.path())]);
    assert!(e.contains("no unfinished run there"), "{e}");
    // A train run's folder is not a cv run's.
    let out = dir.path().join("t");
    let cfg = config();
    killed(("GENOCNN_KILL_AFTER_EPOCH", "1"), &train_args(&out, &cfg));
    let e = fails(&["cv", "--resume", s(&out)]);
    assert!(
        e.contains("the unfinished run there is `genocnn train`"),
        "{e}"
    );
}

#[test]
fn a_run_that_fails_leaves_no_folder_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A dense layer straight after a convolution: refused when the network
    // is built, after the inputs were read and the folder made.
    let cfg = dir.path().join("bad.toml");
    fs::write(
        &cfg,
        "[[layers]]\ntype = \"conv1d\"\nfilters = 2\nkernel = 3\n[[layers]]\ntype = \"dense\"\nunits = 1\n",
    )
    .unwrap();
    let out = dir.path().join("o");
    let e = fails(&train_args(&out, s(&cfg)));
    // The error names the config file and the layer.
    assert!(
        e.contains("bad.toml: layer 1 (dense)") && e.contains("needs a flat input"),
        "{e}"
    );
    assert!(!out.exists(), "the failed run left {}", out.display());
    // Into an existing folder, the folder stays and holds nothing new.
    fs::create_dir(&out).unwrap();
    fails(&train_args(&out, s(&cfg)));
    assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
}

/// A resumed run keeps the precision its networks started in, whatever
/// `--precision auto` would choose on the CPU that resumes it: the record
/// of a run started on another machine is edited to say so.
#[test]
fn a_resumed_run_keeps_the_precision_it_started_in() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config();
    let out = dir.path().join("k");
    killed(("GENOCNN_KILL_AFTER_EPOCH", "2"), &train_args(&out, &cfg));
    let record_path = out.join(".partial/run.json");
    let record = fs::read_to_string(&record_path).unwrap();
    let here = crate::common::read_json(&record_path)["precision"]
        .as_str()
        .unwrap()
        .to_string();
    let summary_of_auto = if kernels::SimdPath::Avx512Bf16.is_available()
        && std::env::var_os("GENOCNN_SIMD").is_none()
    {
        "bf16"
    } else {
        "fp32"
    };
    if std::env::var_os("GENOCNN_SIMD").is_none() {
        assert_eq!(here, summary_of_auto, "{record}");
    }
    let other = if here == "bf16" { "fp32" } else { "bf16" };
    fs::write(
        &record_path,
        record.replace(
            &format!(r#""precision": "{here}""#),
            &format!(r#""precision": "{other}""#),
        ),
    )
    .unwrap();
    if other == "bf16" && !kernels::SimdPath::Avx512Bf16.is_available() {
        // Started in bf16 elsewhere; this CPU cannot continue it.
        let e = fails(&["train", "--resume", s(&out)]);
        assert!(e.contains("AVX512-BF16"), "{e}");
        return;
    }
    ok(&["train", "--resume", s(&out)]);
    let summary = crate::common::read_json(&out.join("summary.json"));
    assert_eq!(summary["precision"], other, "{summary}");
    assert_eq!(summary["resumed"], true);
    let manifest = crate::common::read_json(&out.join("genocnn-run.json"));
    assert_eq!(manifest["precision"], other, "{manifest}");
}
