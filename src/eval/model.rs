//! The two frozen-feature classifiers, as one flat parameter buffer plus a
//! parameter table, with a hand-written forward/backward over the kernels.
//!
//! Generic over [`Float`]: training runs in `f32`, the finite-difference tests
//! run the very same code in `f64`.

use rayon::prelude::*;

use crate::error::{Error, Result, check_len, check_nonzero, checked_product};
use crate::kernels::par::{
    batch_norm_train_backward_par, batch_norm_train_forward_par, linear_backward_par, linear_forward_par,
};
use crate::kernels::{
    BatchNormConfig, Float, LinearShape, NORM_EPS, NormShape, RowsShape, batch_norm_eval_forward,
    cross_entropy_backward, cross_entropy_forward, dropout_backward, dropout_forward, relu_backward, relu_forward,
};
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

/// One entry of the parameter table: a named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// PyTorch's `state_dict` name (`0.weight`, `2.bias`, `weight`, ...).
    pub name: String,
    /// PyTorch's shape (Linear weights `[out, in]`).
    pub shape: Vec<usize>,
    /// Start in the flat buffer.
    pub offset: usize,
    /// Element count.
    pub len: usize,
}

impl ParamEntry {
    /// The entry's range in the flat buffer.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// How a parameter is initialised.
#[derive(Clone, Copy)]
enum Init {
    /// PyTorch's `nn.Linear` default for weight and bias alike:
    /// U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5 gives exactly this bound).
    Uniform { fan_in: usize },
    /// A constant (BatchNorm gamma 1, beta 0).
    Const(f64),
}

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

/// Cuts the next `n` elements off the front of `buf`.
fn take<'a, T>(buf: &mut &'a [T], n: usize) -> &'a [T] {
    let (head, tail) = buf.split_at(n);
    *buf = tail;
    head
}

/// Cuts the next `n` elements off the front of `buf` (mutable).
fn take_mut<'a, T>(buf: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let (head, tail) = core::mem::take(buf).split_at_mut(n);
    *buf = tail;
    head
}

