//! Adversarial prior matching (docs/method.md §4.4): a discriminator `d` learns to
//! tell samples of the prior V = U[0, 1]^y_dim from the encoder's
//! `σ(Y)`, and the encoder is pushed to fool it.
//!
//! The discriminator is the reference's `Linear(y→1000) ReLU →
//! Linear(1000→200) ReLU → Linear(200→1)` (a logit, no BN), with its own
//! [`ParamTable`] (`prior.disc.{0,2,4}.{weight,bias}`, the `nn.Sequential`
//! indices), its own flat parameters and gradients and its own Adam state,
//! because the reference trains it with its own optimiser from the same
//! minibatch (cortex runs one optimiser per loss).
//!
//! Losses (minimised; docs/method.md §9.2 signs, `sp` = softplus):
//! - discriminator:
//!   `L_D = mean_z sp(−d(z)) + mean_x sp(d(σY_x)) + λ·½·(GP(z) + GP(σY))`,
//!   with Y detached and `GP(u) = mean_i ||∂d/∂u_i||²`: the *per-sample*
//!   penalty the reference intended (its code penalises only the last
//!   sample, docs/method.md §9.5);
//! - encoder: `L_E = γ · mean_x sp(−d(σY_x))` (non-saturating).
//!
//! # The gradient penalty's parameter gradient
//!
//! Backpropagating `||∂d/∂u||²` into θ is a double backward. For a ReLU
//! MLP it is short, because the masks `m1 = [h1 > 0]`, `m2 = [h2 > 0]` are
//! piecewise constant in θ (their derivative is 0 almost everywhere). Per
//! sample, the input gradient is
//!
//! ```text
//! v2 = m2 ⊙ w3,   v1 = m1 ⊙ (W2ᵀ v2),   g = W1ᵀ v1
//! ```
//!
//! and for `P = c·Σ_i ||g_i||²` (ĝ = 2c·g, t̂1 = m1 ⊙ (W1 ĝ)):
//!
//! ```text
//! ∂P/∂W1 = Σ_i v1_i ĝ_iᵀ,   ∂P/∂W2 = Σ_i v2_i t̂1_iᵀ,   ∂P/∂w3 = Σ_i m2_i ⊙ (W2 t̂1_i)
//! ```
//!
//! and nothing for the biases. Batched over rows these are GEMMs
//! (`G = V1·W1`, `T1 = V2·W2`, `dV1 = Ĝ·W1ᵀ`, `dV2 = T̂1·W2ᵀ`, `Vᵀ·X`). The
//! first-order (softplus) backward reuses the same V's: with
//! `e_i = ∂L/∂d_i`, the pre-activation gradients are `e_i·v2_i` and
//! `e_i·v1_i`, so each weight gradient is **one** GEMM for both terms:
//! `dW1 += V1ᵀ·(diag(e)·U + Ĝ)`, `dW2 += V2ᵀ·(diag(e)·A1 + T̂1)`.
//!
//! The loss functions are generic over [`Float`] so the f64
//! finite-difference tests run the shipped code; [`Prior`] is the f32
//! owner of parameters, gradients and optimiser state.

use rayon::prelude::*;

use crate::error::{Error, Result, check_len, check_nonzero, checked_product};
use crate::kernels::par::par_gemm;
use crate::kernels::{Float, MatRef, relu_inplace, sigmoid, softplus};
use crate::nn::{Builder, Ctx, Linear, Mode};
use crate::optim::{AdamConfig, AdamState};
use crate::params::ParamTable;
use crate::rng::Rng;

/// Adam runs over chunks of this many parameters in parallel (element-wise,
/// so any split gives the same bits).
const ADAM_CHUNK: usize = 1 << 16;

/// Settings of the prior-matching term.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PriorConfig {
    /// γ, the weight of the encoder's prior loss. The spec recommends 0.1
    /// when the prior is on (docs/method.md §5.1; the README's `--prior.scale 0.1`).
    pub gamma: f64,
    /// λ, the gradient-penalty weight (1.0 in the final reference code,
    /// 0.5 in the Aug-2018 code).
    pub lambda: f64,
    /// The discriminator's optimiser (DIM's: lr 1e-4, betas 0.5/0.999).
    pub adam: AdamConfig,
    /// Hidden widths of the discriminator, `(1000, 200)` in the reference.
    pub hidden: (usize, usize),
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self { gamma: 0.1, lambda: 1.0, adam: AdamConfig::dim(), hidden: (1000, 200) }
    }
}

