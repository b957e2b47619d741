//! Layer kinds, one file each, behind one trait.
//!
//! A file holds the kind's spec (what the TOML says, checked by serde),
//! its build function (the spec checked once against its input shape into
//! a built layer, with its parameters), and the built layer's forward and
//! backward passes ([`Layer`]). Containers are layers too: a
//! [`sequential`] list, parallel [`branches`] merged by concatenation or
//! sum, and a [`residual`] block; they nest to any depth, and parameter
//! names follow the nesting (`layers.3.branch.1.layers.0.weight`).
//!
//! # Adding a layer kind
//!
//! Write one file, and add two lines to this one: its `mod` and its line in
//! the `registry!` below. [`activation`] is the smallest real example (this
//! is that file, doc comments aside):
//!
//! ```ignore
//! #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct ActivationLayerSpec {             // the TOML keys
//!     pub activation: ActivationSpec,
//! }
//!
//! impl SpecNode for ActivationLayerSpec {}     // no nested layers
//!
//! pub struct ActivationLayer {                 // the built layer
//!     path: String,
//!     act: Activation,
//!     shape: Vec<usize>,
//! }
//!
//! pub fn build<B: Backend>(                    // checked once, built once
//!     s: &ActivationLayerSpec,
//!     at: &At,
//!     input: &[usize],
//!     _: &mut Builder<B>,
//! ) -> Result<Box<dyn Layer<B>>> {
//!     Ok(Box::new(ActivationLayer {
//!         path: at.path.clone(),
//!         act: s.activation.kernel(),
//!         shape: input.to_vec(),
//!     }))
//! }
//!
//! impl<B: Backend> Layer<B> for ActivationLayer {
//!     fn kind(&self) -> &'static str { "activation" }
//!     fn path(&self) -> &str { &self.path }
//!     fn output_shape(&self) -> &[usize] { &self.shape }
//!
//!     fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
//!         let y = f.backend.activation(&x, self.act)?;
//!         f.save(vec![x]);                     // what backward needs
//!         Ok(y)
//!     }
//!
//!     fn backward(&self, dy: B::Tensor, b: &mut Backward<'_, B>, _need_dx: bool)
//!         -> Result<Option<B::Tensor>> {
//!         let [x] = b.saved()? else {
//!             return Err(mismatch::<B>(self));
//!         };
//!         Ok(Some(b.backend.activation_backward(x, &dy, self.act)?))
//!     }
//! }
//! ```
//!
//! and here: `pub mod activation;` and
//! `"activation" => Activation(activation::ActivationLayerSpec) = activation::build,`.
//! The spec is then read from TOML (`type = "activation"`), built and shape
//! checked, saved and loaded, run on every backend and inside any
//! container; the conformance and gradient tests take it as soon as a case
//! uses it. A layer with weights makes them with [`Builder::weights`] and
//! reports them through [`Layer::visit_params`]; a container builds its
//! children with [`Builder::sequence`] and runs them with [`Forward::run`]
//! and [`Backward::run`] ([`residual`] is a container in one file).
//!
//! Backend operations a layer needs go in [`Backend`]: a primitive there
//! (every backend implements it), or an operation composed of primitives
//! with a default implementation that a backend may override.

use std::any::Any;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{NnError, Result};
use crate::param::{Init, InitRng, Param};
use crate::pass::{Backward, Forward};

pub mod activation;
pub mod batch_norm;
pub mod branches;
pub mod conv;
pub mod conv_pool;
pub mod dense;
pub mod dropout;
pub mod flatten;
pub mod global_pool;
pub mod pool;
pub mod residual;
pub mod separable;
pub mod sequential;

use crate::spec::Empty;
pub use sequential::Sequential;

