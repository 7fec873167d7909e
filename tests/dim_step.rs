//! One whole DIM training step (conv28-shaped encoder, small widths, batch
//! 4) against PyTorch: loss, scores, Y, every gradient, the BN running
//! statistics and the parameters after one Adam step. Fixtures from
//! `tests/golden/make_dim_step.py` (torch, f64, stored as f32); the concat
//! head's from `make_concat_step.py`; occlusion and multiple globals from
//! `make_dim_variants.py`.

mod common;
use common::{Fixture, load_golden};

use infomax::dim::{Dim, DimConfig, EncoderConfig, EncoderSpec, Estimator, HeadKind, Layer, MultiGlobal};
use infomax::optim::{AdamConfig, AdamMoments, adam_step};

fn meta_usize(f: &Fixture, k: &str) -> usize {
    f.meta[k].parse().unwrap_or_else(|_| panic!("metadata {k}"))
}

/// Normwise relative error: max |a − b| / max |b|.
fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max((v as f64).abs())).max(1e-12);
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64).abs()).fold(0.0, f64::max) / scale
}

/// The fixture's conv28-shaped encoder, from its width metadata.
fn fixture_encoder(f: &Fixture) -> EncoderConfig {
    let conv = |out| Layer::Conv { out, kernel: 5, stride: 2, padding: 2, bn: true, relu: true, pool: false };
    EncoderConfig {
        input: [1, 28, 28],
        layers: vec![
            conv(meta_usize(f, "conv1_out")),
            conv(meta_usize(f, "conv2_out")),
            Layer::Linear { out: meta_usize(f, "fc_out"), bn: true, relu: true },
        ],
        local_layer: 1,
        y_dim: meta_usize(f, "y_dim"),
        fold: None,
    }
}

/// Checks the model has the fixture's tensors under the same names in the
/// same order, and copies their values (parameters and BN buffers) in.
fn load_fixture_params(model: &mut Dim, f: &Fixture) {
    let names: Vec<String> = f.meta["param_names"].split(',').map(str::to_owned).collect();
    let ours: Vec<String> = model.table.entries().iter().map(|e| e.name.clone()).collect();
    assert_eq!(ours, names, "parameter table differs from the PyTorch state_dict");
    let all: Vec<String> =
        model.table.entries().iter().chain(model.buffer_table.entries()).map(|e| e.name.clone()).collect();
    for name in all {
        model.tensor_mut(&name).unwrap().copy_from_slice(&f.t[&name]);
    }
}

fn run(name: &str, est: Estimator) {
    run_with(name, est, 0.0);
}

