//! The rustls side of a service's `tls`: its [`ServerConfig`], built (and
//! so checked) from the [`Settings`] a bundle carries. Only the
//! `oxinetd-tls` program calls this: the relay per connection, and its
//! `check` mode for the supervisor at load ([`super::check`]). The
//! supervisor's own binary links none of it.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::{ClientAuth, MinVersion, Problem, Settings};

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
}
