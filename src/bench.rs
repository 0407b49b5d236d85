//! Benchmarks of whole evaluations and training iterations (`layerpar bench`): the cases,
//! their timing, their flop counts and the reference dgemm.
//!
//! A case is a set of `--set` overrides on the default configuration (so the network, the
//! data and the MGRIT settings are built exactly as `layerpar train` builds them) and what is
//! timed: one `objective_gradient` (forward solve, loss, adjoint solve, gradient) on the
//! whole training set as the batch, or one training iteration of the real loop
//! ([`crate::train::run`]).
//!
//! Flops are nominal: one w × w × B matrix product is `step_flops(B) / 4` (a dense step and
//! its adjoint with the gradient are four such products when the adjoint forms Z again,
//! [`odenet::Layer::step_flops`]). From the objective's step counters, summed over the ranks
//! and every MGRIT level, with the derivatives kept (`mgrit.keep_derivatives`, the default):
//! a forward step call is one product; an adjoint step call is two with one level (Kᵀ S and
//! the layer's gradient; the sweep kept σ'(Z)) and one with more, where one product per layer
//! forms the kept σ'(Z) before the solve and one per layer the gradient after it. Without
//! kept derivatives every adjoint step forms Z again: three products with one level, two with
//! more, and a gradient pass of two per layer. An exact forward sweep over a data set (the
//! training loop's loss, accuracy and validation passes) is one product per layer at that
//! batch. The opening and closing layers are left out.
//!
//! An evaluation case also reports the share of the time spent in the step kernels
//! (`Objective::kernel_time`: the forward and adjoint steps, the kept derivatives and the
//! layer gradients), summed over the ranks; the rest is the MGRIT machinery (vector sums,
//! restriction, copies), communication and waiting, and the opening and closing layers.
//!
//! The `conv-step` case ([`CONV_STEP`], selected by name only, not by `all`) times the
//! convolution kernels alone: one step of a convolutional hidden layer ([`odenet::Conv`],
//! kernel 3 × 3, tanh) forward plus its adjoint with the gradient, at c = 4, 8, 16, 32
//! channels of 28 × 28 and 32 × 32 images ([`CONV_CONFIGS`]), on rank 0. Its flops are
//! [`odenet::Layer::step_flops`], four convolutions of 2 · c · 9c · H · W · B each, against
//! two dgemms timed just before each configuration: the im2col GEMM of one example,
//! (H·W × 9c)(9c × c), and a square (256 × 256)(256 × 256). Besides the wall-clock spread
//! it reports the median of the thread's CPU time per step and the rates at that time (what
//! the step costs where other processes share the cores; the dgemms are the best of their
//! runs, which such sharing disturbs less).

use crate::train::{BlockNet, DistNet};
use anyhow::{bail, Result};
use mgrit::Comm;
use odenet::linalg::gemm;
use odenet::Layer;
use std::time::Instant;

/// What a case times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// One `objective_gradient` on the whole training set.
    Evaluation,
    /// One training iteration of the real loop (an epoch of one full batch for Adam).
    Iteration,
    /// One step of a layer alone: forward, then adjoint with the gradient.
    Step,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Evaluation => "evaluation",
            Unit::Iteration => "iteration",
            Unit::Step => "step",
        }
    }
}

/// A benchmark case: its name, what it times and its settings on top of the defaults.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub name: &'static str,
    pub unit: Unit,
    pub about: &'static str,
    pub settings: &'static [&'static str],
}

/// The wide network of the performance table: width 64, 256 layers, tanh, T = 4, Peaks
/// with 1024 training examples (the batch); MGRIT with FCF relaxation, a skipped first
/// down-cycle, 2 forward and 2 adjoint iterations exactly (tolerance 0) and no warm
/// restarts, so that every timed evaluation does the same work.
const WIDE: [&str; 12] = [
    "network.width=64",
    "network.layers=256",
    "network.activation=tanh",
    "network.final_time=4",
    "data.kind=peaks",
    "data.train_size=1024",
    "mgrit.nrelax=1",
    "mgrit.skip=true",
    "mgrit.max_iter=2",
    "mgrit.adjoint_max_iter=2",
    "mgrit.tol=0",
    "mgrit.adjoint_tol=0",
];

