//! The inference path: export → zero-allocation reader → Plan/encode,
//! against the training path's eval-mode forward; the reader's checks, one
//! malformed file per rule; no panic on arbitrary bytes.

mod common;

use common::Rng;
use infomax::dim::{Dim, DimConfig, Mode};
use infomax::infer::{Arch, Dtype, InferError, LayerSpec, Plan, Tap, Taps, Weights};
use infomax::io::{ExportDtype, to_bytes};
use infomax::optim::{AdamConfig, AdamMoments, adam_step};
use proptest::prelude::*;

/// A model after `steps` Adam steps (lr 1e-2) on random images, so weights,
/// BN affine parameters and running statistics are all non-trivial.
fn trained(preset: &str, steps: u64, seed: u64) -> Dim {
    let mut model = Dim::new(DimConfig::new(preset).mi_units(64).seed(seed)).unwrap();
    let n = 4;
    let mut ws = model.workspace(n).unwrap();
    let mut rng = Rng(seed ^ 0xD1A);
    let (mut m, mut v) = (vec![0f32; model.params.len()], vec![0f32; model.params.len()]);
    let in_len = model.encoder.input_len();
    for t in 1..=steps {
        let x = rng.vec_f32(n * in_len);
        model.forward_backward(&x, &mut ws).unwrap();
        let grads = model.grads.clone();
        adam_step(&AdamConfig::torch_default(1e-2), t, &mut model.params, &grads, AdamMoments { m: &mut m, v: &mut v })
            .unwrap();
    }
    model
}

/// The training path's eval forward: (Y, local, conv tap, fc tap).
type Reference = (Vec<f32>, Vec<f32>, Option<Vec<f32>>, Option<Vec<f32>>);

fn reference(model: &mut Dim, x: &[f32], n: usize) -> Reference {
    let enc = model.encoder.clone();
    let mut acts = enc.alloc(n, false).unwrap();
    enc.forward(&model.params, &mut model.buffers, x, &mut acts, Mode::Eval).unwrap();
    let tap = |i: Option<usize>| i.map(|i| enc.block_out(&acts, i).to_vec());
    (enc.y(&acts).to_vec(), enc.block_out(&acts, enc.cfg.local_layer).to_vec(), tap(enc.conv_tap()), tap(enc.fc_tap()))
}

/// max |a − b| / max |b|: the error relative to the output's scale.
fn scaled_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    let err = a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs()));
    assert!(scale > 0.0, "reference output is all zeros");
    err / scale
}

/// Runs the inference path on `x` and returns (Y, local, conv, fc).
fn infer(bytes: &[u8], x: &[f32], n: usize) -> Reference {
    let w = Weights::<32>::parse(bytes).unwrap();
    let plan = Plan::from_weights(&w, n).unwrap();
    let mut scratch = vec![f32::NAN; plan.scratch_len()];
    let mut y = vec![0f32; plan.output_len()];
    let mut local = vec![0f32; plan.tap_len(Tap::Local).unwrap()];
    let mut conv = plan.tap_len(Tap::Conv).map(|l| vec![0f32; l]);
    let mut fc = plan.tap_len(Tap::Fc).map(|l| vec![0f32; l]);
    let taps = Taps { local: Some(&mut local), conv: conv.as_deref_mut(), fc: fc.as_deref_mut() };
    plan.encode_with_taps(&w, x, &mut scratch, &mut y, taps).unwrap();
    (y, local, conv, fc)
}

/// Tolerances (error relative to the output's scale, see `scaled_err`). Measured
/// maxima over these tests: f32 1.0e-6, f16 7.7e-4, bf16 5.1e-3 (docs/inference.md).
const TOL_F32: f64 = 1e-5;
const TOL_F16: f64 = 2e-3;
const TOL_BF16: f64 = 1.5e-2;

fn parity(preset: &str, steps: u64) {
    let mut model = trained(preset, steps, 7);
    for n in [1, 3] {
        let x = Rng(11 + n as u64).vec_f32(n * model.encoder.input_len());
        let want = reference(&mut model, &x, n);
        for (dtype, tol) in [(ExportDtype::F32, TOL_F32), (ExportDtype::F16, TOL_F16), (ExportDtype::BF16, TOL_BF16)] {
            let bytes = to_bytes(&model, dtype, true, &[]).unwrap();
            let got = infer(&bytes, &x, n);
            let errs = [
                ("y", scaled_err(&got.0, &want.0)),
                ("local", scaled_err(&got.1, &want.1)),
                ("conv", got.2.as_ref().map_or(0.0, |g| scaled_err(g, want.2.as_ref().unwrap()))),
                ("fc", got.3.as_ref().map_or(0.0, |g| scaled_err(g, want.3.as_ref().unwrap()))),
            ];
            eprintln!("{preset} steps={steps} n={n} {}: {errs:?}", dtype.name());
            for (tap, e) in errs {
                assert!(
                    e <= tol,
                    "{preset} ({steps} steps, batch {n}, {}): {tap} error {e:.3e} > {tol:e}",
                    dtype.name()
                );
            }
        }
    }
}

#[test]
fn parity_conv28_random_init() {
    parity("conv28", 0);
}

#[test]
fn parity_conv28_trained() {
    parity("conv28", 3);
}

#[test]
fn parity_conv32_trained() {
    parity("conv32", 2);
}

#[test]
fn parity_edge_random_init_and_trained() {
    parity("edge", 0);
    parity("edge", 3);
}

