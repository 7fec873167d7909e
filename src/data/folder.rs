//! Image folders in torchvision's `ImageFolder` layout, decoded with the
//! `image` crate (PNG and JPEG).
//!
//! | layout | splits |
//! |---|---|
//! | `root/train/<class>/…`, `root/test/<class>/…` | as given |
//! | `root/<class>/…` | a seeded, per-class fraction held out as the test split |
//! | `root/*.png` (files, no class folders) | unlabeled: training only, no probes |
//!
//! Classes are the class folders' names in byte order, numbered from 0 (as
//! torchvision's `find_classes`); the images of a class are every file
//! below its folder, in path order. Each image is decoded, converted to the
//! channels asked for (see [`super::transform`]) and fitted to one size: the
//! dataset is then as compact as a binary one, `n · c · h · w` bytes, which
//! is allocated (fallibly) before decoding starts. Decoding runs in
//! parallel; each decoder is bounded by [`MAX_IMAGE_FILE_BYTES`],
//! [`MAX_IMAGE_SIDE`] and [`MAX_DECODE_BYTES`], so neither a huge file nor a
//! decompression bomb can exhaust memory.
//!
//! A file that is not PNG or JPEG (by its extension), whose content is not
//! what its extension says, or that does not decode, is an error naming it;
//! with `skip_bad` it is left out and listed in [`Folder::skipped`].

use std::io::Cursor;
use std::path::{Path, PathBuf};

use ::image::{DynamicImage, ImageFormat, ImageReader, Limits};
use rayon::prelude::*;

use super::transform::{convert_channels, fit};
use super::{DataError, Dataset, Result, Rng, Split, image_len};

/// Largest image file read (64 MiB).
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;
/// Largest width or height a decoder accepts.
pub const MAX_IMAGE_SIDE: u32 = 1 << 14;
/// Largest allocation one decoder may make (decoded pixels included): 128 MiB,
/// a 42-megapixel RGB photo.
pub const MAX_DECODE_BYTES: u64 = 128 << 20;
/// Deepest folder nesting walked below a class folder (symlink loops end here).
pub const MAX_DEPTH: usize = 32;
/// Most classes (labels are `u16`).
pub const MAX_CLASSES: usize = 1 << 16;

/// How a folder is read.
#[derive(Clone, Debug, PartialEq)]
pub struct FolderOptions {
    /// Channels of the dataset (1: grayscale, 3: RGB).
    pub channels: usize,
    /// Height every image is fitted to.
    pub height: usize,
    /// Width every image is fitted to.
    pub width: usize,
    /// With `root/<class>/…`: the fraction of each class held out as the
    /// test split (at least one image per class when positive).
    pub test_fraction: f64,
    /// Seed of that hold-out.
    pub seed: u64,
    /// Leave out (and list) files that cannot be read, instead of failing.
    pub skip_bad: bool,
    /// A folder for decoded splits ([`cache`]): a split whose files, sizes,
    /// modification times, labels and fit are unchanged is read from there
    /// instead of decoded again.
    pub cache: Option<PathBuf>,
}

/// A file left out with `skip_bad`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why, in words.
    pub reason: String,
}

/// One split of an image folder.
#[derive(Clone, Debug)]
pub struct Folder {
    /// The images (fitted) and labels (`None` for an unlabeled folder).
    pub dataset: Dataset,
    /// Class names, index = label (empty when unlabeled).
    pub classes: Vec<String>,
    /// The files of the split, in dataset order (skipped files excluded).
    pub files: Vec<PathBuf>,
    /// Files left out (`skip_bad`).
    pub skipped: Vec<Skipped>,
    /// What the cache did, in words (`None`: no cache asked for).
    pub cache_note: Option<String>,
}

/// The layout of a folder, as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `train/` and `test/` subfolders, each of class folders.
    TrainTest,
    /// Class folders at the top.
    Classes,
    /// Image files at the top, no folders: unlabeled.
    Flat,
}

/// The image extensions read, lower case.
pub const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io { path: path.to_path_buf(), source }
}

/// Entries of `dir` sorted by name: (folders, files).
fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let p = e.path();
        // Symlinks are followed; a dangling one is a file (and fails to read).
        if std::fs::metadata(&p).is_ok_and(|m| m.is_dir()) { dirs.push(p) } else { files.push(p) }
    }
    dirs.sort();
    files.sort();
    Ok((dirs, files))
}

