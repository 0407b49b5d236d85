//! # layerpar — layer-parallel training of deep residual networks
//!
//! The library behind the `layerpar` binary: configuration, data loading, model construction,
//! the training driver and the commands. The numerical pieces live in focused crates:
//! `odenet` (the model and its adjoint), `optim` (optimizers) and `layerpar-data` (data sets).

pub mod checkpointing;
pub mod commands;
pub mod config;
pub mod data;
pub mod distributed;
pub mod model;
pub mod parallel;
pub mod signals;
pub mod train;
