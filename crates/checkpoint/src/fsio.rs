//! File-system steps shared by every writer and reader of layerpar's files (checkpoints here,
//! data files in `layerpar-data`, plots and calibrations in the binary): the one atomic
//! publish step, and the check that an input is a regular file.

use std::io;
use std::path::{Path, PathBuf};

/// A sibling of `path` to write before publishing: `NAME.tmpPID`, in the same directory (so
/// the rename cannot cross file systems) and never a name a reader looks for.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Makes the finished temporary file `tmp` the file `path`: fsync, rename, fsync of the
/// directory (best effort: some file systems cannot sync a directory), so that `path` is
/// either the old file or the whole new one.
pub fn publish(tmp: &Path, path: &Path) -> io::Result<()> {
    std::fs::File::open(tmp)?.sync_all()?;
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Writes `path` atomically: `write` fills (and, where it can, verifies) the temporary file it
/// is given, then [`publish`] makes it `path`. On any failure the temporary is removed and
/// `path` is untouched; `io_error` turns a failure of the publish step into the caller's error.
pub fn write_atomically<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    io_error: impl FnOnce(io::Error) -> E,
) -> Result<(), E> {
    let tmp = temporary_path(path);
    let result = write(&tmp).and_then(|()| publish(&tmp, path).map_err(io_error));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces `path` with `bytes` atomically (see [`write_atomically`]): readers see the old
/// file or the whole new one; on failure `path` is untouched. For small outputs such as plots
/// and models.
pub fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, |tmp| std::fs::write(tmp, bytes), |e| e)
}

/// Checks that `path` names a regular file (following symbolic links) before anything opens
/// it: a FIFO would block the reader forever, a device such as `/dev/zero` would be read until
/// memory runs out, and a directory gives confusing errors. A missing file gives the usual
/// `NotFound` error; anything else that is not a regular file gives `InvalidInput` with a
/// message such as "is a FIFO, not a regular file".
pub fn require_regular_file(path: &Path) -> io::Result<()> {
    let t = std::fs::metadata(path)?.file_type();
    if t.is_file() {
        return Ok(());
    }
    let what = if t.is_dir() {
        "a directory"
    } else {
        kind_of_special(&t)
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    ))
}

#[cfg(unix)]
fn kind_of_special(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn kind_of_special(_: &std::fs::FileType) -> &'static str {
    "a special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_pass() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        require_regular_file(&f).unwrap();
        let e = require_regular_file(dir.path()).unwrap_err();
        assert_eq!(e.to_string(), "is a directory, not a regular file");
        let e = require_regular_file(Path::new("/dev/zero")).unwrap_err();
        assert_eq!(e.to_string(), "is a character device, not a regular file");
        let e = require_regular_file(&dir.path().join("none")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keep");
        std::fs::write(&p, "old").unwrap();
        let r: Result<(), String> = write_atomically(
            &p,
            |tmp| {
                std::fs::write(tmp, "partial").unwrap();
                Err("simulated".into())
            },
            |e| e.to_string(),
        );
        assert_eq!(r.unwrap_err(), "simulated");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        replace_file(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
