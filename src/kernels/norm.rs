//! Batch norm (per channel over N·spatial) and layer norm (over channels at
//! each location), in NCHW. A 1-d batch norm or a row-wise layer norm over a
//! `[rows, C]` matrix is the same kernel with `spatial = 1`.
//!
//! Statistics are computed two-pass (mean, then squared deviations) in a
//! fixed order, so results do not depend on threading.

use super::Float;
use crate::error::{Error, Result, check_len, check_nonzero, checked_product};

/// PyTorch's default epsilon for batch and layer norm.
pub const NORM_EPS: f64 = 1e-5;
/// PyTorch's default running-statistics momentum.
pub const BN_MOMENTUM: f64 = 0.1;

/// An NCHW activation seen as `[batch, channels, spatial]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NormShape {
    /// N.
    pub batch: usize,
    /// C.
    pub channels: usize,
    /// H·W (1 for `[N, C]` data).
    pub spatial: usize,
}

impl NormShape {
    /// A shape from its three sizes.
    pub fn new(batch: usize, channels: usize, spatial: usize) -> Self {
        Self { batch, channels, spatial }
    }

    /// Checks the sizes and returns the element count.
    pub fn validate(&self) -> Result<usize> {
        check_nonzero("norm batch", self.batch)?;
        check_nonzero("norm channels", self.channels)?;
        check_nonzero("norm spatial", self.spatial)?;
        checked_product("norm input", &[self.batch, self.channels, self.spatial])
    }

    /// Elements per channel for batch norm: N·spatial.
    pub fn per_channel(&self) -> usize {
        self.batch * self.spatial
    }

    /// Locations for layer norm: N·spatial.
    pub fn locations(&self) -> usize {
        self.batch * self.spatial
    }
}

/// Batch-norm settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Running-statistics update rate (PyTorch convention: new = (1−m)·old + m·batch).
    pub momentum: f64,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        Self { eps: NORM_EPS, momentum: BN_MOMENTUM }
    }
}

fn check_eps(eps: f64) -> Result<()> {
    if eps.is_finite() && eps > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter { what: "norm eps", reason: "must be finite and > 0" })
    }
}

/// γ and β: a norm's learned per-channel scale and shift.
#[derive(Debug)]
pub struct ScaleShift<'a, T> {
    /// Scale.
    pub gamma: &'a [T],
    /// Shift.
    pub beta: &'a [T],
}

/// Batch norm's per-channel running mean and (unbiased) variance: `&mut`
/// where train mode updates them, shared where eval mode reads them.
#[derive(Clone, Copy, Debug)]
pub struct RunningStats<S> {
    /// Running mean.
    pub mean: S,
    /// Running variance.
    pub var: S,
}

/// The mean and 1/σ a forward pass normalised with, saved for the
/// backward pass (per channel for batch norm, per location for layer norm).
#[derive(Clone, Copy, Debug)]
pub struct SavedStats<S> {
    /// Mean.
    pub mean: S,
    /// 1/σ.
    pub invstd: S,
}

// By hand: a derive would ask `T: Copy` of the element type.
impl<T> Clone for ScaleShift<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for ScaleShift<'_, T> {}

/// The buffers of a train-mode batch-norm forward.
#[derive(Debug)]
pub struct BnTrain<'a, T> {
    /// Input.
    pub x: &'a [T],
    /// γ, β.
    pub scale_shift: ScaleShift<'a, T>,
    /// Updated in place.
    pub running: RunningStats<&'a mut [T]>,
    /// Output.
    pub y: &'a mut [T],
    /// Written for the backward pass.
    pub saved: SavedStats<&'a mut [T]>,
}

/// The buffers of a layer-norm forward.
#[derive(Debug)]
pub struct LayerNormForward<'a, T> {
    /// Input.
    pub x: &'a [T],
    /// γ, β.
    pub scale_shift: ScaleShift<'a, T>,
    /// Output.
    pub y: &'a mut [T],
    /// Written for the backward pass (`batch·spatial` each).
    pub saved: SavedStats<&'a mut [T]>,
}

