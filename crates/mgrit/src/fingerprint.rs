//! A 64-bit FNV-1a hash of the bits of floating-point values: the one fingerprint used to
//! show that two runs (on different rank counts, before and after a change) computed the same
//! bits.

/// FNV-1a over bytes, fed incrementally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv1a(u64);

impl Fnv1a {
    /// The offset basis: the hash of nothing.
    pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;

    pub fn new() -> Self {
        Fnv1a(Self::OFFSET)
    }

    /// Mixes in the little-endian bytes of each value's bits.
    pub fn write_f64s(&mut self, values: &[f64]) {
        for x in values {
            for b in x.to_bits().to_le_bytes() {
                self.0 ^= b as u64;
                self.0 = self.0.wrapping_mul(Self::PRIME);
            }
        }
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Self::new()
    }
}

/// The FNV-1a hash of the bits of `v`.
pub fn fingerprint(v: &[f64]) -> u64 {
    let mut h = Fnv1a::new();
    h.write_f64s(v);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_incremental_feeding() {
        assert_eq!(fingerprint(&[]), Fnv1a::OFFSET);
        // FNV-1a of the eight zero bytes of 0.0.
        assert_eq!(fingerprint(&[0.0]), 0xa8c7_f832_281a_39c5);
        let mut h = Fnv1a::new();
        h.write_f64s(&[1.5]);
        h.write_f64s(&[-2.0]);
        assert_eq!(h.finish(), fingerprint(&[1.5, -2.0]));
        assert_ne!(fingerprint(&[0.0]), fingerprint(&[-0.0]));
    }
}
