//! SIGHUP as a diff of listeners, keyed by [`ListenKey`].
//!
//! A key present before and after keeps its socket (no moment where its
//! connections are refused); new keys are bound before removed ones are
//! closed; running handlers are never touched. A config that fails to load
//! changes nothing: the supervisor keeps running what it has.

use std::collections::HashSet;

use crate::config::{BindAddr, Config, ListenKey, Protocol};

/// A listener's identity across reloads: its key, plus the service name for
/// an ephemeral port (port 0), which several services may ask for at once
/// and which is the same listener only for the same service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Slot {
    pub key: ListenKey,
    pub owner: Option<String>,
}

impl Slot {
    pub fn new(key: ListenKey, service: &str) -> Slot {
        Slot {
            owner: key.addr.is_ephemeral().then(|| service.to_owned()),
            key,
        }
    }
}

/// What a reload does to the listening sockets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Sockets carried over to the new config (possibly to another service).
    pub keep: Vec<Slot>,
    /// Sockets to bind.
    pub bind: Vec<Slot>,
    /// Sockets to close, after the new ones are bound.
    pub close: Vec<Slot>,
}

/// Compare the slots bound now with those `new` asks for.
pub fn diff(bound: impl IntoIterator<Item = Slot>, new: &Config) -> Diff {
    let bound: HashSet<Slot> = bound.into_iter().collect();
    let wanted: Vec<Slot> = new
        .services
        .iter()
        .flat_map(|s| s.listen.iter().map(|k| Slot::new(k.clone(), &s.name)))
        .collect();
    let wanted_set: HashSet<Slot> = wanted.iter().cloned().collect();
    let mut d = Diff::default();
    for key in wanted {
        if bound.contains(&key) {
            d.keep.push(key);
        } else {
            d.bind.push(key);
        }
    }
    d.close = bound
        .into_iter()
        .filter(|k| !wanted_set.contains(k))
        .collect();
    d
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
    new.protocol == Protocol::Tcp
        && old.protocol == Protocol::Tcp
        && !new.seqpacket
        && !old.seqpacket
        && port != 0
        && old.addr.port() == port
        && (wildcard(&new.addr) || wildcard(&old.addr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Service, StderrMode, WaitMode};
    use crate::privilege::Identity;

    fn key(port: u16, protocol: Protocol) -> ListenKey {
        ListenKey {
            addr: BindAddr::Ip(([127, 0, 0, 1], port).into()),
            protocol,
            seqpacket: false,
        }
    }

    fn service(name: &str, keys: Vec<ListenKey>) -> Service {
        Service {
            name: name.into(),
            origin: crate::config::Location::file(std::path::Path::new("x")),
            protocol: keys[0].protocol,
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
        }
    }

    #[test]
    fn keeps_binds_and_closes_by_key() {
        let a = key(1, Protocol::Tcp);
        let b = key(2, Protocol::Tcp);
        let c = key(2, Protocol::Udp);
        let new = Config {
            services: vec![service("s", vec![a.clone()]), service("t", vec![c.clone()])],
            ..Config::default()
        };
        let d = diff([Slot::new(a.clone(), "x"), Slot::new(b.clone(), "x")], &new);
        assert_eq!(d.keep, vec![Slot::new(a.clone(), "s")]);
        assert_eq!(d.bind, vec![Slot::new(c.clone(), "t")]);
        assert_eq!(d.close, vec![Slot::new(b.clone(), "x")]);
    }

    #[test]
    fn ephemeral_ports_belong_to_their_service() {
        let zero = key(0, Protocol::Tcp);
        let new = Config {
            services: vec![
                service("s", vec![zero.clone()]),
                service("t", vec![zero.clone()]),
            ],
            ..Config::default()
        };
        let d = diff(
            [Slot::new(zero.clone(), "s"), Slot::new(zero.clone(), "u")],
            &new,
        );
        assert_eq!(d.keep, vec![Slot::new(zero.clone(), "s")]);
        assert_eq!(d.bind, vec![Slot::new(zero.clone(), "t")]);
        assert_eq!(d.close, vec![Slot::new(zero.clone(), "u")]);
    }

    #[test]
    fn a_tcp_port_moving_between_addresses_is_taken_over() {
        let any = |port| ListenKey {
            addr: BindAddr::Any(port),
            protocol: Protocol::Tcp,
            seqpacket: false,
        };
        assert!(takes_over(&any(80), &key(80, Protocol::Tcp)));
        assert!(takes_over(&key(80, Protocol::Tcp), &any(80)));
        assert!(!takes_over(&any(81), &key(80, Protocol::Tcp)));
        assert!(!takes_over(&key(0, Protocol::Tcp), &key(0, Protocol::Tcp)));
        assert!(!takes_over(
            &key(80, Protocol::Udp),
            &key(80, Protocol::Udp)
        ));
        // Two specific addresses on one port do not conflict.
        let ip = |a: &str| ListenKey {
            addr: BindAddr::Ip(a.parse().unwrap()),
            protocol: Protocol::Tcp,
            seqpacket: false,
        };
        assert!(!takes_over(&ip("127.0.0.2:80"), &ip("127.0.0.1:80")));
        assert!(takes_over(&ip("0.0.0.0:80"), &ip("127.0.0.1:80")));
    }

    #[test]
    fn a_unix_socket_is_one_listener_whoever_serves_it() {
        let path = ListenKey {
            addr: BindAddr::Unix("/run/x.sock".into()),
            protocol: Protocol::Tcp,
            seqpacket: false,
        };
        let new = Config {
            services: vec![service("t", vec![path.clone()])],
            ..Config::default()
        };
        let d = diff([Slot::new(path.clone(), "s")], &new);
        assert_eq!(d.keep, vec![Slot::new(path, "t")]);
        assert!(d.bind.is_empty() && d.close.is_empty());
    }
}
