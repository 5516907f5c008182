//! The heap of timers: pauses ending, idle sweeps, stderr pipes resumed.

use std::cmp::Reverse;
use std::time::Instant;

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

    /// End the pauses that are due.
    pub(super) fn on_timers(&mut self) {
        let now = Instant::now();
        while self
            .timers
            .peek()
            .is_some_and(|Reverse((at, _))| *at <= now)
        {
            let Some(Reverse((_, due))) = self.timers.pop() else {
                break;
            };
            match due {
                Resume::Listener(id) => {
                    let Some(l) = self.listeners.get(&id) else {
                        continue;
                    };
                    // Paused again meanwhile: that pause has its own entry.
                    if matches!(l.state, ListenState::Paused(until) if until <= now) {
                        self.log.event(Event::Resume {
                            service: &l.service.name,
                            addr: &l.key,
                        });
                        self.arm(id, ListenState::Armed);
                    }
                }
                Resume::IdleSweep => self.sweep_idle(now),
                Resume::Stderr(pid) => self.resume_stderr(pid),
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
