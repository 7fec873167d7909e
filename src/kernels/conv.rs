//! 2-d convolution in NCHW via im2col + GEMM, with an im2col-free path for
//! pointwise (1×1, stride 1, no padding) convolutions.
//!
//! Weights are PyTorch OIHW: `w[co][ci][kh][kw]`. The column matrix has one
//! row per (ci, kh, kw) and one column per output pixel, so `y_n = W · cols_n`
//! lands directly in NCHW. The serial functions here take caller scratch and
//! never allocate; `kernels::par` runs the same pieces across the batch.

use super::Float;
use super::gemm::{MatMut, MatRef, gemm};
use crate::error::{Error, Result, check_len, checked_product};

/// Checks that each named field of a shape is positive; the error names it
/// `"<op> <field>"` (e.g. "conv2d in_h"). Every kernel's shape starts so.
macro_rules! check_fields_nonzero {
    ($op:literal, $shape:expr; $($field:ident),+ $(,)?) => {
        $(crate::error::check_nonzero(concat!($op, " ", stringify!($field)), $shape.$field)?;)+
    };
}
pub(crate) use check_fields_nonzero;

/// Positions of a `window` sliding by `stride` over an input of `size`
/// (rows, columns), floor mode: `(size − window)/stride + 1` per axis;
/// `None` when the window is larger than the input.
pub(crate) fn window_positions(size: (usize, usize), window: (usize, usize), stride: usize) -> Option<(usize, usize)> {
    if window.0 > size.0 || window.1 > size.1 {
        return None;
    }
    Some(((size.0 - window.0) / stride + 1, (size.1 - window.1) / stride + 1))
}

/// Shape of one conv2d call. Stride and padding apply to both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images in the batch (N).
    pub batch: usize,
    /// Input channels (C_in).
    pub in_channels: usize,
    /// Input height.
    pub in_h: usize,
    /// Input width.
    pub in_w: usize,
    /// Output channels (C_out).
    pub out_channels: usize,
    /// Kernel height.
    pub kernel_h: usize,
    /// Kernel width.
    pub kernel_w: usize,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding (both axes).
    pub padding: usize,
}

impl Conv2dShape {
    /// A square-kernel shape.
    pub fn new(
        batch: usize,
        in_channels: usize,
        in_hw: (usize, usize),
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        Self {
            batch,
            in_channels,
            in_h: in_hw.0,
            in_w: in_hw.1,
            out_channels,
            kernel_h: kernel,
            kernel_w: kernel,
            stride,
            padding,
        }
    }

    /// Checks the shape and derives the output size: `floor((W − k + 2p)/s) + 1`.
    pub fn validate(&self) -> Result<ConvDims> {
        check_fields_nonzero!("conv2d", self; batch, in_channels, in_h, in_w, out_channels, kernel_h, kernel_w, stride);
        let pad2 = self.padding.checked_mul(2).ok_or(Error::Overflow { what: "conv2d padding" })?;
        let ph = self.in_h.checked_add(pad2).ok_or(Error::Overflow { what: "conv2d in_h" })?;
        let pw = self.in_w.checked_add(pad2).ok_or(Error::Overflow { what: "conv2d in_w" })?;
        let (out_h, out_w) = window_positions((ph, pw), (self.kernel_h, self.kernel_w), self.stride)
            .ok_or(Error::InvalidShape { what: "conv2d", reason: "kernel is larger than the padded input" })?;
        let col_rows = checked_product("conv2d columns", &[self.in_channels, self.kernel_h, self.kernel_w])?;
        let out_hw = checked_product("conv2d output", &[out_h, out_w])?;
        let in_hw = checked_product("conv2d input", &[self.in_h, self.in_w])?;
        let in_len = checked_product("conv2d input", &[self.batch, self.in_channels, in_hw])?;
        let out_len = checked_product("conv2d output", &[self.batch, self.out_channels, out_hw])?;
        let weight_len = checked_product("conv2d weight", &[self.out_channels, col_rows])?;
        let col_len = checked_product("conv2d columns", &[col_rows, out_hw])?;
        let batched_col_len = checked_product("conv2d columns", &[col_len, self.batch])?;
        Ok(ConvDims {
            out_h,
            out_w,
            in_hw,
            out_hw,
            col_rows,
            in_len,
            out_len,
            weight_len,
            col_len,
            batched_col_len,
            pointwise: self.kernel_h == 1 && self.kernel_w == 1 && self.stride == 1 && self.padding == 0,
        })
    }

    /// Scratch elements needed by [`conv2d_forward`] (0 for pointwise convs).
    pub fn forward_scratch_len(&self) -> Result<usize> {
        let d = self.validate()?;
        Ok(if d.pointwise { 0 } else { d.col_len })
    }

