//! The encode-and-dot-product MI network (spec §4.1), on rows `[R, n_in]`
//! (a 1×1 conv over a map is a linear layer over its location rows):
//! `LN( l2(ReLU(BN(l1 x))) + shortcut x )`, with the shortcut started near
//! the identity.

use rayon::prelude::*;

use crate::dim::block::{BnRefs, ELEMWISE_CHUNK, Mode, pair_mut, relu_mask_par};
use crate::error::Result;
use crate::kernels::MatRef;
use crate::kernels::{self as k, par};
use crate::params::{Init, ParamTable};

/// One MI head's parameter offsets.
#[derive(Clone, Debug)]
pub struct MiHead {
    /// Input width.
    pub n_in: usize,
    /// Output width D.
    pub d: usize,
    l1: usize,
    bn: BnRefs,
    l2w: usize,
    l2b: usize,
    sc: usize,
    ln_g: usize,
    ln_b: usize,
}

/// Saved activations of one head at one row count.
#[derive(Debug, Default)]
pub struct HeadActs {
    rows: usize,
    z: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    a: Vec<f32>,
    s: Vec<f32>,
    ln_mean: Vec<f32>,
    ln_rstd: Vec<f32>,
    /// The head output `[R, D]`.
    pub out: Vec<f32>,
    /// Gradient w.r.t. the output (set by the caller before `backward`).
    pub d_out: Vec<f32>,
    d_s: Vec<f32>,
    d_a: Vec<f32>,
    dz: Vec<f32>,
}

impl MiHead {
    /// Registers `prefix.{l1,bn,l2,shortcut,ln}` tensors.
    pub fn new(params: &mut ParamTable, buffers: &mut ParamTable, prefix: &str, n_in: usize, d: usize) -> Self {
        let l1 = params.push(format!("{prefix}.l1.weight"), &[d, n_in], Init::FanIn(n_in));
        let bn = BnRefs {
            gamma: params.push(format!("{prefix}.bn.weight"), &[d], Init::Ones),
            beta: params.push(format!("{prefix}.bn.bias"), &[d], Init::Zeros),
            rm: buffers.push(format!("{prefix}.bn.running_mean"), &[d], Init::Zeros),
            rv: buffers.push(format!("{prefix}.bn.running_var"), &[d], Init::Ones),
        };
        let l2w = params.push(format!("{prefix}.l2.weight"), &[d, d], Init::FanIn(d));
        let l2b = params.push(format!("{prefix}.l2.bias"), &[d], Init::FanIn(d));
        let sc = params.push(format!("{prefix}.shortcut.weight"), &[d, n_in], Init::NearIdentity);
        let ln_g = params.push(format!("{prefix}.ln.weight"), &[d], Init::Ones);
        let ln_b = params.push(format!("{prefix}.ln.bias"), &[d], Init::Zeros);
        Self { n_in, d, l1, bn, l2w, l2b, sc, ln_g, ln_b }
    }

    /// Activations for `rows` input rows.
    pub fn alloc(&self, rows: usize, train: bool) -> HeadActs {
        let rd = rows * self.d;
        let z = |len: usize| vec![0f32; len];
        let t = |len: usize| if train { vec![0f32; len] } else { Vec::new() };
        HeadActs {
            rows,
            z: z(rd),
            mean: z(self.d),
            invstd: z(self.d),
            a: z(rd),
            s: z(rd),
            ln_mean: z(rows),
            ln_rstd: z(rows),
            out: z(rd),
            d_out: t(rd),
            d_s: t(rd),
            d_a: t(rd),
            dz: t(rd),
        }
    }

