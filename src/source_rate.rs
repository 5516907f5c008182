//! `per_source_rate = [COUNT, SECONDS]`: at most COUNT connections from one
//! client address within SECONDS (FreeBSD inetd's
//! max-connections-per-ip-per-minute). An IPv6 client is counted by its
//! `per_source_prefix`, as `per_source` counts it.
//!
//! Memory is bounded: one fixed table per service that sets the key,
//! allocated when the config is applied, never on a connection.
//! [`SLOTS`] slots of 32 bytes (address, window start, count) in 4-way
//! sets: 128 KiB, whether 10 addresses connect or a million. A set is
//! chosen by a keyed hash (std's `RandomState`, SipHash with a key drawn
//! at start), so a client cannot pick addresses that land on another's set.
//!
//! The window of an address opens with its first connection and lasts
//! SECONDS; in it, the first COUNT connections are let in and the rest
//! refused (they still count, so a client that keeps trying gets COUNT
//! per window, not more). The next connection after it opens a new one.
//!
//! What a full set does: each slot holds its whole address, so two
//! addresses are never counted as one (a collision never refuses anyone).
//! A new address takes a free slot, or one whose window is over (which
//! holds nothing), or else the slot whose window began first: that
//! address is forgotten and starts afresh. The table fails open: under a
//! flood of more distinct addresses than it holds within one window, some
//! of them get more than COUNT connections; none is refused for another's.
//! Failing closed would let a crowd of addresses lock out every newcomer.
//! A distributed flood is what `instances`, `cps`/`rate` and
//! `max_processes` bound.
//!
//! Per connection: one hash of 16 bytes and four slot compares; no
//! allocation and no system call (the time is the one admission already
//! read).

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Slots in a table: 1024 sets of `WAYS`.
pub const SLOTS: usize = 4096;
/// Slots an address may occupy: the set its hash picks.
const WAYS: usize = 4;
const SETS: usize = SLOTS / WAYS;

/// `per_source_rate`, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRate {
    pub count: u32,
    pub per: Duration,
}

impl SourceRate {
    /// The limit as log lines give it: `3/60s`.
    pub fn window(&self) -> impl std::fmt::Display + '_ {
        struct W<'a>(&'a SourceRate);
        impl std::fmt::Display for W<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}/{}s", self.0.count, self.0.per.as_secs_f64())
            }
        }
        W(self)
    }
}

/// One address's window.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The address; an IPv4 one as its IPv4-mapped IPv6 form.
    key: u128,
    /// When its window opened: milliseconds since the table's `epoch`.
    start_ms: u64,
    /// Connections in the window; 0: the slot is free.
    count: u32,
}

/// Recent connections by source address, for `per_source_rate`.
pub struct SourceTable {
    slots: Box<[Slot]>,
    hasher: RandomState,
    /// Times are kept as milliseconds since this.
    epoch: Instant,
}

impl std::fmt::Debug for SourceTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self.slots.iter().filter(|s| s.count > 0).count();
        write!(f, "SourceTable({used}/{SLOTS} slots)")
    }
}

impl SourceTable {
    pub fn new(epoch: Instant) -> SourceTable {
        SourceTable {
            slots: vec![Slot::default(); SLOTS].into_boxed_slice(),
            hasher: RandomState::new(),
            epoch,
        }
    }

