//! Strided crops for the folded encoders (docs/method.md §2.6). `unfold` cuts each
//! image into overlapping `k×k` crops with stride `s`, so the layers after
//! it see every crop as an independent sample; `fold` puts the per-crop
//! outputs back on their crop grid, one channel per per-crop output value.
//!
//! Layouts (NCHW): unfold `[n, c, H, W] → [n·nh·nw, c, k, k]` with crops
//! image-major, then crop row, then crop column (`nh = (H − k)/s + 1`);
//! fold `[n·nh·nw, c, h, w] → [n, c·h·w, nh, nw]`, channel `(c·h + y)·w + x`
//! as in PyTorch's `view(n, nh, nw, c, h, w).permute(0, 3, 4, 5, 1, 2)`.

use super::Float;
use super::conv::{check_fields_nonzero, window_positions};
use crate::error::{Error, Result, check_len, checked_product};

/// Shape of one unfold call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfoldShape {
    /// Images (N).
    pub batch: usize,
    /// Channels (C).
    pub channels: usize,
    /// Image height.
    pub in_h: usize,
    /// Image width.
    pub in_w: usize,
    /// Crop side k.
    pub crop: usize,
    /// Distance between crops (both axes).
    pub stride: usize,
}

/// Sizes derived from a validated [`UnfoldShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnfoldDims {
    /// Crop rows per image.
    pub grid_h: usize,
    /// Crop columns per image.
    pub grid_w: usize,
    /// Crops in the whole batch (`batch · grid_h · grid_w`).
    pub crops: usize,
    /// Input length.
    pub in_len: usize,
    /// Output length.
    pub out_len: usize,
}

impl UnfoldShape {
    /// Checks the shape: the crop must fit in the image. A stride that does
    /// not reach the last row or column leaves it out (floor, as a conv).
    pub fn validate(&self) -> Result<UnfoldDims> {
        check_fields_nonzero!("unfold", self; batch, channels, in_h, in_w, crop, stride);
        let (grid_h, grid_w) = window_positions((self.in_h, self.in_w), (self.crop, self.crop), self.stride)
            .ok_or(Error::InvalidShape { what: "unfold", reason: "crop is larger than the image" })?;
        let crops = checked_product("unfold crops", &[self.batch, grid_h, grid_w])?;
        Ok(UnfoldDims {
            grid_h,
            grid_w,
            crops,
            in_len: checked_product("unfold input", &[self.batch, self.channels, self.in_h, self.in_w])?,
            out_len: checked_product("unfold output", &[crops, self.channels, self.crop, self.crop])?,
        })
    }
}

/// Calls `f(crop_row_in_y, image_row_in_x)` for every crop row: the pairs of
/// `k`-long runs that unfold copies (and unfold backward adds back).
#[inline(always)]
fn for_each_run(s: &UnfoldShape, d: &UnfoldDims, mut f: impl FnMut(usize, usize)) {
    let (k, plane) = (s.crop, s.in_h * s.in_w);
    let mut o = 0;
    for n in 0..s.batch {
        for gi in 0..d.grid_h {
            for gj in 0..d.grid_w {
                for c in 0..s.channels {
                    let base = (n * s.channels + c) * plane + gi * s.stride * s.in_w + gj * s.stride;
                    for r in 0..k {
                        f(o, base + r * s.in_w);
                        o += k;
                    }
                }
            }
        }
    }
}

/// Forward: `y[(n, i, j), c, r, q] = x[n, c, i·s + r, j·s + q]`.
pub fn unfold_forward<T: Float>(s: &UnfoldShape, x: &[T], y: &mut [T]) -> Result<()> {
    let d = s.validate()?;
    check_len("unfold input", d.in_len, x.len())?;
    check_len("unfold output", d.out_len, y.len())?;
    let k = s.crop;
    for_each_run(s, &d, |o, i| y[o..o + k].copy_from_slice(&x[i..i + k]));
    Ok(())
}

/// Backward: `dx` is zeroed, then every crop's gradient is added where the
/// crop came from (overlapping crops sum).
pub fn unfold_backward<T: Float>(s: &UnfoldShape, dy: &[T], dx: &mut [T]) -> Result<()> {
    let d = s.validate()?;
    check_len("unfold output gradient", d.out_len, dy.len())?;
    check_len("unfold input gradient", d.in_len, dx.len())?;
    let k = s.crop;
    dx.fill(T::ZERO);
    for_each_run(s, &d, |o, i| {
        for (a, &g) in dx[i..i + k].iter_mut().zip(&dy[o..o + k]) {
            *a += g;
        }
    });
    Ok(())
}

/// Shape of one fold call: `batch` images of `grid_h × grid_w` crops, each
/// crop a `[channels, h, w]` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FoldShape {
    /// Images (N).
    pub batch: usize,
    /// Per-crop channels.
    pub channels: usize,
    /// Per-crop height.
    pub h: usize,
    /// Per-crop width.
    pub w: usize,
    /// Crop rows per image.
    pub grid_h: usize,
    /// Crop columns per image.
    pub grid_w: usize,
}

impl FoldShape {
    /// Checks the shape; returns the length of input and output (equal).
    pub fn validate(&self) -> Result<usize> {
        check_fields_nonzero!("fold", self; batch, channels, h, w, grid_h, grid_w);
        checked_product("fold tensor", &[self.batch, self.channels, self.h, self.w, self.grid_h, self.grid_w])
    }
}

/// Moves between crop-major and grid-minor order: `to_grid` reads
/// `[n·P, F]` and writes `[n, F, P]` (P = grid cells, F = c·h·w), or the
/// reverse when false. A transpose per image, so each direction is exact.
/// `what` names (`src`, `dst`) in a length error.
fn permute<T: Float>(
    s: &FoldShape,
    what: (&'static str, &'static str),
    src: &[T],
    dst: &mut [T],
    to_grid: bool,
) -> Result<()> {
    let len = s.validate()?;
    check_len(what.0, len, src.len())?;
    check_len(what.1, len, dst.len())?;
    let p = s.grid_h * s.grid_w;
    let f = s.channels * s.h * s.w;
    for (si, di) in src.chunks_exact(p * f).zip(dst.chunks_exact_mut(p * f)) {
        for cell in 0..p {
            for ch in 0..f {
                if to_grid {
                    di[ch * p + cell] = si[cell * f + ch];
                } else {
                    di[cell * f + ch] = si[ch * p + cell];
                }
            }
        }
    }
    Ok(())
}

/// Forward: `y[n, (c·h + y)·w + x, i, j] = x[(n, i, j), c, y, x]`.
pub fn fold_forward<T: Float>(s: &FoldShape, x: &[T], y: &mut [T]) -> Result<()> {
    permute(s, ("fold input", "fold output"), x, y, true)
}

/// Backward: the inverse permutation of the gradient.
pub fn fold_backward<T: Float>(s: &FoldShape, dy: &[T], dx: &mut [T]) -> Result<()> {
    permute(s, ("fold output gradient", "fold input gradient"), dy, dx, false)
}
