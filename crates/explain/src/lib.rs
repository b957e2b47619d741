//! Explanations of genocnn's models.
//!
//! - [`genomic`]: which markers drive a genomic model's predictions:
//!   saliency, gradient × input, Integrated Gradients (checked for
//!   completeness), SmoothGrad and Grad-CAM on a network's evaluation-mode
//!   gradients; a linear model's SNP-BLUP effects; permutation importance
//!   for any model.
//! - [`gwas`]: the single-marker association scan that stands beside them.
//! - [`recovery`]: scoring against known loci, and agreement between models.
//! - [`geometry`]: receptive fields of 1D layers (Grad-CAM's positions to markers).
//! - [`image`]: what an image convnet sees: activations, filter patterns,
//!   Grad-CAM heatmaps and their deletion check.
//!
//! Nothing here changes a model: networks are explained through an
//! unfused copy of their weights.

pub mod error;
pub mod genomic;
pub mod geometry;
pub mod gwas;
pub mod image;
pub mod recovery;

pub use error::{ExplainError, Result};
pub use genomic::{
    Attribution, Explanation, GradCamLayer, IgCheck, LinearExplainer, Method, NetworkExplainer,
    Settings,
};
pub use recovery::{Locus, Recovery};

/// A copy of `net` (built from `spec`) with fusion off, so that each
/// top-level layer is the spec's own and its output exists.
pub fn unfused_copy<B: nn::Backend>(
    net: &nn::Network<B>,
    spec: &model::ModelSpec,
) -> Result<nn::Network<B>> {
    let mut copy = nn::Network::builder(net.backend.clone(), &spec.layers, &net.input_shape)
        .init(spec.init)
        .fuse(false)
        .build()?;
    for (d, s) in copy.params_mut().into_iter().zip(net.params()) {
        d.value = s.value.clone();
    }
    Ok(copy)
}
