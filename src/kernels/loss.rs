//! Softplus, log-sum-exp, log-softmax and cross-entropy: every form is
//! max-shifted so it stays finite for inputs of ±1e4 in f32.

use super::Float;
use super::act::{map_backward, map_forward, sigmoid};
use crate::error::{Error, Result, check_len, check_nonzero, checked_product};

/// `sp(x) = log(1 + eˣ)`, computed as `max(x, 0) + log1p(e^−|x|)`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::ZERO) + (-x.abs()).exp().ln_1p()
}

/// Element-wise softplus.
pub fn softplus_forward<T: Float>(x: &[T], y: &mut [T]) -> Result<()> {
    map_forward("softplus output", x, y, softplus)
}

/// `dx = dy · σ(x)`.
pub fn softplus_backward<T: Float>(x: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    map_backward(("softplus output gradient", "softplus input gradient"), x, dy, dx, |g, xv| g * sigmoid(xv))
}

/// A `[rows, cols]` matrix, reduced along its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowsShape {
    /// Number of rows.
    pub rows: usize,
    /// Entries per row (classes, candidates, ...).
    pub cols: usize,
}

impl RowsShape {
    /// A shape from its two sizes.
    pub fn new(rows: usize, cols: usize) -> Self {
        Self { rows, cols }
    }

    /// Checks the sizes and returns the element count.
    pub fn validate(&self) -> Result<usize> {
        check_nonzero("rows", self.rows)?;
        check_nonzero("cols", self.cols)?;
        checked_product("matrix", &[self.rows, self.cols])
    }
}

/// `log Σ eˣ` of one row, shifted by its maximum. An all −∞ row gives −∞.
#[inline]
pub fn log_sum_exp<T: Float>(row: &[T]) -> T {
    let (m, l) = max_and_log_sum(row);
    m + l
}

/// `(m, log Σ e^{x − m})` with `m` the row maximum. Keeping the two apart
/// lets callers form `x − lse` as `(x − m) − l`, which stays exact to a few
/// ulps of the *result* even when `x` and `lse` are both ~1e4.
#[inline]
fn max_and_log_sum<T: Float>(row: &[T]) -> (T, T) {
    let m = row.iter().copied().fold(T::NEG_INFINITY, T::max);
    if !m.is_finite() {
        return (m, T::ZERO);
    }
    (m, row.iter().map(|&v| (v - m).exp()).sum::<T>().ln())
}

/// Row-wise log-sum-exp: `y[r] = log Σ_c e^{x[r,c]}`.
pub fn log_sum_exp_forward<T: Float>(s: &RowsShape, x: &[T], y: &mut [T]) -> Result<()> {
    check_len("log-sum-exp input", s.validate()?, x.len())?;
    check_len("log-sum-exp output", s.rows, y.len())?;
    for (yv, row) in y.iter_mut().zip(x.chunks_exact(s.cols)) {
        *yv = log_sum_exp(row);
    }
    Ok(())
}

/// `dx[r,c] = dy[r] · e^{x[r,c] − y[r]}` (the softmax), from the forward output.
pub fn log_sum_exp_backward<T: Float>(s: &RowsShape, x: &[T], y: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    let n = s.validate()?;
    check_len("log-sum-exp input", n, x.len())?;
    check_len("log-sum-exp output", s.rows, y.len())?;
    check_len("log-sum-exp output gradient", s.rows, dy.len())?;
    check_len("log-sum-exp input gradient", n, dx.len())?;
    for (((dr, xr), &yv), &g) in dx.chunks_exact_mut(s.cols).zip(x.chunks_exact(s.cols)).zip(y).zip(dy) {
        for (d, &xv) in dr.iter_mut().zip(xr) {
            *d = g * (xv - yv).exp();
        }
    }
    Ok(())
}

/// Row-wise log-softmax: `y[r,c] = x[r,c] − log Σ e^{x[r,·]}`.
pub fn log_softmax_forward<T: Float>(s: &RowsShape, x: &[T], y: &mut [T]) -> Result<()> {
    let n = s.validate()?;
    check_len("log-softmax input", n, x.len())?;
    check_len("log-softmax output", n, y.len())?;
    for (yr, xr) in y.chunks_exact_mut(s.cols).zip(x.chunks_exact(s.cols)) {
        let (m, l) = max_and_log_sum(xr);
        for (yv, &xv) in yr.iter_mut().zip(xr) {
            *yv = (xv - m) - l;
        }
    }
    Ok(())
}

/// `dx = dy − softmax · Σ dy`, from the forward output.
pub fn log_softmax_backward<T: Float>(s: &RowsShape, y: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    let n = s.validate()?;
    check_len("log-softmax output", n, y.len())?;
    check_len("log-softmax output gradient", n, dy.len())?;
    check_len("log-softmax input gradient", n, dx.len())?;
    for ((dr, yr), gr) in dx.chunks_exact_mut(s.cols).zip(y.chunks_exact(s.cols)).zip(dy.chunks_exact(s.cols)) {
        let total = gr.iter().copied().sum::<T>();
        for ((d, &yv), &g) in dr.iter_mut().zip(yr).zip(gr) {
            *d = g - yv.exp() * total;
        }
    }
    Ok(())
}

fn check_labels(s: &RowsShape, labels: &[usize]) -> Result<()> {
    check_len("cross-entropy labels", s.rows, labels.len())?;
    for (index, &label) in labels.iter().enumerate() {
        if label >= s.cols {
            return Err(Error::LabelOutOfRange { index, label, classes: s.cols });
        }
    }
    Ok(())
}

/// Mean cross-entropy of `logits` (`[rows, classes]`) against `labels`.
pub fn cross_entropy_forward<T: Float>(s: &RowsShape, logits: &[T], labels: &[usize]) -> Result<T> {
    check_len("cross-entropy logits", s.validate()?, logits.len())?;
    check_labels(s, labels)?;
    let total = logits
        .chunks_exact(s.cols)
        .zip(labels)
        .map(|(row, &l)| {
            let (m, ls) = max_and_log_sum(row);
            (m - row[l]) + ls
        })
        .sum::<T>();
    Ok(total / T::from_usize(s.rows))
}

/// Gradient of the mean cross-entropy, scaled by `dloss`:
/// `dx = dloss · (softmax − onehot) / rows`.
pub fn cross_entropy_backward<T: Float>(
    s: &RowsShape,
    logits: &[T],
    labels: &[usize],
    dloss: T,
    dlogits: &mut [T],
) -> Result<()> {
    let n = s.validate()?;
    check_len("cross-entropy logits", n, logits.len())?;
    check_len("cross-entropy logits gradient", n, dlogits.len())?;
    check_labels(s, labels)?;
    let scale = dloss / T::from_usize(s.rows);
    for ((dr, xr), &l) in dlogits.chunks_exact_mut(s.cols).zip(logits.chunks_exact(s.cols)).zip(labels) {
        let (m, ls) = max_and_log_sum(xr);
        for (c, (d, &xv)) in dr.iter_mut().zip(xr).enumerate() {
            let onehot = if c == l { T::ONE } else { T::ZERO };
            *d = scale * (((xv - m) - ls).exp() - onehot);
        }
    }
    Ok(())
}
