//! Shapes and arguments that cannot work get a typed `infomax::Error`,
//! never a panic.

use infomax::Error;
use infomax::kernels::{self as k, par};
use proptest::prelude::*;

fn conv(
    batch: usize,
    cin: usize,
    hw: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> k::Conv2dShape {
    k::Conv2dShape::new(batch, cin, (hw, hw), cout, kernel, stride, padding)
}

#[test]
fn conv_kernel_larger_than_padded_input() {
    let s = conv(1, 1, 3, 1, 6, 1, 1);
    assert!(matches!(s.validate(), Err(Error::InvalidShape { what: "conv2d", .. })));
    let mut y = [0f32; 1];
    let r = k::conv2d_forward(
        &s,
        &[0.0; 9],
        k::ConvParams { w: &[0.0; 36], bias: None },
        k::ConvOut { y: &mut y, cols: &mut [] },
    );
    assert!(matches!(r, Err(Error::InvalidShape { .. })), "{r:?}");
    // Exactly fits once padded: fine.
    assert!(conv(1, 1, 3, 1, 5, 1, 1).validate().is_ok());
}

#[test]
fn conv_zero_sizes() {
    for (s, what) in [
        (conv(0, 1, 3, 1, 1, 1, 0), "conv2d batch"),
        (conv(1, 0, 3, 1, 1, 1, 0), "conv2d in_channels"),
        (conv(1, 1, 0, 1, 1, 1, 0), "conv2d in_h"),
        (conv(1, 1, 3, 0, 1, 1, 0), "conv2d out_channels"),
        (conv(1, 1, 3, 1, 0, 1, 0), "conv2d kernel_h"),
        (conv(1, 1, 3, 1, 1, 0, 0), "conv2d stride"),
    ] {
        assert_eq!(s.validate(), Err(Error::ZeroSize { what }));
    }
}

#[test]
fn conv_length_mismatches_name_the_argument() {
    let s = conv(2, 3, 8, 4, 3, 1, 1);
    let d = s.validate().unwrap();
    let x = vec![0f32; d.in_len];
    let w = vec![0f32; d.weight_len];
    let mut y = vec![0f32; d.out_len];
    let mut sc = vec![0f32; s.forward_scratch_len().unwrap()];
    let e =
        k::conv2d_forward(&s, &x[1..], k::ConvParams { w: &w, bias: None }, k::ConvOut { y: &mut y, cols: &mut sc })
            .unwrap_err();
    assert_eq!(e, Error::LengthMismatch { what: "conv2d input", expected: d.in_len, got: d.in_len - 1 });
    let e =
        k::conv2d_forward(&s, &x, k::ConvParams { w: &w[1..], bias: None }, k::ConvOut { y: &mut y, cols: &mut sc })
            .unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "conv2d weight", .. }));
    let e = k::conv2d_forward(
        &s,
        &x,
        k::ConvParams { w: &w, bias: Some(&[0.0; 3]) },
        k::ConvOut { y: &mut y, cols: &mut sc },
    )
    .unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "conv2d bias", .. }));
    let e =
        k::conv2d_forward(&s, &x, k::ConvParams { w: &w, bias: None }, k::ConvOut { y: &mut y[1..], cols: &mut sc })
            .unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "conv2d output", .. }));
    let e =
        k::conv2d_forward(&s, &x, k::ConvParams { w: &w, bias: None }, k::ConvOut { y: &mut y, cols: &mut sc[1..] })
            .unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "conv2d forward scratch", .. }));
    let mut cols = vec![0f32; d.batched_col_len - 1];
    let e =
        par::conv2d_forward_par(&s, &x, k::ConvParams { w: &w, bias: None }, k::ConvOut { y: &mut y, cols: &mut cols })
            .unwrap_err();
    assert!(matches!(e, Error::LengthMismatch { what: "conv2d batched columns", .. }));
    // The message names the argument and both lengths.
    let msg = Error::LengthMismatch { what: "conv2d input", expected: 10, got: 9 }.to_string();
    assert_eq!(msg, "conv2d input: expected length 10, got 9");
}

