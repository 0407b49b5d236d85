//! Calibration: what the model needs measured on this machine and this run, and the fit of
//! the model's coefficients to it.
//!
//! Measured (by `layerpar scaling`, collective over the run's ranks):
//! - a few real L-BFGS training iterations with the run's settings (the same MGRIT iteration
//!   counts, tolerances and warm restarts as `train`, on the training's own θ trajectory,
//!   after one warm-up iteration): the time per iteration (the slowest rank's), the
//!   evaluations of J and ∇J per iteration (1 + the line search's backtracks, from the
//!   accepted step), and every rank's step calls per MGRIT level per evaluation, forward and
//!   adjoint, from the objective's counters ([`Trace`]);
//! - the validation sweep (the exact forward sweep of every iteration), the slowest rank's
//!   time ([`time_validation`]);
//! - the serial reference: one exact serial evaluation (forward, adjoint and gradient: one
//!   level on one rank) and serial validation sweep, on rank 0 ([`time_serial`]);
//! - t_f(b), t_a(b): one forward and one adjoint layer step at every batch ⌈B/2^j⌉ and
//!   ⌈V/2^j⌉ a data group may hold ([`step_table`]);
//! - α_node, β_node: half ping-pong round trips of 1 value and of one state between ranks 0
//!   and 1 ([`ping_pong`]); on one rank nominal values (2 µs, 4 GB/s).
//!
//! Fitted ([`Measurements::fit`]), with s^f_{q,l} the forward step calls of rank q on level l
//! per evaluation (adjoint alike) and P the calibration rank count (D = 1, L = P):
//! - c^f_l = max_q s^f_{q,l} / max(pts_l(P), 1) for the levels below the coarsest;
//! - k^f = Σ_q s^f_{q,L−1} / N_{L−1} (sequential sweeps of the coarsest level);
//! - ω_v = (T_val − M_val) / (σ C_val) and ω = (T_iter − T_val − e M_eval − R_iter) /
//!   (σ e C_eval) (see [`super::predict`]): the measured time less the modelled messages,
//!   over the modelled compute.

use super::predict::{self, Machine, Split};
use super::Model;
use layer_parallel::Objective;
use mgrit::{Comm, Grid};
use odenet::{Scratch, Step};
use std::time::Instant;

/// Step calls per evaluation of every rank on every level, one direction (forward or adjoint).
#[derive(Clone, Debug, PartialEq)]
pub struct StepCounts {
    /// `per_rank[q][l]`: calls of rank q on level l per evaluation.
    pub per_rank: Vec<Vec<f64>>,
}

impl StepCounts {
    /// Calls on level `l` of the busiest rank.
    pub fn busiest(&self, l: usize) -> f64 {
        self.per_rank.iter().map(|r| r[l]).fold(0.0, f64::max)
    }

    /// Calls on level `l` summed over the ranks.
    pub fn total(&self, l: usize) -> f64 {
        self.per_rank.iter().map(|r| r[l]).sum()
    }

    /// Every rank's counts `local` (this rank's calls per level) gathered. Collective.
    pub fn gather<C: Comm>(comm: &C, local: &[f64], levels: usize) -> StepCounts {
        let mut local = local.to_vec();
        local.resize(levels, 0.0);
        let all = comm.all_gather(&local);
        StepCounts {
            per_rank: all.chunks(levels).map(<[f64]>::to_vec).collect(),
        }
    }
}