    fn p<'a>(&self, params: &'a [f32], off: usize, len: usize) -> &'a [f32] {
        &params[off..off + len]
    }

    /// Forward over `x` (`[R, n_in]`) into `acts.out`.
    pub fn forward(
        &self,
        params: &[f32],
        buffers: &mut [f32],
        x: &[f32],
        acts: &mut HeadActs,
        mode: Mode,
    ) -> Result<()> {
        let (r, d, n_in) = (acts.rows, self.d, self.n_in);
        let l_in = k::LinearShape::new(r, n_in, d);
        let l_dd = k::LinearShape::new(r, d, d);
        par::linear_forward_par(&l_in, x, self.p(params, self.l1, d * n_in), None, &mut acts.z)?;
        let ns = k::NormShape::new(r, d, 1);
        self.bn.forward(&ns, params, buffers, &acts.z, &mut acts.a, &mut acts.mean, &mut acts.invstd, mode)?;
        acts.a.par_chunks_mut(ELEMWISE_CHUNK).for_each(k::relu_inplace);
        par::linear_forward_par(
            &l_dd,
            &acts.a,
            self.p(params, self.l2w, d * d),
            Some(self.p(params, self.l2b, d)),
            &mut acts.s,
        )?;
        // Shortcut, added into s by the GEMM itself.
        let xm = MatRef::row_major(x, r, n_in)?;
        par::par_gemm(&mut acts.s, xm, MatRef::row_major(self.p(params, self.sc, d * n_in), d, n_in)?.t(), true)?;
        par::layer_norm_forward_par(
            &ns,
            k::NORM_EPS,
            &acts.s,
            self.p(params, self.ln_g, d),
            self.p(params, self.ln_b, d),
            &mut acts.out,
            &mut acts.ln_mean,
            &mut acts.ln_rstd,
        )
    }

    /// Backward from `acts.d_out`; writes `dx` (`[R, n_in]`), accumulates
    /// parameter gradients.
    pub fn backward(
        &self,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        acts: &mut HeadActs,
        dx: &mut [f32],
    ) -> Result<()> {
        let (r, d, n_in) = (acts.rows, self.d, self.n_in);
        let ns = k::NormShape::new(r, d, 1);
        let l_in = k::LinearShape::new(r, n_in, d);
        let l_dd = k::LinearShape::new(r, d, d);
        {
            let (dg, db) = pair_mut(grads, self.ln_g..self.ln_g + d, self.ln_b..self.ln_b + d);
            par::layer_norm_backward_par(
                &ns,
                &acts.s,
                &acts.d_out,
                self.p(params, self.ln_g, d),
                &acts.ln_mean,
                &acts.ln_rstd,
                &mut acts.d_s,
                dg,
                db,
            )?;
        }
        {
            let (dw, db) = pair_mut(grads, self.l2w..self.l2w + d * d, self.l2b..self.l2b + d);
            par::linear_backward_par(
                &l_dd,
                &acts.a,
                self.p(params, self.l2w, d * d),
                &acts.d_s,
                Some(&mut acts.d_a),
                dw,
                Some(db),
            )?;
        }
        relu_mask_par(&mut acts.d_a, &acts.a);
        {
            let (dg, db) = pair_mut(grads, self.bn.gamma..self.bn.gamma + d, self.bn.beta..self.bn.beta + d);
            par::batch_norm_train_backward_par(
                &ns,
                &acts.z,
                &acts.d_a,
                self.p(params, self.bn.gamma, d),
                &acts.mean,
                &acts.invstd,
                &mut acts.dz,
                dg,
                db,
            )?;
        }
        par::linear_backward_par(
            &l_in,
            x,
            self.p(params, self.l1, d * n_in),
            &acts.dz,
            Some(dx),
            &mut grads[self.l1..self.l1 + d * n_in],
            None,
        )?;
        // The shortcut reads the same input: its input gradient adds in place.
        par::linear_backward_par_into(
            &l_in,
            x,
            self.p(params, self.sc, d * n_in),
            &acts.d_s,
            Some(dx),
            true,
            &mut grads[self.sc..self.sc + d * n_in],
            None,
        )
    }
}
