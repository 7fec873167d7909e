//! The 2-D map of Y in the report: the first two principal components,
//! from the covariance by power iteration with deflation. Deterministic
//! (fixed start vector, fixed iteration count), f64 throughout.

/// Rows projected on the first two principal axes, `[x, y]` per row, and
/// the fraction of the variance each axis explains.
pub struct Projection {
    /// One point per row.
    pub points: Vec<[f64; 2]>,
    /// Explained variance fraction of each axis.
    pub explained: [f64; 2],
}

const ITERATIONS: usize = 300;

/// The top-2 PCA projection of `n` rows of `dim` features. `None` if there
/// are fewer than 2 rows or no variance.
pub fn project(x: &[f32], dim: usize) -> Option<Projection> {
    if dim == 0 || x.len() < 2 * dim || !x.len().is_multiple_of(dim) {
        return None;
    }
    let n = x.len() / dim;
    let mut mean = vec![0f64; dim];
    for r in x.chunks_exact(dim) {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut cov = vec![0f64; dim * dim];
    let mut c = vec![0f64; dim];
    for r in x.chunks_exact(dim) {
        for (ci, (&v, m)) in c.iter_mut().zip(r.iter().zip(&mean)) {
            *ci = f64::from(v) - m;
        }
        for i in 0..dim {
            for j in i..dim {
                cov[i * dim + j] += c[i] * c[j];
            }
        }
    }
    for i in 0..dim {
        for j in i..dim {
            let v = cov[i * dim + j] / (n - 1) as f64;
            cov[i * dim + j] = v;
            cov[j * dim + i] = v;
        }
    }
    let total: f64 = (0..dim).map(|i| cov[i * dim + i]).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let mut axes: Vec<Vec<f64>> = Vec::new();
    let mut explained = [0.0; 2];
    for (k, e) in explained.iter_mut().enumerate() {
        // A start vector with a part along every axis.
        let mut v: Vec<f64> = (0..dim).map(|i| 1.0 + (i as f64 * 0.618_033_988_75).fract() + k as f64).collect();
        let mut lambda = 0.0;
        for _ in 0..ITERATIONS {
            for a in &axes {
                let d: f64 = v.iter().zip(a).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(a).for_each(|(x, y)| *x -= d * y);
            }
            let w: Vec<f64> = (0..dim).map(|i| (0..dim).map(|j| cov[i * dim + j] * v[j]).sum()).collect();
            let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            lambda = v.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() / v.iter().map(|a| a * a).sum::<f64>();
            v = w.into_iter().map(|x| x / norm).collect();
        }
        // A fixed sign: the largest component positive.
        let big = v.iter().copied().fold(0f64, |b, x| if x.abs() > b.abs() { x } else { b });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        *e = lambda / total;
        axes.push(v);
    }
    let points = x
        .chunks_exact(dim)
        .map(|r| {
            let p = |a: &[f64]| r.iter().zip(&mean).zip(a).map(|((&v, m), w)| (f64::from(v) - m) * w).sum();
            [p(&axes[0]), p(&axes[1])]
        })
        .collect();
    Some(Projection { points, explained })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points on known axes: a rotation of independent coordinates with
    /// standard deviations 5, 2, 0.5. The map must give back the first two
    /// coordinates (up to sign) and the variance shares 25/29.25, 4/29.25.
    #[test]
    fn recovers_known_axes_and_variance_shares() {
        let (c, s) = (0.6f64, 0.8f64);
        // Orthonormal axes in 3-D.
        let axes = [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]];
        let mut rows = Vec::new();
        let mut coords = Vec::new();
        // Every sign pattern equally often: exact zero means and exactly
        // uncorrelated coordinates.
        for _ in 0..50 {
            for mask in 0..8u32 {
                let sign = |bit: u32| if mask >> bit & 1 == 1 { 1.0 } else { -1.0 };
                let z = [5.0 * sign(0), 2.0 * sign(1), 0.5 * sign(2)];
                for col in 0..3 {
                    rows.push(z.iter().zip(&axes).map(|(zk, a)| zk * a[col]).sum::<f64>() as f32 + 10.0);
                }
                coords.push(z);
            }
        }
        let p = project(&rows, 3).unwrap();
        let var = [25.0, 4.0, 0.25];
        let tot: f64 = var.iter().sum();
        // The rows are f32: shares to its rounding.
        assert!((p.explained[0] - var[0] / tot).abs() < 1e-6, "{:?}", p.explained);
        assert!((p.explained[1] - var[1] / tot).abs() < 1e-6, "{:?}", p.explained);
        for k in 0..2 {
            let dot: f64 = p.points.iter().zip(&coords).map(|(a, z)| a[k] * z[k]).sum();
            let sign = dot.signum();
            let err = p.points.iter().zip(&coords).map(|(a, z)| (a[k] - sign * z[k]).abs()).fold(0.0, f64::max);
            assert!(err < 1e-3, "axis {k}: max error {err}");
        }
    }

    #[test]
    fn degenerate_inputs_give_no_map() {
        assert!(project(&[1.0, 2.0], 2).is_none(), "one row");
        assert!(project(&[1.0; 12], 3).is_none(), "no variance");
        assert!(project(&[1.0; 7], 3).is_none(), "ragged");
    }
}
