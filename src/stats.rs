//! Counters and the status snapshot: what `oxinetd status` shows and what
//! a metrics exporter reads.
//!
//! Each service's [`Stats`] lives in its `limits::Load`, so it is shared
//! with the service's running handlers and carried to the next config by
//! name exactly as the load is (a service removed and added back while a
//! handler still runs keeps its figures; one whose handlers are all gone
//! starts again from zero). The counters are plain `u64`s bumped where the
//! event already happens: `admit_load` (accepted), `refused` (by reason),
//! `start` (spawned, spawn failed), `reap` (exits, timeouts, a failed
//! exec), `close_conn`, `end_forward` and `answer_datagrams` (bytes; a
//! forward's failed connects count as spawn failures): no allocation and
//! no system call on the per-connection path. `apply` marks where "since
//! the last reload" starts.
//!
//! A [`Snapshot`] is built by the supervisor on request (`status`) and is
//! the one source of what is reported: [`Snapshot::text`] is the table,
//! [`Snapshot::json`] the stable machine form documented in oxinetd(8).

use std::fmt::Write as _;
use std::time::Duration;

use crate::refusal::Refusal;

/// Refusal reasons as counted, in this order (`Counts::refused`); the
/// names are the `reason=` words of the `refuse` line (`cps` and `rate`
/// both counted as `rate`).
pub const REASONS: [&str; 11] = [
    "only_from",
    "no_access",
    "access_times",
    "per_source",
    "per_source_rate",
    "rate",
    "fd_reserve",
    "source_port",
    "reply_rate",
    "proxy_from",
    "proxy_header",
];

/// The index of `r` in [`REASONS`].
pub fn reason_index(r: &Refusal) -> usize {
    match r {
        Refusal::OnlyFrom => 0,
        Refusal::NoAccess(_) => 1,
        Refusal::AccessTimes => 2,
        Refusal::PerSource(_) => 3,
        Refusal::SourceRate(_) => 4,
        Refusal::Rate(_) => 5,
        Refusal::FdReserve(_) => 6,
        Refusal::SourcePort => 7,
        Refusal::ReplyRate => 8,
        Refusal::ProxyFrom => 9,
        Refusal::ProxyHeader(_) => 10,
    }
}

/// What happened to one service's connections. Every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections (or datagrams) admitted: past access rules and limits.
    pub accepted: u64,
    /// Connections (or datagrams) refused, by reason ([`REASONS`]).
    pub refused: [u64; REASONS.len()],
    /// Handlers started.
    pub spawned: u64,
    /// Handlers that could not be started: no pipe or clone, or a step
    /// before exec failed (the child's `unable to ...`); for a `forward`,
    /// connections whose upstream could not be reached.
    pub spawn_failed: u64,
    /// Handlers reaped with exit status 0.
    pub exit_ok: u64,
    /// Handlers reaped with another exit status.
    pub exit_error: u64,
    /// Handlers killed by a signal.
    pub signaled: u64,
    /// Handlers that ran past their `timeout`.
    pub timeouts: u64,
    /// Bytes received and sent by internal services (TCP: counted when a
    /// connection ends; UDP: per datagram answered), and by a `forward`:
    /// in from its clients (sent upstream), out to them.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counts {
    /// Total refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// What `self` has beyond `base` (an earlier copy of the same counts).
    pub fn since(&self, base: &Counts) -> Counts {
        let mut refused = [0; REASONS.len()];
        for (i, r) in refused.iter_mut().enumerate() {
            *r = self.refused[i].saturating_sub(base.refused[i]);
        }
        Counts {
            accepted: self.accepted.saturating_sub(base.accepted),
            refused,
            spawned: self.spawned.saturating_sub(base.spawned),
            spawn_failed: self.spawn_failed.saturating_sub(base.spawn_failed),
            exit_ok: self.exit_ok.saturating_sub(base.exit_ok),
            exit_error: self.exit_error.saturating_sub(base.exit_error),
            signaled: self.signaled.saturating_sub(base.signaled),
            timeouts: self.timeouts.saturating_sub(base.timeouts),
            bytes_in: self.bytes_in.saturating_sub(base.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(base.bytes_out),
        }
    }
}

/// A service's counters since oxinetd started, and where they stood at the
/// last reload (kept only once there was one: most services of a big
/// config never see a reload, and each copy is 168 bytes).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub total: Counts,
    at_reload: Option<Box<Counts>>,
}

impl Stats {
    /// A reload made a new config the running one.
    pub fn mark_reload(&mut self) {
        match &mut self.at_reload {
            // Nothing counted yet (the first config): "since" is "total".
            None if self.total == Counts::default() => {}
            Some(at) => **at = self.total,
            None => self.at_reload = Some(Box::new(self.total)),
        }
    }

    pub fn since_reload(&self) -> Counts {
        match &self.at_reload {
            Some(at) => self.total.since(at),
            None => self.total,
        }
    }

