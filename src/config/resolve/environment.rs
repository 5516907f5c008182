//! `env`, `passenv` and `stderr`: what a program finds in its environment
//! and on fd 2.

use super::{Resolver, Svc};
use crate::config::error::quote;
use crate::config::{StderrMode, RESERVED_ENV};

impl Resolver<'_> {
    /// `env` plus the `passenv` variables set in oxinetd's environment now.
    pub(super) fn environment(&self, svc: &Svc<'_>) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(f) = svc.get("env") {
            for (k, v) in svc.ok(f.string_table()).unwrap_or_default() {
                if RESERVED_ENV.contains(&k) {
                    svc.report(f.err(format!(
                        "env: \"{k}\" is set by oxinetd for each connection"
                    )));
                } else if valid_env_name(k) && !v.contains('\0') {
                    env.push((k.to_owned(), v.to_owned()));
                } else {
                    svc.report(f.err(format!(
                        "env: \"{k}\" is not a valid variable",
                        k = quote(k)
                    )));
                }
            }
        }
        if let Some(f) = svc.get("passenv") {
            for (k, at) in svc.ok(f.list()).unwrap_or_default() {
                if !valid_env_name(k) {
                    svc.report(crate::config::ConfigError::new(
                        at,
                        format!(
                            "passenv: \"{k}\" is not a valid variable name",
                            k = quote(k)
                        ),
                    ));
                    continue;
                }
                let found = self.ctx.env.iter().find(|(n, _)| n.to_str() == Some(k));
                if let Some(v) = found.and_then(|(_, v)| v.to_str()) {
                    env.retain(|(n, _)| n != k);
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        env
    }
}

/// `stderr`: log (the default), null or socket.
pub fn stderr(svc: &Svc<'_>) -> StderrMode {
    svc.get("stderr")
        .and_then(|f| {
            svc.ok(f.choice(&[
                ("log", StderrMode::Log),
                ("null", StderrMode::Null),
                ("socket", StderrMode::Socket),
            ]))
        })
        .unwrap_or(StderrMode::Log)
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
