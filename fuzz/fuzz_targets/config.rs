//! The config parser: TrainConfig (TOML and JSON, with its model DimConfig)
//! and a bare DimConfig, on arbitrary text. A typed error or a validated
//! config, never a panic.
#![no_main]

use infomax::dim::DimConfig;
use infomax::train::TrainConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for json in [false, true] {
        if let Ok(cfg) = TrainConfig::parse(text, json) {
            // A config that parsed and validated survives a round trip.
            let back = serde_json::to_string(&cfg).expect("serialize a valid config");
            assert_eq!(TrainConfig::parse(&back, true).expect("re-parse"), cfg);
        }
    }
    if let Ok(cfg) = toml::from_str::<DimConfig>(text) {
        let _ = cfg.validate();
    }
    if let Ok(cfg) = serde_json::from_str::<DimConfig>(text) {
        let _ = cfg.validate();
    }
});
