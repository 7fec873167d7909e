//! Numeric kernels over plain slices. `no_std`, no heap: everything here
//! runs on a microcontroller as well as in the trainer.
//!
//! Every op is a `*_forward` / `*_backward` pair. Backward passes write the
//! input gradient and *accumulate* parameter gradients (llm.c style), so one
//! flat gradient buffer can be zeroed once per step.
//!
//! Layout: activations are NCHW, weights are PyTorch's (conv OIHW, linear
//! `[out, in]`). See `docs/kernels.md` for why.

pub mod act;
pub mod conv;
pub mod convert;
pub mod cpu;
mod float;
pub mod fold;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod norm;
#[cfg(feature = "parallel")]
pub mod par;
pub mod pool;

pub use act::{
    dropout_backward, dropout_forward, relu_backward, relu_forward, relu_inplace, sigmoid, sigmoid_backward,
    sigmoid_forward,
};
pub use conv::{Conv2dShape, ConvDims, ConvGrads, ConvOut, ConvParams, conv2d_backward, conv2d_forward};
pub use float::Float;
pub use fold::{FoldShape, UnfoldDims, UnfoldShape, fold_backward, fold_forward, unfold_backward, unfold_forward};
pub use gemm::{Backend, MatMut, MatRef, gemm, gemm_with};
pub use linear::{InputGrad, LinearGrads, LinearShape, dot, dot4, linear_backward, linear_forward};
pub use loss::{
    RowsShape, cross_entropy_backward, cross_entropy_forward, log_softmax_backward, log_softmax_forward, log_sum_exp,
    log_sum_exp_backward, log_sum_exp_forward, softplus, softplus_backward, softplus_forward,
};
pub use norm::{
    BN_MOMENTUM, BatchNormConfig, BnTrain, LayerNormForward, NORM_EPS, NormBackward, NormGrads, NormShape,
    RunningStats, SavedStats, ScaleShift, batch_norm_eval_backward, batch_norm_eval_forward, batch_norm_train_backward,
    batch_norm_train_forward, layer_norm_backward, layer_norm_forward,
};
pub use pool::{MaxPoolShape, max_pool_backward, max_pool_forward, max_pool_forward_values};
