//! Signals as events. HUP, TERM and INT go through signal-hook: its
//! handlers only set a flag and write a byte to a self-pipe, and the event
//! loop sees the pipe readable and reads the flags. SIGCHLD, the one signal
//! that comes with every connection, is blocked instead and read from a
//! signalfd: no handler runs, no byte is written and no frame is unwound
//! per exiting handler (handlers start with an empty mask; see `sys`).
//! No work happens in a signal handler.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// What arrived since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub child: bool,
    pub reload: bool,
    pub terminate: bool,
}

pub struct Signals {
    wake: UnixStream,
    children: SignalFd,
    reload: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        chld.thread_block()?;
        let children = SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let s = Signals {
            wake,
            children,
            reload: Arc::new(AtomicBool::new(false)),
            terminate: Arc::new(AtomicBool::new(false)),
        };
        for (sig, flag) in [
            (SIGHUP, &s.reload),
            (SIGTERM, &s.terminate),
            (SIGINT, &s.terminate),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(s)
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
        }
    }
}
