//! Shared test helpers: naive direct-loop references (f64), finite
//! differences, and comparison utilities. Nothing here calls the kernels
//! under test, so a reference can never inherit their bugs.
#![allow(dead_code)]

use infomax::kernels::{Conv2dShape, MaxPoolShape};
use proptest::prelude::*;

pub mod scratch;

/// Writes the first `n` images of a split (28×28, labeled) as raw IDX files
/// `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` in `dir`.
pub fn write_idx(dir: &std::path::Path, prefix: &str, ds: &infomax::data::Dataset, n: usize) {
    let mut img = vec![0, 0, 8, 3];
    for d in [n as u32, 28, 28] {
        img.extend_from_slice(&d.to_be_bytes());
    }
    img.extend_from_slice(&ds.images[..n * 784]);
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
    let mut lab = vec![0, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    lab.extend(ds.labels.as_ref().unwrap()[..n].iter().map(|&l| l as u8));
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
}

/// Proptest settings with `cases` cases, or more when the environment's
/// `PROPTEST_CASES` asks for more (a soak run: `PROPTEST_CASES=2000 cargo test`).
pub fn cfg(cases: u32) -> ProptestConfig {
    let soak = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    ProptestConfig { cases: cases.max(soak), ..ProptestConfig::default() }
}

prop_compose! {
    /// Conv shapes over the ranges the kernels must cover: batch 1–4,
    /// channels 1–8, spatial 1–9, kernel 1–5, stride 1–3, padding 0–2
    /// (some are impossible; callers skip those via `validate`).
    pub fn conv_shape()(batch in 1usize..=4, cin in 1usize..=8, cout in 1usize..=8,
                        h in 1usize..=9, w in 1usize..=9, kh in 1usize..=5, kw in 1usize..=5,
                        stride in 1usize..=3, padding in 0usize..=2) -> Conv2dShape {
        Conv2dShape { batch, in_channels: cin, in_h: h, in_w: w, out_channels: cout,
                      kernel_h: kh, kernel_w: kw, stride, padding }
    }
}

/// A deterministic generator for test data (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
    pub fn vec_f32(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform() as f32).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn to_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Largest |a − b| / max(|b|, 1).
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(&x, &y)| (x - y).abs() / y.abs().max(1.0)).fold(0.0, f64::max)
}

pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    let e = max_rel_err(got, want);
    assert!(e <= tol, "{what}: max relative error {e:e} > {tol:e}");
}

pub fn assert_close_f32(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_close(what, &to_f64(got), want, tol)
}

