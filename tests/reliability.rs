//! Issue 6: deterministic training, crash-safe checkpoints (SIGKILL at
//! random moments), the divergence guard, and hostile checkpoints, configs
//! and command lines. docs/reliability.md maps every row to a test here or
//! in tests/data.rs, tests/train.rs.

mod common;

use common::scratch::Scratch;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use infomax::data::{self, Split};
use infomax::dim::{Dim, DimConfig, Estimator};
use infomax::train::checkpoint::{self, AdamState, Progress};
use infomax::train::{self, DataConfig, DatasetKind, OptimConfig, Start, TrainConfig, TrainError};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn tmp(name: &str) -> Scratch {
    Scratch::new("rel", name)
}

/// `n` training images (and 32 test images) of the bundled subset.
fn small_data(name: &str, n: usize) -> Scratch {
    let dir = tmp(name);
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    common::write_idx(&dir, "train", &data::load_mnist_dir(&bundled, Split::Train).unwrap(), n);
    common::write_idx(&dir, "t10k", &data::load_mnist_dir(&bundled, Split::Test).unwrap(), 32);
    dir
}

fn config(data: &Path, encoder: &str, est: Estimator, batch: usize) -> TrainConfig {
    TrainConfig {
        model: DimConfig::new(encoder).mi_units(16).estimator(est).seed(3),
        data: DataConfig::new(DatasetKind::FashionMnist, data),
        batch_size: batch,
        epochs: None,
        minutes: None,
        steps: None,
        optimizer: OptimConfig::default(),
        seed: 11,
        freeze: vec![],
        log_grad_norm: false,
        probe_every: None,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

// ------------------------------------------------------------ 1. determinism

/// conv28, D = 16, 4 steps of batch 8: the weights, BN statistics and Adam
/// moments are bitwise identical with 1 and 2 threads, and across runs.
#[test]
fn training_is_bitwise_identical_for_1_and_2_threads_and_across_runs() {
    let data = small_data("det-data", 48);
    for est in [Estimator::Jsd, Estimator::Nce] {
        let mut cfg = config(&data, "conv28", est, 8);
        cfg.steps = Some(4);
        let run = |threads: usize, name: &str| {
            let out = tmp(name);
            let s = in_pool(threads, || train::train(&cfg, &out, Start::Fresh, true)).unwrap();
            assert_eq!(s.progress.step, 4);
            let ck = checkpoint::load(&s.checkpoint).unwrap();
            let adam = ck.adam.unwrap();
            [bits(&s.model.params), bits(&s.model.buffers), bits(&adam.m), bits(&adam.v)]
        };
        let one = run(1, "det-1");
        let two = run(2, "det-2");
        let again = run(2, "det-2-again");
        let init = Dim::new(cfg.model.clone()).unwrap();
        assert_ne!(one[0], bits(&init.params), "{est:?}: training must move the weights");
        for (i, what) in ["parameters", "BN statistics", "Adam m", "Adam v"].iter().enumerate() {
            assert!(one[i] == two[i], "{est:?}: {what} differ between 1 and 2 threads");
            assert!(two[i] == again[i], "{est:?}: {what} differ between two runs");
        }
    }
}

// ------------------------------------------------------------ 2. crash safety

/// `.<name>.tmp-<pid>` files of process `pid` in `dir`.
fn temporaries_of(dir: &Path, pid: u32) -> Vec<String> {
    let suffix = format!(".tmp-{pid}");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.ends_with(&suffix))
                .collect()
        })
        .unwrap_or_default()
}

fn train_args(data: &Path, out: &Path, epochs: u64) -> Vec<String> {
    let mut v: Vec<String> =
        ["--quiet", "--threads", "1", "train", "--encoder", "edge", "--mi-units", "16"].map(String::from).into();
    v.extend(["--batch-size", "16", "--seed", "5", "--no-eval"].map(String::from));
    v.extend(["--epochs".into(), epochs.to_string(), "--data".into(), data.display().to_string()]);
    v.extend(["--out".into(), out.display().to_string()]);
    v
}

/// Parsed train.jsonl: (epoch, step, loss bits, mi bits) per line.
fn log_rows(dir: &Path) -> Vec<(u64, u64, u64, u64)> {
    std::fs::read_to_string(dir.join("train.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"kind\"")) // window lines (checked in tests/train.rs)
        .map(|l| {
            let e: train::EpochLog = serde_json::from_str(l).unwrap();
            (e.epoch, e.step, e.loss.to_bits(), e.mi.to_bits())
        })
        .collect()
}

/// Starts `infomax train`, SIGKILLs it at seeded random moments (half of the
/// kills aimed at a checkpoint write, which a fault hook pauses for 25 ms
/// half-way), checks after every kill that `latest` loads, resumes, and
/// finally compares with an uninterrupted run bit for bit.
#[test]
fn sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run() {
    const EPOCHS: u64 = 12;
    /// Kills that land after the first checkpoint (so `--resume` is tested).
    const KILLS: usize = 10;
    let data = small_data("kill-data", 64);
    let reference = tmp("kill-reference");
    let t0 = Instant::now();
    let st = Command::new(BIN).args(train_args(&data, &reference, EPOCHS)).status().unwrap();
    assert!(st.success());
    let reference_ms = t0.elapsed().as_millis() as u64;

    let mut rng = 0x5EED_u64;
    let mut next = move |n: u64| {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (rng >> 33) % n.max(1)
    };
    let (mut kills, mut in_checkpoint, mut in_pointer, mut before_first) = (0, 0, 0, 0);
    // When the machine is quieter than during the reference run, a resumed
    // run can finish before enough kills landed: then start over in a fresh
    // folder with kills twice as early (counts carry over).
    let mut attempt = 0;
    let mut out = tmp("kill-run-0");
    let mut last_step = 0;
    let mut scale = 1;
    // Kills that keep landing before the first checkpoint push the next
    // one later; the spawn cap keeps a slow machine from looping forever.
    let (mut late_ms, mut spawns) = (0, 0);
    while kills - before_first < KILLS && attempt < 4 {
        spawns += 1;
        assert!(
            spawns <= 20 * KILLS,
            "{spawns} runs started and only {} kills landed after the first checkpoint",
            kills - before_first
        );
        let resume = checkpoint::latest(&out).unwrap().is_some();
        let mut args = train_args(&data, &out, EPOCHS);
        // Before the first checkpoint a killed run left only its log: start
        // over, moving that aside (a fresh run never reuses a folder).
        args.push(if resume { "--resume" } else { "--force" }.into());
        let mut child = Command::new(BIN)
            .args(&args)
            .env("INFOMAX_FAULT_WRITE_PAUSE_MS", "25")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        if next(2) == 0 {
            // Aim at a write: wait for this process's temporary file.
            let deadline = Instant::now() + Duration::from_secs(20);
            while temporaries_of(&out, pid).is_empty() && Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            std::thread::sleep(Duration::from_millis(next(20)));
        } else {
            std::thread::sleep(Duration::from_millis(
                (reference_ms / 10 + next(reference_ms / 4 + 1)) / scale + late_ms,
            ));
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the run failed on its own: {status}");
            if kills - before_first < KILLS {
                attempt += 1;
                scale *= 2;
                out = tmp(&format!("kill-run-{attempt}"));
                last_step = 0;
            }
            continue;
        }
        child.kill().unwrap(); // SIGKILL on Unix.
        child.wait().unwrap();
        kills += 1;
        let left = temporaries_of(&out, pid);
        if left.iter().any(|n| n.contains(".safetensors")) {
            in_checkpoint += 1;
        } else if !left.is_empty() {
            in_pointer += 1;
        }
        match checkpoint::latest(&out).unwrap() {
            Some(p) => {
                let ck = checkpoint::load(&p).unwrap_or_else(|e| panic!("kill {kills}: latest does not load: {e}"));
                assert!(ck.progress.step >= last_step, "kill {kills}: progress went back");
                last_step = ck.progress.step;
                late_ms = 0;
            }
            None => {
                before_first += 1;
                late_ms += reference_ms / 10 + 1;
            }
        }
    }
    // Let it finish.
    let mut args = train_args(&data, &out, EPOCHS);
    args.push(if checkpoint::latest(&out).unwrap().is_some() { "--resume" } else { "--force" }.into());
    assert!(Command::new(BIN).args(&args).stdout(Stdio::null()).status().unwrap().success());
    eprintln!(
        "sigkill: {kills} kills, {in_checkpoint} during a checkpoint write, {in_pointer} during a `latest` \
         write, {before_first} before the first checkpoint (reference run {reference_ms} ms)"
    );
    assert!(kills - before_first >= KILLS, "only {kills} kills landed before the run finished");
    assert!(in_checkpoint >= 2, "only {in_checkpoint} kills landed inside a checkpoint write");
    assert!(temporaries_of(&out, 0).is_empty());
    let stale: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(stale.is_empty(), "stale temporaries left: {stale:?}");

    let a = checkpoint::load(&checkpoint::latest(&reference).unwrap().unwrap()).unwrap();
    let b = checkpoint::load(&checkpoint::latest(&out).unwrap().unwrap()).unwrap();
    assert_eq!((b.progress.epoch, b.progress.step), (a.progress.epoch, a.progress.step));
    assert!(bits(&a.model.params) == bits(&b.model.params), "parameters differ from the uninterrupted run");
    assert!(bits(&a.model.buffers) == bits(&b.model.buffers), "BN statistics differ");
    let (ma, mb) = (a.adam.unwrap(), b.adam.unwrap());
    assert!(bits(&ma.m) == bits(&mb.m) && bits(&ma.v) == bits(&mb.v), "Adam moments differ");
    // The log holds each epoch once, with the uninterrupted run's values.
    assert_eq!(log_rows(&out), log_rows(&reference));
    assert_eq!(log_rows(&out).len(), EPOCHS as usize);
}

