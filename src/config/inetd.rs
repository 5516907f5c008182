//! The inetd.conf front-end: OpenBSD, FreeBSD, Debian openbsd-inetd and
//! inetutils-inetd lines, translated to TOML service keys (see `draft`).
//!
//! ```text
//! [addr:]service  socket-type  protocol  wait|nowait[.max|/a/b/c]  user[:group|.group][/class]  server|internal  [argv0 args...]
//! addr:                      (OpenBSD: the default address of the lines after it)
//! ```
//!
//! Choices (documented in oxinetd.toml(5), MIGRATION): `tcp`/`udp` without an
//! address listen on IPv4 and IPv6 (as Debian's openbsd-inetd does), `tcp4`/
//! `tcp6` on one family; `.max` (per minute) becomes `rate = [max, 60, 600]`,
//! the ten-minute pause of openbsd-inetd and inetutils; FreeBSD's
//! `/max-child/max-conn-per-ip-per-min/max-child-per-ip` becomes `instances`,
//! `per_source_rate = [N, 60]` and `per_source`; the handler's stderr is the
//! socket, as under every inetd.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::classic::{listen_entry, resolve_host, Translation};
use super::error::quote;
use super::raw::{Draft, Value};
use super::source::{Entry, Sources};
use super::{ConfigError, Diagnostic, Location};
use crate::internal::Internal;

/// Translate `path`, and the files of an `inetd.d` directory beside it
/// (inetutils) when there is one.
pub fn translate(path: &Path) -> Translation {
    let mut sources = Sources::default();
    let mut t = translate_with(path, None, &mut sources);
    let mut unread = Vec::new();
    sources.finish(&mut unread);
    if !unread.is_empty() {
        unread.into_iter().for_each(|e| t.error(e));
        t.finish();
    }
    t
}

/// `translate`, reading through `sources`: those of a TOML load when the
/// file is included by it at `at` (each file read once, within the load's
/// limits), a new one otherwise. Files that cannot be read are errors of
/// the translation.
pub fn translate_with(path: &Path, at: Option<&Location>, sources: &mut Sources) -> Translation {
    let mut t = Translation::default();
    let mut files = vec![path.to_path_buf()];
    if let Some(dir) = path.parent().map(|d| d.join("inetd.d")) {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut extra: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && !hidden_or_backup(p))
                .collect();
            extra.sort();
            files.extend(extra);
        }
    }
    // Read through `Sources` for its size limits (inetd has no includes).
    let mut unread = Vec::new();
    for file in files {
        if let Entry::Read(text) = sources.enter(&file, at, &mut unread) {
            translate_text(&file, &text, &mut t);
            sources.leave();
        }
        t.sources.push(file);
    }
    unread.into_iter().for_each(|e| t.error(e));
    name_services(&mut t);
    t.finish();
    t
}

