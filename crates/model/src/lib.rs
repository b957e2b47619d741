//! genocnn's models: specs read from TOML ([`ModelSpec`]), one training
//! loop ([`trainer`]) for genotypes ([`fit`], [`fit_with`]) and images
//! ([`fit_images`]), saving and loading ([`saved`]), and prediction for new
//! genotype files whose markers are matched by ID and allele
//! ([`saved::match_markers`]).

pub mod checkpoint;
pub mod error;
pub mod image;
pub mod saved;
pub mod search;
pub mod spec;
pub mod train;
pub mod trainer;
pub mod transfer;

pub use checkpoint::Checkpoint;
pub use error::{DataError, ModelError, Result, TransferError};
pub use image::{
    fit_images, fit_images_with, Evaluation, ImageEpoch, ImageEvent, ImageMeta, ImageModel,
    ImageOptions,
};
pub use saved::{
    load, match_markers, read_weights, save_image, save_linear, save_network, LinearModel,
    SavedModel,
};
pub use search::{Candidate, SearchSpec};
pub use spec::{InputEncoding, ModelSpec, TrainingSpec};
pub use train::{
    build_network, fit, fit_with, EpochReport, Event, Fitted, InputMap, ScaledTrait, TargetScale,
    TraitColumn, TraitData,
};
pub use trainer::TrainOptions;
pub use transfer::{LayerSelection, Phase, Provenance, TransferReport};
