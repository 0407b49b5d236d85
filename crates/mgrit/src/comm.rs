//! Communication between ranks: non-blocking sends of packed states to neighbours, receives
//! posted ahead of the work that does not need them (or blocking ones), and reductions whose
//! result does not depend on the number of ranks.
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
    /// Starts receiving the next message with `tag` from rank `from`, of at most `len`
    /// values, and returns at once; [`Comm::wait_recv`] completes it. Posting a receive
    /// before local work lets a large message travel while the work runs. The default
    /// receives only when waited on.
    fn post_recv(&self, from: usize, tag: i32, len: usize) -> PostedRecv {
        PostedRecv {
            from,
            tag,
            len,
            slot: None,
        }
    }
    /// Completes a receive started by [`Comm::post_recv`] (blocking) and returns its values.
    fn wait_recv(&self, posted: PostedRecv) -> Vec<f64> {
        self.recv(posted.from, posted.tag)
    }
    /// Completes every send started so far.
    fn wait_sends(&self);
    /// Receives the next message with `tag` from rank `from` into `into`, which it must fill
    /// exactly (blocking). The default receives into a new vector and copies it.
    fn recv_into(&self, from: usize, tag: i32, into: &mut [f64]) {
        let got = self.recv(from, tag);
        assert_eq!(got.len(), into.len(), "message of the expected length");
        into.copy_from_slice(&got);
    }
    /// Sends `data` to `partner` and receives the message with the same `tag` from it into
    /// `into`, which it must fill exactly (blocking; both ranks call it, and neither waits on
    /// the other to receive first). The default starts a send of a copy, which
    /// [`Comm::wait_sends`] completes.
    fn exchange(&self, partner: usize, tag: i32, data: &[f64], into: &mut [f64]) {
        self.send(partner, tag, data.to_vec());
        self.recv_into(partner, tag, into);
    }
    /// Every rank's `local` values, concatenated in rank order, on every rank.
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        let mut out = Vec::new();
        self.all_gather_into(local, &mut out);
        out
    }
    /// [`Comm::all_gather`] into `out` (its length set to the total, its storage reused).
    fn all_gather_into(&self, local: &[f64], out: &mut Vec<f64>);
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

/// A receive started by [`Comm::post_recv`]; complete it with [`Comm::wait_recv`] on the same
/// communicator.
#[must_use = "a posted receive must be completed with Comm::wait_recv"]
#[derive(Debug)]
pub struct PostedRecv {
    pub from: usize,
    pub tag: i32,
    /// The most values the message may carry.
    pub len: usize,
    /// The communicator's own handle of the request (None: receive when waited on).
    pub slot: Option<usize>,
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
    fn all_gather_into(&self, local: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(local);
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
    pending: RefCell<Vec<Transfer>>,
    /// Posted receives, by slot (None once completed).
    receives: RefCell<Vec<Option<Transfer>>>,
}

/// A message buffer and the MPI request that uses it (the buffer lives until the request
/// completes).
#[cfg(feature = "mpi")]
type Transfer = (Vec<f64>, mpi::ffi::MPI_Request);

#[cfg(feature = "mpi")]
impl MpiComm {
    /// A communicator over the ranks of `world`, with its own message space
    /// (`MPI_Comm_dup`; collective over `world`).
    pub fn new(world: &SimpleCommunicator) -> MpiComm {
        MpiComm {
            world: world.duplicate(),
            pending: RefCell::new(Vec::new()),
            receives: RefCell::new(Vec::new()),
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
            receives: RefCell::new(Vec::new()),
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

    /// `MPI_Recv` into `into`; a message of another length is refused.
    fn recv_into(&self, from: usize, tag: i32, into: &mut [f64]) {
        let status = self
            .world
            .process_at_rank(from as i32)
            .receive_into_with_tag(into, tag);
        let count = status.count(f64::equivalent_datatype()) as usize;
        assert_eq!(count, into.len(), "message of the expected length");
    }

    /// `MPI_Sendrecv`: no copy of `data`, no new buffer.
    fn exchange(&self, partner: usize, tag: i32, data: &[f64], into: &mut [f64]) {
        let other = self.world.process_at_rank(partner as i32);
        let status =
            mpi::point_to_point::send_receive_into_with_tags(data, &other, tag, into, &other, tag);
        let count = status.count(f64::equivalent_datatype()) as usize;
        assert_eq!(count, into.len(), "message of the expected length");
    }

    /// `MPI_Irecv` into a buffer of `len` values kept here until [`Comm::wait_recv`].
    fn post_recv(&self, from: usize, tag: i32, len: usize) -> PostedRecv {
        let mut buffer = vec![0.0f64; len];
        let mut request: mpi::ffi::MPI_Request = unsafe { std::mem::zeroed() };
        // SAFETY: the buffer's heap storage is kept in `receives` (it does not move when the
        // Vec is moved) until MPI_Wait completes the request in `wait_recv` or `drop`.
        let rc = unsafe {
            mpi::ffi::MPI_Irecv(
                buffer.as_mut_ptr() as *mut std::ffi::c_void,
                len as i32,
                f64::equivalent_datatype().as_raw(),
                from as i32,
                tag,
                self.world.as_raw(),
                &mut request,
            )
        };
        assert_eq!(rc, 0, "MPI_Irecv failed");
        let mut receives = self.receives.borrow_mut();
        let slot = match receives.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                receives.push(None);
                receives.len() - 1
            }
        };
        receives[slot] = Some((buffer, request));
        PostedRecv {
            from,
            tag,
            len,
            slot: Some(slot),
        }
    }

