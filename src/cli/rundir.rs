//! A run's output folder, written so that a reader sees the previous run's
//! files or this run's, never a mix.
//!
//! A run writes into `OUT/.partial/` (its files, and what `--resume` needs:
//! the command line and the checkpoints). At the end its files move into
//! `OUT`, each by a rename: first the old run's manifest `OUT/genocnn-run.json`
//! goes, then the old run's files that this run does not write, then the
//! new files move in, and the new manifest, written last, lists them with
//! the command that made them. A run killed before the end leaves `OUT` as
//! it was; one killed during the moves (milliseconds) leaves `OUT` without
//! a manifest, and `--resume` finishes them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The staging folder inside `OUT`.
pub const STAGE: &str = ".partial";
/// The manifest of a finished run.
pub const MANIFEST: &str = "genocnn-run.json";
/// The command line of a run under way, in the staging folder.
const RUN: &str = "run.json";
/// The commands that can continue a killed run (`--resume`).
pub const RESUMABLE: [&str; 2] = ["train", "cv"];
/// What stays in the staging folder: the state `--resume` reads.
const STATE: [&str; 3] = [RUN, "checkpoint.safetensors", "jobs"];

/// How a run was started: enough to start it again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub command: String,
    /// The arguments after `genocnn`, as given.
    pub argv: Vec<String>,
    /// The folder the run started in (relative paths are relative to it).
    pub cwd: PathBuf,
    pub version: String,
    /// Seconds since 1970 when the run started.
    pub started: u64,
    /// The precision the run's networks started in (what `--precision
    /// auto` chose there): a resumed run keeps it, on whatever CPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

impl RunRecord {
    /// The arguments that run it again: as given, with `--precision` set
    /// to the one it started in, where it recorded one.
    pub fn argv_again(&self) -> Vec<String> {
        let Some(p) = &self.precision else {
            return self.argv.clone();
        };
        let mut out = Vec::with_capacity(self.argv.len() + 2);
        let mut args = self.argv.iter();
        while let Some(a) = args.next() {
            if a == "--precision" {
                args.next();
            } else if !a.starts_with("--precision=") {
                out.push(a.clone());
            }
        }
        out.extend(["--precision".to_string(), p.clone()]);
        out
    }
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    #[serde(flatten)]
    run: RunRecord,
    finished: u64,
    files: Vec<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A run's output folder. A new run that ends in an error (not a kill,
/// which runs no code) removes its staging folder, and the output folder
/// too when the run created it, so that a failed run leaves nothing
/// behind and the next run starts clean; a resumed run keeps its state.
pub struct RunDir {
    out: PathBuf,
    stage: PathBuf,
    record: RunRecord,
    resumed: bool,
    created_out: bool,
    committed: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.committed || self.resumed {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.stage);
        if self.created_out {
            // Only when empty: nothing of anyone else's is removed.
            let _ = std::fs::remove_dir(&self.out);
        }
    }
}

impl RunDir {
    /// Starts a run of `command` into `out`, its networks in `precision`
    /// (kept for `--resume`; `None` where it runs none). An unfinished run
    /// already in `out` is not thrown away unasked: the error says how to
    /// resume it or start again.
    pub fn start(out: &Path, command: &str, precision: Option<String>) -> Result<RunDir> {
        let stage = out.join(STAGE);
        // A killed run of a command that cannot resume (`cv merge`) leaves
        // nothing worth keeping; any other is kept until the user says.
        let stale = std::fs::read_to_string(stage.join(RUN)).ok().map(|t| {
            serde_json::from_str::<RunRecord>(&t).map_or_else(|_| "?".to_string(), |r| r.command)
        });
        if let Some(stale) = stale.filter(|c| RESUMABLE.contains(&c.as_str()) || c == "?") {
            let command = if stale == "?" { command } else { &stale };
            bail!(
                "{} holds an unfinished `genocnn {command}` run (in {}); continue it with `genocnn {command} --resume {}`, or remove {} to start again",
                out.display(),
                stage.display(),
                out.display(),
                stage.display()
            );
        }
        if stage.exists() {
            std::fs::remove_dir_all(&stage)
                .with_context(|| format!("cannot clear {}", stage.display()))?;
        }
        let created_out = !out.exists();
        std::fs::create_dir_all(&stage)
            .with_context(|| format!("cannot create the output directory {}", out.display()))?;
        let argv: Vec<String> = std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let record = RunRecord {
            command: command.to_string(),
            argv,
            cwd: std::env::current_dir().context("cannot read the current directory")?,
            version: env!("CARGO_PKG_VERSION").to_string(),
            started: now(),
            precision,
        };
        let run = RunDir {
            out: out.to_path_buf(),
            stage,
            record,
            resumed: false,
            created_out,
            committed: false,
        };
        let text = serde_json::to_string_pretty(&run.record)? + "\n";
        geno::write_atomic(run.stage.join(RUN), text.as_bytes())?;
        Ok(run)
    }

    /// Opens the unfinished run in `out` to continue it.
    pub fn resume(out: &Path, record: RunRecord) -> RunDir {
        RunDir {
            out: out.to_path_buf(),
            stage: out.join(STAGE),
            record,
            resumed: true,
            created_out: false,
            committed: false,
        }
    }

