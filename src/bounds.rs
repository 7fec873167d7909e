//! The range of every numeric setting, in one table. Validation checks
//! against it, docs/reliability.md §6 lists it, and `tests/bounds.rs`
//! sends an out-of-range value for each row through a flag, a config file
//! and checkpoint metadata. A bound refuses what cannot make sense or would
//! make a run hang or run away; the memory plan refuses what does not fit.
//!
//! `no_std` and allocation-free: the inference plan checks an exported
//! encoder's shapes against the same rows.

pub use crate::error::{Bound, Value};

const W: &str = "a layer or head width; 65536 already makes one 1×1 conv 4·10⁹ weights";

// Training (`TrainConfig`).
/// Images per step.
pub const BATCH_SIZE: Bound = Bound::new(
    "batch_size",
    Some("--batch-size"),
    2.0,
    65536.0,
    "DIM's negatives are the other images of the batch; at 65536 the N×N score matrix alone is 16 GiB",
);
/// The epoch budget.
pub const EPOCHS: Bound =
    Bound::new("epochs", Some("--epochs"), 1.0, 1e6, "0 trains nothing; the counters stay exact in a log's f64");
/// The step budget.
pub const STEPS: Bound =
    Bound::new("steps", Some("--steps"), 1.0, 1e12, "0 trains nothing; the counters stay exact in a log's f64");
/// The wall-time budget.
pub const MINUTES: Bound =
    Bound::new("minutes", Some("--minutes"), 0.0, 1e6, "a positive time; 10⁶ minutes is two years").open_below();
/// Steps between k-NN probes during training.
pub const PROBE_EVERY: Bound = Bound::new(
    "probe_every",
    Some("--probe-every"),
    1.0,
    1e12,
    "at least a step apart (--no-probe turns the probes off); at most the largest step budget",
);
/// Adam's learning rate.
pub const LR: Bound = Bound::new(
    "optimizer.lr",
    Some("--lr"),
    0.0,
    1.0,
    "Adam moves each weight by about lr a step; above 1 that outgrows any weight's scale",
)
.open_below();
/// Adam's first-moment decay.
pub const BETA1: Bound = Bound::new(
    "optimizer.beta1",
    None,
    0.0,
    1.0,
    "a decay of 1 never forgets and divides by zero in the bias correction",
)
.open_above();
/// Adam's second-moment decay.
pub const BETA2: Bound = Bound::new(
    "optimizer.beta2",
    None,
    0.0,
    1.0,
    "a decay of 1 never forgets and divides by zero in the bias correction",
)
.open_above();
/// Adam's denominator epsilon.
pub const EPS: Bound =
    Bound::new("optimizer.eps", None, 0.0, 1.0, "0 divides by zero where a gradient is 0; above 1 it is the step")
        .open_below();
/// The random crop side (also at most the images' smaller side).
pub const CROP: Bound = Bound::new(
    "data.crop",
    Some("--crop"),
    1.0,
    4096.0,
    "a crop is at least a pixel and at most the image's smaller side",
);
/// The side images are resized to.
pub const RESIZE: Bound = Bound::new(
    "data.resize",
    Some("--resize"),
    1.0,
    4096.0,
    "at least a pixel; a 4096×4096 RGB image is already 48 MiB per image",
);
/// The fraction of each class an image folder holds out for testing.
pub const TEST_FRACTION: Bound = Bound::new(
    "data.test_fraction",
    Some("--test-fraction"),
    0.0,
    1.0,
    "a fraction; 1 would leave nothing to train on",
)
.open_above();

