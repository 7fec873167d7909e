//! Crash-safe checkpoints in safetensors.
//!
//! A checkpoint holds every parameter and BN buffer under its PyTorch-style
//! name (so `load_state_dict` works on the encoder), the Adam moments
//! (`optim.m.<name>`, `optim.v.<name>`), and in its metadata the model and
//! training configs (JSON), the step, epoch and RNG state.
//!
//! Writes are atomic: a temporary file in the same folder, fsync, rename,
//! then fsync of the folder. The `latest` pointer is written the same way
//! after the checkpoint, so it never names a partial file.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::dim::Dim;
use crate::files;
use crate::host_error::{HostError, Result, io};
use crate::params::ParamTable;

/// Value of the `format` metadata key.
pub const FORMAT: &str = "infomax-checkpoint";
/// Version of the checkpoint layout.
pub const VERSION: &str = "1";
/// Name of the pointer file in a run folder.
pub const LATEST: &str = "latest";
/// Largest safetensors header read (the `safetensors` crate's limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Training progress saved with the weights.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Optimiser steps taken.
    pub step: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Augmentation/dropout RNG state.
    pub rng_state: u64,
    /// Training wall time so far, seconds.
    pub wall_s: f64,
    /// Batches done of the epoch under way: 0 at an epoch's end, and the
    /// position to go on from in a checkpoint the budget cut mid-epoch.
    #[serde(default)]
    pub batch: u64,
}

impl Progress {
    /// Checks every counter against [`crate::bounds`].
    pub fn validate(&self) -> crate::Result<()> {
        crate::bounds::PROGRESS_STEP.check_u64(self.step)?;
        crate::bounds::PROGRESS_EPOCH.check_u64(self.epoch)?;
        crate::bounds::PROGRESS_BATCH.check_u64(self.batch)?;
        crate::bounds::PROGRESS_WALL.check_f64(self.wall_s)
    }
}

pub use crate::optim::AdamState;

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Fault injection for the crash-safety tests: a pause in the middle of
/// every atomic write (so a SIGKILL can land while a temporary file is half
/// written) and a simulated full disk. Process-wide; the `infomax` binary
/// sets them from `INFOMAX_FAULT_*` variables (see docs/reliability.md).
#[doc(hidden)]
pub mod faults {
    use std::sync::atomic::{AtomicU64, Ordering};

    static WRITE_PAUSE_MS: AtomicU64 = AtomicU64::new(0);
    static BYTES_LEFT: AtomicU64 = AtomicU64::new(u64::MAX);

    /// Pauses `ms` milliseconds after the first half of every atomic write.
    pub fn set_write_pause_ms(ms: u64) {
        WRITE_PAUSE_MS.store(ms, Ordering::Relaxed);
    }

    /// Lets this process write `bytes` more bytes through [`super::write_atomic`],
    /// then fails like a full disk (`ErrorKind::StorageFull`).
    pub fn set_disk_full_after(bytes: u64) {
        BYTES_LEFT.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn write_pause_ms() -> u64 {
        WRITE_PAUSE_MS.load(Ordering::Relaxed)
    }

    /// Takes up to `want` bytes of the budget; returns how many were granted.
    pub(super) fn take(want: usize) -> usize {
        let want = want as u64;
        let granted = BYTES_LEFT
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(want)))
            .map_or(0, |left| left.min(want));
        granted as usize
    }
}

/// Writes through the fault hooks (a no-op layer unless a test set them).
fn write_with_faults(f: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    let (first, second) = bytes.split_at(bytes.len() / 2);
    for (i, part) in [first, second].into_iter().enumerate() {
        let granted = faults::take(part.len());
        f.write_all(&part[..granted])?;
        if granted < part.len() {
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device (injected)"));
        }
        let pause = faults::write_pause_ms();
        if i == 0 && pause > 0 {
            f.flush()?;
            std::thread::sleep(std::time::Duration::from_millis(pause));
        }
    }
    Ok(())
}

