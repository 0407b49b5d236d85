//! The optimizers as steps of one loop ([`super::run`]): L-BFGS with Armijo backtracking
//! (full batch), and Adam and SGD over mini-batch epochs. Each implements [`Optimizer`]:
//! the loop asks it for the measurements of the starting point, then for one iteration at a
//! time (θ_{k−1} → θ_k), and whether it has converged; it owns everything else (iteration
//! counting, rows, observers, stopping). [`OptimizerState`] is the one shape of an
//! optimizer's memory: what it exports for a checkpoint and what it is restored from.

use super::{Problem, Stop};
use crate::config::{BatchStart, Config, OptimizerKind};
use crate::train::{DistNet, DistSpace};
use anyhow::Result;
use layer_parallel::Value as DistValue;
use layerpar_data::rng::Generator;
use layerpar_data::Batcher;
use optim::{backtracking_in, Armijo, LineSearch, Schedule, Space};

/// What the objective gives an optimizer: the distributed network, the data, and a way to
/// tell the user something (rank 0's reporter).
pub struct Objective<'a> {
    pub dist: &'a mut DistNet,
    pub problem: &'a Problem,
    pub note: &'a dyn Fn(&str),
}

/// What an optimizer measured at an iterate θ_k: the row's optimizer-specific fields (the
/// loop adds the validation accuracy, the wall time, k and the level).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    /// J(θ_k) = loss + regularization.
    pub objective: f64,
    pub loss: f64,
    /// ‖∇J(θ_k)‖ (L-BFGS) or the epoch's mean mini-batch gradient norm (Adam, SGD).
    pub grad_norm: f64,
    pub train_acc: f64,
    pub fwd_res: Option<f64>,
    pub adj_res: Option<f64>,
    /// The accepted step (L-BFGS) or the learning rate of the epoch.
    pub step: f64,
    /// Whether `objective`, `loss` and `train_acc` were measured (over the whole training
    /// set); false for Adam and SGD rows without the metrics, which hold NaN there.
    pub training_set: bool,
}

/// The outcome of one iteration.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    /// θ was updated; its measurements.
    Row(Measured),
    /// No update was possible (θ is unchanged).
    Stop(Stop),
}

/// The memory of an optimizer, this rank's part of every vector: what a checkpoint stores
/// (see `checkpointing` for the file's form) and what a resumed run starts from. A fresh
/// start is [`OptimizerState::fresh`].
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// The optimizer it belongs to.
    pub kind: OptimizerKind,
    /// L-BFGS curvature pairs (s_k, y_k) = (θ_{k+1} − θ_k, ∇J_{k+1} − ∇J_k), oldest first.
    pub lbfgs_pairs: Vec<(Vec<f64>, Vec<f64>)>,
    /// Adam's moments (m, v) and step count t.
    pub adam: Option<(Vec<f64>, Vec<f64>, u64)>,
    /// SGD's velocity.
    pub sgd_velocity: Option<Vec<f64>>,
    /// The mini-batch order and generator (Adam and SGD).
    pub batches: Option<(Vec<usize>, Generator)>,
}

impl OptimizerState {
    /// No memory: a fresh start of `kind`.
    pub fn fresh(kind: OptimizerKind) -> Self {
        OptimizerState {
            kind,
            lbfgs_pairs: Vec::new(),
            adam: None,
            sgd_velocity: None,
            batches: None,
        }
    }
}

/// One optimizer as a sequence of iterations over a distributed objective. Every method is
/// collective: every rank calls it in the same order and gets the same answer.
pub trait Optimizer {
    /// Evaluates at the starting point θ₀. On a fresh start (`fresh`) returns the
    /// measurements of row 0; on a resumed run only prepares what the first iteration needs
    /// and returns None.
    fn start(&mut self, obj: &mut Objective, theta: &[f64], fresh: bool) -> Option<Measured>;

    /// Checked before each iteration: the current iterate is already good enough.
    fn converged_before(&self) -> Option<Stop> {
        None
    }

