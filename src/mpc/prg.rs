//! Seeded randomness. Each party has a private generator, and each pair of parties a
//! common one (k01, k02, k12): values a common seed makes are known to both parties
//! of the pair without any message, so they are never sent and never counted.
//!
//! Which generator masks what (`protocols`; a party that does not hold a generator
//! never sees its draws):
//!
//! | generator | held by | draws |
//! |---|---|---|
//! | `owner` (`infer::secure`) | the input's and the model's owners | the shares of the input and of the weights, dealt before inference (uncounted) |
//! | `own[0]`, `own[1]` | P0, P1 | nothing in the protocols |
//! | `own[2]` | P2 | every dealing: bit shares of x (ShareConvert, ComputeMSB), shares of delta, eta', x, LSB(x), beta', and ComputeMSB's mask x |
//! | `k01` | P0, P1 | ShareConvert's r = r0 + r1 and eta''; ComputeMSB's beta; PrivateCompare's multipliers s_i, shares of zero and rotations |
//! | `k02` | P0, P2 | Beaver triples' A0, B0, C0 |
//! | `k12` | P1, P2 | Beaver triples' A1, B1 |
//!
//! Streams are never reused: one image's layers draw from one set of generators in
//! turn (`protocols::tests::successive_protocols_in_one_context_never_reuse_masks`);
//! each image of each run has its own seed (`simulate::protocol_seed`, tested never
//! to repeat over runs, images and seeds), and a sweep gives every design point its
//! own run (tests/simulate.rs: two runs of one seed share no message). The view
//! tests (`views`) hold the generators of one party fixed and redraw the others.

use super::cpu::{Simd, simd};
use super::keystream::Keystream;
use super::ring::{ODD, P};

/// One keystream; every draw reads its next bytes in order.
pub struct Prg(Keystream);

impl Prg {
    /// A generator for one (master seed, purpose) pair: different labels give
    /// independent streams. ChaCha8: model initialisation, training, generated inputs.
    pub fn new(seed: u64, label: &str) -> Prg {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(&Prg::key(seed, label));
        Prg(Keystream::chacha8(key))
    }

    /// A generator of the protocol: AES-128 in counter mode, as MPC implementations
    /// expand their seeds, and the fastest stream on CPUs with VAES. (`new` keeps
    /// ChaCha8, so that trained networks and their figures stay as they were.)
    pub fn protocol(seed: u64, label: &str) -> Prg {
        Prg(Keystream::aes128(Prg::key(seed, label)))
    }

