//! Kernel benchmarks: GEMM backends side by side on the real im2col shapes of
//! the conv28/conv32 DIM encoders at batch 64, then conv2d forward/backward
//! for the DIM layers named in docs/kernels.md.
//!
//! Throughput is reported as "elements/s" where one element is one FLOP
//! (2·M·K·N per GEMM), so criterion's Gelem/s reads as GFLOP/s.
//!
//! The `phases` group runs every GEMM-bound phase of one conv32 DIM training
//! step (batch 64, D = 512): the three convs and the fc and Y layers of the
//! encoder, the local and global MI heads' layers, forward and backward, and
//! the score matrix (every global against every local vector) with its two
//! gradients, at 1 and 2 threads. Its GFLOP/s is the "GEMM-bound phases vs FMA peak"
//! row of BENCHMARKS.md, and 2t/1t is that row's thread scaling.
//!
//! Run: `cargo bench --bench kernels` (add `-- gemm`, `-- conv2d` or
//! `-- phases` to filter).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use infomax::kernels::{self as k, Backend, MatMut, MatRef, par};

#[path = "common/step_phases.rs"]
mod step_phases;
use step_phases::{SCORES, step_phases};

struct GemmShape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    /// GEMMs per measured iteration (64 for the per-image loops).
    count: usize,
}

/// `C[M, N] = W[M, K] · cols[K, N]` shapes of the conv layers (forward),
/// per image (×64) and batched across the 64 images.
const SHAPES: &[GemmShape] = &[
    GemmShape { name: "conv32.conv1 per-image", m: 64, k: 48, n: 256, count: 64 },
    GemmShape { name: "conv32.conv1 batched", m: 64, k: 48, n: 256 * 64, count: 1 },
    GemmShape { name: "conv32.conv2 per-image", m: 128, k: 1024, n: 64, count: 64 },
    GemmShape { name: "conv32.conv2 batched", m: 128, k: 1024, n: 64 * 64, count: 1 },
    GemmShape { name: "conv32.conv3 per-image", m: 256, k: 2048, n: 16, count: 64 },
    GemmShape { name: "conv32.conv3 batched", m: 256, k: 2048, n: 16 * 64, count: 1 },
    GemmShape { name: "conv28.conv1 per-image", m: 64, k: 25, n: 196, count: 64 },
    GemmShape { name: "conv28.conv1 batched", m: 64, k: 25, n: 196 * 64, count: 1 },
    GemmShape { name: "conv28.conv2 per-image", m: 128, k: 1600, n: 49, count: 64 },
    GemmShape { name: "conv28.conv2 batched", m: 128, k: 1600, n: 49 * 64, count: 1 },
    GemmShape { name: "mi-local 1x1 128-512 per-image", m: 512, k: 128, n: 64, count: 64 },
    GemmShape { name: "mi-local 1x1 128-512 batched", m: 512, k: 128, n: 64 * 64, count: 1 },
];

fn fill(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5).collect()
}

fn gemm_backends(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10).measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    for s in SHAPES {
        let a = fill(s.m * s.k, 1);
        // One B and C per image, as in a per-image conv loop.
        let bs: Vec<Vec<f32>> = (0..s.count).map(|i| fill(s.k * s.n, 7 + i as u32)).collect();
        let mut cs: Vec<Vec<f32>> = (0..s.count).map(|_| vec![0f32; s.m * s.n]).collect();
        g.throughput(Throughput::Elements((2 * s.m * s.k * s.n * s.count) as u64));
        g.bench_function(BenchmarkId::new("matrixmultiply", s.name), |bench| {
            bench.iter(|| {
                for (b, c) in bs.iter().zip(cs.iter_mut()) {
                    // SAFETY: a is m×k, b is k×n, c is m×n, all dense
                    // row-major with the strides given; the slices are
                    // exactly that long and c does not alias a or b.
                    unsafe {
                        matrixmultiply::sgemm(
                            s.m,
                            s.k,
                            s.n,
                            1.0,
                            a.as_ptr(),
                            s.k as isize,
                            1,
                            b.as_ptr(),
                            s.n as isize,
                            1,
                            0.0,
                            c.as_mut_ptr(),
                            s.n as isize,
                            1,
                        );
                    }
                }
                black_box(&cs);
            })
        });
        g.bench_function(BenchmarkId::new("gemm-crate", s.name), |bench| {
            bench.iter(|| {
                for (b, c) in bs.iter().zip(cs.iter_mut()) {
                    // SAFETY: a is m×k, b is k×n, c is m×n, all dense
                    // row-major (column stride 1, row stride = columns);
                    // the slices are exactly that long and c does not alias.
                    unsafe {
                        gemm_f32::gemm::f32::get_gemm_fn()(
                            s.m,
                            s.n,
                            s.k,
                            c.as_mut_ptr(),
                            1,
                            s.n as isize,
                            false,
                            a.as_ptr(),
                            1,
                            s.k as isize,
                            b.as_ptr(),
                            1,
                            s.n as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm_common::Parallelism::None,
                        );
                    }
                }
                black_box(&cs);
            })
        });
        for (name, be) in [("infomax-packed", Backend::Packed), ("infomax-blocked", Backend::Blocked)] {
            g.bench_function(BenchmarkId::new(name, s.name), |bench| {
                bench.iter(|| {
                    for (b, c) in bs.iter().zip(cs.iter_mut()) {
                        let am = MatRef::row_major(&a, s.m, s.k).unwrap();
                        let bm = MatRef::row_major(b, s.k, s.n).unwrap();
                        k::gemm_with(be, MatMut::row_major(c, s.m, s.n).unwrap(), am, bm, false).unwrap();
                    }
                    black_box(&cs);
                })
            });
        }
    }
    g.finish();
}

