//! The training driver: one loop ([`run`]) over the layer-parallel objective that drives an
//! [`Optimizer`] one iteration at a time, measures each iterate (a history [`Row`]), hands
//! every row to the [`Observer`]s and decides when to stop ([`Stop`]).

pub mod history;
pub mod optimizer;
pub mod report;

/// The layer-parallel objective on MPI ranks (crates/layer-parallel): a network of one or
/// more ODE blocks.
pub type DistNet = layer_parallel::Chain<mgrit::MpiComm>;
/// The layer-parallel objective of one ODE block on MPI ranks (what the benchmarks and the
/// scaling calibration time).
pub type BlockNet = layer_parallel::Objective<mgrit::MpiComm>;
/// Ordered inner products on this rank's part of the parameters.
pub type DistSpace = layer_parallel::DistSpace<mgrit::MpiComm>;
use crate::config::TargetMeasure;
use anyhow::{bail, Result};
use history::Row;
use layerpar_data::Dataset;
use odenet::{Network, ObjectiveValue, Workspace};
pub use optimizer::{Measured, Next, Objective, Optimizer, OptimizerState};
use std::time::Instant;

/// Examples per forward/adjoint pass when a whole data set is evaluated serially (bounds the
/// memory of the stored states to N · w · CHUNK values).
pub const CHUNK: usize = 8192;

/// A network with its training and validation data.
pub struct Problem {
    pub net: Network,
    pub train: Dataset,
    pub val: Dataset,
}

/// (mean loss, accuracy) of θ on a data set, by exact serial forward sweeps over chunks.
pub fn evaluate(net: &Network, theta: &[f64], data: &Dataset, ws: &mut Workspace) -> (f64, f64) {
    let mut loss = 0.0;
    let mut correct = 0;
    for (x, y) in data.chunks(CHUNK) {
        let (l, c) = net.evaluate(theta, x, y, ws);
        loss += l;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}

/// J(θ) on the whole data set and its gradient, serially, over chunks of at most [`CHUNK`]
/// examples: ∇J = Σ_c (|c|/n) ∇loss_c + ∇reg.
pub fn full_objective_gradient(
    net: &Network,
    theta: &[f64],
    data: &Dataset,
    ws: &mut Workspace,
    grad: &mut [f64],
) -> ObjectiveValue {
    let n = data.len();
    if n <= CHUNK {
        return net.objective_gradient(theta, &data.features, data.y(), ws, grad);
    }
    let mut data_net = net.clone();
    data_net.regularization = Default::default();
    let mut part = vec![0.0; grad.len()];
    grad.fill(0.0);
    let mut loss = 0.0;
    let mut correct = 0;
    for (x, y) in data.chunks(CHUNK) {
        let w = y.len() as f64 / n as f64;
        let v = data_net.objective_gradient(theta, x, y, ws, &mut part);
        optim::axpy(w, &part, grad);
        loss += w * v.loss;
        correct += v.correct;
    }
    let reg = net.regularization(theta, Some(grad));
    ObjectiveValue {
        objective: loss + reg,
        loss,
        correct,
        count: n,
    }
}

/// Why training stopped; `Display` gives the `stopped:` line.
#[derive(Clone, Debug, PartialEq)]
pub enum Stop {
    /// The iteration budget is spent (iterations are epochs for Adam and SGD).
    MaxIter { max_iter: usize, epochs: bool },
    /// ‖∇J‖ ≤ gtol (L-BFGS), or the epoch's mean mini-batch gradient norm (`mean`).
    Gradient { gtol: f64, mean: bool },
    /// The accuracy named by `measure` reached the level's target `accuracy`.
    Target {
        accuracy: f64,
        measure: TargetMeasure,
    },
    /// The line search failed along −∇J at iteration `iter`; θ is the last accepted iterate.
    LineSearch { iter: usize },
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Stop::MaxIter { max_iter, epochs } => {
                let unit = if epochs { " epochs" } else { "" };
                write!(f, "reached optimizer.max_iter = {max_iter}{unit}")
            }
            Stop::Gradient { gtol, mean } => {
                let what = if mean {
                    "mean gradient norm"
                } else {
                    "gradient norm"
                };
                write!(f, "{what} below optimizer.gtol = {gtol:e}")
            }
            Stop::Target { accuracy, measure } => {
                let what = match measure {
                    TargetMeasure::Val => "validation",
                    TargetMeasure::Train => "training",
                };
                write!(f, "{what} accuracy reached {accuracy:.4}")
            }
            Stop::LineSearch { iter } => write!(
                f,
                "line search failed at iteration {iter}; kept the last accepted iterate"
            ),
        }
    }
}

