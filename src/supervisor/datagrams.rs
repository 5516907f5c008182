//! Datagram listeners: internal services answered on the loop, and dgram
//! `nowait` services relayed to a handler per datagram.
//!
//! `answer_datagrams` answers an internal service's UDP inline after the
//! reflection checks and the per-peer reply limit (`flood::PeerLimit`, a
//! fixed table). `relay_datagrams` (dgram `nowait`) receives each
//! datagram, writes it to a memfd (the handler's stdin) and gives the
//! handler a pipe as stdout; `on_reply`/`reap` (`handlers.rs`) collect the
//! output and send it to the peer from the service's socket
//! (`crate::relay`).
//!
//! The reply's source address: on a UDP listener bound to a wildcard
//! address whose replies the supervisor sends (the two above), the socket
//! reports each datagram's local address (`Listener::arrival`, set by
//! `track_arrival` at bind and when a reload changes the mode); `receive`
//! reads it with `recvmsg` and the reply goes out with `sys::send_from`
//! (`sendmsg` with `IP_PKTINFO`/`IPV6_PKTINFO`, the control message on the
//! stack), so it leaves from the address the client sent to. A listener on
//! one address keeps `recvfrom`/`sendto`; a `wait` handler gets the socket
//! without the option.

use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::socket::SockaddrStorage;

use crate::sys::Arrival;

use crate::config::SocketKind;
use crate::flood::Verdict;
use crate::internal::Internal;
use crate::log::{Event, Log};
use crate::refusal::Refusal;
use crate::relay::{self, Reply};
use crate::spawn::{self, Ends, Invocation};

use super::handlers::Extras;
use super::listeners::Listener;
use super::{Supervisor, BATCH};

impl Supervisor {
    /// An internal service over UDP: answer every queued datagram, in order.
    pub(super) fn answer_datagrams(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let (len, peer, arrival) = match receive(l, &mut self.dgram_buf, &mut self.log) {
                Received::Datagram(len, peer, arrival) => (len, peer, arrival),
                Received::Skip => continue,
                Received::Done => return,
            };
            let running = Rc::clone(&l.service);
            let port = peer.port();
            let now = Instant::now();
            let reason =
                // 0 and the privileged ports (the well-known internal ones
                // among them), and the ports of our own internal services:
                // two of them cannot be aimed at each other.
                if port < 1024 || self.internal_ports.contains(&port) {
                    Some(Refusal::SourcePort)
                } else if let Err(d) = running
                    .svc
                    .access
                    .check(peer.ip(), crate::sys::local_minute_of_day)
                {
                    Some(Refusal::from(d))
                } else if let Verdict::Drop(report) =
                    self.peers
                        .check(peer, running.svc.limits.peer_reply_rate, now)
                {
                    if let Some(n) = report {
                        self.log.event(Event::ReplyDropped {
                            service: &running.name,
                            peer: spawn::unmap(peer),
                            replies: n,
                        });
                    }
                    continue;
                } else if !running.take_reply(now) {
                    Some(Refusal::ReplyRate)
                } else {
                    None
                };
            if let Some(reason) = reason {
                self.refused(&running, Some(spawn::unmap(peer)), &reason);
                continue;
            }
            let Some(reply) = kind.reply(&self.dgram_buf[..len], &mut self.reply_buf) else {
                continue;
            };
            // A full send buffer drops this reply, as the network may.
            let _ = match arrival {
                Some(from) => crate::sys::send_from(l.socket.as_fd(), reply, peer, from),
                None => l.socket.send_to(reply, &peer.into()),
            };
            let stats = &mut running.load.borrow_mut().stats.total;
            stats.accepted += 1;
            stats.bytes_in += len as u64;
            stats.bytes_out += reply.len() as u64;
        }
    }

    /// dgram nowait: a handler per datagram, its stdout the reply.
    pub(super) fn relay_datagrams(&mut self, id: u64) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let (len, peer, arrival) = match receive(l, &mut self.dgram_buf, &mut self.log) {
                Received::Datagram(len, peer, arrival) => (len, peer, arrival),
                Received::Skip => continue,
                Received::Done => return,
            };
            let running = Rc::clone(&l.service);
            // dgram nowait is refused on UNIX-domain sockets at load.
            let Some(mut local) = l.local else {
                return;
            };
            if let Some(a) = arrival {
                local.set_ip(a.ip()); // the handler's TCPLOCALIP
            }
            if reflected(peer, local, &self.internal_ports) {
                self.refused(&running, Some(spawn::unmap(peer)), &Refusal::SourcePort);
                continue;
            }
            let source = match self.admit(&running, peer) {
                Ok(source) => source,
                Err(why) => {
                    self.refused(&running, Some(spawn::unmap(peer)), &why);
                    continue;
                }
            };
            let request = match relay::request_file(&self.dgram_buf[..len]) {
                Ok(f) => f,
                Err(e) => {
                    self.log.event(Event::Error {
                        service: Some(&running.name),
                        pid: None,
                        peer: Some(peer),
                        msg: &format!("unable to store request: {e}"),
                        suppressed: None,
                    });
                    continue;
                }
            };
            let (out_r, out_w) = match spawn::reader_pipe() {
                Ok(p) => p,
                Err(e) => {
                    self.log.event(Event::Error {
                        service: Some(&running.name),
                        pid: None,
                        peer: Some(peer),
                        msg: &e.to_string(),
                        suppressed: None,
                    });
                    continue;
                }
            };
            let inv = Invocation::Peer {
                input: request.as_raw_fd(),
                output: out_w.as_raw_fd(),
                ends: Ends::Ip {
                    kind: SocketKind::Dgram,
                    local,
                    peer: Some(peer),
                },
            };
            let reply = Reply {
                listener: id,
                peer,
                from: arrival,
                out: out_r,
                buf: Vec::new(),
                dropped: 0,
            };
            let extras = Extras {
                reply: Some(reply),
                ..Extras::default()
            };
            if !self.start(&running, &inv, Some(peer), source, extras) {
                self.spawn_backoff(id);
            }
            if !self.is_open(id) {
                return; // at a limit: the socket buffer holds the rest
            }
        }
    }
}

