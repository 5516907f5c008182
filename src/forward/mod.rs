//! Forwarding (`forward = "HOST:PORT"`): oxinetd relays a stream
//! connection to another address itself, on the event loop, as xinetd's
//! `redirect` did with a process of its own per connection.
//!
//! A [`Relay`] is two non-blocking sockets and two one-way [`Flow`]s
//! (client → upstream, upstream → client), each a small state machine
//! that says what it waits for next ([`Wait`]): its source to be readable,
//! its destination to be writable, or nothing (done). The supervisor
//! watches each socket only for what a flow can make progress on, so a
//! slow side stops oxinetd reading from the fast one (backpressure is the
//! kernel's socket buffers, nothing queues in oxinetd).
//!
//! A flow starts by copying through the supervisor's scratch buffer
//! (`read` then `write`: a short request/response costs no pipe). Once it
//! has moved [`SPLICE_AFTER`] bytes it switches to `splice(2)` through a
//! pipe of its own (socket → pipe → socket, no copy through user space);
//! a socket that cannot splice stays on the copy path. What a destination
//! could not take yet stays where it is: in the pipe, or (copy path) in at
//! most [`COPY_CHUNK`] bytes on the heap, freed once sent; the flow reads
//! nothing more meanwhile.
//!
//! Per forwarded connection, then: 2 descriptors (the two sockets) and
//! about 200 bytes of record; a flow that went bulk adds a pipe (2
//! descriptors, at most [`PIPE_CAP`] bytes of kernel memory in it); a
//! copy flow whose destination is slow holds at most [`COPY_CHUNK`] bytes.
//! So at most 6 descriptors and 2 × 64 KiB of buffered data.
//!
//! Half-close: a source's EOF, once everything before it is delivered,
//! becomes `shutdown(SHUT_WR)` on the destination; the relay ends when
//! both flows are done (or either side fails), and the last EOF is passed
//! on by closing both sockets (each has nothing left unread, so the close
//! sends a FIN, not a reset).
//!
//! Measured by hand (loadgen `bulk` through a forward to an internal echo,
//! 3 s, three pairs, the release build): splice after 64 KiB 831, 845 and
//! 545 MB/s against copy only 578, 487 and 495 MB/s, with less supervisor
//! CPU per byte; pipes of 256 KiB or 1 MiB (`F_SETPIPE_SZ`) moved no more
//! than the default 64 KiB (469-485 and 373-477 against 452-483 MB/s), so
//! the pipe keeps its default size.

pub mod header;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use socket2::Socket;

/// `forward_timeout` unless configured: how long connecting upstream may
/// take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes a flow copies through user space before it switches to splice.
pub const SPLICE_AFTER: u64 = 64 << 10;

/// The most one copy (`read`) takes at once, and so the most a copy flow
/// keeps pending for a slow destination.
pub const COPY_CHUNK: usize = 64 << 10;

/// A flow's pipe: the kernel's default capacity (16 pages). A pipe holds
/// pages only while data is in it.
pub const PIPE_CAP: usize = 64 << 10;

/// The most bytes one flow moves per readiness event, so that one bulk
/// connection does not hold up the loop; level-triggered epoll reports it
/// again on the next turn.
pub const TURN_BYTES: u64 = 256 << 10;

/// Where a `forward` service relays its connections, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The upstream address (a host name is resolved once per load).
    pub target: SocketAddr,
    /// `HOST:PORT` as written.
    pub written: String,
    /// The PROXY header sent upstream first, if any.
    pub proxy: Option<ProxyVersion>,
    /// How long the connection upstream may take to establish.
    pub connect_timeout: Duration,
    /// `forward_tls`: TLS to the upstream, done by a relay process of the
    /// service's user (`tls::pipe`). Boxed: a forward's `Handler` is in
    /// every service, and few have it.
    pub tls: Option<Box<crate::tls::pipe::Outbound>>,
}

/// `forward_proxy_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    V1,
    V2,
}

impl ProxyVersion {
    pub fn name(self) -> &'static str {
        match self {
            ProxyVersion::V1 => "v1",
            ProxyVersion::V2 => "v2",
        }
    }
}

/// What a flow waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its source to be readable.
    Read,
    /// Its destination to be writable.
    Write,
    /// Nothing: the source's EOF was passed on.
    Done,
}

/// One direction of a relay.
#[derive(Default)]
pub struct Flow {
    /// Bytes delivered to the destination.
    pub bytes: u64,
    /// The splice pipe (read end, write end), once the flow went bulk.
    pipe: Option<(OwnedFd, OwnedFd)>,
    /// Bytes in the pipe.
    in_pipe: usize,
    /// Copy path: bytes the destination has not taken yet (empty, and
    /// unallocated, almost always), and how many of them are sent.
    pending: Vec<u8>,
    pending_at: usize,
    /// The source sent EOF.
    eof: bool,
    /// The EOF was passed on (`shutdown(SHUT_WR)` of the destination).
    done: bool,
    /// A socket of this flow refused splice: copy only.
    no_splice: bool,
}

