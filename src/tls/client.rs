//! The rustls side of `forward_tls`: the [`ClientConfig`] of a forward's
//! relay, built (and so checked) from the [`Outbound`] its bundle
//! carries. Only the `oxinetd-tls` program calls this: the `--pipe` relay
//! per connection, and its `check` mode for the supervisor at load
//! ([`super::check::validate_out`]). The supervisor's own binary links
//! none of it.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};

use super::pipe::{OutProblem, Outbound};
use super::{certificates, private_key, provider};

impl Outbound {
    /// The rustls client configuration, checking everything: the CAs are
    /// usable (at least one), the name is one, the client pair matches.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, OutProblem> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        let cas = certificates(&self.ca).map_err(OutProblem::Ca)?;
        // A system bundle may hold a few certificates webpki cannot use;
        // they are skipped, as every TLS client does.
        let (added, _) = roots.add_parsable_certificates(cas);
        if added == 0 {
            return Err(OutProblem::Ca("no usable CA certificate in it".into()));
        }
        self.name()?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| OutProblem::Ca(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = if self.cert.is_empty() {
            builder.with_no_client_auth()
        } else {
            let chain = certificates(&self.cert).map_err(OutProblem::Cert)?;
            let key = private_key(&self.key).map_err(OutProblem::Key)?;
            // Checked here: with_client_auth_cert does not compare them.
            rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider)
                .map_err(|e| match e {
                    rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                        OutProblem::Key("does not match the certificate's public key".into())
                    }
                    e => OutProblem::Key(e.to_string()),
                })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| OutProblem::Key(e.to_string()))?
        };
        // One connection per process: nothing to resume with.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// `server_name` as rustls takes it.
    pub fn name(&self) -> Result<ServerName<'static>, OutProblem> {
        ServerName::try_from(self.server_name.clone()).map_err(|_| {
            OutProblem::ServerName(format!(
                "\"{}\" is neither a DNS name nor an IP address",
                self.server_name
            ))
        })
    }
}
