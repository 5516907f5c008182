//! Starting a handler.
//!
//! A handler is started with `clone(CLONE_VM | CLONE_CHILD_CLEARTID |
//! SIGCHLD)`, a raw system call (musl's `clone` refuses
//! `CLONE_CHILD_CLEARTID`): the child shares the supervisor's memory
//! instead of copying its page tables, so a spawn costs the same whatever
//! the supervisor's size, and, unlike `vfork` and glibc's `posix_spawn`,
//! the supervisor is not suspended until the child has called `execve`. It
//! goes back to its loop at once; the child finishes its setup on the
//! other CPU or when the scheduler gets to it. Waiting for each child's
//! `execve` cost the supervisor a sleep and a wake-up per connection.
//!
//! Sharing memory with a running parent is safe because of how little the
//! child touches, all of it in a [`Slot`] reserved for it:
//!
//! - it runs on the slot's own stack (mapped once, with a guard page);
//! - it reads only the slot's copy of what it needs (path, argv, envp,
//!   groups, fds), which `spawn` writes before the clone and leaves alone
//!   until the child is gone from the slot;
//! - it writes only its stack, the slot's failure word and the slot's
//!   `LISTEN_PID` digits;
//! - it makes raw system calls with inline `syscall`/`svc` instructions,
//!   never through libc, because libc's wrappers set `errno`, which lives
//!   in the parent thread's TLS, shared with the child and now in use by
//!   the running parent (glibc's `setuid` and friends would also broadcast
//!   to every thread through shared state);
//! - it allocates nothing and starts with the supervisor's mask, in which
//!   every signal with a handler of ours is blocked (they are let in only
//!   during the loop's [`epoll_pwait`]: `signals`), so no such handler can
//!   run on the child's side before it has reset them to default. (The
//!   Rust runtime's SIGSEGV/SIGBUS handler would only run on a fault in
//!   the child's own few system calls, and would then kill it.)
//!
//! The kernel tells the parent when the child is gone from the slot: with
//! `CLONE_CHILD_CLEARTID` it writes 0 to the slot's `ctid` word (and wakes
//! futex waiters) when the child releases the shared memory, which happens
//! in `execve` once the new program is loaded, or when the child exits.
//! Until then the slot is not reused. When `IN_FLIGHT` children are
//! between clone and exec, `spawn` waits for one of them to leave (a futex
//! wait on its `ctid`, 10 ms at most) before it starts another.
//!
//! The child's steps, each a raw system call:
//!
//! 1. install the sources on fds 0, 1, 2 (and 3 for a LISTEN fd), then
//!    close every other fd (`close_range`), so no listener outlives the
//!    supervisor's copy;
//! 2. `setsid`;
//! 3. the signals the supervisor (or the Rust runtime) handles or ignores
//!    back to default, then an empty mask;
//! 4. `setgroups`, `setresgid`, `setresuid`, then verify the ids took and
//!    that root cannot be regained;
//! 5. the fd limit oxinetd started with, then `chdir("/")`;
//! 6. write its pid into `LISTEN_PID` when asked;
//! 7. `execve`.
//!
//! Any failure stores `(step, errno)` in the slot and exits 127: the
//! handler never runs with more rights than configured. The slot is kept
//! until the supervisor reaps that child and asks [`Launcher::failure`].
//!
//! On targets without the inline system calls here the clone also takes
//! `CLONE_VFORK` (the parent is suspended until the child has exec'd, as
//! with `posix_spawn`), and the child may use libc's `syscall`.

mod child;
mod launcher;
mod stack;

pub use launcher::{spawn, Launcher};

use std::ffi::CStr;
use std::os::fd::RawFd;

use libc::{c_char, gid_t};
use nix::errno::Errno;

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

/// Why a child did not get to run its handler: the step and its errno.
pub type Failure = (Step, Errno);

/// Ids to switch to in the child.
pub struct Ids<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [gid_t],
}

/// Everything the child needs, prepared by the parent. The pointer arrays
/// are NULL-terminated; `spawn` copies what they point to into the slot
/// the child reads, so they need only live for the call.
pub struct ExecImage<'a> {
    pub path: &'a CStr,
    pub argv: &'a [*const c_char],
    pub envp: &'a [*const c_char],
    pub ids: Option<Ids<'a>>,
    /// Sources of fds 0, 1 and 2.
    pub stdio: [RawFd; 3],
    /// Source of fd 3 (socket activation), if any.
    pub listen: Option<RawFd>,
    /// Add `LISTEN_PID=<the child's pid>` to the environment.
    pub listen_pid: bool,
    /// The fd limit oxinetd was started with, restored for the handler.
    pub nofile: Option<libc::rlimit>,
}
