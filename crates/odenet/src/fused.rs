//! Fused one-pass kernels for narrow layers (w = 4, 8 or 16) on x86-64 with AVX2 and FMA, and
//! for w = 8 and 16 with AVX-512 F where the CPU has it (the same bits: [`column_kernels`]).
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
    WIDTHS.contains(&width) && crate::activation::avx2_fma()
}

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod columns;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Whether the fused kernels of widths 8 and 16 run their AVX-512 variant (eight lanes a
/// vector) on this CPU; tests can ask for the AVX2 one with [`tests_run_avx2`].
#[cfg(target_arch = "x86_64")]
#[inline]
fn wide() -> bool {
    #[cfg(test)]
    if AVX2_ONLY.with(|c| c.get()) {
        return false;
    }
    crate::activation::avx512()
}

#[cfg(all(test, target_arch = "x86_64"))]
thread_local! {
    static AVX2_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the AVX2 variants of the fused kernels on this thread (for tests that
/// compare them with the AVX-512 ones).
#[cfg(all(test, target_arch = "x86_64"))]
pub(crate) fn tests_run_avx2<R>(f: impl FnOnce() -> R) -> R {
    AVX2_ONLY.with(|c| c.set(true));
    let r = f();
    AVX2_ONLY.with(|c| c.set(false));
    r
}

/// Calls `$f::<W, W/LANES, C, S>(args)` of the widest variant for the runtime width and
/// activation.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch {
    ($width:expr, $act:expr, $f:ident($($arg:expr),*)) => {{
        macro_rules! with_sigma {
            ($m:ident, $lanes:literal, $w:literal, $c:literal) => {
                // SAFETY: `supported` checked that the CPU has AVX2 and FMA, and `wide` that
                // it has AVX-512 F where the avx512 variant runs.
                unsafe {
                    match $act {
                        Activation::Tanh => $m::$f::<$w, { $w / $lanes }, $c, Tanh>($($arg),*),
                        Activation::Relu => $m::$f::<$w, { $w / $lanes }, $c, Relu>($($arg),*),
                        Activation::SmoothRelu => {
                            $m::$f::<$w, { $w / $lanes }, $c, SmoothRelu>($($arg),*)
                        }
                    }
                }
            };
        }
        // The column group C per width: enough independent FMA chains (C W/LANES vectors)
        // to cover the FMA latency, few enough to keep them in the vector registers (16 with
        // AVX2, 32 with AVX-512). At w = 4 a column's loop is short enough that out-of-order
        // execution overlaps columns by itself, and four columns of tanh spill registers:
        // C = 1 (step bench, kept derivatives with tanh: 0.029 ms at C = 1, 0.034 at C = 4).
        // w = 4 has no AVX-512 variant (a column is half a vector). With AVX-512 a w = 8
        // column is one vector and K takes 8 of the 32 registers: C = 8 (w = 8) and C = 4
        // (w = 16) recompute a tanh step in 0.017 and 0.045 ms against 0.020 and 0.050 at
        // C = 4 and 2 (step bench on Zen 5; the kept-derivative step is the same at both).
        match $width {
            4 => with_sigma!(avx2, 4, 4, 1),
            8 if wide() => with_sigma!(avx512, 8, 8, 8),
            8 => with_sigma!(avx2, 4, 8, 4),
            16 if wide() => with_sigma!(avx512, 8, 16, 4),
            16 => with_sigma!(avx2, 4, 16, 2),
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