#[test]
fn size_overflow_is_an_error() {
    let s = conv(usize::MAX / 2, 4, 1024, 1, 1, 1, 0);
    assert!(matches!(s.validate(), Err(Error::Overflow { .. })));
    let l = k::LinearShape::new(usize::MAX, 2, 2);
    assert!(matches!(l.validate(), Err(Error::Overflow { .. })));
    let n = k::NormShape::new(usize::MAX, 2, 2);
    assert!(matches!(n.validate(), Err(Error::Overflow { .. })));
}

#[test]
fn gemm_views_are_checked() {
    let a = [0f32; 6];
    assert!(k::MatRef::row_major(&a, 2, 4).is_err());
    assert!(k::MatRef::new(&a, 2, 3, 4, 1).is_err(), "last row reaches past the end");
    let mut c = [0f32; 4];
    assert!(k::MatMut::new(&mut c, 2, 2, 1, 1).is_err(), "aliasing strides");
    assert!(k::MatMut::new(&mut c, 2, 2, 0, 1).is_err(), "aliasing strides");
    let am = k::MatRef::row_major(&a, 2, 3).unwrap();
    let bm = k::MatRef::row_major(&a, 2, 3).unwrap();
    let e = k::gemm(k::MatMut::row_major(&mut c, 2, 2).unwrap(), am, bm, false).unwrap_err();
    assert!(matches!(e, Error::InvalidShape { what: "gemm", .. }));
    assert!(am.row_range(1, 3).is_err());
}

#[test]
fn linear_norm_pool_loss_errors() {
    let s = k::LinearShape::new(2, 3, 4);
    let mut y = [0f32; 8];
    assert!(matches!(
        k::linear_forward(&s, &[0.0; 5], &[0.0; 12], None, &mut y),
        Err(Error::LengthMismatch { what: "linear input", .. })
    ));
    assert_eq!(k::LinearShape::new(2, 0, 4).validate(), Err(Error::ZeroSize { what: "linear in_features" }));

    let ns = k::NormShape::new(1, 2, 1);
    let (mut rm, mut rv, mut y2, mut sm, mut si) = ([0f32; 2], [1f32; 2], [0f32; 2], [0f32; 2], [0f32; 2]);
    let cfg = k::BatchNormConfig::default();
    let r = k::batch_norm_train_forward(
        &ns,
        &cfg,
        k::BnTrain {
            x: &[1.0, 2.0],
            scale_shift: k::ScaleShift { gamma: &[1.0; 2], beta: &[0.0; 2] },
            running: k::RunningStats { mean: &mut rm, var: &mut rv },
            y: &mut y2,
            saved: k::SavedStats { mean: &mut sm, invstd: &mut si },
        },
    );
    assert!(matches!(r, Err(Error::InvalidShape { what: "batch norm (train)", .. })), "{r:?}");
    let bad = k::BatchNormConfig { eps: 0.0, momentum: 0.1 };
    let ns = k::NormShape::new(2, 1, 1);
    let r = k::batch_norm_train_forward(
        &ns,
        &bad,
        k::BnTrain {
            x: &[1.0, 2.0],
            scale_shift: k::ScaleShift { gamma: &[1.0], beta: &[0.0] },
            running: k::RunningStats { mean: &mut rm[..1], var: &mut rv[..1] },
            y: &mut y2,
            saved: k::SavedStats { mean: &mut sm[..1], invstd: &mut si[..1] },
        },
    );
    assert!(matches!(r, Err(Error::InvalidParameter { what: "norm eps", .. })));

    let ps = k::MaxPoolShape::k3s2(1, 1, 2, 5);
    assert!(matches!(ps.validate(), Err(Error::InvalidShape { what: "max pool", .. })));
    let ps = k::MaxPoolShape::k3s2(1, 1, 3, 3);
    let mut dx = [0f32; 9];
    assert!(k::max_pool_backward(&ps, &[9], &[1.0], &mut dx).is_err(), "argmax outside the plane");

    let rs = k::RowsShape::new(2, 3);
    let e = k::cross_entropy_forward(&rs, &[0f32; 6], &[0, 3]).unwrap_err();
    assert_eq!(e, Error::LabelOutOfRange { index: 1, label: 3, classes: 3 });
    assert!(matches!(k::RowsShape::new(0, 3).validate(), Err(Error::ZeroSize { .. })));

    let (mut yv, mut m) = ([0f32; 2], [0f32; 2]);
    for p in [1.0, -0.1, f64::NAN] {
        assert!(matches!(
            k::dropout_forward(p, 0, 0, &[1.0, 2.0], &mut yv, &mut m),
            Err(Error::InvalidParameter { what: "dropout p", .. })
        ));
    }
}

