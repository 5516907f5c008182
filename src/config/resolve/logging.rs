//! `log_on_success` and `log_on_failure`: the fields of the
//! per-connection log lines.

use super::Svc;
use crate::config::error::quote;
use crate::log::LogFields;

pub fn fields(svc: &Svc<'_>) -> LogFields {
    let mut log = LogFields::default();
    if let Some(f) = svc.get("log_on_success") {
        if let Some(words) = svc.many(f.each(|w| word(w, &LogFields::SUCCESS))) {
            log.pid = words.contains(&"PID");
            log.host = words.contains(&"HOST");
            log.exit = words.contains(&"EXIT");
            log.duration = words.contains(&"DURATION");
            log.traffic = words.contains(&"TRAFFIC");
        }
    }
    if let Some(f) = svc.get("log_on_failure") {
        if let Some(words) = svc.many(f.each(|w| word(w, &LogFields::FAILURE))) {
            log.fail_host = words.contains(&"HOST");
            log.attempt = words.contains(&"ATTEMPT");
        }
    }
    log
}

/// A log field name from `known`, any case.
fn word(w: &str, known: &[&'static str]) -> Result<&'static str, String> {
    known
        .iter()
        .find(|k| k.eq_ignore_ascii_case(w))
        .copied()
        .ok_or_else(|| format!("\"{w}\" is not one of {}", known.join(", "), w = quote(w)))
}
