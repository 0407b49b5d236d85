//! `layerpar scaling`: calibrates the performance model of layer-parallel training on this
//! run and prints the predicted time per objective evaluation, speedup and efficiency for
//! P = 1, 2, 4, … ranks. The model, its formulas and its tests live in [`crate::scaling`];
//! this command parses, builds the objective, calls `calibrate` and `predict`, and prints.

use super::agree;
use crate::parallel::Parallel;
use crate::scaling::{self, predict, Calibration, Model};
use crate::train::DistNet;
use anyhow::Result;
use mgrit::MpiComm;
use std::path::PathBuf;

pub struct ScalingArgs {
    pub config: Option<PathBuf>,
    pub set: Vec<String>,
    pub evaluations: usize,
    pub max_ranks: usize,
    /// Write the calibrated model here.
    pub save: Option<PathBuf>,
    /// Use this saved model instead of calibrating (validation at another rank count).
    pub model: Option<PathBuf>,
    /// Draw the predicted speedup (and the measured point) as an SVG file here.
    pub plot: Option<PathBuf>,
}

pub fn run(par: &Parallel, args: &ScalingArgs) -> Result<()> {
    let comm = MpiComm::new(par.world());
    let setup = (|| -> Result<_> {
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
        let (train, _) = crate::data::load(&config)?;
        let net = crate::model::build_network(&config, train.dim, train.outputs())?;
        Ok((config, train, net))
    })();
    let (config, train, net) = agree(par, setup)?;
    let basis = config.spline_basis()?;
    let mut obj = agree(
        par,
        DistNet::new(
            net.clone(),
            &comm,
            crate::model::solver_settings(&config),
            basis,
        )
        .map_err(anyhow::Error::from),
    )?;
    let pnet = crate::model::parameter_network(&config, &net);
    let global = crate::model::initial_parameters(&config, &net);
    let theta = obj.layout.extract(&pnet, &obj.part, &global);

    let cal = scaling::calibrate(
        &mut obj,
        &theta,
        &train.features,
        train.y(),
        args.evaluations,
    );
    let used = match &args.model {
        Some(path) => {
            let m = Model::read(path)?;
            let g = &cal.measured.grid;
            m.check_fits(g.levels[0].steps, g.num_levels())
                .map_err(|e| anyhow::anyhow!("model file {} was {e}", path.display()))?;
            m
        }
        None => cal.model.clone(),
    };
    if let (Some(path), true) = (&args.save, par.is_root()) {
        checkpoint::replace_file(path, cal.model.to_toml()?.as_bytes())
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if par.is_root() {
        let width = net.shape().width;
        report(args, &cal, &used, width, train.len())?;
    }
    Ok(())
}

/// Prints the calibration and the predictions of `model` (rank 0), and draws the plot.
fn report(
    args: &ScalingArgs,
    cal: &Calibration,
    model: &Model,
    w: usize,
    batch: usize,
) -> Result<()> {
    let m = &cal.measured;
    let (grid, p) = (&m.grid, m.ranks);
    let (n, nl) = (grid.levels[0].steps, grid.num_levels());
    let points: Vec<usize> = grid.levels.iter().map(|l| l.points()).collect();
    println!("layerpar scaling: {n} layers, width {w}, batch {batch}; MGRIT {nl} level(s), points per level {points:?}");
    println!(
        "measured on this machine: forward step {:.3e} s, adjoint step {:.3e} s, message of {:.0} KiB {:.3e} s{}",
        m.t_forward,
        m.t_adjoint,
        m.message_bytes as f64 / 1024.0,
        m.t_message,
        if m.message_measured { " (ping-pong)" } else { " (nominal: run on ≥ 2 ranks to measure)" }
    );
    println!(
        "model calibrated on {} rank{} (overhead factor {:.2}){}",
        model.calibrated_ranks,
        if model.calibrated_ranks == 1 { "" } else { "s" },
        model.overhead,
        args.model
            .as_ref()
            .map(|f| format!(", read from {}", f.display()))
            .unwrap_or_default()
    );
    println!("step calls per evaluation on the busiest rank at {p} ranks (measured → model):");
    for (l, pred) in predict::step_calls(model, grid, p).iter().enumerate() {
        let (mf, ma) = (m.forward.busiest(l), m.adjoint.busiest(l));
        println!(
            "  level {l}: forward {mf:.0} → {:.0}, adjoint {ma:.0} → {:.0}",
            pred.forward, pred.adjoint
        );
    }
    let (measured, predicted) = (m.seconds_per_evaluation, predict::seconds(model, grid, p));
    let serial = predict::serial_seconds(model);
    println!(
        "time per evaluation on {p} rank{}: measured {measured:.4} s, model {predicted:.4} s ({:+.1} %)",
        if p == 1 { "" } else { "s" },
        100.0 * (predicted - measured) / measured
    );
    println!("serial reference (one rank, one level): {serial:.4} s per evaluation");
    println!(
        "{:>6} {:>14} {:>9} {:>11}",
        "ranks", "s/evaluation", "speedup", "efficiency"
    );
    let table = predict::table(model, grid, args.max_ranks);
    for row in &table {
        println!(
            "{:>6} {:>14.5} {:>9.2} {:>10.1}%",
            row.ranks,
            row.seconds,
            row.speedup,
            100.0 * row.efficiency
        );
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{n} layers, width {w}, {nl} MGRIT level(s), calibrated on {} rank(s)",
            model.calibrated_ranks
        );
        let curve: Vec<(f64, f64)> = table.iter().map(|r| (r.ranks as f64, r.speedup)).collect();
        scaling::plot::plot_speedup(path, &title, &curve, (p as f64, serial / measured))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
