//! The typed, immutable configuration that the supervisor runs, and
//! `load`.
//!
//! One pipeline for every format: **front-end → raw → resolve →
//! `Config`**. A front-end reads its syntax into the raw form (`raw`:
//! `[global]` and `[defaults]` keys and one `Draft` per service, each key
//! with its value as written and its `FILE:LINE:COL`, plus diagnostics):
//! `toml` walks the spanned document of oxinetd.toml and its includes
//! (syntax, includes, unknown keys with "did you mean", table shapes);
//! `inetd` and `xinetd` parse their lines and blocks into a
//! `classic::Translation`, whose drafts also carry notes for settings
//! without an equivalent. An include named inetd.conf (the shipped
//! config's /etc/inetd.conf, where Debian's update-inetd registers
//! services) is translated by `inetd` within the TOML load and its drafts
//! join the TOML ones (`Translation::include_into`). The resolver
//! (`resolve`, one file per concern) turns the raw form into these types
//! once, with `[defaults]` under each service's own keys: users become
//! uids, names become ports, paths are checked; every error names the
//! key's original location, whatever the format (no TOML is rendered and
//! parsed again for the classic formats), and nothing here is re-derived
//! per connection.
//!
//! `keys` is the one table of keys: the key lists, "did you mean", the
//! keys refused on internal services and the man page test read it. A new
//! key is a row there, its check in the resolver, and its man page entry.
//! `import` writes a classic format's raw form as TOML (values through
//! serde and the `toml` serializer, comments by hand), so an import runs
//! exactly what the original runs; `list` (`check --list`) writes each
//! resolved service back as a TOML block.
//!
//! Problems are `Diagnostic`s with a severity (`error`): errors
//! (malformed: a reload with them is refused), skipped (valid but not
//! supported, e.g. RPC: logged, never run, no reason to refuse a reload),
//! and warnings (ignored settings).
//!
//! The other files: `rare` (`Rare<T>`: a setting most services leave as it
//! commonly is, `access`, `limits`, `confine`, stored as a null pointer
//! then: idle memory with hundreds of services); `source` (the files of
//! one load read once each, cycles and total work bounded); `etc_services`
//! (port names); `tcpwrappers` (warnings for hosts.allow/deny rules naming
//! a service that runs); `fuzz` (the parser fuzz property, run by `cargo
//! test` and by the cargo-fuzz target in `fuzz/`).

mod classic;
mod error;
mod etc_services;
#[cfg(any(test, fuzzing))]
mod fuzz;
mod import;
mod inetd;
pub mod keys;
mod list;
mod rare;
mod raw;
mod resolve;
mod source;
pub mod tcpwrappers;
mod toml;
mod xinetd;

pub use self::error::{ConfigError, Diagnostic, Location, Severity};
pub use self::keys::{GLOBAL_KEYS, ROOT_KEYS, SERVICE_KEYS};
pub use self::rare::Rare;
/// A path as a process whose root is the given directory finds it.
pub(crate) use self::resolve::inside as lookup_in_root;

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::access::Access;
use crate::internal::Internal;
use crate::limits::Limits;
use crate::log::LogFields;
use crate::privilege::Identity;

/// One fuzzer input through the inetd and xinetd front-ends and the TOML
/// resolver (`fuzz/`, built with `--cfg fuzzing`); panics on a broken
/// property.
#[cfg(fuzzing)]
pub fn fuzz(input: &[u8]) {
    static CTX: std::sync::OnceLock<Context> = std::sync::OnceLock::new();
    fuzz::exercise(input, CTX.get_or_init(Context::current));
}

/// Variables oxinetd sets for each connection (see `spawn`); `env` may not
/// set them.
pub const RESERVED_ENV: &[&str] = &[
    "PROTO",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "TCPREMOTEIP",
    "TCPREMOTEPORT",
    "TCPLOCALIP",
    "TCPLOCALPORT",
    "UDPREMOTEIP",
    "UDPREMOTEPORT",
    "UDPLOCALIP",
    "UDPLOCALPORT",
    "UNIXLOCALPATH",
    "UNIXREMOTEEUID",
    "UNIXREMOTEEGID",
    "UNIXREMOTEPID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// Default config file.
pub const DEFAULT_PATH: &str = "/etc/oxinetd/oxinetd.toml";

/// The kind of socket a service listens on. Over IP a stream is TCP and a
/// datagram socket UDP; `Seqpacket` (UNIX-domain only) is served like a
/// stream, connection by connection, with message boundaries kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketKind {
    Stream,
    Dgram,
    Seqpacket,
}

