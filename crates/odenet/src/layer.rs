//! One hidden layer as a time step of the ODE u' = σ(K(t)u + b(t)), and its adjoint.
//!
//! These kernels are the hot loop of training: they take preallocated buffers and never
//! allocate. They are what an MGRIT application calls for a fine or a coarse step (with the
//! coarse step size).
//!
//! Narrow layers (w ≤ [`FUSED_MAX_WIDTH`]) use fused column kernels: one pass over the batch
//! computes z = K u_j + b, the activation and the update for each column u_j, with z on the
//! stack, so no w × B temporary is written. (A general GEMM would pack the w × B operand on
//! every call, which costs more than the arithmetic when w is small.) Wider layers use GEMMs.

use crate::linalg::{add_row_sums, broadcast_columns, gemm};
use crate::Activation;

/// Widths up to this can use the fused column kernels.
pub const FUSED_MAX_WIDTH: usize = 32;

/// σ and σ' as types, so each fused kernel is compiled for one activation (no branch on
/// the activation inside the loops).
trait Sigma {
    fn value(x: f64) -> f64;
    fn derivative(x: f64) -> f64;
}

struct TanhS;
struct ReluS;
struct SmoothReluS;

impl Sigma for TanhS {
    #[inline(always)]
    fn value(x: f64) -> f64 {
        Activation::Tanh.value(x)
    }
    #[inline(always)]
    fn derivative(x: f64) -> f64 {
        Activation::Tanh.derivative(x)
    }
}

impl Sigma for ReluS {
    #[inline(always)]
    fn value(x: f64) -> f64 {
        Activation::Relu.value(x)
    }
    #[inline(always)]
    fn derivative(x: f64) -> f64 {
        Activation::Relu.derivative(x)
    }
}

impl Sigma for SmoothReluS {
    #[inline(always)]
    fn value(x: f64) -> f64 {
        Activation::SmoothRelu.value(x)
    }
    #[inline(always)]
    fn derivative(x: f64) -> f64 {
        Activation::SmoothRelu.derivative(x)
    }
}

/// z = K u + b for one column of width W, K column-major (an array of W columns).
#[inline(always)]
fn pre<const W: usize>(k: &[[f64; W]], b: &[f64; W], u: &[f64; W]) -> [f64; W] {
    let mut z = *b;
    for (kcol, &x) in k.iter().zip(u) {
        for i in 0..W {
            z[i] += kcol[i] * x;
        }
    }
    z
}

fn forward_fused<const W: usize, S: Sigma>(h: f64, k: &[f64], b: &[f64], u: &[f64], out: &mut [f64]) {
    let k = k.as_chunks::<W>().0;
    let b: &[f64; W] = b.try_into().expect("bias of width W");
    for (ucol, ocol) in u.as_chunks::<W>().0.iter().zip(out.as_chunks_mut::<W>().0) {
        let z = pre(k, b, ucol);
        for i in 0..W {
            ocol[i] = ucol[i] + h * S::value(z[i]);
        }
    }
}

fn forward_fused_in_place<const W: usize, S: Sigma>(h: f64, k: &[f64], b: &[f64], u: &mut [f64]) {
    let k = k.as_chunks::<W>().0;
    let b: &[f64; W] = b.try_into().expect("bias of width W");
    for ucol in u.as_chunks_mut::<W>().0 {
        let z = pre(k, b, ucol);
        for i in 0..W {
            ucol[i] += h * S::value(z[i]);
        }
    }
}

