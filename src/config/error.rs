//! `ConfigError`: one problem in a config file, located as `FILE:LINE:COL`.
//!
//! Every front-end reports through this type so that `oxinetd check`, startup
//! and reload print errors the same way, and all of them, not only the first.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in which file something was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub col: usize,
}

impl Location {
    /// The location of byte offset `offset` in `src`, read from `file`.
    pub fn at(file: &Path, src: &str, offset: usize) -> Location {
        let offset = offset.min(src.len());
        let before = src.get(..offset).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Location {
            file: file.to_path_buf(),
            line,
            col,
        }
    }

    /// A location for problems that concern a whole file (unreadable, missing).
    pub fn file(file: &Path) -> Location {
        Location {
            file: file.to_path_buf(),
            line: 1,
            col: 1,
        }
    }
}

impl Location {
    /// `FILE:LINE`, for comments and messages that point at a line.
    pub fn short(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One config problem. `Display` gives `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ConfigError {
    pub at: Location,
    pub message: String,
}

/// How much a problem weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The service (or the whole config) is wrong: it does not run, and a
    /// reload with it keeps the running config.
    Error,
    /// A line or service of another format that oxinetd cannot run (RPC,
    /// tcpmux, a redirect...): reported, not run, and no reason to reject
    /// a reload.
    Skipped,
    /// A setting of another format that is ignored or changed; the service
    /// still runs.
    Warning,
}

/// One problem of a load, with its weight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub problem: ConfigError,
}

impl Diagnostic {
    pub fn error(problem: ConfigError) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            problem,
        }
    }

    pub fn skipped(problem: ConfigError) -> Diagnostic {
        Diagnostic {
            severity: Severity::Skipped,
            problem,
        }
    }

    pub fn warning(problem: ConfigError) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            problem,
        }
    }
}

/// The longest message a `ConfigError` keeps, in characters: a backstop for
/// a quote of user text that `quote` does not shorten.
const MAX_MESSAGE: usize = 1000;

impl ConfigError {
    pub fn new(at: Location, message: impl Into<String>) -> ConfigError {
        let mut message = message.into();
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
            message.truncate(cut);
            message.push('…');
        }
        ConfigError { at, message }
    }
}

/// How many characters of user text an error quotes.
pub const QUOTE_CHARS: usize = 60;

/// User text as an error quotes it: at most `QUOTE_CHARS` characters, then
/// `…` when there is more (a 10 MB key is not echoed whole).
pub fn quote(s: &str) -> Quote<'_> {
    Quote(s)
}

/// See `quote`.
pub struct Quote<'a>(&'a str);

impl fmt::Display for Quote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(QUOTE_CHARS) {
            Some((cut, _)) => write!(f, "{}…", self.0.get(..cut).unwrap_or_default()),
            None => f.write_str(self.0),
        }
    }
}

/// The known word closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    // The distance is at least the difference in length: a word much longer
    // than every known one (a 10 MB key) costs nothing.
    let longest = known.iter().map(|k| k.len()).max().unwrap_or(0);
    if word.chars().nth(longest + 2.max(longest / 3)).is_some() {
        return None;
    }
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_chars() {
        let src = "a = 1\nbé = 2\n";
        let loc = Location::at(Path::new("f.toml"), src, src.find('=').unwrap());
        assert_eq!((loc.line, loc.col), (1, 3));
        let loc = Location::at(Path::new("f.toml"), src, src.rfind('=').unwrap());
        assert_eq!((loc.line, loc.col), (2, 4));
    }

    #[test]
    fn quotes_a_prefix_on_a_char_boundary() {
        assert_eq!(quote("short").to_string(), "short");
        let long = "é".repeat(10_000);
        let q = quote(&long).to_string();
        assert_eq!(q.chars().count(), QUOTE_CHARS + 1);
        assert!(q.ends_with('…'));
        let mixed = format!("a{}", "€😀".repeat(100));
        assert_eq!(quote(&mixed).to_string().chars().count(), QUOTE_CHARS + 1);
    }

    #[test]
    fn long_messages_are_cut() {
        let e = ConfigError::new(Location::file(Path::new("f")), "ß".repeat(5000));
        assert_eq!(e.message.chars().count(), MAX_MESSAGE + 1);
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(did_you_mean(&"u".repeat(1_000_000), &["user"]), None);
        let known = ["user", "group", "server", "passenv"];
        assert_eq!(did_you_mean("usr", &known), Some("user"));
        assert_eq!(did_you_mean("sever", &known), Some("server"));
        assert_eq!(did_you_mean("zzzzzz", &known), None);
    }
}
