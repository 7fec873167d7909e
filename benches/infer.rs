//! The `no_std` inference path (`infomax::infer`): input → Y of the conv32
//! encoder (what `scripts/torch/peer.py infer` times with ONNX Runtime in
//! `scripts/compare.sh`) at batch 1 and 64 with f32, f16 and bf16 weights,
//! and the edge encoder at batch 1. One thread: the inference path is
//! serial (it is what runs on a microcontroller).
//!
//! Run: `cargo bench --bench infer`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use infomax::dim::{Dim, DimConfig};
use infomax::infer::{Arch, Plan, Weights};
use infomax::io::{ExportDtype, to_bytes};

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("infer");
    g.sample_size(20).measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    let cases: [(&str, ExportDtype, usize); 8] = [
        ("conv32", ExportDtype::F32, 1),
        ("conv32", ExportDtype::F16, 1),
        ("conv32", ExportDtype::BF16, 1),
        ("conv32", ExportDtype::F32, 64),
        ("conv32", ExportDtype::F16, 64),
        ("conv32", ExportDtype::BF16, 64),
        ("edge", ExportDtype::F32, 1),
        ("edge", ExportDtype::F16, 1),
    ];
    for (preset, dtype, n) in cases {
        let model = Dim::new(DimConfig::new(preset).mi_units(64)).unwrap();
        let bytes = to_bytes(&model, dtype, true, &[]).unwrap();
        let w = Weights::<32>::parse(&bytes).unwrap();
        // A server-sized weight tile: every layer converts and multiplies at once.
        let plan = Plan::with_weight_tile(&Arch::from_weights(&w).unwrap(), n, 1 << 20).unwrap();
        let x: Vec<f32> = (0..plan.input_len()).map(|i| ((i * 7919) % 255) as f32 / 127.5 - 1.0).collect();
        let mut scratch = vec![0f32; plan.scratch_len()];
        let mut y = vec![0f32; plan.output_len()];
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new(format!("{preset} {}", dtype.name()), format!("batch {n}")), |b| {
            b.iter(|| plan.encode(&w, &x, &mut scratch, &mut y).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