// The model (`DimConfig`).
/// The MI embedding width D.
pub const MI_UNITS: Bound = Bound::new("model.mi_units", Some("--mi-units"), 1.0, 65536.0, W);
/// Weight of global DIM.
pub const ALPHA: Bound = Bound::new(
    "model.alpha",
    Some("--alpha"),
    0.0,
    1000.0,
    "a loss weight: the terms are O(1), so beyond 1000 a weight only rescales lr and overflows sooner",
);
/// Weight of local DIM.
pub const BETA: Bound = Bound::new("model.beta", Some("--beta"), 0.0, 1000.0, ALPHA.why);
/// Weight of prior matching.
pub const GAMMA: Bound = Bound::new("model.gamma", Some("--gamma"), 0.0, 1000.0, ALPHA.why);
/// Gradient-penalty weight of the prior discriminator.
pub const PRIOR_LAMBDA: Bound = Bound::new("model.prior_lambda", None, 0.0, 1000.0, ALPHA.why);
/// Side of the occluded square (also at most the image's smaller side).
pub const OCCLUSION_SIZE: Bound = Bound::new(
    "model.occlusion.size",
    Some("--occlude"),
    1.0,
    4096.0,
    "a square of at least a pixel that fits in the image",
);
/// The occluded square's value.
pub const OCCLUSION_FILL: Bound = Bound::new(
    "model.occlusion.fill",
    Some("--occlude-fill"),
    -1.0,
    1.0,
    "the range of normalised pixels; outside it no image has that value",
);
/// Channels of the multiple-globals convs.
pub const GLOBAL_CHANNELS: Bound = Bound::new("model.globals.channels", Some("--global-channels"), 1.0, 65536.0, W);
/// Globals scored per image (also at most K).
pub const GLOBAL_SAMPLES: Bound = Bound::new(
    "model.globals.samples",
    Some("--global-samples"),
    1.0,
    16_777_216.0,
    "between 1 and the number of globals K = (M − 2)²",
);

// The encoder (`model.encoder` as a layer list; exported files too).
/// Input channels.
pub const INPUT_CHANNELS: Bound =
    Bound::new("model.encoder.input[0]", None, 1.0, 64.0, "image channels: 1 (grey), 3 (RGB), a few more");
/// Input height and width.
pub const INPUT_SIDE: Bound =
    Bound::new("model.encoder.input[1..]", None, 1.0, 4096.0, "4096² pixels already make one image 16 M activations");
/// Number of layers before Y.
pub const LAYERS: Bound = Bound::new("model.encoder.layers", None, 1.0, 256.0, "the deepest preset has 8");
/// Output width of a layer (conv `out`, linear `out`, bottleneck `planes`).
pub const LAYER_WIDTH: Bound = Bound::new("model.encoder.layers[].out", None, 1.0, 65536.0, W);
/// Width of Y.
pub const Y_DIM: Bound = Bound::new("model.encoder.y_dim", None, 1.0, 65536.0, W);
/// Conv kernel side.
pub const KERNEL: Bound =
    Bound::new("model.encoder.layers[].kernel", None, 1.0, 64.0, "also at most the padded input; presets use 1 to 5");
/// Conv and bottleneck stride.
pub const STRIDE: Bound =
    Bound::new("model.encoder.layers[].stride", None, 1.0, 64.0, "0 never moves; presets use 1 and 2");
/// Conv zero padding.
pub const PADDING: Bound =
    Bound::new("model.encoder.layers[].padding", None, 0.0, 64.0, "a border of zeros wider than 64 is all padding");
/// Fold crop side and stride.
pub const FOLD: Bound = Bound::new(
    "model.encoder.fold.crop, .stride",
    None,
    1.0,
    4096.0,
    "a crop of at least a pixel inside the input, moved at least a pixel",
);

// Evaluation and the command line.
/// Epochs per probe classifier.
pub const EVAL_EPOCHS: Bound =
    Bound::new("eval.epochs", Some("--eval-epochs"), 1.0, 10_000.0, "0 trains no classifier; the protocol uses 30");
/// Images per encoder pass in evaluation and embedding.
pub const ENCODE_BATCH: Bound = Bound::new(
    "eval.encode_batch",
    Some("--batch-size (eval, embed)"),
    1.0,
    65536.0,
    "at least one image; the memory plan picks smaller ones",
);
/// Worker threads.
pub const THREADS: Bound =
    Bound::new("threads", Some("--threads"), 1.0, 1024.0, "each is an OS thread; results are equal for any count");
