//! `separable_conv1d` and `separable_conv2d`: a depthwise convolution (one
//! filter bank per input channel, `depth_multiplier` filters each, no bias),
//! then a pointwise one (kernel 1) to `filters` channels with the bias and
//! the activation. Parameters: `PATH.depthwise.weight`,
//! `PATH.pointwise.weight`, `PATH.pointwise.bias`.

use kernels::conv1d::Conv1dParams;
use kernels::conv2d::Conv2dParams;
use kernels::Activation;
use serde::{Deserialize, Serialize};

use super::conv::{conv1d_params, conv2d_params, Conv, ConvGeom};
use super::{At, Builder, Layer, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};
use crate::spec::{one, one_size, yes, ActivationSpec, PaddingSpec, Size};

/// A separable convolution's options.
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

impl SpecNode for SeparableSpec {}

/// A built separable convolution: two convolutions in a row.
pub struct Separable<B: Backend> {
    path: String,
    kind: &'static str,
    depth: Conv<B>,
    point: Conv<B>,
}

fn build<B: Backend>(
    s: &SeparableSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
    depth: ConvGeom,
    point: ConvGeom,
) -> Result<Box<dyn Layer<B>>> {
    // The geometry is checked here, so that errors name this layer.
    depth.output(input).map_err(|m| at.err(m))?;
    let depth = Conv::new(
        &at.child("depthwise", at.kind),
        depth,
        Activation::Linear,
        false,
        s.l1,
        s.l2,
        input,
        cx,
    )?;
    let mid = depth.shape.clone();
    let point = Conv::new(
        &at.child("pointwise", at.kind),
        point,
        s.activation.kernel(),
        s.use_bias,
        s.l1,
        s.l2,
        &mid,
        cx,
    )?;
    Ok(Box::new(Separable {
        path: at.path.clone(),
        kind: at.kind,
        depth,
        point,
    }))
}

pub fn build_1d<B: Backend>(
    s: &SeparableSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 2, "(channels × length)")?;
    let c = input[0];
    let dp = conv1d_params(
        c,
        c * s.depth_multiplier,
        s.kernel,
        s.stride,
        s.dilation,
        s.padding,
        c,
    )
    .map_err(|m| at.err(m))?;
    let pp = Conv1dParams::new(dp.c_out, s.filters, 1);
    build(s, at, input, cx, ConvGeom::One(dp), ConvGeom::One(pp))
}

pub fn build_2d<B: Backend>(
    s: &SeparableSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 3, "(channels × height × width)")?;
    let c = input[0];
    let dp = conv2d_params(
        c,
        c * s.depth_multiplier,
        s.kernel,
        s.stride,
        s.dilation,
        s.padding,
        c,
    );
    let pp = Conv2dParams::new(dp.c_out, s.filters, 1);
    build(s, at, input, cx, ConvGeom::Two(dp), ConvGeom::Two(pp))
}

impl<B: Backend> Layer<B> for Separable<B> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.point.shape
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let h = self.depth.forward(x, f)?;
        self.point.forward(h, f)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let dh = self
            .point
            .backward(dy, b, true)?
            .ok_or_else(|| super::mismatch(self))?;
        self.depth.backward(dh, b, need_dx)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        self.depth.visit_params(f);
        self.point.visit_params(f);
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        self.depth.visit_params_mut(f);
        self.point.visit_params_mut(f);
    }
}