impl PriorConfig {
    /// Checks every field: γ and λ finite and ≥ 0, Adam in range, widths > 0.
    pub fn validate(&self) -> Result<()> {
        check_weight("prior gamma", self.gamma)?;
        check_weight("prior lambda", self.lambda)?;
        self.adam.validate()?;
        check_nonzero("prior discriminator hidden width 1", self.hidden.0)?;
        check_nonzero("prior discriminator hidden width 2", self.hidden.1)
    }
}

fn check_weight(what: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter { what, reason: "must be finite and >= 0" })
    }
}

/// Where each discriminator tensor lives in the flat parameter buffer.
/// Built together with the [`ParamTable`] by [`DiscLayout::build`], so the
/// offsets are the table's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiscLayout {
    /// Input width (the encoder's Y width).
    pub y_dim: usize,
    /// First hidden width.
    pub h1: usize,
    /// Second hidden width.
    pub h2: usize,
    /// The three linear layers (`disc.0`, `disc.2`, `disc.4`).
    layers: [Linear; 3],
    len: usize,
}

impl DiscLayout {
    /// Registers the six tensors (PyTorch default init) and returns the
    /// layout with its table.
    pub fn build(y_dim: usize, hidden: (usize, usize)) -> Result<(Self, ParamTable)> {
        let (h1, h2) = hidden;
        check_nonzero("prior y_dim", y_dim)?;
        check_nonzero("prior discriminator hidden width 1", h1)?;
        check_nonzero("prior discriminator hidden width 2", h2)?;
        let n1 = checked_product("prior discriminator layer 0", &[h1, y_dim])?;
        let n2 = checked_product("prior discriminator layer 2", &[h2, h1])?;
        [n2, h1, h2, h2, 1]
            .iter()
            .try_fold(n1, |acc, &v| acc.checked_add(v))
            .ok_or(Error::Overflow { what: "prior discriminator parameters" })?;
        let (mut t, mut no_buffers) = (ParamTable::new(), ParamTable::new());
        let mut b = Builder::new(&mut t, &mut no_buffers);
        let layers = [(0, y_dim, h1), (2, h1, h2), (4, h2, 1)]
            .map(|(i, fan, out)| b.linear(format!("prior.disc.{i}"), fan, out, true));
        let len = t.len();
        Ok((Self { y_dim, h1, h2, layers, len }, t))
    }

    /// Total parameter count.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: every layer has at least one weight.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The tensors' lengths, in table order (weight, bias per layer; they
    /// tile the table without gaps).
    fn lens(&self) -> [usize; 6] {
        let [a, b, c] = self.layers.map(|l| (l.w.len(), l.b.map_or(0, |b| b.len())));
        [a.0, a.1, b.0, b.1, c.0, c.1]
    }

    /// The six tensors, in table order.
    fn split<'a, T>(&self, p: &'a [T]) -> [&'a [T]; 6] {
        let [l1, l2, l3] = self.layers.map(|l| (&p[l.w.range()], l.b.map_or(&p[..0], |b| &p[b.range()])));
        [l1.0, l1.1, l2.0, l2.1, l3.0, l3.1]
    }

    /// The six gradient tensors, in table order.
    fn split_mut<'a, T>(&self, p: &'a mut [T]) -> [&'a mut [T]; 6] {
        let [n0, n1, n2, n3, n4, _] = self.lens();
        let (w1, r) = p.split_at_mut(n0);
        let (b1, r) = r.split_at_mut(n1);
        let (w2, r) = r.split_at_mut(n2);
        let (b2, r) = r.split_at_mut(n3);
        let (w3, b3) = r.split_at_mut(n4);
        [w1, b1, w2, b2, w3, b3]
    }

    /// Checks a parameter buffer and a row count; returns `rows · y_dim`.
    fn check(&self, params: usize, rows: usize) -> Result<usize> {
        check_len("prior discriminator parameters", self.len, params)?;
        check_nonzero("prior batch", rows)?;
        checked_product("prior batch input", &[rows, self.y_dim])
    }
}

