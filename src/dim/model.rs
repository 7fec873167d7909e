//! One DIM model: encoder + MI heads + estimator, over flat parameter,
//! gradient and buffer vectors planned from the config (llm.c style).

use rayon::prelude::*;

use crate::dim::block::{Mode, add_assign_par};
use crate::dim::concat::{ConcatActs, ConcatHead};
use crate::dim::config::{DimConfig, EncoderConfig, HeadKind};
use crate::dim::encoder::{Encoder, EncoderActs};
use crate::dim::estimator::EstimatorStats;
use crate::dim::global::{GlobalActs, GlobalDim};
use crate::dim::head::{HeadActs, MiHead};
use crate::dim::local::{DotActs, DotTerm, LocalInputs};
use crate::dim::multi::{MultiActs, MultiGlobalNet};
use crate::dim::occlusion::OccActs;
use crate::dim::prior::{Prior, PriorConfig, PriorStats};
use crate::error::{Error, Result, check_len};
use crate::kernels::par::{map_to_rows, rows_to_map};
use crate::model::ENCODER_PREFIX;
use crate::nn::{Builder, Ctx};
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
    /// Multiple globals' conv stack (`globals` set).
    multi: Option<MultiGlobalNet>,
    /// Embeds Y, or the multiple globals; `None` when its input is already
    /// D wide (the reference's `NopNet`).
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
    /// The clean pass (every activation when occlusion is off).
    enc: EncoderActs,
    /// The occluded pass (occlusion on).
    occ: Option<OccActs>,
    multi: Option<MultiActs>,
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
    /// concat head's negative pairing, the occlusion squares and the sampled
    /// globals are drawn from the seed and this step, so a resumed run
    /// draws exactly as an uninterrupted one.
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

