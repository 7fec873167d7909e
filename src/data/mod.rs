//! Datasets for DIM training (feature `train`): readers for the IDX
//! (MNIST, Fashion-MNIST), CIFAR-10/100 and STL-10 binary formats, seeded
//! augmentation (random crop, horizontal flip) and a seeded, resumable loader.
//!
//! Every dataset becomes one [`Dataset`]: `u8` pixels in **NCHW** (each
//! image is its channel planes one after another, each plane row-major, the
//! PyTorch layout) and optional labels `0..classes`. A batch is written into
//! a caller's `f32` slice, normalised as torchvision's
//! `ToTensor()` + `Normalize(0.5, 0.5)`: `(x / 255 − 0.5) / 0.5`, so 0 maps
//! to −1 and 255 to 1 exactly.
//!
//! Readers never trust a header: every size is checked against the bytes
//! actually present (no silent truncation, no ignored trailing bytes),
//! products of dimensions are overflow-checked, memory is only ever
//! allocated for data that exists, and gzip input (recognised by its magic
//! bytes `1f 8b`, not by the file name) is decompressed with a size limit
//! ([`MAX_GZ_BYTES`]). Every malformed input is a [`DataError`] that names
//! the file and says what is wrong; none panics.
//!
//! | module | what |
//! |---|---|
//! | [`idx`] | IDX files, `load_idx_pair`, `load_mnist_dir` |
//! | [`cifar`] | CIFAR-10 and CIFAR-100 binary batches |
//! | [`stl`] | STL-10 binary files (column-major planes, 1-based labels) |
//! | [`folder`] | image folders (`root/<class>/*.png`), PNG and JPEG |
//! | [`transform`] | grayscale ↔ RGB, resize to cover, centre crop (per image) |
//! | [`augment`] | random/center crop and horizontal flip into the `f32` batch |
//! | [`loader`] | per-epoch Fisher–Yates shuffling, batches, drop-last |
//! | [`rng`] | SplitMix64, a one-`u64`-state RNG that checkpoints trivially |
//!
//! See `docs/data.md` for the error raised by each kind of malformed file.
//!
//! ```
//! use infomax::data::{Augment, Crop, Loader, Split, load_mnist_dir};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");
//! let train = load_mnist_dir(dir, Split::Train)?; // the bundled subset: 10 000 × 1×28×28
//! let loader = Loader::new(train.n, 64, 0)?; // shuffled, drop-last
//! assert_eq!(loader.batches_per_epoch(), 156);
//! let aug = Augment::none().with_crop(Crop::random(28, 2)).with_hflip(true);
//! let (c, h, w) = aug.output_shape(train.channels, train.height, train.width)?;
//! let mut x = vec![0f32; 64 * c * h * w];
//! let mut y = vec![0usize; 64];
//! let epoch = 0;
//! for (b, idx) in loader.epoch(epoch).batches().enumerate().take(2) {
//!     train.write_batch_augmented(idx, &aug, &mut loader.augment_rng(epoch, b as u64), &mut x)?;
//!     train.write_labels(idx, &mut y)?;
//!     assert!(x.iter().all(|v| (-1.0..=1.0).contains(v)) && y.iter().all(|&l| l < 10));
//! }
//! # Ok::<(), infomax::data::DataError>(())
//! ```

pub mod augment;
pub mod cifar;
pub mod folder;
pub mod idx;
pub mod loader;
pub use crate::rng;
pub mod stl;
pub mod transform;

pub use augment::{Augment, Crop, CropMode};
pub use cifar::{Cifar100Labels, load_cifar10, load_cifar10_dir, load_cifar100, load_cifar100_dir};
pub use folder::{Folder, FolderOptions, load_image_folder};
pub use idx::{load_idx_pair, load_idx_pair_classes, load_mnist_dir, read_idx_images, read_idx_labels};
pub use loader::{Epoch, Loader};
pub use rng::Rng;
pub use stl::{StlSplit, load_stl10, load_stl10_dir, load_stl10_unlabeled};

