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
//! - [`objective`]: J(p), ∇J(p) and forward-only evaluations ([`Objective`]);
//! - [`chain`]: a network of several ODE blocks, each its own [`Objective`] over all the
//!   ranks, chained through its first and last ranks ([`Chain`]).
//!
//! Every scalar that crosses ranks is a sum of per-layer partials taken in layer order, so a
//! run gives the same bits on every number of ranks.

pub mod apps;
pub mod chain;
pub mod controls;
pub mod ghosts;
pub mod objective;
pub mod partition;

pub use chain::Chain;
pub use controls::{Controls, SplineControls};
pub use objective::{DataGrid, Objective, SetupError, SolverSettings, Value};
pub use partition::{spline_layout, LocalLayout, Partition, TooManyRanks};

use mgrit::Comm;
use odenet::linalg::dot;
use odenet::network::ordered_sum;
use std::ops::Range;

/// Inner products ⟨a, b⟩ on a parameter vector distributed as a [`LocalLayout`] (or as one
/// per block of a [`Chain`], one after another): the partial dot product of every segment of
/// a rank, gathered and summed in layer order, block after block.
pub struct DistSpace<C: Comm> {
    pub comm: C,
    /// This rank's segments in layer order ([`LocalLayout::segments`]), one list per block of
    /// the network (the blocks' parts lie one after another in a rank's vector).
    pub blocks: Vec<Vec<Range<usize>>>,
}

impl<C: Comm> optim::Space for DistSpace<C> {
    /// Σ over blocks in order, over ranks in order, over a rank's segments in order, of the
    /// segments' partial dot products (one ordered sum: the same bits on every rank count).
    fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        let mut all = Vec::new();
        for segments in &self.blocks {
            let partials: Vec<f64> = segments
                .iter()
                .map(|r| dot(&a[r.clone()], &b[r.clone()]))
                .collect();
            all.extend(self.comm.all_gather(&partials));
        }
        ordered_sum(&all)
    }
}

/// The FNV-1a hash of a vector's bits (the `parameters: … fingerprint` line).
pub use mgrit::fingerprint;
