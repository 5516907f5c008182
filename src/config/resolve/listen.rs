//! `socket`, `protocol`, `wait`, `listen`, and for a UNIX-domain socket
//! what may not be asked of it and its file's `socket_mode` and
//! `socket_owner`.

use super::field::Field;
use super::{Resolver, Svc};
use crate::config::{
    parse_listen, parse_unix_path, BindAddr, ConfigError, ListenKey, Protocol, SocketFile, WaitMode,
};

/// The socket a service asks for.
pub struct Transport<'a> {
    pub protocol: Protocol,
    pub seqpacket: bool,
    pub wait: WaitMode,
    /// `socket`, as written.
    socket: Option<Field<'a>>,
    /// `protocol` when valid: `None` for `unix`, where the socket type
    /// says stream or datagram.
    proto: Option<(Option<Protocol>, Field<'a>)>,
}

/// `socket`, `protocol` and `wait`.
pub fn transport<'a>(svc: &Svc<'a>) -> Transport<'a> {
    let socket_field = svc.get("socket");
    let seqpacket = socket_field.is_some_and(|f| f.str().is_ok_and(|s| s == "seqpacket"));
    let socket = socket_field.and_then(|f| {
        svc.ok(f.choice(&[
            ("stream", Protocol::Tcp),
            ("dgram", Protocol::Udp),
            ("seqpacket", Protocol::Tcp),
        ]))
    });
    let proto = svc.get("protocol").and_then(|f| {
        svc.ok(f.choice(&[
            ("tcp", Some(Protocol::Tcp)),
            ("udp", Some(Protocol::Udp)),
            ("unix", None),
        ]))
        .map(|p| (p, f))
    });
    let protocol = match (socket, proto) {
        (Some(s), Some((Some(p), f))) if s != p => {
            svc.report(f.err(format!(
                "protocol {p} does not go with socket = \"{}\"",
                match s {
                    _ if seqpacket => "seqpacket",
                    Protocol::Tcp => "stream",
                    Protocol::Udp => "dgram",
                }
            )));
            Protocol::Tcp
        }
        (_, Some((Some(p), _))) => p,
        (Some(s), _) => s,
        (None, _) => Protocol::Tcp,
    };
    let wait = match svc.get("wait").map(|f| svc.ok(f.bool())) {
        Some(Some(true)) => WaitMode::Wait,
        _ => WaitMode::Nowait,
    };
    Transport {
        protocol,
        seqpacket,
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
                "protocol {p}: a listen path is a UNIX-domain socket; \
                 write protocol = \"unix\" (socket = \"stream\" or \"dgram\")"
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
                    parse_listen(s, t.protocol, &self.ctx.etc_services)
                };
                svc.ok(addr
                    .map(|addr| ListenKey {
                        addr,
                        protocol: t.protocol,
                        seqpacket: t.seqpacket,
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
    } else if let Some(f) = t.socket.filter(|_| t.seqpacket && listens) {
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
    for key in ["only_from", "no_access", "access_times", "per_source"] {
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
    if t.protocol == Protocol::Udp && t.wait == WaitMode::Nowait {
        svc.report_here(format!(
            "service{}: a UNIX-domain datagram service must be wait = true \
             (its handler reads the socket itself)",
            svc.label()
        ));
    }
}
