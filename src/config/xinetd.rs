//! The xinetd front-end: `defaults {}`, `service NAME {}`, `include` and
//! `includedir`, with the `=`, `+=` and `-=` operators, translated to TOML
//! service keys (see `draft`) per xinetd.conf(5).
//!
//! xinetd's implicit defaults are written out explicitly (`cps = [50, 10]`,
//! no instance limit, no supplementary groups, IPv4 unless `flags = IPv6`),
//! so a migrated service behaves as it did. An attribute oxinetd does not
//! support is a warning and the service still runs, unless ignoring it would
//! weaken security (an address restriction, an identity check, a sensor, a
//! redirect): then that service is refused, loudly, and the others run.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::classic::{listen_entry, resolve_host, Problem, Translation};
use super::error::quote;
use super::raw::{Draft, Value};
use super::source::{Entry, Sources};
use super::{ConfigError, Location};
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
    let mut t = Translation::default();
    let mut blocks = Vec::new();
    let mut sources = Sources::default();
    if path.is_dir() {
        include_dir(path, None, &mut sources, &mut blocks, &mut t);
    } else {
        read_file(path, None, &mut sources, &mut blocks, &mut t);
    }
    sources.finish(&mut t.errors);
    build(&blocks, t)
}

/// Translate `text` as if read from `path` (includes are followed).
#[cfg(any(test, fuzzing))]
pub fn translate_text(path: &Path, text: &str) -> Translation {
    let mut t = Translation::default();
    let mut blocks = Vec::new();
    let mut sources = Sources::default();
    parse(path, text, &mut sources, &mut blocks, &mut t);
    sources.finish(&mut t.errors);
    build(&blocks, t)
}

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
        match service(name, b, &defaults, &mut t) {
            Ok(mut d) => {
                let id = match d.get("name") {
                    Some(Value::Str(id)) => id.clone(),
                    _ => name.clone(),
                };
                let off = disabled.iter().any(|n| *n == id || n == name)
                    || (!enabled.is_empty() && !enabled.iter().any(|n| *n == id || n == name));
                if off && d.disabled.is_none() {
                    d.disabled = Some("listed in defaults' disabled/enabled".to_owned());
                }
                t.services.push(d);
            }
            Err(p) => t.report(p),
        }
    }
    t.finish();
    t
}

/// The values of a defaults list attribute, if set (`enabled`, `disabled`).
fn list_of(defaults: &[Attr], name: &str) -> Vec<String> {
    defaults
        .iter()
        .filter(|a| a.name == name)
        .flat_map(|a| a.values.iter().cloned())
        .collect()
}

/// Read `path`, included at `at` (`None`: named on the command line), once
/// per load (see `Sources`).
fn read_file(
    path: &Path,
    at: Option<&Location>,
    sources: &mut Sources,
    blocks: &mut Vec<Block>,
    t: &mut Translation,
) {
    let text = match sources.enter(path, at, &mut t.errors) {
        Entry::Read(text) => text,
        Entry::Skip => return,
    };
    t.sources.push(path.to_path_buf());
    parse(path, &text, sources, blocks, t);
    sources.leave();
}

/// xinetd's rule: skip names with a '.' or ending in '~' (package backups).
fn include_dir(
    dir: &Path,
    at: Option<&Location>,
    sources: &mut Sources,
    blocks: &mut Vec<Block>,
    t: &mut Translation,
) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            t.errors.push(ConfigError::new(
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
        read_file(&f, at, sources, blocks, t);
    }
}

