//! The micro-kernels: one `MR × NR` register tile of `C (+)= A·B` over
//! packed panels, and the registry that says which of them this CPU runs.
//!
//! Every kernel computes `tile[r][j] = Σ_p a[rows[r] + p·aps] · b[p·NR + j]`
//! for `p < kc`, each element as one chain in the order of `p` starting
//! from zero, then stores the tile per [`Dst`]. The fused kernels round once
//! per step, so they agree bit for bit with each other (and with a naive
//! FMA loop); [`KernelId::PortableUnfused`] rounds the product and the sum
//! separately, as plain `*` and `+` do where the target has no FMA.
//! A new kernel (AVX-512, NEON, int8) is a new [`KernelId`] and a
//! [`MicroKernel`] impl here; the loop nest does not change.

use super::blocking::{MR, NR};
use crate::kernels::Float;
use crate::kernels::cpu;

/// Where a register tile goes.
pub(crate) enum Dst<'a, T> {
    /// A scratch tile (partial tiles, then [`super::OutView::store`]).
    Acc(&'a mut [[T; NR]; MR]),
    /// Straight into C: row `r` at `data[rows[r]..rows[r] + NR]` (all in
    /// bounds, see [`super::OutView::full_tile`]); written when the flag is
    /// set, added to otherwise.
    C(&'a mut [T], [usize; MR], bool),
}

/// A register-tile kernel (see the module documentation for what it computes).
pub(crate) trait MicroKernel<T> {
    /// One tile: `a`, `rows`, `aps` as [`super::pack::ABlock::tile_rows`]
    /// gives them, `b` one packed panel of depth at least `kc`.
    fn tile(&self, kc: usize, a: &[T], rows: [usize; MR], aps: usize, b: &[T], dst: Dst<'_, T>);
}

/// The micro-kernels this crate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelId {
    /// Portable, one fused multiply-add per step (`mul_add`; LLVM
    /// vectorises it where the target has FMA).
    Portable,
    /// Portable, a multiply then an add (targets without FMA).
    PortableUnfused,
    /// x86_64 AVX2 + FMA intrinsics, f32 only.
    Avx2Fma,
}

impl KernelId {
    /// Every kernel, best first.
    pub const ALL: [KernelId; 3] = [KernelId::Avx2Fma, KernelId::Portable, KernelId::PortableUnfused];

    /// A short name, for benches and test messages.
    pub fn name(self) -> &'static str {
        match self {
            KernelId::Portable => "portable",
            KernelId::PortableUnfused => "portable-unfused",
            KernelId::Avx2Fma => "avx2-fma",
        }
    }

    /// Whether it runs on this CPU for f32.
    pub fn available_f32(self) -> bool {
        match self {
            KernelId::Portable | KernelId::PortableUnfused => true,
            KernelId::Avx2Fma => cfg!(target_arch = "x86_64") && cpu::features().avx2_fma(),
        }
    }

    /// The portable kernel matching the target's multiply-add (fused where
    /// the build enables FMA).
    pub const fn portable_for_target() -> KernelId {
        if cfg!(target_feature = "fma") { KernelId::Portable } else { KernelId::PortableUnfused }
    }

    /// The fastest f32 kernel: the AVX2 one where this CPU runs it, else
    /// `fallback`. Each caller passes the portable kernel it has always used;
    /// where AVX2 and FMA exist, every caller has always run fused.
    pub fn best_f32(fallback: KernelId) -> KernelId {
        if KernelId::Avx2Fma.available_f32() { KernelId::Avx2Fma } else { fallback }
    }
}

/// [`KernelId::Portable`] (`FUSED`) and [`KernelId::PortableUnfused`].
pub(crate) struct Portable<const FUSED: bool>;

impl<T: Float, const FUSED: bool> MicroKernel<T> for Portable<FUSED> {
    #[inline(always)]
    fn tile(&self, kc: usize, a: &[T], rows: [usize; MR], aps: usize, b: &[T], dst: Dst<'_, T>) {
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
        match dst {
            Dst::Acc(t) => *t = acc,
            Dst::C(data, out, assign) => {
                for (r, row) in acc.iter().enumerate() {
                    for (d, &v) in data[out[r]..out[r] + NR].iter_mut().zip(row) {
                        *d = if assign { v } else { *d + v };
                    }
                }
            }
        }
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
impl MicroKernel<f32> for Avx2Fma {
    #[inline(always)]
    fn tile(&self, kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_, f32>) {
        // SAFETY: an `Avx2Fma` exists only where `cpu::features()` reported
        // AVX2 and FMA, which is all `tile_avx2_fma` requires.
        unsafe { tile_avx2_fma(kc, a, rows, aps, b, dst) }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn tile_avx2_fma(kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_, f32>) {
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
