//! PrivateCompare's local arithmetic (SecureNN Algorithm 3, steps 2-5 for P0 and
//! P1): for every value, the 64 masked and permuted terms d_i that each of them sends
//! P2; and P2's dealing of the bit shares they start from. The protocol around it,
//! with its messages, is `protocols::private_compare`. This is the hottest loop of
//! secure inference (`kernels_bench` times it), so it comes three times: portable
//! code, AVX-512 code that works on one value's 64 terms per register, and AVX2 code
//! with two registers per value. Tests check that all send the same bytes.

use super::cpu::{Simd, simd};
use super::prg::Prg;
use super::ring::*;

/// PrivateCompare as specified, or with a part left out that keeps its output
/// right and leaks: without the permutation the position of the zero tells P2 where
/// x and r first differ; without the common shares of zero P2 sees each party's
/// s_i c_i apart, and their ratio c0_i / c1_i. Only the view tests use the leaky
/// variants, to show that they catch them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Secure,
    LeakyNoPermutation,
    LeakyNoZeroShares,
}

/// What P0 and P1 hold for a PrivateCompare (see `protocols::private_compare`).
pub(super) struct Compare<'a> {
    pub x0: &'a [u8],
    pub x1: &'a [u8],
    pub r: &'a [u64],
    pub beta: &'a [u8],
    pub variant: Variant,
}

impl Compare<'_> {
    /// beta = 1 and r = 2^64 - 1: x <= r holds whatever x is, and c_i has no formula.
    fn is_corner(&self, k: usize) -> bool {
        self.beta[k] == 1 && self.r[k] == u64::MAX
    }
}

/// One value's share of the common randomness (k01): multipliers s_i in Z_67*, shares
/// of zero that hide each party's d_i from P2, and its permutation.
struct Draws<'a> {
    s: &'a [u8; 64],
    zero: &'a [u8; 64],
    /// The permutation pi: place i receives term (i + shift) mod 64.
    shift: u8,
}

/// P0's and P1's messages in PrivateCompare, appended to `d0` and `d1`, 64 per value.
pub(super) fn masked_terms(k01: &mut Prg, input: &Compare, d0: &mut Vec<u8>, d1: &mut Vec<u8>) {
    match simd() {
        // Safety: `simd` found the features these variants are compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { masked_terms_avx512(k01, input, d0, d1) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { masked_terms_avx2(k01, input, d0, d1) },
        _ => masked_terms_any(k01, input, d0, d1),
    }
}

/// Values go in blocks, so that a block's common randomness stays in cache.
const BLOCK: usize = 64;

/// The common randomness (k01) of a block of values, drawn in one order that every
/// variant keeps: multipliers s_i in Z_67*, shares of zero that hide each party's
/// d_i from P2, and each value's permutation, a rotation of the 64 places.
///
/// Why a uniform rotation serves as well as a uniform permutation of all 64! (SecureNN
/// draws the latter): P2 sees the d_i = s_i c_i (re-randomised into two shares by the
/// zero shares). At most one c_i is zero, at the highest bit where x and the threshold
/// differ, and every other s_i c_i is uniform on Z_67* and independent of the rest,
/// since s_i is. So what P2 sees depends on the inputs only through the place of that
/// zero, and a uniform rotation puts it in a uniform place, as a uniform permutation
/// does: P2's view has the same distribution. The rotation takes one byte of the stream;
/// Fisher-Yates took 64 bytes and a chain of 63 dependent swaps: PrivateCompare took
/// 159-226 ns per value with it and 92-131 with the rotation on the AVX2 machine
/// (`kernels_bench`, four alternating runs of 2dafb6b and 9cefb9d).
struct Block {
    s: [u8; BLOCK * 64],
    zero: [u8; BLOCK * 64],
    shifts: [u8; BLOCK],
}

impl Block {
    fn new() -> Block {
        Block { s: [0; BLOCK * 64], zero: [0; BLOCK * 64], shifts: [0; BLOCK] }
    }

    /// Draws for the next `m` values. The leaky variants draw the same stream and
    /// then leave every value unrotated, or every share of zero 0.
    #[inline(always)]
    fn draw(&mut self, k01: &mut Prg, m: usize, variant: Variant) {
        k01.fill_field_nonzero(&mut self.s[..m * 64]);
        k01.fill_field(&mut self.zero[..m * 64]);
        k01.fill_rotations(&mut self.shifts[..m]);
        match variant {
            Variant::Secure => {}
            Variant::LeakyNoPermutation => self.shifts[..m].fill(0),
            Variant::LeakyNoZeroShares => self.zero[..m * 64].fill(0),
        }
    }

    /// Value i's part.
    fn draws(&self, i: usize) -> Draws<'_> {
        let places = i * 64..(i + 1) * 64;
        Draws {
            s: self.s[places.clone()].try_into().expect("64 places"),
            zero: self.zero[places].try_into().expect("64 places"),
            shift: self.shifts[i],
        }
    }
}

