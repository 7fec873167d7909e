//! Weight conversion to f32 from little-endian F32, F16 and BF16 bytes: how
//! the inference path reads exported weights.
//!
//! Results are bit-identical to the `half` crate's `to_f32` for every input,
//! NaNs included: a NaN keeps its sign and payload and gets the quiet bit
//! set (`half`'s rule, and what x86 F16C does in hardware). Tested
//! exhaustively over all 65 536 bit patterns (`tests/reference.rs`).
//!
//! `half` without `std` or a compile-time F16C target converts one value at
//! a time through branches (~3 ns per weight); these loops are branch-free,
//! so LLVM vectorises them on any target, and on x86_64 with `std` the F16
//! path uses F16C's `vcvtph2ps` when the CPU has it (detected at run time).

/// `half::f16::from_bits(h).to_f32()`, branch-free.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    let exp = em & 0x7c00;
    let bits = if exp == 0x7c00 {
        // Infinity or NaN: all-ones exponent, payload kept, NaNs quieted.
        let quiet = if em & 0x3ff != 0 { 0x0040_0000 } else { 0 };
        (em << 13) | 0x7f80_0000 | quiet
    } else if exp == 0 {
        // Zero or subnormal: m·2⁻²⁴, computed exactly as (2⁻¹⁴ + m·2⁻²⁴) − 2⁻¹⁴
        // (both operands normal f32, the difference exact).
        (f32::from_bits((em << 13) + (113 << 23)) - f32::from_bits(113 << 23)).to_bits()
    } else {
        // Normal: rebias the exponent by 127 − 15.
        (em << 13) + (112 << 23)
    };
    f32::from_bits(bits | sign)
}

/// `half::bf16::from_bits(h).to_f32()`: a shift, NaNs quieted.
#[inline(always)]
pub fn bf16_bits_to_f32(h: u16) -> f32 {
    let quiet = if h & 0x7fff > 0x7f80 { 0x0040 } else { 0 };
    f32::from_bits(u32::from(h | quiet) << 16)
}

/// Converts `min(src.len() / 2, dst.len())` little-endian F16 values.
pub fn f16_to_f32(src: &[u8], dst: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
    {
        if super::cpu::features().f16c && super::cpu::features().avx {
            // SAFETY: the running CPU supports F16C and AVX (checked just
            // above), which is all `f16_to_f32_f16c` requires.
            unsafe { f16_to_f32_f16c(src, dst) };
            return;
        }
    }
    f16_to_f32_portable(src, dst);
}

/// The portable (branch-free, auto-vectorised) path of [`f16_to_f32`].
pub fn f16_to_f32_portable(src: &[u8], dst: &mut [f32]) {
    convert_portable(src, dst, f16_bits_to_f32);
}

