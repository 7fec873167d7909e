//! Every fast f32 kernel (serial and parallel) against a naive direct-loop
//! reference computed in f64 from the same inputs: within 1e-5 relative
//! (|got − want| ≤ 1e-5·max(|want|, 1)), on proptest shapes.

mod common;

use common::*;
use infomax::kernels::{self as k, par};
use proptest::prelude::*;

const TOL: f64 = 1e-5;

fn naive_gemm(m: usize, kk: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..kk).map(|p| a[i * kk + p] * b[p * n + j]).sum();
        }
    }
    c
}

proptest! {
    #![proptest_config(cfg(24))]

    /// The inference GEMM (`kernels::gemm`) on every weight encoding, with
    /// a segmented output (one segment per "image" of `seg` columns, as a
    /// batched conv writes NCHW), shapes crossing the 6×16 tile, `KC` = 256
    /// and, with small budgets, several `mc`/`nc` blocks.
    #[test]
    fn inference_gemm_matches_naive(m in 1usize..=100, kk in 0usize..=560, n in 1usize..=70,
                                    enc in 0usize..4, tb in any::<bool>(), seg_pick in 0usize..3,
                                    budget in prop_oneof![Just(1usize), Just(700), Just(4096), Just(1 << 20)],
                                    seed in any::<u64>()) {
        use infomax::kernels::gemm::{Blocking, OutView, WeightRows, gemm_weights};
        let mut rng = Rng(seed);
        let w0 = rng.vec_f32(m * kk);
        let b = rng.vec_f32(kk * n);
        // The weights as the GEMM sees them, and their exact f32 values.
        let (w, bytes): (Vec<f32>, Vec<u8>) = match enc {
            0 | 1 => (w0.clone(), std::iter::once(0u8).chain(w0.iter().flat_map(|v| v.to_le_bytes())).collect()),
            2 => (w0.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect(),
                  w0.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()),
            _ => (w0.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect(),
                  w0.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect()),
        };
        let rows = match enc {
            0 => WeightRows::F32(&w),
            1 => WeightRows::F32Le(&bytes[1..]), // deliberately unaligned
            2 => WeightRows::F16Le(&bytes),
            _ => WeightRows::Bf16Le(&bytes),
        };
        let want = naive_gemm(m, kk, n, &to_f64(&w), &to_f64(&b));
        // One f32 FMA chain per element: the rounding error grows with k.
        let tol = TOL * (1.0 + kk as f64 / 128.0);
        let b_t: Vec<f32> = (0..n * kk).map(|i| b[(i % kk) * n + i / kk]).collect();
        let bv = if tb { k::MatRef::row_major(&b_t, n, kk).unwrap().t() } else { k::MatRef::row_major(&b, kk, n).unwrap() };
        let seg = [n, 1, n.div_ceil(3)][seg_pick];
        let nseg = n.div_ceil(seg);
        // Segment s holds an [m, seg] row-major block, 2 guard cells apart.
        let seg_stride = m * seg + 2;
        let mut c = vec![f32::NAN; nseg * seg_stride];
        let blk = Blocking::new(m, kk, n, budget);
        let mut apack = vec![0f32; blk.apack_len()];
        let mut bpack = vec![0f32; blk.bpack_len()];
        gemm_weights(OutView::new(&mut c, m, n, seg, seg, seg_stride).unwrap(), rows, bv, blk, &mut apack, &mut bpack).unwrap();
        let got: Vec<f32> = (0..m * n).map(|e| { let (i, j) = (e / n, e % n); c[(j / seg) * seg_stride + i * seg + j % seg] }).collect();
        assert_close_f32(&format!("inference gemm enc {enc} seg {seg} {blk:?}"), &got, &want, tol);
        for s in 0..nseg {
            prop_assert!(c[s * seg_stride + m * seg..(s + 1) * seg_stride].iter().all(|v| v.is_nan()), "guard written");
        }
        // Results do not depend on the blocking of n (bit for bit).
        let mut c1 = vec![f32::NAN; nseg * seg_stride];
        let blk1 = Blocking::new(m, kk, n, 1);
        let (mut a1, mut b1) = (vec![0f32; blk1.apack_len()], vec![0f32; blk1.bpack_len()]);
        gemm_weights(OutView::new(&mut c1, m, n, seg, seg, seg_stride).unwrap(), rows, bv, blk1, &mut a1, &mut b1).unwrap();
        prop_assert!(c.iter().zip(&c1).all(|(x, y)| x.to_bits() == y.to_bits()), "blocking changed the bits");
        // The portable micro-kernel (Miri's, no_std's) on the same problem.
        let mut cp = vec![f32::NAN; nseg * seg_stride];
        infomax::kernels::gemm::gemm_weights_portable(OutView::new(&mut cp, m, n, seg, seg, seg_stride).unwrap(), rows, bv, blk, &mut apack, &mut bpack).unwrap();
        let got: Vec<f32> = (0..m * n).map(|e| { let (i, j) = (e / n, e % n); cp[(j / seg) * seg_stride + i * seg + j % seg] }).collect();
        assert_close_f32("inference gemm, portable kernel", &got, &want, tol);
    }
}

