//! Calibration: what the model needs measured on this machine and this run, and the fit of
//! the model's coefficients to it.
//!
//! Measured ([`measure`], collective over the objective's communicator):
//! - the time per evaluation (J and ∇J), the mean of `evaluations` after one warm-up, on the
//!   slowest rank;
//! - the step calls of every rank on every MGRIT level, forward and adjoint, per evaluation;
//! - t_f and t_a, one forward and one adjoint layer step at the run's width and batch (the
//!   best of 5 timed loops);
//! - t_msg, one state message (w × batch doubles): half a ping-pong round trip between ranks
//!   0 and 1, or on one rank a nominal 2 µs + bytes / (4 GB/s).
//!
//! Fitted ([`Measurements::fit`]), with s^f_{q,l} the forward step calls of rank q on level l
//! per evaluation (adjoint alike) and P the calibration rank count:
//! - c^f_l = max_q s^f_{q,l} / max(pts_l(P), 1) for the levels below the coarsest;
//! - k^f = Σ_q s^f_{q,L−1} / N_{L−1} (sequential sweeps of the coarsest level);
//! - ω = measured time / T_raw(P) (see [`super::predict`]).

use super::{predict, Model};
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
}

/// Everything measured for a calibration.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurements {
    /// The MGRIT grid of the run (its level 0 has N = the layers).
    pub grid: Grid,
    /// P, the ranks of the run.
    pub ranks: usize,
    /// Seconds per evaluation, the slowest rank's mean.
    pub seconds_per_evaluation: f64,
    pub forward: StepCounts,
    pub adjoint: StepCounts,
    /// t_f, t_a, seconds per forward and adjoint layer step.
    pub t_forward: f64,
    pub t_adjoint: f64,
    /// t_msg, seconds per state message.
    pub t_message: f64,
    /// Bytes of one state message.
    pub message_bytes: usize,
    /// Whether t_msg was measured (ping-pong on ≥ 2 ranks) rather than nominal.
    pub message_measured: bool,
    /// MGRIT cycles per evaluation (forward + adjoint max_iter) and CF-sweeps per relaxation
    /// (the finest level's), from the solver settings.
    pub cycles: f64,
    pub nrelax: f64,
}

/// A calibration: the measurements and the model fitted to them.
#[derive(Clone, Debug, PartialEq)]
pub struct Calibration {
    pub measured: Measurements,
    pub model: Model,
}

/// Measures on `obj`'s ranks (collective) and fits the model: `evaluations` evaluations of J
/// and ∇J at this rank's part `theta` of the parameters on the batch (`x`, `labels`).
pub fn calibrate<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    x: &[f64],
    labels: odenet::Targets<'_>,
    evaluations: usize,
) -> Calibration {
    let measured = measure(obj, theta, x, labels, evaluations);
    let model = measured.fit();
    Calibration { measured, model }
}

/// The measurements of a calibration (collective over `obj`'s communicator); see the module
/// documentation.
pub fn measure<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    x: &[f64],
    labels: odenet::Targets<'_>,
    evaluations: usize,
) -> Measurements {
    let evals = evaluations.max(1);
    let (seconds_per_evaluation, forward, adjoint) = time_evaluations(obj, theta, x, labels, evals);
    let sh = *obj.net.shape();
    let (w, batch) = (sh.width, labels.len());
    let (t_forward, t_adjoint) = step_times(obj, w, batch);
    let message_bytes = w * batch * 8;
    let ranks = obj.comm.size();
    let t_message = if ranks >= 2 {
        ping_pong(&obj.comm, w * batch)
    } else {
        2e-6 + message_bytes as f64 / 4e9
    };
    let s = obj.settings();
    Measurements {
        grid: obj.grid().clone(),
        ranks,
        seconds_per_evaluation,
        forward,
        adjoint,
        t_forward,
        t_adjoint,
        t_message,
        message_bytes,
        message_measured: ranks >= 2,
        cycles: (s.forward.max_iter + s.adjoint.max_iter) as f64,
        nrelax: s.forward.nrelax[0] as f64,
    }
}

impl Measurements {
    /// The model fitted to these measurements (pure; see the module documentation).
    pub fn fit(&self) -> Model {
        let grid = &self.grid;
        let nl = grid.num_levels();
        let coarse_steps = grid.levels[nl - 1].steps as f64;
        let mut model = Model {
            layers: grid.levels[0].steps,
            t_forward: self.t_forward,
            t_adjoint: self.t_adjoint,
            t_message: self.t_message,
            overhead: 1.0,
            calibrated_ranks: self.ranks,
            c_forward: vec![0.0; nl],
            c_adjoint: vec![0.0; nl],
            k_forward: self.forward.total(nl - 1) / coarse_steps,
            k_adjoint: self.adjoint.total(nl - 1) / coarse_steps,
            cycles: self.cycles,
            nrelax: self.nrelax,
        };
        for l in 0..nl - 1 {
            let pts = predict::busiest_points(grid, self.ranks, l).max(1) as f64;
            model.c_forward[l] = self.forward.busiest(l) / pts;
            model.c_adjoint[l] = self.adjoint.busiest(l) / pts;
        }
        model.overhead =
            self.seconds_per_evaluation / predict::raw_seconds(&model, grid, self.ranks);
        model
    }
}

