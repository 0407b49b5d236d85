//! The iteration: V- and F-cycles, the coarsest-level solve, the coarse-grid correction, and
//! the stopping test on the C-point residual norm.

use crate::comm::Comm;
use crate::level::{tag, Ctx, Level, Phase};
use crate::relax::{f_relax, relax};
use crate::restrict::restrict;
use crate::{App, Solver, Stats};
use std::time::Instant;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    V,
    F,
}

/// How a cycle ended on level 0.
enum Flow {
    Continue(Option<f64>),
    Converged(f64),
}

/// Sequential solve of level l: u_i = Φ(u_{i−1}) + g_i, pipelined from rank to rank.
fn coarse_solve<A: App, C: Comm>(ctx: &mut Ctx<A, C>, l: usize, lvl: &mut Level<A::State>) {
    let (lo, hi) = (lvl.range.start, lvl.range.end);
    if lo == hi {
        return;
    }
    let t = tag(l, Phase::Coarse);
    let prev = if lo > 0 {
        Some(ctx.recv_state(lvl.left.expect("a left neighbour owns point lo−1"), t))
    } else {
        None
    };
    for i in lo.max(1)..hi {
        ctx.propagate(l, lvl, i, if i == lo { prev.as_ref() } else { None });
    }
    if let Some(right) = lvl.right {
        ctx.send_state(right, t, &lvl.u[lvl.at(hi - 1)]);
    }
    ctx.comm.wait_sends();
}

/// The coarse-grid correction at every owned C-point: u^l_{I·cf} += u^{l+1}_I − v_I. Since
/// v_I is the injected u^l_{I·cf} and the coarse cycle leaves level l untouched, this is
/// u^l_{I·cf} ← u^{l+1}_I. The values are swapped rather than copied: the coarse level's u is
/// not read again before the next restriction overwrites it.
fn correct<S>(fine: &mut Level<S>, coarse: &mut Level<S>) {
    let cf = fine.shape.cf;
    for (k, i) in coarse.range.clone().enumerate() {
        let f = fine.at(i * cf);
        std::mem::swap(&mut coarse.u[k], &mut fine.u[f]);
    }
}

struct CycleState {
    first: bool,
    /// Skip the first down-cycle: only when the solve started from `App::init` (a warm
    /// restart keeps its information instead).
    skip: bool,
    /// The first (skipped) cycle is a coarse start ([`Solver::restart_from_coarse`]) that
    /// further cycles follow: its last fine F-relaxation is left out, since the next cycle's
    /// relaxation begins by recomputing every fine F-point from the same C-points.
    coarse_start: bool,
    tol: Option<f64>,
}

fn cycle<A: App, C: Comm>(
    ctx: &mut Ctx<A, C>,
    levels: &mut [Level<A::State>],
    l: usize,
    kind: Kind,
    st: &mut CycleState,
) -> Flow {
    let nl = levels.len();
    if l == nl - 1 {
        let t = Instant::now();
        coarse_solve(ctx, l, &mut levels[l]);
        ctx.stats.times.coarse_solve += t.elapsed();
        return Flow::Continue(None);
    }
    // A skipped first down-cycle does no work on any level (see `Options::skip`).
    let skipped = st.first && st.skip;
    let t = Instant::now();
    if !skipped {
        relax(ctx, l, &mut levels[l]);
    }
    ctx.stats.times.relax += t.elapsed();
    let t = Instant::now();
    let mut norms = {
        let (a, b) = levels.split_at_mut(l + 1);
        restrict(ctx, l, &mut a[l], &mut b[0], skipped)
    };
    ctx.stats.times.restrict += t.elapsed();
    let mut residual = None;
    if l == 0 && ctx.opts.compute_residual && !skipped {
        let t = Instant::now();
        ctx.app.combine_norms(&mut norms);
        let norm = ctx.comm.ordered_sum(&norms).sqrt();
        ctx.stats.times.residual_norm += t.elapsed();
        residual = Some(norm);
        let tol = *st
            .tol
            .get_or_insert(ctx.opts.abs_tol.max(ctx.opts.rel_tol * norm));
        if norm <= tol {
            return Flow::Converged(norm);
        }
    }
    cycle(ctx, levels, l + 1, kind, st);
    if kind == Kind::F && l + 1 < nl - 1 {
        cycle(ctx, levels, l + 1, Kind::V, st);
    }
    let t = Instant::now();
    {
        let (a, b) = levels.split_at_mut(l + 1);
        correct(&mut a[l], &mut b[0]);
    }
    ctx.stats.times.correct += t.elapsed();
    if !(l == 0 && st.first && st.coarse_start) {
        let t = Instant::now();
        f_relax(ctx, l, &mut levels[l]);
        ctx.stats.times.relax += t.elapsed();
    }
    Flow::Continue(residual)
}

