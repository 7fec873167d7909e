//! One encoder layer as a unit: `conv|linear → BN → ReLU → max-pool`, or a
//! ResNet bottleneck made of such units, with its parameter offsets, its
//! saved activations and its forward/backward.

use rayon::prelude::*;

use crate::error::Result;
use crate::kernels::{self as k, par};
use crate::params::{Init, ParamTable};

/// Train mode (batch statistics, running-stat updates) or eval mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics; running statistics are updated.
    Train,
    /// Running statistics; nothing is updated.
    Eval,
    /// Batch statistics, folded into the running statistics as a cumulative
    /// average (PyTorch's `momentum=None`): this is batch number `seen`
    /// (from 0) of a pass that re-estimates BN statistics, e.g. for the
    /// untrained-encoder baseline.
    Calibrate {
        /// Batches already averaged in.
        seen: u32,
    },
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct BnRefs {
    pub gamma: usize,
    pub beta: usize,
    pub rm: usize,
    pub rv: usize,
}

impl BnRefs {
    /// Batch norm of `z` into `a`: batch statistics (saved in `mean`,
    /// `invstd`; running statistics updated) in train mode, running
    /// statistics in eval mode.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        ns: &k::NormShape,
        params: &[f32],
        buffers: &mut [f32],
        z: &[f32],
        a: &mut [f32],
        mean: &mut [f32],
        invstd: &mut [f32],
        mode: Mode,
    ) -> Result<()> {
        let c = ns.channels;
        let (g, b) = (&params[self.gamma..self.gamma + c], &params[self.beta..self.beta + c]);
        match mode {
            Mode::Train | Mode::Calibrate { .. } => {
                let (rm, rv) = pair_mut(buffers, self.rm..self.rm + c, self.rv..self.rv + c);
                let mut cfg = k::BatchNormConfig::default();
                if let Mode::Calibrate { seen } = mode {
                    cfg.momentum = 1.0 / (f64::from(seen) + 1.0);
                }
                par::batch_norm_train_forward_par(ns, &cfg, z, g, b, rm, rv, a, mean, invstd)
            }
            Mode::Eval => {
                let (rm, rv) = (&buffers[self.rm..self.rm + c], &buffers[self.rv..self.rv + c]);
                k::batch_norm_eval_forward(ns, k::NORM_EPS, z, g, b, rm, rv, a)
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Conv {
        in_shape: [usize; 3],
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    },
    Linear {
        in_f: usize,
        out_f: usize,
    },
    /// A residual block; the outer block's own weight fields are unused.
    Bottleneck(Box<Bottleneck>),
}

/// The parts of a bottleneck (spec §2.5): `conv1` 1×1 BN ReLU, `conv2` 3×3
/// (stride, pad 1) BN ReLU, `conv3` 1×1 BN, and the projection `shortcut`
/// (1×1, stride, BN) when the input's shape differs from the output's.
#[derive(Clone, Debug)]
pub(crate) struct Bottleneck {
    pub conv1: Block,
    pub conv2: Block,
    pub conv3: Block,
    pub shortcut: Option<Block>,
}

/// A layer of the encoder (or of the global-DIM tower).
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub op: Op,
    /// Shape before the pool, `[c, h, w]`.
    pub pre: [usize; 3],
    /// Output shape, `[c, h, w]` (after the pool if any).
    pub out: [usize; 3],
    pub w: usize,
    pub w_len: usize,
    pub b: Option<usize>,
    pub bn: Option<BnRefs>,
    pub relu: bool,
    pub pool: bool,
}

/// Saved activations and gradient scratch of one block at one batch size.
#[derive(Debug, Default)]
pub(crate) struct BlockActs {
    pub cols: Vec<f32>,
    pub z: Vec<f32>,
    pub mean: Vec<f32>,
    pub invstd: Vec<f32>,
    /// Post-BN, post-ReLU, pre-pool activation.
    pub a: Vec<f32>,
    pub argmax: Vec<u32>,
    pub pooled: Vec<f32>,
    /// Gradient w.r.t. the block output.
    pub d_out: Vec<f32>,
    pub d_a: Vec<f32>,
    pub dz: Vec<f32>,
    /// A bottleneck's parts (conv1, conv2, conv3, then the shortcut if any).
    pub inner: Vec<BlockActs>,
    /// A bottleneck's input gradient through the shortcut.
    pub dx_short: Vec<f32>,
}

impl BlockActs {
    /// The block output.
    pub fn out<'a>(&'a self, b: &Block) -> &'a [f32] {
        if b.pool { &self.pooled } else { &self.a }
    }
}

