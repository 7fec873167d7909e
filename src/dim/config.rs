//! Model configuration: a Rust builder and a TOML/JSON file form (serde).
//! Every shape is derived from the config; nothing is hard-coded.

use serde::{Deserialize, Serialize};

pub use crate::model::{Fold, Layer};

use crate::bounds;
use crate::error::{Error, Result};

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
    /// Optional crop stage (folded encoders); `local_layer` must be the
    /// fold layer or a later one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fold: Option<Fold>,
}

const fn conv(out: usize, kernel: usize, stride: usize, padding: usize, pool: bool) -> Layer {
    Layer::Conv { out, kernel, stride, padding, bn: true, relu: true, pool }
}

const fn fc(out: usize) -> Layer {
    Layer::Linear { out, bn: true, relu: true }
}

impl EncoderConfig {
    /// `basic28x28` (docs/method.md §2.4): 28×28×1, local map 7×7×128.
    pub fn conv28() -> Self {
        Self {
            input: [1, 28, 28],
            layers: vec![conv(64, 5, 2, 2, false), conv(128, 5, 2, 2, false), fc(1024)],
            local_layer: 1,
            y_dim: 64,
            fold: None,
        }
    }

    /// The DCGAN encoder `basic32x32` (docs/method.md §2.2): 32×32×3, local 8×8×128.
    pub fn conv32() -> Self {
        Self {
            input: [3, 32, 32],
            layers: vec![conv(64, 4, 2, 1, false), conv(128, 4, 2, 1, false), conv(256, 4, 2, 1, false), fc(1024)],
            local_layer: 1,
            y_dim: 64,
            fold: None,
        }
    }

    /// AlexNet-like `alex64x64` (docs/method.md §2.3): 64×64×3, local 15×15×384.
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
            fold: None,
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
            fold: None,
        }
    }

    /// `fold28`: a folded encoder for 28×28×1 (our design after the
    /// reference's `foldalex64x64`, docs/method.md §2.6): 8×8 crops with stride 4
    /// (6×6 = 36 crops); per crop conv 4/2/1 32 → 4×4, conv 4/2/1 64 → 2×2,
    /// conv 2/1/0 128 → 1×1; fold → the local map 6×6×128 (each location
    /// sees one crop); conv 3/2/1 256 → 3×3; FC 1024; Y 64. About 11 M
    /// multiply-adds per image (conv28: 17 M).
    pub fn fold28() -> Self {
        Self {
            input: [1, 28, 28],
            layers: vec![
                conv(32, 4, 2, 1, false),
                conv(64, 4, 2, 1, false),
                conv(128, 2, 1, 0, false),
                conv(256, 3, 2, 1, false),
                fc(1024),
            ],
            local_layer: 2,
            y_dim: 64,
            fold: Some(Fold { crop: 8, stride: 4, layer: 2 }),
        }
    }

    /// `resnet19_32x32` (docs/method.md §2.5): 32×32×3; conv 3/2/1 64, then
    /// bottlenecks (64, 64, 128/2, 128, 256/2, 256); the local map is the
    /// first stride-2 block's output, 8×8×512 (spec idx 2, here layer 3);
    /// the conv tap is the last block (4×4×1024); FC 1024; Y 64.
    pub fn resnet32() -> Self {
        let block = |planes, stride| Layer::Bottleneck { planes, stride };
        Self {
            input: [3, 32, 32],
            layers: vec![
                conv(64, 3, 2, 1, false),
                block(64, 1),
                block(64, 1),
                block(128, 2),
                block(128, 1),
                block(256, 2),
                block(256, 1),
                fc(1024),
            ],
            local_layer: 3,
            y_dim: 64,
            fold: None,
        }
    }

    /// A preset by name: `conv28`, `conv32`, `alex64`, `edge`, `fold28` or
    /// `resnet32`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "conv28" => Some(Self::conv28()),
            "conv32" => Some(Self::conv32()),
            "alex64" => Some(Self::alex64()),
            "edge" => Some(Self::edge()),
            "fold28" => Some(Self::fold28()),
            "resnet32" => Some(Self::resnet32()),
            _ => None,
        }
    }

    /// Walks the layers and returns each one's output shape `[c, h, w]` per
    /// sample (linear layers give `[out, 1, 1]`), checking that every layer
    /// fits. In a folded encoder the layers up to the fold work per crop,
    /// and the fold layer's entry is the folded map `[c·h·w, grid_h, grid_w]`.
    pub fn shapes(&self) -> Result<Vec<[usize; 3]>> {
        let (io, grid) = self.layer_io()?;
        let mut out: Vec<[usize; 3]> = io.iter().map(|&(_, o)| o).collect();
        if let (Some(f), Some((gh, gw))) = (self.fold, grid) {
            let [c, h, w] = out[f.layer];
            let ch =
                c.checked_mul(h).and_then(|v| v.checked_mul(w)).ok_or(Error::Overflow { what: "fold channels" })?;
            out[f.layer] = [ch, gh, gw];
        }
        Ok(out)
    }

    /// The crop grid `(rows, cols)` of a folded encoder (`None` unfolded).
    pub fn crop_grid(&self) -> Result<Option<(usize, usize)>> {
        Ok(self.layer_io()?.1)
    }

    /// Per layer, its input and output shape per sample (a crop before the
    /// fold; the fold layer's output before folding), and the crop grid.
    #[allow(clippy::type_complexity)]
    pub(crate) fn layer_io(&self) -> Result<(Vec<([usize; 3], [usize; 3])>, Option<(usize, usize)>)> {
        let walk = self.walk()?;
        let grid = walk.grid();
        let out = walk.map(|io| io.map(|io| (io.input, io.out))).collect::<Result<Vec<_>>>()?;
        Ok((out, grid))
    }

    /// The walk over the layers ([`crate::model::Walk`]): shapes and names.
    pub fn walk(&self) -> Result<crate::model::Walk<'_>> {
        crate::model::Walk::new(self.input, &self.layers, self.fold, self.local_layer, self.y_dim)
    }

    /// A lower bound on the encoder's weights (conv and linear matrices and
    /// Y), saturating, so absurd configs are refused before allocating.
    pub(crate) fn min_weight_count(&self) -> Result<u128> {
        let (io, _) = self.layer_io()?;
        let u = |v: usize| v as u128;
        let flat = |s: [usize; 3]| u(s[0]).saturating_mul(u(s[1])).saturating_mul(u(s[2]));
        let mut total = 0u128;
        for (layer, &(inp, out)) in self.layers.iter().zip(&io) {
            let weights = match *layer {
                Layer::Conv { kernel, .. } => {
                    u(out[0]).saturating_mul(u(inp[0])).saturating_mul(u(kernel)).saturating_mul(u(kernel))
                }
                Layer::Linear { .. } => u(out[0]).saturating_mul(flat(inp)),
                Layer::Bottleneck { planes, .. } => {
                    let p = u(planes);
                    let inner = p.saturating_mul(u(inp[0])).saturating_add(p.saturating_mul(p).saturating_mul(13));
                    let projection = if inp != out { u(out[0]).saturating_mul(u(inp[0])) } else { 0 };
                    inner.saturating_add(projection)
                }
            };
            total = total.saturating_add(weights);
        }
        let last = *self.shapes()?.last().ok_or(Error::InvalidShape { what: "encoder", reason: "no layers" })?;
        Ok(total.saturating_add(flat(last).saturating_mul(u(self.y_dim))))
    }
}