/// Editor backups and package-manager leftovers are not configuration.
fn hidden_or_backup(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with('.')
        || name.ends_with('~')
        || [
            ".dpkg-old",
            ".dpkg-new",
            ".dpkg-dist",
            ".rpmnew",
            ".rpmsave",
            ".bak",
        ]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Translate the lines of one file.
pub fn translate_text(file: &Path, text: &str, t: &mut Translation) {
    // OpenBSD: a line holding only `addr:` sets the address of later lines.
    let mut default_host: Option<String> = None;
    let first = t.services.len();
    // The lines of this file with a bare `tcp`/`udp` on every address
    // (`*:PORT`), by index in `t.services`: see `bsd_families`.
    let mut bare = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let pos = LinePos {
            file,
            number: i + 1,
            raw,
        };
        if line.starts_with("#@") {
            t.warning(ConfigError::new(
                pos.at(0),
                "FreeBSD IPsec policy comments (#@) are not supported; the lines after it run without one",
            ));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [only] = words[..] {
            if let Some(host) = only.strip_suffix(':') {
                default_host = (host != "*").then(|| host.to_owned());
                continue;
            }
        }
        let mut warnings = Vec::new();
        match translate_line(&pos, &words, default_host.as_deref(), &mut warnings) {
            Ok(draft) => {
                if matches!(words[PROTOCOL], "tcp" | "udp") && wildcard_port(&draft).is_some() {
                    bare.push(t.services.len());
                }
                t.services.push(draft);
            }
            Err(p) => t.report(p),
        }
        warnings.into_iter().for_each(|w| t.warning(w));
    }
    bsd_families(&mut t.services, first, &bare);
}

/// The port of a service that listens on `*:PORT` alone.
fn wildcard_port(d: &Draft) -> Option<&str> {
    match d.get("listen") {
        Some(Value::List(items)) => match &items[..] {
            [Value::Str(one)] => one.strip_prefix("*:"),
            _ => None,
        },
        _ => None,
    }
}

/// The BSD pair: in OpenBSD's and FreeBSD's files `tcp` is IPv4 and
/// `tcp6` IPv6, and a file that names a service with both means two
/// sockets. So a bare `tcp` (or `udp`) line on every address, which alone
/// is one dual-stack socket, listens on IPv4 only when the same file has a
/// `tcp6` (`udp6`) line for the same service on every address (`[::]`).
fn bsd_families(services: &mut [Draft], first: usize, bare: &[usize]) {
    for &i in bare {
        let Some(port) = wildcard_port(&services[i]).map(str::to_owned) else {
            continue;
        };
        let v6 = Value::strs(vec![format!("[::]:{port}")]);
        let socket = services[i].get("socket").cloned();
        let pair = services
            .get(first..)
            .unwrap_or_default()
            .iter()
            .find(|d| d.get("listen") == Some(&v6) && d.get("socket") == socket.as_ref())
            .map(|d| d.origin.line);
        let Some(line) = pair else { continue };
        let d = &mut services[i];
        let Some(listen) = d.keys.iter_mut().find(|k| k.name == "listen") else {
            continue;
        };
        listen.value = Value::strs(vec![format!("0.0.0.0:{port}")]);
        let at = listen.at.clone();
        d.note(
            &at,
            format!("IPv4 only: line {line} serves IPv6, as in BSD inetd.conf (tcp and tcp6, udp and udp6, are two sockets)"),
        );
    }
}

/// 1-based column of whitespace-separated field `n` of `line`.
fn nth_field_col(line: &str, n: usize) -> usize {
    let mut col = 0;
    let mut in_field = false;
    let mut seen = 0;
    for (i, c) in line.chars().enumerate() {
        if c.is_whitespace() {
            in_field = false;
        } else if !in_field {
            in_field = true;
            if seen == n {
                return i + 1;
            }
            seen += 1;
            col = i + 1;
        }
    }
    col.max(1)
}

// The fields of a line, numbered as `LinePos::at` counts them.
const SERVICE: usize = 0;
const SOCKET_TYPE: usize = 1;
const PROTOCOL: usize = 2;
const WAIT: usize = 3;
const USER: usize = 4;
const SERVER: usize = 5;
const ARGV0: usize = 6;
const ARGS: usize = 7;

/// One line of a file, to locate its fields in messages.
struct LinePos<'a> {
    file: &'a Path,
    /// 1-based.
    number: usize,
    raw: &'a str,
}

impl LinePos<'_> {
    /// Where field `n` starts (the last field's start when there are fewer).
    fn at(&self, n: usize) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: self.number,
            col: nth_field_col(self.raw, n),
        }
    }

    /// Field `n` is malformed.
    fn invalid(&self, n: usize, m: String) -> Diagnostic {
        Diagnostic::error(ConfigError::new(self.at(n), m))
    }

    /// Field `n` asks for something oxinetd does not do: the line is not run.
    fn unsupported(&self, n: usize, m: &str) -> Diagnostic {
        Diagnostic::skipped(ConfigError::new(self.at(n), m.to_owned()))
    }
}

/// The fields of a service line, by name (see the module doc).
struct Fields<'a> {
    service: &'a str,
    socket_type: &'a str,
    protocol: &'a str,
    wait: &'a str,
    user: &'a str,
    server: &'a str,
    /// `argv[0]` and the arguments, if any.
    argv: &'a [&'a str],
}

impl<'a> Fields<'a> {
    /// Name the words of a line; there are at least six.
    fn split(pos: &LinePos, words: &'a [&'a str]) -> Result<Fields<'a>, Diagnostic> {
        let [service, socket_type, protocol, wait, user, server, argv @ ..] = words else {
            return Err(pos.invalid(
                SERVICE,
                format!(
                    "expected at least 6 fields (service socket-type protocol wait/nowait user server [args]), found {}",
                    words.len()
                ),
            ));
        };
        Ok(Fields {
            service,
            socket_type,
            protocol,
            wait,
            user,
            server,
            argv,
        })
    }
}

