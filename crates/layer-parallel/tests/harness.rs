//! mgrit's application checks (`mgrit::harness`) on the forward and adjoint propagation
//! applications: pack/unpack, sum, norm, `step_from` = `step`, and a step recomputed from a
//! packed copy, on states that are not zero (a zero state would make every check vacuous, and
//! the harness reports it as inconclusive, which this test refuses).

use layer_parallel::apps::{AdjointApp, Derivatives, ForwardApp};
use layer_parallel::ghosts::{Ghosts, LayerControls};
use layer_parallel::{LocalLayout, Partition};
use mgrit::harness::{check_app, check_state, Report};
use mgrit::{Options, SerialComm, Solver, StepInfo};
use odenet::{Activation, Loss, Network, Regularization, Scratch, Shape};

fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 1.4
        })
        .collect()
}

fn assert_conclusive_pass(what: &str, r: &Report) {
    let c = r.counts();
    assert!(r.passed(), "{what}: {:#?}", r.lines);
    assert!(
        !r.inconclusive(),
        "{what}: inconclusive checks: {:#?}",
        r.lines
    );
    assert!(c.passed >= 5, "{what}: only {c} checks ran");
}

#[test]
fn forward_and_adjoint_apps_pass_the_mgrit_harness() {
    for (act, width) in [
        (Activation::Tanh, 4),
        (Activation::SmoothRelu, 5),
        (Activation::Relu, 8),
    ] {
        let layers = 6;
        let shape = Shape::dense(2, width, 3, layers);
        let net = Network::new(
            shape,
            act,
            1.0,
            Loss::CrossEntropy,
            Regularization::default(),
        );
        let theta = values(net.num_params(), 3);
        let batch = 7;
        let x = values(shape.input * batch, 5);
        let part = Partition::new(layers, 0, 1).unwrap();
        let layout = LocalLayout::new(&net, &part);
        let opts = Options {
            max_levels: 1,
            ..Options::default()
        };
        let mut forward = Solver::new(layers, 0.0, 1.0, opts.clone(), SerialComm).unwrap();
        let ghosts = Ghosts::new(forward.grid(), &part);
        let ctrl = LayerControls {
            theta: &theta,
            layout: &layout,
            part: &part,
            ghosts: &ghosts,
        };
        // The forward solve keeps D_n = σ'(Z_n(U_n)) for the adjoint's second round.
        let mut derivs = Derivatives::default();
        derivs.invalidate(part.owned_layers.clone(), width * batch);
        let mut fwd = ForwardApp {
            net: &net,
            ctrl,
            open: &theta[layout.opening.clone()],
            x: &x,
            batch,
            scratch: Scratch::new(width * batch),
            keep: Some(&mut derivs),
            kernel_time: std::time::Duration::ZERO,
        };
        let h = net.step_size();
        let step = |from: usize, to: usize, level: usize, m: usize| StepInfo {
            level,
            from,
            to,
            t_from: from as f64 * h,
            t_to: to as f64 * h,
            fine_steps: m,
            dt: m as f64 * h,
        };
        // U_0 = opening(X) is not zero; a coarse step of two fine steps from layer 2 too.
        let what = format!("forward {act} w={width}");
        assert_conclusive_pass(
            &what,
            &check_app(&mut fwd, &SerialComm, 0, &step(0, 1, 0, 1), 1e-14),
        );
        let u2 = values(width * batch, 9);
        assert_conclusive_pass(
            &what,
            &check_state(&mut fwd, &SerialComm, &u2, &step(2, 4, 1, 2), 1e-14),
        );

        // The adjoint, linearized at the forward solution.
        forward.solve(&mut fwd);
        assert!(
            derivs.missing().is_empty(),
            "the one-level solve keeps every layer's D"
        );
        let lambda_final = values(width * batch, 11);
        // Forming σ'(Z_n) at each step, then taking the kept D_n.
        for kept in [None, Some(&derivs)] {
            let mut adj = AdjointApp {
                net: &net,
                ctrl,
                forward: &forward,
                lambda_final: &lambda_final,
                batch,
                scratch: Scratch::new(width * batch),
                grad: None,
                derivs: kept,
                regularize: None,
                kernel_time: std::time::Duration::ZERO,
            };
            let what = format!("adjoint {act} w={width} (kept D: {})", kept.is_some());
            let n = layers;
            assert_conclusive_pass(
                &what,
                &check_app(&mut adj, &SerialComm, n, &step(n, n - 1, 0, 1), 1e-14),
            );
            let lam = values(width * batch, 13);
            assert_conclusive_pass(
                &what,
                &check_state(&mut adj, &SerialComm, &lam, &step(3, 1, 1, 2), 1e-14),
            );
            // An interior initial guess is zero: the harness must call that inconclusive.
            let zero = check_app(&mut adj, &SerialComm, 2, &step(3, 2, 0, 1), 1e-14);
            assert!(
                zero.inconclusive(),
                "a zero state was not reported as inconclusive: {:#?}",
                zero.lines
            );
        }
    }
}
