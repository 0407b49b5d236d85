//! The `layerpar` command line: parses arguments and dispatches to a command.

use clap::{Parser, Subcommand};
use layerpar::commands::{self, AlreadyReported};
use layerpar::parallel::Parallel;
use std::path::PathBuf;
use std::process::ExitCode;

/// Huge pages for parameter-sized blocks (see `layerpar::hugepages`).
#[global_allocator]
static ALLOCATOR: layerpar::hugepages::HugePages = layerpar::hugepages::HugePages;

/// Layer-parallel training of deep residual networks (ODE-nets) with MGRIT on MPI clusters.
#[derive(Parser)]
#[command(name = "layerpar", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network (run under `mpirun -n P` for P ranks).
    Train {
        /// Configuration file (TOML); defaults apply to every key it does not set.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key, e.g. --set network.layers=64 (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// History CSV (overrides output.history).
        #[arg(long)]
        history: Option<PathBuf>,
        /// Continue the run saved in this checkpoint (its configuration, parameters,
        /// optimizer state and history); --set may change keys such as optimizer.max_iter.
        #[arg(long, value_name = "CKPT")]
        resume: Option<PathBuf>,
        /// Start a new run from this checkpoint's parameters (a deeper or shallower network
        /// gets its hidden controls interpolated in time, see nested.interp).
        #[arg(long, value_name = "CKPT")]
        init_from: Option<PathBuf>,
    },
    /// Predict time per training iteration, speedup and efficiency for P = 1, 2, 4, … ranks
    /// (the best split into data groups × layer-parallel ranks) from a model calibrated on
    /// this run (run it under mpirun -n P to validate at P).
    Scaling(commands::scaling::ScalingArgs),
    /// Time the performance table's cases (run under `mpirun -n P`; P is the case's rank
    /// count): per evaluation or training iteration min/median/max, GFLOP/s and the ratio to
    /// a dgemm of the step's shape timed in the same run.
    Bench(commands::bench::BenchArgs),
    /// Run a designed set of trainings from a study file (a grid or Latin hypercube over
    /// config keys, times seeds, in groups) and summarize them (run under `mpirun -n P`:
    /// every run uses all ranks).
    #[command(long_about = STUDY_HELP)]
    Study {
        /// The study file (TOML; see below).
        file: PathBuf,
        /// Override a key of the base configuration for every run (repeatable; part of the
        /// design, so a resumed study must be given the same).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Output folder (instead of the study file's `out`, default: the study's name).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Run only run ID (a job-array task; 0-based) and return; the summary is written
        /// when the last run finishes.
        #[arg(long, value_name = "ID", conflicts_with_all = ["list", "count", "summarize"])]
        run: Option<usize>,
        /// Run at most N of the pending runs, then stop (rerun to continue).
        #[arg(long, value_name = "N", conflicts_with_all = ["list", "count", "summarize"])]
        max_runs: Option<usize>,
        /// Print the runs (settings, finished or pending) and exit.
        #[arg(long, conflicts_with_all = ["count", "summarize"])]
        list: bool,
        /// Print the number of runs alone and exit.
        #[arg(long, conflicts_with = "summarize")]
        count: bool,
        /// Write runs.csv, summary.csv and the box plots from the finished runs and exit.
        #[arg(long)]
        summarize: bool,
    },
    /// Plot a training history: objective and loss, accuracy (or RMSE/R²) and MGRIT
    /// residuals per iteration, as PREFIX.svg and PREFIX.png.
    Plot {
        /// A history CSV written by `layerpar train` (e.g. runs/history.csv).
        history: PathBuf,
        /// Output prefix (default: the history's path without .csv).
        #[arg(long, value_name = "PREFIX")]
        out: Option<PathBuf>,
    },
    /// Print what a checkpoint holds (and verify its checksum).
    Inspect {
        /// Checkpoint file.
        file: PathBuf,
    },
    /// Evaluate trained parameters on the training and validation data.
    Eval {
        /// Checkpoint written by `layerpar train` (e.g. runs/final.h5).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Override a key of the stored configuration (e.g. data.kind, data.path;
        /// network.layers=K evaluates at another depth, per-layer controls interpolated in
        /// time by nested.interp).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Print the full default configuration as commented TOML.
    Config {
        /// Print the configuration resolved from this file (and --set) instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key (repeatable); prints the resolved configuration.
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Print the resolved configuration (every key, no comments).
        #[arg(long)]
        resolved: bool,
    },
    /// Generate or convert data sets.
    Data {
        #[command(subcommand)]
        kind: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write the Peaks data set to FILE.h5 (HDF5) and FILE.csv.
    Peaks {
        /// Output file; .h5 and .csv versions are written.
        #[arg(long)]
        out: PathBuf,
        /// Training examples.
        #[arg(long, default_value_t = 5000)]
        train: usize,
        /// Validation examples.
        #[arg(long, default_value_t = 200)]
        val: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write the sine regression data set (y = sin(x), x uniform on [−π, π]) to FILE.h5 and FILE.csv.
    Sine {
        /// Output file; .h5 and .csv versions are written.
        #[arg(long)]
        out: PathBuf,
        /// Training examples.
        #[arg(long, default_value_t = 1000)]
        train: usize,
        /// Validation examples.
        #[arg(long, default_value_t = 200)]
        val: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

const STUDY_HELP: &str = "\
Run a designed set of trainings from a study file and summarize them.

Every run is the base configuration + its group's settings + a design point + a seed,
applied as --set overrides (so every key is checked as `layerpar train` checks it; a bad
study file fails before any run starts). Runs go one after another, each on all ranks of
the MPI job, each in OUT/runs/run-NNNN/ (history.csv, final.h5, result.csv). OUT gets
design.txt (the resolved design), runs.csv (one row per finished run), summary.csv (per
group: n, mean, median, min, max, std of val_acc and val_loss over the runs that ended ok,
and the fraction of all runs that reached reach_acc) and boxplot.svg/.png, and the table is
printed. Interrupted (SIGTERM/SIGUSR1: exit 75, or killed), the same command continues:
finished runs are skipped, an unfinished one starts over. A changed study file is refused
against an existing OUT.

Study file (TOML):

  [study]
  name = \"splinet\"             # output folder by default
  config = \"base.toml\"         # optional base config file (relative to the study file)
  out = \"study-splinet\"        # optional output folder (relative to the current folder)
  seeds = [1, 2, 3]            # each design point runs once per seed (default [1])
  design = \"lhs\"               # \"grid\" (default): every combination; \"lhs\": Latin hypercube
  samples = 8                  # lhs: number of points
  lhs_seed = 1                 # lhs: the sample's seed (default 1)
  reach_acc = 0.9              # the summary's reached fraction: val_acc >= this

  [study.base]                 # settings for every run, dotted keys as --set takes them
  \"optimizer.kind\" = \"adam\"

  [[study.param]]              # a range ...
  key = \"optimizer.learning_rate\"
  range = [1e-3, 0.3]
  scale = \"log\"                # or \"linear\" (default)
  integer = false              # true rounds (layer or coefficient counts)
  points = 4                   # grid only: points from lo to hi
  [[study.param]]              # ... or a set of values (numbers, strings, booleans)
  key = \"network.layers\"
  values = [16, 32, 64]

  [[study.group]]              # optional groups, each with its own settings
  name = \"resnet\"
  set = { \"controls.kind\" = \"layer\" }
  [[study.group]]
  name = \"splinet\"
  set = { \"controls.kind\" = \"spline\", \"controls.count\" = 8 }

Run ids: groups outermost, then design points, then seeds. A job array runs one run per
task: N=$(layerpar study FILE --count); sbatch --array=0-$((N-1)) jobscripts/study-array.sbatch
(each task: layerpar study FILE --run $SLURM_ARRAY_TASK_ID).";

fn report(e: &anyhow::Error) {
    if e.downcast_ref::<AlreadyReported>().is_none() {
        layerpar::print_error_line(&format!("{e:#}"));
    }
}

/// Runs an MPI command: initializes MPI, lets rank 0 speak for errors every rank shares
/// (other ranks stay quiet), finalizes MPI, and maps a signal-triggered stop to the
/// requeue status.
fn with_mpi(command: impl FnOnce(&Parallel) -> anyhow::Result<()>) -> ExitCode {
    let par = match Parallel::init() {
        Ok(p) => p,
        Err(e) => {
            report(&e);
            return ExitCode::FAILURE;
        }
    };
    let r = command(&par);
    // Rank 0 speaks before MPI is finalized: finalizing waits for every rank, so no rank can
    // exit (and make the launcher end the job) before the message is out.
    let code = match &r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(i) = e.downcast_ref::<layerpar::signals::Interrupted>() {
                if par.is_root() {
                    eprintln!("{i}");
                }
                ExitCode::from(layerpar::signals::REQUEUE_EXIT_CODE)
            } else if let Some(s) = e.downcast_ref::<layerpar::study::runs::Stopped>() {
                if par.is_root() {
                    eprintln!("{s}");
                }
                ExitCode::from(layerpar::signals::REQUEUE_EXIT_CODE)
            } else {
                if par.is_root() {
                    report(e);
                }
                ExitCode::FAILURE
            }
        }
    };
    drop(par);
    code
}

fn main() -> ExitCode {
    // Behave like other command-line tools when the reader of stdout goes away
    // (`layerpar inspect FILE | head`): end quietly instead of failing to print.
    // SAFETY: setting a signal disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Config {
            config,
            set,
            resolved,
        } => commands::config::run(config, &set, resolved),
        Command::Data {
            kind:
                DataCommand::Peaks {
                    out,
                    train,
                    val,
                    seed,
                },
        } => commands::data::generate(false, &out, train, val, seed),
        Command::Data {
            kind:
                DataCommand::Sine {
                    out,
                    train,
                    val,
                    seed,
                },
        } => commands::data::generate(true, &out, train, val, seed),
        Command::Inspect { file } => commands::inspect::run(&file),
        Command::Plot { history, out } => commands::plot::run(&history, out.as_deref()),
        Command::Study {
            file,
            set,
            out,
            run,
            max_runs,
            list,
            count,
            summarize,
        } => {
            let opts = layerpar::study::runs::Options {
                file,
                set,
                out,
                run,
                max_runs,
            };
            if list {
                commands::study::list(&opts)
            } else if count {
                commands::study::count(&opts)
            } else if summarize {
                commands::study::summarize(&opts)
            } else {
                return with_mpi(|par| commands::study::run(par, &opts));
            }
        }
        Command::Bench(args) => {
            return with_mpi(|par| commands::bench::run(par, &args));
        }
        Command::Scaling(args) => {
            return with_mpi(|par| commands::scaling::run(par, &args));
        }
        Command::Train {
            config,
            set,
            history,
            resume,
            init_from,
        } => {
            let args = commands::train::TrainArgs {
                config,
                set,
                history,
                resume,
                init_from,
            };
            return with_mpi(|par| commands::train::run(par, &args));
        }
        Command::Eval { checkpoint, set } => {
            return with_mpi(|par| commands::eval::run(par, &checkpoint, &set));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