    /// Where the run writes its files.
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// Whether this run continues a killed one.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// Moves the run's files into the output folder and writes the manifest.
    pub fn commit(mut self) -> Result<()> {
        let mut files: Vec<String> = Vec::new();
        for e in std::fs::read_dir(&self.stage)
            .with_context(|| format!("cannot read {}", self.stage.display()))?
        {
            let name = e?.file_name().to_string_lossy().into_owned();
            if !STATE.contains(&name.as_str()) && !name.contains(".tmp-") {
                files.push(name);
            }
        }
        files.sort();
        // From here on a failure leaves the staging folder for --resume.
        self.committed = true;
        let manifest = self.out.join(MANIFEST);
        // The old run's files, from its manifest; the manifest goes first,
        // so that a folder caught between runs says it is incomplete.
        let old: Vec<String> = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<Manifest>(&t).ok())
            .map(|m| m.files)
            .unwrap_or_default();
        if manifest.exists() {
            std::fs::remove_file(&manifest)
                .with_context(|| format!("cannot replace {}", manifest.display()))?;
        }
        for f in old.iter().filter(|f| !files.contains(f)) {
            remove(&self.out.join(f))?;
        }
        for f in &files {
            let target = self.out.join(f);
            if target.is_dir() {
                remove(&target)?;
            }
            std::fs::rename(self.stage.join(f), &target)
                .with_context(|| format!("cannot move {} into place", target.display()))?;
        }
        let m = Manifest {
            run: self.record.clone(),
            finished: now(),
            files,
        };
        let text = serde_json::to_string_pretty(&m)? + "\n";
        geno::write_atomic(&manifest, text.as_bytes())?;
        std::fs::remove_dir_all(&self.stage)
            .with_context(|| format!("cannot remove {}", self.stage.display()))?;
        Ok(())
    }
}

fn remove(p: &Path) -> Result<()> {
    let r = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove the old {}", p.display())),
    }
}

/// For `genocnn CMD --resume DIR`: the unfinished run's record, after
/// moving to the folder it started in. `None` when `args` is not that.
pub fn resumed_run(args: &[OsString]) -> Result<Option<(PathBuf, RunRecord)>> {
    let [_, cmd, flag, dir] = args else {
        return Ok(None);
    };
    let (Some(cmd), Some(flag)) = (cmd.to_str(), flag.to_str()) else {
        return Ok(None);
    };
    if !RESUMABLE.contains(&cmd) || flag != "--resume" {
        return Ok(None);
    }
    let dir = PathBuf::from(dir);
    let path = dir.join(STAGE).join(RUN);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join(MANIFEST).exists() {
                bail!(
                    "--resume {}: the run there finished (see {}); there is nothing to resume",
                    dir.display(),
                    dir.join(MANIFEST).display()
                );
            }
            bail!(
                "--resume {}: no unfinished run there (no {})",
                dir.display(),
                path.display()
            );
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let record: RunRecord = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a run record genocnn wrote", path.display()))?;
    if record.command != cmd {
        bail!(
            "--resume {}: the unfinished run there is `genocnn {}`, not `genocnn {cmd}`",
            dir.display(),
            record.command
        );
    }
    // The run's own paths are relative to where it started.
    let dir =
        std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    std::env::set_current_dir(&record.cwd).with_context(|| {
        format!(
            "--resume: cannot move to {}, where the run started",
            record.cwd.display()
        )
    })?;
    Ok(Some((dir, record)))
}

/// A test hook: when the environment variable `var` (`GENOCNN_KILL_AFTER_EPOCH`
/// for train, `GENOCNN_KILL_AFTER_JOBS` for cv) equals `done`, the run kills
/// itself with SIGKILL, as a user's `kill -9` or a cluster's time limit
/// would, right after keeping its state for `--resume`.
pub fn kill_hook(var: &str, done: usize) {
    let at = std::env::var(var)
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    if at == Some(done) {
        // SAFETY: kill(2) on our own process id has no memory effects.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RunRecord;

    fn record(argv: &[&str], precision: Option<&str>) -> RunRecord {
        RunRecord {
            command: "train".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            cwd: "/".into(),
            version: "0".into(),
            started: 0,
            precision: precision.map(str::to_string),
        }
    }

    #[test]
    fn a_resumed_run_is_given_the_precision_it_recorded() {
        let again = |argv: &[&str], p| record(argv, p).argv_again();
        assert_eq!(
            again(&["train", "--seed", "3"], None),
            ["train", "--seed", "3"]
        );
        assert_eq!(
            again(&["train", "--seed", "3"], Some("fp32")),
            ["train", "--seed", "3", "--precision", "fp32"]
        );
        assert_eq!(
            again(
                &["train", "--precision", "auto", "--seed", "3"],
                Some("bf16")
            ),
            ["train", "--seed", "3", "--precision", "bf16"]
        );
        assert_eq!(
            again(&["train", "--precision=auto", "--out", "o"], Some("fp32")),
            ["train", "--out", "o", "--precision", "fp32"]
        );
    }
}
