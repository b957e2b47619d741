//! Parameters and what the caller keeps beside them: the gradients of a
//! backward pass ([`Gradients`]) and the optimizer's buffers
//! ([`OptState`]), both indexed by the parameter's id.

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::Result;

/// Weight initialization.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He (Kaiming) normal: sd = √(2 / fan_in); for ReLU-family networks.
    #[default]
    He,
    /// Glorot (Xavier) uniform: ±√(6 / (fan_in + fan_out)).
    Glorot,
}

/// A tensor of a network: a weight, a bias, or a batch-norm statistic.
pub struct Param<B: Backend> {
    /// Its index among the network's parameters (in build order).
    pub id: usize,
    /// Its name, from the layer's path: `layers.3.branch.1.layers.0.weight`.
    pub name: String,
    pub value: B::Tensor,
    pub l1: f32,
    pub l2: f32,
    /// False for batch-norm running statistics: saved, never updated by the optimizer.
    pub trainable: bool,
    /// Frozen by the user (transfer learning): no gradient, no update, no
    /// penalty; a frozen batch norm also runs in inference mode.
    pub frozen: bool,
}

impl<B: Backend> Param<B> {
    /// Whether the optimizer updates this parameter: trainable and not frozen.
    pub fn learns(&self) -> bool {
        self.trainable && !self.frozen
    }
}

/// A small deterministic generator for initialization (SplitMix64).
pub(crate) struct InitRng(u64);

impl InitRng {
    pub(crate) fn new(seed: u64) -> Self {
        InitRng(kernels::norm::splitmix64(seed ^ 0x5eed))
    }

    fn uniform(&mut self) -> f64 {
        self.0 = kernels::norm::splitmix64(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub(crate) fn weights(
        &mut self,
        init: Init,
        n: usize,
        fan_in: usize,
        fan_out: usize,
    ) -> Vec<f32> {
        match init {
            Init::He => {
                let sd = (2.0 / fan_in.max(1) as f64).sqrt();
                (0..n).map(|_| (self.normal() * sd) as f32).collect()
            }
            Init::Glorot => {
                let a = (6.0 / (fan_in + fan_out).max(1) as f64).sqrt();
                (0..n)
                    .map(|_| ((2.0 * self.uniform() - 1.0) * a) as f32)
                    .collect()
            }
        }
    }
}

/// The parameter gradients of one backward pass, by parameter id.
pub struct Gradients<B: Backend> {
    slots: Vec<Option<B::Tensor>>,
}

impl<B: Backend> Gradients<B> {
    pub(crate) fn new(n: usize) -> Self {
        Gradients {
            slots: (0..n).map(|_| None).collect(),
        }
    }

    /// The gradient of parameter `id`, if the pass gave one.
    pub fn get(&self, id: usize) -> Option<&B::Tensor> {
        self.slots.get(id).and_then(|g| g.as_ref())
    }

    pub fn get_mut(&mut self, id: usize) -> Option<&mut B::Tensor> {
        self.slots.get_mut(id).and_then(|g| g.as_mut())
    }

    /// Adds `g` to the gradient of parameter `id`.
    pub(crate) fn accumulate(&mut self, backend: &B, id: usize, g: B::Tensor) -> Result<()> {
        match &mut self.slots[id] {
            Some(acc) => backend.add_scaled(acc, &g, 1.0),
            slot @ None => {
                *slot = Some(g);
                Ok(())
            }
        }
    }
}

/// Optimizer buffers on the host: per parameter id, (shape, values) each.
pub type HostSlots = Vec<Vec<(Vec<usize>, Vec<f32>)>>;

/// The optimizer's buffers (velocity, or Adam's moments), by parameter id.
pub struct OptState<B: Backend> {
    slots: Vec<Vec<B::Tensor>>,
}

impl<B: Backend> Default for OptState<B> {
    fn default() -> Self {
        OptState { slots: Vec::new() }
    }
}

impl<B: Backend> OptState<B> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The buffers on the host, by parameter id: (shape, values) each, for
    /// a checkpoint.
    pub fn export(&self, backend: &B) -> Result<HostSlots> {
        self.slots
            .iter()
            .map(|slot| {
                slot.iter()
                    .map(|t| Ok((backend.shape(t), backend.to_vec(t)?)))
                    .collect()
            })
            .collect()
    }

    /// The state [`OptState::export`] gave, back on `backend`.
    pub fn import(backend: &B, slots: HostSlots) -> Result<Self> {
        let slots = slots
            .into_iter()
            .map(|slot| {
                slot.into_iter()
                    .map(|(shape, v)| backend.tensor(v, &shape))
                    .collect()
            })
            .collect::<Result<_>>()?;
        Ok(OptState { slots })
    }

    /// The buffers of parameter `id` (empty before its first step).
    pub(crate) fn slot(&mut self, id: usize) -> &mut Vec<B::Tensor> {
        if self.slots.len() <= id {
            self.slots.resize_with(id + 1, Vec::new);
        }
        &mut self.slots[id]
    }
}
