//! Predictions of a calibrated [`Model`]: pure functions of the model, the MGRIT grid of the
//! run, the [`Machine`] and the grid of ranks (no measurement, no communication).
//!
//! P = D·L ranks form D rows of L ranks (rank = row·L + column, rows contiguous); row r holds
//! ⌈B/D⌉ of the B training examples (the busiest row) and ⌈V/D⌉ of the V validation examples
//! and runs the layer-parallel solves over its L ranks; gradients are combined over the rows.
//! With L levels of MGRIT (level l: N_l steps), t_f(b), t_a(b) the measured forward and adjoint
//! step times at batch b (interpolated in the measured table), b = ⌈B/D⌉, v = ⌈V/D⌉:
//!
//! ```text
//! pts_l(L)   = the most level-l points one of the L ranks of a row owns (block distribution)
//! own_l(L)   = the ranks of a row that own level-l points
//! C_eval     = Σ_{l<L−1} (c^f_l t_f + c^a_l t_a)·pts_l + (k^f t_f + k^a t_a)·N_{L−1}
//!              + ⌈N/L⌉ t_a                             (one level: N (t_f + t_a))
//! C_val      = N t_f(v)                                (the exact validation sweep, pipelined)
//! m_lev      = cycles·(4 + 2 nrelax)·#{l < L−1 : own_l ≥ 2} + 3     (one level: 2(L−1) + 3)
//! m_coarse   = (k^f + k^a)·(own_{L−1} − 1)             (the coarsest pipeline: owners only)
//! M_eval     = m_lev·h(w b) + m_coarse hops of w b values (each on or off node)
//!              + (cycles + 2)·R(L)                     (residual norms, loss, regularization)
//! G_eval     = 2⌈log₂ D⌉·(h(G) + h(2))                 (the chunk tree over the rows, K = D
//!              chunks: a reduction of ⌈log₂ D⌉ levels and a binomial broadcast of ⌈log₂ D⌉
//!              rounds, of the gradient of the busiest column, G = ⌈N/L⌉(w² + w) + opening +
//!              classifier values, and of the loss and count)
//!            = Σ_{j=1…log₂ D} 2·(h(G/2^j) + h(2))      (D a power of two: the butterfly, a
//!              reduce-scatter by recursive halving and an all-gather by recursive doubling)
//! M_val      = (L − 1)·h(w v) + R(L) + 2⌈log₂ D⌉·h(2)
//! R_iter     = (2m + 8)·(R(L) + R(D))                  (L-BFGS: two-loop, pair, slope, norms;
//!              each dot product gathers its partials along the column, then over the row)
//!              + (1 + e)·(D − 1)·h(G/D)                (the all-gathers over the column, a
//!              ring, of the direction and of each trial point: each row computed 1/D of them)
//! O(D, L)    = (T_opt − T_vec)·L_c / L + T_vec·L_c / (L·D)
//!                                                      (the optimizer's own work on a rank's
//!              1/L of the parameters; its element-wise vector work T_vec (the two-loop
//!              recursion, the trial points, the pairs) is shared out over the D rows, the
//!              rest (copies, the history) is not)
//! T(D, L)    = σ_e ω r(b) e C_eval + σ·(ω_v C_val + O(D, L)) + e (M_eval + G_eval) + M_val
//!              + R_iter
//! ```
//!
//! with h(n) = α + 8n/β the time of one message of n values (α, β: the measured on-node
//! latency and bandwidth when both ranks are on one node of `ranks_per_node` ranks, the
//! interconnect's otherwise), R(n) = ⌈log₂ n⌉ α + 8(n − 1)/β one ordered reduction of a scalar
//! over n ranks (all-gather, recursive doubling), σ(n) ([`sigma`]) the compute slowdown of the
//! n ranks of a node that compute at once (sharing its cores, and the co-run slowdown κ
//! measured at the calibration), with n = min(P, ranks_per_node) for σ and, for σ_e, the
//! same with MGRIT, whose relaxation keeps every rank busy, but n = ⌈min(P,
//! ranks_per_node)/L⌉ on one level, where the L ranks of a row take turns in the sweep;
//! r(b) = [`batch_factor`] how the sweep's cost beyond its kernels at the row's batch b
//! compares with the full batch's (from serial sweeps timed at each b), e the evaluations (J and ∇J) per L-BFGS
//! iteration, m the L-BFGS memory, ω and ω_v the compute overhead factors of an evaluation
//! and of the validation sweep (fitted at the calibration; messages are never scaled by them),
//! T_opt the measured time per iteration outside the evaluations and the validation sweep
//! on the L_c ranks of the calibration, T_vec the part of it measured in the optimizer's
//! element-wise vector work.
//! The serial reference is measured: T_s = e·T_s,eval + T_s,val (one rank, one level).
//! Speedup S = T_s / T(D, L), efficiency E = S / P.

