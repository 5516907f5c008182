//! Limits: how many handlers a service runs at once, per source, and how
//! fast it may be asked (`instances`, `per_source`, `cps`/`rate`,
//! `per_source_rate`), plus the per-service load they are checked against.
//!
//! `instances` and the global `max_processes` are backpressure: at the
//! limit the supervisor stops watching the listener and the kernel's
//! backlog holds new connections until a handler exits; nothing is
//! accepted and dropped. `per_source` and `cps` refuse: one client cannot
//! be told apart from others until its connection is accepted.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use crate::access::{mask, unmap};
use crate::refusal::Refusal;
use crate::source_rate::{SourceRate, SourceTable};

/// How long a handler has between `timeout`'s SIGTERM and SIGKILL.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// A service's limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most concurrent handlers (or internal connections) when set; see
    /// `max_instances` for the default.
    pub instances: Option<usize>,
    /// Most concurrent handlers per client address; `None`: no limit.
    pub per_source: Option<usize>,
    /// IPv6 clients are counted per prefix of this length.
    pub per_source_prefix: u8,
    /// Connection rate that pauses the service (`cps`, `rate`).
    pub rate: Option<Rate>,
    /// Connections per window from one client address
    /// (`per_source_rate`); past it that client is refused.
    pub source_rate: Option<SourceRate>,
    /// Replies per second of an internal UDP service.
    pub reply_rate: u32,
    /// An internal TCP connection is closed after this long without
    /// traffic (`idle_timeout`); zero: never.
    pub idle_timeout: Duration,
    /// Replies per second of an internal UDP service to one peer (address
    /// and port); see `flood::PeerLimit`.
    pub peer_reply_rate: u32,
    /// A handler running longer gets SIGTERM on its process group, then
    /// SIGKILL after `kill_grace` (`timeout`); `None`: no limit.
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

/// More than `count` connections within `per` pauses the service for
/// `pause` (xinetd's `cps` is `per` = 1 s; inetd's `.max` is per minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
    pub pause: Duration,
}

impl Rate {
    /// Whether this is xinetd's `cps`: a window of one second.
    pub fn per_second(&self) -> bool {
        self.per == Duration::from_secs(1)
    }

    /// The window as log lines give it: `256/60s`.
    pub fn window(&self) -> String {
        format!("{}/{}s", self.count, self.per.as_secs_f64())
    }
}

/// Handlers a service runs at once unless `instances` says otherwise.
pub const DEFAULT_INSTANCES: usize = 256;

/// `idle_timeout` unless configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl Limits {
    /// The `instances` in force: the configured one, else 256 handler
    /// processes; internal connections cost no process and are bounded only
    /// by file descriptors unless `instances` is set.
    pub fn max_instances(&self, spawns: bool) -> usize {
        match self.instances {
            Some(n) => n,
            None if spawns => DEFAULT_INSTANCES,
            None => usize::MAX,
        }
    }

    /// These limits for an internal TCP service: `instances` and
    /// `per_source` default to a share of the fd limit
    /// ([`crate::fds::FdBudget`]) so one peer cannot take every descriptor.
    pub fn with_internal_defaults(mut self, budget: &crate::fds::FdBudget) -> Limits {
        self.instances = self.instances.or(Some(budget.internal_instances()));
        self.per_source = self.per_source.or(Some(budget.internal_per_source()));
        self
    }
}

