//! # A whole MGRIT program: the scalar ODE u' = λu
//!
//! Solves u' = λu, u(0) = 1 on [0, 1] with λ = −1, discretized by backward Euler with N = 64
//! steps, u_i = Φ(u_{i−1}) = u_{i−1} / (1 − λh), by a three-level MGRIT V-cycle (coarsening
//! factor 4: 65, 17 and 5 points). It prints the C-point residual of each iteration, the
//! error against the exact solution exp(λ t_f), and the difference to the serial sweep
//! (which MGRIT converges to; the discretization error is the sweep's own).
//!
//! ```sh
//! cargo run -p mgrit --example scalar                          # one process
//! mpirun -n 3 target/debug/examples/scalar                     # three ranks (feature `mpi`)
//! cargo run -p mgrit --no-default-features --example scalar    # without MPI: SerialComm
//! ```
//!
//! Each [`App`] routine below is documented by its contract: what the solver relies on.

use mgrit::harness::check_app;
use mgrit::{App, Comm, Options, OptionsError, Solver, StepInfo};

/// The application: the state of one time point is a single `f64`.
pub struct Scalar {
    /// λ in u' = λu.
    pub lambda: f64,
    /// The initial condition u(t0) = g_0.
    pub u0: f64,
    /// What [`App::access`] saw: (time index, value), for the points this rank owns.
    pub seen: Vec<(usize, f64)>,
}

impl App for Scalar {
    type State = f64;

    /// Φ: advance `u` over one step, from time `info.t_from` to `info.t_to`, in place.
    /// Contract: the result depends only on `u` and `info` (the same bits on every rank: a
    /// step may run on any rank); on level 0 it is the fine propagator; on coarser levels
    /// (`info.level` > 0) it is a coarse propagator over `info.fine_steps` fine steps, here
    /// the same formula with the larger step `info.dt` (rediscretization).
    /// Backward Euler, u ← u / (1 − λΔt), is stable for every Δt when λ < 0, which the
    /// coarse levels need.
    fn step(&mut self, u: &mut f64, info: &StepInfo) {
        *u /= 1.0 - self.lambda * info.dt;
    }

    /// Contract: the initial condition g_0 at the first index of the solve (0 here), and any
    /// initial guess elsewhere (a better guess saves iterations; it never changes the
    /// converged solution).
    fn init(&mut self, index: usize) -> f64 {
        if index == 0 {
            self.u0
        } else {
            0.5
        }
    }

    /// Contract: y ← αx + βy.
    fn sum(&self, alpha: f64, x: &f64, beta: f64, y: &mut f64) {
        *y = alpha * x + beta * *y;
    }

    /// Contract: a norm (‖x‖ ≥ 0, zero only for x = 0, ‖αx‖ = |α|‖x‖); the solver's
    /// residual is the 2-norm over the C-points of these.
    fn norm(&self, x: &f64) -> f64 {
        x.abs()
    }

    /// Contract: append the state to `buf` so that [`App::unpack`] rebuilds it exactly
    /// (states travel between ranks as these buffers).
    fn pack(&self, x: &f64, buf: &mut Vec<f64>) {
        buf.push(*x);
    }

    /// Contract: the state `pack` wrote into `buf`, bit for bit.
    fn unpack(&self, buf: &[f64]) -> f64 {
        buf[0]
    }

    /// Contract: called by [`Solver::access`] after a solve, once per fine point this rank
    /// owns, in time order, with the solution there.
    fn access(&mut self, index: usize, u: &f64) {
        self.seen.push((index, *u));
    }
}

/// What a run found on this rank.
pub struct Run {
    /// C-point residual norm of each iteration that computed one (`Stats::residuals`).
    pub residuals: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    /// u_N, on the rank that owns the final time point (None on the others).
    pub final_value: Option<f64>,
    /// The serial sweep's u_N = u0 / (1 − λh)^N.
    pub serial: f64,
    /// exp(λ t_f).
    pub exact: f64,
}

/// Checks the application, then solves u' = λu (λ = −1, u(0) = 1) on [0, 1] with `steps`
/// backward-Euler steps and at most `levels` MGRIT levels (coarsening factor 4, FCF
/// relaxation, tolerance 10⁻¹²) over the ranks of `comm`. Collective over `comm`.
pub fn run<C: Comm>(comm: C, steps: usize, levels: usize) -> Result<Run, OptionsError> {
    let (t0, tf) = (0.0, 1.0);
    let mut app = Scalar {
        lambda: -1.0,
        u0: 1.0,
        seen: Vec::new(),
    };
    let opts = Options {
        max_levels: levels,
        cfactor: vec![4],
        abs_tol: 1e-12,
        max_iter: 50,
        ..Options::default()
    };
    let mut solver = Solver::new(steps, t0, tf, opts, comm)?;
    // Before trusting a solve, check the application (on every rank).
    let h = (tf - t0) / steps as f64;
    let info = StepInfo {
        level: 0,
        from: 0,
        to: 1,
        t_from: t0,
        t_to: t0 + h,
        fine_steps: 1,
        dt: h,
    };
    let report = check_app(&mut app, solver.comm(), 0, &info, 1e-14);
    assert!(report.passed() && !report.inconclusive(), "{report}");

    let stats = solver.solve(&mut app);
    solver.access(&mut app);
    let final_value = app.seen.iter().find(|(n, _)| *n == steps).map(|p| p.1);
    let serial = (0..steps).fold(app.u0, |u, _| u / (1.0 - app.lambda * h));
    Ok(Run {
        residuals: stats.residuals,
        iterations: stats.iterations,
        converged: stats.converged,
        final_value,
        serial,
        exact: (app.lambda * tf).exp(),
    })
}

/// Prints a run: the residuals (rank 0), and the final value's errors (its owner).
fn report<C: Comm>(comm: &C, run: &Run) {
    if comm.rank() == 0 {
        println!(
            "u' = -u on [0, 1], 64 backward-Euler steps, 3-level MGRIT on {} rank(s)",
            comm.size()
        );
        // With `skip` (the default) the first iteration computes no residual.
        let first = run.iterations - run.residuals.len();
        for (k, r) in run.residuals.iter().enumerate() {
            println!("iteration {:>2}  residual {r:.3e}", first + k + 1);
        }
        println!(
            "{} after {} iterations",
            if run.converged {
                "converged"
            } else {
                "NOT converged"
            },
            run.iterations
        );
    }
    // Let rank 0's lines out first (a gather is a barrier).
    comm.all_gather(&[]);
    if let Some(u) = run.final_value {
        println!(
            "u(1) = {u:.15}  exact exp(-1) = {:.15}  error {:.3e}",
            run.exact,
            (u - run.exact).abs()
        );
        println!(
            "difference to the serial sweep {:.3e}",
            (u - run.serial).abs()
        );
    }
}

#[cfg(feature = "mpi")]
fn main() {
    let universe = mpi::initialize().expect("MPI initializes");
    let comm = mgrit::MpiComm::new(&universe.world());
    let run = run(comm.duplicate(), 64, 3).expect("valid options");
    report(&comm, &run);
    // The communicators are freed before MPI is finalized.
    drop(comm);
    drop(universe);
}

#[cfg(not(feature = "mpi"))]
fn main() {
    let run = run(mgrit::SerialComm, 64, 3).expect("valid options");
    report(&mgrit::SerialComm, &run);
}
