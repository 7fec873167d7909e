//! The three MI estimators over a score matrix (docs/method.md §3), loss and gradient
//! in one pass.
//!
//! Scores are laid out `S[(i, k), (j, p)]`: one row per global vector k of
//! image i, one column per local vector p of image j. Positives are j = i,
//! negatives j ≠ i (every location of every other image). The returned loss
//! is minimised; `mi` is the matching estimate in nats.

use crate::dim::config::Estimator;
use crate::error::{Error, Result, check_len};
use rayon::prelude::*;

use crate::kernels::{Float, sigmoid};

/// `sp(x) − ln 2 = ln((1 + eˣ)/2)`, exactly 0 at x = 0 (so the shifted JSD
/// is exactly 0 when all scores are 0) and stable for any x.
fn softplus_minus_ln2(x: f64) -> f64 {
    if x < 30.0 { (x.exp_m1() / 2.0).ln_1p() } else { x - core::f64::consts::LN_2 + (-x).exp().ln_1p() }
}

/// `(sp(x) − ln 2, σ(x))` from one `exp` and one `log1p`: with
/// `e = e^−|x|`, `sp(x) = max(x, 0) + log1p(e)` and `σ(x)` is `1/(1 + e)`
/// or `e/(1 + e)`. Exactly `(0, ½)` at `x = 0`.
fn softplus_minus_ln2_and_sigmoid(x: f64) -> (f64, f64) {
    if x == 0.0 {
        // Exact by construction, not by the libm's log1p(1) = ln 2.
        return (0.0, 0.5);
    }
    let e = (-x.abs()).exp();
    let sp = x.max(0.0) + e.ln_1p() - core::f64::consts::LN_2;
    let sig = if x >= 0.0 { 1.0 / (1.0 + e) } else { e / (1.0 + e) };
    (sp, sig)
}

/// What one estimator evaluation reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct EstimatorStats {
    /// The loss (spec sign conventions, docs/method.md §9.2).
    pub loss: f64,
    /// The MI estimate of this estimator, in nats.
    pub mi: f64,
    /// Mean positive score.
    pub pos_mean: f64,
    /// Mean negative score.
    pub neg_mean: f64,
}

/// Shape of a score matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScoreShape {
    /// Images N.
    pub n: usize,
    /// Global vectors per image K.
    pub k: usize,
    /// Local vectors per image P.
    pub p: usize,
}

impl ScoreShape {
    /// Rows N·K.
    pub fn rows(&self) -> usize {
        self.n * self.k
    }

    /// Columns N·P.
    pub fn cols(&self) -> usize {
        self.n * self.p
    }

    fn validate(&self) -> Result<usize> {
        if self.n < 2 {
            return Err(Error::InvalidShape { what: "DIM scores", reason: "need a batch of at least 2 (negatives)" });
        }
        if self.k == 0 || self.p == 0 {
            return Err(Error::ZeroSize { what: "DIM scores (globals or locations)" });
        }
        crate::error::checked_product("DIM scores", &[self.n, self.k, self.n, self.p])
    }
}

