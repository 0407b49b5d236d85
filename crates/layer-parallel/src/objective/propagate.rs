//! Propagation of one ODE block's objective: the forward solve from the opening, the loss and
//! λ_N on the last rank, the adjoint solve, and the θ-gradient of the loss (the hidden layers',
//! the time scale's and the opening's; optionally the adjoint of the opening's input).

use super::{HiddenRegularization, Objective, LAMBDA_TAG};
use crate::apps::{AdjointApp, ForwardApp};
use crate::ghosts::LayerControls;
use mgrit::{Comm, Stats};
use odenet::loss::{loss_sum, Targets};
use odenet::network::ordered_sum;
use odenet::{HiddenStep, Scratch, Step};
use std::ops::Range;

/// Propagation: the forward solve, the loss, the adjoint solve and the θ-gradient of the loss.
impl<C: Comm> Objective<C> {
    /// The loss part of J at θ on the batch and its θ-gradient (added into `grad`, this
    /// rank's θ-layout): returns ([mean loss, correct] on the last rank, zeros elsewhere) and
    /// the forward and adjoint solve statistics.
    pub(super) fn propagate(
        &mut self,
        theta: &[f64],
        x: &[f64],
        labels: Targets<'_>,
        grad: &mut [f64],
    ) -> ([f64; 2], Stats, Stats) {
        let batch = labels.len();
        let fstats = self.forward_solve(theta, x, batch);
        let scalars = self.loss_terms(theta, labels, grad);
        let astats = self.adjoint_solve(theta, x, batch, grad, None);
        (scalars, fstats, astats)
    }

    /// The forward solve from U_0 = opening(x) (x used on rank 0 only) on a batch of `batch`
    /// examples; afterwards the last rank holds U_N ([`Objective::final_state`]).
    pub(crate) fn forward_solve(&mut self, theta: &[f64], x: &[f64], batch: usize) -> Stats {
        self.run_forward(theta, x, batch, |solver, fwd| solver.solve(fwd))
    }

