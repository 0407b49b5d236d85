//! Fused one-pass kernels for narrow layers (w = 4, 8 or 16) on x86-64 with AVX2 and FMA.
//!
//! For a narrow layer the step is memory-bound: a GEMM packs U, writes Z = K U + b 1ᵀ, and an
//! elementwise pass reads Z and U again. These kernels keep K (and Kᵀ) in registers and treat
//! one example (one column u_j of the w × B state, contiguous in memory) at a time:
//!
//! - forward:  z_j = b + Σ_l K(:, l) u_j(l),  u⁺_j = u_j + h σ(z_j);
//! - adjoint:  s_j = σ'(z_j) ⊙ (h λ⁺_j),  λ_j = λ⁺_j + Σ_r Kᵀ(:, r) s_j(r);
//! - gradient: ∂J/∂K += Σ_j s_j u_jᵀ and ∂J/∂b += Σ_j s_j, summed over j in order in local
//!   accumulators and added to the output once.
//!
//! Every sum is taken in a fixed order with fused multiply-adds, so a column gives the same bits
//! wherever it is computed. [`crate::layer`] calls these when [`supported`] says so.

use crate::activation::SMOOTH_RELU_ETA;
use crate::layer::DenseStep;
use crate::Activation;

/// An activation as a type, so that each kernel is compiled for one σ.
trait Sigma {
    const ACT: Activation;
}
struct Tanh;
struct Relu;
struct SmoothRelu;
impl Sigma for Tanh {
    const ACT: Activation = Activation::Tanh;
}
impl Sigma for Relu {
    const ACT: Activation = Activation::Relu;
}
impl Sigma for SmoothRelu {
    const ACT: Activation = Activation::SmoothRelu;
}

/// Widths with a fused kernel.
const WIDTHS: [usize; 3] = [4, 8, 16];