impl Dim {
    /// Builds the model and initialises it from `cfg.seed`.
    pub fn new(cfg: DimConfig) -> Result<Self> {
        let enc_cfg: EncoderConfig = cfg.validate()?;
        let mut table = ParamTable::new();
        let mut buffer_table = ParamTable::new();
        let encoder = Encoder::build(&enc_cfg, ENCODER_PREFIX, &mut table, &mut buffer_table)?;
        let [c, _, _] = encoder.local_shape();
        let d = cfg.mi_units;
        let dot = cfg.head == HeadKind::Dot;
        let local_head = dot.then(|| MiHead::new(&mut table, &mut buffer_table, "local_head", c, d));
        let concat = (!dot)
            .then(|| ConcatHead::new(&mut Builder::new(&mut table, &mut buffer_table), c, enc_cfg.y_dim, d))
            .transpose()?;
        let multi = cfg.globals.map(|g| {
            MultiGlobalNet::new(
                &mut table,
                &mut buffer_table,
                encoder.local_shape(),
                g.channels.unwrap_or(c),
                g.samples,
            )
        });
        let global_in = multi.as_ref().map_or(enc_cfg.y_dim, |m| m.c_out);
        let global_head =
            (dot && global_in != d).then(|| MiHead::new(&mut table, &mut buffer_table, "global_head", global_in, d));
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
            multi,
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

    /// Global vectors per image (K; 1 without multiple globals).
    pub fn globals(&self) -> usize {
        self.multi.as_ref().map_or(1, |m| m.k)
    }

    /// Global vectors per image scored each step (K, or the sample count).
    pub fn scored_globals(&self) -> usize {
        self.multi.as_ref().map_or(1, |m| m.scored)
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
        let (k_all, ks) = (self.globals(), self.scored_globals());
        let scores = if dot { crate::error::checked_product("DIM scores", &[n, ks, n, p])? } else { 0 };
        let occ = match self.cfg.occlusion {
            Some(_) => Some(OccActs::new(
                n,
                self.encoder.input_len(),
                self.encoder.alloc(n, true)?,
                self.buffers.len(),
                self.encoder.cfg.y_dim,
            )),
            None => None,
        };
        Ok(Workspace {
            n,
            step: 0,
            enc: self.encoder.alloc(n, true)?,
            occ,
            multi: self.multi.as_ref().map(|m| m.alloc(n, d)).transpose()?,
            local_rows: vec![0.0; n * p * c],
            d_local_rows: vec![0.0; n * p * c],
            d_local_map: vec![0.0; n * p * c],
            lh: self.local_head.as_ref().map(|h| h.alloc(n * p, true)),
            concat: self.concat.as_ref().map(|h| h.alloc(n, p)).transpose()?,
            gh: self.global_head.as_ref().map(|g| g.alloc(n * k_all, true)),
            scores: vec![0.0; scores],
            d_scores: vec![0.0; scores],
            d_g: vec![0.0; n * ks * d],
            d_y: vec![0.0; n * self.encoder.cfg.y_dim],
            global: self.global.as_ref().map(|g| g.alloc(n)).transpose()?,
        })
    }

    /// One forward + backward pass on `x` (`[n, c, h, w]` in [−1, 1]):
    /// zeroes the gradients, then fills them. BN running statistics are
    /// updated (train mode; with occlusion, by the clean pass only). The
    /// optimiser step is the caller's.
    pub fn forward_backward(&mut self, x: &[f32], ws: &mut Workspace) -> Result<StepStats> {
        let n = ws.n;
        check_len("DIM input", n * self.encoder.input_len(), x.len())?;
        let [c, h, w] = self.encoder.local_shape();
        let p = h * w;
        let Self {
            encoder, local_head, concat, multi, global_head, global, prior, params, grads, buffers, cfg, ..
        } = self;
        let Workspace {
            step,
            enc,
            occ,
            multi: macts,
            local_rows,
            d_local_rows,
            d_local_map,
            lh,
            concat: cacts,
            gh,
            scores,
            d_scores,
            d_g,
            d_y,
            global: gacts,
            ..
        } = ws;
        let step = *step;
        grads.par_chunks_mut(1 << 16).for_each(|g| g.fill(0.0));
        let ll = encoder.cfg.local_layer;

        // Forward: the occluded pass (running statistics restored after it),
        // the clean pass, local rows.
        if let (Some(o), Some(oc)) = (occ.as_mut(), cfg.occlusion.as_ref()) {
            o.prepare(x, encoder.cfg.input, oc, cfg.seed, step)?;
            o.saved.copy_from_slice(buffers);
            encoder.forward(params, buffers, &o.x, &mut o.enc, Mode::Train)?;
            buffers.copy_from_slice(&o.saved);
        }
        encoder.forward(params, buffers, x, enc, Mode::Train)?;
        map_to_rows(encoder.block_out(enc, ll), local_rows, c, p);
        // The pass the globals (Y, or the multiple globals) come from.
        let src: &EncoderActs = match occ.as_ref() {
            Some(o) => &o.enc,
            None => enc,
        };
        let beta = cfg.beta as f32;
        let local = match (local_head.as_ref(), lh.as_mut(), concat.as_ref(), cacts.as_mut()) {
            (Some(lhd), Some(lacts), _, _) => {
                let term = DotTerm { local_head: lhd, global_head: global_head.as_ref(), multi: multi.as_ref() };
                let inputs = LocalInputs {
                    rows: local_rows,
                    map: encoder.block_out(src, ll),
                    y: encoder.y(src),
                    n,
                    p,
                    est: cfg.estimator,
                    beta,
                    seed: cfg.seed,
                    step,
                };
                let acts = DotActs { local: lacts, global: gh.as_mut(), multi: macts.as_mut(), scores, d_scores, d_g };
                let mut ctx = Ctx { params, grads, buffers, mode: Mode::Train };
                term.step(&mut ctx, &inputs, acts, d_local_rows, d_y)?
            }
            (_, _, Some(ch), Some(cacts)) => {
                d_y.fill(0.0);
                ch.step(
                    params,
                    grads,
                    local_rows,
                    encoder.y(src),
                    cacts,
                    cfg.estimator,
                    beta,
                    cfg.seed,
                    step,
                    d_local_rows,
                    d_y,
                )?
            }
            _ => return Err(Error::InvalidShape { what: "DIM workspace", reason: "was not made by this model" }),
        };
        rows_to_map(d_local_rows, d_local_map, c, p);
        let global_stats = match (global.as_ref(), gacts.as_mut()) {
            (Some(gd), Some(acts)) => Some(gd.step(
                params,
                grads,
                buffers,
                encoder.block_out(enc, ll),
                encoder.y(src),
                acts,
                cfg.estimator,
                cfg.alpha as f32,
                d_local_map,
                d_y,
            )?),
            _ => None,
        };
        let prior_loss = match prior.as_mut() {
            Some(pr) => Some(pr.encoder_loss(encoder.y(src), n, d_y)?),
            None => None,
        };
        // Backward through the encoder: with occlusion, the clean pass from
        // the local-map gradient and the occluded pass from Y's (and the
        // multiple globals'); both accumulate into the same gradients.
        match occ.as_mut() {
            Some(o) => {
                encoder.backward(params, grads, x, enc, &o.zero_y, Some(d_local_map))?;
                let d_src = macts.as_ref().map(|m| m.d_local.as_slice());
                encoder.backward(params, grads, &o.x, &mut o.enc, d_y, d_src)?;
            }
            None => {
                if let Some(m) = macts.as_ref() {
                    add_assign_par(d_local_map, &m.d_local);
                }
                encoder.backward(params, grads, x, enc, d_y, Some(d_local_map))?;
            }
        }
        let loss = cfg.beta * local.loss + global_stats.map_or(0.0, |g| cfg.alpha * g.loss) + prior_loss.unwrap_or(0.0);
        Ok(StepStats { loss, local, global: global_stats, prior_loss })
    }

    /// One discriminator update of prior matching on the Y of the last
    /// `forward_backward` (treated as a constant), with prior samples from
    /// `rng`. `None` when prior matching is off.
    pub fn prior_step(&mut self, ws: &Workspace, rng: &mut crate::rng::Rng) -> Result<Option<PriorStats>> {
        let y = self.encoder.y(Self::global_source(ws));
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

    /// Scores `S[(i, k), (j, p)]` of the last forward (for tests and logging).
    pub fn scores<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        &ws.scores
    }

    /// Y of the last forward: the Y the objective used (from the occluded
    /// input when occlusion is on).
    pub fn y<'a>(&self, ws: &'a Workspace) -> &'a [f32] {
        self.encoder.y(Self::global_source(ws))
    }

    /// The encoder pass the globals come from.
    fn global_source(ws: &Workspace) -> &EncoderActs {
        ws.occ.as_ref().map_or(&ws.enc, |o| &o.enc)
    }

    /// The occluded input of the last forward; `None` without occlusion.
    pub fn occluded_input<'a>(&self, ws: &'a Workspace) -> Option<&'a [f32]> {
        ws.occ.as_ref().map(|o| o.x.as_slice())
    }

    /// Each image's occluded square in the last forward (top-left row,
    /// column); `None` without occlusion.
    pub fn occlusion_squares<'a>(&self, ws: &'a Workspace) -> Option<&'a [(usize, usize)]> {
        ws.occ.as_ref().map(|o| o.squares.as_slice())
    }

    /// The globals scored in the last forward, as rows `i·K + k` of the
    /// N·K globals; `None` unless multiple globals are sampled.
    pub fn sampled_globals<'a>(&self, ws: &'a Workspace) -> Option<&'a [usize]> {
        ws.multi.as_ref().and_then(|m| m.sample.as_ref()).map(|s| s.indices())
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
