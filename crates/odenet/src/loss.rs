//! Classifier losses on the logits Z = W_c U_N + b_c 1ᵀ (C × B) and their seeds ∂loss/∂Z.

/// The data term of the objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// (1/B) Σ_j −log softmax(Z_j)[y_j], computed with a stable log-sum-exp.
    CrossEntropy,
    /// (1/B) Σ_j ½‖Z_j − e_{y_j}‖² against one-hot targets.
    Mse,
}

impl std::str::FromStr for Loss {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crossentropy" | "cross_entropy" => Ok(Loss::CrossEntropy),
            "mse" => Ok(Loss::Mse),
            _ => Err(format!(
                "unknown loss \"{s}\" (expected \"crossentropy\" or \"mse\")"
            )),
        }
    }
}

/// Index of the largest entry (the first one on ties).
#[inline]
pub fn argmax(z: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in z.iter().enumerate() {
        if v > z[best] {
            best = i;
        }
    }
    best
}

/// Returns (Σ_j loss_j, number of correct predictions) over the columns of `logits` (C × B).
///
/// The sum is not divided by B, so partial sums over batch pieces add up. When `seed` is given
/// it receives ∂(Σ_j loss_j)/∂Z · `scale` (use scale = 1/B for the mean loss):
/// cross-entropy: softmax(Z_j) − e_{y_j};  MSE: Z_j − e_{y_j}.
pub fn loss_sum(
    loss: Loss,
    classes: usize,
    logits: &[f64],
    labels: &[usize],
    mut seed: Option<(&mut [f64], f64)>,
) -> (f64, usize) {
    let mut total = 0.0;
    let mut correct = 0;
    for (j, (z, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        if argmax(z) == y {
            correct += 1;
        }
        match loss {
            Loss::CrossEntropy => {
                let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = z.iter().map(|&v| (v - m).exp()).sum();
                let lse = m + sum.ln();
                total += lse - z[y];
                if let Some((g, scale)) = seed.as_mut() {
                    let gj = &mut g[j * classes..(j + 1) * classes];
                    for (c, (gc, &zc)) in gj.iter_mut().zip(z).enumerate() {
                        let p = (zc - lse).exp();
                        *gc = *scale * (p - if c == y { 1.0 } else { 0.0 });
                    }
                }
            }
            Loss::Mse => {
                let mut l = 0.0;
                for (c, &zc) in z.iter().enumerate() {
                    let d = zc - if c == y { 1.0 } else { 0.0 };
                    l += 0.5 * d * d;
                }
                total += l;
                if let Some((g, scale)) = seed.as_mut() {
                    let gj = &mut g[j * classes..(j + 1) * classes];
                    for (c, (gc, &zc)) in gj.iter_mut().zip(z).enumerate() {
                        *gc = *scale * (zc - if c == y { 1.0 } else { 0.0 });
                    }
                }
            }
        }
    }
    (total, correct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_is_stable_for_large_logits() {
        let z = [1000.0, 0.0, -1000.0];
        let (l, c) = loss_sum(Loss::CrossEntropy, 3, &z, &[0], None);
        assert!(l.abs() < 1e-12);
        assert_eq!(c, 1);
        let (l, _) = loss_sum(Loss::CrossEntropy, 3, &z, &[1], None);
        assert!((l - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn seeds_match_finite_differences() {
        let z = vec![0.3, -0.2, 0.9, 0.1, 0.5, -0.7];
        let labels = [2, 0];
        for loss in [Loss::CrossEntropy, Loss::Mse] {
            let mut g = vec![0.0; 6];
            loss_sum(loss, 3, &z, &labels, Some((&mut g, 1.0)));
            for i in 0..6 {
                let mut zp = z.clone();
                let mut zm = z.clone();
                zp[i] += 1e-6;
                zm[i] -= 1e-6;
                let fd = (loss_sum(loss, 3, &zp, &labels, None).0
                    - loss_sum(loss, 3, &zm, &labels, None).0)
                    / 2e-6;
                assert!((fd - g[i]).abs() < 1e-8, "{loss:?} {i}: {fd} vs {}", g[i]);
            }
        }
    }
}
