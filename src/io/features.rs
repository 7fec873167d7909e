//! The file `infomax embed` writes: features of a frozen encoder as
//! safetensors, with metadata that says where they came from, so that
//! another tool (NumPy, PyTorch, a vector store) can use them without
//! asking infomax. The keys are documented in docs/eval.md ("Embeddings").

use std::collections::HashMap;

use crate::train::{Features, HostError};

/// `format` of a features file.
pub const FORMAT: &str = "infomax-features";
/// `version` of a features file.
pub const VERSION: &str = "1";
/// The taps an encoder can give, in file order.
pub const TAPS: [&str; 3] = ["conv", "fc", "y"];
/// How pixels become the encoder's input (`normalisation` metadata).
pub const NORMALISATION: &str =
    "u8 pixels p in NCHW order become (p/255 - 0.5)/0.5 in [-1, 1]; encoder in eval mode (BN running statistics)";
/// How labels are stored (`labels_dtype` metadata).
pub const LABELS_DTYPE: &str = "I64: class index 0..classes (image folders: class folders sorted by name)";

/// Where features came from: one string per metadata key.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// The model file as the user named it.
    pub source: String,
    /// The file read (a run folder resolves to its latest checkpoint).
    pub source_file: String,
    /// SHA-256 of `source_file`, lower-case hex.
    pub source_sha256: String,
    /// The data folder.
    pub data: String,
    /// The format read (`idx`, `cifar10`, `image-folder`, ...).
    pub dataset: String,
    /// `train` or `test`.
    pub split: String,
    /// The encoder input `[c, h, w]`.
    pub input: [usize; 3],
    /// Resize and crop applied to fit the images to `input`.
    pub fit: String,
    /// Class names, index = label (image folders), else empty.
    pub classes: Vec<String>,
}

/// The taps of `f` this encoder has, as `(name, width, values)`.
fn available(f: &Features) -> Vec<(&'static str, usize, &[f32])> {
    let mut v = Vec::new();
    if let Some((d, x)) = &f.conv {
        v.push(("conv", *d, x.as_slice()));
    }
    if let Some((d, x)) = &f.fc {
        v.push(("fc", *d, x.as_slice()));
    }
    v.push(("y", f.y.0, f.y.1.as_slice()));
    v
}

/// Checks `wanted` (empty: every tap) against the taps of `f`; an unknown
/// or missing tap is an error that lists those available.
pub fn select_taps(f: &Features, wanted: &[String]) -> Result<Vec<&'static str>, HostError> {
    let have: Vec<&'static str> = available(f).iter().map(|t| t.0).collect();
    if wanted.is_empty() {
        return Ok(have);
    }
    let mut out = Vec::new();
    for w in wanted {
        match have.iter().find(|h| **h == w.as_str()) {
            Some(h) if !out.contains(h) => out.push(*h),
            Some(_) => {}
            None => {
                return Err(HostError::Config(format!(
                    "--tap {w}: this encoder's taps are {} ({} is {})",
                    have.join(", "),
                    w,
                    if TAPS.contains(&w.as_str()) { "not in this encoder" } else { "not a tap name" }
                )));
            }
        }
    }
    // File order, whatever order they were asked in.
    out.sort_by_key(|t| TAPS.iter().position(|x| x == t));
    Ok(out)
}

/// The safetensors bytes of `taps` of `f`, with `labels` (I64) if given.
pub fn to_bytes(
    f: &Features,
    taps: &[&str],
    labels: Option<&[u16]>,
    classes: usize,
    p: &Provenance,
) -> Result<Vec<u8>, HostError> {
    let le = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut shapes = Vec::new();
    for (name, d, x) in available(f).into_iter().filter(|t| taps.contains(&t.0)) {
        owned.push((name.into(), safetensors::Dtype::F32, vec![f.n, d], le(x)));
        shapes.push(format!("\"{name}\":[{},{d}]", f.n));
    }
    if let Some(l) = labels {
        let bytes = l.iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect();
        owned.push(("labels".into(), safetensors::Dtype::I64, vec![l.len()], bytes));
    }
    let json = |v: &serde_json::Value| v.to_string();
    let mut meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("version", VERSION.to_string()),
        ("source", p.source.clone()),
        ("source_file", p.source_file.clone()),
        ("source_sha256", p.source_sha256.clone()),
        ("data", p.data.clone()),
        ("dataset", p.dataset.clone()),
        ("split", p.split.clone()),
        ("images", f.n.to_string()),
        ("input", json(&serde_json::json!(p.input))),
        ("fit", p.fit.clone()),
        ("taps", format!("{{{}}}", shapes.join(","))),
        ("normalisation", NORMALISATION.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if labels.is_some() {
        meta.insert("labels_dtype".into(), LABELS_DTYPE.into());
        meta.insert("classes".into(), classes.to_string());
        if !p.classes.is_empty() {
            meta.insert("class_names".into(), json(&serde_json::json!(p.classes)));
        }
    }
    let views = owned
        .iter()
        .map(|(n, dt, s, b)| {
            safetensors::tensor::TensorView::new(*dt, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| HostError::Config(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(meta)).map_err(|e| HostError::Config(e.to_string()))
}
