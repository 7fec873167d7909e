//! Matrix views: strided read-only operands, mutable row- or column-major
//! results, and the segmented output the loop nest writes.
//!
//! Views are validated once, when built, so the loop nest can neither read
//! nor write out of bounds, and a mutable view never aliases itself.

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

/// Checks that the highest offset a `rows × cols` view with strides `rs`,
/// `cs` touches (both counts positive) lies inside a slice of `len`.
fn check_in_bounds(what: &'static str, len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Result<()> {
    let r = (rows - 1).checked_mul(rs).ok_or(Error::Overflow { what })?;
    let c = (cols - 1).checked_mul(cs).ok_or(Error::Overflow { what })?;
    if r.checked_add(c).ok_or(Error::Overflow { what })? >= len {
        return Err(Error::InvalidShape { what, reason: "strided view reaches past the end of the slice" });
    }
    Ok(())
}

impl<'a, T: Copy> MatRef<'a, T> {
    /// A view with explicit strides; fails if any element is out of bounds.
    pub fn new(data: &'a [T], rows: usize, cols: usize, rs: usize, cs: usize) -> Result<Self> {
        if rows > 0 && cols > 0 {
            check_in_bounds("matrix view", data.len(), rows, cols, rs, cs)?;
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
            check_in_bounds("mutable matrix view", data.len(), rows, cols, rs, cs)?;
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

impl<'a, T> MatMut<'a, T> {
    /// The same elements as a [`OutView`]: a row-major view directly, a
    /// column-major one as its transpose (the caller then computes
    /// `Cᵀ = Bᵀ·Aᵀ`). Returns the view and whether it is transposed.
    pub(crate) fn into_out_view(self) -> (OutView<'a, T>, bool) {
        let MatMut { data, rows, cols, rs, cs } = self;
        // `MatMut::new` admitted only row-major (cs = 1) or column-major (rs = 1),
        // with every element in bounds: the segment-free views below hold the same.
        if cs == 1 {
            (OutView { data, m: rows, n: cols, rs, seg: cols.max(1), seg_stride: 0 }, false)
        } else {
            (OutView { data, m: cols, n: rows, rs: cs, seg: rows.max(1), seg_stride: 0 }, true)
        }
    }
}

/// The output of the loop nest: `C(i, j)` at
/// `(j / seg)·seg_stride + i·rs + j % seg`. Every element is checked to lie
/// inside the slice; layouts whose elements overlap are the caller's error
/// (a wrong result, never an out-of-bounds write).
#[derive(Debug)]
pub struct OutView<'a, T> {
    data: &'a mut [T],
    m: usize,
    n: usize,
    rs: usize,
    seg: usize,
    seg_stride: usize,
}

impl<'a, T: Copy + core::ops::Add<Output = T>> OutView<'a, T> {
    /// A segmented view (see the type's documentation); `seg ≥ 1`.
    pub fn new(data: &'a mut [T], m: usize, n: usize, rs: usize, seg: usize, seg_stride: usize) -> Result<Self> {
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
    pub fn row_major(data: &'a mut [T], m: usize, n: usize) -> Result<Self> {
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

    /// Where the rows of the `MR × NR` register tile at `(i0, j0)` start,
    /// when its `mr` real rows and `nr` real columns exist, each row's `nr`
    /// elements are contiguous (one segment) and in bounds: the kernel may
    /// then write it directly. Rows past `mr` repeat the last real one (a
    /// kernel writes only the real rows and columns of a partial tile).
    #[inline]
    pub(crate) fn tile<const MR: usize>(&self, i0: usize, mr: usize, j0: usize, nr: usize) -> Option<[usize; MR]> {
        if mr == 0 || mr > MR || i0 + mr > self.m || j0 + nr > self.n {
            return None;
        }
        let (seg_idx, within) = (j0 / self.seg, j0 % self.seg);
        if within + nr > self.seg {
            return None;
        }
        let base = seg_idx.checked_mul(self.seg_stride)?.checked_add(within)?;
        let rows: [usize; MR] = core::array::from_fn(|r| base + (i0 + r.min(mr - 1)) * self.rs);
        rows.iter().all(|&o| o + nr <= self.data.len()).then_some(rows)
    }

    /// The underlying slice (for the kernels' direct tile writes).
    #[inline]
    pub(crate) fn data_mut(&mut self) -> &mut [T] {
        self.data
    }

    /// Writes (or adds) tile rows `i0..i0+mr`, columns `j0..j0+nr`.
    #[inline]
    pub(crate) fn store<const MR: usize, const NR: usize>(
        &mut self,
        i0: usize,
        mr: usize,
        j0: usize,
        nr: usize,
        acc: &[[T; NR]; MR],
        assign: bool,
    ) {
        // Column runs inside one segment each (a tile wider than a segment,
        // e.g. 32 columns over 16-wide 4×4 images, spans several).
        let mut jj = 0;
        while jj < nr {
            let j = j0 + jj;
            let within = j % self.seg;
            let run = (self.seg - within).min(nr - jj);
            let base = (j / self.seg) * self.seg_stride + within;
            for (r, a) in acc.iter().enumerate().take(mr) {
                let start = base + (i0 + r) * self.rs;
                let (row, src) = (&mut self.data[start..start + run], &a[jj..jj + run]);
                if assign {
                    row.copy_from_slice(src);
                } else {
                    for (d, &v) in row.iter_mut().zip(src) {
                        *d = *d + v;
                    }
                }
            }
            jj += run;
        }
    }

    /// A shorter-lived view of the same elements.
    pub(crate) fn reborrow(&mut self) -> OutView<'_, T> {
        OutView { data: self.data, m: self.m, n: self.n, rs: self.rs, seg: self.seg, seg_stride: self.seg_stride }
    }

    /// The same view typed as f32, when `T` is f32.
    #[cfg(feature = "parallel")]
    pub(crate) fn into_f32(self) -> Option<OutView<'a, f32>>
    where
        T: crate::kernels::Float,
    {
        let OutView { data, m, n, rs, seg, seg_stride } = self;
        T::as_f32_mut(data).map(|data| OutView { data, m, n, rs, seg, seg_stride })
    }

    /// Writes element (i, j).
    pub(crate) fn store_one(&mut self, i: usize, j: usize, v: T) {
        self.data[(j / self.seg) * self.seg_stride + i * self.rs + j % self.seg] = v;
    }
}
