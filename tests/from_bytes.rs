//! The in-memory entry points of the readers (used by the fuzz targets in
//! `fuzz/`) agree with the file readers, and fail with the same typed errors.

mod common;
use common::scratch::Scratch;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::{Compression, write::GzEncoder};
use infomax::data::cifar::{parse_cifar10, parse_cifar100};
use infomax::data::idx::parse_idx_images;
use infomax::data::stl::{parse_stl10_labels, read_stl10_labels};
use infomax::data::{Cifar100Labels, DataError, decode_bytes, load_cifar10};
use infomax::train::{TrainConfig, TrainError};

/// Writes `bytes` to a file in a fresh scratch folder, removed when the
/// test passes.
fn tmp_file(name: &str, bytes: &[u8]) -> (Scratch, PathBuf) {
    let dir = Scratch::new("from-bytes", name);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    (dir, p)
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3];
    b.extend(0..18u8);
    b
}

#[test]
fn decode_bytes_gunzips_by_magic_and_passes_raw_through() {
    let p = Path::new("mem");
    let raw = idx_images();
    assert_eq!(decode_bytes(p, raw.clone(), 1 << 20).unwrap(), raw);
    assert_eq!(decode_bytes(p, gz(&raw), 1 << 20).unwrap(), raw);
    let images = parse_idx_images(p, decode_bytes(p, gz(&raw), 1 << 20).unwrap()).unwrap();
    assert_eq!((images.n, images.height, images.width), (2, 3, 3));
    // The limit holds on in-memory input too, and a bad stream is a gzip error.
    assert!(matches!(decode_bytes(p, gz(&raw), 10), Err(DataError::TooLarge { limit: 10, .. })));
    assert!(matches!(decode_bytes(p, vec![0x1f, 0x8b, 0, 1], 1 << 20), Err(DataError::Gzip { .. })));
}

#[test]
fn parse_cifar_matches_the_file_reader() {
    let mut bytes = vec![7u8];
    bytes.extend((0..3072).map(|i| (i % 251) as u8));
    let from_file = load_cifar10(&[tmp_file("c10.bin", &bytes).1]).unwrap();
    let from_mem = parse_cifar10(Path::new("mem"), &bytes).unwrap();
    assert_eq!(from_mem, from_file);
    assert_eq!(from_mem.label(0), Some(7));
    // The same bytes read as CIFAR-100 are a partial record, not a panic.
    let e = parse_cifar100(Path::new("mem"), &bytes, Cifar100Labels::Fine).unwrap_err();
    assert!(matches!(e, DataError::PartialRecord { record_len: 3074, .. }), "{e}");
    let mut bad = bytes.clone();
    bad[0] = 10;
    assert!(matches!(parse_cifar10(Path::new("mem"), &bad), Err(DataError::LabelOutOfRange { label: 10, .. })));
}

#[test]
fn parse_stl_labels_matches_the_file_reader() {
    let bytes = [1u8, 10, 4];
    let from_file = read_stl10_labels(tmp_file("stl_y.bin", &bytes).1).unwrap();
    assert_eq!(parse_stl10_labels(Path::new("mem"), &bytes).unwrap(), from_file);
    assert_eq!(from_file, vec![0, 9, 3]);
    assert!(matches!(parse_stl10_labels(Path::new("mem"), &[0]), Err(DataError::LabelOutOfRange { .. })));
    assert!(matches!(parse_stl10_labels(Path::new("mem"), &[]), Err(DataError::Empty { .. })));
}

#[test]
fn train_config_parses_from_memory_like_from_file() {
    let toml = "epochs = 1\n[model]\nencoder = \"conv28\"\n[data]\nkind = \"fashion-mnist\"\ndir = \"x\"\n";
    let from_file = TrainConfig::from_file(&tmp_file("c.toml", toml.as_bytes()).1).unwrap();
    assert_eq!(TrainConfig::parse(toml, false).unwrap(), from_file);
    let json = serde_json::to_string(&from_file).unwrap();
    assert_eq!(TrainConfig::parse(&json, false).unwrap(), from_file); // `{` means JSON
    assert_eq!(TrainConfig::parse(&json, true).unwrap(), from_file);
    let e = TrainConfig::parse("epochs = 1\nbogus = 2\n", false).unwrap_err();
    assert!(matches!(&e, TrainError::Config(m) if m.contains("bogus")), "{e}");
    let e = TrainConfig::parse(&toml.replace("epochs = 1\n", ""), false).unwrap_err();
    assert!(matches!(&e, TrainError::Config(m) if m.contains("budget")), "{e}");
}
