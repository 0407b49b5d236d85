//! Data × layer parallelism: the objective of one row of a D × L grid of ranks.
//!
//! Every batch of B examples is cut into `chunks` fixed chunks (sizes ⌊B/K⌋ or ⌈B/K⌉, the
//! larger ones first); row r of the D rows owns the chunks [Σ_{q<r} k_q, Σ_{q≤r} k_q) with
//! k_q = ⌊K/D⌋ or ⌈K/D⌉ (the larger ones to the first rows), a contiguous range of examples.
//! The row runs the forward and adjoint solves over its L ranks on its own examples only:
//! every example's state columns are computed column by column, so they are the same bits
//! whatever the batch width. Every sum over examples (loss, correct count, the gradients of
//! the opening, the hidden layers and the classifier, the time-scale terms, the MGRIT
//! residual norms) is formed chunk by chunk, and the K chunk sums are added by a fixed binary
//! tree over the chunk indices ([`tree_sum`], [`DataGrid::tree`]): node (l, i) of level l
//! covers the chunks [i·2^l, (i + 1)·2^l) ∩ [0, K) and is the sum, left + right, of its
//! children (l − 1, 2i) and (l − 1, 2i + 1) (a node without a right child is its left child,
//! unchanged). The tree, and so the grouping and order of every addition, depends on K
//! only, never on which row holds which chunk: a run gives the same bits for every (D, L)
//! with D ≤ K. Rows hold contiguous chunk ranges, so the low levels are sums within a row;
//! a node whose right child starts on another row receives that child's value from it, along
//! the column (a message from a higher row to a lower one), and row 0 ends with the root and
//! broadcasts it down a binomial tree over the rows. With K = D·2^m chunks (K = D above all)
//! the cross-row levels are a binary tree over the rows: at most ⌈log₂ D⌉ messages on any
//! chain of the reduction (exactly that for D a power of two) and ⌈log₂ D⌉ rounds of the
//! broadcast, against the D − 1 + ⌈log₂ D⌉ of an ordered chain over the rows; for other K at
//! most ⌈log₂ K⌉ + ⌈log₂ D⌉.

use super::{HiddenRegularization, Objective, Value};
use crate::apps::{AdjointApp, ForwardApp};
use crate::ghosts::LayerControls;
use mgrit::{App, Comm, StepInfo};
use odenet::linalg::dot;
use odenet::loss::{loss_sum, Targets};
use odenet::network::ordered_sum;
use odenet::Step;
use std::cell::RefCell;
use std::ops::Range;

/// Tags of the tree's messages: `TREE_TAG + l` at level l, `BCAST_TAG` for the broadcast;
/// the butterfly's `HALVE_TAG + j` (reduce-scatter) and `GATHER_TAG + j` (all-gather) at its
/// level j.
const TREE_TAG: i32 = 7200;
const BCAST_TAG: i32 = 7199;
const HALVE_TAG: i32 = 7300;
const GATHER_TAG: i32 = 7400;

/// This rank's place in a D × L grid: its column (the ranks that hold the same layers in
/// every row, numbered by row), its row and the fixed chunking of every batch.
pub struct DataGrid<C: Comm> {
    /// The column communicator: rank = row, size = D.
    pub col: C,
    /// Chunks per batch, K ≥ D.
    pub chunks: usize,
    /// The butterfly's receive buffer (half the vector), kept across sums.
    received: RefCell<Vec<f64>>,
}

/// Part `i` of `n` items cut into `parts` contiguous parts, the larger ones first.
pub fn even_part(n: usize, parts: usize, i: usize) -> Range<usize> {
    let (q, r) = (n / parts, n % parts);
    let start = i * q + i.min(r);
    start..start + q + usize::from(i < r)
}

impl<C: Comm> DataGrid<C> {
    /// A grid place from the column communicator and the number of chunks (K ≥ D).
    pub fn new(col: C, chunks: usize) -> DataGrid<C> {
        assert!(
            chunks >= col.size(),
            "{chunks} chunks cannot cover {} rows",
            col.size()
        );
        DataGrid {
            col,
            chunks,
            received: RefCell::new(Vec::new()),
        }
    }

