//! `layerpar eval --checkpoint FILE`: loss and accuracy of a checkpoint's parameters on the
//! training and validation data.

use super::agree;
use crate::parallel::Parallel;
use crate::train::evaluate;
use anyhow::{bail, Result};
use odenet::Workspace;
use std::path::Path;

pub fn run(par: &Parallel, checkpoint: &Path, set: &[String]) -> Result<()> {
    let setup = (|| {
        let file = checkpoint::read(checkpoint)?;
        // Overrides apply on top of the stored configuration; the network shape must stay.
        let origin = format!("the configuration stored in {}", checkpoint.display());
        let config = crate::config::load_str(&file.config, &origin, set)?;
        let (train, val) = crate::data::load(&config)?;
        let sh = file.shape;
        if train.dim != sh.input || train.classes != sh.classes {
            bail!(
                "the data has {} features and {} classes, the checkpoint's network {} and {}",
                train.dim,
                train.classes,
                sh.input,
                sh.classes
            );
        }
        let net = crate::model::build_network(&config, sh.input, sh.classes)?;
        if crate::checkpointing::net_shape(&net) != sh {
            bail!(
                "--set changed the network: the checkpoint has {} layers of width {}, the configuration {} of width {}",
                sh.layers,
                sh.width,
                net.layout.shape.layers,
                net.layout.shape.width
            );
        }
        Ok((file, net, train, val))
    })();
    let (file, net, train, val) = agree(par, setup)?;
    let mut ws = Workspace::default();
    let (tl, ta) = evaluate(&net, &file.params, &train, &mut ws);
    let (vl, va) = evaluate(&net, &file.params, &val, &mut ws);
    if par.is_root() {
        println!(
            "checkpoint {} (iteration {}, level {})",
            checkpoint.display(),
            file.iteration,
            file.level
        );
        println!(
            "train:      loss {tl:.6e}  accuracy {ta:.4}  ({} examples)",
            train.len()
        );
        println!(
            "validation: loss {vl:.6e}  accuracy {va:.4}  ({} examples)",
            val.len()
        );
    }
    Ok(())
}
