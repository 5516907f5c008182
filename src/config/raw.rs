//! The raw form of a configuration: what every front-end (TOML, inetd.conf,
//! xinetd) produces and the resolver (`resolve`) turns into `Service`s.
//!
//! A raw service is a list of keys from the key table (`keys`), each with
//! its value as written and where it was written, so every problem the
//! resolver finds names the original `FILE:LINE:COL`, whatever the format.
//! `oxinetd import` writes the same raw form back as TOML (`import`).

use std::path::PathBuf;

use serde::ser::{SerializeMap, SerializeSeq};

use super::{ConfigError, Diagnostic, Location};

/// A value as written: the TOML types (the classic formats write a subset).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// An integer outside `i64` is kept as `i64::MIN` or `i64::MAX`: every
    /// key's range is far inside, so it is refused as out of range.
    Int(i64),
    /// A float that does not parse is NaN, refused as out of range.
    Float(f64),
    Bool(bool),
    Datetime(String),
    List(Vec<Value>),
    Table(Vec<(String, Value)>),
}

impl Value {
    /// A list of strings.
    pub fn strs(items: Vec<String>) -> Value {
        Value::List(items.into_iter().map(Value::Str).collect())
    }

    /// A list of integers.
    pub fn ints(items: Vec<i64>) -> Value {
        Value::List(items.into_iter().map(Value::Int).collect())
    }

    /// A table of strings (`env`).
    pub fn table(pairs: Vec<(String, String)>) -> Value {
        Value::Table(pairs.into_iter().map(|(k, v)| (k, Value::Str(v))).collect())
    }

    /// The value as TOML writes it, through the `toml` serializer.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        use serde::Serialize as _;
        let mut out = String::new();
        self.serialize(toml::ser::ValueSerializer::new(&mut out))?;
        Ok(out)
    }

    /// The type's name in messages, as TOML calls it.
    pub fn type_str(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Bool(_) => "boolean",
            Value::Datetime(_) => "datetime",
            Value::List(_) => "array",
            Value::Table(_) => "table",
        }
    }
}

/// Written by `oxinetd import` through the `toml` serializer.
impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) | Value::Datetime(v) => s.serialize_str(v),
            Value::Int(v) => s.serialize_i64(*v),
            Value::Float(v) => s.serialize_f64(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Value::Table(pairs) => {
                let mut map = s.serialize_map(Some(pairs.len()))?;
                for (k, v) in pairs {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// One key as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Its name in the key table.
    pub name: &'static str,
    pub value: Value,
    pub at: Location,
    /// Where each item of a list (or value of a table) was written; empty
    /// when they are all at `at` (the classic formats).
    pub items: Vec<Location>,
}

impl Key {
    pub fn new(name: &'static str, value: Value, at: &Location) -> Key {
        Key {
            name,
            value,
            at: at.clone(),
            items: Vec::new(),
        }
    }
}

/// One service as written, not resolved yet.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Where the service is defined.
    pub origin: Location,
    /// Keys in the order they are written.
    pub keys: Vec<Key>,
    /// Settings of another format with no equivalent, or translated with a
    /// difference: `import` writes them as comments so nothing is dropped
    /// silently.
    pub notes: Vec<(Location, String)>,
    /// Why the service is not run (`disable`): `import` writes it
    /// commented out.
    pub disabled: Option<String>,
    /// Problems met reading it (unknown keys), reported before those of
    /// resolving it.
    pub problems: Vec<ConfigError>,
}

impl Draft {
    pub fn new(origin: Location) -> Draft {
        Draft {
            origin,
            keys: Vec::new(),
            notes: Vec::new(),
            disabled: None,
            problems: Vec::new(),
        }
    }

    /// Set `key`, replacing an earlier value.
    pub fn set(&mut self, key: &'static str, value: Value, at: &Location) {
        self.keys.retain(|k| k.name != key);
        self.keys.push(Key::new(key, value, at));
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key(key).map(|k| &k.value)
    }

    pub fn key(&self, key: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.name == key)
    }

    pub fn note(&mut self, at: &Location, text: impl Into<String>) {
        self.notes.push((at.clone(), text.into()));
    }
}

/// A whole configuration as written.
#[derive(Debug, Default)]
pub struct Raw {
    /// `[global]` keys.
    pub global: Vec<Key>,
    /// `[defaults]` keys: a service's own keys win.
    pub defaults: Vec<Key>,
    pub services: Vec<Draft>,
    /// Problems met reading it, reported after those of `[global]` and
    /// before those of the services.
    pub diagnostics: Vec<Diagnostic>,
    /// Relative `server` and `banner_fail` paths are taken from this file's
    /// directory; from the directory of the file each key is written in
    /// when `None`.
    pub relative_to: Option<PathBuf>,
}
