//! Forward and adjoint propagation as MGRIT applications ([`mgrit::App`]).
//!
//! A state is a whole batch, w × B column-major. Coarse levels rediscretize: a coarse step
//! of size m·h from time index a uses the fine control θ_a. With a learnable time scale s
//! every step of size Δt on the grid of [0, T] is taken with s·Δt.

use crate::ghosts::LayerControls;
use mgrit::{App, Comm, Solver, StepInfo};
use odenet::linalg::dot;
use odenet::{Network, Scratch, Step};
use std::ops::Range;
use std::time::{Duration, Instant};

/// D_n = σ'(Z_n(U_n)), the activation's derivative at the pre-activation of each owned layer n
/// at the forward solution U: every adjoint step from n, on every level (a coarse step from n
/// uses θ_n and U_n too), and the layer gradients need it, and none of them changes it. Kept
/// once per forward solution, the adjoint's steps skip the product Z_n = K_n U_n + b_n (and σ')
/// that they would otherwise form at every visit; the bits are the same either way.
///
/// The one-level (serial) forward solve writes D_n as it steps ([`ForwardApp::keep`]); before
/// a multilevel adjoint solve the layers not written are formed from U_n
/// ([`Derivatives::missing`]). A new forward solve invalidates them all. The values are one
/// state per owned layer, allocated once per batch size and reused.
#[derive(Debug, Default)]
pub struct Derivatives {
    values: Vec<f64>,
    /// The owned layers, and the length of one layer's D (state_len · B).
    layers: Range<usize>,
    len: usize,
    /// Whether D_n of the current forward solution is in place, per owned layer.
    filled: Vec<bool>,
}

impl Derivatives {
    /// Invalidates every layer's D and sizes the store for `layers` of `len` values each
    /// (growing only).
    pub fn invalidate(&mut self, layers: Range<usize>, len: usize) {
        let count = layers.len();
        if self.values.len() < count * len {
            self.values.resize(count * len, 0.0);
        }
        self.layers = layers;
        self.len = len;
        self.filled.clear();
        self.filled.resize(count, false);
    }

    /// Invalidates every layer's D, keeping the store.
    pub fn clear(&mut self) {
        self.filled.iter_mut().for_each(|f| *f = false);
    }

    /// D_n, if kept for the current forward solution.
    pub fn layer(&self, n: usize) -> Option<&[f64]> {
        let i = n.checked_sub(self.layers.start)?;
        (*self.filled.get(i)?).then(|| &self.values[i * self.len..(i + 1) * self.len])
    }

    /// Where D_n goes (marked kept: the caller writes it now), if n is an owned layer.
    pub fn layer_mut(&mut self, n: usize) -> Option<&mut [f64]> {
        let i = n.checked_sub(self.layers.start)?;
        *self.filled.get_mut(i)? = true;
        Some(&mut self.values[i * self.len..(i + 1) * self.len])
    }

    /// The owned layers whose D is not kept yet.
    pub fn missing(&self) -> Vec<usize> {
        self.layers
            .clone()
            .zip(&self.filled)
            .filter(|(_, &f)| !f)
            .map(|(n, _)| n)
            .collect()
    }
}

/// The hidden regularization of this rank's layers as a one-level adjoint sweep adds it
/// (per-layer controls): group by group ([`odenet::network::hidden_groups`] of the owned
/// layers), as soon as the sweep has completed the data gradient of every layer in the group,
/// while their blocks of θ and of the gradient are still in cache, the group's terms (kept
/// here in layer order) and their gradient ([`Network::group_regularization`]). The same bits
/// as forming them after the solve, in one more pass over θ and the gradient.
#[derive(Debug, Default)]
pub struct SweptRegularization {
    owned: Range<usize>,
    /// The owned layers' terms, in layer order, once [`SweptRegularization::done`].
    pub terms: Vec<f64>,
    /// Per group, how many of its layers' adjoint steps have not run yet.
    pending: Vec<usize>,
}

impl SweptRegularization {
    /// Starts a sweep over the owned layers `owned`: no group done.
    pub fn reset(&mut self, owned: Range<usize>) {
        self.terms.clear();
        self.terms.resize(owned.len(), 0.0);
        self.pending.clear();
        self.pending
            .extend(odenet::network::hidden_groups(owned.clone()).map(|g| g.len()));
        self.owned = owned;
    }

    /// Whether every group's terms and gradient are in.
    pub fn done(&self) -> bool {
        self.pending.iter().all(|&p| p == 0)
    }

    /// Notes that layer n's adjoint step has run; returns the group it completes, if any.
    fn step_done(&mut self, n: usize) -> Option<Range<usize>> {
        let o = n.checked_sub(self.owned.start)?;
        let i = o / odenet::network::HIDDEN_GROUP;
        let p = self.pending.get_mut(i)?;
        if *p == 0 {
            return None;
        }
        *p -= 1;
        (*p == 0).then(|| self.group(i))
    }