impl SocketKind {
    /// Connections are accepted (stream, seqpacket), rather than datagrams
    /// received on the listening socket itself.
    pub fn is_connected(self) -> bool {
        self != SocketKind::Dgram
    }

    /// The socket type as the config names it: `stream`, `dgram`, `seqpacket`.
    pub fn name(self) -> &'static str {
        match self {
            SocketKind::Stream => "stream",
            SocketKind::Dgram => "dgram",
            SocketKind::Seqpacket => "seqpacket",
        }
    }

    /// The IP protocol of this kind: `tcp` or `udp` (the name in
    /// /etc/services and in `ADDR/PROTO`).
    pub fn ip_protocol(self) -> &'static str {
        if self.is_connected() {
            "tcp"
        } else {
            "udp"
        }
    }

    /// The ucspi `PROTO` value, also the prefix of the per-connection variables.
    pub fn ucspi(self) -> &'static str {
        if self.is_connected() {
            "TCP"
        } else {
            "UDP"
        }
    }
}

/// Whether the supervisor hands out connections (nowait) or the socket (wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitMode {
    Nowait,
    Wait,
}

/// What the handler's fd 2 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StderrMode {
    /// A pipe read by the supervisor; each line is logged with service and pid.
    Log,
    /// /dev/null.
    Null,
    /// The connection, as classic inetd does.
    Socket,
}

/// The address part of a listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindAddr {
    /// One address.
    Ip(SocketAddr),
    /// Every address, IPv4 and IPv6 (`*:PORT`).
    Any(u16),
    /// A UNIX-domain socket: an absolute path.
    Unix(PathBuf),
}

impl BindAddr {
    /// The port; 0 for a UNIX-domain socket.
    pub fn port(&self) -> u16 {
        match self {
            BindAddr::Ip(a) => a.port(),
            BindAddr::Any(p) => *p,
            BindAddr::Unix(_) => 0,
        }
    }

    /// Port 0: the kernel picks a free port at each bind.
    pub fn is_ephemeral(&self) -> bool {
        !matches!(self, BindAddr::Unix(_)) && self.port() == 0
    }

    /// What two addresses must share to conflict: the port, or the path;
    /// `None` for port 0, which conflicts with nothing.
    fn clash_key(&self, kind: SocketKind) -> Option<ClashKey> {
        let connected = kind.is_connected();
        match self {
            BindAddr::Unix(p) => Some(ClashKey::Path(connected, p.clone())),
            _ if self.is_ephemeral() => None,
            _ => Some(ClashKey::Port(connected, self.port())),
        }
    }

    /// True when binding both would conflict.
    fn overlaps(&self, other: &BindAddr) -> bool {
        match (self, other) {
            (BindAddr::Unix(a), BindAddr::Unix(b)) => a == b,
            (BindAddr::Unix(_), _) | (_, BindAddr::Unix(_)) => false,
            // Port 0 asks the kernel for a free port each time.
            (BindAddr::Ip(a), BindAddr::Ip(b)) => a == b && a.port() != 0,
            _ => self.port() == other.port() && self.port() != 0,
        }
    }
}

/// See `BindAddr::clash_key`: TCP and UDP ports are separate; a stream and a
/// seqpacket socket share one (both connected).
#[derive(PartialEq, Eq, Hash)]
enum ClashKey {
    Port(bool, u16),
    Path(bool, PathBuf),
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Ip(a) => write!(f, "{a}"),
            BindAddr::Any(p) => write!(f, "*:{p}"),
            BindAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Owner and mode of a UNIX-domain socket's file, set after each bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketFile {
    pub mode: u32,
    /// uid and gid; oxinetd's own when `None`.
    pub owner: Option<(u32, u32)>,
}

impl Default for SocketFile {
    /// As systemd's `SocketMode=` default: who may connect is decided by
    /// the directory the socket is in.
    fn default() -> SocketFile {
        SocketFile {
            mode: 0o666,
            owner: None,
        }
    }
}

