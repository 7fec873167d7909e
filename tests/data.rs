//! The data module: readers (IDX, CIFAR-10/100, STL-10) on files written by
//! the tests themselves, every malformed-input class as a typed error, the
//! bundled Fashion-MNIST subset, augmentation and the loader.
#![cfg(feature = "train")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use infomax::data::augment::Window;
use infomax::data::idx::{parse_idx_images, parse_idx_labels};
use infomax::data::stl::{STL_IMAGE_BYTES, STL_SIDE};
use infomax::data::{
    Augment, Cifar100Labels, Crop, DataError, Dataset, Loader, Rng, Split, StlSplit, load_cifar10, load_cifar10_dir,
    load_cifar100, load_idx_pair, load_idx_pair_classes, load_mnist_dir, load_stl10, load_stl10_dir,
    load_stl10_unlabeled, normalize, read_file_limited, read_idx_images, read_idx_labels,
};

// ---------------------------------------------------------------- helpers

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let k = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("infomax-data-{}-{name}-{k}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn idx_images(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for w in [0x0803, n, rows, cols] {
        v.extend_from_slice(&u32::to_be_bytes(w));
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0801u32.to_be_bytes());
    v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

/// 3 images of 4×5 with distinct pixel values.
fn sample_pixels() -> Vec<u8> {
    (0..3 * 4 * 5).map(|i| (i * 11 % 256) as u8).collect()
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------- IDX

#[test]
fn idx_raw_and_gz_round_trip() {
    let t = TempDir::new("idx-rt");
    let pixels = sample_pixels();
    let img = idx_images(3, 4, 5, &pixels);
    let lab = idx_labels(&[7, 0, 9]);
    let raw_i = t.write("raw-images", &img);
    let raw_l = t.write("raw-labels", &lab);
    // gzip is detected by content, not name: a gz file without .gz and a raw
    // file named .gz both load.
    let gz_i = t.write("images.bin", &gz(&img));
    let gz_l = t.write("labels-not-gz.gz", &lab);

    let a = read_idx_images(&raw_i).unwrap();
    let b = read_idx_images(&gz_i).unwrap();
    assert_eq!(a, b);
    assert_eq!((a.n, a.height, a.width), (3, 4, 5));
    assert_eq!(a.pixels, pixels);
    assert_eq!(read_idx_labels(&raw_l).unwrap(), vec![7, 0, 9]);

    let ds = load_idx_pair(&gz_i, &gz_l).unwrap();
    assert_eq!((ds.n, ds.channels, ds.height, ds.width, ds.classes), (3, 1, 4, 5, 10));
    assert_eq!(ds.images, pixels);
    assert_eq!(ds.labels, Some(vec![7, 0, 9]));
    assert_eq!(ds.image(1).unwrap(), &pixels[20..40]);
    assert_eq!(ds.label(2), Some(9));
    assert_eq!(ds.batch_labels(&[2, 0]).unwrap(), vec![9, 7]);
    ds.validate().unwrap();

    // A multi-member gzip stream (concatenated .gz files) is one stream.
    let (head, tail) = img.split_at(17);
    let mut two = gz(head);
    two.extend(gz(tail));
    assert_eq!(read_idx_images(t.write("two-members", &two)).unwrap(), a);
}

#[test]
fn mnist_dir_prefers_gz_and_falls_back_to_raw() {
    let t = TempDir::new("mnist-dir");
    let pixels = sample_pixels();
    t.write("train-images-idx3-ubyte.gz", &gz(&idx_images(3, 4, 5, &pixels)));
    t.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3]));
    let ds = load_mnist_dir(&t.0, Split::Train).unwrap();
    assert_eq!(ds.labels, Some(vec![1, 2, 3]));
    let e = load_mnist_dir(&t.0, Split::Test).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e:?}");
    assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn bundled_subset_loads_balanced() {
    let dir = manifest_dir().join("data/fashion-mnist-subset");
    for (split, n, per_class) in [(Split::Train, 10_000, 1000), (Split::Test, 2_000, 200)] {
        let ds = load_mnist_dir(&dir, split).unwrap();
        assert_eq!((ds.n, ds.channels, ds.height, ds.width, ds.classes), (n, 1, 28, 28, 10));
        assert_eq!(ds.images.len(), n * 784);
        assert_eq!(ds.class_counts().unwrap(), vec![per_class; 10]);
        // Real images: not all one value.
        let img = ds.image(0).unwrap();
        assert!(img.iter().any(|&p| p != img[0]));
    }
}

