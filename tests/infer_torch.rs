//! The exported files load into PyTorch: `tests/golden/make_infer_torch.py`
//! loads them with `load_state_dict` into the reference conv28 encoder of
//! `scripts/torch/dim_ref.py` (with its BN layers, from the unfolded file;
//! without BN and with a conv/linear bias, from the folded one) and into an encoder built from the `encoder_config` metadata (edge,
//! f16), runs them on fixed inputs and stores the outputs in
//! `tests/golden/infer_torch.safetensors`. This test rebuilds the same
//! models (deterministic init and perturbation), runs the no-alloc path
//! and compares with PyTorch.
//!
//! Regenerate: `INFOMAX_PARITY_DIR=/tmp/infomax-parity cargo test --release
//! --test infer_torch -- --ignored write_exported_files`, then
//! `/root/.venvs/dim-anchors/bin/python tests/golden/make_infer_torch.py /tmp/infomax-parity`
//! (the venv: `scripts/torch/setup.sh`).

mod common;

use infomax::dim::{Dim, DimConfig};
use infomax::infer::{Plan, Tap, Taps, Weights};
use infomax::io::{ExportDtype, to_bytes};

/// conv28 and edge away from their init: every parameter scaled by
/// 1 ± 0.2 and shifted by ± 0.01, BN running means in ± 0.1 and variances in
/// [0.5, 1.5], all from a fixed SplitMix64 stream. (Not trained: the
/// weights must not depend on the rounding of the training kernels, or any
/// change there would invalidate the PyTorch outputs of the fixture.)
fn model(preset: &str) -> Dim {
    let mut model = Dim::new(DimConfig::new(preset).mi_units(64).seed(42)).unwrap();
    let mut rng = common::Rng(2026);
    for p in &mut model.params {
        *p = *p * (1.0 + 0.2 * rng.uniform() as f32) + 0.01 * rng.uniform() as f32;
    }
    for e in model.buffer_table.entries().to_vec() {
        for b in &mut model.buffers[e.range()] {
            *b = if e.name.ends_with("running_var") {
                1.0 + 0.5 * rng.uniform() as f32
            } else {
                0.1 * rng.uniform() as f32
            };
        }
    }
    model
}

/// (file name, preset, dtype, folded).
const FILES: [(&str, &str, ExportDtype, bool); 3] = [
    ("conv28_f32_folded.safetensors", "conv28", ExportDtype::F32, true),
    ("conv28_f32_unfolded.safetensors", "conv28", ExportDtype::F32, false),
    ("edge_f16_folded.safetensors", "edge", ExportDtype::F16, true),
];

#[test]
#[ignore = "writes the exported files make_infer_torch.py reads"]
fn write_exported_files() {
    let dir = std::env::var("INFOMAX_PARITY_DIR").unwrap_or_else(|_| "/tmp/infomax-parity".into());
    std::fs::create_dir_all(&dir).unwrap();
    for (file, preset, dtype, folded) in FILES {
        let bytes = to_bytes(&model(preset), dtype, folded, &[]).unwrap();
        std::fs::write(format!("{dir}/{file}"), bytes).unwrap();
    }
}

fn fixture() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/infer_torch.safetensors")).unwrap()
}

fn tensor(st: &safetensors::SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture has no {name}"));
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn scaled_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs())) / scale
}

/// Our folded f32 export through the no-alloc path against PyTorch, with
/// and without BN; our f16 edge export against PyTorch on the same f16 file.
#[test]
fn pytorch_outputs_match_the_no_alloc_path() {
    let fx = fixture();
    let st = safetensors::SafeTensors::deserialize(&fx).unwrap();
    for (preset, torch_names, dtype) in [
        ("conv28", ["conv28_f32_folded", "conv28_f32_unfolded"].as_slice(), ExportDtype::F32),
        ("edge", ["edge_f16_folded"].as_slice(), ExportDtype::F16),
    ] {
        let x = tensor(&st, &format!("{preset}.x"));
        let bytes = to_bytes(&model(preset), dtype, true, &[]).unwrap();
        let w = Weights::<32>::parse(&bytes).unwrap();
        let n = x.len() / 784;
        let plan = Plan::from_weights(&w, n).unwrap();
        let mut y = vec![0f32; plan.output_len()];
        let mut fc = vec![0f32; plan.tap_len(Tap::Fc).unwrap()];
        let taps = Taps { fc: Some(&mut fc), ..Taps::default() };
        plan.encode_with_taps(&w, &x, &mut vec![0f32; plan.scratch_len()], &mut y, taps).unwrap();
        for name in torch_names {
            let (ey, efc) = (
                scaled_err(&y, &tensor(&st, &format!("{name}.y"))),
                scaled_err(&fc, &tensor(&st, &format!("{name}.fc"))),
            );
            println!("{name}: Y error {ey:.2e}, fc error {efc:.2e} (relative to the output scale)");
            assert!(ey <= 1e-5 && efc <= 1e-5, "{name}: Y {ey:e}, fc {efc:e}");
        }
    }
}
