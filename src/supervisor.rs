//! The supervisor: one thread, one epoll loop, handlers as child processes.
//!
//! Each iteration: wait for events (or the next timer) → handle the signal
//! pipe (reap, reload, terminate) → handle ready listeners and handler pipes
//! → resume paused listeners. States: serving, then draining after SIGTERM.
//!
//! Two error regimes (as in catatonit): while starting, an unusable config is
//! fatal; once serving, every error is logged with its service and the loop
//! goes on, so one broken service never stops the others.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, SockaddrStorage};
use socket2::Socket;

use crate::children::{Child, Children, Ending, Probe, StderrPipe};
use crate::config::{
    self, BindAddr, Config, Context, Handler, ListenKey, Protocol, Service, WaitMode,
};
use crate::internal::{self, Interest, Internal};
use crate::log::{Log, Throttle, Q};
use crate::notify::Notifier;
use crate::relay::{self, Reply};
use crate::reload::{self, Slot};
use crate::signals::Signals;
use crate::spawn::{self, Invocation, Plan, Spawner};
use crate::{error, info, listener, warning};

/// Exit codes (sysexits), so a service manager can tell a bad config
/// (don't restart) from a temporary failure.
pub const EXIT_CONFIG: u8 = 78;
pub const EXIT_OSERR: u8 = 71;

/// Connections accepted (or datagrams read) per listener per wake-up, so
/// one busy service cannot starve the others.
const BATCH: usize = 64;
/// How long a listener rests after the system refused us resources.
const RESOURCE_PAUSE: Duration = Duration::from_secs(1);
/// Consecutive `wait` handlers exiting without reading their datagram
/// before the service is considered looping.
const LOOP_LIMIT: u32 = 3;
/// Bytes of a pending datagram compared to tell whether a handler read it.
const PROBE_BYTES: usize = 64;
/// Replies per second an internal UDP service sends at most: these are
/// classic amplification targets.
const REPLY_RATE: u32 = 50_000;
/// Source ports an internal UDP service never answers besides 0 and the
/// privileged ones: those of the internal services themselves, so two of
/// them cannot be aimed at each other.
const LOOP_PORTS: [u16; 5] = [7, 9, 13, 19, 37];

/// What the event loop can be woken by, packed in the epoll token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Signal,
    Listener(u64),
    Stderr(i32),
    Reply(i32),
    Conn(u64),
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Signal => 0,
            Token::Listener(id) => 1 << 56 | id,
            Token::Stderr(pid) => 2 << 56 | pid as u32 as u64,
            Token::Reply(pid) => 3 << 56 | pid as u32 as u64,
            Token::Conn(id) => 4 << 56 | id,
        }
    }

    fn decode(v: u64) -> Token {
        let low = v & ((1 << 56) - 1);
        match v >> 56 {
            1 => Token::Listener(low),
            2 => Token::Stderr(low as i32),
            3 => Token::Reply(low as i32),
            4 => Token::Conn(low),
            _ => Token::Signal,
        }
    }
}

/// How the supervisor was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub log_stderr: bool,
    pub syslog_socket: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
}

/// How a service's listeners are served, decided once per config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// stream nowait: accept, a handler per connection.
    Accept,
    /// dgram nowait: a handler per datagram, its stdout the reply.
    Relay,
    /// wait: the handler gets the socket itself.
    HandOver,
    /// An internal service over TCP, served on the loop.
    InternalStream(Internal),
    /// An internal service over UDP, answered on the loop.
    InternalDgram(Internal),
}

/// A service as the supervisor runs it: the config and its prepared exec.
struct Running {
    svc: Service,
    name: Rc<str>,
    mode: Mode,
    /// The exec plan; `None` for internal services.
    plan: Option<Plan>,
    /// Start of the current second and replies sent in it (UDP internal).
    replies: std::cell::Cell<(Instant, u32)>,
    /// Limits how often refusals of this service are logged.
    refusals: std::cell::RefCell<Throttle>,
}

