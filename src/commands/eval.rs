//! `layerpar eval --checkpoint FILE`: loss and accuracy of trained parameters.

use super::agree;
use crate::parallel::Parallel;
use crate::train::evaluate;
use anyhow::{bail, Result};
use odenet::Workspace;
use std::path::Path;

pub fn run(par: &Parallel, checkpoint: &Path, set: &[String]) -> Result<()> {
    let setup = (|| {
        let file = crate::params_file::read(checkpoint)?;
        // Overrides apply on top of the stored configuration; the network shape must stay.
        let origin = format!("the configuration stored in {}", checkpoint.display());
        let config = crate::config::load_str(&file.config.to_toml(), &origin, set)?;
        let (train, val) = crate::data::load(&config)?;
        if train.dim != file.input_dim || train.classes != file.classes {
            bail!(
                "the data has {} features and {} classes, the checkpoint's network {} and {}",
                train.dim,
                train.classes,
                file.input_dim,
                file.classes
            );
        }
        let net = crate::model::build_network(&config, file.input_dim, file.classes)?;
        if net.num_params() != file.theta.len() {
            bail!(
                "--set changed the network shape: the checkpoint has {} parameters, the network {}",
                file.theta.len(),
                net.num_params()
            );
        }
        Ok((file, net, train, val))
    })();
    let (file, net, train, val) = agree(par, setup)?;
    let mut ws = Workspace::default();
    let (tl, ta) = evaluate(&net, &file.theta, &train, &mut ws);
    let (vl, va) = evaluate(&net, &file.theta, &val, &mut ws);
    if par.is_root() {
        println!(
            "checkpoint {} (iteration {})",
            checkpoint.display(),
            file.iteration
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
