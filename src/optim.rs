//! Adam over flat buffers: one parameter slice, one gradient slice and two
//! moment slices, updated in one pass. `no_std`, no heap.
//!
//! The update is PyTorch's `torch.optim.Adam` (no weight decay, no amsgrad),
//! in the same operation order, so one step matches PyTorch to rounding.

use crate::error::{Error, Result, check_len};
use crate::kernels::Float;

/// Adam hyper-parameters. DIM's defaults (cortex): lr 1e-4, betas (0.5, 0.999).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self::dim()
    }
}

impl AdamConfig {
    /// DIM's encoder optimiser: lr 1e-4, betas (0.5, 0.999), eps 1e-8.
    pub const fn dim() -> Self {
        Self { lr: 1e-4, beta1: 0.5, beta2: 0.999, eps: 1e-8 }
    }

    /// PyTorch's defaults with a given learning rate: betas (0.9, 0.999).
    pub const fn torch_default(lr: f64) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }

    /// Checks every field is in range.
    pub fn validate(&self) -> Result<()> {
        crate::bounds::LR.check_f64(self.lr)?;
        crate::bounds::BETA1.check_f64(self.beta1)?;
        crate::bounds::BETA2.check_f64(self.beta2)?;
        crate::bounds::EPS.check_f64(self.eps)
    }
}

/// Gradients and both moments must be as long as the parameters.
fn check_lens(params: &[f32], grads: &[f32], m: &[f32], v: &[f32]) -> Result<()> {
    let n = params.len();
    check_len("adam gradients", n, grads.len())?;
    check_len("adam first moments", n, m.len())?;
    check_len("adam second moments", n, v.len())
}

/// Adam's two moment buffers for one slice of parameters, updated in place.
#[derive(Debug)]
pub struct AdamMoments<'a> {
    /// First moments.
    pub m: &'a mut [f32],
    /// Second moments.
    pub v: &'a mut [f32],
}

/// One Adam step at 1-based step `t` over matching slices.
pub fn adam_step(cfg: &AdamConfig, t: u64, params: &mut [f32], grads: &[f32], mv: AdamMoments<'_>) -> Result<()> {
    let AdamMoments { m, v } = mv;
    cfg.validate()?;
    if t == 0 {
        return Err(Error::InvalidParameter { what: "adam step", reason: "steps count from 1" });
    }
    check_lens(params, grads, m, v)?;
    let ti = i32::try_from(t).unwrap_or(i32::MAX);
    let bc1 = 1.0 - libm::pow(cfg.beta1, f64::from(ti));
    let bc2 = 1.0 - libm::pow(cfg.beta2, f64::from(ti));
    let step_size = (cfg.lr / bc1) as f32;
    let bc2_sqrt = Float::sqrt(bc2) as f32;
    let (b1, b2, eps) = (cfg.beta1 as f32, cfg.beta2 as f32, cfg.eps as f32);
    for (((p, &g), mi), vi) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
        *mi = b1 * *mi + (1.0 - b1) * g;
        *vi = b2 * *vi + (1.0 - b2) * g * g;
        let denom = Float::sqrt(*vi) / bc2_sqrt + eps;
        *p -= step_size * *mi / denom;
    }
    Ok(())
}

/// Adam's state for one flat parameter vector: both moments, laid out like
/// the parameters. Every trained thing of the crate (encoder and heads,
/// prior discriminator, probes) keeps its state in one of these; a
/// checkpoint stores it as `optim.m.*` and `optim.v.*`.
#[cfg(feature = "std")]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AdamState {
    /// First moments.
    pub m: Vec<f32>,
    /// Second moments.
    pub v: Vec<f32>,
}

#[cfg(feature = "std")]
impl AdamState {
    /// Zero moments for `n` parameters.
    pub fn zeros(n: usize) -> Self {
        Self { m: vec![0.0; n], v: vec![0.0; n] }
    }

    /// One Adam step at 1-based step `t` over the parameters in `range`
    /// (all of them for `0..params.len()`), across cores with feature
    /// `parallel` (same bits as serial: the update is element-wise).
    pub fn step(
        &mut self,
        cfg: &AdamConfig,
        t: u64,
        params: &mut [f32],
        grads: &[f32],
        range: core::ops::Range<usize>,
    ) -> Result<()> {
        let bad = Error::InvalidShape { what: "adam range", reason: "past the parameters or the moments" };
        let (Some(p), Some(g), Some(m), Some(v)) = (
            params.get_mut(range.clone()),
            grads.get(range.clone()),
            self.m.get_mut(range.clone()),
            self.v.get_mut(range),
        ) else {
            return Err(bad);
        };
        #[cfg(feature = "parallel")]
        {
            adam_step_par(cfg, t, p, g, AdamMoments { m, v })
        }
        #[cfg(not(feature = "parallel"))]
        {
            adam_step(cfg, t, p, g, AdamMoments { m, v })
        }
    }
}

/// Elements per task of [`adam_step_par`].
#[cfg(feature = "parallel")]
const PAR_CHUNK: usize = 1 << 16;

/// [`adam_step`] across cores in fixed chunks: the update is element-wise,
/// so any split gives the same bits as one serial call.
#[cfg(feature = "parallel")]
pub fn adam_step_par(cfg: &AdamConfig, t: u64, params: &mut [f32], grads: &[f32], mv: AdamMoments<'_>) -> Result<()> {
    use rayon::prelude::*;
    let AdamMoments { m, v } = mv;
    check_lens(params, grads, m, v)?;
    params
        .par_chunks_mut(PAR_CHUNK)
        .zip(grads.par_chunks(PAR_CHUNK))
        .zip(m.par_chunks_mut(PAR_CHUNK).zip(v.par_chunks_mut(PAR_CHUNK)))
        .try_for_each(|((p, g), (m, v))| adam_step(cfg, t, p, g, AdamMoments { m, v }))
}
