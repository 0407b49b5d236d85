//! Data × layer parallelism: the objective of one row of a D × L grid of ranks.
//!
//! Every batch of B examples is cut into `chunks` fixed chunks (sizes ⌊B/K⌋ or ⌈B/K⌉, the
//! larger ones first); row r of the D rows owns the chunks [Σ_{q<r} k_q, Σ_{q≤r} k_q) with
//! k_q = ⌊K/D⌋ or ⌈K/D⌉ (the larger ones to the first rows), a contiguous range of examples.
//! The row runs the forward and adjoint solves over its L ranks on its own examples only:
//! every example's state columns are computed column by column, so they are the same bits
//! whatever the batch width. Every sum over examples (loss, correct count, the gradients of
//! the opening, the hidden layers and the classifier, the time-scale terms, the MGRIT
//! residual norms) is formed chunk by chunk and the chunk sums are added in chunk order by an
//! ordered chain over the rows of each column: row r receives the running sum from row r − 1,
//! adds its own chunks in order and passes it on; the last row sends the total to the whole
//! column. The grouping of every sum depends on K only, so a run gives the same bits for
//! every (D, L) with D ≤ K.

use super::{Objective, Value};
use crate::apps::{AdjointApp, ForwardApp};
use crate::ghosts::LayerControls;
use mgrit::{App, Comm, StepInfo};
use odenet::linalg::dot;
use odenet::loss::{loss_sum, Targets};
use odenet::network::ordered_sum;
use odenet::Step;
use std::ops::Range;

const CHAIN_TAG: i32 = 7101;

/// This rank's place in a D × L grid: its column (the ranks that hold the same layers in
/// every row, numbered by row), its row and the fixed chunking of every batch.
pub struct DataGrid<C: Comm> {
    /// The column communicator: rank = row, size = D.
    pub col: C,
    /// Chunks per batch, K ≥ D.
    pub chunks: usize,
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
        DataGrid { col, chunks }
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

    /// Σ over every chunk of the batch, in chunk order, of the chunk vectors: `parts` holds
    /// this row's (each of the same length on every rank of the column), in chunk order. The
    /// first chunk's vector starts the sum; the total is on every rank of the column.
    /// Collective over the column.
    pub fn chain(&self, parts: &[Vec<f64>]) -> Vec<f64> {
        let (row, rows) = (self.row(), self.rows());
        let mut acc = (row > 0).then(|| self.col.recv(row - 1, CHAIN_TAG));
        for p in parts {
            match acc.as_mut() {
                None => acc = Some(p.clone()),
                Some(a) => {
                    for (x, y) in a.iter_mut().zip(p) {
                        *x += y;
                    }
                }
            }
        }
        let acc = acc.expect("every row owns a chunk");
        if rows == 1 {
            return acc;
        }
        if row + 1 < rows {
            self.col.send(row + 1, CHAIN_TAG, acc);
            self.col.wait_sends();
            self.col.all_gather(&[])
        } else {
            self.col.all_gather(&acc)
        }
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

/// An application whose residual norms are per chunk and summed in chunk order across the
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
        let per_chunk: Vec<Vec<f64>> = (0..k)
            .map(|j| (0..points).map(|i| parts[i * k + j]).collect())
            .collect();
        *parts = self.grid.chain(&per_chunk);
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
    /// loss and correct count per chunk, summed in chunk order over the rows.
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
        };
        sweep.solve(&mut app);
        self.buf.scratch = app.scratch;
        let mut out = [0.0, 0.0];
        if part.is_last() {
            let mut logits = vec![0.0; sh.classes * batch];
            let u = sweep.state(sh.layers).expect("the last rank owns U_N");
            net.classify(&theta[self.model_layout.classifier.clone()], u, &mut logits);
            let parts: Vec<Vec<f64>> = cols
                .iter()
                .map(|r| {
                    let z = &logits[r.start * sh.classes..r.end * sh.classes];
                    let (l, c) =
                        loss_sum(net.loss, sh.classes, z, slice_targets(yr, r.clone()), None);
                    vec![l, c as f64]
                })
                .collect();
            let s = grid.chain(&parts);
            out = [s[0] / total as f64, s[1] / total as f64];
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
        let (scalars, reg, fstats, astats) = if self.is_spline() {
            let mut grad_model = vec![0.0; self.model_layout.len];
            let mut coef_grad = vec![0.0; self.layout.layers.len()];
            let s = self.grid_propagate(grid, &theta, xr, yr, &cols, total, &mut grad_model);
            let grads = Some((&mut grad_model[..], &mut coef_grad[..]));
            let reg = self.regularization_terms(params, &theta, grads);
            self.controls.pull_back(
                &grad_model,
                (&self.model_layout, &self.layout, &self.part),
                &coef_grad,
                grad,
                &self.comm,
            );
            (s.0, reg, s.1, s.2)
        } else {
            let s = self.grid_propagate(grid, &theta, xr, yr, &cols, total, grad);
            let reg = self.regularization_terms(params, &theta, Some((grad, &mut [])));
            (s.0, reg, s.1, s.2)
        };
        let s = self.broadcast_from_last(&scalars);
        self.count_steps(&fstats, &astats);
        Value {
            objective: s[0] + reg,
            loss: s[0],
            correct: s[1] as usize,
            count: total,
            fwd_res: fstats.residuals.last().copied(),
            adj_res: astats.residuals.last().copied(),
        }
    }