/// Activations of one discriminator pass over `r` rows, kept between the
/// forward, the input gradient and the backward. Grown on demand and reused,
/// so a training loop allocates once.
#[derive(Clone, Debug, Default)]
pub struct DiscScratch<T> {
    /// Inputs `U [r, y_dim]`.
    u: Vec<T>,
    /// `ReLU(h1)`, `[r, h1]` (its sign is the mask m1).
    a1: Vec<T>,
    /// `ReLU(h2)`, `[r, h2]` (mask m2).
    a2: Vec<T>,
    /// Logits `[r]`.
    logit: Vec<T>,
    /// `V2 = M2 ⊙ w3`, `[r, h2]`.
    v2: Vec<T>,
    /// `V1 = M1 ⊙ (V2·W2)`, `[r, h1]`.
    v1: Vec<T>,
    /// Input gradients `G = V1·W1`, `[r, y_dim]`.
    g: Vec<T>,
    /// `Ĝ`, then `X1 = diag(e)·U + Ĝ`, `[r, y_dim]`.
    x1: Vec<T>,
    /// `T̂1`, then `X2 = diag(e)·A1 + T̂1`, `[r, h1]`.
    x2: Vec<T>,
    /// `dV2 = T̂1·W2ᵀ`, `[r, h2]`.
    dv2: Vec<T>,
    /// `∂L/∂d` per row.
    e: Vec<T>,
}

impl<T: Float> DiscScratch<T> {
    fn resize(&mut self, lay: &DiscLayout, r: usize) {
        let z = T::ZERO;
        self.u.resize(r * lay.y_dim, z);
        self.a1.resize(r * lay.h1, z);
        self.a2.resize(r * lay.h2, z);
        self.logit.resize(r, z);
        self.v2.resize(r * lay.h2, z);
        self.v1.resize(r * lay.h1, z);
        self.g.resize(r * lay.y_dim, z);
        self.x1.resize(r * lay.y_dim, z);
        self.x2.resize(r * lay.h1, z);
        self.dv2.resize(r * lay.h2, z);
        self.e.resize(r, z);
    }
}

/// Forward over the rows in `sc.u`: fills `a1`, `a2`, `logit`.
fn forward<T: Float>(lay: &DiscLayout, params: &[T], sc: &mut DiscScratch<T>, r: usize) -> Result<()> {
    let [.., w3, b3] = lay.split(params);
    let ctx = Ctx { params, grads: &mut [], buffers: &mut [], mode: Mode::Train };
    lay.layers[0].forward(&ctx, r, &sc.u, &mut sc.a1)?;
    relu_inplace(&mut sc.a1);
    lay.layers[1].forward(&ctx, r, &sc.a1, &mut sc.a2)?;
    relu_inplace(&mut sc.a2);
    for (l, a) in sc.logit.iter_mut().zip(sc.a2.chunks_exact(lay.h2)) {
        *l = a.iter().zip(w3).map(|(&x, &w)| x * w).sum::<T>() + b3[0];
    }
    Ok(())
}

/// `dst = mask ⊙ src` element-wise, the mask being `[act > 0]`.
fn mask_by<T: Float>(v: &mut [T], act: &[T]) {
    for (x, &a) in v.iter_mut().zip(act) {
        if a <= T::ZERO || a.is_nan() {
            *x = T::ZERO;
        }
    }
}

/// Input gradients `∂d/∂u` of every row (after [`forward`]): fills `v2`,
/// `v1` and `g`.
fn input_grad<T: Float>(lay: &DiscLayout, params: &[T], sc: &mut DiscScratch<T>, r: usize) -> Result<()> {
    let [w1, _, w2, _, w3, _] = lay.split(params);
    for (v, a) in sc.v2.chunks_exact_mut(lay.h2).zip(sc.a2.chunks_exact(lay.h2)) {
        v.copy_from_slice(w3);
        mask_by(v, a);
    }
    par_gemm(&mut sc.v1, MatRef::row_major(&sc.v2, r, lay.h2)?, MatRef::row_major(w2, lay.h2, lay.h1)?, false)?;
    mask_by(&mut sc.v1, &sc.a1);
    par_gemm(&mut sc.g, MatRef::row_major(&sc.v1, r, lay.h1)?, MatRef::row_major(w1, lay.h1, lay.y_dim)?, false)
}

