//! `forward`, `forward_proxy_protocol` and `forward_timeout`: a service
//! whose connections oxinetd relays to another address itself, instead of
//! running a `server` for each (`crate::forward`).
//!
//! A host name in `forward` is resolved here, once per load (a reload
//! resolves it again): the supervisor never waits on DNS per connection.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use super::field::Field;
use super::listen::Transport;
use super::Svc;
use crate::config::error::quote;
use crate::config::keys::{self, FORWARD_KEYS};
use crate::config::{SocketKind, WaitMode};
use crate::forward::{Forward, ProxyVersion, DEFAULT_CONNECT_TIMEOUT};

/// Whether the service forwards (read before the rest: it has no server).
pub fn names_forward(svc: &Svc<'_>) -> bool {
    svc.own("forward").is_some()
}

/// The forward of a service that sets `forward`, with every check of the
/// keys that go with it.
pub fn resolve(svc: &Svc<'_>, t: &Transport<'_>) -> Option<Forward> {
    let f = svc.own("forward")?;
    if let Some(server) = svc.own("server") {
        svc.report(f.err(format!(
            "forward: server is set too (at {}); a service either runs a server or forwards",
            server.at
        )));
    }
    if t.kind != SocketKind::Stream {
        svc.report(f.err(format!(
            "forward: relays stream connections only (this service is socket = \"{}\")",
            t.kind.name()
        )));
    }
    if t.wait == WaitMode::Wait {
        let at = svc.get("wait").unwrap_or(f);
        svc.report(at.err(
            "wait: a forward relays each connection itself (wait = false); \
             wait = true hands the socket to a server",
        ));
    }
    for key in keys::program_only().filter(|k| !FORWARD_KEYS.contains(k)) {
        if let Some(k) = svc.own(key) {
            svc.report(k.err(format!(
                "{key}: has no meaning for a forward (oxinetd relays the connection itself)"
            )));
        }
    }
    let target = svc.ok(f.str().and_then(|s| target(f, s)));
    let proxy = svc
        .get("forward_proxy_protocol")
        .and_then(|p| svc.ok(p.choice(&[("v1", ProxyVersion::V1), ("v2", ProxyVersion::V2)])));
    let connect_timeout = match svc.get("forward_timeout") {
        Some(t) => svc.ok(t.seconds().and_then(|d| {
            if d.is_zero() {
                Err(t.err("forward_timeout: expected more than 0 seconds"))
            } else {
                Ok(d)
            }
        }))?,
        None => DEFAULT_CONNECT_TIMEOUT,
    };
    let (target, written) = target?;
    Some(Forward {
        target,
        written,
        proxy,
        connect_timeout,
    })
}

/// `forward_proxy_protocol` or `forward_timeout` set on a service that
/// runs a program: they would do nothing there.
pub fn refuse_keys(svc: &Svc<'_>) {
    for key in &FORWARD_KEYS[1..] {
        if let Some(f) = svc.own(key) {
            svc.report(f.err(format!(
                "{key}: only for a service that forwards (forward = \"HOST:PORT\")"
            )));
        }
    }
}

/// `HOST:PORT` or `[V6]:PORT`; a host name is resolved now, its first
/// address taken.
fn target(f: Field<'_>, s: &str) -> Result<(SocketAddr, String), crate::config::ConfigError> {
    let bad = |why: String| f.err(format!("forward \"{}\": {why}", quote(s)));
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("expected HOST:PORT or [V6ADDR]:PORT".to_owned()));
    };
    let port: u16 = match port.parse() {
        Ok(p) if p != 0 => p,
        _ => return Err(bad(format!("invalid port \"{}\"", quote(port)))),
    };
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    if let Some(ip) = bracketed {
        return match ip.parse::<std::net::Ipv6Addr>() {
            Ok(ip) => Ok((SocketAddr::new(IpAddr::V6(ip), port), s.to_owned())),
            Err(_) => Err(bad(format!("\"{}\" is not an IPv6 address", quote(ip)))),
        };
    }
    if host.is_empty() || host.contains(':') {
        return Err(bad(
            "expected HOST:PORT (an IPv6 address goes in brackets: [::1]:PORT)".to_owned(),
        ));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((SocketAddr::new(ip, port), s.to_owned()));
    }
    match (host, port).to_socket_addrs() {
        Ok(mut addrs) => match addrs.next() {
            Some(a) => Ok((a, s.to_owned())),
            None => Err(bad(format!("host \"{}\" has no address", quote(host)))),
        },
        Err(e) => Err(bad(format!("unable to resolve \"{}\": {e}", quote(host)))),
    }
}
