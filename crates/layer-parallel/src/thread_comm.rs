//! Test support: a [`Comm`] between the threads of one process, [`run_ranks`], which runs a
//! closure on each of n such ranks and returns their results in rank order, and
//! [`spread`], values whose sums depend on the order of the additions.

use mgrit::Comm;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};

/// A message and its depth: the most messages on a chain of dependencies ending in it.
type Message = (Vec<f64>, usize);

/// Mailboxes keyed by (message space, from, to, tag), shared by the threads of a test.
pub type Boxes = Arc<(
    Mutex<HashMap<(usize, usize, usize, i32), VecDeque<Message>>>,
    Condvar,
)>;

/// The tag of an all-gather's messages (a message space's own collective).
const GATHER_TAG: i32 = -1;

/// A communicator between threads: sends are queued at once, receives wait for them.
/// `depth` is the latency, in messages, of what this rank knows: a message sent carries
/// depth + 1, and a receive raises depth to the message's. Each [`Comm::duplicate`] gets a
/// message space of its own (the k-th duplicate of space s is the same space on every rank).
pub struct ThreadComm {
    pub rank: usize,
    pub size: usize,
    pub boxes: Boxes,
    /// This communicator's message space and the duplicates made of it so far.
    space: usize,
    duplicates: Cell<usize>,
    pub depth: Cell<usize>,
    /// Values this rank has sent (point to point, not in all-gathers).
    pub sent: Cell<usize>,
}

impl ThreadComm {
    /// Rank `rank` of `size` over the mailboxes `boxes`.
    pub fn new(rank: usize, size: usize, boxes: Boxes) -> Self {
        ThreadComm {
            rank,
            size,
            boxes,
            space: 0,
            duplicates: Cell::new(0),
            depth: Cell::new(0),
            sent: Cell::new(0),
        }
    }

    fn put(&self, to: usize, tag: i32, data: Vec<f64>) {
        let (m, cv) = &*self.boxes;
        m.lock()
            .unwrap()
            .entry((self.space, self.rank, to, tag))
            .or_default()
            .push_back((data, self.depth.get() + 1));
        cv.notify_all();
    }

    fn take(&self, from: usize, tag: i32) -> Vec<f64> {
        let (m, cv) = &*self.boxes;
        let mut g = m.lock().unwrap();
        loop {
            if let Some((v, depth)) = g
                .get_mut(&(self.space, from, self.rank, tag))
                .and_then(|q| q.pop_front())
            {
                self.depth.set(self.depth.get().max(depth));
                return v;
            }
            g = cv.wait(g).unwrap();
        }
    }
}

impl Comm for ThreadComm {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn send(&self, to: usize, tag: i32, data: Vec<f64>) {
        self.sent.set(self.sent.get() + data.len());
        self.put(to, tag, data);
    }
    fn recv(&self, from: usize, tag: i32) -> Vec<f64> {
        self.take(from, tag)
    }
    fn wait_sends(&self) {}
    fn all_gather_into(&self, local: &[f64], out: &mut Vec<f64>) {
        for to in (0..self.size).filter(|&to| to != self.rank) {
            self.put(to, GATHER_TAG, local.to_vec());
        }
        out.clear();
        for from in 0..self.size {
            if from == self.rank {
                out.extend_from_slice(local);
            } else {
                out.extend(self.take(from, GATHER_TAG));
            }
        }
    }
    fn duplicate(&self) -> Self {
        let k = self.duplicates.get() + 1;
        self.duplicates.set(k);
        ThreadComm {
            space: self.space * 1000 + k,
            duplicates: Cell::new(0),
            depth: Cell::new(0),
            sent: Cell::new(0),
            boxes: self.boxes.clone(),
            ..*self
        }
    }
}

/// Runs `f` on ranks 0..n of one set of mailboxes, each in its own thread, and returns the
/// results in rank order with the mailboxes (to check that nothing was left unreceived).
pub fn run_ranks<T: Send + 'static>(
    n: usize,
    f: impl Fn(ThreadComm) -> T + Send + Sync + 'static,
) -> (Vec<T>, Boxes) {
    let boxes: Boxes = Arc::default();
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|r| {
            let (boxes, f) = (boxes.clone(), f.clone());
            std::thread::spawn(move || f(ThreadComm::new(r, n, boxes)))
        })
        .collect();
    let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (out, boxes)
}

/// Vector `i` of `n` values whose magnitudes spread over many binades, so that a sum of such
/// vectors depends on the grouping of its additions.
pub fn spread(i: usize, n: usize) -> Vec<f64> {
    (0..n)
        .map(|j| {
            let x = ((i * 7 + j * 13) % 11) as f64 - 5.3;
            x * 10f64.powi(((i * 5 + j) % 9) as i32 - 4) / 3.0
        })
        .collect()
}

/// Messages queued and never received.
pub fn unreceived(boxes: &Boxes) -> usize {
    boxes.0.lock().unwrap().values().map(VecDeque::len).sum()
}
