//! stream nowait: accepting connections, a handler for each; running out
//! of descriptors or processes while accepting.
//!
//! A readable listener (`on_listener`) → `accept_connections` accepts up
//! to 64 connections (accept4, CLOEXEC) until EAGAIN or a limit. Each peer
//! goes through `admit` (`admission.rs`): access rules, then
//! `per_source_rate`, `per_source` and `cps`/`rate` against the service's
//! `Load`; a refused one (`Refusal`) gets `banner_fail` and a close
//! (`refuse_stream`), and `refused` logs `Event::Refuse`. On a UNIX-domain
//! listener (`Accepted::Unix`, `start_local`) there is no address: only
//! the service's limits apply, and the peer's `SO_PEERCRED` goes to the
//! handler's environment and the `start` line.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::Socket;

use crate::config::SocketKind;
use crate::listener;
use crate::log::Event;
use crate::spawn::{Ends, Invocation};

use super::handlers::Extras;
use super::listeners::{ListenState, Pause};
use super::{Running, Supervisor, BATCH};

/// Backoff of a listener while fds or processes are exhausted: it doubles
/// between these.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where an accepted connection came from and came in.
pub(super) enum Accepted {
    Ip {
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// On a UNIX-domain listener.
    Unix,
}

impl Supervisor {
    /// stream nowait: accept until the queue is empty, a handler each.
    pub(super) fn accept_connections(&mut self, id: u64) {
        for _ in 0..BATCH {
            if !self.is_open(id) {
                return; // at a limit: the backlog holds the rest
            }
            let Some((conn, accepted)) = self.accept_one(id, false) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            let Accepted::Ip { peer, local } = accepted else {
                self.start_local(id, &running, conn);
                continue;
            };
            if running.svc.proxy.is_some() {
                self.proxied(id, running, conn, peer, local);
                continue;
            }
            self.start_peer(id, &running, conn, peer, local, None);
        }
    }

    /// A TCP connection from `peer`: admitted, then its handler started.
    /// `via`: the balancer and the header's authority, when `peer` is
    /// what a PROXY header said (`proxied`).
    pub(super) fn start_peer(
        &mut self,
        id: u64,
        running: &Rc<Running>,
        conn: Socket,
        peer: SocketAddr,
        local: SocketAddr,
        via: Option<(SocketAddr, Option<&[u8]>)>,
    ) {
        let balancer = via.map(|(b, _)| b);
        let source = match self.admit(running, peer) {
            Ok(source) => source,
            Err(why) => {
                self.refuse_stream_via(running, conn, Some(peer), balancer, &why);
                return;
            }
        };
        let fd = conn.as_raw_fd();
        let ends = match via {
            None => Ends::Ip {
                kind: SocketKind::Stream,
                local,
                peer: Some(peer),
            },
            Some((via, authority)) => Ends::Proxied {
                local,
                peer,
                via,
                authority,
            },
        };
        let inv = Invocation::Peer {
            input: fd,
            output: fd,
            ends,
        };
        let extras = Extras {
            via: balancer,
            ..Extras::default()
        };
        if !self.start(running, &inv, Some(peer), source, extras) {
            self.spawn_backoff(id);
        }
        // `conn` is closed here: the handler has its own copy.
    }

    /// A connection on a UNIX-domain listener: no address to check, only
    /// the service's limits; the handler is told the peer's credentials.
    pub(super) fn start_local(&mut self, id: u64, running: &Rc<Running>, conn: Socket) {
        let source = match self.admit_load(running, None) {
            Ok(source) => source,
            Err(why) => {
                self.refuse_stream(running, conn, None, &why);
                return;
            }
        };
        let Some(path) = self
            .listeners
            .get(&id)
            .and_then(|l| l.file.as_ref())
            .map(|f| Rc::clone(&f.path))
        else {
            return;
        };
        let cred =
            nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials).ok();
        let fd = conn.as_raw_fd();
        let inv = Invocation::Peer {
            input: fd,
            output: fd,
            ends: Ends::Unix { path: &path, cred },
        };
        let extras = Extras {
            cred,
            ..Extras::default()
        };
        if !self.start(running, &inv, None, source, extras) {
            self.spawn_backoff(id);
        }
    }

    /// Accept one connection on listener `id`: close-on-exec, and
    /// non-blocking when the loop serves it itself (`nonblocking`; a
    /// handler gets it blocking). `None` when there is none to take now
    /// (the queue is empty, or accepting must pause).
    pub(super) fn accept_one(&mut self, id: u64, nonblocking: bool) -> Option<(Socket, Accepted)> {
        let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
        loop {
            let l = self.listeners.get(&id)?;
            let (conn, peer) = match l.socket.accept4(flags) {
                Ok((c, p)) => (c, p),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return None,
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        self.exhausted(id, &e);
                        return None;
                    }
                    _ => {
                        let name = Rc::clone(&l.service.name);
                        let msg = format!("unable to accept: {e}");
                        self.log.event(Event::service_error(&name, &msg));
                        return None;
                    }
                },
            };
            if !l.backoff.is_zero() {
                let name = Rc::clone(&l.service.name);
                self.log.event(Event::Recovered { service: &name });
                if let Some(l) = self.listeners.get_mut(&id) {
                    l.backoff = Duration::ZERO;
                }
            }
            let l = self.listeners.get(&id)?;
            let Some(bound) = l.local else {
                return Some((conn, Accepted::Unix));
            };
            let Some(peer) = listener::ip_addr(&peer) else {
                continue;
            };
            let local = if l.specific {
                bound
            } else {
                conn.local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(bound)
            };
            return Some((conn, Accepted::Ip { peer, local }));
        }
    }

    /// Out of descriptors or memory while accepting: take the waiting
    /// connection off the queue with the reserve fd and close it (so the
    /// client is told at once, and the loop does not spin on a listener
    /// that stays readable), then pause the listener with a growing
    /// backoff. Logged once per episode; `recovered` ends it.
    pub(super) fn exhausted(&mut self, id: u64, e: &io::Error) {
        if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) {
            self.spare_fd = None;
            if let Some(l) = self.listeners.get(&id) {
                drop(l.socket.accept());
            }
            self.spare_fd = std::fs::File::open("/dev/null").ok();
        }
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let first = l.backoff.is_zero();
        l.backoff = (l.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        let pause = l.backoff;
        let name = Rc::clone(&l.service.name);
        self.arm(
            id,
            ListenState::Paused(Instant::now() + pause, Pause::Resources),
        );
        if first {
            let msg = format!(
                "unable to accept: {e}; pausing, backing off up to {}ms",
                MAX_BACKOFF.as_millis()
            );
            self.log.event(Event::Exhausted {
                service: &name,
                msg: &msg,
            });
        }
    }

    /// Spawning failed (clone: EAGAIN, ENOMEM): rest the listener a little
    /// rather than fail every queued connection at once.
    pub(super) fn spawn_backoff(&mut self, id: u64) {
        if let Some(l) = self.listeners.get_mut(&id) {
            l.backoff = (l.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
            let until = Instant::now() + l.backoff;
            self.arm(id, ListenState::Paused(until, Pause::Resources));
        }
    }
}
