//! The file checksum in a checkpoint's userblock: written over the closed HDF5 file, and
//! checked before the HDF5 library parses a file it reads.

use crate::format::{file_hash, SEAL_MAGIC, USERBLOCK};
use std::path::Path;

/// Writes the file checksum of the closed HDF5 file `tmp` into its userblock, so that a
/// reader can refuse a damaged file before the HDF5 library parses it (HDF5 can crash on a
/// damaged file).
pub(crate) fn seal(tmp: &Path) -> std::io::Result<()> {
    use std::io::{Seek, Write};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(tmp)?;
    let (hash, len) = file_hash(&mut file)?;
    let mut block = SEAL_MAGIC.to_vec();
    block.extend(format!("fnv1a64 {hash:016x}\nbytes {len}\n").bytes());
    block.resize(USERBLOCK, 0);
    file.seek(std::io::SeekFrom::Start(0))?;
    file.write_all(&block)
}

/// Checks the file checksum in the userblock of `path`, where there is one (files written
/// before it existed have none, and are left to the HDF5 checks).
pub(crate) fn check_seal(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut block = Vec::with_capacity(USERBLOCK);
    (&mut file)
        .take(USERBLOCK as u64)
        .read_to_end(&mut block)
        .map_err(|e| e.to_string())?;
    let Some(rest) = block.strip_prefix(SEAL_MAGIC) else {
        return Ok(());
    };
    let text = String::from_utf8_lossy(rest);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_string)
    };
    let hash = field("fnv1a64 ").and_then(|h| u64::from_str_radix(&h, 16).ok());
    let len = field("bytes ").and_then(|l| l.parse::<u64>().ok());
    let (Some(hash), Some(len)) = (hash, len) else {
        return Err("the file checksum header is damaged".into());
    };
    let (found_hash, found_len) = file_hash(&mut file).map_err(|e| e.to_string())?;
    if found_len != len {
        return Err(format!(
            "the file has {} bytes, its header says {} (truncated or extended)",
            found_len + USERBLOCK as u64,
            len + USERBLOCK as u64
        ));
    }
    if found_hash != hash {
        return Err("the file checksum does not match (the file is damaged)".into());
    }
    Ok(())
}
