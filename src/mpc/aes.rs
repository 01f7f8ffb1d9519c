//! AES-128 in counter mode for `Keystream`: the stream of the parties' generators
//! (their own and the pairwise common ones). Block i of the stream is AES_k(i), i a
//! 128-bit little-endian counter from 0, the usual way MPC implementations expand a
//! seed. Where the CPU has VAES (AES rounds on four blocks per 512-bit register, or
//! two per 256-bit register without AVX-512) the 64 blocks of a refill are computed
//! here, at about twice ChaCha8's speed on an AVX-512 machine (`cargo run --release
//! --example kernels_bench`, two runs: 17.8 and 19.2 GB/s against 9.5); elsewhere the
//! `aes` crate computes the same blocks (with AES-NI, ARMv8 or constant-time software).

use super::keystream::BUFFER;
use aes::cipher::{BlockEncrypt, KeyInit};

/// AES blocks per refill.
const BLOCKS: usize = BUFFER / 16;

pub struct Aes128Ctr {
    kernel: Kernel,
    /// The next counter.
    block: u64,
}

/// Who computes the blocks.
enum Kernel {
    /// Our VAES code on 512-bit registers, with the expanded key.
    #[cfg(target_arch = "x86_64")]
    Vaes([[u8; 16]; 11]),
    /// Our VAES code on 256-bit registers (CPUs with VAES but no AVX-512).
    #[cfg(target_arch = "x86_64")]
    Vaes256([[u8; 16]; 11]),
    /// The `aes` crate.
    Portable(Box<aes::Aes128>),
}

impl Aes128Ctr {
    pub fn new(key: [u8; 16]) -> Aes128Ctr {
        #[cfg(target_arch = "x86_64")]
        if super::cpu::vaes() {
            // Safety: `vaes` implies AES-NI, which `expand_key` needs.
            return Aes128Ctr { kernel: Kernel::Vaes(unsafe { expand_key(key) }), block: 0 };
        }
        #[cfg(target_arch = "x86_64")]
        if super::cpu::vaes256() {
            // Safety: as above.
            return Aes128Ctr { kernel: Kernel::Vaes256(unsafe { expand_key(key) }), block: 0 };
        }
        Aes128Ctr::portable(key)
    }

    fn portable(key: [u8; 16]) -> Aes128Ctr {
        Aes128Ctr { kernel: Kernel::Portable(Box::new(aes::Aes128::new(&key.into()))), block: 0 }
    }

    /// The next BUFFER bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8; BUFFER]) {
        match &self.kernel {
            // Safety: the VAES kernel is chosen only where `cpu::vaes` found its features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes(keys) => unsafe { blocks_vaes(keys, self.block, out) },
            // Safety: as above, with `cpu::vaes256`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Vaes256(keys) => unsafe { blocks_vaes256(keys, self.block, out) },
            Kernel::Portable(cipher) => {
                let mut blocks: [aes::Block; BLOCKS] = std::array::from_fn(|i| ((self.block + i as u64) as u128).to_le_bytes().into());
                cipher.encrypt_blocks(&mut blocks);
                for (out, block) in out.chunks_exact_mut(16).zip(&blocks) {
                    out.copy_from_slice(block);
                }
            }
        }
        // A stream would need 2^68 bytes to run past a 64-bit counter.
        self.block += BLOCKS as u64;
    }
}

