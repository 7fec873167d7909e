//! Per-image geometry and colour, on `u8` NCHW planes: grayscale ↔ RGB,
//! resizing to cover a target size, centre crops. Image folders fit every
//! decoded image with these; `--resize` and evaluation crops apply them to
//! any dataset.
//!
//! - RGB → gray is PIL's `convert("L")` (what torchvision's `Grayscale`
//!   calls), in integers: `(19595·R + 38470·G + 7471·B + 2^15) >> 16`.
//!   Gray → RGB repeats the plane.
//! - Resizing scales the image so that it covers the target (the larger of
//!   the two ratios, as torchvision's `Resize(int)` does on the shorter
//!   side), with the `image` crate's antialiased bilinear filter
//!   (`FilterType::Triangle`), then cuts the target from the centre. An
//!   image already of the target size is passed through untouched, so a
//!   lossless file gives exactly the bytes it holds.

use ::image::{GrayImage, imageops};
use rayon::prelude::*;

use super::{DataError, Dataset, Result, image_len};

/// PIL's luma of one RGB pixel (`ITU-R 601-2`, integer form).
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19595 * u32::from(r) + 38470 * u32::from(g) + 7471 * u32::from(b) + 0x8000) >> 16) as u8
}

/// `planes` (`from` channels of `len` pixels) as `to` channels: 1 → 3
/// repeats, 3 → 1 takes [`luma`], equal counts copy.
pub fn convert_channels(planes: &[u8], from: usize, to: usize, len: usize, out: &mut [u8]) -> Result<()> {
    match (from, to) {
        (a, b) if a == b => out.copy_from_slice(planes),
        (1, 3) => {
            for o in out.chunks_exact_mut(len) {
                o.copy_from_slice(planes);
            }
        }
        (3, 1) => {
            let (r, rest) = planes.split_at(len);
            let (g, b) = rest.split_at(len);
            for (i, o) in out.iter_mut().enumerate() {
                *o = luma(r[i], g[i], b[i]);
            }
        }
        _ => {
            return Err(DataError::Invalid {
                what: "channels",
                reason: format!("cannot convert {from}-channel images to {to} channels (1 ↔ 3 only)"),
            });
        }
    }
    Ok(())
}

/// The size an `h × w` image is resized to so that it covers `th × tw`
/// with its aspect ratio kept (the crop then cuts the rest).
pub fn cover_size(h: usize, w: usize, th: usize, tw: usize) -> (usize, usize) {
    let s = (th as f64 / h as f64).max(tw as f64 / w as f64);
    let nh = ((h as f64 * s).round() as usize).max(th);
    let nw = ((w as f64 * s).round() as usize).max(tw);
    (nh, nw)
}

/// Fits `c` planes of `h × w` to `th × tw`: resized to cover
/// ([`cover_size`]) unless already that size, then centre-cropped; written
/// into `out` (`c · th · tw` bytes).
pub fn fit(planes: &[u8], c: usize, (h, w): (usize, usize), (th, tw): (usize, usize), out: &mut [u8]) {
    if (h, w) == (th, tw) {
        out.copy_from_slice(planes);
        return;
    }
    let (nh, nw) = cover_size(h, w, th, tw);
    let (top, left) = ((nh - th) / 2, (nw - tw) / 2);
    for (src, dst) in planes.chunks_exact(h * w).take(c).zip(out.chunks_exact_mut(th * tw)) {
        let resized;
        let (plane, pw): (&[u8], usize) = if (nh, nw) == (h, w) {
            (src, w)
        } else {
            // Sizes come from images already decoded within the decoder's
            // limits, so they fit in u32.
            let img = GrayImage::from_raw(w as u32, h as u32, src.to_vec()).unwrap_or_default();
            resized = imageops::resize(&img, nw as u32, nh as u32, imageops::FilterType::Triangle).into_raw();
            (&resized, nw)
        };
        for (y, row) in dst.chunks_exact_mut(tw).enumerate() {
            let start = (top + y) * pw + left;
            row.copy_from_slice(&plane[start..start + tw]);
        }
    }
}

