//! Loads the training and validation sets that a configuration names.

use crate::config::{Config, DataKind, Normalize};
use anyhow::{bail, Result};
use layerpar_data::{
    generate_peaks, generate_sine, normalize, read_cifar10, read_csv, read_hdf5, read_idx, Dataset,
    ImageShape, Normalization,
};
use std::path::Path;

/// (training set, validation set) for the configuration.
pub fn load(config: &Config) -> Result<(Dataset, Dataset)> {
    load_data(config).map(|(t, v, _)| (t, v))
}

/// The normalization `data.normalize` means for the configured data kind ("auto": "unit" for
/// the image files idx and cifar10, none for every other kind).
pub fn normalization(config: &Config) -> Normalization {
    match (config.data.normalize, config.data.kind) {
        (Normalize::Auto, DataKind::Idx | DataKind::Cifar10) => Normalization::Unit,
        (Normalize::Auto | Normalize::None, _) => Normalization::None,
        (Normalize::Unit, _) => Normalization::Unit,
        (Normalize::Standard, _) => Normalization::Standard,
    }
}

/// (training set, validation set, whether `seed` chose them: Peaks is generated from it, and
/// a file without a validation split is split by it).
pub fn load_data(config: &Config) -> Result<(Dataset, Dataset, bool)> {
    crate::limits::check_data(config)?;
    let d = &config.data;
    let mut seeded = matches!(d.kind, DataKind::Peaks | DataKind::Sine);
    // What the messages call the data.
    let source = match d.kind {
        DataKind::Idx => format!("IDX file {}", d.train_images),
        DataKind::Cifar10 => format!("CIFAR-10 directory {}", d.path),
        _ => format!("data file {}", d.path),
    };
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
        DataKind::Idx => {
            let t = read_idx(Path::new(&d.train_images), Path::new(&d.train_labels))?;
            let v = if d.test_images.is_empty() {
                None
            } else {
                Some(read_idx(
                    Path::new(&d.test_images),
                    Path::new(&d.test_labels),
                )?)
            };
            (t, v)
        }
        DataKind::Cifar10 => {
            let (t, v) = read_cifar10(Path::new(&d.path))?;
            (t, Some(v))
        }
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
                    "{source} has {} examples and no validation split: too few to hold out data.val_fraction = {}",
                    train.len(),
                    d.val_fraction
                );
            }
            train.split_tail(hold)
        }
    };
    let (mut train, mut val) = (train, val);
    if !matches!(d.kind, DataKind::Peaks | DataKind::Sine) {
        // Size caps of files: the first examples (0 = all).
        for (set, max) in [(&mut train, d.max_train), (&mut val, d.max_val)] {
            if max > 0 && max < set.len() {
                let tail = set.len() - max;
                *set = std::mem::take(set).split_tail(tail).0;
            }
        }
    }
    if let [channels, height, width] = d.image_shape[..] {
        let shape = ImageShape {
            channels,
            height,
            width,
        };
        if let Some(own) = train.image.filter(|&own| own != shape) {
            if matches!(d.kind, DataKind::Idx | DataKind::Cifar10) {
                bail!(
                    "config key `data.image_shape` = {:?}: the {source} holds {own} images (leave the key empty for {} data)",
                    d.image_shape,
                    d.kind
                );
            }
        }
        let fit = |set: Dataset| {
            set.with_image(Some(shape)).map_err(|e| {
                anyhow::anyhow!(
                    "config key `data.image_shape` = {:?}: {e} ({source})",
                    d.image_shape
                )
            })
        };
        train = fit(train)?;
        val = fit(val)?;
    }
    normalize(&mut train, &mut val, normalization(config));
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
