//! The supervisor's file descriptors as a budget: the defaults that keep
//! one in-process (internal) service from taking them all, and a reserve
//! that only exec'd services may use.
//!
//! An internal TCP connection costs the supervisor a descriptor for as
//! long as the peer keeps it open; an exec'd service's connection costs
//! one only between accept and spawn. So internal connections are refused
//! once fewer than [`FdBudget::reserve`] descriptors would be left, and
//! exec'd services keep working whatever an internal service's peers do.

/// Descriptors the supervisor holds besides listeners, connections and
/// handler pipes: epoll, signal pipe, log, the spare fd, std streams.
const FIXED: usize = 16;

/// The limits derived from RLIMIT_NOFILE (as raised at startup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdBudget {
    /// RLIMIT_NOFILE.
    pub limit: usize,
    /// Descriptors internal connections leave free: an eighth of the
    /// limit, between 16 and 1024 (and never more than half).
    pub reserve: usize,
}

impl FdBudget {
    pub fn from_limit(limit: usize) -> FdBudget {
        FdBudget {
            limit,
            reserve: (limit / 8).clamp(16, 1024).min(limit / 2),
        }
    }

    /// Default `instances` of an internal stream service: a quarter of
    /// the fd limit, at least 16 and at most 65536.
    pub fn internal_instances(&self) -> usize {
        (self.limit / 4).clamp(16, 65_536)
    }

    /// Default `per_source` of an internal stream service: a quarter of
    /// its default `instances`, between 4 and 256.
    pub fn internal_per_source(&self) -> usize {
        (self.internal_instances() / 4).clamp(4, 256)
    }

    /// Whether an internal connection that was just given descriptor `fd`
    /// leaves the reserve free, with `held` descriptors known to be open
    /// (connections, listeners, pipes). The kernel hands out the lowest
    /// free number, so every descriptor below `fd` is in use too: no
    /// system call is needed to count.
    pub fn leaves_reserve(&self, fd: i32, held: usize) -> bool {
        let used = (fd.max(0) as usize + 1).max(held + FIXED);
        used + self.reserve <= self.limit
    }
}

impl FdBudget {
    /// The budget of this process now: read once by the supervisor, after
    /// `sys::raise_nofile`.
    pub fn current() -> FdBudget {
        let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft.min(1 << 30) as usize);
        FdBudget::from_limit(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_scale_with_the_fd_limit() {
        let small = FdBudget::from_limit(256);
        assert_eq!(small.reserve, 32);
        assert_eq!(small.internal_instances(), 64);
        assert_eq!(small.internal_per_source(), 16);
        let big = FdBudget::from_limit(1 << 20);
        assert_eq!(big.reserve, 1024);
        assert_eq!(big.internal_instances(), 65_536);
        assert_eq!(big.internal_per_source(), 256);
        assert_eq!(FdBudget::from_limit(20).reserve, 10);
    }

    #[test]
    fn the_reserve_counts_the_lowest_free_fd_and_what_is_held() {
        let b = FdBudget::from_limit(256);
        assert!(b.leaves_reserve(100, 100));
        assert!(b.leaves_reserve(223, 0));
        assert!(!b.leaves_reserve(224, 0));
        // Low descriptor (a hole), but many held.
        assert!(!b.leaves_reserve(10, 230));
    }
}