/// What a norm's backward pass reads: the forward's input, γ and the
/// statistics it normalised with (`S`: saved, or running in eval mode),
/// and `dy`.
#[derive(Debug)]
pub struct NormBackward<'a, T, S = SavedStats<&'a [T]>> {
    /// The forward's input.
    pub x: &'a [T],
    /// Output gradient.
    pub dy: &'a [T],
    /// γ.
    pub gamma: &'a [T],
    /// The statistics the forward normalised with.
    pub stats: S,
}

impl<T, S: Copy> Clone for NormBackward<'_, T, S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, S: Copy> Copy for NormBackward<'_, T, S> {}

/// What a norm's backward pass writes: `dx`, and the accumulated `dgamma`
/// and `dbeta`.
#[derive(Debug)]
pub struct NormGrads<'a, T> {
    /// Input gradient, overwritten.
    pub dx: &'a mut [T],
    /// γ gradient, accumulated.
    pub dgamma: &'a mut [T],
    /// β gradient, accumulated.
    pub dbeta: &'a mut [T],
}

/// Iterates over channel `c`'s planes: one `spatial` run per image.
#[inline]
pub(crate) fn channel_planes<'a, T>(s: &'a NormShape, x: &'a [T], c: usize) -> impl Iterator<Item = &'a [T]> + 'a {
    (0..s.batch).map(move |n| {
        let o = (n * s.channels + c) * s.spatial;
        &x[o..o + s.spatial]
    })
}

/// [`channel_planes`], mutably.
#[inline]
pub(crate) fn channel_planes_mut<'a, T>(s: &NormShape, x: &'a mut [T], c: usize) -> impl Iterator<Item = &'a mut [T]> {
    x.chunks_exact_mut(s.spatial).skip(c).step_by(s.channels)
}

/// Mean and biased variance of channel `c` (two-pass, fixed order).
pub(crate) fn channel_moments<T: Float>(s: &NormShape, x: &[T], c: usize) -> (T, T) {
    let m = T::from_usize(s.per_channel());
    let mean = channel_planes(s, x, c).map(|p| p.iter().copied().sum::<T>()).sum::<T>() / m;
    let var = channel_planes(s, x, c).map(|p| p.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>()).sum::<T>() / m;
    (mean, var)
}

/// `(Σ dy, Σ dy·x̂)` over channel `c`, with `x̂ = (x − mean)·invstd`.
pub(crate) fn channel_grad_sums<T: Float>(s: &NormShape, x: &[T], dy: &[T], c: usize, mean: T, invstd: T) -> (T, T) {
    let mut sdy = T::ZERO;
    let mut sdyx = T::ZERO;
    for (xp, dyp) in channel_planes(s, x, c).zip(channel_planes(s, dy, c)) {
        for (&xv, &g) in xp.iter().zip(dyp) {
            sdy += g;
            sdyx += g * (xv - mean) * invstd;
        }
    }
    (sdy, sdyx)
}

/// The per-channel buffers of a batch-norm forward, in argument order (eval
/// mode takes the first four).
const BN_FORWARD_PARAMS: [&str; 6] = [
    "batch norm gamma",
    "batch norm beta",
    "batch norm running_mean",
    "batch norm running_var",
    "batch norm save_mean",
    "batch norm save_invstd",
];

