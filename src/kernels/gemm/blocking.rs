//! Every block size of the GEMM, in one place, and the three blocking
//! policies its callers use.
//!
//! Each micro-kernel has its register tile: [`MR`] × [`NR`] = 6 × 16 for
//! the portable and AVX2 kernels (12 ymm accumulators, fed by 2 loads of B
//! and 6 broadcasts of A per step), [`MR_512`] × [`NR_512`] = 8 × 32 for
//! AVX-512 (16 zmm accumulators, 2 loads and 8 broadcasts per step). The
//! training blocks are multiples of every tile ([`MC_UNIT`], [`NC_UNIT`]);
//! the inference blocks stay multiples of the 6 × 16 tile, so that a plan's
//! scratch is the same on every CPU and target, and [`Blocking::for_tile`]
//! cuts them for a larger tile inside the same buffers. Blocks follow
//! GotoBLAS/BLIS:
//! a `kc × nc` block of B is packed once and reused by every row block of
//! A, a `mc × kc` block of A by every panel of B.
//!
//! The depth `kc` decides the bits: each output element is one FMA chain
//! per depth block, and the blocks are added in order. So the policies
//! differ only where they must, and each caller keeps its own:
//! - [`Blocking::balanced`] (training): `k` cut into equal blocks of at
//!   most [`KC`];
//! - [`Blocking::new`] (inference, caller scratch): `kc = min(k, KC)`, and
//!   `mc`, `nc` fitted to a buffer budget;
//! - [`Blocking::stack`] (`no_std`, f64): `kc = min(k, KC)`, blocks small
//!   enough for fixed stack buffers.

use crate::error::{Error, Result};

/// Register tile rows of the portable and AVX2 kernels.
pub const MR: usize = 6;
/// Register tile columns of the portable and AVX2 kernels (two AVX2
/// vectors of f32).
pub const NR: usize = 16;
/// Register tile rows of the AVX-512 kernel.
pub const MR_512: usize = 8;
/// Register tile columns of the AVX-512 kernel (two AVX-512 vectors of f32).
pub const NR_512: usize = 32;
/// Its narrow tile's columns (one vector), for blocks of B narrower than
/// [`NR_512`].
pub const NR_512_NARROW: usize = 16;
/// Rows of A per block are a multiple of this: of every kernel's tile rows.
pub const MC_UNIT: usize = 24;
/// Columns of B per block are a multiple of this: of every kernel's tile
/// columns.
pub const NC_UNIT: usize = 32;
const _: () = assert!(MC_UNIT.is_multiple_of(MR) && MC_UNIT.is_multiple_of(MR_512));
const _: () = assert!(NC_UNIT.is_multiple_of(NR) && NC_UNIT.is_multiple_of(NR_512) && NR.is_multiple_of(NR_512_NARROW));
/// Largest depth of one block: a 256 × 16 panel of B is 16 KiB of f32 (L1).
pub const KC: usize = 256;
/// Largest block of A rows: 96 × 256 f32 = 96 KiB (L2).
pub const MC_MAX: usize = 96;
const _: () = assert!(MC_MAX.is_multiple_of(MC_UNIT) && MC_STACK.is_multiple_of(MC_UNIT));
/// Largest block of B columns in training: 256 × 1024 f32 = 1 MiB.
pub const NC_MAX: usize = 1024;
/// Rows of A per block with stack buffers (a multiple of [`MC_UNIT`]).
pub const MC_STACK: usize = 24;

/// Block sizes of one product; the packing buffers must hold
/// [`Blocking::apack_len`] and [`Blocking::bpack_len`] elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Depth of a block (≤ [`KC`]).
    pub kc: usize,
    /// Rows of A per block (a multiple of [`MR`]; of [`MC_UNIT`] in
    /// training).
    pub mc: usize,
    /// Columns of B per block (a multiple of [`NR`]; of [`NC_UNIT`] in
    /// training).
    pub nc: usize,
}

/// Splits `len` into equal blocks of at most `cap`, rounded up to `unit`.
fn balanced(len: usize, cap: usize, unit: usize) -> usize {
    let blocks = len.max(1).div_ceil(cap);
    len.max(1).div_ceil(blocks).div_ceil(unit) * unit
}

impl Blocking {
    /// Inference: blocks for an `m × k × n` product with at most `budget`
    /// elements per packing buffer (at least one register tile's worth is
    /// always used); `kc = min(k, KC)`.
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

    /// Training: every dimension cut into equal blocks (`k` of at most
    /// [`KC`], so 300 is 2 × 150, not 256 + 44).
    pub fn balanced(m: usize, k: usize, n: usize) -> Self {
        Self { kc: balanced(k, KC, 1), mc: balanced(m, MC_MAX, MC_UNIT), nc: balanced(n, NC_MAX, NC_UNIT) }
    }

    /// Fixed stack buffers ([`STACK_APACK`], [`STACK_BPACK`] elements):
    /// `kc = min(k, KC)`, [`MC_STACK`] rows of A, one [`NR`]-column panel
    /// of B (the portable kernel's: the only one this policy runs).
    pub fn stack(k: usize) -> Self {
        Self { kc: k.clamp(1, KC), mc: MC_STACK, nc: NR }
    }

    /// Elements of the A block buffer (unused when A is read in place).
    pub fn apack_len(&self) -> usize {
        self.mc * self.kc
    }

    /// Elements of the packed B buffer.
    pub fn bpack_len(&self) -> usize {
        self.kc * self.nc
    }

    /// Whether the loop nest can run these blocks with an `mr × nr` tile.
    fn fits(&self, mr: usize, nr: usize) -> bool {
        self.kc > 0
            && self.kc <= KC
            && self.mc > 0
            && self.mc.is_multiple_of(mr)
            && self.nc > 0
            && self.nc.is_multiple_of(nr)
    }

    /// These blocks cut for an `mr × nr` tile inside the same packing
    /// buffers: the same depth (so the same bits), `nc` rounded down to a
    /// multiple of `nr`, and `mc` to a multiple of `mr` where A's block is
    /// packed into panels (`packed_a`; a block read in rows may end in a
    /// partial tile). `None` when a block would be empty.
    pub(crate) fn for_tile(self, mr: usize, nr: usize, packed_a: bool) -> Option<Self> {
        let nc = self.nc / nr * nr;
        let mc = if packed_a { self.mc / mr * mr } else { self.mc };
        (nc > 0 && mc > 0).then_some(Self { kc: self.kc, mc, nc })
    }

    /// Fails unless the loop nest can run with these blocks on the 6 × 16
    /// tile (the one every CPU and target has).
    pub(crate) fn check(&self, what: &'static str) -> Result<()> {
        if self.fits(MR, NR) { Ok(()) } else { Err(Error::InvalidShape { what, reason: "invalid blocking" }) }
    }
}

/// Elements of the stack A buffer of [`Blocking::stack`].
pub const STACK_APACK: usize = MC_STACK * KC;
/// Elements of the stack B buffer of [`Blocking::stack`].
pub const STACK_BPACK: usize = KC * NR;
