//! Data files: HDF5 and CSV, read with validation and written atomically.
//!
//! HDF5 layout: groups `train` and (optionally) `val`, each with `features` (n × d, f64) and
//! either `labels` (n, integer; classification) or `targets` (n × m or n, f64; regression);
//! for labels a root attribute `classes` (optional: else max label + 1). Image data: an
//! optional integer attribute `image_shape` = [channels, height, width] on `train/features`
//! (or the group `train`, or the file), whose product must be d; features are then stored
//! \[channel\]\[row\]\[col\] per example (see [`crate::ImageShape`]).
//!
//! CSV layout: a header row; a column `label` (classification) or one or more columns whose
//! names start with `target` (regression: `target`, or `target0`, `target1`, …), an optional
//! column `split` (`train` | `val`), every other column a feature. Rows without `split` are
//! training examples.
//!
//! Reading refuses, with one line naming the file and the place: a path that is not a regular
//! file, duplicate column names, non-finite features, labels that are not whole numbers ≥ 0
//! (HDF5 labels of any other shape than (n)), no training rows, and a class count beyond
//! [`CLASS_LIMIT_FLOOR`] and the number of examples. Writing uses the checkpoint crate's
//! publish step (fsync, rename, directory fsync).

mod csv_file;
mod hdf5_file;

pub use csv_file::{read_csv, write_csv};
pub use hdf5_file::{read_hdf5, write_hdf5};

use crate::DataError;
use std::path::Path;

fn malformed(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Malformed {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes with `write` into a temporary file beside `path`, then publishes it with the
/// checkpoint crate's one publish step (fsync, rename, fsync of the directory), so `path` is
/// either the old file or the complete new one; on failure the temporary is removed.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    checkpoint::fsio::write_atomically(path, write, |error| DataError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Refuses a path that is not a regular file before anything opens it (a FIFO would block,
/// `/dev/zero` would be read until memory runs out).
pub(crate) fn require_regular_file(path: &Path) -> Result<(), DataError> {
    checkpoint::fsio::require_regular_file(path).map_err(|error| DataError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// However many examples a file has, it may name this many classes; beyond it, no more
/// classes than examples. (A class count is the classifier's size: a stray label of 10⁹ or an
/// attribute `classes` = 10¹² would otherwise allocate terabytes.)
pub const CLASS_LIMIT_FLOOR: usize = 1 << 16;

/// Checks a class count against the number of examples; `what` says where it came from.
fn check_classes(
    path: &Path,
    classes: u64,
    examples: usize,
    what: &str,
) -> Result<usize, DataError> {
    let limit = examples.max(CLASS_LIMIT_FLOOR);
    if classes > limit as u64 {
        return Err(malformed(
            path,
            format!(
                "{what} means {classes} classes, more than the file's {examples} examples (and more than {CLASS_LIMIT_FLOOR}): labels must be class numbers 0..C-1"
            ),
        ));
    }
    Ok(classes as usize)
}

/// The labels of `group`, checked against the class count.
fn check_labels(
    path: &Path,
    group: &str,
    raw: &[i64],
    classes: usize,
) -> Result<Vec<usize>, DataError> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &l) in raw.iter().enumerate() {
        if l < 0 || l as u64 >= classes as u64 {
            return Err(malformed(
                path,
                format!("label {l} of `{group}` example {i} is outside 0..{classes}"),
            ));
        }
        out.push(l as usize);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