fn check_bn_params(
    s: &NormShape,
    x: usize,
    y: usize,
    params: impl IntoIterator<Item = (&'static str, usize)>,
) -> Result<()> {
    let len = s.validate()?;
    check_len("batch norm input", len, x)?;
    check_len("batch norm output", len, y)?;
    for (what, l) in params {
        check_len(what, s.channels, l)?;
    }
    Ok(())
}

/// Checks a batch-norm forward: the shape, `x` and `y`, the per-channel
/// buffers named by [`BN_FORWARD_PARAMS`], then `eps`.
fn check_bn_forward<T>(s: &NormShape, eps: f64, [x, y]: [&[T]; 2], per_channel: &[&[T]]) -> Result<()> {
    check_bn_params(s, x.len(), y.len(), BN_FORWARD_PARAMS.into_iter().zip(per_channel.iter().map(|p| p.len())))?;
    check_eps(eps)
}

/// The argument checks of [`batch_norm_train_forward`], shared with its
/// multicore driver so both report the same errors.
pub(crate) fn check_bn_train_forward<T>(s: &NormShape, cfg: &BatchNormConfig, a: &BnTrain<'_, T>) -> Result<()> {
    let (x, ScaleShift { gamma, beta }, y) = (a.x, a.scale_shift, &*a.y);
    let (running_mean, running_var, save_mean, save_invstd) =
        (&*a.running.mean, &*a.running.var, &*a.saved.mean, &*a.saved.invstd);
    check_bn_forward(s, cfg.eps, [x, y], &[gamma, beta, running_mean, running_var, save_mean, save_invstd])?;
    if s.per_channel() < 2 {
        return Err(Error::InvalidShape {
            what: "batch norm (train)",
            reason: "needs more than one value per channel",
        });
    }
    Ok(())
}

/// Saves each channel's batch `(mean, var)` as `save_mean`/`save_invstd` for
/// the backward pass and folds it into the running statistics.
pub(crate) fn save_batch_stats<T: Float>(
    s: &NormShape,
    cfg: &BatchNormConfig,
    moments: impl IntoIterator<Item = (T, T)>,
    [save_mean, save_invstd]: [&mut [T]; 2],
    [running_mean, running_var]: [&mut [T]; 2],
) {
    for (c, (mean, var)) in moments.into_iter().enumerate() {
        save_mean[c] = mean;
        save_invstd[c] = T::ONE / (var + T::from_f64(cfg.eps)).sqrt();
        update_running(cfg, s.per_channel(), mean, var, &mut running_mean[c], &mut running_var[c]);
    }
}

/// A train-mode channel's `(a, b)` in `y = x·a + b`: `a = γ·invstd`,
/// `b = β − mean·a`.
pub(crate) fn batch_scale_shift<T: Float>(gamma: T, beta: T, mean: T, invstd: T) -> (T, T) {
    let a = gamma * invstd;
    (a, beta - mean * a)
}

/// `y = x·a + b` over one image, with channel `c`'s `(a, b) = coeffs(c)`.
pub(crate) fn scale_shift_image<T: Float>(
    spatial: usize,
    x_img: &[T],
    y_img: &mut [T],
    coeffs: impl Fn(usize) -> (T, T),
) {
    for (c, (yp, xp)) in y_img.chunks_exact_mut(spatial).zip(x_img.chunks_exact(spatial)).enumerate() {
        let (a, b) = coeffs(c);
        for (yv, &xv) in yp.iter_mut().zip(xp) {
            *yv = xv * a + b;
        }
    }
}

/// Train-mode forward: normalises with batch statistics, writes
/// `saved` for the backward pass, and updates the running statistics like
/// PyTorch (unbiased variance for the running estimate).
pub fn batch_norm_train_forward<T: Float>(s: &NormShape, cfg: &BatchNormConfig, a: BnTrain<'_, T>) -> Result<()> {
    check_bn_train_forward(s, cfg, &a)?;
    let BnTrain { x, scale_shift: ScaleShift { gamma, beta }, running, y, saved } = a;
    let (RunningStats { mean: running_mean, var: running_var }, SavedStats { mean: save_mean, invstd: save_invstd }) =
        (running, saved);
    let moments = (0..s.channels).map(|c| channel_moments(s, x, c));
    save_batch_stats(s, cfg, moments, [save_mean, save_invstd], [running_mean, running_var]);
    let img = s.channels * s.spatial;
    for (x_img, y_img) in x.chunks_exact(img).zip(y.chunks_exact_mut(img)) {
        scale_shift_image(s.spatial, x_img, y_img, |c| {
            batch_scale_shift(gamma[c], beta[c], save_mean[c], save_invstd[c])
        });
    }
    Ok(())
}

/// `running = (1 − m)·running + m·batch`, with the unbiased batch variance.
fn update_running<T: Float>(cfg: &BatchNormConfig, count: usize, mean: T, var: T, rm: &mut T, rv: &mut T) {
    let m = T::from_f64(cfg.momentum);
    let unbiased = var * T::from_usize(count) / T::from_usize(count - 1);
    *rm = (T::ONE - m) * *rm + m * mean;
    *rv = (T::ONE - m) * *rv + m * unbiased;
}

/// Eval-mode forward: normalises with the running statistics.
pub fn batch_norm_eval_forward<T: Float>(
    s: &NormShape,
    eps: f64,
    x: &[T],
    scale_shift: ScaleShift<'_, T>,
    running: RunningStats<&[T]>,
    y: &mut [T],
) -> Result<()> {
    let (ScaleShift { gamma, beta }, RunningStats { mean: running_mean, var: running_var }) = (scale_shift, running);
    check_bn_forward(s, eps, [x, y], &[gamma, beta, running_mean, running_var])?;
    let img = s.channels * s.spatial;
    for (x_img, y_img) in x.chunks_exact(img).zip(y.chunks_exact_mut(img)) {
        scale_shift_image(s.spatial, x_img, y_img, |c| {
            let a = gamma[c] / (running_var[c] + T::from_f64(eps)).sqrt();
            (a, beta[c] - running_mean[c] * a)
        });
    }
    Ok(())
}

/// Per-channel coefficients of the train-mode input gradient:
/// `dx = k1·dy + k2·x + k3` with `k1 = γ·invstd`, `k2 = −k1·Σdy·x̂·invstd/M`,
/// `k3 = −k1·Σdy/M − k2·mean`.
pub(crate) fn bn_train_dx_coeffs<T: Float>(gamma: T, mean: T, invstd: T, sdy: T, sdyx: T, m: usize) -> (T, T, T) {
    let mf = T::from_usize(m);
    let k1 = gamma * invstd;
    let k2 = -k1 * sdyx * invstd / mf;
    let k3 = -k1 * sdy / mf - k2 * mean;
    (k1, k2, k3)
}

/// `dx = k1·dy + k2·x + k3` over one plane of one channel.
pub(crate) fn bn_train_dx_plane<T: Float>(dx: &mut [T], dy: &[T], x: &[T], (k1, k2, k3): (T, T, T)) {
    for ((d, &g), &xv) in dx.iter_mut().zip(dy).zip(x) {
        *d = k1 * g + k2 * xv + k3;
    }
}

/// The statistics a batch-norm backward pass normalised with.
#[derive(Clone, Copy)]
enum BnStats<'a, T> {
    /// Saved by the train-mode forward: the batch's mean and 1/σ, which
    /// depend on `x` (so `dx` has the full three-term form).
    Batch { mean: &'a [T], invstd: &'a [T] },
    /// Running estimates (eval mode): constants, so `dx = γ·invstd·dy`.
    Running { eps: f64, mean: &'a [T], var: &'a [T] },
}

