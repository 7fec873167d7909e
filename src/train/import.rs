//! Inference files back into a model: an exported encoder (BN folded or
//! not) becomes a [`Dim`] whose encoder computes what the file computes, so
//! that `eval`, `embed` and `--init` take exported files as they take
//! checkpoints.
//!
//! A folded layer's BN is set to the identity in evaluation mode
//! (γ = 1, running mean 0, running variance `v` with `1/√(v + ε) = 1`
//! exactly in f32) and the folded bias goes to the layer's bias, or to β if
//! the layer has none. Y is then the file's Y to rounding: the bias is added
//! after the matrix product instead of inside it. Fine-tuning from a folded
//! file starts from these values; in training mode BN normalises with the
//! batch's statistics again (docs/inference.md, "Exported files elsewhere").

use std::collections::HashMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use crate::dim::{Dim, DimConfig, EncoderConfig, EncoderSpec};
use crate::host_error::{HostError, Result};
use crate::kernels::NORM_EPS;
use crate::model::{ENCODER_PREFIX, Stem};

/// Largest inference file read: the parameter limit in f32, plus a header.
pub const MAX_ENCODER_FILE_BYTES: u64 = 4 * (super::MAX_PARAMS as u64) + (1 << 20);

/// Whether the safetensors file at `path` is an inference file (its
/// metadata `format` is `infomax-encoder`), from its header alone.
pub fn is_encoder_file(path: &Path) -> Result<bool> {
    let meta = super::checkpoint::read_metadata(path)?;
    Ok(meta.get("format").is_some_and(|f| f == crate::infer::FORMAT))
}

/// Reads the inference file at `path` into a model ([`model_from_encoder_bytes`]).
pub fn load_encoder_file(path: &Path) -> Result<Dim> {
    let bytes = crate::files::read_bounded(path, MAX_ENCODER_FILE_BYTES)
        .map_err(crate::host_error::io(path, "read encoder file"))?;
    model_from_encoder_bytes(&bytes, path)
}

/// A running variance `v` with `1/√(v + ε) == 1` in f32 (the BN kernel's
/// arithmetic), so that an identity BN is exact.
fn identity_var() -> f32 {
    let eps = NORM_EPS as f32;
    let mut v = 1.0f32 - eps;
    for _ in 0..8 {
        let s = 1.0 / (v + eps).sqrt();
        if s == 1.0 {
            return v;
        }
        v = if s > 1.0 { f32::from_bits(v.to_bits() + 1) } else { f32::from_bits(v.to_bits() - 1) };
    }
    v
}

/// Tensors by name: shape and values in f32.
type Tensors = HashMap<String, (Vec<usize>, Vec<f32>)>;

