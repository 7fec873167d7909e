//! A zero-allocation safetensors reader.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON
//! (`{"name": {"dtype": .., "shape": [..], "data_offsets": [begin, end]}, ..,
//! "__metadata__": {"key": "value", ..}}`), then the data section. The
//! reader parses the header into a fixed-capacity table and checks
//! everything the format requires: header bounds and size (≤ 100 MB), UTF-8
//! and JSON, unique names, known dtypes, shape products, offsets that agree
//! with the shape, lie in bounds and tile the data section exactly (sorted,
//! no overlap, no hole), and element alignment. Values are read with
//! `from_le_bytes`, so the buffer itself needs no alignment.

use super::dtype::Dtype;
use super::error::InferError;
use super::json::{JsonStr, Lexer};
use crate::kernels::convert;
use crate::kernels::gemm::WeightRows;

/// Largest header the format allows (the `safetensors` crate's limit).
pub const MAX_HEADER: u64 = 100_000_000;
/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;
/// Most `__metadata__` entries.
pub const MAX_METADATA: usize = 32;

/// The dtype a header names.
fn parse_dtype(s: JsonStr<'_>) -> Option<Dtype> {
    Dtype::ALL.iter().find(|(n, _)| s.eq_str(n)).map(|&(_, d)| d)
}

/// One tensor of a parsed file: a view into the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Tensor<'a> {
    name: JsonStr<'a>,
    dtype: Dtype,
    shape: [usize; MAX_RANK],
    rank: usize,
    begin: usize,
    end: usize,
    data: &'a [u8],
}

impl<'a> Tensor<'a> {
    const EMPTY: Tensor<'static> =
        Tensor { name: JsonStr::EMPTY, dtype: Dtype::U8, shape: [0; MAX_RANK], rank: 0, begin: 0, end: 0, data: &[] };

    /// The name (escaped as in the header; see [`JsonStr::eq_str`]).
    pub fn name(&self) -> JsonStr<'a> {
        self.name
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape[..self.rank]
    }

    /// Element count.
    pub fn len(&self) -> usize {
        self.data.len() / self.dtype.size()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The raw little-endian bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The elements of an F32 tensor borrowed in place, without a copy: only
    /// on a little-endian target and when the data starts 4-byte aligned in
    /// memory (our exporter aligns tensor data; the buffer must be aligned
    /// too, as a `Vec<u8>` or `std::fs::read` result is). `None` otherwise.
    pub fn as_f32(&self) -> Option<&'a [f32]> {
        if self.dtype != Dtype::F32 {
            return None;
        }
        convert::f32_in_place(self.data)
    }

    /// The tensor as a row source for the inference GEMM: borrowed when
    /// [`Tensor::as_f32`] allows, otherwise converted on the fly.
    pub fn weight_rows(&self) -> Result<WeightRows<'a>, ReadError> {
        Ok(match self.dtype {
            Dtype::F32 => self.as_f32().map_or(WeightRows::F32Le(self.data), WeightRows::F32),
            Dtype::F16 => WeightRows::F16Le(self.data),
            Dtype::BF16 => WeightRows::Bf16Le(self.data),
            _ => return Err(ReadError::NotFloat),
        })
    }

    /// Converts elements `start..start + dst.len()` of an F32, F16 or BF16
    /// tensor to f32. This is how the plan reads weights tile by tile.
    pub fn read_f32(&self, start: usize, dst: &mut [f32]) -> Result<(), ReadError> {
        let size = self.dtype.size();
        let end = start.checked_add(dst.len()).ok_or(ReadError::OutOfRange)?;
        let bytes = self.data.get(start * size..end * size).ok_or(ReadError::OutOfRange)?;
        match self.dtype {
            Dtype::F32 => convert::f32_le_to_f32(bytes, dst),
            Dtype::F16 => convert::f16_to_f32(bytes, dst),
            Dtype::BF16 => convert::bf16_to_f32(bytes, dst),
            _ => return Err(ReadError::NotFloat),
        }
        Ok(())
    }
}

/// Why [`Tensor::read_f32`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The element range is outside the tensor.
    OutOfRange,
    /// The dtype is not F32, F16 or BF16.
    NotFloat,
}

/// A parsed safetensors file with room for `N` tensors: a table of views
/// into the caller's bytes. Building it allocates nothing.
#[derive(Clone, Debug)]
pub struct Weights<'a, const N: usize = 32> {
    tensors: [Tensor<'a>; N],
    count: usize,
    metadata: [(JsonStr<'a>, JsonStr<'a>); MAX_METADATA],
    meta_count: usize,
}

