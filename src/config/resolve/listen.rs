//! `socket`, `protocol`, `wait`, `listen`, and for a UNIX-domain socket
//! what may not be asked of it and its file's `socket_mode` and
//! `socket_owner`.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::path::{Path, PathBuf};

use super::field::Field;
use super::{Resolver, Svc};
use crate::config::error::quote;
use crate::config::{
    etc_services, BindAddr, ConfigError, ListenKey, SocketFile, SocketKind, WaitMode,
};

/// The socket a service asks for.
pub struct Transport<'a> {
    pub kind: SocketKind,
    pub wait: WaitMode,
    /// `socket`, as written.
    socket: Option<Field<'a>>,
    /// `protocol` when valid: `None` for `unix`, where the socket type
    /// says stream or datagram.
    proto: Option<(Option<SocketKind>, Field<'a>)>,
}

/// `socket`, `protocol` and `wait`.
pub fn transport<'a>(svc: &Svc<'a>) -> Transport<'a> {
    let socket_field = svc.get("socket");
    let socket = socket_field.and_then(|f| {
        svc.ok(f.choice(&[
            ("stream", SocketKind::Stream),
            ("dgram", SocketKind::Dgram),
            ("seqpacket", SocketKind::Seqpacket),
        ]))
    });
    let proto = svc.get("protocol").and_then(|f| {
        svc.ok(f.choice(&[
            ("tcp", Some(SocketKind::Stream)),
            ("udp", Some(SocketKind::Dgram)),
            ("unix", None),
        ]))
        .map(|p| (p, f))
    });
    let kind = match (socket, proto) {
        (Some(s), Some((Some(p), f))) if s.is_connected() != p.is_connected() => {
            svc.report(f.err(format!(
                "protocol {} does not go with socket = \"{}\"",
                p.ip_protocol(),
                s.name()
            )));
            if s == SocketKind::Seqpacket {
                s
            } else {
                SocketKind::Stream
            }
        }
        (Some(s), _) => s,
        (None, Some((Some(p), _))) => p,
        (None, _) => SocketKind::Stream,
    };
    let wait = match svc.get("wait").map(|f| svc.ok(f.bool())) {
        Some(Some(true)) => WaitMode::Wait,
        _ => WaitMode::Nowait,
    };
    Transport {
        kind,
        wait,
        socket: socket_field,
        proto,
    }
}

impl Resolver<'_> {
    /// `listen`: IP addresses (ports by number or name), or UNIX-domain
    /// paths.
    pub(super) fn listen(&self, svc: &Svc<'_>, t: &Transport<'_>) -> Vec<ListenKey> {
        let Some(f) = svc.get("listen") else {
            svc.report_here(format!("service{} has no listen address", svc.label()));
            return Vec::new();
        };
        let items = match svc.ok(f.strings()) {
            None => return Vec::new(),
            Some(items) if items.is_empty() => {
                svc.report(f.err("listen: the list is empty"));
                return Vec::new();
            }
            Some(items) => items,
        };
        let paths = items.iter().filter(|(s, _)| s.starts_with('/')).count();
        if paths > 0 && paths < items.len() {
            svc.report(f.err(
                "listen: a service listens on UNIX-domain paths or on IP addresses, not both",
            ));
        }
        if let Some((Some(p), pf)) = t.proto.filter(|_| paths > 0) {
            svc.report(pf.err(format!(
                "protocol {}: a listen path is a UNIX-domain socket; \
                 write protocol = \"unix\" (socket = \"stream\" or \"dgram\")",
                p.ip_protocol()
            )));
        }
        let unix_asked = matches!(t.proto, Some((None, _)));
        items
            .into_iter()
            .filter_map(|(s, at)| {
                let addr = if unix_asked || s.starts_with('/') {
                    parse_unix_path(s).inspect(|a| {
                        if let Err(m) = self.unix_dirs(a) {
                            svc.report(ConfigError::new(at.clone(), m));
                        }
                    })
                } else {
                    parse_listen(s, t.kind, &self.ctx.etc_services)
                };
                svc.ok(addr
                    .map(|addr| ListenKey {
                        addr,
                        kind: t.kind,
                        opts: Default::default(),
                    })
                    .map_err(|m| ConfigError::new(at, m)))
            })
            .collect()
    }

    /// A UNIX-domain path whose directories only root can change
    /// (`sockdir`: oxinetd chowns and chmods the file it binds there).
    fn unix_dirs(&self, addr: &BindAddr) -> Result<(), String> {
        match addr {
            BindAddr::Unix(p) => crate::sockdir::check(p, self.ctx.euid)
                .map_err(|m| format!("listen \"{}\": {m}", p.display())),
            _ => Ok(()),
        }
    }

    /// `socket_mode` and `socket_owner` of a UNIX-domain service.
    pub(super) fn socket_file(&self, svc: &Svc<'_>) -> SocketFile {
        let mut file = SocketFile::default();
        if let Some(f) = svc.get("socket_mode") {
            let mode = match f.value {
                crate::config::raw::Value::Int(_) => f.int(0, 0o777).ok().map(|m| m as u32),
                crate::config::raw::Value::Str(s) => {
                    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777)
                }
                _ => None,
            };
            match mode {
                Some(m) => file.mode = m,
                None => svc
                    .report(f.err("socket_mode: expected an octal mode such as \"0660\" or 0o660")),
            }
        }
        if let Some(f) = svc.get("socket_owner") {
            if let Some(spec) = svc.ok(f.str()) {
                let euid = self.ctx.euid;
                file.owner = svc.ok(crate::privilege::lookup_owner(spec)
                    .and_then(|(uid, gid)| {
                        if euid == 0 || uid == euid {
                            Ok((uid, gid))
                        } else {
                            Err(format!(
                                "\"{spec}\": oxinetd is not running as root, so the \
                                 socket can only be its own user's"
                            ))
                        }
                    })
                    .map_err(|m| f.err(format!("socket_owner: {m}"))));
            }
        }
        file
    }
}

