//! The resolver: the raw form of a config (`raw::Raw`), from any front-end,
//! into the `Config` the supervisor runs. Every check of a value lives
//! here, once; users become uids, names become ports, paths are checked.
//!
//! One file per concern: `global`, `listen` (socket, protocol, addresses,
//! the socket file), `server` (program or internal service, argv),
//! `reach` (whether the handler's user can reach and run the server),
//! `sockopts` (the listening sockets' options), `identity`, `environment` (env, passenv, stderr), `access`, `limits`
//! (with `timeout`), `confine` (rlimits, nice, umask, privileges),
//! `sandbox` (chroot, namespaces; before `server`, which is a path inside
//! the chroot), `logging`, `proxy` (`proxy_protocol` and its keys), `tls`; `conflicts` (names and listeners two services may not share)
//! runs last, over the whole load. A service's keys are looked up with
//! `[defaults]` under them.

mod access;
mod confine;
mod conflicts;
mod environment;
mod field;
mod forward;
mod global;
mod identity;
mod limits;
mod listen;
mod logging;
mod proxy;
mod reach;
mod sandbox;
mod server;
mod sockopts;
mod tls;

pub(crate) use reach::inside;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use self::conflicts::check_conflicts;
use self::field::Field;
use self::server::Server;
use super::error::quote;
use super::keys;
use super::raw::{Draft, Key, Raw};
use super::{
    BindAddr, Config, ConfigError, Context, Diagnostic, Handler, ListenKey, Loaded, Location,
    Service,
};
use crate::privilege::Identity;

/// Resolve `raw`: the services that resolve, and the problems of those
/// that do not, in this order: `[global]`, what the front-end met, then
/// each service's.
pub fn resolve(raw: Raw, ctx: &Context) -> Loaded {
    let mut resolver = Resolver {
        ctx,
        identities: HashMap::new(),
        programs: HashMap::new(),
        reach: HashMap::new(),
    };
    let base = raw.relative_to.as_deref();
    let mut errors = Vec::new();
    let global = global::resolve(raw.global.iter().map(|k| field(k, base)), &mut errors);
    let mut diagnostics: Vec<Diagnostic> = errors.into_iter().map(Diagnostic::error).collect();
    diagnostics.extend(raw.diagnostics);
    let defaults: Vec<Field<'_>> = raw.defaults.iter().map(|k| field(k, base)).collect();
    let mut services = Vec::with_capacity(raw.services.len());
    for draft in &raw.services {
        let svc = Svc::new(draft, &defaults, base);
        diagnostics.extend(draft.problems.iter().cloned().map(Diagnostic::error));
        let resolved = resolver.service(&svc);
        diagnostics.extend(svc.warnings.take().into_iter().map(Diagnostic::warning));
        let errors = svc.errors.into_inner();
        if errors.is_empty() && draft.problems.is_empty() {
            services.extend(resolved);
        }
        diagnostics.extend(errors.into_iter().map(Diagnostic::error));
    }
    Loaded {
        config: Config { global, services },
        diagnostics,
    }
}

/// `key`, its relative paths taken from `base` or else its own file.
fn field<'a>(key: &'a Key, base: Option<&'a Path>) -> Field<'a> {
    Field::new(key, base.unwrap_or(&key.at.file))
}

/// What one resolve remembers across services.
struct Resolver<'c> {
    ctx: &'c Context,
    /// Identities already resolved: a thousand services as `nobody` read
    /// the user and group databases once, not a thousand times.
    identities: HashMap<identity::CacheKey, Result<Identity, String>>,
    /// Server programs already checked, with what is wrong with each, if
    /// anything: one `stat` per program of a load, not per service.
    programs: HashMap<PathBuf, Option<String>>,
    /// Programs checked to be reachable by a handler's ids, with what
    /// blocks each, if anything.
    reach: HashMap<ReachKey, Option<String>>,
}

/// One service being resolved: its keys, `[defaults]` under them, and its
/// errors, collected so that every problem is reported, not only the first.
struct Svc<'a> {
    own: Vec<Field<'a>>,
    defaults: &'a [Field<'a>],
    origin: &'a Location,
    /// ` "NAME"` for messages about the whole service, once the name is known.
    label: RefCell<String>,
    errors: RefCell<Vec<ConfigError>>,
    /// Valid but worth saying (a certificate about to expire).
    warnings: RefCell<Vec<ConfigError>>,
}

impl<'a> Svc<'a> {
    fn new(draft: &'a Draft, defaults: &'a [Field<'a>], base: Option<&'a Path>) -> Svc<'a> {
        Svc {
            own: draft.keys.iter().map(|k| field(k, base)).collect(),
            defaults,
            origin: &draft.origin,
            label: RefCell::new(String::new()),
            errors: RefCell::new(Vec::new()),
            warnings: RefCell::new(Vec::new()),
        }
    }

