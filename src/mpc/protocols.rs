//! The SecureNN protocols, one function each, in the order of the spec
//! (`shared/spec/securenn.md`, Section 1). Every function is vectorised over all the
//! values of a layer: one message carries a whole layer's elements, so a layer pays
//! each round once. Message sizes are written next to every send.

use super::matmul::matmul;
use super::prg::{Prg, Seeds};
pub use super::private_compare::Variant;
use super::private_compare::{Compare, bit_shares, masked_terms, zero_found};
use super::ring::*;
use super::transport::{Dep, Elem, Link, Party, Party::*, Step, Transport};

/// Additive shares over Z_L (or Z_(L-1), where a function says so): P0 holds `s0`,
/// P1 holds `s1`, and the secret is s0 + s1. A process holds the shares of the
/// parties it runs (`Transport::here`); the other vectors stay empty, and P2, which
/// holds neither, still knows how many values there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shares {
    pub s0: Vec<u64>,
    pub s1: Vec<u64>,
    len: usize,
}

impl Shares {
    /// Shares from their vectors: both, or the one this process holds.
    pub fn new(s0: Vec<u64>, s1: Vec<u64>) -> Shares {
        let len = s0.len().max(s1.len());
        debug_assert!(s0.is_empty() || s1.is_empty() || s0.len() == s1.len(), "shares of one value have one length");
        Shares { s0, s1, len }
    }

    /// `len` values of which this process holds no share (P2's view of them).
    pub fn absent(len: usize) -> Shares {
        Shares { s0: Vec::new(), s1: Vec::new(), len }
    }

    /// Splits plaintext values into fresh shares, as the owner of an input or of the
    /// model does before inference (input sharing is not counted, as in the paper).
    pub fn share(x: &[u64], rng: &mut Prg) -> Shares {
        let s0 = rng.ring(x.len());
        let s1 = x.iter().zip(&s0).map(|(x, s)| x.wrapping_sub(*s)).collect();
        Shares::new(s0, s1)
    }

    /// Both shares added up: what an output opening reveals (not counted).
    pub fn reveal(&self) -> Vec<u64> {
        self.s0.iter().zip(&self.s1).map(|(a, b)| a.wrapping_add(*b)).collect()
    }

    /// Reveal for shares over the odd ring.
    pub fn reveal_odd(&self) -> Vec<u64> {
        self.s0.iter().zip(&self.s1).map(|(a, b)| odd_add(*a, *b)).collect()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this process holds share `k` (0: P0's, 1: P1's).
    pub fn held(&self, k: usize) -> bool {
        [&self.s0, &self.s1][k].len() == self.len
    }

    /// `f(k, share k)` for each share held here: a local map whose result has `len`
    /// values (P2, holding no share, learns the length from it).
    pub fn each(&self, len: usize, f: impl Fn(usize, &[u64]) -> Vec<u64>) -> Shares {
        let apply = |k: usize, s: &[u64]| if self.held(k) { f(k, s) } else { Vec::new() };
        let (s0, s1) = (apply(0, &self.s0), apply(1, &self.s1));
        debug_assert!(s0.is_empty() && s1.is_empty() || s0.len().max(s1.len()) == len, "a local map of {len} values");
        Shares { s0, s1, len }
    }

    /// `f(k, share k of self, share k of other)` for each share held here.
    pub fn zip(&self, other: &Shares, f: impl Fn(usize, &[u64], &[u64]) -> Vec<u64>) -> Shares {
        let o = [&other.s0, &other.s1];
        self.each(self.len, |k, s| f(k, s, o[k]))
    }

    /// Applies the same local length-keeping map to both shares.
    pub fn map(&self, f: impl Fn(&[u64]) -> Vec<u64>) -> Shares {
        self.each(self.len, |_, s| f(s))
    }

    /// A local map to `len` values (an im2col, a transpose).
    pub fn reshape(&self, len: usize, f: impl Fn(&[u64]) -> Vec<u64>) -> Shares {
        self.each(len, |_, s| f(s))
    }

    /// Elementwise sum of two shared vectors (local).
    pub fn add(&self, other: &Shares) -> Shares {
        self.zip(other, |_, a, b| a.iter().zip(b).map(|(x, y)| x.wrapping_add(*y)).collect())
    }

    pub fn sub(&self, other: &Shares) -> Shares {
        self.zip(other, |_, a, b| a.iter().zip(b).map(|(x, y)| x.wrapping_sub(*y)).collect())
    }

    /// Adds a public constant (P0 alone adds it).
    pub fn add_public(&self, c: &[u64]) -> Shares {
        self.each(self.len, |k, s| if k == 0 { s.iter().zip(c).map(|(s, c)| s.wrapping_add(*c)).collect() } else { s.to_vec() })
    }

    /// Values `range` of the vector.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Shares {
        self.each(range.len(), |_, s| s[range.clone()].to_vec())
    }

    /// The vectors one after another.
    pub fn concat(parts: &[&Shares]) -> Shares {
        let len = parts.iter().map(|p| p.len).sum();
        let join = |k: usize| -> Vec<u64> {
            if parts.iter().all(|p| p.held(k)) {
                parts.iter().flat_map(|p| [&p.s0, &p.s1][k].iter().copied()).collect()
            } else {
                Vec::new()
            }
        };
        Shares { s0: join(0), s1: join(1), len }
    }
}

/// A protocol run: the wire, the parties' generators, the fixed-point precision.
pub struct Ctx {
    pub net: Transport,
    pub seeds: Seeds,
    /// Fractional bits of the fixed-point encoding.
    pub frac: u32,
    /// Values per part of a DReLU (`drelu`): small enough for L2 in one process; a
    /// networked run sends whole layers, since each part would pay every round again.
    pub drelu_part: usize,
    /// A deliberate leak (test builds only), for the view tests to catch.
    #[cfg(test)]
    pub leak: Leak,
}

impl Ctx {
    /// SecureNN's sizes: l = 64, a Z_67 element in 8 bits. All three parties here.
    pub fn new(seed: u64, frac: u32) -> Ctx {
        Ctx::with(Transport::new(64, 8), Seeds::new(seed), frac)
    }

    /// One party of a networked run, with the generators that party holds.
    pub fn party(seed: u64, frac: u32, me: Party, link: Box<dyn Link>) -> Ctx {
        let mut ctx = Ctx::with(Transport::party(64, 8, me, link), Seeds::held_by(seed, me as usize), frac);
        ctx.drelu_part = usize::MAX;
        ctx
    }