/// A built layer: its shape, its parameters, and its forward and backward
/// passes. Layers are `&self` in both passes; what a pass produces lives in
/// the caller's [`Forward`] and [`Backward`].
pub trait Layer<B: Backend>: AsAny + Send + Sync {
    /// The layer's `type` in the spec (or a description, for fused layers).
    fn kind(&self) -> &'static str;
    /// The layer's place in the spec, such as `layers.3.branch.1.layers.0`.
    fn path(&self) -> &str;
    /// The shape of one output sample.
    fn output_shape(&self) -> &[usize];
    /// The forward pass of a batch. Saves what backward needs with
    /// [`Forward::save`] (leaf layers: one entry per call).
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor>;
    /// The backward pass from the gradient of the output: adds parameter
    /// gradients through [`Backward::accumulate`] and returns the input
    /// gradient when `need_dx`.
    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>>;
    /// This layer's parameters and its children's, in build order.
    fn visit_params<'a>(&'a self, _f: &mut dyn FnMut(&'a Param<B>)) {}
    fn visit_params_mut<'a>(&'a mut self, _f: &mut dyn FnMut(&'a mut Param<B>)) {}
    /// The layers inside a container.
    fn children(&self) -> Vec<&dyn Layer<B>> {
        Vec::new()
    }
    /// Every list of layers inside, innermost first (for passes over the
    /// built network, such as fusion).
    fn visit_sequences_mut(&mut self, _f: &mut dyn FnMut(&mut LayerList<B>)) {}
}

/// A list of built layers, as containers hold them.
pub type LayerList<B> = Vec<Box<dyn Layer<B>>>;

/// Downcasting for built layers (the fusion pass recognises the layers it
/// fuses by their type).
pub trait AsAny: Any {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<T: Any> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The error of a backward pass whose tape entry does not match its layer.
pub(crate) fn mismatch<B: Backend>(layer: &dyn Layer<B>) -> NnError {
    NnError::Pass(format!(
        "{} ({}): the backward pass does not match the recorded forward pass",
        layer.path(),
        layer.kind()
    ))
}

/// The end of a weighted layer's forward pass: `act` on its linear output
/// `z`, saving the input `x`, and `z` unless the activation is linear.
pub fn activate<B: Backend>(
    f: &mut Forward<'_, B>,
    x: B::Tensor,
    z: B::Tensor,
    act: kernels::Activation,
) -> Result<B::Tensor> {
    if act == kernels::Activation::Linear {
        f.save(vec![x]);
        return Ok(z);
    }
    let y = f.backend.activation(&z, act)?;
    f.save(vec![x, z]);
    Ok(y)
}

/// The start of the backward pass of a layer that ended with [`activate`]:
/// its saved input, and the gradient of its linear output.
pub fn deactivate<'a, B: Backend>(
    layer: &dyn Layer<B>,
    b: &mut Backward<'a, B>,
    dy: B::Tensor,
    act: kernels::Activation,
) -> Result<(&'a B::Tensor, B::Tensor)> {
    match b.saved()? {
        [x] => Ok((x, dy)),
        [x, z] => Ok((x, b.backend.activation_backward(z, &dy, act)?)),
        _ => Err(mismatch(layer)),
    }
}

/// The most values one tensor may hold (2^32: 16 GiB of f32).
pub const MAX_TENSOR: usize = 1 << 32;

/// Where a layer sits in the spec: its path, for parameter names and errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    /// `layers.3.branch.1.layers.0`.
    pub path: String,
    pub kind: &'static str,
}

impl At {
    /// An error about this layer's options or input shape.
    pub fn err(&self, message: impl Into<String>) -> NnError {
        NnError::Layer {
            at: self
                .path
                .strip_prefix("layers.")
                .unwrap_or(&self.path)
                .to_string(),
            kind: self.kind.to_string(),
            message: message.into(),
        }
    }

