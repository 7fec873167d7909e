//! Element-wise activations (ReLU, sigmoid) and seeded dropout.

use super::Float;
use crate::error::{Error, Result, check_len};

/// `y[i] = f(x[i])`, once `y` is checked (as `what`) to be as long as `x`:
/// the loop of every element-wise forward.
pub(crate) fn map_forward<T: Float>(what: &'static str, x: &[T], y: &mut [T], f: impl Fn(T) -> T) -> Result<()> {
    check_len(what, x.len(), y.len())?;
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv = f(xv);
    }
    Ok(())
}

/// `dx[i] = f(dy[i], kept[i])` for `kept` what the forward left (its input,
/// output or mask), once `dy` and `dx` are checked to be as long as `kept`:
/// the loop of every element-wise backward. `what` names (dy, dx).
pub(crate) fn map_backward<T: Float>(
    what: (&'static str, &'static str),
    kept: &[T],
    dy: &[T],
    dx: &mut [T],
    f: impl Fn(T, T) -> T,
) -> Result<()> {
    check_len(what.0, kept.len(), dy.len())?;
    check_len(what.1, kept.len(), dx.len())?;
    for ((d, &g), &k) in dx.iter_mut().zip(dy).zip(kept) {
        *d = f(g, k);
    }
    Ok(())
}

/// `y = max(x, 0)`; NaN stays NaN (as in PyTorch), so divergence is visible.
pub fn relu_forward<T: Float>(x: &[T], y: &mut [T]) -> Result<()> {
    map_forward("relu output", x, y, |xv| if xv < T::ZERO { T::ZERO } else { xv })
}

/// In-place ReLU.
pub fn relu_inplace<T: Float>(x: &mut [T]) {
    // A select, not a branch: vectorises, and never mispredicts on BN output.
    for v in x {
        *v = if *v < T::ZERO { T::ZERO } else { *v };
    }
}

/// `dx = dy · [y > 0]`. Takes the forward *output* so the input need not be
/// kept (the subgradient at 0 is 0, as in PyTorch).
pub fn relu_backward<T: Float>(y: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    map_backward(
        ("relu output gradient", "relu input gradient"),
        y,
        dy,
        dx,
        |g, yv| if yv > T::ZERO { g } else { T::ZERO },
    )
}

/// Logistic sigmoid of one value, stable for any input.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::ZERO {
        T::ONE / (T::ONE + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::ONE + e)
    }
}

/// `y = σ(x)`.
pub fn sigmoid_forward<T: Float>(x: &[T], y: &mut [T]) -> Result<()> {
    map_forward("sigmoid output", x, y, sigmoid)
}

/// `dx = dy · y · (1 − y)`, from the forward output.
pub fn sigmoid_backward<T: Float>(y: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    map_backward(("sigmoid output gradient", "sigmoid input gradient"), y, dy, dx, |g, yv| g * yv * (T::ONE - yv))
}

/// A counter-based uniform draw in [0, 1) for element `index` under `seed`
/// (SplitMix64 finaliser). The mask of element i never depends on how the
/// work is split across threads.
#[inline]
pub fn uniform_at(seed: u64, index: u64) -> f64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Inverted dropout: each element is kept with probability `1 − p` and
/// scaled by `1/(1 − p)`. `mask` receives the per-element factor (0 or
/// `1/(1 − p)`) for the backward pass. `offset` is the index of `x[0]` in
/// the whole tensor, so chunks of one tensor draw the same mask as the whole.
pub fn dropout_forward<T: Float>(p: f64, seed: u64, offset: u64, x: &[T], y: &mut [T], mask: &mut [T]) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidParameter { what: "dropout p", reason: "must be in [0, 1)" });
    }
    check_len("dropout output", x.len(), y.len())?;
    check_len("dropout mask", x.len(), mask.len())?;
    let keep = T::from_f64(1.0 / (1.0 - p));
    for (i, ((yv, m), &xv)) in y.iter_mut().zip(mask.iter_mut()).zip(x).enumerate() {
        *m = if uniform_at(seed, offset + i as u64) < p { T::ZERO } else { keep };
        *yv = xv * *m;
    }
    Ok(())
}

/// `dx = dy · mask`.
pub fn dropout_backward<T: Float>(mask: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    map_backward(("dropout output gradient", "dropout input gradient"), mask, dy, dx, |g, m| g * m)
}
