//! Signals as events, all of them one way: HUP reloads, TERM and INT stop,
//! USR1 logs the state, USR2 re-executes the supervisor keeping its
//! listeners and handlers (`supervisor/handover.rs`), CHLD says a handler
//! has exited. Each has a
//! signal-hook flag (`signal_hook::flag`), whose handler only sets an
//! atomic bool; no work happens in a signal handler.
//!
//! The six stay blocked except while the loop waits: `epoll_pwait` with
//! [`Signals::wait_mask`] lets them in for the wait only, as `pselect` is
//! meant to be used. The kernel runs a handler there only by ending the
//! wait with `EINTR` (a wait that returns events puts the mask back first,
//! and the signal stays pending until the next one), so the loop reads
//! the flags ([`Signals::take`]) exactly when a wait was interrupted, and
//! needs neither a self-pipe nor a signalfd to be woken. SIGCHLD is a
//! standard signal: however many handlers exited, one flag, and the
//! reaper collects them all.
//!
//! A wait that returns events lets nothing in, so under a steady stream
//! of them (a busy listener) a signal would wait for the loop's first
//! idle moment: at c=64 against an exec'd service 189 handlers were
//! zombies at once, the children's table grew to 448 entries and shrank
//! again every few dozen connections, and a SIGTERM waited its turn.
//! After such a wait the loop asks the kernel (`sigpending`, one system
//! call per wait, not per connection) and, if one is pending, lets it in
//! ([`Signals::let_in_pending`]): the same handlers, the same flags.
//!
//! Blocked everywhere else, a handler of ours runs nowhere else: not in
//! the middle of the loop's work, and not in a handler process between
//! its `clone` and `exec`, which starts with the supervisor's mask while
//! it still shares the supervisor's memory (`sys::spawn` relies on this,
//! and needs no mask change per spawn). Handlers start with an empty mask
//! and default dispositions (`sys::spawn`).
//!
//! The other signals an admin or a terminal may send and whose default
//! would kill or stop the supervisor (ALRM, QUIT, VTALRM, PROF, IO,
//! TSTP, TTIN, TTOU; PWR, XCPU, XFSZ, STKFLT, which the system may send)
//! are ignored (`IGNORED`); handlers get them back at their default.
//!
//! Why signal-hook and not a signalfd (a dependency of the product, kept
//! because no figure moves): no self-pipe and no signalfd are needed,
//! because the loop's `epoll_pwait` is the only place the signals are let
//! in and a handled signal always ends it with `EINTR`. Compared with the
//! signalfd that SIGCHLD had, a reaping wake-up costs a signal frame, a
//! handler run and `rt_sigreturn` instead of a `read`. Measured against a
//! build of the tree just before signal-hook took every signal (row
//! `oxinetd-oldsig`, `bench/run --extra`): supervisor CPU per connection
//! at c=8 higher in 9 rounds of 10, by a median 0.85 µs (3 %), less than
//! two identical builds differed by (up to 1.8 µs); at c=64 by 2.1 µs (the
//! identical builds: 1.7). Then in the spawn-path run
//! (`src/sys/spawn/mod.rs`, the `+sfd` rows), a signalfd for all of them
//! against signal-hook flags, same round, at c=8: vfork +0.2 µs median
//! (−4.6 … +2.6), asm −0.3 (−1.7 … +1.3); at c=64 the signalfd builds used
//! 1.7–2.5 µs less (median), inside that figure's A/A spread (3.4). Within
//! the noise by that module's rule, so signal-hook stays; if a full run
//! ever puts the cost outside the noise, the one mechanism should become a
//! signalfd for all of them instead (no handler would ever run;
//! signal-hook would go).

use std::io;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The signals with a handler, each with its flag in [`Pending`].
const HANDLED: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGCHLD,
];

/// Signals ignored: by default each would end (or stop) the supervisor,
/// and none means anything to it. PIPE is ignored by the Rust runtime.
pub const IGNORED: [Signal; 12] = [
    Signal::SIGALRM,
    Signal::SIGQUIT,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    Signal::SIGIO,
    Signal::SIGTSTP,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGPWR,
    // XFSZ: a `--log stderr` file at RLIMIT_FSIZE fails the write instead.
    Signal::SIGXFSZ,
    Signal::SIGXCPU,
    Signal::SIGSTKFLT,
];

/// Block HANDLED in this (the only) thread; returns the mask to wait
/// with: the one before, less HANDLED.
fn block() -> io::Result<SigSet> {
    let mut blocked = SigSet::empty();
    for sig in HANDLED {
        blocked.add(sig);
    }
    let mut open = blocked.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    for sig in HANDLED {
        open.remove(sig);
    }
    Ok(open)
}

/// What arrived since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub child: bool,
    pub reload: bool,
    pub terminate: bool,
    /// USR1: log the state.
    pub dump: bool,
    /// USR2: re-execute, keeping listeners and handlers.
    pub upgrade: bool,
}

pub struct Signals {
    child: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    dump: Arc<AtomicBool>,
    upgrade: Arc<AtomicBool>,
    /// The mask to wait with: the process's, less HANDLED.
    open: SigSet,
}

