//! The layer-parallel objective on one in-process rank (`SerialComm`) against odenet's serial
//! objective: the same value and gradient for per-layer controls (every activation, both
//! openings, both losses), spline controls against the chain rule through θ = P(p) and against
//! finite differences, and converged MGRIT against the serial sweep.

mod common;
use common::{max_rel, settings, Mix};
use layer_parallel::{Objective, SolverSettings, SplineControls};
use mgrit::{Options, SerialComm};
use odenet::{
    Activation, Closing, Loss, Network, Opening, Regularization, Shape, Targets, Workspace,
};

/// A small problem: network, inputs (d_in × B) and labels.
struct Case {
    net: Network,
    x: Vec<f64>,
    labels: Vec<usize>,
}

fn case(act: Activation, opening: Opening, loss: Loss, width: usize, seed: u64) -> Case {
    let shape = Shape {
        opening,
        ..Shape::dense(3, width, 4, 12)
    };
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let net = Network::new(shape, act, 1.5, loss, reg);
    let mut g = Mix(seed);
    let batch = 9;
    Case {
        net,
        x: g.vec(shape.input * batch, 1.0),
        labels: (0..batch).map(|j| (j * 7 + seed as usize) % 4).collect(),
    }
}

#[test]
fn per_layer_controls_equal_the_serial_objective_bit_for_bit() {
    let mut n = 0;
    for act in Activation::ALL {
        for opening in [Opening::Activate, Opening::Replicate] {
            for (loss, width) in [
                (Loss::CrossEntropy, 4),
                (Loss::Mse, 5),
                (Loss::CrossEntropy, 6),
            ] {
                let c = case(act, opening, loss, width, 3 + n);
                n += 1;
                let theta = Mix(11 + n).vec(c.net.num_params(), 0.7);
                let mut ws = Workspace::default();
                let mut g_serial = vec![0.0; theta.len()];
                let v_serial =
                    c.net
                        .objective_gradient(&theta, &c.x, &c.labels, &mut ws, &mut g_serial);
                let mut obj =
                    Objective::new(c.net.clone(), &SerialComm, settings(1), None).unwrap();
                let mut g = vec![0.0; theta.len()];
                let v = obj.objective_gradient(&theta, &c.x, &c.labels, &mut g);
                let what = format!("{act} {opening:?} {loss:?} w={width}");
                assert!(
                    g_serial.iter().any(|&x| x != 0.0),
                    "{what}: zero gradient proves nothing"
                );
                assert_eq!(
                    v.objective.to_bits(),
                    v_serial.objective.to_bits(),
                    "{what}: J"
                );
                assert_eq!(v.loss.to_bits(), v_serial.loss.to_bits(), "{what}: loss");
                assert_eq!(v.correct, v_serial.correct, "{what}: correct");
                assert_eq!(g, g_serial, "{what}: gradient");
                // Forward-only evaluation and the regularization agree too.
                // (The sweep's mean is Σ loss / B; the objective's Σ loss · (1/B).)
                let (l, acc) = obj.evaluate(&theta, &c.x, &c.labels);
                let (sum, correct) = c.net.evaluate(&theta, &c.x, &c.labels, &mut ws);
                let b = c.labels.len() as f64;
                assert_eq!(l.to_bits(), (sum / b).to_bits(), "{what}: evaluate loss");
                assert!((l - v_serial.loss).abs() <= 1e-15 * v_serial.loss.abs());
                assert_eq!(acc, correct as f64 / b);
                assert_eq!(correct, v_serial.correct);
                let reg = obj.regularization(&theta);
                assert_eq!(
                    reg.to_bits(),
                    c.net.regularization(&theta, None).to_bits(),
                    "{what}: R"
                );
            }
        }
    }
}