    pub fn rows(&self) -> usize {
        self.col.size()
    }

    pub fn row(&self) -> usize {
        self.col.rank()
    }

    /// The chunks (indices) this row owns.
    pub fn row_chunks(&self) -> Range<usize> {
        even_part(self.chunks, self.rows(), self.row())
    }

    /// This row's examples of a batch of `batch` and its chunks as ranges of them (relative
    /// to the row's first example), in chunk order.
    pub fn split(&self, batch: usize) -> (Range<usize>, Vec<Range<usize>>) {
        assert!(
            batch >= self.chunks,
            "a batch of {batch} examples cannot fill {} chunks",
            self.chunks
        );
        let mine = self.row_chunks();
        let lo = even_part(batch, self.chunks, mine.start).start;
        let hi = even_part(batch, self.chunks, mine.end - 1).end;
        let cols = mine
            .map(|k| {
                let r = even_part(batch, self.chunks, k);
                r.start - lo..r.end - lo
            })
            .collect();
        (lo..hi, cols)
    }

    /// The row that owns chunk `k`.
    fn owner(&self, k: usize) -> usize {
        (0..self.rows())
            .find(|&r| even_part(self.chunks, self.rows(), r).contains(&k))
            .expect("every chunk has a row")
    }

    /// The sum over every chunk of the batch of the chunk vectors, added by the fixed tree
    /// over the K chunks of the module documentation ([`tree_sum`] of all K vectors, the same
    /// bits): `parts` holds this row's (each of the same length on every rank of the column),
    /// in chunk order. The total is left in `parts[0]` on every rank of the column (the other
    /// parts are overwritten); no vector of the parts' length is allocated where the rows
    /// form a binary tree. Collective over the column.
    ///
    /// Level by level, every row keeps the nodes whose first chunk it owns. At level l a row
    /// first sends each of its level-(l − 1) right children (odd index) whose parent belongs
    /// to another row (the owner of the parent's first chunk, a lower row) and then forms its
    /// level-l nodes, receiving the right children that start on another row. Sends never
    /// block and messages only go to lower rows, so the highest row never waits and no row
    /// waits on itself. Row 0 then owns the root and broadcasts it (binomial tree: in round j
    /// the rows r < 2^j send to r + 2^j).
    pub fn tree(&self, parts: &mut [Vec<f64>]) {
        self.tree_with(parts, |_, _| {});
    }

    /// [`DataGrid::tree`], and where the rows form a binary tree (the butterfly), `finish` is
    /// called on the part of the total this row holds between the reduce-scatter and the
    /// all-gather, `finish(range, &mut total[range])`, so that work on finished sums is
    /// shared out among the rows instead of repeated by each; returns whether it was called.
    /// Elsewhere (the chunk tree) `finish` is not called and it returns false. Collective
    /// over the column.
    pub fn tree_with(
        &self,
        parts: &mut [Vec<f64>],
        finish: impl FnOnce(Range<usize>, &mut [f64]),
    ) -> bool {
        if self.rows_form_a_binary_tree() {
            self.butterfly(parts, finish);
            return true;
        }
        let (row, rows, k) = (self.row(), self.rows(), self.chunks);
        let mine = self.row_chunks();
        assert_eq!(parts.len(), mine.len(), "one vector per chunk of the row");
        let len = parts[0].len();
        // (index, value) of the nodes of the current level whose first chunk is this row's
        // (the parts moved in, not copied).
        let mut level: Vec<(usize, Vec<f64>)> = mine
            .clone()
            .zip(parts.iter_mut().map(std::mem::take))
            .collect();
        let mut l: u32 = 0;
        while (1usize << l) < k {
            l += 1;
            let half = 1usize << (l - 1);
            let tag = TREE_TAG + l as i32;
            // The right children whose parent is another row's go to that row, moved (every
            // send is started before this row waits on a receive).
            let parent = |j: usize| self.owner((j - 1) * half);
            let (sent, kept): (Vec<_>, Vec<_>) = level
                .into_iter()
                .partition(|(j, _)| j % 2 == 1 && parent(*j) != row);
            for (j, v) in sent {
                self.col.send(parent(j), tag, v);
            }
            let mut next = Vec::with_capacity(kept.len().div_ceil(2));
            let mut children = kept.into_iter().peekable();
            while let Some((j, mut left)) = children.next() {
                // (A kept right child follows its left sibling and is taken with it below.)
                debug_assert_eq!(j % 2, 0, "a kept node of odd index has its sibling here");
                let right_start = (j + 1) * half;
                if right_start < k {
                    let right = match children.peek() {
                        Some((jr, _)) if *jr == j + 1 => children.next().expect("peeked").1,
                        _ => self.col.recv(self.owner(right_start), tag),
                    };
                    add_into(&mut left, &right);
                }
                next.push((j / 2, left));
            }
            level = next;
        }
        // The nodes this row still holds back into the parts (row 0: the root into
        // `parts[0]`); the other rows make room there for the root.
        assert!(row != 0 || level.len() == 1, "row 0 owns the root");
        for (p, (_, v)) in parts.iter_mut().zip(level) {
            *p = v;
        }
        parts[0].resize(len, 0.0);
        let mut step = 1;
        while step < rows {
            if row < step {
                if row + step < rows {
                    self.col.send(row + step, BCAST_TAG, parts[0].clone());
                }
            } else if row < 2 * step {
                self.col.recv_into(row - step, BCAST_TAG, &mut parts[0]);
            }
            step *= 2;
        }
        self.col.wait_sends();
        false
    }
}