/// What one `recvfrom` on a datagram listener gave.
enum Received {
    /// A datagram of this length, from this peer, in the buffer; and the
    /// address it came to, on a listener that asks (`Listener::arrival`).
    Datagram(usize, SocketAddr, Option<Arrival>),
    /// Nothing to answer (interrupted, or no IP sender): try the next.
    Skip,
    /// The queue is empty, or receiving failed (logged).
    Done,
}

/// Receive the next datagram on `l` into `buf`.
/// Whether a reply to a datagram from `peer`, which came to `local`, would
/// come back into oxinetd: from port 0 (no reply can go there), or from
/// this host at the listener's own port (the handler's reply would arrive
/// as the next request, and so on forever: found by `bench/soak`) or at an
/// internal UDP service's port (the two would answer each other). Such a
/// datagram is refused with `reason=source-port` and no handler runs.
pub(super) fn reflected(peer: SocketAddr, local: SocketAddr, internal_ports: &[u16]) -> bool {
    let (peer, local) = (spawn::unmap(peer), spawn::unmap(local));
    if peer.port() == 0 {
        return true;
    }
    let here = peer.ip().is_loopback() || peer.ip() == local.ip();
    here && (peer.port() == local.port() || internal_ports.contains(&peer.port()))
}

fn receive(l: &Listener, buf: &mut [u8], log: &mut Log) -> Received {
    let got = if l.arrival {
        crate::sys::recv_arrival(l.socket.as_fd(), buf)
    } else {
        nix::sys::socket::recvfrom::<SockaddrStorage>(l.socket.as_raw_fd(), buf)
            .map(|(len, from)| (len, from, None))
    };
    match got {
        Ok((len, from, arrival)) => match from.as_ref().and_then(crate::sys::socket::ip_of) {
            Some(peer) => Received::Datagram(len, peer, arrival),
            None => Received::Skip,
        },
        Err(nix::errno::Errno::EAGAIN) => Received::Done,
        Err(nix::errno::Errno::EINTR) => Received::Skip,
        Err(e) => {
            let msg = format!("unable to receive: {e}");
            log.event(Event::service_error(&l.service.name, &msg));
            Received::Done
        }
    }
}
