//! The wire: every message a party sends, with its sender, receiver, round, element
//! type and count. Nothing moves between parties except through `send`, so the
//! totals here are what the protocol really sends.
//!
//! Two round counts. *Steps* follow the paper's convention: a protocol opens a new
//! step for each of its communication rounds as SecureNN's tables count them (a
//! product: the triple share, then the opening; DReLU: 8). *Depth* counts true
//! message dependencies: a party's message in a step depends on everything it had
//! received before the step, except data-independent randomness (`Dep::Fresh`),
//! which could be sent at the very start (depth 1) and delays nothing.

use super::cpu::{Simd, simd};
use super::prg::fnv1a;
use crate::spec::PerParty;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    P0 = 0,
    P1 = 1,
    P2 = 2,
}

/// What a message carries, and so how many bits each element takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// Z_L share or masked value: l bits.
    Ring,
    /// Z_(L-1) share: l bits.
    Odd,
    /// Z_67 share: log p bits.
    Field,
}

/// Which cost-model family a message is billed to (`bits_by_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Linear = 0,
    Drelu = 1,
    Mul = 2,
}

/// Whether a message depends on data, for the depth count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dep {
    Data,
    Fresh,
}

/// A communication step, as returned by `Transport::step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step(pub u64);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: Party,
    pub to: Party,
    pub step: u64,
    pub depth: u64,
    pub elem: Elem,
    pub count: u64,
    pub bits: u64,
    pub family: Family,
}

/// Totals over a stretch of messages (a layer, a run).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub steps: u64,
    pub depth: u64,
    pub bits_by_party: PerParty<u64>,
    pub bits_by_family: [u64; 3],
}

/// See `Transport::clocks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    steps: u64,
    clock: [u64; 3],
    pending: [u64; 3],
}

impl Clocks {
    /// Where work that needs both `self` and `other` done can start: the later of
    /// each (a layer with two inputs, after the branches that made them).
    pub fn join(self, other: Clocks) -> Clocks {
        let max = |a: [u64; 3], b: [u64; 3]| std::array::from_fn(|i| a[i].max(b[i]));
        Clocks { steps: self.steps.max(other.steps), clock: max(self.clock, other.clock), pending: max(self.pending, other.pending) }
    }
}

/// Which of the three parties this process runs: all of them in the simulator, one
/// in `explore party`. A party's part of a protocol runs only where it is here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Here([bool; 3]);

impl Here {
    pub const ALL: Here = Here([true; 3]);

    pub fn only(p: Party) -> Here {
        let mut h = [false; 3];
        h[p as usize] = true;
        Here(h)
    }

    pub fn has(self, p: Party) -> bool {
        self.0[p as usize]
    }
}

/// What a frame carries: a counted protocol message, or setup outside the protocol
/// (shares of the model and input dealt, the output opened), which the paper does
/// not count either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Protocol = 0,
    Setup = 1,
}

/// What the receiver of a message knows it must get: every party runs the same
/// code over the same public sizes, so a frame that differs is a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub kind: Kind,
    pub step: u64,
    pub elem: Elem,
    pub count: u64,
}

impl Head {
    /// Payload bytes on the wire: a ring element in 8, a Z_67 element in 1.
    pub fn payload_bytes(&self) -> u64 {
        self.count * if self.elem == Elem::Field { 1 } else { 8 }
    }
}

/// A payload between parties: ring elements or Z_67 elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Words(Vec<u64>),
    Bytes(Vec<u8>),
}

/// Why a party stopped hearing from another: named by party and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkError {
    pub peer: Party,
    pub what: String,
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.peer, self.what)
    }
}

/// Messages to and from parties in other processes (`mpc::net` runs them over TCP).
/// Sends must not wait for the peer: every party sends its messages of a step
/// before it receives those of others, so a blocking send could deadlock.
pub trait Link: Send {
    fn send(&mut self, to: Party, head: Head, payload: &Payload) -> Result<(), LinkError>;
    /// The next frame from `from`, which must match `head`.
    fn recv(&mut self, from: Party, head: Head) -> Result<Payload, LinkError>;
}

