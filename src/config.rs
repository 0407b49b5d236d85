//! The run configuration: TOML sections `[data] [network] [controls] [mgrit] [optimizer]
//! [output] [nested] [parallel]` and a top-level `seed`, with `--set section.key=value` overrides.
//!
//! Loading checks every key against the defaults before anything runs: an unknown key, a value
//! of the wrong type and an out-of-range value each get a one-line error that names the key.

mod check;
mod load;
mod schema;

pub(crate) use load::parse_toml;
pub use load::{load, load_str};
pub use schema::{
    BatchStart, BlockConfig, Choice, Config, ControlsConfig, ControlsKind, DataConfig, DataKind,
    Interp, MgritConfig, NestedConfig, NetworkConfig, NetworkKind, Normalize, OptimizerConfig,
    OptimizerKind, OutputConfig, ParallelConfig, Progress, ScheduleKind, TargetMeasure,
};

/// The commented default configuration printed by `layerpar config`. A test checks that it
/// parses to exactly [`Config::default`] and mentions every key.
pub const DEFAULT_TOML: &str = include_str!("default_config.toml");

#[cfg(test)]
mod tests;
