//! The predictions against hand-computed values on synthetic models (model3, grid3), which
//! the calibration tests use too.

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

/// A synthetic calibration with values that make every predicted time exact in binary:
/// step times proportional to the batch (t_f = 2, t_a = 3 at B = 8), on-node messages
/// of 0.5 + 8n/16 (α = 0.5, β = 16 bytes per second), no overheads (ω = ω_v = 1), and
/// 4 s per iteration of the optimizer's own work on the 2 ranks of the calibration, 3 of
/// them in the vector work the rows share.
pub(crate) fn model3() -> Model {
    Model {
        layers: 16,
        width: 2,
        batch: 8,
        val_batch: 4,
        params_per_layer: 6,
        edge_params: 4,
        calibrated_ranks: 2,
        batches: vec![1, 2, 4, 8],
        t_forward: vec![0.25, 0.5, 1.0, 2.0],
        t_adjoint: vec![0.375, 0.75, 1.5, 3.0],
        node_latency: 0.5,
        node_bandwidth: 16.0,
        message_measured: true,
        overhead: 1.5,
        val_overhead: 1.0,
        c_forward: vec![4.0, 3.0, 0.0],
        c_adjoint: vec![2.0, 1.0, 0.0],
        k_forward: 2.0,
        k_adjoint: 1.0,
        cycles: 4.0,
        nrelax: 1.0,
        evaluations_per_iteration: 1.0,
        lbfgs_memory: 0,
        serial_evaluation: 80.0,
        serial_validation: 16.0,
        optimizer: 4.0,
        optimizer_shared: 3.0,
        co_run: 1.0,
        co_run_copies: 1,
        sweep_batches: vec![],
        sweep_seconds: vec![],
    }
}

/// One node of 64 ranks on 64 cores, an interconnect of α = 1, β = 8 bytes per second.
pub(crate) fn node() -> Machine {
    Machine {
        latency: 1.0,
        bandwidth: 8.0,
        ranks_per_node: 64,
        cores: 64,
    }
}

fn lonly(l: usize) -> Split {
    Split { data: 1, layer: l }
}

#[test]
fn busiest_points_and_owners_match_a_hand_count_of_the_block_distribution() {
    let g = grid3();
    // P = 2: fine points 0..9 | 9..17. Level 1 (even fine indices): 0,2,4,6,8 | 10..16
    // (5 | 4); level 2 (multiples of 4): 0,4,8 | 12,16 (3 | 2).
    // P = 4: 0..5 | 5..9 | 9..13 | 13..17. Level 1: 0,2,4 | 6,8 | 10,12 | 14,16;
    // level 2: 0,4 | 8 | 12 | 16.
    for (p, want) in [(1, [17, 9, 5]), (2, [9, 5, 3]), (4, [5, 3, 2])] {
        let got: Vec<usize> = (0..3).map(|l| busiest_points(&g, p, l)).collect();
        assert_eq!(got, want, "P = {p}");
    }
    assert_eq!([1, 2, 4].map(|p| coarsest_share(&g, p)), [4, 2, 1]);
    // More ranks than points on a level: some own none, the busiest one.
    assert_eq!(busiest_points(&g, 16, 2), 1);
    assert_eq!(coarsest_share(&g, 16), 1);
    // P = 16: rank 0 owns fine points 0, 1 and rank q ≥ 1 owns point q + 1, so the
    // coarsest points 0, 4, 8, 12, 16 belong to ranks 0, 3, 7, 11, 15.
    assert_eq!(owners(&g, 16, 2), [0, 3, 7, 11, 15]);
    assert_eq!(owners(&g, 4, 2), [0, 1, 2, 3]);
    assert_eq!(owners(&g, 16, 1).len(), 9);
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
    // c_l · pts_l(P) below the coarsest level, k · share on it. The adjoint's share
    // counts points in reversed time: at P = 2 rank 0 holds fine points 0…8, reversed
    // 8…16, whose coarsest points 8, 12, 16 are all stepped to (3, forward 2); at P = 4
    // rank 0 holds reversed 12…16 (2, forward 1).
    assert_eq!(calls(2), [(36.0, 18.0), (15.0, 5.0), (4.0, 3.0)]);
    assert_eq!(calls(4), [(20.0, 10.0), (9.0, 3.0), (2.0, 2.0)]);
    assert_eq!([1, 2, 4].map(|p| coarsest_share_in(&g, p, true)), [4, 3, 2]);
    assert_eq!(calls(1), [(68.0, 34.0), (27.0, 9.0), (8.0, 4.0)]);
    // m_lev = cycles (4 + 2 nrelax) · (levels below the coarsest with ≥ 2 owners) + 3
    // = 4·6·2 + 3 = 51; m_coarse = (k^f + k^a)(owners of the coarsest level − 1).
    assert_eq!(messages(&m, &g, 1), (0.0, 0.0));
    assert_eq!(messages(&m, &g, 2), (51.0, 3.0));
    assert_eq!(messages(&m, &g, 4), (51.0, 9.0));
    // P = 16: only 5 ranks own coarsest points: 4 hops per sweep, not 16.
    assert_eq!(messages(&m, &g, 16), (51.0, 12.0));
    // One level: the forward and the adjoint pipeline, L − 1 hops each, and 3.
    let g1 = Grid::new(16, 1, &[2], 2);
    assert_eq!(messages(&m, &g1, 1), (0.0, 0.0));
    assert_eq!(messages(&m, &g1, 4), (9.0, 0.0));
}

