//! Logging: one event per line, `EVENT key=value ...`, to syslog or stderr.
//!
//! The grammar is fixed so a machine can parse it: the first word names the
//! event (`listen`, `start`, `exit`, `stderr`, `reload`, `error`, ...), then
//! `key=value` pairs; values with spaces or quotes are double-quoted with
//! backslash escapes. Every line about a service carries `service=NAME`.
//! Each line is an [`Event`] (`events.rs`), written by `Log::event`: the
//! grammar is enforced there, in one place.
//!
//! The `syslog` crate provides the transport (datagram socket, falling back to
//! a stream socket); the RFC 3164 header is written here, without a timestamp
//! (the local daemon stamps it on receipt), so a line costs one write into a
//! reused buffer and one `send`.
//!
//! On stderr, the lines of one turn of the event loop are collected and
//! written together (`flush`) before the loop waits again: under load one
//! `write` carries many lines, and no line waits longer than the turn that
//! produced it. Each starts with the local time (RFC 3339, milliseconds),
//! unless stderr is the journal, which stamps lines itself (`Clock`): there
//! each line starts with its syslog priority instead, `<3>` error, `<4>`
//! warning, `<6>` info (sd-daemon(3)), which journald strips and keeps as
//! the entry's priority, so `journalctl -p warning` selects by level.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use syslog::{Facility, LogFormat, Severity};

use crate::render::{append, append_all, Text};

pub mod events;

pub use events::{Event, Problem};

/// The default syslog socket.
const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// Bytes of stderr lines after which they are written without waiting for
/// the end of the turn.
const STDERR_BATCH: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

impl Level {
    fn severity(self) -> u8 {
        match self {
            Level::Error => Severity::LOG_ERR as u8,
            Level::Warning => Severity::LOG_WARNING as u8,
            Level::Info => Severity::LOG_INFO as u8,
        }
    }
}

/// Where lines go.
enum Sink {
    Stderr,
    Syslog {
        logger: syslog::Logger<syslog::LoggerBackend, Raw>,
        facility: Facility,
        socket: PathBuf,
    },
}

/// Hands a pre-formatted line to the backend in one write (one datagram).
#[derive(Clone, Copy)]
struct Raw;

impl LogFormat<&[u8]> for Raw {
    fn format<W: std::io::Write>(&self, w: &mut W, _: Severity, line: &[u8]) -> syslog::Result<()> {
        w.write_all(line).map_err(syslog::Error::Write)
    }
}

/// The time a stderr line starts with, `2026-12-04T13:35:25.123+01:00 `,
/// local time; the date and time of day are made once a second.
#[derive(Default)]
struct Clock {
    /// The second `head` and `zone` were made for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    head: String,
    /// `+HH:MM` of `second`.
    zone: String,
}

impl Clock {
    /// Only where a reader needs it: not when stderr is the journal.
    fn for_stderr() -> Option<Box<Clock>> {
        (!stderr_is_journal()).then(Box::default)
    }

    fn stamp(&mut self, buf: &mut Vec<u8>) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        if now.as_secs() != self.second || self.head.is_empty() {
            self.second = now.as_secs();
            self.head.clear();
            self.zone.clear();
            match crate::sys::local_time(self.second as i64) {
                Some(t) => {
                    let off = t.utc_offset.unsigned_abs();
                    let sign = if t.utc_offset < 0 { '-' } else { '+' };
                    let _ = write!(
                        self.head,
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                        t.year, t.month, t.day, t.hour, t.minute, t.second
                    );
                    let _ = write!(self.zone, "{sign}{:02}:{:02}", off / 3600, off / 60 % 60);
                }
                // Not expected; seconds since the epoch still order lines.
                None => self.head.push_str(Text::decimal(self.second).as_str()),
            }
        }
        let ms = now.subsec_millis();
        let ms = [b'.', digit(ms / 100), digit(ms / 10 % 10), digit(ms % 10)];
        append_all(
            buf,
            &[self.head.as_bytes(), &ms, self.zone.as_bytes(), b" "],
        );
    }
}

/// The ASCII digit of `d` (0 to 9).
fn digit(d: u32) -> u8 {
    b'0' + (d % 10) as u8
}

/// Whether fd 2 is the journal's stream: systemd sets `JOURNAL_STREAM` to
/// its `DEVICE:INODE` (systemd.exec(5)). The variable is inherited by
/// processes whose stderr goes elsewhere, so the descriptor is compared.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<libc::dev_t>(), ino.parse::<libc::ino_t>()) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// The supervisor's logger.
pub struct Log {
    sink: Sink,
    /// Stamps lines written to stderr; `None` when stderr is the journal,
    /// whose lines start with their priority instead (`head`).
    clock: Option<Box<Clock>>,
    /// `oxinetd[PID]: `
    tag: Box<str>,
    /// Reused for every line, so logging allocates only while it grows; on
    /// stderr, the lines not written yet.
    buf: Vec<u8>,
}