fn parse(
    file: &Path,
    text: &str,
    sources: &mut Sources,
    blocks: &mut Vec<Block>,
    t: &mut Translation,
) {
    let mut open: Option<Block> = None;
    // A `service NAME` line waiting for its `{`.
    let mut pending: Option<(Option<String>, Location)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        let indent = raw.len() - raw.trim_start().len();
        let at = Location {
            file: file.to_path_buf(),
            line: i + 1,
            col: raw.get(..indent).map_or(0, |s| s.chars().count()) + 1,
        };
        if line.is_empty() {
            continue;
        }
        let err = |m: String| ConfigError::new(at.clone(), m);
        if let Some((_, header_at)) = pending.as_ref().filter(|_| !line.starts_with('{')) {
            t.errors.push(ConfigError::new(
                header_at.clone(),
                "expected \"{\" on the line after this one".to_owned(),
            ));
            pending = None;
        }
        if let Some(block) = open.as_mut() {
            if line == "}" {
                blocks.push(open.take().expect("checked above"));
                continue;
            }
            match attr_line(line, &at) {
                Ok(a) => block.attrs.push(a),
                Err(m) => t.errors.push(err(m)),
            }
            continue;
        }
        if line == "{" || line.ends_with('{') {
            let head = line.trim_end_matches('{').trim();
            let header = if head.is_empty() {
                pending.take()
            } else {
                block_header(head, &at)
                    .map_err(|m| t.errors.push(err(m)))
                    .ok()
            };
            match header {
                Some((service, at)) => {
                    open = Some(Block {
                        service,
                        at,
                        attrs: Vec::new(),
                    })
                }
                None if head.is_empty() => t.errors.push(err(
                    "\"{\" without a service or defaults line before it".to_owned(),
                )),
                None => {}
            }
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("include"), Some(f), None) | (Some("includedir"), Some(f), None)
                if sources.depth() > MAX_DEPTH =>
            {
                t.errors.push(err(format!(
                    "{}: includes nested more than {MAX_DEPTH} deep",
                    quote(f)
                )));
            }
            (Some("include"), Some(f), None) => {
                read_file(&relative(file, f), Some(&at), sources, blocks, t)
            }
            (Some("includedir"), Some(d), None) => {
                include_dir(&relative(file, d), Some(&at), sources, blocks, t)
            }
            _ => match block_header(line, &at) {
                Ok(h) => pending = Some(h),
                Err(m) => t.errors.push(err(m)),
            },
        }
    }
    if let Some(b) = open {
        t.errors.push(ConfigError::new(
            b.at,
            "this block has no closing \"}\"".to_owned(),
        ));
    }
    if let Some((_, at)) = pending {
        t.errors.push(ConfigError::new(
            at,
            "expected \"{\" on the line after this one".to_owned(),
        ));
    }
}

fn relative(file: &Path, target: &str) -> PathBuf {
    file.parent().unwrap_or(Path::new(".")).join(target)
}

/// `defaults` or `service NAME`.
fn block_header(line: &str, at: &Location) -> Result<(Option<String>, Location), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words[..] {
        ["defaults"] => Ok((None, at.clone())),
        ["service", name] => Ok((Some(name.to_owned()), at.clone())),
        ["service"] => Err("service: a name is missing".to_owned()),
        _ => Err(format!(
            "expected \"defaults\", \"service NAME\", \"include FILE\" or \"includedir DIR\", found \"{line}\""
        , line = quote(line))),
    }
}

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
    Ok(Attr {
        name: name.to_owned(),
        op,
        values: rest.split_whitespace().map(str::to_owned).collect(),
        at: at.clone(),
    })
}

