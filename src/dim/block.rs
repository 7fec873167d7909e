//! One encoder layer: `conv|linear → BN → ReLU → max-pool` composed of the
//! `nn` units, or a ResNet bottleneck made of such blocks, with its saved
//! activations and its forward/backward.

use rayon::prelude::*;

use crate::dim::config::Layer;
use crate::error::Result;
use crate::kernels as k;
pub(crate) use crate::nn::ops::{CHUNK as ELEMWISE_CHUNK, relu, relu_mask};
use crate::nn::{BatchNorm, Builder, Conv2d, Ctx, Linear, ParamId};

pub use crate::nn::Mode;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Conv(Conv2d),
    Linear(Linear),
    /// A residual block; the outer block has no units of its own.
    Bottleneck(Box<Bottleneck>),
}

/// The parts of a bottleneck (docs/method.md §2.5): `conv1` 1×1 BN ReLU,
/// `conv2` 3×3 (stride, pad 1) BN ReLU, `conv3` 1×1 BN, and the projection
/// `shortcut` (1×1, stride, BN) when the input's shape differs from the
/// output's.
#[derive(Clone, Debug)]
pub(crate) struct Bottleneck {
    pub conv1: Block,
    pub conv2: Block,
    pub conv3: Block,
    pub shortcut: Option<Block>,
}

/// A layer of the encoder (or of the global-DIM tower, or of the
/// multiple-globals net): `conv|linear → BN → ReLU → max-pool`, each part
/// optional, or a bottleneck of such blocks.
#[derive(Clone, Debug)]
pub(crate) struct Block {
    pub op: Op,
    /// Shape before the pool, `[c, h, w]`.
    pub pre: [usize; 3],
    /// Output shape, `[c, h, w]` (after the pool if any).
    pub out: [usize; 3],
    pub bn: Option<BatchNorm>,
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

/// `dst += src`, element-wise in parallel.
pub(crate) fn add_assign_par(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(ELEMWISE_CHUNK).zip(src.par_chunks(ELEMWISE_CHUNK)).for_each(|(d, s)| {
        for (x, &y) in d.iter_mut().zip(s) {
            *x += y;
        }
    });
}

impl Block {
    /// The block of one config layer: a conv or linear layer named `name`
    /// (`{name}.weight`, and `{name}.bias` without BN) with its BN named
    /// `bn_name`, or a bottleneck whose parts are named under `name`.
    pub fn new(b: &mut Builder<'_>, name: &str, bn_name: &str, in_shape: [usize; 3], layer: Layer) -> Self {
        match layer {
            Layer::Conv { out, kernel, stride, padding, bn, relu, pool } => {
                let conv = b.conv2d(name, in_shape, out, [kernel, stride, padding], !bn);
                let bn = bn.then(|| b.batch_norm(bn_name, out));
                let pre = conv.out_shape();
                let out = if pool { [out, (pre[1] - 3) / 2 + 1, (pre[2] - 3) / 2 + 1] } else { pre };
                Self { op: Op::Conv(conv), pre, out, bn, relu, pool }
            }
            Layer::Linear { out, bn, relu } => {
                let linear = b.linear(name, in_shape.iter().product(), out, !bn);
                let bn = bn.then(|| b.batch_norm(bn_name, out));
                Self { op: Op::Linear(linear), pre: [out, 1, 1], out: [out, 1, 1], bn, relu, pool: false }
            }
            Layer::Bottleneck { planes, stride } => Self::bottleneck(b, name, in_shape, planes, stride),
        }
    }

    /// A bottleneck block; registers `{name}.conv1`, `.bn1`, `.conv2`,
    /// `.bn2`, `.conv3`, `.bn3` and, when the shape changes,
    /// `.shortcut.0` (conv) and `.shortcut.1` (BN), in PyTorch's order.
    fn bottleneck(b: &mut Builder<'_>, name: &str, in_shape: [usize; 3], planes: usize, stride: usize) -> Self {
        let conv = |out, kernel, stride, padding, relu| Layer::Conv {
            out,
            kernel,
            stride,
            padding,
            bn: true,
            relu,
            pool: false,
        };
        let part = |b: &mut Builder<'_>, i: usize, shape, layer| {
            Block::new(b, &format!("{name}.conv{i}"), &format!("{name}.bn{i}"), shape, layer)
        };
        let conv1 = part(b, 1, in_shape, conv(planes, 1, 1, 0, true));
        let conv2 = part(b, 2, conv1.out, conv(planes, 3, stride, 1, true));
        let conv3 = part(b, 3, conv2.out, conv(4 * planes, 1, 1, 0, false));
        let out = conv3.out;
        let shortcut = (in_shape != out).then(|| {
            let (c, n) = (format!("{name}.shortcut.0"), format!("{name}.shortcut.1"));
            Block::new(b, &c, &n, in_shape, conv(out[0], 1, stride, 0, false))
        });
        Self {
            op: Op::Bottleneck(Box::new(Bottleneck { conv1, conv2, conv3, shortcut })),
            pre: out,
            out,
            bn: None,
            relu: true,
            pool: false,
        }
    }

    /// The weight and bias of a conv or linear block (`None` for a bottleneck).
    pub fn weight_and_bias(&self) -> Option<(ParamId, Option<ParamId>)> {
        match &self.op {
            Op::Conv(c) => Some((c.w, c.b)),
            Op::Linear(l) => Some((l.w, l.b)),
            Op::Bottleneck(_) => None,
        }
    }

    /// Output elements per image.
    pub fn out_per_image(&self) -> usize {
        prod(self.out)
    }

    fn conv_shape(&self, n: usize) -> Option<k::Conv2dShape> {
        match &self.op {
            Op::Conv(c) => Some(c.shape(n)),
            Op::Linear(_) | Op::Bottleneck(_) => None,
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
        let mut ctx = Ctx::forward(params, buffers, mode);
        match &self.op {
            Op::Bottleneck(_) => unreachable!("handled above"),
            Op::Conv(c) => c.forward(&ctx, n, x, &mut acts.z, &mut acts.cols)?,
            Op::Linear(l) => l.forward(&ctx, n, x, &mut acts.z)?,
        }
        let ns = self.norm_shape(n);
        if let Some(bn) = &self.bn {
            bn.forward(&mut ctx, &ns, &acts.z, &mut acts.a, &mut acts.mean, &mut acts.invstd)?;
        } else {
            acts.a.copy_from_slice(&acts.z);
        }
        if self.relu {
            relu(&mut acts.a);
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
            relu_mask(d_a, &acts.a);
        }
        let mut ctx = Ctx::backward(params, grads);
        let dz: &[f32] = if let Some(bn) = &self.bn {
            let saved = k::SavedStats { mean: &acts.mean[..], invstd: &acts.invstd[..] };
            bn.backward(&mut ctx, &self.norm_shape(n), &acts.z, d_a, saved, &mut acts.dz)?;
            &acts.dz
        } else {
            d_a
        };
        match &self.op {
            Op::Bottleneck(_) => unreachable!("handled above"),
            Op::Conv(c) => c.backward(&mut ctx, n, x, &mut acts.cols, dz, dx),
            Op::Linear(l) => l.backward(&mut ctx, n, x, dz, dx.map(k::InputGrad::Write)),
        }
    }
}

impl Block {
    /// Input shape of a conv block (`[0; 3]` otherwise).
    fn conv_in(&self) -> [usize; 3] {
        match &self.op {
            Op::Conv(c) => c.in_shape,
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
        relu_mask(&mut acts.d_out, &acts.a);
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
