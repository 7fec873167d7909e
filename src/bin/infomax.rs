//! `infomax`: train Deep InfoMax encoders, evaluate them, embed datasets.
//!
//! `infomax train` with no arguments trains conv28 on the Fashion-MNIST
//! subset bundled in `data/`, evaluates it next to the baselines and writes
//! the checkpoint under `runs/`.

use std::path::Path;
use std::process::ExitCode;

use infomax::bounds;
use infomax::cli::{
    self, Command, DEFAULT_OUT, DtypeArg, EmbedArgs, EvalArgs, ExportArgs, ImportArgs, Parsed, ProbeArgs, ReportArgs,
    SplitArg, TrainArgs, resumed_config,
};
use infomax::data::Split;
use infomax::dim::Dim;
use infomax::eval::EvalConfig;
use infomax::io::{ExportDtype, export, features};
use infomax::train::evaluate::{
    ENCODER_TAPS, Report, evaluate_encoder, evaluate_encoder_taps, evaluate_pixels, format_table,
};
use infomax::train::memory::Limit;
use infomax::train::{self, DataConfig, HostError, Start, checkpoint};

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
    let input = model.encoder.cfg.input;
    if !data.has_labels()? {
        if !quiet {
            eprintln!("the data has no labels (an image folder of bare files): no probes");
        }
        return Ok(Vec::new());
    }
    let train = dataset_of(data.load_eval(Split::Train, input)?, "train", quiet);
    let test = dataset_of(data.load_eval(Split::Test, input)?, "test", quiet);
    let plan = |b| train::memory::eval_plan(model, train.n, test.n, b, !probe.no_baselines);
    let encode_batch = train::memory::fit_batch(mem.batch, mem.limit, plan)?;
    if encode_batch < train::memory::DEFAULT_ENCODE_BATCH && mem.batch.is_none() && !quiet {
        eprintln!("encoding {encode_batch} images at a time to stay within the memory limit");
    }
    // The classifiers' seeds follow the model's seed, as the reference's
    // follow its `--seed`: runs with different seeds get independent probes.
    let few =
        infomax::eval::FewLabelConfig { draws: probe.few_draws, steps: 10 * probe.eval_epochs, ..Default::default() };
    let cfg =
        EvalConfig { epochs: probe.eval_epochs, seed: model.cfg.seed, encode_batch, few, ..EvalConfig::default() };
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
    if let Some(file) = out {
        let json = serde_json::to_string_pretty(&reports).map_err(|e| HostError::Config(e.to_string()))?;
        checkpoint::write_atomic(file, json.as_bytes())?;
    }
    Ok(reports)
}

/// The dataset of a split, after saying what its reader left out and
/// what the cache did.
fn dataset_of(l: train::LoadedSplit, split: &str, quiet: bool) -> infomax::data::Dataset {
    if let Some(note) = l.cache_note.as_ref().filter(|_| !quiet) {
        eprintln!("{split}: {note}");
    }
    if !l.skipped.is_empty() && !quiet {
        eprintln!("{split}: skipped {} unreadable file(s) (--skip-bad):", l.skipped.len());
        for s in l.skipped.iter().take(10) {
            eprintln!("  {}: {}", s.path.display(), s.reason);
        }
        if l.skipped.len() > 10 {
            eprintln!("  ... and {} more", l.skipped.len() - 10);
        }
    }
    l.dataset
}

