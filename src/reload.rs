//! SIGHUP as a diff of listeners, keyed by [`ListenSlot`] (the
//! `ListenKey`, plus the service name for port 0).
//!
//! SIGHUP (or `oxinetd reload`) loads the file again, in its format; any
//! error keeps the running config (services of a classic format that
//! oxinetd cannot run are reported, not errors): the supervisor keeps
//! running what it has. Otherwise `diff` gives each bound socket to the
//! service that still asks for its slot (`Listen::Keep`: no moment where
//! its connections are refused) or to `close`; the rest is `Listen::Bind`.
//! `Supervisor::apply` (`supervisor/apply.rs`) walks the `Diff`: kept
//! sockets move to the new service untouched (`keep_listener`), new ones
//! are bound (`bind_listener`), then removed ones closed. A TCP port
//! moving to another address (`takes_over`) is bound with `SO_REUSEPORT`
//! beside the old socket; a closing stream listener first serves its
//! accept queue (one that was taken over first drops new SYNs,
//! `sys::refuse_syn`, so their clients retry to the new socket), and
//! `SO_REUSEPORT` is then cleared. Running handlers are never touched
//! (each keeps the `timeout` it started with). The stop (SIGTERM/SIGINT,
//! `oxinetd stop`) is `shutdown`'s.

use std::collections::HashMap;

use crate::config::{BindAddr, Config, ListenKey, SocketKind};

/// A listener's identity across reloads: its key, plus the service name for
/// an ephemeral port (port 0), which several services may ask for at once
/// and which is the same listener only for the same service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListenSlot {
    pub key: ListenKey,
    pub owner: Option<String>,
}

impl ListenSlot {
    pub fn new(key: ListenKey, service: &str) -> ListenSlot {
        ListenSlot {
            owner: key.addr.is_ephemeral().then(|| service.to_owned()),
            key,
        }
    }
}

/// What becomes of one listener a service of the new config asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Listen<L> {
    /// Bound now: this socket moves to the service untouched.
    Keep(L),
    /// Not bound now: bind it.
    Bind(ListenKey),
}

/// What a reload does to the listening sockets, `L` being a bound one.
#[derive(Debug, PartialEq, Eq)]
pub struct Diff<L> {
    /// For each service of the new config, in order, its listeners in
    /// the order it lists them.
    pub services: Vec<Vec<Listen<L>>>,
    /// Sockets no service asks for any more: closed after the new ones
    /// are bound.
    pub close: Vec<L>,
}

impl<L> Diff<L> {
    /// How many sockets are kept and how many are to be bound.
    pub fn counts(&self) -> (usize, usize) {
        let all = self.services.iter().flatten();
        let kept = all.filter(|l| matches!(l, Listen::Keep(_))).count();
        let total: usize = self.services.iter().map(Vec::len).sum();
        (kept, total - kept)
    }
}

/// Match the sockets bound now, by slot, with those `new` asks for: each
/// bound socket goes to the service that still asks for its slot, or to
/// `close`. (A config never asks for one slot twice: overlapping
/// listeners are refused at load.)
pub fn diff<L>(bound: impl IntoIterator<Item = (ListenSlot, L)>, new: &Config) -> Diff<L> {
    let mut bound: HashMap<ListenSlot, L> = bound.into_iter().collect();
    let services =
        new.services
            .iter()
            .map(|s| {
                let wanted = s.listen.iter().map(|k| {
                    match bound.remove(&ListenSlot::new(k.clone(), &s.name)) {
                        Some(l) => Listen::Keep(l),
                        None => Listen::Bind(k.clone()),
                    }
                });
                wanted.collect()
            })
            .collect();
    Diff {
        services,
        close: bound.into_values().collect(),
    }
}

