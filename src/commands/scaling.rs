//! `layerpar scaling`: calibrates the performance model of layer-parallel training on this
//! run (a few real training iterations, the serial reference, step and message times) and
//! prints the predicted time per training iteration, speedup and efficiency for P = 1, 2,
//! 4, … ranks with the best split into D data groups × L layer-parallel ranks. The model,
//! its formulas and its tests live in [`crate::scaling`]; this command parses, measures
//! (collective), calls `fit` and `predict`, and prints.

use super::agree;
use crate::config::OptimizerKind;
use crate::parallel::Parallel;
use crate::scaling::calibrate::{self, Measurements, StepCounts, Trace};
use crate::scaling::{self, predict, Calibration, Machine, Model, Split};
use crate::train::{optimizer, BlockNet, DistNet, Limits, Objective, Problem, Start};
use anyhow::{bail, Result};
use mgrit::{Comm, MpiComm, SerialComm};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ScalingArgs {
    /// Configuration file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override one key (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Training iterations to measure (after one warm-up iteration).
    #[arg(long, alias = "evaluations", default_value_t = 3)]
    pub iterations: usize,
    /// Largest rank count in the table.
    #[arg(long, default_value_t = 1024)]
    pub max_ranks: usize,
    /// Save the calibrated model to this file.
    #[arg(long)]
    pub save: Option<PathBuf>,
    /// Predict with this saved model (to validate it at this rank count).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Draw the predicted speedup and the measured point as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Interconnect latency α between nodes, seconds (HDR InfiniBand: about 1.5 µs).
    #[arg(long, default_value_t = Machine::CLUSTER.latency)]
    pub latency: f64,
    /// Interconnect bandwidth β between nodes, bytes per second (HDR InfiniBand: 12 GB/s).
    #[arg(long, default_value_t = Machine::CLUSTER.bandwidth)]
    pub bandwidth: f64,
    /// MPI ranks per node (messages within a node take the measured on-node time).
    #[arg(long, default_value_t = Machine::CLUSTER.ranks_per_node)]
    pub ranks_per_node: usize,
    /// Cores per node for those ranks (default: one per rank; fewer: the ranks share them,
    /// as on an oversubscribed test machine).
    #[arg(long)]
    pub cores: Option<usize>,
    /// Predict only splits with D data groups (default: the best D for each P).
    #[arg(long, value_name = "D")]
    pub data_groups: Option<usize>,
    /// Copies of the serial evaluation run at once on rank 0 to measure the co-run slowdown
    /// κ of ranks side by side (default: the cores, at most the CPUs this process may use;
    /// 1 skips it). Each copy holds a serial evaluation's memory.
    #[arg(long, value_name = "N")]
    pub co_run: Option<usize>,
}

impl ScalingArgs {
    fn machine(&self) -> Result<Machine> {
        let m = Machine {
            latency: self.latency,
            bandwidth: self.bandwidth,
            ranks_per_node: self.ranks_per_node,
            cores: self.cores.unwrap_or(self.ranks_per_node),
        };
        m.check().map_err(anyhow::Error::msg)?;
        if self.data_groups == Some(0) {
            bail!("--data-groups must be ≥ 1");
        }
        if self.iterations == 0 {
            bail!("--iterations must be ≥ 1");
        }
        if self.co_run == Some(0) {
            bail!("--co-run must be ≥ 1 (1 skips the co-run measurement)");
        }
        Ok(m)
    }
}

