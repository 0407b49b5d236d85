//! Keeping D_n = σ'(Z_n(U_n)) from the forward solution for the adjoint
//! (`Objective::keep_derivatives`) changes no bit: the objective and gradient with and without
//! it are identical, for one level (the sweep writes D_n) and for 2 and 3 unconverged MGRIT
//! levels (the adjoint forms D_n from the solution), over dense layers on the GEMM path and on
//! the fused narrow kernels, convolutions, a learnable time scale, warm restarts with a new θ
//! and a change of batch size (a stale D_n would show in either).

mod common;
use common::Mix;
use layer_parallel::{Objective, SolverSettings};
use mgrit::{Options, SerialComm};
use odenet::{Activation, Loss, Network, Opening, Regularization, Shape};

/// Unconverged MGRIT (cf 2, two forward and two adjoint cycles, warm restarts), or the sweep.
fn settings(levels: usize) -> SolverSettings {
    let o = Options {
        max_levels: levels,
        cfactor: vec![2],
        max_iter: if levels == 1 { 1 } else { 2 },
        abs_tol: 0.0,
        warm_restart: true,
        ..Options::default()
    };
    SolverSettings {
        forward: o.clone(),
        adjoint: o,
    }
}

fn networks() -> Vec<(String, Network)> {
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let mut nets = Vec::new();
    for act in Activation::ALL {
        for width in [4, 5, 8, 17] {
            let shape = Shape {
                time_scale: width == 5,
                ..Shape::dense(3, width, 4, 12)
            };
            let net = Network::new(shape, act, 1.5, Loss::CrossEntropy, reg);
            nets.push((format!("dense w={width} {act}"), net));
        }
        let conv = odenet::ConvShape {
            in_channels: 2,
            channels: 3,
            height: 5,
            width: 4,
            kernel_h: 3,
            kernel_w: 3,
            readout: odenet::Readout::Flatten,
            transition: None,
        };
        let shape = Shape {
            opening: Opening::Activate,
            ..Shape::convolutional(conv, 4, 9)
        };
        let net = Network::new(shape, act, 1.5, Loss::CrossEntropy, reg);
        nets.push((format!("conv {act}"), net));
    }
    nets
}

#[test]
fn keeping_the_derivatives_changes_no_bit() {
    for (what, net) in networks() {
        for levels in [1, 2, 3] {
            let mut kept =
                Objective::new(net.clone(), &SerialComm, settings(levels), None).unwrap();
            let mut formed =
                Objective::new(net.clone(), &SerialComm, settings(levels), None).unwrap();
            formed.keep_derivatives(false);
            let mut g = Mix(7 + levels as u64);
            let mut theta = g.vec(net.num_params(), 0.6);
            if net.layout.shape.time_scale {
                let s = net.layout.scale.start;
                theta[s] = 1.3;
            }
            let input = net.layout.shape.input;
            // Three evaluations: a new θ each time (warm restarts), the last on fewer examples.
            for (call, batch) in [(0, 9), (1, 9), (2, 6)] {
                let x = g.vec(input * batch, 1.0);
                let labels: Vec<usize> = (0..batch).map(|j| (j * 5 + call) % 4).collect();
                let (mut g_kept, mut g_formed) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
                let v = kept.objective_gradient(&theta, &x, &labels, &mut g_kept);
                let w = formed.objective_gradient(&theta, &x, &labels, &mut g_formed);
                let at = format!("{what}, {levels} levels, call {call}");
                assert!(
                    g_formed.iter().any(|&x| x != 0.0),
                    "{at}: a zero gradient proves nothing"
                );
                assert_eq!(v.objective.to_bits(), w.objective.to_bits(), "{at}: J");
                assert_eq!(g_kept, g_formed, "{at}: gradient");
                for (t, d) in theta.iter_mut().zip(&g_formed) {
                    *t -= 0.1 * d;
                }
            }
        }
    }
}