#[test]
fn parity_custom_pool_no_relu_pointwise_two_fc() {
    // Exercises max-pool, a layer without ReLU or BN, a 1×1 conv and fc1/fc2 names.
    use infomax::dim::{EncoderConfig, EncoderSpec, Layer};
    let enc = EncoderConfig {
        input: [2, 12, 12],
        layers: vec![
            Layer::Conv { out: 6, kernel: 3, stride: 1, padding: 1, bn: true, relu: true, pool: true },
            Layer::Conv { out: 5, kernel: 1, stride: 1, padding: 0, bn: false, relu: false, pool: false },
            Layer::Linear { out: 7, bn: true, relu: true },
            Layer::Linear { out: 9, bn: false, relu: true },
        ],
        local_layer: 1,
        y_dim: 4,
        fold: None,
    };
    let mut cfg = DimConfig::new("conv28").mi_units(8).seed(3);
    cfg.encoder = EncoderSpec::Custom(enc);
    let mut model = Dim::new(cfg).unwrap();
    let mut ws = model.workspace(4).unwrap();
    let x = Rng(5).vec_f32(4 * 2 * 144);
    for _ in 0..3 {
        model.forward_backward(&x, &mut ws).unwrap();
    }
    let n = 2;
    let x = Rng(6).vec_f32(n * 2 * 144);
    let want = reference(&mut model, &x, n);
    // fc1/fc2 have 7 and 9 outputs: the batch-1..5 layers' last group of
    // rows is partial (f16/bf16 convert in registers four rows at a time).
    for (dtype, tol) in [(ExportDtype::F32, TOL_F32), (ExportDtype::F16, TOL_F16), (ExportDtype::BF16, TOL_BF16)] {
        let got = infer(&to_bytes(&model, dtype, true, &[]).unwrap(), &x, n);
        assert!(scaled_err(&got.0, &want.0) <= tol, "{}", dtype.name());
        assert!(scaled_err(&got.1, &want.1) <= tol, "{}", dtype.name());
        assert!(scaled_err(got.3.as_ref().unwrap(), want.3.as_ref().unwrap()) <= tol, "{}", dtype.name());
    }
}

#[test]
fn presets_match_the_trainer_configs() {
    for (name, arch) in [("conv28", Arch::conv28()), ("conv32", Arch::conv32()), ("edge", Arch::edge())] {
        let model = Dim::new(DimConfig::new(name).mi_units(8)).unwrap();
        let bytes = to_bytes(&model, ExportDtype::F16, true, &[]).unwrap();
        let w = Weights::<32>::parse(&bytes).unwrap();
        assert_eq!(Arch::from_weights(&w).unwrap(), arch, "{name}");
    }
}

/// Scratch sizes at batch 1 (f32 elements), as documented in docs/inference.md.
#[test]
fn scratch_is_exact_and_documented() {
    for (name, arch, want) in
        [("conv28", Arch::conv28(), 30_208), ("conv32", Arch::conv32(), 33_792), ("edge", Arch::edge(), 13_152)]
    {
        let plan = Plan::new(&arch, 1).unwrap();
        let model = Dim::new(DimConfig::new(name).mi_units(8)).unwrap();
        let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
        let w = Weights::<32>::parse(&bytes).unwrap();
        let weight_bytes: usize = w.tensors().iter().map(|t| t.data().len()).sum();
        println!(
            "{name}: batch 1 scratch {} f32 = {} bytes; f32 weights {weight_bytes} bytes, f16 {}",
            plan.scratch_len(),
            4 * plan.scratch_len(),
            weight_bytes / 2
        );
        assert_eq!(plan.scratch_len(), want, "{name}: update docs/inference.md");
        let x = vec![0.25f32; plan.input_len()];
        let mut y = vec![0f32; plan.output_len()];
        let mut scratch = vec![0f32; plan.scratch_len()];
        assert_eq!(
            plan.encode(&w, &x, &mut scratch[..plan.scratch_len() - 1], &mut y),
            Err(InferError::ScratchTooSmall { needed: plan.scratch_len(), got: plan.scratch_len() - 1 })
        );
        plan.encode(&w, &x, &mut scratch, &mut y).unwrap();
        assert!(y.iter().all(|v| v.is_finite()));
        // Scratch grows with the batch; a larger scratch is fine.
        let plan4 = Plan::new(&arch, 4).unwrap();
        assert!(plan4.scratch_len() > plan.scratch_len());
        let mut big = vec![0f32; plan.scratch_len() + 100];
        let mut y2 = vec![0f32; plan.output_len()];
        plan.encode(&w, &x, &mut big, &mut y2).unwrap();
        assert_eq!(y, y2);
    }
}

#[test]
fn batch_results_equal_single_image_results() {
    let model = trained("edge", 2, 1);
    let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
    let w = Weights::<32>::parse(&bytes).unwrap();
    let (p1, p3) = (Plan::from_weights(&w, 1).unwrap(), Plan::from_weights(&w, 3).unwrap());
    let x = Rng(9).vec_f32(p3.input_len());
    let mut y3 = vec![0f32; p3.output_len()];
    p3.encode(&w, &x, &mut vec![0f32; p3.scratch_len()], &mut y3).unwrap();
    for i in 0..3 {
        let mut y1 = vec![0f32; 64];
        p1.encode(&w, &x[i * 784..(i + 1) * 784], &mut vec![0f32; p1.scratch_len()], &mut y1).unwrap();
        assert_eq!(y1, y3[i * 64..(i + 1) * 64], "image {i}");
    }
}