impl Log {
    pub fn stderr() -> Log {
        Log {
            sink: Sink::Stderr,
            clock: Clock::for_stderr(),
            tag: tag(std::process::id()),
            buf: Vec::with_capacity(512),
        }
    }

    /// Connect to syslog at `socket` (default `/dev/log`).
    pub fn syslog(facility: Facility, socket: Option<&Path>) -> Result<Log, String> {
        let socket = socket.unwrap_or(Path::new(DEFAULT_SYSLOG_SOCKET));
        let logger = syslog::unix_custom(Raw, socket)
            .map_err(|e| format!("unable to connect to syslog at {}: {e}", socket.display()))?;
        Ok(Log {
            sink: Sink::Syslog {
                logger,
                facility,
                socket: socket.to_path_buf(),
            },
            clock: Clock::for_stderr(),
            tag: tag(std::process::id()),
            buf: Vec::with_capacity(512),
        })
    }

    pub fn is_syslog(&self) -> bool {
        matches!(self.sink, Sink::Syslog { .. })
    }

    /// Log one event, at its level.
    pub fn event(&mut self, event: Event<'_>) {
        match &mut self.sink {
            Sink::Stderr => {
                head(&mut self.buf, self.clock.as_deref_mut(), event.level());
                append(&mut self.buf, self.tag.as_bytes());
                event.write(&mut self.buf);
                self.buf.push(b'\n');
                if self.buf.len() >= STDERR_BATCH {
                    self.flush();
                }
            }
            Sink::Syslog {
                logger,
                facility,
                socket,
            } => {
                self.buf.clear();
                let pri = *facility as u8 | event.level().severity();
                self.buf.push(b'<');
                append(&mut self.buf, Text::decimal(u64::from(pri)).as_bytes());
                self.buf.push(b'>');
                let body = self.buf.len();
                append(&mut self.buf, self.tag.as_bytes());
                event.write(&mut self.buf);
                if logger.info(&self.buf[..]).is_ok() {
                    return;
                }
                // The daemon may have restarted: reconnect once, else stderr.
                if let Ok(mut fresh) = syslog::unix_custom(Raw, &*socket) {
                    if fresh.info(&self.buf[..]).is_ok() {
                        *logger = fresh;
                        return;
                    }
                }
                let mut line = Vec::with_capacity(self.buf.len() + 32);
                head(&mut line, self.clock.as_deref_mut(), event.level());
                line.extend_from_slice(&self.buf[body..]);
                line.push(b'\n');
                let _ = std::io::stderr().write_all(&line);
            }
        }
    }

    /// Write the stderr lines collected so far (syslog lines are sent at
    /// once). The event loop calls this before it waits.
    pub fn flush(&mut self) {
        if matches!(self.sink, Sink::Stderr) && !self.buf.is_empty() {
            // Nothing sensible can be done if stderr itself is gone.
            let _ = std::io::stderr().write_all(&self.buf);
            self.buf.clear();
        }
    }
}

/// What a stderr line starts with: the local time, or when stderr is the
/// journal (no `clock`) the line's priority as sd-daemon(3) has it, `<N>`
/// (the severity only: the facility is the unit's `SyslogFacility=`).
fn head(buf: &mut Vec<u8>, clock: Option<&mut Clock>, level: Level) {
    match clock {
        Some(clock) => clock.stamp(buf),
        None => {
            // One digit: severities are 0 to 7.
            append(buf, &[b'<', b'0' + level.severity(), b'>']);
        }
    }
}

/// `oxinetd[PID]: `, the tag every line starts with: rendered once (the
/// pid only changes with a re-exec, which makes a new `Log`).
fn tag(pid: u32) -> Box<str> {
    format!("oxinetd[{pid}]: ").into()
}

