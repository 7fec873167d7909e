//! Fully connected layer: `y = x · Wᵀ + b`, with `W` stored `[out, in]`
//! exactly as PyTorch's `nn.Linear`.

use super::Float;
use super::conv::check_fields_nonzero;
use super::gemm::{MatMut, MatRef, gemm};
use crate::error::{Result, check_len, checked_product};

/// Shape of one linear call: `x` is `[batch, in_features]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearShape {
    /// Rows of `x` (N).
    pub batch: usize,
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
}

impl LinearShape {
    /// A shape from its three sizes.
    pub fn new(batch: usize, in_features: usize, out_features: usize) -> Self {
        Self { batch, in_features, out_features }
    }

    /// Checks the sizes; returns (input, output, weight) lengths.
    pub fn validate(&self) -> Result<(usize, usize, usize)> {
        check_fields_nonzero!("linear", self; batch, in_features, out_features);
        Ok((
            checked_product("linear input", &[self.batch, self.in_features])?,
            checked_product("linear output", &[self.batch, self.out_features])?,
            checked_product("linear weight", &[self.out_features, self.in_features])?,
        ))
    }

    pub(crate) fn check(&self, x: usize, w: usize, b: Option<usize>, y: usize) -> Result<()> {
        let (xl, yl, wl) = self.validate()?;
        check_len("linear input", xl, x)?;
        check_len("linear weight", wl, w)?;
        if let Some(b) = b {
            check_len("linear bias", self.out_features, b)?;
        }
        check_len("linear output", yl, y)
    }

    /// The checks a linear backward pass (serial or parallel) starts with,
    /// in order; returns `dy` as a matrix.
    pub(crate) fn check_backward<'a, T: Float>(
        &self,
        x: &[T],
        w: &[T],
        dy: &'a [T],
        g: &LinearGrads<'_, T>,
    ) -> Result<MatRef<'a, T>> {
        self.check(x.len(), w.len(), None, dy.len())?;
        check_len("linear weight gradient", w.len(), g.dw.len())?;
        if let Some(dx) = &g.dx {
            check_len("linear input gradient", x.len(), dx.len())?;
        }
        MatRef::row_major(dy, self.batch, self.out_features)
    }
}

/// Adds `bias` to every row of `y` (`[rows, bias.len()]`).
pub(crate) fn add_bias_rows<T: Float>(y: &mut [T], bias: &[T]) {
    for row in y.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v += b;
        }
    }
}

/// Adds the column sums of `dy` (`[rows, db.len()]`) to `db`, rows in order.
pub(crate) fn add_col_sums<T: Float>(dy: &[T], db: &mut [T]) {
    for row in dy.chunks_exact(db.len()) {
        for (g, &v) in db.iter_mut().zip(row) {
            *g += v;
        }
    }
}

/// Forward: `y = x · Wᵀ (+ b)`.
pub fn linear_forward<T: Float>(s: &LinearShape, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) -> Result<()> {
    s.check(x.len(), w.len(), bias.map(<[T]>::len), y.len())?;
    let xm = MatRef::row_major(x, s.batch, s.in_features)?;
    let wt = MatRef::row_major(w, s.out_features, s.in_features)?.t();
    gemm(MatMut::row_major(&mut *y, s.batch, s.out_features)?, xm, wt, false)?;
    if let Some(b) = bias {
        add_bias_rows(y, b);
    }
    Ok(())
}

/// Where a backward pass puts the input gradient: overwrite, or add (two
/// layers that read one input sum their input gradients in place).
#[derive(Debug)]
pub enum InputGrad<'a, T> {
    /// `dx = …`.
    Write(&'a mut [T]),
    /// `dx += …`.
    Add(&'a mut [T]),
}

impl<'a, T> InputGrad<'a, T> {
    /// The buffer, and whether to add into it.
    pub(crate) fn parts(self) -> (&'a mut [T], bool) {
        match self {
            Self::Write(d) => (d, false),
            Self::Add(d) => (d, true),
        }
    }

    /// The buffer's length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Write(d) | Self::Add(d) => d.len(),
        }
    }
}