    /// `key` as set on the service, else in `[defaults]`.
    fn get(&self, key: &str) -> Option<Field<'a>> {
        self.own(key)
            .or_else(|| self.defaults.iter().find(|f| f.name == key).copied())
    }

    /// `key` as set on the service itself.
    fn own(&self, key: &str) -> Option<Field<'a>> {
        self.own.iter().find(|f| f.name == key).copied()
    }

    fn label(&self) -> String {
        self.label.borrow().clone()
    }

    fn report(&self, e: ConfigError) {
        self.errors.borrow_mut().push(e);
    }

    fn warn(&self, e: ConfigError) {
        self.warnings.borrow_mut().push(e);
    }

    /// An error about the whole service, at its start.
    fn report_here(&self, message: String) {
        self.report(ConfigError::new(self.origin.clone(), message));
    }

    fn ok<T>(&self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.report(e)).ok()
    }

    fn many<T>(&self, r: Result<T, Vec<ConfigError>>) -> Option<T> {
        r.map_err(|e| self.errors.borrow_mut().extend(e)).ok()
    }

    fn failed(&self) -> bool {
        !self.errors.borrow().is_empty()
    }
}

/// A program and who runs it: the handler's root ("/" or its chroot), the
/// path inside it, uid, gid and groups.
type ReachKey = (PathBuf, PathBuf, u32, u32, Vec<u32>);

/// What a service runs, as far as the rest of its resolution needs to
/// know.
struct Runs {
    server: Option<Server>,
    forward: Option<crate::forward::Forward>,
    /// `chroot`, `private_tmp`, `private_network` (an exec'd handler's).
    sandboxed: crate::confine::Confine,
    /// Served in-process (an internal service or a forward): no handler,
    /// so no identity or confinement.
    internal: bool,
    /// A TLS relay process stands in front of it (`tls` on an internal
    /// service or a forward, `forward_tls`), run as `user`.
    relay: bool,
}

impl Resolver<'_> {
    /// Resolve one service; `None` (with its errors in `svc`) if it is broken.
    fn service(&mut self, svc: &Svc<'_>) -> Option<Service> {
        let name = name(svc);
        let transport = listen::transport(svc);
        let (mut listen, unix) = self.listeners(svc, &transport);
        let proxy = proxy::resolve(svc, &transport, unix);
        if proxy.is_some() {
            sockopts::defer_for_proxy(svc, &mut listen);
        }
        let socket_file = if unix {
            self.socket_file(svc)
        } else {
            Default::default()
        };
        let runs = self.runs(svc, &transport);
        let identity = self.identity_of(svc, &runs);
        let (argv0, args) = server::argv(svc, runs.server.as_ref());
        let env = self.environment(svc);
        let stderr = environment::stderr(svc);
        let (access, banner_fail) = (access::rules(svc), access::banner(svc));
        let limits = limits::resolve(svc, runs.internal);
        let chrooted = runs.sandboxed.chroot.is_some();
        let mut confine = confine::resolve(svc, runs.internal);
        if !runs.internal {
            confine.chroot = runs.sandboxed.chroot;
            confine.private_tmp = runs.sandboxed.private_tmp;
            confine.private_network = runs.sandboxed.private_network;
        }
        let log = logging::fields(svc);
        let cx = tls::Context {
            chroot: chrooted,
            stderr,
            identity: identity.as_ref(),
        };
        let tls = tls::resolve(svc, &transport, &cx).map(Box::new);
        server::check_args(svc, &args);
        if svc.failed() {
            return None;
        }
        let handler = match (runs.server, runs.forward) {
            (_, Some(f)) => Handler::Forward(f),
            (Some(Server::Internal(i)), _) => Handler::Internal(i),
            (Some(Server::Exec(server)), _) => Handler::Exec {
                server,
                argv: std::iter::once(argv0?).chain(args).collect(),
            },
            (None, None) => return None,
        };
        Some(Service {
            name: name?.to_owned(),
            origin: svc.origin.clone(),
            listen,
            kind: transport.kind,
            wait: transport.wait,
            identity: identity?,
            handler,
            env,
            stderr,
            access: crate::config::Rare::new(access),
            banner_fail,
            limits: crate::config::Rare::new(limits),
            log,
            socket_file,
            confine: crate::config::Rare::new(confine),
            proxy: proxy.map(Box::new),
            tls,
        })
    }

    /// The listening sockets with their options, and whether they are
    /// UNIX-domain ones.
    fn listeners(
        &mut self,
        svc: &Svc<'_>,
        transport: &listen::Transport<'_>,
    ) -> (Vec<ListenKey>, bool) {
        let mut listen = self.listen(svc, transport);
        sockopts::resolve(svc, transport.kind, &mut listen);
        // Kept for the service's life: no spare capacity (idle RSS with
        // hundreds of services).
        listen.shrink_to_fit();
        let unix = listen
            .first()
            .is_some_and(|k| matches!(k.addr, BindAddr::Unix(_)));
        listen::socket_rules(svc, transport, !listen.is_empty(), unix);
        (listen, unix)
    }

    /// The program (or internal service, or forward) and its sandbox.
    fn runs(&mut self, svc: &Svc<'_>, transport: &listen::Transport<'_>) -> Runs {
        // A forward has no server: oxinetd relays its connections.
        let forwards = forward::names_forward(svc);
        // The sandbox first: `server` is a path inside the chroot.
        let mut sandboxed = crate::confine::Confine::default();
        if !server::names_internal(svc) && !forwards {
            sandbox::resolve(svc, self.ctx.euid, &mut sandboxed);
        }
        let (server, forward) = if forwards {
            (None, forward::resolve(svc, transport))
        } else {
            (self.server(svc, sandboxed.chroot.as_deref()), None)
        };
        if let Some(Server::Exec(path)) = &server {
            sandbox::check_server(svc, &sandboxed, path);
            forward::refuse_keys(svc);
        }
        if let Some(Server::Internal(i)) = &server {
            server::check_kind(svc, *i, transport.kind);
        }
        let internal = matches!(server, Some(Server::Internal(_))) || forwards;
        let relay = relayed(svc, transport);
        if matches!(server, Some(Server::Internal(_))) {
            refuse_program_keys(svc, relay);
        }
        Runs {
            server,
            forward,
            sandboxed,
            internal,
            relay,
        }
    }

    /// Who the handler (or the TLS relay) runs as, with what it must be
    /// able to reach as that user checked.
    fn identity_of(&mut self, svc: &Svc<'_>, runs: &Runs) -> Option<Identity> {
        // A TLS relay (`tls` on an internal service or a forward,
        // `forward_tls`) runs as `user`, as a handler would.
        let identity = self.identity(svc, runs.internal && !runs.relay);
        if let (Some(f), Some(fwd)) = (svc.get("forward_tls"), &runs.forward) {
            if fwd.tls.is_some() && svc.get("tls").is_none() {
                tls::relay_executable(svc, &f, identity.as_ref());
            }
        }
        // Inside a chroot, from its root: the directories above it are
        // crossed by the chroot, as root, before the switch of ids.
        if let (Some(Server::Exec(path)), Some(id)) = (&runs.server, &identity) {
            self.reachable(svc, path, runs.sandboxed.chroot.as_deref(), id);
        }
        identity
    }
}

