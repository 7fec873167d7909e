//! PyTorch → infomax: `infomax import` reads a DIM trained in PyTorch
//! (`tests/golden/make_import_torch.py`: the reference of
//! `scripts/torch/dim_ref.py`, trained 40 steps) and the file it writes
//! gives PyTorch's Y, through the no-alloc inference path and through the
//! training path, within 1e-6 of the output scale; BN layers kept or
//! fused by PyTorch; the file fine-tunes with `--init`; bad state_dicts
//! are refused with the tensor named.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch::Scratch;
use infomax::data::Dataset;
use infomax::infer::{Plan, Weights};

const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn f32s(st: &safetensors::SafeTensors<'_>, name: &str) -> Vec<f32> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("no tensor {name}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// max |a − b| / max |b|.
fn scaled_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &v| m.max(f64::from(v).abs()));
    a.iter().zip(b).fold(0f64, |m, (&x, &y)| m.max((f64::from(x) - f64::from(y)).abs())) / scale
}

/// Y of an inference file on `x` through the no-alloc path.
fn encode(file: &Path, x: &[f32]) -> Vec<f32> {
    let bytes = std::fs::read(file).unwrap();
    let w = Weights::<32>::parse(&bytes).unwrap();
    let plan = Plan::from_weights(&w, x.len() / 784).unwrap();
    let mut y = vec![0f32; plan.output_len()];
    plan.encode(&w, x, &mut vec![0f32; plan.scratch_len()], &mut y).unwrap();
    y
}

/// Y of an inference file read back into a model, through the training
/// code's eval-mode forward (what eval and embed run).
fn encode_training_path(file: &Path, x: &[f32]) -> Vec<f32> {
    let mut model = infomax::train::import::load_encoder_file(file).unwrap();
    // The inputs are normalised pixels: back to the u8 the dataset holds
    // (exact: they are (p/255 - 0.5)/0.5 of integer p).
    let bytes: Vec<u8> = x.iter().map(|&v| ((v * 0.5 + 0.5) * 255.0).round() as u8).collect();
    let ds = Dataset::new(bytes, None, 1, 28, 28, 10).unwrap();
    infomax::train::extract_features(&mut model, &ds, 16).unwrap().y.1
}

