//! The encoder: a stack of [`Block`]s built from an [`EncoderConfig`], plus
//! the appended global layer Y (linear with bias, no BN, no activation).
//!
//! Tensor names follow the reference PyTorch encoder: blocks are numbered
//! from 1 in order (`conv1`/`bn1`, `conv2`/`bn2`, ...); one hidden linear
//! layer is `fc`, several are `fc1`, `fc2`, ...; their BN keeps the block
//! number (`bn3` after `conv1`, `conv2`); Y is `out`.

use crate::dim::block::{Block, BlockActs, Mode};
use crate::dim::config::{EncoderConfig, Layer};
use crate::error::{Error, Result, check_len};
use crate::params::ParamTable;

/// A built encoder (offsets into the model's parameter table).
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The config it was built from.
    pub cfg: EncoderConfig,
    pub(crate) blocks: Vec<Block>,
    pub(crate) out: Block,
}

/// Saved activations of the encoder at one batch size.
#[derive(Debug)]
pub struct EncoderActs {
    pub(crate) n: usize,
    pub(crate) blocks: Vec<BlockActs>,
    pub(crate) y: BlockActs,
}

impl EncoderActs {
    /// Batch size these activations are for.
    pub fn batch(&self) -> usize {
        self.n
    }
}

/// Blocks for layers `from..` of `cfg` (fresh tensors under `prefix`, named
/// as in the encoder: layer i is `conv{i+1}`/`bn{i+1}`, linear layers `fc`
/// or `fc{k}`). Global DIM builds its tower with `from = local_layer + 1`.
pub(crate) fn build_blocks(
    cfg: &EncoderConfig,
    from: usize,
    prefix: &str,
    params: &mut ParamTable,
    buffers: &mut ParamTable,
) -> Result<Vec<Block>> {
    let shapes = cfg.shapes()?;
    let n_linear = cfg.layers.iter().filter(|l| matches!(l, Layer::Linear { .. })).count();
    let mut blocks = Vec::with_capacity(cfg.layers.len());
    let mut cur = if from == 0 { cfg.input } else { shapes[from - 1] };
    let mut linear_idx = cfg.layers[..from].iter().filter(|l| matches!(l, Layer::Linear { .. })).count();
    for (i, layer) in cfg.layers.iter().enumerate().skip(from) {
        let bn_name = format!("{prefix}bn{}", i + 1);
        let block = match *layer {
            Layer::Conv { out, kernel, stride, padding, bn, relu, pool } => Block::conv(
                params,
                buffers,
                &format!("{prefix}conv{}", i + 1),
                &bn_name,
                cur,
                out,
                kernel,
                stride,
                padding,
                bn,
                relu,
                pool,
            ),
            Layer::Linear { out, bn, relu } => {
                linear_idx += 1;
                let name = if n_linear == 1 { format!("{prefix}fc") } else { format!("{prefix}fc{linear_idx}") };
                Block::linear(params, buffers, &name, &bn_name, cur.iter().product(), out, bn, relu, true)
            }
        };
        if block.out != shapes[i] {
            return Err(Error::InvalidShape { what: "encoder", reason: "block shape disagrees with the config walk" });
        }
        cur = block.out;
        blocks.push(block);
    }
    Ok(blocks)
}

/// Output of `prev` and gradient slot of `prev`, borrowed together.
pub(crate) fn out_and_grad<'a>(b: &Block, a: &'a mut BlockActs) -> (&'a [f32], &'a mut [f32]) {
    let out: &[f32] = if b.pool { &a.pooled } else { &a.a };
    (out, &mut a.d_out)
}

impl Encoder {
    /// Builds the blocks and registers their tensors under `prefix`.
    pub fn build(cfg: &EncoderConfig, prefix: &str, params: &mut ParamTable, buffers: &mut ParamTable) -> Result<Self> {
        let blocks = build_blocks(cfg, 0, prefix, params, buffers)?;
        let last = blocks.last().map_or(0, |b| b.out.iter().product());
        let out = Block::linear(params, buffers, &format!("{prefix}out"), "", last, cfg.y_dim, false, false, true);
        Ok(Self { cfg: cfg.clone(), blocks, out })
    }

