//! The encoder: a stack of [`Block`]s built from an [`EncoderConfig`], plus
//! the appended global layer Y (linear with bias, no BN, no activation).
//!
//! Tensor names follow the reference PyTorch encoder: blocks are numbered
//! from 1 in order (`conv1`/`bn1`, `conv2`/`bn2`, ...); one hidden linear
//! layer is `fc`, several are `fc1`, `fc2`, ...; their BN keeps the block
//! number (`bn3` after `conv1`, `conv2`); Y is `out`.

use rayon::prelude::*;

use crate::dim::block::{Block, BlockActs, Mode, add_assign_par};
use crate::dim::config::{EncoderConfig, Layer};
use crate::error::{Error, Result, check_len};
use crate::kernels as k;
use crate::model::Stem;
use crate::nn::Builder;
use crate::params::ParamTable;

/// Y (and global DIM's output maps): a linear layer with bias, no BN, no activation.
pub(crate) const fn plain_linear(out: usize) -> Layer {
    Layer::Linear { out, bn: false, relu: false }
}

/// A built encoder (offsets into the model's parameter table).
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The config it was built from.
    pub cfg: EncoderConfig,
    pub(crate) blocks: Vec<Block>,
    pub(crate) out: Block,
    /// Per-layer output shapes per image (`EncoderConfig::shapes`).
    shapes: Vec<[usize; 3]>,
    fold: Option<FoldPlan>,
}

/// Where and how a folded encoder crops and folds.
#[derive(Clone, Copy, Debug)]
struct FoldPlan {
    /// Unfold of one image.
    unfold: k::UnfoldShape,
    /// Fold of one image's crops.
    fold: k::FoldShape,
    /// Crops per image.
    crops: usize,
    /// The last per-crop layer.
    layer: usize,
}

/// Saved activations of the encoder at one batch size.
#[derive(Debug)]
pub struct EncoderActs {
    pub(crate) n: usize,
    pub(crate) blocks: Vec<BlockActs>,
    pub(crate) y: BlockActs,
    fold: Option<FoldActs>,
}

/// A folded encoder's crops and folded map (and its gradient).
#[derive(Debug)]
struct FoldActs {
    crops: Vec<f32>,
    folded: Vec<f32>,
    d_folded: Vec<f32>,
}

impl EncoderActs {
    /// Batch size these activations are for.
    pub fn batch(&self) -> usize {
        self.n
    }
}

