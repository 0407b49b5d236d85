//! The regularization R(θ) of J: γ_tik/2 ‖θ‖² over the opening and hidden layers,
//! γ_ddt/2 Σ_n ‖(θ_{n+1} − θ_n)/h‖² between consecutive hidden layers and γ_class/2 ‖θ_c‖²
//! on the classifier, term by term in layer order, with their gradients.

use super::Network;
use crate::linalg::dot;
use crate::network::ordered_sum;
use std::ops::Range;

/// Hidden layers whose regularization [`Network::group_regularization`] forms in one pass,
/// side by side.
pub const HIDDEN_GROUP: usize = 8;

/// The groups of [`Network::group_regularization`] that cover `owned`: [`HIDDEN_GROUP`]
/// layers each from `owned.start`, the last one shorter. (Any grouping gives the same bits;
/// this one is the one every caller uses.)
pub fn hidden_groups(owned: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    owned
        .clone()
        .step_by(HIDDEN_GROUP)
        .map(move |s| s..(s + HIDDEN_GROUP).min(owned.end))
}

impl Network {
    /// γ_tik/2 ‖(W_in, b_in)‖², adding its gradient into `grad` (the opening block) when given.
    pub fn opening_regularization(&self, open: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let t = self.regularization.tikhonov;
        if let Some(g) = grad {
            for (gi, &v) in g.iter_mut().zip(open) {
                *gi += t * v;
            }
        }
        0.5 * t * dot(open, open)
    }

    /// The terms of hidden layer n: γ_tik/2 ‖θ_n‖² + γ_ddt/2 ‖(θ_{n+1} − θ_n)/h‖² (the second
    /// when θ_{n+1} exists). Adds into `grad` (θ_n's block) the derivative of every term that
    /// involves θ_n, in the order: Tikhonov, the pair (θ_{n−1}, θ_n), the pair (θ_n, θ_{n+1}).
    /// This is the definition; evaluations call [`Network::hidden_regularization`], which
    /// gives its bits for a range of layers (tested), so serial and distributed agree.
    pub fn layer_regularization(
        &self,
        prev: Option<&[f64]>,
        cur: &[f64],
        next: Option<&[f64]>,
        grad: Option<&mut [f64]>,
    ) -> f64 {
        let r = &self.regularization;
        let h = self.step_size();
        let inv_h2 = 1.0 / (h * h);
        let mut value = 0.5 * r.tikhonov * dot(cur, cur);
        if let Some(nx) = next {
            let d2: f64 = cur.iter().zip(nx).map(|(x, y)| (y - x) * (y - x)).sum();
            value += 0.5 * r.ddt * d2 * inv_h2;
        }
        if let Some(g) = grad {
            for (gi, &v) in g.iter_mut().zip(cur) {
                *gi += r.tikhonov * v;
            }
            if r.ddt != 0.0 {
                if let Some(pv) = prev {
                    for ((gi, &c), &p) in g.iter_mut().zip(cur).zip(pv) {
                        *gi += r.ddt * (c - p) * inv_h2;
                    }
                }
                if let Some(nx) = next {
                    for ((gi, &c), &n) in g.iter_mut().zip(cur).zip(nx) {
                        *gi -= r.ddt * (n - c) * inv_h2;
                    }
                }
            }
        }
        value
    }