fn print_summary(reports: &[Report]) {
    if reports.is_empty() {
        return;
    }
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

fn train_cmd(args: TrainArgs, quiet: bool, explicit: &[String], limit: Limit) -> Result<(), HostError> {
    args.probe.check(None)?;
    let mut cfg = args.config()?;
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
    let mut plan = train::memory::train_plan(&cfg.model, cfg.batch_size)?;
    if cfg.probe_every.is_some() {
        plan.items.extend(train::probe::memory_plan(&cfg.model)?.items);
    }
    plan.check(limit)?;
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
        let reports = run_eval(&mut summary.model, &cfg.data, &args.probe, quiet, Some(&out.join("eval.json")), mem)?;
        print_summary(&reports);
    }
    if let Some(reason) = summary.model.encoder.inference_unsupported().filter(|_| !args.no_export) {
        println!("\nnot exported: {reason} (the checkpoint works with eval and embed)");
    } else if !args.no_export {
        deploy(&mut summary.model, &cfg.data, &out)?;
    }
    let (report, no_map) = infomax::report::write(&out, None)?;
    if let Some(why) = no_map.filter(|_| !quiet) {
        eprintln!("the report has no map of Y: {why}");
    }
    println!("\nReport (open in a browser): {}", report.display());
    Ok(())
}