/// Seconds per evaluation (the slowest rank's mean over `evals` after one warm-up) and every
/// rank's step calls per evaluation on each level, forward and adjoint. Collective.
fn time_evaluations<C: Comm>(
    obj: &mut Objective<C>,
    theta: &[f64],
    x: &[f64],
    labels: odenet::Targets<'_>,
    evals: usize,
) -> (f64, StepCounts, StepCounts) {
    let mut grad = vec![0.0; theta.len()];
    obj.objective_gradient(theta, x, labels, &mut grad);
    obj.fwd_steps.clear();
    obj.adj_steps.clear();
    let t = Instant::now();
    for _ in 0..evals {
        obj.objective_gradient(theta, x, labels, &mut grad);
    }
    let mine = t.elapsed().as_secs_f64() / evals as f64;
    let slowest = obj.comm.all_gather(&[mine]).into_iter().fold(0.0, f64::max);
    let nl = obj.levels();
    let gathered = |v: &[u64]| -> StepCounts {
        let mut local: Vec<f64> = v.iter().map(|&c| c as f64 / evals as f64).collect();
        local.resize(nl, 0.0);
        let all = obj.comm.all_gather(&local);
        StepCounts {
            per_rank: all.chunks(nl).map(<[f64]>::to_vec).collect(),
        }
    };
    let (f, a) = (gathered(&obj.fwd_steps), gathered(&obj.adj_steps));
    (slowest, f, a)
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

/// t_f and t_a: one forward and one adjoint step of the network's layer at width `w` and
/// batch `batch`, on small random controls and states (a fixed seed).
fn step_times<C: Comm>(obj: &Objective<C>, w: usize, batch: usize) -> (f64, f64) {
    let mut g = layerpar_data::rng::generator(7, 3);
    let mut rnd = |len: usize| -> Vec<f64> {
        (0..len)
            .map(|_| 0.1 * (layerpar_data::rng::uniform(&mut g) - 0.5))
            .collect()
    };
    let (k, b, u, mut lam) = (rnd(w * w), rnd(w), rnd(w * batch), rnd(w * batch));
    let theta_n: Vec<f64> = k.into_iter().chain(b).collect();
    let step = obj.net.step(&theta_n, 0.1);
    let mut scratch = Scratch::new(w * batch);
    let mut out = vec![0.0; w * batch];
    let reps = (2e7 / (2.0 * (w * w * batch) as f64)).clamp(3.0, 200.0) as usize;
    let t_f = time_of(|| step.forward(&u, &mut out, &mut scratch), reps);
    let t_a = time_of(|| step.adjoint(&u, &mut lam, &mut scratch, None), reps);
    (t_f, t_a)
}

/// t_msg: half the mean round trip of a `len`-double message between ranks 0 and 1 over 20
/// rounds, as rank 0 measured it (every rank returns the same). Collective; `comm` has at
/// least 2 ranks.
fn ping_pong<C: Comm>(comm: &C, len: usize) -> f64 {
    const PING: i32 = 9001;
    const PONG: i32 = 9002;
    let msg = vec![0.0; len];
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
    let rtt = t.elapsed().as_secs_f64() / rounds as f64;
    comm.all_gather(&[if comm.rank() == 0 { rtt / 2.0 } else { 0.0 }])[0]
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

    fn calibrated(layers: usize, levels: usize, evaluations: usize) -> Calibration {
        let (net, x, labels, theta) = tiny(layers);
        let settings = SolverSettings {
            forward: options(levels),
            adjoint: options(levels),
        };
        let mut obj = Objective::new(net, &SerialComm, settings, None).unwrap();
        calibrate(&mut obj, &theta, &x, (&labels).into(), evaluations)
    }

    #[test]
    fn the_serial_sweep_takes_n_steps_each_way_and_the_fit_reproduces_the_measured_time() {
        let cal = calibrated(6, 1, 2);
        let m = &cal.measured;
        assert_eq!((m.ranks, m.grid.num_levels()), (1, 1));
        assert_eq!(m.forward.per_rank, [[6.0]]);
        assert_eq!(m.adjoint.per_rank, [[6.0]]);
        assert!(!m.message_measured);
        assert_eq!(m.message_bytes, 3 * 5 * 8);
        assert_eq!(m.t_message, 2e-6 + 120.0 / 4e9);
        assert!(m.t_forward > 0.0 && m.t_adjoint > 0.0 && m.seconds_per_evaluation > 0.0);
        assert_eq!((m.cycles, m.nrelax), (4.0, 1.0));
        let model = &cal.model;
        assert_eq!((model.layers, model.calibrated_ranks), (6, 1));
        assert_eq!(
            (model.c_forward.as_slice(), model.k_forward, model.k_adjoint),
            (&[0.0][..], 1.0, 1.0)
        );
        // ω is what makes the model reproduce the measured time at the calibration P.
        let t = predict::seconds(model, &m.grid, 1);
        assert!(
            (t - m.seconds_per_evaluation).abs() <= 1e-12 * t,
            "{t} vs {}",
            m.seconds_per_evaluation
        );
        assert_eq!(
            predict::step_calls(model, &m.grid, 1),
            [predict::StepCalls {
                forward: 6.0,
                adjoint: 6.0
            }]
        );
    }

    /// The step calls calibration measures on each level equal a hand count of the MGRIT
    /// cycle and the counts of an mgrit solver run with the same options on a model problem.
    #[test]
    fn mgrit_step_counts_equal_the_solvers_actual_counts() {
        let evaluations = 3;
        let cal = calibrated(16, 3, evaluations);
        let m = &cal.measured;
        assert_eq!(
            m.grid.levels.iter().map(|l| l.steps).collect::<Vec<_>>(),
            [16, 8, 4]
        );
        // After the warm-up every solve is warm-restarted (no skipped cycle): per V-cycle on
        // one rank, level l with F_l F-points and C_l = N_{l+1} C-points ≥ 1 does F, C, F
        // relaxation, the C-point residual and the final F: 3 F_l + 2 C_l steps, and
        // restriction to it from level l − 1 costs N_l more. Level 0: 3·8 + 2·8 = 40;
        // level 1: 8 + 3·4 + 2·4 = 28; level 2: 4 (restriction) + 4 (coarse solve) = 8.
        // Two cycles per solve, one forward and one adjoint solve per evaluation.
        let hand = [80.0, 56.0, 16.0];
        assert_eq!(m.forward.per_rank, [hand]);
        assert_eq!(m.adjoint.per_rank, [hand]);
        for (opts, counts) in [
            (options(3), &m.forward),
            (
                Options {
                    reverse: true,
                    ..options(3)
                },
                &m.adjoint,
            ),
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
            let per_eval: Vec<f64> = total
                .iter()
                .map(|&t| t as f64 / evaluations as f64)
                .collect();
            assert_eq!(counts.per_rank, [per_eval]);
        }
        // The fit: c_l = calls / pts_l(1), k = coarsest calls / N_2, and the prediction at the
        // calibration rank count gives back the measured calls and time.
        let model = &cal.model;
        assert_eq!(model.c_forward, [80.0 / 17.0, 56.0 / 9.0, 0.0]);
        assert_eq!((model.k_forward, model.k_adjoint), (4.0, 4.0));
        for (l, c) in predict::step_calls(model, &m.grid, 1).iter().enumerate() {
            assert!((c.forward - hand[l]).abs() < 1e-9 && (c.adjoint - hand[l]).abs() < 1e-9);
        }
        let t = predict::seconds(model, &m.grid, 1);
        assert!((t - m.seconds_per_evaluation).abs() <= 1e-12 * t);
    }

    /// The fit on synthetic measurements at P = 2 gives back the model they were made from.
    #[test]
    fn the_fit_recovers_a_synthetic_model() {
        let grid = predict::tests::grid3();
        // Busiest-rank calls c_l · pts_l(2) with pts = (9, 5), coarsest totals k · N_2 = k · 4.
        let counts = |rows: [[f64; 3]; 2]| StepCounts {
            per_rank: rows.map(|r| r.to_vec()).to_vec(),
        };
        let m = Measurements {
            grid: grid.clone(),
            ranks: 2,
            seconds_per_evaluation: 377.25,
            forward: counts([[36.0, 15.0, 4.0], [32.0, 12.0, 4.0]]),
            adjoint: counts([[18.0, 5.0, 2.0], [16.0, 4.0, 2.0]]),
            t_forward: 2.0,
            t_adjoint: 3.0,
            t_message: 0.5,
            message_bytes: 8,
            message_measured: true,
            cycles: 4.0,
            nrelax: 1.0,
        };
        assert_eq!((m.forward.busiest(1), m.forward.total(2)), (15.0, 8.0));
        // The synthetic model of the predict tests (overhead 1.5 = 377.25 / T_raw(2) = 377.25 / 251.5).
        assert_eq!(m.fit(), predict::tests::model3());
    }
}