#[test]
fn normalisation_is_exact_at_the_ends() {
    assert_eq!(normalize(0), -1.0);
    assert_eq!(normalize(255), 1.0);
    for v in 0..=255u8 {
        // torchvision's order of operations in f32.
        assert_eq!(normalize(v), (v as f32 / 255.0 - 0.5) / 0.5);
    }
    let ds = Dataset::new(vec![0, 255, 128, 1, 2, 3], Some(vec![0, 1]), 1, 1, 3, 2).unwrap();
    let mut out = [0f32; 6];
    ds.write_batch(&[1, 0], &mut out).unwrap();
    assert_eq!(out, [normalize(1), normalize(2), normalize(3), -1.0, 1.0, normalize(128)]);
    assert!(out.iter().all(|v| (-1.0..=1.0).contains(v)));
}

#[test]
fn batch_buffer_and_index_errors() {
    let ds = Dataset::new(vec![0; 12], Some(vec![0, 1, 0]), 1, 2, 2, 2).unwrap();
    let mut out = [0f32; 8];
    let e = ds.write_batch(&[0, 1, 2], &mut out).unwrap_err();
    assert!(matches!(e, DataError::LengthMismatch { expected: 12, got: 8, .. }), "{e:?}");
    let e = ds.write_batch(&[0, 3], &mut out).unwrap_err();
    assert!(matches!(e, DataError::IndexOutOfRange { index: 3, n: 3 }), "{e:?}");
    let e = ds.batch_labels(&[5]).unwrap_err();
    assert!(matches!(e, DataError::IndexOutOfRange { index: 5, .. }), "{e:?}");
    // Broken public fields are errors, not panics.
    let mut bad = ds.clone();
    bad.n = 4;
    assert!(matches!(bad.write_batch(&[0], &mut out[..4]), Err(DataError::LengthMismatch { .. })));
    assert!(bad.image(0).is_none());
    let mut bad = ds.clone();
    bad.labels = Some(vec![0, 1, 2]);
    assert!(matches!(bad.validate(), Err(DataError::Invalid { .. })));
    assert!(matches!(bad.batch_labels(&[2]), Err(DataError::Invalid { .. })));
    assert!(matches!(Dataset::new(vec![0; 5], None, 1, 2, 2, 2), Err(DataError::Invalid { .. })));
    assert!(matches!(Dataset::new(vec![0; 4], None, 0, 2, 2, 2), Err(DataError::Invalid { .. })));
    let sub = ds.subset(&[2, 1]).unwrap();
    assert_eq!((sub.n, sub.labels.clone()), (2, Some(vec![0, 1])));
    assert!(matches!(ds.subset(&[3]), Err(DataError::IndexOutOfRange { .. })));
}

// ------------------------------------------------- IDX: malformed inputs

fn file_name_in(e: &DataError, name: &str) {
    assert!(e.to_string().contains(name), "message does not name {name}: {e}");
}

#[test]
fn idx_wrong_magic() {
    let t = TempDir::new("magic");
    let pixels = sample_pixels();
    // A label file where images are expected, and vice versa.
    let p = t.write("labels-as-images", &idx_labels(&[1, 2, 3]));
    let e = read_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { expected: 0x0803, got: 0x0801, .. }), "{e:?}");
    file_name_in(&e, "labels-as-images");
    let p = t.write("images-as-labels", &idx_images(3, 4, 5, &pixels));
    assert!(matches!(read_idx_labels(&p), Err(DataError::BadMagic { expected: 0x0801, got: 0x0803, .. })));
    // f32 data (type 0x0D) is not unsigned bytes.
    let mut f = idx_images(3, 4, 5, &pixels);
    f[2] = 0x0D;
    let e = read_idx_images(t.write("float", &f)).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { got: 0x0D03, .. }), "{e:?}");
    assert!(e.to_string().contains("f32"), "{e}");
    // Not IDX at all (a PNG header).
    let e = read_idx_images(t.write("png", b"\x89PNG\r\n\x1a\n0000000000")).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { .. }), "{e:?}");
    assert!(e.to_string().contains("not an IDX file"), "{e}");
}

