//! Forward and backward passes: the caller's context ([`Ctx`]), what a
//! recorded forward pass keeps for backward (the tape, inside a [`Pass`]),
//! and the per-layer timings of a [`Profile`].
//!
//! Layers are `&self` in both directions: everything a pass produces lives
//! here, owned by the caller. A layer's forward pass saves what its
//! backward pass needs with [`Forward::save`] (one entry per call); its
//! backward pass reads that entry back with [`Backward::saved`]. Backward
//! runs the layers in the reverse order of forward, so entries come back
//! last in, first out, and one tape serves any number of backward passes.

use std::collections::HashMap;
use std::time::Instant;

use crate::backend::Backend;
use crate::error::{NnError, Result};
use crate::layers::Layer;
use crate::param::{Gradients, Param};

/// Training or inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout drops, batch norm uses the batch's statistics and moves its
    /// running ones.
    Train,
    /// Dropout passes through, batch norm uses its running statistics.
    Eval,
}

/// How a forward pass runs: chosen by the caller, read by every layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    pub mode: Mode,
    /// Keep what a backward pass needs.
    pub record: bool,
    /// The seed of this pass's dropout masks; each dropout layer mixes in
    /// a salt of its own, so masks differ by layer and by pass.
    pub seed: u64,
    /// Keep every layer's output, by path (runs fused layers as their parts).
    pub keep_outputs: bool,
    /// Run fused layers as the layers they were made of.
    pub unfused: bool,
    /// Time each layer.
    pub profile: bool,
}

impl Ctx {
    /// A training pass, recorded for backward, with dropout masks from `seed`.
    pub fn train(seed: u64) -> Self {
        Ctx {
            mode: Mode::Train,
            record: true,
            seed,
            keep_outputs: false,
            unfused: false,
            profile: false,
        }
    }

    /// An inference pass that keeps nothing.
    pub fn eval() -> Self {
        Ctx {
            mode: Mode::Eval,
            record: false,
            seed: 0,
            keep_outputs: false,
            unfused: false,
            profile: false,
        }
    }

    /// Also record for a backward pass (input gradients after an eval pass).
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }

    /// Also keep every layer's output.
    pub fn keeping_outputs(mut self) -> Self {
        self.keep_outputs = true;
        self.unfused = true;
        self
    }

    /// Run fused layers unfused.
    pub fn without_fusion(mut self) -> Self {
        self.unfused = true;
        self
    }

    /// Time each layer (or not).
    pub fn profiled(mut self, on: bool) -> Self {
        self.profile = on;
        self
    }
}

/// Seconds spent in each layer, in the order the layers first ran.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    rows: Vec<ProfileRow>,
    index: HashMap<String, usize>,
}

/// One layer's time.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileRow {
    pub path: String,
    pub kind: &'static str,
    /// How deep the layer sits (0 for a top-level layer).
    pub depth: usize,
    pub forward: f64,
    pub backward: f64,
}