/// What a linear backward pass writes: `dx` (if asked for), and the
/// accumulated `dw` and `db` (if the layer has a bias).
#[derive(Debug)]
pub struct LinearGrads<'a, T> {
    /// Input gradient.
    pub dx: Option<InputGrad<'a, T>>,
    /// Weight gradient, accumulated.
    pub dw: &'a mut [T],
    /// Bias gradient, accumulated.
    pub db: Option<&'a mut [T]>,
}

/// Backward: `dx (+)= dy · W` (if given), accumulates `dW += dyᵀ · x`
/// and `db += Σ_rows dy` (if given).
pub fn linear_backward<T: Float>(s: &LinearShape, x: &[T], w: &[T], dy: &[T], g: LinearGrads<'_, T>) -> Result<()> {
    let dym = s.check_backward(x, w, dy, &g)?;
    let LinearGrads { dx, dw, db } = g;
    if let Some((dx, accumulate)) = dx.map(InputGrad::parts) {
        let wm = MatRef::row_major(w, s.out_features, s.in_features)?;
        gemm(MatMut::row_major(dx, s.batch, s.in_features)?, dym, wm, accumulate)?;
    }
    let xm = MatRef::row_major(x, s.batch, s.in_features)?;
    gemm(MatMut::row_major(dw, s.out_features, s.in_features)?, dym.t(), xm, true)?;
    if let Some(db) = db {
        check_len("linear bias gradient", s.out_features, db.len())?;
        add_col_sums(dy, db);
    }
    Ok(())
}

/// Lanes of independent partial sums in [`dot`]: two AVX2 vectors, so the
/// loop vectorises without reassociating a single running sum.
const DOT_LANES: usize = 16;

/// `Σ a[i]·b[i]` over the common length, with [`DOT_LANES`] partial sums
/// added pairwise at the end (a fixed order: the result does not depend on
/// the machine, only the rounding of FMA versus multiply-add does). The
/// matrix–vector product of batch-1 inference is a dot per output, which a
/// GEMM tile would pad 6× in rows and 16× in columns.
pub fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let [d] = dots([a], b);
    d
}

/// [`dot`] of four rows with one `x`, each result bit-identical to
/// `dot(row, x)`. Batch-1 linear layers are bound by reading the weights
/// from memory; four streams at once keep more reads in flight than one.
pub fn dot4<T: Float>(rows: [&[T]; 4], x: &[T]) -> [T; 4] {
    dots(rows, x)
}

/// [`dot`] of `R` rows with one `x`: one loop for [`dot`] and [`dot4`], so a
/// row's result never depends on how many rows go with it.
fn dots<T: Float, const R: usize>(rows: [&[T]; R], x: &[T]) -> [T; R] {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if super::cpu::features().avx2_fma() {
            if let (Some(x32), Some(rows32)) = (T::as_f32(x), rows_as_f32(rows)) {
                // SAFETY: the running CPU supports AVX2 and FMA (checked
                // just above), which is all `dots_f32_avx2_fma` requires.
                let v = unsafe { dots_f32_avx2_fma(rows32, x32) };
                return v.map(|e| T::from_f64(f64::from(e)));
            }
            // SAFETY: the running CPU supports AVX2 and FMA (checked just
            // above), which is all `dots_avx2_fma` requires.
            return unsafe { dots_avx2_fma(rows, x) };
        }
    }
    #[cfg(target_feature = "fma")]
    {
        dots_impl::<T, R, true>(rows, x)
    }
    #[cfg(not(target_feature = "fma"))]
    {
        dots_impl::<T, R, false>(rows, x)
    }
}

