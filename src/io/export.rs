//! `infomax export`: a training checkpoint → an inference safetensors file.
//!
//! The file holds the encoder only (the MI heads, prior and optimiser state
//! stay out), under the reference PyTorch encoder's names. Folded (the
//! default), each batch norm is merged into the conv or linear before it, in
//! f64, then rounded once to the chosen dtype:
//! `W'[o] = W[o]·s`, `b'[o] = β − μ·s + b[o]·s` with `s = γ / √(σ² + ε)`,
//! ε = 1e-5 as in `kernels::norm`. Unfolded, the BN tensors are kept.
//!
//! The writer is ours (not `safetensors::serialize`) so the bytes are
//! deterministic: metadata keys sorted, tensors in encoder order, the header
//! padded with spaces (as the reference writer does, which pads to 8) so that
//! the data section starts at a multiple of [`DATA_ALIGN`] bytes: f32 weights
//! can then be read in place, and SIMD loads of them never split a cache line.

use std::collections::BTreeMap;
use std::path::Path;

use crate::dim::{Dim, EncoderConfig};
use crate::host_error::{HostError, Result};
use crate::infer::{FORMAT, FORMAT_VERSION};
use crate::kernels::NORM_EPS;
use crate::model::{ENCODER_PREFIX, Stem};
use crate::train::checkpoint;

/// The data section starts at a multiple of this many bytes from the start
/// of the file (a cache line). Every tensor of the presets has a byte length
/// that is a multiple of 16, so each one starts 16-byte aligned too. The
/// format allows no gaps between tensors, so that is as far as padding goes.
pub const DATA_ALIGN: usize = 64;

/// Element type of the exported weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportDtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16 (round to nearest even).
    F16,
    /// bfloat16 (round to nearest even).
    BF16,
}

impl ExportDtype {
    /// Lower-case name (`f32`, `f16`, `bf16`), as in the `dtype` metadata.
    pub fn name(self) -> &'static str {
        match self {
            ExportDtype::F32 => "f32",
            ExportDtype::F16 => "f16",
            ExportDtype::BF16 => "bf16",
        }
    }

    fn header(self) -> &'static str {
        match self {
            ExportDtype::F32 => "F32",
            ExportDtype::F16 => "F16",
            ExportDtype::BF16 => "BF16",
        }
    }

    fn push(self, v: f32, out: &mut Vec<u8>) {
        match self {
            ExportDtype::F32 => out.extend_from_slice(&v.to_le_bytes()),
            ExportDtype::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            ExportDtype::BF16 => out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
        }
    }
}

