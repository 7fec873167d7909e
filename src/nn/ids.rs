//! Typed handles into the flat parameter and buffer vectors.

use core::ops::Range;

use crate::error::{Error, Result};

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name {
            offset: usize,
            len: usize,
        }

        impl $name {
            /// The tensor at `offset..offset + len`.
            pub const fn new(offset: usize, len: usize) -> Self {
                Self { offset, len }
            }

            /// Its range in the flat vector.
            pub const fn range(self) -> Range<usize> {
                self.offset..self.offset + self.len
            }

            /// Element count.
            pub const fn len(self) -> usize {
                self.len
            }

            /// True for an empty tensor.
            pub const fn is_empty(self) -> bool {
                self.len == 0
            }

            /// The tensor's elements in `buf`.
            #[inline]
            pub fn of<T>(self, buf: &[T]) -> Result<&[T]> {
                buf.get(self.range()).ok_or(Error::InvalidShape { what: $what, reason: SHORT })
            }

            /// The tensor's elements in `buf`, mutably.
            #[inline]
            pub fn of_mut<T>(self, buf: &mut [T]) -> Result<&mut [T]> {
                buf.get_mut(self.range()).ok_or(Error::InvalidShape { what: $what, reason: SHORT })
            }
        }
    };
}

const SHORT: &str = "vector shorter than the table that declared the tensor";

handle!(
    /// A trainable tensor: a range of the parameter vector, and of every
    /// vector shaped like it (gradients, optimiser moments).
    ParamId,
    "parameter"
);
handle!(
    /// A tensor that is not trained (BN running statistics): a range of the
    /// buffer vector.
    BufferId,
    "buffer"
);

/// Two distinct tensors of one vector, mutably (a weight's and a bias's
/// gradients, a BN's running mean and variance).
pub fn two_mut<T>(buf: &mut [T], a: Range<usize>, b: Range<usize>) -> Result<(&mut [T], &mut [T])> {
    let bad = Error::InvalidShape { what: "tensor pair", reason: "overlapping or out of range" };
    if a.start > a.end || b.start > b.end || buf.len() < a.end.max(b.end) {
        return Err(bad);
    }
    if a.end <= b.start {
        let (lo, hi) = buf.split_at_mut(b.start);
        Ok((&mut lo[a], &mut hi[..b.end - b.start]))
    } else if b.end <= a.start {
        let (lo, hi) = buf.split_at_mut(a.start);
        Ok((&mut hi[..a.end - a.start], &mut lo[b]))
    } else {
        Err(bad)
    }
}
