//! Communication between ranks: non-blocking sends of packed states to neighbours, blocking
//! receives, and reductions whose result does not depend on the number of ranks.

use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
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
}

/// MPI: `MPI_Isend` to neighbours (the buffer lives here until `MPI_Wait`), `MPI_Recv`, and
/// `MPI_Allgatherv` for ordered reductions.
pub struct MpiComm<'a> {
    world: &'a SimpleCommunicator,
    pending: RefCell<Vec<(Vec<f64>, mpi::ffi::MPI_Request)>>,
}

impl<'a> MpiComm<'a> {
    pub fn new(world: &'a SimpleCommunicator) -> Self {
        MpiComm {
            world,
            pending: RefCell::new(Vec::new()),
        }
    }
}

impl Comm for MpiComm<'_> {
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
}

impl Drop for MpiComm<'_> {
    fn drop(&mut self) {
        self.wait_sends();
    }
}