#[test]
fn a_pytorch_trained_state_dict_imports_to_pytorchs_outputs() {
    let dir = Scratch::new("import", "torch");
    let fx = std::fs::read(golden("import_torch_y.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&fx).unwrap();
    let (x, y_bn, y_folded) = (f32s(&st, "x"), f32s(&st, "y_bn"), f32s(&st, "y_folded"));
    let cfg = golden("import_torch_encoder.json");
    let (dim_sd, folded_sd) = (golden("import_torch_dim.safetensors"), golden("import_torch_folded.safetensors"));

    // The whole DIM module's state_dict (heads and BN counters left out),
    // BN folded by infomax, and BN kept.
    let (a, b, c) = (dir.join("a.safetensors"), dir.join("b.safetensors"), dir.join("c.safetensors"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (ok, out, err) = cli(&["import", &s(&dim_sd), "--encoder-config", &s(&cfg), "--out", &s(&a)]);
    assert!(ok, "{err}");
    assert!(out.contains("read 17 encoder tensors (with BN layers), left out 25"), "{out}");
    let (ok, _, err) = cli(&["import", &s(&dim_sd), "--encoder-config", &s(&cfg), "--unfolded", "--out", &s(&b)]);
    assert!(ok, "{err}");
    // PyTorch's own fused encoder, its config from the file's metadata.
    let (ok, out, err) = cli(&["import", &s(&folded_sd), "--out", &s(&c)]);
    assert!(ok, "{err}");
    assert!(out.contains("(folded)"), "{out}");

    // The no-alloc path reads folded files only; the BN-kept file goes
    // through the training path (eval, embed, --init).
    for (what, file, want, plan) in
        [("folded here", &a, &y_bn, true), ("BN kept", &b, &y_bn, false), ("fused by PyTorch", &c, &y_folded, true)]
    {
        let e_plan = if plan { scaled_err(&encode(file, &x), want) } else { 0.0 };
        let e_train = scaled_err(&encode_training_path(file, &x), want);
        let p = if plan { format!("{e_plan:.2e}") } else { "-".into() };
        println!("{what}: Y error {p} (no-alloc path), {e_train:.2e} (training path), of the output scale");
        assert!(e_plan <= 1e-6 && e_train <= 1e-6, "{what}: {e_plan:e}, {e_train:e}");
    }
    // Kept BN: PyTorch's tensors, bit for bit.
    let (src, kept) = (std::fs::read(&dim_sd).unwrap(), std::fs::read(&b).unwrap());
    let (src, kept) =
        (safetensors::SafeTensors::deserialize(&src).unwrap(), safetensors::SafeTensors::deserialize(&kept).unwrap());
    for name in
        ["encoder.conv1.weight", "encoder.bn2.running_var", "encoder.fc.weight", "encoder.bn3.bias", "encoder.out.bias"]
    {
        assert_eq!(src.tensor(name).unwrap().data(), kept.tensor(name).unwrap().data(), "{name}");
    }

    // --init fine-tunes from the imported file (BN kept) on the bundled data.
    let enc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-subset");
    let config = serde_json::json!({
        "model": {"encoder": enc, "mi_units": 32},
        "data": {"kind": "fashion-mnist", "dir": data},
        "steps": 2,
    });
    let cfg_file = dir.join("ft.json");
    std::fs::write(&cfg_file, config.to_string()).unwrap();
    let run = dir.join("ft");
    let (ok, out, err) = cli(&[
        "train",
        "--config",
        &s(&cfg_file),
        "--init",
        &s(&b),
        "--no-eval",
        "--no-export",
        "--no-probe",
        "--out",
        &s(&run),
    ]);
    assert!(ok, "{err}");
    assert!(format!("{out}{err}").contains("loaded"), "{out}{err}");
}

#[test]
fn bad_state_dicts_are_refused_naming_what_is_wrong() {
    let dir = Scratch::new("import", "bad");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (dim_sd, cfg) = (golden("import_torch_dim.safetensors"), golden("import_torch_encoder.json"));
    let out = dir.join("x.safetensors");
    let refused = |args: &[&str], want: &[&str]| {
        let (ok, _, err) = cli(args);
        assert!(!ok, "{args:?} accepted");
        for w in want {
            assert!(err.contains(w), "{args:?}: the error must say {w:?}: {err}");
        }
        assert!(!out.exists(), "{args:?} wrote a file");
    };
    // No architecture anywhere.
    refused(&["import", &s(&dim_sd), "--out", &s(&out)], &["--encoder", "encoder_config"]);
    // Another architecture: the first tensor that does not fit is named.
    refused(&["import", &s(&dim_sd), "--encoder", "conv28", "--out", &s(&out)], &["encoder.conv1.weight", "shape"]);
    // A tensor that belongs to no layer of the encoder.
    let bytes = std::fs::read(&dim_sd).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
    tensors.iter_mut().filter(|(n, _)| n == "encoder.fc.weight").for_each(|(n, _)| *n = "encoder.fc9.weight".into());
    let renamed = dir.join("renamed.safetensors");
    std::fs::write(&renamed, safetensors::serialize(tensors, None).unwrap()).unwrap();
    refused(&["import", &s(&renamed), "--encoder-config", &s(&cfg), "--out", &s(&out)], &["encoder.fc.weight"]);
    // Not a safetensors file (a .pt pickle, say).
    let pt = dir.join("model.pt");
    std::fs::write(&pt, b"\x80\x02}q\x00.PK").unwrap();
    refused(&["import", &s(&pt), "--encoder-config", &s(&cfg), "--out", &s(&out)], &["not a safetensors file", ".pt"]);
    // The output may not be the input.
    let copy = dir.join("sd.safetensors");
    std::fs::copy(&dim_sd, &copy).unwrap();
    let (ok, _, err) = cli(&["import", &s(&copy), "--encoder-config", &s(&cfg), "--out", &s(&copy)]);
    assert!(!ok && err.contains("sd.safetensors"), "{err}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&dim_sd).unwrap(), "the input is untouched");
}