    pub fn refused(&mut self, r: &Refusal) {
        self.total.refused[reason_index(r)] += 1;
    }
}

/// Figures of the supervisor as a whole that only a snapshot reads.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// Reloads applied and refused (SIGHUP or `oxinetd reload`).
    pub reloads: u64,
    pub reload_failures: u64,
}

/// A listener as `status` shows it.
#[derive(Debug, Clone)]
pub struct ListenerView {
    /// The address bound (the port when 0 was asked), or the path.
    pub addr: String,
    /// `tcp`, `udp`, `unix`, ...
    pub proto: &'static str,
    /// `armed`, `busy`, `paused`, `full` (not watched: `instances` or
    /// `max_processes` reached) or `failed` (could not be bound).
    pub state: &'static str,
    /// For `paused`: how long until it is watched again.
    pub until: Option<Duration>,
    /// For `busy`: the pid of the `wait` handler; for `paused`, `full`
    /// and `failed`: why.
    pub pid: Option<i32>,
    pub why: Option<String>,
}

/// A running handler (or internal connection).
#[derive(Debug, Clone)]
pub struct HandlerView {
    /// `None` for an internal service's connection.
    pub pid: Option<i32>,
    pub peer: Option<String>,
    pub age: Duration,
}

/// One service.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub name: String,
    /// `stream-nowait`, `dgram-nowait`, `wait` or `internal`.
    pub mode: &'static str,
    /// The program, or `internal:NAME`.
    pub server: String,
    pub running: usize,
    /// `instances` when bounded.
    pub instances: Option<usize>,
    pub listeners: Vec<ListenerView>,
    pub handlers: Vec<HandlerView>,
    pub total: Counts,
    pub since_reload: Counts,
}

/// Everything `status` reports, at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pid: u32,
    pub uptime: Duration,
    /// Unix time of the start and of the running config's load.
    pub started_at: u64,
    pub config: String,
    pub loaded_at: u64,
    pub global: Global,
    pub processes: usize,
    pub max_processes: usize,
    /// Open descriptors (from /proc/self/fd; `None` if unreadable) and the
    /// limit.
    pub fds: Option<usize>,
    pub fd_limit: u64,
    /// Internal TCP connections open.
    pub connections: usize,
    pub draining: bool,
    pub services: Vec<ServiceView>,
}

fn secs(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64())
}

/// Seconds as people read them: `42s`, `3m12s`, `2h05m`, `3d04h`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A JSON string: `s` quoted, with what JSON requires escaped.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

fn json_opt<T: std::fmt::Display>(out: &mut String, v: Option<T>) {
    match v {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("null"),
    }
}

impl Counts {
    fn json(&self, out: &mut String) {
        let _ = write!(out, "{{\"accepted\":{},\"refused\":{{", self.accepted);
        for (i, name) in REASONS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "\"{name}\":{}", self.refused[i]);
        }
        let _ = write!(
            out,
            "}},\"spawned\":{},\"spawn_failed\":{},\"exit_ok\":{},\"exit_error\":{},\
             \"signaled\":{},\"timeouts\":{},\"bytes_in\":{},\"bytes_out\":{}}}",
            self.spawned,
            self.spawn_failed,
            self.exit_ok,
            self.exit_error,
            self.signaled,
            self.timeouts,
            self.bytes_in,
            self.bytes_out
        );
    }

    /// One table row's cells after the label.
    fn row(&self, out: &mut String, label: &str) {
        let refused: Vec<String> = REASONS
            .iter()
            .zip(self.refused)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        let line = format!(
            "    {label:<13} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7}  {}",
            self.accepted,
            self.spawned,
            self.spawn_failed,
            self.exit_ok,
            self.exit_error,
            self.signaled,
            self.timeouts,
            self.refused_total(),
            refused.join(" ")
        );
        let _ = writeln!(out, "{}", line.trim_end());
        if self.bytes_in > 0 || self.bytes_out > 0 {
            let _ = writeln!(
                out,
                "    {:<13} bytes in {} out {}",
                "", self.bytes_in, self.bytes_out
            );
        }
    }
}