/// Calls `term(k01, k, draws)` for each value k in order, a block's common randomness
/// drawn before its values.
#[inline(always)]
fn for_each_value(k01: &mut Prg, input: &Compare, mut term: impl FnMut(&mut Prg, usize, &Draws)) {
    let (n, mut block) = (input.r.len(), Block::new());
    for start in (0..n).step_by(BLOCK) {
        let m = (n - start).min(BLOCK);
        block.draw(k01, m, input.variant);
        for i in 0..m {
            term(k01, start + i, &block.draws(i));
        }
    }
}

#[inline(always)]
fn masked_terms_any(k01: &mut Prg, input: &Compare, d0: &mut Vec<u8>, d1: &mut Vec<u8>) {
    for_each_value(k01, input, |k01, k, draws| {
        let mut d = masked_value(k01, input, k, draws);
        // The common permutation, so that P2 cannot tell where a zero sits.
        d.rotate_left(draws.shift as usize);
        d0.extend_from_slice(&d.map(|v| v as u8));
        d1.extend_from_slice(&d.map(|v| (v >> 8) as u8));
    })
}

/// `masked_terms_any` with each value's 64 terms in two registers per party (bytes
/// reduced mod 67 after every step, as in the AVX-512 kernel), rotated through
/// memory: AVX2 has no byte shuffle across a whole register, and four in-lane
/// shuffles per output register ran 2% slower (PrivateCompare, in one process).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masked_terms_avx2(k01: &mut Prg, input: &Compare, d0: &mut Vec<u8>, d1: &mut Vec<u8>) {
    use std::arch::x86_64::*;
    for_each_value(k01, input, |k01, k, draws| {
        let (e0, e1) = if input.is_corner(k) {
            let d = masked_value(k01, input, k, draws);
            let (b0, b1): ([u8; 64], [u8; 64]) = (d.map(|v| v as u8), d.map(|v| (v >> 8) as u8));
            // Safety: each load reads 32 of b0's or b1's 64 bytes.
            unsafe {
                (
                    [_mm256_loadu_si256(b0.as_ptr().cast()), _mm256_loadu_si256(b0[32..].as_ptr().cast())],
                    [_mm256_loadu_si256(b1.as_ptr().cast()), _mm256_loadu_si256(b1[32..].as_ptr().cast())],
                )
            }
        } else {
            // Safety: this function's features are those `masked_value_avx2` needs.
            unsafe { masked_value_avx2(input, k, draws) }
        };
        // Safety: the stores write 32 bytes each into 128-byte arrays, at 0, 32, 64 and 96.
        unsafe {
            // Place i receives term (i + shift) mod 64: the 64 terms twice in a row, read from shift on.
            let (mut b0, mut b1) = ([0u8; 128], [0u8; 128]);
            for h in 0..4 {
                _mm256_storeu_si256(b0[32 * h..].as_mut_ptr().cast(), e0[h % 2]);
                _mm256_storeu_si256(b1[32 * h..].as_mut_ptr().cast(), e1[h % 2]);
            }
            let shift = draws.shift as usize;
            for (d, b) in [(&mut *d0, &b0), (&mut *d1, &b1)] {
                let from = b[shift..shift + 64].as_ptr();
                push64(d, [_mm256_loadu_si256(from.cast()), _mm256_loadu_si256(from.add(32).cast())]);
            }
        }
    })
}

/// Appends 64 bytes held in two registers to `v`, stored straight into its spare room:
/// `extend_from_slice` of a 64-byte array called memmove each time (about 1% of a
/// steady CIFAR-10 image's profile). Callers reserve room for all their values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn push64(v: &mut Vec<u8>, bytes: [std::arch::x86_64::__m256i; 2]) {
    use std::arch::x86_64::_mm256_storeu_si256;
    if v.capacity() - v.len() < 64 {
        v.reserve(64);
    }
    let at = v.len();
    // Safety: 64 bytes of room past the length; the two stores fill them.
    unsafe {
        let to = v.as_mut_ptr().add(at);
        _mm256_storeu_si256(to.cast(), bytes[0]);
        _mm256_storeu_si256(to.add(32).cast(), bytes[1]);
        v.set_len(at + 64);
    }
}

/// One value's d_i = s_i c_i, re-randomised by the zero shares, before the
/// permutation. Both parties' d_i go side by side in one u16 (P0 low byte), so that
/// one rotation moves both.
#[inline(always)]
fn masked_value(k01: &mut Prg, input: &Compare, k: usize, draws: &Draws) -> [u16; 64] {
    let bits = k * 64..(k + 1) * 64;
    let (c0, c1) = if input.is_corner(k) {
        corner_terms(k01)
    } else {
        compare_terms(&input.x0[bits.clone()], &input.x1[bits], input.r[k], input.beta[k])
    };
    let p = P as u16;
    std::array::from_fn(|i| {
        let (m, z) = (draws.s[i] as u16, draws.zero[i] as u16);
        let e0 = (m * (c0[i] % p) + z) % p;
        let e1 = (m * (c1[i] % p) + (p - z)) % p;
        e0 | e1 << 8
    })
}