proptest! {
    #![proptest_config(cfg(6))]

    /// The training GEMM (`kernels::sgemm`) on shapes that cross every block
    /// edge: several `kc` (256), `mc` (96) and `nc` (1024) blocks, partial
    /// register tiles, A in place (row-major) or packed (transposed), B
    /// copied or transposed by 8×8 blocks, accumulating, into a segmented
    /// output as the batched convolution writes it.
    #[test]
    fn training_gemm_matches_naive_across_blocks(m in 1usize..=120, kk in 0usize..=520, n in 1usize..=1100,
                                                 ta in any::<bool>(), tb in any::<bool>(), acc in any::<bool>(),
                                                 seg_pick in 0usize..3, seed in any::<u64>()) {
        use infomax::kernels::gemm::OutView;
        let mut rng = Rng(seed);
        let a = rng.vec_f32(m * kk);
        let b = rng.vec_f32(kk * n);
        let want0 = naive_gemm(m, kk, n, &to_f64(&a), &to_f64(&b));
        let a_t: Vec<f32> = (0..kk * m).map(|i| a[(i % m) * kk + i / m]).collect();
        let b_t: Vec<f32> = (0..n * kk).map(|i| b[(i % kk) * n + i / kk]).collect();
        let av = if ta { k::MatRef::row_major(&a_t, kk, m).unwrap().t() } else { k::MatRef::row_major(&a, m, kk).unwrap() };
        let bv = if tb { k::MatRef::row_major(&b_t, n, kk).unwrap().t() } else { k::MatRef::row_major(&b, kk, n).unwrap() };
        let seg = [n, 16, n.div_ceil(3)][seg_pick];
        let nseg = n.div_ceil(seg);
        let seg_stride = m * seg + 3;
        let mut c = rng.vec_f32(nseg * seg_stride);
        let at = |i: usize, j: usize| (j / seg) * seg_stride + i * seg + j % seg;
        let want: Vec<f64> = (0..m * n).map(|e| {
            let (i, j) = (e / n, e % n);
            want0[e] + if acc { c[at(i, j)] as f64 } else { 0.0 }
        }).collect();
        let guard: Vec<(usize, f32)> = (0..nseg).flat_map(|q| (m * seg..seg_stride).map(move |g| q * seg_stride + g)).filter(|&o| o < c.len()).map(|o| (o, c[o])).collect();
        k::gemm::sgemm(OutView::new(&mut c, m, n, seg, seg, seg_stride).unwrap(), av, bv, acc).unwrap();
        let got: Vec<f32> = (0..m * n).map(|e| c[at(e / n, e % n)]).collect();
        assert_close_f32("training gemm", &got, &want, TOL * (1.0 + kk as f64 / 128.0));
        for (o, v) in guard {
            prop_assert_eq!(c[o].to_bits(), v.to_bits(), "guard cell {} was written", o);
        }
    }
}

