//! The control socket served on the loop: `oxinetd status`, `reload` and
//! `stop` (the protocol and its bounds: `crate::control`).
//!
//! The control socket is one more descriptor in the loop
//! (`Token::Control`). Every client is non-blocking and has a deadline
//! (closed `control::DEADLINE`, 5 s, after it connected:
//! `Resume::Control`), so none can stall the loop; its request is read
//! into a buffer of at most `control::MAX_REQUEST` (4 KiB) bytes,
//! answered at once, and the answer written as the socket takes it. `status` builds a
//! `stats::Snapshot` (`state.rs`) and renders it; `reload` calls the same
//! `Supervisor::reload` as SIGHUP, right there in the loop, which returns
//! the outcome, so the answer is the reload's own result; `stop` is
//! `begin_drain` with an optional grace, its client kept until the
//! process exits.

use std::cmp::Reverse;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use socket2::Socket;

use crate::config::{BindAddr, ListenKey, SocketFile, SocketKind};
use crate::control::{self, Request, DEADLINE, MAX_CLIENTS, MAX_REQUEST};
use crate::listener;
use crate::log::Event;

use super::{Resume, Supervisor, Token};

/// The bound control socket.
pub(super) struct ControlSocket {
    socket: Socket,
    pub(super) path: PathBuf,
    /// The file this process bound, removed when it closes.
    id: Option<listener::FileId>,
    /// The `control_group` it was bound for (its file's group and mode).
    group: Option<u32>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            listener::remove_file(&self.path, id);
        }
    }
}

/// One client of the control socket.
pub(super) struct ControlConn {
    sock: UnixStream,
    /// Its uid (`SO_PEERCRED`).
    uid: u32,
    /// The request read so far.
    request: Vec<u8>,
    /// The answer, and how much of it is written; `None` while reading.
    answer: Option<(Vec<u8>, usize)>,
    /// Asked for a stop: kept open (and out of epoll) once answered, so
    /// the client's EOF is the supervisor's exit.
    stop: bool,
}

