//! Internal services, served in-process on the event loop: no fork, no
//! exec, no process per connection (`server = "internal:NAME"`).
//!
//! One file per RFC (and `metrics.rs`, the Prometheus exporter's HTTP
//! exchange). Each service says what it does with a stream
//! connection and with a datagram; [`Conn`] drives a TCP connection as a
//! small state machine on non-blocking I/O, so thousands of them cost one
//! buffer-less record each and backpressure comes from the socket itself.

mod chargen;
mod daytime;
pub mod metrics;
mod time;

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Size of the scratch buffer TCP connections read into. Bulk data read a
/// MiB at a time instead of 64 KiB costs the supervisor a fraction of the
/// system calls and wake-ups per byte (bench/README.md, "Bulk").
pub const SCRATCH: usize = 1 << 20;

/// The part of the scratch buffer that ordinary traffic uses, and the most
/// an echo keeps pending for a slow reader without counting as bulk. What a
/// connection uses beyond it is handed back when it ends
/// ([`Conn::used_bulk_memory`]).
pub const SCRATCH_KEEP: usize = 64 << 10;

/// The most bytes one connection moves in one turn of the loop: a fast
/// reader of chargen (or writer to discard) then waits for the next turn,
/// level-triggered epoll reports it again, and the other events of the
/// turn are served meanwhile.
pub const TURN_BYTES: usize = 256 << 10;

/// An echo reads (consumes) at most this much at a time; so what a peer
/// that does not read leaves pending (the part of one read its buffers
/// could not take) is at most this.
pub const ECHO_READ: usize = SCRATCH_KEEP;

/// Bytes an echo must have sent back, since its last short write, before
/// it looks at a whole [`SCRATCH`] at a time (a peek: only what is sent
/// back is then consumed, so the larger reads pin nothing either).
pub const ECHO_PROVEN: u64 = 16 << 20;

/// The built-in services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Internal {
    /// RFC 862: send back what was received.
    Echo,
    /// RFC 863: read and throw away.
    Discard,
    /// RFC 864: a stream of rotating 72-character lines.
    Chargen,
    /// RFC 867: the date and time as text.
    Daytime,
    /// RFC 868: seconds since 1900 as a 32-bit number.
    Time,
    /// oxinetd's own figures in the Prometheus text format, over HTTP/1.x
    /// (TCP only).
    Metrics,
}

impl Internal {
    pub const ALL: [Internal; 6] = [
        Internal::Echo,
        Internal::Discard,
        Internal::Chargen,
        Internal::Daytime,
        Internal::Time,
        Internal::Metrics,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Internal::Echo => "echo",
            Internal::Discard => "discard",
            Internal::Chargen => "chargen",
            Internal::Daytime => "daytime",
            Internal::Time => "time",
            Internal::Metrics => "metrics",
        }
    }

    /// Whether inetd and xinetd have it built in (the RFC services): the
    /// only ones their configs can name.
    pub fn classic(self) -> bool {
        self != Internal::Metrics
    }

    /// Whether it answers datagrams (all but metrics, an HTTP service).
    pub fn serves_datagrams(self) -> bool {
        self != Internal::Metrics
    }

    pub fn from_name(name: &str) -> Option<Internal> {
        Internal::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The service's port in /etc/services (metrics has none).
    pub fn well_known_port(self) -> Option<u16> {
        match self {
            Internal::Echo => Some(7),
            Internal::Discard => Some(9),
            Internal::Daytime => Some(13),
            Internal::Chargen => Some(19),
            Internal::Time => Some(37),
            Internal::Metrics => None,
        }
    }

    /// The answer to one datagram, written into `out`; `None` for no reply.
    pub fn reply<'a>(self, request: &[u8], out: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        out.clear();
        match self {
            Internal::Echo => out.extend_from_slice(request),
            Internal::Discard | Internal::Metrics => return None,
            Internal::Chargen => chargen::datagram(out),
            Internal::Daytime => daytime::now(out),
            Internal::Time => out.extend_from_slice(&time::now()),
        }
        Some(out)
    }
}

/// What the event loop should wait for next on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    Read,
    Write,
    /// A metrics request asks for the page: the supervisor renders it,
    /// hands it to [`Conn::respond`] and advances the connection again.
    Render,
    /// Done: close the connection.
    Close,
}

