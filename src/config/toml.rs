//! The native TOML front-end.
//!
//! The document is walked as a spanned tree (`toml::de::DeTable`) rather than
//! deserialized with serde derive: serde stops at the first error, while
//! `oxinetd check` must report every unknown key, bad value and broken
//! service with its `FILE:LINE:COL` in one run. The key tables below are the
//! single list of accepted keys; a test keeps the man page in step with them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::error::{did_you_mean, quote};
use super::source::{Entry, Sources};
use super::{
    parse_listen, parse_unix_path, BindAddr, Config, ConfigError, Context, Global, Handler,
    ListenKey, Loaded, Location, Protocol, Service, SocketFile, StderrMode, WaitMode,
};
use crate::access::{Access, Cidr, Window};
use crate::internal::Internal;
use crate::limits::{Limits, Rate};
use crate::log::LogFields;
use crate::privilege::Identity;

/// Keys of a `[[service]]` table.
pub const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "socket",
    "protocol",
    "wait",
    "user",
    "group",
    "groups",
    "server",
    "args",
    "argv0",
    "env",
    "passenv",
    "stderr",
    "only_from",
    "no_access",
    "access_times",
    "banner_fail",
    "instances",
    "per_source",
    "per_source_prefix",
    "cps",
    "rate",
    "reply_rate",
    "idle_timeout",
    "peer_reply_rate",
    "log_on_success",
    "log_on_failure",
    "socket_mode",
    "socket_owner",
];
/// Keys of `[defaults]`: every service key that can be shared.
const DEFAULTS_KEYS: &[&str] = &[
    "socket",
    "protocol",
    "wait",
    "user",
    "group",
    "groups",
    "server",
    "args",
    "argv0",
    "env",
    "passenv",
    "stderr",
    "only_from",
    "no_access",
    "access_times",
    "banner_fail",
    "instances",
    "per_source",
    "per_source_prefix",
    "cps",
    "rate",
    "reply_rate",
    "idle_timeout",
    "peer_reply_rate",
    "log_on_success",
    "log_on_failure",
    "socket_mode",
    "socket_owner",
];
/// Keys of `[global]`.
pub const GLOBAL_KEYS: &[&str] = &[
    "syslog_facility",
    "syslog_socket",
    "shutdown_grace",
    "loop_pause",
    "max_processes",
];
/// Keys at the top of the main file.
pub const ROOT_KEYS: &[&str] = &["global", "defaults", "service", "include"];
/// Keys at the top of an included file.
const INCLUDED_ROOT_KEYS: &[&str] = &["service", "include"];

/// How deep `include` may nest: the main file including a file that
/// includes another is 2. Cycles are found by `Sources`, not by this.
const MAX_INCLUDE_DEPTH: usize = 8;

/// A file of the configuration and its text.
struct SourceFile {
    path: PathBuf,
    text: String,
    is_main: bool,
    /// Byte offset of each line's start: locating a value is a binary
    /// search, not a scan from the top (1000 services, 1000 origins).
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(path: &Path, text: String, is_main: bool) -> SourceFile {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path: path.to_path_buf(),
            text,
            is_main,
            line_starts,
        }
    }

    /// `FILE:LINE:COL` of byte `offset`.
    fn loc(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count())
            + 1;
        Location {
            file: self.path.clone(),
            line: line.max(1),
            col,
        }
    }
}

pub fn load(path: &Path, ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
    let mut files = Vec::new();
    let mut fatal = Vec::new();
    let mut sources = Sources::default();
    collect_files(path, None, &mut sources, &mut files, &mut fatal);
    sources.finish(&mut fatal);
    if !fatal.is_empty() {
        return Err(fatal);
    }
    resolve(&files, ctx)
}

/// Load TOML text that is not read from a file (a translation of another
/// format): positions in the errors are positions in `text`, as if it had
/// been read from `path`. `include` is not followed.
pub fn load_text(path: &Path, text: String, ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
    let file = SourceFile::new(path, text, true);
    let (_, errs) = DeTable::parse_recoverable(&file.text);
    if !errs.is_empty() {
        return Err(errs.iter().map(|e| syntax_error(&file, e)).collect());
    }
    resolve(std::slice::from_ref(&file), ctx)
}

