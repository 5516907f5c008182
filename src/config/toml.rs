//! The native TOML front-end: reads the main file and its includes into
//! the raw form (`raw::Raw`); an included file named inetd.conf goes
//! through the inetd front-end, its services joining the TOML ones (the
//! shipped config includes /etc/inetd.conf, where Debian's update-inetd
//! registers services).
//!
//! The document is walked as a spanned tree (`toml::de::DeTable`) rather than
//! deserialized with serde derive: serde stops at the first error, while
//! `oxinetd check` must report every unknown key, bad value and broken
//! service with its `FILE:LINE:COL` in one run. Syntax, `include`, unknown
//! keys ("did you mean") and the shape of the tables are checked here;
//! values are checked by the resolver (`resolve`).

use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::classic::Translation;
use super::error::{did_you_mean, quote};
use super::inetd;
use super::keys::{DEFAULTS_KEYS, GLOBAL_KEYS, INCLUDED_ROOT_KEYS, ROOT_KEYS, SERVICE_KEYS};
use super::raw::{Draft, Key, Raw, Value};
use super::source::{Entry, Sources};
use super::{ConfigError, Diagnostic, Format, Location};

/// How deep `include` may nest: the main file including a file that
/// includes another is 2. Cycles are found by `Sources`, not by this.
const MAX_INCLUDE_DEPTH: usize = 8;

/// How deep a value is copied into the raw form: a key, its items, and
/// theirs (`rate`'s numbers, a wrong item's type), and one level more for
/// `tls.sni`'s tables of files. Deeper lists and tables are kept empty,
/// with their type: no check looks further, and a hostile nesting costs
/// no recursion.
const MAX_VALUE_DEPTH: usize = 4;

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

/// One file of a load, in reading order.
enum Part {
    /// The main file or an included TOML file, walked while its parse was
    /// at hand (each file is parsed once).
    Toml(Raw),
    /// An included inetd.conf (the name tells, as with `-f`: see
    /// `Format::detect`), already translated, with the inetd.d files
    /// beside it.
    Inetd(PathBuf, Translation),
}

/// Read `path` and its includes into the raw form. `Err` means nothing can
/// be loaded: a file is unreadable or not TOML, or an include is wrong.
pub fn read(path: &Path) -> Result<Raw, Vec<ConfigError>> {
    let mut parts = Vec::new();
    let mut fatal = Vec::new();
    let mut sources = Sources::default();
    collect_files(path, None, &mut sources, &mut parts, &mut fatal);
    sources.finish(&mut fatal);
    if !fatal.is_empty() {
        return Err(fatal);
    }
    let mut raw = Raw::default();
    for part in parts {
        match part {
            Part::Toml(file) => {
                // Only the main file (the first part) may set these.
                raw.global.extend(file.global);
                raw.defaults.extend(file.defaults);
                raw.services.extend(file.services);
                raw.diagnostics.extend(file.diagnostics);
            }
            Part::Inetd(path, t) => {
                if let Err(e) = t.include_into(&path, &mut raw) {
                    fatal.extend(e);
                }
            }
        }
    }
    if !fatal.is_empty() {
        return Err(fatal);
    }
    Ok(raw)
}

/// TOML text read as if it were the file `path`, its includes not
/// followed (the fuzz property reads `oxinetd import`'s output back).
#[cfg(any(test, fuzzing))]
pub fn read_text(path: &Path, text: String) -> Result<Raw, Vec<ConfigError>> {
    let file = SourceFile::new(path, text, true);
    let table = DeTable::parse(&file.text).map_err(|e| vec![syntax_error(&file, &e)])?;
    let mut raw = Raw::default();
    walk_file(&file, table.get_ref(), &mut raw);
    Ok(raw)
}

/// The top level of one file into `raw`.
fn walk_file(file: &SourceFile, table: &DeTable<'_>, raw: &mut Raw) {
    let allowed = if file.is_main {
        ROOT_KEYS
    } else {
        INCLUDED_ROOT_KEYS
    };
    let mut errors = Vec::new();
    for (key, value) in table.iter() {
        let field = Field {
            file,
            key: key.get_ref(),
            value,
        };
        match key.get_ref().as_ref() {
            k if !file.is_main && ROOT_KEYS.contains(&k) && !allowed.contains(&k) => {
                errors.push(ConfigError::new(
                    file.loc(key.span().start),
                    format!(
                        "\"{k}\" may only be set in the main config file, not in an included one",
                        k = quote(k)
                    ),
                ))
            }
            k if !allowed.contains(&k) => errors.push(unknown_key(file, key, allowed, "top level")),
            "global" => {
                if let Some(t) = field.table(&mut errors) {
                    raw.global = keys(file, t, GLOBAL_KEYS, "[global]", &mut errors);
                }
            }
            "defaults" => {
                if let Some(t) = field.table(&mut errors) {
                    raw.defaults = keys(file, t, DEFAULTS_KEYS, "[defaults]", &mut errors);
                }
            }
            "service" => {
                for t in field.service_tables(&mut errors) {
                    raw.services.push(service(file, t));
                }
            }
            _ => {} // include: followed by collect_files
        }
    }
    raw.diagnostics
        .extend(errors.into_iter().map(Diagnostic::error));
}

