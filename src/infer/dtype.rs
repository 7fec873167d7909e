//! The element types of the safetensors format.

/// Element types of the safetensors format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Dtype {
    Bool,
    U8,
    I8,
    F8E5M2,
    F8E4M3,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl Dtype {
    /// Every dtype with its header name.
    pub(crate) const ALL: [(&'static str, Dtype); 15] = [
        ("BOOL", Dtype::Bool),
        ("U8", Dtype::U8),
        ("I8", Dtype::I8),
        ("F8_E5M2", Dtype::F8E5M2),
        ("F8_E4M3", Dtype::F8E4M3),
        ("I16", Dtype::I16),
        ("U16", Dtype::U16),
        ("F16", Dtype::F16),
        ("BF16", Dtype::BF16),
        ("I32", Dtype::I32),
        ("U32", Dtype::U32),
        ("F32", Dtype::F32),
        ("F64", Dtype::F64),
        ("I64", Dtype::I64),
        ("U64", Dtype::U64),
    ];

    /// The name used in the header.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|&&(_, d)| d == self).map_or("?", |&(n, _)| n)
    }

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::U8 | Dtype::I8 | Dtype::F8E5M2 | Dtype::F8E4M3 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
        }
    }
}