/// `log_type = SYSLOG facility` in defaults becomes `[global] syslog_facility`.
fn global_settings(defaults: &[Attr], t: &mut Translation) {
    for a in defaults.iter().filter(|a| a.name == "log_type") {
        match a.values.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["SYSLOG", facility, ..] => t.global.push((
                "syslog_facility",
                Value::Str(facility.to_owned()),
                a.at.clone(),
            )),
            _ => t.warnings.push(ConfigError::new(
                a.at.clone(),
                format!(
                    "log_type {}: oxinetd logs to syslog (or stderr), not to files; ignored",
                    a.values.join(" ")
                ),
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
        "umask",
        "no equivalent yet; handlers inherit oxinetd's umask",
    ),
    ("nice", "no equivalent yet"),
    ("rlimit_as", "no equivalent yet"),
    ("rlimit_cpu", "no equivalent yet"),
    ("rlimit_data", "no equivalent yet"),
    ("rlimit_rss", "no equivalent yet"),
    ("rlimit_stack", "no equivalent yet"),
    ("rlimit_files", "no equivalent yet"),
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
    ("log_type", "set in defaults only"),
];

/// Attributes whose absence would weaken security: the service is refused.
const REFUSE: &[(&str, &str)] = &[
    ("redirect", "redirect (a TCP forwarder) is not supported"),
    ("rpc_version", "RPC services are not supported"),
    ("rpc_number", "RPC services are not supported"),
];

fn service(
    name: &str,
    b: &Block,
    defaults: &[Attr],
    t: &mut Translation,
) -> Result<Draft, Problem> {
    let attrs = effective(b, defaults);
    let refuse = |at: &Location, m: String| {
        Problem::Unsupported(ConfigError::new(
            at.clone(),
            format!("service {name}: {m}; service not run", name = quote(name)),
        ))
    };
    let invalid = |at: &Location, m: String| {
        Problem::Invalid(ConfigError::new(
            at.clone(),
            format!("service {name}: {m}", name = quote(name)),
        ))
    };
    let one = |key: &str| -> Option<(&str, &Location)> {
        attrs
            .get(key)
            .and_then(|(v, at)| v.first().map(|s| (s.as_str(), at)))
    };
    let words =
        |key: &str| -> Vec<String> { attrs.get(key).map(|(v, _)| v.clone()).unwrap_or_default() };
    let mut d = Draft::new(b.at.clone());

    // Where a setting was made: this service, or `defaults` (warned once).
    let whose = |at: &Location| {
        if b.attrs.iter().any(|a| a.at == *at) {
            format!("service {name}", name = quote(name))
        } else {
            "defaults".to_owned()
        }
    };
    for (key, (values, at)) in &attrs {
        if let Some((_, why)) = REFUSE.iter().find(|(k, _)| k == key) {
            return Err(refuse(at, (*why).to_owned()));
        }
        if let Some((_, why)) = WARN_ONLY.iter().find(|(k, _)| k == key) {
            let text = format!("{key} = {}: {why}", values.join(" "));
            t.warnings.push(ConfigError::new(
                at.clone(),
                format!("{}: {text}; ignored", whose(at)),
            ));
            d.note(at, text);
        } else if !KNOWN.contains(&key.as_str()) {
            t.warnings.push(ConfigError::new(
                at.clone(),
                format!(
                    "{}: unknown attribute \"{key}\"; ignored",
                    whose(at),
                    key = quote(key)
                ),
            ));
            d.note(
                at,
                format!("{key} = {}: unknown attribute, ignored", values.join(" ")),
            );
        }
    }

    let flags = words("flags");
    let flag = |f: &str| flags.iter().any(|x| x.eq_ignore_ascii_case(f));
    let flags_at = attrs
        .get("flags")
        .map(|(_, at)| at.clone())
        .unwrap_or_else(|| b.at.clone());
    for f in &flags {
        match f.to_ascii_uppercase().as_str() {
            "SENSOR" => {
                return Err(refuse(
                    &flags_at,
                    "flags SENSOR is not supported".to_owned(),
                ))
            }
            "IDONLY" => {
                return Err(refuse(
                    &flags_at,
                    "flags IDONLY (identd verification) is not supported".to_owned(),
                ))
            }
            "IPV4" | "IPV6" | "NAMEINARGS" | "REUSE" | "NOLIBWRAP" | "NORETRY" => {}
            other => {
                t.warnings.push(ConfigError::new(
                    flags_at.clone(),
                    format!(
                        "{}: flags {other} has no equivalent yet; ignored",
                        whose(&flags_at)
                    ),
                ));
                d.note(
                    &flags_at,
                    format!(
                        "flags {other}: no equivalent yet, ignored",
                        other = quote(other)
                    ),
                );
            }
        }
    }

    let id = one("id").map_or(name.to_owned(), |(s, _)| s.to_owned());
    d.set("name", Value::Str(id), &b.at);
    if let Some(("yes", at)) = one("disable") {
        d.disabled = Some(format!("disable = yes at line {}", at.line));
    }

    let types = words("type");
    let type_at = attrs.get("type").map_or(&b.at, |(_, at)| at);
    for ty in &types {
        match ty.as_str() {
            "INTERNAL" | "UNLISTED" => {}
            "RPC" => return Err(refuse(type_at, "type RPC is not supported".to_owned())),
            other => {
                return Err(refuse(
                    type_at,
                    format!("type {other} is not supported", other = quote(other)),
                ))
            }
        }
    }
    let internal = types.iter().any(|t| t == "INTERNAL");
    let unlisted = types.iter().any(|t| t == "UNLISTED");

    let socket = one("socket_type");
    let udp = match socket {
        Some(("stream", _)) => false,
        Some(("dgram", _)) => true,
        Some((other, at)) => {
            return Err(refuse(
                at,
                format!(
                    "socket_type {other} is not supported (stream and dgram are)",
                    other = quote(other)
                ),
            ))
        }
        None => return Err(invalid(&b.at, "socket_type is missing".to_owned())),
    };
    if let Some((p, at)) = one("protocol") {
        if p != if udp { "udp" } else { "tcp" } {
            return Err(invalid(
                at,
                format!("protocol {p} does not go with socket_type", p = quote(p)),
            ));
        }
    }
    d.set(
        "socket",
        Value::Str(if udp { "dgram" } else { "stream" }.to_owned()),
        socket.map_or(&b.at, |(_, at)| at),
    );

    // Where it listens.
    let port = match one("port") {
        Some((p, _)) => p.to_owned(),
        None if unlisted => {
            return Err(invalid(
                &b.at,
                "an UNLISTED service needs a port".to_owned(),
            ))
        }
        None => name.to_owned(),
    };
    let port_at = attrs.get("port").map_or(&b.at, |(_, at)| at).clone();
    let bind = one("bind").or_else(|| one("interface"));
    let v6only = matches!(one("v6only"), Some(("yes", _)));
    let listen = match bind {
        Some((host, at)) => resolve_host(host)
            .map_err(|m| refuse(at, m))?
            .into_iter()
            .map(|ip| listen_entry(ip, &port))
            .collect(),
        None if flag("IPv6") && !v6only => vec![format!("*:{port}")],
        None if flag("IPv6") => vec![format!("[::]:{port}")],
        None => vec![format!("0.0.0.0:{port}")],
    };
    d.set("listen", Value::strs(listen), &port_at);

    // What runs.
    if internal {
        let builtin = Internal::from_name(name).ok_or_else(|| {
            refuse(type_at, format!("no built-in service \"{name}\" (oxinetd has echo, discard, chargen, daytime, time)", name = quote(name)))
        })?;
        d.set(
            "server",
            Value::Str(format!("internal:{}", builtin.name())),
            type_at,
        );
    } else {
        let Some((server, at)) = one("server") else {
            return Err(invalid(&b.at, "server is missing".to_owned()));
        };
        d.set("server", Value::Str(server.to_owned()), at);
        let wait = match one("wait") {
            Some(("yes", _)) => true,
            Some(("no", _)) => false,
            Some((other, at)) => {
                return Err(invalid(
                    at,
                    format!("wait = {other}: expected yes or no", other = quote(other)),
                ))
            }
            None => return Err(invalid(&b.at, "wait is missing".to_owned())),
        };
        d.set(
            "wait",
            Value::Bool(wait),
            attrs.get("wait").map_or(&b.at, |(_, at)| at),
        );
        if let Some((user, at)) = one("user") {
            d.set("user", Value::Str(user.to_owned()), at);
        }
        if let Some((group, at)) = one("group") {
            d.set("group", Value::Str(group.to_owned()), at);
        }
        let groups_at = attrs.get("groups").map_or(&b.at, |(_, at)| at);
        d.set(
            "groups",
            Value::Bool(matches!(one("groups"), Some(("yes", _)))),
            groups_at,
        );
        let mut args = words("server_args");
        let args_at = attrs.get("server_args").map_or(&b.at, |(_, at)| at);
        if flag("NAMEINARGS") {
            if args.is_empty() {
                return Err(invalid(
                    &flags_at,
                    "flags NAMEINARGS needs server_args with argv[0]".to_owned(),
                ));
            }
            d.set("argv0", Value::Str(args.remove(0)), args_at);
        }
        if !args.is_empty() {
            d.set("args", Value::strs(args), args_at);
        }
        let env: Vec<(String, String)> = words("env")
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
                None => Err(kv.clone()),
            })
            .collect::<Result<_, _>>()
            .map_err(|kv| {
                invalid(
                    attrs.get("env").map_or(&b.at, |(_, at)| at),
                    format!("env \"{kv}\": expected NAME=VALUE", kv = quote(kv.as_str())),
                )
            })?;
        if !env.is_empty() {
            d.set(
                "env",
                Value::table(env),
                attrs.get("env").map_or(&b.at, |(_, at)| at),
            );
        }
        let passenv = words("passenv");
        if !passenv.is_empty() {
            d.set(
                "passenv",
                Value::strs(passenv),
                attrs.get("passenv").map_or(&b.at, |(_, at)| at),
            );
        }
        d.set("stderr", Value::Str("socket".to_owned()), &b.at);
    }

    // Who may connect.
    for key in ["only_from", "no_access"] {
        if let Some((values, at)) = attrs.get(key) {
            let mut rules = Vec::new();
            for v in values {
                match address_rule(v) {
                    Some(mut r) => rules.append(&mut r),
                    None => {
                        return Err(refuse(
                            at,
                            format!("{key} \"{v}\": host and network names are not supported (write addresses or CIDR prefixes)", key = quote(key), v = quote(v)),
                        ))
                    }
                }
            }
            d.set(
                if key == "only_from" {
                    "only_from"
                } else {
                    "no_access"
                },
                Value::strs(rules),
                at,
            );
        }
    }
    if let Some((values, at)) = attrs.get("access_times") {
        d.set("access_times", Value::strs(values.clone()), at);
    }
    if let Some((file, at)) = one("banner_fail") {
        d.set("banner_fail", Value::Str(file.to_owned()), at);
    }

    // Limits, with xinetd's defaults written out.
    let limit = |key: &str| -> Result<Option<(i64, Location)>, Problem> {
        match one(key) {
            None | Some(("UNLIMITED", _)) => Ok(None),
            Some((n, at)) => n
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(|n| Some((n, at.clone())))
                .ok_or_else(|| {
                    invalid(
                        at,
                        format!(
                            "{key} = {n}: expected a number or UNLIMITED",
                            key = quote(key),
                            n = quote(n)
                        ),
                    )
                }),
        }
    };
    match limit("instances")? {
        Some((n, at)) => d.set("instances", Value::Int(n), &at),
        None => {
            let at = attrs.get("instances").map_or(&b.at, |(_, at)| at).clone();
            d.set("instances", Value::Int(1_000_000), &at);
            d.note(
                &at,
                "instances: xinetd's default is UNLIMITED (oxinetd's own default is 256)",
            );
        }
    }
    if let Some((n, at)) = limit("per_source")? {
        d.set("per_source", Value::Int(n), &at);
    }
    match attrs.get("cps") {
        Some((v, at)) => match v[..] {
            [ref count, ref pause] => match (count.parse::<i64>(), pause.parse::<i64>()) {
                (Ok(c), Ok(p)) if c >= 1 && p >= 0 => d.set("cps", Value::ints(vec![c, p]), at),
                _ => {
                    return Err(invalid(
                        at,
                        format!("cps = {}: expected two numbers", v.join(" ")),
                    ))
                }
            },
            _ => {
                return Err(invalid(
                    at,
                    format!("cps = {}: expected two numbers", v.join(" ")),
                ))
            }
        },
        None => {
            d.set("cps", Value::ints(vec![50, 10]), &b.at);
            d.note(&b.at, "cps: xinetd's default 50 10, written out");
        }
    }

    // What is logged.
    for (key, known) in [
        (
            "log_on_success",
            &["PID", "HOST", "EXIT", "DURATION", "TRAFFIC"][..],
        ),
        ("log_on_failure", &["HOST", "ATTEMPT"][..]),
    ] {
        if let Some((values, at)) = attrs.get(key) {
            let (keep, drop): (Vec<String>, Vec<String>) = values
                .iter()
                .cloned()
                .partition(|w| known.contains(&w.as_str()));
            if !drop.is_empty() {
                d.note(
                    at,
                    format!("{key} {}: no equivalent, not logged", drop.join(" ")),
                );
            }
            d.set(
                if key == "log_on_success" {
                    "log_on_success"
                } else {
                    "log_on_failure"
                },
                Value::strs(keep),
                at,
            );
        }
    }
    if internal {
        // Internal services run inside oxinetd: no identity or argv.
        for key in ["user", "group", "server", "server_args", "wait"] {
            if let Some((_, at)) = attrs.get(key) {
                d.note(
                    at,
                    format!("{key}: not needed, internal services run inside oxinetd"),
                );
            }
        }
    }
    Ok(d)
}

