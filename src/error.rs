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
    /// A setting is outside its row of [`crate::bounds`].
    OutOfRange {
        /// The setting's row.
        bound: &'static Bound,
        /// The value given.
        value: Value,
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
            Error::OutOfRange { bound, value } => {
                write!(f, "{}", bound.name)?;
                if let Some(flag) = bound.flag {
                    write!(f, " ({flag})")?;
                }
                write!(f, " = {value} is out of range {bound}: {}", bound.why)
            }
            Error::LabelOutOfRange { index, label, classes } => {
                write!(f, "label {label} at position {index} is out of range for {classes} classes")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

/// One setting's valid range: a row of [`crate::bounds`], defined here so
/// that [`Error::OutOfRange`] can carry it.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    /// The setting as a config key (`batch_size`, `model.mi_units`).
    pub name: &'static str,
    /// Its command-line flag, if it has one.
    pub flag: Option<&'static str>,
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// Whether `lo` itself is excluded.
    pub lo_open: bool,
    /// Whether `hi` itself is excluded.
    pub hi_open: bool,
    /// Why these ends, in a few words.
    pub why: &'static str,
}

impl PartialEq for Bound {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Bound {}

impl Bound {
    pub(crate) const fn new(
        name: &'static str,
        flag: Option<&'static str>,
        lo: f64,
        hi: f64,
        why: &'static str,
    ) -> Self {
        Self { name, flag, lo, hi, lo_open: false, hi_open: false, why }
    }

    pub(crate) const fn open_below(mut self) -> Self {
        self.lo_open = true;
        self
    }

    pub(crate) const fn open_above(mut self) -> Self {
        self.hi_open = true;
        self
    }

    /// Whether `v` is in range (NaN never is).
    pub fn contains(&self, v: f64) -> bool {
        let above = if self.lo_open { v > self.lo } else { v >= self.lo };
        let below = if self.hi_open { v < self.hi } else { v <= self.hi };
        above && below
    }

    /// Checks a real-valued setting.
    pub fn check_f64(&'static self, v: f64) -> Result<()> {
        if self.contains(v) { Ok(()) } else { Err(Error::OutOfRange { bound: self, value: Value::Real(v.to_bits()) }) }
    }

    /// Checks an integer setting.
    pub fn check_u64(&'static self, v: u64) -> Result<()> {
        // Every end is an integer below 2^53, so the comparison is exact
        // wherever it matters; larger values are out of range either way.
        if self.contains(v as f64) { Ok(()) } else { Err(Error::OutOfRange { bound: self, value: Value::Int(v) }) }
    }

    /// Checks a size.
    pub fn check_usize(&'static self, v: usize) -> Result<()> {
        self.check_u64(v as u64)
    }
}

impl fmt::Display for Bound {
    /// `[2, 65536]`, `(0, 1]`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (l, r) = (if self.lo_open { '(' } else { '[' }, if self.hi_open { ')' } else { ']' });
        write!(f, "{l}{}, {}{r}", End(self.lo), End(self.hi))
    }
}

/// A range end, integral ones in full (`1152921504606846976`, not `1.15…e18`).
struct End(f64);

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if (self.0 as i64) as f64 == self.0 && self.0.abs() < 9.0e18 {
            write!(f, "{}", self.0 as i64)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The offending value of an [`Error::OutOfRange`], kept `Eq` (a real as
/// its bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value {
    /// An integer setting.
    Int(u64),
    /// A real setting, as `f64::to_bits`.
    Real(u64),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Real(b) => write!(f, "{}", f64::from_bits(b)),
        }
    }
}

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
