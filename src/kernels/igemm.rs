//! The inference GEMM: `C = W · B` with `W` the weights of a layer (row-major
//! `[m, k]`, read in place when they are aligned f32, otherwise converted
//! from F32/F16/BF16 bytes block by block) and `B` an activation view.
//!
//! GotoBLAS/BLIS blocking with caller scratch instead of a heap: a `kc × nc`
//! block of B is packed once into `NR`-column panels and reused by every
//! row of W; each `mc × kc` block of W is converted (if needed) once and
//! reused by every panel of B. The register tile is `MR × NR` = 6 × 16: 12
//! AVX2 accumulators, fed by 2 loads of B and 6 broadcasts of W per step.
//! On x86_64 with `std` an AVX2+FMA micro-kernel is picked at run time;
//! everywhere else (and under Miri) a portable one that LLVM vectorises.
//! Both compute every element as one FMA chain over `k` in order (the same
//! bits), blocked by `kc` only, so results never depend on `n`: an image
//! gives the same output alone or in a batch.
//!
//! The output may be *segmented*: `C(i, j)` lives at
//! `(j / seg)·seg_stride + i·rs + j % seg`, so a convolution over a batch's
//! im2col columns (`n = batch·h·w`) writes each image's NCHW block directly.

use super::Float;
use super::convert;
use super::gemm::MatRef;
use crate::error::{Error, Result};

/// Register tile rows (rows of W).
pub const MR: usize = 6;
/// Register tile columns (two AVX2 vectors of f32).
pub const NR: usize = 16;
/// Largest depth of one block.
pub const KC: usize = 256;
/// Largest block of W rows (96 × 256 f32 = 96 KiB, within a 512 KiB L2).
pub const MC_MAX: usize = 96;

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

/// Block sizes of one product; the packing buffers must hold
/// [`Blocking::apack_len`] and [`Blocking::bpack_len`] f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Depth of a block (≤ [`KC`]).
    pub kc: usize,
    /// Rows of W per block (a multiple of [`MR`]).
    pub mc: usize,
    /// Columns of B per block (a multiple of [`NR`]).
    pub nc: usize,
}

impl Blocking {
    /// Blocks for an `m × k × n` product with at most `budget` f32 per
    /// packing buffer (at least one register tile's worth is always used).
    pub fn new(m: usize, k: usize, n: usize, budget: usize) -> Self {
        let kc = k.clamp(1, KC);
        let per = budget / kc;
        let mc_cap = (per / MR * MR).clamp(MR, MC_MAX);
        // Equal blocks: 128 rows as 2 × 64, not 96 + 32.
        let blocks = m.max(1).div_ceil(mc_cap);
        let mc = m.max(1).div_ceil(blocks).div_ceil(MR) * MR;
        let n_up = n.max(1).div_ceil(NR).saturating_mul(NR);
        let nc = (per / NR * NR).clamp(NR, n_up);
        Self { kc, mc, nc }
    }

    /// f32 elements of the W block buffer (unused for in-place f32 weights).
    pub fn apack_len(&self) -> usize {
        self.mc * self.kc
    }

    /// f32 elements of the packed B buffer.
    pub fn bpack_len(&self) -> usize {
        self.kc * self.nc
    }
}

/// The output of [`gemm_weights`]: `C(i, j)` at
/// `(j / seg)·seg_stride + i·rs + j % seg`. Every element is checked to lie
/// inside the slice; layouts whose elements overlap are the caller's error
/// (a wrong result, never an out-of-bounds write).
#[derive(Debug)]
pub struct OutView<'a> {
    data: &'a mut [f32],
    m: usize,
    n: usize,
    rs: usize,
    seg: usize,
    seg_stride: usize,
}

