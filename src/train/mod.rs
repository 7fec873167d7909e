//! The trainer: data → DIM step → Adam, with a progress bar, a JSON-lines
//! log, a crash-safe checkpoint every epoch, exact resume and fine-tuning.

pub mod checkpoint;
pub mod evaluate;
pub mod import;
pub mod memory;
pub mod probe;
#[cfg(feature = "cli")]
pub mod progress;
mod trainer;

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bounds;
use crate::data::{self, Augment, Dataset, Split};
use crate::dim::{Dim, DimConfig, Mode};
/// The training API's name for [`HostError`](crate::HostError).
pub use crate::host_error::HostError as TrainError;
pub use crate::host_error::{HostError, Result};
use crate::optim::AdamConfig;
use crate::params::ParamTable;
pub use checkpoint::{AdamState, Progress};
pub use probe::WindowLog;
pub use trainer::{EpochLines, Observer, Silent, StepReport, Trainer, probe_line};

/// Which dataset format a data folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Recognised from the folder's files ([`data::detect_format`]).
    Auto,
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
    /// PNG/JPEG files, `root/<class>/…` ([`data::folder`]).
    ImageFolder,
}

impl DatasetKind {
    /// The kind a detected format reads as.
    pub fn of(f: data::Format) -> Self {
        match f {
            data::Format::Idx => DatasetKind::FashionMnist,
            data::Format::Cifar10 => DatasetKind::Cifar10,
            data::Format::Cifar100 => DatasetKind::Cifar100,
            data::Format::Stl10 => DatasetKind::Stl10,
            data::Format::ImageFolder => DatasetKind::ImageFolder,
        }
    }
}

fn default_test_fraction() -> f64 {
    0.2
}

/// Where the data comes from, and how its images are fitted to the encoder.
///
/// Order of operations (docs/data.md, "Fitting images to the encoder"):
/// read; channels converted to the encoder's (1 ↔ 3); `resize` (cover
/// R×R, centre R×R; image folders are always fitted, to R or else to the
/// encoder's input); then `crop`: random for training, centred for
/// evaluation and embedding.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The format.
    pub kind: DatasetKind,
    /// The folder.
    pub dir: PathBuf,
    /// Crop size: random crops for training, the centre for evaluation
    /// (none: no crop). STL-10 in the paper: 64 of 96.
    #[serde(default)]
    pub crop: Option<usize>,
    /// Random horizontal flip.
    #[serde(default)]
    pub flip: bool,
    /// Resize every image to cover R×R and cut its centre R×R, before any crop.
    #[serde(default)]
    pub resize: Option<usize>,
    /// STL-10: train DIM on the 100 000 unlabeled images (the probes still
    /// use the labeled train and test splits).
    #[serde(default)]
    pub unlabeled: bool,
    /// Image folders of class folders only (no train/ and test/): the
    /// fraction of each class held out for testing.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Image folders: leave out files that fail to decode (counted and
    /// listed) instead of stopping.
    #[serde(default)]
    pub skip_bad: bool,
    /// Image folders: keep decoded splits in this folder and read them from
    /// there while the files and the fit are unchanged ([`data::folder::cache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<PathBuf>,
}

/// A split as loaded, and what its reader found.
#[derive(Clone, Debug)]
pub struct LoadedSplit {
    /// The images, fitted to the encoder.
    pub dataset: Dataset,
    /// The format read.
    pub format: data::Format,
    /// Image folders: class names (index = label) and the files, in dataset order.
    pub classes: Vec<String>,
    /// Image folders: the files, in dataset order.
    pub files: Vec<PathBuf>,
    /// Image folders with `skip_bad`: files left out.
    pub skipped: Vec<data::folder::Skipped>,
    /// Image folders with a cache: what it did.
    pub cache_note: Option<String>,
}

/// The images DIM trains on, or a labeled split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Which {
    Training,
    Labeled(Split),
}