    /// A forward solve from U_0 = opening(x) on a batch of `batch` examples, run by `solve`
    /// on the forward app (as it is, or wrapped): marks every owned layer's D_n stale and,
    /// with one level, lets the sweep keep them (it runs every fine step once, from the
    /// final U_n; with more levels the adjoint solve forms them from the solution).
    pub(super) fn run_forward(
        &mut self,
        theta: &[f64],
        x: &[f64],
        batch: usize,
        solve: impl FnOnce(&mut mgrit::Solver<Vec<f64>, C>, &mut ForwardApp<'_>) -> Stats,
    ) -> Stats {
        let ml = &self.model_layout;
        let state = self.net.layout.shape.width * batch;
        self.buf
            .derivs
            .invalidate(self.part.owned_layers.clone(), state);
        let one_level = self.forward.grid().num_levels() == 1;
        let mut fwd = ForwardApp {
            net: &self.net,
            ctrl: LayerControls {
                theta,
                layout: ml,
                part: &self.part,
                ghosts: &self.ghosts,
            },
            open: &theta[ml.opening.clone()],
            x,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
            keep: (self.keep_derivatives && one_level).then_some(&mut self.buf.derivs),
            kernel_time: std::time::Duration::ZERO,
        };
        let fstats = solve(&mut self.forward, &mut fwd);
        self.kernel_time += fwd.kernel_time;
        self.buf.scratch = fwd.scratch;
        fstats
    }

    /// U_N after [`Objective::forward_solve`] (the last rank; None elsewhere).
    pub(crate) fn final_state(&self) -> Option<&Vec<f64>> {
        self.forward.state(self.net.layout.shape.layers)
    }

    /// λ_N, the adjoint solve's final condition (set on the last rank before
    /// [`Objective::adjoint_solve`]).
    pub(crate) fn final_adjoint_mut(&mut self) -> &mut Vec<f64> {
        &mut self.buf.lambda_final
    }

    /// After the forward solve, with λ_N set: the adjoint solve, the hidden layers' gradients
    /// (and the time scale's) and, on rank 0, the opening's gradient from Λ_0, all added into
    /// `grad` (this rank's θ-layout). With `input_adjoint`, rank 0 also writes the adjoint of
    /// the opening's input, ∂⟨Λ_0, U_0⟩/∂X, into it (the λ_N of a chain's block before; the
    /// `activate` opening only, the one a chain's later blocks have).
    pub(crate) fn adjoint_solve(
        &mut self,
        theta: &[f64],
        x: &[f64],
        batch: usize,
        grad: &mut [f64],
        input_adjoint: Option<&mut Vec<f64>>,
    ) -> Stats {
        let ml = self.model_layout.clone();
        self.keep_missing_derivatives(theta);
        // Adjoint solve (with one level, the fine steps also form the layer gradients, and
        // with per-layer controls add the hidden regularization's gradient after each).
        let fused = self.adjoint.grid().num_levels() == 1;
        let regularize = fused && !self.is_spline();
        if regularize {
            self.buf.swept.reset(self.part.owned_layers.clone());
        }
        let mut adj = AdjointApp {
            net: &self.net,
            ctrl: LayerControls {
                theta,
                layout: &self.model_layout,
                part: &self.part,
                ghosts: &self.ghosts,
            },
            forward: &self.forward,
            lambda_final: &self.buf.lambda_final,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
            grad: fused.then(|| &mut grad[ml.layers.clone()]),
            derivs: self.keep_derivatives.then_some(&self.buf.derivs),
            regularize: regularize.then_some(&mut self.buf.swept),
            kernel_time: std::time::Duration::ZERO,
        };
        let astats = self.adjoint.solve(&mut adj);
        self.kernel_time += adj.kernel_time;
        self.buf.scratch = adj.scratch;
        if regularize {
            // A one-level solve steps every layer once, so no group is left; should one be, it
            // is completed here (after its data gradient, as in the sweep).
            let ctrl = LayerControls {
                theta,
                layout: &self.model_layout,
                part: &self.part,
                ghosts: &self.ghosts,
            };
            let hidden = &mut grad[ml.layers.clone()];
            for group in self.buf.swept.take_pending() {
                self.buf.swept.add_group(&self.net, &ctrl, group, hidden);
            }
            self.hidden_regularization = HiddenRegularization::Swept;
        }
        if !fused || !ml.scale.is_empty() {
            let t = std::time::Instant::now();
            self.layer_gradients(theta, grad, !fused);
            self.kernel_time += t.elapsed();
        }
        if self.part.is_first() {
            let open = &theta[ml.opening.clone()];
            let w = self.net.layout.shape.width;
            let (mut u0, mut pre, mut s) = (
                vec![0.0; w * batch],
                vec![0.0; w * batch],
                vec![0.0; w * batch],
            );
            self.net.open(open, x, &mut u0, &mut pre);
            let lam0 = self.adjoint.state(0).expect("rank 0 owns λ_0");
            self.net
                .opening_gradient(x, &pre, lam0, &mut s, &mut grad[ml.opening.clone()]);
            if let Some(dx) = input_adjoint {
                dx.resize(x.len(), 0.0);
                self.net.opening_input_adjoint(open, x, &s, dx);
            }
        }
        astats
    }

    /// On the last rank: the logits Z = W_c U_N + b_c, the loss and the number correct, the
    /// classifier's gradient and λ_N = W_cᵀ ∂loss/∂Z. Zeros elsewhere.
    pub(crate) fn loss_terms(
        &mut self,
        theta: &[f64],
        labels: Targets<'_>,
        grad: &mut [f64],
    ) -> [f64; 2] {
        if !self.part.is_last() {
            return [0.0, 0.0];
        }
        let batch = labels.len();
        let nl = self.net.layout.shape.layers;
        let u_n = self.forward.state(nl).expect("the last rank owns U_N");
        let r = self.model_layout.classifier.clone();
        let b = &mut self.buf;
        self.net.classify(&theta[r.clone()], u_n, &mut b.logits);
        let scale = 1.0 / batch as f64;
        let classes = self.net.layout.shape.classes;
        let (total, correct) = loss_sum(
            self.net.loss,
            classes,
            &b.logits,
            labels,
            Some((&mut b.seed, scale)),
        );
        self.net.classifier_adjoint(
            &theta[r.clone()],
            u_n,
            &b.seed,
            &mut grad[r],
            &mut b.lambda_final,
        );
        [total * scale, correct as f64]
    }

    /// After the adjoint solve, from λ_{n+1} and U_n of every owned layer: the hidden layers'
    /// gradients when `hidden` (a multilevel solve; S_n = σ'(K_n U_n + b_n) ⊙ s·h λ_{n+1},
    /// ∂J/∂K_n += S_n U_nᵀ, ∂J/∂b_n += S_n 1) and the time scale's gradient when it is
    /// learnable (∂J/∂s = Σ_n h ⟨λ_{n+1}, σ(K_n U_n + b_n)⟩, in layer order, on every rank).
    /// Collective.
    pub(crate) fn layer_gradients(&mut self, theta: &[f64], grad: &mut [f64], hidden: bool) {
        let h = self.net.step_size();
        let scale = self.model_layout.scale.clone();
        let mut scale_terms = Vec::new();
        self.visit_owned_layers(theta, |_, range, step, u, next, d, scratch| {
            if hidden {
                match d {
                    Some(d) => step.gradient_given(u, d, next, scratch, &mut grad[range]),
                    None => step.gradient(u, next, scratch, &mut grad[range]),
                }
            }
            if !scale.is_empty() {
                scale_terms.push(h * step.increment_dot(u, next, scratch));
            }
        });
        if !scale.is_empty() {
            grad[scale.start] = ordered_sum(&self.comm.all_gather(&scale_terms));
        }
    }

    /// After the forward solve, when the derivatives are kept: forms D_n = σ'(Z_n(U_n)) of
    /// every owned layer the forward solve did not keep (all of them after a multilevel
    /// solve), timed as kernel work.
    pub(super) fn keep_missing_derivatives(&mut self, theta: &[f64]) {
        if !self.keep_derivatives {
            return;
        }
        let start = std::time::Instant::now();
        let hs = self.scaled_step(theta);
        for n in self.buf.derivs.missing() {
            let step = self.net.step(&theta[self.model_layout.layer(n)], hs);
            let u = self.forward.state(n).expect("owned");
            let d = self.buf.derivs.layer_mut(n).expect("owned");
            step.derivative(u, d, &mut self.buf.scratch);
        }
        self.kernel_time += start.elapsed();
    }

    /// The step size of the hidden layers, s·h (h with a fixed time scale).
    fn scaled_step(&self, theta: &[f64]) -> f64 {
        let scale = &self.model_layout.scale;
        self.net.step_size()
            * if scale.is_empty() {
                1.0
            } else {
                theta[scale.start]
            }
    }

    /// After the adjoint solve: calls `visit(i, θ_n's range, step n at s·h, U_n, λ_{n+1},
    /// D_n where kept, scratch)` for the i-th owned layer n, in layer order. The λ of a rank's
    /// first point goes to the rank before (which owns the layer ending there). Collective.
    pub(crate) fn visit_owned_layers(
        &mut self,
        theta: &[f64],
        mut visit: impl FnMut(
            usize,
            Range<usize>,
            &HiddenStep<'_>,
            &[f64],
            &[f64],
            Option<&[f64]>,
            &mut Scratch,
        ),
    ) {
        let (lo, hi) = (self.part.points.start, self.part.points.end);
        if lo > 0 {
            let lam_lo = self.adjoint.state(lo).expect("owned");
            self.comm
                .send(self.part.rank - 1, LAMBDA_TAG, lam_lo.clone());
        }
        // Every rank but the last owns layer hi−1, whose λ_hi is the right neighbour's first.
        let lam_hi = (!self.part.is_last()).then(|| self.comm.recv(self.part.rank + 1, LAMBDA_TAG));
        let hs = self.scaled_step(theta);
        for (i, n) in self.part.owned_layers.clone().enumerate() {
            let next = if n + 1 < hi {
                self.adjoint.state(n + 1).expect("owned")
            } else {
                lam_hi.as_ref().expect("received λ")
            };
            let range = self.model_layout.layer(n);
            let u = self.forward.state(n).expect("owned");
            let step = self.net.step(&theta[range.clone()], hs);
            let d = if self.keep_derivatives {
                self.buf.derivs.layer(n)
            } else {
                None
            };
            visit(i, range, &step, u, next, d, &mut self.buf.scratch);
        }
        self.comm.wait_sends();
    }
}