use super::Model;
use mgrit::{Distribution, Grid};

/// The machine a prediction is for (inputs, not measured).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Machine {
    /// α, seconds per message between nodes.
    pub latency: f64,
    /// β, bytes per second between nodes.
    pub bandwidth: f64,
    /// Ranks on one node (messages between them take the measured on-node time).
    pub ranks_per_node: usize,
    /// Cores per node for those ranks (fewer than ranks: the ranks share them).
    pub cores: usize,
}

impl Machine {
    /// Defaults for a typical HDR InfiniBand cluster: α = 1.5 µs, β = 12 GB/s, 64 ranks
    /// (one per core) per node.
    pub const CLUSTER: Machine = Machine {
        latency: 1.5e-6,
        bandwidth: 12e9,
        ranks_per_node: 64,
        cores: 64,
    };

    /// Checks the inputs (a one-line reason when one is out of range).
    pub fn check(&self) -> Result<(), String> {
        if !(self.latency.is_finite() && self.latency >= 0.0) {
            return Err(format!(
                "--latency must be ≥ 0 seconds, not {}",
                self.latency
            ));
        }
        if !(self.bandwidth.is_finite() && self.bandwidth > 0.0) {
            return Err(format!(
                "--bandwidth must be > 0 bytes/s, not {}",
                self.bandwidth
            ));
        }
        if self.ranks_per_node == 0 || self.cores == 0 {
            return Err("--ranks-per-node and --cores must be ≥ 1".into());
        }
        Ok(())
    }

    /// The ranks of one node that compute at once when all `p` ranks do: min(p, ranks_per_node).
    pub fn busy(&self, p: usize) -> usize {
        p.min(self.ranks_per_node)
    }

    /// The ranks of one node that compute at once while the L ranks of each row of `split`
    /// take turns (an exact sweep: one rank per row works, the others wait on its message):
    /// ⌈q/L⌉ of a node's q = min(P, ranks_per_node) consecutive ranks.
    pub fn busy_in_sweep(&self, split: Split) -> usize {
        self.busy(split.ranks()).div_ceil(split.layer)
    }

    /// max(1, n/cores): the slowdown of n ranks of one node computing at once on its cores
    /// (time-sliced when they outnumber the cores).
    pub fn slowdown(&self, n: usize) -> f64 {
        (n as f64 / self.cores as f64).max(1.0)
    }
}

/// σ(n) = max(1, n/cores)·κ(min(n, cores)): the compute slowdown of n ranks of one node
/// computing at once: sharing the cores, and the co-run slowdown κ of the calibration
/// (measured with n_κ copies side by side), taken linear in the ranks that run side by side:
/// κ(c) = 1 + (κ − 1)·(min(c, n_κ) − 1)/(n_κ − 1), 1 for c = 1.
pub fn sigma(model: &Model, m: &Machine, n: usize) -> f64 {
    let side_by_side = n.min(m.cores).max(1);
    let copies = model.co_run_copies.max(1);
    let kappa = if copies < 2 {
        1.0
    } else {
        let c = side_by_side.min(copies) - 1;
        1.0 + (model.co_run.max(1.0) - 1.0) * c as f64 / (copies - 1) as f64
    };
    m.slowdown(n) * kappa
}

/// A grid of ranks: D rows (data groups) of L ranks (layer parallelism).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub data: usize,
    pub layer: usize,
}

impl Split {
    pub fn ranks(&self) -> usize {
        self.data * self.layer
    }
}

/// The model's prediction at one grid of ranks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    pub split: Split,
    /// T(D, L), seconds per training iteration.
    pub seconds: f64,
    /// S = T_s / T.
    pub speedup: f64,
    /// E = S / P (a fraction, 1 = ideal).
    pub efficiency: f64,
    /// The terms of T.
    pub parts: Parts,
}