impl Running {
    fn new(svc: Service, plan: Option<Plan>) -> Running {
        let mode = match (&svc.handler, svc.protocol, svc.wait) {
            (Handler::Internal(i), Protocol::Tcp, _) => Mode::InternalStream(*i),
            (Handler::Internal(i), Protocol::Udp, _) => Mode::InternalDgram(*i),
            (_, _, WaitMode::Wait) => Mode::HandOver,
            (_, Protocol::Tcp, WaitMode::Nowait) => Mode::Accept,
            (_, Protocol::Udp, WaitMode::Nowait) => Mode::Relay,
        };
        Running {
            name: Rc::from(svc.name.as_str()),
            svc,
            mode,
            plan,
            replies: std::cell::Cell::new((Instant::now(), 0)),
            refusals: std::cell::RefCell::new(Throttle::default()),
        }
    }

    /// Count one UDP reply against the per-second cap; false if over it.
    fn take_reply(&self, now: Instant) -> bool {
        let (since, n) = self.replies.get();
        let (since, n) = if now.duration_since(since) >= Duration::from_secs(1) {
            (now, 0)
        } else {
            (since, n)
        };
        self.replies.set((since, n.saturating_add(1)));
        n < REPLY_RATE
    }
}

/// An internal service's TCP connection.
struct InternalConn {
    conn: internal::Conn,
    service: Rc<Running>,
    peer: SocketAddr,
    started: Instant,
    interest: Interest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListenState {
    /// Watched for connections or datagrams.
    Armed,
    /// A `wait` handler owns the socket.
    Busy,
    /// Not watched until then (looping, or out of resources).
    Paused(Instant),
}

impl Listener {
    fn slot(&self) -> Slot {
        Slot::new(self.key, &self.service.svc.name)
    }
}

/// A bound socket and the service it serves now.
struct Listener {
    id: u64,
    key: ListenKey,
    socket: Socket,
    /// The address actually bound (the port when 0 was asked).
    local: SocketAddr,
    /// True when bound to one address, so `local` is every connection's.
    specific: bool,
    service: Rc<Running>,
    state: ListenState,
    /// Consecutive `wait` handlers that exited without reading.
    idle_exits: u32,
}

pub struct Supervisor {
    opts: Options,
    ctx: Context,
    global: config::Global,
    log: Log,
    epoll: Epoll,
    signals: Signals,
    notifier: Notifier,
    listeners: HashMap<u64, Listener>,
    children: Children,
    spawner: Spawner,
    /// Internal services' TCP connections, by id.
    conns: HashMap<u64, InternalConn>,
    /// Receives datagrams; also the scratch buffer of internal connections.
    dgram_buf: Vec<u8>,
    /// Replies of internal UDP services are built here.
    reply_buf: Vec<u8>,
    /// Ports of the internal UDP services bound now (see LOOP_PORTS).
    internal_ports: Vec<u16>,
    next_id: u64,
    /// Set once SIGTERM/SIGINT arrived: when to stop waiting for handlers.
    draining: Option<Instant>,
}

/// Start serving; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    crate::sys::prepare_process();
    let ctx = Context::current();
    let loaded = match config::load(&opts.config, &ctx) {
        Ok(l) => l,
        Err(errors) => {
            for e in &errors {
                eprintln!("oxinetd: {e}");
            }
            eprintln!("oxinetd: no usable config, exiting");
            return EXIT_CONFIG;
        }
    };
    let mut log = open_log(&opts, &loaded.config.global);
    for e in &loaded.errors {
        error!(log, "config-error at={} msg={}", e.at, Q(&e.message));
    }
    if loaded.config.services.is_empty() {
        error!(
            log,
            "fatal msg=\"no valid service in {}\"",
            opts.config.display()
        );
        return EXIT_CONFIG;
    }
    let mut sup = match Supervisor::new(opts, ctx, loaded.config.global.clone(), log) {
        Ok(s) => s,
        Err((mut log, e)) => {
            error!(log, "fatal msg={}", Q(&format!("unable to start: {e}")));
            return EXIT_OSERR;
        }
    };
    sup.apply(loaded.config);
    if sup.listeners.is_empty() {
        error!(sup.log, "fatal msg=\"no listener could be bound\"");
        return EXIT_OSERR;
    }
    if let Some(p) = &sup.opts.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            error!(
                sup.log,
                "error msg={}",
                Q(&format!("unable to write pidfile {}: {e}", p.display()))
            );
        }
    }
    info!(sup.log, "ready listeners={}", sup.listeners.len());
    sup.notifier.ready();
    sup.serve();
    if let Some(p) = &sup.opts.pidfile {
        let _ = std::fs::remove_file(p);
    }
    0
}