    /// Iteration `iter`: θ_{iter−1} → θ_iter in place. `metrics`: the row needs J, the loss
    /// and the accuracy over the whole training set (output.metrics_every); an optimizer
    /// that would have to evaluate them separately (Adam, SGD) measures them only then, or
    /// when [`Optimizer::converged_after`] will end the run after this row.
    fn next_iter(
        &mut self,
        obj: &mut Objective,
        theta: &mut Vec<f64>,
        iter: usize,
        metrics: bool,
    ) -> Next;

    /// Checked after each iteration that gave a row.
    fn converged_after(&self) -> Option<Stop> {
        None
    }

    /// Whether an iteration is an epoch over the training set (Adam, SGD).
    fn counts_epochs(&self) -> bool;

    /// A copy of the optimizer's memory (for a checkpoint).
    fn state(&self) -> OptimizerState;

    /// The optimizer's memory, moved out at the end of training (L-BFGS keeps up to m pairs
    /// of parameter-sized vectors, which a copy would double).
    fn into_state(self: Box<Self>) -> OptimizerState {
        self.state()
    }
}

/// The configured optimizer over this rank's part of θ (`len` values), restored from
/// `state` (a fresh start: [`OptimizerState::fresh`]).
pub fn build(
    config: &Config,
    dist: &DistNet,
    problem: &Problem,
    len: usize,
    state: &OptimizerState,
) -> Result<Box<dyn Optimizer>> {
    let o = &config.optimizer;
    let space = dist.space();
    Ok(match o.kind {
        OptimizerKind::Lbfgs => Box::new(LbfgsSearch::new(config, space, len, state)),
        OptimizerKind::Adam | OptimizerKind::Sgd => {
            let mut adam = optim::Adam::new(len, o.beta1, o.beta2, o.epsilon);
            if let Some((m, v, t)) = &state.adam {
                adam.m.clone_from(m);
                adam.v.clone_from(v);
                adam.t = *t;
            }
            let mut sgd = optim::Sgd::new(len, o.momentum);
            if let Some(v) = &state.sgd_velocity {
                sgd.velocity.clone_from(v);
            }
            let mut batcher = Batcher::new(problem.train.len(), o.batch_size, config.seed);
            if let Some((order, rng)) = &state.batches {
                batcher
                    .restore(order.clone(), rng.clone())
                    .map_err(anyhow::Error::msg)?;
            }
            if o.kind == OptimizerKind::Adam {
                Box::new(Epochs::new(config, space, adam, batcher))
            } else {
                Box::new(Epochs::new(config, space, sgd, batcher))
            }
        }
    })
}

/// L-BFGS with Armijo backtracking on the full training set: d_k = −H_k ∇J(θ_k) from the
/// curvature pairs, θ_{k+1} = θ_k + α d_k with the first α = α₀ factor^j that satisfies
/// J(θ_k + α d_k) ≤ J(θ_k) + c α ⟨∇J(θ_k), d_k⟩. A failed search restarts from steepest
/// descent once (the pairs are dropped); a failure along −∇J ends the run.
struct LbfgsSearch {
    memory: optim::Lbfgs,
    armijo: Armijo,
    gtol: f64,
    space: DistSpace,
    /// ∇J and J at the current iterate (set by `start`).
    grad: Vec<f64>,
    value: Option<DistValue>,
    /// Parameter-sized buffers reused across iterations, so that an iteration allocates
    /// (and page-faults) nothing: the search direction, the trial points, the gradient at
    /// a trial point and the next curvature pair.
    spare: Spare,
}

/// The buffers an L-BFGS iteration reuses: the parameter-sized vectors of one iteration and
/// the curvature pairs the memory will take, reserved and touched at the start
/// ([`Spare::reserve`]).
#[derive(Default)]
struct Spare {
    direction: Vec<f64>,
    trial: Vec<f64>,
    grad: Vec<f64>,
    pairs: Vec<optim::lbfgs::Pair>,
}

