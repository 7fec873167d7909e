//! The parameter table: one list of (name, shape, offset, init) that drives
//! initialisation, the optimiser, checkpoints, export and tests. Tensors
//! live in one flat buffer; nothing else spells a tensor name.

use std::string::String;
use std::vec::Vec;

use crate::rng::Rng;

use super::{Init, Registry};

/// One tensor of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamEntry {
    /// PyTorch-style dotted name, e.g. `encoder.conv1.weight`.
    pub name: String,
    /// Shape in PyTorch layout (conv OIHW, linear `[out, in]`).
    pub shape: Vec<usize>,
    /// Start in the flat buffer.
    pub offset: usize,
    /// Element count.
    pub len: usize,
    /// Initialiser.
    pub init: Init,
}

impl ParamEntry {
    /// The element range in the flat buffer.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// An ordered table of tensors over one flat buffer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamTable {
    entries: Vec<ParamEntry>,
    len: usize,
}

impl Registry for ParamTable {
    fn push(&mut self, name: core::fmt::Arguments<'_>, shape: &[usize], init: Init) -> usize {
        ParamTable::push(self, std::fmt::format(name), shape, init)
    }
    fn len(&self) -> usize {
        self.len
    }
}

impl ParamTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor and returns its offset.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize], init: Init) -> usize {
        let len = shape.iter().product();
        let offset = self.len;
        self.entries.push(ParamEntry { name: name.into(), shape: shape.to_vec(), offset, len, init });
        self.len += len;
        offset
    }

    /// Total element count.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All tensors, in order.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// Fills `buf` by each tensor's initialiser. Every tensor draws from its
    /// own stream of `seed` (by table position), so adding a tensor at the
    /// end never changes the others.
    pub fn init(&self, buf: &mut [f32], seed: u64) {
        for (i, e) in self.entries.iter().enumerate() {
            let mut rng = Rng::derive(seed, i as u64 + 1);
            let dst = &mut buf[e.range()];
            match e.init {
                Init::FanIn(fan_in) => {
                    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                    dst.iter_mut().for_each(|v| *v = rng.uniform_in(-bound, bound) as f32);
                }
                Init::Zeros => dst.fill(0.0),
                Init::Ones => dst.fill(1.0),
                Init::Normal(std) => dst.iter_mut().for_each(|v| *v = (rng.normal() * std) as f32),
                Init::NearIdentity => {
                    dst.iter_mut().for_each(|v| *v = rng.uniform_in(-0.01, 0.01) as f32);
                    let (out, n_in) = (e.shape[0], e.shape[1]);
                    if out >= n_in {
                        for c in 0..n_in {
                            dst[c * n_in + c] = 1.0;
                        }
                    }
                }
            }
        }
    }
}