/// The rows as f32 slices, when `T` is f32.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
fn rows_as_f32<T: Float, const R: usize>(rows: [&[T]; R]) -> Option<[&[f32]; R]> {
    let mut out: [&[f32]; R] = [&[]; R];
    for (o, r) in out.iter_mut().zip(rows) {
        *o = T::as_f32(r)?;
    }
    Some(out)
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn dots_avx2_fma<T: Float, const R: usize>(rows: [&[T]; R], x: &[T]) -> [T; R] {
    dots_impl::<T, R, true>(rows, x)
}

/// Adds the partial sums pairwise, halves first: the fixed order every dot
/// ends with.
#[inline(always)]
fn reduce_lanes<T: Float>(acc: &mut [T; DOT_LANES]) -> T {
    let mut w = DOT_LANES;
    while w > 1 {
        w /= 2;
        for j in 0..w {
            let hi = acc[j + w];
            acc[j] += hi;
        }
    }
    acc[0]
}

/// [`dots`] for f32 in AVX2 registers: the same 16 lanes, the same FMA per
/// lane and the same tail and pairwise reduction as `dots_impl`, so each
/// result is bit-identical to it. (The generic loop is not vectorised by
/// the compiler: it ran scalar, at a third of the memory bandwidth.)
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn dots_f32_avx2_fma<const R: usize>(rows: [&[f32]; R], x: &[f32]) -> [f32; R] {
    use core::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    let len = rows.iter().fold(x.len(), |l, r| l.min(r.len()));
    let full = len / DOT_LANES * DOT_LANES;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let px = x.as_ptr();
    let pr = rows.map(<[f32]>::as_ptr);
    for c in (0..full).step_by(DOT_LANES) {
        // SAFETY: c + 16 ≤ full ≤ len ≤ every row's and x's length: all
        // 8-lane unaligned loads are in bounds.
        unsafe {
            let (x0, x1) = (_mm256_loadu_ps(px.add(c)), _mm256_loadu_ps(px.add(c + 8)));
            for r in 0..R {
                lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(pr[r].add(c)), x0, lo[r]);
                hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(pr[r].add(c + 8)), x1, hi[r]);
            }
        }
    }
    core::array::from_fn(|r| lanes_finish(lo[r], hi[r], &rows[r][full..len], &x[full..len]))
}

/// The end of an f32 dot: lanes 0..8 in `lo`, 8..16 in `hi`; the tail's
/// products go onto the first lanes, then the pairwise reduction of
/// `dots_impl`.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn lanes_finish(lo: core::arch::x86_64::__m256, hi: core::arch::x86_64::__m256, a: &[f32], b: &[f32]) -> f32 {
    use core::arch::x86_64::_mm256_storeu_ps;
    let mut acc = [0f32; DOT_LANES];
    // SAFETY: `acc` holds 16 f32: two 8-lane unaligned stores fit.
    unsafe {
        _mm256_storeu_ps(acc.as_mut_ptr(), lo);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
    }
    for (j, (&x, &y)) in a.iter().zip(b).enumerate() {
        acc[j] = x.mul_add(y, acc[j]);
    }
    reduce_lanes(&mut acc)
}

#[inline(always)]
fn dots_impl<T: Float, const R: usize, const FMA: bool>(rows: [&[T]; R], x: &[T]) -> [T; R] {
    let len = rows.iter().fold(x.len(), |l, r| l.min(r.len()));
    let full = len / DOT_LANES * DOT_LANES;
    let rows = rows.map(|r| &r[..len]);
    let mut acc = [[T::ZERO; DOT_LANES]; R];
    for c in (0..full).step_by(DOT_LANES) {
        let Ok(xv) = <&[T; DOT_LANES]>::try_from(&x[c..c + DOT_LANES]) else { continue };
        for (acc, row) in acc.iter_mut().zip(rows) {
            let Ok(wv) = <&[T; DOT_LANES]>::try_from(&row[c..c + DOT_LANES]) else { continue };
            for j in 0..DOT_LANES {
                acc[j] = if FMA { wv[j].mul_add(xv[j], acc[j]) } else { wv[j] * xv[j] + acc[j] };
            }
        }
    }
    let mut out = [T::ZERO; R];
    for ((o, acc), row) in out.iter_mut().zip(acc.iter_mut()).zip(rows) {
        for (j, (&w, &v)) in row[full..].iter().zip(&x[full..len]).enumerate() {
            acc[j] = if FMA { w.mul_add(v, acc[j]) } else { w * v + acc[j] };
        }
        *o = reduce_lanes(acc);
    }
    out
}

