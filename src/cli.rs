//! The command line's arguments (clap) and the settings they give, apart
//! from running anything: the `infomax` binary runs them, the `args` fuzz
//! target throws arbitrary argument lists at them.
//!
//! clap turns doc comments into `--help` text, so the argument types keep
//! only the comments their help needs.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::bounds;
use crate::dim::{DimConfig, Estimator, HeadKind, MultiGlobal, Occlusion};
use crate::train::{self, DataConfig, DatasetKind, HostError, OptimConfig, TrainConfig, checkpoint};

/// The Fashion-MNIST subset in the repository: the main job's data.
pub const BUNDLED_DATA: &str = "data/fashion-mnist-subset";
/// The main job's run folder (numbered when it holds a run).
pub const DEFAULT_OUT: &str = "runs/fmnist-subset";

#[derive(Parser)]
#[command(
    name = "infomax",
    version,
    about = "Deep InfoMax on CPUs: train encoders, evaluate them, embed datasets.",
    long_about = "Deep InfoMax (Hjelm et al., ICLR 2019) on multicore CPUs.\n\n\
        `infomax train` alone trains the conv28 encoder on the Fashion-MNIST subset bundled in \
        data/fashion-mnist-subset, then evaluates it with the paper's protocol (frozen encoder, \
        linear and nonlinear classifiers on the conv, fc and Y features) next to raw pixels and \
        the same encoder untrained."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Worker threads (default: all cores). Results are identical for any count.
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Memory a command may plan to use, e.g. 8G or 512M [default: 80% of
    /// the smaller of MemAvailable and the cgroup's memory.max]. A command
    /// whose plan needs more is refused before it allocates, naming the
    /// largest item; evaluation and embedding take smaller batches first.
    #[arg(long, global = true, value_parser = train::memory::parse_size)]
    pub max_memory: Option<u64>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a DIM encoder (and evaluate it unless --no-eval).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint with the paper's protocol.
    Eval(EvalArgs),
    /// Write a dataset's features (conv, fc, Y) to a safetensors file.
    Embed(EmbedArgs),
    /// Export a checkpoint's encoder as an inference safetensors file (BN folded).
    Export(ExportArgs),
    /// Write a run folder's HTML report: training curves, k-NN curve,
    /// probe accuracies beside the baselines, a map of Y, config, timings.
    Report(ReportArgs),
    /// Turn a PyTorch state_dict (safetensors) of a supported encoder into an
    /// infomax inference file (which eval, embed and train --init take).
    Import(ImportArgs),
}

