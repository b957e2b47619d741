//! `sequential`: layers applied in order. The network itself is one (at
//! path `layers`); in a spec it groups layers (`layers.2.layers.0`, …).

use serde::{Deserialize, Serialize};

use super::{At, Builder, Layer, LayerSpec, SpecNode};
use crate::backend::Backend;
use crate::error::Result;
use crate::param::Param;
use crate::pass::{Backward, Forward};

/// Layers in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequentialSpec {
    pub layers: Vec<LayerSpec>,
}

impl SpecNode for SequentialSpec {
    fn nested(&self) -> Vec<&LayerSpec> {
        self.layers.iter().collect()
    }
    fn nested_mut(&mut self) -> Vec<&mut LayerSpec> {
        self.layers.iter_mut().collect()
    }
}

/// Built layers applied in order.
pub struct Sequential<B: Backend> {
    path: String,
    input: Vec<usize>,
    layers: Vec<Box<dyn Layer<B>>>,
}

pub fn build<B: Backend>(
    s: &SequentialSpec,
    at: &At,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Box<dyn Layer<B>>> {
    Ok(Box::new(sequence(&s.layers, at, &at.path, input, cx)?))
}

/// The layers of a container at `at` as one sequence reported at `path`
/// (the layers at `at.layers.0`, `at.layers.1`, …); at least one.
pub(crate) fn sequence<B: Backend>(
    specs: &[LayerSpec],
    at: &At,
    path: &str,
    input: &[usize],
    cx: &mut Builder<B>,
) -> Result<Sequential<B>> {
    if specs.is_empty() {
        return Err(at.err("has no layers"));
    }
    let mut seq = cx.sequence(specs, &at.name("layers"), input)?;
    seq.path = path.to_string();
    Ok(seq)
}

impl<B: Backend> Sequential<B> {
    pub(crate) fn new(path: String, input: Vec<usize>, layers: Vec<Box<dyn Layer<B>>>) -> Self {
        Sequential {
            path,
            input,
            layers,
        }
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer<B>>] {
        &self.layers
    }
}

impl<B: Backend> Layer<B> for Sequential<B> {
    fn kind(&self) -> &'static str {
        "sequential"
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn output_shape(&self) -> &[usize] {
        self.layers
            .last()
            .map_or(&self.input[..], |l| l.output_shape())
    }

    fn forward(&self, x: B::Tensor, f: &mut Forward<'_, B>) -> Result<B::Tensor> {
        let mut h = x;
        for layer in &self.layers {
            h = f.run(layer.as_ref(), h)?;
        }
        Ok(h)
    }

    fn backward(
        &self,
        dy: B::Tensor,
        b: &mut Backward<'_, B>,
        need_dx: bool,
    ) -> Result<Option<B::Tensor>> {
        let mut g = dy;
        for (i, layer) in self.layers.iter().enumerate().rev() {
            match b.run(layer.as_ref(), g, i > 0 || need_dx)? {
                Some(dx) => g = dx,
                None if i == 0 => return Ok(None),
                None => return Err(super::mismatch(layer.as_ref())),
            }
        }
        Ok(Some(g))
    }

    fn visit_params<'a>(&'a self, f: &mut dyn FnMut(&'a Param<B>)) {
        for l in &self.layers {
            l.visit_params(f);
        }
    }

    fn visit_params_mut<'a>(&'a mut self, f: &mut dyn FnMut(&'a mut Param<B>)) {
        for l in &mut self.layers {
            l.visit_params_mut(f);
        }
    }

    fn children(&self) -> Vec<&dyn Layer<B>> {
        self.layers.iter().map(|l| l.as_ref()).collect()
    }

    fn visit_sequences_mut(&mut self, f: &mut dyn FnMut(&mut super::LayerList<B>)) {
        for l in &mut self.layers {
            l.visit_sequences_mut(f);
        }
        f(&mut self.layers);
    }
}
