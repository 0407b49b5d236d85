//! The gradient of J against central finite differences, for every parameter block, every
//! activation, both losses and both opening layers.

use crate::*;

/// SplitMix64: a small deterministic generator for test data.
pub(crate) struct Mix(pub(crate) u64);
impl Mix {
    pub(crate) fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

/// One model variant of the FD check.
#[derive(Clone, Copy, Debug)]
struct Variant {
    act: Activation,
    loss: Loss,
    opening: Opening,
    closing: Closing,
    time_scale: bool,
    /// Real-valued targets (MSE against them) instead of class labels.
    regression: bool,
    /// A convolutional network on these images instead of a dense one.
    conv: Option<ConvShape>,
}

impl Variant {
    fn classify(act: Activation, loss: Loss, opening: Opening) -> Self {
        Variant {
            act,
            loss,
            opening,
            closing: Closing::Affine,
            time_scale: false,
            regression: false,
            conv: None,
        }
    }
}

/// The batch's targets: labels, or real values (classes per example).
enum Y {
    Labels(Vec<usize>),
    Values(Vec<f64>, usize),
}

impl Y {
    fn targets(&self) -> Targets<'_> {
        match self {
            Y::Labels(l) => Targets::Labels(l),
            Y::Values(v, dim) => Targets::Values {
                values: v,
                dim: *dim,
            },
        }
    }
}

fn setup(v: Variant, width: usize) -> (Network, Vec<f64>, Vec<f64>, Y) {
    let outputs = if v.closing == Closing::Average { 1 } else { 3 };
    let base = match v.conv {
        None => Shape::dense(3, width, outputs, 5),
        Some(c) => Shape::convolutional(c, outputs, 3),
    };
    let shape = Shape {
        opening: v.opening,
        closing: v.closing,
        time_scale: v.time_scale,
        ..base
    };
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let net = Network::new(shape, v.act, 1.5, v.loss, reg);
    let mut rng =
        Mix(7 + v.act as u64 * 31 + v.loss as u64 * 7 + v.opening as u64 + 3 * v.closing as u64);
    let mut theta: Vec<f64> = (0..net.num_params()).map(|_| rng.next()).collect();
    if v.time_scale {
        theta[net.layout.scale.start] = 1.3;
    }
    let batch = 6;
    let x: Vec<f64> = (0..shape.input * batch).map(|_| 2.0 * rng.next()).collect();
    let y = if v.regression {
        Y::Values((0..outputs * batch).map(|_| rng.next()).collect(), outputs)
    } else {
        Y::Labels((0..batch).map(|j| j % shape.classes).collect())
    };
    (net, theta, x, y)
}

fn check(act: Activation, loss: Loss, opening: Opening) {
    check_variant(Variant::classify(act, loss, opening));
}

fn check_variant(v: Variant) {
    if v.conv.is_some() {
        return check_width(v, 0);
    }
    for width in [4, 5] {
        check_width(v, width);
    }
}

fn check_width(v: Variant, width: usize) {
    let (net, theta, x, y) = setup(v, width);
    let mut ws = Workspace::default();
    let mut grad = vec![0.0; net.num_params()];
    let val = net.objective_gradient(&theta, &x, y.targets(), &mut ws, &mut grad);

    // The objective must agree with the forward-only evaluation.
    let (lsum, correct) = net.evaluate(&theta, &x, y.targets(), &mut ws);
    let eval_loss = lsum / y.targets().len() as f64;
    assert!(
        (eval_loss - val.loss).abs() < 1e-14 * (1.0 + val.loss.abs()),
        "{v:?} width {width}: evaluate's loss {eval_loss} vs objective_gradient's {}",
        val.loss
    );
    assert_eq!(correct, val.correct);

    let objective = |t: &[f64], ws: &mut Workspace| {
        let mut g = vec![0.0; t.len()];
        net.objective_gradient(t, &x, y.targets(), ws, &mut g)
            .objective
    };
    let l = &net.layout;
    let mut blocks = vec![
        ("classifier W_c", l.class_weight.clone()),
        ("classifier b_c", l.class_bias.clone()),
        ("time scale s", l.scale.clone()),
        ("opening W_in", l.open_weight.clone()),
        ("opening b_in", l.open_bias.clone()),
    ];
    for n in 0..l.shape.layers {
        blocks.push(("hidden K_n", l.layer_weight(n)));
        blocks.push(("hidden b_n", l.layer_bias(n)));
    }
    let eps = 1e-6;
    for (name, range) in blocks {
        if range.is_empty() {
            continue;
        }
        let mut num = 0.0;
        let mut den = 0.0;
        for i in range.clone() {
            let mut tp = theta.clone();
            let mut tm = theta.clone();
            tp[i] += eps;
            tm[i] -= eps;
            let fd = (objective(&tp, &mut ws) - objective(&tm, &mut ws)) / (2.0 * eps);
            num += (fd - grad[i]).powi(2);
            den += fd.powi(2);
        }
        let rel = (num / den.max(1e-300)).sqrt();
        assert!(
            den > 0.0,
            "{v:?} width {width} {name}: zero gradient, inconclusive"
        );
        assert!(
            rel < 1e-6,
            "{v:?} width {width} {name} {range:?}: relative error {rel:e}"
        );
    }
}

