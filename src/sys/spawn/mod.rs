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
//! 4. while still root ([`Sandbox`]): `unshare` a network and/or mount
//!    namespace of its own; for a private /tmp, every mount made private
//!    to it; `chroot`; then a fresh tmpfs on /tmp and /var/tmp as the
//!    handler sees them (inside its root);
//!    then ([`Limits`]): each resource limit (`prlimit64`),
//!    the nice value (`setpriority`), the umask, the capabilities dropped
//!    from the bounding set (`PR_CAPBSET_DROP`), `PR_SET_KEEPCAPS` when a
//!    non-root handler keeps some;
//! 5. `setgroups`, `setresgid`, `setresuid`, then verify the ids took and
//!    that root cannot be regained (before any kept capability is
//!    effective again);
//! 6. the kept capabilities (`capset`, raised in the ambient set, checked)
//!    or an emptied ambient set; a root handler's inheritable set cut to
//!    what it keeps;
//! 7. the fd limit oxinetd started with (unless `rlimits` sets one), then
//!    `chdir("/")` (inside the chroot, if any);
//! 8. write its pid into `LISTEN_PID` when asked;
//! 9. `PR_SET_NO_NEW_PRIVS` when asked, then `execve`.
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
//! Two launchers, chosen at build time, share the types, this step list
//! (the hygiene contract: fds 0/1/2 (and 3) only, empty mask, default
//! dispositions, no allocation, no write to memory the parent uses,
//! `(step, errno)` reported on failure) and the stack type:
//!
//! | | `vfork.rs`: other architectures, `--features spawn-vfork` | `asm.rs`: the default on x86_64 and aarch64 |
//! |---|---|---|
//! | clone | `clone(CLONE_VM \| CLONE_VFORK \| SIGCHLD)` through libc, an `extern "C"` child function | `clone(CLONE_VM \| CLONE_CHILD_CLEARTID \| SIGCHLD)` in inline assembly (musl's `clone` refuses that flag) |
//! | the supervisor | suspended until the child has exec'd or exited | goes on at once; the child runs on the other CPU or when scheduled |
//! | the child's data | read in place | copied into a slot per child in flight; at most 2 in flight (a third waits up to 10 ms on a futex on the slot's `ctid`), 64 slots; free ones past 4 unmapped at reap (a burst of children failing before exec made them, and their stacks stayed in RSS) |
//! | stacks | one, reused | one per slot (64 KiB and a guard page) |
//! | the child's system calls | libc's `syscall` (its `errno` writes land in the suspended parent's TLS, read only if the clone failed) | inline `syscall`/`svc` (`errno` untouched: the parent runs) |
//! | a failure | a word read when `clone` returns, kept by pid until reaped | the slot's word, read at reap; the slot kept until then |
//! | a hung file system at exec | every service waits for that `execve` | ≤ 10 ms per connection, then new slots; past 64, `unable to clone: EAGAIN` |
//! | `Launcher::busy` (a child holds copies of the supervisor's fds) | never | while a child is between clone and exec |
//!
//! **Decision: the assembly stays, as the default on x86_64 and
//! aarch64;** `vfork.rs` is the path on other architectures and with
//! `--features spawn-vfork` (CI runs its spawn and hygiene tests). The
//! rule was: the simple path by default, the assembly only if it buys a
//! figure outside the noise on a target (supervisor CPU per connection at
//! c=8 ≤ 1.1× `floor-duty`; exec'd TCP ≥ 0.95× `floor-fork` at c=1/8/64
//! with 0 errors; p99 at c=64 ≤ `floor-fork`'s). The noise is measured in
//! the same run: the same binary twice (`oxinetd-again`); a figure is
//! outside it when one build does better in every round and the median
//! of the same-round differences exceeds the largest same-round
//! difference of the two identical binaries.
//!
//! One `bench/run --only exec --rounds 5` (rows interleaved in every
//! round; `vfork` = `--features spawn-vfork`, `again` = a copy of the
//! vfork binary, `pre` = the tree before issue 17, `+sfd` = the same
//! build with every signal read from one signalfd instead of signal-hook
//! flags), supervisor CPU per connection, medians, and ÷ `floor-duty`
//! (same round):
//!
//! | c | asm | vfork | again | pre | vfork+sfd | asm+sfd | `floor-duty` |
//! |---|---|---|---|---|---|---|---|
//! | 8 | 27.9 µs, 1.09× | 31.1, 1.24× | 31.2, 1.20× | 28.3, 1.11× | 30.0, 1.25× | 27.6, 1.14× | 25.0 |
//! | 64 | 30.0, 1.19× | 31.9, 1.30× | 31.3, 1.21× | 28.9, 1.14× | 29.4, 1.19× | 28.3, 1.12× | 25.3 |
//!
//! - vfork − asm at c=8: +2.0, +3.5, +2.3, +4.5, +1.9 µs (median 2.3; asm
//!   better in every round), against at most 2.0 between the identical
//!   binaries: outside the noise, and only the assembly meets the 1.1×
//!   target. At c=64: median +2.1 against an A/A spread of 3.4 (inside).
//!   Connections/s and p99 do not differ outside the noise (0 errors).
//! - Why: with `CLONE_VFORK` the supervisor sleeps in `clone` until the
//!   child's `execve` and is woken for it, a switch per connection; the
//!   assembly launcher goes on at once.
//!
//! Two full runs the same day (`bench/run`, 5 rounds), supervisor CPU at
//! c=8 ÷ `floor-duty`: asm 1.12× and 1.15×, vfork 1.19× and 1.15×; asm
//! lower in 5 of 5 and 3 of 5 rounds (at c=64: 1.13× against 1.22×,
//! 1.18× against 1.24×). So the assembly's edge is about 2 µs (7 %), at
//! the edge of this machine's noise in some runs and outside it in
//! others. Neither met 1.1× until the per-connection lines and
//! environment stopped going through `core::fmt` and a `memcpy` call per
//! piece (`log/events.rs`, `render::append`; musl's `memcpy` is not
//! inlined and was a quarter of the supervisor's user time): an A/B in
//! one run took c=8 from 1.11× to 1.04×, and a full run gave asm 1.03×
//! (28.5 µs, rounds 1.01–1.10×), glibc 1.04×, vfork 1.19×; the next asm
//! 1.10× (1.103, a miss by a hair), glibc 1.08×, vfork 1.16×: the same
//! code, a busier machine (bench/README.md). The latest full run
//! (`bench/results/latest.md`, on dbb121f, CPU read from the process's
//! CPU-time clock): asm 44.5 µs, 1.09×; glibc 45.7; vfork 52.5;
//! `floor-duty` 41.0.
//! Rerun a variant as an extra row: `bench/run --extra
//! oxinetd-NAME=PATH`, also named in `--servers`.
//!
//! The assembly path is the code to touch least: what may change there is
//! in `asm.rs`'s module comment, and `child.rs` (the child's steps) is
//! shared by both, so a change to the child's work is made once and
//! tested on both. The signal mechanism measured in the same run:
//! `crate::signals`.

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
    // Issue 19, limits and privileges (numbered from 20, apart).
    Rlimit = 20,
    Nice = 21,
    Umask = 22,
    DropCaps = 23,
    KeepCaps = 24,
    SetCaps = 25,
    ClearAmbient = 26,
    NoNewPrivs = 27,
    // Issue 19, the handler's own filesystem and network (from 30).
    Unshare = 30,
    PrivateMounts = 31,
    MountTmp = 32,
    Chroot = 33,
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
            Step::Rlimit => "set resource limit",
            Step::Nice => "set nice",
            Step::Umask => "set umask",
            Step::DropCaps => "drop capabilities",
            Step::KeepCaps => "keep capabilities",
            Step::SetCaps => "set capabilities",
            Step::ClearAmbient => "clear ambient capabilities",
            Step::NoNewPrivs => "set no_new_privs",
            Step::Unshare => "unshare namespaces",
            Step::PrivateMounts => "make mounts private",
            Step::MountTmp => "mount a private /tmp",
            Step::Chroot => "chroot",
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
            Step::Rlimit,
            Step::Nice,
            Step::Umask,
            Step::DropCaps,
            Step::KeepCaps,
            Step::SetCaps,
            Step::ClearAmbient,
            Step::NoNewPrivs,
            Step::Unshare,
            Step::PrivateMounts,
            Step::MountTmp,
            Step::Chroot,
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
    /// Priority, umask and privileges.
    pub limits: &'a Limits,
    /// `(RLIMIT_*, value)`: soft and hard limit, set with `prlimit64`
    /// (`u64::MAX` is infinity); apart from `limits` so that a service
    /// without any keeps no room for them.
    pub rlimits: &'a [(u32, u64)],
    /// Namespaces, a private /tmp, a chroot.
    pub sandbox: Sandbox<'a>,
}

