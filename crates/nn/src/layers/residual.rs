//! `residual`: a body of layers plus a shortcut, summed, then an optional
//! activation: y = act(body(x) + shortcut(x)) (He et al. 2016). The
//! shortcut is the identity when the body keeps the shape, else a 1 × 1
//! convolution (`PATH.shortcut.weight`, `.bias`) that projects the input to
//! the body's channels and, by its stride, its length.
//!
//! ```toml
//! [[layers]]
//! type = "residual"
//! activation = "relu"
//! [[layers.layers]]           # the body: layers.N.layers.0, …
//! type = "conv1d"
//! filters = 16
//! kernel = 3
//! padding = "same"
//! activation = "relu"
//! [[layers.layers]]
//! type = "conv1d"
//! filters = 16
//! kernel = 3
//! padding = "same"
//! ```
//!
//! This whole file is the container: its spec, shape checks, parameters,
//! and forward and backward passes, registered by one line in
//! the `registry!` of [`super`].

use kernels::conv1d::Conv1dParams;
use kernels::conv2d::Conv2dParams;
use kernels::Activation;
use serde::{Deserialize, Serialize};

use super::conv::{Conv, ConvGeom};
use super::sequential::{sequence, Sequential};
use super::{describe, mismatch, At, Builder, Layer, LayerSpec, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};
use crate::spec::ActivationSpec;

/// The shortcut of a residual block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shortcut {
    /// The identity when the body keeps the shape, else a projection.
    #[default]
    Auto,
    /// The input itself (the body must keep the shape).
    Identity,
    /// A 1 × 1 convolution, always.
    Projection,
}

/// A residual block.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidualSpec {
    pub layers: Vec<LayerSpec>,
    #[serde(default)]
    pub shortcut: Shortcut,
    /// Applied after the sum.
    #[serde(default)]
    pub activation: ActivationSpec,
}

impl SpecNode for ResidualSpec {
    fn nested(&self) -> Vec<&LayerSpec> {
        self.layers.iter().collect()
    }
    fn nested_mut(&mut self) -> Vec<&mut LayerSpec> {
        self.layers.iter_mut().collect()
    }
}

/// A built residual block.
pub struct Residual<B: Backend> {
    path: String,
    body: Sequential<B>,
    projection: Option<Conv<B>>,
    act: Activation,
}

/// The stride that takes a length of `from` to `to` with a kernel of 1.
fn stride_for(from: usize, to: usize) -> Option<usize> {
    (1..=from).find(|s| (from - 1) / s + 1 == to)
}

/// A 1 × 1 convolution from `input` to the body's `output` shape.
fn projection(at: &At, input: &[usize], output: &[usize]) -> Result<ConvGeom> {
    let no = || {
        at.err(format!(
            "no 1 × 1 projection takes the input {} to the body's output {}; keep the rank, and shrink lengths by a whole stride",
            describe(input),
            describe(output)
        ))
    };
    match (input, output) {
        ([c, l], [co, lo]) => {
            let s = stride_for(*l, *lo).ok_or_else(no)?;
            Ok(ConvGeom::One(Conv1dParams::new(*c, *co, 1).stride(s)))
        }
        ([c, h, w], [co, ho, wo]) => {
            let sh = stride_for(*h, *ho).ok_or_else(no)?;
            let sw = stride_for(*w, *wo).ok_or_else(no)?;
            let mut p = Conv2dParams::new(*c, *co, 1);
            p.stride = (sh, sw);
            Ok(ConvGeom::Two(p))
        }
        _ => Err(no()),
    }
}

pub fn build<B: Backend>(
    s: &ResidualSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    // The body is reported at `PATH.layers`: its output is not the block's.
    let body = sequence(&s.layers, at, &at.name("layers"), input, cx)?;
    let out = body.output_shape().to_vec();
    let project = match s.shortcut {
        Shortcut::Identity if out != input => {
            return Err(at.err(format!(
                "shortcut = \"identity\" needs the body to keep the shape, but it takes {} to {}",
                describe(input),
                describe(&out)
            )))
        }
        Shortcut::Identity => false,
        Shortcut::Auto => out != input,
        Shortcut::Projection => true,
    };
    let projection = if project {
        let geom = projection(at, input, &out)?;
        let at = at.child("shortcut", "conv");
        Some(Conv::new(
            &at,
            geom,
            Activation::Linear,
            true,
            0.0,
            0.0,
            input,
            cx,
        )?)
    } else {
        None
    };
    Ok(Box::new(Residual {
        path: at.path.clone(),
        body,
        projection,
        act: s.activation.kernel(),
    }))
}

impl<B: Backend> Layer<B> for Residual<B> {
    fn kind(&self) -> &'static str {
        "residual"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        self.body.output_shape()
    }

    /// The shortcut, then the body; saves the sum unless the activation is linear.
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let short = match &self.projection {
            Some(p) => f.run(p, x.clone())?,
            None => x.clone(),
        };
        let mut z = f.run(&self.body, x)?;
        let be = f.backend;
        be.add_scaled(&mut z, &short, 1.0)?;
        if self.act == Activation::Linear {
            f.save(Vec::new());
            return Ok(z);
        }
        let y = be.activation(&z, self.act)?;
        f.save(vec![z]);
        Ok(y)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let be = b.backend;
        let dz = match b.saved()? {
            [] => dy,
            [z] => be.activation_backward(z, &dy, self.act)?,
            _ => return Err(mismatch::<B>(self)),
        };
        // The reverse of forward (shortcut, body): the body, then the shortcut.
        let d_body = b.run(&self.body, dz.clone(), need_dx)?;
        let d_short = match &self.projection {
            Some(p) => b.run(p, dz, need_dx)?,
            None => need_dx.then_some(dz),
        };
        Ok(match (d_body, d_short) {
            (Some(mut a), Some(s)) => {
                be.add_scaled(&mut a, &s, 1.0)?;
                Some(a)
            }
            (a, s) => a.or(s),
        })
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.body.visit_params(f);
        if let Some(p) = &self.projection {
            p.visit_params(f);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.body.visit_params_mut(f);
        if let Some(p) = &mut self.projection {
            p.visit_params_mut(f);
        }
    }

    fn children(&self) -> Vec<&dyn Layer<B>> {
        let mut c: Vec<&dyn Layer<B>> = vec![&self.body];
        if let Some(p) = &self.projection {
            c.push(p);
        }
        c
    }

    fn visit_sequences_mut(&mut self, f: &mut dyn FnMut(&mut super::LayerList<B>)) {
        self.body.visit_sequences_mut(f);
    }
}
