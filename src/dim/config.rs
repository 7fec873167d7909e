//! Model configuration: a Rust builder and a TOML/JSON file form (serde).
//! Every shape is derived from the config; nothing is hard-coded.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

fn yes() -> bool {
    true
}

/// One encoder layer. Conv and linear layers expand, in order, to
/// `conv/linear → BN (if bn) → ReLU (if relu) → max-pool 3/2 (if pool)`
/// (spec §2.1). A layer with BN has no bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
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
        #[serde(default = "yes")]
        bn: bool,
        /// ReLU after BN.
        #[serde(default = "yes")]
        relu: bool,
        /// Max-pool (kernel 3, stride 2) at the end.
        #[serde(default)]
        pool: bool,
    },
    /// Fully connected layer (flattens a conv map channel-major first).
    Linear {
        /// Output features.
        out: usize,
        /// Batch norm after the linear map.
        #[serde(default = "yes")]
        bn: bool,
        /// ReLU after BN.
        #[serde(default = "yes")]
        relu: bool,
    },
}

/// An encoder: input shape, layers, which layer is the local map, and the
/// width of the global vector Y (a final linear layer with bias, no BN, no
/// activation, appended automatically).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Input `[channels, height, width]`.
    pub input: [usize; 3],
    /// The layers before Y.
    pub layers: Vec<Layer>,
    /// Index in `layers` of the local feature map.
    pub local_layer: usize,
    /// Width of Y (64 in every paper experiment).
    pub y_dim: usize,
}

const fn conv(out: usize, kernel: usize, stride: usize, padding: usize, pool: bool) -> Layer {
    Layer::Conv { out, kernel, stride, padding, bn: true, relu: true, pool }
}

const fn fc(out: usize) -> Layer {
    Layer::Linear { out, bn: true, relu: true }
}

impl EncoderConfig {
    /// `basic28x28` (spec §2.4): 28×28×1, local map 7×7×128.
    pub fn conv28() -> Self {
        Self {
            input: [1, 28, 28],
            layers: vec![conv(64, 5, 2, 2, false), conv(128, 5, 2, 2, false), fc(1024)],
            local_layer: 1,
            y_dim: 64,
        }
    }

    /// The DCGAN encoder `basic32x32` (spec §2.2): 32×32×3, local 8×8×128.
    pub fn conv32() -> Self {
        Self {
            input: [3, 32, 32],
            layers: vec![conv(64, 4, 2, 1, false), conv(128, 4, 2, 1, false), conv(256, 4, 2, 1, false), fc(1024)],
            local_layer: 1,
            y_dim: 64,
        }
    }

    /// AlexNet-like `alex64x64` (spec §2.3): 64×64×3, local 15×15×384.
    pub fn alex64() -> Self {
        Self {
            input: [3, 64, 64],
            layers: vec![
                conv(96, 3, 1, 1, true),
                conv(192, 3, 1, 1, true),
                conv(384, 3, 1, 1, false),
                conv(384, 3, 1, 1, false),
                conv(192, 3, 1, 1, true),
                fc(4096),
                fc(4096),
            ],
            local_layer: 2,
            y_dim: 64,
        }
    }

    /// `edge`: a microcontroller-sized encoder for 28×28×1 (our design):
    /// three 3×3 stride-2 convs (16, 32, 64 channels; local map 7×7×32),
    /// FC 256, Y 64. About 302 k parameters (604 KB in f16); batch-1
    /// activations stay under 16 KiB per layer.
    pub fn edge() -> Self {
        Self {
            input: [1, 28, 28],
            layers: vec![conv(16, 3, 2, 1, false), conv(32, 3, 2, 1, false), conv(64, 3, 2, 1, false), fc(256)],
            local_layer: 1,
            y_dim: 64,
        }
    }

