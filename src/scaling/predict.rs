//! Predictions of a calibrated [`Model`] at P ranks: pure functions of the model, the MGRIT
//! grid of the run and P (no measurement, no communication).
//!
//! With L levels (level l has N_l steps, stride m_l, N_l + 1 points), t_f, t_a the forward and
//! adjoint step times, t_msg the time of one state message and ω the overhead factor:
//!
//! ```text
//! pts_l(P)  = max over ranks q of the level-l points q owns          (block distribution)
//! T_raw(P)  = Σ_{l < L−1} (c^f_l t_f + c^a_l t_a) · pts_l(P)          (relaxation, restriction)
//!           + (k^f t_f + k^a t_a) · N_{L−1}                          (sequential coarsest solve)
//!           + ⌈N/P⌉ t_a                                              (gradient pass)
//!           + m(P) t_msg                                             (messages)
//! m(P)      = cycles · (4 + 2 nrelax) · (L − 1) + (k^f + k^a) · P + 3  for P > 1, 0 for P = 1
//! T(P)      = ω · T_raw(P)
//! ```
//!
//! and with one level (the serial sweep, pipelined over the ranks)
//! T_raw(P) = N (t_f + t_a) + m(P) t_msg, m(P) = 2P for P > 1 and 0 for P = 1.
//! The serial reference is T_s = ω · N (t_f + t_a); speedup S(P) = T_s / T(P), efficiency
//! E(P) = S(P) / P.

use super::Model;
use mgrit::{Distribution, Grid};

/// The model's prediction at one rank count.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prediction {
    /// P.
    pub ranks: usize,
    /// T(P), seconds per objective evaluation.
    pub seconds: f64,
    /// S(P) = T_s / T(P).
    pub speedup: f64,
    /// E(P) = S(P) / P (a fraction, 1 = ideal).
    pub efficiency: f64,
}

/// Step calls on the busiest rank per evaluation on one level, forward and adjoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCalls {
    pub forward: f64,
    pub adjoint: f64,
}

/// The largest number of points of a level (stride `stride`, `points` points) that one of
/// `p` ranks owns, for a block distribution of the `steps` + 1 fine points.
pub fn max_points(steps: usize, p: usize, stride: usize, points: usize) -> usize {
    let d = Distribution::new(steps, p, false);
    (0..p)
        .map(|q| d.level_range(q, stride, points).len())
        .max()
        .unwrap_or(0)
}

/// pts_l(P): the most level-`level` points one of `p` ranks owns.
pub fn busiest_points(grid: &Grid, p: usize, level: usize) -> usize {
    let lv = &grid.levels[level];
    max_points(grid.levels[0].steps, p, lv.stride, lv.points())
}

/// The most coarsest-level points one of `p` ranks steps to in one sequential sweep: its
/// points, less point 0 (the initial condition, never stepped to).
pub fn coarsest_share(grid: &Grid, p: usize) -> usize {
    let coarse = grid.levels.last().expect("a grid has a level");
    let d = Distribution::new(grid.levels[0].steps, p, false);
    (0..p)
        .map(|q| {
            let r = d.level_range(q, coarse.stride, coarse.points());
            r.len() - usize::from(r.start == 0 && !r.is_empty())
        })
        .max()
        .unwrap_or(0)
}

/// Step calls per evaluation on the busiest rank at `p` ranks, per level: c_l · pts_l(P) on
/// the levels below the coarsest, k · (the busiest rank's coarsest share) on the coarsest.
pub fn step_calls(model: &Model, grid: &Grid, p: usize) -> Vec<StepCalls> {
    let nl = grid.num_levels();
    (0..nl)
        .map(|l| {
            if l + 1 < nl {
                let pts = busiest_points(grid, p, l) as f64;
                StepCalls {
                    forward: model.c_forward[l] * pts,
                    adjoint: model.c_adjoint[l] * pts,
                }
            } else {
                let share = coarsest_share(grid, p) as f64;
                StepCalls {
                    forward: model.k_forward * share,
                    adjoint: model.k_adjoint * share,
                }
            }
        })
        .collect()
}