    /// Input elements per image.
    pub fn input_len(&self) -> usize {
        self.cfg.input.iter().product()
    }

    /// Shape `[c, h, w]` of the local feature map.
    pub fn local_shape(&self) -> [usize; 3] {
        self.blocks[self.cfg.local_layer].out
    }

    /// Index of the last conv block (the "conv" tap), if any.
    pub fn conv_tap(&self) -> Option<usize> {
        self.cfg.layers.iter().rposition(|l| matches!(l, Layer::Conv { .. }))
    }

    /// Index of the last hidden linear block (the "fc" tap), if any.
    pub fn fc_tap(&self) -> Option<usize> {
        self.cfg.layers.iter().rposition(|l| matches!(l, Layer::Linear { .. }))
    }

    /// Output elements per image of block `i`.
    pub fn block_out_len(&self, i: usize) -> usize {
        self.blocks[i].out_per_image()
    }

    /// Activations for batch `n`.
    pub fn alloc(&self, n: usize, train: bool) -> Result<EncoderActs> {
        let blocks = self.blocks.iter().map(|b| b.alloc(n, train)).collect::<Result<Vec<_>>>()?;
        Ok(EncoderActs { n, blocks, y: self.out.alloc(n, train)? })
    }

    /// Forward over `x` (`[n, c, h, w]`).
    pub fn forward(
        &self,
        params: &[f32],
        buffers: &mut [f32],
        x: &[f32],
        acts: &mut EncoderActs,
        mode: Mode,
    ) -> Result<()> {
        let n = acts.n;
        check_len("encoder input", n * self.input_len(), x.len())?;
        for i in 0..self.blocks.len() {
            let (done, rest) = acts.blocks.split_at_mut(i);
            let input: &[f32] = if i == 0 { x } else { done[i - 1].out(&self.blocks[i - 1]) };
            self.blocks[i].forward(n, params, buffers, input, &mut rest[0], mode)?;
        }
        let last = self.blocks.len() - 1;
        let input = acts.blocks[last].out(&self.blocks[last]);
        self.out.forward(n, params, buffers, input, &mut acts.y, mode)
    }

    /// Y (`[n, y_dim]`) from the last forward.
    pub fn y<'a>(&self, acts: &'a EncoderActs) -> &'a [f32] {
        &acts.y.a
    }

    /// Output of block `i` (`[n, c·h·w]`, NCHW) from the last forward.
    pub fn block_out<'a>(&self, acts: &'a EncoderActs, i: usize) -> &'a [f32] {
        acts.blocks[i].out(&self.blocks[i])
    }

    /// Backward from `d_y` (`[n, y_dim]`), adding `d_local` (NCHW, the local
    /// map's gradient from the MI heads) at the local block. Accumulates into
    /// `grads`; the input gradient is not needed and not computed.
    pub fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        acts: &mut EncoderActs,
        d_y: &[f32],
        d_local: Option<&[f32]>,
    ) -> Result<()> {
        let n = acts.n;
        check_len("encoder Y gradient", n * self.cfg.y_dim, d_y.len())?;
        acts.y.d_out.copy_from_slice(d_y);
        let last = self.blocks.len() - 1;
        {
            let (input, dx) = out_and_grad(&self.blocks[last], &mut acts.blocks[last]);
            self.out.backward(n, params, grads, input, &mut acts.y, Some(dx))?;
        }
        for i in (0..self.blocks.len()).rev() {
            if i == self.cfg.local_layer
                && let Some(dl) = d_local
            {
                let slot = &mut acts.blocks[i].d_out;
                if dl.len() != slot.len() {
                    return Err(Error::LengthMismatch {
                        what: "local map gradient",
                        expected: slot.len(),
                        got: dl.len(),
                    });
                }
                for (a, &b) in slot.iter_mut().zip(dl) {
                    *a += b;
                }
            }
            let (done, rest) = acts.blocks.split_at_mut(i);
            if i == 0 {
                self.blocks[0].backward(n, params, grads, x, &mut rest[0], None)?;
            } else {
                let (input, dx) = out_and_grad(&self.blocks[i - 1], &mut done[i - 1]);
                self.blocks[i].backward(n, params, grads, input, &mut rest[0], Some(dx))?;
            }
        }
        Ok(())
    }
}
