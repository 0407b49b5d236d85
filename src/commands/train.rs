//! `layerpar train`: trains the configured network across the ranks; rank 0 prints, writes
//! the history and the checkpoints. With `--resume` a run continues from a checkpoint; with
//! `--init-from` a new run starts from a checkpoint's parameters; with `[nested] levels > 1`
//! networks of growing depth are trained in turn (nested iteration).

use super::agree;
use crate::checkpointing::{
    gather, init_parameters, resume, resume_changes, transfer_blocks, Snapshot,
};
use crate::config::{BatchStart, Choice, Config, OptimizerKind};
use crate::nested::NestedPlan;
use crate::observers::{write_or_abort, Checkpoints, HistoryFile};
use crate::parallel::{fingerprint, Parallel};
use crate::rundir::{self, RunLock};
use crate::train::history::{HistoryWriter, Row};
use crate::train::report::{format_row, Reporter};
use crate::train::DistNet;
use crate::train::{optimizer, Limits, Objective, Outcome, Problem, Start};
use anyhow::{bail, Context, Result};
use checkpoint::{Checkpoint, NetShape};
use mgrit::{Comm, MpiComm};
use std::path::{Path, PathBuf};

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
    /// --init-from's parameters and the shapes of its ODE blocks (spline coefficients
    /// already evaluated at the layers of a per-layer run).
    init: Option<(Vec<f64>, Vec<NetShape>)>,
    /// Notes for the log: the keys a resumed run changed, an --init-from conversion.
    notes: Vec<String>,
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
    let (train, val, seeded_data) = crate::data::load_data(&config)?;
    if val.dim != train.dim {
        bail!(
            "training data has {} features but validation data {}",
            train.dim,
            val.dim
        );
    }
    check_batch(&config, train.len())?;
    let grid = crate::parallel::GridShape::new(&config, par.size())?;
    grid.check_batches(&config, train.len(), val.len())?;
    crate::limits::check_network(
        &config,
        crate::model::DataShape::of(&train),
        train.len(),
        grid.layer_ranks,
    )?;
    let first = NestedPlan::new(&config).levels.swap_remove(0);
    let coarsest = first.layers;
    if grid.layer_ranks > coarsest {
        bail!(
            "{} ranks{} for {coarsest} hidden layers{}: layer-parallel training needs at most one rank per layer (network.layers ≥ ranks)",
            grid.layer_ranks,
            if grid.data_groups > 1 { " per data group" } else { "" },
            if config.nested.levels > 1 { " on the first nested level" } else { "" }
        );
    }
    for (i, &layers) in first.blocks.iter().enumerate() {
        if grid.layer_ranks > layers {
            bail!(
                "{} ranks for {layers} hidden layers in ODE block {}{}: layer-parallel training needs at most one rank per layer of every block (network.blocks[{}].layers ≥ ranks)",
                grid.layer_ranks,
                i + 2,
                if config.nested.levels > 1 { " on the first nested level" } else { "" },
                i + 1
            );
        }
    }
    let first_layers: Vec<usize> = std::iter::once(coarsest).chain(first.blocks).collect();
    let mut notes = Vec::new();
    if let (Some(c), Some(path)) = (&resume, &args.resume) {
        let origin = format!("the configuration stored in {}", path.display());
        let stored = Config::from_toml(&c.config, &origin)?;
        notes.extend(resume_changes(&stored, &config, seeded_data)?);
        if c.level as usize >= config.nested.levels {
            bail!(
                "the checkpoint is from nested level {}, but nested.levels = {}",
                c.level,
                config.nested.levels
            );
        }
    }
    let init = match (&init, &args.init_from) {
        (Some(c), Some(path)) => {
            let (params, shapes, note) = init_parameters(c, path, &config, &first_layers)?;
            notes.extend(note);
            Some((params, shapes))
        }
        _ => None,
    };
    Ok(Setup {
        config,
        train,
        val,
        resume,
        init,
        notes,
    })
}

/// L-BFGS trains on the whole training set: a mini-batch size below it is refused (it was
/// once ignored silently).
fn check_batch(config: &Config, examples: usize) -> Result<()> {
    let o = &config.optimizer;
    if o.kind == OptimizerKind::Lbfgs && o.batch_size > 0 && o.batch_size < examples {
        bail!(
            "config keys `optimizer.kind` = \"lbfgs\" and `optimizer.batch_size` = {} do not go together: L-BFGS trains on the full training set ({examples} examples); set optimizer.batch_size = 0, or optimizer.kind = \"adam\" or \"sgd\" for mini-batches",
            o.batch_size
        );
    }
    Ok(())
}