/// Socket type and protocol, translated.
struct Transport {
    udp: bool,
    /// A UNIX-domain socket: the service field is its path.
    unix: bool,
    /// SOCK_SEQPACKET (UNIX-domain only).
    seqpacket: bool,
    /// None: both families; Some(true): IPv6 only; Some(false): IPv4 only.
    v6: Option<bool>,
}

impl Transport {
    /// The socket-type and protocol fields: stream or dgram over tcp/udp
    /// (4, 6, 46) or unix, seqpacket over unix. RPC, SCTP, raw and rdm are
    /// valid inetd but not run.
    fn parse(pos: &LinePos, socket_type: &str, protocol: &str) -> Result<Transport, Diagnostic> {
        match (socket_type, protocol) {
            (_, p) if p.starts_with("rpc/") => {
                Err(pos.unsupported(PROTOCOL, &format!("RPC services ({p}) are not supported")))
            }
            ("stream" | "dgram" | "seqpacket", "unix") => Ok(Transport {
                udp: socket_type == "dgram",
                unix: true,
                seqpacket: socket_type == "seqpacket",
                v6: None,
            }),
            ("stream" | "dgram", p) => {
                let udp = socket_type == "dgram";
                let ip = if udp { "udp" } else { "tcp" };
                let v6 = match p.strip_prefix(ip) {
                    Some("" | "46") => None,
                    Some("4") => Some(false),
                    Some("6") => Some(true),
                    _ => return Err(pos.invalid(
                        PROTOCOL,
                        format!(
                            "protocol \"{p}\" does not go with socket type {socket_type} (use {ip}, {ip}4, {ip}6 or {ip}46)"
                        ),
                    )),
                };
                Ok(Transport {
                    udp,
                    unix: false,
                    seqpacket: false,
                    v6,
                })
            }
            ("seqpacket", _) => Err(pos.unsupported(
                SOCKET_TYPE,
                "seqpacket over IP (SCTP) is not supported; over unix it is",
            )),
            ("raw" | "rdm", _) => Err(pos.unsupported(
                SOCKET_TYPE,
                &format!("socket type {socket_type} is not supported (stream and dgram are)"),
            )),
            (other, _) => Err(pos.invalid(
                SOCKET_TYPE,
                format!("unknown socket type \"{other}\"", other = quote(other)),
            )),
        }
    }

    /// The TOML `socket`.
    fn socket(&self) -> &'static str {
        match (self.udp, self.seqpacket) {
            (true, _) => "dgram",
            (false, true) => "seqpacket",
            (false, false) => "stream",
        }
    }

    /// The protocol as the service's name ends: `echo-tcp`.
    fn name_suffix(&self) -> &'static str {
        match (self.unix, self.udp) {
            (true, _) => "unix",
            (false, true) => "udp",
            (false, false) => "tcp",
        }
    }
}

/// Translate one service line; `default_host` is the OpenBSD `addr:` in
/// force. Each concern in turn, in the order its keys are written; the
/// first problem found is the `Err`.
fn translate_line(
    pos: &LinePos,
    words: &[&str],
    default_host: Option<&str>,
    warnings: &mut Vec<ConfigError>,
) -> Result<Draft, Diagnostic> {
    let f = Fields::split(pos, words)?;
    let transport = Transport::parse(pos, f.socket_type, f.protocol)?;
    if f.service.starts_with("tcpmux/") || f.service == "tcpmux" {
        return Err(pos.unsupported(SERVICE, "tcpmux services are not supported yet"));
    }
    // [host:]service, or the path of a UNIX-domain socket.
    let (host, port) = if transport.unix {
        (None, f.service)
    } else {
        split_host(f.service, default_host)
    };
    if port.is_empty() {
        return Err(pos.invalid(
            SERVICE,
            format!(
                "\"{service}\": no service name or port",
                service = quote(f.service)
            ),
        ));
    }
    let mut l = LineDraft {
        pos,
        d: Draft::new(pos.at(SERVICE)),
        warnings,
    };
    let server = if transport.unix {
        l.unix_socket(f.service, f.server)?
    } else {
        l.ip_listen(host, port, transport.v6)?;
        f.server
    };
    l.d.set(
        "socket",
        Value::Str(transport.socket().to_owned()),
        &pos.at(SOCKET_TYPE),
    );
    let (waits, limits) = wait_field(pos, f.wait)?;
    if server == "internal" {
        l.builtin(port, &f)?;
    } else {
        l.program(waits, server, &f)?;
    }
    if let Some(spec) = limits {
        rate_limits(spec, &mut l.d, &pos.at(WAIT)).map_err(|m| pos.invalid(WAIT, m))?;
    }
    l.d.set(
        "name",
        Value::Str(service_name(port, transport.name_suffix())),
        &pos.at(SERVICE),
    );
    Ok(l.d)
}

