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
use crate::linalg::{add_row_sums, gemm, gemm_onto, Onto};
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
        let (w, batch) = (self.width, u.len() / self.width);
        gemm_onto(
            w,
            w,
            batch,
            self.k,
            false,
            u,
            false,
            Onto::Columns(self.b),
            z,
        );
    }

    /// S = σ'(Z) ⊙ (h Λ⁺) into `s`, from Z in `z`.
    fn sensitivity(&self, z: &[f64], lam_next: &[f64], s: &mut [f64]) {
        activation::sensitivity(self.act, self.h, z, lam_next, s);
    }

    /// With S in `s`: the gradient when asked, then Λ += Kᵀ S in `lam` (in place), or
    /// Λ = Λ⁺ + Kᵀ S with Λ⁺ = `lam_next` (out of place, the same bits).
    fn adjoint_tail(
        &self,
        u: &[f64],
        s: &[f64],
        lam_next: Option<&[f64]>,
        lam: &mut [f64],
        grad: Option<&mut [f64]>,
    ) {
        if let Some(g) = grad {
            self.add_gradient(u, s, g);
        }
        let (w, batch) = (self.width, u.len() / self.width);
        match lam_next {
            Some(next) => gemm_onto(w, w, batch, self.k, true, s, false, Onto::Matrix(next), lam),
            None => gemm(w, w, batch, 1.0, self.k, true, s, false, 1.0, lam),
        }
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
        self.adjoint_tail(u, s, None, lam, grad);
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
        let (z, s) = scratch.parts(u.len());
        self.pre_activation(u, z);
        self.sensitivity(z, lam_next, s);
        self.adjoint_tail(u, s, Some(lam_next), lam_out, grad);
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
        activation::sensitivity_from_derivative(self.h, d, lam_next.unwrap_or(lam), s);
        self.adjoint_tail(u, s, lam_next, lam, grad);
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
mod tests;