pub struct Transport {
    ring_bits: u64,
    field_bits: u64,
    steps: u64,
    clock: [u64; 3],
    pending: [u64; 3],
    /// The family new messages are billed to.
    pub family: Family,
    pub log: Vec<Message>,
    /// Running hash of every message and its payload this process sends or receives:
    /// equal hashes, equal transcripts.
    pub transcript: u64,
    /// When set, every payload this party receives is kept with its kind, widened to
    /// u64 (the view tests read a party's view from it).
    pub capture: Option<Party>,
    pub captured: Vec<(Elem, Vec<u64>)>,
    here: Here,
    /// Messages between two parties of this process, in order, per sender and receiver.
    mailbox: [[std::collections::VecDeque<Payload>; 3]; 3],
    /// What each party here has yet to receive, in order, per sender.
    expected: [[std::collections::VecDeque<Head>; 3]; 3],
    link: Option<Box<dyn Link>>,
    /// The first fault of the link; afterwards nothing is sent and receives give zeros,
    /// so the protocol code needs no error paths and the run ends with this error.
    pub failure: Option<LinkError>,
}

impl Transport {
    pub fn new(ring_bits: u64, field_bits: u64) -> Transport {
        Transport {
            ring_bits,
            field_bits,
            steps: 0,
            clock: [0; 3],
            pending: [0; 3],
            family: Family::Linear,
            log: Vec::new(),
            transcript: fnv1a(b"explore"),
            capture: None,
            captured: Vec::new(),
            here: Here::ALL,
            mailbox: Default::default(),
            expected: Default::default(),
            link: None,
            failure: None,
        }
    }

    /// One party of a networked run: the others are reached through `link`.
    pub fn party(ring_bits: u64, field_bits: u64, me: Party, link: Box<dyn Link>) -> Transport {
        Transport { here: Here::only(me), link: Some(link), ..Transport::new(ring_bits, field_bits) }
    }

    pub fn here(&self) -> Here {
        self.here
    }

    /// The step messages are sent in now (0 before the first).
    pub fn current(&self) -> Step {
        Step(self.steps)
    }

    /// Opens the next communication step: what was received so far becomes known.
    pub fn step(&mut self) -> Step {
        self.settle();
        self.steps += 1;
        Step(self.steps)
    }

    fn settle(&mut self) {
        for p in 0..3 {
            self.clock[p] = self.clock[p].max(self.pending[p]);
        }
    }

    /// `from` sends `to` ring or odd-ring elements in the current step: `n` of them,
    /// in `data` where `from` is here (elsewhere `data` is empty and only counted).
    pub fn send(&mut self, from: Party, to: Party, elem: Elem, dep: Dep, n: usize, data: &[u64]) {
        self.send_in(Step(self.steps), from, to, elem, dep, n, data);
    }

    /// Sends in an earlier step of the same protocol (randomness that rides along).
    #[allow(clippy::too_many_arguments)]
    pub fn send_in(&mut self, step: Step, from: Party, to: Party, elem: Elem, dep: Dep, n: usize, data: &[u64]) {
        let head = self.record(step, from, to, elem, dep, n as u64);
        if self.here.has(from) {
            assert_eq!(data.len(), n, "{from:?} -> {to:?}: the data of a message of {n} elements");
            self.transcript = hash_words(self.transcript, data);
            if self.capture == Some(to) {
                self.captured.push((elem, data.to_vec()));
            }
            self.post(from, to, head, || Payload::Words(data.to_vec()));
        }
    }

    /// Sends `n` Z_67 elements in the current step.
    pub fn send_field(&mut self, from: Party, to: Party, dep: Dep, n: usize, data: &[u8]) {
        self.send_field_in(Step(self.steps), from, to, dep, n, data);
    }

    pub fn send_field_in(&mut self, step: Step, from: Party, to: Party, dep: Dep, n: usize, data: &[u8]) {
        let head = self.record(step, from, to, Elem::Field, dep, n as u64);
        if self.here.has(from) {
            assert_eq!(data.len(), n, "{from:?} -> {to:?}: the data of a message of {n} elements");
            self.transcript = hash_bytes(self.transcript, data);
            if self.capture == Some(to) {
                self.captured.push((Elem::Field, data.iter().map(|&x| x as u64).collect()));
            }
            self.post(from, to, head, || Payload::Bytes(data.to_vec()));
        }
    }

