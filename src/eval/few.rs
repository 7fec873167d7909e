//! Few-label linear probes (docs/eval.md, "Few-label probes"): the linear
//! classifier trained on only k labeled images per class, drawn with a
//! seed, several times; the mean and the spread over the draws.
//!
//! This is the regime self-supervised features are for: with every label a
//! linear probe on pixels is already strong, with ten per class it is not.
//! The features are standardised with the statistics of the whole training
//! split (which needs no labels), and each probe takes a fixed number of
//! Adam steps whatever k is, so that small draws are not under-trained.

use serde::Serialize;

use super::{ClassifierKind, EvalConfig, EvalData, classifier_seed, train_classifier};
use crate::error::{Error, Result, check_nonzero};
use crate::rng::Rng;

/// Settings of the few-label probes. [`Default`]: 10 and 100 labels per
/// class, 5 draws each, 300 Adam steps per probe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FewLabelConfig {
    /// Labels per class of each probe size (0 turns that size off).
    pub per_class: [usize; 2],
    /// Draws per size (0: none).
    pub draws: usize,
    /// Adam steps per probe (whole epochs: rounded up to a multiple of the
    /// draw's batches per epoch).
    pub steps: usize,
}

impl Default for FewLabelConfig {
    fn default() -> Self {
        Self { per_class: [10, 100], draws: 5, steps: 300 }
    }
}

impl FewLabelConfig {
    /// Checks at least one step and at most 10 000 draws and steps (0 draws:
    /// no few-label probes).
    pub fn validate(&self) -> Result<()> {
        check_nonzero("few-label steps", self.steps)?;
        if self.draws > 10_000 || self.steps > 10_000 {
            return Err(Error::InvalidParameter { what: "few-label probes", reason: "at most 10 000 draws and steps" });
        }
        Ok(())
    }
}

/// The probes of one size.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct FewLabelResult {
    /// Labels per class asked for.
    pub per_class: usize,
    /// Labeled images per draw (fewer than `per_class · classes` when a
    /// class has fewer images).
    pub labeled: usize,
    /// Mean test accuracy over the draws.
    pub mean: f64,
    /// Sample standard deviation over the draws (0 for one draw).
    pub std: f64,
    /// Each draw's test accuracy.
    pub accs: Vec<f64>,
}

/// Train rows of draw `draw`: `k` per class (all of a smaller class),
/// chosen by a seeded shuffle of each class's rows, in row order.
pub fn draw_rows(labels: &[usize], classes: usize, k: usize, seed: u64) -> Vec<usize> {
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        if let Some(v) = by_class.get_mut(l) {
            v.push(i);
        }
    }
    let mut rows = Vec::new();
    for (c, mut idx) in by_class.into_iter().enumerate() {
        Rng::derive(seed, c as u64).shuffle(&mut idx);
        rows.extend(idx.into_iter().take(k));
    }
    rows.sort_unstable();
    rows
}

/// The few-label linear probes of one tap on standardised `data`, with the
/// classifier seeds of tap `tap_index` (each draw and size its own).
pub fn few_label_probes(
    data: &EvalData<'_>,
    tap_index: u64,
    cfg: &EvalConfig,
    few: &FewLabelConfig,
) -> Result<Vec<FewLabelResult>> {
    few.validate()?;
    let d = data.dim();
    let base = classifier_seed(cfg.seed, tap_index, ClassifierKind::Linear);
    let mut out = Vec::new();
    for (size, &k) in few.per_class.iter().enumerate().filter(|&(_, &k)| k > 0 && few.draws > 0) {
        let mut accs = Vec::with_capacity(few.draws);
        let mut labeled = 0;
        for draw in 0..few.draws {
            let seed = Rng::derive(base, 1000 + 100 * size as u64 + draw as u64).next_u64();
            let rows = draw_rows(data.train_labels(), data.classes(), k, seed);
            labeled = rows.len();
            let mut x = Vec::with_capacity(rows.len() * d);
            for &r in &rows {
                x.extend_from_slice(&data.train()[r * d..(r + 1) * d]);
            }
            let y: Vec<usize> = rows.iter().map(|&r| data.train_labels()[r]).collect();
            let sub = EvalData::new(&x, &y, data.test(), data.test_labels(), d, data.classes())?;
            let batch = cfg.batch.min(rows.len()).max(2);
            let per_epoch = rows.len().div_ceil(batch);
            let epochs = few.steps.div_ceil(per_epoch).max(1);
            let c = EvalConfig { epochs, batch, ..*cfg };
            let (_, r) = train_classifier(ClassifierKind::Linear, &sub, &c, seed)?;
            accs.push(r.acc);
        }
        let n = accs.len() as f64;
        let mean = accs.iter().sum::<f64>() / n;
        let std = if accs.len() > 1 {
            (accs.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        out.push(FewLabelResult { per_class: k, labeled, mean, std, accs });
    }
    Ok(out)
}