    fn with(net: Transport, seeds: Seeds, frac: u32) -> Ctx {
        Ctx {
            net,
            seeds,
            frac,
            drelu_part: DRELU_PART,
            #[cfg(test)]
            leak: Leak::None,
        }
    }

    /// Whether `p`'s part runs in this process.
    pub fn at(&self, p: Party) -> bool {
        self.net.here().has(p)
    }
}

/// Changes that keep every output right and hand a party something it must not see,
/// compiled into test builds only: the view tests (`views`) must fail on each.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leak {
    None,
    /// PrivateCompare without its permutation: P2 sees where x and r first differ.
    CompareUnpermuted,
    /// PrivateCompare without the common shares of zero: P2 sees s_i c0_i and s_i c1_i apart.
    CompareNoZeroShares,
    /// ShareConvert: P2 sends P0 eta' itself (P1 gets a share of 0).
    ShareConvertEtaInClear,
    /// ComputeMSB: P2 sends P1 beta' itself (P0 gets a share of 0).
    MsbBetaInClear,
    /// ComputeMSB: P2's mask x is 0, so the opened c = 2y + x is 2y.
    MsbUnmasked,
}

/// `f()` where `cond` holds (the party runs here), else nothing.
#[inline(always)]
fn when<T: Default>(cond: bool, f: impl FnOnce() -> T) -> T {
    if cond { f() } else { T::default() }
}

/// Beaver product Z = op(X, Y) for a bilinear `op` (matrix product, convolution,
/// elementwise product, grouped dot products), with the triple from P2 and the
/// seed trick: A0, B0, C0 come from k02 and A1, B1 from k12, so P2 sends only C1.
/// The result keeps 2 * frac fractional bits; truncate after it where needed.
///
/// `c1_step`: the step that carries C1 (SecureNN's DReLU lets it ride early);
/// `None` opens a step of its own, as the paper's tables count a product (2 rounds).
pub fn beaver(
    ctx: &mut Ctx,
    x: &Shares,
    y: &Shares,
    z_len: usize,
    op: impl Fn(&[u64], &[u64]) -> Vec<u64>,
    c1_step: Option<Step>,
) -> Shares {
    let (nx, ny) = (x.len(), y.len());
    let (p0, p1, p2) = (ctx.at(P0), ctx.at(P1), ctx.at(P2));
    let k02 = &mut ctx.seeds.k02;
    let (a0, b0, c0) = when(p0 || p2, || (k02.ring(nx), k02.ring(ny), k02.ring(z_len)));
    let k12 = &mut ctx.seeds.k12;
    let (a1, b1) = when(p1 || p2, || (k12.ring(nx), k12.ring(ny)));
    let step = c1_step.unwrap_or_else(|| ctx.net.step());
    // P2: C = (A0 + A1) op (B0 + B1), C1 = C - C0.
    let c1 = when(p2, || {
        let c = op(&add(&a0, &a1), &add(&b0, &b1));
        sub(&c, &c0)
    });
    // P2 -> P1: C1, |Z| ring elements. Data-independent.
    ctx.net.send_in(step, P2, P1, Elem::Ring, Dep::Fresh, z_len, &c1);
    let c1 = ctx.net.recv(P2, P1);

    ctx.net.step();
    // P_j: E_j = X_j - A_j, F_j = Y_j - B_j.
    let (e0, f0) = when(p0, || (sub(&x.s0, &a0), sub(&y.s0, &b0)));
    let (e1, f1) = when(p1, || (sub(&x.s1, &a1), sub(&y.s1, &b1)));
    let [e0_at_1, f0_at_1, e1_at_0, f1_at_0] = open_masked(ctx, [nx, ny], [&e0, &f0], [&e1, &f1]);
    // P0: X0 op F + E op (Y0 - F) + C0;  P1: X1 op F + E op Y1 + C1, with E = E0 + E1
    // and F = F0 + F1. Sum: X op F + E op Y - E op F + AB = XY, as X = E + A, Y = F + B.
    let z0 = when(p0, || {
        let (e, f) = (add(&e0, &e1_at_0), add(&f0, &f1_at_0));
        let (p, q) = (op(&x.s0, &f), op(&e, &sub(&y.s0, &f)));
        let [z] = columns(z_len, |i| [p[i].wrapping_add(q[i]).wrapping_add(c0[i])]);
        z
    });
    let z1 = when(p1, || {
        let (e, f) = (add(&e0_at_1, &e1), add(&f0_at_1, &f1));
        let (p, q) = (op(&x.s1, &f), op(&e, &y.s1));
        let [z] = columns(z_len, |i| [p[i].wrapping_add(q[i]).wrapping_add(c1[i])]);
        z
    });
    Shares { s0: z0, s1: z1, len: z_len }
}

/// A Beaver opening: P0 <-> P1, E_j (`n[0]` ring elements) and F_j (`n[1]`), each way.
/// Returns what each received: P0's E0, F0 at P1, then P1's E1, F1 at P0.
fn open_masked(ctx: &mut Ctx, n: [usize; 2], p0_sends: [&[u64]; 2], p1_sends: [&[u64]; 2]) -> [Vec<u64>; 4] {
    for (from, to, sends) in [(P0, P1, p0_sends), (P1, P0, p1_sends)] {
        for (n, data) in n.into_iter().zip(sends) {
            ctx.net.send(from, to, Elem::Ring, Dep::Data, n, data);
        }
    }
    [ctx.net.recv(P0, P1), ctx.net.recv(P0, P1), ctx.net.recv(P1, P0), ctx.net.recv(P1, P0)]
}

/// a + b elementwise in Z_L.
fn add(a: &[u64], b: &[u64]) -> Vec<u64> {
    let [c] = columns(a.len(), |i| [a[i].wrapping_add(b[i])]);
    c
}

/// a - b elementwise in Z_L.
fn sub(a: &[u64], b: &[u64]) -> Vec<u64> {
    let [c] = columns(a.len(), |i| [a[i].wrapping_sub(b[i])]);
    c
}

/// N vectors of length n built in one pass, element i of each from `f(i)`: the
/// protocols' local steps make several vectors from the same inputs, and one pass
/// (without zeroing the vectors first) reads those inputs once.
#[inline(always)]
fn columns<const N: usize>(n: usize, f: impl Fn(usize) -> [u64; N]) -> [Vec<u64>; N] {
    let mut out: [Vec<u64>; N] = std::array::from_fn(|_| Vec::with_capacity(n));
    let mut spare = out.each_mut().map(|v| &mut v.spare_capacity_mut()[..n]);
    for i in 0..n {
        for (column, value) in spare.iter_mut().zip(f(i)) {
            column[i].write(value);
        }
    }
    for v in &mut out {
        // Safety: the loop above wrote elements 0..n of every vector.
        unsafe { v.set_len(n) };
    }
    out
}

