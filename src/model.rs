//! Builds the network and its initial parameters from a configuration and a data set.

use crate::config::{Config, NetworkKind};
use anyhow::{bail, Result};
use layer_parallel::SolverSettings;
use layerpar_data::rng::{generator, uniform};
use odenet::{ConvShape, Network, Regularization, Shape};

/// What the network needs to know of the data: features per example, outputs (classes, or
/// regression targets per example) and, for images, (channels, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataShape {
    pub input: usize,
    pub outputs: usize,
    pub image: Option<[usize; 3]>,
}

impl DataShape {
    /// The shape of a data set.
    pub fn of(data: &layerpar_data::Dataset) -> Self {
        DataShape {
            input: data.dim,
            outputs: data.outputs(),
            image: data.image.map(|i| [i.channels, i.height, i.width]),
        }
    }
}

/// The network for `config` on data of shape `data`.
pub fn build_network(config: &Config, data: DataShape) -> Result<Network> {
    let (input, classes) = (data.input, data.outputs);
    let n = &config.network;
    let opening = n.opening;
    if n.kind == NetworkKind::Conv {
        return build_conv_network(config, data);
    }
    if opening == odenet::Opening::Replicate && n.width < input {
        bail!(
            "config key `network.width` = {} is below the {input} input features, which network.opening = \"replicate\" needs",
            n.width
        );
    }
    if n.closing == odenet::Closing::Average && classes != 1 {
        bail!(
            "config key `network.closing` = \"average\" gives one output, but the data needs {classes} (classes or targets per example); use \"affine\""
        );
    }
    let shape = Shape {
        input,
        width: n.width,
        classes,
        layers: n.layers,
        opening,
        closing: n.closing,
        time_scale: n.learn_time_scale,
        conv: None,
    };
    Ok(network_of(config, shape))
}

/// The network's ODE blocks for `config` on data of shape `data`: the network of
/// [`build_network`] alone, or, with `network.blocks`, that network as block 0 (without its
/// classifier) followed by one network per listed block, each opening the last state of the
/// block before by its pooling and an activated 1×1 convolution (see [`odenet::Chain`]).
pub fn build_blocks(config: &Config, data: DataShape) -> Result<Vec<Network>> {
    let n = &config.network;
    let first = build_network(config, data)?;
    if n.blocks.is_empty() {
        return Ok(vec![first]);
    }
    if n.learn_time_scale {
        bail!("config key `network.learn_time_scale` = true needs a network of one ODE block; remove network.blocks or set it to false");
    }
    if n.opening == odenet::Opening::Replicate || n.closing == odenet::Closing::Average {
        bail!("a network of several ODE blocks (network.blocks) needs network.opening = \"activate\" and network.closing = \"affine\"");
    }
    let classes = first.shape().classes;
    let mut blocks = vec![first];
    for (i, b) in n.blocks.iter().enumerate() {
        let prev = blocks[i].shape().conv.expect("checked: convolutional");
        let pool = b.pooling(i + 1)?;
        let (height, width) = match pool {
            Some(_) => odenet::conv::pooled_size(prev.height, prev.width),
            None => (prev.height, prev.width),
        };
        if height == 0 || width == 0 {
            bail!(
                "config key `network.blocks[{}].pool` = \"{}\" pools the {}×{} images of the block before to nothing; use \"none\" or fewer pooled blocks",
                i + 1,
                b.pool,
                prev.height,
                prev.width
            );
        }
        let conv = ConvShape {
            in_channels: prev.channels,
            channels: if b.channels == 0 {
                prev.channels
            } else {
                b.channels
            },
            height,
            width,
            transition: Some(odenet::Transition {
                pool,
                in_height: prev.height,
                in_width: prev.width,
            }),
            ..prev
        };
        blocks.push(network_of(
            config,
            Shape::convolutional(conv, classes, b.layers),
        ));
    }
    // Only the last block classifies.
    let last = blocks.len() - 1;
    for block in &mut blocks[..last] {
        let mut shape = *block.shape();
        shape.classes = 0;
        *block = Network::new(
            shape,
            block.activation,
            block.final_time,
            block.loss,
            block.regularization,
        );
    }
    Ok(blocks)
}

/// A convolutional network (`network.kind = "conv"`) on the data's images.
fn build_conv_network(config: &Config, data: DataShape) -> Result<Network> {
    let n = &config.network;
    let Some([in_channels, height, width]) = data.image else {
        bail!(
            "config key `network.kind` = \"conv\" needs image data (data.kind = \"idx\" or \"cifar10\", or data.image_shape = [c, h, w] for CSV and HDF5 files), but data.kind = \"{}\" has none",
            config.data.kind
        );
    };
    if n.opening == odenet::Opening::Replicate && n.channels < in_channels {
        bail!(
            "config key `network.channels` = {} is below the images' {in_channels} channels, which network.opening = \"replicate\" needs",
            n.channels
        );
    }
    if n.closing == odenet::Closing::Average && data.outputs != 1 {
        bail!(
            "config key `network.closing` = \"average\" gives one output, but the data needs {} (classes or targets per example); use \"affine\"",
            data.outputs
        );
    }
    // 1-D data (images of width 1, as a spectrum of bands): k × 1 kernels.
    let kernel_w = if width == 1 { 1 } else { n.kernel };
    let conv = ConvShape {
        in_channels,
        channels: n.channels,
        height,
        width,
        kernel_h: n.kernel,
        kernel_w,
        readout: n.readout,
        transition: None,
    };
    let shape = Shape {
        opening: n.opening,
        closing: n.closing,
        time_scale: n.learn_time_scale,
        ..Shape::convolutional(conv, data.outputs, n.layers)
    };
    Ok(network_of(config, shape))
}

