//! The chunk tree and the butterfly against the serial tree, on threads as the rows.

use super::{even_part, tree_sum, DataGrid};
use crate::thread_comm::{run_ranks, spread, unreceived};

/// Chunk vectors whose sums depend on the grouping: magnitudes spread over many binades.
fn leaves(k: usize) -> Vec<Vec<f64>> {
    leaves_of(k, 3)
}

/// K chunk vectors of n values each, as [`leaves`].
fn leaves_of(k: usize, n: usize) -> Vec<Vec<f64>> {
    (0..k).map(|i| spread(i, n)).collect()
}

#[test]
fn the_serial_tree_pairs_neighbours_level_by_level() {
    let v = |x: f64| vec![x];
    let p: Vec<Vec<f64>> = [1.0, 2.0, 3.0, 4.0, 5.0].map(v).to_vec();
    assert_eq!(tree_sum(&p), v(((1.0 + 2.0) + (3.0 + 4.0)) + 5.0));
    let (a, b, c) = (1e16, -1e16, 1.0);
    // ((a + b) + c) = 1 but (a + (b + c)) = 0: the grouping is the tree's.
    assert_eq!(tree_sum(&[v(a), v(b), v(c)]), v((a + b) + c));
    assert_eq!(tree_sum(&[v(c), v(a), v(b)]), v((c + a) + b));
    assert_eq!(tree_sum(&[v(2.5)]), v(2.5));
}

/// ⌈log₂ n⌉.
fn log2_ceil(n: usize) -> usize {
    n.next_power_of_two().trailing_zeros() as usize
}

/// Every chunk count 1..=12 on every row count D ≤ K: each row gets the serial tree's bits,
/// no message is left over, and the latency (the longest chain of messages, reduce and
/// broadcast) is at most 2⌈log₂ K⌉, and at most 2⌈log₂ D⌉ when K = D·2^m (exactly that when D
/// is a power of two too).
#[test]
fn the_distributed_tree_gives_the_serial_bits_on_every_row_count() {
    for k in 1..=12 {
        let all = leaves(k);
        let want: Vec<u64> = tree_sum(&all).iter().map(|x| x.to_bits()).collect();
        for d in 1..=k {
            let parts = all.clone();
            let (results, boxes) = run_ranks(d, move |comm| {
                let mut mine = parts[even_part(k, d, comm.rank)].to_vec();
                let grid = DataGrid::new(comm, k);
                grid.tree(&mut mine);
                (mine.swap_remove(0), grid.col.depth.get())
            });
            let mut latency = 0;
            for (r, (sum, depth)) in results.into_iter().enumerate() {
                let got: Vec<u64> = sum.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "K = {k}, D = {d}, row {r}");
                latency = latency.max(depth);
            }
            assert!(latency <= 2 * log2_ceil(k), "K = {k}, D = {d}: {latency}");
            if k % d == 0 && (k / d).is_power_of_two() {
                assert!(latency <= 2 * log2_ceil(d), "K = {k}, D = {d}: {latency}");
                if d.is_power_of_two() {
                    assert_eq!(latency, 2 * log2_ceil(d), "K = {k}, D = {d}");
                }
            }
            assert_eq!(
                unreceived(&boxes),
                0,
                "K = {k}, D = {d}: unreceived messages"
            );
        }
    }
}

/// Where the rows form a binary tree (D a power of two, K = D·2^m) the sum is a
/// reduce-scatter and an all-gather: the tree's bits, and no row sends more than twice the
/// vector (the tree's rows send it up to 2 log₂ D times).
#[test]
fn the_butterfly_gives_the_tree_bits_and_sends_twice_the_vector_at_most() {
    for (k, d, n) in [
        (2, 2, 1000),
        (4, 4, 1001),
        (8, 4, 999),
        (8, 8, 1000),
        (16, 8, 7),
    ] {
        let all = leaves_of(k, n);
        let want: Vec<u64> = tree_sum(&all).iter().map(|x| x.to_bits()).collect();
        let parts = all.clone();
        let (results, _) = run_ranks(d, move |comm| {
            let mut mine = parts[even_part(k, d, comm.rank)].to_vec();
            let grid = DataGrid::new(comm, k);
            assert!(grid.rows_form_a_binary_tree());
            grid.tree(&mut mine);
            (mine.swap_remove(0), grid.col.sent.get())
        });
        for (r, (sum, sent)) in results.into_iter().enumerate() {
            let got: Vec<u64> = sum.iter().map(|x| x.to_bits()).collect();
            assert_eq!(got, want, "K = {k}, D = {d}, row {r}");
            assert!(
                sent <= 2 * n,
                "K = {k}, D = {d}, row {r}: sent {sent} of {n}"
            );
            assert!(sent >= n / d, "K = {k}, D = {d}, row {r}: sent only {sent}");
        }
    }
}

/// One grid sums again and again with its kept storage (the butterfly's receive buffer, the
/// parts refilled by the caller), over vectors that shrink and grow: every sum has the serial
/// tree's bits, on the butterfly's row counts and on the general tree's.
#[test]
fn repeated_sums_on_kept_storage_keep_the_serial_bits() {
    for (k, d) in [(4, 2), (8, 4), (6, 3), (5, 2)] {
        let lengths = [1000, 37, 1001, 4];
        let wants: Vec<Vec<u64>> = lengths
            .iter()
            .map(|&n| {
                tree_sum(&leaves_of(k, n))
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            })
            .collect();
        let (results, boxes) = run_ranks(d, move |comm| {
            let grid = DataGrid::new(comm, k);
            let mut parts: Vec<Vec<f64>> = Vec::new();
            let mut sums = Vec::new();
            for &n in &lengths {
                let all = leaves_of(k, n);
                parts.resize_with(even_part(k, d, grid.row()).len(), Vec::new);
                for (p, leaf) in parts.iter_mut().zip(&all[even_part(k, d, grid.row())]) {
                    p.clear();
                    p.extend_from_slice(leaf);
                }
                grid.tree(&mut parts);
                sums.push(parts[0].iter().map(|x| x.to_bits()).collect::<Vec<u64>>());
            }
            sums
        });
        for (r, sums) in results.into_iter().enumerate() {
            assert_eq!(sums, wants, "K = {k}, D = {d}, row {r}");
        }
        assert_eq!(
            unreceived(&boxes),
            0,
            "K = {k}, D = {d}: unreceived messages"
        );
    }
}
