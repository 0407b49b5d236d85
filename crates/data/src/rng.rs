//! Seeded random numbers: ChaCha8 streams, uniform floats and shuffles.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The generator used everywhere in layerpar, so that a seed fixes a run.
pub type Generator = ChaCha8Rng;

/// A generator for `seed`, on stream `stream` (independent streams for independent uses).
pub fn generator(seed: u64, stream: u64) -> Generator {
    let mut g = ChaCha8Rng::seed_from_u64(seed);
    g.set_stream(stream);
    g
}

/// Uniform in [0, 1) with 53 random bits.
#[inline]
pub fn uniform(g: &mut Generator) -> f64 {
    (g.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform integer in 0..n (n > 0), without modulo bias.
pub fn below(g: &mut Generator, n: usize) -> usize {
    let n = n as u64;
    let zone = u64::MAX - u64::MAX % n;
    loop {
        let v = g.next_u64();
        if v < zone {
            return (v % n) as usize;
        }
    }
}

/// Fisher–Yates shuffle.
pub fn shuffle<T>(g: &mut Generator, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = below(g, i + 1);
        v.swap(i, j);
    }
}

/// (seed, stream, word position): everything that fixes a generator's future output.
pub fn state(g: &Generator) -> ([u8; 32], u64, u128) {
    (g.get_seed(), g.get_stream(), g.get_word_pos())
}

/// The generator at a saved [`state`].
pub fn from_state(seed: [u8; 32], stream: u64, word_pos: u128) -> Generator {
    let mut g = ChaCha8Rng::from_seed(seed);
    g.set_stream(stream);
    g.set_word_pos(word_pos);
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_state_continues_the_stream() {
        let mut g = generator(5, 2);
        for _ in 0..7 {
            g.next_u64();
        }
        let (s, st, wp) = state(&g);
        let mut h = from_state(s, st, wp);
        for _ in 0..5 {
            assert_eq!(g.next_u64(), h.next_u64());
        }
    }
}
