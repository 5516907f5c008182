//! The only module with `unsafe`: the child between fork and exec, and the
//! process-wide hygiene done once at startup.
//!
//! The child runs a fixed list of async-signal-safe calls on data the parent
//! prepared (see `spawn`), and allocates nothing:
//!
//! 1. move the error-report fd above 3 if needed;
//! 2. install the sources on fds 0, 1, 2 (and 3 for a LISTEN fd);
//! 3. park the report fd right above them and close every other fd
//!    (`close_range`), so no listener outlives the supervisor's copy;
//! 4. `setsid`;
//! 5. the signals the supervisor handles or ignores back to default, then
//!    an empty mask (the parent blocks all signals across the fork);
//! 6. `setgroups`, `setgid`, `setuid`, then verify the ids took;
//! 7. the fd limit oxinetd started with, then `chdir("/")`;
//! 8. write its pid into `LISTEN_PID` when asked;
//! 9. `execve`.
//!
//! Any failure writes `(step, errno)` to the report pipe and `_exit(127)`:
//! the handler never runs with more rights than configured, and the parent
//! logs why when it reaps the child.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

use libc::{c_char, gid_t, pid_t};

/// The step of the child setup that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Fds = 1,
    Setsid = 2,
    Signals = 3,
    Setgroups = 4,
    Setgid = 5,
    Setuid = 6,
    VerifyIds = 7,
    Chdir = 8,
    Exec = 9,
    Limits = 10,
}

impl Step {
    pub fn verb(self) -> &'static str {
        match self {
            Step::Fds => "install fds",
            Step::Setsid => "setsid",
            Step::Signals => "reset signals",
            Step::Setgroups => "setgroups",
            Step::Setgid => "setgid",
            Step::Setuid => "setuid",
            Step::VerifyIds => "verify dropped privileges",
            Step::Chdir => "chdir /",
            Step::Exec => "exec",
            Step::Limits => "restore the fd limit",
        }
    }

    fn from_u8(b: u8) -> Option<Step> {
        [
            Step::Fds,
            Step::Setsid,
            Step::Signals,
            Step::Setgroups,
            Step::Setgid,
            Step::Setuid,
            Step::VerifyIds,
            Step::Chdir,
            Step::Exec,
            Step::Limits,
        ]
        .into_iter()
        .find(|s| *s as u8 == b)
    }
}

/// Ids to switch to in the child.
pub struct Ids<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [gid_t],
}

/// Everything the child needs, prepared by the parent. The pointer arrays
/// are NULL-terminated and point into buffers that outlive the fork.
pub struct ExecImage<'a> {
    pub path: &'a CStr,
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    pub ids: Option<Ids<'a>>,
    /// Sources of fds 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Source of fd 3 (socket activation), if any.
    pub listen: Option<RawFd>,
    /// Where the child writes its pid in decimal, NUL-terminated (the value
    /// of `LISTEN_PID=`); at least 21 bytes.
    pub pid_slot: Option<*mut u8>,
    /// Write end of the CLOEXEC report pipe.
    pub report: RawFd,
    /// The fd limit oxinetd was started with, restored for the handler.
    pub nofile: Option<libc::rlimit>,
}