/// `wait|nowait[.max]` or FreeBSD's
/// `wait|nowait[/max-child[/per-ip-per-min[/per-ip]]]`: whether the
/// service waits, and the limits for `rate_limits`.
fn wait_field<'a>(pos: &LinePos, wait: &'a str) -> Result<(bool, Option<&'a str>), Diagnostic> {
    let (mode, limits) = match wait.find(['.', '/']) {
        Some(i) => (&wait[..i], Some(&wait[i..])),
        None => (wait, None),
    };
    match mode {
        "wait" => Ok((true, limits)),
        "nowait" => Ok((false, limits)),
        other => Err(pos.invalid(
            WAIT,
            format!("\"{other}\": expected wait or nowait", other = quote(other)),
        )),
    }
}

/// A name that says which line it is: `echo-tcp`, `tftp-udp`.
fn service_name(port: &str, suffix: &str) -> String {
    let base: String = port
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{base}-{suffix}")
}

/// A service line being translated: where it is, and the draft built
/// from it.
struct LineDraft<'a> {
    pos: &'a LinePos<'a>,
    d: Draft,
    /// Settings of the line that are not applied.
    warnings: &'a mut Vec<ConfigError>,
}

impl LineDraft<'_> {
    /// `listen` for an IP service: see `listen_entries`.
    fn ip_listen(
        &mut self,
        host: Option<&str>,
        port: &str,
        v6: Option<bool>,
    ) -> Result<(), Diagnostic> {
        let listen = listen_entries(host, port, v6).map_err(|m| self.pos.invalid(SERVICE, m))?;
        self.d
            .set("listen", Value::strs(listen), &self.pos.at(SERVICE));
        Ok(())
    }

    /// A UNIX-domain socket at `path`. FreeBSD's `:user:group:mode:` before
    /// the server sets the socket file's owner and mode; without it only
    /// root can connect, as inetd leaves the socket. The server without
    /// that prefix is returned.
    fn unix_socket<'s>(&mut self, path: &str, server: &'s str) -> Result<&'s str, Diagnostic> {
        let pos = self.pos;
        self.d.set(
            "listen",
            Value::strs(vec![path.to_owned()]),
            &pos.at(SERVICE),
        );
        self.d
            .set("protocol", Value::Str("unix".to_owned()), &pos.at(PROTOCOL));
        let parts = server
            .strip_prefix(':')
            .map(|r| r.splitn(4, ':').collect::<Vec<_>>());
        let (mode, server) = match parts {
            Some(parts) if parts.len() == 4 => {
                self.d.set(
                    "socket_owner",
                    Value::Str(format!("{}:{}", parts[0], parts[1])),
                    &pos.at(SERVER),
                );
                (parts[2].to_owned(), parts[3])
            }
            Some(_) => {
                return Err(pos.invalid(
                    SERVER,
                    format!(
                        "\"{server}\": expected :user:group:mode:server-path",
                        server = quote(server)
                    ),
                ))
            }
            None => ("0200".to_owned(), server),
        };
        self.d.set("socket_mode", Value::Str(mode), &pos.at(SERVER));
        Ok(server)
    }

    /// `internal`: the built-in service named by the service field, or
    /// else by the first argument. The user is noted: internal services
    /// run inside oxinetd.
    fn builtin(&mut self, port: &str, f: &Fields) -> Result<(), Diagnostic> {
        let pos = self.pos;
        let classic = |n: &str| Internal::from_name(n).filter(|i| i.classic());
        let named = classic(port).or_else(|| f.argv.first().and_then(|a| classic(a)));
        let Some(named) = named else {
            let names: Vec<&str> = Internal::ALL
                .iter()
                .filter(|i| i.classic())
                .map(|i| i.name())
                .collect();
            return Err(pos.invalid(
                SERVER,
                format!(
                    "internal: \"{port}\" is not a built-in service, and no argument names one ({})",
                    names.join(", ")
                ),
            ));
        };
        self.d.set(
            "server",
            Value::Str(format!("internal:{}", named.name())),
            &pos.at(SERVER),
        );
        if f.user != "root" {
            self.d.note(
                &pos.at(USER),
                format!(
                    "user {user}: internal services run inside oxinetd",
                    user = quote(f.user)
                ),
            );
        }
        Ok(())
    }

    /// A program: `wait`, who it runs as, the server and its argv, and
    /// stderr on the socket as under every inetd.
    fn program(&mut self, waits: bool, server: &str, f: &Fields) -> Result<(), Diagnostic> {
        self.d.set("wait", Value::Bool(waits), &self.pos.at(WAIT));
        self.identity(f.user)?;
        self.d.set(
            "server",
            Value::Str(server.to_owned()),
            &self.pos.at(SERVER),
        );
        self.argv(server, f.argv);
        self.d.set(
            "stderr",
            Value::Str("socket".to_owned()),
            &self.pos.at(SERVER),
        );
        let at = self.pos.at(SERVICE);
        self.d.set("no_new_privs", Value::Bool(false), &at);
        self.d.note(&at, super::xinetd::NO_NEW_PRIVS_NOTE);
        Ok(())
    }

    /// `user[:group|.group][/class]`: the login class has no equivalent.
    fn identity(&mut self, user: &str) -> Result<(), Diagnostic> {
        let at = self.pos.at(USER);
        let (name, group) = split_user(user);
        if name.is_empty() {
            return Err(self.pos.invalid(
                USER,
                format!("\"{user}\": no user name", user = quote(user)),
            ));
        }
        self.d.set("user", Value::Str(name.to_owned()), &at);
        if let Some(g) = group {
            self.d.set("group", Value::Str(g.to_owned()), &at);
        }
        if let Some((_, class)) = user.split_once('/') {
            // FreeBSD's inetd applies the class's login.conf(5) settings
            // (resource limits, priority, umask...); there is no login.conf
            // on Linux to read them from.
            let text = format!(
                "login class \"{class}\": its login.conf settings (resource limits, \
                 priority, umask) are not applied; write them as rlimits, nice and umask",
                class = quote(class)
            );
            self.warnings
                .push(ConfigError::new(at.clone(), text.clone()));
            self.d.note(&at, text);
        }
        Ok(())
    }

    /// `argv[0]`, written only when it is not the server's file name, and
    /// the arguments.
    fn argv(&mut self, server: &str, argv: &[&str]) {
        let Some((argv0, rest)) = argv.split_first() else {
            self.d.note(
                &self.pos.at(SERVER),
                "no argv given: argv[0] is the program's file name",
            );
            return;
        };
        let default0 = Path::new(server).file_name().and_then(|n| n.to_str());
        if default0 != Some(*argv0) {
            self.d.set(
                "argv0",
                Value::Str((*argv0).to_owned()),
                &self.pos.at(ARGV0),
            );
        }
        if !rest.is_empty() {
            let rest = rest.iter().map(|s| (*s).to_owned()).collect();
            self.d.set("args", Value::strs(rest), &self.pos.at(ARGS));
        }
    }
}

