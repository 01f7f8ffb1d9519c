//! ChaCha8 blocks for `Keystream`: the stream of every generator outside the
//! protocol (model initialisation, training, generated inputs).
//!
//! The stream is exactly `rand_chacha::ChaCha8Rng`'s (key = seed, stream 0, block
//! counter from 0), so it is the same on every CPU. Where AVX-512 is present the
//! sixteen blocks of a refill are computed side by side, one block per 32-bit lane,
//! with native rotates (`cargo run --release --example kernels_bench` compares it
//! with `rand_chacha`). Elsewhere `rand_chacha` computes them.

use super::keystream::BUFFER;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

pub struct ChaCha8 {
    key: [u8; 32],
    /// The next 64-byte block to compute.
    block: u64,
    /// The portable path keeps its own generator, positioned at `block`.
    fallback: Option<Box<ChaCha8Rng>>,
}

impl ChaCha8 {
    pub fn new(key: [u8; 32]) -> ChaCha8 {
        let fallback = if wide_kernel_available() { None } else { Some(Box::new(ChaCha8Rng::from_seed(key))) };
        ChaCha8 { key, block: 0, fallback }
    }

    /// The next BUFFER bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8; BUFFER]) {
        match &mut self.fallback {
            Some(rng) => rng.fill_bytes(out),
            // Safety: `fallback` is None only where `wide_kernel_available` said yes.
            #[cfg(target_arch = "x86_64")]
            None => unsafe { blocks_avx512(&self.key, self.block, out) },
            #[cfg(not(target_arch = "x86_64"))]
            None => unreachable!("no wide kernel off x86-64"),
        }
        self.block += (BUFFER / 64) as u64;
    }
}

fn wide_kernel_available() -> bool {
    super::cpu::simd() == super::cpu::Simd::Avx512
}

