//! Multicore drivers (feature `train`): the serial kernels of this module's
//! siblings, spread over the batch or over output blocks with rayon.
//!
//! One level of parallelism only: the GEMMs inside run single-threaded.
//! Every reduction runs in a fixed order and work is cut by the problem
//! shape alone, except the f32 GEMM cuts, which follow the thread count
//! because any cut gives the same bits there ([`par_gemm`]). So results are
//! bitwise identical for 1 and N threads.

use rayon::prelude::*;

use super::Float;
use super::conv::{self, Conv2dShape, ConvGrads, ConvOut, ConvParams};
use super::gemm::OutView;
use super::gemm::sgemm;
use super::gemm::{KernelId, MatMut, MatRef, gemm};
use super::linear::{self, InputGrad, LinearGrads, LinearShape};
use super::norm::{
    self, BatchNormConfig, BnTrain, LayerNormForward, NormBackward, NormGrads, NormShape, RunningStats, SavedStats,
    ScaleShift,
};
use crate::error::{Error, Result, check_len};

/// How many blocks a parallel GEMM's output is cut into. Fixed (not the
/// thread count) so that results never depend on the machine's cores.
pub const GEMM_BLOCKS: usize = 4;

/// `C (+)= A·B` for a dense row-major `c` of `a.rows() × b.cols()`, cut into
/// [`GEMM_BLOCKS`] blocks. Cutting rows re-packs B once per block; cutting
/// columns re-packs A and goes through a temporary C block (write + copy).
/// The cheaper cut is taken, judged by those element counts alone, so the
/// choice (and the result) depends on the shape, never on the machine.
///
/// f32 goes to [`sgemm`], whose every output element is the same FMA chain
/// however C is cut, so there the cut follows the thread count (one block
/// per thread, none on one thread) without changing a bit of the result.
pub fn par_gemm<T: Float>(c: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) -> Result<()> {
    let (m, n) = (a.rows(), b.cols());
    let len = m.checked_mul(n).ok_or(Error::Overflow { what: "gemm output" })?;
    check_len("gemm output", len, c.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let k = a.cols();
    let f32_path = T::as_f32(c).is_some();
    let blocks = if f32_path { rayon::current_num_threads().clamp(1, GEMM_BLOCKS) } else { GEMM_BLOCKS };
    if blocks == 1 {
        return gemm(MatMut::row_major(c, m, n)?, a, b, accumulate);
    }
    let extra = blocks - 1;
    let row_cost = extra * k * n;
    let col_cost = extra * m * k + 2 * m * n;
    if row_cost <= col_cost {
        // Whole register tiles of the kernel that will run, per block on
        // the f32 path (the cut does not change a bit, only the balance).
        let unit = if f32_path { KernelId::best_f32(KernelId::Portable).tile().0 } else { 1 };
        let rows = m.div_ceil(blocks).div_ceil(unit) * unit;
        c.par_chunks_mut(rows * n).enumerate().try_for_each(|(i, chunk)| {
            let r0 = i * rows;
            let r1 = (r0 + rows).min(m);
            gemm(MatMut::row_major(chunk, r1 - r0, n)?, a.row_range(r0, r1)?, b, accumulate)
        })
    } else {
        let cols = n.div_ceil(blocks);
        let blocks = n.div_ceil(cols);
        // Each block starts from C's own values when accumulating, so every
        // element sees the same additions in the same order as uncut.
        let c_ro = &*c;
        let parts = (0..blocks)
            .into_par_iter()
            .map(|j| {
                let c0 = j * cols;
                let c1 = (c0 + cols).min(n);
                let w = c1 - c0;
                let mut part = alloc_zeroed(m * w);
                if accumulate {
                    for (dst, row) in part.chunks_exact_mut(w).zip(c_ro.chunks_exact(n)) {
                        dst.copy_from_slice(&row[c0..c1]);
                    }
                }
                gemm(MatMut::row_major(&mut part, m, w)?, a, b.col_range(c0, c1)?, accumulate)?;
                Ok(part)
            })
            .collect::<Result<Vec<_>>>()?;
        c.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for (j, part) in parts.iter().enumerate() {
                let c0 = j * cols;
                let w = part.len() / m;
                row[c0..c0 + w].copy_from_slice(&part[i * w..(i + 1) * w]);
            }
        });
        Ok(())
    }
}

