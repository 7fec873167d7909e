//! Local DIM's encode-and-dot-product term (docs/method.md §4.1): the
//! local head embeds every location of the local map, the globals (Y, or
//! the multiple globals) are embedded by the global head where their width
//! is not D already, and all N·K × N·P scores come from one GEMM. The term
//! runs forward, the estimator and backward in one call, leaving the
//! gradients of the local rows and of Y (or of the local map, through the
//! multiple globals) for the encoder's backward.

use crate::dim::config::Estimator;
use crate::dim::estimator::{EstimatorStats, ScoreShape, estimate};
use crate::dim::head::{HeadActs, MiHead};
use crate::dim::multi::{MultiActs, MultiGlobalNet};
use crate::error::Result;
use crate::kernels::{MatRef, par};
use crate::nn::{Ctx, Mode};

/// The term's units, borrowed from the model.
pub(crate) struct DotTerm<'m> {
    pub local_head: &'m MiHead,
    /// `None` when the globals are D wide already.
    pub global_head: Option<&'m MiHead>,
    /// The multiple globals' net, when configured.
    pub multi: Option<&'m MultiGlobalNet>,
}

/// The term's activations, borrowed from the workspace.
pub(crate) struct DotActs<'w> {
    pub local: &'w mut HeadActs,
    pub global: Option<&'w mut HeadActs>,
    pub multi: Option<&'w mut MultiActs>,
    pub scores: &'w mut [f32],
    pub d_scores: &'w mut [f32],
    pub d_g: &'w mut [f32],
}

/// What the term reads: the local map's rows `[N·P, C]`, the local map of
/// the pass the globals come from, and that pass's Y.
pub(crate) struct LocalInputs<'a> {
    pub rows: &'a [f32],
    pub map: &'a [f32],
    pub y: &'a [f32],
    pub n: usize,
    pub p: usize,
    /// The estimator, its weight β, and (seed, step) for sampled globals.
    pub est: Estimator,
    pub beta: f32,
    pub seed: u64,
    pub step: u64,
}

impl DotTerm<'_> {
    /// Forward, estimator, backward. Writes `d_rows` (`[N·P, C]`) and `d_y`
    /// (zero with multiple globals, whose local-map gradient stays in their
    /// activations); accumulates every parameter gradient into `ctx.grads`.
    pub fn step(
        &self,
        ctx: &mut Ctx<'_>,
        x: &LocalInputs<'_>,
        acts: DotActs<'_>,
        d_rows: &mut [f32],
        d_y: &mut [f32],
    ) -> Result<EstimatorStats> {
        let (n, p, d) = (x.n, x.p, self.local_head.d);
        let DotActs { local: lacts, global: mut gh, multi: mut macts, scores, d_scores, d_g } = acts;
        // Heads, then all N·K×N·P scores from one GEMM.
        self.local_head.forward(ctx.params, ctx.buffers, x.rows, lacts, Mode::Train)?;
        let (g, ks): (&[f32], usize) = match (self.multi, macts.as_deref_mut()) {
            (Some(mg), Some(ma)) => {
                mg.forward(ctx.params, ctx.buffers, x.map, ma)?;
                let full: &[f32] = match (self.global_head, gh.as_deref_mut()) {
                    (Some(ghd), Some(acts)) => {
                        ghd.forward(ctx.params, ctx.buffers, &ma.rows, acts, Mode::Train)?;
                        &acts.out
                    }
                    _ => &ma.rows,
                };
                match ma.sample.as_mut() {
                    Some(smp) => (smp.gather(full, mg.k, d, x.seed, x.step), mg.scored),
                    None => (full, mg.k),
                }
            }
            _ => {
                let g: &[f32] = match (self.global_head, gh.as_deref_mut()) {
                    (Some(ghd), Some(acts)) => {
                        ghd.forward(ctx.params, ctx.buffers, x.y, acts, Mode::Train)?;
                        &acts.out
                    }
                    _ => x.y,
                };
                (g, 1)
            }
        };
        let gm = MatRef::row_major(g, n * ks, d)?;
        let lm = MatRef::row_major(&lacts.out, n * p, d)?;
        par::par_gemm(scores, gm, lm.t(), false)?;
        let local = estimate(x.est, ScoreShape { n, k: ks, p }, scores, d_scores, x.beta)?;

        // Backward: scores → heads.
        let dsm = MatRef::row_major(d_scores, n * ks, n * p)?;
        par::par_gemm(&mut lacts.d_out, dsm.t(), gm, false)?;
        par::par_gemm(d_g, dsm, lm, false)?;
        self.local_head.backward(ctx.params, ctx.grads, x.rows, lacts, d_rows)?;
        match (self.multi, macts) {
            (Some(mg), Some(ma)) => {
                let d_full: &[f32] = match ma.sample.as_mut() {
                    Some(smp) => smp.scatter(d_g, d),
                    None => d_g,
                };
                match (self.global_head, gh) {
                    (Some(ghd), Some(acts)) => {
                        acts.d_out.copy_from_slice(d_full);
                        ghd.backward(ctx.params, ctx.grads, &ma.rows, acts, &mut ma.d_rows)?;
                    }
                    _ => ma.d_rows.copy_from_slice(d_full),
                }
                mg.backward(ctx.params, ctx.grads, x.map, ma)?;
                d_y.fill(0.0);
            }
            _ => match (self.global_head, gh) {
                (Some(ghd), Some(acts)) => {
                    acts.d_out.copy_from_slice(d_g);
                    ghd.backward(ctx.params, ctx.grads, x.y, acts, d_y)?;
                }
                _ => d_y.copy_from_slice(d_g),
            },
        }
        Ok(local)
    }
}
