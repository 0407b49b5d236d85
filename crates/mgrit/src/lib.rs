//! # mgrit — multigrid reduction in time, XBraid style, over MPI
//!
//! Solves the forward recurrence u_0 = g_0, u_i = Φ_i(u_{i−1}) for i = 1 … N in parallel over
//! i: the points are split into contiguous blocks over MPI ranks, and an FAS multigrid cycle
//! over a hierarchy of coarser time grids (rediscretized steps Φ^l) makes the solve iterative.
//! With one level it is the plain serial sweep, pipelined across ranks.
//!
//! The user interface is [`App`] (what a state is and how to step it), [`Options`],
//! [`Solver`] and [`Stats`]. A solver owns its communicator, a [`Comm`]: [`SerialComm`]
//! (one process) or, with the default cargo feature `mpi`, [`MpiComm`] (an `MPI_Comm_dup`
//! of the communicator it is made from, so the solver's message tags never meet anyone
//! else's). Give every solver a communicator of its own ([`Comm::duplicate`]) when several
//! solvers or the caller exchange messages over the same ranks. Without the `mpi` feature
//! (`--no-default-features`) the crate needs no MPI library and has everything else.
//!
//! ```
//! use mgrit::{problems::ModelProblem, Options, SerialComm, Solver};
//!
//! // u' = −u, u(0) = 1, forward Euler, N = 64 on [0, 1]; 3 levels with coarsening 4.
//! let mut app = ModelProblem::scalar(-1.0);
//! let opts = Options { max_levels: 3, cfactor: vec![4], ..Options::default() };
//! let mut solver = Solver::new(64, 0.0, 1.0, opts, SerialComm).unwrap();
//! let stats = solver.solve(&mut app);
//! assert!(stats.converged);
//! let serial = app.serial(64, 1.0 / 64.0);
//! assert!((solver.state(64).unwrap()[0] - serial[64][0]).abs() < 1e-10);
//! ```
//!
//! `examples/scalar.rs` is a whole program (u' = λu with an [`App`] of its own, each
//! routine documented by its contract), on one process or under `mpirun`.
//!
//! The algorithm's phases live in their own modules: [`grid`] (levels and C-points),
//! [`distribution`] (which rank owns which points), [`comm`] (neighbour exchange and ordered
//! reductions), `relax` (F- and C-relaxation), `restrict` (injection, residual and
//! τ-correction), `cycle` (V- and F-cycles, coarse solve, correction, stopping). [`harness`]
//! checks an application's implementation on every rank (pass / FAIL / inconclusive), and
//! [`problems`] holds the model problems the solver is tested on.

pub mod comm;
mod cycle;
pub mod distribution;
pub mod fingerprint;
pub mod grid;
pub mod harness;
mod level;
pub mod problems;
mod relax;
mod restrict;

#[cfg(feature = "mpi")]
pub use comm::MpiComm;
pub use comm::{Comm, PostedRecv, SerialComm};
pub use distribution::Distribution;
pub use fingerprint::{fingerprint, Fnv1a};
pub use grid::{Grid, LevelShape};

use level::Level;
use std::ops::Range;
use std::time::Duration;

/// One step of the recurrence as the application sees it: from time index `from` to `to`
/// (fine indices in the application's own time order; `to < from` in a reverse solve),
/// spanning `fine_steps` fine steps on `level`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    pub level: usize,
    pub from: usize,
    pub to: usize,
    pub t_from: f64,
    pub t_to: f64,
    /// Fine steps this step spans: m_l = cf_0 ⋯ cf_{l−1}.
    pub fine_steps: usize,
    /// Step size m_l · h (positive also in a reverse solve), h = (tf − t0)/N.
    pub dt: f64,
}

/// An application: the state of one time point and the operations MGRIT needs on it.
/// Cloning and dropping a state are Rust's `Clone` and `Drop`.
pub trait App {
    type State: Clone;