/// Σ y·dy: the scalar whose gradient a backward pass with upstream `dy` computes.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Central finite differences of `f` at `x` for a subset of coordinates.
/// Returns (index, numeric derivative) pairs.
pub fn fd_grad(x: &[f64], coords: &[usize], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<(usize, f64)> {
    let mut xp = x.to_vec();
    coords
        .iter()
        .map(|&i| {
            let orig = xp[i];
            xp[i] = orig + h;
            let fp = f(&xp);
            xp[i] = orig - h;
            let fm = f(&xp);
            xp[i] = orig;
            (i, (fp - fm) / (2.0 * h))
        })
        .collect()
}

/// Richardson-extrapolated central differences: `(4·D(h/2) − D(h)) / 3`
/// cancels the h² term of the central difference, leaving O(h⁴). Units with
/// large higher derivatives (a layer norm over two nearly equal values)
/// need it for a tight tolerance; at kinks (ReLU) it is no worse than `fd_grad`.
pub fn fd_grad_richardson(x: &[f64], coords: &[usize], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<(usize, f64)> {
    let coarse = fd_grad(x, coords, h, &mut f);
    let fine = fd_grad(x, coords, h / 2.0, &mut f);
    coarse.iter().zip(&fine).map(|(&(i, c), &(_, f))| (i, (4.0 * f - c) / 3.0)).collect()
}

/// Up to `max` coordinates of a tensor of length `n`, spread over it.
pub fn coords(n: usize, max: usize, rng: &mut Rng) -> Vec<usize> {
    if n <= max { (0..n).collect() } else { (0..max).map(|_| rng.below(n)).collect() }
}

/// Checks analytic against numeric gradients: |a − n| ≤ tol·max(1, |n|).
pub fn check_fd(what: &str, analytic: &[f64], numeric: &[(usize, f64)], tol: f64) {
    for &(i, n) in numeric {
        let a = analytic[i];
        assert!((a - n).abs() <= tol * n.abs().max(1.0), "{what}[{i}]: analytic {a:e} vs finite-difference {n:e}");
    }
}

// ---------------------------------------------------------------- references

/// Output size of a conv or pool: floor((in + 2p − k)/s) + 1.
pub fn out_size(input: usize, k: usize, s: usize, p: usize) -> usize {
    (input + 2 * p - k) / s + 1
}

/// Direct-loop conv2d, NCHW / OIHW.
pub fn conv2d_ref(s: &Conv2dShape, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let oh = out_size(s.in_h, s.kernel_h, s.stride, s.padding);
    let ow = out_size(s.in_w, s.kernel_w, s.stride, s.padding);
    let mut y = vec![0.0; s.batch * s.out_channels * oh * ow];
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b[co]);
                    for ci in 0..s.in_channels {
                        for ki in 0..s.kernel_h {
                            for kj in 0..s.kernel_w {
                                let ih = (i * s.stride + ki) as isize - s.padding as isize;
                                let iw = (j * s.stride + kj) as isize - s.padding as isize;
                                if ih < 0 || iw < 0 || ih >= s.in_h as isize || iw >= s.in_w as isize {
                                    continue;
                                }
                                let xi = ((n * s.in_channels + ci) * s.in_h + ih as usize) * s.in_w + iw as usize;
                                let wi = ((co * s.in_channels + ci) * s.kernel_h + ki) * s.kernel_w + kj;
                                acc += x[xi] * w[wi];
                            }
                        }
                    }
                    y[((n * s.out_channels + co) * oh + i) * ow + j] = acc;
                }
            }
        }
    }
    y
}