/// Accumulates into `grads` the parameter gradient of
/// `Σ_i e_i·d(u_i) + c·Σ_i ||∂d/∂u_i||²`, with `e` in `sc.e` (after
/// [`forward`] and [`input_grad`]). See the module docs for the algebra.
fn backward<T: Float>(
    lay: &DiscLayout,
    params: &[T],
    sc: &mut DiscScratch<T>,
    r: usize,
    c: T,
    grads: &mut [T],
) -> Result<()> {
    let [w1, _, w2, _, _, _] = lay.split(params);
    let [dw1, db1, dw2, db2, dw3, db3] = lay.split_mut(grads);
    let (d, h1, h2) = (lay.y_dim, lay.h1, lay.h2);
    // Ĝ = 2c·G; T̂1 = M1 ⊙ (Ĝ·W1ᵀ); dV2 = T̂1·W2ᵀ.
    let two_c = c + c;
    for (x, &g) in sc.x1.iter_mut().zip(&sc.g) {
        *x = two_c * g;
    }
    par_gemm(&mut sc.x2, MatRef::row_major(&sc.x1, r, d)?, MatRef::row_major(w1, h1, d)?.t(), false)?;
    mask_by(&mut sc.x2, &sc.a1);
    par_gemm(&mut sc.dv2, MatRef::row_major(&sc.x2, r, h1)?, MatRef::row_major(w2, h2, h1)?.t(), false)?;
    // Last layer: d = w3·a2 + b3 (first order); v2 = m2 ⊙ w3 (penalty).
    for ((&e, a2), dv2) in sc.e.iter().zip(sc.a2.chunks_exact(h2)).zip(sc.dv2.chunks_exact(h2)) {
        db3[0] += e;
        for ((gw, &a), &dv) in dw3.iter_mut().zip(a2).zip(dv2) {
            // `a > 0` is the mask m2 (and a = 0 where it is off).
            let pen = if a > T::ZERO { dv } else { T::ZERO };
            *gw += e * a + pen;
        }
    }
    // Biases: pre-activation gradients are e_i·v2_i and e_i·v1_i.
    for ((&e, v2), v1) in sc.e.iter().zip(sc.v2.chunks_exact(h2)).zip(sc.v1.chunks_exact(h1)) {
        for (b, &v) in db2.iter_mut().zip(v2) {
            *b += e * v;
        }
        for (b, &v) in db1.iter_mut().zip(v1) {
            *b += e * v;
        }
    }
    // X1 = diag(e)·U + Ĝ;  X2 = diag(e)·A1 + T̂1.
    for ((&e, x), u) in sc.e.iter().zip(sc.x1.chunks_exact_mut(d)).zip(sc.u.chunks_exact(d)) {
        for (xv, &uv) in x.iter_mut().zip(u) {
            *xv += e * uv;
        }
    }
    for ((&e, x), a) in sc.e.iter().zip(sc.x2.chunks_exact_mut(h1)).zip(sc.a1.chunks_exact(h1)) {
        for (xv, &av) in x.iter_mut().zip(a) {
            *xv += e * av;
        }
    }
    par_gemm(dw1, MatRef::row_major(&sc.v1, r, h1)?.t(), MatRef::row_major(&sc.x1, r, d)?, true)?;
    par_gemm(dw2, MatRef::row_major(&sc.v2, r, h2)?.t(), MatRef::row_major(&sc.x2, r, h1)?, true)
}

/// `mean_i ||g_i||²` over the rows `rows` of `g` (`[·, width]`), in f64.
fn mean_sq_norm<T: Float>(g: &[T], width: usize, rows: core::ops::Range<usize>) -> f64 {
    let len = rows.len();
    let s: f64 = g[rows.start * width..rows.end * width].iter().map(|&v| v.to_f64() * v.to_f64()).sum();
    s / len as f64
}

