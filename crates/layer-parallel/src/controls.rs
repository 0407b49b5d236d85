//! The controls θ_n of the hidden layers as functions of the optimizer's parameters p: the
//! one place that knows whether they are per layer or B-splines.
//!
//! - Per-layer: p holds θ_0 … θ_{N−1} themselves, θ = P(p) = p, each rank holding its owned
//!   layers; the hidden regularization is Σ_n γ_tik/2 ‖θ_n‖² + γ_ddt/2 ‖(θ_{n+1} − θ_n)/h‖².
//! - Spline (SpliNet): p holds M coefficient sets c_0 … c_{M−1}, replicated on every rank,
//!   and θ_n = Σ_i c_i B_i(t_n) at t_n = n·h. The pull-back of a gradient is
//!   ∂J/∂c_i = Σ_n B_i(t_n) ∂J/∂θ_n, summed in layer order along the chain of ranks; the
//!   regularization is γ_tik/2 Σ_i ‖c_i‖² + γ_ddt/2 ∫_0^T ‖θ'(t)‖² dt.
//!
//! The opening and classifier blocks are the same in p and θ.

use crate::ghosts::{Ghosts, LayerControls};
use crate::partition::{LocalLayout, Partition};
use mgrit::Comm;
use odenet::linalg::dot;
use odenet::Network;
use std::borrow::Cow;

const CHAIN_TAG: i32 = 7003;

/// How the hidden controls are parameterized.
pub enum Controls {
    /// One control per layer: θ = p.
    PerLayer,
    /// B-spline coefficients: θ_n = Σ_i c_i B_i(t_n).
    Spline(SplineControls),
}

impl Controls {
    /// Spline controls with `basis` for a network of `layers` hidden layers, or per-layer
    /// controls without one.
    pub fn new(basis: Option<bspline::Basis>, layers: usize) -> Self {
        match basis {
            Some(b) => Controls::Spline(SplineControls::new(b, layers)),
            None => Controls::PerLayer,
        }
    }

    /// The layout of this rank's part of p, given the layout of its part of θ.
    pub fn layout(&self, net: &Network, part: &Partition, model: &LocalLayout) -> LocalLayout {
        match self {
            Controls::PerLayer => model.clone(),
            Controls::Spline(sp) => LocalLayout::spline(net, part, sp.count),
        }
    }

