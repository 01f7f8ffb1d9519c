//! The three number systems of SecureNN: the ring Z_L (L = 2^64, plain wrapping u64),
//! the odd ring Z_(L-1) (ShareConvert's target, where MSB(y) = LSB(2y)), and the
//! field Z_67 (PrivateCompare's bit shares, one byte each on the wire), plus
//! fixed-point encoding and SecureML's local truncation.

/// Modulus of the odd ring, 2^64 - 1. Elements are u64 in [0, 2^64 - 2].
pub const ODD: u64 = u64::MAX;
/// The field of PrivateCompare: every c_i lies in [0, 65], and 67 is the first prime
/// above 65, so no false zeros.
pub const P: u8 = 67;

/// 1 if a + b overflows L as integers, else 0.
#[inline]
pub fn wrap(a: u64, b: u64) -> u64 {
    a.overflowing_add(b).1 as u64
}

/// Reduces a u64 into the odd ring (only 2^64 - 1 itself needs it).
#[inline]
pub fn odd(a: u64) -> u64 {
    if a == ODD { 0 } else { a }
}

/// a + b in Z_(L-1), for a, b in the odd ring.
#[inline]
pub fn odd_add(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // 2^64 = 1 in Z_(L-1), so a carry adds one back. s + 1 cannot overflow here:
    // a carry means s <= 2^64 - 4.
    odd(s + carry as u64)
}

#[inline]
pub fn odd_neg(a: u64) -> u64 {
    if a == 0 { 0 } else { ODD - a }
}

#[inline]
pub fn odd_sub(a: u64, b: u64) -> u64 {
    odd_add(a, odd_neg(b))
}

#[inline]
pub fn f_add(a: u8, b: u8) -> u8 {
    ((a as u16 + b as u16) % P as u16) as u8
}

#[inline]
pub fn f_neg(a: u8) -> u8 {
    if a == 0 { 0 } else { P - a }
}

#[inline]
pub fn f_sub(a: u8, b: u8) -> u8 {
    f_add(a, f_neg(b))
}

#[inline]
pub fn f_mul(a: u8, b: u8) -> u8 {
    ((a as u16 * b as u16) % P as u16) as u8
}

/// Bit `i` of `x`, 0 or 1.
#[inline]
pub fn bit(x: u64, i: usize) -> u8 {
    ((x >> i) & 1) as u8
}

/// Fixed point: `x * 2^frac`, rounded, two's complement in Z_L.
pub fn encode(x: f64, frac: u32) -> u64 {
    (x * (1u64 << frac) as f64).round() as i64 as u64
}

pub fn decode(x: u64, frac: u32) -> f64 {
    x as i64 as f64 / (1u64 << frac) as f64
}

/// Plaintext truncation: floor(x / 2^frac) on the signed value.
#[inline]
pub fn truncate(x: u64, frac: u32) -> u64 {
    ((x as i64) >> frac) as u64
}

/// SecureML's local truncation of one share (Section 1.9 of the spec): P0 shifts its
/// share, P1 shifts the negation of its share and negates back. The sum is
/// floor(x / 2^frac) or one more, except with probability about |x| / 2^63, when it
/// is off by about 2^(64 - frac).
#[inline]
pub fn truncate_share(share: u64, party: usize, frac: u32) -> u64 {
    if party == 0 { truncate(share, frac) } else { truncate(share.wrapping_neg(), frac).wrapping_neg() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_ring_arithmetic_wraps_at_2_64_minus_1() {
        assert_eq!(odd_add(ODD - 1, 1), 0);
        assert_eq!(odd_add(ODD - 1, ODD - 1), ODD - 2);
        assert_eq!(odd_add(1 << 63, 1 << 63), 1);
        assert_eq!(odd_sub(0, 1), ODD - 1);
        assert_eq!(odd_add(5, odd_neg(5)), 0);
    }

    #[test]
    fn field_and_wrap() {
        assert_eq!(f_add(66, 2), 1);
        assert_eq!(f_sub(0, 1), 66);
        assert_eq!(f_mul(66, 66), 1);
        assert_eq!(wrap(u64::MAX, 1), 1);
        assert_eq!(wrap(u64::MAX, 0), 0);
    }

    #[test]
    fn fixed_point_round_trips_and_truncates_toward_minus_infinity() {
        assert_eq!(encode(-1.0, 13), 0u64.wrapping_sub(1 << 13));
        assert_eq!(decode(encode(3.25, 13), 13), 3.25);
        assert_eq!(truncate(encode(-1.5, 13), 13) as i64, -2);
        // Shares of x truncate to floor(x / 2^13) or one more.
        let x = encode(-7.3, 26);
        for s0 in [0u64, 1, 12345, 1 << 40, u64::MAX / 3] {
            let s1 = x.wrapping_sub(s0);
            let t = truncate_share(s0, 0, 13).wrapping_add(truncate_share(s1, 1, 13));
            let d = t.wrapping_sub(truncate(x, 13)) as i64;
            assert!((0..=1).contains(&d), "{s0}: {d}");
        }
    }
}