    /// The terms of the hidden layers `owned` (of the network's N), appended to `terms` in
    /// layer order, and their gradient added into `grad` (a flat vector whose block for layer
    /// n is `block(n)`) when given: the bits of [`Network::layer_regularization`] called for
    /// each layer, computed faster. θ_n is `layer(n)` for n in `owned` and its neighbours.
    ///
    /// The layers go in groups of [`HIDDEN_GROUP`] from `owned.start`
    /// ([`Network::group_regularization`]), one pass over a group's blocks for its terms and
    /// gradient.
    pub fn hidden_regularization<'a>(
        &self,
        owned: Range<usize>,
        layer: impl Fn(usize) -> &'a [f64],
        mut grad: Option<&mut [f64]>,
        block: impl Fn(usize) -> Range<usize>,
        terms: &mut Vec<f64>,
    ) {
        for group in hidden_groups(owned) {
            let blocks = grad.as_deref_mut().map(|g| {
                let (first, last) = (block(group.start), block(group.end - 1));
                &mut g[first.start..last.end]
            });
            let t = self.group_regularization(group.clone(), &layer, blocks);
            terms.extend_from_slice(&t[..group.len()]);
        }
    }

    /// The terms of the hidden layers `group` (at most [`HIDDEN_GROUP`] consecutive ones) in
    /// its first `group.len()` entries, and their gradient added into `grad` when given (the
    /// group's blocks side by side, θ_n's at (n − group.start)·len): per layer the bits of
    /// [`Network::layer_regularization`]. θ_n is `layer(n)` for n in the group and its
    /// neighbours.
    ///
    /// One pass over the group's blocks forms, per layer, ‖θ_n‖² (as [`dot`] sums it),
    /// ‖θ_{n+1} − θ_n‖² (in element order, one chain of additions per layer) and the gradient
    /// updates of `layer_regularization` per element in its order. Where the CPU has AVX-512
    /// the group's layers go side by side in vector registers, eight elements of every layer
    /// per step, so that the chains of up to eight layers overlap (the squared differences are
    /// transposed to one layer per lane before they are added).
    pub fn group_regularization<'a>(
        &self,
        group: Range<usize>,
        layer: &impl Fn(usize) -> &'a [f64],
        grad: Option<&mut [f64]>,
    ) -> [f64; HIDDEN_GROUP] {
        let n_layers = self.layout.shape.layers;
        let r = &self.regularization;
        let h = self.step_size();
        let inv_h2 = 1.0 / (h * h);
        assert!(!group.is_empty() && group.len() <= HIDDEN_GROUP && group.end <= n_layers);
        let cur: Vec<&[f64]> = group.clone().map(layer).collect();
        let rows = GroupRows {
            prev: (group.start > 0).then(|| layer(group.start - 1)),
            cur: &cur,
            next: (group.end < n_layers).then(|| layer(group.end)),
        };
        let sums = group_sums(
            [r.tikhonov, r.ddt, inv_h2],
            &rows,
            grad.map(|g| (g, r.ddt != 0.0)),
        );
        let mut terms = [0.0; HIDDEN_GROUP];
        for (k, n) in group.enumerate() {
            let mut value = 0.5 * r.tikhonov * sums.squares[k];
            if n + 1 < n_layers {
                value += 0.5 * r.ddt * sums.distances[k] * inv_h2;
            }
            terms[k] = value;
        }
        terms
    }

    /// Adds into `g` (θ_n's block of the gradient) the derivative of the hidden terms that
    /// involve θ_n = `layer(n)`: γ_tik θ_n + γ_ddt (θ_n − θ_{n−1})/h² − γ_ddt (θ_{n+1} − θ_n)/h²,
    /// per element in this order, as [`Network::layer_regularization`] and
    /// [`Network::hidden_regularization`] add it (they call this). An adjoint sweep that has
    /// just completed layer n's data gradient adds it there, while the block is in cache,
    /// with the same bits.
    pub fn hidden_regularization_gradient<'a>(
        &self,
        n: usize,
        layer: impl Fn(usize) -> &'a [f64],
        g: &mut [f64],
    ) {
        let n_layers = self.layout.shape.layers;
        let r = &self.regularization;
        let h = self.step_size();
        let inv_h2 = 1.0 / (h * h);
        let prev = (n > 0 && r.ddt != 0.0).then(|| layer(n - 1));
        let next = (n + 1 < n_layers && r.ddt != 0.0).then(|| layer(n + 1));
        layer_regularization_gradient(r.tikhonov, r.ddt, inv_h2, prev, layer(n), next, g);
    }

    /// γ_class/2 ‖(W_c, b_c)‖², adding its gradient into `grad` (the classifier block).
    pub fn classifier_regularization(&self, class: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let c = self.regularization.classifier;
        if let Some(g) = grad {
            for (gi, &v) in g.iter_mut().zip(class) {
                *gi += c * v;
            }
        }
        0.5 * c * dot(class, class)
    }

    /// The regularization terms in layer order: [opening, layer 0, …, layer N−1, classifier].
    /// Adds their gradient into `grad` when given. Their sum, in this order, is the
    /// regularization value.
    pub fn regularization_terms(&self, theta: &[f64], mut grad: Option<&mut [f64]>) -> Vec<f64> {
        let l = &self.layout;
        let n = l.shape.layers;
        let mut terms = Vec::with_capacity(n + 2);
        terms.push(self.opening_regularization(
            &theta[l.opening()],
            grad.as_deref_mut().map(|g| &mut g[l.opening()]),
        ));
        self.hidden_regularization(
            0..n,
            |i| &theta[l.layer(i)],
            grad.as_deref_mut(),
            |i| l.layer(i),
            &mut terms,
        );
        terms.push(self.classifier_regularization(
            &theta[l.classifier()],
            grad.map(|g| &mut g[l.classifier()]),
        ));
        terms
    }

    /// The regularization terms of J at θ (summed in layer order); adds their gradient into
    /// `grad` when given.
    pub fn regularization(&self, theta: &[f64], grad: Option<&mut [f64]>) -> f64 {
        ordered_sum(&self.regularization_terms(theta, grad))
    }
}

