//! Image folders: the bundled Fashion-MNIST subset written as PNG reads
//! back to exactly the IDX bytes (and features); the three layouts; format
//! detection; and every kind of bad file tried, refused with the file's
//! name or skipped and counted, within bounded memory.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::scratch::Scratch;
use infomax::data::folder::{Encoding, FolderOptions, Layout, layout, load_image_folder, write_image_folder};
use infomax::data::{DataError, Format, Split, detect_format, load_mnist_dir};
use infomax::dim::{Dim, DimConfig};
use infomax::train::{DataConfig, DatasetKind, extract_features};

const BUNDLED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist-subset");
const BIN: &str = env!("CARGO_BIN_EXE_infomax");

fn tmp(name: &str) -> Scratch {
    Scratch::new("infomax-folders", name)
}

/// The dataset index a written file stands for (its six-digit name).
fn index_of(p: &Path) -> usize {
    p.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{}", p.display()))
}

/// 2 000 test images as PNG read back are the IDX bytes, labels included,
/// and a conv28 encoder's features of them are bitwise the features of the
/// IDX images (each row compared with its own image's row: the folder's
/// order is class by class).
#[test]
fn png_folder_reads_back_the_idx_bytes_and_features_bitwise() {
    let dir = tmp("png");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap();
    assert_eq!(idx.n, 2000);
    write_image_folder(&idx, &dir.join("test"), None, Encoding::Png).unwrap();
    let train = load_mnist_dir(BUNDLED, Split::Train).unwrap().subset(&(0..100).collect::<Vec<_>>()).unwrap();
    write_image_folder(&train, &dir.join("train"), None, Encoding::Png).unwrap();
    assert_eq!(detect_format(&*dir).unwrap(), Format::ImageFolder);
    assert_eq!(layout(&dir).unwrap(), Layout::TrainTest);

    let cfg = DataConfig::new(DatasetKind::Auto, &*dir);
    let got = cfg.load_eval(Split::Test, [1, 28, 28]).unwrap();
    assert_eq!(got.dataset.n, 2000);
    assert_eq!(got.classes, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
    let order: Vec<usize> = got.files.iter().map(|p| index_of(p)).collect();
    for (row, &i) in order.iter().enumerate() {
        assert_eq!(got.dataset.image(row), idx.image(i), "image {i}");
        assert_eq!(got.dataset.label(row), idx.label(i), "label {i}");
    }
    let mut model = Dim::new(DimConfig::new("conv28").mi_units(64)).unwrap();
    let a = extract_features(&mut model, &idx, 500).unwrap();
    let b = extract_features(&mut model, &got.dataset, 500).unwrap();
    let d = a.y.0;
    for (row, &i) in order.iter().enumerate() {
        let (ya, yb) = (&a.y.1[i * d..(i + 1) * d], &b.y.1[row * d..(row + 1) * d]);
        assert!(ya.iter().zip(yb).all(|(x, y)| x.to_bits() == y.to_bits()), "Y of image {i}");
    }
    let (dc, ca) = a.conv.as_ref().unwrap();
    let cb = &b.conv.as_ref().unwrap().1;
    for (row, &i) in order.iter().enumerate() {
        let (x, y) = (&ca[i * dc..(i + 1) * dc], &cb[row * dc..(row + 1) * dc]);
        assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "conv features of image {i}");
    }
}

/// JPEG at quality 95 is close to the source: every pixel within a few
/// levels, the mean error below one level.
#[test]
fn jpeg_folder_is_within_a_few_levels_of_the_source() {
    let dir = tmp("jpg");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap().subset(&(0..200).collect::<Vec<_>>()).unwrap();
    write_image_folder(&idx, &dir, None, Encoding::Jpeg(95)).unwrap();
    let opts =
        FolderOptions { channels: 1, height: 28, width: 28, test_fraction: 0.0, seed: 0, skip_bad: false, cache: None };
    let got = load_image_folder(&*dir, Split::Train, &opts).unwrap();
    let mut sum = 0u64;
    for (row, p) in got.files.iter().enumerate() {
        let i = index_of(p);
        let (a, b) = (idx.image(i).unwrap(), got.dataset.image(row).unwrap());
        for (&x, &y) in a.iter().zip(b) {
            sum += u64::from(x.abs_diff(y));
        }
    }
    let mean = sum as f64 / (200.0 * 784.0);
    assert!(mean < 1.5, "mean |Δ| {mean} levels");
}

