//! One DIM model: encoder + MI heads + estimator, over flat parameter,
//! gradient and buffer vectors planned from the config (llm.c style).

use rayon::prelude::*;

use crate::dim::block::Mode;
use crate::dim::concat::{ConcatActs, ConcatHead};
use crate::dim::config::{DimConfig, EncoderConfig, HeadKind};
use crate::dim::encoder::{Encoder, EncoderActs};
use crate::dim::estimator::{EstimatorStats, ScoreShape, estimate};
use crate::dim::global::{GlobalActs, GlobalDim};
use crate::dim::head::{HeadActs, MiHead};
use crate::dim::prior::{Prior, PriorConfig, PriorStats};
use crate::error::{Error, Result, check_len};
use crate::kernels::{MatRef, par};
use crate::params::ParamTable;

/// A DIM model with its parameters.
#[derive(Clone, Debug)]
pub struct Dim {
    /// The config it was built from.
    pub cfg: DimConfig,
    /// The encoder.
    pub encoder: Encoder,
    /// Encode-and-dot-product local head (`head = "dot"`).
    local_head: Option<MiHead>,
    /// Concat-and-convolve local head (`head = "concat"`).
    concat: Option<ConcatHead>,
    /// `None` when Y is already D wide (the reference's `NopNet`).
    global_head: Option<MiHead>,
    /// Global DIM (α > 0).
    global: Option<GlobalDim>,
    /// Adversarial prior matching (γ > 0): its own discriminator and Adam.
    pub prior: Option<Prior>,
    /// Trainable tensors (names, shapes, offsets).
    pub table: ParamTable,
    /// Non-trainable tensors: BN running statistics.
    pub buffer_table: ParamTable,
    /// Parameter values.
    pub params: Vec<f32>,
    /// Gradients (same layout as `params`).
    pub grads: Vec<f32>,
    /// Buffer values.
    pub buffers: Vec<f32>,
}

/// Everything one training step needs at batch `n`, allocated once.
#[derive(Debug)]
pub struct Workspace {
    n: usize,
    step: u64,
    enc: EncoderActs,
    local_rows: Vec<f32>,
    d_local_rows: Vec<f32>,
    d_local_map: Vec<f32>,
    lh: Option<HeadActs>,
    concat: Option<ConcatActs>,
    gh: Option<HeadActs>,
    scores: Vec<f32>,
    d_scores: Vec<f32>,
    d_g: Vec<f32>,
    d_y: Vec<f32>,
    global: Option<GlobalActs>,
}

impl Workspace {
    /// Sets the training step the next `forward_backward` belongs to: the
    /// concat head draws its negative pairing from the seed and this step,
    /// so a resumed run pairs exactly as an uninterrupted one.
    pub fn set_step(&mut self, step: u64) {
        self.step = step;
    }
}

/// What one step reports.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepStats {
    /// Total loss minimised.
    pub loss: f64,
    /// The local-DIM estimator's view (loss, MI, positive/negative means).
    pub local: EstimatorStats,
    /// Global DIM's view, when α > 0.
    pub global: Option<EstimatorStats>,
    /// The encoder's prior loss γ·mean sp(−d(σY)), when γ > 0.
    pub prior_loss: Option<f64>,
}

/// NCHW `[n, c, p]` → rows `[(n, p), c]`.
fn map_to_rows(map: &[f32], rows: &mut [f32], c: usize, p: usize) {
    rows.par_chunks_mut(p * c).zip(map.par_chunks(c * p)).for_each(|(r, m)| {
        for ch in 0..c {
            for pi in 0..p {
                r[pi * c + ch] = m[ch * p + pi];
            }
        }
    });
}

/// Rows `[(n, p), c]` → NCHW `[n, c, p]`.
fn rows_to_map(rows: &[f32], map: &mut [f32], c: usize, p: usize) {
    map.par_chunks_mut(c * p).zip(rows.par_chunks(p * c)).for_each(|(m, r)| {
        for ch in 0..c {
            for pi in 0..p {
                m[ch * p + pi] = r[pi * c + ch];
            }
        }
    });
}