fn open_log(opts: &Options, global: &config::Global) -> Log {
    if opts.log_stderr {
        return Log::stderr();
    }
    let socket = opts
        .syslog_socket
        .as_deref()
        .or(global.syslog_socket.as_deref());
    match Log::syslog(global.syslog_facility, socket) {
        Ok(l) => l,
        Err(e) => {
            let mut l = Log::stderr();
            warning!(l, "warning msg={}", Q(&format!("{e}; logging to stderr")));
            l
        }
    }
}

impl Supervisor {
    fn new(
        opts: Options,
        ctx: Context,
        global: config::Global,
        log: Log,
    ) -> Result<Supervisor, (Log, io::Error)> {
        let setup = || -> io::Result<(Epoll, Signals, Spawner)> {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let signals = Signals::install()?;
            epoll.add(
                signals.fd(),
                EpollEvent::new(EpollFlags::EPOLLIN, Token::Signal.encode()),
            )?;
            Ok((epoll, signals, Spawner::new(crate::sys::raise_nofile())?))
        };
        let (epoll, signals, spawner) = match setup() {
            Ok(s) => s,
            Err(e) => return Err((log, e)),
        };
        Ok(Supervisor {
            opts,
            ctx,
            global,
            log,
            epoll,
            signals,
            notifier: Notifier::from_env(),
            listeners: HashMap::new(),
            children: Children::default(),
            spawner,
            conns: HashMap::new(),
            dgram_buf: vec![0; 65536],
            reply_buf: Vec::with_capacity(65536),
            internal_ports: Vec::new(),
            next_id: 1,
            draining: None,
        })
    }