fn run_with(name: &str, est: Estimator, alpha: f64) {
    let f = load_golden(name);
    let (d, n) = (meta_usize(&f, "mi_units"), meta_usize(&f, "batch"));
    let enc = fixture_encoder(&f);
    let mut cfg = DimConfig::new("conv28").mi_units(d).estimator(est).weights(alpha, 1.0, 0.0);
    cfg.encoder = EncoderSpec::Custom(enc);
    let mut model = Dim::new(cfg).unwrap();

    load_fixture_params(&mut model, &f);

    let mut ws = model.workspace(n).unwrap();
    let stats = model.forward_backward(&f.t["x"], &mut ws).unwrap();
    let loss = f.t["loss"][0] as f64;
    assert!((stats.loss - loss).abs() <= 1e-5 * loss.abs().max(1.0), "{name}: loss {} vs torch {loss}", stats.loss);
    assert!((stats.local.pos_mean - f.t["pos_mean"][0] as f64).abs() < 1e-4);
    assert!((stats.local.neg_mean - f.t["neg_mean"][0] as f64).abs() < 1e-4);
    let e = rel(model.y(&ws), &f.t["y"]);
    assert!(e < 1e-5, "{name}: Y rel err {e:e}");
    let e = rel(model.scores(&ws), &f.t["scores"]);
    assert!(e < 1e-5, "{name}: scores rel err {e:e}");
    if alpha > 0.0 {
        let g = stats.global.expect("global DIM stats");
        let want = f.t["global_loss"][0] as f64;
        assert!((g.loss - want).abs() <= 1e-5 * want.abs().max(1.0), "{name}: global loss {} vs {want}", g.loss);
        let want = f.t["local_loss"][0] as f64;
        assert!((stats.local.loss - want).abs() <= 1e-5 * want.abs().max(1.0), "{name}: local loss");
    }

    let mut worst = (0f64, String::new());
    for e in model.table.entries() {
        let err = rel(model.grad(&e.name).unwrap(), &f.t[&format!("grad.{}", e.name)]);
        if err > worst.0 {
            worst = (err, e.name.clone());
        }
        // A gradient that is exactly zero in exact maths (NCE is invariant to
        // the LN bias) is compared absolutely.
        let scale = f.t[&format!("grad.{}", e.name)].iter().fold(0f32, |m, v| m.max(v.abs()));
        if scale < 1e-9 {
            let got = model.grad(&e.name).unwrap().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(got < 1e-5, "{name}: grad of {} should vanish, got {got:e}", e.name);
            continue;
        }
        assert!(err < 1e-4, "{name}: grad of {} rel err {err:e}", e.name);
    }
    eprintln!("{name}: worst gradient rel err {:e} ({})", worst.0, worst.1);
    for e in model.buffer_table.entries() {
        let err = rel(model.tensor(&e.name).unwrap(), &f.t[&format!("after.{}", e.name)]);
        assert!(err < 1e-5, "{name}: {} after forward rel err {err:e}", e.name);
    }

    // One Adam step (lr 1e-4, betas 0.5/0.999) from zero moments.
    let mut m = vec![0f32; model.params.len()];
    let mut v = vec![0f32; model.params.len()];
    let grads = model.grads.clone();
    adam_step(&AdamConfig::dim(), 1, &mut model.params, &grads, AdamMoments { m: &mut m, v: &mut v }).unwrap();
    for e in model.table.entries() {
        let after = &f.t[&format!("after.{}", e.name)];
        let g_ref = &f.t[&format!("grad.{}", e.name)];
        let got = model.tensor(&e.name).unwrap();
        for i in 0..after.len() {
            // Adam's first step is ≈ −lr·sign(g): where |g| is at rounding
            // level the sign is noise, so only clear gradients are compared.
            if g_ref[i].abs() > 1e-5 {
                assert!(
                    (got[i] - after[i]).abs() < 2e-7,
                    "{name}: {}[{i}] after Adam {} vs {}",
                    e.name,
                    got[i],
                    after[i]
                );
            }
        }
    }
}

#[test]
fn dim_step_jsd_matches_pytorch() {
    run("dim_step_jsd", Estimator::Jsd);
}

#[test]
fn dim_step_nce_matches_pytorch() {
    run("dim_step_nce", Estimator::Nce);
}

#[test]
fn dim_step_dv_matches_pytorch() {
    run("dim_step_dv", Estimator::Dv);
}

#[test]
fn dim_step_global_jsd_matches_pytorch() {
    run_with("dim_step_global_jsd", Estimator::Jsd, 0.5);
}

#[test]
fn dim_step_global_nce_matches_pytorch() {
    run_with("dim_step_global_nce", Estimator::Nce, 0.5);
}