impl<C: Comm> DataGrid<C> {
    /// Whether the cross-row levels of the chunk tree are a perfect binary tree over the rows:
    /// D a power of two and K = D·2^m, so that each row holds one node of level m (its 2^m
    /// chunks) and level m + j adds the nodes of the aligned row blocks of 2^(j−1).
    fn rows_form_a_binary_tree(&self) -> bool {
        let (d, k) = (self.rows(), self.chunks);
        d.is_power_of_two() && k % d == 0 && (k / d).is_power_of_two()
    }

    /// [`DataGrid::tree`] when the rows form a binary tree ([`Self::rows_form_a_binary_tree`]),
    /// as a reduce-scatter by recursive halving followed by an all-gather by recursive
    /// doubling. Each row first adds its own 2^m chunks ([`tree_sum`]: the tree's low
    /// levels). At cross-row level j = 1 … log₂ D, row r and its partner r ⊕ 2^(j−1) hold the
    /// same part of the vector of the two sibling nodes (blocks of 2^(j−1) rows); each sends
    /// the partner the half the partner keeps (the left block keeps the first half) and adds
    /// the half it keeps: every element is the same sum of the same two nodes as in the tree,
    /// so the bits are the tree's. After log₂ D levels each row holds 1/D of the root; the
    /// all-gather runs the levels back, each pair exchanging what it holds. A row sends about
    /// twice the vector in all, in 2 log₂ D messages, where the tree's critical path carries
    /// the whole vector 2 log₂ D times. Each exchange sends from and receives into kept
    /// storage (the total in `parts[0]`, half of it in [`DataGrid::received`]). Collective
    /// over the column.
    fn butterfly(&self, parts: &mut [Vec<f64>], finish: impl FnOnce(Range<usize>, &mut [f64])) {
        let (row, rows) = (self.row(), self.rows());
        assert_eq!(
            parts.len(),
            self.row_chunks().len(),
            "one vector per chunk of the row"
        );
        tree_sum_in_place(parts);
        let total = &mut parts[0];
        let mut theirs = self.received.borrow_mut();
        let (mut lo, mut hi) = (0, total.len());
        // (partner, the part kept, the part given) at each level, for the all-gather.
        let mut levels = Vec::new();
        let mut half = 1;
        let mut j = 0;
        while half < rows {
            let partner = row ^ half;
            let mid = lo + (hi - lo) / 2;
            let (keep, give) = if row & half == 0 {
                (lo..mid, mid..hi)
            } else {
                (mid..hi, lo..mid)
            };
            theirs.resize(keep.len(), 0.0);
            self.col
                .exchange(partner, HALVE_TAG + j, &total[give.clone()], &mut theirs);
            // Left node + right node (addition commutes: the order of the operands changes
            // no bit).
            add_into(&mut total[keep.clone()], &theirs);
            levels.push((partner, keep.clone(), give));
            (lo, hi) = (keep.start, keep.end);
            half *= 2;
            j += 1;
        }
        finish(lo..hi, &mut total[lo..hi]);
        for (j, (partner, keep, give)) in levels.into_iter().enumerate().rev() {
            let tag = GATHER_TAG + j as i32;
            // The two halves are disjoint: send the one, receive into the other.
            let (mine, into) = if keep.end <= give.start {
                let (a, b) = total.split_at_mut(give.start);
                (&a[keep], &mut b[..give.len()])
            } else {
                let (a, b) = total.split_at_mut(keep.start);
                (&b[..keep.len()], &mut a[give])
            };
            self.col.exchange(partner, tag, mine, into);
        }
        self.col.wait_sends();
    }
}

