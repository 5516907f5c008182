//! The supervisor: one thread, one epoll loop, handlers as child processes.
//!
//! Each iteration: wait for events (or the next timer) → handle the signal
//! pipe (reap, reload, terminate) → handle ready listeners and handler pipes
//! → resume paused listeners. States: serving, then draining after SIGTERM.
//!
//! Two error regimes (as in catatonit): while starting, an unusable config is
//! fatal; once serving, every error is logged with its service and the loop
//! goes on, so one broken service never stops the others.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{MsgFlags, SockaddrStorage, UnixCredentials};
use socket2::Socket;

use crate::children::{self, Child, Children, Ending, Probe, StderrPipe};
use crate::config::{
    self, BindAddr, Config, Context, Handler, ListenKey, Protocol, Service, WaitMode,
};
use crate::flood::{self, PeerLimit, Verdict};
use crate::internal::{self, Interest, Internal};
use crate::limits::{Load, Refusal, Retired};
use crate::log::{Log, Opt, Throttle, Q};
use crate::notify::Notifier;
use crate::relay::{self, Reply};
use crate::reload::{self, Slot};
use crate::shutdown::{Drain, Next};
use crate::signals::Signals;
use crate::spawn::{self, Ends, Invocation, Plan, Spawner};
use crate::sys::Pages;
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
/// Backoff of a listener while fds or processes are exhausted: it doubles
/// between these.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Consecutive `wait` handlers exiting without reading their datagram
/// (or accepting a connection) before the service is considered looping.
const LOOP_LIMIT: u32 = 3;
/// A stream `wait` handler on a UNIX-domain socket (whose queue length the
/// kernel does not tell) that exits sooner than this with connections still
/// pending counts as one that accepted nothing.
const LOOP_QUICK: Duration = Duration::from_secs(1);
/// Bytes of a pending datagram compared to tell whether a handler read it.
const PROBE_BYTES: usize = 64;

/// What the event loop can be woken by, packed in the epoll token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Listener(u64),
    Stderr(i32),
    Reply(i32),
    Conn(u64),
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Listener(id) => 1 << 56 | id,
            Token::Stderr(pid) => 2 << 56 | pid as u32 as u64,
            Token::Reply(pid) => 3 << 56 | pid as u32 as u64,
            Token::Conn(id) => 4 << 56 | id,
        }
    }

    fn decode(v: u64) -> Option<Token> {
        let low = v & ((1 << 56) - 1);
        match v >> 56 {
            1 => Some(Token::Listener(low)),
            2 => Some(Token::Stderr(low as i32)),
            3 => Some(Token::Reply(low as i32)),
            4 => Some(Token::Conn(low)),
            _ => None,
        }
    }
}

/// How the supervisor was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    /// The config's syntax; from its file name when `None`.
    pub format: Option<config::Format>,
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
    /// Limits how often refusals and spawn errors of this service are logged.
    refusals: std::cell::RefCell<Throttle>,
    /// Handlers running and recent connections; shared with the service's
    /// running handlers and carried to its next config on reload.
    load: Rc<RefCell<Load>>,
}

impl Running {
    fn new(mut svc: Service, plan: Option<Plan>, load: Rc<RefCell<Load>>) -> Running {
        if let (Handler::Internal(_), Protocol::Tcp) = (&svc.handler, svc.protocol) {
            svc.limits = svc.limits.with_internal_defaults(&crate::fds::budget());
        }
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
            load,
        }
    }

    /// Whether this service runs handler processes (and so counts against
    /// `max_processes`).
    fn spawns(&self) -> bool {
        matches!(self.mode, Mode::Accept | Mode::Relay | Mode::HandOver)
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
        n < self.svc.limits.reply_rate
    }
}

/// An internal service's TCP connection.
struct InternalConn {
    conn: internal::Conn,
    service: Rc<Running>,
    peer: SocketAddr,
    /// What the connection is counted under in the service's load.
    source: Option<IpAddr>,
    started: Instant,
    interest: Interest,
    /// Traffic since the last idle sweep; else silent since `quiet_since`.
    active: bool,
    quiet_since: Instant,
    /// Closed by `idle_timeout`.
    idle: bool,
}

/// The optional parts of a handler start.
#[derive(Default)]
struct Extras {
    /// For `wait`: the listener the handler holds.
    holds: Option<u64>,
    /// For `wait`: the datagram or the accept queue it was started for.
    probe: Option<Probe>,
    /// For dgram `nowait`: where its reply goes.
    reply: Option<Reply>,
    /// For a UNIX-domain connection: who connected, for the log.
    cred: Option<UnixCredentials>,
}

/// Where an accepted connection came from and came in.
enum Accepted {
    Ip {
        peer: SocketAddr,
        local: SocketAddr,
    },
    /// On a UNIX-domain listener.
    Unix,
}

/// What may have changed, since the last `sync`, whether a listener should
/// be watched: `sync` looks at these listeners only, not at every one.
#[derive(Default)]
struct Stale {
    /// Every listener: after a reload, or when `max_processes` was reached
    /// or left.
    all: bool,
    /// Listeners whose state changed.
    listeners: Vec<u64>,
    /// Services whose load changed (a handler or connection started or
    /// ended, a cps pause began or ended): all their listeners.
    services: Vec<Rc<str>>,
}

