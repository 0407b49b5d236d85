//! A small reader of the CSV files layerpar writes (histories, study tables): a header line
//! and rows of comma-separated cells, read by column name. An empty cell is a missing value.

use anyhow::{bail, Context, Result};
use std::path::Path;

/// A CSV table: its column names and rows of cells.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses CSV text: the first line names the columns; every row must have that many cells.
    pub fn parse(text: &str, origin: &str) -> Result<Table> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else {
            bail!("{origin} is empty (no header line)");
        };
        let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let cells: Vec<String> = line.split(',').map(|c| c.trim().to_string()).collect();
            if cells.len() != columns.len() {
                bail!(
                    "{origin}, line {}: {} cells under {} columns",
                    i + 2,
                    cells.len(),
                    columns.len()
                );
            }
            rows.push(cells);
        }
        Ok(Table { columns, rows })
    }

    pub fn read(path: &Path) -> Result<Table> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Table::parse(&text, &path.display().to_string())
    }

    /// The index of column `name`.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// Cell `name` of row `row` (None for a missing column or an empty cell).
    pub fn cell(&self, row: usize, name: &str) -> Option<&str> {
        let i = self.index(name)?;
        self.rows
            .get(row)
            .map(|r| r[i].as_str())
            .filter(|c| !c.is_empty())
    }

    /// Cell `name` of row `row` as a number (None when missing, empty or not a number).
    pub fn number(&self, row: usize, name: &str) -> Option<f64> {
        self.cell(row, name).and_then(|c| c.parse().ok())
    }

    /// Column `name` as numbers, one entry per row (None where a cell is empty); None if the
    /// table has no such column.
    pub fn numbers(&self, name: &str) -> Option<Vec<Option<f64>>> {
        self.index(name)?;
        Some((0..self.rows.len()).map(|r| self.number(r, name)).collect())
    }

    /// Whether column `name` exists and has at least one number.
    pub fn has_values(&self, name: &str) -> bool {
        self.numbers(name)
            .is_some_and(|v| v.iter().any(|x| x.is_some_and(f64::is_finite)))
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn cells_are_read_by_name_and_empty_cells_are_missing() {
        let t = Table::parse("iter,loss,fwd_res\n0,1.5,\n1,0.5,2e-3\n", "h.csv").unwrap();
        assert_eq!(t.number(1, "loss"), Some(0.5));
        assert_eq!(t.number(0, "fwd_res"), None);
        assert_eq!(t.numbers("fwd_res").unwrap(), vec![None, Some(2e-3)]);
        assert!(t.numbers("val_loss").is_none());
        assert!(t.has_values("fwd_res") && !t.has_values("val_loss"));
        let e = Table::parse("a,b\n1\n", "x.csv").unwrap_err().to_string();
        assert_eq!(e, "x.csv, line 2: 1 cells under 2 columns");
        assert!(Table::parse("", "e.csv").is_err());
    }
}
