//! The design of a study: the points of a full grid or a Latin hypercube sample over named
//! configuration keys, each key given a range (linear or logarithmic) or a set of values.

use anyhow::{bail, Result};

/// How one key varies.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// A closed interval [lo, hi]; `log` samples log(value) uniformly; `integer` rounds
    /// each value to the nearest integer (for layer or coefficient counts).
    Range {
        lo: f64,
        hi: f64,
        log: bool,
        integer: bool,
        /// Grid points (a grid needs it; a Latin hypercube ignores it).
        points: Option<usize>,
    },
    /// A finite set, taken in the order given (numbers, strings, booleans).
    Values(Vec<toml::Value>),
}

/// A key of the configuration and how it varies.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub key: String,
    pub domain: Domain,
}

/// Full grid or Latin hypercube.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Grid,
    Lhs { samples: usize, seed: u64 },
}

impl Domain {
    /// The value at u ∈ [0, 1): u is the position along the range, or along the set (value
    /// ⌊u · k⌋ of k).
    pub fn at(&self, u: f64) -> toml::Value {
        match self {
            Domain::Range {
                lo,
                hi,
                log,
                integer,
                ..
            } => {
                let x = if *log {
                    (lo.ln() + u * (hi.ln() - lo.ln())).exp()
                } else {
                    lo + u * (hi - lo)
                };
                // Rounding can step past the bounds by an ulp: clamp.
                let x = x.clamp(*lo, *hi);
                if *integer {
                    toml::Value::Integer(x.round() as i64)
                } else {
                    toml::Value::Float(x)
                }
            }
            Domain::Values(v) => {
                let i = ((u * v.len() as f64) as usize).min(v.len() - 1);
                v[i].clone()
            }
        }
    }

    /// The grid's values: `points` evenly spaced (in log for a log range) from lo to hi
    /// inclusive, or every value of a set.
    pub fn grid(&self) -> Vec<toml::Value> {
        match self {
            Domain::Range { points, .. } => {
                let k = points.unwrap_or(1);
                let mut out: Vec<toml::Value> = (0..k)
                    .map(|i| {
                        let u = if k == 1 {
                            0.5
                        } else {
                            i as f64 / (k - 1) as f64
                        };
                        self.at(u)
                    })
                    .collect();
                out.dedup();
                out
            }
            Domain::Values(v) => v.clone(),
        }
    }
}

/// A small, fixed generator (splitmix64) so that a design depends on its seed alone, not on a
/// library's version.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// A Latin hypercube in [0, 1)^d with n points: along every dimension each of the n strata
/// [i/n, (i+1)/n) holds exactly one point (a random permutation of the strata per
/// dimension, a uniform position inside each stratum).
pub fn latin_hypercube(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = SplitMix::new(seed);
    let mut points = vec![vec![0.0; d]; n];
    for j in 0..d {
        let mut perm: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let k = rng.below(i + 1);
            perm.swap(i, k);
        }
        for (i, p) in points.iter_mut().enumerate() {
            let u = (perm[i] as f64 + rng.unit()) / n as f64;
            p[j] = u.min(1.0 - f64::EPSILON);
        }
    }
    points
}

