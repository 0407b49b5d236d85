//! Running a study: every run in turn on all ranks of the MPI job (or one run, `--run ID`,
//! for a job array), each in its own folder under the output folder, each finished run
//! recorded at once, so that a study continues after an interruption without redoing the
//! runs it finished.
//!
//! The output folder holds `design.txt` (the resolved design: one line per run with a hash of
//! its configuration; a different study file is refused against it), `runs/run-NNNN/`
//! (history.csv, checkpoints and, once the run has finished, `result.csv` with its row),
//! and, assembled from the result rows, `runs.csv`, `summary.csv`, `boxplot.svg` and
//! `boxplot.png`. Rank 0 reads and writes every file.

use super::summary::{self, Outcome, Status};
use super::{Run, Study};
use crate::commands::{agree, AlreadyReported};
use crate::csvtable::Table;
use crate::parallel::Parallel;
use anyhow::{anyhow, bail, Context, Result};
use std::path::PathBuf;
use std::time::Instant;

/// The design record's file in the output folder.
pub const DESIGN: &str = "design.txt";
/// A finished run's row, in its folder.
pub const RESULT: &str = "result.csv";

/// What `layerpar study` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub file: PathBuf,
    pub set: Vec<String>,
    pub out: Option<PathBuf>,
    /// Run only this run (a job array task).
    pub run: Option<usize>,
    /// Run at most this many of the pending runs, then stop.
    pub max_runs: Option<usize>,
}

/// A study with its runs, every run's configuration resolved.
pub struct Prepared {
    pub study: Study,
    pub runs: Vec<Run>,
    pub record: String,
}

/// Reads the study file and resolves every run (nothing is written).
pub fn prepare(opts: &Options) -> Result<Prepared> {
    let study = Study::load(&opts.file, &opts.set, opts.out.as_deref())?;
    let runs = study.runs()?;
    let record = study.resolve(&runs)?;
    if let Some(id) = opts.run.filter(|&id| id >= runs.len()) {
        bail!(
            "--run {id}: the study has {} runs (0 … {})",
            runs.len(),
            runs.len() - 1
        );
    }
    Ok(Prepared {
        study,
        runs,
        record,
    })
}

/// Whether run `id` has finished (its result row is on disk).
pub fn finished(study: &Study, id: usize) -> bool {
    study.run_dir(id).join(RESULT).is_file()
}

