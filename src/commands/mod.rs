//! One module per command of the `layerpar` binary.

pub mod config;
pub mod data;
pub mod eval;
pub mod inspect;
pub mod scaling;
pub mod train;

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