/// `dst[i] = f(u16 i of src)`, in fixed blocks of 16 so that LLVM
/// vectorises the byte pairs' loads and `f`.
#[inline(always)]
fn convert_portable(src: &[u8], dst: &mut [f32], f: impl Fn(u16) -> f32) {
    let mut s = src.chunks_exact(32);
    let mut d = dst.chunks_exact_mut(16);
    for (s16, d16) in (&mut s).zip(&mut d) {
        let (Ok(s16), Ok(d16)) = (<&[u8; 32]>::try_from(s16), <&mut [f32; 16]>::try_from(d16)) else {
            continue;
        };
        for i in 0..16 {
            d16[i] = f(u16::from_le_bytes([s16[2 * i], s16[2 * i + 1]]));
        }
    }
    for (d, c) in d.into_remainder().iter_mut().zip(s.remainder().chunks_exact(2)) {
        *d = f(u16::from_le_bytes([c[0], c[1]]));
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx,f16c")]
fn f16_to_f32_f16c(src: &[u8], dst: &mut [f32]) {
    use core::arch::x86_64::{__m128i, _mm_loadu_si128, _mm256_cvtph_ps, _mm256_storeu_ps};
    let n = dst.len().min(src.len() / 2);
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    for (s8, d8) in (&mut s).zip(&mut d) {
        // SAFETY: `s8` is exactly 16 bytes (8 F16 values) and `d8` exactly 8
        // f32, so the unaligned 128-bit load and 256-bit store stay inside
        // them; the CPU has F16C and AVX (this function's target features).
        unsafe {
            let h = _mm_loadu_si128(s8.as_ptr().cast::<__m128i>());
            _mm256_storeu_ps(d8.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    f16_to_f32_portable(s.remainder(), d.into_remainder());
}

/// Converts `min(src.len() / 2, dst.len())` little-endian BF16 values.
pub fn bf16_to_f32(src: &[u8], dst: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
    {
        if super::cpu::features().avx2 {
            // SAFETY: the running CPU supports AVX2 (checked just above),
            // which is all `bf16_to_f32_avx2` requires.
            unsafe { bf16_to_f32_avx2(src, dst) };
            return;
        }
    }
    bf16_to_f32_portable(src, dst);
}

/// The portable path of [`bf16_to_f32`].
pub fn bf16_to_f32_portable(src: &[u8], dst: &mut [f32]) {
    convert_portable(src, dst, bf16_bits_to_f32);
}

#[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx2")]
fn bf16_to_f32_avx2(src: &[u8], dst: &mut [f32]) {
    use core::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm256_and_si256, _mm256_castsi256_ps, _mm256_cmpgt_epi32,
        _mm256_cvtepu16_epi32, _mm256_or_si256, _mm256_set1_epi32, _mm256_slli_epi32, _mm256_storeu_ps,
    };
    let n = dst.len().min(src.len() / 2);
    let (src, dst) = (&src[..2 * n], &mut dst[..n]);
    let mut s = src.chunks_exact(16);
    let mut d = dst.chunks_exact_mut(8);
    let abs = _mm256_set1_epi32(0x7fff_ffff);
    let inf = _mm256_set1_epi32(0x7f80_0000);
    let quiet = _mm256_set1_epi32(0x0040_0000);
    for (s8, d8) in (&mut s).zip(&mut d) {
        // SAFETY: `s8` is exactly 16 bytes (8 BF16 values) and `d8` exactly
        // 8 f32, so the unaligned load and store stay inside them; the CPU
        // has AVX2 (this function's target feature).
        unsafe {
            let h = _mm_loadu_si128(s8.as_ptr().cast::<__m128i>());
            let x: __m256i = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            // NaN (|x| > inf as integers): set the quiet bit, as `half` does.
            let nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs), inf);
            let x = _mm256_or_si256(x, _mm256_and_si256(nan, quiet));
            _mm256_storeu_ps(d8.as_mut_ptr(), _mm256_castsi256_ps(x));
        }
    }
    bf16_to_f32_portable(s.remainder(), d.into_remainder());
}

/// Converts `min(src.len() / 4, dst.len())` little-endian F32 values (a copy
/// for buffers that cannot be borrowed in place).
pub fn f32_le_to_f32(src: &[u8], dst: &mut [f32]) {
    for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
}

/// `bytes` as `&[f32]` without a copy, when that is exactly what the bytes
/// encode: a little-endian target, a 4-byte-aligned start and a length that
/// is a multiple of 4. Otherwise `None` (read through [`f32_le_to_f32`]).
pub fn f32_in_place(bytes: &[u8]) -> Option<&[f32]> {
    if cfg!(target_endian = "big") || !bytes.len().is_multiple_of(4) {
        return None;
    }
    // SAFETY: every 4-byte pattern is a valid f32 (no invalid values, no
    // padding), and `align_to` only reinterprets the correctly aligned middle
    // part; we use it only if it covers all of `bytes`. On a little-endian
    // target the native reading equals `f32::from_le_bytes`.
    let (head, mid, tail) = unsafe { bytes.align_to::<f32>() };
    if head.is_empty() && tail.is_empty() { Some(mid) } else { None }
}
