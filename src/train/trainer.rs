//! The training loop as a value: [`Trainer::new`] sets a run up (fresh,
//! resumed or fine-tuned), [`Trainer::step`] runs one DIM step and the Adam
//! update, and closes an epoch (log line, checkpoint) when it ends or the
//! budget runs out. What a user sees while it runs is an [`Observer`]'s
//! business, so the library needs no terminal code.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpoint::{self, AdamState, Progress};
use super::probe::{ProbeSet, WINDOW_KIND, WindowLog, window_steps};
use super::{
    EpochLog, InitRow, InitStatus, Start, TrainConfig, TrainSummary, check_freeze, copy_weights, first_non_finite,
    largest_weights, tensor_sums_of_squares, trainable_ranges, trim_log,
};
use crate::data::{Augment, Dataset, Loader};
use crate::dim::{Dim, StepStats, Workspace};
use crate::files::RunLock;
use crate::host_error::{self, HostError, Result};
use crate::optim::AdamConfig;
use crate::rng::Rng;

/// Where a step stands, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Epoch number (1-based).
    pub epoch: u64,
    /// Steps done in this epoch.
    pub done: usize,
    /// Steps in a whole epoch.
    pub steps: usize,
    /// Mean loss over the epoch's steps so far.
    pub loss: f64,
    /// Mean MI estimate so far (nats).
    pub mi: f64,
    /// Images per second this epoch.
    pub images_per_s: f64,
}

