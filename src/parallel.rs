//! The MPI environment of a run: rank, size, and the few collectives the driver needs.

use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// MPI_COMM_WORLD of an initialized MPI; MPI is finalized when this is dropped.
pub struct Parallel {
    world: SimpleCommunicator,
    // Dropped last: finalizes MPI.
    _universe: mpi::environment::Universe,
}

impl Parallel {
    /// Initializes MPI (a plain start becomes an MPI singleton).
    pub fn init() -> anyhow::Result<Self> {
        let universe =
            mpi::initialize().ok_or_else(|| anyhow::anyhow!("MPI was already initialized"))?;
        Ok(Parallel {
            world: universe.world(),
            _universe: universe,
        })
    }

    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    pub fn size(&self) -> usize {
        self.world.size() as usize
    }

    /// Rank 0 prints and writes files.
    pub fn is_root(&self) -> bool {
        self.world.rank() == 0
    }

    pub fn world(&self) -> &SimpleCommunicator {
        &self.world
    }

    /// Ends every rank of the job at once (for an error only one rank saw mid-run, where the
    /// others would otherwise wait for it forever in the next collective). The run
    /// directory's lock is released first: an abort runs no destructors.
    pub fn abort(&self, code: i32) -> ! {
        crate::rundir::release_held();
        self.world.abort(code)
    }

    /// (min, max) of a u64 over all ranks.
    pub fn min_max(&self, v: u64) -> (u64, u64) {
        let mut lo = 0u64;
        let mut hi = 0u64;
        self.world
            .all_reduce_into(&v, &mut lo, SystemOperation::min());
        self.world
            .all_reduce_into(&v, &mut hi, SystemOperation::max());
        (lo, hi)
    }

    /// Rank 0's `bytes` on every rank (collective; the argument is ignored on the other
    /// ranks). `None` on rank 0 gives `None` everywhere.
    pub fn broadcast_bytes(&self, bytes: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let root = self.world.process_at_rank(0);
        let mine = bytes.filter(|_| self.is_root());
        let mut len = mine.as_ref().map_or(u64::MAX, |b| b.len() as u64);
        root.broadcast_into(&mut len);
        if len == u64::MAX {
            return None;
        }
        let mut buf = mine.unwrap_or_else(|| vec![0; len as usize]);
        root.broadcast_into(&mut buf[..]);
        Some(buf)
    }

    /// Whether any rank has `flag` set (a logical or).
    pub fn any(&self, flag: bool) -> bool {
        let (_, hi) = self.min_max(u64::from(flag));
        hi == 1
    }

    /// Whether every rank passed `ok` (a logical and).
    pub fn all(&self, ok: bool) -> bool {
        let (lo, _) = self.min_max(u64::from(ok));
        lo == 1
    }
}

pub use layer_parallel::fingerprint;

/// The D × L grid of a run: D = `parallel.data_groups` rows of L layer ranks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GridShape {
    pub data_groups: usize,
    pub layer_ranks: usize,
    pub chunks: usize,
}

impl GridShape {
    /// The grid of `ranks` ranks; an error names the key when D does not divide them.
    pub fn new(config: &crate::config::Config, ranks: usize) -> anyhow::Result<GridShape> {
        let p = &config.parallel;
        if !ranks.is_multiple_of(p.data_groups) {
            anyhow::bail!(
                "config key `parallel.data_groups` = {} does not divide the {ranks} MPI rank{}: run P = data_groups · L ranks",
                p.data_groups,
                if ranks == 1 { "" } else { "s" }
            );
        }
        Ok(GridShape {
            data_groups: p.data_groups,
            layer_ranks: ranks / p.data_groups,
            chunks: p.chunks,
        })
    }

    /// Every batch the run evaluates (the mini-batches and the last, smaller one, the
    /// training set, the validation set) has at least one example per chunk.
    pub fn check_batches(
        &self,
        config: &crate::config::Config,
        train: usize,
        val: usize,
    ) -> anyhow::Result<()> {
        let k = self.chunks;
        if k == 1 {
            return Ok(());
        }
        let o = &config.optimizer;
        let mut sizes = vec![("the training set", train), ("the validation set", val)];
        if o.kind != crate::config::OptimizerKind::Lbfgs && o.batch_size > 0 && o.batch_size < train
        {
            sizes.push(("a mini-batch (optimizer.batch_size)", o.batch_size));
            if !train.is_multiple_of(o.batch_size) {
                sizes.push(("the last mini-batch of an epoch", train % o.batch_size));
            }
        }
        match sizes.iter().find(|(_, n)| *n < k) {
            Some((what, n)) => anyhow::bail!(
                "config key `parallel.chunks` = {k} exceeds the {n} examples of {what}: every chunk needs at least one example"
            ),
            None => Ok(()),
        }
    }
}

/// The communicators of a run: the row's (the layer-parallel objective's ranks) and, for a
/// grid (data_groups > 1 or chunks > 1), the column's. World rank p sits in row p / L,
/// column p mod L, so rank 0 (which writes every file) is in row 0. Collective.
pub fn grid_comms(
    par: &Parallel,
    p: &crate::config::ParallelConfig,
) -> (mgrit::MpiComm, Option<mgrit::MpiComm>) {
    if p.data_groups == 1 && p.chunks == 1 {
        return (mgrit::MpiComm::new(par.world()), None);
    }
    let l = par.size() / p.data_groups;
    let (row, col) = (par.rank() / l, par.rank() % l);
    let row_comm = mgrit::MpiComm::split(par.world(), row, col);
    let col_comm = mgrit::MpiComm::split(par.world(), col, row);
    (row_comm, Some(col_comm))
}
