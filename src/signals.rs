//! Graceful stop: SIGTERM or SIGUSR1 (what Slurm sends before a time limit with `--signal`)
//! asks the run to finish its current iteration, write a checkpoint and exit with
//! [`REQUEUE_EXIT_CODE`], which job scripts take as "requeue me".

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit status of a run stopped by a signal after writing its checkpoint (EX_TEMPFAIL).
pub const REQUEUE_EXIT_CODE: u8 = 75;

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Installs the handlers for SIGTERM and SIGUSR1 (call after MPI is initialized, so that
/// they take precedence over the MPI library's).
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGUSR1, handler);
    }
}

/// Whether this process has received a stop signal.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// A run stopped by a signal, with the checkpoint it wrote.
#[derive(Debug)]
pub struct Interrupted {
    pub iteration: usize,
    pub checkpoint: std::path::PathBuf,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stopped by a signal after iteration {}; wrote {} (continue with --resume {})",
            self.iteration,
            self.checkpoint.display(),
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}
