//! Seeded, resumable batching: a fresh Fisher–Yates permutation per epoch,
//! fixed-size batches, and (by default, as in DIM) the last incomplete
//! batch dropped.
//!
//! Epoch `e`'s order depends only on `(seed, e)` (its RNG is seeded with
//! [`derive_seed`]`(seed, SHUFFLE_STREAM, e)`), so a trainer resumed at
//! epoch `e` reproduces it without saving any RNG state. Augmentation has
//! its own stream per batch, [`Loader::augment_rng`]`(e, b)`, so resuming
//! at batch `b` of epoch `e` reproduces the crops and flips as well. Both
//! are plain [`Rng`]s whose `u64` state can be checkpointed if a trainer
//! prefers to carry one generator along.

use serde::{Deserialize, Serialize};

use super::{DataError, Result, Rng};
use crate::rng::derive_seed;

/// Stream id of the per-epoch shuffling RNGs.
pub const SHUFFLE_STREAM: u64 = 1;
/// Stream id of the per-batch augmentation RNGs.
pub const AUGMENT_STREAM: u64 = 2;

/// Batching over `n` images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Loader {
    /// Images in the dataset.
    pub n: usize,
    /// Images per batch (at least 1).
    pub batch_size: usize,
    /// Drop the last, incomplete batch (default true).
    pub drop_last: bool,
    /// Shuffle every epoch (default true); false keeps `0..n`.
    pub shuffle: bool,
    /// Base seed.
    pub seed: u64,
}

impl Loader {
    /// A shuffling, drop-last loader over `n` images.
    pub fn new(n: usize, batch_size: usize, seed: u64) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::Invalid { what: "loader batch_size", reason: "must be at least 1".into() });
        }
        Ok(Loader { n, batch_size, drop_last: true, shuffle: true, seed })
    }

    /// This loader with drop-last on or off.
    pub const fn with_drop_last(self, drop_last: bool) -> Self {
        Loader { drop_last, ..self }
    }

    /// This loader with shuffling on or off.
    pub const fn with_shuffle(self, shuffle: bool) -> Self {
        Loader { shuffle, ..self }
    }

    /// Batches in one epoch: `n / batch_size` with drop-last, else
    /// `ceil(n / batch_size)`. 0 if `batch_size` is 0.
    pub const fn batches_per_epoch(&self) -> usize {
        if self.batch_size == 0 {
            0
        } else if self.drop_last {
            self.n / self.batch_size
        } else {
            self.n.div_ceil(self.batch_size)
        }
    }

    /// The RNG that shuffles epoch `epoch`.
    pub const fn shuffle_rng(&self, epoch: u64) -> Rng {
        Rng::new(derive_seed(self.seed, SHUFFLE_STREAM, epoch))
    }

    /// The RNG for augmenting batch `batch` of epoch `epoch`.
    pub const fn augment_rng(&self, epoch: u64, batch: u64) -> Rng {
        Rng::new(derive_seed(derive_seed(self.seed, AUGMENT_STREAM, epoch), AUGMENT_STREAM, batch))
    }

    /// The order of the images in epoch `epoch`: a permutation of `0..n`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.n).collect();
        if self.shuffle {
            self.shuffle_rng(epoch).shuffle(&mut order);
        }
        order
    }

    /// Epoch `epoch`: its order, cut into batches.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        Epoch { order: self.order(epoch), batch_size: self.batch_size.max(1), batches: self.batches_per_epoch() }
    }
}

/// One epoch's order and its batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    order: Vec<usize>,
    batch_size: usize,
    batches: usize,
}

impl Epoch {
    /// The whole permutation, including a dropped tail.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Number of batches.
    pub fn len(&self) -> usize {
        self.batches
    }

    /// True if there is no batch (fewer images than a batch, with drop-last).
    pub fn is_empty(&self) -> bool {
        self.batches == 0
    }

    /// Batch `b` (image indices), or `None` past the end.
    pub fn batch(&self, b: usize) -> Option<&[usize]> {
        if b >= self.batches {
            return None;
        }
        let start = b * self.batch_size;
        self.order.get(start..(start + self.batch_size).min(self.order.len()))
    }

    /// The batches in order. Resume mid-epoch with `.skip(b)`.
    pub fn batches(&self) -> std::slice::Chunks<'_, usize> {
        let end = self.batches.saturating_mul(self.batch_size).min(self.order.len());
        self.order[..end].chunks(self.batch_size)
    }
}
