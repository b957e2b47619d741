//! Networks built from layer specs: shape inference and validation once at
//! build time, then forward and backward passes over the layer list.
//!
//! Backprop is written once: [`Network::backward`] walks the nodes in
//! reverse, and each node kind knows its own backward pass. Containers are
//! nodes too ([`Node::Separable`] holds two), so composite layers with
//! parallel branches (an Inception block, summed towers) fit as new node
//! kinds that run their children's forward and backward passes.

use kernels::conv1d::Conv1dParams;
use kernels::conv2d::Conv2dParams;
use kernels::pool::{Pool1dParams, Pool2dParams, PoolKind};
use kernels::Activation;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BnSaved, Update};
use crate::error::{NnError, Result};
use crate::spec::*;

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

/// Training or inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// A tensor of a network: a weight, a bias, or a batch-norm statistic.
pub struct Param<B: Backend> {
    pub name: String,
    pub value: B::Tensor,
    pub grad: Option<B::Tensor>,
    /// Optimizer buffers (velocity, or Adam's moments).
    pub state: Vec<B::Tensor>,
    pub l1: f32,
    pub l2: f32,
    /// False for batch-norm running statistics: saved, never updated by the optimizer.
    pub trainable: bool,
}

impl<B: Backend> Param<B> {
    fn new(name: String, value: B::Tensor, l1: f32, l2: f32) -> Self {
        Param {
            name,
            value,
            grad: None,
            state: Vec::new(),
            l1,
            l2,
            trainable: true,
        }
    }

    fn accumulate(&mut self, backend: &B, g: B::Tensor) -> Result<()> {
        match &mut self.grad {
            Some(acc) => backend.add_scaled(acc, &g, 1.0),
            None => {
                self.grad = Some(g);
                Ok(())
            }
        }
    }
}

/// A small deterministic generator for initialization (SplitMix64).
struct InitRng(u64);

impl InitRng {
    fn uniform(&mut self) -> f64 {
        self.0 = kernels::norm::splitmix64(self.0);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn weights(&mut self, init: Init, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
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

/// The convolution of a [`Node::ConvPool`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FusedConv {
    One(Conv1dParams),
    Two(Conv2dParams),
}

/// One node of a network with its parameters and its forward-pass cache.
pub enum Node<B: Backend> {
    Conv1d {
        p: Conv1dParams,
        act: Activation,
        w: Param<B>,
        b: Option<Param<B>>,
        x: Option<B::Tensor>,
        z: Option<B::Tensor>,
    },
    Conv2d {
        p: Conv2dParams,
        act: Activation,
        w: Param<B>,
        b: Option<Param<B>>,
        x: Option<B::Tensor>,
        z: Option<B::Tensor>,
    },
    /// A convolution, its activation and a max pool of 2 (2 × 2 in 2D),
    /// fused: built from a conv1d layer followed by max_pool1d with size 2,
    /// stride 2, or a stride-1 conv2d followed by a 2 × 2 max_pool2d. The
    /// convolution's output is never stored.
    ConvPool {
        p: FusedConv,
        act: Activation,
        w: Param<B>,
        b: Option<Param<B>>,
        x: Option<B::Tensor>,
        mask: Option<B::Tensor>,
    },
    /// Depthwise then pointwise convolution (both nodes of the same dimension).
    Separable {
        depth: Box<Node<B>>,
        point: Box<Node<B>>,
    },
    /// 1D pooling, then an activation moved here from the convolution before it.
    Pool1d {
        p: Pool1dParams,
        act: Activation,
        x: Option<B::Tensor>,
    },
    Pool2d {
        p: Pool2dParams,
        x: Option<B::Tensor>,
    },
    GlobalPool {
        kind: PoolKind,
        x: Option<B::Tensor>,
    },
    Flatten {
        in_shape: Vec<usize>,
    },
    Dense {
        act: Activation,
        w: Param<B>,
        b: Option<Param<B>>,
        x: Option<B::Tensor>,
        z: Option<B::Tensor>,
    },
    Dropout {
        rate: f32,
        mask: Option<B::Tensor>,
    },
    BatchNorm {
        eps: f32,
        momentum: f32,
        gamma: Param<B>,
        beta: Param<B>,
        mean: Param<B>,
        var: Param<B>,
        saved: Option<(B::Tensor, BnSaved<B::Tensor>)>,
    },
    Activation {
        act: Activation,
        x: Option<B::Tensor>,
    },
}

fn layer_err(index: usize, spec: &LayerSpec, message: impl Into<String>) -> NnError {
    NnError::Layer {
        index,
        kind: spec.kind().to_string(),
        message: message.into(),
    }
}

/// Shape of a sample (without the batch dimension) after each layer.
fn describe(shape: &[usize]) -> String {
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(" × ")
}

struct Builder<'a, B: Backend> {
    backend: &'a B,
    init: Init,
    rng: InitRng,
}

impl<B: Backend> Builder<'_, B> {
    fn param(
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
        Ok(Param::new(name, self.backend.tensor(v, shape)?, l1, l2))
    }

