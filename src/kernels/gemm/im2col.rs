//! The B of a convolution's GEMM read straight from the images: packing
//! builds the im2col matrix's panels from the input, so the matrix itself
//! is never written (nor read back). Inference uses it; training keeps its
//! columns, which the backward pass needs.

use super::pack::BSource;
use crate::error::{Error, Result};

/// A convolution's geometry, as the packer needs it (stride and padding the
/// same along both axes, as in every layer of this crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub channels: usize,
    /// Input height and width.
    pub in_hw: (usize, usize),
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Stride.
    pub stride: usize,
    /// Zero padding on every side.
    pub padding: usize,
    /// Output height and width.
    pub out_hw: (usize, usize),
}

/// The im2col matrix of `images` whole NCHW images: row `(ci, ki, kj)`
/// (`ci·kh·kw + ki·kw + kj`), column `(image, oh, ow)`
/// (`image·out_h·out_w + oh·out_w + ow`), the value
/// `x[image, ci, oh·stride + ki − pad, ow·stride + kj − pad]` or zero in the
/// padding: exactly what `kernels::conv`'s `im2col` writes.
#[derive(Clone, Copy, Debug)]
pub struct Im2colB<'a> {
    x: &'a [f32],
    g: ConvGeom,
    images: usize,
}

impl<'a> Im2colB<'a> {
    /// Checks the geometry (the output size follows from the input, kernel,
    /// stride and padding) and that `x` holds `images` whole images.
    pub fn new(x: &'a [f32], g: ConvGeom, images: usize) -> Result<Self> {
        let what = "im2col operand";
        let ((h, w), (kh, kw), (oh, ow)) = (g.in_hw, g.kernel, g.out_hw);
        let out = |size: usize, k: usize| {
            let span = g.padding.checked_mul(2).and_then(|p| p.checked_add(size))?.checked_sub(k)?;
            span.checked_div(g.stride).map(|s| s + 1)
        };
        if g.channels == 0 || kh == 0 || kw == 0 || out(h, kh) != Some(oh) || out(w, kw) != Some(ow) {
            return Err(Error::InvalidShape { what, reason: "the output size does not follow from the geometry" });
        }
        let len = [images, g.channels, h, w].iter().try_fold(1usize, |a, &b| a.checked_mul(b));
        match len {
            Some(len) if len == x.len() => Ok(Self { x, g, images }),
            Some(_) => Err(Error::InvalidShape { what, reason: "input length is not images·C·H·W" }),
            None => Err(Error::Overflow { what }),
        }
    }
}

impl BSource<f32> for Im2colB<'_> {
    #[inline]
    fn rows(&self) -> usize {
        self.g.channels * self.g.kernel.0 * self.g.kernel.1
    }

    #[inline]
    fn cols(&self) -> usize {
        self.images * self.g.out_hw.0 * self.g.out_hw.1
    }

    /// Row by row of the block (one kernel tap over one channel), each row
    /// walked in runs of one output row of one image; positions advance by
    /// counting, with no division inside the row. A run inside one panel
    /// (always, when the output width divides `NR`) is written as a slice:
    /// zeros left and right of the columns that read the input, a strided
    /// copy between.
    fn pack<const NR: usize>(&self, pc: usize, kc: usize, jc: usize, nc: usize, bpack: &mut [f32]) {
        let g = &self.g;
        let ((h, w), (kh, kw), (oh_n, ow_n)) = (g.in_hw, g.kernel, g.out_hw);
        let (ohw, in_hw, st) = (oh_n * ow_n, h * w, g.stride);
        let lanes = nc.div_ceil(NR) * NR;
        let panel = kc * NR;
        let (img0, pos0) = (jc / ohw, jc % ohw);
        let (oh0, ow00) = (pos0 / ow_n, pos0 % ow_n);
        for p in 0..kc {
            let row = pc + p;
            let (ci, tap) = (row / (kh * kw), row % (kh * kw));
            let (ki, kj) = (tap / kw, tap % kw);
            // Output columns `lo..hi` of every row read the input (column
            // ow reads iw = ow·stride + kj − pad), the rest is padding.
            let reads = |ow: usize| (ow * st + kj).wrapping_sub(g.padding) < w;
            let lo = (0..ow_n).find(|&o| reads(o)).unwrap_or(ow_n);
            let hi = (lo..ow_n).rev().find(|&o| reads(o)).map_or(lo, |o| o + 1);
            let dst = &mut bpack[p * NR..];
            let (mut img, mut oh, mut ow0, mut c) = (img0, oh0, ow00, 0);
            while c < nc {
                let run = (ow_n - ow0).min(nc - c);
                let ih = (oh * st + ki).wrapping_sub(g.padding);
                let (q, lane) = (c / NR, c % NR);
                if ih >= h {
                    for cc in c..c + run {
                        dst[(cc / NR) * panel + cc % NR] = 0.0;
                    }
                } else {
                    let start = (img * g.channels + ci) * in_hw + ih * w;
                    let src = &self.x[start..start + w];
                    if lane + run <= NR {
                        let out = &mut dst[q * panel + lane..q * panel + lane + run];
                        // This run covers output columns ow0..ow0 + run.
                        let (a, b) = (lo.clamp(ow0, ow0 + run) - ow0, hi.clamp(ow0, ow0 + run) - ow0);
                        out[..a].fill(0.0);
                        out[b..].fill(0.0);
                        if a < b {
                            let iw = (ow0 + a) * st + kj - g.padding;
                            let body = &mut out[a..b];
                            if st == 1 {
                                body.copy_from_slice(&src[iw..iw + body.len()]);
                            } else if st == 2 {
                                // Every other input: whole pairs, then the
                                // last element (its pair may end the row).
                                let n = body.len();
                                let (head, last) = body.split_at_mut(n - 1);
                                for (o, pair) in head.iter_mut().zip(src[iw..iw + 2 * (n - 1)].chunks_exact(2)) {
                                    *o = pair[0];
                                }
                                last[0] = src[iw + 2 * (n - 1)];
                            } else {
                                let n = body.len();
                                let s = &src[iw..iw + (n - 1) * st + 1];
                                for (t, o) in body.iter_mut().enumerate() {
                                    *o = s[t * st];
                                }
                            }
                        }
                    } else {
                        let mut iw = (ow0 * st + kj).wrapping_sub(g.padding);
                        for cc in c..c + run {
                            dst[(cc / NR) * panel + cc % NR] = if iw < w { src[iw] } else { 0.0 };
                            iw = iw.wrapping_add(st);
                        }
                    }
                }
                c += run;
                ow0 = 0;
                oh += 1;
                if oh == oh_n {
                    (oh, img) = (0, img + 1);
                }
            }
            for cc in nc..lanes {
                dst[(cc / NR) * panel + cc % NR] = 0.0;
            }
        }
    }
}
