//! # layerpar-data — data sets for layerpar
//!
//! A [`Dataset`] is a column-major matrix of features (d × n, one example per column) with a
//! class label per example. Sources: the synthetic Peaks problem generated in code, and user
//! files in HDF5 or CSV. [`Batcher`] draws shuffled mini-batches, reshuffled every epoch.

pub mod batch;
pub mod io;
pub mod peaks;
pub mod rng;

pub use batch::Batcher;
pub use io::{read_csv, read_hdf5, write_csv, write_hdf5};
pub use peaks::{generate_peaks, peaks_value, PeaksClasses};

use std::path::PathBuf;

/// A labelled data set: features d × n (column-major) and n labels in 0..classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Features of example j at `features[j·dim .. (j+1)·dim]`.
    pub features: Vec<f64>,
    pub labels: Vec<usize>,
    /// Features per example, d.
    pub dim: usize,
    /// Number of classes C; every label is below it.
    pub classes: usize,
}

impl Dataset {
    /// Number of examples n.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features of example j.
    pub fn example(&self, j: usize) -> &[f64] {
        &self.features[j * self.dim..(j + 1) * self.dim]
    }

    /// Copies the examples `idx` into a batch: x (d × |idx|) and labels.
    pub fn gather(&self, idx: &[usize], x: &mut Vec<f64>, labels: &mut Vec<usize>) {
        x.clear();
        labels.clear();
        for &j in idx {
            x.extend_from_slice(self.example(j));
            labels.push(self.labels[j]);
        }
    }

    /// Splits off the last `count` examples as a second data set.
    pub fn split_tail(mut self, count: usize) -> (Dataset, Dataset) {
        let keep = self.len() - count.min(self.len());
        let tail = Dataset {
            features: self.features.split_off(keep * self.dim),
            labels: self.labels.split_off(keep),
            dim: self.dim,
            classes: self.classes,
        };
        (self, tail)
    }

    /// Reorders the examples by a seeded random permutation.
    pub fn shuffle(&mut self, g: &mut rng::Generator) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        rng::shuffle(g, &mut order);
        let mut features = Vec::with_capacity(self.features.len());
        for &j in &order {
            features.extend_from_slice(self.example(j));
        }
        self.labels = order.iter().map(|&j| self.labels[j]).collect();
        self.features = features;
    }

    /// Number of examples per class.
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
    #[error("HDF5 error on {path}: {message}")]
    Hdf5 { path: PathBuf, message: String },
}