/// The tensors of `bytes` as f32, by name.
fn tensors_f32(st: &SafeTensors<'_>, path: &Path) -> Result<Tensors> {
    let bad = |reason: String| HostError::Format { path: path.to_path_buf(), reason };
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            d => return Err(bad(format!("tensor {name} is {d:?}: f32, f16 and bf16 are read"))),
        };
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// A model whose encoder computes what the inference file `bytes` computes
/// (the heads are fresh: they are not in the file). `path` names the file
/// in errors.
pub fn model_from_encoder_bytes(bytes: &[u8], path: &Path) -> Result<Dim> {
    let bad = |reason: String| HostError::Format { path: path.to_path_buf(), reason };
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let meta: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(crate::infer::FORMAT) {
        return Err(bad(format!("not an infomax inference file (metadata format is not {:?})", crate::infer::FORMAT)));
    }
    let text = meta.get("encoder_config").ok_or_else(|| bad("metadata has no encoder_config".into()))?;
    let enc: EncoderConfig = serde_json::from_str(text).map_err(|e| bad(format!("encoder_config: {e}")))?;
    let folded = match meta.get("folded").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        other => return Err(bad(format!("metadata folded is {other:?}, not \"true\" or \"false\""))),
    };
    let cfg = DimConfig { encoder: EncoderSpec::Custom(enc), ..DimConfig::new("conv28").mi_units(64) };
    cfg.validate().map_err(|e| bad(format!("encoder_config: {e}")))?;
    let mut model = Dim::new(cfg).map_err(|e| bad(format!("encoder_config: {e}")))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut tensors = tensors_f32(&st, path)?;
    let mut take = |name: &str, len: usize| -> Result<Vec<f32>> {
        let (shape, v) = tensors.remove(name).ok_or_else(|| bad(format!("has no tensor {name}")))?;
        if v.len() != len {
            return Err(bad(format!("tensor {name} has shape {shape:?}, {} values; the encoder needs {len}", v.len())));
        }
        Ok(v)
    };
    let mut names = Vec::new();
    for io in model.encoder.cfg.walk()? {
        let io = io?;
        names.push((format!("{ENCODER_PREFIX}{}", io.stem), format!("{ENCODER_PREFIX}{}", io.bn_name())));
    }
    names.push((format!("{ENCODER_PREFIX}{}", Stem::Out), String::new()));
    let blocks: Vec<_> = model.encoder.blocks.iter().chain(core::iter::once(&model.encoder.out)).cloned().collect();
    let var1 = identity_var();
    for (b, (stem, bn_stem)) in blocks.iter().zip(names) {
        let (wid, bid) = b.weight_and_bias().ok_or(HostError::Unsupported("bottleneck blocks"))?;
        let rows = b.pre[0];
        let w = take(&format!("{stem}.weight"), wid.len())?;
        model.params[wid.range()].copy_from_slice(&w);
        let has_bias_tensor = st.tensor(&format!("{stem}.bias")).is_ok();
        let bias = if has_bias_tensor { Some(take(&format!("{stem}.bias"), rows)?) } else { None };
        match (&b.bn, folded) {
            (Some(bn), true) => {
                let bias = bias.ok_or_else(|| bad(format!("folded file has no tensor {stem}.bias")))?;
                model.params[bn.gamma.range()].fill(1.0);
                model.buffers[bn.rm.range()].fill(0.0);
                model.buffers[bn.rv.range()].fill(var1);
                match bid {
                    Some(bid) => {
                        model.params[bid.range()].copy_from_slice(&bias);
                        model.params[bn.beta.range()].fill(0.0);
                    }
                    None => model.params[bn.beta.range()].copy_from_slice(&bias),
                }
            }
            (bn, _) => {
                match (bid, bias) {
                    (Some(bid), Some(v)) => model.params[bid.range()].copy_from_slice(&v),
                    (Some(_), None) => return Err(bad(format!("has no tensor {stem}.bias"))),
                    (None, Some(v)) if v.iter().any(|&x| x != 0.0) => {
                        return Err(bad(format!("{stem}.bias is not zero, and this layer has no bias")));
                    }
                    _ => {}
                }
                if let Some(bn) = bn {
                    for (part, range, buffer) in [
                        ("weight", bn.gamma.range(), false),
                        ("bias", bn.beta.range(), false),
                        ("running_mean", bn.rm.range(), true),
                        ("running_var", bn.rv.range(), true),
                    ] {
                        let v = take(&format!("{bn_stem}.{part}"), rows)?;
                        let dst = if buffer { &mut model.buffers[range] } else { &mut model.params[range] };
                        dst.copy_from_slice(&v);
                    }
                }
            }
        }
    }
    if let Some(extra) = tensors.keys().min() {
        return Err(bad(format!("tensor {extra} is not part of this encoder ({} left over)", tensors.len())));
    }
    Ok(model)
}

/// The model in `path`: a checkpoint's (a file, a run folder or its
/// `latest`), or an inference file's ([`load_encoder_file`]). Optimiser
/// state, if any, is not read.
pub fn load_model(path: &Path) -> Result<Dim> {
    let path = super::checkpoint::resolve(path)?;
    if is_encoder_file(&path)? { load_encoder_file(&path) } else { Ok(super::checkpoint::load(&path)?.model) }
}

/// Largest PyTorch state_dict file read: an encoder at the parameter limit
/// with MI heads beside it, in f32.
pub const MAX_STATE_DICT_BYTES: u64 = 2 * MAX_ENCODER_FILE_BYTES;

/// Prefixes of tensors a PyTorch DIM state_dict holds besides the encoder's;
/// `infomax import` leaves them out (and counts them).
pub const NOT_ENCODER: [&str; 4] = ["local_head.", "global_head.", "prior.", "discriminator."];

