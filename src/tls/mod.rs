//! `tls`: TLS in front of an exec'd stream `nowait` handler, with no TLS
//! record parsed in a root process, and no TLS code in the supervisor's
//! image.
//!
//! At config load (as root) the certificate chain, the key and the
//! client CAs are read into [`Settings`] and checked by the `oxinetd-tls`
//! program ([`check`]: the pair must match, the chain must parse).
//! `spawn::Plan` then writes them, with the options, into a sealed memfd
//! per service ([`Settings::encode`]). Per connection, the supervisor's
//! child execs `oxinetd-tls relay` ([`program`]), confined exactly as
//! the handler would be, with the client on fds 0/1 and the memfd on fd
//! 3; that process, running as the service's user, does the handshake
//! and relays ([`relay`], with rustls: [`server`]). The `oxinetd` binary
//! calls neither `server` nor `relay`, so it links no TLS code (its idle
//! RSS is mostly its own text). ARCHITECTURE.md, "TLS", gives the
//! reasons.
//!
//! An internal service or a forward with `tls`, or a forward with
//! `forward_tls`, has a relay too: `oxinetd-tls relay --pipe` ([`pipe`])
//! between two sockets, TLS on either side or both; its client side (the
//! upstream's certificate verified) is [`client`]'s, checked at load by
//! the same `oxinetd-tls check` ([`check::validate_out`]).
//!
//! The bundle's format, between a supervisor and the `oxinetd-tls` beside
//! it: `oxinetd-tls 1\n`, then records `NAME LEN\n` followed by LEN bytes
//! and `\n`. The version changes with the format, so an `oxinetd-tls`
//! replaced by an upgrade before the supervisor restarted refuses the
//! bundle by name instead of misreading it.

pub mod check;
pub mod client;
pub mod pipe;
pub mod relay;
pub mod server;

pub use check::{program, validate};
pub use server::{certificates, expires_in, private_key, provider};

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a client certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No `client_ca`: none is asked for.
    None,
    /// `client_ca`: one signed by it is required.
    Required,
    /// `client_ca` with `client_auth = "optional"`: asked for, checked if
    /// given, not required.
    Optional,
}

/// The oldest protocol version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// One `sni` entry: the certificate served to clients asking for `name`.
#[derive(Clone, PartialEq, Eq)]
pub struct SniCert {
    /// Lowercase; `*.example.com` matches one label.
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
}

/// A service's `tls`, with the PEM text of its files as read at load.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where `cert` and `key` were read from (for `check --list`).
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub client_ca_path: Option<PathBuf>,
    /// The PEM text: the chain (leaf first), the key, the client CAs.
    pub chain: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Vec<u8>,
    pub client_auth: ClientAuth,
    pub alpn: Vec<Vec<u8>>,
    pub min_version: MinVersion,
    /// How long the client may take to complete the handshake.
    pub handshake_timeout: Duration,
    /// `sni`: other certificates by server name; `cert`/`key` serve the
    /// clients that ask for none of them (or for no name).
    pub sni: Vec<SniCert>,
}