use std::fmt;
use std::io::{self, Read};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// Largest decompressed size accepted from a gzip file by default (1 GiB).
/// Raw (uncompressed) files need no such limit: memory is only allocated for
/// bytes the file really holds.
pub const MAX_GZ_BYTES: u64 = 1 << 30;

/// Which split of a dataset with a train/test division.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    Train,
    /// The test split.
    Test,
}

/// Everything that can go wrong reading or using a dataset. File errors name
/// the file; `Display` says what is wrong in words.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file starts with the gzip magic but is not a valid gzip stream
    /// (corrupt, cut short, bad checksum).
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's error.
        source: io::Error,
    },
    /// The file is larger than can be read: a gzip stream decompressing to
    /// more than the limit, or a raw file larger than memory can address.
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes that was exceeded.
        limit: u64,
    },
    /// The file is too short to hold its header.
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// The format (e.g. "IDX images").
        format: &'static str,
        /// Bytes the header needs.
        need: usize,
        /// Bytes the file holds.
        got: usize,
    },
    /// The IDX magic number is not the one expected (wrong data type or
    /// number of dimensions, or not an IDX file).
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The magic expected.
        expected: u32,
        /// The magic found.
        got: u32,
    },
    /// A header field is impossible (a zero dimension, an unsupported size).
    BadHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The product of the header's dimensions overflows.
    Overflow {
        /// The file.
        path: PathBuf,
        /// The header, in words (e.g. "4294967295 images of 4294967295×4294967295").
        header: String,
    },
    /// The header declares more data than the file holds.
    Truncated {
        /// The file.
        path: PathBuf,
        /// The header, in words (e.g. "60000 images of 28×28").
        header: String,
        /// Payload bytes the header declares.
        expected: u64,
        /// Payload bytes present.
        got: u64,
    },
    /// The file holds more data than its header declares.
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// The header, in words.
        header: String,
        /// Payload bytes the header declares.
        expected: u64,
        /// Payload bytes present.
        got: u64,
    },
    /// A file of fixed-size records whose length is not a whole number of records.
    PartialRecord {
        /// The file.
        path: PathBuf,
        /// The record format (e.g. "CIFAR-10 record").
        format: &'static str,
        /// Bytes per record.
        record_len: usize,
        /// Bytes in the file.
        len: u64,
    },
    /// The file holds no images.
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// An image file and its label file disagree on the number of images.
    CountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images it holds.
        n_images: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels it holds.
        n_labels: usize,
    },
    /// A label in a file is outside the valid range.
    LabelOutOfRange {
        /// The file.
        path: PathBuf,
        /// Which label (e.g. "label", "fine label", "coarse label").
        what: &'static str,
        /// 0-based index of the record holding it.
        record: usize,
        /// The label read.
        label: u32,
        /// The valid range as stored in the file.
        valid: RangeInclusive<u32>,
    },
    /// None of the expected file names exists in a dataset directory.
    Missing {
        /// The directory.
        dir: PathBuf,
        /// The names looked for.
        names: Vec<String>,
    },
    /// A batch names an image index outside the dataset.
    IndexOutOfRange {
        /// The index.
        index: usize,
        /// Images in the dataset.
        n: usize,
    },
    /// A caller's buffer or an in-memory array has the wrong length.
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// The length required.
        expected: usize,
        /// The length passed.
        got: usize,
    },
    /// Labels were asked of a dataset without labels (STL-10 unlabeled).
    NoLabels,
    /// An in-memory dataset, augmentation or loader setting is impossible.
    Invalid {
        /// Which setting.
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
}

