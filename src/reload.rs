//! SIGHUP as a diff of listeners, keyed by [`ListenKey`].
//!
//! A key present before and after keeps its socket (no moment where its
//! connections are refused); new keys are bound before removed ones are
//! closed; running handlers are never touched. A config that fails to load
//! changes nothing: the supervisor keeps running what it has.

use std::collections::HashSet;

use crate::config::{Config, ListenKey};

/// What a reload does to the listening sockets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Sockets carried over to the new config (possibly to another service).
    pub keep: Vec<ListenKey>,
    /// Sockets to bind.
    pub bind: Vec<ListenKey>,
    /// Sockets to close, after the new ones are bound.
    pub close: Vec<ListenKey>,
}

/// Compare the keys bound now with those `new` asks for.
pub fn diff<'a>(bound: impl IntoIterator<Item = &'a ListenKey>, new: &Config) -> Diff {
    let bound: HashSet<ListenKey> = bound.into_iter().copied().collect();
    let wanted: Vec<ListenKey> = new
        .services
        .iter()
        .flat_map(|s| s.listen.iter().copied())
        .collect();
    let wanted_set: HashSet<ListenKey> = wanted.iter().copied().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{BindAddr, Protocol, Service, StderrMode, WaitMode};
    use crate::privilege::Identity;

    fn key(port: u16, protocol: Protocol) -> ListenKey {
        ListenKey {
            addr: BindAddr::Ip(([127, 0, 0, 1], port).into()),
            protocol,
        }
    }

    fn service(keys: &[ListenKey]) -> Service {
        Service {
            name: "s".into(),
            origin: crate::config::Location::file(std::path::Path::new("x")),
            listen: keys.to_vec(),
            protocol: keys[0].protocol,
            wait: WaitMode::Nowait,
            identity: Identity::Inherit,
            server: "/bin/true".into(),
            argv: vec!["true".into()],
            env: vec![],
            stderr: StderrMode::Log,
        }
    }

    #[test]
    fn keeps_binds_and_closes_by_key() {
        let a = key(1, Protocol::Tcp);
        let b = key(2, Protocol::Tcp);
        let c = key(2, Protocol::Udp);
        let new = Config {
            services: vec![service(&[a]), service(&[c])],
            ..Config::default()
        };
        let d = diff(&[a, b], &new);
        assert_eq!(d.keep, vec![a]);
        assert_eq!(d.bind, vec![c]);
        assert_eq!(d.close, vec![b]);
    }
}
