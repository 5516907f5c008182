//! `tls = { cert, key, client_ca, client_auth, alpn, min_version,
//! handshake_timeout, sni }`: TLS in front of an exec'd stream `nowait`
//! handler (`crate::tls`).
//!
//! The files are read here, at load, as oxinetd (root), so a key only
//! root can read works: the relay gets their contents through a memfd,
//! never the paths. Everything rustls would refuse later is refused now,
//! at the key's line: a chain or key that does not parse, a key that is
//! not the certificate's, unusable client CAs. A leaf certificate that
//! expires within 14 days is a warning.
//!
//! For an internal service or a forward too: their relay
//! (`oxinetd-tls relay --pipe`, `tls::pipe`) runs as the service's `user`
//! like a handler's, never in the root supervisor.
//!
//! Not (yet) for: datagram services (DTLS is another protocol), `wait`
//! services (the handler accepts the connections itself), `chroot` (the
//! relay is `oxinetd-tls`, exec'd before the handler: inside the root it
//! and its libraries would have to exist),
//! and `stderr = "socket"` (the handler's stderr would be plaintext in
//! the TLS stream).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::field::Field;
use super::listen::Transport;
use super::{io_problem, reach, Svc};
use crate::config::error::{did_you_mean, quote};
use crate::config::raw::Value;
use crate::config::{ConfigError, Location, SocketKind, StderrMode, WaitMode};
use crate::privilege::Identity;
use crate::tls::{ClientAuth, MinVersion, Problem, Settings, SniCert};

/// The keys of the `tls` table.
const KEYS: &[&str] = &[
    "cert",
    "key",
    "client_ca",
    "client_auth",
    "alpn",
    "min_version",
    "handshake_timeout",
    "sni",
];

/// A certificate that expires sooner than this is warned about.
const EXPIRY_WARNING: i64 = 14 * 86400;

/// The largest PEM file read.
const MAX_FILE: u64 = 1 << 20;

/// What else of the service `tls` depends on.
pub struct Context<'a> {
    pub chroot: bool,
    pub stderr: StderrMode,
    /// Who the relay and the handler run as.
    pub identity: Option<&'a Identity>,
}

/// The service's `tls`, if it has one.
pub fn resolve(svc: &Svc<'_>, t: &Transport<'_>, cx: &Context<'_>) -> Option<Settings> {
    let f = svc.get("tls")?;
    if let Some(why) = why_not(t, cx) {
        // Inherited from [defaults]: it applies to the services that can
        // have it.
        if svc.own("tls").is_some() {
            svc.report(f.err(format!("tls: {why}")));
        }
        return None;
    }
    if !relay_executable(svc, &f, cx.identity) {
        return None;
    }
    let table = Table::new(svc, &f)?;
    let (Some(cert), Some(key)) = (table.sub("cert"), table.sub("key")) else {
        svc.report(f.err("tls: needs cert and key (PEM files)"));
        return None;
    };
    let (cert_path, chain) = read(svc, &cert)?;
    let (key_path, key_pem) = read(svc, &key)?;
    let client_ca = table.sub("client_ca");
    let (client_ca_path, client_ca_pem) = match &client_ca {
        Some(ca) => {
            let (p, pem) = read(svc, ca)?;
            (Some(p), pem)
        }
        None => (None, Vec::new()),
    };
    let settings = Settings {
        cert_path,
        key_path,
        client_ca_path,
        chain,
        key: key_pem,
        client_ca: client_ca_pem,
        client_auth: client_auth(svc, &table, client_ca.is_some())?,
        alpn: alpn(svc, &table)?,
        min_version: match table.sub("min_version") {
            None => MinVersion::Tls12,
            Some(m) => {
                svc.ok(m.choice(&[("1.2", MinVersion::Tls12), ("1.3", MinVersion::Tls13)]))?
            }
        },
        handshake_timeout: handshake_timeout(svc, &table)?,
        sni: match table.sub("sni") {
            None => Vec::new(),
            Some(s) => sni(svc, &s)?,
        },
    };
    let left = match crate::tls::validate(&settings) {
        Ok(left) => left,
        Err(p) => {
            let files = Files {
                cert: &cert,
                key: &key,
                client_ca: client_ca.as_ref(),
                sni_at: table.sub("sni").map_or(f.at, |s| s.at),
            };
            svc.report(files.problem(&f, &settings, p));
            return None;
        }
    };
    if let Some(left) = left {
        warn_expiry(svc, &cert, left);
    }
    Some(settings)
}

