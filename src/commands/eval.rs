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
        if train.dim != sh.input || train.outputs() != sh.classes {
            bail!(
                "the data has {} features and {} outputs (classes or targets), the checkpoint's network {} and {}",
                train.dim,
                train.outputs(),
                sh.input,
                sh.classes
            );
        }
        let data = crate::model::DataShape {
            input: sh.input,
            outputs: sh.classes,
            image: sh.conv.map(|c| [c.in_channels, c.height, c.width]),
        };
        crate::limits::check_network(
            &config,
            data,
            crate::train::CHUNK.min(train.len().max(val.len())),
            1,
        )?;
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
            return Ok((file, params, net, train, val, Some(note)));
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
        Ok((file, theta, net, train, val, None))
    })();
    let (file, theta, net, train, val, note) = agree(par, setup)?;
    let mut ws = Workspace::default();
    let (tl, ta) = evaluate(&net, &theta, &train, &mut ws);
    let (vl, va) = evaluate(&net, &theta, &val, &mut ws);
    if par.is_root() {
        println!(
            "checkpoint {} (iteration {}, level {}), evaluated with {} hidden layers",
            checkpoint.display(),
            file.iteration,
            file.level,
            net.layout.shape.layers
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
        if net.layout.shape.time_scale {
            println!(
                "time scale {:.6}: final time {:.6}",
                net.time_scale(&theta),
                net.time_scale(&theta) * net.final_time
            );
        }
    }
    Ok(())
}