/// The terms of T(D, L) (seconds per iteration).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Parts {
    /// σ ω e C_eval.
    pub compute: f64,
    /// σ ω_v C_val.
    pub validation: f64,
    /// e M_eval: the solves' messages and reductions within a row.
    pub messages: f64,
    /// e G_eval: the chunk tree (reduction and broadcast) over the rows.
    pub combine: f64,
    /// M_val: the validation sweep's messages.
    pub val_messages: f64,
    /// R_iter: the optimizer's reductions and the all-gather of its direction over the rows.
    pub reductions: f64,
    /// σ O(D, L): the optimizer's own work on a rank's share of the parameters.
    pub optimizer: f64,
}

impl Parts {
    pub fn total(&self) -> f64 {
        self.compute
            + self.validation
            + self.messages
            + self.combine
            + self.val_messages
            + self.reductions
            + self.optimizer
    }
}

/// Step calls on the busiest rank per evaluation on one level, forward and adjoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCalls {
    pub forward: f64,
    pub adjoint: f64,
}

/// The level-`level` point ranges of the `p` ranks of a row.
fn ranges(grid: &Grid, p: usize, level: usize) -> Vec<std::ops::Range<usize>> {
    let lv = &grid.levels[level];
    let d = Distribution::new(grid.levels[0].steps, p, false);
    (0..p)
        .map(|q| d.level_range(q, lv.stride, lv.points()))
        .collect()
}

/// pts_l(P): the most level-`level` points one of `p` ranks owns.
pub fn busiest_points(grid: &Grid, p: usize, level: usize) -> usize {
    ranges(grid, p, level)
        .iter()
        .map(|r| r.len())
        .max()
        .unwrap_or(0)
}

/// The ranks (of `p`) that own level-`level` points, in order.
pub fn owners(grid: &Grid, p: usize, level: usize) -> Vec<usize> {
    ranges(grid, p, level)
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(q, _)| q)
        .collect()
}

/// The most coarsest-level points one of `p` ranks steps to in one sequential sweep: its
/// points, less point 0 (the initial condition, never stepped to).
pub fn coarsest_share(grid: &Grid, p: usize) -> usize {
    coarsest_share_in(grid, p, false)
}

/// [`coarsest_share`] of the forward solve or, `reverse`, of the adjoint, whose time runs
/// backward: every rank keeps its layers, and its points are numbered from the end, so the
/// point never stepped to is fine point N.
pub fn coarsest_share_in(grid: &Grid, p: usize, reverse: bool) -> usize {
    let lv = grid.levels.last().expect("a grid has a level");
    let d = Distribution::new(grid.levels[0].steps, p, reverse);
    (0..p)
        .map(|q| {
            let r = d.level_range(q, lv.stride, lv.points());
            r.len() - usize::from(r.start == 0 && !r.is_empty())
        })
        .max()
        .unwrap_or(0)
}

/// Step calls per evaluation on the busiest rank of a row of `p` ranks, per level: c_l ·
/// pts_l below the coarsest level, k · (the busiest rank's coarsest share) on it.
pub fn step_calls(model: &Model, grid: &Grid, p: usize) -> Vec<StepCalls> {
    let nl = grid.num_levels();
    (0..nl)
        .map(|l| {
            if l + 1 < nl {
                let pts = busiest_points(grid, p, l) as f64;
                StepCalls {
                    forward: model.c_forward[l] * pts,
                    adjoint: model.c_adjoint[l] * pts,
                }
            } else {
                StepCalls {
                    forward: model.k_forward * coarsest_share_in(grid, p, false) as f64,
                    adjoint: model.k_adjoint * coarsest_share_in(grid, p, true) as f64,
                }
            }
        })
        .collect()
}

/// Messages on the critical path of one evaluation within a row of `p` ranks: (m_lev,
/// m_coarse) of the module documentation. None on one rank.
pub fn messages(model: &Model, grid: &Grid, p: usize) -> (f64, f64) {
    if p <= 1 {
        return (0.0, 0.0);
    }
    let nl = grid.num_levels();
    if nl == 1 {
        return (2.0 * (p - 1) as f64 + 3.0, 0.0);
    }
    let busy = (0..nl - 1)
        .filter(|&l| owners(grid, p, l).len() >= 2)
        .count();
    let lev = model.cycles * (4.0 + 2.0 * model.nrelax) * busy as f64 + 3.0;
    let hops = owners(grid, p, nl - 1).len().saturating_sub(1);
    (lev, (model.k_forward + model.k_adjoint) * hops as f64)
}

