//! Errors of the inference path. `Copy`, no allocation: every variant holds
//! integers and `'static` strings, so a firmware can match and print them.

use core::fmt;

use super::dtype::Dtype;

/// Everything that can go wrong between the file bytes and the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InferError {
    /// The file is shorter than the 8-byte header length.
    TooShort {
        /// File length in bytes.
        len: usize,
    },
    /// The header length exceeds the safetensors limit (100 MB).
    HeaderTooLarge {
        /// The declared header length.
        len: u64,
    },
    /// The header length points past the end of the file.
    HeaderOutOfBounds {
        /// The declared header length.
        header_len: u64,
        /// File length in bytes.
        file_len: usize,
    },
    /// The header is not UTF-8.
    InvalidUtf8 {
        /// Byte offset in the header of the first invalid byte.
        offset: usize,
    },
    /// The header is not the JSON the format requires.
    InvalidJson {
        /// Byte offset in the JSON text.
        offset: usize,
        /// What was expected.
        reason: &'static str,
    },
    /// Two tensors (or two `__metadata__` keys) share a name.
    DuplicateName {
        /// Index (in file order) of the second occurrence.
        index: usize,
    },
    /// A dtype string this reader does not know.
    UnknownDtype {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// More tensors than the table's capacity `N`.
    TooManyTensors {
        /// The capacity.
        capacity: usize,
    },
    /// More `__metadata__` entries than [`super::MAX_METADATA`].
    TooManyMetadata {
        /// The capacity.
        capacity: usize,
    },
    /// A shape with more dimensions than [`super::MAX_RANK`].
    RankTooLarge {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// The product of a shape (in bytes) overflows `usize`.
    ShapeOverflow {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// `data_offsets` has `begin > end` or does not span `shape × dtype` bytes.
    OffsetsDisagreeWithShape {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// `data_offsets` reach past the end of the data section.
    OffsetsOutOfBounds {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// Tensors overlap or leave a hole in the data section.
    NotContiguous {
        /// Byte offset in the data section where the layout breaks.
        offset: usize,
    },
    /// The tensors do not cover the whole data section.
    DataLengthMismatch {
        /// Bytes the tensors cover.
        covered: usize,
        /// Bytes after the header.
        data_len: usize,
    },
    /// A tensor does not start at a multiple of its element size.
    Misaligned {
        /// Index (in file order) of the tensor.
        index: usize,
    },
    /// A metadata key the plan needs is absent.
    MissingMetadata {
        /// The key.
        key: &'static str,
    },
    /// The file is not an infomax inference file of a supported version.
    UnsupportedFormat {
        /// The offending metadata key (`format`, `format_version`, `folded`).
        key: &'static str,
    },
    /// The encoder config (metadata or code) cannot describe a valid encoder.
    InvalidConfig {
        /// Why.
        reason: &'static str,
    },
    /// The encoder uses a layer the inference path does not run (the
    /// trainer's bottleneck blocks and crop/fold stage).
    UnsupportedLayer {
        /// The layer kind (`bottleneck`, `fold`).
        layer: &'static str,
    },
    /// A tensor the plan needs is absent.
    MissingTensor {
        /// Layer index (the Y layer is the last one).
        layer: usize,
        /// `weight` or `bias`.
        part: &'static str,
    },
    /// A tensor has the wrong shape for the plan.
    WrongShape {
        /// Layer index (the Y layer is the last one).
        layer: usize,
        /// `weight` or `bias`.
        part: &'static str,
    },
    /// A tensor's dtype is not f32, f16 or bf16.
    WrongDtype {
        /// Layer index (the Y layer is the last one).
        layer: usize,
        /// `weight` or `bias`.
        part: &'static str,
        /// The dtype found.
        dtype: Dtype,
    },
    /// A slice passed to `encode` has the wrong length.
    WrongLength {
        /// `input`, `output`, or a tap name.
        what: &'static str,
        /// The length the plan needs.
        expected: usize,
        /// The length passed.
        got: usize,
    },
    /// The scratch slice is shorter than [`super::Plan::scratch_len`].
    ScratchTooSmall {
        /// `scratch_len()`.
        needed: usize,
        /// The length passed.
        got: usize,
    },
    /// A tap was requested that this encoder does not have.
    TapUnavailable {
        /// `conv` or `fc`.
        tap: &'static str,
    },
    /// A kernel rejected a shape (should not happen after planning).
    Kernel(crate::Error),
}

impl From<crate::Error> for InferError {
    fn from(e: crate::Error) -> Self {
        InferError::Kernel(e)
    }
}

impl fmt::Display for InferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use InferError::*;
        match *self {
            TooShort { len } => write!(f, "safetensors: file of {len} bytes has no 8-byte header length"),
            HeaderTooLarge { len } => write!(f, "safetensors: header of {len} bytes exceeds the 100 MB limit"),
            HeaderOutOfBounds { header_len, file_len } => {
                write!(f, "safetensors: header of {header_len} bytes does not fit in a {file_len}-byte file")
            }
            InvalidUtf8 { offset } => write!(f, "safetensors: header is not UTF-8 (byte {offset})"),
            InvalidJson { offset, reason } => write!(f, "safetensors: invalid JSON header at byte {offset}: {reason}"),
            DuplicateName { index } => write!(f, "safetensors: entry {index} repeats an earlier name"),
            UnknownDtype { index } => write!(f, "safetensors: tensor {index} has an unknown dtype"),
            TooManyTensors { capacity } => write!(f, "safetensors: more than {capacity} tensors (the table capacity)"),
            TooManyMetadata { capacity } => write!(f, "safetensors: more than {capacity} metadata entries"),
            RankTooLarge { index } => write!(f, "safetensors: tensor {index} has too many dimensions"),
            ShapeOverflow { index } => write!(f, "safetensors: tensor {index}: shape size overflows"),
            OffsetsDisagreeWithShape { index } => {
                write!(f, "safetensors: tensor {index}: data_offsets do not span shape × dtype bytes")
            }
            OffsetsOutOfBounds { index } => {
                write!(f, "safetensors: tensor {index}: data_offsets past the end of the file")
            }
            NotContiguous { offset } => {
                write!(f, "safetensors: tensors overlap or leave a hole at data byte {offset}")
            }
            DataLengthMismatch { covered, data_len } => {
                write!(f, "safetensors: tensors cover {covered} bytes but the data section has {data_len}")
            }
            Misaligned { index } => write!(f, "safetensors: tensor {index} is not aligned to its element size"),
            MissingMetadata { key } => write!(f, "inference file: metadata has no `{key}`"),
            UnsupportedFormat { key } => {
                write!(f, "inference file: unsupported `{key}` (export with `infomax export`)")
            }
            InvalidConfig { reason } => write!(f, "encoder config: {reason}"),
            UnsupportedLayer { layer } => write!(f, "encoder config: unsupported layer {layer} in no_std inference"),
            MissingTensor { layer, part } => write!(f, "layer {layer}: {part} tensor is missing"),
            WrongShape { layer, part } => write!(f, "layer {layer}: {part} tensor has the wrong shape"),
            WrongDtype { layer, part, dtype } => {
                write!(f, "layer {layer}: {part} tensor has dtype {dtype:?}, expected F32, F16 or BF16")
            }
            WrongLength { what, expected, got } => write!(f, "encode {what}: expected length {expected}, got {got}"),
            ScratchTooSmall { needed, got } => write!(f, "encode scratch: need {needed} f32, got {got}"),
            TapUnavailable { tap } => write!(f, "this encoder has no `{tap}` tap"),
            Kernel(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for InferError {}
