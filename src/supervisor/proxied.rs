//! `proxy_protocol`: a connection's PROXY header read before anything
//! else, then the connection served as coming from the client it names.
//!
//! `accept_connections` and `accept_internal` test one flag per
//! connection: a service with `proxy_protocol` hands the connection here
//! instead (a service without it pays that one test). The balancer's
//! address is checked against `proxy_from` (`refuse reason=proxy_from`
//! otherwise). Then the header is peeked (`MSG_PEEK | MSG_DONTWAIT`, at
//! most `proxy::MAX` = 552 bytes on the stack, never blocking, the socket
//! left blocking for an exec'd handler) and `proxy::parse` decides. The
//! listener's `TCP_DEFER_ACCEPT` (`defer_accept`, 1 s unless set) has the
//! kernel hand the connection over once the header has come, so it has
//! usually arrived, and the connection goes on at once.
//! Otherwise it waits in `Supervisor::proxied` under `Token::Proxied`,
//! registered edge-triggered (peeked bytes stay unread, so a
//! level-triggered registration would wake the loop every turn) with
//! `EPOLLRDHUP` (a balancer that closes mid-header), and its
//! `proxy_timeout` as `Resume::Proxied` on the timer heap. Only a complete
//! header is taken off the socket (exactly its length: the client's first
//! bytes stay for the handler), and the socket leaves the epoll set (a
//! handler's copy would keep it there); then the usual path runs
//! (`start_peer`, `start_internal`) with the client's address as the peer:
//! access rules, `per_source`, `per_source_rate`, `cps`/`rate`, the
//! environment (`spawn::Ends::Proxied`) and log lines (`via=`:
//! `Extras::via`, `InternalConn::via`).
//!
//! Bounds: a service has at most min(`instances`, [`PENDING_MAX`] = 256)
//! connections waiting for their header; one more is closed. A malformed
//! header, a close before it is whole, or none within `proxy_timeout`
//! closes that connection alone. Each of these is a `refuse ...
//! reason=proxy_header what=WHY` line with the balancer as the peer,
//! counted, throttled and logged as a refusal of the service. A SIGUSR2
//! re-exec waits for these connections (`supervisor/handover.rs`).

use std::cmp::Reverse;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::MsgFlags;
use socket2::Socket;

use crate::proxy::{self, Origin};
use crate::refusal::{NoHeader, Refusal};

use super::{Mode, Resume, Running, Supervisor, Token};

/// The most connections of one service waiting for their header.
pub(super) const PENDING_MAX: usize = 256;

/// A connection whose header has not come whole yet.
pub(super) struct Pending {
    sock: Socket,
    service: Rc<Running>,
    /// The listener it came in on (its backoff, if spawning fails).
    listener: u64,
    /// Who connected: the balancer.
    balancer: SocketAddr,
    /// Where it connected.
    local: SocketAddr,
}

/// What a look at the socket found.
enum Read {
    /// The header was taken off the socket; the connection was served.
    Served,
    /// Not whole yet: keep waiting.
    Wait(Pending),
    /// The connection was closed (refused, and logged).
    Closed,
}

impl Supervisor {
    /// A connection of a `proxy_protocol` service from `balancer`.
    pub(super) fn proxied(
        &mut self,
        id: u64,
        running: Rc<Running>,
        sock: Socket,
        balancer: SocketAddr,
        local: SocketAddr,
    ) {
        let Some(trust) = &running.svc.proxy else {
            return;
        };
        if !trust.trusts(balancer.ip()) {
            self.refuse_stream(&running, sock, Some(balancer), &Refusal::ProxyFrom);
            return;
        }
        let until = Instant::now() + trust.timeout;
        let p = Pending {
            sock,
            service: running,
            listener: id,
            balancer,
            local,
        };
        let Read::Wait(p) = self.read_header(p, false, false) else {
            return;
        };
        let cap = p
            .service
            .svc
            .limits
            .max_instances(p.service.spawns())
            .min(PENDING_MAX);
        if p.service.pending.get() >= cap {
            let why = Refusal::ProxyHeader(NoHeader::Pending(cap));
            self.refuse_stream(&p.service, p.sock, Some(p.balancer), &why);
            return;
        }
        let pid = self.next_id;
        self.next_id += 1;
        let flags = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLET;
        let ev = EpollEvent::new(flags, Token::Proxied(pid).encode());
        if let Err(e) = self.epoll.add(p.sock.as_fd(), ev) {
            let msg = format!("epoll: {e}");
            self.log
                .event(crate::log::Event::service_error(&p.service.name, &msg));
            return;
        }
        p.service.pending.set(p.service.pending.get() + 1);
        self.timers.push(Reverse((until, Resume::Proxied(pid))));
        self.proxied.insert(pid, p);
    }