#[test]
fn idx_truncated() {
    let t = TempDir::new("trunc");
    let img = idx_images(3, 4, 5, &sample_pixels());
    // Cut inside the header.
    let e = read_idx_images(t.write("short-header", &img[..10])).unwrap_err();
    assert!(matches!(e, DataError::TruncatedHeader { need: 16, got: 10, .. }), "{e:?}");
    // Empty file.
    let e = read_idx_images(t.write("empty", &[])).unwrap_err();
    assert!(matches!(e, DataError::TruncatedHeader { got: 0, .. }), "{e:?}");
    // Cut inside the pixels, raw and gzipped.
    let cut = &img[..img.len() - 7];
    for p in [t.write("short-raw", cut), t.write("short-gz", &gz(cut))] {
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::Truncated { expected: 60, got: 53, .. }), "{e:?}");
    }
    // A gzip stream cut short is a gzip error (it never silently yields a prefix).
    let z = gz(&img);
    let e = read_idx_images(t.write("cut-gz", &z[..z.len() / 2])).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    // A corrupted gzip checksum too.
    let mut z = gz(&img);
    let k = z.len() - 6;
    z[k] ^= 0xff;
    let e = read_idx_images(t.write("bad-crc-gz", &z)).unwrap_err();
    assert!(matches!(e, DataError::Gzip { .. }), "{e:?}");
    // Labels cut short.
    let lab = idx_labels(&[1, 2, 3]);
    let e = read_idx_labels(t.write("short-labels", &lab[..lab.len() - 1])).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 3, got: 2, .. }), "{e:?}");
}

#[test]
fn idx_header_disagrees_with_file_length() {
    let t = TempDir::new("disagree");
    // The header claims the full training set; the file holds 1000 bytes.
    let p = t.write("train-images-idx3-ubyte.gz", &gz(&idx_images(60000, 28, 28, &[0u8; 1000])));
    let e = read_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { expected: 47_040_000, got: 1000, .. }), "{e:?}");
    let msg = e.to_string();
    file_name_in(&e, "train-images-idx3-ubyte.gz");
    assert!(msg.contains("60000 images of 28×28") && msg.contains("47040000") && msg.contains("1000"), "{msg}");
    // A header claiming more than 1 GiB over a tiny file: same error, no huge allocation.
    let e = read_idx_images(t.write("huge", &idx_images(u32::MAX, 1000, 1000, &[0u8; 16]))).unwrap_err();
    assert!(matches!(e, DataError::Truncated { got: 16, .. }), "{e:?}");
}

#[test]
fn idx_trailing_bytes() {
    let t = TempDir::new("trailing");
    let mut img = idx_images(3, 4, 5, &sample_pixels());
    img.extend_from_slice(&[1, 2, 3]);
    for p in [t.write("long-raw", &img), t.write("long-gz", &gz(&img))] {
        let e = read_idx_images(&p).unwrap_err();
        assert!(matches!(e, DataError::TrailingBytes { expected: 60, got: 63, .. }), "{e:?}");
        assert!(e.to_string().contains("3 trailing bytes"), "{e}");
    }
    let mut lab = idx_labels(&[1, 2, 3]);
    lab.push(4);
    let e = read_idx_labels(t.write("long-labels", &lab)).unwrap_err();
    assert!(matches!(e, DataError::TrailingBytes { expected: 3, got: 4, .. }), "{e:?}");
}

#[test]
fn idx_counts_differ() {
    let t = TempDir::new("counts");
    let i = t.write("i", &idx_images(3, 4, 5, &sample_pixels()));
    let l = t.write("l", &idx_labels(&[1, 2]));
    let e = load_idx_pair(&i, &l).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { n_images: 3, n_labels: 2, .. }), "{e:?}");
    assert!(e.to_string().contains("3 images") && e.to_string().contains("2 labels"), "{e}");
}

#[test]
fn idx_dims_overflow() {
    let t = TempDir::new("overflow");
    let e = read_idx_images(t.write("ovf", &idx_images(u32::MAX, u32::MAX, u32::MAX, &[0; 8]))).unwrap_err();
    assert!(matches!(e, DataError::Overflow { .. }), "{e:?}");
    assert!(e.to_string().contains("overflows"), "{e}");
    // Zero dimensions.
    let e = read_idx_images(t.write("zero-n", &idx_images(0, 28, 28, &[]))).unwrap_err();
    assert!(matches!(e, DataError::Empty { .. }), "{e:?}");
    let e = read_idx_images(t.write("zero-rows", &idx_images(2, 0, 28, &[]))).unwrap_err();
    assert!(matches!(e, DataError::BadHeader { .. }), "{e:?}");
}

