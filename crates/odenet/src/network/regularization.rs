//! The regularization R(θ) of J: γ_tik/2 ‖θ‖² over the opening and hidden layers,
//! γ_ddt/2 Σ_n ‖(θ_{n+1} − θ_n)/h‖² between consecutive hidden layers and γ_class/2 ‖θ_c‖²
//! on the classifier, term by term in layer order, with their gradients.

use super::Network;
use crate::linalg::dot;
use crate::network::ordered_sum;
use std::ops::Range;

/// Layers whose squared-distance chains [`Network::hidden_regularization`] runs side by side.
const GROUP: usize = 8;

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
    /// Each layer's gradient is one pass over its block doing the updates of
    /// `layer_regularization` per element in the same order. The squared distance
    /// ‖θ_{n+1} − θ_n‖² is summed in element order as there, one chain of dependent additions
    /// per layer; here the chains of up to eight layers run side by side in one loop, so that
    /// they overlap instead of waiting on each other.
    pub fn hidden_regularization<'a>(
        &self,
        owned: Range<usize>,
        layer: impl Fn(usize) -> &'a [f64],
        mut grad: Option<&mut [f64]>,
        block: impl Fn(usize) -> Range<usize>,
        terms: &mut Vec<f64>,
    ) {
        let n_layers = self.layout.shape.layers;
        let r = &self.regularization;
        let h = self.step_size();
        let inv_h2 = 1.0 / (h * h);
        let mut start = owned.start;
        while start < owned.end {
            let group = start..(start + GROUP).min(owned.end);
            // ‖θ_{n+1} − θ_n‖² of the group's layers that have a successor.
            let with_next = group.start..group.end.min(n_layers.saturating_sub(1));
            // A short group repeats its last pair in the spare chains, whose sums go unused.
            let d2 = if with_next.is_empty() {
                [-0.0; GROUP]
            } else {
                squared_distances(std::array::from_fn(|k| {
                    let n = (with_next.start + k).min(with_next.end - 1);
                    (layer(n), layer(n + 1))
                }))
            };
            for (k, n) in group.clone().enumerate() {
                let cur = layer(n);
                let mut value = 0.5 * r.tikhonov * dot(cur, cur);
                if n + 1 < n_layers {
                    value += 0.5 * r.ddt * d2[k] * inv_h2;
                }
                terms.push(value);
                if let Some(g) = grad.as_deref_mut() {
                    self.hidden_regularization_gradient(n, &layer, &mut g[block(n)]);
                }
            }
            start = group.end;
        }
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

/// Σ_i (b_i − a_i)² for each of the eight pairs (a, b) of equal-length slices: summed in
/// element order from −0, the bits of `a.iter().zip(b).map(|(x, y)| (y − x) * (y − x)).sum()`;
/// the pairs' chains of additions advance together, one element of every pair per step.
fn squared_distances(pairs: [(&[f64], &[f64]); GROUP]) -> [f64; GROUP] {
    let len = pairs[0].0.len();
    assert!(pairs.iter().all(|(a, b)| a.len() == len && b.len() == len));
    let mut acc = [-0.0f64; GROUP];
    for i in 0..len {
        for (acc, (a, b)) in acc.iter_mut().zip(&pairs) {
            let t = b[i] - a[i];
            *acc += t * t;
        }
    }
    acc
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
