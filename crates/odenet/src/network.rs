//! The whole ODE-net: opening layer, N forward-Euler hidden steps, classifier, loss and
//! regularization; the objective J(θ) and its exact discrete adjoint gradient.

use crate::conv::{global_average, global_average_adjoint, pool_adjoint, pool_forward, Conv};
use crate::hidden::{Hidden, HiddenStep};
use crate::layer::{Dense, Layer, Scratch, Step};
use crate::layout::{Closing, Layout, Opening, Readout, Shape};
use crate::linalg::{add_row_sums, gemm, gemm_onto, Onto};
use crate::loss::{loss_sum, Loss, Targets};
use crate::Activation;

mod regularization;
pub use regularization::{hidden_groups, HIDDEN_GROUP};

/// Σ of the values in order (the one summation order every rank count uses).
pub fn ordered_sum(values: &[f64]) -> f64 {
    let mut s = 0.0;
    for v in values {
        s += v;
    }
    s
}

/// Weights of the regularization terms of J.
///
/// J = loss + γ_tik/2 (‖W_in, b_in‖² + Σ_n ‖θ_n‖²) + γ_ddt/2 Σ_{n<N−1} ‖(θ_{n+1} − θ_n)/h‖²
///          + γ_class/2 ‖(W_c, b_c)‖²
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Regularization {
    pub tikhonov: f64,
    pub ddt: f64,
    pub classifier: f64,
}

/// An ODE-net with per-layer controls: U_{n+1} = U_n + s·h σ(K_n U_n + b_n 1ᵀ), h = T/N,
/// with the time scale s = 1 or, when learnable, the last entry of θ.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub layout: Layout,
    pub activation: Activation,
    /// Final time T of the ODE; the step is h = T/N.
    pub final_time: f64,
    pub loss: Loss,
    pub regularization: Regularization,
}

/// Value of the objective at θ on one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ObjectiveValue {
    /// J = loss + regularization.
    pub objective: f64,
    /// Mean loss over the batch.
    pub loss: f64,
    /// Correctly classified examples of the batch.
    pub correct: usize,
    /// Examples in the batch.
    pub count: usize,
}

/// Buffers for a batch of size B; reused across calls, resized only when B changes.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    batch: usize,
    /// U_0 … U_N, each w × B (forward states kept for the adjoint).
    pub(crate) states: Vec<Vec<f64>>,
    /// Opening pre-activation A = W_in X + b_in 1ᵀ, w × B.
    pub(crate) open_pre: Vec<f64>,
    pub(crate) scratch: Scratch,
    pub(crate) s: Vec<f64>,
    pub(crate) lam: Vec<f64>,
    pub(crate) logits: Vec<f64>,
    pub(crate) seed: Vec<f64>,
}

impl Workspace {
    pub(crate) fn ensure(&mut self, net: &Network, batch: usize, keep_states: bool) {
        let w = net.layout.shape.width;
        let c = net.layout.shape.classes;
        let nstates = if keep_states {
            net.layout.shape.layers + 1
        } else {
            2
        };
        if self.batch != batch {
            self.states.clear();
            self.batch = batch;
        }
        if self.states.len() < nstates {
            self.states.resize_with(nstates, || vec![0.0; w * batch]);
        }
        for v in [&mut self.open_pre, &mut self.s, &mut self.lam] {
            v.resize(w * batch, 0.0);
        }
        self.scratch.ensure(w * batch);
        self.logits.resize(c * batch, 0.0);
        self.seed.resize(c * batch, 0.0);
    }

    /// Logits of the last forward pass (C × B).
    pub fn logits(&self) -> &[f64] {
        &self.logits
    }
}

