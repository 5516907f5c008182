//! `oxinetd-tls relay --pipe`: the relay of an internal service or a
//! `forward`, between two sockets, TLS on either side or both; and the
//! [`Pipe`] bundle it is told what to do by (and [`Outbound`], a
//! forward's `forward_tls`), which the supervisor writes: plain data, no
//! TLS code (only [`run`] uses rustls, and only `oxinetd-tls` calls it).
//!
//! fd 0 is the client's connection: TLS when the service has `tls` (the
//! relay is its server). fd 1 is the other end: for an internal service
//! the far end of a socketpair the supervisor serves as the connection;
//! for a forward the upstream connection the supervisor made (and wrote
//! the PROXY header on), TLS when the service has `forward_tls` (the
//! relay is its client, verifying the upstream's certificate). fd 3 is
//! the service's [`Pipe`] bundle, sealed. The relay runs as the
//! service's user, confined like a handler; the supervisor copies no
//! byte of these connections.
//!
//! How it is started: the supervisor parses no TLS, so this relay is
//! exec'd the way the per-handler relay is (`spawn::Plan::pipe`:
//! `tls::program()`, `oxinetd-tls relay --pipe`, the bundle in the sealed
//! memfd on fd 3, the service's `user`, `no_new_privs`, no capabilities).
//! `user`, `group`, `groups` and `user_if_root` are allowed on such
//! services for it (and `user` is required as root, as for any handler).
//! It goes through the handler path (`start`): a child of the service,
//! with `start`/`exit` lines and its stderr logged, counted in
//! `max_processes` (`Running::spawns` is true for such services, so the
//! listener closes at the cap instead of failing spawns).
//!
//! - *Internal service:* at accept (after admission, and after the PROXY
//!   header with `proxy_protocol`), `start_internal` makes a socketpair
//!   (CLOEXEC, non-blocking), spawns the relay with the client on fd 0 and
//!   the pair's far end on fd 1, and serves its own end as the service's
//!   connection (`internal::Conn` holds it as a `TcpStream`: it only
//!   reads, writes, peeks and shuts down, the same system calls on a UNIX
//!   socket) with the client's address as its peer: `done` lines,
//!   `per_source`, the metrics page (`internal:metrics` over https) are
//!   the client's. **Accounting:** the connection holds one place in
//!   `instances` and `per_source`, the relay's, taken when it starts and
//!   given back when it is reaped (`InternalConn::counted` is false: its
//!   close gives back nothing). The relay holds the client's socket, so
//!   the count is of clients; the internal side can only outlive it by the
//!   loop turn in which it reads the end of its socketpair, holding no
//!   client then.
//! - *Forward:* the supervisor admits the client, connects upstream within
//!   `forward_timeout` and writes the PROXY header exactly as for a plain
//!   forward (the header precedes the TLS, as HAProxy's `send-proxy` with
//!   `ssl`); once connected (`forwards::hand_over`) it takes both sockets
//!   out of epoll, gives the connection's place to the relay (ended, then
//!   started again by `start`, in one turn of the single-threaded loop: no
//!   window), and spawns the relay with the client on fd 0 and the
//!   upstream on fd 1. With `tls` the relay is the client's TLS server;
//!   with `forward_tls` the upstream's TLS client (rustls, webpki
//!   verification against `ca`, by default the system bundle, for
//!   `server_name`, by default the forward's host; no option turns it off;
//!   a client certificate when `cert`/`key` are given); with both, both.
//!   It enforces `idle_timeout` itself (its `poll`'s timeout), since no
//!   byte passes through the supervisor any more.
//!
//! Why the supervisor connects rather than the relay: the forward's
//! machinery (the target resolved at load, `forward_timeout` in the timer
//! heap, the PROXY writer with the address the supervisor knows, including
//! one from a PROXY header in, the `error` line of a refused connect)
//! stays one piece of code, and the relay needs no network access of its
//! own (it never calls `connect`: it is given two connected sockets). Why
//! not a socketpair with the supervisor's relay behind it (plain out):
//! that would copy every byte twice more (relay → supervisor → upstream)
//! and would not give TLS out at all; handing both sockets over gives one
//! process, one copy, and the same code for TLS in, out and both. The
//! cost: a forward with TLS logs `start`/`exit` (the relay's) rather than
//! `done` with its byte counts.
//!
//! The relay's end (`pump`): each direction passes its end on
//! (close_notify, or `shutdown(SHUT_WR)` on a plain side), and the relay
//! exits when both are over. A side whose peer is gone entirely (`POLLHUP`
//! once its input ended: an internal service closed its end of the
//! socketpair) also ends the other direction, so a client that stays
//! connected after daytime's answer does not keep the relay, and its place
//! in `instances`, alive. A side that stopped reading (`EPIPE`) drops what
//! it missed and the other side is no longer read. A round that read,
//! passed, ended or sent anything goes round again before `poll`: rustls
//! may hold what the socket no longer shows (a close_notify read in the
//! same segment as the last data, as socat sends them), and plaintext it
//! refused with its buffer full (64 KiB of records) it takes once those
//! have gone out, which no `poll` event would announce.
//!
//! Speed: `bench/run`'s `tls` figure has a `bulk-echo` cell: TLS to
//! oxinetd's internal echo against stunnel4 connecting to a plain oxinetd
//! internal echo; a check run gave 583 MB/s against 306 (1.90×), HAProxy
//! 536 (bench/README.md). The relay's plaintext crosses the socketpair
//! once and the supervisor's echo copies it back: no slower than stunnel's
//! TCP hop to the same echo.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::{ClientConnection, Connection, ServerConnection};
use socket2::Socket;