/// θ of a group of consecutive hidden layers and of its neighbours, all of one length.
struct GroupRows<'r, 'a> {
    /// θ of the layer before the group, if any.
    prev: Option<&'a [f64]>,
    /// θ of the group's layers (1 to [`HIDDEN_GROUP`]).
    cur: &'r [&'a [f64]],
    /// θ of the layer after the group, if any.
    next: Option<&'a [f64]>,
}

impl GroupRows<'_, '_> {
    /// θ of the group's layer k − 1 (k = 0: the layer before), if it exists.
    fn before(&self, k: usize) -> Option<&[f64]> {
        if k == 0 {
            self.prev
        } else {
            Some(self.cur[k - 1])
        }
    }

    /// θ of the group's layer k + 1 (k = last: the layer after), if it exists.
    fn after(&self, k: usize) -> Option<&[f64]> {
        self.cur.get(k + 1).copied().or(if k + 1 == self.cur.len() {
            self.next
        } else {
            None
        })
    }
}

/// Per layer k of a group: ‖θ_k‖² and, where θ_{k+1} exists, ‖θ_{k+1} − θ_k‖² (else −0).
struct GroupSums {
    squares: [f64; HIDDEN_GROUP],
    distances: [f64; HIDDEN_GROUP],
}

/// The sums of a group's layers ([`GroupSums`]): ‖θ_k‖² as [`dot`]`(θ_k, θ_k)`, the squared
/// distance summed in element order from −0. With `grad` = (the group's gradient blocks side
/// by side, whether γ_ddt ≠ 0), adds each layer's regularization gradient into its block
/// per element as [`layer_regularization_gradient`] does (the γ_ddt updates only when
/// γ_ddt ≠ 0). `coef` is [γ_tik, γ_ddt, 1/h²].
fn group_sums(coef: [f64; 3], rows: &GroupRows, grad: Option<(&mut [f64], bool)>) -> GroupSums {
    let len = rows.cur[0].len();
    assert!(rows.cur.len() <= HIDDEN_GROUP);
    assert!(rows
        .cur
        .iter()
        .chain(&rows.prev)
        .chain(&rows.next)
        .all(|r| r.len() == len));
    if let Some((g, _)) = &grad {
        assert_eq!(g.len(), rows.cur.len() * len);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::activation::avx512() {
        // SAFETY: the CPU has AVX-512 F; the lengths are checked above.
        return unsafe { wide_group::sums(coef, rows, grad) };
    }
    portable_group_sums(coef, rows, grad)
}

/// [`group_sums`] layer by layer: the definition the wide kernel is tested against.
fn portable_group_sums(
    [tikhonov, ddt, inv_h2]: [f64; 3],
    rows: &GroupRows,
    mut grad: Option<(&mut [f64], bool)>,
) -> GroupSums {
    let len = rows.cur[0].len();
    let mut sums = GroupSums {
        squares: [0.0; HIDDEN_GROUP],
        distances: [-0.0; HIDDEN_GROUP],
    };
    for (k, &cur) in rows.cur.iter().enumerate() {
        sums.squares[k] = dot(cur, cur);
        if let Some(next) = rows.after(k) {
            let mut acc = -0.0;
            for (a, b) in cur.iter().zip(next) {
                let t = b - a;
                acc += t * t;
            }
            sums.distances[k] = acc;
        }
        if let Some((g, with_ddt)) = grad.as_mut() {
            let (prev, next) = if *with_ddt {
                (rows.before(k), rows.after(k))
            } else {
                (None, None)
            };
            let g = &mut g[k * len..(k + 1) * len];
            regularization_gradient_loops(tikhonov, ddt, inv_h2, prev, cur, next, g);
        }
    }
    sums
}

/// The AVX-512 kernel of [`group_sums`].
#[cfg(target_arch = "x86_64")]
mod wide_group {
    use super::{regularization_gradient_loops, GroupRows, GroupSums, HIDDEN_GROUP};
    use crate::linalg::direct::x86::transpose8;
    use std::arch::x86_64::*;

    /// [`super::group_sums`] with the group's layers side by side: per block of eight
    /// elements, each layer's block of θ is loaded once and serves its own square, its
    /// gradient update and, as the "before" and "after" of its neighbours, theirs. Each value
    /// is formed by the operations of the portable sums, lane for lane: the squares' eight
    /// lanes are [`crate::linalg::dot`]'s eight chains, combined in its order; the squared
    /// differences of the block are transposed to one layer per lane and added in element
    /// order. The last `len mod 8` elements go through the portable loops.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; the rows and `grad` have the lengths [`super::group_sums`]
    /// checks.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn sums(
        [tikhonov, ddt, inv_h2]: [f64; 3],
        rows: &GroupRows,
        mut grad: Option<(&mut [f64], bool)>,
    ) -> GroupSums {
        let g_count = rows.cur.len();
        let len = rows.cur[0].len();
        let full = len / 8 * 8;
        // Row j + 1 is the group's layer j; row 0 the layer before, row g + 1 the one after;
        // missing rows (and rows past them) repeat a present one, so that every load is in
        // bounds. Their values enter only lanes and chains that are not used.
        let present: [Option<&[f64]>; HIDDEN_GROUP + 2] = std::array::from_fn(|j| match j {
            0 => rows.prev,
            j if j <= g_count => Some(rows.cur[j - 1]),
            j if j == g_count + 1 => rows.next,
            _ => None,
        });
        let ptr: [*const f64; HIDDEN_GROUP + 2] = std::array::from_fn(|j| {
            present[j]
                .unwrap_or(rows.cur[(j.max(1) - 1).min(g_count - 1)])
                .as_ptr()
        });
        let has_next: [bool; HIDDEN_GROUP] = std::array::from_fn(|k| present[k + 2].is_some());
        let with_ddt = grad.as_ref().is_some_and(|(_, d)| *d);
        let has_prev: [bool; HIDDEN_GROUP] =
            std::array::from_fn(|k| with_ddt && present[k].is_some());
        let has_next_g: [bool; HIDDEN_GROUP] = std::array::from_fn(|k| with_ddt && has_next[k]);
        let gptr = grad.as_mut().map(|(g, _)| g.as_mut_ptr());
        let (vt, vd, vi) = (
            _mm512_set1_pd(tikhonov),
            _mm512_set1_pd(ddt),
            _mm512_set1_pd(inv_h2),
        );
        let interior = g_count == HIDDEN_GROUP && present.iter().all(Option::is_some);
        let blocks = Blocks {
            ptr,
            gptr,
            coef: [vt, vd, vi],
            full,
            len,
            g_count,
            has_prev,
            has_next: has_next_g,
        };
        // SAFETY: every row and gradient block has len ≥ full elements (checked by the
        // caller). A whole group between two layers (every group but a network's first and
        // last and a range's short one) takes the loop without the per-layer cases.
        let (squares, distances) = unsafe {
            match (interior, gptr.is_some(), with_ddt) {
                (true, false, _) => block_loop::<true, false, false>(&blocks),
                (true, true, false) => block_loop::<true, true, false>(&blocks),
                (true, true, true) => block_loop::<true, true, true>(&blocks),
                (false, ..) => block_loop::<false, false, false>(&blocks),
            }
        };
        let mut out = GroupSums {
            squares: [0.0; HIDDEN_GROUP],
            distances: [-0.0; HIDDEN_GROUP],
        };
        let mut dist = [0.0; HIDDEN_GROUP];
        // SAFETY: an array of eight f64 is 64 bytes.
        unsafe { _mm512_storeu_pd(dist.as_mut_ptr(), distances) };
        for (k, &cur) in rows.cur.iter().enumerate() {
            let mut acc = [0.0; 8];
            // SAFETY: as above.
            unsafe { _mm512_storeu_pd(acc.as_mut_ptr(), squares[k]) };
            let tail: f64 = cur[full..].iter().map(|x| x * x).sum();
            out.squares[k] = ((acc[0] + acc[1]) + (acc[2] + acc[3]))
                + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
                + tail;
            if has_next[k] {
                let next = rows.after(k).expect("present");
                let mut d = dist[k];
                for (a, b) in cur[full..].iter().zip(&next[full..]) {
                    let t = b - a;
                    d += t * t;
                }
                out.distances[k] = d;
            }
            if let Some((g, with_ddt)) = grad.as_mut() {
                let (prev, next) = if *with_ddt {
                    (rows.before(k), rows.after(k))
                } else {
                    (None, None)
                };
                let g = &mut g[k * len + full..(k + 1) * len];
                regularization_gradient_loops(
                    tikhonov,
                    ddt,
                    inv_h2,
                    prev.map(|p| &p[full..]),
                    &cur[full..],
                    next.map(|x| &x[full..]),
                    g,
                );
            }
        }
        out
    }

    /// What [`block_loop`] reads and writes: the rows' pointers (as in [`sums`]), the
    /// gradient blocks', [γ_tik, γ_ddt, 1/h²] in every lane, the elements in whole blocks of
    /// eight and a row's length, and per layer of the group whether its gradient takes the
    /// γ_ddt update with the layer before and with the layer after.
    struct Blocks {
        ptr: [*const f64; HIDDEN_GROUP + 2],
        gptr: Option<*mut f64>,
        coef: [__m512d; 3],
        full: usize,
        len: usize,
        g_count: usize,
        has_prev: [bool; HIDDEN_GROUP],
        has_next: [bool; HIDDEN_GROUP],
    }

    /// The per-block loop of [`sums`] over the first `full` elements; returns the squares'
    /// and the distances' accumulators. With `UNIFORM` (a whole group with both neighbours)
    /// every layer takes the same cases, known at compile time: the gradient when `GRAD`,
    /// with its γ_ddt updates when `DDT`; otherwise each layer's cases are tested as `b`
    /// gives them. The same operations either way.
    ///
    /// # Safety
    /// As [`sums`]: every row and gradient block has `len` ≥ `full` elements.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn block_loop<const UNIFORM: bool, const GRAD: bool, const DDT: bool>(
        b: &Blocks,
    ) -> ([__m512d; HIDDEN_GROUP], __m512d) {
        let [vt, vd, vi] = b.coef;
        let mut squares = [_mm512_setzero_pd(); HIDDEN_GROUP];
        let mut distances = _mm512_set1_pd(-0.0);
        let mut i0 = 0;
        while i0 < b.full {
            // SAFETY: i0 + 8 ≤ len for every row and every gradient block.
            unsafe {
                let v: [__m512d; HIDDEN_GROUP + 2] =
                    std::array::from_fn(|j| _mm512_loadu_pd(b.ptr[j].add(i0)));
                let mut diff2 = [_mm512_setzero_pd(); HIDDEN_GROUP];
                for k in 0..HIDDEN_GROUP {
                    let c = v[k + 1];
                    squares[k] = _mm512_add_pd(squares[k], _mm512_mul_pd(c, c));
                    let t = _mm512_sub_pd(v[k + 2], c);
                    diff2[k] = _mm512_mul_pd(t, t);
                    let gp = match b.gptr {
                        Some(gp) if (UNIFORM && GRAD) || (!UNIFORM && k < b.g_count) => gp,
                        _ => continue,
                    };
                    let gk = gp.add(k * b.len + i0);
                    let mut x = _mm512_add_pd(_mm512_loadu_pd(gk), _mm512_mul_pd(vt, c));
                    if (UNIFORM && DDT) || (!UNIFORM && b.has_prev[k]) {
                        let d = _mm512_mul_pd(vd, _mm512_sub_pd(c, v[k]));
                        x = _mm512_add_pd(x, _mm512_mul_pd(d, vi));
                    }
                    if (UNIFORM && DDT) || (!UNIFORM && b.has_next[k]) {
                        x = _mm512_sub_pd(x, _mm512_mul_pd(_mm512_mul_pd(vd, t), vi));
                    }
                    _mm512_storeu_pd(gk, x);
                }
                for column in transpose8(diff2) {
                    distances = _mm512_add_pd(distances, column);
                }
            }
            i0 += 8;
        }
        (squares, distances)
    }
}

