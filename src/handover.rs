//! Listening sockets taken from outside instead of bound, and handed on.
//!
//! Three ways in, one intake ([`Intake::from_env`]):
//!
//! - **socket activation** (a `.socket` unit, `systemd-socket-activate`):
//!   `LISTEN_PID` = our pid, `LISTEN_FDS` = N, the sockets on fds
//!   3..3+N, optionally named by `LISTEN_FDNAMES` (colon-separated);
//! - **systemd's fd store** across a restart: the listeners a previous run
//!   stored (`FDSTORE=1`, `FDNAME=<service>`, `notify.rs`) come back the
//!   same way, named;
//! - **re-exec on SIGUSR2** (`supervisor/handover.rs`): the old image
//!   leaves its listeners open across `execve` and names them in
//!   `OXINETD_FDS` (`fd=service,...`), with `OXINETD_PID` = our pid (the
//!   same across `execve`); its running handlers in `OXINETD_HANDLERS`.
//!
//! `supervisor::run` reads the environment once, first thing. Every
//! variable is removed from the environment when read, so no handler
//! sees them; every fd taken is close-on-exec. Each socket is described
//! ([`Shape`]: kind from `SO_TYPE`, `SO_PROTOCOL`, `SO_ACCEPTCONN`;
//! address from `getsockname`).
//!
//! [`assign`] then matches them with the config's listeners: a socket
//! named after a service goes to that service (its `listen` entry with
//! the same address, else its first of the same kind); an unnamed one, or
//! one whose name is no service's, to the listener with its address and
//! kind. The result is a map `(service, ListenKey) → socket` in
//! `Supervisor::given`; the first `apply` walks the diff as always, and
//! `add_listener` takes the socket from that map instead of calling
//! `listener::bind`. What matches nothing is returned to be logged and
//! closed. From there a given socket is an ordinary `Listener`: reloads
//! keep or close it by slot like any other (no file of a given
//! UNIX-domain socket is removed by oxinetd).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{BindAddr, Config, ListenKey, SocketKind};

/// The first fd of socket activation (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// More than this many given fds is not a plausible environment.
const MAX_GIVEN: usize = 65536;

/// The variables a re-exec passes (see the module doc).
pub const ENV_PID: &str = "OXINETD_PID";
pub const ENV_FDS: &str = "OXINETD_FDS";
pub const ENV_HANDLERS: &str = "OXINETD_HANDLERS";

/// A socket given at start.
#[derive(Debug)]
pub struct Given {
    pub socket: Socket,
    /// The fd number it arrived on.
    pub fd: RawFd,
    /// Its `LISTEN_FDNAMES` (or `OXINETD_FDS`) name, if any.
    pub name: Option<String>,
    pub shape: Shape,
}

/// What a given socket is, as far as matching goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// `None`: no listener can use it (why in `unusable`).
    pub kind: Option<SocketKind>,
    pub local: Local,
    pub unusable: Option<&'static str>,
}

/// A given socket's own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Ip(SocketAddr),
    Unix(PathBuf),
    Other,
}

impl std::fmt::Display for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Local::Ip(a) => write!(f, "{a}"),
            Local::Unix(p) => write!(f, "unix:{}", p.display()),
            Local::Other => f.write_str("?"),
        }
    }
}

/// What the environment gave: sockets, and a re-exec's running handlers.
#[derive(Debug, Default)]
pub struct Intake {
    pub given: Vec<Given>,
    pub handlers: Vec<Handler>,
    /// Problems with the variables themselves, to be logged.
    pub problems: Vec<String>,
    /// True when a re-exec of ours started this image.
    pub reexec: bool,
}

/// A handler the previous image started and this one adopts.
#[derive(Debug, PartialEq, Eq)]
pub struct Handler {
    pub pid: i32,
    pub service: String,
    /// How long it has run.
    pub elapsed: Duration,
    pub stderr: Option<RawFd>,
    pub peer: Option<SocketAddr>,
    pub source: Option<IpAddr>,
    /// Its `timeout`, so the new image keeps it.
    pub limit: Option<Limit>,
}