/// What a running training reports to. Every method has an empty default;
/// `Send`, because the trainer runs on a pool thread.
pub trait Observer: Send {
    /// Epoch `epoch` (1-based) starts; `steps`: where it will stop (its
    /// last batch, or the step budget if that comes first).
    fn epoch_start(&mut self, epoch: u64, steps: usize) {
        let _ = (epoch, steps);
    }
    /// A step ended.
    fn step(&mut self, report: &StepReport) {
        let _ = report;
    }
    /// An epoch ended (a partial one too); its log line is written and its
    /// checkpoint is next.
    fn epoch_end(&mut self, log: &EpochLog) {
        let _ = log;
    }
    /// An `--init` load set these tensors (before the first epoch).
    fn initialised(&mut self, rows: &[InitRow]) {
        let _ = rows;
    }
    /// A k-NN probe ran; its window line is written.
    fn probe(&mut self, log: &WindowLog) {
        let _ = log;
    }
    /// What loading the data did besides reading it (an image-folder
    /// cache read or written, files skipped), before the first step.
    fn data_note(&mut self, note: &str) {
        let _ = note;
    }
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// One line per epoch on stderr.
#[derive(Clone, Copy, Debug, Default)]
pub struct EpochLines;

impl Observer for EpochLines {
    fn data_note(&mut self, note: &str) {
        eprintln!("{note}");
    }
    fn probe(&mut self, log: &WindowLog) {
        eprintln!("{}", probe_line(log));
    }
    fn epoch_end(&mut self, log: &EpochLog) {
        eprintln!("{}", epoch_line(log));
    }
    fn initialised(&mut self, rows: &[InitRow]) {
        eprintln!("initialised from the checkpoint:\n{}", super::init_table(rows));
    }
}

/// The epoch summary line the CLI prints.
pub fn epoch_line(e: &EpochLog) -> String {
    format!(
        "epoch {:>3}{} loss {:.4}  mi {:.3}  pos {:.2} neg {:.2}  {:.0} img/s  {:.0}s",
        e.epoch,
        if e.partial { " (partial)" } else { "" },
        e.loss,
        e.mi,
        e.pos_mean,
        e.neg_mean,
        e.images_per_s,
        e.wall_s
    )
}

/// The line a probe prints.
pub fn probe_line(p: &WindowLog) -> String {
    format!(
        "step {:>6}: k-NN {:.2}% of {} test images against {} ({:.1}s)",
        p.step,
        100.0 * p.knn.unwrap_or(f64::NAN),
        p.queries.unwrap_or(0),
        p.bank.unwrap_or(0),
        p.probe_s.unwrap_or(0.0)
    )
}

/// The epoch being run.
struct EpochRun {
    batches: crate::data::Epoch,
    started: Instant,
    /// The statistics of the steps this process ran in it.
    sums: Sums,
    done: usize,
    /// Batches of this epoch run before a resume (not in the sums).
    skipped: usize,
    grad_norm_max: f64,
    last_norms: Vec<f64>,
    /// Seconds of this epoch spent probing (not training).
    probe_s: f64,
}

/// Sums of step statistics over some steps (an epoch, a window).
#[derive(Default)]
struct Sums {
    loss: f64,
    mi: f64,
    pos: f64,
    neg: f64,
    steps: usize,
}

impl Sums {
    fn add(&mut self, s: &StepStats) {
        self.loss += s.loss;
        self.mi += s.local.mi;
        self.pos += s.local.pos_mean;
        self.neg += s.local.neg_mean;
        self.steps += 1;
    }
}

/// A training run: the model, its optimiser state, the data and the run
/// folder. Drive it with [`Trainer::step`] until it returns `None`.
pub struct Trainer {
    cfg: TrainConfig,
    out_dir: PathBuf,
    model: Dim,
    adam: AdamState,
    progress: Progress,
    ds: Dataset,
    augment: Augment,
    loader: Loader,
    steps_per_epoch: usize,
    ranges: Vec<core::ops::Range<usize>>,
    adam_cfg: AdamConfig,
    ws: Workspace,
    x: Vec<f32>,
    log: fs::File,
    started: Instant,
    wall_before: f64,
    logs: Vec<EpochLog>,
    last_ckpt: PathBuf,
    /// Whether this process wrote `last_ckpt`: only its own checkpoints are
    /// replaced as the run goes on, never one it resumed from.
    last_is_ours: bool,
    rng: Rng,
    epoch: Option<EpochRun>,
    /// Where the first epoch starts: a mid-epoch checkpoint's batch.
    resume_batch: usize,
    stopped: bool,
    /// Held while the run lives; the folder is free again once it ends.
    _lock: RunLock,
    init_rows: Vec<InitRow>,
    /// The k-NN probe's images, if `probe_every` is set and the data has labels.
    probe: Option<ProbeSet>,
    /// What loading the training data did (cache, skipped files).
    data_notes: Vec<String>,
    /// A fresh run probes its untrained encoder before the first step.
    probe_at_start: bool,
    window: Sums,
    /// Seconds this process spent probing (left out of the training time).
    probe_s: f64,
}

impl Trainer {
    /// Sets a run up: checks the config against the data, builds the model
    /// (fresh, from `out_dir/latest` on resume, or from a checkpoint's
    /// weights for fine-tuning) and opens the log.
    pub fn new(cfg: &TrainConfig, out_dir: &Path, start: Start) -> Result<Self> {
        cfg.validate()?;
        fs::create_dir_all(out_dir).map_err(host_error::io(out_dir, "create output folder"))?;
        // Owned by this run from here on; temporaries of other processes
        // are stale only once nobody holds the lock.
        let lock = RunLock::acquire(out_dir).map_err(host_error::io(out_dir, "lock the run folder"))?;
        if !matches!(start, Start::Resume) && !super::holds_no_run(out_dir)? {
            return Err(HostError::RunExists { dir: out_dir.to_path_buf() });
        }
        checkpoint::remove_stale_temporaries(out_dir)?;
        // Shapes are checked before the model is allocated.
        let input = cfg.model.validate()?.input;
        let loaded = cfg.data.load_training(input)?;
        let mut data_notes: Vec<String> = loaded.cache_note.iter().map(|n| format!("training images: {n}")).collect();
        if let Some(first) = loaded.skipped.first() {
            data_notes.push(format!(
                "training images: skipped {} unreadable file(s) (--skip-bad), the first {}: {}",
                loaded.skipped.len(),
                first.path.display(),
                first.reason
            ));
        }
        let ds = loaded.dataset;
        let augment = cfg.data.augment();
        let (c, h, w) = augment.output_shape(ds.channels, ds.height, ds.width)?;
        if [c, h, w] != input {
            return Err(cfg.data.shape_error([c, h, w], input));
        }
        let mut model = Dim::new(cfg.model.clone())?;
        let n_params = model.table.len();
        let mut adam = AdamState::zeros(n_params);
        let mut progress = Progress { rng_state: Rng::derive(cfg.seed, 7).state(), ..Progress::default() };
        let mut init_rows = Vec::new();
        match &start {
            Start::Fresh => {}
            Start::Resume => {
                let path = checkpoint::latest(out_dir)?.ok_or_else(|| {
                    HostError::Config(format!("--resume: {} has no checkpoint yet", out_dir.display()))
                })?;
                let loaded = checkpoint::load(&path)?;
                if loaded.model.cfg != cfg.model {
                    return Err(HostError::Config(format!(
                        "--resume: {} was trained with another model config",
                        path.display()
                    )));
                }
                model = loaded.model;
                adam = loaded
                    .adam
                    .ok_or_else(|| HostError::Format { path: path.clone(), reason: "has no optimiser state".into() })?;
                progress = loaded.progress;
                trim_log(&out_dir.join("train.jsonl"), progress.step)?;
            }
            Start::From(path) | Start::FromPartial(path) => {
                let from = super::import::load_model(path)?;
                let rows = copy_weights(&from, &mut model);
                let partial = matches!(start, Start::FromPartial(_));
                let unmet: Vec<&str> = rows
                    .iter()
                    .filter(|r| r.is_encoder() && r.status != InitStatus::Loaded)
                    .map(|r| r.name.as_str())
                    .collect();
                if !rows.iter().any(|r| r.status == InitStatus::Loaded) {
                    return Err(HostError::Format {
                        path: path.clone(),
                        reason: "no tensor matches this model".into(),
                    });
                }
                if !unmet.is_empty() && !partial {
                    return Err(HostError::Format {
                        path: path.clone(),
                        reason: format!(
                            "--init: {} encoder tensor(s) missing or of another shape ({}); pass --init-partial \
                             to keep fresh values for them\n{}",
                            unmet.len(),
                            unmet.join(", "),
                            super::init_table(&rows)
                        ),
                    });
                }
                init_rows = rows;
            }
        }
        check_freeze(&model, &cfg.freeze)?;
        let loader = Loader::new(ds.n, cfg.batch_size, cfg.seed)?;
        let steps_per_epoch = loader.batches_per_epoch();
        if steps_per_epoch == 0 {
            return Err(HostError::Config(format!("{} images make no batch of {}", ds.n, cfg.batch_size)));
        }
        let ranges = trainable_ranges(&model, &cfg.freeze);
        let n = cfg.batch_size;
        let ws = model.workspace(n)?;
        let x = vec![0f32; n * input.iter().product::<usize>()];
        // A fresh run starts a fresh log; resume and fine-tuning append.
        let fresh = matches!(start, Start::Fresh);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(!fresh)
            .write(true)
            .truncate(fresh)
            .open(out_dir.join("train.jsonl"))
            .map_err(host_error::io(out_dir.join("train.jsonl"), "open log"))?;
        let resume_batch = usize::try_from(progress.batch).unwrap_or(usize::MAX);
        if resume_batch >= steps_per_epoch {
            return Err(HostError::Config(format!(
                "--resume: the checkpoint stopped after batch {resume_batch} of an epoch, but an epoch of this \
                 data has {steps_per_epoch}"
            )));
        }
        let last_ckpt = checkpoint::latest(out_dir)?.unwrap_or_default();
        let rng = Rng::from_state(progress.rng_state);
        let probe_at_start = progress.step == 0;
        let probe = match cfg.probe_every {
            Some(_) => ProbeSet::load(&cfg.data, input, cfg.seed)?,
            None => None,
        };
        Ok(Self {
            cfg: cfg.clone(),
            out_dir: out_dir.to_path_buf(),
            wall_before: progress.wall_s,
            model,
            adam,
            progress,
            ds,
            augment,
            loader,
            steps_per_epoch,
            ranges,
            adam_cfg: cfg.optimizer.adam(),
            ws,
            x,
            log,
            started: Instant::now(),
            logs: Vec::new(),
            last_ckpt,
            last_is_ours: false,
            rng,
            epoch: None,
            resume_batch,
            stopped: false,
            _lock: lock,
            init_rows,
            probe_at_start,
            probe,
            data_notes,
            window: Sums::default(),
            probe_s: 0.0,
        })
    }

