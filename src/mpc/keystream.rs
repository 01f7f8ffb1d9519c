//! A keystream read in pieces of any size: the buffer behind every `Prg`. The
//! blocks come from one of two ciphers, a refill (1 KiB) at a time: ChaCha8
//! (`chacha`) for everything outside the protocol, AES-128 in counter mode (`aes`)
//! for the parties' generators.

use super::aes::Aes128Ctr;
use super::chacha::ChaCha8;

/// Bytes per refill.
pub const BUFFER: usize = 1024;

enum Source {
    ChaCha8(ChaCha8),
    /// Boxed: its expanded keys make it several times ChaCha8's size.
    Aes128(Box<Aes128Ctr>),
}

pub struct Keystream {
    source: Source,
    /// Bytes computed so far.
    produced: u64,
    buf: [u8; BUFFER],
    /// Bytes of `buf` already handed out.
    pos: usize,
    /// Where `bytes` joins the end of one buffer to the start of the next.
    carry: [u8; BUFFER],
}

impl Keystream {
    /// `rand_chacha::ChaCha8Rng`'s stream for this key.
    pub fn chacha8(key: [u8; 32]) -> Keystream {
        Keystream::from(Source::ChaCha8(ChaCha8::new(key)))
    }

    /// AES-128 of the block counter 0, 1, 2, ... under this key.
    pub fn aes128(key: [u8; 16]) -> Keystream {
        Keystream::from(Source::Aes128(Box::new(Aes128Ctr::new(key))))
    }

    fn from(source: Source) -> Keystream {
        Keystream { source, produced: 0, buf: [0; BUFFER], pos: BUFFER, carry: [0; BUFFER] }
    }

    /// The next `out.len()` bytes of the stream.
    pub fn fill_bytes(&mut self, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            if self.pos == BUFFER {
                self.refill();
            }
            let take = (out.len() - done).min(BUFFER - self.pos);
            out[done..done + take].copy_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            done += take;
        }
    }

    /// Bytes of the stream handed out so far.
    pub fn position(&self) -> u64 {
        self.produced - (BUFFER - self.pos) as u64
    }

    /// How many bytes `bytes` can hand out next without joining two buffers.
    pub fn contiguous(&self) -> usize {
        if self.pos == BUFFER { BUFFER } else { BUFFER - self.pos }
    }

    /// The next `n` bytes (n <= BUFFER), borrowed straight from the buffer where they
    /// lie in one piece of it (copying every draw cost 5% of secure inference).
    /// (The common case inlined, the join kept out of line: as one function it was
    /// called for every 64 Z_67 draws, 1.9% of a CIFAR-10 image's profile.)
    #[inline(always)]
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        if self.pos + n <= BUFFER {
            self.pos += n;
            return &self.buf[self.pos - n..self.pos];
        }
        self.joined(n)
    }

    /// `bytes` across the end of the buffer: its tail, then the next buffer's head.
    #[cold]
    #[inline(never)]
    fn joined(&mut self, n: usize) -> &[u8] {
        assert!(n <= BUFFER, "at most one buffer at a time");
        let tail = BUFFER - self.pos;
        self.carry[..tail].copy_from_slice(&self.buf[self.pos..]);
        self.refill();
        self.carry[tail..n].copy_from_slice(&self.buf[..n - tail]);
        self.pos = n - tail;
        &self.carry[..n]
    }

    /// The next eight bytes, little-endian.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes(8).try_into().expect("eight bytes"))
    }

    fn refill(&mut self) {
        match &mut self.source {
            Source::ChaCha8(c) => c.fill(&mut self.buf),
            Source::Aes128(c) => c.fill(&mut self.buf),
        }
        self.produced += BUFFER as u64;
        self.pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both kinds of stream, from the same seed byte.
    fn streams(seed: u8) -> [Keystream; 2] {
        [Keystream::chacha8([seed; 32]), Keystream::aes128([seed; 16])]
    }

    #[test]
    fn pieces_of_any_size_are_the_stream_in_order() {
        for (mut pieces, mut whole) in streams(5).into_iter().zip(streams(5)) {
            let mut expected = vec![0u8; 5 * BUFFER + 100];
            whole.fill_bytes(&mut expected);
            // Pieces of varying sizes, crossing refill boundaries.
            let (mut at, mut size) = (0, 1);
            while at < expected.len() {
                let take = size.min(expected.len() - at);
                let mut got = vec![0u8; take];
                pieces.fill_bytes(&mut got);
                assert_eq!(got, expected[at..at + take]);
                (at, size) = (at + take, size * 3 % 1000 + 1);
            }
        }
    }

    #[test]
    fn borrowed_bytes_are_the_next_bytes() {
        for (mut a, mut b) in streams(2).into_iter().zip(streams(2)) {
            for n in (1..300).step_by(7) {
                let mut expected = vec![0u8; n];
                b.fill_bytes(&mut expected);
                assert_eq!(a.bytes(n), &expected[..]);
            }
        }
    }

    #[test]
    fn the_position_counts_bytes_handed_out() {
        for mut ks in streams(4) {
            assert_eq!(ks.position(), 0);
            ks.bytes(100);
            ks.next_u64();
            let mut more = [0u8; 2000];
            ks.fill_bytes(&mut more);
            assert_eq!(ks.position(), 2108);
        }
    }

    #[test]
    fn u64s_are_the_next_eight_bytes() {
        for (mut a, mut b) in streams(1).into_iter().zip(streams(1)) {
            let mut skip = [0u8; 3];
            a.fill_bytes(&mut skip);
            b.fill_bytes(&mut skip);
            for _ in 0..300 {
                let mut w = [0u8; 8];
                b.fill_bytes(&mut w);
                assert_eq!(a.next_u64(), u64::from_le_bytes(w));
            }
        }
    }

    #[test]
    fn the_two_ciphers_give_different_streams() {
        let [mut c, mut a] = streams(9);
        assert_ne!(c.next_u64(), a.next_u64());
    }
}
