//! The trained DIM `edge` encoder (`weights/dim-fmnist-edge.safetensors`,
//! f16, BN folded) through `infomax::infer`: the file is parsed in place
//! from flash, a `Plan` is made from its metadata, and `encode` runs on the
//! caller's scratch. No heap anywhere.
//!
//! Compiled into the firmware and into the host's
//! `examples/firmware_fixture.rs` and `tests/firmware_fixture.rs` (`#[path]`),
//! so the expected values come from the same code on the host.

use infomax::infer::{InferError, Plan, Weights, normalize_into};

/// The exported encoder, embedded in flash.
pub static WEIGHTS: &[u8] = include_bytes!("../../../weights/dim-fmnist-edge.safetensors");
/// Pixels per image (28×28×1).
pub const IMAGE_LEN: usize = 784;
/// Width of Y.
pub const Y_DIM: usize = 64;
/// `Plan::scratch_len()` of this encoder at batch 1, checked at run time.
pub const SCRATCH_LEN: usize = 13_152;

/// Y of one 28×28 image (raw bytes, normalised here to [−1, 1]).
pub fn encode(image: &[u8], scratch: &mut [f32], y: &mut [f32; Y_DIM]) -> Result<(), InferError> {
    let weights = Weights::<16>::parse(WEIGHTS)?;
    let plan = Plan::from_weights(&weights, 1)?;
    if plan.scratch_len() != SCRATCH_LEN {
        return Err(InferError::WrongLength {
            what: "edge scratch constant",
            expected: plan.scratch_len(),
            got: SCRATCH_LEN,
        });
    }
    let mut x = [0f32; IMAGE_LEN];
    normalize_into(image, &mut x)?;
    plan.encode(&weights, &x, scratch, y)
}
