//! Access control: who may connect, and when (`only_from`, `no_access`,
//! `access_times`). Decided from the peer address before anything is
//! spawned; nothing here does I/O.
//!
//! The rule (xinetd's): an address matching neither list is allowed when
//! `only_from` is unset and refused when it is set. When both lists match,
//! the more specific entry (the longer prefix) wins; on a tie, refusal
//! wins. IPv4-mapped IPv6 peers are matched as IPv4.

use std::fmt;
use std::net::IpAddr;

/// An address prefix: `10.0.0.0/8`, `::1`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{s}\" is not an address or ADDRESS/PREFIX"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("\"{s}\": prefix length must be 0 to {max}")),
            },
        };
        let c = Cidr {
            addr: unmap(addr),
            len: if addr.is_ipv6() && unmap(addr).is_ipv4() {
                len.saturating_sub(96)
            } else {
                len
            },
        };
        if mask(c.addr, c.len) != c.addr {
            return Err(format!(
                "\"{s}\": host bits set (did you mean {}/{}?)",
                mask(c.addr, c.len),
                c.len
            ));
        }
        Ok(c)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmap(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `ip` with all but its first `len` bits cleared.
pub fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A daily time window, in minutes since midnight, local time; it may
/// wrap past midnight (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    from: u16,
    to: u16,
}

impl Window {
    pub fn parse(s: &str) -> Result<Window, String> {
        let bad = || format!("\"{s}\": expected HH:MM-HH:MM");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let minutes = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (h < 24 && m < 60 && !t.trim().starts_with('+')).then_some(h * 60 + m)
        };
        Ok(Window {
            from: minutes(a).ok_or_else(bad)?,
            to: minutes(b).ok_or_else(bad)?,
        })
    }

    pub fn contains(&self, minute: u16) -> bool {
        if self.from <= self.to {
            (self.from..=self.to).contains(&minute)
        } else {
            minute >= self.from || minute <= self.to
        }
    }
}

/// `HH:MM-HH:MM`, as `access_times` is written.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            from / 60,
            from % 60,
            to / 60,
            to % 60
        )
    }
}

/// A service's access rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// `None`: everyone not in `no_access`; `Some`: only these.
    pub only_from: Option<Vec<Cidr>>,
    pub no_access: Vec<Cidr>,
    /// Empty: any time.
    pub times: Vec<Window>,
}

/// Why the access rules refuse a peer (`refusal::Refusal` tells it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    NotInOnlyFrom,
    NoAccess(Cidr),
    OutsideTimes,
}

impl Access {
    pub fn is_open(&self) -> bool {
        *self == Access::default()
    }

    /// Decide for `ip`; `minute` (of the local day) is only asked for when
    /// `access_times` is set.
    pub fn check(&self, ip: IpAddr, minute: impl FnOnce() -> u16) -> Result<(), Denial> {
        let best = |list: &[Cidr]| {
            list.iter()
                .filter(|c| c.contains(ip))
                .max_by_key(|c| c.len)
                .copied()
        };
        let denied = best(&self.no_access);
        match (&self.only_from, denied) {
            (None, Some(d)) => return Err(Denial::NoAccess(d)),
            (Some(only), d) => match (best(only), d) {
                (None, _) => return Err(Denial::NotInOnlyFrom),
                (Some(a), Some(d)) if d.len >= a.len => return Err(Denial::NoAccess(d)),
                _ => {}
            },
            (None, None) => {}
        }
        if !self.times.is_empty() {
            let m = minute();
            if !self.times.iter().any(|w| w.contains(m)) {
                return Err(Denial::OutsideTimes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|s| Cidr::parse(s).unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parsing_and_matching() {
        assert!(Cidr::parse("10.0.0.0/8").unwrap().contains(ip("10.9.8.7")));
        assert!(!Cidr::parse("10.0.0.0/8").unwrap().contains(ip("11.0.0.1")));
        assert!(Cidr::parse("127.0.0.1")
            .unwrap()
            .contains(ip("::ffff:127.0.0.1")));
        assert!(Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("2001:db8:1::5")));
        assert!(!Cidr::parse("2001:db8::/32")
            .unwrap()
            .contains(ip("10.0.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(Cidr::parse("10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("example.com").is_err());
    }

    #[test]
    fn more_specific_rule_wins() {
        let a = Access {
            only_from: Some(cidrs(&["10.0.0.0/8"])),
            no_access: cidrs(&["10.1.0.0/16"]),
            times: vec![],
        };
        assert_eq!(a.check(ip("10.2.0.1"), || 0), Ok(()));
        assert!(matches!(
            a.check(ip("10.1.0.1"), || 0),
            Err(Denial::NoAccess(_))
        ));
        assert_eq!(a.check(ip("192.0.2.1"), || 0), Err(Denial::NotInOnlyFrom));
        // The reverse nesting: a host allowed inside a denied network.
        let b = Access {
            only_from: Some(cidrs(&["10.1.2.3"])),
            no_access: cidrs(&["10.0.0.0/8"]),
            times: vec![],
        };
        assert_eq!(b.check(ip("10.1.2.3"), || 0), Ok(()));
        assert!(b.check(ip("10.1.2.4"), || 0).is_err());
        // Equal prefixes: refusal wins.
        let c = Access {
            only_from: Some(cidrs(&["10.0.0.0/8"])),
            no_access: cidrs(&["10.0.0.0/8"]),
            times: vec![],
        };
        assert!(c.check(ip("10.0.0.1"), || 0).is_err());
        // An empty only_from admits nobody.
        let d = Access {
            only_from: Some(vec![]),
            ..Access::default()
        };
        assert_eq!(d.check(ip("127.0.0.1"), || 0), Err(Denial::NotInOnlyFrom));
    }

    #[test]
    fn time_windows_including_past_midnight() {
        let day = Window::parse("08:00-17:30").unwrap();
        assert!(day.contains(8 * 60) && day.contains(17 * 60 + 30) && !day.contains(18 * 60));
        let night = Window::parse("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
        assert!(Window::parse("25:00-26:00").is_err());
        assert!(Window::parse("8-17").is_err());
        let a = Access {
            times: vec![day],
            ..Access::default()
        };
        assert_eq!(a.check(ip("1.2.3.4"), || 7 * 60), Err(Denial::OutsideTimes));
        assert_eq!(a.check(ip("1.2.3.4"), || 9 * 60), Ok(()));
    }
}
