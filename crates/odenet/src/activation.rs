//! Pointwise activation functions σ and their derivatives σ', and the elementwise passes of
//! a step over whole slices.
//!
//! σ = tanh is [`tanh`], a branch-free function of the usual operations (no libm call), so
//! that a loop over a slice vectorizes: tanh |x| = e/(e + 2) with e = expm1(2|x|), the sign
//! restored by copysign. expm1 is computed by Cody–Waite range reduction 2|x| = k ln 2 + r with
//! k the integer nearest 2|x|/ln 2, r ∈ [−ln 2/2, ln 2/2], the Taylor polynomial of degree 13
//! of expm1(r) by Estrin's scheme (truncation below 1.5 · 10⁻¹⁷ relative), and expm1(2|x|) =
//! 2ᵏ expm1(r) + (2ᵏ − 1) with 2ᵏ built from exponent bits; e and d = e + 2 are each one
//! fused multiply-add from the same 2ᵏ and expm1(r). One division gives t = e/d up to
//! |x| = 0.55 (t ≤ 0.5005) and t = 1 − 2/d above (t > 1/2), where 1 − 2/d keeps the error
//! of d out of the leading bits. |x| is clamped to 20, where tanh rounds to ±1. Every multiply-add
//! is an explicit [`f64::mul_add`] (one rounding), so the result is the same bits whatever
//! instruction set runs it. It is within [`TANH_MAX_ULP`] = 4 ulp of libm's `tanh` over the whole
//! range (tested on a dense sweep of [−20, 20], random bit patterns, subnormals, ±0, ±∞ and NaN);
//! σ' = 1 − t² is computed from the same t with one fused multiply-add, within 9 · 2⁻⁵³ of 1 −
//! tanh² from libm.
//!
//! The passes ([`forward`], [`forward_in_place`], [`sensitivity`], [`apply`],
//! [`scaled_derivative`]) each read the pre-activation once and compute σ (or σ') once per
//! element in the same loop as the rest of the update. They are compiled twice, for AVX2 + FMA
//! and portably, and the variant is chosen at run time from the CPU alone; both give the same
//! bits (the portable one calls libm's exact `fma` for each multiply-add where the CPU has no
//! FMA instruction, so it is slower but not different). The scalar [`Activation::value`] and
//! [`Activation::derivative`] are the same functions, so every path gives the same bits.

use std::fmt;
use std::str::FromStr;

/// Half-width η of the quadratic blend in [`Activation::SmoothRelu`].
pub const SMOOTH_RELU_ETA: f64 = 0.1;

/// The activation σ applied elementwise in the opening layer and in every hidden step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// σ(x) = tanh(x).
    Tanh,
    /// σ(x) = max(x, 0).
    Relu,
    /// σ(x) = x²/(4η) + x/2 + η/4 for |x| < η, max(x, 0) otherwise (η = 0.1):
    /// a C¹ ReLU whose derivative is continuous at the kink.
    SmoothRelu,
}

impl Activation {
    /// All activations, in the order the CLI lists them.
    pub const ALL: [Activation; 3] = [Activation::Tanh, Activation::Relu, Activation::SmoothRelu];

    /// σ(x).
    #[inline(always)]
    pub fn value(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => tanh(x),
            Activation::Relu => x.max(0.0),
            Activation::SmoothRelu => {
                // x²/(4η) + x/2 + η/4 = (x + η)²/(4η), exactly 0 at x = −η; written with
                // one clamp and one select so that it vectorizes.
                let eta = SMOOTH_RELU_ETA;
                let t = x.max(-eta) + eta;
                if x >= eta {
                    x
                } else {
                    t * t * (0.25 / eta)
                }
            }
        }
    }

    /// σ'(x). For ReLU the derivative at 0 is taken as 0.
    #[inline(always)]
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Activation::Tanh => tanh_derivative_from(tanh(x)),
            Activation::Relu => f64::from(u8::from(x > 0.0)),
            Activation::SmoothRelu => {
                // (x + η)/(2η) on (−η, η), 0 below, 1 above.
                let eta = SMOOTH_RELU_ETA;
                let t = x.max(-eta) + eta;
                if x >= eta {
                    1.0
                } else {
                    t * (0.5 / eta)
                }
            }
        }
    }

    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
            Activation::SmoothRelu => "smoothrelu",
        }
    }
}

