//! A chain of ODE blocks, the serial reference: block i is an ODE-net whose input X_i is the
//! previous block's last state, X_0 = x the data and X_{i+1} = U_N of block i:
//!
//! U_0^i = open_i(θ_i, X_i), U_{n+1}^i = U_n^i + s_i·h_i σ(K_n^i ∗ U_n^i + b_n^i), h_i = T_i/N_i,
//!
//! and the last block's classifier and loss give the objective
//! J = loss(classify(U_N^last)) + Σ_i R_i(θ_i). Later blocks open with a
//! [`crate::Transition`] (pooling and a 1×1 convolution), inner blocks have no classifier
//! (`classes` = 0). θ is the blocks' θ_i concatenated in block order.
//!
//! The adjoint runs the blocks backwards: Λ_N of the last block from its classifier, each
//! block's adjoint sweep to Λ_0, its opening gradient, and Λ_N of block i − 1 =
//! ∂⟨Λ_0^i, U_0^i⟩/∂X_i ([`Network::opening_input_adjoint`]).

use std::ops::Range;

use crate::layout::Opening;
use crate::loss::{loss_sum, Targets};
use crate::network::{Network, ObjectiveValue, Workspace};

/// A chain of ODE blocks (see the module documentation); built by [`Chain::new`], which
/// checks that the blocks fit together.
#[derive(Clone, Debug, PartialEq)]
pub struct Chain {
    pub blocks: Vec<Network>,
}

/// Buffers of a [`Chain`]: one [`Workspace`] per block, reused across calls.
#[derive(Clone, Debug, Default)]
pub struct ChainWorkspace {
    blocks: Vec<Workspace>,
}

impl ChainWorkspace {
    fn ensure(&mut self, chain: &Chain, batch: usize, keep_states: bool) {
        self.blocks
            .resize_with(chain.blocks.len(), Workspace::default);
        for (ws, net) in self.blocks.iter_mut().zip(&chain.blocks) {
            ws.ensure(net, batch, keep_states);
        }
    }

    /// Logits of the last forward pass (C × B, the last block's).
    pub fn logits(&self) -> &[f64] {
        self.blocks.last().map_or(&[], |ws| ws.logits())
    }
}

impl Chain {
    /// Checks the chain and builds it. Requirements: at least one block; block 0 has no
    /// transition; every later block is convolutional with a [`crate::Transition`] and the
    /// `activate` opening, and its input (c_in, H_in, W_in) is the previous block's state
    /// (c, H, W) (the previous block convolutional too); all blocks but the last have
    /// `classes` = 0, the last has `classes` > 0; a learnable time scale only in a chain of
    /// one block; every [`crate::ConvShape::check`] passes. The error is one line naming the
    /// block (0-based) and the mismatch.
    pub fn new(blocks: Vec<Network>) -> Result<Chain, String> {
        if blocks.is_empty() {
            return Err("a chain needs at least one block".into());
        }
        let last = blocks.len() - 1;
        for (i, net) in blocks.iter().enumerate() {
            let sh = net.shape();
            let fail = |what: String| Err(format!("chain block {i} (0-based): {what}"));
            if let Some(c) = sh.conv {
                if let Err(e) = c.check() {
                    return fail(e);
                }
                if sh.input != c.input_len() {
                    return fail(format!(
                        "input of {} values, but its images hold {}",
                        sh.input,
                        c.input_len()
                    ));
                }
            }
            if i < last && sh.classes != 0 {
                return fail(format!(
                    "an inner block has a classifier of {} classes (needs classes = 0)",
                    sh.classes
                ));
            }
            if i == last && sh.classes == 0 {
                return fail("the last block has no classifier (classes = 0)".into());
            }
            if sh.time_scale && blocks.len() > 1 {
                return fail(format!(
                    "a learnable time scale, allowed only in a chain of one block, not {}",
                    blocks.len()
                ));
            }
            let transition = sh.conv.and_then(|c| c.transition);
            if i == 0 {
                if transition.is_some() {
                    return fail("the first block has a transition (its input is the data)".into());
                }
                continue;
            }
            let (Some(c), Some(t)) = (sh.conv, transition) else {
                return fail("a later block must be convolutional with a transition".into());
            };
            if sh.opening != Opening::Activate {
                return fail(format!(
                    "the transition needs the activate opening, not {:?}",
                    sh.opening
                ));
            }
            let Some(p) = blocks[i - 1].shape().conv else {
                return fail(format!(
                    "its transition follows block {}, which is not convolutional",
                    i - 1
                ));
            };
            let want = (p.channels, p.height, p.width);
            let got = (c.in_channels, t.in_height, t.in_width);
            if got != want {
                return fail(format!(
                    "input of {} channels of {}×{}, but block {} ends in {} channels of {}×{}",
                    got.0,
                    got.1,
                    got.2,
                    i - 1,
                    want.0,
                    want.1,
                    want.2
                ));
            }
        }
        Ok(Chain { blocks })
    }

    /// Length of the chain's θ, Σ_i of the blocks' parameters.
    pub fn num_params(&self) -> usize {
        self.blocks.iter().map(Network::num_params).sum()
    }

    /// Where block i's θ_i lies in the chain's θ (the blocks' θ concatenated in block order).
    pub fn block_range(&self, i: usize) -> Range<usize> {
        let start: usize = self.blocks[..i].iter().map(Network::num_params).sum();
        start..start + self.blocks[i].num_params()
    }

