//! The loop's wait.

use std::os::fd::AsRawFd;

use libc::c_int;
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollTimeout};
use nix::sys::signal::SigSet;

// nix's EpollEvent wraps libc's epoll_event (repr(transparent)); checked
// here because `epoll_pwait` hands the kernel a slice of them.
const _: () = assert!(
    std::mem::size_of::<EpollEvent>() == std::mem::size_of::<libc::epoll_event>()
        && std::mem::align_of::<EpollEvent>() == std::mem::align_of::<libc::epoll_event>()
);

/// Wait on `epoll` with `mask` as the signal mask for the wait only: the
/// loop's one wait, where `signals` lets its handled signals in (nix
/// wraps `epoll_wait` but not `epoll_pwait`).
pub fn epoll_pwait(
    epoll: &Epoll,
    events: &mut [EpollEvent],
    timeout: EpollTimeout,
    mask: &SigSet,
) -> Result<usize, Errno> {
    let max = c_int::try_from(events.len()).unwrap_or(c_int::MAX);
    // SAFETY: `events` is writable for `max` entries of the kernel's
    // layout (asserted above), the kernel writes at most `max`; `mask` is
    // a live sigset_t it only reads.
    let n = unsafe {
        libc::epoll_pwait(
            epoll.0.as_raw_fd(),
            events.as_mut_ptr().cast::<libc::epoll_event>(),
            max,
            i32::from(timeout),
            mask.as_ref(),
        )
    };
    Errno::result(n).map(|n| n as usize)
}
