//! Ghost controls: the hidden-layer controls a rank uses but does not own.
//!
//! The forward step into time point n+1 is computed by the owner of n+1 and needs θ_n. For a
//! rank's first point, and for coarse steps (whose control is the fine layer at the coarse
//! step's start), that layer can live on the rank before. The time-derivative regularization
//! of a rank's first and last layer needs their outer neighbours. The adjoint runs in reverse
//! time with the ranks reversed, so each of its steps (to time a, with θ_a) is local.

use crate::partition::{LocalLayout, Partition};
use mgrit::{Comm, Grid};
use std::collections::{BTreeMap, BTreeSet};

const GHOST_TAG: i32 = 7001;

/// What this rank receives and sends, and the ghost values of the current evaluation.
#[derive(Clone, Debug, Default)]
pub struct Ghosts {
    /// Layers this rank needs from others, in increasing order.
    needs: Vec<usize>,
    /// What this rank sends: (layer, to rank).
    sends: Vec<(usize, usize)>,
    values: BTreeMap<usize, Vec<f64>>,
}

impl Ghosts {
    /// The ghost plan of `part` for the forward level hierarchy `grid`.
    pub fn new(grid: &Grid, part: &Partition) -> Self {
        let needs = needs(grid, part);
        let mut sends = Vec::new();
        for q in (0..part.size).filter(|&q| q != part.rank) {
            let other = Partition::new(part.layers, q, part.size).expect("size ≤ N");
            for l in self::needs(grid, &other) {
                if part.layer_owner(l) == part.rank {
                    sends.push((l, q));
                }
            }
        }
        Ghosts {
            needs,
            sends,
            values: BTreeMap::new(),
        }
    }

    /// The layers this rank needs but does not own.
    pub fn needs(&self) -> &[usize] {
        &self.needs
    }

    /// Sends the owned controls (blocks of `theta`, laid out by `layout`) other ranks need
    /// and receives this rank's ghosts: one message per pair of ranks, layers in increasing
    /// order.
    pub fn exchange<C: Comm>(
        &mut self,
        comm: &C,
        part: &Partition,
        layout: &LocalLayout,
        theta: &[f64],
    ) {
        let mut by_dest: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for &(l, q) in &self.sends {
            by_dest
                .entry(q)
                .or_default()
                .extend_from_slice(&theta[layout.layer(l)]);
        }
        for (q, buf) in by_dest {
            comm.send(q, GHOST_TAG, buf);
        }
        let mut by_src: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &l in &self.needs {
            by_src.entry(part.layer_owner(l)).or_default().push(l);
        }
        self.values.clear();
        let len = layout.layer_len;
        for (src, layers) in by_src {
            let buf = comm.recv(src, GHOST_TAG);
            assert_eq!(buf.len(), layers.len() * len, "ghost message size");
            for (k, l) in layers.into_iter().enumerate() {
                self.values.insert(l, buf[k * len..(k + 1) * len].to_vec());
            }
        }
        comm.wait_sends();
    }

    /// Fills every needed ghost locally: `value(l, out)` writes θ_l (spline controls, whose
    /// coefficients every rank holds).
    pub fn fill(&mut self, len: usize, mut value: impl FnMut(usize, &mut [f64])) {
        self.values.clear();
        for &l in &self.needs {
            let mut v = vec![0.0; len];
            value(l, &mut v);
            self.values.insert(l, v);
        }
    }
}

/// The hidden-layer controls θ_n as a step sees them: owned ones from this rank's θ, others
/// from the ghost copies of this evaluation.
#[derive(Clone, Copy)]
pub struct LayerControls<'a> {
    pub theta: &'a [f64],
    pub layout: &'a LocalLayout,
    pub part: &'a Partition,
    pub ghosts: &'a Ghosts,
}

impl<'a> LayerControls<'a> {
    /// θ_n = (K_n, b_n).
    pub fn layer(&self, n: usize) -> &'a [f64] {
        if self.part.owned_layers.contains(&n) {
            &self.theta[self.layout.layer(n)]
        } else {
            self.ghosts
                .values
                .get(&n)
                .unwrap_or_else(|| panic!("ghost control of layer {n} was not exchanged"))
        }
    }

    /// The time scale s (replicated on every rank; 1 when it is not learnable). Every step of
    /// size Δt on the time grid of [0, T] is taken with s·Δt.
    pub fn time_scale(&self) -> f64 {
        let r = &self.layout.scale;
        if r.is_empty() {
            1.0
        } else {
            self.theta[r.start]
        }
    }
}

/// The hidden layers a rank needs but does not own: the control of the step into its first
/// point on every forward level (the fine layer at that step's start), and the neighbours of
/// its first and last layer for the time-derivative regularization.
fn needs(grid: &Grid, part: &Partition) -> Vec<usize> {
    let n = part.layers;
    let (lo, hi) = (part.points.start, part.points.end);
    let mut needs = BTreeSet::new();
    for shape in &grid.levels {
        let r = part
            .dist
            .level_range(part.rank, shape.stride, shape.points());
        if !r.is_empty() && r.start >= 1 {
            let l = (r.start - 1) * shape.stride;
            if l < lo {
                needs.insert(l);
            }
        }
    }
    if lo >= 1 {
        needs.insert(lo - 1);
    }
    if hi < n && !part.owned_layers.is_empty() {
        needs.insert(hi);
    }
    needs
        .into_iter()
        .filter(|&l| !part.owned_layers.contains(&l))
        .collect()
}
