//! Handlers: spawning and recording one, its stderr lines, a dgram
//! `nowait` handler's reply, and reaping.
//!
//! `start`: the parent closes its copy of the connection, registers the
//! stderr pipe in epoll, logs `Event::Start`, and keeps a `Child` record
//! by pid. If the service has a `timeout` (in any mode: `start` is where
//! every handler is recorded), one entry goes into the timer heap, named
//! by pid and a serial; when it comes up and the same handler still runs,
//! its group gets SIGTERM (`Event::Timeout`), and `kill_grace` later
//! SIGKILL (`Children::overdue`).
//!
//! While it runs, stderr lines are logged as they arrive (`on_stderr`), at
//! most 64 KiB of a pipe per loop turn, through the handler's and the
//! service's token buckets (`flood`); the excess is counted, not logged.
//! Past 1 MiB a second the pipe leaves the poll set for 100 ms
//! (`Resume::Stderr`), so a flooding handler waits on its pipe.
//!
//! Exit: SIGCHLD, let in only during the loop's wait, ends it with `EINTR`
//! and its flag set; `reap` collects every exited child: the last stderr
//! lines, the failure if any, kept in its slot (`unable to <step> for
//! handler: <errno> (server PATH, user NAME)`, the program and user from
//! the `Plan`, shared with the `Child`), then `Event::Exit` with status or
//! signal and duration.

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::time::Instant;

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::UnixCredentials;

use crate::children::{self, Child, Ending, Probe, Stage, StderrPipe};
use crate::flood;
use crate::log::Event;
use crate::relay::{self, Reply};
use crate::spawn::{self, Invocation};

use super::{Resume, Running, Supervisor, Token};

/// The optional parts of a handler start.
#[derive(Default)]
pub(super) struct Extras {
    /// For `wait`: the listener the handler holds.
    pub(super) holds: Option<u64>,
    /// For `wait`: the datagram or the accept queue it was started for.
    pub(super) probe: Option<Probe>,
    /// For dgram `nowait`: where its reply goes.
    pub(super) reply: Option<Reply>,
    /// For a UNIX-domain connection: who connected, for the log.
    pub(super) cred: Option<UnixCredentials>,
    /// For a `proxy_protocol` connection: the balancer, for the log.
    pub(super) via: Option<SocketAddr>,
}

impl Supervisor {
    /// Spawn a handler and record it. False if it could not be started.
    pub(super) fn start(
        &mut self,
        running: &Rc<Running>,
        inv: &Invocation<'_>,
        peer: Option<SocketAddr>,
        source: Option<IpAddr>,
        extras: Extras,
    ) -> bool {
        let Some(plan) = running.plan.as_ref() else {
            return false;
        };
        let spawned = match self.spawner.spawn(plan, inv) {
            Ok(s) => s,
            Err(e) => {
                running.load.borrow_mut().stats.total.spawn_failed += 1;
                let admitted = self.throttled(&running.name, &running.load);
                if let Some(suppressed) = admitted {
                    self.log.event(Event::Error {
                        service: Some(&running.name),
                        pid: None,
                        peer: peer.map(spawn::unmap),
                        msg: &e.to_string(),
                        suppressed: Some(suppressed),
                    });
                }
                return false;
            }
        };
        let pid = spawned.pid;
        let stderr = spawned.stderr.map(StderrPipe::new);
        if let Some(s) = &stderr {
            self.watch(s.fd.as_fd(), Token::Stderr(pid));
        }
        if let Some(r) = &extras.reply {
            self.watch(r.out.as_fd(), Token::Reply(pid));
        }
        let log = running.svc.log;
        if log.any_success() {
            let cred = extras.cred.filter(|_| log.host);
            self.log.event(Event::Start {
                service: &running.name,
                pid: log.pid.then_some(pid),
                peer: peer.filter(|_| log.host).map(spawn::unmap),
                via: extras.via.filter(|_| log.host).map(spawn::unmap),
                peer_uid: cred.map(|c| c.uid()),
                peer_pid: cred.map(|c| c.pid()),
            });
        }
        {
            let mut load = running.load.borrow_mut();
            load.started(source);
            load.stats.total.spawned += 1;
        }
        self.touch(&running.name);
        let started = Instant::now();
        let limits = &running.svc.limits;
        let deadline = limits
            .timeout
            .map(|t| self.deadline(pid, started + t, limits.kill_grace, Stage::Running));
        self.children.insert(
            pid,
            Child {
                service: Rc::clone(&running.name),
                peer,
                started,
                stderr: stderr.map(Box::new),
                holds: extras.holds,
                probe: extras.probe.map(Box::new),
                reply: extras.reply.map(Box::new),
                load: Rc::clone(&running.load),
                source,
                log,
                program: Rc::clone(&plan.program),
                deadline,
            },
        );
        if self.children.len() == self.global.max_processes {
            self.stale.all = true;
        }
        true
    }