#[test]
fn splits_fit_the_layers_and_the_examples() {
    let m = model3();
    let ds = |p| splits(&m, p).iter().map(|s| s.data).collect::<Vec<_>>();
    assert_eq!(ds(1), [1]);
    assert_eq!(ds(4), [1, 2, 4]);
    // L ≤ 16 layers and D ≤ 8 examples.
    assert_eq!(ds(32), [2, 4, 8]);
    assert_eq!(ds(256), Vec::<usize>::new());
    assert_eq!(step_time(&m.batches, &m.t_forward, 3), 0.75);
    assert_eq!(step_time(&m.batches, &m.t_forward, 16), 4.0);
}

#[test]
fn predicted_times_equal_hand_computed_values() {
    let (g, m, mach) = (grid3(), model3(), node());
    // P = 1 = (1, 1): C_eval = 14·17 + 9·9 + 28 + 16·3 = 395 (per point c^f t_f + c^a t_a:
    // 4·2 + 2·3 = 14 on level 0, 3·2 + 1·3 = 9 on level 1; coarsest (2·2 + 1·3)·4 = 28;
    // gradient ⌈16/1⌉·3), C_val = 16 t_f(4) = 16. No messages. The optimizer's work on
    // all the parameters: 4 · 2/1 = 8.
    let p1 = parts(&m, &g, &mach, lonly(1));
    assert_eq!(
        p1,
        Parts {
            compute: 1.5 * 395.0,
            validation: 16.0,
            optimizer: 8.0,
            ..Parts::default()
        }
    );
    // P = 2 = (1, 2): C_eval = 14·9 + 9·5 + 28 + 8·3 = 223. A state is w·b = 16 values:
    // h = 0.5 + 128/16 = 8.5; m_lev = 51, m_coarse = 3: 54·8.5 = 459; reductions
    // (cycles + 2) = 6 of R(2) = 1·0.5 + 8·1/16 = 1: 6. Validation: 1 hop of w·v = 8
    // values (0.5 + 4 = 4.5) and R(2) = 1; optimizer: (2·0 + 8) R(2) = 8.
    let p2 = parts(&m, &g, &mach, lonly(2));
    assert_eq!(
        p2,
        Parts {
            compute: 1.5 * 223.0,
            validation: 16.0,
            messages: 459.0 + 6.0,
            combine: 0.0,
            val_messages: 4.5 + 1.0,
            reductions: 8.0,
            optimizer: 4.0,
        }
    );
    // P = 2 = (2, 1): b = 4, v = 2: C_eval = 395/2, C_val = 16·0.5 = 8; no row messages;
    // 2 rows form a binary tree, so the butterfly: one level, 2(h(G/2) + h(2)) with
    // G = 16·6 + 4 = 100 values: h(50) = 0.5 + 400/16 = 25.5, h(2) = 0.5 + 1 = 1.5: 54;
    // validation scalars (1 + 1)·1.5 = 3. Each row holds all the parameters and does
    // half of the shared vector work: 2·(1 + 3/2) = 5. The optimizer's reductions over
    // the column: (2·0 + 8)·R(2) = 8, and the all-gathers of its direction and of the
    // e = 1 trial point, 2·h(G/2) = 51.
    let d2 = parts(&m, &g, &mach, Split { data: 2, layer: 1 });
    assert_eq!(
        d2,
        Parts {
            compute: 1.5 * 197.5,
            validation: 8.0,
            messages: 0.0,
            combine: 54.0,
            val_messages: 3.0,
            reductions: 8.0 + 51.0,
            optimizer: 5.0,
        }
    );
    // P = 4 = (4, 1): the butterfly over 4 rows: level 1 2(h(50) + h(2)) = 54, level 2
    // 2(h(25) + h(2)) = 2(13 + 1.5) = 29: 83 (the tree's 2 levels of reduction and 2
    // rounds of broadcast took 4(h(G) + h(2)) = 208, an ordered chain and a broadcast
    // (3 + 2)·52 = 260); validation scalars 4·1.5 = 6.
    let d4 = parts(&m, &g, &mach, Split { data: 4, layer: 1 });
    assert_eq!((d4.combine, d4.val_messages), (83.0, 6.0));
    // 3 rows (not a power of two) take the tree: 4(h(G) + h(2)) = 208.
    let d3 = parts(&m, &g, &mach, Split { data: 3, layer: 1 });
    assert_eq!((d3.combine, d3.val_messages), (208.0, 6.0));
    // The optimizer over 4 rows: 2·(1 + 3/4) = 3.5; reductions 8·R(4) = 8·(2·0.5 +
    // 8·3/16) = 20 and two ring all-gathers 2·3·h(G/4) = 6·(0.5 + 200/16) = 78.
    assert_eq!((d4.optimizer, d4.reductions), (3.5, 98.0));
    // T_s = e·80 + 16 = 96 (measured, not modelled).
    assert_eq!(serial_seconds(&m), 96.0);
    let at2 = predict(&m, &g, &mach, lonly(2));
    assert_eq!(at2.seconds, p2.total());
    assert_eq!(at2.speedup, 96.0 / p2.total());
    assert_eq!(at2.efficiency, at2.speedup / 2.0);
    // The best split of 2 ranks is the data split here (a message costs as much as 17
    // forward steps).
    assert_eq!(
        best(&m, &g, &mach, 2, None).unwrap().split,
        Split { data: 2, layer: 1 }
    );
    assert_eq!(best(&m, &g, &mach, 2, Some(1)).unwrap().split, lonly(2));
}

