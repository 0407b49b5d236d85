//! The layer-parallel objective: J(p) on a batch and its gradient, with forward and adjoint
//! propagation as MGRIT solves over the ranks.
//!
//! J(p) = (1/B) Σ_j loss(W_c U_N^j + b_c, y_j) + R(p), U_0 = opening(X),
//! U_{n+1} = U_n + h σ(K_n U_n + b_n 1ᵀ), θ = P(p) ([`Controls`]).
//! The gradient is the exact discrete adjoint: Λ_N = W_cᵀ G (G = ∂loss/∂Z),
//! Λ_n = Λ_{n+1} + K_nᵀ S_n with S_n = σ'(K_n U_n + b_n) ⊙ (h Λ_{n+1}), ∂J/∂K_n = S_n U_nᵀ,
//! ∂J/∂b_n = S_n 1, ∂J/∂W_in = (σ'(A) ⊙ Λ_0) Xᵀ, then pulled back to p by Pᵀ. A learnable
//! time scale s (every step s·h) has ∂J/∂s = Σ_n h ⟨Λ_{n+1}, σ(K_n U_n + b_n 1ᵀ)⟩, each rank
//! forming its layers' terms and the sum taken in layer order. With one MGRIT
//! level both solves are the exact serial sweeps, pipelined over the ranks; with more they are
//! MGRIT iterations (one-shot when their iteration counts are small).
//!
//! Reproducibility: every scalar that crosses ranks (loss, regularization, dot products) is
//! formed from per-layer partials summed in layer order, so a run gives the same bits on any
//! number of ranks.

use crate::apps::{Derivatives, ForwardApp, SweptRegularization};
use crate::controls::Controls;
use crate::ghosts::{Ghosts, LayerControls};
use crate::partition::{LocalLayout, Partition};
use mgrit::{Comm, Options, Solver, Stats};
use odenet::loss::{loss_sum, Targets};
use odenet::network::ordered_sum;
use odenet::{Layer, Network, Scratch};
use std::collections::BTreeMap;

mod grid;
mod propagate;
pub use grid::{even_part, tree_sum, DataGrid};

const LAMBDA_TAG: i32 = 7002;

/// MGRIT settings of the forward and adjoint solves.
#[derive(Clone, Debug, PartialEq)]
pub struct SolverSettings {
    pub forward: Options,
    pub adjoint: Options,
}

/// J and metrics from one evaluation (identical on every rank).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Value {
    pub objective: f64,
    pub loss: f64,
    pub correct: usize,
    pub count: usize,
    /// Last forward / adjoint MGRIT residual norm (None for the serial sweep).
    pub fwd_res: Option<f64>,
    pub adj_res: Option<f64>,
}

/// Invalid settings for a layer-parallel objective.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

/// A spline run's θ-gradient (this rank's θ-layout) and coefficient gradient, between a
/// propagation and the pull-back to p.
pub(crate) struct SplineGradient {
    pub(crate) model: Vec<f64>,
    coef: Vec<f64>,
}

/// Buffers of one batch size, reused across evaluations.
#[derive(Default)]
struct Buffers {
    batch: usize,
    scratch: Scratch,
    logits: Vec<f64>,
    seed: Vec<f64>,
    lambda_final: Vec<f64>,
    /// D_n = σ'(Z_n(U_n)) of the owned layers at the forward solution.
    derivs: Derivatives,
    /// On a data grid, the per-chunk sums of the row's chunks (gradient, time-scale terms,
    /// loss, correct), reused across evaluations.
    chunk_sums: Vec<Vec<f64>>,
    /// The hidden regularization a one-level adjoint sweep forms group by group.
    swept: SweptRegularization,
}

/// What the last propagation has already formed of the hidden layers' regularization, so that
/// [`Objective::finish_gradient`] forms only the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HiddenRegularization {
    /// Nothing: the terms and the gradient are formed after the propagation.
    Later,
    /// The gradient (a data grid's rows, on their segments of the summed gradient).
    Gradient,
    /// The terms and the gradient (a one-level adjoint sweep with per-layer controls; the
    /// terms in the sweep's [`SweptRegularization`]).
    Swept,
}

