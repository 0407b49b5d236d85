//! `layerpar config`: the full default configuration as commented TOML, or a resolved one.

use crate::config::{load, DEFAULT_TOML};
use anyhow::Result;
use std::path::PathBuf;

pub fn run(config: Option<PathBuf>, set: &[String], resolved: bool) -> Result<()> {
    if resolved || config.is_some() || !set.is_empty() {
        let c = load(config.as_deref(), set)?;
        print!("{}", c.to_toml());
    } else {
        print!("{DEFAULT_TOML}");
    }
    Ok(())
}