#[test]
fn off_node_hops_take_the_interconnect_and_shared_cores_slow_compute() {
    let (g, m) = (grid3(), model3());
    // Two ranks per node on one core each: P = 4 = (1, 4) spans 2 nodes; ranks 1 → 2
    // cross. Every row exchange is then off node: h = 1 + 128/8 = 17.
    let mach = Machine {
        ranks_per_node: 2,
        cores: 2,
        ..node()
    };
    let p4 = parts(&m, &g, &mach, lonly(4));
    // m_lev = 51 off node; m_coarse = 9 hops, 3 of them (one per sweep) off node:
    // 51·17 + 3·17 + 6·8.5 = 969; reductions 6·R(4) off node = 6·(2·1 + 8·3/8) = 30.
    assert_eq!(p4.messages, 969.0 + 30.0);
    // Four ranks on one node of 2 cores: σ = 2.
    let shared = Machine {
        ranks_per_node: 4,
        cores: 2,
        ..node()
    };
    assert_eq!(shared.slowdown(4), 2.0);
    assert_eq!(shared.slowdown(1), 1.0);
    let c4 = parts(&m, &g, &shared, lonly(4)).compute;
    let c4_free = parts(&m, &g, &node(), lonly(4)).compute;
    assert_eq!(c4, 2.0 * c4_free);
    // On one level the four ranks of a row take turns in the sweep: their compute is not
    // slowed; four rows of one rank each all compute at once, and are.
    let g1 = Grid::new(16, 1, &[2], 2);
    assert_eq!(shared.busy_in_sweep(lonly(4)), 1);
    assert_eq!(sigma(&m, &shared, 1), 1.0);
    assert_eq!(
        parts(&m, &g1, &shared, lonly(4)).compute,
        parts(&m, &g1, &node(), lonly(4)).compute
    );
    let rows4 = Split { data: 4, layer: 1 };
    assert_eq!(shared.busy_in_sweep(rows4), 4);
    assert_eq!(sigma(&m, &shared, 4), 2.0);
    assert_eq!(
        parts(&m, &g1, &shared, rows4).compute,
        2.0 * parts(&m, &g1, &node(), rows4).compute
    );
    // The validation sweep is pipelined: every rank computes, σ = 2 on one level too.
    assert_eq!(
        parts(&m, &g1, &shared, lonly(4)).validation,
        2.0 * parts(&m, &g1, &node(), lonly(4)).validation
    );
    // A co-run slowdown κ = 1.5 measured with 2 copies: two ranks side by side on 2 cores
    // take 1.5 times as long each, four take 2 · 1.5; one alone is not slowed. With 4
    // copies κ = 2.5 counts a third of its excess per rank after the first.
    let kappa = Model {
        co_run: 1.5,
        co_run_copies: 2,
        ..model3()
    };
    assert_eq!(sigma(&kappa, &shared, 1), 1.0);
    assert_eq!(sigma(&kappa, &shared, 2), 1.5);
    assert_eq!(sigma(&kappa, &shared, 4), 3.0);
    assert_eq!(
        parts(&kappa, &g1, &shared, rows4).compute,
        3.0 * parts(&m, &g1, &node(), rows4).compute
    );
    assert_eq!(
        parts(&kappa, &g1, &shared, lonly(4)).compute,
        parts(&m, &g1, &node(), lonly(4)).compute
    );
    let four = Model {
        co_run: 2.5,
        co_run_copies: 4,
        ..model3()
    };
    let wide = Machine {
        ranks_per_node: 8,
        cores: 8,
        ..node()
    };
    assert_eq!(sigma(&four, &wide, 2), 1.5);
    assert_eq!(sigma(&four, &wide, 4), 2.5);
    assert_eq!(sigma(&four, &wide, 8), 2.5);
    assert!(Machine {
        bandwidth: 0.0,
        ..node()
    }
    .check()
    .is_err());
    assert!(Machine::CLUSTER.check().is_ok());
}

