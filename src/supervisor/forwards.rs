//! `forward` services: each connection relayed upstream on the loop
//! (`crate::forward::Relay`), admitted exactly as an internal service's:
//! access rules, `per_source_rate`, `per_source`, `instances`, `cps`, the
//! descriptor reserve.
//!
//! A connection's life: accept, admit, a non-blocking `connect` upstream
//! (its deadline, `forward_timeout`, in the timer heap); once connected,
//! the PROXY header if asked for, then both flows. Each socket is in the
//! epoll set only while a flow can make progress on it (`watch`): a flow
//! that waits to write does not read, and a socket with nothing to wait
//! for is taken out, so a half-closed one cannot wake the loop for
//! nothing. `idle_timeout` is the idle sweep's, shared with internal
//! connections. The end is one `done` line with the bytes each way.
//!
//! In detail: `accept_forward` accepts non-blocking and admits; the
//! connect's `forward_timeout` is a `Resume::Connect` in the timer heap
//! (entries of connects that ended first are swept out once they are half
//! the heap, as handlers' deadlines are). Writable upstream: the PROXY
//! header, if any, is queued ahead of the client's bytes and the client is
//! read at once. Each socket is registered under `Token::Forward` (id and
//! side) only while a flow waits on it (`watch_forward`: add, modify or
//! delete only on a change). The idle sweep covers forwards
//! (`sweep_forwards`); `end_forward` adds the bytes to the service's
//! `Stats` and logs `done` with `upstream`. With `tls` or `forward_tls`
//! the connection is handed to a relay once connected (`hand_over`,
//! `tls::pipe`).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use socket2::{Domain, Socket, Type};

use crate::config::Handler;
use crate::forward::{header, Relay, Side};
use crate::log::Event;
use crate::refusal::Refusal;
use crate::spawn;

use super::accept::Accepted;
use super::{Resume, Running, Supervisor, Token, BATCH};

/// A forwarded connection.
pub(super) struct ForwardConn {
    pub(super) relay: Relay,
    pub(super) service: Rc<Running>,
    /// The client; `None` on a UNIX-domain listener.
    pub(super) peer: Option<SocketAddr>,
    /// The address it came in on (the PROXY header's destination).
    local: Option<SocketAddr>,
    /// The balancer it came through (`proxy_protocol`).
    via: Option<SocketAddr>,
    /// What the connection is counted under in the service's load.
    source: Option<IpAddr>,
    pub(super) started: Instant,
    /// The connect upstream is in progress.
    connecting: bool,
    /// What epoll watches each socket for now (client, upstream); empty:
    /// not in the epoll set.
    watched: [EpollFlags; 2],
    /// Its `forward_timeout` entry is in the timer heap.
    timer: bool,
    /// Traffic since the last idle sweep; else silent since `quiet_since`.
    active: bool,
    quiet_since: Instant,
}

/// Why a relay ended early, for its `done` line.
enum End<'a> {
    /// Both flows done.
    Finished,
    /// Closed by `idle_timeout`.
    Idle,
    /// A socket failed.
    Failed(&'a str),
}

fn token(cid: u64, side: Side) -> u64 {
    Token::Forward(cid << 1 | u64::from(side == Side::Upstream)).encode()
}

impl Supervisor {
    /// A `forward` service's listener is readable: accept, admit, connect
    /// upstream.
    pub(super) fn accept_forward(&mut self, id: u64) {
        for _ in 0..BATCH {
            if !self.is_open(id) {
                return;
            }
            let Some((sock, accepted)) = self.accept_one(id, true) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            let (peer, local) = match accepted {
                Accepted::Ip { peer, local } => (Some(peer), Some(local)),
                Accepted::Unix => (None, None),
            };
            // Its upstream socket will take the next descriptor.
            if !self
                .fd_budget
                .leaves_reserve(sock.as_raw_fd() + 1, self.fds_held() + 1)
            {
                let why = Refusal::FdReserve(self.fd_budget.reserve);
                self.refuse_stream(&running, sock, peer, &why);
                continue;
            }
            if let (Some(p), Some(l), true) = (peer, local, running.svc.proxy.is_some()) {
                self.proxied(id, running, sock, p, l);
                continue;
            }
            self.start_forward(running, sock, peer, local, None);
        }
    }