/// Where the loop starts: iteration 0 with no memory, or where a checkpoint left off.
#[derive(Clone, Debug)]
pub struct Start {
    /// The last finished iteration (0: a fresh start, row 0 is still to be measured).
    pub iteration: usize,
    /// The rows so far (of this nested level).
    pub rows: Vec<Row>,
    /// Wall time already spent (added to `time_s`).
    pub time_offset: f64,
    pub optimizer: OptimizerState,
}

impl Start {
    /// A fresh start of `kind`.
    pub fn fresh(kind: crate::config::OptimizerKind) -> Self {
        Start {
            iteration: 0,
            rows: Vec::new(),
            time_offset: 0.0,
            optimizer: OptimizerState::fresh(kind),
        }
    }
}

/// The loop's budget and the level written into the rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Iterations k = 1 … max_iter.
    pub max_iter: usize,
    /// Stop before an iteration once the accuracy named by `target_measure` is at least this.
    pub target_acc: Option<f64>,
    /// Which accuracy of the last row `target_acc` is compared with.
    pub target_measure: TargetMeasure,
    /// Nested-iteration level written into the rows.
    pub level: usize,
    /// optimizer.divergence_factor (0: never stop as diverged; see [`diverged`]).
    pub divergence_factor: f64,
    /// output.metrics_every: the rows of iterations k with k % metrics_every == 0 (and row 0,
    /// the last row, and the rows a checkpoint is written at) get the whole-set metrics; see
    /// [`Limits::metrics_at`].
    pub metrics_every: usize,
    /// output.checkpoint_every (0: no periodic checkpoints): their rows get the metrics.
    pub checkpoint_every: usize,
}

impl Limits {
    /// Limits with the metrics in every row and no periodic checkpoints (benchmarks, the
    /// scaling model's calibration).
    pub fn plain(max_iter: usize) -> Self {
        Limits {
            max_iter,
            target_acc: None,
            target_measure: TargetMeasure::Val,
            level: 0,
            divergence_factor: 0.0,
            metrics_every: 1,
            checkpoint_every: 0,
        }
    }

    /// Whether the row of iteration `iter` gets the metrics over the whole training and
    /// validation sets: row 0, every `metrics_every`-th iteration, the last iteration
    /// (`max_iter`) and the rows of periodic checkpoints. (The loop adds the row after which
    /// the optimizer reports convergence.)
    pub fn metrics_at(&self, iter: usize) -> bool {
        let every = |k: usize| k > 0 && iter.is_multiple_of(k);
        iter == 0
            || iter >= self.max_iter
            || every(self.metrics_every.max(1))
            || every(self.checkpoint_every)
    }
}

/// The loss of a network whose logits are all zero, ℓ₀: ln C for cross-entropy, 1/2 for the
/// squared error against one-hot labels (the scale of a loss that has learned nothing).
pub fn zero_logit_loss(loss: odenet::Loss, classes: usize) -> f64 {
    match loss {
        odenet::Loss::CrossEntropy => (classes.max(1) as f64).ln(),
        odenet::Loss::Mse => 0.5,
    }
}

/// ℓ₀ of a training set: [`zero_logit_loss`] for labels; for real-valued targets the mean of
/// ½‖y_j‖² (the loss of zero outputs), at least 1e-300.
pub fn zero_output_loss(loss: odenet::Loss, train: &Dataset) -> f64 {
    if !train.is_regression() {
        return zero_logit_loss(loss, train.classes);
    }
    let sum: f64 = train.targets.iter().map(|y| 0.5 * y * y).sum();
    (sum / train.len().max(1) as f64).max(1e-300)
}

/// What the regression columns of the history need from the validation set: its size, the
/// targets per example and the total sum of squares SST = Σ_j ‖y_j − ȳ‖².
pub struct ValidationMetrics {
    regression: bool,
    examples: f64,
    targets: f64,
    sst: f64,
}

