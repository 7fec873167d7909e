//! The two-layer perceptron of DIM's heads: `Linear (no bias) → BN → ReLU →
//! Linear (bias)`, over rows `[R, in]`.

use super::{BatchNorm, Ctx, Linear, ops};
use crate::error::Result;
use crate::kernels::{Float, InputGrad, NormShape, SavedStats};

/// `l2(ReLU(BN(l1 x)))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mlp {
    /// `in → hidden`, no bias (BN follows).
    pub l1: Linear,
    /// BN over the hidden units.
    pub bn: BatchNorm,
    /// `hidden → out`, with bias.
    pub l2: Linear,
}

/// An [`Mlp`]'s saved activations, in caller memory: `z`, `a`, `d_a` and
/// `dz` hold `rows · hidden` elements, `mean` and `invstd` `hidden`.
#[derive(Debug)]
pub struct MlpActs<'a, T> {
    /// `l1 x`.
    pub z: &'a mut [T],
    /// BN's batch mean.
    pub mean: &'a mut [T],
    /// BN's batch 1/σ.
    pub invstd: &'a mut [T],
    /// `ReLU(BN(z))`.
    pub a: &'a mut [T],
    /// Gradient w.r.t. `a` (backward only).
    pub d_a: &'a mut [T],
    /// Gradient w.r.t. `z` (backward only).
    pub dz: &'a mut [T],
}

impl Mlp {
    /// Hidden width.
    pub fn hidden(&self) -> usize {
        self.bn.c
    }

    fn norm(&self, rows: usize) -> NormShape {
        NormShape::new(rows, self.bn.c, 1)
    }

    /// `y = l2(ReLU(BN(l1 x)))`.
    pub fn forward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        rows: usize,
        x: &[T],
        acts: &mut MlpActs<'_, T>,
        y: &mut [T],
    ) -> Result<()> {
        self.l1.forward(ctx, rows, x, acts.z)?;
        self.bn.forward(ctx, &self.norm(rows), acts.z, acts.a, acts.mean, acts.invstd)?;
        ops::relu(acts.a);
        self.l2.forward(ctx, rows, acts.a, y)
    }

    /// Backward from `dy`: accumulates every gradient, writes `dx`.
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        rows: usize,
        x: &[T],
        acts: &mut MlpActs<'_, T>,
        dy: &[T],
        dx: &mut [T],
    ) -> Result<()> {
        self.l2.backward(ctx, rows, acts.a, dy, Some(InputGrad::Write(&mut *acts.d_a)))?;
        ops::relu_mask(acts.d_a, acts.a);
        let saved = SavedStats { mean: &*acts.mean, invstd: &*acts.invstd };
        self.bn.backward(ctx, &self.norm(rows), acts.z, acts.d_a, saved, acts.dz)?;
        self.l1.backward(ctx, rows, x, acts.dz, Some(InputGrad::Write(dx)))
    }
}
