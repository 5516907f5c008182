//! Listeners across a restart: the sockets given at start (socket
//! activation, the fd store, a re-exec) taken instead of bound; the fd
//! store kept equal to the running listeners; and SIGUSR2, which executes
//! the supervisor again in place, keeping its listeners and its handlers.
//!
//! The fd store: after every `apply`, `sync_store` compares each service's
//! listener ids with what it last stored and sends the changed ones again
//! (`FDSTOREREMOVE=1` then `FDSTORE=1` + `FDNAME=<service>` + the fds),
//! and removes the names of services gone. systemd passes them back at the
//! next start as `LISTEN_FDS`: the same intake (`crate::handover`). A stop
//! under the store keeps the UNIX-domain socket files.
//!
//! SIGUSR2 (`Supervisor::upgrade`): waits while a handler holds a socket
//! (`wait`) or a reply (dgram `nowait`) or a child is between clone and
//! exec, and while accepted connections wait for their PROXY header
//! (`proxied`; `upgrade_quiet` keeps the `proxy_protocol` listeners out of
//! the poll set meanwhile, so the wait ends within `proxy_timeout`); loads
//! the config and refuses (logged) if it has errors; clears close-on-exec
//! on the listeners and the handlers' stderr pipes and `execve`s the file
//! at its own path, same argv, environment plus `OXINETD_*`. The pid is
//! the same, so handlers stay its children; the new image re-creates their
//! `Child` records (`adopt`; a `timeout` goes on where it was), counted in
//! their services' loads. The handled signals stay blocked across the
//! `execve` (`prepare_process(reexec)`), so one that arrives meanwhile
//! waits for the new image's handlers instead of killing it at its
//! default. A failed `execve` sets close-on-exec back and goes on.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use nix::sys::resource::{setrlimit, Resource};

use crate::children::{Child, Deadline, Stage, StderrPipe};
use crate::config::{self, Config, Severity};
use crate::handover::{self, Given, Handler, Limit, Phase};
use crate::log::{Event, LogFields, Problem};

use super::{Supervisor, Token};

impl Supervisor {
    /// Match the sockets given at start with `config`'s listeners (see
    /// `handover::assign`); log and close the others. Returns the names
    /// of those closed, to be removed from the fd store.
    pub(super) fn take_given(&mut self, given: Vec<Given>, config: &Config) -> Vec<String> {
        let (assigned, unused) = handover::assign(given, config);
        let mut names = Vec::new();
        for g in unused {
            let why = g.shape.unusable.unwrap_or("no service listens there");
            let msg = format!("given {}: {why}; closed", handover::describe(&g));
            self.log.event(Event::warning(&msg));
            names.extend(g.name);
        }
        self.given = assigned;
        names
    }

    /// After the first `apply`: a given socket still unused belonged to a
    /// service that could not start; it is closed.
    pub(super) fn given_left(&mut self) {
        for ((service, _), g) in std::mem::take(&mut self.given) {
            let msg = format!("given {}: not used; closed", handover::describe(&g));
            self.log.event(Event::Warning {
                service: Some(&service),
                pid: None,
                msg: &msg,
            });
        }
    }

    /// Keep the fd store equal to the listeners: each service whose
    /// listeners changed since the last call is stored again, each gone
    /// is removed, and so is each name in `gone` (given sockets closed).
    pub(super) fn sync_store(&mut self, gone: &[String]) {
        if !self.notifier.fd_store() {
            return;
        }
        for name in gone {
            if !self.by_service.contains_key(name.as_str()) {
                self.notifier.store(name, &[]);
            }
        }
        let mut now: HashMap<Rc<str>, Vec<u64>> = HashMap::new();
        for (name, ids) in &self.by_service {
            let mut ids = ids.clone();
            ids.sort_unstable();
            now.insert(Rc::clone(name), ids);
        }
        for (name, ids) in &now {
            if self.stored.get(name) != Some(ids) {
                let fds: Vec<BorrowedFd<'_>> = ids
                    .iter()
                    .filter_map(|id| self.listeners.get(id))
                    .map(|l| l.socket.as_fd())
                    .collect();
                self.notifier.store(name, &fds);
            }
        }
        for name in self.stored.keys() {
            if !now.contains_key(name) {
                self.notifier.store(name, &[]);
            }
        }
        self.stored = now;
    }

