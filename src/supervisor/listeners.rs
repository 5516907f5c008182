//! Listeners and arming: binding and closing a service's sockets, their
//! states (armed, busy, paused), and `sync`, which keeps epoll watching
//! exactly the listeners that may take work now (backpressure by not
//! watching: the kernel's backlog is the queue).
//!
//! After every loop iteration `sync` recomputes whether a listener should
//! be watched: its own state (armed, busy with a `wait` handler, paused
//! after looping or exhaustion), its service's `instances` and rate pause,
//! and `max_processes`. It looks only at the listeners something happened
//! to (`Stale`: a state change, a handler of the service started or ended,
//! a pause began or ended; all of them after a reload or when
//! `max_processes` is reached or left), so a turn costs the same with 500
//! services as with one. Pauses end through the heap of timers, checked
//! against the current state when due. Only a listener whose answer
//! changed costs an `epoll_ctl`. A listener that is not watched leaves its
//! connections in the kernel's backlog: nothing is accepted and dropped.
//!
//! A service's `Load` is shared with its running handlers and carried to
//! the next config by name; a removed service's `Load` stays reachable by
//! name (`limits::Retired`, a weak reference) while its handlers hold it,
//! so a service removed and added again still counts them.

use std::cmp::Reverse;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use socket2::Socket;

use crate::config::{BindAddr, ListenKey, WaitMode};
use crate::listener;
use crate::log::Event;
use crate::reload::ListenSlot;
use crate::spawn;

use super::{Mode, Resume, Running, Supervisor, Token, BATCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ListenState {
    /// Watched for connections or datagrams.
    Armed,
    /// A `wait` handler owns the socket.
    Busy,
    /// Not watched until then, and why.
    Paused(Instant, Pause),
}

/// Why a listener is paused, as `status` tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pause {
    /// `wait` handlers kept exiting without taking their work.
    Looping,
    /// Accepting or spawning failed for want of descriptors or memory.
    Resources,
}

impl Pause {
    pub(super) fn why(self) -> &'static str {
        match self {
            Pause::Looping => "looping: wait handlers exit without reading",
            Pause::Resources => "out of resources (accept or spawn failed)",
        }
    }
}

/// A bound socket and the service it serves now.
pub(super) struct Listener {
    pub(super) id: u64,
    pub(super) key: ListenKey,
    pub(super) socket: Socket,
    /// The address actually bound (the port when 0 was asked); `None` for
    /// a UNIX-domain socket.
    pub(super) local: Option<SocketAddr>,
    /// True when bound to one address, so `local` is every connection's.
    pub(super) specific: bool,
    /// UDP on a wildcard address whose replies the supervisor sends
    /// (internal, dgram `nowait`): each datagram is received with the
    /// local address it came to, and answered from it (`sys::Arrival`).
    pub(super) arrival: bool,
    /// A UNIX-domain socket's file, removed when the listener closes.
    pub(super) file: Option<listener::BoundFile>,
    pub(super) service: Rc<Running>,
    pub(super) state: ListenState,
    /// Consecutive `wait` handlers that exited without reading.
    pub(super) idle_exits: u32,
    /// Whether epoll reports its readiness now (see `sync`).
    pub(super) watching: bool,
    /// Current pause after resource exhaustion; zero when healthy.
    pub(super) backoff: Duration,
}

impl Listener {
    pub(super) fn slot(&self) -> ListenSlot {
        ListenSlot::new(self.key.clone(), &self.service.svc.name)
    }
}

