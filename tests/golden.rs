//! Kernels against PyTorch: fixtures written by `tests/golden/make_golden.py`
//! (torch in f64, stored as f32) and committed, so CI needs no Python.
//! Tolerance: 1e-4 relative (|got − want| ≤ 1e-4·max(|want|, 1)).

mod common;

use std::collections::HashMap;

use common::*;
use infomax::kernels as k;
use safetensors::{Dtype, SafeTensors};

const TOL: f64 = 1e-4;

struct Golden {
    f32s: HashMap<String, (Vec<usize>, Vec<f32>)>,
    i64s: HashMap<String, Vec<i64>>,
    meta: HashMap<String, String>,
}

impl Golden {
    fn load(case: &str) -> Golden {
        let path = format!("{}/tests/golden/{case}.safetensors", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (_, md) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = md.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut f32s = HashMap::new();
        let mut i64s = HashMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            match view.dtype() {
                Dtype::F32 => {
                    let v = data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
                    f32s.insert(name, (view.shape().to_vec(), v));
                }
                Dtype::I64 => {
                    let v = data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect();
                    i64s.insert(name, v);
                }
                other => panic!("{case}/{name}: unexpected dtype {other:?}"),
            }
        }
        Golden { f32s, i64s, meta }
    }
    fn t(&self, name: &str) -> &[f32] {
        &self.f32s.get(name).unwrap_or_else(|| panic!("missing tensor {name}")).1
    }
    fn shape(&self, name: &str) -> &[usize] {
        &self.f32s[name].0
    }
    fn has(&self, name: &str) -> bool {
        self.f32s.contains_key(name)
    }
    fn meta_usize(&self, key: &str) -> usize {
        self.meta[key].parse().unwrap()
    }
    fn check(&self, what: &str, got: &[f32], name: &str) {
        assert_close_f32(what, got, &to_f64(self.t(name)), TOL);
    }
}

fn conv_case(case: &str) {
    let g = Golden::load(case);
    let xs = g.shape("x");
    let ws = g.shape("w");
    assert_eq!(ws[2], g.meta_usize("kernel_h"));
    let s = k::Conv2dShape {
        batch: xs[0],
        in_channels: xs[1],
        in_h: xs[2],
        in_w: xs[3],
        out_channels: ws[0],
        kernel_h: ws[2],
        kernel_w: ws[3],
        stride: g.meta_usize("stride"),
        padding: g.meta_usize("padding"),
    };
    let d = s.validate().unwrap();
    let bias = g.has("b").then(|| g.t("b"));
    // Serial kernels.
    let mut y = vec![0f32; d.out_len];
    let mut scratch = vec![0f32; s.forward_scratch_len().unwrap()];
    k::conv2d_forward(&s, g.t("x"), k::ConvParams { w: g.t("w"), bias }, k::ConvOut { y: &mut y, cols: &mut scratch })
        .unwrap();
    g.check(&format!("{case} y"), &y, "y");
    let mut dx = vec![0f32; d.in_len];
    let mut dw = vec![0f32; d.weight_len];
    let mut db = vec![0f32; s.out_channels];
    let mut scratch = vec![0f32; s.backward_scratch_len().unwrap()];
    k::conv2d_backward(
        &s,
        g.t("x"),
        g.t("w"),
        g.t("dy"),
        k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) },
        &mut scratch,
    )
    .unwrap();
    g.check(&format!("{case} dx"), &dx, "dx");
    g.check(&format!("{case} dw"), &dw, "dw");
    if bias.is_some() {
        g.check(&format!("{case} db"), &db, "db");
    }
    // Parallel drivers.
    let mut cols = vec![0f32; d.batched_col_len];
    k::par::conv2d_forward_par(
        &s,
        g.t("x"),
        k::ConvParams { w: g.t("w"), bias },
        k::ConvOut { y: &mut y, cols: &mut cols },
    )
    .unwrap();
    g.check(&format!("{case} par y"), &y, "y");
    let (mut dx, mut dw, mut db) = (vec![0f32; d.in_len], vec![0f32; d.weight_len], vec![0f32; s.out_channels]);
    k::par::conv2d_backward_par(
        &s,
        &mut cols,
        g.t("w"),
        g.t("dy"),
        k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: Some(&mut db) },
    )
    .unwrap();
    g.check(&format!("{case} par dx"), &dx, "dx");
    g.check(&format!("{case} par dw"), &dw, "dw");
    if bias.is_some() {
        g.check(&format!("{case} par db"), &db, "db");
    }
}

#[test]
fn conv2d_k4s2p1() {
    conv_case("conv2d_k4s2p1");
}

#[test]
fn conv2d_k5s2p2() {
    conv_case("conv2d_k5s2p2");
}

#[test]
fn conv2d_1x1() {
    conv_case("conv2d_1x1");
}

#[test]
fn conv2d_k3s1p1() {
    conv_case("conv2d_k3s1p1");
}

