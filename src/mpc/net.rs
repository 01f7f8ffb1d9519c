//! The parties over TCP: one connection per pair, length-framed messages, a writer
//! thread per peer so that a send never waits for the peer (every party sends its
//! messages of a step before it receives, as `Link` requires), and receives read
//! straight from the socket in protocol order, each frame checked against the
//! message the protocol expects before any of its payload is read or allocated.
//!
//! A frame: 24 header bytes (`MAGIC`, kind, element type, two zero bytes, the step,
//! the payload's length in bytes, little-endian) and the payload: ring elements as
//! 8 bytes each, Z_67 elements as 1 byte, so payload bytes are the simulator's bits / 8.
//!
//! With `tls::Keys` every connection runs mutually authenticated TLS 1.3 (`mpc::tls`):
//! the writer thread seals each frame into records, and receives open them.
//!
//! Network conditions are emulated on the sending side, so no root is needed: each
//! protocol frame leaves after the frames before it on the same link have gone out at
//! the link's bandwidth (a token bucket of one frame), and arrives `delay` later (a
//! delay queue: the writer holds it until then). Setup frames (dealing shares of the
//! model and input, opening the output) pass unslowed: the time model leaves them out,
//! as the paper does, and a deployment deals the model once, not per query.

use super::tls::Keys;
use super::transport::{Elem, Head, Kind, Link, LinkError, Party, Payload};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MAGIC: [u8; 4] = *b"x3pc";
const HEADER: usize = 24;
/// The opening of a connection: `MAGIC`, the connecting party, the run's fingerprint.
const HELLO: usize = 13;

/// Emulated network conditions on every link (none: as fast as the sockets go).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Conditions {
    /// One-way delay of every frame.
    pub delay: Duration,
    /// Bits per second of each link, per direction; `None`: unlimited.
    pub bandwidth_bps: Option<f64>,
}

/// What crossed this party's sockets, per peer (indexed by party).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    /// Protocol payload bytes sent to and received from each party.
    pub payload_sent: [u64; 3],
    pub payload_received: [u64; 3],
    /// Setup payload bytes (dealt shares, the opened output), apart.
    pub setup_sent: [u64; 3],
    pub setup_received: [u64; 3],
    /// Frame headers and the connection's opening, sent.
    pub framing_sent: u64,
    /// Bytes of TLS records sent, handshakes included (0 without TLS).
    pub tls_sent: u64,
    /// The protocol steps of every frame sent or received.
    pub steps: std::collections::BTreeSet<u64>,
}