impl<'a, const N: usize> Weights<'a, N> {
    /// Parses and validates `bytes` (the whole file). Never panics; every
    /// violation of the format is an [`InferError`].
    pub fn parse(bytes: &'a [u8]) -> Result<Self, InferError> {
        let Some((len_bytes, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(InferError::TooShort { len: bytes.len() });
        };
        let header_len = u64::from_le_bytes(*len_bytes);
        if header_len > MAX_HEADER {
            return Err(InferError::HeaderTooLarge { len: header_len });
        }
        let oob = InferError::HeaderOutOfBounds { header_len, file_len: bytes.len() };
        let n = usize::try_from(header_len).map_err(|_| oob)?;
        if n > rest.len() {
            return Err(oob);
        }
        let (header, data) = rest.split_at(n);
        let text = core::str::from_utf8(header).map_err(|e| InferError::InvalidUtf8 { offset: e.valid_up_to() })?;
        let mut w = Self {
            tensors: [Tensor::EMPTY; N],
            count: 0,
            metadata: [(JsonStr::EMPTY, JsonStr::EMPTY); MAX_METADATA],
            meta_count: 0,
        };
        let mut lx = Lexer::new(text);
        let mut seen_metadata = false;
        let mut entry = 0;
        if !lx.open(b'{', b'}')? {
            loop {
                let name = lx.key()?;
                if name.eq_str("__metadata__") {
                    if seen_metadata {
                        return Err(InferError::DuplicateName { index: entry });
                    }
                    seen_metadata = true;
                    w.parse_metadata(&mut lx)?;
                } else {
                    if w.tensors[..w.count].iter().any(|t| t.name.same(&name)) {
                        return Err(InferError::DuplicateName { index: entry });
                    }
                    if w.count == N {
                        return Err(InferError::TooManyTensors { capacity: N });
                    }
                    w.tensors[w.count] = parse_tensor(&mut lx, name, w.count)?;
                    w.count += 1;
                }
                entry += 1;
                if !lx.more(b'}')? {
                    break;
                }
            }
        }
        lx.finish()?;
        w.check_layout(data)?;
        Ok(w)
    }

    fn parse_metadata(&mut self, lx: &mut Lexer<'a>) -> Result<(), InferError> {
        if lx.open(b'{', b'}')? {
            return Ok(());
        }
        loop {
            let k = lx.key()?;
            let v = lx.string()?;
            if self.metadata[..self.meta_count].iter().any(|(e, _)| e.same(&k)) {
                return Err(InferError::DuplicateName { index: self.meta_count });
            }
            if self.meta_count == MAX_METADATA {
                return Err(InferError::TooManyMetadata { capacity: MAX_METADATA });
            }
            self.metadata[self.meta_count] = (k, v);
            self.meta_count += 1;
            if !lx.more(b'}')? {
                return Ok(());
            }
        }
    }

    /// Sizes, bounds, alignment, then sorted coverage of the data section.
    fn check_layout(&mut self, data: &'a [u8]) -> Result<(), InferError> {
        for (index, t) in self.tensors[..self.count].iter_mut().enumerate() {
            let (begin, end) = (t.begin, t.end);
            let elems = t.shape[..t.rank]
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .and_then(|e| e.checked_mul(t.dtype.size()))
                .ok_or(InferError::ShapeOverflow { index })?;
            if begin > end || end - begin != elems {
                return Err(InferError::OffsetsDisagreeWithShape { index });
            }
            if end > data.len() {
                return Err(InferError::OffsetsOutOfBounds { index });
            }
            if begin % t.dtype.size() != 0 {
                return Err(InferError::Misaligned { index });
            }
            t.data = &data[begin..end];
        }
        let tensors = &mut self.tensors[..self.count];
        tensors.sort_unstable_by_key(|t| (t.begin, t.end));
        let mut covered = 0usize;
        for t in tensors.iter() {
            if t.begin != covered {
                return Err(InferError::NotContiguous { offset: t.begin.min(covered) });
            }
            covered += t.data.len();
        }
        if covered != data.len() {
            return Err(InferError::DataLengthMismatch { covered, data_len: data.len() });
        }
        Ok(())
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<Tensor<'a>> {
        self.tensors[..self.count].iter().find(|t| t.name.eq_str(name)).copied()
    }

    /// All tensors, sorted by their position in the data section.
    pub fn tensors(&self) -> &[Tensor<'a>] {
        &self.tensors[..self.count]
    }

    /// The `__metadata__` value of `key`.
    pub fn metadata(&self, key: &str) -> Option<JsonStr<'a>> {
        self.metadata[..self.meta_count].iter().find(|(k, _)| k.eq_str(key)).map(|&(_, v)| v)
    }

    /// All `__metadata__` entries, in file order.
    pub fn metadata_entries(&self) -> &[(JsonStr<'a>, JsonStr<'a>)] {
        &self.metadata[..self.meta_count]
    }
}

/// One tensor entry; `data` stays empty until [`Weights::check_layout`]
/// has checked the offsets against the data section.
fn parse_tensor<'a>(lx: &mut Lexer<'a>, name: JsonStr<'a>, index: usize) -> Result<Tensor<'a>, InferError> {
    let mut t = Tensor { name, ..Tensor::EMPTY };
    let (mut dtype, mut shape, mut offsets) = (None, false, None);
    if lx.open(b'{', b'}')? {
        return Err(lx.err("tensor entry needs dtype, shape and data_offsets"));
    }
    loop {
        let k = lx.key()?;
        if k.eq_str("dtype") {
            let s = lx.string()?;
            dtype = Some(parse_dtype(s).ok_or(InferError::UnknownDtype { index })?);
        } else if k.eq_str("shape") && !shape {
            shape = true;
            if !lx.open(b'[', b']')? {
                loop {
                    if t.rank == MAX_RANK {
                        return Err(InferError::RankTooLarge { index });
                    }
                    t.shape[t.rank] = lx.usize()?;
                    t.rank += 1;
                    if !lx.more(b']')? {
                        break;
                    }
                }
            }
        } else if k.eq_str("data_offsets") && offsets.is_none() {
            lx.expect(b'[', "expected '['")?;
            let begin = lx.usize()?;
            lx.expect(b',', "data_offsets needs two integers")?;
            let end = lx.usize()?;
            lx.expect(b']', "data_offsets needs two integers")?;
            offsets = Some((begin, end));
        } else {
            return Err(lx.err("unknown or repeated key in tensor entry"));
        }
        if !lx.more(b'}')? {
            break;
        }
    }
    match (dtype, shape, offsets) {
        (Some(d), true, Some((begin, end))) => {
            t.dtype = d;
            t.begin = begin;
            t.end = end;
            Ok(t)
        }
        _ => Err(lx.err("tensor entry needs dtype, shape and data_offsets")),
    }
}