/// Loss, stats and `ds = scale · ∂loss/∂S` for estimator `est`.
pub fn estimate<T: Float>(est: Estimator, sh: ScoreShape, s: &[T], ds: &mut [T], scale: T) -> Result<EstimatorStats> {
    let len = sh.validate()?;
    check_len("DIM scores", len, s.len())?;
    check_len("DIM score gradient", len, ds.len())?;
    let (n, p, cols) = (sh.n, sh.p, sh.cols());
    let n_pos = (sh.rows() * p) as f64;
    let n_neg = (sh.rows() * (n - 1) * p) as f64;
    let image_of_row = |r: usize| r / sh.k;
    // Positive/negative means (reported for every estimator). Rows run in
    // parallel; each row sums serially and the rows' sums are added in row
    // order, so the result never depends on the thread count.
    let row_sums = |f: &(dyn Fn(usize, &[T]) -> [f64; 2] + Sync)| -> [f64; 2] {
        let parts: Vec<[f64; 2]> = s.par_chunks_exact(cols).enumerate().map(|(r, row)| f(r, row)).collect();
        parts.iter().fold([0.0; 2], |a, b| [a[0] + b[0], a[1] + b[1]])
    };
    let [pos_sum, neg_sum] = row_sums(&|r, row| {
        let (lo, hi) = (image_of_row(r) * p, (image_of_row(r) + 1) * p);
        let sum = |v: &[T]| v.iter().map(|x| x.to_f64()).sum::<f64>();
        [sum(&row[lo..hi]), sum(&row[..lo]) + sum(&row[hi..])]
    });
    let (pos_mean, neg_mean) = (pos_sum / n_pos, neg_sum / n_neg);
    let stats = match est {
        Estimator::Jsd => {
            // L = mean_neg [sp(S) − ln 2] + mean_pos [sp(−S) − ln 2]: the
            // reference's shifted JSD, summed per group in f64. Per element
            // one exp and one log1p give both sp(x) − ln 2 and σ(x).
            let (wp, wn) = (1.0 / n_pos, 1.0 / n_neg);
            let parts: Vec<[f64; 2]> = s
                .par_chunks_exact(cols)
                .zip(ds.par_chunks_exact_mut(cols))
                .enumerate()
                .map(|(r, (row, drow))| {
                    let i = image_of_row(r);
                    let (mut lp, mut ln) = (0f64, 0f64);
                    for (c, (&v, d)) in row.iter().zip(drow.iter_mut()).enumerate() {
                        let (x, w) = if c / p == i { (-v.to_f64(), -wp) } else { (v.to_f64(), wn) };
                        let (sp, sig) = softplus_minus_ln2_and_sigmoid(x);
                        if c / p == i {
                            lp += sp;
                        } else {
                            ln += sp;
                        }
                        *d = scale * T::from_f64(w * sig);
                    }
                    [lp, ln]
                })
                .collect();
            let [lp, ln] = parts.iter().fold([0.0; 2], |a, b| [a[0] + b[0], a[1] + b[1]]);
            let loss = lp * wp + ln * wn;
            EstimatorStats { loss, mi: -loss, pos_mean, neg_mean }
        }
        Estimator::Nce => {
            // Per row: L⁻ = log Σ_{j≠i, p'} e^S; per positive:
            // loss = logaddexp(S⁺, L⁻) − S⁺ (the negatives are shared by all p).
            let w = 1.0 / n_pos;
            let parts: Vec<f64> = s
                .par_chunks_exact(cols)
                .zip(ds.par_chunks_exact_mut(cols))
                .enumerate()
                .map(|(r, (row, drow))| {
                    let i = image_of_row(r);
                    let negs = row[..i * p].iter().chain(&row[(i + 1) * p..]);
                    let m = negs.clone().fold(f64::NEG_INFINITY, |a, &v| a.max(v.to_f64()));
                    let lneg = m + negs.map(|&v| (v.to_f64() - m).exp()).sum::<f64>().ln();
                    // Σ_p ∂loss/∂L⁻ = Σ_p e^{L⁻ − t_p}.
                    let (mut coef, mut loss) = (0f64, 0f64);
                    for pi in 0..p {
                        let sp = row[i * p + pi].to_f64();
                        let t = sp.max(lneg) + (-(sp - lneg).abs()).exp().ln_1p();
                        loss += w * (t - sp);
                        drow[i * p + pi] = scale * T::from_f64(w * ((sp - t).exp() - 1.0));
                        coef += w * (lneg - t).exp();
                    }
                    for (c, d) in drow.iter_mut().enumerate() {
                        if c / p != i {
                            *d = scale * T::from_f64(coef * (row[c].to_f64() - lneg).exp());
                        }
                    }
                    loss
                })
                .collect();
            let loss = parts.iter().sum::<f64>();
            let bound = (1.0 + ((n - 1) * p) as f64).ln();
            EstimatorStats { loss, mi: bound - loss, pos_mean, neg_mean }
        }
        Estimator::Dv => {
            // L = log Σ_neg e^S − log(#neg) − mean_pos S (one pooled
            // log-mean-exp over all negatives of the batch, docs/method.md §3.3; the proper
            // normaliser, so L = 0 when all scores are equal).
            let mut m = f64::NEG_INFINITY;
            for (r, row) in s.chunks_exact(cols).enumerate() {
                let i = image_of_row(r);
                for (c, &v) in row.iter().enumerate() {
                    if c / p != i {
                        m = m.max(v.to_f64());
                    }
                }
            }
            let mut sum = 0f64;
            for (r, row) in s.chunks_exact(cols).enumerate() {
                let i = image_of_row(r);
                for (c, &v) in row.iter().enumerate() {
                    if c / p != i {
                        sum += (v.to_f64() - m).exp();
                    }
                }
            }
            let lse = m + sum.ln();
            let loss = lse - n_neg.ln() - pos_mean;
            for (r, (row, drow)) in s.chunks_exact(cols).zip(ds.chunks_exact_mut(cols)).enumerate() {
                let i = image_of_row(r);
                for (c, (&v, d)) in row.iter().zip(drow.iter_mut()).enumerate() {
                    let g = if c / p == i { -1.0 / n_pos } else { (v.to_f64() - lse).exp() };
                    *d = scale * T::from_f64(g);
                }
            }
            EstimatorStats { loss, mi: -loss, pos_mean, neg_mean }
        }
    };
    Ok(stats)
}

