//! The only module with `unsafe`: starting a handler, and the process-wide
//! hygiene done once at startup.
//!
//! # Spawning
//!
//! A handler is started the way `posix_spawn` does it in glibc and musl:
//! `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` on a small stack of its own
//! ([`ChildStack`], mapped once, with a guard page, reused). The child
//! shares the supervisor's memory instead of copying its page tables, so a
//! spawn costs the same whatever the supervisor's size; the supervisor is
//! suspended until the child has called `execve` or exited, which is also
//! what makes sharing the memory safe: while the child runs, nothing else
//! in this address space does. The parent blocks every signal across the
//! clone, so none of its handlers can run on the child's side.
//!
//! The price: the loop waits for each child to reach `execve`, where a
//! forking parent would go on accepting: tens of microseconds when a CPU is
//! free, up to a scheduler slice or so when every CPU is busy (the child
//! waits for one), longer if the program lives on a slow filesystem.
//!
//! The child runs a fixed list of raw system calls on data the parent
//! prepared (see `spawn`), writes only to its own stack, the two slots the
//! parent set aside for it and `errno` (below), and allocates nothing:
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
//! 6. write its pid into `LISTEN_PID` when asked (a slot in the parent's
//!    environment buffer, copied by `execve`);
//! 7. `execve`.
//!
//! Any failure stores `(step, errno)` in a slot on the parent's stack and
//! exits 127: the handler never runs with more rights than configured, and
//! when `spawn` returns the parent already knows whether the child got as
//! far as `execve`. No pipe is needed for that.
//!
//! Only raw system calls are made, never libc's wrappers of `setuid` and
//! friends (glibc broadcasts those to every thread through shared state).
//! `libc::syscall` does set `errno`, which lives in the parent thread's
//! TLS: the child reads it right after its own failed call, and the
//! parent, suspended meanwhile, reads `errno` only after a failed clone.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int, c_long, c_void, gid_t, pid_t};
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
/// are NULL-terminated and point into buffers that outlive the spawn.
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
    /// of `LISTEN_PID=`); at least 21 bytes that nothing else reads or
    /// writes during the spawn.
    pub pid_slot: Option<*mut u8>,
    /// The fd limit oxinetd was started with, restored for the handler.
    pub nofile: Option<libc::rlimit>,
}

/// A started child.
#[derive(Debug)]
pub struct Started {
    pub pid: pid_t,
    /// Set when the child exited before `execve` succeeded (it exits 127).
    pub failure: Option<Failure>,
}

/// The stack the spawn child runs on: mapped once, reused by every spawn
/// (the parent is suspended while the child uses it), with an inaccessible
/// page below it so an overflow faults instead of writing into other
/// memory.
pub struct ChildStack {
    base: *mut c_void,
    /// Length of the mapping, guard page included.
    len: usize,
}

impl ChildStack {
    /// Usable size: the child's frames need a few KiB even unoptimised.
    const SIZE: usize = 64 * 1024;

