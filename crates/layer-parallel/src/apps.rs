//! Forward and adjoint propagation as MGRIT applications ([`mgrit::App`]).
//!
//! A state is a whole batch, w × B column-major. Coarse levels rediscretize: a coarse step
//! of size m·h from time index a uses the fine control θ_a. With a learnable time scale s
//! every step of size Δt on the grid of [0, T] is taken with s·Δt.

use crate::ghosts::LayerControls;
use mgrit::{App, Comm, Solver, StepInfo};
use odenet::linalg::dot;
use odenet::{Network, Scratch, Step};

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
}

impl App for ForwardApp<'_> {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        let dt = info.dt * self.ctrl.time_scale();
        let step = self.net.step(self.ctrl.layer(info.from), dt);
        step.forward_in_place(u, &mut self.scratch);
    }

    fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, info: &StepInfo) {
        let dt = info.dt * self.ctrl.time_scale();
        let step = self.net.step(self.ctrl.layer(info.from), dt);
        dst.resize(src.len(), 0.0);
        step.forward(src, dst, &mut self.scratch);
    }

    /// U_0 = opening(X) at index 0; zero elsewhere.
    fn init(&mut self, index: usize) -> Vec<f64> {
        let w = self.net.layout.shape.width;
        let mut u = vec![0.0; w * self.batch];
        if index == 0 {
            let mut pre = vec![0.0; w * self.batch];
            self.net.open(self.open, self.x, &mut u, &mut pre);
        }
        u
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
        match lam_next {
            None => step.adjoint(u, lam, &mut self.scratch, g),
            Some(next) => step.adjoint_from(u, next, lam, &mut self.scratch, g),
        }
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
        if index == self.net.layout.shape.layers {
            self.lambda_final.to_vec()
        } else {
            vec![0.0; self.net.layout.shape.width * self.batch]
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