    /// The handlers a previous image of this process started: recorded
    /// as if started here, so their stderr is logged and their exit too.
    pub(super) fn adopt(&mut self, handlers: Vec<Handler>) {
        if handlers.is_empty() {
            return;
        }
        let me = std::process::id() as i32;
        for h in handlers {
            let stderr = h.stderr.and_then(crate::sys::adopt_fd);
            if !is_child_of(h.pid, me) {
                let msg = format!("handler {} is not a child of this process; ignored", h.pid);
                self.log.event(Event::warning(&msg));
                continue;
            }
            let stderr = stderr.map(StderrPipe::new);
            if let Some(s) = &stderr {
                self.watch(s.fd.as_fd(), Token::Stderr(h.pid));
            }
            let running = self
                .by_service
                .get(h.service.as_str())
                .and_then(|ids| ids.first())
                .and_then(|id| self.listeners.get(id))
                .map(|l| Rc::clone(&l.service));
            let load = self.loads.get(&h.service).cloned().unwrap_or_default();
            load.borrow_mut().started(h.source);
            let (name, log, program) = match &running {
                Some(r) => (
                    Rc::clone(&r.name),
                    r.svc.log,
                    r.plan.as_ref().map(|p| Rc::clone(&p.program)),
                ),
                None => (Rc::from(h.service.as_str()), LogFields::default(), None),
            };
            self.touch(&name);
            let started = Instant::now()
                .checked_sub(h.elapsed)
                .unwrap_or_else(Instant::now);
            // Its `timeout` goes on from where the old image left it.
            let deadline = h.limit.map(|l| {
                let stage = match l.phase {
                    Phase::Running => Stage::Running,
                    Phase::Termed(kill) => Stage::Termed(started + kill),
                    Phase::Killed => Stage::Killed,
                };
                self.deadline(h.pid, started + l.term, l.grace, stage)
            });
            self.children.insert(
                h.pid,
                Child {
                    program: program.unwrap_or_else(|| Rc::clone(&name)),
                    service: name,
                    peer: h.peer,
                    started,
                    stderr: stderr.map(Box::new),
                    holds: None,
                    probe: None,
                    reply: None,
                    load,
                    source: h.source,
                    log,
                    deadline,
                },
            );
        }
        // Any that ended around the exec.
        self.reap();
        self.stale.all = true;
    }

    /// SIGUSR2: execute this program again (the file now at its path: an
    /// upgraded binary), same pid and arguments, keeping the listeners and
    /// the running handlers (`handover`). Deferred while a handler holds
    /// a socket (`wait`) or a reply (dgram `nowait`), and refused, with
    /// nothing changed, when the config would not start. Connections
    /// waiting for their PROXY header hold it too, bounded by
    /// `proxy_timeout`, as no new ones are accepted meanwhile.
    pub(super) fn upgrade(&mut self) {
        let holding = self
            .children
            .iter()
            .filter(|(_, c)| c.holds.is_some() || c.reply.is_some())
            .count();
        if holding > 0 || self.spawner.busy() {
            if !self.upgrade_pending && holding > 0 {
                let msg = format!(
                    "upgrade deferred: {holding} handler(s) hold a socket or a reply; \
                     it happens when they end"
                );
                self.log.event(Event::warning(&msg));
            }
            self.upgrade_pending = true;
            return;
        }
        // Connections waiting for their PROXY header live only in this
        // image's memory: the exec would close them. Take no new ones
        // (the listeners of such services leave the poll set, and
        // connections queue in the kernel, carried over) and go when the
        // last has its header or its `proxy_timeout`.
        if !self.proxied.is_empty() {
            if !self.upgrade_quiet {
                let msg = format!(
                    "upgrade deferred: {} connection(s) wait for their PROXY header; \
                     it happens when they have it",
                    self.proxied.len()
                );
                self.log.event(Event::warning(&msg));
                self.upgrade_quiet = true;
                self.stale.all = true;
            }
            self.upgrade_pending = true;
            return;
        }
        self.upgrade_pending = false;
        if std::mem::take(&mut self.upgrade_quiet) {
            // Watched again if this image goes on (refused, exec failed).
            self.stale.all = true;
        }
        if let Err(errors) = self.check_config() {
            for e in &errors {
                self.log.event(Event::Config {
                    problem: Problem::Error,
                    at: &e.at,
                    msg: &e.message,
                });
            }
            let msg = format!(
                "upgrade refused: the config has {} error(s); this image keeps running",
                errors.len()
            );
            self.log.event(Event::error(&msg));
            return;
        }
        let exe = exe();
        let fds: Vec<(RawFd, Rc<str>)> = self
            .listeners
            .values()
            .map(|l| (l.socket.as_raw_fd(), Rc::clone(&l.service.name)))
            .collect();
        let handlers: Vec<Handler> = self
            .children
            .iter()
            .map(|(pid, c)| Handler {
                pid,
                service: c.service.to_string(),
                elapsed: c.started.elapsed(),
                stderr: c.stderr.as_ref().map(|p| p.fd.as_raw_fd()),
                peer: c.peer,
                source: c.source,
                limit: c.deadline.map(|d| carried(&d, c.started)),
            })
            .collect();
        let mut kept: Vec<RawFd> = fds.iter().map(|(fd, _)| *fd).collect();
        kept.extend(handlers.iter().filter_map(|h| h.stderr));
        let env = environment(&fds, &handlers);
        let argv: Vec<CString> = std::env::args_os()
            .filter_map(|a| CString::new(a.as_bytes()).ok())
            .collect();
        let Ok(path) = CString::new(exe.as_os_str().as_bytes()) else {
            return;
        };
        for fd in &kept {
            let _ = crate::sys::set_cloexec(*fd, false);
        }
        self.log.event(Event::Upgrade {
            exe: &exe,
            listeners: fds.len(),
            handlers: handlers.len(),
        });
        self.notifier.reloading();
        self.log.flush();
        // The new image takes the limit it starts with as the one to give
        // handlers back: the one this image started with.
        let nofile = self.spawner.nofile();
        if let Some(l) = nofile {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, l.rlim_cur, l.rlim_max);
        }
        let Err(e) = nix::unistd::execve(&path, &argv, &env);
        if let Some(l) = nofile {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, l.rlim_max, l.rlim_max);
        }
        for fd in &kept {
            let _ = crate::sys::set_cloexec(*fd, true);
        }
        let msg = format!(
            "unable to execute {}: {e}; this image keeps running",
            exe.display()
        );
        self.log.event(Event::error(&msg));
        self.notifier.ready();
    }

    /// Whether the new image would start: its config loads without error
    /// and does not leave it nothing to run.
    fn check_config(&self) -> Result<(), Vec<config::ConfigError>> {
        let loaded = config::load_with(&self.opts.config, self.opts.format, &self.ctx)?;
        let mut errors: Vec<_> = loaded.problems(Severity::Error).cloned().collect();
        if loaded.config.services.is_empty() {
            errors.extend(loaded.problems(Severity::Skipped).cloned());
        }
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors),
        }
    }
}