const WIDE_SERIAL: [&str; 14] =
    concat_settings(WIDE, ["mgrit.max_levels=1", "mgrit.warm_restart=false"]);
const WIDE_MGRIT3: [&str; 15] = concat_settings(
    WIDE,
    [
        "mgrit.max_levels=3",
        "mgrit.cfactor=4",
        "mgrit.warm_restart=false",
    ],
);

/// The Peaks network of the table trained with Adam on one full batch of 5000 examples and
/// 2-level MGRIT (cf 2, FCF, 2 + 2 iterations exactly, warm restarts as in training).
const PEAKS_ADAM: [&str; 15] = [
    "network.width=8",
    "network.layers=30",
    "network.activation=tanh",
    "data.kind=peaks",
    "data.train_size=5000",
    "optimizer.kind=adam",
    "optimizer.batch_size=0",
    "optimizer.learning_rate=0.01",
    "mgrit.max_levels=2",
    "mgrit.cfactor=2",
    "mgrit.nrelax=1",
    "mgrit.max_iter=2",
    "mgrit.adjoint_max_iter=2",
    "mgrit.tol=0",
    "mgrit.adjoint_tol=0",
];

const fn concat_settings<const A: usize, const B: usize, const C: usize>(
    a: [&'static str; A],
    b: [&'static str; B],
) -> [&'static str; C] {
    assert!(A + B == C);
    let mut out = [""; C];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < C {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// Every case, in the order `--case all` runs them.
pub const CASES: [Case; 3] = [
    Case {
        name: "wide-serial",
        unit: Unit::Evaluation,
        about: "width 64, 256 layers, batch 1024, tanh, T = 4: one forward + backward, exact serial sweep (1 level)",
        settings: &WIDE_SERIAL,
    },
    Case {
        name: "wide-mgrit3",
        unit: Unit::Evaluation,
        about: "the same with 3-level MGRIT, cf 4",
        settings: &WIDE_MGRIT3,
    },
    Case {
        name: "peaks-adam",
        unit: Unit::Iteration,
        about: "Peaks (width 8, 30 layers, batch 5000, tanh), Adam on the full batch, 2-level MGRIT: one training iteration",
        settings: &PEAKS_ADAM,
    },
];

/// The convolution kernels' case (not part of `all`): see the module documentation.
pub const CONV_STEP: Case = Case {
    name: "conv-step",
    unit: Unit::Step,
    about: "one convolutional step (kernel 3×3, tanh) forward + adjoint with gradient at c = 4, 8, 16, 32 channels of 28×28 and 32×32 images, batch 128, on rank 0",
    settings: &[],
};

/// The (channels, image side) of each configuration of [`CONV_STEP`], in the order it runs
/// them.
pub const CONV_CONFIGS: [(usize, usize); 8] = [
    (4, 28),
    (8, 28),
    (16, 28),
    (32, 28),
    (4, 32),
    (8, 32),
    (16, 32),
    (32, 32),
];

/// The cases `--case NAME` selects: one by name, or every case of the performance table
/// ([`CASES`]) for `all`.
pub fn select(name: &str) -> Result<Vec<Case>> {
    if name == "all" {
        return Ok(CASES.to_vec());
    }
    match CASES.iter().chain([&CONV_STEP]).find(|c| c.name == name) {
        Some(c) => Ok(vec![*c]),
        None => {
            let names: Vec<&str> = CASES.iter().chain([&CONV_STEP]).map(|c| c.name).collect();
            bail!(
                "--case {name:?} is not a benchmark case: give one of {} or all",
                names.join(", ")
            )
        }
    }
}

/// Min, median and max of some positive times, seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// The spread of `times` (not empty); the median of an even count is the mean of the two
    /// middle values.
    pub fn of(times: &[f64]) -> Spread {
        assert!(!times.is_empty(), "a spread needs at least one time");
        let mut t = times.to_vec();
        t.sort_by(f64::total_cmp);
        let n = t.len();
        let median = if n % 2 == 1 {
            t[n / 2]
        } else {
            0.5 * (t[n / 2 - 1] + t[n / 2])
        };
        Spread {
            min: t[0],
            median,
            max: t[n - 1],
        }
    }
}

/// GFLOP/s of the dgemm (w × w)(w × B) (odenet's `gemm`, β = 0): the best of `runs` timed
/// loops after a warm-up loop, each of about 4·10⁸ flops (at least one call), some
/// milliseconds at the rates of one core.
pub fn dgemm_gflops(w: usize, batch: usize, runs: usize) -> f64 {
    dgemm_shape_gflops(w, w, batch, runs)
}

/// Deterministic test values in [−0.1, 0.1).
fn fill(n: usize, s: f64) -> Vec<f64> {
    (0..n)
        .map(|i| ((i as f64 * 0.618_033_988_7 + s).fract() - 0.5) * 0.2)
        .collect()
}

/// GFLOP/s of the dgemm (m × k)(k × n) (odenet's `gemm`, β = 0), timed as
/// [`dgemm_gflops`] times (w × w)(w × B).
pub fn dgemm_shape_gflops(m: usize, k: usize, n: usize, runs: usize) -> f64 {
    let (a, b) = (fill(m * k, 0.1), fill(k * n, 0.3));
    let mut c = vec![0.0; m * n];
    let flops = 2.0 * (m * k * n) as f64;
    let mut call = || {
        gemm(m, k, n, 1.0, &a, false, &b, false, 0.0, &mut c);
        std::hint::black_box(&c);
    };
    let reps = (4e8 / flops).clamp(1.0, 1e6) as usize;
    // A warm-up loop as long as a timed one (the caches, the pages, the clock frequency).
    for _ in 0..reps {
        call();
    }
    let best = (0..runs.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                call();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min);
    flops / best / 1e9
}

/// One configuration of [`CONV_STEP`]: its times and the reference dgemms.
#[derive(Clone, Debug)]
pub struct ConvMeasured {
    pub channels: usize,
    /// Images are side × side.
    pub side: usize,
    pub batch: usize,
    /// Seconds per step (forward + adjoint with gradient), one per repetition.
    pub times: Vec<f64>,
    /// The thread's CPU seconds of each repetition (what a step costs when other processes
    /// share the cores).
    pub cpu_times: Vec<f64>,
    /// Nominal flops of one step (four convolutions).
    pub flops: f64,
    /// GFLOP/s of the im2col GEMM of one example, (H·W × 9c)(9c × c).
    pub dgemm: f64,
    /// GFLOP/s of the square dgemm (256 × 256)(256 × 256).
    pub dgemm_square: f64,
}

/// The side of the square reference dgemm of [`CONV_STEP`].
pub const SQUARE: usize = 256;

impl ConvMeasured {
    pub fn spread(&self) -> Spread {
        Spread::of(&self.times)
    }

    /// GFLOP/s at the median time.
    pub fn gflops(&self) -> f64 {
        self.flops / self.spread().median / 1e9
    }

    /// GFLOP/s at the median thread CPU time.
    pub fn cpu_gflops(&self) -> f64 {
        self.flops / Spread::of(&self.cpu_times).median / 1e9
    }

    /// The configuration's one output line.
    pub fn line(&self) -> String {
        let s = self.spread();
        let cpu = self.cpu_gflops();
        let (c, p) = (self.channels, self.side * self.side);
        format!(
            "bench conv-step c={c} {n}×{n}: batch {}, kernel 3×3, tanh, per step min/median/max {:.3}/{:.3}/{:.3} ms ({} repetition{}), {:.3} GFLOP/s, dgemm ({p}×{k})({k}×{c}) {:.3} GFLOP/s, ratio {:.3}; dgemm ({q}×{q})({q}×{q}) {:.3} GFLOP/s, ratio {:.3}; thread CPU time per step median {:.3} ms, {:.3} GFLOP/s, ratios {:.3} and {:.3}; {:.4} GFLOP per step (forward + adjoint with gradient: 4 convolutions)",
            self.batch,
            s.min * 1e3,
            s.median * 1e3,
            s.max * 1e3,
            self.times.len(),
            if self.times.len() == 1 { "" } else { "s" },
            self.gflops(),
            self.dgemm,
            self.gflops() / self.dgemm,
            self.dgemm_square,
            self.gflops() / self.dgemm_square,
            Spread::of(&self.cpu_times).median * 1e3,
            cpu,
            cpu / self.dgemm,
            cpu / self.dgemm_square,
            self.flops / 1e9,
            n = self.side,
            k = 9 * c,
            q = SQUARE,
        )
    }
}

/// Times one configuration of [`CONV_STEP`]: the two reference dgemms, then `repeat` steps
/// (forward out of place, then the out-of-place adjoint with the gradient) of a `channels`
/// × side × side layer on a batch of `batch`, after one warm-up step, each timed by the wall
/// clock and by the thread's CPU time.
pub fn time_conv_step(channels: usize, side: usize, batch: usize, repeat: usize) -> ConvMeasured {
    use odenet::{Conv, Scratch, Step};
    let p = side * side;
    let dgemm = dgemm_shape_gflops(p, 9 * channels, channels, 15);
    let dgemm_square = dgemm_shape_gflops(SQUARE, SQUARE, SQUARE, 15);
    let layer = Conv::new(channels, side, side, 3);
    let n = layer.state_len() * batch;
    let theta = fill(layer.param_len(), 0.1);
    let (u, lam_next) = (fill(n, 0.2), fill(n, 0.3));
    let step = layer.linearize(odenet::Activation::Tanh, 0.0625, &theta);
    let mut scratch = Scratch::new(n);
    let (mut next, mut lam) = (vec![0.0; n], vec![0.0; n]);
    let mut grad = vec![0.0; layer.param_len()];
    let mut run = || {
        step.forward(&u, &mut next, &mut scratch);
        step.adjoint_from(&u, &lam_next, &mut lam, &mut scratch, Some(&mut grad));
        std::hint::black_box((&next, &lam, &grad));
    };
    run();
    let (times, cpu_times) = (0..repeat)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_cpu_seconds());
            run();
            (t.elapsed().as_secs_f64(), thread_cpu_seconds() - c)
        })
        .unzip();
    ConvMeasured {
        channels,
        side,
        batch,
        times,
        cpu_times,
        flops: layer.step_flops(batch),
        dgemm,
        dgemm_square,
    }
}