/// The corner case (`Compare::is_corner`): shares of one 0 and 63 ones, from common
/// values u_i (drawn only here: P0 and P1 both see that the case arises).
#[cold]
fn corner_terms(k01: &mut Prg) -> ([u16; 64], [u16; 64]) {
    let u = k01.field(64);
    let c0 = std::array::from_fn(|i| u[i] as u16);
    let c1 = std::array::from_fn(|i| if i == 0 { f_neg(u[i]) } else { f_sub(1, u[i]) } as u16);
    (c0, c1)
}

/// Each party's shares of PrivateCompare's c_i for one value, before reduction mod 67
/// (every term is a small integer: sums stay below 64 * 68 + 3 * 67, inside u16).
///   beta = 0: t = r,     c_i = t_i - x_i + 1 + sum_{j>i} (x_j xor t_j): some c_i = 0 iff x > t;
///   beta = 1: t = r + 1, c_i = x_i - t_i + 1 + sum_{j>i} (x_j xor t_j): some c_i = 0 iff t > x.
/// Negative terms enter as p - value; P0 adds the public constants. Inputs and
/// outputs are placed as `deal_bits` places bits; the order of the c_i does not
/// matter, since they are permuted before P2 sees them.
///
/// The two parties' terms travel packed in one u32 (P0 low half, P1 high half; no
/// half ever borrows from or carries into the other). The sum over the bits above i
/// splits into the bits above i in its own byte (seven steps down the bit-rows, eight
/// bytes per step) and all of the higher bytes (one short scan of byte totals).
#[inline(always)]
fn compare_terms(x0: &[u8], x1: &[u8], r: u64, beta: u8) -> ([u16; 64], [u16; 64]) {
    const HIGH: u32 = 1 << 16;
    type Rows = [[u32; 8]; 8];
    let p = P as u32;
    // The caller has handled r = 2^64 - 1 with beta = 1.
    let t = r + beta as u64;
    // Row q, column b: bit 8 b + q of t, the packed shares, and w = x xor t on shares:
    // x_i where t_i = 0, 1 - x_i where t_i = 1, i.e. (1 + p - x_i0) and (p - x_i1).
    // Selected by masks, as t's bits and beta are random and branches on them would
    // mispredict half the time. (Plain loops: nested array::from_fn did not inline.)
    let (mut tb, mut a, mut xor): (Rows, Rows, Rows) = ([[0; 8]; 8], [[0; 8]; 8], [[0; 8]; 8]);
    for q in 0..8 {
        let t_row = ((t >> q) & 0x0101_0101_0101_0101).to_le_bytes();
        for b in 0..8 {
            tb[q][b] = t_row[b] as u32;
            a[q][b] = x0[8 * q + b] as u32 | ((x1[8 * q + b] as u32) * HIGH);
            let m = 0u32.wrapping_sub(tb[q][b]);
            xor[q][b] = (a[q][b] & !m) | (((1 + p) + p * HIGH - a[q][b]) & m);
        }
    }
    // Above i = 8 b + q: the higher bits of byte b, then every bit of bytes above b.
    let mut within = [[0u32; 8]; 8];
    for q in (0..7).rev() {
        for b in 0..8 {
            within[q][b] = within[q + 1][b] + xor[q + 1][b];
        }
    }
    let mut bytes_above = [0u32; 8];
    for b in (0..7).rev() {
        bytes_above[b] = bytes_above[b + 1] + within[0][b + 1] + xor[0][b + 1];
    }
    let mb = 0u32.wrapping_sub(beta as u32);
    let (mut c0, mut c1) = ([0u16; 64], [0u16; 64]);
    for q in 0..8 {
        for b in 0..8 {
            let when_0 = (tb[q][b] + 1 + p) + p * HIGH - a[q][b];
            let when_1 = a[q][b] + (p + 1 - tb[q][b]);
            let c = ((when_0 & !mb) | (when_1 & mb)) + within[q][b] + bytes_above[b];
            c0[8 * q + b] = c as u16;
            c1[8 * q + b] = (c >> 16) as u16;
        }
    }
    (c0, c1)
}

/// 0, 1, ..., 63: plus a value's shift mod 64, the term each place receives.
#[cfg(target_arch = "x86_64")]
const PLACES: [u8; 64] = {
    let mut p = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        p[i] = i as u8;
        i += 1;
    }
    p
};

