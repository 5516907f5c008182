//! The xinetd front-end: `defaults {}`, `service NAME {}`, `include` and
//! `includedir`, with the `=`, `+=` and `-=` operators, translated to TOML
//! service keys (see `draft`) per xinetd.conf(5).
//!
//! xinetd's implicit defaults are written out explicitly (`cps = [50, 10]`,
//! no instance limit, no supplementary groups, IPv4 unless `flags = IPv6`),
//! so a migrated service behaves as it did. An attribute oxinetd does not
//! support is a warning and the service still runs, unless ignoring it would
//! weaken security (an address restriction, an identity check, a sensor):
//! then that service is refused, loudly, and the others run. `redirect`
//! becomes `forward` (oxinetd relays the connection itself).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::classic::{listen_entry, resolve_host, Translation};
use super::error::quote;
use super::raw::{Draft, Key, Value};
use super::source::{Entry, Sources};
use super::{ConfigError, Diagnostic, Location};
use crate::internal::Internal;

/// Files and directories `include`/`includedir` may nest. Cycles are found
/// by `Sources`, not by this.
const MAX_DEPTH: usize = 8;

/// One `attr op values` line.
#[derive(Debug, Clone)]
struct Attr {
    name: String,
    op: Op,
    values: Vec<String>,
    at: Location,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Add,
    Remove,
}

/// A `defaults` or `service NAME` block.
#[derive(Debug)]
struct Block {
    service: Option<String>,
    at: Location,
    attrs: Vec<Attr>,
}

/// Translate `path`: an xinetd.conf, one service file, or an xinetd.d
/// directory.
pub fn translate(path: &Path) -> Translation {
    let mut r = Reader::default();
    if path.is_dir() {
        r.include_dir(path, None);
    } else {
        r.read_file(path, None);
    }
    r.finish()
}

/// Translate `text` as if read from `path` (includes are followed).
#[cfg(any(test, fuzzing))]
pub fn translate_text(path: &Path, text: &str) -> Translation {
    let mut r = Reader::default();
    r.parse(path, text);
    r.finish()
}

/// The services of the blocks read, `defaults` applied; a service named in
/// defaults' `disabled` (or missing from a non-empty `enabled`) is written
/// but not run.
fn build(blocks: &[Block], mut t: Translation) -> Translation {
    let mut defaults: Vec<Attr> = Vec::new();
    for b in blocks.iter().filter(|b| b.service.is_none()) {
        defaults.extend(b.attrs.iter().cloned());
    }
    let enabled = list_of(&defaults, "enabled");
    let disabled = list_of(&defaults, "disabled");
    global_settings(&defaults, &mut t);
    for b in blocks {
        let Some(name) = &b.service else { continue };
        let attrs = effective(b, &defaults);
        let id = attrs.get("id").and_then(|(v, _)| v.first()).unwrap_or(name);
        let off = match attrs
            .get("disable")
            .and_then(|(v, at)| Some((v.first()?, at)))
        {
            Some((yes, at)) if yes == "yes" => Some(format!("disable = yes at line {}", at.line)),
            _ if disabled
                .iter()
                .any(|n| same_name(n, id) || same_name(n, name)) =>
            {
                Some("listed in defaults' disabled/enabled".to_owned())
            }
            _ if !enabled.is_empty()
                && !enabled
                    .iter()
                    .any(|n| same_name(n, id) || same_name(n, name)) =>
            {
                Some("listed in defaults' disabled/enabled".to_owned())
            }
            _ => None,
        };
        // A disabled service is written out (commented) but never run: what
        // it names, and what oxinetd could not make of it, is no problem of
        // the config, only a note in its import.
        let mut own = Translation::default();
        let translated = service(name, b, &defaults, &mut own);
        match (translated, off) {
            (Ok(mut d), Some(why)) => {
                d.disabled = Some(why);
                t.services.push(d);
            }
            (Ok(d), None) => {
                t.diagnostics.append(&mut own.diagnostics);
                t.services.push(d);
            }
            (Err(p), Some(why)) => {
                let mut d = Draft::new(b.at.clone());
                d.set("name", Value::Str(id.clone()), &b.at);
                d.note(
                    &p.problem.at,
                    format!("not convertible: {}", p.problem.message),
                );
                d.disabled = Some(why);
                t.services.push(d);
            }
            (Err(p), None) => {
                t.diagnostics.append(&mut own.diagnostics);
                t.report(p);
            }
        }
    }
    t.finish();
    t
}

/// Two service names or ids are the same to xinetd (strcasecmp).
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The values of a defaults list attribute, if set (`enabled`, `disabled`).
fn list_of(defaults: &[Attr], name: &str) -> Vec<String> {
    defaults
        .iter()
        .filter(|a| a.name == name)
        .flat_map(|a| a.values.iter().cloned())
        .collect()
}

/// Reading one configuration: the blocks of every file read so far, in
/// order, the files entered (once each, see `Sources`), and the problems.
#[derive(Default)]
struct Reader {
    sources: Sources,
    blocks: Vec<Block>,
    t: Translation,
}

/// Where the reading of one file stands between two lines.
#[derive(Default)]
struct FileState {
    /// The block being filled, until its `}`.
    open: Option<Block>,
    /// A `defaults` or `service NAME` line waiting for its `{`.
    pending: Option<(Option<String>, Location)>,
}

impl Reader {
    /// Translate the blocks read.
    fn finish(mut self) -> Translation {
        let mut cycle = Vec::new();
        self.sources.finish(&mut cycle);
        cycle.into_iter().for_each(|e| self.t.error(e));
        build(&self.blocks, self.t)
    }

    /// Read `path`, included at `at` (`None`: named on the command line),
    /// once per load (see `Sources`).
    fn read_file(&mut self, path: &Path, at: Option<&Location>) {
        let mut unread = Vec::new();
        let entry = self.sources.enter(path, at, &mut unread);
        unread.into_iter().for_each(|e| self.t.error(e));
        let text = match entry {
            Entry::Read(text) => text,
            Entry::Skip => return,
        };
        self.t.sources.push(path.to_path_buf());
        self.parse(path, &text);
        self.sources.leave();
    }