/// One connection, plain or under TLS.
struct Conn {
    tcp: TcpStream,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    /// Records read from the socket that rustls has not taken yet.
    backlog: Vec<u8>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking writer leaves nothing half-done that matters here.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What goes on the wire for `plain`: TLS records, or `plain` itself. The lock is
/// held only to encrypt, never across a socket write, so that a reader is never
/// kept from draining its socket by a writer blocked on the other direction.
fn seal(tls: &Option<Arc<Mutex<rustls::Connection>>>, plain: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let Some(tls) = tls else { return Ok(plain) };
    let mut c = lock(tls);
    let mut records = Vec::with_capacity(plain.len() + plain.len() / 1024 + 64);
    // rustls buffers a bounded amount of plaintext: feed it in turns, draining records.
    let mut rest = &plain[..];
    while !rest.is_empty() {
        let n = c.writer().write(rest)?;
        rest = &rest[n..];
        if n == 0 && !c.wants_write() {
            return Err(ErrorKind::WriteZero.into());
        }
        while c.wants_write() {
            c.write_tls(&mut records)?;
        }
    }
    Ok(records)
}

impl Conn {
    /// `read_exact` that says how many bytes came before an error (an end of stream is
    /// an `UnexpectedEof` error); through TLS where there is TLS.
    fn read_fully(&mut self, buf: &mut [u8]) -> Result<(), (usize, std::io::Error)> {
        let Some(tls) = &self.tls else { return read_fully(&mut self.tcp, buf) };
        let mut got = 0;
        while got < buf.len() {
            // Decrypted bytes first; then records already read; then the socket, read
            // without the lock. rustls holds a bounded amount of plaintext, so records
            // go in only once what was decrypted has been taken.
            let read = lock(tls).reader().read(&mut buf[got..]);
            match read {
                Ok(0) => return Err((got, ErrorKind::UnexpectedEof.into())),
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock && !self.backlog.is_empty() => {
                    let mut c = lock(tls);
                    let mut rest = &self.backlog[..];
                    c.read_tls(&mut rest).map_err(|e| (got, e))?;
                    let used = self.backlog.len() - rest.len();
                    self.backlog.drain(..used);
                    c.process_new_packets().map_err(|e| (got, std::io::Error::new(ErrorKind::InvalidData, e)))?;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let mut records = [0u8; 16 * 1024];
                    match self.tcp.read(&mut records) {
                        Ok(0) => return Err((got, ErrorKind::UnexpectedEof.into())),
                        Ok(n) => self.backlog.extend_from_slice(&records[..n]),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err((got, e)),
                    }
                }
                Err(e) => return Err((got, e)),
            }
        }
        Ok(())
    }
}

/// Runs a TLS handshake over `tcp` to its end; returns the bytes it sent.
fn handshake(tcp: &mut TcpStream, c: &mut rustls::Connection) -> std::io::Result<u64> {
    let mut sent = 0;
    while c.is_handshaking() {
        sent += c.complete_io(tcp)?.1 as u64;
    }
    while c.wants_write() {
        sent += c.write_tls(tcp)? as u64;
    }
    Ok(sent)
}

struct Peer {
    conn: Conn,
    out: Option<mpsc::Sender<Outgoing>>,
    writer: Option<JoinHandle<()>>,
    /// The writer's error, if it stopped on one.
    failed: Arc<Mutex<Option<String>>>,
}

/// One party's connections to the other two.
pub struct TcpLink {
    me: Party,
    peers: [Option<Peer>; 3],
    timeout: Duration,
    traffic: Arc<Mutex<Traffic>>,
    /// A fault this party commits on purpose (`Fault::from_env`), for testing the others.
    fault: Option<Fault>,
    protocol_frames: u64,
}

/// A broken frame a party sends on purpose, to test how the others end: set by
/// `EXPLORE_FAULT=huge:N` (the N-th protocol frame claims 2^40 bytes) or
/// `EXPLORE_FAULT=truncate:N` (it stops halfway and the connection closes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Huge(u64),
    Truncate(u64),
}

impl Fault {
    pub fn from_env() -> Option<Fault> {
        let v = std::env::var("EXPLORE_FAULT").ok()?;
        let (kind, n) = v.split_once(':')?;
        let n = n.parse().ok()?;
        match kind {
            "huge" => Some(Fault::Huge(n)),
            "truncate" => Some(Fault::Truncate(n)),
            _ => None,
        }
    }
}

fn party(i: usize) -> Party {
    [Party::P0, Party::P1, Party::P2][i]
}

fn err(peer: Party, what: impl Into<String>) -> LinkError {
    LinkError { peer, what: what.into() }
}