fn prod(s: [usize; 3]) -> usize {
    s[0] * s[1] * s[2]
}

/// Elements per task in the element-wise loops below.
pub(crate) const ELEMWISE_CHUNK: usize = 1 << 14;

/// ReLU backward from the forward output: `d = 0` where `a ≤ 0`.
pub(crate) fn relu_mask_par(d: &mut [f32], a: &[f32]) {
    d.par_chunks_mut(ELEMWISE_CHUNK).zip(a.par_chunks(ELEMWISE_CHUNK)).for_each(|(d, a)| {
        for (g, &v) in d.iter_mut().zip(a) {
            // A select, not a branch: vectorises.
            *g = if v > 0.0 { *g } else { 0.0 };
        }
    });
}

/// `dst += src`, element-wise in parallel.
pub(crate) fn add_assign_par(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(ELEMWISE_CHUNK).zip(src.par_chunks(ELEMWISE_CHUNK)).for_each(|(d, s)| {
        for (x, &y) in d.iter_mut().zip(s) {
            *x += y;
        }
    });
}

/// Two disjoint mutable ranges of one buffer.
pub(crate) fn pair_mut(
    buf: &mut [f32],
    r1: core::ops::Range<usize>,
    r2: core::ops::Range<usize>,
) -> (&mut [f32], &mut [f32]) {
    if r1.start < r2.start {
        let (lo, hi) = buf.split_at_mut(r2.start);
        (&mut lo[r1], &mut hi[..r2.end - r2.start])
    } else {
        let (lo, hi) = buf.split_at_mut(r1.start);
        (&mut hi[..r1.end - r1.start], &mut lo[r2])
    }
}