/// x ← x + y, element by element.
fn add_into(x: &mut [f64], y: &[f64]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// The sum of `parts` (K ≥ 1 vectors of one length) by the fixed binary tree over their
/// indices: at level l = 1, 2, … the neighbours 2i and 2i + 1 of level l − 1 are added (left
/// plus right), and an unpaired last one moves up unchanged, until one vector is left
/// (⌈log₂ K⌉ levels). [`DataGrid::tree`] computes the same bits with the vectors spread over
/// the rows.
pub fn tree_sum(parts: &[Vec<f64>]) -> Vec<f64> {
    let mut level = parts.to_vec();
    tree_sum_in_place(&mut level);
    level.swap_remove(0)
}

/// [`tree_sum`] in place: node (l, i) is accumulated in `parts[i·2^l]`, so the sum ends in
/// `parts[0]` (the other parts hold partial sums).
fn tree_sum_in_place(parts: &mut [Vec<f64>]) {
    assert!(!parts.is_empty(), "a tree needs a leaf");
    let mut half = 1;
    while half < parts.len() {
        for left in (0..parts.len()).step_by(2 * half) {
            if left + half < parts.len() {
                let (a, b) = parts.split_at_mut(left + half);
                add_into(&mut a[left], &b[0]);
            }
        }
        half *= 2;
    }
}

/// The examples `r` of `targets`.
fn slice_targets<'t>(targets: Targets<'t>, r: Range<usize>) -> Targets<'t> {
    match targets {
        Targets::Labels(l) => Targets::Labels(&l[r]),
        Targets::Values { values, dim } => Targets::Values {
            values: &values[r.start * dim..r.end * dim],
            dim,
        },
    }
}

/// An application whose residual norms are per chunk and summed by the chunk tree across the
/// rows (every other operation is the wrapped application's).
struct Chunked<'a, 'g, A, C: Comm> {
    inner: &'a mut A,
    grid: &'g DataGrid<C>,
    cols: &'g [Range<usize>],
    width: usize,
}

impl<A: App<State = Vec<f64>>, C: Comm> App for Chunked<'_, '_, A, C> {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        self.inner.step(u, info)
    }

    fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, info: &StepInfo) {
        self.inner.step_from(src, dst, info)
    }

    fn init(&mut self, index: usize) -> Vec<f64> {
        self.inner.init(index)
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        self.inner.sum(alpha, x, beta, y)
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        self.inner.norm(x)
    }

    fn norm_parts(&self, x: &Vec<f64>, out: &mut Vec<f64>) {
        for r in self.cols {
            let s = &x[r.start * self.width..r.end * self.width];
            let n = dot(s, s).sqrt();
            out.push(n * n);
        }
    }

    fn combine_norms(&mut self, parts: &mut Vec<f64>) {
        let k = self.cols.len();
        let points = parts.len() / k;
        let mut per_chunk: Vec<Vec<f64>> = (0..k)
            .map(|j| (0..points).map(|i| parts[i * k + j]).collect())
            .collect();
        self.grid.tree(&mut per_chunk);
        *parts = per_chunk.swap_remove(0);
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        self.inner.pack(x, buf)
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        self.inner.unpack(buf)
    }

    fn packed_len(&self, x: &Vec<f64>) -> usize {
        self.inner.packed_len(x)
    }

    fn copy(&self, src: &Vec<f64>, dst: &mut Vec<f64>) {
        self.inner.copy(src, dst)
    }

    fn access(&mut self, index: usize, u: &Vec<f64>) {
        self.inner.access(index, u)
    }
}

