//! The paper's evaluation (docs/method.md §6) on a trained or untrained encoder:
//! frozen encoder in eval mode, features from the conv, fc and Y taps, a
//! linear probe and the nonlinear classifier on each, plus the raw-pixel
//! baseline. The classifier protocol is `crate::eval`'s (the reference
//! harness's).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::dim::Dim;
use crate::eval::{
    EvalConfig, EvalData, FewLabelResult, evaluate_standardized, few_label_probes, knn_accuracy, standardize,
};
use crate::host_error::{HostError, Result};
use crate::train::extract_features;

/// Probe accuracies of one feature tap.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TapResult {
    /// `conv`, `fc`, `y` or `pixels`.
    pub tap: String,
    /// Feature width.
    pub dim: usize,
    /// Linear probe test accuracy after the last epoch.
    pub linear: f64,
    /// Nonlinear classifier test accuracy after the last epoch.
    pub mlp: f64,
    /// Linear, mean of the last 5 epochs.
    pub linear_last5: f64,
    /// Nonlinear, mean of the last 5 epochs.
    pub mlp_last5: f64,
    /// Weighted k-NN accuracy on the raw (unstandardised) features.
    pub knn: f64,
    /// Linear probes on 10 and 100 labels per class (mean and spread over draws).
    pub few: Vec<FewLabelResult>,
}

/// All taps of one method.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// What was evaluated ("DIM", "random init", "raw pixels").
    pub method: String,
    /// One row per tap.
    pub taps: Vec<TapResult>,
    /// Seconds spent.
    pub wall_s: f64,
}

impl Report {
    /// The row of a tap.
    pub fn tap(&self, name: &str) -> Option<&TapResult> {
        self.taps.iter().find(|t| t.tap == name)
    }
}

fn labels(ds: &Dataset) -> Result<Vec<usize>> {
    let l = ds.labels.as_ref().ok_or_else(|| HostError::Config("evaluation needs a labelled dataset".into()))?;
    Ok(l.iter().map(|&v| usize::from(v)).collect())
}

#[allow(clippy::too_many_arguments)]
fn run_tap(
    name: &str,
    tap_index: u64,
    dim: usize,
    mut tr: Vec<f32>,
    mut te: Vec<f32>,
    ytr: &[usize],
    yte: &[usize],
    classes: usize,
    cfg: &EvalConfig,
) -> Result<TapResult> {
    let knn = knn_accuracy(&EvalData::new(&tr, ytr, &te, yte, dim, classes)?, &cfg.knn)?;
    standardize(&mut tr, &mut te, dim)?;
    let data = EvalData::new(&tr, ytr, &te, yte, dim, classes)?;
    let (lin, mlp) = evaluate_standardized(&data, tap_index, cfg)?;
    let few = few_label_probes(&data, tap_index, cfg, &cfg.few)?;
    Ok(TapResult {
        tap: name.into(),
        dim,
        linear: lin.acc,
        mlp: mlp.acc,
        linear_last5: lin.acc_last5,
        mlp_last5: mlp.acc_last5,
        knn,
        few,
    })
}

/// The encoder's feature taps, in evaluation order.
pub const ENCODER_TAPS: [&str; 3] = ["conv", "fc", "y"];

/// Evaluates an encoder's conv, fc and Y taps (those it has).
pub fn evaluate_encoder(
    method: &str,
    model: &mut Dim,
    train: &Dataset,
    test: &Dataset,
    cfg: &EvalConfig,
) -> Result<Report> {
    evaluate_encoder_taps(method, model, train, test, cfg, &ENCODER_TAPS)
}

/// [`evaluate_encoder`] on the named taps only (`conv`, `fc`, `y`): the
/// classifiers on a 6272-wide conv tap cost far more than the rest, so a
/// secondary baseline can be scored where it matters.
pub fn evaluate_encoder_taps(
    method: &str,
    model: &mut Dim,
    train: &Dataset,
    test: &Dataset,
    cfg: &EvalConfig,
    taps_wanted: &[&str],
) -> Result<Report> {
    if let Some(t) = taps_wanted.iter().find(|t| !ENCODER_TAPS.contains(t)) {
        return Err(HostError::Config(format!("unknown feature tap {t:?} (conv, fc or y)")));
    }
    let wanted = |t: &str| taps_wanted.contains(&t);
    let t0 = Instant::now();
    let (ytr, yte) = (labels(train)?, labels(test)?);
    let classes = train.classes.max(test.classes);
    let ftr = extract_features(model, train, cfg.encode_batch)?;
    let fte = extract_features(model, test, cfg.encode_batch)?;
    let mut taps = Vec::new();
    if let (true, Some((d, a)), Some((_, b))) = (wanted("conv"), ftr.conv, fte.conv) {
        taps.push(run_tap("conv", 0, d, a, b, &ytr, &yte, classes, cfg)?);
    }
    if let (true, Some((d, a)), Some((_, b))) = (wanted("fc"), ftr.fc, fte.fc) {
        taps.push(run_tap("fc", 1, d, a, b, &ytr, &yte, classes, cfg)?);
    }
    if wanted("y") {
        taps.push(run_tap("y", 2, ftr.y.0, ftr.y.1, fte.y.1, &ytr, &yte, classes, cfg)?);
    }
    Ok(Report { method: method.into(), taps, wall_s: t0.elapsed().as_secs_f64() })
}

/// The raw-pixel baseline (images in [−1, 1], flattened).
pub fn evaluate_pixels(train: &Dataset, test: &Dataset, cfg: &EvalConfig) -> Result<Report> {
    let t0 = Instant::now();
    let (ytr, yte) = (labels(train)?, labels(test)?);
    let d = train.channels * train.height * train.width;
    let pixels = |ds: &Dataset| -> Result<Vec<f32>> {
        let idx: Vec<usize> = (0..ds.n).collect();
        let mut x = vec![0f32; ds.n * d];
        ds.write_batch(&idx, &mut x)?;
        Ok(x)
    };
    let tap = run_tap("pixels", 0, d, pixels(train)?, pixels(test)?, &ytr, &yte, train.classes.max(test.classes), cfg)?;
    Ok(Report { method: "raw pixels".into(), taps: vec![tap], wall_s: t0.elapsed().as_secs_f64() })
}

/// A text table: one row per (method, tap), linear and nonlinear accuracy.
pub fn format_table(reports: &[Report]) -> String {
    // Few-label columns from the first row that has them (every row has the same sizes).
    let sizes: Vec<usize> = reports
        .iter()
        .flat_map(|r| &r.taps)
        .next()
        .map(|t| t.few.iter().map(|f| f.per_class).collect())
        .unwrap_or_default();
    let mut s = String::from("| method | tap | dim | linear probe | nonlinear (MLP) | k-NN (k=20) |");
    for k in &sizes {
        s.push_str(&format!(" linear, {k} labels/class |"));
    }
    s.push_str("\n|---|---|---|---|---|---|");
    s.push_str(&"---|".repeat(sizes.len()));
    s.push('\n');
    for r in reports {
        for t in &r.taps {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2}% | {:.2}% | {:.2}% |",
                r.method,
                t.tap,
                t.dim,
                100.0 * t.linear,
                100.0 * t.mlp,
                100.0 * t.knn
            ));
            for k in &sizes {
                match t.few.iter().find(|f| f.per_class == *k) {
                    Some(f) => s.push_str(&format!(" {:.2}% ± {:.2} |", 100.0 * f.mean, 100.0 * f.std)),
                    None => s.push_str(" — |"),
                }
            }
            s.push('\n');
        }
    }
    s
}
