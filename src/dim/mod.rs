//! Deep InfoMax: configs, encoders, MI heads, estimators and the model.
//! `../shared/research/dim-spec.md` is the ground truth; section numbers in
//! comments (§) refer to it.

pub(crate) mod block;
pub(crate) mod concat;
pub mod config;
pub mod encoder;
pub mod estimator;
pub(crate) mod global;
pub mod head;
pub mod model;
pub mod prior;

pub use block::Mode;
pub use config::{DimConfig, EncoderConfig, EncoderSpec, Estimator, Fold, HeadKind, Layer};
pub use encoder::{Encoder, EncoderActs};
pub use estimator::{EstimatorStats, ScoreShape, estimate, estimate_pairs};
pub use head::MiHead;
pub use model::{Dim, StepStats, Workspace};