/// A handler's `timeout` across a re-exec, in time since the handler
/// started (an `Instant` means nothing to another image).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// When SIGTERM is (or was) due.
    pub term: Duration,
    /// `kill_grace`.
    pub grace: Duration,
    pub phase: Phase,
}

/// How far a carried `timeout` has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// SIGTERM sent; SIGKILL due at this time since the start.
    Termed(Duration),
    Killed,
}

impl Limit {
    /// `TERM_MS/GRACE_MS`, then `/KILL_MS` once SIGTERM was sent or
    /// `/killed` once SIGKILL was.
    fn encode(&self) -> String {
        let (term, grace) = (self.term.as_millis(), self.grace.as_millis());
        match self.phase {
            Phase::Running => format!("{term}/{grace}"),
            Phase::Termed(kill) => format!("{term}/{grace}/{}", kill.as_millis()),
            Phase::Killed => format!("{term}/{grace}/killed"),
        }
    }

    fn decode(s: &str) -> Option<Limit> {
        let mut it = s.split('/');
        let ms = |v: Option<&str>| v?.parse().ok().map(Duration::from_millis);
        let term = ms(it.next())?;
        let grace = ms(it.next())?;
        let phase = match it.next() {
            None => Phase::Running,
            Some("killed") => Phase::Killed,
            kill => Phase::Termed(ms(kill)?),
        };
        it.next().is_none().then_some(Limit { term, grace, phase })
    }
}

impl Handler {
    /// `pid,service,elapsed_ms,stderr_fd|-,peer|-,source|-`, then
    /// `,LIMIT` for a handler with a `timeout` (`Limit::encode`; an image
    /// before timeouts wrote six fields, and they still read).
    pub fn encode(&self) -> String {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let mut out = format!(
            "{},{},{},{},{},{}",
            self.pid,
            self.service,
            self.elapsed.as_millis(),
            opt(self.stderr.map(|f| f.to_string())),
            opt(self.peer.map(|p| p.to_string())),
            opt(self.source.map(|s| s.to_string())),
        );
        if let Some(limit) = &self.limit {
            out.push(',');
            out.push_str(&limit.encode());
        }
        out
    }

    pub fn decode(s: &str) -> Option<Handler> {
        let mut it = s.split(',');
        let pid = it.next()?.parse().ok()?;
        let service = it.next()?.to_owned();
        let ms: u64 = it.next()?.parse().ok()?;
        fn opt<T: std::str::FromStr>(v: Option<&str>) -> Option<Option<T>> {
            match v? {
                "-" => Some(None),
                v => v.parse().ok().map(Some),
            }
        }
        let stderr = opt(it.next())?;
        let peer = opt(it.next())?;
        let source = opt(it.next())?;
        let limit = match it.next() {
            Some(l) => Some(Limit::decode(l)?),
            None => None,
        };
        (it.next().is_none() && pid > 0).then_some(Handler {
            pid,
            service,
            elapsed: Duration::from_millis(ms),
            stderr,
            peer,
            source,
            limit,
        })
    }
}

/// Whether a re-exec of ours started this image (before `from_env`).
pub fn is_reexec() -> bool {
    own_pid(ENV_PID)
}

fn own_pid(var: &str) -> bool {
    std::env::var(var).ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id())
}

fn take_var(var: &str) -> Option<String> {
    let v = std::env::var(var).ok();
    std::env::remove_var(var);
    v
}

impl Intake {
    /// Read and remove `LISTEN_*` and `OXINETD_*`; take the fds they name.
    pub fn from_env() -> Intake {
        let mut intake = Intake::default();
        let activated = own_pid("LISTEN_PID");
        let reexec = own_pid(ENV_PID);
        let count = take_var("LISTEN_FDS");
        let names = take_var("LISTEN_FDNAMES");
        std::env::remove_var("LISTEN_PID");
        let fds = take_var(ENV_FDS);
        let handlers = take_var(ENV_HANDLERS);
        std::env::remove_var(ENV_PID);
        if activated {
            intake.activation(count.as_deref(), names.as_deref());
        }
        if reexec {
            intake.reexec = true;
            intake.reexec_fds(fds.as_deref().unwrap_or(""));
            for h in handlers.as_deref().unwrap_or("").split_whitespace() {
                match Handler::decode(h) {
                    Some(h) => intake.handlers.push(h),
                    None => intake
                        .problems
                        .push(format!("{ENV_HANDLERS}: not a handler: {h:?}")),
                }
            }
        }
        intake
    }

