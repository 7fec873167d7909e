//! The memory plan of a command: the bytes it will need, item by item,
//! computed from the config and the shapes before anything large is
//! allocated, and checked against a limit (docs/reliability.md, "Memory").
//!
//! The limit is 80% of the smaller of the kernel's `MemAvailable` and the
//! cgroup's `memory.max`, or what `--max-memory` says. Activation sizes are
//! upper bounds from the model description
//! ([`crate::dim::EncoderConfig::activation_floats`]); a plan that is too
//! large is refused naming its largest item, instead of aborting on an
//! allocation half-way.

use crate::dim::{Dim, DimConfig};
use crate::host_error::{HostError, Result};

/// The share of the available memory a command may plan to use.
pub const DEFAULT_SHARE: f64 = 0.8;

/// Images per forward pass when extracting features, unless the memory
/// limit needs fewer (the batch every published result used).
pub const DEFAULT_ENCODE_BATCH: usize = 500;

/// What a command will allocate, item by item (bytes).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MemoryPlan {
    /// (what, bytes), in the order added.
    pub items: Vec<(String, u128)>,
}

impl MemoryPlan {
    /// Adds an item.
    pub fn add(&mut self, what: impl Into<String>, bytes: u128) -> &mut Self {
        self.items.push((what.into(), bytes));
        self
    }

    /// The sum of all items.
    pub fn total(&self) -> u128 {
        self.items.iter().fold(0u128, |t, (_, b)| t.saturating_add(*b))
    }

    /// Refuses the plan if it needs more than `limit` bytes, naming its
    /// largest item.
    pub fn check(&self, limit: Limit) -> Result<()> {
        let need = self.total();
        if need <= u128::from(limit.bytes) {
            return Ok(());
        }
        let (what, bytes) = self.items.iter().max_by_key(|(_, b)| *b).cloned().unwrap_or_default();
        Err(HostError::OutOfMemory {
            need,
            limit: limit.bytes,
            limit_from: limit.from,
            largest: what,
            largest_bytes: bytes,
        })
    }
}

/// A memory limit and where it came from (for the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// `"--max-memory"`, or the default's source.
    pub from: &'static str,
}

impl Limit {
    /// `--max-memory` if given, else [`DEFAULT_SHARE`] of what this machine
    /// (or its cgroup) has; no limit where neither can be read.
    pub fn new(max_memory: Option<u64>) -> Self {
        if let Some(bytes) = max_memory {
            return Self { bytes, from: "--max-memory" };
        }
        let available = meminfo_available();
        let cgroup = cgroup_max();
        match (available, cgroup) {
            (Some(a), Some(c)) if c < a => Self { bytes: share(c), from: "80% of the cgroup's memory.max" },
            (Some(a), _) => Self { bytes: share(a), from: "80% of MemAvailable" },
            (None, Some(c)) => Self { bytes: share(c), from: "80% of the cgroup's memory.max" },
            (None, None) => Self { bytes: u64::MAX, from: "no limit (memory size unknown)" },
        }
    }
}

