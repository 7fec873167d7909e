//! Declaring units: each registers its tensors by name in the model's
//! parameter and buffer tables, in PyTorch's `state_dict` order.

use super::{Affine, BatchNorm, BufferId, Conv2d, LayerNorm, Linear, Mlp, ParamId};
use crate::params::{Init, ParamTable};

/// Registers units' tensors into a parameter table and a buffer table.
#[derive(Debug)]
pub struct Builder<'t> {
    params: &'t mut ParamTable,
    buffers: &'t mut ParamTable,
}

impl<'t> Builder<'t> {
    /// A builder appending to both tables.
    pub fn new(params: &'t mut ParamTable, buffers: &'t mut ParamTable) -> Self {
        Self { params, buffers }
    }

    /// A trainable tensor.
    pub fn param(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> ParamId {
        let offset = self.params.push(name, shape, init);
        ParamId::new(offset, self.params.len() - offset)
    }

    /// A buffer (not trained, saved with the model).
    pub fn buffer(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> BufferId {
        let offset = self.buffers.push(name, shape, init);
        BufferId::new(offset, self.buffers.len() - offset)
    }

    /// `{name}.weight` `[out, in]` (PyTorch's default init) and, with
    /// `bias`, `{name}.bias`.
    pub fn linear(&mut self, name: &str, in_f: usize, out_f: usize, bias: bool) -> Linear {
        self.linear_init(name, in_f, out_f, bias, Init::FanIn(in_f))
    }

    /// [`Builder::linear`] with another weight initialiser.
    pub fn linear_init(&mut self, name: &str, in_f: usize, out_f: usize, bias: bool, init: Init) -> Linear {
        let w = self.param(format!("{name}.weight"), &[out_f, in_f], init);
        let b = bias.then(|| self.param(format!("{name}.bias"), &[out_f], Init::FanIn(in_f)));
        Linear { in_f, out_f, w, b }
    }

    /// `{name}.weight` `[out, in, k, k]` and, with `bias`, `{name}.bias`;
    /// `window` is `[kernel, stride, padding]`.
    pub fn conv2d(&mut self, name: &str, in_shape: [usize; 3], out_c: usize, window: [usize; 3], bias: bool) -> Conv2d {
        let [kernel, stride, padding] = window;
        let fan_in = in_shape[0] * kernel * kernel;
        let w = self.param(format!("{name}.weight"), &[out_c, in_shape[0], kernel, kernel], Init::FanIn(fan_in));
        let b = bias.then(|| self.param(format!("{name}.bias"), &[out_c], Init::FanIn(fan_in)));
        Conv2d { in_shape, out_c, kernel, stride, padding, w, b }
    }

    /// `{name}.{weight,bias}` and the buffers `{name}.{running_mean,running_var}`.
    pub fn batch_norm(&mut self, name: &str, c: usize) -> BatchNorm {
        BatchNorm {
            c,
            gamma: self.param(format!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format!("{name}.bias"), &[c], Init::Zeros),
            rm: self.buffer(format!("{name}.running_mean"), &[c], Init::Zeros),
            rv: self.buffer(format!("{name}.running_var"), &[c], Init::Ones),
        }
    }

    /// `{name}.{weight,bias}`.
    pub fn layer_norm(&mut self, name: &str, c: usize) -> LayerNorm {
        LayerNorm {
            c,
            gamma: self.param(format!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format!("{name}.bias"), &[c], Init::Zeros),
        }
    }

    /// `{name}.{weight,bias}`, starting as the identity (γ 1, β 0).
    pub fn affine(&mut self, name: &str, c: usize) -> Affine {
        Affine {
            c,
            gamma: self.param(format!("{name}.weight"), &[c], Init::Ones),
            beta: self.param(format!("{name}.bias"), &[c], Init::Zeros),
        }
    }

    /// `{prefix}.l1` (no bias), `{prefix}.bn`, `{prefix}.l2` (bias).
    pub fn mlp(&mut self, prefix: &str, in_f: usize, hidden: usize, out_f: usize) -> Mlp {
        let l1 = self.linear(&format!("{prefix}.l1"), in_f, hidden, false);
        let bn = self.batch_norm(&format!("{prefix}.bn"), hidden);
        let l2 = self.linear(&format!("{prefix}.l2"), hidden, out_f, true);
        Mlp { l1, bn, l2 }
    }
}