/// The network split across the ranks of `C`, with its MGRIT solvers: the objective J(p),
/// its gradient and forward-only evaluations.
pub struct Objective<C: Comm> {
    pub net: Network,
    pub part: Partition,
    /// Layout of this rank's part of the optimizer's vector p (per-layer: the same as
    /// `model_layout`; spline: opening, all coefficients, classifier).
    pub layout: LocalLayout,
    /// Layout of this rank's per-layer controls θ_n (what the propagation uses).
    pub model_layout: LocalLayout,
    pub controls: Controls,
    /// The objective's own communicator (ghost and adjoint exchanges, reductions).
    pub comm: C,
    settings: SolverSettings,
    forward: Solver<Vec<f64>, C>,
    adjoint: Solver<Vec<f64>, C>,
    /// Exact one-level sweeps for evaluation, one per batch size (states are reused).
    sweeps: BTreeMap<usize, Solver<Vec<f64>, C>>,
    ghosts: Ghosts,
    buf: Buffers,
    /// Step calls of this rank per MGRIT level, forward and adjoint, since the last clear.
    pub fwd_steps: Vec<u64>,
    pub adj_steps: Vec<u64>,
    /// Time this rank spent in the step kernels of gradient evaluations (forward and adjoint
    /// steps, the kept derivatives and the layer gradients) since the last clear: the rest of
    /// an evaluation's time is the MGRIT machinery, communication and the other layers.
    pub kernel_time: std::time::Duration,
    /// Wall time of this rank in [`Objective::objective_gradient`] calls since the last clear
    /// (messages and waiting included): what a training iteration spends outside it is the
    /// optimizer's own work, the validation and the history.
    pub evaluation_time: std::time::Duration,
    /// The next `objective_gradient` is on other examples ([`Objective::new_batch`]).
    new_batch: bool,
    /// The data × layer grid this objective is a row of ([`Objective::set_data_grid`]).
    data: Option<DataGrid<C>>,
    /// Whether the gradient keeps D_n = σ'(Z_n(U_n)) from the forward solve for the adjoint
    /// ([`Objective::keep_derivatives`]).
    keep_derivatives: bool,
    /// What the last propagation formed of the hidden layers' regularization:
    /// [`Objective::finish_gradient`] forms the rest (and resets this).
    hidden_regularization: HiddenRegularization,
}

impl<C: Comm> Objective<C> {
    /// The objective of `net` over the ranks of `comm` (which it duplicates: its messages
    /// never meet anyone else's) with per-layer controls, or spline controls on `basis`.
    /// Collective.
    pub fn new(
        net: Network,
        comm: &C,
        settings: SolverSettings,
        basis: Option<bspline::Basis>,
    ) -> Result<Self, SetupError> {
        let (rank, size) = (comm.rank(), comm.size());
        let n = net.layout.shape.layers;
        let part = Partition::new(n, rank, size).map_err(|e| SetupError(e.to_string()))?;
        let model_layout = LocalLayout::new(&net, &part);
        let controls = Controls::new(basis, n);
        let layout = controls.layout(&net, &part, &model_layout);
        let t = net.final_time;
        let mk = |o: Options| {
            Solver::new(n, 0.0, t, o, comm.duplicate())
                .map_err(|e| SetupError(format!("invalid MGRIT settings: {e}")))
        };
        let forward = mk(settings.forward.clone())?;
        let adjoint = mk(Options {
            reverse: true,
            ..settings.adjoint.clone()
        })?;
        let ghosts = Ghosts::new(forward.grid(), &part);
        Ok(Objective {
            net,
            part,
            layout,
            model_layout,
            controls,
            comm: comm.duplicate(),
            settings,
            forward,
            adjoint,
            sweeps: BTreeMap::new(),
            ghosts,
            buf: Buffers::default(),
            fwd_steps: Vec::new(),
            adj_steps: Vec::new(),
            kernel_time: std::time::Duration::ZERO,
            evaluation_time: std::time::Duration::ZERO,
            new_batch: false,
            data: None,
            keep_derivatives: true,
            hidden_regularization: HiddenRegularization::Later,
        })
    }

