//! The sine regression problem of the SpliNet paper: y = sin(x) for x uniform on [−π, π].

use crate::rng::{generator, uniform};
use crate::Dataset;

/// `train` and `val` points x drawn uniformly on [−π, π] with targets sin(x), fixed by `seed`
/// (the validation points are drawn after the training points, from the same stream).
pub fn generate_sine(train: usize, val: usize, seed: u64) -> (Dataset, Dataset) {
    let mut g = generator(seed, 0x73696e65); // "sine"
    let mut draw = |n: usize| {
        let x: Vec<f64> = (0..n)
            .map(|_| std::f64::consts::PI * (2.0 * uniform(&mut g) - 1.0))
            .collect();
        let y = x.iter().map(|v| v.sin()).collect();
        Dataset::regression(x, y, 1, 1)
    };
    let t = draw(train);
    let v = draw(val);
    (t, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_cover_the_interval_with_sine_targets() {
        let (t, v) = generate_sine(1000, 200, 1);
        assert_eq!((t.len(), v.len(), t.dim, t.target_dim), (1000, 200, 1, 1));
        assert!(t.is_regression() && t.labels.is_empty());
        let pi = std::f64::consts::PI;
        assert!(t.features.iter().all(|x| (-pi..=pi).contains(x)));
        for j in 0..t.len() {
            assert_eq!(t.target(j)[0], t.example(j)[0].sin());
        }
        // Roughly uniform: each quarter of the interval holds about a quarter of the points.
        for q in 0..4 {
            let lo = -pi + q as f64 * pi / 2.0;
            let n = t
                .features
                .iter()
                .filter(|&&x| x >= lo && x < lo + pi / 2.0)
                .count();
            assert!((200..300).contains(&n), "quarter {q}: {n}");
        }
        assert_eq!(generate_sine(1000, 200, 1), (t, v));
        assert_ne!(generate_sine(10, 0, 2).0, generate_sine(10, 0, 1).0);
    }
}
