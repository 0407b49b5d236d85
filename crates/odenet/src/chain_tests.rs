//! Chains of ODE blocks and the transition opening: the opening's input adjoint and a whole
//! chain's gradient against central finite differences, a one-block chain against
//! [`Network`] bit for bit, and the checks of [`Chain::new`].

use crate::conv::Pool;
use crate::gradient_tests::{check_blocks, Mix};
use crate::*;

fn image(
    in_channels: usize,
    channels: usize,
    (height, width): (usize, usize),
    (kernel_h, kernel_w): (usize, usize),
    transition: Option<Transition>,
) -> ConvShape {
    ConvShape {
        in_channels,
        channels,
        height,
        width,
        kernel_h,
        kernel_w,
        readout: Readout::Flatten,
        transition,
    }
}

fn transition(pool: Option<Pool>, in_height: usize, in_width: usize) -> Option<Transition> {
    Some(Transition {
        pool,
        in_height,
        in_width,
    })
}

fn reg() -> Regularization {
    Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    }
}

fn block(conv: ConvShape, classes: usize, layers: usize, act: Activation, t: f64) -> Network {
    Network::new(
        Shape::convolutional(conv, classes, layers),
        act,
        t,
        Loss::CrossEntropy,
        reg(),
    )
}

fn random(rng: &mut Mix, n: usize, scale: f64) -> Vec<f64> {
    (0..n).map(|_| scale * rng.next()).collect()
}

/// ⟨Λ_0, U_0(X)⟩ differentiated in X by `opening_input_adjoint`, against finite differences.
fn check_opening_adjoint(what: &str, net: &Network, seed: u64) {
    let sh = *net.shape();
    let batch = 3;
    let mut rng = Mix(seed);
    let open = random(&mut rng, net.layout.opening().len(), 1.0);
    let x = random(&mut rng, sh.input * batch, 2.0);
    let lam0 = random(&mut rng, sh.width * batch, 1.0);
    let value = |x: &[f64]| {
        let (mut u, mut pre) = (vec![0.0; sh.width * batch], vec![0.0; sh.width * batch]);
        net.open(&open, x, &mut u, &mut pre);
        u.iter().zip(&lam0).map(|(a, b)| a * b).sum::<f64>()
    };
    let (mut u, mut pre) = (vec![0.0; sh.width * batch], vec![0.0; sh.width * batch]);
    net.open(&open, &x, &mut u, &mut pre);
    let mut s = vec![0.0; sh.width * batch];
    let mut g = vec![0.0; open.len()];
    net.opening_gradient(&x, &pre, &lam0, &mut s, &mut g);
    if sh.opening == Opening::Replicate {
        s.copy_from_slice(&lam0);
    }
    // Overwritten, not added to.
    let mut dx = vec![1e3; x.len()];
    net.opening_input_adjoint(&open, &x, &s, &mut dx);
    let blocks = [("dX".to_string(), 0..x.len())];
    check_blocks(what, &x, &dx, &blocks, value);
}

#[test]
fn opening_input_adjoint_matches_finite_differences() {
    let cases = [
        (
            "average 6×4 → 3×2",
            image(3, 2, (3, 2), (3, 3), transition(Some(Pool::Average), 6, 4)),
        ),
        (
            "max 6×4 → 3×2",
            image(3, 2, (3, 2), (3, 3), transition(Some(Pool::Max), 6, 4)),
        ),
        (
            "no pooling 3×2",
            image(3, 4, (3, 2), (3, 3), transition(None, 3, 2)),
        ),
        (
            "average 7×5 → 3×2",
            image(2, 3, (3, 2), (3, 3), transition(Some(Pool::Average), 7, 5)),
        ),
        (
            "max 7×5 → 3×2",
            image(2, 3, (3, 2), (3, 3), transition(Some(Pool::Max), 7, 5)),
        ),
        (
            "1-D average 9×1 → 4×1",
            image(2, 3, (4, 1), (3, 1), transition(Some(Pool::Average), 9, 1)),
        ),
        (
            "1-D max 9×1 → 4×1",
            image(2, 3, (4, 1), (3, 1), transition(Some(Pool::Max), 9, 1)),
        ),
        (
            "first block 5×4, 3×3 opening",
            image(2, 3, (5, 4), (3, 3), None),
        ),
    ];
    for (k, (name, conv)) in cases.into_iter().enumerate() {
        conv.check().unwrap();
        for act in Activation::ALL {
            let net = block(conv, 0, 1, act, 1.0);
            check_opening_adjoint(&format!("{name} {act:?}"), &net, 11 + k as u64);
        }
    }
    for (opening, width) in [(Opening::Activate, 4), (Opening::Replicate, 5)] {
        let shape = Shape {
            opening,
            ..Shape::dense(3, width, 2, 1)
        };
        let net = Network::new(shape, Activation::Tanh, 1.0, Loss::CrossEntropy, reg());
        check_opening_adjoint(&format!("dense {opening:?}"), &net, 5);
    }
    let net = Network::new(
        Shape {
            opening: Opening::Replicate,
            ..Shape::convolutional(image(2, 3, (4, 3), (3, 3), None), 2, 1)
        },
        Activation::Tanh,
        1.0,
        Loss::CrossEntropy,
        reg(),
    );
    check_opening_adjoint("convolutional replicate", &net, 6);
}