/// Images per col2im task (fixed, never derived from the thread count;
/// each input element's sums do not depend on it anyway).
const COL2IM_GROUP: usize = 8;

/// Rows per task in the row-wise (`[R, C]`) element-wise passes.
const ELEMWISE_ROWS: usize = 64;

/// Columns per task in the column reductions below: 64 f32 = 4 cache lines
/// per row, so each task streams its rows with full-line reads.
const COL_BLOCK: usize = 64;

/// `acc[c] += Σ_r m[r][c]` for a row-major `[rows, acc.len()]` matrix, in
/// parallel over column blocks, rows summed in order (so the result equals
/// the serial sum bit for bit).
pub(crate) fn col_sums_add<T: Float>(m: &[T], acc: &mut [T]) {
    let cols = acc.len();
    acc.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, a)| {
        let c0 = b * COL_BLOCK;
        let mut sums = [T::ZERO; COL_BLOCK];
        for row in m.chunks_exact(cols) {
            for (s, &v) in sums.iter_mut().zip(&row[c0..c0 + a.len()]) {
                *s += v;
            }
        }
        for (x, s) in a.iter_mut().zip(sums) {
            *x += s;
        }
    });
}

/// Per-column mean and biased variance of a row-major `[rows, cols]`
/// matrix (two-pass, rows in order: the same sums as `channel_moments`).
fn rows_moments<T: Float>(x: &[T], cols: usize) -> Vec<(T, T)> {
    let rows = x.len() / cols;
    let rf = T::from_usize(rows);
    let mut out = vec![(T::ZERO, T::ZERO); cols];
    out.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, o)| {
        let c0 = b * COL_BLOCK;
        let w = o.len();
        let mut mean = [T::ZERO; COL_BLOCK];
        for row in x.chunks_exact(cols) {
            for (m, &v) in mean.iter_mut().zip(&row[c0..c0 + w]) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rf);
        let mut var = [T::ZERO; COL_BLOCK];
        for row in x.chunks_exact(cols) {
            for ((s, &v), &m) in var.iter_mut().zip(&row[c0..c0 + w]).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        for (j, slot) in o.iter_mut().enumerate() {
            *slot = (mean[j], var[j] / rf);
        }
    });
    out
}

/// Where the mean and scale of [`rows_grad_sums`] vary.
#[derive(Clone, Copy)]
enum Stats<'a, T> {
    /// One per column (batch norm over rows).
    PerColumn(&'a [T], &'a [T]),
    /// One per row (layer norm over each row).
    PerRow(&'a [T], &'a [T]),
}

/// Per-column `(Σ dy, Σ dy·(x − mean)·scale)` over a row-major
/// `[rows, cols]` pair, rows summed in order.
fn rows_grad_sums<T: Float>(x: &[T], dy: &[T], cols: usize, stats: Stats<'_, T>) -> Vec<(T, T)> {
    let mut out = vec![(T::ZERO, T::ZERO); cols];
    out.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, o)| {
        let c0 = b * COL_BLOCK;
        let w = o.len();
        let mut sdy = [T::ZERO; COL_BLOCK];
        let mut sdyx = [T::ZERO; COL_BLOCK];
        for (r, (xr, gr)) in x.chunks_exact(cols).zip(dy.chunks_exact(cols)).enumerate() {
            let (xr, gr) = (&xr[c0..c0 + w], &gr[c0..c0 + w]);
            match stats {
                Stats::PerColumn(mean, scale) => {
                    let (mean, scale) = (&mean[c0..c0 + w], &scale[c0..c0 + w]);
                    for j in 0..w {
                        let g = gr[j];
                        sdy[j] += g;
                        sdyx[j] += g * (xr[j] - mean[j]) * scale[j];
                    }
                }
                Stats::PerRow(mean, scale) => {
                    let (m, sc) = (mean[r], scale[r]);
                    for j in 0..w {
                        let g = gr[j];
                        sdy[j] += g;
                        sdyx[j] += g * (xr[j] - m) * sc;
                    }
                }
            }
        }
        for (j, slot) in o.iter_mut().enumerate() {
            *slot = (sdy[j], sdyx[j]);
        }
    });
    out
}