    /// Checks that a tensor of `shape` can be made before it is allocated:
    /// sizes come from a config, and 2^40 units would abort the process.
    pub fn check_size(&self, what: &str, shape: &[usize]) -> Result<()> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        match n {
            Some(n) if n <= MAX_TENSOR => Ok(()),
            _ => Err(self.err(format!(
                "its {what} would hold {} values{}; the most a tensor may hold is {MAX_TENSOR} (16 GiB of f32)",
                shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" × "),
                n.map_or(String::new(), |n| format!(" = {n}"))
            ))),
        }
    }

    /// Checks a layer's l1 and l2 penalties: finite and not negative.
    pub fn penalties(&self, l1: f32, l2: f32) -> Result<()> {
        for (key, v) in [("l1", l1), ("l2", l2)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(self.err(format!(
                    "{key} = {v}; a penalty must be a finite number ≥ 0"
                )));
            }
        }
        Ok(())
    }

    /// A parameter's name: `layers.3.weight`.
    pub fn name(&self, what: &str) -> String {
        format!("{}.{what}", self.path)
    }

    /// A place inside this one: `layers.3` → `layers.3.depthwise`.
    pub fn child(&self, what: &str, kind: &'static str) -> At {
        At {
            path: format!("{}.{what}", self.path),
            kind,
        }
    }

    /// Checks the rank of the input shape.
    pub fn need_rank(&self, input: &[usize], rank: usize, what: &str) -> Result<()> {
        if input.len() != rank {
            return Err(self.err(format!(
                "needs {what} input, but receives {} (add a flatten or use the other dimension's layer)",
                describe(input)
            )));
        }
        Ok(())
    }
}

/// A sample's shape for messages: `16 × 4996`.
pub fn describe(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" × ")
}

/// A salt for the random draws of the layer at `path` (FNV-1a): stable
/// across builds, different for each layer.
pub fn salt(path: &str) -> u64 {
    path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What layers are built with: the backend, the initializer and its random
/// stream, and the next parameter id. Parameters are drawn in build order,
/// so the same specs and seed give the same weights.
pub struct Builder<'a, B: Backend> {
    pub backend: &'a B,
    init: Init,
    rng: InitRng,
    next_id: usize,
}

impl<'a, B: Backend> Builder<'a, B> {
    pub(crate) fn new(backend: &'a B, init: Init, seed: u64) -> Self {
        Builder {
            backend,
            init,
            rng: InitRng::new(seed),
            next_id: 0,
        }
    }

    /// How many parameters were made.
    pub(crate) fn n_params(&self) -> usize {
        self.next_id
    }

    fn make(
        &mut self,
        name: String,
        value: B::Tensor,
        l1: f32,
        l2: f32,
        trainable: bool,
    ) -> Param<B> {
        self.next_id += 1;
        Param {
            id: self.next_id - 1,
            name,
            value,
            l1,
            l2,
            trainable,
            frozen: false,
        }
    }

    /// Weights of `shape`, drawn by the initializer for these fans.
    pub fn weights(
        &mut self,
        name: String,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        l1: f32,
        l2: f32,
    ) -> Result<Param<B>> {
        let n = shape.iter().product();
        let v = self.rng.weights(self.init, n, fan_in, fan_out);
        let t = self.backend.tensor(v, shape)?;
        Ok(self.make(name, t, l1, l2, true))
    }

    /// `n` copies of `value`: a bias (trainable) or a running statistic (not).
    pub fn constant(
        &mut self,
        name: String,
        n: usize,
        value: f32,
        trainable: bool,
    ) -> Result<Param<B>> {
        let t = self.backend.tensor(vec![value; n], &[n])?;
        Ok(self.make(name, t, 0.0, 0.0, trainable))
    }

    /// Builds one layer at `path` for inputs of `input`'s shape.
    pub fn layer(
        &mut self,
        spec: &LayerSpec,
        path: String,
        input: &[usize],
    ) -> Result<Box<dyn Layer<B>>> {
        let at = At {
            path,
            kind: spec.kind(),
        };
        spec.build(&at, input, self)
    }

    /// Builds `specs` in order at `path.0`, `path.1`, … as one sequence.
    pub fn sequence(
        &mut self,
        specs: &[LayerSpec],
        path: &str,
        input: &[usize],
    ) -> Result<Sequential<B>> {
        let mut layers = Vec::with_capacity(specs.len());
        let mut shape = input.to_vec();
        for (i, spec) in specs.iter().enumerate() {
            let layer = self.layer(spec, format!("{path}.{i}"), &shape)?;
            shape = layer.output_shape().to_vec();
            layers.push(layer);
        }
        Ok(Sequential::new(path.to_string(), input.to_vec(), layers))
    }
}

