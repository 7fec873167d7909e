//! Augmentation applied while a batch is written into the `f32` buffer:
//! an optional crop (random or centred, from an optionally zero-padded
//! image) then an optional random horizontal flip, as torchvision's
//! `RandomCrop(size, padding)` / `CenterCrop(size)` followed by
//! `RandomHorizontalFlip()`.
//!
//! For each image, in batch order, [`Augment::window`] draws from the
//! [`Rng`] exactly:
//! 1. with a [`CropMode::Random`] crop: `top = rng.below(H + 2p − h + 1)`,
//!    then `left = rng.below(W + 2p − w + 1)` (coordinates in the padded
//!    image); a [`CropMode::Center`] crop draws nothing and takes
//!    `top = (H + 2p − h) / 2`, `left = (W + 2p − w) / 2` (rounded down);
//! 2. with `hflip`: `flip = rng.coin()`.
//!
//! Output pixel `(c, y, x)` is the padded image's pixel
//! `(c, top + y, left + x')` with `x' = w − 1 − x` if flipped, else `x`;
//! padding is pixel value 0, i.e. −1 after normalisation (torchvision pads
//! before `ToTensor`). Without crop the window is the whole image.

use serde::{Deserialize, Serialize};

use super::{DataError, Dataset, NORM, Result, Rng, check_len};

/// How a crop window is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CropMode {
    /// Uniformly at random (training).
    Random,
    /// In the centre, rounded towards the top-left (evaluation).
    Center,
}

/// A crop to `height × width` from the image padded by `padding` pixels on
/// every side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Crop {
    /// Output height.
    pub height: usize,
    /// Output width.
    pub width: usize,
    /// Zero padding added on each side before cropping.
    pub padding: usize,
    /// Random or centred.
    pub mode: CropMode,
}

impl Crop {
    /// A random square crop of side `size` after padding by `padding`
    /// (STL-10 in DIM: `Crop::random(64, 0)`; CIFAR-style: `Crop::random(32, 4)`).
    pub const fn random(size: usize, padding: usize) -> Self {
        Crop { height: size, width: size, padding, mode: CropMode::Random }
    }

    /// A centred square crop of side `size`, no padding.
    pub const fn center(size: usize) -> Self {
        Crop { height: size, width: size, padding: 0, mode: CropMode::Center }
    }
}

/// Where one image is cut from: the top-left corner in padded coordinates
/// and whether it is mirrored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// First row, in the padded image.
    pub top: usize,
    /// First column, in the padded image.
    pub left: usize,
    /// Mirrored left–right.
    pub flip: bool,
}

/// An augmentation: optional crop, then optional random horizontal flip.
/// `Augment::default()` is the identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Augment {
    /// The crop, if any.
    pub crop: Option<Crop>,
    /// Flip each image left–right with probability 1/2.
    pub hflip: bool,
}

impl Augment {
    /// No augmentation.
    pub const fn none() -> Self {
        Augment { crop: None, hflip: false }
    }

    /// This augmentation with `crop`.
    pub const fn with_crop(self, crop: Crop) -> Self {
        Augment { crop: Some(crop), ..self }
    }

    /// This augmentation with random horizontal flips on or off.
    pub const fn with_hflip(self, hflip: bool) -> Self {
        Augment { hflip, ..self }
    }

    /// The output `(channels, height, width)` for input images of that shape,
    /// or an error if the crop does not fit the padded image or is empty.
    pub fn output_shape(&self, channels: usize, height: usize, width: usize) -> Result<(usize, usize, usize)> {
        super::image_len(channels, height, width)?;
        let Some(c) = self.crop else { return Ok((channels, height, width)) };
        let padded = |v: usize| v.checked_add(c.padding.checked_mul(2)?);
        let (ph, pw) = match (padded(height), padded(width)) {
            (Some(h), Some(w)) => (h, w),
            _ => return Err(DataError::Invalid { what: "crop padding", reason: format!("{} overflows", c.padding) }),
        };
        if c.height == 0 || c.width == 0 || c.height > ph || c.width > pw {
            return Err(DataError::Invalid {
                what: "crop size",
                reason: format!(
                    "{}×{} does not fit a {height}×{width} image padded by {} ({ph}×{pw}), or is empty",
                    c.height, c.width, c.padding
                ),
            });
        }
        // The output image's size must fit too (a huge padding allows a huge crop).
        super::image_len(channels, c.height, c.width)?;
        Ok((channels, c.height, c.width))
    }

    /// Draws the window for one `height × width` image (see the module docs
    /// for the exact draws). Call [`Augment::output_shape`] first: a crop that
    /// does not fit is clamped here, never a panic.
    pub fn window(&self, height: usize, width: usize, rng: &mut Rng) -> Window {
        let (top, left) = match self.crop {
            None => (0, 0),
            Some(c) => {
                let span_h = height.saturating_add(c.padding.saturating_mul(2)).saturating_sub(c.height);
                let span_w = width.saturating_add(c.padding.saturating_mul(2)).saturating_sub(c.width);
                match c.mode {
                    CropMode::Random => {
                        let top = rng.below_usize(span_h.saturating_add(1));
                        (top, rng.below_usize(span_w.saturating_add(1)))
                    }
                    CropMode::Center => (span_h / 2, span_w / 2),
                }
            }
        };
        let flip = self.hflip && rng.coin();
        Window { top, left, flip }
    }

    /// Writes images `indices` of `ds`, augmented, into `out` as f32 NCHW
    /// normalised to [−1, 1]; `out.len()` must be
    /// `indices.len() · channels · out_height · out_width`
    /// ([`Augment::output_shape`]). Draws from `rng` image by image in
    /// batch order.
    pub fn write_batch(&self, ds: &Dataset, indices: &[usize], rng: &mut Rng, out: &mut [f32]) -> Result<()> {
        let il = ds.check_shape()?;
        let (ch, oh, ow) = self.output_shape(ds.channels, ds.height, ds.width)?;
        let ol = ch * oh * ow; // checked by output_shape
        let need = ol.checked_mul(indices.len()).ok_or_else(|| DataError::Invalid {
            what: "batch",
            reason: format!("{} images of {ol} values overflow usize", indices.len()),
        })?;
        check_len("augmented batch output", need, out.len())?;
        let (h, w) = (ds.height, ds.width);
        let pad = self.crop.map_or(0, |c| c.padding);
        for (&i, dst) in indices.iter().zip(out.chunks_exact_mut(ol)) {
            if i >= ds.n {
                return Err(DataError::IndexOutOfRange { index: i, n: ds.n });
            }
            let src = &ds.images[i * il..(i + 1) * il];
            let win = self.window(h, w, rng);
            for (plane, dplane) in src.chunks_exact(h * w).zip(dst.chunks_exact_mut(oh * ow)) {
                for (y, drow) in dplane.chunks_exact_mut(ow).enumerate() {
                    // Row in the unpadded image, if inside it.
                    let sy = (win.top + y).checked_sub(pad).filter(|&r| r < h);
                    let Some(sy) = sy else {
                        drow.fill(NORM[0]);
                        continue;
                    };
                    let srow = &plane[sy * w..(sy + 1) * w];
                    for (x, d) in drow.iter_mut().enumerate() {
                        let xp = if win.flip { ow - 1 - x } else { x };
                        *d = match (win.left + xp).checked_sub(pad).and_then(|c| srow.get(c)) {
                            Some(&v) => NORM[usize::from(v)],
                            None => NORM[0],
                        };
                    }
                }
            }
        }
        Ok(())
    }
}