/// The gradient updates of [`Network::layer_regularization`] for θ_n = `cur` into its block
/// `g`, in one pass: per element g += γ_tik c, then (given θ_{n−1}) g += γ_ddt (c − p)/h²,
/// then (given θ_{n+1}) g −= γ_ddt (n − c)/h², each rounded as there. One branch-free loop
/// per case, vectorized (eight lanes where the CPU has AVX-512: the same operations per
/// element, so the same bits).
fn layer_regularization_gradient(
    tikhonov: f64,
    ddt: f64,
    inv_h2: f64,
    prev: Option<&[f64]>,
    cur: &[f64],
    next: Option<&[f64]>,
    g: &mut [f64],
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn wide(
            tikhonov: f64,
            ddt: f64,
            inv_h2: f64,
            prev: Option<&[f64]>,
            cur: &[f64],
            next: Option<&[f64]>,
            g: &mut [f64],
        ) {
            regularization_gradient_loops(tikhonov, ddt, inv_h2, prev, cur, next, g)
        }
        if crate::activation::avx512() {
            // SAFETY: the CPU has AVX-512 F, AVX2 and FMA.
            return unsafe { wide(tikhonov, ddt, inv_h2, prev, cur, next, g) };
        }
    }
    regularization_gradient_loops(tikhonov, ddt, inv_h2, prev, cur, next, g)
}

