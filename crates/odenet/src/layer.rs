//! One hidden layer as a time step of the ODE u' = σ(K(t)u + b(t)), and its adjoint.
//!
//! These kernels are the hot loop of training: they take preallocated buffers and never
//! allocate. They are what an MGRIT application calls for a fine or a coarse step (with the
//! coarse step size).

use crate::linalg::{add_row_sums, broadcast_columns, gemm};
use crate::Activation;

/// Forward Euler step U⁺ = U + h·σ(K U + b 1ᵀ).
///
/// `k` is w × w, `b` has length w, `u`, `z` and `u_next` are w × B. `z` is scratch and holds
/// the pre-activation K U + b 1ᵀ on return.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn step_forward(
    act: Activation,
    h: f64,
    width: usize,
    k: &[f64],
    b: &[f64],
    u: &[f64],
    z: &mut [f64],
    u_next: &mut [f64],
) {
    let batch = u.len() / width;
    broadcast_columns(b, z);
    gemm(width, width, batch, 1.0, k, false, u, false, 1.0, z);
    for ((un, &ui), &zi) in u_next.iter_mut().zip(u).zip(z.iter()) {
        *un = ui + h * act.value(zi);
    }
}

/// In-place forward Euler step U ← U + h·σ(K U + b 1ᵀ); `z` is scratch (w × B).
#[inline]
pub fn step_forward_in_place(
    act: Activation,
    h: f64,
    width: usize,
    k: &[f64],
    b: &[f64],
    u: &mut [f64],
    z: &mut [f64],
) {
    let batch = u.len() / width;
    broadcast_columns(b, z);
    gemm(width, width, batch, 1.0, k, false, u, false, 1.0, z);
    for (ui, &zi) in u.iter_mut().zip(z.iter()) {
        *ui += h * act.value(zi);
    }
}

/// Adjoint of one forward Euler step, linearized at the state U it started from.
///
/// With Z = K U + b 1ᵀ and S = σ'(Z) ⊙ (h Λ⁺):
///   Λ = Λ⁺ + Kᵀ S,   ∂J/∂K += S Uᵀ,   ∂J/∂b += S 1.
///
/// `lam` holds Λ⁺ on entry and Λ on return. `z` and `s` are w × B scratch. Gradients are
/// accumulated into `gk` (w × w) and `gb` (w) when given.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn step_adjoint(
    act: Activation,
    h: f64,
    width: usize,
    k: &[f64],
    b: &[f64],
    u: &[f64],
    lam: &mut [f64],
    z: &mut [f64],
    s: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let batch = u.len() / width;
    broadcast_columns(b, z);
    gemm(width, width, batch, 1.0, k, false, u, false, 1.0, z);
    for ((si, &zi), &li) in s.iter_mut().zip(z.iter()).zip(lam.iter()) {
        *si = act.derivative(zi) * h * li;
    }
    if let Some((gk, gb)) = grad {
        // ∂J/∂K += S Uᵀ  (w × B times B × w)
        gemm(width, batch, width, 1.0, s, false, u, true, 1.0, gk);
        add_row_sums(width, s, gb);
    }
    // Λ += Kᵀ S
    gemm(width, width, batch, 1.0, k, true, s, false, 1.0, lam);
}

/// Floating-point operations of one dense forward step plus its adjoint with gradients,
/// counting the four w × w × B GEMMs (2 flops per multiply-add): 8 w² B.
pub fn step_flops(width: usize, batch: usize) -> f64 {
    8.0 * (width * width * batch) as f64
}
