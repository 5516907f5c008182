//! Signals as events: the handlers (signal-hook's) only set a flag and write
//! a byte to a self-pipe; the event loop sees the pipe readable and reads the
//! flags. No work happens in a signal handler.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

/// What arrived since the last look.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub child: bool,
    pub reload: bool,
    pub terminate: bool,
}

pub struct Signals {
    wake: UnixStream,
    child: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let (wake, write) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        let s = Signals {
            wake,
            child: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            terminate: Arc::new(AtomicBool::new(false)),
        };
        for (sig, flag) in [
            (SIGCHLD, &s.child),
            (SIGHUP, &s.reload),
            (SIGTERM, &s.terminate),
            (SIGINT, &s.terminate),
        ] {
            signal_hook::flag::register(sig, Arc::clone(flag))?;
            signal_hook::low_level::pipe::register(sig, write.try_clone()?)?;
        }
        Ok(s)
    }

    /// The fd that becomes readable when a signal arrives.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Empty the pipe and take the flags.
    pub fn take(&mut self) -> Pending {
        let mut buf = [0u8; 64];
        while matches!(self.wake.read(&mut buf), Ok(n) if n > 0) {}
        Pending {
            child: self.child.swap(false, Ordering::SeqCst),
            reload: self.reload.swap(false, Ordering::SeqCst),
            terminate: self.terminate.swap(false, Ordering::SeqCst),
        }
    }
}