    fn constant(
        &mut self,
        name: String,
        n: usize,
        value: f32,
        trainable: bool,
    ) -> Result<Param<B>> {
        let mut p = Param::new(name, self.backend.tensor(vec![value; n], &[n])?, 0.0, 0.0);
        p.trainable = trainable;
        Ok(p)
    }

    /// A convolution's weights (shape `wshape`, initialized for fan-in and
    /// fan-out) and, when asked for, its zero bias of `c_out` values.
    #[allow(clippy::too_many_arguments)]
    fn conv_weights(
        &mut self,
        name: &str,
        wshape: &[usize],
        fan_in: usize,
        fan_out: usize,
        bias: bool,
        l1: f32,
        l2: f32,
    ) -> Result<(Param<B>, Option<Param<B>>)> {
        let w = self.param(format!("{name}.weight"), wshape, fan_in, fan_out, l1, l2)?;
        let b = if bias {
            Some(self.constant(format!("{name}.bias"), wshape[0], 0.0, true)?)
        } else {
            None
        };
        Ok((w, b))
    }

    fn conv1d_weights(
        &mut self,
        name: &str,
        p: &Conv1dParams,
        bias: bool,
        l1: f32,
        l2: f32,
    ) -> Result<(Param<B>, Option<Param<B>>)> {
        self.conv_weights(
            name,
            &[p.c_out, p.c_in_g(), p.k],
            p.c_in_g() * p.k,
            p.c_out_g() * p.k,
            bias,
            l1,
            l2,
        )
    }

    fn conv2d_weights(
        &mut self,
        name: &str,
        p: &Conv2dParams,
        bias: bool,
        l1: f32,
        l2: f32,
    ) -> Result<(Param<B>, Option<Param<B>>)> {
        let cig = p.c_in / p.groups;
        self.conv_weights(
            name,
            &[p.c_out, cig, p.kh, p.kw],
            cig * p.kh * p.kw,
            p.c_out / p.groups * p.kh * p.kw,
            bias,
            l1,
            l2,
        )
    }

    fn conv1d(
        &mut self,
        name: &str,
        p: Conv1dParams,
        act: Activation,
        bias: bool,
        l1: f32,
        l2: f32,
    ) -> Result<Node<B>> {
        let (w, b) = self.conv1d_weights(name, &p, bias, l1, l2)?;
        Ok(Node::Conv1d {
            p,
            act,
            w,
            b,
            x: None,
            z: None,
        })
    }

    fn conv2d(
        &mut self,
        name: &str,
        p: Conv2dParams,
        act: Activation,
        bias: bool,
        l1: f32,
        l2: f32,
    ) -> Result<Node<B>> {
        let (w, b) = self.conv2d_weights(name, &p, bias, l1, l2)?;
        Ok(Node::Conv2d {
            p,
            act,
            w,
            b,
            x: None,
            z: None,
        })
    }

    /// A fused convolution + activation + max pool of 2 node.
    fn conv_pool(
        &mut self,
        name: &str,
        p: FusedConv,
        act: Activation,
        c: &ConvSpec,
    ) -> Result<Node<B>> {
        let (w, b) = match &p {
            FusedConv::One(q) => self.conv1d_weights(name, q, c.use_bias, c.l1, c.l2)?,
            FusedConv::Two(q) => self.conv2d_weights(name, q, c.use_bias, c.l1, c.l2)?,
        };
        Ok(Node::ConvPool {
            p,
            act,
            w,
            b,
            x: None,
            mask: None,
        })
    }
}

/// A feed-forward network: nodes applied in order.
pub struct Network<B: Backend> {
    pub backend: B,
    pub nodes: Vec<Node<B>>,
    /// The shape of one input sample, e.g. [channels, length].
    pub input_shape: Vec<usize>,
    /// The shape of one output sample.
    pub output_shape: Vec<usize>,
    /// Shape of a sample after each layer, for reports.
    pub shapes: Vec<Vec<usize>>,
    dropout_seed: u64,
    dropout_calls: u64,
    /// Seconds spent in each node's forward and backward passes, when
    /// profiling (environment variable GENOCNN_PROFILE set).
    pub profile: Option<Vec<(f64, f64)>>,
}

