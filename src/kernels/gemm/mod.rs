//! Matrix multiplication, `C (+)= A·B`: one loop nest for training,
//! inference and the `no_std` path.
//!
//! - [`view`]: the operands, validated once ([`MatRef`], [`MatMut`], and
//!   the segmented [`OutView`] a batched convolution writes through);
//! - [`blocking`]: every block size, and the three blocking policies;
//! - [`pack`]: where A's and B's panels come from (in place, packed, or
//!   converted from a file's f16/bf16 bytes);
//! - [`kernel`]: the micro-kernels and their registry ([`KernelId`]);
//! - [`nest`]: the loop nest over all of them.
//!
//! The entry points differ only in their policy: [`gemm`] (any [`Float`],
//! the training kernels' call), [`sgemm`] (f32 with per-thread buffers and
//! balanced blocks, feature `train`), and [`gemm_weights`] (inference:
//! weights as stored, caller scratch, no heap). CPU features come from
//! [`super::cpu`], detected once.

pub mod blocking;
mod im2col;
mod kernel;
mod nest;
mod pack;
pub mod view;
mod weights;

pub use blocking::{Blocking, KC, MC_MAX, MC_UNIT, MR, MR_512, NC_UNIT, NR, NR_512, NR_512_NARROW};
pub use im2col::{ConvGeom, Im2colB};
pub use kernel::KernelId;
pub use view::{MatMut, MatRef, OutView};
pub use weights::WeightRows;

use kernel::Portable;
#[cfg(target_arch = "x86_64")]
use kernel::{Avx2Fma, Avx512};
use nest::{Packs, gemm_loop};
use pack::{ASource, BSource, WeightMatrix};

use super::Float;
use crate::error::{Error, Result};

/// Which blocking and buffers [`gemm_with`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Fixed stack buffers and [`Blocking::stack`] (`no_std`, no heap).
    Blocked,
    /// f32: [`sgemm`] (per-thread buffers, [`Blocking::balanced`]); other
    /// types (the f64 of the gradient checks): [`Backend::Blocked`].
    #[cfg(feature = "parallel")]
    Packed,
}

impl Backend {
    /// The measured-best backend available in this build.
    pub const fn default_for_build() -> Self {
        #[cfg(feature = "parallel")]
        {
            Backend::Packed
        }
        #[cfg(not(feature = "parallel"))]
        {
            Backend::Blocked
        }
    }
}

const SHAPES: &str = "operand shapes do not chain (need C[m,n] = A[m,k] · B[k,n])";

/// `C = A·B` (or `C += A·B` when `accumulate`), with the default backend.
pub fn gemm<T: Float>(c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) -> Result<()> {
    gemm_with(Backend::default_for_build(), c, a, b, accumulate)
}

/// `C = A·B` (or `C += A·B`), with an explicit backend.
pub fn gemm_with<T: Float>(
    backend: Backend,
    c: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) -> Result<()> {
    if a.cols() != b.rows() || c.rows() != a.rows() || c.cols() != b.cols() {
        return Err(Error::InvalidShape { what: "gemm", reason: SHAPES });
    }
    // A column-major C is computed as `Cᵀ = Bᵀ·Aᵀ` (the same products in
    // the same order: the same bits).
    let (mut c, transposed) = c.into_out_view();
    let (a, b) = if transposed { (b.t(), a.t()) } else { (a, b) };
    if trivial(c.reborrow(), a.cols(), accumulate) {
        return Ok(());
    }
    match backend {
        Backend::Blocked => stack(c, a, b, accumulate),
        #[cfg(feature = "parallel")]
        Backend::Packed => match (T::as_f32(a.data), T::as_f32(b.data)) {
            (Some(ad), Some(bd)) => {
                let a = MatRef::new(ad, a.rows(), a.cols(), a.rs, a.cs)?;
                let b = MatRef::new(bd, b.rows(), b.cols(), b.rs, b.cs)?;
                let c =
                    c.into_f32().ok_or(Error::InvalidShape { what: "gemm", reason: "operands of different types" })?;
                sgemm(c, a, b, accumulate)?;
            }
            _ => stack(c, a, b, accumulate),
        },
    }
    Ok(())
}

/// Handles an empty C or an empty depth (then C is zeroed unless
/// accumulating); true when nothing is left to compute.
fn trivial<T: Float>(mut c: OutView<'_, T>, k: usize, accumulate: bool) -> bool {
    let (m, n) = (c.rows(), c.cols());
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c.store_one(i, j, T::ZERO);
                }
            }
        }
        return true;
    }
    false
}