/// One `[[service]]` table; it starts at its first key.
fn service(file: &SourceFile, table: &DeTable<'_>) -> Draft {
    let origin = table
        .iter()
        .map(|(k, _)| k.span().start)
        .min()
        .map(|o| file.loc(o))
        .unwrap_or_else(|| Location::file(&file.path));
    let mut draft = Draft::new(origin);
    draft.keys = keys(
        file,
        table,
        SERVICE_KEYS,
        "[[service]]",
        &mut draft.problems,
    );
    draft
}

/// The known keys of `table`; unknown ones are reported.
fn keys(
    file: &SourceFile,
    table: &DeTable<'_>,
    known: &[&'static str],
    place: &str,
    errors: &mut Vec<ConfigError>,
) -> Vec<Key> {
    let mut out = Vec::with_capacity(table.len());
    for (key, value) in table.iter() {
        match known.iter().find(|k| **k == key.get_ref().as_ref()) {
            Some(name) => out.push(Key {
                name,
                value: raw_value(value.get_ref(), 1),
                at: file.loc(value.span().start),
                items: item_locations(file, value.get_ref()),
            }),
            None => errors.push(unknown_key(file, key, known, place)),
        }
    }
    out
}

/// Where each item of a list, or value of a table, starts.
fn item_locations(file: &SourceFile, value: &DeValue<'_>) -> Vec<Location> {
    match value {
        DeValue::Array(items) => items.iter().map(|i| file.loc(i.span().start)).collect(),
        DeValue::Table(t) => t.iter().map(|(_, v)| file.loc(v.span().start)).collect(),
        _ => Vec::new(),
    }
}

/// A TOML value in the raw form, `depth` levels down from the key.
fn raw_value(value: &DeValue<'_>, depth: usize) -> Value {
    let deeper = depth < MAX_VALUE_DEPTH;
    match value {
        DeValue::String(s) => Value::Str(s.to_string()),
        DeValue::Integer(i) => Value::Int(i64::from_str_radix(i.as_str(), i.radix()).unwrap_or(
            if i.as_str().starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            },
        )),
        DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::List(
            items
                .iter()
                .filter(|_| deeper)
                .map(|i| raw_value(i.get_ref(), depth + 1))
                .collect(),
        ),
        DeValue::Table(t) => Value::Table(
            t.iter()
                .filter(|_| deeper)
                .map(|(k, v)| (k.get_ref().to_string(), raw_value(v.get_ref(), depth + 1)))
                .collect(),
        ),
    }
}

fn unknown_key(
    file: &SourceFile,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    known: &[&str],
    place: &str,
) -> ConfigError {
    let name = key.get_ref();
    let mut msg = format!("unknown key \"{name}\" in {place}", name = quote(name));
    if let Some(s) = did_you_mean(name, known) {
        msg.push_str(&format!(" (did you mean \"{s}\"?)"));
    } else if place == "top level" && SERVICE_KEYS.contains(&name.as_ref()) {
        msg.push_str(" (service keys go in [[service]] or [defaults])");
    } else if place != "top level" && ROOT_KEYS.contains(&name.as_ref()) {
        msg.push_str(" (top-level keys must come before the first [table])");
    }
    ConfigError::new(file.loc(key.span().start), msg)
}

/// Read `path` and, recursively, the files it includes, each file once
/// (see `Sources`). `at` is where `path` was included, `None` for the main
/// file.
fn collect_files(
    path: &Path,
    at: Option<&Location>,
    sources: &mut Sources,
    parts: &mut Vec<Part>,
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
    let mut walked = Raw::default();
    walk_file(&file, table.get_ref(), &mut walked);
    drop(table);
    parts.push(Part::Toml(walked));
    for (inc, at) in includes {
        if Format::detect(&inc) == Some(Format::Inetd) {
            let t = inetd::translate_with(&inc, Some(&at), sources);
            parts.push(Part::Inetd(inc, t));
        } else {
            collect_files(&inc, Some(&at), sources, parts, errors);
        }
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

/// One value of the document, with the file it came from: the shape
/// checks of the front-end (tables, includes).
#[derive(Clone, Copy)]
struct Field<'a> {
    file: &'a SourceFile,
    key: &'a str,
    value: &'a Spanned<DeValue<'a>>,
}

impl<'a> Field<'a> {
    fn wrong_type(&self, expected: &str) -> ConfigError {
        ConfigError::new(
            self.file.loc(self.value.span().start),
            format!(
                "{}: expected {expected}, found {}",
                self.key,
                self.value.get_ref().type_str()
            ),
        )
    }

    fn table(&self, errors: &mut Vec<ConfigError>) -> Option<&'a DeTable<'a>> {
        match self.value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                errors.push(self.wrong_type("a table"));
                None
            }
        }
    }

    /// The tables of a `[[service]]` array.
    fn service_tables(&self, errors: &mut Vec<ConfigError>) -> Vec<&'a DeTable<'a>> {
        match self.value.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(t) => Some(t),
                    _ => {
                        errors.push(
                            Field {
                                value: item,
                                ..*self
                            }
                            .wrong_type("a table ([[service]])"),
                        );
                        None
                    }
                })
                .collect(),
            _ => {
                errors.push(self.wrong_type("an array of tables ([[service]])"));
                Vec::new()
            }
        }
    }

    /// One string or a list of strings, each with its location (`include`).
    fn strings(&self) -> Result<Vec<(&'a str, Location)>, ConfigError> {
        match self.value.get_ref() {
            DeValue::String(s) => Ok(vec![(s.as_ref(), self.file.loc(self.value.span().start))]),
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
