//! The encoder architecture as the inference path sees it: BN is folded
//! away, so each layer is `conv|linear (+bias) → ReLU? → max-pool 3/2?`,
//! followed by Y (linear with bias). Fixed capacity, `Copy`, no heap, so a
//! firmware can write one in code and a file can carry one in metadata.

use super::error::InferError;
use super::json::Lexer;
use super::safetensors::Weights;
use crate::bounds;

/// Most layers (before Y) an [`Arch`] can hold.
pub const MAX_LAYERS: usize = 16;
/// Longest `encoder_config` metadata value (decoded bytes) [`Arch::from_weights`] reads.
pub const CONFIG_MAX: usize = 2048;

/// One layer before Y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    /// 2-d convolution with a square kernel; then ReLU and max-pool 3/2 if set.
    Conv {
        /// Output channels.
        out: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: usize,
        /// ReLU after the (folded) conv.
        relu: bool,
        /// Max-pool, kernel 3, stride 2, after the ReLU.
        pool: bool,
    },
    /// Fully connected (a conv map is flattened channel-major first).
    Linear {
        /// Output features.
        out: usize,
        /// ReLU after the (folded) linear map.
        relu: bool,
    },
}

impl LayerSpec {
    /// Conv + ReLU, no pool (every preset's conv layer).
    pub const fn conv(out: usize, kernel: usize, stride: usize, padding: usize) -> Self {
        LayerSpec::Conv { out, kernel, stride, padding, relu: true, pool: false }
    }

    /// Linear + ReLU.
    pub const fn linear(out: usize) -> Self {
        LayerSpec::Linear { out, relu: true }
    }

    /// The layer in the model description (BN folded away).
    pub const fn to_layer(self) -> crate::model::Layer {
        match self {
            LayerSpec::Conv { out, kernel, stride, padding, relu, pool } => {
                crate::model::Layer::Conv { out, kernel, stride, padding, bn: false, relu, pool }
            }
            LayerSpec::Linear { out, relu } => crate::model::Layer::Linear { out, bn: false, relu },
        }
    }
}

/// An encoder: input `[c, h, w]`, layers, the local layer and Y's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    input: [usize; 3],
    layers: [LayerSpec; MAX_LAYERS],
    n_layers: usize,
    local_layer: usize,
    y_dim: usize,
}

impl Arch {
    /// An architecture; shapes are checked by [`super::Plan::new`].
    pub fn new(input: [usize; 3], layers: &[LayerSpec], local_layer: usize, y_dim: usize) -> Result<Self, InferError> {
        if layers.is_empty() {
            return Err(InferError::InvalidConfig { reason: "needs at least one layer" });
        }
        if layers.len() > MAX_LAYERS {
            return Err(InferError::InvalidConfig { reason: "more layers than MAX_LAYERS" });
        }
        if local_layer >= layers.len() {
            return Err(InferError::InvalidConfig { reason: "local_layer is past the last layer" });
        }
        // The training side's rows (docs/reliability.md §6), so a file
        // training would refuse is refused here too.
        let [c, h, w] = input;
        bounds::INPUT_CHANNELS.check_usize(c)?;
        bounds::INPUT_SIDE.check_usize(h)?;
        bounds::INPUT_SIDE.check_usize(w)?;
        bounds::Y_DIM.check_usize(y_dim)?;
        for l in layers {
            match *l {
                LayerSpec::Conv { out, kernel, stride, padding, .. } => {
                    bounds::LAYER_WIDTH.check_usize(out)?;
                    bounds::KERNEL.check_usize(kernel)?;
                    bounds::STRIDE.check_usize(stride)?;
                    bounds::PADDING.check_usize(padding)?;
                }
                LayerSpec::Linear { out, .. } => bounds::LAYER_WIDTH.check_usize(out)?,
            }
        }
        let mut arr = [LayerSpec::linear(0); MAX_LAYERS];
        arr[..layers.len()].copy_from_slice(layers);
        Ok(Self { input, layers: arr, n_layers: layers.len(), local_layer, y_dim })
    }