/// Linear_{m,n,v}: Z = X Y with X m x n and Y n x v, row-major. 2 rounds,
/// (2mn + 2nv + mv) l bits.
pub fn mat_mul(ctx: &mut Ctx, x: &Shares, y: &Shares, m: usize, n: usize, v: usize) -> Shares {
    beaver(ctx, x, y, m * v, |a, b| matmul(a, b, m, n, v), None)
}

/// Mul of each pair of values (SelectShare's core). 2 rounds, 5 l bits per value.
/// Bits encoded as the integers 0 and 1 need no truncation afterwards.
pub fn mul(ctx: &mut Ctx, x: &Shares, y: &Shares) -> Shares {
    mul_in(ctx, x, y, None)
}

/// `beaver` for the elementwise product, each party's work in one pass: with a
/// product as cheap as an addition, the dozen vector passes of the general form took
/// most of Mul's time. Same draws, messages and formulas.
fn mul_in(ctx: &mut Ctx, x: &Shares, y: &Shares, c1_step: Option<Step>) -> Shares {
    let n = x.len();
    assert_eq!(y.len(), n, "Mul multiplies values pairwise");
    let (p0, p1, p2) = (ctx.at(P0), ctx.at(P1), ctx.at(P2));
    let k02 = &mut ctx.seeds.k02;
    let (a0, b0, c0) = when(p0 || p2, || (k02.ring(n), k02.ring(n), k02.ring(n)));
    let k12 = &mut ctx.seeds.k12;
    let (a1, b1) = when(p1 || p2, || (k12.ring(n), k12.ring(n)));
    // P2: C1 = (A0 + A1)(B0 + B1) - C0.
    let [c1] = when(p2, || columns(n, |i| [a0[i].wrapping_add(a1[i]).wrapping_mul(b0[i].wrapping_add(b1[i])).wrapping_sub(c0[i])]));
    let step = c1_step.unwrap_or_else(|| ctx.net.step());
    // P2 -> P1: C1, n ring elements. Data-independent.
    ctx.net.send_in(step, P2, P1, Elem::Ring, Dep::Fresh, n, &c1);
    let c1 = ctx.net.recv(P2, P1);

    ctx.net.step();
    let (x0, x1, y0, y1) = (&x.s0, &x.s1, &y.s0, &y.s1);
    let [e0, f0] = when(p0, || columns(n, |i| [x0[i].wrapping_sub(a0[i]), y0[i].wrapping_sub(b0[i])]));
    let [e1, f1] = when(p1, || columns(n, |i| [x1[i].wrapping_sub(a1[i]), y1[i].wrapping_sub(b1[i])]));
    let [e0_at_1, f0_at_1, e1_at_0, f1_at_0] = open_masked(ctx, [n, n], [&e0, &f0], [&e1, &f1]);
    // P0: X0 F + E (Y0 - F) + C0;  P1: X1 F + E Y1 + C1 (see `beaver`).
    let [z0] = when(p0, || {
        columns(n, |i| {
            let (e, f) = (e0[i].wrapping_add(e1_at_0[i]), f0[i].wrapping_add(f1_at_0[i]));
            [x0[i].wrapping_mul(f).wrapping_add(e.wrapping_mul(y0[i].wrapping_sub(f))).wrapping_add(c0[i])]
        })
    });
    let [z1] = when(p1, || {
        columns(n, |i| {
            let (e, f) = (e0_at_1[i].wrapping_add(e1[i]), f0_at_1[i].wrapping_add(f1[i]));
            [x1[i].wrapping_mul(f).wrapping_add(e.wrapping_mul(y1[i])).wrapping_add(c1[i])]
        })
    });
    Shares { s0: z0, s1: z1, len: n }
}

/// SelectShare(alpha, x, y) = x + alpha (y - x): x where alpha = 0, y where alpha = 1.
pub fn select_share(ctx: &mut Ctx, alpha: &Shares, x: &Shares, y: &Shares) -> Shares {
    x.add(&mul(ctx, alpha, &y.sub(x)))
}

/// Local truncation by `frac` bits (SecureML): 0 rounds, 0 bits. Each result is
/// floor(x / 2^frac) or one more, except with probability about |x| / 2^63.
pub fn truncate_shares(x: &Shares, frac: u32) -> Shares {
    x.each(x.len, |k, s| s.iter().map(|s| truncate_share(*s, k, frac)).collect())
}

/// P2 shares the 64 bits of each value over Z_67: `n * 64` elements to each of P0,
/// P1. Bit 8 b + q of a value goes to place 8 q + b of its 64: the bits as an 8 x 8
/// matrix, bytes (b) across and bit within the byte (q) down, stored row by row.
/// PrivateCompare's sums over higher bits then run down eight bytes at once (see
/// `compare_terms`); the order on the wire is P2's choice and costs nothing.
pub(super) fn deal_bits(rng: &mut Prg, x: &[u64]) -> (Vec<u8>, Vec<u8>) {
    let s0 = rng.field(x.len() * 64);
    let s1 = bit_shares(x, &s0);
    (s0, s1)
}

/// P2 shares values over a ring: one random half to P0, the difference to P1.
fn deal_odd(rng: &mut Prg, x: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let s0 = rng.odd(x.len());
    let s1 = x.iter().zip(&s0).map(|(x, s)| odd_sub(*x, *s)).collect();
    (s0, s1)
}

fn deal_ring(rng: &mut Prg, x: &[u64]) -> (Vec<u64>, Vec<u64>) {
    let s = Shares::share(x, rng);
    (s.s0, s.s1)
}

/// PrivateCompare (SecureNN Algorithm 3) over `n` values: P0, P1 hold Z_67 shares of
/// the bits of x (`x0`, `x1`, 64 per value, placed as `deal_bits` places them), both
/// know the public r and a common bit beta. P2 learns beta' = beta XOR (x > r), and
/// nothing else (elsewhere the result is empty). 1 round, 2 * 64 log p bits per value.
pub fn private_compare(ctx: &mut Ctx, n: usize, x0: &[u8], x1: &[u8], r: &[u64], beta: &[u8]) -> Vec<u8> {
    #[cfg(test)]
    let variant = match ctx.leak {
        Leak::CompareUnpermuted => Variant::LeakyNoPermutation,
        Leak::CompareNoZeroShares => Variant::LeakyNoZeroShares,
        _ => Variant::Secure,
    };
    #[cfg(not(test))]
    let variant = Variant::Secure;
    private_compare_with(ctx, n, x0, x1, r, beta, variant)
}