/// Loss, stats and gradients for one negative per positive (the
/// concat-and-convolve head, docs/method.md §3.5 Aug-2018): `pos[r]` scores a true
/// (local, global) pair, `neg[r]` the same global against another image's
/// local vector at the same location. `dpos`, `dneg` receive
/// `scale · ∂loss/∂score`. The forms are those of [`estimate`] with one
/// negative per row, so the two agree on any batch of two single-location
/// images.
pub fn estimate_pairs<T: Float>(
    est: Estimator,
    pos: &[T],
    neg: &[T],
    dpos: &mut [T],
    dneg: &mut [T],
    scale: T,
) -> Result<EstimatorStats> {
    if pos.is_empty() {
        return Err(Error::ZeroSize { what: "DIM pair scores" });
    }
    check_len("DIM negative scores", pos.len(), neg.len())?;
    check_len("DIM positive score gradient", pos.len(), dpos.len())?;
    check_len("DIM negative score gradient", pos.len(), dneg.len())?;
    let cnt = pos.len() as f64;
    let w = 1.0 / cnt;
    let pos_mean = pos.iter().map(|v| v.to_f64()).sum::<f64>() * w;
    let neg_mean = neg.iter().map(|v| v.to_f64()).sum::<f64>() * w;
    let stats = match est {
        Estimator::Jsd => {
            let (mut lp, mut ln) = (0f64, 0f64);
            for ((&sp, &sn), (dp, dn)) in pos.iter().zip(neg).zip(dpos.iter_mut().zip(dneg.iter_mut())) {
                lp += softplus_minus_ln2(-sp.to_f64());
                ln += softplus_minus_ln2(sn.to_f64());
                *dp = scale * T::from_f64(-w) * sigmoid(-sp);
                *dn = scale * T::from_f64(w) * sigmoid(sn);
            }
            let loss = (lp + ln) * w;
            EstimatorStats { loss, mi: -loss, pos_mean, neg_mean }
        }
        Estimator::Nce => {
            // Per pair: logaddexp(S⁺, S⁻) − S⁺ (a two-way softmax).
            let mut loss = 0f64;
            for ((&sp, &sn), (dp, dn)) in pos.iter().zip(neg).zip(dpos.iter_mut().zip(dneg.iter_mut())) {
                let (a, b) = (sp.to_f64(), sn.to_f64());
                let t = a.max(b) + (-(a - b).abs()).exp().ln_1p();
                loss += w * (t - a);
                *dp = scale * T::from_f64(w * ((a - t).exp() - 1.0));
                *dn = scale * T::from_f64(w * (b - t).exp());
            }
            EstimatorStats { loss, mi: core::f64::consts::LN_2 - loss, pos_mean, neg_mean }
        }
        Estimator::Dv => {
            // log mean e^{S⁻} − mean S⁺, max-shifted.
            let m = neg.iter().fold(f64::NEG_INFINITY, |a, v| a.max(v.to_f64()));
            let lse = m + neg.iter().map(|v| (v.to_f64() - m).exp()).sum::<f64>().ln();
            let loss = lse - cnt.ln() - pos_mean;
            for ((&sn, dp), dn) in neg.iter().zip(dpos.iter_mut()).zip(dneg.iter_mut()) {
                *dp = scale * T::from_f64(-w);
                *dn = scale * T::from_f64((sn.to_f64() - lse).exp());
            }
            EstimatorStats { loss, mi: -loss, pos_mean, neg_mean }
        }
    };
    Ok(stats)
}
