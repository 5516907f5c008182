//! `tls`: TLS in front of an exec'd stream `nowait` handler, with no TLS
//! record parsed in a root process, and no TLS code in the supervisor's
//! image.
//!
//! At config load (as root: a key only root may read works) the
//! certificate chain, the key and the client CAs are read into
//! [`Settings`] and checked by the `oxinetd-tls` program ([`check`]: the
//! chain and key parse, the key is the certificate's, the CAs are usable;
//! a leaf expiring within 14 days is a warning). `spawn::Plan` then writes
//! them, with the options, into a memfd per service
//! ([`Settings::encode`]), sealed (`F_SEAL_WRITE | SHRINK | GROW | SEAL`).
//! Per connection nothing changes in the supervisor but the plan: its path
//! is `oxinetd-tls` ([`program`]: beside oxinetd, else in
//! `../libexec/oxinetd/`), its argv `oxinetd-tls relay SERVER ARGV0
//! ARGS...`, and the memfd goes on fd 3 through the child's existing fd-3
//! step (the one socket activation uses; no `LISTEN_PID` then). So the
//! relay is confined by exactly the steps a handler is (ids, rlimits,
//! nice, umask, capabilities, namespaces, `no_new_privs`), counts as the
//! service's handler for `instances`, `per_source`, `timeout` (its process
//! group holds the handler too), and its exit is the handler's. That
//! process, running as the service's user, does the handshake and relays
//! ([`relay`], with rustls: [`server`]).
//!
//! Why `oxinetd-tls` is a program of its own: the supervisor's idle RSS is
//! mostly its own text (fault-around maps 64 KiB around every page touched
//! at start), and rustls, ring and x509-parser are 1.1 MB of text. Linked
//! into `oxinetd`, they took idle RSS from 1.6 to 2.0 MiB of file pages
//! with one service, though no TLS code ran. Apart, `oxinetd` calls
//! neither `server` nor `relay` and links none of it (the checks at load
//! run in `oxinetd-tls check`, one short process per `tls` or
//! `forward_tls` service per load), and the root process does not even
//! contain a TLS stack. The cost: the relay is found by path, not
//! `/proc/self/exe`.
//!
//! Why a relay per connection rather than a long-lived unprivileged TLS
//! worker that the supervisor passes accepted sockets to (relayd-style):
//!
//! - **Isolation is per connection.** A bug in the TLS stack exploited by
//!   one client gets one process with that service's user, seeing one
//!   connection; in a worker it would see every connection of the service
//!   (their plaintext and their keys). A crash ends one connection.
//! - **Nothing new in the supervisor.** The per-connection path, its
//!   accounting, limits, timeouts, reload and re-exec handling all stay as
//!   they are: the relay is "the handler" to them. A worker needs fd
//!   passing (`SCM_RIGHTS` per connection: a system call per connection in
//!   the supervisor anyway), its own lifetime across reloads (a new
//!   certificate means a new worker while the old drains), a socketpair
//!   per connection back to a handler the supervisor still spawns, and a
//!   multiplexing loop of its own.
//! - **Reload is free.** Each connection reads the bundle of the plan it
//!   was spawned with; the supervisor's copy is replaced with the plan.
//!   Open connections keep theirs because they are separate processes.
//! - **The cost** is an exec of oxinetd-tls (and, for the dynamic build,
//!   its libraries) and a rustls `ServerConfig` built per connection, on
//!   top of the handshake itself, which dominates (a P-256 ECDHE and
//!   signature). No session resumption (a cache would never be hit;
//!   tickets would need a key shared by every relay): `send_tls13_tickets
//!   = 0`. `bench/run`'s figure `tls` compares it with stunnel4 `exec`ing
//!   the same handler (a fork and exec per connection too, its TLS in
//!   threads of one process): a short run gave 585 against 231 full
//!   handshakes + line + close per second at c=8, 576 against 191 at c=64,
//!   478 against 264 MB/s in bulk; HAProxy (one thread) terminating TLS in
//!   front of a plain oxinetd service: 358, 326, 436 MB/s
//!   (bench/README.md). A worker would save the exec per connection;
//!   HAProxy, which has none, is not faster here: the handshake's
//!   cryptography, spread over both cores by separate processes, is the
//!   cost. The supervisor's own CPU per TLS connection (schedstat of its
//!   thread, c=8): 53 µs, against 39 µs for a plain exec'd service in the
//!   same binary and run, at a third of the rate (fewer connections per
//!   wake-up of the loop); its path per connection is the same code.
//!
//! An internal service or a forward with `tls`, or a forward with
//! `forward_tls`, has a relay too: `oxinetd-tls relay --pipe` ([`pipe`],
//! which says how it is started and accounted) between two sockets, TLS on
//! either side or both; its client side (the upstream's certificate
//! verified) is [`client`]'s, checked at load by the same `oxinetd-tls
//! check` ([`check::validate_out`]).
//!
//! **Upgrades.** The relay is `oxinetd-tls` as found by path at each load,
//! so after a package upgrade replaced both files an old supervisor may
//! start a new relay until it restarts (or re-execs on SIGUSR2). The
//! bundle's format ([`bundle`]), between a supervisor and the
//! `oxinetd-tls` beside it: `oxinetd-tls 1\n` (`oxinetd-tls-pipe 1\n` for
//! a [`pipe::Pipe`]), then records `NAME LEN\n` followed by LEN bytes and
//! `\n`. The version
//! changes with the format, so a relay that does not know it refuses the
//! bundle by name instead of misreading it. The service's user needs
//! execute permission on the file and search permission on the directories
//! of its path (`config/resolve/reach.rs`, checked at load).
//!
//! **Chroot** is refused with `tls` for now: the relay is exec'd after the
//! chroot (the child's steps are fixed), where neither `oxinetd-tls` nor,
//! for the dynamic build, its libraries are. An `execveat` of an fd opened
//! before the chroot would solve the first for the static build only; a
//! relay that chroots itself after the handshake would need it to stay
//! root until then.

mod blocking;
pub mod bundle;
pub mod check;
pub mod client;
pub mod pipe;
pub mod relay;
pub mod server;

pub use bundle::MAX_BUNDLE;
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

/// The first line of a [`Settings`] bundle.
const MAGIC: &[u8] = b"oxinetd-tls 1\n";

impl Settings {
    /// The bundle the relay reads from its fd 3.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = bundle::Writer::new(MAGIC);
        let mut record = |name: &str, value: &[u8]| w.record(name, value);
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
        w.finish()
    }

    /// The settings a bundle carries (paths left empty).
    pub fn decode(b: &[u8]) -> Result<Settings, String> {
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
        for record in bundle::records(b, MAGIC)? {
            let (name, value) = record?;
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