    /// A preset by name: `conv28`, `conv32`, `alex64` or `edge`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "conv28" => Some(Self::conv28()),
            "conv32" => Some(Self::conv32()),
            "alex64" => Some(Self::alex64()),
            "edge" => Some(Self::edge()),
            _ => None,
        }
    }

    /// Walks the layers and returns each one's output shape `[c, h, w]`
    /// (linear layers give `[out, 1, 1]`), checking that every layer fits.
    pub fn shapes(&self) -> Result<Vec<[usize; 3]>> {
        let [c0, h0, w0] = self.input;
        if c0 == 0 || h0 == 0 || w0 == 0 {
            return Err(Error::ZeroSize { what: "encoder input" });
        }
        if self.layers.is_empty() {
            return Err(Error::InvalidShape { what: "encoder", reason: "needs at least one layer" });
        }
        if self.y_dim == 0 {
            return Err(Error::ZeroSize { what: "encoder y_dim" });
        }
        if self.local_layer >= self.layers.len() {
            return Err(Error::InvalidShape { what: "encoder local_layer", reason: "index past the last layer" });
        }
        let mut cur = self.input;
        let mut seen_linear = false;
        let mut out = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            cur = match *layer {
                Layer::Conv { out: oc, kernel, stride, padding, pool, .. } => {
                    if seen_linear {
                        return Err(Error::InvalidShape {
                            what: "encoder",
                            reason: "a conv layer follows a linear layer",
                        });
                    }
                    if oc == 0 || kernel == 0 || stride == 0 {
                        return Err(Error::ZeroSize { what: "encoder conv layer (out, kernel and stride)" });
                    }
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
                    [oc, h, w]
                }
                Layer::Linear { out: o, .. } => {
                    if o == 0 {
                        return Err(Error::ZeroSize { what: "encoder linear layer out" });
                    }
                    seen_linear = true;
                    [o, 1, 1]
                }
            };
            out.push(cur);
        }
        Ok(out)
    }
}

/// The MI estimator (spec §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    /// Jensen–Shannon (the reference default).
    #[default]
    Jsd,
    /// infoNCE, memory-efficient form.
    Nce,
    /// Donsker–Varadhan.
    Dv,
}

/// How local/global pairs are scored (spec §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Encode-and-dot-product (§4.1): all N×N×P pairs from one GEMM.
    #[default]
    Dot,
    /// Concat-and-convolve (§4.2): one positive and one negative (a
    /// permuted image) per location, as in the first public code.
    Concat,
}

/// The encoder: a preset name or a full layer list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EncoderSpec {
    /// `conv28`, `conv32`, `alex64` or `edge`.
    Preset(String),
    /// A custom encoder.
    Custom(EncoderConfig),
}

impl EncoderSpec {
    /// The concrete encoder.
    pub fn resolve(&self) -> Result<EncoderConfig> {
        match self {
            EncoderSpec::Preset(name) => EncoderConfig::preset(name).ok_or(Error::InvalidParameter {
                what: "encoder",
                reason: "unknown preset (expected conv28, conv32, alex64 or edge)",
            }),
            EncoderSpec::Custom(c) => Ok(c.clone()),
        }
    }
}

/// Occlusion (spec §7.2): Y is computed from a copy of the input with one
/// random axis-aligned square per image overwritten by `fill`, while the
/// local features come from the clean input. The square is redrawn every
/// step from `(seed, step)`, uniformly among the positions where it fits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occlusion {
    /// Side of the square in pixels, `1..=min(height, width)` (half the
    /// image side is a good start: 14 for 28×28).
    pub size: usize,
    /// Value written into the square, in normalised units. Default 0: the
    /// middle of [−1, 1], i.e. mid-grey under the (x − 0.5)/0.5
    /// normalisation; the model never sees the dataset's own mean.
    #[serde(default)]
    pub fill: f32,
}

/// Multiple globals (spec §7.1): K global vectors from a small conv stack
/// over the local map (3×3 conv, no padding → BN → ReLU → 1×1 conv → BN →
/// ReLU; K = (M − 2)² for an M×M map, 25 for conv28's 7×7), each embedded
/// by the global MI head and scored against every local vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiGlobal {
    /// Channels of both convs (default: the local map's channels).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Globals scored per image per step, drawn uniformly with replacement
    /// from `(seed, step)` after the MI head, as the reference's
    /// `global_samples` (default: all K). `1` is the paper's "one 3×3 block
    /// of the local map, picked at random".
    #[serde(default)]
    pub samples: Option<usize>,
}

fn default_mi_units() -> usize {
    2048
}

fn one() -> f64 {
    1.0
}

fn default_lambda() -> f64 {
    1.0
}

/// A DIM model: encoder, MI heads, estimator and objective weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DimConfig {
    /// The encoder.
    pub encoder: EncoderSpec,
    /// Width D of the MI embedding (reference default 2048; 512 is a common
    /// CPU choice).
    #[serde(default = "default_mi_units")]
    pub mi_units: usize,
    /// MI estimator.
    #[serde(default)]
    pub estimator: Estimator,
    /// Scoring head.
    #[serde(default)]
    pub head: HeadKind,
    /// Weight of global DIM (α, spec §4.3); 0 disables it.
    #[serde(default)]
    pub alpha: f64,
    /// Weight of local DIM (β).
    #[serde(default = "one")]
    pub beta: f64,
    /// Weight of prior matching (γ, spec §4.4); 0 disables it.
    #[serde(default)]
    pub gamma: f64,
    /// Gradient-penalty weight λ of the prior discriminator.
    #[serde(default = "default_lambda")]
    pub prior_lambda: f64,
    /// Seed for initialisation (and for the per-step draws of the concat
    /// head, occlusion and global sampling).
    #[serde(default)]
    pub seed: u64,
    /// Occlusion (spec §7.2); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<Occlusion>,
    /// Multiple globals (spec §7.1); one global (Y) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<MultiGlobal>,
}