/// Logits `d(u)` of `n` rows `u` (`[n, y_dim]`). For tests and probes; the
/// training path keeps its activations in a [`DiscScratch`].
pub fn discriminator_logits<T: Float>(lay: &DiscLayout, params: &[T], u: &[T], n: usize) -> Result<Vec<T>> {
    let len = lay.check(params.len(), n)?;
    check_len("prior discriminator input", len, u.len())?;
    let mut sc = DiscScratch::default();
    sc.resize(lay, n);
    sc.u.copy_from_slice(u);
    forward(lay, params, &mut sc, n)?;
    Ok(sc.logit)
}

/// `GP(u) = mean_i ||∂d/∂u_i||²` over the `n` rows of `u` (the inputs of
/// `d`, not pre-sigmoid values). When `grads` is given, accumulates
/// `∂GP/∂θ` into it.
pub fn gradient_penalty<T: Float>(
    lay: &DiscLayout,
    params: &[T],
    u: &[T],
    n: usize,
    grads: Option<&mut [T]>,
    sc: &mut DiscScratch<T>,
) -> Result<f64> {
    let len = lay.check(params.len(), n)?;
    check_len("prior discriminator input", len, u.len())?;
    if let Some(g) = &grads {
        check_len("prior discriminator gradients", lay.len, g.len())?;
    }
    sc.resize(lay, n);
    sc.u.copy_from_slice(u);
    forward(lay, params, sc, n)?;
    input_grad(lay, params, sc, n)?;
    let gp = mean_sq_norm(&sc.g, lay.y_dim, 0..n);
    if let Some(grads) = grads {
        sc.e.fill(T::ZERO);
        backward(lay, params, sc, n, T::ONE / T::from_usize(n), grads)?;
    }
    Ok(gp)
}

/// What one discriminator-loss evaluation reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DiscLoss {
    /// `L_D`, penalty included.
    pub loss: f64,
    /// `½·(GP(z) + GP(σY))`, before λ.
    pub gp: f64,
    /// `GP(z)` on the prior samples.
    pub gp_real: f64,
    /// `GP(σY)` on the encoder samples.
    pub gp_fake: f64,
    /// Mean `d(z)`.
    pub d_real_mean: f64,
    /// Mean `d(σY)`.
    pub d_fake_mean: f64,
    /// `mean sp(−d(σY))`: the encoder's loss before γ, at these weights.
    pub gen_loss: f64,
}

/// The discriminator loss `L_D` on `n` prior samples `z` and `n` encoder
/// outputs `y` (pre-sigmoid, `[n, y_dim]`; used as constants, so nothing
/// flows back to the encoder). When `grads` is given, accumulates
/// `∂L_D/∂θ`, gradient penalty included.
#[allow(clippy::too_many_arguments)]
pub fn discriminator_loss<T: Float>(
    lay: &DiscLayout,
    params: &[T],
    z: &[T],
    y: &[T],
    n: usize,
    lambda: f64,
    grads: Option<&mut [T]>,
    sc: &mut DiscScratch<T>,
) -> Result<DiscLoss> {
    check_weight("prior lambda", lambda)?;
    let len = lay.check(params.len(), n)?;
    check_len("prior samples", len, z.len())?;
    check_len("prior encoder output", len, y.len())?;
    if let Some(g) = &grads {
        check_len("prior discriminator gradients", lay.len, g.len())?;
    }
    let r = n.checked_mul(2).ok_or(Error::Overflow { what: "prior batch" })?;
    // Rows 0..n are the prior samples ("real"), n..2n the encoder's ("fake").
    sc.resize(lay, r);
    let (real, fake) = sc.u.split_at_mut(len);
    real.copy_from_slice(z);
    for (u, &v) in fake.iter_mut().zip(y) {
        *u = sigmoid(v);
    }
    forward(lay, params, sc, r)?;
    input_grad(lay, params, sc, r)?;
    let nf = n as f64;
    let (mut l_real, mut l_fake, mut l_gen, mut d_real, mut d_fake) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for &d in &sc.logit[..n] {
        let d = d.to_f64();
        l_real += softplus(-d);
        d_real += d;
    }
    for &d in &sc.logit[n..] {
        let d = d.to_f64();
        l_fake += softplus(d);
        l_gen += softplus(-d);
        d_fake += d;
    }
    let gp_real = mean_sq_norm(&sc.g, lay.y_dim, 0..n);
    let gp_fake = mean_sq_norm(&sc.g, lay.y_dim, n..r);
    let gp = 0.5 * (gp_real + gp_fake);
    let stats = DiscLoss {
        loss: l_real / nf + l_fake / nf + lambda * gp,
        gp,
        gp_real,
        gp_fake,
        d_real_mean: d_real / nf,
        d_fake_mean: d_fake / nf,
        gen_loss: l_gen / nf,
    };
    if let Some(grads) = grads {
        // ∂sp(−d)/∂d = −σ(−d); ∂sp(d)/∂d = σ(d).
        let inv_n = T::ONE / T::from_usize(n);
        let (er, ef) = sc.e.split_at_mut(n);
        for (e, &d) in er.iter_mut().zip(&sc.logit[..n]) {
            *e = -sigmoid(-d) * inv_n;
        }
        for (e, &d) in ef.iter_mut().zip(&sc.logit[n..]) {
            *e = sigmoid(d) * inv_n;
        }
        backward(lay, params, sc, r, T::from_f64(0.5 * lambda / nf), grads)?;
    }
    Ok(stats)
}

