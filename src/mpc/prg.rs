//! Seeded randomness. Each party has a private generator, and each pair of parties a
//! common one (k01, k02, k12): values a common seed makes are known to both parties
//! of the pair without any message, so they are never sent and never counted.

use super::ring::{ODD, P};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

pub struct Prg(ChaCha8Rng);

impl Prg {
    /// A generator for one (master seed, purpose) pair: different labels give
    /// independent streams.
    pub fn new(seed: u64, label: &str) -> Prg {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&fnv1a(label.as_bytes()).to_le_bytes());
        Prg(ChaCha8Rng::from_seed(key))
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
            .map(|_| {
                loop {
                    let v = self.0.next_u64();
                    if v != ODD {
                        break v;
                    }
                }
            })
            .collect()
    }

    /// Uniform elements of Z_67, from bytes below 201 = 3 * 67.
    pub fn field(&mut self, n: usize) -> Vec<u8> {
        self.field_from::<0>(n)
    }

    /// Uniform elements of Z_67 \ {0}.
    pub fn field_nonzero(&mut self, n: usize) -> Vec<u8> {
        self.field_from::<1>(n)
    }

    /// Uniform elements of {LOW, ..., 66}: a 64-bit draw below a multiple of
    /// base^10 (base = 67 - LOW) is ten uniform base-`base` digits; the rare draw
    /// above it (1.3% for base 67) is rejected whole. The base is a constant so that
    /// the divisions compile to multiplications.
    fn field_from<const LOW: u8>(&mut self, n: usize) -> Vec<u8> {
        let base = (P - LOW) as u64;
        let block = base.pow(10);
        let limit = (u64::MAX / block) * block;
        let mut out = Vec::with_capacity(n + 10);
        while out.len() < n {
            let mut w = self.0.next_u64();
            if w >= limit {
                continue;
            }
            w %= block;
            for _ in 0..10 {
                out.push((w % base) as u8 + LOW);
                w /= base;
            }
        }
        out.truncate(n);
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

    /// A uniform permutation of 0..n (n <= 2^16), by Fisher-Yates with exact 16-bit
    /// draws (Lemire's method with rejection), four per 64-bit word.
    pub fn permutation(&mut self, n: usize) -> Vec<u8> {
        assert!(n <= 256, "permutations here are of bit positions");
        let mut p: Vec<u8> = (0..n as u16).map(|i| i as u8).collect();
        let mut word = 0u64;
        let mut left = 0;
        let mut draw16 = |this: &mut Self| {
            if left == 0 {
                word = this.0.next_u64();
                left = 4;
            }
            left -= 1;
            let x = (word & 0xffff) as u32;
            word >>= 16;
            x
        };
        for i in (1..n).rev() {
            let bound = (i + 1) as u32;
            let j = loop {
                let m = draw16(self) * bound;
                // Reject the low values that would make some results more likely.
                if (m & 0xffff) >= (65536 - bound) % bound {
                    break (m >> 16) as usize;
                }
            };
            p.swap(i, j);
        }
        p
    }

    /// A standard normal value (Box-Muller from two uniforms in (0, 1]).
    pub fn normal(&mut self) -> f64 {
        let u1 = ((self.0.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let u2 = (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
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
    fn permutations_are_uniform_over_positions() {
        let mut g = Prg::new(2, "perm");
        let mut where_zero = [0usize; 8];
        for _ in 0..8000 {
            let p = g.permutation(8);
            let mut seen = p.clone();
            seen.sort();
            assert_eq!(seen, (0..8).collect::<Vec<u8>>());
            where_zero[p.iter().position(|&x| x == 0).unwrap()] += 1;
        }
        assert!(where_zero.iter().all(|&c| (850..1150).contains(&c)), "{where_zero:?}");
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