/// Whether `path` has one of [`EXTENSIONS`].
pub fn is_image_name(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether `dir` looks like an image folder: image files at its top, or a
/// folder (a class, or `train`/`test`) holding some below it.
pub fn looks_like_folder(dir: &Path) -> bool {
    let Ok((dirs, files)) = entries(dir) else { return false };
    files.iter().any(|f| is_image_name(f))
        || dirs.iter().any(|d| entries(d).is_ok_and(|(dd, ff)| ff.iter().any(|f| is_image_name(f)) || !dd.is_empty()))
}

/// The layout of `root`.
pub fn layout(root: &Path) -> Result<Layout> {
    let (dirs, files) = entries(root)?;
    let named = |n: &str| dirs.iter().any(|d| d.file_name().is_some_and(|f| f == n));
    if named("train") && named("test") {
        return Ok(Layout::TrainTest);
    }
    let images = files.iter().filter(|f| is_image_name(f)).count();
    match (dirs.is_empty(), images) {
        (true, 0) => Err(DataError::Missing {
            dir: root.to_path_buf(),
            names: vec!["class folders".into(), "train/ and test/".into(), "*.png / *.jpg images".into()],
        }),
        (true, _) => Ok(Layout::Flat),
        (false, 0) => Ok(Layout::Classes),
        (false, _) => Err(DataError::Invalid {
            what: "image folder",
            reason: format!(
                "{} holds both image files and folders: use root/<class>/… (labeled) or only files (unlabeled)",
                root.display()
            ),
        }),
    }
}

/// Every file below `dir`, in path order.
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(DataError::Invalid {
            what: "image folder",
            reason: format!("{} is nested more than {MAX_DEPTH} folders deep (a symlink loop?)", dir.display()),
        });
    }
    let (dirs, files) = entries(dir)?;
    // Files and folders in one name order, as a sorted recursive listing.
    let mut all: Vec<(PathBuf, bool)> =
        files.into_iter().map(|f| (f, false)).chain(dirs.into_iter().map(|d| (d, true))).collect();
    all.sort();
    for (p, is_dir) in all {
        if is_dir { walk(&p, depth + 1, out)? } else { out.push(p) }
    }
    Ok(())
}

/// Class names (index = label) and every (file, label) of a labeled split.
type Listing = (Vec<String>, Vec<(PathBuf, u16)>);

/// The files of a labeled split folder.
fn list_classes(dir: &Path) -> Result<Listing> {
    let (dirs, files) = entries(dir)?;
    if let Some(f) = files.first() {
        return Err(DataError::Invalid {
            what: "image folder",
            reason: format!("{} is a file beside the class folders of {}", f.display(), dir.display()),
        });
    }
    if dirs.is_empty() {
        return Err(DataError::Missing { dir: dir.to_path_buf(), names: vec!["class folders".into()] });
    }
    if dirs.len() > MAX_CLASSES {
        return Err(DataError::Invalid {
            what: "image folder",
            reason: format!("{} classes, more than {MAX_CLASSES}", dirs.len()),
        });
    }
    let mut names = Vec::new();
    let mut out = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        names.push(d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let mut files = Vec::new();
        walk(d, 0, &mut files)?;
        out.extend(files.into_iter().map(|f| (f, i as u16)));
    }
    Ok((names, out))
}