#[test]
fn atomic_writes_replace_whole_files_and_clean_up() {
    let dir = tmp("atomic");
    let p = dir.join("f.bin");
    checkpoint::write_atomic(&p, b"first").unwrap();
    checkpoint::write_atomic(&p, b"second, longer").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"second, longer");
    checkpoint::set_latest(&dir, "f.bin").unwrap();
    assert_eq!(checkpoint::latest(&dir).unwrap(), Some(p.clone()));
    // A killed writer's temporary (another pid) is removed; our own is not.
    let stale = dir.join(".epoch-0003.safetensors.tmp-99999999");
    let own = dir.join(format!(".x.tmp-{}", std::process::id()));
    let user = dir.join(".notes.tmp-draft");
    for f in [&stale, &own, &user] {
        std::fs::write(f, b"partial").unwrap();
    }
    assert_eq!(checkpoint::remove_stale_temporaries(&dir).unwrap(), 1);
    assert!(!stale.exists() && own.exists() && user.exists());
    // `latest` naming another folder's file is refused.
    std::fs::write(dir.join("latest"), "../elsewhere.safetensors\n").unwrap();
    assert!(matches!(checkpoint::latest(&dir), Err(TrainError::Format { .. })));
    // A failed write leaves the old file and no temporary.
    let sub = dir.join("missing-folder").join("g.bin");
    assert!(matches!(checkpoint::write_atomic(&sub, b"x"), Err(TrainError::Io { .. })));
}

// ------------------------------------------------------------ 3. divergence