/// A tensor to write: name, shape, f32 values.
struct Named {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The text the `input_normalization` metadata key holds.
pub const INPUT_NORMALIZATION: &str = "(x / 255 - 0.5) / 0.5 per 8-bit pixel, NCHW, range [-1, 1]";

/// The encoder's tensors, folded or not, in encoder order.
fn encoder_tensors(model: &Dim, folded: bool) -> Result<Vec<Named>> {
    let enc = &model.encoder;
    if let Some(reason) = enc.inference_unsupported() {
        return Err(HostError::Unsupported(reason));
    }
    // Names from the model description: each layer's stem and its BN's.
    let mut names = Vec::with_capacity(enc.blocks.len() + 1);
    for io in enc.cfg.walk()? {
        let io = io?;
        names.push((format!("{ENCODER_PREFIX}{}", io.stem), format!("{ENCODER_PREFIX}{}", io.bn_name())));
    }
    names.push((format!("{ENCODER_PREFIX}{}", Stem::Out), String::new()));
    let mut out = Vec::new();
    for (b, (stem, bn_stem)) in enc.blocks.iter().chain(core::iter::once(&enc.out)).zip(names) {
        let (wid, bid) = b.weight_and_bias().ok_or(HostError::Unsupported("bottleneck blocks"))?;
        let rows = b.pre[0];
        let w = &model.params[wid.range()];
        let w_shape = model
            .table
            .get(&format!("{stem}.weight"))
            .map(|e| e.shape.clone())
            .ok_or_else(|| HostError::Config(format!("{stem}.weight missing")))?;
        let bias: Option<&[f32]> = bid.map(|o| &model.params[o.range()]);
        match (b.bn.as_ref(), folded) {
            (Some(bn), true) => {
                let p = &model.params;
                let k = wid.len() / rows;
                let mut wf = vec![0f32; wid.len()];
                let mut bf = vec![0f32; rows];
                for o in 0..rows {
                    let gamma = f64::from(p[bn.gamma.range().start + o]);
                    let beta = f64::from(p[bn.beta.range().start + o]);
                    let mean = f64::from(model.buffers[bn.rm.range().start + o]);
                    let var = f64::from(model.buffers[bn.rv.range().start + o]);
                    let s = gamma / (var + NORM_EPS).sqrt();
                    for j in 0..k {
                        wf[o * k + j] = (f64::from(w[o * k + j]) * s) as f32;
                    }
                    let b_old = bias.map_or(0.0, |b| f64::from(b[o]));
                    bf[o] = (beta - mean * s + b_old * s) as f32;
                }
                out.push(Named { name: format!("{stem}.weight"), shape: w_shape, values: wf });
                out.push(Named { name: format!("{stem}.bias"), shape: vec![rows], values: bf });
            }
            (bn, _) => {
                out.push(Named { name: format!("{stem}.weight"), shape: w_shape, values: w.to_vec() });
                match bias {
                    Some(bv) => {
                        out.push(Named { name: format!("{stem}.bias"), shape: vec![rows], values: bv.to_vec() })
                    }
                    // A folded file always has a bias, so the plan's layers are uniform.
                    None if folded => {
                        out.push(Named { name: format!("{stem}.bias"), shape: vec![rows], values: vec![0.0; rows] })
                    }
                    None => {}
                }
                if let Some(bn) = bn {
                    let pieces = [
                        ("weight", &model.params[bn.gamma.range()]),
                        ("bias", &model.params[bn.beta.range()]),
                        ("running_mean", &model.buffers[bn.rm.range()]),
                        ("running_var", &model.buffers[bn.rv.range()]),
                    ];
                    for (part, v) in pieces {
                        out.push(Named { name: format!("{bn_stem}.{part}"), shape: vec![rows], values: v.to_vec() });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The `taps` metadata: shapes per image of each feature tap.
fn taps_json(model: &Dim) -> String {
    let enc = &model.encoder;
    let shape = |i: Option<usize>| match i {
        Some(i) if enc.cfg.layers.get(i).is_some_and(|l| matches!(l, crate::dim::Layer::Linear { .. })) => {
            serde_json::json!([enc.blocks[i].out[0]])
        }
        Some(i) => serde_json::json!(enc.blocks[i].out),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "local": enc.local_shape(),
        "conv": shape(enc.conv_tap()),
        "fc": shape(enc.fc_tap()),
        "y": [enc.cfg.y_dim],
    })
    .to_string()
}

/// Serialises `tensors` and `metadata` as safetensors (deterministic bytes).
fn write_safetensors(tensors: &[Named], dtype: ExportDtype, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let js = |s: &str| serde_json::to_string(s).map_err(|e| HostError::Config(e.to_string()));
    let mut header = String::from("{\"__metadata__\":{");
    for (i, (k, v)) in metadata.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!("{}:{}", js(k)?, js(v)?));
    }
    header.push('}');
    let mut data = Vec::new();
    for t in tensors {
        let begin = data.len();
        for &v in &t.values {
            dtype.push(v, &mut data);
        }
        let shape = t.shape.iter().map(usize::to_string).collect::<Vec<_>>().join(",");
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":[{shape}],\"data_offsets\":[{begin},{}]}}",
            js(&t.name)?,
            dtype.header(),
            data.len()
        ));
    }
    header.push('}');
    while (8 + header.len()) % DATA_ALIGN != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    Ok(out)
}

/// The inference file of `model`'s encoder. `extra` metadata (e.g. the
/// training step) is added as is.
pub fn to_bytes(model: &Dim, dtype: ExportDtype, folded: bool, extra: &[(&str, String)]) -> Result<Vec<u8>> {
    let tensors = encoder_tensors(model, folded)?;
    let cfg: &EncoderConfig = &model.encoder.cfg;
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
    meta.insert("dtype".to_string(), dtype.name().to_string());
    meta.insert("folded".to_string(), folded.to_string());
    meta.insert(
        "encoder_config".to_string(),
        serde_json::to_string(cfg).map_err(|e| HostError::Config(e.to_string()))?,
    );
    meta.insert("taps".to_string(), taps_json(model));
    meta.insert("input_normalization".to_string(), INPUT_NORMALIZATION.to_string());
    meta.insert("bn_eps".to_string(), format!("{NORM_EPS:e}"));
    for (k, v) in extra {
        meta.insert((*k).to_string(), v.clone());
    }
    write_safetensors(&tensors, dtype, &meta)
}

/// What [`export`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Tensors in the file.
    pub tensors: usize,
    /// Bytes of weight data.
    pub weight_bytes: usize,
    /// Bytes of the whole file.
    pub file_bytes: usize,
}

/// Reads `checkpoint` and writes the inference file `out` atomically.
/// `out` may not be the checkpoint itself, nor anything but a regular file.
/// Weights or BN statistics that are not finite are refused unless
/// `allow_non_finite`.
pub fn export(
    checkpoint_path: &Path,
    out: &Path,
    dtype: ExportDtype,
    folded: bool,
    allow_non_finite: bool,
) -> Result<ExportSummary> {
    let resolved = checkpoint::resolve(checkpoint_path)?;
    crate::files::check_output(out, &[checkpoint_path, &resolved])
        .map_err(crate::host_error::io(out, "write the export to"))?;
    let loaded = checkpoint::load(&resolved)?;
    if !allow_non_finite {
        crate::train::check_model_finite(&loaded.model)?;
    }
    let extra = [("trained_steps", loaded.progress.step.to_string())];
    let bytes = to_bytes(&loaded.model, dtype, folded, &extra)?;
    let header = u64::from_le_bytes(bytes[..8].try_into().map_err(|_| HostError::Config("short file".into()))?);
    let summary = ExportSummary {
        tensors: encoder_tensors(&loaded.model, folded)?.len(),
        weight_bytes: bytes.len() - 8 - header as usize,
        file_bytes: bytes.len(),
    };
    checkpoint::write_atomic(out, &bytes)?;
    Ok(summary)
}