impl DataConfig {
    /// A folder of `kind`, with no crop, flip or resize.
    pub fn new(kind: DatasetKind, dir: impl Into<PathBuf>) -> Self {
        DataConfig {
            kind,
            dir: dir.into(),
            crop: None,
            flip: false,
            resize: None,
            unlabeled: false,
            test_fraction: default_test_fraction(),
            skip_bad: false,
            cache: None,
        }
    }

    /// Checks the settings' ranges.
    pub fn validate(&self) -> Result<()> {
        if let Some(c) = self.crop {
            bounds::CROP.check_usize(c)?;
        }
        if let Some(r) = self.resize {
            bounds::RESIZE.check_usize(r)?;
        }
        bounds::TEST_FRACTION.check_f64(self.test_fraction)?;
        Ok(())
    }

    /// The format: `kind`, or the one detected in `dir`.
    pub fn format(&self) -> Result<data::Format> {
        Ok(match self.kind {
            DatasetKind::Auto => data::detect_format(&self.dir)?,
            DatasetKind::FashionMnist | DatasetKind::Mnist => data::Format::Idx,
            DatasetKind::Cifar10 => data::Format::Cifar10,
            DatasetKind::Cifar100 => data::Format::Cifar100,
            DatasetKind::Stl10 => data::Format::Stl10,
            DatasetKind::ImageFolder => data::Format::ImageFolder,
        })
    }

    /// Whether the data has labels to probe with (an image folder of bare
    /// files has none).
    pub fn has_labels(&self) -> Result<bool> {
        Ok(self.format()? != data::Format::ImageFolder
            || data::folder::layout(&self.dir)? != data::folder::Layout::Flat)
    }

    /// The images DIM trains on, for an encoder of `input` (C, H, W):
    /// converted and resized, not yet cropped (random crops are the
    /// loader's, [`DataConfig::augment`]).
    pub fn load_training(&self, input: [usize; 3]) -> Result<LoadedSplit> {
        self.load_fitted(Which::Training, input)
    }

    /// A labeled split for the probes or `embed`, fitted to `input`
    /// exactly: converted, resized and centre-cropped.
    pub fn load_eval(&self, split: Split, input: [usize; 3]) -> Result<LoadedSplit> {
        let mut l = self.load_fitted(Which::Labeled(split), input)?;
        if let Some(c) = self.crop {
            l.dataset = l.dataset.center_cropped(c, c)?;
        }
        let d = &l.dataset;
        if [d.channels, d.height, d.width] != input {
            return Err(self.shape_error([d.channels, d.height, d.width], input));
        }
        Ok(l)
    }

    /// The error for data of shape `got` given to an encoder of `input`,
    /// with the flags that would fit one to the other.
    pub fn shape_error(&self, got: [usize; 3], input: [usize; 3]) -> HostError {
        let [c, h, w] = got;
        let hint = if h > input[1] && w > input[2] && input[1] == input[2] && self.crop.is_none() {
            format!(
                ": --crop {s} takes random {s}×{s} crops for training and the centre for evaluation; --resize {s} scales the images",
                s = input[1]
            )
        } else if (h, w) != (input[1], input[2]) && input[1] == input[2] {
            format!(": --resize {} scales the images to the encoder's input", input[1])
        } else {
            String::new()
        };
        HostError::Config(format!(
            "the data gives {c}×{h}×{w} images but the encoder expects {}×{}×{}{hint}",
            input[0], input[1], input[2]
        ))
    }

