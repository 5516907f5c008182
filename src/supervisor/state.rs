//! SIGUSR1: the state of every service, logged.

use std::rc::Rc;
use std::time::Instant;

use crate::log::Event;

use super::listeners::ListenState;
use super::{Mode, Supervisor};

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
                paused |= matches!(l.state, ListenState::Paused(_));
                svc = Some(Rc::clone(&l.service));
            }
            let Some(svc) = svc else { continue };
            let load = svc.load.borrow();
            paused |= load.paused(now);
            let max = svc.svc.limits.max_instances(svc.spawns());
            let instances = (max != usize::MAX).then_some(max);
            let mode = match svc.mode {
                Mode::Accept => "stream-nowait",
                Mode::Relay => "dgram-nowait",
                Mode::HandOver => "wait",
                Mode::InternalStream(_) | Mode::InternalDgram(_) => "internal",
            };
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
            connections: self.conns.len(),
            max_processes: self.global.max_processes,
            draining: self.draining.is_some(),
        });
    }
}