/// The program to execute again: the file at the path this one was
/// started from, which a package upgrade has replaced (the running one
/// is then "deleted"); this very file if that path is gone.
fn exe() -> PathBuf {
    let here = Path::new("/proc/self/exe");
    let Ok(path) = std::fs::read_link(here) else {
        return here.to_owned();
    };
    let bytes = path.as_os_str().as_bytes();
    match bytes.strip_suffix(b" (deleted)") {
        Some(p) if Path::new(OsStr::from_bytes(p)).is_file() => PathBuf::from(OsStr::from_bytes(p)),
        Some(_) => here.to_owned(),
        None => path,
    }
}

/// This process's environment for the new image: without any variable
/// of the intake, plus the ones naming what it keeps.
fn environment(fds: &[(RawFd, Rc<str>)], handlers: &[Handler]) -> Vec<CString> {
    let ours = [
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
        handover::ENV_PID,
        handover::ENV_FDS,
        handover::ENV_HANDLERS,
    ];
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| !ours.iter().any(|o| k.as_os_str() == OsStr::new(o)))
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).ok()
        })
        .collect();
    let list: Vec<String> = fds
        .iter()
        .map(|(fd, name)| format!("{fd}={name}"))
        .collect();
    let records: Vec<String> = handlers.iter().map(Handler::encode).collect();
    let add = [
        (handover::ENV_PID, std::process::id().to_string()),
        (handover::ENV_FDS, list.join(",")),
        (handover::ENV_HANDLERS, records.join(" ")),
    ];
    for (k, v) in add {
        if let Ok(c) = CString::new(format!("{k}={v}")) {
            env.push(c);
        }
    }
    env
}

/// Whether `pid`'s parent is `parent` (`/proc/PID/stat`, the field after
/// the command name); a child not yet reaped is there, even a zombie.
fn is_child_of(pid: i32, parent: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) == Some(parent)
}

/// A handler's `timeout` as a re-exec carries it: times since its start.
fn carried(d: &Deadline, started: Instant) -> Limit {
    let since = |t: Instant| t.saturating_duration_since(started);
    Limit {
        term: since(d.term_at),
        grace: d.grace,
        phase: match d.stage {
            Stage::Running => Phase::Running,
            Stage::Termed(kill_at) => Phase::Termed(since(kill_at)),
            Stage::Killed => Phase::Killed,
        },
    }
}