/// Attributes translated (or deliberately accepted as no-ops).
const KNOWN: &[&str] = &[
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
    "env",
    "passenv",
    "disable",
    "v6only",
    "enabled",
    "disabled",
];

/// An xinetd address as CIDR rules; `None` for names.
fn address_rule(v: &str) -> Option<Vec<String>> {
    if v == "0.0.0.0" || v == "0" {
        return Some(vec!["0.0.0.0/0".to_owned(), "::/0".to_owned()]);
    }
    let (addr, prefix) = v.split_once('/').map_or((v, None), |(a, p)| (a, Some(p)));
    // xinetd's implied networks: trailing zero octets (10.0.0.0 is 10/8).
    if let (Ok(IpAddr::V4(ip)), None) = (addr.parse::<IpAddr>(), prefix) {
        let o = ip.octets();
        let len = match o {
            [_, 0, 0, 0] => 8,
            [_, _, 0, 0] => 16,
            [_, _, _, 0] => 24,
            _ => 32,
        };
        return Some(vec![format!("{ip}/{len}")]);
    }
    addr.parse::<IpAddr>().ok()?;
    if let Some(p) = prefix {
        p.parse::<u8>().ok()?;
    }
    Some(vec![v.to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate_str(text: &str) -> Translation {
        translate_text(Path::new("xinetd.conf"), text)
    }

    #[test]
    fn operators_and_defaults() {
        let t = translate_str(
            "defaults\n{\n  only_from = 127.0.0.1 10.0.0.0\n  log_on_success = PID HOST USERID\n}\n\
             service echo\n{\n  type = INTERNAL\n  id = echo-stream\n  socket_type = stream\n  only_from += 192.168.1.0/24\n  only_from -= 10.0.0.0\n}\n",
        );
        assert!(t.errors.is_empty(), "{:?}", t.errors);
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
            "service a\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  redirect = 10.0.0.1 25\n}\n\
             service b\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  only_from = example.com\n}\n\
             service c\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  umask = 022\n}\n",
        );
        assert!(t.errors.is_empty(), "{:?}", t.errors);
        assert_eq!(t.unsupported.len(), 2, "{:?}", t.unsupported);
        assert_eq!(t.unsupported[0].at.line, 6);
        assert_eq!(t.unsupported[1].at.line, 13);
        assert_eq!(t.services.len(), 1);
        assert_eq!(t.warnings.len(), 1);
        assert_eq!(t.warnings[0].at.line, 20);
    }

    #[test]
    fn malformed_blocks_are_located() {
        let t = translate_str("service x\n  socket_type = stream\n");
        assert!(!t.errors.is_empty());
        let t = translate_str("service x\n{\n  socket_type stream\n}\n");
        assert!(
            t.errors
                .iter()
                .any(|e| e.at.line == 3 && e.message.contains("ATTRIBUTE")),
            "{:?}",
            t.errors
        );
        let t = translate_str("frobnicate\n");
        assert_eq!(t.errors[0].at.line, 1);
    }
}