impl TcpLink {
    /// Listens at `addrs[me]`, connects to the parties before it (P1 to P0, P2 to P0
    /// and P1) and accepts the ones after it, within `timeout`. Each connection opens
    /// with the connecting party's number and `fingerprint`, a digest of the run's
    /// settings: a party that runs something else is refused.
    pub fn connect(
        me: Party,
        addrs: &[SocketAddr; 3],
        fingerprint: u64,
        timeout: Duration,
        conditions: Conditions,
        keys: Option<&Keys>,
    ) -> Result<(TcpLink, Arc<Mutex<Traffic>>), LinkError> {
        let me_i = me as usize;
        let deadline = Instant::now() + timeout;
        let traffic = Arc::new(Mutex::new(Traffic::default()));
        let listener = TcpListener::bind(addrs[me_i]).map_err(|e| err(me, format!("cannot listen at {}: {e}", addrs[me_i])))?;
        let mut conns: [Option<Conn>; 3] = [None, None, None];
        for (j, addr) in addrs.iter().enumerate().take(me_i) {
            let mut tcp = loop {
                match TcpStream::connect_timeout(addr, Duration::from_millis(500)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(err(party(j), format!("cannot connect to {addr} within {} s: {e}", timeout.as_secs_f64())));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            tcp.set_read_timeout(Some(timeout)).ok();
            let tls = match keys {
                Some(k) => {
                    let mut c = rustls::Connection::Client(k.client(j).map_err(|e| err(me, e))?);
                    let sent = handshake(&mut tcp, &mut c).map_err(|e| {
                        err(party(j), format!("refused the TLS handshake or failed it ({e}): is this party's certificate the one it pins?"))
                    })?;
                    lock(&traffic).tls_sent += sent;
                    // The chain leads to the run's CA (rustls checked); the certificate
                    // must also be the one pinned for P_j.
                    let presented = c.peer_certificates().and_then(|certs| certs.first()).and_then(|cert| k.pinned(cert));
                    if presented != Some(j) {
                        return Err(err(party(j), "presented a certificate that is not the one pinned for it"));
                    }
                    Some(Arc::new(Mutex::new(c)))
                }
                None => None,
            };
            let mut hello = Vec::with_capacity(HELLO);
            hello.extend_from_slice(&MAGIC);
            hello.push(me_i as u8);
            hello.extend_from_slice(&fingerprint.to_le_bytes());
            let wire = seal(&tls, hello).and_then(|w| tcp.write_all(&w).map(|_| w.len()));
            let sent = wire.map_err(|e| err(party(j), format!("connection lost while opening: {e}")))?;
            let mut t = lock(&traffic);
            t.framing_sent += HELLO as u64;
            if tls.is_some() {
                t.tls_sent += sent as u64;
            }
            drop(t);
            conns[j] = Some(Conn { tcp, tls, backlog: Vec::new() });
        }
        listener.set_nonblocking(true).map_err(|e| err(me, e.to_string()))?;
        // Connections refused on the way (a stranger, a certificate not pinned): named
        // if the party they might have been never connects.
        let mut refused: Vec<String> = Vec::new();
        while (me_i + 1..3).any(|j| conns[j].is_none()) {
            match listener.accept() {
                Ok((mut tcp, from)) => {
                    tcp.set_nonblocking(false).map_err(|e| err(me, e.to_string()))?;
                    tcp.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)))).ok();
                    let tls = match keys {
                        Some(k) => {
                            let mut c = rustls::Connection::Server(k.server().map_err(|e| err(me, e))?);
                            match handshake(&mut tcp, &mut c) {
                                Ok(sent) => lock(&traffic).tls_sent += sent,
                                Err(e) => {
                                    refused.push(format!("{from}: TLS handshake failed ({e})"));
                                    continue;
                                }
                            }
                            Some((
                                c.peer_certificates().and_then(|certs| certs.first()).and_then(|cert| k.pinned(cert)),
                                Arc::new(Mutex::new(c)),
                            ))
                        }
                        None => None,
                    };
                    let pinned = tls.as_ref().map(|(p, _)| *p);
                    let mut conn = Conn { tcp, tls: tls.map(|(_, c)| c), backlog: Vec::new() };
                    let mut hello = [0u8; HELLO];
                    if conn.read_fully(&mut hello).is_err() || hello[..4] != MAGIC {
                        refused.push(format!("{from}: not a party of ours"));
                        continue;
                    }
                    let j = hello[4] as usize;
                    let theirs = u64::from_le_bytes(hello[5..].try_into().expect("8 bytes"));
                    if j <= me_i || j > 2 || conns[j].is_some() {
                        return Err(err(me, format!("a connection from {from} claims to be party {j}, which does not connect to P{me_i}")));
                    }
                    if let Some(p) = pinned
                        && p != Some(j)
                    {
                        refused.push(format!("{from}: claims to be P{j} with a certificate not pinned for P{j}"));
                        continue;
                    }
                    if theirs != fingerprint {
                        return Err(err(
                            party(j),
                            format!(
                                "runs other settings (fingerprint {theirs:016x}, here {fingerprint:016x}): the same architecture, plan, seed, samples and precision are needed"
                            ),
                        ));
                    }
                    conn.tcp.set_read_timeout(Some(timeout)).ok();
                    conns[j] = Some(conn);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing = (me_i + 1..3).find(|&j| conns[j].is_none()).expect("one is missing");
                        let why = if refused.is_empty() { String::new() } else { format!("; refused: {}", refused.join("; ")) };
                        return Err(err(party(missing), format!("did not connect within {} s{why}", timeout.as_secs_f64())));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(err(me, format!("cannot accept connections: {e}"))),
            }
        }
        let mut peers: [Option<Peer>; 3] = [None, None, None];
        for (j, conn) in conns.into_iter().enumerate() {
            let Some(conn) = conn else { continue };
            conn.tcp.set_nodelay(true).ok();
            let writing = conn.tcp.try_clone().map_err(|e| err(party(j), e.to_string()))?;
            let (tx, rx) = mpsc::channel::<Outgoing>();
            let failed = Arc::new(Mutex::new(None));
            let (failed_w, tls, traffic_w) = (Arc::clone(&failed), conn.tls.clone(), Arc::clone(&traffic));
            let writer = std::thread::spawn(move || write_frames(writing, rx, conditions, tls, traffic_w, failed_w));
            peers[j] = Some(Peer { conn, out: Some(tx), writer: Some(writer), failed });
        }
        let link = TcpLink { me, peers, timeout, traffic: Arc::clone(&traffic), fault: Fault::from_env(), protocol_frames: 0 };
        Ok((link, traffic))
    }

    fn peer(&mut self, p: Party) -> &mut Peer {
        self.peers[p as usize].as_mut().expect("a link to each other party")
    }
}