/// Batch-norm backward in either mode: writes `dx` and accumulates
/// `dgamma`, `dbeta`.
fn batch_norm_backward<T: Float>(
    s: &NormShape,
    stats: BnStats<'_, T>,
    [x, dy, gamma]: [&[T]; 3],
    [dx, dgamma, dbeta]: [&mut [T]; 3],
) -> Result<()> {
    let (stat_names, (stat0, stat1)) = match stats {
        BnStats::Batch { mean, invstd } => (["batch norm save_mean", "batch norm save_invstd"], (mean, invstd)),
        BnStats::Running { mean, var, .. } => (["batch norm running_mean", "batch norm running_var"], (mean, var)),
    };
    let params = [
        ("batch norm gamma", gamma.len()),
        (stat_names[0], stat0.len()),
        (stat_names[1], stat1.len()),
        ("batch norm gamma gradient", dgamma.len()),
        ("batch norm beta gradient", dbeta.len()),
    ];
    check_bn_params(s, x.len(), dx.len(), params)?;
    check_len("batch norm output gradient", x.len(), dy.len())?;
    if let BnStats::Running { eps, .. } = stats {
        check_eps(eps)?;
    }
    for c in 0..s.channels {
        let (mean, invstd) = match stats {
            BnStats::Batch { mean, invstd } => (mean[c], invstd[c]),
            BnStats::Running { eps, mean, var } => (mean[c], T::ONE / (var[c] + T::from_f64(eps)).sqrt()),
        };
        let (sdy, sdyx) = channel_grad_sums(s, x, dy, c, mean, invstd);
        dbeta[c] += sdy;
        dgamma[c] += sdyx;
        let planes = channel_planes_mut(s, dx, c).zip(channel_planes(s, dy, c)).zip(channel_planes(s, x, c));
        if let BnStats::Batch { .. } = stats {
            let k = bn_train_dx_coeffs(gamma[c], mean, invstd, sdy, sdyx, s.per_channel());
            planes.for_each(|((dxp, dyp), xp)| bn_train_dx_plane(dxp, dyp, xp, k));
        } else {
            let k = gamma[c] * invstd;
            for ((dxp, dyp), _) in planes {
                for (d, &g) in dxp.iter_mut().zip(dyp) {
                    *d = k * g;
                }
            }
        }
    }
    Ok(())
}

