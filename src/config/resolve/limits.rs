//! `instances`, `per_source`, `per_source_prefix`, `per_source_rate`, `reply_rate`,
//! `idle_timeout`, `peer_reply_rate`, `cps` and `rate`; `timeout` and
//! `kill_grace`.
//!
//! Two time limits, one per kind of service: `timeout` bounds an exec'd
//! handler (its socket is its own), `idle_timeout` the connections
//! oxinetd carries itself (internal services). Each set on a service of
//! the other kind is an error; `[defaults]` may hold both.

use std::time::Duration;

use super::field::Field;
use super::Svc;
use crate::config::raw::Value;
use crate::config::ConfigError;
use crate::limits::{Limits, Rate, DEFAULT_IDLE_TIMEOUT};
use crate::source_rate::SourceRate;

/// The limits of a service; unset ones keep their defaults.
pub fn resolve(svc: &Svc<'_>, internal: bool) -> Limits {
    let mut limits = Limits::default();
    if let Some(f) = svc.get("instances") {
        limits.instances = svc.ok(f.int(1, 1_000_000)).map(|n| n as usize);
    }
    if let Some(f) = svc.get("per_source") {
        limits.per_source = svc.ok(f.int(1, 1_000_000)).map(|n| n as usize);
    }
    if let Some(f) = svc.get("per_source_prefix") {
        limits.per_source_prefix = svc.ok(f.int(1, 128)).map_or(64, |n| n as u8);
    }
    if let Some(f) = svc.get("per_source_rate") {
        limits.source_rate = svc.ok(source_rate(f));
    }
    if let Some(f) = svc.get("reply_rate") {
        limits.reply_rate = svc
            .ok(f.int(1, 100_000_000))
            .map_or(limits.reply_rate, |n| n as u32);
    }
    if let Some(f) = svc.get("idle_timeout") {
        limits.idle_timeout = svc.ok(f.seconds()).unwrap_or(DEFAULT_IDLE_TIMEOUT);
    }
    if let Some(f) = svc.own("idle_timeout").filter(|_| !internal) {
        svc.report(f.err(
            "idle_timeout: applies to connections oxinetd carries itself (internal \
             services), not to an exec'd handler's, whose socket is its own; \
             timeout bounds how long a handler runs",
        ));
    }
    time_limit(svc, internal, &mut limits);
    if let Some(f) = svc.get("peer_reply_rate") {
        limits.peer_reply_rate = svc
            .ok(f.int(1, 100_000_000))
            .map_or(limits.peer_reply_rate, |n| n as u32);
    }
    if let Some(f) = svc.get("cps") {
        limits.rate = svc.ok(rate(f, false));
    }
    if let Some(f) = svc.get("rate") {
        if svc.get("cps").is_some() {
            svc.report(f.err("rate: cps is set too; keep one of them"));
        }
        limits.rate = svc.ok(rate(f, true));
    }
    limits
}

/// `timeout` and `kill_grace`. An internal service has neither: its own
/// `timeout` is refused with the other program-only keys, and one in
/// `[defaults]` is for the others.
fn time_limit(svc: &Svc<'_>, internal: bool, limits: &mut Limits) {
    let timeout = svc.get("timeout").and_then(|f| {
        let t = svc.ok(f.seconds())?;
        if t.is_zero() {
            svc.report(f.err("timeout: expected more than 0 seconds (leave it out for no limit)"));
        }
        Some(t)
    });
    if let Some(f) = svc.get("kill_grace") {
        limits.kill_grace = svc.ok(f.seconds()).unwrap_or(limits.kill_grace);
    }
    // Harmless in `[defaults]`, but on the service itself it says the
    // admin believes its handlers have a timeout: they do not.
    if let (Some(f), None) = (svc.own("kill_grace"), svc.get("timeout")) {
        if !internal {
            svc.report(f.err(
                "kill_grace: the service has no timeout (kill_grace is how long \
                 timeout's SIGTERM waits before SIGKILL); set timeout or remove kill_grace",
            ));
        }
    }
    if !internal {
        limits.timeout = timeout;
    }
}

/// `cps = [COUNT, PAUSE]` (a one-second window) or
/// `rate = [COUNT, WINDOW, PAUSE]`.
fn rate(f: Field<'_>, windowed: bool) -> Result<Rate, ConfigError> {
    let bad = || {
        f.err(if windowed {
            "rate: expected [COUNT, WINDOW_SECONDS, PAUSE_SECONDS], e.g. [256, 60, 600]"
        } else {
            "cps: expected [COUNT, SECONDS], e.g. [50, 10]"
        })
    };
    let Value::List(items) = f.value else {
        return Err(bad());
    };
    let (count, per, pause) = match &items[..] {
        [count, pause] if !windowed => (count, None, pause),
        [count, per, pause] if windowed => (count, Some(per), pause),
        _ => return Err(bad()),
    };
    let count = f.element(count).int(1, 1_000_000).map_err(|_| bad())?;
    let per = match per {
        Some(per) => f.element(per).seconds().map_err(|_| bad())?,
        None => Duration::from_secs(1),
    };
    if per.is_zero() {
        return Err(bad());
    }
    let pause = f.element(pause).seconds().map_err(|_| bad())?;
    Ok(Rate {
        count: count as u32,
        per,
        pause,
    })
}

/// `per_source_rate = [COUNT, SECONDS]`.
fn source_rate(f: Field<'_>) -> Result<SourceRate, ConfigError> {
    let bad = || f.err("per_source_rate: expected [COUNT, SECONDS], e.g. [10, 60]");
    let Value::List(items) = f.value else {
        return Err(bad());
    };
    let [count, per] = &items[..] else {
        return Err(bad());
    };
    let count = f.element(count).int(1, 1_000_000).map_err(|_| bad())?;
    let per = f.element(per).seconds().map_err(|_| bad())?;
    if per.is_zero() {
        return Err(bad());
    }
    Ok(SourceRate {
        count: count as u32,
        per,
    })
}