/// Below batch 6 linear layers are one dot product per image; from batch 6
/// on they run on the batched GEMM, whose K-blocked FMA order differs from
/// the dot's lanes (docs/inference.md, "Batches"). So batch 5 equals batch 1
/// bit for bit, and batches 6 and 7 equal it within 1e-5 of the largest |Y|.
#[test]
fn batches_5_6_7_against_batch_1_bitwise_below_6_and_bounded_from_6() {
    for preset in ["edge", "conv28"] {
        let model = trained(preset, 2, 1);
        let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
        let w = Weights::<32>::parse(&bytes).unwrap();
        let p1 = Plan::from_weights(&w, 1).unwrap();
        let (n_in, n_out) = (p1.input_len(), p1.output_len());
        let x = Rng(11).vec_f32(7 * n_in);
        let single: Vec<Vec<f32>> = (0..7)
            .map(|i| {
                let mut y = vec![0f32; n_out];
                p1.encode(&w, &x[i * n_in..(i + 1) * n_in], &mut vec![0f32; p1.scratch_len()], &mut y).unwrap();
                y
            })
            .collect();
        let scale = single.iter().flatten().fold(0f32, |m, v| m.max(v.abs()));
        for b in [5, 6, 7] {
            let p = Plan::from_weights(&w, b).unwrap();
            let mut y = vec![0f32; p.output_len()];
            p.encode(&w, &x[..b * n_in], &mut vec![0f32; p.scratch_len()], &mut y).unwrap();
            let worst = (0..b)
                .flat_map(|i| y[i * n_out..(i + 1) * n_out].iter().zip(&single[i]).map(|(a, c)| (a - c).abs()))
                .fold(0f32, f32::max);
            eprintln!("{preset} batch {b}: max |dY| {worst:.2e} of max |Y| {scale:.2e}");
            if b < 6 {
                assert_eq!(worst, 0.0, "{preset} batch {b} must equal batch 1 bit for bit");
            } else {
                assert!(worst <= 1e-5 * scale, "{preset} batch {b}: {worst:e} over 1e-5 of {scale:e}");
            }
        }
    }
}

#[test]
fn encode_errors_are_typed() {
    let model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
    let w = Weights::<32>::parse(&bytes).unwrap();
    let plan = Plan::from_weights(&w, 2).unwrap();
    let mut s = vec![0f32; plan.scratch_len()];
    let (x, mut y) = (vec![0f32; plan.input_len()], vec![0f32; plan.output_len()]);
    assert_eq!(
        plan.encode(&w, &x[1..], &mut s, &mut y),
        Err(InferError::WrongLength { what: "input", expected: 2 * 784, got: 2 * 784 - 1 })
    );
    assert_eq!(
        plan.encode(&w, &x, &mut s, &mut y[..64]),
        Err(InferError::WrongLength { what: "output", expected: 128, got: 64 })
    );
    let mut bad_tap = vec![0f32; 3];
    let taps = Taps { fc: Some(&mut bad_tap), ..Taps::default() };
    assert_eq!(
        plan.encode_with_taps(&w, &x, &mut s, &mut y, taps),
        Err(InferError::WrongLength { what: "fc", expected: 512, got: 3 })
    );
    assert_eq!(
        Plan::new(&Arch::edge(), 0).unwrap_err(),
        InferError::InvalidConfig { reason: "batch must be at least 1" }
    );
    // A plan for another architecture against these weights.
    let other = Plan::new(&Arch::conv28(), 1).unwrap();
    let mut s2 = vec![0f32; other.scratch_len()];
    assert_eq!(
        other.encode(&w, &x[..784], &mut s2, &mut y[..64]),
        Err(InferError::WrongShape { layer: 0, part: "weight" })
    );
    // An encoder with no linear layer has no fc tap.
    let convs = Arch::new([1, 8, 8], &[LayerSpec::conv(2, 3, 2, 1)], 0, 4).unwrap();
    let p = Plan::new(&convs, 1).unwrap();
    assert_eq!(p.tap_len(Tap::Fc), None);
    let mut fc = vec![0f32; 4];
    let taps = Taps { fc: Some(&mut fc), ..Taps::default() };
    assert_eq!(
        p.encode_with_taps(&w, &[0.0; 64], &mut vec![0f32; p.scratch_len()], &mut [0f32; 4], taps),
        Err(InferError::TapUnavailable { tap: "fc" })
    );
    let too_big_kernel = Arch::new([1, 2, 2], &[LayerSpec::conv(2, 5, 1, 0)], 0, 4).unwrap();
    assert!(matches!(Plan::new(&too_big_kernel, 1), Err(InferError::Kernel(_))));
}

/// Writes a file with the `safetensors` crate from (name, dtype, shape, bytes).
fn st_file(tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)], meta: &[(&str, &str)]) -> Vec<u8> {
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()));
    let meta = meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// The exported file with tensor `drop` left out and `replace` swapped in.
fn edited_export(drop: &str, replace: Option<(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)>) -> Vec<u8> {
    let model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = md.metadata().clone().unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != drop)
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    if let Some((n, d, s, b)) = replace {
        owned.push((n.to_string(), d, s, b));
    }
    let t: Vec<_> = owned.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let m: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    st_file(&t, &m)
}