    /// Whether a gradient evaluation keeps D_n = σ'(Z_n(U_n)) of every owned layer from the
    /// forward solution for the adjoint solve and the layer gradients (default: yes). Keeping
    /// costs one state per owned layer of memory and saves a matrix product (or convolution)
    /// and an activation pass at every adjoint step; the results are the same bits either
    /// way.
    pub fn keep_derivatives(&mut self, keep: bool) {
        self.keep_derivatives = keep;
    }

    pub fn settings(&self) -> &SolverSettings {
        &self.settings
    }

    /// The forward solver's level hierarchy.
    pub fn grid(&self) -> &mgrit::Grid {
        self.forward.grid()
    }

    /// Number of MGRIT levels of the forward solve.
    pub fn levels(&self) -> usize {
        self.forward.grid().num_levels()
    }

    /// The time scale s of this rank's part of p (replicated on every rank; 1 when it is not
    /// learnable). The ODE runs to s·T.
    pub fn time_scale(&self, params: &[f64]) -> f64 {
        let r = &self.layout.scale;
        if r.is_empty() {
            1.0
        } else {
            params[r.start]
        }
    }

    /// Whether the hidden controls are B-splines.
    pub fn is_spline(&self) -> bool {
        self.controls.is_spline()
    }

    /// The global parameter vector (opening, hidden sets in order, classifier) on every rank.
    pub fn gather(&self, params: &[f64]) -> Vec<f64> {
        self.comm.all_gather(&self.layout.unique(params))
    }

    /// This rank's part of the global parameter vector `global`.
    pub fn extract(&self, global: &[f64]) -> Vec<f64> {
        self.layout.extract(&self.net, &self.part, global)
    }

    /// Says that the next [`Objective::objective_gradient`] is on other examples than the
    /// last one (a new mini-batch): a warm-restarted forward or adjoint solve then starts
    /// from the coarse-grid propagation of the new batch's initial condition (U_0 = opening
    /// of its inputs; λ_N of its loss), followed by its max_iter cycles, instead of from the
    /// states of other examples ([`mgrit::Solver::restart_from_coarse`]). No effect with one
    /// MGRIT level or without warm restarts, whose solves start afresh anyway.
    pub fn new_batch(&mut self) {
        self.new_batch = true;
    }

    /// After [`Objective::new_batch`]: the warm-restarted solves of this evaluation start
    /// from the coarse propagation of the new batch (call after `ensure_batch`).
    pub(crate) fn begin_batch(&mut self) {
        if std::mem::take(&mut self.new_batch) {
            for s in [&mut self.forward, &mut self.adjoint] {
                if s.options().warm_restart && s.grid().num_levels() > 1 {
                    s.restart_from_coarse();
                }
            }
        }
    }

    pub(crate) fn ensure_batch(&mut self, batch: usize) {
        let sh = self.net.layout.shape;
        let b = &mut self.buf;
        if b.batch != batch {
            b.batch = batch;
            self.forward.reset();
            self.adjoint.reset();
            b.scratch.ensure(self.net.layer().state_len() * batch);
            b.logits.resize(sh.classes * batch, 0.0);
            b.seed.resize(sh.classes * batch, 0.0);
            b.lambda_final.resize(sh.width * batch, 0.0);
        }
    }

