//! Who owns what: the split of the N + 1 time points over the ranks, and the layout of each
//! rank's part of a parameter vector.

use mgrit::Distribution;
use odenet::Network;
use std::ops::Range;

/// Which time points, layers and parameter blocks this rank owns.
///
/// The time points 0 … N are split into contiguous blocks (mgrit's [`Distribution`]). Hidden
/// layer n (the control θ_n, and the forward state U_n it is linearized at) belongs to the
/// rank that owns time point n; the opening layer belongs to rank 0 and the classifier to the
/// last rank.
#[derive(Clone, Debug)]
pub struct Partition {
    pub rank: usize,
    pub size: usize,
    /// Hidden layers N.
    pub layers: usize,
    pub dist: Distribution,
    /// Owned time points [lo, hi).
    pub points: Range<usize>,
    /// Owned hidden layers [lo, min(hi, N)).
    pub owned_layers: Range<usize>,
}

/// More ranks than hidden layers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooManyRanks {
    pub ranks: usize,
    pub layers: usize,
}

impl std::fmt::Display for TooManyRanks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ranks for {} hidden layers: layer-parallel training needs at most one rank per layer (network.layers ≥ ranks)",
            self.ranks, self.layers
        )
    }
}

impl std::error::Error for TooManyRanks {}

impl Partition {
    /// The partition of N = `layers` hidden layers over `size` ranks, seen from `rank`.
    pub fn new(layers: usize, rank: usize, size: usize) -> Result<Self, TooManyRanks> {
        if size > layers {
            return Err(TooManyRanks {
                ranks: size,
                layers,
            });
        }
        let dist = Distribution::new(layers, size, false);
        let points = dist.time_block(rank);
        let owned_layers = points.start..points.end.min(layers);
        Ok(Partition {
            rank,
            size,
            layers,
            dist,
            points,
            owned_layers,
        })
    }

    pub fn is_first(&self) -> bool {
        self.rank == 0
    }

    pub fn is_last(&self) -> bool {
        self.rank + 1 == self.size
    }

    /// The rank that owns hidden layer n.
    pub fn layer_owner(&self, n: usize) -> usize {
        self.dist.time_owner(n)
    }
}

/// Layout of this rank's part of a parameter vector: \[opening (rank 0)\] \[hidden\] \[classifier
/// (last rank)] [time scale], where hidden is the owned layers' controls (per-layer) or every
/// B-spline coefficient (spline controls, replicated on every rank), and the time scale s (when
/// learnable) is replicated on every rank. The unique parts, concatenated in rank order, are
/// the global vector (opening, hidden sets in order, classifier, time scale): replicated
/// coefficients count as rank 0's, the replicated time scale as the last rank's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLayout {
    pub opening: Range<usize>,
    pub layers: Range<usize>,
    pub classifier: Range<usize>,
    /// The time scale s (one value on every rank, or empty when it is fixed).
    pub scale: Range<usize>,
    pub layer_len: usize,
    pub first_layer: usize,
    pub len: usize,
    /// The hidden block holds all M spline coefficients, the same on every rank.
    pub replicated: bool,
    /// This rank is rank 0 (which alone counts replicated coefficients in dot products).
    pub first_rank: bool,
    /// This rank is the last (which alone counts the replicated time scale).
    pub last_rank: bool,
}

impl LocalLayout {
    /// Per-layer controls: the owned layers.
    pub fn new(net: &Network, part: &Partition) -> Self {
        Self::with_hidden(net, part, part.owned_layers.len(), false)
    }

    /// Spline controls: all `count` coefficient sets on every rank.
    pub fn spline(net: &Network, part: &Partition, count: usize) -> Self {
        Self::with_hidden(net, part, count, true)
    }

    fn with_hidden(net: &Network, part: &Partition, sets: usize, replicated: bool) -> Self {
        let g = &net.layout;
        let open_len = if part.is_first() {
            g.opening().len()
        } else {
            0
        };
        let layers = open_len..open_len + sets * g.layer_len;
        let class_len = if part.is_last() {
            g.classifier().len()
        } else {
            0
        };
        let classifier = layers.end..layers.end + class_len;
        let scale = classifier.end..classifier.end + g.scale.len();
        LocalLayout {
            opening: 0..open_len,
            len: scale.end,
            layers,
            classifier,
            scale,
            layer_len: g.layer_len,
            first_layer: if replicated {
                0
            } else {
                part.owned_layers.start
            },
            replicated,
            first_rank: part.is_first(),
            last_rank: part.is_last(),
        }
    }

    /// Whether this rank counts the hidden block and the time scale as its own.
    fn owns(&self) -> (bool, bool) {
        (!self.replicated || self.first_rank, self.last_rank)
    }

    /// The block of owned layer n (or coefficient set n).
    pub fn layer(&self, n: usize) -> Range<usize> {
        let s = self.layers.start + (n - self.first_layer) * self.layer_len;
        s..s + self.layer_len
    }

    /// The blocks in layer order whose partial dot products are summed in order; replicated
    /// coefficients count on rank 0 only, the replicated time scale on the last rank only.
    pub fn segments(&self) -> Vec<Range<usize>> {
        let (hidden, scale) = self.owns();
        let mut s = Vec::new();
        if !self.opening.is_empty() {
            s.push(self.opening.clone());
        }
        if hidden {
            let mut start = self.layers.start;
            while start < self.layers.end {
                s.push(start..start + self.layer_len);
                start += self.layer_len;
            }
        }
        if !self.classifier.is_empty() {
            s.push(self.classifier.clone());
        }
        if scale && !self.scale.is_empty() {
            s.push(self.scale.clone());
        }
        s
    }

    /// This rank's part of a global vector (global layout: opening, hidden sets, classifier).
    pub fn extract(&self, net: &Network, part: &Partition, global: &[f64]) -> Vec<f64> {
        let g = &net.layout;
        let open = g.opening().len();
        let class = g.classifier().len();
        let scale = g.scale.len();
        let class_end = global.len() - scale;
        let mut local = Vec::with_capacity(self.len);
        if part.is_first() {
            local.extend_from_slice(&global[..open]);
        }
        if self.replicated {
            local.extend_from_slice(&global[open..class_end - class]);
        } else {
            for n in part.owned_layers.clone() {
                local.extend_from_slice(&global[g.layer(n)]);
            }
        }
        if part.is_last() {
            local.extend_from_slice(&global[class_end - class..class_end]);
        }
        local.extend_from_slice(&global[class_end..]);
        local
    }

    /// The part of a local vector that no other rank holds (what a gather concatenates).
    pub fn unique<'a>(&self, local: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
        let (hidden, scale) = self.owns();
        if hidden && (scale || self.scale.is_empty()) {
            return std::borrow::Cow::Borrowed(local);
        }
        let mut v = local[self.opening.clone()].to_vec();
        if hidden {
            v.extend_from_slice(&local[self.layers.clone()]);
        }
        v.extend_from_slice(&local[self.classifier.clone()]);
        if scale {
            v.extend_from_slice(&local[self.scale.clone()]);
        }
        std::borrow::Cow::Owned(v)
    }
}

/// The global parameter layout of `net` with `sets` hidden parameter sets (its layers, or
/// spline coefficient sets).
pub fn spline_layout(net: &Network, sets: usize) -> odenet::Layout {
    odenet::Layout::new(odenet::Shape {
        layers: sets,
        ..net.layout.shape
    })
}