/// A linear or MLP classifier: architecture, parameter table, the flat
/// parameter buffer and (MLP) the BatchNorm running statistics.
///
/// The running statistics are *buffers*, not parameters (as in PyTorch): they
/// live outside the flat buffer so the optimiser never touches them.
#[derive(Clone, Debug)]
pub struct Classifier<T> {
    spec: ClassifierSpec,
    table: Vec<ParamEntry>,
    params: Vec<T>,
    running_mean: Vec<T>,
    running_var: Vec<T>,
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
        let layout: Vec<(&str, Vec<usize>, Init)> = match spec.kind {
            ClassifierKind::Linear => vec![
                ("weight", vec![c, d], Init::Uniform { fan_in: d }),
                ("bias", vec![c], Init::Uniform { fan_in: d }),
            ],
            // nn.Sequential numbering: Linear 0, Dropout 1, BatchNorm1d 2, ReLU 3, Linear 4.
            ClassifierKind::Mlp => vec![
                ("0.weight", vec![h, d], Init::Uniform { fan_in: d }),
                ("0.bias", vec![h], Init::Uniform { fan_in: d }),
                ("2.weight", vec![h], Init::Const(1.0)),
                ("2.bias", vec![h], Init::Const(0.0)),
                ("4.weight", vec![c, h], Init::Uniform { fan_in: h }),
                ("4.bias", vec![c], Init::Uniform { fan_in: h }),
            ],
        };
        let mut table = Vec::with_capacity(layout.len());
        let mut offset = 0usize;
        for (name, shape, _) in &layout {
            let len = checked_product("classifier parameter", shape)?;
            table.push(ParamEntry { name: (*name).to_string(), shape: shape.clone(), offset, len });
            offset = offset.checked_add(len).ok_or(Error::Overflow { what: "classifier parameters" })?;
        }
        let mut params = vec![T::ZERO; offset];
        let mut rng = Rng::derive(seed, STREAM_INIT);
        for (entry, (_, _, init)) in table.iter().zip(&layout) {
            let dst = &mut params[entry.range()];
            match *init {
                Init::Uniform { fan_in } => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    for p in dst {
                        *p = T::from_f64((2.0 * rng.uniform() - 1.0) * bound);
                    }
                }
                Init::Const(v) => dst.fill(T::from_f64(v)),
            }
        }
        let stats = if spec.kind == ClassifierKind::Mlp { h } else { 0 };
        Ok(Self { spec, table, params, running_mean: vec![T::ZERO; stats], running_var: vec![T::ONE; stats] })
    }

    /// The architecture.
    pub fn spec(&self) -> &ClassifierSpec {
        &self.spec
    }

    /// The parameter table, in buffer order.
    pub fn table(&self) -> &[ParamEntry] {
        &self.table
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
        self.table.iter().find(|e| e.name == name).map(|e| &self.params[e.range()])
    }

    /// BatchNorm running mean (`2.running_mean`; empty for the linear classifier).
    pub fn running_mean(&self) -> &[T] {
        &self.running_mean
    }

    /// BatchNorm running variance (`2.running_var`; empty for the linear classifier).
    pub fn running_var(&self) -> &[T] {
        &self.running_var
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
        let (d, c, h) = (self.spec.in_features, self.spec.classes, self.spec.hidden);
        let rs = RowsShape::new(rows, c);
        match self.spec.kind {
            ClassifierKind::Linear => {
                let mut p = &self.params[..];
                let (w, b) = (take(&mut p, c * d), take(&mut p, c));
                let s = LinearShape::new(rows, d, c);
                let logits = sized(&mut ws.logits, rows * c);
                linear_forward_par(&s, x, w, Some(b), logits)?;
                let loss = cross_entropy_forward(&rs, logits, labels)?;
                let dlogits = sized(&mut ws.dlogits, rows * c);
                cross_entropy_backward(&rs, &ws.logits, labels, T::ONE, dlogits)?;
                let mut g = &mut grads[..];
                let (dw, db) = (take_mut(&mut g, c * d), take_mut(&mut g, c));
                linear_backward_par(&s, x, w, dlogits, None, dw, Some(db))?;
                Ok(loss)
            }
            ClassifierKind::Mlp => {
                if rows < 2 {
                    return Err(Error::InvalidShape {
                        what: "mlp classifier (train)",
                        reason: "BatchNorm needs at least 2 rows",
                    });
                }
                let mut p = &self.params[..];
                let (w0, b0) = (take(&mut p, h * d), take(&mut p, h));
                let (gamma, beta) = (take(&mut p, h), take(&mut p, h));
                let (w4, b4) = (take(&mut p, c * h), take(&mut p, c));
                let s0 = LinearShape::new(rows, d, h);
                let s4 = LinearShape::new(rows, h, c);
                let ns = NormShape::new(rows, h, 1);
                let n = rows * h;
                // Linear 0.
                let h1 = sized(&mut ws.h1, n);
                linear_forward_par(&s0, x, w0, Some(b0), h1)?;
                // Dropout 1.
                let h1 = &ws.h1[..n];
                let mask = sized(&mut ws.mask, n);
                let h2 = sized(&mut ws.h2, n);
                dropout_par(self.spec.dropout, dropout_seed, h, h1, h2, mask)?;
                // BatchNorm 2 (batch statistics), then ReLU 3 in place.
                let h3 = sized(&mut ws.h3, n);
                let sm = sized(&mut ws.save_mean, h);
                let si = sized(&mut ws.save_invstd, h);
                batch_norm_train_forward_par(
                    &ns,
                    &BatchNormConfig::default(),
                    &ws.h2[..n],
                    gamma,
                    beta,
                    &mut self.running_mean,
                    &mut self.running_var,
                    h3,
                    sm,
                    si,
                )?;
                // Out of place: `relu_inplace`'s conditional store does not
                // vectorise and mispredicts on BN output (half negative).
                let h4 = sized(&mut ws.h4, n);
                h4.par_chunks_mut(ROW_CHUNK * h)
                    .zip(ws.h3[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|(y, xs)| relu_forward(xs, y))?;
                // Linear 4 and the loss.
                let h3 = &ws.h4[..n];
                let logits = sized(&mut ws.logits, rows * c);
                linear_forward_par(&s4, h3, w4, Some(b4), logits)?;
                let loss = cross_entropy_forward(&rs, logits, labels)?;
                let dlogits = sized(&mut ws.dlogits, rows * c);
                cross_entropy_backward(&rs, &ws.logits, labels, T::ONE, dlogits)?;
                // Backward, last layer first.
                let mut g = &mut grads[..];
                let (dw0, db0) = (take_mut(&mut g, h * d), take_mut(&mut g, h));
                let (dgamma, dbeta) = (take_mut(&mut g, h), take_mut(&mut g, h));
                let (dw4, db4) = (take_mut(&mut g, c * h), take_mut(&mut g, c));
                let ga = sized(&mut ws.ga, n);
                linear_backward_par(&s4, h3, w4, &ws.dlogits[..rows * c], Some(ga), dw4, Some(db4))?;
                let gb = sized(&mut ws.gb, n);
                relu_backward_par(h, h3, &ws.ga[..n], gb)?;
                let ga = &mut ws.ga[..n];
                batch_norm_train_backward_par(
                    &ns,
                    &ws.h2[..n],
                    gb,
                    gamma,
                    &ws.save_mean[..h],
                    &ws.save_invstd[..h],
                    ga,
                    dgamma,
                    dbeta,
                )?;
                let gb = &mut ws.gb[..n];
                gb.par_chunks_mut(ROW_CHUNK * h)
                    .zip(ws.mask[..n].par_chunks(ROW_CHUNK * h))
                    .zip(ws.ga[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|((dx, m), dy)| dropout_backward(m, dy, dx))?;
                linear_backward_par(&s0, x, w0, gb, None, dw0, Some(db0))?;
                Ok(loss)
            }
        }
    }

    /// Eval mode: logits of `rows` rows of `x` into `ws` (read them with
    /// [`Workspace::logits`]). Dropout is the identity and BatchNorm uses the
    /// running statistics, like `model.eval()` in PyTorch.
    pub fn eval_logits(&self, x: &[T], rows: usize, ws: &mut Workspace<T>) -> Result<()> {
        self.rows_of(x, rows)?;
        let (d, c, h) = (self.spec.in_features, self.spec.classes, self.spec.hidden);
        match self.spec.kind {
            ClassifierKind::Linear => {
                let mut p = &self.params[..];
                let (w, b) = (take(&mut p, c * d), take(&mut p, c));
                linear_forward_par(&LinearShape::new(rows, d, c), x, w, Some(b), sized(&mut ws.logits, rows * c))
            }
            ClassifierKind::Mlp => {
                let mut p = &self.params[..];
                let (w0, b0) = (take(&mut p, h * d), take(&mut p, h));
                let (gamma, beta) = (take(&mut p, h), take(&mut p, h));
                let (w4, b4) = (take(&mut p, c * h), take(&mut p, c));
                let n = rows * h;
                linear_forward_par(&LinearShape::new(rows, d, h), x, w0, Some(b0), sized(&mut ws.h1, n))?;
                let h2 = sized(&mut ws.h2, n);
                let h3 = sized(&mut ws.h3, n);
                let (rm, rv) = (&self.running_mean[..], &self.running_var[..]);
                h2.par_chunks_mut(ROW_CHUNK * h)
                    .zip(h3.par_chunks_mut(ROW_CHUNK * h))
                    .zip(ws.h1[..n].par_chunks(ROW_CHUNK * h))
                    .try_for_each(|((y, bn), xs)| {
                        let ns = NormShape::new(xs.len() / h, h, 1);
                        batch_norm_eval_forward(&ns, NORM_EPS, xs, gamma, beta, rm, rv, bn)?;
                        relu_forward(bn, y)
                    })?;
                let logits = sized(&mut ws.logits, rows * c);
                linear_forward_par(&LinearShape::new(rows, h, c), &ws.h2[..n], w4, Some(b4), logits)
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
