//! Communication between ranks: non-blocking sends of packed states to neighbours, blocking
//! receives, and reductions whose result does not depend on the number of ranks.
//!
//! [`SerialComm`] is always available; [`MpiComm`] needs the crate's `mpi` feature (on by
//! default).

#[cfg(feature = "mpi")]
use mpi::topology::SimpleCommunicator;
#[cfg(feature = "mpi")]
use mpi::traits::*;
#[cfg(feature = "mpi")]
use std::cell::RefCell;

/// What the solver needs from a communicator.
pub trait Comm {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Starts sending `data` to rank `to`; returns at once. The data is kept until
    /// [`Comm::wait_sends`].
    fn send(&self, to: usize, tag: i32, data: Vec<f64>);
    /// Receives the next message with `tag` from rank `from` (blocking).
    fn recv(&self, from: usize, tag: i32) -> Vec<f64>;
    /// Completes every send started so far.
    fn wait_sends(&self);
    /// Every rank's `local` values, concatenated in rank order, on every rank.
    fn all_gather(&self, local: &[f64]) -> Vec<f64>;
    /// A communicator over the same ranks (same rank numbers) with a message space of its
    /// own: no message sent on one is ever received on the other, whatever the tags.
    /// Collective: every rank calls it, in the same order with respect to other collectives.
    fn duplicate(&self) -> Self
    where
        Self: Sized;

    /// Σ of per-point values over all ranks, summed in rank order (the order of the points),
    /// so the result is bit-for-bit the same for every number of ranks.
    fn ordered_sum(&self, local: &[f64]) -> f64 {
        self.all_gather(local).iter().sum()
    }
}

/// A single process: nothing to exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct SerialComm;

impl Comm for SerialComm {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn send(&self, _to: usize, _tag: i32, _data: Vec<f64>) {
        unreachable!("a single rank has no neighbours to send to")
    }
    fn recv(&self, _from: usize, _tag: i32) -> Vec<f64> {
        unreachable!("a single rank has no neighbours to receive from")
    }
    fn wait_sends(&self) {}
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        local.to_vec()
    }
    /// One process exchanges no messages, so it needs no separate message space.
    fn duplicate(&self) -> Self {
        SerialComm
    }
}

/// MPI: `MPI_Isend` to neighbours (the buffer lives here until `MPI_Wait`), `MPI_Recv`, and
/// `MPI_Allgatherv` for ordered reductions, on a communicator of its own (`MPI_Comm_dup`),
/// so its tags never meet anyone else's messages. Drop it before MPI is finalized (before
/// the `mpi::environment::Universe`): dropping frees the communicator.
#[cfg(feature = "mpi")]
pub struct MpiComm {
    /// The duplicated communicator, owned (freed by `MPI_Comm_free` when dropped, after
    /// `Drop for MpiComm` has completed every pending send).
    world: SimpleCommunicator,
    pending: RefCell<Vec<(Vec<f64>, mpi::ffi::MPI_Request)>>,
}

#[cfg(feature = "mpi")]
impl MpiComm {
    /// A communicator over the ranks of `world`, with its own message space
    /// (`MPI_Comm_dup`; collective over `world`).
    pub fn new(world: &SimpleCommunicator) -> MpiComm {
        MpiComm {
            world: world.duplicate(),
            pending: RefCell::new(Vec::new()),
        }
    }

    /// The ranks of `world` with the same `color`, numbered by `key` (then by their rank in
    /// `world`), as a communicator with its own message space (`MPI_Comm_split`; collective
    /// over `world`). A data × layer grid splits the world by row and by column.
    pub fn split(world: &SimpleCommunicator, color: usize, key: usize) -> MpiComm {
        let color = mpi::topology::Color::with_value(color as i32);
        let part = world
            .split_by_color_with_key(color, key as i32)
            .expect("a rank with a color is in a part");
        MpiComm {
            world: part,
            pending: RefCell::new(Vec::new()),
        }
    }

    /// The underlying (duplicated) MPI communicator, for collectives the trait lacks.
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.world
    }
}

#[cfg(feature = "mpi")]
impl Comm for MpiComm {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn send(&self, to: usize, tag: i32, data: Vec<f64>) {
        let mut request: mpi::ffi::MPI_Request = unsafe { std::mem::zeroed() };
        // SAFETY: the buffer is moved into `pending` (its heap storage does not move) and is
        // dropped only after MPI_Wait completes the request in `wait_sends`.
        let rc = unsafe {
            mpi::ffi::MPI_Isend(
                data.as_ptr() as *const std::ffi::c_void,
                data.len() as i32,
                f64::equivalent_datatype().as_raw(),
                to as i32,
                tag,
                self.world.as_raw(),
                &mut request,
            )
        };
        assert_eq!(rc, 0, "MPI_Isend failed");
        self.pending.borrow_mut().push((data, request));
    }

    fn recv(&self, from: usize, tag: i32) -> Vec<f64> {
        let (data, _status) = self
            .world
            .process_at_rank(from as i32)
            .receive_vec_with_tag::<f64>(tag);
        data
    }

    fn wait_sends(&self) {
        for (buffer, mut request) in self.pending.borrow_mut().drain(..) {
            // SAFETY: `request` came from MPI_Isend on `buffer`, which is still alive.
            let rc = unsafe { mpi::ffi::MPI_Wait(&mut request, mpi::ffi::RSMPI_STATUS_IGNORE) };
            assert_eq!(rc, 0, "MPI_Wait failed");
            drop(buffer);
        }
    }

    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        let size = self.size();
        let mut counts = vec![0i32; size];
        self.world
            .all_gather_into(&(local.len() as i32), &mut counts[..]);
        let displs: Vec<i32> = counts
            .iter()
            .scan(0, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let total: i32 = counts.iter().sum();
        let mut out = vec![0.0; total as usize];
        {
            let mut partition = mpi::datatype::PartitionMut::new(&mut out[..], counts, displs);
            self.world.all_gather_varcount_into(local, &mut partition);
        }
        out
    }

    /// `MPI_Comm_dup` of this communicator.
    fn duplicate(&self) -> MpiComm {
        MpiComm::new(&self.world)
    }
}

#[cfg(feature = "mpi")]
impl Drop for MpiComm {
    /// Completes the pending sends; the communicator is freed afterwards (fields drop after
    /// this runs), so no send is ever left on a freed communicator.
    fn drop(&mut self) {
        self.wait_sends();
    }
}