pub fn run(par: &Parallel, args: &ScalingArgs) -> Result<()> {
    let comm = MpiComm::new(par.world());
    let setup = (|| -> Result<_> {
        let machine = args.machine()?;
        for out in args.save.iter().chain(&args.plot) {
            super::data::require_output_dir(out)?;
        }
        let config = crate::config::load(args.config.as_deref(), &args.set)?;
        if config.parallel.data_groups > 1 {
            anyhow::bail!(
                "config key `parallel.data_groups` = {}: `layerpar scaling` models layer parallelism on one row of ranks; set it to 1 (a row of a grid runs as L ranks would)",
                config.parallel.data_groups
            );
        }
        if !config.network.blocks.is_empty() {
            bail!("config key `network.blocks`: `layerpar scaling` models a network of one ODE block; remove network.blocks");
        }
        if config.optimizer.kind != OptimizerKind::Lbfgs {
            bail!("layerpar scaling models L-BFGS training: set optimizer.kind = \"lbfgs\"");
        }
        let (train, val) = crate::data::load(&config)?;
        let net = crate::model::build_network(&config, crate::model::DataShape::of(&train))?;
        let model = match &args.model {
            Some(path) => Some(Model::read(path)?),
            None => None,
        };
        Ok((machine, config, train, val, net, model))
    })();
    let (machine, config, train, val, net, saved) = agree(par, setup)?;
    let basis = config.spline_basis()?;
    let settings = crate::model::solver_settings(&config);
    let block: BlockNet = agree(
        par,
        BlockNet::new(net.clone(), &comm, settings.clone(), basis.clone())
            .map_err(anyhow::Error::from),
    )?;
    let grid = block.grid().clone();
    let mut dist = DistNet::single(block);
    if let Some(m) = &saved {
        let fits = m.check_fits(grid.levels[0].steps, grid.num_levels());
        if let Err(e) = fits {
            bail!(
                "model file {} was {e}",
                args.model.as_ref().expect("read").display()
            );
        }
    }
    let global = crate::model::initial_parameters(&config, &net);
    let theta = dist.extract(&global);

    // 1. Real training iterations: one warm-up, then `iterations` measured.
    let problem = Problem {
        net: net.clone(),
        train,
        val,
    };
    let o = &config.optimizer;
    let opt = agree(
        par,
        optimizer::build(
            &config,
            &dist,
            &problem,
            theta.len(),
            &optimizer::OptimizerState::fresh(o.kind),
        ),
    )?;
    let mut trace = Trace::default();
    let limits = Limits::plain(1 + args.iterations);
    let note = |m: &str| {
        if par.is_root() {
            eprintln!("{m}");
        }
    };
    let outcome = {
        let mut obj = Objective {
            dist: &mut dist,
            problem: &problem,
            note: &note,
        };
        crate::train::run(
            opt,
            &mut obj,
            theta,
            Start::fresh(o.kind),
            limits,
            &mut [&mut trace],
        )?
    };
    let nl = grid.num_levels();
    let last = trace.marks.len().saturating_sub(1);
    let Some(calibrate::Window {
        seconds: t_iter,
        evaluations: evals,
        forward: fwd,
        adjoint: adj,
        outside,
        vector,
    }) = calibrate::window(&trace.marks, 1, last, o.learning_rate, o.ls_factor, nl)
    else {
        bail!(
            "training stopped after {} iteration(s) ({}); the calibration needs at least 2",
            last,
            outcome.stop
        );
    };
    // The slowest rank's figures.
    let slowest = |x: f64| dist.comm.all_gather(&[x]).into_iter().fold(0.0, f64::max);
    let (t_iter, outside, vector) = (slowest(t_iter), slowest(outside), slowest(vector));
    let forward = StepCounts::gather(&dist.comm, &fwd, nl);
    let adjoint = StepCounts::gather(&dist.comm, &adj, nl);
    let (vx, vy) = (&problem.val.features, problem.val.y());
    let t_val = calibrate::time_validation(&mut dist.blocks[0], &outcome.theta, vx, vy, 3);

    // 2. The step-time table and the on-node messages.
    let (w, batch, vbatch) = (net.shape().width, problem.train.len(), problem.val.len());
    let batches = calibrate::table_batches(batch, vbatch);
    let (t_forward, t_adjoint) = calibrate::step_table(&net, &batches);
    let ranks = dist.comm.size();
    let (node_latency, node_bandwidth) = if ranks >= 2 {
        calibrate::ping_pong(&dist.comm, w * batch)
    } else {
        calibrate::NOMINAL_NODE
    };

    // 3. The serial reference on rank 0 (one level, one rank), at the initial parameters.
    let sweep_batches = calibrate::sweep_batches(problem.train.len());
    let serial = if par.is_root() {
        let one = layer_parallel::SolverSettings {
            forward: mgrit::Options {
                max_levels: 1,
                ..settings.forward.clone()
            },
            adjoint: mgrit::Options {
                max_levels: 1,
                ..settings.adjoint.clone()
            },
        };
        let mut sobj =
            layer_parallel::Objective::new(net.clone(), &SerialComm, one.clone(), basis.clone())
                .map_err(anyhow::Error::from);
        match &mut sobj {
            Ok(s) => {
                let th = s.extract(&global);
                let t = &problem.train;
                let (e, v) = calibrate::time_serial(s, &th, (&t.features, t.y()), (vx, vy), 2);
                // κ: copies of the serial evaluation side by side, one per thread.
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                let copies = args.co_run.unwrap_or(machine.cores.min(cpus)).max(1);
                let mut runs = Vec::with_capacity(copies);
                if copies > 1 {
                    for _ in 0..copies {
                        let made = layer_parallel::Objective::new(
                            net.clone(),
                            &SerialComm,
                            one.clone(),
                            basis.clone(),
                        );
                        let Ok(mut obj) = made else { break };
                        let mut grad = vec![0.0; th.len()];
                        let th = th.clone();
                        runs.push(move || {
                            obj.objective_gradient(&th, &t.features, t.y(), &mut grad);
                        });
                    }
                }
                let copies = runs.len().max(1);
                let kappa = calibrate::co_run_slowdown(e, runs);
                let sweeps = calibrate::time_sweeps(s, &th, (&t.features, t.y()), &sweep_batches);
                [e, v, kappa, copies as f64]
                    .into_iter()
                    .chain(sweeps)
                    .collect()
            }
            Err(_) => vec![f64::NAN, f64::NAN, 1.0, 1.0],
        }
    } else {
        vec![]
    };
    let serial = dist.comm.all_gather(&serial);
    let edge_params = net.num_params() - net.shape().layers * dist.first().model_layout.layer_len;
    let measured = Measurements {
        grid: grid.clone(),
        ranks,
        machine,
        width: w,
        batch,
        val_batch: vbatch,
        params_per_layer: dist.first().model_layout.layer_len,
        edge_params,
        seconds_per_iteration: t_iter,
        seconds_per_validation: t_val,
        seconds_outside_evaluations: outside,
        seconds_in_vector_work: vector,
        evaluations_per_iteration: evals,
        forward,
        adjoint,
        batches,
        t_forward,
        t_adjoint,
        node_latency,
        node_bandwidth,
        message_measured: ranks >= 2,
        cycles: (settings.forward.max_iter + settings.adjoint.max_iter) as f64,
        nrelax: settings.forward.nrelax[0] as f64,
        lbfgs_memory: o.lbfgs_memory,
        serial_evaluation: serial[0],
        serial_validation: serial[1],
        co_run: (serial[2], serial[3] as usize),
        sweeps: {
            let seconds = serial[4..].to_vec();
            if seconds.len() == sweep_batches.len() {
                (sweep_batches, seconds)
            } else {
                (vec![], vec![])
            }
        },
    };
    let model = measured.fit();
    let cal = Calibration { measured, model };
    let used = saved.unwrap_or_else(|| cal.model.clone());
    if let (Some(path), true) = (&args.save, par.is_root()) {
        checkpoint::replace_file(path, cal.model.to_toml()?.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if par.is_root() {
        report(args, &machine, &cal, &used)?;
    }
    Ok(())
}

/// Prints the calibration and the predictions of `model` (rank 0), and draws the plot.
fn report(args: &ScalingArgs, machine: &Machine, cal: &Calibration, model: &Model) -> Result<()> {
    let m = &cal.measured;
    let (grid, p) = (&m.grid, m.ranks);
    let (n, nl) = (grid.levels[0].steps, grid.num_levels());
    let points: Vec<usize> = grid.levels.iter().map(|l| l.points()).collect();
    println!(
        "layerpar scaling: {n} layers, width {}, batch {} (validation {}); MGRIT {nl} level(s), points per level {points:?}",
        m.width, m.batch, m.val_batch
    );
    let at = |v: &[f64]| predict::step_time(&m.batches, v, m.batch);
    println!(
        "measured on this machine: forward step {:.3e} s, adjoint step {:.3e} s at batch {}; on-node message latency {:.2e} s, bandwidth {:.2e} B/s{}",
        at(&m.t_forward),
        at(&m.t_adjoint),
        m.batch,
        m.node_latency,
        m.node_bandwidth,
        if m.message_measured { " (ping-pong)" } else { " (nominal: run on ≥ 2 ranks to measure)" }
    );
    println!(
        "interconnect: latency {:.2e} s, bandwidth {:.2e} B/s; {} ranks per node on {} cores",
        machine.latency, machine.bandwidth, machine.ranks_per_node, machine.cores
    );
    println!(
        "model calibrated on {} rank{} (overhead factors: evaluation {:.2}, validation {:.2}){}",
        model.calibrated_ranks,
        if model.calibrated_ranks == 1 { "" } else { "s" },
        model.overhead,
        model.val_overhead,
        args.model
            .as_ref()
            .map(|f| format!(", read from {}", f.display()))
            .unwrap_or_default()
    );
    println!(
        "co-run slowdown κ = {:.2} ({} serial evaluations side by side; 1: not measured)",
        model.co_run, model.co_run_copies
    );
    if !model.sweep_batches.is_empty() {
        let rs: Vec<String> = (1..=3)
            .map(|k| model.batch.div_ceil(1 << k))
            .filter(|&b| b < model.batch)
            .map(|b| format!("r({b}) = {:.2}", predict::batch_factor(model, b)))
            .collect();
        println!(
            "a row's sweep at batch b against the full batch's, beyond the step table: {}",
            rs.join(", ")
        );
    }
    println!(
        "training iterations measured: {}, {:.2} evaluations each (model {:.2})",
        args.iterations, m.evaluations_per_iteration, model.evaluations_per_iteration
    );
    println!("step calls per evaluation on the busiest rank at {p} ranks (measured → model):");
    for (l, pred) in predict::step_calls(model, grid, p).iter().enumerate() {
        let (mf, ma) = (m.forward.busiest(l), m.adjoint.busiest(l));
        println!(
            "  level {l}: forward {mf:.0} → {:.0}, adjoint {ma:.0} → {:.0}",
            pred.forward, pred.adjoint
        );
    }
    // The run's own split: D × L with D = --data-groups when it divides P (a run with
    // parallel.data_groups = D), else 1 × P.
    let d = args.data_groups.filter(|d| p % d == 0).unwrap_or(1);
    let here = Split {
        data: d,
        layer: p / d,
    };
    let mine = predict::predict(model, grid, machine, here);
    let measured = m.seconds_per_iteration;
    println!(
        "time per iteration on {p} rank{} (D × L = {} × {}): measured {measured:.4} s, model {:.4} s ({:+.1} %)",
        if p == 1 { "" } else { "s" },
        here.data,
        here.layer,
        mine.seconds,
        100.0 * (mine.seconds - measured) / measured
    );
    let serial = predict::serial_seconds(model);
    println!(
        "serial reference (one rank, one level, measured): {:.4} s per evaluation, {:.4} s per validation sweep, {serial:.4} s per iteration",
        model.serial_evaluation, model.serial_validation
    );
    println!(
        "{:>6} {:>9} {:>14} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "ranks",
        "D × L",
        "s/iteration",
        "speedup",
        "efficiency",
        "compute",
        "valid.",
        "msgs",
        "combine",
        "optim.",
        "speedup D=1"
    );
    let table = predict::table(model, grid, machine, args.max_ranks, args.data_groups);
    for row in &table {
        let b = &row.best;
        let pct = |x: f64| 100.0 * x / b.seconds;
        println!(
            "{:>6} {:>9} {:>14.5} {:>9.2} {:>10.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>7.1}% {:>12}",
            row.ranks,
            format!("{}×{}", b.split.data, b.split.layer),
            b.seconds,
            b.speedup,
            100.0 * b.efficiency,
            pct(b.parts.compute),
            pct(b.parts.validation),
            pct(b.parts.messages + b.parts.val_messages + b.parts.reductions),
            pct(b.parts.combine),
            pct(b.parts.optimizer),
            row.layer_only
                .map(|r| format!("{:.2}", r.speedup))
                .unwrap_or_else(|| "-".into())
        );
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{n} layers, width {}, {nl} MGRIT level(s), calibrated on {} rank(s)",
            m.width, model.calibrated_ranks
        );
        let curve: Vec<(f64, f64)> = table
            .iter()
            .map(|r| (r.ranks as f64, r.best.speedup))
            .collect();
        scaling::plot::plot_speedup(path, &title, &curve, (p as f64, serial / measured))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