impl Flow {
    /// Queue `bytes` to go first (the PROXY header), not counted in
    /// `bytes`.
    pub fn preface(&mut self, bytes: Vec<u8>) {
        self.pending = bytes;
        self.pending_at = 0;
    }

    /// Move what can be moved from `src` to `dst` now; what the flow
    /// waits for next. `scratch` is the supervisor's shared buffer. An
    /// error of either socket ends the relay. `last`: the other flow is
    /// done, so this one's EOF ends the relay, whose close sends the FIN
    /// (no `shutdown` first: one system call fewer per connection).
    pub fn pump(
        &mut self,
        src: &Socket,
        dst: &Socket,
        scratch: &mut [u8],
        last: bool,
    ) -> io::Result<Wait> {
        let start = self.bytes;
        // A read that returned less than it asked for has emptied the
        // source for now: waiting (level-triggered) beats another read
        // that would fail with EAGAIN.
        let mut drained = false;
        loop {
            // What is held goes first, in order.
            if self.in_pipe > 0 {
                match self.drain_pipe(dst)? {
                    Some(()) => continue,
                    None => return Ok(Wait::Write),
                }
            }
            if self.pending_at < self.pending.len() {
                match write_some(dst, &self.pending[self.pending_at..])? {
                    0 => return Ok(Wait::Write),
                    n => {
                        self.pending_at += n;
                        if self.pending_at == self.pending.len() {
                            self.pending = Vec::new();
                            self.pending_at = 0;
                        }
                        self.bytes += n as u64;
                        continue;
                    }
                }
            }
            if self.eof {
                if !self.done && !last {
                    self.done = true;
                    match dst.shutdown(Shutdown::Write) {
                        Err(e) if e.raw_os_error() != Some(libc::ENOTCONN) => return Err(e),
                        _ => {}
                    }
                }
                self.done = true;
                return Ok(Wait::Done);
            }
            if drained || self.bytes - start >= TURN_BYTES {
                return Ok(Wait::Read);
            }
            let more = match &self.pipe {
                Some((_, w)) => {
                    match splice(src, None, w, None, PIPE_CAP, flags()) {
                        Ok(0) => self.eof = true,
                        Ok(n) => {
                            self.in_pipe = n;
                            drained = n < PIPE_CAP;
                        }
                        Err(Errno::EAGAIN) => return Ok(Wait::Read),
                        Err(Errno::EINTR) => {}
                        // This socket cannot splice: copy from now on
                        // (the pipe is empty).
                        Err(Errno::EINVAL) => {
                            self.pipe = None;
                            self.no_splice = true;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    true
                }
                None => match self.copy(src, dst, scratch)? {
                    Copied::Nothing => false,
                    Copied::Short => {
                        drained = true;
                        true
                    }
                    Copied::Full => true,
                },
            };
            if !more {
                return Ok(Wait::Read);
            }
        }
    }

    /// Splice what the pipe holds into `dst`; `None` when `dst` is full.
    fn drain_pipe(&mut self, dst: &Socket) -> io::Result<Option<()>> {
        let Some((r, _)) = &self.pipe else {
            self.in_pipe = 0;
            return Ok(Some(()));
        };
        match splice(r, None, dst, None, self.in_pipe, flags()) {
            Ok(n) => {
                self.in_pipe -= n.min(self.in_pipe);
                self.bytes += n as u64;
                Ok(Some(()))
            }
            Err(Errno::EAGAIN) => Ok(None),
            Err(Errno::EINTR) => Ok(Some(())),
            Err(Errno::EINVAL) => {
                // `dst` cannot take a splice: take the data back out of
                // the pipe and copy from now on.
                let mut back = vec![0; self.in_pipe];
                let n = nix::unistd::read(r, &mut back)?;
                back.truncate(n);
                self.pending = back;
                self.pending_at = 0;
                self.in_pipe = 0;
                self.pipe = None;
                self.no_splice = true;
                Ok(Some(()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One read through `scratch` and its write.
    fn copy(&mut self, src: &Socket, dst: &Socket, scratch: &mut [u8]) -> io::Result<Copied> {
        let len = scratch.len().min(COPY_CHUNK);
        let chunk = &mut scratch[..len];
        let n = match (&*src).read(chunk) {
            Ok(0) => {
                self.eof = true;
                return Ok(Copied::Full);
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Copied::Nothing),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Copied::Full),
            Err(e) => return Err(e),
        };
        let sent = write_some(dst, &chunk[..n])?;
        self.bytes += sent as u64;
        if sent < n {
            self.pending = chunk[sent..n].to_vec();
            self.pending_at = 0;
        } else if self.bytes >= SPLICE_AFTER && !self.no_splice {
            // Gone bulk: zero-copy from here on (a pipe that cannot be
            // made leaves the flow on the copy path).
            match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
                Ok(p) => self.pipe = Some(p),
                Err(_) => self.no_splice = true,
            }
        }
        Ok(if n < len { Copied::Short } else { Copied::Full })
    }
}

/// What one copy did.
enum Copied {
    /// The source had nothing.
    Nothing,
    /// Less than asked for: the source is empty for now.
    Short,
    /// A whole chunk (or EOF): there may be more.
    Full,
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// Write what `dst` takes now: 0 when it is full.
fn write_some(dst: &Socket, buf: &[u8]) -> io::Result<usize> {
    loop {
        return match (&*dst).write(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
    }
}

/// Which socket of a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
}

/// A forwarded connection: the client's socket, the upstream one, and
/// the two flows between them.
pub struct Relay {
    pub client: Socket,
    pub upstream: Socket,
    /// Client → upstream.
    pub up: Flow,
    /// Upstream → client.
    pub down: Flow,
    pub up_wait: Wait,
    pub down_wait: Wait,
    /// Bytes of PROXY header sent before the client's.
    pub preface_len: u64,
}

impl Relay {
    pub fn new(client: Socket, upstream: Socket) -> Relay {
        Relay {
            client,
            upstream,
            up: Flow::default(),
            down: Flow::default(),
            up_wait: Wait::Read,
            down_wait: Wait::Read,
            preface_len: 0,
        }
    }

    /// Bytes from the client delivered upstream.
    pub fn bytes_up(&self) -> u64 {
        self.up.bytes.saturating_sub(self.preface_len)
    }

    /// Move client → upstream.
    pub fn pump_up(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        let last = self.down_wait == Wait::Done;
        self.up_wait = self.up.pump(&self.client, &self.upstream, scratch, last)?;
        Ok(())
    }

    /// Move upstream → client.
    pub fn pump_down(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        let last = self.up_wait == Wait::Done;
        self.down_wait = self
            .down
            .pump(&self.upstream, &self.client, scratch, last)?;
        Ok(())
    }

    /// Both flows done: the relay is over.
    pub fn finished(&self) -> bool {
        self.up_wait == Wait::Done && self.down_wait == Wait::Done
    }

    /// What `side` should be watched for: (readable, writable).
    pub fn interest(&self, side: Side) -> (bool, bool) {
        match side {
            Side::Client => (self.up_wait == Wait::Read, self.down_wait == Wait::Write),
            Side::Upstream => (self.down_wait == Wait::Read, self.up_wait == Wait::Write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Socket, Socket) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (
            Socket::from(OwnedFd::from(a)),
            Socket::from(OwnedFd::from(b)),
        )
    }

    /// Bulk both ways over UNIX-domain pairs (copy, then splice), with
    /// half-close: every byte arrives, in order, and EOF follows.
    #[test]
    fn relays_bulk_and_half_close() {
        let (client_far, client) = pair();
        let (upstream, upstream_far) = pair();
        let mut relay = Relay::new(client, upstream);
        let mut scratch = vec![0u8; 1 << 20];
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        let mut buf = vec![0u8; 100_000];
        let mut closed = false;
        while got.len() < data.len() || !closed {
            if sent < data.len() {
                match (&client_far).write(&data[sent..]) {
                    Ok(n) => sent += n,
                    Err(e) => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
                }
            } else if !closed {
                client_far.shutdown(Shutdown::Write).unwrap();
                closed = true;
            }
            relay.pump_up(&mut scratch).unwrap();
            loop {
                match (&upstream_far).read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
        }
        // As epoll would report the EOF: pump while the flow waits to read.
        for _ in 0..4 {
            relay.pump_up(&mut scratch).unwrap();
        }
        assert_eq!(relay.up_wait, Wait::Done);
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
        assert_eq!((&upstream_far).read(&mut buf).unwrap(), 0);
        assert!(relay.up.pipe.is_some(), "the flow went bulk");
        assert_eq!(relay.bytes_up(), data.len() as u64);
        // The other way still works after the half-close.
        (&upstream_far).write_all(b"reply").unwrap();
        upstream_far.shutdown(Shutdown::Write).unwrap();
        for _ in 0..4 {
            relay.pump_down(&mut scratch).unwrap();
        }
        assert_eq!(relay.down_wait, Wait::Done);
        assert!(relay.finished());
        // The last EOF is passed on by the relay's close.
        drop(relay);
        client_far.set_nonblocking(false).unwrap();
        let mut reply = Vec::new();
        (&client_far).read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"reply");
    }

    /// A destination that does not read: the flow stops reading its
    /// source and waits to write; nothing beyond one chunk is held.
    #[test]
    fn a_full_destination_stops_the_reads() {
        let (client_far, client) = pair();
        let (upstream, _upstream_far) = pair();
        let mut relay = Relay::new(client, upstream);
        let mut scratch = vec![0u8; 1 << 20];
        let chunk = vec![7u8; 1 << 20];
        let mut wrote = 0usize;
        for _ in 0..64 {
            if let Ok(n) = (&client_far).write(&chunk) {
                wrote += n;
            }
            relay.pump_up(&mut scratch).unwrap();
            if relay.up_wait == Wait::Write {
                break;
            }
        }
        assert_eq!(relay.up_wait, Wait::Write);
        assert_eq!(relay.interest(Side::Client), (false, false));
        assert_eq!(relay.interest(Side::Upstream), (true, true));
        assert!(relay.up.pending.len() <= COPY_CHUNK);
        assert!(wrote > 0);
    }
}