    /// The event loop; returns when draining is over.
    fn serve(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            let timeout = self.next_timer().map_or(EpollTimeout::NONE, |at| {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                EpollTimeout::try_from(ms.min(60_000)).unwrap_or(EpollTimeout::MAX)
            });
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    error!(self.log, "error msg={}", Q(&format!("epoll_wait: {e}")));
                    0
                }
            };
            for ev in &events[..n] {
                match Token::decode(ev.data()) {
                    Token::Signal => self.on_signals(),
                    Token::Listener(id) => self.on_listener(id),
                    Token::Stderr(pid) => self.on_stderr(pid),
                    Token::Reply(pid) => self.on_reply(pid),
                    Token::Conn(id) => self.on_conn(id),
                }
            }
            self.on_timers();
            if let Some(deadline) = self.draining {
                if self.children.is_empty() {
                    info!(self.log, "stopped");
                    return;
                }
                if Instant::now() >= deadline {
                    for pid in self.children.pids() {
                        // Handlers are session leaders: end their whole group.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(-pid),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    info!(
                        self.log,
                        "stopped handlers_left={} msg=\"shutdown_grace over; sent SIGTERM\"",
                        self.children.len()
                    );
                    return;
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let pending = self.signals.take();
        if pending.child {
            self.reap();
        }
        if pending.terminate && self.draining.is_none() {
            self.begin_drain();
        }
        if pending.reload && self.draining.is_none() {
            self.reload();
        }
    }

    fn begin_drain(&mut self) {
        self.notifier.stopping();
        for (_, l) in self.listeners.drain() {
            let _ = self.epoll.delete(l.socket.as_fd());
        }
        info!(
            self.log,
            "stopping handlers={} grace_ms={}",
            self.children.len(),
            self.global.shutdown_grace.as_millis()
        );
        self.draining = Some(Instant::now() + self.global.shutdown_grace);
    }

    /// Make `config` the running one: keep, bind and close listeners.
    fn apply(&mut self, config: Config) -> (usize, usize, usize) {
        let diff = reload::diff(self.listeners.values().map(Listener::slot), &config);
        let mut old: HashMap<Slot, Listener> =
            self.listeners.drain().map(|(_, l)| (l.slot(), l)).collect();
        let mut retry = Vec::new();
        for svc in config.services {
            let name: Rc<str> = Rc::from(svc.name.as_str());
            let plan = match Plan::new(&svc) {
                Ok(p) => p,
                Err(e) => {
                    error!(self.log, "error service={name} msg={}", Q(&e));
                    continue;
                }
            };
            let running = Rc::new(Running::new(svc, plan));
            for key in running.svc.listen.clone() {
                match old.remove(&Slot::new(key, &running.svc.name)) {
                    Some(mut l) => {
                        l.service = Rc::clone(&running);
                        l.idle_exits = 0;
                        self.set_mode(&l);
                        self.listeners.insert(l.id, l);
                    }
                    None => {
                        if let Err(e) = self.add_listener(&running, key) {
                            if e.kind() == io::ErrorKind::AddrInUse && !diff.close.is_empty() {
                                retry.push((Rc::clone(&running), key));
                            } else {
                                self.bind_failed(&running.name, key, &e);
                            }
                        }
                    }
                }
            }
        }
        let closed = old.len();
        for (_, l) in old {
            let _ = self.epoll.delete(l.socket.as_fd());
            info!(self.log, "close service={} addr={}", l.service.name, l.key);
        }
        // A new address may have overlapped one that was only now closed.
        for (running, key) in retry {
            if let Err(e) = self.add_listener(&running, key) {
                self.bind_failed(&running.name, key, &e);
            }
        }
        self.internal_ports = self
            .listeners
            .values()
            .filter(|l| matches!(l.service.mode, Mode::InternalDgram(_)))
            .map(|l| l.local.port())
            .collect();
        (diff.keep.len(), diff.bind.len(), closed)
    }

    fn bind_failed(&mut self, name: &str, key: ListenKey, e: &io::Error) {
        error!(
            self.log,
            "error service={name} msg={}",
            Q(&format!("unable to bind {key}: {e}"))
        );
    }

    fn add_listener(&mut self, running: &Rc<Running>, key: ListenKey) -> io::Result<()> {
        let socket = listener::bind(&key)?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("not an IP socket"))?;
        let id = self.next_id;
        self.next_id += 1;
        let l = Listener {
            id,
            key,
            socket,
            local,
            specific: matches!(key.addr, BindAddr::Ip(a) if !a.ip().is_unspecified()),
            service: Rc::clone(running),
            state: ListenState::Armed,
            idle_exits: 0,
        };
        self.set_mode(&l);
        self.epoll.add(
            l.socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, Token::Listener(id).encode()),
        )?;
        info!(
            self.log,
            "listen service={} proto={} addr={} wait={}",
            running.name,
            key.protocol,
            spawn::unmap(local),
            running.svc.wait == WaitMode::Wait
        );
        self.listeners.insert(id, l);
        Ok(())
    }

    fn set_mode(&mut self, l: &Listener) {
        // A `wait` handler shares the socket's file status and expects a
        // blocking socket, as under every inetd; the loop itself only ever
        // accepts or receives until EAGAIN.
        let result = l.socket.set_nonblocking(l.service.mode != Mode::HandOver);
        if let Err(e) = result {
            error!(
                self.log,
                "error service={} msg={}",
                l.service.name,
                Q(&e.to_string())
            );
        }
    }

    /// Watch (or stop watching) a listener.
    fn arm(&mut self, id: u64, state: ListenState) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let flags = if state == ListenState::Armed {
            EpollFlags::EPOLLIN
        } else {
            EpollFlags::empty()
        };
        if l.state != state {
            l.state = state;
            let mut ev = EpollEvent::new(flags, Token::Listener(id).encode());
            if let Err(e) = self.epoll.modify(l.socket.as_fd(), &mut ev) {
                error!(
                    self.log,
                    "error service={} msg={}",
                    l.service.name,
                    Q(&format!("epoll: {e}"))
                );
            }
        }
    }

    fn on_listener(&mut self, id: u64) {
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        if l.state != ListenState::Armed {
            return;
        }
        match l.service.mode {
            Mode::Accept => self.accept_connections(id),
            Mode::Relay => self.relay_datagrams(id),
            Mode::HandOver => self.hand_over_socket(id),
            Mode::InternalStream(kind) => self.accept_internal(id, kind),
            Mode::InternalDgram(kind) => self.answer_datagrams(id, kind),
        }
    }

    /// Accept one connection on listener `id`; `None` when there is none
    /// to take now (the queue is empty, or accepting must pause).
    fn accept_one(&mut self, id: u64) -> Option<(Socket, SocketAddr, SocketAddr)> {
        loop {
            let l = self.listeners.get(&id)?;
            let (conn, peer) = match l.socket.accept() {
                Ok((c, p)) => (c, p),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return None,
                    Some(libc::EINTR | libc::ECONNABORTED | libc::EPROTO) => continue,
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        let name = Rc::clone(&l.service.name);
                        error!(
                            self.log,
                            "error service={name} msg={}",
                            Q(&format!("unable to accept: {e}; pausing 1s"))
                        );
                        self.arm(id, ListenState::Paused(Instant::now() + RESOURCE_PAUSE));
                        return None;
                    }
                    _ => {
                        let name = Rc::clone(&l.service.name);
                        error!(
                            self.log,
                            "error service={name} msg={}",
                            Q(&format!("unable to accept: {e}"))
                        );
                        return None;
                    }
                },
            };
            let Some(peer) = listener::ip_addr(&peer) else {
                continue;
            };
            let local = if l.specific {
                l.local
            } else {
                conn.local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .unwrap_or(l.local)
            };
            return Some((conn, peer, local));
        }
    }

    /// stream nowait: accept until the queue is empty, a handler each.
    fn accept_connections(&mut self, id: u64) {
        for _ in 0..BATCH {
            let Some((conn, peer, local)) = self.accept_one(id) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            let fd = conn.as_raw_fd();
            let inv = Invocation::Peer {
                input: fd,
                output: fd,
                protocol: Protocol::Tcp,
                peer,
                local,
            };
            self.start(&running, &inv, Some(peer), None, None, None);
            // `conn` is closed here: the handler has its own copy.
        }
    }

    /// An internal service over TCP: serve each connection on the loop.
    fn accept_internal(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            let Some((sock, peer, _)) = self.accept_one(id) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            if let Err(e) = sock.set_nonblocking(true) {
                error!(
                    self.log,
                    "error service={} peer={peer} msg={}",
                    running.name,
                    Q(&e.to_string())
                );
                continue;
            }
            let (conn, interest) = internal::Conn::start(sock.into(), kind);
            let c = InternalConn {
                conn,
                service: running,
                peer: spawn::unmap(peer),
                started: Instant::now(),
                interest,
            };
            if interest == Interest::Close {
                self.close_conn(c);
                continue;
            }
            let cid = self.next_id;
            self.next_id += 1;
            let ev = EpollEvent::new(epoll_flags(interest), Token::Conn(cid).encode());
            if let Err(e) = self.epoll.add(c.conn.sock.as_fd(), ev) {
                error!(
                    self.log,
                    "error service={} msg={}",
                    c.service.name,
                    Q(&format!("epoll: {e}"))
                );
                continue;
            }
            self.conns.insert(cid, c);
        }
    }

    /// Readiness on an internal connection: let it make progress.
    fn on_conn(&mut self, cid: u64) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let interest = c.conn.advance(&mut self.dgram_buf);
        if interest == Interest::Close {
            if let Some(c) = self.conns.remove(&cid) {
                let _ = self.epoll.delete(c.conn.sock.as_fd());
                self.close_conn(c);
            }
        } else if interest != c.interest {
            c.interest = interest;
            let mut ev = EpollEvent::new(epoll_flags(interest), Token::Conn(cid).encode());
            let _ = self.epoll.modify(c.conn.sock.as_fd(), &mut ev);
        }
    }

    fn close_conn(&mut self, c: InternalConn) {
        info!(
            self.log,
            "done service={} peer={} duration_ms={} bytes_in={} bytes_out={}",
            c.service.name,
            c.peer,
            c.started.elapsed().as_millis(),
            c.conn.bytes_in,
            c.conn.bytes_out
        );
    }

    /// An internal service over UDP: answer every queued datagram, in order.
    fn answer_datagrams(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let received = nix::sys::socket::recvfrom::<SockaddrStorage>(
                l.socket.as_raw_fd(),
                &mut self.dgram_buf,
            );
            let (len, peer) = match received {
                Ok((len, from)) => match from.as_ref().and_then(storage_to_std) {
                    Some(peer) => (len, peer),
                    None => continue,
                },
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let name = Rc::clone(&l.service.name);
                    error!(
                        self.log,
                        "error service={name} msg={}",
                        Q(&format!("unable to receive: {e}"))
                    );
                    return;
                }
            };
            let running = Rc::clone(&l.service);
            let port = peer.port();
            let reason =
                if port < 1024 || LOOP_PORTS.contains(&port) || self.internal_ports.contains(&port)
                {
                    Some("source-port")
                } else if !running.take_reply(Instant::now()) {
                    Some("reply-rate")
                } else {
                    None
                };
            if let Some(reason) = reason {
                self.refused(&running, spawn::unmap(peer), reason);
                continue;
            }
            let Some(reply) = kind.reply(&self.dgram_buf[..len], &mut self.reply_buf) else {
                continue;
            };
            // A full send buffer drops this reply, as the network may.
            let _ = l.socket.send_to(reply, &peer.into());
        }
    }

    /// Log a refusal, at most a few lines a second per service.
    fn refused(&mut self, running: &Running, peer: SocketAddr, reason: &str) {
        let admitted = running.refusals.borrow_mut().admit(Instant::now());
        match admitted {
            Some(0) => info!(
                self.log,
                "refuse service={} peer={peer} reason={reason}", running.name
            ),
            Some(n) => info!(
                self.log,
                "refuse service={} peer={peer} reason={reason} suppressed={n}", running.name
            ),
            None => {}
        }
    }

    /// dgram nowait: a handler per datagram, its stdout the reply.
    fn relay_datagrams(&mut self, id: u64) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let received = nix::sys::socket::recvfrom::<SockaddrStorage>(
                l.socket.as_raw_fd(),
                &mut self.dgram_buf,
            );
            let (len, from) = match received {
                Ok((len, from)) => (len, from),
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let name = Rc::clone(&l.service.name);
                    error!(
                        self.log,
                        "error service={name} msg={}",
                        Q(&format!("unable to receive: {e}"))
                    );
                    return;
                }
            };
            let Some(peer) = from.as_ref().and_then(storage_to_std) else {
                continue;
            };
            let running = Rc::clone(&l.service);
            let local = l.local;
            let request = match relay::request_file(&self.dgram_buf[..len]) {
                Ok(f) => f,
                Err(e) => {
                    error!(
                        self.log,
                        "error service={} peer={peer} msg={}",
                        running.name,
                        Q(&format!("unable to store request: {e}"))
                    );
                    continue;
                }
            };
            let (out_r, out_w) = match spawn::reader_pipe() {
                Ok(p) => p,
                Err(e) => {
                    error!(
                        self.log,
                        "error service={} peer={peer} msg={}",
                        running.name,
                        Q(&e)
                    );
                    continue;
                }
            };
            let inv = Invocation::Peer {
                input: request.as_raw_fd(),
                output: out_w.as_raw_fd(),
                protocol: Protocol::Udp,
                peer,
                local,
            };
            let reply = Reply {
                listener: id,
                peer,
                out: out_r,
                buf: Vec::new(),
                dropped: 0,
            };
            self.start(&running, &inv, Some(peer), None, None, Some(reply));
        }
    }

    /// wait: the handler gets the socket; stop watching it until it exits.
    fn hand_over_socket(&mut self, id: u64) {
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        let running = Rc::clone(&l.service);
        let (protocol, local) = (running.svc.protocol, l.local);
        let probe = if protocol == Protocol::Udp {
            match probe(&l.socket) {
                Some(p) => Some(p),
                None => return, // nothing pending after all
            }
        } else {
            None
        };
        let peer = probe.as_ref().and_then(|p| p.peer);
        let fd = l.socket.as_raw_fd();
        let inv = Invocation::Socket {
            socket: fd,
            protocol,
            local,
            peer,
            activation: protocol == Protocol::Tcp,
            _marker: std::marker::PhantomData,
        };
        if self.start(&running, &inv, peer, Some(id), probe, None) {
            self.arm(id, ListenState::Busy);
        } else {
            self.arm(id, ListenState::Paused(Instant::now() + RESOURCE_PAUSE));
        }
    }

    /// Spawn a handler and record it. False if it could not be started.
    fn start(
        &mut self,
        running: &Rc<Running>,
        inv: &Invocation<'_>,
        peer: Option<SocketAddr>,
        holds: Option<u64>,
        probe: Option<Probe>,
        reply: Option<Reply>,
    ) -> bool {
        let Some(plan) = running.plan.as_ref() else {
            return false;
        };
        let spawned = match self.spawner.spawn(plan, inv) {
            Ok(s) => s,
            Err(e) => {
                match peer {
                    Some(p) => error!(
                        self.log,
                        "error service={} peer={} msg={}",
                        running.name,
                        spawn::unmap(p),
                        Q(&e)
                    ),
                    None => error!(self.log, "error service={} msg={}", running.name, Q(&e)),
                }
                return false;
            }
        };
        let pid = spawned.pid;
        let stderr = spawned.stderr.map(StderrPipe::new);
        if let Some(s) = &stderr {
            self.watch(s.fd.as_fd(), Token::Stderr(pid));
        }
        if let Some(r) = &reply {
            self.watch(r.out.as_fd(), Token::Reply(pid));
        }
        match peer {
            Some(p) => info!(
                self.log,
                "start service={} pid={pid} peer={}",
                running.name,
                spawn::unmap(p)
            ),
            None => info!(self.log, "start service={} pid={pid}", running.name),
        }
        self.children.insert(
            pid,
            Child {
                service: Rc::clone(&running.name),
                protocol: running.svc.protocol,
                peer,
                started: Instant::now(),
                report: spawned.report,
                stderr,
                holds,
                probe,
                reply,
            },
        );
        true
    }

    fn watch(&mut self, fd: std::os::fd::BorrowedFd<'_>, token: Token) {
        if let Err(e) = self
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token.encode()))
        {
            error!(self.log, "error msg={}", Q(&format!("epoll: {e}")));
        }
    }

    fn on_stderr(&mut self, pid: i32) {
        let Some(child) = self.children.get_mut(pid) else {
            return;
        };
        let Some(pipe) = child.stderr.as_mut() else {
            return;
        };
        let log = &mut self.log;
        let service = &child.service;
        let eof = pipe.drain(|line| {
            info!(log, "stderr service={service} pid={pid} line={}", Q(line));
        });
        if eof {
            if let Some(p) = child.stderr.take() {
                let _ = self.epoll.delete(p.fd.as_fd());
            }
        }
    }

    fn on_reply(&mut self, pid: i32) {
        let Some(child) = self.children.get_mut(pid) else {
            return;
        };
        let done = child.reply.as_mut().is_some_and(Reply::fill);
        if done {
            if let Some(reply) = child.reply.take() {
                let service = Rc::clone(&child.service);
                self.send_reply(&service, pid, reply);
            }
        }
    }

    fn send_reply(&mut self, service: &str, pid: i32, reply: Reply) {
        let _ = self.epoll.delete(reply.out.as_fd());
        if reply.dropped > 0 {
            warning!(
                self.log,
                "warning service={service} pid={pid} msg={}",
                Q(&format!(
                    "reply cut to {} bytes, {} dropped",
                    relay::MAX_REPLY,
                    reply.dropped
                ))
            );
        }
        if reply.buf.is_empty() {
            return;
        }
        let Some(l) = self.listeners.get(&reply.listener) else {
            return; // the service was removed meanwhile
        };
        if let Err(e) = l.socket.send_to(&reply.buf, &reply.peer.into()) {
            error!(
                self.log,
                "error service={service} pid={pid} peer={} msg={}",
                spawn::unmap(reply.peer),
                Q(&format!("unable to send reply: {e}"))
            );
        }
    }

    /// Reap every exited handler: log its stderr tail, failure and exit.
    fn reap(&mut self) {
        while let Some((pid, mut child, ending)) = self.children.reap() {
            if let Some(mut pipe) = child.stderr.take() {
                let log = &mut self.log;
                let service = &child.service;
                pipe.drain(|line| {
                    info!(log, "stderr service={service} pid={pid} line={}", Q(line));
                });
                let _ = self.epoll.delete(pipe.fd.as_fd());
            }
            if let Some((step, errno)) = crate::sys::read_report(child.report.as_fd()) {
                error!(
                    self.log,
                    "error service={} pid={pid} msg={}",
                    child.service,
                    Q(&format!(
                        "unable to {} for handler: {}",
                        step.verb(),
                        errno.desc()
                    ))
                );
            }
            if let Some(mut reply) = child.reply.take() {
                reply.fill();
                self.send_reply(&child.service.clone(), pid, reply);
            }
            let ms = child.started.elapsed().as_millis();
            match ending {
                Ending::Exited(code) => info!(
                    self.log,
                    "exit service={} pid={pid} status={code} duration_ms={ms}", child.service
                ),
                Ending::Signaled(sig, core) => info!(
                    self.log,
                    "exit service={} pid={pid} signal={}{} duration_ms={ms}",
                    child.service,
                    sig.as_str(),
                    if core { " core=true" } else { "" }
                ),
            }
            if let Some(id) = child.holds {
                self.release(id, child.probe.as_ref());
            }
        }
    }

    /// A `wait` handler exited: re-arm its listener, unless handlers keep
    /// exiting without reading the datagram they were started for (which
    /// would otherwise be a spawn loop): then pause the service.
    fn release(&mut self, id: u64, started_for: Option<&Probe>) {
        let Some(l) = self.listeners.get_mut(&id) else {
            return;
        };
        let unread = started_for.is_some_and(|p| probe(&l.socket).as_ref() == Some(p));
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
        warning!(
            self.log,
            "looping service={} handlers_exited_without_reading={} paused_ms={}",
            l.service.name,
            l.idle_exits,
            pause.as_millis()
        );
        l.idle_exits = 0;
        self.arm(id, ListenState::Paused(Instant::now() + pause));
    }

    fn next_timer(&self) -> Option<Instant> {
        let paused = self.listeners.values().filter_map(|l| match l.state {
            ListenState::Paused(at) => Some(at),
            _ => None,
        });
        paused.chain(self.draining).min()
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .listeners
            .values()
            .filter(|l| matches!(l.state, ListenState::Paused(at) if at <= now))
            .map(|l| l.id)
            .collect();
        for id in due {
            if let Some(l) = self.listeners.get(&id) {
                info!(self.log, "resume service={} addr={}", l.service.name, l.key);
            }
            self.arm(id, ListenState::Armed);
        }
    }

    /// SIGHUP: load the config again; apply it only if it is entirely valid.
    fn reload(&mut self) {
        self.notifier.reloading();
        let started = Instant::now();
        let loaded = match config::load(&self.opts.config, &self.ctx) {
            Ok(l) if l.errors.is_empty() => l,
            Ok(l) => {
                self.reload_failed(&l.errors);
                return;
            }
            Err(errors) => {
                self.reload_failed(&errors);
                return;
            }
        };
        self.global = loaded.config.global.clone();
        let (kept, bound, closed) = self.apply(loaded.config);
        info!(
            self.log,
            "reload listeners={} kept={kept} bound={bound} closed={closed} duration_us={}",
            self.listeners.len(),
            started.elapsed().as_micros()
        );
        self.notifier.ready();
    }

    fn reload_failed(&mut self, errors: &[config::ConfigError]) {
        for e in errors {
            error!(self.log, "config-error at={} msg={}", e.at, Q(&e.message));
        }
        error!(
            self.log,
            "reload-failed errors={} msg=\"keeping the running config\"",
            errors.len()
        );
        self.notifier.ready();
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
    Some(Probe {
        peer: socket.peek_sender().ok().and_then(|a| a.as_socket()),
        head: head[..n].to_vec(),
    })
}

fn epoll_flags(i: Interest) -> EpollFlags {
    match i {
        Interest::Write => EpollFlags::EPOLLOUT,
        _ => EpollFlags::EPOLLIN,
    }
}

fn storage_to_std(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Token::Signal,
            Token::Listener(42),
            Token::Stderr(123456),
            Token::Reply(7),
            Token::Conn(9),
        ] {
            assert_eq!(Token::decode(t.encode()), t);
        }
    }
}
