//! The `unsafe` blocks of the kernels on small inputs, for Miri
//! (`cargo +nightly miri test --test miri`, see docs/reliability.md): the
//! AVX2 dispatch of the blocked GEMM and the packed training GEMM (its
//! micro-kernel, direct tile stores and 8×8 transposing B packer), over
//! dense, transposed and padded-stride views, f32 and f64, with and without
//! accumulation. Also runs (fast) in the normal test suite.

use infomax::kernels::{Backend, MatMut, MatRef, gemm_with};

/// Naive f64 reference of `C (+)= A·B` on strided views.
#[allow(clippy::too_many_arguments)]
fn reference(m: usize, n: usize, k: usize, a: &[f64], a_rs: usize, a_cs: usize, b: &[f64], c0: &[f64]) -> Vec<f64> {
    let mut c = c0.to_vec();
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                s += a[i * a_rs + p * a_cs] * b[p * n + j];
            }
            c[i * n + j] += s;
        }
    }
    c
}

fn backends() -> Vec<Backend> {
    vec![Backend::Blocked, Backend::Packed]
}

/// Small shapes that cross the blocked kernel's 6×16 tile edges.
const SHAPES: [(usize, usize, usize); 4] = [(1, 1, 1), (7, 17, 3), (6, 16, 5), (13, 5, 9)];

#[test]
fn gemm_backends_match_the_reference_f32_and_f64() {
    for backend in backends() {
        for (m, n, k) in SHAPES {
            for transposed_a in [false, true] {
                for accumulate in [false, true] {
                    // A is [m, k]; stored transposed it is a [k, m] buffer with a padded row stride.
                    let a_rs_store = if transposed_a { m + 2 } else { k };
                    let a_len = if transposed_a { k * (m + 2) } else { m * k };
                    let a: Vec<f64> = (0..a_len).map(|i| ((i * 7 + 3) % 11) as f64 - 5.0).collect();
                    let b: Vec<f64> = (0..k * n).map(|i| ((i * 5 + 1) % 13) as f64 - 6.0).collect();
                    let c0: Vec<f64> = (0..m * n).map(|i| (i % 3) as f64).collect();
                    let (a_rs, a_cs) = if transposed_a { (1, a_rs_store) } else { (k, 1) };
                    let start = if accumulate { c0.clone() } else { vec![0.0; m * n] };
                    let want = reference(m, n, k, &a, a_rs, a_cs, &b, &start);

                    let mut c = c0.clone();
                    let av = if transposed_a {
                        MatRef::new(&a, k, m, a_rs_store, 1).unwrap().t()
                    } else {
                        MatRef::row_major(&a, m, k).unwrap()
                    };
                    let bv = MatRef::row_major(&b, k, n).unwrap();
                    gemm_with(backend, MatMut::row_major(&mut c, m, n).unwrap(), av, bv, accumulate).unwrap();
                    // Small integers: every product and sum is exact in f64 and f32.
                    assert_eq!(c, want, "{backend:?} f64 {m}x{n}x{k} t={transposed_a} acc={accumulate}");

                    let a32: Vec<f32> = a.iter().map(|&v| v as f32).collect();
                    let b32: Vec<f32> = b.iter().map(|&v| v as f32).collect();
                    let mut c32: Vec<f32> = c0.iter().map(|&v| v as f32).collect();
                    let av = if transposed_a {
                        MatRef::new(&a32, k, m, a_rs_store, 1).unwrap().t()
                    } else {
                        MatRef::row_major(&a32, m, k).unwrap()
                    };
                    let bv = MatRef::row_major(&b32, k, n).unwrap();
                    gemm_with(backend, MatMut::row_major(&mut c32, m, n).unwrap(), av, bv, accumulate).unwrap();
                    let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
                    assert_eq!(c32, want32, "{backend:?} f32 {m}x{n}x{k} t={transposed_a} acc={accumulate}");
                }
            }
        }
    }
}

