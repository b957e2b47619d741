//! The transfer-learning flags of `train` and `image train`: start from a
//! saved model, freeze layers, fine-tune in a second phase. The flags are
//! checked once into a [`Plan`], applied to the new network before
//! training; what was copied, skipped and initialised is printed and goes
//! into `summary.json`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use model::transfer::{self, SourceWeights};
use model::{LayerSelection, ModelSpec, Phase, Provenance, TransferReport};
use nn::{Backend, Network};
use serde_json::json;

#[derive(Args, Debug, Clone, Default)]
pub struct TransferArgs {
    /// Start from a saved model (of `train` or `image train`): every tensor
    /// whose name and shape match is copied, the rest is initialised. A
    /// model on another marker panel still gives its convolutional base.
    #[arg(long, value_name = "DIR")]
    pub init_from: Option<PathBuf>,
    /// Layers initialised afresh even where --init-from has them: head
    /// (from the first flatten, global pool or dense layer on) or paths.
    #[arg(long, value_name = "head|PATH[,PATH…]", requires = "init_from")]
    pub reinit: Option<String>,
    /// Freeze layers in the first phase: base (every layer before the
    /// first flatten, global pool or dense layer), or spec paths such as
    /// layers.0,layers.2 (a container freezes all inside it). A frozen
    /// layer gets no gradient, no update and no penalty; a frozen batch
    /// norm runs in inference mode and keeps its statistics.
    #[arg(long, value_name = "base|PATH[,PATH…]")]
    pub freeze: Option<String>,
    /// After the first phase, unfreeze --unfreeze and train up to N more
    /// epochs at --fine-tune-lr, with early stopping.
    #[arg(long, value_name = "N", requires = "freeze")]
    pub fine_tune_epochs: Option<usize>,
    /// The fine-tuning phase's learning rate (default: a tenth of the first phase's).
    #[arg(long, value_name = "LR", requires = "fine_tune_epochs")]
    pub fine_tune_lr: Option<f32>,
    /// The layers unfrozen for fine-tuning (default all: every frozen layer).
    #[arg(long, value_name = "all|PATH[,PATH…]", requires = "fine_tune_epochs")]
    pub unfreeze: Option<String>,
}

/// The transfer flags, checked against the new network and applied to it.
pub struct Plan {
    pub source: Option<SourceWeights>,
    pub report: Option<TransferReport>,
    /// Why layers were initialised afresh on purpose, for the report.
    pub reinit_note: Option<String>,
    pub phases: Vec<Phase>,
}

fn selection(text: &str, flag: &str) -> Result<LayerSelection> {
    LayerSelection::parse(text).map_err(|e| anyhow::anyhow!("{flag} {e}"))
}

impl TransferArgs {
    /// Whether any transfer flag was given.
    pub fn any(&self) -> bool {
        self.init_from.is_some() || self.freeze.is_some()
    }

    /// Reads the source model (before the network is built: an image
    /// model's classes decide the output layer).
    pub fn source(&self) -> Result<Option<SourceWeights>> {
        Ok(match &self.init_from {
            Some(d) => Some(model::read_weights(d)?),
            None => None,
        })
    }

    /// Copies the source's weights into `network` (all but `reinit`, and
    /// the flag's), and builds the phases: `epochs` at `lr` with the
    /// frozen layers, then the fine-tuning phase.
    pub fn plan<B: Backend>(
        &self,
        source: Option<SourceWeights>,
        spec: &ModelSpec,
        network: &mut Network<B>,
        mut reinit: Vec<String>,
        reinit_note: Option<String>,
    ) -> Result<Plan> {
        if let Some(r) = &self.reinit {
            reinit.extend(transfer::resolve(
                &selection(r, "--reinit")?,
                &spec.layers,
                network,
                "--reinit",
            )?);
        }
        let report = match &source {
            Some(s) => Some(transfer::init_from(network, s, &reinit)?),
            None => None,
        };
        let t = &spec.training;
        let mut phases = Vec::new();
        if let Some(f) = &self.freeze {
            let frozen = transfer::resolve(
                &selection(f, "--freeze")?,
                &spec.layers,
                network,
                "--freeze",
            )?;
            phases.push(Phase {
                frozen: frozen.clone(),
                epochs: t.epochs,
                lr: t.lr,
            });
            if let Some(n) = self.fine_tune_epochs {
                if n == 0 {
                    bail!("--fine-tune-epochs must be at least 1");
                }
                let lr = self.fine_tune_lr.unwrap_or(t.lr / 10.0);
                if !(lr.is_finite() && lr > 0.0) {
                    bail!("--fine-tune-lr {lr}: expected a positive learning rate");
                }
                let unfreeze = match self.unfreeze.as_deref().unwrap_or("all") {
                    "all" => frozen.clone(),
                    u => transfer::resolve(
                        &selection(u, "--unfreeze")?,
                        &spec.layers,
                        network,
                        "--unfreeze",
                    )?,
                };
                phases.push(Phase {
                    frozen: still_frozen(network, &frozen, &unfreeze)?,
                    epochs: n,
                    lr,
                });
            }
            transfer::check_phases(network, &phases)?;
        }
        Ok(Plan {
            source,
            report,
            reinit_note,
            phases,
        })
    }
}