/// The eleven round keys of AES-128, with AES-NI's key-schedule step.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes")]
fn expand_key(key: [u8; 16]) -> [[u8; 16]; 11] {
    use std::arch::x86_64::*;
    /// Round key r + 1 from round key r: its words xored cumulatively (two shifted
    /// xors), then with the rotated, substituted last word and the round constant.
    #[target_feature(enable = "aes")]
    fn next<const RCON: i32>(k: __m128i) -> __m128i {
        let t = _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<RCON>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<4>(k));
        let k = _mm_xor_si128(k, _mm_slli_si128::<8>(k));
        _mm_xor_si128(k, t)
    }
    // Safety: an unaligned load of the key's 16 bytes.
    let k0 = unsafe { _mm_loadu_si128(key.as_ptr().cast()) };
    let k1 = next::<0x01>(k0);
    let k2 = next::<0x02>(k1);
    let k3 = next::<0x04>(k2);
    let k4 = next::<0x08>(k3);
    let k5 = next::<0x10>(k4);
    let k6 = next::<0x20>(k5);
    let k7 = next::<0x40>(k6);
    let k8 = next::<0x80>(k7);
    let k9 = next::<0x1b>(k8);
    let k10 = next::<0x36>(k9);
    let mut out = [[0u8; 16]; 11];
    for (out, k) in out.iter_mut().zip([k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10]) {
        // Safety: an unaligned store of 16 bytes into a 16-byte array.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), k) };
    }
    out
}

/// 64 blocks from counter `first`, four per register: two passes of eight registers,
/// so that the eight independent AES chains hide each round's latency.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,vaes")]
fn blocks_vaes(keys: &[[u8; 16]; 11], first: u64, out: &mut [u8; BUFFER]) {
    use std::arch::x86_64::*;
    // Safety: unaligned loads of 16-byte arrays.
    let rk: [__m512i; 11] = std::array::from_fn(|r| _mm512_broadcast_i32x4(unsafe { _mm_loadu_si128(keys[r].as_ptr().cast()) }));
    for pass in 0..2 {
        let mut x: [__m512i; 8] = std::array::from_fn(|i| {
            // Lane q of register i: counter c + q, high half zero.
            let c = first.wrapping_add((32 * pass + 4 * i) as u64) as i64;
            let counters = _mm512_set_epi64(0, c.wrapping_add(3), 0, c.wrapping_add(2), 0, c.wrapping_add(1), 0, c);
            _mm512_xor_si512(counters, rk[0])
        });
        for rk in &rk[1..10] {
            for x in &mut x {
                *x = _mm512_aesenc_epi128(*x, *rk);
            }
        }
        for (i, x) in x.iter().enumerate() {
            let at = 512 * pass + 64 * i;
            // Safety: an unaligned store of 64 bytes at `at`, with at + 64 <= BUFFER.
            unsafe { _mm512_storeu_si512(out[at..at + 64].as_mut_ptr().cast(), _mm512_aesenclast_epi128(*x, rk[10])) };
        }
    }
}

/// `blocks_vaes` with two blocks per 256-bit register: four passes of eight
/// registers. Eight states and eleven round keys do not fit in sixteen registers, and
/// LLVM then ran each state through all ten rounds before the next (one chain of
/// dependent AES instructions at a time); `in_registers` after each round keeps the
/// eight chains side by side: 1.07-1.30x the refills per second (a scratch benchmark
/// alternating both, six runs in two processes; this CPU's VAES rate allows about
/// 19 GB/s, and the new kernel reached 14.7-17.1).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,vaes")]
fn blocks_vaes256(keys: &[[u8; 16]; 11], first: u64, out: &mut [u8; BUFFER]) {
    use std::arch::x86_64::*;
    // Safety: unaligned loads of 16-byte arrays.
    let rk: [__m256i; 11] = std::array::from_fn(|r| _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(keys[r].as_ptr().cast()) }));
    for pass in 0..4 {
        let mut x: [__m256i; 8] = std::array::from_fn(|i| {
            // Lane q of register i: counter c + q, high half zero.
            let c = first.wrapping_add((16 * pass + 2 * i) as u64) as i64;
            _mm256_xor_si256(_mm256_set_epi64x(0, c.wrapping_add(1), 0, c), rk[0])
        });
        for rk in &rk[1..10] {
            for x in &mut x {
                *x = _mm256_aesenc_epi128(*x, *rk);
            }
            in_registers(&mut x);
        }
        for (i, x) in x.iter().enumerate() {
            let at = 256 * pass + 32 * i;
            // Safety: an unaligned store of 32 bytes at `at`, with at + 32 <= BUFFER.
            unsafe { _mm256_storeu_si256(out[at..at + 32].as_mut_ptr().cast(), _mm256_aesenclast_epi128(*x, rk[10])) };
        }
    }
}