/// Whether the new listener `new` takes over the port of `old`, which
/// closes: both TCP over IP on the same fixed port (`127.0.0.1:P` and
/// `*:P`, say), which Linux lets coexist only with `SO_REUSEPORT` on both.
/// The new one is then bound beside the old one before it closes, so the
/// port never has nobody listening.
pub fn takes_over(new: &ListenKey, old: &ListenKey) -> bool {
    // Port 0 is also what a UNIX-domain socket has.
    let port = new.addr.port();
    // Only where the two would conflict: one of them a wildcard address.
    // `127.0.0.1:P` beside `10.0.0.1:P` binds without help, and must not
    // be left open to other sockets' SO_REUSEPORT.
    let wildcard = |a: &BindAddr| match a {
        BindAddr::Any(_) => true,
        BindAddr::Ip(ip) => ip.ip().is_unspecified(),
        BindAddr::Unix(_) => false,
    };
    // Or the same address with other socket options (`SockOpts`).
    new.kind == SocketKind::Stream
        && old.kind == SocketKind::Stream
        && port != 0
        && old.addr.port() == port
        && (wildcard(&new.addr) || wildcard(&old.addr) || new.addr == old.addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Service, StderrMode, WaitMode};
    use crate::privilege::Identity;

    fn key(port: u16, kind: SocketKind) -> ListenKey {
        ListenKey {
            addr: BindAddr::Ip(([127, 0, 0, 1], port).into()),
            kind,
            opts: Default::default(),
        }
    }

    fn service(name: &str, keys: Vec<ListenKey>) -> Service {
        Service {
            name: name.into(),
            origin: crate::config::Location::file(std::path::Path::new("x")),
            kind: keys[0].kind,
            listen: keys,
            wait: WaitMode::Nowait,
            identity: Identity::Inherit,
            handler: crate::config::Handler::Internal(crate::internal::Internal::Echo),
            env: vec![],
            stderr: StderrMode::Log,
            access: Default::default(),
            banner_fail: None,
            limits: Default::default(),
            log: Default::default(),
            socket_file: Default::default(),
            confine: Default::default(),
            proxy: None,
            tls: None,
        }
    }

    #[test]
    fn keeps_binds_and_closes_by_key() {
        let a = key(1, SocketKind::Stream);
        let b = key(2, SocketKind::Stream);
        let c = key(2, SocketKind::Dgram);
        let new = Config {
            services: vec![service("s", vec![a.clone()]), service("t", vec![c.clone()])],
            ..Config::default()
        };
        let bound = [
            (ListenSlot::new(a.clone(), "x"), "a"),
            (ListenSlot::new(b.clone(), "x"), "b"),
        ];
        let d = diff(bound, &new);
        assert_eq!(
            d.services,
            vec![vec![Listen::Keep("a")], vec![Listen::Bind(c)]]
        );
        assert_eq!(d.close, vec!["b"]);
        assert_eq!(d.counts(), (1, 1));
    }

    #[test]
    fn ephemeral_ports_belong_to_their_service() {
        let zero = key(0, SocketKind::Stream);
        let new = Config {
            services: vec![
                service("s", vec![zero.clone()]),
                service("t", vec![zero.clone()]),
            ],
            ..Config::default()
        };
        let bound = [
            (ListenSlot::new(zero.clone(), "s"), "s"),
            (ListenSlot::new(zero.clone(), "u"), "u"),
        ];
        let d = diff(bound, &new);
        let want = vec![vec![Listen::Keep("s")], vec![Listen::Bind(zero)]];
        assert_eq!(d.services, want);
        assert_eq!(d.close, vec!["u"]);
    }

    #[test]
    fn a_tcp_port_moving_between_addresses_is_taken_over() {
        let any = |port| ListenKey {
            addr: BindAddr::Any(port),
            kind: SocketKind::Stream,
            opts: Default::default(),
        };
        assert!(takes_over(&any(80), &key(80, SocketKind::Stream)));
        assert!(takes_over(&key(80, SocketKind::Stream), &any(80)));
        assert!(!takes_over(&any(81), &key(80, SocketKind::Stream)));
        assert!(!takes_over(
            &key(0, SocketKind::Stream),
            &key(0, SocketKind::Stream)
        ));
        assert!(!takes_over(
            &key(80, SocketKind::Dgram),
            &key(80, SocketKind::Dgram)
        ));
        // Two specific addresses on one port do not conflict.
        let ip = |a: &str| ListenKey {
            addr: BindAddr::Ip(a.parse().unwrap()),
            kind: SocketKind::Stream,
            opts: Default::default(),
        };
        assert!(!takes_over(&ip("127.0.0.2:80"), &ip("127.0.0.1:80")));
        assert!(takes_over(&ip("0.0.0.0:80"), &ip("127.0.0.1:80")));
    }

    #[test]
    fn a_unix_socket_is_one_listener_whoever_serves_it() {
        let path = ListenKey {
            addr: BindAddr::Unix("/run/x.sock".into()),
            kind: SocketKind::Stream,
            opts: Default::default(),
        };
        let new = Config {
            services: vec![service("t", vec![path.clone()])],
            ..Config::default()
        };
        let d = diff([(ListenSlot::new(path, "s"), "s")], &new);
        assert_eq!(d.services, vec![vec![Listen::Keep("s")]]);
        assert!(d.close.is_empty());
    }
}
