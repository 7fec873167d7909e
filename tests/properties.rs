//! Generated configs and checkpoint metadata against the validation, the
//! memory plan and the checkpoint reader (docs/reliability.md §5–6): each
//! gives a value or a typed error, never a panic; what validates is within
//! every bound, and its plan grows with the batch.

mod common;

use infomax::bounds;
use infomax::dim::{DimConfig, EncoderConfig, EncoderSpec, Layer};
use infomax::train::checkpoint::{self, Progress};
use infomax::train::memory;
use proptest::prelude::*;

/// Sizes around the bounds' ends: 0, small, the upper ends and just past.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=9, Just(64), Just(65), Just(4096), Just(4097), Just(65536), Just(65537), any::<usize>()]
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![
        (size(), size(), size(), 0usize..=70, any::<bool>()).prop_map(|(out, kernel, stride, padding, pool)| {
            Layer::Conv { out, kernel: kernel % 80, stride: stride % 80, padding, bn: true, relu: true, pool }
        }),
        size().prop_map(|out| Layer::Linear { out, bn: true, relu: true }),
        (size(), 0usize..=3).prop_map(|(planes, stride)| Layer::Bottleneck { planes, stride }),
    ]
}

prop_compose! {
    fn dim_config()(c in 0usize..=70, h in size(), w in size(), layers in proptest::collection::vec(layer(), 0..5),
                    local in 0usize..5, y in size(), d in size(),
                    alpha in prop_oneof![Just(0.0), Just(1.0), Just(1000.0), Just(1000.5), Just(-1.0), Just(f64::NAN)])
                    -> DimConfig {
        let enc = EncoderConfig { input: [c, h % 5000, w % 5000], layers, local_layer: local, y_dim: y, fold: None };
        let mut cfg = DimConfig::new("edge").mi_units(d).weights(alpha, 1.0, 0.0);
        cfg.encoder = EncoderSpec::Custom(enc);
        cfg
    }
}

proptest! {
    #![proptest_config(common::cfg(256))]

    #[test]
    fn generated_model_configs_validate_or_refuse_and_plans_grow_with_the_batch(cfg in dim_config(), b in 2usize..64) {
        let Ok(enc) = cfg.validate() else {
            // Refused: the plan must refuse too, without panicking.
            prop_assert!(memory::train_plan(&cfg, b).is_err());
            return Ok(());
        };
        prop_assert!(bounds::MI_UNITS.contains(cfg.mi_units as f64));
        prop_assert!(bounds::INPUT_CHANNELS.contains(enc.input[0] as f64));
        prop_assert!(enc.input[1..].iter().all(|&s| bounds::INPUT_SIDE.contains(s as f64)));
        prop_assert!(bounds::Y_DIM.contains(enc.y_dim as f64));
        prop_assert!(bounds::ALPHA.contains(cfg.alpha));
        if let (Ok(small), Ok(large)) = (memory::train_plan(&cfg, b), memory::train_plan(&cfg, 2 * b)) {
            prop_assert!(small.total() <= large.total(), "{} > {}", small.total(), large.total());
        }
    }
}

/// A valid checkpoint to edit: edge with D = 8.
fn checkpoint_bytes() -> &'static Vec<u8> {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let model = infomax::dim::Dim::new(DimConfig::new("edge").mi_units(8)).unwrap();
        checkpoint::to_bytes(&model, None, &Progress::default(), &[]).unwrap()
    })
}

fn with_metadata(key: &str, value: &str) -> Vec<u8> {
    let bytes = checkpoint_bytes();
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = md.metadata().clone().unwrap();
    meta.insert(key.into(), value.into());
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let owned: Vec<_> =
        st.tensors().into_iter().map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec())).collect();
    let views: Vec<_> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

/// JSON values around the bounds: integers at and past the ends, reals,
/// negative numbers, strings, nulls, nested objects.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        size().prop_map(|v| serde_json::json!(v)),
        any::<i64>().prop_map(|v| serde_json::json!(v)),
        any::<f64>().prop_filter("JSON has no NaN", |v| v.is_finite()).prop_map(|v| serde_json::json!(v)),
        "[a-z_]{0,8}".prop_map(serde_json::Value::String),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| proptest::collection::vec(inner, 0..4).prop_map(serde_json::Value::Array))
}

proptest! {
    #![proptest_config(common::cfg(256))]

    /// One key of a real checkpoint's `model_config` or `progress` set to a
    /// generated value: `load` gives a model whose settings validate, or a
    /// format error naming the file, and `read_metadata` agrees on the text.
    #[test]
    fn generated_checkpoint_metadata_loads_or_is_refused(
        which in 0usize..2,
        key in prop_oneof![Just("mi_units"), Just("alpha"), Just("beta"), Just("encoder"), Just("step"),
                           Just("epoch"), Just("batch"), Just("wall_s"), Just("occlusion"), Just("globals")],
        v in json_value(),
    ) {
        let (_, md) = safetensors::SafeTensors::read_metadata(checkpoint_bytes()).unwrap();
        let meta = md.metadata().clone().unwrap();
        let field = ["model_config", "progress"][which];
        let mut obj: serde_json::Value = serde_json::from_str(&meta[field]).unwrap();
        obj[key] = v;
        let text = obj.to_string();
        let dir = common::scratch::Scratch::new("prop", "metadata");
        let path = dir.join("c.safetensors");
        std::fs::write(&path, with_metadata(field, &text)).unwrap();
        prop_assert_eq!(&checkpoint::read_metadata(&path).unwrap()[field], &text);
        match checkpoint::load(&path) {
            Ok(l) => {
                prop_assert!(l.model.cfg.validate().is_ok());
                prop_assert!(l.progress.validate().is_ok());
            }
            Err(e) => prop_assert!(e.to_string().contains("c.safetensors"), "{}", e),
        }
    }
}
