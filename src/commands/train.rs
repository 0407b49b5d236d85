//! `layerpar train`: trains the configured network across the ranks; rank 0 prints, writes
//! the history and the checkpoints. With `--resume` a run continues from a checkpoint; with
//! `--init-from` a new run starts from a checkpoint's parameters; with `[nested] levels > 1`
//! networks of growing depth are trained in turn (nested iteration).

use super::agree;
use crate::checkpointing::{gather, net_shape, resume, transfer, Snapshot};
use crate::config::{Choice, Config, Interp};
use crate::distributed::DistNet;
use crate::parallel::{fingerprint, Parallel};
use crate::train::history::{HistoryWriter, Row};
use crate::train::report::{format_row, Reporter};
use crate::observers::{write_or_abort, Checkpoints, HistoryFile};
use crate::train::{optimizer, Limits, Objective, Problem, Start};
use anyhow::{bail, Context, Result};
use checkpoint::Checkpoint;
use mgrit::MpiComm;
use std::path::PathBuf;

pub struct TrainArgs {
    pub config: Option<PathBuf>,
    pub set: Vec<String>,
    pub history: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    pub init_from: Option<PathBuf>,
}

/// Everything checked before any file is written.
struct Setup {
    config: Config,
    train: layerpar_data::Dataset,
    val: layerpar_data::Dataset,
    resume: Option<Checkpoint>,
    init: Option<Checkpoint>,
}

/// The run's configuration (on rank 0; see [`super::root_config`]): the file's or, with
/// `--resume`, the checkpoint's, with the `--set` overrides on top.
fn load_config(args: &TrainArgs) -> Result<Config> {
    if args.resume.is_some() && args.init_from.is_some() {
        bail!("--resume continues a run and --init-from starts a new one: give one of them");
    }
    if args.resume.is_some() && args.config.is_some() {
        bail!("--resume takes its configuration from the checkpoint; change keys with --set");
    }
    match &args.resume {
        Some(path) => {
            let c = checkpoint::read(path)?;
            let origin = format!("the configuration stored in {}", path.display());
            crate::config::load_str(&c.config, &origin, &args.set)
        }
        None => crate::config::load(args.config.as_deref(), &args.set),
    }
}

fn setup(par: &Parallel, args: &TrainArgs, config: Config) -> Result<Setup> {
    let resume = args.resume.as_deref().map(checkpoint::read).transpose()?;
    let init = args
        .init_from
        .as_deref()
        .map(checkpoint::read)
        .transpose()?;
    let (train, val) = crate::data::load(&config)?;
    if val.dim != train.dim {
        bail!(
            "training data has {} features but validation data {}",
            train.dim,
            val.dim
        );
    }
    let coarsest = level_layers(&config, 0);
    if par.size() > coarsest {
        bail!(
            "{} ranks for {coarsest} hidden layers{}: layer-parallel training needs at most one rank per layer (network.layers ≥ ranks)",
            par.size(),
            if config.nested.levels > 1 { " on the first nested level" } else { "" }
        );
    }
    if let Some(c) = &resume {
        if c.level as usize >= config.nested.levels {
            bail!(
                "the checkpoint is from nested level {}, but nested.levels = {}",
                c.level,
                config.nested.levels
            );
        }
    }
    Ok(Setup {
        config,
        train,
        val,
        resume,
        init,
    })
}

/// Hidden layers of nested level ℓ: network.layers / refine^(levels − 1 − ℓ).
fn level_layers(config: &Config, level: usize) -> usize {
    let n = &config.nested;
    config.network.layers / n.refine.pow((n.levels - 1 - level) as u32)
}

