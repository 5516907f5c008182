//! Signals as events. HUP, TERM, INT and USR1 go through signal-hook: its
//! handlers only set a flag and write a byte to a self-pipe, and the event
//! loop sees the pipe readable and reads the flags. SIGCHLD, the one signal
//! that comes with every connection, is read from a signalfd instead: no
//! handler runs, no byte is written and no frame is unwound per exiting
//! handler. No work happens in a signal handler.
//!
//! The other signals an admin or a terminal may send and whose default
//! would kill or stop the supervisor (USR2, ALRM, QUIT, VTALRM, PROF, IO,
//! TSTP, TTIN, TTOU; PWR, XCPU, XFSZ, STKFLT, which the system may send) are
//! ignored (`IGNORED`); handlers get them back at
//! their default (`sys`).
//!
//! All five stay blocked except while the loop waits (`epoll_pwait` with
//! [`Signals::wait_mask`], SIGCHLD still blocked there), as `pselect` is
//! meant to be used. So a handler of ours runs nowhere else: not in the
//! middle of the loop's work, and not in a handler process between its
//! `clone` and `exec`, when it still shares the supervisor's memory
//! (`sys::spawn` relies on this, and needs no mask change per spawn).
//! Handlers start with an empty mask and default dispositions (`sys`).

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::raw::c_int;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

/// The signals with a handler: HUP reloads, TERM and INT stop, USR1 logs
/// the state.
const FLAGGED: [Signal; 4] = [
    Signal::SIGHUP,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGUSR1,
];

/// Signals ignored: by default each would end (or stop) the supervisor,
/// and none means anything to it. PIPE is ignored by the Rust runtime.
pub const IGNORED: [Signal; 13] = [
    Signal::SIGUSR2,
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

/// Block FLAGGED and SIGCHLD in this (the only) thread; returns the mask
/// to wait with: the one before, with SIGCHLD blocked and FLAGGED let in.
fn block() -> io::Result<SigSet> {
    let mut blocked = SigSet::empty();
    blocked.add(Signal::SIGCHLD);
    for sig in FLAGGED {
        blocked.add(sig);
    }
    let mut open = blocked.thread_swap_mask(SigmaskHow::SIG_BLOCK)?;
    open.add(Signal::SIGCHLD);
    for sig in FLAGGED {
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
}

pub struct Signals {
    wake: UnixStream,
    children: SignalFd,
    reload: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    dump: Arc<AtomicBool>,
    /// The mask to wait with: the process's, less HUP, TERM, INT, USR1.
    open: SigSet,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let reload = Arc::new(AtomicBool::new(false));
        let terminate = Arc::new(AtomicBool::new(false));
        let dump = Arc::new(AtomicBool::new(false));
        crate::sys::ignore_signals(&IGNORED)?;
        // Blocked before the handlers exist, so none runs outside the wait.
        let open = block()?;
        for sig in FLAGGED {
            let flag = match sig {
                Signal::SIGHUP => &reload,
                Signal::SIGUSR1 => &dump,
                _ => &terminate,
            };
            signal_hook::flag::register(sig as c_int, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig as c_int, write.try_clone()?)?;
        }
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let children = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let s = Signals {
            wake,
            children,
            reload,
            terminate,
            dump,
            open,
        };
        Ok(s)
    }

    /// The signal mask for the loop's wait, the only place HUP, TERM, INT
    /// and USR1 are let in.
    pub fn wait_mask(&self) -> &SigSet {
        &self.open
    }

    /// The fds that become readable when a signal arrives: the self-pipe
    /// and the SIGCHLD signalfd.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        [self.wake.as_fd(), self.children.as_fd()]
    }

    /// Empty the pipe and the signalfd, and take the flags.
    pub fn take(&mut self) -> Pending {
        let mut buf = [0u8; 64];
        // A short read emptied the pipe; a byte written after it wakes
        // the loop again.
        while matches!(self.wake.read(&mut buf), Ok(n) if n == buf.len()) {}
        // SIGCHLD is a standard signal: one read clears it, however many
        // handlers exited (the reaper collects them all).
        let child = matches!(self.children.read_signal(), Ok(Some(_)));
        Pending {
            child,
            reload: self.reload.swap(false, Ordering::SeqCst),
            terminate: self.terminate.swap(false, Ordering::SeqCst),
            dump: self.dump.swap(false, Ordering::SeqCst),
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::sys::signal::{SigSet, Signal};

    #[test]
    fn handled_signals_are_blocked_except_in_the_wait() {
        // Masks are per thread: this changes only the test's own (and no
        // handler is installed in the test process).
        let open = super::block().expect("mask");
        let now = SigSet::thread_get_mask().expect("mask");
        for sig in [
            Signal::SIGHUP,
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGUSR1,
            Signal::SIGCHLD,
        ] {
            assert!(now.contains(sig), "{sig} not blocked");
            assert_eq!(open.contains(sig), sig == Signal::SIGCHLD, "{sig}");
        }
    }
}
