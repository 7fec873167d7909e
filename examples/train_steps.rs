//! Runs a number of DIM training steps (forward, loss, backward, Adam) on
//! synthetic input, as `benches/train_step.rs` does, and prints images/s.
//! It exists for the peak-RSS row of BENCHMARKS.md: run it under
//! `/usr/bin/time -v` beside the PyTorch peer (`scripts/torch/peer.py train`).
//!
//! `cargo run --release --example train_steps -- [ENCODER] [jsd|nce] [THREADS] [STEPS]`
//! (defaults: conv32 jsd 1 15; batch 64, D = 512).

use std::time::Instant;

use infomax::dim::{Dim, DimConfig, Estimator};
use infomax::optim::{AdamConfig, AdamMoments, adam_step_par};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let enc = args.first().map_or("conv32", String::as_str);
    let est = match args.get(1).map(String::as_str) {
        None | Some("jsd") => Estimator::Jsd,
        Some("nce") => Estimator::Nce,
        Some(other) => return Err(format!("unknown estimator {other:?} (jsd or nce)").into()),
    };
    let threads: usize = args.get(2).map_or(Ok(1), |t| t.parse())?;
    let steps: usize = args.get(3).map_or(Ok(15), |t| t.parse())?;
    let n = 64;
    let mut model = Dim::new(DimConfig::new(enc).mi_units(512).estimator(est))?;
    let x: Vec<f32> = (0..n * model.encoder.input_len()).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
    let mut ws = model.workspace(n)?;
    let (mut m, mut v) = (vec![0f32; model.params.len()], vec![0f32; model.params.len()]);
    let adam = AdamConfig::dim();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let mut times = Vec::new();
    for t in 1..=steps as u64 + 1 {
        let start = Instant::now();
        pool.install(|| -> Result<(), infomax::Error> {
            model.forward_backward(&x, &mut ws)?;
            let Dim { params, grads, .. } = &mut model;
            adam_step_par(&adam, t, params, grads, AdamMoments { m: &mut m, v: &mut v })
        })?;
        // The first step warms up (allocations, page faults) and is not timed.
        if t > 1 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{enc} {est:?} batch {n} threads {threads}: {:.1} img/s median over {steps} steps (best {:.1})",
        n as f64 / median,
        n as f64 / times[0]
    );
    Ok(())
}