    /// Scratch elements needed by [`conv2d_backward`].
    pub fn backward_scratch_len(&self) -> Result<usize> {
        let d = self.validate()?;
        if d.pointwise { Ok(0) } else { d.col_len.checked_mul(2).ok_or(Error::Overflow { what: "conv2d scratch" }) }
    }
}

/// Sizes derived from a validated [`Conv2dShape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    /// Output height.
    pub out_h: usize,
    /// Output width.
    pub out_w: usize,
    /// Input pixels per channel.
    pub in_hw: usize,
    /// Output pixels per channel.
    pub out_hw: usize,
    /// Rows of the column matrix: C_in · k_h · k_w.
    pub col_rows: usize,
    /// Input length N·C_in·H·W.
    pub in_len: usize,
    /// Output length N·C_out·H_out·W_out.
    pub out_len: usize,
    /// Weight length C_out·C_in·k_h·k_w.
    pub weight_len: usize,
    /// One image's column matrix.
    pub col_len: usize,
    /// The whole batch's column matrix.
    pub batched_col_len: usize,
    /// 1×1, stride 1, no padding: no im2col needed.
    pub pointwise: bool,
}

/// Calls `f(plane, ki, kj, start)` for every column row (ci, ki, kj) in
/// order and, within it, every image of `images`: `plane` is where that
/// image's input channel `ci` starts, `start` where its run of `out_hw`
/// columns starts (rows `ld` apart, the first image's at `col0`). The one
/// order [`im2col`] and [`col2im_add`] both follow.
#[inline(always)]
fn for_each_col_run(
    s: &Conv2dShape,
    d: &ConvDims,
    images: usize,
    ld: usize,
    col0: usize,
    mut f: impl FnMut(usize, usize, usize, usize),
) {
    let (kh, kw) = (s.kernel_h, s.kernel_w);
    let in_img = s.in_channels * d.in_hw;
    for ci in 0..s.in_channels {
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (ci * kh + ki) * kw + kj;
                for j in 0..images {
                    f(j * in_img + ci * d.in_hw, ki, kj, row * ld + col0 + j * d.out_hw);
                }
            }
        }
    }
}

/// The output positions `lo..hi` (of `out`) whose kernel tap `k` reads
/// inside the input of `size`: position `o` reads input `o·stride + k − pad`,
/// so the ones before `lo` and from `hi` on fall in the zero padding.
/// Bounds rather than a per-element test keep the stride-1 copy a plain
/// loop. Found by stepping in from both ends, not by dividing by the stride:
/// padded positions are few (about pad/stride a side), and two divisions
/// per column row cost more than the copy on the small maps of the edge
/// encoder. Never more than `out` steps in all.
#[inline(always)]
fn tap_range(k: usize, stride: usize, pad: usize, size: usize, out: usize) -> (usize, usize) {
    let reads = |o: usize| (o * stride + k).wrapping_sub(pad) < size;
    let mut lo = 0;
    while lo < out && !reads(lo) {
        lo += 1;
    }
    let mut hi = out;
    while hi > lo && !reads(hi - 1) {
        hi -= 1;
    }
    (lo, hi)
}

/// Writes the columns of consecutive images: `x_imgs` holds whole images,
/// image `j`'s columns start at `col0 + j·out_hw` in rows `ld` apart. With
/// one image, `ld = out_hw` and `col0 = 0` this is the per-image layout.
/// Row by row: each column row is written front to back across the images,
/// and the images' planes of one channel are reread from cache for its
/// `k·k` rows.
pub(crate) fn im2col<T: Float>(s: &Conv2dShape, d: &ConvDims, x_imgs: &[T], cols: &mut [T], ld: usize, col0: usize) {
    let images = x_imgs.len() / (s.in_channels * d.in_hw);
    for_each_col_run(s, d, images, ld, col0, |plane, ki, kj, start| {
        let plane = &x_imgs[plane..plane + d.in_hw];
        im2col_row(s, d, plane, ki, kj, &mut cols[start..start + d.out_hw]);
    });
}