/// A frame for the writer thread: when it was sent, whether network conditions
/// apply to it (protocol frames), and its bytes.
type Outgoing = (Instant, bool, Vec<u8>);

/// The writer thread of one link: frames in order, each protocol frame held until
/// its bandwidth slot has passed and then its delay.
fn write_frames(
    mut stream: TcpStream,
    rx: mpsc::Receiver<Outgoing>,
    c: Conditions,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    traffic: Arc<Mutex<Traffic>>,
    failed: Arc<Mutex<Option<String>>>,
) {
    let mut line_free = Instant::now();
    for (sent, emulated, frame) in rx {
        let frame = match seal(&tls, frame) {
            Ok(f) => f,
            Err(e) => {
                *lock(&failed) = Some(e.to_string());
                return;
            }
        };
        if tls.is_some() {
            lock(&traffic).tls_sent += frame.len() as u64;
        }
        if emulated {
            let on_line = match c.bandwidth_bps {
                Some(bps) => Duration::from_secs_f64(frame.len() as f64 * 8.0 / bps),
                None => Duration::ZERO,
            };
            line_free = line_free.max(sent) + on_line;
            let arrive = line_free + c.delay;
            let now = Instant::now();
            if arrive > now {
                std::thread::sleep(arrive - now);
            }
        }
        if let Err(e) = stream.write_all(&frame) {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            return;
        }
    }
    // Everything sent: tell the peer nothing more comes.
    if let Some(tls) = &tls {
        let mut c = lock(tls);
        c.send_close_notify();
        let mut records = Vec::new();
        while c.wants_write() && c.write_tls(&mut records).is_ok() {}
        drop(c);
        stream.write_all(&records).ok();
    }
    stream.shutdown(std::net::Shutdown::Write).ok();
}

/// What a message is, for errors: its step, size and kind.
fn describe(head: &Head) -> String {
    let what = match (head.kind, head.elem) {
        (Kind::Setup, _) => "setup elements",
        (_, Elem::Field) => "Z_67 elements",
        (_, Elem::Odd) => "Z_(L-1) elements",
        (_, Elem::Ring) => "ring elements",
    };
    format!("the message of step {} ({} {what}, {} bytes)", head.step, head.count, head.payload_bytes())
}

impl Link for TcpLink {
    fn send(&mut self, to: Party, head: Head, payload: &Payload) -> Result<(), LinkError> {
        let bytes = head.payload_bytes() as usize;
        let mut frame = Vec::with_capacity(HEADER + bytes);
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(&[head.kind as u8, head.elem as u8, 0, 0]);
        frame.extend_from_slice(&head.step.to_le_bytes());
        frame.extend_from_slice(&(bytes as u64).to_le_bytes());
        match payload {
            Payload::Words(w) => w.iter().for_each(|w| frame.extend_from_slice(&w.to_le_bytes())),
            Payload::Bytes(b) => frame.extend_from_slice(b),
        }
        {
            let mut t = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            match head.kind {
                Kind::Protocol => {
                    t.payload_sent[to as usize] += bytes as u64;
                    t.steps.insert(head.step);
                }
                Kind::Setup => t.setup_sent[to as usize] += bytes as u64,
            }
            t.framing_sent += HEADER as u64;
        }
        let mut close = false;
        if head.kind == Kind::Protocol {
            self.protocol_frames += 1;
            match self.fault {
                Some(Fault::Huge(n)) if n == self.protocol_frames => frame[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes()),
                Some(Fault::Truncate(n)) if n == self.protocol_frames => {
                    frame.truncate(HEADER + bytes / 2);
                    close = true;
                }
                _ => {}
            }
        }
        let peer = self.peer(to);
        if let Some(e) = lock(&peer.failed).clone() {
            return Err(err(to, format!("connection lost while sending: {e}")));
        }
        let Some(out) = peer.out.as_ref() else { return Err(err(to, "connection closed")) };
        let sent = out.send((Instant::now(), head.kind == Kind::Protocol, frame)).map_err(|_| err(to, "connection lost while sending"));
        if close {
            // The writer ends after this frame and closes its side.
            peer.out = None;
        }
        sent
    }