#[test]
fn idx_labels_out_of_range() {
    let t = TempDir::new("labels");
    let i = t.write("i", &idx_images(3, 4, 5, &sample_pixels()));
    let l = t.write("l", &idx_labels(&[1, 10, 2]));
    let e = load_idx_pair(&i, &l).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { record: 1, label: 10, .. }), "{e:?}");
    assert!(e.to_string().contains("0..=9"), "{e}");
    // The class count is configurable.
    let l = t.write("l5", &idx_labels(&[1, 4, 2]));
    load_idx_pair_classes(&i, &l, 5).unwrap();
    let e = load_idx_pair_classes(&i, &l, 4).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { record: 1, label: 4, .. }), "{e:?}");
    assert!(matches!(load_idx_pair_classes(&i, &l, 0), Err(DataError::Invalid { .. })));
}

#[test]
fn gz_size_limit_and_missing_file() {
    let t = TempDir::new("limit");
    let img = idx_images(3, 4, 5, &sample_pixels());
    let p = t.write("bomb", &gz(&img));
    let e = read_file_limited(&p, 50).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { limit: 50, .. }), "{e:?}");
    assert_eq!(read_file_limited(&p, img.len() as u64).unwrap(), img);
    // A 64 MiB run of zeros compresses to ~64 KiB; the limit stops it at 1 MiB + 1.
    let z = gz(&vec![0u8; 64 << 20]);
    let e = read_file_limited(t.write("zeros", &z), 1 << 20).unwrap_err();
    assert!(matches!(e, DataError::TooLarge { .. }), "{e:?}");
    let e = read_idx_images(t.0.join("does-not-exist")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    file_name_in(&e, "does-not-exist");
}

/// Every prefix and many single-byte corruptions of valid files parse to
/// `Ok` or a typed error; none panics.
#[test]
fn idx_never_panics_on_mutations() {
    let img = idx_images(3, 4, 5, &sample_pixels());
    let lab = idx_labels(&[1, 2, 3]);
    let p = Path::new("fuzz");
    for len in 0..img.len() + 1 {
        let _ = parse_idx_images(p, img[..len].to_vec());
    }
    for len in 0..lab.len() + 1 {
        let _ = parse_idx_labels(p, lab[..len].to_vec());
    }
    let mut rng = Rng::new(7);
    for _ in 0..5000 {
        let mut m = if rng.coin() { img.clone() } else { lab.clone() };
        let k = rng.below_usize(m.len().min(24));
        m[k] = rng.next_u64() as u8;
        if rng.coin() {
            m.truncate(rng.below_usize(m.len() + 1));
        }
        let _ = parse_idx_images(p, m.clone());
        let _ = parse_idx_labels(p, m);
    }
}

// ---------------------------------------------------------------- CIFAR

fn cifar_pixel(r: usize, c: usize, y: usize, x: usize) -> u8 {
    ((r * 7 + c * 50 + y * 3 + x) % 256) as u8
}

/// Records with `label_bytes` then 3072 pixels from `cifar_pixel`.
fn cifar_file(labels: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::new();
    for (r, lab) in labels.iter().enumerate() {
        v.extend_from_slice(lab);
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    v.push(cifar_pixel(r, c, y, x));
                }
            }
        }
    }
    v
}

fn check_cifar_pixels(ds: &Dataset, records: usize) {
    assert_eq!((ds.n, ds.channels, ds.height, ds.width), (records, 3, 32, 32));
    for r in 0..records {
        let img = ds.image(r).unwrap();
        for (c, y, x) in [(0, 0, 0), (0, 0, 31), (0, 31, 0), (1, 5, 17), (2, 31, 31), (2, 10, 3)] {
            assert_eq!(img[(c * 32 + y) * 32 + x], cifar_pixel(r, c, y, x), "record {r} c{c} y{y} x{x}");
        }
    }
}

