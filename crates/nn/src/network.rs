//! Networks built from layer specs: each spec checked once against its
//! input shape into a built layer, the fusion pass over the result, then
//! forward and backward passes whose state the caller owns.

use crate::backend::{Backend, Update};
use crate::error::{NnError, Result};
use crate::layers::{describe, Builder, Layer, LayerSpec, Sequential};
use crate::param::{Gradients, Init, OptState, Param};
use crate::pass::{Backward, Ctx, Forward, Mode, Pass};

/// A feed-forward network: the spec's layers (containers included), built
/// for inputs of one sample's shape.
pub struct Network<B: Backend> {
    pub backend: B,
    root: Sequential<B>,
    /// The shape of one input sample, e.g. [channels, length].
    pub input_shape: Vec<usize>,
    /// The shape of one output sample.
    pub output_shape: Vec<usize>,
    n_params: usize,
}

/// Options of a network's build (bed-reader style): the initializer, its
/// seed, and whether the fusion pass runs.
pub struct NetworkBuilder<'s, B: Backend> {
    backend: B,
    specs: &'s [LayerSpec],
    input: Vec<usize>,
    init: Init,
    seed: u64,
    fuse: bool,
}

impl<B: Backend> NetworkBuilder<'_, B> {
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// The seed of the initial weights.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Whether convolutions and the max pools after them are fused (yes by default).
    pub fn fuse(mut self, fuse: bool) -> Self {
        self.fuse = fuse;
        self
    }

    pub fn build(self) -> Result<Network<B>> {
        if self.specs.is_empty() {
            return Err(NnError::Pass("a network needs at least one layer".into()));
        }
        let mut cx = Builder::new(&self.backend, self.init, self.seed);
        let mut root = cx.sequence(self.specs, "layers", &self.input)?;
        let n_params = cx.n_params();
        if self.fuse {
            crate::fuse::fuse(&mut root);
        }
        let output_shape = root.output_shape().to_vec();
        Ok(Network {
            backend: self.backend,
            root,
            input_shape: self.input,
            output_shape,
            n_params,
        })
    }
}

/// What a backward pass gives: the input gradient and the parameter
/// gradients, each when asked for.
pub type BackwardOutput<B> = (Option<<B as Backend>::Tensor>, Option<Gradients<B>>);

impl<B: Backend> Network<B> {
    /// Builds, initializes and fuses a network for inputs of one sample's shape.
    pub fn build(
        backend: B,
        specs: &[LayerSpec],
        input_shape: &[usize],
        init: Init,
        seed: u64,
    ) -> Result<Self> {
        Self::builder(backend, specs, input_shape)
            .init(init)
            .seed(seed)
            .build()
    }

