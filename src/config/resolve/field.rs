//! One raw value being resolved, and the checks of its shape that every
//! key shares (a string, an integer in a range, seconds, a list...), each
//! failing with `KEY: expected ...` at the value.

use std::path::Path;
use std::time::Duration;

use crate::config::raw::{Key, Value};
use crate::config::{ConfigError, Location};

/// A value with its key's name and where it was written.
#[derive(Clone, Copy)]
pub struct Field<'a> {
    pub name: &'static str,
    pub value: &'a Value,
    pub at: &'a Location,
    /// Where each item was written; empty: at `at`.
    items: &'a [Location],
    /// The file relative paths in it are taken from.
    pub file: &'a Path,
}

impl<'a> Field<'a> {
    pub fn new(key: &'a Key, file: &'a Path) -> Field<'a> {
        Field {
            name: key.name,
            value: &key.value,
            at: &key.at,
            items: &key.items,
            file,
        }
    }

    /// An item of this list, for checks that report at the whole value.
    pub fn element(&self, value: &'a Value) -> Field<'a> {
        Field {
            value,
            items: &[],
            ..*self
        }
    }

    /// An entry of this table as a field of its own (`tls.cert`), its
    /// messages at the entry.
    pub fn entry(&self, name: &'static str, value: &'a Value, at: &'a Location) -> Field<'a> {
        Field {
            name,
            value,
            at,
            items: &[],
            file: self.file,
        }
    }

    /// Where item `i` was written.
    fn item_at(&self, i: usize) -> &'a Location {
        self.items.get(i).unwrap_or(self.at)
    }

    pub fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.at.clone(), message)
    }

    fn wrong_type(&self, expected: &str) -> ConfigError {
        self.err(format!(
            "{}: expected {expected}, found {}",
            self.name,
            self.value.type_str()
        ))
    }

    pub fn str(&self) -> Result<&'a str, ConfigError> {
        match self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.wrong_type("a string")),
        }
    }

    pub fn bool(&self) -> Result<bool, ConfigError> {
        match self.value {
            Value::Bool(b) => Ok(*b),
            _ => Err(self.wrong_type("true or false")),
        }
    }

    /// A duration in seconds: an integer or a float, not negative.
    pub fn seconds(&self) -> Result<Duration, ConfigError> {
        let secs = match self.value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            _ => return Err(self.wrong_type("a number of seconds")),
        };
        if secs.is_finite() && (0.0..=86400.0).contains(&secs) {
            Ok(Duration::from_secs_f64(secs))
        } else {
            Err(self.err(format!(
                "{}: expected seconds between 0 and 86400",
                self.name
            )))
        }
    }

    /// An integer between `min` and `max`.
    pub fn int(&self, min: i64, max: i64) -> Result<i64, ConfigError> {
        match self.value {
            Value::Int(n) if (min..=max).contains(n) => Ok(*n),
            Value::Int(_) => Err(self.err(format!(
                "{}: expected an integer from {min} to {max}",
                self.name
            ))),
            _ => Err(self.wrong_type("an integer")),
        }
    }

    /// Each string of a one-or-list value through `parse`, errors located
    /// at the item.
    pub fn each<T>(
        &self,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Vec<T>, Vec<ConfigError>> {
        let items = self.strings().map_err(|e| vec![e])?;
        let mut out = Vec::with_capacity(items.len());
        let mut errs = Vec::new();
        for (s, at) in items {
            match parse(s) {
                Ok(v) => out.push(v),
                Err(m) => errs.push(ConfigError::new(at, format!("{}: {m}", self.name))),
            }
        }
        if errs.is_empty() {
            Ok(out)
        } else {
            Err(errs)
        }
    }

    /// One string or a list of strings, each with its location.
    pub fn strings(&self) -> Result<Vec<(&'a str, Location)>, ConfigError> {
        match self.value {
            Value::Str(s) => Ok(vec![(s.as_str(), self.at.clone())]),
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Str(s) => Ok((s.as_str(), self.item_at(i).clone())),
                    other => Err(ConfigError::new(
                        self.item_at(i).clone(),
                        format!(
                            "{}: expected a string, found {}",
                            self.name,
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
    pub fn list(&self) -> Result<Vec<(&'a str, Location)>, ConfigError> {
        match self.value {
            Value::List(_) => self.strings(),
            _ => Err(self.wrong_type("a list of strings")),
        }
    }

    /// A table of string values.
    pub fn string_table(&self) -> Result<Vec<(&'a str, &'a str)>, ConfigError> {
        let Value::Table(t) = self.value else {
            return Err(self.wrong_type("a table of strings"));
        };
        t.iter()
            .enumerate()
            .map(|(i, (k, v))| match v {
                Value::Str(s) => Ok((k.as_str(), s.as_str())),
                other => Err(ConfigError::new(
                    self.item_at(i).clone(),
                    format!(
                        "{}.{}: expected a string, found {}",
                        self.name,
                        k,
                        other.type_str()
                    ),
                )),
            })
            .collect()
    }

    /// The entries of a table, each value with where it was written.
    pub fn entries(&self) -> Result<Vec<(&'a str, &'a Value, &'a Location)>, ConfigError> {
        let Value::Table(t) = self.value else {
            return Err(self.wrong_type("a table"));
        };
        Ok(t.iter()
            .enumerate()
            .map(|(i, (k, v))| (k.as_str(), v, self.item_at(i)))
            .collect())
    }

    /// An octal mode, at most 0o777: a string of octal digits ("027") or
    /// an integer (TOML's 0o027).
    pub fn mode(&self) -> Result<u32, ConfigError> {
        let mode = match self.value {
            Value::Int(n) => u32::try_from(*n).ok(),
            Value::Str(s) if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) => {
                u32::from_str_radix(s, 8).ok()
            }
            _ => None,
        };
        mode.filter(|m| *m <= 0o777).ok_or_else(|| {
            self.err(format!(
                "{}: expected an octal mode such as \"027\" or 0o027, at most 0o777",
                self.name
            ))
        })
    }

    /// One of `choices`.
    pub fn choice<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let s = self.str()?;
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(format!(
                    "{}: \"{s}\" is not one of {}",
                    self.name,
                    names.join(", ")
                ))
            })
    }

    /// The directory relative paths are taken from.
    pub fn dir(&self) -> &'a Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}