impl<S: Clone, C: Comm> Solver<S, C> {
    /// Solves the recurrence over the solver's communicator (collective: every rank of it
    /// calls `solve`). Starts from `App::init` (or, with `warm_restart`, from the previous
    /// solution with a fresh initial condition; or, after [`Solver::restart_from_coarse`],
    /// from the coarse propagation of the initial condition) and runs cycles until the
    /// C-point residual norm meets the tolerance or `max_iter` cycles are done.
    pub fn solve<A: App<State = S>>(&mut self, app: &mut A) -> Stats {
        let start = Instant::now();
        let nl = self.levels.len();
        let mut stats = Stats {
            points_per_level: self.grid.levels.iter().map(|l| l.points()).collect(),
            steps_per_level: vec![0; nl],
            ..Default::default()
        };
        // Level 0: initial guess, or the previous solution with the initial condition renewed.
        let fresh = !self.initialized || !self.opts.warm_restart;
        let coarse_start = std::mem::take(&mut self.coarse_start);
        if fresh {
            // A fresh solve starts like the first one: no state, right-hand side or scratch of
            // an earlier solve survives on any level (after a `reset` the states may even
            // have another size, e.g. a new batch). The fine states are re-initialized in
            // place (`App::init_into`) when there are as many as before.
            for (l, lvl) in self.levels.iter_mut().enumerate() {
                if l > 0 || lvl.u.len() != lvl.range.len() {
                    lvl.u.clear();
                }
                lvl.g = None;
                lvl.scratch.clear();
            }
        }
        {
            let dist = &self.dist;
            let lvl = &mut self.levels[0];
            if fresh {
                if lvl.u.is_empty() {
                    lvl.u = lvl
                        .range
                        .clone()
                        .map(|i| app.init(dist.time_index(i)))
                        .collect();
                } else if nl == 1 {
                    // The sweep computes every point but 0 from its predecessor
                    // (`App::step_from` sizes its output), so only the initial condition
                    // needs to be set: re-initializing the others would only write memory
                    // that the sweep overwrites.
                    if lvl.range.start == 0 {
                        app.init_into(dist.time_index(0), &mut lvl.u[0]);
                    }
                } else {
                    for (u, i) in lvl.u.iter_mut().zip(lvl.range.clone()) {
                        app.init_into(dist.time_index(i), u);
                    }
                }
                self.initialized = true;
            } else if lvl.range.start == 0 && !lvl.range.is_empty() {
                app.init_into(dist.time_index(0), &mut lvl.u[0]);
            }
        }
        let comm = &self.comm;
        let mut ctx = Ctx {
            app,
            comm,
            dist: &self.dist,
            opts: &self.opts,
            stats: &mut stats,
            t0: self.t0,
            dt: self.dt,
        };
        if nl == 1 {
            let t = Instant::now();
            coarse_solve(&mut ctx, 0, &mut self.levels[0]);
            ctx.stats.times.coarse_solve += t.elapsed();
            ctx.stats.iterations = 1;
            ctx.stats.converged = true;
        } else {
            let kind = if self.opts.fmg { Kind::F } else { Kind::V };
            let mut st = CycleState {
                first: true,
                skip: coarse_start || (fresh && self.opts.skip),
                coarse_start,
                tol: None,
            };
            let verbose = self.opts.verbosity >= 2 && comm.rank() == 0;
            for iter in 0..self.opts.max_iter + usize::from(coarse_start) {
                let flow = cycle(&mut ctx, &mut self.levels, 0, kind, &mut st);
                st.first = false;
                ctx.stats.iterations = iter + 1;
                let (res, done) = match flow {
                    Flow::Continue(r) => (r, false),
                    Flow::Converged(r) => (Some(r), true),
                };
                if let Some(r) = res {
                    if verbose {
                        let factor = ctx.stats.residuals.last().map(|p| r / p);
                        match factor {
                            Some(f) => {
                                println!("mgrit iter {iter:>3}  residual {r:.6e}  factor {f:.4}")
                            }
                            None => println!("mgrit iter {iter:>3}  residual {r:.6e}"),
                        }
                    }
                    ctx.stats.residuals.push(r);
                }
                if done {
                    ctx.stats.converged = true;
                    break;
                }
            }
        }
        stats.wall = start.elapsed();
        if self.opts.verbosity >= 1 && comm.rank() == 0 {
            println!(
                "mgrit: {} levels {:?}, {} iterations, last residual {:.3e}, {}",
                nl,
                stats.points_per_level,
                stats.iterations,
                stats.residuals.last().copied().unwrap_or(0.0),
                if stats.converged {
                    "converged"
                } else {
                    "not converged"
                }
            );
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use crate::problems::ModelProblem;
    use crate::{App, Options, SerialComm, Solver, StepInfo};

    fn opts() -> Options {
        Options {
            max_levels: 3,
            cfactor: vec![4],
            max_iter: 50,
            abs_tol: 1e-13,
            ..Options::default()
        }
    }

    /// After `reset` a solve must equal a new solver's, even when the states change size (a
    /// new batch): no coarse state or right-hand side of the earlier solve may survive. Two
    /// unconverged iterations, so any stale value would show in the result.
    #[test]
    fn a_reset_solver_forgets_every_level() {
        let few = Options {
            max_iter: 2,
            warm_restart: true,
            ..opts()
        };
        // An application whose out-of-place step writes into the destination as it is, so a
        // stale state would keep its size. That breaks `App::step_from`'s contract, which a
        // one-level solve relies on; on three levels every fresh state is re-initialized, and
        // this checks that none of the old size survives.
        struct InPlaceDst(ModelProblem);
        impl App for InPlaceDst {
            type State = Vec<f64>;
            fn step(&mut self, u: &mut Vec<f64>, i: &StepInfo) {
                self.0.step(u, i)
            }
            fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, i: &StepInfo) {
                let mut v = src.clone();
                self.0.step(&mut v, i);
                for (d, x) in dst.iter_mut().zip(&v) {
                    *d = *x;
                }
                if dst.len() < v.len() {
                    dst.extend_from_slice(&v[dst.len()..]);
                }
            }
            fn init(&mut self, i: usize) -> Vec<f64> {
                self.0.init(i)
            }
            fn sum(&self, a: f64, x: &Vec<f64>, b: f64, y: &mut Vec<f64>) {
                self.0.sum(a, x, b, y)
            }
            fn norm(&self, x: &Vec<f64>) -> f64 {
                self.0.norm(x)
            }
            fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
                self.0.pack(x, buf)
            }
            fn unpack(&self, buf: &[f64]) -> Vec<f64> {
                self.0.unpack(buf)
            }
        }
        let mut reused = Solver::new(64, 0.0, 0.5, few.clone(), SerialComm).unwrap();
        reused.solve(&mut InPlaceDst(ModelProblem::linear(5)));
        reused.solve(&mut InPlaceDst(ModelProblem::linear(5)));
        reused.reset();
        let mut small = InPlaceDst(ModelProblem::linear(3));
        let a = reused.solve(&mut small);
        let mut fresh = Solver::new(64, 0.0, 0.5, few, SerialComm).unwrap();
        let b = fresh.solve(&mut small);
        assert_eq!(a.residuals, b.residuals);
        for i in 0..=64 {
            let (x, y) = (reused.state(i).unwrap(), fresh.state(i).unwrap());
            assert_eq!(x.len(), 3, "state {i} has the new size");
            assert_eq!(x, y, "state {i}");
        }
    }

