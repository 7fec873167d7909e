//! Upper bounds on the activation memory of an encoder and a DIM model at
//! a batch size, from the model description alone (no allocation), so a
//! command can refuse a config that would not fit before it allocates.
//!
//! Each bound follows the buffers the layers allocate (pre-activation,
//! activation, im2col columns, pool indices, and in training their
//! gradients), rounded up; `tests/memory_plan.rs` checks every preset and
//! variant against the bytes really allocated: never under, and at most
//! a small factor over. u128 with saturation: no config can overflow it.

use crate::dim::config::{DimConfig, EncoderConfig, HeadKind, Layer};
use crate::error::Result;

fn u(v: usize) -> u128 {
    v as u128
}

fn prod(s: [usize; 3]) -> u128 {
    u(s[0]).saturating_mul(u(s[1])).saturating_mul(u(s[2]))
}

/// Floats of one conv (+BN, ReLU, pool) layer per sample: `pre` values
/// before the pool, `cols` im2col columns, `out` after the pool.
fn conv_floats(pre: u128, cols: u128, out: u128, pool: bool, train: bool) -> u128 {
    // z, a, and one more for the small buffers (BN statistics, the Y
    // layer's); pooled + argmax (8-byte indices: two floats each).
    let mut f = pre.saturating_mul(3).saturating_add(cols);
    if pool {
        f = f.saturating_add(out.saturating_mul(3));
    }
    if train {
        // d_out, d_a, dz.
        f = f.saturating_add(out).saturating_add(pre.saturating_mul(2));
    }
    f
}

/// One conv with kernel `k`, stride `s`, padding `p` from `inp`: (values
/// before any pool, im2col columns) per sample.
fn conv_sizes(inp: [usize; 3], oc: usize, k: usize, s: usize, p: usize) -> (u128, u128) {
    let side = |x: usize| ((x.saturating_add(p.saturating_mul(2)).saturating_sub(k)) / s.max(1)).saturating_add(1);
    let hw = u(side(inp[1])).saturating_mul(u(side(inp[2])));
    (u(oc).saturating_mul(hw), u(inp[0]).saturating_mul(u(k)).saturating_mul(u(k)).saturating_mul(hw))
}

impl EncoderConfig {
    /// An upper bound on the activation floats of `n` images (training
    /// keeps gradients too).
    pub fn activation_floats(&self, n: usize, train: bool) -> Result<u128> {
        let (io, grid) = self.layer_io()?;
        let crops = grid.map_or(1, |(r, c)| u(r).saturating_mul(u(c)));
        let mut per_image = 0u128;
        for (i, (layer, &(inp, out))) in self.layers.iter().zip(&io).enumerate() {
            let f = match *layer {
                Layer::Conv { out: oc, kernel, stride, padding, pool, .. } => {
                    let (pre, cols) = conv_sizes(inp, oc, kernel, stride, padding);
                    conv_floats(pre, cols, prod(out), pool, train)
                }
                Layer::Linear { out: o, .. } => conv_floats(u(o), 0, u(o), false, train),
                Layer::Bottleneck { planes, stride } => {
                    let mid = [planes, out[1], out[2]];
                    let (p1, c1) = conv_sizes(inp, planes, 1, 1, 0);
                    let (p2, c2) = conv_sizes([planes, inp[1], inp[2]], planes, 3, stride, 1);
                    let (p3, c3) = conv_sizes(mid, out[0], 1, 1, 0);
                    let (ps, cs) = conv_sizes(inp, out[0], 1, stride, 0);
                    let inner = [(p1, c1), (p2, c2), (p3, c3), (ps, cs)]
                        .into_iter()
                        .fold(0u128, |t, (p, c)| t.saturating_add(conv_floats(p, c, p, false, train)));
                    // a, d_out, dx_short.
                    inner.saturating_add(prod(out).saturating_mul(2)).saturating_add(prod(inp))
                }
            };
            let per_crop = self.fold.is_some_and(|fd| i <= fd.layer);
            per_image = per_image.saturating_add(if per_crop { f.saturating_mul(crops) } else { f });
            if let Some(fd) = self.fold.filter(|fd| fd.layer == i) {
                // The crops, the folded map and its gradient.
                let crop_in = u(self.input[0]).saturating_mul(u(fd.crop)).saturating_mul(u(fd.crop));
                per_image = per_image
                    .saturating_add(crop_in.saturating_mul(crops))
                    .saturating_add(prod(out).saturating_mul(crops).saturating_mul(2));
            }
        }
        per_image = per_image.saturating_add(conv_floats(u(self.y_dim), 0, u(self.y_dim), false, train));
        Ok(per_image.saturating_mul(u(n)))
    }
}

impl DimConfig {
    /// An upper bound on the floats of a training workspace of `n` images
    /// (`Dim::workspace(n)`): the encoder's activations (twice with
    /// occlusion), the local and global MI heads, and the n×n score
    /// matrices.
    pub fn workspace_floats(&self, n: usize) -> Result<u128> {
        let enc = self.validate()?;
        let (io, _) = enc.layer_io()?;
        let [c, h, w] = io.get(enc.local_layer).map_or([0; 3], |&(_, out)| out);
        let p = u(h).saturating_mul(u(w));
        let (n_, d) = (u(n), u(self.mi_units));
        let k = match &self.globals {
            Some(_) => u(h.saturating_sub(2)).saturating_mul(u(w.saturating_sub(2))).max(1),
            None => 1,
        };
        let mut f = enc.activation_floats(n, true)?;
        if self.occlusion.is_some() {
            f = f.saturating_mul(2);
        }
        // Local rows and their gradients; the local head's MLP over every
        // location (c → D → D: about ten buffers of D per row).
        let rows = n_.saturating_mul(p);
        f = f.saturating_add(rows.saturating_mul(u(c)).saturating_mul(3));
        let head_width = match self.head {
            HeadKind::Dot => d.saturating_mul(10),
            HeadKind::Concat => d.saturating_add(u(c)).saturating_add(u(enc.y_dim)).saturating_mul(12),
        };
        f = f.saturating_add(rows.saturating_mul(head_width));
        // Globals: the multi-global conv stack over the local map, the
        // global head's MLP per global, Y's gradients.
        if self.globals.is_some() {
            f = f.saturating_add(rows.saturating_mul(u(c)).saturating_mul(12));
        }
        f = f.saturating_add(n_.saturating_mul(k).saturating_mul(d).saturating_mul(12));
        f = f.saturating_add(n_.saturating_mul(u(enc.y_dim)).saturating_mul(8));
        // Global DIM: its conv tower over the local map, its MLPs, n×n
        // scores. Prior matching: the 1000–200 discriminator, twice (real
        // and prior samples), with gradients.
        if self.alpha > 0.0 {
            f = f.saturating_add(rows.saturating_mul(u(c)).saturating_mul(12));
            f = f
                .saturating_add(n_.saturating_mul(d).saturating_mul(16))
                .saturating_add(n_.saturating_mul(n_).saturating_mul(2));
        }
        if self.gamma > 0.0 {
            f = f.saturating_add(n_.saturating_mul(1200 * 8));
        }
        // Scores and their gradients: every image's globals against every
        // image's locations.
        let scores = n_.saturating_mul(k).saturating_mul(n_).saturating_mul(p);
        Ok(f.saturating_add(scores.saturating_mul(2)))
    }
}
