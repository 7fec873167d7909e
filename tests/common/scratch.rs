//! Scratch folders for tests that write files.
//!
//! A folder is removed when its test passes, together with the
//! `NAME.old-N` folders that `train --force` moves aside beside it, so
//! repeated test runs do not fill the disk. When the test fails it is kept,
//! and its path printed, for inspection.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// An empty folder `<temp>/infomax-<prefix>-<pid>-<name>`, owned by one test.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(prefix: &str, name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("infomax-{prefix}-{}-{name}", std::process::id()));
        remove_with_siblings(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

fn remove_with_siblings(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else { return };
    let moved_aside = format!("{}.old-", name.to_string_lossy());
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&moved_aside) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept for inspection: {}", self.0.display());
        } else {
            remove_with_siblings(&self.0);
        }
    }
}

impl Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for Scratch {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}