/// A run whose update turns a weight non-finite stops at that step, names
/// the tensor and keeps the last checkpoint. The learning rate is bounded
/// (docs/reliability.md §6), so the blow-up is planted: one element of
/// Adam's second moment made negative, whose square root is NaN.
#[test]
fn a_diverging_step_stops_with_step_and_tensor_and_keeps_the_last_checkpoint() {
    let data = small_data("div-data", 64);
    let out = tmp("div");
    let mut cfg = config(&data, "edge", Estimator::Jsd, 16);
    cfg.epochs = Some(1);
    let good = train::train(&cfg, &out, Start::Fresh, true).unwrap();
    assert_eq!(good.progress.step, 4);
    let mut ck = checkpoint::load(&good.checkpoint).unwrap();
    let range = ck.model.table.get("encoder.conv2.weight").unwrap().range();
    ck.adam.as_mut().unwrap().v[range.start + 5] = -1e30;
    let extra = [("train_config", ck.metadata["train_config"].clone())];
    checkpoint::save(&good.checkpoint, &ck.model, ck.adam.as_ref(), &ck.progress, &extra).unwrap();
    let good_bytes = std::fs::read(&good.checkpoint).unwrap();
    let log_before = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    cfg.epochs = Some(5);
    let e = train::train(&cfg, &out, Start::Resume, true).unwrap_err();
    let TrainError::Diverged { step, what, checkpoint: kept } = &e else { panic!("{e}") };
    eprintln!("divergence: {e}");
    assert!(*step > 4, "{e}");
    let model = Dim::new(cfg.model.clone()).unwrap();
    let named = what
        .strip_prefix("parameter ")
        .or_else(|| what.strip_prefix("gradient of "))
        .or_else(|| what.strip_prefix("loss (largest weights: "))
        .and_then(|rest| rest.split([',', ' ']).next())
        .unwrap_or(what);
    assert!(model.table.get(named).is_some(), "{what} does not name a parameter");
    assert_eq!(kept.as_deref(), Some(good.checkpoint.as_path()));
    assert!(e.to_string().contains(&format!("step {step}")) && e.to_string().contains(named), "{e}");
    // Nothing was written: same latest, same bytes, same log.
    assert_eq!(checkpoint::latest(&out).unwrap().unwrap(), good.checkpoint);
    assert_eq!(std::fs::read(&good.checkpoint).unwrap(), good_bytes);
    assert_eq!(std::fs::read_to_string(out.join("train.jsonl")).unwrap(), log_before);
    let names: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

/// A NaN planted in a checkpoint's weight shows up as a non-finite loss or
/// gradient at the first resumed step; an Inf likewise.
#[test]
fn non_finite_weights_in_a_checkpoint_stop_training_at_the_first_step() {
    let data = small_data("nan-data", 32);
    for (poison, name) in [(f32::NAN, "nan"), (f32::INFINITY, "inf")] {
        let out = tmp(name);
        let mut cfg = config(&data, "edge", Estimator::Nce, 16);
        cfg.epochs = Some(1);
        let s = train::train(&cfg, &out, Start::Fresh, true).unwrap();
        let mut ck = checkpoint::load(&s.checkpoint).unwrap();
        ck.model.tensor_mut("encoder.conv2.weight").unwrap()[5] = poison;
        checkpoint::save(&s.checkpoint, &ck.model, ck.adam.as_ref(), &ck.progress, &[]).unwrap();
        cfg.epochs = Some(2);
        let e = train::train(&cfg, &out, Start::Resume, true).unwrap_err();
        let TrainError::Diverged { step, what, .. } = &e else { panic!("{e}") };
        assert_eq!(*step, s.progress.step + 1, "{e}");
        assert!(what.starts_with("loss (largest weights: ") || what.starts_with("gradient of "), "{e}");
    }
}

#[test]
fn log_grad_norm_flag_writes_global_and_per_tensor_norms() {
    let data = small_data("gn-data", 32);
    let out = tmp("gn");
    let mut args = train_args(&data, &out, 2);
    args.push("--log-grad-norm".into());
    let o = Command::new(BIN).args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = Dim::new(DimConfig::new("edge").mi_units(16).seed(5)).unwrap();
    let text = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    let epochs: Vec<&str> = text.lines().filter(|l| !l.contains("\"kind\"")).collect();
    assert_eq!(epochs.len(), 2);
    for line in epochs {
        let e: train::EpochLog = serde_json::from_str(line).unwrap();
        let per: HashMap<_, _> = e.grad_norms.unwrap().into_iter().collect();
        assert_eq!(per.len(), model.table.entries().len());
        assert!(model.table.entries().iter().all(|t| per.contains_key(&t.name)));
        let global = e.grad_norm.unwrap();
        let from_parts = per.values().map(|n| n * n).sum::<f64>().sqrt();
        assert!(global > 0.0 && (global - from_parts).abs() <= 1e-9 * global, "{global} vs {from_parts}");
        assert!(e.grad_norm_max.unwrap() >= global);
    }
    // Without the flag nothing is logged.
    let out2 = tmp("gn-off");
    assert!(Command::new(BIN).args(train_args(&data, &out2, 1)).status().unwrap().success());
    assert!(!std::fs::read_to_string(out2.join("train.jsonl")).unwrap().contains("grad_norm"));
}

// ------------------------------------------------------------ 4. hostile checkpoints

/// A valid checkpoint of a small model, its model config and the bytes.
fn small_checkpoint() -> (DimConfig, Vec<u8>) {
    let cfg = DimConfig::new("edge").mi_units(8);
    let model = Dim::new(cfg.clone()).unwrap();
    let adam = AdamState { m: vec![0.5; model.table.len()], v: vec![0.25; model.table.len()] };
    (cfg, checkpoint::to_bytes(&model, Some(&adam), &Progress::default(), &[]).unwrap())
}

type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Re-serialises `bytes` after `edit` changed its tensors or metadata.
fn rewrite(bytes: &[u8], edit: impl FnOnce(&mut Vec<Tensor>, &mut HashMap<String, String>)) -> Vec<u8> {
    let (_, md) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut tensors: Vec<Tensor> =
        st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    edit(&mut tensors, &mut meta);
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// A raw safetensors file: length prefix, header, data.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

fn load_err(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    match checkpoint::load(&p) {
        Err(e @ TrainError::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(name), "the message must name the file: {msg}");
            msg
        }
        Err(e) => panic!("{name}: expected a format error, got {e:?}"),
        Ok(_) => panic!("{name}: loaded"),
    }
}

#[test]
fn hostile_checkpoints_are_refused_with_the_reason() {
    let dir = tmp("hostile-ckpt");
    let (cfg, good) = small_checkpoint();
    checkpoint::load(&{
        let p = dir.join("good.safetensors");
        std::fs::write(&p, &good).unwrap();
        p
    })
    .unwrap();
    let rows: Vec<(&str, Vec<u8>, &str)> = vec![
        ("short.st", good[..5].to_vec(), "header too small"),
        (
            "header-longer-than-file.st",
            {
                let mut b = good.clone();
                b[..8].copy_from_slice(&(good.len() as u64).to_le_bytes());
                b
            },
            "invalid header length",
        ),
        (
            "header-over-100mb.st",
            raw("{}", &[]).iter().copied().enumerate().map(|(i, b)| if i == 3 { 0x10 } else { b }).collect(),
            "header too large",
        ),
        ("invalid-json.st", raw("{\"a\": {\"dtype\": ", &[]), "not a safetensors file"),
        ("not-utf8.st", [2u64.to_le_bytes().as_slice(), &[0xff, 0xfe]].concat(), "not a safetensors file"),
        (
            "duplicate-name.st",
            raw(
                r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
                &[0; 8],
            ),
            "names tensor a twice",
        ),
        (
            "offsets-out-of-bounds.st",
            raw(r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8]),
            "incomplete metadata",
        ),
        (
            "offsets-overlap.st",
            raw(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#,
                &[0; 24],
            ),
            "invalid offset for tensor `b`",
        ),
        (
            "offsets-hole.st",
            raw(
                r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[20,36]}}"#,
                &[0; 36],
            ),
            "invalid offset for tensor `b`",
        ),
        (
            "offsets-disagree-with-shape.st",
            raw(r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#, &[0; 16]),
            "invalid shape, data type, or offset",
        ),
        (
            "shape-overflow.st",
            raw(r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,0]}}"#, &[]),
            "overflow computing buffer size",
        ),
        (
            "not-a-checkpoint.st",
            raw(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]),
            "not an infomax checkpoint",
        ),
        (
            "future-version.st",
            rewrite(&good, |_, m| {
                m.insert("version".into(), "99".into());
            }),
            "unsupported checkpoint version",
        ),
        (
            "bad-model-config.st",
            rewrite(&good, |_, m| {
                m.insert("model_config".into(), "{\"encoder\": \"conv99\"}".into());
            }),
            "unknown preset",
        ),
        (
            "model-config-without-mi-units.st",
            rewrite(&good, |_, m| {
                let mut v: serde_json::Value = serde_json::from_str(&m["model_config"]).unwrap();
                v.as_object_mut().unwrap().remove("mi_units");
                m.insert("model_config".into(), v.to_string());
            }),
            "no mi_units (a checkpoint records every setting)",
        ),
        (
            "dtype-mismatch.st",
            rewrite(&good, |t, _| {
                let x = t.iter_mut().find(|x| x.0 == "encoder.conv1.weight").unwrap();
                x.1 = Dtype::I32;
            }),
            "tensor encoder.conv1.weight has dtype I32, expected F32",
        ),
        (
            "missing-tensor.st",
            rewrite(&good, |t, _| t.retain(|x| x.0 != "local_head.ln.weight")),
            "missing tensor local_head.ln.weight",
        ),
        (
            "missing-adam-moment.st",
            rewrite(&good, |t, _| t.retain(|x| x.0 != "optim.v.encoder.out.bias")),
            "missing tensor optim.v.encoder.out.bias",
        ),
        (
            "wrong-shape.st",
            rewrite(&good, |t, _| {
                let x = t.iter_mut().find(|x| x.0 == "encoder.conv2.weight").unwrap();
                x.2 = vec![x.2.iter().product()];
            }),
            "tensor encoder.conv2.weight has shape [4608], expected [32, 16, 3, 3] for this config",
        ),
        (
            "config-of-another-model.st",
            rewrite(&good, |_, m| {
                m.insert("model_config".into(), serde_json::to_string(&cfg.clone().mi_units(9)).unwrap());
            }),
            "has shape [8",
        ),
    ];
    for (name, bytes, expected) in &rows {
        let msg = load_err(&dir, name, bytes);
        assert!(msg.contains(expected), "{name}: {msg:?} does not contain {expected:?}");
    }
}

/// A header that asks for a model far larger than the file is refused
/// before anything that size is allocated.
#[test]
fn checkpoint_config_larger_than_the_file_is_refused_without_allocating() {
    let dir = tmp("hostile-huge");
    let (cfg, good) = small_checkpoint();
    // Within every bound (docs/reliability.md §6), but far more weights
    // than the file holds: fc 65536 wide over edge's 64·4·4 map, then D.
    let mut wide = infomax::dim::EncoderConfig::edge();
    wide.layers[3] = infomax::dim::Layer::Linear { out: 65536, bn: true, relu: true };
    for d in [4096usize, 65536] {
        let bytes = rewrite(&good, |_, m| {
            let mut c = cfg.clone().mi_units(d);
            c.encoder = infomax::dim::EncoderSpec::Custom(wide.clone());
            m.insert("model_config".into(), serde_json::to_string(&c).unwrap());
        });
        let msg = load_err(&dir, "huge.st", &bytes);
        assert!(msg.contains("model") && msg.contains("file"), "{msg}");
    }
}

