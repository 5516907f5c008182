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
    /// answering could start a loop between two such services.
    SourcePort,
    /// The internal UDP service's `reply_rate` was reached.
    ReplyRate,
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