fn resolve(files: &[SourceFile], ctx: &Context) -> Result<Loaded, Vec<ConfigError>> {
    let mut fatal = Vec::new();
    let mut parsed = Vec::with_capacity(files.len());
    for file in files {
        match DeTable::parse(&file.text) {
            Ok(table) => parsed.push((file, table)),
            // Already reported by collect_files; unreachable in practice.
            Err(e) => fatal.push(syntax_error(file, &e)),
        }
    }
    if !fatal.is_empty() {
        return Err(fatal);
    }

    let mut walk = Walk {
        ctx,
        errors: Vec::new(),
        identities: HashMap::new(),
        programs: HashMap::new(),
    };
    let mut global = Global::default();
    let mut defaults: HashMap<&str, Field<'_>> = HashMap::new();
    let mut services = Vec::new();
    for (file, table) in &parsed {
        let allowed = if file.is_main {
            ROOT_KEYS
        } else {
            INCLUDED_ROOT_KEYS
        };
        for (key, value) in table.get_ref().iter() {
            let field = Field {
                file,
                value,
                key: key.get_ref(),
            };
            match key.get_ref().as_ref() {
                k if !file.is_main && ROOT_KEYS.contains(&k) && !allowed.contains(&k) => walk.errors.push(ConfigError::new(
                    file.loc(key.span().start),
                    format!("\"{k}\" may only be set in the main config file, not in an included one", k = quote(k)),
                )),
                _ if !allowed.contains(&key.get_ref().as_ref()) => {
                    walk.unknown_key(file, key, allowed, "top level")
                }
                "global" => walk.global(field, &mut global),
                "defaults" => {
                    if let Some(t) = walk.table(field) {
                        defaults = walk.fields(file, t, DEFAULTS_KEYS, "[defaults]");
                    }
                }
                "service" => services.extend(walk.service_tables(field)),
                _ => {} // include: handled by collect_files
            }
        }
    }
    let services = services
        .into_iter()
        .filter_map(|(file, table)| walk.service(file, table, &defaults))
        .collect();
    Ok(Loaded {
        config: Config { global, services },
        errors: walk.errors,
        warnings: Vec::new(),
        skipped: Vec::new(),
    })
}

/// Read `path` and, recursively, the files it includes, each file once
/// (see `Sources`). `at` is where `path` was included, `None` for the main
/// file.
fn collect_files(
    path: &Path,
    at: Option<&Location>,
    sources: &mut Sources,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<ConfigError>,
) {
    let is_main = at.is_none();
    let text = match sources.enter(path, at, errors) {
        Entry::Read(t) => t,
        Entry::Skip => return,
    };
    let file = SourceFile::new(path, text, is_main);
    let table = match DeTable::parse_recoverable(&file.text) {
        (table, errs) if errs.is_empty() => table,
        (_, errs) => {
            errors.extend(errs.iter().map(|e| syntax_error(&file, e)));
            sources.leave();
            return;
        }
    };
    let mut includes = Vec::new();
    if let Some(value) = table.get_ref().get("include") {
        let field = Field {
            file: &file,
            value,
            key: "include",
        };
        match field.strings() {
            Ok(patterns) => {
                for (pattern, at) in patterns {
                    if sources.depth() > MAX_INCLUDE_DEPTH {
                        errors.push(ConfigError::new(
                            at,
                            format!("include nested more than {MAX_INCLUDE_DEPTH} deep"),
                        ));
                        continue;
                    }
                    match expand_include(path, pattern) {
                        Ok(found) => includes.extend(found.into_iter().map(|f| (f, at.clone()))),
                        Err(msg) => errors.push(ConfigError::new(at, msg)),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    drop(table);
    files.push(file);
    for (inc, at) in includes {
        collect_files(&inc, Some(&at), sources, files, errors);
    }
    sources.leave();
}

/// Files matching `pattern`, relative to the directory of `including`, sorted.
fn expand_include(including: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let base = including.parent().unwrap_or(Path::new("."));
    let full = base.join(pattern);
    let full = full.to_str().ok_or("include pattern is not valid UTF-8")?;
    let paths = glob::glob(full)
        .map_err(|e| format!("include \"{pattern}\": {e}", pattern = quote(pattern)))?;
    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
    found.sort();
    Ok(found)
}

fn syntax_error(file: &SourceFile, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim_end().replace('\n', "; ");
    ConfigError::new(file.loc(offset), message)
}

/// One value of the document, with the file it came from.
#[derive(Clone, Copy)]
struct Field<'a> {
    file: &'a SourceFile,
    key: &'a str,
    value: &'a Spanned<DeValue<'a>>,
}

impl<'a> Field<'a> {
    fn loc(&self) -> Location {
        self.file.loc(self.value.span().start)
    }

    fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.loc(), message)
    }

    fn wrong_type(&self, expected: &str) -> ConfigError {
        self.err(format!(
            "{}: expected {expected}, found {}",
            self.key,
            self.value.get_ref().type_str()
        ))
    }

    fn str(&self) -> Result<&'a str, ConfigError> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(s.as_ref()),
            _ => Err(self.wrong_type("a string")),
        }
    }

    fn bool(&self) -> Result<bool, ConfigError> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Ok(*b),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    /// A duration in seconds: an integer or a float, not negative.
    fn seconds(&self) -> Result<Duration, ConfigError> {
        let secs = match self.value.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|v| v as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            _ => return Err(self.wrong_type("a number of seconds")),
        };
        match secs {
            Some(s) if s.is_finite() && (0.0..=86400.0).contains(&s) => {
                Ok(Duration::from_secs_f64(s))
            }
            _ => Err(self.err(format!(
                "{}: expected seconds between 0 and 86400",
                self.key
            ))),
        }
    }

    /// An integer between `min` and `max`.
    fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        let DeValue::Integer(i) = self.value.get_ref() else {
            return Err(self.wrong_type("an integer"));
        };
        match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.err(format!(
                "{}: expected an integer from {min} to {max}",
                self.key
            ))),
        }
    }

    /// Each string of a one-or-list value through `parse`, errors located
    /// at the item.
    fn each<T>(
        &self,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, Vec<ConfigError>> {
        let items = self.strings().map_err(|e| vec![e])?;
        let mut out = Vec::with_capacity(items.len());
        let mut errs = Vec::new();
        for (s, at) in items {
            match parse(s) {
                Ok(v) => out.push(v),
                Err(m) => errs.push(ConfigError::new(at, format!("{}: {m}", self.key))),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    /// One string or a list of strings, each with its location.
    fn strings(&self) -> Result<Vec<(&'a str, Location)>, ConfigError> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(vec![(s.as_ref(), self.loc())]),
            DeValue::Array(items) => items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) => Ok((s.as_ref(), self.file.loc(item.span().start))),
                    other => Err(ConfigError::new(
                        self.file.loc(item.span().start),
                        format!(
                            "{}: expected a string, found {}",
                            self.key,
                            other.type_str()
                        ),
                    )),
                })
                .collect(),
            _ => Err(self.wrong_type("a string or a list of strings")),
        }
    }

    /// A list of strings (a single string is not accepted: `args = "a b"`
    /// is almost always a mistake for `args = ["a", "b"]`).
    fn list(&self) -> Result<Vec<(&'a str, Location)>, ConfigError> {
        match self.value.get_ref() {
            DeValue::Array(_) => self.strings(),
            _ => Err(self.wrong_type("a list of strings")),
        }
    }

    /// A table of string values.
    fn string_table(&self) -> Result<Vec<(&'a str, &'a str)>, ConfigError> {
        let DeValue::Table(t) = self.value.get_ref() else {
            return Err(self.wrong_type("a table of strings"));
        };
        t.iter()
            .map(|(k, v)| match v.get_ref() {
                DeValue::String(s) => Ok((k.get_ref().as_ref(), s.as_ref())),
                other => Err(ConfigError::new(
                    self.file.loc(v.span().start),
                    format!(
                        "{}.{}: expected a string, found {}",
                        self.key,
                        k.get_ref(),
                        other.type_str()
                    ),
                )),
            })
            .collect()
    }

    /// One of `choices`.
    fn choice<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let s = self.str()?;
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(format!(
                    "{}: \"{s}\" is not one of {}",
                    self.key,
                    names.join(", ")
                ))
            })
    }
}