impl Dim {
    /// Builds the model and initialises it from `cfg.seed`.
    pub fn new(cfg: DimConfig) -> Result<Self> {
        let enc_cfg: EncoderConfig = cfg.validate()?;
        let mut table = ParamTable::new();
        let mut buffer_table = ParamTable::new();
        let encoder = Encoder::build(&enc_cfg, "encoder.", &mut table, &mut buffer_table)?;
        let [c, _, _] = encoder.local_shape();
        let d = cfg.mi_units;
        let dot = cfg.head == HeadKind::Dot;
        let local_head = dot.then(|| MiHead::new(&mut table, &mut buffer_table, "local_head", c, d));
        let concat = (!dot).then(|| ConcatHead::new(&mut table, c, enc_cfg.y_dim, d));
        let global_head = (dot && enc_cfg.y_dim != d)
            .then(|| MiHead::new(&mut table, &mut buffer_table, "global_head", enc_cfg.y_dim, d));
        let global =
            if cfg.alpha > 0.0 { Some(GlobalDim::new(&enc_cfg, d, &mut table, &mut buffer_table)?) } else { None };
        let prior = if cfg.gamma > 0.0 {
            let pc = PriorConfig { gamma: cfg.gamma, lambda: cfg.prior_lambda, ..PriorConfig::default() };
            Some(Prior::new(enc_cfg.y_dim, pc, cfg.seed ^ 0x5052_494F_5200)?)
        } else {
            None
        };
        let mut params = vec![0f32; table.len()];
        table.init(&mut params, cfg.seed);
        let mut buffers = vec![0f32; buffer_table.len()];
        buffer_table.init(&mut buffers, cfg.seed);
        let grads = vec![0f32; table.len()];
        Ok(Self {
            cfg,
            encoder,
            local_head,
            concat,
            global_head,
            global,
            prior,
            table,
            buffer_table,
            params,
            grads,
            buffers,
        })
    }

    /// Local locations P.
    pub fn locations(&self) -> usize {
        let [_, h, w] = self.encoder.local_shape();
        h * w
    }

    /// Allocates a training workspace for batch `n`.
    pub fn workspace(&self, n: usize) -> Result<Workspace> {
        if n < 2 {
            return Err(Error::InvalidShape { what: "DIM batch", reason: "needs at least 2 images (negatives)" });
        }
        let [c, h, w] = self.encoder.local_shape();
        let p = h * w;
        let d = self.cfg.mi_units;
        let dot = self.local_head.is_some();
        Ok(Workspace {
            n,
            step: 0,
            enc: self.encoder.alloc(n, true)?,
            local_rows: vec![0.0; n * p * c],
            d_local_rows: vec![0.0; n * p * c],
            d_local_map: vec![0.0; n * p * c],
            lh: self.local_head.as_ref().map(|h| h.alloc(n * p, true)),
            concat: self.concat.as_ref().map(|h| h.alloc(n, p)).transpose()?,
            gh: self.global_head.as_ref().map(|g| g.alloc(n, true)),
            scores: if dot { vec![0.0; n * n * p] } else { Vec::new() },
            d_scores: if dot { vec![0.0; n * n * p] } else { Vec::new() },
            d_g: vec![0.0; n * d],
            d_y: vec![0.0; n * self.encoder.cfg.y_dim],
            global: self.global.as_ref().map(|g| g.alloc(n)).transpose()?,
        })
    }

