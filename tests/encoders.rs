//! ResNet bottleneck blocks (docs/method.md §2.5) and folded (strided-crop) encoders
//! (docs/method.md §2.6): one block against PyTorch (`tests/golden/make_bottleneck.py`),
//! whole encoders against finite differences, the presets' shapes, taps and
//! names, two training steps of `resnet32` and `fold28`, and the typed
//! errors of bad configs and of exporting them.
//!
//! The encoder is f32 only, so its finite differences are per-tensor
//! directional derivatives (random direction, central differences, f64 loss
//! accumulation): many coordinates at once keep the f32 rounding of the loss
//! small against the step, so a loose tolerance still catches any wrong
//! term.

mod common;

use common::*;
use infomax::dim::{Dim, DimConfig, Encoder, EncoderConfig, EncoderSpec, Fold, Layer, Mode};
use infomax::infer::{Arch, InferError};
use infomax::io::{ExportDtype, export};
use infomax::optim::{AdamConfig, AdamMoments, adam_step};
use infomax::params::ParamTable;
use infomax::train::TrainError;

struct Built {
    enc: Encoder,
    table: ParamTable,
    buffer_table: ParamTable,
    params: Vec<f32>,
    buffers: Vec<f32>,
}

fn build(cfg: &EncoderConfig, seed: u64) -> Built {
    let (mut table, mut buffer_table) = (ParamTable::new(), ParamTable::new());
    let enc = Encoder::build(cfg, "", &mut table, &mut buffer_table).unwrap();
    let mut params = vec![0.0; table.len()];
    table.init(&mut params, seed);
    let mut buffers = vec![0.0; buffer_table.len()];
    buffer_table.init(&mut buffers, seed);
    Built { enc, table, buffer_table, params, buffers }
}

fn golden_block(name: &str) {
    let f = load_golden(name);
    let m = |k: &str| f.meta[k].parse::<usize>().unwrap();
    let (cin, planes, stride, hw, n) = (m("cin"), m("planes"), m("stride"), m("hw"), m("batch"));
    let cfg = EncoderConfig {
        input: [cin, hw, hw],
        layers: vec![Layer::Bottleneck { planes, stride }],
        local_layer: 0,
        y_dim: 1,
        fold: None,
    };
    let mut b = build(&cfg, 1);
    // Same tensors, same order as the PyTorch state_dict (Y's `out` aside).
    let ours: Vec<String> =
        b.table.entries().iter().filter_map(|e| e.name.strip_prefix("block1.").map(str::to_owned)).collect();
    let theirs: Vec<String> = f.meta["param_names"].split(',').map(str::to_owned).collect();
    assert_eq!(ours, theirs, "{name}: parameter names");
    for (table, buf) in [(&b.table, &mut b.params), (&b.buffer_table, &mut b.buffers)] {
        for e in table.entries() {
            if let Some(k) = e.name.strip_prefix("block1.") {
                buf[e.range()].copy_from_slice(&f.t[k]);
            }
        }
    }
    let mut acts = b.enc.alloc(n, true).unwrap();
    b.enc.forward(&b.params, &mut b.buffers, &f.t["x"], &mut acts, Mode::Train).unwrap();
    assert_close_f32(&format!("{name} y"), b.enc.block_out(&acts, 0), &to_f64(&f.t["y"]), 1e-4);
    let mut grads = vec![0.0; b.params.len()];
    let mut dx = vec![0.0; f.t["x"].len()];
    let d_y = vec![0.0; n];
    b.enc
        .backward_with_input_grad(&b.params, &mut grads, &f.t["x"], &mut acts, &d_y, Some(&f.t["dy"]), Some(&mut dx))
        .unwrap();
    assert_close_f32(&format!("{name} dx"), &dx, &to_f64(&f.t["dx"]), 1e-4);
    for e in b.table.entries() {
        if let Some(k) = e.name.strip_prefix("block1.") {
            assert_close_f32(&format!("{name} grad {k}"), &grads[e.range()], &to_f64(&f.t[&format!("grad.{k}")]), 1e-4);
        }
    }
    for e in b.buffer_table.entries() {
        let k = e.name.strip_prefix("block1.").unwrap();
        assert_close_f32(&format!("{name} {k}"), &b.buffers[e.range()], &to_f64(&f.t[&format!("after.{k}")]), 1e-5);
    }
}