/// Which node rank `q` of row `row` is on (rows of `layer` ranks, contiguous).
fn node(row: usize, q: usize, split: Split, m: &Machine) -> usize {
    (row * split.layer + q) / m.ranks_per_node
}

/// The most hops along the rank chain `chain` (ranks of a row) that cross a node boundary,
/// over the rows of `split`.
fn crossings(chain: &[usize], split: Split, m: &Machine) -> usize {
    (0..split.data)
        .map(|r| {
            chain
                .windows(2)
                .filter(|w| node(r, w[0], split, m) != node(r, w[1], split, m))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// h(n): one message of `values` f64, off node (`cross`) or on node.
pub fn hop(model: &Model, m: &Machine, values: f64, cross: bool) -> f64 {
    let bytes = 8.0 * values;
    if cross {
        m.latency + bytes / m.bandwidth
    } else {
        model.node_latency + bytes / model.node_bandwidth
    }
}

/// R(n): an ordered reduction of one scalar over `n` ranks (all-gather, recursive doubling),
/// off node when `cross`.
pub fn reduction(model: &Model, m: &Machine, n: usize, cross: bool) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let (alpha, beta) = if cross {
        (m.latency, m.bandwidth)
    } else {
        (model.node_latency, model.node_bandwidth)
    };
    log2_ceil(n) * alpha + 8.0 * (n - 1) as f64 / beta
}

/// ⌈log₂ d⌉.
fn log2_ceil(d: usize) -> f64 {
    (d as f64).log2().ceil()
}

/// t(b): a step time at batch `b`, linear between the measured batch sizes (proportional
/// below the smallest, linear extrapolation above the largest).
pub fn step_time(batches: &[usize], times: &[f64], b: usize) -> f64 {
    let b = b as f64;
    let n = batches.len();
    if n == 1 || b <= batches[0] as f64 {
        return times[0] * b / batches[0] as f64;
    }
    let k = (1..n).find(|&k| b <= batches[k] as f64).unwrap_or(n - 1);
    let (b0, b1) = (batches[k - 1] as f64, batches[k] as f64);
    times[k - 1] + (times[k] - times[k - 1]) * (b - b0) / (b1 - b0)
}

/// r(b) = ω_s(b)/ω_s(B): how the exact sweep's cost beyond its step kernels at a row's batch b
/// compares with the full batch B's, where ω_s(b) = T_s,eval(b) / (N (t_f(b) + t_a(b))) from
/// the serial sweeps timed at the calibration (T_s,eval interpolated linearly between the
/// measured batches, B's from `serial_evaluation`); 1 at b = B and without measured sweeps.
/// The sweep streams every layer's state through memory where the step table's kernel
/// keeps it in cache, so the sweep need not shrink in proportion to its batch.
pub fn batch_factor(model: &Model, b: usize) -> f64 {
    if model.sweep_batches.is_empty() || b >= model.batch {
        return 1.0;
    }
    let mut batches = model.sweep_batches.clone();
    let mut seconds = model.sweep_seconds.clone();
    batches.push(model.batch);
    seconds.push(model.serial_evaluation);
    let omega = |b: usize| {
        let steps = step_time(&model.batches, &model.t_forward, b)
            + step_time(&model.batches, &model.t_adjoint, b);
        step_time(&batches, &seconds, b) / steps
    };
    let r = omega(b) / omega(model.batch);
    if r.is_finite() && r > 0.0 {
        r
    } else {
        1.0
    }
}

/// G: the parameters of the busiest column of L ranks (its ⌈N/L⌉ layers, the opening and
/// the classifier), the values combined, and gathered, over the rows.
fn column_params(model: &Model, l: usize) -> f64 {
    share(model.layers, l) as f64 * model.params_per_layer as f64 + model.edge_params as f64
}

/// ⌈n / d⌉.
fn share(n: usize, d: usize) -> usize {
    n.div_ceil(d)
}

/// C_eval and C_val of the module documentation (seconds, before σ and ω).
pub fn compute(model: &Model, grid: &Grid, split: Split) -> (f64, f64) {
    let (b, v) = (
        share(model.batch, split.data),
        share(model.val_batch, split.data),
    );
    let tf = step_time(&model.batches, &model.t_forward, b);
    let ta = step_time(&model.batches, &model.t_adjoint, b);
    let tv = step_time(&model.batches, &model.t_forward, v);
    let n = grid.levels[0].steps;
    let nl = grid.num_levels();
    let val = n as f64 * tv;
    if nl == 1 {
        return (n as f64 * (tf + ta), val);
    }
    let l = split.layer;
    let mut t = 0.0;
    for lv in 0..nl - 1 {
        t += (model.c_forward[lv] * tf + model.c_adjoint[lv] * ta)
            * busiest_points(grid, l, lv) as f64;
    }
    t += (model.k_forward * tf + model.k_adjoint * ta) * grid.levels[nl - 1].steps as f64;
    t += share(n, l) as f64 * ta;
    (t, val)
}

/// The terms of T(D, L) (seconds per iteration; see the module documentation).
pub fn parts(model: &Model, grid: &Grid, m: &Machine, split: Split) -> Parts {
    let (d, l) = (split.data, split.layer);
    let p = split.ranks();
    let (b, v) = (share(model.batch, d), share(model.val_batch, d));
    let w = model.width as f64;
    let (c_eval, c_val) = compute(model, grid, split);
    let sigma_all = sigma(model, m, m.busy(p));
    let nl = grid.num_levels();
    // An exact sweep keeps one rank per row busy; MGRIT's relaxation, the pipelined
    // validation sweep and the optimizer keep every rank busy.
    let sigma_eval = if nl == 1 {
        sigma(model, m, m.busy_in_sweep(split))
    } else {
        sigma_all
    };
    let e = model.evaluations_per_iteration;
    // Within a row: does any row straddle a node (then its neighbour exchanges do)?
    let all: Vec<usize> = (0..l).collect();
    let row_cross = crossings(&all, split, m) > 0;
    let (lev, coarse) = messages(model, grid, l);
    let chain = owners(grid, l, nl - 1);
    let coarse_cross = if nl == 1 {
        0
    } else {
        crossings(&chain, split, m)
    };
    let sweeps = model.k_forward + model.k_adjoint;
    let hops = chain.len().saturating_sub(1) as f64;
    let state = w * b as f64;
    let mut m_eval = lev * hop(model, m, state, row_cross);
    if hops > 0.0 {
        let off = coarse_cross as f64 * sweeps;
        m_eval += off * hop(model, m, state, true) + (coarse - off) * hop(model, m, state, false);
    }
    m_eval += (model.cycles + 2.0) * reduction(model, m, l, row_cross);
    // Over rows: the chunk tree with K = D chunks. Reduction level j (1 ≤ j ≤ ⌈log₂ D⌉)
    // sends from row r + 2^(j−1) to row r (r a multiple of 2^j) and the broadcast's round j
    // from row r to r + 2^(j−1) (r < 2^(j−1)), in every column: a level is off node when any
    // of its pairs is. With D a power of two the rows form a binary tree and the sum runs as
    // a butterfly: at level j the pairs r, r ⊕ 2^(j−1) exchange G/2^j values, once halving
    // and once gathering.
    let (tree_g, tree_s) = if d > 1 {
        let grad = column_params(model, l);
        let butterfly = d.is_power_of_two();
        let (mut g, mut s) = (0.0, 0.0);
        for j in 1..=log2_ceil(d) as u32 {
            let half = 1usize << (j - 1);
            let pairs = |lo: &mut dyn Iterator<Item = usize>| {
                lo.filter(|&r| r + half < d)
                    .any(|r| (0..l).any(|c| node(r, c, split, m) != node(r + half, c, split, m)))
            };
            if butterfly {
                let cross = pairs(&mut (0..d).filter(|r| r & half == 0));
                let part = grad / (1u64 << j) as f64;
                g += 2.0 * hop(model, m, part, cross);
                s += 2.0 * hop(model, m, 2.0, cross);
                continue;
            }
            let reduce = pairs(&mut (0..d).step_by(2 * half));
            let bcast = pairs(&mut (0..half));
            for cross in [reduce, bcast] {
                g += hop(model, m, grad, cross);
                s += hop(model, m, 2.0, cross);
            }
        }
        (g, s)
    } else {
        (0.0, 0.0)
    };
    let g_eval = tree_g + tree_s;
    let rows = tree_s;
    let val_hops = (l - 1) as f64;
    let m_val = val_hops * hop(model, m, w * v as f64, row_cross)
        + reduction(model, m, l, row_cross)
        + rows;
    // Along a column: does any column straddle a node (rows on different nodes)?
    let col_cross = (0..l).any(|c| (1..d).any(|r| node(r, c, split, m) != node(0, c, split, m)));
    let mut r_iter = (2.0 * model.lbfgs_memory as f64 + 8.0)
        * (reduction(model, m, l, row_cross) + reduction(model, m, d, col_cross));
    if d > 1 {
        r_iter += (1.0 + e)
            * (d - 1) as f64
            * hop(model, m, column_params(model, l) / d as f64, col_cross);
    }
    let shared = model.optimizer_shared.min(model.optimizer);
    let own = (model.optimizer - shared) + shared / d as f64;
    Parts {
        compute: sigma_eval * model.overhead * batch_factor(model, b) * e * c_eval,
        validation: sigma_all * model.val_overhead * c_val,
        messages: e * m_eval,
        combine: e * g_eval,
        val_messages: m_val,
        reductions: r_iter,
        optimizer: sigma_all * own * model.calibrated_ranks as f64 / l as f64,
    }
}

/// T(D, L), seconds per training iteration.
pub fn seconds(model: &Model, grid: &Grid, m: &Machine, split: Split) -> f64 {
    parts(model, grid, m, split).total()
}

/// T_s = e·T_s,eval + T_s,val: the measured serial iteration (one rank, one level).
pub fn serial_seconds(model: &Model) -> f64 {
    model.evaluations_per_iteration * model.serial_evaluation + model.serial_validation
}

/// T, S and E at `split`.
pub fn predict(model: &Model, grid: &Grid, m: &Machine, split: Split) -> Prediction {
    let parts = parts(model, grid, m, split);
    let t = parts.total();
    let speedup = serial_seconds(model) / t;
    Prediction {
        split,
        seconds: t,
        speedup,
        efficiency: speedup / split.ranks() as f64,
        parts,
    }
}

/// The splits of `p` ranks that fit: D divides P, L = P/D ≤ N layers, D ≤ B examples.
pub fn splits(model: &Model, p: usize) -> Vec<Split> {
    (1..=p)
        .filter(|d| p.is_multiple_of(*d))
        .map(|d| Split {
            data: d,
            layer: p / d,
        })
        .filter(|s| s.layer <= model.layers && s.data <= model.batch)
        .collect()
}

/// The fastest split of `p` ranks (`data`: only D = that one), None when none fits.
pub fn best(
    model: &Model,
    grid: &Grid,
    m: &Machine,
    p: usize,
    data: Option<usize>,
) -> Option<Prediction> {
    splits(model, p)
        .into_iter()
        .filter(|s| data.is_none_or(|d| s.data == d))
        .map(|s| predict(model, grid, m, s))
        .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
}

/// One row of the table: the best split of P and the layer-only split (D = 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub ranks: usize,
    pub best: Prediction,
    pub layer_only: Option<Prediction>,
}

/// The best splits for P = 1, 2, 4, … up to `max_ranks` (those P with a split that fits).
pub fn table(
    model: &Model,
    grid: &Grid,
    m: &Machine,
    max_ranks: usize,
    data: Option<usize>,
) -> Vec<Row> {
    std::iter::successors(Some(1usize), |q| q.checked_mul(2))
        .take_while(|&q| q <= max_ranks)
        .filter_map(|p| {
            let best = best(model, grid, m, p, data)?;
            let layer_only = best_layer_only(model, grid, m, p);
            Some(Row {
                ranks: p,
                best,
                layer_only,
            })
        })
        .collect()
}

fn best_layer_only(model: &Model, grid: &Grid, m: &Machine, p: usize) -> Option<Prediction> {
    (p <= model.layers).then(|| predict(model, grid, m, Split { data: 1, layer: p }))
}

#[cfg(test)]
pub(super) mod tests;