fn describe_magic(m: u32) -> String {
    let ty = match (m >> 8) & 0xff {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => "unknown type",
    };
    if m >> 16 == 0 { format!("{m:#010x}: {ty}, {} dims", m & 0xff) } else { format!("{m:#010x}: not an IDX file") }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: cannot read: {source}", path.display()),
            DataError::Gzip { path, source } => write!(f, "{}: invalid gzip data: {source}", path.display()),
            DataError::TooLarge { path, limit } => {
                write!(f, "{}: data exceeds the limit of {limit} bytes", path.display())
            }
            DataError::TruncatedHeader { path, format, need, got } => {
                write!(f, "{}: {format} header needs {need} bytes but the file holds {got}", path.display())
            }
            DataError::BadMagic { path, expected, got } => write!(
                f,
                "{}: bad magic number {}; expected {}",
                path.display(),
                describe_magic(*got),
                describe_magic(*expected)
            ),
            DataError::BadHeader { path, reason } => write!(f, "{}: bad header: {reason}", path.display()),
            DataError::Overflow { path, header } => {
                write!(f, "{}: header says {header}, whose size overflows", path.display())
            }
            DataError::Truncated { path, header, expected, got } => write!(
                f,
                "{}: header says {header} ({expected} bytes) but the file holds {got} bytes (truncated)",
                path.display()
            ),
            DataError::TrailingBytes { path, header, expected, got } => write!(
                f,
                "{}: header says {header} ({expected} bytes) but the file holds {got} bytes ({} trailing bytes)",
                path.display(),
                got.saturating_sub(*expected)
            ),
            DataError::PartialRecord { path, format, record_len, len } => write!(
                f,
                "{}: {len} bytes is not a whole number of {record_len}-byte {format}s ({} whole, {} bytes left over)",
                path.display(),
                len.checked_div(*record_len as u64).unwrap_or(0),
                len.checked_rem(*record_len as u64).unwrap_or(*len)
            ),
            DataError::Empty { path } => write!(f, "{}: holds no images", path.display()),
            DataError::CountMismatch { images, n_images, labels, n_labels } => write!(
                f,
                "{} holds {n_images} images but {} holds {n_labels} labels",
                images.display(),
                labels.display()
            ),
            DataError::LabelOutOfRange { path, what, record, label, valid } => write!(
                f,
                "{}: {what} {label} of record {record} is outside {}..={}",
                path.display(),
                valid.start(),
                valid.end()
            ),
            DataError::Missing { dir, names } => {
                write!(f, "{}: none of {} exists", dir.display(), names.join(", "))
            }
            DataError::IndexOutOfRange { index, n } => {
                write!(f, "image index {index} is out of range for a dataset of {n} images")
            }
            DataError::LengthMismatch { what, expected, got } => {
                write!(f, "{what}: expected length {expected}, got {got}")
            }
            DataError::NoLabels => write!(f, "the dataset has no labels"),
            DataError::Invalid { what, reason } => write!(f, "{what}: {reason}"),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } | DataError::Gzip { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias for the data module.
pub type Result<T> = std::result::Result<T, DataError>;

/// One image value normalised as in DIM (torchvision `ToTensor()` then
/// `Normalize(0.5, 0.5)`, in f32 and in that operation order):
/// `(x / 255 − 0.5) / 0.5`. 0 → −1.0, 255 → 1.0 exactly.
#[inline]
pub const fn normalize(x: u8) -> f32 {
    (x as f32 / 255.0 - 0.5) / 0.5
}

/// [`normalize`] for every byte value.
pub(crate) const NORM: [f32; 256] = {
    let mut t = [0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = normalize(i as u8);
        i += 1;
    }
    t
};

/// Reads a whole file, decompressing it if it starts with the gzip magic
/// (`1f 8b`), with [`MAX_GZ_BYTES`] as the decompressed limit.
pub fn read_file(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    read_file_limited(path, MAX_GZ_BYTES)
}

/// [`read_file`] with a chosen limit on the decompressed size of gzip input.
/// Raw input is read as is: its memory is bounded by the file itself.
pub fn read_file_limited(path: impl AsRef<Path>, max_gz_bytes: u64) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let io_err = |source| DataError::Io { path: path.to_path_buf(), source };
    let (mut file, file_len) = crate::files::open_regular(path).map_err(io_err)?;
    // Peek at the first two bytes (gzip's magic is 1f 8b), then put them back
    // in front of the rest with `chain`.
    let mut head = [0u8; 2];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let reader = (&head[..got]).chain(file);
    if head[..got] == [0x1f, 0x8b] { read_gz(path, reader, max_gz_bytes) } else { read_raw(path, reader, file_len) }
}