impl Signals {
    /// Flags all down, waiting with `open`; no handler installed yet.
    fn with_mask(open: SigSet) -> Signals {
        Signals {
            child: Arc::default(),
            reload: Arc::default(),
            terminate: Arc::default(),
            dump: Arc::default(),
            upgrade: Arc::default(),
            open,
        }
    }

    pub fn install() -> io::Result<Signals> {
        crate::sys::ignore_signals(&IGNORED)?;
        // Blocked before the handlers exist, so none runs outside the wait.
        let s = Signals::with_mask(block()?);
        for sig in HANDLED {
            let flag = match sig {
                Signal::SIGCHLD => &s.child,
                Signal::SIGHUP => &s.reload,
                Signal::SIGUSR1 => &s.dump,
                Signal::SIGUSR2 => &s.upgrade,
                _ => &s.terminate,
            };
            signal_hook::flag::register(sig as c_int, Arc::clone(flag))?;
        }
        Ok(s)
    }

    /// The signal mask for the loop's wait, the only place the handled
    /// signals are let in; a wait they interrupt ends with `EINTR`.
    pub fn wait_mask(&self) -> &SigSet {
        &self.open
    }

    /// After a wait that returned events (and so let no signal in): if a
    /// handled signal is pending, unblock them for a moment, which runs
    /// its handler (the kernel delivers on the way back from the call),
    /// and block them again. True if one was: then [`Signals::take`].
    pub fn let_in_pending(&self) -> bool {
        if !crate::sys::any_pending(&HANDLED) {
            return false;
        }
        match self.open.thread_swap_mask(SigmaskHow::SIG_SETMASK) {
            // Never left open: a handler runs nowhere but here and the wait.
            Ok(blocked) => blocked.thread_set_mask().is_ok(),
            Err(_) => false,
        }
    }

    /// Take the flags: after a wait ended with `EINTR`, or
    /// [`Signals::let_in_pending`].
    pub fn take(&mut self) -> Pending {
        Pending {
            child: self.child.swap(false, Ordering::SeqCst),
            reload: self.reload.swap(false, Ordering::SeqCst),
            terminate: self.terminate.swap(false, Ordering::SeqCst),
            dump: self.dump.swap(false, Ordering::SeqCst),
            upgrade: self.upgrade.swap(false, Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use nix::errno::Errno;
    use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollTimeout};
    use nix::sys::signal::{raise, SigSet, Signal};

    #[test]
    fn handled_signals_are_blocked_except_in_the_wait() {
        // Masks are per thread: this changes only the test's own.
        let open = super::block().expect("mask");
        let now = SigSet::thread_get_mask().expect("mask");
        for sig in super::HANDLED {
            assert!(now.contains(sig), "{sig} not blocked");
            assert!(!open.contains(sig), "{sig} blocked in the wait");
        }
        // One of them, sent to this thread: pending, its handler not run,
        // until the wait lets it in; then it runs and ends the wait.
        let flag = Arc::new(AtomicBool::new(false));
        let id = signal_hook::flag::register(libc::SIGUSR1, Arc::clone(&flag)).expect("handler");
        // raise: to the calling thread.
        raise(Signal::SIGUSR1).expect("raise");
        assert!(!flag.load(Ordering::SeqCst), "handled outside the wait");
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let mut events = [EpollEvent::empty(); 1];
        let timeout = EpollTimeout::try_from(10_000).expect("timeout");
        let ended = crate::sys::epoll_pwait(&epoll, &mut events, timeout, &open);
        signal_hook::low_level::unregister(id);
        assert_eq!(ended, Err(Errno::EINTR));
        assert!(flag.load(Ordering::SeqCst), "not handled in the wait");
    }

    /// A wait that returns events lets no signal in (the kernel puts the
    /// mask back first): `let_in_pending` does, and leaves them blocked.
    #[test]
    fn a_signal_left_pending_by_a_busy_wait_is_let_in_after_it() {
        let mut s = super::Signals::with_mask(super::block().expect("mask"));
        assert!(!s.let_in_pending(), "nothing pending yet");
        let id =
            signal_hook::flag::register(libc::SIGUSR2, Arc::clone(&s.upgrade)).expect("handler");
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
        let (r, w) = nix::unistd::pipe().expect("pipe");
        nix::unistd::write(&w, b"x").expect("write");
        let ready = EpollEvent::new(nix::sys::epoll::EpollFlags::EPOLLIN, 7);
        epoll.add(&r, ready).expect("add");
        raise(Signal::SIGUSR2).expect("raise");
        let mut events = [EpollEvent::empty(); 1];
        let timeout = EpollTimeout::try_from(10_000).expect("timeout");
        let got = crate::sys::epoll_pwait(&epoll, &mut events, timeout, &s.open);
        assert_eq!(got, Ok(1));
        let before = s.upgrade.load(Ordering::SeqCst);
        let let_in = s.let_in_pending();
        let after = s.take();
        let still = SigSet::thread_get_mask().expect("mask");
        signal_hook::low_level::unregister(id);
        assert!(!before, "let in by a wait that returned events");
        assert!(let_in && after.upgrade, "not let in after it");
        assert!(still.contains(Signal::SIGUSR2), "left unblocked");
        assert!(!s.let_in_pending(), "still pending");
    }
}