/// Train-mode backward: writes `dx` and accumulates `dgamma`, `dbeta`.
pub fn batch_norm_train_backward<T: Float>(s: &NormShape, b: NormBackward<'_, T>, g: NormGrads<'_, T>) -> Result<()> {
    let stats = BnStats::Batch { mean: b.stats.mean, invstd: b.stats.invstd };
    batch_norm_backward(s, stats, [b.x, b.dy, b.gamma], [g.dx, g.dgamma, g.dbeta])
}

/// Eval-mode backward (running statistics are constants): writes `dx` and
/// accumulates `dgamma`, `dbeta`.
pub fn batch_norm_eval_backward<T: Float>(
    s: &NormShape,
    eps: f64,
    b: NormBackward<'_, T, RunningStats<&[T]>>,
    g: NormGrads<'_, T>,
) -> Result<()> {
    let stats = BnStats::Running { eps, mean: b.stats.mean, var: b.stats.var };
    batch_norm_backward(s, stats, [b.x, b.dy, b.gamma], [g.dx, g.dgamma, g.dbeta])
}

/// Layer norm over the channels at each location of one image, writing
/// `y`, and per-location `mean`/`rstd` (`spatial` each).
pub(crate) fn layer_norm_image<T: Float>(
    s: &NormShape,
    eps: T,
    x_img: &[T],
    ScaleShift { gamma, beta }: ScaleShift<'_, T>,
    y_img: &mut [T],
    SavedStats { mean, invstd: rstd }: SavedStats<&mut [T]>,
) {
    let sp = s.spatial;
    let cf = T::from_usize(s.channels);
    for p in 0..sp {
        let mut sum = T::ZERO;
        for c in 0..s.channels {
            sum += x_img[c * sp + p];
        }
        let mu = sum / cf;
        let mut sq = T::ZERO;
        for c in 0..s.channels {
            let d = x_img[c * sp + p] - mu;
            sq += d * d;
        }
        let r = T::ONE / (sq / cf + eps).sqrt();
        mean[p] = mu;
        rstd[p] = r;
        for c in 0..s.channels {
            y_img[c * sp + p] = (x_img[c * sp + p] - mu) * r * gamma[c] + beta[c];
        }
    }
}

/// Input gradient of layer norm for one image.
pub(crate) fn layer_norm_backward_image<T: Float>(
    s: &NormShape,
    x_img: &[T],
    dy_img: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dx_img: &mut [T],
) {
    let sp = s.spatial;
    let cf = T::from_usize(s.channels);
    for p in 0..sp {
        let (mu, r) = (mean[p], rstd[p]);
        let mut s1 = T::ZERO;
        let mut s2 = T::ZERO;
        for c in 0..s.channels {
            let g = dy_img[c * sp + p] * gamma[c];
            s1 += g;
            s2 += g * (x_img[c * sp + p] - mu) * r;
        }
        let (m1, m2) = (s1 / cf, s2 / cf);
        for c in 0..s.channels {
            let xh = (x_img[c * sp + p] - mu) * r;
            let g = dy_img[c * sp + p] * gamma[c];
            dx_img[c * sp + p] = r * (g - m1 - xh * m2);
        }
    }
}

/// `(Σ dy, Σ dy·x̂)` over every location, for channel `c` of layer norm.
pub(crate) fn layer_norm_param_sums<T: Float>(
    s: &NormShape,
    x: &[T],
    dy: &[T],
    mean: &[T],
    rstd: &[T],
    c: usize,
) -> (T, T) {
    let mut sdy = T::ZERO;
    let mut sdyx = T::ZERO;
    for n in 0..s.batch {
        let o = (n * s.channels + c) * s.spatial;
        let stats = n * s.spatial;
        for p in 0..s.spatial {
            let g = dy[o + p];
            sdy += g;
            sdyx += g * (x[o + p] - mean[stats + p]) * rstd[stats + p];
        }
    }
    (sdy, sdyx)
}