/// Three blocks of images: 2 → 3 channels of 6×6 (3×3 opening, 2 layers); 2×2 average
/// pooling and 1×1 to 4 channels of 3×3 (2 layers); 2×2 max pooling (odd: 3×3 → 1×1) and
/// 1×1 to 2 channels (1 layer) with the classifier.
fn images_chain(act: Activation, readout: Readout) -> Chain {
    let last = ConvShape {
        readout,
        ..image(4, 2, (1, 1), (3, 3), transition(Some(Pool::Max), 3, 3))
    };
    Chain::new(vec![
        block(image(2, 3, (6, 6), (3, 3), None), 0, 2, act, 1.0),
        block(
            image(3, 4, (3, 3), (3, 3), transition(Some(Pool::Average), 6, 6)),
            0,
            2,
            act,
            0.7,
        ),
        block(last, 3, 1, act, 0.5),
    ])
    .unwrap()
}

/// Three 1-D blocks: 1 → 2 channels of 8×1 (3×1 kernels, 2 layers); 2×1 max pooling to 3
/// channels of 4×1 (1 layer); no pooling, 3 → 2 channels of 4×1 (2 layers) with the
/// classifier.
fn one_d_chain(act: Activation, readout: Readout) -> Chain {
    let last = ConvShape {
        readout,
        ..image(3, 2, (4, 1), (3, 1), transition(None, 4, 1))
    };
    Chain::new(vec![
        block(image(1, 2, (8, 1), (3, 1), None), 0, 2, act, 1.2),
        block(
            image(2, 3, (4, 1), (3, 1), transition(Some(Pool::Max), 8, 1)),
            0,
            1,
            act,
            0.8,
        ),
        block(last, 3, 2, act, 1.0),
    ])
    .unwrap()
}

fn chain_data(chain: &Chain, seed: u64, batch: usize) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    let mut rng = Mix(seed);
    let theta = random(&mut rng, chain.num_params(), 1.0);
    let x = random(&mut rng, chain.blocks[0].shape().input * batch, 2.0);
    let labels = (0..batch)
        .map(|j| j % chain.last().shape().classes)
        .collect();
    (theta, x, labels)
}

fn check_chain(what: &str, chain: &Chain, seed: u64) {
    let (theta, x, labels) = chain_data(chain, seed, 4);
    let mut ws = ChainWorkspace::default();
    let mut grad = vec![f64::NAN; chain.num_params()];
    let val = chain.objective_gradient(&theta, &x, &labels, &mut ws, &mut grad);
    let (lsum, correct) = chain.evaluate(&theta, &x, &labels, &mut ws);
    let eval_loss = lsum / labels.len() as f64;
    assert!(
        (eval_loss - val.loss).abs() < 1e-14 * (1.0 + val.loss.abs()),
        "{what}: evaluate's loss {eval_loss} vs objective_gradient's {}",
        val.loss
    );
    assert_eq!(correct, val.correct, "{what}");
    assert_eq!(val.count, labels.len());
    let reg = chain.regularization(&theta, None);
    assert!(reg > 0.0);
    assert_eq!(val.objective, val.loss + reg, "{what}");

    let mut blocks = Vec::new();
    for (i, net) in chain.blocks.iter().enumerate() {
        let off = chain.block_range(i).start;
        let at = |r: std::ops::Range<usize>| r.start + off..r.end + off;
        let l = &net.layout;
        blocks.push((format!("block {i} opening K_in"), at(l.open_weight.clone())));
        blocks.push((format!("block {i} opening b_in"), at(l.open_bias.clone())));
        for n in 0..l.shape.layers {
            blocks.push((format!("block {i} layer {n} K_n"), at(l.layer_weight(n))));
            blocks.push((format!("block {i} layer {n} b_n"), at(l.layer_bias(n))));
        }
        blocks.push((format!("block {i} classifier"), at(l.classifier())));
    }
    let mut g = vec![0.0; chain.num_params()];
    check_blocks(what, &theta, &grad, &blocks, |t| {
        chain
            .objective_gradient(t, &x, &labels, &mut ws, &mut g)
            .objective
    });
}

