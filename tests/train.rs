//! The trainer end to end on a small slice of the bundled data: exact
//! resume, checkpoints, fine-tuning with frozen layers, and the CLI's
//! handling of bad input.

mod common;

use common::scratch::Scratch;
use std::path::Path;
use std::process::Command;

use infomax::data::{self, Split};
use infomax::dim::{DimConfig, Estimator, HeadKind, MultiGlobal, Occlusion};
use infomax::train::{self, DataConfig, DatasetKind, OptimConfig, Start, TrainConfig, TrainError, checkpoint};

fn tmp(name: &str) -> Scratch {
    Scratch::new("test", name)
}

fn small_data(name: &str) -> Scratch {
    let dir = tmp(name);
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    common::write_idx(&dir, "train", &data::load_mnist_dir(&bundled, Split::Train).unwrap(), 320);
    common::write_idx(&dir, "t10k", &data::load_mnist_dir(&bundled, Split::Test).unwrap(), 100);
    dir
}

fn config(data: &Path, epochs: u64, est: Estimator) -> TrainConfig {
    TrainConfig {
        model: DimConfig::new("edge").mi_units(32).estimator(est).seed(3),
        data: DataConfig::new(DatasetKind::FashionMnist, data),
        batch_size: 32,
        epochs: Some(epochs),
        minutes: None,
        steps: None,
        optimizer: OptimConfig::default(),
        seed: 11,
        freeze: vec![],
        log_grad_norm: true,
        probe_every: None,
    }
}

#[test]
fn resume_after_an_epoch_is_bitwise_identical() {
    let data = small_data("resume-data");
    for est in [Estimator::Jsd, Estimator::Nce] {
        let (a, b) = (tmp("resume-a"), tmp("resume-b"));
        let full = train::train(&config(&data, 3, est), &a, Start::Fresh, true).unwrap();
        let first = train::train(&config(&data, 1, est), &b, Start::Fresh, true).unwrap();
        assert_eq!(first.progress.epoch, 1);
        assert_ne!(first.model.params, full.model.params, "one epoch must differ from three");
        let resumed = train::train(&config(&data, 3, est), &b, Start::Resume, true).unwrap();
        assert_eq!(resumed.progress.step, full.progress.step);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert!(bits(&resumed.model.params) == bits(&full.model.params), "{est:?}: parameters differ after resume");
        assert!(
            bits(&resumed.model.buffers) == bits(&full.model.buffers),
            "{est:?}: BN statistics differ after resume"
        );
        // One epoch line per epoch (and a window line per step: 10 steps an
        // epoch), the resumed run appending to the first.
        let log = std::fs::read_to_string(b.join("train.jsonl")).unwrap();
        let epochs: Vec<&str> = log.lines().filter(|l| !l.contains("\"kind\"")).collect();
        assert_eq!((epochs.len(), log.lines().count()), (3, 33));
        assert!(epochs.iter().all(|l| l.contains("\"grad_norm\"") && l.contains("\"pos_mean\"")));
    }
}

#[test]
fn resume_is_exact_with_global_dim_and_prior_matching() {
    let data = small_data("resume-gp-data");
    let cfg = |epochs| {
        let mut c = config(&data, epochs, Estimator::Jsd);
        c.model = c.model.weights(0.5, 1.0, 0.1);
        c
    };
    let (a, b) = (tmp("resume-gp-a"), tmp("resume-gp-b"));
    let full = train::train(&cfg(2), &a, Start::Fresh, true).unwrap();
    train::train(&cfg(1), &b, Start::Fresh, true).unwrap();
    let resumed = train::train(&cfg(2), &b, Start::Resume, true).unwrap();
    assert_eq!(resumed.model.params, full.model.params);
    let (pa, pb) = (full.model.prior.as_ref().unwrap(), resumed.model.prior.as_ref().unwrap());
    assert_eq!(pa.params(), pb.params(), "discriminator differs after resume");
    assert_eq!(pa.adam_state(), pb.adam_state());
    assert!(full.model.table.get("global_dim.y.weight").is_some());
    let ck = checkpoint::load(&full.checkpoint).unwrap();
    assert_eq!(ck.model.prior.as_ref().unwrap().params(), pa.params());
}