    fn load_fitted(&self, which: Which, input: [usize; 3]) -> Result<LoadedSplit> {
        self.validate()?;
        let format = self.format()?;
        let split = match which {
            Which::Training => Split::Train,
            Which::Labeled(s) => s,
        };
        let plain = |dataset| LoadedSplit {
            dataset,
            format,
            classes: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
            cache_note: None,
        };
        let mut loaded = match format {
            data::Format::Idx | data::Format::Cifar10 | data::Format::Cifar100 | data::Format::Stl10 => {
                plain(self.read_binary(format, which)?)
            }
            data::Format::ImageFolder => {
                let side = self.resize.map(|r| (r, r)).unwrap_or((input[1], input[2]));
                let opts = data::FolderOptions {
                    channels: input[0],
                    height: side.0,
                    width: side.1,
                    test_fraction: self.test_fraction,
                    seed: 0,
                    skip_bad: self.skip_bad,
                    cache: self.cache.clone(),
                };
                let f = data::load_image_folder(&self.dir, split, &opts)?;
                LoadedSplit {
                    dataset: f.dataset,
                    format,
                    classes: f.classes,
                    files: f.files,
                    skipped: f.skipped,
                    cache_note: f.cache_note,
                }
            }
        };
        if self.unlabeled && format != data::Format::Stl10 {
            return Err(HostError::Config("unlabeled: only STL-10 has an unlabeled split".into()));
        }
        if format != data::Format::ImageFolder {
            let d = &loaded.dataset;
            if d.channels != input[0] {
                loaded.dataset = d.with_channels(input[0])?;
            }
            if let Some(r) = self.resize {
                loaded.dataset = loaded.dataset.fitted(r, r)?;
            }
        }
        Ok(loaded)
    }

    /// A split of a binary format as stored, nothing converted or fitted
    /// (an image folder has no stored size: it is refused).
    pub fn load_native(&self, split: Split) -> Result<Dataset> {
        let format = self.format()?;
        if format == data::Format::ImageFolder {
            return Err(HostError::Config("an image folder has no stored size: use load_eval".into()));
        }
        self.read_binary(format, Which::Labeled(split))
    }