impl<'a> OutView<'a> {
    /// A segmented view (see the type's documentation); `seg ≥ 1`.
    pub fn new(data: &'a mut [f32], m: usize, n: usize, rs: usize, seg: usize, seg_stride: usize) -> Result<Self> {
        let what = "gemm output view";
        if seg == 0 {
            return Err(Error::InvalidShape { what, reason: "segment length must be at least 1" });
        }
        if m > 0 && n > 0 {
            let last = ((n - 1) / seg)
                .checked_mul(seg_stride)
                .and_then(|v| v.checked_add((m - 1).checked_mul(rs)?))
                .and_then(|v| v.checked_add(seg.min(n) - 1))
                .ok_or(Error::Overflow { what })?;
            if last >= data.len() {
                return Err(Error::InvalidShape { what, reason: "view reaches past the end of the slice" });
            }
        }
        Ok(Self { data, m, n, rs, seg, seg_stride })
    }

    /// A dense row-major `[m, n]` view.
    pub fn row_major(data: &'a mut [f32], m: usize, n: usize) -> Result<Self> {
        let len = m.checked_mul(n).ok_or(Error::Overflow { what: "gemm output view" })?;
        crate::error::check_len("gemm output view", len, data.len())?;
        Self::new(data, m, n, n, n.max(1), 0)
    }

    /// Rows of C.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of C.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// Where the rows of the whole register tile at `(i0, j0)` start, when
    /// all `MR` rows and `NR` columns exist, each row's `NR` elements are
    /// contiguous and in bounds: the kernel may then write it directly.
    #[cfg(feature = "train")]
    #[inline]
    pub(crate) fn full_tile(&self, i0: usize, j0: usize) -> Option<[usize; MR]> {
        if i0 + MR > self.m || j0 + NR > self.n {
            return None;
        }
        let (seg_idx, within) = (j0 / self.seg, j0 % self.seg);
        if within + NR > self.seg {
            return None;
        }
        let base = seg_idx.checked_mul(self.seg_stride)?.checked_add(within)?;
        let rows: [usize; MR] = core::array::from_fn(|r| base + (i0 + r) * self.rs);
        rows.iter().all(|&o| o + NR <= self.data.len()).then_some(rows)
    }

    /// The underlying slice (for the kernels' direct tile writes).
    #[cfg(feature = "train")]
    #[inline]
    pub(crate) fn data_mut(&mut self) -> &mut [f32] {
        self.data
    }

    /// Writes (or adds) tile rows `i0..i0+mr`, columns `j0..j0+nr`.
    #[inline]
    pub(crate) fn store(&mut self, i0: usize, mr: usize, j0: usize, nr: usize, acc: &[[f32; NR]; MR], assign: bool) {
        let (seg_idx, within) = (j0 / self.seg, j0 % self.seg);
        if within + nr <= self.seg {
            let base = seg_idx * self.seg_stride + within;
            for (r, a) in acc.iter().enumerate().take(mr) {
                let start = base + (i0 + r) * self.rs;
                let row = &mut self.data[start..start + nr];
                if assign {
                    row.copy_from_slice(&a[..nr]);
                } else {
                    for (d, &v) in row.iter_mut().zip(a) {
                        *d += v;
                    }
                }
            }
        } else {
            for jj in 0..nr {
                let j = j0 + jj;
                let base = (j / self.seg) * self.seg_stride + j % self.seg;
                for (r, a) in acc.iter().enumerate().take(mr) {
                    let d = &mut self.data[base + (i0 + r) * self.rs];
                    *d = if assign { a[jj] } else { *d + a[jj] };
                }
            }
        }
    }
}

/// `C = W · B` for `W` `[m, k]` row-major (`m = C`'s rows) and `B` `[k, n]`,
/// blocked by `blk` with caller-provided packing buffers. Allocates nothing.
pub fn gemm_weights(
    c: OutView<'_>,
    w: WeightRows<'_>,
    b: MatRef<'_, f32>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    gemm_impl(simd_available(), c, w, b, blk, apack, bpack)
}