/// The sixteen blocks with the state in sixteen 512-bit registers, one block per
/// lane; written with intrinsics because a portable version, left to the compiler,
/// kept the state in memory and ran slower than `rand_chacha`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
fn blocks_avx512(key: &[u8; 32], first: u64, out: &mut [u8; BUFFER]) {
    use std::arch::x86_64::*;
    let word = |w: usize| u32::from_le_bytes(key[4 * w..4 * w + 4].try_into().expect("four bytes")) as i32;
    let lanes: [u64; 16] = std::array::from_fn(|l| first + l as u64);
    let low: [u32; 16] = std::array::from_fn(|l| lanes[l] as u32);
    let high: [u32; 16] = std::array::from_fn(|l| (lanes[l] >> 32) as u32);
    // Safety: unaligned loads from arrays of exactly 64 bytes.
    let (low, high) = unsafe { (_mm512_loadu_si512(low.as_ptr().cast()), _mm512_loadu_si512(high.as_ptr().cast())) };
    let init: [__m512i; 16] = [
        _mm512_set1_epi32(0x6170_7865),
        _mm512_set1_epi32(0x3320_646e),
        _mm512_set1_epi32(0x7962_2d32),
        _mm512_set1_epi32(0x6b20_6574),
        _mm512_set1_epi32(word(0)),
        _mm512_set1_epi32(word(1)),
        _mm512_set1_epi32(word(2)),
        _mm512_set1_epi32(word(3)),
        _mm512_set1_epi32(word(4)),
        _mm512_set1_epi32(word(5)),
        _mm512_set1_epi32(word(6)),
        _mm512_set1_epi32(word(7)),
        low,
        high,
        _mm512_setzero_si512(),
        _mm512_setzero_si512(),
    ];
    let mut x = init;
    macro_rules! quarter {
        ($a:expr, $b:expr, $c:expr, $d:expr) => {
            x[$a] = _mm512_add_epi32(x[$a], x[$b]);
            x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
            x[$c] = _mm512_add_epi32(x[$c], x[$d]);
            x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
            x[$a] = _mm512_add_epi32(x[$a], x[$b]);
            x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
            x[$c] = _mm512_add_epi32(x[$c], x[$d]);
            x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
        };
    }
    for _ in 0..4 {
        quarter!(0, 4, 8, 12);
        quarter!(1, 5, 9, 13);
        quarter!(2, 6, 10, 14);
        quarter!(3, 7, 11, 15);
        quarter!(0, 5, 10, 15);
        quarter!(1, 6, 11, 12);
        quarter!(2, 7, 8, 13);
        quarter!(3, 4, 9, 14);
    }
    for (w, iw) in x.iter_mut().zip(&init) {
        *w = _mm512_add_epi32(*w, *iw);
    }
    // Transpose: register w holds word w of the sixteen blocks; block l's bytes are
    // its sixteen words. First 32- and 64-bit interleaves inside each 128-bit lane:
    // u[4 g + j], lane q, holds words 4g .. 4g + 3 of block 4 q + j.
    let mut t = [_mm512_setzero_si512(); 16];
    for w in (0..16).step_by(2) {
        t[w] = _mm512_unpacklo_epi32(x[w], x[w + 1]);
        t[w + 1] = _mm512_unpackhi_epi32(x[w], x[w + 1]);
    }
    let mut u = [_mm512_setzero_si512(); 16];
    for w in (0..16).step_by(4) {
        u[w] = _mm512_unpacklo_epi64(t[w], t[w + 2]);
        u[w + 1] = _mm512_unpackhi_epi64(t[w], t[w + 2]);
        u[w + 2] = _mm512_unpacklo_epi64(t[w + 1], t[w + 3]);
        u[w + 3] = _mm512_unpackhi_epi64(t[w + 1], t[w + 3]);
    }
    // Then a 4 x 4 transpose of 128-bit lanes for each j.
    for j in 0..4 {
        let (a0, a1, a2, a3) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
        let p0 = _mm512_shuffle_i32x4::<0x44>(a0, a1);
        let p1 = _mm512_shuffle_i32x4::<0xee>(a0, a1);
        let p2 = _mm512_shuffle_i32x4::<0x44>(a2, a3);
        let p3 = _mm512_shuffle_i32x4::<0xee>(a2, a3);
        let blocks = [
            _mm512_shuffle_i32x4::<0x88>(p0, p2),
            _mm512_shuffle_i32x4::<0xdd>(p0, p2),
            _mm512_shuffle_i32x4::<0x88>(p1, p3),
            _mm512_shuffle_i32x4::<0xdd>(p1, p3),
        ];
        for (q, block) in blocks.into_iter().enumerate() {
            let at = 64 * (4 * q + j);
            // Safety: an unaligned store of 64 bytes at `at`, with at + 64 <= BUFFER.
            unsafe { _mm512_storeu_si512(out[at..at + 64].as_mut_ptr().cast(), block) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_rand_chachas_chacha8() {
        for key in [[0u8; 32], [7u8; 32], std::array::from_fn(|i| (i * 37) as u8)] {
            let mut reference = vec![0u8; 5 * BUFFER];
            ChaCha8Rng::from_seed(key).fill_bytes(&mut reference);
            // The kernel this CPU picks, and the portable path whatever this CPU has.
            let mut portable = ChaCha8::new(key);
            portable.fallback = Some(Box::new(ChaCha8Rng::from_seed(key)));
            for mut source in [ChaCha8::new(key), portable] {
                let mut out = [0u8; BUFFER];
                for expected in reference.chunks_exact(BUFFER) {
                    source.fill(&mut out);
                    assert_eq!(&out[..], expected);
                }
            }
        }
    }

    #[test]
    fn the_block_function_matches_the_reference_at_high_counters() {
        // Counters whose low word wraps inside the sixteen blocks.
        let key = [3u8; 32];
        let first = (1u64 << 32) - 5;
        if !wide_kernel_available() {
            return;
        }
        let mut wide = [0u8; BUFFER];
        // Safety: the kernel's features were just detected.
        unsafe { blocks_avx512(&key, first, &mut wide) };
        let mut reference = ChaCha8Rng::from_seed(key);
        reference.set_word_pos(first as u128 * 16);
        let mut expected = [0u8; BUFFER];
        reference.fill_bytes(&mut expected);
        assert_eq!(wide, expected);
    }
}
