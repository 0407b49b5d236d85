//! Networks of several ODE blocks through the layer-parallel [`Chain`] on one in-process rank
//! (`SerialComm`) against odenet's serial [`odenet::Chain`]: one MGRIT level gives the serial
//! J and gradient bit for bit (pooling average, max and none; both read-outs; every
//! activation), converged MGRIT agrees within 1e-9, spline controls pass finite differences,
//! and a chain of one block is that block's objective. (Several ranks: tests/gradient_mpi.rs
//! at the workspace root, through `layerpar-check --chain`.)

mod common;
use common::{max_rel, settings, Mix};
use layer_parallel::Chain;
use mgrit::SerialComm;
use odenet::{
    Activation, ConvShape, Loss, Network, Pool, Readout, Regularization, Shape, Transition,
};

/// A chain of three blocks on 2-channel 6 × 5 images, 4 classes: 3 channels (5 layers), then
/// `pools[0]` and a 1×1 change to 4 channels (4 layers), then `pools[1]` and a change to 2
/// channels (3 layers), the read-out and the classifier.
fn blocks(act: Activation, readout: Readout, pools: [Option<Pool>; 2]) -> Vec<Network> {
    let reg = Regularization {
        tikhonov: 1e-2,
        ddt: 1e-3,
        classifier: 2e-2,
    };
    let mut conv = ConvShape {
        in_channels: 2,
        channels: 3,
        height: 6,
        width: 5,
        kernel_h: 3,
        kernel_w: 3,
        readout,
        transition: None,
    };
    let mut nets = vec![Network::new(
        Shape::convolutional(conv, 0, 5),
        act,
        1.5,
        Loss::CrossEntropy,
        reg,
    )];
    for (i, (pool, channels, layers)) in
        [(pools[0], 4, 4), (pools[1], 2, 3)].into_iter().enumerate()
    {
        let (h, w) = match pool {
            Some(_) => odenet::conv::pooled_size(conv.height, conv.width),
            None => (conv.height, conv.width),
        };
        conv = ConvShape {
            in_channels: conv.channels,
            channels,
            height: h,
            width: w,
            transition: Some(Transition {
                pool,
                in_height: conv.height,
                in_width: conv.width,
            }),
            ..conv
        };
        let classes = if i == 1 { 4 } else { 0 };
        nets.push(Network::new(
            Shape::convolutional(conv, classes, layers),
            act,
            1.0,
            Loss::CrossEntropy,
            reg,
        ));
    }
    nets
}

const POOLS: [[Option<Pool>; 2]; 3] = [
    [Some(Pool::Average), Some(Pool::Max)],
    [None, Some(Pool::Average)],
    [Some(Pool::Max), None],
];

#[test]
fn a_chain_on_one_level_equals_the_serial_chain_bit_for_bit_and_converged_mgrit_within_1e9() {
    let mut n = 0;
    for act in Activation::ALL {
        for readout in [Readout::Flatten, Readout::GlobalAverage] {
            for pools in POOLS {
                n += 1;
                let what = format!("{act} {readout:?} {pools:?}");
                let nets = blocks(act, readout, pools);
                let serial = odenet::Chain::new(nets.clone()).unwrap();
                let batch = 5;
                let x = Mix(n).vec(nets[0].shape().input * batch, 1.0);
                let labels: Vec<usize> = (0..batch).map(|j| (j * 3 + n as usize) % 4).collect();
                let theta = Mix(100 + n).vec(serial.num_params(), 0.5);
                let mut ws = odenet::ChainWorkspace::default();
                let mut g_serial = vec![0.0; theta.len()];
                let v_serial =
                    serial.objective_gradient(&theta, &x, &labels, &mut ws, &mut g_serial);
                for i in 0..3 {
                    let r = serial.block_range(i);
                    assert!(
                        g_serial[r].iter().any(|&v| v != 0.0),
                        "{what}: block {i}'s gradient is zero, which proves nothing"
                    );
                }
                let bases = vec![None; nets.len()];
                let mut chain = Chain::new(nets.clone(), &SerialComm, settings(1), bases).unwrap();
                assert!(chain.is_chain());
                assert_eq!(chain.global_len(), theta.len());
                let mut g = vec![0.0; theta.len()];
                let v = chain.objective_gradient(&theta, &x, &labels, &mut g);
                assert_eq!(
                    v.objective.to_bits(),
                    v_serial.objective.to_bits(),
                    "{what}: J"
                );
                assert_eq!(v.correct, v_serial.correct, "{what}");
                assert_eq!(g, g_serial, "{what}: gradient");
                let (l, acc) = chain.evaluate(&theta, &x, &labels);
                // (l/B against the objective's Σ·(1/B): equal to rounding.)
                assert!(
                    (l - v_serial.loss).abs() <= 1e-14 * v_serial.loss.abs(),
                    "{what}: evaluate"
                );
                assert_eq!(acc, v_serial.correct as f64 / batch as f64);
                let r = chain.regularization(&theta);
                assert_eq!(r.to_bits(), serial.regularization(&theta, None).to_bits());
                if n % 3 == 0 {
                    for levels in [2, 3] {
                        let bases = vec![None; nets.len()];
                        let mut mg =
                            Chain::new(nets.clone(), &SerialComm, settings(levels), bases).unwrap();
                        let v = mg.objective_gradient(&theta, &x, &labels, &mut g);
                        let ej =
                            (v.objective - v_serial.objective).abs() / v_serial.objective.abs();
                        assert!(ej <= 1e-12, "{what} {levels} levels: J error {ej:e}");
                        let e = max_rel(&g, &g_serial);
                        assert!(e <= 1e-9, "{what} {levels} levels: gradient error {e:e}");
                    }
                }
            }
        }
    }
}

