//! One module per command of the `layerpar` binary.

pub mod bench;
pub mod config;
pub mod data;
pub mod eval;
pub mod inspect;
pub mod plot;
pub mod scaling;
pub mod study;
pub mod train;

use crate::config::Config;
use crate::parallel::Parallel;
use std::fmt;

/// An error that has already been printed (by the rank that hit it); the caller only exits.
#[derive(Debug)]
pub struct AlreadyReported;

impl fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reported by another rank")
    }
}

impl std::error::Error for AlreadyReported {}

/// Makes every rank agree on the outcome of a step that each rank did on its own: if any rank
/// failed, all return an error. Rank 0 reports its own error; another rank's error is printed
/// by that rank when rank 0 succeeded.
pub fn agree<T>(par: &Parallel, result: anyhow::Result<T>) -> anyhow::Result<T> {
    let ok = result.is_ok();
    let all_ok = par.all(ok);
    let (_, root_failed) = {
        // max over ranks of "I am rank 0 and failed"
        par.min_max(u64::from(par.is_root() && !ok))
    };
    match result {
        Ok(v) if all_ok => Ok(v),
        Ok(_) => {
            if par.is_root() {
                Err(anyhow::anyhow!(
                    "another rank failed (see its message above)"
                ))
            } else {
                Err(AlreadyReported.into())
            }
        }
        Err(e) => {
            if par.is_root() {
                Err(e)
            } else {
                if root_failed == 0 {
                    crate::print_error_line(&format!("(rank {}) {e:#}", par.rank()));
                }
                Err(AlreadyReported.into())
            }
        }
    }
}

/// The configuration that rank 0 loads with `load`, on every rank: rank 0 alone reads the
/// files and resolves the overrides, then broadcasts the result (bincode), so that every rank
/// runs the same settings even if a file changes while the job starts. An error in `load`
/// is rank 0's, reported as by [`agree`] (one line; the other ranks return
/// [`AlreadyReported`]).
pub fn root_config(
    par: &Parallel,
    load: impl FnOnce() -> anyhow::Result<Config>,
) -> anyhow::Result<Config> {
    let loaded = if par.is_root() {
        load()
    } else {
        Err(anyhow::anyhow!("not loaded on this rank"))
    };
    let bytes = par.broadcast_bytes(loaded.as_ref().ok().map(Config::to_bytes));
    // Every rank sees whether rank 0 succeeded: on failure all return at once (rank 0 with
    // its error); otherwise the decoding on the other ranks is agreed on.
    let config = match (loaded, bytes) {
        (Err(e), None) if par.is_root() => return Err(e),
        (Err(_), None) => return Err(AlreadyReported.into()),
        (Ok(c), _) => Ok(c),
        (Err(_), Some(b)) => Config::from_bytes(&b),
    };
    agree(par, config)
}
