//! The one training loop, for genomic regression and image classification
//! alike: the learning-rate schedule, shuffled mini-batches, the optimizer
//! step, a divergence check, an end-of-epoch evaluation, early stopping on
//! the validation loss and the best epoch's weights restored.
//!
//! What differs between tasks (how a batch is made, what an epoch reports)
//! is a [`Task`]; the loop trains a network that the caller passes in, so
//! it may start from a built one or from saved weights.

use std::time::Instant;

use nn::{Backend, Loss, Network, OptState, Profile, ScheduleState};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::checkpoint::{Checkpoint, RngState};
use crate::error::{ModelError, Result};
use crate::spec::TrainingSpec;
use crate::train::Event;
use crate::transfer::{apply_frozen, check_phases, Phase, PhaseRecord};

/// Options of a training run beyond the spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainOptions {
    /// Time each layer's forward and backward passes.
    pub profile: bool,
    /// The run's phases, each with the layers it freezes, its epochs and
    /// its learning rate (empty: one phase of the spec's epochs and rate,
    /// with the network's frozen layers as they are).
    pub phases: Vec<Phase>,
    /// Report a [`Checkpoint`] after each epoch ([`Event::Checkpoint`]).
    pub checkpoints: bool,
    /// Continue the run from this checkpoint: the network must be built
    /// (or loaded) as at the run's start, and the rest of the call be the
    /// same; the run then ends as if it had never stopped. The reports of
    /// the epochs before it are not repeated in [`Trained::history`].
    pub resume: Option<Box<Checkpoint>>,
}

/// An epoch's figures that every task has, for its end-of-epoch report.
#[derive(Clone, Copy, Debug)]
pub struct EpochCore {
    /// Counted over the whole run (0-based), across phases.
    pub epoch: usize,
    /// The phase the epoch belongs to (1-based).
    pub phase: usize,
    pub lr: f32,
    /// Mean training loss over the epoch's samples, penalties included.
    pub train_loss: f64,
    /// When the epoch started.
    pub started: Instant,
    /// Seconds spent on the epoch's batches (evaluation excluded).
    pub train_seconds: f64,
}

/// What a task gives the loop.
pub trait Task<B: Backend> {
    /// The task's epoch report.
    type Report;
    /// The network input (a tensor of `backend`) and the targets of the
    /// training rows `rows`.
    fn batch(&mut self, backend: &B, rows: &[usize], epoch: usize)
        -> Result<(B::Tensor, Vec<f32>)>;
    /// Sees each batch's outputs (batch × width) before the update.
    fn observe(&mut self, _outputs: &[f32], _targets: &[f32]) {}
    /// After each epoch: the validation loss (None without a validation
    /// split) and the epoch's report.
    fn end_epoch(
        &mut self,
        network: &Network<B>,
        core: &EpochCore,
    ) -> Result<(Option<f64>, Self::Report)>;
}

/// What a run of the loop gives back.
pub struct Trained<R> {
    pub history: Vec<R>,
    /// The epoch whose weights were kept (0-based).
    pub best_epoch: usize,
    /// Per-layer times over the run, when asked for.
    pub profile: Option<Profile>,
    /// What each phase froze and kept.
    pub phases: Vec<PhaseRecord>,
}

/// Early stopping on a validation loss, keeping the best epoch's weights.
struct EarlyStopping {
    best: Option<(f64, usize, Vec<Vec<f32>>)>,
    since_best: usize,
    patience: usize,
}

impl EarlyStopping {
    fn new(patience: usize) -> Self {
        EarlyStopping {
            best: None,
            since_best: 0,
            patience: patience.max(1),
        }
    }

    /// Records an epoch's validation loss; true when training should stop.
    fn stop_after<B: Backend>(
        &mut self,
        network: &Network<B>,
        val_loss: f64,
        epoch: usize,
    ) -> Result<bool> {
        if self.best.as_ref().is_none_or(|(b, _, _)| val_loss < *b) {
            let weights = network
                .params()
                .iter()
                .map(|p| network.backend.to_vec(&p.value))
                .collect::<nn::Result<Vec<_>>>()?;
            self.best = Some((val_loss, epoch, weights));
            self.since_best = 0;
            Ok(false)
        } else {
            self.since_best += 1;
            Ok(self.since_best >= self.patience)
        }
    }

    /// The stopper a checkpoint recorded.
    fn resumed(patience: usize, ck: &Checkpoint) -> Self {
        EarlyStopping {
            best: ck.best.map(|(loss, epoch)| {
                (
                    f64::from_bits(loss),
                    epoch,
                    ck.best_weights.clone().unwrap_or_default(),
                )
            }),
            since_best: ck.since_best,
            patience: patience.max(1),
        }
    }