/// [`gemm_weights`] with the portable micro-kernel whatever the CPU (what
/// Miri, `no_std` builds and non-x86 targets run), for tests.
#[doc(hidden)]
pub fn gemm_weights_portable(
    c: OutView<'_>,
    w: WeightRows<'_>,
    b: MatRef<'_, f32>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    gemm_impl(false, c, w, b, blk, apack, bpack)
}

fn gemm_impl(
    simd: bool,
    mut c: OutView<'_>,
    w: WeightRows<'_>,
    b: MatRef<'_, f32>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    let what = "inference gemm";
    let (m, n, k) = (c.m, c.n, b.rows());
    if b.cols() != n {
        return Err(Error::InvalidShape { what, reason: "B's columns differ from C's" });
    }
    let mk = m.checked_mul(k).ok_or(Error::Overflow { what })?;
    if w.len() != mk {
        return Err(Error::InvalidShape { what, reason: "weights are not [m, k]" });
    }
    if blk.kc == 0
        || blk.kc > KC
        || blk.mc == 0
        || !blk.mc.is_multiple_of(MR)
        || blk.nc == 0
        || !blk.nc.is_multiple_of(NR)
    {
        return Err(Error::InvalidShape { what, reason: "invalid blocking" });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                c.store_one(i, j, 0.0);
            }
        }
        return Ok(());
    }
    let in_place = w.in_place();
    let a_need = if in_place.is_some() { 0 } else { blk.mc * blk.kc.min(k) };
    if apack.len() < a_need || bpack.len() < blk.kc.min(k) * blk.nc {
        return Err(Error::InvalidShape { what, reason: "packing buffers shorter than the blocking needs" });
    }
    let mut acc = [[0f32; NR]; MR];
    for jc in (0..n).step_by(blk.nc) {
        let ncur = blk.nc.min(n - jc);
        for pc in (0..k).step_by(blk.kc) {
            let kcur = blk.kc.min(k - pc);
            pack_b(&b, pc, kcur, jc, ncur, bpack);
            for ic in (0..m).step_by(blk.mc) {
                let mcur = blk.mc.min(m - ic);
                // The W block's rows: (slice, row stride, first element).
                let (a, a_rs, a_off): (&[f32], usize, usize) = match in_place {
                    Some(s) => (s, k, ic * k + pc),
                    None => {
                        for r in 0..mcur {
                            w.read((ic + r) * k + pc, &mut apack[r * kcur..(r + 1) * kcur]);
                        }
                        (&*apack, kcur, 0)
                    }
                };
                for (q, jr) in (0..ncur).step_by(NR).enumerate() {
                    let nr = NR.min(ncur - jr);
                    let bp = &bpack[q * kcur * NR..(q + 1) * kcur * NR];
                    for ir in (0..mcur).step_by(MR) {
                        let mr = MR.min(mcur - ir);
                        // Rows past the edge repeat the last real row (results discarded).
                        let rows: [usize; MR] = core::array::from_fn(|r| a_off + (ir + r.min(mr - 1)) * a_rs);
                        kernel(simd, kcur, a, rows, bp, &mut acc);
                        c.store(ic + ir, mr, jc + jr, nr, &acc, pc == 0);
                    }
                }
            }
        }
    }
    Ok(())
}

