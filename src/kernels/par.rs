//! Multicore drivers (feature `train`): the serial kernels of this module's
//! siblings, spread over the batch or over output blocks with rayon.
//!
//! One level of parallelism only: the GEMMs inside run single-threaded.
//! Work is cut into pieces that depend on the problem shape alone, never on
//! the thread count, and every reduction runs in a fixed order, so results
//! are bitwise identical for 1 and N threads.

use rayon::prelude::*;

use super::Float;
use super::conv::{self, Conv2dShape};
use super::gemm::{MatMut, MatRef, gemm};
use super::linear::{self, LinearShape};
use super::norm::{self, BatchNormConfig, NormShape};
use crate::error::{Error, Result, check_len};

/// How many blocks a parallel GEMM's output is cut into. Fixed (not the
/// thread count) so that results never depend on the machine's cores.
pub const GEMM_BLOCKS: usize = 4;

/// `C (+)= A·B` for a dense row-major `c` of `a.rows() × b.cols()`, cut into
/// [`GEMM_BLOCKS`] blocks. Cutting rows re-packs B once per block; cutting
/// columns re-packs A and goes through a temporary C block (write + copy).
/// The cheaper cut is taken, judged by those element counts alone, so the
/// choice (and the result) depends on the shape, never on the machine.
pub fn par_gemm<T: Float>(c: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) -> Result<()> {
    let (m, n) = (a.rows(), b.cols());
    let len = m.checked_mul(n).ok_or(Error::Overflow { what: "gemm output" })?;
    check_len("gemm output", len, c.len())?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let k = a.cols();
    let extra = GEMM_BLOCKS - 1;
    let row_cost = extra * k * n;
    let col_cost = extra * m * k + 2 * m * n;
    if row_cost <= col_cost {
        let rows = m.div_ceil(GEMM_BLOCKS);
        c.par_chunks_mut(rows * n).enumerate().try_for_each(|(i, chunk)| {
            let r0 = i * rows;
            let r1 = (r0 + rows).min(m);
            gemm(MatMut::row_major(chunk, r1 - r0, n)?, a.row_range(r0, r1)?, b, accumulate)
        })
    } else {
        let cols = n.div_ceil(GEMM_BLOCKS);
        let blocks = n.div_ceil(cols);
        let parts = (0..blocks)
            .into_par_iter()
            .map(|j| {
                let c0 = j * cols;
                let c1 = (c0 + cols).min(n);
                let mut part = alloc_zeroed(m * (c1 - c0));
                gemm(MatMut::row_major(&mut part, m, c1 - c0)?, a, b.col_range(c0, c1)?, false)?;
                Ok(part)
            })
            .collect::<Result<Vec<_>>>()?;
        c.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
            for (j, part) in parts.iter().enumerate() {
                let c0 = j * cols;
                let w = part.len() / m;
                let src = &part[i * w..(i + 1) * w];
                let dst = &mut row[c0..c0 + w];
                if accumulate {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d += s;
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        });
        Ok(())
    }
}

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

