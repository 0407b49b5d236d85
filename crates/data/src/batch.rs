//! Mini-batches: a seeded permutation of the examples, cut into batches, reshuffled each epoch.

use crate::rng::{generator, shuffle, Generator};

/// Hands out the example indices of each mini-batch of an epoch.
#[derive(Clone, Debug)]
pub struct Batcher {
    order: Vec<usize>,
    batch: usize,
    rng: Generator,
}

impl Batcher {
    /// `count` examples in batches of `batch` (0 or ≥ count: one full batch, never shuffled).
    pub fn new(count: usize, batch: usize, seed: u64) -> Self {
        let batch = if batch == 0 || batch > count {
            count
        } else {
            batch
        };
        Batcher {
            order: (0..count).collect(),
            batch,
            rng: generator(seed, 0x6261746368), // "batch"
        }
    }

    /// Examples per batch.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// Number of batches per epoch (the last one may be smaller).
    pub fn batches_per_epoch(&self) -> usize {
        self.order.len().div_ceil(self.batch.max(1))
    }

    /// Starts a new epoch: reshuffles the order (unless one batch covers everything).
    pub fn shuffle(&mut self) {
        if self.batch < self.order.len() {
            shuffle(&mut self.rng, &mut self.order);
        }
    }

    /// The indices of batch `i` of the current epoch.
    pub fn batch(&self, i: usize) -> &[usize] {
        let s = i * self.batch;
        &self.order[s..(s + self.batch).min(self.order.len())]
    }

    /// The generator's position, for checkpoints.
    pub fn rng(&self) -> &Generator {
        &self.rng
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_visits_every_example_once() {
        let mut b = Batcher::new(10, 3, 5);
        for _ in 0..3 {
            b.shuffle();
            assert_eq!(b.batches_per_epoch(), 4);
            let mut all: Vec<usize> = (0..4).flat_map(|i| b.batch(i).to_vec()).collect();
            assert_eq!(b.batch(3).len(), 1);
            all.sort();
            assert_eq!(all, (0..10).collect::<Vec<_>>());
        }
    }

    #[test]
    fn epochs_are_reshuffled() {
        let mut b = Batcher::new(50, 10, 5);
        b.shuffle();
        let first = b.batch(0).to_vec();
        b.shuffle();
        assert_ne!(first, b.batch(0).to_vec());
    }
}
