//! Matrix multiplication over strided views: `C (+)= A · B`.
//!
//! Two backends sit behind one checked entry point, [`gemm`]:
//! - [`Backend::Blocked`]: our own cache-blocked kernel. Safe code, no heap,
//!   `no_std`; packs A and B panels into fixed stack buffers and runs a 6×16
//!   register tile that LLVM vectorises. On x86_64 with `std` it is compiled
//!   a second time for AVX2+FMA and picked at run time.
//! - [`Backend::Packed`] (feature `train`): f32 goes to [`super::sgemm`],
//!   the packed AVX2 training GEMM with per-thread buffers, which measured
//!   ahead of the `gemm` crate and matrixmultiply on this project's shapes
//!   (`benches/kernels.rs`, docs/kernels.md); other types take `Blocked`.
//!
//! Views are validated once, so neither backend can read or write out of
//! bounds, and a mutable view can never alias itself.

use super::Float;
use crate::error::{Error, Result};

/// A read-only strided matrix view: element (i, j) lives at `i*rs + j*cs`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    pub(crate) data: &'a [T],
    rows: usize,
    cols: usize,
    pub(crate) rs: usize,
    pub(crate) cs: usize,
}

/// Highest offset touched by a `rows × cols` view with strides `rs`, `cs`.
fn last_offset(what: &'static str, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<usize> {
    let r = (rows - 1).checked_mul(rs).ok_or(Error::Overflow { what })?;
    let c = (cols - 1).checked_mul(cs).ok_or(Error::Overflow { what })?;
    r.checked_add(c).ok_or(Error::Overflow { what })
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A view with explicit strides; fails if any element is out of bounds.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let last = last_offset("matrix view", rows, cols, rs, cs)?;
            if last >= data.len() {
                return Err(Error::InvalidShape {
                    what: "matrix view",
                    reason: "strided view reaches past the end of the slice",
                });
            }
        }
        Ok(Self { data, rows, cols, rs, cs })
    }

    /// A dense row-major view; the slice must hold exactly `rows * cols`.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Result<Self> {
        let len = rows.checked_mul(cols).ok_or(Error::Overflow { what: "matrix view" })?;
        crate::error::check_len("matrix view", len, data.len())?;
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, as a view (no copy).
    pub fn t(self) -> Self {
        Self { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `r0..r1` as a view (bounds already implied by `self`).
    pub fn row_range(self, r0: usize, r1: usize) -> Result<Self> {
        if r0 > r1 || r1 > self.rows {
            return Err(Error::InvalidShape { what: "matrix row range", reason: "range outside the matrix" });
        }
        if r0 == r1 || self.cols == 0 {
            return Self::new(&self.data[..0], r1 - r0, self.cols, self.rs, self.cs);
        }
        let start = r0 * self.rs;
        Self::new(&self.data[start..], r1 - r0, self.cols, self.rs, self.cs)
    }

    /// Columns `c0..c1` as a view.
    pub fn col_range(self, c0: usize, c1: usize) -> Result<Self> {
        self.t().row_range(c0, c1).map(Self::t)
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.rs + j * self.cs]
    }
}

/// A mutable matrix view, row-major or column-major with a leading
/// dimension, so that distinct (i, j) never share memory.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T: Copy> MatMut<'a, T> {
    /// A mutable view; requires `cs == 1 && rs >= cols` (row-major) or
    /// `rs == 1 && cs >= rows` (column-major), and every element in bounds.
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            let row_major = cs == 1 && (rs >= cols || rows == 1);
            let col_major = rs == 1 && (cs >= rows || cols == 1);
            if !(row_major || col_major) {
                return Err(Error::InvalidShape {
                    what: "mutable matrix view",
                    reason: "strides must be row-major or column-major without overlap",
                });
            }
            let last = last_offset("mutable matrix view", rows, cols, rs, cs)?;
            if last >= data.len() {
                return Err(Error::InvalidShape {
                    what: "mutable matrix view",
                    reason: "strided view reaches past the end of the slice",
                });
            }
        }
        Ok(Self { data, rows, cols, rs, cs })
    }

    /// A dense row-major view; the slice must hold exactly `rows * cols`.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self> {
        let len = rows.checked_mul(cols).ok_or(Error::Overflow { what: "matrix view" })?;
        crate::error::check_len("mutable matrix view", len, data.len())?;
        Self::new(data, rows, cols, cols, 1)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// Which GEMM implementation to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Our own blocked kernel (`no_std`, no heap).
    Blocked,
    /// f32: our packed AVX2 kernel ([`super::sgemm`]); other types (the
    /// f64 of the gradient checks): [`Backend::Blocked`].
    #[cfg(feature = "train")]
    Packed,
}

impl Backend {
    /// The measured-best backend available in this build.
    pub const fn default_for_build() -> Self {
        #[cfg(feature = "train")]
        {
            Backend::Packed
        }
        #[cfg(not(feature = "train"))]
        {
            Backend::Blocked
        }
    }
}

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
    if a.cols != b.rows || c.rows != a.rows || c.cols != b.cols {
        return Err(Error::InvalidShape {
            what: "gemm",
            reason: "operand shapes do not chain (need C[m,n] = A[m,k] · B[k,n])",
        });
    }
    if c.rows == 0 || c.cols == 0 {
        return Ok(());
    }
    if a.cols == 0 {
        if !accumulate {
            fill(c, T::ZERO);
        }
        return Ok(());
    }
    match backend {
        Backend::Blocked => blocked(c, a, b, accumulate),
        #[cfg(feature = "train")]
        Backend::Packed => packed(c, a, b, accumulate)?,
    }
    Ok(())
}