/// Loads one split of the image folder `root` (see the module docs).
pub fn load_image_folder(root: impl AsRef<Path>, split: Split, opts: &FolderOptions) -> Result<Folder> {
    let root = root.as_ref();
    if !(0.0..1.0).contains(&opts.test_fraction) {
        return Err(DataError::Invalid {
            what: "test fraction",
            reason: format!("{} is outside [0, 1)", opts.test_fraction),
        });
    }
    let (classes, files): (Vec<String>, Vec<(PathBuf, Option<u16>)>) = match layout(root)? {
        Layout::TrainTest => {
            let (train_names, train) = list_classes(&root.join("train"))?;
            let (names, files) = match split {
                Split::Train => (train_names, train),
                Split::Test => {
                    let (test_names, test) = list_classes(&root.join("test"))?;
                    // The test labels must mean what the train labels mean.
                    let map: Vec<Option<u16>> =
                        test_names.iter().map(|n| train_names.iter().position(|t| t == n).map(|i| i as u16)).collect();
                    if let Some(i) = map.iter().position(Option::is_none) {
                        return Err(DataError::Invalid {
                            what: "image folder",
                            reason: format!(
                                "test class {:?} has no folder in {}",
                                test_names[i],
                                root.join("train").display()
                            ),
                        });
                    }
                    let files = test.into_iter().map(|(f, l)| (f, map[usize::from(l)].unwrap_or(0))).collect();
                    (train_names, files)
                }
            };
            (names, files.into_iter().map(|(f, l)| (f, Some(l))).collect())
        }
        Layout::Classes => {
            let (names, files) = list_classes(root)?;
            let held = hold_out(&files, names.len(), opts.test_fraction, opts.seed);
            let files = files
                .into_iter()
                .zip(held)
                .filter(|&(_, test)| test == (split == Split::Test))
                .map(|((f, l), _)| (f, Some(l)))
                .collect();
            (names, files)
        }
        Layout::Flat => {
            if split == Split::Test {
                return Err(DataError::NoLabels);
            }
            let (_, files) = entries(root)?;
            (Vec::new(), files.into_iter().map(|f| (f, None)).collect())
        }
    };
    match &opts.cache {
        Some(dir) => cache::load_or_decode(dir, root, classes, files, opts),
        None => decode_all(root, classes, files, opts),
    }
}

