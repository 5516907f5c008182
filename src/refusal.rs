//! Why a peer was turned away: what admission gives back, and what the
//! `refuse` line tells (`reason=...` and the rule or limit behind it,
//! written by `log::Event::Refuse`).

use crate::access::{Cidr, Denial};
use crate::limits::Rate;
use crate::source_rate::SourceRate;

/// Why a connection or a datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not in the service's `only_from`.
    OnlyFrom,
    /// In `no_access`: the rule that matched.
    NoAccess(Cidr),
    /// Outside `access_times`.
    AccessTimes,
    /// The peer has `per_source` connections already.
    PerSource(usize),
    /// The peer made more than `per_source_rate` connections in its window.
    SourceRate(SourceRate),
    /// The service's `cps`/`rate` was exceeded: it pauses.
    Rate(Rate),
    /// An internal connection would eat into the descriptors kept for
    /// exec'd services (`fds::FdBudget::reserve`, given here).
    FdReserve(usize),
    /// A datagram from a privileged port or an internal service's port:
    /// answering could start a loop between two such services. For a
    /// datagram handler: from port 0, or from this host at the service's
    /// own port or an internal service's (`datagrams::reflected`).
    SourcePort,
    /// The internal UDP service's `reply_rate` was reached.
    ReplyRate,
    /// `proxy_protocol`: the connection is not from a balancer in
    /// `proxy_from`.
    ProxyFrom,
    /// `proxy_protocol`: no valid PROXY header came.
    ProxyHeader(NoHeader),
}

/// Why a `proxy_protocol` connection never got its header through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoHeader {
    /// What came is not a header (`what=` the part that is wrong).
    Malformed(crate::proxy::Malformed),
    /// The balancer closed the connection before the header was whole.
    Closed,
    /// `proxy_timeout` passed first.
    Timeout,
    /// The service had this many connections waiting for their header.
    Pending(usize),
}

impl NoHeader {
    /// The `what=` word of the `refuse` line.
    pub fn as_str(self) -> &'static str {
        match self {
            NoHeader::Malformed(m) => m.as_str(),
            NoHeader::Closed => "closed",
            NoHeader::Timeout => "timeout",
            NoHeader::Pending(_) => "pending",
        }
    }
}

impl From<Denial> for Refusal {
    fn from(d: Denial) -> Refusal {
        match d {
            Denial::NotInOnlyFrom => Refusal::OnlyFrom,
            Denial::NoAccess(rule) => Refusal::NoAccess(rule),
            Denial::OutsideTimes => Refusal::AccessTimes,
        }
    }
}