impl<C: Comm> Objective<C> {
    /// Makes this objective (built on the ranks of one row) one row of a D × L grid whose
    /// column communicator and chunking `grid` holds: from now on it evaluates its row's
    /// share of every batch it is given and combines the sums over the rows (module docs).
    /// Every row must be given the same batches.
    pub fn set_data_grid(&mut self, grid: DataGrid<C>) {
        self.data = Some(grid);
    }

    /// The grid this objective is a row of, if any.
    pub fn data_grid(&self) -> Option<&DataGrid<C>> {
        self.data.as_ref()
    }

    /// [`Objective::evaluate`] on a grid: the row's exact forward sweep on its examples, the
    /// loss and correct count per chunk, summed by the chunk tree over the rows.
    pub(super) fn grid_evaluate(
        &mut self,
        grid: &DataGrid<C>,
        params: &[f64],
        x: &[f64],
        targets: Targets<'_>,
    ) -> (f64, f64) {
        let total = targets.len();
        let (rows, cols) = grid.split(total);
        let din = x.len() / total;
        let xr = &x[rows.start * din..rows.end * din];
        let yr = slice_targets(targets, rows.clone());
        let batch = rows.len();
        let theta = self.model(params);
        let (net, part) = (&self.net, &self.part);
        let sweep = self.sweeps.entry(batch).or_insert_with(|| {
            let o = mgrit::Options {
                max_levels: 1,
                warm_restart: true,
                ..mgrit::Options::default()
            };
            mgrit::Solver::new(part.layers, 0.0, net.final_time, o, self.comm.duplicate())
                .expect("one level is always valid")
        });
        let sh = net.layout.shape;
        let mut app = ForwardApp {
            net,
            ctrl: LayerControls {
                theta: &theta,
                layout: &self.model_layout,
                part,
                ghosts: &self.ghosts,
            },
            open: &theta[self.model_layout.opening.clone()],
            x: xr,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
            keep: None,
            kernel_time: std::time::Duration::ZERO,
        };
        sweep.solve(&mut app);
        self.buf.scratch = app.scratch;
        let mut out = [0.0, 0.0];
        if part.is_last() {
            let mut logits = vec![0.0; sh.classes * batch];
            let u = sweep.state(sh.layers).expect("the last rank owns U_N");
            net.classify(&theta[self.model_layout.classifier.clone()], u, &mut logits);
            let mut parts: Vec<Vec<f64>> = cols
                .iter()
                .map(|r| {
                    let z = &logits[r.start * sh.classes..r.end * sh.classes];
                    let (l, c) =
                        loss_sum(net.loss, sh.classes, z, slice_targets(yr, r.clone()), None);
                    vec![l, c as f64]
                })
                .collect();
            grid.tree(&mut parts);
            out = [parts[0][0] / total as f64, parts[0][1] / total as f64];
        }
        let v = self.broadcast_from_last(&out);
        (v[0], v[1])
    }

    /// [`Objective::objective_gradient`] on a grid.
    pub(super) fn grid_objective_gradient(
        &mut self,
        grid: &DataGrid<C>,
        params: &[f64],
        x: &[f64],
        labels: Targets<'_>,
        grad: &mut [f64],
    ) -> Value {
        let total = labels.len();
        let (rows, cols) = grid.split(total);
        let din = x.len() / total;
        let xr = &x[rows.start * din..rows.end * din];
        let yr = slice_targets(labels, rows.clone());
        self.ensure_batch(rows.len());
        self.begin_batch();
        let theta = self.model(params);
        self.value_and_gradient(params, &theta, total, grad, |obj, g| {
            obj.grid_propagate(grid, &theta, xr, yr, &cols, total, g)
        })
    }