/// The encoder's prior loss `L_E = γ·mean_i sp(−d(σ(y_i)))` on `n` encoder
/// outputs `y` (pre-sigmoid). **Adds** `∂L_E/∂y` into `dy` (through `d` at
/// its current weights and through the sigmoid); the discriminator's
/// parameters and gradients are not involved beyond reading `params`.
pub fn encoder_loss<T: Float>(
    lay: &DiscLayout,
    params: &[T],
    y: &[T],
    n: usize,
    gamma: f64,
    dy: &mut [T],
    sc: &mut DiscScratch<T>,
) -> Result<f64> {
    check_weight("prior gamma", gamma)?;
    let len = lay.check(params.len(), n)?;
    check_len("prior encoder output", len, y.len())?;
    check_len("prior encoder output gradient", len, dy.len())?;
    sc.resize(lay, n);
    for (u, &v) in sc.u.iter_mut().zip(y) {
        *u = sigmoid(v);
    }
    forward(lay, params, sc, n)?;
    input_grad(lay, params, sc, n)?;
    let loss = gamma * sc.logit.iter().map(|&d| softplus(-d.to_f64())).sum::<f64>() / n as f64;
    // ∂L_E/∂u_i = −γ·σ(−d_i)/n · g_i;  ∂u/∂y = u(1 − u).
    let scale = T::from_f64(gamma / n as f64);
    for (((dyr, g), u), &d) in dy
        .chunks_exact_mut(lay.y_dim)
        .zip(sc.g.chunks_exact(lay.y_dim))
        .zip(sc.u.chunks_exact(lay.y_dim))
        .zip(&sc.logit)
    {
        let coef = -scale * sigmoid(-d);
        for ((o, &gv), &uv) in dyr.iter_mut().zip(g).zip(u) {
            *o += coef * gv * uv * (T::ONE - uv);
        }
    }
    Ok(loss)
}

/// What one discriminator step reports (all at the weights *before* the
/// step, i.e. the ones the encoder loss of the same minibatch sees).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PriorStats {
    /// `L_D`, penalty included.
    pub d_loss: f64,
    /// `½·(GP(z) + GP(σY))`, before λ.
    pub gp: f64,
    /// `L_E = γ·mean sp(−d(σY))`.
    pub e_loss: f64,
    /// Mean `d(z)` over the prior samples.
    pub d_real_mean: f64,
    /// Mean `d(σY)` over the encoder samples.
    pub d_fake_mean: f64,
}

/// The prior-matching term: the discriminator's parameters, gradients and
/// Adam state (f32), and the two losses.
///
/// Per training step, on one minibatch's Y: call [`Prior::encoder_loss`]
/// (adds γ·∂L_E/∂Y into the encoder's dY) and [`Prior::discriminator_step`]
/// (one Adam step of `d` on `L_D`, Y detached), in that order, so both see
/// the same `d`, as in the reference where every loss of a step is computed
/// before any optimiser steps.
#[derive(Clone, Debug)]
pub struct Prior {
    cfg: PriorConfig,
    lay: DiscLayout,
    table: ParamTable,
    params: Vec<f32>,
    grads: Vec<f32>,
    adam: AdamState,
    step: u64,
    z: Vec<f32>,
    sc: DiscScratch<f32>,
}