/// Spline controls in every block (4 coefficient sets each): the chain's gradient in p against
/// central finite differences of its J.
#[test]
fn spline_controls_in_every_block_pass_finite_differences() {
    for act in [Activation::Tanh, Activation::SmoothRelu] {
        let nets = blocks(act, Readout::Flatten, POOLS[0]);
        let bases: Vec<_> = nets
            .iter()
            .map(|n| {
                Some(
                    bspline::Basis::uniform(bspline::KnotKind::Clamped, 2, 4, n.final_time)
                        .unwrap(),
                )
            })
            .collect();
        let mut chain = Chain::new(nets.clone(), &SerialComm, settings(1), bases).unwrap();
        let len = chain.local_len();
        let p = Mix(7).vec(len, 0.5);
        let batch = 4;
        let x = Mix(8).vec(nets[0].shape().input * batch, 1.0);
        let labels = vec![0usize, 3, 1, 2];
        let mut g = vec![0.0; len];
        chain.objective_gradient(&p, &x, &labels, &mut g);
        let mut dummy = vec![0.0; len];
        let mut worst = 0.0f64;
        let mut checked = 0;
        for i in (0..len).step_by(len / 40 + 1) {
            let h = 1e-5;
            let (mut pp, mut pm) = (p.clone(), p.clone());
            pp[i] += h;
            pm[i] -= h;
            let jp = chain
                .objective_gradient(&pp, &x, &labels, &mut dummy)
                .objective;
            let jm = chain
                .objective_gradient(&pm, &x, &labels, &mut dummy)
                .objective;
            let fd = (jp - jm) / (2.0 * h);
            if g[i].abs() > 1e-6 {
                checked += 1;
            }
            worst = worst.max((fd - g[i]).abs() / g[i].abs().max(1e-3));
        }
        assert!(
            checked >= 10,
            "{act}: only {checked} nonzero gradient entries checked"
        );
        assert!(worst < 1e-6, "{act}: finite differences off by {worst:e}");
    }
}

/// A chain of one block is that block's objective: the same bits.
#[test]
fn a_chain_of_one_block_is_its_objective() {
    let nets = blocks(Activation::Tanh, Readout::GlobalAverage, POOLS[0]);
    let mut net = nets[0].clone();
    let mut shape = *net.shape();
    shape.classes = 4;
    net = Network::new(
        shape,
        net.activation,
        net.final_time,
        net.loss,
        net.regularization,
    );
    let theta = Mix(3).vec(net.num_params(), 0.5);
    let x = Mix(4).vec(net.shape().input * 3, 1.0);
    let labels = vec![1usize, 0, 3];
    let mut obj =
        layer_parallel::Objective::new(net.clone(), &SerialComm, settings(2), None).unwrap();
    let mut chain = Chain::new(vec![net], &SerialComm, settings(2), vec![None]).unwrap();
    assert!(!chain.is_chain());
    let (mut g1, mut g2) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let a = obj.objective_gradient(&theta, &x, &labels, &mut g1);
    let b = chain.objective_gradient(&theta, &x, &labels, &mut g2);
    assert_eq!(a, b);
    assert_eq!(g1, g2);
    assert_eq!(chain.extract(&chain.gather(&theta)), theta);
}

/// Blocks that do not fit together are refused with a message that names the block.
#[test]
fn blocks_that_do_not_fit_together_are_refused() {
    let mut nets = blocks(Activation::Tanh, Readout::Flatten, POOLS[0]);
    let mut shape = *nets[1].shape();
    let mut conv = shape.conv.unwrap();
    conv.in_channels = 5;
    shape.conv = Some(conv);
    shape.input = 5 * 6 * 5;
    nets[1] = Network::new(
        shape,
        nets[1].activation,
        1.0,
        nets[1].loss,
        nets[1].regularization,
    );
    let e = Chain::new(nets, &SerialComm, settings(1), vec![None, None, None])
        .err()
        .expect("refused");
    assert!(e.0.contains("channel"), "{e}");
}
