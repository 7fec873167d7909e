//! The smoke model the firmware runs until the exported DIM encoder replaces
//! it (see README.md): conv 3×3 (1→8) → ReLU → max-pool 3/2 → conv 3×3
//! stride 2 (8→16) → ReLU → linear (784→10), on one 28×28 Fashion-MNIST
//! image, with seeded weights. Everything is `infomax::kernels`, serial,
//! `no_std`, no heap: the caller owns every buffer.
//!
//! This file is compiled twice: into the firmware, and into the host test
//! `tests/firmware_fixture.rs` of the main crate (`#[path]`), which checks it
//! against a naive reference and checks the committed expected outputs.

use infomax::kernels::{
    Conv2dShape, ConvOut, ConvParams, LinearShape, MaxPoolShape, conv2d_forward, linear_forward, max_pool_forward,
};
use infomax::rng::Rng;
use infomax::{Error, Result};

/// Image side (Fashion-MNIST).
pub const IMAGE_HW: usize = 28;
/// Pixels per image.
pub const IMAGE_LEN: usize = IMAGE_HW * IMAGE_HW;
/// Output logits.
pub const CLASSES: usize = 10;
/// Seed of the weights.
pub const WEIGHT_SEED: u64 = 0x00C0_27E7_5EED;

const C1: usize = 8;
const C2: usize = 16;
const POOL_HW: usize = 13; // (28 − 3) / 2 + 1
const C2_HW: usize = 7; // (13 + 2 − 3) / 2 + 1
const FC_IN: usize = C2 * C2_HW * C2_HW;

const CONV1_W: usize = C1 * 9;
const CONV2_W: usize = C2 * C1 * 9;
const FC_W: usize = CLASSES * FC_IN;
/// Parameters, in order: conv1 weight (OIHW) and bias, conv2 weight and
/// bias, fc weight (`[out, in]`) and bias.
pub const PARAM_LEN: usize = CONV1_W + C1 + CONV2_W + C2 + FC_W + CLASSES;

const CONV1_OUT: usize = C1 * IMAGE_LEN;
const CONV1_COLS: usize = 9 * IMAGE_LEN;
const POOL_OUT: usize = C1 * POOL_HW * POOL_HW;
const CONV2_COLS: usize = C1 * 9 * C2_HW * C2_HW;
const CONV2_OUT: usize = FC_IN;

const REGION_A: usize = max(CONV1_COLS, POOL_OUT);
const REGION_B: usize = max(CONV1_OUT, CONV2_COLS + CONV2_OUT);
/// f32 scratch for [`forward`], tflite-micro style: the normalised input,
/// then two regions reused across layers. Region A holds conv1's columns,
/// then the pooled map; region B holds conv1's output, then conv2's columns
/// and output.
pub const ARENA_LEN: usize = IMAGE_LEN + REGION_A + REGION_B;
/// u32 scratch for [`forward`]: the max-pool argmax.
pub const ARGMAX_LEN: usize = POOL_OUT;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// The layer shapes (batch 1).
pub fn conv1() -> Conv2dShape {
    Conv2dShape::new(1, 1, (IMAGE_HW, IMAGE_HW), C1, 3, 1, 1)
}
/// See [`conv1`].
pub fn pool() -> MaxPoolShape {
    MaxPoolShape::k3s2(1, C1, IMAGE_HW, IMAGE_HW)
}
/// See [`conv1`].
pub fn conv2() -> Conv2dShape {
    Conv2dShape::new(1, C1, (POOL_HW, POOL_HW), C2, 3, 2, 1)
}
/// See [`conv1`].
pub fn fc() -> LinearShape {
    LinearShape::new(1, FC_IN, CLASSES)
}

/// The parameters split by layer: (conv1 w, b, conv2 w, b, fc w, b).
pub type Layers<'a> = (&'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32], &'a [f32]);