pub mod cache {
    //! Decoded splits on disk, so that a later run (another seed, `eval`,
    //! `embed`, the report) does not decode the same files again. A split
    //! is stored as `DIR/folder-<key>.bin`, where the key is the SHA-256 of
    //! the fit (channels, height, width, `skip_bad`), the class names, and
    //! every file's path, size, modification time and label: change any of
    //! them and the key changes. The file is the magic [`MAGIC`], a u64
    //! little-endian header length, a JSON header (the key, the shape, the
    //! files, labels and skipped files) and the pixels. A cache file that
    //! is unreadable, truncated or of another key is decoded again and
    //! replaced, and the note says so; it is written atomically (a
    //! temporary, then a rename), so a crash leaves no half file.

    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Serialize};

    use super::{DataError, Dataset, Folder, FolderOptions, Result, Skipped, decode_all, image_len};

    /// The first bytes of a cache file.
    pub const MAGIC: &[u8; 16] = b"infomax-cache-1\n";
    /// Largest cache header read (file lists of a million images fit).
    pub const MAX_HEADER_BYTES: u64 = 1 << 30;

    #[derive(Serialize, Deserialize)]
    struct Header {
        key: String,
        n: usize,
        channels: usize,
        height: usize,
        width: usize,
        classes: Vec<String>,
        files: Vec<PathBuf>,
        labels: Option<Vec<u16>>,
        skipped: Vec<(PathBuf, String)>,
    }

    /// The key of a split, or `None` if a file's size or time cannot be read
    /// (then there is no cache: decoding will name the file).
    fn key(classes: &[String], files: &[(PathBuf, Option<u16>)], opts: &FolderOptions) -> Option<String> {
        let mut h = crate::sha256::Sha256::new();
        let fit = format!("v1 c{} h{} w{} skip{}\n", opts.channels, opts.height, opts.width, opts.skip_bad);
        h.update(fit.as_bytes());
        for c in classes {
            h.update(format!("class {}\n", c.len()).as_bytes());
            h.update(c.as_bytes());
        }
        for (path, label) in files {
            let m = std::fs::metadata(path).ok()?;
            let t = m.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
            let p = path.as_os_str().as_encoded_bytes();
            h.update(format!("file {} {} {} {:?}\n", p.len(), m.len(), t.as_nanos(), label).as_bytes());
            h.update(p);
        }
        Some(crate::sha256::hex(&h.finish()))
    }

    /// The split from `file` if it holds `key`'s; why not otherwise.
    fn read(file: &Path, key: &str) -> std::result::Result<Folder, String> {
        use std::io::Read;
        let (f, len) = crate::files::open_regular(file).map_err(|e| e.to_string())?;
        let mut r = std::io::BufReader::new(f);
        let mut magic = [0u8; 16];
        r.read_exact(&mut magic).map_err(|e| format!("no header: {e}"))?;
        if &magic != MAGIC {
            return Err("not an infomax cache file".into());
        }
        let mut hl = [0u8; 8];
        r.read_exact(&mut hl).map_err(|e| format!("no header: {e}"))?;
        let hl = u64::from_le_bytes(hl);
        if hl > MAX_HEADER_BYTES || hl > len {
            return Err(format!("a header of {hl} bytes"));
        }
        let mut header = Vec::new();
        crate::files::append_exact(&mut r, hl, &mut header).map_err(|e| e.to_string())?;
        let h: Header = serde_json::from_slice(&header).map_err(|e| format!("header: {e}"))?;
        if h.key != key {
            return Err("made from other files or another fit".into());
        }
        let il = image_len(h.channels, h.height, h.width).map_err(|e| e.to_string())?;
        let want = il.checked_mul(h.n).ok_or("an impossible size")? as u64;
        if len != 24 + hl + want || h.files.len() != h.n || h.labels.as_ref().is_some_and(|l| l.len() != h.n) {
            return Err("truncated or inconsistent".into());
        }
        let images = crate::files::read_len(&mut r, want).map_err(|e| e.to_string())?;
        let classes = h.classes.len().max(1);
        let dataset =
            Dataset::new(images, h.labels, h.channels, h.height, h.width, classes).map_err(|e| e.to_string())?;
        let skipped = h.skipped.into_iter().map(|(path, reason)| Skipped { path, reason }).collect();
        Ok(Folder { dataset, classes: h.classes, files: h.files, skipped, cache_note: None })
    }

    fn write(file: &Path, key: &str, f: &Folder) -> std::io::Result<()> {
        use std::io::Write;
        let d = &f.dataset;
        let h = Header {
            key: key.into(),
            n: d.n,
            channels: d.channels,
            height: d.height,
            width: d.width,
            classes: f.classes.clone(),
            files: f.files.clone(),
            labels: d.labels.clone(),
            skipped: f.skipped.iter().map(|s| (s.path.clone(), s.reason.clone())).collect(),
        };
        let header = serde_json::to_vec(&h).map_err(std::io::Error::other)?;
        let tmp = file.with_extension(format!("tmp-{}", std::process::id()));
        let result = (|| {
            let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            w.write_all(MAGIC)?;
            w.write_all(&(header.len() as u64).to_le_bytes())?;
            w.write_all(&header)?;
            w.write_all(&d.images)?;
            w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            std::fs::rename(&tmp, file)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// The split from the cache in `dir` if it is there and current, else
    /// decoded and written there.
    pub(super) fn load_or_decode(
        dir: &Path,
        root: &Path,
        classes: Vec<String>,
        files: Vec<(PathBuf, Option<u16>)>,
        opts: &FolderOptions,
    ) -> Result<Folder> {
        let Some(key) = key(&classes, &files, opts) else {
            let mut f = decode_all(root, classes, files, opts)?;
            f.cache_note = Some("not cached: a file's size or time could not be read".into());
            return Ok(f);
        };
        let file = dir.join(format!("folder-{}.bin", &key[..32]));
        let stale = if file.exists() {
            match read(&file, &key) {
                Ok(mut f) => {
                    f.cache_note = Some(format!("read from the cache {}", file.display()));
                    return Ok(f);
                }
                Err(why) => Some(why),
            }
        } else {
            None
        };
        let mut f = decode_all(root, classes, files, opts)?;
        std::fs::create_dir_all(dir).map_err(|source| DataError::Io { path: dir.to_path_buf(), source })?;
        write(&file, &key, &f).map_err(|source| DataError::Io { path: file.clone(), source })?;
        f.cache_note = Some(match stale {
            Some(why) => format!("the cache {} was not usable ({why}): decoded again and replaced", file.display()),
            None => format!("decoded and cached in {}", file.display()),
        });
        Ok(f)
    }
}

/// Which files of each class are held out: `round(fraction · n)` of the
/// class (at least 1 when the fraction is positive and the class has two
/// or more), drawn by a seeded shuffle per class.
fn hold_out(files: &[(PathBuf, u16)], classes: usize, fraction: f64, seed: u64) -> Vec<bool> {
    let mut held = vec![false; files.len()];
    for c in 0..classes {
        let mut idx: Vec<usize> = (0..files.len()).filter(|&i| usize::from(files[i].1) == c).collect();
        let n = idx.len();
        let mut k = (fraction * n as f64).round() as usize;
        if fraction > 0.0 && n >= 2 {
            k = k.clamp(1, n - 1);
        }
        Rng::derive(seed, c as u64).shuffle(&mut idx);
        for &i in idx.iter().take(k) {
            held[i] = true;
        }
    }
    held
}

fn decode_all(
    root: &Path,
    classes: Vec<String>,
    files: Vec<(PathBuf, Option<u16>)>,
    opts: &FolderOptions,
) -> Result<Folder> {
    let il = image_len(opts.channels, opts.height, opts.width)?;
    if files.is_empty() {
        return Err(DataError::Empty { path: root.to_path_buf() });
    }
    let total = il.checked_mul(files.len()).ok_or_else(|| DataError::Invalid {
        what: "image folder",
        reason: format!("{} images of {il} bytes overflow usize", files.len()),
    })?;
    let mut images = Vec::new();
    images.try_reserve_exact(total).map_err(|_| DataError::Invalid {
        what: "image folder",
        reason: format!(
            "cannot allocate {total} bytes for {} images of {}×{}×{}",
            files.len(),
            opts.channels,
            opts.height,
            opts.width
        ),
    })?;
    images.resize(total, 0);
    let results: Vec<std::result::Result<(), String>> =
        images.par_chunks_mut(il).zip(files.par_iter()).map(|(dst, (path, _))| decode_into(path, opts, dst)).collect();
    // Compact the decoded images over the failed ones, in order.
    let mut skipped = Vec::new();
    let mut kept_files = Vec::new();
    let mut labels = Vec::new();
    let mut w = 0;
    for (i, (r, (path, label))) in results.into_iter().zip(files).enumerate() {
        match r {
            Ok(()) => {
                if w != i {
                    images.copy_within(i * il..(i + 1) * il, w * il);
                }
                w += 1;
                kept_files.push(path);
                labels.extend(label);
            }
            Err(reason) if opts.skip_bad => skipped.push(Skipped { path, reason }),
            Err(reason) => {
                return Err(DataError::Invalid {
                    what: "image",
                    reason: format!("{}: {reason} (--skip-bad leaves such files out and counts them)", path.display()),
                });
            }
        }
    }
    if w == 0 {
        return Err(DataError::Empty { path: root.to_path_buf() });
    }
    images.truncate(w * il);
    let labeled = !classes.is_empty();
    let dataset =
        Dataset::new(images, labeled.then_some(labels), opts.channels, opts.height, opts.width, classes.len().max(1))?;
    Ok(Folder { dataset, classes, files: kept_files, skipped, cache_note: None })
}

/// The format an extension names.
fn format_of(path: &Path) -> std::result::Result<ImageFormat, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => Ok(ImageFormat::Png),
        "jpg" | "jpeg" => Ok(ImageFormat::Jpeg),
        "" => Err("has no extension (PNG and JPEG files are read: .png, .jpg, .jpeg)".into()),
        e => Err(format!("has the unsupported extension .{e} (PNG and JPEG files are read: .png, .jpg, .jpeg)")),
    }
}