/// Exports the trained encoder (BN folded, f32 and f16) next to the
/// checkpoint, then encodes every test image through the `no_std`,
/// allocation-free inference path from the exported bytes, and checks Y
/// against the training path's eval-mode forward.
fn deploy(model: &mut Dim, data: &DataConfig, out: &Path) -> Result<(), HostError> {
    let input = model.encoder.cfg.input;
    let split = if data.has_labels()? { Split::Test } else { Split::Train };
    let test = dataset_of(data.load_eval(split, input)?, "test", true);
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

fn eval_cmd(mut args: EvalArgs, quiet: bool, explicit: &[String], limit: Limit) -> Result<(), HostError> {
    // Baselines are opt-in for eval.
    args.probe.no_baselines = !args.probe.baselines;
    args.probe.check(args.batch_size)?;
    if let Some(out) = &args.out {
        let resolved = checkpoint::resolve(&args.checkpoint)?;
        infomax::files::check_output(out, &[&args.checkpoint, &resolved, &args.data.data])
            .map_err(infomax::host_error::io(out, "write the results to"))?;
    }
    let mut model = train::import::load_model(&checkpoint::resolve(&args.checkpoint)?)?;
    if !args.allow_non_finite {
        train::check_model_finite(&model)?;
    }
    let mem = MemoryArgs { limit, batch: args.batch_size };
    let data = cli::eval_data_config(&args.data, explicit, &checkpoint::resolve(&args.checkpoint)?)?;
    let reports = run_eval(&mut model, &data, &args.probe, quiet, args.out.as_deref(), mem)?;
    print_summary(&reports);
    Ok(())
}

fn embed_cmd(args: EmbedArgs, explicit: &[String], limit: Limit) -> Result<(), HostError> {
    if let Some(b) = args.batch_size {
        bounds::ENCODE_BATCH.check_usize(b)?;
    }
    let resolved = checkpoint::resolve(&args.checkpoint)?;
    infomax::files::check_output(&args.out, &[&args.checkpoint, &resolved, &args.data.data])
        .map_err(infomax::host_error::io(&args.out, "write the features to"))?;
    let mut model = train::import::load_model(&resolved)?;
    if !args.allow_non_finite {
        train::check_model_finite(&model)?;
    }
    let split = match args.split {
        SplitArg::Train => Split::Train,
        SplitArg::Test => Split::Test,
    };
    let data = cli::eval_data_config(&args.data, explicit, &resolved)?;
    let input = model.encoder.cfg.input;
    let loaded = data.load_eval(split, input)?;
    let (format, classes) = (loaded.format, loaded.classes.clone());
    let ds = dataset_of(loaded, "embed", false);
    let batch = train::memory::fit_batch(args.batch_size, limit, |b| train::memory::embed_plan(&model, ds.n, b))?;
    let f = train::extract_features(&mut model, &ds, batch)?;
    if !args.allow_non_finite {
        train::check_features_finite(&f)?;
    }
    let taps = features::select_taps(&f, &args.tap)?;
    let mut fit = Vec::new();
    if let Some(r) = data.resize {
        fit.push(format!("resize {r} (cover, centre)"));
    }
    if let Some(c) = data.crop {
        fit.push(format!("centre crop {c}"));
    }
    let provenance = features::Provenance {
        source: args.checkpoint.display().to_string(),
        source_file: resolved.display().to_string(),
        source_sha256: infomax::sha256::sha256_file(&resolved).map_err(infomax::host_error::io(&resolved, "hash"))?,
        data: data.dir.display().to_string(),
        dataset: format!("{format:?}").to_lowercase(),
        split: match args.split {
            SplitArg::Train => "train",
            SplitArg::Test => "test",
        }
        .into(),
        input,
        fit: if fit.is_empty() { "none".into() } else { fit.join(", ") },
        classes,
    };
    let out = features::to_bytes(&f, &taps, ds.labels.as_deref(), ds.classes, &provenance)?;
    checkpoint::write_atomic(&args.out, &out)?;
    println!("wrote {} images' features ({}) to {}", f.n, taps.join(", "), args.out.display());
    Ok(())
}

fn report_cmd(args: ReportArgs) -> Result<(), HostError> {
    let (path, no_map) = infomax::report::write(&args.run, args.out.as_deref())?;
    if let Some(why) = no_map {
        eprintln!("the report has no map of Y: {why}");
    }
    println!("report: {}", path.display());
    Ok(())
}

fn import_cmd(args: ImportArgs) -> Result<(), HostError> {
    infomax::files::check_output(&args.out, &[&args.state_dict])
        .map_err(infomax::host_error::io(&args.out, "write the encoder to"))?;
    let encoder =
        match (&args.encoder, &args.encoder_config) {
            (Some(name), _) => Some(infomax::dim::EncoderSpec::Preset(name.clone()).resolve()?),
            (None, Some(p)) => {
                let text = infomax::files::read_text_bounded(p, infomax::files::MAX_CONFIG_BYTES)
                    .map_err(infomax::host_error::io(p, "read the encoder config"))?;
                Some(serde_json::from_str(&text).map_err(|e| HostError::Format {
                    path: p.clone(),
                    reason: format!("not an encoder config: {e}"),
                })?)
            }
            (None, None) => None,
        };
    let imported = train::import::import_state_dict(&args.state_dict, encoder)?;
    if !args.allow_non_finite {
        train::check_model_finite(&imported.model)?;
    }
    let dtype = dtype_of(args.dtype);
    let extra =
        [("imported_from", args.state_dict.display().to_string()), ("imported_sha256", imported.sha256.clone())];
    let bytes = infomax::io::export::to_bytes(&imported.model, dtype, !args.unfolded, &extra)?;
    checkpoint::write_atomic(&args.out, &bytes)?;
    println!(
        "read {} encoder tensors ({}), left out {} (MI heads, BN counters); wrote {} ({}, {}, {} bytes)",
        imported.tensors,
        if imported.had_bn { "with BN layers" } else { "folded" },
        imported.ignored.len(),
        args.out.display(),
        dtype.name(),
        if args.unfolded { "BN kept" } else { "BN folded" },
        bytes.len()
    );
    Ok(())
}

fn dtype_of(d: DtypeArg) -> ExportDtype {
    match d {
        DtypeArg::F32 => ExportDtype::F32,
        DtypeArg::F16 => ExportDtype::F16,
        DtypeArg::Bf16 => ExportDtype::BF16,
    }
}

fn export_cmd(args: ExportArgs) -> Result<(), HostError> {
    let dtype = dtype_of(args.dtype);
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
    let Parsed { cli, explicit } = match cli::parse(std::env::args_os()) {
        Ok(p) => p,
        Err(e) => e.exit(),
    };
    if let Err(e) = set_faults_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let Err(v) = infomax::kernels::cpu::env_cap() {
        let (env, names) = (infomax::kernels::cpu::KERNEL_ENV, infomax::kernels::cpu::Cap::NAMES);
        eprintln!("error: {env}={v:?} is not one of {names}");
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
        Command::Eval(a) => eval_cmd(a, cli.quiet, &explicit, limit),
        Command::Embed(a) => embed_cmd(a, &explicit, limit),
        Command::Report(a) => report_cmd(a),
        Command::Import(a) => import_cmd(a),
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