/// The memory limit in bytes.
pub const MAX_MEMORY: Bound = Bound::new(
    "max_memory",
    Some("--max-memory"),
    1.0,
    1_152_921_504_606_846_976.0,
    "1 EiB is no limit at all; the plan refuses what does not fit",
);

// Checkpoint progress (metadata `progress`, `prior_step`).
/// Steps taken.
pub const PROGRESS_STEP: Bound = Bound::new("progress.step", None, 0.0, 1e12, "at most the largest step budget");
/// Epochs completed.
pub const PROGRESS_EPOCH: Bound = Bound::new("progress.epoch", None, 0.0, 1e6, "at most the largest epoch budget");
/// Batches done in a partial epoch.
pub const PROGRESS_BATCH: Bound = Bound::new("progress.batch", None, 0.0, 1e12, "also fewer than the epoch's batches");
/// Training wall time, seconds.
pub const PROGRESS_WALL: Bound =
    Bound::new("progress.wall_s", None, 0.0, 6e7, "at most the largest minute budget, in seconds");
/// The prior discriminator's Adam step.
pub const PRIOR_STEP: Bound = Bound::new("prior_step", None, 0.0, 1e12, "at most the largest step budget");

/// Every row, in the order docs/reliability.md lists them.
pub const ALL: &[&Bound] = &[
    &BATCH_SIZE,
    &EPOCHS,
    &STEPS,
    &MINUTES,
    &PROBE_EVERY,
    &LR,
    &BETA1,
    &BETA2,
    &EPS,
    &CROP,
    &RESIZE,
    &TEST_FRACTION,
    &MI_UNITS,
    &ALPHA,
    &BETA,
    &GAMMA,
    &PRIOR_LAMBDA,
    &OCCLUSION_SIZE,
    &OCCLUSION_FILL,
    &GLOBAL_CHANNELS,
    &GLOBAL_SAMPLES,
    &INPUT_CHANNELS,
    &INPUT_SIDE,
    &LAYERS,
    &LAYER_WIDTH,
    &Y_DIM,
    &KERNEL,
    &STRIDE,
    &PADDING,
    &FOLD,
    &EVAL_EPOCHS,
    &ENCODE_BATCH,
    &THREADS,
    &MAX_MEMORY,
    &PROGRESS_STEP,
    &PROGRESS_EPOCH,
    &PROGRESS_BATCH,
    &PROGRESS_WALL,
    &PRIOR_STEP,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_in_or_out_as_declared() {
        for b in ALL {
            assert_eq!(b.contains(b.lo), !b.lo_open, "{}", b.name);
            assert_eq!(b.contains(b.hi), !b.hi_open, "{}", b.name);
            assert!(!b.contains(f64::NAN) && !b.contains(f64::INFINITY) && !b.contains(f64::NEG_INFINITY));
            assert!(b.lo < b.hi && b.hi < 2f64.powi(61), "{}", b.name);
        }
        for (i, a) in ALL.iter().enumerate() {
            assert!(ALL[i + 1..].iter().all(|b| b.name != a.name), "{} is listed twice", a.name);
        }
    }

    #[test]
    fn errors_name_the_setting_its_flag_and_range() {
        let e = BATCH_SIZE.check_usize(1).unwrap_err().to_string();
        assert_eq!(
            e,
            "batch_size (--batch-size) = 1 is out of range [2, 65536]: DIM's negatives are the other images \
             of the batch; at 65536 the N×N score matrix alone is 16 GiB"
        );
        assert!(LR.check_f64(0.0).unwrap_err().to_string().contains("= 0 is out of range (0, 1]"));
        assert!(LR.check_f64(f64::NAN).unwrap_err().to_string().contains("= NaN"));
        assert!(EPOCHS.check_u64(u64::MAX).is_err() && EPOCHS.check_u64(1_000_000).is_ok());
    }
}
