//! # bspline — uniform B-spline bases on [0, T]
//!
//! θ(t) = Σ_{i<M} c_i B_i^d(t) with M basis functions of degree d on a knot vector
//! t_0 ≤ … ≤ t_{M+d}. Two uniform layouts:
//!
//! - **clamped** (open uniform): d+1 knots at 0 and at T, the M−d−1 interior knots evenly
//!   spaced; θ(0) = c_0 and θ(T) = c_{M−1};
//! - **uniform** (unclamped, as the reference PyTorch SpliNet code): t_j = (j − d)·Δ with
//!   Δ = T/(M − d), so the basis is a partition of unity exactly on [t_d, t_M] = [0, T].
//!
//! Only d+1 functions are non-zero at any t (the span's), evaluated by Cox–de Boor. Knot
//! insertion (Boehm) refines the basis without changing θ(t). Coefficients are vectors (one
//! per basis function, all of one length), stored one after another.

// `!(x > 0.0)` is meant: it is also true for NaN, which these guards must refuse.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

/// The knot layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KnotKind {
    Clamped,
    Uniform,
}

impl std::str::FromStr for KnotKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "clamped" => Ok(KnotKind::Clamped),
            "uniform" => Ok(KnotKind::Uniform),
            _ => Err(format!(
                "unknown knot layout \"{s}\" (expected \"clamped\" or \"uniform\")"
            )),
        }
    }
}

/// A B-spline basis: degree d and knots t_0 … t_{M+d}.
#[derive(Clone, Debug, PartialEq)]
pub struct Basis {
    pub degree: usize,
    pub knots: Vec<f64>,
    /// The interval [0, T] the splines are used on.
    pub t_end: f64,
}

impl Basis {
    /// M functions of degree d on [0, T] (needs M ≥ d + 1).
    pub fn uniform(
        kind: KnotKind,
        degree: usize,
        count: usize,
        t_end: f64,
    ) -> Result<Basis, String> {
        if count < degree + 1 {
            return Err(format!(
                "{count} B-splines of degree {degree}: at least degree + 1 = {} are needed",
                degree + 1
            ));
        }
        if !(t_end > 0.0) {
            return Err(format!("the interval [0, {t_end}] is empty"));
        }
        let d = degree;
        let pieces = count - d; // intervals in [0, T]
        let dt = t_end / pieces as f64;
        let knots = match kind {
            KnotKind::Clamped => (0..count + d + 1)
                .map(|j| {
                    if j <= d {
                        0.0
                    } else if j >= count {
                        t_end
                    } else {
                        (j - d) as f64 * dt
                    }
                })
                .collect(),
            KnotKind::Uniform => (0..count + d + 1)
                .map(|j| (j as f64 - d as f64) * dt)
                .collect(),
        };
        Ok(Basis {
            degree,
            knots,
            t_end,
        })
    }

    /// Number of basis functions M.
    pub fn count(&self) -> usize {
        self.knots.len() - self.degree - 1
    }