/// Decodes bytes already in memory as [`read_file_limited`] decodes a file:
/// gunzipped (with `max_gz_bytes` as the decompressed limit) if they start
/// with the gzip magic, as they are otherwise. `path` only names the data in
/// errors. This is the readers' entry point for in-memory input (and fuzzing).
pub fn decode_bytes(path: &Path, bytes: Vec<u8>, max_gz_bytes: u64) -> Result<Vec<u8>> {
    if bytes.starts_with(&[0x1f, 0x8b]) { read_gz(path, bytes.as_slice(), max_gz_bytes) } else { Ok(bytes) }
}

fn read_raw(path: &Path, reader: impl Read, file_len: u64) -> Result<Vec<u8>> {
    // Exactly the length the metadata reported: a file that grows while
    // read (or a device posing as a file) cannot make us read forever.
    crate::files::read_len(reader, file_len).map_err(|source| DataError::Io { path: path.to_path_buf(), source })
}

fn read_gz(path: &Path, reader: impl Read, max_gz_bytes: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::MultiGzDecoder::new(reader).take(max_gz_bytes.saturating_add(1));
    decoder.read_to_end(&mut out).map_err(|source| DataError::Gzip { path: path.to_path_buf(), source })?;
    if out.len() as u64 > max_gz_bytes {
        return Err(DataError::TooLarge { path: path.to_path_buf(), limit: max_gz_bytes });
    }
    Ok(out)
}

/// A set of images (`u8`, NCHW) with optional labels.
///
/// The fields are public for convenience; every method re-checks the
/// invariants it relies on ([`Dataset::validate`]) and returns a
/// [`DataError`] rather than panicking if they were broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `n · channels · height · width` bytes: image `i`, channel `c`, row
    /// `y`, column `x` is at `((i · channels + c) · height + y) · width + x`.
    pub images: Vec<u8>,
    /// One label per image in `0..classes`, or `None` for unlabeled data
    /// (STL-10 `unlabeled_X.bin`).
    pub labels: Option<Vec<u16>>,
    /// Number of images.
    pub n: usize,
    /// Channels per image (1 for MNIST, 3 for CIFAR and STL-10).
    pub channels: usize,
    /// Image height in pixels.
    pub height: usize,
    /// Image width in pixels.
    pub width: usize,
    /// Number of classes (labels are `0..classes`).
    pub classes: usize,
}

impl Dataset {
    /// Builds a dataset from NCHW bytes, checking every invariant.
    /// `n` is `images.len() / (channels · height · width)`.
    pub fn new(
        images: Vec<u8>,
        labels: Option<Vec<u16>>,
        channels: usize,
        height: usize,
        width: usize,
        classes: usize,
    ) -> Result<Self> {
        let image_len = image_len(channels, height, width)?;
        if !images.len().is_multiple_of(image_len) {
            return Err(DataError::Invalid {
                what: "dataset images",
                reason: format!("{} bytes is not a whole number of {image_len}-byte images", images.len()),
            });
        }
        let n = images.len() / image_len;
        let ds = Dataset { images, labels, n, channels, height, width, classes };
        ds.validate()?;
        Ok(ds)
    }

    /// Bytes per image: `channels · height · width`.
    pub fn image_len(&self) -> Result<usize> {
        image_len(self.channels, self.height, self.width)
    }