#[test]
fn chain_gradient_matches_finite_differences() {
    for act in Activation::ALL {
        for readout in [Readout::Flatten, Readout::GlobalAverage] {
            let seed = 3 + act as u64;
            check_chain(
                &format!("images {act:?} {readout}"),
                &images_chain(act, readout),
                seed,
            );
            check_chain(
                &format!("1-D {act:?} {readout}"),
                &one_d_chain(act, readout),
                seed,
            );
        }
    }
}

/// A chain of one block is the network: the same J and gradient, bit for bit.
#[test]
fn one_block_chain_is_the_network() {
    let conv = ConvShape {
        readout: Readout::GlobalAverage,
        ..image(2, 3, (5, 4), (3, 3), None)
    };
    let nets = [
        block(conv, 3, 3, Activation::Tanh, 1.5),
        Network::new(
            Shape {
                time_scale: true,
                ..Shape::convolutional(conv, 3, 2)
            },
            Activation::SmoothRelu,
            1.0,
            Loss::Mse,
            reg(),
        ),
        Network::new(
            Shape::dense(3, 4, 2, 4),
            Activation::Relu,
            1.0,
            Loss::CrossEntropy,
            reg(),
        ),
    ];
    for net in nets {
        let chain = Chain::new(vec![net.clone()]).unwrap();
        assert_eq!(chain.num_params(), net.num_params());
        assert_eq!(chain.block_range(0), 0..net.num_params());
        let (theta, x, labels) = chain_data(&chain, 9, 5);
        let (mut g_net, mut g_chain) = (vec![0.0; theta.len()], vec![1.0; theta.len()]);
        let mut ws = Workspace::default();
        let mut cws = ChainWorkspace::default();
        let a = net.objective_gradient(&theta, &x, &labels, &mut ws, &mut g_net);
        let b = chain.objective_gradient(&theta, &x, &labels, &mut cws, &mut g_chain);
        assert_eq!(a.objective.to_bits(), b.objective.to_bits());
        assert_eq!(a.loss.to_bits(), b.loss.to_bits());
        assert_eq!(a.correct, b.correct);
        for (p, q) in g_net.iter().zip(&g_chain) {
            assert_eq!(p.to_bits(), q.to_bits());
        }
        assert_eq!(ws.logits(), cws.logits());
        let (e_net, e_chain) = (
            net.evaluate(&theta, &x, &labels, &mut ws),
            chain.evaluate(&theta, &x, &labels, &mut cws),
        );
        assert_eq!(e_net.0.to_bits(), e_chain.0.to_bits());
        assert_eq!(e_net.1, e_chain.1);
        let rn = net.regularization(&theta, None);
        assert_eq!(rn.to_bits(), chain.regularization(&theta, None).to_bits());
    }
}