    /// What loading the training data did besides reading it.
    pub fn data_notes(&self) -> &[String] {
        &self.data_notes
    }

    /// Train and test images of the k-NN probe (`None`: no probes).
    pub fn probe_sizes(&self) -> Option<(usize, usize)> {
        self.probe.as_ref().map(ProbeSet::sizes)
    }

    /// Writes a window line (the means since the last one), with the k-NN
    /// probe run first if `probe`; then tells the observer of a probe.
    fn log_window(&mut self, probe: bool, observer: &mut dyn Observer) -> Result<()> {
        let mut knn = None;
        if probe && let Some(set) = &self.probe {
            let t0 = Instant::now();
            let acc = set.knn(&mut self.model)?;
            let probe_s = t0.elapsed().as_secs_f64();
            self.probe_s += probe_s;
            if let Some(ep) = self.epoch.as_mut() {
                ep.probe_s += probe_s;
            }
            knn = Some((acc, probe_s, set.sizes()));
        }
        let w = std::mem::take(&mut self.window);
        let mean = |s: f64| (w.steps > 0).then(|| s / w.steps as f64);
        let p = &self.progress;
        let done_in_epoch = self.epoch.as_ref().map_or(0, |e| e.done);
        let entry = WindowLog {
            kind: WINDOW_KIND.into(),
            step: p.step,
            epoch: p.epoch as f64 + done_in_epoch as f64 / self.steps_per_epoch as f64,
            steps: w.steps,
            loss: mean(w.loss),
            mi: mean(w.mi),
            pos_mean: mean(w.pos),
            neg_mean: mean(w.neg),
            wall_s: p.wall_s,
            knn: knn.map(|k| k.0),
            probe_s: knn.map(|k| k.1),
            bank: knn.map(|k| k.2.0),
            queries: knn.map(|k| k.2.1),
        };
        let log_path = self.out_dir.join("train.jsonl");
        let line = serde_json::to_string(&entry).map_err(|e| HostError::Config(e.to_string()))?;
        writeln!(self.log, "{line}").map_err(host_error::io(&log_path, "write log"))?;
        if knn.is_some() {
            observer.probe(&entry);
        }
        Ok(())
    }