    fn activation(&mut self, count: Option<&str>, names: Option<&str>) {
        let Some(n) = count
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|n| *n <= MAX_GIVEN)
        else {
            self.problems
                .push(format!("LISTEN_FDS={count:?} is not a count; ignored"));
            return;
        };
        let names: Option<Vec<&str>> = names.map(|n| n.split(':').collect());
        let names = match names {
            Some(list) if list.len() != n => {
                self.problems.push(format!(
                    "LISTEN_FDNAMES has {} names for {n} fds; names ignored",
                    list.len()
                ));
                None
            }
            other => other,
        };
        for i in 0..n {
            let fd = LISTEN_FDS_START + i as RawFd;
            let name = names
                .as_ref()
                .and_then(|l| l.get(i))
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string());
            self.take(fd, name);
        }
    }

    fn reexec_fds(&mut self, list: &str) {
        for entry in list.split(',').filter(|e| !e.is_empty()) {
            let parsed = entry
                .split_once('=')
                .and_then(|(fd, name)| Some((fd.parse::<RawFd>().ok()?, name)));
            match parsed {
                Some((fd, name)) if fd >= LISTEN_FDS_START => self.take(fd, Some(name.into())),
                _ => self
                    .problems
                    .push(format!("{ENV_FDS}: not fd=name: {entry:?}")),
            }
        }
    }

    fn take(&mut self, fd: RawFd, name: Option<String>) {
        let Some(owned) = crate::sys::adopt_fd(fd) else {
            self.problems
                .push(format!("fd {fd} was given but is not open"));
            return;
        };
        let socket = Socket::from(owned);
        let shape = shape(&socket);
        self.given.push(Given {
            socket,
            fd,
            name,
            shape,
        });
    }
}

/// What kind of listener `s` can be, and its address.
pub fn shape(s: &Socket) -> Shape {
    let unusable = |why| Shape {
        kind: None,
        local: Local::Other,
        unusable: Some(why),
    };
    let (Ok(domain), Ok(ty)) = (s.domain(), s.r#type()) else {
        return unusable("not a socket");
    };
    let local = match s.local_addr() {
        Ok(a) => match (a.as_socket(), a.as_pathname()) {
            (Some(ip), _) => Local::Ip(ip),
            (None, Some(p)) => Local::Unix(p.to_owned()),
            _ => Local::Other,
        },
        Err(_) => Local::Other,
    };
    let ip = domain == Domain::IPV4 || domain == Domain::IPV6;
    let proto = s.protocol().ok().flatten();
    let kind = if ty == Type::STREAM && (!ip || proto == Some(Protocol::TCP)) {
        SocketKind::Stream
    } else if ty == Type::DGRAM && (!ip || proto == Some(Protocol::UDP)) {
        SocketKind::Dgram
    } else if ty == Type::SEQPACKET && domain == Domain::UNIX {
        SocketKind::Seqpacket
    } else {
        return Shape {
            local,
            ..unusable("not a TCP, UDP or UNIX-domain socket")
        };
    };
    if kind.is_connected() && !s.is_listener().unwrap_or(false) {
        return Shape {
            local,
            ..unusable("a connected socket, not a listening one")
        };
    }
    if !ip && domain != Domain::UNIX {
        return Shape {
            local,
            ..unusable("not a TCP, UDP or UNIX-domain socket")
        };
    }
    Shape {
        kind: Some(kind),
        local,
        unusable: None,
    }
}

