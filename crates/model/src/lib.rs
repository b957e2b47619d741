//! genocnn's models: specs read from TOML ([`ModelSpec`]), training on
//! genotypes with early stopping ([`fit`]), saving and loading
//! ([`saved`]), and prediction for new genotype files whose markers are
//! matched by ID and allele ([`saved::match_markers`]).

pub mod error;
pub mod image;
pub mod saved;
pub mod search;
pub mod spec;
pub mod train;

pub use error::{ModelError, Result};
pub use image::{
    fit_images, Evaluation, ImageEpoch, ImageEvent, ImageMeta, ImageModel, ImageOptions,
};
pub use saved::{
    load, match_markers, save_image, save_linear, save_network, LinearModel, SavedModel,
};
pub use search::{Candidate, SearchSpec};
pub use spec::{InputEncoding, ModelSpec, TrainingSpec};
pub use train::{fit, EpochReport, Event, Fitted, InputMap, TargetScale};
