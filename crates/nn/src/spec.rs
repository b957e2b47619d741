//! Layer descriptions with a Keras-like vocabulary, read from TOML by serde.
//! Unknown keys are errors.

use kernels::conv1d::Padding;
use kernels::Activation;
use serde::{Deserialize, Serialize};

/// An activation by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationSpec {
    #[default]
    Linear,
    Relu,
    /// Leaky ReLU with slope 0.01 below zero.
    LeakyRelu,
    /// ELU with α = 1.
    Elu,
    Softplus,
    Tanh,
    Sigmoid,
}

impl ActivationSpec {
    pub fn kernel(self) -> Activation {
        match self {
            ActivationSpec::Linear => Activation::Linear,
            ActivationSpec::Relu => Activation::Relu,
            ActivationSpec::LeakyRelu => Activation::LeakyRelu(0.01),
            ActivationSpec::Elu => Activation::Elu(1.0),
            ActivationSpec::Softplus => Activation::Softplus,
            ActivationSpec::Tanh => Activation::Tanh,
            ActivationSpec::Sigmoid => Activation::Sigmoid,
        }
    }
}

/// Padding: "valid", "same", a number (both sides) or [left, right].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PaddingSpec {
    Named(PaddingName),
    Both(usize),
    Sides([usize; 2]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddingName {
    Valid,
    Same,
}

impl Default for PaddingSpec {
    fn default() -> Self {
        PaddingSpec::Named(PaddingName::Valid)
    }
}

impl PaddingSpec {
    pub fn kernel(self) -> Padding {
        match self {
            PaddingSpec::Named(PaddingName::Valid) => Padding::Valid,
            PaddingSpec::Named(PaddingName::Same) => Padding::Same,
            PaddingSpec::Both(p) => Padding::Explicit(p, p),
            PaddingSpec::Sides([l, r]) => Padding::Explicit(l, r),
        }
    }
}

/// A size: one number, or [rows, columns] for 2D layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    One(usize),
    Two([usize; 2]),
}

impl Size {
    pub fn pair(self) -> (usize, usize) {
        match self {
            Size::One(k) => (k, k),
            Size::Two([a, b]) => (a, b),
        }
    }

    pub fn one(self) -> Option<usize> {
        match self {
            Size::One(k) => Some(k),
            Size::Two(_) => None,
        }
    }
}

fn one() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn bn_momentum() -> f32 {
    0.1
}
fn bn_eps() -> f32 {
    1e-5
}

/// A convolution layer (1D or 2D).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvSpec {
    pub filters: usize,
    pub kernel: Size,
    #[serde(default = "one_size")]
    pub stride: Size,
    #[serde(default = "one_size")]
    pub dilation: Size,
    #[serde(default)]
    pub padding: PaddingSpec,
    #[serde(default = "one")]
    pub groups: usize,
    #[serde(default)]
    pub activation: ActivationSpec,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub l1: f32,
    #[serde(default)]
    pub l2: f32,
}

fn one_size() -> Size {
    Size::One(1)
}

/// A separable convolution: depthwise (one filter bank per input channel,
/// `depth_multiplier` filters each), then pointwise (kernel 1) to `filters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeparableSpec {
    pub filters: usize,
    pub kernel: Size,
    #[serde(default = "one_size")]
    pub stride: Size,
    #[serde(default = "one_size")]
    pub dilation: Size,
    #[serde(default)]
    pub padding: PaddingSpec,
    #[serde(default = "one")]
    pub depth_multiplier: usize,
    #[serde(default)]
    pub activation: ActivationSpec,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub l1: f32,
    #[serde(default)]
    pub l2: f32,
}

/// A pooling layer; the stride defaults to the size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub size: Size,
    #[serde(default)]
    pub stride: Option<Size>,
    #[serde(default)]
    pub padding: usize,
}

/// A fully connected layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseSpec {
    pub units: usize,
    #[serde(default)]
    pub activation: ActivationSpec,
    #[serde(default = "yes")]
    pub use_bias: bool,
    #[serde(default)]
    pub l1: f32,
    #[serde(default)]
    pub l2: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    pub rate: f32,
}

/// Batch normalization; running statistics move by `momentum` per batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSpec {
    #[serde(default = "bn_momentum")]
    pub momentum: f32,
    #[serde(default = "bn_eps")]
    pub eps: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationLayerSpec {
    pub activation: ActivationSpec,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// One layer of a model, tagged by `type`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LayerSpec {
    Conv1d(ConvSpec),
    SeparableConv1d(SeparableSpec),
    Conv2d(ConvSpec),
    SeparableConv2d(SeparableSpec),
    MaxPool1d(PoolSpec),
    AvgPool1d(PoolSpec),
    MaxPool2d(PoolSpec),
    AvgPool2d(PoolSpec),
    GlobalAvgPool(Empty),
    GlobalMaxPool(Empty),
    Flatten(Empty),
    Dense(DenseSpec),
    Dropout(DropoutSpec),
    BatchNorm(BatchNormSpec),
    Activation(ActivationLayerSpec),
}

impl LayerSpec {
    /// The layer's `type` name.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Conv1d(_) => "conv1d",
            LayerSpec::SeparableConv1d(_) => "separable_conv1d",
            LayerSpec::Conv2d(_) => "conv2d",
            LayerSpec::SeparableConv2d(_) => "separable_conv2d",
            LayerSpec::MaxPool1d(_) => "max_pool1d",
            LayerSpec::AvgPool1d(_) => "avg_pool1d",
            LayerSpec::MaxPool2d(_) => "max_pool2d",
            LayerSpec::AvgPool2d(_) => "avg_pool2d",
            LayerSpec::GlobalAvgPool(_) => "global_avg_pool",
            LayerSpec::GlobalMaxPool(_) => "global_max_pool",
            LayerSpec::Flatten(_) => "flatten",
            LayerSpec::Dense(_) => "dense",
            LayerSpec::Dropout(_) => "dropout",
            LayerSpec::BatchNorm(_) => "batch_norm",
            LayerSpec::Activation(_) => "activation",
        }
    }
}
