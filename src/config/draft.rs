//! A configuration translated from another format (inetd.conf, xinetd), as
//! the TOML that says the same thing.
//!
//! The inetd and xinetd front-ends only parse their syntax into a
//! `Translation`: services as TOML keys and values, each remembering the
//! source line it came from. Running such a file renders the TOML and loads
//! it through the TOML front-end, so there is one resolver (users, paths,
//! ports, rules) and `oxinetd import` prints exactly what runs. Errors the
//! resolver finds in the rendered text are mapped back to the line of the
//! original file.

use std::fmt::Write as _;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::{ConfigError, Context, Loaded, Location};

/// A TOML value, as much of TOML as a translation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Strs(Vec<String>),
    Ints(Vec<i64>),
    /// An inline table of strings (`env`).
    Table(Vec<(String, String)>),
}

impl Value {
    fn render(&self, out: &mut String) {
        match self {
            Value::Str(s) => quote(s, out),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            Value::Strs(items) => {
                out.push('[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    quote(s, out);
                }
                out.push(']');
            }
            Value::Ints(items) => {
                let items: Vec<String> = items.iter().map(i64::to_string).collect();
                let _ = write!(out, "[{}]", items.join(", "));
            }
            Value::Table(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    out.push_str(if i > 0 { ", " } else { " " });
                    quote(k, out);
                    out.push_str(" = ");
                    quote(v, out);
                }
                out.push_str(if pairs.is_empty() { "}" } else { " }" });
            }
        }
    }
}

/// A TOML basic string.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One service, translated.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Where the service is defined in the original file.
    pub origin: Location,
    /// Keys in the order they are written, each with the line it came from.
    pub keys: Vec<(&'static str, Value, Location)>,
    /// Settings with no equivalent, or translated with a difference: written
    /// as comments so nothing is dropped silently.
    pub notes: Vec<(Location, String)>,
    /// Why the service is written commented out and not run (`disable`).
    pub disabled: Option<String>,
}

impl Draft {
    pub fn new(origin: Location) -> Draft {
        Draft {
            origin,
            keys: Vec::new(),
            notes: Vec::new(),
            disabled: None,
        }
    }

    /// Set `key`, replacing an earlier value.
    pub fn set(&mut self, key: &'static str, value: Value, at: &Location) {
        self.keys.retain(|(k, _, _)| *k != key);
        self.keys.push((key, value, at.clone()));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, v, _)| v)
    }

    pub fn note(&mut self, at: &Location, text: impl Into<String>) {
        self.notes.push((at.clone(), text.into()));
    }
}

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
}

/// Rendered TOML, and for each of its lines the original line it stands for.
pub struct Rendered {
    pub text: String,
    origins: Vec<Option<Location>>,
}

impl Rendered {
    fn line(&mut self, at: Option<&Location>, text: &str) {
        self.text.push_str(text);
        self.text.push('\n');
        self.origins.push(at.cloned());
    }

    /// A `# ...` line. Comment text comes from the input (values, paths,
    /// messages quoting a line): control characters are escaped, as TOML
    /// comments may not hold them.
    fn comment(&mut self, at: Option<&Location>, text: &str) {
        let mut line = String::with_capacity(text.len() + 2);
        line.push_str("# ");
        for c in text.chars() {
            if c.is_control() && c != '\t' {
                let _ = write!(line, "\\u{:04X}", c as u32);
            } else {
                line.push(c);
            }
        }
        self.line(at, line.trim_end());
    }

    /// The original location of a position in the rendered text.
    fn origin(&self, loc: &Location) -> Option<Location> {
        self.origins
            .get(loc.line.checked_sub(1)?)
            .cloned()
            .flatten()
    }
}

impl Translation {
    /// The TOML, with a comment naming the source of every service and
    /// every setting that has no equivalent.
    pub fn render(&self, format: &str) -> Rendered {
        let mut r = Rendered {
            text: String::new(),
            origins: Vec::new(),
        };
        r.comment(None, &format!("Converted from {format} by oxinetd import."));
        for src in &self.sources {
            r.comment(None, &format!("  {}", src.display()));
        }
        for e in self.errors.iter().chain(&self.unsupported) {
            r.comment(None, &format!("NOT CONVERTED: {e}"));
        }
        if !self.global.is_empty() {
            r.line(None, "");
            r.line(None, "[global]");
            for (key, value, at) in &self.global {
                r.line(Some(at), &key_line(key, value));
            }
        }
        for d in &self.services {
            r.line(None, "");
            r.comment(Some(&d.origin), &d.origin.short());
            for (at, note) in &d.notes {
                r.comment(Some(at), &format!("{}: {note}", at.short()));
            }
            let disabled = d.disabled.is_some();
            if let Some(why) = &d.disabled {
                r.comment(Some(&d.origin), &format!("disabled ({why}): not run"));
            }
            let mut emit = |at: &Location, line: &str| {
                if disabled {
                    r.comment(Some(at), line);
                } else {
                    r.line(Some(at), line);
                }
            };
            emit(&d.origin, "[[service]]");
            for (key, value, at) in &d.keys {
                emit(at, &key_line(key, value));
            }
        }
        r
    }

    /// Resolve the translation as the supervisor runs it: render, load
    /// through the TOML front-end, and locate every error in the original.
    pub fn load(
        self,
        path: &Path,
        format: &str,
        ctx: &Context,
    ) -> Result<Loaded, Vec<ConfigError>> {
        let rendered = self.render(format);
        let relocate = |mut e: ConfigError| {
            if let Some(at) = rendered.origin(&e.at) {
                e.at = at;
            }
            e
        };
        match super::toml::load_text(path, rendered.text.clone(), ctx) {
            Err(errors) => Err(errors.into_iter().map(relocate).collect()),
            Ok(mut loaded) => {
                for svc in &mut loaded.config.services {
                    if let Some(at) = rendered.origin(&svc.origin) {
                        svc.origin = at;
                    }
                }
                let mut errors: Vec<ConfigError> = loaded.errors.drain(..).map(relocate).collect();
                errors.extend(self.errors);
                loaded.errors = errors;
                loaded.warnings.extend(self.warnings);
                loaded.skipped.extend(self.unsupported);
                Ok(loaded)
            }
        }
    }
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

fn key_line(key: &str, value: &Value) -> String {
    let mut line = format!("{key} = ");
    value.render(&mut line);
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        Value::Strs(vec!["a\"b".into(), "c\\d\u{1}".into()]).render(&mut out);
        assert_eq!(out, r#"["a\"b", "c\\d\u0001"]"#);
        let mut out = String::new();
        Value::Table(vec![("K".into(), "v w".into())]).render(&mut out);
        assert_eq!(out, r#"{ "K" = "v w" }"#);
    }
}
