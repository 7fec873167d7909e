//! `infomax`: train Deep InfoMax encoders, evaluate them, embed datasets.
//!
//! `infomax train` with no arguments trains conv28 on the Fashion-MNIST
//! subset bundled in `data/`, evaluates it next to the baselines and writes
//! the checkpoint under `runs/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use infomax::bounds;
use infomax::data::Split;
use infomax::dim::{Dim, DimConfig, Estimator, HeadKind, MultiGlobal, Occlusion};
use infomax::eval::EvalConfig;
use infomax::io::{ExportDtype, export};
use infomax::train::evaluate::{
    ENCODER_TAPS, Report, evaluate_encoder, evaluate_encoder_taps, evaluate_pixels, format_table,
};
use infomax::train::memory::Limit;
use infomax::train::{self, DataConfig, DatasetKind, HostError, OptimConfig, Start, TrainConfig, checkpoint};

/// The Fashion-MNIST subset in the repository: the main job's data.
const BUNDLED_DATA: &str = "data/fashion-mnist-subset";
/// The main job's run folder (numbered when it holds a run).
const DEFAULT_OUT: &str = "runs/fmnist-subset";

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
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Worker threads (default: all cores). Results are identical for any count.
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Memory a command may plan to use, e.g. 8G or 512M [default: 80% of
    /// the smaller of MemAvailable and the cgroup's memory.max]. A command
    /// whose plan needs more is refused before it allocates, naming the
    /// largest item; evaluation and embedding take smaller batches first.
    #[arg(long, global = true, value_parser = train::memory::parse_size)]
    max_memory: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a DIM encoder (and evaluate it unless --no-eval).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint with the paper's protocol.
    Eval(EvalArgs),
    /// Write a dataset's features (conv, fc, Y) to a safetensors file.
    Embed(EmbedArgs),
    /// Export a checkpoint's encoder as an inference safetensors file (BN folded).
    Export(ExportArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum DtypeArg {
    F32,
    F16,
    Bf16,
}

#[derive(Args)]
struct ExportArgs {
    /// The training checkpoint.
    checkpoint: PathBuf,
    /// Output safetensors file.
    #[arg(long, short)]
    out: PathBuf,
    /// Weight dtype.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: DtypeArg,
    /// Keep the batch norms as separate tensors (for PyTorch; the no_std plan needs folded files).
    #[arg(long)]
    unfolded: bool,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    allow_non_finite: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum EstimatorArg {
    Jsd,
    Nce,
    Dv,
}

#[derive(Clone, Copy, ValueEnum)]
enum HeadArg {
    /// Encode-and-dot-product (docs/method.md §4.1): every pair of the batch scored by one GEMM.
    Dot,
    /// Concat-and-convolve (docs/method.md §4.2): one permuted negative per location.
    Concat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GlobalsArg {
    /// One global vector per image: Y (the paper's main setting).
    Single,
    /// K global vectors per image from a 3×3-conv → 1×1-conv stack over the local map (docs/method.md §7.1):
    /// 25 from a 7×7 map, each summarising a 3×3 block and scored against every local vector.
    Multi,
}

#[derive(Clone, Copy, ValueEnum)]
enum DatasetArg {
    FashionMnist,
    Mnist,
    Cifar10,
    Cifar100,
    Stl10,
}

impl From<DatasetArg> for DatasetKind {
    fn from(d: DatasetArg) -> Self {
        match d {
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
            DatasetArg::Mnist => DatasetKind::Mnist,
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
            DatasetArg::Cifar100 => DatasetKind::Cifar100,
            DatasetArg::Stl10 => DatasetKind::Stl10,
        }
    }
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Data folder (IDX, CIFAR or STL-10 binary files).
    #[arg(long, default_value = BUNDLED_DATA)]
    data: PathBuf,
    /// Dataset format.
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    dataset: DatasetArg,
}

#[derive(Args)]
struct ProbeArgs {
    /// Epochs per probe classifier (the reference protocol: 30).
    #[arg(long, default_value_t = 30)]
    eval_epochs: usize,
    /// Skip the raw-pixel and untrained-encoder baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Also score the untrained encoder with BN statistics re-estimated from
    /// the data on the conv and fc taps (by default only its Y tap, the one
    /// DIM's margin is read on; the conv tap's classifiers are most of an
    /// evaluation's cost).
    #[arg(long)]
    full_baselines: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// A TOML or JSON config file (TrainConfig); when given, it replaces the model, data and budget flags.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Encoder preset: conv28, conv32, alex64, edge, fold28 (28×28 crops folded into a 6×6 map) or resnet32 (ResNet bottlenecks, 32×32×3).
    #[arg(long, default_value = "conv28")]
    encoder: String,
    /// MI embedding width D [default: 128 on the bundled subset, 512 on any
    /// other data]. The small heads keep the bundled main job inside its
    /// 5-minute budget (at 512 they are a third of a conv28 step); the
    /// paper uses 2048, and our full Fashion-MNIST runs use 512.
    #[arg(long)]
    mi_units: Option<usize>,
    /// MI estimator.
    #[arg(long, value_enum, default_value = "jsd")]
    estimator: EstimatorArg,
    /// Local MI head.
    #[arg(long, value_enum, default_value = "dot")]
    head: HeadArg,
    /// Weight α of global DIM (0: off).
    #[arg(long, default_value_t = 0.0)]
    alpha: f64,
    /// Weight β of local DIM.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Weight γ of adversarial prior matching (0: off; the paper uses 0.1).
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// Occlusion (docs/method.md §7.2): compute Y from a copy of each image with a random SIZE×SIZE square
    /// blanked (redrawn every step), the local features from the clean image, so Y must predict
    /// what it cannot see. Half the image side is a good start (14 for 28×28). Costs a second
    /// encoder pass per step.
    #[arg(long, value_name = "SIZE")]
    occlude: Option<usize>,
    /// Value written into the occluded square, in normalised [−1, 1] units (0 = mid-grey).
    #[arg(long, value_name = "VALUE", default_value_t = 0.0, allow_negative_numbers = true)]
    occlude_fill: f32,
    /// Global vectors: `single` (Y) or `multi` (K globals from the local map, docs/method.md §7.1).
    #[arg(long, value_enum, default_value = "single")]
    globals: GlobalsArg,
    /// With `--globals multi`: channels of the globals' two convs (default: the local map's).
    #[arg(long, value_name = "C")]
    global_channels: Option<usize>,
    /// With `--globals multi`: score only S of the K globals per image each step, drawn at
    /// random (1 = the paper's "one 3×3 block of the local map"; default: all K).
    #[arg(long, value_name = "S")]
    global_samples: Option<usize>,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Epochs to train (default 3 when no other budget is given).
    #[arg(long)]
    epochs: Option<u64>,
    /// Wall-clock minutes to train.
    #[arg(long)]
    minutes: Option<f64>,
    /// Steps to train.
    #[arg(long)]
    steps: Option<u64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run folder for checkpoints, logs and results [default: runs/fmnist-subset,
    /// or runs/fmnist-subset-2, -3, ... if that one holds a run]. A fresh run
    /// never starts in a folder that holds another run (see --force).
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Continue the run in OUT exactly, from OUT/latest.
    #[arg(long, conflicts_with = "init", requires = "out")]
    resume: bool,
    /// Start fresh in OUT even if it holds an earlier run: that run is moved
    /// aside to OUT.old-N first (renamed; nothing is deleted).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Fine-tune: start from the weights of this checkpoint (a file, a run
    /// folder or its latest). Tensors are matched by name and shape, and the
    /// table of what was loaded is printed; every encoder tensor must match.
    #[arg(long)]
    init: Option<PathBuf>,
    /// With --init: keep fresh values for encoder tensors the checkpoint
    /// lacks or shapes otherwise, instead of refusing.
    #[arg(long, requires = "init")]
    init_partial: bool,
    /// Keep parameters whose name starts with this prefix frozen (repeatable).
    #[arg(long)]
    freeze: Vec<String>,
    /// Log gradient norms (global and per tensor) to OUT/train.jsonl every epoch.
    #[arg(long)]
    log_grad_norm: bool,
    /// Do not evaluate after training.
    #[arg(long)]
    no_eval: bool,
    /// Do not export the encoder (f32 and f16, BN folded) and check it through the no-alloc inference path.
    #[arg(long)]
    no_export: bool,
    #[command(flatten)]
    probe: ProbeArgs,
}

#[derive(Args)]
struct EvalArgs {
    /// The checkpoint to evaluate.
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    probe: ProbeArgs,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    allow_non_finite: bool,
    /// Images per encoder forward pass [default: 500, or fewer if the
    /// memory limit needs].
    #[arg(long)]
    batch_size: Option<usize>,
}

#[derive(Args)]
struct EmbedArgs {
    /// The checkpoint whose encoder to run.
    checkpoint: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Which split to embed.
    #[arg(long, value_enum, default_value = "test")]
    split: SplitArg,
    /// Output safetensors file.
    #[arg(long, short)]
    out: PathBuf,
    /// Go on even if the weights, BN statistics or outputs hold NaN or Inf
    /// (or a negative variance): refused by default, naming the tensor.
    #[arg(long)]
    allow_non_finite: bool,
    /// Images per encoder forward pass [default: 500, or fewer if the
    /// memory limit needs].
    #[arg(long)]
    batch_size: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SplitArg {
    Train,
    Test,
}

fn data_config(d: &DataArgs) -> DataConfig {
    DataConfig { kind: d.dataset.into(), dir: d.data.clone(), crop: None, flip: false }
}

/// How much memory a command may use and what batch it was asked for.
#[derive(Clone, Copy)]
struct MemoryArgs {
    limit: Limit,
    batch: Option<usize>,
}

fn run_eval(
    model: &mut Dim,
    data: &DataConfig,
    probe: &ProbeArgs,
    quiet: bool,
    out: Option<&Path>,
    mem: MemoryArgs,
) -> Result<Vec<Report>, HostError> {
    let train = data.load(Split::Train)?;
    let test = data.load(Split::Test)?;
    let plan = |b| train::memory::eval_plan(model, train.n, test.n, b, !probe.no_baselines);
    let encode_batch = train::memory::fit_batch(mem.batch, mem.limit, plan)?;
    if encode_batch < train::memory::DEFAULT_ENCODE_BATCH && mem.batch.is_none() && !quiet {
        eprintln!("encoding {encode_batch} images at a time to stay within the memory limit");
    }
    // The classifiers' seeds follow the model's seed, as the reference's
    // follow its `--seed`: runs with different seeds get independent probes.
    let cfg = EvalConfig { epochs: probe.eval_epochs, seed: model.cfg.seed, encode_batch, ..EvalConfig::default() };
    cfg.validate()?;
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    say(&format!(
        "evaluating on {} train / {} test images ({} classifier epochs per probe)",
        train.n, test.n, cfg.epochs
    ));
    let mut reports = vec![evaluate_encoder("DIM", model, &train, &test, &cfg)?];
    say(&format!("  DIM features done in {:.0}s", reports[0].wall_s));
    if !probe.no_baselines {
        let mut random = Dim::new(model.cfg.clone())?;
        reports.push(evaluate_encoder("untrained (BN default stats)", &mut random, &train, &test, &cfg)?);
        say(&format!("  untrained encoder done in {:.0}s", reports[1].wall_s));
        train::recalibrate_bn(&mut random, &train, 64)?;
        let taps: &[&str] = if probe.full_baselines { &ENCODER_TAPS } else { &["y"] };
        reports.push(evaluate_encoder_taps("untrained (BN stats from data)", &mut random, &train, &test, &cfg, taps)?);
        say(&format!("  untrained encoder, BN recalibrated, done in {:.0}s", reports[2].wall_s));
        reports.push(evaluate_pixels(&train, &test, &cfg)?);
        say(&format!("  raw pixels done in {:.0}s", reports[3].wall_s));
    }
    if let Some(dir) = out {
        let json = serde_json::to_string_pretty(&reports).map_err(|e| HostError::Config(e.to_string()))?;
        checkpoint::write_atomic(&dir.join("eval.json"), json.as_bytes())?;
    }
    Ok(reports)
}

fn print_summary(reports: &[Report]) {
    println!("\nTest accuracy, frozen encoder (paper protocol):\n");
    print!("{}", format_table(reports));
    println!();
    let y_linear = |r: Option<&Report>| r.and_then(|r| r.tap("y")).map(|t| t.linear);
    if let Some(a) = y_linear(reports.first()) {
        for r in reports.iter().skip(1).filter(|r| r.method.starts_with("untrained")) {
            if let Some(b) = y_linear(Some(r)) {
                println!(
                    "Y tap, linear probe: DIM {:.2}% vs {} {:.2}% ({:+.2} points)",
                    100.0 * a,
                    r.method,
                    100.0 * b,
                    100.0 * (a - b)
                );
            }
        }
    }
}

/// Flags a resumed run may set: the budget, where the data lives now,
/// logging, and what happens after training. Any other flag given with
/// `--resume` must agree with the checkpoint's settings.
const RESUME_MAY_CHANGE: &[&str] = &[
    "epochs",
    "minutes",
    "steps",
    "data",
    "log_grad_norm",
    "no_eval",
    "no_export",
    "eval_epochs",
    "no_baselines",
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
fn resumed_config(flags: &TrainConfig, explicit: &[String], out: &Path) -> Result<TrainConfig, HostError> {
    let path = checkpoint::latest(out)?
        .ok_or_else(|| HostError::Config(format!("--resume: {} has no checkpoint yet", out.display())))?;
    let metadata = checkpoint::read_metadata(&path)?;
    let Some(text) = metadata.get("train_config") else { return Ok(flags.clone()) };
    let saved: TrainConfig = serde_json::from_str(text)
        .map_err(|e| HostError::Format { path: path.clone(), reason: format!("train_config: {e}") })?;
    saved.validate().map_err(|e| HostError::Format { path: path.clone(), reason: format!("train_config: {e}") })?;
    let no_budget =
        |c: &TrainConfig| TrainConfig { epochs: None, minutes: None, steps: None, log_grad_norm: false, ..c.clone() };
    let (f, s) = (flags, &saved);
    let conflicts: Vec<String> = explicit
        .iter()
        .filter(|id| !RESUME_MAY_CHANGE.contains(&id.as_str()))
        .filter(|id| {
            let same = match id.as_str() {
                "config" => {
                    no_budget(f)
                        == TrainConfig {
                            data: DataConfig { dir: f.data.dir.clone(), ..s.data.clone() },
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
    cfg.log_grad_norm |= f.log_grad_norm;
    cfg.validate()?;
    Ok(cfg)
}

/// The evaluation settings, checked before any work starts (a run must
/// not train for hours and then refuse its evaluation).
fn check_probe(probe: &ProbeArgs, batch: Option<usize>) -> Result<(), HostError> {
    bounds::EVAL_EPOCHS.check_usize(probe.eval_epochs)?;
    if let Some(b) = batch {
        bounds::ENCODE_BATCH.check_usize(b)?;
    }
    Ok(())
}

fn train_cmd(args: TrainArgs, quiet: bool, explicit: &[String], limit: Limit) -> Result<(), HostError> {
    check_probe(&args.probe, None)?;
    let mut cfg = match &args.config {
        Some(p) => TrainConfig::from_file(p)?,
        None => {
            let estimator = match args.estimator {
                EstimatorArg::Jsd => Estimator::Jsd,
                EstimatorArg::Nce => Estimator::Nce,
                EstimatorArg::Dv => Estimator::Dv,
            };
            let budget_given = args.epochs.is_some() || args.minutes.is_some() || args.steps.is_some();
            if args.globals == GlobalsArg::Single && (args.global_channels.is_some() || args.global_samples.is_some()) {
                return Err(HostError::Config("--global-channels and --global-samples need --globals multi".into()));
            }
            let mut model = DimConfig::new(&args.encoder)
                .mi_units(args.mi_units.unwrap_or(
                    // The same folder however it is spelt (`./data/...`, an absolute path).
                    if infomax::files::same_file(&args.data.data, Path::new(BUNDLED_DATA)) { 128 } else { 512 },
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
            }
        }
    };
    cfg.log_grad_norm |= args.log_grad_norm;
    cfg.validate()?;
    if args.resume
        && let Some(out) = &args.out
    {
        cfg = resumed_config(&cfg, explicit, out)?;
    }
    let out = match &args.out {
        Some(o) => o.clone(),
        None => {
            let o = infomax::files::next_vacant(Path::new(DEFAULT_OUT))
                .map_err(infomax::host_error::io(DEFAULT_OUT, "choose a run folder under"))?;
            if o != Path::new(DEFAULT_OUT) && !quiet {
                eprintln!("{DEFAULT_OUT} holds an earlier run: this one goes to {}", o.display());
            }
            o
        }
    };
    let mut init = args.init.clone();
    if args.force
        && let Some(to) = train::move_earlier_run_aside(&out)?
    {
        eprintln!("moved the earlier run in {} aside to {}", out.display(), to.display());
        // An --init checkpoint of that run moved with it.
        if let Some(p) = init.as_mut()
            && let Ok(rest) = p.strip_prefix(&out)
        {
            *p = to.join(rest);
        }
    }
    let start = match (&init, args.resume) {
        (Some(p), _) if args.init_partial => Start::FromPartial(p.clone()),
        (Some(p), _) => Start::From(p.clone()),
        (None, true) => Start::Resume,
        (None, false) => Start::Fresh,
    };
    if !quiet {
        let mut variants = String::new();
        if let Some(o) = &cfg.model.occlusion {
            variants += &format!(", occlusion {}×{}", o.size, o.size);
        }
        if let Some(g) = &cfg.model.globals {
            variants += &match g.samples {
                Some(s) => format!(", multiple globals ({s} sampled per image)"),
                None => ", multiple globals".into(),
            };
        }
        eprintln!(
            "training {} (D={}, {:?}{variants}) on {} with batch {} -> {}",
            match &cfg.model.encoder {
                infomax::dim::EncoderSpec::Preset(p) => p.clone(),
                infomax::dim::EncoderSpec::Custom(_) => "custom encoder".into(),
            },
            cfg.model.mi_units,
            cfg.model.estimator,
            cfg.data.dir.display(),
            cfg.batch_size,
            out.display()
        );
    }
    train::memory::train_plan(&cfg.model, cfg.batch_size)?.check(limit)?;
    let mut summary = train::train(&cfg, &out, start, quiet)?;
    // Evaluation and export write into the run folder too: under its lock
    // again (training released it when it ended).
    let _lock = infomax::files::RunLock::acquire(&out).map_err(infomax::host_error::io(&out, "lock the run folder"))?;
    println!(
        "trained {} steps ({} epochs) in {:.0}s; checkpoint {}",
        summary.progress.step,
        summary.progress.epoch,
        summary.progress.wall_s,
        summary.checkpoint.display()
    );
    if !args.no_eval {
        let mem = MemoryArgs { limit, batch: None };
        let reports = run_eval(&mut summary.model, &cfg.data, &args.probe, quiet, Some(&out), mem)?;
        print_summary(&reports);
    }
    if let Some(reason) = summary.model.encoder.inference_unsupported().filter(|_| !args.no_export) {
        println!("\nnot exported: {reason} (the checkpoint works with eval and embed)");
    } else if !args.no_export {
        deploy(&mut summary.model, &cfg.data, &out)?;
    }
    Ok(())
}

/// Exports the trained encoder (BN folded, f32 and f16) next to the
/// checkpoint, then encodes every test image through the `no_std`,
/// allocation-free inference path from the exported bytes, and checks Y
/// against the training path's eval-mode forward.
fn deploy(model: &mut Dim, data: &DataConfig, out: &Path) -> Result<(), HostError> {
    let test = data.load(Split::Test)?;
    println!("\nExported encoder, run through the no-alloc inference path on {} test images:", test.n);
    for c in infomax::io::deploy(model, &test, out)? {
        println!(
            "  {}: {} bytes, scratch {} B at batch {}, {:.0} µs/image on one thread, max |ΔY| {:.1e} of max |Y| {:.2}",
            c.path.display(),
            c.bytes,
            c.scratch_bytes,
            c.batch,
            c.us_per_image,
            c.max_abs_err,
            c.scale
        );
    }
    Ok(())
}

fn eval_cmd(args: EvalArgs, quiet: bool, limit: Limit) -> Result<(), HostError> {
    check_probe(&args.probe, args.batch_size)?;
    let mut loaded = checkpoint::load(&args.checkpoint)?;
    if !args.allow_non_finite {
        train::check_model_finite(&loaded.model)?;
    }
    let mem = MemoryArgs { limit, batch: args.batch_size };
    let reports = run_eval(&mut loaded.model, &data_config(&args.data), &args.probe, quiet, None, mem)?;
    print_summary(&reports);
    Ok(())
}

fn embed_cmd(args: EmbedArgs, limit: Limit) -> Result<(), HostError> {
    if let Some(b) = args.batch_size {
        bounds::ENCODE_BATCH.check_usize(b)?;
    }
    let resolved = checkpoint::resolve(&args.checkpoint)?;
    infomax::files::check_output(&args.out, &[&args.checkpoint, &resolved, &args.data.data])
        .map_err(infomax::host_error::io(&args.out, "write the features to"))?;
    let mut loaded = checkpoint::load(&resolved)?;
    if !args.allow_non_finite {
        train::check_model_finite(&loaded.model)?;
    }
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let ds = data_config(&args.data).load(split)?;
    let batch =
        train::memory::fit_batch(args.batch_size, limit, |b| train::memory::embed_plan(&loaded.model, ds.n, b))?;
    let f = train::extract_features(&mut loaded.model, &ds, batch)?;
    if !args.allow_non_finite {
        train::check_features_finite(&f)?;
    }
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    if let Some((d, v)) = &f.conv {
        owned.push(("conv".into(), vec![f.n, *d], bytes(v)));
    }
    if let Some((d, v)) = &f.fc {
        owned.push(("fc".into(), vec![f.n, *d], bytes(v)));
    }
    owned.push(("y".into(), vec![f.n, f.y.0], bytes(&f.y.1)));
    if let Some(l) = &ds.labels {
        owned.push(("labels".into(), vec![f.n], l.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect()));
    }
    let views = owned
        .iter()
        .map(|(n, s, b)| {
            let dt = if n == "labels" { safetensors::Dtype::I64 } else { safetensors::Dtype::F32 };
            safetensors::tensor::TensorView::new(dt, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| HostError::Config(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let out = safetensors::serialize(views, None).map_err(|e| HostError::Config(e.to_string()))?;
    checkpoint::write_atomic(&args.out, &out)?;
    println!("wrote {} images' features to {}", f.n, args.out.display());
    Ok(())
}

fn export_cmd(args: ExportArgs) -> Result<(), HostError> {
    let dtype = match args.dtype {
        DtypeArg::F32 => ExportDtype::F32,
        DtypeArg::F16 => ExportDtype::F16,
        DtypeArg::Bf16 => ExportDtype::BF16,
    };
    let s = export::export(&args.checkpoint, &args.out, dtype, !args.unfolded, args.allow_non_finite)?;
    println!(
        "wrote {} ({} tensors, {} weight bytes, {} bytes, {}, {})",
        args.out.display(),
        s.tensors,
        s.weight_bytes,
        s.file_bytes,
        dtype.name(),
        if args.unfolded { "BN kept" } else { "BN folded" }
    );
    Ok(())
}

/// Test-only fault injection (docs/reliability.md): a pause inside every
/// checkpoint write, and a simulated full disk after a byte budget.
fn set_faults_from_env() -> Result<(), String> {
    let var = |name: &str| -> Result<Option<u64>, String> {
        match std::env::var(name) {
            Ok(v) => v.trim().parse().map(Some).map_err(|_| format!("{name}={v:?} is not a whole number")),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(format!("{name}: {e}")),
        }
    };
    if let Some(ms) = var("INFOMAX_FAULT_WRITE_PAUSE_MS")? {
        checkpoint::faults::set_write_pause_ms(ms);
    }
    if let Some(bytes) = var("INFOMAX_FAULT_DISK_FULL_AFTER_BYTES")? {
        checkpoint::faults::set_disk_full_after(bytes);
    }
    Ok(())
}

/// Test hook (docs/reliability.md): prints this process's peak resident
/// set (Linux `VmHWM`), which a parent cannot read once the child is gone.
fn report_peak_rss() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    match status.lines().find(|l| l.starts_with("VmHWM:")) {
        Some(l) => eprintln!("peak RSS: {}", l.trim_start_matches("VmHWM:").trim()),
        None => eprintln!("peak RSS: unknown (no VmHWM in /proc/self/status)"),
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // The train flags the user typed (not defaults): what --resume checks.
    let command = Cli::command();
    let train_args: Vec<String> = command
        .find_subcommand("train")
        .map(|c| c.get_arguments().map(|a| a.get_id().as_str().to_owned()).collect())
        .unwrap_or_default();
    let explicit: Vec<String> = matches
        .subcommand_matches("train")
        .map(|m| {
            m.ids()
                .map(|id| id.as_str())
                // Argument groups (a flattened struct's name) are not flags.
                .filter(|id| train_args.iter().any(|a| a == id))
                .filter(|id| m.value_source(id) == Some(clap::parser::ValueSource::CommandLine))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Err(e) = set_faults_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    // (--max-memory is checked as it is parsed.)
    if let Some(Err(e)) = cli.threads.map(|t| bounds::THREADS.check_usize(t)) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Some(t) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(t).build_global()
    {
        eprintln!("error: cannot start {t} threads: {e}");
        return ExitCode::from(2);
    }
    let limit = Limit::new(cli.max_memory);
    let result = match cli.command {
        Command::Train(a) => train_cmd(*a, cli.quiet, &explicit, limit),
        Command::Eval(a) => eval_cmd(a, cli.quiet, limit),
        Command::Embed(a) => embed_cmd(a, limit),
        Command::Export(a) => export_cmd(a),
    };
    if std::env::var_os("INFOMAX_REPORT_PEAK_RSS").is_some() {
        report_peak_rss();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
