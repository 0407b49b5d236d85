//! Column-major dense kernels on raw slices: the GEMMs of a layer, without allocation.
//!
//! A matrix A of shape m × n is stored column-major: A(i, j) = a[i + j·m].

pub mod direct;

/// C ← α·op(A)·op(B) + β·C with op(A) of shape m × k, op(B) of shape k × n, C of shape m × n.
///
/// `ta`/`tb` select the transpose of the stored matrix: with `ta = false` A is stored m × k,
/// with `ta = true` A is stored k × m and op(A) = Aᵀ (likewise for B).
///
/// The accumulating products of a layer (α = β = 1) where it pays go through
/// [`direct`], which skips the packing and gives the same bits as the packed path
/// ([`gemm_packed`]); everything else is the packed path.
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
    check_shapes(m, k, n, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    if alpha == 1.0
        && beta == 1.0
        && k > 0
        && direct_pays(m, n, ta)
        && gemm_direct(m, k, n, a, ta, b, tb, c)
    {
        return;
    }
    gemm_packed(m, k, n, alpha, a, ta, b, tb, beta, c);
}

/// C ← C + op(A)·op(B) through [`direct`] (shapes as in [`gemm`], checked), where
/// [`direct::available`]`(m)`; returns false, leaving C untouched, where it is not.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm_direct(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    c: &mut [f64],
) -> bool {
    check_shapes(m, k, n, a, b, c);
    if !direct::available(m) {
        return false;
    }
    if m == 0 || n == 0 || k == 0 {
        return true;
    }
    let src = c.as_ptr();
    // SAFETY: `check_shapes` bounds every strided element by the slice lengths; C is its
    // own source, with its leading dimension; `available` holds.
    unsafe { direct_onto(m, k, n, a, ta, b, tb, src, m as isize, c) };
    true
}

/// C ← S + op(A)·op(B) through [`direct::add_product_onto`], S(i, j) = src[i + j·css].
///
/// # Safety
/// Shapes checked by `check_shapes`, every S(i, j) inside its allocation, S not overlapping C
/// unless it is C itself, and [`direct::available`]`(m)`.
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn direct_onto(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    src: *const f64,
    css: isize,
    c: &mut [f64],
) {
    let (rsa, csa, rsb, csb) = strides(m, k, n, ta, tb);
    // SAFETY: forwarded from the caller.
    unsafe {
        direct::add_product_onto(
            m,
            k,
            n,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            src,
            css,
            c.as_mut_ptr(),
        );
    }
}

/// The matrix S onto which [`gemm_onto`] adds its product.
#[derive(Clone, Copy, Debug)]
pub enum Onto<'a> {
    /// An m × n matrix, column-major.
    Matrix(&'a [f64]),
    /// The m × n matrix s·1ᵀ whose every column is this m-vector (a layer's bias).
    Columns(&'a [f64]),
}

/// C ← S + op(A)·op(B) (shapes as in [`gemm`]): the bits of writing S into C and then
/// [`gemm`] with α = β = 1, without the pass that writes S. Through [`direct`] where it pays
/// (it adds the first inner block's sums onto S as it stores them); elsewhere S is written
/// into C first.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm_onto(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    ta: bool,
    b: &[f64],
    tb: bool,
    onto: Onto<'_>,
    c: &mut [f64],
) {
    check_shapes(m, k, n, a, b, c);
    let (src, css) = match onto {
        Onto::Matrix(s) => {
            assert!(
                s.len() >= m * n,
                "gemm_onto: S has {} values, not {m} × {n}",
                s.len()
            );
            (s, m as isize)
        }
        Onto::Columns(s) => {
            assert!(
                s.len() >= m,
                "gemm_onto: the column has {} values, not {m}",
                s.len()
            );
            (s, 0)
        }
    };
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 && direct_pays(m, n, ta) && direct::available(m) {
        // SAFETY: `check_shapes` and the assertions above bound every strided element of A,
        // B, C and S by the slice lengths; S is borrowed shared and C exclusively, so they do
        // not overlap; `available` holds.
        unsafe { direct_onto(m, k, n, a, ta, b, tb, src.as_ptr(), css, c) };
        return;
    }
    match onto {
        Onto::Matrix(s) => c[..m * n].copy_from_slice(&s[..m * n]),
        Onto::Columns(s) => broadcast_columns(&s[..m], &mut c[..m * n]),
    }
    gemm(m, k, n, 1.0, a, ta, b, tb, 1.0, c);
}

