//! The one GEMM loop nest: `C (+)= A·B`, GotoBLAS/BLIS order.
//!
//! ```text
//! for jc in n step nc            columns of C and B
//!   for pc in k step kc          depth: pack B[pc.., jc..] into NR panels
//!     for ic in m step mc        rows: A's block, in place or packed
//!       for jr, ir               one MR × NR tile by the micro-kernel
//! ```
//!
//! Generic over the element type, where A comes from ([`ASource`]), the
//! micro-kernel ([`MicroKernel`]) and the blocks ([`Blocking`]), so that
//! training, inference and the `no_std` path run the same code. Each output
//! element is one chain per depth block, the blocks added in order; nothing
//! else (`mc`, `nc`, the cut of C, the kernel) changes a bit.

use super::blocking::Blocking;
use super::kernel::{Dst, MicroKernel};
use super::pack::{ASource, BSource};
use super::view::OutView;
use crate::kernels::Float;

/// The packing buffers of one product: A's block and B's block.
pub(crate) struct Packs<'p, T> {
    pub a: &'p mut [T],
    pub b: &'p mut [T],
}

/// `C = A·B`, or `C += A·B` when `accumulate`, on the kernel's `MR × NR`
/// tile. The caller has checked the shapes (`A` is `m × k`, `b` `k × n`,
/// `c` `m × n`, none of them empty), that the blocking fits the tile, and
/// that the packs hold what it asks for.
#[inline(always)]
pub(crate) fn gemm_loop<
    T: Float,
    A: ASource<T>,
    B: BSource<T>,
    K: MicroKernel<T, MR, NR>,
    const MR: usize,
    const NR: usize,
>(
    kernel: &K,
    mut c: OutView<'_, T>,
    a: &A,
    b: &B,
    blk: Blocking,
    accumulate: bool,
    packs: Packs<'_, T>,
) {
    let Packs { a: apack, b: bpack } = packs;
    let (m, n, k) = (c.rows(), c.cols(), b.rows());
    debug_assert_eq!(a.rows(), m);
    let mut acc = [[T::ZERO; NR]; MR];
    for jc in (0..n).step_by(blk.nc) {
        let ncur = blk.nc.min(n - jc);
        for pc in (0..k).step_by(blk.kc) {
            let kcur = blk.kc.min(k - pc);
            b.pack::<NR>(pc, kcur, jc, ncur, bpack);
            let assign = pc == 0 && !accumulate;
            for ic in (0..m).step_by(blk.mc) {
                let mcur = blk.mc.min(m - ic);
                let block = a.block::<MR>(ic, mcur, pc, kcur, apack);
                for (q, jr) in (0..ncur).step_by(NR).enumerate() {
                    let nr = NR.min(ncur - jr);
                    let bp = &bpack[q * kcur * NR..(q + 1) * kcur * NR];
                    for ir in (0..mcur).step_by(MR) {
                        let mr = MR.min(mcur - ir);
                        let (rows, aps) = block.tile_rows::<MR>(ir, mr);
                        let (i0, j0) = (ic + ir, jc + jr);
                        let full = mr == MR && nr == NR;
                        match c.tile::<MR>(i0, mr, j0, nr) {
                            Some(out) if full => {
                                kernel.tile(kcur, block.data, rows, aps, bp, Dst::C(c.data_mut(), out, assign))
                            }
                            Some(out) if K::EDGES => {
                                let data = c.data_mut();
                                let dst = Dst::Edge { data, rows: out, mr, nr, assign };
                                kernel.tile(kcur, block.data, rows, aps, bp, dst)
                            }
                            _ => {
                                kernel.tile(kcur, block.data, rows, aps, bp, Dst::Acc(&mut acc));
                                c.store(i0, mr, j0, nr, &acc, assign);
                            }
                        }
                    }
                }
            }
        }
    }
}