use super::blocking::{handshake, would_block};
use super::bundle::{self, Writer};
use super::Settings;

/// The CA bundle `forward_tls` verifies against by default (Debian's
/// ca-certificates).
pub const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `forward_tls`: TLS to the upstream, its certificate verified (there is
/// no way to turn verification off).
#[derive(Clone, PartialEq, Eq)]
pub struct Outbound {
    /// The CAs trusted for the upstream's certificate (PEM), and where
    /// they were read from.
    pub ca_path: PathBuf,
    pub ca: Vec<u8>,
    /// The name the upstream's certificate must carry (and the SNI sent):
    /// a DNS name or an IP address.
    pub server_name: String,
    /// A client certificate and its key (PEM), when the upstream asks
    /// for one.
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

/// The key stays out of any `{:?}`.
impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("ca", &self.ca_path)
            .field("server_name", &self.server_name)
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .finish_non_exhaustive()
    }
}

/// A problem of `forward_tls`, for the resolver to place.
#[derive(Debug)]
pub enum OutProblem {
    Ca(String),
    ServerName(String),
    Cert(String),
    Key(String),
    /// `oxinetd-tls` could not be run, or gave no answer.
    Program(String),
}

/// What a `--pipe` relay is told on fd 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipe {
    /// `tls`: the relay is the client's TLS server.
    pub server: Option<Settings>,
    /// `forward_tls`: the relay is the upstream's TLS client.
    pub client: Option<Outbound>,
    /// How long the upstream's handshake may take (`forward_timeout`).
    pub client_timeout: Duration,
    /// `idle_timeout` of a forward: the relay ends a silent connection.
    pub idle: Option<Duration>,
}

pub const MAGIC: &[u8] = b"oxinetd-tls-pipe 1\n";

impl Pipe {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC);
        let mut record = |name: &str, value: &[u8]| w.record(name, value);
        if let Some(s) = &self.server {
            record("in", &s.encode());
        }
        if let Some(c) = &self.client {
            record("out_ca", &c.ca);
            record("out_name", c.server_name.as_bytes());
            record("out_cert", &c.cert);
            record("out_key", &c.key);
        }
        record(
            "out_ms",
            self.client_timeout.as_millis().to_string().as_bytes(),
        );
        if let Some(idle) = self.idle {
            record("idle_ms", idle.as_millis().to_string().as_bytes());
        }
        w.finish()
    }

    pub fn decode(b: &[u8]) -> Result<Pipe, String> {
        let mut p = Pipe {
            server: None,
            client: None,
            client_timeout: super::DEFAULT_HANDSHAKE_TIMEOUT,
            idle: None,
        };
        let ms = |v: &[u8]| -> Result<Duration, String> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .ok_or_else(|| "bad milliseconds".to_owned())
        };
        for record in bundle::records(b, MAGIC)? {
            let (name, value) = record?;
            let out = || Outbound {
                ca_path: PathBuf::new(),
                ca: Vec::new(),
                server_name: String::new(),
                cert_path: None,
                key_path: None,
                cert: Vec::new(),
                key: Vec::new(),
            };
            match name {
                "in" => p.server = Some(Settings::decode(value)?),
                "out_ca" => p.client.get_or_insert_with(out).ca = value.to_vec(),
                "out_name" => {
                    p.client.get_or_insert_with(out).server_name =
                        String::from_utf8(value.to_vec()).map_err(|_| "bad out_name")?;
                }
                "out_cert" => p.client.get_or_insert_with(out).cert = value.to_vec(),
                "out_key" => p.client.get_or_insert_with(out).key = value.to_vec(),
                "out_ms" => p.client_timeout = ms(value)?,
                "idle_ms" => p.idle = Some(ms(value)?),
                _ => return Err(format!("unknown record {name}")),
            }
        }
        Ok(p)
    }
}