/// The key stays out of any `{:?}` (`Service` is printed in tests).
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .field("client_ca", &self.client_ca_path)
            .field("client_auth", &self.client_auth)
            .field("alpn", &self.alpn)
            .field("min_version", &self.min_version)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("sni", &self.sni.iter().map(|s| &s.name).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The handshake's default deadline.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a bundle may hold (the relay reads no more).
pub const MAX_BUNDLE: usize = 4 << 20;

/// A problem of one of the files, for the resolver to place.
#[derive(Debug)]
pub enum Problem {
    Cert(String),
    Key(String),
    ClientCa(String),
    /// Of `sni` entry N.
    SniCert(usize, String),
    SniKey(usize, String),
    /// `oxinetd-tls` could not be run, or gave no answer.
    Program(String),
}

impl Settings {
    /// The bundle the relay reads from its fd 3.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = b"oxinetd-tls 1\n".to_vec();
        let mut record = |name: &str, value: &[u8]| {
            out.extend_from_slice(format!("{name} {}\n", value.len()).as_bytes());
            out.extend_from_slice(value);
            out.push(b'\n');
        };
        record("cert", &self.chain);
        record("key", &self.key);
        let auth: &[u8] = match self.client_auth {
            ClientAuth::None => b"none",
            ClientAuth::Required => b"required",
            ClientAuth::Optional => b"optional",
        };
        record("client_auth", auth);
        record("client_ca", &self.client_ca);
        for p in &self.alpn {
            record("alpn", p);
        }
        let min: &[u8] = match self.min_version {
            MinVersion::Tls12 => b"1.2",
            MinVersion::Tls13 => b"1.3",
        };
        record("min_version", min);
        let ms = self.handshake_timeout.as_millis().to_string();
        record("handshake_ms", ms.as_bytes());
        for sni in &self.sni {
            record("sni_name", sni.name.as_bytes());
            record("sni_cert", &sni.chain);
            record("sni_key", &sni.key);
        }
        out
    }

    /// The settings a bundle carries (paths left empty).
    pub fn decode(mut b: &[u8]) -> Result<Settings, String> {
        b = b
            .strip_prefix(b"oxinetd-tls 1\n".as_slice())
            .ok_or("not a bundle of this oxinetd")?;
        let mut s = Settings {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            client_ca_path: None,
            chain: Vec::new(),
            key: Vec::new(),
            client_ca: Vec::new(),
            client_auth: ClientAuth::None,
            alpn: Vec::new(),
            min_version: MinVersion::Tls12,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            sni: Vec::new(),
        };
        while !b.is_empty() {
            let nl = b.iter().position(|c| *c == b'\n').ok_or("truncated")?;
            let head = std::str::from_utf8(&b[..nl]).map_err(|_| "bad record")?;
            let (name, len) = head.split_once(' ').ok_or("bad record")?;
            let len: usize = len.parse().map_err(|_| "bad length")?;
            let rest = &b[nl + 1..];
            if rest.len() < len + 1 {
                return Err("truncated".to_owned());
            }
            let value = &rest[..len];
            b = &rest[len + 1..];
            match name {
                "cert" => s.chain = value.to_vec(),
                "key" => s.key = value.to_vec(),
                "client_ca" => s.client_ca = value.to_vec(),
                "client_auth" => {
                    s.client_auth = match value {
                        b"required" => ClientAuth::Required,
                        b"optional" => ClientAuth::Optional,
                        _ => ClientAuth::None,
                    }
                }
                "alpn" => s.alpn.push(value.to_vec()),
                "min_version" => {
                    if value == b"1.3" {
                        s.min_version = MinVersion::Tls13;
                    }
                }
                "handshake_ms" => {
                    let ms = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse().ok())
                        .ok_or("bad handshake_ms")?;
                    s.handshake_timeout = Duration::from_millis(ms);
                }
                "sni_name" => s.sni.push(SniCert {
                    name: String::from_utf8_lossy(value).into_owned(),
                    cert_path: PathBuf::new(),
                    key_path: PathBuf::new(),
                    chain: Vec::new(),
                    key: Vec::new(),
                }),
                "sni_cert" => s.sni.last_mut().ok_or("sni_cert first")?.chain = value.to_vec(),
                "sni_key" => s.sni.last_mut().ok_or("sni_key first")?.key = value.to_vec(),
                _ => return Err(format!("unknown record {name}")),
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_round_trip() {
        let s = Settings {
            cert_path: PathBuf::new(),
            key_path: PathBuf::new(),
            client_ca_path: None,
            chain: b"-----BEGIN CERTIFICATE-----\nxx\n".to_vec(),
            key: b"k\n\nk".to_vec(),
            client_ca: Vec::new(),
            client_auth: ClientAuth::Optional,
            alpn: vec![b"h2".to_vec(), b"imap".to_vec()],
            min_version: MinVersion::Tls13,
            handshake_timeout: Duration::from_millis(2500),
            sni: vec![SniCert {
                name: "*.example.org".into(),
                cert_path: PathBuf::new(),
                key_path: PathBuf::new(),
                chain: b"c".to_vec(),
                key: b"k".to_vec(),
            }],
        };
        assert_eq!(Settings::decode(&s.encode()).unwrap(), s);
        let enc = s.encode();
        for cut in 0..enc.len() {
            // Never a panic on a cut bundle.
            let _ = Settings::decode(&enc[..cut]);
        }
    }
}