    /// Count a connection from `source` at `now`: false when it is past
    /// the limit and must be refused.
    pub fn admit(&mut self, rate: SourceRate, source: IpAddr, now: Instant) -> bool {
        let key = match source {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        let t = millis(now.saturating_duration_since(self.epoch));
        let per = millis(rate.per);
        let first = (self.hasher.hash_one(key) as usize % SETS) * WAYS;
        let Some(set) = self.slots.get_mut(first..first + WAYS) else {
            return true; // not reached: `first + WAYS <= SLOTS`
        };
        let over = |s: &Slot| s.count == 0 || t.saturating_sub(s.start_ms) >= per;
        if let Some(slot) = set.iter_mut().find(|s| s.count > 0 && s.key == key) {
            if over(slot) {
                *slot = Slot {
                    key,
                    start_ms: t,
                    count: 1,
                };
                return true;
            }
            slot.count = slot.count.saturating_add(1);
            return slot.count <= rate.count;
        }
        // A free or finished slot first; else forget the oldest window.
        if let Some(slot) = set.iter_mut().min_by_key(|s| {
            if over(s) {
                (false, 0)
            } else {
                (true, s.start_ms)
            }
        }) {
            *slot = Slot {
                key,
                start_ms: t,
                count: 1,
            };
        }
        true
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: SourceRate = SourceRate {
        count: 3,
        per: Duration::from_secs(60),
    };

    #[test]
    fn a_slot_is_32_bytes_and_the_table_128_kib() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let t = SourceTable::new(Instant::now());
        assert_eq!(std::mem::size_of_val(&*t.slots), 128 * 1024);
    }

    #[test]
    fn count_connections_per_window_per_address() {
        let t0 = Instant::now();
        let mut table = SourceTable::new(t0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(table.admit(RATE, a, t0));
        }
        assert!(!table.admit(RATE, a, t0 + Duration::from_secs(1)));
        assert!(table.admit(RATE, b, t0 + Duration::from_secs(1)));
        // Refused attempts count: still refused at the window's end.
        assert!(!table.admit(RATE, a, t0 + Duration::from_millis(59_999)));
        // A new window lets COUNT in again.
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(table.admit(RATE, a, t1));
        }
        assert!(!table.admit(RATE, a, t1));
        // An IPv4-mapped IPv6 key is not confused with an IPv6 address.
        let v6: IpAddr = "::7f00:1".parse().unwrap();
        assert!(table.admit(RATE, v6, t1));
    }

    /// Addresses that land on one set, found by trying.
    fn same_set(table: &SourceTable, n: usize) -> Vec<IpAddr> {
        let set = |ip: IpAddr| {
            let IpAddr::V4(v4) = ip else { unreachable!() };
            table.hasher.hash_one(u128::from(v4.to_ipv6_mapped())) as usize % SETS
        };
        let target = set("10.0.0.0".parse().unwrap());
        (0u32..)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)))
            .filter(|ip| set(*ip) == target)
            .take(n)
            .collect()
    }

    #[test]
    fn a_full_set_forgets_the_oldest_window_and_fails_open() {
        let t0 = Instant::now();
        let mut table = SourceTable::new(t0);
        let ips = same_set(&table, WAYS + 1);
        // The first address uses up its window; three more fill the set.
        for _ in 0..3 {
            assert!(table.admit(RATE, ips[0], t0));
        }
        assert!(!table.admit(RATE, ips[0], t0));
        for (i, ip) in ips[1..WAYS].iter().enumerate() {
            assert!(table.admit(RATE, *ip, t0 + Duration::from_secs(1 + i as u64)));
        }
        // A fifth evicts the oldest window, the first address's ...
        assert!(table.admit(RATE, ips[WAYS], t0 + Duration::from_secs(10)));
        // ... which is let in again (open), while the others keep counting.
        assert!(table.admit(RATE, ips[0], t0 + Duration::from_secs(11)));
        for _ in 0..2 {
            assert!(table.admit(RATE, ips[WAYS], t0 + Duration::from_secs(12)));
        }
        assert!(!table.admit(RATE, ips[WAYS], t0 + Duration::from_secs(12)));
    }

    #[test]
    fn a_finished_window_is_reused_before_a_live_one() {
        let t0 = Instant::now();
        let mut table = SourceTable::new(t0);
        let ips = same_set(&table, WAYS + 1);
        assert!(table.admit(RATE, ips[0], t0));
        // The others come when the first's window is over.
        let later = t0 + Duration::from_secs(61);
        for ip in &ips[1..WAYS] {
            for _ in 0..3 {
                assert!(table.admit(RATE, *ip, later));
            }
        }
        // The fifth takes the finished slot: the others stay counted.
        assert!(table.admit(RATE, ips[WAYS], later));
        for ip in &ips[1..WAYS] {
            assert!(!table.admit(RATE, *ip, later));
        }
    }

    /// A million addresses within one window: every one is let in (the
    /// table fails open, it never refuses a newcomer for lack of room) and
    /// the table stays its size, every slot in use.
    #[test]
    fn a_million_addresses_keep_the_table_its_size_and_refuse_no_newcomer() {
        let t0 = Instant::now();
        let mut table = SourceTable::new(t0);
        for i in 0..1_000_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0b00_0000 + i));
            assert!(table.admit(RATE, ip, t0), "{ip}");
        }
        assert_eq!(table.slots.len(), SLOTS);
        assert_eq!(table.slots.iter().filter(|s| s.count > 0).count(), SLOTS);
    }
}