/// Why a service cannot have `tls`, if it cannot.
fn why_not(t: &Transport<'_>, cx: &Context<'_>) -> Option<&'static str> {
    if t.kind != SocketKind::Stream {
        Some("only for stream services (DTLS is not supported)")
    } else if t.wait == WaitMode::Wait {
        Some("not for a wait service (its handler accepts the connections itself)")
    } else if cx.chroot {
        Some("not yet with chroot (the relay is oxinetd-tls, exec'd inside the root, where neither it nor its libraries are)")
    } else if cx.stderr == StderrMode::Socket {
        Some("not with stderr = \"socket\" (the handler's stderr would be plaintext in the TLS stream)")
    } else {
        None
    }
}

/// The entries of the `tls` table; an unknown one is an error at its
/// line.
struct Table<'f, 'a> {
    f: &'f Field<'a>,
    entries: Vec<(&'a str, &'a Value, &'a Location)>,
}

impl<'f, 'a> Table<'f, 'a> {
    fn new(svc: &Svc<'_>, f: &'f Field<'a>) -> Option<Table<'f, 'a>> {
        let entries = svc.ok(f.entries())?;
        for (k, _, at) in &entries {
            if !KEYS.contains(k) {
                let hint = did_you_mean(k, KEYS)
                    .map(|s| format!(" (did you mean \"{s}\"?)"))
                    .unwrap_or_default();
                svc.report(ConfigError::new(
                    (*at).clone(),
                    format!("tls: unknown key \"{}\"{hint}", quote(k)),
                ));
            }
        }
        Some(Table { f, entries })
    }

    /// Key `name` of the table as a field of its own, named `tls.NAME`
    /// in its messages.
    fn sub(&self, name: &str) -> Option<Field<'a>> {
        let &(_, value, at) = self.entries.iter().find(|(k, _, _)| *k == name)?;
        let full = match name {
            "cert" => "tls.cert",
            "key" => "tls.key",
            "client_ca" => "tls.client_ca",
            "client_auth" => "tls.client_auth",
            "alpn" => "tls.alpn",
            "min_version" => "tls.min_version",
            "handshake_timeout" => "tls.handshake_timeout",
            _ => "tls.sni",
        };
        Some(self.f.entry(full, value, at))
    }
}

/// `client_auth`: required when `client_ca` is given, unless it says
/// `optional`; without `client_ca`, an error.
fn client_auth(svc: &Svc<'_>, table: &Table<'_, '_>, has_ca: bool) -> Option<ClientAuth> {
    let Some(a) = table.sub("client_auth") else {
        return Some(if has_ca {
            ClientAuth::Required
        } else {
            ClientAuth::None
        });
    };
    let auth = svc.ok(a.choice(&[
        ("required", ClientAuth::Required),
        ("optional", ClientAuth::Optional),
    ]))?;
    if !has_ca {
        svc.report(a.err("tls.client_auth: only with client_ca"));
        return None;
    }
    Some(auth)
}

/// `alpn`: protocol names of 1 to 255 bytes.
fn alpn(svc: &Svc<'_>, table: &Table<'_, '_>) -> Option<Vec<Vec<u8>>> {
    let Some(a) = table.sub("alpn") else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for (p, at) in svc.ok(a.list())? {
        if p.is_empty() || p.len() > 255 {
            svc.report(ConfigError::new(
                at,
                "tls.alpn: each protocol name is 1 to 255 bytes",
            ));
            return None;
        }
        out.push(p.as_bytes().to_vec());
    }
    Some(out)
}

/// `handshake_timeout`: more than 0 seconds.
fn handshake_timeout(svc: &Svc<'_>, table: &Table<'_, '_>) -> Option<Duration> {
    let Some(h) = table.sub("handshake_timeout") else {
        return Some(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT);
    };
    let d = svc.ok(h.seconds())?;
    if d < Duration::from_millis(1) {
        svc.report(h.err("tls.handshake_timeout: expected more than 0 seconds"));
        return None;
    }
    Some(d)
}

/// Where each file of the table was written, to place what
/// `oxinetd-tls check` found wrong with it.
struct Files<'f, 'a> {
    cert: &'f Field<'a>,
    key: &'f Field<'a>,
    client_ca: Option<&'f Field<'a>>,
    sni_at: &'a Location,
}

impl Files<'_, '_> {
    /// The error of `p`, at the line of the file it is about.
    fn problem(&self, f: &Field<'_>, settings: &Settings, p: Problem) -> ConfigError {
        let is_key = matches!(p, Problem::SniKey(..));
        let (field, m) = match p {
            Problem::Cert(m) => (self.cert, m),
            Problem::Key(m) => (self.key, m),
            Problem::ClientCa(m) => (self.client_ca.unwrap_or(self.cert), m),
            Problem::Program(m) => return f.err(format!("tls: {m}")),
            Problem::SniCert(i, m) | Problem::SniKey(i, m) => {
                let Some(e) = settings.sni.get(i) else {
                    return ConfigError::new(self.sni_at.clone(), format!("tls.sni: {m}"));
                };
                let file = if is_key { &e.key_path } else { &e.cert_path };
                return ConfigError::new(
                    self.sni_at.clone(),
                    format!(
                        "tls.sni \"{}\": \"{}\": {m}",
                        quote(&e.name),
                        file.display()
                    ),
                );
            }
        };
        let path = field.str().unwrap_or_default();
        field.err(format!("{} \"{}\": {m}", field.name, quote(path)))
    }
}

