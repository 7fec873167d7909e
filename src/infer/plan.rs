//! The inference plan: every shape, buffer and scratch offset decided once
//! from an [`Arch`] and a batch size (tflite-micro style), then `encode`
//! runs on caller memory only.
//!
//! Scratch (f32 elements), in order:
//! - two activation slots `A`, `B`: layer outputs ping-pong between them
//!   (a pooled layer writes its pre-pool map to one and pools into the
//!   other), each as long as the largest map it ever holds;
//! - the inference GEMM's W block: a block of weight rows converted to f32
//!   from the file's F16/BF16 (or unaligned F32) bytes; aligned F32 weights
//!   are read in place and leave it unused;
//! - the GEMM's packed B block (both at most [`WEIGHT_TILE`] elements, or
//!   one register tile / one weight row if that is longer);
//! - the current layer's bias, converted.
//!
//! There is no im2col buffer: a convolution's GEMM packs its B panels
//! straight from the input images ([`Im2colB`]).

use core::fmt::Write;

use super::arch::{Arch, LayerSpec, MAX_LAYERS};
use super::dtype::Dtype;
use super::error::InferError;
use super::safetensors::{Tensor, Weights};
use crate::kernels::conv::add_bias;
use crate::kernels::gemm::{Blocking, ConvGeom, Im2colB, OutView, WeightRows, gemm_weights, gemm_weights_im2col};
use crate::kernels::linear::add_bias_rows;
use crate::kernels::linear::{HalfKind, dot4_half};
use crate::kernels::{Conv2dShape, ConvDims, MatRef, MaxPoolShape};
use crate::kernels::{dot, dot4, max_pool_forward_values, relu_inplace};
use crate::model::{ENCODER_PREFIX, Layer, Stem, Walk};

/// Elements of each GEMM packing buffer (16 KiB of f32): microcontroller-sized.
pub const WEIGHT_TILE: usize = 4096;

/// Most weight elements converted at once for a small-batch linear layer
/// (16 KiB: they stay in L1 while every image's dot reads them).
const GEMV_CHUNK: usize = 4096;

/// Below this batch, linear layers run as one dot per (image, output):
/// the blocked GEMM's 6-row tile would mostly multiply padding.
const GEMV_MAX_BATCH: usize = 6;

/// A feature tap besides Y.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// The local feature map (output of `local_layer`), NCHW.
    Local,
    /// Output of the last conv layer (flattened NCHW).
    Conv,
    /// Output of the last hidden linear layer.
    Fc,
}

/// Optional tap outputs for [`Plan::encode_with_taps`]; each slice must be
/// exactly [`Plan::tap_len`] long.
#[derive(Debug, Default)]
pub struct Taps<'t> {
    /// The local map, `[batch, c, h, w]`.
    pub local: Option<&'t mut [f32]>,
    /// The conv tap, `[batch, c·h·w]`.
    pub conv: Option<&'t mut [f32]>,
    /// The fc tap, `[batch, features]`.
    pub fc: Option<&'t mut [f32]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Input,
    A,
    B,
    Output,
}

impl Slot {
    fn other(self) -> Slot {
        if self == Slot::A { Slot::B } else { Slot::A }
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    /// Shape at batch 1 (the batch loop is ours).
    Conv(Conv2dShape, ConvDims),
    Linear,
}

#[derive(Clone, Copy, Debug)]
struct Step {
    op: Op,
    stem: Stem,
    /// Weight rows (output channels or features).
    rows: usize,
    /// Weight row length (C_in·k·k or in_features).
    k: usize,
    /// Expected weight shape (rank 4 for conv, 2 for linear).
    w_shape: [usize; 4],
    /// A small-batch linear layer: one dot per (image, output).
    gemv: bool,
    /// Weight rows converted per chunk in a `gemv` layer.
    gemv_rows: usize,
    /// GEMM blocking otherwise.
    blk: Blocking,
    relu: bool,
    pool: Option<MaxPoolShape>,
    /// Input, pre-pool and output elements per image.
    in_len: usize,
    pre_len: usize,
    out_len: usize,
    z_slot: Slot,
    out_slot: Slot,
}

const EMPTY_STEP: Step = Step {
    op: Op::Linear,
    stem: Stem::Out,
    rows: 0,
    k: 0,
    w_shape: [0; 4],
    gemv: false,
    gemv_rows: 0,
    blk: Blocking { kc: 1, mc: 0, nc: 0 },
    relu: false,
    pool: None,
    in_len: 0,
    pre_len: 0,
    out_len: 0,
    z_slot: Slot::A,
    out_slot: Slot::A,
};

/// Everything `encode` needs to know, computed once. `Copy`, no heap.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    arch: Arch,
    batch: usize,
    steps: [Step; MAX_LAYERS + 1],
    n_steps: usize,
    slot_len: [usize; 2],
    apack_len: usize,
    bpack_len: usize,
    bias_len: usize,
    scratch_len: usize,
    local: usize,
    conv_tap: Option<usize>,
    fc_tap: Option<usize>,
}