    /// The row's forward and adjoint solves on its examples `x` (chunks `cols` of a batch of
    /// `total`), then every sum over examples chunk by chunk, summed by the chunk tree: the
    /// θ-gradient of the loss written into `grad` (this rank's θ-layout) and ([mean loss,
    /// correct] on the last rank of the row, zeros elsewhere).
    #[allow(clippy::too_many_arguments)]
    fn grid_propagate(
        &mut self,
        grid: &DataGrid<C>,
        theta: &[f64],
        x: &[f64],
        labels: Targets<'_>,
        cols: &[Range<usize>],
        total: usize,
        grad: &mut [f64],
    ) -> ([f64; 2], mgrit::Stats, mgrit::Stats) {
        let batch = labels.len();
        let ml = self.model_layout.clone();
        let sh = self.net.layout.shape;
        let (w, classes) = (sh.width, sh.classes);
        // The forward solve column by column over the row's chunks.
        let fstats = self.run_forward(theta, x, batch, |solver, fwd| {
            solver.solve(&mut Chunked {
                inner: fwd,
                grid,
                cols,
                width: w,
            })
        });

        // One vector per chunk: [θ-gradient | time-scale terms of the owned layers | loss, correct].
        let nscale = if ml.scale.is_empty() {
            0
        } else {
            self.part.owned_layers.len()
        };
        let len = ml.len + nscale + 2;
        // Zeroed in the kept storage (no fresh pages to fault in at every evaluation).
        let mut parts = std::mem::take(&mut self.buf.chunk_sums);
        parts.resize_with(cols.len(), Vec::new);
        for p in &mut parts {
            p.clear();
            p.resize(len, 0.0);
        }
        if self.part.is_last() {
            let u_n = self
                .forward
                .state(sh.layers)
                .expect("the last rank owns U_N");
            let r = ml.classifier.clone();
            let b = &mut self.buf;
            self.net.classify(&theta[r.clone()], u_n, &mut b.logits);
            let scale = 1.0 / total as f64;
            for (p, c) in parts.iter_mut().zip(cols) {
                let (zc, uc) = (c.start * classes..c.end * classes, c.start * w..c.end * w);
                let (l, correct) = loss_sum(
                    self.net.loss,
                    classes,
                    &b.logits[zc.clone()],
                    slice_targets(labels, c.clone()),
                    Some((&mut b.seed[zc.clone()], scale)),
                );
                self.net.classifier_adjoint(
                    &theta[r.clone()],
                    &u_n[uc.clone()],
                    &b.seed[zc],
                    &mut p[r.clone()],
                    &mut b.lambda_final[uc],
                );
                p[len - 2] = l;
                p[len - 1] = correct as f64;
            }
        }

        self.keep_missing_derivatives(theta);
        // With one level and one chunk in the row, the fine adjoint steps also form the
        // chunk's layer gradients (as on one row: the same S_n and the same products, so the
        // same bits as the separate pass), and the pass after the solve is skipped.
        let fused = self.adjoint.grid().num_levels() == 1 && cols.len() == 1;
        let mut adj = AdjointApp {
            net: &self.net,
            ctrl: LayerControls {
                theta,
                layout: &self.model_layout,
                part: &self.part,
                ghosts: &self.ghosts,
            },
            forward: &self.forward,
            lambda_final: &self.buf.lambda_final,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
            grad: fused.then_some(&mut parts[0][ml.layers.clone()]),
            derivs: self.keep_derivatives.then_some(&self.buf.derivs),
            // The rows' data gradients are summed after the solve: the regularization
            // follows the sum (in `finish_gradient`).
            regularize: None,
            kernel_time: std::time::Duration::ZERO,
        };
        let astats = self.adjoint.solve(&mut Chunked {
            inner: &mut adj,
            grid,
            cols,
            width: w,
        });
        self.kernel_time += adj.kernel_time;
        self.buf.scratch = adj.scratch;
        if !fused || !ml.scale.is_empty() {
            let t = std::time::Instant::now();
            self.grid_layer_gradients(theta, cols, &mut parts, ml.len, !fused);
            self.kernel_time += t.elapsed();
        }
        if self.part.is_first() {
            let open = &theta[ml.opening.clone()];
            let lam0 = self.adjoint.state(0).expect("rank 0 owns λ_0");
            let din = x.len() / batch;
            for (p, c) in parts.iter_mut().zip(cols) {
                let n = c.len();
                let (mut u0, mut pre, mut s) =
                    (vec![0.0; w * n], vec![0.0; w * n], vec![0.0; w * n]);
                let xc = &x[c.start * din..c.end * din];
                self.net.open(open, xc, &mut u0, &mut pre);
                self.net.opening_gradient(
                    xc,
                    &pre,
                    &lam0[c.start * w..c.end * w],
                    &mut s,
                    &mut p[ml.opening.clone()],
                );
            }
        }

        // The hidden regularization's gradient (per-layer controls) on the finished sums,
        // each row on the part it holds in the butterfly: per element after the sum, as
        // `finish_gradient` adds it, so the same bits, at 1/D of the work per row.
        let split = !self.is_spline();
        let ctrl = LayerControls {
            theta,
            layout: &self.model_layout,
            part: &self.part,
            ghosts: &self.ghosts,
        };
        let (net, owned) = (&self.net, self.part.owned_layers.clone());
        let add_regularization = |seg: Range<usize>, vals: &mut [f64]| {
            if !split {
                return;
            }
            for n in owned {
                let block = ml.layer(n);
                let (lo, hi) = (block.start.max(seg.start), block.end.min(seg.end));
                if lo < hi {
                    let (a, e) = (lo - block.start, hi - block.start);
                    let g = &mut vals[lo - seg.start..hi - seg.start];
                    net.hidden_regularization_gradient(n, |m| &ctrl.layer(m)[a..e], g);
                }
            }
        };
        let finished = grid.tree_with(&mut parts, add_regularization);
        if split && finished {
            self.hidden_regularization = HiddenRegularization::Gradient;
        }
        let acc = &parts[0];
        grad.copy_from_slice(&acc[..ml.len]);
        if !ml.scale.is_empty() {
            grad[ml.scale.start] =
                ordered_sum(&self.comm.all_gather(&acc[ml.len..ml.len + nscale]));
        }
        let scalars = if self.part.is_last() {
            [acc[len - 2] * (1.0 / total as f64), acc[len - 1]]
        } else {
            [0.0, 0.0]
        };
        self.buf.chunk_sums = parts;
        (scalars, fstats, astats)
    }