/// One column row: kernel tap `(ki, kj)` over one input plane.
#[inline(always)]
pub(crate) fn im2col_row<T: Float>(s: &Conv2dShape, d: &ConvDims, plane: &[T], ki: usize, kj: usize, dst: &mut [T]) {
    let (st, pad) = (s.stride, s.padding);
    let (rows_lo, rows_hi) = tap_range(ki, st, pad, s.in_h, d.out_h);
    let (lo, hi) = tap_range(kj, st, pad, s.in_w, d.out_w);
    if lo == hi {
        dst.fill(T::ZERO);
        return;
    }
    dst[..rows_lo * d.out_w].fill(T::ZERO);
    dst[rows_hi * d.out_w..].fill(T::ZERO);
    let iw0 = lo * st + kj - pad;
    for oh in rows_lo..rows_hi {
        let out_row = &mut dst[oh * d.out_w..(oh + 1) * d.out_w];
        let ih = oh * st + ki - pad;
        let src = &plane[ih * s.in_w..(ih + 1) * s.in_w];
        if st == 1 {
            out_row[..lo].fill(T::ZERO);
            out_row[lo..hi].copy_from_slice(&src[iw0..iw0 + (hi - lo)]);
            out_row[hi..].fill(T::ZERO);
        } else {
            // Strided rows are short (a map of 14 gives 7): one select per
            // element predicts better than three runs of varying length.
            for (ow, v) in out_row.iter_mut().enumerate() {
                let iw = (ow * st + kj).wrapping_sub(pad);
                *v = if iw < s.in_w { src[iw] } else { T::ZERO };
            }
        }
    }
}

/// Adds the columns of consecutive images back onto their input gradients
/// (the adjoint of [`im2col`]): `dx_imgs` holds whole images, image `j`'s
/// columns start at `col0 + j·out_hw`. Channel by channel across the
/// images, so each column row is read as one run and the images' planes of
/// that channel stay in cache; every input element receives its additions
/// in the same (kernel row, kernel column) order for any image count.
pub(crate) fn col2im_add<T: Float>(
    s: &Conv2dShape,
    d: &ConvDims,
    cols: &[T],
    ld: usize,
    col0: usize,
    dx_imgs: &mut [T],
) {
    let (st, pad) = (s.stride, s.padding);
    let images = dx_imgs.len() / (s.in_channels * d.in_hw);
    for_each_col_run(s, d, images, ld, col0, |plane, ki, kj, start| {
        let plane = &mut dx_imgs[plane..plane + d.in_hw];
        let src = &cols[start..start + d.out_hw];
        let (rows_lo, rows_hi) = tap_range(ki, st, pad, s.in_h, d.out_h);
        let (lo, hi) = tap_range(kj, st, pad, s.in_w, d.out_w);
        if lo == hi {
            return;
        }
        let iw0 = lo * st + kj - pad;
        for oh in rows_lo..rows_hi {
            let ih = oh * st + ki - pad;
            let dst = &mut plane[ih * s.in_w..(ih + 1) * s.in_w];
            let run = &src[oh * d.out_w + lo..oh * d.out_w + hi];
            for (x, &v) in dst[iw0..].iter_mut().step_by(st).zip(run) {
                *x += v;
            }
        }
    });
}

/// Checks all slice lengths of a conv call against its shape.
pub(crate) fn check_conv_args<T>(
    d: &ConvDims,
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y_len: usize,
) -> Result<()> {
    check_len("conv2d input", d.in_len, x.len())?;
    check_len("conv2d weight", d.weight_len, w.len())?;
    if let Some(b) = bias {
        check_len("conv2d bias", s.out_channels, b.len())?;
    }
    check_len("conv2d output", d.out_len, y_len)
}

/// Adds `bias[co]` to every pixel of output channel `co` of one image.
pub(crate) fn add_bias<T: Float>(y_img: &mut [T], bias: &[T], out_hw: usize) {
    for (plane, &b) in y_img.chunks_exact_mut(out_hw).zip(bias) {
        for v in plane {
            *v += b;
        }
    }
}

/// Input gradient for one image: `dx_img = col2im(Wᵀ · dy_img)`.
pub(crate) fn backward_data_image<T: Float>(
    s: &Conv2dShape,
    d: &ConvDims,
    w: &[T],
    dy_img: &[T],
    dx_img: &mut [T],
    dcols: &mut [T],
) -> Result<()> {
    let wt = MatRef::row_major(w, s.out_channels, d.col_rows)?.t();
    let dym = MatRef::row_major(dy_img, s.out_channels, d.out_hw)?;
    if d.pointwise {
        gemm(MatMut::row_major(dx_img, s.in_channels, d.in_hw)?, wt, dym, false)
    } else {
        gemm(MatMut::row_major(&mut dcols[..d.col_len], d.col_rows, d.out_hw)?, wt, dym, false)?;
        dx_img.fill(T::ZERO);
        col2im_add(s, d, dcols, d.out_hw, 0, dx_img);
        Ok(())
    }
}

/// A convolution's learned tensors: OIHW weights and an optional bias.
#[derive(Debug)]
pub struct ConvParams<'a, T> {
    /// `[C_out, C_in, k_h, k_w]`.
    pub w: &'a [T],
    /// `[C_out]`.
    pub bias: Option<&'a [T]>,
}

