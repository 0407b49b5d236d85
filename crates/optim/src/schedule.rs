//! Learning-rate schedules over epochs.

/// η(e) for epoch e = 0, 1, … given the base rate η₀.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// η(e) = η₀.
    Constant,
    /// η(e) = η₀ · γ^⌊e / every⌋.
    Step { every: usize, gamma: f64 },
    /// η(e) = η_min + ½(η₀ − η_min)(1 + cos(π e / E)) over E epochs.
    Cosine { epochs: usize, min: f64 },
}

impl Schedule {
    pub fn rate(&self, base: f64, epoch: usize) -> f64 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { every, gamma } => base * gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { epochs, min } => {
                let t = (epoch as f64 / epochs.max(1) as f64).min(1.0);
                min + 0.5 * (base - min) * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.rate(0.1, 7), 0.1);
        let s = Schedule::Step {
            every: 10,
            gamma: 0.5,
        };
        assert_eq!(s.rate(1.0, 9), 1.0);
        assert_eq!(s.rate(1.0, 10), 0.5);
        assert_eq!(s.rate(1.0, 25), 0.25);
        let c = Schedule::Cosine {
            epochs: 10,
            min: 0.0,
        };
        assert_eq!(c.rate(1.0, 0), 1.0);
        assert!((c.rate(1.0, 5) - 0.5).abs() < 1e-15);
        assert!(c.rate(1.0, 10).abs() < 1e-15);
    }
}
