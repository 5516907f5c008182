//! The supervisor: one thread, one epoll loop, handlers as child processes.
//!
//! Each iteration: wait for events (or the next timer) → handle the signal
//! pipe (reap, reload, terminate) → handle ready listeners and handler pipes
//! → resume paused listeners. States: serving, then draining after SIGTERM.
//!
//! Two error regimes (as in catatonit): while starting, an unusable config is
//! fatal; once serving, every error is logged with its service and the loop
//! goes on, so one broken service never stops the others.
//!
//! This file holds the state, the loop and its dispatch; each kind of
//! event is handled in a file of its own, all `impl Supervisor`:
//!
//! - `listeners` — binding and closing listeners, their states, and `sync`
//!   of the poll set (backpressure by not watching).
//! - `admission` — access rules and limits for a new peer; refusals.
//! - `accept` — stream `nowait`: accept, a handler per connection.
//! - `conns` — internal services over TCP, served on the loop; idle sweep.
//! - `forwards` — `forward` services: connections relayed upstream.
//! - `datagrams` — internal UDP answers, dgram `nowait` relays.
//! - `wait` — `wait` services: the socket handed over, loops detected.
//! - `handlers` — spawning and recording a handler, its stderr, its
//!   reply, reaping.
//! - `apply` — a config made the running one, at start and on SIGHUP.
//! - `timers` — pauses ending, idle sweeps, stderr pipes resumed,
//!   handlers' `timeout`s.
//! - `state` — SIGUSR1's `state` lines and `status`'s snapshot.
//! - `handover` — listeners given at start, the fd store, re-exec on
//!   SIGUSR2.
//! - `control` — the control socket: `oxinetd status`, `reload`, `stop`.
//! - `proxied` — `proxy_protocol`: a connection's PROXY header read
//!   before it is served as from the client it names.

mod accept;
mod admission;
mod apply;
mod conns;
mod control;
mod datagrams;
mod forwards;
mod handlers;
mod handover;
mod listeners;
mod proxied;
mod state;
mod timers;
mod wait;

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::children::Children;
use crate::config::{self, Context, Handler, Service, Severity, WaitMode};
use crate::fds::FdBudget;
use crate::flood::PeerLimit;
use crate::handover::{Assigned, Intake};
use crate::idmap::IdMap;
use crate::internal::{self, Internal};
use crate::limits::{Load, Retired};
use crate::log::{Event, Log};
use crate::notify::Notifier;
use crate::shutdown::{Drain, Next};
use crate::signals::Signals;
use crate::spawn::{Plan, Spawner};
use crate::sys::Pages;

use apply::log_problems;
use conns::InternalConn;
use forwards::ForwardConn;
use listeners::{ListenState, Listener};

/// Exit codes (sysexits), so a service manager can tell a bad config
/// (don't restart) from a temporary failure.
pub const EXIT_CONFIG: u8 = 78;
pub const EXIT_OSERR: u8 = 71;

/// Connections accepted (or datagrams read) per listener per wake-up, so
/// one busy service cannot starve the others.
const BATCH: usize = 64;

/// What the event loop can be woken by, packed in the epoll token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Listener(u64),
    Stderr(i32),
    Reply(i32),
    Conn(u64),
    /// The control socket (0) or one of its clients.
    Control(u64),
    /// A connection waiting for its PROXY header (`proxied`).
    Proxied(u64),
    /// A forward's socket: its id shifted left once, the low bit set for
    /// the upstream side.
    Forward(u64),
}

impl Token {
    fn encode(self) -> u64 {
        match self {
            Token::Listener(id) => 1 << 56 | id,
            Token::Stderr(pid) => 2 << 56 | pid as u32 as u64,
            Token::Reply(pid) => 3 << 56 | pid as u32 as u64,
            Token::Conn(id) => 4 << 56 | id,
            Token::Control(id) => 5 << 56 | id,
            Token::Proxied(id) => 6 << 56 | id,
            Token::Forward(v) => 7 << 56 | v,
        }
    }

