//! `layerpar eval --checkpoint FILE`: loss and accuracy of a checkpoint's parameters on the
//! training and validation data, with `--set network.layers=K` at another depth (spline
//! coefficients evaluated at the K layers; per-layer controls interpolated in time).

use super::agree;
use crate::config::Choice;
use crate::parallel::Parallel;
use crate::train::evaluate;
use anyhow::{bail, Result};
use checkpoint::NetShape;
use odenet::Workspace;
use std::path::Path;

pub fn run(par: &Parallel, checkpoint: &Path, set: &[String]) -> Result<()> {
    let setup = (|| {
        let file = checkpoint::read(checkpoint)?;
        // Overrides apply on top of the stored configuration; the network shape must stay.
        let origin = format!("the configuration stored in {}", checkpoint.display());
        // The stored configuration is the run's; a nested level's network has its own depth
        // (and spline coefficient count): take them from the file unless --set says otherwise.
        let mut sets = vec![format!("network.layers={}", file.shape.layers)];
        if file.shape.hidden_sets != file.shape.layers {
            sets.push(format!("controls.count={}", file.shape.hidden_sets));
        }
        sets.extend(set.iter().cloned());
        let config = crate::config::load_str(&file.config, &origin, &sets)?;
        let (train, val) = crate::data::load(&config)?;
        let sh = file.shape;
        // The outputs are the last ODE block's (a chain's earlier blocks have none).
        let classes = file.blocks.last().map_or(sh.classes, |b| b.classes);
        if train.dim != sh.input || train.outputs() != classes {
            bail!(
                "the data has {} features and {} outputs (classes or targets), the checkpoint's network {} and {}",
                train.dim,
                train.outputs(),
                sh.input,
                classes
            );
        }
        let data = crate::model::DataShape {
            input: sh.input,
            outputs: classes,
            image: sh.conv.map(|c| [c.in_channels, c.height, c.width]),
        };
        crate::limits::check_network(
            &config,
            data,
            crate::train::CHUNK.min(train.len().max(val.len())),
            1,
        )?;
        if file.blocks.is_empty() && !config.network.blocks.is_empty() {
            bail!(
                "--set changed the network: the checkpoint has 1 ODE block, the configuration {} (network.blocks)",
                config.network.blocks.len() + 1
            );
        }
        if !file.blocks.is_empty() {
            let (chain, theta) = chain_parameters(&file, &config, data)?;
            return Ok((file, Model::Chain(chain), theta, train, val, None));
        }
        let net = crate::model::build_network(&config, data)?;
        let sets = crate::model::hidden_sets(&config, &net);
        let mut want = crate::checkpointing::net_shape(&net, sets);
        // Spline controls run with any number of layers: N is free.
        if config.is_spline() {
            want.layers = sh.layers;
        }
        // Per-layer controls at another depth are interpolated in time, as --init-from and
        // nested iteration carry them (nested.interp).
        let depth = want.layers;
        let other_depth = !config.is_spline()
            && sh.hidden_sets == sh.layers
            && depth != sh.layers
            && NetShape {
                layers: sh.layers,
                hidden_sets: sh.hidden_sets,
                ..want
            } == sh;
        if other_depth {
            let interp = config.interp();
            let params =
                crate::checkpointing::transfer(&file.params, sh, &net, sets, false, interp)?;
            let note = format!(
                "per-layer controls interpolated in time from {} to {depth} hidden layers (nested.interp = \"{}\")",
                sh.layers,
                interp.name()
            );
            return Ok((
                file,
                Model::Net(Box::new(net)),
                params,
                train,
                val,
                Some(note),
            ));
        }
        if want != sh {
            bail!(
                "--set changed the network: the checkpoint has {} layers of width {} ({} hidden sets), the configuration {} of width {} ({})",
                sh.layers,
                sh.width,
                sh.hidden_sets,
                net.layout.shape.layers,
                net.layout.shape.width,
                sets
            );
        }
        let theta = crate::model::layer_parameters(&config, &net, &file.params)?;
        Ok((file, Model::Net(Box::new(net)), theta, train, val, None))
    })();
    let (file, model, theta, train, val, note) = agree(par, setup)?;
    let ((tl, ta), (vl, va)) = match &model {
        Model::Net(net) => {
            let mut ws = Workspace::default();
            let t = evaluate(net, &theta, &train, &mut ws);
            (t, evaluate(net, &theta, &val, &mut ws))
        }
        Model::Chain(chain) => {
            let mut ws = odenet::ChainWorkspace::default();
            let t = evaluate_chain(chain, &theta, &train, &mut ws);
            (t, evaluate_chain(chain, &theta, &val, &mut ws))
        }
    };
    if par.is_root() {
        let layers: Vec<String> = match &model {
            Model::Net(net) => vec![net.layout.shape.layers.to_string()],
            Model::Chain(c) => c
                .blocks
                .iter()
                .map(|b| b.shape().layers.to_string())
                .collect(),
        };
        println!(
            "checkpoint {} (iteration {}, level {}), evaluated with {} hidden layers{}",
            checkpoint.display(),
            file.iteration,
            file.level,
            layers.join(" + "),
            if layers.len() > 1 {
                format!(" ({} ODE blocks)", layers.len())
            } else {
                String::new()
            }
        );
        if let Some(note) = note {
            println!("{note}");
        }
        for (name, set, loss, acc) in [
            ("train:     ", &train, tl, ta),
            ("validation:", &val, vl, va),
        ] {
            let metric = match crate::train::ValidationMetrics::new(set).regression(loss) {
                (Some(rmse), Some(r2)) => format!("rmse {rmse:.6e}  r2 {r2:.6}"),
                (Some(rmse), None) => format!("rmse {rmse:.6e}"),
                _ => format!("accuracy {acc:.4}"),
            };
            println!("{name} loss {loss:.6e}  {metric}  ({} examples)", set.len());
        }
        if let Model::Net(net) = &model {
            if net.layout.shape.time_scale {
                println!(
                    "time scale {:.6}: final time {:.6}",
                    net.time_scale(&theta),
                    net.time_scale(&theta) * net.final_time
                );
            }
        }
    }
    Ok(())
}

