//! Deep InfoMax: configs, encoders, MI heads, estimators and the model.
//! `docs/method.md` explains the method; comments cite its sections (§).

pub(crate) mod block;
pub(crate) mod concat;
pub mod config;
pub mod encoder;
pub mod estimator;
pub(crate) mod global;
pub mod head;
pub(crate) mod local;
mod memory;
pub mod model;
pub(crate) mod multi;
pub(crate) mod occlusion;
pub mod prior;

pub use block::Mode;
pub use config::{DimConfig, EncoderConfig, EncoderSpec, Estimator, Fold, HeadKind, Layer, MultiGlobal, Occlusion};
pub use encoder::{Encoder, EncoderActs};
pub use estimator::{EstimatorStats, ScoreShape, estimate, estimate_pairs};
pub use head::MiHead;
pub use model::{Dim, StepStats, Workspace};
