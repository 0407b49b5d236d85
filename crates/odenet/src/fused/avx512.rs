//! AVX-512 F: a column of W values is NV = W/8 vectors of eight doubles (w = 8 and 16).

use super::{Activation, Sigma, SMOOTH_RELU_ETA};
use crate::activation::tanh8;
use std::arch::x86_64::*;

type V = __m512d;
const LANES: usize = 8;

#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn zero() -> V {
    _mm512_setzero_pd()
}
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn splat(x: f64) -> V {
    _mm512_set1_pd(x)
}
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn add(a: V, b: V) -> V {
    _mm512_add_pd(a, b)
}
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn mul(a: V, b: V) -> V {
    _mm512_mul_pd(a, b)
}
/// a b + c, one rounding.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fmadd(a: V, b: V, c: V) -> V {
    _mm512_fmadd_pd(a, b, c)
}
/// −a b + c, one rounding.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn fnmadd(a: V, b: V, c: V) -> V {
    _mm512_fnmadd_pd(a, b, c)
}
/// # Safety
/// `p` must be valid for reading eight doubles.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn loadu(p: *const f64) -> V {
    // SAFETY: the caller's contract.
    unsafe { _mm512_loadu_pd(p) }
}
/// # Safety
/// `p` must be valid for writing eight doubles.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn storeu(p: *mut f64, x: V) {
    // SAFETY: the caller's contract.
    unsafe { _mm512_storeu_pd(p, x) }
}

/// max(a, b) as `vmaxpd` takes it (b where either is NaN or both are zero).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn max(a: V, b: V) -> V {
    _mm512_max_pd(a, b)
}
/// `if_ge` where x ≥ t (ordered), else `other` (a blend by a mask where AVX2 blends by a
/// vector: the same selection).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn select_ge(x: V, t: V, if_ge: V, other: V) -> V {
    _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, t), other, if_ge)
}
/// 1 where x > 0 (ordered), else +0.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn positive_one(x: V) -> V {
    _mm512_maskz_mov_pd(
        _mm512_cmp_pd_mask::<_CMP_GT_OQ>(x, _mm512_setzero_pd()),
        _mm512_set1_pd(1.0),
    )
}
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn tanh(x: V) -> V {
    tanh8(x)
}

column_kernels!("avx512f,avx2,fma");
