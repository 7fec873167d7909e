//! Inference without `std` or a heap: read an exported encoder from its
//! safetensors bytes, plan once, encode on caller memory.
//!
//! ```
//! use infomax::infer::{Arch, Plan, Weights};
//! # fn run(file: &[u8]) -> Result<(), infomax::infer::InferError> {
//! let weights = Weights::<32>::parse(file)?; // a table of views into `file`
//! let plan = Plan::from_weights(&weights, 1)?; // or Plan::new(&Arch::edge(), 1)
//! let mut scratch = [0f32; 16_384]; // any caller memory of plan.scratch_len()
//! # let mut scratch = vec![0f32; plan.scratch_len()];
//! let image = [0f32; 28 * 28]; // NCHW, normalised to [-1, 1]
//! let mut y = [0f32; 64];
//! plan.encode(&weights, &image, &mut scratch, &mut y)?;
//! # Ok(()) }
//! ```
//!
//! Everything here is `no_std` and allocation-free (`tests/infer_alloc.rs`
//! counts allocations); the file format, tensor names and scratch sizes are
//! in `docs/inference.md`.

mod arch;
mod error;
mod json;
mod plan;
mod safetensors;

pub use arch::{Arch, CONFIG_MAX, LayerSpec, MAX_LAYERS};
pub use error::InferError;
pub use json::JsonStr;
pub use plan::{Plan, Tap, Taps, WEIGHT_TILE};
pub use safetensors::{Dtype, MAX_HEADER, MAX_METADATA, MAX_RANK, ReadError, Tensor, Weights};

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