fn linear_case(case: &str) {
    let g = Golden::load(case);
    let (xs, ws) = (g.shape("x"), g.shape("w"));
    let s = k::LinearShape::new(xs[0], xs[1], ws[0]);
    let bias = g.has("b").then(|| g.t("b"));
    for parallel in [false, true] {
        let mut y = vec![0f32; s.batch * s.out_features];
        let mut dx = vec![0f32; g.t("x").len()];
        let mut dw = vec![0f32; g.t("w").len()];
        let mut db = vec![0f32; s.out_features];
        let forward = if parallel { k::par::linear_forward_par } else { k::linear_forward };
        let backward = if parallel { k::par::linear_backward_par } else { k::linear_backward };
        forward(&s, g.t("x"), g.t("w"), bias, &mut y).unwrap();
        backward(
            &s,
            g.t("x"),
            g.t("w"),
            g.t("dy"),
            k::LinearGrads { dx: Some(k::InputGrad::Write(&mut dx)), dw: &mut dw, db: Some(&mut db) },
        )
        .unwrap();
        g.check(&format!("{case} y"), &y, "y");
        g.check(&format!("{case} dx"), &dx, "dx");
        g.check(&format!("{case} dw"), &dw, "dw");
        if bias.is_some() {
            g.check(&format!("{case} db"), &db, "db");
        }
    }
}

#[test]
fn linear_bias() {
    linear_case("linear_bias");
}

#[test]
fn linear_nobias() {
    linear_case("linear_nobias");
}

fn norm_shape(xs: &[usize]) -> k::NormShape {
    k::NormShape::new(xs[0], xs[1], xs[2..].iter().product())
}

fn batchnorm_case(case: &str) {
    let g = Golden::load(case);
    let s = norm_shape(g.shape("x"));
    let c = s.channels;
    let train = g.meta["mode"] == "train";
    let eps: f64 = g.meta["eps"].parse().unwrap();
    let cfg = k::BatchNormConfig { eps, momentum: g.meta["momentum"].parse().unwrap() };
    let (x, gamma, beta) = (g.t("x"), g.t("gamma"), g.t("beta"));
    let mut y = vec![0f32; x.len()];
    let mut dx = vec![0f32; x.len()];
    let (mut dg, mut db) = (vec![0f32; c], vec![0f32; c]);
    if train {
        for parallel in [false, true] {
            let (mut rm, mut rv) = (g.t("running_mean").to_vec(), g.t("running_var").to_vec());
            let (mut sm, mut si) = (vec![0f32; c], vec![0f32; c]);
            dg.fill(0.0);
            db.fill(0.0);
            let forward = if parallel { k::par::batch_norm_train_forward_par } else { k::batch_norm_train_forward };
            let backward = if parallel { k::par::batch_norm_train_backward_par } else { k::batch_norm_train_backward };
            let scale_shift = k::ScaleShift { gamma, beta };
            let running = k::RunningStats { mean: &mut rm[..], var: &mut rv[..] };
            let saved = k::SavedStats { mean: &mut sm[..], invstd: &mut si[..] };
            forward(&s, &cfg, k::BnTrain { x, scale_shift, running, y: &mut y, saved }).unwrap();
            let stats = k::SavedStats { mean: &sm[..], invstd: &si[..] };
            let grads = k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
            backward(&s, k::NormBackward { x, dy: g.t("dy"), gamma, stats }, grads).unwrap();
            g.check(&format!("{case} running_mean"), &rm, "running_mean_out");
            g.check(&format!("{case} running_var"), &rv, "running_var_out");
            g.check(&format!("{case} y"), &y, "y");
            g.check(&format!("{case} dx"), &dx, "dx");
            g.check(&format!("{case} dgamma"), &dg, "dgamma");
            g.check(&format!("{case} dbeta"), &db, "dbeta");
        }
    } else {
        let (rm, rv) = (g.t("running_mean"), g.t("running_var"));
        k::batch_norm_eval_forward(
            &s,
            eps,
            x,
            k::ScaleShift { gamma, beta },
            k::RunningStats { mean: rm, var: rv },
            &mut y,
        )
        .unwrap();
        k::batch_norm_eval_backward(
            &s,
            eps,
            k::NormBackward { x, dy: g.t("dy"), gamma, stats: k::RunningStats { mean: rm, var: rv } },
            k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db },
        )
        .unwrap();
        assert_eq!(g.t("running_mean"), g.t("running_mean_out"));
        g.check(&format!("{case} y"), &y, "y");
        g.check(&format!("{case} dx"), &dx, "dx");
        g.check(&format!("{case} dgamma"), &dg, "dgamma");
        g.check(&format!("{case} dbeta"), &db, "dbeta");
    }
}

#[test]
fn batchnorm2d_train() {
    batchnorm_case("batchnorm2d_train");
}

#[test]
fn batchnorm2d_eval() {
    batchnorm_case("batchnorm2d_eval");
}

#[test]
fn batchnorm1d_train() {
    batchnorm_case("batchnorm1d_train");
}

#[test]
fn batchnorm1d_eval() {
    batchnorm_case("batchnorm1d_eval");
}