impl Supervisor {
    /// Bind `key` for `running`; `share`: beside a socket on the same port
    /// that is about to close (see `listener::bind_alongside`).
    pub(super) fn add_listener(
        &mut self,
        running: &Rc<Running>,
        key: &ListenKey,
        share: bool,
    ) -> io::Result<u64> {
        let nonblocking = !blocking(running.mode);
        let file = &running.svc.socket_file;
        let given = self.given.remove(&(running.name.to_string(), key.clone()));
        let inherited = given.as_ref().map(|g| g.fd);
        let (socket, id) = match given {
            Some(g) => {
                g.socket.set_nonblocking(nonblocking)?;
                listener::adjust_given(&g.socket, key)?;
                (g.socket, None)
            }
            None if share => listener::bind_alongside(key, nonblocking, file)?,
            None => listener::bind(key, nonblocking, file)?,
        };
        // A given UNIX-domain socket's file is not ours to remove.
        let (local, file) = match (&key.addr, id) {
            (BindAddr::Unix(path), Some(id)) => {
                let path = Rc::from(path.as_path());
                (None, Some(listener::BoundFile { path, id }))
            }
            (BindAddr::Unix(_), None) => (None, None),
            _ => {
                let local = socket.local_addr()?.as_socket();
                (
                    Some(local.ok_or_else(|| io::Error::other("not an IP socket"))?),
                    None,
                )
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        let shown = match (&key.addr, local) {
            (BindAddr::Unix(path), _) => path.display().to_string(),
            (_, Some(a)) => spawn::unmap(a).to_string(),
            (_, None) => String::new(),
        };
        let mut l = Listener {
            id,
            key: key.clone(),
            socket,
            local,
            file,
            specific: matches!(key.addr, BindAddr::Ip(a) if !a.ip().is_unspecified()),
            arrival: false,
            service: Rc::clone(running),
            state: ListenState::Armed,
            idle_exits: 0,
            watching: true,
            backoff: Duration::ZERO,
        };
        self.track_arrival(&mut l);
        self.epoll.add(
            l.socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, Token::Listener(id).encode()),
        )?;
        self.log.event(Event::Listen {
            service: &running.name,
            proto: key.proto_name(),
            addr: &shown,
            wait: running.svc.wait == WaitMode::Wait,
            inherited,
        });
        self.listeners.insert(id, Box::new(l));
        Ok(id)
    }

    pub(super) fn bind_failed(&mut self, name: &str, key: &ListenKey, e: &io::Error) {
        let msg = format!("unable to bind {key}: {e}");
        self.log.event(Event::service_error(name, &msg));
        self.bind_failures
            .push((Rc::from(name), key.clone(), e.to_string()));
    }

    /// Receive with the arrival address on a wildcard UDP listener whose
    /// replies the supervisor sends, and not otherwise: a `wait` handler
    /// gets the socket as it was bound (a reload may change the mode).
    pub(super) fn track_arrival(&mut self, l: &mut Listener) {
        let want = !l.specific
            && l.key.kind == crate::config::SocketKind::Dgram
            && matches!(l.service.mode, Mode::Relay | Mode::InternalDgram(_));
        let Some(local) = l.local.filter(|_| want != l.arrival) else {
            return;
        };
        match crate::sys::want_arrival(l.socket.as_fd(), local.is_ipv6(), want) {
            Ok(()) => l.arrival = want,
            Err(e) => {
                let msg = format!("unable to set IP_PKTINFO (replies leave from any address): {e}");
                self.log.event(Event::service_error(&l.service.name, &msg));
            }
        }
    }

    /// Blocking or not, for a listener whose service changed mode on reload.
    pub(super) fn set_mode(&mut self, l: &Listener) {
        let result = l.socket.set_nonblocking(!blocking(l.service.mode));
        if let Err(e) = result {
            let msg = e.to_string();
            self.log.event(Event::service_error(&l.service.name, &msg));
        }
    }

    /// A listener a reload removes: first serve the connections already in
    /// its accept queue (made while it was the service's), so that closing
    /// it resets none of them; then close it. `handed`: a new socket on
    /// the same port listens already, so new clients are sent there (their
    /// SYN dropped here, to be sent again) while the queue is drained.
    pub(super) fn close_listener(&mut self, l: Listener, handed: bool) {
        let _ = self.epoll.delete(l.socket.as_fd());
        self.log.event(Event::Close {
            service: &l.service.name,
            addr: &l.key,
        });
        if handed {
            let _ = crate::sys::refuse_syn(l.socket.as_fd());
        }
        let (id, mode) = (l.id, l.service.mode);
        if l.state != ListenState::Armed
            || !matches!(mode, Mode::Accept | Mode::InternalStream(_) | Mode::Forward)
        {
            return;
        }
        self.listeners.insert(id, Box::new(l));
        // Bounded: the backlog holds at most BACKLOG connections.
        for _ in 0..=listener::BACKLOG as usize / BATCH {
            let queued = self.listeners.get(&id).is_some_and(|l| pending(&l.socket));
            if !queued || !self.is_open(id) {
                break;
            }
            match mode {
                Mode::InternalStream(kind) => self.accept_internal(id, kind),
                Mode::Forward => self.accept_forward(id),
                _ => self.accept_connections(id),
            }
        }
        self.listeners.remove(&id);
    }

    /// Set a listener's state; `sync` then watches it or stops watching.
    pub(super) fn arm(&mut self, id: u64, state: ListenState) {
        if let Some(l) = self.listeners.get_mut(&id) {
            l.state = state;
            self.stale.listeners.push(id);
            if let ListenState::Paused(until, _) = state {
                self.timers.push(Reverse((until, Resume::Listener(id))));
            }
        }
    }

    /// A service's load changed: `sync` looks at its listeners again.
    pub(super) fn touch(&mut self, service: &Rc<str>) {
        if !self.stale.services.contains(service) {
            self.stale.services.push(Rc::clone(service));
        }
    }

    /// Whether listener `l` should take connections or datagrams now: its
    /// own state, its service's `instances` and cps pause, and, for
    /// services that spawn, `max_processes`.
    pub(super) fn open(l: &Listener, processes: usize, max_processes: usize, now: Instant) -> bool {
        let svc = &l.service;
        let load = svc.load.borrow();
        l.state == ListenState::Armed
            && !load.paused(now)
            && (matches!(svc.mode, Mode::InternalDgram(_) | Mode::HandOver)
                || !load.full(svc.svc.limits.max_instances(svc.spawns())))
            && !(svc.spawns() && processes >= max_processes)
    }

    pub(super) fn is_open(&self, id: u64) -> bool {
        self.listeners.get(&id).is_some_and(|l| {
            Supervisor::open(
                l,
                self.children.len(),
                self.global.max_processes,
                Instant::now(),
            ) && !(self.upgrade_quiet && l.service.svc.proxy.is_some())
        })
    }

    /// Make epoll watch exactly the listeners that are open. Run once per
    /// loop iteration; it looks only at the listeners `stale` names, and
    /// makes a syscall only for one whose answer changed.
    pub(super) fn sync(&mut self) {
        let mut ids = std::mem::take(&mut self.stale.listeners);
        if std::mem::take(&mut self.stale.all) {
            ids.clear();
            ids.extend(self.listeners.keys());
            self.stale.services.clear();
        }
        for service in self.stale.services.drain(..) {
            if let Some(of) = self.by_service.get(&service) {
                ids.extend_from_slice(of);
            }
        }
        let now = Instant::now();
        let processes = self.children.len();
        let quiet = self.upgrade_quiet;
        for id in ids.drain(..) {
            let Some(l) = self.listeners.get_mut(&id) else {
                continue;
            };
            let open = Supervisor::open(l, processes, self.global.max_processes, now)
                && !(quiet && l.service.svc.proxy.is_some());
            if open == l.watching {
                continue;
            }
            let flags = if open {
                EpollFlags::EPOLLIN
            } else {
                EpollFlags::empty()
            };
            let mut ev = EpollEvent::new(flags, Token::Listener(l.id).encode());
            match self.epoll.modify(l.socket.as_fd(), &mut ev) {
                Ok(()) => l.watching = open,
                Err(e) => {
                    let msg = format!("epoll: {e}");
                    self.log.event(Event::service_error(&l.service.name, &msg));
                }
            }
        }
        // Kept for its capacity.
        self.stale.listeners = ids;
    }
}

/// A `wait` handler shares the socket's file status and expects a blocking
/// socket, as under every inetd; the loop itself only ever accepts or
/// receives until EAGAIN.
pub(super) fn blocking(mode: Mode) -> bool {
    mode == Mode::HandOver
}

/// Whether connections wait in a listening stream socket's queue: its
/// length for TCP, readiness where the kernel does not tell (UNIX-domain).
pub(super) fn pending(socket: &Socket) -> bool {
    if let Some(n) = crate::sys::accept_queue(socket.as_fd()) {
        return n > 0;
    }
    let mut fds = [nix::poll::PollFd::new(
        socket.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
}
