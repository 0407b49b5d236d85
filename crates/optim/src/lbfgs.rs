//! Limited-memory BFGS: the two-loop recursion for d = −H g.

use crate::Space;
use std::collections::VecDeque;

/// A curvature pair (s, y) of vectors.
pub type Pair = (Vec<f64>, Vec<f64>);

/// L-BFGS memory of the last m curvature pairs (s_k, y_k) = (x_{k+1} − x_k, g_{k+1} − g_k).
#[derive(Clone, Debug, PartialEq)]
pub struct Lbfgs {
    memory: usize,
    pairs: VecDeque<(Vec<f64>, Vec<f64>, f64)>, // (s, y, ρ = 1/yᵀs)
}

impl Lbfgs {
    pub fn new(memory: usize) -> Self {
        Lbfgs {
            memory: memory.max(1),
            pairs: VecDeque::new(),
        }
    }

    /// Number of stored pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Memory m.
    pub fn memory(&self) -> usize {
        self.memory
    }

    /// Forgets every pair (the next direction is steepest descent).
    pub fn reset(&mut self) {
        self.pairs.clear();
    }

    /// Stored pairs, oldest first: (s, y).
    pub fn pairs(&self) -> impl Iterator<Item = (&[f64], &[f64])> {
        self.pairs
            .iter()
            .map(|(s, y, _)| (s.as_slice(), y.as_slice()))
    }

    /// The stored pairs, oldest first, moved out (no copy).
    pub fn into_pairs(self) -> impl Iterator<Item = (Vec<f64>, Vec<f64>)> {
        self.pairs.into_iter().map(|(s, y, _)| (s, y))
    }

    /// Stores the pair (s, y) if it satisfies the curvature condition yᵀs > ε‖s‖‖y‖;
    /// otherwise skips it (keeping H positive definite). Returns whether it was stored.
    pub fn push(&mut self, s: Vec<f64>, y: Vec<f64>, space: &impl Space) -> bool {
        self.push_recycling(s, y, space).0
    }

    /// [`Lbfgs::push`], also returning the vectors the memory no longer holds: the oldest
    /// pair when a full memory took (s, y), or (s, y) itself when it was skipped (buffers
    /// for the next pair).
    pub fn push_recycling(
        &mut self,
        s: Vec<f64>,
        y: Vec<f64>,
        space: &impl Space,
    ) -> (bool, Option<Pair>) {
        let ys = space.dot(&y, &s);
        let scale = space.norm(&s) * space.norm(&y);
        if !(ys > 1e-12 * scale) || !ys.is_finite() {
            return (false, Some((s, y)));
        }
        let old = if self.pairs.len() == self.memory {
            self.pairs.pop_front().map(|(s, y, _)| (s, y))
        } else {
            None
        };
        self.pairs.push_back((s, y, 1.0 / ys));
        (true, old)
    }

    /// The quasi-Newton direction d = −H g by the two-loop recursion, with the initial
    /// Hessian approximation H₀ = (sᵀy / yᵀy) I from the newest pair (I when empty). The
    /// recursion's vector work (2m axpys, 2m + 2 dot products over m pairs) runs on the
    /// space's share of the elements and the result is completed once at the end
    /// ([`Space::complete`]): on a space that shares its work out over k processes each does
    /// 1/k of it, with the same bits in every element.
    pub fn direction(&self, g: &[f64], space: &impl Space) -> Vec<f64> {
        let mut q = Vec::new();
        self.direction_into(g, space, &mut q);
        q
    }

    /// [`Lbfgs::direction`] into `q` (a buffer to reuse, of any length).
    pub fn direction_into(&self, g: &[f64], space: &impl Space, q: &mut Vec<f64>) {
        q.clear();
        q.extend_from_slice(g);
        let mut alpha = vec![0.0; self.pairs.len()];
        for (i, (s, y, rho)) in self.pairs.iter().enumerate().rev() {
            alpha[i] = rho * space.dot(s, q);
            space.axpy(-alpha[i], y, q);
        }
        if let Some((s, y, _)) = self.pairs.back() {
            let gamma = space.dot(s, y) / space.dot(y, y);
            space.scale(gamma, q);
        }
        for (i, (s, y, rho)) in self.pairs.iter().enumerate() {
            let beta = rho * space.dot(y, q);
            space.axpy(alpha[i] - beta, s, q);
        }
        // −v and (−1)·v are the same bits.
        space.scale(-1.0, q);
        space.complete(q);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Local;

    #[test]
    fn recovers_the_inverse_hessian_of_a_quadratic() {
        // f = ½ xᵀ A x with A = diag(1, 4, 9): after n exact pairs along the axes, −H g = −A⁻¹ g.
        let a = [1.0, 4.0, 9.0];
        let mut l = Lbfgs::new(5);
        for i in 0..3 {
            let mut s = vec![0.0; 3];
            s[i] = 1.0;
            let y: Vec<f64> = s.iter().zip(&a).map(|(x, a)| a * x).collect();
            assert!(l.push(s, y, &Local));
        }
        let g = vec![2.0, 8.0, 27.0];
        let d = l.direction(&g, &Local);
        for (di, e) in d.iter().zip([-2.0, -2.0, -3.0]) {
            assert!((di - e).abs() < 1e-12, "{d:?}");
        }
    }

    #[test]
    fn skips_pairs_without_positive_curvature() {
        let mut l = Lbfgs::new(3);
        assert!(!l.push(vec![1.0, 0.0], vec![-1.0, 0.0], &Local));
        assert!(!l.push(vec![1.0, 0.0], vec![0.0, 1.0], &Local));
        assert!(l.is_empty());
        assert_eq!(l.direction(&[1.0, 2.0], &Local), vec![-1.0, -2.0]);
    }

    #[test]
    fn memory_is_bounded() {
        let mut l = Lbfgs::new(2);
        for k in 1..5 {
            l.push(vec![k as f64], vec![1.0], &Local);
        }
        assert_eq!(l.len(), 2);
    }
}
