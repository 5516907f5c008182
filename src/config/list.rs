//! `oxinetd check --list`: each service's effective settings, written as
//! the TOML a user would write for them, one `[[service]]` block each.
//! Settings left unset are shown with the value they take (`instances`,
//! `per_source_prefix`...), or as a comment when they have none
//! (`only_from`, `rate`); what TOML cannot say (uids, a banner's size)
//! is a comment too.

use std::fmt::Write as _;
use std::time::Duration;

use super::raw::Value;
use super::{BindAddr, Handler, Service, StderrMode, WaitMode};
use crate::fds::FdBudget;
use crate::log::LogFields;
use crate::privilege::Identity;

/// The block of `svc`, starting with `# from FILE:LINE:COL`; `budget`
/// gives the limits of internal stream services (see `fds`).
pub fn describe(svc: &Service, budget: &FdBudget) -> String {
    let mut out = Block(format!("# from {}\n[[service]]\n", svc.origin));
    out.set("name", Value::Str(svc.name.clone()));
    transport(svc, &mut out);
    match &svc.handler {
        Handler::Internal(i) => out.set("server", Value::Str(format!("internal:{}", i.name()))),
        Handler::Forward(f) => {
            out.set("forward", Value::Str(f.written.clone()));
            if f.written.parse::<std::net::SocketAddr>().is_err() {
                out.comment(&format!("forward: resolved to {} at load", f.target));
            }
            match f.proxy {
                Some(v) => out.set("forward_proxy_protocol", Value::Str(v.name().to_owned())),
                None => out.comment("forward_proxy_protocol: not set (no PROXY header)"),
            }
            out.set("forward_timeout", seconds(f.connect_timeout));
            if let Some(t) = &f.tls {
                let path = |p: &std::path::Path| Value::Str(p.display().to_string());
                let mut table = vec![
                    ("ca".to_owned(), path(&t.ca_path)),
                    ("server_name".to_owned(), Value::Str(t.server_name.clone())),
                ];
                if let (Some(c), Some(k)) = (&t.cert_path, &t.key_path) {
                    table.push(("cert".to_owned(), path(c)));
                    table.push(("key".to_owned(), path(k)));
                }
                out.set("forward_tls", Value::Table(table));
            }
        }
        Handler::Exec { server, argv } => {
            out.set("server", Value::Str(server.display().to_string()));
            let (argv0, args) = argv.split_first().map_or(("", &[][..]), |(a, r)| (a, r));
            out.set("argv0", Value::Str(argv0.to_owned()));
            out.set("args", Value::strs(args.to_vec()));
            identity(&svc.identity, &mut out);
            let mut env = svc.env.clone();
            env.sort();
            out.set("env", Value::table(env));
            out.set("stderr", Value::Str(stderr(svc.stderr).to_owned()));
            limits_and_privileges(&svc.confine, &mut out);
        }
    }
    // Who an internal service's or a forward's TLS relay runs as.
    let relayed =
        svc.tls.is_some() || matches!(&svc.handler, Handler::Forward(f) if f.tls.is_some());
    if relayed && !matches!(svc.handler, Handler::Exec { .. }) {
        identity(&svc.identity, &mut out);
    }
    access(svc, &mut out);
    limits(svc, budget, &mut out);
    log_fields(&svc.log, &mut out);
    out.0
}

/// The block being written.
struct Block(String);

impl Block {
    fn set(&mut self, key: &str, value: Value) {
        match value.to_toml() {
            Ok(v) => {
                let _ = writeln!(self.0, "{key} = {v}");
            }
            Err(e) => self.comment(&format!("{key}: cannot be written: {e}")),
        }
    }

    fn comment(&mut self, text: &str) {
        let _ = writeln!(self.0, "# {text}");
    }
}