#[test]
fn cifar10_loads_labels_and_pixels() {
    let t = TempDir::new("c10");
    let p = t.write("data_batch_1.bin", &cifar_file(&[&[3], &[0], &[9]]));
    let ds = load_cifar10(&[&p]).unwrap();
    assert_eq!(ds.labels, Some(vec![3, 0, 9]));
    assert_eq!(ds.classes, 10);
    check_cifar_pixels(&ds, 3);
    // Files concatenate in order; the dir loader reads test_batch.bin.
    let two = load_cifar10(&[&p, &p]).unwrap();
    assert_eq!(two.labels, Some(vec![3, 0, 9, 3, 0, 9]));
    t.write("test_batch.bin", &cifar_file(&[&[5]]));
    assert_eq!(load_cifar10_dir(&t.0, Split::Test).unwrap().labels, Some(vec![5]));
    // Train needs data_batch_2.bin, which is missing.
    assert!(matches!(load_cifar10_dir(&t.0, Split::Train), Err(DataError::Io { .. })));
}

#[test]
fn cifar10_malformed() {
    let t = TempDir::new("c10-bad");
    let good = cifar_file(&[&[3], &[0], &[9]]);
    let e = load_cifar10(&[t.write("cut.bin", &good[..good.len() - 1])]).unwrap_err();
    assert!(matches!(e, DataError::PartialRecord { record_len: 3073, len: 9218, .. }), "{e:?}");
    assert!(e.to_string().contains("2 whole, 3072 bytes left over"), "{e}");
    let e = load_cifar10(&[t.write("label.bin", &cifar_file(&[&[3], &[10]]))]).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { record: 1, label: 10, .. }), "{e:?}");
    file_name_in(&e, "label.bin");
    assert!(matches!(load_cifar10(&[t.write("empty.bin", &[])]), Err(DataError::Empty { .. })));
    assert!(matches!(load_cifar10::<&Path>(&[]), Err(DataError::Invalid { .. })));
}

#[test]
fn cifar100_fine_and_coarse() {
    let t = TempDir::new("c100");
    let p = t.write("train.bin", &cifar_file(&[&[19, 99], &[0, 0], &[5, 42]]));
    let fine = load_cifar100(&[&p], Cifar100Labels::Fine).unwrap();
    assert_eq!((fine.labels.clone(), fine.classes), (Some(vec![99, 0, 42]), 100));
    check_cifar_pixels(&fine, 3);
    let coarse = load_cifar100(&[&p], Cifar100Labels::Coarse).unwrap();
    assert_eq!((coarse.labels.clone(), coarse.classes), (Some(vec![19, 0, 5]), 20));
    assert_eq!(coarse.images, fine.images);

    let bad_fine = t.write("f.bin", &cifar_file(&[&[1, 100]]));
    let e = load_cifar100(&[&bad_fine], Cifar100Labels::Fine).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { what: "fine label", label: 100, .. }), "{e:?}");
    let bad_coarse = t.write("c.bin", &cifar_file(&[&[20, 1]]));
    let e = load_cifar100(&[&bad_coarse], Cifar100Labels::Coarse).unwrap_err();
    assert!(matches!(e, DataError::LabelOutOfRange { what: "coarse label", label: 20, .. }), "{e:?}");
    // Record size 3074: a CIFAR-10 file of 2 records is 6146 bytes, not a multiple.
    let c10 = t.write("c10.bin", &cifar_file(&[&[1], &[2]]));
    let e = load_cifar100(&[&c10], Cifar100Labels::Fine).unwrap_err();
    assert!(matches!(e, DataError::PartialRecord { record_len: 3074, .. }), "{e:?}");
}

// ---------------------------------------------------------------- STL-10

fn stl_pixel(i: usize, c: usize, y: usize, x: usize) -> u8 {
    ((i * 31 + c * 71 + y * 3 + x * 5) % 251) as u8
}

/// `n` images in the official layout: planes column-major (x major).
fn stl_file(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n * STL_IMAGE_BYTES);
    for i in 0..n {
        for c in 0..3 {
            for x in 0..STL_SIDE {
                for y in 0..STL_SIDE {
                    v.push(stl_pixel(i, c, y, x));
                }
            }
        }
    }
    v
}