/// Whether [`direct`] is faster than packing for an m × k × n product, op(A) transposed
/// (`ta`) or not.
///
/// From the `gemm_paths` figures of the `step` bench (AMD Zen 5, AVX-512), for a layer of
/// width w at batch B: the forward product (w × w × B) and the gradient (w × B × w) are
/// 1.2–6× faster at w = 32 … 256 and every batch. The adjoint's Kᵀ is first transposed (once
/// per inner block, 8 × 8 blocks in registers): at w ≤ 64 the adjoint is then 1.25–2.3×
/// faster at every batch; at w = 128 and 256 it pays from B ≥ 2w (1.1–1.25×; below it down
/// to 0.3×: the transpose's rows 1–2 KB apart conflict in the cache). Wider layers are not
/// measured and keep the packed path.
#[inline]
fn direct_pays(m: usize, n: usize, ta: bool) -> bool {
    m <= 256 && (!ta || m <= 64 || n >= 2 * m)
}

/// Strides (rsa, csa, rsb, csb) of op(A) (m × k) and op(B) (k × n) as they sit in memory.
#[inline]
fn strides(m: usize, k: usize, n: usize, ta: bool, tb: bool) -> (isize, isize, isize, isize) {
    let (rsa, csa) = if ta { (k as isize, 1) } else { (1, m as isize) };
    let (rsb, csb) = if tb { (n as isize, 1) } else { (1, k as isize) };
    (rsa, csa, rsb, csb)
}

/// Checked in release builds too: the unsafe calls must never read or write past a slice (a
/// mismatched state size would corrupt memory instead of failing).
#[inline]
fn check_shapes(m: usize, k: usize, n: usize, a: &[f64], b: &[f64], c: &[f64]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm shapes ({m} × {k}) · ({k} × {n}) exceed the slices ({}, {}, {})",
        a.len(),
        b.len(),
        c.len()
    );
}

