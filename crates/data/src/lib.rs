//! # layerpar-data — data sets for layerpar
//!
//! A [`Dataset`] is a column-major matrix of features (d × n, one example per column) with a
//! class label per example (classification) or m real-valued targets per example
//! (regression). Sources: the synthetic Peaks and sine problems generated in code, user files
//! in HDF5 or CSV, and image files: IDX (MNIST, Fashion-MNIST) and CIFAR-10 binary batches
//! ([`images`]). Image data carries its [`ImageShape`]. [`Batcher`] draws shuffled
//! mini-batches, reshuffled every epoch.

pub mod batch;
pub mod images;
pub mod io;
pub mod peaks;
pub mod rng;
pub mod sine;

pub use batch::Batcher;
pub use images::{
    normalize, read_cifar10, read_cifar10_batch, read_idx, read_idx_images, read_idx_labels,
    write_idx_images, write_idx_labels, Normalization, NormalizeStats, CIFAR10_CLASSES,
    IDX_CLASSES,
};
pub use io::{read_csv, read_hdf5, write_csv, write_hdf5};
pub use peaks::{generate_peaks, peaks_value, PeaksClasses};
pub use sine::generate_sine;

use std::path::PathBuf;

/// The shape of an image example: `channels` × `height` × `width` values, stored channel by
/// channel, each channel row by row: value (c, y, x) of an example is its feature
/// `(c·height + y)·width + x` (\[channel\]\[row\]\[col\], row-major).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    /// Values per image, channels · height · width (saturating, so a hostile shape cannot
    /// overflow).
    pub fn len(&self) -> usize {
        self.channels
            .saturating_mul(self.height)
            .saturating_mul(self.width)
    }

    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per channel, height · width.
    pub fn pixels(&self) -> usize {
        self.height.saturating_mul(self.width)
    }
}

impl std::fmt::Display for ImageShape {
    /// `C × H × W`, as messages print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} × {} × {}", self.channels, self.height, self.width)
    }
}

/// A data set: features d × n (column-major) and, per example, a label in 0..classes
/// (classification) or `target_dim` real values (regression). Exactly one of `labels` and
/// `targets` is non-empty (unless the set has no examples).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Dataset {
    /// Features of example j at `features[j·dim .. (j+1)·dim]`.
    pub features: Vec<f64>,
    /// Class labels (classification; empty for regression).
    pub labels: Vec<usize>,
    /// Targets of example j at `targets[j·target_dim .. (j+1)·target_dim]` (regression;
    /// empty for classification).
    pub targets: Vec<f64>,
    /// Features per example, d.
    pub dim: usize,
    /// Number of classes C; every label is below it (0 for regression).
    pub classes: usize,
    /// Targets per example m (0 for classification).
    pub target_dim: usize,
    /// Image data: the shape of an example, with channels · height · width = `dim` (its
    /// features stored as [`ImageShape`] says). None for data without an image structure.
    pub image: Option<ImageShape>,
}

impl Dataset {
    /// A classification set.
    pub fn labelled(features: Vec<f64>, labels: Vec<usize>, dim: usize, classes: usize) -> Self {
        Dataset {
            features,
            labels,
            targets: Vec::new(),
            dim,
            classes,
            target_dim: 0,
            image: None,
        }
    }

    /// A regression set with `target_dim` targets per example.
    pub fn regression(
        features: Vec<f64>,
        targets: Vec<f64>,
        dim: usize,
        target_dim: usize,
    ) -> Self {
        Dataset {
            features,
            labels: Vec::new(),
            targets,
            dim,
            classes: 0,
            target_dim,
            image: None,
        }
    }

    /// The same data with image shape `shape` (None: no image structure). Fails, saying
    /// why, unless channels · height · width is the number of features.
    pub fn with_image(mut self, shape: Option<ImageShape>) -> Result<Self, String> {
        if let Some(s) = shape {
            if s.len() != self.dim || s.is_empty() {
                return Err(format!(
                    "image shape {s} has {} values, but the examples have {} features",
                    s.len(),
                    self.dim
                ));
            }
        }
        self.image = shape;
        Ok(self)
    }

