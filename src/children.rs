//! Running handlers by pid, and reaping them.
//!
//! A `Child` record holds what the exit line needs (service, peer, start
//! time), the parent's ends of its pipes, and, for `wait` services, the
//! listener to re-arm when it exits.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::config::Protocol;
use crate::limits::Load;
use crate::log::LogFields;
use crate::relay::Reply;

/// The longest stderr line logged as one; longer ones are split.
const MAX_LINE: usize = 4096;

/// A handler's stderr, logged line by line.
pub struct StderrPipe {
    pub fd: OwnedFd,
    partial: Vec<u8>,
}

impl StderrPipe {
    pub fn new(fd: OwnedFd) -> StderrPipe {
        StderrPipe {
            fd,
            partial: Vec::new(),
        }
    }

    /// Read what is there; call `line` for each complete line. Returns true
    /// at end of file (the last partial line is passed on too).
    pub fn drain(&mut self, mut line: impl FnMut(&str)) -> bool {
        let mut chunk = [0u8; 4096];
        loop {
            match nix::unistd::read(&self.fd, &mut chunk) {
                Ok(0) => {
                    if !self.partial.is_empty() {
                        line(&String::from_utf8_lossy(&self.partial));
                        self.partial.clear();
                    }
                    return true;
                }
                Ok(n) => {
                    self.partial.extend_from_slice(&chunk[..n]);
                    while let Some(i) = self.partial.iter().position(|b| *b == b'\n') {
                        line(&String::from_utf8_lossy(&self.partial[..i]));
                        self.partial.drain(..=i);
                    }
                    if self.partial.len() >= MAX_LINE {
                        line(&String::from_utf8_lossy(&self.partial));
                        self.partial.clear();
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// The datagram a `wait` handler was started for, to tell afterwards
/// whether it read it (see `supervisor::check_looping`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub peer: Option<SocketAddr>,
    pub head: Vec<u8>,
}

/// One running handler.
pub struct Child {
    pub service: Rc<str>,
    pub protocol: Protocol,
    pub peer: Option<SocketAddr>,
    pub started: Instant,
    pub stderr: Option<StderrPipe>,
    /// The listener a `wait` handler holds; re-armed when it exits.
    pub holds: Option<u64>,
    /// For dgram `wait`: the datagram it was started for.
    pub probe: Option<Probe>,
    /// For dgram `nowait`: the reply being collected from its stdout.
    pub reply: Option<Reply>,
    /// The service's load, which this handler counts in.
    pub load: Rc<RefCell<Load>>,
    /// What it is counted under for `per_source`.
    pub source: Option<IpAddr>,
    /// Which fields its exit line carries.
    pub log: LogFields,
}

/// How a handler ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(Signal, bool),
}

#[derive(Default)]
pub struct Children {
    map: HashMap<i32, Child>,
}

impl Children {
    pub fn insert(&mut self, pid: i32, child: Child) {
        self.map.insert(pid, child);
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

    pub fn pids(&self) -> impl Iterator<Item = i32> + '_ {
        self.map.keys().copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i32, &Child)> + '_ {
        self.map.iter().map(|(pid, c)| (*pid, c))
    }

    /// One exited child of ours, if any is waiting to be reaped.
    pub fn reap(&mut self) -> Option<(i32, Child, Ending)> {
        loop {
            let (pid, ending) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, Ending::Exited(code)),
                Ok(WaitStatus::Signaled(pid, sig, core)) => (pid, Ending::Signaled(sig, core)),
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => return None,
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return None,
            };
            if let Some(child) = self.map.remove(&pid.as_raw()) {
                return Some((pid.as_raw(), child, ending));
            }
        }
    }
}
