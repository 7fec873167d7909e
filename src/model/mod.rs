//! The encoder, described once: its layers, the shape walk over them and
//! the names of their tensors. Training builds its blocks from it, export
//! names the tensors it writes with it, and the `no_std` inference plan
//! walks the same layers, so the three can never disagree.
//!
//! Everything here is `no_std` and allocation-free.

use core::fmt;

use crate::bounds;
use crate::error::{Error, Result, checked_product};

/// The prefix of every encoder tensor name in a checkpoint and an exported
/// file (`encoder.conv1.weight`).
pub const ENCODER_PREFIX: &str = "encoder.";

#[cfg(feature = "train")]
fn yes() -> bool {
    true
}

/// One encoder layer. Conv and linear layers expand, in order, to
/// `conv/linear → BN (if bn) → ReLU (if relu) → max-pool 3/2 (if pool)`
/// (docs/method.md §2.1). A layer with BN has no bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "train", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "train", serde(tag = "type", rename_all = "lowercase", deny_unknown_fields))]
pub enum Layer {
    /// 2-d convolution.
    Conv {
        /// Output channels.
        out: usize,
        /// Square kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: usize,
        /// Batch norm after the conv.
        #[cfg_attr(feature = "train", serde(default = "yes"))]
        bn: bool,
        /// ReLU after BN.
        #[cfg_attr(feature = "train", serde(default = "yes"))]
        relu: bool,
        /// Max-pool (kernel 3, stride 2) at the end.
        #[cfg_attr(feature = "train", serde(default))]
        pool: bool,
    },
    /// Fully connected layer (flattens a conv map channel-major first).
    Linear {
        /// Output features.
        out: usize,
        /// Batch norm after the linear map.
        #[cfg_attr(feature = "train", serde(default = "yes"))]
        bn: bool,
        /// ReLU after BN.
        #[cfg_attr(feature = "train", serde(default = "yes"))]
        relu: bool,
    },
    /// ResNet bottleneck block (docs/method.md §2.5): `1×1 conv (planes) BN ReLU →
    /// 3×3 conv (planes, stride, pad 1) BN ReLU → 1×1 conv (4·planes) BN`,
    /// plus the input (identity) or, when the shape changes, a projection
    /// `1×1 conv (4·planes, stride, no bias) BN`; ReLU after the sum.
    Bottleneck {
        /// Inner width C; the block outputs 4·C channels.
        planes: usize,
        /// Stride of the 3×3 conv (and of the projection).
        stride: usize,
    },
}

/// The crop stage of a folded encoder (docs/method.md §2.6): the input is cut into
/// `crop×crop` crops `stride` apart, layers `0..=layer` run on every crop as
/// a sample of its own, and the output of layer `layer` is folded into a
/// map with one location per crop and `c·h·w` channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "train", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "train", serde(deny_unknown_fields))]
pub struct Fold {
    /// Crop side.
    pub crop: usize,
    /// Distance between crops (the reference uses crop / 2).
    pub stride: usize,
    /// Index in `layers` of the last per-crop layer; its output is folded.
    pub layer: usize,
}

/// One layer of the walk: its place, its tensors' name stem, and its
/// input and output shape per sample (a crop before the fold; the fold
/// layer's output before folding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerIo {
    /// Index in the layer list.
    pub index: usize,
    /// Name stem of the layer's weight (and of its BN, [`LayerIo::bn_name`]).
    pub stem: Stem,
    /// Input `[c, h, w]`.
    pub input: [usize; 3],
    /// Output `[c, h, w]` (linear layers: `[out, 1, 1]`).
    pub out: [usize; 3],
}

impl LayerIo {
    /// The name stem of the layer's batch norm: `bn{index + 1}`.
    pub fn bn_name(&self) -> BnName {
        BnName(self.index + 1)
    }
}

/// The name stem of a layer's tensors, as the reference PyTorch encoder
/// names its modules: blocks numbered from 1 in order (`conv3`, a
/// bottleneck `block4`), one hidden linear layer `fc`, several `fc1`,
/// `fc2`, ...; Y is `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// `conv{k}`.
    Conv(usize),
    /// `fc`: the only linear layer before Y.
    Fc,
    /// `fc{k}`: the k-th of several linear layers.
    FcN(usize),
    /// `block{k}`: a bottleneck.
    Block(usize),
    /// `out`: Y.
    Out,
}

impl fmt::Display for Stem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stem::Conv(k) => write!(f, "conv{k}"),
            Stem::Fc => f.write_str("fc"),
            Stem::FcN(k) => write!(f, "fc{k}"),
            Stem::Block(k) => write!(f, "block{k}"),
            Stem::Out => f.write_str("out"),
        }
    }
}

/// The name stem of layer `k − 1`'s batch norm: `bn{k}` (it keeps the
/// layer's number, so the BN after `fc` in a 3-layer encoder is `bn3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnName(pub usize);

impl fmt::Display for BnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bn{}", self.0)
    }
}

/// The walk over an encoder's layers: each layer's [`LayerIo`], checking
/// that every layer fits its input. Create with [`Walk::new`], which checks
/// the encoder as a whole first.
#[derive(Clone, Debug)]
pub struct Walk<'a> {
    layers: &'a [Layer],
    fold: Option<Fold>,
    grid: Option<(usize, usize)>,
    cur: [usize; 3],
    next: usize,
    seen_linear: bool,
    n_linear: usize,
    linear_idx: usize,
}

