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

#[cfg(test)]
mod tests {
    use super::*;
    use layerpar_data::{write_csv, write_idx_images, write_idx_labels};

    fn config(sets: &[String]) -> Config {
        crate::config::load(None, sets).unwrap()
    }

    fn err(sets: &[String]) -> String {
        let e = format!("{:#}", load(&config(sets)).unwrap_err());
        assert!(!e.contains('\n'), "{e}");
        e
    }

    #[test]
    fn csv_features_take_an_image_shape_from_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("img.csv");
        let t = Dataset::labelled((0..24).map(f64::from).collect(), vec![0, 1, 0, 1], 6, 2);
        let v = Dataset::labelled((0..6).map(f64::from).collect(), vec![1], 6, 2);
        write_csv(&p, &[], &t, &v).unwrap();
        let base = vec!["data.kind=csv".to_string(), format!("data.path={:?}", p)];
        // Without the key: no image, values as read (normalize "auto" is "none" for csv).
        let (t0, v0) = load(&config(&base)).unwrap();
        assert_eq!((t0.image, &t0.features), (None, &t.features));
        assert_eq!(v0, v);
        let mut sets = base.clone();
        sets.push("data.image_shape=[2, 1, 3]".into());
        sets.push("data.normalize=unit".into());
        let (t1, v1) = load(&config(&sets)).unwrap();
        let shape = Some(ImageShape {
            channels: 2,
            height: 1,
            width: 3,
        });
        assert_eq!((t1.image, v1.image), (shape, shape));
        assert_eq!(t1.features[5], 5.0 / 255.0);
        let mut sets = base;
        sets.push("data.image_shape=[1, 28, 28]".into());
        let e = err(&sets);
        assert!(
            e.contains("config key `data.image_shape` = [1, 28, 28]: image shape 1 × 28 × 28 has 784 values, but the examples have 6 features"),
            "{e}"
        );
    }

    #[test]
    fn idx_and_cifar10_configurations_load_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let shape = ImageShape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let pixels: Vec<u8> = (0..40).map(|i| (i * 6) as u8).collect();
        write_idx_images(&d.join("ti"), &pixels, shape).unwrap();
        write_idx_labels(&d.join("tl"), &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
        let path = |f: &str| format!("{:?}", d.join(f));
        let idx = vec![
            "data.kind=idx".to_string(),
            format!("data.train_images={}", path("ti")),
            format!("data.train_labels={}", path("tl")),
        ];
        let (t, v) = load(&config(&idx)).unwrap();
        assert_eq!((t.len(), v.len()), (9, 1));
        assert_eq!(t.image, Some(shape));
        assert!(t.features.iter().all(|&x| (0.0..=1.0).contains(&x)));
        let mut both = idx.clone();
        both.push(format!("data.test_images={}", path("ti")));
        both.push(format!("data.test_labels={}", path("tl")));
        both.push("data.max_val=4".into());
        both.push("data.normalize=none".into());
        let (t, v) = load(&config(&both)).unwrap();
        assert_eq!((t.len(), v.len()), (10, 4));
        assert_eq!(t.features[39], 234.0);
        let mut wrong = idx.clone();
        wrong.push("data.image_shape=[4, 1, 1]".into());
        let e = err(&wrong);
        assert!(e.contains("holds 1 × 2 × 2 images"), "{e}");
        let mut missing = idx;
        missing[2] = format!("data.train_labels={}", path("nope"));
        let e = err(&missing);
        assert!(
            e.contains("cannot read data file") && e.contains("nope"),
            "{e}"
        );
        // CIFAR-10: a directory with one training batch and the test batch.
        let record = |l: u8| {
            let mut r = vec![l];
            r.extend(std::iter::repeat_n(255u8, 3072));
            r
        };
        std::fs::write(d.join("data_batch_1.bin"), [record(1), record(2)].concat()).unwrap();
        std::fs::write(d.join("test_batch.bin"), record(3)).unwrap();
        let cifar = vec![
            "data.kind=cifar10".to_string(),
            format!("data.path={:?}", d),
        ];
        let (t, v) = load(&config(&cifar)).unwrap();
        assert_eq!(
            (t.labels.as_slice(), v.labels.as_slice()),
            (&[1, 2][..], &[3][..])
        );
        assert_eq!((t.dim, t.classes), (3072, 10));
        assert!(t.features.iter().all(|&x| x == 1.0));
    }
}
