//! Stopping: after SIGTERM or SIGINT the listeners are closed and running
//! handlers get `shutdown_grace` to finish. Then each one's process group
//! (a handler leads its own session) gets SIGTERM; the groups of handlers
//! still running [`TERM_GRACE`] later get SIGKILL. The supervisor exits
//! once every handler is reaped, so none outlives it, or [`REAP_LIMIT`]
//! after the SIGKILL at the latest (a process in uninterruptible sleep
//! dies only when it wakes).

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::children::Children;
use crate::log::{Event, Log};

/// From the SIGTERM at the end of `shutdown_grace` to the SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(2);
/// From the SIGKILL to giving up waiting for the handlers to be reaped.
pub const REAP_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for handlers to end by themselves.
    Grace,
    /// SIGTERM sent.
    Termed,
    /// SIGKILL sent.
    Killed,
}

/// Where a stop is, and when its next step is due.
#[derive(Debug, Clone, Copy)]
pub struct Drain {
    stage: Stage,
    deadline: Instant,
}

/// What the loop does after a look at the drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on reaping.
    Wait,
    /// Exit now.
    Exit,
}

impl Drain {
    pub fn new(now: Instant, grace: Duration) -> Drain {
        Drain {
            stage: Stage::Grace,
            deadline: now + grace,
        }
    }

    /// When the loop must look again at the latest.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Called after every turn of the loop while stopping: signal the
    /// handlers left when a step is due; `Exit` when none is left (or
    /// they could not be reaped in time).
    pub fn step(&mut self, now: Instant, children: &Children, log: &mut Log) -> Next {
        if children.is_empty() {
            log.event(Event::Stopped {
                handlers_left: None,
            });
            return Next::Exit;
        }
        if now < self.deadline {
            return Next::Wait;
        }
        match self.stage {
            Stage::Grace => {
                signal_all(children, Signal::SIGTERM, log);
                self.stage = Stage::Termed;
                self.deadline = now + TERM_GRACE;
                Next::Wait
            }
            Stage::Termed => {
                signal_all(children, Signal::SIGKILL, log);
                self.stage = Stage::Killed;
                self.deadline = now + REAP_LIMIT;
                Next::Wait
            }
            Stage::Killed => {
                log.event(Event::Stopped {
                    handlers_left: Some(children.len()),
                });
                Next::Exit
            }
        }
    }
}

/// Send `sig` to the process group of every running handler, and log it.
fn signal_all(children: &Children, sig: Signal, log: &mut Log) {
    for (pid, child) in children.iter() {
        // Handlers are session leaders: end their whole group. The pid is
        // still ours (not reaped), so it cannot name another group.
        let _ = kill(Pid::from_raw(-pid), sig);
        log.event(Event::Killed {
            service: &child.service,
            pid,
            signal: sig,
        });
    }
}
