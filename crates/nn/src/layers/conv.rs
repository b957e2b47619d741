//! `conv1d` and `conv2d`: convolutions with stride, dilation, padding and
//! groups, an optional bias, and an activation.

use kernels::conv1d::Conv1dParams;
use kernels::conv2d::Conv2dParams;
use kernels::Activation;
use serde::{Deserialize, Serialize};

use super::{activate, deactivate, At, Builder, Layer, SpecNode};
use crate::backend::{Backend, Grads};
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};
use crate::spec::{one, one_size, yes, ActivationSpec, PaddingSpec, Size};

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

impl SpecNode for ConvSpec {}

/// A convolution's geometry, 1D or 2D.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConvGeom {
    One(Conv1dParams),
    Two(Conv2dParams),
}

impl ConvGeom {
    pub fn c_out(&self) -> usize {
        match self {
            ConvGeom::One(p) => p.c_out,
            ConvGeom::Two(p) => p.c_out,
        }
    }

    pub fn forward<B: Backend>(
        &self,
        be: &B,
        x: &B::Tensor,
        w: &B::Tensor,
        b: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        match self {
            ConvGeom::One(p) => be.conv1d(x, w, b, p),
            ConvGeom::Two(p) => be.conv2d(x, w, b, p),
        }
    }

    pub fn backward<B: Backend>(
        &self,
        be: &B,
        x: &B::Tensor,
        w: &B::Tensor,
        dy: &B::Tensor,
        need_dx: bool,
    ) -> Result<Grads<B::Tensor>> {
        match self {
            ConvGeom::One(p) => be.conv1d_backward(x, w, dy, p, need_dx),
            ConvGeom::Two(p) => be.conv2d_backward(x, w, dy, p, need_dx),
        }
    }

    /// The weight shape and the fans of the initializer.
    fn weight_shape(&self) -> (Vec<usize>, usize, usize) {
        match self {
            ConvGeom::One(p) => (
                vec![p.c_out, p.c_in_g(), p.k],
                p.c_in_g() * p.k,
                p.c_out_g() * p.k,
            ),
            ConvGeom::Two(p) => {
                let cig = p.c_in / p.groups;
                (
                    vec![p.c_out, cig, p.kh, p.kw],
                    cig * p.kh * p.kw,
                    p.c_out / p.groups * p.kh * p.kw,
                )
            }
        }
    }

    /// The output sample shape for an input sample shape (checked).
    pub(crate) fn output(&self, input: &[usize]) -> std::result::Result<Vec<usize>, String> {
        match self {
            ConvGeom::One(p) => {
                p.validate(input[1])?;
                Ok(vec![p.c_out, p.l_out(input[1])])
            }
            ConvGeom::Two(p) => {
                p.validate(input[1], input[2])?;
                let (ho, wo) = p.out_hw(input[1], input[2]);
                Ok(vec![p.c_out, ho, wo])
            }
        }
    }
}

/// The 1D geometry of a spec's options on `c_in` channels.
pub fn conv1d_params(
    c_in: usize,
    filters: usize,
    kernel: Size,
    stride: Size,
    dilation: Size,
    padding: PaddingSpec,
    groups: usize,
) -> std::result::Result<Conv1dParams, String> {
    let one = |s: Size, what: &str| {
        s.one()
            .ok_or_else(|| format!("{what} must be one number for a 1D convolution"))
    };
    Ok(Conv1dParams::new(c_in, filters, one(kernel, "kernel")?)
        .stride(one(stride, "stride")?)
        .dilation(one(dilation, "dilation")?)
        .padding(padding.kernel())
        .groups(groups))
}

/// The 2D geometry of a spec's options on `c_in` channels.
pub fn conv2d_params(
    c_in: usize,
    filters: usize,
    kernel: Size,
    stride: Size,
    dilation: Size,
    padding: PaddingSpec,
    groups: usize,
) -> Conv2dParams {
    let (kh, kw) = kernel.pair();
    Conv2dParams {
        c_in,
        c_out: filters,
        kh,
        kw,
        stride: stride.pair(),
        dilation: dilation.pair(),
        padding: (padding.kernel(), padding.kernel()),
        groups,
    }
}

