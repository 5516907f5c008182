//! `tls`: TLS in front of an exec'd stream `nowait` handler, with no TLS
//! record parsed in a root process.
//!
//! At config load (as root) the certificate chain, the key and the
//! client CAs are read and checked here ([`Settings::load_pem`],
//! [`Settings::server_config`]): the pair must match, the chain must
//! parse. `spawn::Plan` then writes them, with the options, into a sealed
//! memfd per service ([`Settings::encode`], a [`Bundle`]). Per
//! connection, the supervisor's child execs oxinetd itself as `oxinetd
//! tls-relay` (`/proc/self/exe`), confined exactly as the handler would
//! be, with the client on fds 0/1 and the memfd on fd 3; that process,
//! running as the service's user, does the handshake and relays
//! ([`relay`]). ARCHITECTURE.md, "TLS", gives the reasons.
//!
//! The bundle's format, private to one oxinetd binary (the relay is
//! always the supervisor's own image): `oxinetd-tls 1\n`, then records
//! `NAME LEN\n` followed by LEN bytes and `\n`.

pub mod pipe;
pub mod relay;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

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

/// The ring provider: the one crypto backend (Cargo.toml says why).
/// rustls 0.23.48 marks it deprecated for lacking post-quantum key
/// exchange (X25519MLKEM768 is aws-lc-rs's); the classical groups it has
/// are what stunnel4 and most clients negotiate today.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates in `pem`, in order.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE in it".to_owned());
    }
    Ok(certs)
}

/// The private key in `pem` (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY in it".to_owned(),
        e => format!("unreadable PEM: {e}"),
    })
}

/// Seconds from now until the leaf certificate expires (negative: it has).
pub fn expires_in(leaf: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(cert.validity().not_after.timestamp() - i64::try_from(now).ok()?)
}

/// A problem of one of the files, for the resolver to place.
#[derive(Debug)]
pub enum Problem {
    Cert(String),
    Key(String),
    ClientCa(String),
    /// Of `sni` entry N.
    SniCert(usize, String),
    SniKey(usize, String),
}

/// The certificate for a client: by its server name among `sni`, else
/// the default.
#[derive(Debug)]
struct BySni {
    default: Arc<rustls::sign::CertifiedKey>,
    names: Vec<(String, Arc<rustls::sign::CertifiedKey>)>,
}

impl BySni {
    fn lookup(&self, name: &str) -> Option<&Arc<rustls::sign::CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        let exact = self.names.iter().find(|(n, _)| *n == name);
        let wild = || {
            let (_, parent) = name.split_once('.')?;
            self.names
                .iter()
                .find(|(n, _)| n.strip_prefix("*.") == Some(parent))
        };
        exact.or_else(wild).map(|(_, k)| k)
    }
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let by_name = hello.server_name().and_then(|n| self.lookup(n));
        Some(Arc::clone(by_name.unwrap_or(&self.default)))
    }
}

/// A certificate and its key, checked to match.
fn certified(
    chain: &[u8],
    key: &[u8],
    provider: &rustls::crypto::CryptoProvider,
    cert_problem: impl Fn(String) -> Problem,
    key_problem: impl Fn(String) -> Problem,
) -> Result<Arc<rustls::sign::CertifiedKey>, Problem> {
    let chain = certificates(chain).map_err(&cert_problem)?;
    let key = private_key(key).map_err(&key_problem)?;
    rustls::sign::CertifiedKey::from_der(chain, key, provider)
        .map(Arc::new)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                key_problem("does not match the certificate's public key".to_owned())
            }
            e => key_problem(e.to_string()),
        })
}

impl Settings {
    /// The rustls configuration, checking everything: the chain and the
    /// key parse, the key is the certificate's, the client CAs are
    /// usable. Run at load (as root, on files only root may read: no
    /// network input) and by each relay on what the bundle carries.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, Problem> {
        let provider = provider();
        let default = certified(
            &self.chain,
            &self.key,
            &provider,
            Problem::Cert,
            Problem::Key,
        )?;
        let mut names = Vec::with_capacity(self.sni.len());
        for (i, s) in self.sni.iter().enumerate() {
            let k = certified(
                &s.chain,
                &s.key,
                &provider,
                |m| Problem::SniCert(i, m),
                |m| Problem::SniKey(i, m),
            )?;
            names.push((s.name.clone(), k));
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| Problem::Cert(e.to_string()))?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => {
                let mut roots = RootCertStore::empty();
                for ca in certificates(&self.client_ca).map_err(Problem::ClientCa)? {
                    roots
                        .add(ca)
                        .map_err(|e| Problem::ClientCa(format!("not a usable CA: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = match auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| Problem::ClientCa(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(BySni { default, names }));
        config.alpn_protocols = self.alpn.clone();
        // Each connection is a process of its own: a session cache would
        // never be hit, and tickets would need a key shared by them all.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }

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