proptest! {
    /// Arbitrary shapes (zeros included) with arbitrary slice lengths: every
    /// call returns Ok or a typed error, and never panics.
    #[test]
    fn arbitrary_conv_calls_never_panic(batch in 0usize..3, cin in 0usize..3, h in 0usize..6, w in 0usize..6,
                                        cout in 0usize..3, kh in 0usize..7, kw in 0usize..7, stride in 0usize..3,
                                        padding in 0usize..3, lens in proptest::collection::vec(0usize..400, 6)) {
        let s = k::Conv2dShape { batch, in_channels: cin, in_h: h, in_w: w, out_channels: cout,
                                 kernel_h: kh, kernel_w: kw, stride, padding };
        let x = vec![0.5f32; lens[0]];
        let wt = vec![0.5f32; lens[1]];
        let mut y = vec![0f32; lens[2]];
        let mut sc = vec![0f32; lens[3]];
        let _ = k::conv2d_forward(&s, &x, k::ConvParams { w: &wt, bias: None }, k::ConvOut { y: &mut y, cols: &mut sc });
        let mut dx = vec![0f32; lens[4]];
        let mut dw = vec![0f32; lens[5]];
        let _ = k::conv2d_backward(&s, &x, &wt, &y, k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: None }, &mut sc);
        let mut cols = vec![0f32; lens[3]];
        let _ = par::conv2d_forward_par(&s, &x, k::ConvParams { w: &wt, bias: None }, k::ConvOut { y: &mut y, cols: &mut cols });
        let _ = par::conv2d_backward_par(&s, &mut cols, &wt, &y, k::ConvGrads { dx: Some(&mut dx), dw: &mut dw, db: None });
    }

    #[test]
    fn arbitrary_norm_and_linear_calls_never_panic(n in 0usize..4, c in 0usize..4, sp in 0usize..4,
                                                   lens in proptest::collection::vec(0usize..40, 8)) {
        let s = k::NormShape::new(n, c, sp);
        let v = |i: usize| vec![1f32; lens[i]];
        let (mut a, mut b, mut cc, mut d, mut e) = (v(3), v(4), v(5), v(6), v(7));
        let _ = k::batch_norm_train_forward(&s, &k::BatchNormConfig::default(), k::BnTrain { x: &v(0), scale_shift: k::ScaleShift { gamma: &v(1), beta: &v(2) }, running: k::RunningStats { mean: &mut a, var: &mut b }, y: &mut cc, saved: k::SavedStats { mean: &mut d, invstd: &mut e } });
        let _ = par::batch_norm_train_forward_par(&s, &k::BatchNormConfig::default(), k::BnTrain { x: &v(0), scale_shift: k::ScaleShift { gamma: &v(1), beta: &v(2) }, running: k::RunningStats { mean: &mut a, var: &mut b }, y: &mut cc, saved: k::SavedStats { mean: &mut d, invstd: &mut e } });
        let _ = k::layer_norm_forward(&s, 1e-5, k::LayerNormForward { x: &v(0), scale_shift: k::ScaleShift { gamma: &v(1), beta: &v(2) }, y: &mut a, saved: k::SavedStats { mean: &mut b, invstd: &mut cc } });
        let _ = par::layer_norm_backward_par(&s, k::NormBackward { x: &v(0), dy: &v(1), gamma: &v(2), stats: k::SavedStats { mean: &v(3), invstd: &v(4) } }, k::NormGrads { dx: &mut cc, dgamma: &mut d, dbeta: &mut e });
        let l = k::LinearShape::new(n, c, sp);
        let _ = k::linear_forward(&l, &v(0), &v(1), Some(&v(2)), &mut a);
        let _ = par::linear_backward_par(&l, &v(0), &v(1), &v(2), k::LinearGrads { dx: Some(k::InputGrad::Write(&mut a)), dw: &mut b, db: Some(&mut cc) });
    }
}