/// What every spec type offers beyond serde: the specs nested in it.
pub trait SpecNode {
    /// The specs nested in this one (containers), in order.
    fn nested(&self) -> Vec<&LayerSpec> {
        Vec::new()
    }
    fn nested_mut(&mut self) -> Vec<&mut LayerSpec> {
        Vec::new()
    }
}

impl SpecNode for Empty {}

/// Generates [`LayerSpec`] (tagged by `type` in TOML) and its dispatch
/// from one line per layer kind: `"type" => Variant(SpecType) = build_fn`.
macro_rules! registry {
    ($( $(#[$doc:meta])* $name:literal => $variant:ident($spec:ty) = $build:path ),* $(,)?) => {
        /// One layer of a model, tagged by `type`.
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum LayerSpec {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($spec), )*
        }

        impl LayerSpec {
            /// The layer's `type` name.
            pub fn kind(&self) -> &'static str {
                match self { $( LayerSpec::$variant(_) => $name, )* }
            }

            /// Checks the spec against its input shape and builds the layer.
            pub fn build<B: Backend>(&self, at: &At, input: &[usize], cx: &mut Builder<B>) -> Result<Box<dyn Layer<B>>> {
                match self { $( LayerSpec::$variant(s) => $build(s, at, input, cx), )* }
            }

            /// The specs nested in this one (containers), in order.
            pub fn nested(&self) -> Vec<&LayerSpec> {
                match self { $( LayerSpec::$variant(s) => SpecNode::nested(s), )* }
            }

            pub fn nested_mut(&mut self) -> Vec<&mut LayerSpec> {
                match self { $( LayerSpec::$variant(s) => SpecNode::nested_mut(s), )* }
            }
        }
    };
}

registry! {
    "conv1d" => Conv1d(conv::ConvSpec) = conv::build_1d,
    "separable_conv1d" => SeparableConv1d(separable::SeparableSpec) = separable::build_1d,
    "conv2d" => Conv2d(conv::ConvSpec) = conv::build_2d,
    "separable_conv2d" => SeparableConv2d(separable::SeparableSpec) = separable::build_2d,
    "max_pool1d" => MaxPool1d(pool::PoolSpec) = pool::build_max_1d,
    "avg_pool1d" => AvgPool1d(pool::PoolSpec) = pool::build_avg_1d,
    "max_pool2d" => MaxPool2d(pool::PoolSpec) = pool::build_max_2d,
    "avg_pool2d" => AvgPool2d(pool::PoolSpec) = pool::build_avg_2d,
    "global_avg_pool" => GlobalAvgPool(Empty) = global_pool::build_avg,
    "global_max_pool" => GlobalMaxPool(Empty) = global_pool::build_max,
    "flatten" => Flatten(Empty) = flatten::build,
    "dense" => Dense(dense::DenseSpec) = dense::build,
    "dropout" => Dropout(dropout::DropoutSpec) = dropout::build,
    "batch_norm" => BatchNorm(batch_norm::BatchNormSpec) = batch_norm::build,
    "activation" => Activation(activation::ActivationLayerSpec) = activation::build,
    "sequential" => Sequential(sequential::SequentialSpec) = sequential::build,
    "branches" => Branches(branches::BranchesSpec) = branches::build,
    "residual" => Residual(residual::ResidualSpec) = residual::build,
}

impl LayerSpec {
    /// Visits this spec and every spec nested in it, depth first, in order.
    pub fn walk<'s>(&'s self, f: &mut dyn FnMut(&'s LayerSpec)) {
        f(self);
        for n in self.nested() {
            n.walk(f);
        }
    }

    /// [`LayerSpec::walk`] with mutable access.
    pub fn walk_mut(&mut self, f: &mut dyn FnMut(&mut LayerSpec)) {
        f(self);
        for n in self.nested_mut() {
            n.walk_mut(f);
        }
    }
}