    /// Puts the best epoch's weights back; returns that epoch (or `last`
    /// when no validation loss was recorded).
    fn restore<B: Backend>(self, network: &mut Network<B>, last: usize) -> Result<usize> {
        let Some((_, epoch, weights)) = self.best else {
            return Ok(last);
        };
        let backend = network.backend.clone();
        for (p, w) in network.params_mut().into_iter().zip(weights) {
            let shape = backend.shape(&p.value);
            p.value = backend.tensor(w, &shape)?;
        }
        Ok(epoch)
    }
}

/// The largest loss and output magnitude a run may reach. Targets are
/// standardized (regression) or labels (classification), so a healthy loss
/// is of order 1 and outputs of order 10; past this, the run has diverged
/// and its weights are garbage, even while the numbers stay finite.
pub const DIVERGED: f64 = 1e6;

/// Why a batch's loss and outputs say the run diverged, or None.
fn diverged(loss: f64, outputs: &[f32]) -> Option<String> {
    if !loss.is_finite() || loss > DIVERGED {
        return Some(format!("the loss is {loss:e}"));
    }
    let worst = outputs
        .iter()
        .map(|o| o.abs())
        .fold(0f32, |m, v| if v.is_nan() || v > m { v } else { m });
    if worst.is_nan() || worst as f64 > DIVERGED {
        return Some(format!("an output is {worst:e}"));
    }
    None
}

