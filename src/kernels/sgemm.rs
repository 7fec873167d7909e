//! The training GEMM for f32: `C (+)= A·B` over strided views, with
//! GotoBLAS/BLIS blocking and the 6×16 register tile of [`super::igemm`]:
//! B packed into 16-column panels, A read in place when row-major and
//! packed into `MR`-row panels otherwise, full tiles written straight into C.
//!
//! Why not the `gemm` crate: on this project's shapes it held 40–54 GFLOP/s
//! per core where this kernel held 59–70, measured in one process
//! (docs/kernels.md; `benches/kernels.rs` keeps it as a peer). The packing
//! buffers belong to the calling thread
//! and live as long as it does, so a training step allocates nothing here.
//! The output is an [`OutView`], which may be segmented: a convolution over
//! a whole batch writes each image's NCHW block in place.

use std::cell::RefCell;

use super::gemm::MatRef;
use super::igemm::{MR, NR, OutView, pack_b, simd_available};
use crate::error::{Error, Result};

/// Largest depth of one block: a 256 × 16 panel of B is 16 KiB (L1).
const KC: usize = 256;
/// Largest block of A rows: 96 × 256 f32 = 96 KiB (L2).
const MC: usize = 96;
/// Largest block of B columns: 256 × 1024 f32 = 1 MiB.
const NC: usize = 1024;

thread_local! {
    /// This thread's packing buffers (A block, B block).
    static PACK: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Splits `len` into equal blocks of at most `cap`, rounded up to `unit`.
fn balanced(len: usize, cap: usize, unit: usize) -> usize {
    let blocks = len.max(1).div_ceil(cap);
    len.max(1).div_ceil(blocks).div_ceil(unit) * unit
}

/// `C = A·B`, or `C += A·B` when `accumulate`.
pub fn sgemm(mut c: OutView<'_>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, accumulate: bool) -> Result<()> {
    let (m, n, k) = (c.rows(), c.cols(), a.cols());
    if a.rows() != m || b.cols() != n || b.rows() != k {
        return Err(Error::InvalidShape {
            what: "gemm",
            reason: "operand shapes do not chain (need C[m,n] = A[m,k] · B[k,n])",
        });
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c.store_one(i, j, 0.0);
                }
            }
        }
        return Ok(());
    }
    let kc = balanced(k, KC, 1);
    let mc = balanced(m, MC, MR);
    let nc = balanced(n, NC, NR);
    let simd = simd_available();
    PACK.with_borrow_mut(|(apack, bpack)| {
        if apack.len() < mc * kc {
            apack.resize(mc * kc, 0.0);
        }
        if bpack.len() < kc * nc {
            bpack.resize(kc * nc, 0.0);
        }
        let mut acc = [[0f32; NR]; MR];
        for jc in (0..n).step_by(nc) {
            let ncur = nc.min(n - jc);
            for pc in (0..k).step_by(kc) {
                let kcur = kc.min(k - pc);
                pack_b(&b, pc, kcur, jc, ncur, bpack);
                let assign = pc == 0 && !accumulate;
                for ic in (0..m).step_by(mc) {
                    let mcur = mc.min(m - ic);
                    // Row-major A is read in place; anything else is packed.
                    let in_place = a.cs == 1;
                    if !in_place {
                        pack_a(&a, ic, mcur, pc, kcur, apack);
                    }
                    let (adata, aps): (&[f32], usize) = if in_place { (a.data, 1) } else { (&apack[..], MR) };
                    for (q, jr) in (0..ncur).step_by(NR).enumerate() {
                        let nr = NR.min(ncur - jr);
                        let bp = &bpack[q * kcur * NR..(q + 1) * kcur * NR];
                        for (pi, ir) in (0..mcur).step_by(MR).enumerate() {
                            let mr = MR.min(mcur - ir);
                            // Where row r of the tile starts in `adata`; rows
                            // past the edge repeat the last real one (their
                            // results are discarded).
                            let rows: [usize; MR] = if in_place {
                                core::array::from_fn(|r| (ic + ir + r.min(mr - 1)) * a.rs + pc)
                            } else {
                                core::array::from_fn(|r| pi * kcur * MR + r)
                            };
                            let (i0, j0) = (ic + ir, jc + jr);
                            match c.full_tile(i0, j0) {
                                Some(out) => {
                                    kernel(simd, kcur, adata, rows, aps, bp, Dst::C(c.data_mut(), out, assign))
                                }
                                None => {
                                    kernel(simd, kcur, adata, rows, aps, bp, Dst::Acc(&mut acc));
                                    c.store(i0, mr, j0, nr, &acc, assign);
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// Packs `A[ic..ic+mc, pc..pc+kc]` as `MR`-row panels (`[panel][p][MR]`),
/// zero-padding the last panel's missing rows.
fn pack_a(a: &MatRef<'_, f32>, ic: usize, mc: usize, pc: usize, kc: usize, apack: &mut [f32]) {
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
                apack[o + rest.len()..o + MR].fill(0.0);
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
                    dst[p * MR + r] = 0.0;
                }
            }
        }
    }
}

/// Where a register tile goes.
enum Dst<'a> {
    /// A scratch tile (partial tiles, then [`OutView::store`]).
    Acc(&'a mut [[f32; NR]; MR]),
    /// Straight into C: row `r` at `data[rows[r]..rows[r] + NR]` (all in
    /// bounds, see [`OutView::full_tile`]); written when the flag is set,
    /// added to otherwise.
    C(&'a mut [f32], [usize; MR], bool),
}

/// `tile[r][j] = Σ_p a[rows[r] + p·aps] · b[p·NR + j]`, `p < kc`, in that
/// order (one FMA chain per element), then stored per [`Dst`].
#[inline(always)]
fn kernel(simd: bool, kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd {
            // SAFETY: `simd` is `simd_available()`: the running CPU supports
            // AVX2 and FMA, which is all `kernel_avx2_fma` requires.
            unsafe { kernel_avx2_fma(kc, a, rows, aps, b, dst) };
            return;
        }
    }
    let _ = simd;
    kernel_portable(kc, a, rows, aps, b, dst);
}

/// The portable micro-kernel (Miri, other architectures): the same sums in
/// the same order as the AVX2 one.
#[inline(always)]
fn kernel_portable(kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_>) {
    let mut acc = [[0f32; NR]; MR];
    for (p, bv) in b[..kc * NR].chunks_exact(NR).enumerate() {
        for r in 0..MR {
            let av = a[rows[r] + p * aps];
            for j in 0..NR {
                acc[r][j] = av.mul_add(bv[j], acc[r][j]);
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn kernel_avx2_fma(kc: usize, a: &[f32], rows: [usize; MR], aps: usize, b: &[f32], dst: Dst<'_>) {
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
        kernel_portable(kc, a, rows, aps, b, dst);
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
