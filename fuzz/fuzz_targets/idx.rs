//! IDX image and label parsing on arbitrary (raw) bytes: a typed error or a
//! dataset whose sizes agree with its header, never a panic.
#![no_main]

use std::path::Path;

use infomax::data::idx::{parse_idx_images, parse_idx_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.idx");
    if let Ok(images) = parse_idx_images(path, data.to_vec()) {
        assert_eq!(images.pixels.len(), images.n * images.height * images.width);
        assert_eq!(images.pixels.len() + 16, data.len());
    }
    if let Ok(labels) = parse_idx_labels(path, data.to_vec()) {
        assert_eq!(labels.len() + 8, data.len());
    }
});
