//! The training driver: the optimization loop over the layer-parallel objective, metrics each
//! iteration, the history and the stopping rules.

pub mod history;
pub mod report;

use crate::config::{Config, OptimizerKind};
use crate::distributed::{DistNet, DistSpace, DistValue};
use anyhow::{bail, Result};
use history::Row;
use layerpar_data::{Batcher, Dataset};
use odenet::{Network, ObjectiveValue, Workspace};
use optim::{backtracking, Adam, Armijo, Lbfgs, LineSearch, Sgd, Space};
use report::Reporter;
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
    let d = data.dim;
    for (x, y) in data
        .features
        .chunks(CHUNK * d)
        .zip(data.labels.chunks(CHUNK))
    {
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
        return net.objective_gradient(theta, &data.features, &data.labels, ws, grad);
    }
    let mut data_net = net.clone();
    data_net.regularization = Default::default();
    let mut part = vec![0.0; grad.len()];
    grad.fill(0.0);
    let mut loss = 0.0;
    let mut correct = 0;
    let d = data.dim;
    for (x, y) in data
        .features
        .chunks(CHUNK * d)
        .zip(data.labels.chunks(CHUNK))
    {
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

/// Where training starts. `Default` is a fresh start; a resumed run fills in the iteration,
/// the rows so far and the optimizer's state (this rank's parts of every vector).
#[derive(Clone, Debug, Default)]
pub struct Start {
    pub iteration: usize,
    pub rows: Vec<Row>,
    /// L-BFGS pairs (s, y), oldest first.
    pub lbfgs_pairs: Vec<(Vec<f64>, Vec<f64>)>,
    /// Adam (m, v, t).
    pub adam: Option<(Vec<f64>, Vec<f64>, u64)>,
    /// SGD velocity.
    pub sgd: Option<Vec<f64>>,
    /// Mini-batch order and generator.
    pub batcher: Option<(Vec<usize>, layerpar_data::rng::Generator)>,
    /// Wall time already spent (added to `time_s`).
    pub time_offset: f64,
    /// Nested-iteration level written into the rows.
    pub level: usize,
    /// Stop once the validation accuracy reaches this.
    pub target_val_acc: Option<f64>,
}

/// The optimizer's state after an iteration (this rank's parts), for checkpoints.
pub struct Snapshot<'a> {
    pub row: &'a Row,
    pub theta: &'a [f64],
    pub lbfgs: Option<&'a Lbfgs>,
    pub adam: Option<&'a Adam>,
    pub sgd: Option<&'a Sgd>,
    pub batcher: Option<&'a Batcher>,
}

/// How training ended: this rank's parameters and optimizer state, and every row.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub theta: Vec<f64>,
    pub rows: Vec<Row>,
    pub stop: String,
    pub lbfgs: Option<Lbfgs>,
    pub adam: Option<Adam>,
    pub sgd: Option<Sgd>,
    pub batcher: Option<Batcher>,
}

impl<'a> Snapshot<'a> {
    /// The state after an L-BFGS iteration.
    fn lbfgs(row: &'a Row, theta: &'a [f64], memory: &'a Lbfgs) -> Self {
        Snapshot {
            row,
            theta,
            lbfgs: Some(memory),
            adam: None,
            sgd: None,
            batcher: None,
        }
    }

    /// The state after an epoch of Adam (`is_adam`) or SGD, with the mini-batch order.
    fn stochastic(
        row: &'a Row,
        theta: &'a [f64],
        (is_adam, adam, sgd): (bool, &'a Adam, &'a Sgd),
        batcher: &'a Batcher,
    ) -> Self {
        Snapshot {
            row,
            theta,
            lbfgs: None,
            adam: is_adam.then_some(adam),
            sgd: (!is_adam).then_some(sgd),
            batcher: Some(batcher),
        }
    }
}

impl Outcome {
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            row: self.rows.last().expect("row 0 is always there"),
            theta: &self.theta,
            lbfgs: self.lbfgs.as_ref(),
            adam: self.adam.as_ref(),
            sgd: self.sgd.as_ref(),
            batcher: self.batcher.as_ref(),
        }
    }
}

type Emit<'e> = dyn FnMut(&Snapshot) -> Result<()> + 'e;