fn mul(a: usize, b: usize) -> Result<usize, InferError> {
    a.checked_mul(b).ok_or(InferError::Kernel(crate::Error::Overflow { what: "inference plan" }))
}

fn add(a: usize, b: usize) -> Result<usize, InferError> {
    a.checked_add(b).ok_or(InferError::Kernel(crate::Error::Overflow { what: "inference plan" }))
}

impl Plan {
    /// Plans `arch` for `batch` images (≥ 1), checking every shape, with
    /// weight tiles of at most [`WEIGHT_TILE`] elements (microcontroller-sized).
    pub fn new(arch: &Arch, batch: usize) -> Result<Self, InferError> {
        Self::with_weight_tile(arch, batch, WEIGHT_TILE)
    }

    /// [`Plan::new`] with GEMM packing buffers of up to `weight_tile`
    /// elements each. Larger buffers cost scratch (2 × `weight_tile` f32)
    /// and buy speed: B (the activations) is packed once per `nc` columns
    /// and each block of weights is converted once per packed B block. On a
    /// server, `1 << 20` packs every layer of the presets in one block.
    pub fn with_weight_tile(arch: &Arch, batch: usize, weight_tile: usize) -> Result<Self, InferError> {
        let bad = |reason| InferError::InvalidConfig { reason };
        if batch == 0 {
            return Err(bad("batch must be at least 1"));
        }
        let [c0, h0, w0] = arch.input();
        if c0 == 0 || h0 == 0 || w0 == 0 {
            return Err(bad("input dimensions must be at least 1"));
        }
        if arch.y_dim() == 0 {
            return Err(bad("y_dim must be at least 1"));
        }
        let layers = arch.layers();
        // The model description's walk names every layer and checks the
        // order and the shapes; the plan below adds the kernels' dimensions.
        let mut model = [Layer::Linear { out: 0, bn: false, relu: false }; MAX_LAYERS];
        for (m, l) in model.iter_mut().zip(layers) {
            *m = l.to_layer();
        }
        let mut walk = Walk::new(arch.input(), &model[..layers.len()], None, arch.local_layer(), arch.y_dim())?;
        let mut steps = [EMPTY_STEP; MAX_LAYERS + 1];
        let mut cur = arch.input();
        let mut in_len = mul(mul(c0, h0)?, w0)?;
        let y = LayerSpec::Linear { out: arch.y_dim(), relu: false };
        for (i, spec) in layers.iter().chain(core::iter::once(&y)).enumerate() {
            let io = match walk.next() {
                Some(io) => Some(io?),
                None => None,
            };
            let mut st = Step { in_len, stem: io.map_or(Stem::Out, |io| io.stem), ..EMPTY_STEP };
            match *spec {
                LayerSpec::Conv { out, kernel, stride, padding, relu, pool } => {
                    let s = Conv2dShape::new(1, cur[0], (cur[1], cur[2]), out, kernel, stride, padding);
                    let d = s.validate()?;
                    st.op = Op::Conv(s, d);
                    (st.rows, st.k, st.w_shape) = (out, d.col_rows, [out, cur[0], kernel, kernel]);
                    st.relu = relu;
                    st.pre_len = d.out_len;
                    cur = [out, d.out_h, d.out_w];
                    if pool {
                        let ps = MaxPoolShape::k3s2(batch, out, d.out_h, d.out_w);
                        let (ph, pw, _, _) = ps.validate()?;
                        st.pool = Some(ps);
                        cur = [out, ph, pw];
                    }
                }
                LayerSpec::Linear { out, relu } => {
                    if out == 0 {
                        return Err(bad("linear layers need at least 1 output"));
                    }
                    st.op = Op::Linear;
                    (st.rows, st.k, st.w_shape) = (out, in_len, [out, in_len, 0, 0]);
                    st.relu = relu;
                    st.pre_len = out;
                    cur = [out, 1, 1];
                }
            }
            if io.is_some_and(|io| io.out != cur) {
                return Err(bad("layer shapes disagree with the model walk"));
            }
            st.out_len = mul(mul(cur[0], cur[1])?, cur[2])?;
            let gemm_n = match st.op {
                Op::Conv(_, d) if d.pointwise => d.out_hw,
                Op::Conv(_, d) => mul(batch, d.out_hw)?,
                Op::Linear => batch,
            };
            st.gemv = matches!(st.op, Op::Linear) && batch < GEMV_MAX_BATCH;
            st.gemv_rows = (weight_tile.min(GEMV_CHUNK) / st.k).clamp(1, st.rows);
            st.blk = Blocking::new(st.rows, st.k, gemm_n, weight_tile);
            in_len = st.out_len;
            steps[i] = st;
        }
        let n_steps = layers.len() + 1;
        let mut plan = Plan {
            arch: *arch,
            batch,
            steps,
            n_steps,
            slot_len: [0; 2],
            apack_len: 0,
            bpack_len: 0,
            bias_len: 0,
            scratch_len: 0,
            local: arch.local_layer(),
            conv_tap: layers.iter().rposition(|l| matches!(l, LayerSpec::Conv { .. })),
            fc_tap: layers.iter().rposition(|l| matches!(l, LayerSpec::Linear { .. })),
        };
        // Route activations through the two slots and size everything.
        let mut src = Slot::Input;
        for (i, st) in plan.steps[..n_steps].iter_mut().enumerate() {
            st.z_slot = if i + 1 == n_steps { Slot::Output } else { src.other() };
            st.out_slot = if st.pool.is_some() { st.z_slot.other() } else { st.z_slot };
            for (slot, len) in [(st.z_slot, st.pre_len), (st.out_slot, st.out_len)] {
                let idx = match slot {
                    Slot::A => 0,
                    Slot::B => 1,
                    _ => continue,
                };
                plan.slot_len[idx] = plan.slot_len[idx].max(mul(batch, len)?);
            }
            if st.gemv {
                plan.apack_len = plan.apack_len.max(mul(st.gemv_rows, st.k)?);
            } else {
                plan.apack_len = plan.apack_len.max(mul(st.blk.mc, st.blk.kc)?);
                plan.bpack_len = plan.bpack_len.max(mul(st.blk.kc, st.blk.nc)?);
            }
            plan.bias_len = plan.bias_len.max(st.rows);
            src = st.out_slot;
        }
        plan.scratch_len = [plan.slot_len[1], plan.apack_len, plan.bpack_len, plan.bias_len]
            .into_iter()
            .try_fold(plan.slot_len[0], add)?;
        Ok(plan)
    }