/// Largest difference between [`tanh`] and libm's `tanh`, in units in the last place,
/// asserted by the tests over the whole range (the largest measured is 4 ulp, at a handful of
/// points near |x| = 0.22, where k = 1 and r < 0). glibc's `tanh` itself is up to 2 ulp off;
/// against a 200-bit reference (mpmath, on 200 000 random points of [0, 20] and [0, 1.2]) the
/// largest error of [`tanh`] measured was 2.49 ulp, and of glibc's 2.00 ulp. (Up to commit
/// 50514e8 the quotient was refined by a Newton step from an exact e + 2 and the polynomial
/// had degree 17 on r ∈ [0, ln 2]: 1.4 ulp from the reference and 3 from libm, at 1.5 times
/// the cost.)
pub const TANH_MAX_ULP: u64 = 4;

// ln 2 split so that k · LN2_HI is exact for k < 2²⁰ (fdlibm's constants).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
const INV_LN2: f64 = std::f64::consts::LOG2_E;
// 1.5 · 2⁵²: adding it rounds a small value to the nearest integer, held in the low mantissa
// bits.
const ROUND: f64 = 6_755_399_441_055_744.0;
// 1/(j + 2)!, j = 0 … 11: expm1(r) = r + r² Σ_j C[j] rʲ (degree 13; for |r| ≤ ln 2/2 the
// truncation r¹⁴/14! is below 1.5 · 10⁻¹⁷ of expm1(r)).
const C: [f64; 12] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];
// Above this |x|, tanh > 1/2 and t = 1 − 2/d.
const UPPER: f64 = 0.55;

/// tanh(x) without a libm call, straight-line so that loops over it vectorize; within
/// [`TANH_MAX_ULP`] ulp of libm's `tanh`. tanh(±0) = ±0, tanh(±∞) = ±1, tanh(NaN) = NaN, and
/// the result is exactly ±1 for |x| ≥ 19.1.
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    // Clamped with a comparison so that NaN stays NaN (and ±∞ becomes 20).
    let a = if a > 20.0 { 20.0 } else { a };
    let y = a + a;
    // y = k ln 2 + r with k the integer nearest y / ln 2 (∈ [0, 58]), so |r| ≤ ln 2/2 (up to
    // the rounding of y / ln 2); for |x| < ln 2 / 4, k = 0 and r = 2|x| exactly.
    let kr = y.mul_add(INV_LN2, ROUND);
    let k = kr - ROUND;
    let r = (-k).mul_add(LN2_HI, y);
    let r = (-k).mul_add(LN2_LO, r);
    // Σ_j C[j] rʲ by Estrin's scheme (a dependency chain of depth 4 instead of 11, so that
    // the out-of-order core overlaps more elements).
    let r2 = r * r;
    let r4 = r2 * r2;
    let e1: [f64; 6] = std::array::from_fn(|i| C[2 * i + 1].mul_add(r, C[2 * i]));
    let e2: [f64; 3] = std::array::from_fn(|i| e1[2 * i + 1].mul_add(r2, e1[2 * i]));
    let q = e2[2].mul_add(r4, e2[1]).mul_add(r4, e2[0]);
    let p = r2.mul_add(q, r);
    // 2ᵏ from the integer in the low bits of `kr`.
    let scale = f64::from_bits(
        (kr.to_bits()
            .wrapping_sub(ROUND.to_bits())
            .wrapping_add(1023))
            << 52,
    );
    // e = 2ᵏ p + (2ᵏ − 1) and d = e + 2 = 2ᵏ p + (2ᵏ + 1), each rounded once (2ᵏ ± 1 is
    // exact up to k = 52, and beyond it the ±1 is below the rounding of 2ᵏ p).
    let e = scale.mul_add(p, scale - 1.0);
    let d = scale.mul_add(p, scale + 1.0);
    // One division: t = e/d, or t = 1 + (−2/d) where t > 1/2.
    let upper = a > UPPER;
    let num = if upper { -2.0 } else { e };
    let quotient = num / d;
    let t = if upper { 1.0 + quotient } else { quotient };
    t.copysign(x)
}

