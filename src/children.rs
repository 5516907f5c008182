//! Running handlers by pid, and reaping them.
//!
//! A `Child` record holds what the exit line needs (service, peer, start
//! time), the parent's ends of its pipes, for `wait` services the
//! listener to re-arm when it exits, and its `timeout` (`Deadline`).
//!
//! A handler leads its own session, so its pid names its process group;
//! while it is not reaped, that pid (and so the group) cannot be anyone
//! else's. Signals to a handler's group are sent only then: a timed-out
//! handler's group gets its SIGKILL at the latest just before the handler
//! is reaped (`Children::reap`).

use crate::idmap::IdMap;
use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::flood::{self, Bucket, Dropped};
use crate::limits::Load;
use crate::log::LogFields;
use crate::relay::Reply;

/// The longest stderr line logged as one; longer ones are split.
const MAX_LINE: usize = 4096;

/// What one `read` of a stderr pipe takes.
const CHUNK: usize = 16 * 1024;

/// Reads of one stderr pipe per loop turn (64 KiB, a default pipe's
/// capacity): a handler that writes faster than lines can be logged gets
/// its share, and the loop goes on to the other events.
pub const READS_PER_TURN: usize = 4;

/// Reads of a reaped handler's pipe before it is closed unread (a process
/// the handler left behind may still be writing to it).
pub const READS_AT_EXIT: usize = 64;

/// A handler's stderr, logged line by line, at most `flood::STDERR_RATE`
/// lines a second (and the service's share, `flood::SERVICE_STDERR_RATE`);
/// the rest are read, counted and dropped. Reading itself is bounded too:
/// `flood::STDERR_BYTES_RATE` a second, then the pipe is not watched for a
/// while (`paused`) and the handler waits on it.
pub struct StderrPipe {
    pub fd: OwnedFd,
    partial: Vec<u8>,
    bucket: Bucket,
    pub dropped: Dropped,
    /// Bytes read since the last charge to `bytes`.
    read: usize,
    bytes: Bucket,
    /// Taken out of the poll set until its byte budget refills.
    pub paused: bool,
}

impl StderrPipe {
    pub fn new(fd: OwnedFd) -> StderrPipe {
        StderrPipe {
            fd,
            partial: Vec::new(),
            bucket: Bucket::default(),
            dropped: Dropped::default(),
            read: 0,
            bytes: Bucket::default(),
            paused: false,
        }
    }

    /// Charge what `drain` read to the byte budget; true when it is spent
    /// and the pipe should not be watched for `flood::STDERR_PAUSE`.
    pub fn over_budget(&mut self, now: Instant) -> bool {
        self.bytes
            .refill(now, flood::STDERR_BYTES_RATE, flood::STDERR_BYTES_BURST);
        self.bytes.take_n(std::mem::take(&mut self.read));
        !self.bytes.has()
    }

    /// Read what is there, at most `reads` times; call `line` for each
    /// complete line the handler's and the service's (`shared`) buckets
    /// allow, and count the others in `dropped`. Returns true at end of
    /// file (the last partial line is passed on too).
    pub fn drain(
        &mut self,
        shared: &mut Bucket,
        now: Instant,
        reads: usize,
        mut line: impl FnMut(&str),
    ) -> bool {
        self.bucket
            .refill(now, flood::STDERR_RATE, flood::STDERR_BURST);
        shared.refill(now, flood::SERVICE_STDERR_RATE, flood::SERVICE_STDERR_BURST);
        let mut gate = Gate {
            own: &mut self.bucket,
            shared,
            dropped: &mut self.dropped,
        };
        let mut chunk = [0u8; CHUNK];
        let mut left = reads;
        while left > 0 {
            match nix::unistd::read(&self.fd, &mut chunk) {
                Ok(0) => {
                    if !self.partial.is_empty() {
                        gate.pass(&self.partial, &mut line);
                        self.partial.clear();
                    }
                    return true;
                }
                Ok(n) => {
                    left -= 1;
                    self.read += n;
                    let mut data = &chunk[..n];
                    while let Some(i) = data.iter().position(|b| *b == b'\n') {
                        if self.partial.is_empty() {
                            gate.pass(&data[..i], &mut line);
                        } else {
                            self.partial.extend_from_slice(&data[..i]);
                            gate.pass(&self.partial, &mut line);
                            self.partial.clear();
                        }
                        data = &data[i + 1..];
                    }
                    for piece in data.chunks(MAX_LINE) {
                        self.partial.extend_from_slice(piece);
                        if self.partial.len() >= MAX_LINE {
                            gate.pass(&self.partial, &mut line);
                            self.partial.clear();
                        }
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(_) => return true,
            }
        }
        false
    }
}

/// Lets a line through to the log if both buckets have a token.
struct Gate<'a> {
    own: &'a mut Bucket,
    shared: &'a mut Bucket,
    dropped: &'a mut Dropped,
}

impl Gate<'_> {
    fn pass(&mut self, bytes: &[u8], line: &mut impl FnMut(&str)) {
        if self.own.has() && self.shared.has() {
            self.own.take();
            self.shared.take();
            line(&String::from_utf8_lossy(bytes));
        } else {
            self.dropped.count += 1;
        }
    }
}

/// What a `wait` handler was started for, to tell afterwards whether it
/// took it (see `Supervisor::release`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// dgram: the pending datagram's sender and first bytes.
    Datagram {
        peer: Option<SocketAddr>,
        head: Vec<u8>,
    },
    /// stream: the length of the accept queue (TCP); `None` where the
    /// kernel does not tell it (UNIX-domain).
    Queue(Option<u32>),
}

