//! # checkpoint — layerpar's HDF5 checkpoint files
//!
//! One file holds everything a run needs to continue bit for bit, independent of the number
//! of ranks that wrote it:
//!
//! | where | what |
//! |---|---|
//! | attributes | `format_version`, `layerpar_version`, `iteration`, `level`, `input_dim`, `width`, `classes`, `layers`, `hidden_sets`, `opening_params`, `classifier_params` and `time_scale` (0 or 1; absent in older files: 1 and 0), `config` (resolved TOML), `optimizer`, `checksum`, `version_checksum`; a convolutional network adds `conv_in_channels`, `conv_channels`, `conv_height`, `conv_width`, `conv_kernel_h`, `conv_kernel_w` and `conv_global_average` (0: flatten read-out, 1: global average pooling), and a block opening with a transition `transition_pool` (`none`, `average`, `max`), `transition_in_height`, `transition_in_width`; a chain of ODE blocks adds `chain_blocks` (B ≥ 2) and `chain_params` (the whole θ's length) |
//! | `parameters/` | `opening_weight` (w × d_in), `opening_bias` (w), `hidden_weight` (S × w × w), `hidden_bias` (S × w), `classifier_weight` (C × w), `classifier_bias` (C), `time_scale` (1, only with a learnable time scale), row-major as the math writes them; S = `hidden_sets` (N layers, or M spline coefficient sets); the opening and classifier arrays have 0 rows when those layers have no parameters. A convolutional network: `opening_weight` (c × c_in × k_h × k_w), `opening_bias` (c), `hidden_weight` (S × c × c × k_h × k_w), `hidden_bias` (S × c), `classifier_weight` (C × F), F the read-out's features |
//! | `block1/`, `block2/`, … | a chain's later blocks: each block's shape attributes (as the root's, none optional) and its parameter arrays (as in `parameters/`); θ and the optimizer vectors are the blocks' θ in block order, the root's shape is block 0's |
//! | `optimizer/` | `lbfgs_s`, `lbfgs_y` (pairs × n), `adam_m`, `adam_v`, `sgd_velocity` (n), attribute `adam_t` — vectors in the global parameter order |
//! | `rng/` | `seed` (32 bytes), `stream`, `word_pos` (2 × u64: high, low), `batch_order` |
//! | `history/` | `values` (rows × columns, NaN for an empty cell), attribute `columns` |
//!
//! Files are written to a temporary name beside the target, flushed and closed with every
//! error checked, re-opened and verified, synced, renamed over it, and the directory is
//! synced: a crash or a full disk leaves the previous file intact. Reading refuses anything but
//! a regular file, and checks the version, the type and shape of every attribute and array
//! (against the file's size before allocating) and the checksums (FNV-1a over the config text
//! and every array; `version_checksum` also over `layerpar_version`), and reports a damaged
//! file as an error that names it. Before HDF5 parses a file (the library can crash on a
//! damaged one), a checksum of the whole file, kept in its 512-byte userblock, is checked.

mod error;
mod format;
pub mod fsio;
mod read;
mod seal;
mod write;

pub use error::{hdf5_error_line, CheckpointError};
pub use format::{
    check_chain, Checkpoint, History, NetShape, OptimizerState, RngState, FORMAT_VERSION,
};
pub use fsio::replace_file;
pub use read::read;
pub use write::write;

#[cfg(test)]
mod tests;