#[test]
fn resume_is_exact_with_the_concat_head() {
    // The concat head draws its negative pairing from (seed, step): a resumed
    // run must pair, and so end, exactly as an uninterrupted one.
    let data = small_data("resume-concat-data");
    let cfg = |epochs| {
        let mut c = config(&data, epochs, Estimator::Nce);
        c.model = c.model.head(HeadKind::Concat);
        c
    };
    let (a, b) = (tmp("resume-concat-a"), tmp("resume-concat-b"));
    let full = train::train(&cfg(2), &a, Start::Fresh, true).unwrap();
    train::train(&cfg(1), &b, Start::Fresh, true).unwrap();
    let resumed = train::train(&cfg(2), &b, Start::Resume, true).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&resumed.model.params) == bits(&full.model.params), "parameters differ after resume");
    assert!(full.model.table.get("local_head.concat.l1.weight").is_some());
}

#[test]
fn resume_is_exact_with_occlusion_and_multiple_globals() {
    // The occlusion squares and the sampled globals are drawn from (seed,
    // step), and the occluded pass leaves the BN running statistics alone:
    // a resumed run must end exactly as an uninterrupted one.
    let data = small_data("resume-variants-data");
    // One model with both (each step draws squares and globals) keeps the
    // test short; the second encoder pass makes occlusion the costlier part.
    let cfg = |epochs| {
        let mut c = config(&data, epochs, Estimator::Nce);
        c.model = c.model.occlusion(10).multi_globals(MultiGlobal { channels: Some(16), samples: Some(1) });
        c
    };
    let (a, b) = (tmp("resume-variants-a"), tmp("resume-variants-b"));
    let full = train::train(&cfg(2), &a, Start::Fresh, true).unwrap();
    train::train(&cfg(1), &b, Start::Fresh, true).unwrap();
    let resumed = train::train(&cfg(2), &b, Start::Resume, true).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&resumed.model.params) == bits(&full.model.params), "parameters differ after resume");
    assert!(bits(&resumed.model.buffers) == bits(&full.model.buffers), "BN statistics differ after resume");
    // The checkpoint carries the variant's config and loads into the same model.
    let ck = checkpoint::load(&full.checkpoint).unwrap();
    assert_eq!(ck.model.cfg, full.model.cfg);
    assert!(ck.model.cfg.occlusion.is_some());
    assert_eq!(ck.model.params, full.model.params);
    assert_eq!(ck.model.globals(), 25);
    assert!(ck.model.table.get("multi_global.conv1.weight").is_some());
}

#[test]
fn variant_configs_are_checked_and_errors_name_the_field() {
    let parse = |model: &str| {
        let text = format!(
            "epochs = 1\n[model]\nencoder = \"conv28\"\n{model}\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n"
        );
        TrainConfig::parse(&text, false)
    };
    let ok = parse("[model.occlusion]\nsize = 14\n[model.globals]\nsamples = 1").unwrap();
    assert_eq!(ok.model.occlusion, Some(Occlusion { size: 14, fill: 0.0 }));
    assert_eq!(ok.model.globals, Some(MultiGlobal { channels: None, samples: Some(1) }));
    for (model, field) in [
        ("[model.occlusion]\nsize = 29", "occlusion.size"),
        ("[model.occlusion]\nsize = 0", "occlusion.size"),
        ("[model.globals]\nsamples = 0", "globals.samples"),
        ("[model.globals]\nsamples = 26", "globals.samples"),
        ("[model.globals]\nchannels = 0", "globals.channels"),
        ("head = \"concat\"\n[model.globals]", "globals"),
        ("[model.occlusion]\nsize = 4\nshape = \"disc\"", "shape"),
    ] {
        let e = parse(model).err().unwrap_or_else(|| panic!("{model} was accepted"));
        assert!(e.to_string().contains(field), "{model}: {e}");
    }
    // A model without the variants serialises as before (no new keys), so
    // older readers still load its checkpoints.
    let plain = serde_json::to_string(&DimConfig::new("conv28")).unwrap();
    assert!(!plain.contains("occlusion") && !plain.contains("globals"), "{plain}");
}