/// Decodes one file and fits it into `dst`.
pub fn decode_into(path: &Path, opts: &FolderOptions, dst: &mut [u8]) -> std::result::Result<(), String> {
    let format = format_of(path)?;
    let bytes = crate::files::read_bounded(path, MAX_IMAGE_FILE_BYTES).map_err(|e| format!("cannot read: {e}"))?;
    let img = decode_bytes(&bytes, format)?;
    fit_image(&img, opts, dst)
}

/// Decodes `bytes`, which must hold `format` (PNG or JPEG), within the limits.
pub fn decode_bytes(bytes: &[u8], format: ImageFormat) -> std::result::Result<DynamicImage, String> {
    if bytes.is_empty() {
        return Err("is empty (0 bytes)".into());
    }
    let name = |f: ImageFormat| {
        if f == ImageFormat::Png {
            "PNG"
        } else if f == ImageFormat::Jpeg {
            "JPEG"
        } else {
            "another format"
        }
    };
    match ::image::guess_format(bytes) {
        Ok(f) if f == format => {}
        Ok(f) => return Err(format!("holds {} data, not {} as its extension says", name(f), name(format))),
        Err(_) => return Err(format!("is not a {} file (its first bytes are no image signature)", name(format))),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        ::image::ImageError::Limits(_) => format!(
            "does not decode: it declares more than the decoder's limits allow ({MAX_IMAGE_SIDE} pixels a side, {} MiB \
             decoded): {e}",
            MAX_DECODE_BYTES >> 20
        ),
        e => format!("does not decode: {e}"),
    })
}