/// What the kind of socket rules out: for a UNIX-domain socket, rules about
/// IP addresses (a local peer has none), internal services and a nowait
/// datagram service; over IP, seqpacket and the socket file's keys.
pub fn socket_rules(svc: &Svc<'_>, t: &Transport<'_>, listens: bool, unix: bool) {
    if unix {
        unix_rules(svc, t);
    } else if let Some(f) = t
        .socket
        .filter(|_| t.kind == SocketKind::Seqpacket && listens)
    {
        svc.report(f.err(
            "socket: seqpacket is for UNIX-domain sockets only (over IP it needs SCTP, \
             which oxinetd does not support)",
        ));
    } else if let Some(f) = svc.get("socket_mode").or_else(|| svc.get("socket_owner")) {
        if svc.own(f.name).is_some() {
            svc.report(f.err(format!(
                "{}: only for UNIX-domain sockets (listen = [\"/path\"])",
                f.name
            )));
        }
    }
}

fn unix_rules(svc: &Svc<'_>, t: &Transport<'_>) {
    for key in [
        "only_from",
        "no_access",
        "access_times",
        "per_source",
        "per_source_rate",
    ] {
        if let Some(f) = svc.get(key) {
            svc.report(f.err(format!(
                "{key}: not for a UNIX-domain socket (a local peer has no address; \
                 the socket file's owner and socket_mode decide who may connect)"
            )));
        }
    }
    if let Some(f) = svc.get("server") {
        if f.str().is_ok_and(|s| s.starts_with("internal:")) {
            svc.report(f.err("server: internal services listen on IP addresses only"));
        }
    }
    if t.kind == SocketKind::Dgram && t.wait == WaitMode::Nowait {
        svc.report_here(format!(
            "service{}: a UNIX-domain datagram service must be wait = true \
             (its handler reads the socket itself)",
            svc.label()
        ));
    }
}

/// Parse one `listen` entry: `ADDR:PORT`, `[V6]:PORT`, `*:PORT`, where PORT
/// may be a name from the services database.
fn parse_listen(text: &str, kind: SocketKind, etc_services: &Path) -> Result<BindAddr, String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "listen \"{text}\": expected ADDR:PORT, [V6ADDR]:PORT or *:PORT"
        ));
    };
    let port: u16 = match port.parse() {
        Ok(p) => p,
        Err(_) if !port.is_empty() && !port.bytes().all(|b| b.is_ascii_digit()) => {
            let protocol = kind.ip_protocol();
            etc_services::lookup(etc_services, port, protocol).ok_or_else(|| {
                format!(
                    "listen \"{text}\": unknown service name \"{port}\" for {protocol} in {}",
                    etc_services.display()
                )
            })?
        }
        Err(_) => {
            return Err(format!(
                "listen \"{text}\": invalid port \"{port}\"",
                text = quote(text),
                port = quote(port)
            ))
        }
    };
    if host == "*" {
        return Ok(BindAddr::Any(port));
    }
    let ip_text = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    // `[fe80::1%eth0]`: a link-local address names its interface.
    let (ip_text, scope) = match ip_text.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (ip_text, None),
    };
    let ip: IpAddr = ip_text.parse().map_err(|_| {
        format!(
            "listen \"{text}\": \"{host}\" is not an IP address (use *:{port} for all addresses)"
        )
    })?;
    if ip.is_ipv6() && !host.starts_with('[') {
        return Err(format!(
            "listen \"{text}\": write IPv6 addresses in brackets, [{ip}]:{port}"
        ));
    }
    match (ip, scope) {
        (_, None) => Ok(BindAddr::Ip(SocketAddr::new(ip, port))),
        (IpAddr::V6(v6), Some(zone)) => {
            let index = scope_index(zone).ok_or_else(|| {
                format!(
                    "listen \"{text}\": no network interface \"{zone}\"",
                    text = quote(text),
                    zone = quote(zone)
                )
            })?;
            Ok(BindAddr::Ip(SocketAddr::V6(SocketAddrV6::new(
                v6, port, 0, index,
            ))))
        }
        (IpAddr::V4(_), Some(_)) => Err(format!(
            "listen \"{text}\": only IPv6 addresses have a scope (%INTERFACE)",
            text = quote(text)
        )),
    }
}

