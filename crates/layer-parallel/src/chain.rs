//! A network of several ODE blocks, each its own layer-parallel solve over all the ranks.
//!
//! Block 0 opens the input images, U⁰_0 = σ(K_in ∗ X + b_in), and takes N_0 residual steps;
//! block i > 0 opens the last state of block i − 1, Uⁱ_0 = σ(K_i ∗ P(U^{i−1}_{N_{i−1}}) + b_i)
//! (P a 2×2 pooling or the identity, K_i a 1×1 convolution changing the channels), and takes
//! N_i steps; the last block's last state is classified ([`odenet::Chain`] is the serial
//! reference). Every block is an [`Objective`] whose layers are split over all the ranks, so
//! the blocks run one after another and each keeps every rank busy:
//!
//! - forward: block i's forward solve; its last rank sends U^i_N to rank 0, the owner of
//!   block i + 1's opening;
//! - the loss and λ_N of the last block on the last rank;
//! - adjoint, blocks in reverse: block i's adjoint solve from its λ_N; rank 0 forms the
//!   adjoint of block i's input, ∂⟨Λⁱ_0, Uⁱ_0⟩/∂X = Pᵀ K_iᵀ (σ'(Aⁱ) ⊙ Λⁱ_0), and sends it to
//!   the last rank, where it is λ_N of block i − 1.
//!
//! A rank's parameter vector is its parts of the blocks' vectors one after another; the
//! global vector is the blocks' global vectors one after another. The regularization is
//! Σ_i R_i in block order and every dot product sums block after block, so a chain too gives
//! the same bits on every number of ranks. A chain of one block computes what that block's
//! [`Objective`] computes, bit for bit: J, ∇J and evaluations go straight to it, and gather,
//! extract, inner products and the regularization wrap its own.

use crate::objective::{even_part, sweep_chunks, Objective, SetupError, SolverSettings, Value};
use crate::{DataGrid, DistSpace};
use mgrit::{Comm, Stats};
use odenet::loss::Targets;
use odenet::Network;
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;
use std::time::Duration;

/// U_N of a block, last rank → rank 0.
const HANDOFF_TAG: i32 = 7010;
/// The adjoint of a block's input, rank 0 → last rank.
const INPUT_ADJOINT_TAG: i32 = 7011;

/// The objective of a chain of ODE blocks over the ranks of a communicator.
pub struct Chain<C: Comm> {
    /// The blocks in order, each over all the ranks.
    pub blocks: Vec<Objective<C>>,
    /// The chain's own communicator (hand-offs between the blocks).
    pub comm: C,
    /// Block i's part of this rank's parameter vector.
    ranges: Vec<Range<usize>>,
    /// Block i's part of the global parameter vector.
    global: Vec<Range<usize>>,
    /// The element-wise work of the spaces made by [`Chain::space`] ([`Chain::vector_time`]).
    vector_work: Rc<Cell<Duration>>,
}

impl<C: Comm> Chain<C> {
    /// The chain of the blocks `nets` (checked by [`odenet::Chain::new`]) over the ranks of
    /// `comm`, block i with spline controls on `bases[i]` or per-layer controls. Collective.
    pub fn new(
        nets: Vec<Network>,
        comm: &C,
        settings: SolverSettings,
        bases: Vec<Option<bspline::Basis>>,
    ) -> Result<Self, SetupError> {
        assert_eq!(nets.len(), bases.len(), "one basis (or none) per block");
        let several = nets.len() > 1;
        if several {
            odenet::Chain::new(nets.clone()).map_err(SetupError)?;
        }
        let mut blocks = Vec::with_capacity(nets.len());
        for (i, (net, basis)) in nets.into_iter().zip(bases).enumerate() {
            let obj = Objective::new(net, comm, settings.clone(), basis).map_err(|e| {
                if several {
                    SetupError(format!("ODE block {}: {e}", i + 1))
                } else {
                    e
                }
            })?;
            blocks.push(obj);
        }
        Ok(Self::of(blocks, comm))
    }

    /// The chain of the objectives `blocks` (one: that objective alone). Collective.
    pub fn of(blocks: Vec<Objective<C>>, comm: &C) -> Self {
        let (mut ranges, mut global) = (Vec::new(), Vec::new());
        let (mut local, mut glob) = (0, 0);
        for b in &blocks {
            let len = b.layout.len;
            // The global length of the block's vector: its gather (replicated spline
            // coefficients counted once).
            let glen = b.gather(&vec![0.0; len]).len();
            ranges.push(local..local + len);
            global.push(glob..glob + glen);
            local += len;
            glob += glen;
        }
        Chain {
            blocks,
            comm: comm.duplicate(),
            ranges,
            global,
            vector_work: Rc::default(),
        }
    }