/// The concat-and-convolve head (docs/method.md §4.2) against a direct PyTorch
/// implementation (broadcast Y, concatenate, 1×1 convs), with the negative
/// pairing drawn by our RNG for (seed, step) and ported to the script.
fn run_concat(name: &str, est: Estimator) {
    let f = load_golden(name);
    let (h, n) = (meta_usize(&f, "hidden"), meta_usize(&f, "batch"));
    let enc = fixture_encoder(&f);
    let mut cfg =
        DimConfig::new("conv28").mi_units(h).estimator(est).head(HeadKind::Concat).seed(meta_usize(&f, "seed") as u64);
    cfg.encoder = EncoderSpec::Custom(enc);
    let mut model = Dim::new(cfg).unwrap();
    load_fixture_params(&mut model, &f);
    let mut ws = model.workspace(n).unwrap();
    ws.set_step(meta_usize(&f, "step") as u64);
    let stats = model.forward_backward(&f.t["x"], &mut ws).unwrap();
    let perm: Vec<f32> = model.concat_perm(&ws).unwrap().iter().map(|&p| p as f32).collect();
    assert_eq!(perm, f.t["perm"], "{name}: negative pairing");
    let loss = f.t["loss"][0] as f64;
    assert!((stats.loss - loss).abs() <= 1e-5 * loss.abs().max(1e-2), "{name}: loss {} vs torch {loss}", stats.loss);
    let mean = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    assert!((stats.local.pos_mean - mean(&f.t["pos"])).abs() < 1e-5);
    assert!((stats.local.neg_mean - mean(&f.t["neg"])).abs() < 1e-5);
    let mut worst = (0f64, String::new());
    for e in model.table.entries() {
        let err = rel(model.grad(&e.name).unwrap(), &f.t[&format!("grad.{}", e.name)]);
        // The last bias shifts positive and negative scores alike: infoNCE
        // and DV are invariant to it, so its gradient is zero in exact maths.
        let scale = f.t[&format!("grad.{}", e.name)].iter().fold(0f32, |m, v| m.max(v.abs()));
        if scale < 1e-9 {
            let got = model.grad(&e.name).unwrap().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(got < 1e-6, "{name}: grad of {} should vanish, got {got:e}", e.name);
            continue;
        }
        if err > worst.0 {
            worst = (err, e.name.clone());
        }
        assert!(err < 1e-4, "{name}: grad of {} rel err {err:e}", e.name);
    }
    eprintln!("{name}: worst gradient rel err {:e} ({})", worst.0, worst.1);
}

#[test]
fn concat_step_jsd_matches_pytorch() {
    run_concat("concat_step_jsd", Estimator::Jsd);
}

#[test]
fn concat_step_nce_matches_pytorch() {
    run_concat("concat_step_nce", Estimator::Nce);
}

#[test]
fn concat_step_dv_matches_pytorch() {
    run_concat("concat_step_dv", Estimator::Dv);
}

/// Checks every gradient (and the BN statistics after the step) against
/// the fixture; returns the worst normwise error.
fn check_grads_and_bn(name: &str, model: &Dim, f: &Fixture) -> f64 {
    let mut worst = (0f64, String::new());
    for e in model.table.entries() {
        let want = &f.t[&format!("grad.{}", e.name)];
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        if scale < 1e-9 {
            let got = model.grad(&e.name).unwrap().iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(got < 1e-5, "{name}: grad of {} should vanish, got {got:e}", e.name);
            continue;
        }
        let err = rel(model.grad(&e.name).unwrap(), want);
        if err > worst.0 {
            worst = (err, e.name.clone());
        }
        assert!(err < 1e-4, "{name}: grad of {} rel err {err:e}", e.name);
    }
    for e in model.buffer_table.entries() {
        let err = rel(model.tensor(&e.name).unwrap(), &f.t[&format!("after.{}", e.name)]);
        assert!(err < 1e-5, "{name}: {} after the step rel err {err:e}", e.name);
    }
    eprintln!("{name}: worst gradient rel err {:e} ({})", worst.0, worst.1);
    worst.0
}