impl Spare {
    /// Buffers for one iteration and for the `count` pairs the memory will yet take, of `len`
    /// values each, written once so that their pages are mapped now rather than in the
    /// iterations: the memory grows by a pair per iteration until it holds m, and fresh
    /// pages cost a fault each on first touch (on a virtual machine far more than the
    /// iteration's vector work).
    fn reserve(&mut self, count: usize, len: usize) {
        let touched = || {
            let mut v = Vec::with_capacity(len);
            v.resize(len, f64::NAN);
            v
        };
        self.pairs = (0..count).map(|_| (touched(), touched())).collect();
        (self.direction, self.trial, self.grad) = (touched(), touched(), touched());
    }
}

impl LbfgsSearch {
    fn new(config: &Config, space: DistSpace, len: usize, state: &OptimizerState) -> Self {
        let o = &config.optimizer;
        let mut memory = optim::Lbfgs::new(o.lbfgs_memory);
        for (s, y) in &state.lbfgs_pairs {
            memory.push(s.clone(), y.clone(), &space);
        }
        // The pairs the run can still add: at most one per iteration, up to m, and one more
        // to form the next pair in while the memory is full.
        let mut spare = Spare::default();
        let room = o.lbfgs_memory.max(1) - memory.len().min(o.lbfgs_memory.max(1));
        spare.reserve(room.min(o.max_iter) + 1, len);
        LbfgsSearch {
            memory,
            armijo: Armijo {
                initial: o.learning_rate,
                factor: o.ls_factor,
                c: o.ls_c,
                max_trials: o.ls_max_iter,
            },
            gtol: o.gtol,
            space,
            grad: vec![0.0; len],
            value: None,
            spare,
        }
    }

    /// The row fields at the current iterate (J, loss and accuracy from its evaluation).
    fn measured(&self, obj: &Objective, step: f64) -> Measured {
        let v = self.value.expect("start evaluates first");
        Measured {
            objective: v.objective,
            loss: v.loss,
            grad_norm: self.space.norm(&self.grad),
            train_acc: v.correct as f64 / obj.problem.train.len() as f64,
            fwd_res: v.fwd_res,
            adj_res: v.adj_res,
            step,
            training_set: true,
        }
    }
}

impl Optimizer for LbfgsSearch {
    fn start(&mut self, obj: &mut Objective, theta: &[f64], fresh: bool) -> Option<Measured> {
        let t = &obj.problem.train;
        self.value = Some(
            obj.dist
                .objective_gradient(theta, &t.features, t.y(), &mut self.grad),
        );
        fresh.then(|| self.measured(obj, 0.0))
    }

    fn converged_before(&self) -> Option<Stop> {
        (self.space.norm(&self.grad) <= self.gtol).then_some(Stop::Gradient {
            gtol: self.gtol,
            mean: false,
        })
    }

    fn next_iter(
        &mut self,
        obj: &mut Objective,
        theta: &mut Vec<f64>,
        iter: usize,
        _metrics: bool,
    ) -> Next {
        let (x, y) = (&obj.problem.train.features, obj.problem.train.y());
        let value = self.value.expect("start evaluates first").objective;
        let spare = &mut self.spare;
        let accepted = loop {
            let d = &mut spare.direction;
            self.memory.direction_into(&self.grad, &self.space, d);
            let dist = &mut *obj.dist;
            let search = backtracking_in(
                std::mem::take(&mut spare.trial),
                theta,
                value,
                &self.grad,
                d,
                &self.armijo,
                &self.space,
                |t| {
                    // The gradient overwrites every value (objective_gradient zeroes it).
                    let mut g = std::mem::take(&mut spare.grad);
                    g.resize(t.len(), 0.0);
                    let v = dist.objective_gradient(t, x, y, &mut g);
                    (v.objective, (g, v))
                },
            );
            match search {
                LineSearch::Accepted { step, x, data, .. } => break Some((step, x, data)),
                LineSearch::Failed { reason, .. } if !self.memory.is_empty() => {
                    (obj.note)(&format!(
                        "iteration {iter}: line search failed ({reason}); restarting L-BFGS from steepest descent"
                    ));
                    self.memory.reset();
                }
                LineSearch::Failed { reason, .. } => {
                    (obj.note)(&format!(
                        "iteration {iter}: line search failed along −∇J ({reason})"
                    ));
                    break None;
                }
            }
        };
        let Some((step, x_new, (g, v))) = accepted else {
            return Next::Stop(Stop::LineSearch { iter });
        };
        // The pair (s, y) = (θ_new − θ, ∇J_new − ∇J) on the space's share only: the memory
        // reads nothing else until a checkpoint completes it (`state`).
        let (mut s, mut yv) = self.spare.pairs.pop().unwrap_or_default();
        let n = theta.len();
        s.resize(n, f64::NAN);
        yv.resize(n, f64::NAN);
        self.space.for_share(n, |r| {
            for i in r {
                s[i] = x_new[i] - theta[i];
                yv[i] = g[i] - self.grad[i];
            }
        });
        if let Some(old) = self.memory.push_recycling(s, yv, &self.space).1 {
            self.spare.pairs.push(old);
        }
        self.spare.trial = std::mem::replace(theta, x_new);
        self.spare.grad = std::mem::replace(&mut self.grad, g);
        self.value = Some(v);
        Next::Row(self.measured(obj, step))
    }