/// The network of `shape` with the configuration's activation, final time, loss and
/// regularization.
fn network_of(config: &Config, shape: Shape) -> Network {
    let n = &config.network;
    let o = &config.optimizer;
    Network::new(
        shape,
        n.activation,
        n.final_time,
        n.loss,
        Regularization {
            tikhonov: o.gamma_tik,
            ddt: o.gamma_ddt,
            classifier: o.gamma_class,
        },
    )
}

/// The optimizer's parameter vector's shape: the network itself for per-layer controls; for
/// spline controls the same network with M hidden "layers" (the coefficient sets).
pub fn parameter_network(config: &Config, net: &Network) -> Network {
    if !config.is_spline() {
        return net.clone();
    }
    let mut shape = *net.shape();
    shape.layers = config.controls.count;
    Network::new(
        shape,
        net.activation,
        net.final_time,
        net.loss,
        net.regularization,
    )
}

/// Initial parameters: weights uniform in [−s, s] with s = init_* / √fan_in, biases 0;
/// seeded. For spline controls the M coefficient sets are drawn like M layers.
pub fn initial_parameters(config: &Config, net: &Network) -> Vec<f64> {
    block_parameters(config, net, 0)
}

/// The initial parameters of a network of ODE blocks: each block's drawn as
/// [`initial_parameters`] does, block i > 0 from its own stream, one after another (block 0
/// alone: the same values as [`initial_parameters`]).
pub fn initial_chain_parameters(config: &Config, blocks: &[Network]) -> Vec<f64> {
    let mut theta = Vec::new();
    for (i, net) in blocks.iter().enumerate() {
        theta.extend(block_parameters(config, net, i as u64));
    }
    theta
}

/// [`initial_parameters`] of ODE block `block` (stream "init" + block).
fn block_parameters(config: &Config, net: &Network, block: u64) -> Vec<f64> {
    let pnet = parameter_network(config, net);
    let net = &pnet;
    let l = &net.layout;
    let sh = l.shape;
    let mut theta = vec![0.0; l.len];
    let mut g = generator(config.seed, 0x696e6974 + block); // "init"
    let mut fill = |range: std::ops::Range<usize>, scale: f64, g: &mut _| {
        for v in &mut theta[range] {
            *v = scale * (2.0 * uniform(g) - 1.0);
        }
    };
    let n = &config.network;
    let [fan_open, fan_hidden, fan_class] = sh.fan_in().map(|f| f as f64);
    fill(l.open_weight.clone(), n.init_open / fan_open.sqrt(), &mut g);
    for i in 0..sh.layers {
        fill(l.layer_weight(i), n.init_hidden / fan_hidden.sqrt(), &mut g);
    }
    fill(
        l.class_weight.clone(),
        n.init_class / fan_class.sqrt(),
        &mut g,
    );
    // The time scale starts at 1: the configured final time T.
    theta[l.scale.clone()].fill(1.0);
    theta
}

/// The per-layer controls of `net` from a parameter vector (spline coefficients evaluated at
/// t_n = n·h as training evaluates them; per-layer parameters returned as they are).
pub fn layer_parameters(config: &Config, net: &Network, params: &[f64]) -> Result<Vec<f64>> {
    let Some(basis) = config.spline_basis()? else {
        return Ok(params.to_vec());
    };
    let controls = layer_parallel::SplineControls::new(basis, net.layout.shape.layers);
    Ok(controls.global_model(net, params))
}

/// Hidden parameter sets of the optimizer's vector: N layers, or M spline coefficient sets.
pub fn hidden_sets(config: &Config, net: &Network) -> usize {
    parameter_network(config, net).layout.shape.layers
}

/// The MGRIT options of the forward and adjoint solves.
pub fn solver_settings(config: &Config) -> SolverSettings {
    let m = &config.mgrit;
    let base = mgrit::Options {
        max_levels: m.max_levels,
        cfactor: if m.cfactor_levels.is_empty() {
            vec![m.cfactor]
        } else {
            m.cfactor_levels.clone()
        },
        min_coarse: m.min_coarse,
        nrelax: if m.nrelax_levels.is_empty() {
            vec![m.nrelax]
        } else {
            m.nrelax_levels.clone()
        },
        c_weight: 1.0,
        max_iter: m.max_iter,
        abs_tol: m.tol,
        rel_tol: 0.0,
        fmg: m.fmg,
        skip: m.skip,
        warm_restart: m.warm_restart,
        compute_residual: true,
        reverse: false,
        verbosity: m.print_level,
    };
    SolverSettings {
        adjoint: mgrit::Options {
            max_iter: m.adjoint_max_iter,
            abs_tol: m.adjoint_tol,
            ..base.clone()
        },
        forward: base,
    }
}