#[test]
fn stl10_transposes_and_maps_labels() {
    let t = TempDir::new("stl");
    let x = t.write("train_X.bin", &stl_file(2));
    let y = t.write("train_y.bin", &[1, 10]);
    let ds = load_stl10(&x, &y).unwrap();
    assert_eq!((ds.n, ds.channels, ds.height, ds.width, ds.classes), (2, 3, 96, 96, 10));
    assert_eq!(ds.labels, Some(vec![0, 9]));
    for i in 0..2 {
        let img = ds.image(i).unwrap();
        for c in 0..3 {
            for y in 0..96 {
                for x in 0..96 {
                    assert_eq!(img[(c * 96 + y) * 96 + x], stl_pixel(i, c, y, x));
                }
            }
        }
    }
    // Row 0 of the output is the file's first byte of each column.
    let file = stl_file(1);
    assert_eq!(ds.image(0).unwrap()[1], file[96]);
    assert_eq!(load_stl10_dir(&t.0, StlSplit::Train).unwrap(), ds);

    let u = load_stl10_unlabeled(&x).unwrap();
    assert_eq!((u.n, u.labels.clone()), (2, None));
    assert_eq!(u.images, ds.images);
    assert!(matches!(u.batch_labels(&[0]), Err(DataError::NoLabels)));
    assert!(u.class_counts().is_none());
}

#[test]
fn stl10_malformed() {
    let t = TempDir::new("stl-bad");
    let x = t.write("x.bin", &stl_file(2));
    for (name, labels, bad) in [("zero", [1u8, 0], 0u32), ("eleven", [11, 1], 11)] {
        let y = t.write(name, &labels);
        let e = load_stl10(&x, &y).unwrap_err();
        assert!(matches!(e, DataError::LabelOutOfRange { label, .. } if label == bad), "{e:?}");
        assert!(e.to_string().contains("1..=10"), "{e}");
    }
    let img = stl_file(2);
    let e = load_stl10_unlabeled(t.write("cut.bin", &img[..img.len() - 100])).unwrap_err();
    assert!(matches!(e, DataError::PartialRecord { record_len: 27648, .. }), "{e:?}");
    let e = load_stl10(&x, t.write("y3", &[1, 2, 3])).unwrap_err();
    assert!(matches!(e, DataError::CountMismatch { n_images: 2, n_labels: 3, .. }), "{e:?}");
    assert!(matches!(load_stl10(&x, t.write("y0", &[])), Err(DataError::Empty { .. })));
}

// ---------------------------------------------------------------- loader

fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n && order.iter().all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

#[test]
fn loader_is_seeded_and_covers_every_index() {
    let l = Loader::new(103, 10, 42).unwrap();
    assert!(l.drop_last && l.shuffle);
    assert_eq!(l.batches_per_epoch(), 10);
    assert_eq!(l.with_drop_last(false).batches_per_epoch(), 11);
    assert_eq!(Loader::new(100, 10, 0).unwrap().with_drop_last(false).batches_per_epoch(), 10);
    assert_eq!(Loader::new(9, 10, 0).unwrap().batches_per_epoch(), 0);
    assert!(Loader::new(9, 10, 0).unwrap().epoch(0).is_empty());
    assert!(matches!(Loader::new(10, 0, 0), Err(DataError::Invalid { .. })));

    // Same seed and epoch: same order, from a fresh loader (resume).
    assert_eq!(l.order(3), Loader::new(103, 10, 42).unwrap().order(3));
    // Different epochs and seeds: different orders.
    assert_ne!(l.order(0), l.order(1));
    assert_ne!(l.order(0), Loader::new(103, 10, 43).unwrap().order(0));
    for e in 0..5 {
        assert!(is_permutation(&l.order(e), 103));
    }
    // Not shuffled: identity.
    assert_eq!(l.with_shuffle(false).order(5), (0..103).collect::<Vec<_>>());

    // Batches: drop-last drops the 3-image tail, batches cover the rest once.
    let ep = l.epoch(2);
    assert_eq!(ep.len(), 10);
    let batches: Vec<&[usize]> = ep.batches().collect();
    assert_eq!(batches.len(), 10);
    assert!(batches.iter().all(|b| b.len() == 10));
    let flat: Vec<usize> = batches.concat();
    assert_eq!(flat, ep.order()[..100]);
    assert_eq!(ep.batch(9), Some(&ep.order()[90..100]));
    assert_eq!(ep.batch(10), None);
    // Without drop-last the tail is a short last batch.
    let ep = l.with_drop_last(false).epoch(2);
    let batches: Vec<&[usize]> = ep.batches().collect();
    assert_eq!(batches.len(), 11);
    assert_eq!(batches[10], &ep.order()[100..]);
    let mut all: Vec<usize> = batches.concat();
    all.sort_unstable();
    assert_eq!(all, (0..103).collect::<Vec<_>>());
    // Resuming mid-epoch: skip.
    assert_eq!(ep.batches().nth(4), ep.batch(4));
}