impl ValidationMetrics {
    pub fn new(val: &Dataset) -> Self {
        ValidationMetrics {
            regression: val.is_regression(),
            examples: val.len() as f64,
            targets: val.target_dim as f64,
            sst: if val.is_regression() {
                odenet::loss::total_sum_of_squares(&val.targets, val.target_dim)
            } else {
                0.0
            },
        }
    }

    /// (RMSE, R²) from the mean validation loss ℓ = (1/n) Σ_j ½‖z_j − y_j‖² (None for
    /// classification): SSE = 2nℓ, RMSE = √(SSE/(n·m)), R² = 1 − SSE/SST (None when SST = 0).
    pub fn regression(&self, val_loss: f64) -> (Option<f64>, Option<f64>) {
        if !self.regression {
            return (None, None);
        }
        let sse = 2.0 * self.examples * val_loss;
        let rmse = (sse / (self.examples * self.targets)).sqrt();
        let r2 = (self.sst > 0.0).then(|| 1.0 - sse / self.sst);
        (Some(rmse), r2)
    }
}

/// Why the objective `j` of `row` counts as diverged after the rows `before` (None if it
/// does not): j is above ℓ₀ (`zero_loss`) and above `factor` × min(best J so far, ℓ₀). On
/// the first row that is j > factor · ℓ₀. `factor` = 0 never stops.
pub fn diverged(row: &Row, before: &[Row], factor: f64, zero_loss: f64) -> Option<String> {
    let j = row.objective;
    let best = before
        .iter()
        .filter(|r| r.objective.is_finite())
        .min_by(|a, b| a.objective.total_cmp(&b.objective));
    let reference = best.map_or(zero_loss, |b| b.objective.min(zero_loss));
    if factor == 0.0 || j <= zero_loss || j <= factor * reference {
        return None;
    }
    let (what, hint) = match best {
        Some(b) if b.objective < zero_loss => (
            format!("its best {:.4e} (iteration {})", b.objective, b.iter),
            "try a smaller optimizer.learning_rate",
        ),
        Some(_) => (
            format!("the loss of zero logits {zero_loss:.4}"),
            "try a smaller optimizer.learning_rate",
        ),
        None => (
            format!("the loss of zero logits {zero_loss:.4}"),
            "try smaller network.init_* values",
        ),
    };
    Some(format!(
        "the objective diverged: {j:.4e} at iteration {} is more than optimizer.divergence_factor = {factor:e} times {what}; {hint} (optimizer.divergence_factor = 0 lets it go on); no checkpoint of it is written, earlier ones are kept",
        row.iter
    ))
}

/// One finished iteration as observers see it.
pub struct Iterate<'a> {
    pub row: &'a Row,
    /// Every row of this run so far (of this level), `row` last.
    pub rows: &'a [Row],
    /// This rank's part of θ_k.
    pub theta: &'a [f64],
    pub optimizer: &'a dyn Optimizer,
    pub dist: &'a DistNet,
}

/// Something that follows the run: the history file, the progress display, the checkpoint
/// policy. Called on every rank with every row, in order, before the next iteration; an
/// error ends the run (on every rank: an observer that fails on one rank only must end the
/// job itself).
pub trait Observer {
    fn observe(&mut self, it: &Iterate) -> Result<()>;
}

/// How training ended: this rank's parameters and optimizer memory, every row (of this
/// level, with the resumed ones) and why.
pub struct Outcome {
    pub theta: Vec<f64>,
    pub rows: Vec<Row>,
    pub stop: Stop,
    pub optimizer: OptimizerState,
}