fn fill<T: Copy>(c: MatMut<'_, T>, v: T) {
    for i in 0..c.rows {
        for j in 0..c.cols {
            c.data[i * c.rs + j * c.cs] = v;
        }
    }
}

/// [`Backend::Packed`]: f32 to [`super::sgemm`], anything else to
/// [`blocked`]. A column-major C is computed as `Cᵀ = Bᵀ·Aᵀ`.
#[cfg(feature = "train")]
fn packed<T: Float>(c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) -> Result<()> {
    let (Some(ad), Some(bd)) = (T::as_f32(a.data), T::as_f32(b.data)) else {
        blocked(c, a, b, accumulate);
        return Ok(());
    };
    let (m, n) = (c.rows, c.cols);
    let (rs, cs) = (c.rs, c.cs);
    let Some(cd) = T::as_f32_mut(c.data) else {
        return Err(Error::InvalidShape { what: "gemm", reason: "operands of different types" });
    };
    let a = MatRef::new(ad, a.rows, a.cols, a.rs, a.cs)?;
    let b = MatRef::new(bd, b.rows, b.cols, b.rs, b.cs)?;
    // `MatMut::new` admitted only row-major (cs = 1) or column-major (rs = 1).
    if cs == 1 {
        let out = super::igemm::OutView::new(cd, m, n, rs, n.max(1), 0)?;
        super::sgemm::sgemm(out, a, b, accumulate)
    } else {
        let out = super::igemm::OutView::new(cd, n, m, cs, m.max(1), 0)?;
        super::sgemm::sgemm(out, b.t(), a.t(), accumulate)
    }
}

/// Register tile rows.
const MR: usize = 6;
/// Register tile columns (two AVX2 vectors of f32).
const NR: usize = 16;
/// Depth of one packed panel.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of MR).
const MC: usize = 24;

fn blocked<T: Float>(c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the running CPU supports AVX2 and FMA (checked just above),
            // which is all `blocked_avx2_fma` requires.
            unsafe { blocked_avx2_fma(c, a, b, accumulate) };
            return;
        }
    }
    #[cfg(target_feature = "fma")]
    blocked_impl::<T, true>(c, a, b, accumulate);
    #[cfg(not(target_feature = "fma"))]
    blocked_impl::<T, false>(c, a, b, accumulate);
}

#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn blocked_avx2_fma<T: Float>(c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    blocked_impl::<T, true>(c, a, b, accumulate);
}

#[inline(always)]
fn blocked_impl<T: Float, const FMA: bool>(mut c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    let (m, n, k) = (c.rows, c.cols, a.cols);
    if !accumulate {
        fill(c.reborrow(), T::ZERO);
    }
    let mut apack = [T::ZERO; MC * KC];
    let mut bpack = [T::ZERO; KC * NR];
    for p0 in (0..k).step_by(KC) {
        let kc = KC.min(k - p0);
        for ic in (0..m).step_by(MC) {
            let mc = MC.min(m - ic);
            // Pack A[ic..ic+mc, p0..p0+kc] as MR-row micro-panels, p-major,
            // zero-padding the last panel's missing rows.
            let panels = mc.div_ceil(MR);
            for pi in 0..panels {
                let dst = &mut apack[pi * MR * KC..(pi + 1) * MR * KC];
                for p in 0..kc {
                    for r in 0..MR {
                        let i = pi * MR + r;
                        dst[p * MR + r] = if i < mc { a.at(ic + i, p0 + p) } else { T::ZERO };
                    }
                }
            }
            for j0 in (0..n).step_by(NR) {
                let nr = NR.min(n - j0);
                for p in 0..kc {
                    let row = &mut bpack[p * NR..(p + 1) * NR];
                    if b.cs == 1 && nr == NR {
                        let start = (p0 + p) * b.rs + j0;
                        row.copy_from_slice(&b.data[start..start + NR]);
                    } else {
                        for (jj, v) in row.iter_mut().enumerate() {
                            *v = if jj < nr { b.at(p0 + p, j0 + jj) } else { T::ZERO };
                        }
                    }
                }
                for pi in 0..panels {
                    let ap = &apack[pi * MR * KC..pi * MR * KC + kc * MR];
                    let acc = micro_kernel::<T, FMA>(ap, &bpack[..kc * NR]);
                    let mr = MR.min(mc - pi * MR);
                    for (r, acc_row) in acc.iter().enumerate().take(mr) {
                        let i = ic + pi * MR + r;
                        if c.cs == 1 {
                            // Contiguous row: a vectorised add.
                            let start = i * c.rs + j0;
                            for (d, &v) in c.data[start..start + nr].iter_mut().zip(acc_row) {
                                *d += v;
                            }
                        } else {
                            for (jj, &v) in acc_row.iter().enumerate().take(nr) {
                                c.data[i * c.rs + (j0 + jj) * c.cs] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl<T> MatMut<'_, T> {
    fn reborrow(&mut self) -> MatMut<'_, T> {
        MatMut { data: self.data, rows: self.rows, cols: self.cols, rs: self.rs, cs: self.cs }
    }
}

/// The register tile: `acc[r][j] = Σ_p a[p][r] · b[p][j]` over packed panels.
#[inline(always)]
fn micro_kernel<T: Float, const FMA: bool>(ap: &[T], bp: &[T]) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    for (a, b) in ap.chunks_exact(MR).zip(bp.chunks_exact(NR)) {
        // Fixed-size views: no bounds checks in the FMA loop.
        let (Ok(a), Ok(b)) = (<&[T; MR]>::try_from(a), <&[T; NR]>::try_from(b)) else {
            continue;
        };
        for r in 0..MR {
            let av = a[r];
            for j in 0..NR {
                acc[r][j] = if FMA { av.mul_add(b[j], acc[r][j]) } else { av * b[j] + acc[r][j] };
            }
        }
    }
    acc
}