fn share(bytes: u64) -> u64 {
    (bytes as f64 * DEFAULT_SHARE) as u64
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
fn meminfo_available() -> Option<u64> {
    let text = crate::files::read_text_bounded(std::path::Path::new("/proc/meminfo"), 1 << 16).ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.trim_start_matches("MemAvailable:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The cgroup v2 `memory.max` of this process, in bytes (`None` for
/// "max" or no cgroup v2).
fn cgroup_max() -> Option<u64> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cg.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let path = format!("/sys/fs/cgroup{}/memory.max", if rel == "/" { "" } else { rel });
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024;
/// `KiB`, `MB`, ... are read alike), e.g. `8G`, `1.5G`, `512M`.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let scale: f64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1.0,
        "K" => 1024.0,
        "M" => 1024.0 * 1024.0,
        "G" => 1024.0 * 1024.0 * 1024.0,
        "T" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(format!("{s:?}: not a size (a number with K, M, G or T, e.g. 8G)")),
    };
    let v: f64 = num.parse().map_err(|_| format!("{s:?}: not a size (a number with K, M, G or T, e.g. 8G)"))?;
    let bytes = (v * scale).floor();
    crate::bounds::MAX_MEMORY.check_f64(bytes).map_err(|e| e.to_string())?;
    Ok(bytes as u64)
}

pub use crate::host_error::human;

fn f32s(n: u128) -> u128 {
    n.saturating_mul(4)
}

/// The plan of a training run of `cfg` at batch `batch`: weights,
/// gradients and Adam's two moments, the workspace, the input batch.
pub fn train_plan(cfg: &DimConfig, batch: usize) -> Result<MemoryPlan> {
    let params = crate::train::min_param_count(cfg)?;
    let enc = cfg.validate()?;
    let mut plan = MemoryPlan::default();
    plan.add("weights, gradients and Adam moments", f32s(params).saturating_mul(4))
        .add(format!("training activations at batch {batch}"), f32s(cfg.workspace_floats(batch)?))
        .add("input batch", f32s((enc.input.iter().product::<usize>() as u128).saturating_mul(batch as u128)));
    Ok(plan)
}

/// Widths of a model's feature taps: conv, fc, Y (0 where absent).
fn tap_widths(model: &Dim) -> [u128; 3] {
    let enc = &model.encoder;
    let w = |t: Option<usize>| t.map_or(0, |i| enc.block_out_len(i) as u128);
    [w(enc.conv_tap()), w(enc.fc_tap()), enc.cfg.y_dim as u128]
}

/// The plan of extracting features of `images` images at batch `batch`:
/// the model, the activations of one batch and the stored features
/// (`copies` of them: the features and what is made from them).
fn features_plan(model: &Dim, images: usize, batch: usize, copies: u128) -> MemoryPlan {
    let weights = f32s((model.params.len() + model.buffers.len()) as u128);
    let acts = model.encoder.cfg.activation_floats(batch, false).unwrap_or(u128::MAX);
    let per_image: u128 = tap_widths(model).iter().sum();
    let mut plan = MemoryPlan::default();
    plan.add("the model", weights).add(format!("activations at batch {batch}"), f32s(acts)).add(
        format!("stored features of {images} images ({per_image} floats each)"),
        f32s(per_image.saturating_mul(images as u128)).saturating_mul(copies),
    );
    plan
}

/// The plan of the paper's evaluation of `model` on `train` + `test`
/// images at feature batch `batch`, with `baselines` (an untrained copy
/// of the model, raw pixels) or not.
pub fn eval_plan(model: &Dim, train: usize, test: usize, batch: usize, baselines: bool) -> MemoryPlan {
    let mut plan = features_plan(model, train.saturating_add(test), batch, 1);
    let widest = tap_widths(model).into_iter().max().unwrap_or(0);
    // The probes on the widest tap: the MLP's first layer (200 units) and
    // the linear map (10 classes) with gradients and Adam's moments (f32);
    // their row buffers (2000 rows of 200 units, eight of them).
    plan.add("probe classifiers", f32s(widest.saturating_mul(210 * 4).saturating_add(2000 * 200 * 8)));
    plan.add("k-NN similarity block", f32s(crate::eval::knn_floats(train, test)));
    if baselines {
        let in_len = model.encoder.input_len() as u128;
        plan.add("the untrained baseline model", f32s((model.params.len() + model.buffers.len()) as u128));
        plan.add("raw-pixel baseline features", f32s(in_len.saturating_mul((train + test) as u128)));
    }
    plan
}

/// The plan of `embed` on `images` images at batch `batch`: the features,
/// their bytes, and the file written from them.
pub fn embed_plan(model: &Dim, images: usize, batch: usize) -> MemoryPlan {
    features_plan(model, images, batch, 3)
}

/// The feature batch to use: `requested` if given (refused if it does not
/// fit), else the largest of [`DEFAULT_ENCODE_BATCH`], its half, ... down
/// to 1 whose plan fits. A plan that does not fit even at batch 1 is
/// refused with its largest item (stored features, say).
pub fn fit_batch(requested: Option<usize>, limit: Limit, plan: impl Fn(usize) -> MemoryPlan) -> Result<usize> {
    if let Some(b) = requested {
        crate::bounds::ENCODE_BATCH.check_usize(b)?;
        plan(b).check(limit)?;
        return Ok(b);
    }
    let mut b = DEFAULT_ENCODE_BATCH;
    loop {
        match plan(b).check(limit) {
            Ok(()) => return Ok(b),
            Err(e) if b == 1 => return Err(e),
            Err(_) => b = (b / 2).max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2kb"), Ok(2048));
        for bad in ["", "G", "8X", "-1G", "0", "1e9", "nanG", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plan_over_the_limit_names_its_largest_item() {
        let mut p = MemoryPlan::default();
        p.add("a", 10).add("b", 30).add("c", 5);
        assert_eq!(p.total(), 45);
        assert!(p.check(Limit { bytes: 45, from: "test" }).is_ok());
        let e = p.check(Limit { bytes: 44, from: "test" }).unwrap_err().to_string();
        assert!(e.contains("b (30 B)") && e.contains("45 B") && e.contains("44 B"), "{e}");
        // The batch halves until it fits; a fixed part too large is refused.
        let plan = |b: usize| {
            let mut p = MemoryPlan::default();
            p.add("fixed", 100).add("batch", b as u128 * 10);
            p
        };
        assert_eq!(fit_batch(None, Limit { bytes: 1100, from: "test" }, plan).unwrap(), 62);
        assert!(fit_batch(Some(500), Limit { bytes: 1100, from: "test" }, plan).is_err());
        let e = fit_batch(None, Limit { bytes: 50, from: "test" }, plan).unwrap_err().to_string();
        assert!(e.contains("fixed"), "{e}");
    }
}
