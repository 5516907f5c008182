//! Every line the supervisor logs, as a type: one variant per event, its
//! fields typed. `Event::write` writes the line in the grammar of `log`
//! (event word, then ` key=value` pairs in a fixed order); nothing else in
//! the crate writes a `key=value`. Each event also has its fixed level.
//!
//! An event is built on the stack and written straight into the log's
//! buffer: the per-connection lines (`start`, `exit`, `done`) push their
//! names, numbers and addresses as bytes (`render`), with no allocation
//! and no `core::fmt`.

use std::fmt;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Level, Q};
use crate::config::ListenKey;
use crate::limits::Rate;
use crate::refusal::Refusal;
use crate::render::Render;

/// A config problem's kind, as its event word says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Its service does not run; a reload with one is refused.
    Error,
    /// Valid, but not supported: not run.
    Skipped,
    /// A setting ignored or changed.
    Warning,
}

/// One log line.
pub enum Event<'a> {
    /// A listener is bound and watched.
    Listen {
        service: &'a str,
        proto: &'a str,
        addr: &'a str,
        wait: bool,
        /// Given, not bound: the fd it arrived on (`handover`).
        inherited: Option<i32>,
    },
    /// SIGUSR2: the supervisor executes `exe` again, keeping these.
    Upgrade {
        exe: &'a std::path::Path,
        listeners: usize,
        handlers: usize,
    },
    /// A listener a reload removed is closed.
    Close {
        service: &'a str,
        addr: &'a ListenKey,
    },
    /// A paused listener is watched again.
    Resume {
        service: &'a str,
        addr: &'a ListenKey,
    },
    /// A service paused by its `cps`/`rate` serves again.
    RateResume { service: &'a str },
    /// A listener that ran out of descriptors or memory accepts again.
    Recovered { service: &'a str },
    /// Accepting failed for lack of descriptors or memory (once per
    /// episode).
    Exhausted { service: &'a str, msg: &'a str },
    /// A peer turned away; `suppressed`: refusals not logged before it.
    Refuse {
        service: &'a str,
        peer: Option<SocketAddr>,
        /// The balancer the peer came through (`proxy_protocol`).
        via: Option<SocketAddr>,
        reason: &'a Refusal,
        suppressed: u64,
    },
    /// A service exceeded its `cps`/`rate` and pauses.
    RatePause {
        service: &'a str,
        rate: &'a Rate,
        paused: Duration,
    },
    /// UDP replies to one peer were dropped (`peer_reply_rate`).
    ReplyDropped {
        service: &'a str,
        peer: SocketAddr,
        replies: u64,
    },
    /// A handler started; absent fields are not asked for by
    /// `log_on_success`.
    Start {
        service: &'a str,
        pid: Option<i32>,
        peer: Option<SocketAddr>,
        /// The balancer the peer came through (`proxy_protocol`).
        via: Option<SocketAddr>,
        peer_uid: Option<u32>,
        peer_pid: Option<i32>,
    },
    /// A handler was reaped.
    Exit {
        service: &'a str,
        pid: Option<i32>,
        status: Option<i32>,
        signal: Option<&'a str>,
        core: bool,
        /// It had run past its `timeout` and was signalled (`reason=timeout`).
        timed_out: bool,
        duration_ms: Option<u128>,
    },
    /// A handler ran past its `timeout`: its process group was sent
    /// `signal` (SIGTERM, then SIGKILL after `kill_grace`).
    Timeout {
        service: &'a str,
        pid: i32,
        after_ms: u128,
        signal: Signal,
    },
    /// An internal service's or a forward's TCP connection ended.
    Done {
        service: &'a str,
        peer: Option<SocketAddr>,
        /// The balancer the peer came through (`proxy_protocol`).
        via: Option<SocketAddr>,
        /// A forward's upstream address.
        upstream: Option<SocketAddr>,
        duration_ms: Option<u128>,
        /// From the client (a forward: relayed upstream).
        bytes_in: Option<u64>,
        /// To the client.
        bytes_out: Option<u64>,
        /// `internal:metrics`: the HTTP status answered, if any.
        status: Option<u16>,
        /// Why it ended, when not by both sides closing: `idle`
        /// (`idle_timeout`), or a socket's error.
        reason: Option<&'a str>,
    },
    /// A line a handler wrote on stderr.
    Stderr {
        service: &'a str,
        pid: i32,
        line: &'a str,
    },
    /// stderr lines of a handler not logged (over its budget).
    StderrDropped {
        service: &'a str,
        pid: i32,
        lines: u64,
    },
    /// Refusal (or spawn error) lines of a service held back in a window
    /// that has ended with no later line to carry their count.
    Suppressed { service: &'a str, lines: u64 },
    /// `wait` handlers keep exiting without taking their work: paused.
    Looping {
        service: &'a str,
        /// Stream (no connection accepted) rather than datagram (none read).
        accepting: bool,
        exits: u32,
        paused: Duration,
    },
    /// Something failed once serving; the loop goes on.
    Error {
        service: Option<&'a str>,
        pid: Option<i32>,
        peer: Option<SocketAddr>,
        msg: &'a str,
        suppressed: Option<u64>,
    },
    /// Something went not quite as asked.
    Warning {
        service: Option<&'a str>,
        pid: Option<i32>,
        msg: &'a str,
    },
    /// The supervisor cannot start.
    Fatal { msg: &'a str },
    /// A problem of a config file, at `at` (`FILE:LINE:COL`).
    Config {
        problem: Problem,
        at: &'a dyn fmt::Display,
        msg: &'a str,
    },
    /// Serving: the listeners are bound.
    Ready { listeners: usize },
    /// The config names no service to run (all commented out or
    /// disabled): oxinetd waits for a reload that adds one.
    Idle { config: &'a std::path::Path },
    /// The control socket (`oxinetd status`, `reload`, `stop`) is bound.
    Control { path: &'a std::path::Path },
    /// A reload was applied.
    Reload {
        listeners: usize,
        kept: usize,
        bound: usize,
        closed: usize,
        duration_us: u128,
    },
    /// A reload found errors: the running config stays.
    ReloadFailed { errors: usize },
    /// SIGUSR1: one service. `instances`: `None` for no limit.
    ServiceState {
        service: &'a str,
        listen: &'a str,
        mode: &'a str,
        running: usize,
        instances: Option<usize>,
        paused: bool,
    },
    /// SIGUSR1: the summary after the services.
    State {
        services: usize,
        listeners: usize,
        handlers: usize,
        connections: usize,
        max_processes: usize,
        draining: bool,
    },
    /// SIGTERM/SIGINT: the listeners are closed, handlers get their grace.
    Stopping { handlers: usize, grace_ms: u128 },
    /// A handler's process group was sent `signal` during the stop.
    Killed {
        service: &'a str,
        pid: i32,
        signal: Signal,
    },
    /// The stop is over; `handlers_left`: some were never reaped.
    Stopped { handlers_left: Option<usize> },
}

impl<'a> Event<'a> {
    /// `error msg=...`: about no service in particular.
    pub fn error(msg: &'a str) -> Event<'a> {
        Event::Error {
            service: None,
            pid: None,
            peer: None,
            msg,
            suppressed: None,
        }
    }

    /// `warning msg=...`: about no service in particular.
    pub fn warning(msg: &'a str) -> Event<'a> {
        Event::Warning {
            service: None,
            pid: None,
            msg,
        }
    }

    /// `error service=NAME msg=...`.
    pub fn service_error(service: &'a str, msg: &'a str) -> Event<'a> {
        Event::Error {
            service: Some(service),
            pid: None,
            peer: None,
            msg,
            suppressed: None,
        }
    }

    /// The syslog severity of the line.
    pub fn level(&self) -> Level {
        match self {
            Event::Exhausted { .. }
            | Event::Error { .. }
            | Event::Fatal { .. }
            | Event::ReloadFailed { .. } => Level::Error,
            Event::Config { problem, .. } => match problem {
                Problem::Error | Problem::Skipped => Level::Error,
                Problem::Warning => Level::Warning,
            },
            Event::RatePause { .. }
            | Event::ReplyDropped { .. }
            | Event::StderrDropped { .. }
            | Event::Suppressed { .. }
            | Event::Looping { .. }
            | Event::Timeout { .. }
            | Event::Idle { .. }
            | Event::Warning { .. } => Level::Warning,
            _ => Level::Info,
        }
    }
}

/// Writes one line into the log's buffer: the event word, then each field
/// as ` key=value`. No `core::fmt` for the per-connection lines: names,
/// numbers and addresses are pushed as bytes (`Display` only for the rare
/// values that have nothing else).
struct Line<'b>(&'b mut Vec<u8>);

impl<'b> Line<'b> {
    fn start(out: &'b mut Vec<u8>, event: &str) -> Self {
        let mut l = Line(out);
        l.put(event.as_bytes());
        l
    }

    fn put(&mut self, bytes: &[u8]) {
        crate::render::append(self.0, bytes);
    }

    fn key(&mut self, key: &str) {
        crate::render::append_all(self.0, &[b" ", key.as_bytes(), b"="]);
    }

    /// ` key=value`, in one append.
    fn pair(&mut self, key: &str, value: &[u8]) {
        crate::render::append_all(self.0, &[b" ", key.as_bytes(), b"=", value]);
    }

    /// A name that is one word as it is (service names are checked at
    /// load).
    fn word(&mut self, key: &str, value: &str) {
        self.pair(key, value.as_bytes());
    }

    /// A number, an address, a flag: rendered on the stack.
    fn value(&mut self, key: &str, value: impl Render) {
        self.pair(key, value.render().as_bytes());
    }

    /// A value only `Display` can write.
    fn shown(&mut self, key: &str, value: impl fmt::Display) {
        self.key(key);
        // Writing into a `Vec` cannot fail.
        let _ = write!(self.0, "{value}");
    }

    /// Free text: quoted when it would not read as one word.
    fn text(&mut self, key: &str, value: &str) {
        self.shown(key, Q(value));
    }

    /// A field present only when there is a value.
    fn opt(&mut self, key: &str, value: Option<impl Render>) {
        if let Some(v) = value {
            self.value(key, v);
        }
    }

    /// A name present only when there is one.
    fn opt_word(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.word(key, v);
        }
    }

    /// The `reason=` of a refusal, and the rule or limit behind it.
    fn refusal(&mut self, r: &Refusal) {
        match r {
            Refusal::OnlyFrom => self.word("reason", "only_from"),
            Refusal::NoAccess(rule) => {
                self.word("reason", "no_access");
                self.shown("rule", rule);
            }
            Refusal::AccessTimes => self.word("reason", "access_times"),
            Refusal::PerSource(n) => {
                self.word("reason", "per_source");
                self.value("limit", *n as u64);
            }
            Refusal::SourceRate(rate) => {
                self.word("reason", "per_source_rate");
                self.shown("limit", rate.window());
            }
            Refusal::Rate(rate) if rate.per_second() => {
                self.word("reason", "cps");
                self.value("limit", rate.count);
            }
            Refusal::Rate(rate) => {
                self.word("reason", "rate");
                self.word("limit", &rate.window());
            }
            Refusal::FdReserve(n) => {
                self.word("reason", "fd_reserve");
                self.value("reserve", *n as u64);
            }
            Refusal::SourcePort => self.word("reason", "source-port"),
            Refusal::ReplyRate => self.word("reason", "reply_rate"),
            Refusal::ProxyFrom => self.word("reason", "proxy_from"),
            Refusal::ProxyHeader(why) => {
                self.word("reason", "proxy_header");
                self.word("what", why.as_str());
                if let crate::refusal::NoHeader::Pending(n) = why {
                    self.value("limit", *n as u64);
                }
            }
        }
    }

    /// A rate as its key says it: `cps=50`, or `rate=256/60s`.
    fn rate(&mut self, rate: &Rate) {
        match rate.per_second() {
            true => self.value("cps", rate.count),
            false => self.word("rate", &rate.window()),
        }
    }
}

impl Event<'_> {
    /// Appends the line (without a newline) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Event::Listen {
                service,
                proto,
                addr,
                wait,
                inherited,
            } => {
                let mut l = Line::start(out, "listen");
                l.word("service", service);
                l.word("proto", proto);
                l.word("addr", addr);
                l.value("wait", wait);
                l.opt("inherited_fd", inherited);
            }
            Event::Upgrade {
                exe,
                listeners,
                handlers,
            } => {
                let mut l = Line::start(out, "upgrade");
                l.text("exe", &exe.to_string_lossy());
                l.value("listeners", listeners);
                l.value("handlers", handlers);
            }
            Event::Close { service, addr } => {
                let mut l = Line::start(out, "close");
                l.word("service", service);
                l.shown("addr", addr);
            }
            Event::Resume { service, addr } => {
                let mut l = Line::start(out, "resume");
                l.word("service", service);
                l.shown("addr", addr);
            }
            Event::Start {
                service,
                pid,
                peer,
                via,
                peer_uid,
                peer_pid,
            } => {
                let mut l = Line::start(out, "start");
                l.word("service", service);
                l.opt("pid", pid);
                l.opt("peer", peer);
                l.opt("via", via);
                l.opt("peer_uid", peer_uid);
                l.opt("peer_pid", peer_pid);
            }
            Event::Exit {
                service,
                pid,
                status,
                signal,
                core,
                timed_out,
                duration_ms,
            } => {
                let mut l = Line::start(out, "exit");
                l.word("service", service);
                l.opt("pid", pid);
                l.opt("status", status);
                l.opt_word("signal", signal);
                l.opt_word("reason", timed_out.then_some("timeout"));
                l.opt("core", core.then_some(true));
                l.opt("duration_ms", duration_ms);
            }
            Event::Timeout {
                service,
                pid,
                after_ms,
                signal,
            } => {
                let mut l = Line::start(out, "timeout");
                l.word("service", service);
                l.value("pid", pid);
                l.value("after_ms", after_ms);
                l.word("signal", signal.as_str());
            }
            Event::Done {
                service,
                peer,
                via,
                upstream,
                duration_ms,
                bytes_in,
                bytes_out,
                status,
                reason,
            } => {
                let mut l = Line::start(out, "done");
                l.word("service", service);
                l.opt("peer", peer);
                l.opt("via", via);
                l.opt("upstream", upstream);
                l.opt("duration_ms", duration_ms);
                l.opt("bytes_in", bytes_in);
                l.opt("bytes_out", bytes_out);
                l.opt("status", status);
                if let Some(r) = reason {
                    l.text("reason", r);
                }
            }
            Event::Stderr { service, pid, line } => {
                let mut l = Line::start(out, "stderr");
                l.word("service", service);
                l.value("pid", pid);
                l.text("line", line);
            }
            Event::StderrDropped {
                service,
                pid,
                lines,
            } => {
                let mut l = Line::start(out, "stderr-dropped");
                l.word("service", service);
                l.value("pid", pid);
                l.value("lines", lines);
            }
            Event::Suppressed { service, lines } => {
                let mut l = Line::start(out, "suppressed");
                l.word("service", service);
                l.value("lines", lines);
            }
            Event::Refuse {
                service,
                peer,
                via,
                reason,
                suppressed,
            } => {
                let mut l = Line::start(out, "refuse");
                l.word("service", service);
                l.opt("peer", peer);
                l.opt("via", via);
                l.refusal(reason);
                l.opt("suppressed", Some(suppressed).filter(|&n| n > 0));
            }
            Event::RatePause {
                service,
                rate,
                paused,
            } => {
                let mut l = Line::start(out, "rate-pause");
                l.word("service", service);
                l.rate(rate);
                l.value("paused_ms", paused.as_millis());
            }
            Event::RateResume { service } => {
                let mut l = Line::start(out, "resume");
                l.word("service", service);
                l.word("reason", "rate");
            }
            Event::ReplyDropped {
                service,
                peer,
                replies,
            } => {
                let mut l = Line::start(out, "reply-dropped");
                l.word("service", service);
                l.value("peer", peer);
                l.value("replies", replies);
            }
            Event::Looping {
                service,
                accepting,
                exits,
                paused,
            } => {
                let mut l = Line::start(out, "looping");
                l.word("service", service);
                let key = match accepting {
                    true => "handlers_exited_without_accepting",
                    false => "handlers_exited_without_reading",
                };
                l.value(key, exits);
                l.value("paused_ms", paused.as_millis());
            }
            Event::Recovered { service } => Line::start(out, "recovered").word("service", service),
            Event::Exhausted { service, msg } => {
                let mut l = Line::start(out, "exhausted");
                l.word("service", service);
                l.text("msg", msg);
            }
            Event::Error {
                service,
                pid,
                peer,
                msg,
                suppressed,
            } => {
                let mut l = Line::start(out, "error");
                l.opt_word("service", service);
                l.opt("pid", pid);
                l.opt("peer", peer);
                l.text("msg", msg);
                l.opt("suppressed", suppressed);
            }
            Event::Warning { service, pid, msg } => {
                let mut l = Line::start(out, "warning");
                l.opt_word("service", service);
                l.opt("pid", pid);
                l.text("msg", msg);
            }
            Event::Fatal { msg } => Line::start(out, "fatal").text("msg", msg),
            Event::Config { problem, at, msg } => {
                let word = match problem {
                    Problem::Error => "config-error",
                    Problem::Skipped => "config-skipped",
                    Problem::Warning => "config-warning",
                };
                let mut l = Line::start(out, word);
                l.shown("at", at);
                l.text("msg", msg);
            }
            Event::Ready { listeners } => Line::start(out, "ready").value("listeners", listeners),
            Event::Control { path } => {
                Line::start(out, "control").text("path", &path.to_string_lossy());
            }
            Event::Idle { config } => {
                let mut l = Line::start(out, "idle");
                l.text("config", &config.to_string_lossy());
                l.text("msg", "no service to run; waiting for a reload (SIGHUP)");
            }
            Event::Reload {
                listeners,
                kept,
                bound,
                closed,
                duration_us,
            } => {
                let mut l = Line::start(out, "reload");
                l.value("listeners", listeners);
                l.value("kept", kept);
                l.value("bound", bound);
                l.value("closed", closed);
                l.value("duration_us", duration_us);
            }
            Event::ReloadFailed { errors } => {
                let mut l = Line::start(out, "reload-failed");
                l.value("errors", errors);
                l.text("msg", "keeping the running config");
            }
            Event::ServiceState {
                service,
                listen,
                mode,
                running,
                instances,
                paused,
            } => {
                let mut l = Line::start(out, "state");
                l.word("service", service);
                l.text("listen", listen);
                l.word("mode", mode);
                match instances {
                    Some(max) => l.shown("running", format_args!("{running}/{max}")),
                    None => l.shown("running", format_args!("{running}/none")),
                }
                l.value("paused", paused);
            }
            Event::State {
                services,
                listeners,
                handlers,
                connections,
                max_processes,
                draining,
            } => {
                let mut l = Line::start(out, "state");
                l.value("services", services);
                l.value("listeners", listeners);
                l.value("handlers", handlers);
                l.value("connections", connections);
                l.value("max_processes", max_processes);
                l.value("draining", draining);
            }
            Event::Stopping { handlers, grace_ms } => {
                let mut l = Line::start(out, "stopping");
                l.value("handlers", handlers);
                l.value("grace_ms", grace_ms);
            }
            Event::Killed {
                service,
                pid,
                signal,
            } => {
                let mut l = Line::start(out, "killed");
                l.word("service", service);
                l.value("pid", pid);
                l.word("signal", signal.as_str());
                l.text(
                    "msg",
                    match signal {
                        Signal::SIGTERM => "shutdown_grace over",
                        _ => "still running after SIGTERM",
                    },
                );
            }
            Event::Stopped { handlers_left } => {
                let mut l = Line::start(out, "stopped");
                if let Some(n) = handlers_left {
                    l.value("handlers_left", n);
                    l.text("msg", "not reaped after SIGKILL");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BindAddr, SocketKind};

    fn line(e: Event<'_>) -> String {
        let mut out = Vec::new();
        e.write(&mut out);
        String::from_utf8(out).expect("lines are UTF-8")
    }

    /// The lines read as the hand-written formats before them did (the
    /// integration tests parse them).
    #[test]
    fn lines_keep_their_grammar() {
        let peer: SocketAddr = "127.0.0.1:4000".parse().expect("test address");
        let key = ListenKey {
            addr: BindAddr::Ip("127.0.0.1:7".parse().expect("test address")),
            kind: SocketKind::Stream,
            opts: Default::default(),
        };
        assert_eq!(
            line(Event::Start {
                service: "echo",
                pid: Some(42),
                peer: Some(peer),
                via: None,
                peer_uid: None,
                peer_pid: None,
            }),
            "start service=echo pid=42 peer=127.0.0.1:4000"
        );
        assert_eq!(
            line(Event::Exit {
                service: "echo",
                pid: Some(42),
                status: None,
                signal: Some("SIGKILL"),
                core: true,
                timed_out: false,
                duration_ms: Some(5),
            }),
            "exit service=echo pid=42 signal=SIGKILL core=true duration_ms=5"
        );
        assert_eq!(
            line(Event::Exit {
                service: "git",
                pid: Some(42),
                status: None,
                signal: Some("SIGTERM"),
                core: false,
                timed_out: true,
                duration_ms: Some(300_001),
            }),
            "exit service=git pid=42 signal=SIGTERM reason=timeout duration_ms=300001"
        );
        let timeout = Event::Timeout {
            service: "git",
            pid: 42,
            after_ms: 300_000,
            signal: Signal::SIGTERM,
        };
        assert_eq!(timeout.level(), Level::Warning);
        assert_eq!(
            line(timeout),
            "timeout service=git pid=42 after_ms=300000 signal=SIGTERM"
        );
        assert_eq!(
            line(Event::Refuse {
                service: "s",
                peer: Some(peer),
                via: None,
                reason: &Refusal::PerSource(2),
                suppressed: 0,
            }),
            "refuse service=s peer=127.0.0.1:4000 reason=per_source limit=2"
        );
        let balancer: SocketAddr = "10.0.0.2:51000".parse().expect("test address");
        assert_eq!(
            line(Event::Refuse {
                service: "s",
                peer: Some(peer),
                via: Some(balancer),
                reason: &Refusal::OnlyFrom,
                suppressed: 0,
            }),
            "refuse service=s peer=127.0.0.1:4000 via=10.0.0.2:51000 reason=only_from"
        );
        assert_eq!(
            line(Event::Refuse {
                service: "s",
                peer: Some(balancer),
                via: None,
                reason: &Refusal::ProxyHeader(crate::refusal::NoHeader::Malformed(
                    crate::proxy::Malformed::Family
                )),
                suppressed: 0,
            }),
            "refuse service=s peer=10.0.0.2:51000 reason=proxy_header what=family"
        );
        let v6: SocketAddr = "[2001:db8::7]:4000".parse().expect("test address");
        assert_eq!(
            line(Event::Refuse {
                service: "s",
                peer: Some(v6),
                via: None,
                reason: &Refusal::SourceRate(crate::source_rate::SourceRate {
                    count: 3,
                    per: Duration::from_secs(60),
                }),
                suppressed: 0,
            }),
            "refuse service=s peer=[2001:db8::7]:4000 reason=per_source_rate limit=3/60s"
        );
        let rate = Rate {
            count: 2,
            per: Duration::from_secs(60),
            pause: Duration::from_secs(600),
        };
        assert_eq!(
            line(Event::Refuse {
                service: "s",
                peer: None,
                via: None,
                reason: &Refusal::Rate(rate),
                suppressed: 3,
            }),
            "refuse service=s reason=rate limit=2/60s suppressed=3"
        );
        assert_eq!(
            line(Event::RatePause {
                service: "s",
                rate: &rate,
                paused: Duration::from_secs(600),
            }),
            "rate-pause service=s rate=2/60s paused_ms=600000"
        );
        assert_eq!(
            line(Event::Close {
                service: "s",
                addr: &key,
            }),
            "close service=s addr=127.0.0.1:7/tcp"
        );
        assert_eq!(
            line(Event::Error {
                service: Some("s"),
                pid: None,
                peer: Some(peer),
                msg: "unable to fork",
                suppressed: Some(0),
            }),
            "error service=s peer=127.0.0.1:4000 msg=\"unable to fork\" suppressed=0"
        );
        assert_eq!(
            line(Event::ServiceState {
                service: "s",
                listen: "127.0.0.1:7/tcp",
                mode: "wait",
                running: 1,
                instances: None,
                paused: false,
            }),
            "state service=s listen=127.0.0.1:7/tcp mode=wait running=1/none paused=false"
        );
        assert_eq!(
            line(Event::ReloadFailed { errors: 2 }),
            "reload-failed errors=2 msg=\"keeping the running config\""
        );
        assert_eq!(
            line(Event::Looping {
                service: "s",
                accepting: true,
                exits: 3,
                paused: Duration::from_secs(1),
            }),
            "looping service=s handlers_exited_without_accepting=3 paused_ms=1000"
        );
        assert_eq!(
            line(Event::Killed {
                service: "s",
                pid: 7,
                signal: Signal::SIGTERM,
            }),
            "killed service=s pid=7 signal=SIGTERM msg=\"shutdown_grace over\""
        );
        assert_eq!(
            line(Event::Stopped {
                handlers_left: None
            }),
            "stopped"
        );
        assert_eq!(
            line(Event::Idle {
                config: std::path::Path::new("/etc/oxinetd/oxinetd.toml")
            }),
            "idle config=/etc/oxinetd/oxinetd.toml \
             msg=\"no service to run; waiting for a reload (SIGHUP)\""
        );
    }
}
