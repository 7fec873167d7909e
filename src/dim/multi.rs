//! Multiple globals (docs/method.md §7.1): K global vectors computed from the local
//! map by `3×3 conv (no padding) → BN → ReLU → 1×1 conv → BN → ReLU`, so
//! each global summarises a 3×3 block of local vectors (K = (M − 2)²: 25
//! for a 7×7 map). The global MI head embeds all K of them (its BN sees all
//! N·K rows, as the reference's `MI1x1ConvNet` on the K-location map);
//! optionally only `samples` of them per image, drawn with replacement
//! from `(seed, step)`, are scored (the reference's `global_samples`).

use crate::dim::block::{Block, BlockActs, Mode};
use crate::dim::config::Layer;
use crate::dim::encoder::out_and_grad;
use crate::error::{Result, checked_product};
use crate::kernels::par::{map_to_rows, rows_to_map};
use crate::nn::Builder;
use crate::params::ParamTable;
use crate::rng::Rng;

/// Stream that draws the sampled globals of each step.
const SAMPLE_STREAM: u64 = 0x474C_4F42_414C;

/// Parameter offsets of the global conv stack (`multi_global.conv{1,2}`,
/// `multi_global.bn{1,2}`).
#[derive(Clone, Debug)]
pub(crate) struct MultiGlobalNet {
    conv1: Block,
    conv2: Block,
    /// Channels of each global vector.
    pub c_out: usize,
    /// Globals per image K.
    pub k: usize,
    /// Globals scored per image (K, or the sample count).
    pub scored: usize,
    /// True when `samples` is set (even to K: draws are with replacement).
    sampled: bool,
    local: [usize; 3],
}

/// The sampled globals of one step: indices into the N·K rows and the
/// gathered rows.
#[derive(Debug, Default)]
pub(crate) struct Sample {
    scored: usize,
    idx: Vec<usize>,
    g: Vec<f32>,
    d_full: Vec<f32>,
}

/// Activations of the stack at one batch size.
#[derive(Debug)]
pub(crate) struct MultiActs {
    n: usize,
    b1: BlockActs,
    b2: BlockActs,
    /// The globals as rows `[(i, k), c_out]`, k = h·(M − 2) + w.
    pub rows: Vec<f32>,
    /// Gradient w.r.t. `rows` (set by the caller before `backward`).
    pub d_rows: Vec<f32>,
    /// Gradient w.r.t. the local map (NCHW), written by `backward`.
    pub d_local: Vec<f32>,
    /// `None` when every global is scored.
    pub sample: Option<Sample>,
}

impl MultiGlobalNet {
    /// Registers the two conv blocks for a local map of shape `local`.
    pub fn new(
        params: &mut ParamTable,
        buffers: &mut ParamTable,
        local: [usize; 3],
        channels: usize,
        samples: Option<usize>,
    ) -> Self {
        let layer =
            |kernel| Layer::Conv { out: channels, kernel, stride: 1, padding: 0, bn: true, relu: true, pool: false };
        let mut b = Builder::new(params, buffers);
        let conv1 = Block::new(&mut b, "multi_global.conv1", "multi_global.bn1", local, layer(3));
        let conv2 = Block::new(&mut b, "multi_global.conv2", "multi_global.bn2", conv1.out, layer(1));
        let k = conv2.out[1] * conv2.out[2];
        Self { conv1, conv2, c_out: channels, k, scored: samples.unwrap_or(k), sampled: samples.is_some(), local }
    }

    /// Activations for `n` images; `d` is the MI width (for the sampled rows).
    pub fn alloc(&self, n: usize, d: usize) -> Result<MultiActs> {
        let rows = checked_product("multi-global rows", &[n, self.k, self.c_out])?;
        let sample = self.sampled.then(|| Sample {
            scored: self.scored,
            idx: vec![0; n * self.scored],
            g: vec![0.0; n * self.scored * d],
            d_full: vec![0.0; n * self.k * d],
        });
        Ok(MultiActs {
            n,
            b1: self.conv1.alloc(n, true)?,
            b2: self.conv2.alloc(n, true)?,
            rows: vec![0.0; rows],
            d_rows: vec![0.0; rows],
            d_local: vec![0.0; checked_product("multi-global local map", &[n, self.local.iter().product()])?],
            sample,
        })
    }

    /// Forward from the local map (NCHW) into `acts.rows` (train mode).
    pub fn forward(&self, params: &[f32], buffers: &mut [f32], local: &[f32], acts: &mut MultiActs) -> Result<()> {
        let n = acts.n;
        self.conv1.forward(n, params, buffers, local, &mut acts.b1, Mode::Train)?;
        self.conv2.forward(n, params, buffers, acts.b1.out(&self.conv1), &mut acts.b2, Mode::Train)?;
        map_to_rows(acts.b2.out(&self.conv2), &mut acts.rows, self.c_out, self.k);
        Ok(())
    }

    /// Backward from `acts.d_rows`; writes `acts.d_local`, accumulates
    /// parameter gradients.
    pub fn backward(&self, params: &[f32], grads: &mut [f32], local: &[f32], acts: &mut MultiActs) -> Result<()> {
        let n = acts.n;
        rows_to_map(&acts.d_rows, &mut acts.b2.d_out, self.c_out, self.k);
        {
            let (input, dx) = out_and_grad(&self.conv1, &mut acts.b1);
            self.conv2.backward(n, params, grads, input, &mut acts.b2, Some(dx))?;
        }
        self.conv1.backward(n, params, grads, local, &mut acts.b1, Some(&mut acts.d_local))
    }
}

impl Sample {
    /// Draws `scored` globals per image for `step` (uniform, with
    /// replacement: image i's j-th draw is row `i·K + below(K)`) and gathers
    /// their embeddings from `full` (`[N·K, D]`).
    pub fn gather<'a>(&'a mut self, full: &[f32], k: usize, d: usize, seed: u64, step: u64) -> &'a [f32] {
        let mut rng = Rng::derive(seed ^ SAMPLE_STREAM, step);
        let scored = self.scored.max(1);
        for (r, v) in self.idx.iter_mut().enumerate() {
            *v = (r / scored) * k + rng.below_usize(k);
        }
        for (row, &src) in self.g.chunks_exact_mut(d).zip(&self.idx) {
            row.copy_from_slice(&full[src * d..(src + 1) * d]);
        }
        &self.g
    }

    /// Scatter-adds the sampled rows' gradient `d_g` (`[N·s, D]`) into the
    /// full `[N·K, D]` gradient (zero for globals not drawn).
    pub fn scatter(&mut self, d_g: &[f32], d: usize) -> &[f32] {
        self.d_full.fill(0.0);
        for (row, &dst) in d_g.chunks_exact(d).zip(&self.idx) {
            for (a, &b) in self.d_full[dst * d..(dst + 1) * d].iter_mut().zip(row) {
                *a += b;
            }
        }
        &self.d_full
    }

    /// The drawn rows of the last step (`i·K + k`).
    pub fn indices(&self) -> &[usize] {
        &self.idx
    }
}