    /// The row's forward and adjoint solves on its examples `x` (chunks `cols` of a batch of
    /// `total`), then every sum over examples chunk by chunk, chained over the rows: the
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
        let mut fwd = ForwardApp {
            net: &self.net,
            ctrl: LayerControls {
                theta,
                layout: &self.model_layout,
                part: &self.part,
                ghosts: &self.ghosts,
            },
            open: &theta[ml.opening.clone()],
            x,
            batch,
            scratch: std::mem::take(&mut self.buf.scratch),
        };
        let fstats = self.forward.solve(&mut Chunked {
            inner: &mut fwd,
            grid,
            cols,
            width: w,
        });
        self.buf.scratch = fwd.scratch;

        // One vector per chunk: [θ-gradient | time-scale terms of the owned layers | loss, correct].
        let nscale = if ml.scale.is_empty() {
            0
        } else {
            self.part.owned_layers.len()
        };
        let len = ml.len + nscale + 2;
        let mut parts = vec![vec![0.0; len]; cols.len()];
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
            grad: None,
        };
        let astats = self.adjoint.solve(&mut Chunked {
            inner: &mut adj,
            grid,
            cols,
            width: w,
        });
        self.buf.scratch = adj.scratch;
        self.grid_layer_gradients(theta, cols, &mut parts, ml.len);
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

        let acc = grid.chain(&parts);
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
        (scalars, fstats, astats)
    }

    /// Per chunk, from λ_{n+1} and U_n of every owned layer: ∂J/∂K_n += S_n U_nᵀ,
    /// ∂J/∂b_n += S_n 1 into the chunk's vector (θ-layout), and with a learnable time scale
    /// h ⟨λ_{n+1}, σ(K_n U_n + b_n)⟩ at `scale_at` + the layer's place. Collective over the
    /// row (the λ of a rank's first point goes to the rank before).
    fn grid_layer_gradients(
        &mut self,
        theta: &[f64],
        cols: &[Range<usize>],
        parts: &mut [Vec<f64>],
        scale_at: usize,
    ) {
        let h = self.net.step_size();
        let with_scale = !self.model_layout.scale.is_empty();
        let w = self.net.layout.shape.width;
        self.visit_owned_layers(theta, |i, range, step, u, next, scratch| {
            for (p, c) in parts.iter_mut().zip(cols) {
                let cr = c.start * w..c.end * w;
                step.gradient(
                    &u[cr.clone()],
                    &next[cr.clone()],
                    scratch,
                    &mut p[range.clone()],
                );
                if with_scale {
                    p[scale_at + i] = h * step.increment_dot(&u[cr.clone()], &next[cr], scratch);
                }
            }
        });
    }
}