/// What [`import_state_dict`] read.
pub struct Imported {
    /// A model whose encoder computes what the PyTorch encoder computes.
    pub model: Dim,
    /// Encoder tensors read.
    pub tensors: usize,
    /// Whether the state_dict had its BN layers (false: folded).
    pub had_bn: bool,
    /// Tensors left out: MI heads and BN counters (`num_batches_tracked`).
    pub ignored: Vec<String>,
    /// SHA-256 of the file read, lower-case hex.
    pub sha256: String,
}

/// Reads a PyTorch `state_dict` saved with `safetensors.torch.save_file`
/// into a model. The encoder is `encoder` if given, else the file's
/// `encoder_config` metadata (the JSON of [`EncoderConfig`]). Names are
/// the reference encoder's (`scripts/torch/dim_ref.py`: `conv1.weight`,
/// `bn1.running_var`, `fc.weight`, `out.bias`, ...), with or without an
/// `encoder.` prefix (a whole DIM module's state_dict) and a `module.` one
/// (DataParallel). With BN layers (`bn*` tensors) each is read as is;
/// without, the file is taken as folded (every layer with a bias), as
/// [`model_from_encoder_bytes`] reads a folded inference file. Every
/// encoder tensor must be there with its shape; any other tensor is an
/// error naming it, except the MI heads' ([`NOT_ENCODER`]) and the BN
/// counters.
pub fn import_state_dict(path: &Path, encoder: Option<EncoderConfig>) -> Result<Imported> {
    let bad = |reason: String| HostError::Format { path: path.to_path_buf(), reason };
    let bytes = crate::files::read_bounded(path, MAX_STATE_DICT_BYTES)
        .map_err(crate::host_error::io(path, "read the state_dict"))?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| bad(format!("not a safetensors file ({e}); a .pt file converts as docs/inference.md shows")))?;
    let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    if meta.get("format").is_some_and(|f| f == crate::infer::FORMAT) {
        return Err(bad("is already an infomax inference file: eval, embed and --init read it as it is".into()));
    }
    let enc = match (encoder, meta.get("encoder_config")) {
        (Some(e), _) => e,
        (None, Some(text)) => serde_json::from_str(text).map_err(|e| bad(format!("metadata encoder_config: {e}")))?,
        (None, None) => {
            return Err(bad("says nothing of its architecture: pass --encoder PRESET or --encoder-config FILE.json, \
                            or store encoder_config in its metadata"
                .into()));
        }
    };
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let mut kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = Vec::new();
    let mut ignored = Vec::new();
    for (name, view) in st.tensors() {
        let short = name.strip_prefix("module.").unwrap_or(&name);
        let short = short.strip_prefix(ENCODER_PREFIX).unwrap_or(short);
        if short.ends_with(".num_batches_tracked") || NOT_ENCODER.iter().any(|p| short.starts_with(p)) {
            ignored.push(name.clone());
            continue;
        }
        if !matches!(view.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(bad(format!(
                "tensor {name} is {:?}: f32, f16 and bf16 are read (model.float() before saving)",
                view.dtype()
            )));
        }
        let full = format!("{ENCODER_PREFIX}{short}");
        if kept.iter().any(|(n, _)| *n == full) {
            return Err(bad(format!("tensor {full} is in the file twice (with and without a prefix)")));
        }
        kept.push((full, view));
    }
    let is_bn = |n: &str| {
        n.strip_prefix(ENCODER_PREFIX)
            .and_then(|s| s.strip_prefix("bn"))
            .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_digit()))
    };
    let had_bn = kept.iter().any(|(n, _)| is_bn(n));
    let config_has_bn = enc.layers.iter().any(|l| match l {
        crate::dim::Layer::Conv { bn, .. } | crate::dim::Layer::Linear { bn, .. } => *bn,
        _ => false,
    });
    let folded = !had_bn && config_has_bn;
    let tensors = kept.len();
    let mut m = HashMap::new();
    m.insert("format".to_string(), crate::infer::FORMAT.to_string());
    m.insert("encoder_config".to_string(), serde_json::to_string(&enc).map_err(|e| HostError::Config(e.to_string()))?);
    m.insert("folded".to_string(), folded.to_string());
    let file = safetensors::serialize(kept, Some(m)).map_err(|e| bad(format!("cannot re-read its tensors: {e}")))?;
    let model = model_from_encoder_bytes(&file, path)?;
    Ok(Imported { model, tensors, had_bn, ignored, sha256: crate::sha256::sha256_hex(&bytes) })
}
