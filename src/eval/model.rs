//! The two frozen-feature classifiers, composed of `nn` units over one flat
//! parameter buffer and the crate's parameter table.
//!
//! Generic over [`Float`]: training runs in `f32`, the finite-difference tests
//! run the very same code in `f64`.

use rayon::prelude::*;

use crate::error::{Error, Result, check_len, check_nonzero, checked_product};
use crate::kernels::{
    Float, InputGrad, NORM_EPS, NormShape, RowsShape, RunningStats, SavedStats, ScaleShift, batch_norm_eval_forward,
    cross_entropy_backward, cross_entropy_forward, dropout_backward, dropout_forward, relu_backward, relu_forward,
};
use crate::nn::{BatchNorm, Builder, Ctx, Linear, Mode};
use crate::params::{Init as TableInit, ParamTable};
use crate::rng::Rng;

/// Rows per task for the element-wise passes (dropout, ReLU, eval-mode batch
/// norm). Fixed, so the split never depends on the thread count; element-wise
/// work gives the same bits under any split anyway.
const ROW_CHUNK: usize = 64;

/// RNG stream of the parameter initialisation (see [`Rng::derive`]).
pub(crate) const STREAM_INIT: u64 = 1;

/// Which classifier: the paper's two probes of a frozen representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClassifierKind {
    /// Softmax regression: `Linear(d → classes)` with bias. Measures how
    /// linearly separable the classes are in the features.
    Linear,
    /// `Linear(d → hidden) → Dropout → BatchNorm1d → ReLU → Linear(hidden →
    /// classes)`: the reference's nonlinear probe.
    Mlp,
}

impl ClassifierKind {
    /// The reference's order (`CLFS = ("linear", "mlp")`); the index enters
    /// the classifier seed.
    pub const ALL: [ClassifierKind; 2] = [ClassifierKind::Linear, ClassifierKind::Mlp];

    /// Position in [`ClassifierKind::ALL`] (0 for linear, 1 for the MLP).
    pub const fn index(self) -> usize {
        match self {
            ClassifierKind::Linear => 0,
            ClassifierKind::Mlp => 1,
        }
    }

    /// The reference's name ("linear" / "mlp").
    pub const fn name(self) -> &'static str {
        match self {
            ClassifierKind::Linear => "linear",
            ClassifierKind::Mlp => "mlp",
        }
    }
}

/// The architecture of one classifier.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassifierSpec {
    /// Linear or MLP.
    pub kind: ClassifierKind,
    /// Feature dimension `d`.
    pub in_features: usize,
    /// Number of classes.
    pub classes: usize,
    /// MLP hidden width (the reference's 200); ignored by the linear one.
    pub hidden: usize,
    /// MLP dropout probability (the reference's 0.1); ignored by the linear one.
    pub dropout: f64,
}

impl ClassifierSpec {
    /// The reference's MLP (`hidden` 200, dropout 0.1) or softmax regression.
    pub fn new(kind: ClassifierKind, in_features: usize, classes: usize) -> Self {
        Self { kind, in_features, classes, hidden: 200, dropout: 0.1 }
    }

    /// Checks every size and the dropout probability.
    pub fn validate(&self) -> Result<()> {
        check_nonzero("classifier in_features", self.in_features)?;
        check_nonzero("classifier classes", self.classes)?;
        if self.kind == ClassifierKind::Mlp {
            check_nonzero("classifier hidden", self.hidden)?;
            if !(0.0..1.0).contains(&self.dropout) {
                return Err(Error::InvalidParameter { what: "classifier dropout", reason: "must be in [0, 1)" });
            }
        }
        Ok(())
    }
}

pub use crate::params::ParamEntry;

/// Scratch for one forward/backward, reused across steps so training does
/// not allocate per step. Sized on demand for the batch it is given.
#[derive(Clone, Debug, Default)]
pub struct Workspace<T> {
    h1: Vec<T>,
    mask: Vec<T>,
    h2: Vec<T>,
    h3: Vec<T>,
    h4: Vec<T>,
    logits: Vec<T>,
    dlogits: Vec<T>,
    ga: Vec<T>,
    gb: Vec<T>,
    save_mean: Vec<T>,
    save_invstd: Vec<T>,
}

impl<T: Float> Workspace<T> {
    /// An empty workspace; buffers grow on first use.
    pub fn new() -> Self {
        Self {
            h1: Vec::new(),
            mask: Vec::new(),
            h2: Vec::new(),
            h3: Vec::new(),
            h4: Vec::new(),
            logits: Vec::new(),
            dlogits: Vec::new(),
            ga: Vec::new(),
            gb: Vec::new(),
            save_mean: Vec::new(),
            save_invstd: Vec::new(),
        }
    }

