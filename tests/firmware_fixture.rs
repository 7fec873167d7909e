//! The Cortex-M4 firmware's fixtures (`embedded/cortex-m4`) stay true:
//! its smoke model (the same source file, included here) matches a naive
//! f64 reference, and the committed images and expected logits still match
//! what the host computes. Regenerate with
//! `cargo run --release --example firmware_fixture`.

#[path = "../embedded/cortex-m4/src/model.rs"]
#[allow(dead_code)]
mod model;
#[rustfmt::skip] // generated
#[path = "../embedded/cortex-m4/src/edge.rs"]
mod edge;
#[path = "../embedded/cortex-m4/src/expected.rs"]
mod expected;

use infomax::data::{Split, load_mnist_dir, normalize};

const TOL: f64 = 1e-5;

fn close(got: f32, want: f64) -> bool {
    (f64::from(got) - want).abs() <= TOL * want.abs().max(1.0)
}

fn params() -> Vec<f32> {
    let mut p = vec![0f32; model::PARAM_LEN];
    model::init_params(&mut p).unwrap();
    p
}

fn run(params: &[f32], image: &[u8]) -> [f32; model::CLASSES] {
    let mut arena = vec![f32::NAN; model::ARENA_LEN];
    let mut argmax = vec![0u32; model::ARGMAX_LEN];
    let mut logits = [0f32; model::CLASSES];
    model::forward(params, image, &mut arena, &mut argmax, &mut logits).unwrap();
    logits
}

/// Direct-loop conv (zero padding), f64, NCHW/OIHW, batch 1.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f64],
    c_in: usize,
    hw: usize,
    w: &[f32],
    b: &[f32],
    c_out: usize,
    stride: usize,
) -> (Vec<f64>, usize) {
    let (k, pad) = (3, 1);
    let out_hw = (hw + 2 * pad - k) / stride + 1;
    let mut y = vec![0.0; c_out * out_hw * out_hw];
    for o in 0..c_out {
        for oy in 0..out_hw {
            for ox in 0..out_hw {
                let mut acc = f64::from(b[o]);
                for c in 0..c_in {
                    for ky in 0..k {
                        for kx in 0..k {
                            let (iy, ix) = (
                                (oy * stride + ky) as isize - pad as isize,
                                (ox * stride + kx) as isize - pad as isize,
                            );
                            if iy >= 0 && ix >= 0 && (iy as usize) < hw && (ix as usize) < hw {
                                let xv = x[(c * hw + iy as usize) * hw + ix as usize];
                                acc += f64::from(w[((o * c_in + c) * k + ky) * k + kx]) * xv;
                            }
                        }
                    }
                }
                y[(o * out_hw + oy) * out_hw + ox] = acc.max(0.0); // ReLU
            }
        }
    }
    (y, out_hw)
}

fn naive_forward(params: &[f32], image: &[u8]) -> Vec<f64> {
    let (w1, b1, w2, b2, w3, b3) = model::layers(params).unwrap();
    let x: Vec<f64> = image.iter().map(|&p| f64::from(normalize(p))).collect();
    let (a1, hw1) = naive_conv(&x, 1, 28, w1, b1, 8, 1);
    let ph = (hw1 - 3) / 2 + 1;
    let mut pooled = vec![f64::NEG_INFINITY; 8 * ph * ph];
    for c in 0..8 {
        for oy in 0..ph {
            for ox in 0..ph {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let v = a1[(c * hw1 + oy * 2 + ky) * hw1 + ox * 2 + kx];
                        let p = &mut pooled[(c * ph + oy) * ph + ox];
                        *p = p.max(v);
                    }
                }
            }
        }
    }
    let (a2, _) = naive_conv(&pooled, 8, ph, w2, b2, 16, 2);
    (0..model::CLASSES)
        .map(|o| {
            f64::from(b3[o]) + a2.iter().enumerate().map(|(i, &v)| f64::from(w3[o * a2.len() + i]) * v).sum::<f64>()
        })
        .collect()
}

fn test_images() -> infomax::data::Dataset {
    load_mnist_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset"), Split::Test).unwrap()
}

#[test]
fn smoke_model_matches_naive_reference() {
    let p = params();
    let test = test_images();
    for i in 0..8 {
        let image = test.image(i).unwrap();
        let (got, want) = (run(&p, image), naive_forward(&p, image));
        for (&g, &w) in got.iter().zip(&want) {
            assert!(close(g, w), "image {i}: got {g}, naive {w}");
        }
    }
}

#[test]
fn smoke_model_normalisation_is_dims() {
    for x in 0..=255u8 {
        assert_eq!(model::normalize(x).to_bits(), normalize(x).to_bits(), "pixel {x}");
    }
}

#[test]
fn arena_and_argmax_lengths_cover_every_layer() {
    let d1 = model::conv1().validate().unwrap();
    let (ph, pw, _, pool_out) = model::pool().validate().unwrap();
    let d2 = model::conv2().validate().unwrap();
    assert_eq!((ph, pw), (13, 13));
    assert_eq!(model::ARGMAX_LEN, pool_out);
    let region_a = d1.col_len.max(pool_out);
    let region_b = d1.out_len.max(d2.col_len + d2.out_len);
    assert_eq!(model::ARENA_LEN, model::IMAGE_LEN + region_a + region_b);
    assert_eq!(model::fc().validate().unwrap().0, d2.out_len);
}

