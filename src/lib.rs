//! # layerpar — layer-parallel training of deep residual networks
//!
//! The library behind the `layerpar` binary: configuration, data loading, model construction,
//! the training driver, the scaling model (`scaling`: calibrate, predict), studies (`study`:
//! designed sets of runs and their summaries), plots (`plot`) and the commands.
//! The numerical pieces live in focused crates: `odenet` (the model and its adjoint), `optim`
//! (optimizers) and `layerpar-data` (data sets).

pub mod bench;
pub mod checkpointing;
pub mod commands;
pub mod config;
pub mod csvtable;
pub mod data;
pub mod hugepages;
pub mod limits;
pub mod model;
pub mod nested;
pub mod observers;
pub mod parallel;
pub mod plot;
pub mod rundir;
pub mod scaling;
pub mod signals;
pub mod study;
pub mod train;

/// Writes `error: MESSAGE` as one line to stderr in a single `write` call, so that under
/// `mpirun` (which forwards each rank's stderr) the line is never interleaved with the
/// launcher's own messages. Newlines inside the message become spaces.
pub fn print_error_line(message: &str) {
    use std::io::Write;
    let line = format!("error: {}\n", message.replace('\n', " "));
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}
