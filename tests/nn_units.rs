//! The layer vocabulary (`infomax::nn`): each unit's forward against a
//! naive direct-loop reference, and its backward against central finite
//! differences in f64 (the units are generic over the float type, so the
//! shipped code is what is differentiated). The tensors come from the unit's
//! own `Builder` declaration, so the tests also check names and shapes.

mod common;

use common::{Rng, check_fd, coords, fd_grad_richardson};
use infomax::kernels::{Conv2dShape, InputGrad, NormShape, SavedStats};
use infomax::nn::{Affine, BatchNorm, Builder, Conv2d, Ctx, LayerNorm, Layout, Linear, Mlp, MlpActs, Mode, Registry};
use infomax::params::ParamTable;
use proptest::prelude::*;

/// Tables, with parameters and buffers drawn from `rng` (f64).
struct Setup {
    table: ParamTable,
    buffers: ParamTable,
    p: Vec<f64>,
    b: Vec<f64>,
}

fn setup<U>(rng: &mut Rng, declare: impl FnOnce(&mut Builder<'_>) -> U) -> (Setup, U) {
    let (mut table, mut buffers) = (ParamTable::new(), ParamTable::new());
    let unit = declare(&mut Builder::new(&mut table, &mut buffers));
    let p = rng.vec(table.len());
    // Running variances must stay positive.
    let b = rng.vec(buffers.len()).into_iter().map(|v| v.abs() + 0.5).collect();
    (Setup { table, buffers, p, b }, unit)
}

/// A unit's forward: (parameters, input, buffers) → output.
type Forward<'a> = &'a dyn Fn(&[f64], &[f64], &mut [f64]) -> Vec<f64>;
/// A unit's backward: (parameters, input, buffers, dy) → (parameter gradients, dx).
type Backward<'a> = &'a dyn Fn(&[f64], &[f64], &mut [f64], &[f64]) -> (Vec<f64>, Vec<f64>);

/// The scalar `Σ y·r` and the gradient check of a unit whose backward, fed
/// `dy = r`, fills `grads` and `dx`.
fn check_unit(what: &str, s: &Setup, x: &[f64], rng: &mut Rng, fwd: Forward<'_>, bwd: Backward<'_>) {
    let mut buffers = s.b.clone();
    let y = fwd(&s.p, x, &mut buffers);
    let r = rng.vec(y.len());
    let (grads, dx) = bwd(&s.p, x, &mut s.b.clone(), &r);
    let loss = |p: &[f64], x: &[f64]| {
        let mut b = s.b.clone();
        common::dot(&fwd(p, x, &mut b), &r)
    };
    let pc = coords(s.p.len(), 40, rng);
    check_fd(&format!("{what} parameters"), &grads, &fd_grad_richardson(&s.p, &pc, 1e-5, |p| loss(p, x)), 1e-6);
    let xc = coords(x.len(), 40, rng);
    check_fd(&format!("{what} input"), &dx, &fd_grad_richardson(x, &xc, 1e-5, |xv| loss(&s.p, xv)), 1e-6);
}

#[test]
fn linear_declares_pytorch_tensors_and_matches_reference() {
    let mut rng = Rng(1);
    let (s, l) = setup(&mut rng, |b| b.linear("head.l1", 5, 3, true));
    let names: Vec<_> = s.table.entries().iter().map(|e| (e.name.as_str(), e.shape.clone())).collect();
    assert_eq!(names, [("head.l1.weight", vec![3, 5]), ("head.l1.bias", vec![3])]);
    let x = rng.vec(4 * 5);
    let mut y = vec![0.0; 4 * 3];
    l.forward(&Ctx::forward(&s.p, &mut [], Mode::Train), 4, &x, &mut y).unwrap();
    let want = common::linear_ref(4, 5, 3, &x, &s.p[l.w.range()], Some(&s.p[l.b.unwrap().range()]));
    common::assert_close("linear", &y, &want, 1e-12);
}

proptest! {
    #![proptest_config(common::cfg(24))]

    #[test]
    fn linear_gradients(rows in 1usize..6, fin in 1usize..7, fout in 1usize..6, bias: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (s, l) = setup(&mut rng, |b| b.linear("l", fin, fout, bias));
        let x = rng.vec(rows * fin);
        let fwd = |p: &[f64], x: &[f64], _: &mut [f64]| {
            let mut y = vec![0.0; rows * fout];
            l.forward(&Ctx::forward(p, &mut [], Mode::Train), rows, x, &mut y).unwrap();
            y
        };
        let bwd = |p: &[f64], x: &[f64], _: &mut [f64], dy: &[f64]| {
            let (mut g, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            l.backward(&mut Ctx::backward(p, &mut g), rows, x, dy, Some(InputGrad::Write(&mut dx))).unwrap();
            (g, dx)
        };
        check_unit("linear", &s, &x, &mut rng, &fwd, &bwd);
    }

    #[test]
    fn conv2d_gradients_and_reference(n in 1usize..3, cin in 1usize..4, cout in 1usize..4, hw in 3usize..7,
                                      k in 1usize..4, stride in 1usize..3, pad in 0usize..2, bias: bool, seed: u64) {
        let mut rng = Rng(seed);
        let (s, c) = setup(&mut rng, |b| b.conv2d("c", [cin, hw, hw], cout, [k, stride, pad], bias));
        let shape: Conv2dShape = c.shape(n);
        let d = shape.validate().unwrap();
        let x = rng.vec(n * cin * hw * hw);
        let fwd = |p: &[f64], x: &[f64], _: &mut [f64]| {
            let (mut y, mut cols) = (vec![0.0; d.out_len], vec![0.0; d.batched_col_len]);
            c.forward(&Ctx::forward(p, &mut [], Mode::Train), n, x, &mut y, &mut cols).unwrap();
            y
        };
        let want = common::conv2d_ref(&shape, &x, &s.p[c.w.range()], c.b.map(|b| &s.p[b.range()]));
        common::assert_close("conv2d", &fwd(&s.p, &x, &mut []), &want, 1e-12);
        let bwd = |p: &[f64], x: &[f64], _: &mut [f64], dy: &[f64]| {
            let (mut y, mut cols) = (vec![0.0; d.out_len], vec![0.0; d.batched_col_len]);
            c.forward(&Ctx::forward(p, &mut [], Mode::Train), n, x, &mut y, &mut cols).unwrap();
            let (mut g, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            c.backward(&mut Ctx::backward(p, &mut g), n, x, &mut cols, dy, Some(&mut dx)).unwrap();
            (g, dx)
        };
        check_unit("conv2d", &s, &x, &mut rng, &fwd, &bwd);
    }

    #[test]
    fn batch_norm_gradients_and_reference(n in 2usize..5, c in 1usize..5, sp in 1usize..4, seed: u64) {
        let mut rng = Rng(seed);
        let (s, bn) = setup(&mut rng, |b| b.batch_norm("bn", c));
        let names: Vec<_> = s.buffers.entries().iter().map(|e| e.name.clone()).collect();
        prop_assert_eq!(names, ["bn.running_mean", "bn.running_var"]);
        let ns = NormShape::new(n, c, sp);
        let x = rng.vec(n * c * sp);
        let fwd = |p: &[f64], x: &[f64], buf: &mut [f64]| {
            let (mut y, mut m, mut i) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            bn.forward(&mut Ctx::forward(p, buf, Mode::Train), &ns, x, &mut y, &mut m, &mut i).unwrap();
            y
        };
        let mut buf = s.b.clone();
        let y = fwd(&s.p, &x, &mut buf);
        let (rm, rv) = (&s.b[bn.rm.range()], &s.b[bn.rv.range()]);
        let (want, nrm, nrv) =
            common::batch_norm_train_ref(n, c, sp, &x, &s.p[bn.gamma.range()], &s.p[bn.beta.range()], rm, rv);
        common::assert_close("batch norm", &y, &want, 1e-10);
        common::assert_close("running mean", &buf[bn.rm.range()], &nrm, 1e-12);
        common::assert_close("running var", &buf[bn.rv.range()], &nrv, 1e-12);
        let bwd = |p: &[f64], x: &[f64], buf: &mut [f64], dy: &[f64]| {
            let (mut y, mut m, mut i) = (vec![0.0; x.len()], vec![0.0; c], vec![0.0; c]);
            bn.forward(&mut Ctx::forward(p, buf, Mode::Train), &ns, x, &mut y, &mut m, &mut i).unwrap();
            let (mut g, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            bn.backward(&mut Ctx::backward(p, &mut g), &ns, x, dy, SavedStats { mean: &m, invstd: &i }, &mut dx).unwrap();
            (g, dx)
        };
        check_unit("batch norm", &s, &x, &mut rng, &fwd, &bwd);
    }

    #[test]
    fn layer_norm_gradients_and_reference(n in 1usize..4, c in 2usize..6, sp in 1usize..4, seed: u64) {
        let mut rng = Rng(seed);
        let (s, ln) = setup(&mut rng, |b| b.layer_norm("ln", c));
        let ns = NormShape::new(n, c, sp);
        let x = rng.vec(n * c * sp);
        let fwd = |p: &[f64], x: &[f64], _: &mut [f64]| {
            let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; n * sp], vec![0.0; n * sp]);
            ln.forward(&Ctx::forward(p, &mut [], Mode::Train), &ns, x, &mut y, &mut m, &mut r).unwrap();
            y
        };
        let want = common::layer_norm_ref(n, c, sp, &x, &s.p[ln.gamma.range()], &s.p[ln.beta.range()]);
        common::assert_close("layer norm", &fwd(&s.p, &x, &mut []), &want, 1e-10);
        let bwd = |p: &[f64], x: &[f64], _: &mut [f64], dy: &[f64]| {
            let (mut y, mut m, mut r) = (vec![0.0; x.len()], vec![0.0; n * sp], vec![0.0; n * sp]);
            ln.forward(&Ctx::forward(p, &mut [], Mode::Train), &ns, x, &mut y, &mut m, &mut r).unwrap();
            let (mut g, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            ln.backward(&mut Ctx::backward(p, &mut g), &ns, x, dy, SavedStats { mean: &m, invstd: &r }, &mut dx).unwrap();
            (g, dx)
        };
        check_unit("layer norm", &s, &x, &mut rng, &fwd, &bwd);
    }

    #[test]
    fn mlp_gradients_and_reference(rows in 2usize..6, fin in 1usize..5, hid in 1usize..5, fout in 1usize..4, seed: u64) {
        let mut rng = Rng(seed);
        let (s, mlp): (Setup, Mlp) = setup(&mut rng, |b| b.mlp("h", fin, hid, fout));
        let names: Vec<_> = s.table.entries().iter().map(|e| e.name.clone()).collect();
        prop_assert_eq!(names, ["h.l1.weight", "h.bn.weight", "h.bn.bias", "h.l2.weight", "h.l2.bias"]);
        let x = rng.vec(rows * fin);
        let run = |p: &[f64], x: &[f64], buf: &mut [f64], dy: Option<&[f64]>| {
            let h = rows * hid;
            let (mut z, mut m, mut i, mut a) = (vec![0.0; h], vec![0.0; hid], vec![0.0; hid], vec![0.0; h]);
            let (mut da, mut dz) = (vec![0.0; h], vec![0.0; h]);
            let mut acts = MlpActs { z: &mut z, mean: &mut m, invstd: &mut i, a: &mut a, d_a: &mut da, dz: &mut dz };
            let mut y = vec![0.0; rows * fout];
            mlp.forward(&mut Ctx::forward(p, buf, Mode::Train), rows, x, &mut acts, &mut y).unwrap();
            let (mut g, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            if let Some(dy) = dy {
                mlp.backward(&mut Ctx::backward(p, &mut g), rows, x, &mut acts, dy, &mut dx).unwrap();
            }
            (y, g, dx)
        };
        // Reference: the three parts by their own references.
        let p = &s.p;
        let z = common::linear_ref(rows, fin, hid, &x, &p[mlp.l1.w.range()], None);
        let (rm, rv) = (&s.b[mlp.bn.rm.range()], &s.b[mlp.bn.rv.range()]);
        let (bnz, _, _) =
            common::batch_norm_train_ref(rows, hid, 1, &z, &p[mlp.bn.gamma.range()], &p[mlp.bn.beta.range()], rm, rv);
        // A central difference across the ReLU's kink measures the average
        // of two slopes, not the gradient: keep every unit clear of it.
        prop_assume!(bnz.iter().all(|v| v.abs() > 1e-3), "a pre-ReLU value within 1e-3 of the kink");
        let a: Vec<f64> = bnz.iter().map(|&v| v.max(0.0)).collect();
        let b2 = mlp.l2.b.map(|b| &p[b.range()]);
        let want = common::linear_ref(rows, hid, fout, &a, &p[mlp.l2.w.range()], b2);
        common::assert_close("mlp", &run(p, &x, &mut s.b.clone(), None).0, &want, 1e-10);
        let fwd = |p: &[f64], x: &[f64], buf: &mut [f64]| run(p, x, buf, None).0;
        let bwd = |p: &[f64], x: &[f64], buf: &mut [f64], dy: &[f64]| {
            let (_, g, dx) = run(p, x, buf, Some(dy));
            (g, dx)
        };
        check_unit("mlp", &s, &x, &mut rng, &fwd, &bwd);
    }
}

proptest! {
    #![proptest_config(common::cfg(24))]

    #[test]
    fn affine_gradients_and_reference(n in 1usize..4, c in 1usize..5, sp in 1usize..5, seed: u64) {
        let mut rng = Rng(seed);
        let (s, af) = setup(&mut rng, |b| b.affine("scale", c));
        let names: Vec<_> = s.table.entries().iter().map(|e| (e.name.clone(), e.shape.clone())).collect();
        prop_assert_eq!(names, [("scale.weight".to_string(), vec![c]), ("scale.bias".to_string(), vec![c])]);
        let ns = NormShape::new(n, c, sp);
        let x = rng.vec(n * c * sp);
        let fwd = |p: &[f64], x: &[f64], _: &mut [f64]| {
            let mut y = vec![0.0; x.len()];
            af.forward(&Ctx::forward(p, &mut [], Mode::Train), &ns, x, &mut y).unwrap();
            y
        };
        let (g, b) = (&s.p[af.gamma.range()], &s.p[af.beta.range()]);
        let want: Vec<f64> = (0..x.len()).map(|i| g[i / sp % c] * x[i] + b[i / sp % c]).collect();
        common::assert_close("affine", &fwd(&s.p, &x, &mut []), &want, 1e-15);
        let bwd = |p: &[f64], x: &[f64], _: &mut [f64], dy: &[f64]| {
            let (mut gr, mut dx) = (vec![0.0; p.len()], vec![0.0; x.len()]);
            af.backward(&mut Ctx::backward(p, &mut gr), &ns, x, dy, Some(&mut dx)).unwrap();
            (gr, dx)
        };
        check_unit("affine", &s, &x, &mut rng, &fwd, &bwd);
    }
}

#[test]
fn affine_refuses_a_shape_of_other_channels() {
    let mut rng = Rng(4);
    let (s, af) = setup(&mut rng, |b| b.affine("a", 3));
    let (x, mut y) = (vec![0.0; 8], vec![0.0; 8]);
    let r = af.forward(&Ctx::forward(&s.p, &mut [], Mode::Train), &NormShape::new(2, 4, 1), &x, &mut y);
    assert!(r.is_err());
}

#[test]
fn a_context_shorter_than_its_table_is_an_error_not_a_panic() {
    let mut rng = Rng(3);
    let (s, l) = setup(&mut rng, |b| b.linear("l", 4, 2, true));
    let x = rng.vec(4);
    let mut y = vec![0.0; 2];
    let short = &s.p[..s.p.len() - 1];
    assert!(l.forward(&Ctx::forward(short, &mut [], Mode::Train), 1, &x, &mut y).is_err());
    let mut g = vec![0.0; 3];
    assert!(l.backward(&mut Ctx::backward(&s.p, &mut g), 1, &x, &y, None).is_err());
}

/// Declares one of every unit; generic over where the tensors go.
fn declare_all<R: Registry>(b: &mut Builder<'_, R>) -> (Linear, Conv2d, BatchNorm, LayerNorm, Affine, Mlp) {
    (
        b.linear("l", 5, 3, true),
        b.conv2d("c", [2, 6, 6], 4, [3, 1, 1], false),
        b.batch_norm("bn", 4),
        b.layer_norm("ln", 3),
        b.affine("a", 2),
        b.mlp("h", 3, 4, 2),
    )
}

#[test]
fn a_bare_layout_gives_the_ids_of_the_named_table() {
    let (mut table, mut buffers) = (ParamTable::new(), ParamTable::new());
    let named = declare_all(&mut Builder::new(&mut table, &mut buffers));
    let (mut p, mut bufs) = (Layout::new(), Layout::new());
    let bare = declare_all(&mut Builder::new(&mut p, &mut bufs));
    assert_eq!(named, bare);
    assert_eq!((p.len(), bufs.len()), (table.len(), buffers.len()));
    // Element counts by hand: linear 15+3, conv 4·2·9, bn 4+4, ln 3+3, affine 2+2, mlp 12 + 4+4 + 8+2.
    assert_eq!(p.len(), 18 + 72 + 8 + 6 + 4 + 30);
    assert_eq!(bufs.len(), 8 + 8);
}