    pub(super) fn watch(&mut self, fd: std::os::fd::BorrowedFd<'_>, token: Token) {
        if let Err(e) = self
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token.encode()))
        {
            self.log.event(Event::error(&format!("epoll: {e}")));
        }
    }

    pub(super) fn on_stderr(&mut self, pid: i32) {
        let Some(child) = self.children.get_mut(pid) else {
            return;
        };
        let Some(pipe) = child.stderr.as_mut() else {
            return;
        };
        let log = &mut self.log;
        let service = &child.service;
        let now = Instant::now();
        let shared = &mut child.load.borrow_mut().stderr;
        let eof = pipe.drain(shared, now, children::READS_PER_TURN, |line| {
            log.event(Event::Stderr { service, pid, line });
        });
        let dropped = if eof {
            pipe.dropped.rest()
        } else {
            pipe.dropped.report(now)
        };
        if let Some(n) = dropped {
            log.event(Event::StderrDropped {
                service,
                pid,
                lines: n,
            });
        }
        if eof {
            if let Some(p) = child.stderr.take() {
                let _ = self.epoll.delete(p.fd.as_fd());
            }
        } else if pipe.over_budget(now) {
            let _ = self.epoll.delete(pipe.fd.as_fd());
            pipe.paused = true;
            let due = now + flood::STDERR_PAUSE;
            self.timers.push(Reverse((due, Resume::Stderr(pid))));
        }
    }

    /// A paused stderr pipe's budget has refilled: watch it again (unless
    /// its handler was reaped meanwhile, and `pid` is another's now).
    pub(super) fn resume_stderr(&mut self, pid: i32) {
        let Some(pipe) = self
            .children
            .get_mut(pid)
            .and_then(|c| c.stderr.as_mut())
            .filter(|p| p.paused)
        else {
            return;
        };
        pipe.paused = false;
        let token = Token::Stderr(pid).encode();
        if let Err(e) = self
            .epoll
            .add(pipe.fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token))
        {
            self.log.event(Event::error(&format!("epoll: {e}")));
        }
    }

    pub(super) fn on_reply(&mut self, pid: i32) {
        let Some(child) = self.children.get_mut(pid) else {
            return;
        };
        let done = child.reply.as_mut().is_some_and(|r| r.fill());
        if done {
            if let Some(reply) = child.reply.take() {
                let service = Rc::clone(&child.service);
                self.send_reply(&service, pid, *reply);
            }
        }
    }

    pub(super) fn send_reply(&mut self, service: &str, pid: i32, reply: Reply) {
        let _ = self.epoll.delete(reply.out.as_fd());
        if reply.dropped > 0 {
            self.log.event(Event::Warning {
                service: Some(service),
                pid: Some(pid),
                msg: &format!(
                    "reply cut to {} bytes, {} dropped",
                    relay::MAX_REPLY,
                    reply.dropped
                ),
            });
        }
        if reply.buf.is_empty() {
            return;
        }
        let Some(l) = self.listeners.get(&reply.listener) else {
            return; // the service was removed meanwhile
        };
        let sent = match reply.from {
            Some(from) => crate::sys::send_from(l.socket.as_fd(), &reply.buf, reply.peer, from),
            None => l.socket.send_to(&reply.buf, &reply.peer.into()),
        };
        if let Err(e) = sent {
            self.log.event(Event::Error {
                service: Some(service),
                pid: Some(pid),
                peer: Some(spawn::unmap(reply.peer)),
                msg: &format!("unable to send reply: {e}"),
                suppressed: None,
            });
        }
    }

    /// Reap every exited handler: log its stderr tail, failure and exit.
    pub(super) fn reap(&mut self) {
        while let Some((pid, mut child, ending)) = self.children.reap() {
            if let Some(mut pipe) = child.stderr.take() {
                let log = &mut self.log;
                let service = &child.service;
                let shared = &mut child.load.borrow_mut().stderr;
                pipe.drain(shared, Instant::now(), children::READS_AT_EXIT, |line| {
                    log.event(Event::Stderr { service, pid, line });
                });
                if let Some(n) = pipe.dropped.rest() {
                    log.event(Event::StderrDropped {
                        service,
                        pid,
                        lines: n,
                    });
                }
                let _ = self.epoll.delete(pipe.fd.as_fd());
            }
            let failed = self.spawner.failure(pid);
            {
                let mut load = child.load.borrow_mut();
                load.ended(child.source);
                let c = &mut load.stats.total;
                match ending {
                    Ending::Exited(0) => c.exit_ok += 1,
                    Ending::Exited(_) => c.exit_error += 1,
                    Ending::Signaled(..) => c.signaled += 1,
                }
                c.spawn_failed += u64::from(failed.is_some());
                c.timeouts += u64::from(child.deadline.is_some_and(|d| d.fired()));
            }
            if let Some((step, errno)) = failed {
                self.log.event(Event::Error {
                    service: Some(&child.service),
                    pid: Some(pid),
                    peer: None,
                    msg: &format!(
                        "unable to {} for handler: {} ({})",
                        step.verb(),
                        errno.desc(),
                        child.program
                    ),
                    suppressed: None,
                });
            }
            if let Some(mut reply) = child.reply.take() {
                reply.fill();
                self.send_reply(&child.service.clone(), pid, *reply);
            }
            self.forget_deadline(&child);
            self.touch(&child.service);
            if self.children.len() + 1 == self.global.max_processes {
                self.stale.all = true;
            }
            let log = child.log;
            if log.any_success() {
                let (status, signal, core) = match ending {
                    _ if !log.exit => (None, None, false),
                    Ending::Exited(code) => (Some(code), None, false),
                    Ending::Signaled(sig, core) => (None, Some(sig.as_str()), core),
                };
                self.log.event(Event::Exit {
                    service: &child.service,
                    pid: log.pid.then_some(pid),
                    status,
                    signal,
                    core,
                    timed_out: log.exit && child.deadline.is_some_and(|d| d.fired()),
                    duration_ms: log.duration.then(|| child.started.elapsed().as_millis()),
                });
            }
            if let Some(id) = child.holds {
                self.release(id, child.probe.as_deref(), child.started);
            }
        }
    }
}
