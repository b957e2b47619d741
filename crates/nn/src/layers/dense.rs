//! `dense`: a fully connected layer, y = act(x·Wᵀ + b), W of (units, inputs).

use kernels::Activation;
use serde::{Deserialize, Serialize};

use super::{activate, deactivate, describe, At, Builder, Layer, SpecNode};
use std::sync::OnceLock;

use crate::backend::{Backend, Prepared};
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward, Mode};
use crate::spec::{yes, ActivationSpec};

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

impl SpecNode for DenseSpec {}

/// A built dense layer.
pub struct Dense<B: Backend> {
    path: String,
    act: Activation,
    w: Param<B>,
    b: Option<Param<B>>,
    shape: Vec<usize>,
    /// The weights as the backend prepared them for evaluation passes
    /// ([`Backend::dense_prepare`]), made by the first such pass and
    /// dropped whenever the parameters are lent out to be changed
    /// (`visit_params_mut`): an inference over many batches prepares them
    /// once.
    prepared: OnceLock<Option<Prepared>>,
}

pub fn build<B: Backend>(
    d: &DenseSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    if input.len() != 1 {
        return Err(at.err(format!(
            "needs a flat input, but receives {}; add a flatten or a global pooling layer before it",
            describe(input)
        )));
    }
    if d.units == 0 {
        return Err(at.err("units must be at least 1"));
    }
    at.penalties(d.l1, d.l2)?;
    let n_in = input[0];
    at.check_size("weight", &[d.units, n_in])?;
    let w = cx.weights(
        at.name("weight"),
        &[d.units, n_in],
        n_in,
        d.units,
        d.l1,
        d.l2,
    )?;
    let b = if d.use_bias {
        Some(cx.constant(at.name("bias"), d.units, 0.0, true)?)
    } else {
        None
    };
    Ok(Box::new(Dense {
        path: at.path.clone(),
        act: d.activation.kernel(),
        w,
        b,
        shape: vec![d.units],
        prepared: OnceLock::new(),
    }))
}

impl<B: Backend> Layer<B> for Dense<B> {
    fn kind(&self) -> &'static str {
        "dense"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    /// Saves the input, and the pre-activation output unless linear.
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let b = self.b.as_ref().map(|b| &b.value);
        // An evaluation pass that records nothing (an inference) uses the
        // prepared weights; a training pass's weights change every step.
        let prepared = (f.ctx.mode == Mode::Eval && !f.record)
            .then(|| {
                self.prepared
                    .get_or_init(|| f.backend.dense_prepare(&self.w.value))
                    .as_ref()
            })
            .flatten();
        let z = match prepared {
            Some(p) => f.backend.dense_prepared(&x, &self.w.value, p, b)?,
            None => f.backend.dense(&x, &self.w.value, b)?,
        };
        activate(f, x, z, self.act)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let (x, dz) = deactivate(self, b, dy, self.act)?;
        let (dx, dw, db) = b.backend.dense_backward(x, &self.w.value, &dz, need_dx)?;
        b.accumulate(&self.w, dw)?;
        if let Some(bias) = &self.b {
            b.accumulate(bias, db)?;
        }
        Ok(dx)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        f(&self.w);
        if let Some(b) = &self.b {
            f(b);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        // The weights may change: what was prepared from them is dropped.
        self.prepared = OnceLock::new();
        f(&mut self.w);
        if let Some(b) = &mut self.b {
            f(b);
        }
    }
}
