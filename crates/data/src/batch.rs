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

    /// The current order of the examples, for checkpoints.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Restores a saved order and generator (from [`Batcher::order`] and [`Batcher::rng`]).
    /// Fails if the order is not a permutation of the examples.
    pub fn restore(&mut self, order: Vec<usize>, rng: Generator) -> Result<(), String> {
        let mut seen = vec![false; self.order.len()];
        if order.len() != seen.len()
            || !order
                .iter()
                .all(|&i| i < seen.len() && !std::mem::replace(&mut seen[i], true))
        {
            return Err(format!(
                "the saved batch order is not a permutation of {} examples",
                seen.len()
            ));
        }
        self.order = order;
        self.rng = rng;
        Ok(())
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
    fn restoring_the_state_continues_the_same_sequence() {
        let mut a = Batcher::new(20, 5, 3);
        a.shuffle();
        let mut b = Batcher::new(20, 5, 99);
        b.restore(a.order().to_vec(), a.rng().clone()).unwrap();
        a.shuffle();
        b.shuffle();
        assert_eq!(a.order(), b.order());
        assert!(b.restore(vec![0; 20], a.rng().clone()).is_err());
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