/// The header's batch: "full" when one batch holds the whole training set (L-BFGS always).
fn batch_text(config: &Config, examples: usize) -> String {
    let b = config.optimizer.batch_size;
    if config.optimizer.kind == OptimizerKind::Lbfgs || b == 0 || b >= examples {
        "full".to_string()
    } else {
        b.to_string()
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// What rank 0 prepared before training: the history writer (with a resumed run's rows
/// already in it), the lock on the checkpoint directory, and notes for the log. None on the
/// other ranks.
struct Outputs {
    writer: HistoryWriter,
    lock: RunLock,
    notes: Vec<String>,
}

/// Prepares the outputs on rank 0 (agreed on by every rank): the checkpoint directory
/// created, checked writable and locked against a second run, stale checkpoint temporaries
/// of killed runs removed; the history file's directory checked writable and the history
/// opened.
fn open_outputs(
    par: &Parallel,
    path: &Path,
    ckpt_dir: &Path,
    resume: Option<&Checkpoint>,
) -> Result<Option<Outputs>> {
    if !par.is_root() {
        return agree(par, Ok(None));
    }
    let w = (|| {
        let key = "output.checkpoint_dir";
        std::fs::create_dir_all(ckpt_dir)
            .with_context(|| format!("cannot create checkpoint_dir {}", ckpt_dir.display()))?;
        rundir::probe_writable(
            ckpt_dir,
            &format!("config key `{key}` = {}", ckpt_dir.display()),
        )?;
        let lock = RunLock::acquire(ckpt_dir, key)?;
        let mut notes: Vec<String> = lock.took_over.iter().cloned().collect();
        let removed = rundir::remove_stale_temporaries(ckpt_dir);
        if !removed.is_empty() {
            notes.push(format!(
                "removed {} temporary file{} of an earlier, interrupted run in {}: {}",
                removed.len(),
                plural(removed.len()),
                ckpt_dir.display(),
                removed.join(", ")
            ));
        }
        let history_dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(history_dir)
            .with_context(|| format!("cannot create directory {}", history_dir.display()))?;
        rundir::probe_writable(history_dir, &format!("the history file {}", path.display()))?;
        let mut w = HistoryWriter::create(path)?;
        // A resumed run continues the same history.
        for r in resume.iter().flat_map(|c| {
            c.history
                .rows
                .iter()
                .map(|v| Row::from_values(&c.history.columns, v))
        }) {
            w.push(&r)?;
        }
        Ok(Some(Outputs {
            writer: w,
            lock,
            notes,
        }))
    })();
    agree(par, w)
}

/// The run's opening notes: version and ranks, data, and where a resumed run continues.
fn announce_run(reporter: &Reporter, par: &Parallel, s: &Setup, resume: Option<&Path>) {
    reporter.note(&format!(
        "layerpar {}: training on {} MPI rank{}",
        env!("CARGO_PKG_VERSION"),
        par.size(),
        plural(par.size())
    ));
    let p = &s.config.parallel;
    if p.data_groups > 1 || p.chunks > 1 {
        reporter.note(&format!(
            "grid: {} × {} (data groups × layer ranks), every batch in {} chunks summed in chunk order",
            p.data_groups,
            par.size() / p.data_groups,
            p.chunks
        ));
    }
    let outputs = if s.train.is_regression() {
        format!(
            "{} target{} (regression)",
            s.train.target_dim,
            plural(s.train.target_dim)
        )
    } else {
        format!("{} classes", s.train.outputs())
    };
    reporter.note(&format!(
        "data: {}, {} training / {} validation examples, {} features, {outputs}",
        s.config.data.kind,
        s.train.len(),
        s.val.len(),
        s.train.dim,
    ));
    if let (Some(c), Some(path)) = (&s.resume, resume) {
        reporter.note(&format!(
            "resuming {} at iteration {} (nested level {})",
            path.display(),
            c.iteration,
            c.level
        ));
    }
}

/// A level's notes: the network, the layers per rank and MGRIT, the optimizer.
fn announce_level(
    reporter: &Reporter,
    ranks: usize,
    plan: &NestedPlan,
    level: usize,
    cfg: &Config,
    dist: &DistNet,
    examples: usize,
) {
    let net = &dist.first().net;
    let sh = *net.shape();
    if plan.is_nested() {
        let layers: Vec<String> = dist
            .nets()
            .iter()
            .map(|n| n.shape().layers.to_string())
            .collect();
        reporter.note(&format!(
            "nested level {level} of {}: {} hidden layers",
            plan.levels.len(),
            layers.join(" + ")
        ));
    }
    let spline = if cfg.is_spline() {
        format!(
            " ({} B-spline coefficient sets of degree {}, {} knots)",
            crate::model::hidden_sets(cfg, net),
            cfg.controls.degree,
            cfg.controls.knots.name()
        )
    } else {
        String::new()
    };
    let kind = match sh.conv {
        None => format!("width {}", sh.width),
        // (A chain's read-out follows its last block.)
        Some(c) if dist.is_chain() => format!("convolutional, {c:#}"),
        Some(c) => format!("convolutional, {c}"),
    };
    let params: usize = dist
        .nets()
        .iter()
        .map(|n| crate::model::parameter_network(cfg, n).num_params())
        .sum();
    let blocks = if dist.is_chain() {
        format!(" (ODE block 1 of {})", dist.blocks.len())
    } else {
        String::new()
    };
    reporter.note(&format!(
        "network: {kind}, {} hidden layers{blocks}, T = {}, h = {:.4e}, {}, {params} parameters{spline}",
        sh.layers,
        net.final_time,
        net.step_size(),
        net.activation,
    ));
    for (i, b) in dist.nets().iter().enumerate().skip(1) {
        let c = b.shape().conv.expect("later blocks are convolutional");
        let c = if i + 1 < dist.blocks.len() {
            format!("{c:#}")
        } else {
            c.to_string()
        };
        reporter.note(&format!(
            "ODE block {} of {}: {c}, {} hidden layers, h = {:.4e}",
            i + 1,
            dist.blocks.len(),
            b.shape().layers,
            b.step_size(),
        ));
    }
    let m = &cfg.mgrit;
    let mgrit = if dist.levels() == 1 {
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
    };
    let per_rank: Vec<String> = dist
        .nets()
        .iter()
        .map(|n| {
            let l = n.shape().layers;
            format!("{}–{}", l / ranks, l.div_ceil(ranks))
        })
        .collect();
    reporter.note(&format!(
        "layers per rank: {}; MGRIT: {mgrit}",
        per_rank.join(" + "),
    ));
    let batch = batch_text(cfg, examples);
    let start = if batch != "full" && dist.levels() > 1 && cfg.mgrit.warm_restart {
        match cfg.mgrit.batch_start {
            BatchStart::Coarse => {
                " (each batch's MGRIT solves start from its coarse-grid propagation)"
            }
            BatchStart::Warm => {
                " (each batch's MGRIT solves start from the previous batch's states)"
            }
        }
    } else {
        ""
    };
    reporter.note(&format!(
        "optimizer: {}, {} iterations, batch {batch}{start}",
        cfg.optimizer.kind, cfg.optimizer.max_iter,
    ));
}

/// How a level ended: the whole parameter vector, its last row and why it stopped.
struct LevelEnd {
    params: Vec<f64>,
    row: Row,
    stop: String,
}

/// The levels of a run, trained in turn; what carries over from one level to the next.
struct Levels<'a, 'c> {
    par: &'a Parallel,
    comm: &'c MpiComm,
    /// The column communicator of a data × layer grid (None: no grid).
    col: Option<&'c MpiComm>,
    /// The run's configuration (stored in every checkpoint).
    base: &'a Config,
    plan: &'a NestedPlan,
    reporter: &'a Reporter,
    history: HistoryFile<'a>,
    ckpt_dir: PathBuf,
    problem: Problem,
    /// The checkpoint to resume (its level starts from it).
    resume: Option<&'a Checkpoint>,
    /// The rows of the finished levels.
    rows: Vec<Row>,
    /// The last level's (or --init-from's) parameters and the shapes of its ODE blocks.
    carried: Option<(Vec<f64>, Vec<NetShape>)>,
}

impl<'c> Levels<'_, 'c> {
    /// This rank's part of θ₀ for `level` and where its loop starts: the resumed
    /// checkpoint's state, the carried parameters moved to this depth, or new ones.
    fn start(&mut self, level: usize, cfg: &Config, dist: &DistNet) -> Result<(Vec<f64>, Start)> {
        let par = self.par;
        let fresh = Start::fresh(cfg.optimizer.kind);
        let (theta, mut start) = match (self.resume, &self.carried) {
            (Some(c), _) if level == c.level as usize => agree(par, resume(c, dist, cfg))?,
            (_, Some((params, shapes))) => {
                let sets = |n: &odenet::Network| crate::model::hidden_sets(cfg, n);
                let nets = dist.nets();
                let moved =
                    transfer_blocks(params, shapes, &nets, sets, cfg.is_spline(), cfg.interp());
                let global = agree(par, moved)?;
                (dist.extract(&global), fresh)
            }
            _ => {
                let nets: Vec<_> = dist.nets().into_iter().cloned().collect();
                let global = crate::model::initial_chain_parameters(cfg, &nets);
                (dist.extract(&global), fresh)
            }
        };
        // A resumed checkpoint's history holds the earlier levels too.
        self.rows
            .extend(start.rows.iter().filter(|r| r.level < level).cloned());
        start.rows.retain(|r| r.level == level);
        Ok((theta, start))
    }

    /// Trains nested level `level` and writes its checkpoints.
    fn train(&mut self, level: usize) -> Result<LevelEnd> {
        let par = self.par;
        let cfg = self.plan.config(self.base, level);
        let data = crate::model::DataShape::of(&self.problem.train);
        let nets = crate::model::build_blocks(&cfg, data)?;
        self.problem.net = nets[nets.len() - 1].clone();
        let basis = cfg.spline_basis()?;
        let bases = vec![basis; nets.len()];
        let settings = crate::model::solver_settings(&cfg);
        let mut dist = agree(
            par,
            DistNet::new(nets, self.comm, settings, bases).map_err(anyhow::Error::from),
        )?;
        dist.keep_derivatives(cfg.mgrit.keep_derivatives);
        let examples = self.problem.train.len();
        if let Some(col) = self.col {
            let grid = layer_parallel::DataGrid::new(col.duplicate(), cfg.parallel.chunks);
            agree(par, dist.set_data_grid(grid).map_err(anyhow::Error::from))?;
        }
        announce_level(
            self.reporter,
            self.comm.size(),
            self.plan,
            level,
            &cfg,
            &dist,
            examples,
        );
        let (theta, start) = self.start(level, &cfg, &dist)?;
        let limits = Limits {
            max_iter: cfg.optimizer.max_iter,
            target_acc: self.plan.levels[level].target_acc,
            target_measure: cfg.nested.target_measure,
            level,
            divergence_factor: cfg.optimizer.divergence_factor,
            metrics_every: cfg.output.metrics_every,
            checkpoint_every: cfg.output.checkpoint_every,
        };
        let mut checkpoints = Checkpoints {
            par,
            dir: self.ckpt_dir.clone(),
            prefix: self.plan.checkpoint_prefix(level),
            every: cfg.output.checkpoint_every,
            keep_last: cfg.output.keep_last,
            config: &cfg,
            base: self.base,
            earlier: &self.rows,
            level,
        };
        let built = optimizer::build(&cfg, &dist, &self.problem, theta.len(), &start.optimizer);
        let opt = agree(par, built)?;
        let reporter = self.reporter;
        let note = |m: &str| reporter.note(m);
        let mut obj = Objective {
            dist: &mut dist,
            problem: &self.problem,
            note: &note,
        };
        let mut progress = reporter;
        let outcome = crate::train::run(
            opt,
            &mut obj,
            theta,
            start,
            limits,
            &mut [&mut self.history, &mut checkpoints, &mut progress],
        );
        reporter.finish();
        self.finish(level, &cfg, &dist, outcome?)
    }

    /// Writes the level's final checkpoint (levelℓ.h5 when nested, final.h5 after the last
    /// level) and carries its parameters to the next level.
    fn finish(
        &mut self,
        level: usize,
        cfg: &Config,
        dist: &DistNet,
        out: Outcome,
    ) -> Result<LevelEnd> {
        let rows: Vec<Row> = self.rows.iter().chain(&out.rows).cloned().collect();
        let row = out.rows.last().cloned().expect("a row");
        let snap = Snapshot {
            iteration: row.iter,
            theta: &out.theta,
            optimizer: &out.optimizer,
        };
        let ckpt = gather(dist, cfg, self.base, &snap, &rows, level);
        if let Some(name) = self.plan.level_file(level) {
            write_or_abort(self.par, &self.ckpt_dir.join(name), &ckpt)?;
        }
        self.rows.extend(out.rows.iter().cloned());
        self.carried = Some((ckpt.params.clone(), ckpt.shapes().copied().collect()));
        if level + 1 == self.plan.levels.len() {
            write_or_abort(self.par, &self.ckpt_dir.join("final.h5"), &ckpt)?;
        }
        Ok(LevelEnd {
            params: ckpt.params,
            row,
            stop: out.stop.to_string(),
        })
    }
}

/// How a training run ended (on every rank).
pub struct Trained {
    /// Why the last level stopped.
    pub stop: String,
    /// The last history row.
    pub row: Row,
    /// The whole trained parameter vector.
    pub params: Vec<f64>,
    pub history: PathBuf,
    pub checkpoint: PathBuf,
    /// The configured T of a run with a learnable time scale (the learnt one is the last
    /// row's `final_time`).
    pub configured_final_time: Option<f64>,
}

/// `layerpar train`: trains, then rank 0 prints how the run ended.
pub fn run(par: &Parallel, args: &TrainArgs) -> Result<()> {
    let t = train(par, args)?;
    if par.is_root() {
        println!("stopped: {}", t.stop);
        println!("final: {}", format_row(&t.row));
        if let Some(configured) = t.configured_final_time {
            println!(
                "learnt time scale {:.6}: final time T = {:.6} (configured {configured})",
                t.row.final_time / configured,
                t.row.final_time,
            );
        }
        println!(
            "parameters: {} on {} rank{}, fingerprint {:#018x}",
            t.params.len(),
            par.size(),
            plural(par.size()),
            fingerprint(&t.params)
        );
        println!(
            "wrote {} and {}",
            t.history.display(),
            t.checkpoint.display()
        );
    }
    Ok(())
}

/// Trains the run that `args` describe on every rank (the driver of `layerpar train`, also
/// used by `layerpar study` for each of its runs); prints only the run's notes and progress.
pub fn train(par: &Parallel, args: &TrainArgs) -> Result<Trained> {
    crate::signals::install();
    let config = super::root_config(par, || load_config(args))?;
    let s = agree(par, setup(par, args, config))?;
    let config = &s.config;
    let (comm, col) = crate::parallel::grid_comms(par, &config.parallel);
    let plan = NestedPlan::new(config);
    let history_path = args
        .history
        .clone()
        .unwrap_or_else(|| PathBuf::from(&config.output.history));
    let ckpt_dir = PathBuf::from(&config.output.checkpoint_dir);
    let outputs = open_outputs(par, &history_path, &ckpt_dir, s.resume.as_ref())?;
    let (writer, _lock, notes) = match outputs {
        Some(o) => (Some(o.writer), Some(o.lock), o.notes),
        None => (None, None, Vec::new()),
    };
    let reporter = Reporter::new(
        config.output.progress,
        par.is_root(),
        config.optimizer.max_iter,
        config.output.print_every,
    );
    announce_run(&reporter, par, &s, args.resume.as_deref());
    for n in notes.iter().chain(&s.notes) {
        reporter.note(n);
    }
    let problem = Problem {
        net: crate::model::build_network(config, crate::model::DataShape::of(&s.train))?,
        train: s.train,
        val: s.val,
    };
    let mut levels = Levels {
        par,
        comm: &comm,
        col: col.as_ref(),
        base: config,
        plan: &plan,
        reporter: &reporter,
        history: HistoryFile { par, writer },
        ckpt_dir: ckpt_dir.clone(),
        problem,
        resume: s.resume.as_ref(),
        rows: Vec::new(),
        carried: s.init.clone(),
    };
    let first = s.resume.as_ref().map_or(0, |c| c.level as usize);
    let mut last = None;
    for level in first..plan.levels.len() {
        let end = levels.train(level)?;
        if level + 1 < plan.levels.len() {
            reporter.note(&format!("nested level {level} stopped: {}", end.stop));
        }
        last = Some(end);
    }
    let last = last.expect("at least one level ran");
    Ok(Trained {
        stop: last.stop,
        row: last.row,
        params: last.params,
        history: history_path,
        checkpoint: ckpt_dir.join("final.h5"),
        configured_final_time: config
            .network
            .learn_time_scale
            .then_some(config.network.final_time),
    })
}
