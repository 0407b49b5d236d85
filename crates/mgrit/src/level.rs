//! One rank's part of one level, and the context every phase works in.

use crate::comm::Comm;
use crate::distribution::Distribution;
use crate::grid::LevelShape;
use crate::{App, Options, Stats, StepInfo};
use std::ops::Range;

/// This rank's points of a level: values u and right-hand side g (coarse levels only; level 0
/// has g_i = 0 for i ≥ 1).
pub(crate) struct Level<S> {
    pub shape: LevelShape,
    /// Owned points of this level.
    pub range: Range<usize>,
    /// Real ranks of the nearest neighbours (in solver order) that own points on this level.
    pub left: Option<usize>,
    pub right: Option<usize>,
    pub u: Vec<S>,
    pub g: Option<Vec<S>>,
    /// Scratch states, kept between iterations so that cycles do not allocate.
    pub scratch: Vec<S>,
}

impl<S> Level<S> {
    pub fn new(shape: LevelShape, dist: &Distribution, vrank: usize) -> Self {
        let points = shape.points();
        let range_of = |q: usize| dist.level_range(q, shape.stride, points);
        let range = range_of(vrank);
        let left = (0..vrank)
            .rev()
            .find(|&q| !range_of(q).is_empty())
            .map(|q| dist.real_rank(q));
        let right = (vrank + 1..dist.size)
            .find(|&q| !range_of(q).is_empty())
            .map(|q| dist.real_rank(q));
        Level {
            shape,
            range,
            left,
            right,
            u: Vec::new(),
            g: None,
            scratch: Vec::new(),
        }
    }

    /// Local position of point i.
    #[inline]
    pub fn at(&self, i: usize) -> usize {
        i - self.range.start
    }
}

/// Message tags: one per level and phase, so a message can never be taken for another.
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    FRelax = 1,
    CRelax = 2,
    RestrictU = 3,
    RestrictV = 4,
    Coarse = 5,
}

pub(crate) fn tag(level: usize, phase: Phase) -> i32 {
    (level * 8 + phase as usize) as i32
}

/// Everything a phase needs besides the level data.
pub(crate) struct Ctx<'a, A: App, C: Comm> {
    pub app: &'a mut A,
    pub comm: &'a C,
    pub dist: &'a Distribution,
    pub opts: &'a Options,
    pub stats: &'a mut Stats,
    pub t0: f64,
    pub dt: f64,
}

impl<A: App, C: Comm> Ctx<'_, A, C> {
    fn info(&self, level: usize, shape: &LevelShape, i: usize) -> StepInfo {
        let from = self.dist.time_index((i - 1) * shape.stride);
        let to = self.dist.time_index(i * shape.stride);
        StepInfo {
            level,
            from,
            to,
            t_from: self.t0 + from as f64 * self.dt,
            t_to: self.t0 + to as f64 * self.dt,
            fine_steps: shape.stride,
            dt: shape.stride as f64 * self.dt,
        }
    }

    /// dst ← Φ^l_i(src).
    pub fn step_from(
        &mut self,
        level: usize,
        shape: &LevelShape,
        i: usize,
        src: &A::State,
        dst: &mut A::State,
    ) {
        let info = self.info(level, shape, i);
        self.stats.steps_per_level[level] += 1;
        self.app.step_from(src, dst, &info);
    }

    pub fn send_state(&self, to: usize, tag: i32, u: &A::State) {
        let mut buf = Vec::new();
        self.app.pack(u, &mut buf);
        self.comm.send(to, tag, buf);
    }

    pub fn recv_state(&self, from: usize, tag: i32) -> A::State {
        let buf = self.comm.recv(from, tag);
        self.app.unpack(&buf)
    }

    /// Posts the receive of a state shaped like `like` from `from` (see
    /// [`Comm::post_recv`]); [`Ctx::wait_state`] completes it.
    pub fn post_state(&self, from: usize, tag: i32, like: &A::State) -> crate::PostedRecv {
        self.comm.post_recv(from, tag, self.app.packed_len(like))
    }

    /// Completes a receive posted by [`Ctx::post_state`].
    pub fn wait_state(&self, posted: crate::PostedRecv) -> A::State {
        let buf = self.comm.wait_recv(posted);
        self.app.unpack(&buf)
    }

    /// u_i ← Φ^l_i(u_{i−1}) + g_i for an owned point i, with u_{i−1} from `prev` when the
    /// previous point is not owned (it came from the left neighbour).
    pub fn propagate(
        &mut self,
        level: usize,
        lvl: &mut Level<A::State>,
        i: usize,
        prev: Option<&A::State>,
    ) {
        let k = lvl.at(i);
        let (before, after) = lvl.u.split_at_mut(k);
        let dst = &mut after[0];
        let src = match prev {
            Some(p) => p,
            None => &before[k - 1],
        };
        let shape = lvl.shape.clone();
        self.step_from(level, &shape, i, src, dst);
        if let Some(g) = &lvl.g {
            self.app.sum(1.0, &g[k], 1.0, dst);
        }
    }
}
