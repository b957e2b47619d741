//! Cross-validation on workflow engines (issue 18): the Snakemake workflow
//! and the Slurm job array in `examples/` run for real, and their merged
//! output must equal a single `genocnn cv` with the same seed, byte for byte
//! on metrics.csv. The tools come from `scripts/workflow-tools.sh` (run by
//! `.ci/run`); where one is missing, its test skips and says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{ok, s};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

const FOLDS: &str = "3";
const SEED: &str = "7";

/// The models of the comparison: GBLUP and a network (a config by path).
fn models() -> String {
    format!("gblup,{}", s(&root().join("configs/mlp.toml")))
}

/// One `genocnn cv` over every fold: what the workflows must reproduce.
fn single_cv(dir: &Path) -> PathBuf {
    let out = dir.join("single");
    ok(&[
        "cv",
        "--geno",
        s(&root().join("data/example.bed")),
        "--pheno",
        s(&root().join("data/example.pheno.csv")),
        "--trait",
        "trait",
        "--models",
        &models(),
        "--folds",
        FOLDS,
        "--seed",
        SEED,
        "--out",
        s(&out),
    ]);
    out
}

/// One fold run per job beside `merged`, and a merge equal to the single cv.
fn assert_same_as_single_cv(dir: &Path, merged: &Path) {
    for k in 1..=3 {
        let fold = dir.join(format!("merged.folds/fold_{k}/metrics.csv"));
        assert!(fold.is_file(), "{} is missing", fold.display());
    }
    let single = single_cv(dir);
    let a = std::fs::read(single.join("metrics.csv")).unwrap();
    let b = std::fs::read(merged.join("metrics.csv")).unwrap();
    assert!(
        a == b,
        "metrics.csv differs:\n--- single cv\n{}\n--- merged\n{}",
        String::from_utf8_lossy(&a),
        String::from_utf8_lossy(&b)
    );
    let manifest = crate::common::read_json(&merged.join("genocnn-run.json"));
    assert_eq!(manifest["command"], "cv merge");
}

/// Snakemake: `GENOCNN_SNAKEMAKE`, the one scripts/workflow-tools.sh
/// installs, or one on PATH.
fn snakemake() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("GENOCNN_SNAKEMAKE").map(PathBuf::from),
        Some(root().join("target/tools/snakemake/bin/snakemake")),
        Some(PathBuf::from("snakemake")),
    ];
    candidates.into_iter().flatten().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs examples/Snakefile on the bundled example into `dir/merged`, with