    /// θ = P(p): this rank's per-layer controls (laid out by `model`) from its part of p (laid
    /// out by `layout`), and the ghost controls it needs (exchanged for per-layer controls,
    /// evaluated locally for splines). Collective.
    pub fn model<'p, C: Comm>(
        &self,
        params: &'p [f64],
        layout: &LocalLayout,
        model: &LocalLayout,
        part: &Partition,
        ghosts: &mut Ghosts,
        comm: &C,
    ) -> Cow<'p, [f64]> {
        match self {
            Controls::PerLayer => {
                ghosts.exchange(comm, part, model, params);
                Cow::Borrowed(params)
            }
            Controls::Spline(sp) => {
                let coef = &params[layout.layers.clone()];
                let mut theta = vec![0.0; model.len];
                theta[model.opening.clone()].copy_from_slice(&params[layout.opening.clone()]);
                theta[model.classifier.clone()].copy_from_slice(&params[layout.classifier.clone()]);
                theta[model.scale.clone()].copy_from_slice(&params[layout.scale.clone()]);
                for n in part.owned_layers.clone() {
                    sp.layer(coef, n, &mut theta[model.layer(n)]);
                }
                ghosts.fill(model.layer_len, |l, out| sp.layer(coef, l, out));
                Cow::Owned(theta)
            }
        }
    }

    /// This rank's regularization terms of the hidden controls, in layer order, adding their
    /// gradient into `grad` when given: per-layer, the blocks of the θ-gradient `grad` (laid
    /// out by `ctrl.layout`); splines, the coefficient block of the p-gradient (`grad` is
    /// then that block alone). The spline term is counted by rank 0 only; its gradient is
    /// added on every rank (the coefficients are replicated).
    pub fn hidden_regularization(
        &self,
        net: &Network,
        params_hidden: &[f64],
        ctrl: &LayerControls,
        mut grad: Option<&mut [f64]>,
    ) -> Vec<f64> {
        match self {
            Controls::PerLayer => {
                let mut terms = Vec::with_capacity(ctrl.part.owned_layers.len());
                net.hidden_regularization(
                    ctrl.part.owned_layers.clone(),
                    |n| ctrl.layer(n),
                    grad.as_deref_mut(),
                    |n| ctrl.layout.layer(n),
                    &mut terms,
                );
                terms
            }
            Controls::Spline(sp) => {
                let r = net.regularization;
                let mut scratch;
                let g = match grad {
                    Some(g) => g,
                    None => {
                        scratch = vec![0.0; params_hidden.len()];
                        &mut scratch[..]
                    }
                };
                let len = net.layout.layer_len;
                let v = sp.regularization(params_hidden, len, r.tikhonov, r.ddt, g);
                if ctrl.part.is_first() {
                    vec![v]
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// The p-gradient from the θ-gradient `grad_model` (this rank's parts): per-layer, the
    /// same vector; splines, the opening and classifier blocks copied and
    /// dJ/dc_i = Σ_n B_i(t_n) dJ/dθ_n summed in layer order along the chain of ranks (rank r
    /// adds its layers to the running sum from rank r−1, so the grouping is the serial one for
    /// every rank count; the last rank's total goes to every rank), plus `coef_grad` (the
    /// regularization's). Collective.
    pub fn pull_back<C: Comm>(
        &self,
        grad_model: &[f64],
        (model, layout, part): (&LocalLayout, &LocalLayout, &Partition),
        coef_grad: &[f64],
        grad: &mut [f64],
        comm: &C,
    ) {
        let Controls::Spline(sp) = self else {
            grad.copy_from_slice(grad_model);
            return;
        };
        let len = model.layer_len;
        let mut acc = if part.is_first() {
            vec![0.0; sp.count * len]
        } else {
            comm.recv(part.rank - 1, CHAIN_TAG)
        };
        for n in part.owned_layers.clone() {
            sp.add_gradient(n, &grad_model[model.layer(n)], &mut acc);
        }
        if !part.is_last() {
            comm.send(part.rank + 1, CHAIN_TAG, acc.clone());
            comm.wait_sends();
        }
        let mine: &[f64] = if part.is_last() { &acc } else { &[] };
        let total = comm.all_gather(mine);
        grad.fill(0.0);
        grad[layout.opening.clone()].copy_from_slice(&grad_model[model.opening.clone()]);
        grad[layout.classifier.clone()].copy_from_slice(&grad_model[model.classifier.clone()]);
        grad[layout.scale.clone()].copy_from_slice(&grad_model[model.scale.clone()]);
        for ((g, a), b) in grad[layout.layers.clone()]
            .iter_mut()
            .zip(&total)
            .zip(coef_grad)
        {
            *g = a + b;
        }
    }

    pub fn is_spline(&self) -> bool {
        matches!(self, Controls::Spline(_))
    }
}

/// B-spline controls: the basis and, for every layer n, its non-zero functions at t_n = n·h.
pub struct SplineControls {
    pub basis: bspline::Basis,
    pub count: usize,
    at_layer: Vec<(usize, Vec<f64>)>,
}

impl SplineControls {
    /// The basis evaluated at the `layers` time points t_n = n·T/N, n < N.
    pub fn new(basis: bspline::Basis, layers: usize) -> Self {
        let h = basis.t_end / layers as f64;
        let at_layer = (0..layers).map(|n| basis.eval(n as f64 * h)).collect();
        SplineControls {
            count: basis.count(),
            basis,
            at_layer,
        }
    }

    /// θ_n = Σ_i c_i B_i(t_n) into `out` (one layer's length), from all coefficients `coef`.
    pub fn layer(&self, coef: &[f64], n: usize, out: &mut [f64]) {
        let len = out.len();
        let (i0, b) = &self.at_layer[n];
        out.fill(0.0);
        for (r, &br) in b.iter().enumerate() {
            for (o, &c) in out
                .iter_mut()
                .zip(&coef[(i0 + r) * len..(i0 + r + 1) * len])
            {
                *o += br * c;
            }
        }
    }

    /// acc\[i\] += B_i(t_n) g for the functions non-zero at t_n.
    pub fn add_gradient(&self, n: usize, g: &[f64], acc: &mut [f64]) {
        let len = g.len();
        let (i0, b) = &self.at_layer[n];
        for (r, &br) in b.iter().enumerate() {
            for (a, &x) in acc[(i0 + r) * len..(i0 + r + 1) * len].iter_mut().zip(g) {
                *a += br * x;
            }
        }
    }

    /// γ_tik/2 Σ‖c_i‖² + γ_ddt/2 ∫_0^T ‖θ'(t)‖² dt and its gradient (added into `grad`).
    pub fn regularization(
        &self,
        coef: &[f64],
        len: usize,
        tik: f64,
        ddt: f64,
        grad: &mut [f64],
    ) -> f64 {
        let mut v = 0.5 * tik * dot(coef, coef);
        for (g, &c) in grad.iter_mut().zip(coef) {
            *g += tik * c;
        }
        if ddt != 0.0 {
            v += 0.5
                * ddt
                * self
                    .basis
                    .derivative_energy(coef, len, 0.5 * ddt, Some(grad));
        }
        v
    }

    /// The per-layer controls of a whole network: θ_n for every layer n from the global
    /// parameter vector `params` (opening, M coefficient sets, classifier) into the global
    /// per-layer vector of `net` (opening, N layers, classifier).
    pub fn global_model(&self, net: &Network, params: &[f64]) -> Vec<f64> {
        let l = &net.layout;
        let pl = crate::partition::spline_layout(net, self.count);
        let mut theta = vec![0.0; l.len];
        theta[l.opening()].copy_from_slice(&params[pl.opening()]);
        theta[l.classifier()].copy_from_slice(&params[pl.classifier()]);
        theta[l.scale.clone()].copy_from_slice(&params[pl.scale.clone()]);
        for n in 0..l.shape.layers {
            self.layer(&params[pl.hidden()], n, &mut theta[l.layer(n)]);
        }
        theta
    }
}
