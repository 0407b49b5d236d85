//! Block distribution of the time points over ranks.
//!
//! The N + 1 fine points (forward time indices 0 … N) are split into contiguous blocks, the
//! remainder going to the first ranks. A point of a coarse level lives on the rank that owns
//! its fine index. A reverse-time solve (adjoints) numbers its points n ↦ N − n, so that every
//! time point stays on the rank that owns it in the forward solve; in solver order the ranks
//! then come in reverse, which the solver handles through *virtual ranks* q = P − 1 − r.

use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Distribution {
    /// Fine steps N (points 0 … N).
    pub steps: usize,
    /// Number of ranks P.
    pub size: usize,
    /// Solver index i is time index N − i, ranks reversed.
    pub reverse: bool,
}

impl Distribution {
    pub fn new(steps: usize, size: usize, reverse: bool) -> Self {
        assert!(size >= 1);
        Distribution {
            steps,
            size,
            reverse,
        }
    }

    /// The forward time indices owned by rank r: contiguous, sizes differing by at most one,
    /// the larger blocks first.
    pub fn time_block(&self, rank: usize) -> Range<usize> {
        let n = self.steps + 1;
        let (q, rem) = (n / self.size, n % self.size);
        let start = rank * q + rank.min(rem);
        start..start + q + usize::from(rank < rem)
    }

    /// The rank that owns forward time index n.
    pub fn time_owner(&self, n: usize) -> usize {
        let total = self.steps + 1;
        let (q, rem) = (total / self.size, total % self.size);
        let big = rem * (q + 1);
        if n < big {
            n / (q + 1)
        } else {
            rem + (n - big) / q.max(1)
        }
    }

    /// Virtual rank of a real rank (the order of ranks along the solver's points).
    pub fn virtual_rank(&self, rank: usize) -> usize {
        if self.reverse {
            self.size - 1 - rank
        } else {
            rank
        }
    }

    /// Real rank of a virtual rank.
    pub fn real_rank(&self, vrank: usize) -> usize {
        self.virtual_rank(vrank) // an involution
    }

    /// Time index of solver fine index i.
    pub fn time_index(&self, i: usize) -> usize {
        if self.reverse {
            self.steps - i
        } else {
            i
        }
    }

    /// Solver fine indices owned by virtual rank q.
    pub fn fine_range(&self, vrank: usize) -> Range<usize> {
        let b = self.time_block(self.real_rank(vrank));
        if self.reverse {
            (self.steps + 1 - b.end)..(self.steps + 1 - b.start)
        } else {
            b
        }
    }

    /// Points I of a level with `stride` fine steps per step and `points` points that virtual
    /// rank q owns: those with I·stride in q's fine range.
    pub fn level_range(&self, vrank: usize, stride: usize, points: usize) -> Range<usize> {
        let f = self.fine_range(vrank);
        let lo = f.start.div_ceil(stride).min(points);
        let hi = f.end.div_ceil(stride).min(points);
        lo..hi.max(lo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_tile_the_points_with_the_remainder_first() {
        let d = Distribution::new(10, 3, false); // 11 points
        assert_eq!(d.time_block(0), 0..4);
        assert_eq!(d.time_block(1), 4..8);
        assert_eq!(d.time_block(2), 8..11);
        for n in 0..11 {
            assert!(d.time_block(d.time_owner(n)).contains(&n));
        }
        let d = Distribution::new(3, 7, false); // more ranks than points
        let sizes: Vec<usize> = (0..7).map(|r| d.time_block(r).len()).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1, 0, 0, 0]);
        for n in 0..4 {
            assert_eq!(d.time_owner(n), n);
        }
    }

    #[test]
    fn reverse_solves_keep_every_time_point_on_its_forward_rank() {
        for (steps, size) in [(10, 3), (64, 4), (100, 7), (5, 7)] {
            let f = Distribution::new(steps, size, false);
            let r = Distribution::new(steps, size, true);
            let mut covered = vec![0; steps + 1];
            for q in 0..size {
                for i in r.fine_range(q) {
                    covered[i] += 1;
                    let n = r.time_index(i);
                    assert_eq!(
                        f.time_owner(n),
                        r.real_rank(q),
                        "steps {steps} size {size} i {i}"
                    );
                }
            }
            assert!(covered.iter().all(|&c| c == 1));
            // Virtual ranks are in solver order.
            for q in 1..size {
                assert!(
                    r.fine_range(q - 1).end <= r.fine_range(q).start || r.fine_range(q).is_empty()
                );
            }
        }
    }

    #[test]
    fn coarse_points_live_with_their_fine_index() {
        let d = Distribution::new(100, 3, false);
        let points = 100 / 4 + 1;
        let mut all = Vec::new();
        for q in 0..3 {
            for i in d.level_range(q, 4, points) {
                assert!(d.fine_range(q).contains(&(i * 4)));
                all.push(i);
            }
        }
        assert_eq!(all, (0..points).collect::<Vec<_>>());
    }
}