#[derive(Args)]
pub struct ImportArgs {
    /// The state_dict, saved with safetensors.torch.save_file (a .pt file:
    /// see docs/inference.md, "From PyTorch").
    pub state_dict: PathBuf,
    /// The architecture as a preset: conv28, conv32, alex64, edge, fold28.
    #[arg(long, conflicts_with = "encoder_config")]
    pub encoder: Option<String>,
    /// The architecture as an EncoderConfig JSON file (the `encoder_config`
    /// of an exported file). Neither flag: the state_dict's own
    /// `encoder_config` metadata.
    #[arg(long, value_name = "FILE")]
    pub encoder_config: Option<PathBuf>,
    /// The inference file to write.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Keep the BN layers (for fine-tuning with their statistics) instead of
    /// folding them.
    #[arg(long)]
    pub unfolded: bool,
    /// Weight dtype of the file.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Go on even if the weights or BN statistics hold NaN or Inf.
    #[arg(long)]
    pub allow_non_finite: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The run folder (holding train.jsonl).
    pub run: PathBuf,
    /// The HTML file to write [default: RUN/report.html].
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The training checkpoint.
    pub checkpoint: PathBuf,
    /// Output safetensors file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Weight dtype.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Keep the batch norms as separate tensors (for PyTorch; the no_std plan needs folded files).
    #[arg(long)]
    pub unfolded: bool,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    pub allow_non_finite: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EstimatorArg {
    Jsd,
    Nce,
    Dv,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HeadArg {
    /// Encode-and-dot-product (docs/method.md §4.1): every pair of the batch scored by one GEMM.
    Dot,
    /// Concat-and-convolve (docs/method.md §4.2): one permuted negative per location.
    Concat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GlobalsArg {
    /// One global vector per image: Y (the paper's main setting).
    Single,
    /// K global vectors per image from a 3×3-conv → 1×1-conv stack over the local map (docs/method.md §7.1):
    /// 25 from a 7×7 map, each summarising a 3×3 block and scored against every local vector.
    Multi,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DatasetArg {
    /// Recognised from the folder's files: IDX, CIFAR-10/100, STL-10 or an image folder.
    Auto,
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    Stl10,
    /// PNG/JPEG files: root/<class>/…, root/{train,test}/<class>/…, or bare files (unlabeled).
    ImageFolder,
}

impl From<DatasetArg> for DatasetKind {
    fn from(d: DatasetArg) -> Self {
        match d {
            DatasetArg::Auto => DatasetKind::Auto,
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
            DatasetArg::Cifar100 => DatasetKind::Cifar100,
            DatasetArg::Stl10 => DatasetKind::Stl10,
            DatasetArg::ImageFolder => DatasetKind::ImageFolder,
        }
    }
}

#[derive(Args, Clone)]
pub struct DataArgs {
    /// Data folder: IDX, CIFAR-10/100 or STL-10 binary files, or an image
    /// folder (root/<class>/*.png|jpg, with or without train/ and test/).
    #[arg(long, default_value = BUNDLED_DATA)]
    pub data: PathBuf,
    /// Dataset format [default: recognised from the folder's files].
    #[arg(long, value_enum, default_value = "auto")]
    pub dataset: DatasetArg,
    /// Crop side: random crops for training, the centre for evaluation and
    /// embedding (STL-10 in the paper: --crop 64 of 96).
    #[arg(long)]
    pub crop: Option<usize>,
    /// Resize every image to cover R×R and keep its centre R×R, before any
    /// crop (image folders are always fitted: to R, or to the encoder's input).
    #[arg(long, value_name = "R")]
    pub resize: Option<usize>,
    /// STL-10: train DIM on the 100 000 unlabeled images.
    #[arg(long)]
    pub unlabeled: bool,
    /// Image folders of class folders without train/ and test/: the
    /// fraction of each class held out (seeded) for testing.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// Image folders: leave out files that fail to read or decode (counted
    /// and listed) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// Image folders: keep the decoded images in DIR, and read them from
    /// there on later runs while the files and the fit are unchanged.
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProbeArgs {
    /// Epochs per probe classifier (the reference protocol: 30).
    #[arg(long, default_value_t = 30)]
    pub eval_epochs: usize,
    /// train: skip the raw-pixel and untrained-encoder baselines (eval runs
    /// them only with --baselines).
    #[arg(long, conflicts_with = "baselines")]
    pub no_baselines: bool,
    /// Draws of each few-label linear probe (10 and 100 labels per class;
    /// each probe takes 10 Adam steps per --eval-epochs); 0 turns them off.
    #[arg(long, default_value_t = 5)]
    pub few_draws: usize,
    /// eval: also score the raw-pixel and untrained-encoder baselines (train
    /// scores them unless --no-baselines).
    #[arg(long)]
    pub baselines: bool,
    /// Also score the untrained encoder with BN statistics re-estimated from
    /// the data on the conv and fc taps (by default only its Y tap, the one
    /// DIM's margin is read on; the conv tap's classifiers are most of an
    /// evaluation's cost).
    #[arg(long)]
    pub full_baselines: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// A TOML or JSON config file (TrainConfig); when given, it replaces the model, data and budget flags.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Encoder preset: conv28, conv32, alex64, edge, fold28 (28×28 crops folded into a 6×6 map) or resnet32 (ResNet bottlenecks, 32×32×3).
    #[arg(long, default_value = "conv28")]
    pub encoder: String,
    /// MI embedding width D [default: 128 on the bundled subset, 512 on any
    /// other data]. The small heads keep the bundled main job inside its
    /// 5-minute budget (at 512 they are a third of a conv28 step); the
    /// paper uses 2048, and our full Fashion-MNIST runs use 512.
    #[arg(long)]
    pub mi_units: Option<usize>,
    /// MI estimator.
    #[arg(long, value_enum, default_value = "jsd")]
    pub estimator: EstimatorArg,
    /// Local MI head.
    #[arg(long, value_enum, default_value = "dot")]
    pub head: HeadArg,
    /// Weight α of global DIM (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub alpha: f64,
    /// Weight β of local DIM.
    #[arg(long, default_value_t = 1.0)]
    pub beta: f64,
    /// Weight γ of adversarial prior matching (0: off; the paper uses 0.1).
    #[arg(long, default_value_t = 0.0)]
    pub gamma: f64,
    /// Occlusion (docs/method.md §7.2): compute Y from a copy of each image with a random SIZE×SIZE square
    /// blanked (redrawn every step), the local features from the clean image, so Y must predict
    /// what it cannot see. Half the image side is a good start (14 for 28×28). Costs a second
    /// encoder pass per step.
    #[arg(long, value_name = "SIZE")]
    pub occlude: Option<usize>,
    /// Value written into the occluded square, in normalised [−1, 1] units (0 = mid-grey).
    #[arg(long, value_name = "VALUE", default_value_t = 0.0, allow_negative_numbers = true)]
    pub occlude_fill: f32,
    /// Global vectors: `single` (Y) or `multi` (K globals from the local map, docs/method.md §7.1).
    #[arg(long, value_enum, default_value = "single")]
    pub globals: GlobalsArg,
    /// With `--globals multi`: channels of the globals' two convs (default: the local map's).
    #[arg(long, value_name = "C")]
    pub global_channels: Option<usize>,
    /// With `--globals multi`: score only S of the K globals per image each step, drawn at
    /// random (1 = the paper's "one 3×3 block of the local map"; default: all K).
    #[arg(long, value_name = "S")]
    pub global_samples: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Epochs to train (default 3 when no other budget is given).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Wall-clock minutes to train.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Steps to train.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder for checkpoints, logs and results [default: runs/fmnist-subset,
    /// or runs/fmnist-subset-2, -3, ... if that one holds a run]. A fresh run
    /// never starts in a folder that holds another run (see --force).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Continue the run in OUT exactly, from OUT/latest.
    #[arg(long, conflicts_with = "init", requires = "out")]
    pub resume: bool,
    /// Start fresh in OUT even if it holds an earlier run: that run is moved
    /// aside to OUT.old-N first (renamed; nothing is deleted).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Fine-tune: start from the weights of this checkpoint (a file, a run
    /// folder or its latest). Tensors are matched by name and shape, and the
    /// table of what was loaded is printed; every encoder tensor must match.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// With --init: keep fresh values for encoder tensors the checkpoint
    /// lacks or shapes otherwise, instead of refusing.
    #[arg(long, requires = "init")]
    pub init_partial: bool,
    /// Keep parameters whose name starts with this prefix frozen (repeatable).
    #[arg(long)]
    pub freeze: Vec<String>,
    /// Log gradient norms (global and per tensor) to OUT/train.jsonl every epoch.
    #[arg(long)]
    pub log_grad_norm: bool,
    /// Log the k-NN accuracy of Y (the test split against the labeled train
    /// split, up to 10 000 images each) into train.jsonl every N steps and
    /// before the first: the run's quality curve [default: 200; a config
    /// file's `probe_every` otherwise].
    #[arg(long, value_name = "N", conflicts_with = "no_probe")]
    pub probe_every: Option<u64>,
    /// No k-NN probes during training.
    #[arg(long)]
    pub no_probe: bool,
    /// Do not evaluate after training.
    #[arg(long)]
    pub no_eval: bool,
    /// Do not export the encoder (f32 and f16, BN folded) and check it through the no-alloc inference path.
    #[arg(long)]
    pub no_export: bool,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub probe: ProbeArgs,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// Images per encoder forward pass [default: 500, or fewer if the
    /// memory limit needs].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Also write the results as JSON, in the form of a run's `eval.json`
    /// (a new path or a regular file, never one of the inputs).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct EmbedArgs {
    /// The checkpoint whose encoder to run.
    pub checkpoint: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Which split to embed.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Output safetensors file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// Images per encoder forward pass [default: 500, or fewer if the
    /// memory limit needs].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Which features to write: conv, fc, y (comma-separated or repeated)
    /// [default: every tap the encoder has].
    #[arg(long, value_delimiter = ',')]
    pub tap: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

pub fn data_config(d: &DataArgs) -> DataConfig {
    DataConfig {
        crop: d.crop,
        resize: d.resize,
        unlabeled: d.unlabeled,
        test_fraction: d.test_fraction,
        skip_bad: d.skip_bad,
        cache: d.cache.clone(),
        ..DataConfig::new(d.dataset.into(), d.data.clone())
    }
}

/// The data settings of `eval` and `embed` on `model_file`: those the
/// checkpoint was trained with (its `train_config`), unless `--data` is
/// given; any data flag given explicitly overrides its part. Inference
/// files and checkpoints without a `train_config` take the flags.
pub fn eval_data_config(d: &DataArgs, explicit: &[String], model_file: &Path) -> Result<DataConfig, HostError> {
    let flags = data_config(d);
    let given = |id: &str| explicit.iter().any(|e| e == id);
    if given("data") {
        return Ok(flags);
    }
    let Ok(meta) = checkpoint::read_metadata(model_file) else { return Ok(flags) };
    let Some(text) = meta.get("train_config") else { return Ok(flags) };
    let saved: TrainConfig = serde_json::from_str(text)
        .map_err(|e| HostError::Format { path: model_file.to_path_buf(), reason: format!("train_config: {e}") })?;
    let mut cfg = saved.data;
    if given("dataset") {
        cfg.kind = flags.kind;
    }
    if given("crop") {
        cfg.crop = flags.crop;
    }
    if given("resize") {
        cfg.resize = flags.resize;
    }
    if given("test_fraction") {
        cfg.test_fraction = flags.test_fraction;
    }
    cfg.skip_bad |= flags.skip_bad;
    if given("cache") {
        cfg.cache = flags.cache;
    }
    cfg.flip = false;
    Ok(cfg)
}

/// The evaluation settings, checked before any work starts (a run must
/// not train for hours and then refuse its evaluation).
impl ProbeArgs {
    /// Checks `--eval-epochs` and an encoding `--batch-size`.
    pub fn check(&self, batch: Option<usize>) -> Result<(), HostError> {
        bounds::EVAL_EPOCHS.check_usize(self.eval_epochs)?;
        if let Some(b) = batch {
            bounds::ENCODE_BATCH.check_usize(b)?;
        }
        Ok(())
    }
}
impl TrainArgs {
    /// The run's settings from the flags or `--config`, validated (before
    /// `--resume` merges the checkpoint's).
    pub fn config(&self) -> Result<TrainConfig, HostError> {
        let args = self;
        let mut cfg = match &args.config {
            Some(p) => TrainConfig::from_file(p)?,
            None => {
                let estimator = match args.estimator {
                    EstimatorArg::Jsd => Estimator::Jsd,
                    EstimatorArg::Nce => Estimator::Nce,
                    EstimatorArg::Dv => Estimator::Dv,
                };
                let budget_given = args.epochs.is_some() || args.minutes.is_some() || args.steps.is_some();
                if args.globals == GlobalsArg::Single
                    && (args.global_channels.is_some() || args.global_samples.is_some())
                {
                    return Err(HostError::Config(
                        "--global-channels and --global-samples need --globals multi".into(),
                    ));
                }
                let mut model = DimConfig::new(&args.encoder)
                    .mi_units(args.mi_units.unwrap_or(
                        // The same folder however it is spelt (`./data/...`, an absolute path).
                        if crate::files::same_file(&args.data.data, Path::new(BUNDLED_DATA)) { 128 } else { 512 },
                    ))
                    .estimator(estimator)
                    .head(match args.head {
                        HeadArg::Dot => HeadKind::Dot,
                        HeadArg::Concat => HeadKind::Concat,
                    })
                    .weights(args.alpha, args.beta, args.gamma)
                    .seed(args.seed);
                model.occlusion = args.occlude.map(|size| Occlusion { size, fill: args.occlude_fill });
                model.globals = (args.globals == GlobalsArg::Multi)
                    .then_some(MultiGlobal { channels: args.global_channels, samples: args.global_samples });
                TrainConfig {
                    model,
                    data: data_config(&args.data),
                    batch_size: args.batch_size,
                    epochs: if budget_given { args.epochs } else { Some(3) },
                    minutes: args.minutes,
                    steps: args.steps,
                    optimizer: OptimConfig { lr: args.lr, ..OptimConfig::default() },
                    seed: args.seed,
                    freeze: args.freeze.clone(),
                    log_grad_norm: false,
                    probe_every: Some(DEFAULT_PROBE_EVERY),
                }
            }
        };
        cfg.log_grad_norm |= args.log_grad_norm;
        if args.probe_every.is_some() {
            cfg.probe_every = args.probe_every;
        }
        if args.no_probe {
            cfg.probe_every = None;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Steps between k-NN probes when neither a flag nor a config file says.
pub const DEFAULT_PROBE_EVERY: u64 = 200;
/// Flags a resumed run may set: the budget, where the data lives now,
/// logging, and what happens after training. Any other flag given with
/// `--resume` must agree with the checkpoint's settings.
pub const RESUME_MAY_CHANGE: &[&str] = &[
    "epochs",
    "minutes",
    "steps",
    "data",
    "log_grad_norm",
    "probe_every",
    "no_probe",
    "cache",
    "no_eval",
    "no_export",
    "eval_epochs",
    "no_baselines",
    "baselines",
    "few_draws",
    "full_baselines",
    "out",
    "resume",
    "quiet",
    "threads",
];

/// The settings of a resumed run: the checkpoint's (its `train_config`),
/// with the budget and data folder of the command line if given there. A
/// flag given explicitly that disagrees with the checkpoint is an error
/// naming it; `flags` is what the command line alone would have run.
/// Checkpoints without a `train_config` resume with `flags`, as they were
/// written to be.
pub fn resumed_config(flags: &TrainConfig, explicit: &[String], out: &Path) -> Result<TrainConfig, HostError> {
    let path = checkpoint::latest(out)?
        .ok_or_else(|| HostError::Config(format!("--resume: {} has no checkpoint yet", out.display())))?;
    let metadata = checkpoint::read_metadata(&path)?;
    let Some(text) = metadata.get("train_config") else { return Ok(flags.clone()) };
    let saved: TrainConfig = serde_json::from_str(text)
        .map_err(|e| HostError::Format { path: path.clone(), reason: format!("train_config: {e}") })?;
    saved.validate().map_err(|e| HostError::Format { path: path.clone(), reason: format!("train_config: {e}") })?;
    merge_resumed(flags, explicit, saved, &path)
}

/// [`resumed_config`] once the checkpoint at `path` gave its validated
/// settings `saved`: the conflicts, then the budget and data folder.
pub fn merge_resumed(
    flags: &TrainConfig,
    explicit: &[String],
    saved: TrainConfig,
    path: &Path,
) -> Result<TrainConfig, HostError> {
    let no_budget = |c: &TrainConfig| TrainConfig {
        epochs: None,
        minutes: None,
        steps: None,
        log_grad_norm: false,
        probe_every: None,
        ..c.clone()
    };
    let (f, s) = (flags, &saved);
    let conflicts: Vec<String> = explicit
        .iter()
        .filter(|id| !RESUME_MAY_CHANGE.contains(&id.as_str()))
        .filter(|id| {
            let same = match id.as_str() {
                "config" => {
                    no_budget(f)
                        == TrainConfig {
                            data: DataConfig { dir: f.data.dir.clone(), cache: f.data.cache.clone(), ..s.data.clone() },
                            ..no_budget(s)
                        }
                }
                "encoder" => f.model.encoder == s.model.encoder,
                "mi_units" => f.model.mi_units == s.model.mi_units,
                "estimator" => f.model.estimator == s.model.estimator,
                "head" => f.model.head == s.model.head,
                "alpha" => f.model.alpha == s.model.alpha,
                "beta" => f.model.beta == s.model.beta,
                "gamma" => f.model.gamma == s.model.gamma,
                "occlude" | "occlude_fill" => f.model.occlusion == s.model.occlusion,
                "globals" | "global_channels" | "global_samples" => f.model.globals == s.model.globals,
                "batch_size" => f.batch_size == s.batch_size,
                "lr" => f.optimizer.lr == s.optimizer.lr,
                "seed" => f.seed == s.seed && f.model.seed == s.model.seed,
                "freeze" => f.freeze == s.freeze,
                "dataset" => f.data.kind == s.data.kind,
                "crop" => f.data.crop == s.data.crop,
                "resize" => f.data.resize == s.data.resize,
                "unlabeled" => f.data.unlabeled == s.data.unlabeled,
                "test_fraction" => f.data.test_fraction == s.data.test_fraction,
                "skip_bad" => f.data.skip_bad == s.data.skip_bad,
                _ => false,
            };
            !same
        })
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !conflicts.is_empty() {
        return Err(HostError::Config(format!(
            "--resume takes every setting from {}, and {} disagree(s) with it (a resumed run may change only \
             its budget --epochs/--minutes/--steps, --data, and the logging and evaluation flags)",
            path.display(),
            conflicts.join(", ")
        )));
    }
    let mut cfg = saved;
    let given = |id: &str| explicit.iter().any(|e| e == id);
    if ["epochs", "minutes", "steps", "config"].iter().any(|id| given(id)) {
        (cfg.epochs, cfg.minutes, cfg.steps) = (f.epochs, f.minutes, f.steps);
    }
    if given("data") || given("config") {
        cfg.data.dir = f.data.dir.clone();
    }
    if given("cache") || given("config") {
        cfg.data.cache = f.data.cache.clone();
    }
    cfg.log_grad_norm |= f.log_grad_norm;
    if given("probe_every") || given("no_probe") {
        cfg.probe_every = f.probe_every;
    }
    cfg.validate()?;
    Ok(cfg)
}

/// A parsed command line and the `train` flags typed on it (not defaults):
/// what `--resume` checks against the checkpoint.
pub struct Parsed {
    /// The arguments.
    pub cli: Cli,
    /// Ids of the subcommand's flags given explicitly.
    pub explicit: Vec<String>,
}

/// Parses `args` (the program name first).
pub fn parse<I, T>(args: I) -> Result<Parsed, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = Cli::command();
    let matches = command.clone().try_get_matches_from(args)?;
    let cli = Cli::from_arg_matches(&matches)?;
    // The flags of the subcommand given on the command line (not defaults).
    let explicit: Vec<String> = matches
        .subcommand()
        .map(|(name, m)| {
            let known: Vec<String> = command
                .find_subcommand(name)
                .map(|c| c.get_arguments().map(|a| a.get_id().as_str().to_owned()).collect())
                .unwrap_or_default();
            m.ids()
                .map(|id| id.as_str())
                // Argument groups (a flattened struct's name) are not flags.
                .filter(|id| known.iter().any(|a| a == id))
                .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Parsed { cli, explicit })
}
