//! Starting a handler: a child that shares the supervisor's memory
//! (`CLONE_VM`, so no page table is copied and a spawn costs the same
//! whatever the supervisor's size) and runs a fixed list of raw system
//! calls until `execve`.
//!
//! The child's steps (`child.rs`), each a raw system call:
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
//! Any failure stores `(step, errno)` where the parent reads it and exits
//! 127: the handler never runs with more rights than configured. The
//! supervisor logs it when it reaps that child ([`Launcher::failure`]).
//!
//! The child allocates nothing, reads only memory the parent leaves
//! alone until the child has exec'd or exited, writes only its own stack,
//! its failure word and its `LISTEN_PID` digits, and starts with the
//! supervisor's mask, in which every signal with a handler of ours is
//! blocked (they are let in only during the loop's wait: `signals`), so
//! no such handler can run on the child's side before it has reset them
//! to default. (The Rust runtime's SIGSEGV/SIGBUS handler would only run
//! on a fault in the child's own few system calls, and would then kill
//! it.)
//!
//! Two launchers, chosen at build time (ARCHITECTURE.md, "The spawn
//! path"):
//!
//! - on x86_64 and aarch64 (`asm.rs`, the default there),
//!   `clone(CLONE_VM | CLONE_CHILD_CLEARTID | SIGCHLD)` in inline
//!   assembly: the supervisor goes on at once, each child in a slot of
//!   its own until the kernel clears the slot's `ctid`, and the child's
//!   system calls are inline instructions that leave `errno` alone;
//! - elsewhere, or with the `spawn-vfork` feature (`vfork.rs`),
//!   `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` through libc: the
//!   supervisor is suspended until the child has exec'd or exited, so one
//!   stack serves every child, and the child may use libc's `syscall`
//!   (the `errno` it writes is the suspended parent's, which reads it only
//!   if the clone itself failed). It costs the supervisor about 3 µs more
//!   per connection (ARCHITECTURE.md, "The spawn path").

#[cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "spawn-vfork")
))]
mod asm;
mod child;
mod stack;
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "spawn-vfork")
)))]
mod vfork;

#[cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "spawn-vfork")
))]
pub use asm::{spawn, Launcher};
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "spawn-vfork")
)))]
pub use vfork::{spawn, Launcher};

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

/// A failure as the one word the child stores: `step << 32 | errno`; 0 for
/// none.
fn failure_word(step: Step, errno: i32) -> u64 {
    (step as u64) << 32 | u64::from(errno as u32)
}

/// The failure a child stored, if any.
fn from_failure_word(v: u64) -> Option<Failure> {
    match v {
        0 => None,
        v => Step::from_u8((v >> 32) as u8).map(|s| (s, Errno::from_raw(v as u32 as i32))),
    }
}

/// Ids to switch to in the child.
pub struct Ids<'a> {
    pub uid: u32,
    pub gid: u32,
    pub groups: &'a [gid_t],
}

/// Everything the child needs, prepared by the parent. The pointer arrays
/// are NULL-terminated and need only live for the call to `spawn`.
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

/// Why [`spawn`] started no child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloneError {
    /// No stack for the child could be mapped (`asm.rs`: a new slot's).
    #[error("unable to map a child stack: {0}")]
    Stack(Errno),
    /// `clone` failed; or (`asm.rs`) every slot holds a child that has
    /// not exec'd yet, `EAGAIN`.
    #[error("unable to clone: {0}")]
    Clone(Errno),
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::ptr::null;

    use libc::pid_t;
    use nix::sys::wait::{waitpid, WaitStatus};

    use super::*;

    /// Start `argv` (X=1 in its environment, stdout and stderr into a
    /// pipe); what it wrote, its exit code, and its failure if any.
    fn run(argv: &[&CStr], listen_pid: bool) -> (String, i32, pid_t, Option<Failure>) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        let null_dev = std::fs::File::open("/dev/null").expect("/dev/null");
        let mut ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(null());
        let envp = [c"X=1".as_ptr(), null()];
        let mut launcher = Launcher::new().expect("launcher");
        let img = ExecImage {
            path: argv[0],
            argv: &ptrs,
            envp: &envp,
            ids: None,
            stdio: [null_dev.as_raw_fd(), w.as_raw_fd(), w.as_raw_fd()],
            listen: listen_pid.then_some(null_dev.as_raw_fd()),
            listen_pid,
            nofile: None,
        };
        let pid = spawn(&img, &mut launcher).expect("spawn");
        drop(w);
        let mut out = String::new();
        std::fs::File::from(r)
            .read_to_string(&mut out)
            .expect("read");
        let code = match waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => code,
            other => panic!("{other:?}"),
        };
        (out, code, pid, launcher.failure(pid))
    }

    #[test]
    fn the_child_gets_its_environment_and_execs() {
        let script = c"echo \"$X $LISTEN_PID $$\"; ls /proc/self/fd | wc -l";
        let (out, code, pid, failure) = run(&[c"/bin/sh", c"-c", script], true);
        // Its own pid in LISTEN_PID; fds 0-3 and the one ls reads.
        assert_eq!(out, format!("1 {pid} {pid}\n5\n"));
        assert_eq!((code, failure), (0, None));
    }

    #[test]
    fn a_failed_exec_is_reported_with_its_step_and_errno() {
        let (out, code, _, failure) = run(&[c"/nonexistent/handler"], false);
        assert_eq!(out, "");
        assert_eq!((code, failure), (127, Some((Step::Exec, Errno::ENOENT))));
    }
}