/// λ for [`adjoint_fused`]: updated in place, or only read.
enum Lam<'a> {
    Update(&'a mut [f64]),
    Read(&'a [f64]),
}

/// S = σ'(K u + b) ⊙ (h λ⁺) per column; then optionally ∂J/∂K += S uᵀ, ∂J/∂b += S, and (for
/// `Lam::Update`) λ ← λ⁺ + Kᵀ S.
fn adjoint_fused<const W: usize, S: Sigma>(
    h: f64,
    k: &[f64],
    b: &[f64],
    u: &[f64],
    mut lam: Lam,
    grad: Option<(&mut [f64], &mut [f64])>,
) {
    let kc = k.as_chunks::<W>().0;
    let b: &[f64; W] = b.try_into().expect("bias of width W");
    let ucols = u.as_chunks::<W>().0;
    let mut gacc = [[0.0; W]; W];
    let mut gbacc = [0.0; W];
    let want_grad = grad.is_some();
    let ncols = ucols.len();
    for j in 0..ncols {
        let ucol = &ucols[j];
        let lcol: [f64; W] = match &lam {
            Lam::Update(l) => l.as_chunks::<W>().0[j],
            Lam::Read(l) => l.as_chunks::<W>().0[j],
        };
        let lcol = &lcol;
        let z = pre(kc, b, ucol);
        let mut sc = [0.0; W];
        for i in 0..W {
            sc[i] = S::derivative(z[i]) * h * lcol[i];
        }
        if want_grad {
            for (gcol, &x) in gacc.iter_mut().zip(ucol) {
                for i in 0..W {
                    gcol[i] += sc[i] * x;
                }
            }
            for i in 0..W {
                gbacc[i] += sc[i];
            }
        }
        if let Lam::Update(out) = &mut lam {
            let out = &mut out.as_chunks_mut::<W>().0[j];
            for (l, kcol) in out.iter_mut().zip(kc) {
                let mut d = 0.0;
                for i in 0..W {
                    d += kcol[i] * sc[i];
                }
                *l += d;
            }
        }
    }
    if let Some((gk, gb)) = grad {
        for (g, a) in gk.iter_mut().zip(gacc.iter().flatten()) {
            *g += a;
        }
        for (g, a) in gb.iter_mut().zip(&gbacc) {
            *g += a;
        }
    }
}

/// Runs `$f::<W, Sigma>` for the widths with a fused kernel; evaluates to false otherwise.
macro_rules! fused {
    ($act:expr, $width:expr, $f:ident ( $($arg:expr),* )) => {{
        macro_rules! by_act {
            ($w:literal) => {
                match $act {
                    Activation::Tanh => $f::<$w, TanhS>($($arg),*),
                    Activation::Relu => $f::<$w, ReluS>($($arg),*),
                    Activation::SmoothRelu => $f::<$w, SmoothReluS>($($arg),*),
                }
            };
        }
        match $width {
            1 => { by_act!(1); true }
            2 => { by_act!(2); true }
            3 => { by_act!(3); true }
            4 => { by_act!(4); true }
            6 => { by_act!(6); true }
            8 => { by_act!(8); true }
            12 => { by_act!(12); true }
            16 => { by_act!(16); true }
            24 => { by_act!(24); true }
            32 => { by_act!(32); true }
            _ => false,
        }
    }};
}

/// Forward Euler step U⁺ = U + h·σ(K U + b 1ᵀ).
///
/// `k` is w × w, `b` has length w, `u`, `z` and `u_next` are w × B. `z` is scratch (used by
/// the GEMM path for wide layers).
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
    if fused!(act, width, forward_fused(h, k, b, u, u_next)) {
        return;
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
    if fused!(act, width, forward_fused_in_place(h, k, b, &mut *u)) {
        return;
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
    if width <= FUSED_MAX_WIDTH && matches!(width, 1 | 2 | 3 | 4 | 6 | 8 | 12 | 16 | 24 | 32) {
        let mut grad = grad;
        let g = grad.as_mut().map(|(a, b)| (&mut **a, &mut **b));
        fused!(act, width, adjoint_fused(h, k, b, u, Lam::Update(&mut *lam), g));
        return;
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
    if fused!(act, width, adjoint_fused(h, k, b, u, Lam::Read(lam_next), Some((&mut *gk, &mut *gb)))) {
        return;
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
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
            })
            .collect()
    }

    /// The fused kernels and the GEMM path compute the same step (to round-off).
    #[test]
    fn fused_kernels_match_the_gemm_formulas() {
        for width in [1, 3, 5, 8, 16, 17, 32] {
            let batch = 5;
            let (k, b, u, lam0) = (data(width * width, 1), data(width, 2), data(width * batch, 3), data(width * batch, 4));
            let h = 0.3;
            for act in Activation::ALL {
                // Reference by GEMMs.
                let mut z = vec![0.0; width * batch];
                broadcast_columns(&b, &mut z);
                gemm(width, width, batch, 1.0, &k, false, &u, false, 1.0, &mut z);
                let next_ref: Vec<f64> = u.iter().zip(&z).map(|(x, zi)| x + h * act.value(*zi)).collect();
                let s_ref: Vec<f64> = z.iter().zip(&lam0).map(|(zi, l)| act.derivative(*zi) * h * l).collect();
                let mut lam_ref = lam0.clone();
                gemm(width, width, batch, 1.0, &k, true, &s_ref, false, 1.0, &mut lam_ref);
                let mut gk_ref = vec![0.0; width * width];
                gemm(width, batch, width, 1.0, &s_ref, false, &u, true, 1.0, &mut gk_ref);
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
                step_adjoint(act, h, width, &k, &b, &u, &mut lam, &mut scratch, &mut s, Some((&mut gk, &mut gb)));
                let (mut gk2, mut gb2) = (vec![0.0; width * width], vec![0.0; width]);
                step_gradient(act, h, width, &k, &b, &u, &lam0, &mut scratch, &mut s, &mut gk2, &mut gb2);
                let close = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-13 * (1.0 + y.abs()));
                assert!(close(&next, &next_ref) && close(&inplace, &next_ref), "forward w={width} {act}");
                assert!(close(&lam, &lam_ref), "adjoint w={width} {act}");
                assert!(close(&gk, &gk_ref) && close(&gb, &gb_ref), "gradient w={width} {act}");
                assert_eq!(gk, gk2);
                assert_eq!(gb, gb2);
            }
        }
    }
}
