//! Weights as stored in an exported file: the A operand of inference.

use crate::kernels::convert;

/// Rows of a row-major weight matrix, as stored in an exported file.
#[derive(Clone, Copy, Debug)]
pub enum WeightRows<'a> {
    /// f32 values, read in place.
    F32(&'a [f32]),
    /// Little-endian f32 bytes (unaligned or big-endian target: copied).
    F32Le(&'a [u8]),
    /// Little-endian IEEE binary16 bytes.
    F16Le(&'a [u8]),
    /// Little-endian bfloat16 bytes.
    Bf16Le(&'a [u8]),
}

impl<'a> WeightRows<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            WeightRows::F32(s) => s.len(),
            WeightRows::F32Le(b) => b.len() / 4,
            WeightRows::F16Le(b) | WeightRows::Bf16Le(b) => b.len() / 2,
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values themselves, when no conversion is needed.
    pub fn in_place(&self) -> Option<&'a [f32]> {
        match self {
            WeightRows::F32(s) => Some(s),
            _ => None,
        }
    }

    /// Converts elements `start..start + dst.len()` (the caller keeps them in
    /// range; out-of-range elements are left untouched).
    pub fn read(&self, start: usize, dst: &mut [f32]) {
        let n = dst.len();
        let bytes = |b: &'a [u8], size: usize| {
            let s = start.saturating_mul(size).min(b.len());
            let e = start.saturating_add(n).saturating_mul(size).min(b.len());
            &b[s..e]
        };
        match *self {
            WeightRows::F32(s) => {
                if let Some(src) = s.get(start..start.saturating_add(n)) {
                    dst.copy_from_slice(src);
                }
            }
            WeightRows::F32Le(b) => convert::f32_le_to_f32(bytes(b, 4), dst),
            WeightRows::F16Le(b) => convert::f16_to_f32(bytes(b, 2), dst),
            WeightRows::Bf16Le(b) => convert::bf16_to_f32(bytes(b, 2), dst),
        }
    }
}