/// `name`, required: it appears in logs.
fn name<'a>(svc: &Svc<'a>) -> Option<&'a str> {
    let name = match svc.get("name") {
        Some(f) => svc.ok(f.str().and_then(|s| valid_name(f, s))),
        None => {
            svc.report_here("service has no name".to_owned());
            None
        }
    };
    if let Some(n) = name {
        *svc.label.borrow_mut() = format!(" \"{n}\"", n = quote(n));
    }
    name
}

fn valid_name<'a>(f: Field<'_>, s: &'a str) -> Result<&'a str, ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(f.err(format!(
            "name \"{s}\": use 1-64 letters, digits, '-', '_', '.' or '@' (it appears in logs)"
        )))
    }
}

/// Keys that only mean something for a program, set on an internal
/// service itself (`[defaults]` may well hold them for others).
fn refuse_program_keys(svc: &Svc<'_>, relay: bool) {
    for key in keys::program_only().filter(|k| !(relay && keys::RELAY_KEYS.contains(k))) {
        if let Some(f) = svc.own(key) {
            svc.report(f.err(format!(
                "{key}: has no meaning for an internal service (it runs inside oxinetd)"
            )));
        }
    }
}

/// Whether an internal service or a forward has a TLS relay process
/// (`tls`, `forward_tls`), whose user `user` names.
/// `tls` from `[defaults]` on a service that cannot have it (datagram,
/// `wait`) is not one.
fn relayed(svc: &Svc<'_>, t: &listen::Transport<'_>) -> bool {
    let on = |k: &str| {
        svc.get(k)
            .is_some_and(|f| !matches!(f.value, crate::config::raw::Value::Bool(false)))
    };
    let stream =
        t.kind == crate::config::SocketKind::Stream && t.wait == crate::config::WaitMode::Nowait;
    (stream && on("tls")) || on("forward_tls")
}

/// An I/O error as its plain description ("No such file or directory").
fn io_problem(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(
        || e.to_string(),
        |n| nix::errno::Errno::from_raw(n).desc().to_string(),
    )
}