pub fn private_compare_with(ctx: &mut Ctx, n: usize, x0: &[u8], x1: &[u8], r: &[u64], beta: &[u8], variant: Variant) -> Vec<u8> {
    let (p0, p1) = (ctx.at(P0), ctx.at(P1));
    let (mut d0, mut d1) = (Vec::new(), Vec::new());
    if p0 || p1 {
        // Each party's terms depend on its own bit shares alone (the kernel keeps the two
        // apart), so a party without the other's shares computes its own from zeros there.
        let zeros = if p0 && p1 { Vec::new() } else { vec![0u8; n * 64] };
        let (x0, x1) = (if p0 { x0 } else { &zeros[..] }, if p1 { x1 } else { &zeros[..] });
        (d0, d1) = (Vec::with_capacity(n * 64), Vec::with_capacity(n * 64));
        masked_terms(&mut ctx.seeds.k01, &Compare { x0, x1, r, beta, variant }, &mut d0, &mut d1);
    }
    ctx.net.step();
    // P0 -> P2 and P1 -> P2: the permuted d_i shares, 64 Z_67 elements per value each.
    ctx.net.send_field(P0, P2, Dep::Data, n * 64, when(p0, || d0).as_slice());
    ctx.net.send_field(P1, P2, Dep::Data, n * 64, when(p1, || d1).as_slice());
    let (d0, d1) = (ctx.net.recv_field(P0, P2), ctx.net.recv_field(P1, P2));
    // P2: beta' = 1 iff some d_i = 0.
    when(ctx.at(P2), || zero_found(&d0, &d1))
}

/// ShareConvert (SecureNN Algorithm 4, with the proof's formula; the printed step 11
/// is wrong, see the spec's erratum): Z_L shares of a (a != L - 1) to Z_(L-1) shares
/// of a. 4 rounds, 4 l log p + 6 l bits per value. Also returns the step in which
/// P2 sends (its second), where ComputeMSB's randomness can ride.
pub fn share_convert(ctx: &mut Ctx, a: &Shares) -> (Shares, Step) {
    let n = a.len();
    let (p0, p1, p2) = (ctx.at(P0), ctx.at(P1), ctx.at(P2));
    // Common to P0, P1: r = r0 + r1 with alpha = wrap(r0, r1), and bits eta''.
    let k01 = &mut ctx.seeds.k01;
    let (r0, r1, eta2) = when(p0 || p1, || (k01.ring(n), k01.ring(n), k01.bits(n)));
    // PrivateCompare below compares with r - 1 (r = 0 compares with 0 instead,
    // which errs only if also x = 0).
    let [alpha, r_minus_1] = when(p0 || p1, || columns(n, |i| [wrap(r0[i], r1[i]), r0[i].wrapping_add(r1[i]).saturating_sub(1)]));

    ctx.net.step();
    let (a0, a1) = (&a.s0, &a.s1);
    let [masked0, beta0] = when(p0, || columns(n, |i| [a0[i].wrapping_add(r0[i]), wrap(a0[i], r0[i])]));
    let [masked1, beta1] = when(p1, || columns(n, |i| [a1[i].wrapping_add(r1[i]), wrap(a1[i], r1[i])]));
    // P0 -> P2, P1 -> P2: a~_j = a_j + r_j, n ring elements each.
    ctx.net.send(P0, P2, Elem::Ring, Dep::Data, n, &masked0);
    ctx.net.send(P1, P2, Elem::Ring, Dep::Data, n, &masked1);
    let (masked0, masked1) = (ctx.net.recv(P0, P2), ctx.net.recv(P1, P2));

    let p2_step = ctx.net.step();
    // P2: x = a~0 + a~1 and delta = wrap(a~0, a~1); it shares x's bits and delta.
    let own2 = &mut ctx.seeds.own[2];
    let (xb0, xb1, delta0, delta1) = when(p2, || {
        let [x, delta] = columns(n, |i| [masked0[i].wrapping_add(masked1[i]), wrap(masked0[i], masked1[i])]);
        let (xb0, xb1) = deal_bits(own2, &x);
        let (delta0, delta1) = deal_odd(own2, &delta);
        (xb0, xb1, delta0, delta1)
    });
    // P2 -> P0, P1: 64 Z_67 bit shares per value, and a Z_(L-1) share of delta.
    ctx.net.send_field(P2, P0, Dep::Data, n * 64, &xb0);
    ctx.net.send_field(P2, P1, Dep::Data, n * 64, &xb1);
    ctx.net.send(P2, P0, Elem::Odd, Dep::Data, n, &delta0);
    ctx.net.send(P2, P1, Elem::Odd, Dep::Data, n, &delta1);
    let (xb0, delta0) = (ctx.net.recv_field(P2, P0), ctx.net.recv(P2, P0));
    let (xb1, delta1) = (ctx.net.recv_field(P2, P1), ctx.net.recv(P2, P1));

    // PrivateCompare(x, r - 1, eta''): P2 learns eta' = eta'' xor (x > r - 1).
    let eta1 = private_compare(ctx, n, &xb0, &xb1, &r_minus_1, &eta2);

    ctx.net.step();
    let (e0, e1) = when(p2, || {
        let eta1_ring: Vec<u64> = eta1.iter().map(|&b| b as u64).collect();
        #[cfg(test)]
        if ctx.leak == Leak::ShareConvertEtaInClear {
            return (eta1_ring, vec![0; n]);
        }
        deal_odd(&mut ctx.seeds.own[2], &eta1_ring)
    });
    // P2 -> P0, P1: a Z_(L-1) share of eta' each.
    ctx.net.send(P2, P0, Elem::Odd, Dep::Data, n, &e0);
    ctx.net.send(P2, P1, Elem::Odd, Dep::Data, n, &e1);
    let (e0, e1) = (ctx.net.recv(P2, P0), ctx.net.recv(P2, P1));

    // eta = eta' xor eta'' on shares; theta = beta0 + beta1 + delta + eta - alpha - 1;
    // y_j = a_j - theta_j in Z_(L-1).
    let [y0] = when(p0, || {
        columns(n, |k| {
            let eta0 = if eta2[k] == 0 { e0[k] } else { odd_sub(1, e0[k]) };
            let theta0 = odd_sub(odd_add(odd_add(beta0[k], delta0[k]), eta0), alpha[k] + 1);
            [odd_sub(odd(a0[k]), theta0)]
        })
    });
    let [y1] = when(p1, || {
        columns(n, |k| {
            let eta1 = if eta2[k] == 0 { e1[k] } else { odd_neg(e1[k]) };
            let theta1 = odd_add(odd_add(beta1[k], delta1[k]), eta1);
            [odd_sub(odd(a1[k]), theta1)]
        })
    });
    (Shares { s0: y0, s1: y1, len: n }, p2_step)
}