fn alloc_zeroed<T: Float>(len: usize) -> Vec<T> {
    vec![T::ZERO; len]
}

/// Conv2d forward over the batch in parallel. `out.cols` (length
/// `validate()?.batched_col_len`) receives the batch's column matrix
/// `[C_in·k·k, N·H_out·W_out]` and must be passed unchanged to
/// [`conv2d_backward_par`].
pub fn conv2d_forward_par<T: Float>(s: &Conv2dShape, x: &[T], p: ConvParams<'_, T>, out: ConvOut<'_, T>) -> Result<()> {
    let (ConvParams { w, bias }, ConvOut { y, cols }) = (p, out);
    let d = s.validate()?;
    conv::check_conv_args(&d, s, x, w, bias, y.len())?;
    check_len("conv2d batched columns", d.batched_col_len, cols.len())?;
    let ld = s.batch * d.out_hw;
    let (kh, kw) = (s.kernel_h, s.kernel_w);
    let in_img = s.in_channels * d.in_hw;
    cols.par_chunks_mut(ld).enumerate().for_each(|(row, dst)| {
        let (ci, k) = (row / (kh * kw), row % (kh * kw));
        let (ki, kj) = (k / kw, k % kw);
        for (n, out) in dst.chunks_exact_mut(d.out_hw).enumerate() {
            let plane = &x[n * in_img + ci * d.in_hw..n * in_img + (ci + 1) * d.in_hw];
            conv::im2col_row(s, &d, plane, ki, kj, out);
        }
    });
    let cols = &*cols;
    let out_img = s.out_channels * d.out_hw;
    if let (Some(cf), Some(wf)) = (T::as_f32(cols), T::as_f32(w)) {
        // f32: one GEMM per group of images over the batched columns, each
        // writing its images' NCHW blocks in place (weights packed once per
        // group, not once per image).
        let y32 = T::as_f32_mut(y).ok_or(Error::InvalidShape { what: "conv2d", reason: "mixed float types" })?;
        let per = s.batch.div_ceil(GEMM_BLOCKS);
        let wm = MatRef::row_major(wf, s.out_channels, d.col_rows)?;
        let cm = MatRef::row_major(cf, d.col_rows, ld)?;
        y32.par_chunks_mut(per * out_img).enumerate().try_for_each(|(g, y_grp)| {
            let imgs = y_grp.len() / out_img;
            let c0 = g * per * d.out_hw;
            let out = OutView::new(y_grp, s.out_channels, imgs * d.out_hw, d.out_hw, d.out_hw, out_img)?;
            sgemm(out, wm, cm.col_range(c0, c0 + imgs * d.out_hw)?, false)?;
            if let Some(b) = bias.and_then(T::as_f32) {
                for y_img in y_grp.chunks_exact_mut(out_img) {
                    conv::add_bias(y_img, b, d.out_hw);
                }
            }
            Ok(())
        })?;
        return Ok(());
    }
    let wm = MatRef::row_major(w, s.out_channels, d.col_rows)?;
    y.par_chunks_mut(out_img).enumerate().try_for_each(|(n, y_img)| {
        let cn = MatRef::new(&cols[n * d.out_hw..], d.col_rows, d.out_hw, ld, 1)?;
        gemm(MatMut::row_major(&mut *y_img, s.out_channels, d.out_hw)?, wm, cn, false)?;
        if let Some(b) = bias {
            conv::add_bias(y_img, b, d.out_hw);
        }
        Ok(())
    })
}

