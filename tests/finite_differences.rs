//! Every analytic backward pass checked against central finite differences
//! in f64, on proptest-generated shapes (batch 1–4, channels 1–8, spatial
//! 1–9, kernel 1–5, stride 1–3, padding 0–2). The serial kernels and the
//! rayon drivers are both checked.

mod common;

use common::*;
use infomax::kernels::{self as k, par};
use proptest::prelude::*;

const H: f64 = 1e-6;
const MAX_COORDS: usize = 48;

fn conv_fwd(s: &k::Conv2dShape, x: &[f64], w: &[f64], b: &[f64], y_len: usize) -> Vec<f64> {
    let mut y = vec![0.0; y_len];
    let mut scratch = vec![0.0; s.forward_scratch_len().unwrap()];
    k::conv2d_forward(s, x, k::ConvParams { w, bias: Some(b) }, k::ConvOut { y: &mut y, cols: &mut scratch }).unwrap();
    y
}

proptest! {
    #![proptest_config(cfg(40))]

    #[test]
    fn conv2d_backward_matches_fd(s in conv_shape(), seed in any::<u64>()) {
        let d = match s.validate() { Ok(d) => d, Err(_) => return Ok(()) };
        let mut rng = Rng(seed);
        let x = rng.vec(d.in_len);
        let w = rng.vec(d.weight_len);
        let b = rng.vec(s.out_channels);
        let dy = rng.vec(d.out_len);
        // Analytic, serial kernel.
        let mut dx = vec![0.0; d.in_len];
        let mut dw = vec![0.0; d.weight_len];
        let mut db = vec![0.0; s.out_channels];
        let mut scratch = vec![0.0; s.backward_scratch_len().unwrap()];
        k::conv2d_backward(&s, &x, &w, &dy, k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) }, &mut scratch).unwrap();
        // Analytic, parallel driver.
        let mut cols = vec![0.0; d.batched_col_len];
        let mut y = vec![0.0; d.out_len];
        par::conv2d_forward_par(&s, &x, k::ConvParams { w: &w, bias: Some(&b) }, k::ConvOut { y: &mut y, cols: &mut cols }).unwrap();
        let (mut pdx, mut pdw, mut pdb) = (vec![0.0; d.in_len], vec![0.0; d.weight_len], vec![0.0; s.out_channels]);
        par::conv2d_backward_par(&s, &mut cols, &w, &dy, k::ConvGrads { dx: Some(&mut pdx), dw: &mut pdw, db: Some(&mut pdb) }).unwrap();

        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), H, |xp| dot(&conv_fwd(&s, xp, &w, &b, d.out_len), &dy));
        let nw = fd_grad(&w, &coords(w.len(), MAX_COORDS, &mut rng), H, |wp| dot(&conv_fwd(&s, &x, wp, &b, d.out_len), &dy));
        let nb = fd_grad(&b, &coords(b.len(), MAX_COORDS, &mut rng), H, |bp| dot(&conv_fwd(&s, &x, &w, bp, d.out_len), &dy));
        check_fd("conv dx", &dx, &nx, 1e-6);
        check_fd("conv dw", &dw, &nw, 1e-6);
        check_fd("conv db", &db, &nb, 1e-6);
        check_fd("par conv dx", &pdx, &nx, 1e-6);
        check_fd("par conv dw", &pdw, &nw, 1e-6);
        check_fd("par conv db", &pdb, &nb, 1e-6);
    }

    #[test]
    fn linear_backward_matches_fd(n in 1usize..=6, fin in 1usize..=40, fout in 1usize..=40,
                                  bias in any::<bool>(), seed in any::<u64>()) {
        let s = k::LinearShape::new(n, fin, fout);
        let mut rng = Rng(seed);
        let x = rng.vec(n * fin);
        let w = rng.vec(fout * fin);
        let b = rng.vec(fout);
        let dy = rng.vec(n * fout);
        let bo = bias.then_some(&b[..]);
        let f = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; n * fout];
            k::linear_forward(&s, x, w, bias.then_some(b), &mut y).unwrap();
            dot(&y, &dy)
        };
        let mut dx = vec![0.0; x.len()];
        let mut dw = vec![0.0; w.len()];
        let mut db = vec![0.0; fout];
        k::linear_backward(&s, &x, &w, &dy, k::LinearGrads { dx: Some(k::InputGrad::Write(&mut dx)), dw: &mut dw, db: bias.then_some(&mut db[..]) }).unwrap();
        let (mut pdx, mut pdw, mut pdb) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; fout]);
        par::linear_backward_par(&s, &x, &w, &dy, k::LinearGrads { dx: Some(k::InputGrad::Write(&mut pdx)), dw: &mut pdw, db: bias.then_some(&mut pdb[..]) }).unwrap();
        let _ = bo;
        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), H, |xp| f(xp, &w, &b));
        let nw = fd_grad(&w, &coords(w.len(), MAX_COORDS, &mut rng), H, |wp| f(&x, wp, &b));
        check_fd("linear dx", &dx, &nx, 1e-6);
        check_fd("linear dw", &dw, &nw, 1e-6);
        check_fd("par linear dx", &pdx, &nx, 1e-6);
        check_fd("par linear dw", &pdw, &nw, 1e-6);
        if bias {
            let nb = fd_grad(&b, &coords(b.len(), MAX_COORDS, &mut rng), H, |bp| f(&x, &w, bp));
            check_fd("linear db", &db, &nb, 1e-6);
            check_fd("par linear db", &pdb, &nb, 1e-6);
        } else {
            prop_assert!(db.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn batch_norm_train_backward_matches_fd(n in 1usize..=4, c in 1usize..=8, sp in 1usize..=9, seed in any::<u64>()) {
        let s = k::NormShape::new(n, c, sp);
        prop_assume!(s.per_channel() >= 2);
        let mut rng = Rng(seed);
        let x = rng.vec(n * c * sp);
        let gamma = rng.vec(c);
        let beta = rng.vec(c);
        let dy = rng.vec(x.len());
        let cfgbn = k::BatchNormConfig::default();
        let fwd = |x: &[f64], g: &[f64], b: &[f64]| {
            let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
            let (mut sm, mut si) = (vec![0.0; c], vec![0.0; c]);
            let mut y = vec![0.0; x.len()];
            k::batch_norm_train_forward(&s, &cfgbn, k::BnTrain { x, scale_shift: k::ScaleShift { gamma: g, beta: b }, running: k::RunningStats { mean: &mut rm, var: &mut rv }, y: &mut y, saved: k::SavedStats { mean: &mut sm, invstd: &mut si } }).unwrap();
            (y, sm, si)
        };
        let (_, sm, si) = fwd(&x, &gamma, &beta);
        let mut dx = vec![0.0; x.len()];
        let (mut dg, mut dbt) = (vec![0.0; c], vec![0.0; c]);
        k::batch_norm_train_backward(&s, k::NormBackward { x: &x, dy: &dy, gamma: &gamma, stats: k::SavedStats { mean: &sm, invstd: &si } }, k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut dbt }).unwrap();
        let mut pdx = vec![0.0; x.len()];
        let (mut pdg, mut pdbt) = (vec![0.0; c], vec![0.0; c]);
        par::batch_norm_train_backward_par(&s, k::NormBackward { x: &x, dy: &dy, gamma: &gamma, stats: k::SavedStats { mean: &sm, invstd: &si } }, k::NormGrads { dx: &mut pdx, dgamma: &mut pdg, dbeta: &mut pdbt }).unwrap();
        let l = |x: &[f64], g: &[f64], b: &[f64]| dot(&fwd(x, g, b).0, &dy);
        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), 1e-5, |xp| l(xp, &gamma, &beta));
        let ng = fd_grad(&gamma, &coords(c, MAX_COORDS, &mut rng), 1e-5, |gp| l(&x, gp, &beta));
        let nb = fd_grad(&beta, &coords(c, MAX_COORDS, &mut rng), 1e-5, |bp| l(&x, &gamma, bp));
        // With only 2 values per channel the normalised output saturates at
        // ±1 and its gradient is tiny and ill-conditioned; a slightly looser
        // tolerance still catches any structural error.
        let tol = if s.per_channel() < 4 { 1e-4 } else { 1e-5 };
        for (name, a) in [("bn dx", &dx), ("par bn dx", &pdx)] { check_fd(name, a, &nx, tol); }
        for (name, a) in [("bn dgamma", &dg), ("par bn dgamma", &pdg)] { check_fd(name, a, &ng, tol); }
        for (name, a) in [("bn dbeta", &dbt), ("par bn dbeta", &pdbt)] { check_fd(name, a, &nb, tol); }
    }

    #[test]
    fn batch_norm_eval_backward_matches_fd(n in 1usize..=4, c in 1usize..=8, sp in 1usize..=9, seed in any::<u64>()) {
        let s = k::NormShape::new(n, c, sp);
        let mut rng = Rng(seed);
        let x = rng.vec(n * c * sp);
        let gamma = rng.vec(c);
        let beta = rng.vec(c);
        let rm = rng.vec(c);
        let rv: Vec<f64> = rng.vec(c).iter().map(|v| v.abs() + 0.5).collect();
        let dy = rng.vec(x.len());
        let l = |x: &[f64], g: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            k::batch_norm_eval_forward(&s, 1e-5, x, k::ScaleShift { gamma: g, beta: b }, k::RunningStats { mean: &rm, var: &rv }, &mut y).unwrap();
            dot(&y, &dy)
        };
        let mut dx = vec![0.0; x.len()];
        let (mut dg, mut dbt) = (vec![0.0; c], vec![0.0; c]);
        k::batch_norm_eval_backward(&s, 1e-5, k::NormBackward { x: &x, dy: &dy, gamma: &gamma, stats: k::RunningStats { mean: &rm, var: &rv } }, k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut dbt }).unwrap();
        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), H, |xp| l(xp, &gamma, &beta));
        let ng = fd_grad(&gamma, &coords(c, MAX_COORDS, &mut rng), H, |gp| l(&x, gp, &beta));
        let nb = fd_grad(&beta, &coords(c, MAX_COORDS, &mut rng), H, |bp| l(&x, &gamma, bp));
        check_fd("bn eval dx", &dx, &nx, 1e-6);
        check_fd("bn eval dgamma", &dg, &ng, 1e-6);
        check_fd("bn eval dbeta", &dbt, &nb, 1e-6);
    }

    #[test]
    fn layer_norm_backward_matches_fd(n in 1usize..=4, c in 1usize..=8, sp in 1usize..=9, seed in any::<u64>()) {
        let s = k::NormShape::new(n, c, sp);
        let mut rng = Rng(seed);
        let x = rng.vec(n * c * sp);
        let gamma = rng.vec(c);
        let beta = rng.vec(c);
        let dy = rng.vec(x.len());
        let fwd = |x: &[f64], g: &[f64], b: &[f64]| {
            let mut y = vec![0.0; x.len()];
            let (mut m, mut r) = (vec![0.0; n * sp], vec![0.0; n * sp]);
            k::layer_norm_forward(&s, 1e-5, k::LayerNormForward { x, scale_shift: k::ScaleShift { gamma: g, beta: b }, y: &mut y, saved: k::SavedStats { mean: &mut m, invstd: &mut r } }).unwrap();
            (y, m, r)
        };
        let (_, m, r) = fwd(&x, &gamma, &beta);
        let mut dx = vec![0.0; x.len()];
        let (mut dg, mut dbt) = (vec![0.0; c], vec![0.0; c]);
        k::layer_norm_backward(&s, k::NormBackward { x: &x, dy: &dy, gamma: &gamma, stats: k::SavedStats { mean: &m, invstd: &r } }, k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut dbt }).unwrap();
        let mut pdx = vec![0.0; x.len()];
        let (mut pdg, mut pdbt) = (vec![0.0; c], vec![0.0; c]);
        par::layer_norm_backward_par(&s, k::NormBackward { x: &x, dy: &dy, gamma: &gamma, stats: k::SavedStats { mean: &m, invstd: &r } }, k::NormGrads { dx: &mut pdx, dgamma: &mut pdg, dbeta: &mut pdbt }).unwrap();
        let l = |x: &[f64], g: &[f64], b: &[f64]| dot(&fwd(x, g, b).0, &dy);
        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), 1e-5, |xp| l(xp, &gamma, &beta));
        let ng = fd_grad(&gamma, &coords(c, MAX_COORDS, &mut rng), 1e-5, |gp| l(&x, gp, &beta));
        let nb = fd_grad(&beta, &coords(c, MAX_COORDS, &mut rng), 1e-5, |bp| l(&x, &gamma, bp));
        // c = 1 normalises to exactly 0 with a near-singular rstd; the
        // gradient is then dominated by eps and is checked loosely.
        let tol = if c < 3 { 1e-4 } else { 1e-5 };
        for (name, a) in [("ln dx", &dx), ("par ln dx", &pdx)] { check_fd(name, a, &nx, tol); }
        for (name, a) in [("ln dgamma", &dg), ("par ln dgamma", &pdg)] { check_fd(name, a, &ng, tol); }
        for (name, a) in [("ln dbeta", &dbt), ("par ln dbeta", &pdbt)] { check_fd(name, a, &nb, tol); }
    }

    #[test]
    fn max_pool_backward_matches_fd(n in 1usize..=4, c in 1usize..=8, h in 1usize..=9, w in 1usize..=9,
                                    kernel in 1usize..=5, stride in 1usize..=3, seed in any::<u64>()) {
        let s = k::MaxPoolShape { batch: n, channels: c, in_h: h, in_w: w, kernel, stride };
        let (_, _, il, ol) = match s.validate() { Ok(v) => v, Err(_) => return Ok(()) };
        let mut rng = Rng(seed);
        let x = rng.vec(il);
        let dy = rng.vec(ol);
        let l = |x: &[f64]| {
            let mut y = vec![0.0; ol];
            let mut a = vec![0u32; ol];
            k::max_pool_forward(&s, x, &mut y, &mut a).unwrap();
            dot(&y, &dy)
        };
        let mut y = vec![0.0; ol];
        let mut a = vec![0u32; ol];
        k::max_pool_forward(&s, &x, &mut y, &mut a).unwrap();
        let mut dx = vec![0.0; il];
        k::max_pool_backward(&s, &a, &dy, &mut dx).unwrap();
        // Random continuous inputs have no ties within 1e-6, so the max is
        // locally smooth.
        let nx = fd_grad(&x, &coords(il, MAX_COORDS, &mut rng), H, l);
        check_fd("maxpool dx", &dx, &nx, 1e-6);
    }

    #[test]
    fn elementwise_backward_matches_fd(len in 1usize..=200, seed in any::<u64>(), p in 0.0f64..0.9) {
        let mut rng = Rng(seed);
        let x: Vec<f64> = rng.vec(len).iter().map(|v| v * 6.0).collect();
        let dy = rng.vec(len);
        let cs = coords(len, MAX_COORDS, &mut rng);
        // ReLU (away from the kink at 0, where it is not differentiable).
        let xr: Vec<f64> = x.iter().map(|&v| if v.abs() < 1e-3 { v + 0.01 } else { v }).collect();
        let mut y = vec![0.0; len];
        k::relu_forward(&xr, &mut y).unwrap();
        let mut dx = vec![0.0; len];
        k::relu_backward(&y, &dy, &mut dx).unwrap();
        let n = fd_grad(&xr, &cs, H, |xp| { let mut y = vec![0.0; len]; k::relu_forward(xp, &mut y).unwrap(); dot(&y, &dy) });
        check_fd("relu dx", &dx, &n, 1e-6);
        // Sigmoid.
        k::sigmoid_forward(&x, &mut y).unwrap();
        k::sigmoid_backward(&y, &dy, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| { let mut y = vec![0.0; len]; k::sigmoid_forward(xp, &mut y).unwrap(); dot(&y, &dy) });
        check_fd("sigmoid dx", &dx, &n, 1e-6);
        // Softplus.
        k::softplus_forward(&x, &mut y).unwrap();
        k::softplus_backward(&x, &dy, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| { let mut y = vec![0.0; len]; k::softplus_forward(xp, &mut y).unwrap(); dot(&y, &dy) });
        check_fd("softplus dx", &dx, &n, 1e-6);
        // Dropout with a fixed seed is linear in x.
        let mut mask = vec![0.0; len];
        k::dropout_forward(p, seed, 0, &x, &mut y, &mut mask).unwrap();
        k::dropout_backward(&mask, &dy, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| {
            let (mut y, mut m) = (vec![0.0; len], vec![0.0; len]);
            k::dropout_forward(p, seed, 0, xp, &mut y, &mut m).unwrap();
            dot(&y, &dy)
        });
        check_fd("dropout dx", &dx, &n, 1e-6);
    }

    #[test]
    fn row_reductions_backward_match_fd(rows in 1usize..=6, cols in 1usize..=30, seed in any::<u64>()) {
        let s = k::RowsShape::new(rows, cols);
        let mut rng = Rng(seed);
        let x: Vec<f64> = rng.vec(rows * cols).iter().map(|v| v * 5.0).collect();
        let cs = coords(x.len(), MAX_COORDS, &mut rng);
        // log-sum-exp
        let dyr = rng.vec(rows);
        let mut y = vec![0.0; rows];
        k::log_sum_exp_forward(&s, &x, &mut y).unwrap();
        let mut dx = vec![0.0; x.len()];
        k::log_sum_exp_backward(&s, &x, &y, &dyr, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| { let mut y = vec![0.0; rows]; k::log_sum_exp_forward(&s, xp, &mut y).unwrap(); dot(&y, &dyr) });
        check_fd("lse dx", &dx, &n, 1e-6);
        // log-softmax
        let dy = rng.vec(x.len());
        let mut ys = vec![0.0; x.len()];
        k::log_softmax_forward(&s, &x, &mut ys).unwrap();
        k::log_softmax_backward(&s, &ys, &dy, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| { let mut y = vec![0.0; xp.len()]; k::log_softmax_forward(&s, xp, &mut y).unwrap(); dot(&y, &dy) });
        check_fd("log-softmax dx", &dx, &n, 1e-6);
        // cross-entropy, with an upstream scale
        let labels: Vec<usize> = (0..rows).map(|_| rng.below(cols)).collect();
        let scale = 0.7;
        k::cross_entropy_backward(&s, &x, &labels, scale, &mut dx).unwrap();
        let n = fd_grad(&x, &cs, H, |xp| scale * k::cross_entropy_forward(&s, xp, &labels).unwrap());
        check_fd("cross-entropy dx", &dx, &n, 1e-6);
    }

    #[test]
    fn unfold_and_fold_backward_match_fd(n in 1usize..=3, c in 1usize..=3, h in 1usize..=9, w in 1usize..=9,
                                         crop in 1usize..=5, stride in 1usize..=4, seed in any::<u64>()) {
        let s = k::UnfoldShape { batch: n, channels: c, in_h: h, in_w: w, crop, stride };
        let d = match s.validate() { Ok(d) => d, Err(_) => return Ok(()) };
        let mut rng = Rng(seed);
        let x = rng.vec(d.in_len);
        let dy = rng.vec(d.out_len);
        let mut dx = vec![0.0; d.in_len];
        k::unfold_backward(&s, &dy, &mut dx).unwrap();
        let f = |xp: &[f64]| { let mut y = vec![0.0; d.out_len]; k::unfold_forward(&s, xp, &mut y).unwrap(); dot(&y, &dy) };
        let nx = fd_grad(&x, &coords(x.len(), MAX_COORDS, &mut rng), H, f);
        check_fd("unfold dx", &dx, &nx, 1e-6);
        // Fold the crops back onto the grid: [crops, c, k, k] → [n, c·k·k, gh, gw].
        let fs = k::FoldShape { batch: n, channels: c, h: crop, w: crop, grid_h: d.grid_h, grid_w: d.grid_w };
        let crops = rng.vec(d.out_len);
        let dyf = rng.vec(d.out_len);
        let mut dc = vec![0.0; d.out_len];
        k::fold_backward(&fs, &dyf, &mut dc).unwrap();
        let g = |cp: &[f64]| { let mut y = vec![0.0; d.out_len]; k::fold_forward(&fs, cp, &mut y).unwrap(); dot(&y, &dyf) };
        let nc = fd_grad(&crops, &coords(crops.len(), MAX_COORDS, &mut rng), H, g);
        check_fd("fold dx", &dc, &nc, 1e-6);
    }
}