/// A handler's own filesystem and network (`private_network`,
/// `private_tmp`, `chroot`), as the child sets them up while still root,
/// in this order: `unshare` the namespaces; make every mount private to
/// the new mount namespace; `chroot`; mount a fresh tmpfs on each `tmp`
/// directory, a path as the handler sees it (inside the chroot, so a link
/// there never leads to the host's tree).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sandbox<'a> {
    /// `CLONE_NEWNS` and/or `CLONE_NEWNET`; 0 for none.
    pub unshare: libc::c_int,
    pub tmp: [Option<&'a CStr>; 2],
    pub chroot: Option<&'a CStr>,
}

/// A handler's resource limits, nice value, umask and privileges
/// (`rlimits`, `nice`, `umask`, `capabilities`, `no_new_privs`), as the
/// child applies them: plain values, worked out once per service
/// (`spawn::Plan`) and copied with the rest of the child's data, each
/// applied with one system call (a loop over a mask for capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    /// Capabilities dropped from the bounding set, before the ids are
    /// switched (bit N: capability N).
    pub drop_bounding: u64,
    /// Capabilities a handler keeps across the switch to its (non-root)
    /// user and through exec: `PR_SET_KEEPCAPS` before the switch, then
    /// permitted = effective = inheritable = these, each raised in the
    /// ambient set. 0: the ambient set is emptied instead.
    pub keep: u64,
    /// A root handler's inheritable set is cut down to these (with
    /// `capabilities` set: exec gives root its inheritable set besides
    /// the bounding set).
    pub inheritable: Option<u64>,
    /// `PR_SET_NO_NEW_PRIVS`, the last step before `execve`.
    pub no_new_privs: bool,
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
        run_confined(argv, listen_pid, Limits::default(), &[], Sandbox::default())
    }

    /// `run` with `limits` and `sandbox`.
    fn run_confined(
        argv: &[&CStr],
        listen_pid: bool,
        limits: Limits,
        rlimits: &[(u32, u64)],
        sandbox: Sandbox<'_>,
    ) -> (String, i32, pid_t, Option<Failure>) {
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
            limits: &limits,
            rlimits,
            sandbox,
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

    /// Root only (namespaces and chroot need it): a child in namespaces of
    /// its own, with a tmpfs on a directory that stays empty for the
    /// parent; a chroot that fails is reported with its step, not run.
    #[test]
    fn the_child_unshares_mounts_a_private_tmp_and_reports_a_failed_chroot() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let tmp = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes()).expect("path");
        let script = c"readlink /proc/self/ns/net; touch \"$0/seen\" && echo wrote";
        let sandbox = Sandbox {
            unshare: libc::CLONE_NEWNS | libc::CLONE_NEWNET,
            tmp: [Some(&tmp), None],
            chroot: None,
        };
        let argv = [c"/bin/sh", c"-c", script, tmp.as_c_str()];
        let (out, code, _, failure) = run_confined(&argv, false, Limits::default(), &[], sandbox);
        assert_eq!((code, failure), (0, None), "{out}");
        let ours = std::fs::read_link("/proc/self/ns/net").expect("our netns");
        let mut lines = out.lines();
        assert_ne!(lines.next(), Some(ours.to_string_lossy().as_ref()), "{out}");
        assert_eq!(lines.next(), Some("wrote"));
        // Written to the child's tmpfs, gone with its namespace.
        assert!(!dir.path().join("seen").exists());

        let missing = Sandbox {
            chroot: Some(c"/nonexistent/root"),
            ..Sandbox::default()
        };
        let (out, code, _, failure) = run_confined(
            &[c"/bin/echo", c"ran"],
            false,
            Limits::default(),
            &[],
            missing,
        );
        assert_eq!(out, "");
        assert_eq!((code, failure), (127, Some((Step::Chroot, Errno::ENOENT))));
    }

    #[test]
    fn the_child_gets_its_environment_and_execs() {
        let script = c"echo \"$X $LISTEN_PID $$\"; ls /proc/self/fd | wc -l";
        let (out, code, pid, failure) = run(&[c"/bin/sh", c"-c", script], true);
        // Its own pid in LISTEN_PID; fds 0-3 and the one ls reads.
        assert_eq!(out, format!("1 {pid} {pid}\n5\n"));
        assert_eq!((code, failure), (0, None));
    }

    /// One line of `text` starting with `prefix`, without it.
    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in {text}"))
            .trim()
    }

    #[test]
    fn limits_nice_umask_and_privileges_are_applied_before_exec() {
        let root = nix::unistd::geteuid().is_root();
        let rlimits = [
            (crate::confine::Resource::Nofile.id(), 64),
            (crate::confine::Resource::Core.id(), 0),
        ];
        let mut limits = Limits {
            nice: Some(7),
            umask: Some(0o027),
            no_new_privs: true,
            ..Default::default()
        };
        if root {
            // Everything but CAP_NET_BIND_SERVICE out of the bounding set.
            let all = crate::confine::caps().all();
            limits.drop_bounding = all & !(1 << 10);
        }
        let script = c"grep -E 'Max open files|Max core' /proc/self/limits; umask; \
                       grep -E '^(NoNewPrivs|CapBnd|CapAmb)' /proc/self/status; \
                       cut -d' ' -f19 /proc/self/stat";
        let (out, code, _, failure) = run_confined(
            &[c"/bin/sh", c"-c", script],
            false,
            limits,
            &rlimits,
            Sandbox::default(),
        );
        assert_eq!((code, failure), (0, None), "{out}");
        fn words(l: &str) -> Vec<&str> {
            l.split_whitespace().collect()
        }
        assert_eq!(words(line(&out, "Max open files")), ["64", "64", "files"]);
        assert_eq!(words(line(&out, "Max core file size")), ["0", "0", "bytes"]);
        assert!(out.contains("\n0027\n"), "{out}");
        assert_eq!(line(&out, "NoNewPrivs:"), "1");
        assert_eq!(line(&out, "CapAmb:"), "0000000000000000");
        if root {
            assert_eq!(line(&out, "CapBnd:"), "0000000000000400");
        }
        assert_eq!(out.lines().last(), Some("7"), "{out}");
    }

    #[test]
    fn a_limit_the_kernel_refuses_stops_the_child() {
        // More files than fs.nr_open: refused even to root.
        let nr_open: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .expect("nr_open")
            .trim()
            .parse()
            .expect("a number");
        let rlimits = [(crate::confine::Resource::Nofile.id(), nr_open + 1)];
        let (out, code, _, failure) = run_confined(
            &[c"/bin/true"],
            false,
            Limits::default(),
            &rlimits,
            Sandbox::default(),
        );
        assert_eq!(out, "");
        assert_eq!((code, failure), (127, Some((Step::Rlimit, Errno::EPERM))));
    }

    #[test]
    fn a_failed_exec_is_reported_with_its_step_and_errno() {
        let (out, code, _, failure) = run(&[c"/nonexistent/handler"], false);
        assert_eq!(out, "");
        assert_eq!((code, failure), (127, Some((Step::Exec, Errno::ENOENT))));
    }
}