/// Fork and exec `img`. Returns the child's pid.
///
/// All signals are blocked across the fork, so none of the supervisor's
/// handlers can run in the child before it has reset them to default.
pub fn spawn(img: &ExecImage<'_>) -> Result<pid_t, nix::errno::Errno> {
    debug_assert!(img.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(img.envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: `all` and `old` are locals initialised by sigfillset and
    // sigprocmask before use.
    let (old, blocked) = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        let ok = libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old) == 0;
        (old, ok)
    };
    // SAFETY: the supervisor is single-threaded (no runtime, no helper
    // threads), so the child is a full copy and may run any code; it runs
    // only `child`, which makes async-signal-safe libc calls on data
    // prepared before the fork and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; `img` is valid in the child's copy of memory.
        unsafe { child(img) }
    }
    let err = nix::errno::Errno::last();
    if blocked {
        // SAFETY: restores the mask saved above.
        unsafe { libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    match pid {
        -1 => Err(err),
        pid => Ok(pid),
    }
}

/// Signals the supervisor handles; the child resets them before unblocking.
pub const HANDLED_SIGNALS: &[libc::c_int] = &[
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGCHLD,
    libc::SIGPIPE,
];

/// The child side. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child of a single-threaded parent.
unsafe fn child(img: &ExecImage<'_>) -> ! {
    let mut report = img.report;
    if report < 4 {
        // SAFETY: fcntl on an fd we own; no memory is touched.
        let moved = unsafe { libc::fcntl(report, libc::F_DUPFD_CLOEXEC, 4) };
        if moved >= 0 {
            report = moved;
        }
    }
    for (target, src) in img.stdio.iter().enumerate() {
        // SAFETY: installs fds only.
        if unsafe { install(*src, target as RawFd) } < 0 {
            fail(report, Step::Fds);
        }
    }
    let mut first_free = 3;
    if let Some(l) = img.listen {
        // SAFETY: installs fds only.
        if unsafe { install(l, 3) } < 0 {
            fail(report, Step::Fds);
        }
        first_free = 4;
    }
    // Park the report fd just above the handler's fds, then close the rest
    // now rather than at exec: the child must not keep the supervisor's
    // listeners alive (a closed service would still queue connections).
    if report != first_free {
        // SAFETY: dup3 between fds we own; the copy stays close-on-exec.
        let parked = unsafe { libc::dup3(report, first_free, libc::O_CLOEXEC) };
        if parked >= 0 {
            report = parked;
        }
    }
    // SAFETY: raw syscalls that only close fds or change their flags.
    unsafe {
        let closed = libc::syscall(
            libc::SYS_close_range,
            (report + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
        if closed != 0 {
            // Old kernel: every fd the supervisor opens is CLOEXEC anyway.
            libc::syscall(
                libc::SYS_close_range,
                first_free as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
            );
        }
    }
    // SAFETY: no memory is touched.
    if unsafe { libc::setsid() } < 0 {
        fail(report, Step::Setsid);
    }
    // Default dispositions first (the Rust runtime ignores SIGPIPE, which
    // exec would keep; our handlers would run in the child until exec), then
    // unblock everything.
    for sig in HANDLED_SIGNALS {
        // SAFETY: sets a disposition; no memory is touched.
        if unsafe { libc::signal(*sig, libc::SIG_DFL) } == libc::SIG_ERR {
            fail(report, Step::Signals);
        }
    }
    // SAFETY: `set` is a local, initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            fail(report, Step::Signals);
        }
    }
    if let Some(ids) = &img.ids {
        // SAFETY: `groups` is a valid slice for its length.
        if unsafe { libc::setgroups(ids.groups.len(), ids.groups.as_ptr()) } != 0 {
            fail(report, Step::Setgroups);
        }
        // SAFETY: no memory is touched.
        if unsafe { libc::setgid(ids.gid) } != 0 {
            fail(report, Step::Setgid);
        }
        // SAFETY: no memory is touched.
        if unsafe { libc::setuid(ids.uid) } != 0 {
            fail(report, Step::Setuid);
        }
        // SAFETY: these calls only read process credentials.
        let took = unsafe {
            libc::getuid() == ids.uid
                && libc::geteuid() == ids.uid
                && libc::getgid() == ids.gid
                && libc::getegid() == ids.gid
                && (ids.uid == 0 || libc::setuid(0) != 0)
        };
        if !took {
            fail_with(report, Step::VerifyIds, libc::EPERM);
        }
    }
    if let Some(limit) = &img.nofile {
        // SAFETY: reads a valid rlimit; lowering a soft limit always works.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) } != 0 {
            fail(report, Step::Limits);
        }
    }
    // SAFETY: a NUL-terminated literal.
    if unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        fail(report, Step::Chdir);
    }
    if let Some(slot) = img.pid_slot {
        // SAFETY: the parent reserved at least 21 bytes at `slot`; this is
        // the child's own copy of that memory.
        unsafe { write_decimal(slot, libc::getpid() as u64) };
    }
    // SAFETY: path, argv and envp are NUL-terminated and NULL-terminated
    // arrays prepared by the parent.
    unsafe { libc::execve(img.path.as_ptr(), img.argv.as_ptr(), img.envp.as_ptr()) };
    fail(report, Step::Exec)
}

/// Put `src` on `target`, clearing CLOEXEC on it.
///
/// # Safety
/// Only manipulates fds.
unsafe fn install(src: RawFd, target: RawFd) -> libc::c_int {
    if src == target {
        // SAFETY: fcntl on an fd we own.
        unsafe { libc::fcntl(target, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 between fds we own; dup2 clears CLOEXEC on target.
        unsafe { libc::dup2(src, target) }
    }
}

/// Write `n` in decimal at `out`, followed by a NUL. Needs 21 bytes.
///
/// # Safety
/// `out` must be valid for 21 bytes of writes.
unsafe fn write_decimal(out: *mut u8, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i < 20 < 21 bytes guaranteed by the caller.
        unsafe { *out.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len <= 20.
    unsafe { *out.add(len) = 0 };
}

fn fail(report: RawFd, step: Step) -> ! {
    fail_with(report, step, nix::errno::Errno::last_raw())
}

fn fail_with(report: RawFd, step: Step, errno: i32) -> ! {
    let mut msg = [0u8; 5];
    msg[0] = step as u8;
    msg[1..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writes a local buffer to an fd, then exits without running
    // destructors or atexit handlers of the parent's copy.
    unsafe {
        libc::write(report, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Read a child's failure report, if it wrote one. Call after the child has
/// exited (the pipe then holds all it will ever hold).
pub fn read_report(fd: BorrowedFd<'_>) -> Option<(Step, nix::errno::Errno)> {
    let mut msg = [0u8; 5];
    match nix::unistd::read(fd, &mut msg) {
        Ok(5) => {
            let errno = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
            Some((Step::from_u8(msg[0])?, nix::errno::Errno::from_raw(errno)))
        }
        _ => None,
    }
}

/// Raise the soft fd limit to the hard one (internal services hold one fd
/// per connection). Returns the limit as it was, for handlers.
pub fn raise_nofile() -> Option<libc::rlimit> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    Some(libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    })
}

/// Minutes since local midnight, for `access_times`.
pub fn local_minute_of_day() -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: `tm` is a local the call fills in; localtime_r is reentrant
    // and the supervisor has no other thread.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return ((now / 60) % 1440) as u16;
        }
        tm
    };
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

/// `struct sigaction` as the kernel's rt_sigaction takes it (x86_64 and
/// aarch64 layout).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// Startup hygiene for the supervisor itself: fds 0-2 open (so no socket
/// ever lands on them), every inherited fd above 2 close-on-exec, and no
/// signal left ignored by whoever started us (children would inherit it).
pub fn prepare_process() {
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
    // The supervisor itself blocks nothing.
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        let mut buf = [0xffu8; 21];
        // SAFETY: buf is 21 bytes.
        unsafe { write_decimal(buf.as_mut_ptr(), 1234567) };
        assert_eq!(&buf[..8], b"1234567\0");
        // SAFETY: buf is 21 bytes.
        unsafe { write_decimal(buf.as_mut_ptr(), u64::MAX) };
        assert_eq!(&buf[..21], b"18446744073709551615\0");
    }
}