/// Class folders alone: a seeded, per-class hold-out, disjoint from the
/// training split, together every file; bare files: unlabeled, no test
/// split; grayscale stored, RGB asked: the plane repeated; larger images
/// fitted to the size asked.
#[test]
fn layouts_split_label_and_fit_as_documented() {
    let dir = tmp("classes");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap().subset(&(0..300).collect::<Vec<_>>()).unwrap();
    write_image_folder(&idx, &dir, None, Encoding::Png).unwrap();
    assert_eq!(layout(&dir).unwrap(), Layout::Classes);
    let opts =
        FolderOptions { channels: 1, height: 28, width: 28, test_fraction: 0.2, seed: 5, skip_bad: false, cache: None };
    let tr = load_image_folder(&*dir, Split::Train, &opts).unwrap();
    let te = load_image_folder(&*dir, Split::Test, &opts).unwrap();
    assert_eq!(tr.dataset.n + te.dataset.n, 300);
    let counts = idx.class_counts().unwrap();
    let test_counts = te.dataset.class_counts().unwrap();
    for (c, (&n, &t)) in counts.iter().zip(&test_counts).enumerate() {
        assert_eq!(t, ((n as f64) * 0.2).round() as usize, "class {c}: {t} of {n} held out");
    }
    let mut all: Vec<PathBuf> = tr.files.iter().chain(&te.files).cloned().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 300, "the splits are disjoint and cover the folder");
    // The same seed holds out the same files; another seed others.
    assert_eq!(load_image_folder(&*dir, Split::Test, &opts).unwrap().files, te.files);
    let other = load_image_folder(&*dir, Split::Test, &FolderOptions { seed: 6, ..opts.clone() }).unwrap();
    assert_ne!(other.files, te.files);

    // RGB from grayscale: three equal planes.
    let rgb = load_image_folder(&*dir, Split::Train, &FolderOptions { channels: 3, ..opts.clone() }).unwrap();
    let img = rgb.dataset.image(0).unwrap();
    assert!(img[..784] == img[784..1568] && img[..784] == img[1568..], "gray → RGB repeats the plane");
    // Fitted to 14×14: a 2× downscale; a constant image stays constant.
    let small =
        load_image_folder(&*dir, Split::Train, &FolderOptions { height: 14, width: 14, ..opts.clone() }).unwrap();
    assert_eq!(small.dataset.image(0).unwrap().len(), 196);

    let flat = tmp("flat");
    let unlabeled = infomax::data::Dataset { labels: None, ..idx.subset(&[0, 1, 2, 3]).unwrap() };
    write_image_folder(&unlabeled, &flat, None, Encoding::Png).unwrap();
    assert_eq!(layout(&flat).unwrap(), Layout::Flat);
    let f = load_image_folder(&*flat, Split::Train, &opts).unwrap();
    assert!(f.dataset.labels.is_none() && f.dataset.n == 4 && f.classes.is_empty());
    assert!(matches!(load_image_folder(&*flat, Split::Test, &opts), Err(DataError::NoLabels)));
    assert!(!DataConfig::new(DatasetKind::Auto, &*flat).has_labels().unwrap());
}

/// A test class with no training folder, files beside class folders, and
/// a folder that holds no dataset are errors that say so; the last lists
/// every format looked for.
#[test]
fn malformed_layouts_are_refused_with_what_was_looked_for() {
    let dir = tmp("layouts");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap().subset(&(0..40).collect::<Vec<_>>()).unwrap();
    write_image_folder(&idx, &dir.join("train"), None, Encoding::Png).unwrap();
    write_image_folder(&idx, &dir.join("test"), None, Encoding::Png).unwrap();
    std::fs::rename(dir.join("test/9"), dir.join("test/nine")).unwrap();
    let opts =
        FolderOptions { channels: 1, height: 28, width: 28, test_fraction: 0.2, seed: 0, skip_bad: false, cache: None };
    let e = load_image_folder(&*dir, Split::Test, &opts).unwrap_err().to_string();
    assert!(e.contains("\"nine\"") && e.contains("no folder"), "{e}");

    std::fs::write(dir.join("train/notes.txt"), "x").unwrap();
    let e = load_image_folder(&*dir, Split::Train, &opts).unwrap_err().to_string();
    assert!(e.contains("notes.txt") && e.contains("beside the class folders"), "{e}");

    let empty = tmp("empty");
    std::fs::create_dir_all(&*empty).unwrap();
    std::fs::write(empty.join("README"), "no data").unwrap();
    let e = detect_format(&*empty).unwrap_err().to_string();
    for want in ["train-images-idx3-ubyte", "data_batch_1.bin", "train_X.bin", "train.bin", "image folder"] {
        assert!(e.contains(want), "{want} in {e}");
    }
}