/// Everything measured for a calibration.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurements {
    /// The MGRIT grid of the run (its level 0 has N = the layers).
    pub grid: Grid,
    /// P, the ranks of the run (one row: D = 1, L = P).
    pub ranks: usize,
    /// The machine the calibration ran on (cores shared or not).
    pub machine: Machine,
    /// w, B, V, the values of one layer's controls and of the opening and classifier.
    pub width: usize,
    pub batch: usize,
    pub val_batch: usize,
    pub params_per_layer: usize,
    pub edge_params: usize,
    /// T_iter: seconds per training iteration, the slowest rank's mean.
    pub seconds_per_iteration: f64,
    /// T_val: seconds per validation sweep, the slowest rank's.
    pub seconds_per_validation: f64,
    /// Seconds per iteration outside the evaluations of J and ∇J (the optimizer, the
    /// validation sweep, the history), the largest over the ranks.
    pub seconds_outside_evaluations: f64,
    /// T_vec: seconds per iteration of those in the optimizer's element-wise vector work
    /// (what a grid shares out over its rows), the largest over the ranks.
    pub seconds_in_vector_work: f64,
    /// e: evaluations per iteration.
    pub evaluations_per_iteration: f64,
    /// Step calls per evaluation.
    pub forward: StepCounts,
    pub adjoint: StepCounts,
    /// The step-time table (batch sizes ascending).
    pub batches: Vec<usize>,
    pub t_forward: Vec<f64>,
    pub t_adjoint: Vec<f64>,
    /// α_node, β_node.
    pub node_latency: f64,
    pub node_bandwidth: f64,
    pub message_measured: bool,
    /// MGRIT cycles per evaluation (forward + adjoint max_iter), CF-sweeps per relaxation
    /// (the finest level's), the L-BFGS memory.
    pub cycles: f64,
    pub nrelax: f64,
    pub lbfgs_memory: usize,
    /// T_s,eval and T_s,val, seconds.
    pub serial_evaluation: f64,
    pub serial_validation: f64,
    /// (κ, n_κ): the co-run slowdown of the serial evaluation and the copies it was
    /// measured with ([`co_run_slowdown`]).
    pub co_run: (f64, usize),
    /// The batches b < B and T_s,eval(b) on the first b examples ([`time_sweeps`]).
    pub sweeps: (Vec<usize>, Vec<f64>),
}

/// A calibration: the measurements and the model fitted to them.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub measured: Measurements,
    pub model: Model,
}

impl Measurements {
    /// The model fitted to these measurements (pure; see the module documentation).
    pub fn fit(&self) -> Model {
        let grid = &self.grid;
        let nl = grid.num_levels();
        let coarse_steps = grid.levels[nl - 1].steps as f64;
        let mut model = Model {
            layers: grid.levels[0].steps,
            width: self.width,
            batch: self.batch,
            val_batch: self.val_batch,
            params_per_layer: self.params_per_layer,
            edge_params: self.edge_params,
            calibrated_ranks: self.ranks,
            batches: self.batches.clone(),
            t_forward: self.t_forward.clone(),
            t_adjoint: self.t_adjoint.clone(),
            node_latency: self.node_latency,
            node_bandwidth: self.node_bandwidth,
            message_measured: self.message_measured,
            overhead: 1.0,
            val_overhead: 1.0,
            c_forward: vec![0.0; nl],
            c_adjoint: vec![0.0; nl],
            k_forward: self.forward.total(nl - 1) / coarse_steps,
            k_adjoint: self.adjoint.total(nl - 1) / coarse_steps,
            cycles: self.cycles,
            nrelax: self.nrelax,
            evaluations_per_iteration: self.evaluations_per_iteration,
            lbfgs_memory: self.lbfgs_memory,
            serial_evaluation: self.serial_evaluation,
            serial_validation: self.serial_validation,
            optimizer: (self.seconds_outside_evaluations - self.seconds_per_validation).max(0.0),
            optimizer_shared: self.seconds_in_vector_work,
            co_run: self.co_run.0,
            co_run_copies: self.co_run.1,
            sweep_batches: self.sweeps.0.clone(),
            sweep_seconds: self.sweeps.1.clone(),
        };
        if nl == 1 {
            model.k_forward = 1.0;
            model.k_adjoint = 1.0;
        }
        for l in 0..nl - 1 {
            let pts = predict::busiest_points(grid, self.ranks, l).max(1) as f64;
            model.c_forward[l] = self.forward.busiest(l) / pts;
            model.c_adjoint[l] = self.adjoint.busiest(l) / pts;
        }
        // With ω = ω_v = 1 the parts are the raw compute and the messages.
        let split = Split {
            data: 1,
            layer: self.ranks,
        };
        let raw = predict::parts(&model, grid, &self.machine, split);
        model.val_overhead =
            ((self.seconds_per_validation - raw.val_messages) / raw.validation).max(0.0);
        let eval_time = self.seconds_per_iteration
            - self.seconds_per_validation
            - model.optimizer
            - raw.messages
            - raw.combine
            - raw.reductions;
        model.overhead = (eval_time / raw.compute).max(0.0);
        model
    }
}

