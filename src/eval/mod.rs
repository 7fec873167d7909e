//! Frozen-feature evaluation (feature `train`): the DIM paper's linear and
//! nonlinear classifiers, trained on features of a frozen encoder.
//!
//! This mirrors the PyTorch reference protocol our comparisons use
//! (standardise, build, train and score each probe, docs/method.md §6) so
//! that our accuracies can be compared with PyTorch's: same
//! standardisation, same architectures and initialisation, same optimiser,
//! epochs, batching (last partial batch kept), per-epoch evaluation and seed
//! derivation. Only the random streams differ (ours are SplitMix64, not
//! PyTorch's Philox/MT), so runs agree in distribution, not bit for bit. See
//! `docs/eval.md`.
//!
//! Everything runs on the kernels' multicore drivers and is bitwise
//! deterministic for a given seed, whatever the thread count.

mod few;
mod knn;
mod model;
mod train;

use rayon::prelude::*;

pub use few::{FewLabelConfig, FewLabelResult, draw_rows, few_label_probes};
pub use knn::{KNN_BLOCK_FLOATS, KnnConfig, knn_accuracy, knn_block_rows, knn_floats};
pub use model::{Classifier, ClassifierKind, ClassifierSpec, ParamEntry, Workspace};
pub use train::{ClassifierResult, accuracy, train_classifier};

use crate::error::{Error, Result, check_len, check_nonzero, checked_product};
use crate::optim::AdamConfig;

/// The training protocol. [`Default`] is the reference's: 30 epochs, batch
/// 256, Adam lr 1e-3 with PyTorch's default betas, MLP hidden 200, dropout
/// 0.1, evaluation 2000 rows at a time, seed 0; the k-NN probe with k = 20
/// and T = 0.07.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalConfig {
    /// Epochs per classifier (`--clf-epochs`, 30).
    pub epochs: usize,
    /// Training batch (`--clf-batch`, 256); the last partial batch is kept.
    pub batch: usize,
    /// Rows per evaluation forward pass (2000). Does not change the result.
    pub eval_batch: usize,
    /// Images per encoder forward pass when extracting features (500;
    /// the CLI lowers it when the memory limit needs).
    pub encode_batch: usize,
    /// MLP hidden width (200).
    pub hidden: usize,
    /// MLP dropout probability (0.1).
    pub dropout: f64,
    /// Optimiser (`AdamConfig::torch_default(1e-3)`, the reference's `--clf-lr`).
    pub adam: AdamConfig,
    /// The k-NN probe run beside the classifiers.
    pub knn: KnnConfig,
    /// The few-label linear probes run beside them.
    pub few: FewLabelConfig,
    /// The run's seed (`--seed`); each classifier's seed derives from it
    /// with [`classifier_seed`].
    pub seed: u64,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch: 256,
            eval_batch: 2000,
            encode_batch: 500,
            hidden: 200,
            dropout: 0.1,
            adam: AdamConfig::torch_default(1e-3),
            knn: KnnConfig::default(),
            few: FewLabelConfig::default(),
            seed: 0,
        }
    }
}

impl EvalConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        crate::bounds::EVAL_EPOCHS.check_usize(self.epochs)?;
        check_nonzero("eval batch", self.batch)?;
        check_nonzero("eval eval_batch", self.eval_batch)?;
        crate::bounds::ENCODE_BATCH.check_usize(self.encode_batch)?;
        check_nonzero("eval hidden", self.hidden)?;
        if self.batch < 2 {
            return Err(Error::InvalidParameter {
                what: "eval batch",
                reason: "must be at least 2 (batches of 1 row are skipped, as BatchNorm needs 2)",
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::InvalidParameter { what: "eval dropout", reason: "must be in [0, 1)" });
        }
        self.knn.validate()?;
        self.few.validate()?;
        self.adam.validate()
    }
}

