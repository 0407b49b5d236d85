//! C ← C + op(A)·B without packing B: the AVX-512 GEMM path for a layer's products.
//!
//! A packed GEMM copies op(A) and B into panels before it multiplies. For a layer's products
//! (m = w rows, w ≤ 128, against a batch of columns) the copy of the wide operand B costs a
//! large part of the multiply-adds: each copied value serves only 2m flops. This path reads B
//! where it lies, through its strides, and A's columns where A is stored column-major; a
//! transposed A (the adjoint's Kᵀ) is transposed once per inner block into a kept buffer.
//!
//! **The same bits as the packed path.** matrixmultiply 0.3's AVX-512 kernel (and its FMA
//! kernel), which [`super::gemm_packed`] calls, forms each element as follows, and so does this
//! path: the inner index l runs in order, in blocks of [`KC`]; within a block one fused
//! multiply-add chain starts from +0, acc ← fma(A(i, l), B(l, j), acc); after each block
//! C(i, j) ← C(i, j) + acc, rounded once. (Its epilogue computes fma(α, acc, β C), which with
//! α = β = 1 is C + acc rounded once.) The tile shapes differ, but a tile only decides which
//! elements are computed together, never the order of one element's sum. The test
//! `direct_products_have_the_bits_of_the_packed_path` checks this on many shapes.

use std::cell::RefCell;

/// Length of an inner-index block: matrixmultiply's `D_KC` for f64.
pub const KC: usize = 256;

/// Whether this path can serve an m-row product here: AVX-512 F (so that the packed path is
/// matrixmultiply's AVX-512 kernel, whose order this path repeats, and so are its FMA
/// kernel's) and m a multiple of 8.
#[inline]
pub fn available(m: usize) -> bool {
    m.is_multiple_of(8) && crate::activation::avx512()
}

thread_local! {
    /// The transposed A of one inner block (m × KC, column-major), kept across calls.
    static PANEL: RefCell<Vec<f64>> = const { RefCell::new(Vec::new()) };
}