    /// Plans the architecture an exported file describes in its metadata,
    /// and checks every tensor the plan reads against it
    /// ([`Plan::check_weights`]): a plan returned here, and its
    /// `scratch_len()`, is one `encode` with `w` accepts.
    pub fn from_weights<const N: usize>(w: &Weights<'_, N>, batch: usize) -> Result<Self, InferError> {
        let plan = Self::new(&Arch::from_weights(w)?, batch)?;
        plan.check_weights(w)?;
        Ok(plan)
    }

    /// Checks that `w` holds every weight and bias this plan reads, by
    /// name, with a supported dtype and the planned shape (the checks
    /// `encode` makes layer by layer, done up front).
    pub fn check_weights<const N: usize>(&self, w: &Weights<'_, N>) -> Result<(), InferError> {
        for (i, st) in self.steps[..self.n_steps].iter().enumerate() {
            let (wt, _) = self.tensors(w, i, st)?;
            wt.weight_rows().map_err(|_| InferError::WrongShape { layer: i, part: "weight" })?;
        }
        Ok(())
    }

    /// Exact scratch length (f32 elements) `encode` needs.
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Images per call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The planned architecture.
    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// Input length: `batch · c · h · w`, values in [−1, 1] (see [`super::normalize`]).
    pub fn input_len(&self) -> usize {
        self.batch * self.steps[0].in_len
    }

