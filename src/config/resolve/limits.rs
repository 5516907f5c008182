//! `instances`, `per_source`, `per_source_prefix`, `reply_rate`,
//! `idle_timeout`, `peer_reply_rate`, `cps` and `rate`.

use std::time::Duration;

use super::field::Field;
use super::Svc;
use crate::config::raw::Value;
use crate::config::ConfigError;
use crate::limits::{Limits, Rate, DEFAULT_IDLE_TIMEOUT};

/// The limits of a service; unset ones keep their defaults.
pub fn resolve(svc: &Svc<'_>) -> Limits {
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
    if let Some(f) = svc.get("reply_rate") {
        limits.reply_rate = svc
            .ok(f.int(1, 100_000_000))
            .map_or(limits.reply_rate, |n| n as u32);
    }
    if let Some(f) = svc.get("idle_timeout") {
        limits.idle_timeout = svc.ok(f.seconds()).unwrap_or(DEFAULT_IDLE_TIMEOUT);
    }
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