/// The calling thread's CPU time, seconds (CLOCK_THREAD_CPUTIME_ID).
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Matrix products (w × w × B each) of `evaluations` evaluations on one rank, from its step
/// calls per level over them (`fwd`, `adj`) and the layers it owns (see the module
/// documentation).
pub fn products(fwd: &[u64], adj: &[u64], owned: usize, evaluations: usize, kept: bool) -> f64 {
    let levels = fwd.len().max(adj.len());
    let (f, a) = (
        fwd.iter().sum::<u64>() as f64,
        adj.iter().sum::<u64>() as f64,
    );
    let layers = (owned * evaluations) as f64;
    match (levels <= 1, kept) {
        (true, true) => f + 2.0 * a,
        (true, false) => f + 3.0 * a,
        (false, true) => f + a + 2.0 * layers,
        (false, false) => f + 2.0 * a + 2.0 * layers,
    }
}

/// One case's measurements.
#[derive(Clone, Debug)]
pub struct Measured {
    pub case: Case,
    pub ranks: usize,
    pub width: usize,
    pub layers: usize,
    pub batch: usize,
    pub levels: usize,
    /// Seconds per evaluation or iteration, one per repetition (the slowest rank's).
    pub times: Vec<f64>,
    /// Nominal flops of one evaluation or iteration, summed over the ranks.
    pub flops: f64,
    /// Forward and adjoint step calls of one evaluation or iteration (of J and ∇J; the
    /// training loop's exact sweeps left out), summed over the ranks and the MGRIT levels.
    pub calls: [f64; 2],
    /// Nominal flops of the exact serial sweep's forward + backward on the same batch
    /// (N · step_flops(B)).
    pub serial_flops: f64,
    /// GFLOP/s of the dgemm (w × w)(w × B) on rank 0, measured just before the case.
    pub dgemm: f64,
    /// The share of the time in the step kernels, summed over the ranks (evaluation cases).
    pub kernel_share: Option<f64>,
}