/// C ← S + op(A)·B, C m × n column-major (leading dimension m); op(A)(i, l) =
/// a[i·rsa + l·csa], B(l, j) = b[l·rsb + j·csb] and S(i, j) = src[i + j·css]. The first inner
/// block adds onto S, the later ones onto C: the bits of copying S into C and then adding the
/// product, without the pass that writes S. S may be C itself (css = m, the plain C += op(A)·B),
/// another m × n matrix (css = m) or one column broadcast to all (css = 0).
///
/// # Safety
/// [`available`]`(m)` must hold, and every element addressed through the strides for
/// i < m, l < k, j < n must lie inside `a`, `b`, `c` and the source (the caller checks the
/// slice lengths); the source must not overlap C unless it is C itself.
#[allow(clippy::too_many_arguments)]
pub unsafe fn add_product_onto(
    m: usize,
    k: usize,
    n: usize,
    a: *const f64,
    rsa: isize,
    csa: isize,
    b: *const f64,
    rsb: isize,
    csb: isize,
    src: *const f64,
    css: isize,
    c: *mut f64,
) {
    #[cfg(target_arch = "x86_64")]
    PANEL.with(|panel| {
        let mut panel = panel.borrow_mut();
        // SAFETY: forwarded from the caller; `available` has confirmed AVX-512 F.
        unsafe { x86::add_product(m, k, n, a, rsa, csa, b, rsb, csb, src, css, c, &mut panel) }
    });
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (m, k, n, a, rsa, csa, b, rsb, csb, src, css, c, &PANEL);
        unreachable!("the direct GEMM path is only available on x86-64");
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::KC;
    use std::arch::x86_64::*;

    /// Columns per tile: 12 columns × 16 rows are 24 independent FMA chains in 24 of the 32
    /// vector registers, with two for A's rows and one for the broadcast B(l, j).
    const NR: usize = 12;

    /// See [`super::add_product_onto`]. Per inner block: the columns in tiles of 12 (then 4,
    /// then 1), and in each column tile the rows in tiles of 16 (then one of 8), so that a
    /// column tile's B values are read from cache by every row tile.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
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
        src: *const f64,
        css: isize,
        c: *mut f64,
        panel: &mut Vec<f64>,
    ) {
        let mut l0 = 0;
        // The first block adds onto the source, the later ones onto C.
        let (mut src, mut css) = (src, css);
        while l0 < k {
            let kc = KC.min(k - l0);
            // SAFETY (all pointer arithmetic below): l0 + kc ≤ k, every row and column tile
            // lies inside m × n, and the caller guarantees every (i, l) and (l, j) in range
            // is inside the slices.
            let (ap, lda) = if rsa == 1 {
                (unsafe { a.offset(l0 as isize * csa) }, csa)
            } else {
                // op(A)'s block, m × kc, transposed into the panel (column-major, ld m).
                panel.resize(m * kc, 0.0);
                unsafe { transpose(m, kc, a.offset(l0 as isize * csa), rsa, csa, panel) };
                (panel.as_ptr(), m as isize)
            };
            let bp = unsafe { b.offset(l0 as isize * rsb) };
            let mut j0 = 0;
            while j0 < n {
                let left = n - j0;
                let cols = if left >= NR {
                    NR
                } else if left >= 4 {
                    4
                } else {
                    1
                };
                let bj = unsafe { bp.offset(j0 as isize * csb) };
                let cj = unsafe { c.add(j0 * m) };
                let sj = unsafe { src.offset(j0 as isize * css) };
                let to = Onto {
                    src: sj,
                    css,
                    c: cj,
                };
                unsafe {
                    match cols {
                        NR => rows::<NR>(m, kc, ap, lda, bj, rsb, csb, to),
                        4 => rows::<4>(m, kc, ap, lda, bj, rsb, csb, to),
                        _ => rows::<1>(m, kc, ap, lda, bj, rsb, csb, to),
                    }
                }
                j0 += cols;
            }
            l0 += kc;
            (src, css) = (c, m as isize);
        }
    }

    /// panel(i + l·m) = a[i·rsa + l·csa] for i < m, l < kc: with csa = 1 in blocks of 8 × 8,
    /// each transposed in registers (pure data movement, so the values are unchanged).
    ///
    /// # Safety
    /// Every a[i·rsa + l·csa] for i < m, l < kc in bounds; m a multiple of 8; panel.len() ≥
    /// m·kc.
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn transpose(
        m: usize,
        kc: usize,
        a: *const f64,
        rsa: isize,
        csa: isize,
        panel: &mut [f64],
    ) {
        assert!(panel.len() >= m * kc && m.is_multiple_of(8));
        let p = panel.as_mut_ptr();
        let full = if csa == 1 { kc / 8 * 8 } else { 0 };
        // SAFETY (all pointer arithmetic): the caller's bounds; i < m and l < kc throughout.
        unsafe {
            for ib in (0..m).step_by(8) {
                for lb in (0..full).step_by(8) {
                    let v: [__m512d; 8] = std::array::from_fn(|r| {
                        _mm512_loadu_pd(a.offset((ib + r) as isize * rsa + lb as isize))
                    });
                    for (l, column) in transpose8(v).into_iter().enumerate() {
                        _mm512_storeu_pd(p.add(ib + (lb + l) * m), column);
                    }
                }
                for i in ib..ib + 8 {
                    for l in full..kc {
                        *p.add(i + l * m) = *a.offset(i as isize * rsa + l as isize * csa);
                    }
                }
            }
        }
    }

    /// The transpose of the 8 × 8 block whose rows are `v`: lane r of the result's l-th
    /// vector is lane l of v[r]. Pure data movement (unpacks, then two-source permutes, then
    /// 256-bit half swaps), so the values are unchanged.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn transpose8(v: [__m512d; 8]) -> [__m512d; 8] {
        // 2 × 2 blocks: t0 = (v0₀ v1₀ v0₂ v1₂ v0₄ v1₄ v0₆ v1₆), t1 the odd lanes.
        let t: [__m512d; 8] = std::array::from_fn(|q| {
            let (x, y) = (v[2 * (q / 2)], v[2 * (q / 2) + 1]);
            if q % 2 == 0 {
                _mm512_unpacklo_pd(x, y)
            } else {
                _mm512_unpackhi_pd(x, y)
            }
        });
        // 4 × 4 blocks: b[l] (l < 4) holds rows 0–3 of lanes l and l + 4 (from t0–t3),
        // b[4 + l] rows 4–7 (from t4–t7).
        let lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        let b: [__m512d; 8] = std::array::from_fn(|q| {
            let base = 4 * (q / 4);
            let l = q % 4;
            let (x, y) = (t[base + l % 2], t[base + 2 + l % 2]);
            if l < 2 {
                _mm512_permutex2var_pd(x, lo, y)
            } else {
                _mm512_permutex2var_pd(x, hi, y)
            }
        });
        std::array::from_fn(|l| {
            if l < 4 {
                _mm512_shuffle_f64x2::<0x44>(b[l], b[4 + l])
            } else {
                _mm512_shuffle_f64x2::<0xEE>(b[l - 4], b[l])
            }
        })
    }

    /// Where a tile's sums go: C(i, j) (column j at `c + j·ldc`) ← S(i, j) + sum, with S's
    /// column j at `src + j·css` (C itself, another matrix, or a broadcast column).
    #[derive(Clone, Copy)]
    struct Onto {
        src: *const f64,
        css: isize,
        c: *mut f64,
    }

    impl Onto {
        /// The same place `rows` rows further down.
        #[inline]
        unsafe fn down(self, rows: usize) -> Onto {
            // SAFETY: the caller's bounds.
            unsafe {
                Onto {
                    src: self.src.add(rows),
                    css: self.css,
                    c: self.c.add(rows),
                }
            }
        }
    }

    /// One column tile of NC columns over all m rows, for one inner block of kc.
    ///
    /// # Safety
    /// As [`add_product`], for the tile's elements.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn rows<const NC: usize>(
        m: usize,
        kc: usize,
        a: *const f64,
        lda: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        to: Onto,
    ) {
        let mut i0 = 0;
        while i0 < m {
            // SAFETY: i0 + 16 ≤ m (or i0 + 8 ≤ m, m being a multiple of 8).
            unsafe {
                if m - i0 >= 16 {
                    tile::<2, NC>(kc, a.add(i0), lda, b, rsb, csb, to.down(i0), m);
                    i0 += 16;
                } else {
                    tile::<1, NC>(kc, a.add(i0), lda, b, rsb, csb, to.down(i0), m);
                    i0 += 8;
                }
            }
        }
    }

    /// C(0..8RV, 0..NC) ← S(0..8RV, 0..NC) + Σ_l A(0..8RV, l) B(l, 0..NC) over l < kc: one
    /// FMA chain per element from +0 in l order, then one addition onto the source.
    ///
    /// # Safety
    /// A's column l is `a + l·lda` (8RV contiguous values), B(l, j) = `b[l·rsb + j·csb]`, C's
    /// column j is `to.c + j·ldc` and S's `to.src + j·to.css`; all in bounds.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tile<const RV: usize, const NC: usize>(
        kc: usize,
        a: *const f64,
        lda: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        to: Onto,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_pd(); RV]; NC];
        for l in 0..kc {
            let mut av = [_mm512_setzero_pd(); RV];
            for (r, v) in av.iter_mut().enumerate() {
                // SAFETY: the caller's bounds.
                *v = unsafe { _mm512_loadu_pd(a.offset(l as isize * lda).add(8 * r)) };
            }
            let bl = unsafe { b.offset(l as isize * rsb) };
            for (j, accj) in acc.iter_mut().enumerate() {
                let bv = _mm512_set1_pd(unsafe { *bl.offset(j as isize * csb) });
                for (s, v) in accj.iter_mut().zip(&av) {
                    *s = _mm512_fmadd_pd(*v, bv, *s);
                }
            }
        }
        for (j, accj) in acc.iter().enumerate() {
            for (r, s) in accj.iter().enumerate() {
                // SAFETY: the caller's bounds.
                unsafe {
                    let q = to.src.offset(j as isize * to.css).add(8 * r);
                    let p = to.c.add(j * ldc + 8 * r);
                    _mm512_storeu_pd(p, _mm512_add_pd(_mm512_loadu_pd(q), *s));
                }
            }
        }
    }
}