/// Centre crop of `c` planes `h × w` to `th × tw` (rounded towards the top
/// left, as [`super::Crop::center`]).
pub fn center_crop(planes: &[u8], c: usize, (h, w): (usize, usize), (th, tw): (usize, usize), out: &mut [u8]) {
    let (top, left) = ((h - th) / 2, (w - tw) / 2);
    for (src, dst) in planes.chunks_exact(h * w).take(c).zip(out.chunks_exact_mut(th * tw)) {
        for (y, row) in dst.chunks_exact_mut(tw).enumerate() {
            let start = (top + y) * w + left;
            row.copy_from_slice(&src[start..start + tw]);
        }
    }
}

impl Dataset {
    /// Every image through `f(src, dst)`, into a new dataset of
    /// `channels × height × width` images (same labels), in parallel.
    fn map_images(
        &self,
        (channels, height, width): (usize, usize, usize),
        f: impl Fn(&[u8], &mut [u8]) -> Result<()> + Sync,
    ) -> Result<Dataset> {
        let il = self.check_shape()?;
        let ol = image_len(channels, height, width)?;
        let total = ol.checked_mul(self.n).ok_or_else(|| DataError::Invalid {
            what: "dataset shape",
            reason: format!("{} images of {ol} bytes overflow usize", self.n),
        })?;
        let mut images = Vec::new();
        images.try_reserve_exact(total).map_err(|_| DataError::Invalid {
            what: "images",
            reason: format!("cannot allocate {total} bytes for {} images of {channels}×{height}×{width}", self.n),
        })?;
        images.resize(total, 0);
        images.par_chunks_mut(ol).zip(self.images.par_chunks(il)).try_for_each(|(dst, src)| f(src, dst))?;
        Dataset::new(images, self.labels.clone(), channels, height, width, self.classes)
    }

    /// The same images with `channels` channels (1 ↔ 3, see [`convert_channels`]).
    pub fn with_channels(&self, channels: usize) -> Result<Dataset> {
        if channels == self.channels {
            return Ok(self.clone());
        }
        let (from, len) = (self.channels, self.height * self.width);
        self.map_images((channels, self.height, self.width), |s, d| convert_channels(s, from, channels, len, d))
    }

    /// The images resized to cover `height × width` and centre-cropped to it
    /// ([`fit`]).
    pub fn fitted(&self, height: usize, width: usize) -> Result<Dataset> {
        if (height, width) == (self.height, self.width) {
            return Ok(self.clone());
        }
        let (c, h, w) = (self.channels, self.height, self.width);
        self.map_images((c, height, width), |s, d| {
            fit(s, c, (h, w), (height, width), d);
            Ok(())
        })
    }

    /// The centre `height × width` of every image; larger than the images
    /// is an error.
    pub fn center_cropped(&self, height: usize, width: usize) -> Result<Dataset> {
        if height > self.height || width > self.width {
            return Err(DataError::Invalid {
                what: "crop",
                reason: format!("{height}×{width} is larger than the {}×{} images", self.height, self.width),
            });
        }
        let (c, h, w) = (self.channels, self.height, self.width);
        self.map_images((c, height, width), |s, d| {
            center_crop(s, c, (h, w), (height, width), d);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil_on_its_own_examples() {
        // PIL: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)).
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(128, 128, 128), 128);
    }

    #[test]
    fn center_crop_rounds_to_the_top_left() {
        // 1 channel 3×4: values = index; centre 2×2 from (0, 1).
        let src: Vec<u8> = (0..12).collect();
        let mut out = [0u8; 4];
        center_crop(&src, 1, (3, 4), (2, 2), &mut out);
        assert_eq!(out, [1, 2, 5, 6]);
    }

    #[test]
    fn fit_of_a_constant_image_is_constant_and_same_size_is_identity() {
        let src = vec![77u8; 3 * 10 * 15];
        let mut out = vec![0u8; 3 * 6 * 6];
        fit(&src, 3, (10, 15), (6, 6), &mut out);
        assert!(out.iter().all(|&v| v == 77));
        assert_eq!(cover_size(10, 15, 6, 6), (6, 9));
        let src: Vec<u8> = (0..36).collect();
        let mut same = vec![0u8; 36];
        fit(&src, 1, (6, 6), (6, 6), &mut same);
        assert_eq!(same, src);
    }
}