/// σ'(x) = 1 − t² for σ = tanh, from t = [`tanh`]`(x)`, with one rounding.
#[inline(always)]
pub fn tanh_derivative_from(t: f64) -> f64 {
    (-t).mul_add(t, 1.0)
}

/// [`tanh`] on four lanes with AVX2 + FMA: the same operations in the same order, so the same
/// bits as the scalar function lane by lane (for the fused kernels, which hold a column in
/// vectors).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) fn tanh4(x: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d {
    use std::arch::x86_64::*;
    let sign = _mm256_set1_pd(-0.0);
    let a = _mm256_andnot_pd(sign, x);
    // a > 20 → 20 (false for NaN, which stays).
    let a = _mm256_blendv_pd(
        a,
        _mm256_set1_pd(20.0),
        _mm256_cmp_pd::<_CMP_GT_OQ>(a, _mm256_set1_pd(20.0)),
    );
    let y = _mm256_add_pd(a, a);
    let round = _mm256_set1_pd(ROUND);
    let kr = _mm256_fmadd_pd(y, _mm256_set1_pd(INV_LN2), round);
    let k = _mm256_sub_pd(kr, round);
    let r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_HI), y);
    let r = _mm256_fnmadd_pd(k, _mm256_set1_pd(LN2_LO), r);
    let r2 = _mm256_mul_pd(r, r);
    let r4 = _mm256_mul_pd(r2, r2);
    let c = |i: usize| _mm256_set1_pd(C[i]);
    let e1: [__m256d; 6] = std::array::from_fn(|i| _mm256_fmadd_pd(c(2 * i + 1), r, c(2 * i)));
    let e2: [__m256d; 3] = std::array::from_fn(|i| _mm256_fmadd_pd(e1[2 * i + 1], r2, e1[2 * i]));
    let q = _mm256_fmadd_pd(_mm256_fmadd_pd(e2[2], r4, e2[1]), r4, e2[0]);
    let p = _mm256_fmadd_pd(r2, q, r);
    // 2ᵏ from the integer in the low bits of `kr`.
    let bits = _mm256_add_epi64(
        _mm256_sub_epi64(
            _mm256_castpd_si256(kr),
            _mm256_set1_epi64x(ROUND.to_bits() as i64),
        ),
        _mm256_set1_epi64x(1023),
    );
    let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(bits));
    let one = _mm256_set1_pd(1.0);
    let e = _mm256_fmadd_pd(scale, p, _mm256_sub_pd(scale, one));
    let d = _mm256_fmadd_pd(scale, p, _mm256_add_pd(scale, one));
    let upper = _mm256_cmp_pd::<_CMP_GT_OQ>(a, _mm256_set1_pd(UPPER));
    let num = _mm256_blendv_pd(e, _mm256_set1_pd(-2.0), upper);
    let quotient = _mm256_div_pd(num, d);
    let t = _mm256_blendv_pd(quotient, _mm256_add_pd(one, quotient), upper);
    // copysign(t, x).
    _mm256_or_pd(_mm256_andnot_pd(sign, t), _mm256_and_pd(sign, x))
}