/// [`Backend::Blocked`]: stack buffers; on x86_64 with AVX2 and FMA the
/// portable kernel compiled for them (fused), else the target's own.
fn stack<T: Float>(c: OutView<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if super::cpu::features().avx2_fma() {
            // SAFETY: the running CPU supports AVX2 and FMA (checked just
            // above), which is all `stack_avx2_fma` requires.
            unsafe { stack_avx2_fma(c, a, b, accumulate) };
            return;
        }
    }
    let blk = Blocking::stack(a.cols());
    let (mut apack, mut bpack) = ([T::ZERO; blocking::STACK_APACK], [T::ZERO; blocking::STACK_BPACK]);
    let packs = Packs { a: &mut apack, b: &mut bpack };
    match KernelId::portable_for_target() {
        KernelId::Portable => gemm_loop::<_, _, _, _, MR, NR>(&Portable::<true>, c, &a, &b, blk, accumulate, packs),
        _ => gemm_loop::<_, _, _, _, MR, NR>(&Portable::<false>, c, &a, &b, blk, accumulate, packs),
    }
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn stack_avx2_fma<T: Float>(c: OutView<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    let blk = Blocking::stack(a.cols());
    let (mut apack, mut bpack) = ([T::ZERO; blocking::STACK_APACK], [T::ZERO; blocking::STACK_BPACK]);
    let packs = Packs { a: &mut apack, b: &mut bpack };
    gemm_loop::<_, _, _, _, MR, NR>(&Portable::<true>, c, &a, &b, blk, accumulate, packs);
}

/// Runs the loop nest on f32 with the kernel `id`: the next best one if
/// `id` cannot run here or `blk` cannot be cut for its tile (the AVX2
/// kernel, else the portable fused one). `blk` fits the 6 × 16 tile; a
/// larger tile runs [`Blocking::for_tile`] of it (the same depth blocks,
/// so the same bits).
fn run_f32<A: ASource<f32>, B: BSource<f32>>(
    id: KernelId,
    c: OutView<'_, f32>,
    a: &A,
    b: &B,
    blk: Blocking,
    accumulate: bool,
    packs: Packs<'_, f32>,
) {
    #[cfg(target_arch = "x86_64")]
    if id == KernelId::Avx512
        && let Some(k) = Avx512::detect()
    {
        if let Some(blk) = blk.for_tile(MR_512, NR_512, A::PACKS) {
            return gemm_loop::<_, _, _, _, MR_512, NR_512>(&k, c, a, b, blk, accumulate, packs);
        }
        if let Some(blk) = blk.for_tile(MR_512, NR_512_NARROW, A::PACKS) {
            return gemm_loop::<_, _, _, _, MR_512, NR_512_NARROW>(&k, c, a, b, blk, accumulate, packs);
        }
    }
    match id {
        #[cfg(target_arch = "x86_64")]
        KernelId::Avx2Fma | KernelId::Avx512 => match Avx2Fma::detect() {
            Some(k) => gemm_loop::<_, _, _, _, MR, NR>(&k, c, a, b, blk, accumulate, packs),
            None => gemm_loop::<_, _, _, _, MR, NR>(&Portable::<true>, c, a, b, blk, accumulate, packs),
        },
        KernelId::PortableUnfused => {
            gemm_loop::<_, _, _, _, MR, NR>(&Portable::<false>, c, a, b, blk, accumulate, packs)
        }
        _ => gemm_loop::<_, _, _, _, MR, NR>(&Portable::<true>, c, a, b, blk, accumulate, packs),
    }
}

