//! SIGUSR1: the state of every service, logged.

use std::rc::Rc;
use std::time::Instant;

use crate::info;
use crate::log::Q;

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
                    Some(a) => listen.push_str(&format!("{a}/{}", l.key.protocol)),
                    None => listen.push_str(&l.key.to_string()),
                }
                paused |= matches!(l.state, ListenState::Paused(_));
                svc = Some(Rc::clone(&l.service));
            }
            let Some(svc) = svc else { continue };
            let load = svc.load.borrow();
            paused |= load.paused(now);
            let max = svc.svc.limits.max_instances(svc.spawns());
            let instances = if max == usize::MAX {
                "none".to_string()
            } else {
                max.to_string()
            };
            let mode = match svc.mode {
                Mode::Accept => "stream-nowait",
                Mode::Relay => "dgram-nowait",
                Mode::HandOver => "wait",
                Mode::InternalStream(_) | Mode::InternalDgram(_) => "internal",
            };
            info!(
                self.log,
                "state service={name} listen={} mode={mode} running={}/{instances} paused={paused}",
                Q(&listen),
                load.running,
            );
        }
        info!(
            self.log,
            "state services={} listeners={} handlers={} connections={} max_processes={} draining={}",
            self.by_service.len(),
            self.listeners.len(),
            self.children.len(),
            self.conns.len(),
            self.global.max_processes,
            self.draining.is_some()
        );
    }
}
