//! What can go wrong reading or writing a checkpoint, and HDF5's errors as one line.

use crate::format::FORMAT_VERSION;
use std::path::PathBuf;

/// What can go wrong; each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {0} does not exist")]
    Missing(PathBuf),
    #[error("cannot read checkpoint {path}: {message}")]
    Unreadable { path: PathBuf, message: String },
    #[error("checkpoint {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("checkpoint {path} has format version {found}; this layerpar reads version {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u64 },
    #[error("cannot write checkpoint {path}: {message}")]
    Write { path: PathBuf, message: String },
}

pub(crate) fn first_line(e: hdf5::Error) -> String {
    hdf5_error_line(&e)
}

/// An HDF5 error as one line: the failing call and what failed, with the system's reason
/// where HDF5 reports one ("… file write failed: No space left on device"), without the
/// time stamp, buffer addresses and byte counts of its low-level file errors.
pub fn hdf5_error_line(e: &hdf5::Error) -> String {
    let text = e.to_string();
    let head = text.lines().next().unwrap_or("");
    let head = head.split(": time = ").next().unwrap_or(head).trim_end();
    match text
        .split("error message = '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
    {
        Some(reason) => format!("{head}: {reason}"),
        None => head.to_string(),
    }
}
