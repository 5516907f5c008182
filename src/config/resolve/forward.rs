//! `forward`, `forward_proxy_protocol` and `forward_timeout`: a service
//! whose connections oxinetd relays to another address itself, instead of
//! running a `server` for each (`crate::forward`).
//!
//! A host name in `forward` is resolved here, once per load (a reload
//! resolves it again): the supervisor never waits on DNS per connection.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use std::path::PathBuf;

use super::field::Field;
use super::listen::Transport;
use super::{tls, Svc};
use crate::config::error::{did_you_mean, quote};
use crate::config::keys::{self, FORWARD_KEYS};
use crate::config::raw::Value;
use crate::config::ConfigError;
use crate::config::{SocketKind, WaitMode};
use crate::forward::{Forward, ProxyVersion, DEFAULT_CONNECT_TIMEOUT};
use crate::tls::pipe::{OutProblem, Outbound, SYSTEM_CA};

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
    for key in keys::program_only()
        .filter(|k| !FORWARD_KEYS.contains(k))
        .filter(|k| !(super::relayed(svc, t) && keys::RELAY_KEYS.contains(k)))
    {
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
    let tls = match svc.get("forward_tls") {
        None => None,
        Some(t) if matches!(t.value, Value::Bool(false)) => None,
        Some(t) => Some(Box::new(outbound(svc, &t, &written)?)),
    };
    Some(Forward {
        target,
        written,
        proxy,
        connect_timeout,
        tls,
    })
}

/// The keys of the `forward_tls` table.
const TLS_KEYS: &[&str] = &["ca", "server_name", "cert", "key"];

/// `forward_tls = true` or `{ ca, server_name, cert, key }`: TLS to the
/// upstream, its certificate verified against `ca` (the system bundle by
/// default) for `server_name` (the forward's host by default). The files
/// are read now, as root, like `tls`'s.
fn outbound(svc: &Svc<'_>, f: &Field<'_>, written: &str) -> Option<Outbound> {
    let host = written
        .rsplit_once(':')
        .map_or(written, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let fields = OutFields::new(svc, f)?;
    let (ca_path, ca) = match fields.get("ca") {
        Some(ca) => read_pem(svc, ca)?,
        None => match tls::read_bounded(std::path::Path::new(SYSTEM_CA)) {
            Ok(pem) => (PathBuf::from(SYSTEM_CA), pem),
            Err(m) => {
                svc.report(f.err(format!(
                    "forward_tls: the system CA bundle \"{SYSTEM_CA}\": {m} \
                     (install ca-certificates, or set ca)"
                )));
                return None;
            }
        },
    };
    let server_name = match fields.get("server_name") {
        Some(n) => svc.ok(n.str())?.to_owned(),
        None => host.to_owned(),
    };
    let mut out = Outbound {
        ca_path,
        ca,
        server_name,
        cert_path: None,
        key_path: None,
        cert: Vec::new(),
        key: Vec::new(),
    };
    match (fields.get("cert"), fields.get("key")) {
        (None, None) => {}
        (Some(c), Some(k)) => {
            let (cp, cert) = read_pem(svc, c)?;
            let (kp, key) = read_pem(svc, k)?;
            (out.cert_path, out.cert, out.key_path, out.key) = (Some(cp), cert, Some(kp), key);
        }
        _ => {
            svc.report(f.err("forward_tls: cert and key go together (a client certificate)"));
            return None;
        }
    }
    // Checked by `oxinetd-tls check`, as the relay will build it.
    if let Err(p) = crate::tls::check::validate_out(&out) {
        svc.report(fields.problem(f, p));
        return None;
    }
    Some(out)
}

/// The entries of a `forward_tls` table, each a field named
/// `forward_tls.KEY` in its messages (none for `forward_tls = true`).
struct OutFields<'a>(Vec<(&'static str, Field<'a>)>);

impl<'a> OutFields<'a> {
    /// The entries; an unknown key is an error at its line.
    fn new(svc: &Svc<'_>, f: &Field<'a>) -> Option<OutFields<'a>> {
        let entries = match f.value {
            Value::Bool(_) => Vec::new(),
            _ => svc.ok(f.entries())?,
        };
        let mut fields = Vec::with_capacity(entries.len());
        for (k, v, at) in entries {
            let label = match k {
                "ca" => "forward_tls.ca",
                "server_name" => "forward_tls.server_name",
                "cert" => "forward_tls.cert",
                "key" => "forward_tls.key",
                _ => {
                    let hint = did_you_mean(k, TLS_KEYS)
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default();
                    svc.report(ConfigError::new(
                        at.clone(),
                        format!("forward_tls: unknown key \"{}\"{hint}", quote(k)),
                    ));
                    return None;
                }
            };
            fields.push((label, f.entry(label, v, at)));
        }
        Some(OutFields(fields))
    }

    /// Key `name` (`ca`, `server_name`, `cert`, `key`), if given.
    fn get(&self, name: &str) -> Option<&Field<'a>> {
        self.0
            .iter()
            .find(|(label, _)| label.strip_prefix("forward_tls.") == Some(name))
            .map(|(_, f)| f)
    }

    /// What `oxinetd-tls check` found, at the line of the key it is about.
    fn problem(&self, f: &Field<'_>, p: OutProblem) -> ConfigError {
        let (field, m) = match p {
            OutProblem::Program(m) => (None, m),
            OutProblem::Ca(m) => (self.get("ca"), m),
            OutProblem::ServerName(m) => (self.get("server_name"), m),
            OutProblem::Cert(m) => (self.get("cert"), m),
            OutProblem::Key(m) => (self.get("key"), m),
        };
        match field {
            Some(fl) => {
                let v = fl.str().unwrap_or_default();
                fl.err(format!("{} \"{}\": {m}", fl.name, quote(v)))
            }
            None => f.err(format!("forward_tls: {m}")),
        }
    }
}

/// A PEM file named by `f` (relative to its config file's directory),
/// read now, as root; an error at `f` if it cannot be.
fn read_pem(svc: &Svc<'_>, f: &Field<'_>) -> Option<(PathBuf, Vec<u8>)> {
    let s = svc.ok(f.str())?;
    let path = f.dir().join(s);
    match tls::read_bounded(&path) {
        Ok(pem) => Some((path, pem)),
        Err(m) => {
            svc.report(f.err(format!("{} \"{}\": {m}", f.name, quote(s))));
            None
        }
    }
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
