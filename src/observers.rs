//! The observers of a training run ([`crate::train::Observer`]) that touch files: the
//! history CSV and the checkpoint policy (periodic checkpoints, and a checkpoint and a clean
//! stop on SIGTERM/SIGUSR1). Rank 0 writes; a write that fails on rank 0 of a multi-rank job
//! ends the job, since the other ranks could not know.

use crate::checkpointing::{gather, Snapshot};
use crate::config::Config;
use crate::parallel::Parallel;
use crate::train::history::{HistoryWriter, Row};
use crate::train::{Iterate, Observer};
use anyhow::Result;
use checkpoint::Checkpoint;
use mpi::collective::CommunicatorCollectives;
use std::path::{Path, PathBuf};

/// Ends every rank at once after printing `e` if this is a multi-rank job; returns `e`
/// otherwise (a one-rank job reports it as usual).
fn abort_if_parallel(par: &Parallel, e: anyhow::Error) -> anyhow::Error {
    if par.size() > 1 {
        crate::print_error_line(&format!("{e:#}"));
        par.abort(1);
    }
    e
}

/// Writes a checkpoint on rank 0, ending the job if that fails on a multi-rank run.
pub fn write_or_abort(par: &Parallel, path: &Path, ckpt: &Checkpoint) -> Result<()> {
    if !par.is_root() {
        return Ok(());
    }
    if let Err(e) = checkpoint::write(path, ckpt) {
        if par.size() > 1 {
            crate::print_error_line(&e.to_string());
            par.abort(1);
        }
        return Err(e.into());
    }
    Ok(())
}

/// Deletes all but the newest `keep` files named `prefix…h5` in `dir` (0 keeps all).
pub fn prune(dir: &Path, prefix: &str, keep: usize) {
    if keep == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(".h5"))
        })
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for p in &names[..excess] {
        let _ = std::fs::remove_file(p);
    }
}

/// Appends every row to the history file (rank 0 holds the writer; the others pass).
pub struct HistoryFile<'p> {
    pub par: &'p Parallel,
    pub writer: Option<HistoryWriter>,
}

impl Observer for HistoryFile<'_> {
    fn observe(&mut self, it: &Iterate) -> Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.push(it.row).map_err(|e| abort_if_parallel(self.par, e)),
            None => Ok(()),
        }
    }
}

/// The checkpoint policy: `{prefix}{k:06}.h5` in `dir` after every iteration k > 0 with
/// k % every == 0 (every > 0), keeping the newest `keep_last`; and after any iteration at
/// which a stop signal has reached any rank, after which the run ends with
/// [`crate::signals::Interrupted`] (once the file is on disk on every rank's watch).
pub struct Checkpoints<'a> {
    pub par: &'a Parallel,
    pub dir: PathBuf,
    pub prefix: String,
    pub every: usize,
    pub keep_last: usize,
    /// The level's configuration and the run's (stored in the file).
    pub config: &'a Config,
    pub base: &'a Config,
    /// The rows of earlier nested levels (a checkpoint carries the whole history).
    pub earlier: &'a [Row],
    pub level: usize,
}

impl Observer for Checkpoints<'_> {
    fn observe(&mut self, it: &Iterate) -> Result<()> {
        let iter = it.row.iter;
        // A stop signal on any rank: checkpoint this iteration and leave (collectively).
        let stop = self.par.any(crate::signals::requested());
        if !(stop || (self.every > 0 && iter > 0 && iter.is_multiple_of(self.every))) {
            return Ok(());
        }
        let rows: Vec<Row> = self.earlier.iter().chain(it.rows).cloned().collect();
        let optimizer = it.optimizer.state();
        let snap = Snapshot {
            iteration: iter,
            theta: it.theta,
            optimizer: &optimizer,
        };
        // Collective gather; rank 0 writes.
        let ckpt = gather(it.dist, self.config, self.base, &snap, &rows, self.level);
        let path = self.dir.join(format!("{}{iter:06}.h5", self.prefix));
        write_or_abort(self.par, &path, &ckpt)?;
        if self.par.is_root() {
            prune(&self.dir, &self.prefix, self.keep_last);
        }
        if stop {
            // No rank leaves before the checkpoint is on disk: a launcher ends the whole job
            // when the first rank exits with a non-zero status.
            self.par.world().barrier();
            return Err(crate::signals::Interrupted {
                iteration: iter,
                checkpoint: path,
            }
            .into());
        }
        Ok(())
    }
}