#[test]
fn cli_trains_evaluates_and_exports_a_variant_model() {
    let bin = env!("CARGO_BIN_EXE_infomax");
    let data = small_data("cli-variant-data");
    let out = tmp("cli-variant");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let common = ["--data", d, "--encoder", "edge", "--mi-units", "32", "--batch-size", "32", "--quiet"];
    let r = run(&[
        &["train", "--steps", "3", "--no-eval", "--no-export", "--out", o],
        &common[..],
        &["--occlude", "14", "--globals", "multi", "--global-samples", "1"],
    ]
    .concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let ck = checkpoint::latest(&out).unwrap().unwrap();
    let loaded = checkpoint::load(&ck).unwrap();
    assert_eq!(loaded.model.cfg.occlusion, Some(Occlusion { size: 14, fill: 0.0 }));
    assert_eq!(loaded.model.cfg.globals, Some(MultiGlobal { channels: None, samples: Some(1) }));
    // Evaluation runs the encoder's conv/fc/Y taps; export takes the encoder only.
    let ck = ck.to_str().unwrap();
    let r = run(&["eval", ck, "--data", d, "--eval-epochs", "1", "--no-baselines", "--quiet"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stdout).contains("Test accuracy"));
    let enc = out.join("enc.safetensors");
    let r = run(&["export", ck, "-o", enc.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&enc).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    assert!(names.iter().any(|n| n.contains("conv1")), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("multi_global") || n.contains("head")), "{names:?}");
    // Bad variant flags: typed errors naming the setting.
    let r = run(&[&["train", "--steps", "1", "--out", o], &common[..], &["--occlude", "40"]].concat());
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("occlusion.size"));
    let r = run(&[&["train", "--steps", "1", "--out", o], &common[..], &["--global-samples", "1"]].concat());
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("--globals multi"));
}

#[test]
fn checkpoints_round_trip_and_latest_names_a_whole_file() {
    let data = small_data("ckpt-data");
    let out = tmp("ckpt");
    let s = train::train(&config(&data, 2, Estimator::Jsd), &out, Start::Fresh, true).unwrap();
    let latest = checkpoint::latest(&out).unwrap().unwrap();
    assert_eq!(latest, s.checkpoint);
    assert!(latest.ends_with("epoch-0002.safetensors"));
    // Only the newest epoch checkpoint is kept.
    assert!(!out.join("epoch-0001.safetensors").exists());
    let loaded = checkpoint::load(&latest).unwrap();
    assert_eq!(loaded.model.params, s.model.params);
    assert_eq!(loaded.model.buffers, s.model.buffers);
    assert_eq!(loaded.progress.epoch, 2);
    assert!(loaded.adam.is_some());
    assert!(loaded.metadata.contains_key("train_config"));
    // PyTorch names with BN statistics, as load_state_dict expects.
    for name in ["encoder.conv1.weight", "encoder.bn1.running_var", "encoder.out.bias", "local_head.ln.weight"] {
        assert!(loaded.model.tensor(name).is_some(), "{name}");
    }
    // Corrupt files are refused with the path in the message.
    let bad = out.join("bad.safetensors");
    std::fs::write(&bad, b"not a checkpoint").unwrap();
    let e = checkpoint::load(&bad).err().unwrap();
    assert!(matches!(e, TrainError::Format { .. }) && e.to_string().contains("bad.safetensors"), "{e}");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    assert!(checkpoint::load(&bad).is_err());
    // A fresh run in the same folder is refused and changes nothing; once
    // the earlier run is moved aside, it starts a fresh log.
    let log = std::fs::read(out.join("train.jsonl")).unwrap();
    let e = train::train(&config(&data, 1, Estimator::Jsd), &out, Start::Fresh, true).err().unwrap();
    assert!(matches!(e, TrainError::RunExists { .. }), "{e}");
    assert_eq!(std::fs::read(out.join("train.jsonl")).unwrap(), log);
    let aside = train::move_earlier_run_aside(&out).unwrap().unwrap();
    assert_eq!(std::fs::read(aside.join("train.jsonl")).unwrap(), log);
    train::train(&config(&data, 1, Estimator::Jsd), &out, Start::Fresh, true).unwrap();
    let fresh = std::fs::read_to_string(out.join("train.jsonl")).unwrap();
    assert_eq!(fresh.lines().filter(|l| !l.contains("\"kind\"")).count(), 1);
}