    /// A client of a `forward` service from `peer` (through balancer
    /// `via`, `proxy_protocol`): admitted, then connected upstream.
    pub(super) fn start_forward(
        &mut self,
        running: Rc<Running>,
        sock: Socket,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
        via: Option<SocketAddr>,
    ) {
        let admitted = match peer {
            Some(p) => self.admit(&running, p),
            None => self.admit_load(&running, None),
        };
        let source = match admitted {
            Ok(source) => source,
            Err(why) => {
                self.refuse_stream_via(&running, sock, peer, via, &why);
                return;
            }
        };
        running.load.borrow_mut().started(source);
        self.touch(&running.name);
        let ends = (peer.map(spawn::unmap), local, via);
        self.open_forward(running, sock, ends, source);
    }

    /// Connect upstream for a new client; the relay starts at once if the
    /// connect completes at once, else when the upstream socket is
    /// writable (or its deadline closes it).
    fn open_forward(
        &mut self,
        service: Rc<Running>,
        client: Socket,
        (peer, local, via): (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>),
        source: Option<IpAddr>,
    ) {
        let Handler::Forward(fwd) = &service.svc.handler else {
            return;
        };
        let (target, timeout) = (fwd.target, fwd.connect_timeout);
        let idle = service.svc.limits.idle_timeout;
        let now = Instant::now();
        let (upstream, connected) = match connect(target) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("unable to connect to {target}: {}", errno_text(&e));
                self.forward_failed(&service, peer, source, &msg);
                return;
            }
        };
        let cid = self.next_id;
        self.next_id += 1;
        let f = ForwardConn {
            relay: Relay::new(client, upstream),
            service,
            peer,
            local,
            via,
            source,
            started: now,
            connecting: true,
            watched: [EpollFlags::empty(); 2],
            timer: false,
            active: false,
            quiet_since: now,
        };
        self.forwards.insert(cid, f);
        self.schedule_sweep(now, idle);
        if connected {
            self.connected(cid);
            return;
        }
        if self.watch_forward(cid, [EpollFlags::empty(), EpollFlags::EPOLLOUT]) {
            self.timers
                .push(std::cmp::Reverse((now + timeout, Resume::Connect(cid))));
            if let Some(f) = self.forwards.get_mut(&cid) {
                f.timer = true;
            }
        }
    }

    /// A connect ended before its deadline: its entry in the heap is out
    /// of date. As `forget_deadline` does for handlers, the heap is swept
    /// of them once they are more than half of it (and more than a few),
    /// so a connection rate times `forward_timeout` does not pile up.
    fn forget_connect(&mut self) {
        self.stale_connects += 1;
        if self.stale_connects < 1024 || self.stale_connects * 2 < self.timers.len() {
            return;
        }
        let forwards = &self.forwards;
        self.timers.retain(|std::cmp::Reverse((_, due))| match due {
            Resume::Connect(cid) => forwards.get(cid).is_some_and(|f| f.connecting),
            _ => true,
        });
        self.stale_connects = 0;
    }

    /// The connect upstream is done: queue the PROXY header, relay what
    /// the client has sent already, and watch both sides.
    fn connected(&mut self, cid: u64) {
        let Some(f) = self.forwards.get_mut(&cid) else {
            return;
        };
        f.connecting = false;
        if f.timer {
            f.timer = false;
            self.forget_connect();
        }
        let Some(f) = self.forwards.get_mut(&cid) else {
            return;
        };
        if f.service.plan.is_some() {
            self.hand_over(cid);
            return;
        }
        if let Handler::Forward(fwd) = &f.service.svc.handler {
            if let Some(version) = fwd.proxy {
                let mut h = Vec::with_capacity(header::MAX);
                header::encode(version, f.peer.zip(f.local), &mut h);
                f.relay.preface_len = h.len() as u64;
                f.relay.up.preface(h);
            }
        }
        // The client's request has usually arrived by now: one turn saved.
        let result = f.relay.pump_up(self.stream_buf.as_mut_slice());
        self.progressed(cid, result);
    }

    /// A forward with a TLS relay (`tls`, `forward_tls`), now connected:
    /// the PROXY header written, both sockets go to the relay process of
    /// the service's user (`oxinetd-tls relay --pipe`: the client on its
    /// fd 0, the upstream on fd 1), which holds the connection's place in
    /// `instances` and `per_source` from here on, as a handler.
    fn hand_over(&mut self, cid: u64) {
        let Some(f) = self.forwards.remove(&cid) else {
            return;
        };
        // The relay's copies would keep the sockets in the epoll set.
        for (i, fd) in [f.relay.client.as_fd(), f.relay.upstream.as_fd()]
            .into_iter()
            .enumerate()
        {
            if !f.watched[i].is_empty() {
                let _ = self.epoll.delete(fd);
            }
        }
        let running = Rc::clone(&f.service);
        if let Handler::Forward(fwd) = &running.svc.handler {
            if let Some(version) = fwd.proxy {
                // A few hundred bytes on a socket just connected: its
                // send buffer takes them whole, or the upstream is gone.
                let mut h = Vec::with_capacity(header::MAX);
                header::encode(version, f.peer.zip(f.local), &mut h);
                match f.relay.upstream.send(&h) {
                    Ok(n) if n == h.len() => {}
                    Ok(_) => {
                        let msg = "unable to send the PROXY header: short write";
                        self.forward_failed(&running, f.peer, f.source, msg);
                        return;
                    }
                    Err(e) => {
                        let msg = format!("unable to send the PROXY header: {}", errno_text(&e));
                        self.forward_failed(&running, f.peer, f.source, &msg);
                        return;
                    }
                }
            }
        }
        running.load.borrow_mut().ended(f.source);
        let (client, upstream) = (f.relay.client.as_raw_fd(), f.relay.upstream.as_raw_fd());
        let path = std::path::Path::new("");
        let ends = match (f.peer, f.via) {
            (Some(peer), Some(via)) => spawn::Ends::Proxied {
                local: f.local.unwrap_or(peer),
                peer,
                via,
                authority: None,
            },
            (Some(peer), None) => spawn::Ends::Ip {
                kind: crate::config::SocketKind::Stream,
                local: f.local.unwrap_or(peer),
                peer: Some(peer),
            },
            (None, _) => spawn::Ends::Unix { path, cred: None },
        };
        let inv = spawn::Invocation::Peer {
            input: client,
            output: upstream,
            ends,
        };
        let extras = super::handlers::Extras {
            via: f.via,
            ..Default::default()
        };
        // A failure is logged and counted by `start`; the place is free.
        self.start(&running, &inv, f.peer, f.source, extras);
        // Both sockets are closed here: the relay has its copies.
    }

    /// Readiness of one of a forward's sockets.
    pub(super) fn on_forward(&mut self, v: u64, events: EpollFlags) {
        let (cid, side) = (
            v >> 1,
            if v & 1 == 1 {
                Side::Upstream
            } else {
                Side::Client
            },
        );
        let Some(f) = self.forwards.get_mut(&cid) else {
            return;
        };
        f.active = true;
        if f.connecting {
            // Writable without an error: connected (no SO_ERROR to read).
            let failed = events.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
            let error = if failed {
                f.relay.upstream.take_error()
            } else {
                Ok(None)
            };
            match error {
                Ok(None) => self.connected(cid),
                Ok(Some(e)) | Err(e) => {
                    let msg = match &f.service.svc.handler {
                        Handler::Forward(fwd) => {
                            format!("unable to connect to {}: {}", fwd.target, errno_text(&e))
                        }
                        _ => format!("unable to connect upstream: {e}"),
                    };
                    self.drop_forward(cid, &msg);
                }
            }
            return;
        }
        let ready_in =
            events.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        let ready_out =
            events.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR);
        let (reads, writes) = f.relay.interest(side);
        let scratch = self.stream_buf.as_mut_slice();
        let mut result = Ok(());
        // The client's readiness moves data up (reading) or down
        // (writing); the upstream's the other way round.
        if ready_in && reads {
            result = match side {
                Side::Client => f.relay.pump_up(scratch),
                Side::Upstream => f.relay.pump_down(scratch),
            };
        }
        if result.is_ok() && ready_out && writes {
            result = match side {
                Side::Client => f.relay.pump_down(scratch),
                Side::Upstream => f.relay.pump_up(scratch),
            };
        }
        self.progressed(cid, result);
    }

    /// After a pump: end the relay, or watch what its flows wait for.
    fn progressed(&mut self, cid: u64, result: std::io::Result<()>) {
        let Some(f) = self.forwards.get(&cid) else {
            return;
        };
        if let Err(e) = result {
            let msg = errno_text(&e);
            self.end_forward(cid, End::Failed(&msg));
            return;
        }
        if f.relay.finished() {
            self.end_forward(cid, End::Finished);
            return;
        }
        let want = |side| {
            let (r, w) = f.relay.interest(side);
            let mut flags = EpollFlags::empty();
            flags.set(EpollFlags::EPOLLIN, r);
            flags.set(EpollFlags::EPOLLOUT, w);
            flags
        };
        let want = [want(Side::Client), want(Side::Upstream)];
        self.watch_forward(cid, want);
    }

    /// Make epoll watch each socket of `cid` for `want` (empty: not at
    /// all); only what changed costs an `epoll_ctl`. False (the relay
    /// closed and logged) if epoll refused.
    fn watch_forward(&mut self, cid: u64, want: [EpollFlags; 2]) -> bool {
        let Some(f) = self.forwards.get_mut(&cid) else {
            return false;
        };
        for (i, side) in [Side::Client, Side::Upstream].into_iter().enumerate() {
            let (have, wanted) = (f.watched[i], want[i]);
            if have == wanted {
                continue;
            }
            let fd = match side {
                Side::Client => f.relay.client.as_fd(),
                Side::Upstream => f.relay.upstream.as_fd(),
            };
            let mut ev = EpollEvent::new(wanted, token(cid, side));
            let r = if have.is_empty() {
                self.epoll.add(fd, ev)
            } else if wanted.is_empty() {
                self.epoll.delete(fd)
            } else {
                self.epoll.modify(fd, &mut ev)
            };
            if let Err(e) = r {
                let msg = format!("epoll: {e}");
                self.log.event(Event::service_error(&f.service.name, &msg));
                self.end_forward(cid, End::Failed(&msg));
                return false;
            }
            f.watched[i] = wanted;
        }
        true
    }

    /// `forward_timeout` came for `cid`: close it if it is still
    /// connecting (the entry is out of date otherwise).
    pub(super) fn connect_overdue(&mut self, cid: u64) {
        let Some(f) = self.forwards.get_mut(&cid).filter(|f| f.connecting) else {
            self.stale_connects = self.stale_connects.saturating_sub(1);
            return;
        };
        // This entry was the one in the heap; it is gone now.
        f.timer = false;
        let msg = match &f.service.svc.handler {
            Handler::Forward(fwd) => format!(
                "unable to connect to {}: timed out after {}ms",
                fwd.target,
                fwd.connect_timeout.as_millis()
            ),
            _ => "unable to connect upstream: timed out".to_owned(),
        };
        self.drop_forward(cid, &msg);
    }

    /// The upstream could not be reached: close the client, log why.
    fn drop_forward(&mut self, cid: u64, msg: &str) {
        let Some(f) = self.forwards.remove(&cid) else {
            return;
        };
        crate::idmap::shrink_after_burst(&mut self.forwards);
        if f.timer {
            // Failed before its deadline: that entry is out of date.
            self.forget_connect();
        }
        self.unwatch(&f);
        let (service, peer, source) = (Rc::clone(&f.service), f.peer, f.source);
        drop(f);
        self.forward_failed(&service, peer, source, msg);
    }

    /// A client whose upstream connect failed: its place in the load given
    /// back, and an `error` line (throttled per service, as refusals).
    fn forward_failed(
        &mut self,
        service: &Rc<Running>,
        peer: Option<SocketAddr>,
        source: Option<IpAddr>,
        msg: &str,
    ) {
        {
            let mut load = service.load.borrow_mut();
            load.ended(source);
            load.stats.total.spawn_failed += 1;
        }
        self.touch(&service.name);
        let Some(suppressed) = self.throttled(&service.name, &service.load) else {
            return;
        };
        self.log.event(Event::Error {
            service: Some(&service.name),
            pid: None,
            peer,
            msg,
            suppressed: (suppressed > 0).then_some(suppressed),
        });
    }

    /// Closing the sockets removes them from the epoll set, unless a
    /// handler between clone and exec holds copies: then say so.
    fn unwatch(&mut self, f: &ForwardConn) {
        if !self.spawner.busy() {
            return;
        }
        if !f.watched[0].is_empty() {
            let _ = self.epoll.delete(f.relay.client.as_fd());
        }
        if !f.watched[1].is_empty() {
            let _ = self.epoll.delete(f.relay.upstream.as_fd());
        }
    }

    /// The relay is over: count its bytes, give back its place, log `done`.
    fn end_forward(&mut self, cid: u64, end: End<'_>) {
        let Some(f) = self.forwards.remove(&cid) else {
            return;
        };
        crate::idmap::shrink_after_burst(&mut self.forwards);
        self.unwatch(&f);
        let (up, down) = (f.relay.bytes_up(), f.relay.down.bytes);
        {
            let mut load = f.service.load.borrow_mut();
            load.ended(f.source);
            load.stats.total.bytes_in += up;
            load.stats.total.bytes_out += down;
        }
        self.touch(&f.service.name);
        let log = &f.service.svc.log;
        let reason = match end {
            End::Finished => None,
            End::Idle => Some("idle"),
            End::Failed(why) => Some(why),
        };
        // A failure is worth a line even when successes are not logged.
        if !log.any_success() && reason.is_none_or(|r| r == "idle") {
            return;
        }
        let target = match &f.service.svc.handler {
            Handler::Forward(fwd) => Some(fwd.target),
            _ => None,
        };
        self.log.event(Event::Done {
            service: &f.service.name,
            peer: f.peer.filter(|_| log.host),
            via: f.via.filter(|_| log.host),
            upstream: target,
            duration_ms: log.duration.then(|| f.started.elapsed().as_millis()),
            bytes_in: log.traffic.then_some(up),
            bytes_out: log.traffic.then_some(down),
            status: None,
            reason,
        });
    }

    /// The idle sweep's part for forwards (see `sweep_idle`): close those
    /// silent for their `idle_timeout`; the shortest period among the
    /// others goes into `next`.
    pub(super) fn sweep_forwards(&mut self, now: Instant, next: &mut Option<std::time::Duration>) {
        let mut idle = Vec::new();
        for (cid, f) in self.forwards.iter_mut() {
            let timeout = f.service.svc.limits.idle_timeout;
            let Some(period) = crate::idle::sweep_period(timeout) else {
                continue;
            };
            if std::mem::take(&mut f.active) || f.connecting {
                f.quiet_since = now;
            } else if now.saturating_duration_since(f.quiet_since) >= timeout {
                idle.push(*cid);
                continue;
            }
            *next = Some(next.map_or(period, |p| p.min(period)));
        }
        for cid in idle {
            self.end_forward(cid, End::Idle);
        }
    }
}

/// A non-blocking connect to `target`: the socket, and whether it is
/// connected already (else in progress).
fn connect(target: SocketAddr) -> std::io::Result<(Socket, bool)> {
    let s = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    // The relay writes what it has at once; Nagle would only delay the
    // small writes of an interactive session behind an unacked one.
    let _ = s.set_tcp_nodelay(true);
    match s.connect(&target.into()) {
        Ok(()) => Ok((s, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok((s, false)),
        Err(e) => Err(e),
    }
}

/// An I/O error as its plain description ("Connection refused").
fn errno_text(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(
        || e.to_string(),
        |n| nix::errno::Errno::from_raw(n).desc().to_owned(),
    )
}
