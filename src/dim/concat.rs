//! Local DIM's concat-and-convolve head (docs/method.md §4.2), with the first
//! public code's pairing (docs/method.md §4.2, Aug 2018): every location p of image i is scored
//! once against its own Y (positive) and once against the local vector at
//! p of image π(i) (negative), through 1×1 convs `[l; y] → H → H → 1` with
//! ReLUs and no BN.
//!
//! Choices, where the reference left room:
//! - π is a uniformly random cyclic permutation (Sattolo), drawn per step
//!   from the seed and the step, so no image is its own negative (the
//!   reference's `randperm` paired an image with itself with probability
//!   1/N, a label-noise bug) and a resumed run draws the same pairs.
//! - The first layer is never applied to a concatenated tensor:
//!   `W1 [l; y] = W1_l l + W1_y y`, so `W1_l l` is computed once per
//!   location and `W1_y y` once per image, then added per pair.
//! - The hidden width H is the config's `mi_units` (the paper used 512).

use rayon::prelude::*;

use crate::dim::block::{relu, relu_mask};
use crate::dim::config::Estimator;
use crate::dim::estimator::{EstimatorStats, estimate_pairs};
use crate::error::{Error, Result};
use crate::kernels::{self as k, InputGrad, MatRef, par};
use crate::nn::{Builder, Conv2d, Ctx, Linear};
use crate::rng::Rng;

/// Stream that draws the negative permutation of each step.
const PERM_STREAM: u64 = 0x434F_4E43_4154;

/// The concat-and-convolve head's units: three 1×1 convs, the last two run
/// as linear layers over the pair rows.
#[derive(Clone, Debug)]
pub(crate) struct ConcatHead {
    c: usize,
    y_dim: usize,
    h: usize,
    l1: Conv2d,
    l2: Linear,
    l3: Linear,
}

/// Activations of the head at one batch size. Pair rows are ordered: all
/// positives `(i, p)`, then all negatives `(i, p)`.
#[derive(Debug)]
pub(crate) struct ConcatActs {
    n: usize,
    p: usize,
    /// π: image i's negatives come from image `perm[i]`.
    perm: Vec<usize>,
    /// `W1_l l` per location `[N·P, H]`.
    a: Vec<f32>,
    /// `W1_y y + b1` per image `[N, H]`.
    b: Vec<f32>,
    /// First hidden layer after ReLU `[2·N·P, H]`.
    h1: Vec<f32>,
    /// Second hidden layer after ReLU `[2·N·P, H]`.
    h2: Vec<f32>,
    /// Scores `[2·N·P]`.
    t: Vec<f32>,
    dt: Vec<f32>,
    dh2: Vec<f32>,
    dh1: Vec<f32>,
    da: Vec<f32>,
    db: Vec<f32>,
    dw_l: Vec<f32>,
    dw_y: Vec<f32>,
    /// `dB · W1_y`, added into the caller's `d_y`.
    dy: Vec<f32>,
    /// π⁻¹.
    inv: Vec<usize>,
}