/// What identifies a listening socket across reloads: a service whose key is
/// unchanged keeps its socket; one whose options changed is bound again.
/// (Port 0, an ephemeral port, is only the same listener for the same
/// service; see `reload`.)
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenKey {
    pub addr: BindAddr,
    pub kind: SocketKind,
    pub opts: SockOpts,
}

/// Options of a service's listening sockets, the same for every `listen`
/// entry of the service. Unset ones leave the socket as the kernel (or,
/// for a socket given at start, its giver) made it; none costs anything
/// per connection: what an accepted socket needs it inherits from its
/// listener (`SO_KEEPALIVE`, `TCP_NODELAY`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SockOpts {
    /// `listen(2)`'s backlog; `None`: `listener::BACKLOG`.
    pub backlog: Option<u32>,
    /// `SO_REUSEPORT`: other sockets of the same user may bind the port.
    pub reuseport: bool,
    /// `IP_FREEBIND` / `IPV6_FREEBIND`: bind an address not configured
    /// (yet), a floating address.
    pub freebind: bool,
    /// `SO_BINDTODEVICE`: only packets of that interface (or VRF).
    pub bind_device: Option<String>,
    /// `IPV6_V6ONLY` of `[V6]:PORT` sockets; `None`: on, as without the
    /// key (`*:PORT` is the dual-stack one).
    pub v6only: Option<bool>,
    /// `SO_KEEPALIVE` (stream).
    pub keepalive: bool,
    /// `TCP_NODELAY` (stream).
    pub nodelay: bool,
    /// `TCP_DEFER_ACCEPT`, whole seconds (TCP); 0: off.
    pub defer_accept: u32,
}

impl SockOpts {
    /// The `listen(2)` backlog.
    pub fn backlog(&self) -> i32 {
        self.backlog
            .map_or(crate::listener::BACKLOG, |b| b.min(i32::MAX as u32) as i32)
    }
}

impl ListenKey {
    /// The protocol as logged and listed: `tcp`, `udp`, or for a
    /// UNIX-domain socket `unix` (stream), `unix-dgram` or `unix-seqpacket`.
    pub fn proto_name(&self) -> &'static str {
        match (&self.addr, self.kind) {
            (BindAddr::Unix(_), SocketKind::Stream) => "unix",
            (BindAddr::Unix(_), SocketKind::Dgram) => "unix-dgram",
            (BindAddr::Unix(_), SocketKind::Seqpacket) => "unix-seqpacket",
            (_, kind) => kind.ip_protocol(),
        }
    }
}

impl fmt::Display for ListenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            BindAddr::Unix(_) => write!(f, "{}/{}", self.addr, self.kind.name()),
            _ => write!(f, "{}/{}", self.addr, self.kind.ip_protocol()),
        }
    }
}

/// What serves a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// A program, run per connection (or per datagram, or per wait cycle).
    Exec {
        /// Absolute path of the program.
        server: PathBuf,
        /// Full argv, `argv[0]` included.
        argv: Vec<String>,
    },
    /// A built-in service, served in-process (`internal:NAME`).
    Internal(Internal),
    /// A relay to another address, served in-process (`forward`).
    Forward(crate::forward::Forward),
}

impl Handler {
    /// Served by oxinetd itself, on its loop: no handler process.
    pub fn in_process(&self) -> bool {
        !matches!(self, Handler::Exec { .. })
    }
}

/// One service, resolved.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// Where the service was defined, for messages.
    pub origin: Location,
    pub listen: Vec<ListenKey>,
    pub kind: SocketKind,
    pub wait: WaitMode,
    pub identity: Identity,
    pub handler: Handler,
    /// `env` plus the `passenv` values found at load time.
    pub env: Vec<(String, String)>,
    pub stderr: StderrMode,
    /// Who may connect, and when.
    pub access: Rare<Access>,
    /// Sent to a refused TCP client before closing (`banner_fail`).
    pub banner_fail: Option<Vec<u8>>,
    pub limits: Rare<Limits>,
    /// Which fields the per-connection log lines carry.
    pub log: LogFields,
    /// Owner and mode of its UNIX-domain sockets' files.
    pub socket_file: SocketFile,
    /// What its handlers may do: limits, privileges, filesystem, network.
    pub confine: Rare<crate::confine::Confine>,
    /// `proxy_protocol`: a PROXY header is read from each connection
    /// first, from the balancers it trusts.
    pub proxy: Option<Box<crate::proxy::Trust>>,
    /// `tls`: each connection's TLS is done by an `oxinetd-tls relay`
    /// process of the service's user, in front of the handler.
    pub tls: Option<Box<crate::tls::Settings>>,
}

