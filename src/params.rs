//! The parameter table, by its older path: it is defined with the layer
//! vocabulary that declares into it ([`crate::nn::ParamTable`]).

pub use crate::nn::{Init, ParamEntry, ParamTable};
