//! `layerpar study FILE`: runs a designed set of trainings (see [`crate::study`]) and
//! summarizes them; `--list`, `--count` and `--summarize` only read.

use crate::parallel::Parallel;
use crate::study::runs::{self, Options};
use anyhow::Result;

/// `--list`: the runs and which have finished.
pub fn list(opts: &Options) -> Result<()> {
    let p = runs::prepare(opts)?;
    print!("{}", runs::list(&p));
    Ok(())
}

/// `--count`: the number of runs alone (for `sbatch --array=0-$((N - 1))`).
pub fn count(opts: &Options) -> Result<()> {
    let p = runs::prepare(opts)?;
    println!("{}", p.runs.len());
    Ok(())
}

/// `--summarize`: runs.csv, summary.csv and the box plots from the finished runs.
pub fn summarize(opts: &Options) -> Result<()> {
    let p = runs::prepare(opts)?;
    print!("{}", runs::summarize(&p)?);
    Ok(())
}

/// Runs the study (or `--run ID`) on every rank of the MPI job.
pub fn run(par: &Parallel, opts: &Options) -> Result<()> {
    runs::execute(par, opts)
}