/// Creates the output folder and records the design, or checks it against the one recorded
/// there: a different design is refused.
fn record_design(p: &Prepared) -> Result<()> {
    let out = &p.study.out;
    std::fs::create_dir_all(out.join("runs"))
        .with_context(|| format!("cannot create the study's output folder {}", out.display()))?;
    let path = out.join(DESIGN);
    match std::fs::read_to_string(&path) {
        Ok(old) if old == p.record => Ok(()),
        Ok(old) => {
            let (o, n): (Vec<&str>, Vec<&str>) =
                (old.lines().collect(), p.record.lines().collect());
            let first = o
                .iter()
                .zip(&n)
                .position(|(a, b)| a != b)
                .unwrap_or(o.len().min(n.len()));
            let what = match (o.get(first), n.get(first)) {
                (Some(_), Some(line)) => line
                    .split(" config ")
                    .next()
                    .unwrap_or(line)
                    .trim_start_matches("# ")
                    .to_string(),
                _ => format!(
                    "the run count ({} recorded, {} now)",
                    o.len() - 1,
                    n.len() - 1
                ),
            };
            bail!(
                "the output folder {} holds runs of a different design ({} differs from the study file's, first at {what}); give another --out, or remove the folder to start over",
                out.display(),
                path.display()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => summary::write(&path, &p.record),
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// The runs.csv rows of every finished run (in id order).
fn collect(p: &Prepared) -> Result<Table> {
    let header = summary::header(&p.study);
    let mut rows = Vec::new();
    for run in &p.runs {
        let path = p.study.run_dir(run.id).join(RESULT);
        if !path.is_file() {
            continue;
        }
        let t = Table::read(&path)?;
        match t.rows.first() {
            Some(r) if t.columns == header => rows.push(r.clone()),
            _ => bail!(
                "{} is not a result row of this study (remove it to redo run {})",
                path.display(),
                run.id
            ),
        }
    }
    Ok(Table {
        columns: header,
        rows,
    })
}

/// Writes runs.csv from the finished runs' rows.
fn write_runs(p: &Prepared) -> Result<Table> {
    let t = collect(p)?;
    summary::write(
        &p.study.out.join("runs.csv"),
        &summary::csv(&t.columns, &t.rows),
    )?;
    Ok(t)
}

/// Writes runs.csv, summary.csv and the box plots from the finished runs; returns the
/// printed summary table.
pub fn summarize(p: &Prepared) -> Result<String> {
    let t = write_runs(p)?;
    let groups: Vec<String> = p.study.groups.iter().map(|g| g.name.clone()).collect();
    let reach = p.study.reach_acc;
    let s = summary::summarize(&t, &groups, reach);
    let out = &p.study.out;
    summary::write(&out.join("summary.csv"), &summary::summary_csv(&s, reach))?;
    let fig = super::plots::BoxPlots {
        title: format!(
            "study {}: {} of {} runs finished",
            p.study.name,
            t.rows.len(),
            p.runs.len()
        ),
        groups: &s,
        reach,
    };
    let (svg, png) = crate::plot::write(&out.join("boxplot"), &fig)?;
    let mut text = summary::table(&s, reach);
    text += &format!(
        "wrote {}, {}, {} and {}\n",
        out.join("runs.csv").display(),
        out.join("summary.csv").display(),
        svg.display(),
        png.display()
    );
    Ok(text)
}

/// `--list`: one line per run with its settings and whether it has finished.
pub fn list(p: &Prepared) -> String {
    let mut s = format!(
        "study {}: {} runs ({} groups × {} points × {} seeds), output folder {}\n",
        p.study.name,
        p.runs.len(),
        p.study.groups.len(),
        p.runs.len() / (p.study.groups.len() * p.study.seeds.len()),
        p.study.seeds.len(),
        p.study.out.display()
    );
    for r in &p.runs {
        let values: Vec<String> = p
            .study
            .params
            .iter()
            .zip(&r.values)
            .map(|(k, v)| format!("{}={}", k.key, super::set_value(v)))
            .collect();
        s += &format!(
            "{:>4}  {:<8}  {:<10} seed {:<3} {}\n",
            r.id,
            if finished(&p.study, r.id) {
                "finished"
            } else {
                "pending"
            },
            r.group,
            r.seed,
            values.join(" ")
        );
    }
    s
}

/// A study stopped by SIGTERM/SIGUSR1: the status 75 of an interrupted training run.
#[derive(Debug)]
pub struct Stopped {
    pub finished: usize,
    pub total: usize,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "study stopped by a signal with {} of {} runs finished; run the same command again to continue (an unfinished run starts over)",
            self.finished, self.total
        )
    }
}

impl std::error::Error for Stopped {}

/// How a training run's error counts.
fn classify(e: &anyhow::Error) -> Status {
    let msg = format!("{e:#}");
    if msg.contains("objective diverged") || msg.contains("objective is not finite") {
        Status::Diverged
    } else {
        Status::Failed
    }
}

/// How one run of [`execute_one`] ended.
enum Step {
    /// Finished and recorded (the outcome on rank 0).
    Finished(Option<Outcome>),
    /// Stopped by a signal (after its checkpoint): not recorded.
    Interrupted,
}

/// One run on every rank; rank 0 records it.
fn execute_one(par: &Parallel, p: Option<&Prepared>, id: usize) -> Result<Step> {
    // Rank 0 clears what an interrupted attempt left and makes the folder.
    let args = match p {
        Some(p) => {
            let dir = p.study.run_dir(id);
            let cleared = (|| -> Result<()> {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("cannot clear {}", dir.display()))?;
                }
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))
            })();
            agree(par, cleared)?;
            let mut set = p.runs[id].sets.clone();
            set.extend(p.study.output_sets(id));
            crate::commands::train::TrainArgs {
                config: p.study.config.clone(),
                set,
                history: Some(dir.join("history.csv")),
                resume: None,
                init_from: None,
            }
        }
        None => {
            agree(par, Ok(()))?;
            // Rank 0 resolves the configuration and sends it; these are not read.
            crate::commands::train::TrainArgs {
                config: None,
                set: Vec::new(),
                history: None,
                resume: None,
                init_from: None,
            }
        }
    };
    let t0 = Instant::now();
    let result = crate::commands::train::train(par, &args);
    let wall = t0.elapsed().as_secs_f64();
    if let Err(e) = &result {
        if e.downcast_ref::<crate::signals::Interrupted>().is_some() {
            return Ok(Step::Interrupted);
        }
    }
    let Some(p) = p else {
        return Ok(Step::Finished(None));
    };
    let (status, stop) = match &result {
        Ok(t) => (Status::Ok, t.stop.clone()),
        Err(e) => (classify(e), format!("{e:#}")),
    };
    let dir = p.study.run_dir(id);
    let out = Outcome::from_history(&dir.join("history.csv"), status, wall, stop);
    let header = summary::header(&p.study);
    let row = summary::row(&p.runs[id], &out);
    summary::write(&dir.join(RESULT), &summary::csv(&header, &[row]))?;
    Ok(Step::Finished(Some(out)))
}

