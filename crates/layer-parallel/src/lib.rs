//! # layer-parallel — the ODE-net objective with its layers split over ranks
//!
//! An ODE-net (crate `odenet`) has N hidden layers, the forward-Euler steps
//! U_{n+1} = U_n + h σ(K_n U_n + b_n 1ᵀ) of u' = σ(K(t)u + b(t)). This crate evaluates its
//! objective J(p) and the exact gradient ∇J(p) with the time points split into contiguous
//! blocks over the ranks of an [`mgrit::Comm`], solving forward propagation and the
//! backward (adjoint) propagation as MGRIT solves. With one MGRIT level both are the exact
//! serial sweeps, pipelined from rank to rank; with more they are multigrid iterations on
//! coarse time grids rediscretized with the fine controls.
//!
//! It is generic over the communicator: on [`mgrit::SerialComm`] it runs in process (the
//! tests compare it there with odenet's serial objective), on `mgrit::MpiComm` (feature
//! `mpi`, on by default) across MPI ranks.
//!
//! The seams, one module each:
//! - [`partition`]: which rank owns which time points, layers and parameter blocks, and the
//!   layout of a rank's part of a parameter vector ([`Partition`], [`LocalLayout`]);
//! - [`controls`]: the hidden controls θ = P(p) as per-layer values or B-splines
//!   ([`Controls`]), the pull-back Pᵀ of a gradient with its ordered reduction, the hidden
//!   regularization;
//! - [`ghosts`]: the controls a rank uses but another owns, and their exchange;
//! - [`apps`]: forward and adjoint propagation as [`mgrit::App`]s;
//! - [`objective`]: J(p), ∇J(p) and forward-only evaluations ([`Objective`]).
//!
//! Every scalar that crosses ranks is a sum of per-layer partials taken in layer order, so a
//! run gives the same bits on every number of ranks.

pub mod apps;
pub mod controls;
pub mod ghosts;
pub mod objective;
pub mod partition;

pub use controls::{Controls, SplineControls};
pub use objective::{DataGrid, Objective, SetupError, SolverSettings, Value};
pub use partition::{spline_layout, LocalLayout, Partition, TooManyRanks};

use mgrit::Comm;
use odenet::linalg::dot;
use odenet::network::ordered_sum;
use std::ops::Range;

/// Inner products ⟨a, b⟩ on a parameter vector distributed as a [`LocalLayout`]: the partial
/// dot product of every block of a rank, gathered and summed in layer order.
pub struct DistSpace<C: Comm> {
    pub comm: C,
    /// This rank's blocks in layer order ([`LocalLayout::segments`]).
    pub segments: Vec<Range<usize>>,
}

impl<C: Comm> optim::Space for DistSpace<C> {
    fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        let partials: Vec<f64> = self
            .segments
            .iter()
            .map(|r| dot(&a[r.clone()], &b[r.clone()]))
            .collect();
        ordered_sum(&self.comm.all_gather(&partials))
    }
}

/// The FNV-1a hash of a vector's bits (the `parameters: … fingerprint` line).
pub use mgrit::fingerprint;
