//! AVX2 + FMA: a column of W values is NV = W/4 vectors of four doubles.

use super::{Activation, Sigma, SMOOTH_RELU_ETA};
use crate::activation::tanh4;
use std::arch::x86_64::*;

type V = __m256d;
const LANES: usize = 4;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn zero() -> V {
    _mm256_setzero_pd()
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn splat(x: f64) -> V {
    _mm256_set1_pd(x)
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn add(a: V, b: V) -> V {
    _mm256_add_pd(a, b)
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn mul(a: V, b: V) -> V {
    _mm256_mul_pd(a, b)
}
/// a b + c, one rounding.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn fmadd(a: V, b: V, c: V) -> V {
    _mm256_fmadd_pd(a, b, c)
}
/// −a b + c, one rounding.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn fnmadd(a: V, b: V, c: V) -> V {
    _mm256_fnmadd_pd(a, b, c)
}
/// # Safety
/// `p` must be valid for reading four doubles.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn loadu(p: *const f64) -> V {
    // SAFETY: the caller's contract.
    unsafe { _mm256_loadu_pd(p) }
}
/// # Safety
/// `p` must be valid for writing four doubles.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn storeu(p: *mut f64, x: V) {
    // SAFETY: the caller's contract.
    unsafe { _mm256_storeu_pd(p, x) }
}

/// max(a, b) as `maxpd` takes it (b where either is NaN or both are zero).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn max(a: V, b: V) -> V {
    _mm256_max_pd(a, b)
}
/// `if_ge` where x ≥ t (ordered), else `other`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn select_ge(x: V, t: V, if_ge: V, other: V) -> V {
    _mm256_blendv_pd(other, if_ge, _mm256_cmp_pd::<_CMP_GE_OQ>(x, t))
}
/// 1 where x > 0 (ordered), else +0.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn positive_one(x: V) -> V {
    _mm256_and_pd(
        _mm256_cmp_pd::<_CMP_GT_OQ>(x, _mm256_setzero_pd()),
        _mm256_set1_pd(1.0),
    )
}
#[inline]
#[target_feature(enable = "avx2,fma")]
fn tanh(x: V) -> V {
    tanh4(x)
}

column_kernels!("avx2,fma");
