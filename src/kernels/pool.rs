//! Max pooling over NCHW, no padding, floor mode (DIM uses kernel 3, stride 2).

use super::Float;
use super::conv::{check_fields_nonzero, window_positions};
use crate::error::{Error, Result, check_len, checked_product};

/// Shape of one max-pool call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolShape {
    /// N.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Window size (both axes).
    pub kernel: usize,
    /// Stride (both axes).
    pub stride: usize,
}

impl MaxPoolShape {
    /// DIM's pool: kernel 3, stride 2.
    pub fn k3s2(batch: usize, channels: usize, in_h: usize, in_w: usize) -> Self {
        Self { batch, channels, in_h, in_w, kernel: 3, stride: 2 }
    }

    /// Checks the shape; returns (out_h, out_w, input length, output length).
    pub fn validate(&self) -> Result<(usize, usize, usize, usize)> {
        check_fields_nonzero!("max pool", self; batch, channels, in_h, in_w, kernel, stride);
        let (oh, ow) = window_positions((self.in_h, self.in_w), (self.kernel, self.kernel), self.stride)
            .ok_or(Error::InvalidShape { what: "max pool", reason: "window is larger than the input" })?;
        let plane = checked_product("max pool input", &[self.in_h, self.in_w])?;
        if u32::try_from(plane).is_err() {
            return Err(Error::Overflow { what: "max pool plane" });
        }
        Ok((
            oh,
            ow,
            checked_product("max pool input", &[self.batch, self.channels, plane])?,
            checked_product("max pool output", &[self.batch, self.channels, oh, ow])?,
        ))
    }
}

/// Forward: `y` gets each window's maximum and `argmax` its index within the
/// input plane (first maximum on ties).
pub fn max_pool_forward<T: Float>(s: &MaxPoolShape, x: &[T], y: &mut [T], argmax: &mut [u32]) -> Result<()> {
    let (oh, ow, il, ol) = s.validate()?;
    check_len("max pool input", il, x.len())?;
    check_len("max pool output", ol, y.len())?;
    check_len("max pool argmax", ol, argmax.len())?;
    windows(s, oh, ow, x, y, |o, best| argmax[o] = best as u32);
    Ok(())
}

/// Forward without the argmax (inference): the same windows, same NaN rule.
pub fn max_pool_forward_values<T: Float>(s: &MaxPoolShape, x: &[T], y: &mut [T]) -> Result<()> {
    let (oh, ow, il, ol) = s.validate()?;
    check_len("max pool input", il, x.len())?;
    check_len("max pool output", ol, y.len())?;
    windows(s, oh, ow, x, y, |_, _| {});
    Ok(())
}

/// The window loop shared by both forwards; `argmax(o, i)` gets output
/// index `o` (over the whole batch) and the winner's index in its plane.
#[inline(always)]
fn windows<T: Float>(
    s: &MaxPoolShape,
    oh: usize,
    ow: usize,
    x: &[T],
    y: &mut [T],
    mut argmax: impl FnMut(usize, usize),
) {
    let plane = s.in_h * s.in_w;
    for (p, (xp, yp)) in x.chunks_exact(plane).zip(y.chunks_exact_mut(oh * ow)).enumerate() {
        for i in 0..oh {
            for j in 0..ow {
                let (h0, w0) = (i * s.stride, j * s.stride);
                let mut best = h0 * s.in_w + w0;
                let mut bv = xp[best];
                for h in h0..h0 + s.kernel {
                    for w in w0..w0 + s.kernel {
                        let v = xp[h * s.in_w + w];
                        // NaN propagates, as in PyTorch.
                        if v > bv || v.is_nan() {
                            bv = v;
                            best = h * s.in_w + w;
                        }
                    }
                }
                yp[i * ow + j] = bv;
                argmax(p * oh * ow + i * ow + j, best);
            }
        }
    }
}

/// Backward: `dx` is zeroed, then each `dy` is added at its window's argmax.
pub fn max_pool_backward<T: Float>(s: &MaxPoolShape, argmax: &[u32], dy: &[T], dx: &mut [T]) -> Result<()> {
    let (oh, ow, il, ol) = s.validate()?;
    check_len("max pool output gradient", ol, dy.len())?;
    check_len("max pool argmax", ol, argmax.len())?;
    check_len("max pool input gradient", il, dx.len())?;
    let plane = s.in_h * s.in_w;
    dx.fill(T::ZERO);
    for ((dxp, dyp), ap) in dx.chunks_exact_mut(plane).zip(dy.chunks_exact(oh * ow)).zip(argmax.chunks_exact(oh * ow)) {
        for (&g, &a) in dyp.iter().zip(ap) {
            let a = a as usize;
            if a >= plane {
                return Err(Error::InvalidParameter {
                    what: "max pool argmax",
                    reason: "index outside the input plane",
                });
            }
            dxp[a] += g;
        }
    }
    Ok(())
}
