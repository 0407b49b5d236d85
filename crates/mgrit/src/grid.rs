//! The time-grid hierarchy: how many points each level has and which are C-points.
//!
//! Level 0 has the N fine steps (points 0 … N). Level l+1 keeps every cf_l-th point of level l
//! (the C-points); with m_l = cf_0 ⋯ cf_{l−1} fine steps per step, point I of level l sits at
//! fine index I·m_l. When cf_l does not divide N_l, the points after the last C-point are
//! F-points that F-relaxation reaches from that C-point; they have no coarse counterpart.

/// One level of the hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelShape {
    /// Steps N_l on this level (points 0 … N_l).
    pub steps: usize,
    /// Fine steps per step of this level, m_l.
    pub stride: usize,
    /// Coarsening factor to the next level (every `cf`-th point is a C-point); unused on the
    /// coarsest level.
    pub cf: usize,
}

impl LevelShape {
    /// Number of points, N_l + 1.
    pub fn points(&self) -> usize {
        self.steps + 1
    }

    /// Whether point i is a C-point (it also lives on the next level).
    pub fn is_cpoint(&self, i: usize) -> bool {
        i.is_multiple_of(self.cf)
    }

    /// The first C-point ≥ i.
    pub fn next_cpoint(&self, i: usize) -> usize {
        i.div_ceil(self.cf) * self.cf
    }

    /// The last C-point ≤ i.
    pub fn prev_cpoint(&self, i: usize) -> usize {
        i / self.cf * self.cf
    }
}

/// The hierarchy of levels for N fine steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grid {
    pub levels: Vec<LevelShape>,
}

impl Grid {
    /// Coarsens by `cfactor[l]` (the last entry repeats) while fewer than `max_levels` levels
    /// exist and the next level would keep at least `min_coarse` points and one step.
    pub fn new(steps: usize, max_levels: usize, cfactor: &[usize], min_coarse: usize) -> Grid {
        assert!(
            !cfactor.is_empty() && cfactor.iter().all(|&c| c >= 2),
            "cfactor ≥ 2"
        );
        let cf_at = |l: usize| cfactor[l.min(cfactor.len() - 1)];
        let mut levels = vec![LevelShape {
            steps,
            stride: 1,
            cf: cf_at(0),
        }];
        while levels.len() < max_levels.max(1) {
            let last = levels.last().unwrap();
            let next_steps = last.steps / last.cf;
            if next_steps < 1 || next_steps + 1 < min_coarse {
                break;
            }
            let l = levels.len();
            levels.push(LevelShape {
                steps: next_steps,
                stride: last.stride * last.cf,
                cf: cf_at(l),
            });
        }
        Grid { levels }
    }

    pub fn num_levels(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_follow_the_coarsening_factors() {
        let g = Grid::new(100, 5, &[2], 2);
        let steps: Vec<usize> = g.levels.iter().map(|l| l.steps).collect();
        assert_eq!(steps, vec![100, 50, 25, 12, 6]);
        let strides: Vec<usize> = g.levels.iter().map(|l| l.stride).collect();
        assert_eq!(strides, vec![1, 2, 4, 8, 16]);
        let g = Grid::new(257, 10, &[4, 3], 2);
        let steps: Vec<usize> = g.levels.iter().map(|l| l.steps).collect();
        assert_eq!(steps, vec![257, 64, 21, 7, 2]);
        assert_eq!(g.levels[4].stride, 4 * 27);
    }

    #[test]
    fn coarsening_stops_at_min_coarse_and_one_level_is_allowed() {
        assert_eq!(Grid::new(64, 10, &[2], 9).num_levels(), 4); // 64, 32, 16, 8 (9 points)
        assert_eq!(Grid::new(64, 1, &[2], 2).num_levels(), 1);
        assert_eq!(Grid::new(3, 5, &[4], 2).num_levels(), 1);
    }

    #[test]
    fn cpoints() {
        let l = LevelShape {
            steps: 10,
            stride: 1,
            cf: 3,
        };
        assert!(l.is_cpoint(0) && l.is_cpoint(9) && !l.is_cpoint(10));
        assert_eq!(l.next_cpoint(4), 6);
        assert_eq!(l.next_cpoint(6), 6);
        assert_eq!(l.prev_cpoint(8), 6);
    }
}
