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
pub use linesearch::{backtracking, backtracking_in, Armijo, LineSearch};
pub use schedule::Schedule;
pub use stochastic::{Adam, Sgd};

/// Inner products and element-wise work on the parameter space.
///
/// A space may share the element-wise work of a vector out over several processes that
/// each hold the whole vector (the rows of a data × layer grid): then each process computes
/// only its *share* of the elements in [`Space::axpy`] and [`Space::scale`], [`Space::dot`]
/// reads only the shares of its arguments, and [`Space::complete`] brings the other shares
/// in, after which every process holds the same whole vector. A space that does not share
/// the work (the default methods) computes every element and has nothing to complete.
pub trait Space {
    /// ⟨a, b⟩ over the whole (possibly distributed) vector; where the work is shared out,
    /// only this process's share of `a` and `b` is read. Collective.
    fn dot(&self, a: &[f64], b: &[f64]) -> f64;
    /// ‖a‖₂.
    fn norm(&self, a: &[f64]) -> f64 {
        self.dot(a, a).sqrt()
    }
    /// Calls `f` on each range, in order, of the elements of a vector of `len` values that
    /// are this process's share (all of them by default).
    fn for_share(&self, len: usize, mut f: impl FnMut(std::ops::Range<usize>))
    where
        Self: Sized,
    {
        f(0..len);
    }
    /// y ← y + α x on this process's share of the elements.
    fn axpy(&self, alpha: f64, x: &[f64], y: &mut [f64])
    where
        Self: Sized,
    {
        self.for_share(y.len(), |r| axpy(alpha, &x[r.clone()], &mut y[r]));
    }
    /// x ← α x on this process's share of the elements.
    fn scale(&self, alpha: f64, x: &mut [f64])
    where
        Self: Sized,
    {
        self.for_share(x.len(), |r| x[r].iter_mut().for_each(|v| *v *= alpha));
    }
    /// Makes `v`, valid on this process's share, whole: the other shares are brought in from
    /// the processes that computed them. Collective where the work is shared out.
    fn complete(&self, _v: &mut [f64]) {}
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