    fn read_binary(&self, format: data::Format, which: Which) -> Result<Dataset> {
        let split = match which {
            Which::Training => Split::Train,
            Which::Labeled(s) => s,
        };
        Ok(match format {
            data::Format::Cifar10 => data::load_cifar10_dir(&self.dir, split)?,
            data::Format::Cifar100 => data::load_cifar100_dir(&self.dir, split, data::Cifar100Labels::Fine)?,
            data::Format::Stl10 => data::load_stl10_dir(
                &self.dir,
                match which {
                    Which::Training if self.unlabeled => data::StlSplit::Unlabeled,
                    Which::Training | Which::Labeled(Split::Train) => data::StlSplit::Train,
                    Which::Labeled(Split::Test) => data::StlSplit::Test,
                },
            )?,
            _ => data::load_mnist_dir(&self.dir, split)?,
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
    /// Log gradient norms every epoch (`grad_norm`, `grad_norm_max` and
    /// per-tensor `grad_norms` in train.jsonl).
    #[serde(default)]
    pub log_grad_norm: bool,
    /// Every this many steps (and before the first), log the k-NN accuracy
    /// of Y on the labeled data into train.jsonl ([`WindowLog`]); `None`: never.
    #[serde(default)]
    pub probe_every: Option<u64>,
}

impl TrainConfig {
    /// Checks what the model config does not.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let params = min_param_count(&self.model)?;
        if params > MAX_PARAMS {
            return Err(HostError::Config(format!(
                "the model needs at least {params} parameters, more than the limit of {MAX_PARAMS}"
            )));
        }
        self.optimizer.adam().validate()?;
        bounds::BATCH_SIZE.check_usize(self.batch_size)?;
        if self.epochs.is_none() && self.minutes.is_none() && self.steps.is_none() {
            return Err(HostError::Config("set a budget: epochs, minutes or steps".into()));
        }
        if let Some(e) = self.epochs {
            bounds::EPOCHS.check_u64(e)?;
        }
        if let Some(s) = self.steps {
            bounds::STEPS.check_u64(s)?;
        }
        if let Some(m) = self.minutes {
            bounds::MINUTES.check_f64(m)?;
        }
        if let Some(p) = self.probe_every {
            bounds::PROBE_EVERY.check_u64(p)?;
        }
        self.data.validate()?;
        Ok(())
    }

    /// Parses a TOML or JSON config file (by extension; JSON if it starts
    /// with `{`). Unknown keys are errors.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text_bounded(path, crate::files::MAX_CONFIG_BYTES)
            .map_err(crate::host_error::io(path, "read config"))?;
        let json = path.extension().is_some_and(|e| e == "json");
        let cfg = Self::deserialize_text(&text, json)
            .map_err(|reason| HostError::Format { path: path.to_path_buf(), reason })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses and validates a config held in memory: JSON if `json` or if
    /// it starts with `{`, TOML otherwise. Unknown keys are errors; a syntax
    /// error is [`HostError::Config`].
    pub fn parse(text: &str, json: bool) -> Result<Self> {
        let cfg = Self::deserialize_text(text, json).map_err(HostError::Config)?;
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
    /// Largest global gradient L2 norm of the epoch's steps, if asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm_max: Option<f64>,
    /// L2 norm of each parameter's gradient at the last step, if asked for.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norms: Option<std::collections::BTreeMap<String, f64>>,
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
    /// BN statistics of the same name and shape are taken, the optimiser and
    /// progress start fresh. Every encoder tensor must be found; heads may
    /// be new.
    From(PathBuf),
    /// [`Start::From`], keeping fresh values for the encoder tensors the
    /// checkpoint lacks or shapes otherwise (a partial load, asked for).
    FromPartial(PathBuf),
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

/// Whether `dir` holds no earlier run: it is missing or empty.
/// Anything else (even the log of a run killed before its first
/// checkpoint) is kept from a fresh run's reach.
pub(crate) fn holds_no_run(dir: &Path) -> Result<bool> {
    crate::files::is_vacant(dir).map_err(crate::host_error::io(dir, "list output folder"))
}

/// Makes `dir` free for a fresh run: an earlier run there is moved aside
/// (renamed to `dir.old-N`, nothing deleted), under its lock, so a live run
/// is never moved. Returns where it went.
pub fn move_earlier_run_aside(dir: &Path) -> Result<Option<PathBuf>> {
    crate::files::move_aside(dir).map_err(crate::host_error::io(dir, "move the earlier run aside"))
}

/// What became of one tensor of the model in an `--init` load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitStatus {
    /// Copied from the checkpoint's tensor of the same name and shape.
    Loaded,
    /// The checkpoint has no tensor of this name: it keeps its fresh value.
    Missing,
    /// The checkpoint's tensor of this name has another shape (given): the
    /// model's keeps its fresh value.
    Shape(Vec<usize>),
}

/// One row of an `--init` load's table: a tensor of the model being
/// trained, its shape, and what it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitRow {
    /// The tensor's name (`encoder.conv1.weight`, `bn1.running_mean`, ...).
    pub name: String,
    /// Its shape in the model being trained.
    pub shape: Vec<usize>,
    /// What it was given.
    pub status: InitStatus,
}

impl InitRow {
    /// Whether the run depends on this tensor's load: an encoder tensor.
    /// Heads and priors may be new in a fine-tuning run.
    pub fn is_encoder(&self) -> bool {
        self.name.starts_with("encoder.")
    }
}

/// The table of an `--init` load, one line per tensor, for the terminal.
pub fn init_table(rows: &[InitRow]) -> String {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in rows {
        let what = match &r.status {
            InitStatus::Loaded => "loaded".to_owned(),
            InitStatus::Missing => "fresh (not in the checkpoint)".to_owned(),
            InitStatus::Shape(found) => format!("fresh (the checkpoint's is {found:?})"),
        };
        out.push_str(&format!("  {:<w$}  {:<18}  {what}\n", r.name, format!("{:?}", r.shape)));
    }
    let loaded = rows.iter().filter(|r| r.status == InitStatus::Loaded).count();
    out.push_str(&format!("  {loaded} of {} tensors loaded", rows.len()));
    out
}

/// Copies every tensor of `src` whose name and shape exist in `dst`, and
/// says for each tensor of `dst` what it was given.
fn copy_weights(src: &Dim, dst: &mut Dim) -> Vec<InitRow> {
    let shape_in =
        |d: &Dim, name: &str| d.table.get(name).or_else(|| d.buffer_table.get(name)).map(|e| e.shape.clone());
    let mut rows = Vec::new();
    for e in dst.table.entries().to_vec().iter().chain(dst.buffer_table.entries().to_vec().iter()) {
        let status = match shape_in(src, &e.name) {
            None => InitStatus::Missing,
            Some(found) if found != e.shape => InitStatus::Shape(found),
            Some(_) => match (src.tensor(&e.name), dst.tensor_mut(&e.name)) {
                (Some(s), Some(d)) if s.len() == d.len() => {
                    d.copy_from_slice(s);
                    InitStatus::Loaded
                }
                _ => InitStatus::Missing,
            },
        };
        rows.push(InitRow { name: e.name.clone(), shape: e.shape.clone(), status });
    }
    rows
}

/// Checks `--freeze` prefixes against the model's parameter names: an
/// empty prefix (which would freeze everything) or one that names no
/// parameter (a typo) is refused rather than ignored.
fn check_freeze(model: &Dim, freeze: &[String]) -> Result<()> {
    for f in freeze {
        if f.is_empty() {
            return Err(HostError::Config(
                "freeze: an empty prefix would freeze every parameter; name a layer such as encoder.conv1".into(),
            ));
        }
        if !model.table.entries().iter().any(|e| e.name.starts_with(f.as_str())) {
            let mut layers: Vec<&str> =
                model.table.entries().iter().filter_map(|e| e.name.rsplit_once('.').map(|(l, _)| l)).collect();
            layers.dedup();
            return Err(HostError::Config(format!(
                "freeze: {f:?} names no parameter of this model; its layers are {}",
                layers.join(", ")
            )));
        }
    }
    Ok(())
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

/// Largest model accepted (parameters; 16 GiB of f32 weights): a typed
/// error instead of an allocation failure for absurd configs.
pub const MAX_PARAMS: u128 = 1 << 32;

/// A lower bound on the parameter count of `cfg` (the weight matrices of
/// the encoder and the local head's D×D layer), in u128 so no config can
/// overflow it. Configs and checkpoints are checked against it before
/// `Dim::new` allocates (and before its table arithmetic could overflow).
pub(crate) fn min_param_count(cfg: &crate::dim::DimConfig) -> crate::error::Result<u128> {
    let enc = cfg.validate()?;
    let head = (cfg.mi_units as u128).saturating_mul(cfg.mi_units as u128);
    Ok(head.saturating_add(enc.min_weight_count()?))
}

/// Elements per task of the per-step checks below (fixed, so the sums do
/// not depend on the thread count).
const CHECK_CHUNK: usize = 1 << 16;

/// `Σ v²` in f64 over fixed chunks with 8 independent accumulators each:
/// one serial chain of f64 adds would take ~4 cycles per element, and the
/// trainer runs this over every gradient every step.
fn sum_squares(v: &[f32]) -> f64 {
    let partial: Vec<f64> = v
        .par_chunks(CHECK_CHUNK)
        .map(|c| {
            let mut acc = [0f64; 8];
            let lanes = c.chunks_exact(8);
            let tail = lanes.remainder();
            for l in lanes {
                for (a, &x) in acc.iter_mut().zip(l) {
                    *a += f64::from(x) * f64::from(x);
                }
            }
            tail.iter().fold(acc.iter().sum::<f64>(), |s, &x| s + f64::from(x) * f64::from(x))
        })
        .collect();
    partial.iter().sum()
}

/// Whether every value is finite, branch-free (an exponent of all ones is
/// Inf or NaN), so it vectorises.
fn all_finite(v: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    v.par_chunks(CHECK_CHUNK).all(|c| c.iter().fold(0u32, |bad, x| bad | u32::from(x.to_bits() & EXP == EXP)) == 0)
}

/// Per-tensor sums of squares (f64, fixed order: any thread count gives the
/// same bits), or the name of the first tensor holding a NaN or Inf.
fn tensor_sums_of_squares(table: &ParamTable, values: &[f32]) -> std::result::Result<Vec<f64>, String> {
    let sums: Vec<f64> = table.entries().iter().map(|e| sum_squares(&values[e.range()])).collect();
    // A finite f32's square is at most ~1.2e77, so only NaN/Inf make it non-finite.
    match sums.iter().position(|s| !s.is_finite()) {
        Some(i) => Err(table.entries()[i].name.clone()),
        None => Ok(sums),
    }
}

/// The tensor with the largest |weight| and that value: where a
/// non-finite loss most likely came from.
fn largest_weights(table: &ParamTable, values: &[f32]) -> String {
    let max_abs = |e: &crate::params::ParamEntry| values[e.range()].iter().fold(0f32, |m, v| m.max(v.abs()));
    table
        .entries()
        .iter()
        .map(|e| (e, max_abs(e)))
        .fold(None, |best: Option<(&crate::params::ParamEntry, f32)>, (e, m)| match best {
            Some((_, bm)) if bm >= m => best,
            _ => Some((e, m)),
        })
        .map_or_else(|| "none".into(), |(e, m)| format!("{}, max |w| {m:.3e}", e.name))
}

/// Refuses a model whose weights or BN statistics cannot be right: a NaN
/// or Inf anywhere, or a negative `running_var` (its square root is NaN).
/// `export`, `embed` and `eval` call it before they use a checkpoint.
pub fn check_model_finite(model: &Dim) -> Result<()> {
    let found = first_non_finite(&model.table, &model.params)
        .map(|n| format!("{n} holds NaN or Inf"))
        .or_else(|| first_non_finite(&model.buffer_table, &model.buffers).map(|n| format!("{n} holds NaN or Inf")))
        .or_else(|| {
            model.buffer_table.entries().iter().find_map(|e| {
                let neg = e.name.ends_with(".running_var") && model.buffers[e.range()].iter().any(|&v| v < 0.0);
                neg.then(|| format!("{} is negative somewhere (a variance)", e.name))
            })
        });
    match found {
        Some(what) => Err(HostError::NotFinite { what }),
        None => Ok(()),
    }
}

/// Refuses features with a NaN or Inf, naming the output and image.
pub fn check_features_finite(f: &Features) -> Result<()> {
    let outputs = [("conv", f.conv.as_ref()), ("fc", f.fc.as_ref()), ("y", Some(&f.y))];
    for (name, out) in outputs {
        if let Some((d, v)) = out
            && let Some(i) = v.iter().position(|x| !x.is_finite())
        {
            return Err(HostError::NotFinite { what: format!("feature {name} of image {}", i / (*d).max(1)) });
        }
    }
    Ok(())
}

/// The name of the first tensor of `table` holding a NaN or Inf.
fn first_non_finite(table: &ParamTable, values: &[f32]) -> Option<String> {
    table.entries().iter().find(|e| !all_finite(&values[e.range()])).map(|e| e.name.clone())
}

/// Keeps the log lines of steps up to `step` (what the checkpoint holds):
/// a run killed after logging an epoch but before its checkpoint, or in the
/// middle of a line, would otherwise log that epoch twice.
/// The step of any `train.jsonl` line (an epoch's or a probe's).
#[derive(Deserialize)]
struct LogStep {
    step: u64,
}

fn trim_log(path: &Path, step: u64) -> Result<()> {
    let text = match crate::files::read_text_bounded(path, crate::files::MAX_LOG_BYTES) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(HostError::Io { path: path.to_path_buf(), action: "read log", source: e }),
    };
    let keep: String = text
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && serde_json::from_str::<LogStep>(l).is_ok_and(|e| e.step <= step))
        .collect();
    if keep.len() != text.len() { checkpoint::write_atomic(path, keep.as_bytes()) } else { Ok(()) }
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
/// the `latest` pointer are durable) and a final checkpoint. Unless `quiet`,
/// reports progress on stderr (progress bars with feature `cli`).
pub fn train(cfg: &TrainConfig, out_dir: &Path, start: Start, quiet: bool) -> Result<TrainSummary> {
    if quiet {
        train_with(cfg, out_dir, start, &mut Silent)
    } else {
        #[cfg(feature = "cli")]
        {
            train_with(cfg, out_dir, start, &mut progress::Bars::default())
        }
        #[cfg(not(feature = "cli"))]
        {
            train_with(cfg, out_dir, start, &mut EpochLines)
        }
    }
}

/// [`train`], reporting to `observer`.
pub fn train_with(
    cfg: &TrainConfig,
    out_dir: &Path,
    start: Start,
    observer: &mut dyn Observer,
) -> Result<TrainSummary> {
    // Run on a pool worker: the kernels' parallel loops then fork locally
    // instead of handing off from an outside thread every call.
    let mut out = None;
    rayon::scope(|_| {
        out = Some((|| {
            let mut t = Trainer::new(cfg, out_dir, start)?;
            for note in t.data_notes() {
                observer.data_note(note);
            }
            if !t.init_rows().is_empty() {
                observer.initialised(t.init_rows());
            }
            while t.step(observer)?.is_some() {}
            Ok(t.finish())
        })())
    });
    out.unwrap_or_else(|| Err(HostError::Config("the thread pool did not run the trainer".into())))
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

/// Re-estimates the encoder's BN running statistics with one train-mode
/// pass over `ds` in order, `batch` images at a time (the last batch too if
/// it has at least 2 images), as a cumulative average of the batch
/// statistics. Parameters are not touched. This is the reference's
/// "random init, BN stats from one train-mode pass" baseline.
pub fn recalibrate_bn(model: &mut Dim, ds: &Dataset, batch: usize) -> Result<()> {
    let enc = &model.encoder;
    let in_len: usize = enc.cfg.input.iter().product();
    if ds.channels * ds.height * ds.width != in_len {
        return Err(HostError::Config("dataset images do not match the encoder input".into()));
    }
    let idx: Vec<usize> = (0..ds.n).collect();
    let mut acts: Option<crate::dim::EncoderActs> = None;
    let mut seen = 0u32;
    for chunk in idx.chunks(batch.max(2)) {
        let b = chunk.len();
        if b < 2 {
            break;
        }
        if acts.as_ref().is_none_or(|a| a.batch() != b) {
            acts = Some(enc.alloc(b, false)?);
        }
        let Some(a) = acts.as_mut() else { continue };
        let mut x = vec![0f32; b * in_len];
        ds.write_batch(chunk, &mut x)?;
        enc.forward(&model.params, &mut model.buffers, &x, a, Mode::Calibrate { seen })?;
        seen = seen.saturating_add(1);
    }
    Ok(())
}

/// Runs the frozen encoder (eval mode) over `ds`, `batch` images at a time.
pub fn extract_features(model: &mut Dim, ds: &Dataset, batch: usize) -> Result<Features> {
    let enc = model.encoder.clone();
    let conv_tap = enc.conv_tap();
    let fc_tap = enc.fc_tap();
    let in_len: usize = enc.cfg.input.iter().product();
    if ds.channels * ds.height * ds.width != in_len {
        return Err(HostError::Config("dataset images do not match the encoder input".into()));
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

#[cfg(test)]
mod tests {
    use super::{CHECK_CHUNK, all_finite, sum_squares};

    #[test]
    fn sum_squares_matches_a_plain_f64_sum() {
        for len in [0, 1, 7, 8, 9, CHECK_CHUNK - 1, CHECK_CHUNK, 3 * CHECK_CHUNK + 5] {
            let v: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 2.0).collect();
            let naive: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let got = sum_squares(&v);
            assert!((got - naive).abs() <= 1e-12 * naive.max(1.0), "len {len}: {got} vs {naive}");
        }
    }

    #[test]
    fn all_finite_finds_nan_and_inf_anywhere() {
        let len = 2 * CHECK_CHUNK + 3;
        let v = vec![f32::MAX; len];
        assert!(all_finite(&v) && all_finite(&[]));
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 5, CHECK_CHUNK, len - 1] {
                let mut w = v.clone();
                w[at] = bad;
                assert!(!all_finite(&w), "{bad} at {at}");
            }
        }
    }
}