pub fn run(par: &Parallel, args: &TrainArgs) -> Result<()> {
    let root = par.is_root();
    crate::signals::install();
    let comm = MpiComm::new(par.world());
    let config = super::root_config(par, || load_config(args))?;
    let s = agree(par, setup(par, args, config))?;
    let config = &s.config;

    let history_path = args
        .history
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.output.history));
    let ckpt_dir = PathBuf::from(&config.output.checkpoint_dir);
    let writer = if root {
        let w = (|| {
            std::fs::create_dir_all(&ckpt_dir)
                .with_context(|| format!("cannot create checkpoint_dir {}", ckpt_dir.display()))?;
            let mut w = HistoryWriter::create(&history_path)?;
            // A resumed run continues the same history.
            for r in s.resume.iter().flat_map(|c| {
                c.history
                    .rows
                    .iter()
                    .map(|v| Row::from_values(&c.history.columns, v))
            }) {
                w.push(&r)?;
            }
            Ok(w)
        })();
        Some(agree(par, w)?)
    } else {
        agree(par, Ok(()))?;
        None
    };
    let mut history = HistoryFile { par, writer };

    let reporter = Reporter::new(
        config.output.progress,
        root,
        config.optimizer.max_iter,
        config.output.print_every,
    );
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    reporter.note(&format!(
        "layerpar {}: training on {} MPI rank{}",
        env!("CARGO_PKG_VERSION"),
        par.size(),
        plural(par.size())
    ));
    reporter.note(&format!(
        "data: {}, {} training / {} validation examples, {} features, {} classes",
        config.data.kind,
        s.train.len(),
        s.val.len(),
        s.train.dim,
        s.train.classes
    ));
    if let Some(c) = &s.resume {
        reporter.note(&format!(
            "resuming {} at iteration {} (nested level {})",
            args.resume.as_ref().unwrap().display(),
            c.iteration,
            c.level
        ));
    }

    let nested = &config.nested;
    let first_level = s.resume.as_ref().map(|c| c.level as usize).unwrap_or(0);
    let mut carried: Option<(Vec<f64>, checkpoint::NetShape)> =
        s.init.as_ref().map(|c| (c.params.clone(), c.shape));
    let mut all_rows: Vec<Row> = Vec::new();
    let mut last: Option<(Vec<f64>, Row, String)> = None;
    let mut problem = Problem {
        net: crate::model::build_network(config, s.train.dim, s.train.classes)?,
        train: s.train,
        val: s.val,
    };
    for level in first_level..nested.levels {
        // This level's configuration: its depth and iteration budget.
        let mut cfg = config.clone();
        cfg.network.layers = level_layers(config, level);
        if let Some(&m) = nested.max_iter.get(level) {
            cfg.optimizer.max_iter = m;
        }
        if let Some(&m) = nested.mgrit_levels.get(level) {
            cfg.mgrit.max_levels = m;
        }
        // Knot refinement doubles the spline's intervals on every level after the first.
        if cfg.interp() == Interp::Knots {
            for _ in 0..level {
                cfg.controls.count = 2 * cfg.controls.count - cfg.controls.degree;
            }
        }
        let net = crate::model::build_network(&cfg, problem.train.dim, problem.train.classes)?;
        problem.net = net.clone();
        let basis = cfg.spline_basis()?;
        let spline = basis.is_some();
        let sets = crate::model::hidden_sets(&cfg, &net);
        let mut dist = agree(
            par,
            DistNet::with_controls(net.clone(), &comm, crate::model::solver_settings(&cfg), basis),
        )?;
        let sh = *net.shape();
        if nested.levels > 1 {
            reporter.note(&format!(
                "nested level {level} of {}: {} hidden layers",
                nested.levels, sh.layers
            ));
        }
        reporter.note(&format!(
            "network: width {}, {} hidden layers, T = {}, h = {:.4e}, {}, {} parameters{}",
            sh.width,
            sh.layers,
            net.final_time,
            net.step_size(),
            net.activation,
            crate::model::parameter_network(&cfg, &net).num_params(),
            if spline {
                format!(
                    " ({} B-spline coefficient sets of degree {}, {} knots)",
                    sets, cfg.controls.degree, cfg.controls.knots.name()
                )
            } else {
                String::new()
            }
        ));
        let m = &cfg.mgrit;
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
            cfg.optimizer.kind,
            cfg.optimizer.max_iter,
            if cfg.optimizer.batch_size == 0 {
                "full".to_string()
            } else {
                cfg.optimizer.batch_size.to_string()
            }
        ));

        // Where this level starts.
        let kind = cfg.optimizer.kind;
        let (theta, mut start) = match (&s.resume, &carried) {
            (Some(c), _) if level == first_level => agree(par, resume(c, &dist, &cfg))?,
            (_, Some((params, shape))) => {
                let global = agree(
                    par,
                    transfer(params, *shape, &net, sets, spline, cfg.interp()),
                )?;
                (
                    dist.layout.extract(&net, &dist.part, &global),
                    Start::fresh(kind),
                )
            }
            _ => {
                let global = crate::model::initial_parameters(&cfg, &net);
                (
                    dist.layout.extract(&net, &dist.part, &global),
                    Start::fresh(kind),
                )
            }
        };
        // A resumed checkpoint's history holds the earlier levels too.
        all_rows.extend(start.rows.iter().filter(|r| r.level < level).cloned());
        start.rows.retain(|r| r.level == level);
        let limits = Limits {
            max_iter: cfg.optimizer.max_iter,
            target_val_acc: nested.target_acc.get(level).copied(),
            level,
        };
        let mut checkpoints = Checkpoints {
            par,
            dir: ckpt_dir.clone(),
            prefix: if nested.levels > 1 {
                format!("ckpt_L{level}_")
            } else {
                "ckpt_".to_string()
            },
            every: cfg.output.checkpoint_every,
            keep_last: cfg.output.keep_last,
            config: &cfg,
            base: config,
            earlier: &all_rows,
            level,
        };
        let mut opt = agree(
            par,
            optimizer::build(&cfg, &dist, &problem, theta.len(), &start.optimizer),
        )?;
        let note = |m: &str| reporter.note(m);
        let mut obj = Objective {
            dist: &mut dist,
            problem: &problem,
            note: &note,
        };
        let mut progress = &reporter;
        let outcome = crate::train::run(
            opt.as_mut(),
            &mut obj,
            theta,
            start,
            limits,
            &mut [&mut history, &mut checkpoints, &mut progress],
        );
        reporter.finish();
        let outcome = outcome?;
        let history_rows: Vec<Row> = all_rows.iter().chain(&outcome.rows).cloned().collect();
        let last_row = outcome.rows.last().cloned().expect("a row");
        let snap = Snapshot {
            iteration: last_row.iter,
            theta: &outcome.theta,
            optimizer: &outcome.optimizer,
        };
        let final_ckpt = gather(&dist, &cfg, config, &snap, &history_rows, level);
        if nested.levels > 1 {
            write_or_abort(par, &ckpt_dir.join(format!("level{level}.h5")), &final_ckpt)?;
        }
        all_rows.extend(outcome.rows.iter().cloned());
        let global = final_ckpt.params.clone();
        carried = Some((global.clone(), net_shape(&net, sets)));
        last = Some((global, last_row, outcome.stop.to_string()));
        if level + 1 == nested.levels {
            write_or_abort(par, &ckpt_dir.join("final.h5"), &final_ckpt)?;
        }
    }
    let (global, last_row, stop) = last.expect("at least one level ran");
    if root {
        println!("stopped: {stop}");
        println!("final: {}", format_row(&last_row));
        println!(
            "parameters: {} on {} rank{}, fingerprint {:#018x}",
            global.len(),
            par.size(),
            plural(par.size()),
            fingerprint(&global)
        );
        println!(
            "wrote {} and {}",
            history_path.display(),
            ckpt_dir.join("final.h5").display()
        );
    }
    Ok(())
}
