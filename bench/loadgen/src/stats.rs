//! Latency percentiles and error counting shared by the modes.

use std::fmt::Write as _;
use std::io;
use std::time::Instant;

/// Errors by kind, so a summary can tell refusals from timeouts.
#[derive(Default, Clone, Copy)]
pub struct Errors {
    pub refused: u64,
    pub timeout: u64,
    pub reset: u64,
    /// Wrong or short reply, early EOF.
    pub bad_reply: u64,
    pub other: u64,
    /// When the first and the last error happened, so that a run across an
    /// event (a backend killed) can tell how long the failures went on.
    pub first: Option<Instant>,
    pub last: Option<Instant>,
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
        let now = Instant::now();
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    pub fn add(&mut self, o: &Errors) {
        self.refused += o.refused;
        self.timeout += o.timeout;
        self.reset += o.reset;
        self.bad_reply += o.bad_reply;
        self.other += o.other;
        self.first = [self.first, o.first].into_iter().flatten().min();
        self.last = [self.last, o.last].into_iter().flatten().max();
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

    /// ` first_err_s=S last_err_s=S` (seconds after `start`, `-` without
    /// errors) and ` start_unix=S`: where the errors fell in the run, on
    /// the wall clock a harness can compare with its own events.
    pub fn times(&self, start: Instant) -> String {
        let at = |t: Option<Instant>| {
            t.map_or("-".to_string(), |t| {
                format!("{:.3}", t.duration_since(start).as_secs_f64())
            })
        };
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
            - start.elapsed().as_secs_f64();
        format!(
            " first_err_s={} last_err_s={} start_unix={unix:.3}",
            at(self.first),
            at(self.last)
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