/// What the training loop's observer records at each row: the time, the accepted step and
/// this rank's step counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Mark {
    pub time_s: f64,
    pub step: f64,
    pub fwd_steps: Vec<u64>,
    pub adj_steps: Vec<u64>,
    /// This rank's seconds in evaluations of J and ∇J so far ([`layer_parallel::Chain::evaluation_time`]).
    pub eval_s: f64,
    /// This rank's seconds in the optimizer's element-wise vector work so far, the part a
    /// D × L grid shares out over the rows ([`layer_parallel::Chain::vector_time`]).
    pub vector_s: f64,
}

/// An observer of a training run that keeps a [`Mark`] per row.
#[derive(Default)]
pub struct Trace {
    pub marks: Vec<Mark>,
}

impl crate::train::Observer for Trace {
    fn observe(&mut self, it: &crate::train::Iterate) -> anyhow::Result<()> {
        self.marks.push(Mark {
            time_s: it.row.time_s,
            step: it.row.step,
            fwd_steps: it.dist.steps().0,
            adj_steps: it.dist.steps().1,
            eval_s: it.dist.evaluation_time().as_secs_f64(),
            vector_s: it.dist.vector_time().as_secs_f64(),
        });
        Ok(())
    }
}

/// Evaluations of the Armijo search that accepted `step` (first trial `initial`, factor
/// `factor` per backtrack): 1 + j for step = initial · factor^j.
pub fn trials(step: f64, initial: f64, factor: f64) -> f64 {
    if step <= 0.0 || initial <= 0.0 || factor <= 0.0 || factor >= 1.0 {
        return 1.0;
    }
    1.0 + ((step / initial).ln() / factor.ln()).round().max(0.0)
}

/// This rank's view of iterations `from + 1 ..= to` of a trace (rows `from` and `to`); None
/// when the trace has no row `to`.
pub fn window(
    marks: &[Mark],
    from: usize,
    to: usize,
    initial: f64,
    factor: f64,
    levels: usize,
) -> Option<Window> {
    if to <= from || to >= marks.len() {
        return None;
    }
    let iters = (to - from) as f64;
    let (a, b) = (&marks[from], &marks[to]);
    let evals: f64 = marks[from + 1..=to]
        .iter()
        .map(|m| trials(m.step, initial, factor))
        .sum();
    let per_eval = |x: &[u64], y: &[u64]| -> Vec<f64> {
        (0..levels)
            .map(|l| {
                let at = |v: &[u64]| v.get(l).copied().unwrap_or(0) as f64;
                (at(y) - at(x)) / evals
            })
            .collect()
    };
    let per_iteration = (b.time_s - a.time_s) / iters;
    Some(Window {
        seconds: per_iteration,
        evaluations: evals / iters,
        forward: per_eval(&a.fwd_steps, &b.fwd_steps),
        adjoint: per_eval(&a.adj_steps, &b.adj_steps),
        outside: (per_iteration - (b.eval_s - a.eval_s) / iters).max(0.0),
        vector: (b.vector_s - a.vector_s) / iters,
    })
}

/// What [`window`] measures over its iterations.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Seconds per iteration.
    pub seconds: f64,
    /// Evaluations of J and ∇J per iteration.
    pub evaluations: f64,
    /// Step calls per evaluation per level, forward and adjoint.
    pub forward: Vec<f64>,
    pub adjoint: Vec<f64>,
    /// Seconds per iteration outside the evaluations.
    pub outside: f64,
    /// Seconds per iteration in the optimizer's element-wise vector work (within `outside`).
    pub vector: f64,
}