    /// A builder with the defaults: He initialization, seed 0, fusion on.
    pub fn builder<'s>(
        backend: B,
        specs: &'s [LayerSpec],
        input_shape: &[usize],
    ) -> NetworkBuilder<'s, B> {
        NetworkBuilder {
            backend,
            specs,
            input: input_shape.to_vec(),
            init: Init::default(),
            seed: 0,
            fuse: true,
        }
    }

    fn check_input(&self, x: &B::Tensor) -> Result<()> {
        let s = self.backend.shape(x);
        if s.len() != self.input_shape.len() + 1 || s[1..] != self.input_shape[..] {
            return Err(NnError::Shape {
                op: "network",
                message: format!(
                    "the network takes samples of {}, but was given a batch of shape {s:?}",
                    describe(&self.input_shape)
                ),
            });
        }
        Ok(())
    }

    /// A forward pass of a batch shaped [batch, input_shape…]. The network
    /// is not changed: a training pass's new batch-norm statistics stay in
    /// the pass until [`Network::commit`] (or use [`Network::forward_train`]).
    /// A training pass does not record the frozen base
    /// ([`Network::frozen_base`]), which its backward pass never enters.
    pub fn forward(&self, x: &B::Tensor, ctx: &Ctx) -> Result<Pass<B>> {
        self.check_input(x)?;
        let base = if ctx.record && ctx.mode == Mode::Train && !ctx.keep_outputs {
            self.frozen_base()
        } else {
            0
        };
        self.backend.install(|| {
            let mut f = Forward::new(&self.backend, ctx);
            let mut h = x.clone();
            for (i, l) in self.root.layers().iter().enumerate() {
                f.record = ctx.record && i >= base;
                f.mark();
                h = f.run(l.as_ref(), h)?;
            }
            f.skipped = base;
            Ok(f.finish(h))
        })
    }

    /// How many top-level layers at the start have no parameter that
    /// learns: the frozen base (0 when nothing is frozen). Backward passes
    /// that need no input gradient stop above it, so its layers compute no
    /// gradient at all.
    pub fn frozen_base(&self) -> usize {
        if !self.params().iter().any(|p| p.frozen) {
            return 0;
        }
        let layers = self.root.layers();
        layers
            .iter()
            .position(|l| {
                let mut learns = false;
                l.visit_params(&mut |p| learns |= p.learns());
                learns
            })
            .unwrap_or(layers.len())
    }

    /// Freezes (or unfreezes) every parameter of the layers at these spec
    /// paths, containers included (`layers.2` freezes all inside it).
    /// Returns, for each path, how many parameters it matched.
    pub fn set_frozen(&mut self, paths: &[String], frozen: bool) -> Vec<usize> {
        let mut counts = vec![0; paths.len()];
        for p in self.params_mut() {
            for (k, path) in paths.iter().enumerate() {
                if p.name.starts_with(path.as_str())
                    && p.name.as_bytes().get(path.len()) == Some(&b'.')
                {
                    p.frozen = frozen;
                    counts[k] += 1;
                }
            }
        }
        counts
    }

    /// A recorded training-mode pass, its running statistics committed.
    pub fn forward_train(&mut self, x: &B::Tensor, seed: u64, profile: bool) -> Result<Pass<B>> {
        let mut pass = self.forward(x, &Ctx::train(seed).profiled(profile))?;
        self.commit(&mut pass);
        Ok(pass)
    }

    /// Moves the running statistics a training pass computed into the network.
    pub fn commit(&mut self, pass: &mut Pass<B>) {
        if pass.stats.is_empty() {
            return;
        }
        let mut by_id: Vec<Option<&mut Param<B>>> = (0..self.n_params).map(|_| None).collect();
        for p in self.params_mut() {
            let id = p.id;
            by_id[id] = Some(p);
        }
        for (id, value) in pass.stats.drain(..) {
            if let Some(p) = by_id[id].as_mut() {
                p.value = value;
            }
        }
    }

    /// The output of an inference pass that keeps nothing.
    pub fn predict(&self, x: &B::Tensor) -> Result<B::Tensor> {
        Ok(self.forward(x, &Ctx::eval())?.output)
    }

    /// Every layer's output, by spec path (fused layers run as their parts).
    pub fn forward_all(&self, x: &B::Tensor, ctx: &Ctx) -> Result<Vec<(String, B::Tensor)>> {
        Ok(self.forward(x, &ctx.keeping_outputs())?.outputs)
    }

    /// The backward pass from the gradient of the loss with respect to the
    /// output: the parameter gradients and, when `need_dx`, the input
    /// gradient. Any recorded pass will do, an evaluation pass included.
    pub fn backward_with(
        &self,
        pass: &mut Pass<B>,
        dy: B::Tensor,
        params: bool,
        need_dx: bool,
    ) -> Result<BackwardOutput<B>> {
        let out = self.backend.shape(&pass.output);
        let got = self.backend.shape(&dy);
        if out != got {
            return Err(NnError::Shape {
                op: "backward",
                message: format!("the output gradient has shape {got:?}, the output {out:?}"),
            });
        }
        // Layers below `floor` need neither an input nor a weight gradient.
        let floor = if need_dx { 0 } else { self.frozen_base() };
        if pass.skipped > floor {
            return Err(NnError::Pass(format!(
                "the pass did not record the {} frozen layers at the start; an input gradient needs a pass recorded in full",
                pass.skipped
            )));
        }
        let unread = pass.marks.get(floor).copied().unwrap_or(0);
        let layers = self.root.layers();
        self.backend.install(|| {
            let grads = params.then(|| Gradients::new(self.n_params));
            let mut b = Backward::new(&self.backend, pass, grads)?;
            let mut g = Some(dy);
            for i in (floor..layers.len()).rev() {
                let l = layers[i].as_ref();
                let dy = g.take().ok_or_else(|| crate::layers::mismatch(l))?;
                g = b.run(l, dy, i > floor || need_dx)?;
            }
            let grads = if floor > 0 {
                b.finish_above(unread)?
            } else {
                b.finish()?
            };
            Ok((if need_dx { g } else { None }, grads))
        })
    }

    /// The parameter gradients of a recorded pass.
    pub fn backward(&self, pass: &mut Pass<B>, dy: B::Tensor) -> Result<Gradients<B>> {
        let (_, g) = self.backward_with(pass, dy, true, false)?;
        Ok(g.expect("asked for"))
    }

    /// The gradient with respect to the input alone (saliency, explanations):
    /// no parameter gradient is kept.
    pub fn input_gradient(&self, pass: &mut Pass<B>, dy: B::Tensor) -> Result<B::Tensor> {
        let (dx, _) = self.backward_with(pass, dy, false, true)?;
        dx.ok_or_else(|| NnError::Pass("the network gave no input gradient".into()))
    }

    /// A forward pass through the top-level layers `range` alone, from
    /// `x`, the input of the first of them (the output of the layer before
    /// it). With [`Network::backward_layers`], gives the gradient with
    /// respect to an intermediate layer's output (Grad-CAM, filter
    /// visualisation).
    pub fn forward_layers(
        &self,
        x: &B::Tensor,
        range: std::ops::Range<usize>,
        ctx: &Ctx,
    ) -> Result<Pass<B>> {
        let layers = self.top_layers(&range)?;
        self.backend.install(|| {
            let mut f = Forward::new(&self.backend, ctx);
            let mut h = x.clone();
            for l in layers {
                h = f.run(l.as_ref(), h)?;
            }
            Ok(f.finish(h))
        })
    }

    /// The backward pass of a [`Network::forward_layers`] pass over the
    /// same `range`: the gradient with respect to that pass's input.
    pub fn backward_layers(
        &self,
        pass: &mut Pass<B>,
        dy: B::Tensor,
        range: std::ops::Range<usize>,
    ) -> Result<B::Tensor> {
        let layers = self.top_layers(&range)?;
        self.backend.install(|| {
            let mut b = Backward::new(&self.backend, pass, None)?;
            let mut g = dy;
            for l in layers.iter().rev() {
                g = b
                    .run(l.as_ref(), g, true)?
                    .ok_or_else(|| NnError::Pass(format!("{} gave no input gradient", l.path())))?;
            }
            b.finish()?;
            Ok(g)
        })
    }

    fn top_layers(&self, range: &std::ops::Range<usize>) -> Result<&[Box<dyn Layer<B>>]> {
        let all = self.root.layers();
        if range.start > range.end || range.end > all.len() {
            return Err(NnError::Pass(format!(
                "layers {}..{} asked of a network with {} top-level layers",
                range.start,
                range.end,
                all.len()
            )));
        }
        Ok(&all[range.clone()])
    }

    /// All parameters, in build order (by id).
    pub fn params(&self) -> Vec<&Param<B>> {
        let mut out = Vec::with_capacity(self.n_params);
        self.root.visit_params(&mut |p| out.push(p));
        out
    }

    pub fn params_mut(&mut self) -> Vec<&mut Param<B>> {
        let mut out = Vec::with_capacity(self.n_params);
        self.root.visit_params_mut(&mut |p| out.push(p));
        out
    }

    /// Adds the l1/l2 penalties' gradients; returns the total penalty.
    pub fn apply_penalties(&self, grads: &mut Gradients<B>) -> Result<f32> {
        let mut total = 0.0;
        for p in self.params() {
            if p.learns() && (p.l1 > 0.0 || p.l2 > 0.0) {
                if let Some(g) = grads.get_mut(p.id) {
                    total += self.backend.add_penalty(&p.value, g, p.l1, p.l2)?;
                }
            }
        }
        Ok(total)
    }

    /// One optimizer step over every trainable parameter with a gradient.
    pub fn step(
        &mut self,
        grads: &Gradients<B>,
        state: &mut OptState<B>,
        u: &Update,
    ) -> Result<()> {
        let backend = self.backend.clone();
        let params = self.params_mut();
        backend.install(|| {
            for p in params {
                if let (true, Some(g)) = (p.learns(), grads.get(p.id)) {
                    backend.update(&mut p.value, g, state.slot(p.id), u)?;
                }
            }
            Ok(())
        })
    }

    /// The number of values the optimizer updates (trainable, not frozen).
    pub fn n_trainable(&self) -> usize {
        self.params()
            .iter()
            .filter(|p| p.learns())
            .map(|p| self.backend.shape(&p.value).iter().product::<usize>())
            .sum()
    }

    /// The top-level layers, as built (fused layers included).
    pub fn root(&self) -> &Sequential<B> {
        &self.root
    }

    /// The layer at a spec path (`layers.3.branch.1.layers.0`).
    pub fn find(&self, path: &str) -> Option<&dyn Layer<B>> {
        fn walk<'a, B: Backend>(l: &'a dyn Layer<B>, path: &str) -> Option<&'a dyn Layer<B>> {
            if l.path() == path && l.kind() != "conv+pool" {
                return Some(l);
            }
            l.children().into_iter().find_map(|c| walk(c, path))
        }
        self.root
            .layers()
            .iter()
            .find_map(|l| walk(l.as_ref(), path))
    }
}