    /// xinetd's rule: skip names with a '.' or ending in '~' (package backups).
    fn include_dir(&mut self, dir: &Path, at: Option<&Location>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.t.error(ConfigError::new(
                    Location::file(dir),
                    format!("unable to read directory: {e}"),
                ));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
                p.is_file() && !name.contains('.') && !name.ends_with('~')
            })
            .collect();
        files.sort();
        for f in files {
            self.read_file(&f, at);
        }
    }

    /// The lines of `file`, without comments; a block left open at its end
    /// is an error.
    fn parse(&mut self, file: &Path, text: &str) {
        let mut state = FileState::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let indent = raw.len() - raw.trim_start().len();
            let at = Location {
                file: file.to_path_buf(),
                line: i + 1,
                col: raw.get(..indent).map_or(0, |s| s.chars().count()) + 1,
            };
            self.line(file, line, at, &mut state);
        }
        if let Some(b) = state.open {
            self.t.error(ConfigError::new(
                b.at,
                "this block has no closing \"}\"".to_owned(),
            ));
        }
        if let Some((_, at)) = state.pending {
            self.t.error(brace_expected(at));
        }
    }

    /// One line with something on it: an attribute of the open block, or
    /// the start of a block, or an include.
    fn line(&mut self, file: &Path, line: &str, at: Location, state: &mut FileState) {
        if let Some((_, header_at)) = state.pending.as_ref().filter(|_| !line.starts_with('{')) {
            self.t.error(brace_expected(header_at.clone()));
            state.pending = None;
        }
        if let Some(mut block) = state.open.take() {
            if line == "}" {
                self.blocks.push(block);
                return;
            }
            match attr_line(line, &at) {
                Ok(a) => block.attrs.push(a),
                Err(m) => self.t.error(ConfigError::new(at, m)),
            }
            state.open = Some(block);
        } else if line.ends_with('{') {
            self.open_block(line, at, state);
        } else {
            self.directive(file, line, at, state);
        }
    }

    /// A line ending in `{`: the header is on it (`service x {`) or is the
    /// pending one from the line before.
    fn open_block(&mut self, line: &str, at: Location, state: &mut FileState) {
        let head = line.trim_end_matches('{').trim();
        let header = if head.is_empty() {
            state.pending.take()
        } else {
            block_header(head, &at)
                .map_err(|m| self.t.error(ConfigError::new(at.clone(), m)))
                .ok()
        };
        match header {
            Some((service, at)) => {
                state.open = Some(Block {
                    service,
                    at,
                    attrs: Vec::new(),
                })
            }
            None if head.is_empty() => self.t.error(ConfigError::new(
                at,
                "\"{\" without a service or defaults line before it".to_owned(),
            )),
            None => {}
        }
    }

    /// `include FILE`, `includedir DIR` (relative to `file`), or a block
    /// header whose `{` is expected on the next line.
    fn directive(&mut self, file: &Path, line: &str, at: Location, state: &mut FileState) {
        let mut words = line.split_whitespace();
        // xinetd compares keywords with strcasecmp.
        let first = words.next().map(str::to_ascii_lowercase);
        match (first.as_deref(), words.next(), words.next()) {
            (Some("include" | "includedir"), Some(f), None) if self.sources.depth() > MAX_DEPTH => {
                self.t.error(ConfigError::new(
                    at,
                    format!("{}: includes nested more than {MAX_DEPTH} deep", quote(f)),
                ));
            }
            (Some("include"), Some(f), None) => self.read_file(&relative(file, f), Some(&at)),
            (Some("includedir"), Some(d), None) => self.include_dir(&relative(file, d), Some(&at)),
            _ => match block_header(line, &at) {
                Ok(h) => state.pending = Some(h),
                Err(m) => self.t.error(ConfigError::new(at, m)),
            },
        }
    }
}

/// A header line not followed by its `{`.
fn brace_expected(header: Location) -> ConfigError {
    ConfigError::new(
        header,
        "expected \"{\" on the line after this one".to_owned(),
    )
}

/// An include's target, relative to the file that names it.
fn relative(file: &Path, target: &str) -> PathBuf {
    file.parent().unwrap_or(Path::new(".")).join(target)
}

/// `defaults` or `service NAME`.
fn block_header(line: &str, at: &Location) -> Result<(Option<String>, Location), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let keyword = words.first().map(|w| w.to_ascii_lowercase());
    match (keyword.as_deref(), &words[..]) {
        (Some("defaults"), [_]) => Ok((None, at.clone())),
        (Some("service"), [_, name]) => Ok((Some((*name).to_owned()), at.clone())),
        (Some("service"), [_]) => Err("service: a name is missing".to_owned()),
        _ => Err(format!(
            "expected \"defaults\", \"service NAME\", \"include FILE\" or \"includedir DIR\", found \"{line}\""
        , line = quote(line))),
    }
}

/// `ATTRIBUTE op VALUES...`, op being `=`, `+=` or `-=`.
fn attr_line(line: &str, at: &Location) -> Result<Attr, String> {
    let (name, op, rest) = if let Some((n, r)) = line.split_once("+=") {
        (n, Op::Add, r)
    } else if let Some((n, r)) = line.split_once("-=") {
        (n, Op::Remove, r)
    } else if let Some((n, r)) = line.split_once('=') {
        (n, Op::Set, r)
    } else {
        return Err(format!(
            "expected ATTRIBUTE = VALUE, found \"{line}\"",
            line = quote(line)
        ));
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!(
            "\"{name}\": not an attribute name",
            name = quote(name)
        ));
    }
    // xinetd finds attributes, and the values that are keywords, with
    // strcasecmp: `Socket_Type = STREAM` is `socket_type = stream`.
    let name = name.to_ascii_lowercase();
    let mut values: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
    keyword_case(&name, &mut values);
    Ok(Attr {
        name,
        op,
        values,
        at: at.clone(),
    })
}

/// The values of `attr` that xinetd reads as keywords (ignoring their
/// case), written as this front-end compares them: `yes`/`no`, socket
/// types and protocols in lower case; `type`, `flags`, the log words,
/// `UNLIMITED` and `log_type`'s `SYSLOG`/`FILE` in upper case, a syslog
/// facility and level in lower case. Other values (paths, arguments,
/// names) keep their case.
fn keyword_case(attr: &str, values: &mut [String]) {
    match attr {
        "socket_type" | "protocol" | "wait" | "groups" | "disable" | "v6only" | "mdns" => {
            values.iter_mut().for_each(|v| v.make_ascii_lowercase());
        }
        "type" | "flags" | "log_on_success" | "log_on_failure" => {
            values.iter_mut().for_each(|v| v.make_ascii_uppercase());
        }
        "log_type" => {
            if let Some((kind, rest)) = values.split_first_mut() {
                kind.make_ascii_uppercase();
                if kind == "SYSLOG" {
                    rest.iter_mut().for_each(|v| v.make_ascii_lowercase());
                }
            }
        }
        _ if attr == "instances" || attr == "per_source" || attr.starts_with("rlimit_") => {
            for v in values.iter_mut() {
                if v.eq_ignore_ascii_case("UNLIMITED") {
                    v.make_ascii_uppercase();
                }
            }
        }
        _ => {}
    }
}

/// `log_type = SYSLOG facility [level]` in defaults becomes `[global]
/// syslog_facility` (oxinetd gives each event its own level: connections
/// `info`, so another level is warned about). `log_type = FILE path ...`
/// is not supported: oxinetd logs to syslog or stderr, never to a file of
/// its own; a warning names the setting and the file.
fn global_settings(defaults: &[Attr], t: &mut Translation) {
    for a in defaults.iter().filter(|a| a.name == "log_type") {
        let setting = format!("defaults: log_type = {}", a.values.join(" "));
        match a.values.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["SYSLOG", facility, ref level @ ..] => {
                t.global.push((
                    "syslog_facility",
                    Value::Str(facility.to_owned()),
                    a.at.clone(),
                ));
                if let [level] = level {
                    if *level != "info" {
                        t.warning(ConfigError::new(
                            a.at.clone(),
                            format!(
                                "{setting}: the level {level} is ignored: oxinetd logs connections at info, problems at warning and err"
                            ),
                        ));
                    }
                }
            }
            ["FILE", file, ..] => t.warning(ConfigError::new(
                a.at.clone(),
                format!(
                    "{setting}: logging to a file is not supported: oxinetd logs to syslog (facility daemon) or to stderr, not to {file}; ignored"
                ),
            )),
            _ => t.warning(ConfigError::new(
                a.at.clone(),
                format!("{setting}: expected SYSLOG facility [level] or FILE path; ignored"),
            )),
        }
    }
}

/// The effective attributes of a service: defaults, then its own lines
/// applied with their operators.
fn effective(b: &Block, defaults: &[Attr]) -> BTreeMap<String, (Vec<String>, Location)> {
    let mut map: BTreeMap<String, (Vec<String>, Location)> = BTreeMap::new();
    let inherited = defaults
        .iter()
        .filter(|a| !DEFAULTS_ONLY.contains(&a.name.as_str()));
    for a in inherited.chain(b.attrs.iter()) {
        let entry = map
            .entry(a.name.clone())
            .or_insert_with(|| (Vec::new(), a.at.clone()));
        match a.op {
            Op::Set => *entry = (a.values.clone(), a.at.clone()),
            Op::Add => {
                entry.0.extend(a.values.iter().cloned());
                entry.1 = a.at.clone();
            }
            Op::Remove => entry.0.retain(|v| !a.values.contains(v)),
        }
    }
    map
}

/// Attributes of `defaults` that are not inherited by services.
const DEFAULTS_ONLY: &[&str] = &["log_type", "enabled", "disabled", "max_load"];