/// Whether the fused kernels serve this width on this machine.
#[inline]
pub fn supported(width: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        WIDTHS.contains(&width)
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = width;
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 + FMA: a column of W values is NV = W/4 vectors of four doubles.
    use super::{Activation, Sigma, SMOOTH_RELU_ETA};
    use crate::activation::tanh4;
    use std::arch::x86_64::*;

    /// σ on four lanes; the same operations, in the same order, as [`Activation::value`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn value<S: Sigma>(x: __m256d) -> __m256d {
        match S::ACT {
            Activation::Relu => _mm256_max_pd(x, _mm256_setzero_pd()),
            Activation::SmoothRelu => {
                let eta = _mm256_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm256_add_pd(_mm256_max_pd(x, _mm256_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let quad =
                    _mm256_mul_pd(_mm256_mul_pd(t, t), _mm256_set1_pd(0.25 / SMOOTH_RELU_ETA));
                _mm256_blendv_pd(quad, x, _mm256_cmp_pd::<_CMP_GE_OQ>(x, eta))
            }
            Activation::Tanh => tanh4(x),
        }
    }

    /// σ' on four lanes; the same operations as [`Activation::derivative`].
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn derivative<S: Sigma>(x: __m256d) -> __m256d {
        match S::ACT {
            Activation::Relu => _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_GT_OQ>(x, _mm256_setzero_pd()),
                _mm256_set1_pd(1.0),
            ),
            Activation::SmoothRelu => {
                let eta = _mm256_set1_pd(SMOOTH_RELU_ETA);
                let t = _mm256_add_pd(_mm256_max_pd(x, _mm256_set1_pd(-SMOOTH_RELU_ETA)), eta);
                let lin = _mm256_mul_pd(t, _mm256_set1_pd(0.5 / SMOOTH_RELU_ETA));
                _mm256_blendv_pd(
                    lin,
                    _mm256_set1_pd(1.0),
                    _mm256_cmp_pd::<_CMP_GE_OQ>(x, eta),
                )
            }
            Activation::Tanh => one_minus_square(tanh4(x)),
        }
    }

    /// 1 − t² with one rounding on four lanes ([`crate::activation::tanh_derivative_from`]).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn one_minus_square(t: __m256d) -> __m256d {
        _mm256_fnmadd_pd(t, t, _mm256_set1_pd(1.0))
    }

    /// Loads `NV` vectors from `p[0..4 NV]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn load<const NV: usize>(p: &[f64]) -> [__m256d; NV] {
        assert!(p.len() >= 4 * NV);
        // SAFETY: the assertion bounds every four-double read.
        std::array::from_fn(|v| unsafe { _mm256_loadu_pd(p.as_ptr().add(4 * v)) })
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn store<const NV: usize>(p: &mut [f64], x: &[__m256d; NV]) {
        assert!(p.len() >= 4 * NV);
        for (v, xv) in x.iter().enumerate() {
            // SAFETY: bounded by the assertion.
            unsafe { _mm256_storeu_pd(p.as_mut_ptr().add(4 * v), *xv) };
        }
    }

    /// K (column-major W × W) as W columns of NV vectors, and Kᵀ likewise.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn matrix<const W: usize, const NV: usize>(k: &[f64], transpose: bool) -> [[__m256d; NV]; W] {
        assert!(W == 4 * NV && k.len() >= W * W);
        let mut col = [0.0; W];
        std::array::from_fn(|l| {
            for (i, c) in col.iter_mut().enumerate() {
                *c = if transpose {
                    k[l + i * W]
                } else {
                    k[i + l * W]
                };
            }
            load::<NV>(&col)
        })
    }

    /// One layer held in vectors for the column kernels: K, Kᵀ (adjoint only), b and h, and
    /// the gradient accumulators Σ_j s_j u_jᵀ and Σ_j s_j.
    struct Layer<const W: usize, const NV: usize> {
        k: [[__m256d; NV]; W],
        kt: [[__m256d; NV]; W],
        b: [__m256d; NV],
        h: __m256d,
        gk: [[__m256d; NV]; W],
        gb: [__m256d; NV],
    }

    impl<const W: usize, const NV: usize> Layer<W, NV> {
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn new(k: &[f64], b: &[f64], h: f64, adjoint: bool) -> Self {
            let zero = _mm256_setzero_pd();
            Layer {
                k: matrix::<W, NV>(k, false),
                kt: if adjoint {
                    matrix::<W, NV>(k, true)
                } else {
                    [[zero; NV]; W]
                },
                b: load::<NV>(b),
                h: _mm256_set1_pd(h),
                gk: [[zero; NV]; W],
                gb: [zero; NV],
            }
        }

        /// z = b + Σ_l K(:, l) u(l), accumulated in l order with fused multiply-adds.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn pre_activation(&self, u: &[f64]) -> [__m256d; NV] {
            let mut z = self.b;
            for (col, &ul) in self.k.iter().zip(u) {
                let ul = _mm256_set1_pd(ul);
                for (zv, kv) in z.iter_mut().zip(col) {
                    *zv = _mm256_fmadd_pd(*kv, ul, *zv);
                }
            }
            z
        }

        /// u⁺ = u + h σ(K u + b) for one column.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn forward<S: Sigma>(&self, u: &[f64]) -> [__m256d; NV] {
            let z = self.pre_activation(u);
            let x = load::<NV>(u);
            std::array::from_fn(|v| _mm256_fmadd_pd(self.h, value::<S>(z[v]), x[v]))
        }

        /// σ'(K u + b) for one column.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn derivative<S: Sigma>(&self, u: &[f64]) -> [__m256d; NV] {
            let z = self.pre_activation(u);
            std::array::from_fn(|v| derivative::<S>(z[v]))
        }

        /// (u + h σ(K u + b), σ'(K u + b)) for one column: for tanh σ' = 1 − t² from the
        /// t of the step, the bits of [`Layer::forward`] and [`Layer::derivative`].
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn forward_keeping<S: Sigma>(&self, u: &[f64]) -> ([__m256d; NV], [__m256d; NV]) {
            let z = self.pre_activation(u);
            let x = load::<NV>(u);
            let mut d = [_mm256_setzero_pd(); NV];
            let out = std::array::from_fn(|v| {
                let t = value::<S>(z[v]);
                d[v] = match S::ACT {
                    Activation::Tanh => one_minus_square(t),
                    _ => derivative::<S>(z[v]),
                };
                _mm256_fmadd_pd(self.h, t, x[v])
            });
            (out, d)
        }

        /// s = (σ'(K u + b) · h) ⊙ λ⁺ for one column, σ'(K u + b) read from `d` when kept;
        /// with `grad`, gk += s uᵀ and gb += s.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn sensitivity<S: Sigma>(
            &mut self,
            u: &[f64],
            d: Option<&[f64]>,
            lam_next: &[f64],
            grad: bool,
        ) -> [__m256d; NV] {
            let dz = match d {
                Some(d) => load::<NV>(d),
                None => self.derivative::<S>(u),
            };
            let l = load::<NV>(lam_next);
            let s: [__m256d; NV] =
                std::array::from_fn(|v| _mm256_mul_pd(_mm256_mul_pd(dz[v], self.h), l[v]));
            if grad {
                for (gcol, &ul) in self.gk.iter_mut().zip(u) {
                    let ul = _mm256_set1_pd(ul);
                    for (g, sv) in gcol.iter_mut().zip(&s) {
                        *g = _mm256_fmadd_pd(*sv, ul, *g);
                    }
                }
                for (g, sv) in self.gb.iter_mut().zip(&s) {
                    *g = _mm256_add_pd(*g, *sv);
                }
            }
            s
        }

        /// λ = λ⁺ + Σ_r Kᵀ(:, r) s(r) for one column (and the gradient terms with `grad`).
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn adjoint<S: Sigma>(
            &mut self,
            u: &[f64],
            d: Option<&[f64]>,
            lam_next: &[f64],
            grad: bool,
        ) -> [__m256d; NV] {
            let s = self.sensitivity::<S>(u, d, lam_next, grad);
            let mut sa = [0.0; W];
            store::<NV>(&mut sa, &s);
            let mut out = load::<NV>(lam_next);
            for (col, &sr) in self.kt.iter().zip(&sa) {
                let sr = _mm256_set1_pd(sr);
                for (o, kv) in out.iter_mut().zip(col) {
                    *o = _mm256_fmadd_pd(*kv, sr, *o);
                }
            }
            out
        }

        /// Adds the accumulated gradient into the caller's blocks.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn flush(&self, gk_out: &mut [f64], gb_out: &mut [f64]) {
            for (l, gcol) in self.gk.iter().enumerate() {
                let out = &mut gk_out[l * W..(l + 1) * W];
                let cur = load::<NV>(out);
                store::<NV>(
                    out,
                    &std::array::from_fn(|v| _mm256_add_pd(cur[v], gcol[v])),
                );
            }
            let cur = load::<NV>(gb_out);
            store::<NV>(
                gb_out,
                &std::array::from_fn(|v| _mm256_add_pd(cur[v], self.gb[v])),
            );
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        u_next: &mut [f64],
    ) {
        let layer = Layer::<W, NV>::new(k, b, h, false);
        for (un, uj) in u_next.chunks_exact_mut(W).zip(u.chunks_exact(W)) {
            store::<NV>(un, &layer.forward::<S>(uj));
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_in_place<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &mut [f64],
    ) {
        let layer = Layer::<W, NV>::new(k, b, h, false);
        for uj in u.chunks_exact_mut(W) {
            let out = layer.forward::<S>(uj);
            store::<NV>(uj, &out);
        }
    }

    /// The forward step out of place, with D = σ'(Z) into `d`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_keeping<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        u_next: &mut [f64],
        d: &mut [f64],
    ) {
        let layer = Layer::<W, NV>::new(k, b, h, false);
        let cols = u.chunks_exact(W).zip(d.chunks_exact_mut(W));
        for (un, (uj, dj)) in u_next.chunks_exact_mut(W).zip(cols) {
            let (out, dv) = layer.forward_keeping::<S>(uj);
            store::<NV>(un, &out);
            store::<NV>(dj, &dv);
        }
    }

    /// The forward step in place, with D = σ'(Z) into `d`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn forward_in_place_keeping<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &mut [f64],
        d: &mut [f64],
    ) {
        let layer = Layer::<W, NV>::new(k, b, h, false);
        for (uj, dj) in u.chunks_exact_mut(W).zip(d.chunks_exact_mut(W)) {
            let (out, dv) = layer.forward_keeping::<S>(uj);
            store::<NV>(uj, &out);
            store::<NV>(dj, &dv);
        }
    }

    /// D = σ'(K U + b 1ᵀ) into `d`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn derivatives<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        d: &mut [f64],
    ) {
        let layer = Layer::<W, NV>::new(k, b, h, false);
        for (uj, dj) in u.chunks_exact(W).zip(d.chunks_exact_mut(W)) {
            store::<NV>(dj, &layer.derivative::<S>(uj));
        }
    }

    /// Column j of a kept derivative, if any.
    #[inline]
    fn column<const W: usize>(d: Option<&[f64]>, j: usize) -> Option<&[f64]> {
        d.map(|d| &d[j * W..(j + 1) * W])
    }

    /// The adjoint step in place: λ⁺ is read from and λ written to `lam` (σ'(Z) from `d`
    /// when kept).
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn adjoint<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        d: Option<&[f64]>,
        lam: &mut [f64],
        grad: Option<(&mut [f64], &mut [f64])>,
    ) {
        let mut layer = Layer::<W, NV>::new(k, b, h, true);
        for (j, (lj, uj)) in lam.chunks_exact_mut(W).zip(u.chunks_exact(W)).enumerate() {
            let out = layer.adjoint::<S>(uj, column::<W>(d, j), lj, grad.is_some());
            store::<NV>(lj, &out);
        }
        if let Some((gk, gb)) = grad {
            layer.flush(gk, gb);
        }
    }

    /// The adjoint step out of place: λ⁺ from `lam_next`, λ into `lam_out`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn adjoint_from<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        d: Option<&[f64]>,
        lam_next: &[f64],
        lam_out: &mut [f64],
        grad: Option<(&mut [f64], &mut [f64])>,
    ) {
        let mut layer = Layer::<W, NV>::new(k, b, h, true);
        let cols = lam_next.chunks_exact(W).zip(u.chunks_exact(W));
        for (j, (oj, (lj, uj))) in lam_out.chunks_exact_mut(W).zip(cols).enumerate() {
            let out = layer.adjoint::<S>(uj, column::<W>(d, j), lj, grad.is_some());
            store::<NV>(oj, &out);
        }
        if let Some((gk, gb)) = grad {
            layer.flush(gk, gb);
        }
    }

    /// The gradient terms of the adjoint step alone (λ is not updated).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gradient<const W: usize, const NV: usize, S: Sigma>(
        h: f64,
        k: &[f64],
        b: &[f64],
        u: &[f64],
        d: Option<&[f64]>,
        lam_next: &[f64],
        gk: &mut [f64],
        gb: &mut [f64],
    ) {
        let mut layer = Layer::<W, NV>::new(k, b, h, false);
        for (j, (lj, uj)) in lam_next.chunks_exact(W).zip(u.chunks_exact(W)).enumerate() {
            layer.sensitivity::<S>(uj, column::<W>(d, j), lj, true);
        }
        layer.flush(gk, gb);
    }
}