    /// Output length: `batch · y_dim`.
    pub fn output_len(&self) -> usize {
        self.batch * self.arch.y_dim()
    }

    /// Length of a tap's output, or `None` if the encoder has no such layer.
    pub fn tap_len(&self, tap: Tap) -> Option<usize> {
        let i = match tap {
            Tap::Local => Some(self.local),
            Tap::Conv => self.conv_tap,
            Tap::Fc => self.fc_tap,
        }?;
        Some(self.batch * self.steps[i].out_len)
    }

    /// Encodes `input` (`[batch, c, h, w]`, NCHW, in [−1, 1]) into Y
    /// (`out`, `[batch, y_dim]`). Allocates nothing; NaN inputs propagate
    /// to the outputs (no panic, no error).
    pub fn encode<const N: usize>(
        &self,
        weights: &Weights<'_, N>,
        input: &[f32],
        scratch: &mut [f32],
        out: &mut [f32],
    ) -> Result<(), InferError> {
        self.encode_with_taps(weights, input, scratch, out, Taps::default())
    }

    /// [`Plan::encode`], also writing the requested taps.
    pub fn encode_with_taps<const N: usize>(
        &self,
        weights: &Weights<'_, N>,
        input: &[f32],
        scratch: &mut [f32],
        out: &mut [f32],
        mut taps: Taps<'_>,
    ) -> Result<(), InferError> {
        let len = |what, expected, got| {
            if expected == got { Ok(()) } else { Err(InferError::WrongLength { what, expected, got }) }
        };
        len("input", self.input_len(), input.len())?;
        len("output", self.output_len(), out.len())?;
        if scratch.len() < self.scratch_len {
            return Err(InferError::ScratchTooSmall { needed: self.scratch_len, got: scratch.len() });
        }
        // (layer, caller slice, name) per tap.
        let mut tap_slots = [
            (Some(self.local), taps.local.take(), "local"),
            (self.conv_tap, taps.conv.take(), "conv"),
            (self.fc_tap, taps.fc.take(), "fc"),
        ];
        for (layer, slice, name) in tap_slots.iter_mut() {
            if let Some(s) = slice.as_deref() {
                let l = layer.ok_or(InferError::TapUnavailable { tap: name })?;
                len(name, self.batch * self.steps[l].out_len, s.len())?;
            }
        }
        let (a, rest) = scratch.split_at_mut(self.slot_len[0]);
        let (b, rest) = rest.split_at_mut(self.slot_len[1]);
        let (apack, rest) = rest.split_at_mut(self.apack_len);
        let (bpack, rest) = rest.split_at_mut(self.bpack_len);
        let mut work = LayerScratch { apack, bpack };
        let bias = &mut rest[..self.bias_len];
        let n = self.batch;
        let mut src_slot = Slot::Input;
        for (i, st) in self.steps[..self.n_steps].iter().enumerate() {
            let (wt, bt) = self.tensors(weights, i, st)?;
            let bias = &mut bias[..st.rows];
            bt.read_f32(0, bias).map_err(|_| InferError::WrongShape { layer: i, part: "bias" })?;
            let (src, dst): (&[f32], &mut [f32]) = match (src_slot, st.z_slot) {
                (Slot::Input, Slot::A) => (input, &mut *a),
                (Slot::A, Slot::B) => (&*a, &mut *b),
                (Slot::B, Slot::A) => (&*b, &mut *a),
                (Slot::A, Slot::Output) => (&*a, &mut *out),
                (Slot::B, Slot::Output) => (&*b, &mut *out),
                (Slot::Input, Slot::Output) => (input, &mut *out),
                _ => return Err(InferError::InvalidConfig { reason: "internal routing error" }),
            };
            let src = &src[..n * st.in_len];
            let dst = &mut dst[..n * st.pre_len];
            self.layer(i, st, &wt, bias, src, dst, &mut work)?;
            if st.relu {
                relu_inplace(dst);
            }
            if let Some(ps) = &st.pool {
                let (z, pooled): (&[f32], &mut [f32]) = match st.z_slot {
                    Slot::A => (&*a, &mut *b),
                    _ => (&*b, &mut *a),
                };
                max_pool_forward_values(ps, &z[..n * st.pre_len], &mut pooled[..n * st.out_len])?;
            }
            for (layer, slice, _) in tap_slots.iter_mut() {
                if let (Some(l), Some(dst)) = (*layer, slice.as_deref_mut())
                    && l == i
                {
                    let from: &[f32] = if st.out_slot == Slot::A { a } else { b };
                    dst.copy_from_slice(&from[..dst.len()]);
                }
            }
            src_slot = st.out_slot;
        }
        Ok(())
    }