    /// One forward + backward pass on `x` (`[n, c, h, w]` in [−1, 1]):
    /// zeroes the gradients, then fills them. BN running statistics are
    /// updated (train mode). The optimiser step is the caller's.
    pub fn forward_backward(&mut self, x: &[f32], ws: &mut Workspace) -> Result<StepStats> {
        let n = ws.n;
        check_len("DIM input", n * self.encoder.input_len(), x.len())?;
        let [c, h, w] = self.encoder.local_shape();
        let p = h * w;
        let d = self.cfg.mi_units;
        let Self { encoder, local_head, concat, global_head, global, prior, params, grads, buffers, cfg, .. } = self;
        grads.par_chunks_mut(1 << 16).for_each(|g| g.fill(0.0));

        // Forward: encoder, local rows.
        encoder.forward(params, buffers, x, &mut ws.enc, Mode::Train)?;
        map_to_rows(encoder.block_out(&ws.enc, encoder.cfg.local_layer), &mut ws.local_rows, c, p);
        let beta = cfg.beta as f32;
        let local = match (local_head.as_ref(), ws.lh.as_mut(), concat.as_ref(), ws.concat.as_mut()) {
            (Some(lh), Some(lacts), _, _) => {
                // Heads, then all N×N×P scores from one GEMM.
                lh.forward(params, buffers, &ws.local_rows, lacts, Mode::Train)?;
                let y = encoder.y(&ws.enc);
                let g: &[f32] = match (global_head.as_ref(), ws.gh.as_mut()) {
                    (Some(gh), Some(acts)) => {
                        gh.forward(params, buffers, y, acts, Mode::Train)?;
                        &acts.out
                    }
                    _ => y,
                };
                let gm = MatRef::row_major(g, n, d)?;
                let lm = MatRef::row_major(&lacts.out, n * p, d)?;
                par::par_gemm(&mut ws.scores, gm, lm.t(), false)?;
                let local = estimate(cfg.estimator, ScoreShape { n, k: 1, p }, &ws.scores, &mut ws.d_scores, beta)?;

                // Backward: scores → heads.
                let dsm = MatRef::row_major(&ws.d_scores, n, n * p)?;
                par::par_gemm(&mut lacts.d_out, dsm.t(), gm, false)?;
                par::par_gemm(&mut ws.d_g, dsm, lm, false)?;
                lh.backward(params, grads, &ws.local_rows, lacts, &mut ws.d_local_rows)?;
                match (global_head.as_ref(), ws.gh.as_mut()) {
                    (Some(gh), Some(acts)) => {
                        acts.d_out.copy_from_slice(&ws.d_g);
                        gh.backward(params, grads, encoder.y(&ws.enc), acts, &mut ws.d_y)?;
                    }
                    _ => ws.d_y.copy_from_slice(&ws.d_g),
                }
                local
            }
            (_, _, Some(ch), Some(cacts)) => {
                ws.d_y.fill(0.0);
                ch.step(
                    params,
                    grads,
                    &ws.local_rows,
                    encoder.y(&ws.enc),
                    cacts,
                    cfg.estimator,
                    beta,
                    cfg.seed,
                    ws.step,
                    &mut ws.d_local_rows,
                    &mut ws.d_y,
                )?
            }
            _ => return Err(Error::InvalidShape { what: "DIM workspace", reason: "was not made by this model" }),
        };
        rows_to_map(&ws.d_local_rows, &mut ws.d_local_map, c, p);
        let global_stats = match (global.as_ref(), ws.global.as_mut()) {
            (Some(gd), Some(acts)) => Some(gd.step(
                params,
                grads,
                buffers,
                encoder.block_out(&ws.enc, encoder.cfg.local_layer),
                encoder.y(&ws.enc),
                acts,
                cfg.estimator,
                cfg.alpha as f32,
                &mut ws.d_local_map,
                &mut ws.d_y,
            )?),
            _ => None,
        };
        let prior_loss = match prior.as_mut() {
            Some(pr) => Some(pr.encoder_loss(encoder.y(&ws.enc), n, &mut ws.d_y)?),
            None => None,
        };
        encoder.backward(params, grads, x, &mut ws.enc, &ws.d_y, Some(&ws.d_local_map))?;
        let loss = cfg.beta * local.loss + global_stats.map_or(0.0, |g| cfg.alpha * g.loss) + prior_loss.unwrap_or(0.0);
        Ok(StepStats { loss, local, global: global_stats, prior_loss })
    }

    /// One discriminator update of prior matching on the Y of the last
    /// `forward_backward` (treated as a constant), with prior samples from
    /// `rng`. `None` when prior matching is off.
    pub fn prior_step(&mut self, ws: &Workspace, rng: &mut crate::rng::Rng) -> Result<Option<PriorStats>> {
        let y = self.encoder.y(&ws.enc);
        match self.prior.as_mut() {
            Some(p) => Ok(Some(p.discriminator_step(y, ws.n, rng)?)),
            None => Ok(None),
        }
    }

    /// The negative permutation of the concat head's last step (`None` for
    /// the dot head): image i was paired with image `perm[i]`.
    pub fn concat_perm<'a>(&self, ws: &'a Workspace) -> Option<&'a [usize]> {
        match (self.concat.as_ref(), ws.concat.as_ref()) {
            (Some(h), Some(a)) => Some(h.perm(a)),
            _ => None,
        }
    }

    /// Scores `S[i, (j, p)]` of the last forward (for tests and logging).
    pub fn scores<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        &ws.scores
    }

    /// Y of the last forward.
    pub fn y<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        self.encoder.y(&ws.enc)
    }

    /// Copies a tensor's values by name, from parameters or buffers.
    pub fn tensor(&self, name: &str) -> Option<&[f32]> {
        if let Some(e) = self.table.get(name) {
            return Some(&self.params[e.range()]);
        }
        self.buffer_table.get(name).map(|e| &self.buffers[e.range()])
    }

    /// Mutable access to a tensor by name (parameters or buffers).
    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut [f32]> {
        if let Some(e) = self.table.get(name) {
            let r = e.range();
            return Some(&mut self.params[r]);
        }
        let r = self.buffer_table.get(name)?.range();
        Some(&mut self.buffers[r])
    }

    /// The gradient of a parameter by name.
    pub fn grad(&self, name: &str) -> Option<&[f32]> {
        self.table.get(name).map(|e| &self.grads[e.range()])
    }
}