#[test]
fn resume_refuses_a_checkpoint_of_another_model_config() {
    let data = small_data("other-data", 32);
    let out = tmp("other");
    let mut cfg = config(&data, "edge", Estimator::Jsd, 16);
    cfg.epochs = Some(1);
    train::train(&cfg, &out, Start::Fresh, true).unwrap();
    cfg.model = cfg.model.mi_units(32);
    cfg.epochs = Some(2);
    let e = train::train(&cfg, &out, Start::Resume, true).unwrap_err();
    assert!(matches!(e, TrainError::Config(_)) && e.to_string().contains("another model config"), "{e}");
}

// ------------------------------------------------------------ 4. hostile configs

fn config_err(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    TrainConfig::from_file(&p).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn hostile_config_files_are_refused_with_the_reason() {
    let dir = tmp("hostile-cfg");
    let data = "[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n";
    let model = "[model]\nencoder = \"conv28\"\n";
    let rows: Vec<(&str, String, &str)> = vec![
        ("unknown-top.toml", format!("epochs = 1\nlearning_rate = 3\n{model}{data}"), "unknown field `learning_rate`"),
        ("unknown-model.toml", format!("epochs = 1\n{model}depth = 3\n{data}"), "unknown field `depth`"),
        ("unknown-data.toml", format!("epochs = 1\n{model}{data}shuffle = true\n"), "unknown field `shuffle`"),
        (
            "unknown-optimizer.toml",
            format!(
                "epochs = 1\n[optimizer]\nlr = 1e-4\nbeta1 = 0.5\nbeta2 = 0.999\neps = 1e-8\nmomentum = 0.9\n{model}{data}"
            ),
            "unknown field `momentum`",
        ),
        (
            "unknown-layer-key.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 28, 28]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 0, dilation = 2 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "did not match any variant of untagged enum EncoderSpec",
        ),
        (
            "unknown.json",
            r#"{"epochs": 1, "model": {"encoder": "conv28"}, "data": {"kind": "mnist", "dir": "x"}, "extra": 0}"#
                .into(),
            "unknown field `extra`",
        ),
        ("negative-mi.toml", format!("epochs = 1\n{model}mi_units = -1\n{data}"), "invalid value: integer `-1`"),
        ("negative-batch.toml", format!("epochs = 1\nbatch_size = -64\n{model}{data}"), "invalid value: integer `-64`"),
        (
            "negative-epochs.json",
            r#"{"epochs": -2, "model": {"encoder": "conv28"}, "data": {"kind": "mnist", "dir": "x"}}"#.into(),
            "invalid value: integer `-2`",
        ),
        (
            "negative-lr.toml",
            format!("epochs = 1\n[optimizer]\nlr = -1e-4\nbeta1 = 0.5\nbeta2 = 0.999\neps = 1e-8\n{model}{data}"),
            "optimizer.lr",
        ),
        ("negative-alpha.toml", format!("epochs = 1\n{model}alpha = -0.5\n{data}"), "alpha"),
        ("negative-minutes.toml", format!("minutes = -3.0\n{model}{data}"), "minutes (--minutes) = -3 is out of range"),
        ("zero-mi.toml", format!("epochs = 1\n{model}mi_units = 0\n{data}"), "mi_units"),
        (
            "zero-batch.toml",
            format!("epochs = 1\nbatch_size = 0\n{model}{data}"),
            "batch_size (--batch-size) = 0 is out of range",
        ),
        (
            "zero-channels.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 28, 28]\nlayers = [{{ type = \"conv\", out = 0, kernel = 3, stride = 1, padding = 0 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "model.encoder.layers[].out = 0 is out of range [1, 65536]",
        ),
        (
            "zero-input.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 0, 28]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 0 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "model.encoder.input[1..] = 0 is out of range [1, 4096]",
        ),
        (
            "zero-y.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 28, 28]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 0 }}]\nlocal_layer = 0\ny_dim = 0\n{data}"
            ),
            "model.encoder.y_dim = 0 is out of range [1, 65536]",
        ),
        (
            "kernel-too-large.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 4, 4]\nlayers = [{{ type = \"conv\", out = 4, kernel = 9, stride = 1, padding = 0 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "kernel is larger",
        ),
        (
            "local-layer-out-of-range.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 28, 28]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 0 }}]\nlocal_layer = 7\ny_dim = 8\n{data}"
            ),
            "encoder local_layer: invalid shape: index past the last layer",
        ),
        (
            "shape-overflow.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [4294967296, 4294967296, 4294967296]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 0 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "model.encoder.input[0] = 4294967296 is out of range [1, 64]",
        ),
        (
            "too-many-weights.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 4096, 4096]\nlayers = [{{ type = \"conv\", out = 4096, kernel = 1, stride = 1, padding = 0 }}, {{ type = \"linear\", out = 65536 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "more than the limit of 4294967296",
        ),
        (
            "huge-mi-units.toml",
            format!("epochs = 1\n{model}mi_units = 4294967296\n{data}"),
            "model.mi_units (--mi-units) = 4294967296 is out of range",
        ),
        (
            "huge-padding.toml",
            format!(
                "epochs = 1\n[model.encoder]\ninput = [1, 28, 28]\nlayers = [{{ type = \"conv\", out = 4, kernel = 3, stride = 1, padding = 9223372036854775807 }}]\nlocal_layer = 0\ny_dim = 8\n{data}"
            ),
            "model.encoder.layers[].padding = 9223372036854775807 is out of range [0, 64]",
        ),
        ("unknown-preset.toml", format!("epochs = 1\n[model]\nencoder = \"conv99\"\n{data}"), "unknown preset"),
        ("no-budget.toml", format!("{model}{data}"), "set a budget"),
        (
            "unknown-dataset.toml",
            format!("epochs = 1\n{model}[data]\nkind = \"imagenet\"\ndir = \"x\"\n"),
            "unknown variant `imagenet`",
        ),
        ("not-toml.toml", "epochs = = 1".into(), "not-toml.toml: TOML parse error at line 1, column 10"),
        ("not-json.json", "{\"epochs\": ".into(), "EOF"),
        ("empty.toml", String::new(), "missing field"),
    ];
    let mut seen = std::collections::HashSet::new();
    for (name, text, expected) in &rows {
        assert!(seen.insert(*name));
        let msg = config_err(&dir, name, text);
        eprintln!("{name}: {msg}");
        assert!(msg.contains(expected), "{name}: {msg:?} does not contain {expected:?}");
    }
}

// ------------------------------------------------------------ 4. hostile command lines