/// The `--pipe` relay; `Err` is its one stderr line.
pub fn run() -> Result<ExitCode, String> {
    let bundle = bundle::read_fd3()?;
    let pipe = Pipe::decode(&bundle).map_err(|e| format!("key material: {e}"))?;
    let take = |fd: std::os::fd::BorrowedFd<'_>, what: &str| -> Result<Socket, String> {
        let s = Socket::from(
            fd.try_clone_to_owned()
                .map_err(|e| format!("unable to take the {what}: {e}"))?,
        );
        // Whole records in one write: Nagle would only delay the last.
        let _ = s.set_tcp_nodelay(true);
        s.set_nonblocking(true)
            .map_err(|e| format!("unable to set the {what} non-blocking: {e}"))?;
        Ok(s)
    };
    let client = take(io::stdin().as_fd(), "connection")?;
    let other = take(io::stdout().as_fd(), "other end")?;
    let mut ends = [End::new(client, "client"), End::new(other, "service side")];
    if let Some(s) = &pipe.server {
        let config = s
            .server_config()
            .map_err(|e| format!("unusable key material: {e:?}"))?;
        let mut conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + s.handshake_timeout;
        handshake(&mut conn, &ends[0].sock, "client", deadline)
            .map_err(|e| format!("handshake failed: {e}"))?;
        ends[0].tls = Some(Connection::Server(conn));
    }
    if let Some(c) = &pipe.client {
        let config = c
            .client_config()
            .map_err(|e| format!("unusable forward_tls: {e:?}"))?;
        let name = c.name().map_err(|e| format!("{e:?}"))?;
        let mut conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + pipe.client_timeout;
        handshake(&mut conn, &ends[1].sock, "upstream", deadline)
            .map_err(|e| format!("upstream handshake failed: {e}"))?;
        ends[1].tls = Some(Connection::Client(conn));
    }
    pump(&mut ends, pipe.idle)?;
    Ok(ExitCode::SUCCESS)
}

/// One side of the relay: a socket, TLS on it or not.
struct End {
    sock: Socket,
    tls: Option<Connection>,
    what: &'static str,
    /// Nothing more will be read from it (EOF, close_notify, an error).
    read_done: bool,
    /// Its writing is over: close_notify queued, or shutdown sent.
    closing: bool,
    /// shutdown(SHUT_WR) done on the socket.
    shut: bool,
    /// Its peer is gone entirely (`POLLHUP` once its input ended): an
    /// internal service that closed its socketpair end, or both
    /// directions of an upstream over.
    gone: bool,
}

impl End {
    fn new(sock: Socket, what: &'static str) -> End {
        End {
            sock,
            tls: None,
            what,
            read_done: false,
            closing: false,
            shut: false,
            gone: false,
        }
    }

    /// Plaintext from this side: `Some(0)` at its end, `None` for none now.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut sock = &self.sock;
        let Some(tls) = self.tls.as_mut() else {
            return match sock.read(buf) {
                Ok(n) => Ok(Some(n)),
                Err(e) if would_block(&e) => Ok(None),
                // A reset: the end of this side's input.
                Err(_) => Ok(Some(0)),
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: the end of input (a
                // truncation only the protocol inside can judge).
                Err(_) => return Ok(Some(0)),
            }
            match tls.read_tls(&mut sock) {
                Ok(_) => {
                    // Ok(0) too: the reader then says where it ended.
                    if let Err(e) = tls.process_new_packets() {
                        let _ = tls.write_tls(&mut sock);
                        return Err(io::Error::other(format!("{}: {e}", self.what)));
                    }
                }
                Err(e) if would_block(&e) => return Ok(None),
                Err(_) => return Ok(Some(0)),
            }
        }
    }

    /// Give plaintext to this side; how much was taken.
    fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut sock = &self.sock;
        match self.tls.as_mut() {
            // rustls holds it (up to its buffer limit) until `flush`.
            Some(tls) => tls.writer().write(data),
            None => match sock.write(data) {
                Ok(n) => Ok(n),
                Err(e) if would_block(&e) => Ok(0),
                Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", self.what))),
            },
        }
    }

    /// Nothing more for this side: close_notify, then (once sent) EOF.
    fn close(&mut self) {
        self.closing = true;
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
        }
    }

    /// Send what rustls holds; the socket's shutdown once all is out.
    /// Whether any of it went out (rustls has room again).
    fn flush(&mut self) -> io::Result<bool> {
        let mut sock = &self.sock;
        let mut sent = false;
        if let Some(tls) = self.tls.as_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut sock) {
                    Ok(n) => sent |= n > 0,
                    Err(e) if would_block(&e) => return Ok(sent),
                    Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", self.what))),
                }
            }
        }
        if self.closing && !self.shut {
            let _ = self.sock.shutdown(std::net::Shutdown::Write);
            self.shut = true;
        }
        Ok(sent)
    }

    fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }
}