    /// Checks the shape, the buffer lengths and that every label is below
    /// `classes`.
    pub fn validate(&self) -> Result<()> {
        self.check_shape()?;
        if let Some(labels) = &self.labels {
            check_len("dataset labels", self.n, labels.len())?;
            if self.classes == 0 {
                return Err(DataError::Invalid { what: "dataset classes", reason: "must be at least 1".into() });
            }
            if let Some((i, &l)) = labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= self.classes) {
                return Err(DataError::Invalid {
                    what: "dataset labels",
                    reason: format!("label {l} of image {i} is not below {} classes", self.classes),
                });
            }
        }
        Ok(())
    }

    /// Checks `images.len() == n · image_len` and returns `image_len`.
    pub(crate) fn check_shape(&self) -> Result<usize> {
        let il = self.image_len()?;
        let total = il.checked_mul(self.n).ok_or_else(|| DataError::Invalid {
            what: "dataset shape",
            reason: format!("{} images of {il} bytes overflow usize", self.n),
        })?;
        check_len("dataset images", total, self.images.len())?;
        Ok(il)
    }

    /// The bytes of image `i` (NCHW, `image_len()` bytes), or `None` if out of range.
    pub fn image(&self, i: usize) -> Option<&[u8]> {
        let il = self.check_shape().ok()?;
        if i >= self.n {
            return None;
        }
        self.images.get(i * il..(i + 1) * il)
    }

    /// The label of image `i`, or `None` without labels or out of range.
    pub fn label(&self, i: usize) -> Option<u16> {
        self.labels.as_ref()?.get(i).copied()
    }

    /// How many images of each class (`None` without labels). Labels at or
    /// above `classes` are not counted.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let labels = self.labels.as_ref()?;
        let mut counts = vec![0usize; self.classes];
        for &l in labels {
            if let Some(c) = counts.get_mut(usize::from(l)) {
                *c += 1;
            }
        }
        Some(counts)
    }

    /// Writes images `indices` into `out` as f32 NCHW normalised to [−1, 1]
    /// ([`normalize`]). `out.len()` must be `indices.len() · image_len()`.
    pub fn write_batch(&self, indices: &[usize], out: &mut [f32]) -> Result<()> {
        let il = self.check_shape()?;
        let need = il.checked_mul(indices.len()).ok_or_else(|| DataError::Invalid {
            what: "batch",
            reason: format!("{} images of {il} values overflow usize", indices.len()),
        })?;
        check_len("batch output", need, out.len())?;
        for (&i, dst) in indices.iter().zip(out.chunks_exact_mut(il)) {
            if i >= self.n {
                return Err(DataError::IndexOutOfRange { index: i, n: self.n });
            }
            let src = &self.images[i * il..(i + 1) * il];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = NORM[usize::from(s)];
            }
        }
        Ok(())
    }

    /// Writes images `indices` into `out` through `aug` (crop, flip), drawing
    /// from `rng`; see [`Augment::write_batch`].
    pub fn write_batch_augmented(
        &self,
        indices: &[usize],
        aug: &Augment,
        rng: &mut Rng,
        out: &mut [f32],
    ) -> Result<()> {
        aug.write_batch(self, indices, rng, out)
    }

    /// Writes the labels of images `indices` into `out` (one per index).
    pub fn write_labels(&self, indices: &[usize], out: &mut [usize]) -> Result<()> {
        let labels = self.labels.as_ref().ok_or(DataError::NoLabels)?;
        check_len("label output", indices.len(), out.len())?;
        for (&i, o) in indices.iter().zip(out.iter_mut()) {
            let l = *labels.get(i).ok_or(DataError::IndexOutOfRange { index: i, n: labels.len() })?;
            if usize::from(l) >= self.classes {
                return Err(DataError::Invalid {
                    what: "dataset labels",
                    reason: format!("label {l} of image {i} is not below {} classes", self.classes),
                });
            }
            *o = usize::from(l);
        }
        Ok(())
    }

    /// The labels of images `indices`, as `usize` for the loss kernels.
    pub fn batch_labels(&self, indices: &[usize]) -> Result<Vec<usize>> {
        let mut out = vec![0usize; indices.len()];
        self.write_labels(indices, &mut out)?;
        Ok(out)
    }

    /// A new dataset of images `indices` (in that order), labels included.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let il = self.check_shape()?;
        let mut images = Vec::new();
        images.try_reserve_exact(il.saturating_mul(indices.len())).map_err(|_| DataError::Invalid {
            what: "subset",
            reason: format!("cannot allocate {} images of {il} bytes", indices.len()),
        })?;
        let mut labels = self.labels.as_ref().map(|_| Vec::with_capacity(indices.len()));
        for &i in indices {
            if i >= self.n {
                return Err(DataError::IndexOutOfRange { index: i, n: self.n });
            }
            images.extend_from_slice(&self.images[i * il..(i + 1) * il]);
            if let (Some(dst), Some(src)) = (labels.as_mut(), self.labels.as_ref()) {
                dst.push(*src.get(i).ok_or(DataError::IndexOutOfRange { index: i, n: src.len() })?);
            }
        }
        Ok(Dataset {
            images,
            labels,
            n: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            classes: self.classes,
        })
    }

    /// At most `max` images: all of them if there are no more, else a
    /// sample drawn by a shuffle seeded from `(seed, stream)`, kept in order.
    pub fn sampled(self, max: usize, seed: u64, stream: u64) -> Result<Dataset> {
        if self.n <= max {
            return Ok(self);
        }
        let mut idx: Vec<usize> = (0..self.n).collect();
        Rng::derive(seed, stream).shuffle(&mut idx);
        idx.truncate(max);
        idx.sort_unstable();
        self.subset(&idx)
    }
}