    /// At `to`: the next ring message from `from`; elsewhere nothing (an empty vector).
    pub fn recv(&mut self, from: Party, to: Party) -> Vec<u64> {
        match self.take(from, to) {
            Some(Payload::Words(w)) => w,
            Some(Payload::Bytes(_)) => unreachable!("heads are checked against what was expected"),
            None => Vec::new(),
        }
    }

    /// At `to`: the next Z_67 message from `from`; elsewhere nothing.
    pub fn recv_field(&mut self, from: Party, to: Party) -> Vec<u8> {
        match self.take(from, to) {
            Some(Payload::Bytes(b)) => b,
            Some(Payload::Words(_)) => unreachable!("heads are checked against what was expected"),
            None => Vec::new(),
        }
    }

    /// Setup outside the protocol (dealt shares, the opened output): sent only
    /// between processes, uncounted in the log; within one process the receiver
    /// already holds it.
    pub fn setup_send(&mut self, from: Party, to: Party, data: &[u64]) {
        if self.here.has(from) && !self.here.has(to) {
            let head = Head { kind: Kind::Setup, step: self.steps, elem: Elem::Ring, count: data.len() as u64 };
            self.post(from, to, head, || Payload::Words(data.to_vec()));
        }
    }

    /// At `to` in another process than `from`: what `setup_send` sent, `n` elements.
    pub fn setup_recv(&mut self, from: Party, to: Party, n: usize) -> Vec<u64> {
        if !self.here.has(to) || self.here.has(from) {
            return Vec::new();
        }
        let head = Head { kind: Kind::Setup, step: self.steps, elem: Elem::Ring, count: n as u64 };
        match self.fetch(from, head) {
            Payload::Words(w) => w,
            Payload::Bytes(_) => unreachable!("heads are checked"),
        }
    }

    fn post(&mut self, from: Party, to: Party, head: Head, payload: impl FnOnce() -> Payload) {
        if self.here.has(to) {
            self.mailbox[from as usize][to as usize].push_back(payload());
        } else if self.failure.is_none() {
            let link = self.link.as_mut().expect("a party in another process is reached through a link");
            if let Err(e) = link.send(to, head, &payload()) {
                self.failure = Some(e);
            }
        }
    }

    fn take(&mut self, from: Party, to: Party) -> Option<Payload> {
        if !self.here.has(to) {
            return None;
        }
        let head = self.expected[from as usize][to as usize].pop_front().expect("a receive matches a send before it");
        if self.here.has(from) {
            return Some(self.mailbox[from as usize][to as usize].pop_front().expect("sent in this process"));
        }
        let payload = self.fetch(from, head);
        self.transcript = match &payload {
            Payload::Words(w) => hash_words(self.transcript, w),
            Payload::Bytes(b) => hash_bytes(self.transcript, b),
        };
        Some(payload)
    }

    /// From the link, or zeros of the expected size once it has failed.
    fn fetch(&mut self, from: Party, head: Head) -> Payload {
        if self.failure.is_none() {
            let link = self.link.as_mut().expect("a party in another process is reached through a link");
            match link.recv(from, head) {
                Ok(p) => return p,
                Err(e) => self.failure = Some(e),
            }
        }
        match head.elem {
            Elem::Field => Payload::Bytes(vec![0; head.count as usize]),
            _ => Payload::Words(vec![0; head.count as usize]),
        }
    }

    fn record(&mut self, step: Step, from: Party, to: Party, elem: Elem, dep: Dep, count: u64) -> Head {
        assert!(step.0 >= 1, "a message outside any step: call Transport::step first");
        let depth = match dep {
            Dep::Data => self.clock[from as usize] + 1,
            Dep::Fresh => 1,
        };
        // Fresh data could have been sent before anything else, so receiving it makes
        // no later message wait: only data-dependent messages move the clocks.
        if dep == Dep::Data {
            let t = to as usize;
            self.pending[t] = self.pending[t].max(depth);
        }
        let bits = count * if elem == Elem::Field { self.field_bits } else { self.ring_bits };
        self.log.push(Message { from, to, step: step.0, depth, elem, count, bits, family: self.family });
        let head = Head { kind: Kind::Protocol, step: step.0, elem, count };
        if self.here.has(to) {
            self.expected[from as usize][to as usize].push_back(head);
        }
        head
    }