/// Direct-loop conv2d backward: (dx, dw, db).
pub fn conv2d_backward_ref(s: &Conv2dShape, x: &[f64], w: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let oh = out_size(s.in_h, s.kernel_h, s.stride, s.padding);
    let ow = out_size(s.in_w, s.kernel_w, s.stride, s.padding);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    let mut db = vec![0.0; s.out_channels];
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let g = dy[((n * s.out_channels + co) * oh + i) * ow + j];
                    db[co] += g;
                    for ci in 0..s.in_channels {
                        for ki in 0..s.kernel_h {
                            for kj in 0..s.kernel_w {
                                let ih = (i * s.stride + ki) as isize - s.padding as isize;
                                let iw = (j * s.stride + kj) as isize - s.padding as isize;
                                if ih < 0 || iw < 0 || ih >= s.in_h as isize || iw >= s.in_w as isize {
                                    continue;
                                }
                                let xi = ((n * s.in_channels + ci) * s.in_h + ih as usize) * s.in_w + iw as usize;
                                let wi = ((co * s.in_channels + ci) * s.kernel_h + ki) * s.kernel_w + kj;
                                dx[xi] += g * w[wi];
                                dw[wi] += g * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// y[n,o] = Σ_i x[n,i]·w[o,i] + b[o].
pub fn linear_ref(n: usize, fin: usize, fout: usize, x: &[f64], w: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let mut y = vec![0.0; n * fout];
    for r in 0..n {
        for o in 0..fout {
            let mut acc = b.map_or(0.0, |b| b[o]);
            for i in 0..fin {
                acc += x[r * fin + i] * w[o * fin + i];
            }
            y[r * fout + o] = acc;
        }
    }
    y
}

/// Batch norm reference in train mode: (y, new running mean, new running var).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_ref(
    n: usize,
    c: usize,
    sp: usize,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    rm: &[f64],
    rv: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; x.len()];
    let mut nrm = rm.to_vec();
    let mut nrv = rv.to_vec();
    let m = (n * sp) as f64;
    for ch in 0..c {
        let vals: Vec<f64> = (0..n).flat_map(|i| (0..sp).map(move |p| (i * c + ch) * sp + p)).map(|k| x[k]).collect();
        let mean = vals.iter().sum::<f64>() / m;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m;
        for i in 0..n {
            for p in 0..sp {
                let k = (i * c + ch) * sp + p;
                y[k] = (x[k] - mean) / (var + 1e-5).sqrt() * gamma[ch] + beta[ch];
            }
        }
        nrm[ch] = 0.9 * rm[ch] + 0.1 * mean;
        nrv[ch] = 0.9 * rv[ch] + 0.1 * var * m / (m - 1.0);
    }
    (y, nrm, nrv)
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_eval_ref(
    n: usize,
    c: usize,
    sp: usize,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    rm: &[f64],
    rv: &[f64],
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for ch in 0..c {
            for p in 0..sp {
                let k = (i * c + ch) * sp + p;
                y[k] = (x[k] - rm[ch]) / (rv[ch] + 1e-5).sqrt() * gamma[ch] + beta[ch];
            }
        }
    }
    y
}

/// Layer norm over channels at each location, NCHW.
pub fn layer_norm_ref(n: usize, c: usize, sp: usize, x: &[f64], gamma: &[f64], beta: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    for i in 0..n {
        for p in 0..sp {
            let idx = |ch: usize| (i * c + ch) * sp + p;
            let mean = (0..c).map(|ch| x[idx(ch)]).sum::<f64>() / c as f64;
            let var = (0..c).map(|ch| (x[idx(ch)] - mean).powi(2)).sum::<f64>() / c as f64;
            for ch in 0..c {
                y[idx(ch)] = (x[idx(ch)] - mean) / (var + 1e-5).sqrt() * gamma[ch] + beta[ch];
            }
        }
    }
    y
}

/// Max pool (no padding) reference.
pub fn max_pool_ref(s: &MaxPoolShape, x: &[f64]) -> Vec<f64> {
    let oh = out_size(s.in_h, s.kernel, s.stride, 0);
    let ow = out_size(s.in_w, s.kernel, s.stride, 0);
    let mut y = Vec::with_capacity(s.batch * s.channels * oh * ow);
    for pl in 0..s.batch * s.channels {
        for i in 0..oh {
            for j in 0..ow {
                let mut m = f64::NEG_INFINITY;
                for a in 0..s.kernel {
                    for b in 0..s.kernel {
                        m = m.max(x[pl * s.in_h * s.in_w + (i * s.stride + a) * s.in_w + j * s.stride + b]);
                    }
                }
                y.push(m);
            }
        }
    }
    y
}

/// log Σ exp, computed naively in f64 after shifting by the row max
/// (the shift is exact math, and f64 keeps the reference far from overflow).
pub fn lse_ref(row: &[f64]) -> f64 {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

pub fn softplus_ref(x: f64) -> f64 {
    // log(1 + e^x) = x + log(1 + e^−x) for x > 0: both exact identities.
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

pub fn sigmoid_ref(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A golden fixture written by a script in `tests/golden/` (PyTorch):
/// f32 tensors by name, and the script's string metadata.
pub struct Fixture {
    pub t: std::collections::HashMap<String, Vec<f32>>,
    pub meta: std::collections::HashMap<String, String>,
}

/// Reads `tests/golden/<name>.safetensors`.
pub fn load_golden(name: &str) -> Fixture {
    let path = format!("{}/tests/golden/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap();
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = md.metadata().clone().unwrap_or_default();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()))
        .collect();
    Fixture { t, meta }
}
