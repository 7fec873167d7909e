//! STL-10 in its binary version (`stl10_binary`).
//!
//! - `train_X.bin`, `test_X.bin`, `unlabeled_X.bin`: images of 3×96×96
//!   bytes, one after another. Each image is 3 planes (R, G, B), and each
//!   plane is stored **column-major** (the files come from Matlab): byte
//!   `x · 96 + y` of a plane is the pixel at row `y`, column `x`. The reader
//!   transposes every plane into our row-major NCHW.
//! - `train_y.bin`, `test_y.bin`: one byte per image, labels **1..=10**,
//!   converted to 0..=9; 0 or more than 10 is [`DataError::LabelOutOfRange`].
//!
//! An image file whose length is not a whole number of images is
//! [`DataError::PartialRecord`]. `unlabeled_X.bin` (100 000 images, 2.6 GiB)
//! is read raw without a limit; gzipped, it exceeds [`super::MAX_GZ_BYTES`]:
//! read it with [`super::read_file_limited`] and [`parse_stl10_images`].

use std::path::Path;

use super::{DataError, Dataset, Result, read_file};

/// Side of an STL-10 image.
pub const STL_SIDE: usize = 96;
/// Bytes per STL-10 image: 3 × 96 × 96.
pub const STL_IMAGE_BYTES: usize = 3 * STL_SIDE * STL_SIDE;

/// A split of STL-10.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StlSplit {
    /// `train_X.bin` + `train_y.bin` (5 000 labeled images).
    Train,
    /// `test_X.bin` + `test_y.bin` (8 000 labeled images).
    Test,
    /// `unlabeled_X.bin` (100 000 images, no labels).
    Unlabeled,
}

/// Reads an STL-10 image file and returns `(n, NCHW bytes)`.
pub fn read_stl10_images(path: impl AsRef<Path>) -> Result<(usize, Vec<u8>)> {
    let path = path.as_ref();
    parse_stl10_images(path, read_file(path)?)
}

/// Transposes the (decompressed) bytes of an STL-10 image file into NCHW,
/// in place (no second copy of a 2.6 GiB file), and returns `(n, bytes)`;
/// `path` only names the file in errors.
pub fn parse_stl10_images(path: &Path, mut bytes: Vec<u8>) -> Result<(usize, Vec<u8>)> {
    if !bytes.len().is_multiple_of(STL_IMAGE_BYTES) {
        return Err(DataError::PartialRecord {
            path: path.to_path_buf(),
            format: "STL-10 image",
            record_len: STL_IMAGE_BYTES,
            len: bytes.len() as u64,
        });
    }
    if bytes.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    const PLANE: usize = STL_SIDE * STL_SIDE;
    for plane in bytes.chunks_exact_mut(PLANE) {
        // Column-major in (plane[x * 96 + y]) to row-major out (plane[y * 96 + x]):
        // a square plane transposes in place by swapping across the diagonal.
        for y in 0..STL_SIDE {
            for x in y + 1..STL_SIDE {
                plane.swap(x * STL_SIDE + y, y * STL_SIDE + x);
            }
        }
    }
    Ok((bytes.len() / STL_IMAGE_BYTES, bytes))
}

/// Reads an STL-10 label file, converting labels 1..=10 to 0..=9.
pub fn read_stl10_labels(path: impl AsRef<Path>) -> Result<Vec<u16>> {
    let path = path.as_ref();
    parse_stl10_labels(path, &read_file(path)?)
}

/// Parses the (decompressed) bytes of an STL-10 label file, converting
/// labels 1..=10 to 0..=9; `path` only names the file in errors.
pub fn parse_stl10_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u16>> {
    if bytes.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    bytes
        .iter()
        .enumerate()
        .map(|(record, &l)| {
            if (1..=10).contains(&l) {
                Ok(u16::from(l - 1))
            } else {
                Err(DataError::LabelOutOfRange {
                    path: path.to_path_buf(),
                    what: "label",
                    record,
                    label: u32::from(l),
                    valid: 1..=10,
                })
            }
        })
        .collect()
}

/// Loads labeled STL-10 images (`*_X.bin`) with their labels (`*_y.bin`):
/// 3×96×96, 10 classes (0..=9).
pub fn load_stl10(images_path: impl AsRef<Path>, labels_path: impl AsRef<Path>) -> Result<Dataset> {
    let (images_path, labels_path) = (images_path.as_ref(), labels_path.as_ref());
    let (n, images) = read_stl10_images(images_path)?;
    let labels = read_stl10_labels(labels_path)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch {
            images: images_path.to_path_buf(),
            n_images: n,
            labels: labels_path.to_path_buf(),
            n_labels: labels.len(),
        });
    }
    Ok(Dataset { images, labels: Some(labels), n, channels: 3, height: STL_SIDE, width: STL_SIDE, classes: 10 })
}

/// Loads STL-10 images without labels (`unlabeled_X.bin`): `labels` is `None`.
pub fn load_stl10_unlabeled(images_path: impl AsRef<Path>) -> Result<Dataset> {
    let (n, images) = read_stl10_images(images_path)?;
    Ok(Dataset { images, labels: None, n, channels: 3, height: STL_SIDE, width: STL_SIDE, classes: 10 })
}

/// Loads a split from the extracted `stl10_binary` directory.
pub fn load_stl10_dir(dir: impl AsRef<Path>, split: StlSplit) -> Result<Dataset> {
    let dir = dir.as_ref();
    match split {
        StlSplit::Train => load_stl10(dir.join("train_X.bin"), dir.join("train_y.bin")),
        StlSplit::Test => load_stl10(dir.join("test_X.bin"), dir.join("test_y.bin")),
        StlSplit::Unlabeled => load_stl10_unlabeled(dir.join("unlabeled_X.bin")),
    }
}
