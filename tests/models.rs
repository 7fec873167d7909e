//! Encoder shapes and sizes derived from the configs (docs/method.md §10 item 1), MI-head
//! initialisation (docs/method.md §10 item 2), and the edge encoder's budget.

use infomax::dim::{Dim, DimConfig, EncoderConfig, Estimator};

fn taps(name: &str) -> (Vec<[usize; 3]>, EncoderConfig) {
    let cfg = EncoderConfig::preset(name).unwrap();
    (cfg.shapes().unwrap(), cfg)
}

#[test]
fn conv32_taps() {
    let (s, c) = taps("conv32");
    assert_eq!(s[c.local_layer], [128, 8, 8]);
    assert_eq!(s[2], [256, 4, 4]); // conv tap, 4096
    assert_eq!(s[3], [1024, 1, 1]); // fc tap
    let m = Dim::new(DimConfig::new("conv32").mi_units(64)).unwrap();
    assert_eq!(m.encoder.conv_tap(), Some(2));
    assert_eq!(m.encoder.fc_tap(), Some(3));
    assert_eq!(m.locations(), 64);
    assert_eq!(m.table.get("encoder.out.weight").unwrap().shape, vec![64, 1024]);
    assert_eq!(m.table.get("encoder.fc.weight").unwrap().shape, vec![1024, 4096]);
    // Layers with BN have no bias (docs/method.md §2.1).
    assert!(m.table.get("encoder.conv1.bias").is_none());
}

#[test]
fn alex64_taps() {
    let (s, c) = taps("alex64");
    assert_eq!(s[0], [96, 31, 31]);
    assert_eq!(s[1], [192, 15, 15]);
    assert_eq!(s[c.local_layer], [384, 15, 15]);
    assert_eq!(s[4], [192, 7, 7]); // conv tap, 9408
    assert_eq!(s[6], [4096, 1, 1]);
    let m = Dim::new(DimConfig::new("alex64").mi_units(64)).unwrap();
    assert_eq!(m.locations(), 225);
    assert!(m.table.get("encoder.fc1.weight").is_some() && m.table.get("encoder.fc2.weight").is_some());
    assert_eq!(m.table.get("encoder.bn7.weight").unwrap().shape, vec![4096]);
}

#[test]
fn conv28_matches_the_reference_names() {
    let m = Dim::new(DimConfig::new("conv28").mi_units(512)).unwrap();
    let names: Vec<&str> = m.table.entries().iter().map(|e| e.name.as_str()).take(10).collect();
    assert_eq!(
        names,
        [
            "encoder.conv1.weight",
            "encoder.bn1.weight",
            "encoder.bn1.bias",
            "encoder.conv2.weight",
            "encoder.bn2.weight",
            "encoder.bn2.bias",
            "encoder.fc.weight",
            "encoder.bn3.weight",
            "encoder.bn3.bias",
            "encoder.out.weight"
        ]
    );
    assert_eq!(m.locations(), 49);
    // 7.42 M parameters, as the reference harness reports for D = 512.
    let total = m.table.len();
    assert!((7_400_000..7_450_000).contains(&total), "{total}");
}

#[test]
fn mi_head_shortcut_starts_near_identity() {
    let m = Dim::new(DimConfig::new("conv28").mi_units(512).seed(9)).unwrap();
    let w = m.tensor("local_head.shortcut.weight").unwrap();
    let (d, n_in) = (512, 128);
    for r in 0..d {
        for c in 0..n_in {
            let v = w[r * n_in + c];
            if r == c {
                assert_eq!(v, 1.0);
            } else {
                assert!(v.abs() <= 0.01, "w[{r}][{c}] = {v}");
            }
        }
    }
    // Different seeds give different weights; the same seed the same.
    let again = Dim::new(DimConfig::new("conv28").mi_units(512).seed(9)).unwrap();
    assert_eq!(again.params, m.params);
    let other = Dim::new(DimConfig::new("conv28").mi_units(512).seed(10)).unwrap();
    assert_ne!(other.params, m.params);
}

#[test]
fn edge_encoder_fits_a_microcontroller() {
    let m = Dim::new(DimConfig::new("edge").mi_units(64)).unwrap();
    let enc_params: usize = m.table.entries().iter().filter(|e| e.name.starts_with("encoder.")).map(|e| e.len).sum();
    // Weights in f16, BN folded away later: at most the unfolded count × 2 bytes.
    assert!(enc_params * 2 <= 1 << 20, "{enc_params} parameters");
    // conv 1→16, 16→32, 32→64 (3×3), fc 1024→256, out 256→64 + bias, BN γ/β.
    assert_eq!(enc_params, 16 * 9 + 32 * 16 * 9 + 64 * 32 * 9 + 256 * 1024 + 64 * 256 + 64 + 2 * (16 + 32 + 64 + 256));
    let (s, c) = taps("edge");
    assert_eq!(s[c.local_layer], [32, 7, 7]);
    // Largest single activation at batch 1, in f32 bytes.
    let largest = s.iter().map(|v| v.iter().product::<usize>()).max().unwrap() * 4;
    assert!(largest <= 16 * 1024, "{largest}");
}

#[test]
fn bad_model_configs_are_errors() {
    assert!(Dim::new(DimConfig::new("conv99")).is_err());
    assert!(Dim::new(DimConfig::new("conv28").mi_units(0)).is_err());
    assert!(Dim::new(DimConfig::new("conv28").weights(0.0, 0.0, 0.0)).is_err());
    assert!(Dim::new(DimConfig::new("conv28").weights(f64::NAN, 1.0, 0.0)).is_err());
    let m = Dim::new(DimConfig::new("edge").mi_units(8).estimator(Estimator::Dv)).unwrap();
    assert!(m.workspace(1).is_err(), "batch 1 has no negatives");
}
