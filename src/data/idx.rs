//! IDX files (MNIST, Fashion-MNIST, KMNIST, ...), raw or gzipped.
//!
//! An IDX file is a big-endian header, magic `0x0000TTDD` (type `TT`,
//! `DD` dimensions) then one `u32` per dimension, followed by the data.
//! Images are `0x00000803` (unsigned bytes, 3 dims: count, rows, columns),
//! labels `0x00000801` (unsigned bytes, 1 dim: count). The payload must be
//! exactly the product of the dimensions: shorter is
//! [`DataError::Truncated`], longer is [`DataError::TrailingBytes`].

use std::path::Path;

use super::{DataError, Dataset, Result, Split, find_in_dir, read_file};

/// Magic of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an IDX file of unsigned bytes with 1 dimension (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// The images of an IDX file: `n` grey images of `height × width`,
/// row-major, one after another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub n: usize,
    /// Rows per image.
    pub height: usize,
    /// Columns per image.
    pub width: usize,
    /// `n · height · width` bytes.
    pub pixels: Vec<u8>,
}

/// Reads an IDX image file (`0x00000803`), raw or gzipped.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    parse_idx_images(path, read_file(path)?)
}

/// Reads an IDX label file (`0x00000801`), raw or gzipped.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    parse_idx_labels(path, read_file(path)?)
}

/// Parses the (decompressed) bytes of an IDX image file; `path` only names
/// the file in errors.
pub fn parse_idx_images(path: &Path, bytes: Vec<u8>) -> Result<IdxImages> {
    let (dims, pixels) = parse_idx::<3>(path, bytes, "IDX images")?;
    let [n, height, width] = dims;
    Ok(IdxImages { n, height, width, pixels })
}

/// Parses the (decompressed) bytes of an IDX label file; `path` only names
/// the file in errors.
pub fn parse_idx_labels(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>> {
    let (_, labels) = parse_idx::<1>(path, bytes, "IDX labels")?;
    Ok(labels)
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = bytes.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_be_bytes(b)
}

/// Checks the header of an unsigned-byte IDX file with `D` dimensions and
/// returns the dimensions and the payload (the header drained off `bytes`).
fn parse_idx<const D: usize>(path: &Path, mut bytes: Vec<u8>, format: &'static str) -> Result<([usize; D], Vec<u8>)> {
    let header_len = 4 + 4 * D;
    let expected_magic = 0x0800 | D as u32;
    if bytes.len() >= 4 && be_u32(&bytes, 0) != expected_magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), expected: expected_magic, got: be_u32(&bytes, 0) });
    }
    if bytes.len() < header_len {
        return Err(DataError::TruncatedHeader {
            path: path.to_path_buf(),
            format,
            need: header_len,
            got: bytes.len(),
        });
    }
    let mut dims32 = [0u32; D];
    for (k, d) in dims32.iter_mut().enumerate() {
        *d = be_u32(&bytes, 4 + 4 * k);
    }
    let header = match dims32.as_slice() {
        [n, rows, cols] => format!("{n} images of {rows}×{cols}"),
        [n] => format!("{n} labels"),
        other => format!("dimensions {other:?}"),
    };
    if dims32[0] == 0 {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    if let Some(k) = dims32.iter().position(|&d| d == 0) {
        return Err(DataError::BadHeader { path: path.to_path_buf(), reason: format!("{header}: dimension {k} is 0") });
    }
    let overflow = || DataError::Overflow { path: path.to_path_buf(), header: header.clone() };
    let expected = dims32.iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::from(d))).ok_or_else(overflow)?;
    let got = (bytes.len() - header_len) as u64;
    if got < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), header, expected, got });
    }
    if got > expected {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), header, expected, got });
    }
    let mut dims = [0usize; D];
    for (d, &d32) in dims.iter_mut().zip(&dims32) {
        *d = usize::try_from(d32).map_err(|_| overflow())?;
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}

/// Loads an IDX image file and its label file as a 1-channel dataset with
/// 10 classes; see [`load_idx_pair_classes`].
pub fn load_idx_pair(images_path: impl AsRef<Path>, labels_path: impl AsRef<Path>) -> Result<Dataset> {
    load_idx_pair_classes(images_path, labels_path, 10)
}

/// Loads an IDX image file and its label file: the counts must agree and
/// every label must be below `classes` (1..=256).
pub fn load_idx_pair_classes(
    images_path: impl AsRef<Path>,
    labels_path: impl AsRef<Path>,
    classes: usize,
) -> Result<Dataset> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    if !(1..=256).contains(&classes) {
        return Err(DataError::Invalid {
            what: "IDX classes",
            reason: format!("{classes} classes: byte labels need 1..=256"),
        });
    }
    let images = read_idx_images(images_path)?;
    let labels = read_idx_labels(labels_path)?;
    if images.n != labels.len() {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            n_images: images.n,
            labels: labels_path.to_path_buf(),
            n_labels: labels.len(),
        });
    }
    if let Some((record, &label)) = labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= classes) {
        return Err(DataError::LabelOutOfRange {
            path: labels_path.to_path_buf(),
            what: "label",
            record,
            label: u32::from(label),
            valid: 0..=(classes as u32 - 1),
        });
    }
    Ok(Dataset {
        images: images.pixels,
        labels: Some(labels.into_iter().map(u16::from).collect()),
        n: images.n,
        channels: 1,
        height: images.height,
        width: images.width,
        classes,
    })
}

/// Loads a split of MNIST-style data from `dir`, under the standard names
/// `{train,t10k}-images-idx3-ubyte` and `{train,t10k}-labels-idx1-ubyte`,
/// each with or without `.gz` (the gzipped name is tried first; the content,
/// not the name, decides whether it is decompressed). 10 classes.
pub fn load_mnist_dir(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let names = |kind: &str| vec![format!("{prefix}-{kind}-ubyte.gz"), format!("{prefix}-{kind}-ubyte")];
    let images = find_in_dir(dir, &names("images-idx3"))?;
    let labels = find_in_dir(dir, &names("labels-idx1"))?;
    load_idx_pair(images, labels)
}