    fn decode(v: u64) -> Option<Token> {
        let low = v & ((1 << 56) - 1);
        match v >> 56 {
            1 => Some(Token::Listener(low)),
            2 => Some(Token::Stderr(low as i32)),
            3 => Some(Token::Reply(low as i32)),
            4 => Some(Token::Conn(low)),
            5 => Some(Token::Control(low)),
            6 => Some(Token::Proxied(low)),
            7 => Some(Token::Forward(low)),
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
    /// The control socket, over the config's `control_socket`.
    pub control: Option<PathBuf>,
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
    /// A `forward`: each connection relayed upstream on the loop.
    Forward,
}

/// A service as the supervisor runs it: the config and its prepared exec.
struct Running {
    svc: Service,
    name: Rc<str>,
    mode: Mode,
    /// The exec plan; for an internal service or a forward, its TLS
    /// relay's (`tls`, `forward_tls`), else `None`.
    plan: Option<Plan>,
    /// Start of the current second and replies sent in it (UDP internal).
    replies: std::cell::Cell<(Instant, u32)>,
    /// Handlers running and recent connections; shared with the service's
    /// running handlers and carried to its next config on reload.
    load: Rc<RefCell<Load>>,
    /// Connections waiting for their PROXY header (`proxied`).
    pending: std::cell::Cell<usize>,
}

impl Running {
    fn new(
        mut svc: Service,
        plan: Option<Plan>,
        load: Rc<RefCell<Load>>,
        fds: &FdBudget,
    ) -> Running {
        let connected = svc.kind.is_connected();
        if svc.handler.in_process() && connected {
            svc.limits = crate::config::Rare::new(svc.limits.with_internal_defaults(fds));
        }
        let mode = match (&svc.handler, svc.wait) {
            (Handler::Internal(i), _) if connected => Mode::InternalStream(*i),
            (Handler::Internal(i), _) => Mode::InternalDgram(*i),
            (Handler::Forward(_), _) => Mode::Forward,
            (_, WaitMode::Wait) => Mode::HandOver,
            (_, WaitMode::Nowait) if connected => Mode::Accept,
            (_, WaitMode::Nowait) => Mode::Relay,
        };
        load.borrow_mut().prepare(&svc.limits);
        Running {
            name: Rc::from(svc.name.as_str()),
            svc,
            mode,
            plan,
            replies: std::cell::Cell::new((Instant::now(), 0)),
            load,
            pending: std::cell::Cell::new(0),
        }
    }

    /// Whether this service runs handler processes (and so counts against
    /// `max_processes`).
    /// Whether its connections start processes (handlers, or the TLS
    /// relays of an internal service or a forward): then it stops
    /// accepting at `max_processes`.
    fn spawns(&self) -> bool {
        matches!(self.mode, Mode::Accept | Mode::Relay | Mode::HandOver) || self.plan.is_some()
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
    /// A handler's `timeout` (SIGTERM) or its `kill_grace` (SIGKILL) is
    /// over; `serial` tells it from a later handler with the same pid.
    Deadline {
        pid: i32,
        serial: u64,
    },
    /// A control client's time is up (`control::DEADLINE`).
    Control(u64),
    /// A connection's `proxy_timeout` for its PROXY header is over.
    Proxied(u64),
    /// A forward's connect upstream is due (`forward_timeout`).
    Connect(u64),
    /// The window in which a service's refusal (or spawn error) lines
    /// were held back is over: report how many, unless a line has.
    Suppressed(Rc<str>),
}

/// The running supervisor: what it was asked, its listeners, handlers and
/// internal connections, and the loop's bookkeeping. Each file of this
/// module adds its part of `impl Supervisor`.
pub struct Supervisor {
    opts: Options,
    /// Who we run as, for resolving the config again on SIGHUP.
    ctx: Context,
    /// The running config's `[global]` settings.
    global: config::Global,
    log: Log,
    epoll: Epoll,
    signals: Signals,
    notifier: Notifier,
    /// Bound listeners by id (their epoll token).
    /// Boxed: the map keeps spare slots (a power of two), each the size of
    /// its value.
    listeners: IdMap<u64, Box<Listener>>,
    /// Listener ids by service name, for `Stale::services`.
    by_service: HashMap<Rc<str>, Vec<u64>>,
    /// What `sync` has to look at.
    stale: Stale,
    /// Pauses to end, soonest first.
    timers: BinaryHeap<Reverse<(Instant, Resume)>>,
    /// Entries in `timers` of handlers reaped before their `timeout`
    /// came (`timers::forget_deadline`).
    stale_deadlines: usize,
    /// Running handlers, by pid.
    children: Children,
    spawner: Spawner,
    /// Internal services' TCP connections, by id.
    conns: IdMap<u64, InternalConn>,
    /// Connections waiting for their PROXY header, by id (`proxied`).
    proxied: IdMap<u64, proxied::Pending>,
    /// Forwarded connections, by id.
    forwards: IdMap<u64, ForwardConn>,
    /// Entries `Resume::Connect` in `timers` whose connect has ended
    /// (`forwards::forget_connect`).
    stale_connects: usize,
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
    /// The descriptors the supervisor may use (`RLIMIT_NOFILE`, as raised
    /// at start): internal services' defaults and the reserve they leave.
    fd_budget: FdBudget,
    /// When the next idle sweep is due (`Resume::IdleSweep`), if any.
    sweep_at: Option<Instant>,
    /// Set once SIGTERM/SIGINT arrived: the stop's progress (`shutdown`).
    draining: Option<Drain>,
    /// Sockets given at start, each matched with a listener, until
    /// `add_listener` takes it instead of binding (`handover`).
    given: Assigned,
    /// What the fd store holds: each service's listener ids.
    stored: HashMap<Rc<str>, Vec<u64>>,
    /// SIGUSR2 arrived and waits for handlers that hold a socket.
    upgrade_pending: bool,
    /// A pending upgrade waits for connections' PROXY headers: the
    /// listeners of `proxy_protocol` services are not watched meanwhile.
    upgrade_quiet: bool,
    /// The control socket, when bound, and its clients by id.
    control: Option<control::ControlSocket>,
    control_conns: IdMap<u64, control::ControlConn>,
    /// Every service of the running config, listening or not (`status`).
    running: Vec<Rc<Running>>,
    /// Listeners of the running config that could not be bound, and why.
    bind_failures: Vec<(Rc<str>, config::ListenKey, String)>,
    /// When oxinetd started, and when the running config was loaded.
    started: Instant,
    started_at: SystemTime,
    loaded_at: SystemTime,
    /// Reloads done and refused.
    counters: crate::stats::Global,
}

/// Start serving; returns the process exit code.
pub fn run(opts: Options) -> u8 {
    crate::sys::prepare_process(crate::handover::is_reexec());
    let intake = Intake::from_env();
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
    for msg in &intake.problems {
        log.event(Event::warning(msg));
    }
    // Services were asked for and none can run: a restart would not fix
    // that. A config that asks for none (a package's, every service
    // commented out or disabled) runs idle until a reload adds one, as
    // openbsd-inetd does, so a fresh install is not a failed unit.
    let idle = loaded.config.services.is_empty();
    let refused = loaded.problems(Severity::Error).next().is_some()
        || loaded.problems(Severity::Skipped).next().is_some();
    if idle && refused {
        let msg = format!("no valid service in {}", opts.config.display());
        log.event(Event::Fatal { msg: &msg });
        return EXIT_CONFIG;
    }
    let mut sup = match Supervisor::new(opts, ctx, loaded.config.global.clone(), log) {
        Ok(s) => s,
        Err(failed) => {
            let (mut log, e) = *failed;
            let msg = format!("unable to start: {e}");
            log.event(Event::Fatal { msg: &msg });
            return EXIT_OSERR;
        }
    };
    let unused = sup.take_given(intake.given, &loaded.config);
    sup.apply(loaded.config);
    sup.sync_control();
    sup.given_left();
    sup.adopt(intake.handlers);
    sup.sync_store(&unused);
    crate::sys::trim_heap();
    if sup.listeners.is_empty() && !idle {
        let msg = "no listener could be bound";
        sup.log.event(Event::Fatal { msg });
        return EXIT_OSERR;
    }
    if let Some(p) = &sup.opts.pidfile {
        if let Err(e) = write_pidfile(p) {
            let msg = format!("unable to write pidfile {}: {e}", p.display());
            sup.log.event(Event::error(&msg));
        }
    }
    if idle {
        sup.log.event(Event::Idle {
            config: &sup.opts.config,
        });
    }
    let listeners = sup.listeners.len();
    sup.log.event(Event::Ready { listeners });
    sup.notifier.ready();
    sup.serve();
    // Its file is removed; a `stop` client sees EOF when we exit.
    sup.control = None;
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
            let msg = format!("{e}; logging to stderr");
            l.event(Event::Warning {
                service: None,
                pid: None,
                msg: &msg,
            });
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
    ) -> Result<Supervisor, Box<(Log, io::Error)>> {
        let setup = || -> io::Result<(Epoll, Signals, Spawner, Pages)> {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
            let signals = Signals::install()?;
            let spawner = Spawner::new(crate::sys::raise_nofile())?;
            Ok((epoll, signals, spawner, Pages::new(internal::SCRATCH)?))
        };
        let (epoll, signals, spawner, stream_buf) = match setup() {
            Ok(s) => s,
            Err(e) => return Err(Box::new((log, e))),
        };
        Ok(Supervisor {
            opts,
            ctx,
            global,
            log,
            epoll,
            signals,
            notifier: Notifier::from_env(),
            listeners: IdMap::default(),
            by_service: HashMap::new(),
            stale: Stale::default(),
            timers: BinaryHeap::new(),
            stale_deadlines: 0,
            children: Children::default(),
            spawner,
            conns: IdMap::default(),
            proxied: IdMap::default(),
            forwards: IdMap::default(),
            stale_connects: 0,
            dgram_buf: vec![0; 65536],
            stream_buf,
            reply_buf: Vec::with_capacity(65536),
            internal_ports: Vec::new(),
            peers: PeerLimit::default(),
            loads: HashMap::new(),
            retired: Retired::default(),
            spare_fd: std::fs::File::open("/dev/null").ok(),
            next_id: 1,
            fd_budget: FdBudget::current(),
            sweep_at: None,
            draining: None,
            given: Assigned::new(),
            stored: HashMap::new(),
            upgrade_pending: false,
            upgrade_quiet: false,
            control: None,
            control_conns: IdMap::default(),
            running: Vec::new(),
            bind_failures: Vec::new(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            loaded_at: SystemTime::now(),
            counters: crate::stats::Global::default(),
        })
    }

    /// The event loop; returns when draining is over.
    fn serve(&mut self) {
        let mut events = vec![EpollEvent::empty(); 256];
        loop {
            self.log.flush();
            let mut next = self.next_timer();
            if self.upgrade_pending {
                // An upgrade waits for a child between clone and exec (or
                // for handlers, whose exit wakes the loop anyway).
                let soon = Instant::now() + Duration::from_millis(10);
                next = Some(next.map_or(soon, |at| at.min(soon)));
            }
            let timeout = next.map_or(EpollTimeout::NONE, |at| {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                EpollTimeout::try_from(ms.min(60_000)).unwrap_or(EpollTimeout::MAX)
            });
            let mask = self.signals.wait_mask();
            let n = match crate::sys::epoll_pwait(&self.epoll, &mut events, timeout, mask) {
                Ok(n) => n,
                // Signals get in here, ending the wait, and after a wait
                // that returned events (`let_in_pending` below).
                Err(nix::errno::Errno::EINTR) => {
                    self.on_signals();
                    0
                }
                Err(e) => {
                    self.log.event(Event::error(&format!("epoll_pwait: {e}")));
                    0
                }
            };
            for ev in &events[..n] {
                match Token::decode(ev.data()) {
                    Some(Token::Listener(id)) => self.on_listener(id),
                    Some(Token::Stderr(pid)) => self.on_stderr(pid),
                    Some(Token::Reply(pid)) => self.on_reply(pid),
                    Some(Token::Conn(id)) => self.on_conn(id),
                    Some(Token::Control(id)) => self.on_control(id),
                    Some(Token::Proxied(id)) => {
                        let hup = EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP;
                        self.on_proxied(id, ev.events().intersects(hup));
                    }
                    Some(Token::Forward(v)) => self.on_forward(v, ev.events()),
                    None => {}
                }
            }
            if n > 0 && self.signals.let_in_pending() {
                self.on_signals();
            }
            self.on_timers();
            self.sync();
            if self.upgrade_pending && self.draining.is_none() {
                self.upgrade();
            }
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
            self.begin_drain(None);
        }
        if pending.reload && self.draining.is_none() {
            // The outcome is logged; only `oxinetd reload` has someone to
            // tell it to.
            let _ = self.reload();
        }
        if pending.dump {
            self.log_state();
        }
        if pending.upgrade && self.draining.is_none() {
            self.upgrade();
        }
    }

    /// Stop: close every listener and wait `grace` (else `shutdown_grace`)
    /// for the handlers (`shutdown`).
    fn begin_drain(&mut self, grace: Option<Duration>) {
        self.notifier.stopping();
        // With the fd store, the sockets outlive this process: the next
        // run takes them back, so their files stay too.
        let keep_files = self.notifier.fd_store();
        for (_, mut l) in self.listeners.drain() {
            let _ = self.epoll.delete(l.socket.as_fd());
            if keep_files {
                std::mem::forget(l.file.take());
            }
        }
        self.by_service.clear();
        // Not served yet: closed with the listeners.
        self.proxied.clear();
        self.log.event(Event::Stopping {
            handlers: self.children.len(),
            grace_ms: grace.unwrap_or(self.global.shutdown_grace).as_millis(),
        });
        let grace = grace.unwrap_or(self.global.shutdown_grace);
        self.draining = Some(Drain::new(Instant::now(), grace));
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
            Mode::Forward => self.accept_forward(id),
        }
    }
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
            Token::Control(3),
            Token::Proxied(11),
            Token::Forward(9 << 1 | 1),
        ] {
            assert_eq!(Token::decode(t.encode()), Some(t));
        }
    }
}