/// Marker in the names of temporary files (`.<name>.tmp-<pid>`).
const TMP_MARKER: &str = ".tmp-";

/// Removes temporary files that a killed writer left in `dir` (never this
/// process's own). Returns how many were removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize> {
    let own = format!("{TMP_MARKER}{}", std::process::id());
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(io(dir, "list output folder"))? {
        let entry = entry.map_err(io(dir, "list output folder"))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with('.')
            && name
                .rsplit_once(TMP_MARKER)
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        if ours && !name.ends_with(&own) && entry.file_type().is_ok_and(|t| t.is_file()) {
            fs::remove_file(entry.path()).map_err(io(entry.path(), "remove stale temporary file"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes `bytes` to `path` atomically (tmp, fsync, rename, fsync folder).
/// `path` must be a new path or a regular file ([`files::check_writable`]):
/// the rename would replace a device node. Errors name `path`, not the
/// temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    files::check_writable(path).map_err(io(path, "write"))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| HostError::Config(format!("{}: not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}{TMP_MARKER}{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp).map_err(io(path, "create a temporary file beside"))?;
        write_with_faults(&mut f, bytes).map_err(io(path, "write"))?;
        f.sync_all().map_err(io(path, "fsync"))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io(path, "move the written temporary file onto"))?;
        // The rename is durable only once the folder entry is.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir, "fsync folder"))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises the model, optimiser and progress to safetensors bytes.
pub fn to_bytes(
    model: &Dim,
    adam: Option<&AdamState>,
    progress: &Progress,
    extra: &[(&str, String)],
) -> Result<Vec<u8>> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let push_table = |owned: &mut Vec<_>, prefix: &str, table: &ParamTable, buf: &[f32]| {
        for e in table.entries() {
            owned.push((format!("{prefix}{}", e.name), e.shape.clone(), f32_bytes(&buf[e.range()])));
        }
    };
    push_table(&mut owned, "", &model.table, &model.params);
    push_table(&mut owned, "", &model.buffer_table, &model.buffers);
    if let Some(a) = adam {
        push_table(&mut owned, "optim.m.", &model.table, &a.m);
        push_table(&mut owned, "optim.v.", &model.table, &a.v);
    }
    let mut prior_step = None;
    if let Some(p) = &model.prior {
        push_table(&mut owned, "", p.table(), p.params());
        let (m, v, step) = p.adam_state();
        push_table(&mut owned, "optim.m.", p.table(), m);
        push_table(&mut owned, "optim.v.", p.table(), v);
        prior_step = Some(step);
    }
    let views = owned
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| HostError::Config(format!("tensor {n}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("version".to_string(), VERSION.to_string());
    meta.insert(
        "model_config".to_string(),
        serde_json::to_string(&model.cfg).map_err(|e| HostError::Config(e.to_string()))?,
    );
    meta.insert("progress".to_string(), serde_json::to_string(progress).map_err(|e| HostError::Config(e.to_string()))?);
    if let Some(step) = prior_step {
        meta.insert("prior_step".to_string(), step.to_string());
    }
    for (k, v) in extra {
        meta.insert((*k).to_string(), v.clone());
    }
    safetensors::serialize(views, Some(meta)).map_err(|e| HostError::Config(format!("serialise checkpoint: {e}")))
}

/// Saves a checkpoint atomically at `path`.
pub fn save(
    path: &Path,
    model: &Dim,
    adam: Option<&AdamState>,
    progress: &Progress,
    extra: &[(&str, String)],
) -> Result<()> {
    write_atomic(path, &to_bytes(model, adam, progress, extra)?)
}

/// Points `dir/latest` at `file_name` (atomically).
pub fn set_latest(dir: &Path, file_name: &str) -> Result<()> {
    write_atomic(&dir.join(LATEST), format!("{file_name}\n").as_bytes())
}

/// The checkpoint `dir/latest` names, if any.
pub fn latest(dir: &Path) -> Result<Option<PathBuf>> {
    let p = dir.join(LATEST);
    match files::read_text_bounded(&p, files::MAX_POINTER_BYTES) {
        Ok(s) => {
            let name = s.trim();
            if name.is_empty() || name.contains('/') || name.contains('\\') {
                return Err(HostError::Format { path: p, reason: "does not hold a checkpoint file name".into() });
            }
            Ok(Some(dir.join(name)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HostError::Io { path: p, action: "read", source: e }),
    }
}

/// The checkpoint a user's path names: a checkpoint file, a run folder
/// (its `latest`), or a `latest` pointer file.
pub fn resolve(path: &Path) -> Result<PathBuf> {
    let pointer_dir = if path.is_dir() {
        Some(path)
    } else if path.file_name().is_some_and(|n| n == LATEST) {
        path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
    } else {
        None
    };
    match pointer_dir {
        None => Ok(path.to_path_buf()),
        Some(dir) => latest(dir)?.ok_or_else(|| bad(path, "is a run folder without a checkpoint (no latest file)")),
    }
}

/// The metadata of the safetensors file at `path` (a checkpoint's
/// `model_config`, `train_config`, `progress`, ...).
///
/// Reads the header only, after the checks [`load`] makes on it.
pub fn read_metadata(path: &Path) -> Result<HashMap<String, String>> {
    let (_, _, bytes) = read_header(path, "read checkpoint")?;
    #[derive(serde::Deserialize)]
    struct Header {
        #[serde(rename = "__metadata__", default)]
        metadata: HashMap<String, String>,
    }
    let header =
        bytes.get(8..).filter(|h| !h.is_empty()).ok_or_else(|| bad(path, "not a safetensors file: too short"))?;
    serde_json::from_slice::<Header>(header)
        .map(|h| h.metadata)
        .map_err(|e| bad(path, format!("not a safetensors file: {e}")))
}

/// A loaded checkpoint.
pub struct Loaded {
    /// The model with its weights and BN statistics.
    pub model: Dim,
    /// Adam moments, if the file has them.
    pub adam: Option<AdamState>,
    /// Progress.
    pub progress: Progress,
    /// All metadata.
    pub metadata: HashMap<String, String>,
}

fn bad(path: &Path, reason: impl Into<String>) -> HostError {
    HostError::Format { path: path.to_path_buf(), reason: reason.into() }
}

/// Copies tensor `name` into `dst`, checking dtype and shape.
pub(crate) fn read_tensor(
    st: &SafeTensors<'_>,
    path: &Path,
    name: &str,
    shape: &[usize],
    dst: &mut [f32],
) -> Result<()> {
    let t = st.tensor(name).map_err(|_| bad(path, format!("missing tensor {name}")))?;
    if t.dtype() != Dtype::F32 {
        return Err(bad(path, format!("tensor {name} has dtype {:?}, expected F32", t.dtype())));
    }
    if t.shape() != shape {
        return Err(bad(path, format!("tensor {name} has shape {:?}, expected {shape:?} for this config", t.shape())));
    }
    for (d, c) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
        *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

/// Refuses a safetensors header that names a tensor twice (the
/// `safetensors` crate keeps the last one silently).
fn check_unique_names(path: &Path, bytes: &[u8]) -> Result<()> {
    struct Unique(Option<String>);
    impl<'de> serde::Deserialize<'de> for Unique {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct Keys;
            impl<'de> serde::de::Visitor<'de> for Keys {
                type Value = Unique;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Unique, A::Error> {
                    let mut seen = std::collections::HashSet::new();
                    while let Some(key) = map.next_key::<String>()? {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        if !seen.insert(key.clone()) {
                            return Ok(Unique(Some(key)));
                        }
                    }
                    Ok(Unique(None))
                }
            }
            d.deserialize_map(Keys)
        }
    }
    // Any other defect (length prefix, size, JSON) is left to `read_metadata`.
    let n = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes).unwrap_or(0);
    if n > MAX_HEADER_BYTES {
        return Ok(());
    }
    let header = usize::try_from(n).ok().and_then(|n| bytes.get(8..8usize.checked_add(n)?)).unwrap_or_default();
    match serde_json::from_slice::<Unique>(header) {
        Ok(Unique(Some(name))) => Err(bad(path, format!("the header names tensor {name} twice"))),
        _ => Ok(()),
    }
}

/// Reads a safetensors file, its header first: a header that is not
/// valid, or whose tensors do not cover the file exactly, is refused after
/// reading at most the header (no buffer the size of the file is made for
/// `/dev/zero`, a sparse file or a truncated download). The error is the
/// `safetensors` crate's own, as if it had read the whole file.
pub(crate) fn read_safetensors(path: &Path, action: &'static str) -> Result<Vec<u8>> {
    let (mut f, len, mut bytes) = read_header(path, action)?;
    if bytes.len() > 8 {
        files::append_len(&mut f, len - bytes.len() as u64, &mut bytes).map_err(io(path, action))?;
    }
    Ok(bytes)
}

/// The checks of [`read_safetensors`] on the length prefix and header
/// alone: the open file, its length and the bytes read (prefix and header
/// of a file that passed; at most 8 bytes of one too short to say).
fn read_header(path: &Path, action: &'static str) -> Result<(fs::File, u64, Vec<u8>)> {
    let (mut f, len) = files::open_regular(path).map_err(io(path, action))?;
    let not_st = |e: safetensors::SafeTensorError| bad(path, format!("not a safetensors file: {e}"));
    let mut bytes = Vec::new();
    files::append_exact(&mut f, len.min(8), &mut bytes).map_err(io(path, action))?;
    let n = bytes.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_le_bytes);
    if let Some(n) = n.filter(|&n| n <= MAX_HEADER_BYTES && n.saturating_add(8) <= len) {
        files::append_exact(&mut f, n, &mut bytes).map_err(io(path, action))?;
        check_unique_names(path, &bytes)?;
        match SafeTensors::read_metadata(&bytes) {
            Err(safetensors::SafeTensorError::MetadataIncompleteBuffer) => {}
            Err(e) => return Err(not_st(e)),
            Ok(_) => {}
        }
        // The header is valid and its offsets contiguous from 0: the
        // largest end is the data length it declares.
        let declared = serde_json::from_slice::<HashMap<String, serde_json::Value>>(&bytes[8..])
            .map_err(|e| bad(path, format!("not a safetensors file: {e}")))?
            .iter()
            .filter(|(k, _)| k.as_str() != "__metadata__")
            .filter_map(|(_, v)| v.get("data_offsets")?.get(1)?.as_u64())
            .max()
            .unwrap_or(0);
        if declared != len - 8 - n {
            return Err(bad(
                path,
                format!(
                    "not a safetensors file: {} (its header declares {declared} data bytes, the file holds {})",
                    safetensors::SafeTensorError::MetadataIncompleteBuffer,
                    len - 8 - n
                ),
            ));
        }
    } else if len <= 8 {
        // Too short: the crate says so below.
    } else {
        // A length prefix over the limit or past the end: the crate's error.
        return Err(not_st(
            SafeTensors::read_metadata(&bytes).err().unwrap_or(safetensors::SafeTensorError::InvalidHeaderLength),
        ));
    }
    Ok((f, len, bytes))
}

/// A checkpoint's `model_config`: every field must be there (a config file
/// may leave settings to their defaults; a checkpoint records them all, so
/// a missing one means the file was edited or damaged).
fn parse_model_config(text: &str) -> std::result::Result<crate::dim::DimConfig, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let cfg: crate::dim::DimConfig = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    let every = serde_json::to_value(crate::dim::DimConfig::new("conv28")).map_err(|e| e.to_string())?;
    if let (Some(have), Some(every)) = (value.as_object(), every.as_object())
        && let Some(k) = every.keys().find(|k| !have.contains_key(*k))
    {
        return Err(format!("no {k} (a checkpoint records every setting)"));
    }
    Ok(cfg)
}

/// Loads a checkpoint written by [`save`]; `path` may also be its run
/// folder or `latest` pointer ([`resolve`]).
pub fn load(path: &Path) -> Result<Loaded> {
    let path = &resolve(path)?;
    let bytes = read_safetensors(path, "read checkpoint")?;
    let (_, md) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(path, format!("not a safetensors file: {e}")))?;
    let metadata = md.metadata().clone().unwrap_or_default();
    if metadata.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(bad(path, "not an infomax checkpoint (metadata format)"));
    }
    if metadata.get("version").map(String::as_str) != Some(VERSION) {
        return Err(bad(path, format!("unsupported checkpoint version {:?}", metadata.get("version"))));
    }
    let cfg = metadata.get("model_config").ok_or_else(|| bad(path, "metadata has no model_config"))?;
    let cfg = parse_model_config(cfg).map_err(|e| bad(path, format!("model_config: {e}")))?;
    let progress: Progress = match metadata.get("progress") {
        Some(p) => serde_json::from_str(p).map_err(|e| bad(path, format!("progress: {e}")))?,
        None => Progress::default(),
    };
    progress.validate().map_err(|e| bad(path, format!("progress: {e}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, format!("invalid safetensors: {e}")))?;
    let need = crate::train::min_param_count(&cfg).map_err(|e| bad(path, format!("model_config: {e}")))?;
    let held = (bytes.len() / 4) as u128;
    if need > held || need > crate::train::MAX_PARAMS {
        return Err(bad(
            path,
            format!("its model config needs at least {need} parameters but the file holds at most {held}"),
        ));
    }
    let mut model = Dim::new(cfg)?;
    let (table, btable) = (model.table.clone(), model.buffer_table.clone());
    for e in table.entries() {
        read_tensor(&st, path, &e.name, &e.shape, &mut model.params[e.range()])?;
    }
    for e in btable.entries() {
        read_tensor(&st, path, &e.name, &e.shape, &mut model.buffers[e.range()])?;
    }
    let adam = if st.names().iter().any(|n| n.starts_with("optim.m.")) {
        let mut a = AdamState { m: vec![0.0; table.len()], v: vec![0.0; table.len()] };
        for e in table.entries() {
            read_tensor(&st, path, &format!("optim.m.{}", e.name), &e.shape, &mut a.m[e.range()])?;
            read_tensor(&st, path, &format!("optim.v.{}", e.name), &e.shape, &mut a.v[e.range()])?;
        }
        Some(a)
    } else {
        None
    };
    if let Some(p) = model.prior.as_mut() {
        let table = p.table().clone();
        let mut params = vec![0f32; table.len()];
        let (mut m, mut v) = (vec![0f32; table.len()], vec![0f32; table.len()]);
        for e in table.entries() {
            read_tensor(&st, path, &e.name, &e.shape, &mut params[e.range()])?;
            read_tensor(&st, path, &format!("optim.m.{}", e.name), &e.shape, &mut m[e.range()])?;
            read_tensor(&st, path, &format!("optim.v.{}", e.name), &e.shape, &mut v[e.range()])?;
        }
        let step = metadata
            .get("prior_step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(path, "metadata has no valid prior_step"))?;
        crate::bounds::PRIOR_STEP.check_u64(step).map_err(|e| bad(path, e.to_string()))?;
        p.params_mut().copy_from_slice(&params);
        p.set_adam_state(&m, &v, step)?;
    }
    Ok(Loaded { model, adam, progress, metadata })
}