#[cfg(feature = "parallel")]
std::thread_local! {
    /// This thread's packing buffers (A block, B block) for [`sgemm`]: they
    /// live as long as the thread, so a training step allocates nothing here.
    static PACK: core::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { core::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The training GEMM: f32 `C = A·B`, or `C += A·B` when `accumulate`, with
/// [`Blocking::balanced`] and this thread's packing buffers. Row-major A is
/// read in place, any other A packed. The output may be segmented (a
/// convolution over a whole batch writes each image's NCHW block in place).
#[cfg(feature = "parallel")]
pub fn sgemm(c: OutView<'_, f32>, a: MatRef<'_, f32>, b: MatRef<'_, f32>, accumulate: bool) -> Result<()> {
    sgemm_with_kernel(KernelId::best_f32(KernelId::Portable), c, a, b, accumulate)
}

/// [`sgemm`] with an explicit micro-kernel, for the registry's tests (an
/// unavailable one runs as the next best, see [`KernelId::best_f32`]).
#[doc(hidden)]
#[cfg(feature = "parallel")]
pub fn sgemm_with_kernel(
    id: KernelId,
    mut c: OutView<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    accumulate: bool,
) -> Result<()> {
    let (m, n, k) = (c.rows(), c.cols(), a.cols());
    if a.rows() != m || b.cols() != n || b.rows() != k {
        return Err(Error::InvalidShape { what: "gemm", reason: SHAPES });
    }
    if trivial(c.reborrow(), k, accumulate) {
        return Ok(());
    }
    let blk = Blocking::balanced(m, k, n);
    PACK.with_borrow_mut(|(apack, bpack)| {
        if apack.len() < blk.apack_len() {
            apack.resize(blk.apack_len(), 0.0);
        }
        if bpack.len() < blk.bpack_len() {
            bpack.resize(blk.bpack_len(), 0.0);
        }
        run_f32(id, c, &a, &b, blk, accumulate, Packs { a: apack, b: bpack });
    });
    Ok(())
}

/// Declares an entry point of the inference GEMM: the entry points take
/// the same arguments and differ only in the micro-kernel they pick.
macro_rules! gemm_weights_entry {
    ($(#[$attr:meta])* $name:ident => $kernel:expr) => {
        $(#[$attr])*
        pub fn $name(
            c: OutView<'_, f32>, w: WeightRows<'_>, b: MatRef<'_, f32>,
            blk: Blocking, apack: &mut [f32], bpack: &mut [f32],
        ) -> Result<()> {
            gemm_weights_with_kernel($kernel, c, w, b, blk, apack, bpack)
        }
    };
}

gemm_weights_entry!(
    /// The inference GEMM: `C = W·B` for `W` a layer's weights as stored
    /// (`[m, k]` row-major, `m` = C's rows) and `B` `[k, n]`, blocked by `blk`
    /// with caller-provided packing buffers. Allocates nothing. Every element is
    /// one FMA chain per depth block, and [`Blocking::new`] keeps `kc` from
    /// depending on `n`: an image gives the same output alone or in a batch.
    gemm_weights => KernelId::best_f32(KernelId::portable_for_target())
);

gemm_weights_entry!(
    /// [`gemm_weights`] with the portable micro-kernel whatever the CPU (what
    /// Miri, `no_std` builds and non-x86 targets run), for tests.
    #[doc(hidden)]
    gemm_weights_portable => KernelId::portable_for_target()
);

/// [`gemm_weights`] with an explicit micro-kernel, for the registry's tests
/// (an unavailable one runs as the next best, see [`KernelId::best_f32`]).
#[doc(hidden)]
pub fn gemm_weights_with_kernel(
    id: KernelId,
    c: OutView<'_, f32>,
    w: WeightRows<'_>,
    b: MatRef<'_, f32>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    weights_times(id, c, w, &b, blk, apack, bpack)
}

/// The inference GEMM of a convolution, `C = W · im2col(x)`, with the
/// im2col matrix packed straight from the images ([`Im2colB`]): the same
/// products in the same order as [`gemm_weights`] over written-out
/// columns, so the same bits, without the columns' buffer or their writes.
pub fn gemm_weights_im2col(
    c: OutView<'_, f32>,
    w: WeightRows<'_>,
    b: Im2colB<'_>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    gemm_weights_im2col_with_kernel(KernelId::best_f32(KernelId::portable_for_target()), c, w, b, blk, apack, bpack)
}

/// [`gemm_weights_im2col`] with an explicit micro-kernel, for the tests.
#[doc(hidden)]
pub fn gemm_weights_im2col_with_kernel(
    id: KernelId,
    c: OutView<'_, f32>,
    w: WeightRows<'_>,
    b: Im2colB<'_>,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    weights_times(id, c, w, &b, blk, apack, bpack)
}

/// `C = W·B` for the inference entry points: checks, then the loop nest.
fn weights_times<B: BSource<f32>>(
    id: KernelId,
    mut c: OutView<'_, f32>,
    w: WeightRows<'_>,
    b: &B,
    blk: Blocking,
    apack: &mut [f32],
    bpack: &mut [f32],
) -> Result<()> {
    let what = "inference gemm";
    let (m, n, k) = (c.rows(), c.cols(), b.rows());
    if b.cols() != n {
        return Err(Error::InvalidShape { what, reason: "B's columns differ from C's" });
    }
    let mk = m.checked_mul(k).ok_or(Error::Overflow { what })?;
    if w.len() != mk {
        return Err(Error::InvalidShape { what, reason: "weights are not [m, k]" });
    }
    blk.check(what)?;
    if trivial(c.reborrow(), k, false) {
        return Ok(());
    }
    let a_need = if w.in_place().is_some() { 0 } else { blk.mc * blk.kc.min(k) };
    if apack.len() < a_need || bpack.len() < blk.kc.min(k) * blk.nc {
        return Err(Error::InvalidShape { what, reason: "packing buffers shorter than the blocking needs" });
    }
    run_f32(id, c, &WeightMatrix { w, m, k }, b, blk, false, Packs { a: apack, b: bpack });
    Ok(())
}
