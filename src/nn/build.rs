//! Declaring units: each registers its tensors by name in the model's
//! parameter and buffer registries, in PyTorch's `state_dict` order.
//!
//! A registry is either the host's named table (`crate::params::ParamTable`)
//! or a [`Layout`], which only counts: the same declarations give the same
//! ids with no strings and no heap, so a device can compose units over a
//! model's flat buffers exactly as training lays them out.

use core::fmt::{Arguments, Display};

use super::{Affine, BatchNorm, BufferId, Conv2d, LayerNorm, Linear, Mlp, ParamId};

/// How a tensor starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// PyTorch's default for conv/linear weights and biases:
    /// U(−1/√fan_in, 1/√fan_in).
    FanIn(usize),
    /// All zeros (BN/LN beta, running mean).
    Zeros,
    /// All ones (BN/LN gamma, running variance).
    Ones,
    /// DIM's MI-head shortcut: U(−0.01, 0.01), then `w[c][c] = 1` for
    /// c < n_in (only when out ≥ n_in). Shape `[out, n_in]`.
    NearIdentity,
    /// N(0, std²).
    Normal(f64),
}

/// Where declared tensors go: appends one and returns its offset.
pub trait Registry {
    /// Appends a tensor of `shape`, named `name`, and returns its offset.
    fn push(&mut self, name: Arguments<'_>, shape: &[usize], init: Init) -> usize;
    /// Total element count so far.
    fn len(&self) -> usize;
    /// True when nothing is registered.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registry that only lays tensors out (offsets and lengths): `no_std`,
/// no heap, the same ids as the named table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    len: usize,
}

impl Layout {
    /// An empty layout.
    pub const fn new() -> Self {
        Self { len: 0 }
    }
}

impl Registry for Layout {
    fn push(&mut self, _name: Arguments<'_>, shape: &[usize], _init: Init) -> usize {
        let offset = self.len;
        self.len += shape.iter().product::<usize>();
        offset
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// The registry host code declares into by default: the named table.
#[cfg(feature = "train")]
pub type DefaultRegistry = super::ParamTable;
/// The registry host code declares into by default (without `train`, a
/// [`Layout`]).
#[cfg(not(feature = "train"))]
pub type DefaultRegistry = Layout;

/// Registers units' tensors into a parameter registry and a buffer registry.
#[derive(Debug)]
pub struct Builder<'t, R: Registry = DefaultRegistry> {
    params: &'t mut R,
    buffers: &'t mut R,
}

impl<'t, R: Registry> Builder<'t, R> {
    /// A builder appending to both registries.
    pub fn new(params: &'t mut R, buffers: &'t mut R) -> Self {
        Self { params, buffers }
    }

    /// A trainable tensor.
    pub fn param(&mut self, name: impl Display, shape: &[usize], init: Init) -> ParamId {
        let offset = self.params.push(format_args!("{name}"), shape, init);
        ParamId::new(offset, self.params.len() - offset)
    }

    /// A buffer (not trained, saved with the model).
    pub fn buffer(&mut self, name: impl Display, shape: &[usize], init: Init) -> BufferId {
        let offset = self.buffers.push(format_args!("{name}"), shape, init);
        BufferId::new(offset, self.buffers.len() - offset)
    }

    /// `{name}.weight` `[out, in]` (PyTorch's default init) and, with
    /// `bias`, `{name}.bias`.
    pub fn linear(&mut self, name: impl Display, in_f: usize, out_f: usize, bias: bool) -> Linear {
        self.linear_init(name, in_f, out_f, bias, Init::FanIn(in_f))
    }

    /// [`Builder::linear`] with another weight initialiser.
    pub fn linear_init(&mut self, name: impl Display, in_f: usize, out_f: usize, bias: bool, init: Init) -> Linear {
        let w = self.param(format_args!("{name}.weight"), &[out_f, in_f], init);
        let b = bias.then(|| self.param(format_args!("{name}.bias"), &[out_f], Init::FanIn(in_f)));
        Linear { in_f, out_f, w, b }
    }

    /// `{name}.weight` `[out, in, k, k]` and, with `bias`, `{name}.bias`;
    /// `window` is `[kernel, stride, padding]`.
    pub fn conv2d(
        &mut self,
        name: impl Display,
        in_shape: [usize; 3],
        out_c: usize,
        window: [usize; 3],
        bias: bool,
    ) -> Conv2d {
        let [kernel, stride, padding] = window;
        let fan_in = in_shape[0] * kernel * kernel;
        let w = self.param(format_args!("{name}.weight"), &[out_c, in_shape[0], kernel, kernel], Init::FanIn(fan_in));
        let b = bias.then(|| self.param(format_args!("{name}.bias"), &[out_c], Init::FanIn(fan_in)));
        Conv2d { in_shape, out_c, kernel, stride, padding, w, b }
    }

    /// `{name}.{weight,bias}` and the buffers `{name}.{running_mean,running_var}`.
    pub fn batch_norm(&mut self, name: impl Display, c: usize) -> BatchNorm {
        BatchNorm {
            c,
            gamma: self.param(format_args!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format_args!("{name}.bias"), &[c], Init::Zeros),
            rm: self.buffer(format_args!("{name}.running_mean"), &[c], Init::Zeros),
            rv: self.buffer(format_args!("{name}.running_var"), &[c], Init::Ones),
        }
    }

    /// `{name}.{weight,bias}`.
    pub fn layer_norm(&mut self, name: impl Display, c: usize) -> LayerNorm {
        LayerNorm {
            c,
            gamma: self.param(format_args!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format_args!("{name}.bias"), &[c], Init::Zeros),
        }
    }

    /// `{name}.{weight,bias}`, starting as the identity (γ 1, β 0).
    pub fn affine(&mut self, name: impl Display, c: usize) -> Affine {
        Affine {
            c,
            gamma: self.param(format_args!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format_args!("{name}.bias"), &[c], Init::Zeros),
        }
    }

    /// `{prefix}.l1` (no bias), `{prefix}.bn`, `{prefix}.l2` (bias).
    pub fn mlp(&mut self, prefix: impl Display, in_f: usize, hidden: usize, out_f: usize) -> Mlp {
        let l1 = self.linear(format_args!("{prefix}.l1"), in_f, hidden, false);
        let bn = self.batch_norm(format_args!("{prefix}.bn"), hidden);
        let l2 = self.linear(format_args!("{prefix}.l2"), hidden, out_f, true);
        Mlp { l1, bn, l2 }
    }
}