    /// θ = P(p) with this evaluation's ghosts (collective).
    pub(crate) fn model<'p>(&mut self, params: &'p [f64]) -> std::borrow::Cow<'p, [f64]> {
        if cfg!(debug_assertions) && self.is_spline() {
            self.check_replicated(&params[self.layout.layers.clone()]);
        }
        self.controls.model(
            params,
            &self.layout,
            &self.model_layout,
            &self.part,
            &mut self.ghosts,
            &self.comm,
        )
    }

    /// Debug builds: the replicated coefficients are bit-for-bit the same on every rank.
    fn check_replicated(&self, coef: &[f64]) {
        let fp = crate::fingerprint(coef);
        let halves = [(fp >> 32) as f64, (fp & 0xffff_ffff) as f64];
        let all = self.comm.all_gather(&halves);
        assert!(
            all.chunks(2).all(|c| c == halves),
            "spline coefficients differ between ranks"
        );
    }

    /// Values known on the last rank (the owner of U_N) on every rank.
    pub(crate) fn broadcast_from_last(&self, values: &[f64]) -> Vec<f64> {
        let mine: &[f64] = if self.part.is_last() { values } else { &[] };
        self.comm.all_gather(mine)
    }

    /// (mean loss, accuracy) of p on (x, targets) by an exact forward sweep, pipelined over
    /// the ranks (accuracy 0 for real-valued targets). Collective.
    ///
    /// On more than one rank (and no data grid, whose rows sweep their shares whole) the
    /// batch is swept in [`sweep_chunks`] pieces one after another,
    /// so that rank r works on a piece while rank r + 1 works on the one before (a pipeline,
    /// instead of every rank waiting for all the layers before its own); the last rank
    /// gathers every piece's logits and forms the loss over the whole batch at once, so the
    /// result is that of one sweep over the whole batch, bit for bit (every column of a state
    /// is computed by the same operations whatever the batch it is part of).
    pub fn evaluate<'t>(
        &mut self,
        params: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
    ) -> (f64, f64) {
        let targets = targets.into();
        if let Some(grid) = self.data.take() {
            let v = self.grid_evaluate(&grid, params, x, targets);
            self.data = Some(grid);
            return v;
        }
        let theta = self.model(params);
        let batch = targets.len();
        let last = self.part.is_last();
        let sh = self.net.layout.shape;
        let din = x.len().checked_div(batch).unwrap_or(0);
        let pieces = sweep_chunks(batch, self.comm.size());
        let mut logits = vec![0.0; if last { sh.classes * batch } else { 0 }];
        for i in 0..pieces {
            let r = even_part(batch, pieces, i);
            self.sweep(&theta, &x[r.start * din..r.end * din], r.len());
            if let Some(u) = self.swept_state(r.len()) {
                let z = &mut logits[r.start * sh.classes..r.end * sh.classes];
                self.net
                    .classify(&theta[self.model_layout.classifier.clone()], u, z);
            }
        }
        self.mean_loss(&logits, targets)
    }

    /// (mean loss, accuracy) of the logits of a whole batch, which the last rank holds (its
    /// `logits`; the other ranks' are ignored), on every rank. Collective.
    pub(crate) fn mean_loss(&self, logits: &[f64], targets: Targets<'_>) -> (f64, f64) {
        let batch = targets.len();
        let mut out = [0.0, 0.0];
        if self.part.is_last() {
            let classes = self.net.layout.shape.classes;
            let (l, c) = loss_sum(self.net.loss, classes, logits, targets, None);
            out = [l / batch as f64, c as f64 / batch as f64];
        }
        let v = self.broadcast_from_last(&out);
        (v[0], v[1])
    }

    /// An exact forward sweep (one MGRIT level, pipelined over the ranks) of θ on the
    /// `batch` examples x (used on rank 0 only); afterwards [`Objective::swept_state`] gives
    /// U_N on the last rank. Collective.
    pub(crate) fn sweep(&mut self, theta: &[f64], x: &[f64], batch: usize) {
        let (net, part) = (&self.net, &self.part);
        let sweep = match self.sweeps.entry(batch) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let o = Options {
                    max_levels: 1,
                    warm_restart: true,
                    ..Options::default()
                };
                let s = Solver::new(part.layers, 0.0, net.final_time, o, self.comm.duplicate());
                e.insert(s.expect("one level is always valid"))
            }
        };
        let mut app = ForwardApp {
            net,
            ctrl: LayerControls {
                theta,
                layout: &self.model_layout,
                part,
                ghosts: &self.ghosts,
            },
            open: &theta[self.model_layout.opening.clone()],
            x,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
            keep: None,
            kernel_time: std::time::Duration::ZERO,
        };
        sweep.solve(&mut app);
        self.buf.scratch = app.scratch;
    }

    /// U_N of the last [`Objective::sweep`] of `batch` examples (the last rank; None
    /// elsewhere).
    pub(crate) fn swept_state(&self, batch: usize) -> Option<&Vec<f64>> {
        self.sweeps.get(&batch)?.state(self.net.layout.shape.layers)
    }

    /// J at p (this rank's part) on the batch (x, targets) and this rank's part of ∇J, with
    /// forward and adjoint MGRIT. Collective.
    pub fn objective_gradient<'t>(
        &mut self,
        params: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        grad: &mut [f64],
    ) -> Value {
        let start = std::time::Instant::now();
        let labels = targets.into();
        let v = if let Some(grid) = self.data.take() {
            let v = self.grid_objective_gradient(&grid, params, x, labels, grad);
            self.data = Some(grid);
            v
        } else {
            let batch = labels.len();
            self.ensure_batch(batch);
            self.begin_batch();
            let theta = self.model(params);
            self.value_and_gradient(params, &theta, batch, grad, |obj, g| {
                obj.propagate(&theta, x, labels, g)
            })
        };
        self.evaluation_time += start.elapsed();
        v
    }

    /// J and ∇J at p from one propagation of θ = P(p): `propagate` puts the loss's
    /// θ-gradient into a zeroed θ-gradient vector and returns ([mean loss, correct] on the
    /// last rank, zeros elsewhere) with the forward and adjoint statistics. This adds the
    /// regularization and its gradient, pulls spline gradients back to p (∇_p J = Pᵀ ∇_θ J),
    /// and forms the value every rank sees. Collective.
    pub(crate) fn value_and_gradient(
        &mut self,
        params: &[f64],
        theta: &[f64],
        count: usize,
        grad: &mut [f64],
        propagate: impl FnOnce(&mut Self, &mut [f64]) -> ([f64; 2], Stats, Stats),
    ) -> Value {
        let mut target = self.gradient_target(grad);
        let (scalars, fstats, astats) = match &mut target {
            Some(t) => propagate(self, &mut t.model),
            None => propagate(self, grad),
        };
        let reg = self.finish_gradient(params, theta, target, grad);
        let s = self.broadcast_from_last(&scalars);
        self.count_steps(&fstats, &astats);
        Value {
            objective: s[0] + reg,
            loss: s[0],
            correct: s[1] as usize,
            count,
            fwd_res: fstats.residuals.last().copied(),
            adj_res: astats.residuals.last().copied(),
        }
    }

    /// Where a propagation puts the loss's θ-gradient: with spline controls a zeroed vector
    /// of this rank's θ-layout (returned, with the coefficient gradient), pulled back to p by
    /// [`Objective::finish_gradient`]; with per-layer controls `grad` itself, zeroed (None).
    pub(crate) fn gradient_target(&self, grad: &mut [f64]) -> Option<SplineGradient> {
        if self.is_spline() {
            Some(SplineGradient {
                model: vec![0.0; self.model_layout.len],
                coef: vec![0.0; self.layout.layers.len()],
            })
        } else {
            grad.fill(0.0);
            None
        }
    }

    /// After a propagation into the [`Objective::gradient_target`]: adds the regularization's
    /// gradient, pulls a spline θ-gradient back to p (∇_p J = Pᵀ ∇_θ J) into `grad`, and
    /// returns R(p). Collective.
    pub(crate) fn finish_gradient(
        &mut self,
        params: &[f64],
        theta: &[f64],
        target: Option<SplineGradient>,
        grad: &mut [f64],
    ) -> f64 {
        let hidden_done =
            std::mem::replace(&mut self.hidden_regularization, HiddenRegularization::Later);
        match target {
            Some(SplineGradient {
                model: mut grad_model,
                coef: mut coef_grad,
            }) => {
                let grads = Some((&mut grad_model[..], &mut coef_grad[..]));
                let reg = self.regularization_terms(params, theta, grads, hidden_done);
                self.controls.pull_back(
                    &grad_model,
                    (&self.model_layout, &self.layout, &self.part),
                    &coef_grad,
                    grad,
                    &self.comm,
                );
                reg
            }
            None => self.regularization_terms(params, theta, Some((grad, &mut [])), hidden_done),
        }
    }

    /// The regularization R(p). Collective.
    pub fn regularization(&mut self, params: &[f64]) -> f64 {
        let theta = self.model(params);
        self.regularization_terms(params, &theta, None, HiddenRegularization::Later)
    }

    /// R(p), from every rank's terms in layer order: [opening (rank 0)] [hidden] [classifier
    /// (last rank)], adding this rank's gradient into (θ-gradient, coefficient gradient) when
    /// given, but not what `hidden_done` says the propagation has formed (the hidden layers'
    /// gradient, or their gradient and terms). Collective.
    fn regularization_terms(
        &self,
        params: &[f64],
        theta: &[f64],
        mut grad: Option<(&mut [f64], &mut [f64])>,
        hidden_done: HiddenRegularization,
    ) -> f64 {
        let ml = &self.model_layout;
        let mut terms = Vec::new();
        if self.part.is_first() {
            let r = ml.opening.clone();
            let g = grad.as_mut().map(|(g, _)| &mut g[r.clone()]);
            terms.push(self.net.opening_regularization(&theta[r], g));
        }
        let ctrl = LayerControls {
            theta,
            layout: ml,
            part: &self.part,
            ghosts: &self.ghosts,
        };
        if hidden_done == HiddenRegularization::Swept {
            terms.extend_from_slice(&self.buf.swept.terms);
        } else {
            let hidden_grad = grad
                .as_mut()
                .filter(|_| hidden_done == HiddenRegularization::Later)
                .map(|(gm, gc)| {
                    if self.is_spline() {
                        &mut **gc
                    } else {
                        &mut **gm
                    }
                });
            terms.extend(self.controls.hidden_regularization(
                &self.net,
                &params[self.layout.layers.clone()],
                &ctrl,
                hidden_grad,
            ));
        }
        if self.part.is_last() {
            let r = ml.classifier.clone();
            let g = grad.map(|(g, _)| &mut g[r.clone()]);
            terms.push(self.net.classifier_regularization(&theta[r], g));
        }
        ordered_sum(&self.comm.all_gather(&terms))
    }

    /// Adds one evaluation's step counts to `fwd_steps` and `adj_steps`.
    pub(crate) fn count_steps(&mut self, fstats: &Stats, astats: &Stats) {
        for (acc, st) in [(&mut self.fwd_steps, fstats), (&mut self.adj_steps, astats)] {
            acc.resize(st.steps_per_level.len().max(acc.len()), 0);
            for (a, s) in acc.iter_mut().zip(&st.steps_per_level) {
                *a += s;
            }
        }
    }
}