    /// Per chunk, from λ_{n+1} and U_n of every owned layer: when `hidden`, ∂J/∂K_n +=
    /// S_n U_nᵀ, ∂J/∂b_n += S_n 1 into the chunk's vector (θ-layout), and with a learnable
    /// time scale h ⟨λ_{n+1}, σ(K_n U_n + b_n)⟩ at `scale_at` + the layer's place.
    /// Collective over the row (the λ of a rank's first point goes to the rank before).
    fn grid_layer_gradients(
        &mut self,
        theta: &[f64],
        cols: &[Range<usize>],
        parts: &mut [Vec<f64>],
        scale_at: usize,
        hidden: bool,
    ) {
        let h = self.net.step_size();
        let with_scale = !self.model_layout.scale.is_empty();
        let w = self.net.layout.shape.width;
        self.visit_owned_layers(theta, |i, range, step, u, next, d, scratch| {
            for (p, c) in parts.iter_mut().zip(cols) {
                let cr = c.start * w..c.end * w;
                let (uc, nc, g) = (&u[cr.clone()], &next[cr.clone()], &mut p[range.clone()]);
                if hidden {
                    // D is columnwise: a chunk's columns of D are its own D.
                    match d {
                        Some(d) => step.gradient_given(uc, &d[cr.clone()], nc, scratch, g),
                        None => step.gradient(uc, nc, scratch, g),
                    }
                }
                if with_scale {
                    p[scale_at + i] = h * step.increment_dot(&u[cr.clone()], &next[cr], scratch);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