/// `masked_terms_any` with each value's 64 terms in one register per party: bytes
/// reduced mod 67 after every step, as both shares and all sums stay below 67.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn masked_terms_avx512(k01: &mut Prg, input: &Compare, d0: &mut Vec<u8>, d1: &mut Vec<u8>) {
    use std::arch::x86_64::*;
    for_each_value(k01, input, |k01, k, draws| {
        let (lo, hi) = if input.is_corner(k) {
            let d = masked_value(k01, input, k, draws);
            // Safety: each load reads 32 of d's 64 u16.
            unsafe { (_mm512_loadu_si512(d.as_ptr().cast()), _mm512_loadu_si512(d[32..].as_ptr().cast())) }
        } else {
            // Safety: this function's features are those `masked_value_avx512` needs.
            unsafe { masked_value_avx512(input, k, draws) }
        };
        // Safety: the load reads PLACES' 64 bytes, stores write 32 bytes each of b0, b1.
        unsafe {
            // Place i receives term (i + shift) mod 64.
            let places = _mm512_loadu_si512(PLACES.as_ptr().cast());
            let at = _mm512_and_si512(_mm512_add_epi8(places, _mm512_set1_epi8(draws.shift as i8)), _mm512_set1_epi8(63));
            let (at_lo, at_hi) =
                (_mm512_cvtepu8_epi16(_mm512_castsi512_si256(at)), _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(at)));
            let (lo, hi) = (_mm512_permutex2var_epi16(lo, at_lo, hi), _mm512_permutex2var_epi16(lo, at_hi, hi));
            let (mut b0, mut b1) = ([0u8; 64], [0u8; 64]);
            _mm256_storeu_si256(b0.as_mut_ptr().cast(), _mm512_cvtepi16_epi8(lo));
            _mm256_storeu_si256(b0[32..].as_mut_ptr().cast(), _mm512_cvtepi16_epi8(hi));
            _mm256_storeu_si256(b1.as_mut_ptr().cast(), _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(lo)));
            _mm256_storeu_si256(b1[32..].as_mut_ptr().cast(), _mm512_cvtepi16_epi8(_mm512_srli_epi16::<8>(hi)));
            d0.extend_from_slice(&b0);
            d1.extend_from_slice(&b1);
        }
    })
}

/// `masked_value` for a value that is not a corner case, as two registers of 32
/// packed u16 (places 0-31, 32-63). The same formulas as `compare_terms`, on 64 byte
/// lanes: lane 8 q + b holds bit 8 b + q, so the sums over higher bits run down the
/// eight 64-bit rows (within a byte of x) and then along row 0's bytes (the bytes above).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
#[inline]
unsafe fn masked_value_avx512(input: &Compare, k: usize, draws: &Draws) -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    use z67::{add, bit_rows, sub};
    let (one, zero) = (_mm512_set1_epi8(1), _mm512_setzero_si512());
    let at = k * 64;
    // Safety: each load reads 64 bytes: a value's bit shares and its draws.
    let (x0, x1, s, z) = unsafe {
        (
            _mm512_loadu_si512(input.x0[at..at + 64].as_ptr().cast()),
            _mm512_loadu_si512(input.x1[at..at + 64].as_ptr().cast()),
            _mm512_loadu_si512(draws.s.as_ptr().cast()),
            _mm512_loadu_si512(draws.zero.as_ptr().cast()),
        )
    };
    let beta = input.beta[k];
    let t = input.r[k] + beta as u64;
    let tb = bit_rows(t);
    let t_set = _mm512_test_epi8_mask(tb, tb);
    // w = x xor t on shares: x where t_i = 0; 1 - x_i0 and -x_i1 where t_i = 1.
    let w0 = _mm512_mask_blend_epi8(t_set, x0, sub(one, x0));
    let w1 = _mm512_mask_blend_epi8(t_set, x1, sub(zero, x1));
    // Sum of w over the bits above each place.
    let above = |w| {
        // Rows below q (higher bits of the same byte): shift rows up and scan.
        let mut within = _mm512_alignr_epi64::<1>(zero, w);
        within = add(within, _mm512_alignr_epi64::<1>(zero, within));
        within = add(within, _mm512_alignr_epi64::<2>(zero, within));
        within = add(within, _mm512_alignr_epi64::<4>(zero, within));
        // Row 0 now holds each byte's total; bytes above b: shift bytes down and scan.
        let mut bytes = _mm512_srli_epi64::<8>(add(w, within));
        bytes = add(bytes, _mm512_srli_epi64::<8>(bytes));
        bytes = add(bytes, _mm512_srli_epi64::<16>(bytes));
        bytes = add(bytes, _mm512_srli_epi64::<32>(bytes));
        add(within, _mm512_broadcastq_epi64(_mm512_castsi512_si128(bytes)))
    };
    // beta = 0: c_i = t_i - x_i + 1 + sum, shares t_i + 1 - x_i0 and -x_i1;
    // beta = 1: c_i = x_i - t_i + 1 + sum, shares x_i0 + 1 - t_i and x_i1.
    let b_set: __mmask64 = 0u64.wrapping_sub(beta as u64);
    let c0 = _mm512_mask_blend_epi8(b_set, sub(_mm512_add_epi8(tb, one), x0), sub(add(x0, one), tb));
    let c1 = _mm512_mask_blend_epi8(b_set, sub(zero, x1), x1);
    let (c0, c1) = (add(c0, above(w0)), add(c1, above(w1)));
    // d_i0 = s_i c_i0 + z_i and d_i1 = s_i c_i1 - z_i, in 16-bit lanes: products
    // below 67^2 reduce by Barrett's method (floor(2^16 / 67) = 978 underestimates
    // the quotient by at most one, so one conditional subtraction finishes).
    let (p16, magic) = (_mm512_set1_epi16(P as i16), _mm512_set1_epi16(978));
    let reduce = |x| {
        let r = _mm512_sub_epi16(x, _mm512_mullo_epi16(_mm512_mulhi_epu16(x, magic), p16));
        _mm512_min_epu16(r, _mm512_sub_epi16(r, p16))
    };
    let half = |widen: &dyn Fn(__m512i) -> __m512i| {
        let (s, z, c0, c1) = (widen(s), widen(z), widen(c0), widen(c1));
        let e0 = reduce(_mm512_add_epi16(_mm512_mullo_epi16(s, c0), z));
        let e1 = reduce(_mm512_add_epi16(_mm512_mullo_epi16(s, c1), _mm512_sub_epi16(p16, z)));
        _mm512_or_si512(e0, _mm512_slli_epi16::<8>(e1))
    };
    (half(&|v| _mm512_cvtepu8_epi16(_mm512_castsi512_si256(v))), half(&|v| _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64::<1>(v))))
}