    /// Looks up and checks layer `i`'s weight and bias.
    fn tensors<'a, const N: usize>(
        &self,
        w: &Weights<'a, N>,
        i: usize,
        st: &Step,
    ) -> Result<(Tensor<'a>, Tensor<'a>), InferError> {
        let rank = if matches!(st.op, Op::Conv(..)) { 4 } else { 2 };
        let get = |part: &'static str, shape: &[usize]| {
            let mut name = NameBuf::default();
            let ok = write!(name, "{ENCODER_PREFIX}{}.{part}", st.stem);
            let t =
                ok.ok().and_then(|_| w.tensor(name.as_str())).ok_or(InferError::MissingTensor { layer: i, part })?;
            if !matches!(t.dtype(), Dtype::F32 | Dtype::F16 | Dtype::BF16) {
                return Err(InferError::WrongDtype { layer: i, part, dtype: t.dtype() });
            }
            if t.shape() != shape {
                return Err(InferError::WrongShape { layer: i, part });
            }
            Ok(t)
        };
        Ok((get("weight", &st.w_shape[..rank])?, get("bias", &[st.rows])?))
    }

    /// `dst = W · src + b` for one conv or linear layer: weights read in
    /// place (aligned f32) or converted block by block.
    #[allow(clippy::too_many_arguments)]
    fn layer(
        &self,
        i: usize,
        st: &Step,
        wt: &Tensor<'_>,
        bias: &[f32],
        src: &[f32],
        dst: &mut [f32],
        work: &mut LayerScratch<'_>,
    ) -> Result<(), InferError> {
        let (apack, bpack) = (&mut *work.apack, &mut *work.bpack);
        let n = self.batch;
        let w = wt.weight_rows().map_err(|_| InferError::WrongShape { layer: i, part: "weight" })?;
        match st.op {
            Op::Conv(s, d) => {
                let hw = d.out_hw;
                if d.pointwise {
                    for (x, y) in src.chunks_exact(st.in_len).zip(dst.chunks_exact_mut(st.pre_len)) {
                        let bm = MatRef::row_major(x, st.k, hw)?;
                        gemm_weights(OutView::row_major(y, st.rows, hw)?, w, bm, st.blk, apack, bpack)?;
                    }
                } else {
                    // The batch is the GEMM's N: one product per layer, each
                    // weight converted once per packed block of columns, the
                    // im2col matrix packed straight from the images.
                    let ld = n * hw;
                    let g = ConvGeom {
                        channels: s.in_channels,
                        in_hw: (s.in_h, s.in_w),
                        kernel: (s.kernel_h, s.kernel_w),
                        stride: s.stride,
                        padding: s.padding,
                        out_hw: (d.out_h, d.out_w),
                    };
                    let cm = OutView::new(dst, st.rows, ld, hw, hw, st.pre_len)?;
                    gemm_weights_im2col(cm, w, Im2colB::new(src, g, n)?, st.blk, apack, bpack)?;
                }
                for y in dst.chunks_exact_mut(st.pre_len) {
                    add_bias(y, bias, hw);
                }
            }
            Op::Linear if st.gemv => {
                // A few images: one dot per (image, output), no padding.
                let k = st.k;
                let gemv = |tw: &[f32], o0: usize, dst: &mut [f32]| {
                    for (x, y) in src.chunks_exact(k).zip(dst.chunks_exact_mut(st.rows)) {
                        let nrows = tw.len() / k;
                        let n4 = nrows / 4 * 4;
                        let (y4, y_rest) = y[o0..o0 + nrows].split_at_mut(n4);
                        for (w, o) in tw[..n4 * k].chunks_exact(4 * k).zip(y4.chunks_exact_mut(4)) {
                            let r = [&w[..k], &w[k..2 * k], &w[2 * k..3 * k], &w[3 * k..]];
                            o.copy_from_slice(&dot4(r, x));
                        }
                        for (o, wr) in y_rest.iter_mut().zip(tw[n4 * k..].chunks_exact(k)) {
                            *o = dot(wr, x);
                        }
                    }
                };
                // 16-bit weights: converted in registers where the CPU can
                // (no staging); `false` means use the staging path below.
                let fused = |kind: HalfKind, bytes: &[u8], dst: &mut [f32]| -> bool {
                    let row = |o: usize| bytes.get(o * 2 * k..(o + 1) * 2 * k);
                    for (x, y) in src.chunks_exact(k).zip(dst.chunks_exact_mut(st.rows)) {
                        for o in (0..st.rows).step_by(4) {
                            // A last group of fewer than 4 repeats its last row.
                            let r = |j: usize| row((o + j).min(st.rows - 1));
                            let (Some(r0), Some(r1), Some(r2), Some(r3)) = (r(0), r(1), r(2), r(3)) else {
                                return false;
                            };
                            let Some(v) = dot4_half(kind, [r0, r1, r2, r3], x) else { return false };
                            let n = 4.min(st.rows - o);
                            y[o..o + n].copy_from_slice(&v[..n]);
                        }
                    }
                    true
                };
                let half = match w {
                    WeightRows::F16Le(b) => Some((HalfKind::F16, b)),
                    WeightRows::Bf16Le(b) => Some((HalfKind::Bf16, b)),
                    _ => None,
                };
                match w.in_place() {
                    Some(all) => gemv(all, 0, dst),
                    None if half.is_some_and(|(kind, b)| fused(kind, b, dst)) => {}
                    None => {
                        for o0 in (0..st.rows).step_by(st.gemv_rows) {
                            let t = st.gemv_rows.min(st.rows - o0);
                            let tw = &mut apack[..t * st.k];
                            w.read(o0 * st.k, tw);
                            gemv(tw, o0, dst);
                        }
                    }
                }
                add_bias_rows(dst, bias);
            }
            Op::Linear => {
                // Yᵀ = W · Xᵀ: the weights are the GEMM's A, the batch its N.
                let xt = MatRef::new(src, st.k, n, 1, st.k)?;
                let cm = OutView::new(dst, st.rows, n, 1, 1, st.rows)?;
                gemm_weights(cm, w, xt, st.blk, apack, bpack)?;
                add_bias_rows(dst, bias);
            }
        }
        Ok(())
    }
}

/// The scratch a conv or linear layer works in: the GEMM's packed blocks,
/// reused layer after layer.
struct LayerScratch<'s> {
    apack: &'s mut [f32],
    bpack: &'s mut [f32],
}

/// A tensor name built on the stack.
struct NameBuf {
    buf: [u8; 48],
    len: usize,
}

impl Default for NameBuf {
    fn default() -> Self {
        Self { buf: [0; 48], len: 0 }
    }
}

impl NameBuf {
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl Write for NameBuf {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(core::fmt::Error)?;
        self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