    /// The logits of the last forward pass (`[rows, classes]`).
    pub fn logits(&self) -> &[T] {
        &self.logits
    }
}

fn sized<T: Float>(v: &mut Vec<T>, len: usize) -> &mut [T] {
    v.resize(len, T::ZERO);
    &mut v[..len]
}

/// A linear or MLP classifier: architecture, parameter table, the flat
/// parameter buffer and (MLP) the BatchNorm running statistics.
///
/// The running statistics are *buffers*, not parameters (as in PyTorch): they
/// live outside the flat buffer so the optimiser never touches them.
#[derive(Clone, Debug)]
pub struct Classifier<T> {
    spec: ClassifierSpec,
    table: ParamTable,
    params: Vec<T>,
    /// BatchNorm running mean and variance (MLP; empty otherwise).
    buffers: Vec<T>,
    units: Units,
}

/// The classifier's units.
#[derive(Clone, Copy, Debug)]
enum Units {
    /// `Linear(d → classes)`.
    Linear(Linear),
    /// `0`: Linear(d → hidden), `2`: BatchNorm1d, `4`: Linear(hidden → classes).
    Mlp(Linear, BatchNorm, Linear),
}

impl<T: Float> Classifier<T> {
    /// A classifier with PyTorch's default initialisation drawn from `seed`:
    /// Linear weight and bias U(−1/√fan_in, 1/√fan_in), BatchNorm gamma 1,
    /// beta 0, running mean 0, running var 1.
    ///
    /// Values are drawn in `f64` and rounded to `T`, so an `f32` and an `f64`
    /// classifier from one seed hold the same function up to rounding.
    pub fn new(spec: ClassifierSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let (d, c, h) = (spec.in_features, spec.classes, spec.hidden);
        // Sizes are checked before the table multiplies them.
        let sizes: &[&[usize]] = match spec.kind {
            ClassifierKind::Linear => &[&[c, d], &[c]],
            ClassifierKind::Mlp => &[&[h, d], &[h], &[h], &[h], &[c, h], &[c]],
        };
        sizes.iter().try_fold(0usize, |total, shape| {
            total
                .checked_add(checked_product("classifier parameter", shape)?)
                .ok_or(Error::Overflow { what: "classifier parameters" })
        })?;
        let (mut table, mut buffer_table) = (ParamTable::new(), ParamTable::new());
        let mut b = Builder::new(&mut table, &mut buffer_table);
        // nn.Sequential numbering: Linear 0, Dropout 1, BatchNorm1d 2, ReLU 3, Linear 4.
        let units = match spec.kind {
            ClassifierKind::Linear => {
                let w = b.param("weight", &[c, d], TableInit::FanIn(d));
                let bias = b.param("bias", &[c], TableInit::FanIn(d));
                Units::Linear(Linear { in_f: d, out_f: c, w, b: Some(bias) })
            }
            ClassifierKind::Mlp => {
                Units::Mlp(b.linear("0", d, h, true), b.batch_norm("2", h), b.linear("4", h, c, true))
            }
        };
        // PyTorch draws a module's initial weights from one stream in
        // declaration order; so does this (not the per-tensor streams of
        // `ParamTable::init`), to match the reference probes' init.
        let mut params = vec![T::ZERO; table.len()];
        let mut rng = Rng::derive(seed, STREAM_INIT);
        for entry in table.entries() {
            let dst = &mut params[entry.range()];
            match entry.init {
                TableInit::FanIn(fan_in) => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    for p in dst {
                        *p = T::from_f64((2.0 * rng.uniform() - 1.0) * bound);
                    }
                }
                TableInit::Ones => dst.fill(T::ONE),
                _ => dst.fill(T::ZERO),
            }
        }
        let mut buffers = vec![T::ZERO; buffer_table.len()];
        if let Units::Mlp(_, bn, _) = units {
            buffers[bn.rv.range()].fill(T::ONE);
        }
        Ok(Self { spec, table, params, buffers, units })
    }

    /// The architecture.
    pub fn spec(&self) -> &ClassifierSpec {
        &self.spec
    }

    /// The parameter table, in buffer order.
    pub fn table(&self) -> &[ParamEntry] {
        self.table.entries()
    }

    /// The flat parameter buffer.
    pub fn params(&self) -> &[T] {
        &self.params
    }

    /// The flat parameter buffer, for the optimiser (and the tests' finite
    /// differences).
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }

    /// One named parameter (`"0.weight"`, `"bias"`, ...).
    pub fn param(&self, name: &str) -> Option<&[T]> {
        self.table.get(name).map(|e| &self.params[e.range()])
    }

    /// BatchNorm running mean (`2.running_mean`; empty for the linear classifier).
    pub fn running_mean(&self) -> &[T] {
        match self.units {
            Units::Mlp(_, bn, _) => &self.buffers[bn.rm.range()],
            Units::Linear(_) => &[],
        }
    }

    /// BatchNorm running variance (`2.running_var`; empty for the linear classifier).
    pub fn running_var(&self) -> &[T] {
        match self.units {
            Units::Mlp(_, bn, _) => &self.buffers[bn.rv.range()],
            Units::Linear(_) => &[],
        }
    }

    fn rows_of(&self, x: &[T], rows: usize) -> Result<()> {
        check_nonzero("classifier batch rows", rows)?;
        check_len("classifier input", checked_product("classifier input", &[rows, self.spec.in_features])?, x.len())
    }

    /// Train mode: forward and backward of the mean cross-entropy over the
    /// batch `x` (`[labels.len(), in_features]`). Returns the loss and
    /// **accumulates** the gradient into `grads` (the kernels' convention, so
    /// one flat buffer is zeroed once per step).
    ///
    /// For the MLP: dropout draws its mask from `dropout_seed` (element `i` of
    /// the `[rows, hidden]` activation uses counter `i`, so the mask does not
    /// depend on threading), and BatchNorm normalises with the batch
    /// statistics and updates the running statistics (momentum 0.1, unbiased
    /// variance), exactly like `model.train()` in PyTorch. BatchNorm needs at
    /// least 2 rows.
    pub fn loss_and_grad(
        &mut self,
        x: &[T],
        labels: &[usize],
        dropout_seed: u64,
        grads: &mut [T],
        ws: &mut Workspace<T>,
    ) -> Result<T> {
        let rows = labels.len();
        self.rows_of(x, rows)?;
        check_len("classifier gradient", self.params.len(), grads.len())?;
        // Labels first: a failed call must not have touched the running statistics.
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= self.spec.classes) {
            return Err(Error::LabelOutOfRange { index, label, classes: self.spec.classes });
        }
        let (c, h) = (self.spec.classes, self.spec.hidden);
        let rs = RowsShape::new(rows, c);
        match self.units {
            Units::Linear(l) => {
                let ctx = Ctx::forward(&self.params, &mut [], Mode::Train);
                let logits = sized(&mut ws.logits, rows * c);
                l.forward(&ctx, rows, x, logits)?;
                let loss = cross_entropy_forward(&rs, logits, labels)?;
                let dlogits = sized(&mut ws.dlogits, rows * c);
                cross_entropy_backward(&rs, &ws.logits, labels, T::ONE, dlogits)?;
                l.backward(&mut Ctx::backward(&self.params, grads), rows, x, dlogits, None)?;
                Ok(loss)
            }
            Units::Mlp(l0, bn, l4) => {
                if rows < 2 {
                    return Err(Error::InvalidShape {
                        what: "mlp classifier (train)",
                        reason: "BatchNorm needs at least 2 rows",
                    });
                }
                let ns = NormShape::new(rows, h, 1);
                let n = rows * h;
                let mut ctx = Ctx::forward(&self.params, &mut self.buffers, Mode::Train);
                // Linear 0.
                let h1 = sized(&mut ws.h1, n);
                l0.forward(&ctx, rows, x, h1)?;
                // Dropout 1.
                let h1 = &ws.h1[..n];
                let mask = sized(&mut ws.mask, n);
                let h2 = sized(&mut ws.h2, n);
                dropout_par(self.spec.dropout, dropout_seed, h, h1, h2, mask)?;
                // BatchNorm 2 (batch statistics), then ReLU 3.
                let h3 = sized(&mut ws.h3, n);
                let sm = sized(&mut ws.save_mean, h);
                let si = sized(&mut ws.save_invstd, h);
                bn.forward(&mut ctx, &ns, &ws.h2[..n], h3, sm, si)?;
                // Out of place: `relu_inplace`'s conditional store does not
                // vectorise and mispredicts on BN output (half negative).
                let h4 = sized(&mut ws.h4, n);
                h4.par_chunks_mut(ROW_CHUNK * h)
                    .zip(ws.h3[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|(y, xs)| relu_forward(xs, y))?;
                // Linear 4 and the loss.
                let h3 = &ws.h4[..n];
                let logits = sized(&mut ws.logits, rows * c);
                l4.forward(&ctx, rows, h3, logits)?;
                let loss = cross_entropy_forward(&rs, logits, labels)?;
                let dlogits = sized(&mut ws.dlogits, rows * c);
                cross_entropy_backward(&rs, &ws.logits, labels, T::ONE, dlogits)?;
                // Backward, last layer first.
                let mut ctx = Ctx::backward(&self.params, grads);
                let ga = sized(&mut ws.ga, n);
                l4.backward(&mut ctx, rows, h3, &ws.dlogits[..rows * c], Some(InputGrad::Write(ga)))?;
                let gb = sized(&mut ws.gb, n);
                relu_backward_par(h, h3, &ws.ga[..n], gb)?;
                let ga = &mut ws.ga[..n];
                let saved = SavedStats { mean: &ws.save_mean[..h], invstd: &ws.save_invstd[..h] };
                bn.backward(&mut ctx, &ns, &ws.h2[..n], gb, saved, ga)?;
                let gb = &mut ws.gb[..n];
                gb.par_chunks_mut(ROW_CHUNK * h)
                    .zip(ws.mask[..n].par_chunks(ROW_CHUNK * h))
                    .zip(ws.ga[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|((dx, m), dy)| dropout_backward(m, dy, dx))?;
                l0.backward(&mut ctx, rows, x, gb, None)?;
                Ok(loss)
            }
        }
    }

    /// Eval mode: logits of `rows` rows of `x` into `ws` (read them with
    /// [`Workspace::logits`]). Dropout is the identity and BatchNorm uses the
    /// running statistics, like `model.eval()` in PyTorch.
    pub fn eval_logits(&self, x: &[T], rows: usize, ws: &mut Workspace<T>) -> Result<()> {
        self.rows_of(x, rows)?;
        let (c, h) = (self.spec.classes, self.spec.hidden);
        let ctx = Ctx::forward(&self.params, &mut [], Mode::Eval);
        match self.units {
            Units::Linear(l) => l.forward(&ctx, rows, x, sized(&mut ws.logits, rows * c)),
            Units::Mlp(l0, bn, l4) => {
                let n = rows * h;
                l0.forward(&ctx, rows, x, sized(&mut ws.h1, n))?;
                let h2 = sized(&mut ws.h2, n);
                let h3 = sized(&mut ws.h3, n);
                let scale_shift = ScaleShift { gamma: bn.gamma.of(&self.params)?, beta: bn.beta.of(&self.params)? };
                let running = RunningStats { mean: bn.rm.of(&self.buffers)?, var: bn.rv.of(&self.buffers)? };
                h2.par_chunks_mut(ROW_CHUNK * h)
                    .zip(h3.par_chunks_mut(ROW_CHUNK * h))
                    .zip(ws.h1[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|((y, bnv), xs)| {
                        let ns = NormShape::new(xs.len() / h, h, 1);
                        batch_norm_eval_forward(&ns, NORM_EPS, xs, scale_shift, running, bnv)?;
                        relu_forward(bnv, y)
                    })?;
                l4.forward(&ctx, rows, &ws.h2[..n], sized(&mut ws.logits, rows * c))
            }
        }
    }
}

/// Dropout over `[rows, width]` in row chunks. Each chunk passes its first
/// element's flat index as the kernel's counter offset, so the mask is the
/// one a single serial call would draw.
fn dropout_par<T: Float>(p: f64, seed: u64, width: usize, x: &[T], y: &mut [T], mask: &mut [T]) -> Result<()> {
    let chunk = ROW_CHUNK * width;
    y.par_chunks_mut(chunk)
        .zip(mask.par_chunks_mut(chunk))
        .zip(x.par_chunks(chunk))
        .enumerate()
        .try_for_each(|(i, ((ys, ms), xs))| dropout_forward(p, seed, (i * chunk) as u64, xs, ys, ms))
}

/// `dx = dy · [y > 0]` over `[rows, width]`, in row chunks.
fn relu_backward_par<T: Float>(width: usize, y: &[T], dy: &[T], dx: &mut [T]) -> Result<()> {
    let chunk = ROW_CHUNK * width;
    dx.par_chunks_mut(chunk)
        .zip(y.par_chunks(chunk))
        .zip(dy.par_chunks(chunk))
        .try_for_each(|((dx, y), dy)| relu_backward(y, dy, dx))
}

/// Index of the largest value of `row`; the first one on ties. A NaN counts
/// as the largest value, as in `torch.argmax`, so a diverged probe scores
/// like PyTorch's does.
pub(crate) fn argmax<T: Float>(row: &[T]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate().skip(1) {
        let b = row[best];
        if b.is_nan() {
            break;
        }
        if v.is_nan() || v > b {
            best = j;
        }
    }
    best
}