/// A TCP connection served in-process.
pub struct Conn {
    pub sock: TcpStream,
    pub kind: Internal,
    /// Echo: received bytes not yet sent back (empty almost always: only
    /// allocated when the peer reads slower than it writes, and freed when
    /// sent), and how much of them is sent.
    pending: Vec<u8>,
    pending_at: usize,
    /// Chargen: position in the rotating pattern.
    chargen_at: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The peer closed its sending side.
    eof: bool,
    /// A read went beyond [`SCRATCH_KEEP`] in the scratch buffer, or the
    /// pending echo grew beyond it.
    bulk: bool,
    /// Echo: the peer could not take a whole reply. Until it takes a whole
    /// one again, the echo peeks, sends, and consumes only what was sent,
    /// so what the peer does not take stays in the kernel and nothing more
    /// is pending.
    slow: bool,
    /// Echo: bytes sent back since the last short write.
    streak: u64,
    /// Metrics: the HTTP exchange (`None` for the other services).
    http: Option<Box<metrics::Exchange>>,
}

impl Conn {
    /// Start serving `sock` (non-blocking). Daytime and time are answered
    /// at once; the others return the first interest. Echo and discard try
    /// a first read at once: on loopback the request has usually arrived
    /// with the handshake, which saves a turn of the loop.
    pub fn start(sock: TcpStream, kind: Internal, scratch: &mut [u8]) -> (Conn, Interest) {
        let mut c = Conn {
            sock,
            kind,
            pending: Vec::new(),
            pending_at: 0,
            chargen_at: 0,
            bytes_in: 0,
            bytes_out: 0,
            eof: false,
            bulk: false,
            slow: false,
            streak: 0,
            http: None,
        };
        let first = match kind {
            Internal::Echo | Internal::Discard => c.advance(scratch),
            Internal::Chargen => c.advance(&mut []),
            // The request rarely comes with the handshake; wait for it.
            Internal::Metrics => {
                c.http = Some(Box::default());
                Interest::Read
            }
            Internal::Daytime | Internal::Time => {
                let mut msg = Vec::with_capacity(64);
                match kind {
                    Internal::Daytime => daytime::now(&mut msg),
                    _ => msg.extend_from_slice(&time::now()),
                }
                // A fresh socket's send buffer takes a few bytes at once.
                if let Ok(n) = c.sock.write(&msg) {
                    c.bytes_out += n as u64;
                }
                Interest::Close
            }
        };
        (c, first)
    }

    /// Whether this connection used memory beyond [`SCRATCH_KEEP`] (in the
    /// scratch buffer or for a pending echo), so it is worth handing back
    /// when it ends.
    pub fn used_bulk_memory(&self) -> bool {
        self.bulk
    }

    /// Metrics: the request head is still awaited (so reading it is not
    /// activity for the idle sweep: it must come whole in `idle_timeout`).
    pub fn awaiting_request(&self) -> bool {
        self.http.as_ref().is_some_and(|x| x.awaiting_request())
    }

    /// Metrics: the HTTP status answered, once there is an answer.
    pub fn http_status(&self) -> Option<u16> {
        self.http.as_ref().and_then(|x| x.answered())
    }

    /// Metrics: the page asked for ([`Interest::Render`]), or `None` for
    /// 503 ([`metrics::HELD_MAX`]).
    pub fn respond(&mut self, page: Option<&[u8]>) {
        if let Some(x) = self.http.as_mut() {
            x.respond(page);
        }
    }

    /// Metrics: bytes of its answer not written yet (0 for the others).
    pub fn held(&self) -> usize {
        self.http.as_ref().map_or(0, |x| x.held())
    }

    /// Free the pending echo's buffer (what is in it is not sent).
    pub fn drop_pending(&mut self) {
        self.pending = Vec::new();
        self.pending_at = 0;
    }

    /// Make progress after a readiness event. `scratch` is a buffer shared
    /// by all connections.
    pub fn advance(&mut self, scratch: &mut [u8]) -> Interest {
        match self.step(scratch) {
            Ok(i) => i,
            Err(_) => Interest::Close,
        }
    }