/// `channels · height · width`, each positive, overflow-checked.
pub(crate) fn image_len(channels: usize, height: usize, width: usize) -> Result<usize> {
    if channels == 0 || height == 0 || width == 0 {
        return Err(DataError::Invalid {
            what: "image shape",
            reason: format!("{channels}×{height}×{width} has a zero dimension"),
        });
    }
    channels.checked_mul(height).and_then(|v| v.checked_mul(width)).ok_or_else(|| DataError::Invalid {
        what: "image shape",
        reason: format!("{channels}×{height}×{width} overflows usize"),
    })
}

pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(DataError::LengthMismatch { what, expected, got }) }
}

/// The first of `names` that exists in `dir`, whatever it is: a device or
/// folder of that name is then refused by the reader, not passed over.
pub(crate) fn find_in_dir(dir: &Path, names: &[String]) -> Result<PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
        .ok_or_else(|| DataError::Missing { dir: dir.to_path_buf(), names: names.to_vec() })
}

/// The formats [`detect_format`] recognises in a data folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// IDX files under MNIST's names.
    Idx,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// CIFAR-100 binary files.
    Cifar100,
    /// STL-10 binary files.
    Stl10,
    /// An image folder ([`folder`]).
    ImageFolder,
}

/// What [`detect_format`] looks for, in order: the first file of each
/// binary format, then image folders.
pub const DETECTED: [(&str, Format); 9] = [
    ("train-images-idx3-ubyte.gz", Format::Idx),
    ("train-images-idx3-ubyte", Format::Idx),
    ("t10k-images-idx3-ubyte.gz", Format::Idx),
    ("t10k-images-idx3-ubyte", Format::Idx),
    ("data_batch_1.bin", Format::Cifar10),
    ("test_batch.bin", Format::Cifar10),
    ("train_X.bin", Format::Stl10),
    ("unlabeled_X.bin", Format::Stl10),
    ("train.bin", Format::Cifar100),
];

/// The format of the data in `dir`, from the names of the files it holds
/// (binary formats) or its image files and class folders. If it matches
/// none, the error lists what was looked for.
pub fn detect_format(dir: impl AsRef<Path>) -> Result<Format> {
    let dir = dir.as_ref();
    let meta = std::fs::metadata(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
    if !meta.is_dir() {
        return Err(DataError::Invalid {
            what: "data folder",
            reason: format!("{} is not a folder (--data takes the folder that holds the dataset)", dir.display()),
        });
    }
    if let Some(&(_, f)) = DETECTED.iter().find(|(name, _)| dir.join(name).exists()) {
        return Ok(f);
    }
    if folder::looks_like_folder(dir) {
        return Ok(Format::ImageFolder);
    }
    let mut names: Vec<String> = DETECTED.iter().map(|(n, _)| (*n).to_string()).collect();
    names.push("an image folder (<class>/*.png|jpg, train/ and test/, or *.png|jpg)".into());
    Err(DataError::Missing { dir: dir.to_path_buf(), names })
}