struct ConvCase {
    name: &'static str,
    shape: k::Conv2dShape,
}

fn conv_cases() -> Vec<ConvCase> {
    vec![
        ConvCase { name: "conv32 64-128 k4s2p1 16x16 b64", shape: k::Conv2dShape::new(64, 64, (16, 16), 128, 4, 2, 1) },
        ConvCase { name: "conv28 64-128 k5s2p2 14x14 b64", shape: k::Conv2dShape::new(64, 64, (14, 14), 128, 5, 2, 2) },
        ConvCase { name: "mi-local 1x1 128-512 8x8 b64", shape: k::Conv2dShape::new(64, 128, (8, 8), 512, 1, 1, 0) },
    ]
}

fn conv(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv2d");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    for case in conv_cases() {
        let s = case.shape;
        let d = s.validate().unwrap();
        let flops = 2 * s.out_channels * d.col_rows * d.out_hw * s.batch;
        let x = fill(d.in_len, 1);
        let w = fill(d.weight_len, 2);
        let dy = fill(d.out_len, 3);
        let mut y = vec![0f32; d.out_len];
        let mut cols = vec![0f32; d.batched_col_len];
        let mut dx = vec![0f32; d.in_len];
        let mut dw = vec![0f32; d.weight_len];
        let mut fs = vec![0f32; s.forward_scratch_len().unwrap()];
        let mut bsc = vec![0f32; s.backward_scratch_len().unwrap()];
        let p = k::ConvParams { w: &w, bias: None };
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(BenchmarkId::new("forward serial", case.name), |b| {
            b.iter(|| k::conv2d_forward(&s, &x, p, k::ConvOut { y: &mut y, cols: &mut fs }).unwrap())
        });
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            g.bench_function(BenchmarkId::new(format!("forward par {threads}t"), case.name), |b| {
                b.iter(|| {
                    pool.install(|| {
                        par::conv2d_forward_par(&s, &x, p, k::ConvOut { y: &mut y, cols: &mut cols }).unwrap()
                    })
                })
            });
        }
        // Backward = input gradient + weight gradient: twice the forward FLOPs.
        g.throughput(Throughput::Elements(2 * flops as u64));
        g.bench_function(BenchmarkId::new("backward serial", case.name), |b| {
            b.iter(|| {
                k::conv2d_backward(&s, &x, &w, &dy, k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: None }, &mut bsc)
                    .unwrap()
            })
        });
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| par::conv2d_forward_par(&s, &x, p, k::ConvOut { y: &mut y, cols: &mut cols }).unwrap());
            g.bench_function(BenchmarkId::new(format!("backward par {threads}t"), case.name), |b| {
                b.iter(|| {
                    pool.install(|| {
                        par::conv2d_backward_par(
                            &s,
                            &mut cols,
                            &w,
                            &dy,
                            k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: None },
                        )
                        .unwrap()
                    })
                })
            });
        }
    }
    g.finish();
}