/// A column-major C (strided writes) and a sub-view of a larger buffer:
/// only the view's elements change.
#[test]
fn gemm_writes_only_inside_a_strided_output_view() {
    for backend in backends() {
        let (m, n, k) = (5, 7, 4);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 5) as f32 - 2.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 - 3.0).collect();
        // C stored column-major with column stride m + 3 inside a guarded buffer.
        let ld = m + 3;
        let mut buf = vec![99f32; ld * n];
        gemm_with(
            backend,
            MatMut::new(&mut buf, m, n, 1, ld).unwrap(),
            MatRef::row_major(&a, m, k).unwrap(),
            MatRef::row_major(&b, k, n).unwrap(),
            false,
        )
        .unwrap();
        for j in 0..n {
            for i in 0..ld {
                let got = buf[j * ld + i];
                if i < m {
                    let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    assert_eq!(got, want, "{backend:?} ({i}, {j})");
                } else {
                    assert_eq!(got, 99.0, "{backend:?} wrote outside the view at ({i}, {j})");
                }
            }
        }
    }
}

#[test]
fn dot_matches_exact_small_integer_sums() {
    // The dispatched dot product (AVX2+FMA when the CPU has it, which Miri
    // runs with `-C target-feature=+avx2,+fma`): lengths around the 16-lane
    // blocks, exact in f32 and f64 because every term is a small integer.
    for len in [0usize, 1, 15, 16, 17, 33, 64] {
        let a: Vec<f32> = (0..len).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
        let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert_eq!(infomax::kernels::dot(&a, &b), want, "f32 len {len}");
        let (a64, b64): (Vec<f64>, Vec<f64>) =
            (a.iter().map(|&v| f64::from(v)).collect(), b.iter().map(|&v| f64::from(v)).collect());
        assert_eq!(infomax::kernels::dot(&a64, &b64), f64::from(want), "f64 len {len}");
    }
}

#[test]
fn no_alloc_reader_parses_and_reads_a_small_file() {
    // The zero-allocation safetensors reader on a hand-made file (so Miri
    // checks its byte handling): one F32 tensor, one F16 tensor, metadata.
    let header = r#"{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[1],"data_offsets":[8,10]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&1.5f32.to_le_bytes());
    file.extend_from_slice(&(-2.0f32).to_le_bytes());
    file.extend_from_slice(&0x3C00u16.to_le_bytes()); // 1.0 in f16
    let w = infomax::infer::Weights::<4>::parse(&file).unwrap();
    let mut a = [0f32; 2];
    w.tensor("a").unwrap().read_f32(0, &mut a).unwrap();
    assert_eq!(a, [1.5, -2.0]);
    let mut b = [0f32; 1];
    w.tensor("b").unwrap().read_f32(0, &mut b).unwrap();
    assert_eq!(b, [1.0]);
    assert!(w.metadata("k").is_some());
    // Truncations of a valid file are typed errors, never out-of-bounds reads.
    for cut in 0..file.len() {
        assert!(infomax::infer::Weights::<4>::parse(&file[..cut]).is_err(), "cut {cut}");
    }
}

#[test]
fn inference_gemm_matches_exact_small_integer_products() {
    // The inference GEMM (kernels::gemm::gemm_weights) with every weight encoding, a
    // segmented output and blockings smaller than the problem: the
    // run-time dispatched micro-kernel (the portable one under plain Miri,
    // the AVX2 one with `-C target-feature=+avx2,+fma`) and the in-place f32
    // borrow (`align_to`). Small integers: exact in f32, f16 and bf16.
    use infomax::kernels::gemm::{Blocking, OutView, WeightRows, gemm_weights};
    for (m, n, k) in [(1usize, 1usize, 1usize), (7, 17, 3), (13, 33, 9)] {
        let w: Vec<f32> = (0..m * k).map(|i| ((i * 7 + 3) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 + 1) % 13) as f32 - 6.0).collect();
        let f32_bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let f16_bytes: Vec<u8> = w.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        let bf16_bytes: Vec<u8> = w.iter().flat_map(|&v| half::bf16::from_f32(v).to_le_bytes()).collect();
        let in_place = infomax::kernels::convert::f32_in_place(&f32_bytes);
        let mut sources = vec![
            WeightRows::F32(&w),
            WeightRows::F32Le(&f32_bytes),
            WeightRows::F16Le(&f16_bytes),
            WeightRows::Bf16Le(&bf16_bytes),
        ];
        if let Some(s) = in_place {
            sources.push(WeightRows::F32(s));
        }
        let seg = n.div_ceil(2);
        let seg_stride = m * seg + 1;
        for rows in sources {
            for budget in [1, 1 << 12] {
                let blk = Blocking::new(m, k, n, budget);
                let (mut ap, mut bp) = (vec![0f32; blk.apack_len()], vec![0f32; blk.bpack_len()]);
                let mut c = vec![99f32; 2 * seg_stride];
                let cv = OutView::new(&mut c, m, n, seg, seg, seg_stride).unwrap();
                gemm_weights(cv, rows, MatRef::row_major(&b, k, n).unwrap(), blk, &mut ap, &mut bp).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let want: f32 = (0..k).map(|p| w[i * k + p] * b[p * n + j]).sum();
                        assert_eq!(c[(j / seg) * seg_stride + i * seg + j % seg], want, "{rows:?} ({i}, {j})");
                    }
                }
            }
        }
    }
}