    /// `MPI_Wait` on the posted receive; the buffer is cut to the values that arrived.
    fn wait_recv(&self, posted: PostedRecv) -> Vec<f64> {
        let slot = posted.slot.expect("posted by this communicator");
        let (mut buffer, mut request) = self.receives.borrow_mut()[slot]
            .take()
            .expect("a posted receive is completed once");
        let mut status: mpi::ffi::MPI_Status = unsafe { std::mem::zeroed() };
        let mut count: i32 = 0;
        // SAFETY: `request` came from MPI_Irecv on `buffer`, which is still alive; the status
        // is read for the received count.
        unsafe {
            let rc = mpi::ffi::MPI_Wait(&mut request, &mut status);
            assert_eq!(rc, 0, "MPI_Wait failed");
            let rc =
                mpi::ffi::MPI_Get_count(&status, f64::equivalent_datatype().as_raw(), &mut count);
            assert_eq!(rc, 0, "MPI_Get_count failed");
        }
        buffer.truncate(count.max(0) as usize);
        buffer
    }

    fn wait_sends(&self) {
        for (buffer, mut request) in self.pending.borrow_mut().drain(..) {
            // SAFETY: `request` came from MPI_Isend on `buffer`, which is still alive.
            let rc = unsafe { mpi::ffi::MPI_Wait(&mut request, mpi::ffi::RSMPI_STATUS_IGNORE) };
            assert_eq!(rc, 0, "MPI_Wait failed");
            drop(buffer);
        }
    }

    fn all_gather_into(&self, local: &[f64], out: &mut Vec<f64>) {
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
        // Every value is overwritten: only a longer `out` needs new (zeroed) storage.
        out.resize(total as usize, 0.0);
        let mut partition = mpi::datatype::PartitionMut::new(&mut out[..], counts, displs);
        self.world.all_gather_varcount_into(local, &mut partition);
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
        // A receive posted but never waited on (a panic between post and wait) is cancelled
        // and completed before its buffer is freed.
        for (buffer, mut request) in self.receives.get_mut().drain(..).flatten() {
            // SAFETY: the request came from MPI_Irecv on `buffer`, still alive here.
            unsafe {
                mpi::ffi::MPI_Cancel(&mut request);
                mpi::ffi::MPI_Wait(&mut request, mpi::ffi::RSMPI_STATUS_IGNORE);
            }
            drop(buffer);
        }
    }
}