/// The state of one walk over the document: where errors go.
struct Walk<'c> {
    ctx: &'c Context,
    errors: Vec<ConfigError>,
    /// Identities already resolved: a thousand services as `nobody` read
    /// the user and group databases once, not a thousand times.
    identities: HashMap<IdentityKey, Result<Identity, String>>,
    /// Server programs already checked, with what is wrong with each, if
    /// anything: one `stat` per program of a load, not per service.
    programs: HashMap<PathBuf, Option<String>>,
}

type IdentityKey = (Option<String>, Option<String>, bool);

impl Walk<'_> {
    fn unknown_key(
        &mut self,
        file: &SourceFile,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        known: &[&str],
        place: &str,
    ) {
        let name = key.get_ref();
        let mut msg = format!("unknown key \"{name}\" in {place}", name = quote(name));
        if let Some(s) = did_you_mean(name, known) {
            msg.push_str(&format!(" (did you mean \"{s}\"?)"));
        } else if place == "top level" && SERVICE_KEYS.contains(&name.as_ref()) {
            msg.push_str(" (service keys go in [[service]] or [defaults])");
        } else if place != "top level" && ROOT_KEYS.contains(&name.as_ref()) {
            msg.push_str(" (top-level keys must come before the first [table])");
        }
        self.errors
            .push(ConfigError::new(file.loc(key.span().start), msg));
    }

    fn table<'a>(&mut self, field: Field<'a>) -> Option<&'a DeTable<'a>> {
        match field.value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.errors.push(field.wrong_type("a table"));
                None
            }
        }
    }

    /// The known fields of `table`; unknown keys are reported.
    fn fields<'a>(
        &mut self,
        file: &'a SourceFile,
        table: &'a DeTable<'a>,
        known: &[&'static str],
        place: &str,
    ) -> HashMap<&'static str, Field<'a>> {
        let mut out = HashMap::new();
        for (key, value) in table.iter() {
            match known.iter().find(|k| **k == key.get_ref().as_ref()) {
                Some(k) => {
                    out.insert(
                        *k,
                        Field {
                            file,
                            key: k,
                            value,
                        },
                    );
                }
                None => self.unknown_key(file, key, known, place),
            }
        }
        out
    }

    fn global(&mut self, field: Field<'_>, global: &mut Global) {
        let Some(table) = self.table(field) else {
            return;
        };
        for (key, f) in self.fields(field.file, table, GLOBAL_KEYS, "[global]") {
            let result = match key {
                "syslog_facility" => f.str().and_then(|s| {
                    s.parse()
                        .map(|fac| global.syslog_facility = fac)
                        .map_err(|_| {
                            f.err(format!(
                                "syslog_facility: unknown facility \"{s}\"",
                                s = quote(s)
                            ))
                        })
                }),
                "syslog_socket" => f
                    .str()
                    .map(|s| global.syslog_socket = Some(PathBuf::from(s))),
                "shutdown_grace" => f.seconds().map(|d| global.shutdown_grace = d),
                "loop_pause" => f.seconds().map(|d| global.loop_pause = d),
                "max_processes" => f
                    .int(1, 1_000_000)
                    .map(|n| global.max_processes = n as usize),
                _ => Ok(()),
            };
            if let Err(e) = result {
                self.errors.push(e);
            }
        }
    }

    /// The tables of a `[[service]]` array.
    fn service_tables<'a>(&mut self, field: Field<'a>) -> Vec<(&'a SourceFile, &'a DeTable<'a>)> {
        match field.value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(t) => Some((field.file, t)),
                    _ => {
                        self.errors.push(
                            Field {
                                value: item,
                                ..field
                            }
                            .wrong_type("a table ([[service]])"),
                        );
                        None
                    }
                })
                .collect(),
            _ => {
                self.errors
                    .push(field.wrong_type("an array of tables ([[service]])"));
                Vec::new()
            }
        }
    }

    /// Resolve one service; `None` (with its errors recorded) if it is broken.
    fn service<'a>(
        &mut self,
        file: &'a SourceFile,
        table: &'a DeTable<'a>,
        defaults: &HashMap<&str, Field<'a>>,
    ) -> Option<Service> {
        let before = self.errors.len();
        let own = self.fields(file, table, SERVICE_KEYS, "[[service]]");
        let get = |k: &str| own.get(k).or_else(|| defaults.get(k)).copied();
        // Where the service starts: its first key.
        let origin = table
            .iter()
            .map(|(k, _)| k.span().start)
            .min()
            .map(|o| file.loc(o))
            .unwrap_or_else(|| Location::file(&file.path));
        let sink = Sink::default();

        let name = match get("name") {
            Some(f) => sink.ok(f.str().and_then(|s| valid_name(f, s))),
            None => sink.ok(Err(ConfigError::new(origin.clone(), "service has no name"))),
        };
        let label = name.map_or(String::new(), |n| format!(" \"{n}\"", n = quote(n)));
        let socket_field = get("socket");
        let seqpacket = socket_field.is_some_and(|f| f.str().is_ok_and(|s| s == "seqpacket"));
        let socket = socket_field.and_then(|f| {
            sink.ok(f.choice(&[
                ("stream", Protocol::Tcp),
                ("dgram", Protocol::Udp),
                ("seqpacket", Protocol::Tcp),
            ]))
        });
        // `protocol = "unix"` is `None` here: the socket type then says
        // stream or datagram.
        let proto = get("protocol").and_then(|f| {
            sink.ok(f.choice(&[
                ("tcp", Some(Protocol::Tcp)),
                ("udp", Some(Protocol::Udp)),
                ("unix", None),
            ]))
            .map(|p| (p, f))
        });
        let protocol = match (socket, proto) {
            (Some(s), Some((Some(p), f))) if s != p => {
                sink.ok::<()>(Err(f.err(format!(
                    "protocol {p} does not go with socket = \"{}\"",
                    match s {
                        _ if seqpacket => "seqpacket",
                        Protocol::Tcp => "stream",
                        Protocol::Udp => "dgram",
                    }
                ))));
                Protocol::Tcp
            }
            (_, Some((Some(p), _))) => p,
            (Some(s), _) => s,
            (None, _) => Protocol::Tcp,
        };
        let wait = match get("wait").map(|f| sink.ok(f.bool())) {
            Some(Some(true)) => WaitMode::Wait,
            _ => WaitMode::Nowait,
        };
        let unix_asked = matches!(proto, Some((None, _)));
        let listen: Vec<ListenKey> = match get("listen") {
            None => {
                sink.ok::<()>(Err(ConfigError::new(
                    origin.clone(),
                    format!("service{label} has no listen address"),
                )));
                Vec::new()
            }
            Some(f) => match sink.ok(f.strings()) {
                None => Vec::new(),
                Some(items) if items.is_empty() => {
                    sink.ok::<()>(Err(f.err("listen: the list is empty")));
                    Vec::new()
                }
                Some(items) => {
                    let paths = items.iter().filter(|(s, _)| s.starts_with('/')).count();
                    if paths > 0 && paths < items.len() {
                        sink.ok::<()>(Err(f.err(
                            "listen: a service listens on UNIX-domain paths or on IP \
                             addresses, not both",
                        )));
                    }
                    if let Some((Some(p), pf)) = proto.filter(|_| paths > 0) {
                        sink.ok::<()>(Err(pf.err(format!(
                            "protocol {p}: a listen path is a UNIX-domain socket; \
                             write protocol = \"unix\" (socket = \"stream\" or \"dgram\")"
                        ))));
                    }
                    items
                        .into_iter()
                        .filter_map(|(s, at)| {
                            let addr = if unix_asked || s.starts_with('/') {
                                parse_unix_path(s).inspect(|a| {
                                    if let Err(m) = self.unix_dirs(a) {
                                        sink.ok::<()>(Err(ConfigError::new(at.clone(), m)));
                                    }
                                })
                            } else {
                                parse_listen(s, protocol, &self.ctx.etc_services)
                            };
                            sink.ok(addr
                                .map(|addr| ListenKey {
                                    addr,
                                    protocol,
                                    seqpacket,
                                })
                                .map_err(|m| ConfigError::new(at, m)))
                        })
                        .collect()
                }
            },
        };
        let unix = listen
            .first()
            .is_some_and(|k| matches!(k.addr, BindAddr::Unix(_)));
        if unix {
            self.unix_rules(&get, &sink, protocol, wait, &origin, &label);
        } else if let Some(f) = socket_field.filter(|_| seqpacket && !listen.is_empty()) {
            sink.ok::<()>(Err(f.err(
                "socket: seqpacket is for UNIX-domain sockets only (over IP it needs SCTP, \
                 which oxinetd does not support)",
            )));
        } else if let Some(f) = get("socket_mode").or_else(|| get("socket_owner")) {
            if own.contains_key(f.key) {
                sink.ok::<()>(Err(f.err(format!(
                    "{}: only for UNIX-domain sockets (listen = [\"/path\"])",
                    f.key
                ))));
            }
        }
        let socket_file = if unix {
            self.socket_file(&get, &sink)
        } else {
            SocketFile::default()
        };
        // `server` first: an internal service needs no identity or argv.
        enum Server {
            Exec(PathBuf),
            Internal(Internal),
        }
        let server = match get("server") {
            None => sink.ok(Err(ConfigError::new(
                origin.clone(),
                format!("service{label} has no server"),
            ))),
            Some(f) => sink.ok(f.str().and_then(|s| match s.strip_prefix("internal:") {
                Some(n) => Internal::from_name(n).map(Server::Internal).ok_or_else(|| {
                    let names: Vec<&str> = Internal::ALL.iter().map(|i| i.name()).collect();
                    f.err(format!(
                        "server: no internal service \"{n}\" (there are {})",
                        names.join(", ")
                    ))
                }),
                None => check_server(f, s, &mut self.programs).map(Server::Exec),
            })),
        };
        let internal = matches!(server, Some(Server::Internal(_)));
        if internal {
            // Keys that only mean something for a program, set on the
            // service itself ([defaults] may well hold them for others).
            for key in [
                "user", "group", "groups", "args", "argv0", "env", "passenv", "stderr",
            ] {
                if let Some(f) = own.get(key) {
                    sink.ok::<()>(Err(ConfigError::new(
                        f.file.loc(f.value.span().start),
                        format!("{key}: has no meaning for an internal service (it runs inside oxinetd)"),
                    )));
                }
            }
        }
        let user = get("user").and_then(|f| sink.ok(f.str()).map(|s| (s, f)));
        let group = get("group").and_then(|f| sink.ok(f.str()).map(|s| (s, f)));
        let identity = if internal {
            Some(Identity::Inherit)
        } else {
            let groups = get("groups").and_then(|f| sink.ok(f.bool()));
            let key = (
                user.map(|(s, _)| s.to_owned()),
                group.map(|(s, _)| s.to_owned()),
                groups.unwrap_or(true),
            );
            let (euid, egid) = (self.ctx.euid, self.ctx.egid);
            let resolved = self
                .identities
                .entry(key)
                .or_insert_with_key(|(u, g, sup)| {
                    Identity::resolve(u.as_deref(), g.as_deref(), *sup, euid, egid)
                })
                .clone();
            sink.ok(resolved.map_err(|m| {
                let at = match (user, group) {
                    (_, Some((_, g))) if m.contains("group") => g.loc(),
                    (Some((_, u)), _) => u.loc(),
                    _ => origin.clone(),
                };
                ConfigError::new(at, format!("service{label}: {m}"))
            }))
        };
        let argv0 = match (get("argv0"), &server) {
            (Some(f), _) => sink.ok(f.str().map(str::to_owned)),
            (None, Some(Server::Exec(p))) => Some(
                p.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            ),
            (None, _) => Some(String::new()),
        };
        let args: Vec<String> = get("args")
            .and_then(|f| sink.ok(f.list()))
            .map(|v| v.into_iter().map(|(s, _)| s.to_owned()).collect())
            .unwrap_or_default();
        let mut env: Vec<(String, String)> = Vec::new();
        if let Some(f) = get("env") {
            for (k, v) in sink.ok(f.string_table()).unwrap_or_default() {
                if crate::spawn::RESERVED_ENV.contains(&k) {
                    sink.ok::<()>(Err(f.err(format!(
                        "env: \"{k}\" is set by oxinetd for each connection"
                    ))));
                } else if valid_env_name(k) && !v.contains('\0') {
                    env.push((k.to_owned(), v.to_owned()));
                } else {
                    sink.ok::<()>(Err(f.err(format!(
                        "env: \"{k}\" is not a valid variable",
                        k = quote(k)
                    ))));
                }
            }
        }
        if let Some(f) = get("passenv") {
            for (k, at) in sink.ok(f.list()).unwrap_or_default() {
                if !valid_env_name(k) {
                    sink.ok::<()>(Err(ConfigError::new(
                        at,
                        format!(
                            "passenv: \"{k}\" is not a valid variable name",
                            k = quote(k)
                        ),
                    )));
                    continue;
                }
                let found = self.ctx.env.iter().find(|(n, _)| n.to_str() == Some(k));
                if let Some(v) = found.and_then(|(_, v)| v.to_str()) {
                    env.retain(|(n, _)| n != k);
                    env.push((k.to_owned(), v.to_owned()));
                }
            }
        }
        let stderr = get("stderr")
            .and_then(|f| {
                sink.ok(f.choice(&[
                    ("log", StderrMode::Log),
                    ("null", StderrMode::Null),
                    ("socket", StderrMode::Socket),
                ]))
            })
            .unwrap_or(StderrMode::Log);
        let policy = self.policy(&get, &sink);
        if let Some(f) = get("args") {
            if args.iter().any(|a| a.contains('\0')) {
                sink.ok::<()>(Err(f.err("args: an argument contains a NUL byte")));
            }
        }

        self.errors.append(&mut sink.0.into_inner());
        if self.errors.len() > before {
            return None;
        }
        let (Some(name), Some(identity), Some(server), Some(argv0)) =
            (name, identity, server, argv0)
        else {
            return None;
        };
        let (access, banner_fail, limits, log) = policy;
        let handler = match server {
            Server::Internal(i) => Handler::Internal(i),
            Server::Exec(server) => {
                let mut argv = Vec::with_capacity(args.len() + 1);
                argv.push(argv0);
                argv.extend(args);
                Handler::Exec { server, argv }
            }
        };
        Some(Service {
            name: name.to_owned(),
            origin,
            listen,
            protocol,
            wait,
            identity,
            handler,
            env,
            stderr,
            access,
            banner_fail,
            limits,
            log,
            socket_file,
        })
    }

    /// What a UNIX-domain service may not ask for: rules about IP
    /// addresses, which a local peer does not have, and replies to a
    /// datagram's sender, which usually has no address to reply to.
    fn unix_rules<'a>(
        &self,
        get: &impl Fn(&str) -> Option<Field<'a>>,
        sink: &Sink,
        protocol: Protocol,
        wait: WaitMode,
        origin: &Location,
        label: &str,
    ) {
        for key in ["only_from", "no_access", "access_times", "per_source"] {
            if let Some(f) = get(key) {
                sink.ok::<()>(Err(f.err(format!(
                    "{key}: not for a UNIX-domain socket (a local peer has no address; \
                     the socket file's owner and socket_mode decide who may connect)"
                ))));
            }
        }
        if let Some(f) = get("server") {
            if f.str().is_ok_and(|s| s.starts_with("internal:")) {
                sink.ok::<()>(Err(
                    f.err("server: internal services listen on IP addresses only")
                ));
            }
        }
        if protocol == Protocol::Udp && wait == WaitMode::Nowait {
            sink.ok::<()>(Err(ConfigError::new(
                origin.clone(),
                format!(
                    "service{label}: a UNIX-domain datagram service must be wait = true \
                     (its handler reads the socket itself)"
                ),
            )));
        }
    }

    /// A UNIX-domain path whose directories only root can change
    /// (`sockdir`: oxinetd chowns and chmods the file it binds there).
    fn unix_dirs(&self, addr: &BindAddr) -> Result<(), String> {
        match addr {
            BindAddr::Unix(p) => crate::sockdir::check(p, self.ctx.euid)
                .map_err(|m| format!("listen \"{}\": {m}", p.display())),
            _ => Ok(()),
        }
    }

    /// `socket_mode` and `socket_owner` of a UNIX-domain service.
    fn socket_file<'a>(&self, get: &impl Fn(&str) -> Option<Field<'a>>, sink: &Sink) -> SocketFile {
        let mut file = SocketFile::default();
        if let Some(f) = get("socket_mode") {
            let mode = match f.value.get_ref() {
                DeValue::Integer(_) => f.int(0, 0o777).ok().map(|m| m as u32),
                DeValue::String(s) => u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o777),
                _ => None,
            };
            match mode {
                Some(m) => file.mode = m,
                None => {
                    sink.ok::<()>(Err(
                        f.err("socket_mode: expected an octal mode such as \"0660\" or 0o660")
                    ));
                }
            }
        }
        if let Some(f) = get("socket_owner") {
            if let Some(spec) = sink.ok(f.str()) {
                let euid = self.ctx.euid;
                file.owner = sink.ok(crate::privilege::lookup_owner(spec)
                    .and_then(|(uid, gid)| {
                        if euid == 0 || uid == euid {
                            Ok((uid, gid))
                        } else {
                            Err(format!(
                                "\"{spec}\": oxinetd is not running as root, so the \
                                     socket can only be its own user's"
                            ))
                        }
                    })
                    .map_err(|m| f.err(format!("socket_owner: {m}"))));
            }
        }
        file
    }

    /// Access rules, limits and log fields of a service.
    fn policy<'a>(
        &self,
        get: &dyn Fn(&str) -> Option<Field<'a>>,
        sink: &Sink,
    ) -> (Access, Option<Vec<u8>>, Limits, LogFields) {
        let mut access = Access::default();
        if let Some(f) = get("only_from") {
            access.only_from = sink.many(f.each(Cidr::parse));
        }
        if let Some(f) = get("no_access") {
            access.no_access = sink.many(f.each(Cidr::parse)).unwrap_or_default();
        }
        if let Some(f) = get("access_times") {
            access.times = sink.many(f.each(Window::parse)).unwrap_or_default();
        }
        let banner_fail =
            get("banner_fail").and_then(|f| sink.ok(f.str().and_then(|s| read_banner(f, s))));
        let mut limits = Limits::default();
        if let Some(f) = get("instances") {
            limits.instances = sink.ok(f.int(1, 1_000_000)).map(|n| n as usize);
        }
        if let Some(f) = get("per_source") {
            limits.per_source = sink.ok(f.int(1, 1_000_000)).map(|n| n as usize);
        }
        if let Some(f) = get("per_source_prefix") {
            limits.per_source_prefix = sink.ok(f.int(1, 128)).map_or(64, |n| n as u8);
        }
        if let Some(f) = get("reply_rate") {
            limits.reply_rate = sink
                .ok(f.int(1, 100_000_000))
                .map_or(limits.reply_rate, |n| n as u32);
        }
        if let Some(f) = get("idle_timeout") {
            limits.idle_timeout = sink
                .ok(f.seconds())
                .unwrap_or(crate::limits::DEFAULT_IDLE_TIMEOUT);
        }
        if let Some(f) = get("peer_reply_rate") {
            limits.peer_reply_rate = sink
                .ok(f.int(1, 100_000_000))
                .map_or(limits.peer_reply_rate, |n| n as u32);
        }
        if let Some(f) = get("cps") {
            limits.rate = sink.ok(rate(f, false));
        }
        if let Some(f) = get("rate") {
            if get("cps").is_some() {
                sink.ok::<()>(Err(f.err("rate: cps is set too; keep one of them")));
            }
            limits.rate = sink.ok(rate(f, true));
        }
        let mut log = LogFields::default();
        if let Some(f) = get("log_on_success") {
            if let Some(words) = sink.many(f.each(|w| word(w, &LogFields::SUCCESS))) {
                log.pid = words.contains(&"PID");
                log.host = words.contains(&"HOST");
                log.exit = words.contains(&"EXIT");
                log.duration = words.contains(&"DURATION");
                log.traffic = words.contains(&"TRAFFIC");
            }
        }
        if let Some(f) = get("log_on_failure") {
            if let Some(words) = sink.many(f.each(|w| word(w, &LogFields::FAILURE))) {
                log.fail_host = words.contains(&"HOST");
                log.attempt = words.contains(&"ATTEMPT");
            }
        }
        (access, banner_fail, limits, log)
    }
}

