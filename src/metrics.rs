//! The Prometheus text exposition format (version 0.0.4) of a
//! [`Snapshot`]: what `internal:metrics` serves. The same figures as
//! `oxinetd status`, read from the same snapshot; the list, with each
//! metric's type, is in oxinetd(8), CONTROL, Metrics.
//!
//! Counters are the counts since oxinetd started (a reload does not reset
//! them; a service removed and added back once its handlers are gone
//! starts again from zero, which Prometheus takes as a counter reset).
//! Label values come from the config only (service names, listen
//! addresses, programs) and from fixed sets (refusal reasons, listener
//! states): never from peers, so the number of series is the config's.

use std::fmt::Write as _;

use crate::stats::{Counts, ServiceView, Snapshot, REASONS};

/// The states a listener can be in (`ListenerView::state`), one series
/// each in `oxinetd_listener_state`.
pub const LISTENER_STATES: [&str; 5] = ["armed", "busy", "paused", "full", "failed"];

/// A label value as the format wants it: backslash, double quote and line
/// feed escaped.
fn label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `# HELP` and `# TYPE` of one family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// One sample: `name{labels} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            label_value(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A family with one sample and no labels.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    sample(out, name, &[], value);
}

/// A family with one sample per service.
fn per_service(
    out: &mut String,
    services: &[ServiceView],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ServiceView) -> Option<u64>,
) {
    family(out, name, kind, help);
    for s in services {
        if let Some(v) = value(s) {
            sample(out, name, &[("service", &s.name)], v);
        }
    }
}

/// A per-service counter from the counts since start.
fn counter(
    out: &mut String,
    services: &[ServiceView],
    name: &str,
    help: &str,
    value: impl Fn(&Counts) -> u64,
) {
    per_service(out, services, name, "counter", help, |s| {
        Some(value(&s.total))
    });
}

