//! 2-d convolution over NCHW, PyTorch's `nn.Conv2d` layout (OIHW weights).

use super::{Ctx, Linear, ParamId, ops, two_mut};
use crate::error::Result;
use crate::kernels::{Conv2dShape, ConvGrads, ConvOut, ConvParams, Float};

/// A convolution: `weight` `[out, in, k, k]`, optional `bias` `[out]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    /// Input `[c, h, w]` per image.
    pub in_shape: [usize; 3],
    /// Output channels.
    pub out_c: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding.
    pub padding: usize,
    /// `[out, in, k, k]`.
    pub w: ParamId,
    /// `[out]`, if the layer has a bias.
    pub b: Option<ParamId>,
}

impl Conv2d {
    /// The kernel shape for `n` images.
    pub fn shape(&self, n: usize) -> Conv2dShape {
        let [c, h, w] = self.in_shape;
        Conv2dShape::new(n, c, (h, w), self.out_c, self.kernel, self.stride, self.padding)
    }

    /// Output `[c, h, w]` per image.
    pub fn out_shape(&self) -> [usize; 3] {
        let [_, h, w] = self.in_shape;
        let side = |s: usize| (s + 2 * self.padding - self.kernel) / self.stride + 1;
        [self.out_c, side(h), side(w)]
    }

    /// A 1×1 conv over a 1×1 map is a linear layer over rows: the same
    /// tensors (OIHW `[out, in, 1, 1]` is `[out, in]`), run as one.
    pub fn as_linear(&self) -> Option<Linear> {
        let unit = self.kernel == 1 && self.stride == 1 && self.padding == 0;
        (unit && self.in_shape[1] == 1 && self.in_shape[2] == 1).then_some(Linear {
            in_f: self.in_shape[0],
            out_f: self.out_c,
            w: self.w,
            b: self.b,
        })
    }

    /// `y = conv(x) (+ b)` for `n` images; `cols` (the shape's
    /// `batched_col_len`) keeps the im2col columns for [`Conv2d::backward`].
    pub fn forward<T: Float>(&self, ctx: &Ctx<'_, T>, n: usize, x: &[T], y: &mut [T], cols: &mut [T]) -> Result<()> {
        let b = self.b.map(|b| b.of(ctx.params)).transpose()?;
        ops::conv2d_forward(&self.shape(n), x, ConvParams { w: self.w.of(ctx.params)?, bias: b }, ConvOut { y, cols })
    }

    /// Accumulates `dW` (and `db`) into `ctx.grads` and writes `dx` if given,
    /// from the columns [`Conv2d::forward`] left in `cols`.
    pub fn backward<T: Float>(
        &self,
        ctx: &mut Ctx<'_, T>,
        n: usize,
        x: &[T],
        cols: &mut [T],
        dy: &[T],
        dx: Option<&mut [T]>,
    ) -> Result<()> {
        let w = self.w.of(ctx.params)?;
        let s = self.shape(n);
        let g = match self.b {
            Some(b) => {
                let (dw, db) = two_mut(ctx.grads, self.w.range(), b.range())?;
                ConvGrads { dx, dw, db: Some(db) }
            }
            None => ConvGrads { dx, dw: self.w.of_mut(ctx.grads)?, db: None },
        };
        ops::conv2d_backward(&s, x, cols, w, dy, g)
    }
}
