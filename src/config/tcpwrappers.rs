//! tcp_wrappers rules for services being migrated: oxinetd does not read
//! `/etc/hosts.allow` and `/etc/hosts.deny`, so a classic config whose
//! services they name would lose those rules silently. Each rule naming a
//! service that runs (by its name, its program's or `argv0`'s basename,
//! or `ALL`) is a warning at the rule's line, for `check`, `import` and a
//! start; `only_from`/`no_access` say the same thing.
//!
//! The files are read minimally: a rule is the daemon list before its
//! first `:` (words separated by commas or blanks, `EXCEPT` excluding what
//! follows, `name@host` read as `name`), after joining `\`-continued lines
//! and dropping `#` comments. `OXINETD_TCPWRAPPERS_DIR` names another
//! directory than `/etc` to read them from (tests, a config being migrated
//! from another machine's tree).

use std::path::{Path, PathBuf};

use super::classic::Translation;
use super::raw::Value;
use super::{ConfigError, Location};

/// The variable naming the directory of `hosts.allow` and `hosts.deny`.
pub const DIR_VAR: &str = "OXINETD_TCPWRAPPERS_DIR";

/// Longest file read: a hosts.allow is a few lines.
const MAX_BYTES: u64 = 1 << 20;

/// Warn in `t` about each rule of `hosts.allow`/`hosts.deny` that names
/// one of its services that would run.
pub fn warn(t: &mut Translation) {
    let dir = std::env::var_os(DIR_VAR).map_or_else(|| PathBuf::from("/etc"), PathBuf::from);
    let services: Vec<(usize, String, Vec<String>)> = t
        .services
        .iter()
        .enumerate()
        .filter(|(_, d)| d.disabled.is_none())
        .filter_map(|(i, d)| {
            let name = str_of(d.get("name"))?.to_owned();
            let mut daemons = vec![name.clone()];
            for key in ["server", "argv0"] {
                if let Some(base) = str_of(d.get(key)).and_then(basename) {
                    daemons.push(base.to_owned());
                }
            }
            Some((i, name, daemons))
        })
        .collect();
    if services.is_empty() {
        return;
    }
    for file in ["hosts.allow", "hosts.deny"] {
        let path = dir.join(file);
        for (line, daemons, text) in rules(&path) {
            for (i, name, known) in &services {
                if matches(&daemons, known) {
                    let at = Location {
                        file: path.clone(),
                        line,
                        col: 1,
                    };
                    let why = format!(
                        "{file} has a rule for it (\"{text}\"), and oxinetd does not \
                         read tcp_wrappers files: write it as only_from/no_access"
                    );
                    // In the import too, above the service.
                    t.services[*i].note(&at, format!("FIXME: {why}"));
                    t.warning(ConfigError::new(at, format!("service {name}: {why}")));
                }
            }
        }
    }
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    match v {
        Some(Value::Str(s)) => Some(s),
        _ => None,
    }
}

fn basename(s: &str) -> Option<&str> {
    Path::new(s).file_name()?.to_str()
}

/// The rules of one file: line, daemon words, and the daemon list as
/// written (for the message). A missing or unreadable file has none.
fn rules(path: &Path) -> Vec<(usize, Vec<String>, String)> {
    use std::io::Read;
    let mut text = String::new();
    let read = std::fs::File::open(path).and_then(|f| f.take(MAX_BYTES).read_to_string(&mut text));
    if read.is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut first = 0;
    for (i, raw) in text.lines().enumerate() {
        if logical.is_empty() {
            first = i + 1;
        }
        match raw.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                logical.push(' ');
                continue;
            }
            None => logical.push_str(raw),
        }
        let line = std::mem::take(&mut logical);
        let line = line.split('#').next().unwrap_or("");
        let Some((list, _)) = line.split_once(':') else {
            continue;
        };
        let words: Vec<String> = list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(|w| w.split('@').next().unwrap_or(w).to_owned())
            .collect();
        if !words.is_empty() {
            out.push((first, words, list.trim().to_owned()));
        }
    }
    out
}

/// Whether a daemon list names one of `known` (or ALL), `EXCEPT` taking
/// out what follows it.
fn matches(words: &[String], known: &[String]) -> bool {
    let split = words.iter().position(|w| w == "EXCEPT");
    let (with, without) = words.split_at(split.unwrap_or(words.len()));
    let names = |list: &[String]| {
        list.iter()
            .any(|w| w == "ALL" || known.iter().any(|k| k == w))
    };
    let except = without.get(1..).unwrap_or(&[]);
    names(with) && !except.iter().any(|w| known.iter().any(|k| k == w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_lists() {
        let known = vec!["finger".to_owned(), "in.fingerd".to_owned()];
        let w = |s: &str| -> Vec<String> { s.split(' ').map(str::to_owned).collect() };
        assert!(matches(&w("in.fingerd"), &known));
        assert!(matches(&w("sshd in.fingerd"), &known));
        assert!(matches(&w("ALL"), &known));
        assert!(!matches(&w("ALL EXCEPT in.fingerd"), &known));
        assert!(!matches(&w("sshd"), &known));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.allow");
        std::fs::write(
            &p,
            "# comment: in.fingerd\nsshd: ALL\nin.fingerd, \\\n  in.telnetd@10.0.0.1 : 10.0.0.0/8 # x\n\nbad line\n",
        )
        .unwrap();
        let r = rules(&p);
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[1].0, 3);
        assert_eq!(r[1].1, w("in.fingerd in.telnetd"));
        assert!(rules(&dir.path().join("missing")).is_empty());
    }
}