/// Conv2d backward over the batch in parallel, from the `cols` written by
/// [`conv2d_forward_par`]. Writes `dx` (if given); accumulates `dw`, `db`.
/// When `dx` is asked for, `cols` is overwritten (it holds the input
/// gradient's columns afterwards): the batch's columns are the largest
/// buffer of a step, and reusing them saves allocating another.
pub fn conv2d_backward_par<T: Float>(
    s: &Conv2dShape,
    cols: &mut [T],
    w: &[T],
    dy: &[T],
    g: ConvGrads<'_, T>,
) -> Result<()> {
    let ConvGrads { dx, dw, db } = g;
    let d = s.validate()?;
    check_len("conv2d batched columns", d.batched_col_len, cols.len())?;
    check_len("conv2d weight", d.weight_len, w.len())?;
    check_len("conv2d output gradient", d.out_len, dy.len())?;
    check_len("conv2d weight gradient", d.weight_len, dw.len())?;
    let ld = s.batch * d.out_hw;
    // dy as [C_out, N·HW], so dW is one long-K GEMM.
    let mut dy_t = alloc_zeroed::<T>(d.out_len);
    let out_img = s.out_channels * d.out_hw;
    dy_t.par_chunks_mut(ld).enumerate().for_each(|(co, row)| {
        for (n, dst) in row.chunks_exact_mut(d.out_hw).enumerate() {
            let o = n * out_img + co * d.out_hw;
            dst.copy_from_slice(&dy[o..o + d.out_hw]);
        }
    });
    if let Some(db) = db {
        check_len("conv2d bias gradient", s.out_channels, db.len())?;
        db.par_iter_mut().zip(dy_t.par_chunks(ld)).for_each(|(g, row)| *g += row.iter().copied().sum::<T>());
    }
    let dym = MatRef::row_major(&dy_t, s.out_channels, ld)?;
    let colst = MatRef::row_major(&*cols, d.col_rows, ld)?.t();
    par_gemm(dw, dym, colst, true)?;
    if let Some(dx) = dx {
        check_len("conv2d input gradient", d.in_len, dx.len())?;
        let in_img = s.in_channels * d.in_hw;
        if T::as_f32(w).is_some() {
            // f32: the batch's column gradient Wᵀ·dy in one GEMM (into
            // `cols`, no longer needed), then col2im image by image.
            let wt = MatRef::row_major(w, s.out_channels, d.col_rows)?.t();
            par_gemm(cols, wt, dym, false)?;
            let cols = &*cols;
            // Groups of images per task: each column row is read in runs of
            // a group's pixels rather than one image's.
            let per = COL2IM_GROUP;
            dx.par_chunks_mut(per * in_img).enumerate().for_each(|(g, dx_grp)| {
                dx_grp.fill(T::ZERO);
                conv::col2im_add(s, &d, cols, ld, g * per * d.out_hw, dx_grp);
            });
            return Ok(());
        }
        let scratch = if d.pointwise { 0 } else { d.col_len };
        dx.par_chunks_mut(in_img).zip(dy.par_chunks(out_img)).try_for_each_init(
            || alloc_zeroed::<T>(scratch),
            |dcols, (dx_img, dy_img)| conv::backward_data_image(s, &d, w, dy_img, dx_img, dcols),
        )?;
    }
    Ok(())
}

/// Linear forward in parallel: `y = x·Wᵀ (+ b)`.
pub fn linear_forward_par<T: Float>(s: &LinearShape, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) -> Result<()> {
    s.check(x.len(), w.len(), bias.map(<[T]>::len), y.len())?;
    let xm = MatRef::row_major(x, s.batch, s.in_features)?;
    let wt = MatRef::row_major(w, s.out_features, s.in_features)?.t();
    par_gemm(y, xm, wt, false)?;
    if let Some(b) = bias {
        y.par_chunks_mut(s.out_features).for_each(|row| linear::add_bias_rows(row, b));
    }
    Ok(())
}

/// Linear backward in parallel: `dx (+)= dy · W` (if given), accumulates
/// `dw` and `db`.
pub fn linear_backward_par<T: Float>(s: &LinearShape, x: &[T], w: &[T], dy: &[T], g: LinearGrads<'_, T>) -> Result<()> {
    let dym = s.check_backward(x, w, dy, &g)?;
    let LinearGrads { dx, dw, db } = g;
    if let Some((dx, accumulate)) = dx.map(InputGrad::parts) {
        par_gemm(dx, dym, MatRef::row_major(w, s.out_features, s.in_features)?, accumulate)?;
    }
    par_gemm(dw, dym.t(), MatRef::row_major(x, s.batch, s.in_features)?, true)?;
    if let Some(db) = db {
        check_len("linear bias gradient", s.out_features, db.len())?;
        col_sums_add(dy, db);
    }
    Ok(())
}

