//! Making a config the running one, at start and on SIGHUP.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{self, Config};
use crate::log::{Log, Q};
use crate::reload::{self, Slot};
use crate::spawn::Plan;
use crate::{error, info, listener, warning};

use super::listeners::{blocking, ListenState, Listener};
use super::{Mode, Running, Supervisor};

impl Supervisor {
    /// Make `config` the running one: keep, bind and close listeners.
    pub(super) fn apply(&mut self, config: Config) -> (usize, usize, usize) {
        let diff = reload::diff(self.listeners.values().map(Listener::slot), &config);
        let mut old: HashMap<Slot, Listener> =
            self.listeners.drain().map(|(_, l)| (l.slot(), l)).collect();
        let mut retry = Vec::new();
        let mut shared = Vec::new();
        let mut handed = Vec::new();
        let mut loads = HashMap::new();
        for svc in config.services {
            let name: Rc<str> = Rc::from(svc.name.as_str());
            let plan = match Plan::new(&svc) {
                Ok(p) => p,
                Err(e) => {
                    error!(self.log, "error service={name} msg={}", Q(&e));
                    continue;
                }
            };
            let load = match self.loads.get(&svc.name) {
                Some(load) => Rc::clone(load),
                None => self.retired.revive(&svc.name).unwrap_or_default(),
            };
            loads.insert(svc.name.clone(), Rc::clone(&load));
            let running = Rc::new(Running::new(svc, plan, load));
            for key in running.svc.listen.clone() {
                match old.remove(&Slot::new(key.clone(), &running.svc.name)) {
                    Some(mut l) => {
                        let was = l.service.mode;
                        let was_file = l.service.svc.socket_file;
                        l.service = Rc::clone(&running);
                        l.idle_exits = 0;
                        if blocking(was) != blocking(l.service.mode) {
                            self.set_mode(&l);
                        }
                        let file = &running.svc.socket_file;
                        if let Some(f) = l.file.as_ref().filter(|_| was_file != *file) {
                            if let Err(e) = listener::update_file(&f.path, f.id, file) {
                                self.bind_failed(&running.name, &key, &e);
                            }
                        }
                        self.listeners.insert(l.id, l);
                    }
                    None => {
                        // A port moving to another address: bound beside
                        // the old socket, which closes once drained; not
                        // beside one a `wait` handler holds (and keeps).
                        let mut share = false;
                        let overlapped = old.values().filter(|o| {
                            o.state != ListenState::Busy && reload::takes_over(&key, &o.key)
                        });
                        for o in overlapped {
                            if listener::share_port(&o.socket, true).is_ok() {
                                share = true;
                                handed.push(o.id);
                            }
                        }
                        match self.add_listener(&running, &key, share) {
                            Ok(id) if share => shared.push(id),
                            Ok(_) => {}
                            Err(e) => {
                                if e.kind() == io::ErrorKind::AddrInUse && !diff.close.is_empty() {
                                    retry.push((Rc::clone(&running), key));
                                } else {
                                    self.bind_failed(&running.name, &key, &e);
                                }
                            }
                        }
                    }
                }
            }
        }
        let closed = old.len();
        for (_, l) in old {
            let handed = handed.contains(&l.id);
            self.close_listener(l, handed);
        }
        // The new sockets, and any old one that was given SO_REUSEPORT but
        // then kept by a later service: no other socket may share them now.
        for id in shared.iter().chain(&handed) {
            if let Some(l) = self.listeners.get(id) {
                let _ = listener::share_port(&l.socket, false);
            }
        }
        // A new address may have overlapped one that was only now closed.
        for (running, key) in retry {
            if let Err(e) = self.add_listener(&running, &key, false) {
                self.bind_failed(&running.name, &key, &e);
            }
        }
        let old_loads = std::mem::replace(&mut self.loads, loads);
        self.retired.retire(old_loads, &self.loads);
        self.by_service.clear();
        for l in self.listeners.values() {
            let of = self.by_service.entry(Rc::clone(&l.service.name));
            of.or_default().push(l.id);
        }
        self.stale.all = true;
        self.internal_ports = self
            .listeners
            .values()
            .filter(|l| matches!(l.service.mode, Mode::InternalDgram(_)))
            .filter_map(|l| l.local.map(|a| a.port()))
            .collect();
        (diff.keep.len(), diff.bind.len(), closed)
    }

    /// SIGHUP: load the config again; apply it only if it is entirely valid.
    pub(super) fn reload(&mut self) {
        self.notifier.reloading();
        let started = Instant::now();
        let loaded = match config::load_with(&self.opts.config, self.opts.format, &self.ctx) {
            Ok(l) if l.errors.is_empty() => {
                log_problems(&mut self.log, &l);
                l
            }
            Ok(l) => {
                self.reload_failed(&l.errors);
                return;
            }
            Err(errors) => {
                self.reload_failed(&errors);
                return;
            }
        };
        self.global = loaded.config.global.clone();
        let (kept, bound, closed) = self.apply(loaded.config);
        crate::sys::trim_heap();
        info!(
            self.log,
            "reload listeners={} kept={kept} bound={bound} closed={closed} duration_us={}",
            self.listeners.len(),
            started.elapsed().as_micros()
        );
        self.notifier.ready();
    }

    pub(super) fn reload_failed(&mut self, errors: &[config::ConfigError]) {
        for e in errors {
            error!(self.log, "config-error at={} msg={}", e.at, Q(&e.message));
        }
        error!(
            self.log,
            "reload-failed errors={} msg=\"keeping the running config\"",
            errors.len()
        );
        self.notifier.ready();
    }
}

/// What loading found besides the services: errors (their services do not
/// run), services of another format that cannot run, settings ignored.
pub(super) fn log_problems(log: &mut Log, loaded: &config::Loaded) {
    for e in &loaded.errors {
        error!(log, "config-error at={} msg={}", e.at, Q(&e.message));
    }
    for e in &loaded.skipped {
        error!(log, "config-skipped at={} msg={}", e.at, Q(&e.message));
    }
    for w in &loaded.warnings {
        warning!(log, "config-warning at={} msg={}", w.at, Q(&w.message));
    }
}