    /// A fresh one-level solve sets only the initial condition and sweeps the rest: on a
    /// solver reused after `reset` with states of another size (and nonsense left in the old
    /// ones), it gives a new solver's states exactly, at the new size.
    #[test]
    fn a_fresh_one_level_solve_overwrites_every_state() {
        let one = Options {
            max_levels: 1,
            warm_restart: false,
            ..opts()
        };
        let mut reused = Solver::new(40, 0.0, 0.5, one.clone(), SerialComm).unwrap();
        reused.solve(&mut ModelProblem::linear(5));
        reused.reset();
        let mut small = ModelProblem::linear(3);
        reused.solve(&mut small);
        let mut fresh = Solver::new(40, 0.0, 0.5, one, SerialComm).unwrap();
        fresh.solve(&mut small);
        let mut nonzero = 0;
        for i in 0..=40 {
            let (x, y) = (reused.state(i).unwrap(), fresh.state(i).unwrap());
            assert_eq!(x.len(), 3, "state {i} has the new size");
            assert_eq!(x, y, "state {i}");
            nonzero += x.iter().filter(|v| **v != 0.0).count();
        }
        assert!(nonzero > 40, "the states are almost all zero: inconclusive");
    }

    /// `restart_from_coarse` forgets a warm solver's solution and starts from the coarse
    /// propagation of the initial condition, then runs max_iter cycles: the same bits as a
    /// new solver's skipped first cycle followed by max_iter cycles (also with `skip` off),
    /// for fewer fine steps (the skipped cycle's last fine F-relaxation is recomputed by the
    /// next cycle anyway). Afterwards the solver warm-restarts again.
    #[test]
    fn a_coarse_restart_is_a_skipped_cycle_followed_by_max_iter_cycles() {
        for (levels, nrelax, skip) in [(2, 1, true), (2, 0, false), (3, 1, true)] {
            let warm = Options {
                max_levels: levels,
                cfactor: vec![4],
                nrelax: vec![nrelax],
                max_iter: 2,
                skip,
                warm_restart: true,
                ..opts()
            };
            // The reference: a new solver whose first cycle is skipped, 3 cycles in all.
            let mut fresh = Solver::new(
                66,
                0.0,
                0.5,
                Options {
                    max_iter: 3,
                    skip: true,
                    ..warm.clone()
                },
                SerialComm,
            )
            .unwrap();
            let want = fresh.solve(&mut ModelProblem::linear(3));
            let mut s = Solver::new(66, 0.0, 0.5, warm.clone(), SerialComm).unwrap();
            s.solve(&mut ModelProblem::linear(5));
            s.solve(&mut ModelProblem::linear(5));
            s.restart_from_coarse();
            let got = s.solve(&mut ModelProblem::linear(3));
            assert_eq!(got.iterations, 3);
            assert_eq!(got.residuals, want.residuals, "{levels} levels");
            assert_eq!(got.residuals.len(), 2);
            for i in 0..=66 {
                assert_eq!(s.state(i), fresh.state(i), "state {i}, {levels} levels");
            }
            let fine_points = 66 - 66 / 4;
            assert_eq!(
                got.steps_per_level[0] + fine_points as u64,
                want.steps_per_level[0]
            );
            assert_eq!(got.steps_per_level[1..], want.steps_per_level[1..]);
            // The next solve is warm again: it starts from this solution.
            let again = s.solve(&mut ModelProblem::linear(3));
            assert_eq!(again.iterations, 2);
            assert!(again.residuals[0] < got.residuals[1], "{again:?} {got:?}");
        }
        // One level: the serial sweep, as without the restart.
        let one = Options {
            max_levels: 1,
            warm_restart: true,
            ..opts()
        };
        let mut s = Solver::new(20, 0.0, 0.5, one.clone(), SerialComm).unwrap();
        s.restart_from_coarse();
        let st = s.solve(&mut ModelProblem::linear(3));
        let mut f = Solver::new(20, 0.0, 0.5, one, SerialComm).unwrap();
        assert_eq!(
            st.steps_per_level,
            f.solve(&mut ModelProblem::linear(3)).steps_per_level
        );
        assert_eq!(s.state(20), f.state(20));
    }

