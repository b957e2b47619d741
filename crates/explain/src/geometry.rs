//! Receptive fields of 1D layers: which input markers each output position
//! of a convolutional layer sees, from the layers' specs. Grad-CAM maps its
//! map over positions back to markers with this.

use std::ops::Range;

use nn::spec::{PaddingName, PaddingSpec};
use nn::LayerSpec;

/// Position `l` of a layer's output sees input positions
/// `l·stride − offset .. l·stride − offset + size` (clipped to the input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub stride: i64,
    pub offset: i64,
    pub size: i64,
    /// The layer's output length.
    pub len: usize,
}

impl Field {
    /// The input itself: each position sees itself.
    pub fn identity(len: usize) -> Self {
        Field {
            stride: 1,
            offset: 0,
            size: 1,
            len,
        }
    }

    /// The input positions (of `input_len`) that output position `l` sees.
    pub fn covers(&self, l: usize, input_len: usize) -> Range<usize> {
        let start = l as i64 * self.stride - self.offset;
        let end = start + self.size;
        let clip = |v: i64| v.clamp(0, input_len as i64) as usize;
        clip(start)..clip(end)
    }

    /// This field followed by a window of `span` (kernel with dilation),
    /// `stride` and `left` padding, giving `len` positions.
    fn then(self, span: usize, stride: usize, left: usize, len: usize) -> Self {
        Field {
            stride: self.stride * stride as i64,
            offset: self.offset + left as i64 * self.stride,
            size: self.size + (span as i64 - 1) * self.stride,
            len,
        }
    }
}

/// Padding on each side of a window, as the kernels resolve it.
fn pads(p: PaddingSpec, len: usize, span: usize, stride: usize) -> (usize, usize) {
    match p {
        PaddingSpec::Named(PaddingName::Valid) => (0, 0),
        PaddingSpec::Both(p) => (p, p),
        PaddingSpec::Sides([l, r]) => (l, r),
        PaddingSpec::Named(PaddingName::Same) => {
            let out = len.div_ceil(stride);
            let total = ((out.max(1) - 1) * stride + span).saturating_sub(len);
            (total / 2, total - total / 2)
        }
    }
}

fn window(f: Field, span: usize, stride: usize, left: usize, right: usize) -> Option<Field> {
    let padded = f.len + left + right;
    if stride == 0 || padded < span {
        return None;
    }
    let len = (padded - span) / stride + 1;
    Some(f.then(span, stride, left, len))
}

/// The field of `specs` applied in order to a field `f`; None when a layer
/// is not a 1D layer along the markers (dense, flatten, 2D layers), or
/// when branches move at different strides.
pub fn field_of(specs: &[LayerSpec], f: Field) -> Option<Field> {
    specs.iter().try_fold(f, |f, s| layer_field(s, f))
}

fn layer_field(spec: &LayerSpec, f: Field) -> Option<Field> {
    match spec {
        LayerSpec::Conv1d(c) => {
            let (k, s, d) = (c.kernel.one()?, c.stride.one()?, c.dilation.one()?);
            let span = d * (k - 1) + 1;
            let (l, r) = pads(c.padding, f.len, span, s);
            window(f, span, s, l, r)
        }
        LayerSpec::SeparableConv1d(c) => {
            let (k, s, d) = (c.kernel.one()?, c.stride.one()?, c.dilation.one()?);
            let span = d * (k - 1) + 1;
            let (l, r) = pads(c.padding, f.len, span, s);
            window(f, span, s, l, r)
        }
        LayerSpec::MaxPool1d(p) | LayerSpec::AvgPool1d(p) => {
            let k = p.size.one()?;
            let s = match p.stride {
                Some(s) => s.one()?,
                None => k,
            };
            window(f, k, s, p.padding, p.padding)
        }
        LayerSpec::BatchNorm(_) | LayerSpec::Activation(_) | LayerSpec::Dropout(_) => Some(f),
        LayerSpec::Sequential(s) => field_of(&s.layers, f),
        LayerSpec::Residual(r) => field_of(&r.layers, f),
        LayerSpec::Branches(b) => {
            let fields: Vec<Field> = b
                .branch
                .iter()
                .map(|br| field_of(&br.layers, f))
                .collect::<Option<_>>()?;
            let first = *fields.first()?;
            if fields
                .iter()
                .any(|g| g.stride != first.stride || g.len != first.len)
            {
                return None;
            }
            // The union of the branches' windows (concatenated or summed alike).
            let start = fields.iter().map(|g| -g.offset).min()?;
            let end = fields.iter().map(|g| -g.offset + g.size).max()?;
            Some(Field {
                stride: first.stride,
                offset: -start,
                size: end - start,
                len: first.len,
            })
        }
        _ => None,
    }
}

/// Whether a spec holds a convolution (itself or inside a container).
pub fn has_conv(spec: &LayerSpec) -> bool {
    let mut found = false;
    spec.walk(&mut |s| {
        found |= matches!(
            s,
            LayerSpec::Conv1d(_)
                | LayerSpec::Conv2d(_)
                | LayerSpec::SeparableConv1d(_)
                | LayerSpec::SeparableConv2d(_)
        )
    });
    found
}
