//! `global_avg_pool` and `global_max_pool`: every channel pooled to one
//! value, (channels × …) → (channels).

use kernels::pool::PoolKind;

use super::{describe, mismatch, At, Builder, Layer};
use crate::backend::Backend;
use crate::error::Result;
use crate::pass::{Backward, Forward};
use crate::spec::Empty;

/// A built global pooling layer.
pub struct GlobalPool {
    path: String,
    kind: &'static str,
    pool: PoolKind,
    shape: Vec<usize>,
}

fn build<B: Backend>(pool: PoolKind, at: &At, input: &[usize]) -> Result<Box<dyn Layer<B>>> {
    if input.len() < 2 {
        return Err(at.err(format!(
            "needs (channels × …) input, but receives {}",
            describe(input)
        )));
    }
    Ok(Box::new(GlobalPool {
        path: at.path.clone(),
        kind: at.kind,
        pool,
        shape: vec![input[0]],
    }))
}

pub fn build_avg<B: Backend>(
    _: &Empty,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build::<B>(PoolKind::Avg, at, input)
}

pub fn build_max<B: Backend>(
    _: &Empty,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build::<B>(PoolKind::Max, at, input)
}

impl<B: Backend> Layer<B> for GlobalPool {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let y = f.backend.global_pool(&x, self.pool)?;
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
        Ok(Some(b.backend.global_pool_backward(x, &dy, self.pool)?))
    }
}