/// A pause to end when due: a listener's (`ListenState::Paused`) or a
/// service's (cps). An entry may be out of date (the listener re-armed or
/// gone); each is checked against the current state when it comes up.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Resume {
    Listener(u64),
    Service(Rc<str>),
    /// Close the internal connections idle for their `idle_timeout`.
    IdleSweep,
    /// Watch a handler's stderr again: its byte budget has refilled.
    Stderr(i32),
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
        Slot::new(self.key.clone(), &self.service.svc.name)
    }
}

/// A bound socket and the service it serves now.
struct Listener {
    id: u64,
    key: ListenKey,
    socket: Socket,
    /// The address actually bound (the port when 0 was asked); `None` for
    /// a UNIX-domain socket.
    local: Option<SocketAddr>,
    /// True when bound to one address, so `local` is every connection's.
    specific: bool,
    /// A UNIX-domain socket's file, removed when the listener closes.
    file: Option<listener::BoundFile>,
    service: Rc<Running>,
    state: ListenState,
    /// Consecutive `wait` handlers that exited without reading.
    idle_exits: u32,
    /// Whether epoll reports its readiness now (see `sync`).
    watching: bool,
    /// Current pause after resource exhaustion; zero when healthy.
    backoff: Duration,
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
    /// Listener ids by service name, for `Stale::services`.
    by_service: HashMap<Rc<str>, Vec<u64>>,
    /// What `sync` has to look at.
    stale: Stale,
    /// Pauses to end, soonest first.
    timers: BinaryHeap<Reverse<(Instant, Resume)>>,
    children: Children,
    spawner: Spawner,
    /// Internal services' TCP connections, by id.
    conns: HashMap<u64, InternalConn>,
    /// Receives datagrams.
    dgram_buf: Vec<u8>,
    /// What internal TCP connections read into (`internal::SCRATCH`).
    stream_buf: Pages,
    /// Replies of internal UDP services are built here.
    reply_buf: Vec<u8>,
    /// Ports of the internal UDP services bound now (never answered).
    internal_ports: Vec<u16>,
    /// Replies of internal UDP services per peer (`peer_reply_rate`).
    peers: PeerLimit,
    /// Each service's load, by name, so a reload carries it over.
    loads: HashMap<String, Rc<RefCell<Load>>>,
    /// Loads of removed services whose handlers still run.
    retired: Retired,
    /// A descriptor kept in reserve: when accept fails for lack of fds,
    /// it is given up to accept and close the waiting connection.
    spare_fd: Option<std::fs::File>,
    next_id: u64,
    /// When the next idle sweep is due (`Resume::IdleSweep`), if any.
    sweep_at: Option<Instant>,
    /// Set once SIGTERM/SIGINT arrived: the stop's progress (`shutdown`).
    draining: Option<Drain>,
}