/// Trains this rank's part `theta` with the configured optimizer from `start`. Each
/// finished row goes to `on_row` (on every rank) with a snapshot of the optimizer state,
/// before the next iteration starts.
#[allow(clippy::too_many_arguments)]
pub fn train(
    config: &Config,
    problem: &Problem,
    dist: &mut DistNet,
    theta: Vec<f64>,
    start: Start,
    reporter: &Reporter,
    mut on_row: impl FnMut(&Snapshot) -> Result<()>,
) -> Result<Outcome> {
    let mut rows = start.rows.clone();
    let mut emit = |snap: &Snapshot| -> Result<()> {
        let row = snap.row;
        if !row.objective.is_finite() {
            bail!(
                "the objective is not finite at iteration {} (try a smaller optimizer.learning_rate)",
                row.iter
            );
        }
        on_row(snap)?;
        reporter.row(row);
        rows.push(row.clone());
        Ok(())
    };
    let mut outcome = match config.optimizer.kind {
        OptimizerKind::Lbfgs => lbfgs(config, problem, dist, theta, &start, reporter, &mut emit)?,
        OptimizerKind::Adam | OptimizerKind::Sgd => {
            stochastic(config, problem, dist, theta, &start, &mut emit)?
        }
    };
    outcome.rows = rows;
    Ok(outcome)
}

fn timer(start: &Start) -> impl Fn() -> f64 {
    let t0 = Instant::now();
    let offset = start.time_offset;
    move || offset + t0.elapsed().as_secs_f64()
}

#[allow(clippy::too_many_arguments)]
fn lbfgs(
    config: &Config,
    p: &Problem,
    dist: &mut DistNet,
    mut theta: Vec<f64>,
    start: &Start,
    reporter: &Reporter,
    emit: &mut Emit,
) -> Result<Outcome> {
    let o = &config.optimizer;
    let armijo = Armijo {
        initial: o.learning_rate,
        factor: o.ls_factor,
        c: o.ls_c,
        max_trials: o.ls_max_iter,
    };
    let comm = dist.comm;
    let space = DistSpace {
        comm,
        segments: dist.layout.segments(),
    };
    let mut memory = Lbfgs::new(o.lbfgs_memory);
    for (s, y) in &start.lbfgs_pairs {
        memory.push(s.clone(), y.clone(), &space);
    }
    let clock = timer(start);
    let level = start.level;
    let target = start.target_val_acc;
    let mut grad = vec![0.0; theta.len()];
    let (x, y) = (&p.train.features, &p.train.labels);
    let mut value = dist.objective_gradient(&theta, x, y, &mut grad);
    let ntrain = p.train.len() as f64;
    let row =
        |dist: &mut DistNet, iter: usize, v: &DistValue, g: &[f64], theta: &[f64], step: f64| Row {
            iter,
            objective: v.objective,
            loss: v.loss,
            grad_norm: space.norm(g),
            train_acc: v.correct as f64 / ntrain,
            val_acc: dist.evaluate(theta, &p.val.features, &p.val.labels).1,
            fwd_res: v.fwd_res,
            adj_res: v.adj_res,
            time_s: clock(),
            step,
            level,
        };
    let done = |theta: Vec<f64>, memory: Lbfgs, stop: String| Outcome {
        theta,
        rows: Vec::new(),
        stop,
        lbfgs: Some(memory),
        adam: None,
        sgd: None,
        batcher: None,
    };
    let mut last_val = start.rows.last().map(|r| r.val_acc).unwrap_or(0.0);
    if start.iteration == 0 {
        let r = row(dist, 0, &value, &grad, &theta, 0.0);
        last_val = r.val_acc;
        emit(&Snapshot::lbfgs(&r, &theta, &memory))?;
    }
    for iter in start.iteration + 1..=o.max_iter {
        if target.is_some_and(|t| last_val >= t) {
            return Ok(done(
                theta,
                memory,
                format!("validation accuracy reached {:.4}", target.unwrap_or(0.0)),
            ));
        }
        if space.norm(&grad) <= o.gtol {
            return Ok(done(
                theta,
                memory,
                format!("gradient norm below optimizer.gtol = {:e}", o.gtol),
            ));
        }
        let accepted = loop {
            let d = memory.direction(&grad, &space);
            let search = backtracking(&theta, value.objective, &grad, &d, &armijo, &space, |t| {
                let mut g = vec![0.0; t.len()];
                let v = dist.objective_gradient(t, x, y, &mut g);
                (v.objective, (g, v))
            });
            match search {
                LineSearch::Accepted { step, x, data, .. } => break Some((step, x, data)),
                LineSearch::Failed { reason, .. } if !memory.is_empty() => {
                    reporter.note(&format!(
                        "iteration {iter}: line search failed ({reason}); restarting L-BFGS from steepest descent"
                    ));
                    memory.reset();
                }
                LineSearch::Failed { reason, .. } => {
                    reporter.note(&format!(
                        "iteration {iter}: line search failed along −∇J ({reason})"
                    ));
                    break None;
                }
            }
        };
        let Some((step, x_new, (g, v))) = accepted else {
            let msg =
                format!("line search failed at iteration {iter}; kept the last accepted iterate");
            return Ok(done(theta, memory, msg));
        };
        let s: Vec<f64> = x_new.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g.iter().zip(&grad).map(|(a, b)| a - b).collect();
        memory.push(s, yv, &space);
        theta = x_new;
        grad = g;
        value = v;
        let r = row(dist, iter, &value, &grad, &theta, step);
        last_val = r.val_acc;
        emit(&Snapshot::lbfgs(&r, &theta, &memory))?;
    }
    Ok(done(
        theta,
        memory,
        format!("reached optimizer.max_iter = {}", o.max_iter),
    ))
}