/// ComputeMSB (SecureNN Algorithm 5): Z_(L-1) shares of y to Z_L shares of its most
/// significant bit, via MSB(y) = LSB(2y) in the odd ring. 5 rounds alone (4 when its
/// data-independent first step rides in `early`), 4 l log p + 13 l bits per value.
pub fn compute_msb(ctx: &mut Ctx, y: &Shares, early: Option<Step>) -> Shares {
    let n = y.len();
    let (p0, p1, p2) = (ctx.at(P0), ctx.at(P1), ctx.at(P2));
    let early = early.unwrap_or_else(|| ctx.net.step());
    // P2 draws x in Z_(L-1) and deals shares of x, of its bits and of its LSB.
    let own2 = &mut ctx.seeds.own[2];
    #[cfg(test)]
    let unmasked = ctx.leak == Leak::MsbUnmasked;
    #[cfg(not(test))]
    let unmasked = false;
    let (x0, x1, xb0, xb1, l0, l1) = when(p2, || {
        let x = own2.odd(n);
        let x = if unmasked { vec![0; n] } else { x };
        let (x0, x1) = deal_odd(own2, &x);
        let (xb0, xb1) = deal_bits(own2, &x);
        let lsb: Vec<u64> = x.iter().map(|x| x & 1).collect();
        let (l0, l1) = deal_ring(own2, &lsb);
        (x0, x1, xb0, xb1, l0, l1)
    });
    // P2 -> P0, P1 (data-independent, in `early`): x share (l), 64 bit shares (64 log p), LSB share (l).
    ctx.net.send_in(early, P2, P0, Elem::Odd, Dep::Fresh, n, &x0);
    ctx.net.send_in(early, P2, P1, Elem::Odd, Dep::Fresh, n, &x1);
    ctx.net.send_field_in(early, P2, P0, Dep::Fresh, n * 64, &xb0);
    ctx.net.send_field_in(early, P2, P1, Dep::Fresh, n * 64, &xb1);
    ctx.net.send_in(early, P2, P0, Elem::Ring, Dep::Fresh, n, &l0);
    ctx.net.send_in(early, P2, P1, Elem::Ring, Dep::Fresh, n, &l1);
    let (x0, xb0, l0) = (ctx.net.recv(P2, P0), ctx.net.recv_field(P2, P0), ctx.net.recv(P2, P0));
    let (x1, xb1, l1) = (ctx.net.recv(P2, P1), ctx.net.recv_field(P2, P1), ctx.net.recv(P2, P1));

    ctx.net.step();
    let (y0, y1) = (&y.s0, &y.s1);
    let [c0] = when(p0, || columns(n, |i| [odd_add(odd_add(y0[i], y0[i]), x0[i])]));
    let [c1] = when(p1, || columns(n, |i| [odd_add(odd_add(y1[i], y1[i]), x1[i])]));
    // P0 <-> P1: c_j = 2 y_j + x_j, one Z_(L-1) element each way; c becomes public.
    ctx.net.send(P0, P1, Elem::Odd, Dep::Data, n, &c0);
    ctx.net.send(P1, P0, Elem::Odd, Dep::Data, n, &c1);
    let (c0_at_1, c1_at_0) = (ctx.net.recv(P0, P1), ctx.net.recv(P1, P0));
    let c: Vec<u64> = match (p0, p1) {
        (true, _) => c0.iter().zip(&c1_at_0).map(|(a, b)| odd_add(*a, *b)).collect(),
        (false, true) => c0_at_1.iter().zip(&c1).map(|(a, b)| odd_add(*a, *b)).collect(),
        _ => Vec::new(),
    };

    // PrivateCompare(x, c, beta): P2 learns beta' = beta xor (x > c), i.e. whether 2y + x wrapped.
    let beta = when(p0 || p1, || ctx.seeds.k01.bits(n));
    let beta1 = private_compare(ctx, n, &xb0, &xb1, &c, &beta);

    ctx.net.step();
    let (b0, b1) = when(p2, || {
        let beta1_ring: Vec<u64> = beta1.iter().map(|&b| b as u64).collect();
        #[cfg(test)]
        if ctx.leak == Leak::MsbBetaInClear {
            return (vec![0; n], beta1_ring);
        }
        deal_ring(&mut ctx.seeds.own[2], &beta1_ring)
    });
    // P2 -> P0, P1: a Z_L share of beta' each.
    ctx.net.send(P2, P0, Elem::Ring, Dep::Data, n, &b0);
    ctx.net.send(P2, P1, Elem::Ring, Dep::Data, n, &b1);
    let (b0, b1) = (ctx.net.recv(P2, P0), ctx.net.recv(P2, P1));

    // gamma = beta xor beta' (the wrap bit), delta = c_0 xor x_0; MSB = gamma xor delta
    // = gamma + delta - 2 gamma delta, with one Mul whose triple share rides early.
    // XOR with a public bit: P0's share s becomes 1 - s, P1's -s.
    let xor0 = |bit: u64, s: u64| if bit == 1 { 1u64.wrapping_sub(s) } else { s };
    let xor1 = |bit: u64, s: u64| if bit == 1 { s.wrapping_neg() } else { s };
    let [g0, d0] = when(p0, || columns(n, |i| [xor0(beta[i] as u64, b0[i]), xor0(c[i] & 1, l0[i])]));
    let [g1, d1] = when(p1, || columns(n, |i| [xor1(beta[i] as u64, b1[i]), xor1(c[i] & 1, l1[i])]));
    let (gamma, delta) = (Shares { s0: g0, s1: g1, len: n }, Shares { s0: d0, s1: d1, len: n });
    let theta = mul_in(ctx, &gamma, &delta, Some(early));
    let g = [&gamma.s0, &gamma.s1];
    let t = [&theta.s0, &theta.s1];
    delta.each(n, |k, d| {
        let [m] = columns(n, |i| [g[k][i].wrapping_add(d[i]).wrapping_sub(t[k][i].wrapping_add(t[k][i]))]);
        m
    })
}