/// `extra` options before `--config`.
fn run_snakefile(snakemake: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(snakemake)
        .args(["-s", s(&root().join("examples/Snakefile"))])
        .args(["--cores", "2", "--directory", s(dir)])
        .args(extra)
        .arg("--config")
        .arg(format!("genocnn={}", env!("CARGO_BIN_EXE_genocnn")))
        .arg(format!("geno={}", s(&root().join("data/example.bed"))))
        .arg(format!(
            "pheno={}",
            s(&root().join("data/example.pheno.csv"))
        ))
        .arg("trait=trait")
        .arg(format!("models={}", models()))
        .arg(format!("folds={FOLDS}"))
        .arg(format!("seed={SEED}"))
        .arg(format!("out={}", s(&dir.join("merged"))))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "snakemake failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn snakemake_sends_the_folds_to_slurm_through_the_profile() {
    let test = "snakemake_sends_the_folds_to_slurm_through_the_profile";
    let Some(snakemake) = snakemake() else {
        eprintln!("skipping {test}: no snakemake (scripts/workflow-tools.sh installs it)");
        return;
    };
    let plugin = Command::new(&snakemake)
        .args(["--help"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--slurm-status-command"));
    if !plugin {
        eprintln!(
            "skipping {test}: snakemake has no Slurm executor \
             (pip install snakemake-executor-plugin-slurm; scripts/workflow-tools.sh does)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(slurm) = Slurm::start(dir.path(), test) else {
        return;
    };
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    // The local Slurm has no accounting: job states come from squeue.
    run_snakefile(
        &snakemake,
        &work,
        &[
            "--profile",
            s(&root().join("examples/slurm")),
            "--slurm-no-account",
            "--slurm-status-command",
            "squeue",
            "--slurm-init-seconds-before-status-checks",
            "1",
        ],
        &[("SLURM_CONF", &slurm.conf)],
    );
    assert_same_as_single_cv(&work, &work.join("merged"));
}

#[test]
fn snakemake_runs_a_job_per_fold_and_merges_to_the_single_cv() {
    let Some(snakemake) = snakemake() else {
        eprintln!(
            "skipping snakemake_runs_a_job_per_fold_and_merges_to_the_single_cv: no snakemake \
             (scripts/workflow-tools.sh installs it from PyPI into target/tools/snakemake)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged");
    run_snakefile(&snakemake, dir.path(), &[], &[]);
    assert_same_as_single_cv(dir.path(), &merged);
}

/// Stops the local Slurm when the test ends, passed or failed. One local
/// Slurm at a time: its daemons listen on fixed ports.
struct Slurm {
    dir: PathBuf,
    conf: String,
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_SLURM: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Slurm {
    /// Starts a single-node Slurm under `dir`, or says why it cannot.
    fn start(dir: &Path, test: &str) -> Option<Slurm> {
        let one = ONE_SLURM.lock().unwrap_or_else(|e| e.into_inner());
        let state = dir.join("slurm");
        let started = Command::new(root().join("scripts/slurm-local.sh"))
            .arg("start")
            .env("GENOCNN_SLURM_DIR", &state)
            .output()
            .unwrap();
        let slurm = Slurm {
            dir: state,
            conf: String::from_utf8_lossy(&started.stdout).trim().to_string(),
            _one: one,
        };
        if started.status.code() == Some(3) {
            eprintln!(
                "skipping {test}: {}",
                String::from_utf8_lossy(&started.stderr).trim()
            );
            return None;
        }
        assert!(
            started.status.success(),
            "scripts/slurm-local.sh start failed:\n{}",
            String::from_utf8_lossy(&started.stderr)
        );
        Some(slurm)
    }
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/slurm-local.sh"))
            .arg("stop")
            .env("GENOCNN_SLURM_DIR", &self.dir)
            .output();
    }
}

#[test]
fn cv_slurm_script_runs_on_a_local_slurm_and_merges_to_the_single_cv() {
    let test = "cv_slurm_script_runs_on_a_local_slurm_and_merges_to_the_single_cv";
    let dir = tempfile::tempdir().unwrap();
    let Some(slurm) = Slurm::start(dir.path(), test) else {
        return;
    };
    let conf = slurm.conf.clone();
    let merged = dir.path().join("merged");
    let submit = Command::new("sbatch")
        .args(["--array=1-3", "--cpus-per-task=1", "--mem=500M"])
        .arg(format!("--output={}/fold-%A_%a.log", s(dir.path())))
        .arg("--export=ALL")
        .arg(root().join("examples/cv-slurm.sh"))
        .current_dir(dir.path())
        .env("SLURM_CONF", &conf)
        .env("GENOCNN", env!("CARGO_BIN_EXE_genocnn"))
        .env("GENO", root().join("data/example.bed"))
        .env("PHENO", root().join("data/example.pheno.csv"))
        .env("TRAIT", "trait")
        .env("MODELS", models())
        .env("SEED", SEED)
        .env("OUT", &merged)
        .output()
        .unwrap();
    assert!(
        submit.status.success(),
        "sbatch failed:\n{}",
        String::from_utf8_lossy(&submit.stderr)
    );
    // The array's first task submits the merge; its manifest comes last.
    let deadline = Instant::now() + Duration::from_secs(300);
    while !merged.join("genocnn-run.json").exists() {
        if Instant::now() > deadline {
            let logs: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .map(|e| {
                    format!(
                        "{}:\n{}",
                        e.path().display(),
                        std::fs::read_to_string(e.path()).unwrap_or_default()
                    )
                })
                .collect();
            let queue = Command::new("squeue").env("SLURM_CONF", &conf).output();
            panic!(
                "no merged output after 300 s; squeue:\n{}\nlogs:\n{}",
                queue.map_or(String::new(), |o| String::from_utf8_lossy(&o.stdout).into()),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_same_as_single_cv(dir.path(), &merged);
}