impl<B: Backend> Network<B> {
    /// Builds and initializes a network for inputs of one sample's shape.
    pub fn build(
        backend: B,
        specs: &[LayerSpec],
        input_shape: &[usize],
        init: Init,
        seed: u64,
    ) -> Result<Self> {
        let mut b = Builder {
            backend: &backend,
            init,
            rng: InitRng(kernels::norm::splitmix64(seed ^ 0x5eed)),
        };
        let mut shape = input_shape.to_vec();
        let mut nodes = Vec::new();
        let mut shapes = Vec::new();
        // Max pooling commutes with a monotonic activation, so a convolution's
        // activation moves after the max pool that follows it: the same
        // function, with the activation applied to a quarter or half as many values.
        let mut deferred: Option<Activation> = None;
        let mut skip_pool = false;
        for (i, spec) in specs.iter().enumerate() {
            let name = format!("layers.{i}");
            if std::mem::take(&mut skip_pool) {
                // This max pool runs fused into the convolution before it.
                shapes.push(shape.clone());
                continue;
            }
            // A conv1d followed by a max pool of 2 (stride 2, no padding) runs
            // as one node that never stores the convolution's output.
            if let (LayerSpec::Conv1d(c), Some(LayerSpec::MaxPool1d(ps))) = (spec, specs.get(i + 1))
            {
                let pool2 = ps.size == Size::One(2)
                    && ps.stride.is_none_or(|s| s == Size::One(2))
                    && ps.padding == 0;
                if pool2 && shape.len() == 2 && c.activation.kernel().is_monotonic() {
                    let err = |m: String| layer_err(i, spec, m);
                    let p = conv1d_params(
                        shape[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
                    )
                    .map_err(&err)?;
                    p.validate(shape[1]).map_err(&err)?;
                    let lo = p.l_out(shape[1]);
                    if lo >= 2 {
                        let act = c.activation.kernel();
                        nodes.push(b.conv_pool(&name, FusedConv::One(p), act, c)?);
                        shapes.push(vec![p.c_out, lo]);
                        shape = vec![p.c_out, lo / 2];
                        skip_pool = true;
                        continue;
                    }
                }
            }
            // A stride-1 conv2d followed by a 2 × 2 max pool (stride 2, no
            // padding) runs fused in the same way.
            if let (LayerSpec::Conv2d(c), Some(LayerSpec::MaxPool2d(ps))) = (spec, specs.get(i + 1))
            {
                let pool2 = ps.size.pair() == (2, 2)
                    && ps.stride.is_none_or(|s| s.pair() == (2, 2))
                    && ps.padding == 0;
                if pool2 && shape.len() == 3 && c.activation.kernel().is_monotonic() {
                    let p = conv2d_params(
                        shape[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
                    );
                    if kernels::conv2d::fusable_with_pool2(&p, shape[1], shape[2]) {
                        let (ho, wo) = p.out_hw(shape[1], shape[2]);
                        let act = c.activation.kernel();
                        nodes.push(b.conv_pool(&name, FusedConv::Two(p), act, c)?);
                        shapes.push(vec![p.c_out, ho, wo]);
                        shape = vec![p.c_out, ho / 2, wo / 2];
                        skip_pool = true;
                        continue;
                    }
                }
            }
            let next_is_max_pool = matches!(
                (spec, specs.get(i + 1)),
                (LayerSpec::Conv1d(_), Some(LayerSpec::MaxPool1d(_)))
                    | (LayerSpec::Conv2d(_), Some(LayerSpec::MaxPool2d(_)))
            );
            let conv_act = |a: &ActivationSpec, deferred: &mut Option<Activation>| {
                let act = a.kernel();
                if next_is_max_pool && act != Activation::Linear && act.is_monotonic() {
                    *deferred = Some(act);
                    Activation::Linear
                } else {
                    act
                }
            };
            let err = |m: String| layer_err(i, spec, m);
            let need = |rank: usize, what: &str| -> Result<()> {
                if shape.len() != rank {
                    return Err(layer_err(i, spec, format!("needs {what} input, but receives {} (add a flatten or use the other dimension's layer)", describe(&shape))));
                }
                Ok(())
            };
            let node = match spec {
                LayerSpec::Conv1d(c) => {
                    need(2, "(channels × length)")?;
                    let p = conv1d_params(
                        shape[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
                    )
                    .map_err(&err)?;
                    p.validate(shape[1]).map_err(&err)?;
                    shape = vec![p.c_out, p.l_out(shape[1])];
                    let act = conv_act(&c.activation, &mut deferred);
                    b.conv1d(&name, p, act, c.use_bias, c.l1, c.l2)?
                }
                LayerSpec::Conv2d(c) => {
                    need(3, "(channels × height × width)")?;
                    let p = conv2d_params(
                        shape[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
                    );
                    p.validate(shape[1], shape[2]).map_err(&err)?;
                    let (ho, wo) = p.out_hw(shape[1], shape[2]);
                    shape = vec![p.c_out, ho, wo];
                    let act = conv_act(&c.activation, &mut deferred);
                    b.conv2d(&name, p, act, c.use_bias, c.l1, c.l2)?
                }
                LayerSpec::SeparableConv1d(s) => {
                    need(2, "(channels × length)")?;
                    let c = shape[0];
                    let dp = conv1d_params(
                        c,
                        c * s.depth_multiplier,
                        s.kernel,
                        s.stride,
                        s.dilation,
                        s.padding,
                        c,
                    )
                    .map_err(&err)?;
                    dp.validate(shape[1]).map_err(&err)?;
                    let l = dp.l_out(shape[1]);
                    let pp = Conv1dParams::new(dp.c_out, s.filters, 1);
                    shape = vec![s.filters, l];
                    let depth = b.conv1d(
                        &format!("{name}.depthwise"),
                        dp,
                        Activation::Linear,
                        false,
                        s.l1,
                        s.l2,
                    )?;
                    let point = b.conv1d(
                        &format!("{name}.pointwise"),
                        pp,
                        s.activation.kernel(),
                        s.use_bias,
                        s.l1,
                        s.l2,
                    )?;
                    Node::Separable {
                        depth: Box::new(depth),
                        point: Box::new(point),
                    }
                }
                LayerSpec::SeparableConv2d(s) => {
                    need(3, "(channels × height × width)")?;
                    let c = shape[0];
                    let dp = conv2d_params(
                        c,
                        c * s.depth_multiplier,
                        s.kernel,
                        s.stride,
                        s.dilation,
                        s.padding,
                        c,
                    );
                    dp.validate(shape[1], shape[2]).map_err(&err)?;
                    let (ho, wo) = dp.out_hw(shape[1], shape[2]);
                    let pp = Conv2dParams::new(dp.c_out, s.filters, 1);
                    shape = vec![s.filters, ho, wo];
                    let depth = b.conv2d(
                        &format!("{name}.depthwise"),
                        dp,
                        Activation::Linear,
                        false,
                        s.l1,
                        s.l2,
                    )?;
                    let point = b.conv2d(
                        &format!("{name}.pointwise"),
                        pp,
                        s.activation.kernel(),
                        s.use_bias,
                        s.l1,
                        s.l2,
                    )?;
                    Node::Separable {
                        depth: Box::new(depth),
                        point: Box::new(point),
                    }
                }
                LayerSpec::MaxPool1d(ps) | LayerSpec::AvgPool1d(ps) => {
                    need(2, "(channels × length)")?;
                    let kind = if matches!(spec, LayerSpec::MaxPool1d(_)) {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    };
                    let size = ps
                        .size
                        .one()
                        .ok_or_else(|| err("size must be one number for 1D pooling".into()))?;
                    let stride = match ps.stride {
                        None => size,
                        Some(s) => s.one().ok_or_else(|| {
                            err("stride must be one number for 1D pooling".into())
                        })?,
                    };
                    let p = Pool1dParams {
                        kind,
                        size,
                        stride,
                        pad: ps.padding,
                    };
                    p.validate(shape[1]).map_err(&err)?;
                    shape = vec![shape[0], p.l_out(shape[1])];
                    Node::Pool1d {
                        p,
                        act: deferred.take().unwrap_or(Activation::Linear),
                        x: None,
                    }
                }
                LayerSpec::MaxPool2d(ps) | LayerSpec::AvgPool2d(ps) => {
                    need(3, "(channels × height × width)")?;
                    let kind = if matches!(spec, LayerSpec::MaxPool2d(_)) {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    };
                    let size = ps.size.pair();
                    let p = Pool2dParams {
                        kind,
                        size,
                        stride: ps.stride.map_or(size, |s| s.pair()),
                        pad: (ps.padding, ps.padding),
                    };
                    p.validate(shape[1], shape[2]).map_err(&err)?;
                    let (ho, wo) = p.out_hw(shape[1], shape[2]);
                    shape = vec![shape[0], ho, wo];
                    Node::Pool2d { p, x: None }
                }
                LayerSpec::GlobalAvgPool(_) | LayerSpec::GlobalMaxPool(_) => {
                    if shape.len() < 2 {
                        return Err(err(format!(
                            "needs (channels × …) input, but receives {}",
                            describe(&shape)
                        )));
                    }
                    let kind = if matches!(spec, LayerSpec::GlobalMaxPool(_)) {
                        PoolKind::Max
                    } else {
                        PoolKind::Avg
                    };
                    shape = vec![shape[0]];
                    Node::GlobalPool { kind, x: None }
                }
                LayerSpec::Flatten(_) => {
                    let in_shape = shape.clone();
                    shape = vec![shape.iter().product()];
                    Node::Flatten { in_shape }
                }
                LayerSpec::Dense(d) => {
                    if shape.len() != 1 {
                        return Err(err(format!("needs a flat input, but receives {}; add a flatten or a global pooling layer before it", describe(&shape))));
                    }
                    if d.units == 0 {
                        return Err(err("units must be at least 1".into()));
                    }
                    let n_in = shape[0];
                    let w = b.param(
                        format!("{name}.weight"),
                        &[d.units, n_in],
                        n_in,
                        d.units,
                        d.l1,
                        d.l2,
                    )?;
                    let bias = if d.use_bias {
                        Some(b.constant(format!("{name}.bias"), d.units, 0.0, true)?)
                    } else {
                        None
                    };
                    shape = vec![d.units];
                    Node::Dense {
                        act: d.activation.kernel(),
                        w,
                        b: bias,
                        x: None,
                        z: None,
                    }
                }
                LayerSpec::Dropout(d) => {
                    if !(0.0..1.0).contains(&d.rate) {
                        return Err(err(format!(
                            "rate = {}: expected a value in [0, 1)",
                            d.rate
                        )));
                    }
                    Node::Dropout {
                        rate: d.rate,
                        mask: None,
                    }
                }
                LayerSpec::BatchNorm(bn) => {
                    let c = shape[0];
                    Node::BatchNorm {
                        eps: bn.eps,
                        momentum: bn.momentum,
                        gamma: b.constant(format!("{name}.gamma"), c, 1.0, true)?,
                        beta: b.constant(format!("{name}.beta"), c, 0.0, true)?,
                        mean: b.constant(format!("{name}.running_mean"), c, 0.0, false)?,
                        var: b.constant(format!("{name}.running_var"), c, 1.0, false)?,
                        saved: None,
                    }
                }
                LayerSpec::Activation(a) => Node::Activation {
                    act: a.activation.kernel(),
                    x: None,
                },
            };
            let pool = matches!(node, Node::Pool2d { .. });
            nodes.push(node);
            shapes.push(shape.clone());
            if pool {
                if let Some(act) = deferred.take() {
                    nodes.push(Node::Activation { act, x: None });
                    shapes.push(shape.clone());
                }
            }
        }
        let profile = std::env::var_os("GENOCNN_PROFILE").map(|_| vec![(0.0, 0.0); nodes.len()]);
        Ok(Network {
            backend,
            nodes,
            input_shape: input_shape.to_vec(),
            output_shape: shape,
            shapes,
            dropout_seed: seed,
            dropout_calls: 0,
            profile,
        })
    }

    /// Forward pass of a batch shaped [batch, input_shape…]. In training
    /// mode, each node keeps what its backward pass needs.
    pub fn forward(&mut self, x: &B::Tensor, mode: Mode) -> Result<B::Tensor> {
        let backend = self.backend.clone();
        for node in self.nodes.iter_mut() {
            node.clear_cache();
        }
        let mut h = x.clone();
        for (k, node) in self.nodes.iter_mut().enumerate() {
            if mode == Mode::Train {
                self.dropout_calls += 1;
            }
            let seed = kernels::norm::splitmix64(
                self.dropout_seed ^ self.dropout_calls.wrapping_mul(0x9e37_79b9),
            );
            let start = self.profile.as_ref().map(|_| std::time::Instant::now());
            h = node.forward(&backend, h, mode, seed)?;
            if let (Some(p), Some(t)) = (self.profile.as_mut(), start) {
                p[k].0 += t.elapsed().as_secs_f64();
            }
        }
        Ok(h)
    }

    /// Backward pass from the gradient of the loss with respect to the
    /// output; accumulates parameter gradients. Returns the input gradient
    /// when `need_dx` (for saliency maps).
    pub fn backward(&mut self, dy: &B::Tensor, need_dx: bool) -> Result<Option<B::Tensor>> {
        let backend = self.backend.clone();
        let mut g = dy.clone();
        let n = self.nodes.len();
        for (i, node) in self.nodes.iter_mut().enumerate().rev() {
            let want_dx = i > 0 || need_dx;
            let start = self.profile.as_ref().map(|_| std::time::Instant::now());
            let r = node.backward(&backend, g, want_dx)?;
            if let (Some(p), Some(t)) = (self.profile.as_mut(), start) {
                p[i].1 += t.elapsed().as_secs_f64();
            }
            match r {
                Some(dx) => g = dx,
                None => {
                    debug_assert!(
                        i == 0 && !need_dx,
                        "node {i} of {n} returned no input gradient"
                    );
                    return Ok(None);
                }
            }
        }
        Ok(Some(g))
    }

    /// Restarts the dropout-mask sequence (masks depend on the seed and on
    /// the number of training-mode forward passes so far).
    pub fn reset_dropout(&mut self, calls: u64) {
        self.dropout_calls = calls;
    }

    /// All parameters, in a fixed order.
    pub fn params(&mut self) -> Vec<&mut Param<B>> {
        let mut out = Vec::new();
        for node in self.nodes.iter_mut() {
            node.collect(&mut out);
        }
        out
    }

    /// Clears gradients and cached activations.
    pub fn zero_grad(&mut self) {
        for p in self.params() {
            p.grad = None;
        }
    }

    /// Adds the l1/l2 penalties' gradients; returns the total penalty.
    pub fn apply_penalties(&mut self) -> Result<f32> {
        let backend = self.backend.clone();
        let mut total = 0.0;
        for p in self.params() {
            if p.trainable && (p.l1 > 0.0 || p.l2 > 0.0) {
                let grad = match &mut p.grad {
                    Some(g) => g,
                    None => continue,
                };
                total += backend.add_penalty(&p.value, grad, p.l1, p.l2)?;
            }
        }
        Ok(total)
    }

    /// One optimizer step over every trainable parameter with a gradient.
    pub fn step(&mut self, u: &Update) -> Result<()> {
        let backend = self.backend.clone();
        for p in self.params() {
            if let (true, Some(g)) = (p.trainable, &p.grad) {
                backend.update(&mut p.value, g, &mut p.state, u)?;
            }
        }
        Ok(())
    }

    /// The number of trainable values.
    pub fn n_trainable(&mut self) -> usize {
        let backend = self.backend.clone();
        self.params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| backend.shape(&p.value).iter().product::<usize>())
            .sum()
    }
}

fn conv1d_params(
    c_in: usize,
    filters: usize,
    kernel: Size,
    stride: Size,
    dilation: Size,
    padding: PaddingSpec,
    groups: usize,
) -> std::result::Result<Conv1dParams, String> {
    let one = |s: Size, what: &str| {
        s.one()
            .ok_or_else(|| format!("{what} must be one number for a 1D convolution"))
    };
    Ok(Conv1dParams::new(c_in, filters, one(kernel, "kernel")?)
        .stride(one(stride, "stride")?)
        .dilation(one(dilation, "dilation")?)
        .padding(padding.kernel())
        .groups(groups))
}

fn conv2d_params(
    c_in: usize,
    filters: usize,
    kernel: Size,
    stride: Size,
    dilation: Size,
    padding: PaddingSpec,
    groups: usize,
) -> Conv2dParams {
    let (kh, kw) = kernel.pair();
    Conv2dParams {
        c_in,
        c_out: filters,
        kh,
        kw,
        stride: stride.pair(),
        dilation: dilation.pair(),
        padding: (padding.kernel(), padding.kernel()),
        groups,
    }
}

impl<B: Backend> Node<B> {
    /// The node's kind, for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Conv1d { .. } => "conv1d",
            Node::ConvPool { .. } => "conv+pool",
            Node::Conv2d { .. } => "conv2d",
            Node::Separable { .. } => "separable",
            Node::Pool1d { .. } => "pool1d",
            Node::Pool2d { .. } => "pool2d",
            Node::GlobalPool { .. } => "global",
            Node::Flatten { .. } => "flatten",
            Node::Dense { .. } => "dense",
            Node::Dropout { .. } => "dropout",
            Node::BatchNorm { .. } => "batchnorm",
            Node::Activation { .. } => "activation",
        }
    }

    /// Drops what the last training-mode forward pass kept, so that its
    /// buffers can serve the next pass.
    fn clear_cache(&mut self) {
        match self {
            Node::Conv1d { x, z, .. } | Node::Conv2d { x, z, .. } | Node::Dense { x, z, .. } => {
                (*x, *z) = (None, None);
            }
            Node::ConvPool { x, mask, .. } => (*x, *mask) = (None, None),
            Node::Separable { depth, point } => {
                depth.clear_cache();
                point.clear_cache();
            }
            Node::Pool1d { x, .. }
            | Node::Pool2d { x, .. }
            | Node::GlobalPool { x, .. }
            | Node::Activation { x, .. } => *x = None,
            Node::Dropout { mask, .. } => *mask = None,
            Node::BatchNorm { saved, .. } => *saved = None,
            Node::Flatten { .. } => {}
        }
    }

    fn collect<'a>(&'a mut self, out: &mut Vec<&'a mut Param<B>>) {
        match self {
            Node::Conv1d { w, b, .. }
            | Node::ConvPool { w, b, .. }
            | Node::Conv2d { w, b, .. }
            | Node::Dense { w, b, .. } => {
                out.push(w);
                if let Some(b) = b {
                    out.push(b);
                }
            }
            Node::Separable { depth, point } => {
                depth.collect(out);
                point.collect(out);
            }
            Node::BatchNorm {
                gamma,
                beta,
                mean,
                var,
                ..
            } => {
                out.push(gamma);
                out.push(beta);
                out.push(mean);
                out.push(var);
            }
            _ => {}
        }
    }

