//! `y = x·Wᵀ (+ b)` over rows `[R, in]`, PyTorch's `nn.Linear` layout.

use super::{Ctx, ParamId, ops, two_mut};
use crate::error::Result;
use crate::kernels::{Float, InputGrad, LinearGrads, LinearShape, MatRef};

/// A linear layer: `weight` `[out, in]`, optional `bias` `[out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Linear {
    /// Input features.
    pub in_f: usize,
    /// Output features.
    pub out_f: usize,
    /// `[out, in]`.
    pub w: ParamId,
    /// `[out]`, if the layer has a bias.
    pub b: Option<ParamId>,
}

impl Linear {
    fn shape(&self, rows: usize) -> LinearShape {
        LinearShape::new(rows, self.in_f, self.out_f)
    }

    /// `y = x·Wᵀ (+ b)` for `rows` rows.
    pub fn forward<T: Float>(&self, ctx: &Ctx<'_, T>, rows: usize, x: &[T], y: &mut [T]) -> Result<()> {
        let b = self.b.map(|b| b.of(ctx.params)).transpose()?;
        ops::linear_forward(&self.shape(rows), x, self.w.of(ctx.params)?, b, y)
    }

    /// `y += x·Wᵀ`, summed by the GEMM itself (a shortcut added into
    /// another layer's output; the bias, if any, is not added).
    pub fn forward_add<T: Float>(&self, ctx: &Ctx<'_, T>, rows: usize, x: &[T], y: &mut [T]) -> Result<()> {
        let xm = MatRef::row_major(x, rows, self.in_f)?;
        let wt = MatRef::row_major(self.w.of(ctx.params)?, self.out_f, self.in_f)?.t();
        ops::par_gemm(y, xm, wt, true)
    }

    /// Accumulates `dW += dyᵀ·x` (and `db += Σ dy`) into `ctx.grads`, and
    /// writes or adds `dx = dy·W` if given.
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        rows: usize,
        x: &[T],
        dy: &[T],
        dx: Option<InputGrad<'_, T>>,
    ) -> Result<()> {
        let w = self.w.of(ctx.params)?;
        let s = self.shape(rows);
        let g = match self.b {
            Some(b) => {
                let (dw, db) = two_mut(ctx.grads, self.w.range(), b.range())?;
                LinearGrads { dx, dw, db: Some(db) }
            }
            None => LinearGrads { dx, dw: self.w.of_mut(ctx.grads)?, db: None },
        };
        ops::linear_backward(&s, x, w, dy, g)
    }
}