/// 16-bit weight encodings the fused dots read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HalfKind {
    /// IEEE binary16, little-endian.
    F16,
    /// bfloat16, little-endian.
    Bf16,
}

/// [`dot4`] over four rows of 16-bit little-endian weights (`2·x.len()`
/// bytes each), converted in registers rather than through a staging
/// buffer: batch-1 layers read half the bytes of f32 and write none. The
/// conversion is exact, so each result is bit-identical to converting the
/// row to f32 and calling [`dot`]. `None` where the CPU lacks AVX2, FMA or
/// F16C (the caller then converts and calls [`dot4`]).
pub fn dot4_half(kind: HalfKind, rows: [&[u8]; 4], x: &[f32]) -> Option<[f32; 4]> {
    #[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
    {
        let k = x.len();
        if rows.iter().all(|r| r.len() == 2 * k) && super::cpu::features().avx2_fma() && super::cpu::features().f16c {
            // SAFETY: the running CPU supports AVX2, FMA and F16C, and every
            // row holds exactly 2·x.len() bytes (both checked just above):
            // the two conditions `dot4_half_avx2` requires.
            return Some(unsafe {
                match kind {
                    HalfKind::F16 => dot4_half_avx2::<false>(rows, x),
                    HalfKind::Bf16 => dot4_half_avx2::<true>(rows, x),
                }
            });
        }
    }
    let _ = (kind, rows, x);
    None
}

/// The fused loop of [`dot4_half`]: 16 lanes per row as in `dots_impl`.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C, and every row holds at least
/// `2·x.len()` bytes (the loads read that many).
#[cfg(all(feature = "std", target_arch = "x86_64", not(miri)))]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot4_half_avx2<const BF16: bool>(rows: [&[u8]; 4], x: &[f32]) -> [f32; 4] {
    use core::arch::x86_64::{
        __m128i, __m256, _mm_loadu_si128, _mm256_castsi256_ps, _mm256_cvtepu16_epi32, _mm256_cvtph_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_setzero_ps, _mm256_slli_epi32,
    };
    // Eight 16-bit values at `p` as f32 (exact for both encodings).
    // SAFETY (of the callers): `p .. p + 16` bytes are readable.
    #[inline(always)]
    unsafe fn load8<const BF16: bool>(p: *const u8) -> __m256 {
        // SAFETY: see above; unaligned loads are allowed.
        unsafe {
            let h = _mm_loadu_si128(p.cast::<__m128i>());
            if BF16 {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_cvtph_ps(h)
            }
        }
    }
    let len = x.len();
    let full = len / DOT_LANES * DOT_LANES;
    let mut lo = [_mm256_setzero_ps(); 4];
    let mut hi = [_mm256_setzero_ps(); 4];
    let px = x.as_ptr();
    let pr = rows.map(<[u8]>::as_ptr);
    for c in (0..full).step_by(DOT_LANES) {
        // SAFETY: c + 16 ≤ full ≤ len = x.len(), and every row holds at
        // least 2·len bytes (the function's contract), so the loads of
        // x[c..c+16] and of bytes 2c..2c+32 of each row are in bounds.
        unsafe {
            let (x0, x1) = (_mm256_loadu_ps(px.add(c)), _mm256_loadu_ps(px.add(c + 8)));
            for r in 0..4 {
                lo[r] = _mm256_fmadd_ps(load8::<BF16>(pr[r].add(2 * c)), x0, lo[r]);
                hi[r] = _mm256_fmadd_ps(load8::<BF16>(pr[r].add(2 * c + 16)), x1, hi[r]);
            }
        }
    }
    core::array::from_fn(|r| {
        let mut tail = [0f32; DOT_LANES];
        let n = len - full;
        let bytes = &rows[r][2 * full..2 * len];
        if BF16 {
            super::convert::bf16_to_f32(bytes, &mut tail[..n]);
        } else {
            super::convert::f16_to_f32(bytes, &mut tail[..n]);
        }
        lanes_finish(lo[r], hi[r], &tail[..n], &x[full..len])
    })
}