impl Measured {
    pub fn spread(&self) -> Spread {
        Spread::of(&self.times)
    }

    /// GFLOP/s of all ranks together at the median time.
    pub fn gflops_total(&self) -> f64 {
        self.flops / self.spread().median / 1e9
    }

    /// GFLOP/s per rank at the median time.
    pub fn gflops_per_rank(&self) -> f64 {
        self.gflops_total() / self.ranks as f64
    }

    /// The case's one output line.
    pub fn line(&self) -> String {
        let s = self.spread();
        let ms = |t: f64| t * 1e3;
        format!(
            "bench {}: ranks {}, per {} min/median/max {:.3}/{:.3}/{:.3} ms ({} repetition{}), {:.3} GFLOP/s total, {:.3} GFLOP/s per rank, dgemm ({w}×{w})({w}×{}) {:.3} GFLOP/s, ratio per rank/dgemm {:.3}; width {w}, {} layers, batch {}, {} MGRIT level{}, {:.4} GFLOP per {} ({:.2} × the serial forward + backward), step calls {:.0} forward + {:.0} adjoint",
            self.case.name,
            self.ranks,
            self.case.unit.name(),
            ms(s.min),
            ms(s.median),
            ms(s.max),
            self.times.len(),
            if self.times.len() == 1 { "" } else { "s" },
            self.gflops_total(),
            self.gflops_per_rank(),
            self.batch,
            self.dgemm,
            self.gflops_per_rank() / self.dgemm,
            self.layers,
            self.batch,
            self.levels,
            if self.levels == 1 { "" } else { "s" },
            self.flops / 1e9,
            self.case.unit.name(),
            self.flops / self.serial_flops,
            self.calls[0],
            self.calls[1],
            w = self.width,
        ) + &match self.kernel_share {
            Some(k) => format!(
                ", in the step kernels {:.1} % of the time (beyond them {:.1} %)",
                100.0 * k,
                100.0 * (1.0 - k)
            ),
            None => String::new(),
        }
    }
}