impl Snapshot {
    /// The stable machine form (oxinetd(8), CONTROL): one JSON object.
    pub fn json(&self) -> String {
        let mut o = String::with_capacity(1024);
        let _ = write!(
            o,
            "{{\"version\":1,\"pid\":{},\"uptime_s\":{},\"started_at\":{},\"config\":",
            self.pid,
            secs(self.uptime),
            self.started_at
        );
        json_str(&mut o, &self.config);
        let _ = write!(
            o,
            ",\"loaded_at\":{},\"reloads\":{},\"reload_failures\":{},\"processes\":{},\
             \"max_processes\":{},\"fds\":",
            self.loaded_at,
            self.global.reloads,
            self.global.reload_failures,
            self.processes,
            self.max_processes
        );
        json_opt(&mut o, self.fds);
        let _ = write!(
            o,
            ",\"fd_limit\":{},\"connections\":{},\"draining\":{},\"services\":[",
            self.fd_limit, self.connections, self.draining
        );
        for (i, s) in self.services.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            o.push_str("{\"name\":");
            json_str(&mut o, &s.name);
            o.push_str(",\"mode\":");
            json_str(&mut o, s.mode);
            o.push_str(",\"server\":");
            json_str(&mut o, &s.server);
            let _ = write!(o, ",\"running\":{},\"instances\":", s.running);
            json_opt(&mut o, s.instances);
            o.push_str(",\"listeners\":[");
            for (j, l) in s.listeners.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                o.push_str("{\"addr\":");
                json_str(&mut o, &l.addr);
                o.push_str(",\"proto\":");
                json_str(&mut o, l.proto);
                o.push_str(",\"state\":");
                json_str(&mut o, l.state);
                o.push_str(",\"until_s\":");
                json_opt(&mut o, l.until.map(secs));
                o.push_str(",\"pid\":");
                json_opt(&mut o, l.pid);
                o.push_str(",\"why\":");
                json_opt_str(&mut o, l.why.as_deref());
                o.push('}');
            }
            o.push_str("],\"handlers\":[");
            for (j, h) in s.handlers.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                o.push_str("{\"pid\":");
                json_opt(&mut o, h.pid);
                o.push_str(",\"peer\":");
                json_opt_str(&mut o, h.peer.as_deref());
                let _ = write!(o, ",\"age_s\":{}}}", secs(h.age));
            }
            o.push_str("],\"total\":");
            s.total.json(&mut o);
            o.push_str(",\"since_reload\":");
            s.since_reload.json(&mut o);
            o.push('}');
        }
        o.push_str("]}\n");
        o
    }

    /// The human form: a header, then a block per service.
    pub fn text(&self) -> String {
        let mut o = String::with_capacity(1024);
        let fds = self.fds.map_or("?".to_string(), |n| n.to_string());
        let _ = writeln!(
            o,
            "oxinetd pid {}, up {}{}\nconfig {} (loaded {} ago; {} reloads, {} refused)\n\
             handlers {}/{} max_processes, fds {}/{}, internal connections {}",
            self.pid,
            human(self.uptime),
            if self.draining { ", STOPPING" } else { "" },
            self.config,
            human(Duration::from_secs(
                self.started_at
                    .saturating_add(self.uptime.as_secs())
                    .saturating_sub(self.loaded_at)
            )),
            self.global.reloads,
            self.global.reload_failures,
            self.processes,
            self.max_processes,
            fds,
            self.fd_limit,
            self.connections,
        );
        for s in &self.services {
            let instances = s.instances.map_or("-".to_string(), |n| n.to_string());
            let _ = writeln!(
                o,
                "\n{} ({}, {}): running {}/{}",
                s.name, s.mode, s.server, s.running, instances
            );
            for l in &s.listeners {
                let mut state = l.state.to_string();
                if let Some(pid) = l.pid {
                    let _ = write!(state, " (pid {pid})");
                }
                if let Some(u) = l.until {
                    let _ = write!(state, " for {}s", secs(u));
                }
                if let Some(why) = &l.why {
                    let _ = write!(state, ": {why}");
                }
                let _ = writeln!(o, "  {:<6} {:<28} {}", l.proto, l.addr, state);
            }
            for h in &s.handlers {
                let pid = h.pid.map_or("-".to_string(), |p| p.to_string());
                let _ = writeln!(
                    o,
                    "  handler pid {pid:<8} peer {:<24} age {}",
                    h.peer.as_deref().unwrap_or("-"),
                    human(h.age)
                );
            }
            let _ = writeln!(
                o,
                "    {:<13} {:>8} {:>8} {:>8} {:>6} {:>8} {:>8} {:>6} {:>7}  by reason",
                "",
                "accepted",
                "spawned",
                "failed",
                "exit0",
                "exit!=0",
                "signaled",
                "t/out",
                "refused"
            );
            s.total.row(&mut o, "since start");
            s.since_reload.row(&mut o, "since reload");
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reload_subtracts_the_mark() {
        let mut s = Stats::default();
        s.total.accepted = 5;
        s.refused(&Refusal::OnlyFrom);
        s.mark_reload();
        s.total.accepted += 2;
        s.refused(&Refusal::ReplyRate);
        let since = s.since_reload();
        assert_eq!(since.accepted, 2);
        assert_eq!(since.refused[0], 0);
        assert_eq!(since.refused[reason_index(&Refusal::ReplyRate)], 1);
        assert_eq!(s.total.refused_total(), 2);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut o = String::new();
        json_str(&mut o, "a\"b\\c\n\u{1}");
        assert_eq!(o, r#""a\"b\\c\n\u0001""#);
    }
}