#[test]
fn bottleneck_with_projection_matches_pytorch() {
    golden_block("bottleneck_proj");
}

#[test]
fn bottleneck_with_identity_matches_pytorch() {
    golden_block("bottleneck_identity");
}

/// L = Σ y·r_y + Σ local·r_l (f64) after a train-mode forward.
fn encoder_loss(b: &Built, params: &[f32], x: &[f32], n: usize, ry: &[f32], rl: &[f32]) -> f64 {
    let mut buffers = b.buffers.clone();
    let mut acts = b.enc.alloc(n, false).unwrap();
    b.enc.forward(params, &mut buffers, x, &mut acts, Mode::Train).unwrap();
    let dot = |a: &[f32], r: &[f32]| a.iter().zip(r).map(|(&a, &r)| f64::from(a) * f64::from(r)).sum::<f64>();
    dot(b.enc.y(&acts), ry) + dot(b.enc.block_out(&acts, b.enc.cfg.local_layer), rl)
}

/// Every parameter tensor's and the input's gradient against finite
/// differences along a random direction. A ReLU input within a step of 0
/// bends the loss between the samples (about half of all seeds have one
/// somewhere), so each check takes the best of the central, forward and
/// backward differences at two steps: a kink on one side leaves the other
/// side's difference exact, and a wrong gradient matches none of them.
/// Near-kinks on both sides still happen (about 1 seed in 4 of seeds 1–30;
/// the one examined vanished with the ReLU removed), so the seeds are fixed
/// ones without; the bottleneck's exact values are pinned by PyTorch above.
fn check_encoder_fd(cfg: &EncoderConfig, n: usize, seed: u64) {
    const STEPS: [f64; 2] = [1e-3, 3e-4];
    let mut b = build(cfg, seed);
    let mut rng = Rng(seed);
    // Move BN's γ, β off 1 and 0 so they matter.
    for p in b.params.iter_mut() {
        *p += 0.2 * rng.uniform() as f32;
    }
    let x = rng.vec_f32(n * b.enc.input_len());
    let ry = rng.vec_f32(n * cfg.y_dim);
    let rl = rng.vec_f32(n * b.enc.block_out_len(cfg.local_layer));
    let mut acts = b.enc.alloc(n, true).unwrap();
    let mut buffers = b.buffers.clone();
    b.enc.forward(&b.params, &mut buffers, &x, &mut acts, Mode::Train).unwrap();
    let mut grads = vec![0.0; b.params.len()];
    let mut dx = vec![0.0; x.len()];
    b.enc.backward_with_input_grad(&b.params, &mut grads, &x, &mut acts, &ry, Some(&rl), Some(&mut dx)).unwrap();
    let l0 = encoder_loss(&b, &b.params, &x, n, &ry, &rl);

    let mut worst = (0f64, String::new());
    // `at(t)` is the loss at t along the direction `v`.
    let mut check = |what: &str, g: &[f32], v: &[f32], at: &dyn Fn(f64) -> f64| {
        let analytic: f64 = g.iter().zip(v).map(|(&g, &v)| f64::from(g) * f64::from(v)).sum();
        let mut best = f64::INFINITY;
        let mut central = 0.0;
        for h in STEPS {
            let (lp, lm) = (at(h), at(-h));
            central = (lp - lm) / (2.0 * h);
            for numeric in [central, (lp - l0) / h, (l0 - lm) / h] {
                let scale = analytic.abs().max(numeric.abs()).max(0.1);
                best = best.min((analytic - numeric).abs() / scale);
            }
        }
        if best > worst.0 {
            worst = (best, what.to_owned());
        }
        assert!(best < 1e-2, "{what}: analytic {analytic:e} vs finite-difference {central:e}");
    };
    for e in b.table.entries() {
        let v = rng.vec_f32(e.len);
        let at = |t: f64| {
            let mut p = b.params.clone();
            for (q, (&o, &d)) in p[e.range()].iter_mut().zip(b.params[e.range()].iter().zip(&v)) {
                *q = o + (t as f32) * d;
            }
            encoder_loss(&b, &p, &x, n, &ry, &rl)
        };
        check(&e.name, &grads[e.range()], &v, &at);
    }
    let v = rng.vec_f32(x.len());
    let at = |t: f64| {
        let xp: Vec<f32> = x.iter().zip(&v).map(|(&a, &d)| a + (t as f32) * d).collect();
        encoder_loss(&b, &b.params, &xp, n, &ry, &rl)
    };
    check("input", &dx, &v, &at);
    eprintln!("seed {seed}: worst relative error {:.2e} ({})", worst.0, worst.1);
}

fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::Conv { out, kernel, stride, padding, bn: true, relu: true, pool: false }
}

#[test]
fn bottleneck_encoder_gradients_match_finite_differences() {
    // A stride-2 block with a projection, then an identity block; the conv
    // before them sees the blocks' input gradients.
    let cfg = EncoderConfig {
        input: [3, 6, 6],
        layers: vec![
            conv(4, 3, 1, 1),
            Layer::Bottleneck { planes: 2, stride: 2 },
            Layer::Bottleneck { planes: 2, stride: 1 },
            Layer::Linear { out: 5, bn: true, relu: true },
        ],
        local_layer: 1,
        y_dim: 3,
        fold: None,
    };
    for seed in [1, 5] {
        check_encoder_fd(&cfg, 3, seed);
    }
}

#[test]
fn folded_encoder_gradients_match_finite_differences() {
    // 9×9 crops of 5 with stride 2 → 3×3 grid; per crop a 2×2×3 map, so
    // the fold has 12 channels; then a conv and a linear on the folded map.
    let cfg = EncoderConfig {
        input: [2, 9, 9],
        layers: vec![
            conv(4, 3, 2, 1),
            conv(3, 2, 1, 0),
            conv(5, 2, 1, 0),
            Layer::Linear { out: 6, bn: true, relu: true },
        ],
        local_layer: 1,
        y_dim: 4,
        fold: Some(Fold { crop: 5, stride: 2, layer: 1 }),
    };
    assert_eq!(cfg.shapes().unwrap(), vec![[4, 3, 3], [12, 3, 3], [5, 2, 2], [6, 1, 1]]);
    for seed in [3, 4] {
        check_encoder_fd(&cfg, 2, seed);
    }
    // Folding the last layer (Y reads the folded map) and a local map after the fold.
    let mut cfg2 = cfg.clone();
    cfg2.layers.truncate(2);
    check_encoder_fd(&cfg2, 2, 5);
    let mut cfg3 = cfg;
    cfg3.local_layer = 2;
    check_encoder_fd(&cfg3, 2, 6);
}

#[test]
fn folded_encoder_sees_each_crop_alone() {
    // A per-crop layer's output at a grid cell must not move when pixels
    // outside that cell's crop change.
    let cfg = EncoderConfig::fold28();
    let b = build(&cfg, 7);
    let mut rng = Rng(7);
    let x = rng.vec_f32(2 * 784);
    let local = |x: &[f32]| {
        let mut acts = b.enc.alloc(2, false).unwrap();
        let mut buffers = b.buffers.clone();
        b.enc.forward(&b.params, &mut buffers, x, &mut acts, Mode::Eval).unwrap();
        b.enc.block_out(&acts, cfg.local_layer).to_vec()
    };
    let base = local(&x);
    let mut x2 = x.clone();
    // Image 1, pixel (0, 27): only in crop (0, 5).
    x2[784 + 27] += 1.0;
    let moved = local(&x2);
    let [c, gh, gw] = b.enc.local_shape();
    assert_eq!([c, gh, gw], [128, 6, 6]);
    for (i, (a, m)) in base.iter().zip(&moved).enumerate() {
        let (img, cell) = (i / (c * 36), i % 36);
        if img == 1 && cell == 5 {
            continue;
        }
        assert_eq!(a, m, "location {i} moved");
    }
    assert!(base[c * 36..].iter().zip(&moved[c * 36..]).any(|(a, m)| a != m), "crop (0, 5) did not move");
}