/// Converts a decoded image to the options' channels and fits it to their size.
pub fn fit_image(img: &DynamicImage, opts: &FolderOptions, dst: &mut [u8]) -> std::result::Result<(), String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let len = w * h;
    // Interleaved pixels to planes, at the source's channels (1 or 3).
    let (planes, from) = match img {
        DynamicImage::ImageLuma8(g) => (g.as_raw().clone(), 1),
        _ if !img.color().has_color() => (img.to_luma8().into_raw(), 1),
        _ => {
            let rgb = img.to_rgb8();
            let mut planes = vec![0u8; 3 * len];
            for (i, p) in rgb.as_raw().chunks_exact(3).enumerate() {
                planes[i] = p[0];
                planes[len + i] = p[1];
                planes[2 * len + i] = p[2];
            }
            (planes, 3)
        }
    };
    let c = opts.channels;
    let mut conv = vec![0u8; c * len];
    convert_channels(&planes, from, c, len, &mut conv).map_err(|e| e.to_string())?;
    fit(&conv, c, (h, w), (opts.height, opts.width), dst);
    Ok(())
}

/// How [`write_image_folder`] encodes images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Lossless PNG.
    Png,
    /// JPEG at a quality in 1..=100.
    Jpeg(u8),
}

/// Writes `ds` as an image folder: `dir/<class>/<index>.png|jpg` (index =
/// the image's position in `ds`, six digits), or `dir/<index>.…` without
/// labels. `classes` names the class folders (`None`: `0`, `1`, …, zero-padded
/// so that byte order is label order). Returns the files written, in
/// dataset order. For making folders from binary datasets (tests, examples,
/// users moving data to other tools).
pub fn write_image_folder(
    ds: &Dataset,
    dir: &Path,
    classes: Option<&[String]>,
    encoding: Encoding,
) -> Result<Vec<PathBuf>> {
    use ::image::{GrayImage, RgbImage};
    let il = ds.check_shape()?;
    if ds.channels != 1 && ds.channels != 3 {
        return Err(DataError::Invalid {
            what: "image folder",
            reason: format!("{} channels (1 or 3 are written)", ds.channels),
        });
    }
    let digits = ds.classes.saturating_sub(1).to_string().len();
    let names: Vec<String> = match classes {
        Some(c) if c.len() == ds.classes => c.to_vec(),
        Some(c) => {
            return Err(DataError::LengthMismatch { what: "class names", expected: ds.classes, got: c.len() });
        }
        None => (0..ds.classes).map(|i| format!("{i:0digits$}")).collect(),
    };
    let ext = if encoding == Encoding::Png { "png" } else { "jpg" };
    let (w, h) = (u32::try_from(ds.width), u32::try_from(ds.height));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(DataError::Invalid { what: "image folder", reason: "images wider than u32".into() });
    };
    let paths: Vec<PathBuf> = (0..ds.n)
        .map(|i| match ds.label(i) {
            Some(l) => dir.join(&names[usize::from(l)]).join(format!("{i:06}.{ext}")),
            None => dir.join(format!("{i:06}.{ext}")),
        })
        .collect();
    for p in &paths {
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
    }
    paths.par_iter().zip(ds.images.par_chunks(il)).try_for_each(|(path, px)| {
        let len = ds.height * ds.width;
        let img: DynamicImage = if ds.channels == 1 {
            GrayImage::from_raw(w, h, px.to_vec()).map(DynamicImage::ImageLuma8)
        } else {
            let mut rgb = vec![0u8; 3 * len];
            for i in 0..len {
                for c in 0..3 {
                    rgb[3 * i + c] = px[c * len + i];
                }
            }
            RgbImage::from_raw(w, h, rgb).map(DynamicImage::ImageRgb8)
        }
        .ok_or_else(|| DataError::Invalid { what: "image folder", reason: "image buffer size".into() })?;
        let mut bytes = Vec::new();
        let res = match encoding {
            Encoding::Png => img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png),
            Encoding::Jpeg(q) => {
                let enc = ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, q.clamp(1, 100));
                img.write_with_encoder(enc)
            }
        };
        res.map_err(|e| DataError::Invalid { what: "image folder", reason: format!("{}: {e}", path.display()) })?;
        std::fs::write(path, &bytes).map_err(io_err(path))
    })?;
    Ok(paths)
}