/// Trains this rank's part `theta` from `start`: row 0 (on a fresh start), then iterations
/// start.iteration + 1 … limits.max_iter of `opt`. Before each iteration it stops if the last
/// row reached the target accuracy (validation or training, `limits.target_measure`) or the optimizer has converged; each row (finite J, or
/// an error) goes to every observer in order.
pub fn run(
    mut opt: Box<dyn Optimizer>,
    obj: &mut Objective,
    mut theta: Vec<f64>,
    start: Start,
    limits: Limits,
    observers: &mut [&mut dyn Observer],
) -> Result<Outcome> {
    let t0 = Instant::now();
    let clock = || start.time_offset + t0.elapsed().as_secs_f64();
    let mut rows = start.rows;
    let measure = |r: &Row| match limits.target_measure {
        TargetMeasure::Val => r.val_acc,
        TargetMeasure::Train => r.train_acc,
    };
    let mut last_acc = rows.last().map(measure).unwrap_or(0.0);
    let val_metrics = ValidationMetrics::new(&obj.problem.val);
    let zero_loss = zero_output_loss(obj.problem.net.loss, &obj.problem.train);
    // `full`: the row gets the validation metrics (and the optimizer measured the whole
    // training set); otherwise those columns are empty (NaN, None).
    let mut emit = |obj: &mut Objective,
                    rows: &mut Vec<Row>,
                    opt: &dyn Optimizer,
                    theta: &[f64],
                    iter: usize,
                    m: Measured,
                    full: bool|
     -> Result<f64> {
        let val = &obj.problem.val;
        let (val_loss, val_acc) = if full {
            obj.dist.evaluate(theta, &val.features, val.y())
        } else {
            (f64::NAN, f64::NAN)
        };
        let regression = val.is_regression();
        let unless_regression = |acc: f64| if regression { f64::NAN } else { acc };
        let (val_rmse, val_r2) = if full {
            val_metrics.regression(val_loss)
        } else {
            (None, None)
        };
        let net = &obj.problem.net;
        let scale = obj.dist.time_scale(theta);
        let row = Row {
            iter,
            objective: m.objective,
            loss: m.loss,
            grad_norm: m.grad_norm,
            train_acc: unless_regression(m.train_acc),
            val_acc: unless_regression(val_acc),
            fwd_res: m.fwd_res,
            adj_res: m.adj_res,
            time_s: clock(),
            step: m.step,
            level: limits.level,
            val_loss,
            val_rmse,
            val_r2,
            final_time: scale * net.final_time,
        };
        // A row without the training-set objective (Adam, SGD between metrics rows) is
        // checked at the next row that has it.
        if m.training_set || full {
            if !row.objective.is_finite() {
                bail!(
                    "the objective is not finite at iteration {} (try a smaller optimizer.learning_rate)",
                    row.iter
                );
            }
            if let Some(why) = diverged(&row, rows, limits.divergence_factor, zero_loss) {
                bail!(why);
            }
        }
        let acc = measure(&row);
        rows.push(row);
        let it = Iterate {
            row: rows.last().expect("just pushed"),
            rows,
            theta,
            optimizer: opt,
            dist: &*obj.dist,
        };
        for o in observers.iter_mut() {
            o.observe(&it)?;
        }
        Ok(acc)
    };
    if let Some(m) = opt.start(obj, &theta, start.iteration == 0) {
        last_acc = emit(obj, &mut rows, opt.as_ref(), &theta, 0, m, true)?;
    }
    let stop = 'iterations: {
        for iter in start.iteration + 1..=limits.max_iter {
            if let Some(accuracy) = limits.target_acc.filter(|&t| last_acc >= t) {
                break 'iterations Stop::Target {
                    accuracy,
                    measure: limits.target_measure,
                };
            }
            if let Some(stop) = opt.converged_before() {
                break 'iterations stop;
            }
            // Whether this row gets the whole-set metrics; a row after which the optimizer
            // has converged is the last and gets them too (Adam and SGD measure the training
            // set then as well, see [`Optimizer::next_iter`]; L-BFGS's gradient test runs
            // before the next iteration, on the iterate of this row).
            let metrics = limits.metrics_at(iter);
            match opt.next_iter(obj, &mut theta, iter, metrics) {
                Next::Stop(stop) => break 'iterations stop,
                Next::Row(m) => {
                    let full = metrics
                        || opt.converged_after().is_some()
                        || opt.converged_before().is_some();
                    let acc = emit(obj, &mut rows, opt.as_ref(), &theta, iter, m, full)?;
                    // Rows without the metrics leave the target check to the next one that
                    // has them.
                    if full {
                        last_acc = acc;
                    }
                }
            }
            if let Some(stop) = opt.converged_after() {
                break 'iterations stop;
            }
        }
        Stop::MaxIter {
            max_iter: limits.max_iter,
            epochs: opt.counts_epochs(),
        }
    };
    Ok(Outcome {
        theta,
        rows,
        stop,
        optimizer: opt.into_state(),
    })
}

#[cfg(test)]
mod tests {
    use super::{diverged, zero_logit_loss, Row, Stop, TargetMeasure};