#[test]
fn presets_shapes_taps_and_names() {
    let f = EncoderConfig::fold28();
    let s = f.shapes().unwrap();
    assert_eq!(s, vec![[32, 4, 4], [64, 2, 2], [128, 6, 6], [256, 3, 3], [1024, 1, 1]]);
    assert_eq!(f.crop_grid().unwrap(), Some((6, 6)));
    let b = build(&f, 0);
    assert_eq!((b.enc.conv_tap(), b.enc.fc_tap()), (Some(3), Some(4)));
    assert_eq!(b.table.get("conv1.weight").unwrap().shape, vec![32, 1, 4, 4]);
    assert_eq!(b.table.get("conv4.weight").unwrap().shape, vec![256, 128, 3, 3]);
    assert_eq!(b.table.get("fc.weight").unwrap().shape, vec![1024, 2304]);
    eprintln!("fold28: {} parameters", b.table.len());

    let r = EncoderConfig::resnet32();
    let s = r.shapes().unwrap();
    assert_eq!(s[0], [64, 16, 16]);
    assert_eq!(s[2], [256, 16, 16]);
    assert_eq!(s[r.local_layer], [512, 8, 8]);
    assert_eq!(s[6], [1024, 4, 4]);
    let b = build(&r, 0);
    assert_eq!((b.enc.conv_tap(), b.enc.fc_tap()), (Some(6), Some(7)));
    let shape = |n: &str| b.table.get(n).map(|e| e.shape.clone());
    assert_eq!(shape("block2.conv1.weight"), Some(vec![64, 64, 1, 1]));
    assert_eq!(shape("block2.conv2.weight"), Some(vec![64, 64, 3, 3]));
    assert_eq!(shape("block2.conv3.weight"), Some(vec![256, 64, 1, 1]));
    assert_eq!(shape("block2.shortcut.0.weight"), Some(vec![256, 64, 1, 1]));
    assert_eq!(shape("block2.shortcut.1.weight"), Some(vec![256]));
    assert_eq!(shape("block3.shortcut.0.weight"), None, "256 → 256, stride 1: identity");
    assert_eq!(shape("block4.shortcut.0.weight"), Some(vec![512, 256, 1, 1]));
    assert_eq!(shape("fc.weight"), Some(vec![1024, 16384]));
    assert!(b.buffer_table.get("block4.shortcut.1.running_var").is_some());
    assert!(b.table.entries().iter().all(|e| !e.name.ends_with("conv1.bias")), "BN layers have no bias");
    eprintln!("resnet32: {} parameters", b.table.len());
    for name in ["fold28", "resnet32"] {
        assert_eq!(EncoderSpec::Preset(name.into()).resolve().unwrap(), EncoderConfig::preset(name).unwrap());
    }
    let e = EncoderSpec::Preset("resnet".into()).resolve().unwrap_err().to_string();
    assert!(e.contains("fold28") && e.contains("resnet32"), "{e}");
}

/// Two DIM steps at batch 4 on random images: finite loss, and every
/// encoder tensor gets a non-zero gradient.
fn two_steps(cfg: DimConfig) {
    let mut model = Dim::new(cfg).unwrap();
    let n = 4;
    let mut rng = Rng(11);
    let x = rng.vec_f32(n * model.encoder.input_len());
    let mut ws = model.workspace(n).unwrap();
    let (mut m, mut v) = (vec![0f32; model.params.len()], vec![0f32; model.params.len()]);
    for step in 1..=2 {
        let stats = model.forward_backward(&x, &mut ws).unwrap();
        assert!(stats.loss.is_finite(), "step {step}: loss {}", stats.loss);
        for e in model.table.entries().iter().filter(|e| e.name.starts_with("encoder.")) {
            let g = model.grad(&e.name).unwrap();
            assert!(g.iter().all(|v| v.is_finite()) && g.iter().any(|&v| v != 0.0), "step {step}: grad of {}", e.name);
        }
        let grads = model.grads.clone();
        adam_step(&AdamConfig::dim(), step, &mut model.params, &grads, AdamMoments { m: &mut m, v: &mut v }).unwrap();
    }
}

#[test]
fn resnet32_trains_two_steps() {
    two_steps(DimConfig::new("resnet32").mi_units(32).seed(1));
}

#[test]
fn fold28_trains_two_steps_with_global_dim() {
    two_steps(DimConfig::new("fold28").mi_units(32).weights(0.5, 1.0, 0.0).seed(2));
}

