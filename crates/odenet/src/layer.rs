//! One hidden layer as a time step of the ODE u' = σ(K(t)u + b(t)), and its adjoint.
//!
//! A kind of layer is a [`Layer`]: it says how long one example's state and one layer's
//! control θ_n are, and turns a control, with the activation σ and the step size h, into the
//! step's linearization point, a [`Step`]. A step offers the five kernels an MGRIT application
//! and the serial objective call (forward in and out of place, adjoint in and out of place,
//! parameter gradient). Dense layers ([`Dense`], [`DenseStep`]) are the one kind today; a
//! convolution implements the same two traits.
//!
//! The kernels are the hot loop of training: they write into preallocated buffers (the state
//! arrays and a [`Scratch`]) and never allocate. Narrow dense layers (w = 4, 8, 16 on CPUs with
//! AVX2 and FMA) run the one-pass kernels of [`crate::fused`]; other widths run GEMMs
//! (`matrixmultiply`) plus one elementwise pass. The choice depends only on the width and the
//! machine, so every rank makes the same one.

use crate::activation;
use crate::fused;
use crate::linalg::{add_row_sums, broadcast_columns, gemm};
use crate::Activation;

/// A kind of hidden layer: the shapes of its state and control, and its steps.
///
/// A batch of B examples is a state array of `state_len() · B` values, one example after
/// another; one layer's control θ_n is `param_len()` values.
pub trait Layer {
    /// The linearization point of one step of this kind (it borrows the control, not the
    /// layer, whose sizes it copies).
    type Step<'a>: Step;

    /// Values of one example's state.
    fn state_len(&self) -> usize;

    /// Values of one layer's control θ_n.
    fn param_len(&self) -> usize;

    /// The step U ↦ U + h σ(F(θ_n) U), linearized at the control `theta` (`param_len()` values).
    fn linearize<'a>(&self, act: Activation, h: f64, theta: &'a [f64]) -> Self::Step<'a>;

    /// Floating-point operations of one forward step plus its adjoint with gradients on a
    /// batch of `batch` examples.
    fn step_flops(&self, batch: usize) -> f64;
}

/// The kernels of one step Φ(U) = U + h σ(Z(U)), with Z affine in U, at a fixed control.
///
/// In the adjoint, with S = σ'(Z(U)) ⊙ (h Λ⁺): Λ = Λ⁺ + (∂Z/∂U)ᵀ S, and the parameter
/// gradient is (∂Z/∂θ)ᵀ S. States and adjoints are whole batches; `scratch` must hold at least
/// one batch's state ([`Scratch::ensure`]). Gradients are *added* into `grad`, the layer's
/// block of `param_len()` values.
pub trait Step {
    /// U⁺ = Φ(U) from `u` into `u_next`.
    fn forward(&self, u: &[f64], u_next: &mut [f64], scratch: &mut Scratch);

    /// U ← Φ(U).
    fn forward_in_place(&self, u: &mut [f64], scratch: &mut Scratch);

    /// Λ⁺ ↦ Λ in place in `lam` (Λ⁺ on entry), linearized at the state `u` the step started
    /// from; adds the parameter gradient into `grad` when given.
    fn adjoint(&self, u: &[f64], lam: &mut [f64], scratch: &mut Scratch, grad: Option<&mut [f64]>);

    /// The same adjoint step out of place: Λ⁺ read from `lam_next`, Λ written to `lam_out`;
    /// the same bits as [`Step::adjoint`].
    fn adjoint_from(
        &self,
        u: &[f64],
        lam_next: &[f64],
        lam_out: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    );

    /// The parameter gradient alone (Λ is not updated): adds (∂Z/∂θ)ᵀ S into `grad`; the same
    /// bits as the gradient of [`Step::adjoint`].
    fn gradient(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch, grad: &mut [f64]);