/// A PNG of any declared size, with `idat` as its compressed data: lets a
/// test declare dimensions the data does not hold.
fn png_with(width: u32, height: u32, idat: &[u8]) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// zlib of `rows` scanlines of `width` zero pixels (each a filter byte 0
/// then the pixels): a tiny file that decodes to `rows · width` bytes.
fn zero_rows(width: usize, rows: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let line = vec![0u8; width + 1];
    for _ in 0..rows {
        z.write_all(&line).unwrap();
    }
    z.finish().unwrap()
}

/// Runs the CLI; returns (exit code, stderr, peak RSS in KiB).
fn cli_rss(args: &[&str]) -> (Option<i32>, String, u64) {
    let o = Command::new(BIN).args(args).env("INFOMAX_REPORT_PEAK_RSS", "1").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let kib = err
        .lines()
        .find_map(|l| l.strip_prefix("peak RSS: "))
        .and_then(|l| l.trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS: {err}"));
    (o.status.code(), err, kib)
}

/// Truncated, mislabelled, empty, huge-declared, bomb and unsupported
/// files: each stops the command with its name and why, or with
/// `--skip-bad` is left out and counted; memory stays bounded either way.
#[test]
fn every_bad_file_is_named_or_skipped_within_bounded_memory() {
    let dir = tmp("bad");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap().subset(&(0..64).collect::<Vec<_>>()).unwrap();
    let written = write_image_folder(&idx, &dir, None, Encoding::Png).unwrap();
    let good_png = std::fs::read(&written[0]).unwrap();
    let class = dir.join("0");
    let bad: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated.png", good_png[..good_png.len() / 2].to_vec(), "does not decode"),
        ("png-named.jpg", good_png.clone(), "holds PNG data, not JPEG"),
        ("text.png", b"hello, not an image".to_vec(), "not a PNG file"),
        ("zero.png", Vec::new(), "is empty"),
        ("huge.png", png_with(1_000_000, 1_000_000, &zero_rows(16, 1)), "does not decode"),
        // 16 000 × 16 000 gray: 244 MiB decoded from a file of ~250 KB.
        ("bomb.png", png_with(16_000, 16_000, &zero_rows(16_000, 16_000)), "does not decode"),
        ("picture.gif", b"GIF89a".to_vec(), "unsupported extension .gif"),
    ];
    for (name, bytes, _) in &bad {
        std::fs::write(class.join(name), bytes).unwrap();
    }
    let out = tmp("bad-run");
    let run = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "-q",
            "--no-eval",
            "--no-export",
            "--steps",
            "1",
            "--batch-size",
            "8",
            "--mi-units",
            "8",
            "--data",
        ];
        let d = dir.to_str().unwrap().to_owned();
        let o = out.join(format!("run-{}", extra.len()));
        let o = o.to_str().unwrap().to_owned();
        a.push(&d);
        a.extend(["--out", &o]);
        a.extend_from_slice(extra);
        cli_rss(&a)
    };
    let (code, err, kib) = run(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--skip-bad"), "{err}");
    assert!(bad.iter().any(|(n, _, why)| err.contains(n) && err.contains(why)), "names a bad file and why: {err}");
    eprintln!("refused, peak RSS {:.1} MiB", kib as f64 / 1024.0);
    assert!(kib < 400 << 10, "peak RSS {kib} KiB");

    // One by one: each file alone names itself and its reason.
    for (name, bytes, why) in &bad {
        let one = tmp(&format!("one-{name}"));
        let c = one.join("cls");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join(name), bytes).unwrap();
        let opts = FolderOptions {
            channels: 1,
            height: 28,
            width: 28,
            test_fraction: 0.0,
            seed: 0,
            skip_bad: false,
            cache: None,
        };
        let e = load_image_folder(&*one, Split::Train, &opts).unwrap_err().to_string();
        assert!(e.contains(name) && e.contains(why), "{name}: {e}");
        eprintln!("{e}");
        let skipped = load_image_folder(&*one, Split::Train, &FolderOptions { skip_bad: true, ..opts });
        assert!(
            matches!(skipped, Err(DataError::Empty { .. })),
            "{name}: nothing left is an error, not an empty dataset"
        );
    }

    let (code, err, kib) = run(&["--skip-bad"]);
    assert_eq!(code, Some(0), "{err}");
    eprintln!("skipped, peak RSS {:.1} MiB", kib as f64 / 1024.0);
    assert!(kib < 400 << 10, "peak RSS {kib} KiB");
    // Not quiet: training says how many files it left out.
    let loud = out.join("loud");
    let (code, err, _) = cli_rss(&[
        "train",
        "--no-eval",
        "--no-export",
        "--no-probe",
        "--steps",
        "1",
        "--batch-size",
        "8",
        "--mi-units",
        "8",
        "--skip-bad",
        "--data",
        dir.to_str().unwrap(),
        "--out",
        loud.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    // (The class folder's hold-out puts some of the bad files in the test split.)
    assert!(err.contains("training images: skipped ") && err.contains("unreadable file(s) (--skip-bad)"), "{err}");
    let opts =
        FolderOptions { channels: 1, height: 28, width: 28, test_fraction: 0.0, seed: 0, skip_bad: true, cache: None };
    let f = load_image_folder(&*dir, Split::Train, &opts).unwrap();
    assert_eq!(f.skipped.len(), bad.len(), "{:?}", f.skipped);
    assert_eq!(f.dataset.n, 64);
}

/// The decoded cache: the first load decodes and writes it, the second
/// reads it and gives the same bytes, labels and files; a changed file, a
/// changed fit or a damaged cache file make it decode again (and say so),
/// never serve stale or broken images.
#[test]
fn the_decoded_cache_is_used_while_current_and_rebuilt_otherwise() {
    let dir = tmp("cache-src");
    let cache = tmp("cache-dir");
    let idx = load_mnist_dir(BUNDLED, Split::Test).unwrap().subset(&(0..120).collect::<Vec<_>>()).unwrap();
    let files = write_image_folder(&idx, &dir, None, Encoding::Png).unwrap();
    let plain = FolderOptions {
        channels: 1,
        height: 28,
        width: 28,
        test_fraction: 0.25,
        seed: 3,
        skip_bad: false,
        cache: None,
    };
    let cached = FolderOptions { cache: Some(cache.to_path_buf()), ..plain.clone() };
    let same = |a: &infomax::data::Folder, b: &infomax::data::Folder| {
        assert_eq!(a.dataset, b.dataset);
        assert_eq!((&a.files, &a.classes), (&b.files, &b.classes));
    };
    for split in [Split::Train, Split::Test] {
        let want = load_image_folder(&*dir, split, &plain).unwrap();
        assert!(want.cache_note.is_none());
        let first = load_image_folder(&*dir, split, &cached).unwrap();
        assert!(first.cache_note.as_deref().unwrap().starts_with("decoded and cached"), "{:?}", first.cache_note);
        let second = load_image_folder(&*dir, split, &cached).unwrap();
        assert!(second.cache_note.as_deref().unwrap().starts_with("read from the cache"), "{:?}", second.cache_note);
        same(&first, &want);
        same(&second, &want);
    }
    assert_eq!(std::fs::read_dir(&*cache).unwrap().count(), 2, "one file per split");

    // Another fit: its own entry.
    let rgb = FolderOptions { channels: 3, ..cached.clone() };
    let f = load_image_folder(&*dir, Split::Train, &rgb).unwrap();
    assert!(f.cache_note.as_deref().unwrap().starts_with("decoded"), "{:?}", f.cache_note);
    assert_eq!(f.dataset.channels, 3);

    // A file rewritten with other pixels (and a later time): decoded again.
    let victim = &files[0];
    std::thread::sleep(std::time::Duration::from_millis(20));
    let other = idx.subset(&[1]).unwrap();
    let tmpdir = tmp("cache-other");
    let written = write_image_folder(&other, &tmpdir, None, Encoding::Png).unwrap();
    std::fs::copy(&written[0], victim).unwrap();
    let split_of_victim = if load_image_folder(&*dir, Split::Train, &plain).unwrap().files.contains(victim) {
        Split::Train
    } else {
        Split::Test
    };
    let want = load_image_folder(&*dir, split_of_victim, &plain).unwrap();
    let f = load_image_folder(&*dir, split_of_victim, &cached).unwrap();
    assert!(f.cache_note.as_deref().unwrap().starts_with("decoded and cached"), "{:?}", f.cache_note);
    same(&f, &want);

    // A damaged cache file: decoded again and replaced, with a note.
    for e in std::fs::read_dir(&*cache).unwrap() {
        let p = e.unwrap().path();
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&p).unwrap().set_len(len - 100).unwrap();
    }
    for split in [Split::Train, Split::Test] {
        let want = load_image_folder(&*dir, split, &plain).unwrap();
        let f = load_image_folder(&*dir, split, &cached).unwrap();
        let note = f.cache_note.clone().unwrap();
        assert!(note.contains("not usable") && note.contains("truncated"), "{note}");
        same(&f, &want);
        let again = load_image_folder(&*dir, split, &cached).unwrap();
        assert!(again.cache_note.as_deref().unwrap().starts_with("read from the cache"));
    }
}