/// Whether a socket at `local` serves `addr`.
fn same_address(addr: &BindAddr, local: &Local) -> bool {
    match (addr, local) {
        (BindAddr::Ip(want), Local::Ip(have)) => {
            want.port() != 0 && want.port() == have.port() && want.ip() == have.ip()
        }
        (BindAddr::Any(port), Local::Ip(have)) => {
            *port != 0 && *port == have.port() && have.ip().is_unspecified()
        }
        (BindAddr::Unix(want), Local::Unix(have)) => want == have,
        _ => false,
    }
}

/// The given sockets matched with listeners, by (service, key).
pub type Assigned = HashMap<(String, ListenKey), Given>;

/// Match `given` with the listeners `config` asks for (see the module
/// doc); returns the matches and the sockets no listener uses.
pub fn assign(given: Vec<Given>, config: &Config) -> (Assigned, Vec<Given>) {
    let shapes: Vec<(Option<&str>, &Shape)> = given
        .iter()
        .map(|g| (g.name.as_deref(), &g.shape))
        .collect();
    let services: Vec<(&str, &[ListenKey])> = config
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.listen.as_slice()))
        .collect();
    let plan = matches(&shapes, &services);
    let mut slots: Vec<Option<Given>> = given.into_iter().map(Some).collect();
    let mut assigned = Assigned::new();
    for ((svc, key), g) in plan {
        if let Some(g) = slots[g].take() {
            let (name, keys) = services[svc];
            assigned.insert((name.to_owned(), keys[key].clone()), g);
        }
    }
    (assigned, slots.into_iter().flatten().collect())
}

/// The matching itself, on shapes: `((service, key), given)` pairs.
fn matches(
    given: &[(Option<&str>, &Shape)],
    services: &[(&str, &[ListenKey])],
) -> Vec<((usize, usize), usize)> {
    let mut used = vec![false; given.len()];
    let mut out = Vec::new();
    let mut done = std::collections::HashSet::new();
    let service_name = |n: Option<&str>| n.is_some_and(|n| services.iter().any(|s| s.0 == n));
    // Three passes, each taking what the one before left: named after the
    // service with the same address, named after it with any address of
    // the same kind, then sockets named after no service, by address.
    let takes = |pass: u8, g: usize, name: &str, key: &ListenKey| {
        let same = same_address(&key.addr, &given[g].1.local);
        match pass {
            0 => given[g].0 == Some(name) && same,
            1 => given[g].0 == Some(name),
            _ => !service_name(given[g].0) && same,
        }
    };
    for pass in 0..3 {
        for (s, (name, keys)) in services.iter().enumerate() {
            for (k, key) in keys.iter().enumerate() {
                if done.contains(&(s, k)) {
                    continue;
                }
                let found = (0..given.len()).find(|&g| {
                    !used[g] && given[g].1.kind == Some(key.kind) && takes(pass, g, name, key)
                });
                if let Some(g) = found {
                    used[g] = true;
                    done.insert((s, k));
                    out.push(((s, k), g));
                }
            }
        }
    }
    out
}