#[test]
fn missing_tensor_wrong_dtype_and_bad_metadata_are_typed() {
    // `Plan::from_weights` refuses the file up front; a plan of the same
    // architecture made without that check gets the same error from `encode`.
    let check = |bytes: &[u8], want: InferError| {
        let w = Weights::<32>::parse(bytes).unwrap();
        assert_eq!(Plan::from_weights(&w, 1).err(), Some(want));
        let plan = Plan::new(&Arch::from_weights(&w).unwrap(), 1).unwrap();
        let mut y = [0f32; 64];
        let got = plan.encode(&w, &[0.0; 784], &mut vec![0f32; plan.scratch_len()], &mut y);
        assert_eq!(got, Err(want));
    };
    check(&edited_export("encoder.conv2.bias", None), InferError::MissingTensor { layer: 1, part: "bias" });
    let f64s = vec![0u8; 8 * 256];
    check(
        &edited_export("encoder.fc.bias", Some(("encoder.fc.bias", safetensors::Dtype::F64, vec![256], f64s))),
        InferError::WrongDtype { layer: 3, part: "bias", dtype: Dtype::F64 },
    );
    check(
        &edited_export("encoder.out.bias", Some(("encoder.out.bias", safetensors::Dtype::F32, vec![63], vec![0; 252]))),
        InferError::WrongShape { layer: 4, part: "bias" },
    );
    let plain = st_file(&[("a", safetensors::Dtype::F32, vec![1], vec![0; 4])], &[]);
    let w = Weights::<4>::parse(&plain).unwrap();
    assert_eq!(Plan::from_weights(&w, 1).unwrap_err(), InferError::MissingMetadata { key: "format" });
    let meta = [("format", "infomax-encoder"), ("format_version", "2"), ("folded", "true")];
    let v2 = st_file(&[("a", safetensors::Dtype::F32, vec![1], vec![0; 4])], &meta);
    assert_eq!(
        Plan::from_weights(&Weights::<4>::parse(&v2).unwrap(), 1).unwrap_err(),
        InferError::UnsupportedFormat { key: "format_version" }
    );
    let model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    let unfolded = to_bytes(&model, ExportDtype::F32, false, &[]).unwrap();
    assert_eq!(
        Plan::from_weights(&Weights::<64>::parse(&unfolded).unwrap(), 1).unwrap_err(),
        InferError::UnsupportedFormat { key: "folded" }
    );
}