    fn counts_epochs(&self) -> bool {
        false
    }

    /// The pairs made whole (each row of a grid formed its share of them; collective).
    fn state(&self) -> OptimizerState {
        let whole = |v: &[f64]| {
            let mut v = v.to_vec();
            self.space.complete(&mut v);
            v
        };
        OptimizerState {
            lbfgs_pairs: self
                .memory
                .pairs()
                .map(|(s, y)| (whole(s), whole(y)))
                .collect(),
            ..OptimizerState::fresh(OptimizerKind::Lbfgs)
        }
    }

    fn into_state(self: Box<Self>) -> OptimizerState {
        let space = &self.space;
        OptimizerState {
            lbfgs_pairs: self
                .memory
                .into_pairs()
                .map(|(mut s, mut y)| {
                    space.complete(&mut s);
                    space.complete(&mut y);
                    (s, y)
                })
                .collect(),
            ..OptimizerState::fresh(OptimizerKind::Lbfgs)
        }
    }
}

/// The update θ ← θ − (step from g and the rule's memory) of a stochastic optimizer.
trait Rule {
    const KIND: OptimizerKind;
    fn step(&mut self, theta: &mut [f64], grad: &[f64], lr: f64);
    /// Writes the rule's memory into `state`.
    fn save(&self, state: &mut OptimizerState);
}

impl Rule for optim::Adam {
    const KIND: OptimizerKind = OptimizerKind::Adam;
    fn step(&mut self, theta: &mut [f64], grad: &[f64], lr: f64) {
        optim::Adam::step(self, theta, grad, lr);
    }
    fn save(&self, state: &mut OptimizerState) {
        state.adam = Some((self.m.clone(), self.v.clone(), self.t));
    }
}

impl Rule for optim::Sgd {
    const KIND: OptimizerKind = OptimizerKind::Sgd;
    fn step(&mut self, theta: &mut [f64], grad: &[f64], lr: f64) {
        optim::Sgd::step(self, theta, grad, lr);
    }
    fn save(&self, state: &mut OptimizerState) {
        state.sgd_velocity = Some(self.velocity.clone());
    }
}

/// Adam or SGD over epochs: each iteration shuffles the training set, and takes one step
/// per mini-batch B with the gradient of J on B at the epoch's learning rate
/// η_e = schedule(η₀, e − 1). The row's J, loss and accuracy are re-evaluated over the whole
/// training set at the epoch's end when the row gets the metrics (output.metrics_every); its
/// gradient norm is ‖Σ_B ∇J_B‖ / #batches.
struct Epochs<R> {
    rule: R,
    batcher: Batcher,
    schedule: Schedule,
    learning_rate: f64,
    gtol: f64,
    space: DistSpace,
    grad: Vec<f64>,
    gsum: Vec<f64>,
    batch: layerpar_data::Dataset,
    /// The last epoch's mean gradient norm.
    mean_grad_norm: f64,
    /// Tell the objective about each new mini-batch (mgrit.batch_start = "coarse").
    restart_batches: bool,
}

