//! Losses on the outputs Z of the closing layer (C × B) and their seeds ∂loss/∂Z, against
//! class labels (classification) or real-valued targets (regression).

/// The data term of the objective.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// (1/B) Σ_j −log softmax(Z_j)\[y_j\], computed with a stable log-sum-exp.
    CrossEntropy,
    /// (1/B) Σ_j ½‖Z_j − y_j‖², against one-hot vectors e_{y_j} for class labels or against
    /// the real-valued targets y_j.
    Mse,
}

/// What a batch's outputs are compared with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Targets<'a> {
    /// One class label in 0..C per example (classification).
    Labels(&'a [usize]),
    /// `dim` real values per example, example j's at `values[j·dim .. (j+1)·dim]`
    /// (regression; `dim` = C, the number of outputs).
    Values { values: &'a [f64], dim: usize },
}

impl Targets<'_> {
    /// Number of examples B.
    pub fn len(&self) -> usize {
        match self {
            Targets::Labels(l) => l.len(),
            Targets::Values { values, dim } => values.len() / dim,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these are real-valued targets.
    pub fn is_regression(&self) -> bool {
        matches!(self, Targets::Values { .. })
    }
}

impl<'a> From<&'a [usize]> for Targets<'a> {
    fn from(labels: &'a [usize]) -> Self {
        Targets::Labels(labels)
    }
}

impl<'a> From<&'a Vec<usize>> for Targets<'a> {
    fn from(labels: &'a Vec<usize>) -> Self {
        Targets::Labels(labels)
    }
}

impl<'a, const N: usize> From<&'a [usize; N]> for Targets<'a> {
    fn from(labels: &'a [usize; N]) -> Self {
        Targets::Labels(labels)
    }
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
/// cross-entropy: softmax(Z_j) − e_{y_j};  MSE: Z_j − y_j (y_j = e_{y_j} for labels).
/// With real-valued targets the count of correct predictions is 0, and the loss must be MSE
/// (cross-entropy needs class labels; a caller that allows the pair is wrong, so it panics).
pub fn loss_sum<'t>(
    loss: Loss,
    classes: usize,
    logits: &[f64],
    targets: impl Into<Targets<'t>>,
    mut seed: Option<(&mut [f64], f64)>,
) -> (f64, usize) {
    let targets = targets.into();
    let mut total = 0.0;
    let mut correct = 0;
    for (j, z) in logits.chunks_exact(classes).enumerate() {
        let seed_j = seed
            .as_mut()
            .map(|(g, scale)| (&mut g[j * classes..(j + 1) * classes], *scale));
        match targets {
            Targets::Labels(labels) => {
                let y = labels[j];
                if argmax(z) == y {
                    correct += 1;
                }
                total += match loss {
                    Loss::CrossEntropy => cross_entropy(z, y, seed_j),
                    Loss::Mse => squared_error(z, |c| if c == y { 1.0 } else { 0.0 }, seed_j),
                };
            }
            Targets::Values { values, dim } => {
                assert_eq!(dim, classes, "targets per example must equal the outputs");
                assert_eq!(loss, Loss::Mse, "real-valued targets need the MSE loss");
                let y = &values[j * dim..(j + 1) * dim];
                total += squared_error(z, |c| y[c], seed_j);
            }
        }
    }
    (total, correct)
}

/// −log softmax(z)[y] by a stable log-sum-exp; its gradient (softmax(z) − e_y)·scale into
/// the seed when given.
fn cross_entropy(z: &[f64], y: usize, seed: Option<(&mut [f64], f64)>) -> f64 {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|&v| (v - m).exp()).sum();
    let lse = m + sum.ln();
    if let Some((g, scale)) = seed {
        for (c, (gc, &zc)) in g.iter_mut().zip(z).enumerate() {
            let p = (zc - lse).exp();
            *gc = scale * (p - if c == y { 1.0 } else { 0.0 });
        }
    }
    lse - z[y]
}

/// ½‖z − y‖² with y_c = `target(c)`; its gradient (z − y)·scale into the seed when given.
fn squared_error(z: &[f64], target: impl Fn(usize) -> f64, seed: Option<(&mut [f64], f64)>) -> f64 {
    let mut l = 0.0;
    for (c, &zc) in z.iter().enumerate() {
        let d = zc - target(c);
        l += 0.5 * d * d;
    }
    if let Some((g, scale)) = seed {
        for (c, (gc, &zc)) in g.iter_mut().zip(z).enumerate() {
            *gc = scale * (zc - target(c));
        }
    }
    l
}

/// Σ_j ‖y_j − ȳ‖² of real-valued targets (ȳ the mean target): the total sum of squares in
/// R² = 1 − SSE/SST. Summed in example order.
pub fn total_sum_of_squares(values: &[f64], dim: usize) -> f64 {
    let n = values.len() / dim;
    let mut mean = vec![0.0; dim];
    for y in values.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(y) {
            *m += v;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let mut sst = 0.0;
    for y in values.chunks_exact(dim) {
        for (m, v) in mean.iter().zip(y) {
            sst += (v - m) * (v - m);
        }
    }
    sst
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

    #[test]
    fn regression_seed_matches_finite_differences() {
        let z = vec![0.3, -0.2, 0.9, 0.1];
        let values = [0.5, 0.25, -1.0, 2.0];
        let y = Targets::Values {
            values: &values,
            dim: 2,
        };
        let mut g = vec![0.0; 4];
        let (l, correct) = loss_sum(Loss::Mse, 2, &z, y, Some((&mut g, 0.5)));
        assert_eq!(correct, 0);
        let expect = 0.5 * (0.2f64.powi(2) + 0.45f64.powi(2) + 1.9f64.powi(2) + 1.9f64.powi(2));
        assert!((l - expect).abs() < 1e-14, "{l} vs {expect}");
        for i in 0..4 {
            let (mut zp, mut zm) = (z.clone(), z.clone());
            zp[i] += 1e-6;
            zm[i] -= 1e-6;
            let fd = (loss_sum(Loss::Mse, 2, &zp, y, None).0
                - loss_sum(Loss::Mse, 2, &zm, y, None).0)
                / 2e-6;
            assert!((0.5 * fd - g[i]).abs() < 1e-8, "{i}: {fd} vs {}", g[i]);
        }
    }

    #[test]
    fn total_sum_of_squares_is_about_the_mean() {
        // Targets (1, 10), (3, 20), (5, 30): means 3 and 20.
        let v = [1.0, 10.0, 3.0, 20.0, 5.0, 30.0];
        assert_eq!(
            total_sum_of_squares(&v, 2),
            4.0 + 0.0 + 4.0 + 100.0 + 0.0 + 100.0
        );
    }
}
