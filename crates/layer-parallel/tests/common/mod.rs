//! Helpers of the layer-parallel crate's integration tests: reproducible random numbers, MGRIT
//! settings, a relative error.
#![allow(dead_code)]

use layer_parallel::SolverSettings;
use mgrit::Options;

/// SplitMix64 numbers in [−1, 1).
pub struct Mix(pub u64);
impl Mix {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| scale * self.next()).collect()
    }
}

/// The same MGRIT options forward and adjoint: one level is a single sweep; more levels
/// iterate (cf 2, at most 100 iterations) to the absolute tolerance 1e-13.
pub fn settings(levels: usize) -> SolverSettings {
    let o = Options {
        max_levels: levels,
        cfactor: vec![2],
        max_iter: if levels == 1 { 1 } else { 100 },
        abs_tol: 1e-13,
        ..Options::default()
    };
    SolverSettings {
        forward: o.clone(),
        adjoint: o,
    }
}

/// max_i |a_i − b_i| / max_i |b_i|.
pub fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}