/// The batch sizes of the step-time table: ⌈B/2^j⌉ and ⌈V/2^j⌉ down to 1, ascending.
pub fn table_batches(batch: usize, val_batch: usize) -> Vec<usize> {
    let halvings =
        |n: usize| std::iter::successors(Some(n.max(1)), |&b| (b > 1).then(|| b.div_ceil(2)));
    let mut v: Vec<usize> = halvings(batch).chain(halvings(val_batch)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Seconds per call of `f`, the best of 5 timed loops of `reps` calls (after one call).
fn time_of(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// t_f(b) and t_a(b) for each batch of `batches`: one forward and one adjoint step of the
/// network's layer on small random controls and states (a fixed seed).
pub fn step_table(net: &odenet::Network, batches: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let w = net.shape().width;
    let mut g = layerpar_data::rng::generator(7, 3);
    let mut rnd = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| 0.1 * (layerpar_data::rng::uniform(&mut g) - 0.5))
            .collect()
    };
    let theta_n: Vec<f64> = rnd(w * w).into_iter().chain(rnd(w)).collect();
    let step = net.step(&theta_n, 0.1);
    batches
        .iter()
        .map(|&batch| {
            let (u, mut lam) = (rnd(w * batch), rnd(w * batch));
            let mut scratch = Scratch::new(w * batch);
            let mut out = vec![0.0; w * batch];
            let reps = (2e7 / (2.0 * (w * w * batch) as f64)).clamp(3.0, 200.0) as usize;
            let t_f = time_of(|| step.forward(&u, &mut out, &mut scratch), reps);
            let t_a = time_of(|| step.adjoint(&u, &mut lam, &mut scratch, None), reps);
            (t_f, t_a)
        })
        .unzip()
}

/// (α_node, β_node) from half the mean round trips of 1 value and of `len` values between
/// ranks 0 and 1 over 20 rounds each, as rank 0 measured them (every rank returns the same).
/// Collective; `comm` has at least 2 ranks.
pub fn ping_pong<C: Comm>(comm: &C, len: usize) -> (f64, f64) {
    let one = |n: usize| -> f64 {
        const PING: i32 = 9001;
        const PONG: i32 = 9002;
        let msg = vec![0.0; n];
        let rounds = 20;
        let t = Instant::now();
        for _ in 0..rounds {
            match comm.rank() {
                0 => {
                    comm.send(1, PING, msg.clone());
                    comm.wait_sends();
                    comm.recv(1, PONG);
                }
                1 => {
                    comm.recv(0, PING);
                    comm.send(0, PONG, msg.clone());
                    comm.wait_sends();
                }
                _ => {}
            }
        }
        t.elapsed().as_secs_f64() / rounds as f64 / 2.0
    };
    let small = one(1);
    let large = one(len.max(2));
    let alpha = small;
    let beta = 8.0 * (len.max(2) - 1) as f64 / (large - small).max(1e-9);
    let v = comm.all_gather(&if comm.rank() == 0 {
        vec![alpha, beta]
    } else {
        vec![]
    });
    (v[0], v[1])
}

/// Nominal on-node message latency and bandwidth when there is no second rank to measure.
pub const NOMINAL_NODE: (f64, f64) = (2e-6, 4e9);

/// Seconds per validation sweep (exact forward sweep of `vx` at `theta`), the best of
/// `reps` after one, the slowest rank's. Collective.
pub fn time_validation<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    vx: &[f64],
    vy: odenet::Targets<'_>,
    reps: usize,
) -> f64 {
    obj.evaluate(theta, vx, vy);
    let mine = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            obj.evaluate(theta, vx, vy);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    obj.comm.all_gather(&[mine]).into_iter().fold(0.0, f64::max)
}