impl Block {
    /// A conv block; registers `conv_name.weight` (+ `.bias` without BN) and
    /// `bn_name.{weight,bias}` / `.{running_mean,running_var}`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        params: &mut ParamTable,
        buffers: &mut ParamTable,
        conv_name: &str,
        bn_name: &str,
        in_shape: [usize; 3],
        out_c: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bn: bool,
        relu: bool,
        pool: bool,
    ) -> Self {
        let fan_in = in_shape[0] * kernel * kernel;
        let w = params.push(format!("{conv_name}.weight"), &[out_c, in_shape[0], kernel, kernel], Init::FanIn(fan_in));
        let b = (!bn).then(|| params.push(format!("{conv_name}.bias"), &[out_c], Init::FanIn(fan_in)));
        let bn = bn.then(|| register_bn(params, buffers, bn_name, out_c));
        let h = (in_shape[1] + 2 * padding - kernel) / stride + 1;
        let wd = (in_shape[2] + 2 * padding - kernel) / stride + 1;
        let pre = [out_c, h, wd];
        let out = if pool { [out_c, (h - 3) / 2 + 1, (wd - 3) / 2 + 1] } else { pre };
        Self {
            op: Op::Conv { in_shape, out_c, kernel, stride, padding },
            pre,
            out,
            w,
            w_len: out_c * fan_in,
            b,
            bn,
            relu,
            pool,
        }
    }

    /// A linear block (input flattened channel-major).
    #[allow(clippy::too_many_arguments)]
    pub fn linear(
        params: &mut ParamTable,
        buffers: &mut ParamTable,
        name: &str,
        bn_name: &str,
        in_f: usize,
        out_f: usize,
        bn: bool,
        relu: bool,
        bias: bool,
    ) -> Self {
        let w = params.push(format!("{name}.weight"), &[out_f, in_f], Init::FanIn(in_f));
        let b = (bias && !bn).then(|| params.push(format!("{name}.bias"), &[out_f], Init::FanIn(in_f)));
        let bn = bn.then(|| register_bn(params, buffers, bn_name, out_f));
        Self {
            op: Op::Linear { in_f, out_f },
            pre: [out_f, 1, 1],
            out: [out_f, 1, 1],
            w,
            w_len: out_f * in_f,
            b,
            bn,
            relu,
            pool: false,
        }
    }

    /// A bottleneck block; registers `{name}.conv1`, `.bn1`, `.conv2`,
    /// `.bn2`, `.conv3`, `.bn3` and, when the shape changes,
    /// `.shortcut.0` (conv) and `.shortcut.1` (BN), in PyTorch's order.
    pub fn bottleneck(
        params: &mut ParamTable,
        buffers: &mut ParamTable,
        name: &str,
        in_shape: [usize; 3],
        planes: usize,
        stride: usize,
    ) -> Self {
        let conv1 = Block::conv(
            params,
            buffers,
            &format!("{name}.conv1"),
            &format!("{name}.bn1"),
            in_shape,
            planes,
            1,
            1,
            0,
            true,
            true,
            false,
        );
        let conv2 = Block::conv(
            params,
            buffers,
            &format!("{name}.conv2"),
            &format!("{name}.bn2"),
            conv1.out,
            planes,
            3,
            stride,
            1,
            true,
            true,
            false,
        );
        let conv3 = Block::conv(
            params,
            buffers,
            &format!("{name}.conv3"),
            &format!("{name}.bn3"),
            conv2.out,
            4 * planes,
            1,
            1,
            0,
            true,
            false,
            false,
        );
        let out = conv3.out;
        let shortcut = (in_shape != out).then(|| {
            let (c, b) = (format!("{name}.shortcut.0"), format!("{name}.shortcut.1"));
            Block::conv(params, buffers, &c, &b, in_shape, out[0], 1, stride, 0, true, false, false)
        });
        Self {
            op: Op::Bottleneck(Box::new(Bottleneck { conv1, conv2, conv3, shortcut })),
            pre: out,
            out,
            w: 0,
            w_len: 0,
            b: None,
            bn: None,
            relu: true,
            pool: false,
        }
    }

    /// Output elements per image.
    pub fn out_per_image(&self) -> usize {
        prod(self.out)
    }

    fn conv_shape(&self, n: usize) -> Option<k::Conv2dShape> {
        match self.op {
            Op::Conv { in_shape, out_c, kernel, stride, padding } => {
                Some(k::Conv2dShape::new(n, in_shape[0], (in_shape[1], in_shape[2]), out_c, kernel, stride, padding))
            }
            Op::Linear { .. } | Op::Bottleneck(_) => None,
        }
    }

    fn norm_shape(&self, n: usize) -> k::NormShape {
        k::NormShape::new(n, self.pre[0], self.pre[1] * self.pre[2])
    }

    fn pool_shape(&self) -> k::MaxPoolShape {
        k::MaxPoolShape::k3s2(1, self.pre[0], self.pre[1], self.pre[2])
    }

    /// Allocates this block's activations for batch `n` (train: everything
    /// backward needs; eval: only what the forward writes).
    pub fn alloc(&self, n: usize, train: bool) -> Result<BlockActs> {
        if let Op::Bottleneck(bt) = &self.op {
            let parts = [Some(&bt.conv1), Some(&bt.conv2), Some(&bt.conv3), bt.shortcut.as_ref()];
            let inner = parts.into_iter().flatten().map(|b| b.alloc(n, train)).collect::<Result<Vec<_>>>()?;
            let out = n * self.out_per_image();
            let in_len = n * prod(bt.conv1.conv_in());
            let mut a = BlockActs { a: vec![0.0; out], inner, ..Default::default() };
            if train {
                a.d_out = vec![0.0; out];
                a.dx_short = if bt.shortcut.is_some() { vec![0.0; in_len] } else { Vec::new() };
            }
            return Ok(a);
        }
        let pre = n * prod(self.pre);
        let out = n * self.out_per_image();
        let c = self.pre[0];
        let mut a = BlockActs { z: vec![0.0; pre], a: vec![0.0; pre], ..Default::default() };
        if let Some(s) = self.conv_shape(n) {
            a.cols = vec![0.0; s.validate()?.batched_col_len];
        }
        if self.bn.is_some() {
            a.mean = vec![0.0; c];
            a.invstd = vec![0.0; c];
        }
        if self.pool {
            a.argmax = vec![0; out];
            a.pooled = vec![0.0; out];
        }
        if train {
            a.d_out = vec![0.0; out];
            a.d_a = if self.pool { vec![0.0; pre] } else { Vec::new() };
            a.dz = if self.bn.is_some() { vec![0.0; pre] } else { Vec::new() };
        }
        Ok(a)
    }

    /// Forward for `n` images of input `x`.
    pub fn forward(
        &self,
        n: usize,
        params: &[f32],
        buffers: &mut [f32],
        x: &[f32],
        acts: &mut BlockActs,
        mode: Mode,
    ) -> Result<()> {
        if let Op::Bottleneck(bt) = &self.op {
            return bt.forward(n, params, buffers, x, acts, mode);
        }
        let w = &params[self.w..self.w + self.w_len];
        let out_f = self.pre[0];
        let bias = self.b.map(|b| &params[b..b + out_f]);
        match self.op {
            Op::Bottleneck(_) => unreachable!("handled above"),
            Op::Conv { .. } => {
                let s = self.conv_shape(n).ok_or(crate::Error::InvalidShape { what: "block", reason: "not a conv" })?;
                par::conv2d_forward_par(&s, x, w, bias, &mut acts.z, &mut acts.cols)?;
            }
            Op::Linear { in_f, out_f } => {
                par::linear_forward_par(&k::LinearShape::new(n, in_f, out_f), x, w, bias, &mut acts.z)?;
            }
        }
        let ns = self.norm_shape(n);
        if let Some(bn) = self.bn {
            bn.forward(&ns, params, buffers, &acts.z, &mut acts.a, &mut acts.mean, &mut acts.invstd, mode)?;
        } else {
            acts.a.copy_from_slice(&acts.z);
        }
        if self.relu {
            acts.a.par_chunks_mut(ELEMWISE_CHUNK).for_each(k::relu_inplace);
        }
        if self.pool {
            let ps = self.pool_shape();
            let (pin, pout) = (prod(self.pre), self.out_per_image());
            acts.a
                .par_chunks(pin)
                .zip(acts.pooled.par_chunks_mut(pout).zip(acts.argmax.par_chunks_mut(pout)))
                .try_for_each(|(xi, (yi, ai))| k::max_pool_forward(&ps, xi, yi, ai))?;
        }
        Ok(())
    }

    /// Backward from `acts.d_out` (consumed). Writes `dx` if given and
    /// accumulates parameter gradients into `grads`.
    pub fn backward(
        &self,
        n: usize,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        acts: &mut BlockActs,
        dx: Option<&mut [f32]>,
    ) -> Result<()> {
        if let Op::Bottleneck(bt) = &self.op {
            return bt.backward(n, params, grads, x, acts, dx);
        }
        let out_f = self.pre[0];
        // Gradient w.r.t. the pre-pool activation `a`.
        let d_a: &mut Vec<f32> = if self.pool {
            let ps = self.pool_shape();
            let (pin, pout) = (prod(self.pre), self.out_per_image());
            acts.d_a
                .par_chunks_mut(pin)
                .zip(acts.d_out.par_chunks(pout).zip(acts.argmax.par_chunks(pout)))
                .try_for_each(|(dxi, (dyi, ai))| k::max_pool_backward(&ps, ai, dyi, dxi))?;
            &mut acts.d_a
        } else {
            &mut acts.d_out
        };
        if self.relu {
            relu_mask_par(d_a, &acts.a);
        }
        let dz: &[f32] = if let Some(bn) = self.bn {
            let (dg, db) = pair_mut(grads, bn.gamma..bn.gamma + out_f, bn.beta..bn.beta + out_f);
            par::batch_norm_train_backward_par(
                &self.norm_shape(n),
                &acts.z,
                d_a,
                &params[bn.gamma..bn.gamma + out_f],
                &acts.mean,
                &acts.invstd,
                &mut acts.dz,
                dg,
                db,
            )?;
            &acts.dz
        } else {
            d_a
        };
        let w = &params[self.w..self.w + self.w_len];
        let (dw, db) = match self.b {
            Some(b) => {
                let (dw, db) = pair_mut(grads, self.w..self.w + self.w_len, b..b + out_f);
                (dw, Some(db))
            }
            None => (&mut grads[self.w..self.w + self.w_len], None),
        };
        match self.op {
            Op::Bottleneck(_) => unreachable!("handled above"),
            Op::Conv { .. } => {
                let s = self.conv_shape(n).ok_or(crate::Error::InvalidShape { what: "block", reason: "not a conv" })?;
                par::conv2d_backward_par(&s, &mut acts.cols, w, dz, dx, dw, db)?;
            }
            Op::Linear { in_f, out_f } => {
                par::linear_backward_par(&k::LinearShape::new(n, in_f, out_f), x, w, dz, dx, dw, db)?;
            }
        }
        Ok(())
    }
}

