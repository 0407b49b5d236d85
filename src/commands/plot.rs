//! `layerpar plot HISTORY.csv`: the history's curves as PREFIX.svg and PREFIX.png.

use crate::csvtable::Table;
use crate::plot::history::HistoryFigure;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The default prefix: the history's path without its extension.
pub fn default_prefix(history: &Path) -> PathBuf {
    history.with_extension("")
}

pub fn run(history: &Path, out: Option<&Path>) -> Result<()> {
    let prefix = out.map_or_else(|| default_prefix(history), Path::to_path_buf);
    super::data::require_output_dir(&prefix)?;
    let table = Table::read(history)?;
    let fig = HistoryFigure::new(&table, &history.display().to_string())?;
    let (svg, png) = crate::plot::write(&prefix, &fig)?;
    println!("wrote {} and {}", svg.display(), png.display());
    Ok(())
}