#[test]
fn rng_state_round_trips() {
    let mut a = Rng::new(123);
    for _ in 0..10 {
        a.next_u64();
    }
    let saved = a.state();
    let mut b = Rng::from_state(saved);
    let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
    let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
    assert_eq!(xs, ys);
    // SplitMix64 reference values (seed 0): the published first outputs.
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    // below() stays in range, including awkward bounds.
    let mut r = Rng::new(9);
    for n in [1u64, 2, 3, 7, 1 << 63, u64::MAX] {
        for _ in 0..100 {
            assert!(r.below(n) < n);
        }
    }
    assert_eq!(r.below(0), 0);
    // Serialisable: the loader and the RNG go through serde_json.
    let l = Loader::new(10, 3, 5).unwrap();
    let s = serde_json::to_string(&(l, Rng::from_state(saved))).unwrap();
    let (l2, r2): (Loader, Rng) = serde_json::from_str(&s).unwrap();
    assert_eq!((l2, r2.state()), (l, saved));
}

// ---------------------------------------------------------------- augment

/// One 2-channel 4×5 image per index, values distinct.
fn aug_dataset() -> Dataset {
    let images: Vec<u8> = (0..3 * 2 * 4 * 5).map(|i| (i * 3 + 1) as u8).collect();
    Dataset::new(images, Some(vec![0, 1, 2]), 2, 4, 5, 3).unwrap()
}

fn px(ds: &Dataset, i: usize, c: usize, y: usize, x: usize) -> u8 {
    ds.image(i).unwrap()[(c * ds.height + y) * ds.width + x]
}

