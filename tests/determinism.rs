//! The rayon drivers give bitwise-identical results for 1, 2 and 3 threads:
//! work is cut by shape, never by thread count, and reductions run in a
//! fixed order.

mod common;

use common::Rng;
use infomax::kernels::{self as k, par};

fn in_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs conv, linear, batch norm and layer norm forward and backward on
/// DIM-sized shapes and returns every output's bits.
fn run_all() -> Vec<Vec<u32>> {
    let mut rng = Rng(42);
    let mut out = Vec::new();
    // conv32 layer 2: 64→128, k4 s2 p1 on 16×16, batch 8.
    let s = k::Conv2dShape::new(8, 64, (16, 16), 128, 4, 2, 1);
    let d = s.validate().unwrap();
    let x = rng.vec_f32(d.in_len);
    let w = rng.vec_f32(d.weight_len);
    let b = rng.vec_f32(128);
    let dy = rng.vec_f32(d.out_len);
    let mut y = vec![0f32; d.out_len];
    let mut cols = vec![0f32; d.batched_col_len];
    par::conv2d_forward_par(&s, &x, k::ConvParams { w: &w, bias: Some(&b) }, k::ConvOut { y: &mut y, cols: &mut cols })
        .unwrap();
    let (mut dx, mut dw, mut db) = (vec![0f32; d.in_len], vec![0f32; d.weight_len], vec![0f32; 128]);
    par::conv2d_backward_par(
        &s,
        &mut cols,
        &w,
        &dy,
        k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) },
    )
    .unwrap();
    out.extend([bits(&y), bits(&dx), bits(&dw), bits(&db)]);
    // Linear 1024 → 300 at batch 64 (both GEMM split directions get used).
    let l = k::LinearShape::new(64, 1024, 300);
    let x = rng.vec_f32(64 * 1024);
    let w = rng.vec_f32(300 * 1024);
    let dy = rng.vec_f32(64 * 300);
    let mut y = vec![0f32; 64 * 300];
    let lb = rng.vec_f32(300);
    par::linear_forward_par(&l, &x, &w, Some(&lb), &mut y).unwrap();
    let (mut dx, mut dw, mut db) = (vec![0f32; x.len()], vec![0f32; w.len()], vec![0f32; 300]);
    par::linear_backward_par(
        &l,
        &x,
        &w,
        &dy,
        k::LinearGrads { dx: Some(k::InputGrad::Write(&mut dx)), dw: &mut dw, db: Some(&mut db) },
    )
    .unwrap();
    out.extend([bits(&y), bits(&dx), bits(&dw), bits(&db)]);
    // Batch norm and layer norm over [16, 128, 64].
    let ns = k::NormShape::new(16, 128, 64);
    let x = rng.vec_f32(16 * 128 * 64);
    let dy = rng.vec_f32(x.len());
    let g = rng.vec_f32(128);
    let be = rng.vec_f32(128);
    let (mut rm, mut rv) = (vec![0f32; 128], vec![1f32; 128]);
    let (mut sm, mut si) = (vec![0f32; 128], vec![0f32; 128]);
    let mut y = vec![0f32; x.len()];
    par::batch_norm_train_forward_par(
        &ns,
        &k::BatchNormConfig::default(),
        k::BnTrain {
            x: &x,
            scale_shift: k::ScaleShift { gamma: &g, beta: &be },
            running: k::RunningStats { mean: &mut rm, var: &mut rv },
            y: &mut y,
            saved: k::SavedStats { mean: &mut sm, invstd: &mut si },
        },
    )
    .unwrap();
    let mut dx = vec![0f32; x.len()];
    let (mut dg, mut dbe) = (vec![0f32; 128], vec![0f32; 128]);
    par::batch_norm_train_backward_par(
        &ns,
        k::NormBackward { x: &x, dy: &dy, gamma: &g, stats: k::SavedStats { mean: &sm, invstd: &si } },
        k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut dbe },
    )
    .unwrap();
    out.extend([bits(&y), bits(&rm), bits(&rv), bits(&dx), bits(&dg), bits(&dbe)]);
    let (mut m, mut r) = (vec![0f32; 16 * 64], vec![0f32; 16 * 64]);
    par::layer_norm_forward_par(
        &ns,
        1e-5,
        k::LayerNormForward {
            x: &x,
            scale_shift: k::ScaleShift { gamma: &g, beta: &be },
            y: &mut y,
            saved: k::SavedStats { mean: &mut m, invstd: &mut r },
        },
    )
    .unwrap();
    par::layer_norm_backward_par(
        &ns,
        k::NormBackward { x: &x, dy: &dy, gamma: &g, stats: k::SavedStats { mean: &m, invstd: &r } },
        k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut dbe },
    )
    .unwrap();
    out.extend([bits(&y), bits(&dx), bits(&dg), bits(&dbe)]);
    out
}

#[test]
fn bitwise_identical_for_1_2_and_3_threads() {
    let one = in_pool(1, run_all);
    let two = in_pool(2, run_all);
    let three = in_pool(3, run_all);
    assert_eq!(one.len(), 18);
    for (i, ((a, b), c)) in one.iter().zip(&two).zip(&three).enumerate() {
        assert!(a == b, "output {i} differs between 1 and 2 threads");
        assert!(a == c, "output {i} differs between 1 and 3 threads");
    }
}