impl Service {
    /// Its effective settings as a `[[service]]` block of TOML (`oxinetd
    /// check --list`), after a `# from FILE:LINE:COL` line; `budget` gives
    /// the default limits of internal stream services.
    pub fn settings(&self, budget: &crate::fds::FdBudget) -> String {
        list::describe(self, budget)
    }
}

/// Settings of the supervisor itself.
#[derive(Debug, Clone)]
pub struct Global {
    pub syslog_facility: syslog::Facility,
    /// Unix socket of the syslog daemon; the system default when `None`.
    pub syslog_socket: Option<PathBuf>,
    /// How long SIGTERM waits for running handlers.
    pub shutdown_grace: Duration,
    /// How long a `wait` service whose handlers exit without reading is paused.
    pub loop_pause: Duration,
    /// Most handler processes across all services.
    pub max_processes: usize,
    /// The control socket of `oxinetd status`/`reload`/`stop`; `None`:
    /// none (`control_socket = ""`, or no default for this user).
    pub control_socket: Option<PathBuf>,
    /// The group given `status` on the control socket (its file then
    /// mode 0660 and this group); `None`: the socket is 0600.
    pub control_group: Option<u32>,
}

impl Default for Global {
    fn default() -> Global {
        Global {
            syslog_facility: syslog::Facility::LOG_DAEMON,
            syslog_socket: None,
            shutdown_grace: Duration::from_secs(5),
            loop_pause: Duration::from_secs(10),
            max_processes: 4096,
            control_socket: crate::control::default_path(),
            control_group: None,
        }
    }
}

/// A whole configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub global: Global,
    pub services: Vec<Service>,
}

/// The result of loading: the services that resolved, and the problems met,
/// among them the errors of the services that did not (a broken service
/// never hides the good ones).
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Errors, then skipped, then warnings; each in reading order.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// The problems of one severity, in reading order.
    pub fn problems(&self, severity: Severity) -> impl Iterator<Item = &ConfigError> {
        self.diagnostics
            .iter()
            .filter(move |d| d.severity == severity)
            .map(|d| &d.problem)
    }
}

/// Load `path` as `format`, or as its name implies when `None`.
pub fn load_with(
    path: &Path,
    format: Option<Format>,
    ctx: &Context,
) -> Result<Loaded, Vec<ConfigError>> {
    match format {
        Some(f) => load_as(path, f, ctx),
        None => load(path, ctx),
    }
}

/// Facts about the running process that decide what a config may ask for.
#[derive(Debug, Clone)]
pub struct Context {
    pub euid: u32,
    pub egid: u32,
    /// Environment that `passenv` reads.
    pub env: Vec<(OsString, OsString)>,
    /// The services database, for port names.
    pub etc_services: PathBuf,
}

impl Context {
    pub fn current() -> Context {
        Context {
            euid: nix::unistd::geteuid().as_raw(),
            egid: nix::unistd::getegid().as_raw(),
            env: std::env::vars_os().collect(),
            etc_services: PathBuf::from("/etc/services"),
        }
    }
}

/// The syntax of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    /// inetd.conf (OpenBSD, FreeBSD, Debian openbsd-inetd, inetutils).
    Inetd,
    /// xinetd.conf and xinetd.d/ files.
    Xinetd,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Toml => "toml",
            Format::Inetd => "inetd",
            Format::Xinetd => "xinetd",
        }
    }

    /// The format a file's name implies; `None` when it has to be told
    /// (`UNDETECTED`): a guess is never silent.
    pub fn detect(path: &Path) -> Option<Format> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let in_xinetd_d = path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "xinetd.d");
        if path.extension().is_some_and(|e| e == "toml") {
            Some(Format::Toml)
        } else if name == "inetd.conf" {
            Some(Format::Inetd)
        } else if name == "xinetd.conf" || in_xinetd_d || (path.is_dir() && name == "xinetd.d") {
            Some(Format::Xinetd)
        } else {
            None
        }
    }
}