impl Network {
    pub fn new(
        shape: Shape,
        activation: Activation,
        final_time: f64,
        loss: Loss,
        regularization: Regularization,
    ) -> Self {
        Network {
            layout: Layout::new(shape),
            activation,
            final_time,
            loss,
            regularization,
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.layout.shape
    }

    /// Step size h = T/N.
    pub fn step_size(&self) -> f64 {
        self.final_time / self.layout.shape.layers as f64
    }

    /// The time scale s of θ: its last entry when learnable, else 1. The ODE then runs over
    /// [0, s·T] and every step is s·h.
    pub fn time_scale(&self, theta: &[f64]) -> f64 {
        let r = &self.layout.scale;
        if r.is_empty() {
            1.0
        } else {
            theta[r.start]
        }
    }

    /// Number of parameters, the length of θ.
    pub fn num_params(&self) -> usize {
        self.layout.len
    }

    /// The kind of the hidden layers.
    pub fn layer(&self) -> Hidden {
        let sh = &self.layout.shape;
        match sh.conv {
            None => Hidden::Dense(Dense { width: sh.width }),
            Some(c) => Hidden::Conv(Conv { conv: c.hidden() }),
        }
    }

    /// Hidden step n's linearization point from its control θ_n = (K_n, b_n), with step size
    /// `h` (h = T/N on the fine grid, a multiple on coarse MGRIT levels).
    pub fn step<'a>(&self, theta_n: &'a [f64], h: f64) -> HiddenStep<'a> {
        self.layer().linearize(self.activation, h, theta_n)
    }

    /// The input of the opening convolution: P(X), X pooled by the [`crate::Transition`]'s
    /// 2×2 pooling, or X itself (no transition, or one without pooling).
    fn opening_input<'x>(&self, x: &'x [f64]) -> std::borrow::Cow<'x, [f64]> {
        let sh = &self.layout.shape;
        match sh.conv.and_then(|c| c.transition.map(|t| (c, t))) {
            Some((c, t)) if t.pool.is_some() => {
                let batch = x.len() / sh.input;
                let mut px = vec![0.0; batch * c.in_channels * c.pixels()];
                let kind = t.pool.expect("pooled");
                pool_forward(kind, c.in_channels, t.in_height, t.in_width, x, &mut px);
                std::borrow::Cow::Owned(px)
            }
            _ => std::borrow::Cow::Borrowed(x),
        }
    }

    /// Opening layer from the opening block `open` = (W_in, b_in) of θ:
    /// U_0 = σ(A), A = W_in X + b_in 1ᵀ (a convolutional network: A = K_in ∗ X + b_in; with a
    /// [`crate::Transition`]: A = K_in ∗ P(X) + b_in, P the 2×2 pooling or the identity and
    /// K_in a 1×1 convolution), or X zero-padded to w rows (`replicate`, no block; for images:
    /// to c channels). `pre` receives A (w × B).
    pub fn open(&self, open: &[f64], x: &[f64], u0: &mut [f64], pre: &mut [f64]) {
        let sh = &self.layout.shape;
        let batch = x.len() / sh.input;
        match sh.opening {
            Opening::Activate if sh.conv.is_some() => {
                let conv = sh.conv.expect("convolutional").opening();
                let (k, b) = open.split_at(conv.weight_len());
                let px = self.opening_input(x);
                conv.forward(k, b, &px, pre, &mut Scratch::default());
                crate::activation::apply(self.activation, pre, u0);
            }
            Opening::Activate => {
                let (w_in, b_in) = open.split_at(sh.width * sh.input);
                let (w, input) = (sh.width, sh.input);
                gemm_onto(
                    w,
                    input,
                    batch,
                    w_in,
                    false,
                    x,
                    false,
                    Onto::Columns(b_in),
                    pre,
                );
                crate::activation::apply(self.activation, pre, u0);
            }
            Opening::Replicate => {
                u0.fill(0.0);
                for (ucol, xcol) in u0.chunks_exact_mut(sh.width).zip(x.chunks_exact(sh.input)) {
                    ucol[..sh.input].copy_from_slice(xcol);
                }
            }
        }
    }

    /// The opening's gradient from Λ_0: S = σ'(A) ⊙ Λ_0 into `s`, ∂J/∂W_in += S Xᵀ and
    /// ∂J/∂b_in += S 1 into `grad` (the opening block; convolutional: ∂J/∂K_in += S ⋆ X, with
    /// a [`crate::Transition`] S ⋆ P(X)). Nothing for the `replicate` opening (`s` is left
    /// as it is).
    pub fn opening_gradient(
        &self,
        x: &[f64],
        pre: &[f64],
        lam0: &[f64],
        s: &mut [f64],
        grad: &mut [f64],
    ) {
        let sh = &self.layout.shape;
        if sh.opening != Opening::Activate {
            return;
        }
        let batch = x.len() / sh.input;
        crate::activation::scaled_derivative(self.activation, pre, lam0, s);
        if let Some(c) = sh.conv {
            let conv = c.opening();
            let (gk, gb) = grad.split_at_mut(conv.weight_len());
            let px = self.opening_input(x);
            conv.backward_params(&px, s, gk, gb, &mut Scratch::default());
            return;
        }
        let (gw, gb) = grad.split_at_mut(sh.width * sh.input);
        gemm(sh.width, batch, sh.input, 1.0, s, false, x, true, 1.0, gw);
        add_row_sums(sh.width, s, gb);
    }

    /// The adjoint of the opening in its input: overwrites `dx` (d_in × B, as `x`) with
    /// ∂⟨Λ_0, U_0⟩/∂X, which is what carries Λ back into the previous block of a chain.
    ///
    /// `s` is S = σ'(A) ⊙ Λ_0 as [`Network::opening_gradient`] leaves it, for the `activate`
    /// opening: dX = W_inᵀ S (dense), Kᵀ ⋆ S (convolutional), and with a
    /// [`crate::Transition`] dX = Pᵀ(K_inᵀ ⋆ S), Pᵀ the adjoint of the pooling
    /// ([`crate::conv::pool_adjoint`]: max pooling reads `x` for the window's maximum; the
    /// dropped last row or column of odd sizes gets 0). For the `replicate` opening, which
    /// forms no S, pass Λ_0 itself as `s`: dX is its first d_in rows (U_0 = X zero-padded).
    /// `open` is the opening block of θ (empty for `replicate`).
    pub fn opening_input_adjoint(&self, open: &[f64], x: &[f64], s: &[f64], dx: &mut [f64]) {
        let sh = &self.layout.shape;
        assert_eq!(dx.len(), x.len(), "opening input adjoint size");
        let batch = x.len() / sh.input;
        match (sh.opening, sh.conv) {
            (Opening::Replicate, _) => {
                for (dcol, lcol) in dx.chunks_exact_mut(sh.input).zip(s.chunks_exact(sh.width)) {
                    dcol.copy_from_slice(&lcol[..sh.input]);
                }
            }
            (Opening::Activate, None) => {
                let w_in = &open[..sh.width * sh.input];
                gemm(
                    sh.input, sh.width, batch, 1.0, w_in, true, s, false, 0.0, dx,
                );
            }
            (Opening::Activate, Some(c)) => {
                let conv = c.opening();
                let k = &open[..conv.weight_len()];
                let mut scratch = Scratch::default();
                dx.fill(0.0);
                match c.transition.and_then(|t| t.pool.map(|p| (t, p))) {
                    Some((t, kind)) => {
                        let mut dpx = vec![0.0; batch * conv.in_len()];
                        conv.backward_input(k, s, &mut dpx, &mut scratch);
                        pool_adjoint(kind, c.in_channels, t.in_height, t.in_width, x, &dpx, dx);
                    }
                    None => conv.backward_input(k, s, dx, &mut scratch),
                }
            }
        }
    }

    /// The features the affine closing reads from U_N: U_N itself (dense networks, the
    /// `flatten` read-out) or its global average pooling (c × B).
    fn features<'u>(&self, u_final: &'u [f64]) -> std::borrow::Cow<'u, [f64]> {
        let sh = &self.layout.shape;
        match sh.conv {
            Some(c) if c.readout == Readout::GlobalAverage => {
                let batch = u_final.len() / sh.width;
                let mut g = vec![0.0; c.channels * batch];
                global_average(c.channels, c.pixels(), u_final, &mut g);
                std::borrow::Cow::Owned(g)
            }
            _ => std::borrow::Cow::Borrowed(u_final),
        }
    }

    /// The closing layer from its block `class` of θ, Z (C × B): the affine closing
    /// Z = W_c F(U_N) + b_c 1ᵀ with F the read-out (the identity, or global average pooling
    /// of an image state), or the average closing Z_k = (1/w) Σ_i U_N\[i\] (no block).
    pub fn classify(&self, class: &[f64], u_final: &[f64], logits: &mut [f64]) {
        let sh = &self.layout.shape;
        let batch = u_final.len() / sh.width;
        match sh.closing {
            Closing::Affine => {
                let f = sh.features();
                let (w_c, b_c) = class.split_at(sh.classes * f);
                let feat = self.features(u_final);
                let onto = Onto::Columns(b_c);
                gemm_onto(sh.classes, f, batch, w_c, false, &feat, false, onto, logits);
            }
            Closing::Average => {
                let inv = 1.0 / sh.width as f64;
                for (z, u) in logits
                    .chunks_exact_mut(sh.classes)
                    .zip(u_final.chunks_exact(sh.width))
                {
                    z.fill(u.iter().sum::<f64>() * inv);
                }
            }
        }
    }

    /// The closing's adjoint from the loss seed G = ∂loss/∂Z (C × B): Λ_N into `lam_final`,
    /// and the block's gradient added into `grad`. Affine: ∂J/∂W_c += G F(U_N)ᵀ,
    /// ∂J/∂b_c += G 1, Λ_N = F'ᵀ W_cᵀ G (global average pooling: W_cᵀ G spread evenly over
    /// each channel's pixels). Average: Λ_N\[i\] = (1/w) Σ_k G_k, no gradient.
    pub fn classifier_adjoint(
        &self,
        class: &[f64],
        u_final: &[f64],
        seed: &[f64],
        grad: &mut [f64],
        lam_final: &mut [f64],
    ) {
        let sh = &self.layout.shape;
        let (w, c) = (sh.width, sh.classes);
        let batch = u_final.len() / w;
        if sh.closing == Closing::Average {
            let inv = 1.0 / w as f64;
            for (l, g) in lam_final.chunks_exact_mut(w).zip(seed.chunks_exact(c)) {
                l.fill(g.iter().sum::<f64>() * inv);
            }
            return;
        }
        if let Some(conv) = sh.conv.filter(|cv| cv.readout == Readout::GlobalAverage) {
            let f = conv.channels;
            let feat = self.features(u_final);
            let (gw, gb) = grad.split_at_mut(c * f);
            gemm(c, batch, f, 1.0, seed, false, &feat, true, 1.0, gw);
            add_row_sums(c, seed, gb);
            let mut lam_feat = vec![0.0; f * batch];
            gemm(
                f,
                c,
                batch,
                1.0,
                &class[..c * f],
                true,
                seed,
                false,
                0.0,
                &mut lam_feat,
            );
            lam_final.fill(0.0);
            global_average_adjoint(f, conv.pixels(), &lam_feat, lam_final);
            return;
        }
        let (gw, gb) = grad.split_at_mut(c * w);
        gemm(c, batch, w, 1.0, seed, false, u_final, true, 1.0, gw);
        add_row_sums(c, seed, gb);
        gemm(
            w,
            c,
            batch,
            1.0,
            &class[..c * w],
            true,
            seed,
            false,
            0.0,
            lam_final,
        );
    }

    /// Forward propagation without keeping the states: returns (Σ loss_j, correct) on the batch.
    /// `x` is d_in × B, `targets` has B examples. Uses an exact (serial) forward sweep.
    pub fn evaluate<'t>(
        &self,
        theta: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        ws: &mut Workspace,
    ) -> (f64, usize) {
        let targets = targets.into();
        let sh = self.layout.shape;
        let batch = targets.len();
        ws.ensure(self, batch, false);
        self.sweep_in_place(theta, x, ws);
        let l = &self.layout;
        self.classify(&theta[l.classifier()], &ws.states[0], &mut ws.logits);
        loss_sum(self.loss, sh.classes, &ws.logits, targets, None)
    }

    /// Objective J(θ) on the batch (x, targets) and its exact gradient ∇J (overwrites `grad`).
    ///
    /// Discrete adjoint: G = ∂loss/∂Z, Λ_N = W_cᵀ G; for n = N−1 … 0:
    /// S_n = σ'(K_n U_n + b_n) ⊙ (s·h Λ_{n+1}), Λ_n = Λ_{n+1} + K_nᵀ S_n,
    /// ∂J/∂K_n = S_n U_nᵀ, ∂J/∂b_n = S_n 1; opening: ∂J/∂W_in = (σ'(A) ⊙ Λ_0) Xᵀ; a learnable
    /// time scale: ∂J/∂s = Σ_n h ⟨Λ_{n+1}, σ(K_n U_n + b_n 1ᵀ)⟩ (summed in layer order).
    pub fn objective_gradient<'t>(
        &self,
        theta: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        ws: &mut Workspace,
        grad: &mut [f64],
    ) -> ObjectiveValue {
        let targets = targets.into();
        let sh = self.layout.shape;
        let l = &self.layout;
        let (c, nl) = (sh.classes, sh.layers);
        let batch = targets.len();
        ws.ensure(self, batch, true);
        let h = self.step_size();
        let hs = h * self.time_scale(theta);

        self.forward_sweep(theta, x, ws, hs);
        self.classify(&theta[l.classifier()], &ws.states[nl], &mut ws.logits);
        let scale = 1.0 / batch as f64;
        let (loss_total, correct) = loss_sum(
            self.loss,
            c,
            &ws.logits,
            targets,
            Some((&mut ws.seed, scale)),
        );
        let loss = loss_total * scale;

        // Adjoint sweep.
        grad.fill(0.0);
        self.classifier_adjoint(
            &theta[l.classifier()],
            &ws.states[nl],
            &ws.seed,
            &mut grad[l.classifier()],
            &mut ws.lam,
        );
        self.adjoint_sweep(theta, x, ws, grad, h, hs);

        let reg = self.regularization(theta, Some(grad));
        ObjectiveValue {
            objective: loss + reg,
            loss,
            correct,
            count: batch,
        }
    }

    /// The forward sweep of an evaluation, in place: U_0 = the opening of `x`, then every
    /// step of s·h into `ws.states[0]`, which ends as U_N (no states kept; `ws` sized by
    /// [`Workspace::ensure`]).
    pub(crate) fn sweep_in_place(&self, theta: &[f64], x: &[f64], ws: &mut Workspace) {
        let h = self.step_size() * self.time_scale(theta);
        let l = &self.layout;
        let u = &mut ws.states[0];
        self.open(&theta[l.opening()], x, u, &mut ws.open_pre);
        for n in 0..l.shape.layers {
            self.step(&theta[l.layer(n)], h)
                .forward_in_place(u, &mut ws.scratch);
        }
    }

    /// The forward sweep of [`Network::objective_gradient`] with step s·h = `hs`: U_0 = the
    /// opening of `x`, U_{n+1} = step_n(U_n), all kept in `ws` (sized by
    /// [`Workspace::ensure`] with kept states).
    pub(crate) fn forward_sweep(&self, theta: &[f64], x: &[f64], ws: &mut Workspace, hs: f64) {
        let l = &self.layout;
        self.open(&theta[l.opening()], x, &mut ws.states[0], &mut ws.open_pre);
        for n in 0..l.shape.layers {
            let (done, rest) = ws.states.split_at_mut(n + 1);
            self.step(&theta[l.layer(n)], hs)
                .forward(&done[n], &mut rest[0], &mut ws.scratch);
        }
    }

    /// The adjoint sweep of [`Network::objective_gradient`] from Λ_N in `ws.lam` (after
    /// [`Network::forward_sweep`]): for n = N−1 … 0 the step's adjoint with the layer's
    /// gradient slice, the time scale's derivative (learnable s, from h = T/N), then the
    /// opening's gradient. Leaves Λ_0 in `ws.lam` and S in `ws.s`; adds into `grad` (θ's).
    pub(crate) fn adjoint_sweep(
        &self,
        theta: &[f64],
        x: &[f64],
        ws: &mut Workspace,
        grad: &mut [f64],
        h: f64,
        hs: f64,
    ) {
        let l = &self.layout;
        let nl = l.shape.layers;
        let mut scale_terms = vec![0.0; if l.scale.is_empty() { 0 } else { nl }];
        for n in (0..nl).rev() {
            let step = self.step(&theta[l.layer(n)], hs);
            if let Some(t) = scale_terms.get_mut(n) {
                *t = h * step.increment_dot(&ws.states[n], &ws.lam, &mut ws.scratch);
            }
            step.adjoint(
                &ws.states[n],
                &mut ws.lam,
                &mut ws.scratch,
                Some(&mut grad[l.layer(n)]),
            );
        }
        if !l.scale.is_empty() {
            grad[l.scale.start] = ordered_sum(&scale_terms);
        }
        self.opening_gradient(x, &ws.open_pre, &ws.lam, &mut ws.s, &mut grad[l.opening()]);
    }
}