/// Start serving; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    crate::sys::prepare_process();
    let ctx = Context::current();
    let loaded = match config::load_with(&opts.config, opts.format, &ctx) {
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
    log_problems(&mut log, &loaded);
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
    crate::sys::trim_heap();
    if sup.listeners.is_empty() {
        error!(sup.log, "fatal msg=\"no listener could be bound\"");
        return EXIT_OSERR;
    }
    if let Some(p) = &sup.opts.pidfile {
        if let Err(e) = write_pidfile(p) {
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

/// Write our pid to `path`, never through a symbolic link someone put
/// there (we are root).
fn write_pidfile(path: &std::path::Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    writeln!(f, "{}", std::process::id())
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
        let setup = || -> io::Result<(Epoll, Signals, Spawner, Pages)> {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let signals = Signals::install()?;
            let spawner = Spawner::new(crate::sys::raise_nofile())?;
            Ok((epoll, signals, spawner, Pages::new(internal::SCRATCH)?))
        };
        let (epoll, signals, spawner, stream_buf) = match setup() {
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
            by_service: HashMap::new(),
            stale: Stale::default(),
            timers: BinaryHeap::new(),
            children: Children::default(),
            spawner,
            conns: HashMap::new(),
            dgram_buf: vec![0; 65536],
            stream_buf,
            reply_buf: Vec::with_capacity(65536),
            internal_ports: Vec::new(),
            peers: PeerLimit::default(),
            loads: HashMap::new(),
            retired: Retired::default(),
            spare_fd: std::fs::File::open("/dev/null").ok(),
            next_id: 1,
            sweep_at: None,
            draining: None,
        })
    }

    /// The event loop; returns when draining is over.
    fn serve(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            self.log.flush();
            let timeout = self.next_timer().map_or(EpollTimeout::NONE, |at| {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                EpollTimeout::try_from(ms.min(60_000)).unwrap_or(EpollTimeout::MAX)
            });
            let mask = self.signals.wait_mask();
            let n = match crate::sys::epoll_pwait(&self.epoll, &mut events, timeout, mask) {
                Ok(n) => n,
                // Signals get in only here, and end the wait (`signals`).
                Err(nix::errno::Errno::EINTR) => {
                    self.on_signals();
                    0
                }
                Err(e) => {
                    error!(self.log, "error msg={}", Q(&format!("epoll_pwait: {e}")));
                    0
                }
            };
            for ev in &events[..n] {
                match Token::decode(ev.data()) {
                    Some(Token::Listener(id)) => self.on_listener(id),
                    Some(Token::Stderr(pid)) => self.on_stderr(pid),
                    Some(Token::Reply(pid)) => self.on_reply(pid),
                    Some(Token::Conn(id)) => self.on_conn(id),
                    None => {}
                }
            }
            self.on_timers();
            self.sync();
            if let Some(drain) = &mut self.draining {
                if drain.step(Instant::now(), &self.children, &mut self.log) == Next::Exit {
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
        if pending.dump {
            self.log_state();
        }
    }

    fn begin_drain(&mut self) {
        self.notifier.stopping();
        for (_, l) in self.listeners.drain() {
            let _ = self.epoll.delete(l.socket.as_fd());
        }
        self.by_service.clear();
        info!(
            self.log,
            "stopping handlers={} grace_ms={}",
            self.children.len(),
            self.global.shutdown_grace.as_millis()
        );
        self.draining = Some(Drain::new(Instant::now(), self.global.shutdown_grace));
    }

    /// Make `config` the running one: keep, bind and close listeners.
    fn apply(&mut self, config: Config) -> (usize, usize, usize) {
        let diff = reload::diff(self.listeners.values().map(Listener::slot), &config);
        let mut old: HashMap<Slot, Listener> =
            self.listeners.drain().map(|(_, l)| (l.slot(), l)).collect();
        let mut retry = Vec::new();
        let mut shared = Vec::new();
        let mut handed = Vec::new();
        let mut loads = HashMap::new();
        for svc in config.services {
            let name: Rc<str> = Rc::from(svc.name.as_str());
            let plan = match Plan::new(&svc) {
                Ok(p) => p,
                Err(e) => {
                    error!(self.log, "error service={name} msg={}", Q(&e));
                    continue;
                }
            };
            let load = match self.loads.get(&svc.name) {
                Some(load) => Rc::clone(load),
                None => self.retired.revive(&svc.name).unwrap_or_default(),
            };
            loads.insert(svc.name.clone(), Rc::clone(&load));
            let running = Rc::new(Running::new(svc, plan, load));
            for key in running.svc.listen.clone() {
                match old.remove(&Slot::new(key.clone(), &running.svc.name)) {
                    Some(mut l) => {
                        let was = l.service.mode;
                        let was_file = l.service.svc.socket_file;
                        l.service = Rc::clone(&running);
                        l.idle_exits = 0;
                        if blocking(was) != blocking(l.service.mode) {
                            self.set_mode(&l);
                        }
                        let file = &running.svc.socket_file;
                        if let Some(f) = l.file.as_ref().filter(|_| was_file != *file) {
                            if let Err(e) = listener::update_file(&f.path, f.id, file) {
                                self.bind_failed(&running.name, &key, &e);
                            }
                        }
                        self.listeners.insert(l.id, l);
                    }
                    None => {
                        // A port moving to another address: bound beside
                        // the old socket, which closes once drained; not
                        // beside one a `wait` handler holds (and keeps).
                        let mut share = false;
                        let overlapped = old.values().filter(|o| {
                            o.state != ListenState::Busy && reload::takes_over(&key, &o.key)
                        });
                        for o in overlapped {
                            if listener::share_port(&o.socket, true).is_ok() {
                                share = true;
                                handed.push(o.id);
                            }
                        }
                        match self.add_listener(&running, &key, share) {
                            Ok(id) if share => shared.push(id),
                            Ok(_) => {}
                            Err(e) => {
                                if e.kind() == io::ErrorKind::AddrInUse && !diff.close.is_empty() {
                                    retry.push((Rc::clone(&running), key));
                                } else {
                                    self.bind_failed(&running.name, &key, &e);
                                }
                            }
                        }
                    }
                }
            }
        }
        let closed = old.len();
        for (_, l) in old {
            let handed = handed.contains(&l.id);
            self.close_listener(l, handed);
        }
        // The new sockets, and any old one that was given SO_REUSEPORT but
        // then kept by a later service: no other socket may share them now.
        for id in shared.iter().chain(&handed) {
            if let Some(l) = self.listeners.get(id) {
                let _ = listener::share_port(&l.socket, false);
            }
        }
        // A new address may have overlapped one that was only now closed.
        for (running, key) in retry {
            if let Err(e) = self.add_listener(&running, &key, false) {
                self.bind_failed(&running.name, &key, &e);
            }
        }
        let old_loads = std::mem::replace(&mut self.loads, loads);
        self.retired.retire(old_loads, &self.loads);
        self.by_service.clear();
        for l in self.listeners.values() {
            let of = self.by_service.entry(Rc::clone(&l.service.name));
            of.or_default().push(l.id);
        }
        self.stale.all = true;
        self.internal_ports = self
            .listeners
            .values()
            .filter(|l| matches!(l.service.mode, Mode::InternalDgram(_)))
            .filter_map(|l| l.local.map(|a| a.port()))
            .collect();
        (diff.keep.len(), diff.bind.len(), closed)
    }

    fn bind_failed(&mut self, name: &str, key: &ListenKey, e: &io::Error) {
        error!(
            self.log,
            "error service={name} msg={}",
            Q(&format!("unable to bind {key}: {e}"))
        );
    }

    /// A listener a reload removes: first serve the connections already in
    /// its accept queue (made while it was the service's), so that closing
    /// it resets none of them; then close it. `handed`: a new socket on
    /// the same port listens already, so new clients are sent there (their
    /// SYN dropped here, to be sent again) while the queue is drained.
    fn close_listener(&mut self, l: Listener, handed: bool) {
        let _ = self.epoll.delete(l.socket.as_fd());
        info!(self.log, "close service={} addr={}", l.service.name, l.key);
        if handed {
            let _ = crate::sys::refuse_syn(l.socket.as_fd());
        }
        let (id, mode) = (l.id, l.service.mode);
        if l.state != ListenState::Armed || !matches!(mode, Mode::Accept | Mode::InternalStream(_))
        {
            return;
        }
        self.listeners.insert(id, l);
        // Bounded: the backlog holds at most BACKLOG connections.
        for _ in 0..=listener::BACKLOG as usize / BATCH {
            let queued = self.listeners.get(&id).is_some_and(|l| pending(&l.socket));
            if !queued || !self.is_open(id) {
                break;
            }
            match mode {
                Mode::InternalStream(kind) => self.accept_internal(id, kind),
                _ => self.accept_connections(id),
            }
        }
        self.listeners.remove(&id);
    }

    /// Bind `key` for `running`; `share`: beside a socket on the same port
    /// that is about to close (see `listener::bind_alongside`).
    fn add_listener(
        &mut self,
        running: &Rc<Running>,
        key: &ListenKey,
        share: bool,
    ) -> io::Result<u64> {
        let nonblocking = !blocking(running.mode);
        let file = &running.svc.socket_file;
        let (socket, id) = if share {
            listener::bind_alongside(key, nonblocking, file)?
        } else {
            listener::bind(key, nonblocking, file)?
        };
        let (local, file) = match (&key.addr, id) {
            (BindAddr::Unix(path), Some(id)) => {
                let path = Rc::from(path.as_path());
                (None, Some(listener::BoundFile { path, id }))
            }
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
        let shown = match (&file, local) {
            (Some(f), _) => f.path.display().to_string(),
            (None, Some(a)) => spawn::unmap(a).to_string(),
            (None, None) => String::new(),
        };
        let l = Listener {
            id,
            key: key.clone(),
            socket,
            local,
            file,
            specific: matches!(key.addr, BindAddr::Ip(a) if !a.ip().is_unspecified()),
            service: Rc::clone(running),
            state: ListenState::Armed,
            idle_exits: 0,
            watching: true,
            backoff: Duration::ZERO,
        };
        self.epoll.add(
            l.socket.as_fd(),
            EpollEvent::new(EpollFlags::EPOLLIN, Token::Listener(id).encode()),
        )?;
        info!(
            self.log,
            "listen service={} proto={} addr={shown} wait={}",
            running.name,
            key.proto_name(),
            running.svc.wait == WaitMode::Wait
        );
        self.listeners.insert(id, l);
        Ok(id)
    }

    /// Blocking or not, for a listener whose service changed mode on reload.
    fn set_mode(&mut self, l: &Listener) {
        let result = l.socket.set_nonblocking(!blocking(l.service.mode));
        if let Err(e) = result {
            error!(
                self.log,
                "error service={} msg={}",
                l.service.name,
                Q(&e.to_string())
            );
        }
    }

    /// Set a listener's state; `sync` then watches it or stops watching.
    fn arm(&mut self, id: u64, state: ListenState) {
        if let Some(l) = self.listeners.get_mut(&id) {
            l.state = state;
            self.stale.listeners.push(id);
            if let ListenState::Paused(until) = state {
                self.timers.push(Reverse((until, Resume::Listener(id))));
            }
        }
    }

    /// A service's load changed: `sync` looks at its listeners again.
    fn touch(&mut self, service: &Rc<str>) {
        if !self.stale.services.contains(service) {
            self.stale.services.push(Rc::clone(service));
        }
    }

    /// Whether listener `l` should take connections or datagrams now: its
    /// own state, its service's `instances` and cps pause, and, for
    /// services that spawn, `max_processes`.
    fn open(l: &Listener, processes: usize, max_processes: usize, now: Instant) -> bool {
        let svc = &l.service;
        let load = svc.load.borrow();
        l.state == ListenState::Armed
            && !load.paused(now)
            && (matches!(svc.mode, Mode::InternalDgram(_) | Mode::HandOver)
                || !load.full(svc.svc.limits.max_instances(svc.spawns())))
            && !(svc.spawns() && processes >= max_processes)
    }

    fn is_open(&self, id: u64) -> bool {
        self.listeners.get(&id).is_some_and(|l| {
            Supervisor::open(
                l,
                self.children.len(),
                self.global.max_processes,
                Instant::now(),
            )
        })
    }

    /// Make epoll watch exactly the listeners that are open. Run once per
    /// loop iteration; it looks only at the listeners `stale` names, and
    /// makes a syscall only for one whose answer changed.
    fn sync(&mut self) {
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
        for id in ids.drain(..) {
            let Some(l) = self.listeners.get_mut(&id) else {
                continue;
            };
            let open = Supervisor::open(l, processes, self.global.max_processes, now);
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
                Err(e) => error!(
                    self.log,
                    "error service={} msg={}",
                    l.service.name,
                    Q(&format!("epoll: {e}"))
                ),
            }
        }
        // Kept for its capacity.
        self.stale.listeners = ids;
    }

    fn on_listener(&mut self, id: u64) {
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        if !l.watching || l.state != ListenState::Armed {
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

    /// Accept one connection on listener `id`: close-on-exec, and
    /// non-blocking when the loop serves it itself (`nonblocking`; a
    /// handler gets it blocking). `None` when there is none to take now
    /// (the queue is empty, or accepting must pause).
    fn accept_one(&mut self, id: u64, nonblocking: bool) -> Option<(Socket, Accepted)> {
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
                        error!(
                            self.log,
                            "error service={name} msg={}",
                            Q(&format!("unable to accept: {e}"))
                        );
                        return None;
                    }
                },
            };
            if !l.backoff.is_zero() {
                let name = Rc::clone(&l.service.name);
                info!(self.log, "recovered service={name}");
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
    fn exhausted(&mut self, id: u64, e: &io::Error) {
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
        self.arm(id, ListenState::Paused(Instant::now() + pause));
        if first {
            error!(
                self.log,
                "exhausted service={name} msg={}",
                Q(&format!(
                    "unable to accept: {e}; pausing, backing off up to {}ms",
                    MAX_BACKOFF.as_millis()
                ))
            );
        }
    }

    /// Check a new peer of `running` against its access rules and limits.
    /// `Ok` gives what the connection is counted under; `Err` the reason.
    fn admit(&mut self, running: &Running, peer: SocketAddr) -> Result<Option<IpAddr>, String> {
        let ip = peer.ip();
        let svc = &running.svc;
        if !svc.access.is_open() {
            svc.access
                .check(ip, crate::sys::local_minute_of_day)
                .map_err(|d| d.to_string())?;
        }
        self.admit_load(running, Some(Load::source(&svc.limits, ip)))
    }

    /// Check a new connection against the service's rate limits, and its
    /// `per_source` when it has a `source` (an IP peer).
    fn admit_load(
        &mut self,
        running: &Running,
        source: Option<IpAddr>,
    ) -> Result<Option<IpAddr>, String> {
        let svc = &running.svc;
        let now = Instant::now();
        let verdict = running.load.borrow_mut().admit(&svc.limits, source, now);
        match verdict {
            Ok(()) => Ok(source),
            Err(Refusal::PerSource(n)) => Err(format!("reason=per_source limit={n}")),
            Err(Refusal::RatePause(pause)) => {
                self.touch(&running.name);
                let resume = Resume::Service(Rc::clone(&running.name));
                self.timers.push(Reverse((now + pause, resume)));
                let rate = svc.limits.rate.map_or_else(String::new, |r| r.describe());
                warning!(
                    self.log,
                    "rate-pause service={} {rate} paused_ms={}",
                    running.name,
                    pause.as_millis()
                );
                let (kind, limit) = rate.split_once('=').unwrap_or(("rate", ""));
                Err(format!("reason={kind} limit={limit}"))
            }
        }
    }

    /// Refuse an accepted TCP connection: `banner_fail`, if any, then close.
    fn refuse_stream(
        &mut self,
        running: &Running,
        conn: Socket,
        peer: Option<SocketAddr>,
        why: &str,
    ) {
        if let Some(banner) = &running.svc.banner_fail {
            // Best effort, never blocking: the client is being turned away.
            let _ = conn.send_with_flags(banner, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
            // FIN right after the banner, and discard what the client already
            // sent: closing with unread data would send a RST instead.
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 512];
            let _ = conn.recv_with_flags(&mut scratch, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
        }
        drop(conn);
        self.refused(running, peer.map(spawn::unmap), why);
    }

    /// stream nowait: accept until the queue is empty, a handler each.
    fn accept_connections(&mut self, id: u64) {
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
            let source = match self.admit(&running, peer) {
                Ok(source) => source,
                Err(why) => {
                    self.refuse_stream(&running, conn, Some(peer), &why);
                    continue;
                }
            };
            let fd = conn.as_raw_fd();
            let inv = Invocation::Peer {
                input: fd,
                output: fd,
                ends: Ends::Ip {
                    protocol: Protocol::Tcp,
                    local,
                    peer: Some(peer),
                },
            };
            if !self.start(&running, &inv, Some(peer), source, Extras::default()) {
                self.spawn_backoff(id);
            }
            // `conn` is closed here: the handler has its own copy.
        }
    }

    /// A connection on a UNIX-domain listener: no address to check, only
    /// the service's limits; the handler is told the peer's credentials.
    fn start_local(&mut self, id: u64, running: &Rc<Running>, conn: Socket) {
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

    /// Spawning failed (clone: EAGAIN, ENOMEM): rest the listener a little
    /// rather than fail every queued connection at once.
    fn spawn_backoff(&mut self, id: u64) {
        if let Some(l) = self.listeners.get_mut(&id) {
            l.backoff = (l.backoff * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
            let until = Instant::now() + l.backoff;
            self.arm(id, ListenState::Paused(until));
        }
    }

    /// An internal service over TCP: serve each connection on the loop.
    fn accept_internal(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            if !self.is_open(id) {
                return;
            }
            // Internal services listen on IP addresses only.
            let Some((sock, Accepted::Ip { peer, .. })) = self.accept_one(id, true) else {
                return;
            };
            let Some(running) = self.listeners.get(&id).map(|l| Rc::clone(&l.service)) else {
                return;
            };
            let held = self.conns.len() + self.listeners.len() + 2 * self.children.len();
            if !crate::fds::budget().leaves_reserve(sock.as_raw_fd(), held) {
                let why = format!("reason=fd_reserve reserve={}", crate::fds::budget().reserve);
                self.refuse_stream(&running, sock, Some(peer), &why);
                continue;
            }
            let source = match self.admit(&running, peer) {
                Ok(source) => source,
                Err(why) => {
                    self.refuse_stream(&running, sock, Some(peer), &why);
                    continue;
                }
            };
            running.load.borrow_mut().started(source);
            self.touch(&running.name);
            let (conn, interest) =
                internal::Conn::start(sock.into(), kind, self.stream_buf.as_mut_slice());
            let now = Instant::now();
            let c = InternalConn {
                conn,
                service: running,
                peer: spawn::unmap(peer),
                source,
                started: now,
                interest,
                active: false,
                quiet_since: now,
                idle: false,
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
                // Give back its place in `instances` and `per_source`.
                self.close_conn(c);
                continue;
            }
            self.schedule_sweep(now, c.service.svc.limits.idle_timeout);
            self.conns.insert(cid, c);
        }
    }

    /// Make sure an idle sweep comes in time for a connection with this
    /// `idle_timeout` (one timer for all connections, not one each).
    fn schedule_sweep(&mut self, now: Instant, timeout: Duration) {
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
    fn sweep_idle(&mut self, now: Instant) {
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
        if let Some(period) = next {
            self.sweep_at = Some(now + period);
            self.timers.push(Reverse((now + period, Resume::IdleSweep)));
        }
    }

    /// Readiness on an internal connection: let it make progress.
    fn on_conn(&mut self, cid: u64) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        c.active = true;
        let interest = c.conn.advance(self.stream_buf.as_mut_slice());
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

    fn close_conn(&mut self, mut c: InternalConn) {
        // A bulk transfer touched up to a MiB of scratch buffer, and maybe
        // a MiB of pending echo on the heap: give both back before the
        // close is seen, so an idle supervisor stays small.
        if c.conn.used_bulk_memory() {
            self.stream_buf.release(internal::SCRATCH_KEEP);
            c.conn.drop_pending();
            crate::sys::trim_heap();
        }
        c.service.load.borrow_mut().ended(c.source);
        self.touch(&c.service.name);
        let log = &c.service.svc.log;
        if !log.any_success() {
            return;
        }
        let traffic = log.traffic.then_some(&c.conn);
        info!(
            self.log,
            "done service={}{}{}{}{}{}",
            c.service.name,
            Opt("peer", log.host.then_some(c.peer)),
            Opt(
                "duration_ms",
                log.duration.then(|| c.started.elapsed().as_millis())
            ),
            Opt("bytes_in", traffic.map(|t| t.bytes_in)),
            Opt("bytes_out", traffic.map(|t| t.bytes_out)),
            Opt("reason", c.idle.then_some("idle"))
        );
    }

    /// An internal service over UDP: answer every queued datagram, in order.
    fn answer_datagrams(&mut self, id: u64, kind: Internal) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let (len, peer) = match receive(l, &mut self.dgram_buf, &mut self.log) {
                Received::Datagram(len, peer) => (len, peer),
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
                    Some("reason=source-port".to_string())
                } else if let Err(d) = running
                    .svc
                    .access
                    .check(peer.ip(), crate::sys::local_minute_of_day)
                {
                    Some(d.to_string())
                } else if let Verdict::Drop(report) =
                    self.peers
                        .check(peer, running.svc.limits.peer_reply_rate, now)
                {
                    if let Some(n) = report {
                        warning!(
                            self.log,
                            "reply-dropped service={} peer={} replies={n}",
                            running.name,
                            spawn::unmap(peer)
                        );
                    }
                    continue;
                } else if !running.take_reply(now) {
                    Some("reason=reply_rate".to_string())
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
            let _ = l.socket.send_to(reply, &peer.into());
        }
    }

    /// Log a refusal (`why` is `reason=... [rule=...]`), at most a few lines
    /// a second per service, as `log_on_failure` asks.
    fn refused(&mut self, running: &Running, peer: Option<SocketAddr>, why: &str) {
        let log = running.svc.log;
        if !log.attempt {
            return;
        }
        let Some(suppressed) = running.refusals.borrow_mut().admit(Instant::now()) else {
            return;
        };
        let host = match peer {
            Some(peer) if log.fail_host => format!(" peer={peer}"),
            _ => String::new(),
        };
        let more = if suppressed > 0 {
            format!(" suppressed={suppressed}")
        } else {
            String::new()
        };
        info!(
            self.log,
            "refuse service={}{host} {why}{more}", running.name
        );
    }

    /// dgram nowait: a handler per datagram, its stdout the reply.
    fn relay_datagrams(&mut self, id: u64) {
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(&id) else {
                return;
            };
            let (len, peer) = match receive(l, &mut self.dgram_buf, &mut self.log) {
                Received::Datagram(len, peer) => (len, peer),
                Received::Skip => continue,
                Received::Done => return,
            };
            let running = Rc::clone(&l.service);
            // dgram nowait is refused on UNIX-domain sockets at load.
            let Some(local) = l.local else {
                return;
            };
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
                        Q(&e.to_string())
                    );
                    continue;
                }
            };
            let inv = Invocation::Peer {
                input: request.as_raw_fd(),
                output: out_w.as_raw_fd(),
                ends: Ends::Ip {
                    protocol: Protocol::Udp,
                    local,
                    peer: Some(peer),
                },
            };
            let reply = Reply {
                listener: id,
                peer,
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

    /// wait: the handler gets the socket; stop watching it until it exits.
    fn hand_over_socket(&mut self, id: u64) {
        let Some(l) = self.listeners.get(&id) else {
            return;
        };
        let running = Rc::clone(&l.service);
        let (protocol, local) = (running.svc.protocol, l.local);
        let path = l.file.as_ref().map(|f| Rc::clone(&f.path));
        let probe = if protocol == Protocol::Udp {
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
                self.refused(&running, Some(spawn::unmap(p)), &d.to_string());
                return;
            }
        }
        let fd = l.socket.as_raw_fd();
        let ends = match (&path, local) {
            (Some(path), _) => Ends::Unix { path, cred: None },
            (None, Some(local)) => Ends::Ip {
                protocol,
                local,
                peer,
            },
            (None, None) => return,
        };
        let inv = Invocation::Socket {
            socket: fd,
            ends,
            activation: protocol == Protocol::Tcp,
        };
        let extras = Extras {
            holds: Some(id),
            probe: Some(probe),
            ..Extras::default()
        };
        if self.start(&running, &inv, peer, None, extras) {
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
        source: Option<IpAddr>,
        extras: Extras,
    ) -> bool {
        let Some(plan) = running.plan.as_ref() else {
            return false;
        };
        let spawned = match self.spawner.spawn(plan, inv) {
            Ok(s) => s,
            Err(e) => {
                let admitted = running.refusals.borrow_mut().admit(Instant::now());
                if let Some(suppressed) = admitted {
                    let peer = peer
                        .map(|p| format!(" peer={}", spawn::unmap(p)))
                        .unwrap_or_default();
                    error!(
                        self.log,
                        "error service={}{peer} msg={} suppressed={suppressed}",
                        running.name,
                        Q(&e.to_string())
                    );
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
            info!(
                self.log,
                "start service={}{}{}{}{}",
                running.name,
                Opt("pid", log.pid.then_some(pid)),
                Opt("peer", peer.filter(|_| log.host).map(spawn::unmap)),
                Opt("peer_uid", cred.map(|c| c.uid())),
                Opt("peer_pid", cred.map(|c| c.pid()))
            );
        }
        running.load.borrow_mut().started(source);
        self.touch(&running.name);
        self.children.insert(
            pid,
            Child {
                service: Rc::clone(&running.name),
                protocol: running.svc.protocol,
                peer,
                started: Instant::now(),
                stderr,
                holds: extras.holds,
                probe: extras.probe,
                reply: extras.reply,
                load: Rc::clone(&running.load),
                source,
                log,
            },
        );
        if self.children.len() == self.global.max_processes {
            self.stale.all = true;
        }
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
        let now = Instant::now();
        let shared = &mut child.load.borrow_mut().stderr;
        let eof = pipe.drain(shared, now, children::READS_PER_TURN, |line| {
            info!(log, "stderr service={service} pid={pid} line={}", Q(line));
        });
        let dropped = if eof {
            pipe.dropped.rest()
        } else {
            pipe.dropped.report(now)
        };
        if let Some(n) = dropped {
            warning!(log, "stderr-dropped service={service} pid={pid} lines={n}");
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
    fn resume_stderr(&mut self, pid: i32) {
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
            error!(self.log, "error msg={}", Q(&format!("epoll: {e}")));
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
                let shared = &mut child.load.borrow_mut().stderr;
                pipe.drain(shared, Instant::now(), children::READS_AT_EXIT, |line| {
                    info!(log, "stderr service={service} pid={pid} line={}", Q(line));
                });
                if let Some(n) = pipe.dropped.rest() {
                    warning!(log, "stderr-dropped service={service} pid={pid} lines={n}");
                }
                let _ = self.epoll.delete(pipe.fd.as_fd());
            }
            if let Some((step, errno)) = self.spawner.failure(pid) {
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
            child.load.borrow_mut().ended(child.source);
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
                info!(
                    self.log,
                    "exit service={}{}{}{}{}{}",
                    child.service,
                    Opt("pid", log.pid.then_some(pid)),
                    Opt("status", status),
                    Opt("signal", signal),
                    Opt("core", core.then_some(true)),
                    Opt(
                        "duration_ms",
                        log.duration.then(|| child.started.elapsed().as_millis())
                    )
                );
            }
            if let Some(id) = child.holds {
                self.release(id, child.probe.as_ref(), child.started);
            }
        }
    }

    /// A `wait` handler exited: re-arm its listener, unless handlers keep
    /// exiting without reading the datagram (or accepting a connection)
    /// they were started for (which would otherwise be a spawn loop): then
    /// pause the service.
    fn release(&mut self, id: u64, started_for: Option<&Probe>, started: Instant) {
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
        let what = match started_for {
            Some(Probe::Queue(_)) => "accepting",
            _ => "reading",
        };
        warning!(
            self.log,
            "looping service={} handlers_exited_without_{what}={} paused_ms={}",
            l.service.name,
            l.idle_exits,
            pause.as_millis()
        );
        l.idle_exits = 0;
        self.arm(id, ListenState::Paused(Instant::now() + pause));
    }

    fn next_timer(&self) -> Option<Instant> {
        let pause = self.timers.peek().map(|Reverse((at, _))| *at);
        let drain = self.draining.as_ref().map(Drain::deadline);
        pause.into_iter().chain(drain).min()
    }

    /// End the pauses that are due.
    fn on_timers(&mut self) {
        let now = Instant::now();
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((_, due))) = self.timers.pop() else {
                break;
            };
            match due {
                Resume::Listener(id) => {
                    let Some(l) = self.listeners.get(&id) else {
                        continue;
                    };
                    // Paused again meanwhile: that pause has its own entry.
                    if matches!(l.state, ListenState::Paused(until) if until <= now) {
                        info!(self.log, "resume service={} addr={}", l.service.name, l.key);
                        self.arm(id, ListenState::Armed);
                    }
                }
                Resume::IdleSweep => self.sweep_idle(now),
                Resume::Stderr(pid) => self.resume_stderr(pid),
                Resume::Service(name) => {
                    let Some(load) = self.loads.get(&*name) else {
                        continue;
                    };
                    let ended = {
                        let mut load = load.borrow_mut();
                        let ended = load.paused_until.is_some_and(|t| t <= now);
                        if ended {
                            load.paused_until = None;
                        }
                        ended
                    };
                    if ended {
                        info!(self.log, "resume service={name} reason=rate");
                        self.touch(&name);
                    }
                }
            }
        }
    }

    /// SIGUSR1: one `state` line per service, then a summary. Rare and on
    /// demand, so plain formatting is fine here.
    fn log_state(&mut self) {
        let now = Instant::now();
        let mut names: Vec<&Rc<str>> = self.by_service.keys().collect();
        names.sort();
        for name in names {
            let ids = &self.by_service[name];
            let mut listen = String::new();
            let mut svc = None;
            let mut paused = false;
            for l in ids.iter().filter_map(|id| self.listeners.get(id)) {
                if !listen.is_empty() {
                    listen.push(',');
                }
                match l.local {
                    Some(a) => listen.push_str(&format!("{a}/{}", l.key.protocol)),
                    None => listen.push_str(&l.key.to_string()),
                }
                paused |= matches!(l.state, ListenState::Paused(_));
                svc = Some(Rc::clone(&l.service));
            }
            let Some(svc) = svc else { continue };
            let load = svc.load.borrow();
            paused |= load.paused(now);
            let max = svc.svc.limits.max_instances(svc.spawns());
            let instances = if max == usize::MAX {
                "none".to_string()
            } else {
                max.to_string()
            };
            let mode = match svc.mode {
                Mode::Accept => "stream-nowait",
                Mode::Relay => "dgram-nowait",
                Mode::HandOver => "wait",
                Mode::InternalStream(_) | Mode::InternalDgram(_) => "internal",
            };
            info!(
                self.log,
                "state service={name} listen={} mode={mode} running={}/{instances} paused={paused}",
                Q(&listen),
                load.running,
            );
        }
        info!(
            self.log,
            "state services={} listeners={} handlers={} connections={} max_processes={} draining={}",
            self.by_service.len(),
            self.listeners.len(),
            self.children.len(),
            self.conns.len(),
            self.global.max_processes,
            self.draining.is_some()
        );
    }

    /// SIGHUP: load the config again; apply it only if it is entirely valid.
    fn reload(&mut self) {
        self.notifier.reloading();
        let started = Instant::now();
        let loaded = match config::load_with(&self.opts.config, self.opts.format, &self.ctx) {
            Ok(l) if l.errors.is_empty() => {
                log_problems(&mut self.log, &l);
                l
            }
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
        crate::sys::trim_heap();
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

/// What loading found besides the services: errors (their services do not
/// run), services of another format that cannot run, settings ignored.
fn log_problems(log: &mut Log, loaded: &config::Loaded) {
    for e in &loaded.errors {
        error!(log, "config-error at={} msg={}", e.at, Q(&e.message));
    }
    for e in &loaded.skipped {
        error!(log, "config-skipped at={} msg={}", e.at, Q(&e.message));
    }
    for w in &loaded.warnings {
        warning!(log, "config-warning at={} msg={}", w.at, Q(&w.message));
    }
}

/// A `wait` handler shares the socket's file status and expects a blocking
/// socket, as under every inetd; the loop itself only ever accepts or
/// receives until EAGAIN.
fn blocking(mode: Mode) -> bool {
    mode == Mode::HandOver
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

/// Whether connections wait in a listening stream socket's queue: its
/// length for TCP, readiness where the kernel does not tell (UNIX-domain).
fn pending(socket: &Socket) -> bool {
    if let Some(n) = crate::sys::accept_queue(socket.as_fd()) {
        return n > 0;
    }
    let mut fds = [nix::poll::PollFd::new(
        socket.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).is_ok_and(|n| n > 0)
}

/// What one `recvfrom` on a datagram listener gave.
enum Received {
    /// A datagram of this length, from this peer, in the buffer.
    Datagram(usize, SocketAddr),
    /// Nothing to answer (interrupted, or no IP sender): try the next.
    Skip,
    /// The queue is empty, or receiving failed (logged).
    Done,
}

/// Receive the next datagram on `l` into `buf`.
fn receive(l: &Listener, buf: &mut [u8], log: &mut Log) -> Received {
    match nix::sys::socket::recvfrom::<SockaddrStorage>(l.socket.as_raw_fd(), buf) {
        Ok((len, from)) => match from.as_ref().and_then(storage_to_std) {
            Some(peer) => Received::Datagram(len, peer),
            None => Received::Skip,
        },
        Err(nix::errno::Errno::EAGAIN) => Received::Done,
        Err(nix::errno::Errno::EINTR) => Received::Skip,
        Err(e) => {
            error!(
                log,
                "error service={} msg={}",
                l.service.name,
                Q(&format!("unable to receive: {e}"))
            );
            Received::Done
        }
    }
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
            Token::Listener(42),
            Token::Stderr(123456),
            Token::Reply(7),
            Token::Conn(9),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
    }
}