    fn forward(&mut self, be: &B, x: B::Tensor, mode: Mode, seed: u64) -> Result<B::Tensor> {
        let train = mode == Mode::Train;
        Ok(match self {
            Node::ConvPool {
                p,
                act,
                w,
                b,
                x: cx,
                mask: cm,
            } => {
                let bias = b.as_ref().map(|b| &b.value);
                let (y, mask) = match p {
                    FusedConv::One(p) => be.conv1d_act_pool2(&x, &w.value, bias, p, *act)?,
                    FusedConv::Two(p) => be.conv2d_act_pool2(&x, &w.value, bias, p, *act)?,
                };
                if train {
                    *cx = Some(x);
                    *cm = Some(mask);
                } else {
                    (*cx, *cm) = (None, None);
                }
                y
            }
            Node::Conv1d {
                p,
                act,
                w,
                b,
                x: cx,
                z: cz,
            } => {
                let z = be.conv1d(&x, &w.value, b.as_ref().map(|b| &b.value), p)?;
                *cx = if train { Some(x) } else { None };
                finish_act(be, z, *act, cz, train)?
            }
            Node::Conv2d {
                p,
                act,
                w,
                b,
                x: cx,
                z: cz,
            } => {
                let z = be.conv2d(&x, &w.value, b.as_ref().map(|b| &b.value), p)?;
                *cx = if train { Some(x) } else { None };
                finish_act(be, z, *act, cz, train)?
            }
            Node::Separable { depth, point } => {
                let h = depth.forward(be, x, mode, seed)?;
                point.forward(be, h, mode, seed)?
            }
            Node::Pool1d { p, act, x: cx } => {
                let y = be.pool1d(&x, p, *act)?;
                *cx = train.then_some(x);
                y
            }
            Node::Pool2d { p, x: cx } => {
                let y = be.pool2d(&x, p)?;
                *cx = train.then_some(x);
                y
            }
            Node::GlobalPool { kind, x: cx } => {
                let y = be.global_pool(&x, *kind)?;
                *cx = train.then_some(x);
                y
            }
            Node::Flatten { .. } => {
                let s = be.shape(&x);
                be.reshape(x, &[s[0], s[1..].iter().product()])?
            }
            Node::Dense {
                act,
                w,
                b,
                x: cx,
                z: cz,
            } => {
                let z = be.dense(&x, &w.value, b.as_ref().map(|b| &b.value))?;
                *cx = if train { Some(x) } else { None };
                finish_act(be, z, *act, cz, train)?
            }
            Node::Dropout { rate, mask } => {
                if train && *rate > 0.0 {
                    let m = be.dropout_mask(&be.shape(&x), *rate, seed)?;
                    let y = be.mul(&x, &m)?;
                    *mask = Some(m);
                    y
                } else {
                    *mask = None;
                    x
                }
            }
            Node::BatchNorm {
                eps,
                momentum,
                gamma,
                beta,
                mean,
                var,
                saved,
            } => {
                if train {
                    let (y, s) = be.batchnorm_train(
                        &x,
                        &gamma.value,
                        &beta.value,
                        &mut mean.value,
                        &mut var.value,
                        *eps,
                        *momentum,
                    )?;
                    *saved = Some((x, s));
                    y
                } else {
                    be.batchnorm_infer(
                        &x,
                        &gamma.value,
                        &beta.value,
                        &mean.value,
                        &var.value,
                        *eps,
                    )?
                }
            }
            Node::Activation { act, x: cx } => {
                let y = be.activation(&x, *act)?;
                *cx = train.then_some(x);
                y
            }
        })
    }