/// Collects the errors of one service while it is resolved, so every
/// problem is reported, not only the first.
#[derive(Default)]
struct Sink(std::cell::RefCell<Vec<ConfigError>>);

impl Sink {
    fn ok<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.0.borrow_mut().push(e)).ok()
    }

    fn many<T>(&self, r: Result<T, Vec<ConfigError>>) -> Option<T> {
        r.map_err(|e| self.0.borrow_mut().extend(e)).ok()
    }
}

/// `cps = [COUNT, PAUSE]` (a one-second window) or
/// `rate = [COUNT, WINDOW, PAUSE]`.
fn rate(f: Field<'_>, windowed: bool) -> Result<Rate, ConfigError> {
    let bad = || {
        f.err(if windowed {
            "rate: expected [COUNT, WINDOW_SECONDS, PAUSE_SECONDS], e.g. [256, 60, 600]"
        } else {
            "cps: expected [COUNT, SECONDS], e.g. [50, 10]"
        })
    };
    let DeValue::Array(items) = f.value.get_ref() else {
        return Err(bad());
    };
    let (count, per, pause) = match &items[..] {
        [count, pause] if !windowed => (count, None, pause),
        [count, per, pause] if windowed => (count, Some(per), pause),
        _ => return Err(bad()),
    };
    let count = Field { value: count, ..f }
        .int(1, 1_000_000)
        .map_err(|_| bad())?;
    let per = match per {
        Some(per) => Field { value: per, ..f }.seconds().map_err(|_| bad())?,
        None => Duration::from_secs(1),
    };
    if per.is_zero() {
        return Err(bad());
    }
    let pause = Field { value: pause, ..f }.seconds().map_err(|_| bad())?;
    Ok(Rate {
        count: count as u32,
        per,
        pause,
    })
}