    /// The chain of one objective.
    pub fn single(obj: Objective<C>) -> Self {
        let comm = obj.comm.duplicate();
        Self::of(vec![obj], &comm)
    }

    /// Whether the network has more than one block.
    pub fn is_chain(&self) -> bool {
        self.blocks.len() > 1
    }

    /// Block 0 (the whole network when there is one block).
    pub fn first(&self) -> &Objective<C> {
        &self.blocks[0]
    }

    /// The blocks' networks in order.
    pub fn nets(&self) -> Vec<&Network> {
        self.blocks.iter().map(|b| &b.net).collect()
    }

    /// The last block's network (the one with the classifier and the loss).
    pub fn last_net(&self) -> &Network {
        &self.blocks[self.blocks.len() - 1].net
    }

    /// Length of this rank's parameter vector.
    pub fn local_len(&self) -> usize {
        self.ranges.last().map_or(0, |r| r.end)
    }

    /// Length of the global parameter vector.
    pub fn global_len(&self) -> usize {
        self.global.last().map_or(0, |r| r.end)
    }

    /// Block i's part of this rank's parameter vector.
    pub fn local_range(&self, i: usize) -> Range<usize> {
        self.ranges[i].clone()
    }

    /// Block i's part of the global parameter vector.
    pub fn global_range(&self, i: usize) -> Range<usize> {
        self.global[i].clone()
    }

    /// Number of MGRIT levels of the forward solves: the most of any block (a block with
    /// few layers may have fewer).
    pub fn levels(&self) -> usize {
        self.blocks.iter().map(|b| b.levels()).max().unwrap_or(1)
    }

    /// Whether the hidden controls are B-splines.
    pub fn is_spline(&self) -> bool {
        self.blocks[0].is_spline()
    }

    /// The time scale s of a one-block network (1 for a chain, whose time scale is fixed).
    pub fn time_scale(&self, params: &[f64]) -> f64 {
        match &self.blocks[..] {
            [one] => one.time_scale(params),
            _ => 1.0,
        }
    }

    /// See [`Objective::new_batch`]; for every block.
    pub fn new_batch(&mut self) {
        for b in &mut self.blocks {
            b.new_batch();
        }
    }

    /// [`Objective::keep_derivatives`] for every block.
    pub fn keep_derivatives(&mut self, keep: bool) {
        for b in &mut self.blocks {
            b.keep_derivatives(keep);
        }
    }

    /// Makes a one-block objective a row of a data × layer grid ([`Objective::set_data_grid`]).
    /// A chain of several blocks is refused.
    pub fn set_data_grid(&mut self, grid: DataGrid<C>) -> Result<(), SetupError> {
        match &mut self.blocks[..] {
            [one] => {
                one.set_data_grid(grid);
                Ok(())
            }
            _ => Err(SetupError(
                "a network of several ODE blocks (network.blocks) runs on one data group: set parallel.data_groups = 1".into(),
            )),
        }
    }

    /// Inner products on p, block after block, with the element-wise work shared out over
    /// the rows when the (one-block) network runs on a D × L grid (see [`DistSpace`]).
    /// Collective.
    pub fn space(&self) -> DistSpace<C> {
        let blocks = self
            .blocks
            .iter()
            .zip(&self.ranges)
            .map(|(b, r)| {
                let s = b.layout.segments();
                s.into_iter()
                    .map(|seg| seg.start + r.start..seg.end + r.start)
                    .collect()
            })
            .collect();
        let col = match &self.blocks[..] {
            [one] => one.data_grid().map(|g| g.col.duplicate()),
            _ => None,
        };
        DistSpace::new(
            self.comm.duplicate(),
            blocks,
            col,
            self.local_len(),
            self.vector_work.clone(),
        )
    }

    /// This rank's time in the element-wise vector work of the optimizer (the partial dot
    /// products, axpys and scalings of the spaces from [`Chain::space`]) since the last
    /// [`Chain::clear_steps`]: the part of the optimizer's own work that a D × L grid shares
    /// out over its rows.
    pub fn vector_time(&self) -> Duration {
        self.vector_work.get()
    }

