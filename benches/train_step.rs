//! One DIM training step (forward, loss, backward and the Adam update, as
//! the trainer runs it and as the PyTorch peer `scripts/torch/peer.py train` times
//! it) at batch 64, D = 512, for conv28 and conv32 with JSD and infoNCE, on
//! 1 and 2 threads. Throughput is in images/s (criterion "elements").
//!
//! Run: `cargo bench --bench train_step`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use infomax::dim::{Dim, DimConfig, Estimator};
use infomax::optim::{AdamConfig, AdamMoments, adam_step_par};

fn step(c: &mut Criterion) {
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
    let n = 64;
    g.throughput(Throughput::Elements(n as u64));
    for enc in ["conv28", "conv32"] {
        for est in [Estimator::Jsd, Estimator::Nce] {
            let mut model = Dim::new(DimConfig::new(enc).mi_units(512).estimator(est)).unwrap();
            let len = n * model.encoder.input_len();
            let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
            let mut ws = model.workspace(n).unwrap();
            let (mut m, mut v) = (vec![0f32; model.params.len()], vec![0f32; model.params.len()]);
            let adam = AdamConfig::dim();
            let mut t = 0u64;
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                g.bench_function(BenchmarkId::new(format!("{enc} {est:?}"), format!("{threads}t")), |b| {
                    b.iter(|| {
                        pool.install(|| {
                            model.forward_backward(&x, &mut ws).unwrap();
                            t += 1;
                            let Dim { params, grads, .. } = &mut model;
                            adam_step_par(&adam, t, params, grads, AdamMoments { m: &mut m, v: &mut v }).unwrap();
                        })
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
