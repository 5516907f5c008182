//! Internal services over TCP: their connections served on the loop, and
//! the idle sweep that closes the silent ones (`idle_timeout`; forwards'
//! too, `forwards::sweep_forwards`).
//!
//! `accept_internal` accepts non-blocking (accept4) and makes each
//! connection an `internal::Conn`, which tries its first read at once (the
//! request has usually arrived with the handshake), then is registered in
//! epoll under its own token; `on_conn` lets it progress (read, write, or
//! wait for room) and `close_conn` logs `done`; closing the socket removes
//! it from epoll. All of them read into one 1 MiB scratch buffer, a
//! mapping of its own (`sys::Pages`): a bulk transfer costs a system call
//! per MiB rather than per 64 KiB, and when a connection that used more
//! than its first 64 KiB (or held that much of pending echo) ends,
//! `close_conn` hands those pages back (`madvise`, `malloc_trim`). The
//! `internal:metrics` page is rendered here when a connection asks for it
//! (`Interest::Render`, `render_metrics`).

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollEvent, EpollFlags};

use crate::internal::{self, Interest, Internal};
use crate::log::Event;
use crate::refusal::Refusal;
use crate::spawn;

use super::accept::Accepted;
use super::{Resume, Running, Supervisor, Token, BATCH};

/// An internal service's TCP connection.
pub(super) struct InternalConn {
    pub(super) conn: internal::Conn,
    pub(super) service: Rc<Running>,
    pub(super) peer: SocketAddr,
    /// The balancer `peer` came through (`proxy_protocol`).
    pub(super) via: Option<SocketAddr>,
    /// What the connection is counted under in the service's load.
    pub(super) source: Option<IpAddr>,
    pub(super) started: Instant,
    pub(super) interest: Interest,
    /// Traffic since the last idle sweep; else silent since `quiet_since`.
    pub(super) active: bool,
    pub(super) quiet_since: Instant,
    /// Closed by `idle_timeout`.
    pub(super) idle: bool,
    /// It holds its place in `instances` and `per_source`; not when the
    /// service has `tls`: then the connection's relay process does (it
    /// holds the client's socket), as an exec'd TLS service's does.
    pub(super) counted: bool,
}

