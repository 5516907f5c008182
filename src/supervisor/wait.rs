//! `wait` services: the handler gets the listening socket itself; the
//! listener is re-armed when it exits, or paused if handlers keep exiting
//! without taking the work they were started for.
//!
//! `hand_over_socket` gives the listening socket itself (also on fd 3 with
//! `LISTEN_*` for stream), and the listener is taken out of the poll set
//! (`Busy`) until its handler is reaped; then it is re-armed. For
//! datagrams, the pending datagram is peeked before and after: three
//! handlers in a row that leave it unread pause the service (`Paused`,
//! `loop_pause`) instead of looping. For streams the accept queue's length
//! is read before and after (`sys::accept_queue`, `TCP_INFO` on the
//! listener): three handlers in a row that exit within a second and leave
//! it non-empty and no shorter pause it the same way (UNIX-domain: still
//! pending after a run of under a second).

use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::socket::MsgFlags;
use socket2::Socket;

use crate::children::Probe;
use crate::config::SocketKind;
use crate::log::Event;
use crate::refusal::Refusal;
use crate::spawn::{self, Ends, Invocation};

use super::handlers::Extras;
use super::listeners::{pending, ListenState, Pause};
use super::Supervisor;

/// How long a listener rests after the system refused us resources.
const RESOURCE_PAUSE: Duration = Duration::from_secs(1);

/// Consecutive `wait` handlers exiting without reading their datagram
/// (or accepting a connection) before the service is considered looping.
const LOOP_LIMIT: u32 = 3;

/// A stream `wait` handler on a UNIX-domain socket (whose queue length the
/// kernel does not tell) that exits sooner than this with connections still
/// pending counts as one that accepted nothing.
const LOOP_QUICK: Duration = Duration::from_secs(1);

/// Bytes of a pending datagram compared to tell whether a handler read it.
const PROBE_BYTES: usize = 64;

impl Supervisor {
    /// wait: the handler gets the socket; stop watching it until it exits.
    pub(super) fn hand_over_socket(&mut self, id: u64) {
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        let running = Rc::clone(&l.service);
        let (kind, local) = (running.svc.kind, l.local);
        let path = l.file.as_ref().map(|f| Rc::clone(&f.path));
        let probe = if kind == SocketKind::Dgram {
            match probe(&l.socket) {
                Some(p) => p,
                None => return, // nothing pending after all
            }
        } else if path.is_some() {
            Probe::Queue(None)
        } else {
            Probe::Queue(crate::sys::accept_queue(l.socket.as_fd()))
        };
        let peer = match probe {
            Probe::Datagram { peer, .. } => peer,
            Probe::Queue(_) => None,
        };
        if let Some(p) = peer {
            // A refused sender's datagram is taken off the queue here: the
            // handler never sees it.
            if let Err(d) = running
                .svc
                .access
                .check(p.ip(), crate::sys::local_minute_of_day)
            {
                let mut byte = [0u8; 1];
                let _ =
                    nix::sys::socket::recv(l.socket.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT);
                self.refused(&running, Some(spawn::unmap(p)), &d.into());
                return;
            }
            // The handler would answer it back into this socket (or into
            // an internal service): taken off the queue as well.
            if local
                .is_some_and(|local| super::datagrams::reflected(p, local, &self.internal_ports))
            {
                let mut byte = [0u8; 1];
                let _ =
                    nix::sys::socket::recv(l.socket.as_raw_fd(), &mut byte, MsgFlags::MSG_DONTWAIT);
                self.refused(&running, Some(spawn::unmap(p)), &Refusal::SourcePort);
                return;
            }
        }
        let fd = l.socket.as_raw_fd();
        let ends = match (&path, local) {
            (Some(path), _) => Ends::Unix { path, cred: None },
            (None, Some(local)) => Ends::Ip { kind, local, peer },
            (None, None) => return,
        };
        let inv = Invocation::Socket {
            socket: fd,
            ends,
            activation: kind.is_connected(),
        };
        let extras = Extras {
            holds: Some(id),
            probe: Some(probe),
            ..Extras::default()
        };
        if self.start(&running, &inv, peer, None, extras) {
            self.arm(id, ListenState::Busy);
        } else {
            self.arm(
                id,
                ListenState::Paused(Instant::now() + RESOURCE_PAUSE, Pause::Resources),
            );
        }
    }

    /// A `wait` handler exited: re-arm its listener, unless handlers keep
    /// exiting without reading the datagram (or accepting a connection)
    /// they were started for (which would otherwise be a spawn loop): then
    /// pause the service.
    pub(super) fn release(&mut self, id: u64, started_for: Option<&Probe>, started: Instant) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let unread = match started_for {
            None => false,
            Some(p @ Probe::Datagram { .. }) => probe(&l.socket).as_ref() == Some(p),
            Some(Probe::Queue(before)) => unaccepted(&l.socket, *before, started),
        };
        if !unread {
            l.idle_exits = 0;
            self.arm(id, ListenState::Armed);
            return;
        }
        l.idle_exits += 1;
        if l.idle_exits < LOOP_LIMIT {
            self.arm(id, ListenState::Armed);
            return;
        }
        let pause = self.global.loop_pause;
        self.log.event(Event::Looping {
            service: &l.service.name,
            accepting: matches!(started_for, Some(Probe::Queue(_))),
            exits: l.idle_exits,
            paused: pause,
        });
        l.idle_exits = 0;
        self.arm(
            id,
            ListenState::Paused(Instant::now() + pause, Pause::Looping),
        );
    }
}

/// The sender and first bytes of the pending datagram, without taking it.
fn probe(socket: &Socket) -> Option<Probe> {
    let mut head = [0u8; PROBE_BYTES];
    let n = nix::sys::socket::recv(
        socket.as_raw_fd(),
        &mut head,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    Some(Probe::Datagram {
        peer: socket.peek_sender().ok().and_then(|a| a.as_socket()),
        head: head[..n].to_vec(),
    })
}

/// Whether a stream `wait` handler started at `started`, when `before`
/// connections were queued, exited without accepting any: it exited within
/// `LOOP_QUICK` (a handler that spins exits at once; one that ran longer
/// is no tight loop, and may have served while more arrived), and the
/// queue is not empty and not shorter than it was. Where the kernel does
/// not tell the length (UNIX-domain), connections still pending count.
fn unaccepted(socket: &Socket, before: Option<u32>, started: Instant) -> bool {
    if started.elapsed() >= LOOP_QUICK {
        return false;
    }
    match before {
        Some(before) => {
            crate::sys::accept_queue(socket.as_fd()).is_some_and(|now| now > 0 && now >= before)
        }
        None => pending(socket),
    }
}