/// Train-mode batch norm forward in parallel (see
/// [`norm::batch_norm_train_forward`]).
pub fn batch_norm_train_forward_par<T: Float>(s: &NormShape, cfg: &BatchNormConfig, a: BnTrain<'_, T>) -> Result<()> {
    norm::check_bn_train_forward(s, cfg, &a)?;
    let BnTrain { x, scale_shift: ScaleShift { gamma, beta }, running, y, saved } = a;
    let (RunningStats { mean: running_mean, var: running_var }, SavedStats { mean: save_mean, invstd: save_invstd }) =
        (running, saved);
    let moments: Vec<(T, T)> = if s.spatial == 1 {
        rows_moments(x, s.channels)
    } else {
        (0..s.channels).into_par_iter().map(|c| norm::channel_moments(s, x, c)).collect()
    };
    norm::save_batch_stats(s, cfg, moments, [save_mean, save_invstd], [running_mean, running_var]);
    // y = x·a + b per channel.
    let (a, b): (Vec<T>, Vec<T>) =
        (0..s.channels).map(|c| norm::batch_scale_shift(gamma[c], beta[c], save_mean[c], save_invstd[c])).unzip();
    let (a, b) = (&a[..], &b[..]);
    let (c, sp) = (s.channels, s.spatial);
    if sp == 1 {
        // Rows `[R, C]`: vectorise across channels.
        y.par_chunks_mut(ELEMWISE_ROWS * c).zip(x.par_chunks(ELEMWISE_ROWS * c)).for_each(|(yb, xb)| {
            for (yr, xr) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
                for (((yv, &xv), &a), &b) in yr.iter_mut().zip(xr).zip(a).zip(b) {
                    *yv = xv * a + b;
                }
            }
        });
    } else {
        y.par_chunks_mut(c * sp)
            .zip(x.par_chunks(c * sp))
            .for_each(|(yi, xi)| norm::scale_shift_image(sp, xi, yi, |ch| (a[ch], b[ch])));
    }
    Ok(())
}

/// Train-mode batch norm backward in parallel.
pub fn batch_norm_train_backward_par<T: Float>(
    s: &NormShape,
    b: NormBackward<'_, T>,
    g: NormGrads<'_, T>,
) -> Result<()> {
    let NormBackward { x, dy, gamma, stats: SavedStats { mean: save_mean, invstd: save_invstd } } = b;
    let NormGrads { dx, dgamma, dbeta } = g;
    let len = s.validate()?;
    check_len("batch norm input", len, x.len())?;
    check_len("batch norm output gradient", len, dy.len())?;
    check_len("batch norm input gradient", len, dx.len())?;
    for (what, l) in [
        ("batch norm gamma", gamma.len()),
        ("batch norm save_mean", save_mean.len()),
        ("batch norm save_invstd", save_invstd.len()),
        ("batch norm gamma gradient", dgamma.len()),
        ("batch norm beta gradient", dbeta.len()),
    ] {
        check_len(what, s.channels, l)?;
    }
    let sums: Vec<(T, T)> = if s.spatial == 1 {
        rows_grad_sums(x, dy, s.channels, Stats::PerColumn(save_mean, save_invstd))
    } else {
        let channel_sums = |c| norm::channel_grad_sums(s, x, dy, c, save_mean[c], save_invstd[c]);
        (0..s.channels).into_par_iter().map(channel_sums).collect()
    };
    let coeffs: Vec<(T, T, T)> = sums
        .iter()
        .enumerate()
        .map(|(c, &(sdy, sdyx))| {
            dbeta[c] += sdy;
            dgamma[c] += sdyx;
            norm::bn_train_dx_coeffs(gamma[c], save_mean[c], save_invstd[c], sdy, sdyx, s.per_channel())
        })
        .collect();
    let (k1, (k2, k3)): (Vec<T>, (Vec<T>, Vec<T>)) = coeffs.iter().map(|&(a, b, c)| (a, (b, c))).unzip();
    let (k1, k2, k3) = (&k1[..], &k2[..], &k3[..]);
    let (c, sp) = (s.channels, s.spatial);
    if sp == 1 {
        // Rows `[R, C]`: vectorise across channels.
        let blk = ELEMWISE_ROWS * c;
        dx.par_chunks_mut(blk).zip(dy.par_chunks(blk).zip(x.par_chunks(blk))).for_each(|(db, (gb, xb))| {
            for ((dr, gr), xr) in db.chunks_exact_mut(c).zip(gb.chunks_exact(c)).zip(xb.chunks_exact(c)) {
                for (ch, ((d, &g), &xv)) in dr.iter_mut().zip(gr).zip(xr).enumerate() {
                    *d = k1[ch] * g + k2[ch] * xv + k3[ch];
                }
            }
        });
    } else {
        dx.par_chunks_mut(c * sp).zip(dy.par_chunks(c * sp).zip(x.par_chunks(c * sp))).for_each(|(di, (gi, xi))| {
            for (ch, ((dp, gp), xp)) in
                di.chunks_exact_mut(sp).zip(gi.chunks_exact(sp)).zip(xi.chunks_exact(sp)).enumerate()
            {
                norm::bn_train_dx_plane(dp, gp, xp, (k1[ch], k2[ch], k3[ch]));
            }
        });
    }
    Ok(())
}