proptest! {
    #![proptest_config(cfg(64))]

    #[test]
    fn gemm_backends_match_naive(m in 1usize..=70, kk in 0usize..=300, n in 1usize..=40,
                                 ta in any::<bool>(), tb in any::<bool>(), acc in any::<bool>(), seed in any::<u64>()) {
        let mut rng = Rng(seed);
        let a = rng.vec_f32(m * kk);
        let b = rng.vec_f32(kk * n);
        let c0 = rng.vec_f32(m * n);
        let mut want = naive_gemm(m, kk, n, &to_f64(&a), &to_f64(&b));
        if acc {
            for (w, &c) in want.iter_mut().zip(&c0) { *w += c as f64; }
        }
        // Store A and/or B transposed to exercise strided views.
        let a_t: Vec<f32> = (0..kk * m).map(|i| a[(i % m) * kk + i / m]).collect();
        let b_t: Vec<f32> = (0..n * kk).map(|i| b[(i % kk) * n + i / kk]).collect();
        let av = if ta { k::MatRef::row_major(&a_t, kk, m).unwrap().t() } else { k::MatRef::row_major(&a, m, kk).unwrap() };
        let bv = if tb { k::MatRef::row_major(&b_t, n, kk).unwrap().t() } else { k::MatRef::row_major(&b, kk, n).unwrap() };
        let backends = [k::Backend::Blocked, k::Backend::Packed];
        for be in backends {
            let mut c = c0.clone();
            k::gemm_with(be, k::MatMut::row_major(&mut c, m, n).unwrap(), av, bv, acc).unwrap();
            assert_close_f32(&format!("gemm {be:?}"), &c, &want, TOL);
            // Column-major output too.
            let mut cc: Vec<f32> = (0..m * n).map(|i| c0[(i % m) * n + i / m]).collect();
            k::gemm_with(be, k::MatMut::new(&mut cc, m, n, 1, m).unwrap(), av, bv, acc).unwrap();
            let back: Vec<f32> = (0..m * n).map(|i| cc[(i % n) * m + i / n]).collect();
            assert_close_f32(&format!("gemm {be:?} col-major"), &back, &want, TOL);
        }
        let mut c = c0.clone();
        par::par_gemm(&mut c, av, bv, acc).unwrap();
        assert_close_f32("par_gemm", &c, &want, TOL);
    }

    #[test]
    fn conv2d_matches_naive(s in conv_shape(), bias in any::<bool>(), seed in any::<u64>()) {
        let d = match s.validate() { Ok(d) => d, Err(_) => return Ok(()) };
        let mut rng = Rng(seed);
        let x = rng.vec_f32(d.in_len);
        let w = rng.vec_f32(d.weight_len);
        let b = rng.vec_f32(s.out_channels);
        let dy = rng.vec_f32(d.out_len);
        let bo = bias.then_some(&b[..]);
        let b64 = to_f64(&b);
        let want_y = conv2d_ref(&s, &to_f64(&x), &to_f64(&w), bias.then_some(&b64[..]));
        let (wdx, wdw, wdb) = conv2d_backward_ref(&s, &to_f64(&x), &to_f64(&w), &to_f64(&dy));

        let mut y = vec![0f32; d.out_len];
        let mut scratch = vec![0f32; s.forward_scratch_len().unwrap()];
        k::conv2d_forward(&s, &x, k::ConvParams { w: &w, bias: bo }, k::ConvOut { y: &mut y, cols: &mut scratch }).unwrap();
        assert_close_f32("conv y", &y, &want_y, TOL);
        let mut dx = vec![0f32; d.in_len];
        let mut dw = vec![0f32; d.weight_len];
        let mut db = vec![0f32; s.out_channels];
        let mut scratch = vec![0f32; s.backward_scratch_len().unwrap()];
        k::conv2d_backward(&s, &x, &w, &dy, k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) }, &mut scratch).unwrap();
        assert_close_f32("conv dx", &dx, &wdx, TOL);
        assert_close_f32("conv dw", &dw, &wdw, TOL);
        assert_close_f32("conv db", &db, &wdb, TOL);

        let mut cols = vec![0f32; d.batched_col_len];
        let mut py = vec![0f32; d.out_len];
        par::conv2d_forward_par(&s, &x, k::ConvParams { w: &w, bias: bo }, k::ConvOut { y: &mut py, cols: &mut cols }).unwrap();
        assert_close_f32("par conv y", &py, &want_y, TOL);
        let (mut pdx, mut pdw, mut pdb) = (vec![0f32; d.in_len], vec![0f32; d.weight_len], vec![0f32; s.out_channels]);
        par::conv2d_backward_par(&s, &mut cols, &w, &dy, k::ConvGrads { dx: Some(&mut pdx), dw: &mut pdw, db: Some(&mut pdb) }).unwrap();
        assert_close_f32("par conv dx", &pdx, &wdx, TOL);
        assert_close_f32("par conv dw", &pdw, &wdw, TOL);
        assert_close_f32("par conv db", &pdb, &wdb, TOL);
    }

    #[test]
    fn dot_matches_naive(len in 0usize..=300, extra in 0usize..3, seed in any::<u64>()) {
        // The inference path's batch-1 linear layers: one dot per output.
        let mut rng = Rng(seed);
        let a = rng.vec_f32(len + extra);
        let b = rng.vec_f32(len);
        let want: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        let norm: f64 = a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum();
        let got = f64::from(k::dot(&a, &b));
        prop_assert!((got - want).abs() <= 1e-6 * norm.max(1e-30) + 1e-30, "{} vs {}", got, want);
        let (a64, b64) = (to_f64(&a), to_f64(&b));
        prop_assert!((k::dot(&a64, &b64) - want).abs() <= 1e-12 * norm.max(1e-300));
        // The documented order, written out: 16 lanes of FMA chains, the
        // tail onto the first lanes, then pairwise halving. The dispatched
        // (AVX2) f32 dot must equal it bit for bit, and dot4 must equal dot
        // row by row.
        // Fused multiply-add where the build or the CPU (x86_64 AVX2+FMA,
        // chosen at run time) has it, multiply then add otherwise.
        #[cfg(target_arch = "x86_64")]
        let simd = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        let fused = simd || cfg!(target_feature = "fma");
        let mut acc = [0f32; 16];
        for (i, (&x, &y)) in a.iter().zip(&b).enumerate() {
            acc[i % 16] = if fused { x.mul_add(y, acc[i % 16]) } else { x * y + acc[i % 16] };
        }
        let mut w = 16;
        while w > 1 {
            w /= 2;
            for j in 0..w {
                acc[j] += acc[j + w];
            }
        }
        prop_assert_eq!(got.to_bits(), f64::from(acc[0]).to_bits());
        let rows: Vec<Vec<f32>> = (0..4).map(|_| { let extra = rng.below(3); rng.vec_f32(len + extra) }).collect();
        let four = k::dot4([&rows[0], &rows[1], &rows[2], &rows[3]], &b);
        for (r, row) in rows.iter().enumerate() {
            prop_assert_eq!(four[r].to_bits(), k::dot(row, &b).to_bits());
        }
    }

    #[test]
    fn fused_half_dot4_equals_convert_then_dot(len in 0usize..=200, bits in proptest::collection::vec(any::<u16>(), 800)) {
        // Batch-1 layers with f16/bf16 weights convert in registers; the
        // result must equal converting the rows first, bit for bit. Any
        // 16-bit pattern (subnormals, infinities, NaN) is a valid weight.
        use infomax::kernels::convert;
        use infomax::kernels::linear::{HalfKind, dot4_half};
        let mut rng = Rng(len as u64);
        let x = rng.vec_f32(len);
        let rows: Vec<Vec<u8>> = (0..4).map(|r| bits[r * 200..r * 200 + len].iter().flat_map(|b| b.to_le_bytes()).collect()).collect();
        for kind in [HalfKind::F16, HalfKind::Bf16] {
            let want: Vec<f32> = rows.iter().map(|r| {
                let mut w = vec![0f32; len];
                match kind {
                    HalfKind::F16 => convert::f16_to_f32_portable(r, &mut w),
                    HalfKind::Bf16 => convert::bf16_to_f32_portable(r, &mut w),
                }
                k::dot(&w, &x)
            }).collect();
            if let Some(got) = dot4_half(kind, [&rows[0], &rows[1], &rows[2], &rows[3]], &x) {
                for r in 0..4 {
                    prop_assert_eq!(got[r].to_bits(), want[r].to_bits(), "{:?} row {}", kind, r);
                }
            }
        }
    }

    #[test]
    fn linear_matches_naive(n in 1usize..=20, fin in 1usize..=80, fout in 1usize..=80, bias in any::<bool>(), seed in any::<u64>()) {
        let s = k::LinearShape::new(n, fin, fout);
        let mut rng = Rng(seed);
        let x = rng.vec_f32(n * fin);
        let w = rng.vec_f32(fout * fin);
        let b = rng.vec_f32(fout);
        let dy = rng.vec_f32(n * fout);
        let b64 = to_f64(&b);
        let want = linear_ref(n, fin, fout, &to_f64(&x), &to_f64(&w), bias.then_some(&b64[..]));
        // dx = dy·W, dW = dyᵀ·x, db = column sums: naive products.
        let dy64 = to_f64(&dy);
        let wdx = naive_gemm(n, fout, fin, &dy64, &to_f64(&w));
        let dyt: Vec<f64> = (0..fout * n).map(|i| dy64[(i % n) * fout + i / n]).collect();
        let wdw = naive_gemm(fout, n, fin, &dyt, &to_f64(&x));
        let wdb: Vec<f64> = (0..fout).map(|o| (0..n).map(|r| dy64[r * fout + o]).sum()).collect();
        for parallel in [false, true] {
            let mut y = vec![0f32; n * fout];
            let (mut dx, mut dw, mut db) = (vec![0f32; n * fin], vec![0f32; fout * fin], vec![0f32; fout]);
            if parallel {
                par::linear_forward_par(&s, &x, &w, bias.then_some(&b[..]), &mut y).unwrap();
                par::linear_backward_par(&s, &x, &w, &dy, k::LinearGrads { dx: Some(k::InputGrad::Write(&mut dx)), dw: &mut dw, db: Some(&mut db) }).unwrap();
            } else {
                k::linear_forward(&s, &x, &w, bias.then_some(&b[..]), &mut y).unwrap();
                k::linear_backward(&s, &x, &w, &dy, k::LinearGrads { dx: Some(k::InputGrad::Write(&mut dx)), dw: &mut dw, db: Some(&mut db) }).unwrap();
            }
            assert_close_f32("linear y", &y, &want, TOL);
            assert_close_f32("linear dx", &dx, &wdx, TOL);
            assert_close_f32("linear dw", &dw, &wdw, TOL);
            assert_close_f32("linear db", &db, &wdb, TOL);
        }
    }

    #[test]
    fn norms_match_naive(n in 1usize..=4, c in 1usize..=8, sp in 1usize..=81, seed in any::<u64>()) {
        let s = k::NormShape::new(n, c, sp);
        let mut rng = Rng(seed);
        let x = rng.vec_f32(n * c * sp);
        let gamma = rng.vec_f32(c);
        let beta = rng.vec_f32(c);
        let rm = rng.vec_f32(c);
        let rv: Vec<f32> = rng.vec_f32(c).iter().map(|v| v.abs() + 0.5).collect();
        let (x64, g64, b64, rm64, rv64) = (to_f64(&x), to_f64(&gamma), to_f64(&beta), to_f64(&rm), to_f64(&rv));
        // Eval mode.
        let want = batch_norm_eval_ref(n, c, sp, &x64, &g64, &b64, &rm64, &rv64);
        let mut y = vec![0f32; x.len()];
        k::batch_norm_eval_forward(&s, 1e-5, &x, k::ScaleShift { gamma: &gamma, beta: &beta }, k::RunningStats { mean: &rm, var: &rv }, &mut y).unwrap();
        assert_close_f32("bn eval y", &y, &want, TOL);
        // Train mode, serial and parallel.
        if s.per_channel() >= 2 {
            let (wy, wrm, wrv) = batch_norm_train_ref(n, c, sp, &x64, &g64, &b64, &rm64, &rv64);
            for parallel in [false, true] {
                let (mut rm2, mut rv2) = (rm.clone(), rv.clone());
                let (mut sm, mut si) = (vec![0f32; c], vec![0f32; c]);
                let cfgbn = k::BatchNormConfig::default();
                if parallel {
                    par::batch_norm_train_forward_par(&s, &cfgbn, k::BnTrain { x: &x, scale_shift: k::ScaleShift { gamma: &gamma, beta: &beta }, running: k::RunningStats { mean: &mut rm2, var: &mut rv2 }, y: &mut y, saved: k::SavedStats { mean: &mut sm, invstd: &mut si } }).unwrap();
                } else {
                    k::batch_norm_train_forward(&s, &cfgbn, k::BnTrain { x: &x, scale_shift: k::ScaleShift { gamma: &gamma, beta: &beta }, running: k::RunningStats { mean: &mut rm2, var: &mut rv2 }, y: &mut y, saved: k::SavedStats { mean: &mut sm, invstd: &mut si } }).unwrap();
                }
                // Normalised values amplify f32 rounding of the mean by invstd.
                assert_close_f32("bn train y", &y, &wy, 2e-5);
                assert_close_f32("bn running mean", &rm2, &wrm, TOL);
                assert_close_f32("bn running var", &rv2, &wrv, TOL);
            }
        }
        // Layer norm.
        let want = layer_norm_ref(n, c, sp, &x64, &g64, &b64);
        for parallel in [false, true] {
            let (mut m, mut r) = (vec![0f32; n * sp], vec![0f32; n * sp]);
            if parallel {
                par::layer_norm_forward_par(&s, 1e-5, k::LayerNormForward { x: &x, scale_shift: k::ScaleShift { gamma: &gamma, beta: &beta }, y: &mut y, saved: k::SavedStats { mean: &mut m, invstd: &mut r } }).unwrap();
            } else {
                k::layer_norm_forward(&s, 1e-5, k::LayerNormForward { x: &x, scale_shift: k::ScaleShift { gamma: &gamma, beta: &beta }, y: &mut y, saved: k::SavedStats { mean: &mut m, invstd: &mut r } }).unwrap();
            }
            assert_close_f32("layer norm y", &y, &want, 2e-5);
        }
    }

    #[test]
    fn pool_and_elementwise_match_naive(n in 1usize..=4, c in 1usize..=8, h in 3usize..=20, w in 3usize..=20, seed in any::<u64>()) {
        let s = k::MaxPoolShape::k3s2(n, c, h, w);
        let (_, _, il, ol) = s.validate().unwrap();
        let mut rng = Rng(seed);
        let x = rng.vec_f32(il);
        let mut y = vec![0f32; ol];
        let mut a = vec![0u32; ol];
        k::max_pool_forward(&s, &x, &mut y, &mut a).unwrap();
        assert_close_f32("maxpool y", &y, &max_pool_ref(&s, &to_f64(&x)), 0.0);
        let xs: Vec<f32> = x.iter().map(|v| v * 30.0).collect();
        let mut o = vec![0f32; il];
        k::softplus_forward(&xs, &mut o).unwrap();
        assert_close_f32("softplus", &o, &xs.iter().map(|&v| softplus_ref(v as f64)).collect::<Vec<_>>(), TOL);
        k::sigmoid_forward(&xs, &mut o).unwrap();
        assert_close_f32("sigmoid", &o, &xs.iter().map(|&v| sigmoid_ref(v as f64)).collect::<Vec<_>>(), TOL);
        k::relu_forward(&xs, &mut o).unwrap();
        assert_close_f32("relu", &o, &xs.iter().map(|&v| (v as f64).max(0.0)).collect::<Vec<_>>(), 0.0);
    }

    #[test]
    fn row_ops_match_naive(rows in 1usize..=8, cols in 1usize..=50, scale in prop_oneof![Just(1.0f32), Just(100.0), Just(1e4)], seed in any::<u64>()) {
        let s = k::RowsShape::new(rows, cols);
        let mut rng = Rng(seed);
        let x: Vec<f32> = rng.vec_f32(rows * cols).iter().map(|v| v * scale).collect();
        let x64 = to_f64(&x);
        let want_lse: Vec<f64> = x64.chunks(cols).map(lse_ref).collect();
        let mut y = vec![0f32; rows];
        k::log_sum_exp_forward(&s, &x, &mut y).unwrap();
        assert_close_f32("lse", &y, &want_lse, TOL);
        let mut ls = vec![0f32; x.len()];
        k::log_softmax_forward(&s, &x, &mut ls).unwrap();
        let want_ls: Vec<f64> = x64.iter().enumerate().map(|(i, v)| v - want_lse[i / cols]).collect();
        assert_close_f32("log-softmax", &ls, &want_ls, TOL);
        let labels: Vec<usize> = (0..rows).map(|_| rng.below(cols)).collect();
        let ce = k::cross_entropy_forward(&s, &x, &labels).unwrap();
        let want_ce = labels.iter().enumerate().map(|(r, &l)| want_lse[r] - x64[r * cols + l]).sum::<f64>() / rows as f64;
        assert_close_f32("cross-entropy", &[ce], &[want_ce], TOL);
        prop_assert!(ls.iter().all(|v| v.is_finite()) && y.iter().all(|v| v.is_finite()) && ce.is_finite());
    }
}

