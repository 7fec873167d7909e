//! Every row of `infomax::bounds` (docs/reliability.md §6): a value just
//! outside it is refused before any work starts, whether it comes from a
//! flag, a config file or a checkpoint's metadata; and the docs table lists
//! the same rows with the same ends.

mod common;

use common::scratch::Scratch;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use infomax::bounds::{self, Bound};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn tmp(name: &str) -> Scratch {
    Scratch::new("bounds", name)
}

fn cli(args: &[String]) -> (bool, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|a| a.to_string()).collect()
}

/// The base config: edge's layers spelt out (so encoder rows can be set),
/// the prior on (so checkpoints hold `prior_step`), one step of 8 images.
fn base() -> Value {
    let conv = |out: usize| json!({"type": "conv", "out": out, "kernel": 3, "stride": 2, "padding": 1});
    json!({
        "model": {
            "encoder": {
                "input": [1, 28, 28],
                "layers": [conv(16), conv(32), conv(64), {"type": "linear", "out": 256}],
                "local_layer": 1,
                "y_dim": 64
            },
            "mi_units": 16,
            "gamma": 0.1
        },
        "data": {"kind": "fashion-mnist", "dir": concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset")},
        "batch_size": 8,
        "steps": 1,
        "optimizer": {"lr": 1e-4, "beta1": 0.5, "beta2": 0.999, "eps": 1e-8}
    })
}

/// A checkpoint of the base config, trained once for the whole file.
fn base_checkpoint() -> &'static Vec<u8> {
    static CKPT: OnceLock<Vec<u8>> = OnceLock::new();
    CKPT.get_or_init(|| {
        let dir = tmp("base");
        let cfg = dir.join("base.json");
        std::fs::write(&cfg, base().to_string()).unwrap();
        let out = dir.join("run");
        let (ok, err) = cli(&s(&[
            "train",
            "-q",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-eval",
            "--no-export",
        ]));
        assert!(ok, "{err}");
        let latest = std::fs::read_to_string(out.join("latest")).unwrap();
        std::fs::read(out.join(latest.trim())).unwrap()
    })
}

/// How one row reaches the program.
struct Case {
    bound: &'static Bound,
    /// Whether the setting is an integer.
    int: bool,
    /// The command line with the value spliced in for `{}`.
    flag: Option<&'static [&'static str]>,
    /// Sets the value in a `TrainConfig` JSON.
    config: Option<fn(&mut Value, Value)>,
    /// Where in a checkpoint's metadata it is recorded.
    meta: Meta,
}

#[derive(Clone, Copy)]
enum Meta {
    /// Not recorded in a checkpoint.
    None,
    /// In `train_config` (through `config`), checked by `train --resume`.
    Train,
    /// In `model_config` (through `config` on `{"model": ...}`), checked by `eval`.
    Model,
    /// A key of `progress`, checked by `train --resume`.
    Progress(&'static str),
    /// The `prior_step` entry.
    PriorStep,
}

fn at<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    match path.split_first() {
        None => v,
        Some((k, rest)) => at(if let Ok(i) = k.parse::<usize>() { &mut v[i] } else { &mut v[*k] }, rest),
    }
}

macro_rules! set {
    ($($k:literal),+) => {
        Some(|v: &mut Value, x: Value| *at(v, &[$($k),+]) = x)
    };
}

const TRAIN: &[&str] = &["train", "-q", "--no-eval", "--no-export"];