/// Builds the fixture's model with `variant` applied, loads its tensors and
/// runs one step at the fixture's (seed, step).
fn run_variant(
    name: &str,
    est: Estimator,
    variant: impl Fn(DimConfig) -> DimConfig,
) -> (Fixture, Dim, infomax::dim::Workspace) {
    let f = load_golden(name);
    let (d, n) = (meta_usize(&f, "mi_units"), meta_usize(&f, "batch"));
    let mut cfg = DimConfig::new("conv28").mi_units(d).estimator(est).seed(meta_usize(&f, "seed") as u64);
    cfg.encoder = EncoderSpec::Custom(fixture_encoder(&f));
    let mut model = Dim::new(variant(cfg)).unwrap();
    load_fixture_params(&mut model, &f);
    let mut ws = model.workspace(n).unwrap();
    ws.set_step(meta_usize(&f, "step") as u64);
    let stats = model.forward_backward(&f.t["x"], &mut ws).unwrap();
    let loss = f.t["loss"][0] as f64;
    assert!((stats.loss - loss).abs() <= 1e-5 * loss.abs().max(1.0), "{name}: loss {} vs torch {loss}", stats.loss);
    assert!((stats.local.pos_mean - f.t["pos_mean"][0] as f64).abs() < 1e-4);
    assert!((stats.local.neg_mean - f.t["neg_mean"][0] as f64).abs() < 1e-4);
    let e = rel(model.y(&ws), &f.t["y"]);
    assert!(e < 1e-5, "{name}: Y rel err {e:e}");
    let e = rel(model.scores(&ws), &f.t["scores"]);
    assert!(e < 1e-5, "{name}: scores rel err {e:e}");
    check_grads_and_bn(name, &model, &f);
    (f, model, ws)
}

/// Occlusion (docs/method.md §7.2): the squares drawn for (seed, step), the occluded
/// input, Y from it, locals from the clean input, and the gradient of both
/// encoder passes summed; the fixture also holds each pass's share.
fn run_occlude(name: &str, est: Estimator) {
    let (f, model, ws) = run_variant(name, est, |c| c.occlusion(14));
    let (x_occ, squares) = (model.occluded_input(&ws).unwrap(), model.occlusion_squares(&ws).unwrap());
    let sq: Vec<f32> = squares.iter().flat_map(|&(r, c)| [r as f32, c as f32]).collect();
    assert_eq!(sq, f.t["squares"], "{name}: occlusion squares");
    assert_eq!(x_occ, &f.t["x_occ"][..], "{name}: occluded input");
    // Both passes send gradient to the encoder: ours equals their sum and is
    // far from either share alone.
    for e in model.table.entries().iter().filter(|e| e.name.starts_with("encoder.")) {
        let (clean, occ) = (&f.t[&format!("grad_clean.{}", e.name)], &f.t[&format!("grad_occ.{}", e.name)]);
        let sum: Vec<f32> = clean.iter().zip(occ).map(|(a, b)| a + b).collect();
        let ours = model.grad(&e.name).unwrap();
        assert!(rel(ours, &sum) < 1e-4, "{name}: {} is not the sum of the two passes", e.name);
        if e.name.starts_with("encoder.conv") {
            assert!(rel(ours, occ) > 0.05 && rel(ours, clean) > 0.05, "{name}: {} lacks one pass", e.name);
        }
        if e.name.starts_with("encoder.fc") || e.name.starts_with("encoder.out") {
            assert!(clean.iter().all(|&v| v == 0.0), "the clean Y is unused");
        }
    }
}

#[test]
fn occlusion_step_jsd_matches_pytorch() {
    run_occlude("occlude_step_jsd", Estimator::Jsd);
}

#[test]
fn occlusion_step_nce_matches_pytorch() {
    run_occlude("occlude_step_nce", Estimator::Nce);
}

/// Multiple globals (docs/method.md §7.1): 25 globals from the 7×7 local map, the
/// N×25×N×49 score tensor through each estimator.
fn run_multi(name: &str, est: Estimator, samples: Option<usize>) {
    let (f, model, ws) = run_variant(name, est, |c| c.multi_globals(MultiGlobal { channels: None, samples }));
    assert_eq!(model.globals(), 25);
    match samples {
        Some(s) => {
            assert_eq!(model.scored_globals(), s);
            let got: Vec<f32> = model.sampled_globals(&ws).unwrap().iter().map(|&i| i as f32).collect();
            assert_eq!(got, f.t["sampled"], "{name}: sampled globals");
        }
        None => assert!(model.sampled_globals(&ws).is_none()),
    }
    // Nothing above the local map is trained by local DIM with multiple globals.
    for t in ["encoder.fc.weight", "encoder.out.weight", "encoder.out.bias"] {
        assert!(model.grad(t).unwrap().iter().all(|&v| v == 0.0), "{t}");
    }
}

