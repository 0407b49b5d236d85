//! Loads the training and validation sets that a configuration names.

use crate::config::{Config, DataKind};
use anyhow::{bail, Result};
use layerpar_data::{generate_peaks, generate_sine, read_csv, read_hdf5, Dataset};
use std::path::Path;

/// (training set, validation set) for the configuration.
pub fn load(config: &Config) -> Result<(Dataset, Dataset)> {
    load_data(config).map(|(t, v, _)| (t, v))
}

/// (training set, validation set, whether `seed` chose them: Peaks is generated from it, and
/// a file without a validation split is split by it).
pub fn load_data(config: &Config) -> Result<(Dataset, Dataset, bool)> {
    crate::limits::check_data(config)?;
    let d = &config.data;
    let mut seeded = matches!(d.kind, DataKind::Peaks | DataKind::Sine);
    let (train, val) = match d.kind {
        DataKind::Peaks => {
            let (t, v) = generate_peaks(d.train_size, d.val_size, config.seed);
            (t, Some(v))
        }
        DataKind::Sine => {
            let (t, v) = generate_sine(d.train_size, d.val_size, config.seed);
            (t, Some(v))
        }
        DataKind::Csv => read_csv(Path::new(&d.path))?,
        DataKind::Hdf5 => read_hdf5(Path::new(&d.path))?,
    };
    let (train, val) = match val {
        Some(v) => (train, v),
        None => {
            seeded = true;
            // Files are often sorted by class: shuffle before holding out the tail.
            let mut train = train;
            train.shuffle(&mut layerpar_data::rng::generator(
                config.seed,
                0x73706c6974,
            )); // "split"
            let hold = ((train.len() as f64) * d.val_fraction).round() as usize;
            if hold == 0 || hold >= train.len() {
                bail!(
                    "data file {} has {} examples and no validation split: too few to hold out data.val_fraction = {}",
                    d.path,
                    train.len(),
                    d.val_fraction
                );
            }
            train.split_tail(hold)
        }
    };
    if train.is_regression() {
        if config.network.loss != odenet::Loss::Mse {
            bail!(
                "the data has real-valued targets (regression): set config key `network.loss` = \"mse\", got \"{}\"",
                crate::config::Choice::name(config.network.loss)
            );
        }
    } else if train.classes < 2 {
        bail!(
            "the training data has {} class(es); at least 2 are needed",
            train.classes
        );
    }
    Ok((train, val, seeded))
}
