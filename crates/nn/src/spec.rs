//! The vocabulary shared by layer specs: activations, padding, sizes. Each
//! layer kind's own spec lives in its file under [`layers`](crate::layers).
//! Specs are read from TOML by serde; unknown keys are errors.

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

pub(crate) fn one() -> usize {
    1
}

pub(crate) fn yes() -> bool {
    true
}

pub(crate) fn one_size() -> Size {
    Size::One(1)
}

/// The spec of a layer with no options (flatten, global pooling).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

pub use crate::layers::LayerSpec;