/// Z_67 on 64 bytes at a time (AVX-512 BW), for elements below 67.
#[cfg(target_arch = "x86_64")]
mod z67 {
    use super::P;
    use std::arch::x86_64::*;

    /// a + b: the sum (below 134) minus 67 where that does not wrap below zero.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub fn add(a: __m512i, b: __m512i) -> __m512i {
        let s = _mm512_add_epi8(a, b);
        _mm512_min_epu8(s, _mm512_sub_epi8(s, _mm512_set1_epi8(P as i8)))
    }

    /// a - b: the difference plus 67 where it wrapped.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub fn sub(a: __m512i, b: __m512i) -> __m512i {
        let d = _mm512_sub_epi8(a, b);
        _mm512_min_epu8(d, _mm512_add_epi8(d, _mm512_set1_epi8(P as i8)))
    }

    /// The 64 bits of x as bytes 0 or 1, placed as `deal_bits` places them: byte b of
    /// row (64-bit lane) q holds bit 8 b + q.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    pub fn bit_rows(x: u64) -> __m512i {
        let rows = _mm512_srlv_epi64(_mm512_set1_epi64(x as i64), _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
        _mm512_and_si512(rows, _mm512_set1_epi64(0x0101_0101_0101_0101))
    }
}

/// `masked_value` for a value that is not a corner case, as two registers of bytes
/// per party (places 0-31, 32-63). The layout and formulas of `masked_value_avx512`:
/// rows q = 0-3 sit in the first register, 4-7 in the second.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn masked_value_avx2(
    input: &Compare,
    k: usize,
    draws: &Draws,
) -> ([std::arch::x86_64::__m256i; 2], [std::arch::x86_64::__m256i; 2]) {
    use std::arch::x86_64::*;
    use z67x2::{Pair, add, add1, bit_rows, blend, sub};
    let (one, zero) = (_mm256_set1_epi8(1), _mm256_setzero_si256());
    let at = k * 64;
    let load = |b: &[u8]| -> Pair {
        // Safety: callers pass 64-byte slices; each load reads 32 of them.
        unsafe { [_mm256_loadu_si256(b.as_ptr().cast()), _mm256_loadu_si256(b[32..].as_ptr().cast())] }
    };
    let (x0, x1, s, z) = (load(&input.x0[at..at + 64]), load(&input.x1[at..at + 64]), load(draws.s), load(draws.zero));
    let beta = input.beta[k];
    let tb = bit_rows(input.r[k] + beta as u64);
    // Bytes 0xff where t_i = 1.
    let t_set = tb.map(|t| _mm256_cmpeq_epi8(t, one));
    let ones = [one, one];
    let zeros = [zero, zero];
    // w = x xor t on shares: x where t_i = 0; 1 - x_i0 and -x_i1 where t_i = 1.
    let w0 = blend(x0, sub(ones, x0), t_set);
    let w1 = blend(x1, sub(zeros, x1), t_set);
    // Sum of w over the bits above each place (see `masked_value_avx512`).
    let above = |w: Pair| {
        // Rows q + 1.. of the same byte: shift rows down by 1, 2 and 4 and scan.
        let down1 = |v: Pair| {
            // Row q takes row q + 1; the second register's row 0 crosses over.
            let lo =
                _mm256_blend_epi32::<0b1100_0000>(_mm256_permute4x64_epi64::<0b00_11_10_01>(v[0]), _mm256_permute4x64_epi64::<0>(v[1]));
            let hi = _mm256_blend_epi32::<0b1100_0000>(_mm256_permute4x64_epi64::<0b00_11_10_01>(v[1]), zero);
            [lo, hi]
        };
        let down2 = |v: Pair| [_mm256_permute2x128_si256::<0x21>(v[0], v[1]), _mm256_permute2x128_si256::<0x81>(v[1], v[1])];
        let mut within = down1(w);
        within = add(within, down1(within));
        within = add(within, down2(within));
        // Down 4 rows: the second register's rows are added to the first's; its own get nothing.
        within = [add1(within[0], within[1]), within[1]];
        // Row 0 now holds each byte's total; bytes above b: shift bytes down and scan.
        let mut bytes = _mm256_srli_epi64::<8>(add1(w[0], within[0]));
        bytes = add1(bytes, _mm256_srli_epi64::<8>(bytes));
        bytes = add1(bytes, _mm256_srli_epi64::<16>(bytes));
        bytes = add1(bytes, _mm256_srli_epi64::<32>(bytes));
        let row = _mm256_permute4x64_epi64::<0>(bytes);
        add(within, [row, row])
    };
    // beta = 0: c_i = t_i - x_i + 1 + sum, shares t_i + 1 - x_i0 and -x_i1;
    // beta = 1: c_i = x_i - t_i + 1 + sum, shares x_i0 + 1 - t_i and x_i1.
    // Blends, not branches: beta is random.
    let b_set = [_mm256_set1_epi8(0u8.wrapping_sub(beta) as i8); 2];
    let c0 = blend(sub(tb.map(|t| _mm256_add_epi8(t, one)), x0), sub(add(x0, ones), tb), b_set);
    let c1 = blend(sub(zeros, x1), x1, b_set);
    let (c0, c1) = (add(c0, above(w0)), add(c1, above(w1)));
    // d_i0 = s_i c_i0 + z_i and d_i1 = s_i c_i1 - z_i, in 16-bit lanes, Barrett
    // reduction as in `masked_value_avx512`.
    let (p16, magic, low) = (_mm256_set1_epi16(P as i16), _mm256_set1_epi16(978), _mm256_set1_epi16(0xff));
    let reduce = |x| {
        let r = _mm256_sub_epi16(x, _mm256_mullo_epi16(_mm256_mulhi_epu16(x, magic), p16));
        _mm256_min_epu16(r, _mm256_sub_epi16(r, p16))
    };
    // Even and odd bytes of each register as 16-bit lanes; the products go back to
    // their bytes by a shift and an or, so no byte changes place.
    let mask = |s: __m256i, z: __m256i, c0: __m256i, c1: __m256i| {
        let (s_even, s_odd) = (_mm256_and_si256(s, low), _mm256_srli_epi16::<8>(s));
        let (z_even, z_odd) = (_mm256_and_si256(z, low), _mm256_srli_epi16::<8>(z));
        let party = |c: __m256i, z_even: __m256i, z_odd: __m256i| {
            let even = reduce(_mm256_add_epi16(_mm256_mullo_epi16(s_even, _mm256_and_si256(c, low)), z_even));
            let odd = reduce(_mm256_add_epi16(_mm256_mullo_epi16(s_odd, _mm256_srli_epi16::<8>(c)), z_odd));
            _mm256_or_si256(even, _mm256_slli_epi16::<8>(odd))
        };
        (party(c0, z_even, z_odd), party(c1, _mm256_sub_epi16(p16, z_even), _mm256_sub_epi16(p16, z_odd)))
    };
    let (a0, a1) = mask(s[0], z[0], c0[0], c1[0]);
    let (b0, b1) = mask(s[1], z[1], c0[1], c1[1]);
    ([a0, b0], [a1, b1])
}