/// Attributes that are ignored with a warning: the service still runs.
const WARN_ONLY: &[(&str, &str)] = &[
    ("banner", "no equivalent yet"),
    ("banner_success", "no equivalent yet"),
    (
        "rlimit_rss",
        "Linux does not enforce RLIMIT_RSS (rlimit_as or rlimit_data limit memory)",
    ),
    ("max_load", "no equivalent"),
    (
        "deny_time",
        "no equivalent (it only applies to SENSOR services)",
    ),
    ("mdns", "no equivalent"),
    (
        "libwrap",
        "oxinetd does not read tcp_wrappers files; use only_from/no_access",
    ),
    (
        "log_type",
        "oxinetd has one log for every service (log_type in defaults sets its syslog facility)",
    ),
];

/// Attributes whose absence would weaken security: the service is refused.
const REFUSE: &[(&str, &str)] = &[
    ("rpc_version", "RPC services are not supported"),
    ("rpc_number", "RPC services are not supported"),
];

/// Translate one `service` block, `defaults` applied: each concern in turn,
/// in the order its keys are written. Warnings go to `t`; a refused or
/// malformed service is the `Err`, checked in this order.
fn service(
    name: &str,
    b: &Block,
    defaults: &[Attr],
    t: &mut Translation,
) -> Result<Draft, Diagnostic> {
    let mut s = ServiceDraft {
        attrs: Attrs {
            name,
            block: b,
            map: effective(b, defaults),
        },
        d: Draft::new(b.at.clone()),
        t,
    };
    s.refused_and_ignored()?;
    s.flags()?;
    s.name();
    let kind = s.attrs.kind()?;
    s.socket()?;
    s.listen(kind.unlisted)?;
    s.socket_options();
    let redirect = s.attrs.map.contains_key("redirect");
    if redirect {
        s.redirect()?;
    } else if kind.internal {
        s.builtin()?;
    } else {
        s.server_and_wait()?;
        s.identity();
        s.arguments()?;
        s.environment()?;
        s.d.set("stderr", Value::Str("socket".to_owned()), &b.at);
    }
    s.access()?;
    s.limits()?;
    if !kind.internal && !redirect {
        s.confinement()?;
    }
    s.logging();
    if redirect {
        s.not_needed(FORWARD_NOTE);
    } else if kind.internal {
        s.not_needed(INTERNAL_NOTE);
    }
    Ok(s.d)
}

/// The effective attributes of one service (see `effective`), and the
/// problems they raise, named after the service.
struct Attrs<'a> {
    /// The name after `service`.
    name: &'a str,
    block: &'a Block,
    map: BTreeMap<String, (Vec<String>, Location)>,
}

/// What `type` says.
struct Kind {
    /// INTERNAL: a service built into oxinetd, found by the service name.
    internal: bool,
    /// UNLISTED: not in /etc/services, so `port` is required.
    unlisted: bool,
}

impl Attrs<'_> {
    /// The first value of `key`, and where it was set.
    fn one(&self, key: &str) -> Option<(&str, &Location)> {
        self.map
            .get(key)
            .and_then(|(v, at)| v.first().map(|s| (s.as_str(), at)))
    }

    /// All the values of `key` (none when unset).
    fn values(&self, key: &str) -> &[String] {
        self.map.get(key).map_or(&[], |(v, _)| v)
    }

    /// Where `key` was set, or the service's header when it was not.
    fn at(&self, key: &str) -> &Location {
        self.map.get(key).map_or(&self.block.at, |(_, at)| at)
    }

    /// Whether `flags` holds `flag` (xinetd ignores their case).
    fn flag(&self, flag: &str) -> bool {
        self.values("flags")
            .iter()
            .any(|x| x.eq_ignore_ascii_case(flag))
    }

    /// Where a setting was made: this service, or `defaults` (so a setting
    /// of `defaults` is warned about once, not once per service).
    fn whose(&self, at: &Location) -> String {
        if self.block.attrs.iter().any(|a| a.at == *at) {
            format!("service {name}", name = quote(self.name))
        } else {
            "defaults".to_owned()
        }
    }

    /// The warning for a setting at `at` that is ignored.
    fn ignored(&self, at: &Location, what: &str) -> ConfigError {
        ConfigError::new(at.clone(), format!("{}: {what}; ignored", self.whose(at)))
    }

    /// The service asks for something oxinetd cannot do (safely): it is not
    /// run, the others are.
    fn refuse(&self, at: &Location, m: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::skipped(ConfigError::new(
            at.clone(),
            format!(
                "service {name}: {m}; service not run",
                name = quote(self.name)
            ),
        ))
    }

    /// The service is malformed.
    fn invalid(&self, at: &Location, m: impl std::fmt::Display) -> Diagnostic {
        Diagnostic::error(ConfigError::new(
            at.clone(),
            format!("service {name}: {m}", name = quote(self.name)),
        ))
    }

    /// `type`: INTERNAL and UNLISTED are understood; RPC or any other type
    /// refuses the service.
    fn kind(&self) -> Result<Kind, Diagnostic> {
        let types = self.values("type");
        let at = self.at("type");
        for ty in types {
            match ty.as_str() {
                "INTERNAL" | "UNLISTED" => {}
                "RPC" => return Err(self.refuse(at, "type RPC is not supported")),
                other => {
                    return Err(self.refuse(
                        at,
                        format!("type {other} is not supported", other = quote(other)),
                    ))
                }
            }
        }
        Ok(Kind {
            internal: types.iter().any(|t| t == "INTERNAL"),
            unlisted: types.iter().any(|t| t == "UNLISTED"),
        })
    }

    /// A `*_limit`-like number (`instances`, `per_source`): `None` when
    /// unset or UNLIMITED.
    fn limit(&self, key: &str) -> Result<Option<(i64, &Location)>, Diagnostic> {
        match self.one(key) {
            None | Some(("UNLIMITED", _)) => Ok(None),
            Some((n, at)) => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| Some((n, at)))
                .ok_or_else(|| {
                    self.invalid(
                        at,
                        format!(
                            "{key} = {n}: expected a number or UNLIMITED",
                            key = quote(key),
                            n = quote(n)
                        ),
                    )
                }),
        }
    }
}

/// One service being translated: its attributes, the draft built from
/// them, and the translation that collects the warnings.
struct ServiceDraft<'a> {
    attrs: Attrs<'a>,
    d: Draft,
    t: &'a mut Translation,
}

