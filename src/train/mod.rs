//! The trainer: data → DIM step → Adam, with a progress bar, a JSON-lines
//! log, a crash-safe checkpoint every epoch, exact resume and fine-tuning.

pub mod checkpoint;
pub mod error;
pub mod evaluate;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{self, Augment, Dataset, Loader, Split};
use crate::dim::{Dim, DimConfig, Mode};
use crate::optim::{AdamConfig, adam_step};
use crate::rng::Rng;
pub use checkpoint::{AdamState, Progress};
pub use error::{Result, TrainError};

/// Parameters per parallel Adam task.
const ADAM_CHUNK: usize = 1 << 16;

/// Which dataset format a data folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// IDX files named like MNIST's (`train-images-idx3-ubyte[.gz]`, ...).
    FashionMnist,
    /// MNIST (same file layout).
    Mnist,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// CIFAR-100 binary (fine labels).
    Cifar100,
    /// STL-10 binary (`train_X.bin`, `test_X.bin`, ...).
    Stl10,
}

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The format.
    pub kind: DatasetKind,
    /// The folder.
    pub dir: PathBuf,
    /// Random crop size (none: no crop). STL-10 in the paper: 64.
    #[serde(default)]
    pub crop: Option<usize>,
    /// Random horizontal flip.
    #[serde(default)]
    pub flip: bool,
}

impl DataConfig {
    /// Loads one split.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        Ok(match self.kind {
            DatasetKind::FashionMnist | DatasetKind::Mnist => data::load_mnist_dir(&self.dir, split)?,
            DatasetKind::Cifar10 => data::load_cifar10_dir(&self.dir, split)?,
            DatasetKind::Cifar100 => data::load_cifar100_dir(&self.dir, split, data::Cifar100Labels::Fine)?,
            DatasetKind::Stl10 => data::load_stl10_dir(
                &self.dir,
                match split {
                    Split::Train => data::StlSplit::Train,
                    Split::Test => data::StlSplit::Test,
                },
            )?,
        })
    }

    /// The augmentation this config asks for.
    pub fn augment(&self) -> Augment {
        let mut a = Augment::none().with_hflip(self.flip);
        if let Some(c) = self.crop {
            a = a.with_crop(data::Crop::random(c, 0));
        }
        a
    }
}

fn default_batch() -> usize {
    64
}

/// Optimiser settings (Adam).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// Learning rate (DIM: 1e-4).
    pub lr: f64,
    /// First-moment decay (DIM: 0.5).
    pub beta1: f64,
    /// Second-moment decay (0.999).
    pub beta2: f64,
    /// Denominator epsilon (1e-8).
    pub eps: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        let a = AdamConfig::dim();
        Self { lr: a.lr, beta1: a.beta1, beta2: a.beta2, eps: a.eps }
    }
}

impl OptimConfig {
    fn adam(&self) -> AdamConfig {
        AdamConfig { lr: self.lr, beta1: self.beta1, beta2: self.beta2, eps: self.eps }
    }
}

/// Everything a training run needs. File form: TOML or JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The model.
    pub model: DimConfig,
    /// The data.
    pub data: DataConfig,
    /// Images per step (DIM: 64; the last incomplete batch is dropped).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Stop after this many epochs.
    #[serde(default)]
    pub epochs: Option<u64>,
    /// Stop after this much training wall time (checked after every step).
    #[serde(default)]
    pub minutes: Option<f64>,
    /// Stop after this many steps.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Adam settings.
    #[serde(default)]
    pub optimizer: OptimConfig,
    /// Seed of shuffling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Parameter-name prefixes to keep frozen (fine-tuning), e.g.
    /// `encoder.conv1`.
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Log the global gradient norm every epoch.
    #[serde(default)]
    pub log_grad_norm: bool,
}