#[test]
fn dropout_keeps_the_expected_fraction_and_scales() {
    let n = 100_000;
    let x = vec![1f32; n];
    let (mut y, mut m) = (vec![0f32; n], vec![0f32; n]);
    k::dropout_forward(0.3, 7, 0, &x, &mut y, &mut m).unwrap();
    let kept = y.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    // Binomial std at n = 1e5: 0.0014; 5 sigma.
    assert!((kept - 0.7).abs() < 0.0075, "kept fraction {kept}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    // A chunk drawn with its offset gets the same mask as the whole.
    let (mut y2, mut m2) = (vec![0f32; 1000], vec![0f32; 1000]);
    k::dropout_forward(0.3, 7, 5000, &x[5000..6000], &mut y2, &mut m2).unwrap();
    assert_eq!(&m[5000..6000], &m2[..]);
    // Another seed draws another mask.
    let (mut y3, mut m3) = (vec![0f32; n], vec![0f32; n]);
    k::dropout_forward(0.3, 8, 0, &x, &mut y3, &mut m3).unwrap();
    assert_ne!(m, m3);
    // p = 0 keeps everything unscaled.
    k::dropout_forward(0.0, 8, 0, &x, &mut y3, &mut m3).unwrap();
    assert_eq!(y3, x);
}

#[test]
fn stable_at_plus_minus_1e4() {
    let x = [1e4f32, -1e4, 0.0, 50.0, -50.0];
    let mut y = [0f32; 5];
    k::softplus_forward(&x, &mut y).unwrap();
    assert_eq!(y[0], 1e4);
    assert_eq!(y[1], 0.0);
    assert!((y[2] - std::f32::consts::LN_2).abs() < 1e-7);
    let mut s = [0f32; 5];
    k::sigmoid_forward(&x, &mut s).unwrap();
    assert_eq!((s[0], s[1], s[2]), (1.0, 0.0, 0.5));
    let shape = k::RowsShape::new(1, 5);
    let mut l = [0f32; 1];
    k::log_sum_exp_forward(&shape, &x, &mut l).unwrap();
    assert_eq!(l[0], 1e4);
    let mut ls = [0f32; 5];
    k::log_softmax_forward(&shape, &x, &mut ls).unwrap();
    assert_eq!(ls[0], 0.0);
    assert_eq!(ls[1], -2e4);
    let ce = k::cross_entropy_forward(&shape, &x, &[1]).unwrap();
    assert_eq!(ce, 2e4);
    let mut g = [0f32; 5];
    k::cross_entropy_backward(&shape, &x, &[1], 1.0, &mut g).unwrap();
    assert_eq!(g, [1.0, -1.0, 0.0, 0.0, 0.0]);
    assert!(g.iter().chain(&ls).chain(&s).chain(&y).all(|v| v.is_finite()));
}

proptest! {
    #![proptest_config(cfg(32))]

    /// unfold/fold against direct index formulas (pure data movement, so
    /// exact): `y[(n, i, j), c, r, q] = x[n, c, i·s + r, j·s + q]`, and
    /// `fold(y)[n, (c·k + r)·k + q, i, j] = y[(n, i, j), c, r, q]`.
    #[test]
    fn unfold_fold_match_naive(n in 1usize..=3, c in 1usize..=3, h in 1usize..=10, w in 1usize..=10,
                               crop in 1usize..=6, stride in 1usize..=4, seed in any::<u64>()) {
        let s = k::UnfoldShape { batch: n, channels: c, in_h: h, in_w: w, crop, stride };
        let d = match s.validate() { Ok(d) => d, Err(_) => { prop_assert!(crop > h || crop > w); return Ok(()) } };
        let (gh, gw) = ((h - crop) / stride + 1, (w - crop) / stride + 1);
        prop_assert_eq!((d.grid_h, d.grid_w, d.crops), (gh, gw, n * gh * gw));
        let mut rng = Rng(seed);
        let x = rng.vec_f32(n * c * h * w);
        let mut y = vec![0f32; d.out_len];
        k::unfold_forward(&s, &x, &mut y).unwrap();
        let dy = rng.vec_f32(d.out_len);
        let mut dx = vec![0f32; x.len()];
        k::unfold_backward(&s, &dy, &mut dx).unwrap();
        let mut want_dx = vec![0f64; x.len()];
        let mut folded = vec![0f32; d.out_len];
        let fs = k::FoldShape { batch: n, channels: c, h: crop, w: crop, grid_h: gh, grid_w: gw };
        k::fold_forward(&fs, &y, &mut folded).unwrap();
        let mut back = vec![0f32; d.out_len];
        k::fold_backward(&fs, &folded, &mut back).unwrap();
        prop_assert_eq!(&back, &y);
        let (kk, p) = (crop * crop, gh * gw);
        for img in 0..n {
            for i in 0..gh {
                for j in 0..gw {
                    let cell = (img * gh + i) * gw + j;
                    for ch in 0..c {
                        for r in 0..crop {
                            for q in 0..crop {
                                let src = ((img * c + ch) * h + i * stride + r) * w + j * stride + q;
                                let o = ((cell * c + ch) * crop + r) * crop + q;
                                prop_assert_eq!(y[o], x[src]);
                                want_dx[src] += dy[o] as f64;
                                let f = (img * c * kk + (ch * crop + r) * crop + q) * p + i * gw + j;
                                prop_assert_eq!(folded[f], y[o]);
                            }
                        }
                    }
                }
            }
        }
        assert_close_f32("unfold dx", &dx, &want_dx, 1e-6);
    }
}

#[test]
fn unfold_fold_bad_shapes_are_typed_errors() {
    use infomax::Error;
    let s = k::UnfoldShape { batch: 1, channels: 1, in_h: 4, in_w: 4, crop: 5, stride: 1 };
    assert!(matches!(s.validate(), Err(Error::InvalidShape { .. })));
    let s = k::UnfoldShape { crop: 2, stride: 0, ..s };
    assert_eq!(s.validate(), Err(Error::ZeroSize { what: "unfold stride" }));
    let s = k::UnfoldShape { stride: 2, ..s };
    let mut y = vec![0f32; 15];
    let e = k::unfold_forward(&s, &[0f32; 16], &mut y).unwrap_err();
    assert_eq!(e, Error::LengthMismatch { what: "unfold output", expected: 16, got: 15 });
    let f = k::FoldShape { batch: 1, channels: 2, h: 1, w: 1, grid_h: 2, grid_w: 0 };
    assert_eq!(f.validate(), Err(Error::ZeroSize { what: "fold grid_w" }));
    let f = k::FoldShape { grid_w: 2, ..f };
    assert!(matches!(k::fold_backward(&f, &[0f32; 8], &mut [0f32; 7]), Err(Error::LengthMismatch { .. })));
    let f = k::FoldShape { batch: usize::MAX, ..f };
    assert!(matches!(f.validate(), Err(Error::Overflow { .. })));
}

/// Weight conversion (`kernels::convert`) against the `half` crate over all
/// 65 536 bit patterns, bit for bit (NaNs: sign and payload kept, quiet bit
/// set, as `half` and F16C do): the dispatched F16 path (F16C here when the
/// CPU has it), the portable one, and BF16.
#[test]
fn weight_conversion_is_bit_exact_with_half_for_every_pattern() {
    use infomax::kernels::convert;
    let bytes: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    // Odd offsets and lengths exercise the vector loops' remainders.
    for (start, end) in [(0, 65_536), (3, 65_533)] {
        let src = &bytes[2 * start..2 * end];
        let mut fast = vec![0f32; end - start];
        let mut portable = vec![0f32; end - start];
        let mut bf = vec![0f32; end - start];
        let mut bf_portable = vec![0f32; end - start];
        convert::bf16_to_f32_portable(src, &mut bf_portable);
        convert::f16_to_f32(src, &mut fast);
        convert::f16_to_f32_portable(src, &mut portable);
        convert::bf16_to_f32(src, &mut bf);
        for (i, h) in (start..end).enumerate() {
            let h = h as u16;
            let want = half::f16::from_bits(h).to_f32().to_bits();
            assert_eq!(fast[i].to_bits(), want, "f16 {h:#06x}");
            assert_eq!(portable[i].to_bits(), want, "f16 portable {h:#06x}");
            assert_eq!(convert::f16_bits_to_f32(h).to_bits(), want, "f16 scalar {h:#06x}");
            let want = half::bf16::from_bits(h).to_f32().to_bits();
            assert_eq!(bf[i].to_bits(), want, "bf16 {h:#06x}");
            assert_eq!(bf_portable[i].to_bits(), want, "bf16 portable {h:#06x}");
            assert_eq!(convert::bf16_bits_to_f32(h).to_bits(), want, "bf16 scalar {h:#06x}");
        }
    }
    // In-place f32: aligned buffers are borrowed, unaligned ones are not.
    let v: Vec<f32> = vec![1.5, -2.0, 3.25];
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = [0f32; 3];
    convert::f32_le_to_f32(&raw, &mut out);
    assert_eq!(out.to_vec(), v);
    let mut shifted = vec![0u8; raw.len() + 4];
    let mut borrowed = 0;
    for off in 0..4 {
        shifted[off..off + raw.len()].copy_from_slice(&raw);
        let s = &shifted[off..off + raw.len()];
        if let Some(view) = convert::f32_in_place(s) {
            assert!((s.as_ptr() as usize).is_multiple_of(4));
            assert_eq!(view, &v[..]);
            borrowed += 1;
        } else {
            assert!(!(s.as_ptr() as usize).is_multiple_of(4), "an aligned buffer was not borrowed");
        }
    }
    assert_eq!(borrowed, 1);
}

/// The parallel conv backward adds columns back for groups of 8 images per
/// task: batches above 8, a partial last group, and
/// the encoders' 4×4 stride-2 shape, against the naive reference.
#[test]
fn conv2d_par_backward_over_image_groups_matches_naive() {
    let shapes = [
        k::Conv2dShape {
            batch: 11,
            in_channels: 3,
            in_h: 8,
            in_w: 8,
            out_channels: 5,
            kernel_h: 4,
            kernel_w: 4,
            stride: 2,
            padding: 1,
        },
        k::Conv2dShape {
            batch: 19,
            in_channels: 2,
            in_h: 7,
            in_w: 6,
            out_channels: 3,
            kernel_h: 3,
            kernel_w: 3,
            stride: 1,
            padding: 1,
        },
        k::Conv2dShape {
            batch: 9,
            in_channels: 4,
            in_h: 5,
            in_w: 5,
            out_channels: 2,
            kernel_h: 2,
            kernel_w: 3,
            stride: 3,
            padding: 2,
        },
    ];
    for (i, s) in shapes.iter().enumerate() {
        let d = s.validate().unwrap();
        let mut rng = Rng(40 + i as u64);
        let (x, w, dy) = (rng.vec_f32(d.in_len), rng.vec_f32(d.weight_len), rng.vec_f32(d.out_len));
        let (wdx, wdw, wdb) = conv2d_backward_ref(s, &to_f64(&x), &to_f64(&w), &to_f64(&dy));
        let mut cols = vec![0f32; d.batched_col_len];
        let mut y = vec![0f32; d.out_len];
        par::conv2d_forward_par(s, &x, k::ConvParams { w: &w, bias: None }, k::ConvOut { y: &mut y, cols: &mut cols })
            .unwrap();
        let (mut dx, mut dw, mut db) = (vec![f32::NAN; d.in_len], vec![0f32; d.weight_len], vec![0f32; s.out_channels]);
        par::conv2d_backward_par(
            s,
            &mut cols,
            &w,
            &dy,
            k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) },
        )
        .unwrap();
        assert_close_f32("grouped par conv dx", &dx, &wdx, TOL);
        assert_close_f32("grouped par conv dw", &dw, &wdw, TOL);
        assert_close_f32("grouped par conv db", &db, &wdb, TOL);
    }
}