/// Why a config's format must be given: its name does not tell it.
pub const UNDETECTED: &str = "cannot tell the config format from the file name \
     (*.toml, inetd.conf, xinetd.conf, xinetd.d/); pass --format toml|inetd|xinetd";

/// Load `path` in the format its name implies (see `Format::detect`).
pub fn load(path: &Path, ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
    match Format::detect(path) {
        Some(format) => load_as(path, format, ctx),
        None => Err(vec![ConfigError::new(Location::file(path), UNDETECTED)]),
    }
}

/// What `oxinetd import` writes: the TOML text, and the problems met.
pub struct Imported {
    pub text: String,
    /// Errors and skipped lines in reading order, then warnings.
    pub diagnostics: Vec<Diagnostic>,
}

/// Translate an inetd or xinetd config (a file, or an xinetd.d directory)
/// for `oxinetd import`.
pub fn import(path: &Path, format: Format) -> Imported {
    let mut t = match format {
        Format::Inetd => inetd::translate(path),
        Format::Xinetd => xinetd::translate(path),
        Format::Toml => {
            return match std::fs::read_to_string(path) {
                Ok(text) => Imported {
                    text,
                    diagnostics: Vec::new(),
                },
                Err(e) => Imported {
                    text: String::new(),
                    diagnostics: vec![Diagnostic::error(ConfigError::new(
                        Location::file(path),
                        format!("unable to read config: {e}"),
                    ))],
                },
            };
        }
    };
    tcpwrappers::warn(&mut t);
    import::absolute_paths(&mut t, path);
    let text = import::render(&t, format.name());
    let (mut warnings, mut diagnostics): (Vec<_>, Vec<_>) = t
        .diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Warning);
    sort_problems(&mut diagnostics);
    sort_problems(&mut warnings);
    diagnostics.append(&mut warnings);
    Imported { text, diagnostics }
}

/// Load and resolve `path` as `format`. `Err` means nothing could be loaded
/// (unreadable file, syntax error); otherwise broken services are listed in
/// `errors`, and the services that run are in `config`.
pub fn load_as(path: &Path, format: Format, ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
    let loaded = match format {
        Format::Toml => toml::read(path).map(|raw| resolve::resolve(raw, ctx)),
        Format::Inetd | Format::Xinetd => {
            let mut t = match format {
                Format::Inetd => inetd::translate(path),
                _ => xinetd::translate(path),
            };
            tcpwrappers::warn(&mut t);
            t.resolve(path, ctx)
        }
    };
    let mut loaded = match loaded {
        Ok(l) => resolve::check_conflicts(l),
        Err(mut errors) => {
            in_reading_order(&mut errors, |e| e);
            return Err(errors);
        }
    };
    let by_severity = |s: Severity| {
        let mut list: Vec<Diagnostic> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .cloned()
            .collect();
        sort_problems(&mut list);
        list
    };
    loaded.diagnostics = [Severity::Error, Severity::Skipped, Severity::Warning]
        .into_iter()
        .flat_map(by_severity)
        .collect();
    Ok(loaded)
}

fn sort_problems(list: &mut [Diagnostic]) {
    in_reading_order(list, |d| &d.problem);
}

