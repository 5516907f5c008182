//! Flood limits: token buckets for handlers' stderr lines, and the per-peer
//! reply limit of internal UDP services.
//!
//! Both drop the excess and count it; the counts are logged at most once a
//! second (the first at once), so a flood costs the log a line a second.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// stderr lines logged per second per handler, and its burst.
pub const STDERR_RATE: u32 = 100;
pub const STDERR_BURST: u32 = 200;
/// stderr lines logged per second for all handlers of a service, and burst.
pub const SERVICE_STDERR_RATE: u32 = 1000;
pub const SERVICE_STDERR_BURST: u32 = 2000;
/// Bytes of one handler's stderr the loop reads a second while it runs,
/// and the burst: past them the pipe is left unwatched for
/// `STDERR_PAUSE`, so a handler writing faster waits on its full pipe
/// instead of keeping the supervisor reading (and dropping) at full speed.
pub const STDERR_BYTES_RATE: u32 = 1024 * 1024;
pub const STDERR_BYTES_BURST: u32 = 1024 * 1024;
/// How long a pipe over its byte budget is left unwatched.
pub const STDERR_PAUSE: Duration = Duration::from_millis(100);
/// Replies per second an internal UDP service sends one peer (address and
/// port) unless `peer_reply_rate` says otherwise; the burst is twice it.
pub const DEFAULT_PEER_REPLY_RATE: u32 = 100;

/// How often a count of dropped lines or replies is logged.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A token bucket: `rate` tokens a second, at most `burst`. It starts full.
/// The clock is read by the caller, once per batch (`refill`); each token
/// taken then costs no clock read.
#[derive(Debug, Default, Clone, Copy)]
pub struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date; `None`: never (full).
    at: Option<Instant>,
}

impl Bucket {
    /// Add what `rate` earned since the last refill, up to `burst`.
    pub fn refill(&mut self, now: Instant, rate: u32, burst: u32) {
        // A bucket filled under a larger burst (another service's, for the
        // same peer) holds no more than this one's.
        self.tokens = self.tokens.min(burst);
        let Some(at) = self.at else {
            self.tokens = burst;
            self.at = Some(now);
            return;
        };
        if rate == 0 {
            return;
        }
        let nanos = now.saturating_duration_since(at).as_nanos();
        let earned = nanos.saturating_mul(u128::from(rate)) / 1_000_000_000;
        if earned == 0 {
            return;
        }
        let room = u128::from(burst.saturating_sub(self.tokens));
        if earned >= room {
            self.tokens = burst;
            self.at = Some(now);
        } else {
            // `earned` < `burst`: it fits; keep the fraction of a token.
            self.tokens += earned as u32;
            let spent = earned * 1_000_000_000 / u128::from(rate);
            self.at = Some(at + Duration::from_nanos(spent as u64));
        }
    }

    pub fn has(&self) -> bool {
        self.tokens > 0
    }

    /// Take `n` tokens, or all there are.
    pub fn take_n(&mut self, n: usize) {
        self.tokens = self
            .tokens
            .saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }

    pub fn take(&mut self) -> bool {
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// Things dropped, and when their count was last logged.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dropped {
    pub count: u64,
    reported: Option<Instant>,
}

impl Dropped {
    /// The count to log now, if any: at once the first time, then at most
    /// once per `REPORT_EVERY`.
    pub fn report(&mut self, now: Instant) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if self
            .reported
            .is_some_and(|t| now.saturating_duration_since(t) < REPORT_EVERY)
        {
            return None;
        }
        self.reported = Some(now);
        Some(std::mem::take(&mut self.count))
    }

    /// The rest, whatever the time (at exit).
    pub fn rest(&mut self) -> Option<u64> {
        Some(std::mem::take(&mut self.count)).filter(|n| *n > 0)
    }
}

/// Entries of the per-peer table: a fixed size, allocated once.
const SLOTS: usize = 1024;

#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    peer: Option<SocketAddr>,
    bucket: Bucket,
    dropped: Dropped,
}

/// What to do with a datagram from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Reply,
    /// Drop it; `Some(n)`: log now that `n` were dropped.
    Drop(Option<u64>),
}