fn register_bn(params: &mut ParamTable, buffers: &mut ParamTable, name: &str, c: usize) -> BnRefs {
    BnRefs {
        gamma: params.push(format!("{name}.weight"), &[c], Init::Ones),
        beta: params.push(format!("{name}.bias"), &[c], Init::Zeros),
        rm: buffers.push(format!("{name}.running_mean"), &[c], Init::Zeros),
        rv: buffers.push(format!("{name}.running_var"), &[c], Init::Ones),
    }
}

impl Block {
    /// Input shape of a conv block (`[0; 3]` otherwise).
    fn conv_in(&self) -> [usize; 3] {
        match self.op {
            Op::Conv { in_shape, .. } => in_shape,
            _ => [0; 3],
        }
    }
}

fn parts_mut(
    inner: &mut [BlockActs],
) -> Result<(&mut BlockActs, &mut BlockActs, &mut BlockActs, Option<&mut BlockActs>)> {
    match inner {
        [a1, a2, a3] => Ok((a1, a2, a3, None)),
        [a1, a2, a3, s] => Ok((a1, a2, a3, Some(s))),
        _ => Err(crate::Error::InvalidShape { what: "bottleneck activations", reason: "not made by this block" }),
    }
}

impl Bottleneck {
    /// `out = ReLU(conv3(conv2(conv1(x))) + (shortcut(x) or x))`.
    fn forward(
        &self,
        n: usize,
        params: &[f32],
        buffers: &mut [f32],
        x: &[f32],
        acts: &mut BlockActs,
        mode: Mode,
    ) -> Result<()> {
        let (a1, a2, a3, short) = parts_mut(&mut acts.inner)?;
        self.conv1.forward(n, params, buffers, x, a1, mode)?;
        self.conv2.forward(n, params, buffers, &a1.a, a2, mode)?;
        self.conv3.forward(n, params, buffers, &a2.a, a3, mode)?;
        let residual: &[f32] = match (&self.shortcut, short) {
            (Some(sc), Some(sa)) => {
                sc.forward(n, params, buffers, x, sa, mode)?;
                &sa.a
            }
            (None, None) => x,
            _ => {
                return Err(crate::Error::InvalidShape {
                    what: "bottleneck activations",
                    reason: "not made by this block",
                });
            }
        };
        crate::error::check_len("bottleneck residual", acts.a.len(), residual.len())?;
        acts.a
            .par_chunks_mut(ELEMWISE_CHUNK)
            .zip(a3.a.par_chunks(ELEMWISE_CHUNK).zip(residual.par_chunks(ELEMWISE_CHUNK)))
            .for_each(|(o, (m, r))| {
                for ((o, &m), &r) in o.iter_mut().zip(m).zip(r) {
                    *o = (m + r).max(0.0);
                }
            });
        Ok(())
    }