    /// `conv28` (the paper's 28×28 encoder).
    pub fn conv28() -> Self {
        let l = [LayerSpec::conv(64, 5, 2, 2), LayerSpec::conv(128, 5, 2, 2), LayerSpec::linear(1024)];
        Self::preset([1, 28, 28], &l)
    }

    /// `conv32` (the DCGAN encoder for 32×32×3).
    pub fn conv32() -> Self {
        let l = [
            LayerSpec::conv(64, 4, 2, 1),
            LayerSpec::conv(128, 4, 2, 1),
            LayerSpec::conv(256, 4, 2, 1),
            LayerSpec::linear(1024),
        ];
        Self::preset([3, 32, 32], &l)
    }

    /// `edge` (the microcontroller encoder for 28×28×1).
    pub fn edge() -> Self {
        let l = [
            LayerSpec::conv(16, 3, 2, 1),
            LayerSpec::conv(32, 3, 2, 1),
            LayerSpec::conv(64, 3, 2, 1),
            LayerSpec::linear(256),
        ];
        Self::preset([1, 28, 28], &l)
    }

    fn preset(input: [usize; 3], layers: &[LayerSpec]) -> Self {
        let mut arr = [LayerSpec::linear(0); MAX_LAYERS];
        arr[..layers.len()].copy_from_slice(layers);
        Self { input, layers: arr, n_layers: layers.len(), local_layer: 1, y_dim: 64 }
    }

    /// Input `[c, h, w]`.
    pub fn input(&self) -> [usize; 3] {
        self.input
    }

    /// The layers before Y.
    pub fn layers(&self) -> &[LayerSpec] {
        &self.layers[..self.n_layers]
    }

    /// Index of the local feature map.
    pub fn local_layer(&self) -> usize {
        self.local_layer
    }

    /// Width of Y.
    pub fn y_dim(&self) -> usize {
        self.y_dim
    }

    /// Reads the architecture from an exported file's metadata: checks
    /// `format`, `format_version` and `folded`, then parses the JSON in
    /// `encoder_config` (the serde form of the trainer's `EncoderConfig`).
    pub fn from_weights<const N: usize>(w: &Weights<'_, N>) -> Result<Self, InferError> {
        let get = |key: &'static str| w.metadata(key).ok_or(InferError::MissingMetadata { key });
        if !get("format")?.eq_str(super::FORMAT) {
            return Err(InferError::UnsupportedFormat { key: "format" });
        }
        if !get("format_version")?.eq_str(super::FORMAT_VERSION) {
            return Err(InferError::UnsupportedFormat { key: "format_version" });
        }
        if !get("folded")?.eq_str("true") {
            return Err(InferError::UnsupportedFormat { key: "folded" });
        }
        let mut buf = [0u8; CONFIG_MAX];
        let json = get("encoder_config")?
            .decode_into(&mut buf)
            .ok_or(InferError::InvalidConfig { reason: "encoder_config is longer than CONFIG_MAX" })?;
        let text = core::str::from_utf8(json).map_err(|_| InferError::InvalidConfig { reason: "not UTF-8" })?;
        Self::from_config_json(text)
    }

