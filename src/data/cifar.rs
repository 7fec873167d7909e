//! CIFAR-10 and CIFAR-100 in their binary versions (`cifar-10-binary`,
//! `cifar-100-binary`).
//!
//! A file is a sequence of records, each the label byte(s) then 3072 pixel
//! bytes: the red plane, then green, then blue, each 32×32 row-major. That
//! is already our NCHW layout, so pixels are copied as they are.
//! - CIFAR-10 (`data_batch_1.bin` ... `data_batch_5.bin`, `test_batch.bin`):
//!   1 label byte (0..=9) + 3072 = 3073 bytes.
//! - CIFAR-100 (`train.bin`, `test.bin`): coarse label byte (0..=19), fine
//!   label byte (0..=99), then 3072 = 3074 bytes.
//!
//! A file whose length is not a whole number of records is
//! [`DataError::PartialRecord`]; a label out of range is
//! [`DataError::LabelOutOfRange`].

use std::path::Path;

use super::{DataError, Dataset, Result, Split, read_file};

/// Pixels per CIFAR image: 3 × 32 × 32.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR-100 label to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the usual benchmark).
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// One CIFAR layout: label bytes before the pixels, which one to keep, its
/// range.
struct Layout {
    format: &'static str,
    label_bytes: usize,
    label_at: usize,
    what: &'static str,
    classes: usize,
}

fn load(paths: &[&Path], layout: &Layout) -> Result<Dataset> {
    if paths.is_empty() {
        return Err(DataError::Invalid { what: layout.format, reason: "no files given".into() });
    }
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for &path in paths {
        append_records(path, &read_file(path)?, layout, &mut images, &mut labels)?;
    }
    Ok(dataset(images, labels, layout))
}

/// 32×32×3 images with their labels.
fn dataset(images: Vec<u8>, labels: Vec<u16>, layout: &Layout) -> Dataset {
    Dataset {
        n: labels.len(),
        images,
        labels: Some(labels),
        channels: 3,
        height: 32,
        width: 32,
        classes: layout.classes,
    }
}

/// Checks one file's (decompressed) bytes and appends its records.
fn append_records(
    path: &Path,
    bytes: &[u8],
    layout: &Layout,
    images: &mut Vec<u8>,
    labels: &mut Vec<u16>,
) -> Result<()> {
    let record_len = layout.label_bytes + CIFAR_IMAGE_BYTES;
    if !bytes.len().is_multiple_of(record_len) {
        return Err(DataError::PartialRecord {
            path: path.to_path_buf(),
            format: layout.format,
            record_len,
            len: bytes.len() as u64,
        });
    }
    if bytes.is_empty() {
        return Err(DataError::Empty { path: path.to_path_buf() });
    }
    let n = bytes.len() / record_len;
    images.try_reserve(n * CIFAR_IMAGE_BYTES).map_err(|_| DataError::TooLarge {
        path: path.to_path_buf(),
        limit: (images.len() + n * CIFAR_IMAGE_BYTES) as u64,
    })?;
    labels.reserve(n);
    for (record, rec) in bytes.chunks_exact(record_len).enumerate() {
        let label = rec[layout.label_at];
        if usize::from(label) >= layout.classes {
            return Err(DataError::LabelOutOfRange {
                path: path.to_path_buf(),
                what: layout.what,
                record,
                label: u32::from(label),
                valid: 0..=(layout.classes as u32 - 1),
            });
        }
        labels.push(u16::from(label));
        images.extend_from_slice(&rec[layout.label_bytes..]);
    }
    Ok(())
}

const CIFAR10: Layout = Layout { format: "CIFAR-10 record", label_bytes: 1, label_at: 0, what: "label", classes: 10 };
const CIFAR100_FINE: Layout =
    Layout { format: "CIFAR-100 record", label_bytes: 2, label_at: 1, what: "fine label", classes: 100 };
const CIFAR100_COARSE: Layout =
    Layout { format: "CIFAR-100 record", label_bytes: 2, label_at: 0, what: "coarse label", classes: 20 };

fn parse(path: &Path, bytes: &[u8], layout: &Layout) -> Result<Dataset> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    append_records(path, bytes, layout, &mut images, &mut labels)?;
    Ok(dataset(images, labels, layout))
}

/// Parses the (decompressed) bytes of one CIFAR-10 binary batch file;
/// `path` only names the file in errors.
pub fn parse_cifar10(path: &Path, bytes: &[u8]) -> Result<Dataset> {
    parse(path, bytes, &CIFAR10)
}

/// Parses the (decompressed) bytes of one CIFAR-100 binary file with the
/// fine or coarse labels; `path` only names the file in errors.
pub fn parse_cifar100(path: &Path, bytes: &[u8], which: Cifar100Labels) -> Result<Dataset> {
    parse(path, bytes, cifar100_layout(which))
}

fn cifar100_layout(which: Cifar100Labels) -> &'static Layout {
    match which {
        Cifar100Labels::Fine => &CIFAR100_FINE,
        Cifar100Labels::Coarse => &CIFAR100_COARSE,
    }
}

/// Loads CIFAR-10 binary batch files (in order, concatenated): 3×32×32, 10 classes.
pub fn load_cifar10<P: AsRef<Path>>(paths: &[P]) -> Result<Dataset> {
    let paths: Vec<&Path> = paths.iter().map(AsRef::as_ref).collect();
    load(&paths, &CIFAR10)
}

/// Loads CIFAR-100 binary files (in order, concatenated) with the fine (100)
/// or coarse (20) labels: 3×32×32.
pub fn load_cifar100<P: AsRef<Path>>(paths: &[P], which: Cifar100Labels) -> Result<Dataset> {
    let paths: Vec<&Path> = paths.iter().map(AsRef::as_ref).collect();
    load(&paths, cifar100_layout(which))
}

/// Loads a CIFAR-10 split from the extracted `cifar-10-batches-bin`
/// directory: `data_batch_1.bin` ... `data_batch_5.bin` (train) or
/// `test_batch.bin` (test).
pub fn load_cifar10_dir(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    let paths: Vec<_> = match split {
        Split::Train => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
        Split::Test => vec![dir.join("test_batch.bin")],
    };
    load_cifar10(&paths)
}

/// Loads a CIFAR-100 split from the extracted `cifar-100-binary` directory:
/// `train.bin` or `test.bin`.
pub fn load_cifar100_dir(dir: impl AsRef<Path>, split: Split, which: Cifar100Labels) -> Result<Dataset> {
    let name = match split {
        Split::Train => "train.bin",
        Split::Test => "test.bin",
    };
    load_cifar100(&[dir.as_ref().join(name)], which)
}
