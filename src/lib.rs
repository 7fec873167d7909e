//! # infomax
//!
//! Deep InfoMax (Hjelm et al., ICLR 2019) for multicore CPUs, with an
//! inference path that runs without `std` or a heap.
//!
//! The crate is layered so that imports only point downward:
//! - [`kernels`]: `no_std`, allocation-free numeric kernels, each a
//!   forward/backward pair over plain slices (conv2d, linear, batch and
//!   layer norm, activations, pooling, losses, GEMM).
//! - [`kernels::par`] (feature `parallel`): the same kernels spread over
//!   the batch with rayon, bitwise identical for any thread count.
//! - [`nn`]: the layer vocabulary (linear, conv, norms, MLP) over typed
//!   parameter ids; [`model`]: the encoder's one description.
//! - [`infer`]: `no_std`, allocation-free inference of an exported encoder
//!   (safetensors reader, [`infer::Plan`], `encode`).
//! - feature `train`: [`dim`], [`train`], [`eval`], [`data`], [`io`].
//!
//! Features: `std`, `parallel` (rayon), `train` (the training stack) and
//! `cli` (the binary's argument parsing and progress bars); all default.
//! `cargo build --no-default-features` builds the `no_std` core.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_op_in_unsafe_fn)]

pub mod bounds;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "train")]
pub mod data;
#[cfg(feature = "train")]
pub mod dim;
pub mod error;
#[cfg(feature = "train")]
pub mod eval;
#[cfg(feature = "train")]
pub mod files;
#[cfg(feature = "train")]
pub mod host_error;
pub mod infer;
#[cfg(feature = "train")]
pub mod io;
pub mod kernels;
pub mod model;
pub mod nn;
pub mod optim;
#[cfg(feature = "train")]
pub mod params;
#[cfg(feature = "train")]
pub mod report;
pub mod rng;
#[cfg(feature = "train")]
pub mod sha256;
#[cfg(feature = "train")]
pub mod train;

pub use error::{Error, Result};
#[cfg(feature = "train")]
pub use host_error::HostError;