    fn backward(&mut self, be: &B, dy: B::Tensor, need_dx: bool) -> Result<Option<B::Tensor>> {
        let missing =
            || NnError::Training("backward pass without a training-mode forward pass".into());
        Ok(match self {
            Node::ConvPool {
                p,
                act,
                w,
                b,
                x,
                mask,
            } => {
                let (x, mask) = (
                    x.as_ref().ok_or_else(missing)?,
                    mask.as_ref().ok_or_else(missing)?,
                );
                let (dx, dw, db) = match p {
                    FusedConv::One(p) => {
                        be.conv1d_act_pool2_backward(x, &w.value, mask, &dy, p, *act, need_dx)?
                    }
                    FusedConv::Two(p) => {
                        be.conv2d_act_pool2_backward(x, &w.value, mask, &dy, p, *act, need_dx)?
                    }
                };
                w.accumulate(be, dw)?;
                if let Some(b) = b {
                    b.accumulate(be, db)?;
                }
                dx
            }
            Node::Conv1d { p, act, w, b, x, z } => {
                let dz = act_back(be, z.as_ref(), dy, *act)?;
                let x = x.as_ref().ok_or_else(missing)?;
                let (dx, dw, db) = be.conv1d_backward(x, &w.value, &dz, p, need_dx)?;
                w.accumulate(be, dw)?;
                if let Some(b) = b {
                    b.accumulate(be, db)?;
                }
                dx
            }
            Node::Conv2d { p, act, w, b, x, z } => {
                let dz = act_back(be, z.as_ref(), dy, *act)?;
                let x = x.as_ref().ok_or_else(missing)?;
                let (dx, dw, db) = be.conv2d_backward(x, &w.value, &dz, p, need_dx)?;
                w.accumulate(be, dw)?;
                if let Some(b) = b {
                    b.accumulate(be, db)?;
                }
                dx
            }
            Node::Separable { depth, point } => {
                let dh = point.backward(be, dy, true)?.ok_or_else(missing)?;
                depth.backward(be, dh, need_dx)?
            }
            Node::Pool1d { p, act, x } => {
                Some(be.pool1d_backward(x.as_ref().ok_or_else(missing)?, &dy, p, *act)?)
            }
            Node::Pool2d { p, x } => {
                Some(be.pool2d_backward(x.as_ref().ok_or_else(missing)?, &dy, p)?)
            }
            Node::GlobalPool { kind, x } => {
                Some(be.global_pool_backward(x.as_ref().ok_or_else(missing)?, &dy, *kind)?)
            }
            Node::Flatten { in_shape } => {
                let batch = be.shape(&dy)[0];
                let mut s = vec![batch];
                s.extend_from_slice(in_shape);
                Some(be.reshape(dy, &s)?)
            }
            Node::Dense { act, w, b, x, z } => {
                let dz = act_back(be, z.as_ref(), dy, *act)?;
                let x = x.as_ref().ok_or_else(missing)?;
                let (dx, dw, db) = be.dense_backward(x, &w.value, &dz, need_dx)?;
                w.accumulate(be, dw)?;
                if let Some(b) = b {
                    b.accumulate(be, db)?;
                }
                dx
            }
            Node::Dropout { mask, .. } => Some(match mask {
                Some(m) => be.mul(&dy, m)?,
                None => dy,
            }),
            Node::BatchNorm {
                gamma, beta, saved, ..
            } => {
                let (x, s) = saved.as_ref().ok_or_else(missing)?;
                let (dx, dg, dbeta) = be.batchnorm_backward(x, &gamma.value, s, &dy)?;
                gamma.accumulate(be, dg)?;
                beta.accumulate(be, dbeta)?;
                Some(dx)
            }
            Node::Activation { act, x } => {
                Some(be.activation_backward(x.as_ref().ok_or_else(missing)?, &dy, *act)?)
            }
        })
    }
}

/// Applies the activation after a weighted layer, keeping the pre-activation when training.
fn finish_act<B: Backend>(
    be: &B,
    z: B::Tensor,
    act: Activation,
    cz: &mut Option<B::Tensor>,
    train: bool,
) -> Result<B::Tensor> {
    if act == Activation::Linear {
        *cz = None;
        return Ok(z);
    }
    let y = be.activation(&z, act)?;
    *cz = if train { Some(z) } else { None };
    Ok(y)
}

fn act_back<B: Backend>(
    be: &B,
    z: Option<&B::Tensor>,
    dy: B::Tensor,
    act: Activation,
) -> Result<B::Tensor> {
    if act == Activation::Linear {
        return Ok(dy);
    }
    let z = z.ok_or_else(|| {
        NnError::Training("backward pass without a training-mode forward pass".into())
    })?;
    be.activation_backward(z, &dy, act)
}
