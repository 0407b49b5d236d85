//! The hidden layer of a network, whichever kind it is: a dense layer or a convolution. The
//! objective and the MGRIT applications work with [`Hidden`] and [`HiddenStep`], so they run
//! either kind unchanged; each call dispatches once to the kind's kernels.

use crate::conv::{Conv, ConvStep};
use crate::layer::{Dense, DenseStep, Layer, Scratch, Step};
use crate::Activation;

/// A network's kind of hidden layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hidden {
    /// U_{n+1} = U_n + h σ(K_n U_n + b_n 1ᵀ), K_n a w × w matrix.
    Dense(Dense),
    /// U_{n+1} = U_n + h σ(K_n ∗ U_n + b_n), K_n a c × c × k_h × k_w kernel.
    Conv(Conv),
}

/// One hidden step's linearization point, of either kind.
#[derive(Clone, Copy, Debug)]
pub enum HiddenStep<'a> {
    Dense(DenseStep<'a>),
    Conv(ConvStep<'a>),
}

impl Layer for Hidden {
    type Step<'a> = HiddenStep<'a>;

    fn state_len(&self) -> usize {
        match self {
            Hidden::Dense(l) => l.state_len(),
            Hidden::Conv(l) => l.state_len(),
        }
    }

    fn param_len(&self) -> usize {
        match self {
            Hidden::Dense(l) => l.param_len(),
            Hidden::Conv(l) => l.param_len(),
        }
    }

    fn linearize<'a>(&self, act: Activation, h: f64, theta: &'a [f64]) -> HiddenStep<'a> {
        match self {
            Hidden::Dense(l) => HiddenStep::Dense(l.linearize(act, h, theta)),
            Hidden::Conv(l) => HiddenStep::Conv(l.linearize(act, h, theta)),
        }
    }

    fn step_flops(&self, batch: usize) -> f64 {
        match self {
            Hidden::Dense(l) => l.step_flops(batch),
            Hidden::Conv(l) => l.step_flops(batch),
        }
    }
}

/// Calls `$body` with `$s` bound to the step of whichever kind `$step` is.
macro_rules! dispatch {
    ($step:expr, $s:ident => $body:expr) => {
        match $step {
            HiddenStep::Dense($s) => $body,
            HiddenStep::Conv($s) => $body,
        }
    };
}

impl Step for HiddenStep<'_> {
    #[inline]
    fn forward(&self, u: &[f64], u_next: &mut [f64], scratch: &mut Scratch) {
        dispatch!(self, s => s.forward(u, u_next, scratch))
    }

    #[inline]
    fn forward_in_place(&self, u: &mut [f64], scratch: &mut Scratch) {
        dispatch!(self, s => s.forward_in_place(u, scratch))
    }

    #[inline]
    fn adjoint(&self, u: &[f64], lam: &mut [f64], scratch: &mut Scratch, grad: Option<&mut [f64]>) {
        dispatch!(self, s => s.adjoint(u, lam, scratch, grad))
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
        dispatch!(self, s => s.adjoint_from(u, lam_next, lam_out, scratch, grad))
    }

    #[inline]
    fn gradient(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch, grad: &mut [f64]) {
        dispatch!(self, s => s.gradient(u, lam_next, scratch, grad))
    }

    fn increment_dot(&self, u: &[f64], lam_next: &[f64], scratch: &mut Scratch) -> f64 {
        dispatch!(self, s => s.increment_dot(u, lam_next, scratch))
    }

    #[inline]
    fn forward_keeping(&self, u: &[f64], u_next: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        dispatch!(self, s => s.forward_keeping(u, u_next, d, scratch))
    }

    #[inline]
    fn forward_in_place_keeping(&self, u: &mut [f64], d: &mut [f64], scratch: &mut Scratch) {
        dispatch!(self, s => s.forward_in_place_keeping(u, d, scratch))
    }

    #[inline]
    fn derivative(&self, u: &[f64], d: &mut [f64], scratch: &mut Scratch) {
        dispatch!(self, s => s.derivative(u, d, scratch))
    }

    #[inline]
    fn adjoint_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: Option<&[f64]>,
        lam: &mut [f64],
        scratch: &mut Scratch,
        grad: Option<&mut [f64]>,
    ) {
        dispatch!(self, s => s.adjoint_given(u, d, lam_next, lam, scratch, grad))
    }

    #[inline]
    fn gradient_given(
        &self,
        u: &[f64],
        d: &[f64],
        lam_next: &[f64],
        scratch: &mut Scratch,
        grad: &mut [f64],
    ) {
        dispatch!(self, s => s.gradient_given(u, d, lam_next, scratch, grad))
    }
}
