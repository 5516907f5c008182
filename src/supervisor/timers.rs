//! The heap of timers: pauses ending, idle sweeps, stderr pipes resumed,
//! handlers' `timeout`s.
//!
//! A handler with a `timeout` costs one entry (and one more once it is
//! signalled), pushed when it starts; one without costs nothing. A handler
//! that exits leaves its entry, to come up and be found out of date
//! (`Children::overdue`); so that a busy service with a long `timeout`
//! does not pile them up (a connection rate times the timeout), the heap
//! is swept of them once they are more than half of it.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use crate::children::{Child, Deadline, Stage};
use crate::log::Event;

use super::listeners::ListenState;
use super::{Resume, Supervisor};
use crate::shutdown::Drain;

impl Supervisor {
    pub(super) fn next_timer(&self) -> Option<Instant> {
        let pause = self.timers.peek().map(|Reverse((at, _))| *at);
        let drain = self.draining.as_ref().map(Drain::deadline);
        pause.into_iter().chain(drain).min()
    }

    /// The `timeout` of handler `pid`: SIGTERM due at `term_at`, SIGKILL
    /// `grace` after it; `stage` is `Running` for a new handler, and as
    /// far as it got for one adopted from a re-exec. Its next step goes
    /// into the heap.
    pub(super) fn deadline(
        &mut self,
        pid: i32,
        term_at: Instant,
        grace: Duration,
        stage: Stage,
    ) -> Deadline {
        let serial = self.next_id;
        self.next_id += 1;
        let due = match stage {
            Stage::Running => Some(term_at),
            Stage::Termed(kill_at) => Some(kill_at),
            Stage::Killed => None,
        };
        if let Some(at) = due {
            self.timers
                .push(Reverse((at, Resume::Deadline { pid, serial })));
        }
        Deadline {
            serial,
            term_at,
            grace,
            stage,
        }
    }

    /// Handler `child` was reaped: its `timeout` entry, if one is left in
    /// the heap, is out of date. Sweep them out once they are more than
    /// half the heap (and more than a few): O(heap) for every heap/2
    /// handlers, so constant per handler, and the heap stays within twice
    /// its live entries.
    pub(super) fn forget_deadline(&mut self, child: &Child) {
        if !child.deadline.is_some_and(|d| d.stage != Stage::Killed) {
            return;
        }
        self.stale_deadlines += 1;
        if self.stale_deadlines < 1024 || self.stale_deadlines * 2 < self.timers.len() {
            return;
        }
        let children = &self.children;
        self.timers.retain(|Reverse((_, due))| match due {
            Resume::Deadline { pid, serial } => children
                .get(*pid)
                .and_then(|c| c.deadline)
                .is_some_and(|d| d.serial == *serial),
            _ => true,
        });
        self.stale_deadlines = 0;
    }

    /// A handler's `timeout` entry came up at `at`: signal its group if
    /// the entry is still its own, and log it.
    fn on_deadline(&mut self, pid: i32, serial: u64, at: Instant) {
        let Some((signal, kill_at)) = self.children.overdue(pid, serial, at) else {
            // Its handler was reaped (and counted in `forget_deadline`).
            self.stale_deadlines = self.stale_deadlines.saturating_sub(1);
            return;
        };
        if let Some(kill_at) = kill_at {
            self.timers
                .push(Reverse((kill_at, Resume::Deadline { pid, serial })));
        }
        if let Some(child) = self.children.get_mut(pid) {
            self.log.event(Event::Timeout {
                service: &child.service,
                pid,
                after_ms: child.started.elapsed().as_millis(),
                signal,
            });
        }
    }

    /// End the pauses that are due.
    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((at, due))) = self.timers.pop() else {
                break;
            };
            match due {
                Resume::Listener(id) => {
                    let Some(l) = self.listeners.get(&id) else {
                        continue;
                    };
                    // Paused again meanwhile: that pause has its own entry.
                    if matches!(l.state, ListenState::Paused(until, _) if until <= now) {
                        self.log.event(Event::Resume {
                            service: &l.service.name,
                            addr: &l.key,
                        });
                        self.arm(id, ListenState::Armed);
                    }
                }
                Resume::IdleSweep => self.sweep_idle(now),
                Resume::Stderr(pid) => self.resume_stderr(pid),
                Resume::Control(id) => self.control_deadline(id),
                Resume::Proxied(id) => self.proxied_deadline(id),
                Resume::Connect(cid) => self.connect_overdue(cid),
                Resume::Deadline { pid, serial } => self.on_deadline(pid, serial, at),
                Resume::Suppressed(name) => {
                    let Some(load) = self.loads.get(&*name) else {
                        continue;
                    };
                    let held = load.borrow_mut().refusals.flush(now);
                    if let Some(lines) = held {
                        self.log.event(Event::Suppressed {
                            service: &name,
                            lines,
                        });
                    }
                }
                Resume::Service(name) => {
                    let Some(load) = self.loads.get(&*name) else {
                        continue;
                    };
                    let ended = {
                        let mut load = load.borrow_mut();
                        let ended = load.paused_until.is_some_and(|t| t <= now);
                        if ended {
                            load.paused_until = None;
                        }
                        ended
                    };
                    if ended {
                        self.log.event(Event::RateResume { service: &name });
                        self.touch(&name);
                    }
                }
            }
        }
    }
}
