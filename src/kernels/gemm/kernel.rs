//! The micro-kernels: one register tile of `C (+)= A·B` over packed
//! panels, and the registry that says which of them this CPU runs.
//!
//! Every kernel computes `tile[r][j] = Σ_p a[rows[r] + p·aps] · b[p·NR + j]`
//! for `p < kc`, each element as one chain in the order of `p` starting
//! from zero, then stores the tile per [`Dst`]. The fused kernels round once
//! per step, so they agree bit for bit with each other (and with a naive
//! FMA loop) whatever their tile shape; [`KernelId::PortableUnfused`] rounds
//! the product and the sum separately, as plain `*` and `+` do where the
//! target has no FMA. A new kernel (NEON, int8) is a new [`KernelId`] and a
//! [`MicroKernel`] impl here, with its tile shape as the trait's
//! parameters; the loop nest does not change.

use super::blocking::{MR, MR_512, NR, NR_512, NR_512_NARROW};
use crate::kernels::Float;
use crate::kernels::cpu;

/// Where an `MR × NR` register tile goes.
pub(crate) enum Dst<'a, T, const MR: usize, const NR: usize> {
    /// A scratch tile (partial tiles, then [`super::OutView::store`]).
    Acc(&'a mut [[T; NR]; MR]),
    /// Straight into C: row `r` at `data[rows[r]..rows[r] + NR]` (all in
    /// bounds, see [`super::OutView::tile`]); written when the flag is
    /// set, added to otherwise.
    C(&'a mut [T], [usize; MR], bool),
    /// Straight into C, a partial tile: only rows `r < mr` and columns
    /// `j < nr` exist, row `r` at `data[rows[r]..rows[r] + nr]` (in bounds);
    /// for kernels with [`MicroKernel::EDGES`].
    Edge { data: &'a mut [T], rows: [usize; MR], mr: usize, nr: usize, assign: bool },
}

/// A register-tile kernel (see the module documentation for what it
/// computes) with an `MR × NR` tile.
pub(crate) trait MicroKernel<T, const MR: usize, const NR: usize> {
    /// Whether partial tiles should come as [`Dst::Edge`] (the kernel
    /// stores them with masks) rather than through a scratch tile.
    const EDGES: bool = false;
    /// One tile: `a`, `rows`, `aps` as [`super::pack::ABlock::tile_rows`]
    /// gives them, `b` one packed panel of depth at least `kc`.
    fn tile(&self, kc: usize, a: &[T], rows: [usize; MR], aps: usize, b: &[T], dst: Dst<'_, T, MR, NR>);
}

/// Stores a finished tile per `dst` (the portable kernels' store, and the
/// SIMD kernels' for the cases they leave to it).
#[inline(always)]
fn store_tile<T: Float, const MR: usize, const NR: usize>(acc: &[[T; NR]; MR], dst: Dst<'_, T, MR, NR>) {
    let put = |data: &mut [T], rows: &[usize; MR], mr: usize, nr: usize, assign: bool| {
        for (r, row) in acc.iter().enumerate().take(mr) {
            for (d, &v) in data[rows[r]..rows[r] + nr].iter_mut().zip(row) {
                *d = if assign { v } else { *d + v };
            }
        }
    };
    match dst {
        Dst::Acc(t) => *t = *acc,
        Dst::C(data, rows, assign) => put(data, &rows, MR, NR, assign),
        Dst::Edge { data, rows, mr, nr, assign } => put(data, &rows, mr.min(MR), nr.min(NR), assign),
    }
}

/// The micro-kernels this crate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelId {
    /// Portable, one fused multiply-add per step (`mul_add`; LLVM
    /// vectorises it where the target has FMA).
    Portable,
    /// Portable, a multiply then an add (targets without FMA).
    PortableUnfused,
    /// x86_64 AVX2 + FMA intrinsics, f32 only, a 6 × 16 tile.
    Avx2Fma,
    /// x86_64 AVX-512 F intrinsics, f32 only, an 8 × 32 tile (8 × 16 for
    /// blocks of B narrower than 32 columns) with masked edge tiles.
    Avx512,
}

impl KernelId {
    /// Every kernel, best first.
    pub const ALL: [KernelId; 4] = [KernelId::Avx512, KernelId::Avx2Fma, KernelId::Portable, KernelId::PortableUnfused];

    /// A short name, for benches and test messages.
    pub fn name(self) -> &'static str {
        match self {
            KernelId::Portable => "portable",
            KernelId::PortableUnfused => "portable-unfused",
            KernelId::Avx2Fma => "avx2-fma",
            KernelId::Avx512 => "avx512",
        }
    }

    /// Its register tile, rows × columns.
    pub const fn tile(self) -> (usize, usize) {
        match self {
            KernelId::Avx512 => (MR_512, NR_512),
            _ => (MR, NR),
        }
    }

    /// Whether it runs on this CPU for f32.
    pub fn available_f32(self) -> bool {
        match self {
            KernelId::Portable | KernelId::PortableUnfused => true,
            KernelId::Avx2Fma => cfg!(target_arch = "x86_64") && cpu::features().avx2_fma(),
            KernelId::Avx512 => cfg!(target_arch = "x86_64") && cpu::features().avx512f,
        }
    }

    /// The portable kernel matching the target's multiply-add (fused where
    /// the build enables FMA).
    pub const fn portable_for_target() -> KernelId {
        if cfg!(target_feature = "fma") { KernelId::Portable } else { KernelId::PortableUnfused }
    }

    /// The fastest f32 kernel this CPU runs: AVX-512, else AVX2, else
    /// `fallback`. Each caller passes the portable kernel it has always used;
    /// where AVX2 and FMA exist, every caller has always run fused, and the
    /// fused kernels give the same bits.
    pub fn best_f32(fallback: KernelId) -> KernelId {
        [KernelId::Avx512, KernelId::Avx2Fma].into_iter().find(|k| k.available_f32()).unwrap_or(fallback)
    }
}

/// [`KernelId::Portable`] (`FUSED`) and [`KernelId::PortableUnfused`].
pub(crate) struct Portable<const FUSED: bool>;

impl<T: Float, const FUSED: bool, const MR: usize, const NR: usize> MicroKernel<T, MR, NR> for Portable<FUSED> {
    #[inline(always)]
    fn tile(&self, kc: usize, a: &[T], rows: [usize; MR], aps: usize, b: &[T], dst: Dst<'_, T, MR, NR>) {
        let mut acc = [[T::ZERO; NR]; MR];
        let step = |acc: &mut [[T; NR]; MR], r: usize, av: T, bv: &[T; NR]| {
            for j in 0..NR {
                acc[r][j] = if FUSED { av.mul_add(bv[j], acc[r][j]) } else { av * bv[j] + acc[r][j] };
            }
        };
        if aps == 1 {
            // Contiguous rows: slices, so the loop needs no bounds checks.
            let ar: [&[T]; MR] = rows.map(|o| &a[o..o + kc]);
            for (p, bv) in b[..kc * NR].chunks_exact(NR).enumerate() {
                let Ok(bv) = <&[T; NR]>::try_from(bv) else { continue };
                for (r, row) in ar.iter().enumerate() {
                    step(&mut acc, r, row[p], bv);
                }
            }
        } else {
            for (p, bv) in b[..kc * NR].chunks_exact(NR).enumerate() {
                let Ok(bv) = <&[T; NR]>::try_from(bv) else { continue };
                for r in 0..MR {
                    step(&mut acc, r, a[rows[r] + p * aps], bv);
                }
            }
        }
        store_tile(&acc, dst);
    }
}

/// [`KernelId::Avx2Fma`]. Built only by [`Avx2Fma::detect`], so holding one
/// proves the CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx2Fma(());

#[cfg(target_arch = "x86_64")]
impl Avx2Fma {
    /// The kernel, when this CPU runs it.
    #[inline]
    pub fn detect() -> Option<Self> {
        cpu::features().avx2_fma().then_some(Self(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl MicroKernel<f32, MR, NR> for Avx2Fma {
    #[inline(always)]
    fn tile(&self, kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_, f32, MR, NR>) {
        // SAFETY: an `Avx2Fma` exists only where `cpu::features()` reported
        // AVX2 and FMA, which is all `tile_avx2_fma` requires.
        unsafe { tile_avx2_fma(kc, a, rows, aps, b, dst) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2_fma(kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_, f32, MR, NR>) {
    use core::arch::x86_64::{__m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps};
    use core::arch::x86_64::{_mm256_setzero_ps, _mm256_storeu_ps};
    // The bounds every access below relies on (always true for our callers;
    // checked so that a bug is a slow path, not an out-of-bounds access).
    // (Saturating arithmetic: an overflow can only make a check fail.)
    let max_row = rows.iter().copied().fold(0, usize::max);
    let a_ok = kc == 0 || max_row.saturating_add((kc - 1).saturating_mul(aps)) < a.len();
    let c_ok = match &dst {
        Dst::Acc(_) => true,
        Dst::C(data, out, _) => out.iter().copied().fold(0, usize::max).saturating_add(NR) <= data.len(),
        // Left to the portable store below (the nest sends no edges here).
        Dst::Edge { .. } => false,
    };
    if !a_ok || !c_ok || b.len() < kc * NR {
        Portable::<true>.tile(kc, a, rows, aps, b, dst);
        return;
    }
    // Ask for C's lines now: a tile's C rows are far apart and usually not
    // in cache, and the FMA loop below hides the misses.
    if let Dst::C(data, out, _) = &dst {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for &o in out {
            // SAFETY: prefetching is a hint and never faults; the address is
            // inside `data` (o + NR ≤ data.len(), checked above).
            unsafe {
                let p = data.as_ptr().add(o).cast::<i8>();
                _mm_prefetch::<_MM_HINT_T0>(p);
                _mm_prefetch::<_MM_HINT_T0>(p.add(4 * NR - 1));
            }
        }
    }
    let bp = b.as_ptr();
    let ap: [*const f32; MR] = rows.map(|o| a[o..].as_ptr());
    let mut c: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        // SAFETY: p < kc, so `bp + p·NR .. + NR` lies inside `b` (b.len() ≥
        // kc·NR) and `ap[r] + p·aps` inside `a` (rows[r] + (kc−1)·aps <
        // a.len()), checked above; unaligned loads are allowed.
        unsafe {
            let b0 = _mm256_loadu_ps(bp.add(p * NR));
            let b1 = _mm256_loadu_ps(bp.add(p * NR + 8));
            for (r, cr) in c.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap[r].add(p * aps));
                cr[0] = _mm256_fmadd_ps(av, b0, cr[0]);
                cr[1] = _mm256_fmadd_ps(av, b1, cr[1]);
            }
        }
    }
    match dst {
        Dst::Edge { .. } => {}
        Dst::Acc(t) => {
            for (r, cr) in c.iter().enumerate() {
                // SAFETY: `t[r]` is 16 f32: two 8-lane unaligned stores fit.
                unsafe {
                    _mm256_storeu_ps(t[r].as_mut_ptr(), cr[0]);
                    _mm256_storeu_ps(t[r].as_mut_ptr().add(8), cr[1]);
                }
            }
        }
        Dst::C(data, out, assign) => {
            let base = data.as_mut_ptr();
            for (r, cr) in c.iter().enumerate() {
                // SAFETY: out[r] + NR ≤ data.len() (checked above), so the 16
                // f32 at `base + out[r]` are inside `data`, which we borrow
                // mutably; unaligned loads/stores are allowed.
                unsafe {
                    let p = base.add(out[r]);
                    if assign {
                        _mm256_storeu_ps(p, cr[0]);
                        _mm256_storeu_ps(p.add(8), cr[1]);
                    } else {
                        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), cr[0]));
                        _mm256_storeu_ps(p.add(8), _mm256_add_ps(_mm256_loadu_ps(p.add(8)), cr[1]));
                    }
                }
            }
        }
    }
}

/// [`KernelId::Avx512`]. Built only by [`Avx512::detect`], so holding one
/// proves the CPU has AVX-512 F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub(crate) struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The kernel, when this CPU runs it.
    #[inline]
    pub fn detect() -> Option<Self> {
        cpu::features().avx512f.then_some(Self(()))
    }
}

/// Both AVX-512 tiles, 8 × 32 and the narrow 8 × 16 (for blocks of B
/// narrower than 32 columns, e.g. a batch-1 layer of 4 × 4 outputs).
#[cfg(target_arch = "x86_64")]
macro_rules! avx512_tile {
    ($nr:expr, $nv:expr) => {
        impl MicroKernel<f32, MR_512, { $nr }> for Avx512 {
            const EDGES: bool = true;

            #[inline(always)]
            fn tile(
                &self,
                kc: usize,
                a: &[f32],
                rows: [usize; MR_512],
                aps: usize,
                b: &[f32],
                dst: Dst<'_, f32, MR_512, { $nr }>,
            ) {
                // SAFETY: an `Avx512` exists only where `cpu::features()`
                // reported AVX-512 F, which is all `tile_avx512` requires.
                unsafe { tile_avx512::<{ $nr }, { $nv }>(kc, a, rows, aps, b, dst) }
            }
        }
    };
}
#[cfg(target_arch = "x86_64")]
avx512_tile!(NR_512, 2);
#[cfg(target_arch = "x86_64")]
avx512_tile!(NR_512_NARROW, 1);

/// The AVX-512 tiles, `8 × N` with `N = 16·V`: per step `V` loads of B,
/// eight broadcasts of A and `8·V` FMAs into `8·V` zmm accumulators (8 × 32:
/// sixteen). Partial tiles are stored with lane masks, straight into C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tile_avx512<const N: usize, const V: usize>(
    kc: usize,
    a: &[f32],
    rows: [usize; MR_512],
    aps: usize,
    b: &[f32],
    dst: Dst<'_, f32, MR_512, N>,
) {
    use core::arch::x86_64::{__m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps};
    use core::arch::x86_64::{_mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_set1_ps};
    use core::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    const M: usize = MR_512;
    const { assert!(N == 16 * V && (V == 1 || V == 2)) };
    // The bounds every access below relies on (always true for our callers;
    // checked so that a bug is a slow path, not an out-of-bounds access).
    let max_row = rows.iter().copied().fold(0, usize::max);
    let a_ok = kc == 0 || max_row.saturating_add((kc - 1).saturating_mul(aps)) < a.len();
    let c_ok = match &dst {
        Dst::Acc(_) => true,
        Dst::C(data, out, _) => out.iter().copied().fold(0, usize::max).saturating_add(N) <= data.len(),
        Dst::Edge { data, rows: out, mr, nr, .. } => {
            (1..=M).contains(mr)
                && *nr <= N
                && out[..*mr].iter().copied().fold(0, usize::max).saturating_add(*nr) <= data.len()
        }
    };
    if !a_ok || !c_ok || b.len() < kc * N {
        Portable::<true>.tile(kc, a, rows, aps, b, dst);
        return;
    }
    // Ask for C's lines now (see `tile_avx2_fma`).
    let (cdata, cout, crow_len) = match &dst {
        Dst::Acc(_) => (None, rows, 0),
        Dst::C(data, out, _) => (Some(data.as_ptr()), *out, N),
        Dst::Edge { data, rows: out, nr, .. } => (Some(data.as_ptr()), *out, *nr),
    };
    if let (Some(base), true) = (cdata, crow_len > 0) {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        for &o in &cout {
            // SAFETY: prefetching is a hint and never faults; the addresses
            // are the first and last element of a row checked above (rows
            // past an edge tile's `mr` repeat a real one).
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(base.add(o).cast::<i8>());
                _mm_prefetch::<_MM_HINT_T0>(base.add(o + crow_len - 1).cast::<i8>());
            }
        }
    }
    let bp = b.as_ptr();
    let ap: [*const f32; M] = rows.map(|o| a[o..].as_ptr());
    let mut c: [[__m512; V]; M] = [[_mm512_setzero_ps(); V]; M];
    for p in 0..kc {
        // SAFETY: p < kc, so `bp + p·N .. + N` lies inside `b` (b.len() ≥
        // kc·N) and `ap[r] + p·aps` inside `a` (rows[r] + (kc−1)·aps <
        // a.len()), checked above; unaligned loads are allowed.
        unsafe {
            let bv: [__m512; V] = core::array::from_fn(|v| _mm512_loadu_ps(bp.add(p * N + 16 * v)));
            for (r, cr) in c.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap[r].add(p * aps));
                for (acc, &b) in cr.iter_mut().zip(&bv) {
                    *acc = _mm512_fmadd_ps(av, b, *acc);
                }
            }
        }
    }
    match dst {
        Dst::Acc(t) => {
            for (r, cr) in c.iter().enumerate() {
                for (v, &x) in cr.iter().enumerate() {
                    // SAFETY: `t[r]` is N = 16·V f32: V 16-lane unaligned
                    // stores at 16·v (v < V) fit.
                    unsafe { _mm512_storeu_ps(t[r].as_mut_ptr().add(16 * v), x) };
                }
            }
        }
        Dst::C(data, out, assign) => {
            let base = data.as_mut_ptr();
            for (r, cr) in c.iter().enumerate() {
                for (v, &x) in cr.iter().enumerate() {
                    // SAFETY: out[r] + N ≤ data.len() (checked above), so the
                    // 16 f32 at `base + out[r] + 16·v` (v < V, N = 16·V) are
                    // inside `data`, which we borrow mutably; unaligned
                    // loads/stores are allowed.
                    unsafe {
                        let p = base.add(out[r] + 16 * v);
                        let sum = if assign { x } else { _mm512_add_ps(_mm512_loadu_ps(p), x) };
                        _mm512_storeu_ps(p, sum);
                    }
                }
            }
        }
        Dst::Edge { data, rows: out, mr, nr, assign } => {
            let lanes = |n: usize| -> __mmask16 { if n >= 16 { 0xFFFF } else { (1u16 << n) - 1 } };
            let masks: [__mmask16; V] = core::array::from_fn(|v| lanes(nr.saturating_sub(16 * v)));
            let base = data.as_mut_ptr();
            for (r, cr) in c.iter().enumerate().take(mr) {
                for (h, (&v, &k)) in cr.iter().zip(&masks).enumerate() {
                    if k == 0 {
                        continue;
                    }
                    // SAFETY: the lanes enabled by `k` (at least one) are
                    // columns 16·h .. < nr of row r < mr, and out[r] + nr ≤
                    // data.len() (checked above): `p` and every element read
                    // or written are inside `data`, which we borrow mutably.
                    // Masked-off lanes are neither read nor written (and
                    // cannot fault).
                    unsafe {
                        let p = base.add(out[r] + 16 * h);
                        let sum = if assign { v } else { _mm512_add_ps(_mm512_maskz_loadu_ps(k, p), v) };
                        _mm512_mask_storeu_ps(p, k, sum);
                    }
                }
            }
        }
    }
}