impl Limits {
    /// No limit set: each at its default.
    pub const DEFAULT: Limits = Limits {
        instances: None,
        per_source: None,
        per_source_prefix: 64,
        rate: None,
        source_rate: None,
        reply_rate: 50_000,
        idle_timeout: DEFAULT_IDLE_TIMEOUT,
        peer_reply_rate: crate::flood::DEFAULT_PEER_REPLY_RATE,
        timeout: None,
        kill_grace: DEFAULT_KILL_GRACE,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What a service is doing now; kept across reloads by service name.
#[derive(Debug, Default)]
pub struct Load {
    /// Handlers (or internal connections) running.
    pub running: usize,
    by_source: HashMap<IpAddr, usize>,
    /// Start of the current rate window and connections in it.
    window: Option<(Instant, u32)>,
    /// Not serving until then (cps exceeded).
    pub paused_until: Option<Instant>,
    /// stderr lines its handlers may log (`flood::SERVICE_STDERR_RATE`).
    pub stderr: crate::flood::Bucket,
    /// Recent connections by client, while `per_source_rate` is set.
    sources: Option<Box<SourceTable>>,
    /// What `status` and metrics count (`stats`), carried with the load.
    pub stats: crate::stats::Stats,
    /// Limits how often refusals and spawn errors of this service are
    /// logged; here, not in the service's config, so that a reload does not
    /// forget the lines it held back (`suppressed` reports them).
    pub refusals: crate::log::Throttle,
}

impl Load {
    /// The key a client is counted under.
    pub fn source(limits: &Limits, ip: IpAddr) -> IpAddr {
        match unmap(ip) {
            v6 @ IpAddr::V6(_) => mask(v6, limits.per_source_prefix),
            v4 => v4,
        }
    }

    /// Make or drop the `per_source_rate` table as `limits` ask: when the
    /// config is applied, so no connection allocates it. A reload that
    /// keeps the key keeps the counts.
    pub fn prepare(&mut self, limits: &Limits) {
        match limits.source_rate {
            Some(_) if self.sources.is_none() => {
                self.sources = Some(Box::new(SourceTable::new(Instant::now())));
            }
            Some(_) => {}
            None => self.sources = None,
        }
    }

    /// Whether the service is at `max` (its `instances`).
    pub fn full(&self, max: usize) -> bool {
        self.running >= max
    }

    pub fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// Check a new connection from `source` against `per_source_rate`,
    /// `cps` and `per_source`. A refusal by rate starts the pause. A client
    /// past its `per_source_rate` is refused before it counts towards
    /// `cps`: one client alone cannot pause the service for everyone.
    pub fn admit(
        &mut self,
        limits: &Limits,
        source: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let (Some(rate), Some(source), Some(table)) =
            (limits.source_rate, source, self.sources.as_deref_mut())
        {
            if !table.admit(rate, source, now) {
                return Err(Refusal::SourceRate(rate));
            }
        }
        if let Some(rate) = limits.rate {
            let (start, n) = match self.window {
                Some((start, n)) if now.duration_since(start) < rate.per => (start, n + 1),
                _ => (now, 1),
            };
            self.window = Some((start, n));
            if n > rate.count {
                self.paused_until = Some(now + rate.pause);
                self.window = None;
                return Err(Refusal::Rate(rate));
            }
        }
        if let (Some(max), Some(source)) = (limits.per_source, source) {
            if self.by_source.get(&source).copied().unwrap_or(0) >= max {
                return Err(Refusal::PerSource(max));
            }
        }
        Ok(())
    }

    pub fn started(&mut self, source: Option<IpAddr>) {
        self.running += 1;
        if let Some(s) = source {
            *self.by_source.entry(s).or_insert(0) += 1;
        }
    }

    pub fn ended(&mut self, source: Option<IpAddr>) {
        self.running = self.running.saturating_sub(1);
        if let Some(s) = source {
            if let Some(n) = self.by_source.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.by_source.remove(&s);
                    crate::idmap::shrink_after_burst(&mut self.by_source);
                }
            }
        }
    }
}

/// The loads of services a reload removed, by name, for as long as their
/// handlers (or internal connections) run: those hold the `Load`, this only
/// a weak reference. A service of the same name that comes back gets its
/// load again, so `instances` still counts the handlers it started before;
/// once the last of them is reaped the load is gone and the name starts
/// afresh.
#[derive(Debug, Default)]
pub struct Retired(HashMap<String, Weak<RefCell<Load>>>);

impl Retired {
    /// The load of a removed service `name` whose handlers still run.
    pub fn revive(&mut self, name: &str) -> Option<Rc<RefCell<Load>>> {
        self.0.remove(name)?.upgrade()
    }