impl Supervisor {
    /// An internal service over TCP: serve each connection on the loop.
    pub(super) fn accept_internal(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            if !self.is_open(id) {
                return;
            }
            // Internal services listen on IP addresses only.
            let Some((sock, Accepted::Ip { peer, local })) = self.accept_one(id, true) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            if !self
                .fd_budget
                .leaves_reserve(sock.as_raw_fd(), self.fds_held())
            {
                let why = Refusal::FdReserve(self.fd_budget.reserve);
                self.refuse_stream(&running, sock, Some(peer), &why);
                continue;
            }
            if running.svc.proxy.is_some() {
                self.proxied(id, running, sock, peer, local);
                continue;
            }
            self.start_internal(running, kind, sock, peer, None);
        }
    }

    /// Descriptors the supervisor holds for what it serves itself, besides
    /// the one just accepted: internal connections, connections waiting
    /// for their PROXY header, forwards (client and upstream), listeners,
    /// and the pipes of handlers (stderr, replies).
    pub(super) fn fds_held(&self) -> usize {
        self.conns.len()
            + self.proxied.len()
            + 2 * self.forwards.len()
            + self.listeners.len()
            + 2 * self.children.len()
    }

    /// An internal service's connection from `peer` (through balancer
    /// `via`, `proxy_protocol`): admitted, then served on the loop.
    pub(super) fn start_internal(
        &mut self,
        running: Rc<Running>,
        kind: Internal,
        sock: socket2::Socket,
        peer: SocketAddr,
        via: Option<SocketAddr>,
    ) {
        let source = match self.admit(&running, peer) {
            Ok(source) => source,
            Err(why) => {
                self.refuse_stream_via(&running, sock, Some(peer), via, &why);
                return;
            }
        };
        let (sock, counted) = if running.plan.is_some() {
            // `tls`: the relay gets the client, this loop the plaintext.
            match self.start_tls_relay(&running, sock, peer, via, source) {
                Some(inner) => (inner, false),
                None => return,
            }
        } else {
            running.load.borrow_mut().started(source);
            (sock, true)
        };
        self.touch(&running.name);
        // For `tls` a UNIX-domain socketpair's end as a TcpStream: the
        // connection only reads, writes, peeks and shuts it down, the
        // same system calls on either.
        let (conn, interest) = internal::Conn::start(
            std::net::TcpStream::from(std::os::fd::OwnedFd::from(sock)),
            kind,
            self.stream_buf.as_mut_slice(),
        );
        let now = Instant::now();
        let c = InternalConn {
            conn,
            service: running,
            peer: spawn::unmap(peer),
            via: via.map(spawn::unmap),
            source,
            started: now,
            interest,
            active: false,
            quiet_since: now,
            idle: false,
            counted,
        };
        if interest == Interest::Close {
            self.close_conn(c);
            return;
        }
        let cid = self.next_id;
        self.next_id += 1;
        let ev = EpollEvent::new(epoll_flags(interest), Token::Conn(cid).encode());
        if let Err(e) = self.epoll.add(c.conn.sock.as_fd(), ev) {
            let msg = format!("epoll: {e}");
            self.log.event(Event::service_error(&c.service.name, &msg));
            // Give back its place in `instances` and `per_source`.
            self.close_conn(c);
            return;
        }
        self.schedule_sweep(now, c.service.svc.limits.idle_timeout);
        self.conns.insert(cid, c);
    }

    /// An internal service with `tls`: start the connection's relay
    /// (`oxinetd-tls relay --pipe`, the service's user) with the client on
    /// its fd 0 and one end of a socketpair on its fd 1; the other end,
    /// returned, is served as the connection. The relay is recorded as a
    /// handler: it holds the connection's place in `instances` and
    /// `per_source` until it exits, and its exit is logged.
    fn start_tls_relay(
        &mut self,
        running: &Rc<Running>,
        client: socket2::Socket,
        peer: SocketAddr,
        via: Option<SocketAddr>,
        source: Option<IpAddr>,
    ) -> Option<socket2::Socket> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let pair = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        );
        let (inner, outer) = match pair {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("unable to create a socketpair: {e}");
                self.log.event(Event::service_error(&running.name, &msg));
                return None;
            }
        };
        let inv = spawn::Invocation::Peer {
            input: client.as_raw_fd(),
            output: outer.as_raw_fd(),
            ends: spawn::Ends::Ip {
                kind: crate::config::SocketKind::Stream,
                local: client
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(peer),
                peer: Some(peer),
            },
        };
        let extras = super::handlers::Extras {
            via,
            ..Default::default()
        };
        if !self.start(running, &inv, Some(peer), source, extras) {
            return None;
        }
        // `client` and `outer` are closed here: the relay has its copies.
        Some(socket2::Socket::from(inner))
    }

    /// Readiness on an internal connection: let it make progress.
    pub(super) fn on_conn(&mut self, cid: u64) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        // A metrics request must come whole within idle_timeout.
        c.active = !c.conn.awaiting_request();
        let interest = c.conn.advance(self.stream_buf.as_mut_slice());
        // Only a metrics request looks the connection up again.
        let (interest, c) = if interest == Interest::Render {
            let interest = self.render_metrics(cid);
            match self.conns.get_mut(&cid) {
                Some(c) => (interest, c),
                None => return,
            }
        } else {
            (interest, c)
        };
        if interest == Interest::Close {
            if let Some(c) = self.conns.remove(&cid) {
                // Closing the only descriptor of the socket removes it from
                // the epoll set. A handler between clone and exec still
                // holds a copy of every descriptor, though; only then is
                // epoll_ctl(DEL) needed.
                if self.spawner.busy() {
                    let _ = self.epoll.delete(c.conn.sock.as_fd());
                }
                self.close_conn(c);
            }
        } else if interest != c.interest {
            c.interest = interest;
            let mut ev = EpollEvent::new(epoll_flags(interest), Token::Conn(cid).encode());
            let _ = self.epoll.modify(c.conn.sock.as_fd(), &mut ev);
        }
    }

    /// A metrics request asked for the page: render the snapshot and let
    /// the connection write it; or 503 while the answers that clients have
    /// not read yet hold more than `HELD_MAX`. Rare (a scrape), so plain
    /// formatting, and the held bytes are added up here, not kept.
    fn render_metrics(&mut self, cid: u64) -> Interest {
        let held: usize = self.conns.values().map(|c| c.conn.held()).sum();
        let page = (held <= internal::metrics::HELD_MAX)
            .then(|| crate::metrics::render(&self.snapshot_of(None, false)));
        let Some(c) = self.conns.get_mut(&cid) else {
            return Interest::Close;
        };
        c.active = true;
        c.conn.respond(page.as_ref().map(|p| p.as_bytes()));
        c.conn.advance(self.stream_buf.as_mut_slice())
    }

    pub(super) fn close_conn(&mut self, mut c: InternalConn) {
        crate::idmap::shrink_after_burst(&mut self.conns);
        // A bulk transfer touched up to a MiB of scratch buffer, and maybe
        // a MiB of pending echo on the heap: give both back before the
        // close is seen, so an idle supervisor stays small.
        if c.conn.used_bulk_memory() {
            self.stream_buf.release(internal::SCRATCH_KEEP);
            c.conn.drop_pending();
            crate::sys::trim_heap();
        }
        {
            let mut load = c.service.load.borrow_mut();
            if c.counted {
                load.ended(c.source);
            }
            load.stats.total.bytes_in += c.conn.bytes_in;
            load.stats.total.bytes_out += c.conn.bytes_out;
        }
        self.touch(&c.service.name);
        let log = &c.service.svc.log;
        if !log.any_success() {
            return;
        }
        let traffic = log.traffic.then_some(&c.conn);
        self.log.event(Event::Done {
            service: &c.service.name,
            peer: log.host.then_some(c.peer),
            via: c.via.filter(|_| log.host),
            upstream: None,
            duration_ms: log.duration.then(|| c.started.elapsed().as_millis()),
            bytes_in: traffic.map(|t| t.bytes_in),
            bytes_out: traffic.map(|t| t.bytes_out),
            status: c.conn.http_status(),
            reason: c.idle.then_some("idle"),
        });
    }

    /// Make sure an idle sweep comes in time for a connection with this
    /// `idle_timeout` (one timer for all connections, not one each).
    pub(super) fn schedule_sweep(&mut self, now: Instant, timeout: Duration) {
        let Some(period) = crate::idle::sweep_period(timeout) else {
            return;
        };
        let due = now + period;
        if self.sweep_at.is_none_or(|at| due < at) {
            self.sweep_at = Some(due);
            self.timers.push(Reverse((due, Resume::IdleSweep)));
        }
    }

    /// Close the internal connections without traffic for their
    /// `idle_timeout`; mark the others quiet from now. O(connections),
    /// once per sweep period: nothing is done per connection per turn.
    pub(super) fn sweep_idle(&mut self, now: Instant) {
        if self.sweep_at.is_none_or(|at| at > now) {
            return; // an out-of-date entry
        }
        self.sweep_at = None;
        let mut idle = Vec::new();
        let mut next: Option<Duration> = None;
        for (cid, c) in self.conns.iter_mut() {
            let timeout = c.service.svc.limits.idle_timeout;
            let Some(period) = crate::idle::sweep_period(timeout) else {
                continue;
            };
            if std::mem::take(&mut c.active) {
                c.quiet_since = now;
            } else if now.saturating_duration_since(c.quiet_since) >= timeout {
                idle.push(*cid);
                continue;
            }
            next = Some(next.map_or(period, |p| p.min(period)));
        }
        for cid in idle {
            if let Some(mut c) = self.conns.remove(&cid) {
                if self.spawner.busy() {
                    let _ = self.epoll.delete(c.conn.sock.as_fd());
                }
                c.idle = true;
                self.close_conn(c);
            }
        }
        self.sweep_forwards(now, &mut next);
        if let Some(period) = next {
            self.sweep_at = Some(now + period);
            self.timers.push(Reverse((now + period, Resume::IdleSweep)));
        }
    }
}

fn epoll_flags(i: Interest) -> EpollFlags {
    match i {
        Interest::Write => EpollFlags::EPOLLOUT,
        _ => EpollFlags::EPOLLIN,
    }
}
