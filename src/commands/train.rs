//! `layerpar train`: trains the configured network across the ranks; rank 0 prints, writes
//! the history and the parameter files.

use super::agree;
use crate::config::Config;
use crate::distributed::DistNet;
use crate::parallel::{fingerprint, Parallel};
use crate::train::history::HistoryWriter;
use crate::train::report::{format_row, Reporter};
use crate::train::{train, Problem};
use anyhow::{bail, Result};
use mgrit::MpiComm;
use std::path::PathBuf;

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub set: Vec<String>,
    pub history: Option<PathBuf>,
}

pub fn run(par: &Parallel, args: &TrainArgs) -> Result<()> {
    let root = par.is_root();
    let comm = MpiComm::new(par.world());
    // Setup: every input is checked before any file is written.
    let setup = (|| -> Result<(Config, Problem, Vec<f64>)> {
        let config = crate::config::load(args.config.as_deref(), &args.set)?;
        let (train_set, val_set) = crate::data::load(&config)?;
        let net = crate::model::build_network(&config, train_set.dim, train_set.classes)?;
        if val_set.dim != train_set.dim {
            bail!(
                "training data has {} features but validation data {}",
                train_set.dim,
                val_set.dim
            );
        }
        let theta = crate::model::initial_parameters(&config, &net);
        Ok((
            config,
            Problem {
                net,
                train: train_set,
                val: val_set,
            },
            theta,
        ))
    })();
    let (config, problem, theta_global) = agree(par, setup)?;
    let dist = DistNet::new(problem.net.clone(), &comm, config.solver_settings());
    let mut dist = agree(par, dist)?;
    let theta = dist.layout.extract(&problem.net, &dist.part, &theta_global);
    drop(theta_global);

    let history_path = args
        .history
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.output.history));
    let ckpt_dir = PathBuf::from(&config.output.checkpoint_dir);
    let mut writer = if root {
        let w = HistoryWriter::create(&history_path).and_then(|w| {
            std::fs::create_dir_all(&ckpt_dir).map_err(|e| {
                anyhow::anyhow!("cannot create checkpoint_dir {}: {e}", ckpt_dir.display())
            })?;
            Ok(w)
        });
        Some(agree(par, w)?)
    } else {
        agree(par, Ok(()))?;
        None
    };

    let net = &problem.net;
    let sh = *net.shape();
    let reporter = Reporter::new(
        config.progress()?,
        root,
        config.optimizer.max_iter,
        config.output.print_every,
    );
    reporter.note(&format!(
        "layerpar {}: training on {} MPI rank{}",
        env!("CARGO_PKG_VERSION"),
        par.size(),
        if par.size() == 1 { "" } else { "s" }
    ));
    reporter.note(&format!(
        "data: {}, {} training / {} validation examples, {} features, {} classes",
        config.data.kind,
        problem.train.len(),
        problem.val.len(),
        sh.input,
        sh.classes
    ));
    reporter.note(&format!(
        "network: width {}, {} hidden layers, T = {}, h = {:.4e}, {}, {} parameters",
        sh.width,
        sh.layers,
        net.final_time,
        net.step_size(),
        net.activation,
        net.num_params()
    ));
    let m = &config.mgrit;
    reporter.note(&format!(
        "layers per rank: {}–{}; MGRIT: {}",
        sh.layers / par.size(),
        sh.layers.div_ceil(par.size()),
        if dist.levels() == 1 {
            "1 level (exact serial sweep, pipelined over the ranks)".to_string()
        } else {
            format!(
                "{} levels, cf {}, {} forward / {} adjoint iterations (tol {:e} / {:e}){}",
                dist.levels(),
                if m.cfactor_levels.is_empty() {
                    m.cfactor.to_string()
                } else {
                    format!("{:?}", m.cfactor_levels)
                },
                m.max_iter,
                m.adjoint_max_iter,
                m.tol,
                m.adjoint_tol,
                if m.fmg { ", F-cycles" } else { "" }
            )
        }
    ));
    reporter.note(&format!(
        "optimizer: {}, {} iterations, batch {}",
        config.optimizer.kind,
        config.optimizer.max_iter,
        if config.optimizer.batch_size == 0 {
            "full".to_string()
        } else {
            config.optimizer.batch_size.to_string()
        }
    ));

    let every = config.output.checkpoint_every;
    let outcome = train(
        &config,
        &problem,
        &mut dist,
        theta,
        &reporter,
        |row, theta| {
            let due = every > 0 && row.iter > 0 && row.iter % every == 0;
            // The gather is collective: every rank takes part, rank 0 writes.
            let global = if due {
                Some(mgrit::Comm::all_gather(&comm, theta))
            } else {
                None
            };
            if let Some(w) = writer.as_mut() {
                let written = w.push(row).and_then(|()| {
                    if let Some(g) = &global {
                        let p = ckpt_dir.join(format!("params_{:06}.h5", row.iter));
                        crate::params_file::write(&p, &config, net, g, row.iter as u64)?;
                    }
                    Ok(())
                });
                if let Err(e) = written {
                    // Only rank 0 writes: the other ranks cannot know, so end the whole job.
                    if par.size() > 1 {
                        eprintln!("error: {e:#}");
                        par.abort(1);
                    }
                    return Err(e);
                }
            }
            Ok(())
        },
    );
    reporter.finish();
    let outcome = outcome?;

    let global = dist.gather(&outcome.theta);
    let fp = fingerprint(&global);
    if root {
        let last = outcome.rows.last().expect("row 0 is always written");
        let final_path = ckpt_dir.join("final.h5");
        crate::params_file::write(&final_path, &config, net, &global, last.iter as u64)?;
        println!("stopped: {}", outcome.stop);
        println!("final: {}", format_row(last));
        println!(
            "parameters: {} on {} rank{}, fingerprint {fp:#018x}",
            global.len(),
            par.size(),
            if par.size() == 1 { "" } else { "s" }
        );
        println!(
            "wrote {} and {}",
            history_path.display(),
            final_path.display()
        );
    }
    Ok(())
}