    /// Whether the examples carry real-valued targets.
    pub fn is_regression(&self) -> bool {
        self.target_dim > 0
    }

    /// Outputs the network needs: the number of classes, or of targets per example.
    pub fn outputs(&self) -> usize {
        if self.is_regression() {
            self.target_dim
        } else {
            self.classes
        }
    }

    /// Number of examples n.
    pub fn len(&self) -> usize {
        if self.is_regression() {
            self.targets.len() / self.target_dim
        } else {
            self.labels.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Features of example j.
    pub fn example(&self, j: usize) -> &[f64] {
        &self.features[j * self.dim..(j + 1) * self.dim]
    }

    /// Targets of example j (regression).
    pub fn target(&self, j: usize) -> &[f64] {
        &self.targets[j * self.target_dim..(j + 1) * self.target_dim]
    }

    /// What the network's outputs are compared with.
    pub fn y(&self) -> odenet::Targets<'_> {
        if self.is_regression() {
            odenet::Targets::Values {
                values: &self.targets,
                dim: self.target_dim,
            }
        } else {
            odenet::Targets::Labels(&self.labels)
        }
    }

    /// The examples in consecutive pieces of at most `size`: (features, targets) of each.
    pub fn chunks(&self, size: usize) -> impl Iterator<Item = (&[f64], odenet::Targets<'_>)> {
        let n = self.len();
        (0..n).step_by(size.max(1)).map(move |start| {
            let end = (start + size).min(n);
            let x = &self.features[start * self.dim..end * self.dim];
            let y = if self.is_regression() {
                odenet::Targets::Values {
                    values: &self.targets[start * self.target_dim..end * self.target_dim],
                    dim: self.target_dim,
                }
            } else {
                odenet::Targets::Labels(&self.labels[start..end])
            };
            (x, y)
        })
    }

    /// Copies the examples `idx` into `batch` (which keeps its allocations).
    pub fn gather(&self, idx: &[usize], batch: &mut Dataset) {
        batch.features.clear();
        batch.labels.clear();
        batch.targets.clear();
        batch.dim = self.dim;
        batch.classes = self.classes;
        batch.target_dim = self.target_dim;
        batch.image = self.image;
        for &j in idx {
            batch.features.extend_from_slice(self.example(j));
            if self.is_regression() {
                batch.targets.extend_from_slice(self.target(j));
            } else {
                batch.labels.push(self.labels[j]);
            }
        }
    }

    /// Splits off the last `count` examples as a second data set.
    pub fn split_tail(mut self, count: usize) -> (Dataset, Dataset) {
        let keep = self.len() - count.min(self.len());
        let tail = Dataset {
            features: self.features.split_off(keep * self.dim),
            labels: if self.is_regression() {
                Vec::new()
            } else {
                self.labels.split_off(keep)
            },
            targets: self.targets.split_off(keep * self.target_dim),
            dim: self.dim,
            classes: self.classes,
            target_dim: self.target_dim,
            image: self.image,
        };
        (self, tail)
    }

    /// Reorders the examples by a seeded random permutation.
    pub fn shuffle(&mut self, g: &mut rng::Generator) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        rng::shuffle(g, &mut order);
        let mut shuffled = Dataset::default();
        self.gather(&order, &mut shuffled);
        *self = shuffled;
    }

    /// Number of examples per class (classification).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.classes];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }
}

/// What can go wrong reading or writing a data file. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read data file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write data file {path}: {error}")]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("malformed data file {path}: {message}")]
    Malformed { path: PathBuf, message: String },
    #[error("data directory {path}: {message}")]
    Directory { path: PathBuf, message: String },
    #[error("HDF5 error on {path}: {message}")]
    Hdf5 { path: PathBuf, message: String },
}
