//! Host files, so that no input can exhaust memory and no output can
//! destroy another file:
//!
//! - reads open regular files only (a device, FIFO or folder is refused
//!   before it is opened, so `/dev/zero` is never read and a FIFO never
//!   blocks), check the length against a cap before allocating, and read
//!   exactly that length;
//! - outputs must be new paths or regular files, and never one of the
//!   command's inputs;
//! - a run folder is owned by one run at a time through an OS lock
//!   ([`RunLock`], `flock`), which the kernel releases when the process
//!   dies, even by SIGKILL; an earlier run is moved aside, never deleted.
//!
//! Errors are `std::io::Error`s whose message says what is wrong with the
//! file; each caller adds the path and what it was doing, in its own error
//! type.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Largest config file read (TOML or JSON).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `latest` pointer file read.
pub const MAX_POINTER_BYTES: u64 = 4096;
/// Largest `train.jsonl` read (on resume): ~100 000 epochs of lines with
/// per-tensor gradient norms.
pub const MAX_LOG_BYTES: u64 = 256 << 20;

/// What a non-regular file is, for messages.
fn kind_of(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() { "a folder" } else { "not a regular file" }
}

fn not_regular(t: &fs::FileType) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("is {}, not a regular file", kind_of(t)))
}

/// Opens `path` for reading if it is a regular file (symlinks followed);
/// returns the file and its length. The type is checked before the open
/// (opening a FIFO would block) and again on the open file.
pub fn open_regular(path: &Path) -> io::Result<(File, u64)> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    let f = File::open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    Ok((f, meta.len()))
}

/// The error of a file over a cap.
pub fn too_large(len: u64, limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::FileTooLarge, format!("is {len} bytes, more than the {limit} accepted here"))
}

/// Reads exactly `len` more bytes of `r` into a buffer reserved up front
/// (an allocation failure is an error, not an abort). A file that holds
/// more or fewer bytes changed while it was read, and is an error too.
pub fn read_len(r: impl Read, len: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    append_len(r, len, &mut out)?;
    Ok(out)
}

/// [`read_len`], appending to `out`.
pub fn append_len(mut r: impl Read, len: u64, out: &mut Vec<u8>) -> io::Result<()> {
    append_exact(&mut r, len, out)?;
    let mut more = [0u8; 1];
    if r.read(&mut more)? != 0 {
        return Err(io::Error::other(format!("changed while read: holds more than the {len} bytes expected")));
    }
    Ok(())
}

/// Reads exactly the next `len` bytes of `r` into `out` (reserved up
/// front), leaving the rest unread: a file's header before its body.
pub fn append_exact(r: impl Read, len: u64, out: &mut Vec<u8>) -> io::Result<()> {
    let cap = usize::try_from(len)
        .ok()
        .filter(|&c| c.checked_add(out.len()).is_some_and(|t| isize::try_from(t).is_ok()))
        .ok_or_else(|| too_large(len, isize::MAX as u64))?;
    out.try_reserve_exact(cap)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, format!("cannot reserve {len} bytes to read it")))?;
    let before = out.len();
    r.take(len).read_to_end(out)?;
    let got = (out.len() - before) as u64;
    if got != len {
        return Err(io::Error::other(format!("changed while read: {got} bytes instead of {len}")));
    }
    Ok(())
}

/// Reads the regular file `path` whole if it holds at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
    if len > limit {
        return Err(too_large(len, limit));
    }
    read_len(f, len)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text_bounded(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_bounded(path, limit)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("is not UTF-8 text ({e})")))
}

/// Whether `a` and `b` name the same file (device and inode on Unix,
/// canonical paths elsewhere). A path that does not exist is no file.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs::metadata(a), fs::metadata(b)) {
            (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        match (fs::canonicalize(a), fs::canonicalize(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
    }
}

/// Checks that `path` may be written as an output: it is a new path or a
/// regular file. Writing replaces the path by rename, so a device node or
/// FIFO there would be replaced by a regular file.
pub fn check_writable(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("is {}, not a regular file; refusing to replace it", kind_of(&m.file_type())),
        )),
        _ => Ok(()),
    }
}

/// [`check_writable`], and `path` is none of `inputs`; an input folder
/// stands for every file directly in it (a data folder's files).
pub fn check_output(path: &Path, inputs: &[&Path]) -> io::Result<()> {
    check_writable(path)?;
    for input in inputs {
        let clash = if input.is_dir() {
            fs::read_dir(input)?.filter_map(|e| e.ok()).any(|e| same_file(&e.path(), path))
        } else {
            same_file(input, path)
        };
        if clash {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("is this command's input {}; refusing to overwrite it", input.display()),
            ));
        }
    }
    Ok(())
}

/// Whether `dir` holds no run: missing or empty.
pub fn is_vacant(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().transpose()?.is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// The last component of a run folder's path, for its numbered siblings.
fn base_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "run".into())
}

/// `base` if it is [vacant](is_vacant), else the first vacant
/// `base-2`, `base-3`, ...
pub fn next_vacant(base: &Path) -> io::Result<PathBuf> {
    if is_vacant(base)? {
        return Ok(base.to_path_buf());
    }
    let name = base_name(base);
    for n in 2u32.. {
        let p = base.with_file_name(format!("{name}-{n}"));
        if is_vacant(&p)? {
            return Ok(p);
        }
    }
    Err(io::Error::other("no free folder name left"))
}