    /// The seed, then a hash of the label, little-endian.
    fn key(seed: u64, label: &str) -> [u8; 16] {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..].copy_from_slice(&fnv1a(label.as_bytes()).to_le_bytes());
        key
    }

    /// Bytes of the stream drawn so far.
    pub fn bytes_drawn(&self) -> u64 {
        self.0.position()
    }

    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform elements of Z_L.
    pub fn ring(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = (n - out.len()).min(self.0.contiguous() / 8).max(1);
            out.extend(self.0.bytes(8 * take).chunks_exact(8).map(le_word));
        }
        out
    }

    /// Uniform elements of Z_(L-1): reject the one value outside it.
    pub fn odd(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = (n - out.len()).min(self.0.contiguous() / 8).max(1);
            out.extend(self.0.bytes(8 * take).chunks_exact(8).map(le_word).filter(|&w| w != ODD));
        }
        out
    }

    /// Uniform elements of Z_67.
    pub fn field(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.fill_field(&mut out);
        out
    }

    /// Fills `out` with uniform elements of Z_67.
    pub fn fill_field(&mut self, out: &mut [u8]) {
        self.fill_below::<0>(out)
    }

    /// Fills `out` with uniform elements of Z_67 \ {0}.
    pub fn fill_field_nonzero(&mut self, out: &mut [u8]) {
        self.fill_below::<1>(out)
    }

    /// Uniform elements of {LOW, ..., 66}, four from each 32-bit word by Lemire's
    /// method: word * base^4 has its high half uniform below base^4 once the words
    /// whose low half falls under 2^32 mod base^4 are rejected (6 in 10,000 for base
    /// 67, 16 for 66); the four base-`base` digits of that value, lowest first, are the
    /// elements. Words are read in order and each accepted word makes the next four
    /// elements; a block of 16 words with no rejection, nearly every block, is mapped
    /// in one vectorised pass. One byte of the stream per element.
    fn fill_below<const LOW: u8>(&mut self, out: &mut [u8]) {
        // The digit extraction vectorises well only with wide registers.
        match simd() {
            // Safety: `simd` found the features these variants are compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.fill_below_avx512::<LOW>(out) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.fill_below_avx2::<LOW>(out) },
            _ => self.fill_below_any::<LOW>(out),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn fill_below_avx512<const LOW: u8>(&mut self, out: &mut [u8]) {
        // (Closures inherit this function's features, so the call needs no `unsafe`.)
        self.fill_below_with::<LOW>(out, |words, block| block_avx512::<LOW>(words, block, const { reject_below(LOW) }))
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fill_below_avx2<const LOW: u8>(&mut self, out: &mut [u8]) {
        // (A closure: it inherits this function's features, a function item does not.)
        self.fill_below_with::<LOW>(out, |words, block| digits_avx2::<LOW>(words, block))
    }

    #[inline(always)]
    fn fill_below_any<const LOW: u8>(&mut self, out: &mut [u8]) {
        self.fill_below_with::<LOW>(out, |words, block| {
            // Fixed-size arrays, so that the loop vectorises.
            let mut accepted = true;
            for (w, d) in words.chunks_exact(4).zip(block.chunks_exact_mut(4)) {
                accepted &= Self::digits::<LOW>(w, d);
            }
            accepted
        })
    }

    /// One word's four elements, lowest digit first, and whether the word is accepted.
    /// The digits of floor(word * base^4 / 2^32), highest first, come without a
    /// division: each is the high half of (fraction so far) * base, and the low half is
    /// the next fraction; the last fraction is the low half of word * base^4.
    #[inline(always)]
    fn digits<const LOW: u8>(w: &[u8], d: &mut [u8]) -> bool {
        let base = (P - LOW) as u64;
        let mut fraction = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        for x in d.iter_mut().rev() {
            let m = fraction as u64 * base;
            *x = (m >> 32) as u8 + LOW;
            fraction = m as u32;
        }
        fraction >= const { reject_below(LOW) }
    }

    /// `fill_below` with `block` mapping a whole block of 16 words to 64 elements in
    /// place, and saying whether every word was accepted.
    #[inline(always)]
    fn fill_below_with<const LOW: u8>(&mut self, out: &mut [u8], block: impl Fn(&[u8; 64], &mut [u8; 64]) -> bool) {
        let mut filled = 0;
        while filled < out.len() {
            let want = (out.len() - filled).min(64);
            let bytes = self.0.bytes(4 * want.div_ceil(4));
            // A whole block is written in place, and rewritten below if a word was rejected.
            if want == 64
                && block(bytes.try_into().expect("a whole block"), (&mut out[filled..filled + 64]).try_into().expect("a whole block"))
            {
                filled += want;
                continue;
            }
            // A short last block, or a rejected word: each accepted word's digits in order.
            for w in bytes.chunks_exact(4) {
                let mut d = [0u8; 4];
                if Self::digits::<LOW>(w, &mut d) {
                    let take = (out.len() - filled).min(4);
                    out[filled..filled + take].copy_from_slice(&d[..take]);
                    filled += take;
                }
            }
        }
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

    /// Uniform rotations of 64 places: 0..64, one byte of the stream each.
    pub fn fill_rotations(&mut self, out: &mut [u8]) {
        for part in out.chunks_mut(64) {
            part.copy_from_slice(self.0.bytes(part.len()));
            part.iter_mut().for_each(|b| *b %= 64);
        }
    }

    /// A uniform value in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the bias for n <= 2^16 is below 2^-48.
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
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

/// `Prg::digits` for 16 words at once: the even words in the low halves of eight
/// 64-bit lanes, the odd words in another eight, each step one 32 x 32-bit multiply
/// per lane; the four digits of a word packed into its 32 bits, lowest first.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
fn block_avx512<const LOW: u8>(words: &[u8; 64], out: &mut [u8; 64], reject_below: u32) -> bool {
    use std::arch::x86_64::*;
    let base = _mm512_set1_epi64((P - LOW) as i64);
    // Each fraction * base < 2^39, so digit k (highest first) sits at bits 32-39 of
    // product k; shifted into byte 3 - k of its word and masked.
    let digits = |f: __m512i| -> (__m512i, __mmask8) {
        let m1 = _mm512_mul_epu32(f, base);
        let m2 = _mm512_mul_epu32(m1, base);
        let m3 = _mm512_mul_epu32(m2, base);
        let m4 = _mm512_mul_epu32(m3, base);
        let byte = |m: __m512i, shift: u32, mask: i64| {
            _mm512_and_si512(_mm512_srl_epi64(m, _mm_cvtsi32_si128(shift as i32)), _mm512_set1_epi64(mask))
        };
        let packed = _mm512_or_si512(
            _mm512_or_si512(byte(m1, 8, 0xff00_0000), byte(m2, 16, 0x00ff_0000)),
            _mm512_or_si512(byte(m3, 24, 0x0000_ff00), _mm512_srli_epi64::<32>(m4)),
        );
        let accepted =
            _mm512_cmpge_epu64_mask(_mm512_and_si512(m4, _mm512_set1_epi64(0xffff_ffff)), _mm512_set1_epi64(reject_below as i64));
        (packed, accepted)
    };
    // Safety: a 64-byte load from and a 64-byte store into 64-byte arrays.
    unsafe {
        let w = _mm512_loadu_si512(words.as_ptr().cast());
        let (even, even_ok) = digits(w);
        let (odd, odd_ok) = digits(_mm512_srli_epi64::<32>(w));
        let packed = _mm512_add_epi8(_mm512_or_si512(even, _mm512_slli_epi64::<32>(odd)), _mm512_set1_epi8(LOW as i8));
        _mm512_storeu_si512(out.as_mut_ptr().cast(), packed);
        even_ok == 0xff && odd_ok == 0xff
    }
}

/// 2^32 mod base^4 for the draws of {low, ..., 66} (base 67 - low): words whose low
/// half of word * base^4 falls below it are rejected. A constant for each `low`.
const fn reject_below(low: u8) -> u32 {
    ((1u64 << 32) % ((P - low) as u64).pow(4)) as u32
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn le_word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
}

/// Four digits base 67 - `LOW` from each of 16 words by Lemire's method, the AVX2
/// form of `digits`, eight words per register: the even words' products in one
/// register's 64-bit lanes, the odd words' in another, both stepped by `vpmuludq`
/// (which reads only the low half of each lane, the next fraction). Each digit (bits
/// 32-39 of its product) is blended into its word's 32-bit lane and shifted up as the
/// next comes, so the first (highest) digit ends in byte 3, as `digits` places it.
/// `LOW` is added to every byte before the store (a pass over the stored block would
/// wait on its narrow stores). Says whether every word's last fraction reached the
/// rejection threshold. With each word in a 64-bit lane of its own (four per
/// register, digits placed by variable shifts) `fill_field` took 0.249 ns per element,
/// keystream included, against 0.209 (medians of 201 fills of 256 KiB, four
/// alternating runs).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn digits_avx2<const LOW: u8>(words: &[u8; 64], out: &mut [u8; 64]) -> bool {
    use std::arch::x86_64::*;
    let base = _mm256_set1_epi64x((P - LOW) as i64);
    let reject_below = _mm256_set1_epi32(const { reject_below(LOW) } as i32);
    let mut accepted = _mm256_set1_epi32(-1);
    for half in 0..2 {
        // Safety: a 32-byte load from and a 32-byte store into 64-byte arrays, at 32 half.
        unsafe {
            let w = _mm256_loadu_si256(words[32 * half..].as_ptr().cast());
            let (mut even, mut odd, mut packed) = (w, _mm256_srli_epi64::<32>(w), _mm256_setzero_si256());
            for _ in 0..4 {
                // Fraction times base < 2^39: the digit is the lane's high half, below 67.
                (even, odd) = (_mm256_mul_epu32(even, base), _mm256_mul_epu32(odd, base));
                let digits = _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd);
                packed = _mm256_or_si256(_mm256_slli_epi32::<8>(packed), digits);
            }
            // The last fractions, one per word; accepted where at least the threshold (unsigned).
            let fractions = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
            accepted = _mm256_and_si256(accepted, _mm256_cmpeq_epi32(_mm256_max_epu32(fractions, reject_below), fractions));
            // Digits are below 67, so adding `LOW` never carries into the next byte.
            let packed = _mm256_add_epi8(packed, _mm256_set1_epi8(LOW as i8));
            _mm256_storeu_si256(out[32 * half..].as_mut_ptr().cast(), packed);
        }
    }
    _mm256_movemask_epi8(accepted) == -1
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
            own: [Prg::protocol(seed, "P0"), Prg::protocol(seed, "P1"), Prg::protocol(seed, "P2")],
            k01: Prg::protocol(seed, "k01"),
            k02: Prg::protocol(seed, "k02"),
            k12: Prg::protocol(seed, "k12"),
        }
    }

    /// The generators `me` holds, as `new` makes them (so that a networked run can be
    /// compared with the simulator bit for bit); the others draw from a stream of
    /// their own that no protocol step reads (a step that did would break the outputs).
    pub fn held_by(seed: u64, me: usize) -> Seeds {
        let all = Seeds::new(seed);
        let none = |name: &str| Prg::protocol(seed, &format!("{name} is not held by P{me}"));
        let pick = |held: bool, g: Prg, name: &str| if held { g } else { none(name) };
        let [o0, o1, o2] = all.own;
        Seeds {
            own: [pick(me == 0, o0, "P0"), pick(me == 1, o1, "P1"), pick(me == 2, o2, "P2")],
            k01: pick(me != 2, all.k01, "k01"),
            k02: pick(me != 1, all.k02, "k02"),
            k12: pick(me != 0, all.k12, "k12"),
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

    /// Pearson's statistic of counts against a uniform expectation.
    fn chi_square_uniform(counts: &[f64]) -> f64 {
        let e = counts.iter().sum::<f64>() / counts.len() as f64;
        counts.iter().map(|c| (c - e) * (c - e) / e).sum()
    }

    #[test]
    fn rotations_are_uniform() {
        let mut g = Prg::protocol(2, "perm");
        let mut counts = [0f64; 64];
        let mut shifts = [0u8; 1000];
        for _ in 0..64 {
            g.fill_rotations(&mut shifts);
            shifts.iter().for_each(|&s| counts[s as usize] += 1.0);
        }
        assert_eq!(g.bytes_drawn(), 64_000, "one byte each");
        // Critical value at p = 0.001 for 63 degrees of freedom: 103.4.
        let x2 = chi_square_uniform(&counts);
        assert!(x2 < 103.4, "chi-square {x2:.1}");
    }

    #[test]
    fn every_cpu_variant_draws_the_same_field_elements() {
        crate::mpc::cpu::note_skipped("every_cpu_variant_draws_the_same_field_elements", &crate::mpc::cpu::vector_variants());
        // Lengths that end in a short block, and enough blocks to meet rejections.
        for n in [1, 63, 64, 65, 5000, 50_000] {
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            Prg::new(9, "f").fill_field(&mut a);
            Prg::new(9, "f").fill_below_any::<0>(&mut b);
            assert_eq!(a, b, "{n}");
            Prg::new(9, "f").fill_field_nonzero(&mut a);
            Prg::new(9, "f").fill_below_any::<1>(&mut b);
            assert_eq!(a, b, "{n}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // Safety: the variant's features were just detected.
                unsafe { Prg::new(9, "f").fill_below_avx2::<1>(&mut b) };
                assert_eq!(a, b, "{n}");
                Prg::new(9, "f").fill_below_any::<0>(&mut a);
                // Safety: as above.
                unsafe { Prg::new(9, "f").fill_below_avx2::<0>(&mut b) };
                assert_eq!(a, b, "{n}");
            }
        }
    }

    #[test]
    fn field_samples_cover_z67_evenly() {
        let v = Prg::new(1, "f").field(67 * 2000);
        let mut counts = [0usize; 67];
        for x in &v {
            counts[*x as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (1700..2300).contains(&c)), "{counts:?}");
        let mut nonzero = vec![0u8; 10_000];
        Prg::new(1, "g").fill_field_nonzero(&mut nonzero);
        assert!(nonzero.iter().all(|&x| x != 0 && x < 67));
    }
}
