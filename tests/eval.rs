//! The frozen-feature classifiers (`infomax::eval`): parameter layout, a
//! naive f64 reference of the forward pass, finite differences of the whole
//! loss, known-answer synthetic problems, standardisation, determinism and
//! typed errors.

mod common;

use std::time::Instant;

use common::Rng;
use infomax::Error;
use infomax::eval::{
    Classifier, ClassifierKind, ClassifierSpec, EvalConfig, EvalData, FewLabelConfig, KnnConfig, Workspace, accuracy,
    classifier_seed, draw_rows, evaluate_features, few_label_probes, knn_accuracy, standardize, train_classifier,
};
use infomax::kernels::act::uniform_at;

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn normal(rng: &mut Rng) -> f64 {
    // Box–Muller from two uniforms in [-1, 1).
    let u1 = 1.0 - (rng.uniform() + 1.0) / 2.0; // (0, 1]
    let u2 = (rng.uniform() + 1.0) / 2.0;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn mlp_spec(d: usize, c: usize, hidden: usize, dropout: f64) -> ClassifierSpec {
    ClassifierSpec { kind: ClassifierKind::Mlp, in_features: d, classes: c, hidden, dropout }
}

fn linear_spec(d: usize, c: usize) -> ClassifierSpec {
    ClassifierSpec::new(ClassifierKind::Linear, d, c)
}

// ----------------------------------------------------------------------------- layout and init

#[test]
fn parameter_tables_follow_pytorch_names_and_shapes() {
    let m = Classifier::<f32>::new(ClassifierSpec::new(ClassifierKind::Mlp, 64, 10), 1).unwrap();
    let t: Vec<(&str, Vec<usize>, usize, usize)> =
        m.table().iter().map(|e| (e.name.as_str(), e.shape.clone(), e.offset, e.len)).collect();
    let (h, d, c) = (200, 64, 10);
    assert_eq!(
        t,
        vec![
            ("0.weight", vec![h, d], 0, h * d),
            ("0.bias", vec![h], h * d, h),
            ("2.weight", vec![h], h * d + h, h),
            ("2.bias", vec![h], h * d + 2 * h, h),
            ("4.weight", vec![c, h], h * d + 3 * h, c * h),
            ("4.bias", vec![c], h * d + 3 * h + c * h, c),
        ]
    );
    assert_eq!(m.params().len(), h * d + 3 * h + c * h + c);
    let l = Classifier::<f32>::new(linear_spec(64, 10), 1).unwrap();
    let t: Vec<(&str, Vec<usize>, usize)> =
        l.table().iter().map(|e| (e.name.as_str(), e.shape.clone(), e.offset)).collect();
    assert_eq!(t, vec![("weight", vec![10, 64], 0), ("bias", vec![10], 640)]);
    assert!(l.running_mean().is_empty() && l.running_var().is_empty());
}

#[test]
fn init_is_pytorch_default_and_seeded() {
    let m = Classifier::<f32>::new(ClassifierSpec::new(ClassifierKind::Mlp, 64, 10), 5).unwrap();
    let b0 = 1.0 / 64f32.sqrt();
    let b4 = 1.0 / 200f32.sqrt();
    for (name, bound) in [("0.weight", b0), ("0.bias", b0), ("4.weight", b4), ("4.bias", b4)] {
        let p = m.param(name).unwrap();
        assert!(p.iter().all(|v| v.abs() <= bound), "{name} outside ±{bound}");
        // Roughly uniform: the spread reaches most of the bound, the mean is near 0.
        let max = p.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(max > 0.8 * bound, "{name}: max |v| {max} vs bound {bound}");
        if p.len() > 1000 {
            let mean = p.iter().sum::<f32>() / p.len() as f32;
            assert!(mean.abs() < 0.05 * bound, "{name}: mean {mean}");
        }
    }
    assert!(m.param("2.weight").unwrap().iter().all(|&v| v == 1.0));
    assert!(m.param("2.bias").unwrap().iter().all(|&v| v == 0.0));
    assert!(m.running_mean().iter().all(|&v| v == 0.0));
    assert!(m.running_var().iter().all(|&v| v == 1.0));
    let same = Classifier::<f32>::new(ClassifierSpec::new(ClassifierKind::Mlp, 64, 10), 5).unwrap();
    let other = Classifier::<f32>::new(ClassifierSpec::new(ClassifierKind::Mlp, 64, 10), 6).unwrap();
    assert_eq!(m.params(), same.params());
    assert_ne!(m.params(), other.params());
    // f64 holds the same draws.
    let m64 = Classifier::<f64>::new(ClassifierSpec::new(ClassifierKind::Mlp, 64, 10), 5).unwrap();
    assert!(m.params().iter().zip(m64.params()).all(|(&a, &b)| a == b as f32));
}

// ----------------------------------------------------------------------------- naive reference

/// Direct loops in f64: y = x·Wᵀ + b for `[n, i]` → `[n, o]`.
fn naive_linear(x: &[f64], w: &[f64], b: &[f64], n: usize, i: usize, o: usize) -> Vec<f64> {
    let mut y = vec![0.0; n * o];
    for r in 0..n {
        for k in 0..o {
            y[r * o + k] = b[k] + (0..i).map(|j| x[r * i + j] * w[k * i + j]).sum::<f64>();
        }
    }
    y
}

fn naive_ce(logits: &[f64], labels: &[usize], c: usize) -> f64 {
    let n = labels.len();
    (0..n)
        .map(|r| {
            let row = &logits[r * c..(r + 1) * c];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln() - row[labels[r]]
        })
        .sum::<f64>()
        / n as f64
}

/// PyTorch's `nn.Sequential(Linear, Dropout, BatchNorm1d, ReLU, Linear)` in
/// train mode, written out: returns the loss and the updated running stats.
fn naive_mlp_train(m: &Classifier<f64>, x: &[f64], labels: &[usize], seed: u64) -> (f64, Vec<f64>, Vec<f64>) {
    let s = m.spec();
    let (n, d, h, c) = (labels.len(), s.in_features, s.hidden, s.classes);
    let p = |name| m.param(name).unwrap();
    let h1 = naive_linear(x, p("0.weight"), p("0.bias"), n, d, h);
    let keep = 1.0 / (1.0 - s.dropout);
    let h2: Vec<f64> = h1
        .iter()
        .enumerate()
        .map(|(i, &v)| if uniform_at(seed, i as u64) < s.dropout { 0.0 } else { v * keep })
        .collect();
    let (mut h3, mut rm, mut rv) = (vec![0.0; n * h], vec![0.0; h], vec![0.0; h]);
    for k in 0..h {
        let col: Vec<f64> = (0..n).map(|r| h2[r * h + k]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        for r in 0..n {
            let y = p("2.weight")[k] * (col[r] - mean) / (var + 1e-5).sqrt() + p("2.bias")[k];
            h3[r * h + k] = y.max(0.0);
        }
        rm[k] = 0.9 * m.running_mean()[k] + 0.1 * mean;
        rv[k] = 0.9 * m.running_var()[k] + 0.1 * var * n as f64 / (n - 1) as f64;
    }
    let logits = naive_linear(&h3, p("4.weight"), p("4.bias"), n, h, c);
    (naive_ce(&logits, labels, c), rm, rv)
}

/// Eval mode: running statistics, no dropout.
fn naive_mlp_eval(m: &Classifier<f64>, x: &[f64], n: usize) -> Vec<f64> {
    let s = m.spec();
    let (d, h, c) = (s.in_features, s.hidden, s.classes);
    let p = |name| m.param(name).unwrap();
    let mut a = naive_linear(x, p("0.weight"), p("0.bias"), n, d, h);
    for r in 0..n {
        for k in 0..h {
            let v = &mut a[r * h + k];
            let y = p("2.weight")[k] * (*v - m.running_mean()[k]) / (m.running_var()[k] + 1e-5).sqrt() + p("2.bias")[k];
            *v = y.max(0.0);
        }
    }
    naive_linear(&a, p("4.weight"), p("4.bias"), n, h, c)
}

fn labels(rng: &mut Rng, n: usize, c: usize) -> Vec<usize> {
    (0..n).map(|_| rng.below(c)).collect()
}

#[test]
fn mlp_forward_matches_naive_pytorch_semantics() {
    let (n, d, h, c) = (70, 9, 13, 5); // 70 rows: more than one 64-row chunk
    let mut rng = Rng(11);
    let mut m = Classifier::<f64>::new(mlp_spec(d, c, h, 0.3), 3).unwrap();
    // Perturb gamma/beta and the running stats away from their defaults.
    let g = m.table()[2].range();
    for v in &mut m.params_mut()[g.start..g.end + h] {
        *v += 0.3 * rng.uniform();
    }
    let x = rng.vec(n * d);
    let y = labels(&mut rng, n, c);
    let mut ws = Workspace::new();
    for step in 0..3u64 {
        let seed = 1000 + step;
        let (want, rm, rv) = naive_mlp_train(&m, &x, &y, seed);
        let mut g = vec![0.0; m.params().len()];
        let got = m.loss_and_grad(&x, &y, seed, &mut g, &mut ws).unwrap();
        assert!((got - want).abs() < 1e-12, "loss {got} vs {want}");
        common::assert_close("running mean", m.running_mean(), &rm, 1e-12);
        common::assert_close("running var", m.running_var(), &rv, 1e-12);
    }
    m.eval_logits(&x, n, &mut ws).unwrap();
    common::assert_close("eval logits", &ws.logits()[..n * c], &naive_mlp_eval(&m, &x, n), 1e-12);
}

#[test]
fn linear_forward_matches_naive() {
    let (n, d, c) = (33, 7, 4);
    let mut rng = Rng(12);
    let mut m = Classifier::<f64>::new(linear_spec(d, c), 9).unwrap();
    let x = rng.vec(n * d);
    let y = labels(&mut rng, n, c);
    let logits = naive_linear(&x, m.param("weight").unwrap(), m.param("bias").unwrap(), n, d, c);
    let mut ws = Workspace::new();
    let mut g = vec![0.0; m.params().len()];
    let got = m.loss_and_grad(&x, &y, 0, &mut g, &mut ws).unwrap();
    assert!((got - naive_ce(&logits, &y, c)).abs() < 1e-12);
    m.eval_logits(&x, n, &mut ws).unwrap();
    common::assert_close("linear eval logits", &ws.logits()[..n * c], &logits, 1e-12);
}

// ----------------------------------------------------------------------------- finite differences

const H: f64 = 1e-6;
const FD_RTOL: f64 = 1e-5;
/// Absolute floor: central differences of an O(1) loss in f64 carry about
/// ε·L/h ≈ 1e-10 of rounding noise.
const FD_ATOL: f64 = 1e-8;

/// Checks the analytic gradient of the whole training loss against central
/// differences for a sample of coordinates of every parameter tensor.
fn check_loss_gradient(mut m: Classifier<f64>, x: &[f64], y: &[usize], seed: u64, per_tensor: usize) {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut ws = Workspace::new();
    let mut grad = vec![0.0; m.params().len()];
    m.loss_and_grad(x, y, seed, &mut grad, &mut ws).unwrap();
    let table = m.table().to_vec();
    let mut scratch = vec![0.0; m.params().len()];
    let mut loss_at = |m: &mut Classifier<f64>, i: usize, v: f64| {
        let orig = m.params()[i];
        m.params_mut()[i] = v;
        let l = m.loss_and_grad(x, y, seed, &mut scratch, &mut ws).unwrap();
        m.params_mut()[i] = orig;
        l
    };
    let mut checked = 0;
    for e in &table {
        for k in common::coords(e.len, per_tensor, &mut rng) {
            let i = e.offset + k;
            let p = m.params()[i];
            let fd = (loss_at(&mut m, i, p + H) - loss_at(&mut m, i, p - H)) / (2.0 * H);
            let an = grad[i];
            let tol = FD_RTOL * fd.abs().max(an.abs()) + FD_ATOL;
            assert!((fd - an).abs() <= tol, "{}[{k}]: analytic {an:e} vs numeric {fd:e}", e.name);
            checked += 1;
        }
    }
    assert!(checked >= table.len());
}

#[test]
fn mlp_loss_gradient_matches_finite_differences() {
    // Dropout at a fixed seed and BatchNorm in train mode, as in training.
    for (seed, n, d, h, c, p) in [(1u64, 8, 5, 7, 4, 0.1), (2, 70, 6, 11, 3, 0.5), (3, 2, 3, 4, 2, 0.0)] {
        let mut rng = Rng(seed);
        let mut m = Classifier::<f64>::new(mlp_spec(d, c, h, p), seed).unwrap();
        // Non-trivial gamma/beta so their gradients are not a special case.
        let r = m.table()[2].offset..m.table()[3].offset + h;
        for v in &mut m.params_mut()[r] {
            *v += 0.5 * rng.uniform();
        }
        let x: Vec<f64> = rng.vec(n * d).iter().map(|v| 2.0 * v).collect();
        let y = labels(&mut rng, n, c);
        check_loss_gradient(m, &x, &y, 77 + seed, 25);
    }
}

#[test]
fn linear_loss_gradient_matches_finite_differences() {
    for (seed, n, d, c) in [(4u64, 1, 3, 2), (5, 9, 12, 10), (6, 100, 5, 7)] {
        let mut rng = Rng(seed);
        let m = Classifier::<f64>::new(linear_spec(d, c), seed).unwrap();
        let x = rng.vec(n * d);
        let y = labels(&mut rng, n, c);
        check_loss_gradient(m, &x, &y, seed, 40);
    }
}

#[test]
fn gradients_accumulate() {
    let mut rng = Rng(8);
    let mut m = Classifier::<f64>::new(mlp_spec(4, 3, 5, 0.2), 1).unwrap();
    let x = rng.vec(6 * 4);
    let y = labels(&mut rng, 6, 3);
    let mut ws = Workspace::new();
    let mut g1 = vec![0.0; m.params().len()];
    m.loss_and_grad(&x, &y, 9, &mut g1, &mut ws).unwrap();
    let mut g2 = g1.clone();
    m.loss_and_grad(&x, &y, 9, &mut g2, &mut ws).unwrap();
    for (a, b) in g1.iter().zip(&g2) {
        assert!((2.0 * a - b).abs() <= 1e-12 * a.abs().max(1.0));
    }
}

// ----------------------------------------------------------------------------- synthetic problems

/// Train/test features and labels.
struct Split {
    xtr: Vec<f32>,
    ytr: Vec<usize>,
    xte: Vec<f32>,
    yte: Vec<usize>,
}

fn make(n_train: usize, n_test: usize, seed: u64, mut sample: impl FnMut(&mut Rng) -> (Vec<f32>, usize)) -> Split {
    let mut rng = Rng(seed);
    let mut draw = |n| {
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..n {
            let (f, l) = sample(&mut rng);
            x.extend(f);
            y.push(l);
        }
        (x, y)
    };
    let (xtr, ytr) = draw(n_train);
    let (xte, yte) = draw(n_test);
    Split { xtr, ytr, xte, yte }
}

/// 10 Gaussian blobs in `d` dimensions: unit noise around centres ~N(0, 2²)
/// per coordinate (centres ≈ 2·√(2d) apart: separable).
fn blobs(n_train: usize, n_test: usize, d: usize, seed: u64) -> Split {
    let mut rng = Rng(seed ^ 0xB10B);
    let centres: Vec<Vec<f64>> = (0..10).map(|_| (0..d).map(|_| 2.0 * normal(&mut rng)).collect()).collect();
    make(n_train, n_test, seed, |r| {
        let l = r.below(10);
        // Arbitrary offset and scale: standardisation must cope with them.
        (centres[l].iter().map(|&c| (100.0 + 5.0 * (c + normal(r))) as f32).collect(), l)
    })
}

/// Two concentric rings in the plane (radius 0–1 vs 1.5–2.5, balanced) plus
/// `noise` irrelevant Gaussian dimensions: no hyperplane does better than
/// about chance, a small MLP separates them.
fn rings(n_train: usize, n_test: usize, noise: usize, seed: u64) -> Split {
    make(n_train, n_test, seed, |r| {
        let l = r.below(2);
        let radius = if l == 0 { (r.uniform() + 1.0) / 2.0 } else { 2.0 + 0.5 * r.uniform() };
        let a = std::f64::consts::PI * r.uniform();
        let mut f = vec![(radius * a.cos()) as f32, (radius * a.sin()) as f32];
        f.extend((0..noise).map(|_| normal(r) as f32));
        (f, l)
    })
}

/// XOR of the signs of two coordinates, with a margin around the axes.
fn xor(n_train: usize, n_test: usize, seed: u64) -> Split {
    make(n_train, n_test, seed, |r| {
        let (a, b) = (r.uniform(), r.uniform());
        let shift = |v: f64| if v < 0.0 { v - 0.1 } else { v + 0.1 };
        (vec![shift(a) as f32, shift(b) as f32], usize::from((a < 0.0) != (b < 0.0)))
    })
}

fn run(
    s: &Split,
    d: usize,
    classes: usize,
    cfg: &EvalConfig,
) -> (infomax::eval::ClassifierResult, infomax::eval::ClassifierResult) {
    evaluate_features(&s.xtr, &s.xte, d, &s.ytr, &s.yte, classes, 0, cfg).unwrap()
}

#[test]
fn gaussian_blobs_10000x64_are_linearly_separable() {
    let s = blobs(10_000, 2_000, 64, 1);
    let t0 = Instant::now();
    let (lin, mlp) = run(&s, 64, 10, &EvalConfig::default());
    eprintln!(
        "blobs 10000x64, 30 epochs: linear acc {:.4} ({:.2}s), mlp acc {:.4} ({:.2}s), total {:.2}s",
        lin.acc,
        lin.wall_s,
        mlp.acc,
        mlp.wall_s,
        t0.elapsed().as_secs_f64()
    );
    assert!(lin.acc >= 0.95, "linear {lin:?}");
    assert!(mlp.acc >= 0.95, "mlp {mlp:?}");
    for r in [&lin, &mlp] {
        assert_eq!(r.curve.len(), 30);
        assert_eq!(r.acc, r.curve[29]);
        assert!((r.acc_last5 - r.curve[25..].iter().sum::<f64>() / 5.0).abs() < 1e-15);
        assert_eq!(r.steps, 30 * 40); // 10000 / 256 → 39 full batches + one of 16
        assert!(r.train_loss.is_finite() && r.train_loss < 0.3, "train loss {}", r.train_loss);
    }
}

#[test]
fn rings_need_the_mlp() {
    let s = rings(4_000, 1_000, 2, 2);
    let (lin, mlp) = run(&s, 4, 2, &EvalConfig::default());
    eprintln!("rings: linear {:.4}, mlp {:.4}", lin.acc, mlp.acc);
    assert!(lin.acc <= 0.65, "linear should be near chance: {lin:?}");
    assert!(mlp.acc >= 0.90, "mlp {mlp:?}");
}

#[test]
fn xor_needs_the_mlp() {
    let s = xor(4_000, 1_000, 3);
    let (lin, mlp) = run(&s, 2, 2, &EvalConfig::default());
    eprintln!("xor: linear {:.4}, mlp {:.4}", lin.acc, mlp.acc);
    assert!(lin.acc <= 0.65, "linear should be near chance: {lin:?}");
    assert!(mlp.acc >= 0.90, "mlp {mlp:?}");
}

#[test]
fn last_partial_batch_is_kept_but_a_single_row_is_skipped() {
    let cfg = EvalConfig { epochs: 2, ..EvalConfig::default() };
    for (n, per_epoch) in [(257, 1), (258, 2), (512, 2), (513, 2), (514, 3), (2, 1)] {
        let s = blobs(n, 10, 3, 4);
        let data = EvalData::new(&s.xtr, &s.ytr, &s.xte, &s.yte, 3, 10).unwrap();
        for kind in ClassifierKind::ALL {
            let (_, r) = train_classifier(kind, &data, &cfg, 1).unwrap();
            assert_eq!(r.steps, 2 * per_epoch, "n = {n}, {kind:?}");
        }
    }
}

#[test]
fn accuracy_is_argmax_and_independent_of_eval_batch() {
    // A linear classifier that predicts the arg-max feature.
    let (d, n) = (4, 103);
    let mut m = Classifier::<f32>::new(linear_spec(d, d), 0).unwrap();
    let p = m.params_mut();
    p.fill(0.0);
    for k in 0..d {
        p[k * d + k] = 1.0;
    }
    let mut rng = Rng(5);
    let x = rng.vec_f32(n * d);
    let truth: Vec<usize> =
        x.chunks(d).map(|r| r.iter().enumerate().fold(0, |b, (j, &v)| if v > r[b] { j } else { b })).collect();
    // Every third label wrong.
    let y: Vec<usize> = truth.iter().enumerate().map(|(i, &t)| if i % 3 == 0 { (t + 1) % d } else { t }).collect();
    let want = y.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / n as f64;
    let mut ws = Workspace::new();
    for batch in [1, 7, 64, 2000] {
        assert_eq!(accuracy(&m, &x, &y, batch, &mut ws).unwrap(), want);
    }
}

// ----------------------------------------------------------------------------- standardisation

#[test]
fn standardize_known_values() {
    // Columns: mean 3 / std 2; constant 5 (std 0 → 1); mean 5 / std √13.
    let mut tr = vec![1.0, 5.0, 2.0, 3.0, 5.0, 4.0, 5.0, 5.0, 9.0];
    let mut te = vec![7.0, 6.0, 2.0];
    standardize(&mut tr, &mut te, 3).unwrap();
    let s13 = 13f32.sqrt();
    let want_tr = [-1.0, 0.0, -3.0 / s13, 0.0, 0.0, -1.0 / s13, 1.0, 0.0, 4.0 / s13];
    let want_te = [2.0, 1.0, -3.0 / s13];
    for (a, b) in tr.iter().zip(&want_tr).chain(te.iter().zip(&want_te)) {
        assert!((a - b).abs() < 1e-6, "{tr:?} {te:?}");
    }
}

#[test]
fn standardize_gives_mean_zero_std_one() {
    let (n, d) = (500, 130); // more than two column blocks
    let mut rng = Rng(6);
    let mut tr: Vec<f32> = (0..n * d).map(|i| (1000.0 + (1 + i % d) as f64 * 3.0 * rng.uniform()) as f32).collect();
    for r in 0..n {
        tr[r * d + 7] = 42.0; // a constant feature
        tr[r * d + 8] = 42.0 + if r == 0 { 1e-7 } else { 0.0 }; // std far below 1e-6
    }
    let mut te = tr[..10 * d].to_vec();
    let te_before = te.clone();
    standardize(&mut tr, &mut te, d).unwrap();
    for j in 0..d {
        let col: Vec<f64> = (0..n).map(|r| f64::from(tr[r * d + j])).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let std = (col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
        assert!(mean.abs() < 1e-4, "column {j}: mean {mean}");
        if j == 7 || j == 8 {
            // Only centred (std replaced by 1).
            assert!(std < 1e-5, "column {j}: std {std}");
        } else {
            assert!((std - 1.0).abs() < 1e-4, "column {j}: std {std}");
        }
    }
    // The test rows got the train statistics: they were train rows 0..10.
    assert_eq!(&te[..], &tr[..10 * d]);
    assert_ne!(te, te_before);
    // Empty test set is fine.
    standardize(&mut tr, &mut [], d).unwrap();
}

#[test]
fn standardize_rejects_bad_shapes() {
    assert_eq!(standardize(&mut [1.0; 4], &mut [], 0), Err(Error::ZeroSize { what: "standardize dim" }));
    assert!(matches!(standardize(&mut [1.0; 5], &mut [], 2), Err(Error::InvalidShape { .. })));
    assert!(matches!(standardize(&mut [1.0; 4], &mut [1.0; 3], 2), Err(Error::InvalidShape { .. })));
    assert!(matches!(standardize(&mut [1.0; 2], &mut [], 2), Err(Error::InvalidShape { .. })));
}

// ----------------------------------------------------------------------------- determinism

fn train_small(kind: ClassifierKind, seed: u64) -> (Vec<u32>, Vec<u32>, infomax::eval::ClassifierResult) {
    let s = blobs(1_500, 300, 70, 7);
    let mut tr = s.xtr.clone();
    let mut te = s.xte.clone();
    standardize(&mut tr, &mut te, 70).unwrap();
    let data = EvalData::new(&tr, &s.ytr, &te, &s.yte, 70, 10).unwrap();
    let cfg = EvalConfig { epochs: 3, batch: 100, ..EvalConfig::default() };
    let (m, mut r) = train_classifier(kind, &data, &cfg, seed).unwrap();
    r.wall_s = 0.0;
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let stats = [m.running_mean(), m.running_var()].concat();
    (bits(m.params()), bits(&stats), r)
}

#[test]
fn same_seed_same_bits_for_1_and_2_threads() {
    for kind in ClassifierKind::ALL {
        let a = in_pool(1, || train_small(kind, 3));
        let b = in_pool(1, || train_small(kind, 3));
        let c = in_pool(2, || train_small(kind, 3));
        assert_eq!(a, b, "{kind:?}: rerun differs");
        assert_eq!(a, c, "{kind:?}: 1 vs 2 threads differ");
        let d = in_pool(2, || train_small(kind, 4));
        assert_ne!(a.0, d.0, "{kind:?}: another seed should give other weights");
    }
}

#[test]
fn seeds_follow_the_reference() {
    assert_eq!(classifier_seed(0, 0, ClassifierKind::Linear), 7);
    assert_eq!(classifier_seed(0, 2, ClassifierKind::Mlp), 28);
    assert_eq!(classifier_seed(3, 1, ClassifierKind::Linear), 3017);
    let s = blobs(300, 50, 5, 8);
    let cfg = EvalConfig { epochs: 1, seed: 2, ..EvalConfig::default() };
    let (lin, mlp) = evaluate_features(&s.xtr, &s.xte, 5, &s.ytr, &s.yte, 10, 1, &cfg).unwrap();
    assert_eq!((lin.kind, lin.seed), (ClassifierKind::Linear, 2017));
    assert_eq!((mlp.kind, mlp.seed), (ClassifierKind::Mlp, 2018));
}

// ----------------------------------------------------------------------------- bad input

#[test]
fn bad_input_gives_typed_errors() {
    let cfg = EvalConfig { epochs: 1, ..EvalConfig::default() };
    let x = vec![0.5f32; 12]; // 4 rows × 3
    let y = vec![0usize, 1, 2, 1];
    let ev = |xtr: &[f32], xte: &[f32], d, ytr: &[usize], yte: &[usize], c, cfg: &EvalConfig| {
        evaluate_features(xtr, xte, d, ytr, yte, c, 0, cfg).map(|_| ())
    };
    assert_eq!(
        ev(&x, &x, 3, &[0, 1, 3, 1], &y, 3, &cfg),
        Err(Error::LabelOutOfRange { index: 2, label: 3, classes: 3 })
    );
    assert_eq!(
        ev(&x, &x, 3, &y, &[0, 0, 0, 9], 3, &cfg),
        Err(Error::LabelOutOfRange { index: 3, label: 9, classes: 3 })
    );
    assert!(matches!(ev(&x[..11], &x, 3, &y, &y, 3, &cfg), Err(Error::LengthMismatch { expected: 12, got: 11, .. })));
    assert!(matches!(ev(&x, &x, 3, &y, &y[..3], 3, &cfg), Err(Error::LengthMismatch { expected: 9, got: 12, .. })));
    assert_eq!(ev(&x, &x, 0, &y, &y, 3, &cfg), Err(Error::ZeroSize { what: "eval feature dim" }));
    assert_eq!(ev(&x, &x, 3, &y, &y, 0, &cfg), Err(Error::ZeroSize { what: "eval classes" }));
    assert!(matches!(ev(&x[..3], &x, 3, &y[..1], &y, 3, &cfg), Err(Error::InvalidShape { .. })));
    assert!(matches!(ev(&x, &[], 3, &y, &[], 3, &cfg), Err(Error::ZeroSize { .. })));
    // Invalid protocol settings.
    for bad in [
        EvalConfig { epochs: 0, ..cfg },
        EvalConfig { batch: 1, ..cfg },
        EvalConfig { eval_batch: 0, ..cfg },
        EvalConfig { hidden: 0, ..cfg },
        EvalConfig { dropout: 1.0, ..cfg },
        EvalConfig { dropout: f64::NAN, ..cfg },
        EvalConfig { adam: infomax::optim::AdamConfig::torch_default(-1.0), ..cfg },
    ] {
        assert!(ev(&x, &x, 3, &y, &y, 3, &bad).is_err(), "{bad:?} accepted");
    }
    // The model itself.
    assert!(matches!(Classifier::<f32>::new(linear_spec(0, 3), 0), Err(Error::ZeroSize { .. })));
    assert!(matches!(Classifier::<f32>::new(mlp_spec(3, 3, 4, 1.5), 0), Err(Error::InvalidParameter { .. })));
    let mut m = Classifier::<f32>::new(mlp_spec(3, 3, 4, 0.1), 0).unwrap();
    let mut ws = Workspace::new();
    let mut g = vec![0f32; m.params().len()];
    assert!(matches!(m.loss_and_grad(&x[..3], &[0], 1, &mut g, &mut ws), Err(Error::InvalidShape { .. })));
    assert!(matches!(m.loss_and_grad(&x[..5], &y[..2], 1, &mut g, &mut ws), Err(Error::LengthMismatch { .. })));
    assert!(matches!(m.loss_and_grad(&x, &y, 1, &mut g[1..], &mut ws), Err(Error::LengthMismatch { .. })));
    assert!(matches!(m.loss_and_grad(&x, &[0, 1, 5, 0], 1, &mut g, &mut ws), Err(Error::LabelOutOfRange { .. })));
    assert!(matches!(m.eval_logits(&x, 3, &mut ws), Err(Error::LengthMismatch { .. })));
    assert!(matches!(accuracy(&m, &x, &y, 0, &mut ws), Err(Error::ZeroSize { .. })));
}

// ----------------------------------------------------------------------------- timing

/// One epoch of each classifier on the reference's feature shapes
/// (Fashion-MNIST: 60 000 train, 10 000 test rows; taps y = 64, fc = 1024,
/// conv = 6272). Run with `cargo test --release --test eval -- --ignored
/// --nocapture`; a full evaluation is 30 such epochs per classifier.
#[test]
#[ignore = "timing, several seconds to minutes"]
fn timing_reference_shapes_one_epoch() {
    let cfg = EvalConfig { epochs: 1, ..EvalConfig::default() };
    let (n_train, n_test) = (60_000, 10_000);
    let mut rng = Rng(9);
    let ytr = labels(&mut rng, n_train, 10);
    let yte = labels(&mut rng, n_test, 10);
    for d in [64, 1024, 6272] {
        let xtr = rng.vec_f32(n_train * d);
        let xte = rng.vec_f32(n_test * d);
        let data = EvalData::new(&xtr, &ytr, &xte, &yte, d, 10).unwrap();
        for kind in ClassifierKind::ALL {
            let (_, r) = train_classifier(kind, &data, &cfg, 0).unwrap();
            eprintln!(
                "{n_train}x{d} {:>6}: 1 epoch ({} steps + test eval) {:.2}s, {:.2} ms/step incl. eval",
                kind.name(),
                r.steps,
                r.wall_s,
                1e3 * r.wall_s / r.steps as f64
            );
        }
    }
}

// ----------------------------------------------------------------------------- k-NN probe

/// The k-NN probe written the slow way, in f64: every cosine, a full sort
/// (similarity descending, index ascending), k votes of exp(sim / T), the
/// lowest class among equal votes.
fn naive_knn(train: (&[f32], &[usize]), test: (&[f32], &[usize]), d: usize, c: usize, (k, t): (usize, f64)) -> f64 {
    let ((tr, ytr), (te, yte)) = (train, test);
    let norm = |r: &[f32]| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().sqrt();
    let mut correct = 0;
    for (q, &label) in te.chunks(d).zip(yte) {
        let mut sims: Vec<(f64, usize)> = tr
            .chunks(d)
            .enumerate()
            .map(|(j, r)| {
                let dot: f64 = q.iter().zip(r).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                let n = norm(q) * norm(r);
                (if n > 0.0 { dot / n } else { 0.0 }, j)
            })
            .collect();
        sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut votes = vec![0f64; c];
        for &(s, j) in sims.iter().take(k) {
            votes[ytr[j]] += (s / t).exp();
        }
        let best = (0..c).fold(0, |b, i| if votes[i] > votes[b] { i } else { b });
        correct += usize::from(best == label);
    }
    correct as f64 / yte.len() as f64
}

#[test]
fn knn_matches_a_naive_reference_and_is_thread_independent() {
    let (d, c) = (8, 5);
    let mut rng = Rng(41);
    // Class means on the first coordinates, plus noise below: neither
    // trivial nor hopeless.
    let mut rows = |n: usize| -> (Vec<f32>, Vec<usize>) {
        let y = labels(&mut rng, n, c);
        let x = y.iter().flat_map(|&l| (0..d).map(move |i| if i == l { 1.0 } else { 0.0 })).collect();
        (x, y)
    };
    let (mut tr, ytr) = rows(300);
    let (mut te, yte) = rows(120);
    let mut noise = Rng(7);
    for v in tr.iter_mut().chain(te.iter_mut()) {
        *v += 0.8 * normal(&mut noise) as f32;
    }
    let data = EvalData::new(&tr, &ytr, &te, &yte, d, c).unwrap();
    for k in [1, 5, 20, 400] {
        let cfg = KnnConfig { k, temperature: 0.07 };
        let want = naive_knn((&tr, &ytr), (&te, &yte), d, c, (k, 0.07));
        let got1 = in_pool(1, || knn_accuracy(&data, &cfg).unwrap());
        let got2 = in_pool(2, || knn_accuracy(&data, &cfg).unwrap());
        assert_eq!(got1, want, "k = {k}");
        assert_eq!(got1.to_bits(), got2.to_bits(), "k = {k}: 1 and 2 threads");
        assert!(want > 0.3 && want < 1.0, "k = {k}: {want} (the problem should be neither trivial nor hopeless)");
    }
}

#[test]
fn knn_votes_are_weighted_by_similarity_and_the_train_set_finds_itself() {
    // One neighbour of class 0 at cos 0.99 against two of class 1 at cos
    // 0.6: exp(0.99 / 0.07) = 1.4e6 outweighs 2·exp(0.6 / 0.07) = 1.0e4, so
    // the weighted vote says 0 where a majority would say 1.
    let angle = |c: f64| [c as f32, (1.0 - c * c).sqrt() as f32];
    let tr: Vec<f32> = [angle(0.99), angle(0.6), [0.6, -0.8]].concat();
    let ytr = [0, 1, 1];
    let te = [1.0f32, 0.0];
    let data = EvalData::new(&tr, &ytr, &te, &[0], 2, 2).unwrap();
    assert_eq!(knn_accuracy(&data, &KnnConfig { k: 3, temperature: 0.07 }).unwrap(), 1.0);
    // At a high temperature the votes are nearly equal and the majority wins.
    assert_eq!(knn_accuracy(&data, &KnnConfig { k: 3, temperature: 100.0 }).unwrap(), 0.0);
    // With k = 1 every train row is its own nearest neighbour (cos 1).
    let mut rng = Rng(5);
    let x = rng.vec_f32(50 * 6);
    let y = labels(&mut rng, 50, 4);
    let self_data = EvalData::new(&x, &y, &x, &y, 6, 4).unwrap();
    assert_eq!(knn_accuracy(&self_data, &KnnConfig { k: 1, temperature: 0.07 }).unwrap(), 1.0);
}

#[test]
fn knn_settings_are_checked() {
    let x = [1.0f32, 0.0, 0.0, 1.0];
    let data = EvalData::new(&x, &[0, 1], &x, &[0, 1], 2, 2).unwrap();
    for cfg in [
        KnnConfig { k: 0, temperature: 0.07 },
        KnnConfig { k: 5, temperature: 0.0 },
        KnnConfig { k: 5, temperature: f64::NAN },
        KnnConfig { k: 5, temperature: 1e-3 },
    ] {
        assert!(knn_accuracy(&data, &cfg).is_err(), "{cfg:?}");
        assert!(EvalConfig { knn: cfg, ..EvalConfig::default() }.validate().is_err(), "{cfg:?}");
    }
}

/// Few-label draws: k rows of each class (all of a smaller class), the
/// same for a seed and others for another; on separable features every
/// draw scores 100%, so the mean is 1 and the spread 0; on label noise
/// (labels independent of the features) the mean is near chance.
#[test]
fn few_label_draws_take_k_per_class_and_probes_score_what_the_data_allows() {
    let mut rng = Rng(3);
    let y = labels(&mut rng, 500, 5);
    let rows = draw_rows(&y, 5, 10, 1);
    let mut per = [0usize; 5];
    for &r in &rows {
        per[y[r]] += 1;
    }
    assert_eq!(per, [10; 5]);
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "distinct, in row order");
    assert_eq!(draw_rows(&y, 5, 10, 1), rows);
    assert_ne!(draw_rows(&y, 5, 10, 2), rows);
    let few_of_2: Vec<usize> = draw_rows(&[0, 0, 1], 2, 5, 0);
    assert_eq!(few_of_2, vec![0, 1, 2], "a class smaller than k gives all its rows");

    let d = 5;
    let onehot = |ys: &[usize]| -> Vec<f32> {
        ys.iter().flat_map(|&l| (0..d).map(move |i| if i == l { 3.0 } else { -1.0 })).collect()
    };
    let yte = labels(&mut rng, 200, 5);
    let (tr, te) = (onehot(&y), onehot(&yte));
    let data = EvalData::new(&tr, &y, &te, &yte, d, 5).unwrap();
    let few = FewLabelConfig { per_class: [1, 10], draws: 3, steps: 3000 };
    let cfg = EvalConfig { few, ..EvalConfig::default() };
    let r = few_label_probes(&data, 2, &cfg, &few).unwrap();
    assert_eq!(r.len(), 2);
    for f in &r {
        assert_eq!(f.accs.len(), 3);
        assert!(f.mean == 1.0 && f.std == 0.0, "separable: {f:?}");
        assert_eq!(f.labeled, 5 * f.per_class);
    }
    // Labels independent of the features: chance (20%) within noise.
    let noise = labels(&mut rng, 200, 5);
    let data = EvalData::new(&tr, &y, &te, &noise, d, 5).unwrap();
    let r = few_label_probes(&data, 2, &cfg, &few).unwrap();
    for f in &r {
        assert!((0.08..0.35).contains(&f.mean), "chance: {f:?}");
        let m = f.accs.iter().sum::<f64>() / 3.0;
        let sd = (f.accs.iter().map(|a| (a - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((m - f.mean).abs() < 1e-12 && (sd - f.std).abs() < 1e-12, "mean and sample std: {f:?}");
    }
    assert!(few_label_probes(&data, 2, &cfg, &FewLabelConfig { draws: 0, ..few }).unwrap().is_empty());
}