#[test]
fn layernorm_channels() {
    let g = Golden::load("layernorm_channels");
    let s = norm_shape(g.shape("x"));
    let (x, gamma, beta) = (g.t("x"), g.t("gamma"), g.t("beta"));
    for parallel in [false, true] {
        let mut y = vec![0f32; x.len()];
        let (mut m, mut r) = (vec![0f32; s.locations()], vec![0f32; s.locations()]);
        let mut dx = vec![0f32; x.len()];
        let (mut dg, mut db) = (vec![0f32; s.channels], vec![0f32; s.channels]);
        let forward = if parallel { k::par::layer_norm_forward_par } else { k::layer_norm_forward };
        let backward = if parallel { k::par::layer_norm_backward_par } else { k::layer_norm_backward };
        let saved = k::SavedStats { mean: &mut m[..], invstd: &mut r[..] };
        forward(&s, 1e-5, k::LayerNormForward { x, scale_shift: k::ScaleShift { gamma, beta }, y: &mut y, saved })
            .unwrap();
        let stats = k::SavedStats { mean: &m[..], invstd: &r[..] };
        let grads = k::NormGrads { dx: &mut dx, dgamma: &mut dg, dbeta: &mut db };
        backward(&s, k::NormBackward { x, dy: g.t("dy"), gamma, stats }, grads).unwrap();
        g.check("layernorm y", &y, "y");
        g.check("layernorm dx", &dx, "dx");
        g.check("layernorm dgamma", &dg, "dgamma");
        g.check("layernorm dbeta", &db, "dbeta");
    }
}

#[test]
fn maxpool_k3s2() {
    let g = Golden::load("maxpool_k3s2");
    let xs = g.shape("x");
    let s = k::MaxPoolShape::k3s2(xs[0], xs[1], xs[2], xs[3]);
    let n = g.t("y").len();
    let mut y = vec![0f32; n];
    let mut a = vec![0u32; n];
    k::max_pool_forward(&s, g.t("x"), &mut y, &mut a).unwrap();
    g.check("maxpool y", &y, "y");
    let mut dx = vec![0f32; g.t("x").len()];
    k::max_pool_backward(&s, &a, g.t("dy"), &mut dx).unwrap();
    g.check("maxpool dx", &dx, "dx");
}

fn rows_of(g: &Golden) -> k::RowsShape {
    let xs = g.shape("x");
    k::RowsShape::new(xs[0], xs[1])
}

#[test]
fn log_softmax() {
    let g = Golden::load("log_softmax");
    let s = rows_of(&g);
    let mut y = vec![0f32; g.t("x").len()];
    k::log_softmax_forward(&s, g.t("x"), &mut y).unwrap();
    g.check("log_softmax y", &y, "y");
    let mut dx = vec![0f32; y.len()];
    k::log_softmax_backward(&s, &y, g.t("dy"), &mut dx).unwrap();
    g.check("log_softmax dx", &dx, "dx");
}

#[test]
fn logsumexp() {
    let g = Golden::load("logsumexp");
    let s = rows_of(&g);
    let mut y = vec![0f32; s.rows];
    k::log_sum_exp_forward(&s, g.t("x"), &mut y).unwrap();
    g.check("logsumexp y", &y, "y");
    let mut dx = vec![0f32; g.t("x").len()];
    k::log_sum_exp_backward(&s, g.t("x"), &y, g.t("dy"), &mut dx).unwrap();
    g.check("logsumexp dx", &dx, "dx");
}

fn cross_entropy_case(case: &str) {
    let g = Golden::load(case);
    let s = rows_of(&g);
    let labels: Vec<usize> = g.i64s["labels"].iter().map(|&l| usize::try_from(l).unwrap()).collect();
    let loss = k::cross_entropy_forward(&s, g.t("x"), &labels).unwrap();
    g.check(&format!("{case} loss"), &[loss], "y");
    let mut dx = vec![0f32; g.t("x").len()];
    k::cross_entropy_backward(&s, g.t("x"), &labels, 1.0, &mut dx).unwrap();
    g.check(&format!("{case} dx"), &dx, "dx");
}

#[test]
fn cross_entropy() {
    cross_entropy_case("cross_entropy");
}

#[test]
fn cross_entropy_large() {
    cross_entropy_case("cross_entropy_large");
}

#[test]
fn softplus() {
    let g = Golden::load("softplus");
    let x = g.t("x");
    let mut y = vec![0f32; x.len()];
    k::softplus_forward(x, &mut y).unwrap();
    g.check("softplus y", &y, "y");
    let mut dx = vec![0f32; x.len()];
    k::softplus_backward(x, g.t("dy"), &mut dx).unwrap();
    g.check("softplus dx", &dx, "dx");
}

#[test]
fn sigmoid() {
    let g = Golden::load("sigmoid");
    let x = g.t("x");
    let mut y = vec![0f32; x.len()];
    k::sigmoid_forward(x, &mut y).unwrap();
    g.check("sigmoid y", &y, "y");
    let mut dx = vec![0f32; x.len()];
    k::sigmoid_backward(&y, g.t("dy"), &mut dx).unwrap();
    g.check("sigmoid dx", &dx, "dx");
}