    fn row(iter: usize, objective: f64) -> Row {
        Row {
            iter,
            objective,
            loss: objective,
            grad_norm: 0.0,
            train_acc: 0.0,
            val_acc: 0.0,
            val_loss: 0.0,
            val_rmse: None,
            val_r2: None,
            final_time: 1.0,
            fwd_res: None,
            adj_res: None,
            time_s: 0.0,
            step: 0.0,
            level: 0,
        }
    }

    #[test]
    fn a_run_diverges_when_its_objective_grows_far_above_its_best_and_the_zero_loss() {
        let l0 = zero_logit_loss(odenet::Loss::CrossEntropy, 5);
        assert!((l0 - 5f64.ln()).abs() < 1e-15);
        assert_eq!(zero_logit_loss(odenet::Loss::Mse, 5), 0.5);
        let before = [row(0, 1.6), row(1, 0.2), row(2, 0.5)];
        // 1e4 × 0.2 = 2000.
        assert_eq!(diverged(&row(3, 1999.0), &before, 1e4, l0), None);
        let e = diverged(&row(3, 2001.0), &before, 1e4, l0).unwrap();
        assert!(e.contains("2.0010e3 at iteration 3"), "{e}");
        assert!(e.contains("times its best 2.0000e-1 (iteration 1)"), "{e}");
        assert!(e.contains("optimizer.learning_rate"), "{e}");
        assert!(!e.contains('\n'));
        // Off.
        assert_eq!(diverged(&row(3, 1e300), &before, 0.0, l0), None);
        // A near-perfect fit that gets worse but stays below ℓ₀ has not diverged.
        let fit = [row(0, 1.6), row(1, 1e-9)];
        assert_eq!(diverged(&row(2, 1e-2), &fit, 1e4, l0), None);
        assert_eq!(diverged(&row(2, 1.0), &fit, 1e4, l0), None);
        assert!(diverged(&row(2, 1.7), &fit, 1e4, l0).is_some());
        // The first row is measured against ℓ₀ (a blown-up initialization).
        assert_eq!(diverged(&row(0, 1e4 * l0), &[], 1e4, l0), None);
        let e = diverged(&row(0, 6.3e117), &[], 1e4, l0).unwrap();
        assert!(e.contains("times the loss of zero logits 1.6094"), "{e}");
        assert!(e.contains("network.init_*"), "{e}");
        // A start above ℓ₀ (best so far ≥ ℓ₀) counts from ℓ₀.
        assert!(diverged(&row(1, 1e5 * l0), &[row(0, 1e3)], 1e4, l0).is_some());
        assert_eq!(diverged(&row(1, 9e3 * l0), &[row(0, 1e3)], 1e4, l0), None);
    }

    #[test]
    fn the_metrics_rows_are_row_0_every_kth_the_last_and_the_checkpoints() {
        let limits = super::Limits {
            metrics_every: 3,
            checkpoint_every: 5,
            ..super::Limits::plain(11)
        };
        let rows: Vec<usize> = (0..=11).filter(|&k| limits.metrics_at(k)).collect();
        assert_eq!(rows, [0, 3, 5, 6, 9, 10, 11]);
        let every = super::Limits::plain(4);
        assert!((0..=4).all(|k| every.metrics_at(k)));
    }

    #[test]
    fn stop_reasons_read_as_before() {
        let cases = [
            (
                Stop::MaxIter {
                    max_iter: 130,
                    epochs: false,
                },
                "reached optimizer.max_iter = 130",
            ),
            (
                Stop::MaxIter {
                    max_iter: 8,
                    epochs: true,
                },
                "reached optimizer.max_iter = 8 epochs",
            ),
            (
                Stop::Gradient {
                    gtol: 1e-8,
                    mean: false,
                },
                "gradient norm below optimizer.gtol = 1e-8",
            ),
            (
                Stop::Gradient {
                    gtol: 0.5,
                    mean: true,
                },
                "mean gradient norm below optimizer.gtol = 5e-1",
            ),
            (
                Stop::Target {
                    accuracy: 0.9,
                    measure: TargetMeasure::Val,
                },
                "validation accuracy reached 0.9000",
            ),
            (
                Stop::Target {
                    accuracy: 0.955,
                    measure: TargetMeasure::Train,
                },
                "training accuracy reached 0.9550",
            ),
            (
                Stop::LineSearch { iter: 7 },
                "line search failed at iteration 7; kept the last accepted iterate",
            ),
        ];
        for (stop, text) in cases {
            assert_eq!(stop.to_string(), text);
        }
    }
}
