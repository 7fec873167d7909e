//! Export, then prove the exported file: run it through the `no_std`
//! inference path on a dataset and compare Y with the training code's eval
//! forward. The main job does this for f32 and f16 after every training.

use std::path::{Path, PathBuf};

use super::export::{ExportDtype, to_bytes};
use crate::data::Dataset;
use crate::dim::Dim;
use crate::host_error::{HostError, Result};
use crate::infer::{Arch, InferError, Plan, Weights, normalize_into};
use crate::train::checkpoint;

/// What one exported file did on the inference path.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportCheck {
    /// Where the file was written.
    pub path: PathBuf,
    /// Its weights' type.
    pub dtype: ExportDtype,
    /// Its size in bytes.
    pub bytes: usize,
    /// Images per `encode` call.
    pub batch: usize,
    /// `encode`'s scratch at that batch, bytes.
    pub scratch_bytes: usize,
    /// Wall time per image on one thread, µs.
    pub us_per_image: f64,
    /// Largest |ΔY| against the training code.
    pub max_abs_err: f32,
    /// Largest |Y| of the training code (the scale the tolerance is of).
    pub scale: f32,
}

/// Largest accepted |ΔY| as a fraction of max |Y|: f32 weights agree to
/// rounding, f16 and bf16 to their mantissas.
pub fn tolerance(dtype: ExportDtype) -> f32 {
    if dtype == ExportDtype::F32 { 1e-5 } else { 2e-3 }
}

/// Exports `model` (BN folded) as `dtype` to `path`, encodes every image of
/// `data` from the file's bytes through [`Plan::encode`] (batches of up to
/// 100, a server-sized weight tile) and compares with `reference` (the
/// training code's Y, `[data.n, y_dim]`). A difference past [`tolerance`]
/// is an error naming the file.
pub fn export_and_check(
    model: &Dim,
    data: &Dataset,
    reference: &[f32],
    dtype: ExportDtype,
    path: &Path,
) -> Result<ExportCheck> {
    let y_dim = model.encoder.cfg.y_dim;
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(f32::MIN_POSITIVE);
    let bytes = to_bytes(model, dtype, true, &[])?;
    checkpoint::write_atomic(path, &bytes)?;
    let bad = |e: InferError| HostError::Format { path: path.to_path_buf(), reason: e.to_string() };
    let weights = Weights::<32>::parse(&bytes).map_err(bad)?;
    let arch = Arch::from_weights(&weights).map_err(bad)?;
    let batch = data.n.clamp(1, 100);
    let img: usize = arch.input().iter().product();
    if reference.len() != data.n * y_dim || data.images.len() < data.n * img {
        return Err(HostError::Config("the reference Y or the images do not match the dataset".into()));
    }
    let plans = [
        Plan::with_weight_tile(&arch, batch, 1 << 20).map_err(bad)?,
        Plan::with_weight_tile(&arch, (data.n % batch).max(1), 1 << 20).map_err(bad)?,
    ];
    // The application's buffers, allocated once; `encode` itself allocates nothing.
    let mut scratch = vec![0f32; plans[0].scratch_len().max(plans[1].scratch_len())];
    let mut input = vec![0f32; batch * img];
    let mut y = vec![0f32; batch * y_dim];
    let t0 = std::time::Instant::now();
    let mut err = 0f32;
    for (c, chunk) in data.images[..data.n * img].chunks(batch * img).enumerate() {
        let plan = if chunk.len() == batch * img { &plans[0] } else { &plans[1] };
        let k = chunk.len() / img;
        normalize_into(chunk, &mut input[..k * img]).map_err(bad)?;
        plan.encode(&weights, &input[..k * img], &mut scratch, &mut y[..k * y_dim]).map_err(bad)?;
        let want = &reference[c * batch * y_dim..c * batch * y_dim + k * y_dim];
        for (a, b) in y[..k * y_dim].iter().zip(want) {
            err = err.max((a - b).abs());
        }
    }
    let us_per_image = t0.elapsed().as_secs_f64() * 1e6 / data.n.max(1) as f64;
    let tol = tolerance(dtype);
    if err > tol * scale {
        return Err(HostError::Format {
            path: path.to_path_buf(),
            reason: format!("the inference path's Y differs from training's by {err:e} (tolerance {tol:e} of scale)"),
        });
    }
    Ok(ExportCheck {
        path: path.to_path_buf(),
        dtype,
        bytes: bytes.len(),
        batch,
        scratch_bytes: 4 * plans[0].scratch_len(),
        us_per_image,
        max_abs_err: err,
        scale,
    })
}

/// [`export_and_check`] for f32 and f16 into `out_dir/encoder-{f32,f16}.safetensors`,
/// side by side on two threads (each check is single-threaded, as on a
/// device), against the training code's Y on `data`.
pub fn deploy(model: &mut Dim, data: &Dataset, out_dir: &Path) -> Result<[ExportCheck; 2]> {
    let reference = crate::train::extract_features(model, data, 500)?.y.1;
    let model = &*model;
    let check = |dtype: ExportDtype| {
        let path = out_dir.join(format!("encoder-{}.safetensors", dtype.name()));
        export_and_check(model, data, &reference, dtype, &path)
    };
    let (f32_check, f16_check) = std::thread::scope(|sc| {
        let f16 = sc.spawn(|| check(ExportDtype::F16));
        (check(ExportDtype::F32), f16.join())
    });
    let f16_check = f16_check.map_err(|_| HostError::Config("the f16 inference check panicked".into()))?;
    Ok([f32_check?, f16_check?])
}
