//! The `layerpar` command line: parses arguments and dispatches to a command.

use clap::{Parser, Subcommand};
use layerpar::commands::{self, AlreadyReported};
use layerpar::parallel::Parallel;
use std::path::PathBuf;
use std::process::ExitCode;

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
    /// Predict time per evaluation, speedup and efficiency for P = 1, 2, 4, … ranks from a
    /// model calibrated on this run (run it under mpirun -n P to validate at P).
    Scaling {
        /// Configuration file (TOML).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override one key (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Objective evaluations to measure.
        #[arg(long, default_value_t = 3)]
        evaluations: usize,
        /// Largest rank count in the table.
        #[arg(long, default_value_t = 1024)]
        max_ranks: usize,
        /// Save the calibrated model to this file.
        #[arg(long)]
        save: Option<PathBuf>,
        /// Predict with this saved model (to validate it at this rank count).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Draw the predicted speedup and the measured point as an SVG file.
        #[arg(long, value_name = "FILE.svg")]
        plot: Option<PathBuf>,
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
}

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
        } => commands::data::peaks(&out, train, val, seed),
        Command::Inspect { file } => commands::inspect::run(&file),
        Command::Scaling {
            config,
            set,
            evaluations,
            max_ranks,
            save,
            model,
            plot,
        } => {
            let args = commands::scaling::ScalingArgs {
                config,
                set,
                evaluations,
                max_ranks,
                save,
                model,
                plot,
            };
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