#[test]
fn the_table_doubles_p_and_keeps_splits_that_fit() {
    let (g, m, mach) = (grid3(), model3(), node());
    let rows = table(&m, &g, &mach, 1024, None);
    // L ≤ 16 and D ≤ 8: the largest P is 128 = 8 × 16.
    assert_eq!(
        rows.iter().map(|r| r.ranks).collect::<Vec<_>>(),
        [1, 2, 4, 8, 16, 32, 64, 128]
    );
    for r in &rows {
        assert_eq!(Some(r.best), best(&m, &g, &mach, r.ranks, None));
        assert_eq!(r.layer_only.is_some(), r.ranks <= 16);
    }
    let forced = table(&m, &g, &mach, 1024, Some(4));
    assert_eq!(
        forced.iter().map(|r| r.ranks).collect::<Vec<_>>(),
        [4, 8, 16, 32, 64]
    );
    assert!(forced.iter().all(|r| r.best.split.data == 4));
}

/// The sweeps timed at smaller batches scale a row's evaluation compute by r(b): with
/// T_s,eval(4) = 60 against 80 at B = 8 while the step table halves, a row of 4 examples
/// costs 1.5 times its share of the kernels' time; without them, and at the full batch, 1.
#[test]
fn a_row_sweep_costs_what_the_serial_sweep_at_its_batch_measured() {
    let (g, mach) = (grid3(), node());
    let plain = model3();
    let swept = Model {
        sweep_batches: vec![1, 2, 4],
        sweep_seconds: vec![20.0, 30.0, 60.0],
        ..model3()
    };
    assert_eq!(batch_factor(&plain, 4), 1.0);
    assert_eq!(batch_factor(&swept, 8), 1.0);
    // ω_s(4) = 60 / 2.5 = 24, ω_s(8) = 80 / 5 = 16.
    assert_eq!(batch_factor(&swept, 4), 1.5);
    // Between measured batches T_s,eval is linear: T_s,eval(3) = 45, t(3) = 1.875.
    assert_eq!(batch_factor(&swept, 3), 1.5);
    let rows2 = Split { data: 2, layer: 2 };
    assert_eq!(
        parts(&swept, &g, &mach, rows2).compute,
        1.5 * parts(&plain, &g, &mach, rows2).compute
    );
    assert_eq!(
        parts(&swept, &g, &mach, lonly(2)),
        parts(&plain, &g, &mach, lonly(2))
    );
}
