//! Helpers: run the binary, find fixtures and the shared real data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genocnn"))
        .args(args)
        .output()
        .expect("run genocnn")
}

/// Runs genocnn and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "genocnn {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs genocnn, asserts a clean failure (exit 1, an error line, no panic)
/// and returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "genocnn {} should fail with exit 1; stderr:\n{err}",
        args.join(" ")
    );
    assert!(
        err.lines().any(|l| l.starts_with("error: ")),
        "no error line: {err}"
    );
    assert!(!err.contains("panicked"), "panicked: {err}");
    err
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The shared real data, or `None` (printing why the test skips).
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("GENOCNN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "skipping {test}: {} not found (set GENOCNN_SHARED_DATA to the real data)",
            dir.display()
        );
        None
    }
}

/// Whether a program is on PATH (printing why the test skips when not).
pub fn have(program: &str, test: &str) -> bool {
    let found = Command::new(program).arg("--version").output().is_ok();
    if !found {
        eprintln!("skipping {test}: {program} is not installed (apt-get install plink1.9)");
    }
    found
}

/// The bundled example's genotypes (`data/example.bed`).
pub fn example_bed() -> &'static str {
    static P: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    P.get_or_init(|| root_path("data/example.bed"))
}

/// The bundled example's phenotypes (`data/example.pheno.csv`).
pub fn example_pheno() -> &'static str {
    static P: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    P.get_or_init(|| root_path("data/example.pheno.csv"))
}

fn root_path(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// The arguments of `genocnn train` of `config` on the bundled example's
/// trait into `out`, then `extra`.
pub fn train_example_args<'a>(config: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--geno",
        example_bed(),
        "--pheno",
        example_pheno(),
        "--trait",
        "trait",
        "--model",
        s(config),
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    args
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read json")).expect("parse json")
}

/// Reads a CSV written by genocnn into a header and rows of fields.
pub fn read_csv(p: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(p).expect("read csv");
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(String::from)
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

/// Runs plink1.9 and asserts success.
pub fn plink(args: &[&str]) {
    let out = Command::new("plink1.9")
        .args(args)
        .output()
        .expect("run plink1.9");
    assert!(
        out.status.success(),
        "plink1.9 {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
}