/// The seed of one classifier, derived as in the reference:
/// `seed·1000 + 10·tap_index + classifier_index + 7` (wrapping), where
/// `tap_index` is the tap's position in `("conv", "fc", "y")` (0 for anything
/// else, e.g. raw pixels) and `classifier_index` is [`ClassifierKind::index`].
pub const fn classifier_seed(seed: u64, tap_index: u64, kind: ClassifierKind) -> u64 {
    seed.wrapping_mul(1000).wrapping_add(tap_index.wrapping_mul(10)).wrapping_add(kind.index() as u64).wrapping_add(7)
}

/// Checked train and test features with their labels: `[rows, dim]` rows,
/// labels in `0..classes`.
#[derive(Clone, Copy, Debug)]
pub struct EvalData<'a> {
    train: &'a [f32],
    train_labels: &'a [usize],
    test: &'a [f32],
    test_labels: &'a [usize],
    dim: usize,
    classes: usize,
}

/// Checks one split's lengths and labels.
fn check_split(what: &'static str, x: &[f32], labels: &[usize], dim: usize, classes: usize) -> Result<()> {
    check_len(what, checked_product(what, &[labels.len(), dim])?, x.len())?;
    match labels.iter().enumerate().find(|&(_, &l)| l >= classes) {
        Some((index, &label)) => Err(Error::LabelOutOfRange { index, label, classes }),
        None => Ok(()),
    }
}

impl<'a> EvalData<'a> {
    /// Checks everything once, so training cannot fail half-way on bad input:
    /// `dim` and `classes` positive, feature lengths `labels.len()·dim`, every
    /// label below `classes`, at least 2 train rows (one batch BatchNorm can
    /// use) and at least 1 test row.
    pub fn new(
        train: &'a [f32],
        train_labels: &'a [usize],
        test: &'a [f32],
        test_labels: &'a [usize],
        dim: usize,
        classes: usize,
    ) -> Result<Self> {
        check_nonzero("eval feature dim", dim)?;
        check_nonzero("eval classes", classes)?;
        check_split("eval train features", train, train_labels, dim, classes)?;
        check_split("eval test features", test, test_labels, dim, classes)?;
        if train_labels.len() < 2 {
            return Err(Error::InvalidShape { what: "eval train features", reason: "needs at least 2 rows" });
        }
        check_nonzero("eval test rows", test_labels.len())?;
        Ok(Self { train, train_labels, test, test_labels, dim, classes })
    }

    /// Train features, `[train rows, dim]`.
    pub fn train(&self) -> &'a [f32] {
        self.train
    }
    /// Train labels.
    pub fn train_labels(&self) -> &'a [usize] {
        self.train_labels
    }
    /// Test features, `[test rows, dim]`.
    pub fn test(&self) -> &'a [f32] {
        self.test
    }
    /// Test labels.
    pub fn test_labels(&self) -> &'a [usize] {
        self.test_labels
    }
    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }
}

/// Columns per task when computing the standardisation statistics: each task
/// walks every row over its own contiguous column block (cache friendly, and
/// each column's sums run in row order, so the split cannot change a bit).
const STD_COLS: usize = 64;