    /// The i-th group of owned layers.
    fn group(&self, i: usize) -> Range<usize> {
        let s = self.owned.start + i * odenet::network::HIDDEN_GROUP;
        s..(s + odenet::network::HIDDEN_GROUP).min(self.owned.end)
    }

    /// The groups not done yet, marked done.
    pub fn take_pending(&mut self) -> Vec<Range<usize>> {
        let open: Vec<usize> = (0..self.pending.len())
            .filter(|&i| self.pending[i] != 0)
            .collect();
        open.into_iter()
            .map(|i| {
                self.pending[i] = 0;
                self.group(i)
            })
            .collect()
    }

    /// Forms the terms of `group` into [`SweptRegularization::terms`] and adds its gradient
    /// into `hidden_grad` (the hidden slice of the θ-gradient: θ_n's block at
    /// `ctrl.layout.layer(n)` shifted to the slice's start).
    pub fn add_group(
        &mut self,
        net: &Network,
        ctrl: &LayerControls,
        group: Range<usize>,
        hidden_grad: &mut [f64],
    ) {
        let layout = ctrl.layout;
        let hidden0 = layout.layers.start;
        let (first, last) = (layout.layer(group.start), layout.layer(group.end - 1));
        let blocks = &mut hidden_grad[first.start - hidden0..last.end - hidden0];
        let terms = net.group_regularization(group.clone(), &|n| ctrl.layer(n), Some(blocks));
        let o = group.start - self.owned.start;
        self.terms[o..o + group.len()].copy_from_slice(&terms[..group.len()]);
    }
}

/// Forward propagation U ← U + Δt σ(K_a U + b_a 1ᵀ) for a step from time index a, starting
/// from U_0 = opening(X).
pub struct ForwardApp<'a> {
    pub net: &'a Network,
    pub ctrl: LayerControls<'a>,
    /// The opening block (W_in, b_in) (rank 0; empty elsewhere).
    pub open: &'a [f64],
    /// The batch's inputs, d_in × B.
    pub x: &'a [f64],
    pub batch: usize,
    pub scratch: Scratch,
    /// Where the fine steps write D_n = σ'(Z_n(U_n)) as they go: set for a one-level solve,
    /// whose every fine step runs once, from the final U_n.
    pub keep: Option<&'a mut Derivatives>,
    /// Time spent in the step kernels (added to by every step).
    pub kernel_time: Duration,
}

impl ForwardApp<'_> {
    /// Where the step of `info` keeps its D, if it does.
    fn kept(&mut self, info: &StepInfo) -> Option<&mut [f64]> {
        match (&mut self.keep, info.level) {
            (Some(k), 0) => k.layer_mut(info.from),
            _ => None,
        }
    }
}

impl App for ForwardApp<'_> {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        let dt = info.dt * self.ctrl.time_scale();
        let step = self.net.step(self.ctrl.layer(info.from), dt);
        let mut scratch = std::mem::take(&mut self.scratch);
        let t = Instant::now();
        match self.kept(info) {
            Some(d) => step.forward_in_place_keeping(u, d, &mut scratch),
            None => step.forward_in_place(u, &mut scratch),
        }
        self.kernel_time += t.elapsed();
        self.scratch = scratch;
    }

    fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, info: &StepInfo) {
        let dt = info.dt * self.ctrl.time_scale();
        let step = self.net.step(self.ctrl.layer(info.from), dt);
        dst.resize(src.len(), 0.0);
        let mut scratch = std::mem::take(&mut self.scratch);
        let t = Instant::now();
        match self.kept(info) {
            Some(d) => step.forward_keeping(src, dst, d, &mut scratch),
            None => step.forward(src, dst, &mut scratch),
        }
        self.kernel_time += t.elapsed();
        self.scratch = scratch;
    }

    /// U_0 = opening(X) at index 0; zero elsewhere.
    fn init(&mut self, index: usize) -> Vec<f64> {
        let mut u = Vec::new();
        self.init_into(index, &mut u);
        u
    }

    fn init_into(&mut self, index: usize, u: &mut Vec<f64>) {
        let n = self.net.layout.shape.width * self.batch;
        u.clear();
        u.resize(n, 0.0);
        if index == 0 {
            let mut pre = vec![0.0; n];
            self.net.open(self.open, self.x, u, &mut pre);
        }
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        axpby(alpha, x, beta, y);
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        dot(x, x).sqrt()
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        buf.extend_from_slice(x);
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        buf.to_vec()
    }

    fn packed_len(&self, x: &Vec<f64>) -> usize {
        x.len()
    }
}