/// Checks a layer norm's shape, each `(name, length, per channel?)` in
/// order, then the per-location `mean` and `rstd`.
fn check_ln(s: &NormShape, lens: &[(&'static str, usize, bool)], [mean, rstd]: [usize; 2]) -> Result<()> {
    let len = s.validate()?;
    for &(what, l, per_channel) in lens {
        let expected = if per_channel { s.channels } else { len };
        check_len(what, expected, l)?;
    }
    check_len("layer norm mean", s.locations(), mean)?;
    check_len("layer norm rstd", s.locations(), rstd)
}

/// The argument checks of [`layer_norm_forward`], shared with its
/// multicore driver so both report the same errors.
pub(crate) fn check_layer_norm_forward<T>(s: &NormShape, eps: f64, a: &LayerNormForward<'_, T>) -> Result<()> {
    let (x, ScaleShift { gamma, beta }, y, mean, rstd) = (a.x, a.scale_shift, &*a.y, &*a.saved.mean, &*a.saved.invstd);
    let lens = [
        ("layer norm input", x.len(), false),
        ("layer norm output", y.len(), false),
        ("layer norm gamma", gamma.len(), true),
        ("layer norm beta", beta.len(), true),
    ];
    check_ln(s, &lens, [mean.len(), rstd.len()])?;
    check_eps(eps)
}

/// The argument checks of [`layer_norm_backward`], shared with its
/// multicore driver.
pub(crate) fn check_layer_norm_backward<T>(s: &NormShape, b: &NormBackward<'_, T>, g: &NormGrads<'_, T>) -> Result<()> {
    let (NormBackward { x, dy, gamma, stats: SavedStats { mean, invstd: rstd } }, dx) = (*b, &*g.dx);
    let (dgamma, dbeta) = (&*g.dgamma, &*g.dbeta);
    let lens = [
        ("layer norm input", x.len(), false),
        ("layer norm output gradient", dy.len(), false),
        ("layer norm input gradient", dx.len(), false),
        ("layer norm gamma", gamma.len(), true),
        ("layer norm gamma gradient", dgamma.len(), true),
        ("layer norm beta gradient", dbeta.len(), true),
    ];
    check_ln(s, &lens, [mean.len(), rstd.len()])
}

/// Layer norm over channels at each location: writes `y` and the
/// per-location `saved` statistics (`batch·spatial` each) for the backward pass.
pub fn layer_norm_forward<T: Float>(s: &NormShape, eps: f64, a: LayerNormForward<'_, T>) -> Result<()> {
    check_layer_norm_forward(s, eps, &a)?;
    let LayerNormForward { x, scale_shift, y, saved: SavedStats { mean, invstd: rstd } } = a;
    let img = s.channels * s.spatial;
    let e = T::from_f64(eps);
    for (((x_img, y_img), m), r) in x
        .chunks_exact(img)
        .zip(y.chunks_exact_mut(img))
        .zip(mean.chunks_exact_mut(s.spatial))
        .zip(rstd.chunks_exact_mut(s.spatial))
    {
        layer_norm_image(s, e, x_img, scale_shift, y_img, SavedStats { mean: m, invstd: r });
    }
    Ok(())
}

/// Layer norm backward: writes `dx`, accumulates `dgamma` and `dbeta`.
pub fn layer_norm_backward<T: Float>(s: &NormShape, b: NormBackward<'_, T>, g: NormGrads<'_, T>) -> Result<()> {
    check_layer_norm_backward(s, &b, &g)?;
    let (NormBackward { x, dy, gamma, stats: SavedStats { mean, invstd: rstd } }, NormGrads { dx, dgamma, dbeta }) =
        (b, g);
    let img = s.channels * s.spatial;
    for (n, ((x_img, dy_img), dx_img)) in
        x.chunks_exact(img).zip(dy.chunks_exact(img)).zip(dx.chunks_exact_mut(img)).enumerate()
    {
        let st = n * s.spatial..(n + 1) * s.spatial;
        layer_norm_backward_image(s, x_img, dy_img, gamma, &mean[st.clone()], &rstd[st], dx_img);
    }
    for c in 0..s.channels {
        let (sdy, sdyx) = layer_norm_param_sums(s, x, dy, mean, rstd, c);
        dbeta[c] += sdy;
        dgamma[c] += sdyx;
    }
    Ok(())
}