/// The MI estimator (docs/method.md §3).
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

/// How local/global pairs are scored (docs/method.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Encode-and-dot-product (docs/method.md §4.1): all N×N×P pairs from one GEMM.
    #[default]
    Dot,
    /// Concat-and-convolve (docs/method.md §4.2): one positive and one negative (a
    /// permuted image) per location, as in the first public code.
    Concat,
}

/// The encoder: a preset name or a full layer list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EncoderSpec {
    /// A preset name: `conv28`, `conv32`, `alex64`, `edge`, `fold28` or `resnet32`.
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
                reason: "unknown preset (expected conv28, conv32, alex64, edge, fold28 or resnet32)",
            }),
            EncoderSpec::Custom(c) => Ok(c.clone()),
        }
    }
}

/// Occlusion (docs/method.md §7.2): Y is computed from a copy of the input with one
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

/// Multiple globals (docs/method.md §7.1): K global vectors from a small conv stack
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
    /// Weight of global DIM (α, docs/method.md §4.3); 0 disables it.
    #[serde(default)]
    pub alpha: f64,
    /// Weight of local DIM (β).
    #[serde(default = "one")]
    pub beta: f64,
    /// Weight of prior matching (γ, docs/method.md §4.4); 0 disables it.
    #[serde(default)]
    pub gamma: f64,
    /// Gradient-penalty weight λ of the prior discriminator.
    #[serde(default = "default_lambda")]
    pub prior_lambda: f64,
    /// Seed for initialisation (and for the per-step draws of the concat
    /// head, occlusion and global sampling).
    #[serde(default)]
    pub seed: u64,
    /// Occlusion (docs/method.md §7.2); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occlusion: Option<Occlusion>,
    /// Multiple globals (docs/method.md §7.1); one global (Y) when absent.
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
        bounds::MI_UNITS.check_usize(self.mi_units)?;
        bounds::ALPHA.check_f64(self.alpha)?;
        bounds::BETA.check_f64(self.beta)?;
        bounds::GAMMA.check_f64(self.gamma)?;
        bounds::PRIOR_LAMBDA.check_f64(self.prior_lambda)?;
        if self.alpha == 0.0 && self.beta == 0.0 {
            return Err(Error::InvalidParameter { what: "alpha, beta", reason: "at least one MI term must be on" });
        }
        if let Some(o) = &self.occlusion {
            let [_, h, w] = enc.input;
            bounds::OCCLUSION_SIZE.check_usize(o.size)?;
            bounds::OCCLUSION_FILL.check_f64(f64::from(o.fill))?;
            if o.size > h.min(w) {
                return Err(Error::InvalidParameter {
                    what: "occlusion.size",
                    reason: "must be between 1 and the image's smaller side",
                });
            }
        }
        if let Some(g) = &self.globals {
            if let Some(c) = g.channels {
                bounds::GLOBAL_CHANNELS.check_usize(c)?;
            }
            if let Some(s) = g.samples {
                bounds::GLOBAL_SAMPLES.check_usize(s)?;
            }
            self.globals_count(&enc)?;
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