/// What a checkpoint is evaluated with: one network, or a chain of ODE blocks.
enum Model {
    Net(Box<odenet::Network>),
    Chain(odenet::Chain),
}

/// The chain of a checkpoint with several ODE blocks and its per-layer controls (spline
/// coefficients evaluated at each block's layers). The configured blocks must be the
/// checkpoint's: a chain is evaluated at its own depth.
fn chain_parameters(
    file: &checkpoint::Checkpoint,
    config: &crate::config::Config,
    data: crate::model::DataShape,
) -> Result<(odenet::Chain, Vec<f64>)> {
    let nets = crate::model::build_blocks(config, data)?;
    let shapes: Vec<&NetShape> = std::iter::once(&file.shape).chain(&file.blocks).collect();
    if nets.len() != shapes.len() {
        bail!(
            "--set changed the network: the checkpoint has {} ODE blocks, the configuration {}",
            shapes.len(),
            nets.len()
        );
    }
    let mut theta = Vec::new();
    let mut at = 0;
    for (i, (net, have)) in nets.iter().zip(&shapes).enumerate() {
        let sets = crate::model::hidden_sets(config, net);
        let want = crate::checkpointing::net_shape(net, sets);
        if want != **have {
            bail!(
                "--set changed the network: ODE block {} of the checkpoint has {}; a network of several blocks is evaluated at its own depth",
                i + 1,
                crate::checkpointing::shape_differences(have, &want).join(", ")
            );
        }
        let len = crate::model::parameter_network(config, net).num_params();
        let params = &file.params[at..at + len];
        theta.extend(crate::model::layer_parameters(config, net, params)?);
        at += len;
    }
    let chain = odenet::Chain::new(nets).map_err(anyhow::Error::msg)?;
    Ok((chain, theta))
}

/// (mean loss, accuracy) of a chain's θ on a data set, by serial sweeps over chunks.
fn evaluate_chain(
    chain: &odenet::Chain,
    theta: &[f64],
    data: &layerpar_data::Dataset,
    ws: &mut odenet::ChainWorkspace,
) -> (f64, f64) {
    let (mut loss, mut correct) = (0.0, 0);
    for (x, y) in data.chunks(crate::train::CHUNK) {
        let (l, c) = chain.evaluate(theta, x, y, ws);
        loss += l;
        correct += c;
    }
    let n = data.len().max(1) as f64;
    (loss / n, correct as f64 / n)
}
