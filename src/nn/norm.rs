//! Batch norm and layer norm over NCHW-like `[N, C, spatial]` data.

use super::{BufferId, Ctx, Mode, ParamId, ops, two_mut};
use crate::error::Result;
use crate::kernels::{self as k, Float, NormShape};

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
        let (g, b) = (self.gamma.of(ctx.params)?, self.beta.of(ctx.params)?);
        match ctx.mode {
            Mode::Train | Mode::Calibrate { .. } => {
                let (rm, rv) = two_mut(ctx.buffers, self.rm.range(), self.rv.range())?;
                let mut cfg = k::BatchNormConfig::default();
                if let Mode::Calibrate { seen } = ctx.mode {
                    cfg.momentum = 1.0 / (f64::from(seen) + 1.0);
                }
                ops::batch_norm_train_forward(s, &cfg, z, g, b, rm, rv, a, mean, invstd)
            }
            Mode::Eval => {
                let (rm, rv) = (self.rm.of(ctx.buffers)?, self.rv.of(ctx.buffers)?);
                k::batch_norm_eval_forward(s, k::NORM_EPS, z, g, b, rm, rv, a)
            }
        }
    }

    /// Train-mode backward: writes `dz`, accumulates `dγ`, `dβ`.
    #[allow(clippy::too_many_arguments)] // the kernel's own arguments: input, dy, saved statistics, dx
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        z: &[T],
        da: &[T],
        mean: &[T],
        invstd: &[T],
        dz: &mut [T],
    ) -> Result<()> {
        let (dg, db) = two_mut(ctx.grads, self.gamma.range(), self.beta.range())?;
        ops::batch_norm_train_backward(s, z, da, self.gamma.of(ctx.params)?, mean, invstd, dz, dg, db)
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
        let (g, b) = (self.gamma.of(ctx.params)?, self.beta.of(ctx.params)?);
        ops::layer_norm_forward(s, k::NORM_EPS, x, g, b, y, mean, rstd)
    }

    /// Backward: writes `dx`, accumulates `dγ`, `dβ`.
    #[allow(clippy::too_many_arguments)] // the kernel's own arguments: input, dy, saved statistics, dx
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        x: &[T],
        dy: &[T],
        mean: &[T],
        rstd: &[T],
        dx: &mut [T],
    ) -> Result<()> {
        let (dg, db) = two_mut(ctx.grads, self.gamma.range(), self.beta.range())?;
        ops::layer_norm_backward(s, x, dy, self.gamma.of(ctx.params)?, mean, rstd, dx, dg, db)
    }
}