#[test]
fn multi_global_step_jsd_matches_pytorch() {
    run_multi("multi_step_jsd", Estimator::Jsd, None);
}

#[test]
fn multi_global_step_nce_matches_pytorch() {
    run_multi("multi_step_nce", Estimator::Nce, None);
}

#[test]
fn multi_global_step_dv_matches_pytorch() {
    run_multi("multi_step_dv", Estimator::Dv, None);
}

#[test]
fn multi_global_one_sample_step_nce_matches_pytorch() {
    run_multi("multi_sample_step_nce", Estimator::Nce, Some(1));
}

/// Occlusion, multiple globals (3 sampled per image), global DIM and the
/// prior in one model, a combination no fixture covers: the step's gradient against
/// central differences of the step's loss, in f32, for the largest-gradient
/// entry of tensors on every path (clean and occluded encoder passes, the
/// global conv stack, both heads, global DIM, the prior's encoder loss).
#[test]
fn combined_variants_gradient_matches_finite_differences() {
    let conv = |out| Layer::Conv { out, kernel: 5, stride: 2, padding: 2, bn: true, relu: true, pool: false };
    let enc = EncoderConfig {
        input: [1, 28, 28],
        layers: vec![conv(4), conv(8), Layer::Linear { out: 16, bn: true, relu: true }],
        local_layer: 1,
        y_dim: 8,
        fold: None,
    };
    let mut cfg = DimConfig::new("conv28")
        .mi_units(16)
        .estimator(Estimator::Nce)
        .weights(0.5, 1.0, 0.1)
        .seed(3)
        .occlusion(10)
        .multi_globals(MultiGlobal { channels: Some(6), samples: Some(3) });
    cfg.encoder = EncoderSpec::Custom(enc);
    let mut model = Dim::new(cfg).unwrap();
    let x = load_golden("dim_step_jsd").t["x"].clone();
    let mut ws = model.workspace(4).unwrap();
    ws.set_step(9);
    model.forward_backward(&x, &mut ws).unwrap();
    let grads = model.grads.clone();
    let mut worst = 0f64;
    for name in [
        "encoder.conv1.weight",
        "encoder.bn2.weight",
        "encoder.fc.weight",
        "encoder.out.bias",
        "local_head.l1.weight",
        "multi_global.conv1.weight",
        "multi_global.bn2.bias",
        "global_head.shortcut.weight",
        "global_dim.out.weight",
    ] {
        let r = model.table.get(name).unwrap().range();
        let (i, &g) = grads[r.clone()].iter().enumerate().max_by(|a, b| a.1.abs().total_cmp(&b.1.abs())).unwrap();
        let idx = r.start + i;
        let h = 2e-3f32;
        let orig = model.params[idx];
        let mut at = |v: f32| {
            model.params[idx] = v;
            model.forward_backward(&x, &mut ws).unwrap().loss
        };
        let num = (at(orig + h) - at(orig - h)) / (2.0 * f64::from(h));
        model.params[idx] = orig;
        let err = (f64::from(g) - num).abs() / num.abs().max(1e-2);
        worst = worst.max(err);
        assert!(err < 3e-2, "{name}[{i}]: analytic {g} vs finite difference {num}");
    }
    eprintln!("combined variants: worst finite-difference rel err {worst:.2e}");

    // Occlusion with the concat head: the head scores the occluded pass's Y.
    let mut cfg = DimConfig::new("conv28").mi_units(16).head(HeadKind::Concat).seed(3).occlusion(10);
    cfg.encoder = model.cfg.encoder.clone();
    let mut concat = Dim::new(cfg).unwrap();
    let mut ws = concat.workspace(4).unwrap();
    let stats = concat.forward_backward(&x, &mut ws).unwrap();
    assert!(stats.loss.is_finite() && concat.grads.iter().all(|g| g.is_finite()));
    assert!(concat.grad("encoder.out.weight").unwrap().iter().any(|&g| g != 0.0));
}