impl Drop for Log {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Which fields per-connection lines carry (`log_on_success`,
/// `log_on_failure`); a line with no field chosen is not logged at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFields {
    pub pid: bool,
    pub host: bool,
    pub exit: bool,
    pub duration: bool,
    pub traffic: bool,
    /// Refusals are logged (with their reason).
    pub attempt: bool,
    /// Refusals name the peer.
    pub fail_host: bool,
}

impl Default for LogFields {
    fn default() -> LogFields {
        LogFields {
            pid: true,
            host: true,
            exit: true,
            duration: true,
            traffic: true,
            attempt: true,
            fail_host: true,
        }
    }
}

impl LogFields {
    pub const SUCCESS: [&'static str; 5] = ["PID", "HOST", "EXIT", "DURATION", "TRAFFIC"];
    pub const FAILURE: [&'static str; 2] = ["HOST", "ATTEMPT"];

    pub fn any_success(&self) -> bool {
        self.pid || self.host || self.exit || self.duration || self.traffic
    }
}

/// Lets a few lines of one kind through per second and counts the rest, so
/// a flood cannot flood the log.
#[derive(Debug, Default)]
pub struct Throttle {
    window: Option<std::time::Instant>,
    logged: u32,
    suppressed: u64,
}

impl Throttle {
    /// Lines let through per second.
    const PER_SECOND: u32 = 5;

    /// When a line was held back and it is the first of its window: the
    /// end of the window, when `flush` should report the held-back lines if
    /// no later line has by then.
    pub fn first_held(&self) -> Option<std::time::Instant> {
        (self.suppressed == 1)
            .then(|| self.window.map(|w| w + std::time::Duration::from_secs(1)))?
    }

    /// The lines held back, once their window is over (`Some(n)`, n > 0),
    /// and not reported since by a line's `suppressed=`.
    pub fn flush(&mut self, now: std::time::Instant) -> Option<u64> {
        let over = self
            .window
            .is_none_or(|w| now.duration_since(w) >= std::time::Duration::from_secs(1));
        (over && self.suppressed > 0).then(|| std::mem::take(&mut self.suppressed))
    }

    /// `Some(n)` to log now, `n` being how many were suppressed before it;
    /// `None` to stay quiet.
    pub fn admit(&mut self, now: std::time::Instant) -> Option<u64> {
        let fresh = self
            .window
            .is_none_or(|w| now.duration_since(w) >= std::time::Duration::from_secs(1));
        if fresh {
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < Self::PER_SECOND {
            self.logged += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// A value for a `key=value` pair: quoted when it would not read as one word.
pub struct Q<'a>(pub &'a str);

impl fmt::Display for Q<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
        if plain {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                c if c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                c if invisible(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Characters that are not control characters (those are escaped as
/// `\xNN`, C1 and NEL included) but would still let a value change how a
/// log line looks or is split: line and paragraph separators, bidi marks,
/// embeddings, overrides and isolates, zero-width and other invisible
/// format characters, the byte order mark. Escaped as `\u{XXXX}`. Only
/// non-ASCII text gets here: plain values never reach the quoting loop.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
    )
}

#[cfg(test)]
mod tests {
    use super::Q;

    #[test]
    fn throttle_lets_a_few_through_and_counts_the_rest() {
        let mut t = super::Throttle::default();
        let now = std::time::Instant::now();
        let admitted: Vec<_> = (0..8).map(|_| t.admit(now)).collect();
        assert_eq!(&admitted[..5], &[Some(0); 5]);
        assert_eq!(&admitted[5..], &[None; 3]);
        assert_eq!(t.admit(now + std::time::Duration::from_secs(1)), Some(3));
    }

    #[test]
    fn journal_lines_start_with_their_priority() {
        use super::Level;
        let mut line = Vec::new();
        for level in [Level::Error, Level::Warning, Level::Info] {
            super::head(&mut line, None, level);
        }
        assert_eq!(line, b"<3><4><6>");
    }

    #[test]
    fn stderr_lines_are_stamped_with_local_time() {
        let mut clock = super::Clock::default();
        let mut line = Vec::new();
        clock.stamp(&mut line);
        // 2026-12-04T13:35:25.123+01:00 and a space.
        let b = &line[..];
        assert_eq!(b.len(), 30, "{line:?}");
        assert_eq!(
            (b[4], b[7], b[10], b[13], b[16], b[19]),
            (b'-', b'-', b'T', b':', b':', b'.')
        );
        assert!(matches!(b[23], b'+' | b'-'), "{line:?}");
        assert_eq!((b[26], b[29]), (b':', b' '));
    }

    #[test]
    fn quoting() {
        assert_eq!(Q("abc").to_string(), "abc");
        assert_eq!(Q("a b").to_string(), "\"a b\"");
        assert_eq!(Q("say \"hi\"").to_string(), "\"say \\\"hi\\\"\"");
        assert_eq!(Q("").to_string(), "\"\"");
        assert_eq!(Q("x\u{1}").to_string(), "\"x\\x01\"");
    }

    #[test]
    fn unicode_separators_and_bidi_controls_are_escaped() {
        assert_eq!(
            Q("a\u{2028}b\u{2029}c\u{202e}d\u{feff}e").to_string(),
            "\"a\\u{2028}b\\u{2029}c\\u{202e}d\\u{feff}e\""
        );
        assert_eq!(
            Q("\u{200e}\u{200f}\u{202a}\u{2066}\u{2069}\u{85}\u{9b}").to_string(),
            "\"\\u{200e}\\u{200f}\\u{202a}\\u{2066}\\u{2069}\\x85\\x9b\""
        );
        // Other non-ASCII text is kept as it is.
        assert_eq!(
            Q("caf\u{e9} \u{4e2d}").to_string(),
            "\"caf\u{e9} \u{4e2d}\""
        );
    }
}