/// [`gemm`] always through matrixmultiply's packed GEMM: the reference for [`direct`]'s bits
/// and the baseline of its benchmark.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn gemm_packed(
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
    check_shapes(m, k, n, a, b, c);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa, rsb, csb) = strides(m, k, n, ta, tb);
    // SAFETY: `check_shapes` bounds every strided element by the slice lengths.
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

    /// Values spread over 2⁻²⁰ … 2²⁰ in magnitude with both signs, so that sums of different
    /// orders round differently.
    fn spread_values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let mantissa = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                let exponent = ((s >> 3) % 41) as i32 - 20;
                mantissa * 2f64.powi(exponent)
            })
            .collect()
    }

    /// The direct path must give the packed path's bits on every shape it may serve: m a
    /// multiple of 8 (row tiles of 16 and 8), any n (column tiles of 12, 4 and 1), k below, at
    /// and above the inner block KC (one and several blocks), A and B stored either way.
    /// To show that the inputs can tell orders apart, the same products summed in two other
    /// orders (separate multiply and add; one FMA chain ignoring the blocks) must differ from
    /// the packed bits somewhere.
    #[test]
    fn direct_products_have_the_bits_of_the_packed_path() {
        if !direct::available(8) {
            eprintln!("inconclusive: no AVX-512 here, so the direct path never runs");
            return;
        }
        let (mut cases, mut elements) = (0, 0);
        let (mut unfused_differs, mut unblocked_differs) = (0, 0);
        for m in [8, 16, 24, 40, 64] {
            for k in [1, 2, 7, 64, 256, 257, 600] {
                for n in [1, 2, 3, 4, 5, 11, 12, 13, 17, 64] {
                    for ta in [false, true] {
                        for tb in [false, true] {
                            let seed = (m * 1_000_000 + k * 1000 + n) as u64 * 4
                                + 2 * ta as u64
                                + tb as u64;
                            let a = spread_values(m * k, seed);
                            let b = spread_values(k * n, seed + 1);
                            let c0 = spread_values(m * n, seed + 2);
                            let mut packed = c0.clone();
                            gemm_packed(m, k, n, 1.0, &a, ta, &b, tb, 1.0, &mut packed);
                            let mut direct = c0.clone();
                            assert!(gemm_direct(m, k, n, &a, ta, &b, tb, &mut direct));
                            for idx in 0..m * n {
                                assert_eq!(
                                    direct[idx].to_bits(),
                                    packed[idx].to_bits(),
                                    "m={m} k={k} n={n} ta={ta} tb={tb} element {idx}: \
                                     direct {:e}, packed {:e}",
                                    direct[idx],
                                    packed[idx]
                                );
                                let (i, j) = (idx % m, idx / m);
                                let at = |l: usize| if ta { a[l + i * k] } else { a[i + l * m] };
                                let bt = |l: usize| if tb { b[j + l * n] } else { b[l + j * k] };
                                let unfused = c0[idx] + (0..k).fold(0.0, |s, l| s + at(l) * bt(l));
                                let unblocked =
                                    c0[idx] + (0..k).fold(0.0, |s, l| at(l).mul_add(bt(l), s));
                                unfused_differs +=
                                    (unfused.to_bits() != packed[idx].to_bits()) as usize;
                                if k > direct::KC {
                                    unblocked_differs +=
                                        (unblocked.to_bits() != packed[idx].to_bits()) as usize;
                                }
                            }
                            cases += 1;
                            elements += m * n;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 5 * 7 * 10 * 4);
        assert!(
            unfused_differs > elements / 10 && unblocked_differs > 100,
            "the inputs do not tell summation orders apart ({unfused_differs} of {elements} \
             unfused sums and {unblocked_differs} unblocked chains differ): inconclusive"
        );
    }

    #[test]
    fn a_product_onto_a_source_has_the_bits_of_copying_it_first() {
        // C ← S + op(A)·op(B) against S written into C and the packed product added: S another
        // matrix or a broadcast column, one inner block or several (k > KC), every transpose,
        // widths the direct path serves and ones it does not (m = 3, 12), and k = 0.
        let mut direct_cases = 0;
        for m in [3, 8, 12, 16, 64] {
            for k in [0, 5, 64, 300] {
                for n in [1, 7, 13, 40] {
                    for ta in [false, true] {
                        for tb in [false, true] {
                            let seed = (m * 1_000_000 + k * 1000 + n) as u64 * 4
                                + 2 * ta as u64
                                + tb as u64;
                            let a = spread_values(m * k, seed);
                            let b = spread_values(k * n, seed + 1);
                            let src = spread_values(m * n, seed + 2);
                            let col = spread_values(m, seed + 3);
                            for (name, onto) in [
                                ("matrix", Onto::Matrix(&src)),
                                ("column", Onto::Columns(&col)),
                            ] {
                                let mut want = vec![0.0; m * n];
                                match onto {
                                    Onto::Matrix(s) => want.copy_from_slice(s),
                                    Onto::Columns(s) => broadcast_columns(s, &mut want),
                                }
                                let before = want.clone();
                                gemm_packed(m, k, n, 1.0, &a, ta, &b, tb, 1.0, &mut want);
                                // C starts as garbage: every element must be written.
                                let mut got = vec![f64::NAN; m * n];
                                gemm_onto(m, k, n, &a, ta, &b, tb, onto, &mut got);
                                assert_eq!(
                                    got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                    want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                                    "{name} m={m} k={k} n={n} ta={ta} tb={tb}"
                                );
                                if k > 0 {
                                    assert_ne!(want, before, "the product added nothing");
                                }
                                direct_cases += (k > 0 && direct::available(m)) as usize;
                            }
                        }
                    }
                }
            }
        }
        if direct_cases == 0 {
            eprintln!("inconclusive for the direct path: no AVX-512 here");
        }
    }

    #[test]
    fn gemm_dispatch_gives_the_packed_bits_for_a_layer_s_products() {
        // The three products of a dense step at a small and a large batch, through `gemm`
        // (whichever path it picks) against the packed path.
        for (w, batch) in [(64, 1), (64, 16), (64, 1024), (12, 5), (6, 3)] {
            let k = spread_values(w * w, 1);
            let u = spread_values(w * batch, 2);
            let s = spread_values(w * batch, 3);
            type Product = (usize, usize, usize, bool, bool);
            let products: [Product; 3] = [
                (w, w, batch, false, false),
                (w, w, batch, true, false),
                (w, batch, w, false, true),
            ];
            for (idx, &(m, kk, n, ta, tb)) in products.iter().enumerate() {
                let (a, b) = match idx {
                    0 => (&k, &u),
                    1 => (&k, &s),
                    _ => (&s, &u),
                };
                let c0 = spread_values(m * n, 4 + idx as u64);
                let (mut via_gemm, mut packed) = (c0.clone(), c0);
                gemm(m, kk, n, 1.0, a, ta, b, tb, 1.0, &mut via_gemm);
                gemm_packed(m, kk, n, 1.0, a, ta, b, tb, 1.0, &mut packed);
                let same = via_gemm
                    .iter()
                    .zip(&packed)
                    .all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same, "w={w} batch={batch} product {idx}");
            }
        }
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