/// Replies per peer (address and port) of the internal UDP services: a
/// fixed table of 1024 entries; each peer hashes (with a per-process key) to
/// two neighbouring slots, and a new peer takes the one used least recently.
/// So two echo-like services aimed at each other (a spoofed datagram starts
/// it) lose the datagram after the burst and the loop ends, logged.
pub struct PeerLimit {
    /// Empty until the first datagram: only internal UDP services use it.
    slots: Box<[Entry]>,
    hasher: RandomState,
}

impl Default for PeerLimit {
    fn default() -> PeerLimit {
        PeerLimit {
            slots: Box::default(),
            hasher: RandomState::new(),
        }
    }
}

impl PeerLimit {
    /// Count one reply to `peer` against `rate` a second (burst twice it).
    pub fn check(&mut self, peer: SocketAddr, rate: u32, now: Instant) -> Verdict {
        if self.slots.is_empty() {
            self.slots = vec![Entry::default(); SLOTS].into_boxed_slice();
        }
        let i = (self.hasher.hash_one(peer) as usize) % SLOTS;
        let j = i ^ 1;
        let slot = if self.slots[i].peer == Some(peer) {
            i
        } else if self.slots[j].peer == Some(peer) {
            j
        } else {
            // The emptier or least recently refilled of the two.
            let older = |e: &Entry| e.bucket.at;
            let k = if older(&self.slots[j]) < older(&self.slots[i]) {
                j
            } else {
                i
            };
            self.slots[k] = Entry {
                peer: Some(peer),
                ..Entry::default()
            };
            k
        };
        let e = &mut self.slots[slot];
        e.bucket.refill(now, rate, rate.saturating_mul(2));
        if e.bucket.take() {
            return Verdict::Reply;
        }
        e.dropped.count += 1;
        Verdict::Drop(e.dropped.report(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_starts_full_and_refills_at_its_rate() {
        let t = Instant::now();
        let mut b = Bucket::default();
        b.refill(t, 10, 20);
        let taken = (0..100).filter(|_| b.take()).count();
        assert_eq!(taken, 20);
        // 250 ms at 10/s: 2 tokens, the half token kept for later.
        b.refill(t + Duration::from_millis(250), 10, 20);
        assert_eq!((0..100).filter(|_| b.take()).count(), 2);
        b.refill(t + Duration::from_millis(300), 10, 20);
        assert_eq!((0..100).filter(|_| b.take()).count(), 1);
        // A long pause fills it to the burst, no more.
        b.refill(t + Duration::from_secs(100), 10, 20);
        assert_eq!((0..100).filter(|_| b.take()).count(), 20);
    }

    #[test]
    fn dropped_counts_are_reported_at_once_then_once_a_second() {
        let t = Instant::now();
        let mut d = Dropped::default();
        assert_eq!(d.report(t), None);
        d.count = 3;
        assert_eq!(d.report(t), Some(3));
        d.count = 5;
        assert_eq!(d.report(t + Duration::from_millis(500)), None);
        assert_eq!(d.report(t + Duration::from_secs(1)), Some(5));
        d.count = 2;
        assert_eq!(d.rest(), Some(2));
        assert_eq!(d.rest(), None);
    }

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_apart() {
        let t = Instant::now();
        let mut p = PeerLimit::default();
        let a: SocketAddr = "127.0.0.1:31081".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:31082".parse().unwrap();
        let replies = (0..100)
            .filter(|_| p.check(a, 20, t) == Verdict::Reply)
            .count();
        assert_eq!(replies, 40);
        assert_eq!(p.check(b, 20, t), Verdict::Reply);
        // The first drop was reported at once; the next ones wait a second.
        assert_eq!(p.check(a, 20, t), Verdict::Drop(None));
        let later = t + Duration::from_secs(1);
        assert_eq!(p.check(a, 20, later), Verdict::Reply);
        // Many other peers do not take `a`'s place while it is active...
        for port in 1..3000u16 {
            let other = SocketAddr::from(([127, 0, 0, 2], port));
            p.check(other, 20, t);
        }
        let n = (0..100)
            .filter(|_| p.check(a, 20, later) == Verdict::Reply)
            .count();
        // ...unless it shares both slots with fresher ones: then it starts
        // over with a full burst, never more.
        assert!(n <= 40, "{n}");
    }
}
