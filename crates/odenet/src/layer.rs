//! One hidden layer as a time step of the ODE u' = σ(K(t)u + b(t)), and its adjoint.
//!
//! These kernels are the hot loop of training: they take preallocated buffers and never
//! allocate. They are what an MGRIT application calls for a fine or a coarse step (with the
//! coarse step size).
//!
//! Narrow layers (w = 4, 8, 16 on CPUs with AVX2 and FMA) run the one-pass kernels of
//! [`crate::fused`]; other widths run GEMMs (`matrixmultiply`) plus one elementwise pass. The
//! choice depends only on the width and the machine, so every rank makes the same one.

use crate::fused;
use crate::linalg::{add_row_sums, broadcast_columns, gemm};
use crate::Activation;

/// Forward Euler step U⁺ = U + h·σ(K U + b 1ᵀ).
///
/// `k` is w × w, `b` has length w, `u`, `z` and `u_next` are w × B. `z` is scratch.
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
    if fused::supported(width) {
        return fused::forward(act, h, width, k, b, u, u_next);
    }
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
    if fused::supported(width) {
        return fused::forward_in_place(act, h, width, k, b, u);
    }
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
    if fused::supported(width) {
        return fused::adjoint(act, h, width, k, b, u, lam, grad);
    }
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

/// The adjoint step of [`step_adjoint`] out of place: λ = λ⁺ + Kᵀ S with λ⁺ read from
/// `lam_next` and λ written to `lam_out`; the same bits as the in-place step.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn step_adjoint_from(
    act: Activation,
    h: f64,
    width: usize,
    k: &[f64],
    b: &[f64],
    u: &[f64],
    lam_next: &[f64],
    lam_out: &mut [f64],
    z: &mut [f64],
    s: &mut [f64],
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    if fused::supported(width) {
        return fused::adjoint_from(act, h, width, k, b, u, lam_next, lam_out, grad);
    }
    lam_out.copy_from_slice(lam_next);
    step_adjoint(act, h, width, k, b, u, lam_out, z, s, grad);
}

/// The parameter gradient of one step without the adjoint update:
/// S = σ'(K U + b 1ᵀ) ⊙ (h Λ⁺), ∂J/∂K += S Uᵀ, ∂J/∂b += S 1 (`z`, `s` are w × B scratch).
/// Gives the same bits as the gradient part of [`step_adjoint`].
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn step_gradient(
    act: Activation,
    h: f64,
    width: usize,
    k: &[f64],
    b: &[f64],
    u: &[f64],
    lam_next: &[f64],
    z: &mut [f64],
    s: &mut [f64],
    gk: &mut [f64],
    gb: &mut [f64],
) {
    if fused::supported(width) {
        return fused::gradient(act, h, width, k, b, u, lam_next, gk, gb);
    }
    let batch = u.len() / width;
    broadcast_columns(b, z);
    gemm(width, width, batch, 1.0, k, false, u, false, 1.0, z);
    for ((si, &zi), &li) in s.iter_mut().zip(z.iter()).zip(lam_next) {
        *si = act.derivative(zi) * h * li;
    }
    gemm(width, batch, width, 1.0, s, false, u, true, 1.0, gk);
    add_row_sums(width, s, gb);
}

/// Floating-point operations of one dense forward step plus its adjoint with gradients,
/// counting the four w × w × B matrix products (2 flops per multiply-add): 8 w² B.
pub fn step_flops(width: usize, batch: usize) -> f64 {
    8.0 * (width * width * batch) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
            })
            .collect()
    }

    /// The kernels compute the step, its adjoint and its gradient as the formulas say.
    #[test]
    fn kernels_match_the_formulas() {
        for width in [1, 3, 4, 5, 8, 16, 17, 32] {
            let batch = 37;
            let (k, b, u, lam0) = (
                data(width * width, 1),
                data(width, 2),
                data(width * batch, 3),
                data(width * batch, 4),
            );
            let h = 0.3;
            for act in Activation::ALL {
                // Reference by GEMMs.
                let mut z = vec![0.0; width * batch];
                broadcast_columns(&b, &mut z);
                gemm(width, width, batch, 1.0, &k, false, &u, false, 1.0, &mut z);
                let next_ref: Vec<f64> = u
                    .iter()
                    .zip(&z)
                    .map(|(x, zi)| x + h * act.value(*zi))
                    .collect();
                let s_ref: Vec<f64> = z
                    .iter()
                    .zip(&lam0)
                    .map(|(zi, l)| act.derivative(*zi) * h * l)
                    .collect();
                let mut lam_ref = lam0.clone();
                gemm(
                    width,
                    width,
                    batch,
                    1.0,
                    &k,
                    true,
                    &s_ref,
                    false,
                    1.0,
                    &mut lam_ref,
                );
                let mut gk_ref = vec![0.0; width * width];
                gemm(
                    width,
                    batch,
                    width,
                    1.0,
                    &s_ref,
                    false,
                    &u,
                    true,
                    1.0,
                    &mut gk_ref,
                );
                let mut gb_ref = vec![0.0; width];
                add_row_sums(width, &s_ref, &mut gb_ref);

                let mut scratch = vec![0.0; width * batch];
                let mut s = vec![0.0; width * batch];
                let mut next = vec![0.0; width * batch];
                step_forward(act, h, width, &k, &b, &u, &mut scratch, &mut next);
                let mut inplace = u.clone();
                step_forward_in_place(act, h, width, &k, &b, &mut inplace, &mut scratch);
                let mut lam = lam0.clone();
                let (mut gk, mut gb) = (vec![0.0; width * width], vec![0.0; width]);
                step_adjoint(
                    act,
                    h,
                    width,
                    &k,
                    &b,
                    &u,
                    &mut lam,
                    &mut scratch,
                    &mut s,
                    Some((&mut gk, &mut gb)),
                );
                let (mut gk2, mut gb2) = (vec![0.0; width * width], vec![0.0; width]);
                step_gradient(
                    act,
                    h,
                    width,
                    &k,
                    &b,
                    &u,
                    &lam0,
                    &mut scratch,
                    &mut s,
                    &mut gk2,
                    &mut gb2,
                );
                let close = |a: &[f64], b: &[f64]| {
                    a.iter()
                        .zip(b)
                        .all(|(x, y)| (x - y).abs() <= 1e-13 * (1.0 + y.abs()))
                };
                assert!(
                    close(&next, &next_ref) && close(&inplace, &next_ref),
                    "forward w={width} {act}"
                );
                assert!(close(&lam, &lam_ref), "adjoint w={width} {act}");
                assert!(
                    close(&gk, &gk_ref) && close(&gb, &gb_ref),
                    "gradient w={width} {act}"
                );
                assert_eq!(gk, gk2);
                assert_eq!(gb, gb2);
                let mut lam3 = vec![0.0; width * batch];
                let (mut gk3, mut gb3) = (vec![0.0; width * width], vec![0.0; width]);
                step_adjoint_from(
                    act,
                    h,
                    width,
                    &k,
                    &b,
                    &u,
                    &lam0,
                    &mut lam3,
                    &mut scratch,
                    &mut s,
                    Some((&mut gk3, &mut gb3)),
                );
                assert_eq!(lam3, lam, "out-of-place adjoint w={width} {act}");
                assert_eq!((gk3, gb3), (gk, gb));
            }
        }
    }
}