    /// After a reload: keep a weak hold on the loads in `old` that `new`
    /// does not carry, and forget those nothing holds any more.
    pub fn retire(
        &mut self,
        old: HashMap<String, Rc<RefCell<Load>>>,
        new: &HashMap<String, Rc<RefCell<Load>>>,
    ) {
        for (name, load) in old {
            if !new.contains_key(&name) {
                self.0.insert(name, Rc::downgrade(&load));
            }
        }
        self.0
            .retain(|name, load| load.strong_count() > 0 && !new.contains_key(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_service_keeps_its_load_while_a_handler_holds_it() {
        let mut retired = Retired::default();
        let load = Rc::new(RefCell::new(Load::default()));
        load.borrow_mut().started(None);
        let handler = Rc::clone(&load); // what a running handler holds
        let old = HashMap::from([("s".to_string(), load)]);
        retired.retire(old, &HashMap::new());
        let back = retired.revive("s").expect("still running");
        assert_eq!(back.borrow().running, 1);
        assert!(Rc::ptr_eq(&back, &handler));

        // Removed again; the handler ends: nothing is left to revive.
        retired.retire(HashMap::from([("s".to_string(), back)]), &HashMap::new());
        handler.borrow_mut().ended(None);
        drop(handler);
        assert!(retired.revive("s").is_none());
        retired.retire(HashMap::new(), &HashMap::new());
        assert!(retired.0.is_empty());
    }

    #[test]
    fn per_source_counts_and_ipv6_prefixes() {
        let limits = Limits {
            per_source: Some(2),
            ..Limits::default()
        };
        let mut load = Load::default();
        let now = Instant::now();
        let a = Load::source(&limits, "2001:db8::1".parse().unwrap());
        let b = Load::source(&limits, "2001:db8::2".parse().unwrap());
        assert_eq!(a, b, "same /64");
        load.started(Some(a));
        load.started(Some(b));
        assert_eq!(
            load.admit(&limits, Some(a), now),
            Err(Refusal::PerSource(2))
        );
        let other = Load::source(&limits, "2001:db8:0:1::1".parse().unwrap());
        assert_eq!(load.admit(&limits, Some(other), now), Ok(()));
        load.ended(Some(a));
        assert_eq!(load.admit(&limits, Some(a), now), Ok(()));
        assert_eq!(load.running, 1);
    }

    #[test]
    fn per_source_rate_refuses_one_client_before_it_counts_towards_cps() {
        let limits = Limits {
            source_rate: Some(SourceRate {
                count: 2,
                per: Duration::from_secs(60),
            }),
            rate: Some(Rate {
                count: 3,
                per: Duration::from_secs(1),
                pause: Duration::from_secs(10),
            }),
            ..Limits::default()
        };
        let mut load = Load::default();
        load.prepare(&limits);
        let t = Instant::now();
        let a = Load::source(&limits, "2001:db8::1".parse().unwrap());
        let a2 = Load::source(&limits, "2001:db8::2".parse().unwrap());
        assert_eq!(load.admit(&limits, Some(a), t), Ok(()));
        assert_eq!(load.admit(&limits, Some(a2), t), Ok(()), "same /64");
        for _ in 0..5 {
            assert_eq!(
                load.admit(&limits, Some(a), t),
                Err(Refusal::SourceRate(limits.source_rate.unwrap()))
            );
        }
        assert!(!load.paused(t), "the refused ones did not count for cps");
        let b = Load::source(&limits, "192.0.2.1".parse().unwrap());
        assert_eq!(load.admit(&limits, Some(b), t), Ok(()));
        // A UNIX-domain peer has no source: not counted.
        let unlimited = Limits {
            rate: None,
            ..limits
        };
        for _ in 0..5 {
            assert_eq!(load.admit(&unlimited, None, t), Ok(()));
        }
        // Dropping the key drops the table.
        load.prepare(&Limits::default());
        assert!(load.sources.is_none());
    }

    #[test]
    fn cps_pauses_then_resumes() {
        let limits = Limits {
            rate: Some(Rate {
                count: 3,
                per: Duration::from_secs(1),
                pause: Duration::from_secs(10),
            }),
            ..Limits::default()
        };
        let mut load = Load::default();
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert_eq!(load.admit(&limits, Some(src), t), Ok(()));
        }
        assert_eq!(
            load.admit(&limits, Some(src), t),
            Err(Refusal::Rate(limits.rate.unwrap()))
        );
        assert!(load.paused(t + Duration::from_secs(9)));
        assert!(!load.paused(t + Duration::from_secs(10)));
        // A new second starts a new count.
        assert_eq!(
            load.admit(&limits, Some(src), t + Duration::from_secs(11)),
            Ok(())
        );
    }

    #[test]
    fn a_rate_over_a_minute_counts_the_whole_window() {
        let limits = Limits {
            rate: Some(Rate {
                count: 2,
                per: Duration::from_secs(60),
                pause: Duration::from_secs(600),
            }),
            ..Limits::default()
        };
        let mut load = Load::default();
        let src: IpAddr = "127.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert_eq!(load.admit(&limits, Some(src), t), Ok(()));
        // 30 s later is still the same window: the third one is too many.
        assert_eq!(
            load.admit(&limits, Some(src), t + Duration::from_secs(30)),
            Ok(())
        );
        assert_eq!(
            load.admit(&limits, Some(src), t + Duration::from_secs(59)),
            Err(Refusal::Rate(limits.rate.unwrap()))
        );
        assert!(load.paused(t + Duration::from_secs(600)));
        assert_eq!(limits.rate.unwrap().window(), "2/60s");
    }
}