/// Adjoint propagation in reverse time: λ_a = λ_b + Δt K_aᵀ (σ'(K_a U_a + b_a) ⊙ λ_b) for a
/// step from time index b down to a, linearized at the stored forward state U_a, starting
/// from λ_N = W_cᵀ ∂loss/∂Z.
///
/// With `grad` set (a one-level solve, where every fine step runs exactly once) the fine
/// steps also accumulate ∂J/∂θ_a into the hidden block of this rank's θ-gradient, as the
/// serial adjoint does.
pub struct AdjointApp<'a, C: Comm> {
    pub net: &'a Network,
    pub ctrl: LayerControls<'a>,
    pub forward: &'a Solver<Vec<f64>, C>,
    pub lambda_final: &'a [f64],
    pub batch: usize,
    pub scratch: Scratch,
    /// The hidden-layer slice of the θ-gradient (layer n at `layer(n)` shifted to the
    /// slice's start).
    pub grad: Option<&'a mut [f64]>,
    /// D_n = σ'(Z_n(U_n)) of the forward solution where kept: the steps from n take it
    /// instead of forming Z_n.
    pub derivs: Option<&'a Derivatives>,
    /// With `grad`: where the fine steps, once they have added the data gradients of a
    /// group of layers, also add the hidden regularization of the group (its terms and
    /// gradient), while the blocks are in cache. Only where the step's data gradient is the
    /// layer's whole one (one level, one chunk, one row).
    pub regularize: Option<&'a mut SweptRegularization>,
    /// Time spent in the step kernels (added to by every step).
    pub kernel_time: Duration,
}

impl<C: Comm> AdjointApp<'_, C> {
    /// The adjoint step of `info` into `lam`: in place, or from `lam_next` when given.
    fn adjoint_step(&mut self, lam_next: Option<&[f64]>, lam: &mut [f64], info: &StepInfo) {
        let a = info.to;
        let step = self
            .net
            .step(self.ctrl.layer(a), info.dt * self.ctrl.time_scale());
        let u = self
            .forward
            .state(a)
            .expect("the forward state of an adjoint step is local");
        let layout = self.ctrl.layout;
        let hidden0 = layout.layers.start;
        let g = match (&mut self.grad, info.level) {
            (Some(g), 0) => {
                let r = layout.layer(a);
                Some(&mut g[r.start - hidden0..r.end - hidden0])
            }
            _ => None,
        };
        let t = Instant::now();
        match (self.derivs.and_then(|d| d.layer(a)), lam_next) {
            (Some(d), next) => step.adjoint_given(u, d, next, lam, &mut self.scratch, g),
            (None, None) => step.adjoint(u, lam, &mut self.scratch, g),
            (None, Some(next)) => step.adjoint_from(u, next, lam, &mut self.scratch, g),
        }
        if let (Some(sw), Some(grad), 0) =
            (self.regularize.as_deref_mut(), &mut self.grad, info.level)
        {
            if let Some(group) = sw.step_done(a) {
                sw.add_group(self.net, &self.ctrl, group, grad);
            }
        }
        self.kernel_time += t.elapsed();
    }
}

impl<C: Comm> App for AdjointApp<'_, C> {
    type State = Vec<f64>;

    fn step(&mut self, lam: &mut Vec<f64>, info: &StepInfo) {
        self.adjoint_step(None, lam, info);
    }

    fn step_from(&mut self, lam_next: &Vec<f64>, lam: &mut Vec<f64>, info: &StepInfo) {
        lam.resize(lam_next.len(), 0.0);
        self.adjoint_step(Some(lam_next), lam, info);
    }

    /// λ_N at index N; zero elsewhere.
    fn init(&mut self, index: usize) -> Vec<f64> {
        let mut lam = Vec::new();
        self.init_into(index, &mut lam);
        lam
    }

    fn init_into(&mut self, index: usize, lam: &mut Vec<f64>) {
        lam.clear();
        if index == self.net.layout.shape.layers {
            lam.extend_from_slice(self.lambda_final);
        } else {
            lam.resize(self.net.layout.shape.width * self.batch, 0.0);
        }
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        axpby(alpha, x, beta, y);
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        dot(x, x).sqrt()
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        buf.extend_from_slice(x);
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        buf.to_vec()
    }

    fn packed_len(&self, x: &Vec<f64>) -> usize {
        x.len()
    }
}

/// y ← α x + β y (β = 0 overwrites y, whatever it held).
fn axpby(alpha: f64, x: &[f64], beta: f64, y: &mut [f64]) {
    if beta == 0.0 {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = alpha * xi;
        }
    } else {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = alpha * xi + beta * *yi;
        }
    }
}