    /// Where the step count and the parties' clocks stand: parts of one protocol run
    /// one after another from the same `Clocks` (`protocols::side_by_side`) use the
    /// same steps at the same depths, as they would if each message carried all parts.
    pub fn clocks(&self) -> Clocks {
        Clocks { steps: self.steps, clock: self.clock, pending: self.pending }
    }

    pub fn set_clocks(&mut self, c: Clocks) {
        (self.steps, self.clock, self.pending) = (c.steps, c.clock, c.pending);
    }

    /// A mark to tally from: `tally_since(mark)` covers everything after it.
    pub fn mark(&mut self) -> (usize, u64, u64) {
        self.settle();
        (self.log.len(), self.steps, self.depth())
    }

    fn depth(&self) -> u64 {
        self.clock.iter().chain(&self.pending).copied().max().unwrap_or(0)
    }

    pub fn tally_since(&mut self, mark: (usize, u64, u64)) -> Tally {
        self.settle();
        let mut t = Tally { steps: self.steps - mark.1, depth: self.depth() - mark.2, ..Tally::default() };
        for m in &self.log[mark.0..] {
            t.bits_by_party[m.from as usize] += m.bits;
            t.bits_by_family[m.family as usize] += m.bits;
        }
        t
    }
}

/// What one party sends another in one step: the messages of a stretch of the log
/// with the same step, depth, receiver, element type and family, merged into one, as
/// they would travel together (a Beaver opening's E and F; the parts of a DReLU layer),
/// in order of step, depth, sender and receiver.
pub fn transfers(log: &[Message]) -> Vec<Message> {
    let mut sorted: Vec<&Message> = log.iter().collect();
    sorted.sort_by_key(|m| (m.step, m.depth, m.from as u8, m.to as u8, m.elem as u8, m.family as u8));
    let mut out: Vec<Message> = Vec::new();
    for m in sorted {
        match out.last_mut() {
            Some(t) if (m.step, m.depth, m.from, m.to, m.elem, m.family) == (t.step, t.depth, t.from, t.to, t.elem, t.family) => {
                t.count += m.count;
                t.bits += m.bits;
            }
            _ => out.push(m.clone()),
        }
    }
    out
}