/// One line about a finished run.
fn report(p: &Prepared, id: usize, out: &Outcome, done: usize) {
    let run = &p.runs[id];
    let values: Vec<String> = p
        .study
        .params
        .iter()
        .zip(&run.values)
        .map(|(k, v)| format!("{}={}", k.key, super::cell_value(v)))
        .collect();
    let metric = |name: &str| {
        let i = summary::METRICS.iter().position(|m| *m == name)?;
        out.metrics[i]
    };
    let acc = metric("val_acc").map_or("-".into(), |a| format!("{a:.4}"));
    let what = match out.status {
        Status::Ok => format!("val_acc {acc}"),
        _ => format!("{} ({})", out.status.name(), out.stop),
    };
    println!(
        "run {id} [{done}/{}] group {} seed {}{}: {what}, {} iterations, {:.2} s",
        p.runs.len(),
        run.group,
        run.seed,
        values.iter().map(|v| format!(" {v}")).collect::<String>(),
        out.iterations.unwrap_or(0),
        out.wall_s
    );
}

/// Rank 0's plan (the study and the ids to run), or rank 0's error on every rank.
fn plan(par: &Parallel, opts: &Options) -> Result<(Option<Prepared>, Vec<usize>)> {
    let prepared = if par.is_root() {
        (|| -> Result<(Prepared, Vec<usize>)> {
            let p = prepare(opts)?;
            record_design(&p)?;
            let ids: Vec<usize> = match opts.run {
                Some(id) if finished(&p.study, id) => {
                    println!(
                        "run {id} has finished already ({})",
                        p.study.run_dir(id).join(RESULT).display()
                    );
                    Vec::new()
                }
                Some(id) => vec![id],
                None => (0..p.runs.len())
                    .filter(|&id| !finished(&p.study, id))
                    .collect(),
            };
            Ok((p, ids))
        })()
    } else {
        Err(anyhow!("not prepared on this rank"))
    };
    // The count first: a broadcast is never empty.
    let bytes = par.broadcast_bytes(prepared.as_ref().ok().map(|(_, ids)| {
        std::iter::once(ids.len())
            .chain(ids.iter().copied())
            .flat_map(|i| (i as u64).to_le_bytes())
            .collect()
    }));
    match (prepared, bytes) {
        (Ok((p, ids)), _) => Ok((Some(p), ids)),
        (Err(e), None) if par.is_root() => Err(e),
        (Err(_), None) => Err(AlreadyReported.into()),
        (Err(_), Some(b)) => Ok((
            None,
            b.chunks_exact(8)
                .skip(1)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as usize)
                .collect(),
        )),
    }
}

/// Runs the study's pending runs (or `--run ID`) on every rank, then, once every run has
/// finished, writes the summary and the plots.
pub fn execute(par: &Parallel, opts: &Options) -> Result<()> {
    crate::signals::install();
    let (prepared, ids) = plan(par, opts)?;
    let p = prepared.as_ref();
    // The output folder is this job's while it runs the study (array tasks share it and lock
    // only their run folders).
    let _lock = match (p, opts.run) {
        (Some(p), None) => Some(agree(
            par,
            crate::rundir::RunLock::acquire(&p.study.out, "the study output folder"),
        )?),
        _ => {
            agree(par, Ok(()))?;
            None
        }
    };
    let total = p.map_or(0, |p| p.runs.len());
    let done_before = p.map_or(0, |p| (0..total).filter(|&i| finished(&p.study, i)).count());
    if let Some(p) = p {
        let pending = ids.len();
        println!(
            "layerpar study {}: {total} runs, {} finished before, {pending} to run{} on {} MPI rank{}; output folder {}",
            p.study.name,
            done_before,
            if opts.run.is_some() { " (--run)" } else { "" },
            par.size(),
            if par.size() == 1 { "" } else { "s" },
            p.study.out.display()
        );
    }
    let limit = opts.max_runs.unwrap_or(usize::MAX);
    let mut ran = 0;
    let mut done = done_before;
    for &id in ids.iter().take(limit) {
        if par.any(crate::signals::requested()) {
            return Err(Stopped {
                finished: done,
                total,
            }
            .into());
        }
        match execute_one(par, p, id)? {
            Step::Finished(out) => {
                ran += 1;
                if let (Some(p), Some(out)) = (p, out) {
                    done += 1;
                    report(p, id, &out, done);
                    // runs.csv follows the study as it goes (the array tasks leave it to
                    // the summary).
                    if opts.run.is_none() {
                        write_runs(p)?;
                    }
                }
            }
            Step::Interrupted => {
                return Err(Stopped {
                    finished: done,
                    total,
                }
                .into())
            }
        }
    }
    let Some(p) = p else { return Ok(()) };
    let finished_now = (0..total).filter(|&i| finished(&p.study, i)).count();
    if finished_now < total {
        println!(
            "{finished_now} of {total} runs finished ({ran} in this job){}; run the same command again to continue",
            if ran == limit { format!(", stopped at --max-runs {limit}") } else { String::new() }
        );
        return Ok(());
    }
    print!("{}", summarize(p)?);
    Ok(())
}
