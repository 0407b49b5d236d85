//! First-order stochastic optimizers: SGD with momentum, and Adam.

/// SGD with heavy-ball momentum: v ← μ v + g, x ← x − η v.
#[derive(Clone, Debug, PartialEq)]
pub struct Sgd {
    pub momentum: f64,
    pub velocity: Vec<f64>,
}

impl Sgd {
    pub fn new(len: usize, momentum: f64) -> Self {
        Sgd {
            momentum,
            velocity: vec![0.0; len],
        }
    }

    pub fn step(&mut self, x: &mut [f64], g: &[f64], lr: f64) {
        for ((xi, vi), gi) in x.iter_mut().zip(&mut self.velocity).zip(g) {
            *vi = self.momentum * *vi + gi;
            *xi -= lr * *vi;
        }
    }
}

/// Adam (Kingma & Ba): m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², x ← x − η m̂/(√v̂ + ε) with the
/// bias corrections m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ).
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub m: Vec<f64>,
    pub v: Vec<f64>,
    /// Steps taken, t.
    pub t: u64,
}

impl Adam {
    pub fn new(len: usize, beta1: f64, beta2: f64, eps: f64) -> Self {
        Adam {
            beta1,
            beta2,
            eps,
            m: vec![0.0; len],
            v: vec![0.0; len],
            t: 0,
        }
    }

    pub fn step(&mut self, x: &mut [f64], g: &[f64], lr: f64) {
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t as i32);
        let c2 = 1.0 - self.beta2.powi(self.t as i32);
        for (((xi, mi), vi), &gi) in x.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(g) {
            *mi = self.beta1 * *mi + (1.0 - self.beta1) * gi;
            *vi = self.beta2 * *vi + (1.0 - self.beta2) * gi * gi;
            *xi -= lr * (*mi / c1) / ((*vi / c2).sqrt() + self.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grad(x: &[f64]) -> Vec<f64> {
        // f = ½ Σ a_i (x_i − 1)², a = (1, 10)
        vec![x[0] - 1.0, 10.0 * (x[1] - 1.0)]
    }

    #[test]
    fn sgd_momentum_converges_on_a_quadratic() {
        let mut x = vec![0.0, 0.0];
        let mut o = Sgd::new(2, 0.5);
        for _ in 0..300 {
            let g = grad(&x);
            o.step(&mut x, &g, 0.05);
        }
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn adam_first_step_has_length_lr_per_coordinate() {
        let mut x = vec![0.0, 0.0];
        let mut o = Adam::new(2, 0.9, 0.999, 1e-12);
        o.step(&mut x, &[3.0, -0.1], 0.01);
        assert!(
            (x[0] + 0.01).abs() < 1e-9 && (x[1] - 0.01).abs() < 1e-9,
            "{x:?}"
        );
    }

    #[test]
    fn adam_converges_on_a_quadratic() {
        let mut x = vec![0.0, 0.0];
        let mut o = Adam::new(2, 0.9, 0.999, 1e-8);
        for k in 0..3000 {
            let g = grad(&x);
            o.step(&mut x, &g, 0.05 / (1.0 + k as f64 / 100.0));
        }
        assert!(
            (x[0] - 1.0).abs() < 1e-3 && (x[1] - 1.0).abs() < 1e-3,
            "{x:?}"
        );
    }
}