/// m(P): the state messages on the critical path of one evaluation. Per MGRIT cycle and level
/// below the coarsest: the first F-relaxation, a C- and an F-relaxation per CF-sweep, two
/// restriction exchanges and the final F-relaxation (4 + 2·nrelax); the coarsest solve: P
/// hops per sequential sweep (k^f + k^a sweeps); and 3 for the objective's exchanges outside
/// the solves. With one level: 2P (the forward and the adjoint pipeline). None on one rank.
pub fn messages(model: &Model, grid: &Grid, p: usize) -> f64 {
    if p <= 1 {
        return 0.0;
    }
    let nl = grid.num_levels();
    if nl == 1 {
        return 2.0 * p as f64;
    }
    let per_level_msgs = 4.0 + 2.0 * model.nrelax;
    let coarse_hops = (model.k_forward + model.k_adjoint) * p as f64;
    model.cycles * per_level_msgs * (nl - 1) as f64 + coarse_hops + 3.0
}

/// T_raw(P): the model's time per evaluation before the overhead factor.
pub fn raw_seconds(model: &Model, grid: &Grid, p: usize) -> f64 {
    let (t_f, t_a, t_msg) = (model.t_forward, model.t_adjoint, model.t_message);
    let n = grid.levels[0].steps;
    let nl = grid.num_levels();
    if nl == 1 {
        return n as f64 * (t_f + t_a) + messages(model, grid, p) * t_msg;
    }
    let mut t = 0.0;
    for l in 0..nl - 1 {
        t += (model.c_forward[l] * t_f + model.c_adjoint[l] * t_a)
            * busiest_points(grid, p, l) as f64;
    }
    t += (model.k_forward * t_f + model.k_adjoint * t_a) * grid.levels[nl - 1].steps as f64;
    t += (n as f64 / p as f64).ceil() * t_a;
    if p > 1 {
        t += messages(model, grid, p) * t_msg;
    }
    t
}

/// T(P) = ω · T_raw(P), seconds per evaluation.
pub fn seconds(model: &Model, grid: &Grid, p: usize) -> f64 {
    model.overhead * raw_seconds(model, grid, p)
}

/// T_s = ω · N (t_f + t_a): the serial reference (one rank, one level).
pub fn serial_seconds(model: &Model) -> f64 {
    model.overhead * model.layers as f64 * (model.t_forward + model.t_adjoint)
}

/// T(P), S(P) and E(P) at `p` ranks.
pub fn predict(model: &Model, grid: &Grid, p: usize) -> Prediction {
    let t = seconds(model, grid, p);
    let speedup = serial_seconds(model) / t;
    Prediction {
        ranks: p,
        seconds: t,
        speedup,
        efficiency: speedup / p as f64,
    }
}