/// Z_67 on 64 bytes held in two AVX2 registers, for elements below 67.
#[cfg(target_arch = "x86_64")]
mod z67x2 {
    use super::P;
    use std::arch::x86_64::*;

    /// Places 0-31 and 32-63.
    pub type Pair = [__m256i; 2];

    /// a + b: the sum (below 134) minus 67 where that does not wrap below zero.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn add(a: Pair, b: Pair) -> Pair {
        [add1(a[0], b[0]), add1(a[1], b[1])]
    }

    /// `add` on one register.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn add1(a: __m256i, b: __m256i) -> __m256i {
        let s = _mm256_add_epi8(a, b);
        _mm256_min_epu8(s, _mm256_sub_epi8(s, _mm256_set1_epi8(P as i8)))
    }

    /// a - b: the difference plus 67 where it wrapped.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn sub(a: Pair, b: Pair) -> Pair {
        std::array::from_fn(|h| {
            let d = _mm256_sub_epi8(a[h], b[h]);
            _mm256_min_epu8(d, _mm256_add_epi8(d, _mm256_set1_epi8(P as i8)))
        })
    }

    /// b where the mask byte is 0xff, else a.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn blend(a: Pair, b: Pair, mask: Pair) -> Pair {
        std::array::from_fn(|h| _mm256_blendv_epi8(a[h], b[h], mask[h]))
    }

    /// The 64 bits of x as bytes 0 or 1 in the layout of `z67::bit_rows`.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub fn bit_rows(x: u64) -> Pair {
        let (all, ones) = (_mm256_set1_epi64x(x as i64), _mm256_set1_epi64x(0x0101_0101_0101_0101));
        [
            _mm256_and_si256(_mm256_srlv_epi64(all, _mm256_set_epi64x(3, 2, 1, 0)), ones),
            _mm256_and_si256(_mm256_srlv_epi64(all, _mm256_set_epi64x(7, 6, 5, 4)), ones),
        ]
    }
}