/// The MGRIT work overhead P · t_P / t_serial of `mgrit` against `serial` (medians), as a
/// line, when both are evaluations on the same ranks.
pub fn overhead_line(serial: &Measured, mgrit: &Measured) -> Option<String> {
    if serial.ranks != mgrit.ranks
        || serial.case.unit != Unit::Evaluation
        || mgrit.case.unit != Unit::Evaluation
    {
        return None;
    }
    let (ts, tp) = (serial.spread().median, mgrit.spread().median);
    let p = mgrit.ranks as f64;
    Some(format!(
        "bench overhead: MGRIT work overhead P·t_P/t_serial = {} × {:.3} ms / {:.3} ms = {:.3} ({} against {}, medians, both on {} rank{}; speedup t_serial/t_P = {:.3})",
        mgrit.ranks,
        tp * 1e3,
        ts * 1e3,
        p * tp / ts,
        mgrit.case.name,
        serial.case.name,
        mgrit.ranks,
        if mgrit.ranks == 1 { "" } else { "s" },
        ts / tp
    ))
}

/// Every rank waits for every other (an all-reduce).
fn barrier<C: Comm>(comm: &C) {
    comm.all_gather(&[0.0]);
}

/// Step calls over every level.
fn calls(per_level: &[u64]) -> f64 {
    per_level.iter().sum::<u64>() as f64
}

/// Each value summed over the ranks. Collective.
fn summed<C: Comm, const N: usize>(comm: &C, local: [f64; N]) -> [f64; N] {
    let all = comm.all_gather(&local);
    let mut out = [0.0; N];
    for chunk in all.chunks(N) {
        for (o, v) in out.iter_mut().zip(chunk) {
            *o += v;
        }
    }
    out
}