#[test]
fn fine_tuning_keeps_frozen_layers_fixed() {
    let data = small_data("ft-data");
    let pre = tmp("ft-pre");
    let s = train::train(&config(&data, 1, Estimator::Jsd), &pre, Start::Fresh, true).unwrap();
    let mut cfg = config(&data, 1, Estimator::Nce);
    cfg.freeze = vec!["encoder.conv1".into(), "encoder.bn1".into()];
    let ft_dir = tmp("ft");
    let ft = train::train(&cfg, &ft_dir, Start::From(s.checkpoint.clone()), true).unwrap();
    for name in ["encoder.conv1.weight", "encoder.bn1.weight", "encoder.bn1.bias"] {
        assert_eq!(ft.model.tensor(name), s.model.tensor(name), "{name} must stay frozen");
    }
    assert_ne!(ft.model.tensor("encoder.conv2.weight"), s.model.tensor("encoder.conv2.weight"));
}

#[test]
fn bad_configs_are_typed_errors() {
    let data = small_data("cfg-data");
    let mut cfg = config(&data, 1, Estimator::Jsd);
    cfg.batch_size = 1;
    let e = train::train(&cfg, &tmp("cfg1"), Start::Fresh, true).err().unwrap();
    assert!(
        matches!(e, TrainError::Model(infomax::Error::OutOfRange { bound, .. }) if *bound == infomax::bounds::BATCH_SIZE),
        "{e:?}"
    );
    let mut cfg = config(&data, 1, Estimator::Jsd);
    cfg.epochs = None;
    assert!(matches!(train::train(&cfg, &tmp("cfg2"), Start::Fresh, true), Err(TrainError::Config(_))));
    let mut cfg = config(&data, 1, Estimator::Jsd);
    cfg.model = DimConfig::new("conv32");
    let e = train::train(&cfg, &tmp("cfg3"), Start::Fresh, true).err().unwrap();
    assert!(e.to_string().contains("expects 3×32×32"), "{e}");
    let mut cfg = config(&data, 1, Estimator::Jsd);
    cfg.data.dir = data.join("missing");
    let e = train::train(&cfg, &tmp("cfg4"), Start::Fresh, true).err().unwrap();
    assert!(matches!(e, TrainError::Data(_)) && e.to_string().contains("missing"), "{e}");
    assert!(matches!(
        train::train(&config(&data, 1, Estimator::Jsd), &tmp("cfg5"), Start::Resume, true),
        Err(TrainError::Config(_))
    ));
    // Config files: unknown keys and impossible shapes are refused.
    let dir = tmp("cfg-files");
    let f = dir.join("c.toml");
    std::fs::write(&f, "batch_size = 64\nepochs = 1\nbogus = 3\n[model]\nencoder = \"conv28\"\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n").unwrap();
    let e = TrainConfig::from_file(&f).err().unwrap();
    assert!(e.to_string().contains("bogus"), "{e}");
    std::fs::write(
        &f,
        "epochs = 1\n[model]\nencoder = \"conv28\"\nmi_units = 0\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n",
    )
    .unwrap();
    assert!(TrainConfig::from_file(&f).is_err());
    std::fs::write(&f, "epochs = 1\n[model]\nencoder = \"conv99\"\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n")
        .unwrap();
    assert!(TrainConfig::from_file(&f).err().unwrap().to_string().contains("unknown preset"));
    std::fs::write(
        &f,
        "epochs = 1\n[model.encoder]\ninput = [1, 4, 4]\nlayers = [{ type = \"conv\", out = 4, kernel = 9, stride = 1, padding = 0 }]\nlocal_layer = 0\ny_dim = 8\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n",
    )
    .unwrap();
    assert!(TrainConfig::from_file(&f).err().unwrap().to_string().contains("kernel is larger"));
}