/// A built convolution.
pub struct Conv<B: Backend> {
    pub(crate) path: String,
    pub(crate) kind: &'static str,
    pub(crate) geom: ConvGeom,
    pub(crate) act: Activation,
    pub(crate) w: Param<B>,
    pub(crate) b: Option<Param<B>>,
    pub(crate) input: Vec<usize>,
    pub(crate) shape: Vec<usize>,
}

impl<B: Backend> Conv<B> {
    /// A convolution of geometry `geom` at `at`, with weights from the builder.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        at: &At,
        geom: ConvGeom,
        act: Activation,
        bias: bool,
        l1: f32,
        l2: f32,
        input: &[usize],
        cx: &mut Builder<B>,
    ) -> Result<Self> {
        let shape = geom.output(input).map_err(|m| at.err(m))?;
        at.penalties(l1, l2)?;
        let (wshape, fan_in, fan_out) = geom.weight_shape();
        at.check_size("weight", &wshape)?;
        let mut out_shape = vec![1usize];
        out_shape.extend_from_slice(&shape);
        at.check_size("output per sample", &out_shape)?;
        let w = cx.weights(at.name("weight"), &wshape, fan_in, fan_out, l1, l2)?;
        let b = if bias {
            Some(cx.constant(at.name("bias"), geom.c_out(), 0.0, true)?)
        } else {
            None
        };
        Ok(Conv {
            path: at.path.clone(),
            kind: at.kind,
            geom,
            act,
            w,
            b,
            input: input.to_vec(),
            shape,
        })
    }

    /// The convolution without its activation.
    pub(crate) fn linear(&self, be: &B, x: &B::Tensor) -> Result<B::Tensor> {
        self.geom
            .forward(be, x, &self.w.value, self.b.as_ref().map(|b| &b.value))
    }

    /// The convolution's backward pass from the gradient of its linear
    /// output: adds the weight and bias gradients, returns dx.
    pub(crate) fn linear_backward(
        &self,
        b: &mut Backward<'_, B>,
        x: &B::Tensor,
        dz: &B::Tensor,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let (dx, dw, db) = self
            .geom
            .backward(b.backend, x, &self.w.value, dz, need_dx)?;
        b.accumulate(&self.w, dw)?;
        if let Some(bias) = &self.b {
            b.accumulate(bias, db)?;
        }
        Ok(dx)
    }
}

pub fn build_1d<B: Backend>(
    c: &ConvSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 2, "(channels × length)")?;
    let p = conv1d_params(
        input[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
    )
    .map_err(|m| at.err(m))?;
    let geom = ConvGeom::One(p);
    let act = c.activation.kernel();
    Ok(Box::new(Conv::new(
        at, geom, act, c.use_bias, c.l1, c.l2, input, cx,
    )?))
}

pub fn build_2d<B: Backend>(
    c: &ConvSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    at.need_rank(input, 3, "(channels × height × width)")?;
    let p = conv2d_params(
        input[0], c.filters, c.kernel, c.stride, c.dilation, c.padding, c.groups,
    );
    let geom = ConvGeom::Two(p);
    let act = c.activation.kernel();
    Ok(Box::new(Conv::new(
        at, geom, act, c.use_bias, c.l1, c.l2, input, cx,
    )?))
}

impl<B: Backend> Layer<B> for Conv<B> {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    /// Saves the input, and the pre-activation output unless linear.
    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let z = self.linear(f.backend, &x)?;
        activate(f, x, z, self.act)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let (x, dz) = deactivate(self, b, dy, self.act)?;
        self.linear_backward(b, x, &dz, need_dx)
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        f(&self.w);
        if let Some(b) = &self.b {
            f(b);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        f(&mut self.w);
        if let Some(b) = &mut self.b {
            f(b);
        }
    }
}
