//! The k-NN probe during training (`probe_every`): a quality curve for a
//! run in `train.jsonl`, at the cost of one eval-mode pass over at most
//! [`PROBE_IMAGES`] train and test images each. Eval mode reads the BN
//! running statistics and writes nothing, and no random stream is drawn,
//! so probing leaves the training bit for bit as it was (tested in
//! `tests/train.rs`).

use serde::{Deserialize, Serialize};

use super::{DataConfig, Result};
use crate::data::{Dataset, Split};
use crate::dim::Dim;
use crate::eval::{EvalData, KnnConfig, knn_accuracy};

/// Most images of each split a probe encodes: a seeded sample of larger
/// splits (the same images at every probe).
pub const PROBE_IMAGES: usize = 10_000;
/// Images per eval-mode pass of a probe (the evaluation's default, so a
/// probe at the last step sees the features the final k-NN sees).
pub const PROBE_BATCH: usize = super::memory::DEFAULT_ENCODE_BATCH;

/// What the k-NN probes during training add to [`super::memory::train_plan`]: the
/// images of both splits (u8, at most [`PROBE_IMAGES`]
/// each), one eval-mode batch's activations, the features of those images
/// (bounded by every layer's output), and the similarity block.
pub fn memory_plan(cfg: &crate::dim::DimConfig) -> Result<super::memory::MemoryPlan> {
    let enc = cfg.validate()?;
    let n = PROBE_IMAGES as u128;
    let b = PROBE_BATCH;
    let in_len = enc.input.iter().product::<usize>() as u128;
    let taps: u128 = enc.shapes()?.iter().map(|s| s.iter().product::<usize>() as u128).sum();
    let mut plan = super::memory::MemoryPlan::default();
    plan.add("k-NN probe images", in_len.saturating_mul(2 * n))
        .add(format!("k-NN probe activations at batch {b}"), enc.activation_floats(b, false)?.saturating_mul(4))
        .add("k-NN probe features", taps.saturating_mul(n).saturating_mul(4))
        .add("k-NN probe similarity block", crate::eval::knn_floats(n as usize, n as usize).saturating_mul(4));
    Ok(plan)
}

/// A `train.jsonl` line between epoch lines (`"kind": "window"`; the epoch
/// lines, [`super::EpochLog`], have no `kind`): the means of the steps
/// since the previous window line, written every
/// [`window_steps`] steps, at every checkpoint, and at every probe, where
/// it also holds the k-NN accuracy.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WindowLog {
    /// Always `"window"`.
    pub kind: String,
    /// Global steps so far (0: before training).
    pub step: u64,
    /// Epochs so far, fractional.
    pub epoch: f64,
    /// Steps in the window (0: a probe before training).
    pub steps: usize,
    /// Mean loss over the window's steps (absent for an empty window).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub loss: Option<f64>,
    /// Mean MI estimate (nats).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mi: Option<f64>,
    /// Mean score of positive pairs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pos_mean: Option<f64>,
    /// Mean score of negative pairs.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub neg_mean: Option<f64>,
    /// Training wall time so far, seconds (probes not counted).
    pub wall_s: f64,
    /// k-NN test accuracy of Y in [0, 1] (k = 20, cosine, exp(sim/0.07)
    /// votes), at probe steps.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub knn: Option<f64>,
    /// The probe's wall time, seconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub probe_s: Option<f64>,
    /// Train images in the neighbour bank.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bank: Option<usize>,
    /// Test images scored.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub queries: Option<usize>,
}

/// The `kind` of a [`WindowLog`] line.
pub const WINDOW_KIND: &str = "window";

/// Steps between window lines for an epoch of `steps_per_epoch` steps:
/// about ten per epoch.
pub fn window_steps(steps_per_epoch: usize) -> u64 {
    steps_per_epoch.div_ceil(10).max(1) as u64
}

/// The images a run's probes score: fixed for the run.
pub struct ProbeSet {
    bank: Dataset,
    queries: Dataset,
}

impl ProbeSet {
    /// The labeled train and test splits of `data`, fitted to `input` as
    /// for evaluation (centre crops); `None` if the data has no labels.
    pub fn load(data: &DataConfig, input: [usize; 3], seed: u64) -> Result<Option<Self>> {
        if !data.has_labels()? {
            return Ok(None);
        }
        let bank = data.load_eval(Split::Train, input)?.dataset.sampled(PROBE_IMAGES, seed, 0x4b4e_4e01)?;
        let queries = data.load_eval(Split::Test, input)?.dataset.sampled(PROBE_IMAGES, seed, 0x4b4e_4e02)?;
        Ok(Some(Self { bank, queries }))
    }

    /// Train images in the bank, test images scored.
    pub fn sizes(&self) -> (usize, usize) {
        (self.bank.n, self.queries.n)
    }

    /// The k-NN test accuracy of `model`'s Y.
    pub fn knn(&self, model: &mut Dim) -> Result<f64> {
        let tr = super::extract_features(model, &self.bank, PROBE_BATCH)?;
        let te = super::extract_features(model, &self.queries, PROBE_BATCH)?;
        let labels = |ds: &Dataset| -> Vec<usize> {
            ds.labels.as_deref().unwrap_or_default().iter().map(|&l| usize::from(l)).collect()
        };
        let (ytr, yte) = (labels(&self.bank), labels(&self.queries));
        let classes = self.bank.classes.max(self.queries.classes);
        let data = EvalData::new(&tr.y.1, &ytr, &te.y.1, &yte, tr.y.0, classes)?;
        Ok(knn_accuracy(&data, &KnnConfig::default())?)
    }
}