impl ConcatHead {
    /// Registers `local_head.concat.{l1,l2,l3}.{weight,bias}` as PyTorch 1×1
    /// conv tensors (`[out, in, 1, 1]`); `l1`'s input channels are the local
    /// map's C followed by Y's.
    pub fn new(b: &mut Builder<'_>, c: usize, y_dim: usize, h: usize) -> Result<Self> {
        let conv = |b: &mut Builder<'_>, i: usize, c_in: usize, out: usize| {
            b.conv2d(format!("local_head.concat.l{i}"), [c_in, 1, 1], out, [1, 1, 0], true)
        };
        let l1 = conv(b, 1, c + y_dim, h);
        let not_1x1 = Error::InvalidShape { what: "concat head", reason: "layer is not a 1x1 conv" };
        let l2 = conv(b, 2, h, h).as_linear().ok_or(not_1x1)?;
        let l3 = conv(b, 3, h, 1).as_linear().ok_or(not_1x1)?;
        Ok(Self { c, y_dim, h, l1, l2, l3 })
    }

    /// Activations for `n` images of `p` locations.
    pub fn alloc(&self, n: usize, p: usize) -> Result<ConcatActs> {
        let h = self.h;
        let pairs = crate::error::checked_product("concat-head pairs", &[2, n, p])?;
        let big = crate::error::checked_product("concat-head activations", &[pairs, h])?;
        let z = |len: usize| vec![0f32; len];
        Ok(ConcatActs {
            n,
            p,
            perm: (0..n).collect(),
            a: z(n * p * h),
            b: z(n * h),
            h1: z(big),
            h2: z(big),
            t: z(pairs),
            dt: z(pairs),
            dh2: z(big),
            dh1: z(big),
            da: z(n * p * h),
            db: z(n * h),
            dw_l: z(h * self.c),
            dw_y: z(h * self.y_dim),
            dy: z(n * self.y_dim),
            inv: vec![0; n],
        })
    }

    /// Draws π for `step`: a uniform cyclic permutation (no fixed points).
    fn draw_perm(perm: &mut [usize], seed: u64, step: u64) {
        let mut rng = Rng::derive(seed ^ PERM_STREAM, step);
        for (i, v) in perm.iter_mut().enumerate() {
            *v = i;
        }
        // Sattolo: swap i with a uniform j < i, from the top down.
        for i in (1..perm.len()).rev() {
            let j = rng.below_usize(i);
            perm.swap(i, j);
        }
    }

    /// The negative permutation of the last forward.
    pub fn perm<'a>(&self, acts: &'a ConcatActs) -> &'a [usize] {
        &acts.perm
    }

    /// Forward, estimator and backward in one: scores every pair, writes
    /// `d_local` (`[N·P, C]`, overwritten), adds into `d_y` (`[N, y_dim]`)
    /// and accumulates parameter gradients, all scaled by `beta`.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        params: &[f32],
        grads: &mut [f32],
        local_rows: &[f32],
        y: &[f32],
        acts: &mut ConcatActs,
        est: Estimator,
        beta: f32,
        seed: u64,
        step: u64,
        d_local: &mut [f32],
        d_y: &mut [f32],
    ) -> Result<EstimatorStats> {
        let (n, p, h, c, yd) = (acts.n, acts.p, self.h, self.c, self.y_dim);
        let np = n * p;
        crate::error::check_len("concat-head local rows", np * c, local_rows.len())?;
        crate::error::check_len("concat-head Y", n * yd, y.len())?;
        crate::error::check_len("concat-head local gradient", np * c, d_local.len())?;
        crate::error::check_len("concat-head Y gradient", n * yd, d_y.len())?;
        if n < 2 {
            return Err(Error::InvalidShape { what: "concat head", reason: "needs at least 2 images (negatives)" });
        }
        Self::draw_perm(&mut acts.perm, seed, step);
        let fan1 = c + yd;
        let mut ctx = Ctx::backward(params, grads);
        let w1 = self.l1.w.of(params)?;
        let w1_l = MatRef::new(w1, h, c, fan1, 1)?;
        let w1_y = MatRef::new(&w1[c..], h, yd, fan1, 1)?;
        let lm = MatRef::row_major(local_rows, np, c)?;
        let ym = MatRef::row_major(y, n, yd)?;

        // Layer 1, split: A = L·W1_lᵀ, B = Y·W1_yᵀ + b1, row (i,p) = A[π·] + B[i].
        par::par_gemm(&mut acts.a, lm, w1_l.t(), false)?;
        par::par_gemm(&mut acts.b, ym, w1_y.t(), false)?;
        let b1_id = self.l1.b.ok_or(Error::InvalidShape { what: "concat head", reason: "layer 1 has no bias" })?;
        let b1 = b1_id.of(params)?;
        acts.b.par_chunks_mut(h).for_each(|row| k::linear::add_bias_rows(row, b1));
        {
            let (a, b, perm) = (&acts.a, &acts.b, &acts.perm);
            let (pos, neg) = acts.h1.split_at_mut(np * h);
            let fill = |rows: &mut [f32], src_img: &(dyn Fn(usize) -> usize + Sync)| {
                rows.par_chunks_mut(p * h).enumerate().for_each(|(i, img)| {
                    let bi = &b[i * h..(i + 1) * h];
                    let j = src_img(i);
                    for (pi, row) in img.chunks_exact_mut(h).enumerate() {
                        let ar = &a[(j * p + pi) * h..(j * p + pi + 1) * h];
                        for ((z, &av), &bv) in row.iter_mut().zip(ar).zip(bi) {
                            *z = (av + bv).max(0.0);
                        }
                    }
                });
            };
            fill(pos, &|i| i);
            fill(neg, &|i| perm[i]);
        }
        // Layers 2 and 3.
        let rows = 2 * np;
        self.l2.forward(&ctx, rows, &acts.h1, &mut acts.h2)?;
        relu(&mut acts.h2);
        self.l3.forward(&ctx, rows, &acts.h2, &mut acts.t)?;

        // Estimator.
        let stats = {
            let (tp, tn) = acts.t.split_at(np);
            let (dp, dn) = acts.dt.split_at_mut(np);
            estimate_pairs(est, tp, tn, dp, dn, beta)?
        };

        // Backward through layers 3 and 2.
        self.l3.backward(&mut ctx, rows, &acts.h2, &acts.dt, Some(InputGrad::Write(&mut acts.dh2)))?;
        relu_mask(&mut acts.dh2, &acts.h2);
        self.l2.backward(&mut ctx, rows, &acts.h1, &acts.dh2, Some(InputGrad::Write(&mut acts.dh1)))?;
        relu_mask(&mut acts.dh1, &acts.h1);

        // Layer 1: dA[j,p] = dZ⁺[j,p] + dZ⁻[π⁻¹(j),p]; dB[i] = Σ_p dZ⁺[i,p] + dZ⁻[i,p].
        for (i, &j) in acts.perm.iter().enumerate() {
            acts.inv[j] = i;
        }
        {
            let inv = &acts.inv;
            let (dpos, dneg) = acts.dh1.split_at(np * h);
            acts.da.par_chunks_mut(p * h).enumerate().for_each(|(j, img)| {
                let i = inv[j];
                let (sp, sn) = (&dpos[j * p * h..(j + 1) * p * h], &dneg[i * p * h..(i + 1) * p * h]);
                for ((d, &a), &b) in img.iter_mut().zip(sp).zip(sn) {
                    *d = a + b;
                }
            });
            acts.db.par_chunks_mut(h).enumerate().for_each(|(i, row)| {
                row.fill(0.0);
                for src in [&dpos[i * p * h..(i + 1) * p * h], &dneg[i * p * h..(i + 1) * p * h]] {
                    for r in src.chunks_exact(h) {
                        for (d, &v) in row.iter_mut().zip(r) {
                            *d += v;
                        }
                    }
                }
            });
        }
        par::col_sums_add(&acts.db, b1_id.of_mut(ctx.grads)?);
        let dam = MatRef::row_major(&acts.da, np, h)?;
        let dbm = MatRef::row_major(&acts.db, n, h)?;
        par::par_gemm(d_local, dam, w1_l, false)?;
        par::par_gemm(&mut acts.dw_l, dam.t(), lm, false)?;
        par::par_gemm(&mut acts.dw_y, dbm.t(), ym, false)?;
        par::par_gemm(&mut acts.dy, dbm, w1_y, false)?;
        for (d, &v) in d_y.iter_mut().zip(&acts.dy) {
            *d += v;
        }
        let gw1 = self.l1.w.of_mut(ctx.grads)?;
        for ((row, dl), dy) in gw1.chunks_exact_mut(fan1).zip(acts.dw_l.chunks_exact(c)).zip(acts.dw_y.chunks_exact(yd))
        {
            for (g, &v) in row[..c].iter_mut().zip(dl) {
                *g += v;
            }
            for (g, &v) in row[c..].iter_mut().zip(dy) {
                *g += v;
            }
        }
        Ok(stats)
    }
}