/// The number of pieces [`Objective::evaluate`] sweeps a batch of `batch` examples in over
/// `ranks` layer ranks: one on one rank (nothing to overlap); else 4 per rank, so that the
/// pipeline's fill and drain (ranks − 1 pieces' time) is a small part, but no piece under
/// [`MIN_SWEEP_CHUNK`] examples.
pub fn sweep_chunks(batch: usize, ranks: usize) -> usize {
    if ranks <= 1 {
        return 1;
    }
    (4 * ranks).min(batch / MIN_SWEEP_CHUNK).max(1)
}

/// The fewest examples in a piece of a pipelined evaluation sweep ([`sweep_chunks`]).
pub const MIN_SWEEP_CHUNK: usize = 256;

#[cfg(test)]
mod tests {
    use super::{sweep_chunks, MIN_SWEEP_CHUNK};

    #[test]
    fn an_evaluation_sweep_is_cut_into_pieces_only_on_several_ranks_and_for_large_batches() {
        assert_eq!(sweep_chunks(5000, 1), 1);
        assert_eq!(sweep_chunks(5000, 2), 8);
        assert_eq!(sweep_chunks(5000, 8), 19);
        assert_eq!(sweep_chunks(200, 4), 1);
        assert_eq!(sweep_chunks(2 * MIN_SWEEP_CHUNK - 1, 4), 1);
        assert_eq!(sweep_chunks(2 * MIN_SWEEP_CHUNK, 4), 2);
        assert_eq!(sweep_chunks(0, 3), 1);
    }
}