/// Folds a payload into the transcript hash: FNV-1a style over 64-bit words, in
/// `LANES` independent lanes (word i to lane i mod LANES) so that the multiplies
/// overlap, since the hash sits on the hot path of every send. Compiled for AVX-512
/// (without it a 64-bit multiply takes three 32-bit ones) and for AVX2 (four lanes
/// per register instead of SSE2's two).
fn hash_words(h: u64, words: &[u64]) -> u64 {
    match simd() {
        // Safety: `simd` found the features the variants are compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { hash_words_avx512(h, words) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { hash_words_avx2(h, words) },
        _ => hash_words_any(h, words),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn hash_words_avx512(h: u64, words: &[u64]) -> u64 {
    hash_words_any(h, words)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hash_words_avx2(h: u64, words: &[u64]) -> u64 {
    hash_words_any(h, words)
}

#[inline(always)]
fn hash_words_any(h: u64, words: &[u64]) -> u64 {
    let mut lanes: [u64; LANES] = std::array::from_fn(|i| h ^ i as u64);
    let mut blocks = words.chunks_exact(LANES);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block) {
            *lane = (*lane ^ w).wrapping_mul(PRIME);
        }
    }
    for (lane, w) in lanes.iter_mut().zip(blocks.remainder()) {
        *lane = (*lane ^ w).wrapping_mul(PRIME);
    }
    lanes.iter().fold(h ^ words.len() as u64, |h, l| (h ^ l).wrapping_mul(PRIME))
}

/// The same over bytes, eight to a little-endian word (the last one zero-padded).
fn hash_bytes(h: u64, bytes: &[u8]) -> u64 {
    match simd() {
        // Safety: `simd` found the features the variant is compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { hash_bytes_avx512(h, bytes) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { hash_bytes_avx2(h, bytes) },
        _ => hash_bytes_any(h, bytes),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn hash_bytes_avx512(h: u64, bytes: &[u8]) -> u64 {
    hash_bytes_any(h, bytes)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn hash_bytes_avx2(h: u64, bytes: &[u8]) -> u64 {
    hash_bytes_any(h, bytes)
}

#[inline(always)]
fn hash_bytes_any(h: u64, bytes: &[u8]) -> u64 {
    let mut lanes: [u64; LANES] = std::array::from_fn(|i| h ^ i as u64);
    let mut blocks = bytes.chunks_exact(8 * LANES);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            let w = u64::from_le_bytes(w.try_into().expect("chunks of 8"));
            *lane = (*lane ^ w).wrapping_mul(PRIME);
        }
    }
    for (lane, w) in lanes.iter_mut().zip(blocks.remainder().chunks(8)) {
        let mut word = [0u8; 8];
        word[..w.len()].copy_from_slice(w);
        *lane = (*lane ^ u64::from_le_bytes(word)).wrapping_mul(PRIME);
    }
    lanes.iter().fold(h ^ bytes.len() as u64, |h, l| (h ^ l).wrapping_mul(PRIME))
}

/// Four 512-bit registers of lanes: each multiply's latency hides behind the other three.
const LANES: usize = 32;

const PRIME: u64 = 0x0100_0000_01b3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cpu_variant_hashes_alike() {
        crate::mpc::cpu::note_skipped("every_cpu_variant_hashes_alike", &crate::mpc::cpu::vector_variants());
        let words: Vec<u64> = (0..1000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).take(7001).collect();
        for n in [0, 1, 31, 32, 33, 1000] {
            assert_eq!(hash_words(5, &words[..n]), hash_words_any(5, &words[..n]));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // Safety: the variant's features were just detected.
                assert_eq!(unsafe { hash_words_avx2(5, &words[..n]) }, hash_words_any(5, &words[..n]));
            }
        }
        for n in [0, 7, 255, 256, 257, 7001] {
            assert_eq!(hash_bytes(5, &bytes[..n]), hash_bytes_any(5, &bytes[..n]));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // Safety: as above.
                assert_eq!(unsafe { hash_bytes_avx2(5, &bytes[..n]) }, hash_bytes_any(5, &bytes[..n]));
            }
        }
        assert_ne!(hash_words(5, &words[..2]), hash_words(5, &[words[1], words[0]]));
    }

    #[test]
    fn transfers_merge_what_travels_together_and_keep_the_totals() {
        let mut t = Transport::new(64, 8);
        t.step();
        t.send(Party::P2, Party::P1, Elem::Ring, Dep::Fresh, 3, &[1, 2, 3]);
        t.step();
        // Two parts of one layer, as DReLU sends them: the same steps again.
        let c = t.clocks();
        t.send(Party::P0, Party::P1, Elem::Ring, Dep::Data, 2, &[1, 2]);
        t.send(Party::P0, Party::P1, Elem::Ring, Dep::Data, 1, &[3]);
        t.send_field(Party::P0, Party::P2, Dep::Data, 64, &[5; 64]);
        t.set_clocks(c);
        t.send(Party::P0, Party::P1, Elem::Ring, Dep::Data, 2, &[4, 5]);
        let merged = transfers(&t.log);
        assert_eq!(merged.len(), 3, "{merged:?}");
        let to_p1 = merged.iter().find(|m| m.step == 2 && m.to == Party::P1).expect("P0's openings");
        assert_eq!((to_p1.from, to_p1.count, to_p1.bits), (Party::P0, 5, 5 * 64));
        assert_eq!(merged[0].count, 3, "step 1 comes first");
        assert_eq!(merged.iter().map(|m| m.bits).sum::<u64>(), t.log.iter().map(|m| m.bits).sum::<u64>());
    }

    #[test]
    fn steps_and_depth_count_differently() {
        let mut t = Transport::new(64, 8);
        let m = t.mark();
        // A product: P2's triple share (fresh), then the opening.
        t.step();
        t.send(Party::P2, Party::P1, Elem::Ring, Dep::Fresh, 1, &[1]);
        t.step();
        t.send(Party::P0, Party::P1, Elem::Ring, Dep::Data, 2, &[1, 2]);
        t.send(Party::P1, Party::P0, Elem::Ring, Dep::Data, 2, &[3, 4]);
        t.send_field(Party::P0, Party::P2, Dep::Data, 64, &[5; 64]);
        let tally = t.tally_since(m);
        assert_eq!(tally.steps, 2);
        assert_eq!(tally.depth, 1, "an exchange in one step is one level, the fresh triple rides along");
        assert_eq!(tally.bits_by_party, [128 + 512, 128, 64]);
    }
}
