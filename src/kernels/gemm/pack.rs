//! Packing: where the loop nest's A and B panels come from.
//!
//! B is always packed, into `NR`-column panels (`[panel][p][NR]`), `NR`
//! being the micro-kernel's tile columns. A comes from an [`ASource`]: a
//! strided matrix read in place when row-major and packed into `MR`-row
//! panels otherwise, or a layer's weights read in place
//! when they are aligned f32 and converted block by block from their bytes
//! otherwise. Packing moves values and never rounds, so it cannot change a
//! bit of the result.

use super::view::MatRef;
use super::weights::WeightRows;
use crate::kernels::Float;

/// One block of A as the micro-kernel reads it: row `i` of the block
/// starts at [`ABlock::row`] and its `p`-th element is `aps` further on.
pub(crate) struct ABlock<'a, T> {
    pub data: &'a [T],
    kind: Layout,
}

enum Layout {
    /// Row-major rows: row `i` at `first + i·rs`, consecutive elements.
    Rows { first: usize, rs: usize },
    /// `MR`-row panels of depth `kc`: `[panel][p][MR]`, `MR` the tile
    /// rows the block was packed for.
    Panels { kc: usize },
}

impl<T> ABlock<'_, T> {
    /// Where the tile at block row `ir` (a multiple of `MR`) with `mr` real
    /// rows reads row `r`, and the step between a row's elements. Rows past
    /// the edge repeat the last real one, or read a panel's zero padding;
    /// their results are discarded.
    #[inline(always)]
    pub fn tile_rows<const MR: usize>(&self, ir: usize, mr: usize) -> ([usize; MR], usize) {
        match self.kind {
            Layout::Rows { first, rs } => (core::array::from_fn(|r| first + (ir + r.min(mr - 1)) * rs), 1),
            Layout::Panels { kc } => (core::array::from_fn(|r| (ir / MR) * kc * MR + r), MR),
        }
    }
}

/// Where A's blocks come from.
pub(crate) trait ASource<T> {
    /// Whether a block may be packed into `MR`-row panels (then the
    /// block's rows must be a multiple of `MR`).
    const PACKS: bool;
    /// Rows of A.
    fn rows(&self) -> usize;
    /// Block `A[ic..ic+mc, pc..pc+kc]`, read in place or written into
    /// `apack` (as `MR`-row panels, when packed).
    fn block<'s, const MR: usize>(
        &'s self,
        ic: usize,
        mc: usize,
        pc: usize,
        kc: usize,
        apack: &'s mut [T],
    ) -> ABlock<'s, T>;
}

impl<T: Float> ASource<T> for MatRef<'_, T> {
    const PACKS: bool = true;

    #[inline(always)]
    fn rows(&self) -> usize {
        MatRef::rows(self)
    }

    #[inline(always)]
    fn block<'s, const MR: usize>(
        &'s self,
        ic: usize,
        mc: usize,
        pc: usize,
        kc: usize,
        apack: &'s mut [T],
    ) -> ABlock<'s, T> {
        if self.cs == 1 {
            ABlock { data: self.data, kind: Layout::Rows { first: ic * self.rs + pc, rs: self.rs } }
        } else {
            pack_a::<T, MR>(self, ic, mc, pc, kc, apack);
            ABlock { data: apack, kind: Layout::Panels { kc } }
        }
    }
}

/// Where B's blocks come from: a strided matrix ([`MatRef`], packed by
/// [`pack_b`]) or a convolution's input read as its im2col matrix
/// ([`super::im2col::Im2colB`]).
pub(crate) trait BSource<T> {
    /// Rows of B (the product's depth).
    fn rows(&self) -> usize;
    /// Columns of B.
    fn cols(&self) -> usize;
    /// Packs `B[pc..pc+kc, jc..jc+nc]` as `NR`-column panels
    /// (`[panel][p][NR]`), zero-padding the last panel.
    fn pack<const NR: usize>(&self, pc: usize, kc: usize, jc: usize, nc: usize, bpack: &mut [T]);
}

impl<T: Float> BSource<T> for MatRef<'_, T> {
    #[inline(always)]
    fn rows(&self) -> usize {
        MatRef::rows(self)
    }

    #[inline(always)]
    fn cols(&self) -> usize {
        MatRef::cols(self)
    }

    #[inline(always)]
    fn pack<const NR: usize>(&self, pc: usize, kc: usize, jc: usize, nc: usize, bpack: &mut [T]) {
        pack_b::<T, NR>(self, pc, kc, jc, nc, bpack);
    }
}

/// A layer's weights as the A of `C = W·B`: `[m, k]` row-major.
pub(crate) struct WeightMatrix<'a> {
    pub w: WeightRows<'a>,
    pub m: usize,
    pub k: usize,
}