/// Per-column `(Σ dy, Σ dy·(x − mean)·scale)` over a row-major
/// `[rows, cols]` pair, where mean and scale may depend on row and column.
fn rows_grad_sums<T: Float, M, S>(x: &[T], dy: &[T], cols: usize, mean_of: &M, scale_of: &S) -> Vec<(T, T)>
where
    M: Fn(usize, usize) -> T + Sync,
    S: Fn(usize, usize) -> T + Sync,
{
    let mut out = vec![(T::ZERO, T::ZERO); cols];
    out.par_chunks_mut(COL_BLOCK).enumerate().for_each(|(b, o)| {
        let c0 = b * COL_BLOCK;
        let w = o.len();
        let mut sdy = [T::ZERO; COL_BLOCK];
        let mut sdyx = [T::ZERO; COL_BLOCK];
        for (r, (xr, gr)) in x.chunks_exact(cols).zip(dy.chunks_exact(cols)).enumerate() {
            for j in 0..w {
                let c = c0 + j;
                let g = gr[c];
                sdy[j] += g;
                sdyx[j] += g * (xr[c] - mean_of(r, c)) * scale_of(r, c);
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

/// Conv2d forward over the batch in parallel. `cols` (length
/// `validate()?.batched_col_len`) receives the batch's column matrix
/// `[C_in·k·k, N·H_out·W_out]` and must be passed unchanged to
/// [`conv2d_backward_par`].
pub fn conv2d_forward_par<T: Float>(
    s: &Conv2dShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    y: &mut [T],
    cols: &mut [T],
) -> Result<()> {
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
            conv::im2col_row(s, &d, plane, ki, kj, out, s.stride, s.padding);
        }
    });
    let cols = &*cols;
    let wm = MatRef::row_major(w, s.out_channels, d.col_rows)?;
    y.par_chunks_mut(s.out_channels * d.out_hw).enumerate().try_for_each(|(n, y_img)| {
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
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_par<T: Float>(
    s: &Conv2dShape,
    cols: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) -> Result<()> {
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
    let colst = MatRef::row_major(cols, d.col_rows, ld)?.t();
    par_gemm(dw, dym, colst, true)?;
    if let Some(dx) = dx {
        check_len("conv2d input gradient", d.in_len, dx.len())?;
        let in_img = s.in_channels * d.in_hw;
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

/// Linear backward in parallel: writes `dx`, accumulates `dw` and `db`.
pub fn linear_backward_par<T: Float>(
    s: &LinearShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) -> Result<()> {
    s.check(x.len(), w.len(), None, dy.len())?;
    check_len("linear weight gradient", w.len(), dw.len())?;
    let dym = MatRef::row_major(dy, s.batch, s.out_features)?;
    if let Some(dx) = dx {
        check_len("linear input gradient", x.len(), dx.len())?;
        par_gemm(dx, dym, MatRef::row_major(w, s.out_features, s.in_features)?, false)?;
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
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_forward_par<T: Float>(
    s: &NormShape,
    cfg: &BatchNormConfig,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    running_mean: &mut [T],
    running_var: &mut [T],
    y: &mut [T],
    save_mean: &mut [T],
    save_invstd: &mut [T],
) -> Result<()> {
    // Validate every length once through the serial kernel's checks on an
    // empty-work path: same shapes, same errors.
    let len = s.validate()?;
    check_len("batch norm input", len, x.len())?;
    check_len("batch norm output", len, y.len())?;
    for (what, l) in [
        ("batch norm gamma", gamma.len()),
        ("batch norm beta", beta.len()),
        ("batch norm running_mean", running_mean.len()),
        ("batch norm running_var", running_var.len()),
        ("batch norm save_mean", save_mean.len()),
        ("batch norm save_invstd", save_invstd.len()),
    ] {
        check_len(what, s.channels, l)?;
    }
    if !(cfg.eps.is_finite() && cfg.eps > 0.0) {
        return Err(Error::InvalidParameter { what: "norm eps", reason: "must be finite and > 0" });
    }
    if s.per_channel() < 2 {
        return Err(Error::InvalidShape {
            what: "batch norm (train)",
            reason: "needs more than one value per channel",
        });
    }
    let moments: Vec<(T, T)> = if s.spatial == 1 {
        rows_moments(x, s.channels)
    } else {
        (0..s.channels).into_par_iter().map(|c| norm::channel_moments(s, x, c)).collect()
    };
    for (c, &(mean, var)) in moments.iter().enumerate() {
        save_mean[c] = mean;
        save_invstd[c] = T::ONE / (var + T::from_f64(cfg.eps)).sqrt();
        norm::update_running(cfg, s.per_channel(), mean, var, &mut running_mean[c], &mut running_var[c]);
    }
    let (sm, si) = (&*save_mean, &*save_invstd);
    let img = s.channels * s.spatial;
    y.par_chunks_mut(img).zip(x.par_chunks(img)).for_each(|(y_img, x_img)| {
        for c in 0..s.channels {
            let a = gamma[c] * si[c];
            let b = beta[c] - sm[c] * a;
            let r = c * s.spatial..(c + 1) * s.spatial;
            for (yv, &xv) in y_img[r.clone()].iter_mut().zip(&x_img[r]) {
                *yv = xv * a + b;
            }
        }
    });
    Ok(())
}

/// Train-mode batch norm backward in parallel.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward_par<T: Float>(
    s: &NormShape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    save_mean: &[T],
    save_invstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> Result<()> {
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
    let coeffs: Vec<(T, T, T)> = if s.spatial == 1 {
        let mean_of = |_: usize, c: usize| save_mean[c];
        let scale_of = |_: usize, c: usize| save_invstd[c];
        rows_grad_sums(x, dy, s.channels, &mean_of, &scale_of).into_iter().map(|(a, b)| (a, b, T::ZERO)).collect()
    } else {
        (0..s.channels)
            .into_par_iter()
            .map(|c| {
                let (sdy, sdyx) = norm::channel_grad_sums(s, x, dy, c, save_mean[c], save_invstd[c]);
                (sdy, sdyx, T::ZERO)
            })
            .collect()
    };
    let coeffs: Vec<(T, T, T)> = coeffs
        .iter()
        .enumerate()
        .map(|(c, &(sdy, sdyx, _))| {
            dbeta[c] += sdy;
            dgamma[c] += sdyx;
            norm::bn_train_dx_coeffs(gamma[c], save_mean[c], save_invstd[c], sdy, sdyx, s.per_channel())
        })
        .collect();
    let img = s.channels * s.spatial;
    dx.par_chunks_mut(img).zip(dy.par_chunks(img)).zip(x.par_chunks(img)).for_each(|((dx_img, dy_img), x_img)| {
        for (c, &(k1, k2, k3)) in coeffs.iter().enumerate() {
            let r = c * s.spatial..(c + 1) * s.spatial;
            for ((d, &g), &xv) in dx_img[r.clone()].iter_mut().zip(&dy_img[r.clone()]).zip(&x_img[r]) {
                *d = k1 * g + k2 * xv + k3;
            }
        }
    });
    Ok(())
}

/// Layer norm forward in parallel over images.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward_par<T: Float>(
    s: &NormShape,
    eps: f64,
    x: &[T],
    gamma: &[T],
    beta: &[T],
    y: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
) -> Result<()> {
    let len = s.validate()?;
    check_len("layer norm input", len, x.len())?;
    check_len("layer norm output", len, y.len())?;
    check_len("layer norm gamma", s.channels, gamma.len())?;
    check_len("layer norm beta", s.channels, beta.len())?;
    check_len("layer norm mean", s.locations(), mean.len())?;
    check_len("layer norm rstd", s.locations(), rstd.len())?;
    if !(eps.is_finite() && eps > 0.0) {
        return Err(Error::InvalidParameter { what: "norm eps", reason: "must be finite and > 0" });
    }
    let img = s.channels * s.spatial;
    let e = T::from_f64(eps);
    y.par_chunks_mut(img)
        .zip(x.par_chunks(img))
        .zip(mean.par_chunks_mut(s.spatial))
        .zip(rstd.par_chunks_mut(s.spatial))
        .for_each(|(((y_img, x_img), m), r)| norm::layer_norm_image(s, e, x_img, gamma, beta, y_img, m, r));
    Ok(())
}

/// Layer norm backward in parallel: writes `dx`, accumulates `dgamma`, `dbeta`.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_par<T: Float>(
    s: &NormShape,
    x: &[T],
    dy: &[T],
    gamma: &[T],
    mean: &[T],
    rstd: &[T],
    dx: &mut [T],
    dgamma: &mut [T],
    dbeta: &mut [T],
) -> Result<()> {
    let len = s.validate()?;
    check_len("layer norm input", len, x.len())?;
    check_len("layer norm output gradient", len, dy.len())?;
    check_len("layer norm input gradient", len, dx.len())?;
    check_len("layer norm gamma", s.channels, gamma.len())?;
    check_len("layer norm gamma gradient", s.channels, dgamma.len())?;
    check_len("layer norm beta gradient", s.channels, dbeta.len())?;
    check_len("layer norm mean", s.locations(), mean.len())?;
    check_len("layer norm rstd", s.locations(), rstd.len())?;
    let img = s.channels * s.spatial;
    dx.par_chunks_mut(img)
        .zip(dy.par_chunks(img))
        .zip(x.par_chunks(img))
        .zip(mean.par_chunks(s.spatial).zip(rstd.par_chunks(s.spatial)))
        .for_each(|(((dx_img, dy_img), x_img), (m, r))| {
            norm::layer_norm_backward_image(s, x_img, dy_img, gamma, m, r, dx_img)
        });
    if s.spatial == 1 {
        let mean_of = |r: usize, _: usize| mean[r];
        let scale_of = |r: usize, _: usize| rstd[r];
        for ((dg, db), (sdy, sdyx)) in
            dgamma.iter_mut().zip(dbeta.iter_mut()).zip(rows_grad_sums(x, dy, s.channels, &mean_of, &scale_of))
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