#[test]
fn converged_mgrit_equals_the_serial_sweep() {
    for act in Activation::ALL {
        let c = case(act, Opening::Activate, Loss::CrossEntropy, 4, 5);
        let theta = Mix(17).vec(c.net.num_params(), 0.7);
        let mut ws = Workspace::default();
        let mut g_serial = vec![0.0; theta.len()];
        let v_serial = c
            .net
            .objective_gradient(&theta, &c.x, &c.labels, &mut ws, &mut g_serial);
        for levels in [2, 3] {
            let mut obj =
                Objective::new(c.net.clone(), &SerialComm, settings(levels), None).unwrap();
            assert_eq!(obj.levels(), levels);
            let mut g = vec![0.0; theta.len()];
            let v = obj.objective_gradient(&theta, &c.x, &c.labels, &mut g);
            assert!((v.objective - v_serial.objective).abs() <= 1e-12 * v_serial.objective.abs());
            let e = max_rel(&g, &g_serial);
            assert!(e <= 1e-9, "{act} {levels} levels: gradient error {e:e}");
            assert!(v.fwd_res.unwrap() <= 1e-13 && v.adj_res.unwrap() <= 1e-13);
        }
    }
}

/// The spline objective J(p) = loss(θ(p)) + R_open + R_spline(c) + R_class.
fn spline_case(act: Activation, opening: Opening) -> (Case, bspline::Basis, Vec<f64>) {
    let c = case(act, opening, Loss::CrossEntropy, 4, 9);
    let basis =
        bspline::Basis::uniform(bspline::KnotKind::Clamped, 2, 5, c.net.final_time).unwrap();
    let pl = layer_parallel::spline_layout(&c.net, basis.count());
    let p = Mix(23).vec(pl.len, 0.7);
    (c, basis, p)
}

#[test]
fn spline_controls_follow_the_chain_rule_through_the_serial_objective() {
    for act in Activation::ALL {
        for opening in [Opening::Activate, Opening::Replicate] {
            let (c, basis, p) = spline_case(act, opening);
            let sp = SplineControls::new(basis.clone(), c.net.layout.shape.layers);
            let theta = sp.global_model(&c.net, &p);
            // The serial loss at θ(p), without regularization.
            let mut plain = c.net.clone();
            plain.regularization = Regularization::default();
            let mut ws = Workspace::default();
            let mut g_theta = vec![0.0; theta.len()];
            let v_theta = plain.objective_gradient(&theta, &c.x, &c.labels, &mut ws, &mut g_theta);
            let mut obj =
                Objective::new(c.net.clone(), &SerialComm, settings(1), Some(basis)).unwrap();
            assert!(obj.is_spline());
            let mut g = vec![0.0; p.len()];
            let v = obj.objective_gradient(&p, &c.x, &c.labels, &mut g);
            assert_eq!(
                v.loss.to_bits(),
                v_theta.loss.to_bits(),
                "{act} {opening:?}: loss at θ(p)"
            );
            // ∂J/∂c_i = Σ_n B_i(t_n) ∂loss/∂θ_n + ∂R/∂c_i; opening and classifier as they are.
            let l = &c.net.layout;
            let pl = layer_parallel::spline_layout(&c.net, sp.count);
            let r = c.net.regularization;
            let mut expect = vec![0.0; p.len()];
            expect[pl.opening()].copy_from_slice(&g_theta[l.opening()]);
            expect[pl.classifier()].copy_from_slice(&g_theta[l.classifier()]);
            c.net
                .opening_regularization(&p[pl.opening()], Some(&mut expect[pl.opening()]));
            c.net
                .classifier_regularization(&p[pl.classifier()], Some(&mut expect[pl.classifier()]));
            let mut coef_grad = vec![0.0; pl.hidden().len()];
            for n in 0..l.shape.layers {
                sp.add_gradient(n, &g_theta[l.layer(n)], &mut coef_grad);
            }
            let mut reg_grad = vec![0.0; coef_grad.len()];
            let creg = sp.regularization(
                &p[pl.hidden()],
                l.layer_len,
                r.tikhonov,
                r.ddt,
                &mut reg_grad,
            );
            for ((e, a), b) in expect[pl.hidden()]
                .iter_mut()
                .zip(&coef_grad)
                .zip(&reg_grad)
            {
                *e = a + b;
            }
            let e = max_rel(&g, &expect);
            assert!(
                e <= 1e-13,
                "{act} {opening:?}: gradient differs from the chain rule by {e:e}"
            );
            let reg = c.net.opening_regularization(&p[pl.opening()], None)
                + creg
                + c.net.classifier_regularization(&p[pl.classifier()], None);
            assert!((v.objective - (v.loss + reg)).abs() <= 1e-14 * v.objective.abs());
        }
    }
}

