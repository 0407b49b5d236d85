//! DistSpace with its element-wise work shared out over rows (threads), against the
//! unshared space.

use super::DistSpace;
use crate::thread_comm::{run_ranks, spread, unreceived, ThreadComm};
use mgrit::Comm;
use optim::{Lbfgs, Space};
use std::sync::Arc;

/// Segments of a vector of 24 values with replicas (not in any segment) at 10..12 and
/// 21..24, in two blocks.
fn blocks() -> Vec<Vec<std::ops::Range<usize>>> {
    vec![vec![0..3, 3..10], vec![12..20, 20..21]]
}

/// A vector whose sums depend on the order of the additions.
fn vector(seed: usize) -> Vec<f64> {
    spread(seed, 24)
}

/// A single rank's row and, when `col` is given, the rows sharing the work.
fn space(col: Option<ThreadComm>) -> DistSpace<ThreadComm> {
    let row = ThreadComm::new(0, 1, Arc::default());
    DistSpace::new(row, blocks(), col, 24, Default::default())
}

/// An L-BFGS memory of three pairs and the direction and ⟨g, g⟩ it gives on `s`.
fn direction_on(s: &DistSpace<ThreadComm>) -> (Vec<u64>, u64) {
    let mut memory = Lbfgs::new(3);
    for k in 0..3 {
        let sk = vector(2 * k + 1);
        let yk: Vec<f64> = sk
            .iter()
            .zip(vector(2 * k + 2))
            .map(|(a, b)| 2.0 * a + 0.1 * b)
            .collect();
        assert!(memory.push(sk, yk, s), "pair {k} has positive curvature");
    }
    let g = vector(9);
    let d = memory.direction(&g, s);
    (
        d.iter().map(|x| x.to_bits()).collect(),
        s.dot(&g, &g).to_bits(),
    )
}

/// The element-wise work shared out over D = 1 … 5 rows (5: more rows than segments in a
/// block) gives the unshared space's bits in every element of an L-BFGS direction and in
/// every dot product, on every row, and leaves no message unreceived.
#[test]
fn sharing_the_work_over_the_rows_changes_no_bit() {
    let want = direction_on(&space(None));
    assert!(
        want.0.iter().any(|&x| f64::from_bits(x) != 0.0),
        "a nonzero direction"
    );
    for d in 1..=5 {
        let (got, boxes) = run_ranks(d, |col| direction_on(&space(Some(col))));
        for (r, g) in got.into_iter().enumerate() {
            assert_eq!(g, want, "D = {d}, row {r}");
        }
        assert_eq!(unreceived(&boxes), 0, "D = {d}");
    }
}

/// Each row computes its own segments and every replica; `complete` fills in the rest.
#[test]
fn a_row_computes_its_segments_and_the_replicas() {
    let (got, _) = run_ranks(3, |col| {
        let row = col.rank();
        let s = space(Some(col));
        let mut v = vec![0.0; 24];
        s.axpy(1.0, &[1.0; 24], &mut v);
        let computed: Vec<usize> = (0..24).filter(|&i| v[i] == 1.0).collect();
        let mut w: Vec<f64> = (0..24)
            .map(|i| {
                if computed.contains(&i) {
                    i as f64
                } else {
                    -1.0
                }
            })
            .collect();
        s.complete(&mut w);
        (row, computed, w)
    });
    // Block 0's two segments go to rows 0 and 1, block 1's to rows 0 and 1; row 2 has
    // none: every row computes the replicas 10..12 and 21..24.
    let replicas = [10, 11, 21, 22, 23];
    for (row, computed, whole) in got {
        let mut want: Vec<usize> = match row {
            0 => (0..3).chain(12..20).collect(),
            1 => (3..10).chain(20..21).collect(),
            _ => Vec::new(),
        };
        want.extend(replicas);
        want.sort();
        assert_eq!(computed, want, "row {row}");
        assert_eq!(
            whole,
            (0..24).map(|i| i as f64).collect::<Vec<_>>(),
            "row {row}"
        );
    }
}