    /// Backward from `acts.d_out` (consumed): through the ReLU, then both
    /// branches; their input gradients are summed into `dx`.
    fn backward(
        &self,
        n: usize,
        params: &[f32],
        grads: &mut [f32],
        x: &[f32],
        acts: &mut BlockActs,
        mut dx: Option<&mut [f32]>,
    ) -> Result<()> {
        relu_mask_par(&mut acts.d_out, &acts.a);
        let (a1, a2, a3, short) = parts_mut(&mut acts.inner)?;
        a3.d_out.copy_from_slice(&acts.d_out);
        self.conv3.backward(n, params, grads, &a2.a, a3, Some(&mut a2.d_out))?;
        self.conv2.backward(n, params, grads, &a1.a, a2, Some(&mut a1.d_out))?;
        self.conv1.backward(n, params, grads, x, a1, dx.as_deref_mut())?;
        match (&self.shortcut, short) {
            (Some(sc), Some(sa)) => {
                sa.d_out.copy_from_slice(&acts.d_out);
                match dx {
                    Some(dx) => {
                        sc.backward(n, params, grads, x, sa, Some(&mut acts.dx_short))?;
                        add_assign_par(dx, &acts.dx_short);
                    }
                    None => sc.backward(n, params, grads, x, sa, None)?,
                }
            }
            (None, None) => {
                if let Some(dx) = dx {
                    add_assign_par(dx, &acts.d_out);
                }
            }
            _ => {
                return Err(crate::Error::InvalidShape {
                    what: "bottleneck activations",
                    reason: "not made by this block",
                });
            }
        }
        Ok(())
    }
}
