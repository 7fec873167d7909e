//! Global DIM (docs/method.md §4.3, the final reference's encode-and-dot-product
//! form): a fresh copy of the encoder's layers above the local map, ending
//! in Linear → D, embeds the local map; a single Linear y_dim → D embeds Y;
//! the N×N score matrix (P = K = 1) goes through the chosen estimator with
//! weight α. Its gradients flow into the local map and into Y.

use crate::dim::block::{Block, BlockActs, Mode, add_assign_par};
use crate::dim::config::{EncoderConfig, Estimator};
use crate::dim::encoder::{build_blocks, out_and_grad, plain_linear};
use crate::dim::estimator::{EstimatorStats, ScoreShape, estimate};
use crate::error::Result;
use crate::kernels::{MatRef, par};
use crate::nn::Builder;
use crate::params::ParamTable;

/// Parameter offsets of the global-DIM networks.
#[derive(Clone, Debug)]
pub(crate) struct GlobalDim {
    tower: Vec<Block>,
    out: Block,
    y_map: Block,
    d: usize,
    y_dim: usize,
    local_len: usize,
}

/// Activations of global DIM at one batch size.
#[derive(Debug)]
pub(crate) struct GlobalActs {
    n: usize,
    tower: Vec<BlockActs>,
    out: BlockActs,
    y_map: BlockActs,
    scores: Vec<f32>,
    d_scores: Vec<f32>,
    d_local: Vec<f32>,
    d_y: Vec<f32>,
}

impl GlobalDim {
    /// Registers `global_dim.*` tensors: the tower (named like the encoder's
    /// layers), `global_dim.out` (→ D) and `global_dim.y` (Y → D).
    pub fn new(enc: &EncoderConfig, d: usize, params: &mut ParamTable, buffers: &mut ParamTable) -> Result<Self> {
        let p = "global_dim.";
        let tower = build_blocks(enc, enc.local_layer + 1, p, params, buffers)?;
        let shapes = enc.shapes()?;
        let local = shapes[enc.local_layer];
        let local_len = local.iter().product();
        let last = tower.last().map_or(local_len, |b| b.out.iter().product());
        let mut b = Builder::new(params, buffers);
        let out = Block::new(&mut b, &format!("{p}out"), "", [last, 1, 1], plain_linear(d));
        let y_map = Block::new(&mut b, &format!("{p}y"), "", [enc.y_dim, 1, 1], plain_linear(d));
        Ok(Self { tower, out, y_map, d, y_dim: enc.y_dim, local_len })
    }

    pub fn alloc(&self, n: usize) -> Result<GlobalActs> {
        Ok(GlobalActs {
            n,
            tower: self.tower.iter().map(|b| b.alloc(n, true)).collect::<Result<Vec<_>>>()?,
            out: self.out.alloc(n, true)?,
            y_map: self.y_map.alloc(n, true)?,
            scores: vec![0.0; n * n],
            d_scores: vec![0.0; n * n],
            d_local: vec![0.0; n * self.local_len],
            d_y: vec![0.0; n * self.y_dim],
        })
    }

    /// Forward and backward of α·L_global. Adds the local-map gradient into
    /// `d_local_add` and Y's into `d_y_add`; accumulates parameter gradients.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        params: &[f32],
        grads: &mut [f32],
        buffers: &mut [f32],
        local_map: &[f32],
        y: &[f32],
        acts: &mut GlobalActs,
        est: Estimator,
        alpha: f32,
        d_local_add: &mut [f32],
        d_y_add: &mut [f32],
    ) -> Result<EstimatorStats> {
        let n = acts.n;
        let d = self.d;
        for i in 0..self.tower.len() {
            let (done, rest) = acts.tower.split_at_mut(i);
            let input: &[f32] = if i == 0 { local_map } else { done[i - 1].out(&self.tower[i - 1]) };
            self.tower[i].forward(n, params, buffers, input, &mut rest[0], Mode::Train)?;
        }
        let top: &[f32] = match self.tower.last() {
            Some(b) => acts.tower[self.tower.len() - 1].out(b),
            None => local_map,
        };
        self.out.forward(n, params, buffers, top, &mut acts.out, Mode::Train)?;
        self.y_map.forward(n, params, buffers, y, &mut acts.y_map, Mode::Train)?;
        let m = MatRef::row_major(&acts.out.a, n, d)?;
        let g = MatRef::row_major(&acts.y_map.a, n, d)?;
        par::par_gemm(&mut acts.scores, g, m.t(), false)?;
        let stats = estimate(est, ScoreShape { n, k: 1, p: 1 }, &acts.scores, &mut acts.d_scores, alpha)?;
        let ds = MatRef::row_major(&acts.d_scores, n, n)?;
        par::par_gemm(&mut acts.y_map.d_out, ds, m, false)?;
        par::par_gemm(&mut acts.out.d_out, ds.t(), g, false)?;
        self.y_map.backward(n, params, grads, y, &mut acts.y_map, Some(&mut acts.d_y))?;
        match self.tower.len() {
            0 => self.out.backward(n, params, grads, local_map, &mut acts.out, Some(&mut acts.d_local))?,
            t => {
                let (input, dx) = out_and_grad(&self.tower[t - 1], &mut acts.tower[t - 1]);
                self.out.backward(n, params, grads, input, &mut acts.out, Some(dx))?;
            }
        }
        for i in (0..self.tower.len()).rev() {
            let (done, rest) = acts.tower.split_at_mut(i);
            if i == 0 {
                self.tower[0].backward(n, params, grads, local_map, &mut rest[0], Some(&mut acts.d_local))?;
            } else {
                let (input, dx) = out_and_grad(&self.tower[i - 1], &mut done[i - 1]);
                self.tower[i].backward(n, params, grads, input, &mut rest[0], Some(dx))?;
            }
        }
        add_assign_par(d_local_add, &acts.d_local);
        add_assign_par(d_y_add, &acts.d_y);
        Ok(stats)
    }
}