fn cli(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn cli_missing_files_and_unwritable_output_are_errors() {
    let data = small_data("cli-data", 32);
    let d = data.to_str().unwrap();
    let dir = tmp("cli");
    let rows: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec!["train".into(), "--config".into(), "/nonexistent/c.toml".into()],
            1,
            "/nonexistent/c.toml: cannot read config".into(),
        ),
        (
            vec!["train".into(), "--quiet".into(), "--data".into(), "/nonexistent/data".into()],
            1,
            "/nonexistent/data".into(),
        ),
        (
            vec![
                "train".into(),
                "--quiet".into(),
                "--data".into(),
                d.into(),
                "--init".into(),
                "/nonexistent/w.safetensors".into(),
                "--out".into(),
                dir.join("i").display().to_string(),
            ],
            1,
            "/nonexistent/w.safetensors: cannot read checkpoint".into(),
        ),
        (
            vec![
                "train".into(),
                "--quiet".into(),
                "--data".into(),
                d.into(),
                "--resume".into(),
                "--out".into(),
                dir.join("empty").display().to_string(),
            ],
            1,
            "has no checkpoint yet".into(),
        ),
        (vec!["eval".into(), "/nonexistent/w.safetensors".into()], 1, "cannot read checkpoint".into()),
        (
            vec!["embed".into(), "/nonexistent/w.safetensors".into(), "--out".into(), "x.st".into()],
            1,
            "cannot read checkpoint".into(),
        ),
    ];
    for (args, code, expected) in &rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, err) = cli(&args);
        assert_eq!(c, Some(*code), "{args:?}: {err}");
        assert!(err.contains(expected.as_str()), "{args:?}: {err:?} does not contain {expected:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // An output folder under a regular file cannot be created (even by root).
    let file = dir.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let out = file.join("run");
    let (c, err) = cli(&[
        "--quiet",
        "train",
        "--data",
        d,
        "--encoder",
        "edge",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--no-eval",
    ]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("cannot create output folder") && err.contains("a-file/run"), "{err}");
    // A read-only folder: only meaningful when permissions apply (not root).
    let ro = dir.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        eprintln!("skipped the read-only folder row: this user (root?) writes through mode 0555");
    } else {
        let (c, err) = cli(&[
            "--quiet",
            "train",
            "--data",
            d,
            "--encoder",
            "edge",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            ro.to_str().unwrap(),
            "--no-eval",
        ]);
        assert_eq!(c, Some(1), "{err}");
        assert!(err.contains("Permission denied"), "{err}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Checks a run that hit a full disk in its second epoch: exit 1 with the
/// OS message, `latest` still names epoch 1, which loads, and no temporary
/// is left behind.
fn check_full_disk_run(out: &Path, code: Option<i32>, err: &str) {
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("No space left on device") || err.contains("no space left on device"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let latest = checkpoint::latest(out).unwrap().expect("epoch 1 was written");
    assert!(latest.ends_with("epoch-0001.safetensors"), "{}", latest.display());
    assert_eq!(checkpoint::load(&latest).unwrap().progress.epoch, 1);
    let tmps: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(tmps.is_empty(), "{tmps:?}");
}

fn checkpoint_len(data: &Path, name: &str) -> u64 {
    let probe = tmp(name);
    assert!(Command::new(BIN).args(train_args(data, &probe, 1)).status().unwrap().success());
    std::fs::metadata(probe.join("epoch-0001.safetensors")).unwrap().len()
}

#[test]
fn full_disk_injected_writer_error() {
    let data = small_data("enospc-data", 32);
    let len = checkpoint_len(&data, "enospc-probe");
    let out = tmp("enospc");
    // Room for the first checkpoint and its pointer, not the second checkpoint.
    let o = Command::new(BIN)
        .args(train_args(&data, &out, 3))
        .env("INFOMAX_FAULT_DISK_FULL_AFTER_BYTES", (len + len / 2).to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    check_full_disk_run(&out, o.status.code(), &err);
    assert!(err.contains("cannot write"), "{err}");
    // A malformed fault variable is a usage error.
    let o =
        Command::new(BIN).args(["eval", "/nonexistent"]).env("INFOMAX_FAULT_WRITE_PAUSE_MS", "soon").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("INFOMAX_FAULT_WRITE_PAUSE_MS"));
}

/// The same on a real full file system: a tmpfs sized for 1.5 checkpoints.
/// Needs root (mount); skipped with the reason otherwise.
#[test]
fn full_disk_on_a_small_tmpfs() {
    let data = small_data("tmpfs-data", 32);
    let len = checkpoint_len(&data, "tmpfs-probe");
    let mnt = tmp("tmpfs");
    let size = format!("size={}k", (len + len / 2) / 1024);
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs", mnt.to_str().unwrap()]).output();
    match mounted {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            eprintln!("skipped the tmpfs full-disk row: mount failed: {}", String::from_utf8_lossy(&o.stderr).trim());
            return;
        }
        Err(e) => {
            eprintln!("skipped the tmpfs full-disk row: cannot run mount: {e}");
            return;
        }
    }
    let out = mnt.join("run");
    let o = Command::new(BIN).args(train_args(&data, &out, 3)).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let result = std::panic::catch_unwind(|| check_full_disk_run(&out, o.status.code(), &err));
    let _ = Command::new("umount").arg(&mnt).status();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// ------------------------------------------------------------ 5. run folders and bounded reads

/// SHA-256 of every file under `dir` (recursively), by path relative to it.
fn hashes(dir: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    use sha2::Digest;
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let digest = sha2::Sha256::digest(std::fs::read(&p).unwrap());
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), format!("{digest:x}"));
            }
        }
    }
    out
}

/// Runs the CLI and reports its exit code, stderr and peak resident set in
/// KiB (its own `VmHWM`, printed by the `INFOMAX_REPORT_PEAK_RSS` hook: a
/// parent's `wait4` would count the parent's memory at the fork).
fn cli_rss(args: &[&str]) -> (Option<i32>, String, u64) {
    let o = Command::new(BIN).args(args).env("INFOMAX_REPORT_PEAK_RSS", "1").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = err.lines().find_map(|l| l.strip_prefix("peak RSS: ")).unwrap_or_else(|| panic!("no peak RSS: {err}"));
    let kib = line.trim_end_matches(" kB").parse().unwrap_or_else(|_| panic!("peak RSS {line:?}"));
    (o.status.code(), err, kib)
}

/// A fresh run, a refused second fresh run, a resumed run and a `--force`
/// run into one folder: every file of the earlier state is found again
/// byte for byte (SHA-256), in place or in the moved-aside folder. A
/// resumed run continues the same run: it appends to its log and adds
/// checkpoints, and may replace only its pointer and results.
#[test]
fn fresh_force_and_resume_into_one_folder_lose_no_earlier_file() {
    let data = small_data("folder-data", 32);
    let folder = tmp("folder");
    let out = folder.join("run");
    let mut args = train_args(&data, &out, 1);
    args.retain(|a| a != "--no-eval");
    args.extend(["--eval-epochs".into(), "1".into()]);
    let run = |extra: &[&str]| {
        let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        cli(&a)
    };
    let (c, err) = run(&[]);
    assert_eq!(c, Some(0), "{err}");
    let first = hashes(&out);
    assert!(first.keys().any(|k| k.to_string_lossy().ends_with(".safetensors")), "{first:?}");
    assert!(first.contains_key(Path::new("eval.json")), "{first:?}");

    // A second fresh run is refused and touches nothing.
    let (c, err) = run(&[]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("holds an earlier run") && err.contains("--resume") && err.contains("--force"), "{err}");
    assert_eq!(hashes(&out), first);

    // Resume for one more epoch: earlier checkpoints stay, the log grows.
    let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
    let at = a.iter().position(|&x| x == "--epochs").unwrap();
    a[at + 1] = "2";
    a.push("--resume");
    let (c, err) = cli(&a);
    assert_eq!(c, Some(0), "{err}");
    let resumed = hashes(&out);
    let updated = ["latest", "train.jsonl", "eval.json"];
    for (k, h) in &first {
        let name = k.to_string_lossy();
        if updated.contains(&name.as_ref()) || !name.starts_with("epoch-") {
            continue;
        }
        assert_eq!(resumed.get(k), Some(h), "resume changed or removed {name}");
    }
    let log = std::fs::read(out.join("train.jsonl")).unwrap();
    let before =
        std::fs::read_to_string(out.join("train.jsonl")).unwrap().lines().filter(|l| !l.contains("\"kind\"")).count();
    assert_eq!(before, 2, "{}", String::from_utf8_lossy(&log));

    // --force moves the whole earlier state aside, byte for byte.
    let (c, err) = run(&["--force"]);
    assert_eq!(c, Some(0), "{err}");
    let aside = out.with_file_name("run.old-1");
    assert_eq!(hashes(&aside), resumed, "the moved-aside folder differs from the run before --force");
    assert!(err.contains("run.old-1"), "{err}");
    assert_eq!(log_rows(&out).len(), 1);
}