    /// u ← Φ(u): one step as described by `info` (a fine step on level 0, a rediscretized
    /// coarse step on coarser levels).
    fn step(&mut self, u: &mut Self::State, info: &StepInfo);

    /// dst ← Φ(src) (the same step as [`App::step`], out of place). The default copies and
    /// steps; an application with an out-of-place kernel saves the copy. `dst` may hold
    /// anything (a state of an earlier solve, of another size after [`Solver::reset`]): it
    /// is overwritten wholly and takes the size of Φ(src). A one-level solve relies on this:
    /// it sets only the initial condition and computes every other point with this call.
    fn step_from(&mut self, src: &Self::State, dst: &mut Self::State, info: &StepInfo) {
        self.copy(src, dst);
        self.step(dst, info);
    }

    /// The initial guess at time index `index`; at the first time index of the solve (0, or
    /// N in a reverse solve) this is the initial condition g_0.
    fn init(&mut self, index: usize) -> Self::State;

    /// u ← the initial guess at time index `index` ([`App::init`]), reusing u's storage where
    /// possible: a fresh solve on the same points re-initializes its states this way instead
    /// of allocating new ones. The default assigns [`App::init`].
    fn init_into(&mut self, index: usize, u: &mut Self::State) {
        *u = self.init(index);
    }

    /// y ← α x + β y.
    fn sum(&self, alpha: f64, x: &Self::State, beta: f64, y: &mut Self::State);

    /// A norm of the state (the residual norm is the 2-norm over points of these).
    fn norm(&self, x: &Self::State) -> f64;

    /// Appends the squared norm of a C-point residual to `out`, as one or more parts in a
    /// fixed order (default: the one part `norm(x)²`). An application whose states are parts
    /// of larger ones (data parallelism: each group of ranks holds some examples of a batch)
    /// appends one part per piece and merges them in [`App::combine_norms`].
    fn norm_parts(&self, x: &Self::State, out: &mut Vec<f64>) {
        let n = self.norm(x);
        out.push(n * n);
    }

    /// Turns this rank's residual parts (as [`App::norm_parts`] appended them, C-point by
    /// C-point) into one squared norm per C-point, before they are summed in point order.
    /// Called at the same iterations on every rank, so it may be collective over ranks
    /// outside the solver's communicator. Default: unchanged (one part per point).
    fn combine_norms(&mut self, _parts: &mut Vec<f64>) {}

    /// Appends the state to a message buffer.
    fn pack(&self, x: &Self::State, buf: &mut Vec<f64>);

    /// Rebuilds a state from a message buffer.
    fn unpack(&self, buf: &[f64]) -> Self::State;

    /// The number of values [`App::pack`] appends for `x` (the length of a message carrying
    /// it, so a receive can be posted before the message arrives). The default packs `x`
    /// once to count; an application whose states pack as they are overrides it.
    fn packed_len(&self, x: &Self::State) -> usize {
        let mut buf = Vec::new();
        self.pack(x, &mut buf);
        buf.len()
    }

    /// dst ← src, reusing dst's storage where possible.
    fn copy(&self, src: &Self::State, dst: &mut Self::State) {
        dst.clone_from(src);
    }

    /// Sees the solution at time index `index` after a solve (called for each owned fine
    /// point by [`Solver::access`]).
    fn access(&mut self, _index: usize, _u: &Self::State) {}
}

