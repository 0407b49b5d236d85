//! # optim — optimizers over a parameter vector that may be distributed
//!
//! The optimizers never compute an inner product themselves: they ask a [`Space`], so the same
//! code runs on a vector held whole on one process or split across MPI ranks (where `dot` is a
//! local dot product followed by a reduction).

// `!(x > 0.0)` is meant: it is also true for NaN, which these guards must refuse.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod lbfgs;
pub mod linesearch;
pub mod schedule;
pub mod stochastic;

pub use lbfgs::Lbfgs;
pub use linesearch::{backtracking, Armijo, LineSearch};
pub use schedule::Schedule;
pub use stochastic::{Adam, Sgd};

/// Inner products on the parameter space.
pub trait Space {
    /// ⟨a, b⟩ over the whole (possibly distributed) vector.
    fn dot(&self, a: &[f64], b: &[f64]) -> f64;
    /// ‖a‖₂.
    fn norm(&self, a: &[f64]) -> f64 {
        self.dot(a, a).sqrt()
    }
}

/// The whole vector lives in this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Space for Local {
    fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }
}

/// y ← y + α x.
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}