/// [`tanh`] on eight lanes with AVX-512 F: the operations of [`tanh4`] (and of the scalar
/// function) in the same order, so the same bits lane by lane. (AVX-512 F has no
/// floating-point and/or; the sign bit is handled by the 64-bit integer ones, which give the
/// same bits.)
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) fn tanh8(x: std::arch::x86_64::__m512d) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let sign = _mm512_set1_epi64(i64::MIN);
    let xi = _mm512_castpd_si512(x);
    let a = _mm512_castsi512_pd(_mm512_andnot_si512(sign, xi));
    // a > 20 → 20 (false for NaN, which stays).
    let big = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(a, _mm512_set1_pd(20.0));
    let a = _mm512_mask_blend_pd(big, a, _mm512_set1_pd(20.0));
    let y = _mm512_add_pd(a, a);
    let round = _mm512_set1_pd(ROUND);
    let kr = _mm512_fmadd_pd(y, _mm512_set1_pd(INV_LN2), round);
    let k = _mm512_sub_pd(kr, round);
    let r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_HI), y);
    let r = _mm512_fnmadd_pd(k, _mm512_set1_pd(LN2_LO), r);
    let r2 = _mm512_mul_pd(r, r);
    let r4 = _mm512_mul_pd(r2, r2);
    let c = |i: usize| _mm512_set1_pd(C[i]);
    let e1: [__m512d; 6] = std::array::from_fn(|i| _mm512_fmadd_pd(c(2 * i + 1), r, c(2 * i)));
    let e2: [__m512d; 3] = std::array::from_fn(|i| _mm512_fmadd_pd(e1[2 * i + 1], r2, e1[2 * i]));
    let q = _mm512_fmadd_pd(_mm512_fmadd_pd(e2[2], r4, e2[1]), r4, e2[0]);
    let p = _mm512_fmadd_pd(r2, q, r);
    // 2ᵏ from the integer in the low bits of `kr`.
    let bits = _mm512_add_epi64(
        _mm512_sub_epi64(
            _mm512_castpd_si512(kr),
            _mm512_set1_epi64(ROUND.to_bits() as i64),
        ),
        _mm512_set1_epi64(1023),
    );
    let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(bits));
    let one = _mm512_set1_pd(1.0);
    let e = _mm512_fmadd_pd(scale, p, _mm512_sub_pd(scale, one));
    let d = _mm512_fmadd_pd(scale, p, _mm512_add_pd(scale, one));
    let upper = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(a, _mm512_set1_pd(UPPER));
    let num = _mm512_mask_blend_pd(upper, e, _mm512_set1_pd(-2.0));
    let quotient = _mm512_div_pd(num, d);
    let t = _mm512_mask_blend_pd(upper, quotient, _mm512_add_pd(one, quotient));
    // copysign(t, x).
    let ti = _mm512_castpd_si512(t);
    _mm512_castsi512_pd(_mm512_or_si512(
        _mm512_andnot_si512(sign, ti),
        _mm512_and_si512(sign, xi),
    ))
}

/// Whether the CPU runs the AVX2 + FMA variants (checked once per call; the check is cached
/// by the standard library).
#[inline]
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU runs the AVX-512 variants (AVX-512 F with AVX2 and FMA).
#[inline]
pub(crate) fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f") && avx2_fma()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The name of the variant the elementwise passes run on this CPU: "avx512f", "avx2+fma" or
/// "portable".
pub fn isa() -> &'static str {
    if avx512() {
        "avx512f"
    } else if avx2_fma() {
        "avx2+fma"
    } else {
        "portable"
    }
}