    /// Parses the serde JSON of an `EncoderConfig`, e.g.
    /// `{"input":[1,28,28],"layers":[{"type":"conv","out":64,"kernel":5,
    /// "stride":2,"padding":2,"bn":true,"relu":true,"pool":false},...],
    /// "local_layer":1,"y_dim":64}` (`bn`, `relu` default to true, `pool` to
    /// false, as in serde). `bn` is accepted and ignored: it is folded.
    pub fn from_config_json(text: &str) -> Result<Self, InferError> {
        let mut lx = Lexer::new(text);
        let (mut input, mut local, mut y_dim) = (None, None, None);
        let mut layers = [LayerSpec::linear(0); MAX_LAYERS];
        let mut n_layers = None;
        if lx.open(b'{', b'}')? {
            return Err(InferError::InvalidConfig { reason: "empty encoder config" });
        }
        loop {
            let k = lx.key()?;
            if k.eq_str("input") && input.is_none() {
                lx.expect(b'[', "input needs [c, h, w]")?;
                let c = lx.usize()?;
                lx.expect(b',', "input needs [c, h, w]")?;
                let h = lx.usize()?;
                lx.expect(b',', "input needs [c, h, w]")?;
                let w = lx.usize()?;
                lx.expect(b']', "input needs [c, h, w]")?;
                input = Some([c, h, w]);
            } else if k.eq_str("local_layer") && local.is_none() {
                local = Some(lx.usize()?);
            } else if k.eq_str("y_dim") && y_dim.is_none() {
                y_dim = Some(lx.usize()?);
            } else if k.eq_str("fold") {
                return Err(InferError::UnsupportedLayer { layer: "fold" });
            } else if k.eq_str("layers") && n_layers.is_none() {
                let mut n = 0;
                if !lx.open(b'[', b']')? {
                    loop {
                        if n == MAX_LAYERS {
                            return Err(InferError::InvalidConfig { reason: "more layers than MAX_LAYERS" });
                        }
                        layers[n] = parse_layer(&mut lx)?;
                        n += 1;
                        if !lx.more(b']')? {
                            break;
                        }
                    }
                }
                n_layers = Some(n);
            } else {
                return Err(InferError::InvalidConfig { reason: "unknown or repeated key in encoder_config" });
            }
            if !lx.more(b'}')? {
                break;
            }
        }
        lx.finish()?;
        match (input, n_layers, local, y_dim) {
            (Some(i), Some(n), Some(l), Some(y)) => Self::new(i, &layers[..n], l, y),
            _ => Err(InferError::InvalidConfig { reason: "needs input, layers, local_layer and y_dim" }),
        }
    }
}

fn parse_layer(lx: &mut Lexer<'_>) -> Result<LayerSpec, InferError> {
    #[derive(PartialEq)]
    enum Kind {
        Conv,
        Linear,
    }
    let bad = |reason| InferError::InvalidConfig { reason };
    let mut kind = None;
    // out, kernel, stride, padding
    let mut nums: [Option<usize>; 4] = [None; 4];
    // bn, relu, pool
    let mut flags: [Option<bool>; 3] = [None; 3];
    if lx.open(b'{', b'}')? {
        return Err(bad("empty layer"));
    }
    loop {
        let k = lx.key()?;
        let num = ["out", "kernel", "stride", "padding"].iter().position(|n| k.eq_str(n));
        let flag = ["bn", "relu", "pool"].iter().position(|n| k.eq_str(n));
        if k.eq_str("type") && kind.is_none() {
            let t = lx.string()?;
            kind = Some(if t.eq_str("conv") {
                Kind::Conv
            } else if t.eq_str("linear") {
                Kind::Linear
            } else if t.eq_str("bottleneck") {
                return Err(InferError::UnsupportedLayer { layer: "bottleneck" });
            } else {
                return Err(bad("layer type must be conv or linear"));
            });
        } else if let Some(i) = num.filter(|&i| nums[i].is_none()) {
            nums[i] = Some(lx.usize()?);
        } else if let Some(i) = flag.filter(|&i| flags[i].is_none()) {
            flags[i] = Some(lx.boolean()?);
        } else {
            return Err(bad("unknown or repeated key in a layer"));
        }
        if !lx.more(b'}')? {
            break;
        }
    }
    let relu = flags[1].unwrap_or(true);
    match (kind, nums) {
        (Some(Kind::Conv), [Some(out), Some(kernel), Some(stride), Some(padding)]) => {
            Ok(LayerSpec::Conv { out, kernel, stride, padding, relu, pool: flags[2].unwrap_or(false) })
        }
        (Some(Kind::Linear), [Some(out), None, None, None]) if flags[2].is_none() => {
            Ok(LayerSpec::Linear { out, relu })
        }
        _ => Err(bad("a conv needs out, kernel, stride, padding; a linear only out")),
    }
}