fn stochastic(
    config: &Config,
    p: &Problem,
    dist: &mut DistNet,
    mut theta: Vec<f64>,
    start: &Start,
    emit: &mut Emit,
) -> Result<Outcome> {
    let o = &config.optimizer;
    let kind = o.kind;
    let schedule = config.schedule();
    let n = theta.len();
    let comm = dist.comm;
    let space = DistSpace {
        comm,
        segments: dist.layout.segments(),
    };
    let mut adam = Adam::new(n, o.beta1, o.beta2, o.epsilon);
    if let Some((m, v, t)) = &start.adam {
        adam.m.clone_from(m);
        adam.v.clone_from(v);
        adam.t = *t;
    }
    let mut sgd = Sgd::new(n, o.momentum);
    if let Some(v) = &start.sgd {
        sgd.velocity.clone_from(v);
    }
    let mut batcher = Batcher::new(p.train.len(), o.batch_size, config.seed);
    if let Some((order, rng)) = &start.batcher {
        batcher
            .restore(order.clone(), rng.clone())
            .map_err(anyhow::Error::msg)?;
    }
    let clock = timer(start);
    let level = start.level;
    let target = start.target_val_acc;
    let mut grad = vec![0.0; n];
    let mut gsum = vec![0.0; n];
    let (mut x, mut y) = (Vec::new(), Vec::new());
    let row = |dist: &mut DistNet,
               iter: usize,
               theta: &[f64],
               grad_norm: f64,
               step: f64,
               res: (Option<f64>, Option<f64>)| {
        let (loss, train_acc) = dist.evaluate(theta, &p.train.features, &p.train.labels);
        let reg = dist.regularization(theta);
        Row {
            iter,
            objective: loss + reg,
            loss,
            grad_norm,
            train_acc,
            val_acc: dist.evaluate(theta, &p.val.features, &p.val.labels).1,
            fwd_res: res.0,
            adj_res: res.1,
            time_s: clock(),
            step,
            level,
        }
    };
    let is_adam = kind == OptimizerKind::Adam;
    let finish = |theta: Vec<f64>, adam: Adam, sgd: Sgd, batcher: Batcher, stop: String| Outcome {
        theta,
        rows: Vec::new(),
        stop,
        lbfgs: None,
        adam: is_adam.then_some(adam.clone()),
        sgd: (!is_adam).then_some(sgd),
        batcher: Some(batcher),
    };
    let mut last_val = start.rows.last().map(|r| r.val_acc).unwrap_or(0.0);
    if start.iteration == 0 {
        let v0 = dist.objective_gradient(&theta, &p.train.features, &p.train.labels, &mut grad);
        let r0 = row(
            dist,
            0,
            &theta,
            space.norm(&grad),
            0.0,
            (v0.fwd_res, v0.adj_res),
        );
        last_val = r0.val_acc;
        emit(&Snapshot::stochastic(
            &r0,
            &theta,
            (is_adam, &adam, &sgd),
            &batcher,
        ))?;
    }
    for epoch in start.iteration + 1..=o.max_iter {
        if target.is_some_and(|t| last_val >= t) {
            let msg = format!("validation accuracy reached {:.4}", target.unwrap_or(0.0));
            return Ok(finish(theta, adam, sgd, batcher, msg));
        }
        let lr = schedule.rate(o.learning_rate, epoch - 1);
        batcher.shuffle();
        gsum.fill(0.0);
        let nb = batcher.batches_per_epoch();
        let mut res = (None, None);
        for b in 0..nb {
            p.train.gather(batcher.batch(b), &mut x, &mut y);
            let v = dist.objective_gradient(&theta, &x, &y, &mut grad);
            res = (v.fwd_res, v.adj_res);
            if is_adam {
                adam.step(&mut theta, &grad, lr);
            } else {
                sgd.step(&mut theta, &grad, lr);
            }
            optim::axpy(1.0, &grad, &mut gsum);
        }
        let gnorm = space.norm(&gsum) / nb as f64;
        let r = row(dist, epoch, &theta, gnorm, lr, res);
        last_val = r.val_acc;
        emit(&Snapshot::stochastic(
            &r,
            &theta,
            (is_adam, &adam, &sgd),
            &batcher,
        ))?;
        if gnorm <= o.gtol {
            let msg = format!("mean gradient norm below optimizer.gtol = {:e}", o.gtol);
            return Ok(finish(theta, adam, sgd, batcher, msg));
        }
    }
    let msg = format!("reached optimizer.max_iter = {} epochs", o.max_iter);
    Ok(finish(theta, adam, sgd, batcher, msg))
}