/// Standardises features in place with the **train** statistics, like the
/// reference's `standardize_`: per feature, subtract the train mean and
/// divide by the train standard deviation (unbiased, as `torch.std`); a
/// standard deviation below 1e-6 (a constant feature) becomes 1, so such a
/// feature is only centred instead of blown up. The test features get the
/// train statistics too: nothing about the test set leaks into training.
///
/// Statistics are accumulated in `f64` (two passes) and applied in `f32` as
/// `(x − mean) / std`, the reference's two in-place ops. A NaN standard
/// deviation (non-finite features) stays NaN, as in the reference.
///
/// `train` is `[rows, dim]` with at least 2 rows (the unbiased std needs
/// them); `test` is `[rows', dim]` and may be empty.
pub fn standardize(train: &mut [f32], test: &mut [f32], dim: usize) -> Result<()> {
    check_nonzero("standardize dim", dim)?;
    for (what, len) in [("standardize train features", train.len()), ("standardize test features", test.len())] {
        if len % dim != 0 {
            return Err(Error::InvalidShape { what, reason: "length is not a multiple of dim" });
        }
    }
    let rows = train.len() / dim;
    if rows < 2 {
        return Err(Error::InvalidShape {
            what: "standardize train features",
            reason: "needs at least 2 rows for an unbiased std",
        });
    }
    let tr = &*train;
    let blocks: Vec<(Vec<f32>, Vec<f32>)> = (0..dim.div_ceil(STD_COLS))
        .into_par_iter()
        .map(|b| {
            let c0 = b * STD_COLS;
            let w = STD_COLS.min(dim - c0);
            let mut sum = vec![0f64; w];
            for row in tr.chunks_exact(dim) {
                for (s, &v) in sum.iter_mut().zip(&row[c0..c0 + w]) {
                    *s += f64::from(v);
                }
            }
            let mean: Vec<f64> = sum.iter().map(|s| s / rows as f64).collect();
            let mut sq = vec![0f64; w];
            for row in tr.chunks_exact(dim) {
                for ((s, &v), &m) in sq.iter_mut().zip(&row[c0..c0 + w]).zip(&mean) {
                    let dv = f64::from(v) - m;
                    *s += dv * dv;
                }
            }
            let std = sq
                .iter()
                .map(|s| {
                    let sd = (s / (rows - 1) as f64).sqrt() as f32;
                    if sd < 1e-6 { 1.0 } else { sd }
                })
                .collect();
            (mean.iter().map(|&m| m as f32).collect(), std)
        })
        .collect();
    let mean: Vec<f32> = blocks.iter().flat_map(|(m, _)| m.iter().copied()).collect();
    let std: Vec<f32> = blocks.iter().flat_map(|(_, s)| s.iter().copied()).collect();
    for x in [train, test] {
        x.par_chunks_mut(dim).for_each(|row| {
            for ((v, &m), &s) in row.iter_mut().zip(&mean).zip(&std) {
                *v = (*v - m) / s;
            }
        });
    }
    Ok(())
}

/// Trains both classifiers on already standardised features, with the
/// reference's seeds for tap `tap_index` (see [`classifier_seed`]). Use this
/// instead of [`evaluate_features`] to standardise in place and skip the
/// copies (features of a conv tap can be gigabytes).
pub fn evaluate_standardized(
    data: &EvalData<'_>,
    tap_index: u64,
    cfg: &EvalConfig,
) -> Result<(ClassifierResult, ClassifierResult)> {
    let run = |kind| train_classifier(kind, data, cfg, classifier_seed(cfg.seed, tap_index, kind)).map(|(_, r)| r);
    Ok((run(ClassifierKind::Linear)?, run(ClassifierKind::Mlp)?))
}

/// The reference's `evaluate_features` for one tap: standardises copies of
/// the features with the train statistics ([`standardize`]), then trains the
/// linear and the MLP classifier ([`train_classifier`]) with seeds
/// `cfg.seed·1000 + 10·tap_index + {0, 1} + 7`. Returns (linear, mlp).
///
/// Features are `[rows, dim]` row-major `f32`; labels are in `0..classes`.
/// All input is checked before any work (typed errors for wrong lengths, a
/// zero `dim` or `classes`, or a label `>= classes`).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_features(
    train_feats: &[f32],
    test_feats: &[f32],
    dim: usize,
    train_labels: &[usize],
    test_labels: &[usize],
    classes: usize,
    tap_index: u64,
    cfg: &EvalConfig,
) -> Result<(ClassifierResult, ClassifierResult)> {
    cfg.validate()?;
    EvalData::new(train_feats, train_labels, test_feats, test_labels, dim, classes)?;
    let (mut tr, mut te) = (train_feats.to_vec(), test_feats.to_vec());
    standardize(&mut tr, &mut te, dim)?;
    evaluate_standardized(&EvalData::new(&tr, train_labels, &te, test_labels, dim, classes)?, tap_index, cfg)
}