/// The predictions for P = 1, 2, 4, … up to `max_ranks` and at most one rank per layer.
pub fn table(model: &Model, grid: &Grid, max_ranks: usize) -> Vec<Prediction> {
    let limit = max_ranks.min(grid.levels[0].steps);
    std::iter::successors(Some(1usize), |q| q.checked_mul(2))
        .take_while(|&q| q <= limit)
        .map(|q| predict(model, grid, q))
        .collect()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// N = 16 fine steps, 3 levels with cf 2: 17, 9 and 5 points (strides 1, 2, 4).
    pub(crate) fn grid3() -> Grid {
        let g = Grid::new(16, 3, &[2], 2);
        assert_eq!(
            g.levels.iter().map(|l| l.points()).collect::<Vec<_>>(),
            [17, 9, 5]
        );
        g
    }

    /// A synthetic calibration with values that make every predicted time exact in binary.
    pub(crate) fn model3() -> Model {
        Model {
            layers: 16,
            t_forward: 2.0,
            t_adjoint: 3.0,
            t_message: 0.5,
            overhead: 1.5,
            calibrated_ranks: 2,
            c_forward: vec![4.0, 3.0, 0.0],
            c_adjoint: vec![2.0, 1.0, 0.0],
            k_forward: 2.0,
            k_adjoint: 1.0,
            cycles: 4.0,
            nrelax: 1.0,
        }
    }

    #[test]
    fn busiest_points_match_a_hand_count_of_the_block_distribution() {
        let g = grid3();
        // P = 2: fine points 0..9 | 9..17. Level 1 (even fine indices): 0,2,4,6,8 | 10..16
        // (5 | 4); level 2 (multiples of 4): 0,4,8 | 12,16 (3 | 2).
        // P = 4: 0..5 | 5..9 | 9..13 | 13..17. Level 1: 0,2,4 | 6,8 | 10,12 | 14,16;
        // level 2: 0,4 | 8 | 12 | 16.
        for (p, want) in [(1, [17, 9, 5]), (2, [9, 5, 3]), (4, [5, 3, 2])] {
            let got: Vec<usize> = (0..3).map(|l| busiest_points(&g, p, l)).collect();
            assert_eq!(got, want, "P = {p}");
        }
        // The coarsest sweep's share: the busiest rank's points less point 0.
        assert_eq!([1, 2, 4].map(|p| coarsest_share(&g, p)), [4, 2, 1]);
        // More ranks than points on a level: some own none, the busiest one.
        assert_eq!(busiest_points(&g, 16, 2), 1);
        assert_eq!(coarsest_share(&g, 16), 1);
    }

    #[test]
    fn step_and_message_counts_are_exact() {
        let (g, m) = (grid3(), model3());
        let calls = |p| -> Vec<(f64, f64)> {
            step_calls(&m, &g, p)
                .iter()
                .map(|c| (c.forward, c.adjoint))
                .collect()
        };
        // c_l · pts_l(P) below the coarsest level, k · share on it.
        assert_eq!(calls(2), [(36.0, 18.0), (15.0, 5.0), (4.0, 2.0)]);
        assert_eq!(calls(4), [(20.0, 10.0), (9.0, 3.0), (2.0, 1.0)]);
        assert_eq!(calls(1), [(68.0, 34.0), (27.0, 9.0), (8.0, 4.0)]);
        // m(P) = cycles (4 + 2 nrelax)(L − 1) + (k^f + k^a) P + 3 = 48 + 3P + 3; none at P = 1.
        assert_eq!(messages(&m, &g, 1), 0.0);
        assert_eq!(messages(&m, &g, 2), 57.0);
        assert_eq!(messages(&m, &g, 4), 63.0);
        assert_eq!(messages(&m, &g, 16), 99.0);
        // One level: the forward and the adjoint pipeline, P hops each.
        let g1 = Grid::new(16, 1, &[2], 2);
        assert_eq!(messages(&m, &g1, 1), 0.0);
        assert_eq!(messages(&m, &g1, 4), 8.0);
    }

    #[test]
    fn predicted_times_equal_hand_computed_values() {
        let (g, m) = (grid3(), model3());
        // Per point (c^f t_f + c^a t_a): level 0: 4·2 + 2·3 = 14, level 1: 3·2 + 1·3 = 9;
        // coarsest (k^f t_f + k^a t_a) N_2 = (2·2 + 1·3)·4 = 28; gradient ⌈16/P⌉·3.
        // P = 1: 14·17 + 9·9 + 28 + 48          = 395
        // P = 2: 14·9 + 9·5 + 28 + 24 + 57·0.5  = 251.5
        // P = 4: 14·5 + 9·3 + 28 + 12 + 63·0.5  = 168.5
        for (p, raw) in [(1, 395.0), (2, 251.5), (4, 168.5)] {
            assert_eq!(raw_seconds(&m, &g, p), raw, "P = {p}");
            assert_eq!(seconds(&m, &g, p), 1.5 * raw, "P = {p}");
        }
        // T_s = ω N (t_f + t_a) = 1.5 · 16 · 5.
        assert_eq!(serial_seconds(&m), 120.0);
        let at2 = predict(&m, &g, 2);
        assert_eq!(at2.seconds, 377.25);
        assert_eq!(at2.speedup, 120.0 / 377.25);
        assert_eq!(at2.efficiency, 120.0 / 377.25 / 2.0);
        // One level: N (t_f + t_a) + 2P t_msg.
        let g1 = Grid::new(16, 1, &[2], 2);
        let m1 = Model {
            c_forward: vec![0.0],
            c_adjoint: vec![0.0],
            k_forward: 1.0,
            k_adjoint: 1.0,
            ..m
        };
        assert_eq!(raw_seconds(&m1, &g1, 1), 80.0);
        assert_eq!(raw_seconds(&m1, &g1, 4), 84.0);
        let one = predict(&m1, &g1, 1);
        assert_eq!(
            (one.seconds, one.speedup, one.efficiency),
            (120.0, 1.0, 1.0)
        );
        assert_eq!(
            step_calls(&m1, &g1, 4),
            [StepCalls {
                forward: 4.0,
                adjoint: 4.0
            }]
        );
    }

    #[test]
    fn the_table_doubles_p_up_to_the_limit_and_one_rank_per_layer() {
        let (g, m) = (grid3(), model3());
        let ranks = |max| {
            table(&m, &g, max)
                .iter()
                .map(|r| r.ranks)
                .collect::<Vec<_>>()
        };
        assert_eq!(ranks(1024), [1, 2, 4, 8, 16]);
        assert_eq!(ranks(5), [1, 2, 4]);
        assert_eq!(ranks(1), [1]);
        for row in table(&m, &g, 1024) {
            assert_eq!(row, predict(&m, &g, row.ranks));
        }
    }
}