    /// The last block, which holds the classifier and the loss.
    pub fn last(&self) -> &Network {
        self.blocks.last().expect("a chain has a block")
    }

    /// Σ_i R_i(θ_i), each block's [`Network::regularization`], summed in block order from
    /// 0.0; adds their gradient into `grad` (θ's) when given.
    pub fn regularization(&self, theta: &[f64], mut grad: Option<&mut [f64]>) -> f64 {
        let mut r = 0.0;
        for (i, net) in self.blocks.iter().enumerate() {
            let range = self.block_range(i);
            r += net.regularization(
                &theta[range.clone()],
                grad.as_deref_mut().map(|g| &mut g[range]),
            );
        }
        r
    }

    /// Forward propagation without keeping the states: (Σ loss_j, correct) on the batch. `x`
    /// is the first block's input (d_in × B), `targets` has B examples.
    pub fn evaluate<'t>(
        &self,
        theta: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        ws: &mut ChainWorkspace,
    ) -> (f64, usize) {
        let targets = targets.into();
        let batch = targets.len();
        ws.ensure(self, batch, false);
        for (i, net) in self.blocks.iter().enumerate() {
            let (done, rest) = ws.blocks.split_at_mut(i);
            let xi = if i == 0 { x } else { &done[i - 1].states[0] };
            net.sweep_in_place(&theta[self.block_range(i)], xi, &mut rest[0]);
        }
        let net = self.last();
        let th = &theta[self.block_range(self.blocks.len() - 1)];
        let ws = ws.blocks.last_mut().expect("a block");
        net.classify(&th[net.layout.classifier()], &ws.states[0], &mut ws.logits);
        loss_sum(net.loss, net.shape().classes, &ws.logits, targets, None)
    }

    /// Objective J(θ) = loss + Σ_i R_i(θ_i) on the batch (x, targets) and its exact
    /// discrete-adjoint gradient (overwrites `grad`).
    ///
    /// Forward: X_0 = x, each block's forward sweep (U_0 = open_i(X_i), the N_i steps of
    /// s·h_i), X_{i+1} = U_N of block i; the last block's logits, the loss (seed scale 1/B)
    /// and Λ_N from its classifier. Adjoint, for i = last … 0: the block's adjoint sweep
    /// n = N_i − 1 … 0 to Λ_0, its opening gradient (S = σ'(A) ⊙ Λ_0), and for i > 0
    /// Λ_N of block i − 1 = ∂⟨Λ_0, U_0⟩/∂X_i. Then the regularization, as
    /// [`Chain::regularization`].
    pub fn objective_gradient<'t>(
        &self,
        theta: &[f64],
        x: &[f64],
        targets: impl Into<Targets<'t>>,
        ws: &mut ChainWorkspace,
        grad: &mut [f64],
    ) -> ObjectiveValue {
        let targets = targets.into();
        let batch = targets.len();
        ws.ensure(self, batch, true);
        let last = self.blocks.len() - 1;

        // Forward sweeps, keeping every block's states.
        for (i, net) in self.blocks.iter().enumerate() {
            let th = &theta[self.block_range(i)];
            let hs = net.step_size() * net.time_scale(th);
            let (done, rest) = ws.blocks.split_at_mut(i);
            let xi = match i {
                0 => x,
                _ => {
                    let prev = &done[i - 1];
                    &prev.states[self.blocks[i - 1].shape().layers]
                }
            };
            net.forward_sweep(th, xi, &mut rest[0], hs);
        }
        let net = self.last();
        let th = &theta[self.block_range(last)];
        let l = &net.layout;
        let nl = l.shape.layers;
        let scale = 1.0 / batch as f64;
        let (loss_total, correct) = {
            let w = &mut ws.blocks[last];
            net.classify(&th[l.classifier()], &w.states[nl], &mut w.logits);
            loss_sum(
                net.loss,
                l.shape.classes,
                &w.logits,
                targets,
                Some((&mut w.seed, scale)),
            )
        };
        let loss = loss_total * scale;

        // Adjoint sweeps, last block first.
        grad.fill(0.0);
        {
            let w = &mut ws.blocks[last];
            let g = &mut grad[self.block_range(last)];
            net.classifier_adjoint(
                &th[l.classifier()],
                &w.states[nl],
                &w.seed,
                &mut g[l.classifier()],
                &mut w.lam,
            );
        }
        for i in (0..=last).rev() {
            let net = &self.blocks[i];
            let range = self.block_range(i);
            let th = &theta[range.clone()];
            let h = net.step_size();
            let hs = h * net.time_scale(th);
            let (done, rest) = ws.blocks.split_at_mut(i);
            let cur = &mut rest[0];
            if i == 0 {
                net.adjoint_sweep(th, x, cur, &mut grad[range], h, hs);
                continue;
            }
            let prev = &mut done[i - 1];
            let xi = &prev.states[self.blocks[i - 1].shape().layers];
            net.adjoint_sweep(th, xi, cur, &mut grad[range], h, hs);
            net.opening_input_adjoint(&th[net.layout.opening()], xi, &cur.s, &mut prev.lam);
        }

        let reg = self.regularization(theta, Some(grad));
        ObjectiveValue {
            objective: loss + reg,
            loss,
            correct,
            count: batch,
        }
    }
}
