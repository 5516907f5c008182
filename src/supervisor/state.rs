//! The state of every service: SIGUSR1's `state` lines, and the
//! `stats::Snapshot` that `oxinetd status` shows.

use std::rc::Rc;
use std::time::{Instant, SystemTime};

use crate::config::{BindAddr, Handler};
use crate::log::Event;
use crate::stats::{HandlerView, ListenerView, ServiceView, Snapshot};

use super::listeners::ListenState;
use super::{Mode, Running, Supervisor};

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Accept => "stream-nowait",
        Mode::Relay => "dgram-nowait",
        Mode::HandOver => "wait",
        Mode::InternalStream(_) | Mode::InternalDgram(_) => "internal",
        Mode::Forward => "forward",
    }
}

fn unix_time(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Supervisor {
    /// SIGUSR1: one `state` line per service, then a summary. Rare and on
    /// demand, so plain formatting is fine here.
    pub(super) fn log_state(&mut self) {
        let now = Instant::now();
        let mut names: Vec<&Rc<str>> = self.by_service.keys().collect();
        names.sort();
        for name in names {
            let ids = &self.by_service[name];
            let mut listen = String::new();
            let mut svc = None;
            let mut paused = false;
            for l in ids.iter().filter_map(|id| self.listeners.get(id)) {
                if !listen.is_empty() {
                    listen.push(',');
                }
                match l.local {
                    Some(a) => listen.push_str(&format!("{a}/{}", l.key.kind.ip_protocol())),
                    None => listen.push_str(&l.key.to_string()),
                }
                paused |= matches!(l.state, ListenState::Paused(..));
                svc = Some(Rc::clone(&l.service));
            }
            let Some(svc) = svc else { continue };
            let load = svc.load.borrow();
            paused |= load.paused(now);
            let max = svc.svc.limits.max_instances(svc.spawns());
            let instances = (max != usize::MAX).then_some(max);
            let mode = mode_name(svc.mode);
            self.log.event(Event::ServiceState {
                service: name,
                listen: &listen,
                mode,
                running: load.running,
                instances,
                paused,
            });
        }
        self.log.event(Event::State {
            services: self.by_service.len(),
            listeners: self.listeners.len(),
            handlers: self.children.len(),
            connections: self.conns.len() + self.forwards.len(),
            max_processes: self.global.max_processes,
            draining: self.draining.is_some(),
        });
    }

    /// Everything `status` reports; only `service` when given.
    pub(super) fn snapshot(&self, service: Option<&str>) -> Snapshot {
        self.snapshot_of(service, true)
    }

    /// The snapshot; without the running handlers' list unless `handlers`
    /// (metrics has no use for it: peers are not labels).
    pub(super) fn snapshot_of(&self, service: Option<&str>, handlers: bool) -> Snapshot {
        let now = Instant::now();
        let mut services: Vec<ServiceView> = self
            .running
            .iter()
            .filter(|r| service.is_none_or(|s| *r.name == *s))
            .map(|r| self.service_view(r, now, handlers))
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        let fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count().saturating_sub(1));
        Snapshot {
            pid: std::process::id(),
            uptime: now.duration_since(self.started),
            started_at: unix_time(self.started_at),
            config: self.opts.config.display().to_string(),
            loaded_at: unix_time(self.loaded_at),
            global: self.counters.clone(),
            processes: self.children.len(),
            max_processes: self.global.max_processes,
            fds,
            fd_limit: self.fd_budget.limit as u64,
            connections: self.conns.len() + self.forwards.len(),
            draining: self.draining.is_some(),
            services,
        }
    }

    fn service_view(&self, r: &Rc<Running>, now: Instant, with_handlers: bool) -> ServiceView {
        let load = r.load.borrow();
        let max = r.svc.limits.max_instances(r.spawns());
        let mut listeners = Vec::new();
        let ids = self.by_service.get(&r.name).map_or(&[][..], |v| &v[..]);
        for l in ids.iter().filter_map(|id| self.listeners.get(id)) {
            let addr = match (&l.key.addr, l.local) {
                (BindAddr::Unix(p), _) => p.display().to_string(),
                (_, Some(a)) => crate::spawn::unmap(a).to_string(),
                (_, None) => l.key.to_string(),
            };
            let mut view = ListenerView {
                addr,
                proto: l.key.proto_name(),
                state: "armed",
                until: None,
                pid: None,
                why: None,
            };
            match l.state {
                ListenState::Busy => {
                    view.state = "busy";
                    view.pid = self
                        .children
                        .iter()
                        .find(|(_, c)| c.holds == Some(l.id))
                        .map(|(pid, _)| pid);
                    view.why = Some("a wait handler holds the socket".into());
                }
                ListenState::Paused(until, why) if until > now => {
                    view.state = "paused";
                    view.until = Some(until - now);
                    view.why = Some(why.why().into());
                }
                _ if load.paused(now) => {
                    view.state = "paused";
                    view.until = load.paused_until.map(|t| t.saturating_duration_since(now));
                    view.why = Some(match r.svc.limits.rate {
                        Some(rate) if rate.per_second() => {
                            format!("cps exceeded ({}/s)", rate.count)
                        }
                        Some(rate) => format!("rate exceeded ({})", rate.window()),
                        None => "rate exceeded".into(),
                    });
                }
                _ if !l.watching => {
                    view.state = "full";
                    view.why = Some(if load.full(max) {
                        format!("instances ({max}) reached")
                    } else {
                        format!("max_processes ({}) reached", self.global.max_processes)
                    });
                }
                _ => {}
            }
            listeners.push(view);
        }
        for (_, key, err) in self.bind_failures.iter().filter(|f| f.0 == r.name) {
            listeners.push(ListenerView {
                addr: key.to_string(),
                proto: key.proto_name(),
                state: "failed",
                until: None,
                pid: None,
                why: Some(err.clone()),
            });
        }
        let mut handlers: Vec<HandlerView> = self
            .children
            .iter()
            .filter(|_| with_handlers)
            .filter(|(_, c)| c.service == r.name)
            .map(|(pid, c)| HandlerView {
                pid: Some(pid),
                peer: c.peer.map(|p| crate::spawn::unmap(p).to_string()),
                age: now.saturating_duration_since(c.started),
            })
            .collect();
        handlers.extend(
            self.conns
                .values()
                .filter(|_| with_handlers)
                .filter(|c| Rc::ptr_eq(&c.service, r))
                .map(|c| HandlerView {
                    pid: None,
                    peer: Some(c.peer.to_string()),
                    age: now.saturating_duration_since(c.started),
                }),
        );
        handlers.extend(
            self.forwards
                .values()
                .filter(|f| Rc::ptr_eq(&f.service, r))
                .map(|f| HandlerView {
                    pid: None,
                    peer: f.peer.map(|p| p.to_string()),
                    age: now.saturating_duration_since(f.started),
                }),
        );
        handlers.sort_by_key(|h| std::cmp::Reverse(h.age));
        ServiceView {
            name: r.name.to_string(),
            mode: mode_name(r.mode),
            server: match &r.svc.handler {
                Handler::Exec { server, .. } => server.display().to_string(),
                Handler::Internal(i) => format!("internal:{}", i.name()),
                Handler::Forward(f) => format!("forward:{}", f.target),
            },
            running: load.running,
            instances: (max != usize::MAX).then_some(max),
            listeners,
            handlers,
            total: load.stats.total,
            since_reload: load.stats.since_reload(),
        }
    }
}