/// (T_s,eval, T_s,val): the best of `reps` exact evaluations of J and ∇J and validation
/// sweeps of a one-level objective (the serial reference when `obj` is on one rank), after
/// one of each. Returns also the step calls per level of one evaluation.
pub fn time_serial<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    data: (&[f64], odenet::Targets<'_>),
    val: (&[f64], odenet::Targets<'_>),
    reps: usize,
) -> (f64, f64) {
    let mut grad = vec![0.0; theta.len()];
    obj.objective_gradient(theta, data.0, data.1, &mut grad);
    let eval = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            obj.objective_gradient(theta, data.0, data.1, &mut grad);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    let val = time_validation(obj, theta, val.0, val.1, reps);
    (eval, val)
}

/// The batches below B a row of a D × L grid may hold, ⌈B/2⌉, ⌈B/4⌉, …, 1 (ascending).
pub fn sweep_batches(batch: usize) -> Vec<usize> {
    let mut v: Vec<usize> =
        std::iter::successors(Some(batch.div_ceil(2)), |&b| (b > 1).then(|| b.div_ceil(2)))
            .take_while(|&b| b < batch)
            .collect();
    v.reverse();
    v
}

/// T_s,eval(b) for each b of `batches`: the best of two exact evaluations of J and ∇J on the
/// first b examples of `data` (the serial reference's objective and parameters).
pub fn time_sweeps<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    data: (&[f64], odenet::Targets<'_>),
    batches: &[usize],
) -> Vec<f64> {
    let (x, y) = data;
    let per = x.len() / y.len().max(1);
    let mut grad = vec![0.0; theta.len()];
    batches
        .iter()
        .map(|&b| {
            let yb = match y {
                odenet::Targets::Labels(l) => odenet::Targets::Labels(&l[..b]),
                odenet::Targets::Values { values, dim } => odenet::Targets::Values {
                    values: &values[..b * dim],
                    dim,
                },
            };
            (0..2)
                .map(|_| {
                    let t = Instant::now();
                    obj.objective_gradient(theta, &x[..b * per], yb, &mut grad);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        })
        .collect()
}

/// κ: the mean time of one call of each of `runs` when they all run at once, one per
/// thread, over `alone` (the time of one call alone), at least 1; 1 with fewer than two.
/// Each run is called once to warm up, then twice in step with the others (a barrier
/// before each), and its faster time counts.
pub fn co_run_slowdown<F: FnMut() + Send>(alone: f64, runs: Vec<F>) -> f64 {
    let n = runs.len();
    if n < 2 || alone.is_nan() || alone <= 0.0 {
        return 1.0;
    }
    let start = std::sync::Barrier::new(n);
    let times: Vec<f64> = std::thread::scope(|s| {
        let threads: Vec<_> = runs
            .into_iter()
            .map(|mut f| {
                let start = &start;
                s.spawn(move || {
                    f();
                    (0..2)
                        .map(|_| {
                            start.wait();
                            let t = Instant::now();
                            f();
                            t.elapsed().as_secs_f64()
                        })
                        .fold(f64::INFINITY, f64::min)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a co-run thread panicked"))
            .collect()
    });
    (times.iter().sum::<f64>() / n as f64 / alone).max(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use layer_parallel::SolverSettings;
    use mgrit::{problems::ModelProblem, Options, SerialComm, Solver};
    use odenet::{Activation, Loss, Network, Regularization, Shape};

    /// A tiny network (3 inputs, width 3, 4 classes, `layers` layers) on a batch of 5.
    fn tiny(layers: usize) -> (Network, Vec<f64>, Vec<usize>, Vec<f64>) {
        let shape = Shape::dense(3, 3, 4, layers);
        let reg = Regularization {
            tikhonov: 1e-3,
            ddt: 1e-3,
            classifier: 1e-3,
        };
        let net = Network::new(shape, Activation::Tanh, 1.0, Loss::CrossEntropy, reg);
        let wave = |len: usize, s: f64| (0..len).map(|i| 0.5 * (s * i as f64).sin()).collect();
        let theta = wave(net.num_params(), 0.37);
        (net, wave(3 * 5, 1.3), vec![0, 1, 2, 3, 1], theta)
    }

    /// MGRIT on `levels` levels with cf 2, FCF-relaxation, exactly 2 cycles per solve (no
    /// residual test), warm restarts and a skipped first down-cycle as in training.
    fn options(levels: usize) -> Options {
        Options {
            max_levels: levels,
            cfactor: vec![2],
            nrelax: vec![1],
            max_iter: 2,
            compute_residual: false,
            warm_restart: true,
            skip: true,
            ..Options::default()
        }
    }

    fn objective(layers: usize, levels: usize) -> Objective<SerialComm> {
        let (net, ..) = tiny(layers);
        let settings = SolverSettings {
            forward: options(levels),
            adjoint: options(levels),
        };
        Objective::new(net, &SerialComm, settings, None).unwrap()
    }

    #[test]
    fn the_serial_reference_is_one_exact_sweep_each_way() {
        let (_, x, labels, theta) = tiny(6);
        let mut obj = objective(6, 1);
        let (e, v) = time_serial(
            &mut obj,
            &theta,
            (&x, (&labels).into()),
            (&x, (&labels).into()),
            2,
        );
        assert!(e > 0.0 && v > 0.0);
        // One warm-up and two timed evaluations: 6 forward and 6 adjoint steps each (the
        // validation sweeps are not counted).
        assert_eq!(
            (obj.fwd_steps.clone(), obj.adj_steps.clone()),
            (vec![18], vec![18])
        );
    }

    /// The step calls the counters give per evaluation at a fresh θ each evaluation (as in
    /// training) equal a hand count of the MGRIT cycle and the counts of an mgrit solver run
    /// with the same options on a model problem.
    #[test]
    fn mgrit_step_counts_at_fresh_parameters_equal_the_solvers_actual_counts() {
        let evaluations = 3;
        let (_, x, labels, theta) = tiny(16);
        let mut obj = objective(16, 3);
        let mut grad = vec![0.0; theta.len()];
        let at = |k: usize| -> Vec<f64> { theta.iter().map(|t| t + 1e-3 * k as f64).collect() };
        obj.objective_gradient(&at(0), &x, &labels, &mut grad);
        obj.fwd_steps.clear();
        obj.adj_steps.clear();
        for k in 1..=evaluations {
            obj.objective_gradient(&at(k), &x, &labels, &mut grad);
        }
        let per_eval =
            |v: &[u64]| -> Vec<f64> { v.iter().map(|&c| c as f64 / evaluations as f64).collect() };
        // Per V-cycle on one rank, level l with F_l F-points and C_l = N_{l+1} C-points does
        // F, C, F relaxation, the C-point residual and the final F: 3 F_l + 2 C_l steps, and
        // restriction to it from level l − 1 costs N_l more. Level 0: 3·8 + 2·8 = 40;
        // level 1: 8 + 3·4 + 2·4 = 28; level 2: 4 (restriction) + 4 (coarse solve) = 8.
        // Two cycles per solve, one forward and one adjoint solve per evaluation.
        let hand = vec![80.0, 56.0, 16.0];
        assert_eq!(per_eval(&obj.fwd_steps), hand);
        assert_eq!(per_eval(&obj.adj_steps), hand);
        for opts in [
            options(3),
            Options {
                reverse: true,
                ..options(3)
            },
        ] {
            let mut app = ModelProblem::scalar(-1.0);
            let mut solver = Solver::new(16, 0.0, 1.0, opts, SerialComm).unwrap();
            solver.solve(&mut app); // the warm-up
            let mut total = [0u64; 3];
            for _ in 0..evaluations {
                let st = solver.solve(&mut app);
                for (t, s) in total.iter_mut().zip(&st.steps_per_level) {
                    *t += s;
                }
            }
            assert_eq!(per_eval(&total), hand);
        }
        let counts = StepCounts::gather(&SerialComm, &hand, 3);
        assert_eq!(counts.per_rank, std::slice::from_ref(&hand));
        assert_eq!((counts.busiest(0), counts.total(2)), (80.0, 16.0));
    }

    #[test]
    fn a_trace_gives_time_evaluations_and_calls_per_evaluation() {
        // Line search 1, ×0.5: a step of 1 took one evaluation, 0.25 three.
        assert_eq!(trials(1.0, 1.0, 0.5), 1.0);
        assert_eq!(trials(0.25, 1.0, 0.5), 3.0);
        assert_eq!(trials(0.0, 1.0, 0.5), 1.0);
        let mark = |t: f64, step: f64, f: u64, a: u64, eval_s: f64| Mark {
            time_s: t,
            step,
            fwd_steps: vec![f, 2 * f],
            adj_steps: vec![a],
            eval_s,
            vector_s: eval_s / 10.0,
        };
        let marks = [
            mark(0.5, 0.0, 10, 10, 0.25),
            mark(1.5, 0.5, 40, 40, 1.0),
            mark(3.0, 1.0, 100, 70, 2.5),
            mark(4.0, 0.25, 220, 160, 3.0),
        ];
        // Rows 1 → 3: two iterations in 2.5 s, 1 + 3 = 4 evaluations; level 0: 180 / 4 calls;
        // 2 s in evaluations, so 0.25 s per iteration outside them; 0.2 s of vector work,
        // 0.1 s per iteration.
        let w = window(&marks, 1, 3, 1.0, 0.5, 2).unwrap();
        assert_eq!((w.seconds, w.evaluations, w.outside), (1.25, 2.0, 0.25));
        assert!((w.vector - 0.1).abs() < 1e-15, "{}", w.vector);
        assert_eq!(w.forward, [45.0, 90.0]);
        assert_eq!(w.adjoint, [30.0, 0.0]);
        assert_eq!(window(&marks, 1, 4, 1.0, 0.5, 2), None);
        assert_eq!(window(&marks, 1, 1, 1.0, 0.5, 2), None);
    }

    /// The co-run measurement calls every copy once to warm up and twice in step, and is 1
    /// (no slowdown) without two copies or a time alone to compare with.
    #[test]
    fn the_co_run_slowdown_runs_each_copy_three_times_and_is_at_least_one() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let calls = AtomicUsize::new(0);
        let runs: Vec<_> = (0..3)
            .map(|_| {
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                }
            })
            .collect();
        let kappa = co_run_slowdown(1.0, runs);
        assert_eq!(calls.load(Ordering::SeqCst), 9);
        // Three empty calls take far less than the second given as the time alone.
        assert_eq!(kappa, 1.0);
        let one = vec![|| {
            calls.fetch_add(1, Ordering::SeqCst);
        }];
        assert_eq!(co_run_slowdown(1.0, one), 1.0);
        let two: Vec<_> = (0..2).map(|_| || ()).collect();
        assert_eq!(co_run_slowdown(0.0, two), 1.0);
        assert_eq!(calls.load(Ordering::SeqCst), 9, "one copy is not run");
    }

    #[test]
    fn the_sweeps_are_timed_at_every_batch_below_the_full_one_a_row_may_hold() {
        assert_eq!(sweep_batches(8), [1, 2, 4]);
        assert_eq!(sweep_batches(5), [1, 2, 3]);
        assert_eq!(sweep_batches(1), Vec::<usize>::new());
        assert!(sweep_batches(5000).starts_with(&[1, 2, 3, 5, 10, 20, 40, 79]));
        assert_eq!(sweep_batches(5000).last(), Some(&2500));
    }

    #[test]
    fn the_step_table_holds_every_batch_a_data_group_may_hold() {
        assert_eq!(table_batches(8, 4), [1, 2, 4, 8]);
        assert_eq!(
            table_batches(5000, 200),
            [
                1, 2, 3, 4, 5, 7, 10, 13, 20, 25, 40, 50, 79, 100, 157, 200, 313, 625, 1250, 2500,
                5000
            ]
        );
        let (net, ..) = tiny(4);
        let (f, a) = step_table(&net, &[1, 5]);
        assert!(f.len() == 2 && a.len() == 2 && f.iter().chain(&a).all(|&t| t > 0.0));
    }

    /// The fit on synthetic measurements at P = 2 gives back the model they were made from,
    /// and the model then reproduces the measured time per iteration.
    #[test]
    fn the_fit_recovers_a_synthetic_model() {
        let grid = predict::tests::grid3();
        let want = predict::tests::model3();
        // Busiest-rank calls c_l · pts_l(2) with pts = (9, 5), coarsest totals k · N_2 = k · 4.
        let counts = |rows: [[f64; 3]; 2]| StepCounts {
            per_rank: rows.map(|r| r.to_vec()).to_vec(),
        };
        // T_iter(1 × 2) = 1.5·223 + 16 + 465 + 5.5 + 8 + 4 = 833 and T_val = 16 + 5.5 (see
        // the predict tests); outside the evaluations: T_val and the optimizer's 4.
        let m = Measurements {
            grid: grid.clone(),
            ranks: 2,
            machine: predict::tests::node(),
            width: 2,
            batch: 8,
            val_batch: 4,
            params_per_layer: 6,
            edge_params: 4,
            seconds_per_iteration: 833.0,
            seconds_per_validation: 21.5,
            seconds_outside_evaluations: 25.5,
            seconds_in_vector_work: 3.0,
            evaluations_per_iteration: 1.0,
            forward: counts([[36.0, 15.0, 4.0], [32.0, 12.0, 4.0]]),
            adjoint: counts([[18.0, 5.0, 2.0], [16.0, 4.0, 2.0]]),
            batches: want.batches.clone(),
            t_forward: want.t_forward.clone(),
            t_adjoint: want.t_adjoint.clone(),
            node_latency: 0.5,
            node_bandwidth: 16.0,
            message_measured: true,
            cycles: 4.0,
            nrelax: 1.0,
            lbfgs_memory: 0,
            serial_evaluation: 80.0,
            serial_validation: 16.0,
            co_run: (1.0, 1),
            sweeps: (vec![], vec![]),
        };
        assert_eq!((m.forward.busiest(1), m.forward.total(2)), (15.0, 8.0));
        let got = m.fit();
        assert_eq!(got, want);
        let split = Split { data: 1, layer: 2 };
        assert_eq!(predict::seconds(&got, &grid, &m.machine, split), 833.0);
    }
}