/// `listen`, `socket`, `protocol`, `wait`, and a UNIX-domain socket's file.
fn transport(svc: &Service, out: &mut Block) {
    let unix = is_unix(svc);
    let listen = svc
        .listen
        .iter()
        .map(|k| match &k.addr {
            BindAddr::Unix(p) => p.display().to_string(),
            addr => addr.to_string(),
        })
        .collect();
    out.set("listen", Value::strs(listen));
    out.set("socket", Value::Str(svc.kind.name().to_owned()));
    let protocol = if unix { "unix" } else { svc.kind.ip_protocol() };
    out.set("protocol", Value::Str(protocol.to_owned()));
    out.set("wait", Value::Bool(svc.wait == WaitMode::Wait));
    if let Some(k) = svc.listen.first() {
        let o = &k.opts;
        if svc.kind.is_connected() {
            out.set("backlog", Value::Int(i64::from(o.backlog())));
        }
        for (name, on) in [
            ("reuseport", o.reuseport),
            ("freebind", o.freebind),
            ("keepalive", o.keepalive),
            ("nodelay", o.nodelay),
        ] {
            if on {
                out.set(name, Value::Bool(true));
            }
        }
        if o.defer_accept > 0 {
            out.set("defer_accept", Value::Int(i64::from(o.defer_accept)));
        }
        if let Some(dev) = &o.bind_device {
            out.set("bind_device", Value::Str(dev.clone()));
        }
        if let Some(v6only) = o.v6only {
            out.set("v6only", Value::Bool(v6only));
        }
    }
    if unix {
        out.set(
            "socket_mode",
            Value::Str(format!("{:04o}", svc.socket_file.mode)),
        );
        match svc.socket_file.owner {
            Some((uid, gid)) => out.set("socket_owner", Value::Str(format!("{uid}:{gid}"))),
            None => out.comment("socket_owner: not set (oxinetd's own user)"),
        }
    }
}

fn identity(identity: &Identity, out: &mut Block) {
    match identity {
        Identity::Inherit => out.comment("user: not set (handlers run as oxinetd's own user)"),
        Identity::Switch {
            user,
            uid,
            gid,
            groups,
        } => {
            out.set("user", Value::Str(user.clone()));
            out.set("group", Value::Str(gid.to_string()));
            let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
            out.comment(&format!(
                "uid {uid}, gid {gid}, groups {}",
                groups.join(",")
            ));
        }
    }
}

fn stderr(mode: StderrMode) -> &'static str {
    match mode {
        StderrMode::Log => "log",
        StderrMode::Null => "null",
        StderrMode::Socket => "socket",
    }
}

/// Access rules; a UNIX-domain service has none (a local peer has no
/// address), only its banner.
fn access(svc: &Service, out: &mut Block) {
    if !is_unix(svc) {
        ip_access(svc, out);
    }
    match &svc.banner_fail {
        Some(b) => out.comment(&format!("banner_fail: {} bytes, read at load", b.len())),
        None => out.comment("banner_fail: not set"),
    }
    tls(svc, out);
}

/// `tls`, its files as named at load (their contents were read then).
fn tls(svc: &Service, out: &mut Block) {
    let Some(t) = &svc.tls else {
        return;
    };
    let path = |p: &std::path::Path| Value::Str(p.display().to_string());
    let mut table = vec![
        ("cert".to_owned(), path(&t.cert_path)),
        ("key".to_owned(), path(&t.key_path)),
    ];
    if let Some(ca) = &t.client_ca_path {
        table.push(("client_ca".to_owned(), path(ca)));
        let auth = match t.client_auth {
            crate::tls::ClientAuth::Optional => "optional",
            _ => "required",
        };
        table.push(("client_auth".to_owned(), Value::Str(auth.to_owned())));
    }
    if !t.alpn.is_empty() {
        let alpn = t
            .alpn
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned());
        table.push(("alpn".to_owned(), Value::strs(alpn.collect())));
    }
    let min = match t.min_version {
        crate::tls::MinVersion::Tls12 => "1.2",
        crate::tls::MinVersion::Tls13 => "1.3",
    };
    table.push(("min_version".to_owned(), Value::Str(min.to_owned())));
    table.push(("handshake_timeout".to_owned(), seconds(t.handshake_timeout)));
    if !t.sni.is_empty() {
        let by_name = t.sni.iter().map(|e| {
            let files = vec![
                ("cert".to_owned(), path(&e.cert_path)),
                ("key".to_owned(), path(&e.key_path)),
            ];
            (e.name.clone(), Value::Table(files))
        });
        table.push(("sni".to_owned(), Value::Table(by_name.collect())));
    }
    out.set("tls", Value::Table(table));
}

fn ip_access(svc: &Service, out: &mut Block) {
    match &svc.access.only_from {
        Some(list) => out.set("only_from", words(list)),
        None => out.comment("only_from: not set (any address not in no_access)"),
    }
    out.set("no_access", words(&svc.access.no_access));
    out.set("access_times", words(&svc.access.times));
    match &svc.proxy {
        Some(t) => {
            out.set("proxy_protocol", Value::Bool(true));
            out.set("proxy_from", words(&t.from));
            out.set("proxy_timeout", seconds(t.timeout));
        }
        None => out.comment("proxy_protocol: not set (the peer is who connected)"),
    }
}

/// Items as they are written (`Display`), as a list.
fn words<T: ToString>(items: &[T]) -> Value {
    Value::strs(items.iter().map(ToString::to_string).collect())
}