impl Profile {
    fn row(&mut self, path: &str, kind: &'static str, depth: usize) -> &mut ProfileRow {
        let i = match self.index.get(path) {
            Some(&i) => i,
            None => {
                self.rows.push(ProfileRow {
                    path: path.to_string(),
                    kind,
                    depth,
                    forward: 0.0,
                    backward: 0.0,
                });
                self.index.insert(path.to_string(), self.rows.len() - 1);
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    /// Adds `seconds` to a row that is not a layer (the batching, the loss
    /// or the optimizer's update), kept in the forward column.
    pub fn add_step(&mut self, path: &str, kind: &'static str, seconds: f64) {
        self.row(path, kind, 0).forward += seconds;
    }

    /// Adds another profile's times to this one.
    pub fn merge(&mut self, other: &Profile) {
        for r in &other.rows {
            let row = self.row(&r.path, r.kind, r.depth);
            row.forward += r.forward;
            row.backward += r.backward;
        }
    }

    pub fn rows(&self) -> &[ProfileRow] {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What a forward pass produced: the output and, as the context asked,
/// the tape for backward, every layer's output and the layers' times.
pub struct Pass<B: Backend> {
    pub output: B::Tensor,
    pub(crate) tape: Vec<Vec<B::Tensor>>,
    pub(crate) recorded: bool,
    /// Batch-norm running statistics moved by a training pass: (param id, value).
    pub(crate) stats: Vec<(usize, B::Tensor)>,
    /// How many top-level layers at the start ran unrecorded: a frozen
    /// base in a training pass, which backward never enters.
    pub(crate) skipped: usize,
    /// The tape's length before each top-level layer ran.
    pub(crate) marks: Vec<usize>,
    /// Each layer's output by path, when the context kept them.
    pub outputs: Vec<(String, B::Tensor)>,
    /// The layers' times, when the context asked for them (a backward pass
    /// from this pass adds its own).
    pub profile: Profile,
}

/// The state of a forward pass, handed to each layer.
pub struct Forward<'a, B: Backend> {
    pub backend: &'a B,
    pub ctx: &'a Ctx,
    /// Whether [`Forward::save`] keeps what it is given (the context's
    /// `record`, off while a frozen base runs in a training pass).
    pub(crate) record: bool,
    pub(crate) skipped: usize,
    pub(crate) marks: Vec<usize>,
    tape: Vec<Vec<B::Tensor>>,
    stats: Vec<(usize, B::Tensor)>,
    outputs: Vec<(String, B::Tensor)>,
    profile: Profile,
    depth: usize,
}

impl<'a, B: Backend> Forward<'a, B> {
    pub(crate) fn new(backend: &'a B, ctx: &'a Ctx) -> Self {
        Forward {
            backend,
            ctx,
            record: ctx.record,
            skipped: 0,
            marks: Vec::new(),
            tape: Vec::new(),
            stats: Vec::new(),
            outputs: Vec::new(),
            profile: Profile::default(),
            depth: 0,
        }
    }

    pub(crate) fn finish(self, output: B::Tensor) -> Pass<B> {
        Pass {
            output,
            tape: self.tape,
            recorded: self.ctx.record,
            skipped: self.skipped,
            marks: self.marks,
            stats: self.stats,
            outputs: self.outputs,
            profile: self.profile,
        }
    }

    /// Marks the start of a top-level layer (the tape's length now).
    pub(crate) fn mark(&mut self) {
        self.marks.push(self.tape.len());
    }

    pub fn training(&self) -> bool {
        self.ctx.mode == Mode::Train
    }

    /// Keeps what this layer's backward pass needs (nothing when the pass
    /// is not recorded). Every leaf layer saves exactly one entry per
    /// forward call, possibly empty.
    pub fn save(&mut self, tensors: Vec<B::Tensor>) {
        if self.record {
            self.tape.push(tensors);
        }
    }

    /// The seed of a dropout mask for the layer whose salt is `salt`.
    pub fn dropout_seed(&self, salt: u64) -> u64 {
        kernels::norm::splitmix64(self.ctx.seed ^ salt)
    }

    /// Records a new value of a running statistic (batch norm in training).
    pub fn set_stat(&mut self, param: &Param<B>, value: B::Tensor) {
        self.stats.push((param.id, value));
    }

    /// Runs a child layer: the one way containers call their children, so
    /// that each layer's output is kept and its time taken when asked.
    pub fn run(&mut self, layer: &dyn Layer<B>, x: B::Tensor) -> Result<B::Tensor> {
        let start = self.ctx.profile.then(|| {
            // The row is made before the children's, so that it comes first.
            self.profile.row(layer.path(), layer.kind(), self.depth);
            Instant::now()
        });
        self.depth += 1;
        let y = layer.forward(x, self);
        self.depth -= 1;
        let y = y?;
        if let Some(t) = start {
            let depth = self.depth;
            self.profile.row(layer.path(), layer.kind(), depth).forward +=
                t.elapsed().as_secs_f64();
        }
        if self.ctx.keep_outputs && self.outputs.last().is_none_or(|(p, _)| p != layer.path()) {
            self.outputs.push((layer.path().to_string(), y.clone()));
        }
        Ok(y)
    }
}

/// The state of a backward pass, handed to each layer.
pub struct Backward<'a, B: Backend> {
    pub backend: &'a B,
    tape: &'a [Vec<B::Tensor>],
    cursor: usize,
    grads: Option<Gradients<B>>,
    profile: &'a mut Profile,
    timed: bool,
    depth: usize,
}

impl<'a, B: Backend> Backward<'a, B> {
    pub(crate) fn new(
        backend: &'a B,
        pass: &'a mut Pass<B>,
        grads: Option<Gradients<B>>,
    ) -> Result<Self> {
        if !pass.recorded {
            return Err(NnError::Pass(
                "a backward pass needs a recorded forward pass (Ctx::train, or Ctx::eval().recording())"
                    .into(),
            ));
        }
        let timed = !pass.profile.is_empty();
        Ok(Backward {
            backend,
            cursor: pass.tape.len(),
            tape: &pass.tape,
            grads,
            profile: &mut pass.profile,
            timed,
            depth: 0,
        })
    }

    /// The end of a backward pass that ran down to the first layer.
    pub(crate) fn finish(self) -> Result<Option<Gradients<B>>> {
        self.finish_above(0)
    }

    /// The end of a backward pass that stopped above `unread` tape entries:
    /// those of a frozen base that needs no gradient.
    pub(crate) fn finish_above(self, unread: usize) -> Result<Option<Gradients<B>>> {
        if self.cursor != unread {
            return Err(NnError::Pass(format!(
                "the backward pass left {} of the forward pass's records unread",
                self.cursor - unread.min(self.cursor)
            )));
        }
        Ok(self.grads)
    }

    /// What this layer's forward pass saved.
    pub fn saved(&mut self) -> Result<&'a [B::Tensor]> {
        if self.cursor == 0 {
            return Err(NnError::Pass(
                "backward pass without a recorded forward pass".into(),
            ));
        }
        self.cursor -= 1;
        Ok(&self.tape[self.cursor])
    }

    /// Whether parameter gradients are wanted.
    pub fn wants_params(&self) -> bool {
        self.grads.is_some()
    }

    /// Adds a parameter's gradient, when parameter gradients are wanted and
    /// the parameter learns (trainable and not frozen).
    pub fn accumulate(&mut self, param: &Param<B>, g: B::Tensor) -> Result<()> {
        match &mut self.grads {
            Some(gr) if param.learns() => gr.accumulate(self.backend, param.id, g),
            _ => Ok(()),
        }
    }

    /// Runs a child layer's backward pass (see [`Forward::run`]).
    pub fn run(
        &mut self,
        layer: &dyn Layer<B>,
        dy: B::Tensor,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let start = self.timed.then(Instant::now);
        self.depth += 1;
        let dx = layer.backward(dy, self, need_dx);
        self.depth -= 1;
        if let Some(t) = start {
            let depth = self.depth;
            self.profile.row(layer.path(), layer.kind(), depth).backward +=
                t.elapsed().as_secs_f64();
        }
        dx
    }
}