/// P2's dealing of bit shares (`protocols::deal_bits`): given P0's random shares
/// `s0`, P1's are bit - s0 in Z_67, 64 per value in the byte-by-bit layout. Each
/// variant appends a value's 64 to an empty vector: written into a zeroed one, the
/// zeroing alone (4 MiB for a 64 x 32 x 32 layer, beyond L2) took 3% of a DReLU.
pub(super) fn bit_shares(x: &[u64], s0: &[u8]) -> Vec<u8> {
    assert_eq!(s0.len(), 64 * x.len(), "64 shares per value");
    let mut s1 = Vec::with_capacity(s0.len());
    match simd() {
        // Safety: `simd` found the features this variant is compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { bit_shares_avx512(x, s0, &mut s1) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { bit_shares_avx2(x, s0, &mut s1) },
        _ => bit_shares_any(x, s0, &mut s1),
    }
    s1
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bit_shares_avx2(x: &[u64], s0: &[u8], s1: &mut Vec<u8>) {
    use std::arch::x86_64::*;
    for (x, s0) in x.iter().zip(s0.chunks_exact(64)) {
        // Safety: 32-byte loads from a 64-byte chunk, at 0 and 32.
        let s0 = unsafe { [_mm256_loadu_si256(s0.as_ptr().cast()), _mm256_loadu_si256(s0[32..].as_ptr().cast())] };
        push64(s1, z67x2::sub(z67x2::bit_rows(*x), s0));
    }
}

/// P2's step of PrivateCompare: per value, 1 if some d_i0 + d_i1 = 0 in Z_67, else 0.
/// Both shares lie below 67, so their sum as integers is then 0 or 67. (The whole
/// value is scanned, without stopping at a zero, so that the loop vectorises; an AVX2
/// version took 1.2% of a steady CIFAR-10 image's profile against this one's 1.4%, as
/// reading the messages bounds both.)
pub(super) fn zero_found(d0: &[u8], d1: &[u8]) -> Vec<u8> {
    assert_eq!(d0.len(), d1.len(), "both parties send 64 terms per value");
    let zero = |found: bool, (a, b): (&u8, &u8)| found | (a + b == P) | (a + b == 0);
    d0.chunks_exact(64).zip(d1.chunks_exact(64)).map(|(a, b)| a.iter().zip(b).fold(false, zero) as u8).collect()
}

fn bit_shares_any(x: &[u64], s0: &[u8], s1: &mut Vec<u8>) {
    // Eight bit shares at a time, one per byte of a u64 (no byte ever carries into
    // the next: every intermediate stays below 2^7).
    const ONES: u64 = 0x0101_0101_0101_0101;
    for (x, s0) in x.iter().zip(s0.chunks_exact(64)) {
        let mut value = [0u8; 64];
        for (q, (s0, s1)) in s0.chunks_exact(8).zip(value.chunks_exact_mut(8)).enumerate() {
            // Byte b: bit 8 b + q of x, i.e. bit q of byte b.
            let bits = (x >> q) & ONES;
            let s0 = u64::from_le_bytes(s0.try_into().expect("eight shares"));
            // bit - s0 in Z_67: bit + (67 - s0) <= 68, minus 67 where it reaches 67
            // (then d + 61 has its top bit set).
            let d = bits + (ONES * P as u64 - s0);
            let reached = ((d + ONES * 61) >> 7) & ONES;
            s1.copy_from_slice(&(d - reached * P as u64).to_le_bytes());
        }
        s1.extend_from_slice(&value);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn bit_shares_avx512(x: &[u64], s0: &[u8], s1: &mut Vec<u8>) {
    use std::arch::x86_64::*;
    for (x, s0) in x.iter().zip(s0.chunks_exact(64)) {
        let mut value = [0u8; 64];
        // Safety: a 64-byte load from a 64-byte chunk and a store into a 64-byte array.
        unsafe {
            let s0 = _mm512_loadu_si512(s0.as_ptr().cast());
            _mm512_storeu_si512(value.as_mut_ptr().cast(), z67::sub(z67::bit_rows(*x), s0));
        }
        s1.extend_from_slice(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::protocols::deal_bits;

    /// Random values and bounds, with corner cases (beta = 1, r = 2^64 - 1), equal
    /// values and a ragged last block.
    fn inputs(g: &mut Prg) -> (Vec<u64>, Vec<u64>, Vec<u8>) {
        let n = 300;
        let (mut xs, mut rs, mut beta) = (g.ring(n), g.ring(n), g.bits(n));
        for k in [3, 64, 65, 299] {
            (rs[k], beta[k]) = (u64::MAX, 1);
        }
        xs[10] = rs[10];
        xs[11] = rs[11].wrapping_add(1);
        (xs, rs, beta)
    }

    #[test]
    fn every_cpu_variant_of_private_compare_sends_the_same_messages() {
        crate::mpc::cpu::note_skipped("every_cpu_variant_of_private_compare_sends_the_same_messages", &crate::mpc::cpu::vector_variants());
        let mut g = Prg::new(5, "inputs");
        let (xs, rs, beta) = inputs(&mut g);
        let (x0, x1) = deal_bits(&mut g, &xs);
        for variant in [Variant::Secure, Variant::LeakyNoPermutation] {
            let input = Compare { x0: &x0, x1: &x1, r: &rs, beta: &beta, variant };
            type Sender<'a> = &'a dyn Fn(&mut Prg, &mut Vec<u8>, &mut Vec<u8>);
            let run = |f: Sender| {
                let (mut k01, mut d0, mut d1) = (Prg::new(3, "k01"), Vec::new(), Vec::new());
                f(&mut k01, &mut d0, &mut d1);
                (d0, d1, k01.bytes_drawn())
            };
            let portable = run(&|k, d0, d1| masked_terms_any(k, &input, d0, d1));
            assert_eq!(portable.0.len(), 64 * xs.len());
            assert_eq!(run(&|k, d0, d1| masked_terms(k, &input, d0, d1)), portable);
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") {
                    // Safety: the variant's features were just detected.
                    assert_eq!(run(&|k, d0, d1| unsafe { masked_terms_avx2(k, &input, d0, d1) }), portable);
                }
                if has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
                    // Safety: as above.
                    assert_eq!(run(&|k, d0, d1| unsafe { masked_terms_avx512(k, &input, d0, d1) }), portable);
                }
            }
        }
    }

    #[test]
    fn every_cpu_variant_deals_the_same_bit_shares() {
        crate::mpc::cpu::note_skipped("every_cpu_variant_deals_the_same_bit_shares", &crate::mpc::cpu::vector_variants());
        let mut g = Prg::new(6, "bits");
        let mut xs = g.ring(100);
        xs.extend([0, u64::MAX, 1 << 63, 1]);
        let s0 = g.field(64 * xs.len());
        let mut portable = Vec::new();
        bit_shares_any(&xs, &s0, &mut portable);
        for (k, x) in xs.iter().enumerate() {
            for bit in 0..64 {
                let at = k * 64 + 8 * (bit % 8) + bit / 8;
                assert_eq!(f_add(s0[at], portable[at]) as u64, (x >> bit) & 1);
            }
        }
        assert_eq!(bit_shares(&xs, &s0), portable);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            let mut avx2 = Vec::new();
            // Safety: the variant's features were just detected.
            unsafe { bit_shares_avx2(&xs, &s0, &mut avx2) };
            assert_eq!(avx2, portable);
        }
    }

    #[test]
    fn p2_finds_a_zero_in_any_place_and_nowhere_else() {
        let mut g = Prg::new(7, "zeros");
        let n = 3 * 64;
        let d0 = g.field(64 * n);
        // Sums that are nonzero everywhere, then one zero in value k at place k / 3 for
        // every k divisible by 3: as 0 + 0 or as a + (67 - a).
        let mut sums = vec![0u8; 64 * n];
        g.fill_field_nonzero(&mut sums);
        let mut d1: Vec<u8> = d0.iter().zip(&sums).map(|(a, s)| f_sub(*s, *a)).collect();
        let mut d0 = d0;
        for k in (0..n).step_by(3) {
            let at = 64 * k + k / 3;
            if k % 2 == 0 {
                (d0[at], d1[at]) = (0, 0);
            } else {
                d1[at] = f_neg(d0[at]);
            }
        }
        let expected: Vec<u8> = (0..n).map(|k| (k % 3 == 0) as u8).collect();
        assert_eq!(zero_found(&d0, &d1), expected);
    }
}