    fn recv(&mut self, from: Party, head: Head) -> Result<Payload, LinkError> {
        let timeout = self.timeout;
        let me = self.me;
        let stream = &mut self.peer(from).conn;
        let want = describe(&head);
        let mut header = [0u8; HEADER];
        stream.read_fully(&mut header).map_err(|(got, e)| match (got, e.kind()) {
            (0, ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                err(from, format!("sent nothing for {} s while {me:?} waited for {want}", timeout.as_secs_f64()))
            }
            (0, _) => err(from, format!("closed the connection (stopped or killed) while {me:?} waited for {want}")),
            (got, _) => err(from, format!("sent a short frame header ({got} of {HEADER} bytes) for {want}: {e}")),
        })?;
        let claimed = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
        let step = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        if header[..4] != MAGIC {
            return Err(err(from, format!("sent something that is not a frame where {me:?} expected {want}")));
        }
        // Checked before anything is allocated: a frame that claims 2^40 bytes ends here.
        if claimed != head.payload_bytes() || header[4] != head.kind as u8 || header[5] != head.elem as u8 || step != head.step {
            return Err(err(from, format!("sent a frame of {claimed} bytes (step {step}) where {me:?} expected {want}")));
        }
        let mut payload = vec![0u8; claimed as usize];
        stream.read_fully(&mut payload).map_err(|(got, e)| {
            err(from, format!("sent a truncated frame: {got} of {claimed} bytes of {want} before the connection failed ({e})"))
        })?;
        {
            let mut t = self.traffic.lock().unwrap_or_else(|p| p.into_inner());
            match head.kind {
                Kind::Protocol => {
                    t.payload_received[from as usize] += claimed;
                    t.steps.insert(step);
                }
                Kind::Setup => t.setup_received[from as usize] += claimed,
            }
        }
        Ok(match head.elem {
            Elem::Field => Payload::Bytes(payload),
            _ => Payload::Words(payload.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
        })
    }
}

/// `read_exact` that says how many bytes came before an error (an end of stream is
/// an `UnexpectedEof` error).
fn read_fully(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), (usize, std::io::Error)> {
    let mut got = 0;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err((got, ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err((got, e)),
        }
    }
    Ok(())
}

impl Drop for TcpLink {
    /// Waits until every queued frame is written: a party must not exit with
    /// messages its peers still need.
    fn drop(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            peer.out.take();
            if let Some(w) = peer.writer.take() {
                w.join().ok();
            }
        }
    }
}

/// A link that several runs (one per image) use in turn.
pub struct Shared(pub Arc<Mutex<TcpLink>>);

