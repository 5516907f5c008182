//! The supervisor process itself: its startup hygiene, and short-lived
//! forked copies of it for work whose side effects it should not keep.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::fcntl::FcntlArg;

use nix::errno::Errno;

use super::signal::KernelSigaction;

/// Startup hygiene for the supervisor itself: fds 0-2 open (so no socket
/// ever lands on them), every inherited fd above 2 close-on-exec, and no
/// signal left ignored by whoever started us (children would inherit it).
///
/// `reexec`: this image was started by the supervisor itself (SIGUSR2),
/// whose mask blocks the signals it handles; they stay blocked (not
/// delivered at their default, which would end the process) until
/// `Signals::install` has their handlers in place.
pub fn prepare_process(reexec: bool) {
    for fd in 0..3 {
        if nix::fcntl::fcntl(
            // SAFETY: only used for F_GETFD, which is harmless on any number.
            unsafe { BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_GETFD,
        )
        .is_err()
        {
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                // open() returns the lowest free fd, which is `fd` itself.
                if null.as_raw_fd() == fd {
                    std::mem::forget(null);
                }
            }
        }
    }
    // SAFETY: a raw syscall that only changes fd flags.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        );
    }
    // Through the raw syscall: glibc refuses to touch signals 32 and 33
    // (its own), yet whoever started us may have left them ignored, and
    // an ignored signal survives exec into every handler.
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || sig == libc::SIGPIPE {
            continue;
        }
        let mut old = KernelSigaction::default();
        // SAFETY: rt_sigaction with a NULL new action only writes `old`,
        // a local of the kernel's layout; the mask size is the kernel's.
        let queried = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                std::ptr::null::<KernelSigaction>(),
                &mut old as *mut KernelSigaction,
                8usize,
            )
        } == 0;
        if queried && old.handler == libc::SIG_IGN {
            let dfl = KernelSigaction::default();
            // SAFETY: installs SIG_DFL from a local of the kernel's layout.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    sig,
                    &dfl as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    8usize,
                );
            }
        }
    }
    // The supervisor itself blocks nothing (but see `reexec`).
    if !reexec {
        let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    }
}

/// Take ownership of `fd`, given to this process by whoever started it
/// (`LISTEN_FDS`, a re-exec), if it is open; it is made close-on-exec.
pub fn adopt_fd(fd: RawFd) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD only reads the flags of whatever `fd` is, if open.
    let open = nix::fcntl::fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFD);
    open.ok()?;
    // SAFETY: `fd` is open, above 2, and was handed to this process for it
    // to own (the caller reads it once from the variables naming it, and
    // removes them); nothing else in the process refers to it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(owned.as_raw_fd(), true).ok()?;
    Some(owned)
}

/// Set or clear `FD_CLOEXEC` on an fd of ours.
pub fn set_cloexec(fd: RawFd, on: bool) -> std::io::Result<()> {
    // SAFETY: only used for F_SETFD, which changes the flag on an fd the
    // caller holds (an `AsRawFd` of its own), or fails.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = match on {
        true => nix::fcntl::FdFlag::FD_CLOEXEC,
        false => nix::fcntl::FdFlag::empty(),
    };
    nix::fcntl::fcntl(fd, FcntlArg::F_SETFD(flags))?;
    Ok(())
}

/// Run `work` in a forked copy of this process and return the bytes it
/// produced; `None` when that cannot be done here (the process has other
/// threads, or fork failed), so the caller does the work itself.
///
/// For work whose side effects should not stay in the supervisor: name
/// service lookups go through nsswitch, whose modules (systemd, LDAP,
/// sss, ...) glibc loads into the process that asks and never unloads,
/// with the libraries they pull in. Done in a child, the lookups are the
/// same, and the supervisor keeps none of it. The child blocks every
/// signal (the supervisor's handlers would set its flags) and
/// leaves with `_exit`, running nothing of the parent's.
pub fn in_child<F: FnOnce() -> Vec<u8>>(work: F) -> Option<std::io::Result<Vec<u8>>> {
    use std::io::{Read, Write};
    // fork copies only the calling thread: with others around, a lock
    // one of them holds (malloc, NSS) would never be released in the child.
    if std::fs::read_dir("/proc/self/task").ok()?.count() != 1 {
        return None;
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ok()?;
    // SAFETY: the process is single-threaded (checked above; the
    // supervisor never starts a thread), so the child is a complete copy
    // in which any code may run; it only runs `work`, writes to its end of
    // the pipe and `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        drop(r);
        let all: u64 = !0;
        // SAFETY: rt_sigprocmask reads `all`, a local of the kernel's
        // sigset size, and changes only this (child) process's mask.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &all as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        let code = match out {
            Ok(bytes) if std::fs::File::from(w).write_all(&bytes).is_ok() => 0,
            _ => 1,
        };
        // SAFETY: ends the child without running the parent's exit
        // handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    drop(w);
    if pid == -1 {
        return None;
    }
    let mut out = Vec::new();
    let read = std::fs::File::from(r).read_to_end(&mut out);
    let child = nix::unistd::Pid::from_raw(pid);
    let status = loop {
        match nix::sys::wait::waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other,
        }
    };
    Some(match (read, status) {
        (Err(e), _) => Err(e),
        (Ok(_), Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) => Ok(out),
        (Ok(_), Ok(s)) => Err(std::io::Error::other(format!(
            "lookup process ended: {s:?}"
        ))),
        (Ok(_), Err(e)) => Err(e.into()),
    })
}