#[test]
fn cli_reports_bad_input_with_nonzero_exit() {
    let bin = env!("CARGO_BIN_EXE_infomax");
    let out = Command::new(bin).args(["train", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
    let out = Command::new(bin).args(["train", "--data", "/nonexistent/dir", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dir"), "{err}");
    let out = Command::new(bin).args(["train", "--estimator", "mine"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).args(["eval", "/nonexistent.safetensors"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(bin).args(["--threads", "0", "train"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Deep InfoMax"));
}

#[test]
fn bn_recalibration_is_the_cumulative_average_of_batch_statistics() {
    // Layer 1 of `edge` is conv → BN: after a pass of two equal batches the
    // running mean must be the average of the two batch means and the
    // running variance the average of the two unbiased batch variances,
    // computed here from the conv output of the plain serial kernel.
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let full = data::load_mnist_dir(&bundled, Split::Test).unwrap();
    let n = 40;
    let ds = data::Dataset::new(full.images[..n * 784].to_vec(), None, 1, 28, 28, 10).unwrap();
    let mut model = infomax::dim::Dim::new(DimConfig::new("edge").mi_units(32).seed(5)).unwrap();
    train::recalibrate_bn(&mut model, &ds, n / 2).unwrap();

    let w = model.tensor("encoder.conv1.weight").unwrap().to_vec();
    let c = 16;
    let s = infomax::kernels::Conv2dShape::new(n / 2, 1, (28, 28), c, 3, 2, 1);
    let (mut want_m, mut want_v) = (vec![0f64; c], vec![0f64; c]);
    for half in 0..2 {
        let idx: Vec<usize> = (half * n / 2..(half + 1) * n / 2).collect();
        let mut x = vec![0f32; idx.len() * 784];
        ds.write_batch(&idx, &mut x).unwrap();
        let mut y = vec![0f32; n / 2 * c * 196];
        let mut scratch = vec![0f32; s.forward_scratch_len().unwrap()];
        infomax::kernels::conv2d_forward(
            &s,
            &x,
            infomax::kernels::ConvParams { w: &w, bias: None },
            infomax::kernels::ConvOut { y: &mut y, cols: &mut scratch },
        )
        .unwrap();
        for ch in 0..c {
            let vals: Vec<f64> = (0..n / 2)
                .flat_map(|i| y[(i * c + ch) * 196..(i * c + ch + 1) * 196].to_vec())
                .map(f64::from)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / (vals.len() - 1) as f64;
            want_m[ch] += m / 2.0;
            want_v[ch] += v / 2.0;
        }
    }
    let (rm, rv) =
        (model.tensor("encoder.bn1.running_mean").unwrap(), model.tensor("encoder.bn1.running_var").unwrap());
    for ch in 0..c {
        assert!((f64::from(rm[ch]) - want_m[ch]).abs() <= 1e-5 * want_m[ch].abs().max(1e-3), "mean[{ch}]");
        assert!((f64::from(rv[ch]) - want_v[ch]).abs() <= 1e-5 * want_v[ch].abs().max(1e-3), "var[{ch}]");
    }
}

#[test]
fn eval_scores_the_recalibrated_baseline_on_y_unless_asked_for_every_tap() {
    use infomax::dim::Dim;
    use infomax::eval::EvalConfig;
    use infomax::train::evaluate::evaluate_encoder_taps;
    let data = small_data("baseline-taps-data");
    let (train, test) =
        (data::load_mnist_dir(&data, Split::Train).unwrap(), data::load_mnist_dir(&data, Split::Test).unwrap());
    let mut model = Dim::new(DimConfig::new("edge").mi_units(32)).unwrap();
    let cfg = EvalConfig { epochs: 1, ..EvalConfig::default() };
    let taps = |r: &infomax::train::evaluate::Report| r.taps.iter().map(|t| t.tap.clone()).collect::<Vec<_>>();
    let all = evaluate_encoder_taps("m", &mut model, &train, &test, &cfg, &["conv", "fc", "y"]).unwrap();
    assert_eq!(taps(&all), ["conv", "fc", "y"]);
    let y = evaluate_encoder_taps("m", &mut model, &train, &test, &cfg, &["y"]).unwrap();
    assert_eq!(taps(&y), ["y"]);
    // Same classifier seed for the tap either way: the same Y row.
    assert_eq!(y.taps[0], all.taps[2]);
    let e = evaluate_encoder_taps("m", &mut model, &train, &test, &cfg, &["pixels"]).unwrap_err();
    assert!(matches!(e, TrainError::Config(_)) && e.to_string().contains("pixels"), "{e}");

    // The CLI: Y only by default, every tap with --full-baselines.
    let bin = env!("CARGO_BIN_EXE_infomax");
    let out = tmp("baseline-taps");
    let (d, o) = (data.to_str().unwrap(), out.to_str().unwrap());
    let run = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let common = ["--data", d, "--encoder", "edge", "--mi-units", "32", "--batch-size", "32", "--quiet"];
    let r = run(&[&["train", "--steps", "2", "--no-eval", "--no-export", "--out", o], &common[..]].concat());
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let ck = checkpoint::latest(&out).unwrap().unwrap();
    let ck = ck.to_str().unwrap();
    let rows = |extra: &[&str]| {
        let r = run(&[
            &["eval", ck, "--data", d, "--eval-epochs", "1", "--few-draws", "0", "--baselines", "--quiet"],
            extra,
        ]
        .concat());
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        let text = String::from_utf8_lossy(&r.stdout).into_owned();
        let recal: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("| untrained (BN stats from data) |"))
            .map(|l| l.split('|').nth(2).unwrap().trim().to_owned())
            .collect();
        assert!(text.contains("| untrained (BN default stats) | conv |"), "{text}");
        assert!(text.contains("| raw pixels | pixels |"), "{text}");
        recal
    };
    assert_eq!(rows(&[]), ["y"]);
    assert_eq!(rows(&["--full-baselines"]), ["conv", "fc", "y"]);
}

#[test]
fn cli_mi_units_default_is_small_on_the_bundled_subset_only() {
    let bin = env!("CARGO_BIN_EXE_infomax");
    let other = small_data("mi-default-data");
    let out = tmp("mi-default");
    let o = out.to_str().unwrap();
    let d_of = |extra: &[&str]| {
        let _ = std::fs::remove_dir_all(&out);
        let args =
            [&["train", "--steps", "1", "--batch-size", "8", "--no-eval", "--no-export", "--quiet", "--out", o], extra]
                .concat();
        let r = Command::new(bin).args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        checkpoint::load(&checkpoint::latest(&out).unwrap().unwrap()).unwrap().model.cfg.mi_units
    };
    assert_eq!(d_of(&[]), 128);
    assert_eq!(d_of(&["--data", other.to_str().unwrap()]), 512);
    assert_eq!(d_of(&["--mi-units", "64"]), 64);
}

/// `probe_every`: k-NN lines in train.jsonl at step 0 and every N steps,
/// without changing the training by a bit; a resume keeps the lines up to
/// its checkpoint and writes the same ones after it; the probe at the last
/// step scores what `eval` scores for that checkpoint's k-NN on Y.
#[test]
fn knn_probes_log_a_curve_and_leave_training_unchanged() {
    let data = small_data("probe-data");
    let probed = |epochs| TrainConfig { probe_every: Some(5), ..config(&data, epochs, Estimator::Jsd) };
    let (plain, a, b) = (tmp("probe-plain"), tmp("probe-a"), tmp("probe-b"));
    let without = train::train(&config(&data, 3, Estimator::Jsd), &plain, Start::Fresh, true).unwrap();
    let with = train::train(&probed(3), &a, Start::Fresh, true).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert!(bits(&with.model.params) == bits(&without.model.params), "probing changed the weights");
    assert!(bits(&with.model.buffers) == bits(&without.model.buffers), "probing changed the BN statistics");

    let windows = |dir: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.join("train.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["kind"] == "window")
            .collect()
    };
    let lines = windows(&a);
    let straight: Vec<serde_json::Value> = lines.iter().filter(|v| v.get("knn").is_some()).cloned().collect();
    // 3 epochs of 10 steps: probes at 0, 5, ..., 30.
    let steps: Vec<u64> = straight.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 5, 10, 15, 20, 25, 30]);
    for v in &straight {
        let knn = v["knn"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&knn) && v["queries"] == 100 && v["bank"] == 320, "{v}");
        assert_eq!(v.get("loss").is_some(), v["step"] != 0, "window means from the first step on: {v}");
    }
    // A window line every step here (an epoch of 10 steps), each the mean
    // of its one step; the epoch lines' means are the means of their ten.
    assert_eq!(lines.len(), 31);
    let epoch_lines: Vec<train::EpochLog> = std::fs::read_to_string(a.join("train.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"kind\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for e in &epoch_lines {
        let of_epoch: Vec<f64> = lines
            .iter()
            .filter(|v| {
                let s = v["step"].as_u64().unwrap();
                s > e.step - 10 && s <= e.step
            })
            .map(|v| v["loss"].as_f64().unwrap())
            .collect();
        let mean = of_epoch.iter().sum::<f64>() / of_epoch.len() as f64;
        assert!(of_epoch.len() == 10 && (mean - e.loss).abs() < 1e-12, "epoch {}: {mean} vs {}", e.epoch, e.loss);
    }

    // A run stopped after one epoch (step 10) and resumed: the same lines.
    train::train(&probed(1), &b, Start::Fresh, true).unwrap();
    train::train(&probed(3), &b, Start::Resume, true).unwrap();
    let resumed = windows(&b);
    let strip = |vs: &[serde_json::Value]| -> Vec<serde_json::Value> {
        vs.iter()
            .map(|v| {
                let mut v = v.clone();
                for k in ["wall_s", "probe_s"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&resumed), strip(&lines));

    // The last probe against `eval` on the final checkpoint (its k-NN of Y).
    let json = a.join("e.json");
    let o = Command::new(env!("CARGO_BIN_EXE_infomax"))
        .args(["eval", a.to_str().unwrap(), "--eval-epochs", "1", "--few-draws", "0", "--out"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let eval: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let y = eval[0]["taps"].as_array().unwrap().iter().find(|t| t["tap"] == "y").unwrap();
    assert_eq!(y["knn"], straight.last().unwrap()["knn"], "{y}");
}

/// A short training run gives the same bits with every micro-kernel this
/// CPU has (`INFOMAX_KERNEL` caps the dispatch): AVX-512, AVX2 and the
/// portable kernels keep one FMA chain per element, so a run and its resume
/// are exact across Zen 3 (AVX2 only) and Zen 4/5 (AVX-512) machines.
#[test]
fn every_kernel_trains_the_same_bits() {
    use infomax::kernels::cpu;
    let bin = env!("CARGO_BIN_EXE_infomax");
    let data = small_data("kernels-data");
    let d = data.to_str().unwrap();
    let f = cpu::features();
    let mut caps = vec!["portable"];
    if f.avx2_fma() {
        caps.push("avx2-fma");
    } else {
        eprintln!("every_kernel_trains_the_same_bits: avx2-fma skipped, this CPU lacks AVX2 + FMA");
    }
    if f.avx512f {
        caps.push("avx512");
    } else {
        eprintln!("every_kernel_trains_the_same_bits: avx512 skipped, this CPU lacks AVX-512 F");
    }
    let mut runs = Vec::new();
    for cap in &caps {
        let out = tmp(&format!("kernels-{cap}"));
        let args = ["train", "--steps", "4", "--no-eval", "--no-export", "--no-probe", "--quiet", "--data", d];
        let more = ["--encoder", "conv28", "--mi-units", "64", "--batch-size", "32", "--out", out.to_str().unwrap()];
        let r = Command::new(bin).args(args).args(more).env(cpu::KERNEL_ENV, cap).output().unwrap();
        assert!(r.status.success(), "{cap}: {}", String::from_utf8_lossy(&r.stderr));
        let ck = checkpoint::load(&checkpoint::latest(&out).unwrap().unwrap()).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        runs.push((cap, bits(&ck.model.params), bits(&ck.model.buffers), out));
    }
    let (cap0, p0, b0, _) = &runs[0];
    for (cap, p, b, _) in &runs[1..] {
        assert!(p == p0, "parameters differ between {cap0} and {cap}");
        assert!(b == b0, "BN statistics differ between {cap0} and {cap}");
    }
    // A value that names no kernel is refused before anything runs.
    let r = Command::new(bin).args(["train", "--steps", "1"]).env(cpu::KERNEL_ENV, "avx9").output().unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("INFOMAX_KERNEL=\"avx9\" is not one of"));
}