/// The slowest rank's time of each repetition.
pub fn slowest<C: Comm>(comm: &C, local: &[f64]) -> Vec<f64> {
    let all = comm.all_gather(local);
    let n = local.len();
    (0..n)
        .map(|i| all.iter().skip(i).step_by(n).copied().fold(0.0, f64::max))
        .collect()
}

/// One case's timings: the slowest rank's seconds per repetition, the nominal flops of one
/// evaluation or iteration and its forward and adjoint step calls (summed over the ranks),
/// and the share of the time in the step kernels where measured.
pub type Timings = (Vec<f64>, f64, [f64; 2], Option<f64>);

/// Times `repeat` evaluations of J and ∇J at `theta` on (x, y) after one warm-up (every
/// rank starts each together), with derivatives kept or not as `kept` says. Collective.
pub fn time_evaluations(
    dist: &mut BlockNet,
    theta: &[f64],
    x: &[f64],
    y: odenet::Targets<'_>,
    repeat: usize,
    kept: bool,
) -> Timings {
    let mut grad = vec![0.0; theta.len()];
    dist.objective_gradient(theta, x, y, &mut grad);
    dist.fwd_steps.clear();
    dist.adj_steps.clear();
    dist.kernel_time = std::time::Duration::ZERO;
    let mut local = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        barrier(&dist.comm);
        let t = Instant::now();
        dist.objective_gradient(theta, x, y, &mut grad);
        local.push(t.elapsed().as_secs_f64());
    }
    let owned = dist.part.owned_layers.len();
    let per_evaluation =
        products(&dist.fwd_steps, &dist.adj_steps, owned, repeat, kept) / repeat as f64;
    let unit = dist.net.layer().step_flops(y.len()) / 4.0;
    let (fc, ac) = (calls(&dist.fwd_steps), calls(&dist.adj_steps));
    let n = repeat as f64;
    let wall: f64 = local.iter().sum();
    let kernel = dist.kernel_time.as_secs_f64();
    let [flops, f, a, kernel, wall] = summed(
        &dist.comm,
        [per_evaluation * unit, fc / n, ac / n, kernel, wall],
    );
    (
        slowest(&dist.comm, &local),
        flops,
        [f, a],
        Some(kernel / wall),
    )
}

/// Times `repeat` training iterations of the real loop ([`crate::train::run`] with the
/// configured optimizer from the initial parameters `theta`), after one warm-up iteration:
/// the slowest rank's seconds per iteration (from the rows' times), the nominal flops of one
/// iteration and its step calls, summed over the ranks (its evaluations of J and ∇J from the step counters,
/// and the exact forward sweeps over the training and validation sets that measure each
/// row that has the metrics, `output.metrics_every`). Collective.
pub fn time_training(
    par: &crate::parallel::Parallel,
    config: &crate::config::Config,
    dist: &mut DistNet,
    problem: &crate::train::Problem,
    theta: Vec<f64>,
    repeat: usize,
) -> Result<Timings> {
    use crate::scaling::calibrate::Trace;
    use crate::train::{optimizer, Limits, Objective, Start};
    let kind = config.optimizer.kind;
    let built = optimizer::build(
        config,
        dist,
        problem,
        theta.len(),
        &optimizer::OptimizerState::fresh(kind),
    );
    let opt = crate::commands::agree(par, built)?;
    // output.metrics_every applies (`--set output.metrics_every=k` times iterations whose
    // rows skip the whole-set metrics).
    let limits = Limits {
        metrics_every: config.output.metrics_every,
        ..Limits::plain(1 + repeat)
    };
    let mut trace = Trace::default();
    let note = |_: &str| {};
    let outcome = {
        let mut obj = Objective {
            dist: &mut *dist,
            problem,
            note: &note,
        };
        crate::train::run(
            opt,
            &mut obj,
            theta,
            Start::fresh(kind),
            limits,
            &mut [&mut trace],
        )?
    };
    let m = &trace.marks;
    if m.len() < repeat + 2 {
        bail!(
            "training stopped after {} iteration(s) ({}); the benchmark needs {}",
            m.len().saturating_sub(1),
            outcome.stop,
            repeat + 1
        );
    }
    let local: Vec<f64> = (2..=repeat + 1)
        .map(|k| m[k].time_s - m[k - 1].time_s)
        .collect();
    let diff = |a: &[u64], b: &[u64]| -> Vec<u64> {
        (0..b.len())
            .map(|l| b[l] - a.get(l).copied().unwrap_or(0))
            .collect()
    };
    let (first, last) = (&m[1], &m[repeat + 1]);
    let fwd = diff(&first.fwd_steps, &last.fwd_steps);
    let adj = diff(&first.adj_steps, &last.adj_steps);
    let examples = problem.train.len();
    let b = config.optimizer.batch_size;
    let per_epoch = if b == 0 || b >= examples {
        1
    } else {
        examples.div_ceil(b)
    };
    let owned = dist.first().part.owned_layers.len();
    let layer = dist.first().net.layer();
    let batch = examples.min(if b == 0 { examples } else { b });
    let kept = config.mgrit.keep_derivatives;
    let gradients = products(&fwd, &adj, owned, per_epoch * repeat, kept) / repeat as f64;
    // The exact sweeps of the timed rows that have the metrics, per iteration.
    let measured_rows = (2..=repeat + 1).filter(|&k| limits.metrics_at(k)).count() as f64;
    let sweeps = measured_rows / repeat as f64
        * owned as f64
        * (layer.step_flops(examples) + layer.step_flops(problem.val.len()))
        / 4.0;
    let mine = gradients * layer.step_flops(batch) / 4.0 + sweeps;
    let n = repeat as f64;
    let [flops, f, a] = summed(&dist.comm, [mine, calls(&fwd) / n, calls(&adj) / n]);
    Ok((slowest(&dist.comm, &local), flops, [f, a], None))
}

