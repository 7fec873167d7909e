//! STL-10 binary images (column-major planes) and labels (1..=10) on
//! arbitrary bytes: a typed error or consistent output, never a panic.
#![no_main]

use std::path::Path;

use infomax::data::stl::{STL_IMAGE_BYTES, parse_stl10_images, parse_stl10_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.bin");
    if let Ok((n, images)) = parse_stl10_images(path, data.to_vec()) {
        assert_eq!(n * STL_IMAGE_BYTES, images.len());
        assert_eq!(images.len(), data.len());
    }
    if let Ok(labels) = parse_stl10_labels(path, data) {
        assert_eq!(labels.len(), data.len());
        assert!(labels.iter().all(|&l| l < 10));
    }
});