#[test]
fn committed_images_are_the_first_test_images() {
    let test = test_images();
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/embedded/cortex-m4/fixtures/images.bin")).unwrap();
    assert_eq!(committed.len(), expected::N_IMAGES * model::IMAGE_LEN);
    for (i, image) in committed.chunks_exact(model::IMAGE_LEN).enumerate() {
        assert_eq!(image, test.image(i).unwrap(), "image {i}");
        assert_eq!(expected::LABELS[i], test.label(i).unwrap(), "label {i}");
    }
}

#[test]
fn committed_logits_match_the_host() {
    let p = params();
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/embedded/cortex-m4/fixtures/images.bin")).unwrap();
    for (i, (image, want)) in committed.chunks_exact(model::IMAGE_LEN).zip(&expected::LOGITS).enumerate() {
        let got = run(&p, image);
        for (&g, &w) in got.iter().zip(want) {
            assert!(close(g, f64::from(w)), "image {i}: host {g}, committed {w} (regenerate the fixture?)");
        }
    }
}

#[test]
fn wrong_lengths_are_typed_errors() {
    let p = params();
    let image = [0u8; model::IMAGE_LEN];
    let (mut arena, mut argmax, mut logits) = (vec![0f32; model::ARENA_LEN], vec![0u32; model::ARGMAX_LEN], [0f32; 10]);
    let short_arena = &mut vec![0f32; model::ARENA_LEN - 1];
    let err = model::forward(&p, &image, short_arena, &mut argmax, &mut logits).unwrap_err();
    assert!(matches!(err, infomax::Error::LengthMismatch { what: "smoke model arena", .. }), "{err:?}");
    let err = model::forward(&p, &image[1..], &mut arena, &mut argmax, &mut logits).unwrap_err();
    assert!(matches!(err, infomax::Error::LengthMismatch { what: "smoke model image", .. }), "{err:?}");
    let err = model::forward(&p[1..], &image, &mut arena, &mut argmax, &mut logits).unwrap_err();
    assert!(matches!(err, infomax::Error::LengthMismatch { what: "smoke model params", .. }), "{err:?}");
}

#[test]
fn committed_edge_outputs_match_the_host_and_the_training_path() {
    // The firmware compares its Y with EDGE_Y; EDGE_Y must be what the host's
    // no-alloc path gives on the shipped weights now, and that must be the
    // eval-mode forward of the same weights loaded into the training model.
    use infomax::dim::{Dim, DimConfig, Mode};
    let committed =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/embedded/cortex-m4/fixtures/images.bin")).unwrap();
    let mut scratch = vec![0f32; edge::SCRATCH_LEN];
    // The training path: the edge encoder with the file's folded weights as
    // conv/linear weights and biases and identity BN statistics.
    let w = infomax::infer::Weights::<16>::parse(edge::WEIGHTS).unwrap();
    let mut model = Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
    let read = |name: &str| {
        let t = w.tensor(name).unwrap();
        let n: usize = t.shape().iter().product();
        let mut v = vec![0f32; n];
        t.read_f32(0, &mut v).unwrap();
        v
    };
    for (i, (conv, bn)) in [("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("fc", "bn4")].iter().enumerate() {
        let wname = format!("encoder.{conv}.weight");
        let bias = read(&format!("encoder.{conv}.bias"));
        model.tensor_mut(&wname).unwrap().copy_from_slice(&read(&wname));
        // BN in eval mode with mean 0, var 1 − ε, γ 1: y = x + β, so β carries the folded bias.
        model.tensor_mut(&format!("encoder.{bn}.bias")).unwrap().copy_from_slice(&bias);
        let rv = model.tensor_mut(&format!("encoder.{bn}.running_var")).unwrap();
        rv.iter_mut().for_each(|v| *v = 1.0 - 1e-5);
        assert!(i < 4);
    }
    for name in ["encoder.out.weight", "encoder.out.bias"] {
        model.tensor_mut(name).unwrap().copy_from_slice(&read(name));
    }
    let enc = &model.encoder;
    let mut acts = enc.alloc(1, false).unwrap();
    for (i, (image, want)) in committed.chunks_exact(edge::IMAGE_LEN).zip(&expected::EDGE_Y).enumerate() {
        let mut y = [0f32; edge::Y_DIM];
        edge::encode(image, &mut scratch, &mut y).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (&g, &c) in y.iter().zip(want) {
            assert!((g - c).abs() <= 1e-5 * scale, "image {i}: host {g}, committed {c} (regenerate the fixture?)");
        }
        let x: Vec<f32> = image.iter().map(|&p| infomax::infer::normalize(p)).collect();
        enc.forward(&model.params, &mut model.buffers, &x, &mut acts, Mode::Eval).unwrap();
        for (&g, &t) in y.iter().zip(enc.y(&acts)) {
            assert!((g - t).abs() <= 1e-5 * scale, "image {i}: inference {g}, training path {t}");
        }
    }
}