#[test]
fn augment_identity_equals_plain_batch() {
    let ds = aug_dataset();
    let mut a = vec![0f32; 2 * 40];
    let mut b = vec![0f32; 2 * 40];
    ds.write_batch(&[2, 0], &mut a).unwrap();
    ds.write_batch_augmented(&[2, 0], &Augment::none(), &mut Rng::new(1), &mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn augment_flip_is_exact() {
    let ds = aug_dataset();
    let aug = Augment::none().with_hflip(true);
    let idx = [0usize, 1, 2, 0, 1, 2, 0, 1];
    let mut out = vec![0f32; idx.len() * 40];
    let seed = 99;
    aug.write_batch(&ds, &idx, &mut Rng::new(seed), &mut out).unwrap();
    // Replay the documented draws: one coin per image.
    let mut r = Rng::new(seed);
    let flips: Vec<bool> = idx.iter().map(|_| r.coin()).collect();
    assert!(flips.contains(&true) && flips.contains(&false), "seed gives both cases: {flips:?}");
    for (b, (&i, &flip)) in idx.iter().zip(&flips).enumerate() {
        for c in 0..2 {
            for y in 0..4 {
                for x in 0..5 {
                    let sx = if flip { 4 - x } else { x };
                    assert_eq!(out[b * 40 + (c * 4 + y) * 5 + x], normalize(px(&ds, i, c, y, sx)));
                }
            }
        }
    }
}

#[test]
fn augment_crop_window_is_documented() {
    let ds = aug_dataset();
    // Random 3×3 crop from the image padded by 1 (6×7): top in 0..=3, left in 0..=4.
    let aug = Augment::none().with_crop(Crop::random(3, 1)).with_hflip(true);
    assert_eq!(aug.output_shape(2, 4, 5).unwrap(), (2, 3, 3));
    let idx = [0usize, 1, 2, 1, 0, 2, 2, 1, 0, 0];
    let mut out = vec![0f32; idx.len() * 18];
    aug.write_batch(&ds, &idx, &mut Rng::new(5), &mut out).unwrap();
    let mut r = Rng::new(5);
    let mut saw_padding = false;
    for (b, &i) in idx.iter().enumerate() {
        let top = r.below(4) as usize;
        let left = r.below(5) as usize;
        let flip = r.coin();
        for c in 0..2 {
            for y in 0..3 {
                for x in 0..3 {
                    let xs = if flip { 2 - x } else { x };
                    let (py, pxx) = (top + y, left + xs);
                    let want = if py == 0 || py == 5 || pxx == 0 || pxx == 6 {
                        saw_padding = true;
                        -1.0
                    } else {
                        normalize(px(&ds, i, c, py - 1, pxx - 1))
                    };
                    assert_eq!(out[b * 18 + (c * 3 + y) * 3 + x], want, "image {b} c{c} y{y} x{x}");
                }
            }
        }
    }
    assert!(saw_padding);

    // window() makes the same draws.
    let mut r1 = Rng::new(5);
    let mut r2 = Rng::new(5);
    let w = aug.window(4, 5, &mut r1);
    assert_eq!(w, Window { top: r2.below(4) as usize, left: r2.below(5) as usize, flip: r2.coin() });

    // Centre crop: STL-10 96 → 64 takes rows/columns 16..80 and draws nothing.
    let center = Augment::none().with_crop(Crop::center(64));
    let mut r = Rng::new(1);
    assert_eq!(center.window(96, 96, &mut r), Window { top: 16, left: 16, flip: false });
    assert_eq!(r, Rng::new(1));
    // Odd margin rounds down: 5 wide → 2 wide starts at column 1.
    let w = Augment::none().with_crop(Crop::center(2)).window(4, 5, &mut r);
    assert_eq!((w.top, w.left), (1, 1));
}

#[test]
fn augment_stl_crop_and_errors() {
    let t = TempDir::new("stl-aug");
    let ds = load_stl10(t.write("x", &stl_file(2)), t.write("y", &[3, 4])).unwrap();
    let aug = Augment::none().with_crop(Crop::random(64, 0)).with_hflip(true);
    assert_eq!(aug.output_shape(3, 96, 96).unwrap(), (3, 64, 64));
    let mut out = vec![0f32; 2 * 3 * 64 * 64];
    let mut r = Rng::new(11);
    ds.write_batch_augmented(&[1, 0], &aug, &mut r, &mut out).unwrap();
    let mut replay = Rng::new(11);
    let w = aug.window(96, 96, &mut replay);
    for (c, y, x) in [(0, 0, 0), (1, 63, 5), (2, 20, 63)] {
        let sx = if w.flip { 63 - x } else { x };
        assert_eq!(out[(c * 64 + y) * 64 + x], normalize(stl_pixel(1, c, w.top + y, w.left + sx)));
    }
    // Same seed, same result; another seed, another result.
    let mut again = vec![0f32; out.len()];
    ds.write_batch_augmented(&[1, 0], &aug, &mut Rng::new(11), &mut again).unwrap();
    assert_eq!(out, again);
    ds.write_batch_augmented(&[1, 0], &aug, &mut Rng::new(12), &mut again).unwrap();
    assert_ne!(out, again);
    // Errors: crop larger than the image, wrong buffer, bad index.
    let big = Augment::none().with_crop(Crop::random(97, 0));
    assert!(matches!(big.output_shape(3, 96, 96), Err(DataError::Invalid { .. })));
    assert!(matches!(big.write_batch(&ds, &[0], &mut r, &mut out), Err(DataError::Invalid { .. })));
    let huge = Augment::none().with_crop(Crop::random(usize::MAX / 2, usize::MAX / 4));
    assert!(matches!(huge.output_shape(3, 96, 96), Err(DataError::Invalid { .. })));
    assert!(matches!(huge.write_batch(&ds, &[0], &mut r, &mut out), Err(DataError::Invalid { .. })));
    let zero = Augment::none().with_crop(Crop::random(0, 0));
    assert!(matches!(zero.output_shape(3, 96, 96), Err(DataError::Invalid { .. })));
    assert!(matches!(aug.write_batch(&ds, &[0], &mut r, &mut out), Err(DataError::LengthMismatch { .. })));
    assert!(matches!(
        aug.write_batch(&ds, &[0, 2], &mut r, &mut out),
        Err(DataError::IndexOutOfRange { index: 2, n: 2 })
    ));
    // The per-batch augmentation streams of the loader are reproducible.
    let l = Loader::new(2, 2, 3).unwrap();
    assert_eq!(l.augment_rng(4, 0), l.augment_rng(4, 0));
    assert_ne!(l.augment_rng(4, 0), l.augment_rng(4, 1));
    assert_ne!(l.augment_rng(4, 0), l.augment_rng(5, 0));
}