#[cfg(test)]
mod tests {
    use super::{products, select, Spread, CASES};
    use odenet::Layer;

    #[test]
    fn a_spread_is_min_median_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 4.0));
    }

    #[test]
    fn one_level_counts_the_serial_sweeps_step_flops_and_more_levels_add_the_gradient_pass() {
        // N layers, one level: N forward and N adjoint calls are N · step_flops.
        let (n, batch) = (8usize, 16usize);
        let dense = odenet::layer::Dense { width: 4 };
        let unit = dense.step_flops(batch) / 4.0;
        let p = products(&[n as u64], &[n as u64], n, 1, false);
        assert_eq!(p * unit, n as f64 * dense.step_flops(batch));
        // Kept derivatives: the adjoint does not form Z again, three products per layer.
        let p = products(&[n as u64], &[n as u64], n, 1, true);
        assert_eq!(p * unit, 0.75 * n as f64 * dense.step_flops(batch));
        // Two levels: forward calls 1, adjoint calls 2, and 2 per owned layer per evaluation;
        // with kept derivatives adjoint calls 1 (the kept σ'(Z) and the gradient 2 per layer).
        assert_eq!(products(&[10, 3], &[9, 2], 4, 2, false), 13.0 + 22.0 + 16.0);
        assert_eq!(products(&[10, 3], &[9, 2], 4, 2, true), 13.0 + 11.0 + 16.0);
    }

    #[test]
    fn cases_are_selected_by_name_or_all() {
        assert_eq!(select("all").unwrap().len(), CASES.len());
        assert_eq!(select("peaks-adam").unwrap()[0].name, "peaks-adam");
        let e = select("wide").unwrap_err().to_string();
        assert!(
            e.contains("wide-serial, wide-mgrit3, peaks-adam, conv-step or all"),
            "{e}"
        );
        // conv-step by name only.
        assert_eq!(select("conv-step").unwrap()[0].unit, super::Unit::Step);
        assert!(select("all").unwrap().iter().all(|c| c.name != "conv-step"));
        // Every case's settings are valid configuration overrides.
        for c in CASES.iter().chain([&super::CONV_STEP]) {
            let sets: Vec<String> = c.settings.iter().map(|s| s.to_string()).collect();
            crate::config::load(None, &sets).unwrap_or_else(|e| panic!("{}: {e:#}", c.name));
        }
    }
}
