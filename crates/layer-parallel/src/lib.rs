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
#[cfg(test)]
mod space_tests;
#[cfg(test)]
mod thread_comm;

pub use chain::Chain;
pub use controls::{Controls, SplineControls};
pub use objective::{DataGrid, Objective, SetupError, SolverSettings, Value};
pub use partition::{spline_layout, LocalLayout, Partition, TooManyRanks};

use mgrit::Comm;
use objective::even_part;
use odenet::linalg::dot;
use odenet::network::ordered_sum;
use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Inner products ⟨a, b⟩ on a parameter vector distributed as a [`LocalLayout`] (or as one
/// per block of a [`Chain`], one after another): the partial dot product of every segment of
/// a rank, gathered and summed in layer order, block after block.
///
/// On a D × L grid ([`DataGrid`]) every row holds the same parameters, so the optimizer's
/// element-wise work is shared out over the rows ([`optim::Space`]): of the n_b segments of a
/// block, row r computes the segments `even_part(n_b, D, r)` (and every element outside all
/// segments, which the rank holds as a replica of another rank's); a dot product gathers the
/// rows' segment partials along the column (they arrive in segment order) before the
/// reduction over the row, so it adds the same partials in the same order as on one row.
pub struct DistSpace<C: Comm> {
    pub comm: C,
    /// This rank's segments in layer order ([`LocalLayout::segments`]), one list per block of
    /// the network (the blocks' parts lie one after another in a rank's vector).
    pub blocks: Vec<Vec<Range<usize>>>,
    /// The rows sharing the work: the column communicator (rank = row) and the element
    /// ranges this rank computes, in order; None: this rank computes every element.
    rows: Option<(C, Vec<Range<usize>>)>,
    /// This rank's wall time in the element-wise work (partial dot products, axpy,
    /// scalings; not the messages), added up since the owner last cleared it.
    work: Rc<Cell<Duration>>,
    /// [`optim::Space::complete`]'s buffers (this row's segments of a block, every row's),
    /// kept across calls so that no iteration allocates a block-sized vector.
    gather: RefCell<(Vec<f64>, Vec<f64>)>,
}

impl<C: Comm> DistSpace<C> {
    /// The space of the segments `blocks` of a vector of `len` values, with the work shared
    /// out over the rows of the column communicator `col` (None: not shared), timing its
    /// element-wise work into `work`. Collective over `comm` and `col` only in its use.
    pub fn new(
        comm: C,
        blocks: Vec<Vec<Range<usize>>>,
        col: Option<C>,
        len: usize,
        work: Rc<Cell<Duration>>,
    ) -> Self {
        let rows = col.filter(|c| c.size() > 1).map(|col| {
            let (row, d) = (col.rank(), col.size());
            // (segment, computed here) in element order; the gaps are replicas: computed here.
            let mut marked: Vec<(Range<usize>, bool)> = blocks
                .iter()
                .flat_map(|segs| {
                    let mine = even_part(segs.len(), d, row);
                    segs.iter()
                        .enumerate()
                        .map(move |(i, r)| (r.clone(), mine.contains(&i)))
                })
                .collect();
            marked.sort_by_key(|(r, _)| r.start);
            let mut own = Vec::new();
            let mut at = 0;
            for (r, mine) in marked {
                assert!(r.start >= at, "segments do not overlap");
                if r.start > at {
                    own.push(at..r.start);
                }
                if mine && !r.is_empty() {
                    own.push(r.clone());
                }
                at = r.end;
            }
            if at < len {
                own.push(at..len);
            }
            (col, own)
        });
        DistSpace {
            comm,
            blocks,
            rows,
            work,
            gather: RefCell::default(),
        }
    }

    /// The segments of block `b` this row computes (all of them when not shared).
    fn row_segments(&self, b: usize) -> Range<usize> {
        let n = self.blocks[b].len();
        match &self.rows {
            Some((col, _)) => even_part(n, col.size(), col.rank()),
            None => 0..n,
        }
    }
}

impl<C: Comm> optim::Space for DistSpace<C> {
    /// Σ over blocks in order, over ranks in order, over a rank's segments in order, of the
    /// segments' partial dot products (one ordered sum: the same bits on every rank count
    /// and every number of rows sharing the work).
    fn dot(&self, a: &[f64], b: &[f64]) -> f64 {
        let mut all = Vec::new();
        for (k, segments) in self.blocks.iter().enumerate() {
            let start = Instant::now();
            let partials: Vec<f64> = segments[self.row_segments(k)]
                .iter()
                .map(|r| dot(&a[r.clone()], &b[r.clone()]))
                .collect();
            self.work.set(self.work.get() + start.elapsed());
            let column = match &self.rows {
                Some((col, _)) => col.all_gather(&partials),
                None => partials,
            };
            all.extend(self.comm.all_gather(&column));
        }
        ordered_sum(&all)
    }

    /// The element ranges this rank computes (its row's segments and the replicas), `f`
    /// timed into the work.
    fn for_share(&self, len: usize, mut f: impl FnMut(Range<usize>)) {
        let start = Instant::now();
        match &self.rows {
            Some((_, own)) => own.iter().for_each(|r| f(r.clone())),
            None => f(0..len),
        }
        self.work.set(self.work.get() + start.elapsed());
    }

    /// Gathers every row's segments along the column (one all-gather per block) and copies
    /// them into place; the replicas outside the segments are this rank's own.
    fn complete(&self, v: &mut [f64]) {
        let Some((col, _)) = &self.rows else {
            return;
        };
        let mut buffers = self.gather.borrow_mut();
        let (mine, all) = &mut *buffers;
        for (k, segments) in self.blocks.iter().enumerate() {
            let own = self.row_segments(k);
            let segs = &segments[own.clone()];
            // This row's segments, sent straight from `v` where they lie one after another.
            let local: &[f64] = match (segs.first(), segs.last()) {
                (Some(a), Some(b)) if segs.windows(2).all(|w| w[0].end == w[1].start) => {
                    &v[a.start..b.end]
                }
                _ => {
                    mine.clear();
                    for r in segs {
                        mine.extend_from_slice(&v[r.clone()]);
                    }
                    mine
                }
            };
            col.all_gather_into(local, all);
            assert_eq!(
                all.len(),
                segments.iter().map(|r| r.len()).sum::<usize>(),
                "every segment of the block arrives once"
            );
            let mut at = 0;
            for (i, r) in segments.iter().enumerate() {
                // (This row's own segments are already in place.)
                if !own.contains(&i) {
                    v[r.clone()].copy_from_slice(&all[at..at + r.len()]);
                }
                at += r.len();
            }
        }
    }
}

/// The FNV-1a hash of a vector's bits (the `parameters: … fingerprint` line).
pub use mgrit::fingerprint;
