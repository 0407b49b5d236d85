//! C ← C + op(A)·B without packing: the GEMM path for small products.
//!
//! A packed GEMM copies op(A) and B into panels before it multiplies. For the products of a
//! layer at a small batch (K U with few columns, S Uᵀ with a short inner dimension) the copies
//! cost as much as the multiply-adds, so this path reads the operands where they lie: A's
//! columns when A is stored column-major, B element by element through its strides. Only a
//! transposed A is copied, one panel of eight rows at a time.
//!
//! **The same bits as the packed path.** matrixmultiply 0.3's FMA kernel, which [`super::gemm`]
//! calls on x86-64 with AVX2 and FMA, forms each element as follows, and so does this path:
//! the inner index l runs in order, in blocks of [`KC`]; within a block one fused multiply-add
//! chain starts from +0, acc ← fma(A(i, l), B(l, j), acc); after each block
//! C(i, j) ← C(i, j) + acc, rounded once. (Its full tiles compute fma(α, acc, β C) and its edge
//! tiles C·β + (acc + 0); with α = β = 1 both are C + acc, since acc is never −0: a chain that
//! starts from +0 cannot reach −0.) The tile shapes differ, but a tile only decides which
//! elements are computed together, never the order of one element's sum. The test
//! `direct_products_have_the_bits_of_the_packed_path` checks this on many shapes.

/// Length of an inner-index block: matrixmultiply's `D_KC` for f64.
pub const KC: usize = 256;

/// Whether this path can serve an m-row product here: AVX2 and FMA (so that the packed path
/// is matrixmultiply's FMA kernel, whose order this path repeats) and m a multiple of 4.
#[inline]
pub fn available(m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        m % 4 == 0
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = m;
        false
    }
}