fn phases(c: &mut Criterion) {
    let mut g = c.benchmark_group("phases");
    g.sample_size(10).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    let (convs, linears) = step_phases();
    let mut flops = 0usize;
    struct ConvBufs {
        x: Vec<f32>,
        w: Vec<f32>,
        y: Vec<f32>,
        dy: Vec<f32>,
        cols: Vec<f32>,
        dx: Vec<f32>,
        dw: Vec<f32>,
    }
    let mut cb: Vec<ConvBufs> = convs
        .iter()
        .map(|pc| {
            let s = pc.shape;
            let d = s.validate().unwrap();
            let f = 2 * s.out_channels * d.col_rows * d.out_hw * s.batch;
            flops += f * if pc.input_grad { 3 } else { 2 };
            ConvBufs {
                x: fill(d.in_len, 1),
                w: fill(d.weight_len, 2),
                y: vec![0f32; d.out_len],
                dy: fill(d.out_len, 4),
                cols: vec![0f32; d.batched_col_len],
                dx: vec![0f32; d.in_len],
                dw: vec![0f32; d.weight_len],
            }
        })
        .collect();
    struct LinBufs {
        x: Vec<f32>,
        w: Vec<f32>,
        b: Vec<f32>,
        y: Vec<f32>,
        dy: Vec<f32>,
        dx: Vec<f32>,
        dw: Vec<f32>,
        db: Vec<f32>,
    }
    let mut lb: Vec<LinBufs> = linears
        .iter()
        .map(|pl| {
            let s = pl.shape;
            let f = 2 * s.batch * s.in_features * s.out_features;
            flops += 3 * f;
            LinBufs {
                x: fill(s.batch * s.in_features, 5),
                w: fill(s.out_features * s.in_features, 6),
                b: fill(s.out_features, 7),
                y: vec![0f32; s.batch * s.out_features],
                dy: fill(s.batch * s.out_features, 8),
                dx: vec![0f32; s.batch * s.in_features],
                dw: vec![0f32; s.out_features * s.in_features],
                db: vec![0f32; s.out_features],
            }
        })
        .collect();
    // Scores S[64, 4096] = G·Lᵀ, then dL = dSᵀ·G and dG = dS·L (D = 512).
    let (sn, sp, sd) = SCORES;
    flops += 3 * 2 * sn * sp * sd;
    let (sg, sl, sds) = (fill(sn * sd, 9), fill(sp * sd, 10), fill(sn * sp, 11));
    let (mut ss, mut sdl, mut sdg) = (vec![0f32; sn * sp], vec![0f32; sp * sd], vec![0f32; sn * sd]);
    g.throughput(Throughput::Elements(flops as u64));
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        g.bench_function(BenchmarkId::new("conv32 step GEMM phases", format!("{threads}t")), |bench| {
            bench.iter(|| {
                pool.install(|| {
                    for (pc, b) in convs.iter().zip(cb.iter_mut()) {
                        let s = &pc.shape;
                        // Every conv of the step is followed by BN: no bias.
                        par::conv2d_forward_par(
                            s,
                            &b.x,
                            k::ConvParams { w: &b.w, bias: None },
                            k::ConvOut { y: &mut b.y, cols: &mut b.cols },
                        )
                        .unwrap();
                        let dx = pc.input_grad.then_some(&mut b.dx[..]);
                        par::conv2d_backward_par(
                            s,
                            &mut b.cols,
                            &b.w,
                            &b.dy,
                            k::ConvGrads { dx, dw: &mut b.dw, db: None },
                        )
                        .unwrap();
                    }
                    for (pl, b) in linears.iter().zip(lb.iter_mut()) {
                        let s = &pl.shape;
                        let bias = pl.bias.then_some(&b.b[..]);
                        par::linear_forward_par(s, &b.x, &b.w, bias, &mut b.y).unwrap();
                        let db = pl.bias.then_some(&mut b.db[..]);
                        par::linear_backward_par(
                            s,
                            &b.x,
                            &b.w,
                            &b.dy,
                            k::LinearGrads { dx: Some(k::InputGrad::Write(&mut b.dx[..])), dw: &mut b.dw, db },
                        )
                        .unwrap();
                    }
                    let gm = MatRef::row_major(&sg, sn, sd).unwrap();
                    let lm = MatRef::row_major(&sl, sp, sd).unwrap();
                    let dsm = MatRef::row_major(&sds, sn, sp).unwrap();
                    par::par_gemm(&mut ss, gm, lm.t(), false).unwrap();
                    par::par_gemm(&mut sdl, dsm.t(), gm, false).unwrap();
                    par::par_gemm(&mut sdg, dsm, lm, false).unwrap();
                });
                black_box((&cb, &lb, &ss, &sdl, &sdg));
            })
        });
    }
    g.finish();
}

criterion_group!(benches, gemm_backends, conv, phases);
criterion_main!(benches);