impl TrainConfig {
    /// Checks what the model config does not.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        self.optimizer.adam().validate()?;
        if self.batch_size < 2 {
            return Err(TrainError::Config("batch_size must be at least 2 (DIM needs negatives)".into()));
        }
        if self.epochs.is_none() && self.minutes.is_none() && self.steps.is_none() {
            return Err(TrainError::Config("set a budget: epochs, minutes or steps".into()));
        }
        if self.minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return Err(TrainError::Config("minutes must be finite and > 0".into()));
        }
        Ok(())
    }

    /// Parses a TOML or JSON config file (by extension; JSON if it starts
    /// with `{`). Unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).map_err(error::io(path, "read config"))?;
        let json = path.extension().is_some_and(|e| e == "json");
        let cfg = Self::deserialize_text(&text, json)
            .map_err(|reason| TrainError::Format { path: path.to_path_buf(), reason })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates a config held in memory: JSON if `json` or if
    /// it starts with `{`, TOML otherwise. Unknown keys are errors; a syntax
    /// error is [`TrainError::Config`].
    pub fn parse(text: &str, json: bool) -> Result<Self> {
        let cfg = Self::deserialize_text(text, json).map_err(TrainError::Config)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn deserialize_text(text: &str, json: bool) -> std::result::Result<Self, String> {
        if json || text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            toml::from_str(text).map_err(|e| e.to_string())
        }
    }
}

/// One epoch's log line (JSON lines).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    /// Epoch number (1-based).
    pub epoch: u64,
    /// Global steps so far.
    pub step: u64,
    /// Mean loss over the epoch's steps.
    pub loss: f64,
    /// Mean MI estimate (nats).
    pub mi: f64,
    /// Mean positive score.
    pub pos_mean: f64,
    /// Mean negative score.
    pub neg_mean: f64,
    /// Learning rate.
    pub lr: f64,
    /// Training throughput this epoch.
    pub images_per_s: f64,
    /// Training wall time so far, seconds.
    pub wall_s: f64,
    /// Global L2 norm of the last step's gradient, if asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
    /// True when the epoch was cut short by the budget.
    pub partial: bool,
}

/// Where a run starts.
#[derive(Clone, Debug, Default)]
pub enum Start {
    /// Fresh weights from the config's seed.
    #[default]
    Fresh,
    /// Continue exactly from `out_dir/latest`.
    Resume,
    /// Start from the weights of a checkpoint (fine-tuning): parameters and
    /// BN statistics are taken, the optimiser and progress start fresh.
    From(PathBuf),
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// The trained model.
    pub model: Dim,
    /// Per-epoch logs of this invocation.
    pub epochs: Vec<EpochLog>,
    /// Final progress.
    pub progress: Progress,
    /// The last checkpoint written.
    pub checkpoint: PathBuf,
}

/// Copies every tensor of `src` whose name and shape exist in `dst`.
fn copy_weights(src: &Dim, dst: &mut Dim) -> usize {
    let mut copied = 0;
    for e in dst.table.entries().to_vec().iter().chain(dst.buffer_table.entries().to_vec().iter()) {
        if let (Some(s), Some(d)) = (src.tensor(&e.name), dst.tensor_mut(&e.name))
            && s.len() == d.len()
        {
            d.copy_from_slice(s);
            copied += 1;
        }
    }
    copied
}

/// Ranges of the parameter buffer Adam may update (not frozen).
fn trainable_ranges(model: &Dim, freeze: &[String]) -> Vec<core::ops::Range<usize>> {
    let mut out: Vec<core::ops::Range<usize>> = Vec::new();
    for e in model.table.entries() {
        if freeze.iter().any(|f| e.name.starts_with(f.as_str())) {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.end == e.offset => last.end = e.offset + e.len,
            _ => out.push(e.range()),
        }
    }
    out
}

/// Checkpoint file name after `epoch` epochs (or a final partial one).
fn checkpoint_name(progress: &Progress, partial: bool) -> String {
    if partial {
        format!("step-{:08}.safetensors", progress.step)
    } else {
        format!("epoch-{:04}.safetensors", progress.epoch)
    }
}