/// Both directions, half-closes passed on, until each side has had its
/// end; `idle`: a connection silent that long ends.
fn pump(ends: &mut [End; 2], idle: Option<Duration>) -> Result<(), String> {
    // held[i]: plaintext read from side i, not yet taken by the other.
    let mut held: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // Something read, taken, closed or sent this round: round again
        // before polling, since rustls may hold what the socket no longer
        // shows (a close_notify read together with the last data), or
        // have room again for what it refused.
        let mut moved = false;
        for i in 0..2 {
            let j = 1 - i;
            if ends[i].gone && !ends[j].read_done {
                // Nothing sent from j could be taken any more: stop
                // reading it, so the relay ends without waiting for it.
                ends[j].read_done = true;
                held[j].clear();
            }
        }
        for i in 0..2 {
            let j = 1 - i;
            if held[i].is_empty() && !ends[i].read_done {
                match ends[i].read_plain(&mut buf).map_err(|e| e.to_string())? {
                    Some(0) => {
                        ends[i].read_done = true;
                        moved = true;
                    }
                    Some(n) => {
                        held[i].extend_from_slice(&buf[..n]);
                        moved = true;
                    }
                    None => {}
                }
            }
            if !held[i].is_empty() && !ends[j].closing {
                match ends[j].write_plain(&held[i]) {
                    Ok(n) => {
                        held[i].drain(..n);
                        moved |= n > 0;
                    }
                    // That side stopped reading (closed): what it missed
                    // is dropped, and this side is not read any more.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                        held[i].clear();
                        ends[i].read_done = true;
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            if ends[i].read_done && held[i].is_empty() && !ends[j].closing {
                ends[j].close();
            }
        }
        for e in ends.iter_mut() {
            // What rustls refused this round (its buffer full) it takes
            // once this has gone out: round again for it.
            moved |= e.flush().map_err(|e| e.to_string())?;
        }
        if ends.iter().all(|e| e.shut && !e.wants_write()) {
            return Ok(());
        }
        if moved {
            continue;
        }
        let mut fds = Vec::with_capacity(2);
        let mut which = Vec::with_capacity(2);
        for i in 0..2 {
            let mut ev = PollFlags::empty();
            if held[i].is_empty() && !ends[i].read_done {
                ev |= PollFlags::POLLIN;
            }
            let plain_out = ends[i].tls.is_none() && !held[1 - i].is_empty();
            if ends[i].wants_write() || plain_out {
                ev |= PollFlags::POLLOUT;
            }
            // A side with nothing to wait for stays out (its hang-up
            // would wake the loop for nothing), unless its hang-up is
            // what is waited for: its input ended, its peer may go.
            let watch_hup = ends[i].read_done && !ends[i].gone && !ends[1 - i].read_done;
            if !ev.is_empty() || watch_hup {
                fds.push(PollFd::new(ends[i].sock.as_fd(), ev));
                which.push(i);
            }
        }
        if fds.is_empty() {
            // Nothing left to wait for (not reached: the end is above).
            return Ok(());
        }
        let timeout = idle.map_or(PollTimeout::NONE, |d| {
            PollTimeout::try_from(i32::try_from(d.as_millis()).unwrap_or(i32::MAX))
                .unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(0) if idle.is_some() => return Err("idle_timeout: closed".into()),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        let hung: Vec<usize> = which
            .iter()
            .zip(&fds)
            .filter(|(_, p)| p.revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)))
            .map(|(i, _)| *i)
            .collect();
        drop(fds);
        for i in hung {
            if ends[i].read_done {
                ends[i].gone = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_bundle_round_trip() {
        let p = Pipe {
            server: None,
            client: Some(Outbound {
                ca_path: PathBuf::new(),
                ca: b"ca".to_vec(),
                server_name: "up.example".into(),
                cert_path: None,
                key_path: None,
                cert: Vec::new(),
                key: Vec::new(),
            }),
            client_timeout: Duration::from_millis(1500),
            idle: Some(Duration::from_secs(60)),
        };
        assert_eq!(Pipe::decode(&p.encode()).unwrap(), p);
        let enc = p.encode();
        for cut in 0..enc.len() {
            let _ = Pipe::decode(&enc[..cut]);
        }
    }
}