    /// The model being trained.
    pub fn model(&self) -> &Dim {
        &self.model
    }

    /// Steps and epochs done, wall time.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    fn out_of_budget(&self) -> bool {
        let (p, cfg) = (&self.progress, &self.cfg);
        cfg.steps.is_some_and(|s| p.step >= s)
            || cfg.epochs.is_some_and(|e| p.epoch >= e)
            || cfg.minutes.is_some_and(|m| p.wall_s >= m * 60.0)
    }

    /// One training step (and, when it ends an epoch or the budget, the
    /// epoch's log line and checkpoint). `None` once the budget is spent.
    pub fn step(&mut self, observer: &mut dyn Observer) -> Result<Option<StepStats>> {
        if self.stopped {
            return Ok(None);
        }
        if std::mem::take(&mut self.probe_at_start) && self.probe.is_some() {
            self.log_window(true, observer)?;
        }
        if self.epoch.is_none() {
            if self.out_of_budget() {
                self.stopped = true;
                return Ok(None);
            }
            // The bar counts to where this epoch stops: its end, or the step budget.
            let left = self.cfg.steps.map_or(u64::MAX, |s| s.saturating_sub(self.progress.step));
            let bar_len =
                self.steps_per_epoch.min(self.resume_batch.saturating_add(usize::try_from(left).unwrap_or(usize::MAX)));
            self.epoch = Some(EpochRun {
                batches: self.loader.epoch(self.progress.epoch),
                started: Instant::now(),
                sums: Sums::default(),
                done: self.resume_batch,
                skipped: std::mem::take(&mut self.resume_batch),
                grad_norm_max: 0.0,
                last_norms: Vec::new(),
                probe_s: 0.0,
            });
            observer.epoch_start(self.progress.epoch + 1, bar_len);
        }
        let stats = self.run_step()?;
        let Some(ep) = self.epoch.as_ref() else {
            return Err(HostError::Config("no epoch is running".into()));
        };
        let (done, counted) = (ep.done, (ep.done - ep.skipped) as f64);
        observer.step(&StepReport {
            epoch: self.progress.epoch + 1,
            done,
            steps: self.steps_per_epoch,
            loss: ep.sums.loss / counted,
            mi: ep.sums.mi / counted,
            images_per_s: counted * self.cfg.batch_size as f64
                / (ep.started.elapsed().as_secs_f64() - ep.probe_s).max(1e-9),
        });
        let partial = done < self.steps_per_epoch && self.out_of_budget();
        let ends = done == self.steps_per_epoch || partial;
        // A window closes at every checkpoint too, so a resumed run's
        // windows are the uninterrupted run's.
        let step = self.progress.step;
        let probe = self.probe.is_some() && self.cfg.probe_every.is_some_and(|n| step.is_multiple_of(n));
        if probe || ends || step.is_multiple_of(window_steps(self.steps_per_epoch)) {
            self.log_window(probe, observer)?;
        }
        if ends {
            self.end_epoch(partial, observer)?;
        }
        Ok(Some(stats))
    }