/// Layer norm forward in parallel over images.
pub fn layer_norm_forward_par<T: Float>(s: &NormShape, eps: f64, a: LayerNormForward<'_, T>) -> Result<()> {
    norm::check_layer_norm_forward(s, eps, &a)?;
    let LayerNormForward { x, scale_shift, y, saved: SavedStats { mean, invstd: rstd } } = a;
    let img = s.channels * s.spatial;
    let e = T::from_f64(eps);
    y.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .zip(mean.par_chunks_mut(s.spatial))
        .zip(rstd.par_chunks_mut(s.spatial))
        .for_each(|(((y_img, x_img), m), r)| {
            norm::layer_norm_image(s, e, x_img, scale_shift, y_img, SavedStats { mean: m, invstd: r })
        });
    Ok(())
}

/// Layer norm backward in parallel: writes `dx`, accumulates `dgamma`, `dbeta`.
pub fn layer_norm_backward_par<T: Float>(s: &NormShape, b: NormBackward<'_, T>, g: NormGrads<'_, T>) -> Result<()> {
    norm::check_layer_norm_backward(s, &b, &g)?;
    let (NormBackward { x, dy, gamma, stats: SavedStats { mean, invstd: rstd } }, NormGrads { dx, dgamma, dbeta }) =
        (b, g);
    let img = s.channels * s.spatial;
    dx.par_chunks_mut(img)
        .zip(dy.par_chunks(img))
        .zip(x.par_chunks(img))
        .zip(mean.par_chunks(s.spatial).zip(rstd.par_chunks(s.spatial)))
        .for_each(|(((dx_img, dy_img), x_img), (m, r))| {
            norm::layer_norm_backward_image(s, x_img, dy_img, gamma, m, r, dx_img)
        });
    if s.spatial == 1 {
        for ((dg, db), (sdy, sdyx)) in
            dgamma.iter_mut().zip(dbeta.iter_mut()).zip(rows_grad_sums(x, dy, s.channels, Stats::PerRow(mean, rstd)))
        {
            *db += sdy;
            *dg += sdyx;
        }
    } else {
        dgamma.par_iter_mut().zip(dbeta.par_iter_mut()).enumerate().for_each(|(c, (dg, db))| {
            let (sdy, sdyx) = norm::layer_norm_param_sums(s, x, dy, mean, rstd, c);
            *db += sdy;
            *dg += sdyx;
        });
    }
    Ok(())
}

/// NCHW `[n, c, p]` → rows `[(n, p), c]`.
pub fn map_to_rows(map: &[f32], rows: &mut [f32], c: usize, p: usize) {
    rows.par_chunks_mut(p * c).zip(map.par_chunks(c * p)).for_each(|(r, m)| {
        for ch in 0..c {
            for pi in 0..p {
                r[pi * c + ch] = m[ch * p + pi];
            }
        }
    });
}

/// Rows `[(n, p), c]` → NCHW `[n, c, p]`.
pub fn rows_to_map(rows: &[f32], map: &mut [f32], c: usize, p: usize) {
    map.par_chunks_mut(c * p).zip(rows.par_chunks(p * c)).for_each(|(m, r)| {
        for ch in 0..c {
            for pi in 0..p {
                m[ch * p + pi] = r[pi * c + ch];
            }
        }
    });
}
