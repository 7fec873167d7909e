//! Training one classifier on frozen features: the reference's
//! `train_classifier` and `accuracy`, step for step.

use std::time::Instant;

use rayon::prelude::*;

use super::model::{Classifier, ClassifierKind, ClassifierSpec, Workspace, argmax};
use super::{EvalConfig, EvalData};
use crate::error::{Result, check_len, check_nonzero, checked_product};
use crate::kernels::Float;
use crate::optim::AdamState;
use crate::rng::Rng;

/// RNG stream of the per-epoch shuffles.
const STREAM_SHUFFLE: u64 = 2;
/// RNG stream of the per-step dropout seeds.
const STREAM_DROPOUT: u64 = 3;

/// What one classifier run produced; the fields of the reference's result
/// dictionary (unrounded: the reference rounds to 5 decimals for its JSON).
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierResult {
    /// Linear or MLP.
    pub kind: ClassifierKind,
    /// The seed the run used (init, shuffling and dropout all derive from it).
    pub seed: u64,
    /// Test accuracy after the last epoch (the reported number, `acc`).
    pub acc: f64,
    /// Mean test accuracy over the last 5 epochs (`acc_last5`; over all
    /// epochs when there are fewer than 5).
    pub acc_last5: f64,
    /// Test accuracy after every epoch (`curve`).
    pub curve: Vec<f64>,
    /// Mean per-row cross-entropy over the final epoch's steps (`train_loss`).
    pub train_loss: f64,
    /// Optimiser steps taken in total.
    pub steps: u64,
    /// Wall-clock seconds of training and per-epoch evaluation (`wall_s`).
    pub wall_s: f64,
}

/// Test accuracy of `model` in eval mode, `batch` rows at a time (the
/// reference uses 2000): the fraction of rows whose arg-max logit is the
/// label.
pub fn accuracy<T: Float>(
    model: &Classifier<T>,
    x: &[T],
    labels: &[usize],
    batch: usize,
    ws: &mut Workspace<T>,
) -> Result<f64> {
    check_nonzero("accuracy batch", batch)?;
    check_nonzero("accuracy rows", labels.len())?;
    let d = model.spec().in_features;
    let c = model.spec().classes;
    check_len("accuracy features", checked_product("accuracy features", &[labels.len(), d])?, x.len())?;
    let mut correct = 0usize;
    for (xs, ls) in x.chunks(batch * d).zip(labels.chunks(batch)) {
        model.eval_logits(xs, ls.len(), ws)?;
        correct += ws.logits()[..ls.len() * c].chunks_exact(c).zip(ls).filter(|(row, l)| argmax(row) == **l).count();
    }
    Ok(correct as f64 / labels.len() as f64)
}

/// Trains one classifier on `data` the way the reference's `train_classifier`
/// does, and returns the trained model with its result.
///
/// - init from `seed` (PyTorch defaults, see [`Classifier::new`]);
/// - Adam over the flat buffers with `cfg.adam` (PyTorch's defaults, lr 1e-3);
/// - `cfg.epochs` epochs; each epoch draws a fresh permutation of the train
///   rows, walks it in batches of `cfg.batch` **keeping the last partial
///   batch** and skipping a batch of fewer than 2 rows (BatchNorm needs 2; the
///   reference skips it for both classifiers, and so do we);
/// - mean cross-entropy per batch; dropout gets a new seed every step;
/// - after every epoch, test accuracy in eval mode, `cfg.eval_batch` rows at
///   a time.
///
/// Deterministic for a given seed: the kernels' parallel drivers give the
/// same bits for any thread count, and nothing else here depends on it.
pub fn train_classifier(
    kind: ClassifierKind,
    data: &EvalData<'_>,
    cfg: &EvalConfig,
    seed: u64,
) -> Result<(Classifier<f32>, ClassifierResult)> {
    cfg.validate()?;
    // Run the whole loop on a pool worker (the current pool's, or the global
    // one's): every parallel kernel call is then a cheap in-pool fork instead
    // of a cross-thread injection that parks the calling thread, which at a
    // few milliseconds per step is a large share of the time.
    rayon::scope(|_| train_on_worker(kind, data, cfg, seed))
}

fn train_on_worker(
    kind: ClassifierKind,
    data: &EvalData<'_>,
    cfg: &EvalConfig,
    seed: u64,
) -> Result<(Classifier<f32>, ClassifierResult)> {
    let t0 = Instant::now();
    let d = data.dim();
    let spec =
        ClassifierSpec { kind, in_features: d, classes: data.classes(), hidden: cfg.hidden, dropout: cfg.dropout };
    let mut model = Classifier::<f32>::new(spec, seed)?;
    let np = model.params().len();
    let (mut grads, mut adam) = (vec![0f32; np], AdamState::zeros(np));
    let mut shuffle = Rng::derive(seed, STREAM_SHUFFLE);
    let dropout_base = Rng::derive(seed, STREAM_DROPOUT).next_u64();
    let (train, train_labels) = (data.train(), data.train_labels());
    let n = train_labels.len();
    let bs = cfg.batch;
    let mut perm: Vec<usize> = Vec::with_capacity(n);
    let mut xb = vec![0f32; bs.min(n) * d];
    let mut yb = vec![0usize; bs.min(n)];
    let mut ws = Workspace::new();
    let mut eval_ws = Workspace::new();
    let mut curve = Vec::with_capacity(cfg.epochs);
    let mut step = 0u64;
    let mut train_loss = 0.0;
    for _ in 0..cfg.epochs {
        perm.clear();
        perm.extend(0..n);
        shuffle.shuffle(&mut perm);
        let (mut tot, mut cnt) = (0.0f64, 0usize);
        for idx in perm.chunks(bs) {
            if idx.len() < 2 {
                continue;
            }
            let rows = idx.len();
            let x = &mut xb[..rows * d];
            x.par_chunks_mut(d).zip(idx.par_iter()).for_each(|(row, &i)| row.copy_from_slice(&train[i * d..][..d]));
            for (y, &i) in yb.iter_mut().zip(idx) {
                *y = train_labels[i];
            }
            grads.fill(0.0);
            // A new dropout seed per step; SplitMix's output of base + step
            // decorrelates consecutive steps' counter streams.
            let dropout_seed = Rng::new(dropout_base.wrapping_add(step)).next_u64();
            let loss = model.loss_and_grad(x, &yb[..rows], dropout_seed, &mut grads, &mut ws)?;
            step += 1;
            let all = 0..grads.len();
            adam.step(&cfg.adam, step, model.params_mut(), &grads, all)?;
            tot += f64::from(loss) * rows as f64;
            cnt += rows;
        }
        train_loss = tot / cnt.max(1) as f64;
        curve.push(accuracy(&model, data.test(), data.test_labels(), cfg.eval_batch, &mut eval_ws)?);
    }
    let last5 = &curve[curve.len().saturating_sub(5)..];
    let result = ClassifierResult {
        kind,
        seed,
        acc: curve.last().copied().unwrap_or(0.0),
        acc_last5: last5.iter().sum::<f64>() / last5.len().max(1) as f64,
        curve,
        train_loss,
        steps: step,
        wall_s: t0.elapsed().as_secs_f64(),
    };
    Ok((model, result))
}
