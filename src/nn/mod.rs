//! The layer vocabulary: small units (linear, conv, batch norm, layer norm,
//! MLP) that every trained network of the crate is composed of: the
//! encoder's blocks, the MI heads, the global nets, the prior discriminator
//! and the evaluation classifiers.
//!
//! A unit holds typed handles ([`ParamId`], [`BufferId`]) into the flat
//! parameter and buffer vectors, never raw offsets, and runs forward and
//! backward over one [`Ctx`]. Units are declared through a [`Builder`],
//! which registers their tensors in a [`Registry`]: by name in the one
//! parameter table ([`ParamTable`], feature `train`), or as a bare
//! [`Layout`] with no heap. Units, builder, layout and context are `no_std`
//! and allocate nothing; with feature `train` they run the multicore kernels
//! (`kernels::par`, bitwise identical for any thread count), without it the
//! serial ones.

mod affine;
mod build;
mod conv;
mod ids;
mod linear;
mod mlp;
mod norm;
pub(crate) mod ops;
#[cfg(feature = "train")]
mod table;

pub use affine::Affine;
pub use build::{Builder, DefaultRegistry, Init, Layout, Registry};
pub use conv::Conv2d;
pub use ids::{BufferId, ParamId, two_mut};
pub use linear::Linear;
pub use mlp::{Mlp, MlpActs};
pub use norm::{BatchNorm, LayerNorm};
#[cfg(feature = "train")]
pub use table::{ParamEntry, ParamTable};

/// Train mode (batch statistics, running-stat updates) or eval mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated.
    Train,
    /// Running statistics; nothing is updated.
    Eval,
    /// Batch statistics, folded into the running statistics as a cumulative
    /// average (PyTorch's `momentum=None`): this is batch number `seen`
    /// (from 0) of a pass that re-estimates BN statistics, e.g. for the
    /// untrained-encoder baseline.
    Calibrate {
        /// Batches already averaged in.
        seen: u32,
    },
}

/// What a unit's forward and backward run over: the parameters, their
/// gradients (accumulated by backward), the buffers (BN running statistics,
/// updated by a train-mode forward) and the mode.
#[derive(Debug)]
pub struct Ctx<'a, T = f32> {
    /// The flat parameter vector.
    pub params: &'a [T],
    /// Gradients, as long as `params` (empty for a forward-only context).
    pub grads: &'a mut [T],
    /// The flat buffer vector.
    pub buffers: &'a mut [T],
    /// Train, eval or calibrate.
    pub mode: Mode,
}

impl<'a, T> Ctx<'a, T> {
    /// A context for forward passes only (no gradients).
    pub fn forward(params: &'a [T], buffers: &'a mut [T], mode: Mode) -> Self {
        Self { params, grads: &mut [], buffers, mode }
    }

    /// A context for backward passes only (no buffers).
    pub fn backward(params: &'a [T], grads: &'a mut [T]) -> Self {
        Self { params, grads, buffers: &mut [], mode: Mode::Train }
    }
}