    /// ⟨Λ⁺, σ(Z(U))⟩ = ∂⟨Λ⁺, Φ(U)⟩/∂h, the step's part of the derivative of J in its step
    /// size (summed over the batch in storage order). With a time scale s, h = s·h₀ and
    /// ∂J/∂s = Σ_n h₀ ⟨Λ_{n+1}, σ(Z_n(U_n))⟩.
    fn increment_dot(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch) -> f64;

    /// U⁺ = Φ(U) from `u` into `u_next`, the bits of [`Step::forward`], and D = σ'(Z(U)) into
    /// `d` (one value per state value): the derivative every adjoint evaluation of this step
    /// at U needs, kept so that [`Step::adjoint_given`] and [`Step::gradient_given`] need not
    /// form Z again.
    fn forward_keeping(&self, u: &[f64], u_next: &mut [f64], d: &mut [f64], scratch: &mut Scratch);

    /// U ← Φ(U) and D = σ'(Z(U)) into `d` (as [`Step::forward_keeping`], in place).
    fn forward_in_place_keeping(&self, u: &mut [f64], d: &mut [f64], scratch: &mut Scratch);

    /// D = σ'(Z(U)) into `d`: the bits [`Step::forward_keeping`] writes.
    fn derivative(&self, u: &[f64], d: &mut [f64], scratch: &mut Scratch);

    /// The adjoint step with D = σ'(Z(U)) given ([`Step::derivative`]): in place in `lam` as
    /// [`Step::adjoint`] when `lam_next` is None, else from `lam_next` into `lam` as
    /// [`Step::adjoint_from`]; the same bits, one matrix product (or convolution) fewer.
    fn adjoint_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: Option<&[f64]>,
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    );

    /// [`Step::gradient`] with D = σ'(Z(U)) given: the same bits.
    fn gradient_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: &[f64],
        scratch: &mut Scratch,
        grad: &mut [f64],
    );
}

/// Work arrays of a step for one batch: Z (pre-activation) and S (sensitivity). Reused across
/// steps and solves; grown only when a larger batch arrives. Convolutions ([`crate::conv`])
/// also keep their padded images, rearranged kernels and tap offsets here, grown on first use.
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    z: Vec<f64>,
    s: Vec<f64>,
    /// A convolution's padded images of one example.
    work: Vec<f64>,
    /// A convolution's kernel rearranged for its loops (and flipped for the transposed one).
    kernel: Vec<f64>,
    /// A convolution's offsets of its taps in a padded image.
    offsets: Vec<usize>,
}

impl Scratch {
    /// Scratch for states of `len` values (a layer's `state_len() · B`).
    pub fn new(len: usize) -> Self {
        let mut s = Scratch::default();
        s.ensure(len);
        s
    }

    /// Grows the arrays to at least `len` values.
    pub fn ensure(&mut self, len: usize) {
        if self.z.len() < len {
            self.z.resize(len, 0.0);
            self.s.resize(len, 0.0);
        }
    }

    /// Z and S for a state of `len` values.
    fn parts(&mut self, len: usize) -> (&mut [f64], &mut [f64]) {
        self.ensure(len);
        (&mut self.z[..len], &mut self.s[..len])
    }

    /// Z alone, for a state of `len` values (the opening layer's pre-activation).
    pub fn z(&mut self, len: usize) -> &mut [f64] {
        self.parts(len).0
    }

    /// The arrays of a convolution step: Z and S of `len` values, a work array of `work`
    /// values, a kernel array of `kernel` values and `offsets` offsets (the latter three
    /// grown on demand).
    pub(crate) fn conv_parts(
        &mut self,
        len: usize,
        work: usize,
        kernel: usize,
        offsets: usize,
    ) -> ConvParts<'_> {
        self.ensure(len);
        if self.work.len() < work {
            self.work.resize(work, 0.0);
        }
        if self.kernel.len() < kernel {
            self.kernel.resize(kernel, 0.0);
        }
        if self.offsets.len() < offsets {
            self.offsets.resize(offsets, 0);
        }
        ConvParts {
            z: &mut self.z[..len],
            s: &mut self.s[..len],
            work: &mut self.work[..work],
            kernel: &mut self.kernel[..kernel],
            offsets: &mut self.offsets[..offsets],
        }
    }
}