impl<'a> Walk<'a> {
    /// Starts the walk of `layers` on `input`, with Y of width `y_dim`, the
    /// local map at `local_layer` and an optional crop stage.
    pub fn new(
        input: [usize; 3],
        layers: &'a [Layer],
        fold: Option<Fold>,
        local_layer: usize,
        y_dim: usize,
    ) -> Result<Self> {
        let [c0, h0, w0] = input;
        bounds::INPUT_CHANNELS.check_usize(c0)?;
        bounds::INPUT_SIDE.check_usize(h0)?;
        bounds::INPUT_SIDE.check_usize(w0)?;
        bounds::LAYERS.check_usize(layers.len())?;
        bounds::Y_DIM.check_usize(y_dim)?;
        if local_layer >= layers.len() {
            return Err(Error::InvalidShape { what: "encoder local_layer", reason: "index past the last layer" });
        }
        let mut cur = input;
        let mut grid = None;
        if let Some(f) = fold {
            bounds::FOLD.check_usize(f.crop)?;
            bounds::FOLD.check_usize(f.stride)?;
            if f.crop > h0 || f.crop > w0 {
                return Err(Error::InvalidShape { what: "encoder fold", reason: "crop is larger than the input" });
            }
            if f.layer >= layers.len() {
                return Err(Error::InvalidShape { what: "encoder fold layer", reason: "index past the last layer" });
            }
            if local_layer < f.layer {
                return Err(Error::InvalidShape {
                    what: "encoder local_layer",
                    reason: "comes before the fold (a per-crop map is not a local map)",
                });
            }
            grid = Some(((h0 - f.crop) / f.stride + 1, (w0 - f.crop) / f.stride + 1));
            cur = [c0, f.crop, f.crop];
        }
        let n_linear = layers.iter().filter(|l| matches!(l, Layer::Linear { .. })).count();
        Ok(Self { layers, fold, grid, cur, next: 0, seen_linear: false, n_linear, linear_idx: 0 })
    }

    /// The crop grid `(rows, cols)` of a folded encoder (`None` unfolded).
    pub fn grid(&self) -> Option<(usize, usize)> {
        self.grid
    }

    fn step(&mut self, i: usize, layer: Layer) -> Result<LayerIo> {
        let cur = self.cur;
        if !matches!(layer, Layer::Linear { .. }) && self.seen_linear {
            return Err(Error::InvalidShape {
                what: "encoder",
                reason: "a conv or bottleneck layer follows a linear layer",
            });
        }
        let (stem, next) = match layer {
            Layer::Conv { out: oc, kernel, stride, padding, pool, .. } => {
                bounds::LAYER_WIDTH.check_usize(oc)?;
                bounds::KERNEL.check_usize(kernel)?;
                bounds::STRIDE.check_usize(stride)?;
                bounds::PADDING.check_usize(padding)?;
                let padded = |side: usize| padding.checked_mul(2).and_then(|p| side.checked_add(p));
                let (Some(ph), Some(pw)) = (padded(cur[1]), padded(cur[2])) else {
                    return Err(Error::Overflow { what: "encoder conv layer padding" });
                };
                if kernel > ph || kernel > pw {
                    return Err(Error::InvalidShape {
                        what: "encoder conv layer",
                        reason: "kernel is larger than the padded input",
                    });
                }
                let (mut h, mut w) = ((ph - kernel) / stride + 1, (pw - kernel) / stride + 1);
                if pool {
                    if h < 3 || w < 3 {
                        return Err(Error::InvalidShape {
                            what: "encoder pool",
                            reason: "map smaller than the 3×3 window",
                        });
                    }
                    h = (h - 3) / 2 + 1;
                    w = (w - 3) / 2 + 1;
                }
                (Stem::Conv(i + 1), [oc, h, w])
            }
            Layer::Bottleneck { planes, stride } => {
                bounds::LAYER_WIDTH.check_usize(planes)?;
                bounds::STRIDE.check_usize(stride)?;
                let oc = planes.checked_mul(4).ok_or(Error::Overflow { what: "encoder bottleneck planes" })?;
                // 3×3, pad 1: floor((h + 2 − 3)/s) + 1.
                (Stem::Block(i + 1), [oc, (cur[1] - 1) / stride + 1, (cur[2] - 1) / stride + 1])
            }
            Layer::Linear { out: o, .. } => {
                bounds::LAYER_WIDTH.check_usize(o)?;
                self.seen_linear = true;
                self.linear_idx += 1;
                (if self.n_linear == 1 { Stem::Fc } else { Stem::FcN(self.linear_idx) }, [o, 1, 1])
            }
        };
        self.cur = next;
        if let (Some(f), Some((gh, gw))) = (self.fold, self.grid)
            && f.layer == i
        {
            let ch = checked_product("fold channels", &next)?;
            self.cur = [ch, gh, gw];
            // The folded map is a conv map again.
            self.seen_linear = false;
        }
        Ok(LayerIo { index: i, stem, input: cur, out: next })
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<LayerIo>;

    fn next(&mut self) -> Option<Self::Item> {
        let i = self.next;
        let layer = *self.layers.get(i)?;
        self.next += 1;
        let r = self.step(i, layer);
        if r.is_err() {
            // A walk ends at its first error.
            self.next = self.layers.len();
        }
        Some(r)
    }
}
