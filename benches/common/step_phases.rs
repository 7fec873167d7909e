//! The GEMM-bound layers of one conv32 DIM training step at batch 64,
//! D = 512 (spec §2.2 encoder; §4.1 encode-and-dot-product heads: the local
//! head runs on 64·8·8 = 4096 positions of the 8×8×128 local map, the global
//! head on the 64 Y vectors; each head has two layers and a shortcut).
//! One table for `benches/kernels.rs` (`phases`) and
//! `examples/gemm_phases.rs`, so the two time the same layers.

use infomax::kernels::{Conv2dShape, LinearShape};

/// Images per step.
const N: usize = 64;

/// One conv layer; `input_grad` is false for the first layer, whose input
/// gradient the step never computes. Every conv is followed by BN: no bias.
pub struct PhaseConv {
    // Printed by the example; the bench times all layers as one.
    #[allow(dead_code)]
    pub name: &'static str,
    pub shape: Conv2dShape,
    pub input_grad: bool,
}

/// One linear (or 1×1-conv-as-linear) layer, always with its input
/// gradient. Layers followed by BN and the shortcuts have no bias.
pub struct PhaseLinear {
    // Printed by the example; the bench times all layers as one.
    #[allow(dead_code)]
    pub name: &'static str,
    pub shape: LinearShape,
    pub bias: bool,
}

/// The score matrix `S[N, N·64] = G·Lᵀ` over D: (rows, columns, depth).
pub const SCORES: (usize, usize, usize) = (N, N * 64, 512);

pub fn step_phases() -> (Vec<PhaseConv>, Vec<PhaseLinear>) {
    let conv =
        |name, c, hw, o, input_grad| PhaseConv { name, shape: Conv2dShape::new(N, c, hw, o, 4, 2, 1), input_grad };
    let convs = vec![
        conv("conv1 3→64 32×32", 3, (32, 32), 64, false),
        conv("conv2 64→128 16×16", 64, (16, 16), 128, true),
        conv("conv3 128→256 8×8", 128, (8, 8), 256, true),
    ];
    let lin = |name, rows, i, o, bias| PhaseLinear { name, shape: LinearShape::new(rows, i, o), bias };
    let linears = vec![
        lin("fc 64×4096→1024", N, 256 * 16, 1024, false),
        lin("Y 64×1024→64", N, 1024, 64, true),
        lin("local head 1 4096×128→512", N * 64, 128, 512, false),
        lin("local head 2 4096×512→512", N * 64, 512, 512, true),
        lin("local shortcut 4096×128→512", N * 64, 128, 512, false),
        lin("global head 1 64×64→512", N, 64, 512, false),
        lin("global head 2 64×512→512", N, 512, 512, true),
        lin("global shortcut 64×64→512", N, 64, 512, false),
    ];
    (convs, linears)
}