    /// Readiness on a connection waiting for its header; `hup`: the
    /// balancer closed its side (nothing more will come).
    pub(super) fn on_proxied(&mut self, pid: u64, hup: bool) {
        let Some(p) = self.proxied.remove(&pid) else {
            return;
        };
        p.service
            .pending
            .set(p.service.pending.get().saturating_sub(1));
        if let Read::Wait(p) = self.read_header(p, hup, true) {
            p.service.pending.set(p.service.pending.get() + 1);
            self.proxied.insert(pid, p);
        }
    }

    /// `proxy_timeout` of a waiting connection came (if it still waits).
    pub(super) fn proxied_deadline(&mut self, pid: u64) {
        let Some(p) = self.proxied.remove(&pid) else {
            return;
        };
        crate::idmap::shrink_after_burst(&mut self.proxied);
        p.service
            .pending
            .set(p.service.pending.get().saturating_sub(1));
        if self.spawner.busy() {
            let _ = self.epoll.delete(p.sock.as_fd());
        }
        let why = Refusal::ProxyHeader(NoHeader::Timeout);
        self.refuse_stream(&p.service, p.sock, Some(p.balancer), &why);
    }

    /// Look at what has arrived: serve the connection if its header is
    /// whole, close it if it never will be, else give it back to wait.
    /// `registered`: it is in the epoll set, and leaves it unless it
    /// waits on (a handler's copy of the socket would keep it there).
    fn read_header(&mut self, p: Pending, hup: bool, registered: bool) -> Read {
        let mut buf = [0u8; proxy::MAX];
        let fd = p.sock.as_raw_fd();
        let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
        let seen = match nix::sys::socket::recv(fd, &mut buf, flags) {
            Ok(n) => n,
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) if !hup => {
                return Read::Wait(p)
            }
            Err(_) => 0,
        };
        let verdict = match proxy::parse(buf.get(..seen).unwrap_or_default()) {
            Ok(Some(h)) => Ok(h),
            Ok(None) if seen == 0 || hup => Err(NoHeader::Closed),
            Ok(None) => return Read::Wait(p),
            Err(m) => Err(NoHeader::Malformed(m)),
        };
        if registered {
            let _ = self.epoll.delete(p.sock.as_fd());
        }
        let header = match verdict {
            Ok(h) => h,
            Err(why) => {
                let why = Refusal::ProxyHeader(why);
                self.refuse_stream(&p.service, p.sock, Some(p.balancer), &why);
                return Read::Closed;
            }
        };
        // Take exactly the header: it is all there (just peeked), and
        // the client's own bytes after it stay for the handler.
        let mut sink = [0u8; proxy::MAX];
        let head = sink.get_mut(..header.len).unwrap_or_default();
        match nix::sys::socket::recv(fd, head, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n == header.len => {}
            _ => {
                let why = Refusal::ProxyHeader(NoHeader::Closed);
                self.refuse_stream(&p.service, p.sock, Some(p.balancer), &why);
                return Read::Closed;
            }
        }
        let (peer, local) = match header.origin {
            Origin::Client {
                source,
                destination,
            } => (source, destination),
            Origin::Balancer => (p.balancer, p.local),
        };
        let running = p.service;
        match running.mode {
            Mode::InternalStream(kind) => {
                self.start_internal(running, kind, p.sock, peer, Some(p.balancer));
            }
            Mode::Forward => {
                self.start_forward(running, p.sock, Some(peer), Some(local), Some(p.balancer));
            }
            _ => {
                let via = Some((p.balancer, header.authority));
                self.start_peer(p.listener, &running, p.sock, peer, local, via);
            }
        }
        Read::Served
    }
}
