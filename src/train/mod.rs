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

/// How training ended. `theta` is this rank's part of the parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub theta: Vec<f64>,
    pub rows: Vec<Row>,
    pub stop: String,
}

/// Trains this rank's part `theta` with the configured optimizer. Each finished row goes to
/// `on_row` (on every rank, with the local parameters) before the next iteration starts.
pub fn train(
    config: &Config,
    problem: &Problem,
    dist: &mut DistNet,
    theta: Vec<f64>,
    reporter: &Reporter,
    mut on_row: impl FnMut(&Row, &[f64]) -> Result<()>,
) -> Result<Outcome> {
    let start = Instant::now();
    let mut rows = Vec::new();
    let mut emit = |row: Row, theta: &[f64], rows: &mut Vec<Row>| -> Result<()> {
        if !row.objective.is_finite() {
            bail!(
                "the objective is not finite at iteration {} (try a smaller optimizer.learning_rate)",
                row.iter
            );
        }
        on_row(&row, theta)?;
        reporter.row(&row);
        rows.push(row);
        Ok(())
    };
    let (theta, stop) = match config.optimizer_kind()? {
        OptimizerKind::Lbfgs => lbfgs(
            config,
            problem,
            dist,
            theta,
            reporter,
            start,
            &mut |r, t| emit(r, t, &mut rows),
        )?,
        OptimizerKind::Adam | OptimizerKind::Sgd => {
            stochastic(config, problem, dist, theta, start, &mut |r, t| {
                emit(r, t, &mut rows)
            })?
        }
    };
    Ok(Outcome { theta, rows, stop })
}

fn lbfgs(
    config: &Config,
    p: &Problem,
    dist: &mut DistNet,
    mut theta: Vec<f64>,
    reporter: &Reporter,
    start: Instant,
    emit: &mut dyn FnMut(Row, &[f64]) -> Result<()>,
) -> Result<(Vec<f64>, String)> {
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
            time_s: start.elapsed().as_secs_f64(),
            step,
        };
    emit(row(dist, 0, &value, &grad, &theta, 0.0), &theta)?;
    for iter in 1..=o.max_iter {
        if space.norm(&grad) <= o.gtol {
            return Ok((
                theta,
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
            return Ok((
                theta,
                format!("line search failed at iteration {iter}; kept the last accepted iterate"),
            ));
        };
        let s: Vec<f64> = x_new.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g.iter().zip(&grad).map(|(a, b)| a - b).collect();
        memory.push(s, yv, &space);
        theta = x_new;
        grad = g;
        value = v;
        emit(row(dist, iter, &value, &grad, &theta, step), &theta)?;
    }
    Ok((
        theta,
        format!("reached optimizer.max_iter = {}", o.max_iter),
    ))
}

fn stochastic(
    config: &Config,
    p: &Problem,
    dist: &mut DistNet,
    mut theta: Vec<f64>,
    start: Instant,
    emit: &mut dyn FnMut(Row, &[f64]) -> Result<()>,
) -> Result<(Vec<f64>, String)> {
    let o = &config.optimizer;
    let kind = config.optimizer_kind()?;
    let schedule = config.schedule()?;
    let n = theta.len();
    let comm = dist.comm;
    let space = DistSpace {
        comm,
        segments: dist.layout.segments(),
    };
    let mut adam = Adam::new(n, o.beta1, o.beta2, o.epsilon);
    let mut sgd = Sgd::new(n, o.momentum);
    let mut batcher = Batcher::new(p.train.len(), o.batch_size, config.seed);
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
            time_s: start.elapsed().as_secs_f64(),
            step,
        }
    };
    let v0 = dist.objective_gradient(&theta, &p.train.features, &p.train.labels, &mut grad);
    let r0 = row(
        dist,
        0,
        &theta,
        space.norm(&grad),
        0.0,
        (v0.fwd_res, v0.adj_res),
    );
    emit(r0, &theta)?;
    for epoch in 1..=o.max_iter {
        let lr = schedule.rate(o.learning_rate, epoch - 1);
        batcher.shuffle();
        gsum.fill(0.0);
        let nb = batcher.batches_per_epoch();
        let mut res = (None, None);
        for b in 0..nb {
            p.train.gather(batcher.batch(b), &mut x, &mut y);
            let v = dist.objective_gradient(&theta, &x, &y, &mut grad);
            res = (v.fwd_res, v.adj_res);
            match kind {
                OptimizerKind::Adam => adam.step(&mut theta, &grad, lr),
                _ => sgd.step(&mut theta, &grad, lr),
            }
            optim::axpy(1.0, &grad, &mut gsum);
        }
        let gnorm = space.norm(&gsum) / nb as f64;
        let r = row(dist, epoch, &theta, gnorm, lr, res);
        emit(r, &theta)?;
        if gnorm <= o.gtol {
            return Ok((
                theta,
                format!("mean gradient norm below optimizer.gtol = {:e}", o.gtol),
            ));
        }
    }
    Ok((
        theta,
        format!("reached optimizer.max_iter = {} epochs", o.max_iter),
    ))
}
