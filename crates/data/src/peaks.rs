//! The Peaks classification problem: 5 classes by the level sets of MATLAB's `peaks` function.

use crate::rng::{generator, shuffle, uniform};
use crate::Dataset;

/// f(x, y) = 3(1−x)² e^{−x²−(y+1)²} − 10(x/5 − x³ − y⁵) e^{−x²−y²} − ⅓ e^{−(x+1)²−y²}.
pub fn peaks_value(x: f64, y: f64) -> f64 {
    3.0 * (1.0 - x).powi(2) * (-x * x - (y + 1.0).powi(2)).exp()
        - 10.0 * (x / 5.0 - x.powi(3) - y.powi(5)) * (-x * x - y * y).exp()
        - (-(x + 1.0).powi(2) - y * y).exp() / 3.0
}

/// The class map: equal-width bins of f between its minimum and maximum on a 256 × 256 grid
/// over [−3, 3]².
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeaksClasses {
    pub min: f64,
    pub max: f64,
    pub classes: usize,
}

/// Half-width of the square domain [−3, 3]².
pub const PEAKS_HALF_WIDTH: f64 = 3.0;

impl PeaksClasses {
    pub fn new(classes: usize) -> Self {
        let m = 256;
        let mut min = f64::INFINITY;
        let mut max = f64::NEG_INFINITY;
        for i in 0..m {
            for j in 0..m {
                let x = -PEAKS_HALF_WIDTH + 2.0 * PEAKS_HALF_WIDTH * i as f64 / (m - 1) as f64;
                let y = -PEAKS_HALF_WIDTH + 2.0 * PEAKS_HALF_WIDTH * j as f64 / (m - 1) as f64;
                let f = peaks_value(x, y);
                min = min.min(f);
                max = max.max(f);
            }
        }
        PeaksClasses { min, max, classes }
    }

    /// Class of the point (x, y): ⌊C (f − min)/(max − min)⌋, clamped to 0 … C−1.
    pub fn class_of(&self, x: f64, y: f64) -> usize {
        let t = (peaks_value(x, y) - self.min) / (self.max - self.min);
        ((t * self.classes as f64).floor().max(0.0) as usize).min(self.classes - 1)
    }
}

/// Draws `count` points uniformly in [−3, 3]², accepting a point only while its class has room,
/// so each class gets ⌊count/C⌋ points (the first count mod C classes one more); then shuffles.
fn sample(map: &PeaksClasses, count: usize, g: &mut crate::rng::Generator) -> Dataset {
    let c = map.classes;
    let quota: Vec<usize> = (0..c)
        .map(|k| count / c + usize::from(k < count % c))
        .collect();
    let mut have = vec![0; c];
    let mut points: Vec<([f64; 2], usize)> = Vec::with_capacity(count);
    while points.len() < count {
        let x = PEAKS_HALF_WIDTH * (2.0 * uniform(g) - 1.0);
        let y = PEAKS_HALF_WIDTH * (2.0 * uniform(g) - 1.0);
        let k = map.class_of(x, y);
        if have[k] < quota[k] {
            have[k] += 1;
            points.push(([x, y], k));
        }
    }
    shuffle(g, &mut points);
    Dataset::labelled(
        points.iter().flat_map(|(p, _)| *p).collect(),
        points.iter().map(|(_, k)| *k).collect(),
        2,
        c,
    )
}

/// The Peaks training and validation sets (5 balanced classes, shuffled), fixed by `seed`.
pub fn generate_peaks(train: usize, val: usize, seed: u64) -> (Dataset, Dataset) {
    let map = PeaksClasses::new(5);
    let mut g = generator(seed, 0x7065616b73); // "peaks"
    let t = sample(&map, train, &mut g);
    let v = sample(&map, val, &mut g);
    (t, v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_extremes_are_the_known_peaks_range() {
        let m = PeaksClasses::new(5);
        assert!((m.max - 8.1).abs() < 0.05, "max {}", m.max);
        assert!((m.min + 6.55).abs() < 0.05, "min {}", m.min);
    }

    #[test]
    fn classes_are_balanced_labels_match_and_order_is_shuffled() {
        let (t, v) = generate_peaks(1003, 200, 11);
        assert_eq!(t.class_counts(), vec![201, 201, 201, 200, 200]);
        assert_eq!(v.class_counts(), vec![40; 5]);
        let map = PeaksClasses::new(5);
        for j in 0..t.len() {
            let p = t.example(j);
            assert!(p.iter().all(|c| c.abs() <= 3.0));
            assert_eq!(map.class_of(p[0], p[1]), t.labels[j]);
        }
        // Not sorted by class: the first 50 labels hold several classes.
        let mut seen = [false; 5];
        for &l in &t.labels[..50] {
            seen[l] = true;
        }
        assert!(seen.iter().filter(|s| **s).count() >= 4);
    }

    #[test]
    fn seed_fixes_the_data() {
        assert_eq!(generate_peaks(100, 10, 3), generate_peaks(100, 10, 3));
        assert_ne!(generate_peaks(100, 10, 3).0, generate_peaks(100, 10, 4).0);
    }
}
