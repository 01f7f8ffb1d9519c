//! Seeded randomness. Each party has a private generator, and each pair of parties a
//! common one (k01, k02, k12): values a common seed makes are known to both parties
//! of the pair without any message, so they are never sent and never counted.

use super::ring::{ODD, P};
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

pub struct Prg(ChaCha12Rng);

impl Prg {
    /// A generator for one (master seed, purpose) pair: different labels give
    /// independent streams.
    pub fn new(seed: u64, label: &str) -> Prg {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&fnv1a(label.as_bytes()).to_le_bytes());
        Prg(ChaCha12Rng::from_seed(key))
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform elements of Z_L.
    pub fn ring(&mut self, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.0.next_u64()).collect()
    }

    /// Uniform elements of Z_(L-1): reject the one value outside it.
    pub fn odd(&mut self, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| loop {
                let v = self.0.next_u64();
                if v != ODD {
                    break v;
                }
            })
            .collect()
    }

    /// Uniform elements of Z_67, from bytes below 201 = 3 * 67.
    pub fn field(&mut self, n: usize) -> Vec<u8> {
        self.field_from(n, 0)
    }

    /// Uniform elements of Z_67 \ {0}.
    pub fn field_nonzero(&mut self, n: usize) -> Vec<u8> {
        self.field_from(n, 1)
    }

    fn field_from(&mut self, n: usize, low: u8) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            for b in self.0.next_u64().to_le_bytes() {
                if b < 201 && out.len() < n {
                    let v = b % P;
                    if v >= low {
                        out.push(v);
                    }
                }
            }
        }
        out
    }

    /// Uniform bits, one per byte.
    pub fn bits(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let w = self.0.next_u64();
            for i in 0..64.min(n - out.len()) {
                out.push(((w >> i) & 1) as u8);
            }
        }
        out
    }

    /// A uniform value in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the bias for n <= 2^16 is below 2^-48.
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Bernoulli(p) bits, one per byte.
    pub fn bernoulli(&mut self, n: usize, p: f64) -> Vec<u8> {
        let threshold = (p * 2f64.powi(53)) as u64;
        (0..n).map(|_| ((self.0.next_u64() >> 11) < threshold) as u8).collect()
    }
}

/// The generators of one protocol run.
pub struct Seeds {
    /// Private to P0, P1, P2.
    pub own: [Prg; 3],
    pub k01: Prg,
    pub k02: Prg,
    pub k12: Prg,
}

impl Seeds {
    pub fn new(seed: u64) -> Seeds {
        Seeds {
            own: [Prg::new(seed, "P0"), Prg::new(seed, "P1"), Prg::new(seed, "P2")],
            k01: Prg::new(seed, "k01"),
            k02: Prg::new(seed, "k02"),
            k12: Prg::new(seed, "k12"),
        }
    }
}

/// FNV-1a: a small, fixed hash for labels and transcripts (not for security).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_labels_separate() {
        assert_eq!(Prg::new(7, "a").ring(4), Prg::new(7, "a").ring(4));
        assert_ne!(Prg::new(7, "a").ring(4), Prg::new(7, "b").ring(4));
    }

    #[test]
    fn field_samples_cover_z67_evenly() {
        let v = Prg::new(1, "f").field(67 * 2000);
        let mut counts = [0usize; 67];
        for x in &v {
            counts[*x as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (1700..2300).contains(&c)), "{counts:?}");
        assert!(Prg::new(1, "g").field_nonzero(10_000).iter().all(|&x| x != 0 && x < 67));
    }
}