#[test]
fn spline_gradient_matches_finite_differences() {
    for act in Activation::ALL {
        let (c, basis, p) = spline_case(act, Opening::Activate);
        let mut obj = Objective::new(c.net.clone(), &SerialComm, settings(1), Some(basis)).unwrap();
        let mut g = vec![0.0; p.len()];
        obj.objective_gradient(&p, &c.x, &c.labels, &mut g);
        let mut scratch = vec![0.0; p.len()];
        let mut worst = 0.0f64;
        for i in (0..p.len()).step_by(3) {
            let h = 1e-6;
            let mut q = p.clone();
            q[i] += h;
            let jp = obj
                .objective_gradient(&q, &c.x, &c.labels, &mut scratch)
                .objective;
            q[i] -= 2.0 * h;
            let jm = obj
                .objective_gradient(&q, &c.x, &c.labels, &mut scratch)
                .objective;
            let fd = (jp - jm) / (2.0 * h);
            worst = worst.max((fd - g[i]).abs() / (1e-3 + g[i].abs()));
        }
        assert!(
            worst < 1e-6,
            "{act}: finite differences differ by {worst:e}"
        );
    }
}

/// Sine-experiment layers (copy opening, average closing) with real-valued targets and a
/// learnable time scale: one MGRIT level equals the serial objective bit for bit, converged
/// MGRIT agrees to the tolerance, and spline controls pass finite differences (the time
/// scale's entry included).
#[test]
fn regression_and_time_scale_equal_the_serial_objective() {
    for act in Activation::ALL {
        for (opening, closing, time_scale) in [
            (Opening::Replicate, Closing::Average, true),
            (Opening::Replicate, Closing::Average, false),
            (Opening::Activate, Closing::Affine, true),
        ] {
            let outputs = if closing == Closing::Average { 1 } else { 2 };
            let shape = Shape {
                opening,
                closing,
                time_scale,
                ..Shape::dense(1, 4, outputs, 12)
            };
            let reg = Regularization {
                tikhonov: 1e-2,
                ddt: 1e-3,
                classifier: 2e-2,
            };
            let net = Network::new(shape, act, 2.0, Loss::Mse, reg);
            let mut g = Mix(31 + act as u64);
            let batch = 7;
            let x = g.vec(batch, 3.0);
            let values = g.vec(batch * outputs, 1.0);
            let y = Targets::Values {
                values: &values,
                dim: outputs,
            };
            let mut theta = g.vec(net.num_params(), 0.7);
            if time_scale {
                theta[net.layout.scale.start] = 1.4;
            }
            let what = format!("{act} {opening:?} {closing:?} scale {time_scale}");
            let mut ws = Workspace::default();
            let mut g_serial = vec![0.0; theta.len()];
            let v_serial = net.objective_gradient(&theta, &x, y, &mut ws, &mut g_serial);
            assert!(g_serial.iter().any(|&v| v != 0.0), "{what}: zero gradient");
            if time_scale {
                assert_ne!(g_serial[net.layout.scale.start], 0.0, "{what}: ∂J/∂s = 0");
            }
            let mut obj = Objective::new(net.clone(), &SerialComm, settings(1), None).unwrap();
            let mut grad = vec![0.0; theta.len()];
            let v = obj.objective_gradient(&theta, &x, y, &mut grad);
            assert_eq!(
                v.objective.to_bits(),
                v_serial.objective.to_bits(),
                "{what}: J"
            );
            assert_eq!(grad, g_serial, "{what}: gradient");
            let (l, _) = obj.evaluate(&theta, &x, y);
            let (sum, _) = net.evaluate(&theta, &x, y, &mut ws);
            assert_eq!(
                l.to_bits(),
                (sum / batch as f64).to_bits(),
                "{what}: evaluate"
            );
            for levels in [2, 3] {
                let mut obj =
                    Objective::new(net.clone(), &SerialComm, settings(levels), None).unwrap();
                let v = obj.objective_gradient(&theta, &x, y, &mut grad);
                assert!(
                    (v.objective - v_serial.objective).abs() <= 1e-12 * v_serial.objective.abs(),
                    "{what} {levels} levels: J"
                );
                let e = max_rel(&grad, &g_serial);
                assert!(e <= 1e-9, "{what} {levels} levels: gradient error {e:e}");
            }
            // Spline controls: finite differences of J(p) in every third entry and the scale.
            let basis = bspline::Basis::uniform(bspline::KnotKind::Clamped, 2, 5, 2.0).unwrap();
            let pl = layer_parallel::spline_layout(&net, basis.count());
            let mut p = g.vec(pl.len, 0.7);
            if time_scale {
                p[pl.scale.start] = 0.8;
            }
            let mut obj =
                Objective::new(net.clone(), &SerialComm, settings(1), Some(basis)).unwrap();
            let mut gp = vec![0.0; p.len()];
            obj.objective_gradient(&p, &x, y, &mut gp);
            let mut scratch = vec![0.0; p.len()];
            let mut worst = 0.0f64;
            let entries: Vec<usize> = (0..p.len()).step_by(3).chain(pl.scale.clone()).collect();
            for i in entries {
                let h = 1e-6;
                let mut q = p.clone();
                q[i] += h;
                let jp = obj.objective_gradient(&q, &x, y, &mut scratch).objective;
                q[i] -= 2.0 * h;
                let jm = obj.objective_gradient(&q, &x, y, &mut scratch).objective;
                let fd = (jp - jm) / (2.0 * h);
                worst = worst.max((fd - gp[i]).abs() / (1e-3 + gp[i].abs()));
            }
            assert!(
                worst < 1e-6,
                "{what} spline: finite differences differ by {worst:e}"
            );
        }
    }
}

