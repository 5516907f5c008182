//! Latency percentiles and error counting shared by the modes.

use std::fmt::Write as _;
use std::io;

/// Errors by kind, so a summary can tell refusals from timeouts.
#[derive(Default, Clone, Copy)]
pub struct Errors {
    pub refused: u64,
    pub timeout: u64,
    pub reset: u64,
    /// Wrong or short reply, early EOF.
    pub bad_reply: u64,
    pub other: u64,
}

impl Errors {
    pub fn count(&mut self, e: &io::Error) {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => self.refused += 1,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.timeout += 1,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => self.reset += 1,
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => self.bad_reply += 1,
            _ => self.other += 1,
        }
    }

    pub fn add(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.bad_reply += o.bad_reply;
        self.other += o.other;
    }

    pub fn total(&self) -> u64 {
        self.refused + self.timeout + self.reset + self.bad_reply + self.other
    }

    /// ` errors=N refused=N timeout=N reset=N bad_reply=N other=N`
    pub fn fields(&self) -> String {
        format!(
            " errors={} refused={} timeout={} reset={} bad_reply={} other={}",
            self.total(),
            self.refused,
            self.timeout,
            self.reset,
            self.bad_reply,
            self.other
        )
    }
}

/// ` p50_us=.. p90_us=.. p99_us=.. max_us=..` over latencies in µs
/// (nearest-rank percentiles; all 0 when there are none). Sorts `lat`.
pub fn percentiles(lat: &mut [u64]) -> String {
    lat.sort_unstable();
    let mut s = String::new();
    for (name, p) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        let v = if lat.is_empty() {
            0
        } else {
            let rank = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len());
            lat[rank - 1]
        };
        let _ = write!(s, " {name}_us={v}");
    }
    let _ = write!(s, " max_us={}", lat.last().copied().unwrap_or(0));
    s
}