/// What the log says of a given socket: fd, name, address, kind.
pub fn describe(g: &Given) -> String {
    let kind = match g.shape.kind {
        Some(SocketKind::Stream) => "stream",
        Some(SocketKind::Dgram) => "dgram",
        Some(SocketKind::Seqpacket) => "seqpacket",
        None => "unusable",
    };
    let name = g.name.as_deref().unwrap_or("-");
    format!("fd {} (name {name}, {} {kind})", g.fd, g.shape.local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str, kind: SocketKind) -> ListenKey {
        let addr = match addr.strip_prefix("*:") {
            Some(p) => BindAddr::Any(p.parse().unwrap()),
            None if addr.starts_with('/') => BindAddr::Unix(addr.into()),
            None => BindAddr::Ip(addr.parse().unwrap()),
        };
        ListenKey {
            addr,
            kind,
            opts: Default::default(),
        }
    }

    fn shape(local: &str, kind: SocketKind) -> Shape {
        Shape {
            kind: Some(kind),
            local: if local.starts_with('/') {
                Local::Unix(local.into())
            } else {
                Local::Ip(local.parse().unwrap())
            },
            unusable: None,
        }
    }

    #[test]
    fn by_address_by_kind_and_names_win() {
        use SocketKind::*;
        let a = [key("127.0.0.1:79", Stream), key("127.0.0.1:79", Dgram)];
        let b = [key("*:80", Stream)];
        let c = [key("127.0.0.1:0", Stream)];
        let services: Vec<(&str, &[ListenKey])> = vec![("a", &a), ("b", &b), ("c", &c)];
        let udp = shape("127.0.0.1:79", Dgram);
        let tcp = shape("127.0.0.1:79", Stream);
        let any = shape("[::]:80", Stream);
        let other = shape("127.0.0.1:9", Stream);
        let given: Vec<(Option<&str>, &Shape)> = vec![
            (None, &udp),
            (Some("x.socket"), &tcp),
            (None, &any),
            // Named after c: c's port-0 listener, whatever its address.
            (Some("c"), &other),
        ];
        let mut m = matches(&given, &services);
        m.sort();
        assert_eq!(m, vec![((0, 0), 1), ((0, 1), 0), ((1, 0), 2), ((2, 0), 3)]);

        // A socket named after b is b's, even where a's address matches.
        let given: Vec<(Option<&str>, &Shape)> = vec![(Some("b"), &tcp)];
        assert_eq!(matches(&given, &services), vec![((1, 0), 0)]);
        // A wrong kind matches nothing.
        let udp80 = shape("127.0.0.1:80", Dgram);
        let given: Vec<(Option<&str>, &Shape)> = vec![(None, &udp80)];
        assert!(matches(&given, &services).is_empty());
    }

    #[test]
    fn unix_paths_match_exactly() {
        let k = [key("/run/x.sock", SocketKind::Stream)];
        let services: Vec<(&str, &[ListenKey])> = vec![("x", &k)];
        let yes = shape("/run/x.sock", SocketKind::Stream);
        let no = shape("/run/y.sock", SocketKind::Stream);
        let given: Vec<(Option<&str>, &Shape)> = vec![(None, &no), (None, &yes)];
        assert_eq!(matches(&given, &services), vec![((0, 0), 1)]);
    }

    #[test]
    fn handler_records_round_trip() {
        let h = Handler {
            pid: 42,
            service: "a.b-c@d".into(),
            elapsed: Duration::from_millis(1234),
            stderr: Some(7),
            peer: Some("[::1]:5000".parse().unwrap()),
            source: Some("::1".parse().unwrap()),
            limit: None,
        };
        assert_eq!(Handler::decode(&h.encode()), Some(h));
        let bare = Handler {
            pid: 1,
            service: "s".into(),
            elapsed: Duration::ZERO,
            stderr: None,
            peer: None,
            source: None,
            limit: None,
        };
        assert_eq!(bare.encode(), "1,s,0,-,-,-");
        assert_eq!(Handler::decode(&bare.encode()), Some(bare));
        assert_eq!(Handler::decode("1,s,0,-,-"), None);
        assert_eq!(Handler::decode("x,s,0,-,-,-"), None);
    }

    #[test]
    fn handler_records_carry_the_timeout() {
        let ms = Duration::from_millis;
        for phase in [Phase::Running, Phase::Termed(ms(6500)), Phase::Killed] {
            let h = Handler {
                pid: 9,
                service: "git".into(),
                elapsed: ms(7000),
                stderr: None,
                peer: None,
                source: None,
                limit: Some(Limit {
                    term: ms(1500),
                    grace: ms(5000),
                    phase,
                }),
            };
            assert_eq!(Handler::decode(&h.encode()), Some(h));
        }
        assert_eq!(
            Handler::decode("9,git,7000,-,-,-,1500/5000/6500")
                .and_then(|h| h.limit)
                .map(|l| l.phase),
            Some(Phase::Termed(ms(6500)))
        );
        for bad in ["1500", "1500/x", "1500/5000/soon", "1500/5000/1/2", ""] {
            let record = format!("9,git,7000,-,-,-,{bad}");
            assert_eq!(Handler::decode(&record), None, "{record}");
        }
        assert_eq!(Handler::decode("9,git,7000,-,-,-,1/2,3"), None);
    }
}