/// One-shot solves (2 forward and 2 adjoint iterations, warm restarts) on a new batch after
/// `new_batch`: they start from the coarse propagation of the new batch, so J and ∇J are
/// bit for bit those of a new objective whose first (skipped) cycle does the same and which
/// runs 3 cycles in all, whatever the previous batch was; without `new_batch` the solves
/// start from the previous batch's states and give other values, with a larger residual.
#[test]
fn a_new_batch_starts_its_solves_from_its_own_coarse_propagation() {
    let one_shot = |levels: usize, iters: usize| {
        let o = Options {
            max_levels: levels,
            cfactor: vec![2],
            max_iter: iters,
            abs_tol: 0.0,
            skip: true,
            warm_restart: true,
            ..Options::default()
        };
        SolverSettings {
            forward: o.clone(),
            adjoint: o,
        }
    };
    let (a, b) = (
        case(
            Activation::Tanh,
            Opening::Activate,
            Loss::CrossEntropy,
            4,
            5,
        ),
        case(
            Activation::Tanh,
            Opening::Activate,
            Loss::CrossEntropy,
            4,
            6,
        ),
    );
    let theta = Mix(17).vec(a.net.num_params(), 0.7);
    for levels in [2, 3] {
        let mut fresh =
            Objective::new(b.net.clone(), &SerialComm, one_shot(levels, 3), None).unwrap();
        let mut g_want = vec![0.0; theta.len()];
        let want = fresh.objective_gradient(&theta, &b.x, &b.labels, &mut g_want);
        let mut got = Vec::new();
        for restart in [true, false] {
            let mut obj =
                Objective::new(a.net.clone(), &SerialComm, one_shot(levels, 2), None).unwrap();
            let mut g = vec![0.0; theta.len()];
            obj.objective_gradient(&theta, &a.x, &a.labels, &mut g);
            obj.objective_gradient(&theta, &a.x, &a.labels, &mut g);
            if restart {
                obj.new_batch();
            }
            let v = obj.objective_gradient(&theta, &b.x, &b.labels, &mut g);
            got.push((v, g));
        }
        let (v, g) = &got[0];
        assert_eq!(v, &want, "{levels} levels");
        assert_eq!(g, &g_want, "{levels} levels");
        let (w, gw) = &got[1];
        assert_ne!(gw, &g_want);
        assert!(
            v.fwd_res.unwrap() < w.fwd_res.unwrap(),
            "{levels} levels: {v:?} vs the warm start's {w:?}"
        );
    }
}