/// The seed of the dropout masks of optimizer step `step`.
fn step_seed(seed: u64, step: u32) -> u64 {
    kernels::norm::splitmix64(seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Trains `network` on `fit_rows` (shuffled each epoch by `rng`) with the
/// spec's optimizer, schedule and early stopping, phase by phase
/// ([`TrainOptions::phases`]): each phase freezes its layers, starts a new
/// optimizer state and schedule at its own rate, stops early on its own,
/// and hands the next phase its best epoch's weights. `loss` and `width`
/// (the outputs per sample) are the task's; `n_val` is only reported.
#[allow(clippy::too_many_arguments)]
pub fn run<B: Backend, T: Task<B>>(
    network: &mut Network<B>,
    t: &TrainingSpec,
    task: &mut T,
    fit_rows: &mut [usize],
    n_val: usize,
    rng: &mut ChaCha8Rng,
    seed: u64,
    loss: Loss,
    width: usize,
    opts: &TrainOptions,
    on: &mut dyn FnMut(Event<T::Report>),
) -> Result<Trained<T::Report>> {
    let resume = opts.resume.as_deref();
    let mut run = Run {
        history: Vec::new(),
        profile: opts.profile.then(Profile::default),
        step: resume.map_or(0, |c| c.step),
        phases: resume.map_or_else(Vec::new, |c| c.phases_done.clone()),
        done: resume.map_or(0, |c| c.epochs_done),
    };
    if let Some(ck) = resume {
        let backend = network.backend.clone();
        let params = network.params_mut();
        if params.len() != ck.params.len() {
            return Err(ModelError::Checkpoint {
                path: String::new(),
                message: format!(
                    "it holds {} parameter arrays, the network {}",
                    ck.params.len(),
                    params.len()
                ),
            });
        }
        for (p, (shape, v)) in params.into_iter().zip(&ck.params) {
            if backend.shape(&p.value) != *shape {
                return Err(ModelError::Checkpoint {
                    path: String::new(),
                    message: format!(
                        "its {} is {shape:?}, the network's {:?}",
                        p.name,
                        backend.shape(&p.value)
                    ),
                });
            }
            p.value = backend.tensor(v.clone(), shape)?;
        }
        *rng = ck.rng.rng()?;
        if ck.fit_rows.len() != fit_rows.len() {
            return Err(ModelError::Checkpoint {
                path: String::new(),
                message: format!(
                    "it trains on {} rows, this run on {}",
                    ck.fit_rows.len(),
                    fit_rows.len()
                ),
            });
        }
        fit_rows.copy_from_slice(&ck.fit_rows);
    }
    if opts.phases.is_empty() {
        let best = run_phase(
            network, t, task, fit_rows, n_val, rng, seed, loss, width, opts, on, &mut run, 1,
        )?;
        return Ok(run.finish(best));
    }
    check_phases(network, &opts.phases)?;
    let mut best = resume.map_or(0, |c| c.best_of_last_phase);
    let first_phase = resume.map_or(0, |c| c.phase);
    for (k, ph) in opts.phases.iter().enumerate().skip(first_phase) {
        apply_frozen(network, &ph.frozen);
        let tp = TrainingSpec {
            epochs: ph.epochs,
            lr: ph.lr,
            ..t.clone()
        };
        tp.validate()?;
        // A resumed phase counts the epochs it ran before the stop.
        let first = match resume {
            Some(c) if c.phase == k => run.epochs() - c.phase_epochs,
            _ => run.epochs(),
        };
        let trainable_values = network.n_trainable();
        best = run_phase(
            network,
            &tp,
            task,
            fit_rows,
            n_val,
            rng,
            seed,
            loss,
            width,
            opts,
            on,
            &mut run,
            k + 1,
        )?;
        run.phases.push(PhaseRecord {
            phase: k + 1,
            frozen: ph.frozen.clone(),
            lr: ph.lr,
            epochs_run: run.epochs() - first,
            best_epoch: best + 1,
            trainable_values,
        });
    }
    apply_frozen(network, &[]);
    Ok(run.finish(best))
}

/// What the phases of a run add up.
struct Run<R> {
    history: Vec<R>,
    profile: Option<Profile>,
    /// Optimizer steps over the whole run (the dropout masks' seeds).
    step: u32,
    phases: Vec<PhaseRecord>,
    /// Epochs run before a resumed run's checkpoint.
    done: usize,
}

impl<R> Run<R> {
    /// Epochs completed over the whole run.
    fn epochs(&self) -> usize {
        self.done + self.history.len()
    }

    fn finish(self, best_epoch: usize) -> Trained<R> {
        Trained {
            history: self.history,
            best_epoch,
            profile: self.profile,
            phases: self.phases,
        }
    }
}

/// One phase of [`run`]; returns the epoch (over the run) whose weights it kept.
#[allow(clippy::too_many_arguments)]
fn run_phase<B: Backend, T: Task<B>>(
    network: &mut Network<B>,
    t: &TrainingSpec,
    task: &mut T,
    fit_rows: &mut [usize],
    n_val: usize,
    rng: &mut ChaCha8Rng,
    seed: u64,
    loss: Loss,
    width: usize,
    opts: &TrainOptions,
    on: &mut dyn FnMut(Event<T::Report>),
    run: &mut Run<T::Report>,
    phase: usize,
) -> Result<usize> {
    let bs = t.batch_size;
    on(Event::Start {
        epochs: t.epochs,
        batches_per_epoch: fit_rows.len().div_ceil(bs),
        n_train: fit_rows.len(),
        n_val,
    });
    let mut sched = ScheduleState::new(t.schedule, t.lr, t.epochs);
    let mut stopper = EarlyStopping::new(t.patience);
    let mut state = OptState::new();
    // Adam's bias correction counts this phase's steps: its state is new.
    let mut local_step = 0u32;
    let mut first_epoch = 0;
    let resumed = opts.resume.as_deref().filter(|c| c.phase == phase - 1);
    if let Some(ck) = resumed {
        sched.restore((ck.schedule.0, f64::from_bits(ck.schedule.1), ck.schedule.2));
        stopper = EarlyStopping::resumed(t.patience, ck);
        state = OptState::import(&network.backend, ck.opt.clone())?;
        local_step = ck.local_step;
        first_epoch = ck.phase_epochs;
        if ck.phase_stopped {
            first_epoch = t.epochs;
        }
    }
    let epoch0 = run.epochs() - first_epoch;
    for e in first_epoch..t.epochs {
        let epoch = epoch0 + e;
        let started = Instant::now();
        let lr = sched.lr(e);
        fit_rows.shuffle(rng);
        let mut total = 0.0;
        for (k, rows) in fit_rows.chunks(bs).enumerate() {
            let batch_started = Instant::now();
            let (x, targets) = task.batch(&network.backend, rows, epoch)?;
            let batch_seconds = batch_started.elapsed().as_secs_f64();
            run.step += 1;
            local_step += 1;
            let update = t.optimizer.update(lr, local_step);
            let out = nn::train_step(
                network,
                &mut state,
                &x,
                loss,
                width,
                &targets,
                &update,
                step_seed(seed, run.step),
                opts.profile,
            )?;
            if let Some(what) = diverged(out.loss, &out.outputs) {
                return Err(ModelError::Diverged {
                    epoch: epoch + 1,
                    what,
                    lr,
                });
            }
            if let Some(p) = &mut run.profile {
                p.merge(&out.profile);
                p.add_step("(batches)", "data", batch_seconds);
            }
            task.observe(&out.outputs, &targets);
            total += out.loss * rows.len() as f64;
            on(Event::Batch {
                epoch,
                batch: k,
                loss: out.loss,
            });
        }
        let core = EpochCore {
            epoch,
            phase,
            lr,
            train_loss: total / fit_rows.len() as f64,
            started,
            train_seconds: started.elapsed().as_secs_f64(),
        };
        let (val_loss, report) = task.end_epoch(network, &core)?;
        sched.observe(val_loss.unwrap_or(core.train_loss));
        on(Event::Epoch(&report));
        run.history.push(report);
        let stop = match val_loss {
            Some(v) => stopper.stop_after(network, v, epoch)?,
            None => false,
        };
        if opts.checkpoints {
            let backend = &network.backend;
            let ck = Checkpoint {
                epochs_done: run.epochs(),
                phase: phase - 1,
                phase_epochs: e + 1,
                phase_stopped: stop,
                step: run.step,
                local_step,
                rng: RngState::of(rng),
                fit_rows: fit_rows.to_vec(),
                schedule: {
                    let (c, b, k) = sched.progress();
                    (c, b.to_bits(), k)
                },
                best: stopper.best.as_ref().map(|(l, ep, _)| (l.to_bits(), *ep)),
                since_best: stopper.since_best,
                phases_done: run.phases.clone(),
                best_of_last_phase: run.phases.last().map_or(0, |p| p.best_epoch - 1),
                params: network
                    .params()
                    .iter()
                    .map(|p| Ok((backend.shape(&p.value), backend.to_vec(&p.value)?)))
                    .collect::<Result<_>>()?,
                opt: state.export(backend)?,
                best_weights: stopper.best.as_ref().map(|(_, _, w)| w.clone()),
            };
            on(Event::Checkpoint(&ck));
        }
        if stop {
            break;
        }
    }
    stopper.restore(network, run.epochs().saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn::Native;
    use rand::SeedableRng;

    /// A task whose validation losses follow a script, and which records
    /// the network's weights at the end of every epoch.
    struct Scripted {
        losses: Vec<f64>,
        snapshots: Vec<Vec<Vec<f32>>>,
    }

    impl Task<Native> for Scripted {
        type Report = usize;
        fn batch(
            &mut self,
            backend: &Native,
            rows: &[usize],
            _epoch: usize,
        ) -> Result<(<Native as Backend>::Tensor, Vec<f32>)> {
            let x: Vec<f32> = rows
                .iter()
                .flat_map(|&r| (0..4).map(move |j| ((r * 7 + j * 3) % 5) as f32 - 2.0))
                .collect();
            let y = rows.iter().map(|&r| (r % 3) as f32 - 1.0).collect();
            Ok((backend.tensor(x, &[rows.len(), 1, 4])?, y))
        }
        fn end_epoch(
            &mut self,
            network: &Network<Native>,
            core: &EpochCore,
        ) -> Result<(Option<f64>, usize)> {
            let w = network
                .params()
                .iter()
                .map(|p| network.backend.to_vec(&p.value))
                .collect::<nn::Result<Vec<_>>>()?;
            self.snapshots.push(w);
            Ok((Some(self.losses[core.epoch]), core.epoch))
        }
    }

    #[test]
    fn early_stopping_stops_after_patience_and_restores_the_best_epochs_weights() {
        let spec = crate::ModelSpec::from_toml(
            "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"dense\"\nunits = 1\n",
            "t",
            "test",
        )
        .unwrap();
        let mut network = crate::build_network(Native::new(), &spec, 4, 0, 1).unwrap();
        // Best at epoch 3 (0-based); epochs 4, 5 and 6 do not improve on
        // it, so with patience 3 the run stops after epoch 6 of 20.
        let losses = vec![3.0, 1.0, 2.0, 0.5, 0.7, 0.5, 4.0, 0.1, 0.1, 0.1];
        let t = TrainingSpec {
            epochs: 20,
            batch_size: 4,
            lr: 0.05,
            patience: 3,
            ..TrainingSpec::default()
        };
        let mut task = Scripted {
            losses,
            snapshots: Vec::new(),
        };
        let mut rows: Vec<usize> = (0..12).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let trained = run(
            &mut network,
            &t,
            &mut task,
            &mut rows,
            0,
            &mut rng,
            1,
            Loss::Mse,
            1,
            &TrainOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(trained.history, vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(trained.best_epoch, 3);
        // The weights moved after epoch 3, and were put back.
        assert_ne!(task.snapshots[3], task.snapshots[6]);
        let now: Vec<Vec<f32>> = network
            .params()
            .iter()
            .map(|p| network.backend.to_vec(&p.value).unwrap())
            .collect();
        assert_eq!(now, task.snapshots[3]);
    }

    #[test]
    fn divergence_is_caught_before_the_loss_is_nan() {
        assert_eq!(diverged(0.9, &[0.5, -3.0, 12.0]), None);
        // The figures of issue 16: a loss of 1e31, outputs of 1e16.
        assert!(diverged(1e31, &[0.5]).unwrap().contains("loss is 1e31"));
        assert!(diverged(0.5, &[1.0, -1e16])
            .unwrap()
            .contains("output is 1e16"));
        assert!(diverged(f64::NAN, &[0.5]).is_some());
        assert!(diverged(f64::INFINITY, &[0.5]).is_some());
        assert!(diverged(0.5, &[0.0, f32::NAN]).unwrap().contains("NaN"));
    }
}
