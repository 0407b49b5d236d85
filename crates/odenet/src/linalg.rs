//! Column-major dense kernels on raw slices: the GEMMs of a layer, without allocation.
//!
//! A matrix A of shape m × n is stored column-major: A(i, j) = a[i + j·m].

/// C ← α·op(A)·op(B) + β·C with op(A) of shape m × k, op(B) of shape k × n, C of shape m × n.
///
/// `ta`/`tb` select the transpose of the stored matrix: with `ta = false` A is stored m × k,
/// with `ta = true` A is stored k × m and op(A) = Aᵀ (likewise for B).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm(
    m: usize,
    k: usize,
    n: usize,
    alpha: f64,
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    beta: f64,
    c: &mut [f64],
) {
    // Checked in release builds too: the unsafe call below must never read or write past a
    // slice (a mismatched state size would corrupt memory instead of failing).
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm shapes ({m} × {k}) · ({k} × {n}) exceed the slices ({}, {}, {})",
        a.len(),
        b.len(),
        c.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // Strides of op(A) (m × k) and op(B) (k × n) as they sit in memory.
    let (rsa, csa) = if ta { (k as isize, 1) } else { (1, m as isize) };
    let (rsb, csb) = if tb { (n as isize, 1) } else { (1, k as isize) };
    // SAFETY: the slices are at least as long as the strided views read and written,
    // checked above in debug builds and guaranteed by every caller's shapes.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            1,
            m as isize,
        );
    }
}

/// Adds the row sums of the m × n matrix `s` into `out` (length m): out += S·1.
#[inline]
pub fn add_row_sums(m: usize, s: &[f64], out: &mut [f64]) {
    for col in s.chunks_exact(m) {
        for (o, v) in out.iter_mut().zip(col) {
            *o += v;
        }
    }
}

/// Writes b·1ᵀ into the m × n matrix `z` (each column a copy of `b`).
#[inline]
pub fn broadcast_columns(b: &[f64], z: &mut [f64]) {
    for col in z.chunks_exact_mut(b.len()) {
        col.copy_from_slice(b);
    }
}

/// Euclidean dot product Σ_i a_i b_i over the common length.
///
/// Eight partial sums (lane j takes i ≡ j mod 8 of the leading multiple of eight) run as
/// independent chains, so the loop vectorizes instead of waiting on one accumulator; they are
/// combined pairwise in a fixed order and the tail is added last. The result depends only on
/// the inputs, never on where they are computed.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    let mut acc = [0.0; 8];
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f64], ta: bool, b: &[f64], tb: bool) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let aij = if ta { a[l + i * k] } else { a[i + l * m] };
                    let bij = if tb { b[j + l * n] } else { b[l + j * k] };
                    s += aij * bij;
                }
                c[i + j * m] = s;
            }
        }
        c
    }

    #[test]
    fn dot_sums_every_product() {
        for n in [0, 1, 7, 8, 9, 31, 64, 100] {
            let a: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..n).map(|i| (i as f64 * 0.91).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!(
                (dot(&a, &b) - naive).abs() <= 1e-14 * (1.0 + naive.abs()),
                "n={n}"
            );
        }
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
    }

    #[test]
    fn gemm_matches_naive_for_all_transposes() {
        let (m, k, n) = (3, 4, 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.91).cos()).collect();
        for ta in [false, true] {
            for tb in [false, true] {
                let mut c = vec![1.0; m * n];
                gemm(m, k, n, 2.0, &a, ta, &b, tb, 0.5, &mut c);
                let r = naive(m, k, n, &a, ta, &b, tb);
                for (x, y) in c.iter().zip(&r) {
                    assert!((x - (2.0 * y + 0.5)).abs() < 1e-12);
                }
            }
        }
    }
}