/// C ← C + op(A)·B, C m × n column-major (leading dimension m); op(A)(i, l) = a[i·rsa + l·csa]
/// and B(l, j) = b[l·rsb + j·csb].
///
/// # Safety
/// [`available`]`(m)` must hold, and every element addressed through the strides for
/// i < m, l < k, j < n must lie inside `a`, `b` and `c` (the caller checks the slice lengths).
#[allow(clippy::too_many_arguments)]
pub unsafe fn add_product(
    m: usize,
    k: usize,
    n: usize,
    a: *const f64,
    rsa: isize,
    csa: isize,
    b: *const f64,
    rsb: isize,
    csb: isize,
    c: *mut f64,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `available` has confirmed AVX2 and FMA.
    unsafe {
        x86::add_product(m, k, n, a, rsa, csa, b, rsb, csb, c)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n, a, rsa, csa, b, rsb, csb, c);
        unreachable!("the direct GEMM path is only available on x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::KC;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// See [`super::add_product`]. Rows go in tiles of eight (a last tile of four when m ≡ 4
    /// mod 8), columns in tiles of six (then one tile of the 1–5 left): twelve independent
    /// FMA chains, enough to cover the FMA latency at two per cycle.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn add_product(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        c: *mut f64,
    ) {
        // A panel of op(A), eight rows × KC, for a transposed A (rsa ≠ 1); written before read.
        let mut panel = MaybeUninit::<[f64; 8 * KC]>::uninit();
        let panel = panel.as_mut_ptr() as *mut f64;
        let mut l0 = 0;
        while l0 < k {
            let kc = KC.min(k - l0);
            let mut i0 = 0;
            while i0 < m {
                let rows = if m - i0 >= 8 { 8 } else { 4 };
                // SAFETY (all pointer arithmetic below): i0 + rows ≤ m, l0 + kc ≤ k, and the
                // caller guarantees every (i, l) and (l, j) in range is inside the slices.
                let (ap, lda) = unsafe {
                    if rsa == 1 {
                        (a.offset(i0 as isize + l0 as isize * csa), csa)
                    } else {
                        let block = a.offset(i0 as isize * rsa + l0 as isize * csa);
                        pack_rows(block, rsa, csa, rows, kc, panel);
                        (panel as *const f64, rows as isize)
                    }
                };
                let bp = unsafe { b.offset(l0 as isize * rsb) };
                let cp = unsafe { c.add(i0) };
                unsafe {
                    if rows == 8 {
                        columns::<2>(kc, n, ap, lda, bp, rsb, csb, cp, m);
                    } else {
                        columns::<1>(kc, n, ap, lda, bp, rsb, csb, cp, m);
                    }
                }
                i0 += rows;
            }
            l0 += kc;
        }
    }

    /// panel[l·rows + r] = op(A)(r, l) for r < rows, l < kc, where op(A)(r, l) = a[r·rsa + l·csa]:
    /// the tile's rows made contiguous per l. With csa = 1 (a stored transposed matrix, the only
    /// case `gemm` produces) four rows × four l at a time go through an in-register transpose.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pack_rows(
        a: *const f64,
        rsa: isize,
        csa: isize,
        rows: usize,
        kc: usize,
        panel: *mut f64,
    ) {
        // SAFETY: r < rows and l < kc address the caller's tile.
        unsafe {
            let mut l = 0;
            if csa == 1 {
                while l + 4 <= kc {
                    for r in (0..rows).step_by(4) {
                        let row = |q: usize| a.offset((r + q) as isize * rsa + l as isize);
                        let (x0, x1) = (_mm256_loadu_pd(row(0)), _mm256_loadu_pd(row(1)));
                        let (x2, x3) = (_mm256_loadu_pd(row(2)), _mm256_loadu_pd(row(3)));
                        // t0 = (x0₀, x1₀, x0₂, x1₂), t1 = (x0₁, x1₁, x0₃, x1₃), likewise t2, t3.
                        let (t0, t1) = (_mm256_unpacklo_pd(x0, x1), _mm256_unpackhi_pd(x0, x1));
                        let (t2, t3) = (_mm256_unpacklo_pd(x2, x3), _mm256_unpackhi_pd(x2, x3));
                        let out = |q: usize| panel.add((l + q) * rows + r);
                        _mm256_storeu_pd(out(0), _mm256_permute2f128_pd::<0x20>(t0, t2));
                        _mm256_storeu_pd(out(1), _mm256_permute2f128_pd::<0x20>(t1, t3));
                        _mm256_storeu_pd(out(2), _mm256_permute2f128_pd::<0x31>(t0, t2));
                        _mm256_storeu_pd(out(3), _mm256_permute2f128_pd::<0x31>(t1, t3));
                    }
                    l += 4;
                }
            }
            for l in l..kc {
                for r in 0..rows {
                    *panel.add(l * rows + r) = *a.offset(r as isize * rsa + l as isize * csa);
                }
            }
        }
    }

    /// One row tile of 4·MV rows against all n columns.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn columns<const MV: usize>(
        kc: usize,
        n: usize,
        ap: *const f64,
        lda: isize,
        bp: *const f64,
        rsb: isize,
        csb: isize,
        cp: *mut f64,
        ldc: usize,
    ) {
        let mut j = 0;
        // SAFETY: j + NR ≤ n for every tile; see `add_product`.
        unsafe {
            while j + 6 <= n {
                let (b, c) = (bp.offset(j as isize * csb), cp.add(j * ldc));
                tile::<MV, 6>(kc, ap, lda, b, rsb, csb, c, ldc);
                j += 6;
            }
            let (b, c) = (bp.offset(j as isize * csb), cp.add(j * ldc));
            match n - j {
                5 => tile::<MV, 5>(kc, ap, lda, b, rsb, csb, c, ldc),
                4 => tile::<MV, 4>(kc, ap, lda, b, rsb, csb, c, ldc),
                3 => tile::<MV, 3>(kc, ap, lda, b, rsb, csb, c, ldc),
                2 => tile::<MV, 2>(kc, ap, lda, b, rsb, csb, c, ldc),
                1 => tile::<MV, 1>(kc, ap, lda, b, rsb, csb, c, ldc),
                _ => {}
            }
        }
    }

    /// A tile of 4·MV rows × NR columns: NR·MV accumulators, each one element's FMA chain over
    /// l = 0, …, kc − 1 from +0, then added to C once.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const MV: usize, const NR: usize>(
        kc: usize,
        ap: *const f64,
        lda: isize,
        bp: *const f64,
        rsb: isize,
        csb: isize,
        cp: *mut f64,
        ldc: usize,
    ) {
        let mut acc = [[_mm256_setzero_pd(); MV]; NR];
        // SAFETY: l < kc, v < MV, j < NR stay inside the tile the caller addressed.
        unsafe {
            for l in 0..kc {
                let mut av = [_mm256_setzero_pd(); MV];
                for (v, x) in av.iter_mut().enumerate() {
                    *x = _mm256_loadu_pd(ap.offset(l as isize * lda + 4 * v as isize));
                }
                for (j, acc_j) in acc.iter_mut().enumerate() {
                    let bj = _mm256_broadcast_sd(&*bp.offset(l as isize * rsb + j as isize * csb));
                    for v in 0..MV {
                        acc_j[v] = _mm256_fmadd_pd(av[v], bj, acc_j[v]);
                    }
                }
            }
            for (j, acc_j) in acc.iter().enumerate() {
                for (v, x) in acc_j.iter().enumerate() {
                    let cv = cp.add(j * ldc + 4 * v);
                    _mm256_storeu_pd(cv, _mm256_add_pd(_mm256_loadu_pd(cv), *x));
                }
            }
        }
    }
}