fn cases() -> Vec<Case> {
    use Meta as M;
    let c = |bound, int, flag, config, meta| Case { bound, int, flag, config, meta };
    vec![
        c(&bounds::BATCH_SIZE, true, Some(&["--batch-size={}", "--steps", "1"][..]), set!("batch_size"), M::Train),
        c(&bounds::EPOCHS, true, Some(&["--epochs={}"]), set!("epochs"), M::Train),
        c(&bounds::STEPS, true, Some(&["--steps={}"]), set!("steps"), M::Train),
        c(&bounds::MINUTES, false, Some(&["--minutes={}"]), set!("minutes"), M::Train),
        c(&bounds::PROBE_EVERY, true, Some(&["--probe-every={}", "--steps", "1"]), set!("probe_every"), M::Train),
        c(&bounds::LR, false, Some(&["--lr={}", "--steps", "1"]), set!("optimizer", "lr"), M::Train),
        c(&bounds::BETA1, false, None, set!("optimizer", "beta1"), M::Train),
        c(&bounds::BETA2, false, None, set!("optimizer", "beta2"), M::Train),
        c(&bounds::EPS, false, None, set!("optimizer", "eps"), M::Train),
        c(&bounds::CROP, true, Some(&["--crop={}", "--steps", "1"][..]), set!("data", "crop"), M::Train),
        c(&bounds::RESIZE, true, Some(&["--resize={}", "--steps", "1"][..]), set!("data", "resize"), M::Train),
        c(
            &bounds::TEST_FRACTION,
            false,
            Some(&["--test-fraction={}", "--steps", "1"][..]),
            set!("data", "test_fraction"),
            M::Train,
        ),
        c(&bounds::MI_UNITS, true, Some(&["--mi-units={}", "--steps", "1"]), set!("model", "mi_units"), M::Model),
        c(&bounds::ALPHA, false, Some(&["--alpha={}", "--steps", "1"]), set!("model", "alpha"), M::Model),
        c(&bounds::BETA, false, Some(&["--beta={}", "--steps", "1"]), set!("model", "beta"), M::Model),
        c(&bounds::GAMMA, false, Some(&["--gamma={}", "--steps", "1"]), set!("model", "gamma"), M::Model),
        c(&bounds::PRIOR_LAMBDA, false, None, set!("model", "prior_lambda"), M::Model),
        c(
            &bounds::OCCLUSION_SIZE,
            true,
            Some(&["--occlude={}", "--steps", "1"]),
            Some(|v, x| v["model"]["occlusion"] = json!({ "size": x })),
            M::Model,
        ),
        c(
            &bounds::OCCLUSION_FILL,
            false,
            Some(&["--occlude", "4", "--occlude-fill={}", "--steps", "1"]),
            Some(|v, x| v["model"]["occlusion"] = json!({ "size": 4, "fill": x })),
            M::Model,
        ),
        c(
            &bounds::GLOBAL_CHANNELS,
            true,
            Some(&["--globals", "multi", "--global-channels={}", "--steps", "1"]),
            Some(|v, x| v["model"]["globals"] = json!({ "channels": x })),
            M::Model,
        ),
        c(
            &bounds::GLOBAL_SAMPLES,
            true,
            Some(&["--globals", "multi", "--global-samples={}", "--steps", "1"]),
            Some(|v, x| v["model"]["globals"] = json!({ "samples": x })),
            M::Model,
        ),
        c(&bounds::INPUT_CHANNELS, true, None, set!("model", "encoder", "input", "0"), M::Model),
        c(&bounds::INPUT_SIDE, true, None, set!("model", "encoder", "input", "1"), M::Model),
        c(
            &bounds::LAYERS,
            true,
            None,
            Some(|v, x| {
                let n = x.as_u64().unwrap() as usize;
                v["model"]["encoder"]["layers"] = Value::Array(vec![json!({"type": "linear", "out": 8}); n]);
                v["model"]["encoder"]["local_layer"] = json!(0);
            }),
            M::Model,
        ),
        c(&bounds::LAYER_WIDTH, true, None, set!("model", "encoder", "layers", "0", "out"), M::Model),
        c(&bounds::Y_DIM, true, None, set!("model", "encoder", "y_dim"), M::Model),
        c(&bounds::KERNEL, true, None, set!("model", "encoder", "layers", "0", "kernel"), M::Model),
        c(&bounds::STRIDE, true, None, set!("model", "encoder", "layers", "0", "stride"), M::Model),
        c(&bounds::PADDING, true, None, set!("model", "encoder", "layers", "0", "padding"), M::Model),
        c(
            &bounds::FOLD,
            true,
            None,
            Some(|v, x| v["model"]["encoder"]["fold"] = json!({ "crop": x, "stride": 4, "layer": 0 })),
            M::Model,
        ),
        c(&bounds::EVAL_EPOCHS, true, Some(&["train", "-q", "--eval-epochs={}", "--steps", "1"]), None, M::None),
        c(&bounds::ENCODE_BATCH, true, Some(&["eval", "{ckpt}", "--batch-size={}"]), None, M::None),
        c(&bounds::THREADS, true, Some(&["--threads={}", "train", "-q", "--steps", "1"]), None, M::None),
        c(&bounds::MAX_MEMORY, true, Some(&["--max-memory={}", "train", "-q", "--steps", "1"]), None, M::None),
        c(&bounds::PROGRESS_STEP, true, None, None, M::Progress("step")),
        c(&bounds::PROGRESS_EPOCH, true, None, None, M::Progress("epoch")),
        c(&bounds::PROGRESS_BATCH, true, None, None, M::Progress("batch")),
        c(&bounds::PROGRESS_WALL, false, None, None, M::Progress("wall_s")),
        c(&bounds::PRIOR_STEP, true, None, None, M::PriorStep),
    ]
}