/// The run folder lock: a second run into a folder a live run holds is
/// refused at once, and the lock dies with its process.
#[test]
fn a_live_run_folder_is_locked_and_the_lock_dies_with_its_process() {
    let data = small_data("lock-data", 32);
    let out = tmp("lock");
    let lock = infomax::files::RunLock::acquire(&out).unwrap();
    let mut a = train_args(&data, &out, 1);
    a.push("--resume".into());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (c, err) = cli(&a);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("lock") && err.contains(out.to_str().unwrap()), "{err}");
    drop(lock);
    // A SIGKILLed holder does not leave the lock held.
    let mut child = Command::new(BIN)
        .args(train_args(&data, &out, 50))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(infomax::files::RunLock::acquire(&out).is_ok(), "the killed run still holds the lock");
}

/// Outputs that are one of the command's inputs, or not regular files, are
/// refused before anything is written.
#[test]
fn outputs_that_are_inputs_or_devices_are_refused() {
    let data = small_data("out-data", 32);
    let out = tmp("out");
    let (c, err) = cli(&train_args(&data, &out, 1).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(0), "{err}");
    let ckpt = checkpoint::latest(&out).unwrap().unwrap();
    let before = hashes(&out);
    let (o, ck, latest) = (out.to_str().unwrap(), ckpt.to_str().unwrap(), out.join("latest"));
    let latest = latest.to_str().unwrap();
    let d = data.to_str().unwrap();
    let train_img = data.join("train-images-idx3-ubyte");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["export", ck, "--out", ck], "is this command's input"),
        (vec!["export", o, "--out", ck], "is this command's input"),
        (vec!["export", latest, "--out", ck], "is this command's input"),
        (vec!["embed", ck, "--data", d, "--out", ck], "is this command's input"),
        (vec!["embed", ck, "--data", d, "--out", train_img.to_str().unwrap()], "is this command's input"),
        (vec!["export", ck, "--out", "/dev/null"], "not a regular file"),
        (vec!["embed", ck, "--data", d, "--out", "/dev/null"], "not a regular file"),
        (vec!["export", ck, "--out", o], "not a regular file"),
        (vec!["eval", ck, "--data", d, "--out", ck], "is this command's input"),
        (vec!["eval", o, "--data", d, "--out", train_img.to_str().unwrap()], "is this command's input"),
        (vec!["eval", ck, "--data", d, "--out", "/dev/null"], "not a regular file"),
    ];
    for (args, want) in cases {
        let (c, err) = cli(&args);
        assert_eq!(c, Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(err.contains(args[args.len() - 1]), "{args:?}: the error does not name the user's path: {err}");
    }
    assert_eq!(hashes(&out), before);
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
    // The run folder and its pointer name the checkpoint.
    let dest_dir = tmp("out-export");
    let dest = dest_dir.join("encoder.safetensors");
    for src in [o, latest] {
        let (c, err) = cli(&["export", src, "--out", dest.to_str().unwrap()]);
        assert_eq!(c, Some(0), "{src}: {err}");
    }
    // eval --out writes the results a run's eval.json holds, k-NN included.
    let results = dest_dir.join("eval.json");
    let r = results.to_str().unwrap();
    let (c, err) = cli(&["--quiet", "eval", o, "--data", d, "--out", r, "--eval-epochs", "1", "--no-baselines"]);
    assert_eq!(c, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&results).unwrap()).unwrap();
    let y = v[0]["taps"].as_array().unwrap().iter().find(|t| t["tap"] == "y").unwrap();
    for key in ["linear", "mlp", "knn"] {
        let acc = y[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{key} = {acc}");
    }
    assert_eq!(v[0]["method"], "DIM");
}

/// Devices, FIFOs and files far larger than their content declares are
/// refused as checkpoints, configs, pointers and data, without reading
/// them: each case stays far below 1 GB of memory (peak RSS printed).
#[test]
fn device_and_sparse_inputs_are_refused_without_reading_them() {
    let data = small_data("dev-data", 32);
    let dir = tmp("dev");
    let sparse = dir.join("sparse.safetensors");
    std::fs::File::create(&sparse).unwrap().set_len(2 << 30).unwrap();
    // A valid header that declares 8 bytes, then 2 GiB of holes.
    let lying = dir.join("lying.safetensors");
    std::fs::write(&lying, raw(r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, &[0; 8])).unwrap();
    std::fs::OpenOptions::new().write(true).open(&lying).unwrap().set_len(2 << 30).unwrap();
    let sparse_cfg = dir.join("c.toml");
    std::fs::File::create(&sparse_cfg).unwrap().set_len(2 << 30).unwrap();
    let pointer_dir = dir.join("run");
    std::fs::create_dir_all(&pointer_dir).unwrap();
    std::os::unix::fs::symlink("/dev/zero", pointer_dir.join("latest")).unwrap();
    let big_ptr = dir.join("run2");
    std::fs::create_dir_all(&big_ptr).unwrap();
    std::fs::File::create(big_ptr.join("latest")).unwrap().set_len(2 << 30).unwrap();
    let dev_data = dir.join("dev-data");
    std::fs::create_dir_all(&dev_data).unwrap();
    for f in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte"] {
        std::os::unix::fs::symlink("/dev/zero", dev_data.join(f)).unwrap();
    }
    let d = data.to_str().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let rows: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "checkpoint /dev/zero",
            vec!["eval".into(), "/dev/zero".into(), "--data".into(), d.into()],
            "not a regular file",
        ),
        (
            "sparse 2 GiB checkpoint",
            vec!["eval".into(), s(&sparse), "--data".into(), d.into()],
            "not a safetensors file",
        ),
        (
            "header declares 8 of 2 GiB",
            vec!["eval".into(), s(&lying), "--data".into(), d.into()],
            "declares 8 data bytes",
        ),
        ("config /dev/zero", vec!["train".into(), "--config".into(), "/dev/zero".into()], "not a regular file"),
        ("sparse 2 GiB config", vec!["train".into(), "--config".into(), s(&sparse_cfg)], "more than the 1048576"),
        ("latest -> /dev/zero", vec!["eval".into(), s(&pointer_dir), "--data".into(), d.into()], "not a regular file"),
        ("sparse 2 GiB latest", vec!["eval".into(), s(&big_ptr), "--data".into(), d.into()], "more than the 4096"),
        (
            "IDX files -> /dev/zero",
            vec!["train".into(), "--data".into(), s(&dev_data), "--out".into(), s(&dir.join("o"))],
            "not a regular file",
        ),
    ];
    for (case, args, want) in rows {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (c, err, rss_kib) = cli_rss(&args);
        eprintln!("{case}: exit {c:?}, peak RSS {:.1} MiB", rss_kib as f64 / 1024.0);
        assert_eq!(c, Some(1), "{case}: {err}");
        assert!(err.contains(want), "{case}: {err:?} lacks {want:?}");
        assert!(rss_kib < 1 << 20, "{case}: peak RSS {rss_kib} KiB");
    }
}

