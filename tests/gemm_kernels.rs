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
    Blocking, ConvGeom, Im2colB, KernelId, MatRef, OutView, WeightRows, gemm_weights_im2col_with_kernel,
    gemm_weights_with_kernel, sgemm_with_kernel,
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

/// Every tile edge of every tile shape (8 × 32, 8 × 16, 6 × 16), in both
/// entry points: rows 1..=17 (every remainder of 6 and 8, one and two
/// tiles), columns 1..=65 (every remainder of 16 and 32) at a depth
/// crossing a depth block.
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
                // 16-column blocks of B: AVX-512's narrow 8 × 16 tile.
                check_kernel(id, m, 270, n, 16 * 256, (m * 100 + n) as u64);
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

/// The im2col matrix written out naively: row `(ci, ki, kj)`, column
/// `(image, oh, ow)`.
fn naive_im2col(x: &[f32], g: &ConvGeom, images: usize) -> Vec<f32> {
    let ((h, w), (kh, kw), (oh_n, ow_n)) = (g.in_hw, g.kernel, g.out_hw);
    let (rows, cols) = (g.channels * kh * kw, images * oh_n * ow_n);
    let mut m = vec![0f32; rows * cols];
    for ci in 0..g.channels {
        for ki in 0..kh {
            for kj in 0..kw {
                let r = (ci * kh + ki) * kw + kj;
                for img in 0..images {
                    for oh in 0..oh_n {
                        for ow in 0..ow_n {
                            let (ih, iw) = (
                                (oh * g.stride + ki) as isize - g.padding as isize,
                                (ow * g.stride + kj) as isize - g.padding as isize,
                            );
                            let inside = (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw);
                            let v = if inside {
                                x[((img * g.channels + ci) * h + ih as usize) * w + iw as usize]
                            } else {
                                0.0
                            };
                            m[r * cols + (img * oh_n + oh) * ow_n + ow] = v;
                        }
                    }
                }
            }
        }
    }
    m
}

/// A convolution's inference GEMM with B packed from the images equals the
/// same GEMM over the written-out columns, bit for bit, for every kernel
/// (segmented output, one NCHW block per image, as the plan writes it).
fn check_im2col(id: KernelId, g: ConvGeom, images: usize, out: usize, budget: usize, seed: u64) {
    let mut rng = Rng(seed);
    let (h, w) = g.in_hw;
    let x = rng.vec_f32(images * g.channels * h * w);
    let k = g.channels * g.kernel.0 * g.kernel.1;
    let wt = rng.vec_f32(out * k);
    let hw = g.out_hw.0 * g.out_hw.1;
    let n = images * hw;
    let blk = Blocking::new(out, k, n, budget);
    let (mut apack, mut bpack) = (vec![0f32; blk.apack_len()], vec![0f32; blk.bpack_len()]);
    let cols = naive_im2col(&x, &g, images);
    let (mut want, mut got) = (vec![f32::NAN; images * out * hw], vec![f32::NAN; images * out * hw]);
    let bm = MatRef::row_major(&cols, k, n).unwrap();
    fn view(c: &mut [f32], out: usize, n: usize, hw: usize) -> OutView<'_, f32> {
        OutView::new(c, out, n, hw, hw, out * hw).unwrap()
    }
    let (wr, cw, cg) = (WeightRows::F32(&wt), view(&mut want, out, n, hw), view(&mut got, out, n, hw));
    gemm_weights_with_kernel(id, cw, wr, bm, blk, &mut apack, &mut bpack).unwrap();
    let b = Im2colB::new(&x, g, images).unwrap();
    gemm_weights_im2col_with_kernel(id, cg, wr, b, blk, &mut apack, &mut bpack).unwrap();
    for (e, (a, r)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.to_bits(), r.to_bits(), "{}: element {e} of {g:?} x{images}: {a} vs {r}", id.name());
    }
}

fn geom(channels: usize, (h, w): (usize, usize), (kh, kw): (usize, usize), stride: usize, padding: usize) -> ConvGeom {
    let out = |s: usize, k: usize| (s + 2 * padding - k) / stride + 1;
    ConvGeom { channels, in_hw: (h, w), kernel: (kh, kw), stride, padding, out_hw: (out(h, kh), out(w, kw)) }
}

#[test]
fn im2col_packing_matches_written_columns() {
    // conv32's three layers (k4 s2 p1), a 3×3 same conv, a 1-pixel output.
    let cases = [
        (geom(3, (32, 32), (4, 4), 2, 1), 2, 16),
        (geom(16, (16, 16), (4, 4), 2, 1), 3, 24),
        (geom(8, (8, 8), (4, 4), 2, 1), 5, 40),
        (geom(5, (7, 9), (3, 3), 1, 1), 2, 7),
        (geom(2, (3, 3), (3, 3), 1, 0), 4, 9),
    ];
    for id in KernelId::ALL {
        if !id.available_f32() {
            eprintln!("gemm kernel {}: im2col packing skipped, this CPU lacks its features", id.name());
            continue;
        }
        for (i, &(g, images, out)) in cases.iter().enumerate() {
            for budget in [300, 4096, 1 << 20] {
                check_im2col(id, g, images, out, budget, i as u64);
            }
        }
    }
}

#[test]
fn im2col_operands_are_checked() {
    let g = geom(2, (8, 8), (4, 4), 2, 1);
    let x = vec![0f32; 2 * 2 * 64];
    assert!(Im2colB::new(&x, g, 2).is_ok());
    assert!(Im2colB::new(&x[1..], g, 2).is_err(), "short input");
    assert!(Im2colB::new(&x, ConvGeom { out_hw: (5, 4), ..g }, 2).is_err(), "wrong output size");
    assert!(Im2colB::new(&x, ConvGeom { stride: 0, ..g }, 2).is_err(), "zero stride");
    assert!(Im2colB::new(&x, ConvGeom { kernel: (11, 4), ..g }, 2).is_err(), "kernel larger than the padded input");
    assert!(Im2colB::new(&x, ConvGeom { channels: 0, ..g }, 2).is_err(), "no channels");
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
