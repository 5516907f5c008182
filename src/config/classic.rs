//! What the classic front-ends (inetd.conf, xinetd) share: a `Translation`
//! is their raw form (`raw::Draft`s, `[global]` keys) with the problems met
//! reading it, handed to the resolver as it is (`resolve`) or written as
//! TOML by `oxinetd import`.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::raw::{Draft, Key, Raw, Value};
use super::{ConfigError, Context, Diagnostic, Loaded, Location, Severity};

/// A whole translated configuration.
#[derive(Debug, Default)]
pub struct Translation {
    /// `[global]` keys.
    pub global: Vec<(&'static str, Value, Location)>,
    pub services: Vec<Draft>,
    /// Malformed lines or values: the config is invalid (a reload with
    /// them keeps the running config), the rest runs at startup.
    pub errors: Vec<ConfigError>,
    /// Valid lines or services oxinetd cannot honour (RPC, a redirect, a
    /// sensor...): reported, never run, and they do not block a reload.
    pub unsupported: Vec<ConfigError>,
    /// Settings that are ignored or changed; the service still runs.
    pub warnings: Vec<ConfigError>,
    /// The files read, in order (for the header of `import`).
    pub sources: Vec<PathBuf>,
}

/// Why a line or service of another format is not translated.
#[derive(Debug)]
pub enum Problem {
    /// Malformed: the config is wrong.
    Invalid(ConfigError),
    /// Well-formed, but asks for something oxinetd cannot do (safely).
    Unsupported(ConfigError),
}

impl Translation {
    /// Problems in reading order, each once (settings in `defaults` are
    /// met once per service).
    pub fn finish(&mut self) {
        for list in [&mut self.errors, &mut self.unsupported, &mut self.warnings] {
            list.sort_by(|a, b| {
                (&a.at.file, a.at.line, a.at.col, &a.message)
                    .cmp(&(&b.at.file, b.at.line, b.at.col, &b.message))
            });
            list.dedup();
        }
    }

    pub fn report(&mut self, p: Problem) {
        match p {
            Problem::Invalid(e) => self.errors.push(e),
            Problem::Unsupported(e) => self.unsupported.push(e),
        }
    }

    /// The problems met translating, with their weight.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let weigh = |list: &[ConfigError], severity| {
            list.iter()
                .cloned()
                .map(move |problem| Diagnostic { severity, problem })
                .collect::<Vec<_>>()
        };
        let mut all = weigh(&self.errors, Severity::Error);
        all.extend(weigh(&self.unsupported, Severity::Skipped));
        all.extend(weigh(&self.warnings, Severity::Warning));
        all
    }

    /// Resolve the translation of the config at `path` as the supervisor
    /// runs it: its services (disabled ones left out) through the one
    /// resolver, then the problems met translating. `Err`: it says one
    /// thing twice, which TOML cannot hold (see `duplicates`).
    pub fn resolve(self, path: &Path, ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
        let duplicates = self.duplicates();
        if !duplicates.is_empty() {
            return Err(duplicates);
        }
        let diagnostics = self.diagnostics();
        let raw = Raw {
            global: self
                .global
                .into_iter()
                .map(|(name, value, at)| Key::new(name, value, &at))
                .collect(),
            defaults: Vec::new(),
            services: self
                .services
                .into_iter()
                .filter(|d| d.disabled.is_none())
                .map(|d| as_imported(d, path))
                .collect(),
            diagnostics: Vec::new(),
            // As `oxinetd import` prints it: one file, next to the original.
            relative_to: Some(path.to_path_buf()),
        };
        let mut loaded = super::resolve::resolve(raw, ctx);
        loaded.diagnostics.extend(diagnostics);
        Ok(loaded)
    }

    /// A key twice in `[global]` (two xinetd `log_type = SYSLOG` lines) or
    /// a name twice in a table (`env = A=1 A=2`) of a service that runs: a
    /// TOML document cannot hold either, so the config is refused whole,
    /// as running its import is.
    pub fn duplicates(&self) -> Vec<ConfigError> {
        let mut found = Vec::new();
        for (i, (name, _, at)) in self.global.iter().enumerate() {
            if self.global[..i].iter().any(|(n, _, _)| n == name) {
                found.push(ConfigError::new(at.clone(), "duplicate key"));
            }
        }
        for key in self
            .services
            .iter()
            .filter(|d| d.disabled.is_none())
            .flat_map(|d| &d.keys)
        {
            if let Value::Table(pairs) = &key.value {
                for (i, (name, _)) in pairs.iter().enumerate() {
                    if pairs[..i].iter().any(|(n, _)| n == name) {
                        found.push(ConfigError::new(key.at.clone(), "duplicate key"));
                    }
                }
            }
        }
        found
    }
}

/// A translated service as its TOML import reads: located at its first key
/// (the file's start when it has none), its tables in key order.
fn as_imported(mut d: Draft, path: &Path) -> Draft {
    d.origin = d
        .keys
        .first()
        .map_or_else(|| Location::file(path), |k| k.at.clone());
    for key in &mut d.keys {
        if let Value::Table(pairs) = &mut key.value {
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
        }
    }
    d
}

/// The addresses of `host`: an IP address as it is, a name resolved now
/// (the classic formats allow host names where TOML wants addresses).
pub fn resolve_host(host: &str) -> Result<Vec<IpAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("host \"{host}\": {e}"))?
        .map(|a| a.ip())
        .collect();
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// A TOML `listen` entry for `ip` and a port number or service name.
pub fn listen_entry(ip: IpAddr, port: &str) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