impl DimConfig {
    /// A config with the given encoder preset and the reference defaults.
    pub fn new(encoder: &str) -> Self {
        Self {
            encoder: EncoderSpec::Preset(encoder.into()),
            mi_units: default_mi_units(),
            estimator: Estimator::Jsd,
            head: HeadKind::Dot,
            alpha: 0.0,
            beta: 1.0,
            gamma: 0.0,
            prior_lambda: 1.0,
            seed: 0,
            occlusion: None,
            globals: None,
        }
    }

    /// Builder: occlude a `size`×`size` square (filled with 0) of the input
    /// Y is computed from.
    pub fn occlusion(mut self, size: usize) -> Self {
        self.occlusion = Some(Occlusion { size, fill: 0.0 });
        self
    }

    /// Builder: multiple globals.
    pub fn multi_globals(mut self, g: MultiGlobal) -> Self {
        self.globals = Some(g);
        self
    }

    /// Builder: MI width.
    pub fn mi_units(mut self, d: usize) -> Self {
        self.mi_units = d;
        self
    }

    /// Builder: estimator.
    pub fn estimator(mut self, e: Estimator) -> Self {
        self.estimator = e;
        self
    }

    /// Builder: scoring head.
    pub fn head(mut self, h: HeadKind) -> Self {
        self.head = h;
        self
    }

    /// Builder: objective weights (α global, β local, γ prior).
    pub fn weights(mut self, alpha: f64, beta: f64, gamma: f64) -> Self {
        self.alpha = alpha;
        self.beta = beta;
        self.gamma = gamma;
        self
    }

    /// Builder: init seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks the config (and its encoder's shapes).
    pub fn validate(&self) -> Result<EncoderConfig> {
        let enc = self.encoder.resolve()?;
        enc.shapes()?;
        if self.mi_units == 0 {
            return Err(Error::ZeroSize { what: "mi_units" });
        }
        for (what, v) in
            [("alpha", self.alpha), ("beta", self.beta), ("gamma", self.gamma), ("prior_lambda", self.prior_lambda)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::InvalidParameter { what, reason: "must be finite and >= 0" });
            }
        }
        if self.alpha == 0.0 && self.beta == 0.0 {
            return Err(Error::InvalidParameter { what: "alpha, beta", reason: "at least one MI term must be on" });
        }
        if let Some(o) = &self.occlusion {
            let [_, h, w] = enc.input;
            if o.size == 0 || o.size > h.min(w) {
                return Err(Error::InvalidParameter {
                    what: "occlusion.size",
                    reason: "must be between 1 and the image's smaller side",
                });
            }
            if !o.fill.is_finite() {
                return Err(Error::InvalidParameter { what: "occlusion.fill", reason: "must be finite" });
            }
        }
        if let Some(g) = &self.globals {
            self.globals_count(&enc)?;
            if g.channels == Some(0) {
                return Err(Error::InvalidParameter { what: "globals.channels", reason: "must be at least 1" });
            }
            if self.head != HeadKind::Dot {
                return Err(Error::InvalidParameter {
                    what: "globals",
                    reason: "multiple globals need the dot head (the concat head scores Y)",
                });
            }
        }
        Ok(enc)
    }

    /// Global vectors per image scored by local DIM: 1 without multiple
    /// globals, else K = (M − 2)² or the configured sample count.
    pub fn globals_count(&self, enc: &EncoderConfig) -> Result<usize> {
        let Some(g) = &self.globals else { return Ok(1) };
        let [_, h, w] = enc.shapes()?[enc.local_layer];
        if h < 3 || w < 3 {
            return Err(Error::InvalidParameter {
                what: "globals",
                reason: "the local map must be at least 3×3 (the first global conv is 3×3 without padding)",
            });
        }
        let k = (h - 2) * (w - 2);
        match g.samples {
            None => Ok(k),
            Some(s) if s >= 1 && s <= k => Ok(s),
            Some(_) => Err(Error::InvalidParameter {
                what: "globals.samples",
                reason: "must be between 1 and the number of globals K = (M − 2)²",
            }),
        }
    }
}