/// DReLU (SecureNN Algorithm 6): Z_L shares of 1 where a >= 0, else 0, for a in
/// [-2^62, 2^62). 8 rounds, (8 log p + 19) l bits per value.
///
/// In one process a layer's values go through in parts of `DRELU_PART`, side by side
/// (same steps, same depths, as if each message carried every part): a part's byte
/// shares (64 per value) then stay in L2. A whole 64 x 32 x 32 layer at once went
/// through L3: `kernels_bench` gave 494-810 ns per value then, 422-631 in parts
/// (alternating runs).
pub fn drelu(ctx: &mut Ctx, a: &Shares) -> Shares {
    side_by_side(ctx, a, ctx.drelu_part, drelu_part)
}

/// Values per part in `drelu`: 256 KiB of byte shares per party.
const DRELU_PART: usize = 4096;

/// Runs `protocol` on parts of at most `part` values of `x` one after another, each
/// from the same steps and clocks (`Transport::clocks`), and joins the results. Each
/// part draws its own randomness, in order.
fn side_by_side(ctx: &mut Ctx, x: &Shares, part: usize, protocol: fn(&mut Ctx, &Shares) -> Shares) -> Shares {
    if x.len() <= part {
        return protocol(ctx, x);
    }
    let start = ctx.net.clocks();
    let mut end = None;
    let mut parts = Vec::new();
    for from in (0..x.len()).step_by(part) {
        ctx.net.set_clocks(start);
        parts.push(protocol(ctx, &x.slice(from..(from + part).min(x.len()))));
        // Every part runs the same protocol, so every part ends on the same clocks.
        debug_assert!(end.is_none_or(|e| e == ctx.net.clocks()), "parts of one protocol ended apart");
        end = Some(ctx.net.clocks());
    }
    Shares::concat(&parts.iter().collect::<Vec<_>>())
}

fn drelu_part(ctx: &mut Ctx, a: &Shares) -> Shares {
    // 2a is even, so never L - 1, as ShareConvert needs; MSB(2a) is a's sign in range.
    let doubled = a.map(|s| s.iter().map(|v| v.wrapping_add(*v)).collect());
    let (y, p2_step) = share_convert(ctx, &doubled);
    let msb = compute_msb(ctx, &y, Some(p2_step));
    msb.each(
        msb.len,
        |k, m| if k == 0 { m.iter().map(|m| 1u64.wrapping_sub(*m)).collect() } else { m.iter().map(|m| m.wrapping_neg()).collect() },
    )
}

/// ReLU (SecureNN Algorithm 7) = DReLU, then Mul of the 0/1 decision with the value.
/// 10 rounds, 88 l bits per value; the decision is an integer, so no truncation.
pub fn relu(ctx: &mut Ctx, a: &Shares) -> Shares {
    let d = drelu(ctx, a);
    mul(ctx, &d, a)
}

