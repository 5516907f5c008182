//! Making a config the running one, at start and on SIGHUP.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{self, Config, ListenKey, Severity};
use crate::listener;
use crate::log::{Event, Log, Problem};
use crate::reload::{self, Diff, Listen};
use crate::spawn::Plan;

use super::listeners::{blocking, ListenState, Listener};
use super::{Mode, Running, Supervisor};

/// What binding the new listeners of a reload leaves to do once the old
/// ones are closed.
#[derive(Default)]
struct Binds {
    /// New sockets bound with `SO_REUSEPORT` beside one closing.
    shared: Vec<u64>,
    /// Closing sockets a new one was bound beside (see `close_listener`).
    handed: Vec<u64>,
    /// New listeners that found their address in use: bound again after
    /// the close.
    retry: Vec<(Rc<Running>, ListenKey)>,
}

impl Supervisor {
    /// Make `config` the running one: keep, bind and close listeners as
    /// the reload diff says. Returns how many were kept, bound and closed.
    pub(super) fn apply(&mut self, config: Config) -> (usize, usize, usize) {
        let bound = self.listeners.drain().map(|(_, l)| (l.slot(), l));
        let diff = reload::diff(bound, &config);
        let (kept, to_bind) = diff.counts();
        let Diff {
            services,
            mut close,
        } = diff;
        // A new address that overlaps one closing is bound again once it
        // is closed, if it could not be bound beside it.
        let closing = !close.is_empty();
        let mut binds = Binds::default();
        let mut loads = HashMap::new();
        self.running.clear();
        self.bind_failures.clear();
        for (svc, listens) in config.services.into_iter().zip(services) {
            let name: Rc<str> = Rc::from(svc.name.as_str());
            let plan = match Plan::new(&svc) {
                Ok(p) => p,
                Err(e) => {
                    let msg = e.to_string();
                    self.log.event(Event::service_error(&name, &msg));
                    close.extend(listens.into_iter().filter_map(|l| match l {
                        Listen::Keep(l) => Some(l),
                        Listen::Bind(_) => None,
                    }));
                    continue;
                }
            };
            let load = match self.loads.get(&svc.name) {
                Some(load) => Rc::clone(load),
                None => self.retired.revive(&svc.name).unwrap_or_default(),
            };
            // `status` counts "since the last reload" from here.
            load.borrow_mut().stats.mark_reload();
            loads.insert(svc.name.clone(), Rc::clone(&load));
            let running = Rc::new(Running::new(svc, plan, load, &self.fd_budget));
            self.running.push(Rc::clone(&running));
            for listen in listens {
                match listen {
                    Listen::Keep(l) => self.keep_listener(*l, &running),
                    Listen::Bind(key) => {
                        self.bind_listener(&running, key, &close, closing, &mut binds)
                    }
                }
            }
        }
        let closed = close.len();
        for l in close {
            let handed = binds.handed.contains(&l.id);
            self.close_listener(*l, handed);
        }
        // The new sockets: no other socket may share them now.
        for id in &binds.shared {
            if let Some(l) = self.listeners.get(id).filter(|l| !l.key.opts.reuseport) {
                let _ = listener::share_port(&l.socket, false);
            }
        }
        // A new address may have overlapped one that was only now closed.
        for (running, key) in binds.retry {
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
        (kept, to_bind, closed)
    }

    /// A listener the new config keeps: it moves to `running` as it is,
    /// its blocking mode and file owner updated if they changed.
    fn keep_listener(&mut self, mut l: Listener, running: &Rc<Running>) {
        let was = l.service.mode;
        let was_file = l.service.svc.socket_file;
        l.service = Rc::clone(running);
        l.idle_exits = 0;
        if blocking(was) != blocking(l.service.mode) {
            self.set_mode(&l);
        }
        if was != l.service.mode {
            self.track_arrival(&mut l);
        }
        let file = &running.svc.socket_file;
        if let Some(f) = l.file.as_ref().filter(|_| was_file != *file) {
            if let Err(e) = listener::update_file(&f.path, f.id, file) {
                self.bind_failed(&running.name, &l.key, &e);
            }
        }
        self.listeners.insert(l.id, Box::new(l));
    }

    /// A listener the new config adds. A port moving to another address
    /// is bound beside the old socket (`close`), which closes once
    /// drained; not beside one a `wait` handler holds (and keeps).
    fn bind_listener(
        &mut self,
        running: &Rc<Running>,
        key: ListenKey,
        close: &[Box<Listener>],
        closing: bool,
        binds: &mut Binds,
    ) {
        let mut share = false;
        let overlapped = close
            .iter()
            .filter(|o| o.state != ListenState::Busy && reload::takes_over(&key, &o.key));
        for o in overlapped {
            if listener::share_port(&o.socket, true).is_ok() {
                share = true;
                binds.handed.push(o.id);
            }
        }
        match self.add_listener(running, &key, share) {
            Ok(id) if share => binds.shared.push(id),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && closing => {
                binds.retry.push((Rc::clone(running), key));
            }
            Err(e) => self.bind_failed(&running.name, &key, &e),
        }
    }

    /// SIGHUP or `oxinetd reload`: load the config again; apply it only if
    /// it is entirely valid. The listeners kept, bound and closed, or the
    /// errors that kept the running config.
    pub(super) fn reload(&mut self) -> Result<(usize, usize, usize), Vec<config::ConfigError>> {
        self.notifier.reloading();
        let started = Instant::now();
        let loaded = match config::load_with(&self.opts.config, self.opts.format, &self.ctx) {
            Ok(l) if l.problems(Severity::Error).next().is_none() => {
                log_problems(&mut self.log, &l);
                l
            }
            Ok(l) => {
                let errors: Vec<_> = l.problems(Severity::Error).cloned().collect();
                self.reload_failed(&errors);
                return Err(errors);
            }
            Err(errors) => {
                self.reload_failed(&errors);
                return Err(errors);
            }
        };
        self.global = loaded.config.global.clone();
        let idle = loaded.config.services.is_empty();
        let (kept, bound, closed) = self.apply(loaded.config);
        self.sync_control();
        self.loaded_at = std::time::SystemTime::now();
        self.counters.reloads += 1;
        self.sync_store(&[]);
        crate::sys::trim_heap();
        self.log.event(Event::Reload {
            listeners: self.listeners.len(),
            kept,
            bound,
            closed,
            duration_us: started.elapsed().as_micros(),
        });
        if idle {
            self.log.event(Event::Idle {
                config: &self.opts.config,
            });
        }
        self.notifier.ready();
        Ok((kept, bound, closed))
    }

    pub(super) fn reload_failed(&mut self, errors: &[config::ConfigError]) {
        for e in errors {
            self.log.event(Event::Config {
                problem: Problem::Error,
                at: &e.at,
                msg: &e.message,
            });
        }
        self.log.event(Event::ReloadFailed {
            errors: errors.len(),
        });
        self.counters.reload_failures += 1;
        self.notifier.ready();
    }
}

/// What loading found besides the services: errors (their services do not
/// run), services of another format that cannot run, settings ignored.
pub(super) fn log_problems(log: &mut Log, loaded: &config::Loaded) {
    let kinds = [
        (Problem::Error, Severity::Error),
        (Problem::Skipped, Severity::Skipped),
        (Problem::Warning, Severity::Warning),
    ];
    for (problem, severity) in kinds {
        for e in loaded.problems(severity) {
            log.event(Event::Config {
                problem,
                at: &e.at,
                msg: &e.message,
            });
        }
    }
}