/// Defines `pub fn $name(args)` whose body is compiled three times, for AVX-512 F (eight
/// lanes a vector), for AVX2 + FMA (four) and portably, and runs the widest one the CPU has.
/// The body is the same scalar code, vectorized by the compiler lane by lane (elementwise,
/// no reductions), so every variant gives the same bits. `$avx2` runs the AVX2 variant where
/// the CPU has it (else the portable one) and `$portable` the portable one (for tests).
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident / $portable:ident / $avx2:ident ($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $body
                if avx512() {
                    // SAFETY: the CPU has AVX-512 F, AVX2 and FMA.
                    return unsafe { wide($($arg),*) };
                }
            }
            $avx2($($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled for AVX2 + FMA where the CPU has them.")]
        #[doc(hidden)]
        pub fn $avx2($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn narrow($($arg: $ty),*) $body
                if avx2_fma() {
                    // SAFETY: the CPU has AVX2 and FMA.
                    return unsafe { narrow($($arg),*) };
                }
            }
            $portable($($arg),*)
        }

        #[doc = concat!("[`", stringify!($name), "`] compiled without CPU-specific features.")]
        #[doc(hidden)]
        pub fn $portable($($arg: $ty),*) $body
    };
}

/// Runs `$e` with `$f` bound to σ (`value`) or σ' (`derivative`) of `$act`, one loop per
/// activation so that each is compiled for its σ.
macro_rules! with_sigma {
    ($act:expr, value $f:ident => $e:expr) => {
        match $act {
            Activation::Tanh => {
                let $f = |x: f64| tanh(x);
                $e
            }
            Activation::Relu => {
                let $f = |x: f64| Activation::Relu.value(x);
                $e
            }
            Activation::SmoothRelu => {
                let $f = |x: f64| Activation::SmoothRelu.value(x);
                $e
            }
        }
    };
    ($act:expr, derivative $f:ident => $e:expr) => {
        match $act {
            Activation::Tanh => {
                let $f = |x: f64| tanh_derivative_from(tanh(x));
                $e
            }
            Activation::Relu => {
                let $f = |x: f64| Activation::Relu.derivative(x);
                $e
            }
            Activation::SmoothRelu => {
                let $f = |x: f64| Activation::SmoothRelu.derivative(x);
                $e
            }
        }
    };
}

multiversion! {
    /// out = u + h σ(z), elementwise over the common length.
    fn forward / forward_portable / forward_avx2(act: Activation, h: f64, z: &[f64], u: &[f64], out: &mut [f64]) {
        with_sigma!(act, value f => {
            for ((o, &ui), &zi) in out.iter_mut().zip(u).zip(z) {
                *o = ui + h * f(zi);
            }
        })
    }
}

multiversion! {
    /// u ← u + h σ(z), elementwise.
    fn forward_in_place / forward_in_place_portable / forward_in_place_avx2(act: Activation, h: f64, z: &[f64], u: &mut [f64]) {
        with_sigma!(act, value f => {
            for (ui, &zi) in u.iter_mut().zip(z) {
                *ui += h * f(zi);
            }
        })
    }
}

multiversion! {
    /// s = σ'(z) · h · λ⁺, elementwise (the sensitivity of a step's adjoint).
    fn sensitivity / sensitivity_portable / sensitivity_avx2(act: Activation, h: f64, z: &[f64], lam: &[f64], s: &mut [f64]) {
        with_sigma!(act, derivative f => {
            for ((si, &zi), &li) in s.iter_mut().zip(z).zip(lam) {
                *si = f(zi) * h * li;
            }
        })
    }
}

multiversion! {
    /// out = σ(z), elementwise.
    fn apply / apply_portable / apply_avx2(act: Activation, z: &[f64], out: &mut [f64]) {
        with_sigma!(act, value f => {
            for (o, &zi) in out.iter_mut().zip(z) {
                *o = f(zi);
            }
        })
    }
}

multiversion! {
    /// s = σ'(z) · λ, elementwise.
    fn scaled_derivative / scaled_derivative_portable / scaled_derivative_avx2(act: Activation, z: &[f64], lam: &[f64], s: &mut [f64]) {
        with_sigma!(act, derivative f => {
            for ((si, &zi), &li) in s.iter_mut().zip(z).zip(lam) {
                *si = f(zi) * li;
            }
        })
    }
}