/// Calls `$f::<W, S>(args)` for the runtime width and activation.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch {
    ($width:expr, $act:expr, $f:ident($($arg:expr),*)) => {{
        macro_rules! with_sigma {
            ($w:literal) => {
                // SAFETY: `supported` checked that the CPU has AVX2 and FMA.
                unsafe {
                    match $act {
                        Activation::Tanh => x86::$f::<$w, { $w / 4 }, Tanh>($($arg),*),
                        Activation::Relu => x86::$f::<$w, { $w / 4 }, Relu>($($arg),*),
                        Activation::SmoothRelu => x86::$f::<$w, { $w / 4 }, SmoothRelu>($($arg),*),
                    }
                }
            };
        }
        match $width {
            4 => with_sigma!(4),
            8 => with_sigma!(8),
            16 => with_sigma!(16),
            w => unreachable!("no fused kernel for width {w}"),
        }
    }};
}
#[cfg(not(target_arch = "x86_64"))]
macro_rules! dispatch {
    ($width:expr, $act:expr, $f:ident($($arg:expr),*)) => {{
        let _ = ($width, $act, $($arg),*);
        unreachable!("no fused kernels on this architecture")
    }};
}

/// U⁺ = U + h σ(K U + b 1ᵀ) (requires [`supported`]`(width)`).
pub fn forward(step: &DenseStep, u: &[f64], u_next: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward(h, k, b, u, u_next))
}

