//! CIFAR-10 and CIFAR-100 (fine and coarse) binary records on arbitrary
//! bytes: a typed error or a valid dataset, never a panic.
#![no_main]

use std::path::Path;

use infomax::data::cifar::{parse_cifar10, parse_cifar100};
use infomax::data::{Cifar100Labels, Dataset};
use libfuzzer_sys::fuzz_target;

fn check(ds: Dataset, record_len: usize, data: &[u8]) {
    assert_eq!(ds.n * record_len, data.len());
    ds.validate().expect("a parsed dataset is valid");
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.bin");
    if let Ok(ds) = parse_cifar10(path, data) {
        check(ds, 3073, data);
    }
    for which in [Cifar100Labels::Fine, Cifar100Labels::Coarse] {
        if let Ok(ds) = parse_cifar100(path, data, which) {
            check(ds, 3074, data);
        }
    }
});
