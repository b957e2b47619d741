//! `max_pool1d`, `avg_pool1d`, `max_pool2d`, `avg_pool2d`: pooling windows
//! with a stride (the size by default) and padding on both sides.

use kernels::pool::{Pool1dParams, Pool2dParams, PoolKind};
use serde::{Deserialize, Serialize};

use super::{mismatch, At, Builder, Layer, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::pass::{Backward, Forward};
use crate::spec::Size;

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

impl SpecNode for PoolSpec {}

/// A pooling window, 1D or 2D.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolGeom {
    One(Pool1dParams),
    Two(Pool2dParams),
}

impl PoolGeom {
    pub fn kind(&self) -> PoolKind {
        match self {
            PoolGeom::One(p) => p.kind,
            PoolGeom::Two(p) => p.kind,
        }
    }

    pub fn forward<B: Backend>(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        match self {
            PoolGeom::One(p) => be.pool1d(x, p),
            PoolGeom::Two(p) => be.pool2d(x, p),
        }
    }

    pub fn backward<B: Backend>(&self, be: &B, x: &B::Tensor, dy: &B::Tensor) -> Result<B::Tensor> {
        match self {
            PoolGeom::One(p) => be.pool1d_backward(x, dy, p),
            PoolGeom::Two(p) => be.pool2d_backward(x, dy, p),
        }
    }
}

/// A built pooling layer.
pub struct Pool {
    pub(crate) path: String,
    pub(crate) kind: &'static str,
    pub(crate) geom: PoolGeom,
    pub(crate) shape: Vec<usize>,
}

fn build_1d<B: Backend>(
    ps: &PoolSpec,
    kind: PoolKind,
    at: &At,
    input: &[usize],
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 2, "(channels × length)")?;
    let size = ps
        .size
        .one()
        .ok_or_else(|| at.err("size must be one number for 1D pooling"))?;
    let stride = match ps.stride {
        None => size,
        Some(s) => s
            .one()
            .ok_or_else(|| at.err("stride must be one number for 1D pooling"))?,
    };
    let p = Pool1dParams {
        kind,
        size,
        stride,
        pad: ps.padding,
    };
    p.validate(input[1]).map_err(|m| at.err(m))?;
    Ok(Box::new(Pool {
        path: at.path.clone(),
        kind: at.kind,
        geom: PoolGeom::One(p),
        shape: vec![input[0], p.l_out(input[1])],
    }))
}

fn build_2d<B: Backend>(
    ps: &PoolSpec,
    kind: PoolKind,
    at: &At,
    input: &[usize],
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 3, "(channels × height × width)")?;
    let size = ps.size.pair();
    let p = Pool2dParams {
        kind,
        size,
        stride: ps.stride.map_or(size, |s| s.pair()),
        pad: (ps.padding, ps.padding),
    };
    p.validate(input[1], input[2]).map_err(|m| at.err(m))?;
    let (ho, wo) = p.out_hw(input[1], input[2]);
    Ok(Box::new(Pool {
        path: at.path.clone(),
        kind: at.kind,
        geom: PoolGeom::Two(p),
        shape: vec![input[0], ho, wo],
    }))
}

pub fn build_max_1d<B: Backend>(
    s: &PoolSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build_1d::<B>(s, PoolKind::Max, at, input)
}

pub fn build_avg_1d<B: Backend>(
    s: &PoolSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build_1d::<B>(s, PoolKind::Avg, at, input)
}

pub fn build_max_2d<B: Backend>(
    s: &PoolSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build_2d::<B>(s, PoolKind::Max, at, input)
}

pub fn build_avg_2d<B: Backend>(
    s: &PoolSpec,
    at: &At,
    input: &[usize],
    _: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    build_2d::<B>(s, PoolKind::Avg, at, input)
}

impl<B: Backend> Layer<B> for Pool {
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
        let y = self.geom.forward(f.backend, &x)?;
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
        Ok(Some(self.geom.backward(b.backend, x, &dy)?))
    }
}