impl Supervisor {
    /// Bind the control socket the config asks for, unless it is bound
    /// already as asked; close the old one if it changed. A failure is
    /// logged, never fatal: the services run without it.
    pub(super) fn sync_control(&mut self) {
        let want = self
            .opts
            .control
            .clone()
            .or_else(|| self.global.control_socket.clone());
        let group = self.global.control_group;
        if let Some(c) = &self.control {
            if Some(&c.path) == want.as_ref() && c.group == group {
                return;
            }
        }
        if let Some(c) = self.control.take() {
            let _ = self.epoll.delete(c.socket.as_fd());
        }
        let Some(path) = want else {
            return;
        };
        let euid = nix::unistd::geteuid().as_raw();
        let file = SocketFile {
            mode: if group.is_some() { 0o660 } else { 0o600 },
            owner: Some((
                euid,
                group.unwrap_or_else(|| nix::unistd::getegid().as_raw()),
            )),
        };
        let key = ListenKey {
            addr: BindAddr::Unix(path.clone()),
            kind: SocketKind::Stream,
            opts: Default::default(),
        };
        let bound = listener::bind(&key, true, &file).and_then(|(socket, id)| {
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, Token::Control(0).encode());
            self.epoll.add(socket.as_fd(), ev)?;
            Ok(ControlSocket {
                socket,
                path: path.clone(),
                id,
                group,
            })
        });
        match bound {
            Ok(c) => {
                self.log.event(Event::Control { path: &c.path });
                self.control = Some(c);
            }
            Err(e) => {
                let msg = format!(
                    "unable to bind the control socket {}: {e}; status, reload and stop \
                     will not answer",
                    path.display()
                );
                self.log.event(Event::error(&msg));
            }
        }
    }

    /// Readiness of the control socket (`id` 0) or of a client.
    pub(super) fn on_control(&mut self, id: u64) {
        if id == 0 {
            self.accept_control();
        } else {
            self.serve_control(id);
        }
    }

    fn accept_control(&mut self) {
        for _ in 0..MAX_CLIENTS {
            let Some(c) = &self.control else {
                return;
            };
            let sock = match c.socket.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let msg = format!("control socket: unable to accept: {e}");
                    self.log.event(Event::error(&msg));
                    return;
                }
            };
            // Too many at once: closed at once (they may try again).
            if self.control_conns.len() >= MAX_CLIENTS {
                continue;
            }
            let Ok(cred) = getsockopt(&sock, PeerCredentials) else {
                continue;
            };
            if sock.set_nonblocking(true).is_err() {
                continue;
            }
            let sock = UnixStream::from(std::os::fd::OwnedFd::from(sock));
            let id = self.next_id;
            self.next_id += 1;
            let ev = EpollEvent::new(EpollFlags::EPOLLIN, Token::Control(id).encode());
            if self.epoll.add(sock.as_fd(), ev).is_err() {
                continue;
            }
            let due = Instant::now() + DEADLINE;
            self.timers.push(Reverse((due, Resume::Control(id))));
            self.control_conns.insert(
                id,
                ControlConn {
                    sock,
                    uid: cred.uid(),
                    request: Vec::new(),
                    answer: None,
                    stop: false,
                },
            );
        }
    }

    /// Read the request, answer it, write the answer.
    fn serve_control(&mut self, id: u64) {
        let Some(c) = self.control_conns.get_mut(&id) else {
            return;
        };
        if c.answer.is_none() {
            let mut buf = [0u8; 1024];
            let line = loop {
                match c.sock.read(&mut buf) {
                    Ok(0) => break Some(Err(())),
                    Ok(n) => {
                        let room = MAX_REQUEST - c.request.len();
                        c.request.extend_from_slice(&buf[..n.min(room)]);
                        if let Some(end) = c.request.iter().position(|&b| b == b'\n') {
                            c.request.truncate(end);
                            break Some(Ok(()));
                        }
                        if n > room || c.request.len() == MAX_REQUEST {
                            break Some(Err(()));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break Some(Err(())),
                }
            };
            let answer = match line {
                None => return, // more to come
                Some(Err(())) if c.request.len() >= MAX_REQUEST => {
                    let msg = format!("request longer than {MAX_REQUEST} bytes");
                    reply(false, &msg)
                }
                // Closed or failed before a whole line: nobody to answer.
                Some(Err(())) => {
                    self.close_control(id);
                    return;
                }
                Some(Ok(())) => {
                    let text = String::from_utf8_lossy(&c.request).into_owned();
                    let uid = c.uid;
                    self.answer_control(id, &text, uid)
                }
            };
            let Some(c) = self.control_conns.get_mut(&id) else {
                return;
            };
            c.request = Vec::new();
            c.answer = Some((answer, 0));
        }
        self.write_control(id);
    }

    /// Write what the socket takes of the answer; close when it is all
    /// written (a stop's client stays until the exit).
    fn write_control(&mut self, id: u64) {
        let Some(c) = self.control_conns.get_mut(&id) else {
            return;
        };
        let Some((answer, sent)) = c.answer.as_mut() else {
            return;
        };
        while *sent < answer.len() {
            match c.sock.write(&answer[*sent..]) {
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = Token::Control(id).encode();
                    let mut ev = EpollEvent::new(EpollFlags::EPOLLOUT, token);
                    let _ = self.epoll.modify(c.sock.as_fd(), &mut ev);
                    return;
                }
                Err(_) => {
                    self.close_control(id);
                    return;
                }
            }
        }
        if c.stop {
            let _ = self.epoll.delete(c.sock.as_fd());
            return;
        }
        self.close_control(id);
    }

    fn close_control(&mut self, id: u64) {
        if let Some(c) = self.control_conns.remove(&id) {
            let _ = self.epoll.delete(c.sock.as_fd());
        }
    }

    /// A client's deadline: closed unless it waits for a stop.
    pub(super) fn control_deadline(&mut self, id: u64) {
        if self.control_conns.get(&id).is_some_and(|c| !c.stop) {
            self.close_control(id);
        }
    }

    /// The answer to request `line` of a client running as `uid`.
    fn answer_control(&mut self, id: u64, line: &str, uid: u32) -> Vec<u8> {
        let req = match Request::parse(line.trim_end_matches('\r')) {
            Ok(r) => r,
            Err(e) => return reply(false, &e),
        };
        let own = nix::unistd::geteuid().as_raw();
        if let Err(e) = control::may(&req, uid, own, self.global.control_group.is_some()) {
            return reply(false, &e);
        }
        match req {
            Request::Status { json, service } => {
                let snap = self.snapshot(service.as_deref());
                match (snap, service) {
                    (_, Some(s)) if !self.has_service(&s) => {
                        let msg = format!("no service named \"{}\"", s.escape_default());
                        reply(false, &msg)
                    }
                    (snap, _) if json => reply(true, &snap.json()),
                    (snap, _) => reply(true, &snap.text()),
                }
            }
            Request::Reload if self.draining.is_some() => reply(false, "oxinetd is stopping"),
            Request::Reload => match self.reload() {
                Ok((kept, bound, closed)) => {
                    let msg = format!("reloaded: kept {kept}, bound {bound}, closed {closed}");
                    reply(true, &msg)
                }
                Err(errors) => {
                    let mut msg = String::new();
                    for e in &errors {
                        msg.push_str(&format!("{e}\n"));
                    }
                    msg.push_str(&format!(
                        "reload refused: {} error{}; the running config is unchanged",
                        errors.len(),
                        if errors.len() == 1 { "" } else { "s" }
                    ));
                    reply(false, &msg)
                }
            },
            Request::Stop { grace } => {
                let handlers = self.children.len();
                if self.draining.is_none() {
                    self.begin_drain(grace);
                }
                let grace = self.draining.as_ref().map_or(Duration::ZERO, |d| {
                    d.deadline().saturating_duration_since(Instant::now())
                });
                if let Some(c) = self.control_conns.get_mut(&id) {
                    c.stop = true;
                }
                let msg = format!(
                    "stopping: {handlers} handler{} running, grace {:.1}s",
                    if handlers == 1 { "" } else { "s" },
                    grace.as_secs_f64()
                );
                reply(true, &msg)
            }
        }
    }

    /// Whether `name` is a service of the running config.
    pub(super) fn has_service(&self, name: &str) -> bool {
        self.running.iter().any(|r| *r.name == *name)
    }
}

/// An answer: `ok` or `error`, then the body, ending with a newline.
fn reply(ok: bool, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(if ok { b"ok\n" } else { b"error\n" });
    out.extend_from_slice(body.as_bytes());
    if !body.ends_with('\n') {
        out.push(b'\n');
    }
    out
}