#[test]
fn chain_new_refuses_mismatched_blocks() {
    let good = images_chain(Activation::Tanh, Readout::Flatten).blocks;
    let conv = |b: &Network| b.shape().conv.unwrap();
    let with_conv = |b: &Network, c: ConvShape| {
        let sh = b.shape();
        Network {
            layout: Layout::new(Shape {
                conv: Some(c),
                input: c.input_len(),
                width: c.channels * c.pixels(),
                ..*sh
            }),
            ..b.clone()
        }
    };
    let refuse = |blocks: Vec<Network>, needles: &[&str]| {
        let e = Chain::new(blocks).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        for n in needles {
            assert!(e.contains(n), "{e:?} should contain {n:?}");
        }
    };
    refuse(vec![], &["at least one block"]);

    let mut b = good.clone();
    b[1] = with_conv(
        &b[1],
        ConvShape {
            in_channels: 5,
            ..conv(&b[1])
        },
    );
    refuse(
        b,
        &[
            "block 1",
            "5 channels of 6×6",
            "block 0 ends in 3 channels of 6×6",
        ],
    );

    let mut b = good.clone();
    b[1] = with_conv(
        &b[1],
        ConvShape {
            height: 2,
            width: 2,
            ..conv(&b[1])
        },
    );
    refuse(b, &["block 1", "of 6×6 inputs gives 3×3", "block's 2×2"]);

    let mut b = good.clone();
    let c1 = conv(&b[1]);
    b[1] = with_conv(
        &b[1],
        ConvShape {
            transition: transition(None, 6, 6),
            ..c1
        },
    );
    refuse(b, &["block 1", "6×6 without pooling", "3×3"]);

    let mut b = good.clone();
    b[0].layout = Layout::new(Shape {
        classes: 3,
        ..*b[0].shape()
    });
    refuse(b, &["block 0", "inner block has a classifier of 3 classes"]);

    let mut b = good.clone();
    b[2].layout = Layout::new(Shape {
        classes: 0,
        ..*b[2].shape()
    });
    refuse(b, &["block 2", "no classifier"]);

    let mut b = good.clone();
    b[0] = with_conv(
        &b[0],
        ConvShape {
            transition: transition(None, 6, 6),
            ..conv(&b[0])
        },
    );
    refuse(b, &["block 0", "first block has a transition"]);

    let mut b = good.clone();
    b[1] = with_conv(
        &b[1],
        ConvShape {
            transition: None,
            ..conv(&b[1])
        },
    );
    refuse(b, &["block 1", "with a transition"]);

    let mut b = good.clone();
    b[2].layout = Layout::new(Shape {
        time_scale: true,
        ..*b[2].shape()
    });
    refuse(b, &["block 2", "time scale"]);

    let mut b = good.clone();
    b[1].layout = Layout::new(Shape {
        opening: Opening::Replicate,
        ..*b[1].shape()
    });
    refuse(b, &["block 1", "activate opening"]);

    let mut b = good;
    b[1] = Network::new(
        Shape::dense(3, 4, 0, 1),
        Activation::Tanh,
        1.0,
        Loss::CrossEntropy,
        reg(),
    );
    refuse(b, &["block 1", "convolutional with a transition"]);
}

/// The transition's sizes: the layout, the fan-in, the text, the check; and an inner block
/// (classes = 0) has an empty classifier and no classifier term.
#[test]
fn transition_shapes_and_inner_blocks() {
    let conv = ConvShape {
        readout: Readout::Flatten,
        ..image(
            8,
            16,
            (7, 7),
            (3, 3),
            transition(Some(Pool::Average), 14, 14),
        )
    };
    conv.check().unwrap();
    assert_eq!(
        conv.to_string(),
        "8 → 16 channels of 7×7 after 2×2 average pooling of 14×14, 1×1 opening, \
         3×3 kernels, flatten read-out"
    );
    let one_d = ConvShape {
        readout: Readout::GlobalAverage,
        ..image(2, 3, (4, 1), (3, 1), transition(Some(Pool::Max), 9, 1))
    };
    assert_eq!(
        one_d.to_string(),
        "2 → 3 channels of 4×1 after 2×1 max pooling of 9×1, 1×1 opening, 3×1 kernels, \
         global_average read-out"
    );
    let same = image(2, 3, (4, 1), (3, 1), transition(None, 4, 1));
    assert_eq!(
        same.to_string(),
        "2 → 3 channels of 4×1 without pooling, 1×1 opening, 3×1 kernels, flatten read-out"
    );
    assert_eq!(
        image(2, 3, (4, 1), (3, 1), None).to_string(),
        "2 → 3 channels of 4×1, 3×1 kernels, flatten read-out"
    );
    let e = ConvShape { height: 6, ..conv }.check().unwrap_err();
    assert!(
        e.contains("14×14") && e.contains("7×7") && e.contains("6×7"),
        "{e}"
    );

    let sh = Shape::convolutional(conv, 0, 2);
    assert_eq!(sh.input, 8 * 14 * 14);
    assert_eq!(sh.width, 16 * 49);
    assert_eq!(sh.fan_in(), [8, 16 * 9, 16 * 49]);
    let l = Layout::new(sh);
    assert_eq!(l.open_weight, 0..8 * 16);
    assert_eq!(l.open_bias, 128..144);
    assert_eq!(l.layer_weight(0), 144..144 + 16 * 16 * 9);
    assert!(l.classifier().is_empty());
    assert_eq!(l.classifier().start, l.hidden().end);
    assert_eq!(l.len, l.hidden().end);

    let net = block(conv, 0, 2, Activation::Tanh, 1.0);
    let mut rng = Mix(1);
    let theta = random(&mut rng, net.num_params(), 1.0);
    let terms = net.regularization_terms(&theta, None);
    assert_eq!(terms.len(), 4);
    assert_eq!(terms[3], 0.0);
}