/// Values just outside the row: below its lower end (when one exists for
/// the type) and above its upper end.
fn outside(b: &Bound, int: bool) -> Vec<Value> {
    let mut v = Vec::new();
    let above = if b.hi >= 2f64.powi(50) {
        b.hi * 2.0
    } else if b.hi_open {
        b.hi
    } else {
        b.hi + 1.0
    };
    if int {
        if b.lo >= 1.0 {
            v.push(json!(b.lo as u64 - 1));
        }
        v.push(json!(above as u64));
    } else {
        v.push(json!(if b.lo_open { b.lo } else { b.lo - 1.0 }));
        v.push(json!(above));
    }
    v
}

fn text(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        _ => unreachable!(),
    }
}

/// `stderr` names the row, and the out folder was never made.
fn refused(what: &str, b: &Bound, (ok, err): (bool, String), out: &Path) {
    assert!(!ok, "{what}: {} accepted", b.name);
    assert!(err.contains(b.name), "{what}: the error must name {}: {err}", b.name);
    assert!(err.contains("out of range"), "{what}: {err}");
    assert!(!out.join("latest").exists(), "{what}: {} trained before refusing", b.name);
}

#[test]
fn every_row_is_refused_from_a_flag() {
    let dir = tmp("flags");
    let ckpt = dir.join("ckpt.safetensors");
    std::fs::write(&ckpt, base_checkpoint()).unwrap();
    let mut seen = 0;
    for c in cases() {
        let Some(flag) = c.flag else { continue };
        for v in outside(c.bound, c.int) {
            let out = dir.join(format!("out-{seen}"));
            let mut args: Vec<String> =
                flag.iter().map(|a| a.replace("{}", &text(&v)).replace("{ckpt}", ckpt.to_str().unwrap())).collect();
            if !flag.contains(&"eval") && !flag.contains(&"train") {
                args = TRAIN.iter().map(|a| a.to_string()).chain(args).collect();
            }
            if args.iter().any(|a| a == "train") {
                args.extend(["--out".into(), out.to_str().unwrap().into()]);
            }
            let r = cli(&args);
            if let Some(f) = c.bound.flag {
                assert!(r.1.contains(f), "{args:?}: the error must name {f}: {}", r.1);
            }
            refused(&format!("{args:?}"), c.bound, r, &out);
            seen += 1;
        }
    }
    assert!(seen >= 30, "{seen} flag cases");
}

#[test]
fn every_row_is_refused_from_a_config_file() {
    let dir = tmp("configs");
    let mut seen = 0;
    for c in cases() {
        let Some(set) = c.config else { continue };
        for v in outside(c.bound, c.int) {
            let mut cfg = base();
            set(&mut cfg, v.clone());
            let (path, out) = (dir.join(format!("c{seen}.json")), dir.join(format!("out-{seen}")));
            std::fs::write(&path, cfg.to_string()).unwrap();
            let mut args = s(TRAIN);
            args.extend([
                "--config".into(),
                path.to_str().unwrap().into(),
                "--out".into(),
                out.to_str().unwrap().into(),
            ]);
            refused(&format!("{} = {v}", c.bound.name), c.bound, cli(&args), &out);
            seen += 1;
        }
    }
    assert!(seen >= 50, "{seen} config cases");
}