/// Trains on the config's train split. Writes `out_dir/train.jsonl`, a
/// checkpoint per epoch (the previous one is removed once the new one and
/// the `latest` pointer are durable) and a final checkpoint.
pub fn train(cfg: &TrainConfig, out_dir: &Path, start: Start, quiet: bool) -> Result<TrainSummary> {
    // Run on a pool worker: the kernels' parallel loops then fork locally
    // instead of handing off from an outside thread every call.
    let mut out = None;
    rayon::scope(|_| out = Some(train_on_worker(cfg, out_dir, start, quiet)));
    out.unwrap_or_else(|| Err(TrainError::Config("the thread pool did not run the trainer".into())))
}

fn train_on_worker(cfg: &TrainConfig, out_dir: &Path, start: Start, quiet: bool) -> Result<TrainSummary> {
    cfg.validate()?;
    fs::create_dir_all(out_dir).map_err(error::io(out_dir, "create output folder"))?;
    let ds = cfg.data.load(Split::Train)?;
    let mut model = Dim::new(cfg.model.clone())?;
    let input = model.encoder.cfg.input;
    let augment = cfg.data.augment();
    let (c, h, w) = augment.output_shape(ds.channels, ds.height, ds.width)?;
    if [c, h, w] != input {
        return Err(TrainError::Config(format!(
            "the data gives {c}×{h}×{w} images but the encoder expects {}×{}×{}",
            input[0], input[1], input[2]
        )));
    }
    let n_params = model.table.len();
    let mut adam = AdamState { m: vec![0.0; n_params], v: vec![0.0; n_params] };
    let mut progress = Progress { rng_state: Rng::derive(cfg.seed, 7).state(), ..Progress::default() };
    match &start {
        Start::Fresh => {}
        Start::Resume => {
            let path = checkpoint::latest(out_dir)?
                .ok_or_else(|| TrainError::Config(format!("--resume: {} has no checkpoint yet", out_dir.display())))?;
            let loaded = checkpoint::load(&path)?;
            if loaded.model.cfg != cfg.model {
                return Err(TrainError::Config(format!(
                    "--resume: {} was trained with another model config",
                    path.display()
                )));
            }
            model = loaded.model;
            adam = loaded
                .adam
                .ok_or_else(|| TrainError::Format { path: path.clone(), reason: "has no optimiser state".into() })?;
            progress = loaded.progress;
        }
        Start::From(path) => {
            let loaded = checkpoint::load(path)?;
            if copy_weights(&loaded.model, &mut model) == 0 {
                return Err(TrainError::Format { path: path.clone(), reason: "no tensor matches this model".into() });
            }
        }
    }
    let loader = Loader::new(ds.n, cfg.batch_size, cfg.seed)?;
    let steps_per_epoch = loader.batches_per_epoch();
    if steps_per_epoch == 0 {
        return Err(TrainError::Config(format!("{} images make no batch of {}", ds.n, cfg.batch_size)));
    }
    let ranges = trainable_ranges(&model, &cfg.freeze);
    let adam_cfg = cfg.optimizer.adam();
    let n = cfg.batch_size;
    let mut ws = model.workspace(n)?;
    let mut x = vec![0f32; n * input.iter().product::<usize>()];
    // A fresh run starts a fresh log; resume and fine-tuning append.
    let fresh = matches!(start, Start::Fresh);
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(!fresh)
        .write(true)
        .truncate(fresh)
        .open(out_dir.join("train.jsonl"))
        .map_err(error::io(out_dir.join("train.jsonl"), "open log"))?;
    let started = Instant::now();
    let wall_before = progress.wall_s;
    let budget_s = cfg.minutes.map(|m| m * 60.0);
    let mut logs = Vec::new();
    let mut last_ckpt = checkpoint::latest(out_dir)?.unwrap_or_default();
    let rng = Rng::from_state(progress.rng_state);
    let out_of_budget = |p: &Progress, wall: f64| {
        cfg.steps.is_some_and(|s| p.step >= s)
            || cfg.epochs.is_some_and(|e| p.epoch >= e)
            || budget_s.is_some_and(|b| wall >= b)
    };
    while !out_of_budget(&progress, progress.wall_s) {
        let epoch = loader.epoch(progress.epoch);
        let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(steps_per_epoch as u64) };
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .map_err(|e| TrainError::Config(e.to_string()))?
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}", progress.epoch + 1));
        let epoch_start = Instant::now();
        let (mut sum_loss, mut sum_mi, mut sum_pos, mut sum_neg, mut done) = (0f64, 0f64, 0f64, 0f64, 0usize);
        let mut partial = false;
        for (b, batch) in epoch.batches().enumerate() {
            let mut aug_rng = loader.augment_rng(progress.epoch, b as u64);
            augment.write_batch(&ds, batch, &mut aug_rng, &mut x)?;
            let stats = model.forward_backward(&x, &mut ws)?;
            progress.step += 1;
            // Prior samples per step from (seed, step): resume needs no RNG state.
            let mut prior_rng = Rng::derive(cfg.seed ^ 0x0050_5249_4F52, progress.step);
            if let Some(ps) = model.prior_step(&ws, &mut prior_rng)?
                && !ps.d_loss.is_finite()
            {
                return Err(TrainError::Diverged { step: progress.step, what: "prior discriminator loss".into() });
            }
            if !stats.loss.is_finite() {
                return Err(TrainError::Diverged { step: progress.step, what: "loss".into() });
            }
            let t = progress.step;
            for r in &ranges {
                // Element-wise, so any split gives the same bits.
                model.params[r.clone()]
                    .par_chunks_mut(ADAM_CHUNK)
                    .zip(model.grads[r.clone()].par_chunks(ADAM_CHUNK))
                    .zip(adam.m[r.clone()].par_chunks_mut(ADAM_CHUNK).zip(adam.v[r.clone()].par_chunks_mut(ADAM_CHUNK)))
                    .try_for_each(|((p, g), (m, v))| adam_step(&adam_cfg, t, p, g, m, v))?;
            }
            sum_loss += stats.loss;
            sum_mi += stats.local.mi;
            sum_pos += stats.local.pos_mean;
            sum_neg += stats.local.neg_mean;
            done += 1;
            progress.wall_s = wall_before + started.elapsed().as_secs_f64();
            let ips = (done * n) as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} mi {:.3} {:.0} img/s",
                sum_loss / done as f64,
                sum_mi / done as f64,
                ips
            ));
            bar.inc(1);
            if done < steps_per_epoch && out_of_budget(&progress, progress.wall_s) {
                partial = true;
                break;
            }
        }
        bar.finish_and_clear();
        if !partial {
            progress.epoch += 1;
        }
        progress.rng_state = rng.state();
        if let Some(bad) = model.params.iter().position(|v| !v.is_finite()) {
            let name =
                model.table.entries().iter().find(|e| e.range().contains(&bad)).map_or("?".into(), |e| e.name.clone());
            return Err(TrainError::Diverged { step: progress.step, what: format!("parameter {name}") });
        }
        let d = done.max(1) as f64;
        let entry = EpochLog {
            epoch: progress.epoch + u64::from(partial),
            step: progress.step,
            loss: sum_loss / d,
            mi: sum_mi / d,
            pos_mean: sum_pos / d,
            neg_mean: sum_neg / d,
            lr: cfg.optimizer.lr,
            images_per_s: (done * n) as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9),
            wall_s: progress.wall_s,
            grad_norm: cfg
                .log_grad_norm
                .then(|| model.grads.iter().map(|&g| (g as f64) * (g as f64)).sum::<f64>().sqrt()),
            partial,
        };
        let line = serde_json::to_string(&entry).map_err(|e| TrainError::Config(e.to_string()))?;
        writeln!(log, "{line}").map_err(error::io(out_dir.join("train.jsonl"), "write log"))?;
        if !quiet {
            eprintln!(
                "epoch {:>3}{} loss {:.4}  mi {:.3}  pos {:.2} neg {:.2}  {:.0} img/s  {:.0}s",
                entry.epoch,
                if partial { " (partial)" } else { "" },
                entry.loss,
                entry.mi,
                entry.pos_mean,
                entry.neg_mean,
                entry.images_per_s,
                entry.wall_s
            );
        }
        logs.push(entry);
        let name = checkpoint_name(&progress, partial);
        let path = out_dir.join(&name);
        let extra = [("train_config", serde_json::to_string(cfg).map_err(|e| TrainError::Config(e.to_string()))?)];
        checkpoint::save(&path, &model, Some(&adam), &progress, &extra)?;
        checkpoint::set_latest(out_dir, &name)?;
        if last_ckpt != path && !last_ckpt.as_os_str().is_empty() {
            let _ = fs::remove_file(&last_ckpt);
        }
        last_ckpt = path;
        if partial {
            break;
        }
    }
    Ok(TrainSummary { model, epochs: logs, progress, checkpoint: last_ckpt })
}