    /// The global parameter vector on every rank (collective).
    pub fn gather(&self, params: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.global_len());
        for (b, r) in self.blocks.iter().zip(&self.ranges) {
            out.extend(b.gather(&params[r.clone()]));
        }
        out
    }

    /// This rank's part of the global parameter vector `global`.
    pub fn extract(&self, global: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.local_len());
        for (b, r) in self.blocks.iter().zip(&self.global) {
            out.extend(b.extract(&global[r.clone()]));
        }
        out
    }

    /// R(p) = Σ_i R_i(p_i), in block order. Collective.
    pub fn regularization(&mut self, params: &[f64]) -> f64 {
        let mut r = 0.0;
        for (b, range) in self.blocks.iter_mut().zip(&self.ranges) {
            r += b.regularization(&params[range.clone()]);
        }
        r
    }

    /// Step calls of this rank per MGRIT level since the last [`Chain::clear_steps`], forward
    /// and adjoint, summed over the blocks.
    pub fn steps(&self) -> (Vec<u64>, Vec<u64>) {
        let sum = |pick: fn(&Objective<C>) -> &Vec<u64>| {
            let mut acc: Vec<u64> = Vec::new();
            for b in &self.blocks {
                let s = pick(b);
                acc.resize(acc.len().max(s.len()), 0);
                for (a, v) in acc.iter_mut().zip(s) {
                    *a += v;
                }
            }
            acc
        };
        (sum(|b| &b.fwd_steps), sum(|b| &b.adj_steps))
    }

    /// This rank's time in the step kernels of gradient evaluations since the last
    /// [`Chain::clear_steps`], summed over the blocks ([`Objective::kernel_time`]).
    pub fn kernel_time(&self) -> std::time::Duration {
        self.blocks.iter().map(|b| b.kernel_time).sum()
    }

    /// This rank's wall time in the blocks' [`Objective::objective_gradient`] since the last
    /// [`Chain::clear_steps`] (a one-block chain's evaluations).
    pub fn evaluation_time(&self) -> std::time::Duration {
        self.blocks.iter().map(|b| b.evaluation_time).sum()
    }

    /// Clears the step counts and kernel and evaluation times of every block.
    pub fn clear_steps(&mut self) {
        self.vector_work.set(Duration::ZERO);
        for b in &mut self.blocks {
            b.fwd_steps.clear();
            b.adj_steps.clear();
            b.kernel_time = std::time::Duration::ZERO;
            b.evaluation_time = std::time::Duration::ZERO;
        }
    }

    /// `out` from the last rank on rank 0 (a block's U_N to the next block's opening).
    fn to_first(&self, out: Vec<f64>) -> Vec<f64> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        if size == 1 {
            out
        } else if rank + 1 == size {
            self.comm.send(0, HANDOFF_TAG, out);
            self.comm.wait_sends();
            Vec::new()
        } else if rank == 0 {
            self.comm.recv(size - 1, HANDOFF_TAG)
        } else {
            Vec::new()
        }
    }

    /// `dx` from rank 0 on the last rank (a block's input adjoint to the block before).
    fn to_last(&self, dx: Vec<f64>) -> Vec<f64> {
        let (rank, size) = (self.comm.rank(), self.comm.size());
        if size == 1 {
            dx
        } else if rank == 0 {
            self.comm.send(size - 1, INPUT_ADJOINT_TAG, dx);
            self.comm.wait_sends();
            Vec::new()
        } else if rank + 1 == size {
            self.comm.recv(0, INPUT_ADJOINT_TAG)
        } else {
            Vec::new()
        }
    }

    /// (mean loss, accuracy) of p on (x, targets) by exact forward sweeps, block after block
    /// (each pipelined over the ranks in pieces, as [`Objective::evaluate`]). Collective.
    pub fn evaluate<'t>(
        &mut self,
        params: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
    ) -> (f64, f64) {
        if let [one] = &mut self.blocks[..] {
            return one.evaluate(params, x, targets);
        }
        let targets = targets.into();
        let batch = targets.len();
        let (first, last) = (
            self.comm.rank() == 0,
            self.comm.rank() + 1 == self.comm.size(),
        );
        let thetas = self.thetas(params);
        let pieces = sweep_chunks(batch, self.comm.size());
        let nb = self.blocks.len();
        let classes = self.last_net().layout.shape.classes;
        let mut logits = vec![0.0; if last { classes * batch } else { 0 }];
        let mut input = if first { x.to_vec() } else { Vec::new() };
        for (i, theta) in thetas.iter().enumerate() {
            let block = &mut self.blocks[i];
            let sh = block.net.layout.shape;
            let mut out = Vec::new();
            for p in 0..pieces {
                let r = even_part(batch, pieces, p);
                let xp = if first {
                    &input[r.start * sh.input..r.end * sh.input]
                } else {
                    &[][..]
                };
                block.sweep(theta, xp, r.len());
                if let Some(u) = block.swept_state(r.len()) {
                    if i + 1 < nb {
                        out.extend_from_slice(u);
                    } else {
                        let z = &mut logits[r.start * classes..r.end * classes];
                        block
                            .net
                            .classify(&theta[block.model_layout.classifier.clone()], u, z);
                    }
                }
            }
            if i + 1 < nb {
                input = self.to_first(out);
            }
        }
        self.blocks[nb - 1].mean_loss(&logits, targets)
    }

    /// θ_i = P_i(p_i) of every block, in block order (collective: each block's ghosts).
    fn thetas(&mut self, params: &[f64]) -> Vec<Vec<f64>> {
        (0..self.blocks.len())
            .map(|i| {
                let r = self.ranges[i].clone();
                self.blocks[i].model(&params[r]).into_owned()
            })
            .collect()
    }

    /// J at p (this rank's part) on the batch (x, targets) and this rank's part of ∇J: the
    /// blocks' forward solves in order, the loss, their adjoint solves in reverse order, then
    /// each block's regularization and spline pull-back. Collective.
    pub fn objective_gradient<'t>(
        &mut self,
        params: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        grad: &mut [f64],
    ) -> Value {
        if let [one] = &mut self.blocks[..] {
            return one.objective_gradient(params, x, targets, grad);
        }
        let labels = targets.into();
        let batch = labels.len();
        let nb = self.blocks.len();
        let first = self.comm.rank() == 0;
        for b in &mut self.blocks {
            b.ensure_batch(batch);
            b.begin_batch();
        }
        let thetas = self.thetas(params);
        // Each block's part of ∇J, and where its propagation puts the loss's θ-gradient.
        let mut grads = split_ranges(grad, &self.ranges);
        let mut targets: Vec<_> = self
            .blocks
            .iter()
            .zip(grads.iter_mut())
            .map(|(b, g)| b.gradient_target(g))
            .collect();

        // Forward, block after block; rank 0 keeps every block's input for its opening.
        let mut inputs: Vec<Vec<f64>> = Vec::with_capacity(nb);
        let mut fstats: Vec<Stats> = Vec::with_capacity(nb);
        for i in 0..nb {
            let xi = if i == 0 { x } else { &inputs[i - 1][..] };
            fstats.push(self.blocks[i].forward_solve(&thetas[i], xi, batch));
            if i + 1 < nb {
                let out = self.blocks[i].final_state().cloned().unwrap_or_default();
                let next = self.to_first(out);
                inputs.push(if first { next } else { Vec::new() });
            }
        }

        // The loss and λ_N of the last block, then the adjoints in reverse block order.
        let scalars = {
            let g = target_slice(&mut targets[nb - 1], grads[nb - 1]);
            self.blocks[nb - 1].loss_terms(&thetas[nb - 1], labels, g)
        };
        let mut astats: Vec<Stats> = (0..nb).map(|_| Stats::default()).collect();
        for i in (0..nb).rev() {
            let xi = if i == 0 { x } else { &inputs[i - 1][..] };
            let g = target_slice(&mut targets[i], grads[i]);
            let mut dx = Vec::new();
            let want = (i > 0).then_some(&mut dx);
            astats[i] = self.blocks[i].adjoint_solve(&thetas[i], xi, batch, g, want);
            if i > 0 {
                let lam = self.to_last(dx);
                if self.comm.rank() + 1 == self.comm.size() {
                    *self.blocks[i - 1].final_adjoint_mut() = lam;
                }
            }
        }

        // Regularization and pull-back, block after block: R = Σ_i R_i in block order.
        let mut reg = 0.0;
        for (i, target) in targets.into_iter().enumerate() {
            let r = self.ranges[i].clone();
            reg += self.blocks[i].finish_gradient(&params[r], &thetas[i], target, grads[i]);
        }
        let s = self.blocks[nb - 1].broadcast_from_last(&scalars);
        for (b, (f, a)) in self.blocks.iter_mut().zip(fstats.iter().zip(&astats)) {
            b.count_steps(f, a);
        }
        let worst = |st: &[Stats]| {
            st.iter()
                .filter_map(|s| s.residuals.last().copied())
                .reduce(f64::max)
        };
        Value {
            objective: s[0] + reg,
            loss: s[0],
            correct: s[1] as usize,
            count: batch,
            fwd_res: worst(&fstats),
            adj_res: worst(&astats),
        }
    }
}

/// The propagation target of a block: its spline θ-gradient, or its part of ∇J itself.
fn target_slice<'a>(
    target: &'a mut Option<crate::objective::SplineGradient>,
    grad: &'a mut [f64],
) -> &'a mut [f64] {
    match target {
        Some(t) => &mut t.model,
        None => grad,
    }
}

/// `v` cut into the consecutive `ranges` (which tile a prefix of it).
fn split_ranges<'a>(mut v: &'a mut [f64], ranges: &[Range<usize>]) -> Vec<&'a mut [f64]> {
    let mut out = Vec::with_capacity(ranges.len());
    let mut at = 0;
    for r in ranges {
        debug_assert_eq!(r.start, at);
        let (head, tail) = std::mem::take(&mut v).split_at_mut(r.end - at);
        out.push(head);
        v = tail;
        at = r.end;
    }
    out
}
