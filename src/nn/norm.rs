//! Batch norm and layer norm over NCHW-like `[N, C, spatial]` data.

use super::{BufferId, Ctx, Mode, ParamId, ops, two_mut};
use crate::error::Result;
use crate::kernels::{self as k, Float, NormBackward, NormGrads, NormShape, SavedStats, ScaleShift};

/// Batch norm: `weight`, `bias` `[C]` trained; `running_mean`,
/// `running_var` `[C]` buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNorm {
    /// Channels.
    pub c: usize,
    /// γ.
    pub gamma: ParamId,
    /// β.
    pub beta: ParamId,
    /// Running mean.
    pub rm: BufferId,
    /// Running variance.
    pub rv: BufferId,
}

impl BatchNorm {
    /// `a = BN(z)`: batch statistics (saved in `mean`, `invstd`; running
    /// statistics updated) in train or calibrate mode, running statistics in
    /// eval mode.
    pub fn forward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        z: &[T],
        a: &mut [T],
        mean: &mut [T],
        invstd: &mut [T],
    ) -> Result<()> {
        let scale_shift = ScaleShift { gamma: self.gamma.of(ctx.params)?, beta: self.beta.of(ctx.params)? };
        match ctx.mode {
            Mode::Train | Mode::Calibrate { .. } => {
                let (rm, rv) = two_mut(ctx.buffers, self.rm.range(), self.rv.range())?;
                let mut cfg = k::BatchNormConfig::default();
                if let Mode::Calibrate { seen } = ctx.mode {
                    cfg.momentum = 1.0 / (f64::from(seen) + 1.0);
                }
                let running = k::RunningStats { mean: rm, var: rv };
                let saved = SavedStats { mean, invstd };
                ops::batch_norm_train_forward(s, &cfg, k::BnTrain { x: z, scale_shift, running, y: a, saved })
            }
            Mode::Eval => {
                let (rm, rv) = (self.rm.of(ctx.buffers)?, self.rv.of(ctx.buffers)?);
                k::batch_norm_eval_forward(s, k::NORM_EPS, z, scale_shift, k::RunningStats { mean: rm, var: rv }, a)
            }
        }
    }

    /// Train-mode backward from the forward's `saved` statistics: writes
    /// `dz`, accumulates `dγ`, `dβ`.
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        z: &[T],
        da: &[T],
        saved: SavedStats<&[T]>,
        dz: &mut [T],
    ) -> Result<()> {
        let (dgamma, dbeta) = two_mut(ctx.grads, self.gamma.range(), self.beta.range())?;
        let b = NormBackward { x: z, dy: da, gamma: self.gamma.of(ctx.params)?, stats: saved };
        ops::batch_norm_train_backward(s, b, NormGrads { dx: dz, dgamma, dbeta })
    }
}

/// Layer norm over each location's channels: `weight`, `bias` `[C]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerNorm {
    /// Channels.
    pub c: usize,
    /// γ.
    pub gamma: ParamId,
    /// β.
    pub beta: ParamId,
}

impl LayerNorm {
    /// `y = LN(x)`, saving each location's mean and 1/σ.
    pub fn forward<T: Float>(
        &self,
        ctx: &Ctx<'_, T>,
        s: &NormShape,
        x: &[T],
        y: &mut [T],
        mean: &mut [T],
        rstd: &mut [T],
    ) -> Result<()> {
        let scale_shift = ScaleShift { gamma: self.gamma.of(ctx.params)?, beta: self.beta.of(ctx.params)? };
        let saved = SavedStats { mean, invstd: rstd };
        ops::layer_norm_forward(s, k::NORM_EPS, k::LayerNormForward { x, scale_shift, y, saved })
    }

    /// Backward from the forward's `saved` mean and 1/σ: writes `dx`,
    /// accumulates `dγ`, `dβ`.
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        x: &[T],
        dy: &[T],
        saved: SavedStats<&[T]>,
        dx: &mut [T],
    ) -> Result<()> {
        let (dgamma, dbeta) = two_mut(ctx.grads, self.gamma.range(), self.beta.range())?;
        let b = NormBackward { x, dy, gamma: self.gamma.of(ctx.params)?, stats: saved };
        ops::layer_norm_backward(s, b, NormGrads { dx, dgamma, dbeta })
    }
}