/// Blocks for layers `from..` of `cfg`, fresh tensors under `prefix` named
/// by the model description (`crate::model::Stem`). Global DIM builds its
/// tower with `from = local_layer + 1`.
pub(crate) fn build_blocks(
    cfg: &EncoderConfig,
    from: usize,
    prefix: &str,
    params: &mut ParamTable,
    buffers: &mut ParamTable,
) -> Result<Vec<Block>> {
    let mut blocks = Vec::with_capacity(cfg.layers.len());
    let mut b = Builder::new(params, buffers);
    for (io, layer) in cfg.walk()?.zip(&cfg.layers).skip(from) {
        let io = io?;
        let (name, bn) = (format!("{prefix}{}", io.stem), format!("{prefix}{}", io.bn_name()));
        let block = Block::new(&mut b, &name, &bn, io.input, *layer);
        if block.out != io.out {
            return Err(Error::InvalidShape { what: "encoder", reason: "block shape disagrees with the config walk" });
        }
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
        let shapes = cfg.shapes()?;
        let blocks = build_blocks(cfg, 0, prefix, params, buffers)?;
        let last = shapes.last().map_or(0, |s| s.iter().product());
        let name = format!("{prefix}{}", Stem::Out);
        let out = Block::new(&mut Builder::new(params, buffers), &name, "", [last, 1, 1], plain_linear(cfg.y_dim));
        let fold = match (cfg.fold, cfg.crop_grid()?) {
            (Some(f), Some((grid_h, grid_w))) => {
                let [c, h, w] = blocks[f.layer].out;
                let [c0, in_h, in_w] = cfg.input;
                let unfold = k::UnfoldShape { batch: 1, channels: c0, in_h, in_w, crop: f.crop, stride: f.stride };
                let fold = k::FoldShape { batch: 1, channels: c, h, w, grid_h, grid_w };
                unfold.validate()?;
                fold.validate()?;
                Some(FoldPlan { unfold, fold, crops: grid_h * grid_w, layer: f.layer })
            }
            _ => None,
        };
        Ok(Self { cfg: cfg.clone(), blocks, out, shapes, fold })
    }

    /// Input elements per image.
    pub fn input_len(&self) -> usize {
        self.cfg.input.iter().product()
    }

    /// Shape `[c, h, w]` of the local feature map.
    pub fn local_shape(&self) -> [usize; 3] {
        self.shapes[self.cfg.local_layer]
    }

    /// Output shape `[c, h, w]` per image of layer `i` (per crop before the
    /// fold; the folded map at the fold layer).
    pub fn layer_shape(&self, i: usize) -> [usize; 3] {
        self.shapes[i]
    }

    /// Whether the no_std inference path can run this encoder (plain conv
    /// and linear layers only); `Some(reason)` if not.
    pub fn inference_unsupported(&self) -> Option<&'static str> {
        if self.fold.is_some() {
            return Some("unsupported layer fold (crop stage) in no_std inference");
        }
        if self.cfg.layers.iter().any(|l| matches!(l, Layer::Bottleneck { .. })) {
            return Some("unsupported layer bottleneck in no_std inference");
        }
        None
    }

    /// First layer whose output is a per-image map (after the fold).
    fn first_image_layer(&self) -> usize {
        self.fold.map_or(0, |f| f.layer)
    }

    /// Index of the last conv or bottleneck block (the "conv" tap), if any.
    /// In a folded encoder, the last one at or after the fold (the folded
    /// map itself if the layers after it are linear).
    pub fn conv_tap(&self) -> Option<usize> {
        let from = self.first_image_layer();
        let spatial = self
            .cfg
            .layers
            .iter()
            .enumerate()
            .skip(from)
            .rposition(|(_, l)| matches!(l, Layer::Conv { .. } | Layer::Bottleneck { .. }))
            .map(|i| i + from);
        spatial.or(self.fold.map(|f| f.layer))
    }

    /// Index of the last hidden linear block (the "fc" tap), if any, after
    /// the fold in a folded encoder.
    pub fn fc_tap(&self) -> Option<usize> {
        let from = self.fold.map_or(0, |f| f.layer + 1);
        self.cfg.layers.iter().skip(from).rposition(|l| matches!(l, Layer::Linear { .. })).map(|i| i + from)
    }

    /// Output elements per image of block `i`.
    pub fn block_out_len(&self, i: usize) -> usize {
        self.shapes[i].iter().product()
    }

    /// Activations for batch `n`.
    pub fn alloc(&self, n: usize, train: bool) -> Result<EncoderActs> {
        let per =
            |i: usize| if self.fold.is_some_and(|f| i <= f.layer) { n * self.fold.map_or(1, |f| f.crops) } else { n };
        let blocks = self.blocks.iter().enumerate().map(|(i, b)| b.alloc(per(i), train)).collect::<Result<Vec<_>>>()?;
        let fold = self.fold.map(|f| {
            let folded = n * self.block_out_len(f.layer);
            FoldActs {
                crops: vec![0.0; n * f.crops * f.unfold.channels * f.unfold.crop * f.unfold.crop],
                folded: vec![0.0; folded],
                d_folded: if train { vec![0.0; folded] } else { Vec::new() },
            }
        });
        Ok(EncoderActs { n, blocks, y: self.out.alloc(n, train)?, fold })
    }

    /// Samples that block `i` runs on for `n` images.
    fn samples(&self, n: usize, i: usize) -> usize {
        match self.fold {
            Some(f) if i <= f.layer => n * f.crops,
            _ => n,
        }
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
        let fold = match (self.fold, acts.fold.as_mut()) {
            (Some(f), Some(fa)) => {
                let crops_len = fa.crops.len() / n;
                x.par_chunks(self.input_len())
                    .zip(fa.crops.par_chunks_mut(crops_len))
                    .try_for_each(|(xi, ci)| k::unfold_forward(&f.unfold, xi, ci))?;
                Some((f, fa))
            }
            (None, None) => None,
            _ => return Err(Error::InvalidShape { what: "encoder activations", reason: "not made by this encoder" }),
        };
        let (first, mut fold): (&[f32], _) = match fold {
            Some((f, fa)) => {
                let FoldActs { crops, folded, .. } = fa;
                (&crops[..], Some((f, folded)))
            }
            None => (x, None),
        };
        for i in 0..self.blocks.len() {
            let (done, rest) = acts.blocks.split_at_mut(i);
            let input: &[f32] = match (i, &fold) {
                (0, _) => first,
                (_, Some((f, folded))) if f.layer == i - 1 => folded,
                _ => done[i - 1].out(&self.blocks[i - 1]),
            };
            self.blocks[i].forward(self.samples(n, i), params, buffers, input, &mut rest[0], mode)?;
            if let Some((f, folded)) = fold.as_mut()
                && f.layer == i
            {
                let per = folded.len() / n;
                rest[0]
                    .out(&self.blocks[i])
                    .par_chunks(per)
                    .zip(folded.par_chunks_mut(per))
                    .try_for_each(|(src, dst)| k::fold_forward(&f.fold, src, dst))?;
            }
        }
        let mut y = std::mem::take(&mut acts.y);
        let r = self.out.forward(n, params, buffers, self.block_out(acts, self.blocks.len() - 1), &mut y, mode);
        acts.y = y;
        r
    }

    /// Y (`[n, y_dim]`) from the last forward.
    pub fn y<'a>(&self, acts: &'a EncoderActs) -> &'a [f32] {
        &acts.y.a
    }

    /// Output of block `i` (`[n, c·h·w]`, NCHW) from the last forward; the
    /// folded map at the fold layer, per-crop outputs before it.
    pub fn block_out<'a>(&self, acts: &'a EncoderActs, i: usize) -> &'a [f32] {
        match (self.fold, acts.fold.as_ref()) {
            (Some(f), Some(fa)) if f.layer == i => &fa.folded,
            _ => acts.blocks[i].out(&self.blocks[i]),
        }
    }

    /// Output of layer `i` and its gradient slot, borrowed together.
    fn out_and_grad_at<'a>(&self, acts: &'a mut EncoderActs, i: usize) -> (&'a [f32], &'a mut [f32]) {
        match (self.fold, acts.fold.as_mut()) {
            (Some(f), Some(fa)) if f.layer == i => (&fa.folded, &mut fa.d_folded),
            _ => out_and_grad(&self.blocks[i], &mut acts.blocks[i]),
        }
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
        self.backward_with_input_grad(params, grads, x, acts, d_y, d_local, None)
    }

    /// [`Self::backward`], also writing the gradient w.r.t. the input `x`
    /// into `dx` when given (saliency, tests).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_with_input_grad(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        acts: &mut EncoderActs,
        d_y: &[f32],
        d_local: Option<&[f32]>,
        dx: Option<&mut [f32]>,
    ) -> Result<()> {
        let n = acts.n;
        if let Some(dx) = dx.as_deref() {
            check_len("encoder input gradient", n * self.input_len(), dx.len())?;
        }
        let mut dx = dx;
        check_len("encoder Y gradient", n * self.cfg.y_dim, d_y.len())?;
        if self.fold.is_some() != acts.fold.is_some() {
            return Err(Error::InvalidShape { what: "encoder activations", reason: "not made by this encoder" });
        }
        acts.y.d_out.copy_from_slice(d_y);
        let last = self.blocks.len() - 1;
        {
            let mut y = std::mem::take(&mut acts.y);
            let (input, dx) = self.out_and_grad_at(acts, last);
            let r = self.out.backward(n, params, grads, input, &mut y, Some(dx));
            acts.y = y;
            r?;
        }
        for i in (0..self.blocks.len()).rev() {
            if i == self.cfg.local_layer
                && let Some(dl) = d_local
            {
                let slot = self.out_and_grad_at(acts, i).1;
                if dl.len() != slot.len() {
                    return Err(Error::LengthMismatch {
                        what: "local map gradient",
                        expected: slot.len(),
                        got: dl.len(),
                    });
                }
                add_assign_par(slot, dl);
            }
            if let (Some(f), Some(fa)) = (self.fold, acts.fold.as_ref())
                && f.layer == i
            {
                let per = fa.d_folded.len() / n;
                acts.blocks[i]
                    .d_out
                    .par_chunks_mut(per)
                    .zip(fa.d_folded.par_chunks(per))
                    .try_for_each(|(dst, src)| k::fold_backward(&f.fold, src, dst))?;
            }
            let samples = self.samples(n, i);
            let mut cur = std::mem::take(&mut acts.blocks[i]);
            let r = if i == 0 {
                match (acts.fold.as_ref(), self.fold, dx.as_deref_mut()) {
                    (Some(fa), Some(f), Some(dx)) => {
                        let mut d_crops = vec![0.0; fa.crops.len()];
                        let per = d_crops.len() / n;
                        self.blocks[0]
                            .backward(samples, params, grads, &fa.crops, &mut cur, Some(&mut d_crops))
                            .and_then(|()| {
                                dx.par_chunks_mut(self.input_len())
                                    .zip(d_crops.par_chunks(per))
                                    .try_for_each(|(dxi, dci)| k::unfold_backward(&f.unfold, dci, dxi))
                            })
                    }
                    (Some(fa), _, None) => self.blocks[0].backward(samples, params, grads, &fa.crops, &mut cur, None),
                    (_, _, dx) => self.blocks[0].backward(samples, params, grads, x, &mut cur, dx),
                }
            } else {
                let (input, dx) = self.out_and_grad_at(acts, i - 1);
                self.blocks[i].backward(samples, params, grads, input, &mut cur, Some(dx))
            };
            acts.blocks[i] = cur;
            r?;
        }
        Ok(())
    }
}
