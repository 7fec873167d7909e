//! Per-layer breakdown of the GEMM-bound phases of one conv32 DIM training
//! step (batch 64, D = 512), the same layers as the `phases` group of
//! `benches/kernels.rs`: time and GFLOP/s of each layer's forward and
//! backward, best of 15 runs. It is a profiling aid that shows which layer
//! holds the phases below the FMA peak; the ratios of BENCHMARKS.md come
//! from the criterion benches.
//!
//! `cargo run --release --example gemm_phases -- [THREADS]` (default 1).

use std::time::Instant;

use infomax::kernels::{ConvGrads, ConvOut, ConvParams, InputGrad, LinearGrads, MatRef, par};

#[path = "../benches/common/step_phases.rs"]
mod step_phases;
use step_phases::{SCORES, step_phases};

fn fill(len: usize, seed: u32) -> Vec<f32> {
    (0..len).map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5).collect()
}

fn best<F: FnMut() -> infomax::Result<()>>(mut f: F) -> infomax::Result<f64> {
    let mut b = f64::MAX;
    for _ in 0..15 {
        let t = Instant::now();
        f()?;
        b = b.min(t.elapsed().as_secs_f64());
    }
    Ok(b)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args().nth(1).map_or(Ok(1), |s| s.parse())?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    pool.install(run)?;
    Ok(())
}

fn run() -> infomax::Result<()> {
    let gf = |flops: f64, s: f64| flops / s / 1e9;
    let (convs, linears) = step_phases();
    println!("layer | forward ms (GFLOP/s) | backward ms (GFLOP/s)");
    for pc in convs {
        let (s, input_grad) = (pc.shape, pc.input_grad);
        let d = s.validate()?;
        let f = (2 * s.out_channels * d.col_rows * d.out_hw * s.batch) as f64;
        let (x, w, dy) = (fill(d.in_len, 1), fill(d.weight_len, 2), fill(d.out_len, 4));
        let (mut y, mut cols) = (vec![0f32; d.out_len], vec![0f32; d.batched_col_len]);
        let (mut dx, mut dw) = (vec![0f32; d.in_len], vec![0f32; d.weight_len]);
        let tf = best(|| {
            par::conv2d_forward_par(&s, &x, ConvParams { w: &w, bias: None }, ConvOut { y: &mut y, cols: &mut cols })
        })?;
        let tb = best(|| {
            let dxo = input_grad.then_some(&mut dx[..]);
            par::conv2d_backward_par(&s, &mut cols, &w, &dy, ConvGrads { dx: dxo, dw: &mut dw, db: None })
        })?;
        let fb = if input_grad { 2.0 * f } else { f };
        println!("{} | {:.2} ({:.1}) | {:.2} ({:.1})", pc.name, tf * 1e3, gf(f, tf), tb * 1e3, gf(fb, tb));
    }
    for pl in linears {
        let (s, bias) = (pl.shape, pl.bias);
        let (rows, i, o) = (s.batch, s.in_features, s.out_features);
        let f = (2 * rows * i * o) as f64;
        let (x, w, b, dy) = (fill(rows * i, 5), fill(o * i, 6), fill(o, 7), fill(rows * o, 8));
        let (mut y, mut dx, mut dw, mut db) =
            (vec![0f32; rows * o], vec![0f32; rows * i], vec![0f32; o * i], vec![0f32; o]);
        let tf = best(|| par::linear_forward_par(&s, &x, &w, bias.then_some(&b[..]), &mut y))?;
        let tb = best(|| {
            par::linear_backward_par(
                &s,
                &x,
                &w,
                &dy,
                LinearGrads { dx: Some(InputGrad::Write(&mut dx[..])), dw: &mut dw, db: bias.then_some(&mut db[..]) },
            )
        })?;
        println!("{} | {:.2} ({:.1}) | {:.2} ({:.1})", pl.name, tf * 1e3, gf(f, tf), tb * 1e3, gf(2.0 * f, tb));
    }
    let (sn, sp, sd) = SCORES;
    let f = (2 * sn * sp * sd) as f64;
    let (g, l, ds) = (fill(sn * sd, 9), fill(sp * sd, 10), fill(sn * sp, 11));
    let (mut s, mut dl, mut dg) = (vec![0f32; sn * sp], vec![0f32; sp * sd], vec![0f32; sn * sd]);
    let (gm, lm, dsm) =
        (MatRef::row_major(&g, sn, sd)?, MatRef::row_major(&l, sp, sd)?, MatRef::row_major(&ds, sn, sp)?);
    let tf = best(|| par::par_gemm(&mut s, gm, lm.t(), false))?;
    let tb = best(|| {
        par::par_gemm(&mut dl, dsm.t(), gm, false)?;
        par::par_gemm(&mut dg, dsm, lm, false)
    })?;
    println!(
        "scores {sn}×{sp} (D = {sd}) | {:.2} ({:.1}) | {:.2} ({:.1})",
        tf * 1e3,
        gf(f, tf),
        tb * 1e3,
        gf(2.0 * f, tb)
    );
    Ok(())
}
