//! `flatten`: one sample's values as one vector, (c × l …) → (c·l·…).

use super::{mismatch, At, Builder, Layer};
use crate::backend::Backend;
use crate::error::Result;
use crate::pass::{Backward, Forward};
use crate::spec::Empty;

/// A built flatten layer.
pub struct Flatten {
    path: String,
    input: Vec<usize>,
    shape: Vec<usize>,
}

pub fn build<B: Backend>(
    _: &Empty,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(Flatten {
        path: at.path.clone(),
        input: input.to_vec(),
        shape: vec![input.iter().product()],
    }))
}

impl<B: Backend> Layer<B> for Flatten {
    fn kind(&self) -> &'static str {
        "flatten"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let batch = f.backend.shape(&x)[0];
        f.save(Vec::new());
        f.backend.reshape(x, &[batch, self.shape[0]])
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        _need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let [] = b.saved()? else {
            return Err(mismatch::<B>(self));
        };
        let mut s = vec![b.backend.shape(&dy)[0]];
        s.extend_from_slice(&self.input);
        Ok(Some(b.backend.reshape(dy, &s)?))
    }
}