#[test]
fn export_and_plan_refuse_folded_and_bottleneck_encoders() {
    let small_fold = EncoderConfig {
        input: [1, 8, 8],
        layers: vec![conv(3, 3, 1, 0), Layer::Linear { out: 4, bn: true, relu: true }],
        local_layer: 0,
        y_dim: 2,
        fold: Some(Fold { crop: 4, stride: 2, layer: 0 }),
    };
    let small_block = EncoderConfig {
        input: [2, 4, 4],
        layers: vec![Layer::Bottleneck { planes: 1, stride: 1 }],
        local_layer: 0,
        y_dim: 2,
        fold: None,
    };
    for (enc, layer) in [(small_fold, "fold"), (small_block, "bottleneck")] {
        let mut cfg = DimConfig::new("conv28").mi_units(4);
        cfg.encoder = EncoderSpec::Custom(enc.clone());
        let model = Dim::new(cfg).unwrap();
        let err = export::to_bytes(&model, ExportDtype::F32, true, &[]).unwrap_err();
        assert!(matches!(err, TrainError::Unsupported(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("unsupported layer {layer}")) && msg.contains("no_std inference"), "{msg}");
        // The inference side reads the same config JSON from a file's metadata.
        let json = serde_json::to_string(&enc).unwrap();
        assert_eq!(Arch::from_config_json(&json), Err(InferError::UnsupportedLayer { layer }));
        let msg = InferError::UnsupportedLayer { layer }.to_string();
        assert!(msg.contains("no_std inference"), "{msg}");
    }
    // A plain encoder still exports, and its JSON has no `fold` key.
    let json = serde_json::to_string(&EncoderConfig::conv28()).unwrap();
    assert!(!json.contains("fold"), "{json}");
    assert!(Arch::from_config_json(&json).is_ok());
}

#[test]
fn bad_fold_and_bottleneck_configs_are_typed_errors() {
    use infomax::Error;
    let base = EncoderConfig::fold28();
    let with = |f: &dyn Fn(&mut EncoderConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c.shapes().unwrap_err()
    };
    let cases: Vec<(Error, &str)> = vec![
        (with(&|c| c.local_layer = 1), "comes before the fold"),
        (with(&|c| c.fold = Some(Fold { crop: 29, stride: 4, layer: 2 })), "crop is larger"),
        (with(&|c| c.fold = Some(Fold { crop: 8, stride: 0, layer: 2 })), "fold"),
        (with(&|c| c.fold = Some(Fold { crop: 8, stride: 4, layer: 5 })), "past the last layer"),
        // Per-crop maps must fit the crop: 8×8 crop, then a 9×9 kernel.
        (with(&|c| c.layers[0] = conv(4, 9, 1, 0)), "kernel is larger"),
        (with(&|c| c.layers.insert(4, Layer::Bottleneck { planes: 0, stride: 1 })), "layers[].out"),
        (with(&|c| c.layers.push(Layer::Bottleneck { planes: 2, stride: 1 })), "follows a linear"),
    ];
    for (e, want) in cases {
        assert!(matches!(e, Error::InvalidShape { .. } | Error::OutOfRange { .. }), "{e:?}");
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
    // Linear per crop, then convs on the folded map: allowed.
    let mut c = base.clone();
    c.layers[2] = Layer::Linear { out: 16, bn: true, relu: true };
    assert_eq!(c.shapes().unwrap()[2], [16, 6, 6]);
}

#[test]
fn fold_and_bottleneck_configs_parse_from_toml() {
    let text = r#"
        input = [1, 28, 28]
        local_layer = 1
        y_dim = 64
        fold = { crop = 8, stride = 4, layer = 1 }
        layers = [
            { type = "conv", out = 16, kernel = 4, stride = 2, padding = 1 },
            { type = "conv", out = 32, kernel = 4, stride = 1, padding = 0 },
            { type = "bottleneck", planes = 16, stride = 2 },
            { type = "linear", out = 128 },
        ]
    "#;
    let c: EncoderConfig = toml::from_str(text).unwrap();
    assert_eq!(c.fold, Some(Fold { crop: 8, stride: 4, layer: 1 }));
    assert_eq!(c.layers[2], Layer::Bottleneck { planes: 16, stride: 2 });
    assert_eq!(c.shapes().unwrap(), vec![[16, 4, 4], [32, 6, 6], [64, 3, 3], [128, 1, 1]]);
    let bad = text.replace("layer = 1 }", "layer = 1, size = 3 }");
    assert!(toml::from_str::<EncoderConfig>(&bad).is_err(), "unknown fold keys are rejected");
}