/// Solver settings; the defaults follow XBraid's.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Maximum number of levels (1 = the serial sweep).
    pub max_levels: usize,
    /// Coarsening factor per level (the last entry repeats).
    pub cfactor: Vec<usize>,
    /// Coarsening stops when the next level would have fewer points than this.
    pub min_coarse: usize,
    /// CF-sweeps after the first F-relaxation, per level (the last entry repeats):
    /// 0 = F-relaxation, 1 = FCF, …
    pub nrelax: Vec<usize>,
    /// Weight ω of C-relaxation: u_c ← (1 − ω) u_c + ω (Φ(u_{c−1}) + g_c).
    pub c_weight: f64,
    /// Maximum iterations (cycles).
    pub max_iter: usize,
    /// Stop when the C-point residual norm ≤ abs_tol …
    pub abs_tol: f64,
    /// … or ≤ rel_tol times the first iteration's residual norm.
    pub rel_tol: f64,
    /// F-cycles (FMG-style) instead of V-cycles.
    pub fmg: bool,
    /// Skip all work of the first down-cycle (as XBraid): the coarse levels start from the
    /// injected initial guess with a zero right-hand side, so the first cycle propagates the
    /// initial condition on the coarsest grid and interpolates it up. That iteration has no
    /// residual. A warm-restarted solve never skips (it would discard the previous solution).
    pub skip: bool,
    /// Start each solve from the previous solution (one-shot training).
    pub warm_restart: bool,
    /// Compute the residual norm (a global reduction); without it, run exactly max_iter cycles.
    pub compute_residual: bool,
    /// Reverse time: solver point i is time index N − i (adjoint solves).
    pub reverse: bool,
    /// 0 silent, 1 a summary line, 2 one line per iteration (printed by rank 0).
    pub verbosity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_levels: 30,
            cfactor: vec![2],
            min_coarse: 2,
            nrelax: vec![1],
            c_weight: 1.0,
            max_iter: 100,
            abs_tol: 1e-10,
            rel_tol: 0.0,
            fmg: false,
            skip: true,
            warm_restart: false,
            compute_residual: true,
            reverse: false,
            verbosity: 0,
        }
    }
}

/// Wall time spent in each phase on this rank.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PhaseTimes {
    pub relax: Duration,
    pub restrict: Duration,
    pub coarse_solve: Duration,
    pub correct: Duration,
    pub residual_norm: Duration,
}

/// What a solve did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Cycles done.
    pub iterations: usize,
    /// C-point residual norm of each iteration that computed one (before its coarse
    /// correction; a skipped first down-cycle has none).
    pub residuals: Vec<f64>,
    /// Whether the tolerance was met.
    pub converged: bool,
    /// Points per level.
    pub points_per_level: Vec<usize>,
    /// Calls of `App::step` on this rank, per level.
    pub steps_per_level: Vec<u64>,
    pub times: PhaseTimes,
    pub wall: Duration,
}

impl Stats {
    /// ρ_k = ‖r_k‖ / ‖r_{k−1}‖ for k ≥ 1.
    pub fn convergence_factors(&self) -> Vec<f64> {
        self.residuals.windows(2).map(|w| w[1] / w[0]).collect()
    }
}

/// Invalid options.
#[derive(Debug, Clone, PartialEq)]
pub struct OptionsError(pub String);

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OptionsError {}

/// An MGRIT solver for N steps on [t0, tf], holding this rank's points on every level and
/// the communicator its solves exchange states over.
pub struct Solver<S, C: Comm = SerialComm> {
    opts: Options,
    grid: Grid,
    dist: Distribution,
    t0: f64,
    dt: f64,
    vrank: usize,
    levels: Vec<Level<S>>,
    initialized: bool,
    /// The next solve starts from the coarse propagation of the initial condition and runs
    /// max_iter cycles after it (see [`Solver::restart_from_coarse`]).
    coarse_start: bool,
    comm: C,
}

/// Why `opts` cannot drive a solve of `steps` steps, if they cannot.
fn validate(steps: usize, opts: &Options) -> Result<(), OptionsError> {
    if steps == 0 {
        return Err(OptionsError("MGRIT needs at least one time step".into()));
    }
    if opts.cfactor.is_empty() || opts.cfactor.iter().any(|&c| c < 2) {
        return Err(OptionsError(format!(
            "every coarsening factor must be ≥ 2, got {:?}",
            opts.cfactor
        )));
    }
    if opts.nrelax.is_empty() {
        return Err(OptionsError("nrelax needs at least one entry".into()));
    }
    if opts.max_levels == 0 || opts.max_iter == 0 {
        return Err(OptionsError("max_levels and max_iter must be ≥ 1".into()));
    }
    if !(opts.c_weight > 0.0 && opts.c_weight <= 2.0) {
        return Err(OptionsError(format!(
            "the C-relaxation weight must lie in (0, 2], got {}",
            opts.c_weight
        )));
    }
    Ok(())
}