impl<R: Rule> Epochs<R> {
    fn new(config: &Config, space: DistSpace, rule: R, batcher: Batcher) -> Self {
        let o = &config.optimizer;
        Epochs {
            rule,
            batcher,
            schedule: config.schedule(),
            learning_rate: o.learning_rate,
            gtol: o.gtol,
            space,
            grad: Vec::new(),
            gsum: Vec::new(),
            batch: layerpar_data::Dataset::default(),
            mean_grad_norm: f64::INFINITY,
            restart_batches: config.mgrit.batch_start == BatchStart::Coarse,
        }
    }

    /// The row fields at θ: J = loss + regularization over the whole training set when
    /// `training_set`, else NaN there (no evaluation).
    fn measured(
        obj: &mut Objective,
        theta: &[f64],
        grad_norm: f64,
        step: f64,
        (fwd_res, adj_res): (Option<f64>, Option<f64>),
        training_set: bool,
    ) -> Measured {
        let (objective, loss, train_acc) = if training_set {
            let t = &obj.problem.train;
            let (loss, train_acc) = obj.dist.evaluate(theta, &t.features, t.y());
            let reg = obj.dist.regularization(theta);
            (loss + reg, loss, train_acc)
        } else {
            (f64::NAN, f64::NAN, f64::NAN)
        };
        Measured {
            objective,
            loss,
            grad_norm,
            train_acc,
            fwd_res,
            adj_res,
            step,
            training_set,
        }
    }
}

impl<R: Rule> Optimizer for Epochs<R> {
    fn start(&mut self, obj: &mut Objective, theta: &[f64], fresh: bool) -> Option<Measured> {
        self.grad = vec![0.0; theta.len()];
        self.gsum = vec![0.0; theta.len()];
        if !fresh {
            return None;
        }
        let t = &obj.problem.train;
        let v0 = obj
            .dist
            .objective_gradient(theta, &t.features, t.y(), &mut self.grad);
        let gnorm = self.space.norm(&self.grad);
        Some(Self::measured(
            obj,
            theta,
            gnorm,
            0.0,
            (v0.fwd_res, v0.adj_res),
            true,
        ))
    }

    fn next_iter(
        &mut self,
        obj: &mut Objective,
        theta: &mut Vec<f64>,
        epoch: usize,
        metrics: bool,
    ) -> Next {
        let lr = self.schedule.rate(self.learning_rate, epoch - 1);
        self.batcher.shuffle();
        self.gsum.fill(0.0);
        let nb = self.batcher.batches_per_epoch();
        let mut res = (None, None);
        for b in 0..nb {
            obj.problem
                .train
                .gather(self.batcher.batch(b), &mut self.batch);
            if nb > 1 && self.restart_batches {
                obj.dist.new_batch();
            }
            let batch = &self.batch;
            let v = obj
                .dist
                .objective_gradient(theta, &batch.features, batch.y(), &mut self.grad);
            res = (v.fwd_res, v.adj_res);
            self.rule.step(theta, &self.grad, lr);
            optim::axpy(1.0, &self.grad, &mut self.gsum);
        }
        self.mean_grad_norm = self.space.norm(&self.gsum) / nb as f64;
        let training_set = metrics || self.converged_after().is_some();
        Next::Row(Self::measured(
            obj,
            theta,
            self.mean_grad_norm,
            lr,
            res,
            training_set,
        ))
    }

    fn converged_after(&self) -> Option<Stop> {
        (self.mean_grad_norm <= self.gtol).then_some(Stop::Gradient {
            gtol: self.gtol,
            mean: true,
        })
    }

    fn counts_epochs(&self) -> bool {
        true
    }

    fn state(&self) -> OptimizerState {
        let mut state = OptimizerState {
            batches: Some((self.batcher.order().to_vec(), self.batcher.rng().clone())),
            ..OptimizerState::fresh(R::KIND)
        };
        self.rule.save(&mut state);
        state
    }
}