/// A log field name from `known`, any case.
fn word(w: &str, known: &[&'static str]) -> Result<&'static str, String> {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(w))
        .copied()
        .ok_or_else(|| format!("\"{w}\" is not one of {}", known.join(", "), w = quote(w)))
}

/// The contents of a banner file (relative paths from the config's
/// directory), read once at load so a refusal costs no file I/O.
fn read_banner(f: Field<'_>, s: &str) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const MAX_BANNER: u64 = 64 * 1024;
    let dir = f.file.path.parent().unwrap_or(Path::new("."));
    let path = dir.join(s);
    let failed = |e: &std::io::Error| {
        f.err(format!(
            "banner_fail \"{s}\": {}",
            io_problem(e),
            s = quote(s)
        ))
    };
    // Checked and read through one descriptor (non-blocking: a FIFO does
    // not wait for a writer), at most the limit, whatever the name becomes.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| failed(&e))?;
    if !file.metadata().map_err(|e| failed(&e))?.is_file() {
        return Err(f.err(format!(
            "banner_fail \"{s}\": not a regular file",
            s = quote(s)
        )));
    }
    let mut banner = Vec::new();
    file.take(MAX_BANNER + 1)
        .read_to_end(&mut banner)
        .map_err(|e| failed(&e))?;
    if banner.len() as u64 > MAX_BANNER {
        return Err(f.err(format!(
            "banner_fail \"{s}\": larger than 64 KiB",
            s = quote(s)
        )));
    }
    Ok(banner)
}

fn valid_name<'a>(f: Field<'_>, s: &'a str) -> Result<&'a str, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(f.err(format!(
            "name \"{s}\": use 1-64 letters, digits, '-', '_', '.' or '@' (it appears in logs)"
        )))
    }
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The server as an absolute path (relative ones are taken from the config
/// file's directory), checked to be an executable regular file (once per
/// path: `checked`). Messages quote the path as written.
fn check_server(
    f: Field<'_>,
    s: &str,
    checked: &mut HashMap<PathBuf, Option<String>>,
) -> Result<PathBuf, ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    if s.is_empty() || s.contains('\0') {
        return Err(f.err("server: expected a path to a program"));
    }
    let written = Path::new(s);
    let (path, note) = if written.is_absolute() {
        (written.to_path_buf(), "")
    } else {
        let dir = f.file.path.parent().unwrap_or(Path::new("."));
        let joined = dir.join(written);
        (
            std::path::absolute(&joined).unwrap_or(joined),
            " (relative to the config file's directory)",
        )
    };
    let problem =
        checked
            .entry(path.clone())
            .or_insert_with_key(|path| match std::fs::metadata(path) {
                Err(e) => Some(io_problem(&e)),
                Ok(m) if !m.is_file() => Some("not a regular file".to_string()),
                Ok(m) if m.permissions().mode() & 0o111 == 0 => Some("not executable".to_string()),
                Ok(_) => None,
            });
    match problem {
        None => Ok(path),
        Some(problem) => Err(f.err(format!("server \"{s}\"{note}: {problem}", s = quote(s)))),
    }
}

/// An I/O error as its plain description ("No such file or directory").
fn io_problem(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(
        || e.to_string(),
        |n| nix::errno::Errno::from_raw(n).desc().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_locations_match_a_scan() {
        let text = "a = 1\nbé = 2\n\n[x]\nc = \"é\"".to_owned();
        let file = SourceFile::new(Path::new("f.toml"), text.clone(), true);
        for offset in 0..=text.len() + 3 {
            if text.is_char_boundary(offset.min(text.len())) {
                assert_eq!(
                    file.loc(offset),
                    Location::at(Path::new("f.toml"), &text, offset),
                    "offset {offset}"
                );
            }
        }
    }
}