impl ServiceDraft<'_> {
    /// Attributes that refuse the service (`REFUSE`), that are ignored with
    /// a warning (`WARN_ONLY`), or that are unknown. What is ignored is also
    /// noted in the output, so nothing is dropped silently.
    fn refused_and_ignored(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        for (key, (values, at)) in &a.map {
            if let Some((_, why)) = REFUSE.iter().find(|(k, _)| k == key) {
                return Err(a.refuse(at, why));
            }
            if let Some((_, why)) = WARN_ONLY.iter().find(|(k, _)| k == key) {
                let text = format!("{key} = {}: {why}", values.join(" "));
                self.t.warning(a.ignored(at, &text));
                self.d.note(at, text);
            } else if !KNOWN.contains(&key.as_str()) {
                self.t.warning(a.ignored(
                    at,
                    &format!("unknown attribute \"{key}\"", key = quote(key)),
                ));
                self.d.note(
                    at,
                    format!("{key} = {}: unknown attribute, ignored", values.join(" ")),
                );
            }
        }
        Ok(())
    }

    /// `flags`: SENSOR and IDONLY would be security checks, so they refuse
    /// the service; the ones translated elsewhere or harmless to drop pass;
    /// any other is ignored with a warning.
    fn flags(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let at = a.at("flags");
        for f in a.values("flags") {
            match f.to_ascii_uppercase().as_str() {
                "SENSOR" => return Err(a.refuse(at, "flags SENSOR is not supported")),
                "IDONLY" => {
                    return Err(a.refuse(at, "flags IDONLY (identd verification) is not supported"))
                }
                "IPV4" | "IPV6" | "NAMEINARGS" | "REUSE" | "NOLIBWRAP" | "NORETRY" => {}
                // Socket options: `socket_options`.
                "NODELAY" | "KEEPALIVE" => {}
                other => {
                    self.t
                        .warning(a.ignored(at, &format!("flags {other} has no equivalent yet")));
                    self.d.note(
                        at,
                        format!(
                            "flags {other}: no equivalent yet, ignored",
                            other = quote(other)
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// `flags = NODELAY KEEPALIVE`: `nodelay` and `keepalive` on a TCP
    /// service; xinetd sets them on TCP sockets only.
    fn socket_options(&mut self) {
        let a = &self.attrs;
        let udp = match a.one("socket_type") {
            Some((t, _)) => t == "dgram",
            None => a.one("protocol").is_some_and(|(p, _)| p == "udp"),
        };
        if udp {
            return;
        }
        let at = a.at("flags");
        for (flag, key) in [("NODELAY", "nodelay"), ("KEEPALIVE", "keepalive")] {
            if a.flag(flag) {
                self.d.set(key, Value::Bool(true), at);
            }
        }
    }

    /// `id` names the service (the name after `service` by default).
    /// (`disable = yes` is read by `build`, which writes the service
    /// commented out.)
    fn name(&mut self) {
        let a = &self.attrs;
        let id = a.one("id").map_or(a.name.to_owned(), |(s, _)| s.to_owned());
        self.d.set("name", Value::Str(id), &a.block.at);
    }

    /// `socket_type` and `protocol`, which must go with it; without a
    /// `socket_type`, `protocol` `tcp` means stream and `udp` dgram, as
    /// xinetd infers it (confparse.c).
    fn socket(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let (udp, at) = match a.one("socket_type") {
            Some(("stream", at)) => (false, at),
            Some(("dgram", at)) => (true, at),
            None if a.one("protocol").is_some_and(|(p, _)| p == "tcp") => (false, a.at("protocol")),
            None if a.one("protocol").is_some_and(|(p, _)| p == "udp") => (true, a.at("protocol")),
            Some((other, at)) => {
                return Err(a.refuse(
                    at,
                    format!(
                        "socket_type {other} is not supported (stream and dgram are)",
                        other = quote(other)
                    ),
                ))
            }
            None => {
                return Err(a.invalid(
                    &a.block.at,
                    "socket_type is missing (and no protocol tcp or udp to infer it from)",
                ))
            }
        };
        if let Some((p, at)) = a.one("protocol") {
            if p != if udp { "udp" } else { "tcp" } {
                return Err(a.invalid(
                    at,
                    format!("protocol {p} does not go with socket_type", p = quote(p)),
                ));
            }
        }
        self.d.set(
            "socket",
            Value::Str(if udp { "dgram" } else { "stream" }.to_owned()),
            at,
        );
        Ok(())
    }

    /// `port` (the service name when unset, except for UNLISTED services),
    /// on the addresses of `bind` (or `interface`), else on the wildcard
    /// address: IPv4 only, as in xinetd, unless `flags = IPv6`.
    fn listen(&mut self, unlisted: bool) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let port = match a.one("port") {
            Some((p, _)) => p.to_owned(),
            None if unlisted => {
                return Err(a.invalid(&a.block.at, "an UNLISTED service needs a port"))
            }
            None => a.name.to_owned(),
        };
        let bind = a.one("bind").or_else(|| a.one("interface"));
        let v6only = matches!(a.one("v6only"), Some(("yes", _)));
        let listen = match bind {
            Some((host, at)) => resolve_host(host)
                .map_err(|m| a.refuse(at, m))?
                .into_iter()
                .map(|ip| listen_entry(ip, &port))
                .collect(),
            None if a.flag("IPv6") && !v6only => vec![format!("*:{port}")],
            None if a.flag("IPv6") => vec![format!("[::]:{port}")],
            None => vec![format!("0.0.0.0:{port}")],
        };
        self.d.set("listen", Value::strs(listen), a.at("port"));
        Ok(())
    }

    /// `type = INTERNAL`: the built-in service of the service's name.
    /// xinetd's `servers` and `services` (lists of what it runs) have no
    /// equivalent: written out commented, with a warning, never an error.
    fn builtin(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let at = a.at("type");
        if let Some(what) = match a.name.to_ascii_lowercase().as_str() {
            "servers" => Some("the running servers"),
            "services" => Some("the services"),
            _ => None,
        } {
            let why = format!(
                "xinetd's built-in \"{name}\" (a list of {what}) is not supported",
                name = a.name
            );
            self.t.warning(ConfigError::new(
                at.clone(),
                format!("service {name}: {why}; service not run", name = a.name),
            ));
            self.d.disabled = Some(why);
            return Ok(());
        }
        // xinetd finds its built-ins by name with strcasecmp.
        let builtin = Internal::from_name(&a.name.to_ascii_lowercase())
            .filter(|i| i.classic())
            .ok_or_else(|| {
            a.refuse(
                at,
                format!(
                    "no built-in service \"{name}\" (oxinetd has echo, discard, chargen, daytime, time)",
                    name = quote(a.name)
                ),
            )
        })?;
        self.d.set(
            "server",
            Value::Str(format!("internal:{}", builtin.name())),
            at,
        );
        Ok(())
    }

    /// `server` and `wait`, both required for a program.
    fn server_and_wait(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let Some((server, at)) = a.one("server") else {
            return Err(a.invalid(&a.block.at, "server is missing"));
        };
        self.d.set("server", Value::Str(server.to_owned()), at);
        let wait = match a.one("wait") {
            Some(("yes", _)) => true,
            Some(("no", _)) => false,
            Some((other, at)) => {
                return Err(a.invalid(
                    at,
                    format!("wait = {other}: expected yes or no", other = quote(other)),
                ))
            }
            None => return Err(a.invalid(&a.block.at, "wait is missing")),
        };
        self.d.set("wait", Value::Bool(wait), a.at("wait"));
        Ok(())
    }

    /// `user`, `group`, and `groups` (supplementary groups), written out
    /// as xinetd's default `no` when unset.
    fn identity(&mut self) {
        let a = &self.attrs;
        if let Some((user, at)) = a.one("user") {
            self.d.set("user", Value::Str(user.to_owned()), at);
        }
        if let Some((group, at)) = a.one("group") {
            self.d.set("group", Value::Str(group.to_owned()), at);
        }
        self.d.set(
            "groups",
            Value::Bool(matches!(a.one("groups"), Some(("yes", _)))),
            a.at("groups"),
        );
    }

    /// `server_args`; under `flags = NAMEINARGS` its first word is `argv[0]`.
    fn arguments(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let mut args = a.values("server_args").to_vec();
        let at = a.at("server_args");
        if a.flag("NAMEINARGS") {
            if args.is_empty() {
                return Err(a.invalid(
                    a.at("flags"),
                    "flags NAMEINARGS needs server_args with argv[0]",
                ));
            }
            self.d.set("argv0", Value::Str(args.remove(0)), at);
        }
        if !args.is_empty() {
            self.d.set("args", Value::strs(args), at);
        }
        Ok(())
    }

    /// `env` (NAME=VALUE words) and `passenv` (names whose value is taken
    /// from oxinetd's own environment).
    fn environment(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let at = a.at("env");
        let env: Vec<(String, String)> = a
            .values("env")
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                None => Err(kv),
            })
            .collect::<Result<_, _>>()
            .map_err(|kv| {
                a.invalid(
                    at,
                    format!("env \"{kv}\": expected NAME=VALUE", kv = quote(kv)),
                )
            })?;
        if !env.is_empty() {
            self.d.set("env", Value::table(env), at);
        }
        let passenv = a.values("passenv");
        if !passenv.is_empty() {
            self.d
                .set("passenv", Value::strs(passenv.to_vec()), a.at("passenv"));
        }
        Ok(())
    }

    /// Who may connect: `only_from` and `no_access` as CIDR rules, each
    /// address read as xinetd reads it (`address_rule`). A host or network
    /// name refuses the service, as dropping the rule would let everyone
    /// in (or let in whom `no_access` names); the service is still
    /// translated, and `import` writes it commented out with a FIXME
    /// naming the host (`Draft::disabled`); an entry xinetd cannot parse and skips is skipped too in
    /// `only_from` (it lets no one in), with a warning, and refuses the
    /// service in `no_access` (skipping it would let in whom it names).
    /// Then `access_times` and `banner_fail` as they are.
    fn access(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        for key in ["only_from", "no_access"] {
            let Some((values, at)) = a.map.get(key) else {
                continue;
            };
            let mut rules = Vec::new();
            for v in values {
                let entry = format!("{key} \"{v}\"", key = quote(key), v = quote(v));
                match address_rule(v) {
                    Address::Rules(mut r) => rules.append(&mut r),
                    // Not run, as dropping the rule would let everyone
                    // in (or in whom it keeps out); but the service is
                    // written out, commented, for its addresses to be
                    // filled in.
                    Address::Name => {
                        self.t.report(a.refuse(
                            at,
                            format!("{entry}: host and network names are not supported (write addresses or CIDR prefixes)"),
                        ));
                        if self.d.disabled.is_none() {
                            self.d.disabled = Some(format!(
                                "FIXME: {entry} names a host or network, which oxinetd does not look up; \
                                 write its addresses or CIDR prefixes in {key}, then uncomment"
                            ));
                        }
                    }
                    Address::Malformed(why) => {
                        return Err(a.invalid(at, format!("{entry}: {why}")))
                    }
                    Address::Unparsed if key == "only_from" => {
                        let text = format!(
                            "{entry}: not an address, skipped as xinetd skips it: it lets no one in{}",
                            meant(v)
                        );
                        let whose = a.whose(at);
                        self.t
                            .warning(ConfigError::new(at.clone(), format!("{whose}: {text}")));
                        self.d.note(at, text);
                    }
                    Address::Unparsed => return Err(a.refuse(
                        at,
                        format!(
                            "{entry}: not an address (xinetd skips it, which lets in whom it was meant to keep out){}",
                            meant(v)
                        ),
                    )),
                }
            }
            self.d.set(key, Value::strs(rules), at);
        }
        if let Some((values, at)) = a.map.get("access_times") {
            self.d.set("access_times", Value::strs(values.clone()), at);
        }
        if let Some((file, at)) = a.one("banner_fail") {
            self.d.set("banner_fail", Value::Str(file.to_owned()), at);
        }
        Ok(())
    }

    /// `instances`, `per_source` and `cps`, with xinetd's defaults written
    /// out where oxinetd's own differ.
    fn limits(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        match a.limit("instances")? {
            Some((n, at)) => self.d.set("instances", Value::Int(n), at),
            None => {
                let at = a.at("instances");
                self.d.set("instances", Value::Int(1_000_000), at);
                self.d.note(
                    at,
                    "instances: xinetd's default is UNLIMITED (oxinetd's own default is 256)",
                );
            }
        }
        if let Some((n, at)) = a.limit("per_source")? {
            self.d.set("per_source", Value::Int(n), at);
        }
        let Some((v, at)) = a.map.get("cps") else {
            self.d.set("cps", Value::ints(vec![50, 10]), &a.block.at);
            self.d
                .note(&a.block.at, "cps: xinetd's default 50 10, written out");
            return Ok(());
        };
        let cps = match &v[..] {
            [count, pause] => match (count.parse::<i64>(), pause.parse::<i64>()) {
                (Ok(c), Ok(p)) if c >= 0 && p >= 0 => Some((c, p)),
                _ => None,
            },
            _ => None,
        };
        let (count, pause) = cps.ok_or_else(|| {
            a.invalid(
                at,
                format!(
                    "cps = {}: expected two numbers (connections per second, seconds)",
                    v.join(" ")
                ),
            )
        })?;
        if count == 0 {
            // xinetd checks the rate only when the count is not 0 (access.c).
            self.d.note(
                at,
                format!("cps = 0 {pause}: 0 turns the limit off, as in xinetd; no cps"),
            );
        } else {
            self.d.set("cps", Value::ints(vec![count, pause]), at);
        }
        Ok(())
    }

    /// `log_on_success` and `log_on_failure`: the words oxinetd logs are
    /// kept, the others (`USERID`: an ident lookup; `RECORD`) warned about
    /// and noted as not logged.
    fn logging(&mut self) {
        let a = &self.attrs;
        for (key, known) in [
            (
                "log_on_success",
                &["PID", "HOST", "EXIT", "DURATION", "TRAFFIC"][..],
            ),
            ("log_on_failure", &["HOST", "ATTEMPT"][..]),
        ] {
            let Some((values, at)) = a.map.get(key) else {
                continue;
            };
            let (mut keep, drop): (Vec<String>, Vec<String>) = values
                .iter()
                .cloned()
                .partition(|w| known.contains(&w.as_str()));
            // xinetd logs a failure whenever log_on_failure holds a word:
            // ATTEMPT "is implied by all others" (xinetd.conf(5)).
            if key == "log_on_failure" && !values.is_empty() && !keep.iter().any(|w| w == "ATTEMPT")
            {
                keep.push("ATTEMPT".to_owned());
            }
            if !drop.is_empty() {
                let text = format!("{key} {}: no equivalent, not logged", drop.join(" "));
                let whose = a.whose(at);
                self.t
                    .warning(ConfigError::new(at.clone(), format!("{whose}: {text}")));
                self.d.note(at, text);
            }
            self.d.set(key, Value::strs(keep), at);
        }
    }

    /// `rlimit_*` (sizes with xinetd's K and M suffixes, or UNLIMITED; 0
    /// is xinetd's "not set"), `nice` and `umask` as `rlimits`, `nice` and
    /// `umask`; and `no_new_privs = false`, as xinetd lets a handler gain
    /// privileges through a setuid program.
    fn confinement(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let mut table = Vec::new();
        let mut items = Vec::new();
        for (attr, resource) in RLIMITS {
            let Some((v, at)) = a.one(attr) else { continue };
            let limit = match (v, resource) {
                // No fd limit is infinite on Linux: xinetd's setrlimit
                // fails and the limit stays.
                ("UNLIMITED", "nofile") => Some(None),
                ("UNLIMITED", _) => Some(Some(Value::Str("infinity".to_owned()))),
                (v, "cpu") => v.parse::<u64>().ok().map(|n| (n > 0).then(|| int(n))),
                // As written (K and M mean the same in rlimits), in bytes
                // without a suffix.
                (v, _) => xinetd_size(v).map(|n| {
                    (n > 0).then(|| match v.bytes().last() {
                        Some(b'k' | b'K' | b'm' | b'M') => Value::Str(v.to_ascii_uppercase()),
                        _ => int(n),
                    })
                }),
            };
            match limit {
                Some(Some(value)) => {
                    table.push((resource.to_owned(), value));
                    items.push(at.clone());
                }
                Some(None) => self
                    .d
                    .note(at, format!("{attr} = {v}: no limit set, as in xinetd")),
                None => {
                    let what = if resource == "cpu" {
                        "seconds or UNLIMITED"
                    } else {
                        "a size such as 512K or 64M, or UNLIMITED"
                    };
                    return Err(
                        a.invalid(at, format!("{attr} = {v}: expected {what}", v = quote(v)))
                    );
                }
            }
        }
        if let Some(first) = items.first().cloned() {
            self.d.keys.retain(|k| k.name != "rlimits");
            self.d.keys.push(Key {
                name: "rlimits",
                value: Value::Table(table),
                at: first,
                items,
            });
        }
        if let Some((v, at)) = a.one("nice") {
            let n: i64 = v.parse().map_err(|_| {
                a.invalid(at, format!("nice = {v}: expected a number", v = quote(v)))
            })?;
            // nice(2) clamps what it is given, as xinetd calls it.
            let clamped = n.clamp(-20, 19);
            if clamped != n {
                self.d.note(
                    at,
                    format!("nice = {n}: the kernel's range ends at {clamped}"),
                );
            }
            self.d.set("nice", Value::Int(clamped), at);
        }
        if let Some((v, at)) = a.one("umask") {
            // Octal, as xinetd reads it; the resolver checks the digits.
            self.d.set("umask", Value::Str(v.to_owned()), at);
        }
        let at = &a.block.at;
        self.d.set("no_new_privs", Value::Bool(false), at);
        self.d.note(at, NO_NEW_PRIVS_NOTE);
        Ok(())
    }

    /// Internal services run inside oxinetd: their identity, argv and
    /// `wait` settings are noted as not needed.
    fn not_needed(&mut self, why: &str) {
        let confinement = ["nice", "umask"].into_iter().chain(RLIMITS.map(|(a, _)| a));
        for key in ["user", "group", "groups", "server", "server_args", "wait"]
            .into_iter()
            .chain(confinement)
        {
            if let Some((_, at)) = self.attrs.map.get(key) {
                self.d.note(at, format!("{key}: not needed, {why}"));
            }
        }
    }

    /// `redirect = HOST PORT`: `forward = "HOST:PORT"`, relayed by oxinetd
    /// itself, as xinetd did in a process of its own; stream only, as in
    /// xinetd. A host name is resolved when the config is loaded.
    fn redirect(&mut self) -> Result<(), Diagnostic> {
        let a = &self.attrs;
        let (values, at) = match a.map.get("redirect") {
            Some((v, at)) => (v, at),
            None => return Ok(()),
        };
        let [host, port] = &values[..] else {
            return Err(a.invalid(
                at,
                format!("redirect = {}: expected HOST PORT", values.join(" ")),
            ));
        };
        if matches!(a.one("socket_type"), Some(("dgram", _))) {
            return Err(a.refuse(at, "redirect is for stream services only (as in xinetd)"));
        }
        let target = match host.parse::<IpAddr>() {
            Ok(ip) => listen_entry(ip, port),
            Err(_) => format!("{host}:{port}"),
        };
        self.d.set("forward", Value::Str(target), at);
        Ok(())
    }
}

/// Why a translated service's program settings are left out.
const INTERNAL_NOTE: &str = "internal services run inside oxinetd";
const FORWARD_NOTE: &str = "oxinetd relays a redirect itself (forward)";

/// xinetd's resource limits and the `rlimits` entries they become
/// (`rlimit_files` is a patch of Debian's and SUSE's xinetd).
const RLIMITS: [(&str, &str); 5] = [
    ("rlimit_as", "as"),
    ("rlimit_cpu", "cpu"),
    ("rlimit_data", "data"),
    ("rlimit_stack", "stack"),
    ("rlimit_files", "nofile"),
];

/// Why a translated program service says `no_new_privs = false`.
pub const NO_NEW_PRIVS_NOTE: &str = "no_new_privs = false: classic inetd and xinetd let \
     handlers gain privileges through setuid programs; remove it (on by default) if \
     none of this service's handlers needs that";

/// xinetd's `get_limit`: digits with an optional K or M (either case;
/// powers of 1024), as bytes; `None` if malformed or too large.
fn xinetd_size(v: &str) -> Option<u64> {
    let (digits, shift) = match v.as_bytes().last()? {
        b'k' | b'K' => (&v[..v.len() - 1], 10),
        b'm' | b'M' => (&v[..v.len() - 1], 20),
        _ => (v, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(1 << shift)
        .filter(|n| i64::try_from(*n).is_ok())
}

/// A count as a TOML integer (its range checked by the caller).
fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Attributes translated (or deliberately accepted as no-ops).
const KNOWN: &[&str] = &[
    "rlimit_as",
    "rlimit_cpu",
    "rlimit_data",
    "rlimit_stack",
    "rlimit_files",
    "nice",
    "umask",
    "id",
    "type",
    "flags",
    "socket_type",
    "protocol",
    "wait",
    "user",
    "group",
    "groups",
    "server",
    "server_args",
    "port",
    "bind",
    "interface",
    "only_from",
    "no_access",
    "access_times",
    "instances",
    "per_source",
    "cps",
    "log_on_success",
    "log_on_failure",
    "banner_fail",
    "redirect",
    "env",
    "passenv",
    "disable",
    "v6only",
    "enabled",
    "disabled",
];

/// What xinetd makes of one `only_from`/`no_access` entry (addr.c tries,
/// in turn: a numeric address, a host name, `ADDR/PREFIX`, a factorized
/// address, a network name).
#[derive(Debug, PartialEq)]
enum Address {
    /// An address: its CIDR rules.
    Rules(Vec<String>),
    /// A host, domain (`.example.com`) or network name: xinetd matches it
    /// against the peer's reverse lookup, which oxinetd does not do.
    Name,
    /// Digits and dots that are no address (`127.0.0.`, `1.2.3.4.5`):
    /// xinetd logs "failed to parse" and skips the entry.
    Unparsed,
    /// xinetd refuses the entry and disables the service: why.
    Malformed(String),
}

/// An xinetd address as CIDR rules (see `Address`).
///
/// - numeric: IPv4 in any form inet_aton(3) reads (`10.1.2.3`, `127.1`,
///   octal `010.0.0.1`, hex `0x7f.1`), trailing zero bytes being
///   wildcards (`128.138.12.0` is the /24, `10.0.0.0` the /8); `0.0.0.0`
///   is everyone. IPv6 exactly (no wildcard), `::` being every IPv6
///   address.
/// - `ADDR/PREFIX`: the prefix of ADDR (host bits dropped).
/// - factorized: `128.138.{193,194}` is 128.138.193.0/24 and
///   128.138.194.0/24; the braces must end the entry.
fn address_rule(v: &str) -> Address {
    if v.contains('{') {
        return factorized(v);
    }
    let rules = match v.split_once('/') {
        Some((addr, prefix)) => explicit_prefix(addr, prefix).map(|r| vec![r]),
        None => numeric(v),
    };
    if let Some(rules) = rules {
        return Address::Rules(rules);
    }
    if v.chars().all(|c| c.is_ascii_digit() || c == '.') {
        if v.starts_with('.') || v.contains("..") {
            return Address::Malformed("consecutive dots: not an address".to_owned());
        }
        return Address::Unparsed;
    }
    // Names hold neither: xinetd skips what it cannot parse.
    if v.contains(['/', ':']) {
        return Address::Unparsed;
    }
    Address::Name
}

/// A numeric address with its implied prefix (see `address_rule`).
fn numeric(v: &str) -> Option<Vec<String>> {
    if v.contains(':') {
        // getaddrinfo takes a scope (`fe80::1%eth0`); xinetd compares the
        // address only.
        let ip: Ipv6Addr = v.split('%').next()?.parse().ok()?;
        let len = if ip.is_unspecified() { 0 } else { 128 };
        return Some(vec![format!("{ip}/{len}")]);
    }
    let ip = inet_aton(v)?;
    let bits = u32::from(ip);
    if bits == 0 {
        return Some(vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]);
    }
    let len = 32 - 8 * (bits.trailing_zeros() / 8);
    Some(vec![format!("{ip}/{len}")])
}

/// `ADDR/PREFIX`: a prefix longer than the address counts as the whole
/// address, as in xinetd.
fn explicit_prefix(addr: &str, prefix: &str) -> Option<String> {
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = prefix.parse().unwrap_or(u32::MAX);
    let ip = match inet_aton(addr) {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(addr.split('%').next()?.parse().ok()?),
    };
    let len = n.min(if ip.is_ipv4() { 32 } else { 128 }) as u8;
    Some(format!("{}/{len}", crate::access::mask(ip, len)))
}

/// `a.b.{c,d}` (IPv4 only): each number in braces completes the bytes
/// before it, the rest are wildcards. Anything after the braces, empty
/// entries or more than three bytes before them are refused, as xinetd
/// refuses them.
fn factorized(v: &str) -> Address {
    let bad = |why: &str| {
        Address::Malformed(format!(
            "{why} (factorized addresses are a.b.{{c,d}}: the braces end the address)"
        ))
    };
    let Some((head, rest)) = v.split_once('{') else {
        return bad("no opening brace");
    };
    let Some(list) = rest.strip_suffix('}') else {
        return bad("something follows the closing brace");
    };
    let prefix: Vec<&str> = match head {
        "" => Vec::new(),
        _ => match head.strip_suffix('.') {
            Some(h) => h.split('.').collect(),
            None => return bad("no dot before the opening brace"),
        },
    };
    let byte = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    let Some(prefix) = prefix.iter().map(|p| byte(p)).collect::<Option<Vec<u8>>>() else {
        return bad("each byte before the braces must be a number from 0 to 255");
    };
    if prefix.len() > 3 {
        return bad("more than three bytes before the braces");
    }
    let mut rules = Vec::new();
    for item in list.split(',') {
        let Some(n) = byte(item) else {
            return bad("each entry in the braces must be a number from 0 to 255");
        };
        let mut octets = [0u8; 4];
        octets[..prefix.len()].copy_from_slice(&prefix);
        octets[prefix.len()] = n;
        let len = 8 * (prefix.len() + 1);
        rules.push(format!("{}/{len}", Ipv4Addr::from(octets)));
    }
    Address::Rules(rules)
}

/// An IPv4 address as glibc's inet_aton reads it when nothing may follow
/// (what getaddrinfo, and so xinetd, accepts as numeric): one to four
/// parts, each decimal, octal (a leading 0) or hex (0x), the last one
/// filling the bytes left.
fn inet_aton(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let nums = parts
        .iter()
        .map(|p| c_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, head) = nums.split_last()?;
    if head.iter().any(|&n| n > 0xff) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if (room < 32 && *last >> room != 0) || *last > u64::from(u32::MAX) {
        return None;
    }
    let mut word = *last as u32;
    for (i, &n) in head.iter().enumerate() {
        word |= (n as u32) << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from(word))
}

/// A number as strtoul(3) reads it with base 0, all of `s`.
fn c_number(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = s.strip_prefix("0x").or(s.strip_prefix("0X")) {
        (hex, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if !s.starts_with(|c: char| c.is_ascii_digit())
        || digits.is_empty()
        || !digits.chars().all(|c| c.is_digit(radix))
    {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// For an entry ending in a dot (`127.0.0.`, a tcp_wrappers prefix): the
/// prefix it looks meant as.
fn meant(v: &str) -> String {
    let Some(head) = v.strip_suffix('.') else {
        return String::new();
    };
    let parts: Vec<&str> = head.split('.').collect();
    let bytes: Option<Vec<u8>> = parts.iter().map(|p| p.parse::<u8>().ok()).collect();
    match bytes {
        Some(b) if (1..=3).contains(&b.len()) => {
            let mut octets = [0u8; 4];
            octets[..b.len()].copy_from_slice(&b);
            format!(
                " (for the network, write {}/{})",
                Ipv4Addr::from(octets),
                8 * b.len()
            )
        }
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;

    fn translate_str(text: &str) -> Translation {
        translate_text(Path::new("xinetd.conf"), text)
    }

    fn of(t: &Translation, severity: Severity) -> Vec<&ConfigError> {
        t.problems(severity).collect()
    }

    #[test]
    fn operators_and_defaults() {
        let t = translate_str(
            "defaults\n{\n  only_from = 127.0.0.1 10.0.0.0\n  log_on_success = PID HOST USERID\n}\n\
             service echo\n{\n  type = INTERNAL\n  id = echo-stream\n  socket_type = stream\n  only_from += 192.168.1.0/24\n  only_from -= 10.0.0.0\n}\n",
        );
        assert!(
            of(&t, Severity::Error).is_empty(),
            "{:?}",
            of(&t, Severity::Error)
        );
        let d = &t.services[0];
        assert_eq!(d.get("name"), Some(&Value::Str("echo-stream".into())));
        assert_eq!(
            d.get("only_from"),
            Some(&Value::strs(vec![
                "127.0.0.1/32".into(),
                "192.168.1.0/24".into()
            ]))
        );
        assert_eq!(d.get("cps"), Some(&Value::ints(vec![50, 10])));
        assert_eq!(
            d.get("listen"),
            Some(&Value::strs(vec!["0.0.0.0:echo".into()]))
        );
        assert_eq!(
            d.get("log_on_success"),
            Some(&Value::strs(vec!["PID".into(), "HOST".into()]))
        );
    }

    #[test]
    fn security_attributes_refuse_only_their_service() {
        let t = translate_str(
            "service a\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  rpc_number = 100005\n}\n\
             service b\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  only_from = example.com\n}\n\
             service c\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  banner = /etc/issue\n}\n",
        );
        assert!(
            of(&t, Severity::Error).is_empty(),
            "{:?}",
            of(&t, Severity::Error)
        );
        assert_eq!(
            of(&t, Severity::Skipped).len(),
            2,
            "{:?}",
            of(&t, Severity::Skipped)
        );
        assert_eq!(of(&t, Severity::Skipped)[0].at.line, 6);
        assert_eq!(of(&t, Severity::Skipped)[1].at.line, 13);
        // b, with its host name, is kept for import: commented out, with a
        // FIXME naming the host; it does not run.
        assert_eq!(t.services.len(), 2);
        let why = t.services[0].disabled.as_deref().unwrap_or_default();
        assert!(why.starts_with("FIXME: only_from \"example.com\""), "{why}");
        assert!(t.services[1].disabled.is_none());
        assert_eq!(of(&t, Severity::Warning).len(), 1);
        assert_eq!(of(&t, Severity::Warning)[0].at.line, 20);
    }

    /// Issue 18: a disabled service is no problem, whatever it names; it is
    /// still written (commented out) by import, with what could not be
    /// converted as a note.
    #[test]
    fn disabled_services_are_never_problems() {
        let t = translate_str(
            "service a\n{\n  disable = yes\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  redirect = 10.0.0.1 25\n}\n\
             service finger\n{\n  disable = yes\n  type = INTERNAL\n  socket_type = stream\n  user = root\n}\n\
             service c\n{\n  disable = yes\n  socket_type = seqpacket\n  umask = 022\n}\n",
        );
        assert!(t.diagnostics.is_empty(), "{:?}", t.diagnostics);
        assert_eq!(t.services.len(), 3);
        assert!(t.services.iter().all(|d| d.disabled.is_some()));
        assert_eq!(
            t.services[0].get("forward"),
            Some(&Value::Str("10.0.0.1:25".into()))
        );
    }

    /// Issue 20: `redirect = HOST PORT` is `forward`; the program's
    /// settings are notes, not keys (a forward runs no program); a
    /// datagram redirect is refused, as xinetd refuses it.
    #[test]
    fn redirect_becomes_forward() {
        let t = translate_str(
            "service smtp\n{\n  socket_type = stream\n  wait = no\n  user = root\n  server = /bin/cat\n  redirect = 2001:db8::25 2525\n  only_from = 10.0.0.0/8\n}\n\
             service name\n{\n  socket_type = stream\n  wait = no\n  redirect = mail.example 25\n  port = 2526\n}\n\
             service u\n{\n  socket_type = dgram\n  wait = yes\n  port = 9\n  redirect = 10.0.0.1 9\n}\n",
        );
        assert!(of(&t, Severity::Error).is_empty(), "{:?}", t.diagnostics);
        let skipped = of(&t, Severity::Skipped);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].at.line, 22);
        let d = &t.services[0];
        assert_eq!(
            d.get("forward"),
            Some(&Value::Str("[2001:db8::25]:2525".into()))
        );
        assert_eq!(d.get("server"), None);
        assert_eq!(d.get("user"), None);
        assert_eq!(d.get("wait"), None);
        assert!(d.get("only_from").is_some());
        assert!(d
            .notes
            .iter()
            .any(|(_, n)| n.starts_with("server: not needed")));
        assert_eq!(
            t.services[1].get("forward"),
            Some(&Value::Str("mail.example:25".into()))
        );
    }

    /// xinetd's `servers` and `services` built-ins: a warning with their
    /// line, not run, never an error.
    #[test]
    fn servers_and_services_builtins_are_skipped_with_a_warning() {
        let t = translate_str(
            "service servers\n{\n  type = INTERNAL UNLISTED\n  port = 9099\n  socket_type = stream\n  wait = no\n}\n\
             service services\n{\n  type = INTERNAL UNLISTED\n  port = 9098\n  socket_type = stream\n  wait = no\n}\n",
        );
        assert!(of(&t, Severity::Error).is_empty(), "{:?}", t.diagnostics);
        assert!(of(&t, Severity::Skipped).is_empty(), "{:?}", t.diagnostics);
        let warnings = of(&t, Severity::Warning);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!((warnings[0].at.line, warnings[1].at.line), (3, 10));
        assert!(warnings[0].message.contains("\"servers\""), "{warnings:?}");
        assert!(t.services.iter().all(|d| d.disabled.is_some()));
    }

    /// Issue 19: xinetd's limits become `rlimits`, `nice` and `umask`
    /// (RSS warned about: Linux ignores it); internal services, which
    /// run inside oxinetd, only note them; programs get `no_new_privs =
    /// false`.
    #[test]
    fn limits_nice_and_umask_are_translated() {
        let t = translate_str(
            "defaults\n{\n  umask = 027\n}\n\
             service x\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  rlimit_as = 64M\n  rlimit_cpu = UNLIMITED\n  rlimit_data = 0\n  rlimit_stack = 512k\n  rlimit_files = 100\n  rlimit_rss = 1M\n  nice = 25\n}\n\
             service echo\n{\n  type = INTERNAL\n  socket_type = stream\n  nice = 5\n}\n",
        );
        assert!(of(&t, Severity::Error).is_empty(), "{:?}", t.diagnostics);
        let warnings = of(&t, Severity::Warning);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("RLIMIT_RSS"), "{warnings:?}");
        let x = &t.services[0];
        let rlimits = x.key("rlimits").expect("rlimits");
        assert_eq!(
            rlimits.value,
            Value::Table(vec![
                ("as".into(), Value::Str("64M".into())),
                ("cpu".into(), Value::Str("infinity".into())),
                ("stack".into(), Value::Str("512K".into())),
                ("nofile".into(), Value::Int(100)),
            ])
        );
        // Each entry where its line is.
        let lines: Vec<usize> = rlimits.items.iter().map(|l| l.line).collect();
        assert_eq!(lines, [10, 11, 13, 14]);
        assert_eq!(x.get("nice"), Some(&Value::Int(19)));
        assert_eq!(x.get("umask"), Some(&Value::Str("027".into())));
        assert_eq!(x.get("no_new_privs"), Some(&Value::Bool(false)));
        assert!(x.notes.iter().any(|(_, n)| n.contains("rlimit_data = 0")));
        let echo = &t.services[1];
        assert_eq!(echo.get("nice"), None);
        assert_eq!(echo.get("umask"), None);
        assert_eq!(echo.get("no_new_privs"), None);
        assert!(echo
            .notes
            .iter()
            .any(|(_, n)| n.starts_with("nice: not needed")));
        let t = translate_str(
            "service x\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  rlimit_as = lots\n}\n",
        );
        let errors = of(&t, Severity::Error);
        assert_eq!(errors[0].at.line, 6, "{errors:?}");
        assert!(errors[0].message.contains("512K or 64M"), "{errors:?}");
    }

    /// Issue 24: every form xinetd reads as an address (addr.c), and what
    /// it makes of the rest.
    #[test]
    fn address_forms_as_xinetd_reads_them() {
        let rules = |v: &str| match address_rule(v) {
            Address::Rules(r) => r,
            other => panic!("{v}: {other:?}"),
        };
        for (v, want) in [
            ("128.138.12.0", &["128.138.12.0/24"][..]),
            ("10.0.0.0", &["10.0.0.0/8"]),
            ("10.1.0.5", &["10.1.0.5/32"]),
            ("0.0.0.0", &["0.0.0.0/0", "::/0"]),
            ("0", &["0.0.0.0/0", "::/0"]),
            ("127.1", &["127.0.0.1/32"]),
            ("010.0.0.1", &["8.0.0.1/32"]),
            ("0x7f.1", &["127.0.0.1/32"]),
            (
                "128.138.{193,194}",
                &["128.138.193.0/24", "128.138.194.0/24"],
            ),
            ("10.{1}", &["10.1.0.0/16"]),
            ("1.2.3.{4}", &["1.2.3.4/32"]),
            ("{10,11}", &["10.0.0.0/8", "11.0.0.0/8"]),
            ("172.16.5.9/12", &["172.16.0.0/12"]),
            ("10.0.0.1/40", &["10.0.0.1/32"]),
            ("::", &["::/0"]),
            ("::1", &["::1/128"]),
            ("fe80::1%eth0", &["fe80::1/128"]),
            ("2001:db8::5/32", &["2001:db8::/32"]),
        ] {
            assert_eq!(rules(v), want, "{v}");
        }
        for v in [
            "127.0.0.",
            "1.2.3.4.5",
            "300.1.1.1",
            "10.0.0./8",
            "fe80:::1",
            "a.b/8",
        ] {
            assert_eq!(address_rule(v), Address::Unparsed, "{v}");
        }
        for v in ["localhost", ".example.com", "loopback"] {
            assert_eq!(address_rule(v), Address::Name, "{v}");
        }
        for v in [
            "128.138.{193,194}.0",
            "1..2",
            ".5",
            "1.2.{3,,4}",
            "1.2.{300}",
            "1.2.3.4.{5}",
            "128.138{1}",
        ] {
            assert!(
                matches!(address_rule(v), Address::Malformed(_)),
                "{v}: {:?}",
                address_rule(v)
            );
        }
        assert_eq!(meant("127.0.0."), " (for the network, write 127.0.0.0/24)");
    }

    /// Issue 24: keywords and keyword values in any case; socket_type
    /// from protocol.
    #[test]
    fn keywords_ignore_case_and_protocol_gives_the_socket_type() {
        let t = translate_str(
            "DEFAULTS\n{\n  CPS = 0 0\n  Log_On_Failure = userid\n}\n\
             Service echo\n{\n  TYPE = internal\n  Protocol = UDP\n  Wait = YES\n}\n\
             service x\n{\n  socket_type = STREAM\n  wait = No\n  server = /bin/cat\n  \
             instances = Unlimited\n  disable = YES\n}\n",
        );
        assert!(of(&t, Severity::Error).is_empty(), "{:?}", t.diagnostics);
        assert!(of(&t, Severity::Skipped).is_empty(), "{:?}", t.diagnostics);
        let echo = &t.services[0];
        assert_eq!(echo.get("socket"), Some(&Value::Str("dgram".into())));
        assert_eq!(
            echo.get("server"),
            Some(&Value::Str("internal:echo".into()))
        );
        assert_eq!(echo.get("cps"), None);
        assert_eq!(
            echo.get("log_on_failure"),
            Some(&Value::strs(vec!["ATTEMPT".into()]))
        );
        let warnings = of(&t, Severity::Warning);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("USERID"), "{warnings:?}");
        assert!(t.services[1].disabled.is_some());
    }

    #[test]
    fn malformed_blocks_are_located() {
        let t = translate_str("service x\n  socket_type = stream\n");
        assert!(!of(&t, Severity::Error).is_empty());
        let t = translate_str("service x\n{\n  socket_type stream\n}\n");
        assert!(
            of(&t, Severity::Error)
                .iter()
                .any(|e| e.at.line == 3 && e.message.contains("ATTRIBUTE")),
            "{:?}",
            of(&t, Severity::Error)
        );
        let t = translate_str("frobnicate\n");
        assert_eq!(of(&t, Severity::Error)[0].at.line, 1);
    }
}