    #[test]
    fn warm_restart_starts_from_the_previous_solution() {
        let mut app = ModelProblem::linear(3);
        let mut cold = Solver::new(64, 0.0, 0.5, opts(), SerialComm).unwrap();
        let first = cold.solve(&mut app);
        assert!(first.converged && first.iterations > 2, "{first:?}");
        let again = cold.solve(&mut app);
        assert_eq!(
            again.iterations, first.iterations,
            "without warm restart each solve starts over"
        );
        let mut warm = Solver::new(
            64,
            0.0,
            0.5,
            Options {
                warm_restart: true,
                skip: false,
                ..opts()
            },
            SerialComm,
        )
        .unwrap();
        warm.solve(&mut app);
        let second = warm.solve(&mut app);
        assert!(second.converged && second.iterations == 1, "{second:?}");
    }

    #[test]
    fn a_fixed_iteration_count_needs_no_residual() {
        let mut app = ModelProblem::cubic();
        let mut s = Solver::new(
            100,
            0.0,
            0.5,
            Options {
                compute_residual: false,
                max_iter: 3,
                ..opts()
            },
            SerialComm,
        )
        .unwrap();
        let st = s.solve(&mut app);
        assert_eq!(st.iterations, 3);
        assert!(st.residuals.is_empty());
        assert_eq!(st.points_per_level, vec![101, 26, 7]);
        assert!(st.steps_per_level.iter().all(|&n| n > 0));
    }

    #[test]
    fn residuals_decrease_and_factors_are_reported() {
        let mut app = ModelProblem::scalar(-5.0);
        let mut s = Solver::new(
            128,
            0.0,
            1.0,
            Options {
                skip: false,
                ..opts()
            },
            SerialComm,
        )
        .unwrap();
        let st = s.solve(&mut app);
        assert!(st.converged);
        let f = st.convergence_factors();
        assert_eq!(f.len(), st.residuals.len() - 1);
        assert!(f.iter().all(|&x| x < 0.5), "{f:?}");
    }

    #[test]
    fn invalid_options_are_rejected() {
        assert!(Solver::<Vec<f64>>::new(
            10,
            0.0,
            1.0,
            Options {
                cfactor: vec![1],
                ..opts()
            },
            SerialComm
        )
        .is_err());
        assert!(Solver::<Vec<f64>>::new(0, 0.0, 1.0, opts(), SerialComm).is_err());
        assert!(Solver::<Vec<f64>>::new(
            10,
            0.0,
            1.0,
            Options {
                c_weight: 3.0,
                ..opts()
            },
            SerialComm
        )
        .is_err());
    }
}
