//! The kernels the units run: the multicore drivers with feature `train`,
//! the serial kernels without (`no_std`). Same arguments either way.

#[cfg(feature = "parallel")]
pub(crate) use crate::kernels::par::{
    batch_norm_train_backward_par as batch_norm_train_backward,
    batch_norm_train_forward_par as batch_norm_train_forward, conv2d_forward_par as conv2d_forward,
    layer_norm_backward_par as layer_norm_backward, layer_norm_forward_par as layer_norm_forward,
    linear_backward_par as linear_backward, linear_forward_par as linear_forward, par_gemm,
};
#[cfg(not(feature = "parallel"))]
pub(crate) use crate::kernels::{
    batch_norm_train_backward, batch_norm_train_forward, conv2d_forward, layer_norm_backward, layer_norm_forward,
    linear_backward, linear_forward,
};

use crate::error::Result;
#[cfg(not(feature = "parallel"))]
use crate::kernels::MatRef;
use crate::kernels::{Conv2dShape, ConvGrads, Float};

/// `c (+)= a·b` for a dense row-major `c`, serially.
#[cfg(not(feature = "parallel"))]
pub(crate) fn par_gemm<T: Float>(c: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) -> Result<()> {
    let m = crate::kernels::MatMut::row_major(c, a.rows(), b.cols())?;
    crate::kernels::gemm(m, a, b, accumulate)
}

/// Conv backward: the multicore driver reuses forward's columns, the serial
/// kernel recomputes them from `x` (using `cols` as scratch).
pub(crate) fn conv2d_backward<T: Float>(
    s: &Conv2dShape,
    x: &[T],
    cols: &mut [T],
    w: &[T],
    dy: &[T],
    g: ConvGrads<'_, T>,
) -> Result<()> {
    #[cfg(feature = "parallel")]
    {
        let _ = x;
        crate::kernels::par::conv2d_backward_par(s, cols, w, dy, g)
    }
    #[cfg(not(feature = "parallel"))]
    {
        crate::kernels::conv2d_backward(s, x, w, dy, g, cols)
    }
}

/// Elements per task of the element-wise passes (any split: same bits).
#[cfg(feature = "parallel")]
pub(crate) const CHUNK: usize = 1 << 14;

/// In-place ReLU.
pub(crate) fn relu<T: Float>(v: &mut [T]) {
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        v.par_chunks_mut(CHUNK).for_each(crate::kernels::relu_inplace);
    }
    #[cfg(not(feature = "parallel"))]
    crate::kernels::relu_inplace(v);
}

/// ReLU backward from the forward output: `d = 0` where `a ≤ 0`.
pub(crate) fn relu_mask<T: Float>(d: &mut [T], a: &[T]) {
    let mask = |d: &mut [T], a: &[T]| {
        for (g, &v) in d.iter_mut().zip(a) {
            // A select, not a branch: vectorises.
            *g = if v > T::ZERO { *g } else { T::ZERO };
        }
    };
    #[cfg(feature = "parallel")]
    {
        use rayon::prelude::*;
        d.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).for_each(|(d, a)| mask(d, a));
    }
    #[cfg(not(feature = "parallel"))]
    mask(d, a);
}