/// U ← U + h σ(K U + b 1ᵀ) (requires [`supported`]`(width)`).
pub fn forward_in_place(step: &DenseStep, u: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_in_place(h, k, b, u))
}

/// U⁺ = U + h σ(K U + b 1ᵀ) into `u_next` and D = σ'(K U + b 1ᵀ) into `d`: the bits of
/// [`forward`] and [`derivative`] (requires [`supported`]`(width)`).
pub fn forward_keeping(step: &DenseStep, u: &[f64], u_next: &mut [f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_keeping(h, k, b, u, u_next, d))
}

/// U ← U + h σ(K U + b 1ᵀ) and D = σ'(K U + b 1ᵀ) into `d` (in place; as [`forward_keeping`]).
pub fn forward_in_place_keeping(step: &DenseStep, u: &mut [f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, forward_in_place_keeping(h, k, b, u, d))
}

/// D = σ'(K U + b 1ᵀ) into `d`, the derivative the adjoint kernels form (requires
/// [`supported`]`(width)`).
pub fn derivative(step: &DenseStep, u: &[f64], d: &mut [f64]) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, derivatives(h, k, b, u, d))
}

/// λ ← λ + Kᵀ S with S = σ'(K U + b 1ᵀ) ⊙ (h λ), and ∂J/∂K += S Uᵀ, ∂J/∂b += S 1 when `grad`
/// is given; σ'(K U + b 1ᵀ) read from `d` when kept ([`derivative`]), the same bits (requires
/// [`supported`]`(width)`).
pub fn adjoint(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, adjoint(h, k, b, u, d, lam, grad))
}

/// The adjoint step out of place: λ = λ⁺ + Kᵀ S from `lam_next` into `lam_out`, the same bits
/// as [`adjoint`] (requires [`supported`]`(width)`).
pub fn adjoint_from(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam_next: &[f64],
    lam_out: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(
        width,
        act,
        adjoint_from(h, k, b, u, d, lam_next, lam_out, grad)
    )
}

/// ∂J/∂K += S Uᵀ, ∂J/∂b += S 1 with S = σ'(K U + b 1ᵀ) ⊙ (h λ⁺); the same bits as the
/// gradient of [`adjoint`] (requires [`supported`]`(width)`).
pub fn gradient(
    step: &DenseStep,
    u: &[f64],
    d: Option<&[f64]>,
    lam_next: &[f64],
    gk: &mut [f64],
    gb: &mut [f64],
) {
    let DenseStep {
        act,
        h,
        width,
        k,
        b,
    } = *step;
    dispatch!(width, act, gradient(h, k, b, u, d, lam_next, gk, gb))
}