/// Sort problems in reading order: files as first met, then line and
/// column (stable: problems at one place keep their order).
fn in_reading_order<T>(list: &mut [T], problem: impl Fn(&T) -> &ConfigError) {
    let mut files: Vec<PathBuf> = Vec::new();
    for item in list.iter() {
        let file = &problem(item).at.file;
        if !files.contains(file) {
            files.push(file.clone());
        }
    }
    list.sort_by_key(|item| {
        let at = &problem(item).at;
        (files.iter().position(|f| *f == at.file), at.line, at.col)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privilege::Identity;

    #[test]
    fn wildcard_overlaps_specific_on_same_port() {
        let a = BindAddr::Any(5);
        let b = BindAddr::Ip("127.0.0.1:5".parse().unwrap());
        let c = BindAddr::Ip("127.0.0.1:6".parse().unwrap());
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&c));
        assert!(!BindAddr::Any(0).overlaps(&BindAddr::Any(0)));
    }

    #[test]
    fn clashing_services_are_dropped_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let svc = |name: &str, listen: &str, socket: &str| {
            // Internal services listen on IP addresses only.
            let server = if listen.starts_with(r#"["/"#) {
                "server = \"/bin/cat\"\nuser = \"root\""
            } else {
                "server = \"internal:echo\""
            };
            format!(
                "[[service]]\nname = \"{name}\"\nlisten = {listen}\nsocket = \"{socket}\"\n\
                 {server}\n\n"
            )
        };
        let text = [
            svc("a", r#"["127.0.0.1:7001"]"#, "stream"),
            svc("b", r#"["*:7001"]"#, "stream"),
            svc("c", r#"["*:7001"]"#, "dgram"),
            svc("a", r#"["127.0.0.1:7002"]"#, "stream"),
            svc("d", r#"["127.0.0.2:7001", "127.0.0.1:0"]"#, "stream"),
            svc("e", r#"["127.0.0.1:0"]"#, "stream"),
            svc("u", r#"["/run/x.sock"]"#, "stream"),
            svc("f", r#"["/run/x.sock"]"#, "stream"),
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let as_root = Context {
            euid: 0,
            egid: 0,
            ..Context::current()
        };
        let loaded = load_as(&path, Format::Toml, &as_root).unwrap();
        let errors: Vec<String> = loaded
            .problems(Severity::Error)
            .map(|e| e.to_string())
            .collect();
        let names: Vec<&str> = loaded
            .config
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["a", "c", "d", "e", "u"], "{errors:#?}");
        let at = path.display();
        assert_eq!(
            errors,
            [
                format!(
                    "{at}:8:1: service \"b\": listen *:7001/tcp overlaps 127.0.0.1:7001/tcp \
                     of service \"a\" ({at}:2:1)"
                ),
                format!("{at}:20:1: duplicate service name \"a\" (first defined at {at}:2:1)"),
                format!(
                    "{at}:45:1: service \"f\": listen unix:/run/x.sock/stream overlaps \
                     unix:/run/x.sock/stream of service \"u\" ({at}:38:1)"
                ),
            ]
        );
    }

    #[test]
    fn user_if_root_stands_in_for_user_only_when_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let svc = |name: &str, extra: &str| {
            format!(
                "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\n\
                 server = \"/bin/cat\"\n{extra}\n"
            )
        };
        let text = [
            "[defaults]\nuser_if_root = \"nobody\"\n\n".to_owned(),
            svc("plain", ""),
            svc("own", "user = \"daemon\""),
            svc("both", "user = \"daemon\"\nuser_if_root = \"nobody\""),
        ]
        .concat();
        std::fs::write(&path, text).unwrap();
        let load = |euid: u32| {
            let ctx = Context {
                euid,
                egid: euid,
                ..Context::current()
            };
            let loaded = load_as(&path, Format::Toml, &ctx).unwrap();
            let errors: Vec<String> = loaded
                .problems(Severity::Error)
                .map(|e| e.to_string())
                .collect();
            let users: Vec<(String, Option<String>)> = loaded
                .config
                .services
                .iter()
                .map(|s| {
                    let user = match &s.identity {
                        Identity::Inherit => None,
                        Identity::Switch { user, .. } => Some(user.clone()),
                    };
                    (s.name.clone(), user)
                })
                .collect();
            (users, errors)
        };
        let at = path.display();
        let unused = format!(
            "{at}:19:16: user_if_root \"nobody\": never used: user \"daemon\" is set for \
             this service and applies whether or not oxinetd runs as root"
        );
        // As root: the service without a user runs as nobody; a service's
        // own user beats the default.
        let (users, errors) = load(0);
        assert_eq!(
            users,
            [
                ("plain".to_owned(), Some("nobody".to_owned())),
                ("own".to_owned(), Some("daemon".to_owned())),
            ]
        );
        assert_eq!(errors, std::slice::from_ref(&unused));
        // As another user it changes nothing: handlers keep that user.
        let (users, errors) = load(54321);
        assert_eq!(users, [("plain".to_owned(), None)]);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].contains("\"own\": user \"daemon\""),
            "{errors:#?}"
        );
        assert_eq!(errors[2], unused);
    }
}
