//! Seeded randomness. Each party has a private generator, and each pair of parties a
//! common one (k01, k02, k12): values a common seed makes are known to both parties
//! of the pair without any message, so they are never sent and never counted.

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
        let bounds = [[(P - LOW) as u32; 16]; 4];
        let reject = [const { reject_below(LOW) }; 16];
        // Digit k (highest first) is element 3 - k of its word.
        self.fill_below_with::<LOW>(out, |words, block| digit_groups_avx2::<true>(words, block, &bounds, &reject, LOW))
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

    /// A uniform value in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the bias for n <= 2^16 is below 2^-48.
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// The 63 draws of a Fisher-Yates shuffle of 64 places, for each of `many`
    /// shuffles in order: draw d is uniform in 0..=(63 - d). Four draws come from one
    /// 32-bit word, by Lemire's method on the product of their four bounds (below 2^24,
    /// so at most one word in 256 is rejected) and digits extracted highest first as in
    /// `digits`: 64 bytes of the stream per shuffle. A shuffle's 16 words are mapped in
    /// one vectorised pass; after a rejection (under 1% of shuffles) the same words are
    /// read again in order, each accepted word serving the next four draws, and more
    /// are drawn as needed.
    #[inline(always)]
    pub fn fisher_yates(&mut self, many: &mut [[u8; 63]]) {
        match simd() {
            // Safety: `simd` found the features this variant is compiled for.
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512 => unsafe { self.fisher_yates_avx512(many) },
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2 => unsafe { self.fisher_yates_avx2(many) },
            _ => many.iter_mut().for_each(|js| self.fisher_yates_with(js, draws_any)),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn fisher_yates_avx2(&mut self, many: &mut [[u8; 63]]) {
        many.iter_mut().for_each(|js| {
            self.fisher_yates_with(js, |words, out| digit_groups_avx2::<false>(words, out, &DRAW_BOUNDS, &GROUP_REJECT_BELOW, 0))
        })
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
    unsafe fn fisher_yates_avx512(&mut self, many: &mut [[u8; 63]]) {
        // (A closure: it inherits this function's features, a function item does not.)
        many.iter_mut().for_each(|js| self.fisher_yates_with(js, |words, out| draws_avx512(words, out)))
    }

    /// One shuffle's draws, with `map` turning 16 words into 64 draws (the last always
    /// 0) and saying whether every word was accepted.
    #[inline(always)]
    fn fisher_yates_with(&mut self, js: &mut [u8; 63], map: impl Fn(&[u8; 64], &mut [u8; 64]) -> bool) {
        let bytes: &[u8; 64] = self.0.bytes(64).try_into().expect("16 words");
        let mut all = [0u8; 64];
        if map(bytes, &mut all) {
            js.copy_from_slice(&all[..63]);
        } else {
            let words = std::array::from_fn(|g| u32::from_le_bytes(bytes[4 * g..4 * g + 4].try_into().expect("4 bytes")));
            self.fisher_yates_word_by_word(words, js);
        }
    }

    /// `fisher_yates` after a rejected word.
    #[cold]
    fn fisher_yates_word_by_word(&mut self, words: [u32; 16], js: &mut [u8; 63]) {
        let mut words = words.into_iter();
        for g in 0..16 {
            let digits = loop {
                let w = words.next().unwrap_or_else(|| {
                    let mut more = [0u8; 4];
                    self.0.fill_bytes(&mut more);
                    u32::from_le_bytes(more)
                });
                let (digits, fraction) = group_draws(w, g);
                if fraction >= GROUP_REJECT_BELOW[g] {
                    break digits;
                }
            };
            let group = &mut js[4 * g..(4 * g + 4).min(63)];
            group.copy_from_slice(&digits[..group.len()]);
        }
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

/// `v` shuffled with draws from `Prg::fisher_yates` (N = 64 there), "inside out": after
/// step i the first i + 1 places hold a uniform permutation of v[0..=i], and draw
/// N - 1 - i (uniform in 0..=i) picks the place v[i] takes, whose element moves up to
/// place i. Writing a fresh array this way, rather than swapping in place, took a
/// 64-element shuffle from 58 to 42 ns here: in-place swaps make loads wait on
/// recent stores to nearby places.
#[inline(always)]
pub fn shuffled<T: Copy, const N: usize>(v: &[T; N], js: &[u8]) -> [T; N] {
    let mut out = *v;
    shuffle_into(v, js, &mut out);
    out
}

/// `shuffled`, written straight into `out` (whatever it held): a caller that keeps
/// the result in a larger array saves a copy, and a copy right behind the narrow
/// stores of the shuffle would wait for them.
#[inline(always)]
pub fn shuffle_into<T: Copy, const N: usize>(v: &[T; N], js: &[u8], out: &mut [T; N]) {
    assert_eq!(js.len() + 1, N, "one draw per place but the first");
    out[0] = v[0];
    for i in 1..N {
        let j = js[N - 1 - i] as usize;
        out[i] = out[j];
        out[j] = v[i];
    }
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn le_word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().expect("eight bytes"))
}

/// Bound of draw 4 g + k of a 64-place shuffle, at [k][g]: 64 - (4 g + k), and 1 for
/// the missing 64th draw (its digit is always 0 and leaves the fraction as it is).
const DRAW_BOUNDS: [[u32; 16]; 4] = {
    let mut t = [[1u32; 16]; 4];
    let mut d = 0;
    while d < 63 {
        t[d % 4][d / 4] = 64 - d as u32;
        d += 1;
    }
    t
};

/// 2^32 mod the product of group g's four bounds: Lemire's rejection threshold.
const GROUP_REJECT_BELOW: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut g = 0;
    while g < 16 {
        let product = DRAW_BOUNDS[0][g] as u64 * DRAW_BOUNDS[1][g] as u64 * DRAW_BOUNDS[2][g] as u64 * DRAW_BOUNDS[3][g] as u64;
        t[g] = ((1u64 << 32) % product) as u32;
        g += 1;
    }
    t
};

/// Group g's four draws from one word, and the last fraction (the word is accepted
/// where it is at least `GROUP_REJECT_BELOW[g]`).
fn group_draws(word: u32, g: usize) -> ([u8; 4], u32) {
    let (mut digits, mut fraction) = ([0u8; 4], word);
    for (k, digit) in digits.iter_mut().enumerate() {
        let m = fraction as u64 * DRAW_BOUNDS[k][g] as u64;
        *digit = (m >> 32) as u8;
        fraction = m as u32;
    }
    (digits, fraction)
}

/// The 16 groups of four draws from 16 words (see `Prg::fisher_yates`), group g's in
/// bytes 4 g to 4 g + 3, and whether every word was accepted.
#[inline(always)]
fn draws_any(words: &[u8; 64], out: &mut [u8; 64]) -> bool {
    let mut accepted = true;
    for (g, (w, out)) in words.chunks_exact(4).zip(out.chunks_exact_mut(4)).enumerate() {
        let (digits, fraction) = group_draws(u32::from_le_bytes(w.try_into().expect("4 bytes")), g);
        out.copy_from_slice(&digits);
        accepted &= fraction >= GROUP_REJECT_BELOW[g];
    }
    accepted
}

/// `draws_any` with the even words in the low halves of eight 64-bit lanes and the
/// odd words in another eight: four 32 x 32-bit multiplies per register, each lane
/// with its own group's bounds.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
fn draws_avx512(words: &[u8; 64], out: &mut [u8; 64]) -> bool {
    use std::arch::x86_64::*;
    // Lane i of the `parity` register holds group 2 i + parity.
    let bounds = |k: usize, parity: usize| {
        let b: [i64; 8] = std::array::from_fn(|i| DRAW_BOUNDS[k][2 * i + parity] as i64);
        // Safety: an unaligned load of 8 u64.
        unsafe { _mm512_loadu_si512(b.as_ptr().cast()) }
    };
    let reject: [[i64; 8]; 2] = std::array::from_fn(|parity| std::array::from_fn(|i| GROUP_REJECT_BELOW[2 * i + parity] as i64));
    let low32 = _mm512_set1_epi64(0xffff_ffff);
    // Digit k (the high half of product k, below 64) goes to byte k of its word.
    let map = |f: __m512i, parity: usize| -> (__m512i, __mmask8) {
        let m1 = _mm512_mul_epu32(f, bounds(0, parity));
        let m2 = _mm512_mul_epu32(m1, bounds(1, parity));
        let m3 = _mm512_mul_epu32(m2, bounds(2, parity));
        let m4 = _mm512_mul_epu32(m3, bounds(3, parity));
        let byte = |m: __m512i, shift: u32, mask: i64| {
            _mm512_and_si512(_mm512_srl_epi64(m, _mm_cvtsi32_si128(shift as i32)), _mm512_set1_epi64(mask))
        };
        let packed = _mm512_or_si512(
            _mm512_or_si512(_mm512_srli_epi64::<32>(m1), byte(m2, 24, 0xff00)),
            _mm512_or_si512(byte(m3, 16, 0xff_0000), byte(m4, 8, 0xff00_0000)),
        );
        // Safety: an unaligned load of 8 u64.
        let threshold = unsafe { _mm512_loadu_si512(reject[parity].as_ptr().cast()) };
        (packed, _mm512_cmpge_epu64_mask(_mm512_and_si512(m4, low32), threshold))
    };
    // Safety: a 64-byte load from and a 64-byte store into 64-byte arrays.
    unsafe {
        let w = _mm512_loadu_si512(words.as_ptr().cast());
        let (even, even_ok) = map(w, 0);
        let (odd, odd_ok) = map(_mm512_srli_epi64::<32>(w), 1);
        _mm512_storeu_si512(out.as_mut_ptr().cast(), _mm512_or_si512(even, _mm512_slli_epi64::<32>(odd)));
        even_ok & odd_ok == 0xff
    }
}

/// Four digits from each of 16 words by Lemire's method, the AVX2 form of `digits`
/// and `group_draws`: word g's k-th product (highest digit first) uses bound
/// `bounds[k][g]`, and its digit goes to byte 3 - k of the word's four (`REVERSED`,
/// as `digits` places them) or to byte k (as `group_draws` does). Words sit in the
/// low halves of 64-bit lanes, four per register. `low` is added to every digit (in
/// the kernel: a pass over the stored block would wait on its narrow stores). Says
/// whether every word's last fraction reached its `reject` threshold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn digit_groups_avx2<const REVERSED: bool>(
    words: &[u8; 64],
    out: &mut [u8; 64],
    bounds: &[[u32; 16]; 4],
    reject: &[u32; 16],
    low: u8,
) -> bool {
    use std::arch::x86_64::*;
    let lanes = |v: &[u32; 16], q: usize| _mm256_set_epi64x(v[4 * q + 3] as i64, v[4 * q + 2] as i64, v[4 * q + 1] as i64, v[4 * q] as i64);
    let mut rejected = _mm256_setzero_si256();
    for q in 0..4 {
        // Safety: a 16-byte load from and a 16-byte store into 64-byte arrays, at 16 q.
        unsafe {
            let mut m = _mm256_cvtepu32_epi64(_mm_loadu_si128(words[16 * q..].as_ptr().cast()));
            let mut packed = _mm256_set1_epi32(i32::from_le_bytes([low; 4]));
            for (k, bound) in bounds.iter().enumerate() {
                // Fraction times bound < 2^39: the digit is bits 32-39, the next fraction the low half.
                m = _mm256_mul_epu32(m, lanes(bound, q));
                let byte = if REVERSED { 3 - k } else { k };
                let digit = _mm256_srli_epi64::<32>(m);
                // Digits are below 67, so adding them to `low` never carries into the next byte.
                packed = _mm256_add_epi64(packed, _mm256_sllv_epi64(digit, _mm256_set1_epi64x(8 * byte as i64)));
            }
            // Lanes hold values below 2^32, so a signed compare orders them.
            let fraction = _mm256_and_si256(m, _mm256_set1_epi64x(0xffff_ffff));
            rejected = _mm256_or_si256(rejected, _mm256_cmpgt_epi64(lanes(reject, q), fraction));
            // The four lanes' low halves, side by side.
            let side_by_side = _mm256_permutevar8x32_epi32(packed, _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0));
            _mm_storeu_si128(out[16 * q..].as_mut_ptr().cast(), _mm256_castsi256_si128(side_by_side));
        }
    }
    _mm256_testz_si256(rejected, rejected) == 1
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
    fn permutations_and_their_draws_are_uniform() {
        let mut g = Prg::protocol(2, "perm");
        let (mut where_zero, mut first, mut fourth, mut last) = ([0f64; 64], [0f64; 64], [0f64; 61], [0f64; 2]);
        for _ in 0..64_000 {
            let mut js = [0u8; 63];
            g.fisher_yates(std::slice::from_mut(&mut js));
            first[js[0] as usize] += 1.0;
            fourth[js[3] as usize] += 1.0;
            last[js[62] as usize] += 1.0;
            let p: [u8; 64] = shuffled(&std::array::from_fn(|i| i as u8), &js);
            let mut seen = p;
            seen.sort();
            assert_eq!(seen, std::array::from_fn(|i| i as u8));
            where_zero[p.iter().position(|&x| x == 0).unwrap()] += 1.0;
        }
        // Critical values at p = 0.001: 103.4 (63 degrees of freedom), 100.9 (60), 10.8 (1).
        for (name, counts, critical) in [
            ("zero's place", &where_zero[..], 103.4),
            ("draw 0", &first[..], 103.4),
            ("draw 3", &fourth[..], 100.9),
            ("draw 62", &last[..], 10.8),
        ] {
            let x2 = chi_square_uniform(counts);
            assert!(x2 < critical, "{name}: chi-square {x2:.1}");
        }
    }

    /// The draws of one shuffle the plain way: each group of four from the next
    /// accepted word of the stream.
    fn reference_draws(g: &mut Prg) -> [u8; 63] {
        let mut js = [0u8; 63];
        for (group, &reject_below) in GROUP_REJECT_BELOW.iter().enumerate() {
            let digits = loop {
                let mut w = [0u8; 4];
                g.0.fill_bytes(&mut w);
                let (digits, fraction) = group_draws(u32::from_le_bytes(w), group);
                if fraction >= reject_below {
                    break digits;
                }
            };
            let at = 4 * group..(4 * group + 4).min(63);
            let len = at.len();
            js[at].copy_from_slice(&digits[..len]);
        }
        js
    }

    #[test]
    fn every_cpu_variant_of_the_shuffle_draws_follows_the_plain_rule_through_rejections_too() {
        let (mut fast, mut portable, mut plain) = (Prg::protocol(5, "shuffle"), Prg::protocol(5, "shuffle"), Prg::protocol(5, "shuffle"));
        #[cfg(target_arch = "x86_64")]
        let mut avx2 = Prg::protocol(5, "shuffle");
        let mut rejections = 0;
        for _ in 0..100_000 {
            let before = fast.bytes_drawn();
            let (mut js, mut js_portable) = ([0u8; 63], [0u8; 63]);
            fast.fisher_yates(std::slice::from_mut(&mut js));
            portable.fisher_yates_with(&mut js_portable, draws_any);
            rejections += (fast.bytes_drawn() - before > 64) as usize;
            let expected = reference_draws(&mut plain);
            assert_eq!((js, js_portable), (expected, expected));
            assert_eq!((fast.bytes_drawn(), portable.bytes_drawn()), (plain.bytes_drawn(), plain.bytes_drawn()));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let mut js_avx2 = [0u8; 63];
                // Safety: the variant's features were just detected.
                unsafe { avx2.fisher_yates_avx2(std::slice::from_mut(&mut js_avx2)) };
                assert_eq!((js_avx2, avx2.bytes_drawn()), (expected, plain.bytes_drawn()));
            }
        }
        // About 0.7% of shuffles meet a rejected word.
        assert!((300..1500).contains(&rejections), "{rejections} shuffles with a rejection");
    }

    #[test]
    fn every_cpu_variant_draws_the_same_field_elements() {
        // Lengths that end in a short block, and enough blocks to meet rejections.
        for n in [1, 63, 64, 65, 5000] {
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