/// Maxpool (SecureNN Algorithm 9) over windows of n values, all windows at once:
/// `columns[i]` holds the i-th value of every window. Returns shares of each
/// window's maximum and of its index (0-based, the first of equal values; an
/// integer, not fixed point). n - 1 steps, each 9 rounds and 93 l bits per window:
///
/// d = DReLU(max - x_i) (1 where the running maximum stays), then two SelectShares
/// side by side, max = x_i + d (max - x_i) and ind = i + d (ind - i), as one Mul of
/// 2 values per window. Values must lie in [-2^61, 2^61) so that max - x_i is in
/// DReLU's range.
pub fn maxpool(ctx: &mut Ctx, columns: &[Shares]) -> (Shares, Shares) {
    let (first, rest) = columns.split_first().expect("a window holds at least one value");
    let w = first.len();
    let mut max = first.clone();
    let mut ind = first.map(|s| vec![0; s.len()]);
    for (i, x) in rest.iter().enumerate() {
        let i = (i + 1) as u64;
        let before = ctx.net.current();
        let diffs = max.sub(x);
        let d = drelu(ctx, &diffs);
        // The Mul's triple is data-independent, so its C1 rides in the DReLU's first
        // step, and the SelectShares add only their opening: 9 rounds, not 10.
        let ind_minus_i = ind.add_public(&vec![i.wrapping_neg(); w]);
        // P2 -> P1: C1, 2 ring elements per window; P0 <-> P1: E and F, 2 each per window, each way.
        let picked = mul_in(ctx, &Shares::concat(&[&d, &d]), &Shares::concat(&[&diffs, &ind_minus_i]), Some(Step(before.0 + 1)));
        max = x.add(&picked.slice(0..w));
        ind = picked.slice(w..2 * w).add_public(&vec![i; w]);
    }
    (max, ind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::new(42, 13)
    }

    fn share(ctx: &mut Ctx, x: &[u64]) -> Shares {
        Shares::share(x, &mut ctx.seeds.own[0])
    }

    fn edge_values() -> Vec<u64> {
        let big = (1u64 << 62) - 1;
        vec![0, 1, u64::MAX, 2, u64::MAX - 1, big, (-(1i64 << 62)) as u64, 1 << 40, (-(1i64 << 40)) as u64, 12345, (-12345i64) as u64]
    }

    #[test]
    fn beaver_products_are_exact() {
        let mut c = ctx();
        let x = share(&mut c, &[1, 2, 3, 4, 5, 6]); // 2 x 3
        let y = share(&mut c, &[7, 8, 9, 10, 11, u64::MAX]); // 3 x 2
        let z = mat_mul(&mut c, &x, &y, 2, 3, 2);
        assert_eq!(z.reveal(), matmul(&[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, u64::MAX], 2, 3, 2));
        let m = mul(&mut c, &x, &x);
        assert_eq!(m.reveal(), vec![1, 4, 9, 16, 25, 36]);
    }

    #[test]
    fn bit_shares_sit_in_byte_by_bit_order() {
        let mut c = ctx();
        let xs = [0x8000_0000_0000_0001u64, 0x0123_4567_89ab_cdef];
        let (s0, s1) = deal_bits(&mut c.seeds.own[2], &xs);
        for (k, x) in xs.iter().enumerate() {
            for bit in 0..64 {
                let at = k * 64 + 8 * (bit % 8) + bit / 8;
                assert_eq!(f_add(s0[at], s1[at]) as u64, (x >> bit) & 1, "value {k}, bit {bit}");
            }
        }
    }

    #[test]
    fn private_compare_on_edges_and_random() {
        let mut c = ctx();
        let mut xs = edge_values();
        let mut rs = edge_values();
        rs.rotate_left(3);
        xs.extend(c.seeds.own[0].ring(300));
        rs.extend(c.seeds.own[1].ring(300));
        // Equal values and neighbours too.
        xs.extend([5, 5, 6, u64::MAX, u64::MAX]);
        rs.extend([5, 6, 5, u64::MAX, u64::MAX - 1]);
        let n = xs.len();
        let beta = c.seeds.own[1].bits(n);
        let (b0, b1) = deal_bits(&mut c.seeds.own[2], &xs);
        let out = private_compare(&mut c, n, &b0, &b1, &rs, &beta);
        for k in 0..n {
            assert_eq!(out[k], beta[k] ^ (xs[k] > rs[k]) as u8, "x {} r {} beta {}", xs[k], rs[k], beta[k]);
        }
        // The corner case: beta = 1 and r = 2^64 - 1.
        let (b0, b1) = deal_bits(&mut c.seeds.own[2], &[7, u64::MAX]);
        assert_eq!(private_compare(&mut c, 2, &b0, &b1, &[u64::MAX, u64::MAX], &[1, 1]), vec![1, 1]);
    }

    #[test]
    fn share_convert_keeps_the_value_in_the_odd_ring() {
        let mut c = ctx();
        let mut xs: Vec<u64> = edge_values().into_iter().filter(|&v| v != u64::MAX).collect();
        xs.extend(c.seeds.own[0].ring(500).into_iter().filter(|&v| v != u64::MAX));
        // Shares that wrap and shares that do not, for the same values.
        let mut a = share(&mut c, &xs);
        a.s0[0] = u64::MAX;
        a.s1[0] = xs[0].wrapping_sub(u64::MAX);
        let (y, _) = share_convert(&mut c, &a);
        assert_eq!(y.reveal_odd(), xs.iter().map(|&v| odd(v)).collect::<Vec<_>>());
    }

    #[test]
    fn compute_msb_reads_the_top_bit() {
        let mut c = ctx();
        let mut ys: Vec<u64> = vec![0, 1, 1 << 63, (1 << 63) - 1, ODD - 1, 2];
        ys.extend(c.seeds.own[0].odd(500));
        let (s0, s1) = deal_odd(&mut c.seeds.own[1], &ys);
        let m = compute_msb(&mut c, &Shares::new(s0, s1), None);
        assert_eq!(m.reveal(), ys.iter().map(|y| y >> 63).collect::<Vec<_>>());
    }

    #[test]
    fn drelu_and_relu_on_edge_values() {
        let mut c = ctx();
        let mut xs = edge_values();
        xs.retain(|&v| (v as i64) >= -(1 << 62) && (v as i64) < (1 << 62));
        xs.extend(c.seeds.own[0].ring(1000).into_iter().map(|v| ((v as i64) >> 2) as u64));
        let a = share(&mut c, &xs);
        let d = drelu(&mut c, &a);
        assert_eq!(d.reveal(), xs.iter().map(|&v| ((v as i64) >= 0) as u64).collect::<Vec<_>>());
        let r = relu(&mut c, &a);
        assert_eq!(r.reveal(), xs.iter().map(|&v| if (v as i64) >= 0 { v } else { 0 }).collect::<Vec<_>>());
    }

    #[test]
    fn per_value_costs_match_the_spec() {
        let mut c = ctx();
        let a = share(&mut c, &[5, (-3i64) as u64]);
        let mark = c.net.mark();
        drelu(&mut c, &a);
        let t = c.net.tally_since(mark);
        assert_eq!((t.steps, t.depth), (8, 8));
        assert_eq!(t.bits_by_party, [2 * 1280, 2 * 1280, 2 * 2752]);
        let mark = c.net.mark();
        relu(&mut c, &a);
        let t = c.net.tally_since(mark);
        assert_eq!((t.steps, t.depth), (10, 9));
        assert_eq!(t.bits_by_party.iter().sum::<u64>(), 2 * 88 * 64);
    }

    #[test]
    fn maxpool_finds_each_windows_first_maximum_at_secure_nns_price() {
        // 5 windows of 4 values: ties (the first one's index wins), negatives, extremes
        // of the range, and 3 steps of 9 rounds and 93 l bits per window each.
        let windows: [[i64; 4]; 5] =
            [[1, 5, 5, 2], [-7, -3, -9, -3], [0, 0, 0, 0], [(1 << 61) - 1, -(1 << 61), 3, 4], [-(1 << 61), 9, 10, 8]];
        let mut c = ctx();
        let columns: Vec<Shares> =
            (0..4).map(|i| windows.iter().map(|w| w[i] as u64).collect::<Vec<_>>()).map(|col| share(&mut c, &col)).collect();
        c.net.step();
        let mark = c.net.mark();
        let (max, ind) = maxpool(&mut c, &columns);
        let t = c.net.tally_since(mark);
        let expected: Vec<(u64, u64)> = windows
            .iter()
            .map(|w| {
                let (i, m) = w.iter().enumerate().fold((0, w[0]), |(bi, bm), (i, &v)| if v > bm { (i, v) } else { (bi, bm) });
                (m as u64, i as u64)
            })
            .collect();
        assert_eq!(max.reveal().into_iter().zip(ind.reveal()).collect::<Vec<_>>(), expected);
        assert_eq!((t.steps, t.depth), (27, 27));
        let per_window_step = [8 * 64 + 2 * 512, 8 * 64 + 2 * 512, 13 * 64 + 4 * 512];
        assert_eq!(t.bits_by_party, per_window_step.map(|b| b * 5 * 3));
        assert_eq!(t.bits_by_party.iter().sum::<u64>(), 93 * 64 * 5 * 3);
    }

    #[test]
    fn a_drelu_in_parts_costs_what_one_in_a_piece_does() {
        // Three parts of DRELU_PART, the last one short: right signs, and the steps,
        // depth and bits of one DReLU over all the values.
        let mut c = ctx();
        let n = 2 * DRELU_PART + 100;
        let xs: Vec<u64> = c.seeds.own[0].ring(n).into_iter().map(|v| ((v as i64) >> 2) as u64).collect();
        let a = share(&mut c, &xs);
        c.net.step(); // Something before it, so that the parts start from a clock of their own.
        let mark = c.net.mark();
        let d = drelu(&mut c, &a);
        let t = c.net.tally_since(mark);
        assert_eq!(d.reveal(), xs.iter().map(|&v| ((v as i64) >= 0) as u64).collect::<Vec<_>>());
        assert_eq!((t.steps, t.depth), (8, 8));
        assert_eq!(t.bits_by_party, [n as u64 * 1280, n as u64 * 1280, n as u64 * 2752]);
    }

    #[test]
    fn a_drelu_draws_about_491_bytes_of_randomness_per_value() {
        // 64 bit shares dealt twice, PrivateCompare's multipliers and zero shares
        // twice (one byte per Z_67 element), two rotations of 64 places (a byte each),
        // and 13 ring elements; the simulator's speed rests on this budget.
        let drawn =
            |c: &Ctx| -> u64 { c.seeds.own.iter().chain([&c.seeds.k01, &c.seeds.k02, &c.seeds.k12]).map(|g| g.bytes_drawn()).sum() };
        let mut c = ctx();
        let n = 4096;
        let xs: Vec<u64> = c.seeds.own[1].ring(n).iter().map(|v| v >> 2).collect();
        let a = share(&mut c, &xs);
        let before = drawn(&c);
        drelu(&mut c, &a);
        let per_value = (drawn(&c) - before) as f64 / n as f64;
        assert!((488.0..500.0).contains(&per_value), "{per_value} bytes per value");
    }

    /// Pearson's statistic of observed counts against expected counts.
    fn chi_square(observed: &[f64], expected: &[f64]) -> f64 {
        // Bins nobody expects contribute nothing (and would divide by zero).
        observed.iter().zip(expected).filter(|(_, e)| **e > 0.0).map(|(o, e)| (o - e) * (o - e) / e).sum()
    }

    /// P2's view of PrivateCompare on one input set: the histogram of every Z_67
    /// share it receives, and of where the zeros of the d_i sit.
    fn p2_view(variant: Variant, xs: &[u64], rs: &[u64]) -> (Vec<f64>, Vec<f64>) {
        let mut c = Ctx::new(9, 13);
        let beta = vec![0u8; xs.len()];
        let (b0, b1) = deal_bits(&mut c.seeds.own[2], xs);
        c.net.capture = Some(P2);
        private_compare_with(&mut c, xs.len(), &b0, &b1, rs, &beta, variant);
        let (d0, d1) = (&c.net.captured[0].1, &c.net.captured[1].1);
        let mut values = vec![0f64; 67];
        let mut zeros = vec![0f64; 64];
        for i in 0..d0.len() {
            values[d0[i] as usize] += 1.0;
            values[d1[i] as usize] += 1.0;
            if (d0[i] + d1[i]) % 67 == 0 {
                zeros[i % 64] += 1.0;
            }
        }
        (values, zeros)
    }

    /// Two very different input sets with the same outcome (x > r everywhere): small
    /// values against zero, and values that differ from r only in the lowest bit. What
    /// P2 receives must look uniform and must not tell the two apart.
    fn view_check(variant: Variant) -> Result<(), String> {
        let n = 4000;
        let mut g = Prg::new(3, "inputs");
        let set_a: (Vec<u64>, Vec<u64>) = ((0..n).map(|_| 1 + g.u64() % 1000).collect(), vec![0; n]);
        let set_b: (Vec<u64>, Vec<u64>) = {
            let r: Vec<u64> = (0..n).map(|_| g.u64() & !1).collect();
            (r.iter().map(|r| r | 1).collect(), r)
        };
        let (va, za) = p2_view(variant, &set_a.0, &set_a.1);
        let (vb, zb) = p2_view(variant, &set_b.0, &set_b.1);
        // Critical values at p = 0.001: 107.3 for 66 degrees of freedom, 103.4 for 63.
        for (name, v) in [("set A", &va), ("set B", &vb)] {
            let uniform = vec![v.iter().sum::<f64>() / 67.0; 67];
            let x2 = chi_square(v, &uniform);
            if x2 > 107.3 {
                return Err(format!("{name}: received shares not uniform on Z_67, chi-square {x2:.1}"));
            }
        }
        // Homogeneity of the zero positions between the sets (equal totals: n each).
        let pooled: Vec<f64> = za.iter().zip(&zb).map(|(a, b)| (a + b) / 2.0).collect();
        let x2 = chi_square(&za, &pooled) + chi_square(&zb, &pooled);
        if x2 > 103.4 {
            return Err(format!("zero positions depend on the inputs, chi-square {x2:.1}"));
        }
        // And each set's zeros fall uniformly on the 64 places (one zero per value, as
        // x > r): the permutation is a rotation, and this is what makes it enough.
        for (name, z) in [("set A", &za), ("set B", &zb)] {
            let x2 = chi_square(z, &[n as f64 / 64.0; 64]);
            if x2 > 103.4 {
                return Err(format!("{name}: zero positions not uniform, chi-square {x2:.1}"));
            }
        }
        Ok(())
    }

    #[test]
    fn p2_view_of_private_compare_does_not_depend_on_the_inputs() {
        view_check(Variant::Secure).unwrap();
        let leak = view_check(Variant::LeakyNoPermutation).unwrap_err();
        assert!(leak.starts_with("zero positions depend on the inputs"), "{leak}");
    }

    /// Layers of one image draw from one context's generators in turn: a second ReLU
    /// on the same input (the next layer, say) is masked afresh, every message new.
    #[test]
    fn successive_protocols_in_one_context_never_reuse_masks() {
        use crate::mpc::transport::Party;
        let mut c = ctx();
        let a = share(&mut c, &edge_values());
        for party in [Party::P0, Party::P1, Party::P2] {
            c.net.capture = Some(party);
            c.net.captured.clear();
            relu(&mut c, &a);
            let first = std::mem::take(&mut c.net.captured);
            relu(&mut c, &a);
            assert_eq!(first.len(), c.net.captured.len());
            for (m, n) in first.iter().zip(&c.net.captured) {
                assert_ne!(m, n, "{party:?} received a message twice");
            }
        }
    }

    #[test]
    fn same_seed_same_transcript() {
        let run = |seed| {
            let mut c = Ctx::new(seed, 13);
            let a = share(&mut c, &[5, 7, (-3i64) as u64]);
            relu(&mut c, &a);
            c.net.transcript
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
