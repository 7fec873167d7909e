//! Every micro-kernel of the GEMM registry (`kernels::gemm::KernelId`)
//! against a naive reference, bit for bit.
//!
//! The reference is the loop nest's contract written as plain loops: each
//! element of `C = W·B` is, per depth block of `kc`, one chain from zero in
//! the order of `p` (fused `mul_add`, or multiply-then-add for the unfused
//! kernel), and the blocks are added in order. A kernel this CPU cannot run
//! is reported as skipped on stderr, never silently passed.
//!
//! Both entry points are covered: the inference GEMM (weights read in
//! place, caller blocking) and the training GEMM (A and B row-major or
//! transposed, so A is read in place or packed and B packed either way;
//! assigning or accumulating; dense or segmented C), on shapes that hit
//! every edge of every tile (8 × 32 and 6 × 16).

mod common;

use common::Rng;
use infomax::kernels::gemm::{
    Blocking, KernelId, MatRef, OutView, WeightRows, gemm_weights_with_kernel, sgemm_with_kernel,
};
use proptest::prelude::*;

/// Element `(i, j)` of `C = W·B` by the contract, for `w` `[m, k]` and `b`
/// `[k, n]` row-major; when accumulating onto `c0`, each block's chain is
/// added to C in turn (`((c0 + chain₀) + chain₁) + …`).
#[allow(clippy::too_many_arguments)]
fn reference_one(
    fused: bool,
    w: &[f32],
    b: &[f32],
    k: usize,
    n: usize,
    kc: usize,
    (i, j): (usize, usize),
    c0: Option<f32>,
) -> f32 {
    let mut total = c0.unwrap_or(0.0);
    for (blk, p0) in (0..k).step_by(kc).enumerate() {
        let mut chain = 0f32;
        for p in p0..(p0 + kc).min(k) {
            let (x, y) = (w[i * k + p], b[p * n + j]);
            chain = if fused { x.mul_add(y, chain) } else { x * y + chain };
        }
        total = if blk == 0 && c0.is_none() { chain } else { total + chain };
    }
    total
}

fn reference(id: KernelId, w: &[f32], b: &[f32], m: usize, k: usize, n: usize, kc: usize) -> Vec<f32> {
    let fused = id != KernelId::PortableUnfused;
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = reference_one(fused, w, b, k, n, kc, (i, j), None);
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

/// The training GEMM on one shape: `a_t`/`b_t` store A and B transposed
/// (column-major), `seg` cuts C's columns into segments of that length
/// spaced by `seg + 3` (guard cells between them must stay untouched).
#[allow(clippy::too_many_arguments)]
fn check_training(id: KernelId, m: usize, k: usize, n: usize, a_t: bool, b_t: bool, acc: bool, seg: usize, seed: u64) {
    let mut rng = Rng(seed);
    let (w, b) = (rng.vec_f32(m * k), rng.vec_f32(k * n));
    let transpose =
        |x: &[f32], r: usize, c: usize| -> Vec<f32> { (0..c * r).map(|e| x[(e % r) * c + e / r]).collect() };
    let (wa, bb) =
        (if a_t { transpose(&w, m, k) } else { w.clone() }, if b_t { transpose(&b, k, n) } else { b.clone() });
    let av = if a_t { MatRef::new(&wa, m, k, 1, m) } else { MatRef::row_major(&wa, m, k) }.unwrap();
    let bv = if b_t { MatRef::new(&bb, k, n, 1, k) } else { MatRef::row_major(&bb, k, n) }.unwrap();
    let seg = seg.clamp(1, n);
    let (segs, stride) = (n.div_ceil(seg), m * seg + 3);
    let at = |i: usize, j: usize| (j / seg) * stride + i * seg + j % seg;
    let init = rng.vec_f32(segs * stride);
    let mut c = init.clone();
    let view = OutView::new(&mut c, m, n, seg, seg, stride).unwrap();
    sgemm_with_kernel(id, view, av, bv, acc).unwrap();
    let kc = Blocking::balanced(m, k, n).kc;
    let fused = id != KernelId::PortableUnfused;
    let mut want = init.clone();
    for i in 0..m {
        for j in 0..n {
            want[at(i, j)] = reference_one(fused, &w, &b, k, n, kc, (i, j), acc.then_some(init[at(i, j)]));
        }
    }
    for (e, (g, r)) in c.iter().zip(&want).enumerate() {
        assert_eq!(
            g.to_bits(),
            r.to_bits(),
            "{}: cell {e} of {m}x{k}x{n} (A^T {a_t}, B^T {b_t}, acc {acc}, seg {seg}): {g} vs {r}",
            id.name()
        );
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

/// Every tile edge of both tile shapes, in both entry points: rows 1..=17
/// (every remainder of 6 and 8, one and two tiles), columns 1..=65 (every
/// remainder of 16 and 32) at a depth crossing a depth block.
#[test]
fn every_edge_tile_matches_the_reference() {
    for id in KernelId::ALL {
        if !id.available_f32() {
            eprintln!("gemm kernel {}: edge tiles skipped, this CPU lacks its features", id.name());
            continue;
        }
        for m in 1..=17 {
            for n in (1..=65).step_by(if m % 4 == 1 { 1 } else { 7 }) {
                check_kernel(id, m, 270, n, 1 << 14, (m * 100 + n) as u64);
                check_training(id, m, 270, n, m % 2 == 0, n % 2 == 1, n % 3 == 0, 64, (m * 100 + n) as u64);
            }
        }
    }
}

/// The kernels that cannot run here say so: the test output shows it.
#[test]
fn unavailable_kernels_are_named() {
    let skipped: Vec<&str> = KernelId::ALL.into_iter().filter(|id| !id.available_f32()).map(|id| id.name()).collect();
    if skipped.is_empty() {
        eprintln!("gemm kernels: all {} run on this CPU", KernelId::ALL.len());
    } else {
        eprintln!("gemm kernels skipped on this CPU (it lacks their features): {}", skipped.join(", "));
    }
    assert!(KernelId::Portable.available_f32() && KernelId::PortableUnfused.available_f32());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn training_gemm_matches_naive_reference(
        m in 1usize..40, k in 1usize..600, n in 1usize..90, a_t: bool, b_t: bool, acc: bool,
        seg in 1usize..100, seed in any::<u64>()
    ) {
        for id in KernelId::ALL.into_iter().filter(|id| id.available_f32()) {
            check_training(id, m, k, n, a_t, b_t, acc, seg, seed);
        }
    }

    #[test]
    fn kernels_match_naive_reference(
        m in 1usize..40, k in 1usize..600, n in 1usize..70, budget in 1usize..20_000, seed in any::<u64>()
    ) {
        for id in KernelId::ALL.into_iter().filter(|id| id.available_f32()) {
            check_kernel(id, m, k, n, budget, seed);
        }
    }
}