/// The design's points: one value per parameter (in the order of `params`). No parameters
/// give one empty point.
pub fn points(params: &[Param], kind: Kind) -> Result<Vec<Vec<toml::Value>>> {
    match kind {
        Kind::Grid => {
            let mut out = vec![Vec::new()];
            for p in params {
                if let Domain::Range { points: None, .. } = p.domain {
                    bail!(
                        "study parameter `{}`: a grid needs `points = k` for a range",
                        p.key
                    );
                }
                let values = p.domain.grid();
                out = out
                    .into_iter()
                    .flat_map(|prefix| {
                        values.iter().map(move |v| {
                            let mut q = prefix.clone();
                            q.push(v.clone());
                            q
                        })
                    })
                    .collect();
            }
            Ok(out)
        }
        Kind::Lhs { samples, seed } => Ok(latin_hypercube(samples, params.len(), seed)
            .into_iter()
            .map(|u| {
                params
                    .iter()
                    .zip(&u)
                    .map(|(p, &x)| p.domain.at(x))
                    .collect()
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lo: f64, hi: f64, log: bool, integer: bool, points: Option<usize>) -> Domain {
        Domain::Range {
            lo,
            hi,
            log,
            integer,
            points,
        }
    }

    #[test]
    fn a_grid_has_the_product_of_the_counts() {
        let params = vec![
            Param {
                key: "a".into(),
                domain: range(1e-3, 1e-1, true, false, Some(3)),
            },
            Param {
                key: "b".into(),
                domain: Domain::Values(vec![8.into(), 16.into()]),
            },
            Param {
                key: "c".into(),
                domain: range(0.0, 1.0, false, false, Some(5)),
            },
        ];
        let pts = points(&params, Kind::Grid).unwrap();
        assert_eq!(pts.len(), 3 * 2 * 5);
        // The log grid is geometric and hits both ends.
        let a: Vec<f64> = pts.iter().map(|p| p[0].as_float().unwrap()).collect();
        assert!((a[0] - 1e-3).abs() < 1e-15 && (a[29] - 1e-1).abs() < 1e-15);
        assert!((a[10] - 1e-2).abs() < 1e-15, "{}", a[10]);
        assert_eq!(pts[0][1], toml::Value::Integer(8));
        let none = points(&[], Kind::Grid).unwrap();
        assert_eq!(none, vec![Vec::<toml::Value>::new()]);
        let e = points(
            &[Param {
                key: "x".into(),
                domain: range(0.0, 1.0, false, false, None),
            }],
            Kind::Grid,
        )
        .unwrap_err();
        assert!(e.to_string().contains("needs `points = k`"), "{e}");
    }

    #[test]
    fn a_latin_hypercube_hits_every_stratum_of_every_dimension_once() {
        for (n, d, seed) in [(1, 3, 1), (7, 4, 2), (50, 3, 9)] {
            let pts = latin_hypercube(n, d, seed);
            assert_eq!(pts.len(), n);
            for j in 0..d {
                let mut hit = vec![0; n];
                for p in &pts {
                    assert!((0.0..1.0).contains(&p[j]));
                    hit[(p[j] * n as f64) as usize] += 1;
                }
                assert!(hit.iter().all(|&h| h == 1), "n {n} dim {j}: {hit:?}");
            }
        }
        // The same seed gives the same design, another seed another.
        assert_eq!(latin_hypercube(5, 2, 3), latin_hypercube(5, 2, 3));
        assert_ne!(latin_hypercube(5, 2, 3), latin_hypercube(5, 2, 4));
    }

    #[test]
    fn log_ranges_stay_in_bounds_and_are_stratified_in_log() {
        let d = range(1e-4, 1.0, true, false, None);
        let n = 8;
        let pts = points(
            &[Param {
                key: "lr".into(),
                domain: d,
            }],
            Kind::Lhs {
                samples: n,
                seed: 5,
            },
        )
        .unwrap();
        let mut decades = vec![0; 4];
        for p in &pts {
            let x = p[0].as_float().unwrap();
            assert!((1e-4..=1.0).contains(&x), "{x}");
            decades[((x.log10() + 4.0) as usize).min(3)] += 1;
        }
        // 8 strata over 4 decades: two samples in each decade.
        assert_eq!(decades, vec![2, 2, 2, 2]);
    }

    #[test]
    fn integer_ranges_and_sets_give_their_own_values() {
        let n = 9;
        let params = [
            Param {
                key: "layers".into(),
                domain: range(4.0, 64.0, true, true, None),
            },
            Param {
                key: "kind".into(),
                domain: Domain::Values(vec!["layer".into(), "spline".into(), "x".into()]),
            },
        ];
        let pts = points(
            &params,
            Kind::Lhs {
                samples: n,
                seed: 1,
            },
        )
        .unwrap();
        let mut counts = std::collections::BTreeMap::new();
        for p in &pts {
            let l = p[0].as_integer().expect("an integer");
            assert!((4..=64).contains(&l));
            *counts
                .entry(p[1].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        // A set of k values in n strata: each value n / k times.
        assert_eq!(counts.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        let g = range(1.0, 4.0, false, true, Some(7)).grid();
        assert_eq!(
            g,
            vec![1, 2, 3, 4]
                .into_iter()
                .map(toml::Value::Integer)
                .collect::<Vec<_>>(),
            "rounded grid points are deduplicated"
        );
    }
}