/// Encoder features of a whole dataset in eval mode (BN running stats).
#[derive(Clone, Debug, Default)]
pub struct Features {
    /// Rows.
    pub n: usize,
    /// Last conv block output, flattened (if the encoder has one).
    pub conv: Option<(usize, Vec<f32>)>,
    /// Last hidden linear block output (if any).
    pub fc: Option<(usize, Vec<f32>)>,
    /// Y.
    pub y: (usize, Vec<f32>),
}

/// Runs the frozen encoder (eval mode) over `ds`, `batch` images at a time.
pub fn extract_features(model: &mut Dim, ds: &Dataset, batch: usize) -> Result<Features> {
    let enc = model.encoder.clone();
    let conv_tap = enc.conv_tap();
    let fc_tap = enc.fc_tap();
    let in_len: usize = enc.cfg.input.iter().product();
    if ds.channels * ds.height * ds.width != in_len {
        return Err(TrainError::Config("dataset images do not match the encoder input".into()));
    }
    let tap_len = |t: Option<usize>| t.map(|i| enc.block_out_len(i));
    let mut f = Features {
        n: ds.n,
        conv: tap_len(conv_tap).map(|d| (d, Vec::with_capacity(d * ds.n))),
        fc: tap_len(fc_tap).map(|d| (d, Vec::with_capacity(d * ds.n))),
        y: (enc.cfg.y_dim, Vec::with_capacity(enc.cfg.y_dim * ds.n)),
    };
    let idx: Vec<usize> = (0..ds.n).collect();
    let mut acts = None;
    for chunk in idx.chunks(batch.max(1)) {
        let b = chunk.len();
        if acts.as_ref().is_none_or(|a: &crate::dim::EncoderActs| a.batch() != b) {
            acts = Some(enc.alloc(b, false)?);
        }
        let Some(a) = acts.as_mut() else { continue };
        let mut x = vec![0f32; b * in_len];
        ds.write_batch(chunk, &mut x)?;
        enc.forward(&model.params, &mut model.buffers, &x, a, Mode::Eval)?;
        if let (Some(i), Some((_, v))) = (conv_tap, f.conv.as_mut()) {
            v.extend_from_slice(enc.block_out(a, i));
        }
        if let (Some(i), Some((_, v))) = (fc_tap, f.fc.as_mut()) {
            v.extend_from_slice(enc.block_out(a, i));
        }
        f.y.1.extend_from_slice(enc.y(a));
    }
    Ok(f)
}