impl Link for Shared {
    fn send(&mut self, to: Party, head: Head, payload: &Payload) -> Result<(), LinkError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).send(to, head, payload)
    }
    fn recv(&mut self, from: Party, head: Head) -> Result<Payload, LinkError> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).recv(from, head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addrs() -> [SocketAddr; 3] {
        std::array::from_fn(|_| TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port"))
    }

    type Connected = Result<(TcpLink, Arc<Mutex<Traffic>>), LinkError>;

    fn three(fingerprints: [u64; 3], c: Conditions) -> Vec<Connected> {
        let addrs = free_addrs();
        let handles: Vec<_> = (0..3)
            .map(|i| std::thread::spawn(move || TcpLink::connect(party(i), &addrs, fingerprints[i], Duration::from_secs(5), c, None)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    }

    fn ring(step: u64, count: u64) -> Head {
        Head { kind: Kind::Protocol, step, elem: Elem::Ring, count }
    }

    #[test]
    fn frames_arrive_in_order_and_are_counted() {
        let mut links: Vec<_> = three([7; 3], Conditions::default()).into_iter().map(|r| r.expect("connects")).collect();
        let (mut l2, t2) = links.pop().expect("P2");
        let (mut l1, t1) = links.pop().expect("P1");
        l1.send(Party::P2, ring(1, 3), &Payload::Words(vec![1, 2, u64::MAX])).expect("sent");
        l1.send(Party::P2, Head { kind: Kind::Protocol, step: 2, elem: Elem::Field, count: 5 }, &Payload::Bytes(vec![66; 5]))
            .expect("sent");
        assert_eq!(l2.recv(Party::P1, ring(1, 3)).expect("received"), Payload::Words(vec![1, 2, u64::MAX]));
        let f = l2.recv(Party::P1, Head { kind: Kind::Protocol, step: 2, elem: Elem::Field, count: 5 }).expect("received");
        assert_eq!(f, Payload::Bytes(vec![66; 5]));
        assert_eq!(t1.lock().unwrap().payload_sent, [0, 0, 29]);
        assert_eq!(t2.lock().unwrap().payload_received, [0, 29, 0]);
        assert_eq!(t2.lock().unwrap().steps.iter().copied().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn other_settings_are_refused() {
        let results = three([7, 8, 7], Conditions::default());
        let refused = results.iter().filter_map(|r| r.as_ref().err()).find(|e| e.what.contains("runs other settings"));
        assert!(refused.is_some_and(|e| e.peer == Party::P1), "{:?}", results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>());
    }

    #[test]
    fn wrong_short_and_huge_frames_are_named() {
        let mut links: Vec<_> = three([1; 3], Conditions::default()).into_iter().map(|r| r.expect("connects")).collect();
        let (mut l1, _) = links.remove(1);
        let (mut l0, _) = links.remove(0);
        // A frame claiming 2^40 bytes: refused from its header.
        let mut frame = MAGIC.to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&4u64.to_le_bytes());
        frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
        l1.peer(Party::P0).conn.tcp.write_all(&frame).unwrap();
        let e = l0.recv(Party::P1, ring(4, 2)).unwrap_err();
        assert!(e.what.contains("1099511627776 bytes") && e.peer == Party::P1, "{e}");
        // A frame whose payload stops short, then the connection closes.
        let mut frame = MAGIC.to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0]);
        frame.extend_from_slice(&5u64.to_le_bytes());
        frame.extend_from_slice(&16u64.to_le_bytes());
        frame.extend_from_slice(&[1; 9]);
        let mut p2 = links.remove(0).0;
        p2.peer(Party::P0).conn.tcp.write_all(&frame).unwrap();
        drop(p2);
        let e = l0.recv(Party::P2, ring(5, 2)).unwrap_err();
        assert!(e.what.contains("truncated frame: 9 of 16 bytes"), "{e}");
    }

    #[test]
    fn a_silent_peer_times_out_and_a_closed_one_is_named() {
        let addrs = free_addrs();
        let short = Duration::from_millis(300);
        let handles: Vec<_> =
            (0..3).map(|i| std::thread::spawn(move || TcpLink::connect(party(i), &addrs, 1, short, Conditions::default(), None))).collect();
        let mut links: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().expect("connects").0).collect();
        let p2 = links.pop().unwrap();
        let mut p1 = links.pop().unwrap();
        let t = Instant::now();
        let e = p1.recv(Party::P0, ring(1, 1)).unwrap_err();
        assert!(e.what.starts_with("sent nothing for 0.3 s"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(p2);
        let e = p1.recv(Party::P2, ring(1, 1)).unwrap_err();
        assert!(e.what.starts_with("closed the connection"), "{e}");
    }

    #[test]
    fn emulated_delay_and_bandwidth_hold_frames_back() {
        let c = Conditions { delay: Duration::from_millis(50), bandwidth_bps: Some(8.0 * 1e6) };
        let mut links: Vec<_> = three([3; 3], c).into_iter().map(|r| r.expect("connects").0).collect();
        let mut l1 = links.remove(1);
        let mut l0 = links.remove(0);
        let t = Instant::now();
        // 100,000 bytes at 1 MB/s: 0.1 s on the line, then 50 ms on the way.
        l0.send(Party::P1, ring(1, 12_500), &Payload::Words(vec![0; 12_500])).unwrap();
        l1.recv(Party::P0, ring(1, 12_500)).unwrap();
        let took = t.elapsed().as_secs_f64();
        assert!((0.14..0.5).contains(&took), "{took} s");
        // Setup (outside the time model) passes unslowed.
        let setup = Head { kind: Kind::Setup, step: 0, elem: Elem::Ring, count: 12_500 };
        let t = Instant::now();
        l0.send(Party::P1, setup, &Payload::Words(vec![0; 12_500])).unwrap();
        l1.recv(Party::P0, setup).unwrap();
        let took = t.elapsed().as_secs_f64();
        assert!(took < 0.1, "{took} s");
    }
}