fn is_unix(svc: &Service) -> bool {
    matches!(svc.listen.first().map(|k| &k.addr), Some(BindAddr::Unix(_)))
}

/// The limits in force: unset ones at their defaults, an internal stream
/// service's from the descriptor budget.
fn limits(svc: &Service, budget: &FdBudget, out: &mut Block) {
    let internal = svc.handler.in_process();
    let limits = if internal && svc.kind.is_connected() {
        svc.limits.with_internal_defaults(budget)
    } else {
        *svc.limits
    };
    match limits.max_instances(!internal) {
        usize::MAX => out.comment("instances: not set (no limit)"),
        n => out.set("instances", Value::Int(n as i64)),
    }
    match limits.per_source {
        Some(n) => out.set("per_source", Value::Int(n as i64)),
        None if !is_unix(svc) => out.comment("per_source: not set (no limit)"),
        None => {}
    }
    out.set(
        "per_source_prefix",
        Value::Int(i64::from(limits.per_source_prefix)),
    );
    match limits.source_rate {
        Some(r) => out.set(
            "per_source_rate",
            Value::List(vec![Value::Int(i64::from(r.count)), seconds(r.per)]),
        ),
        None if !is_unix(svc) => out.comment("per_source_rate: not set (no limit)"),
        None => {}
    }
    match limits.rate {
        Some(r) => out.set(
            "rate",
            Value::List(vec![
                Value::Int(i64::from(r.count)),
                seconds(r.per),
                seconds(r.pause),
            ]),
        ),
        None => out.comment("rate: not set (no limit)"),
    }
    if internal {
        if matches!(svc.handler, Handler::Internal(_)) {
            out.set("reply_rate", Value::Int(i64::from(limits.reply_rate)));
            out.set(
                "peer_reply_rate",
                Value::Int(i64::from(limits.peer_reply_rate)),
            );
        }
        out.set("idle_timeout", seconds(limits.idle_timeout));
    } else {
        match limits.timeout {
            Some(t) => {
                out.set("timeout", seconds(t));
                out.set("kill_grace", seconds(limits.kill_grace));
            }
            None => out.comment("timeout: not set (no limit)"),
        }
    }
}

/// `rlimits`, `nice`, `umask`, `no_new_privs`, `capabilities`, `chroot`,
/// `private_tmp`, `private_network` of a program.
fn limits_and_privileges(c: &crate::confine::Confine, out: &mut Block) {
    if !c.rlimits.is_empty() {
        let table = c.rlimits.iter().map(|r| {
            let v = match r.limit {
                Some(n) => Value::Int(i64::try_from(n).unwrap_or(i64::MAX)),
                None => Value::Str("infinity".to_owned()),
            };
            (r.resource.name().to_owned(), v)
        });
        out.set("rlimits", Value::Table(table.collect()));
    }
    if let Some(n) = c.nice {
        out.set("nice", Value::Int(i64::from(n)));
    }
    if let Some(m) = c.umask {
        out.set("umask", Value::Str(format!("{m:03o}")));
    }
    out.set("no_new_privs", Value::Bool(c.no_new_privs));
    match &c.capabilities {
        Some(caps) => out.set(
            "capabilities",
            Value::strs(
                caps.iter()
                    .filter_map(|n| crate::confine::CAPABILITIES.get(usize::from(*n)))
                    .map(|s| s.to_string())
                    .collect(),
            ),
        ),
        None => out.comment("capabilities: not set (all kept by a root handler, none by another)"),
    }
    if let Some(root) = &c.chroot {
        out.set("chroot", Value::Str(root.display().to_string()));
    }
    if c.private_tmp {
        out.set("private_tmp", Value::Bool(true));
    }
    if c.private_network {
        out.set("private_network", Value::Bool(true));
    }
}

/// Whole seconds as an integer, others as a decimal.
fn seconds(d: Duration) -> Value {
    if d.subsec_nanos() == 0 {
        Value::Int(d.as_secs() as i64)
    } else {
        Value::Float(d.as_secs_f64())
    }
}

fn log_fields(log: &LogFields, out: &mut Block) {
    let on = |pairs: &[(bool, &str)]| {
        Value::strs(
            pairs
                .iter()
                .filter(|(set, _)| *set)
                .map(|(_, w)| (*w).to_owned())
                .collect(),
        )
    };
    out.set(
        "log_on_success",
        on(&[
            (log.pid, "PID"),
            (log.host, "HOST"),
            (log.exit, "EXIT"),
            (log.duration, "DURATION"),
            (log.traffic, "TRAFFIC"),
        ]),
    );
    out.set(
        "log_on_failure",
        on(&[(log.fail_host, "HOST"), (log.attempt, "ATTEMPT")]),
    );
}