/// The index of the interface a scope names, by name or number, resolved
/// once at load (as `getaddrinfo` does): renaming the interface later does
/// not move the listener.
fn scope_index(zone: &str) -> Option<u32> {
    if !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) {
        return zone.parse().ok().filter(|&n| n != 0);
    }
    if zone.is_empty() || zone.len() > 15 || zone.contains('\0') {
        return None;
    }
    nix::net::if_::if_nametoindex(zone).ok()
}

/// A `listen` path of a UNIX-domain service.
fn parse_unix_path(text: &str) -> Result<BindAddr, String> {
    // sun_path holds 108 bytes, the terminating NUL included.
    const MAX: usize = 107;
    if !text.starts_with('/') {
        return Err(format!(
            "listen \"{text}\": a UNIX-domain socket needs an absolute path"
        ));
    }
    if text.contains('\0') {
        return Err(format!(
            "listen \"{text}\": the path contains a NUL byte",
            text = quote(text)
        ));
    }
    if text.len() > MAX {
        return Err(format!(
            "listen \"{text}\": the path is {} bytes; a UNIX-domain socket path is at most {MAX}",
            text.len()
        ));
    }
    if text.ends_with('/') {
        return Err(format!(
            "listen \"{text}\": the path names a directory",
            text = quote(text)
        ));
    }
    Ok(BindAddr::Unix(PathBuf::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let db = Path::new("/nonexistent");
        assert_eq!(
            parse_listen("127.0.0.1:2001", SocketKind::Stream, db),
            Ok(BindAddr::Ip("127.0.0.1:2001".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("[::1]:7", SocketKind::Stream, db),
            Ok(BindAddr::Ip("[::1]:7".parse().unwrap()))
        );
        assert_eq!(
            parse_listen("*:99", SocketKind::Dgram, db),
            Ok(BindAddr::Any(99))
        );
        assert!(parse_listen("::1:7", SocketKind::Stream, db).is_err());
        assert!(parse_listen("localhost:7", SocketKind::Stream, db).is_err());
        assert!(parse_listen("127.0.0.1:99999", SocketKind::Stream, db).is_err());
        assert!(parse_listen("2001", SocketKind::Stream, db).is_err());
        let scoped = parse_listen("[fe80::1%lo]:22", SocketKind::Stream, db);
        let lo = nix::net::if_::if_nametoindex("lo").unwrap();
        match scoped {
            Ok(BindAddr::Ip(SocketAddr::V6(a))) => assert_eq!(a.scope_id(), lo),
            other => panic!("{other:?}"),
        }
        let e = parse_listen("[fe80::1%nosuchif0]:22", SocketKind::Stream, db).unwrap_err();
        assert!(e.contains("no network interface \"nosuchif0\""), "{e}");
        assert!(parse_listen("127.0.0.1%lo:22", SocketKind::Stream, db).is_err());
    }

    #[test]
    fn unix_paths_overlap_only_themselves() {
        let x = parse_unix_path("/run/x.sock").unwrap();
        let y = parse_unix_path("/run/y.sock").unwrap();
        assert!(x.overlaps(&x.clone()) && !x.overlaps(&y));
        assert!(!x.overlaps(&BindAddr::Any(0)) && !BindAddr::Any(0).overlaps(&x));
        assert!(!x.is_ephemeral());
        assert!(parse_unix_path("run/x.sock").is_err());
        assert!(parse_unix_path("/run/").is_err());
        assert!(parse_unix_path(&format!("/{}", "a".repeat(107))).is_err());
        assert!(parse_unix_path(&format!("/{}", "a".repeat(106))).is_ok());
    }
}