    /// The step itself: batch, forward and backward, prior, checks, Adam.
    fn run_step(&mut self) -> Result<StepStats> {
        let Some(ep) = self.epoch.as_mut() else {
            return Err(HostError::Config("no epoch is running".into()));
        };
        let b = ep.done;
        let batch = ep.batches.batch(b).ok_or_else(|| HostError::Config("the epoch has no batch left".into()))?;
        let (model, progress, cfg) = (&mut self.model, &mut self.progress, &self.cfg);
        let mut aug_rng = self.loader.augment_rng(progress.epoch, b as u64);
        self.augment.write_batch(&self.ds, batch, &mut aug_rng, &mut self.x)?;
        self.ws.set_step(progress.step);
        let stats = model.forward_backward(&self.x, &mut self.ws)?;
        progress.step += 1;
        // Prior samples per step from (seed, step): resume needs no RNG state.
        let mut prior_rng = Rng::derive(cfg.seed ^ 0x0050_5249_4F52, progress.step);
        let last_ckpt = &self.last_ckpt;
        let step = progress.step;
        let diverged = |what: String| HostError::Diverged {
            step,
            what,
            checkpoint: (!last_ckpt.as_os_str().is_empty()).then(|| last_ckpt.clone()),
        };
        if let Some(ps) = model.prior_step(&self.ws, &mut prior_rng)?
            && !ps.d_loss.is_finite()
        {
            return Err(diverged("prior discriminator loss".into()));
        }
        if let Some(name) = model.prior.as_ref().and_then(|p| first_non_finite(p.table(), p.params())) {
            return Err(diverged(format!("prior discriminator parameter {name}")));
        }
        if !stats.loss.is_finite() {
            return Err(diverged(format!("loss (largest weights: {})", largest_weights(&model.table, &model.params))));
        }
        let norms = tensor_sums_of_squares(&model.table, &model.grads)
            .map_err(|name| diverged(format!("gradient of {name}")))?;
        ep.grad_norm_max = ep.grad_norm_max.max(norms.iter().sum::<f64>().sqrt());
        ep.last_norms = norms;
        let t = progress.step;
        for r in &self.ranges {
            self.adam.step(&self.adam_cfg, t, &mut model.params, &model.grads, r.clone())?;
        }
        if let Some(name) = first_non_finite(&model.table, &model.params) {
            return Err(diverged(format!("parameter {name}")));
        }
        if let Some(name) = first_non_finite(&model.buffer_table, &model.buffers) {
            return Err(diverged(format!("BN statistic {name}")));
        }
        ep.sums.add(&stats);
        ep.done += 1;
        self.window.add(&stats);
        progress.wall_s = self.wall_before + self.started.elapsed().as_secs_f64() - self.probe_s;
        Ok(stats)
    }

