//! File formats written for users (feature `train`): the inference export,
//! and its check through the inference path. Reading an inference file
//! needs no `std`: see [`crate::infer`].

pub mod deploy;
pub mod export;
pub mod features;

pub use deploy::{ExportCheck, deploy, export_and_check};
pub use export::{ExportDtype, ExportSummary, export, to_bytes};