impl OutView<'_> {
    pub(crate) fn store_one(&mut self, i: usize, j: usize, v: f32) {
        self.data[(j / self.seg) * self.seg_stride + i * self.rs + j % self.seg] = v;
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` as `NR`-column panels (`[panel][p][NR]`),
/// zero-padding the last panel.
pub(crate) fn pack_b(b: &MatRef<'_, f32>, pc: usize, kc: usize, jc: usize, nc: usize, bpack: &mut [f32]) {
    let (data, rs, cs) = (b.data, b.rs, b.cs);
    if cs == 1 && nc >= NR {
        // Row-major B: walk each row of the block once, front to back (one
        // sequential stream for the prefetcher), scattering its 16-column
        // pieces to their panels.
        let whole = nc / NR;
        for p in 0..kc {
            let s = (pc + p) * rs + jc;
            let row = &data[s..s + whole * NR];
            for (q, piece) in row.chunks_exact(NR).enumerate() {
                let d = q * kc * NR + p * NR;
                bpack[d..d + NR].copy_from_slice(piece);
            }
        }
        if whole * NR == nc {
            return;
        }
    }
    for (q, j0) in (0..nc).step_by(NR).enumerate() {
        if cs == 1 && nc >= NR && j0 + NR <= nc {
            continue;
        }
        let nr = NR.min(nc - j0);
        let dst = &mut bpack[q * kc * NR..(q + 1) * kc * NR];
        if rs == 1 && nr == NR && pack_t_panel(data, (jc + j0) * cs + pc, cs, kc, dst) {
            // Transposed view, whole panel: done by 8×8 register transposes.
        } else {
            // Column by column: contiguous reads when B is a transposed view.
            for jj in 0..NR {
                if jj < nr {
                    let base = (jc + j0 + jj) * cs;
                    for p in 0..kc {
                        dst[p * NR + jj] = data[base + (pc + p) * rs];
                    }
                } else {
                    for p in 0..kc {
                        dst[p * NR + jj] = 0.0;
                    }
                }
            }
        }
    }
}

/// Packs one `NR`-column panel of a transposed B (column `jj` is the `kc`
/// contiguous values at `first + jj·cs`) with AVX2 8×8 transposes. Returns
/// false, having written nothing, where AVX2 is unavailable.
fn pack_t_panel(data: &[f32], first: usize, cs: usize, kc: usize, dst: &mut [f32]) -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if simd_available() {
            // SAFETY: AVX2 is available (checked just above), which is all
            // `pack_t_panel_avx2` requires.
            return unsafe { pack_t_panel_avx2(data, first, cs, kc, dst) };
        }
    }
    let _ = (data, first, cs, kc, dst);
    false
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn pack_t_panel_avx2(data: &[f32], first: usize, cs: usize, kc: usize, dst: &mut [f32]) -> bool {
    use core::arch::x86_64::{
        _mm256_loadu_ps, _mm256_permute2f128_ps, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps,
        _mm256_unpacklo_ps,
    };
    // Every read below is inside column NR − 1's last element, every write
    // inside dst[..kc·NR]; checked once so that the loops need no checks.
    let last = (NR - 1).checked_mul(cs).and_then(|v| v.checked_add(first)).and_then(|v| v.checked_add(kc));
    if last.is_none_or(|e| e > data.len()) || dst.len() < kc * NR {
        return false;
    }
    let (src, out) = (data.as_ptr(), dst.as_mut_ptr());
    let full = kc / 8 * 8;
    for half in 0..NR / 8 {
        for p0 in (0..full).step_by(8) {
            // SAFETY: column c = half·8 + j (< NR) reads elements
            // first + c·cs + p0 .. + 8 ≤ first + (NR−1)·cs + kc ≤ data.len()
            // (p0 + 8 ≤ kc); rows p0..p0+8 of dst write (p0+i)·NR + half·8
            // .. + 8 ≤ kc·NR ≤ dst.len(). Unaligned loads/stores are allowed.
            unsafe {
                let col = |j: usize| _mm256_loadu_ps(src.add(first + (half * 8 + j) * cs + p0));
                let (r0, r1, r2, r3) = (col(0), col(1), col(2), col(3));
                let (r4, r5, r6, r7) = (col(4), col(5), col(6), col(7));
                let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
                let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
                let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
                let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                let rows = [
                    _mm256_permute2f128_ps::<0x20>(s0, s4),
                    _mm256_permute2f128_ps::<0x20>(s1, s5),
                    _mm256_permute2f128_ps::<0x20>(s2, s6),
                    _mm256_permute2f128_ps::<0x20>(s3, s7),
                    _mm256_permute2f128_ps::<0x31>(s0, s4),
                    _mm256_permute2f128_ps::<0x31>(s1, s5),
                    _mm256_permute2f128_ps::<0x31>(s2, s6),
                    _mm256_permute2f128_ps::<0x31>(s3, s7),
                ];
                for (i, v) in rows.into_iter().enumerate() {
                    _mm256_storeu_ps(out.add((p0 + i) * NR + half * 8), v);
                }
            }
        }
    }
    for p in full..kc {
        for jj in 0..NR {
            dst[p * NR + jj] = data[first + jj * cs + p];
        }
    }
    true
}

/// Whether the AVX2+FMA micro-kernel can run here.
pub(crate) fn simd_available() -> bool {
    // (Under Miri this reports only the features the build enables, so a
    // plain Miri run takes the portable kernels and a `+avx2,+fma` one the
    // AVX2 kernels.)
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(all(feature = "std", target_arch = "x86_64")))]
    {
        false
    }
}

/// `acc[r][j] = Σ_p a[rows[r] + p] · b[p·NR + j]`, `p < kc`.
#[inline(always)]
fn kernel(simd: bool, kc: usize, a: &[f32], rows: [usize; MR], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if simd {
            // SAFETY: `simd` is `simd_available()`: the running CPU supports
            // AVX2 and FMA, which is all `kernel_avx2_fma` requires.
            unsafe { kernel_avx2_fma(kc, a, rows, b, acc) };
            return;
        }
    }
    let _ = simd;
    #[cfg(target_feature = "fma")]
    kernel_portable::<true>(kc, a, rows, b, acc);
    #[cfg(not(target_feature = "fma"))]
    kernel_portable::<false>(kc, a, rows, b, acc);
}

/// The portable micro-kernel (Miri, no_std, other architectures).
#[inline(always)]
fn kernel_portable<const FMA: bool>(kc: usize, a: &[f32], rows: [usize; MR], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    *acc = [[0.0; NR]; MR];
    let ar: [&[f32]; MR] = rows.map(|o| &a[o..o + kc]);
    for (p, bv) in b[..kc * NR].chunks_exact(NR).enumerate() {
        let Ok(bv) = <&[f32; NR]>::try_from(bv) else { continue };
        for r in 0..MR {
            let av = ar[r][p];
            for j in 0..NR {
                acc[r][j] = if FMA { Float::mul_add(av, bv[j], acc[r][j]) } else { av * bv[j] + acc[r][j] };
            }
        }
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn kernel_avx2_fma(kc: usize, a: &[f32], rows: [usize; MR], b: &[f32], acc: &mut [[f32; NR]; MR]) {
    use core::arch::x86_64::_mm256_storeu_ps;
    use core::arch::x86_64::{__m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    // The bounds every load below relies on (always true for our callers;
    // checked so that a bug is a slow path, not an out-of-bounds read).
    let in_bounds = b.len() >= kc * NR && rows.iter().all(|&o| o.checked_add(kc).is_some_and(|e| e <= a.len()));
    if !in_bounds {
        kernel_portable::<true>(kc, a, rows, b, acc);
        return;
    }
    let ap: [*const f32; MR] = rows.map(|o| a[o..].as_ptr());
    let bp = b.as_ptr();
    let mut c: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so `bp + p·NR .. + NR` lies inside `b` (b.len() ≥
        // kc·NR) and `ap[r] + p` inside `a` (rows[r] + kc ≤ a.len()), checked
        // above; unaligned loads are allowed; AVX2/FMA are enabled here.
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*ap[r].add(p));
                c[r][0] = _mm256_fmadd_ps(av, b0, c[r][0]);
                c[r][1] = _mm256_fmadd_ps(av, b1, c[r][1]);
            }
        }
    }
    for r in 0..MR {
        // SAFETY: `acc[r]` is 16 f32: two 8-lane unaligned stores fit exactly.
        unsafe {
            _mm256_storeu_ps(acc[r].as_mut_ptr(), c[r][0]);
            _mm256_storeu_ps(acc[r].as_mut_ptr().add(8), c[r][1]);
        }
    }
}