    /// Closes the running epoch: log line, observer, checkpoint.
    fn end_epoch(&mut self, partial: bool, observer: &mut dyn Observer) -> Result<()> {
        let Some(ep) = self.epoch.take() else {
            return Err(HostError::Config("no epoch is running".into()));
        };
        let (cfg, progress) = (&self.cfg, &mut self.progress);
        if partial {
            progress.batch = ep.done as u64;
        } else {
            progress.epoch += 1;
            progress.batch = 0;
        }
        progress.rng_state = self.rng.state();
        let counted = ep.done - ep.skipped;
        let d = counted.max(1) as f64;
        let entry = EpochLog {
            epoch: progress.epoch + u64::from(partial),
            step: progress.step,
            loss: ep.sums.loss / d,
            mi: ep.sums.mi / d,
            pos_mean: ep.sums.pos / d,
            neg_mean: ep.sums.neg / d,
            lr: cfg.optimizer.lr,
            images_per_s: (counted * cfg.batch_size) as f64
                / (ep.started.elapsed().as_secs_f64() - ep.probe_s).max(1e-9),
            wall_s: progress.wall_s,
            grad_norm: cfg.log_grad_norm.then(|| ep.last_norms.iter().sum::<f64>().sqrt()),
            grad_norm_max: cfg.log_grad_norm.then_some(ep.grad_norm_max),
            grad_norms: cfg.log_grad_norm.then(|| {
                self.model.table.entries().iter().zip(&ep.last_norms).map(|(e, s)| (e.name.clone(), s.sqrt())).collect()
            }),
            partial,
        };
        let log_path = self.out_dir.join("train.jsonl");
        let line = serde_json::to_string(&entry).map_err(|e| HostError::Config(e.to_string()))?;
        writeln!(self.log, "{line}").map_err(host_error::io(&log_path, "write log"))?;
        observer.epoch_end(&entry);
        self.logs.push(entry);
        let name = super::checkpoint_name(progress, partial);
        let path = self.out_dir.join(&name);
        let extra = [("train_config", serde_json::to_string(cfg).map_err(|e| HostError::Config(e.to_string()))?)];
        checkpoint::save(&path, &self.model, Some(&self.adam), progress, &extra)?;
        checkpoint::set_latest(&self.out_dir, &name)?;
        if self.last_is_ours && self.last_ckpt != path {
            let _ = fs::remove_file(&self.last_ckpt);
        }
        self.last_ckpt = path;
        self.last_is_ours = true;
        if partial {
            self.stopped = true;
        }
        Ok(())
    }

    /// What an `--init` load gave each tensor (empty for other starts).
    pub fn init_rows(&self) -> &[InitRow] {
        &self.init_rows
    }

    /// The trained model, this run's epoch logs, progress and last checkpoint.
    pub fn finish(self) -> TrainSummary {
        TrainSummary { model: self.model, epochs: self.logs, progress: self.progress, checkpoint: self.last_ckpt }
    }
}