    pub fn new() -> std::io::Result<ChildStack> {
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let len = Self::SIZE + page;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to
        // the address range it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // Stacks grow down on every Linux target we build for: the guard is
        // the lowest page.
        // SAFETY: `base` starts our own mapping, which is longer than a page.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the end of the mapping, 16-byte aligned
    /// (a page boundary).
    fn top(&mut self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no child runs
        // on it (spawn borrows the stack mutably until the child is gone
        // from it).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// What the parent shares with the child: its image, and the slot the child
/// writes its failure to. Lives on the parent's stack during the clone.
struct Shared<'a> {
    img: &'a ExecImage<'a>,
    /// 0, or `step << 32 | errno`.
    failure: AtomicU64,
}

/// Start `img` in a new process. Returns once the child has called
/// `execve` (or has failed before that and exited).
///
/// All signals are blocked across the clone, so none of the supervisor's
/// handlers can run in the child before it has reset them to default.
pub fn spawn(img: &ExecImage<'_>, stack: &mut ChildStack) -> Result<Started, Errno> {
    debug_assert!(img.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(img.envp.last().is_some_and(|p| p.is_null()));
    let shared = Shared {
        img,
        failure: AtomicU64::new(0),
    };
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask reads `all` and writes `old`, both locals of
    // the kernel's sigset size (8 bytes).
    let blocked = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all as *const u64,
            &mut old as *mut u64,
            8usize,
        )
    } == 0;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: `child_main` runs on `stack`, which nothing else uses (we
    // hold it mutably) and whose top is 16-byte aligned. CLONE_VFORK
    // suspends this thread until the child has exec'd or exited, so
    // `shared` (on this stack frame), `img` and the buffers it points into
    // stay alive and untouched by us while the child reads them; the child
    // writes only to its stack, `shared.failure` and `img.pid_slot`. The
    // process is single-threaded, so no other thread runs in the shared
    // memory either.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            &shared as *const Shared<'_> as *mut c_void,
        )
    };
    let err = Errno::last();
    if blocked {
        // SAFETY: restores the mask saved above, from a local.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &old as *const u64,
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    if pid == -1 {
        return Err(err);
    }
    // The child stored it (if at all) before exiting, and the kernel woke
    // us only after that: Acquire pairs with its Release.
    let failure = match shared.failure.load(Ordering::Acquire) {
        0 => None,
        v => Step::from_u8((v >> 32) as u8).map(|s| (s, Errno::from_raw(v as u32 as i32))),
    };
    Ok(Started { pid, failure })
}

/// Signals with a handler or an ignore in the supervisor: signal-hook's
/// (HUP, TERM, INT), the Rust runtime's (PIPE ignored; SEGV and BUS for
/// stack overflows); CHLD, which the supervisor keeps blocked and reads
/// from a signalfd, for good measure. The child resets them all and
/// unblocks everything: a handler starts with an empty mask.
const HANDLED_SIGNALS: &[c_int] = &[
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
];

/// The child's entry point, on the child stack.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Shared` that `spawn` passed to clone; it stays
    // alive, and the parent suspended, until this process execs or exits.
    let shared = unsafe { &*(arg as *const Shared<'_>) };
    // SAFETY: we are the CLONE_VM|CLONE_VFORK child `spawn` describes.
    let Err((step, errno)) = unsafe { setup_and_exec(shared.img) };
    shared.failure.store(
        (step as u64) << 32 | u64::from(errno as u32),
        Ordering::Release,
    );
    // SAFETY: ends this process (not the parent: no CLONE_THREAD) without
    // running anything of the parent's.
    unsafe { libc::syscall(libc::SYS_exit_group, 127 as c_long) };
    127
}

/// One raw system call of the child, with up to four arguments;
/// `Err((step, errno))` when it fails.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
unsafe fn call<const N: usize>(
    step: Step,
    nr: c_long,
    args: [usize; N],
) -> Result<c_long, (Step, i32)> {
    let mut a = [0usize; 4];
    for (to, from) in a.iter_mut().zip(args) {
        *to = from;
    }
    // SAFETY: the caller vouches for the arguments; the kernel ignores the
    // ones a call does not take.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) };
    if r == -1 {
        Err((step, Errno::last_raw()))
    } else {
        Ok(r)
    }
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

// The child passes `libc::rlimit` to prlimit64, which takes two u64s.
const _: () = assert!(std::mem::size_of::<libc::rlim_t>() == 8);

/// The child side, up to `execve`; returns only on failure.
///
/// # Safety
/// Must only run in the child of `spawn`: a CLONE_VM|CLONE_VFORK child of a
/// single-threaded parent, on its own stack, with all signals blocked.
unsafe fn setup_and_exec(img: &ExecImage<'_>) -> Result<std::convert::Infallible, (Step, i32)> {
    // SAFETY: every call is a raw system call on fds, on locals of this
    // stack, or on data the parent prepared and keeps alive and unchanged
    // while suspended; the only write outside this stack (and errno) is to
    // `pid_slot`, reserved for it.
    unsafe {
        for (target, src) in (0..).zip(img.stdio) {
            install(src, target)?;
        }
        let mut first_free = 3;
        if let Some(l) = img.listen {
            install(l, 3)?;
            first_free = 4;
        }
        // Close the rest now rather than at exec: the child must not keep
        // the supervisor's listeners alive (a closed service would still
        // queue connections).
        let max = libc::c_uint::MAX as usize;
        if call(Step::Fds, libc::SYS_close_range, [first_free, max, 0]).is_err() {
            // Old kernel: every fd the supervisor opens is CLOEXEC anyway.
            let cloexec = libc::CLOSE_RANGE_CLOEXEC as usize;
            let _ = call(Step::Fds, libc::SYS_close_range, [first_free, max, cloexec]);
        }
        call(Step::Setsid, libc::SYS_setsid, [])?;
        // Default dispositions first (the Rust runtime ignores SIGPIPE,
        // which exec would keep; a handler of ours would run in the child,
        // in the parent's memory, until exec), then unblock everything.
        let dfl = KernelSigaction::default();
        for sig in HANDLED_SIGNALS {
            let act = &dfl as *const KernelSigaction as usize;
            call(
                Step::Signals,
                libc::SYS_rt_sigaction,
                [*sig as usize, act, 0, 8],
            )?;
        }
        let empty: u64 = 0;
        let set = &empty as *const u64 as usize;
        let how = libc::SIG_SETMASK as usize;
        call(Step::Signals, libc::SYS_rt_sigprocmask, [how, set, 0, 8])?;
        if let Some(ids) = &img.ids {
            let (n, list) = (ids.groups.len(), ids.groups.as_ptr() as usize);
            call(Step::Setgroups, libc::SYS_setgroups, [n, list])?;
            let (uid, gid) = (ids.uid as usize, ids.gid as usize);
            call(Step::Setgid, libc::SYS_setresgid, [gid, gid, gid])?;
            call(Step::Setuid, libc::SYS_setresuid, [uid, uid, uid])?;
            verify_ids(ids)?;
        }
        if let Some(limit) = &img.nofile {
            let limit = limit as *const libc::rlimit as usize;
            let nofile = libc::RLIMIT_NOFILE as usize;
            call(Step::Limits, libc::SYS_prlimit64, [0, nofile, limit, 0])?;
        }
        call(Step::Chdir, libc::SYS_chdir, [c"/".as_ptr() as usize])?;
        if let Some(slot) = img.pid_slot {
            let pid = call(Step::Exec, libc::SYS_getpid, [])?;
            write_decimal(slot, pid as u64);
        }
        let (path, argv, envp) = (
            img.path.as_ptr() as usize,
            img.argv.as_ptr() as usize,
            img.envp.as_ptr() as usize,
        );
        call(Step::Exec, libc::SYS_execve, [path, argv, envp])?;
        // execve returns only on failure, and `call` turned that into Err.
        Err((Step::Exec, libc::EINVAL))
    }
}

/// Check that the ids took: real, effective and saved uid and gid are the
/// configured ones, and root cannot be had back.
///
/// # Safety
/// Only for the child of `spawn`.
unsafe fn verify_ids(ids: &Ids<'_>) -> Result<(), (Step, i32)> {
    let denied = Err((Step::VerifyIds, libc::EPERM));
    let mut u: [libc::uid_t; 3] = [!0; 3];
    let mut g: [libc::gid_t; 3] = [!0; 3];
    let (pu, pg) = (u.as_mut_ptr(), g.as_mut_ptr());
    let (u0, u1, u2) = (
        pu as usize,
        pu.wrapping_add(1) as usize,
        pu.wrapping_add(2) as usize,
    );
    let (g0, g1, g2) = (
        pg as usize,
        pg.wrapping_add(1) as usize,
        pg.wrapping_add(2) as usize,
    );
    // SAFETY: getres[ug]id write three ids to locals of this stack.
    unsafe {
        call(Step::VerifyIds, libc::SYS_getresuid, [u0, u1, u2])?;
        call(Step::VerifyIds, libc::SYS_getresgid, [g0, g1, g2])?;
    }
    if u != [ids.uid; 3] || g != [ids.gid; 3] {
        return denied;
    }
    // SAFETY: no memory is touched; success would mean we are still root.
    if ids.uid != 0 && unsafe { call(Step::VerifyIds, libc::SYS_setuid, [0]) }.is_ok() {
        return denied;
    }
    Ok(())
}

/// Put `src` on `target`, clearing CLOEXEC on it.
///
/// # Safety
/// Only for the child of `spawn`.
unsafe fn install(src: RawFd, target: RawFd) -> Result<(), (Step, i32)> {
    let (src, target) = (src as usize, target as usize);
    // SAFETY: fcntl and dup3 only manipulate fds; dup3 with no flags leaves
    // the target without CLOEXEC.
    unsafe {
        if src == target {
            call(
                Step::Fds,
                libc::SYS_fcntl,
                [target, libc::F_SETFD as usize, 0],
            )?;
        } else {
            call(Step::Fds, libc::SYS_dup3, [src, target, 0])?;
        }
    }
    Ok(())
}

/// Write `n` in decimal at `out`, followed by a NUL. Needs 21 bytes.
///
/// # Safety
/// `out` must be valid for 21 bytes of writes.
unsafe fn write_decimal(out: *mut u8, n: u64) {
    // At most 20 digits; wrapping arithmetic keeps panics out of the child.
    let mut len = 1usize;
    let mut m = n / 10;
    while m > 0 {
        len = len.wrapping_add(1);
        m /= 10;
    }
    let mut m = n;
    let mut i = len;
    while i > 0 {
        i = i.wrapping_sub(1);
        // SAFETY: i < len <= 20 < 21 bytes guaranteed by the caller.
        unsafe { *out.add(i) = b'0'.wrapping_add((m % 10) as u8) };
        m /= 10;
    }
    // SAFETY: len <= 20.
    unsafe { *out.add(len) = 0 };
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
/// signal (the supervisor's handlers would write to its self-pipe) and
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

/// Give the heap's free memory back to the kernel: loading a config
/// allocates a lot that dies with the load (the parsed document, spans,
/// strings), and glibc keeps freed pages mapped, so without this they
/// would count in the supervisor's RSS until the next load reuses them.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases glibc's free lists; it
    // has no preconditions.
    unsafe { libc::malloc_trim(0) };
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