/// `host:service` (IPv6 hosts in brackets, or bare as OpenBSD allows), or
/// the service alone under the current default host.
fn split_host<'a>(service: &'a str, default_host: Option<&'a str>) -> (Option<&'a str>, &'a str) {
    match service.rsplit_once(':') {
        Some((host, port)) => {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (Some(host), port)
        }
        None => (default_host, service),
    }
}

/// The `listen` entries of a host (IP, `*`, or a name resolved now) and a
/// port or service name, for the families the protocol asks for.
fn listen_entries(host: Option<&str>, port: &str, v6: Option<bool>) -> Result<Vec<String>, String> {
    let host = host.filter(|h| *h != "*");
    let Some(host) = host else {
        return Ok(vec![match v6 {
            None => format!("*:{port}"),
            Some(false) => format!("0.0.0.0:{port}"),
            Some(true) => format!("[::]:{port}"),
        }]);
    };
    let ips = resolve_host(host)?;
    let ips: Vec<IpAddr> = ips
        .into_iter()
        .filter(|ip| v6.is_none_or(|six| ip.is_ipv6() == six))
        .collect();
    if ips.is_empty() {
        return Err(format!(
            "host \"{host}\" has no {} address",
            if v6 == Some(true) { "IPv6" } else { "IPv4" }
        ));
    }
    Ok(ips.into_iter().map(|ip| listen_entry(ip, port)).collect())
}