impl ASource<f32> for WeightMatrix<'_> {
    // Converted weights are written as rows, never as panels.
    const PACKS: bool = false;

    #[inline(always)]
    fn rows(&self) -> usize {
        self.m
    }

    #[inline(always)]
    fn block<'s, const MR: usize>(
        &'s self,
        ic: usize,
        mc: usize,
        pc: usize,
        kc: usize,
        apack: &'s mut [f32],
    ) -> ABlock<'s, f32> {
        match self.w.in_place() {
            Some(s) => ABlock { data: s, kind: Layout::Rows { first: ic * self.k + pc, rs: self.k } },
            None => {
                for r in 0..mc {
                    self.w.read((ic + r) * self.k + pc, &mut apack[r * kc..(r + 1) * kc]);
                }
                ABlock { data: apack, kind: Layout::Rows { first: 0, rs: kc } }
            }
        }
    }
}

/// Packs `A[ic..ic+mc, pc..pc+kc]` as `MR`-row panels (`[panel][p][MR]`),
/// zero-padding the last panel's missing rows.
fn pack_a<T: Float, const MR: usize>(a: &MatRef<'_, T>, ic: usize, mc: usize, pc: usize, kc: usize, apack: &mut [T]) {
    let (data, rs, cs) = (a.data, a.rs, a.cs);
    if rs == 1 {
        // A is a transposed view: for each p the block's rows are one
        // contiguous run. Walk p by p (sequential reads), scattering each
        // run's MR-row pieces to their panels; a last partial panel is
        // zero-padded.
        for p in 0..kc {
            let s = (pc + p) * cs + ic;
            let run = &data[s..s + mc];
            let mut pieces = run.chunks_exact(MR);
            for (pi, piece) in pieces.by_ref().enumerate() {
                let o = pi * kc * MR + p * MR;
                apack[o..o + MR].copy_from_slice(piece);
            }
            let rest = pieces.remainder();
            if !rest.is_empty() {
                let o = (mc / MR) * kc * MR + p * MR;
                apack[o..o + rest.len()].copy_from_slice(rest);
                apack[o + rest.len()..o + MR].fill(T::ZERO);
            }
        }
        return;
    }
    for (pi, i0) in (0..mc).step_by(MR).enumerate() {
        let mr = MR.min(mc - i0);
        let dst = &mut apack[pi * kc * MR..(pi + 1) * kc * MR];
        for r in 0..MR {
            if r < mr {
                let base = (ic + i0 + r) * rs + pc * cs;
                for p in 0..kc {
                    dst[p * MR + r] = data[base + p * cs];
                }
            } else {
                for p in 0..kc {
                    dst[p * MR + r] = T::ZERO;
                }
            }
        }
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` as `NR`-column panels (`[panel][p][NR]`),
/// zero-padding the last panel.
fn pack_b<T: Float, const NR: usize>(b: &MatRef<'_, T>, pc: usize, kc: usize, jc: usize, nc: usize, bpack: &mut [T]) {
    let (data, rs, cs) = (b.data, b.rs, b.cs);
    if cs == 1 && nc >= NR {
        // Row-major B: walk each row of the block once, front to back (one
        // sequential stream for the prefetcher), scattering its NR-column
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
        if rs == 1 && nr == NR && pack_t_panel::<T, NR>(data, (jc + j0) * cs + pc, cs, kc, dst) {
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
                        dst[p * NR + jj] = T::ZERO;
                    }
                }
            }
        }
    }
}

/// Packs one `NR`-column panel of a transposed f32 B (column `jj` is the
/// `kc` contiguous values at `first + jj·cs`) with AVX2 8×8 transposes.
/// Returns false, having written nothing, for other types, an `NR` that is
/// not a multiple of 8, or where AVX2 is unavailable.
fn pack_t_panel<T: Float, const NR: usize>(data: &[T], first: usize, cs: usize, kc: usize, dst: &mut [T]) -> bool {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if let (true, Some(data), Some(dst)) =
            (crate::kernels::cpu::features().avx2_fma(), T::as_f32(data), T::as_f32_mut(dst))
        {
            // SAFETY: AVX2 is available (checked just above), which is all
            // `pack_t_panel_avx2` requires.
            return NR.is_multiple_of(8) && unsafe { pack_t_panel_avx2::<NR>(data, first, cs, kc, dst) };
        }
    }
    let _ = (data, first, cs, kc, dst);
    false
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn pack_t_panel_avx2<const NR: usize>(data: &[f32], first: usize, cs: usize, kc: usize, dst: &mut [f32]) -> bool {
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
