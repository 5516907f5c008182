//! `idle_timeout`: internal TCP connections without traffic for that long
//! are closed. The supervisor sweeps its connections once per period,
//! a fraction of the timeout: each connection only records that it saw
//! traffic since the last sweep (a flag set on its events), so the cost is
//! one pass per period, no timer or clock read per connection. A
//! connection is closed by the first sweep that finds it silent for the
//! whole timeout, at most one period late.

use std::time::Duration;

/// The shortest and longest sweep period.
const MIN_PERIOD: Duration = Duration::from_millis(250);
const MAX_PERIOD: Duration = Duration::from_secs(30);

/// How often to sweep for connections with this `idle_timeout`; `None`
/// when it is zero (never closed for being idle).
pub fn sweep_period(timeout: Duration) -> Option<Duration> {
    if timeout.is_zero() {
        return None;
    }
    Some((timeout / 8).clamp(MIN_PERIOD, MAX_PERIOD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_period_is_a_fraction_of_the_timeout() {
        assert_eq!(sweep_period(Duration::ZERO), None);
        assert_eq!(
            sweep_period(Duration::from_secs(1)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            sweep_period(Duration::from_secs(300)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            sweep_period(Duration::from_secs(80)),
            Some(Duration::from_secs(10))
        );
    }
}