/// `user`, `user:group`, `user.group`, each with an optional `/class`.
fn split_user(spec: &str) -> (&str, Option<&str>) {
    let spec = spec.split_once('/').map_or(spec, |(u, _)| u);
    match spec.split_once([':', '.']) {
        Some((u, g)) if !g.is_empty() => (u, Some(g)),
        Some((u, _)) => (u, None),
        None => (spec, None),
    }
}

/// `.max` (OpenBSD, Debian, inetutils: spawns per minute) or FreeBSD's
/// `/max-child/max-conn-per-ip-per-min/max-child-per-ip`.
fn rate_limits(spec: &str, d: &mut Draft, at: &Location) -> Result<(), String> {
    let number = |s: &str, what: &str| -> Result<i64, String> {
        s.parse::<i64>()
            .ok()
            .filter(|n| (0..=1_000_000).contains(n))
            .ok_or_else(|| {
                format!(
                    "{what} \"{s}\": expected a number from 0 to 1000000",
                    s = quote(s)
                )
            })
    };
    if let Some(max) = spec.strip_prefix('.') {
        let max = number(max, "invocations per minute")?;
        if max > 0 {
            d.set("rate", Value::ints(vec![max, 60, 600]), at);
            d.note(at, format!(".{max}: more than {max} connections in a minute pauses the service for 10 minutes, as inetd does"));
        }
        return Ok(());
    }
    // One `/` only: in `nowait//30` the empty max-child keeps its default.
    let parts: Vec<&str> = spec.strip_prefix('/').unwrap_or(spec).split('/').collect();
    if parts.len() > 3 {
        return Err(format!(
            "\"{spec}\": expected /max-child/max-conn-per-ip-per-min/max-child-per-ip"
        ));
    }
    if let Some(max_child) = parts.first().filter(|s| !s.is_empty()) {
        let n = number(max_child, "max-child")?;
        if n > 0 {
            d.set("instances", Value::Int(n), at);
        }
    }
    if let Some(per_min) = parts.get(1).filter(|s| !s.is_empty()) {
        let n = number(per_min, "max-conn-per-ip-per-min")?;
        if n > 0 {
            d.set("per_source_rate", Value::ints(vec![n, 60]), at);
        }
    }
    if let Some(per_ip) = parts.get(2).filter(|s| !s.is_empty()) {
        let n = number(per_ip, "max-child-per-ip")?;
        if n > 0 {
            d.set("per_source", Value::Int(n), at);
        }
    }
    Ok(())
}

