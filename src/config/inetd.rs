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
//! (no equivalent yet, noted) and `per_source`; the handler's stderr is the
//! socket, as under every inetd.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::classic::{listen_entry, resolve_host, Problem, Translation};
use super::error::quote;
use super::raw::{Draft, Value};
use super::source::{Entry, Sources};
use super::{ConfigError, Location};
use crate::internal::Internal;

/// Translate `path`, and the files of an `inetd.d` directory beside it
/// (inetutils) when there is one.
pub fn translate(path: &Path) -> Translation {
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
    let mut sources = Sources::default();
    for file in files {
        if let Entry::Read(text) = sources.enter(&file, None, &mut t.errors) {
            translate_text(&file, &text, &mut t);
            sources.leave();
        }
        t.sources.push(file);
    }
    sources.finish(&mut t.errors);
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
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let at = |field: usize| {
            let col = nth_field_col(raw, field);
            Location {
                file: file.to_path_buf(),
                line: i + 1,
                col,
            }
        };
        if line.starts_with("#@") {
            t.warnings.push(ConfigError::new(
                at(0),
                "FreeBSD IPsec policy comments (#@) are not supported; the lines after it run without one",
            ));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [only] = fields[..] {
            if let Some(host) = only.strip_suffix(':') {
                default_host = (host != "*").then(|| host.to_owned());
                continue;
            }
        }
        match translate_line(&fields, default_host.as_deref(), &at) {
            Ok(draft) => t.services.push(draft),
            Err(p) => t.report(p),
        }
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

fn translate_line(
    fields: &[&str],
    default_host: Option<&str>,
    at: &dyn Fn(usize) -> Location,
) -> Result<Draft, Problem> {
    let err = |field: usize, m: String| Problem::Invalid(ConfigError::new(at(field), m));
    let unsupported =
        |field: usize, m: &str| Problem::Unsupported(ConfigError::new(at(field), m.to_owned()));
    if fields.len() < 6 {
        return Err(err(
            0,
            format!(
                "expected at least 6 fields (service socket-type protocol wait/nowait user server [args]), found {}",
                fields.len()
            ),
        ));
    }
    let (service, socktype, proto, wait, user, server) = (
        fields[0], fields[1], fields[2], fields[3], fields[4], fields[5],
    );
    let args = &fields[6..];
    let origin = at(0);
    let mut d = Draft::new(origin.clone());

    let transport = match (socktype, proto) {
        (_, p) if p.starts_with("rpc/") => {
            return Err(unsupported(
                2,
                &format!("RPC services ({p}) are not supported"),
            ))
        }
        ("stream", "unix") | ("dgram", "unix") | ("seqpacket", "unix") => Transport {
            udp: socktype == "dgram",
            unix: true,
            seqpacket: socktype == "seqpacket",
            v6: None,
        },
        ("stream", p) | ("dgram", p) => {
            let udp = socktype == "dgram";
            let v6 = match p.strip_prefix(if udp { "udp" } else { "tcp" }) {
                Some("") | Some("46") => None,
                Some("4") => Some(false),
                Some("6") => Some(true),
                _ => {
                    return Err(err(
                        2,
                        format!(
                            "protocol \"{p}\" does not go with socket type {socktype} (use {0}, {0}4, {0}6 or {0}46)",
                            if udp { "udp" } else { "tcp" }
                        ),
                    ))
                }
            };
            Transport {
                udp,
                unix: false,
                seqpacket: false,
                v6,
            }
        }
        ("seqpacket", _) => {
            return Err(unsupported(
                1,
                "seqpacket over IP (SCTP) is not supported; over unix it is",
            ))
        }
        ("raw", _) | ("rdm", _) => {
            return Err(unsupported(
                1,
                &format!("socket type {socktype} is not supported (stream and dgram are)"),
            ))
        }
        (other, _) => {
            return Err(err(
                1,
                format!("unknown socket type \"{other}\"", other = quote(other)),
            ))
        }
    };
    if service.starts_with("tcpmux/") || service == "tcpmux" {
        return Err(unsupported(0, "tcpmux services are not supported yet"));
    }

    // [host:]service, or the path of a UNIX-domain socket.
    let (host, port) = if transport.unix {
        (None, service)
    } else {
        split_host(service, default_host)
    };
    if port.is_empty() {
        return Err(err(
            0,
            format!(
                "\"{service}\": no service name or port",
                service = quote(service)
            ),
        ));
    }
    let proto_word = match (transport.unix, transport.udp) {
        (true, _) => "unix",
        (false, true) => "udp",
        (false, false) => "tcp",
    };
    // FreeBSD: `:user:group:mode:` before the server sets the socket
    // file's owner and mode.
    let mut server = server;
    if transport.unix {
        d.set("listen", Value::strs(vec![service.to_owned()]), &origin);
        d.set("protocol", Value::Str("unix".to_owned()), &at(2));
        let mode = match server
            .strip_prefix(':')
            .map(|r| r.splitn(4, ':').collect::<Vec<_>>())
        {
            Some(parts) if parts.len() == 4 => {
                d.set(
                    "socket_owner",
                    Value::Str(format!("{}:{}", parts[0], parts[1])),
                    &at(5),
                );
                server = parts[3];
                parts[2].to_owned()
            }
            Some(_) => {
                return Err(err(
                    5,
                    format!(
                        "\"{server}\": expected :user:group:mode:server-path",
                        server = quote(server)
                    ),
                ))
            }
            // Only root can connect to the socket as inetd leaves it.
            None => "0200".to_owned(),
        };
        d.set("socket_mode", Value::Str(mode), &at(5));
    } else {
        let listen = listen_entries(host, port, transport.v6).map_err(|m| err(0, m))?;
        d.set("listen", Value::strs(listen), &origin);
    }
    d.set(
        "socket",
        Value::Str(
            match (transport.udp, transport.seqpacket) {
                (true, _) => "dgram",
                (false, true) => "seqpacket",
                (false, false) => "stream",
            }
            .to_owned(),
        ),
        &at(1),
    );

    // wait|nowait[.max] or FreeBSD wait|nowait[/max-child[/per-ip-per-min[/per-ip]]]
    let (mode, limits) = match wait.find(['.', '/']) {
        Some(i) => (&wait[..i], Some(&wait[i..])),
        None => (wait, None),
    };
    let waits = match mode {
        "wait" => true,
        "nowait" => false,
        other => {
            return Err(err(
                3,
                format!("\"{other}\": expected wait or nowait", other = quote(other)),
            ))
        }
    };

    // server: a path or `internal`.
    let internal = server == "internal";
    if internal {
        let by_name = Internal::from_name(port);
        let named = match by_name {
            Some(i) => i,
            None => match args.first().and_then(|a| Internal::from_name(a)) {
                Some(i) => i,
                None => {
                    let names: Vec<&str> = Internal::ALL.iter().map(|i| i.name()).collect();
                    return Err(err(
                        5,
                        format!(
                            "internal: \"{port}\" is not a built-in service, and no argument names one ({})",
                            names.join(", ")
                        ),
                    ));
                }
            },
        };
        d.set(
            "server",
            Value::Str(format!("internal:{}", named.name())),
            &at(5),
        );
        if user != "root" {
            d.note(
                &at(4),
                format!(
                    "user {user}: internal services run inside oxinetd",
                    user = quote(user)
                ),
            );
        }
    } else {
        d.set("wait", Value::Bool(waits), &at(3));
        let (name, group) = split_user(user);
        if name.is_empty() {
            return Err(err(
                4,
                format!("\"{user}\": no user name", user = quote(user)),
            ));
        }
        d.set("user", Value::Str(name.to_owned()), &at(4));
        if let Some(g) = group {
            d.set("group", Value::Str(g.to_owned()), &at(4));
        }
        if let Some((_, class)) = user.split_once('/') {
            d.note(
                &at(4),
                format!(
                    "login class \"{class}\" has no equivalent (ignored)",
                    class = quote(class)
                ),
            );
        }
        d.set("server", Value::Str(server.to_owned()), &at(5));
        match args.split_first() {
            Some((argv0, rest)) => {
                let default0 = Path::new(server).file_name().and_then(|n| n.to_str());
                if default0 != Some(*argv0) {
                    d.set("argv0", Value::Str((*argv0).to_owned()), &at(6));
                }
                if !rest.is_empty() {
                    let rest = rest.iter().map(|s| (*s).to_owned()).collect();
                    d.set("args", Value::strs(rest), &at(7));
                }
            }
            None => d.note(&at(5), "no argv given: argv[0] is the program's file name"),
        }
        d.set("stderr", Value::Str("socket".to_owned()), &at(5));
    }

    if let Some(spec) = limits {
        rate_limits(spec, &mut d, &at(3)).map_err(|m| err(3, m))?;
    }
    // A name that says which line it is: `echo-tcp`, `tftp-udp`.
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
    d.set("name", Value::Str(format!("{base}-{proto_word}")), &origin);
    Ok(d)
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
    let parts: Vec<&str> = spec.trim_start_matches('/').split('/').collect();
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
            d.note(
                at,
                format!("max-conn-per-ip-per-min {n} has no equivalent yet (not enforced)"),
            );
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
        match t.errors.pop().or_else(|| t.unsupported.pop()) {
            Some(e) => Err(e),
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
        assert_eq!(key(&d, "user"), Some(Value::Str("u".into())));
    }

    #[test]
    fn default_host_lines() {
        let mut t = Translation::default();
        translate_text(
            Path::new("inetd.conf"),
            "127.0.0.2:\necho stream tcp nowait root internal\n*:\necho dgram udp wait root internal\n",
            &mut t,
        );
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(
            t.services[0].get("listen"),
            Some(&Value::strs(vec!["127.0.0.2:echo".into()]))
        );
        assert_eq!(
            t.services[1].get("listen"),
            Some(&Value::strs(vec!["*:echo".into()]))
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