// By hand: a derive would ask `T: Copy` of the element type.
impl<T> Clone for ConvParams<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ConvParams<'_, T> {}

/// What a conv forward writes: the output and the im2col columns (caller
/// scratch for the serial kernel; kept for the backward pass by the
/// multicore one).
#[derive(Debug)]
pub struct ConvOut<'a, T> {
    /// NCHW output.
    pub y: &'a mut [T],
    /// Column buffer.
    pub cols: &'a mut [T],
}

/// What a conv backward pass writes: `dx` (if asked for), and the
/// accumulated `dw` and `db` (if the layer has a bias).
#[derive(Debug)]
pub struct ConvGrads<'a, T> {
    /// Input gradient, overwritten.
    pub dx: Option<&'a mut [T]>,
    /// Weight gradient, accumulated.
    pub dw: &'a mut [T],
    /// Bias gradient, accumulated.
    pub db: Option<&'a mut [T]>,
}

/// Conv2d forward over the batch, serially; `out.cols` is scratch of
/// [`Conv2dShape::forward_scratch_len`] elements. No allocation.
pub fn conv2d_forward<T: Float>(s: &Conv2dShape, x: &[T], p: ConvParams<'_, T>, out: ConvOut<'_, T>) -> Result<()> {
    let (ConvParams { w, bias }, ConvOut { y, cols: scratch }) = (p, out);
    let d = s.validate()?;
    check_conv_args(&d, s, x, w, bias, y.len())?;
    check_len("conv2d forward scratch", s.forward_scratch_len()?, scratch.len())?;
    let in_img = s.in_channels * d.in_hw;
    let out_img = s.out_channels * d.out_hw;
    let wm = MatRef::row_major(w, s.out_channels, d.col_rows)?;
    // Image by image: `y_img = W · cols(x_img) (+ bias)`.
    for (x_img, y_img) in x.chunks_exact(in_img).zip(y.chunks_exact_mut(out_img)) {
        let ym = MatMut::row_major(&mut *y_img, s.out_channels, d.out_hw)?;
        if d.pointwise {
            gemm(ym, wm, MatRef::row_major(x_img, s.in_channels, d.in_hw)?, false)?;
        } else {
            im2col(s, &d, x_img, scratch, d.out_hw, 0);
            gemm(ym, wm, MatRef::row_major(&scratch[..d.col_len], d.col_rows, d.out_hw)?, false)?;
        }
        if let Some(b) = bias {
            add_bias(y_img, b, d.out_hw);
        }
    }
    Ok(())
}

/// Conv2d backward over the batch, serially. Writes `dx` (if given) and
/// accumulates into `dw` and `db` (if given). Scratch:
/// [`Conv2dShape::backward_scratch_len`] elements. No allocation.
pub fn conv2d_backward<T: Float>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    g: ConvGrads<'_, T>,
    scratch: &mut [T],
) -> Result<()> {
    let ConvGrads { mut dx, dw, db } = g;
    let d = s.validate()?;
    check_conv_args(&d, s, x, w, None, dy.len())?;
    if let Some(dx) = dx.as_deref() {
        check_len("conv2d input gradient", d.in_len, dx.len())?;
    }
    check_len("conv2d weight gradient", d.weight_len, dw.len())?;
    check_len("conv2d backward scratch", s.backward_scratch_len()?, scratch.len())?;
    let in_img = s.in_channels * d.in_hw;
    let out_img = s.out_channels * d.out_hw;
    if let Some(db) = db {
        check_len("conv2d bias gradient", s.out_channels, db.len())?;
        for dy_img in dy.chunks_exact(out_img) {
            for (g, plane) in db.iter_mut().zip(dy_img.chunks_exact(d.out_hw)) {
                *g += plane.iter().copied().sum::<T>();
            }
        }
    }
    let (cols, dcols) = scratch.split_at_mut(scratch.len() / 2);
    for (n, (x_img, dy_img)) in x.chunks_exact(in_img).zip(dy.chunks_exact(out_img)).enumerate() {
        let dym = MatRef::row_major(dy_img, s.out_channels, d.out_hw)?;
        let dwm = MatMut::row_major(&mut *dw, s.out_channels, d.col_rows)?;
        if d.pointwise {
            gemm(dwm, dym, MatRef::row_major(x_img, s.in_channels, d.in_hw)?.t(), true)?;
        } else {
            im2col(s, &d, x_img, cols, d.out_hw, 0);
            gemm(dwm, dym, MatRef::row_major(&cols[..], d.col_rows, d.out_hw)?.t(), true)?;
        }
        if let Some(dx) = dx.as_deref_mut() {
            backward_data_image(s, &d, w, dy_img, &mut dx[n * in_img..(n + 1) * in_img], dcols)?;
        }
    }
    Ok(())
}