/// Splits `params` ([`PARAM_LEN`]) into its layers.
pub fn layers(params: &[f32]) -> Result<Layers<'_>> {
    if params.len() != PARAM_LEN {
        return Err(Error::LengthMismatch { what: "smoke model params", expected: PARAM_LEN, got: params.len() });
    }
    let (w1, rest) = params.split_at(CONV1_W);
    let (b1, rest) = rest.split_at(C1);
    let (w2, rest) = rest.split_at(CONV2_W);
    let (b2, rest) = rest.split_at(C2);
    let (w3, b3) = rest.split_at(FC_W);
    Ok((w1, b1, w2, b2, w3, b3))
}

/// Uniform in [0, 1) with 24 random bits: exact in f32 on every target.
fn unit(rng: &mut Rng) -> f32 {
    (rng.next_u64() >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// Seeded weights: PyTorch's default init range, uniform in ±1/√fan_in (the
/// bounds are literals so no target's `sqrt` is involved).
pub fn init_params(params: &mut [f32]) -> Result<()> {
    if params.len() != PARAM_LEN {
        return Err(Error::LengthMismatch { what: "smoke model params", expected: PARAM_LEN, got: params.len() });
    }
    let mut rng = Rng::new(WEIGHT_SEED);
    // 1/√9, 1/√72, 1/√784 for conv1 (and bias), conv2, fc.
    let bounds = [(CONV1_W + C1, 1.0 / 3.0), (CONV2_W + C2, 0.117_851_13), (FC_W + CLASSES, 1.0 / 28.0)];
    let mut rest = params;
    for (len, bound) in bounds {
        let (layer, tail) = rest.split_at_mut(len);
        for p in layer {
            *p = (2.0 * unit(&mut rng) - 1.0) * bound;
        }
        rest = tail;
    }
    Ok(())
}

/// DIM's input normalisation (torchvision `ToTensor` + `Normalize(0.5, 0.5)`).
pub fn normalize(x: u8) -> f32 {
    (x as f32 / 255.0 - 0.5) / 0.5
}

/// Runs the model on one image (`IMAGE_LEN` bytes) into `logits`
/// (`CLASSES`), with `arena` ([`ARENA_LEN`]) and `argmax` ([`ARGMAX_LEN`])
/// as scratch. Wrong lengths are errors.
pub fn forward(params: &[f32], image: &[u8], arena: &mut [f32], argmax: &mut [u32], logits: &mut [f32]) -> Result<()> {
    let (w1, b1, w2, b2, w3, b3) = layers(params)?;
    let check = |what, expected, got| {
        if expected == got { Ok(()) } else { Err(Error::LengthMismatch { what, expected, got }) }
    };
    check("smoke model image", IMAGE_LEN, image.len())?;
    check("smoke model arena", ARENA_LEN, arena.len())?;
    check("smoke model argmax", ARGMAX_LEN, argmax.len())?;
    check("smoke model logits", CLASSES, logits.len())?;
    let (input, regions) = arena.split_at_mut(IMAGE_LEN);
    let (region_a, region_b) = regions.split_at_mut(REGION_A);
    for (x, &p) in input.iter_mut().zip(image) {
        *x = normalize(p);
    }
    let conv1_out = &mut region_b[..CONV1_OUT];
    conv2d_forward(
        &conv1(),
        input,
        ConvParams { w: w1, bias: Some(b1) },
        ConvOut { y: conv1_out, cols: &mut region_a[..CONV1_COLS] },
    )?;
    relu(conv1_out);
    let pooled = &mut region_a[..POOL_OUT];
    max_pool_forward(&pool(), conv1_out, pooled, argmax)?;
    let (conv2_cols, rest) = region_b.split_at_mut(CONV2_COLS);
    let conv2_out = &mut rest[..CONV2_OUT];
    conv2d_forward(&conv2(), pooled, ConvParams { w: w2, bias: Some(b2) }, ConvOut { y: conv2_out, cols: conv2_cols })?;
    relu(conv2_out);
    linear_forward(&fc(), conv2_out, w3, Some(b3), logits)
}

fn relu(x: &mut [f32]) {
    infomax::kernels::relu_inplace(x);
}

/// Index of the largest logit (first on ties).
pub fn argmax_of(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}