/// The arrays of a convolution step in a [`Scratch`] ([`Scratch::conv_parts`]).
pub(crate) struct ConvParts<'a> {
    pub z: &'a mut [f64],
    pub s: &'a mut [f64],
    pub work: &'a mut [f64],
    pub kernel: &'a mut [f64],
    pub offsets: &'a mut [usize],
}

/// A dense layer of width w: the state of an example is u ∈ ℝ^w and the control is
/// θ_n = (K_n, b_n), K_n a column-major w × w matrix followed by b_n ∈ ℝ^w.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dense {
    pub width: usize,
}

/// A dense step's linearization point: Φ(U) = U + h σ(K U + b 1ᵀ).
#[derive(Clone, Copy, Debug)]
pub struct DenseStep<'a> {
    pub act: Activation,
    /// Step size h.
    pub h: f64,
    pub width: usize,
    /// K, w × w column-major.
    pub k: &'a [f64],
    /// b, length w.
    pub b: &'a [f64],
}

impl Layer for Dense {
    type Step<'a> = DenseStep<'a>;

    fn state_len(&self) -> usize {
        self.width
    }

    fn param_len(&self) -> usize {
        self.width * self.width + self.width
    }

    fn linearize<'a>(&self, act: Activation, h: f64, theta: &'a [f64]) -> DenseStep<'a> {
        let (k, b) = theta.split_at(self.width * self.width);
        DenseStep {
            act,
            h,
            width: self.width,
            k,
            b: &b[..self.width],
        }
    }

    /// The four w × w × B matrix products (2 flops per multiply-add): 8 w² B.
    fn step_flops(&self, batch: usize) -> f64 {
        8.0 * (self.width * self.width * batch) as f64
    }
}

impl DenseStep<'_> {
    /// Z = K U + b 1ᵀ into `z`.
    fn pre_activation(&self, u: &[f64], z: &mut [f64]) {
        let batch = u.len() / self.width;
        broadcast_columns(self.b, z);
        gemm(
            self.width, self.width, batch, 1.0, self.k, false, u, false, 1.0, z,
        );
    }

    /// S = σ'(Z) ⊙ (h Λ⁺) into `s`, from Z in `z`.
    fn sensitivity(&self, z: &[f64], lam_next: &[f64], s: &mut [f64]) {
        activation::sensitivity(self.act, self.h, z, lam_next, s);
    }

    /// With S in `s`: the gradient when asked, then Λ += Kᵀ S in `lam`.
    fn adjoint_tail(&self, u: &[f64], s: &[f64], lam: &mut [f64], grad: Option<&mut [f64]>) {
        if let Some(g) = grad {
            self.add_gradient(u, s, g);
        }
        let (w, batch) = (self.width, u.len() / self.width);
        gemm(w, w, batch, 1.0, self.k, true, s, false, 1.0, lam);
    }

    /// ∂J/∂K += S Uᵀ, ∂J/∂b += S 1.
    fn add_gradient(&self, u: &[f64], s: &[f64], grad: &mut [f64]) {
        let w = self.width;
        let batch = u.len() / w;
        let (gk, gb) = grad.split_at_mut(w * w);
        gemm(w, batch, w, 1.0, s, false, u, true, 1.0, gk);
        add_row_sums(w, s, gb);
    }
}

/// The gradient block split into (∂J/∂K, ∂J/∂b).
fn split_grad(width: usize, grad: Option<&mut [f64]>) -> Option<(&mut [f64], &mut [f64])> {
    grad.map(|g| {
        let (gk, gb) = g.split_at_mut(width * width);
        (gk, &mut gb[..width])
    })
}

