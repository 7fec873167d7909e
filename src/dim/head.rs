//! The encode-and-dot-product MI network (docs/method.md §4.1), on rows
//! `[R, n_in]` (a 1×1 conv over a map is a linear layer over its location
//! rows): `LN( mlp(x) + shortcut x )`, with `mlp` = l1 → BN → ReLU → l2 and
//! the shortcut started near the identity.

use crate::error::Result;
use crate::kernels::{InputGrad, NormShape, SavedStats};
use crate::nn::{Builder, Ctx, LayerNorm, Linear, Mlp, MlpActs, Mode};
use crate::params::{Init, ParamTable};

/// One MI head: its units.
#[derive(Clone, Debug)]
pub struct MiHead {
    /// Input width.
    pub n_in: usize,
    /// Output width D.
    pub d: usize,
    mlp: Mlp,
    shortcut: Linear,
    ln: LayerNorm,
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
        let mut b = Builder::new(params, buffers);
        let mlp = b.mlp(prefix, n_in, d, d);
        let shortcut = b.linear_init(format!("{prefix}.shortcut"), n_in, d, false, Init::NearIdentity);
        let ln = b.layer_norm(format!("{prefix}.ln"), d);
        Self { n_in, d, mlp, shortcut, ln }
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

    /// Forward over `x` (`[R, n_in]`) into `acts.out`.
    pub fn forward(
        &self,
        params: &[f32],
        buffers: &mut [f32],
        x: &[f32],
        acts: &mut HeadActs,
        mode: Mode,
    ) -> Result<()> {
        let HeadActs { rows, z, mean, invstd, a, s, ln_mean, ln_rstd, out, d_a, dz, .. } = acts;
        let mut ctx = Ctx::forward(params, buffers, mode);
        let mut m = MlpActs { z, mean, invstd, a, d_a, dz };
        self.mlp.forward(&mut ctx, *rows, x, &mut m, s)?;
        // Shortcut, added into s by the GEMM itself.
        self.shortcut.forward_add(&ctx, *rows, x, s)?;
        self.ln.forward(&ctx, &NormShape::new(*rows, self.d, 1), s, out, ln_mean, ln_rstd)
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
        let HeadActs { rows, z, mean, invstd, a, s, ln_mean, ln_rstd, d_out, d_s, d_a, dz, .. } = acts;
        let mut ctx = Ctx::backward(params, grads);
        let saved = SavedStats { mean: &ln_mean[..], invstd: &ln_rstd[..] };
        self.ln.backward(&mut ctx, &NormShape::new(*rows, self.d, 1), s, d_out, saved, d_s)?;
        let mut m = MlpActs { z, mean, invstd, a, d_a, dz };
        self.mlp.backward(&mut ctx, *rows, x, &mut m, d_s, dx)?;
        // The shortcut reads the same input: its input gradient adds in place.
        self.shortcut.backward(&mut ctx, *rows, x, d_s, Some(InputGrad::Add(dx)))
    }
}
