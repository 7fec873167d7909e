//! The core's error: kernels, units and inference (the host side wraps it in
//! `HostError` (feature `train`) with the file or config it concerns). `no_std` friendly: every variant carries
//! only `'static` strings and integers, so it needs no allocation.

use core::fmt;

/// Everything that can go wrong in infomax, typed so callers can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A slice has the wrong length for the shape it is used with.
    LengthMismatch {
        /// Which argument (e.g. "conv2d input").
        what: &'static str,
        /// The length the shape requires.
        expected: usize,
        /// The length that was passed.
        got: usize,
    },
    /// A shape dimension is zero where a positive size is required.
    ZeroSize {
        /// Which dimension (e.g. "conv2d out_channels").
        what: &'static str,
    },
    /// A shape is impossible for the op (kernel larger than the padded input,
    /// mismatched inner dimensions, a stride of zero, ...).
    InvalidShape {
        /// Which op or argument.
        what: &'static str,
        /// Why it cannot work.
        reason: &'static str,
    },
    /// A size computation overflowed `usize`.
    Overflow {
        /// Which size.
        what: &'static str,
    },
    /// A numeric parameter is out of its valid range (e.g. dropout p >= 1).
    InvalidParameter {
        /// Which parameter.
        what: &'static str,
        /// The valid range, in words.
        reason: &'static str,
    },
    /// A class label is outside `0..classes`.
    LabelOutOfRange {
        /// Position of the label in the batch.
        index: usize,
        /// The label value.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthMismatch { what, expected, got } => write!(f, "{what}: expected length {expected}, got {got}"),
            Error::ZeroSize { what } => write!(f, "{what}: size must be at least 1, got 0"),
            Error::InvalidShape { what, reason } => write!(f, "{what}: invalid shape: {reason}"),
            Error::Overflow { what } => write!(f, "{what}: size overflows usize"),
            Error::InvalidParameter { what, reason } => {
                write!(f, "{what}: invalid parameter: {reason}")
            }
            Error::LabelOutOfRange { index, label, classes } => {
                write!(f, "label {label} at position {index} is out of range for {classes} classes")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// Crate-wide result alias.
pub type Result<T> = core::result::Result<T, Error>;

/// Checks that `got == expected`, naming the argument on failure.
#[inline]
pub(crate) fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if expected == got { Ok(()) } else { Err(Error::LengthMismatch { what, expected, got }) }
}

/// Checks that a dimension is positive.
#[inline]
pub(crate) fn check_nonzero(what: &'static str, v: usize) -> Result<()> {
    if v == 0 { Err(Error::ZeroSize { what }) } else { Ok(()) }
}

/// Overflow-checked product of dimensions.
#[inline]
pub(crate) fn checked_product(what: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or(Error::Overflow { what })
}
