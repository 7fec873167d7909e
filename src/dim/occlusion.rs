//! Occlusion (docs/method.md §7.2): a second encoder pass on a copy of the batch in
//! which one random square per image is overwritten; Y (and everything the
//! objective computes from Y) comes from that pass, the local features
//! from the clean one. Both passes back-propagate into the same gradients.
//!
//! Choices, where the paper left room:
//! - One axis-aligned `size`×`size` square per image, all channels, its
//!   top-left corner uniform over the positions where it fits, drawn from
//!   `(seed, step)` so a resumed run occludes exactly as an uninterrupted one.
//! - Filled with a constant (default 0, mid-grey in [−1, 1] data).
//! - BN: the occluded pass normalises with its own batch statistics (train
//!   mode, gradients through them) but does not touch the running
//!   statistics: they are restored after it, so only the clean pass updates
//!   them, and evaluation (clean images, running statistics) sees the
//!   statistics of clean data.

use crate::dim::config::Occlusion;
use crate::dim::encoder::EncoderActs;
use crate::error::{Error, Result, check_len};
use crate::rng::Rng;

/// Stream that draws the squares of each step.
const OCCLUDE_STREAM: u64 = 0x4F43_434C_5544;

/// Buffers of the occluded pass at one batch size.
#[derive(Debug)]
pub(crate) struct OccActs {
    /// The occluded batch.
    pub x: Vec<f32>,
    /// The encoder activations of the occluded pass.
    pub enc: EncoderActs,
    /// Top-left corner (row, column) of each image's square.
    pub squares: Vec<(usize, usize)>,
    /// BN running statistics saved across the occluded pass.
    pub saved: Vec<f32>,
    /// A zero Y gradient for the clean pass's backward.
    pub zero_y: Vec<f32>,
}

impl OccActs {
    /// Buffers for `n` images of `input_len` values, `buffers` BN values and
    /// Y of width `y_dim`.
    pub fn new(n: usize, input_len: usize, enc: EncoderActs, buffers: usize, y_dim: usize) -> Self {
        Self {
            x: vec![0.0; n * input_len],
            enc,
            squares: vec![(0, 0); n],
            saved: vec![0.0; buffers],
            zero_y: vec![0.0; n * y_dim],
        }
    }

    /// Draws the squares for `step` and writes the occluded copy of `x`
    /// (`[n, c, h, w]`).
    pub fn prepare(&mut self, x: &[f32], shape: [usize; 3], o: &Occlusion, seed: u64, step: u64) -> Result<()> {
        let [c, h, w] = shape;
        check_len("occlusion input", self.x.len(), x.len())?;
        if o.size == 0 || o.size > h.min(w) {
            return Err(Error::InvalidParameter {
                what: "occlusion.size",
                reason: "must be between 1 and the image's smaller side",
            });
        }
        draw_squares(&mut self.squares, o.size, h, w, seed, step);
        self.x.copy_from_slice(x);
        for (img, &(r0, c0)) in self.x.chunks_exact_mut(c * h * w).zip(&self.squares) {
            for plane in img.chunks_exact_mut(h * w) {
                for row in plane.chunks_exact_mut(w).skip(r0).take(o.size) {
                    row[c0..c0 + o.size].fill(o.fill);
                }
            }
        }
        Ok(())
    }
}

/// Top-left corners for `step`: per image, the row then the column, each
/// uniform over the `side − size + 1` positions.
pub(crate) fn draw_squares(out: &mut [(usize, usize)], size: usize, h: usize, w: usize, seed: u64, step: u64) {
    let mut rng = Rng::derive(seed ^ OCCLUDE_STREAM, step);
    for sq in out {
        let r = rng.below_usize(h + 1 - size);
        let c = rng.below_usize(w + 1 - size);
        *sq = (r, c);
    }
}