/// `--init` matches tensors by name and shape, prints what it loaded, and
/// refuses an encoder it cannot fill unless `--init-partial`; `--freeze`
/// names must name parameters.
#[test]
fn init_and_freeze_say_what_they_do() {
    let data = small_data("init-data", 32);
    let src = tmp("init-src");
    let (c, err) = cli(&train_args(&data, &src, 1).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(0), "{err}");
    let s = src.to_str().unwrap();
    // Same encoder, another D: the encoder loads, the heads start fresh.
    let runs = tmp("init-runs");
    let base = |out: &str| -> Vec<String> {
        let mut a = train_args(&data, &runs.join(out), 1);
        a.retain(|x| x != "--quiet");
        a
    };
    let mut a = base("init-ok");
    let at = a.iter().position(|x| x == "--mi-units").unwrap();
    a[at + 1] = "8".into();
    a.extend(["--init".into(), s.into()]);
    let (c, err) = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(0), "{err}");
    assert!(err.contains("encoder.conv1.weight") && err.contains("loaded"), "{err}");
    assert!(err.contains("fresh (the checkpoint's is"), "{err}");
    // Another encoder: refused, naming the tensors, unless --init-partial.
    let mut a = base("init-bad");
    let at = a.iter().position(|x| x == "--encoder").unwrap();
    a[at + 1] = "conv28".into();
    a.extend(["--init".into(), s.into()]);
    let (c, err) = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("encoder tensor(s) missing or of another shape") && err.contains("--init-partial"), "{err}");
    // Freeze: a typo and an empty prefix are refused.
    for (prefix, want) in [("encoder.cnov1", "names no parameter"), ("", "empty prefix")] {
        let mut a = base("freeze");
        a.extend(["--freeze".into(), prefix.into()]);
        let (c, err) = cli(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(c, Some(1), "{prefix:?}: {err}");
        assert!(err.contains(want), "{prefix:?}: {err}");
    }
}

/// `--resume` takes the run's settings from its checkpoint: omitted flags
/// keep the run's values, a conflicting one is an error naming it, a
/// longer budget is allowed.
#[test]
fn resume_takes_the_settings_from_the_checkpoint() {
    let data = small_data("resume-data", 32);
    let out = tmp("resume-cfg");
    let (c, err) = cli(&train_args(&data, &out, 1).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(0), "{err}");
    let o = out.to_str().unwrap();
    let d = data.to_str().unwrap();
    let (c, err) = cli(&["--quiet", "train", "--out", o, "--resume", "--batch-size", "8", "--data", d]);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("--batch-size") && err.contains("disagree"), "{err}");
    // Only the budget and data given: the run's batch size 16, seed and
    // edge encoder are kept (a fresh flag set would pick conv28, 64).
    let (c, err) = cli(&["--quiet", "train", "--out", o, "--resume", "--epochs", "2", "--data", d, "--no-eval"]);
    assert_eq!(c, Some(0), "{err}");
    let ck = checkpoint::load(&checkpoint::latest(&out).unwrap().unwrap()).unwrap();
    assert_eq!(ck.progress.epoch, 2);
    assert_eq!(ck.progress.step, 4, "32 images in batches of 16 give 2 steps an epoch");
    assert_eq!(ck.model.cfg.encoder, infomax::dim::EncoderSpec::Preset("edge".into()));
}

/// A run cut mid-epoch by `--steps` and resumed goes on from the next
/// batch of that epoch: edge, 48 images in batches of 8 (6 steps an epoch),
/// 3 steps + resume to 9 against 9 steps straight, every weight, BN
/// statistic and Adam moment bitwise equal; the resumed epoch's log line
/// averages only the steps it ran.
#[test]
fn a_mid_epoch_resume_continues_from_the_next_batch() {
    let data = small_data("mid-epoch-data", 48);
    let mut cfg = config(&data, "edge", Estimator::Jsd, 8);
    let run = |cfg: &TrainConfig, out: &Path, start: Start| train::train(cfg, out, start, true).unwrap();
    cfg.steps = Some(9);
    let straight_dir = tmp("mid-epoch-straight");
    let straight = run(&cfg, &straight_dir, Start::Fresh);
    let out = tmp("mid-epoch-cut");
    cfg.steps = Some(3);
    let cut = run(&cfg, &out, Start::Fresh);
    assert_eq!((cut.progress.epoch, cut.progress.batch), (0, 3));
    cfg.steps = Some(9);
    let resumed = run(&cfg, &out, Start::Resume);
    assert_eq!((resumed.progress.step, resumed.progress.epoch, resumed.progress.batch), (9, 1, 3));
    let (a, b) = (checkpoint::load(&straight.checkpoint).unwrap(), checkpoint::load(&resumed.checkpoint).unwrap());
    let (aa, ba) = (a.adam.unwrap(), b.adam.unwrap());
    assert!(bits(&a.model.params) == bits(&b.model.params), "parameters differ");
    assert!(bits(&a.model.buffers) == bits(&b.model.buffers), "BN statistics differ");
    assert!(bits(&aa.m) == bits(&ba.m) && bits(&aa.v) == bits(&ba.v), "Adam moments differ");
    // The first resumed epoch ran batches 4..6: its mean is theirs alone.
    let first = &resumed.epochs[0];
    assert_eq!((first.epoch, first.step, first.partial), (1, 6, false));
    let whole = &straight.epochs[0];
    assert_ne!(first.loss.to_bits(), whole.loss.to_bits(), "a 3-step mean, not the 6-step one");
}

