//! `oxinetd import`: a translated config (`classic::Translation`) written
//! as the TOML that says the same thing. Values go through the `toml`
//! serializer; the comments around them (the source of each service, each
//! setting with no equivalent, what is not converted) are written here.
//! Nothing is parsed back: the resolver runs the same raw form directly.

use std::fmt::Write as _;
use std::path::Path;

use super::classic::Translation;
use super::raw::{Key, Value};
use super::Severity;

/// The TOML text of `t`, translated from `format`.
pub fn render(t: &Translation, format: &str) -> String {
    let mut out = Text::default();
    out.comment(&format!("Converted from {format} by oxinetd import."));
    for src in &t.sources {
        out.comment(&format!("  {}", src.display()));
    }
    let not_run = t
        .problems(Severity::Error)
        .chain(t.problems(Severity::Skipped));
    for e in not_run {
        out.comment(&format!("NOT CONVERTED: {e}"));
    }
    if !t.global.is_empty() {
        out.line("");
        out.line("[global]");
        for (name, value, at) in &t.global {
            out.line(&key_line(&Key::new(name, value.clone(), at)));
        }
    }
    for d in &t.services {
        out.line("");
        out.comment(&d.origin.short());
        for (at, note) in &d.notes {
            out.comment(&format!("{}: {note}", at.short()));
        }
        if let Some(why) = &d.disabled {
            out.comment(&format!("disabled ({why}): not run"));
        }
        let lines = std::iter::once("[[service]]".to_owned()).chain(d.keys.iter().map(key_line));
        for line in lines {
            if d.disabled.is_some() {
                out.comment(&line);
            } else {
                out.line(&line);
            }
        }
    }
    out.0
}

/// Make the relative paths of `t` (`server`, `banner_fail`), which the
/// original's load takes from the directory of `config`, absolute, so the
/// import means the same wherever it is written (TOML would take them
/// from the new file's directory). Each is noted with its original form.
pub fn absolute_paths(t: &mut Translation, config: &Path) {
    let dir = config.parent().unwrap_or(Path::new("."));
    for d in &mut t.services {
        let mut notes = Vec::new();
        for key in d.keys.iter_mut().filter(|k| PATH_KEYS.contains(&k.name)) {
            let Value::Str(written) = &key.value else {
                continue;
            };
            if written.is_empty()
                || written.starts_with("internal:")
                || Path::new(written).is_absolute()
            {
                continue;
            }
            let joined = dir.join(written);
            let path = std::path::absolute(&joined).unwrap_or(joined);
            let Some(path) = path.to_str() else { continue };
            notes.push((
                key.at.clone(),
                format!(
                    "{} \"{written}\" was relative to the original's directory: written absolute",
                    key.name
                ),
            ));
            key.value = Value::Str(path.to_owned());
        }
        d.notes.extend(notes);
    }
}

/// The keys a classic format may write a relative path in.
const PATH_KEYS: &[&str] = &["server", "banner_fail"];

/// `name = VALUE`, the value written by the `toml` serializer.
fn key_line(key: &Key) -> String {
    match key.value.to_toml() {
        Ok(value) => format!("{} = {value}", key.name),
        // Not reached: a translation holds strings, integers, booleans
        // and lists and tables of them.
        Err(e) => format!("# {}: not written: {e}", key.name),
    }
}

#[derive(Default)]
struct Text(String);

impl Text {
    fn line(&mut self, text: &str) {
        self.0.push_str(text);
        self.0.push('\n');
    }

    /// A `# ...` line. Comment text comes from the input (values, paths,
    /// messages quoting a line): control characters are escaped, as TOML
    /// comments may not hold them.
    fn comment(&mut self, text: &str) {
        let mut line = String::with_capacity(text.len() + 2);
        line.push_str("# ");
        for c in text.chars() {
            if c.is_control() && c != '\t' {
                let _ = write!(line, "\\u{:04X}", c as u32);
            } else {
                line.push(c);
            }
        }
        self.line(line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

    fn line(value: Value) -> String {
        key_line(&Key::new("k", value, &Location::file(Path::new("f"))))
    }

    #[test]
    fn values_are_written_as_toml() {
        let written = line(Value::strs(vec!["a\"b".into(), "c\\d\u{1}".into()]));
        let parsed: toml::Table = toml::from_str(&written).unwrap();
        assert_eq!(
            parsed["k"],
            toml::Value::Array(vec!["a\"b".into(), "c\\d\u{1}".into()])
        );
        assert_eq!(
            line(Value::table(vec![("K".into(), "v w".into())])),
            r#"k = { K = "v w" }"#
        );
        assert_eq!(line(Value::ints(vec![50, 10])), "k = [50, 10]");
    }
}