    /// The span μ with t_μ ≤ t < t_{μ+1}, d ≤ μ ≤ M − 1 (t = T and beyond use the last span).
    pub fn span(&self, t: f64) -> usize {
        let (d, m) = (self.degree, self.count());
        let mut lo = d;
        let mut hi = m; // t_m is the end of the last span
        if t >= self.knots[m] {
            // The last non-empty span.
            let mut mu = m - 1;
            while mu > d && self.knots[mu] >= self.knots[m] {
                mu -= 1;
            }
            return mu;
        }
        if t <= self.knots[d] {
            return d;
        }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if t < self.knots[mid] {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        lo
    }

    /// The non-zero basis functions at t: (first index i0 = μ − d, values B_{i0} … B_{i0+d}).
    /// Cox–de Boor, in the triangular form of Piegl & Tiller.
    pub fn eval(&self, t: f64) -> (usize, Vec<f64>) {
        self.eval_at_span(t, self.span(t))
    }

    /// Derivatives dB_i/dt of the non-zero basis functions at t: (i0, values).
    /// dB_i^d/dt = d (B_i^{d−1}/(t_{i+d} − t_i) − B_{i+1}^{d−1}/(t_{i+d+1} − t_{i+1})).
    pub fn eval_derivative(&self, t: f64) -> (usize, Vec<f64>) {
        let d = self.degree;
        let (i0, _) = self.eval(t);
        if d == 0 {
            return (i0, vec![0.0]);
        }
        let lower = Basis {
            degree: d - 1,
            knots: self.knots[1..self.knots.len() - 1].to_vec(),
            t_end: self.t_end,
        };
        // Lower-degree functions on the inner knots: B^{d−1}_{i} here is B^{d−1}_{i+1} of the
        // full knot vector. The span's d lower functions start at i0 (full index i0 + 1).
        let mu = self.span(t);
        let (_, low) = lower.eval_at_span(t, mu - 1);
        let k = &self.knots;
        let mut out = vec![0.0; d + 1];
        // B^{d−1} with full index i0 + 1 + r is low[r], r = 0 … d−1.
        let bl = |full: usize| -> f64 {
            if full > i0 && full - i0 - 1 < d {
                low[full - i0 - 1]
            } else {
                0.0
            }
        };
        for (r, o) in out.iter_mut().enumerate() {
            let i = i0 + r;
            let a = {
                let den = k[i + d] - k[i];
                if den > 0.0 {
                    bl(i) / den
                } else {
                    0.0
                }
            };
            let b = {
                let den = k[i + d + 1] - k[i + 1];
                if den > 0.0 {
                    bl(i + 1) / den
                } else {
                    0.0
                }
            };
            *o = d as f64 * (a - b);
        }
        (i0, out)
    }

    fn eval_at_span(&self, t: f64, mu: usize) -> (usize, Vec<f64>) {
        let d = self.degree;
        let k = &self.knots;
        let mut n = vec![0.0; d + 1];
        let mut left = vec![0.0; d + 1];
        let mut right = vec![0.0; d + 1];
        n[0] = 1.0;
        for j in 1..=d {
            left[j] = t - k[mu + 1 - j];
            right[j] = k[mu + j] - t;
            let mut saved = 0.0;
            for r in 0..j {
                let denom = right[r + 1] + left[j - r];
                let temp = if denom == 0.0 { 0.0 } else { n[r] / denom };
                n[r] = saved + right[r + 1] * temp;
                saved = left[j - r] * temp;
            }
            n[j] = saved;
        }
        (mu - d, n)
    }

    /// θ(t) = Σ c_i B_i(t) for coefficient vectors of length `len` stored in `coef`.
    pub fn value(&self, coef: &[f64], len: usize, t: f64, out: &mut [f64]) {
        let (i0, b) = self.eval(t);
        out.fill(0.0);
        for (r, &br) in b.iter().enumerate() {
            let c = &coef[(i0 + r) * len..(i0 + r + 1) * len];
            for (o, &x) in out.iter_mut().zip(c) {
                *o += br * x;
            }
        }
    }

    /// Inserts the knot τ (Boehm): the basis gains one function and the coefficients are
    /// replaced so that θ(t) is unchanged.
    pub fn insert_knot(&mut self, tau: f64, coef: &mut Vec<f64>, len: usize) {
        let d = self.degree;
        let mu = self.span(tau);
        let k = self.knots.clone();
        let m = self.count();
        let mut new = vec![0.0; (m + 1) * len];
        for i in 0..=m {
            let dst = &mut new[i * len..(i + 1) * len];
            if i + d <= mu {
                dst.copy_from_slice(&coef[i * len..(i + 1) * len]);
            } else if i > mu {
                dst.copy_from_slice(&coef[(i - 1) * len..i * len]);
            } else {
                let den = k[i + d] - k[i];
                let a = if den > 0.0 { (tau - k[i]) / den } else { 0.0 };
                let (prev, cur) = (&coef[(i - 1) * len..i * len], &coef[i * len..(i + 1) * len]);
                for ((x, &p), &c) in dst.iter_mut().zip(prev).zip(cur) {
                    *x = (1.0 - a) * p + a * c;
                }
            }
        }
        self.knots.insert(mu + 1, tau);
        *coef = new;
    }

    /// Inserts the midpoint of every non-empty knot interval inside [0, T].
    pub fn refine_uniformly(&mut self, coef: &mut Vec<f64>, len: usize) {
        let mids: Vec<f64> = self
            .knots
            .windows(2)
            .filter(|w| w[1] > w[0] && w[0] >= 0.0 && w[1] <= self.t_end + 1e-12 * self.t_end)
            .map(|w| 0.5 * (w[0] + w[1]))
            .collect();
        for tau in mids {
            self.insert_knot(tau, coef, len);
        }
    }

    /// Least-squares coefficients (vectors of length `len`) of the spline closest to the
    /// samples θ(t_n) = `samples[n·len..]` at the times `times`: the normal equations
    /// (Σ_n B(t_n) B(t_n)ᵀ) C = Σ_n B(t_n) θ_nᵀ, solved by Cholesky. Needs the samples to
    /// determine every coefficient.
    pub fn project(&self, times: &[f64], samples: &[f64], len: usize) -> Result<Vec<f64>, String> {
        let m = self.count();
        let mut a = vec![0.0; m * m];
        let mut rhs = vec![0.0; m * len];
        for (n, &t) in times.iter().enumerate() {
            let (i0, b) = self.eval(t);
            for (r, &br) in b.iter().enumerate() {
                for (s, &bs) in b.iter().enumerate() {
                    a[(i0 + r) * m + i0 + s] += br * bs;
                }
                let row = &mut rhs[(i0 + r) * len..(i0 + r + 1) * len];
                for (x, &v) in row.iter_mut().zip(&samples[n * len..(n + 1) * len]) {
                    *x += br * v;
                }
            }
        }
        // Cholesky A = L Lᵀ.
        let mut l = vec![0.0; m * m];
        for i in 0..m {
            for j in 0..=i {
                let mut s = a[i * m + j];
                for k in 0..j {
                    s -= l[i * m + k] * l[j * m + k];
                }
                if i == j {
                    if !(s > 1e-14) {
                        return Err(format!(
                            "{} samples do not determine {m} spline coefficients",
                            times.len()
                        ));
                    }
                    l[i * m + i] = s.sqrt();
                } else {
                    l[i * m + j] = s / l[j * m + j];
                }
            }
        }
        // Solve L Lᵀ X = R column by column of the coefficient vectors.
        let mut x = rhs;
        for c in 0..len {
            for i in 0..m {
                let mut s = x[i * len + c];
                for k in 0..i {
                    s -= l[i * m + k] * x[k * len + c];
                }
                x[i * len + c] = s / l[i * m + i];
            }
            for i in (0..m).rev() {
                let mut s = x[i * len + c];
                for k in i + 1..m {
                    s -= l[k * m + i] * x[k * len + c];
                }
                x[i * len + c] = s / l[i * m + i];
            }
        }
        Ok(x)
    }

    /// ∫_0^T ‖θ'(t)‖² dt exactly (Gauss–Legendre on each knot interval, exact for the
    /// degree 2d − 2 integrand), and its gradient with respect to the coefficients added
    /// into `grad` (scaled by `scale`) when given. Returns the integral.
    pub fn derivative_energy(
        &self,
        coef: &[f64],
        len: usize,
        scale: f64,
        mut grad: Option<&mut [f64]>,
    ) -> f64 {
        let (nodes, weights) = gauss_legendre(self.degree.max(1));
        let mut total = 0.0;
        let mut dtheta = vec![0.0; len];
        for w in self.knots.windows(2) {
            let (a, b) = (w[0].max(0.0), w[1].min(self.t_end));
            if b <= a {
                continue;
            }
            let (mid, half) = (0.5 * (a + b), 0.5 * (b - a));
            for (&x, &wq) in nodes.iter().zip(&weights) {
                let t = mid + half * x;
                let (i0, db) = self.eval_derivative(t);
                dtheta.fill(0.0);
                for (r, &dr) in db.iter().enumerate() {
                    for (o, &c) in dtheta
                        .iter_mut()
                        .zip(&coef[(i0 + r) * len..(i0 + r + 1) * len])
                    {
                        *o += dr * c;
                    }
                }
                let wgt = wq * half;
                total += wgt * dtheta.iter().map(|v| v * v).sum::<f64>();
                if let Some(g) = grad.as_deref_mut() {
                    for (r, &dr) in db.iter().enumerate() {
                        for (gi, &v) in g[(i0 + r) * len..(i0 + r + 1) * len]
                            .iter_mut()
                            .zip(&dtheta)
                        {
                            *gi += scale * 2.0 * wgt * dr * v;
                        }
                    }
                }
            }
        }
        total
    }
}

/// Gauss–Legendre nodes and weights on [−1, 1] with `n` points (exact to degree 2n − 1).
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    for i in 0..n {
        // Newton on P_n from the Chebyshev guess.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (n as f64 + 0.5)).cos();
        for _ in 0..100 {
            let (mut p1, mut p2) = (1.0, 0.0);
            for j in 0..n {
                let p3 = p2;
                p2 = p1;
                p1 = ((2 * j + 1) as f64 * z * p2 - j as f64 * p3) / (j + 1) as f64;
            }
            let pp = n as f64 * (z * p1 - p2) / (z * z - 1.0);
            let dz = p1 / pp;
            z -= dz;
            if dz.abs() < 1e-16 {
                let (mut q1, mut q2) = (1.0, 0.0);
                for j in 0..n {
                    let q3 = q2;
                    q2 = q1;
                    q1 = ((2 * j + 1) as f64 * z * q2 - j as f64 * q3) / (j + 1) as f64;
                }
                let qp = n as f64 * (z * q1 - q2) / (z * z - 1.0);
                x[i] = z;
                w[i] = 2.0 / ((1.0 - z * z) * qp * qp);
                break;
            }
        }
    }
    (x, w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Vec<Basis> {
        let mut v = Vec::new();
        for kind in [KnotKind::Clamped, KnotKind::Uniform] {
            for (d, m) in [(1, 2), (1, 9), (2, 5), (3, 8), (3, 4), (4, 11)] {
                v.push(Basis::uniform(kind, d, m, 2.5).unwrap());
            }
        }
        v
    }

    #[test]
    fn the_basis_is_a_partition_of_unity_on_the_interval() {
        for b in bases() {
            for k in 0..=200 {
                let t = 2.5 * k as f64 / 200.0;
                let (i0, v) = b.eval(t);
                assert!(i0 + v.len() <= b.count());
                assert!(v.iter().all(|&x| x >= -1e-15));
                let s: f64 = v.iter().sum();
                assert!((s - 1.0).abs() < 1e-14, "{b:?} t={t} sum {s}");
            }
        }
    }

    #[test]
    fn degree_one_with_one_function_per_node_interpolates() {
        // Clamped, degree 1, M = N + 1: B_i is the hat at t_i = i·T/N, so θ(t_n) = c_n.
        let n = 7;
        let b = Basis::uniform(KnotKind::Clamped, 1, n + 1, 1.0).unwrap();
        for i in 0..=n {
            let (i0, v) = b.eval(i as f64 / n as f64);
            for (r, &x) in v.iter().enumerate() {
                let want = if i0 + r == i { 1.0 } else { 0.0 };
                assert!((x - want).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn derivatives_match_finite_differences() {
        for b in bases() {
            let m = b.count();
            let coef: Vec<f64> = (0..m).map(|i| (i as f64 * 1.3).sin()).collect();
            for k in 1..50 {
                let t = 2.5 * (k as f64 + 0.37) / 51.0;
                let f = |t: f64| {
                    let mut o = [0.0];
                    b.value(&coef, 1, t, &mut o);
                    o[0]
                };
                let fd = (f(t + 1e-6) - f(t - 1e-6)) / 2e-6;
                let (i0, db) = b.eval_derivative(t);
                let d: f64 = db.iter().enumerate().map(|(r, x)| x * coef[i0 + r]).sum();
                assert!(
                    (fd - d).abs() < 1e-6 * (1.0 + d.abs()),
                    "{b:?} t={t}: {fd} vs {d}"
                );
            }
        }
    }

    #[test]
    fn knot_insertion_keeps_the_curve() {
        for b0 in bases() {
            let len = 2;
            let coef0: Vec<f64> = (0..b0.count() * len)
                .map(|i| (i as f64 * 0.7).cos())
                .collect();
            let mut b = b0.clone();
            let mut coef = coef0.clone();
            b.insert_knot(0.9, &mut coef, len);
            b.refine_uniformly(&mut coef, len);
            assert!(b.count() > b0.count());
            for k in 0..=100 {
                let t = 2.5 * k as f64 / 100.0;
                let (mut u, mut v) = ([0.0; 2], [0.0; 2]);
                b0.value(&coef0, len, t, &mut u);
                b.value(&coef, len, t, &mut v);
                for (x, y) in u.iter().zip(&v) {
                    assert!((x - y).abs() < 1e-14, "t={t}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn projection_recovers_a_spline_and_energy_is_exact() {
        let b = Basis::uniform(KnotKind::Clamped, 3, 6, 1.0).unwrap();
        let coef: Vec<f64> = (0..6).map(|i| i as f64 * i as f64 * 0.1).collect();
        let times: Vec<f64> = (0..40).map(|n| n as f64 / 39.0).collect();
        let mut samples = vec![0.0; 40];
        for (n, &t) in times.iter().enumerate() {
            b.value(&coef, 1, t, &mut samples[n..n + 1]);
        }
        let p = b.project(&times, &samples, 1).unwrap();
        for (x, y) in p.iter().zip(&coef) {
            assert!((x - y).abs() < 1e-10);
        }
        // θ(t) = t on [0, 1] (degree 1, clamped, c = (0, 1)): ∫ θ'² = 1.
        let lin = Basis::uniform(KnotKind::Clamped, 1, 2, 1.0).unwrap();
        assert!((lin.derivative_energy(&[0.0, 1.0], 1, 1.0, None) - 1.0).abs() < 1e-14);
        // Gradient of the energy against finite differences.
        let mut g = vec![0.0; 6];
        b.derivative_energy(&coef, 1, 1.0, Some(&mut g));
        for i in 0..6 {
            let mut cp = coef.clone();
            let mut cm = coef.clone();
            cp[i] += 1e-6;
            cm[i] -= 1e-6;
            let fd = (b.derivative_energy(&cp, 1, 1.0, None)
                - b.derivative_energy(&cm, 1, 1.0, None))
                / 2e-6;
            assert!(
                (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
        assert!(b.project(&times[..3], &samples[..3], 1).is_err());
    }
}