/// Non-finite weights or a negative BN variance are refused by export,
/// embed and eval, naming the tensor, unless `--allow-non-finite`.
#[test]
fn non_finite_models_are_not_passed_on() {
    let data = small_data("nonfinite-data", 32);
    let out = tmp("nonfinite");
    let (c, err) = cli(&train_args(&data, &out, 1).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(c, Some(0), "{err}");
    let ck = checkpoint::latest(&out).unwrap().unwrap();
    let progress = checkpoint::load(&ck).unwrap().progress;
    let files = tmp("nonfinite-files");
    let d = data.to_str().unwrap();
    type Edit = Box<dyn Fn(&mut Dim)>;
    let cases: [(&str, Edit, &str); 2] = [
        (
            "nan",
            Box::new(|m: &mut Dim| m.tensor_mut("encoder.conv1.weight").unwrap()[3] = f32::NAN),
            "encoder.conv1.weight",
        ),
        ("negvar", Box::new(|m: &mut Dim| m.buffers[..].iter_mut().for_each(|v| *v = -1.0)), "running_var"),
    ];
    for (name, edit, tensor) in cases {
        let mut m = checkpoint::load(&ck).unwrap().model;
        edit(&mut m);
        let p = files.join(format!("{name}.safetensors"));
        checkpoint::save(&p, &m, None, &progress, &[]).unwrap();
        let p = p.to_str().unwrap();
        let x = files.join(format!("{name}-out.safetensors"));
        let x = x.to_str().unwrap();
        for args in
            [vec!["export", p, "--out", x], vec!["embed", p, "--data", d, "--out", x], vec!["eval", p, "--data", d]]
        {
            let (c, err) = cli(&args);
            assert_eq!(c, Some(1), "{args:?}: {err}");
            assert!(err.contains(tensor) && err.contains("--allow-non-finite"), "{args:?}: {err}");
            assert!(!Path::new(x).exists(), "{args:?} wrote its output");
        }
        let (c, err) = cli(&["export", p, "--out", x, "--allow-non-finite"]);
        assert_eq!(c, Some(0), "{name}: {err}");
        let _ = std::fs::remove_file(x);
    }
}

// ------------------------------------------------------------ 6. memory plan

/// A checkpoint whose encoder maps each 28×28 image to 2^14 channels (a
/// 1×1 conv: 16 384 weights, 51 MB of activations per image), then, with
/// `narrow`, back to one channel (a 412 KiB file); without, to 2^11
/// channels, whose map Y reads (a 51 MB file).
fn wide_checkpoint(dir: &Path, narrow: bool) -> PathBuf {
    use infomax::dim::{EncoderConfig, EncoderSpec, Layer};
    let c = if narrow { 1 << 14 } else { 1 << 11 };
    let wide = Layer::Conv { out: c, kernel: 1, stride: 1, padding: 0, bn: true, relu: true, pool: false };
    let mut layers = vec![wide];
    if narrow {
        layers.push(Layer::Conv { out: 1, kernel: 1, stride: 1, padding: 0, bn: true, relu: true, pool: false });
    }
    let local_layer = layers.len() - 1;
    let enc = EncoderConfig { input: [1, 28, 28], layers, local_layer, y_dim: 8, fold: None };
    let cfg = DimConfig { encoder: EncoderSpec::Custom(enc), ..DimConfig::new("conv28").mi_units(4) };
    let model = Dim::new(cfg).unwrap();
    let p = dir.join(if narrow { "wide-narrow.safetensors" } else { "wide.safetensors" });
    checkpoint::save(&p, &model, None, &Progress::default(), &[]).unwrap();
    p
}

/// The memory plan refuses, before allocating, what would not fit under
/// `--max-memory`, naming the largest item; evaluation and embedding take
/// smaller batches when that is enough. Peak RSS stays under the limit.
#[test]
fn memory_plans_refuse_or_shrink_before_allocating() {
    let data = small_data("mem-data", 32);
    let dir = tmp("mem");
    let (narrow, wide) = (wide_checkpoint(&dir, true), wide_checkpoint(&dir, false));
    let file_kib = std::fs::metadata(&narrow).unwrap().len() / 1024;
    let d = data.to_str().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let out = s(&dir.join("feats.safetensors"));
    let toml = dir.join("wide.toml");
    std::fs::write(
        &toml,
        format!(
            "batch_size = 64\nepochs = 1\n[data]\nkind = \"fashion-mnist\"\ndir = {d:?}\n[model]\nmi_units = 4\n\
             [model.encoder]\ninput = [1, 28, 28]\nlocal_layer = 0\ny_dim = 8\n\
             layers = [{{ type = \"conv\", out = 16384, kernel = 1, stride = 1, padding = 0 }}]\n"
        ),
    )
    .unwrap();
    let cap = ["--max-memory", "1G"];
    // (case, args, exit code, stderr must contain)
    let rows: Vec<(&str, Vec<String>, i32, &str)> = vec![
        (
            "eval, batch 500 asked",
            vec![
                "eval".into(),
                s(&narrow),
                "--data".into(),
                d.into(),
                "--batch-size".into(),
                "500".into(),
                "--no-baselines".into(),
            ],
            1,
            "activations at batch 500",
        ),
        (
            "embed, batch 500 asked",
            vec![
                "embed".into(),
                s(&narrow),
                "--data".into(),
                d.into(),
                "--out".into(),
                out.clone(),
                "--batch-size".into(),
                "500".into(),
            ],
            1,
            "activations at batch 500",
        ),
        (
            "eval, a 2^11×784 tap",
            vec!["eval".into(), s(&wide), "--data".into(), d.into(), "--no-baselines".into()],
            1,
            "the largest item is probe classifiers",
        ),
        (
            "embed, 32 images of a 2^11×784 tap (0.6 GiB planned)",
            vec!["embed".into(), s(&wide), "--data".into(), d.into(), "--out".into(), out.clone()],
            0,
            "peak RSS",
        ),
        (
            "train, TOML config",
            vec!["train".into(), "--config".into(), s(&toml), "--out".into(), s(&dir.join("run"))],
            1,
            "training activations at batch 64",
        ),
        (
            "eval, batch adapts",
            vec![
                "eval".into(),
                s(&narrow),
                "--data".into(),
                d.into(),
                "--no-baselines".into(),
                "--eval-epochs".into(),
                "1".into(),
            ],
            0,
            "images at a time to stay within the memory limit",
        ),
        (
            "embed, batch adapts",
            vec!["embed".into(), s(&narrow), "--data".into(), d.into(), "--out".into(), out.clone()],
            0,
            "peak RSS",
        ),
    ];
    eprintln!("checkpoint of {file_kib} KiB");
    for (case, args, code, want) in rows {
        let mut a: Vec<&str> = cap.to_vec();
        a.extend(args.iter().map(String::as_str));
        let (c, err, rss_kib) = cli_rss(&a);
        eprintln!("{case}: exit {c:?}, peak RSS {:.0} MiB", rss_kib as f64 / 1024.0);
        assert_eq!(c, Some(code), "{case}: {err}");
        assert!(err.contains(want), "{case}: {err:?} lacks {want:?}");
        assert!(rss_kib < 1 << 20, "{case}: peak RSS {rss_kib} KiB over the 1 GiB limit");
        if code == 1 {
            assert!(err.contains("more than the limit of 1.0 GiB (--max-memory)"), "{case}: {err}");
        }
    }
    // The same under half the memory: the stored features alone are over.
    let a = ["--max-memory", "512M", "embed", &s(&wide), "--data", d, "--out", &out];
    let (c, err, rss_kib) = cli_rss(&a);
    eprintln!("embed under 512M: exit {c:?}, peak RSS {:.0} MiB", rss_kib as f64 / 1024.0);
    assert_eq!(c, Some(1), "{err}");
    assert!(err.contains("the largest item is stored features of 32 images"), "{err}");
}

/// A run's log that is a device, or a sparse 2 GiB file, is refused on
/// `--resume` without being read.
#[test]
fn a_device_or_huge_log_is_refused_on_resume() {
    let data = small_data("log-data", 32);
    for (case, want) in [("dev", "not a regular file"), ("sparse", "more than the 268435456 accepted here")] {
        let out = tmp(&format!("log-{case}"));
        let (c, err) = cli(&train_args(&data, &out, 1).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(c, Some(0), "{err}");
        let log = out.join("train.jsonl");
        std::fs::remove_file(&log).unwrap();
        if case == "dev" {
            std::os::unix::fs::symlink("/dev/zero", &log).unwrap();
        } else {
            std::fs::File::create(&log).unwrap().set_len(2 << 30).unwrap();
        }
        let mut a = train_args(&data, &out, 2);
        a.push("--resume".into());
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let (c, err, rss_kib) = cli_rss(&a);
        eprintln!("log {case}: exit {c:?}, peak RSS {:.1} MiB", rss_kib as f64 / 1024.0);
        assert_eq!(c, Some(1), "{case}: {err}");
        assert!(err.contains("train.jsonl") && err.contains(want), "{case}: {err}");
        assert!(rss_kib < 1 << 20, "{case}: peak RSS {rss_kib} KiB");
    }
}

/// The default D follows the data folder itself, not its spelling: the
/// bundled subset as `data/...`, `./data/...` or an absolute path gives the
/// same model (D = 128).
#[test]
fn the_default_d_does_not_depend_on_how_the_data_folder_is_spelt() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let absolute = root.join("data/fashion-mnist-subset");
    for spelling in ["data/fashion-mnist-subset", "./data/fashion-mnist-subset", absolute.to_str().unwrap()] {
        let out = tmp(&format!("spelling-{}", spelling.len()));
        let o = Command::new(BIN)
            .current_dir(root)
            .args(["--quiet", "train", "--encoder", "edge", "--steps", "1", "--batch-size", "16", "--no-eval"])
            .args(["--no-export", "--data", spelling, "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{spelling}: {}", String::from_utf8_lossy(&o.stderr));
        let ck = checkpoint::load(&out).unwrap();
        assert_eq!(ck.model.cfg.mi_units, 128, "{spelling}");
    }
}