/// The layers still frozen after `unfreeze`: the frozen parameters' layers,
/// less those inside an unfrozen path. A path that unfreezes nothing is an error.
fn still_frozen<B: Backend>(
    network: &Network<B>,
    frozen: &[String],
    unfreeze: &[String],
) -> Result<Vec<String>> {
    let names: Vec<&str> = network
        .params()
        .iter()
        .filter(|p| transfer::inside(&p.name, frozen))
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>();
    for u in unfreeze {
        let one = std::slice::from_ref(u);
        let has_params = network
            .params()
            .iter()
            .any(|p| transfer::inside(&p.name, one));
        if has_params && !names.iter().any(|n| transfer::inside(n, one)) {
            bail!(
                "--unfreeze {u}: it is not frozen (--freeze freezes {})",
                frozen.join(", ")
            );
        }
    }
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if transfer::inside(n, unfreeze) {
            continue;
        }
        let layer = n.rsplit_once('.').map_or(n, |(l, _)| l).to_string();
        if !out.contains(&layer) {
            out.push(layer);
        }
    }
    Ok(out)
}

impl Plan {
    /// What was copied, skipped, initialised and frozen, for the terminal.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if let (Some(src), Some(r)) = (&self.source, &self.report) {
            s.push_str(&format!(
                "from {} (sha256 {}…): {} tensors copied, {} skipped, {} initialised\n",
                src.dir.display(),
                &src.sha256[..12],
                r.copied.len(),
                r.skipped.len(),
                r.initialised.len()
            ));
            for k in &r.skipped {
                s.push_str(&format!(
                    "  skipped {}: {:?} in the source, {:?} here\n",
                    k.name, k.source_shape, k.shape
                ));
            }
            if !r.initialised.is_empty() {
                s.push_str(&format!("  initialised {}\n", r.initialised.join(", ")));
            }
            if let Some(n) = &self.reinit_note {
                s.push_str(&format!("  {n}\n"));
            }
        }
        for (k, ph) in self.phases.iter().enumerate() {
            s.push_str(&format!(
                "phase {}: up to {} epochs at lr {:e}, frozen: {}\n",
                k + 1,
                ph.epochs,
                ph.lr,
                if ph.frozen.is_empty() {
                    "nothing".to_string()
                } else {
                    ph.frozen.join(", ")
                }
            ));
        }
        s
    }

    /// The provenance to save with the model, from what the phases did.
    pub fn provenance(&self, trained: &Provenance) -> Provenance {
        Provenance {
            source: self.source.as_ref().map(|s| s.dir.display().to_string()),
            source_sha256: self.source.as_ref().map(|s| s.sha256.clone()),
            copied: self.report.as_ref().map_or(0, |r| r.copied.len()),
            skipped: self.report.as_ref().map_or(0, |r| r.skipped.len()),
            initialised: self.report.as_ref().map_or(0, |r| r.initialised.len()),
            phases: trained.phases.clone(),
        }
    }

    /// `summary.json`'s `transfer` object.
    pub fn json(&self, trained: &Provenance) -> serde_json::Value {
        json!({
            "source": self.source.as_ref().map(|s| s.dir.display().to_string()),
            "source_sha256": self.source.as_ref().map(|s| s.sha256.clone()),
            "copied": self.report.as_ref().map(|r| r.copied.clone()),
            "skipped": self.report.as_ref().map(|r| r.skipped.clone()),
            "initialised": self.report.as_ref().map(|r| r.initialised.clone()),
            "reinit_note": self.reinit_note,
            "phases": trained.phases,
        })
    }
}
