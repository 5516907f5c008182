//! The options of a service's listening sockets: `backlog`, `reuseport`,
//! `freebind`, `bind_device`, `v6only`, `keepalive`, `nodelay`,
//! `defer_accept` (on by itself for `proxy_protocol`). One set
//! per service, copied into each of its `ListenKey`s, so that a reload
//! rebinds a listener whose options changed and keeps one whose did not.

use super::Svc;
use crate::config::{BindAddr, ListenKey, SockOpts, SocketKind};

/// The longest interface name (`IFNAMSIZ` less its NUL).
const IFNAME_MAX: usize = 15;

/// `defer_accept` of a `proxy_protocol` service without the key, seconds.
/// A balancer speaks first, so its connection can wait in the kernel
/// until the header has come: without it, most connections are accepted
/// before their header, each costing an epoll registration, a wakeup and
/// a third read (measured at c=1: 2.7 reads and 1.5 `epoll_ctl` a
/// connection). One second keeps a silent balancer's wait close to
/// `proxy_timeout`, which starts once the kernel gives it up.
pub const PROXY_DEFER_ACCEPT: u32 = 1;

/// Resolve the options and write them into every key of `listen`.
pub fn resolve(svc: &Svc<'_>, kind: SocketKind, listen: &mut [ListenKey]) {
    let unix = listen
        .first()
        .is_some_and(|k| matches!(k.addr, BindAddr::Unix(_)));
    let mut opts = SockOpts::default();
    let ip_only = |name: &str| {
        if let Some(f) = svc.get(name).filter(|_| unix) {
            svc.report(f.err(format!(
                "{name}: only for sockets on IP addresses, not UNIX-domain ones"
            )));
        }
    };
    if let Some(f) = svc.get("backlog") {
        opts.backlog = svc.ok(f.int(1, 65535)).map(|n| n as u32);
        if !kind.is_connected() {
            svc.report(f.err(
                "backlog: only for stream and seqpacket sockets (a datagram socket \
                 has no queue of connections)",
            ));
        }
    }
    for (name, slot) in [
        ("reuseport", &mut opts.reuseport),
        ("freebind", &mut opts.freebind),
        ("keepalive", &mut opts.keepalive),
        ("nodelay", &mut opts.nodelay),
    ] {
        if let Some(f) = svc.get(name) {
            *slot = svc.ok(f.bool()).unwrap_or(false);
            ip_only(name);
        }
    }
    if let Some(f) = svc.get("defer_accept") {
        ip_only("defer_accept");
        // The kernel counts whole seconds: a part of one is one.
        opts.defer_accept = svc
            .ok(f.seconds())
            .map_or(0, |d| d.as_secs_f64().ceil() as u32);
    }
    for name in ["keepalive", "nodelay", "defer_accept"] {
        if let Some(f) = svc
            .get(name)
            .filter(|_| kind != SocketKind::Stream && !unix)
        {
            svc.report(f.err(format!("{name}: only for TCP (socket = \"stream\")")));
        }
    }
    if let Some(f) = svc.get("bind_device") {
        ip_only("bind_device");
        opts.bind_device = svc
            .ok(f.str())
            .and_then(|dev| svc.ok(interface(dev).map_err(|m| f.err(m))))
            .map(str::to_owned);
    }
    if let Some(f) = svc.get("v6only") {
        ip_only("v6only");
        opts.v6only = svc.ok(f.bool());
        let v6 = |k: &ListenKey| matches!(k.addr, BindAddr::Ip(a) if a.is_ipv6());
        if !unix && !listen.iter().any(v6) {
            svc.report(f.err(
                "v6only: applies to [IPv6]:PORT listen entries; *:PORT is one dual-stack \
                 socket, and [::]:PORT is IPv6 only unless v6only = false",
            ));
        }
    }
    if opts != SockOpts::default() {
        for k in listen {
            k.opts = opts.clone();
        }
    }
}

/// A `proxy_protocol` service's listeners defer accepting until the
/// header has come, unless `defer_accept` says otherwise.
pub fn defer_for_proxy(svc: &Svc<'_>, listen: &mut [ListenKey]) {
    if svc.get("defer_accept").is_none() {
        for k in listen {
            k.opts.defer_accept = PROXY_DEFER_ACCEPT;
        }
    }
}

/// A network interface name that exists now: `SO_BINDTODEVICE` takes a
/// name, and one that is not there fails at each bind.
pub fn interface(name: &str) -> Result<&str, String> {
    if name.is_empty()
        || name.len() > IFNAME_MAX
        || name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace())
    {
        return Err(format!(
            "bind_device \"{}\": not an interface name (at most {IFNAME_MAX} bytes, \
             no '/' or blanks)",
            crate::config::error::quote(name)
        ));
    }
    match nix::net::if_::if_nametoindex(name) {
        Ok(_) => Ok(name),
        Err(_) => Err(format!("bind_device \"{name}\": no such network interface")),
    }
}