/// Make names unique: the second `echo-tcp` becomes `echo-tcp-LINE`.
fn name_services(t: &mut Translation) {
    let mut seen: Vec<String> = Vec::new();
    for d in &mut t.services {
        let Some(Value::Str(name)) = d.get("name").cloned() else {
            continue;
        };
        let name = if seen.contains(&name) {
            format!("{name}-{}", d.origin.line)
        } else {
            name
        };
        seen.push(name.clone());
        let at = d.origin.clone();
        d.set("name", Value::Str(name), &at);
        // `name` first, as a person would write it.
        d.keys.rotate_right(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Draft, ConfigError> {
        let mut t = Translation::default();
        translate_text(Path::new("inetd.conf"), line, &mut t);
        match t.diagnostics.pop() {
            Some(d) => Err(d.problem),
            None => t
                .services
                .pop()
                .ok_or_else(|| ConfigError::new(Location::file(Path::new("x")), "nothing")),
        }
    }

    fn key(d: &Draft, k: &str) -> Option<Value> {
        d.get(k).cloned()
    }

    #[test]
    fn classic_lines() {
        let d = one("ftp stream tcp nowait root /usr/sbin/tcpd in.ftpd -l").unwrap();
        assert_eq!(key(&d, "listen"), Some(Value::strs(vec!["*:ftp".into()])));
        assert_eq!(key(&d, "argv0"), Some(Value::Str("in.ftpd".into())));
        assert_eq!(key(&d, "args"), Some(Value::strs(vec!["-l".into()])));
        let d = one(
            "127.0.0.1:tftp dgram udp4 wait.100 nobody:nogroup /usr/sbin/in.tftpd in.tftpd -s /srv",
        )
        .unwrap();
        assert_eq!(
            key(&d, "listen"),
            Some(Value::strs(vec!["127.0.0.1:tftp".into()]))
        );
        assert_eq!(key(&d, "group"), Some(Value::Str("nogroup".into())));
        assert_eq!(key(&d, "rate"), Some(Value::ints(vec![100, 60, 600])));
        assert_eq!(key(&d, "argv0"), None);
        let d = one("7001 stream tcp6 nowait root internal echo").unwrap();
        assert_eq!(key(&d, "server"), Some(Value::Str("internal:echo".into())));
        assert_eq!(
            key(&d, "listen"),
            Some(Value::strs(vec!["[::]:7001".into()]))
        );
        let d = one("x stream tcp nowait/5/0/2 u.g /bin/cat cat").unwrap();
        assert_eq!(key(&d, "instances"), Some(Value::Int(5)));
        assert_eq!(key(&d, "per_source"), Some(Value::Int(2)));
        assert_eq!(key(&d, "per_source_rate"), None, "0: no limit");
        assert_eq!(key(&d, "user"), Some(Value::Str("u".into())));
        let d = one("x stream tcp nowait//30 u /bin/cat cat").unwrap();
        assert_eq!(key(&d, "instances"), None, "empty: the default");
        assert_eq!(key(&d, "per_source_rate"), Some(Value::ints(vec![30, 60])));
    }

    #[test]
    fn default_host_lines() {
        let mut t = Translation::default();
        translate_text(
            Path::new("inetd.conf"),
            "127.0.0.2:\necho stream tcp nowait root internal\n*:\necho dgram udp wait root internal\n",
            &mut t,
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert_eq!(
            t.services[0].get("listen"),
            Some(&Value::strs(vec!["127.0.0.2:echo".into()]))
        );
        assert_eq!(
            t.services[1].get("listen"),
            Some(&Value::strs(vec!["*:echo".into()]))
        );
    }

    /// Issue 24: a `tcp` line and a `tcp6` line for one service are the
    /// BSD pair, IPv4 and IPv6; `tcp` alone stays dual-stack.
    #[test]
    fn tcp_and_tcp6_lines_are_two_families() {
        let mut t = Translation::default();
        translate_text(
            Path::new("inetd.conf"),
            "daytime stream tcp nowait root internal\n\
             daytime stream tcp6 nowait root internal\n\
             echo dgram udp wait root internal\n\
             echo dgram udp6 wait root internal\n\
             time stream tcp nowait root internal\n\
             time dgram udp6 wait root internal\n\
             discard stream tcp46 nowait root internal\n\
             discard stream tcp6 nowait root internal\n",
            &mut t,
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        let listen: Vec<Option<&Value>> = t.services.iter().map(|d| d.get("listen")).collect();
        let one = |s: &str| Value::strs(vec![s.to_owned()]);
        assert_eq!(
            listen,
            [
                Some(&one("0.0.0.0:daytime")),
                Some(&one("[::]:daytime")),
                Some(&one("0.0.0.0:echo")),
                Some(&one("[::]:echo")),
                // Another socket type, and tcp46: not a pair.
                Some(&one("*:time")),
                Some(&one("[::]:time")),
                Some(&one("*:discard")),
                Some(&one("[::]:discard")),
            ]
        );
    }

    #[test]
    fn bad_lines_name_their_field() {
        for (line, col, needle) in [
            ("echo stream", 1, "at least 6 fields"),
            (
                "echo stream udp nowait root internal",
                13,
                "does not go with",
            ),
            ("echo raw tcp nowait root internal", 6, "not supported"),
            (
                "echo stream tcp sometimes root internal",
                17,
                "wait or nowait",
            ),
            ("9 stream tcp nowait root internal", 26, "not a built-in"),
            ("x stream rpc/tcp nowait root /bin/x x", 10, "RPC"),
            ("x stream tcp nowait.lots root /bin/x x", 14, "per minute"),
        ] {
            let e = one(line).unwrap_err();
            assert_eq!(e.at.col, col, "{line}: {e}");
            assert!(e.message.contains(needle), "{line}: {e}");
        }
    }

    #[test]
    fn user_forms() {
        assert_eq!(split_user("a"), ("a", None));
        assert_eq!(split_user("a:b"), ("a", Some("b")));
        assert_eq!(split_user("a.b/staff"), ("a", Some("b")));
        assert_eq!(split_user("a/staff"), ("a", None));
    }
}