impl<S: Clone, C: Comm> Solver<S, C> {
    /// A solver for `steps` fine steps from t0 to tf, distributed over the ranks of `comm`
    /// (this rank is `comm.rank()` of `comm.size()`). The solver owns `comm` and does all its
    /// communication on it; give it a communicator of its own (e.g. `other.duplicate()`) when
    /// the caller also exchanges messages, so that tags cannot clash. No communication
    /// happens here.
    pub fn new(
        steps: usize,
        t0: f64,
        tf: f64,
        opts: Options,
        comm: C,
    ) -> Result<Self, OptionsError> {
        validate(steps, &opts)?;
        let grid = Grid::new(
            steps,
            opts.max_levels,
            &opts.cfactor,
            opts.min_coarse.max(2),
        );
        let dist = Distribution::new(steps, comm.size(), opts.reverse);
        let vrank = dist.virtual_rank(comm.rank());
        let levels = grid
            .levels
            .iter()
            .map(|shape| Level::new(shape.clone(), &dist, vrank))
            .collect();
        Ok(Solver {
            dt: (tf - t0) / steps as f64,
            t0,
            opts,
            grid,
            dist,
            vrank,
            levels,
            initialized: false,
            coarse_start: false,
            comm,
        })
    }

    /// The communicator the solves run on.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Changes the iteration limit and tolerances between solves (e.g. for a final converged
    /// solve after one-shot iterations).
    pub fn set_iterations(&mut self, max_iter: usize, abs_tol: f64, rel_tol: f64) {
        self.opts.max_iter = max_iter.max(1);
        self.opts.abs_tol = abs_tol;
        self.opts.rel_tol = rel_tol;
    }

    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    pub fn distribution(&self) -> &Distribution {
        &self.dist
    }

    /// The solver's fine indices owned by this rank.
    pub fn fine_range(&self) -> Range<usize> {
        self.levels[0].range.clone()
    }

    /// The time indices owned by this rank (ascending).
    pub fn time_range(&self) -> Range<usize> {
        self.dist.time_block(self.dist.real_rank(self.vrank))
    }

    /// The current fine-level value at time index `index`, if this rank owns it.
    pub fn state(&self, index: usize) -> Option<&S> {
        let i = if self.dist.reverse {
            self.dist.steps.checked_sub(index)?
        } else {
            index
        };
        let l = &self.levels[0];
        if l.range.contains(&i) && !l.u.is_empty() {
            Some(&l.u[i - l.range.start])
        } else {
            None
        }
    }

    /// Forgets the previous solution: the next solve starts from `App::init`.
    pub fn reset(&mut self) {
        self.initialized = false;
        self.coarse_start = false;
    }

    /// Forgets the previous solution; the next solve starts from the coarse-grid propagation
    /// of its initial condition: from `App::init`, a first cycle that does no work on the way
    /// down (whatever [`Options::skip`] says), so that the coarsest level propagates the
    /// initial condition sequentially and the way up interpolates it to every level (F-
    /// relaxation). Then it runs its `max_iter` cycles as usual. With one level the solve is
    /// the serial sweep anyway.
    pub fn restart_from_coarse(&mut self) {
        self.initialized = false;
        self.coarse_start = self.levels.len() > 1;
    }

    /// Calls `App::access` on every owned fine point, in time order of the solve.
    pub fn access<A: App<State = S>>(&self, app: &mut A) {
        let l = &self.levels[0];
        for (k, u) in l.u.iter().enumerate() {
            app.access(self.dist.time_index(l.range.start + k), u);
        }
    }
}
