//! File formats written for users (feature `train`): the inference export.
//! Reading an inference file needs no `std`: see [`crate::infer`].

pub mod export;

pub use export::{ExportDtype, ExportSummary, export, to_bytes};