#[test]
fn config_json_parser() {
    let cfg = infomax::dim::EncoderConfig::conv32();
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(Arch::from_config_json(&json).unwrap(), Arch::conv32());
    // serde's defaults: bn and relu true, pool false; keys in any order.
    let short = r#"{"y_dim":8,"local_layer":0,"layers":[{"out":4,"type":"conv","kernel":3,"stride":1,"padding":0},{"type":"linear","out":5,"relu":false}],"input":[1,5,5]}"#;
    let a = Arch::from_config_json(short).unwrap();
    assert_eq!(
        a.layers(),
        &[
            LayerSpec::Conv { out: 4, kernel: 3, stride: 1, padding: 0, relu: true, pool: false },
            LayerSpec::Linear { out: 5, relu: false }
        ]
    );
    for bad in [
        "",
        "{}",
        r#"{"input":[1,5,5],"layers":[],"local_layer":0,"y_dim":8}"#,
        r#"{"input":[1,5,5],"layers":[{"type":"pool"}],"local_layer":0,"y_dim":8}"#,
        r#"{"input":[1,5,5],"layers":[{"type":"linear","out":3,"kernel":3}],"local_layer":0,"y_dim":8}"#,
        r#"{"input":[1,5],"layers":[{"type":"linear","out":3}],"local_layer":0,"y_dim":8}"#,
        r#"{"input":[1,5,5],"layers":[{"type":"linear","out":3}],"local_layer":1,"y_dim":8}"#,
        r#"{"input":[1,5,5],"layers":[{"type":"linear","out":3}],"local_layer":0,"y_dim":8,"x":1}"#,
        r#"{"input":[1,5,5],"layers":[{"type":"linear","out":3}],"local_layer":0,"y_dim":8} x"#,
    ] {
        assert!(Arch::from_config_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn nan_input_propagates_without_panic() {
    let model = trained("edge", 1, 2);
    let bytes = to_bytes(&model, ExportDtype::F16, true, &[]).unwrap();
    let w = Weights::<32>::parse(&bytes).unwrap();
    let plan = Plan::from_weights(&w, 1).unwrap();
    let mut x = vec![0.1f32; 784];
    x[0] = f32::NAN;
    x[400] = f32::INFINITY;
    let mut y = [0f32; 64];
    plan.encode(&w, &x, &mut vec![0f32; plan.scratch_len()], &mut y).unwrap();
    assert!(y.iter().any(|v| v.is_nan()), "NaN must reach Y");
}

// ---------------------------------------------------------------- reader

#[test]
fn exported_files_are_valid_for_the_safetensors_crate() {
    let model = trained("conv28", 1, 4);
    for dtype in [ExportDtype::F32, ExportDtype::F16, ExportDtype::BF16] {
        for folded in [true, false] {
            let bytes = to_bytes(&model, dtype, folded, &[("note", "x\"y".into())]).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let ours = Weights::<32>::parse(&bytes).unwrap();
            assert_eq!(st.len(), ours.tensors().len());
            for (name, view) in st.tensors() {
                let t = ours.tensor(&name).unwrap();
                assert_eq!(t.shape(), view.shape(), "{name}");
                assert_eq!(t.data(), view.data(), "{name}");
                assert_eq!(t.dtype().name(), format!("{:?}", view.dtype()), "{name}");
            }
            assert!(ours.metadata("note").unwrap().eq_str("x\"y"));
            // Encoder only: no MI head, prior or optimiser tensors.
            assert!(st.names().iter().all(|n| n.starts_with("encoder.")));
            let has_bn = st.names().iter().any(|n| n.contains(".bn"));
            assert_eq!(has_bn, !folded);
            // Deterministic bytes.
            assert_eq!(bytes, to_bytes(&model, dtype, folded, &[("note", "x\"y".into())]).unwrap());
        }
    }
}

#[test]
fn reads_files_written_by_the_safetensors_crate() {
    use safetensors::Dtype as D;
    let tensors = vec![
        ("w", D::F32, vec![2, 3], (0..24).collect::<Vec<u8>>()),
        ("h", D::F16, vec![3], vec![0, 60, 0, 64, 0, 192]),
        ("b", D::BF16, vec![1], vec![128, 63]),
        ("scalar", D::I64, vec![], vec![1, 0, 0, 0, 0, 0, 0, 0]),
        ("empty", D::U8, vec![0, 4], vec![]),
        ("é\"x", D::U8, vec![1], vec![7]),
    ];
    let bytes = st_file(&tensors, &[("k", "v")]);
    let w = Weights::<8>::parse(&bytes).unwrap();
    assert_eq!(w.tensors().len(), 6);
    for (n, d, s, b) in &tensors {
        let t = w.tensor(n).unwrap();
        assert_eq!(t.shape(), &s[..]);
        assert_eq!(t.data(), &b[..]);
        assert_eq!(t.dtype().name(), format!("{d:?}"));
    }
    let mut h = [0f32; 3];
    w.tensor("h").unwrap().read_f32(0, &mut h).unwrap();
    assert_eq!(h, [1.0, 2.0, -2.0]);
    let mut b = [0f32; 1];
    w.tensor("b").unwrap().read_f32(0, &mut b).unwrap();
    assert_eq!(b, [1.0]);
    assert!(w.tensor("scalar").unwrap().read_f32(0, &mut b).is_err());
    assert!(w.tensor("h").unwrap().read_f32(2, &mut h[..2]).is_err());
    assert!(w.metadata("k").unwrap().eq_str("v"));
    assert_eq!(Weights::<5>::parse(&bytes).unwrap_err(), InferError::TooManyTensors { capacity: 5 });
}

/// A file from a raw header and data section.
fn raw(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn every_format_violation_is_a_typed_error() {
    use InferError::*;
    let t = |h: &str, d: &[u8]| Weights::<4>::parse(&raw(h, d)).map(|_| ());
    let ok = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert_eq!(t(ok, &[0; 8]), Ok(()));
    assert_eq!(t("{}", &[]), Ok(()));
    assert_eq!(Weights::<4>::parse(&[1, 2, 3]).unwrap_err(), TooShort { len: 3 });
    let mut huge = 100_000_001u64.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    assert_eq!(Weights::<4>::parse(&huge).unwrap_err(), HeaderTooLarge { len: 100_000_001 });
    let mut oob = 50u64.to_le_bytes().to_vec();
    oob.extend_from_slice(b"{}");
    assert_eq!(Weights::<4>::parse(&oob).unwrap_err(), HeaderOutOfBounds { header_len: 50, file_len: 10 });
    let mut bad_utf8 = raw("{\"a\":1}", &[]);
    bad_utf8[10] = 0xFF;
    assert_eq!(Weights::<4>::parse(&bad_utf8).unwrap_err(), InvalidUtf8 { offset: 2 });
    for bad_json in [
        "",
        "[]",
        "{",
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}}"#,
        r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2]}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#,
        r#"{"a":{"dtype":"F32","shape":[2],"shape":[2],"data_offsets":[0,8]}}"#,
        r#"{"__metadata__":{"k":1}}"#,
        r#"{} {}"#,
    ] {
        assert!(matches!(t(bad_json, &[0; 8]), Err(InvalidJson { .. })), "{bad_json}");
    }
    let two = |a: &str, b: &str| format!(r#"{{{a},{b}}}"#);
    let ta = r#""a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let tb = r#""b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#;
    assert_eq!(t(&two(ta, tb), &[0; 8]), Ok(()));
    assert_eq!(t(&two(tb, ta), &[0; 8]), Ok(()), "file order need not be data order");
    let ta_esc = r#""\u0061":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}"#;
    assert_eq!(t(&two(ta, ta_esc), &[0; 8]), Err(DuplicateName { index: 1 }));
    assert_eq!(t(r#"{"__metadata__":{},"__metadata__":{}}"#, &[]), Err(DuplicateName { index: 1 }));
    assert_eq!(t(r#"{"__metadata__":{"k":"1","k":"2"}}"#, &[]), Err(DuplicateName { index: 1 }));
    assert_eq!(t(r#"{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]), Err(UnknownDtype { index: 0 }));
    assert_eq!(
        t(r#"{"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}"#, &[0]),
        Err(RankTooLarge { index: 0 })
    );
    let big = format!(r#"{{"a":{{"dtype":"F32","shape":[{},{}],"data_offsets":[0,4]}}}}"#, usize::MAX / 2, 3);
    assert_eq!(t(&big, &[0; 4]), Err(ShapeOverflow { index: 0 }));
    assert_eq!(
        t(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, &[0; 4]),
        Err(OffsetsDisagreeWithShape { index: 0 })
    );
    assert_eq!(
        t(r#"{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}"#, &[0; 4]),
        Err(OffsetsDisagreeWithShape { index: 0 })
    );
    assert_eq!(t(ok, &[0; 4]), Err(OffsetsOutOfBounds { index: 0 }));
    let overlap = r#""b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    assert_eq!(t(&two(ta, overlap), &[0; 4]), Err(NotContiguous { offset: 0 }));
    let hole = r#""b":{"dtype":"U8","shape":[1],"data_offsets":[5,6]}"#;
    assert_eq!(t(&two(ta, hole), &[0; 6]), Err(NotContiguous { offset: 4 }));
    assert_eq!(t(ok, &[0; 9]), Err(DataLengthMismatch { covered: 8, data_len: 9 }));
    let mis = r#""b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}"#;
    let byte = r#""a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}"#;
    assert_eq!(t(&two(byte, mis), &[0; 5]), Err(Misaligned { index: 1 }));
    let many: Vec<String> =
        (0..5).map(|i| format!(r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#, i + 1)).collect();
    assert_eq!(t(&format!("{{{}}}", many.join(",")), &[0; 5]), Err(TooManyTensors { capacity: 4 }));
    let metas: Vec<String> = (0..33).map(|i| format!(r#""k{i}":"v""#)).collect();
    assert_eq!(
        t(&format!(r#"{{"__metadata__":{{{}}}}}"#, metas.join(",")), &[]),
        Err(TooManyMetadata { capacity: 32 })
    );
}

fn valid_small_file() -> Vec<u8> {
    let model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    to_bytes(&model, ExportDtype::F16, true, &[]).unwrap()
}

/// Parse, and if that works, plan and encode: must return, never panic.
fn parse_plan_encode(bytes: &[u8], x: &[f32]) {
    let Ok(w) = Weights::<16>::parse(bytes) else { return };
    // Whatever we accept, the reference implementation accepts too.
    assert!(safetensors::SafeTensors::deserialize(bytes).is_ok(), "accepted a file the safetensors crate rejects");
    let Ok(plan) = Plan::from_weights(&w, 1) else { return };
    if plan.scratch_len() > 1 << 22 || plan.input_len() != x.len() {
        return;
    }
    let mut s = vec![0f32; plan.scratch_len()];
    let mut y = vec![0f32; plan.output_len()];
    let _ = plan.encode(&w, x, &mut s, &mut y);
}

proptest! {
    #![proptest_config(common::cfg(256))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256), len in 0u64..300) {
        let mut v = len.to_le_bytes().to_vec();
        v.extend_from_slice(&bytes);
        parse_plan_encode(&bytes, &[0.0; 784]);
        parse_plan_encode(&v, &[0.0; 784]);
    }

    #[test]
    fn mutated_exports_never_panic(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
                                   cut in any::<usize>(), x in -2f32..2.0) {
        let base = valid_small_file();
        let header = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
        let mut v = base.clone();
        // Mostly edit the header, where the parser is.
        for (pos, byte) in &edits {
            let p = pos % header.max(1);
            v[p] = *byte;
        }
        parse_plan_encode(&v, &[x; 784]);
        let mut t = base;
        t.truncate(cut % (t.len() + 1));
        parse_plan_encode(&t, &[x; 784]);
    }
}

#[test]
fn export_cli_writes_the_same_bytes_and_reports_bad_input() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("infomax-export-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = trained("edge", 1, 8);
    let ckpt = dir.join("ckpt.safetensors");
    let progress = infomax::train::checkpoint::Progress { step: 1, ..Default::default() };
    infomax::train::checkpoint::save(&ckpt, &model, None, &progress, &[]).unwrap();
    let bin = env!("CARGO_BIN_EXE_infomax");
    let out_file = dir.join("edge-f16.safetensors");
    let out = Command::new(bin)
        .args(["export", ckpt.to_str().unwrap(), "--out", out_file.to_str().unwrap(), "--dtype", "f16"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read(&out_file).unwrap();
    assert_eq!(written, to_bytes(&model, ExportDtype::F16, true, &[("trained_steps", "1".into())]).unwrap());
    let w = Weights::<32>::parse(&written).unwrap();
    assert!(w.metadata("dtype").unwrap().eq_str("f16"));
    Plan::from_weights(&w, 1).unwrap();

    let unfolded = dir.join("edge-unfolded.safetensors");
    let out = Command::new(bin)
        .args(["export", ckpt.to_str().unwrap(), "-o", unfolded.to_str().unwrap(), "--unfolded"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let st_bytes = std::fs::read(&unfolded).unwrap();
    let st = safetensors::SafeTensors::deserialize(&st_bytes).unwrap();
    assert!(st.names().contains(&"encoder.bn1.running_var"));

    let fail = |args: &[&str], code: i32, msg: &str| {
        let out = Command::new(bin).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(msg), "{args:?}: {err}");
    };
    let o = dir.join("x.safetensors");
    let o = o.to_str().unwrap();
    fail(&["export", "/nonexistent.safetensors", "--out", o], 1, "cannot read checkpoint");
    fail(&["export", out_file.to_str().unwrap(), "--out", o], 1, "not an infomax checkpoint");
    fail(&["export", ckpt.to_str().unwrap(), "--out", o, "--dtype", "f8"], 2, "invalid value");
    fail(&["export", ckpt.to_str().unwrap()], 2, "--out");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tiny models that seed the inference fuzz targets
/// (`fuzz/corpus/{safetensors_reader,load_encode}/tiny-*`): a 1×8×8 input,
/// one 3×3/2 conv with pool-free BN, FC 6, Y 3, in every dtype. The test
/// fails if the committed seeds drift from what the exporter writes now;
/// `INFOMAX_WRITE_FUZZ_SEEDS=1` rewrites them.
#[test]
fn fuzz_seed_models_are_current() {
    use infomax::dim::{EncoderConfig, EncoderSpec, Layer};
    let enc = EncoderConfig {
        input: [1, 8, 8],
        layers: vec![
            Layer::Conv { out: 4, kernel: 3, stride: 2, padding: 1, bn: true, relu: true, pool: false },
            Layer::Linear { out: 6, bn: true, relu: true },
        ],
        local_layer: 0,
        y_dim: 3,
        fold: None,
    };
    let mut cfg = DimConfig::new("conv28").mi_units(4).seed(9);
    cfg.encoder = EncoderSpec::Custom(enc);
    let model = Dim::new(cfg).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (dtype, name) in [(ExportDtype::F32, "f32"), (ExportDtype::F16, "f16"), (ExportDtype::BF16, "bf16")] {
        let bytes = to_bytes(&model, dtype, true, &[]).unwrap();
        // The seed must exercise the whole path: parse, plan, encode.
        let w = Weights::<16>::parse(&bytes).unwrap();
        let plan = Plan::from_weights(&w, 1).unwrap();
        let mut s = vec![0f32; plan.scratch_len()];
        let mut y = vec![0f32; plan.output_len()];
        plan.encode(&w, &[0.5; 64], &mut s, &mut y).unwrap();
        // load_encode reads a mode byte first (3: inputs from the data).
        let with_mode: Vec<u8> = [3u8].iter().chain(&bytes).copied().collect();
        for (target, seed) in [("safetensors_reader", &bytes), ("load_encode", &with_mode)] {
            let path = root.join(target).join(format!("tiny-{name}"));
            if std::env::var_os("INFOMAX_WRITE_FUZZ_SEEDS").is_some() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&seed[..]), "{} is stale", path.display());
        }
    }
}

/// The exporter pads the header so the data section starts on a 64-byte
/// boundary (still a valid safetensors file), every preset tensor then
/// starts 16-byte aligned, and f32 weights in an aligned buffer are read in
/// place (no copy), with the same values `read_f32` gives.
#[test]
fn exported_data_is_aligned_and_f32_is_read_in_place() {
    for preset in ["edge", "conv32"] {
        let model = Dim::new(DimConfig::new(preset).mi_units(8)).unwrap();
        for dtype in [ExportDtype::F32, ExportDtype::F16] {
            let bytes = to_bytes(&model, dtype, true, &[]).unwrap();
            assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!((8 + header) % infomax::io::export::DATA_ALIGN, 0, "{preset} {dtype:?}");
            // An 8-aligned copy of the file (u64 storage).
            let words: Vec<u64> = bytes
                .chunks(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(w)
                })
                .collect();
            // SAFETY: `words` holds at least `bytes.len()` initialised bytes
            // (ne-bytes of the file, in order), u8 has no alignment or
            // validity requirement, and `words` outlives the view.
            let aligned: &[u8] = unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), bytes.len()) };
            let w = Weights::<32>::parse(aligned).unwrap();
            for t in w.tensors() {
                let offset = t.data().as_ptr() as usize - aligned.as_ptr() as usize;
                assert_eq!(offset % 16, 0, "{preset} {dtype:?}");
                let mut copy = vec![0f32; t.len()];
                t.read_f32(0, &mut copy).unwrap();
                match (dtype, t.as_f32()) {
                    (ExportDtype::F32, Some(v)) if cfg!(target_endian = "little") => assert_eq!(v, &copy[..]),
                    (ExportDtype::F32, None) => {
                        assert!(cfg!(target_endian = "big") || !(aligned.as_ptr() as usize).is_multiple_of(4))
                    }
                    (ExportDtype::F16, None) => {}
                    other => panic!("{preset}: unexpected in-place view {:?}", other.0),
                }
            }
        }
    }
}

/// Loads a shipped, BN-folded file into the training model of `preset`:
/// each folded weight goes to its conv/linear, each folded bias to the
/// following BN's β, with identity statistics (γ 1, mean 0, var 1 − ε), so
/// the training path's eval forward computes exactly the folded network.
fn dim_from_folded(bytes: &[u8], preset: &str) -> Dim {
    let w = Weights::<32>::parse(bytes).unwrap();
    let read = |name: &str| {
        let t = w.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        let mut v = vec![0f32; t.shape().iter().product()];
        t.read_f32(0, &mut v).unwrap();
        v
    };
    let mut model = Dim::new(DimConfig::new(preset).mi_units(8)).unwrap();
    let names: Vec<String> = model.table.entries().iter().map(|e| e.name.clone()).collect();
    let mut layer: Option<String> = None;
    for name in names.iter().filter(|n| n.starts_with("encoder.")) {
        let module = name.trim_end_matches(".weight").trim_end_matches(".bias").to_string();
        if module.starts_with("encoder.bn") {
            if name.ends_with(".bias") {
                let l = layer.as_ref().unwrap();
                model.tensor_mut(name).unwrap().copy_from_slice(&read(&format!("{l}.bias")));
                let rv = model.tensor_mut(&format!("{module}.running_var")).unwrap();
                rv.iter_mut().for_each(|v| *v = 1.0 - 1e-5);
            }
        } else {
            model.tensor_mut(name).unwrap().copy_from_slice(&read(name));
            layer = Some(module);
        }
    }
    model
}

#[test]
fn parity_on_the_shipped_weights() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let test =
        infomax::data::load_mnist_dir(root.join("data/fashion-mnist-subset"), infomax::data::Split::Test).unwrap();
    let n = 16;
    let x: Vec<f32> = test.images[..n * 784].iter().map(|&p| infomax::infer::normalize(p)).collect();
    let mut checked = 0;
    for (file, preset) in [("dim-fmnist-edge.safetensors", "edge"), ("dim-fmnist-conv28.safetensors", "conv28")] {
        let Ok(bytes) = std::fs::read(root.join("weights").join(file)) else { continue };
        let mut model = dim_from_folded(&bytes, preset);
        let want = reference(&mut model, &x, n);
        // The file as shipped: the same (rounded) weights on both sides, so
        // only the arithmetic differs and the f32 tolerance applies.
        let got = infer(&bytes, &x, n);
        let e = scaled_err(&got.0, &want.0);
        eprintln!("{file} as shipped: Y error {e:.1e}");
        assert!(e <= TOL_F32, "{file}: Y error {e:e}");
        // Re-exported in each dtype from those weights.
        for (dtype, tol) in [(ExportDtype::F32, TOL_F32), (ExportDtype::F16, TOL_F16), (ExportDtype::BF16, TOL_BF16)] {
            let got = infer(&to_bytes(&model, dtype, true, &[]).unwrap(), &x, n);
            for (what, g, w) in [("Y", &got.0, &want.0), ("local", &got.1, &want.1)] {
                let e = scaled_err(g, w);
                eprintln!("{file} {dtype:?}: {what} error {e:.1e}");
                assert!(e <= tol, "{file} {dtype:?}: {what} error {e:e}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 1, "no shipped weights found under weights/");
}

/// An export whose `encoder_config` declares a far larger model than its
/// tensors hold: `Plan::from_weights` refuses it, so no caller sizes
/// scratch (here it would be ~10^12 floats) for a plan `encode` rejects.
#[test]
fn from_weights_refuses_metadata_that_disagrees_with_the_tensors() {
    let model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    let bytes = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = md.metadata().clone().unwrap();
    let cfg = meta["encoder_config"].clone();
    let first_out = cfg.find("\"out\":").unwrap() + 6;
    let end = first_out + cfg[first_out..].find(|c: char| !c.is_ascii_digit()).unwrap();
    // Beyond the width bound the architecture itself is refused ...
    let wider = format!("{}{}{}", &cfg[..first_out], 1u64 << 24, &cfg[end..]);
    // ... so the disagreement tested is one within the bounds.
    let wide = format!("{}{}{}", &cfg[..first_out], 1u64 << 16, &cfg[end..]);
    let owned: Vec<_> =
        st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    let t: Vec<_> = owned.iter().map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone())).collect();
    let with_config = |c: String| {
        let mut meta = meta.clone();
        meta.insert("encoder_config".into(), c);
        let m: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        st_file(&t, &m)
    };
    let edited = with_config(wider);
    let w = Weights::<32>::parse(&edited).unwrap();
    let e = Arch::from_weights(&w).unwrap_err();
    assert!(format!("{e:?}").contains("OutOfRange") && e.to_string().contains("layers[].out"), "{e}");
    let edited = with_config(wide);
    let w = Weights::<32>::parse(&edited).unwrap();
    let unchecked = Plan::new(&Arch::from_weights(&w).unwrap(), 1).unwrap();
    eprintln!("the unchecked plan asks for {} scratch floats", unchecked.scratch_len());
    assert!(unchecked.scratch_len() > 1 << 23);
    assert_eq!(Plan::from_weights(&w, 1).err(), Some(InferError::WrongShape { layer: 0, part: "weight" }));
}

/// An inference file read back into a model (`train::import`, what `eval`,
/// `embed` and `--init` do with exported files): unfolded f32 gives the
/// original model's Y, conv and fc bit for bit; folded f32 gives the
/// inference path's own Y within TOL_F32 of scale; and the shipped f16
/// files give the inference path's Y on them within 1e-6 of scale.
#[test]
fn exported_files_read_back_into_models_that_compute_what_the_file_computes() {
    let path = std::path::Path::new("mem");
    for preset in ["conv28", "edge"] {
        let mut model = trained(preset, 3, 11);
        let n = 3;
        let x = Rng(5).vec_f32(n * model.encoder.input_len());
        let want = reference(&mut model, &x, n);
        let unfolded = to_bytes(&model, ExportDtype::F32, false, &[]).unwrap();
        let mut back = infomax::train::import::model_from_encoder_bytes(&unfolded, path).unwrap();
        let got = reference(&mut back, &x, n);
        let bits = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(bits(&got.0, &want.0) && bits(&got.1, &want.1), "{preset}: unfolded Y or local map");
        assert!(bits(got.2.as_deref().unwrap(), want.2.as_deref().unwrap()), "{preset}: conv tap");
        assert!(bits(got.3.as_deref().unwrap(), want.3.as_deref().unwrap()), "{preset}: fc tap");

        let folded = to_bytes(&model, ExportDtype::F32, true, &[]).unwrap();
        let mut back = infomax::train::import::model_from_encoder_bytes(&folded, path).unwrap();
        let got = reference(&mut back, &x, n);
        let file = infer(&folded, &x, n);
        let e = scaled_err(&got.0, &file.0);
        eprintln!("{preset}: folded f32 read back, Y vs the inference path {e:.1e} of scale");
        assert!(e < TOL_F32, "{preset}: {e}");
    }
    for file in ["weights/dim-fmnist-conv28.safetensors", "weights/dim-fmnist-edge.safetensors"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let bytes = std::fs::read(&p).unwrap();
        let mut model = infomax::train::import::model_from_encoder_bytes(&bytes, &p).unwrap();
        let n = 4;
        let x = Rng(9).vec_f32(n * model.encoder.input_len());
        let got = reference(&mut model, &x, n);
        let e = scaled_err(&got.0, &infer(&bytes, &x, n).0);
        eprintln!("{file}: read back, Y vs the inference path {e:.1e} of scale");
        assert!(e < 1e-6, "{file}: {e}");
    }
    // Not an inference file, a tensor missing, a tensor too many: typed errors naming it.
    let model = trained("edge", 1, 3);
    let bytes = to_bytes(&model, ExportDtype::F32, true, &[("format", "other".into())]).unwrap();
    let e = infomax::train::import::model_from_encoder_bytes(&bytes, path).unwrap_err().to_string();
    assert!(e.contains("not an infomax inference file"), "{e}");
}
