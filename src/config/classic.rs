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
    /// The problems met translating: malformed lines (errors), lines
    /// oxinetd cannot honour (skipped), settings ignored (warnings).
    pub diagnostics: Vec<Diagnostic>,
    /// The files read, in order (for the header of `import`).
    pub sources: Vec<PathBuf>,
}

impl Translation {
    /// Problems in reading order, each once (settings in `defaults` are
    /// met once per service).
    pub fn finish(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            let (x, y) = (&a.problem, &b.problem);
            (&x.at.file, x.at.line, x.at.col, &x.message, a.severity)
                .cmp(&(&y.at.file, y.at.line, y.at.col, &y.message, b.severity))
        });
        self.diagnostics.dedup();
    }

    /// Record a problem met translating.
    pub fn report(&mut self, d: Diagnostic) {
        self.diagnostics.push(d);
    }

    /// Record malformed input: the config is wrong.
    pub fn error(&mut self, e: ConfigError) {
        self.report(Diagnostic::error(e));
    }

    /// Record a setting that is ignored or changed.
    pub fn warning(&mut self, e: ConfigError) {
        self.report(Diagnostic::warning(e));
    }

    /// The problems of one severity, in reading order.
    pub fn problems(&self, severity: Severity) -> impl Iterator<Item = &ConfigError> {
        self.diagnostics
            .iter()
            .filter(move |d| d.severity == severity)
            .map(|d| &d.problem)
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
        loaded.diagnostics.extend(self.diagnostics);
        Ok(loaded)
    }

    /// Add the translation of `path`, a file a TOML config includes, to
    /// that config's raw form: its services that run join the TOML ones
    /// (`[defaults]` filling the keys they leave unset), its problems join
    /// the load's. `Err`: as for `resolve`, it says one thing twice.
    pub fn include_into(self, path: &Path, raw: &mut Raw) -> Result<(), Vec<ConfigError>> {
        let duplicates = self.duplicates();
        if !duplicates.is_empty() {
            return Err(duplicates);
        }
        // Only inetd.conf is included (`toml::collect_files`): it has no
        // [global] keys.
        debug_assert!(self.global.is_empty());
        raw.services.extend(
            self.services
                .into_iter()
                .filter(|d| d.disabled.is_none())
                .map(|d| as_imported(d, path)),
        );
        raw.diagnostics.extend(self.diagnostics);
        Ok(())
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
