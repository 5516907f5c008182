//! `proxy_protocol`, `proxy_from`, `proxy_timeout`: a PROXY header read
//! before anything else, from the balancers trusted to send one.
//!
//! Only a stream `nowait` service over IP can have it: a `wait` handler
//! takes the socket itself (oxinetd never sees its connections), a
//! datagram has no connection to put a header in front of, and a
//! UNIX-domain peer is judged by the socket file, not by an address. Set
//! in `[defaults]`, it applies to the services that can have it; set on a
//! service that cannot, it is an error. There is no implicit trust:
//! `proxy_from` is required with it.

use super::listen::Transport;
use super::Svc;
use crate::access::Cidr;
use crate::config::{SocketKind, WaitMode};
use crate::proxy::Trust;

/// The service's `proxy_protocol`, if it has one.
pub fn resolve(svc: &Svc<'_>, t: &Transport<'_>, unix: bool) -> Option<Trust> {
    let on = svc.get("proxy_protocol");
    let Some(on) = on.filter(|f| f.bool().unwrap_or(true)) else {
        for key in ["proxy_from", "proxy_timeout"] {
            if let Some(f) = svc.own(key) {
                svc.report(f.err(format!("{key}: only with proxy_protocol = true")));
            }
        }
        return None;
    };
    if !svc.ok(on.bool())? {
        return None;
    }
    let why_not = if unix {
        Some("not for a UNIX-domain socket (a local peer has no address to replace)")
    } else if t.kind != SocketKind::Stream {
        Some("only for stream services (a datagram carries no PROXY header)")
    } else if t.wait == WaitMode::Wait {
        Some("not for a wait service (its handler accepts the connections itself)")
    } else {
        None
    };
    if let Some(why) = why_not {
        // Inherited from [defaults]: it applies to the services that can
        // have it.
        if svc.own("proxy_protocol").is_some() {
            svc.report(on.err(format!("proxy_protocol: {why}")));
        }
        return None;
    }
    let Some(from) = svc.get("proxy_from") else {
        svc.report(on.err(
            "proxy_protocol: needs proxy_from, the addresses of the load balancers \
             allowed to send the header (none is trusted by default)",
        ));
        return None;
    };
    let from = svc.many(from.each(Cidr::parse))?;
    if from.is_empty() {
        let f = svc.get("proxy_from")?;
        svc.report(f.err("proxy_from: empty (no balancer could send a header)"));
        return None;
    }
    let timeout = match svc.get("proxy_timeout") {
        None => Trust::DEFAULT_TIMEOUT,
        Some(f) => {
            let t = svc.ok(f.seconds())?;
            if t.is_zero() {
                svc.report(f.err("proxy_timeout: expected more than 0 seconds"));
                return None;
            }
            t
        }
    };
    Some(Trust { from, timeout })
}