#[test]
fn gradient_matches_finite_differences_regression_average_closing_time_scale() {
    for act in Activation::ALL {
        for (opening, closing) in [
            (Opening::Replicate, Closing::Average),
            (Opening::Activate, Closing::Affine),
            (Opening::Activate, Closing::Average),
        ] {
            for time_scale in [false, true] {
                check_variant(Variant {
                    act,
                    loss: Loss::Mse,
                    opening,
                    closing,
                    time_scale,
                    regression: true,
                    conv: None,
                });
            }
        }
        // The time scale with classification too.
        check_variant(Variant {
            time_scale: true,
            ..Variant::classify(act, Loss::CrossEntropy, Opening::Activate)
        });
    }
}

/// A learnable time scale s runs the ODE to s·T: the same output as T' = s·T with s = 1.
#[test]
fn time_scale_stretches_the_final_time() {
    let v = Variant {
        time_scale: true,
        ..Variant::classify(Activation::Tanh, Loss::Mse, Opening::Activate)
    };
    let (net, mut theta, x, y) = setup(v, 4);
    theta[net.layout.scale.start] = 2.5;
    let mut fixed = net.clone();
    fixed.layout = Layout::new(Shape {
        time_scale: false,
        ..net.layout.shape
    });
    fixed.final_time = 2.5 * net.final_time;
    let mut ws = Workspace::default();
    net.evaluate(&theta, &x, y.targets(), &mut ws);
    let scaled = ws.logits().to_vec();
    fixed.evaluate(&theta[..theta.len() - 1], &x, y.targets(), &mut ws);
    for (a, b) in scaled.iter().zip(ws.logits()) {
        assert!((a - b).abs() < 1e-14 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

#[test]
fn gradient_matches_finite_differences_every_activation() {
    for act in Activation::ALL {
        check(act, Loss::CrossEntropy, Opening::Activate);
    }
}

#[test]
fn gradient_matches_finite_differences_mse_and_replicate() {
    for act in Activation::ALL {
        check(act, Loss::Mse, Opening::Activate);
        check(act, Loss::CrossEntropy, Opening::Replicate);
    }
}

/// Convolutional networks: the conv opening (c_in → c), the hidden convolutions, both
/// read-outs, the replicate opening, the 1-D case (k × 1 kernels) and a learnable time scale.
#[test]
fn gradient_matches_finite_differences_convolutional() {
    let image = ConvShape {
        in_channels: 2,
        channels: 3,
        height: 5,
        width: 4,
        kernel_h: 3,
        kernel_w: 3,
        readout: Readout::Flatten,
        transition: None,
    };
    let one_d = ConvShape {
        in_channels: 1,
        channels: 2,
        height: 9,
        width: 1,
        kernel_h: 5,
        kernel_w: 1,
        readout: Readout::Flatten,
        transition: None,
    };
    for act in Activation::ALL {
        for readout in [Readout::Flatten, Readout::GlobalAverage] {
            for conv in [image, one_d] {
                let conv = Some(ConvShape { readout, ..conv });
                check_variant(Variant {
                    conv,
                    ..Variant::classify(act, Loss::CrossEntropy, Opening::Activate)
                });
                check_variant(Variant {
                    conv,
                    time_scale: true,
                    ..Variant::classify(act, Loss::Mse, Opening::Replicate)
                });
            }
        }
        check_variant(Variant {
            conv: Some(ConvShape {
                kernel_h: 5,
                kernel_w: 5,
                ..image
            }),
            loss: Loss::Mse,
            closing: Closing::Average,
            regression: true,
            ..Variant::classify(act, Loss::Mse, Opening::Activate)
        });
    }
}

#[test]
fn more_layers_with_same_controls_converge_to_the_ode() {
    // Forward Euler is first order: halving h roughly halves the change of the output.
    let shape = |n| Shape::dense(2, 3, 2, n);
    let mut rng = Mix(3);
    let base = Network::new(
        shape(1),
        Activation::Tanh,
        1.0,
        Loss::Mse,
        Regularization::default(),
    );
    let open: Vec<f64> = (0..base.layout.opening().len())
        .map(|_| rng.next())
        .collect();
    let layer: Vec<f64> = (0..base.layout.layer_len).map(|_| rng.next()).collect();
    let class: Vec<f64> = (0..base.layout.classifier().len())
        .map(|_| rng.next())
        .collect();
    let x = vec![0.3, -0.4];
    let mut outs = Vec::new();
    for n in [8, 16, 32, 64] {
        let net = Network::new(
            shape(n),
            Activation::Tanh,
            1.0,
            Loss::Mse,
            Regularization::default(),
        );
        let mut theta = open.clone();
        for _ in 0..n {
            theta.extend_from_slice(&layer);
        }
        theta.extend_from_slice(&class);
        let mut ws = Workspace::default();
        net.evaluate(&theta, &x, &[0], &mut ws);
        outs.push(ws.logits().to_vec());
    }
    let diff = |a: &Vec<f64>, b: &Vec<f64>| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let d1 = diff(&outs[0], &outs[1]);
    let d2 = diff(&outs[1], &outs[2]);
    let d3 = diff(&outs[2], &outs[3]);
    for ratio in [d1 / d2, d2 / d3] {
        assert!((1.7..2.3).contains(&ratio), "ratio {ratio}");
    }
}

/// Central finite differences (step 1e-6) of `f` at `theta` in every entry of each named
/// block, against `grad`: asserts a relative error (‖fd − grad‖ / ‖fd‖ over the block) below
/// 1e-6 and a nonzero fd for every nonempty block. `what` names the case in the messages.
pub(crate) fn check_blocks(
    what: &str,
    theta: &[f64],
    grad: &[f64],
    blocks: &[(String, std::ops::Range<usize>)],
    mut f: impl FnMut(&[f64]) -> f64,
) {
    let eps = 1e-6;
    for (name, range) in blocks {
        if range.is_empty() {
            continue;
        }
        let (mut num, mut den) = (0.0, 0.0);
        for i in range.clone() {
            let mut tp = theta.to_vec();
            let mut tm = theta.to_vec();
            tp[i] += eps;
            tm[i] -= eps;
            let fd = (f(&tp) - f(&tm)) / (2.0 * eps);
            num += (fd - grad[i]).powi(2);
            den += fd.powi(2);
        }
        assert!(den > 0.0, "{what} {name}: zero gradient, inconclusive");
        let rel = (num / den).sqrt();
        assert!(
            rel < 1e-6,
            "{what} {name} {range:?}: relative error {rel:e}"
        );
    }
}

/// The hidden layers' regularization over a range of layers (the grouped chains and the
/// one-pass gradient) gives the bits of `layer_regularization` called layer by layer, for
/// ranges that start and end anywhere (a rank's owned layers), groups of eight and their
/// remainders, with and without the ddt term, with and without a gradient.
#[test]
fn hidden_regularization_has_the_bits_of_the_per_layer_terms() {
    let mut checked = 0;
    for layers in [1, 2, 7, 8, 9, 17, 37] {
        for ddt in [1e-3, 0.0] {
            let reg = Regularization {
                tikhonov: 1e-2,
                ddt,
                classifier: 2e-2,
            };
            let net = Network::new(
                Shape::dense(3, 5, 3, layers),
                Activation::Tanh,
                1.5,
                Loss::CrossEntropy,
                reg,
            );
            let l = &net.layout;
            let mut rng = Mix(layers as u64 * 13 + (ddt == 0.0) as u64);
            let theta: Vec<f64> = (0..net.num_params()).map(|_| rng.next()).collect();
            let g0: Vec<f64> = (0..net.num_params()).map(|_| rng.next()).collect();
            for (lo, hi) in [
                (0, layers),
                (0, layers / 2),
                (layers / 3, layers),
                (1.min(layers), layers),
            ] {
                // Reference: layer by layer.
                let mut want_g = g0.clone();
                let want: Vec<f64> = (lo..hi)
                    .map(|n| {
                        let prev = (n > 0).then(|| &theta[l.layer(n - 1)]);
                        let next = (n + 1 < layers).then(|| &theta[l.layer(n + 1)]);
                        net.layer_regularization(
                            prev,
                            &theta[l.layer(n)],
                            next,
                            Some(&mut want_g[l.layer(n)]),
                        )
                    })
                    .collect();
                let mut got_g = g0.clone();
                let mut got = Vec::new();
                net.hidden_regularization(
                    lo..hi,
                    |n| &theta[l.layer(n)],
                    Some(&mut got_g),
                    |n| l.layer(n),
                    &mut got,
                );
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&got),
                    bits(&want),
                    "terms, {layers} layers, {lo}..{hi}"
                );
                assert_eq!(
                    bits(&got_g),
                    bits(&want_g),
                    "gradient, {layers} layers, {lo}..{hi}"
                );
                let mut values_only = Vec::new();
                net.hidden_regularization(
                    lo..hi,
                    |n| &theta[l.layer(n)],
                    None,
                    |n| l.layer(n),
                    &mut values_only,
                );
                assert_eq!(bits(&values_only), bits(&want), "terms without a gradient");
                if ddt != 0.0 && hi > lo && want.iter().any(|&v| v != 0.0) {
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} non-trivial cases");
}
