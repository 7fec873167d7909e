//! Inference without `std` or a heap: read an exported encoder from its
//! safetensors bytes, plan once, encode on caller memory.
//!
//! ```
//! use infomax::infer::{InferError, Plan, Weights};
//!
//! fn embed(file: &[u8], image: &[f32; 784], y: &mut [f32; 64]) -> Result<(), InferError> {
//!     let weights = Weights::<32>::parse(file)?; // a table of views into `file`
//!     let plan = Plan::from_weights(&weights, 1)?; // or Plan::new(&Arch::edge(), 1)
//!     let mut scratch = [0f32; 13_152]; // exactly plan.scratch_len() for `edge`
//!     plan.encode(&weights, image, &mut scratch, y) // image: NCHW in [-1, 1]
//! }
//! # let model = infomax::dim::Dim::new(infomax::dim::DimConfig::new("edge")).unwrap();
//! # let file = infomax::io::to_bytes(&model, infomax::io::ExportDtype::F16, true, &[]).unwrap();
//! # let mut y = [0f32; 64];
//! # embed(&file, &[0.5; 784], &mut y).unwrap();
//! # assert!(y.iter().all(|v| v.is_finite()));
//! # assert_eq!(Plan::from_weights(&Weights::<32>::parse(&file).unwrap(), 1).unwrap().scratch_len(), 13_152);
//! ```
//!
//! Everything here is `no_std` and allocation-free (`tests/infer_alloc.rs`
//! counts allocations); the file format, tensor names and scratch sizes are
//! in `docs/inference.md`.

mod arch;
mod dtype;
mod error;
mod json;
mod plan;
mod safetensors;

pub use arch::{Arch, CONFIG_MAX, LayerSpec, MAX_LAYERS};
pub use dtype::Dtype;
pub use error::InferError;
pub use json::JsonStr;
pub use plan::{Plan, Tap, Taps, WEIGHT_TILE};
pub use safetensors::{MAX_HEADER, MAX_METADATA, MAX_RANK, ReadError, Tensor, Weights};

/// `format` metadata value of an inference file.
pub const FORMAT: &str = "infomax-encoder";
/// `format_version` metadata value this reader understands.
pub const FORMAT_VERSION: &str = "1";

/// One 8-bit pixel normalised as in training: `(x / 255 − 0.5) / 0.5`, in
/// [−1, 1] (0 → −1, 255 → 1 exactly).
#[inline]
pub const fn normalize(x: u8) -> f32 {
    (x as f32 / 255.0 - 0.5) / 0.5
}

/// [`normalize`] over a whole image (or batch); lengths must match.
pub fn normalize_into(pixels: &[u8], out: &mut [f32]) -> Result<(), InferError> {
    if pixels.len() != out.len() {
        return Err(InferError::WrongLength { what: "normalize output", expected: pixels.len(), got: out.len() });
    }
    for (o, &p) in out.iter_mut().zip(pixels) {
        *o = normalize(p);
    }
    Ok(())
}