/// A small convolutional problem: 2-channel 5 × 4 images, 3 hidden channels, 3 × 3 kernels,
/// 8 layers, 4 classes.
fn conv_case(act: Activation, opening: Opening, readout: odenet::Readout, seed: u64) -> Case {
    let conv = odenet::ConvShape {
        in_channels: 2,
        channels: 3,
        height: 5,
        width: 4,
        kernel_h: 3,
        kernel_w: 3,
        readout,
        transition: None,
    };
    let shape = Shape {
        opening,
        ..Shape::convolutional(conv, 4, 8)
    };
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let net = Network::new(shape, act, 1.5, Loss::CrossEntropy, reg);
    let mut g = Mix(seed);
    let batch = 5;
    Case {
        net,
        x: g.vec(shape.input * batch, 1.0),
        labels: (0..batch).map(|j| (j * 3 + seed as usize) % 4).collect(),
    }
}

/// Convolutional ODE-nets run through the layer-parallel objective unchanged: one MGRIT level
/// equals the serial objective bit for bit (both read-outs, both openings), converged MGRIT
/// (coarse levels rediscretized) agrees within 1e-9, and spline controls pass finite
/// differences.
#[test]
fn convolutional_networks_equal_the_serial_objective() {
    let mut n = 0;
    for act in Activation::ALL {
        for opening in [Opening::Activate, Opening::Replicate] {
            for readout in [odenet::Readout::Flatten, odenet::Readout::GlobalAverage] {
                n += 1;
                let c = conv_case(act, opening, readout, 40 + n);
                let theta = Mix(50 + n).vec(c.net.num_params(), 0.5);
                let what = format!("{act} {opening:?} {readout:?}");
                let mut ws = Workspace::default();
                let mut g_serial = vec![0.0; theta.len()];
                let v_serial =
                    c.net
                        .objective_gradient(&theta, &c.x, &c.labels, &mut ws, &mut g_serial);
                assert!(
                    g_serial.iter().any(|&x| x != 0.0),
                    "{what}: zero gradient proves nothing"
                );
                let mut obj =
                    Objective::new(c.net.clone(), &SerialComm, settings(1), None).unwrap();
                let mut g = vec![0.0; theta.len()];
                let v = obj.objective_gradient(&theta, &c.x, &c.labels, &mut g);
                assert_eq!(
                    v.objective.to_bits(),
                    v_serial.objective.to_bits(),
                    "{what}: J"
                );
                assert_eq!(g, g_serial, "{what}: gradient");
                let (l, _) = obj.evaluate(&theta, &c.x, &c.labels);
                assert!((l - v_serial.loss).abs() <= 1e-14 * v_serial.loss.abs());
                for levels in [2, 3] {
                    let mut obj =
                        Objective::new(c.net.clone(), &SerialComm, settings(levels), None).unwrap();
                    let v = obj.objective_gradient(&theta, &c.x, &c.labels, &mut g);
                    assert!(
                        (v.objective - v_serial.objective).abs()
                            <= 1e-12 * v_serial.objective.abs()
                    );
                    let e = max_rel(&g, &g_serial);
                    assert!(e <= 1e-9, "{what} {levels} levels: gradient error {e:e}");
                }
            }
        }
        // Spline controls on the convolutional network: finite differences.
        let c = conv_case(act, Opening::Activate, odenet::Readout::GlobalAverage, 77);
        let basis =
            bspline::Basis::uniform(bspline::KnotKind::Clamped, 2, 4, c.net.final_time).unwrap();
        let pl = layer_parallel::spline_layout(&c.net, basis.count());
        let p = Mix(78).vec(pl.len, 0.5);
        let mut obj = Objective::new(c.net.clone(), &SerialComm, settings(1), Some(basis)).unwrap();
        let mut g = vec![0.0; p.len()];
        obj.objective_gradient(&p, &c.x, &c.labels, &mut g);
        let mut scratch = vec![0.0; p.len()];
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for i in (0..p.len()).step_by(5) {
            let h = 1e-6;
            let mut q = p.clone();
            q[i] += h;
            let jp = obj
                .objective_gradient(&q, &c.x, &c.labels, &mut scratch)
                .objective;
            q[i] -= 2.0 * h;
            let jm = obj
                .objective_gradient(&q, &c.x, &c.labels, &mut scratch)
                .objective;
            let fd = (jp - jm) / (2.0 * h);
            num += (fd - g[i]).powi(2);
            den += fd.powi(2);
        }
        assert!(den > 0.0, "{act}: zero spline gradient, inconclusive");
        let rel = (num / den).sqrt();
        assert!(rel < 1e-6, "{act}: spline conv relative FD error {rel:e}");
    }
}
