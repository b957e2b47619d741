//! Optimizers, learning-rate schedules and losses.

use serde::{Deserialize, Serialize};

use crate::backend::Update;
use crate::error::{NnError, Result};

/// An optimizer and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Optimizer {
    Sgd {
        #[serde(default)]
        momentum: f32,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f32,
    },
    Adam {
        #[serde(default = "beta1")]
        beta1: f32,
        #[serde(default = "beta2")]
        beta2: f32,
        #[serde(default = "adam_eps")]
        eps: f32,
        #[serde(default)]
        weight_decay: f32,
    },
    AdamW {
        #[serde(default = "beta1")]
        beta1: f32,
        #[serde(default = "beta2")]
        beta2: f32,
        #[serde(default = "adam_eps")]
        eps: f32,
        #[serde(default = "adamw_decay")]
        weight_decay: f32,
    },
}

fn beta1() -> f32 {
    0.9
}
fn beta2() -> f32 {
    0.999
}
fn adam_eps() -> f32 {
    1e-7
}
fn adamw_decay() -> f32 {
    0.01
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Adam {
            beta1: beta1(),
            beta2: beta2(),
            eps: adam_eps(),
            weight_decay: 0.0,
        }
    }
}

impl Optimizer {
    /// The update for step `step` (counting from 1) at learning rate `lr`.
    pub fn update(&self, lr: f32, step: u32) -> Update {
        match *self {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Update::Sgd {
                lr,
                momentum,
                nesterov,
                weight_decay,
            },
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: false,
                step,
            },
            Optimizer::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
            } => Update::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: true,
                step,
            },
        }
    }
}

/// A learning-rate schedule over epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    #[default]
    Constant,
    /// lr · gamma^(epoch / every).
    Step { every: usize, gamma: f32 },
    /// Cosine decay from lr to `min_lr` over the epochs.
    Cosine {
        #[serde(default)]
        min_lr: f32,
    },
    /// Multiply by `factor` when the validation loss has not improved for `patience` epochs.
    ReduceOnPlateau {
        factor: f32,
        patience: usize,
        #[serde(default)]
        min_lr: f32,
    },
}

/// The schedule's state during a run.
#[derive(Clone, Debug)]
pub struct ScheduleState {
    schedule: Schedule,
    base: f32,
    epochs: usize,
    current: f32,
    best: f64,
    since_best: usize,
}

impl ScheduleState {
    pub fn new(schedule: Schedule, base: f32, epochs: usize) -> Self {
        ScheduleState {
            schedule,
            base,
            epochs,
            current: base,
            best: f64::INFINITY,
            since_best: 0,
        }
    }

    /// What changes during a run: the current rate, the best validation
    /// loss seen (reduce-on-plateau) and the epochs since it, for a checkpoint.
    pub fn progress(&self) -> (f32, f64, usize) {
        (self.current, self.best, self.since_best)
    }

    /// Puts back what [`ScheduleState::progress`] gave.
    pub fn restore(&mut self, (current, best, since_best): (f32, f64, usize)) {
        self.current = current;
        self.best = best;
        self.since_best = since_best;
    }

    /// The learning rate for epoch `epoch` (from 0).
    pub fn lr(&mut self, epoch: usize) -> f32 {
        self.current = match self.schedule {
            Schedule::Constant => self.base,
            Schedule::Step { every, gamma } => {
                self.base * gamma.powi((epoch / every.max(1)) as i32)
            }
            Schedule::Cosine { min_lr } => {
                let t = epoch as f32 / (self.epochs.max(2) - 1) as f32;
                min_lr
                    + 0.5 * (self.base - min_lr) * (1.0 + (std::f32::consts::PI * t.min(1.0)).cos())
            }
            Schedule::ReduceOnPlateau { .. } => self.current,
        };
        self.current
    }

    /// Reports an epoch's validation loss (used by reduce-on-plateau).
    pub fn observe(&mut self, val_loss: f64) {
        if let Schedule::ReduceOnPlateau {
            factor,
            patience,
            min_lr,
        } = self.schedule
        {
            if val_loss < self.best - 1e-12 {
                self.best = val_loss;
                self.since_best = 0;
            } else {
                self.since_best += 1;
                if self.since_best > patience {
                    self.current = (self.current * factor).max(min_lr);
                    self.since_best = 0;
                }
            }
        }
    }
}

