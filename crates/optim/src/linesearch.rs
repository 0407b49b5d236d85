//! Backtracking line search with the Armijo sufficient-decrease condition.

use crate::Space;

/// Parameters of the backtracking search: try α = `initial`, α·factor, α·factor², … until
/// J(x + α d) ≤ J(x) + c α ∇J(x)ᵀd, at most `max_trials` times.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Armijo {
    pub initial: f64,
    pub factor: f64,
    pub c: f64,
    pub max_trials: usize,
}

impl Default for Armijo {
    /// The reference code's defaults: step 1, factor 0.5, c = 1e-4, 20 trials.
    fn default() -> Self {
        Armijo {
            initial: 1.0,
            factor: 0.5,
            c: 1e-4,
            max_trials: 20,
        }
    }
}

/// Outcome of a line search; `T` is whatever the evaluation returned besides J (the gradient
/// and metrics at the trial point).
#[derive(Debug)]
pub enum LineSearch<T> {
    /// The step was accepted: the new point, its objective and extra data.
    Accepted {
        step: f64,
        x: Vec<f64>,
        value: f64,
        data: T,
        trials: usize,
    },
    /// No step satisfied the condition (or d is not a descent direction): keep x.
    Failed { trials: usize, reason: &'static str },
}

/// Searches along d from x, where J(x) = `value` and ∇J(x) = `grad`. `eval` returns the
/// objective at a trial point and any extra data to keep if it is accepted. A non-finite
/// objective counts as a failed trial.
pub fn backtracking<T>(
    x: &[f64],
    value: f64,
    grad: &[f64],
    d: &[f64],
    params: &Armijo,
    space: &impl Space,
    eval: impl FnMut(&[f64]) -> (f64, T),
) -> LineSearch<T> {
    backtracking_in(Vec::new(), x, value, grad, d, params, space, eval)
}

/// [`backtracking`] with the trial points formed in `trial` (any length; a buffer to reuse,
/// returned as the accepted point): no allocation when it already holds x.len() values.
#[allow(clippy::too_many_arguments)]
pub fn backtracking_in<T>(
    mut trial: Vec<f64>,
    x: &[f64],
    value: f64,
    grad: &[f64],
    d: &[f64],
    params: &Armijo,
    space: &impl Space,
    mut eval: impl FnMut(&[f64]) -> (f64, T),
) -> LineSearch<T> {
    let slope = space.dot(grad, d);
    if !(slope < 0.0) {
        return LineSearch::Failed {
            trials: 0,
            reason: "not a descent direction",
        };
    }
    let mut alpha = params.initial;
    // Every element is written before each trial.
    trial.resize(x.len(), 0.0);
    for t in 1..=params.max_trials {
        // x + α d on the space's share, then whole.
        space.for_share(x.len(), |r| {
            for ((ti, &xi), &di) in trial[r.clone()].iter_mut().zip(&x[r.clone()]).zip(&d[r]) {
                *ti = xi + alpha * di;
            }
        });
        space.complete(&mut trial);
        let (v, data) = eval(&trial);
        if v.is_finite() && v <= value + params.c * alpha * slope {
            return LineSearch::Accepted {
                step: alpha,
                x: trial,
                value: v,
                data,
                trials: t,
            };
        }
        alpha *= params.factor;
    }
    LineSearch::Failed {
        trials: params.max_trials,
        reason: "no sufficient decrease",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Lbfgs, Local};

    fn rosenbrock(x: &[f64]) -> (f64, Vec<f64>) {
        let (a, b) = (x[0], x[1]);
        let f = (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2);
        let g = vec![
            -2.0 * (1.0 - a) - 400.0 * a * (b - a * a),
            200.0 * (b - a * a),
        ];
        (f, g)
    }

    #[test]
    fn lbfgs_with_armijo_minimizes_rosenbrock() {
        let mut x = vec![-1.2, 1.0];
        let (mut f, mut g) = rosenbrock(&x);
        let mut l = Lbfgs::new(5);
        // Armijo-only backtracking zig-zags along the valley: ~700 iterations (as a NumPy
        // reference implementation of the same method needs).
        for _ in 0..1000 {
            let d = l.direction(&g, &Local);
            match backtracking(&x, f, &g, &d, &Armijo::default(), &Local, rosenbrock) {
                LineSearch::Accepted {
                    x: xn, value, data, ..
                } => {
                    let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
                    let y: Vec<f64> = data.iter().zip(&g).map(|(a, b)| a - b).collect();
                    l.push(s, y, &Local);
                    x = xn;
                    f = value;
                    g = data;
                }
                LineSearch::Failed { reason, .. } => {
                    panic!("{reason} at {x:?} with {} pairs", l.len())
                }
            }
            if Local.norm(&g) < 1e-10 {
                break;
            }
        }
        assert!(
            (x[0] - 1.0).abs() < 1e-6 && (x[1] - 1.0).abs() < 1e-6,
            "{x:?}"
        );
    }

    #[test]
    fn rejects_an_ascent_direction_and_a_step_that_never_decreases() {
        let x = [1.0];
        let r = backtracking(&x, 1.0, &[1.0], &[1.0], &Armijo::default(), &Local, |_| {
            (0.0, ())
        });
        assert!(matches!(r, LineSearch::Failed { trials: 0, .. }));
        let r = backtracking(&x, 1.0, &[1.0], &[-1.0], &Armijo::default(), &Local, |_| {
            (2.0, ())
        });
        assert!(matches!(r, LineSearch::Failed { trials: 20, .. }));
        let r = backtracking(&x, 1.0, &[1.0], &[-1.0], &Armijo::default(), &Local, |_| {
            (f64::NAN, ())
        });
        assert!(matches!(r, LineSearch::Failed { .. }));
    }

    #[test]
    fn halves_the_step_until_armijo_holds() {
        // f(x) = x², from x = 1 along d = −4: α = 1 → 9, α = .5 → 1 (no decrease), α = .25 → 0.
        let f = |x: &[f64]| (x[0] * x[0], ());
        match backtracking(&[1.0], 1.0, &[2.0], &[-4.0], &Armijo::default(), &Local, f) {
            LineSearch::Accepted { step, trials, .. } => {
                assert_eq!(step, 0.25);
                assert_eq!(trials, 3);
            }
            _ => panic!("expected acceptance"),
        }
    }
}
