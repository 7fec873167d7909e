//! The weighted k-nearest-neighbour probe (docs/eval.md, "k-NN probe").
//!
//! Self-supervised papers report it beside the linear probe because it
//! trains nothing: each test image takes the labels of its k most similar
//! train images (cosine similarity), each vote weighted by exp(sim / T).

use rayon::prelude::*;

use super::EvalData;
use crate::error::{Error, Result, check_nonzero};
use crate::kernels::{LinearShape, linear_forward};

/// Settings of the k-NN probe. [`Default`] is the common choice
/// (k = 20, T = 0.07, as in InstDisc and DINO).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KnnConfig {
    /// Neighbours that vote.
    pub k: usize,
    /// Temperature of the vote weights exp(sim / T).
    pub temperature: f64,
}

impl Default for KnnConfig {
    fn default() -> Self {
        Self { k: 20, temperature: 0.07 }
    }
}

impl KnnConfig {
    /// Checks `k` ≥ 1 and a finite temperature in [0.01, 100]: below 0.01,
    /// exp(1 / T) overflows f64.
    pub fn validate(&self) -> Result<()> {
        check_nonzero("knn k", self.k)?;
        if !(self.temperature.is_finite() && (0.01..=100.0).contains(&self.temperature)) {
            return Err(Error::InvalidParameter { what: "knn temperature", reason: "must be in [0.01, 100]" });
        }
        Ok(())
    }
}

/// Most similarities held at once (32 MiB of f32): the test rows of one
/// block times the train rows. [`knn_block_rows`] derives the block.
pub const KNN_BLOCK_FLOATS: usize = 1 << 23;

/// Test rows per similarity block for `train_rows` train rows.
pub fn knn_block_rows(train_rows: usize) -> usize {
    (KNN_BLOCK_FLOATS / train_rows.max(1)).max(1)
}

/// The f32s the probe allocates besides its input: one similarity block
/// and the inverse norm of every row.
pub fn knn_floats(train_rows: usize, test_rows: usize) -> u128 {
    let block = knn_block_rows(train_rows).min(test_rows.max(1)) as u128 * train_rows as u128;
    block + train_rows as u128 + test_rows as u128
}

/// Test accuracy (in [0, 1]) of the weighted k-NN classifier on raw
/// (unstandardised) features.
///
/// Similarity is the cosine (a zero row has similarity 0 to everything).
/// The k most similar train rows vote exp(sim / T) for their label; ties in
/// similarity go to the lower train index and ties in votes to the lower
/// class, so the result is deterministic whatever the thread count. If k
/// exceeds the train rows, every train row votes.
pub fn knn_accuracy(data: &EvalData<'_>, cfg: &KnnConfig) -> Result<f64> {
    cfg.validate()?;
    let (dim, classes) = (data.dim(), data.classes());
    let (train, test) = (data.train(), data.test());
    let (n_train, n_test) = (data.train_labels().len(), data.test_labels().len());
    let train_inv = inverse_norms(train, dim);
    let test_inv = inverse_norms(test, dim);
    let k = cfg.k.min(n_train);
    let block = knn_block_rows(n_train).min(n_test);
    let mut sims = Vec::new();
    sims.try_reserve_exact(block * n_train)
        .map_err(|_| Error::InvalidShape { what: "knn similarity block", reason: "cannot allocate it" })?;
    sims.resize(block * n_train, 0f32);
    let mut correct = 0usize;
    for t0 in (0..n_test).step_by(block) {
        let rows = block.min(n_test - t0);
        let s = &mut sims[..rows * n_train];
        linear_forward(&LinearShape::new(rows, dim, n_train), &test[t0 * dim..(t0 + rows) * dim], train, None, s)?;
        correct += s
            .par_chunks_mut(n_train)
            .enumerate()
            .map(|(r, row)| {
                let inv = test_inv[t0 + r];
                for (v, &w) in row.iter_mut().zip(&train_inv) {
                    *v *= inv * w;
                }
                let pred = vote(row, data.train_labels(), k, classes, cfg.temperature);
                usize::from(pred == data.test_labels()[t0 + r])
            })
            .sum::<usize>();
    }
    Ok(correct as f64 / n_test as f64)
}

/// 1 / ‖row‖ (accumulated in f64), or 0 for a zero row.
fn inverse_norms(x: &[f32], dim: usize) -> Vec<f32> {
    x.par_chunks(dim)
        .map(|row| {
            let n = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
            if n > 0.0 { (1.0 / n) as f32 } else { 0.0 }
        })
        .collect()
}

/// The predicted class of one test row from its similarities to every train
/// row: the k best (sim descending, index ascending), then the weighted vote.
fn vote(sims: &[f32], labels: &[usize], k: usize, classes: usize, temperature: f64) -> usize {
    // Kept sorted best first; a later index never beats an equal sim.
    let mut top: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (j, &s) in sims.iter().enumerate() {
        if top.len() == k && s.total_cmp(&top[k - 1].0).is_le() {
            continue;
        }
        let at = top.partition_point(|&(t, _)| t.total_cmp(&s).is_ge());
        top.insert(at, (s, j));
        top.truncate(k);
    }
    let mut votes = vec![0f64; classes];
    for &(s, j) in &top {
        votes[labels[j]] += (f64::from(s) / temperature).exp();
    }
    let mut best = 0;
    for (c, &v) in votes.iter().enumerate() {
        if v > votes[best] {
            best = c;
        }
    }
    best
}
