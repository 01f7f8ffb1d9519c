//! Speed of the simulator's two kernels against what this machine allows:
//!
//!     cargo run --release --example kernels_bench
//!
//! - the two keystreams, in GB/s: AES-128 in counter mode (the parties'
//!   randomness), and ChaCha8 (everything else) against `rand_chacha`'s ChaCha8Rng,
//!   the same stream;
//! - the ring matrix product on a CIFAR-10 convolution's shape (64 x 576 times
//!   576 x 1024), against a loop of the same vector multiply-adds on registers alone
//!   (the AVX-512 kernel's, or the AVX2 kernel's where AVX-512 is missing), in G
//!   multiply-accumulates per second.
//!
//! - PrivateCompare on 65,536 values (one thread, P0's and P1's terms, P2's check and
//!   the counting and hashing of the messages, randomness included), as specified and
//!   with its permutation left out, in ns per value: the difference is the rotation;
//!   and DReLU of 65,536 values (a 64 x 32 x 32 layer), in ns per value.
//!
//! Each figure is the median of five runs.

use explore::mpc::Ctx;
use explore::mpc::Shares;
use explore::mpc::keystream::Keystream;
use explore::mpc::matmul::matmul;
use explore::mpc::prg::Prg;
use explore::mpc::protocols::{Variant, drelu, private_compare_with};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use std::time::Instant;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_rate(work: f64, mut f: impl FnMut()) -> f64 {
    f();
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            work / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn main() {
    explore::allocator::keep_freed_memory();
    // 128 MiB in pieces of 32 KiB, which stay in cache as the protocols' draws do (one
    // large buffer would measure the memory's write speed instead).
    let mut buf = vec![0u8; 1 << 15];
    let pieces = 4096;
    let mut ours = Keystream::chacha8([1; 32]);
    let mut theirs = ChaCha8Rng::from_seed([1; 32]);
    let len = (buf.len() * pieces) as f64;
    let mut aes = Keystream::aes128([1; 16]);
    println!("AES-128-CTR keystream: {:.2} GB/s", median_rate(len, || (0..pieces).for_each(|_| aes.fill_bytes(&mut buf))) / 1e9);
    println!("ChaCha8 keystream: {:.2} GB/s", median_rate(len, || (0..pieces).for_each(|_| ours.fill_bytes(&mut buf))) / 1e9);
    println!("rand_chacha ChaCha8Rng: {:.2} GB/s", median_rate(len, || (0..pieces).for_each(|_| theirs.fill_bytes(&mut buf))) / 1e9);

    let (m, n, v) = (64, 576, 1024);
    let mut g = Prg::new(1, "kernels");
    let (a, b) = (g.ring(m * n), g.ring(n * v));
    let macs = (m * n * v) as f64;
    println!("ring product {m}x{n} x {n}x{v}: {:.1} G/s", median_rate(macs, || drop(std::hint::black_box(matmul(&a, &b, m, n, v)))) / 1e9);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512dq") {
        let rounds = 10_000_000;
        // Safety: the features were just detected.
        let rate = median_rate((rounds * 128) as f64, || {
            std::hint::black_box(unsafe { registers_only(rounds) });
        });
        println!("register-only multiply-adds: {:.1} G/s", rate / 1e9);
    } else if std::arch::is_x86_feature_detected!("avx2") {
        let rounds = 10_000_000;
        // Safety: as above.
        // Counted as the multiply-accumulates the pairs stand for, as the kernel's rate is.
        let rate = median_rate((rounds * 32) as f64, || {
            std::hint::black_box(unsafe { registers_only_avx2(rounds) });
        });
        println!("register-only multiply-adds (AVX2 kernel's step): {:.1} G/s", rate / 1e9);
    }

    let n = 65536;
    let (x0, x1, r, beta) = (g.field(64 * n), g.field(64 * n), g.ring(n), g.bits(n));
    let mut ctx = Ctx::new(3, 13);
    for variant in [Variant::Secure, Variant::LeakyNoPermutation] {
        let rate =
            median_rate(n as f64, || drop(std::hint::black_box(private_compare_with(&mut ctx, r.len(), &x0, &x1, &r, &beta, variant))));
        println!("PrivateCompare ({variant:?}): {:.1} ns per value", 1e9 / rate);
    }
    // A whole 64 x 32 x 32 layer's DReLU: two PrivateCompares per value, and the rest.
    let raw: Vec<u64> = g.ring(n).iter().map(|v| ((*v as i64) >> 3) as u64).collect();
    let a = Shares::share(&raw, &mut g);
    let rate = median_rate(n as f64, || drop(std::hint::black_box(drelu(&mut ctx, &a))));
    println!("DReLU: {:.1} ns per value", 1e9 / rate);
}

/// The product kernel's inner step without memory: 8 broadcasts times 2 vectors
/// into 16 accumulators, `rounds` times.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
fn registers_only(rounds: usize) -> i64 {
    use std::arch::x86_64::*;
    let seed = std::hint::black_box(3i64);
    let mut acc = [_mm512_set1_epi64(seed); 16];
    let (b0, b1) = (_mm512_set1_epi64(seed | 1), _mm512_set1_epi64(seed | 5));
    let mut k = seed;
    for _ in 0..rounds {
        for r in 0..8 {
            let a = _mm512_set1_epi64(k + r as i64);
            acc[2 * r] = _mm512_add_epi64(acc[2 * r], _mm512_mullo_epi64(a, b0));
            acc[2 * r + 1] = _mm512_add_epi64(acc[2 * r + 1], _mm512_mullo_epi64(a, b1));
        }
        k = k.wrapping_add(7);
    }
    let sum = acc.iter().fold(_mm512_setzero_si512(), |s, a| _mm512_add_epi64(s, *a));
    _mm512_reduce_add_epi64(sum)
}

/// The AVX2 product kernel's inner step without memory: for 2 rows and 2 vectors,
/// the two sums of a pair of depths, the swap, one `vpmuludq` and one `vpmulld` into
/// 8 accumulators, `rounds` times (32 multiply-accumulates per round).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn registers_only_avx2(rounds: usize) -> i64 {
    use std::arch::x86_64::*;
    let seed = std::hint::black_box(3i64);
    let (mut lo, mut cross) = ([_mm256_set1_epi64x(seed); 4], [_mm256_set1_epi64x(seed); 4]);
    let b: [__m256i; 4] = std::array::from_fn(|i| _mm256_set1_epi64x(seed | (7 * i as i64 + 1)));
    // The kernel broadcasts A's entries from memory (L1); so does this loop.
    let xs: [i64; 64] = std::hint::black_box(std::array::from_fn(|i| seed + i as i64));
    for q in 0..rounds {
        let x = &xs[(4 * q) % 64..][..4];
        for r in 0..2 {
            let (x0, x1) = (_mm256_set1_epi64x(x[2 * r]), _mm256_set1_epi64x(x[2 * r + 1]));
            for h in 0..2 {
                let (s, t) = (_mm256_add_epi64(x0, b[2 + h]), _mm256_add_epi64(x1, b[h]));
                lo[2 * r + h] = _mm256_add_epi64(lo[2 * r + h], _mm256_mul_epu32(s, t));
                let swapped = _mm256_shuffle_epi32::<0b10_11_00_01>(t);
                cross[2 * r + h] = _mm256_add_epi32(cross[2 * r + h], _mm256_mullo_epi32(s, swapped));
            }
        }
    }
    let sum = lo.iter().chain(&cross).fold(_mm256_setzero_si256(), |s, a| _mm256_add_epi64(s, *a));
    _mm256_extract_epi64::<0>(sum)
}
