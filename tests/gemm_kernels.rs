//! Every micro-kernel of the GEMM registry (`kernels::gemm::KernelId`)
//! against a naive reference, bit for bit.
//!
//! The reference is the loop nest's contract written as plain loops: each
//! element of `C = W·B` is, per depth block of `kc`, one chain from zero in
//! the order of `p` (fused `mul_add`, or multiply-then-add for the unfused
//! kernel), and the blocks are added in order. A kernel this CPU cannot run
//! is reported as skipped on stderr, never silently passed.

mod common;

use common::Rng;
use infomax::kernels::gemm::{Blocking, KernelId, MatRef, OutView, WeightRows, gemm_weights_with_kernel};
use proptest::prelude::*;

fn reference(id: KernelId, w: &[f32], b: &[f32], m: usize, k: usize, n: usize, kc: usize) -> Vec<f32> {
    let fused = id != KernelId::PortableUnfused;
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut total = 0f32;
            for (blk, p0) in (0..k).step_by(kc).enumerate() {
                let mut chain = 0f32;
                for p in p0..(p0 + kc).min(k) {
                    let (x, y) = (w[i * k + p], b[p * n + j]);
                    chain = if fused { x.mul_add(y, chain) } else { x * y + chain };
                }
                total = if blk == 0 { chain } else { total + chain };
            }
            c[i * n + j] = total;
        }
    }
    c
}

fn check_kernel(id: KernelId, m: usize, k: usize, n: usize, budget: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = rng.vec_f32(m * k);
    let b = rng.vec_f32(k * n);
    let blk = Blocking::new(m, k, n, budget);
    let (mut apack, mut bpack) = (vec![0f32; blk.apack_len()], vec![0f32; blk.bpack_len()]);
    let mut c = vec![f32::NAN; m * n];
    gemm_weights_with_kernel(
        id,
        OutView::row_major(&mut c, m, n).unwrap(),
        WeightRows::F32(&w),
        MatRef::row_major(&b, k, n).unwrap(),
        blk,
        &mut apack,
        &mut bpack,
    )
    .unwrap();
    let want = reference(id, &w, &b, m, k, n, blk.kc);
    for (e, (g, r)) in c.iter().zip(&want).enumerate() {
        assert_eq!(g.to_bits(), r.to_bits(), "{}: element {e} of {m}x{k}x{n} (kc {}): {g} vs {r}", id.name(), blk.kc);
    }
}

#[test]
fn every_kernel_is_listed_and_reports_availability() {
    let mut ran = 0;
    for id in KernelId::ALL {
        if id.available_f32() {
            check_kernel(id, 13, 300, 37, 4096, 1);
            ran += 1;
        } else {
            eprintln!("gemm kernel {}: skipped, this CPU lacks its features", id.name());
        }
    }
    // The portable kernels run everywhere.
    assert!(ran >= 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn kernels_match_naive_reference(
        m in 1usize..40, k in 1usize..600, n in 1usize..70, budget in 1usize..20_000, seed in any::<u64>()
    ) {
        for id in KernelId::ALL.into_iter().filter(|id| id.available_f32()) {
            check_kernel(id, m, k, n, budget, seed);
        }
    }
}
