//! # odenet — residual networks as discretized ODEs
//!
//! A residual network is forward Euler on u' = σ(K(t)u + b(t)) over [0, T] with N steps:
//! U_{n+1} = U_n + h σ(K_n U_n + b_n 1ᵀ), h = T/N. This crate holds the model: activations,
//! the parameter layout, the layer step and its adjoint (the kernels an MGRIT solver calls),
//! the classifier losses, and the objective J(θ) with its exact discrete-adjoint gradient.
//!
//! A [`Chain`] strings such networks together, each block's last state the next block's
//! input (pooled and changed in channels by the next block's opening).
//!
//! Layout conventions: a batch is a column-major matrix with one example per column, so the
//! state U is w × B and a dense step is one GEMM.

pub mod activation;
pub mod chain;
pub mod conv;
pub mod fused;
pub mod hidden;
pub mod layer;
pub mod layout;
pub mod linalg;
pub mod loss;
pub mod network;

pub use activation::Activation;
pub use chain::{Chain, ChainWorkspace};
pub use conv::{Conv, Conv2d, ConvStep, Pool};
pub use hidden::{Hidden, HiddenStep};
pub use layer::{Dense, DenseStep, Layer, Scratch, Step};
pub use layout::{Closing, ConvShape, Layout, Opening, Readout, Shape, Transition};
pub use loss::{Loss, Targets};
pub use network::{Network, ObjectiveValue, Regularization, Workspace};

#[cfg(test)]
mod chain_tests;
#[cfg(test)]
mod gradient_tests;
