//! Training checkpoints: everything the training loop needs to continue a
//! run from the end of an epoch and end bit-identical to a run that was
//! never stopped. That is the network's values (batch-norm statistics
//! included), the optimizer's buffers, the learning-rate schedule's state,
//! early stopping's best epoch and its weights, the shuffled order of the
//! training rows, the random generator's position and the step counters.
//!
//! A checkpoint is one safetensors file: the arrays as tensors, the rest as
//! JSON in its metadata (`checkpoint`), beside whatever the caller adds
//! (`caller`: the command line keeps the epoch reports there). It is written
//! atomically, so a kill leaves the previous epoch's checkpoint or this one.

use std::collections::HashMap;
use std::path::Path;

use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::transfer::PhaseRecord;

/// The position of the run's random generator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub stream: u64,
    /// The word position (a u128, kept as text in JSON).
    pub word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn rng(&self) -> Result<ChaCha8Rng> {
        use rand::SeedableRng;
        let pos: u128 = self.word_pos.parse().map_err(|_| ModelError::Checkpoint {
            path: String::new(),
            message: format!("bad random-generator position '{}'", self.word_pos),
        })?;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(pos);
        Ok(rng)
    }
}

/// The state of a run at the end of an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Epochs completed over the whole run.
    pub epochs_done: usize,
    /// The phase under way (0-based) and the epochs it has completed.
    pub phase: usize,
    pub phase_epochs: usize,
    /// Whether early stopping ended the phase at its last completed epoch.
    pub phase_stopped: bool,
    /// Optimizer steps over the run, and within the phase.
    pub step: u32,
    pub local_step: u32,
    pub rng: RngState,
    pub fit_rows: Vec<usize>,
    /// The schedule's current rate, best loss (as f64 bits: it starts at
    /// infinity, which JSON cannot hold) and epochs since.
    pub schedule: (f32, u64, usize),
    /// Early stopping: the best validation loss (as f64 bits) and its
    /// epoch, and the epochs since.
    pub best: Option<(u64, usize)>,
    pub since_best: usize,
    /// The phases finished before this one, and the epoch the last kept.
    pub phases_done: Vec<PhaseRecord>,
    pub best_of_last_phase: usize,
    /// The arrays, stored as tensors.
    #[serde(skip)]
    pub params: Vec<(Vec<usize>, Vec<f32>)>,
    #[serde(skip)]
    pub opt: nn::HostSlots,
    #[serde(skip)]
    pub best_weights: Option<Vec<Vec<f32>>>,
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bad(path: &Path, why: impl std::fmt::Display) -> ModelError {
    ModelError::Checkpoint {
        path: path.display().to_string(),
        message: why.to_string(),
    }
}

impl Checkpoint {
    /// Writes the checkpoint atomically, with `caller`'s own JSON beside it.
    pub fn write(&self, path: &Path, caller: &str) -> Result<()> {
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, (shape, v)) in self.params.iter().enumerate() {
            tensors.push((format!("param.{i}"), shape.clone(), le_bytes(v)));
        }
        for (i, slot) in self.opt.iter().enumerate() {
            for (k, (shape, v)) in slot.iter().enumerate() {
                tensors.push((format!("opt.{i}.{k}"), shape.clone(), le_bytes(v)));
            }
        }
        if let Some(w) = &self.best_weights {
            for (i, v) in w.iter().enumerate() {
                tensors.push((format!("best.{i}"), vec![v.len()], le_bytes(v)));
            }
        }
        let views = tensors
            .iter()
            .map(|(n, s, b)| {
                TensorView::new(Dtype::F32, s.clone(), b)
                    .map(|t| (n.clone(), t))
                    .map_err(|e| bad(path, e))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta: HashMap<String, String> = [
            (
                "checkpoint".to_string(),
                serde_json::to_string(self).map_err(|e| bad(path, e))?,
            ),
            ("caller".to_string(), caller.to_string()),
        ]
        .into();
        let data = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| bad(path, e))?;
        geno::write_atomic(path, &data)?;
        Ok(())
    }

    /// Reads a checkpoint and the caller's JSON written with it.
    pub fn read(path: &Path) -> Result<(Checkpoint, String)> {
        let bytes =
            std::fs::read(path).map_err(|e| ModelError::Io(path.display().to_string(), e))?;
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, e))?;
        let meta = header
            .metadata()
            .clone()
            .ok_or_else(|| bad(path, "no metadata"))?;
        let get = |k: &str| {
            meta.get(k)
                .cloned()
                .ok_or_else(|| bad(path, format!("no '{k}' in its metadata")))
        };
        let mut ck: Checkpoint =
            serde_json::from_str(&get("checkpoint")?).map_err(|e| bad(path, e))?;
        let caller = get("caller")?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
        let values = |name: &str| -> Result<Option<(Vec<usize>, Vec<f32>)>> {
            let Ok(t) = st.tensor(name) else {
                return Ok(None);
            };
            if t.dtype() != Dtype::F32 {
                return Err(bad(path, format!("tensor '{name}' is not F32")));
            }
            let v = t
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok(Some((t.shape().to_vec(), v)))
        };
        let mut i = 0;
        while let Some(p) = values(&format!("param.{i}"))? {
            ck.params.push(p);
            i += 1;
        }
        let mut i = 0;
        loop {
            let mut slot = Vec::new();
            while let Some(t) = values(&format!("opt.{i}.{}", slot.len()))? {
                slot.push(t);
            }
            // A parameter without buffers (frozen, or not yet stepped) may
            // sit between two with buffers: stop at the first id past all.
            if slot.is_empty()
                && !st.names().iter().any(|n| {
                    n.strip_prefix("opt.")
                        .and_then(|r| r.split('.').next())
                        .and_then(|k| k.parse::<usize>().ok())
                        .is_some_and(|k| k > i)
                })
            {
                break;
            }
            ck.opt.push(slot);
            i += 1;
        }
        if ck.best.is_some() {
            let mut w = Vec::new();
            while let Some((_, v)) = values(&format!("best.{}", w.len()))? {
                w.push(v);
            }
            ck.best_weights = Some(w);
        }
        Ok((ck, caller))
    }
}