/// An exclusive OS lock (`flock`) on a run folder itself, held until
/// dropped. The kernel drops it with the process, so a killed run never
/// leaves it held; no lock file is written, so the folder holds the run's
/// files and nothing else. (Unix: a folder opens as a file there.)
#[derive(Debug)]
pub struct RunLock {
    file: File,
    dir: PathBuf,
}

impl RunLock {
    /// Locks `dir` (which must exist), or fails with `ResourceBusy`.
    pub fn acquire(dir: &Path) -> io::Result<Self> {
        let file = File::open(dir)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(io::ErrorKind::ResourceBusy, "is in use by another run"));
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Self { file, dir: dir.to_path_buf() })
    }

    /// The locked folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// Moves the run in `dir` aside to the first free `dir.old-1`,
/// `dir.old-2`, ... (same parent, so a rename: nothing is copied or
/// deleted) under its lock, so a live run is never moved. Returns where it
/// went, or `None` if `dir` held no run.
pub fn move_aside(dir: &Path) -> io::Result<Option<PathBuf>> {
    if is_vacant(dir)? {
        return Ok(None);
    }
    let lock = RunLock::acquire(dir)?;
    let name = base_name(dir);
    for n in 1u32.. {
        let to = dir.with_file_name(format!("{name}.old-{n}"));
        if fs::symlink_metadata(&to).is_ok() {
            continue;
        }
        match fs::rename(dir, &to) {
            Ok(()) => {
                drop(lock);
                return Ok(Some(to));
            }
            // Taken between the check and the rename: try the next name.
            Err(e) if matches!(e.kind(), io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty) => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other("no free folder name left"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("infomax-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reads_are_bounded_and_regular_only() {
        let d = tmp("read");
        let p = d.join("a");
        fs::write(&p, b"12345").unwrap();
        assert_eq!(read_bounded(&p, 5).unwrap(), b"12345");
        assert_eq!(read_bounded(&p, 4).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
        let e = read_bounded(&d, 5).unwrap_err();
        assert!(e.to_string().contains("is a folder"), "{e}");
        #[cfg(unix)]
        {
            let e = read_bounded(Path::new("/dev/zero"), u64::MAX).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
        }
        assert_eq!(read_bounded(&d.join("missing"), 5).unwrap_err().kind(), io::ErrorKind::NotFound);
        let e = read_len(&b"123"[..], 2).unwrap_err();
        assert!(e.to_string().contains("changed while read: holds more than the 2 bytes"), "{e}");
        let e = read_len(&b"1"[..], 2).unwrap_err();
        assert!(e.to_string().contains("changed while read: 1 bytes instead of 2"), "{e}");
        let mut head = Vec::new();
        append_exact(&b"12345"[..], 2, &mut head).unwrap();
        assert_eq!(head, b"12");
        fs::write(&p, [0xff, 0xfe]).unwrap();
        assert_eq!(read_text_bounded(&p, 5).unwrap_err().kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn outputs_are_new_or_regular_and_never_an_input() {
        let d = tmp("out");
        let (a, b) = (d.join("a"), d.join("b"));
        fs::write(&a, b"x").unwrap();
        assert!(check_output(&b, &[&a]).is_ok());
        let e = check_output(&a, &[&a]).unwrap_err();
        assert!(e.to_string().contains("refusing to overwrite"), "{e}");
        assert!(check_output(&a, &[&d]).is_err(), "a file of an input folder");
        assert!(check_output(&a, &[&b]).is_ok());
        #[cfg(unix)]
        {
            let e = check_output(Path::new("/dev/null"), &[]).unwrap_err();
            assert!(e.to_string().contains("character device"), "{e}");
            std::os::unix::fs::symlink(&a, &b).unwrap();
            assert!(check_output(&b, &[&a]).is_err(), "a symlink to an input");
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn run_folders_lock_and_move_aside() {
        let d = tmp("run");
        let run = d.join("r");
        assert!(is_vacant(&run).unwrap());
        assert_eq!(next_vacant(&run).unwrap(), run);
        fs::create_dir(&run).unwrap();
        let lock = RunLock::acquire(&run).unwrap();
        assert!(is_vacant(&run).unwrap(), "the lock writes no file");
        let e = RunLock::acquire(&run).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ResourceBusy);
        assert!(e.to_string().contains("in use by another run"), "{e}");
        fs::write(run.join("f"), b"kept").unwrap();
        assert_eq!(next_vacant(&run).unwrap(), d.join("r-2"));
        assert_eq!(move_aside(&run).unwrap_err().kind(), io::ErrorKind::ResourceBusy, "a live run stays");
        drop(lock);
        assert_eq!(move_aside(&run).unwrap(), Some(d.join("r.old-1")));
        assert_eq!(fs::read(d.join("r.old-1/f")).unwrap(), b"kept");
        assert_eq!(move_aside(&run).unwrap(), None);
        fs::create_dir(&run).unwrap();
        fs::write(run.join("g"), b"second").unwrap();
        assert_eq!(move_aside(&run).unwrap(), Some(d.join("r.old-2")));
        fs::remove_dir_all(&d).unwrap();
    }
}
