//! One optimizer step on a batch: the training step every trainer shares.

use crate::backend::{Backend, Update};
use crate::error::Result;
use crate::network::Network;
use crate::optim::Loss;
use crate::param::OptState;
use crate::pass::Profile;
use std::time::Instant;

/// What a training step gives back.
pub struct StepOutcome {
    /// The batch's mean loss, penalties included.
    pub loss: f64,
    /// The network's outputs for the batch (batch × width), before the update.
    pub outputs: Vec<f32>,
    /// Per-layer times, when asked for.
    pub profile: Profile,
}

/// Forward (training mode, dropout masks from `seed`), loss, backward,
/// penalties and one update of every trainable parameter.
#[allow(clippy::too_many_arguments)]
pub fn train_step<B: Backend>(
    network: &mut Network<B>,
    state: &mut OptState<B>,
    x: &B::Tensor,
    loss: Loss,
    width: usize,
    targets: &[f32],
    update: &Update,
    seed: u64,
    profile: bool,
) -> Result<StepOutcome> {
    let backend = network.backend.clone();
    let mut pass = network.forward_train(x, seed, profile)?;
    let started = Instant::now();
    let outputs = backend.to_vec(&pass.output)?;
    let (l, dy) = loss.eval(&outputs, width, targets)?;
    let dy = backend.tensor(dy, &backend.shape(&pass.output))?;
    let loss_seconds = started.elapsed().as_secs_f64();
    let mut grads = network.backward(&mut pass, dy)?;
    let pen = network.apply_penalties(&mut grads)?;
    // The tape's buffers go back to the backend's pool before the update.
    let mut profile = std::mem::take(&mut pass.profile);
    drop(pass);
    let started = Instant::now();
    network.step(&grads, state, update)?;
    if !profile.is_empty() {
        profile.add_step("(loss)", "loss", loss_seconds);
        profile.add_step("(update)", "optimizer", started.elapsed().as_secs_f64());
    }
    Ok(StepOutcome {
        loss: l + pen as f64,
        outputs,
        profile,
    })
}