/// A warning when the certificate has expired or expires within
/// [`EXPIRY_WARNING`]; `left`: seconds until it does.
fn warn_expiry(svc: &Svc<'_>, cert: &Field<'_>, left: i64) {
    let path = cert.str().unwrap_or_default();
    if left < 0 {
        svc.warn(cert.err(format!("tls.cert \"{}\": has expired", quote(path))));
    } else if left < EXPIRY_WARNING {
        svc.warn(cert.err(format!(
            "tls.cert \"{}\": expires in {} days {} hours",
            quote(path),
            left / 86400,
            left % 86400 / 3600
        )));
    }
}

/// Whether the relay program is there and `identity` may execute it
/// (`oxinetd-tls`, which every connection of a service with `tls` or
/// `forward_tls` execs as the service's user); if not, an error at `f`.
pub(super) fn relay_executable(svc: &Svc<'_>, f: &Field<'_>, identity: Option<&Identity>) -> bool {
    let relay = match crate::tls::program() {
        Ok(p) => p,
        Err(m) => {
            svc.report(f.err(format!("{}: {m}", f.name)));
            return false;
        }
    };
    if let Some(Identity::Switch {
        user,
        uid,
        gid,
        groups,
    }) = identity
    {
        let who = reach::Who {
            user,
            uid: *uid,
            gid: *gid,
            groups,
        };
        if let Some(why) = reach::blocker(Path::new("/"), &relay, &who) {
            svc.report(f.err(format!(
                "{}: {why}; each connection's TLS relay is {} run as {user}",
                f.name,
                relay.display()
            )));
            return false;
        }
    }
    true
}

/// `sni = { "NAME" = { cert = "...", key = "..." }, ... }`: each file
/// read (errors at the `sni` entry, where its table was written).
fn sni(svc: &Svc<'_>, f: &Field<'_>) -> Option<Vec<SniCert>> {
    let entries = svc.ok(f.entries())?;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value, _) in entries {
        let lower = name.to_ascii_lowercase();
        let label = |m: String| f.err(format!("tls.sni \"{}\": {m}", quote(name)));
        let host = lower.strip_prefix("*.").unwrap_or(&lower);
        let valid = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            svc.report(label(
                "expected a DNS name such as \"a.example\" or \"*.example\"".into(),
            ));
            return None;
        }
        let Value::Table(t) = value else {
            svc.report(label(
                "expected a table { cert = \"...\", key = \"...\" }".into(),
            ));
            return None;
        };
        let file = |key: &str| -> Option<(PathBuf, Vec<u8>)> {
            let Some((_, Value::Str(p))) = t.iter().find(|(k, _)| k == key) else {
                svc.report(label(format!("needs {key} (a PEM file)")));
                return None;
            };
            if let Some((k, _)) = t.iter().find(|(k, _)| k != "cert" && k != "key") {
                svc.report(label(format!(
                    "unknown key \"{}\" (cert and key only)",
                    quote(k)
                )));
                return None;
            }
            let path = f.dir().join(p);
            match read_bounded(&path) {
                Ok(pem) => Some((path, pem)),
                Err(m) => {
                    svc.report(label(format!("{key} \"{}\": {m}", quote(p))));
                    None
                }
            }
        };
        let (cert_path, chain) = file("cert")?;
        let (key_path, key) = file("key")?;
        out.push(SniCert {
            name: lower,
            cert_path,
            key_path,
            chain,
            key,
        });
    }
    Some(out)
}

/// A file read whole, at most `MAX_FILE` bytes.
pub(super) fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| io_problem(&e))?;
    let mut pem = Vec::new();
    match file.take(MAX_FILE + 1).read_to_end(&mut pem) {
        Ok(n) if n as u64 > MAX_FILE => Err("larger than 1 MiB".to_owned()),
        Ok(_) => Ok(pem),
        Err(e) => Err(io_problem(&e)),
    }
}

/// The file `f` names (relative to the config's directory), read whole.
fn read(svc: &Svc<'_>, f: &Field<'_>) -> Option<(PathBuf, Vec<u8>)> {
    let s = svc.ok(f.str())?;
    let path = f.dir().join(Path::new(s));
    match read_bounded(&path) {
        Ok(pem) => Some((path, pem)),
        Err(m) => {
            svc.report(f.err(format!("{} \"{}\": {m}", f.name, quote(s))));
            None
        }
    }
}
