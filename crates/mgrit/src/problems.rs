//! Model problems for testing and benchmarking the solver: forward Euler on
//! u' = λu (scalar), u' = Au (a small dense system), and u' = −u³ (nonlinear).
//! Coarse levels rediscretize: the step size is the step's own time span.
//!
//! [`Faulty`] wraps one with a deliberate mistake, for testing the [`crate::harness`].
//!
//! Each is also usable in reverse time (`Options::reverse`), where the recurrence runs from
//! time index N down to 0 with the same step formula.

use crate::{App, StepInfo};

/// The right-hand sides f(u) of u' = f(u).
#[derive(Clone, Debug, PartialEq)]
pub enum Rhs {
    /// f(u) = λ u.
    Scalar(f64),
    /// f(u) = A u with A dense, row-major n × n.
    Linear { n: usize, a: Vec<f64> },
    /// f(u) = −u³ componentwise.
    Cubic,
}

/// A model problem: forward Euler u ← u + Δt f(u), Δt = the step's `dt`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelProblem {
    pub rhs: Rhs,
    /// Initial condition g_0.
    pub u0: Vec<f64>,
    /// Initial guess at every other point.
    pub guess: Vec<f64>,
    /// First time index of the solve (0 forward, N in reverse).
    pub start_index: usize,
    scratch: Vec<f64>,
}

impl ModelProblem {
    pub fn new(rhs: Rhs, u0: Vec<f64>) -> Self {
        let guess = vec![0.0; u0.len()];
        ModelProblem {
            rhs,
            u0,
            guess,
            start_index: 0,
            scratch: Vec::new(),
        }
    }

    /// u' = λu, u(0) = 1.
    pub fn scalar(lambda: f64) -> Self {
        Self::new(Rhs::Scalar(lambda), vec![1.0])
    }

    /// u' = Au for a fixed n × n matrix with eigenvalues in the left half-plane: a damped
    /// rotation coupled to a chain of decaying modes.
    pub fn linear(n: usize) -> Self {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = -1.0 - i as f64 * 0.5;
            if i + 1 < n {
                a[i * n + i + 1] = 0.7;
                a[(i + 1) * n + i] = -0.7;
            }
        }
        let u0 = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
        Self::new(Rhs::Linear { n, a }, u0)
    }

    /// u' = −u³, u(0) = (1, 0.5, −0.8).
    pub fn cubic() -> Self {
        Self::new(Rhs::Cubic, vec![1.0, 0.5, -0.8])
    }

    /// One forward-Euler step of size dt (the serial reference uses the same formula).
    pub fn euler(&mut self, u: &mut [f64], dt: f64) {
        match &self.rhs {
            Rhs::Scalar(lambda) => u[0] += dt * lambda * u[0],
            Rhs::Linear { n, a } => {
                self.scratch.clear();
                self.scratch.extend_from_slice(u);
                for i in 0..*n {
                    let row = &a[i * n..(i + 1) * n];
                    let s: f64 = row.iter().zip(&self.scratch).map(|(x, y)| x * y).sum();
                    u[i] += dt * s;
                }
            }
            Rhs::Cubic => {
                for x in u.iter_mut() {
                    *x -= dt * *x * *x * *x;
                }
            }
        }
    }

    /// The serial sweep over N steps of size dt: u_0 … u_N.
    pub fn serial(&mut self, steps: usize, dt: f64) -> Vec<Vec<f64>> {
        let mut out = vec![self.u0.clone()];
        for _ in 0..steps {
            let mut u = out.last().unwrap().clone();
            self.euler(&mut u, dt);
            out.push(u);
        }
        out
    }
}

impl App for ModelProblem {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        self.euler(u, info.dt);
    }

    fn init(&mut self, index: usize) -> Vec<f64> {
        if index == self.start_index {
            self.u0.clone()
        } else {
            self.guess.clone()
        }
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi = alpha * xi + beta * *yi;
        }
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        x.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        buf.extend_from_slice(x);
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        buf.to_vec()
    }
}

/// A deliberate mistake in an application, to show that [`crate::harness`] catches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `pack` rounds every value to f32 (a lossy message format).
    LossyPack,
    /// `step_from` copies its source without stepping.
    StepFromSkipsStep,
    /// `step` adds 10⁻⁹ to the first component on this rank only (rank-dependent results,
    /// e.g. an uninitialized buffer).
    StepOnRank(usize),
}

/// A [`ModelProblem`] with one [`Fault`]; `rank` is the rank it runs on (for
/// [`Fault::StepOnRank`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Faulty {
    pub problem: ModelProblem,
    pub fault: Fault,
    pub rank: usize,
}

impl Faulty {
    pub fn new(problem: ModelProblem, fault: Fault) -> Self {
        Faulty {
            problem,
            fault,
            rank: 0,
        }
    }
}

impl App for Faulty {
    type State = Vec<f64>;

    fn step(&mut self, u: &mut Vec<f64>, info: &StepInfo) {
        self.problem.step(u, info);
        if self.fault == Fault::StepOnRank(self.rank) {
            u[0] += 1e-9;
        }
    }

    fn step_from(&mut self, src: &Vec<f64>, dst: &mut Vec<f64>, info: &StepInfo) {
        self.copy(src, dst);
        if self.fault != Fault::StepFromSkipsStep {
            self.step(dst, info);
        }
    }

    fn init(&mut self, index: usize) -> Vec<f64> {
        self.problem.init(index)
    }

    fn sum(&self, alpha: f64, x: &Vec<f64>, beta: f64, y: &mut Vec<f64>) {
        self.problem.sum(alpha, x, beta, y)
    }

    fn norm(&self, x: &Vec<f64>) -> f64 {
        self.problem.norm(x)
    }

    fn pack(&self, x: &Vec<f64>, buf: &mut Vec<f64>) {
        match self.fault {
            Fault::LossyPack => buf.extend(x.iter().map(|&v| v as f32 as f64)),
            _ => self.problem.pack(x, buf),
        }
    }

    fn unpack(&self, buf: &[f64]) -> Vec<f64> {
        self.problem.unpack(buf)
    }
}

/// The two-level convergence bounds of Dobrev, Kolev, Petersson and Schroder (2017) for a
/// scalar problem with fine propagator λ per step, coarse propagator μ, coarsening m and N_Δ
/// coarse steps:
///   F:   |λ^m − μ| (1 − |μ|^{N_Δ}) / (1 − |μ|)
///   FCF: |λ|^m |λ^m − μ| (1 − |μ|^{N_Δ − 1}) / (1 − |μ|)
pub fn two_level_bounds(lambda: f64, mu: f64, m: usize, coarse_steps: usize) -> (f64, f64) {
    let lm = lambda.powi(m as i32);
    let d = (lm - mu).abs();
    let geo = |k: usize| {
        if (1.0 - mu.abs()).abs() < 1e-15 {
            k as f64
        } else {
            (1.0 - mu.abs().powi(k as i32)) / (1.0 - mu.abs())
        }
    };
    (
        d * geo(coarse_steps),
        lm.abs() * d * geo(coarse_steps.saturating_sub(1)),
    )
}
