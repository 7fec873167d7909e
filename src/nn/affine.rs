//! A learned per-channel scale and shift, `y = γ·x + β` over `[N, C,
//! spatial]`: batch norm's affine part without its statistics (a
//! LayerScale, or a learned temperature on scores).

use super::{Ctx, ParamId, two_mut};
use crate::error::{Error, Result, check_len};
use crate::kernels::{Float, NormShape};

/// `weight` (γ) and `bias` (β), `[C]` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Affine {
    /// Channels.
    pub c: usize,
    /// γ.
    pub gamma: ParamId,
    /// β.
    pub beta: ParamId,
}

impl Affine {
    fn check(&self, s: &NormShape, x: usize, y: usize) -> Result<()> {
        if s.channels != self.c {
            return Err(Error::InvalidShape { what: "affine", reason: "channels differ from the unit's" });
        }
        let len = s.validate()?;
        check_len("affine input", len, x)?;
        check_len("affine output", len, y)
    }

    /// `y = γ·x + β`, channel by channel.
    pub fn forward<T: Float>(&self, ctx: &Ctx<'_, T>, s: &NormShape, x: &[T], y: &mut [T]) -> Result<()> {
        self.check(s, x.len(), y.len())?;
        let (g, b) = (self.gamma.of(ctx.params)?, self.beta.of(ctx.params)?);
        // Plane k of the flat [N, C, spatial] layout is channel k mod C.
        for (k, (yp, xp)) in y.chunks_exact_mut(s.spatial).zip(x.chunks_exact(s.spatial)).enumerate() {
            let ch = k % self.c;
            for (o, &v) in yp.iter_mut().zip(xp) {
                *o = g[ch] * v + b[ch];
            }
        }
        Ok(())
    }

    /// Writes `dx = γ·dy` (if given), accumulates `dγ += Σ dy·x` and
    /// `dβ += Σ dy` (sums in index order).
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        s: &NormShape,
        x: &[T],
        dy: &[T],
        dx: Option<&mut [T]>,
    ) -> Result<()> {
        self.check(s, x.len(), dy.len())?;
        let g = self.gamma.of(ctx.params)?;
        if let Some(dx) = dx {
            check_len("affine input gradient", x.len(), dx.len())?;
            for (k, (dxp, dyp)) in dx.chunks_exact_mut(s.spatial).zip(dy.chunks_exact(s.spatial)).enumerate() {
                for (d, &v) in dxp.iter_mut().zip(dyp) {
                    *d = g[k % self.c] * v;
                }
            }
        }
        let (dg, db) = two_mut(ctx.grads, self.gamma.range(), self.beta.range())?;
        for (k, (xp, dyp)) in x.chunks_exact(s.spatial).zip(dy.chunks_exact(s.spatial)).enumerate() {
            let ch = k % self.c;
            for (&xv, &d) in xp.iter().zip(dyp) {
                dg[ch] += d * xv;
                db[ch] += d;
            }
        }
        Ok(())
    }
}
