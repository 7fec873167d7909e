//! The memory plan on arbitrary configs: every config that parses and
//! validates gets a plan (saturating, never a panic or an overflow), the
//! plan grows with the batch, and the size parser of `--max-memory` takes
//! any text.
#![no_main]

use infomax::train::TrainConfig;
use infomax::train::memory::{Limit, parse_size, train_plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(bytes) = parse_size(text) {
        assert!(bytes >= 1);
    }
    for json in [false, true] {
        let Ok(cfg) = TrainConfig::parse(text, json) else { continue };
        let b = cfg.batch_size;
        let (Ok(small), Ok(large)) = (train_plan(&cfg.model, b), train_plan(&cfg.model, b.saturating_mul(2))) else {
            continue;
        };
        assert!(small.total() <= large.total(), "the plan shrank with a larger batch");
        let _ = small.check(Limit { bytes: 1 << 30, from: "fuzz" });
        if let Ok(enc) = cfg.model.validate() {
            let eval = enc.activation_floats(b, false).unwrap_or(0);
            let train = enc.activation_floats(b, true).unwrap_or(u128::MAX);
            assert!(eval <= train, "evaluation planned more than training");
        }
    }
});