impl Step for DenseStep<'_> {
    #[inline]
    fn forward(&self, u: &[f64], u_next: &mut [f64], scratch: &mut Scratch) {
        if fused::supported(self.width) {
            return fused::forward(self, u, u_next);
        }
        let z = scratch.z(u.len());
        self.pre_activation(u, z);
        activation::forward(self.act, self.h, z, u, u_next);
    }

    #[inline]
    fn forward_in_place(&self, u: &mut [f64], scratch: &mut Scratch) {
        if fused::supported(self.width) {
            return fused::forward_in_place(self, u);
        }
        let z = scratch.z(u.len());
        self.pre_activation(u, z);
        activation::forward_in_place(self.act, self.h, z, u);
    }

    /// Λ = Λ⁺ + Kᵀ S with S = σ'(K U + b 1ᵀ) ⊙ (h Λ⁺); ∂J/∂K += S Uᵀ, ∂J/∂b += S 1.
    #[inline]
    fn adjoint(&self, u: &[f64], lam: &mut [f64], scratch: &mut Scratch, grad: Option<&mut [f64]>) {
        if fused::supported(self.width) {
            return fused::adjoint(self, u, None, lam, split_grad(self.width, grad));
        }
        let (z, s) = scratch.parts(u.len());
        self.pre_activation(u, z);
        self.sensitivity(z, lam, s);
        self.adjoint_tail(u, s, lam, grad);
    }

    #[inline]
    fn adjoint_from(
        &self,
        u: &[f64],
        lam_next: &[f64],
        lam_out: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        if fused::supported(self.width) {
            return fused::adjoint_from(
                self,
                u,
                None,
                lam_next,
                lam_out,
                split_grad(self.width, grad),
            );
        }
        lam_out.copy_from_slice(lam_next);
        self.adjoint(u, lam_out, scratch, grad);
    }

    #[inline]
    fn gradient(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch, grad: &mut [f64]) {
        if fused::supported(self.width) {
            let (gk, gb) = split_grad(self.width, Some(grad)).expect("given");
            return fused::gradient(self, u, None, lam_next, gk, gb);
        }
        let (z, s) = scratch.parts(u.len());
        self.pre_activation(u, z);
        self.sensitivity(z, lam_next, s);
        self.add_gradient(u, s, grad);
    }

    fn increment_dot(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch) -> f64 {
        let (z, s) = scratch.parts(u.len());
        self.pre_activation(u, z);
        // σ(Z) in one vectorized pass, then the sum in storage order.
        activation::apply(self.act, z, s);
        let mut sum = 0.0;
        for (&si, &li) in s.iter().zip(lam_next) {
            sum += li * si;
        }
        sum
    }

    fn forward_keeping(&self, u: &[f64], u_next: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        if fused::supported(self.width) {
            return fused::forward_keeping(self, u, u_next, d);
        }
        let z = scratch.z(u.len());
        self.pre_activation(u, z);
        activation::forward_keeping_derivative(self.act, self.h, z, u, u_next, d);
    }

    fn forward_in_place_keeping(&self, u: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        if fused::supported(self.width) {
            return fused::forward_in_place_keeping(self, u, d);
        }
        let z = scratch.z(u.len());
        self.pre_activation(u, z);
        activation::forward_in_place_keeping_derivative(self.act, self.h, z, u, d);
    }

    fn derivative(&self, u: &[f64], d: &mut [f64], scratch: &mut Scratch) {
        if fused::supported(self.width) {
            return fused::derivative(self, u, d);
        }
        let z = scratch.z(u.len());
        self.pre_activation(u, z);
        activation::apply_derivative(self.act, z, d);
    }

    fn adjoint_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: Option<&[f64]>,
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        if fused::supported(self.width) {
            let g = split_grad(self.width, grad);
            return match lam_next {
                None => fused::adjoint(self, u, Some(d), lam, g),
                Some(next) => fused::adjoint_from(self, u, Some(d), next, lam, g),
            };
        }
        let (_, s) = scratch.parts(u.len());
        match lam_next {
            Some(next) => activation::sensitivity_from_derivative_copying(self.h, d, next, s, lam),
            None => activation::sensitivity_from_derivative(self.h, d, lam, s),
        }
        self.adjoint_tail(u, s, lam, grad);
    }

    fn gradient_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: &[f64],
        scratch: &mut Scratch,
        grad: &mut [f64],
    ) {
        if fused::supported(self.width) {
            let (gk, gb) = split_grad(self.width, Some(grad)).expect("given");
            return fused::gradient(self, u, Some(d), lam_next, gk, gb);
        }
        let (_, s) = scratch.parts(u.len());
        activation::sensitivity_from_derivative(self.h, d, lam_next, s);
        self.add_gradient(u, s, grad);
    }
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

                let dense = Dense { width };
                let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
                let step = dense.linearize(act, h, &theta);
                let mut scratch = Scratch::new(width * batch);
                let mut next = vec![0.0; width * batch];
                step.forward(&u, &mut next, &mut scratch);
                let mut inplace = u.clone();
                step.forward_in_place(&mut inplace, &mut scratch);
                let mut lam = lam0.clone();
                let mut g = vec![0.0; dense.param_len()];
                step.adjoint(&u, &mut lam, &mut scratch, Some(&mut g));
                let (gk, gb) = (g[..width * width].to_vec(), g[width * width..].to_vec());
                let mut g2 = vec![0.0; dense.param_len()];
                step.gradient(&u, &lam0, &mut scratch, &mut g2);
                let (gk2, gb2) = (g2[..width * width].to_vec(), g2[width * width..].to_vec());
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
                let mut g3 = vec![0.0; dense.param_len()];
                step.adjoint_from(&u, &lam0, &mut lam3, &mut scratch, Some(&mut g3));
                let (gk3, gb3) = (g3[..width * width].to_vec(), g3[width * width..].to_vec());
                assert_eq!(lam3, lam, "out-of-place adjoint w={width} {act}");
                assert_eq!((gk3, gb3), (gk, gb));
                // The kernels that keep or take D = σ'(Z) give the bits of those that do not.
                let mut d = vec![0.0; width * batch];
                let mut next_k = vec![0.0; width * batch];
                step.forward_keeping(&u, &mut next_k, &mut d, &mut scratch);
                assert_eq!(next_k, next, "forward_keeping w={width} {act}");
                let mut d2 = vec![0.0; width * batch];
                step.derivative(&u, &mut d2, &mut scratch);
                assert_eq!(d2, d, "derivative w={width} {act}");
                let (mut inplace_k, mut d3) = (u.clone(), vec![0.0; width * batch]);
                step.forward_in_place_keeping(&mut inplace_k, &mut d3, &mut scratch);
                assert_eq!(
                    (inplace_k, d3),
                    (inplace.clone(), d.clone()),
                    "in place w={width} {act}"
                );
                let mut lam4 = lam0.clone();
                let mut g4 = vec![0.0; dense.param_len()];
                step.adjoint_given(&u, &d, None, &mut lam4, &mut scratch, Some(&mut g4));
                assert_eq!(lam4, lam, "adjoint_given w={width} {act}");
                assert_eq!(g4, g, "adjoint_given gradient w={width} {act}");
                let mut lam5 = vec![0.0; width * batch];
                let mut g5 = vec![0.0; dense.param_len()];
                step.adjoint_given(&u, &d, Some(&lam0), &mut lam5, &mut scratch, Some(&mut g5));
                assert_eq!(
                    (lam5, g5),
                    (lam.clone(), g.clone()),
                    "adjoint_given out of place w={width} {act}"
                );
                let mut lam6 = lam0.clone();
                step.adjoint_given(&u, &d, None, &mut lam6, &mut scratch, None);
                assert_eq!(lam6, lam, "adjoint_given without gradient w={width} {act}");
                let mut g6 = vec![0.0; dense.param_len()];
                step.gradient_given(&u, &d, &lam0, &mut scratch, &mut g6);
                assert_eq!(g6, g2, "gradient_given w={width} {act}");
                let dot_ref: f64 = z.iter().zip(&lam0).map(|(zi, l)| l * act.value(*zi)).sum();
                let dot = step.increment_dot(&u, &lam0, &mut scratch);
                assert!(
                    (dot - dot_ref).abs() <= 1e-12 * (1.0 + dot_ref.abs()),
                    "increment_dot w={width} {act}: {dot} vs {dot_ref}"
                );
            }
        }
    }

    /// Every output of the fused kernels of `step` on a batch (forward in and out of place,
    /// with and without D, the derivative, the adjoints in and out of place with their
    /// gradient, from Z and from D, the gradient alone), for comparing variants.
    fn fused_outputs(step: &DenseStep, u: &[f64], lam0: &[f64]) -> Vec<Vec<f64>> {
        let (n, p) = (u.len(), step.width * step.width + step.width);
        let mut scratch = Scratch::new(n);
        let mut next = vec![0.0; n];
        step.forward(u, &mut next, &mut scratch);
        let mut inplace = u.to_vec();
        step.forward_in_place(&mut inplace, &mut scratch);
        let (mut next_k, mut d) = (vec![0.0; n], vec![0.0; n]);
        step.forward_keeping(u, &mut next_k, &mut d, &mut scratch);
        let (mut inplace_k, mut d2) = (u.to_vec(), vec![0.0; n]);
        step.forward_in_place_keeping(&mut inplace_k, &mut d2, &mut scratch);
        let mut d3 = vec![0.0; n];
        step.derivative(u, &mut d3, &mut scratch);
        let (mut lam, mut g) = (lam0.to_vec(), vec![0.0; p]);
        step.adjoint(u, &mut lam, &mut scratch, Some(&mut g));
        let (mut lam2, mut g2) = (vec![0.0; n], vec![0.0; p]);
        step.adjoint_from(u, lam0, &mut lam2, &mut scratch, Some(&mut g2));
        let (mut lam3, mut g3) = (lam0.to_vec(), vec![0.0; p]);
        step.adjoint_given(u, &d, None, &mut lam3, &mut scratch, Some(&mut g3));
        let mut g4 = vec![0.0; p];
        step.gradient(u, lam0, &mut scratch, &mut g4);
        let mut g5 = vec![0.0; p];
        step.gradient_given(u, &d, lam0, &mut scratch, &mut g5);
        vec![
            next, inplace, next_k, d, inplace_k, d2, d3, lam, g, lam2, g2, lam3, g3, g4, g5,
        ]
    }

    /// The AVX-512 fused kernels (w = 8, 16; eight lanes a vector) give the bits of the AVX2
    /// ones (four lanes) for every kernel and activation, on a batch of 37 (column groups
    /// and a remainder).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_avx512_fused_kernels_give_the_avx2_bits() {
        if !crate::activation::avx512() {
            eprintln!("inconclusive: no AVX-512 on this CPU, only the AVX2 kernels run");
            return;
        }
        let bits = |v: &[Vec<f64>]| -> Vec<Vec<u64>> {
            v.iter()
                .map(|x| x.iter().map(|y| y.to_bits()).collect())
                .collect()
        };
        for width in [8, 16] {
            assert!(fused::supported(width));
            let batch = 37;
            let (k, b, u, lam0) = (
                data(width * width, 21),
                data(width, 22),
                data(width * batch, 23)
                    .iter()
                    .map(|x| 3.0 * x)
                    .collect::<Vec<_>>(),
                data(width * batch, 24),
            );
            let dense = Dense { width };
            let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
            for act in Activation::ALL {
                let step = dense.linearize(act, 0.3, &theta);
                let wide = fused_outputs(&step, &u, &lam0);
                let narrow = fused::tests_run_avx2(|| fused_outputs(&step, &u, &lam0));
                for (i, (a, n)) in bits(&wide).iter().zip(&bits(&narrow)).enumerate() {
                    assert_eq!(a, n, "output {i}, w={width} {act}");
                }
                // All-zero outputs would tell no variants apart.
                let nonzero = wide.iter().filter(|o| o.iter().any(|x| *x != 0.0)).count();
                assert_eq!(
                    nonzero,
                    wide.len(),
                    "w={width} {act}: an output is all zero"
                );
            }
        }
    }

    /// The fused kernels step columns in groups; a column's results must not depend on the
    /// group it falls in (the data groups of a run split the batch anywhere). Each column of a
    /// batch of 37 (groups and a remainder) gives the bits it gives when stepped alone, and the
    /// gradient is the in-order sum Σ_j s_j u_jᵀ, one fused multiply-add per term.
    #[test]
    fn fused_columns_give_the_same_bits_wherever_they_sit_in_the_batch() {
        let mut tested = 0;
        for width in [4, 8, 16] {
            if !fused::supported(width) {
                continue;
            }
            let batch = 37;
            let (k, b, u, lam0) = (
                data(width * width, 11),
                data(width, 12),
                data(width * batch, 13),
                data(width * batch, 14),
            );
            let h = 0.3;
            let dense = Dense { width };
            let theta: Vec<f64> = k.iter().chain(&b).copied().collect();
            for act in Activation::ALL {
                let step = dense.linearize(act, h, &theta);
                let mut scratch = Scratch::new(width * batch);
                let (mut next, mut d) = (vec![0.0; width * batch], vec![0.0; width * batch]);
                step.forward_keeping(&u, &mut next, &mut d, &mut scratch);
                let mut lam = lam0.clone();
                let mut g = vec![0.0; dense.param_len()];
                step.adjoint(&u, &mut lam, &mut scratch, Some(&mut g));
                for j in 0..batch {
                    let col = j * width..(j + 1) * width;
                    let mut one = Scratch::new(width);
                    let (mut next_j, mut d_j) = (vec![0.0; width], vec![0.0; width]);
                    step.forward_keeping(&u[col.clone()], &mut next_j, &mut d_j, &mut one);
                    assert_eq!(next_j, next[col.clone()], "forward w={width} {act} j={j}");
                    assert_eq!(d_j, d[col.clone()], "derivative w={width} {act} j={j}");
                    let mut lam_j = lam0[col.clone()].to_vec();
                    step.adjoint(&u[col.clone()], &mut lam_j, &mut one, None);
                    assert_eq!(lam_j, lam[col], "adjoint w={width} {act} j={j}");
                }
                let mut gk_ref = vec![0.0; width * width];
                let mut gb_ref = vec![0.0; width];
                for j in 0..batch {
                    let s: Vec<f64> = (0..width)
                        .map(|r| d[j * width + r] * h * lam0[j * width + r])
                        .collect();
                    for l in 0..width {
                        for r in 0..width {
                            let acc = &mut gk_ref[r + l * width];
                            *acc = s[r].mul_add(u[j * width + l], *acc);
                        }
                    }
                    for (acc, sr) in gb_ref.iter_mut().zip(&s) {
                        *acc += sr;
                    }
                }
                assert_eq!(g[..width * width], gk_ref[..], "∂J/∂K w={width} {act}");
                assert_eq!(g[width * width..], gb_ref[..], "∂J/∂b w={width} {act}");
                tested += 1;
            }
        }
        if tested == 0 {
            eprintln!("inconclusive: no fused kernel on this CPU");
        }
    }
}