/// Makes all eight states live in registers at this point of the program: an empty
/// `asm!` that reads and writes them, so that the compiler must finish each state's
/// round before the next round of any of them. It emits no instruction.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn in_registers(x: &mut [std::arch::x86_64::__m256i; 8]) {
    // Safety: the template is empty: it reads no memory, writes nothing, and leaves
    // the registers as they were.
    unsafe {
        std::arch::asm!(
            "/* {0} {1} {2} {3} {4} {5} {6} {7} */",
            inout(ymm_reg) x[0], inout(ymm_reg) x[1], inout(ymm_reg) x[2], inout(ymm_reg) x[3],
            inout(ymm_reg) x[4], inout(ymm_reg) x[5], inout(ymm_reg) x[6], inout(ymm_reg) x[7],
            options(pure, nomem, nostack, preserves_flags),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_aes_of_the_counter() {
        // FIPS-197 Appendix C.1: this key encrypts 00112233...ff to 69c4e0d8...c55a.
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let mut block: aes::Block = std::array::from_fn::<u8, 16, _>(|i| (i as u8) * 0x11).into();
        aes::Aes128::new(&key.into()).encrypt_block(&mut block);
        let expected = [0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4, 0xc5, 0x5a];
        assert_eq!(block.as_slice(), expected);
        // The stream: blocks AES_k(0), AES_k(1), ... from the kernel this CPU picks.
        let mut ctr = Aes128Ctr::new(key);
        let mut out = [0u8; BUFFER];
        for refill in 0..3u64 {
            ctr.fill(&mut out);
            for (i, got) in out.chunks_exact(16).enumerate() {
                let mut b: aes::Block = ((64 * refill + i as u64) as u128).to_le_bytes().into();
                aes::Aes128::new(&key.into()).encrypt_block(&mut b);
                assert_eq!(got, b.as_slice(), "refill {refill}, block {i}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_256_bit_vaes_kernel_gives_the_portable_blocks() {
        crate::mpc::cpu::note_skipped("the_256_bit_vaes_kernel_gives_the_portable_blocks", &[("256-bit VAES", crate::mpc::cpu::vaes256())]);
        if !crate::mpc::cpu::vaes256() {
            return;
        }
        let key: [u8; 16] = std::array::from_fn(|i| (i * 37) as u8);
        // Safety: `vaes256` found the features.
        let keys = unsafe { expand_key(key) };
        for start in [0, (1u64 << 32) - 7] {
            let mut portable = Aes128Ctr::portable(key);
            portable.block = start;
            let (mut a, mut b) = ([0u8; BUFFER], [0u8; BUFFER]);
            // Safety: as above.
            unsafe { blocks_vaes256(&keys, start, &mut a) };
            portable.fill(&mut b);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn the_vaes_kernel_gives_the_portable_blocks() {
        // `Aes128Ctr::new` takes the 512-bit kernel where there is one, else the 256-bit one.
        crate::mpc::cpu::note_skipped("the_vaes_kernel_gives_the_portable_blocks", &[("512-bit VAES", crate::mpc::cpu::vaes())]);
        for key in [[0u8; 16], [0xa5; 16], std::array::from_fn(|i| (i * 37) as u8)] {
            let (mut fast, mut portable) = (Aes128Ctr::new(key), Aes128Ctr::portable(key));
            // Counters near a 32-bit boundary too.
            for start in [0, (1u64 << 32) - 7] {
                (fast.block, portable.block) = (start, start);
                let (mut a, mut b) = ([0u8; BUFFER], [0u8; BUFFER]);
                fast.fill(&mut a);
                portable.fill(&mut b);
                assert_eq!(a, b);
            }
        }
    }
}