type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// The base checkpoint with its metadata edited.
fn with_metadata(edit: impl FnOnce(&mut HashMap<String, String>)) -> Vec<u8> {
    let bytes = base_checkpoint();
    let (_, md) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    edit(&mut meta);
    let st = SafeTensors::deserialize(bytes).unwrap();
    let tensors: Vec<Tensor> =
        st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn edit_json(meta: &mut HashMap<String, String>, key: &str, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&meta[key]).unwrap();
    f(&mut v);
    meta.insert(key.into(), v.to_string());
}

#[test]
fn every_row_is_refused_from_checkpoint_metadata() {
    let dir = tmp("metadata");
    // The unedited checkpoint resumes: the refusals below are the edits'.
    let run = dir.join("control");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("c.safetensors"), base_checkpoint()).unwrap();
    std::fs::write(run.join("latest"), "c.safetensors\n").unwrap();
    let mut args = s(TRAIN);
    args.extend(["--resume".into(), "--steps".into(), "2".into(), "--out".into(), run.to_str().unwrap().into()]);
    let (ok, err) = cli(&args);
    assert!(ok, "the unedited checkpoint must resume: {err}");
    let mut seen = 0;
    for c in cases() {
        for v in outside(c.bound, c.int) {
            let bytes = match c.meta {
                Meta::None => continue,
                Meta::Train => with_metadata(|m| edit_json(m, "train_config", |t| (c.config.unwrap())(t, v.clone()))),
                Meta::Model => with_metadata(|m| {
                    edit_json(m, "model_config", |t| {
                        let mut wrapped = json!({ "model": t.take() });
                        (c.config.unwrap())(&mut wrapped, v.clone());
                        *t = wrapped["model"].take();
                    })
                }),
                Meta::Progress(key) => with_metadata(|m| edit_json(m, "progress", |p| p[key] = v.clone())),
                Meta::PriorStep => with_metadata(|m| {
                    m.insert("prior_step".into(), text(&v));
                }),
            };
            let run = dir.join(format!("run-{seen}"));
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("c.safetensors"), &bytes).unwrap();
            std::fs::write(run.join("latest"), "c.safetensors\n").unwrap();
            let run_s = run.to_str().unwrap().to_string();
            let args = match c.meta {
                Meta::Model => s(&["eval", "-q", &run_s, "--eval-epochs", "1", "--no-baselines"]),
                _ => {
                    let mut a = s(TRAIN);
                    a.extend(s(&["--resume", "--steps", "2", "--out", &run_s]));
                    a
                }
            };
            let (ok, err) = cli(&args);
            let what = format!("metadata {} = {v}", c.bound.name);
            assert!(!ok, "{what}: accepted");
            assert!(err.contains(c.bound.name) && err.contains("out of range"), "{what}: {err}");
            assert!(err.contains("c.safetensors"), "{what}: the error must name the checkpoint: {err}");
            assert_eq!(std::fs::read(run.join("c.safetensors")).unwrap(), bytes, "{what}: checkpoint changed");
            assert!(!run.join("train.jsonl").exists(), "{what}: training started");
            seen += 1;
        }
    }
    assert!(seen >= 50, "{seen} metadata cases");
}

#[test]
fn every_row_has_a_case_and_a_docs_row_with_its_ends() {
    let cases = cases();
    for b in bounds::ALL {
        let c = cases.iter().find(|c| c.bound.name == b.name);
        let c = c.unwrap_or_else(|| panic!("{} has no case", b.name));
        assert!(
            c.flag.is_some() || c.config.is_some() || !matches!(c.meta, Meta::None),
            "{} reaches the program no way",
            b.name
        );
    }
    assert_eq!(cases.len(), bounds::ALL.len(), "a case per row, no more");
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reliability.md")).unwrap();
    for b in bounds::ALL {
        let line = docs
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", b.name)))
            .unwrap_or_else(|| panic!("docs/reliability.md has no row for `{}`", b.name));
        assert!(line.contains(&format!("`{b}`")), "docs row of {} must give {b}: {line}", b.name);
    }
}