/// A loss function over network outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Mean squared error.
    #[default]
    Mse,
    /// Huber loss with δ = 1.
    Huber,
    /// Binary cross-entropy on one logit per sample (targets 0/1).
    BinaryCrossEntropy,
    /// Softmax cross-entropy on one logit per class (targets are class indices).
    SoftmaxCrossEntropy,
}

impl Loss {
    /// The mean loss over a batch and its gradient with respect to the
    /// outputs (`outputs` is batch × width). Softmax cross-entropy takes one
    /// target per sample (the class); the others one per output (batch ×
    /// width, one column per trait), where a NaN target is a missing record:
    /// it adds nothing to the loss and gets a zero gradient. The loss is
    /// each trait's mean over its records present, averaged over the traits
    /// with a record in the batch (so a sparse trait weighs as much as a
    /// complete one).
    ///
    /// # Errors
    /// [`NnError::Shape`] if the targets do not match the outputs (one per
    /// output, or for softmax one per row of `width`), or a softmax target
    /// is not a class number; [`NnError::Kernel`] if a class is not below
    /// `width`.
    pub fn eval(self, outputs: &[f32], width: usize, targets: &[f32]) -> Result<(f64, Vec<f32>)> {
        let mut grad = vec![0f32; outputs.len()];
        match self {
            Loss::Mse | Loss::Huber | Loss::BinaryCrossEntropy => {
                if outputs.len() != targets.len()
                    || width == 0
                    || !outputs.len().is_multiple_of(width)
                {
                    return Err(NnError::Shape {
                        op: "loss",
                        message: format!(
                            "{self:?} needs one target per output: {} outputs of width {width}, {} targets",
                            outputs.len(),
                            targets.len()
                        ),
                    });
                }
                let mut present = vec![0usize; width];
                for (k, t) in targets.iter().enumerate() {
                    if !t.is_nan() {
                        present[k % width] += 1;
                    }
                }
                let traits = present.iter().filter(|&&c| c > 0).count();
                if traits == 0 {
                    return Ok((0.0, grad));
                }
                let mut sums = vec![0f64; width];
                for (k, ((o, t), g)) in outputs.iter().zip(targets).zip(grad.iter_mut()).enumerate()
                {
                    if t.is_nan() {
                        continue;
                    }
                    // This record's share of the mean: records of its trait
                    // × traits present.
                    let share = (present[k % width] * traits) as f64;
                    let (o, t) = (*o as f64, *t as f64);
                    let (l, d) = match self {
                        Loss::Mse => ((o - t).powi(2), 2.0 * (o - t)),
                        Loss::Huber => {
                            let r = o - t;
                            if r.abs() <= 1.0 {
                                (0.5 * r * r, r)
                            } else {
                                (r.abs() - 0.5, r.signum())
                            }
                        }
                        _ => {
                            // log(1 + e^o) − t·o, stably.
                            let l = o.max(0.0) - o * t + (-o.abs()).exp().ln_1p();
                            (l, 1.0 / (1.0 + (-o).exp()) - t)
                        }
                    };
                    sums[k % width] += l;
                    *g = (d / share) as f32;
                }
                let total: f64 = sums
                    .iter()
                    .zip(&present)
                    .filter(|(_, &c)| c > 0)
                    .map(|(s, &c)| s / c as f64)
                    .sum();
                Ok((total / traits as f64, grad))
            }
            Loss::SoftmaxCrossEntropy => {
                if let Some((i, t)) = targets
                    .iter()
                    .enumerate()
                    .find(|(_, t)| !(t.is_finite() && **t >= 0.0 && t.fract() == 0.0))
                {
                    return Err(NnError::Shape {
                        op: "loss",
                        message: format!(
                            "softmax cross-entropy needs class numbers 0, 1, …; target {i} is {t}"
                        ),
                    });
                }
                let labels: Vec<usize> = targets.iter().map(|&t| t as usize).collect();
                let mut probs = vec![0f32; outputs.len()];
                let mean = kernels::softmax_cross_entropy(
                    outputs,
                    targets.len(),
                    width,
                    &labels,
                    &mut probs,
                    &mut grad,
                )?;
                Ok((mean as f64, grad))
            }
        }
    }
}