/// One running handler.
pub struct Child {
    pub service: Rc<str>,
    pub peer: Option<SocketAddr>,
    pub started: Instant,
    /// Boxed, as `probe` and `reply` are: a `Child` is written into the
    /// children's table for every connection, and with these three in
    /// place it was 456 bytes, most of them unused by a plain `nowait`
    /// handler (208 now).
    pub stderr: Option<Box<StderrPipe>>,
    /// The listener a `wait` handler holds; re-armed when it exits.
    pub holds: Option<u64>,
    /// For `wait`: the datagram or the queue it was started for.
    pub probe: Option<Box<Probe>>,
    /// For dgram `nowait`: the reply being collected from its stdout.
    pub reply: Option<Box<Reply>>,
    /// The service's load, which this handler counts in.
    pub load: Rc<RefCell<Load>>,
    /// What it is counted under for `per_source`.
    pub source: Option<IpAddr>,
    /// Which fields its exit line carries.
    pub log: LogFields,
    /// Its program and user (`Plan::program`), named if it fails before
    /// its program runs.
    pub program: Rc<str>,
    /// Its `timeout`, as its service had it when it started; `None`: no
    /// limit.
    pub deadline: Option<Deadline>,
}

/// A handler's `timeout`: SIGTERM to its process group at `term_at`,
/// SIGKILL `grace` after that. Set when it starts and never changed by a
/// reload. The supervisor's timer entries name the handler by pid and
/// `serial`, so an entry outliving its handler cannot hit another one
/// that has the same pid since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub serial: u64,
    pub term_at: Instant,
    /// `kill_grace`.
    pub grace: Duration,
    pub stage: Stage,
}

/// How far a handler's `timeout` has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not due yet.
    Running,
    /// SIGTERM sent; SIGKILL due at this time.
    Termed(Instant),
    /// SIGKILL sent.
    Killed,
}

impl Deadline {
    /// Whether the handler was signalled for its timeout (its exit line
    /// says `reason=timeout`).
    pub fn fired(&self) -> bool {
        self.stage != Stage::Running
    }
}

/// How a handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
}

#[derive(Default)]
pub struct Children {
    map: IdMap<i32, Child>,
    /// Handlers between their timeout's SIGTERM and SIGKILL. While there
    /// are any, `reap` looks at an exited child before reaping it.
    in_grace: usize,
}

impl Children {
    pub fn insert(&mut self, pid: i32, child: Child) {
        // An adopted handler may be in its grace already (`handover`).
        if child
            .deadline
            .is_some_and(|d| matches!(d.stage, Stage::Termed(_)))
        {
            self.in_grace += 1;
        }
        self.map.insert(pid, child);
    }

    pub fn get(&self, pid: i32) -> Option<&Child> {
        self.map.get(&pid)
    }

    pub fn get_mut(&mut self, pid: i32) -> Option<&mut Child> {
        self.map.get_mut(&pid)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &Child)> + '_ {
        self.map.iter().map(|(pid, c)| (*pid, c))
    }

    /// Move handler `pid`'s timeout on, if the timer entry `serial` that
    /// came due at `at` is still its own: SIGTERM to its process group
    /// (then SIGKILL is due at the time returned), or SIGKILL. `None`:
    /// the entry is out of date (the handler was reaped, the pid may be
    /// another handler's now); nothing was sent.
    pub fn overdue(
        &mut self,
        pid: i32,
        serial: u64,
        at: Instant,
    ) -> Option<(Signal, Option<Instant>)> {
        let d = self.map.get_mut(&pid)?.deadline.as_mut()?;
        if d.serial != serial {
            return None;
        }
        let step = match d.stage {
            Stage::Running if at == d.term_at => {
                let kill_at = at + d.grace;
                d.stage = Stage::Termed(kill_at);
                self.in_grace += 1;
                (Signal::SIGTERM, Some(kill_at))
            }
            Stage::Termed(kill_at) if at == kill_at => {
                d.stage = Stage::Killed;
                self.in_grace = self.in_grace.saturating_sub(1);
                (Signal::SIGKILL, None)
            }
            _ => return None,
        };
        // Not reaped: the pid still names this handler's group.
        let _ = kill(Pid::from_raw(-pid), step.0);
        Some(step)
    }

    /// One exited child of ours, if any is waiting to be reaped.
    pub fn reap(&mut self) -> Option<(i32, Child, Ending)> {
        loop {
            // A handler in its timeout's grace that exits leaves what it
            // started in its group: that gets the SIGKILL now, before the
            // reap frees the pid that names the group.
            let only = match self.in_grace {
                0 => None,
                _ => Some(self.exited()?),
            };
            if let Some(pid) = only {
                let d = self
                    .map
                    .get_mut(&pid.as_raw())
                    .and_then(|c| c.deadline.as_mut());
                if let Some(d) = d.filter(|d| matches!(d.stage, Stage::Termed(_))) {
                    d.stage = Stage::Killed;
                    self.in_grace = self.in_grace.saturating_sub(1);
                    let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
                }
            }
            let (pid, ending) = match waitpid(only, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ending::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => (pid, Ending::Signaled(sig, core)),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return None,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            };
            if let Some(child) = self.map.remove(&pid.as_raw()) {
                // After a burst of handlers, the table of its busiest
                // moment goes too (bench/soak, process exhaustion).
                crate::idmap::shrink_after_burst(&mut self.map);
                return Some((pid.as_raw(), child, ending));
            }
        }
    }

    /// The pid of an exited child, left unreaped (`WNOWAIT`).
    fn exited(&self) -> Option<Pid> {
        loop {
            let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
            match waitid(Id::All, flags) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return None,
                Ok(status) => return status.pid(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            }
        }
    }
}