#[test]
fn dot4_and_weight_conversion_on_small_inputs() {
    // The dispatched `dot4` (bit-identical to `dot` per row) and the
    // converters' portable loops, including their remainders.
    for len in [0usize, 1, 17, 33] {
        let x: Vec<f32> = (0..len).map(|i| (i % 5) as f32 - 2.0).collect();
        let rows: Vec<Vec<f32>> = (0..4).map(|r| (0..len).map(|i| ((i + r) % 7) as f32 - 3.0).collect()).collect();
        let got = infomax::kernels::dot4([&rows[0], &rows[1], &rows[2], &rows[3]], &x);
        for r in 0..4 {
            assert_eq!(got[r].to_bits(), infomax::kernels::dot(&rows[r], &x).to_bits(), "len {len} row {r}");
        }
    }
    let bits: Vec<u16> = vec![0, 1, 0x3c00, 0x7c00, 0x7c01, 0xfe00, 0x8001, 0x7f80, 0x7fc1, 0x1234, 0xabcd];
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let mut f = vec![0f32; bits.len()];
    let mut g = vec![0f32; bits.len()];
    infomax::kernels::convert::f16_to_f32(&bytes, &mut f);
    infomax::kernels::convert::bf16_to_f32(&bytes, &mut g);
    for (i, &h) in bits.iter().enumerate() {
        assert_eq!(f[i].to_bits(), half::f16::from_bits(h).to_f32().to_bits(), "f16 {h:#x}");
        assert_eq!(g[i].to_bits(), half::bf16::from_bits(h).to_f32().to_bits(), "bf16 {h:#x}");
    }
}

/// The training GEMM with a transposed B whose panels are whole (n = 16, 32):
/// the AVX2 8×8 transposing packer, with k not a multiple of 8 (its scalar
/// tail), full tiles stored straight into C and a partial last row tile.
#[test]
fn training_gemm_packs_transposed_b_panels_exactly() {
    use infomax::kernels::gemm::OutView;
    use infomax::kernels::gemm::sgemm;
    for (m, n, k) in [(7, 16, 9), (6, 32, 17)] {
        for accumulate in [false, true] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
            // B stored as Bᵀ ([n, k] row-major), viewed transposed.
            let bt: Vec<f32> = (0..n * k).map(|i| ((i * 3) % 5) as f32 - 2.0).collect();
            let c0: Vec<f32> = (0..m * n).map(|i| (i % 4) as f32).collect();
            let mut want = if accumulate { c0.clone() } else { vec![0f32; m * n] };
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] += (0..k).map(|p| a[i * k + p] * bt[j * k + p]).sum::<f32>();
                }
            }
            let mut c = c0.clone();
            let av = MatRef::row_major(&a, m, k).unwrap();
            let bv = MatRef::row_major(&bt, n, k).unwrap().t();
            sgemm(OutView::row_major(&mut c, m, n).unwrap(), av, bv, accumulate).unwrap();
            assert_eq!(c, want, "m {m} n {n} k {k} accumulate {accumulate}");
        }
    }
}