/// The loops of [`layer_regularization_gradient`].
#[inline(always)]
fn regularization_gradient_loops(
    tikhonov: f64,
    ddt: f64,
    inv_h2: f64,
    prev: Option<&[f64]>,
    cur: &[f64],
    next: Option<&[f64]>,
    g: &mut [f64],
) {
    let n = g.len().min(cur.len());
    let (g, cur) = (&mut g[..n], &cur[..n]);
    let (prev, next) = (prev.map(|p| &p[..n]), next.map(|x| &x[..n]));
    match (prev, next) {
        (Some(p), Some(nx)) => {
            for (((gi, &c), &pi), &ni) in g.iter_mut().zip(cur).zip(p).zip(nx) {
                let mut v = *gi + tikhonov * c;
                v += ddt * (c - pi) * inv_h2;
                v -= ddt * (ni - c) * inv_h2;
                *gi = v;
            }
        }
        (Some(p), None) => {
            for ((gi, &c), &pi) in g.iter_mut().zip(cur).zip(p) {
                let mut v = *gi + tikhonov * c;
                v += ddt * (c - pi) * inv_h2;
                *gi = v;
            }
        }
        (None, Some(nx)) => {
            for ((gi, &c), &ni) in g.iter_mut().zip(cur).zip(nx) {
                let mut v = *gi + tikhonov * c;
                v -= ddt * (ni - c) * inv_h2;
                *gi = v;
            }
        }
        (None, None) => {
            for (gi, &c) in g.iter_mut().zip(cur) {
                *gi += tikhonov * c;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradient_tests::Mix;

    /// Values over 2⁻²⁰…2²⁰ in magnitude, so that sums taken in another order, or products
    /// fused into additions, round differently somewhere.
    fn spread(rng: &mut Mix, len: usize) -> Vec<f64> {
        (0..len)
            .map(|_| rng.next() * (rng.next() * 20.0).exp2())
            .collect()
    }

    fn bits(v: &[f64]) -> Vec<u64> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The dispatched group sums (the AVX-512 kernel where the CPU has it) against the
    /// portable ones, layer by layer: the squares, the distances and the gradient, for every
    /// group size, with and without the layers before and after, the γ_ddt updates and a
    /// gradient, over lengths with and without a tail of fewer than eight elements. Reports
    /// inconclusive (fails) if the inputs do not tell the element order of the distances from
    /// another order.
    #[test]
    fn the_group_sums_give_the_portable_bits() {
        let coef = [3e-3, 7e-2, 1.0 / (0.03f64 * 0.03)];
        let mut rng = Mix(17);
        let (mut checked, mut order_tells) = (0, false);
        for len in [1, 5, 8, 13, 30, 72, 4160] {
            for g_count in 1..=HIDDEN_GROUP {
                for (with_prev, with_next) in [(true, true), (false, true), (true, false)] {
                    let layers: Vec<Vec<f64>> =
                        (0..g_count + 2).map(|_| spread(&mut rng, len)).collect();
                    let cur: Vec<&[f64]> = layers[1..=g_count].iter().map(|v| &v[..]).collect();
                    let rows = GroupRows {
                        prev: with_prev.then(|| &layers[0][..]),
                        cur: &cur,
                        next: with_next.then(|| &layers[g_count + 1][..]),
                    };
                    for grad in [None, Some(true), Some(false)] {
                        let g0 = spread(&mut rng, g_count * len);
                        let (mut want_g, mut got_g) = (g0.clone(), g0.clone());
                        let want =
                            portable_group_sums(coef, &rows, grad.map(|d| (&mut want_g[..], d)));
                        let got = group_sums(coef, &rows, grad.map(|d| (&mut got_g[..], d)));
                        let what = format!("len {len}, {g_count} layers, prev {with_prev}, next {with_next}, grad {grad:?}");
                        assert_eq!(
                            bits(&got.squares[..g_count]),
                            bits(&want.squares[..g_count]),
                            "squares, {what}"
                        );
                        assert_eq!(
                            bits(&got.distances[..g_count]),
                            bits(&want.distances[..g_count]),
                            "distances, {what}"
                        );
                        assert_eq!(bits(&got_g), bits(&want_g), "gradient, {what}");
                        if grad.is_some() {
                            assert_ne!(bits(&got_g), bits(&g0), "no gradient added, {what}");
                        }
                        checked += 1;
                    }
                    // The same distance summed pairwise differs somewhere: the check can see
                    // the order.
                    let d: Vec<f64> = cur[0]
                        .iter()
                        .zip(rows.after(0).unwrap_or(cur[0]))
                        .map(|(a, b)| (b - a) * (b - a))
                        .collect();
                    let pairwise = d.chunks(2).map(|c| c.iter().sum::<f64>()).sum::<f64>();
                    order_tells |= g_count > 1
                        && pairwise.to_bits()
                            != portable_group_sums(coef, &rows, None).distances[0].to_bits();
                }
            }
        }
        assert!(
            order_tells,
            "inconclusive: the inputs do not tell summation orders apart"
        );
        assert_eq!(checked, 7 * HIDDEN_GROUP * 3 * 3);
    }
}
