//! `activation`: an activation function on its own.

use kernels::Activation;
use serde::{Deserialize, Serialize};

use super::{mismatch, At, Builder, Layer, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::pass::{Backward, Forward};
use crate::spec::ActivationSpec;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationLayerSpec {
    pub activation: ActivationSpec,
}

impl SpecNode for ActivationLayerSpec {}

/// A built activation layer.
pub struct ActivationLayer {
    path: String,
    act: Activation,
    shape: Vec<usize>,
}

pub fn build<B: Backend>(
    s: &ActivationLayerSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(ActivationLayer {
        path: at.path.clone(),
        act: s.activation.kernel(),
        shape: input.to_vec(),
    }))
}

impl<B: Backend> Layer<B> for ActivationLayer {
    fn kind(&self) -> &'static str {
        "activation"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let y = f.backend.activation(&x, self.act)?;
        f.save(vec![x]);
        Ok(y)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        _need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let [x] = b.saved()? else {
            return Err(mismatch::<B>(self));
        };
        Ok(Some(b.backend.activation_backward(x, &dy, self.act)?))
    }
}