impl Prior {
    /// A discriminator for `y_dim`-wide codes, initialised from `seed` (use
    /// a seed, or a derived stream, distinct from the encoder's).
    pub fn new(y_dim: usize, cfg: PriorConfig, seed: u64) -> Result<Self> {
        cfg.validate()?;
        let (lay, table) = DiscLayout::build(y_dim, cfg.hidden)?;
        let mut params = vec![0f32; table.len()];
        table.init(&mut params, seed);
        let n = table.len();
        Ok(Self {
            cfg,
            lay,
            table,
            params,
            grads: vec![0.0; n],
            adam: AdamState::zeros(n),
            step: 0,
            z: Vec::new(),
            sc: DiscScratch::default(),
        })
    }

    /// The config.
    pub fn config(&self) -> &PriorConfig {
        &self.cfg
    }

    /// The layout, for the generic loss functions.
    pub fn layout(&self) -> &DiscLayout {
        &self.lay
    }

    /// The discriminator's tensors (names, shapes, offsets).
    pub fn table(&self) -> &ParamTable {
        &self.table
    }

    /// Parameter values.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Mutable parameter values (checkpoint restore, tests).
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// The gradient of the last [`Prior::discriminator_step`].
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// Adam's first and second moments and its step count (for checkpoints).
    pub fn adam_state(&self) -> (&[f32], &[f32], u64) {
        (&self.adam.m, &self.adam.v, self.step)
    }

    /// Restores Adam's moments and step count.
    pub fn set_adam_state(&mut self, m: &[f32], v: &[f32], step: u64) -> Result<()> {
        check_len("prior adam first moments", self.adam.m.len(), m.len())?;
        check_len("prior adam second moments", self.adam.v.len(), v.len())?;
        self.adam.m.copy_from_slice(m);
        self.adam.v.copy_from_slice(v);
        self.step = step;
        Ok(())
    }

    /// `L_E = γ·mean sp(−d(σY))` on `n` rows of `y` (`[n, y_dim]`); adds
    /// `∂L_E/∂Y` into `dy`. Leaves the discriminator untouched.
    pub fn encoder_loss(&mut self, y: &[f32], n: usize, dy: &mut [f32]) -> Result<f64> {
        encoder_loss(&self.lay, &self.params, y, n, self.cfg.gamma, dy, &mut self.sc)
    }

    /// One Adam step of the discriminator on `L_D`, with `n` fresh prior
    /// samples drawn from `rng` (row-major, `n·y_dim` uniform draws) and the
    /// `n` rows of `y` as constants. Stats are at the pre-step weights. A
    /// non-finite loss skips the update (the parameters stay usable) and is
    /// reported in `d_loss` for the caller to act on.
    pub fn discriminator_step(&mut self, y: &[f32], n: usize, rng: &mut Rng) -> Result<PriorStats> {
        let len = self.lay.check(self.params.len(), n)?;
        check_len("prior encoder output", len, y.len())?;
        self.z.resize(len, 0.0);
        self.z.iter_mut().for_each(|v| *v = rng.uniform() as f32);
        self.grads.par_chunks_mut(ADAM_CHUNK).for_each(|g| g.fill(0.0));
        let s = discriminator_loss(
            &self.lay,
            &self.params,
            &self.z,
            y,
            n,
            self.cfg.lambda,
            Some(&mut self.grads),
            &mut self.sc,
        )?;
        let stats = PriorStats {
            d_loss: s.loss,
            gp: s.gp,
            e_loss: self.cfg.gamma * s.gen_loss,
            d_real_mean: s.d_real_mean,
            d_fake_mean: s.d_fake_mean,
        };
        if !s.loss.is_finite() {
            return Ok(stats);
        }
        self.step += 1;
        let (t, cfg) = (self.step, self.cfg.adam);
        let all = 0..self.params.len();
        self.adam.step(&cfg, t, &mut self.params, &self.grads, all)?;
        Ok(stats)
    }
}
