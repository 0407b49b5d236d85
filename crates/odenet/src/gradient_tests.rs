//! The gradient of J against central finite differences, for every parameter block, every
//! activation, both losses and both opening layers.

use crate::*;

/// SplitMix64: a small deterministic generator for test data.
struct Mix(u64);
impl Mix {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
}

fn setup(
    act: Activation,
    loss: Loss,
    opening: Opening,
    width: usize,
) -> (Network, Vec<f64>, Vec<f64>, Vec<usize>) {
    let shape = Shape {
        input: 3,
        width,
        classes: 3,
        layers: 5,
        opening,
    };
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let net = Network::new(shape, act, 1.5, loss, reg);
    let mut rng = Mix(7 + act as u64 * 31 + loss as u64 * 7 + opening as u64);
    let theta: Vec<f64> = (0..net.num_params()).map(|_| rng.next()).collect();
    let batch = 6;
    let x: Vec<f64> = (0..shape.input * batch).map(|_| 2.0 * rng.next()).collect();
    let labels: Vec<usize> = (0..batch).map(|j| j % shape.classes).collect();
    (net, theta, x, labels)
}

fn check(act: Activation, loss: Loss, opening: Opening) {
    for width in [4, 5] {
        check_width(act, loss, opening, width);
    }
}

fn check_width(act: Activation, loss: Loss, opening: Opening, width: usize) {
    let (net, theta, x, labels) = setup(act, loss, opening, width);
    let mut ws = Workspace::default();
    let mut grad = vec![0.0; net.num_params()];
    let val = net.objective_gradient(&theta, &x, &labels, &mut ws, &mut grad);

    // The objective must agree with the forward-only evaluation.
    let (lsum, correct) = net.evaluate(&theta, &x, &labels, &mut ws);
    assert!((lsum / labels.len() as f64 - val.loss).abs() < 1e-14);
    assert_eq!(correct, val.correct);

    let objective = |t: &[f64], ws: &mut Workspace| {
        let mut g = vec![0.0; t.len()];
        net.objective_gradient(t, &x, &labels, ws, &mut g).objective
    };
    let l = &net.layout;
    let mut blocks = vec![
        ("classifier W_c", l.class_weight.clone()),
        ("classifier b_c", l.class_bias.clone()),
    ];
    if opening == Opening::Activate {
        blocks.push(("opening W_in", l.open_weight.clone()));
        blocks.push(("opening b_in", l.open_bias.clone()));
    }
    for n in 0..l.shape.layers {
        blocks.push(("hidden K_n", l.layer_weight(n)));
        blocks.push(("hidden b_n", l.layer_bias(n)));
    }
    let eps = 1e-6;
    for (name, range) in blocks {
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
            rel < 1e-6,
            "{act:?} {loss:?} {opening:?} width {width} {name} {range:?}: relative error {rel:e}"
        );
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

#[test]
fn more_layers_with_same_controls_converge_to_the_ode() {
    // Forward Euler is first order: halving h roughly halves the change of the output.
    let shape = |n| Shape {
        input: 2,
        width: 3,
        classes: 2,
        layers: n,
        opening: Opening::Activate,
    };
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