    fn step(&mut self, scratch: &mut [u8]) -> io::Result<Interest> {
        // Bytes moved so far, to bound this turn's share (TURN_BYTES).
        let at_start = (self.bytes_in, self.bytes_out);
        match self.kind {
            Internal::Echo => self.echo(scratch, at_start.0),
            Internal::Discard => loop {
                if self.bytes_in - at_start.0 >= TURN_BYTES as u64 {
                    return Ok(Interest::Read);
                }
                match self.sock.read(scratch) {
                    Ok(0) => return Ok(Interest::Close),
                    Ok(n) => {
                        self.bytes_in += n as u64;
                        self.bulk |= n > SCRATCH_KEEP;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interest::Read),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Internal::Chargen => loop {
                // Whatever the client sends is ignored; its close ends us
                // (the write then fails).
                if self.bytes_out - at_start.1 >= TURN_BYTES as u64 {
                    return Ok(Interest::Write);
                }
                let chunk = chargen::stream_from(self.chargen_at);
                match self.sock.write(chunk) {
                    Ok(n) => {
                        self.bytes_out += n as u64;
                        self.chargen_at = chargen::advance(self.chargen_at, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interest::Write),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            Internal::Daytime | Internal::Time => Ok(Interest::Close),
            Internal::Metrics => match self.http.as_mut() {
                Some(x) => x.step(
                    &mut self.sock,
                    scratch,
                    &mut self.bytes_in,
                    &mut self.bytes_out,
                ),
                None => Ok(Interest::Close),
            },
        }
    }

    /// Echo with backpressure: while a reply is pending, stop reading; and
    /// once the peer has been slow, keep what it cannot take yet in the
    /// kernel (peek, send, consume what was sent). `in_at_start` is
    /// `bytes_in` when this turn began.
    fn echo(&mut self, scratch: &mut [u8], in_at_start: u64) -> io::Result<Interest> {
        loop {
            if self.pending_at < self.pending.len() {
                match self.sock.write(&self.pending[self.pending_at..]) {
                    Ok(n) => {
                        self.bytes_out += n as u64;
                        self.pending_at += n;
                        if self.pending_at == self.pending.len() {
                            // A slow reader of a bulk echo may have made it
                            // a MiB; keep only a small buffer for reuse.
                            if self.pending.capacity() > SCRATCH_KEEP {
                                self.drop_pending();
                            } else {
                                self.pending.clear();
                                self.pending_at = 0;
                            }
                        }
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interest::Write),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
            if self.eof {
                return Ok(Interest::Close);
            }
            if self.bytes_in - in_at_start >= TURN_BYTES as u64 {
                // Level-triggered: still readable next turn.
                return Ok(Interest::Read);
            }
            let want = if self.slow || self.streak < ECHO_PROVEN {
                ECHO_READ
            } else {
                SCRATCH
            };
            let len = want.min(scratch.len());
            let buf = &mut scratch[..len];
            // Read ahead only as much as may stay pending: a large read
            // (a proven bulk echo) and a slow peer's are peeked, and only
            // what was sent is consumed, so no peer pins more than
            // ECHO_READ here, however it behaved before.
            let peeking = self.slow || len > ECHO_READ;
            let got = if peeking {
                self.sock.peek(buf)
            } else {
                self.sock.read(buf)
            };
            let n = match got {
                Ok(0) => {
                    self.eof = true;
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interest::Read),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.bulk |= n > SCRATCH_KEEP;
            let mut sent = 0;
            while sent < n {
                match self.sock.write(&buf[sent..n]) {
                    Ok(k) => sent += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            self.bytes_out += sent as u64;
            self.streak = if sent < n {
                0
            } else {
                self.streak + sent as u64
            };
            if peeking {
                // Consume exactly what was sent; the rest stays queued in
                // the kernel, and the peer's own sending is held back.
                consume(&self.sock, sent, buf)?;
                self.bytes_in += sent as u64;
                if sent < n {
                    self.slow = true;
                    return Ok(Interest::Write);
                }
                // It took all of it: reading ahead is safe again.
                self.slow = false;
            } else {
                self.bytes_in += n as u64;
                if sent < n {
                    self.slow = true;
                    self.pending.extend_from_slice(&buf[sent..n]);
                    self.bulk |= self.pending.len() > SCRATCH_KEEP;
                }
            }
        }
    }
}

/// Take `n` bytes already peeked off `sock`'s receive queue without
/// copying them again (`MSG_TRUNC` discards on TCP). `buf` is only the
/// length's carrier: nothing is written to it.
fn consume(sock: &TcpStream, mut n: usize, buf: &mut [u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    while n > 0 {
        let len = n.min(buf.len());
        match nix::sys::socket::recv(
            sock.as_raw_fd(),
            &mut buf[..len],
            nix::sys::socket::MsgFlags::MSG_TRUNC,
        ) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => n -= k.min(n),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for i in Internal::ALL {
            assert_eq!(Internal::from_name(i.name()), Some(i));
        }
        assert_eq!(Internal::from_name("finger"), None);
    }

    /// A chargen turn moves at most `TURN_BYTES` (and one write more) even
    /// when the socket would take more: the kernel buffers here hold about
    /// 600 KiB for a peer that reads nothing, which a loop writing until
    /// `EAGAIN` fills in one turn.
    #[test]
    fn a_turn_moves_a_bounded_share() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_recv_buffer_size(4 << 20).unwrap();
        client
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = socket2::Socket::from(server);
        server.set_send_buffer_size(4 << 20).unwrap();
        server.set_nonblocking(true).unwrap();
        let (mut c, first) = Conn::start(server.into(), Internal::Chargen, &mut []);
        assert_eq!(first, Interest::Write, "room left after one turn");
        let one_write = chargen::stream_from(0).len() as u64;
        assert!(c.bytes_out >= TURN_BYTES as u64, "{} bytes", c.bytes_out);
        assert!(
            c.bytes_out < (TURN_BYTES as u64) + one_write,
            "one turn wrote {} bytes",
            c.bytes_out
        );
        let before = c.bytes_out;
        c.advance(&mut []);
        assert!(c.bytes_out - before < (TURN_BYTES as u64) + one_write);
        drop(client);
    }

    /// An echo that has proven a fast reader (16 MiB back without a short
    /// write) reads a MiB at a time; if the peer then stops reading, what
    /// it read ahead must not stay pending: it is peeked, and only what
    /// was sent is taken.
    #[test]
    fn a_proven_echo_pins_nothing_when_its_peer_stops_reading() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        client
            .connect(&listener.local_addr().unwrap().into())
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        let server = socket2::Socket::from(server);
        server.set_send_buffer_size(4096).unwrap();
        server.set_recv_buffer_size(4 << 20).unwrap();
        server.set_nonblocking(true).unwrap();
        let mut scratch = vec![0u8; SCRATCH];
        let (mut c, first) = Conn::start(server.into(), Internal::Echo, &mut scratch);
        assert_eq!(first, Interest::Read);
        c.streak = ECHO_PROVEN;
        let mut client = TcpStream::from(client);
        let writer = std::thread::spawn(move || {
            let _ = client.write_all(&vec![b'x'; 1 << 20]);
            client
        });
        // Wait until a good part of it waits in the server's queue.
        let mut probe = [0u8; 1 << 18];
        for _ in 0..200 {
            if c.sock.peek(&mut probe).unwrap_or(0) >= probe.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let interest = c.advance(&mut scratch);
        assert_eq!(interest, Interest::Write, "the peer's buffers are full");
        assert!(c.pending.len() <= ECHO_READ, "{} pending", c.pending.len());
        assert_eq!(c.bytes_in, c.bytes_out, "read only what was sent");
        drop(c);
        drop(writer.join());
    }

    #[test]
    fn datagram_replies() {
        let mut out = Vec::new();
        assert_eq!(Internal::Echo.reply(b"abc", &mut out), Some(&b"abc"[..]));
        assert_eq!(Internal::Discard.reply(b"abc", &mut out), None);
        assert_eq!(
            Internal::Time.reply(b"", &mut out).map(<[u8]>::len),
            Some(4)
        );
        let d = Internal::Chargen.reply(b"", &mut out).unwrap().len();
        assert!(d <= 512);
    }
}
