//! `dropout`: in training, each value is zeroed with probability `rate` and
//! the rest scaled by 1/(1 − rate) (inverted dropout); in evaluation, the
//! identity. Masks come from the pass's seed and the layer's own salt.

use serde::{Deserialize, Serialize};

use super::{mismatch, salt, At, Builder, Layer, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::pass::{Backward, Forward};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropoutSpec {
    pub rate: f32,
}

impl SpecNode for DropoutSpec {}

/// A built dropout layer.
pub struct Dropout {
    path: String,
    rate: f32,
    salt: u64,
    shape: Vec<usize>,
}

pub fn build<B: Backend>(
    d: &DropoutSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    if !(0.0..1.0).contains(&d.rate) {
        return Err(at.err(format!("rate = {}: expected a value in [0, 1)", d.rate)));
    }
    Ok(Box::new(Dropout {
        path: at.path.clone(),
        rate: d.rate,
        salt: salt(&at.path),
        shape: input.to_vec(),
    }))
}

impl<B: Backend> Layer<B> for Dropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    /// Saves the mask (nothing in evaluation).
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        if !f.training() || self.rate == 0.0 {
            f.save(Vec::new());
            return Ok(x);
        }
        let be = f.backend;
        let m = be.dropout_mask(&be.shape(&x), self.rate, f.dropout_seed(self.salt))?;
        let y = be.mul(&x, &m)?;
        f.save(vec![m]);
        Ok(y)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        _need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        Ok(Some(match b.saved()? {
            [] => dy,
            [m] => b.backend.mul(&dy, m)?,
            _ => return Err(mismatch::<B>(self)),
        }))
    }
}
