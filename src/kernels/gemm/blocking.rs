//! Every block size of the GEMM, in one place, and the three blocking
//! policies its callers use.
//!
//! The register tile is `MR × NR` = 6 × 16: 12 AVX2 accumulators, fed by 2
//! loads of B and 6 broadcasts of A per step. Blocks follow GotoBLAS/BLIS:
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

/// Register tile rows.
pub const MR: usize = 6;
/// Register tile columns (two AVX2 vectors of f32).
pub const NR: usize = 16;
/// Largest depth of one block: a 256 × 16 panel of B is 16 KiB of f32 (L1).
pub const KC: usize = 256;
/// Largest block of A rows: 96 × 256 f32 = 96 KiB (L2).
pub const MC_MAX: usize = 96;
/// Largest block of B columns in training: 256 × 1024 f32 = 1 MiB.
pub const NC_MAX: usize = 1024;
/// Rows of A per block with stack buffers (a multiple of [`MR`]).
pub const MC_STACK: usize = 24;

/// Block sizes of one product; the packing buffers must hold
/// [`Blocking::apack_len`] and [`Blocking::bpack_len`] elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocking {
    /// Depth of a block (≤ [`KC`]).
    pub kc: usize,
    /// Rows of A per block (a multiple of [`MR`]).
    pub mc: usize,
    /// Columns of B per block (a multiple of [`NR`]).
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
        Self { kc: balanced(k, KC, 1), mc: balanced(m, MC_MAX, MR), nc: balanced(n, NC_MAX, NR) }
    }

    /// Fixed stack buffers ([`STACK_APACK`], [`STACK_BPACK`] elements):
    /// `kc = min(k, KC)`, [`MC_STACK`] rows of A, one panel of B.
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

    /// Fails unless the loop nest can run with these blocks.
    pub(crate) fn check(&self, what: &'static str) -> Result<()> {
        let ok = self.kc > 0
            && self.kc <= KC
            && self.mc > 0
            && self.mc.is_multiple_of(MR)
            && self.nc > 0
            && self.nc.is_multiple_of(NR);
        if ok { Ok(()) } else { Err(Error::InvalidShape { what, reason: "invalid blocking" }) }
    }
}

/// Elements of the stack A buffer of [`Blocking::stack`].
pub const STACK_APACK: usize = MC_STACK * KC;
/// Elements of the stack B buffer of [`Blocking::stack`].
pub const STACK_BPACK: usize = KC * NR;