/// The page for `snap`.
pub fn render(snap: &Snapshot) -> String {
    let services = &snap.services[..];
    let mut o = String::with_capacity(4096 + 2048 * services.len());
    family(
        &mut o,
        "oxinetd_build_info",
        "gauge",
        "oxinetd's version (always 1).",
    );
    sample(
        &mut o,
        "oxinetd_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    single(
        &mut o,
        "oxinetd_start_time_seconds",
        "gauge",
        "When oxinetd started, in seconds since the epoch.",
        snap.started_at,
    );
    single(
        &mut o,
        "oxinetd_uptime_seconds",
        "gauge",
        "Seconds since oxinetd started.",
        format_args!("{:.3}", snap.uptime.as_secs_f64()),
    );
    single(
        &mut o,
        "oxinetd_config_load_time_seconds",
        "gauge",
        "When the running config was loaded, in seconds since the epoch.",
        snap.loaded_at,
    );
    single(
        &mut o,
        "oxinetd_config_reloads_total",
        "counter",
        "Reloads applied (SIGHUP or oxinetd reload).",
        snap.global.reloads,
    );
    single(
        &mut o,
        "oxinetd_config_reload_failures_total",
        "counter",
        "Reloads refused (the config had errors; the running one was kept).",
        snap.global.reload_failures,
    );
    single(
        &mut o,
        "oxinetd_processes",
        "gauge",
        "Handler processes running, against max_processes.",
        snap.processes,
    );
    single(
        &mut o,
        "oxinetd_max_processes",
        "gauge",
        "The max_processes setting.",
        snap.max_processes,
    );
    if let Some(fds) = snap.fds {
        single(
            &mut o,
            "oxinetd_open_fds",
            "gauge",
            "Descriptors oxinetd has open.",
            fds,
        );
    }
    single(
        &mut o,
        "oxinetd_max_fds",
        "gauge",
        "oxinetd's descriptor limit (RLIMIT_NOFILE).",
        snap.fd_limit,
    );
    single(
        &mut o,
        "oxinetd_internal_connections",
        "gauge",
        "TCP connections of internal services open.",
        snap.connections,
    );
    single(
        &mut o,
        "oxinetd_stopping",
        "gauge",
        "1 while oxinetd stops (SIGTERM or oxinetd stop), else 0.",
        u8::from(snap.draining),
    );

    family(
        &mut o,
        "oxinetd_service_info",
        "gauge",
        "Each service of the running config, its mode and server (always 1).",
    );
    for s in services {
        sample(
            &mut o,
            "oxinetd_service_info",
            &[
                ("service", &s.name),
                ("mode", s.mode),
                ("server", &s.server),
            ],
            1,
        );
    }
    per_service(
        &mut o,
        services,
        "oxinetd_running",
        "gauge",
        "Handlers (or internal connections) running.",
        |s| Some(s.running as u64),
    );
    per_service(
        &mut o,
        services,
        "oxinetd_max_instances",
        "gauge",
        "The instances limit, for services that have one.",
        |s| s.instances.map(|n| n as u64),
    );
    per_service(
        &mut o,
        services,
        "oxinetd_paused",
        "gauge",
        "1 while a listener of the service is paused (cps or rate, or an accept error), else 0.",
        |s| Some(u64::from(s.listeners.iter().any(|l| l.state == "paused"))),
    );
    family(
        &mut o,
        "oxinetd_listener_state",
        "gauge",
        "1 for the state each listener is in (armed, busy, paused, full, failed), 0 for the others.",
    );
    for s in services {
        for l in &s.listeners {
            for state in LISTENER_STATES {
                sample(
                    &mut o,
                    "oxinetd_listener_state",
                    &[
                        ("service", &s.name),
                        ("listen", &l.addr),
                        ("proto", l.proto),
                        ("state", state),
                    ],
                    u8::from(l.state == state),
                );
            }
        }
    }

    counter(
        &mut o,
        services,
        "oxinetd_accepted_total",
        "Connections (or datagrams) admitted past access rules and limits.",
        |c| c.accepted,
    );
    family(
        &mut o,
        "oxinetd_refused_total",
        "counter",
        "Connections (or datagrams) refused, by reason.",
    );
    for s in services {
        for (reason, n) in REASONS.iter().zip(s.total.refused) {
            sample(
                &mut o,
                "oxinetd_refused_total",
                &[("service", &s.name), ("reason", reason)],
                n,
            );
        }
    }
    counter(
        &mut o,
        services,
        "oxinetd_spawned_total",
        "Handlers started.",
        |c| c.spawned,
    );
    counter(
        &mut o,
        services,
        "oxinetd_spawn_failures_total",
        "Handlers that could not be started (no pipe or clone, or a step before exec failed).",
        |c| c.spawn_failed,
    );
    family(
        &mut o,
        "oxinetd_exits_total",
        "counter",
        "Handlers reaped after an exit, by status (ok: 0, error: another).",
    );
    for s in services {
        for (status, n) in [("ok", s.total.exit_ok), ("error", s.total.exit_error)] {
            sample(
                &mut o,
                "oxinetd_exits_total",
                &[("service", &s.name), ("status", status)],
                n,
            );
        }
    }
    counter(
        &mut o,
        services,
        "oxinetd_signaled_total",
        "Handlers killed by a signal.",
        |c| c.signaled,
    );
    counter(
        &mut o,
        services,
        "oxinetd_timeouts_total",
        "Handlers that ran past their timeout.",
        |c| c.timeouts,
    );
    // Bytes are counted for internal services only.
    let internal = |s: &ServiceView| s.mode == "internal";
    per_service(
        &mut o,
        services,
        "oxinetd_received_bytes_total",
        "counter",
        "Bytes internal services received (TCP: counted when a connection ends).",
        |s| internal(s).then_some(s.total.bytes_in),
    );
    per_service(
        &mut o,
        services,
        "oxinetd_sent_bytes_total",
        "counter",
        "Bytes internal services sent (TCP: counted when a connection ends).",
        |s| internal(s).then_some(s.total.bytes_out),
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Global, ListenerView};
    use std::time::Duration;

    fn snapshot() -> Snapshot {
        let mut total = Counts {
            accepted: 3,
            ..Counts::default()
        };
        total.refused[0] = 2;
        Snapshot {
            pid: 1,
            uptime: Duration::from_millis(1500),
            started_at: 100,
            config: "/etc/oxinetd.toml".into(),
            loaded_at: 101,
            global: Global::default(),
            processes: 0,
            max_processes: 10,
            fds: None,
            fd_limit: 1024,
            connections: 0,
            draining: false,
            services: vec![ServiceView {
                name: "sock".into(),
                mode: "wait",
                server: "/srv/a\"b\\c".into(),
                running: 0,
                instances: None,
                listeners: vec![ListenerView {
                    addr: "/run/x\ny.sock".into(),
                    proto: "unix",
                    state: "failed",
                    until: None,
                    pid: None,
                    why: Some("no".into()),
                }],
                handlers: Vec::new(),
                total,
                since_reload: Counts::default(),
            }],
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let page = render(&snapshot());
        assert!(
            page.contains(
                r#"oxinetd_service_info{service="sock",mode="wait",server="/srv/a\"b\\c"} 1"#
            ),
            "{page}"
        );
        assert!(
            page.contains(
                r#"oxinetd_listener_state{service="sock",listen="/run/x\ny.sock",proto="unix",state="failed"} 1"#
            ),
            "{page}"
        );
    }

    #[test]
    fn counters_and_gauges() {
        let page = render(&snapshot());
        for line in [
            "# TYPE oxinetd_accepted_total counter",
            "oxinetd_accepted_total{service=\"sock\"} 3",
            "oxinetd_refused_total{service=\"sock\",reason=\"only_from\"} 2",
            "oxinetd_refused_total{service=\"sock\",reason=\"rate\"} 0",
            "oxinetd_uptime_seconds 1.500",
            "oxinetd_listener_state{service=\"sock\",listen=\"/run/x\\ny.sock\",proto=\"unix\",state=\"armed\"} 0",
        ] {
            assert!(page.contains(line), "{line} not in\n{page}");
        }
        // Bytes only for internal services; fds only when known.
        assert!(!page.contains("oxinetd_received_bytes_total{"));
        assert!(!page.contains("oxinetd_open_fds"));
        // Every family's TYPE once.
        let types: Vec<&str> = page.lines().filter(|l| l.starts_with("# TYPE")).collect();
        let mut unique = types.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(types.len(), unique.len());
    }
}
