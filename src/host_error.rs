//! The host side's error: files, formats, configs, datasets, divergence,
//! for training, checkpoints, export and evaluation alike (the `no_std`
//! core has [`crate::Error`]). Every variant names what it was working on.

use std::fmt;
use std::path::PathBuf;

/// A failure of the host side: a file, a format, a config, a dataset, or training diverging.
#[derive(Debug)]
#[non_exhaustive]
pub enum HostError {
    /// Reading or writing a file failed.
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done ("write checkpoint", ...).
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file exists but its content is wrong.
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A config (file or flags) that cannot work.
    Config(String),
    /// The encoder has layers the `no_std` inference path does not run, so
    /// it cannot be exported (training, eval and embed still work).
    Unsupported(&'static str),
    /// A shape or numeric error from the model or kernels.
    Model(crate::Error),
    /// A dataset could not be read.
    Data(crate::data::DataError),
    /// A fresh run was asked to start in a folder that holds an earlier
    /// run; it is left untouched.
    RunExists {
        /// The folder.
        dir: PathBuf,
    },
    /// A command's memory plan needs more than the limit; nothing large
    /// was allocated.
    OutOfMemory {
        /// Bytes the plan needs.
        need: u128,
        /// The limit.
        limit: u64,
        /// Where the limit came from.
        limit_from: &'static str,
        /// The plan's largest item.
        largest: String,
        /// Its bytes.
        largest_bytes: u128,
    },
    /// A model or its outputs hold values that cannot be right (NaN, Inf,
    /// a negative BN variance); nothing was written from them.
    NotFinite {
        /// Where: the tensor, or the output and row.
        what: String,
    },
    /// Training diverged (NaN or Inf). Nothing is written after it: the
    /// last good checkpoint stays as it was.
    Diverged {
        /// Global step (1-based) where it was seen.
        step: u64,
        /// Which quantity: "loss", or "gradient of <tensor>",
        /// "parameter <tensor>", "BN statistic <tensor>".
        what: String,
        /// The last good checkpoint (`latest`), if one was written.
        checkpoint: Option<PathBuf>,
    },
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::Io { path, action, source } => write!(f, "{}: cannot {action}: {source}", path.display()),
            HostError::Format { path, reason } => write!(f, "{}: {reason}", path.display()),
            HostError::Config(m) => write!(f, "invalid config: {m}"),
            HostError::Unsupported(m) => write!(f, "cannot export this encoder: {m}"),
            HostError::Model(e) => write!(f, "{e}"),
            HostError::Data(e) => write!(f, "{e}"),
            HostError::RunExists { dir } => write!(
                f,
                "{}: holds an earlier run; continue it with --resume, or pass --force to move it aside \
                 (to {}.old-N; nothing is deleted), or choose another --out",
                dir.display(),
                dir.display()
            ),
            HostError::OutOfMemory { need, limit, limit_from, largest, largest_bytes } => {
                write!(
                    f,
                    "needs about {} of memory, more than the limit of {} ({limit_from}); the largest item is {largest} \
                     ({}). Set --max-memory, or a smaller --batch-size",
                    human(*need),
                    human(u128::from(*limit)),
                    human(*largest_bytes)
                )
            }
            HostError::NotFinite { what } => {
                write!(f, "{what}: refusing to pass it on (pass --allow-non-finite to go on anyway)")
            }
            HostError::Diverged { step, what, checkpoint } => {
                write!(f, "training diverged at step {step}: {what} is not finite; ")?;
                match checkpoint {
                    Some(p) => write!(f, "the last good checkpoint {} is kept", p.display()),
                    None => write!(f, "no checkpoint had been written yet"),
                }
            }
        }
    }
}

impl std::error::Error for HostError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HostError::Io { source, .. } => Some(source),
            HostError::Model(e) => Some(e),
            HostError::Data(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::Error> for HostError {
    fn from(e: crate::Error) -> Self {
        HostError::Model(e)
    }
}

impl From<crate::data::DataError> for HostError {
    fn from(e: crate::data::DataError) -> Self {
        HostError::Data(e)
    }
}

/// Result alias of the training stack.
pub type Result<T> = std::result::Result<T, HostError>;

/// Wraps an io error with its path and action.
pub fn io(path: impl Into<PathBuf>, action: &'static str) -> impl FnOnce(std::io::Error) -> HostError {
    let path = path.into();
    move |source| HostError::Io { path, action, source }
}

/// Formats bytes for a message (`1.5 GiB`).
pub fn human(bytes: u128) -> String {
    let b = bytes as f64;
    let units = [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (name, size) in units {
        if b >= size as f64 {
            return format!("{:.1} {name}", b / size as f64);
        }
    }
    format!("{bytes} B")
}