multiversion! {
    /// out = σ'(z), elementwise.
    fn apply_derivative / apply_derivative_portable / apply_derivative_avx2(act: Activation, z: &[f64], out: &mut [f64]) {
        with_sigma!(act, derivative f => {
            for (o, &zi) in out.iter_mut().zip(z) {
                *o = f(zi);
            }
        })
    }
}

/// Runs `$e` with `$f` bound to x ↦ (σ(x), σ'(x)) of `$act`: for tanh both from the one t,
/// with the same bits as [`Activation::value`] and [`Activation::derivative`].
macro_rules! with_sigma_pair {
    ($act:expr, $f:ident => $e:expr) => {
        match $act {
            Activation::Tanh => {
                let $f = |x: f64| {
                    let t = tanh(x);
                    (t, tanh_derivative_from(t))
                };
                $e
            }
            Activation::Relu => {
                let $f = |x: f64| (Activation::Relu.value(x), Activation::Relu.derivative(x));
                $e
            }
            Activation::SmoothRelu => {
                let $f = |x: f64| {
                    (
                        Activation::SmoothRelu.value(x),
                        Activation::SmoothRelu.derivative(x),
                    )
                };
                $e
            }
        }
    };
}

multiversion! {
    /// out = u + h σ(z) and d = σ'(z), elementwise: the forward pass of a step whose adjoint
    /// follows, the same bits in `out` as [`forward`] and in `d` as [`apply_derivative`].
    fn forward_keeping_derivative / forward_keeping_derivative_portable / forward_keeping_derivative_avx2(
        act: Activation,
        h: f64,
        z: &[f64],
        u: &[f64],
        out: &mut [f64],
        d: &mut [f64],
    ) {
        with_sigma_pair!(act, f => {
            for (((o, di), &ui), &zi) in out.iter_mut().zip(d.iter_mut()).zip(u).zip(z) {
                let (v, dv) = f(zi);
                *o = ui + h * v;
                *di = dv;
            }
        })
    }
}

multiversion! {
    /// u ← u + h σ(z) and d = σ'(z), elementwise (in place; as
    /// [`forward_keeping_derivative`]).
    fn forward_in_place_keeping_derivative / forward_in_place_keeping_derivative_portable / forward_in_place_keeping_derivative_avx2(
        act: Activation,
        h: f64,
        z: &[f64],
        u: &mut [f64],
        d: &mut [f64],
    ) {
        with_sigma_pair!(act, f => {
            for ((ui, di), &zi) in u.iter_mut().zip(d.iter_mut()).zip(z) {
                let (v, dv) = f(zi);
                *ui += h * v;
                *di = dv;
            }
        })
    }
}

multiversion! {
    /// s = d · h · λ⁺, elementwise: the sensitivity of a step's adjoint from a kept
    /// D = σ'(Z), the same bits as [`sensitivity`] from Z.
    fn sensitivity_from_derivative / sensitivity_from_derivative_portable / sensitivity_from_derivative_avx2(h: f64, d: &[f64], lam: &[f64], s: &mut [f64]) {
        for ((si, &di), &li) in s.iter_mut().zip(d).zip(lam) {
            *si = di * h * li;
        }
    }
}

/// out = tanh(x), elementwise ([`tanh`] on the best instruction set of the CPU).
pub fn tanh_slice(x: &[f64], out: &mut [f64]) {
    apply(Activation::Tanh, x, out);
}

/// out = 1 − tanh(x)², elementwise (from the same t as [`tanh_slice`]).
pub fn tanh_derivative_slice(x: &[f64], out: &mut [f64]) {
    apply_derivative(Activation::Tanh, x, out);
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            "smoothrelu" | "smooth_relu" => Ok(Activation::SmoothRelu),
            _ => Err(format!(
                "unknown activation \"{s}\" (expected \"tanh\", \"relu\" or \"smoothrelu\")"
            )),
        }
    }
}

#[cfg(test)]
mod tests;
