//! The only module with `unsafe`: starting a handler, and the process-wide
//! hygiene done once at startup.
//!
//! # Spawning
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

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use libc::{c_char, c_int, c_long, c_void, gid_t, pid_t};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollTimeout};
use nix::sys::signal::SigSet;

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

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as usize,
        _ => 4096,
    }
}

/// The stack a spawn child runs on, with an inaccessible page below it so
/// an overflow faults instead of writing into other memory.
struct ChildStack {
    base: *mut c_void,
    /// Length of the mapping, guard page included.
    len: usize,
}

impl ChildStack {
    /// Usable size: the child's frames need a few KiB even unoptimised.
    const SIZE: usize = 64 * 1024;

    fn new() -> std::io::Result<ChildStack> {
        let page = page_size();
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
    fn top(&self) -> *mut c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; a stack is
        // dropped only with a slot no child is using (see Launcher's Drop).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// What one child reads and writes in the shared memory. The parent fills
/// it while no child uses it; from the clone until `ctid` is 0 the parent
/// only reads `ctid` and `failure`.
struct Job {
    /// 1 from just before the clone; the kernel writes 0 when the child
    /// has left the shared memory (exec or exit).
    ctid: AtomicI32,
    /// 0, or `step << 32 | errno` from a child that failed before exec.
    failure: AtomicU64,
    /// The strings: path, argv, envp, each NUL-terminated.
    bytes: Vec<u8>,
    /// Where each argv and envp string starts in `bytes`.
    starts: Vec<usize>,
    /// argv pointers, NULL, envp pointers, NULL, pointing into `bytes`.
    ptrs: Vec<*const c_char>,
    groups: Vec<gid_t>,
    /// Pointers into the buffers above, and the rest of the image; set
    /// once the buffers are complete (they do not move afterwards).
    ready: Ready,
}

/// The child's view of a [`Job`]: plain values and pointers into its
/// buffers.
#[derive(Clone, Copy)]
struct Ready {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    ids: Option<(u32, u32)>,
    groups: (*const gid_t, usize),
    stdio: [RawFd; 3],
    listen: Option<RawFd>,
    /// Where the child writes its pid in decimal, NUL-terminated: 21 bytes
    /// of `bytes` (the value of `LISTEN_PID=`).
    pid_slot: Option<*mut u8>,
    nofile: Option<libc::rlimit>,
}

impl Job {
    fn new() -> Job {
        Job {
            ctid: AtomicI32::new(0),
            failure: AtomicU64::new(0),
            bytes: Vec::with_capacity(1024),
            starts: Vec::with_capacity(32),
            ptrs: Vec::with_capacity(32),
            groups: Vec::new(),
            ready: Ready {
                path: std::ptr::null(),
                argv: std::ptr::null(),
                envp: std::ptr::null(),
                ids: None,
                groups: (std::ptr::null(), 0),
                stdio: [0, 1, 2],
                listen: None,
                pid_slot: None,
                nofile: None,
            },
        }
    }

    /// Copy `img` in. Only while no child uses this job.
    fn fill(&mut self, img: &ExecImage<'_>) {
        self.bytes.clear();
        self.starts.clear();
        self.ptrs.clear();
        self.groups.clear();
        self.bytes.extend_from_slice(img.path.to_bytes_with_nul());
        let mut argc = 0;
        for (i, list) in [img.argv, img.envp].into_iter().enumerate() {
            for &p in list.iter().take_while(|p| !p.is_null()) {
                // SAFETY: the caller's arrays hold NUL-terminated strings
                // up to their NULL.
                let s = unsafe { CStr::from_ptr(p) };
                self.starts.push(self.bytes.len());
                self.bytes.extend_from_slice(s.to_bytes_with_nul());
            }
            if i == 0 {
                argc = self.starts.len();
            }
        }
        let pid_at = img.listen_pid.then(|| {
            self.starts.push(self.bytes.len());
            self.bytes.extend_from_slice(b"LISTEN_PID=");
            let at = self.bytes.len();
            self.bytes.extend_from_slice(&[0u8; 21]);
            at
        });
        // `bytes` is complete and does not move from here on.
        let base = self.bytes.as_mut_ptr();
        let at = |off: &usize| base.wrapping_add(*off) as *const c_char;
        self.ptrs.extend(self.starts[..argc].iter().map(at));
        self.ptrs.push(std::ptr::null());
        self.ptrs.extend(self.starts[argc..].iter().map(at));
        self.ptrs.push(std::ptr::null());
        if let Some(ids) = &img.ids {
            self.groups.extend_from_slice(ids.groups);
        }
        let ptrs = self.ptrs.as_ptr();
        self.ready = Ready {
            path: base as *const c_char,
            argv: ptrs,
            envp: ptrs.wrapping_add(argc + 1),
            ids: img.ids.as_ref().map(|i| (i.uid, i.gid)),
            groups: (self.groups.as_ptr(), self.groups.len()),
            stdio: img.stdio,
            listen: img.listen,
            pid_slot: pid_at.map(|at| base.wrapping_add(at)),
            nofile: img.nofile,
        };
    }
}

/// A child stack and the job of the child running on it.
struct Slot {
    /// Boxed: the child is given its address.
    job: Box<Job>,
    stack: ChildStack,
    /// The child the slot was last given to; 0 once that child's failure
    /// (if any) has been collected.
    pid: pid_t,
}

impl Slot {
    /// The child has left the slot (exec'd or exited).
    fn left(&self) -> bool {
        self.job.ctid.load(Ordering::Acquire) == 0
    }

    /// Free for the next child: its last child has left it and did not
    /// fail (a failure is kept until it is collected).
    fn reusable(&self) -> bool {
        self.pid == 0 || (self.left() && self.job.failure.load(Ordering::Relaxed) == 0)
    }
}

/// Starts handlers: the slots children run in between clone and exec.
pub struct Launcher {
    slots: Vec<Slot>,
}

/// How many slots there may be: children between clone and exec, plus
/// children that failed and have not been reaped yet.
const MAX_SLOTS: usize = 64;

/// How many children may be between clone and exec at once; beyond that
/// `spawn` waits for one to get there. Without a bound, a supervisor that
/// accepts faster than the scheduler runs the new children piles them up
/// (64 at once were seen at 8 concurrent clients on 2 CPUs), and the
/// connections they serve wait: p99 latency went from 5 to 30 ms. With 2,
/// p99 stays where it was with `vfork` and the supervisor's CPU per
/// connection drops by about a sixth (`bench/README.md`).
const IN_FLIGHT: usize = 2;

/// How long `spawn` waits for a child to exec when `IN_FLIGHT` have not.
const SLOT_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

impl Launcher {
    pub fn new() -> std::io::Result<Launcher> {
        let first = Slot {
            job: Box::new(Job::new()),
            stack: ChildStack::new()?,
            pid: 0,
        };
        Ok(Launcher { slots: vec![first] })
    }

    /// Whether a child is between clone and exec: it still holds copies
    /// of every descriptor the supervisor had open when it was cloned.
    pub fn busy(&self) -> bool {
        self.slots.iter().any(|s| s.pid != 0 && !s.left())
    }

    /// Why child `pid` did not get to exec, if it failed before; for a
    /// reaped child (which has left its slot). Frees the slot.
    pub fn failure(&mut self, pid: pid_t) -> Option<Failure> {
        let slot = self.slots.iter_mut().find(|s| s.pid == pid)?;
        if !slot.left() {
            return None;
        }
        slot.pid = 0;
        match slot.job.failure.swap(0, Ordering::Relaxed) {
            0 => None,
            v => Step::from_u8((v >> 32) as u8).map(|s| (s, Errno::from_raw(v as u32 as i32))),
        }
    }

    /// A slot no child uses, made if needed.
    fn acquire(&mut self) -> Result<usize, Errno> {
        // Past `IN_FLIGHT` children that have not exec'd yet, give one of
        // them a moment first. One still there after that is blocked (a
        // slow file system, say) rather than waiting for a CPU, and holding
        // up every service for it would not help: go on with a new slot.
        let mut in_flight = self.slots.iter().filter(|s| s.pid != 0 && !s.left());
        if let Some(first) = in_flight.next() {
            if 1 + in_flight.count() >= IN_FLIGHT {
                wait_left(first, SLOT_WAIT);
            }
        }
        if let Some(i) = self.slots.iter().position(Slot::reusable) {
            return Ok(i);
        }
        if self.slots.len() >= MAX_SLOTS {
            return Err(Errno::EAGAIN);
        }
        let stack =
            ChildStack::new().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        self.slots.push(Slot {
            job: Box::new(Job::new()),
            stack,
            pid: 0,
        });
        Ok(self.slots.len() - 1)
    }
}

/// Wait until the child on `slot` has left it, or `timeout` has passed.
fn wait_left(slot: &Slot, timeout: std::time::Duration) {
    let ctid = &slot.job.ctid;
    let deadline = std::time::Instant::now() + timeout;
    while ctid.load(Ordering::Acquire) != 0 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return;
        }
        let ts = libc::timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT reads the aligned i32 `ctid` and the local
        // `ts`; the kernel's wake on clearing it is not private, so neither
        // is the wait. It returns at once if `ctid` is no longer 1.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                ctid.as_ptr(),
                libc::FUTEX_WAIT,
                1,
                &ts as *const libc::timespec,
            )
        };
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        for slot in self.slots.drain(..) {
            if !slot.left() {
                // A child still runs on it: leave it mapped.
                std::mem::forget(slot);
            }
        }
    }
}

/// Start `img` in a new process; returns its pid once it is cloned (on
/// targets other than x86_64 and aarch64, once it has exec'd or exited).
/// Whether it got to exec is known when it is reaped: [`Launcher::failure`].
///
/// The caller keeps every signal it handles blocked (`signals` does,
/// outside the loop's wait), so none of its handlers can run in the child
/// before the child has reset them to default; the mask is not touched per
/// spawn.
pub fn spawn(img: &ExecImage<'_>, launcher: &mut Launcher) -> Result<pid_t, Errno> {
    debug_assert!(img.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(img.envp.last().is_some_and(|p| p.is_null()));
    let i = launcher.acquire()?;
    let slot = &mut launcher.slots[i];
    slot.job.fill(img);
    slot.job.failure.store(0, Ordering::Relaxed);
    slot.job.ctid.store(1, Ordering::Relaxed);
    let job: *const Job = &*slot.job;
    // SAFETY: `child_main` runs on the slot's stack, which no other child
    // uses (the slot was free) and whose top is 16-byte aligned. It reads
    // the slot's job, which stays alive and unchanged until the kernel has
    // cleared `ctid` (the slot is not reused before: `reusable`; nor
    // unmapped: Launcher's Drop), and writes only its stack, `failure` and
    // the `pid_slot` bytes. The kernel writes `ctid`, a live AtomicI32 of
    // the job. The process is single-threaded, so no thread other than
    // this one and the child's runs in the shared memory.
    let pid = unsafe { clone_child(slot.stack.top(), job as *mut c_void, slot.job.ctid.as_ptr()) };
    match pid {
        Ok(pid) => {
            slot.pid = pid;
            Ok(pid)
        }
        Err(e) => {
            slot.job.ctid.store(0, Ordering::Relaxed);
            slot.pid = 0;
            Err(e)
        }
    }
}

/// Clone the child that runs `child_main(job)` on `stack`, sharing our
/// memory, and set it going: `CLONE_VM | CLONE_CHILD_CLEARTID | SIGCHLD`
/// with a raw system call, not libc's `clone`, whose musl version refuses
/// `CLONE_CHILD_CLEARTID` (a libc cannot keep its thread data consistent
/// for such a child; this one never runs libc code).
///
/// # Safety
/// As for `spawn`'s call: `stack` is the 16-byte aligned top of a stack
/// only this child uses, `job` its slot's job, `ctid` that job's word.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn clone_child(
    stack: *mut c_void,
    job: *mut c_void,
    ctid: *mut i32,
) -> Result<pid_t, Errno> {
    let flags = (libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD) as usize;
    let entry = child_main as extern "C" fn(*mut c_void) -> c_int as usize;
    let ret: isize;
    // SAFETY: clone's x86_64 convention: flags, new stack, parent tid,
    // child tid, tls in rdi, rsi, rdx, r10, r8; the result in rax, rcx and
    // r11 clobbered. The parent (rax != 0) only jumps past the child's
    // part. The child (rax == 0) is on `stack`, aligned for the call: it
    // runs `child_main(job)` (kept in r12/r13, which the kernel preserves)
    // and exits with its result; it never comes back to compiled code.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone as isize => ret,
            in("rdi") flags,
            in("rsi") stack,
            in("rdx") 0usize,
            in("r10") ctid,
            in("r8") 0usize,
            in("r12") entry,
            in("r13") job,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    // SAFETY: as above with aarch64's convention (CLONE_BACKWARDS): flags,
    // new stack, parent tid, tls, child tid in x0-x4, number in x8, result
    // in x0. The child keeps `child_main` and `job` in x21/x20 across the
    // call; `blr` clobbers x30 only on the child's side, which never
    // returns to compiled code.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!(
            "svc 0",
            "cbnz x0, 2f",
            "mov x0, x20",
            "blr x21",
            "mov x8, #{exit}",
            "svc 0",
            "brk #0",
            "2:",
            exit = const libc::SYS_exit,
            in("x8") libc::SYS_clone,
            inlateout("x0") flags as isize => ret,
            in("x1") stack,
            in("x2") 0usize,
            in("x3") 0usize,
            in("x4") ctid,
            in("x20") job,
            in("x21") entry,
            options(nostack)
        );
    }
    if (-4095..0).contains(&ret) {
        Err(Errno::from_raw(-ret as i32))
    } else {
        Ok(ret as pid_t)
    }
}

/// Elsewhere: libc's `clone` with `CLONE_VFORK`, which returns once the
/// child has exec'd or exited, so the slot is free again then; without
/// `CLONE_CHILD_CLEARTID`, which musl refuses, `ctid` is cleared here.
///
/// # Safety
/// As for the version above.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn clone_child(
    stack: *mut c_void,
    job: *mut c_void,
    ctid: *mut i32,
) -> Result<pid_t, Errno> {
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    // SAFETY: the caller vouches for `stack` and `job`; the parent is
    // suspended until the child is done with them.
    let pid = unsafe { libc::clone(child_main, stack, flags, job) };
    if pid == -1 {
        return Err(Errno::last());
    }
    // SAFETY: `ctid` is the job's live word; the child is past exec.
    unsafe { (*(ctid as *const AtomicI32)).store(0, Ordering::Release) };
    Ok(pid)
}

/// Signals with a handler or an ignore in the supervisor: signal-hook's
/// (HUP, TERM, INT, USR1), the ones `signals::IGNORED` ignores, the Rust
/// runtime's (PIPE ignored; SEGV and BUS for stack overflows); CHLD, which
/// the supervisor keeps blocked and reads from a signalfd, for good
/// measure. The child resets them all and unblocks everything: a handler
/// starts with an empty mask and no signal ignored (`prepare_process`
/// reset every other one at startup).
const HANDLED_SIGNALS: &[c_int] = &[
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    // signals::IGNORED (a unit test checks they are all here)
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGQUIT,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGIO,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGPWR,
    libc::SIGXFSZ,
    libc::SIGXCPU,
    libc::SIGSTKFLT,
];

/// Ignore `signals` in the supervisor (`signals::IGNORED`); handlers get
/// them back at their default (`HANDLED_SIGNALS`).
pub fn ignore_signals(signals: &[nix::sys::signal::Signal]) -> Result<(), Errno> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler};
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in signals {
        // SAFETY: SIG_IGN runs no code of ours, so nothing about it can be
        // unsafe in a signal context; the old action is not used.
        unsafe { nix::sys::signal::sigaction(*sig, &ignore) }?;
    }
    Ok(())
}

/// The child's entry point, on the slot's stack.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the job `spawn` passed to clone; it stays alive and
    // unchanged by the parent until this process execs or exits.
    let job = unsafe { &*(arg as *const Job) };
    // SAFETY: we are the child `spawn` describes.
    let Err((step, errno)) = unsafe { setup_and_exec(&job.ready) };
    job.failure.store(
        (step as u64) << 32 | u64::from(errno as u32),
        Ordering::Release,
    );
    // SAFETY: ends this process (not the parent: no CLONE_THREAD) without
    // running anything of the parent's.
    unsafe { raw_syscall(libc::SYS_exit_group, [127, 0, 0, 0]) };
    127
}

/// A system call that leaves `errno` alone: returns the kernel's result,
/// `-errno` on failure.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall(nr: c_long, a: [usize; 4]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention: number in rax, arguments
    // in rdi, rsi, rdx, r10, result in rax; the instruction clobbers rcx
    // and r11 and touches no user memory of its own. The caller vouches
    // for the arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret
}

/// See the x86_64 version.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall(nr: c_long, a: [usize; 4]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention: number in x8, arguments
    // in x0-x3, result in x0. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            options(nostack)
        );
    }
    ret
}

/// Elsewhere the clone takes CLONE_VFORK (see `clone_child`), so the
/// parent is suspended and the child may use libc's errno.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn raw_syscall(nr: c_long, a: [usize; 4]) -> isize {
    // SAFETY: the caller vouches for the arguments.
    match unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) } {
        -1 => -(Errno::last_raw() as isize),
        r => r as isize,
    }
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
    let r = unsafe { raw_syscall(nr, a) };
    if (-4095..0).contains(&r) {
        Err((step, -r as i32))
    } else {
        Ok(r as c_long)
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
/// Must only run in the child of `spawn`, on its slot's stack, with all
/// signals blocked, `img` being its slot's job.
unsafe fn setup_and_exec(img: &Ready) -> Result<std::convert::Infallible, (Step, i32)> {
    // SAFETY: every call is a raw system call on fds, on locals of this
    // stack, or on the slot's data, which the parent keeps alive and
    // unchanged until this child has exec'd or exited; the only write
    // outside this stack is to `pid_slot`, reserved for it.
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
        if let Some((uid, gid)) = img.ids {
            let (list, n) = img.groups;
            call(Step::Setgroups, libc::SYS_setgroups, [n, list as usize])?;
            let (u, g) = (uid as usize, gid as usize);
            call(Step::Setgid, libc::SYS_setresgid, [g, g, g])?;
            call(Step::Setuid, libc::SYS_setresuid, [u, u, u])?;
            verify_ids(uid, gid)?;
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
        let (path, argv, envp) = (img.path as usize, img.argv as usize, img.envp as usize);
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
unsafe fn verify_ids(uid: u32, gid: u32) -> Result<(), (Step, i32)> {
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
    if u != [uid; 3] || g != [gid; 3] {
        return denied;
    }
    // SAFETY: no memory is touched; success would mean we are still root.
    if uid != 0 && unsafe { call(Step::VerifyIds, libc::SYS_setuid, [0]) }.is_ok() {
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

/// A large scratch buffer in an anonymous mapping of its own: a page
/// costs memory only once something is read into it, and [`Pages::release`]
/// hands pages back, so a buffer sized for bulk transfers does not stay in
/// the supervisor's RSS after them (the allocator would keep it mapped).
pub struct Pages {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

impl Pages {
    pub fn new(len: usize) -> std::io::Result<Pages> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to
        // the address range it returns.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        match std::ptr::NonNull::new(base.cast::<u8>()) {
            Some(base) => Ok(Pages { base, len }),
            None => Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory)),
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable (fresh
        // pages read as zeros), and lives as long as `self`; `&mut self`
        // makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }

    /// Give back the pages from byte `from` (rounded up to a page) to the
    /// end: they read as zeros again and count in RSS only when next used.
    pub fn release(&mut self, from: usize) {
        let start = from.next_multiple_of(page_size());
        if start >= self.len {
            return;
        }
        // SAFETY: the range lies inside our own mapping, which starts on a
        // page boundary; no reference into the buffer outlives the
        // `as_mut_slice` borrow, so nothing observes the zeroed pages.
        unsafe {
            libc::madvise(
                self.base.as_ptr().add(start).cast::<c_void>(),
                self.len - start,
                libc::MADV_DONTNEED,
            )
        };
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.as_ptr().cast::<c_void>(), self.len.max(1)) };
    }
}

/// Give the heap's free memory back to the kernel: loading a config
/// allocates a lot that dies with the load (the parsed document, spans,
/// strings), and glibc keeps freed pages mapped, so without this they
/// would count in the supervisor's RSS until the next load reuses them.
/// musl's allocator unmaps freed memory by itself and has no such call.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases glibc's free lists; it
    // has no preconditions.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0)
    };
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

/// Connections waiting in the accept queue of a listening TCP socket: on
/// a listener, `TCP_INFO`'s `tcpi_unacked` is the queue's length (what
/// `ss -lt` shows as Recv-Q). `None` if the socket does not say (not TCP).
pub fn accept_queue(fd: BorrowedFd<'_>) -> Option<u32> {
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let size = std::mem::size_of::<libc::tcp_info>();
    let mut len = libc::socklen_t::try_from(size).ok()?;
    // SAFETY: `info` is writable for `len` bytes and the kernel writes at
    // most `len`, storing how many it wrote in `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    // tcpi_unacked ends at byte 28 of the kernel's struct.
    if rc != 0 || (len as usize) < 28 {
        return None;
    }
    // SAFETY: zeroed, then partly overwritten by the kernel: every field
    // is an integer, for which any bytes are a value.
    let info = unsafe { info.assume_init() };
    Some(info.tcpi_unacked)
}

/// Make a listening TCP socket drop every new connection request (SYN)
/// while still completing the handshakes under way and keeping its queue:
/// a classic BPF filter (`SO_ATTACH_FILTER`) that drops segments with SYN
/// set. A reload puts it on a socket about to close whose port another of
/// ours listens on now; the clients it drops send their SYN again (after
/// a second) and reach the new socket, rather than being reset by the
/// close.
pub fn refuse_syn(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    // A TCP socket's filter sees the segment from its TCP header: byte 13
    // holds the flags, 0x02 is SYN.
    let mut code = [
        libc::sock_filter {
            code: 0x30,
            jt: 0,
            jf: 0,
            k: 13,
        }, // ldb [13]
        libc::sock_filter {
            code: 0x45,
            jt: 0,
            jf: 1,
            k: 0x02,
        }, // jset #SYN
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: 0,
        }, // ret #0: drop
        libc::sock_filter {
            code: 0x06,
            jt: 0,
            jf: 0,
            k: u32::MAX,
        }, // ret: keep
    ];
    let prog = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `code`, both live for the call; the kernel
    // copies the program and checks it before attaching it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(prog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Minutes since local midnight, for `access_times`.
pub fn local_minute_of_day() -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    // SAFETY: `tm` is a local the call fills in; localtime_r is reentrant
    // and the supervisor has no other thread.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&(now as _), &mut tm).is_null() {
            return ((now / 60) % 1440) as u16;
        }
        tm
    };
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

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
    fn accept_queue_is_the_listeners_backlog_and_refuse_syn_keeps_it() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert_eq!(accept_queue(l.as_fd()), Some(0));
        let _a = std::net::TcpStream::connect(addr).unwrap();
        let _b = std::net::TcpStream::connect(addr).unwrap();
        assert_eq!(accept_queue(l.as_fd()), Some(2));
        drop(l.accept().unwrap());
        assert_eq!(accept_queue(l.as_fd()), Some(1));
        // New requests are dropped; what is queued stays acceptable.
        refuse_syn(l.as_fd()).unwrap();
        let late =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        late.set_nonblocking(true).unwrap();
        let _ = late.connect(&addr.into());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(accept_queue(l.as_fd()), Some(1));
        assert!(late.peer_addr().is_err(), "connected through the filter");
        drop(l.accept().unwrap());
        // Not TCP: no answer.
        let (u, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(accept_queue(u.as_fd()), None);
    }

    #[test]
    fn handlers_get_every_ignored_signal_back_at_default() {
        for sig in crate::signals::IGNORED {
            assert!(HANDLED_SIGNALS.contains(&(sig as c_int)), "{sig}");
        }
    }

    #[test]
    fn released_pages_read_as_zeros_and_the_rest_is_kept() {
        let page = page_size();
        let mut p = Pages::new(8 * page).unwrap();
        p.as_mut_slice().fill(7);
        // Rounded up to the end of the second page: the first two stay.
        p.release(page + 1);
        let b = p.as_mut_slice();
        assert!(b[..2 * page].iter().all(|&x| x == 7));
        assert!(b[2 * page..].iter().all(|&x| x == 0));
        p.release(8 * page);
        assert_eq!(p.as_mut_slice()[0], 7);
    }

    /// The strings behind a NULL-terminated pointer array.
    fn strings(mut p: *const *const c_char) -> Vec<String> {
        let mut out = Vec::new();
        // SAFETY: `p` is one of a filled job's arrays, NULL-terminated and
        // pointing at NUL-terminated strings in its buffer.
        unsafe {
            while !(*p).is_null() {
                out.push(CStr::from_ptr(*p).to_string_lossy().into_owned());
                p = p.add(1);
            }
        }
        out
    }

    #[test]
    fn job_copies_the_image() {
        let (a, b, x) = (c"prog", c"--flag", c"X=1");
        let argv = [a.as_ptr(), b.as_ptr(), std::ptr::null()];
        let envp = [x.as_ptr(), std::ptr::null()];
        let groups = [7, 8];
        let mut job = Job::new();
        for listen_pid in [true, false] {
            job.fill(&ExecImage {
                path: c"/bin/prog",
                argv: &argv,
                envp: &envp,
                ids: Some(Ids {
                    uid: 1,
                    gid: 2,
                    groups: &groups,
                }),
                stdio: [5, 5, 6],
                listen: listen_pid.then_some(5),
                listen_pid,
                nofile: None,
            });
            let r = job.ready;
            // SAFETY: `path` points at the NUL-terminated copy in `bytes`.
            let path = unsafe { CStr::from_ptr(r.path) };
            assert_eq!(path, c"/bin/prog");
            assert_eq!(strings(r.argv), ["prog", "--flag"]);
            let mut env = vec!["X=1".to_string()];
            if listen_pid {
                // SAFETY: the slot is 21 bytes of the job's buffer.
                unsafe { write_decimal(r.pid_slot.expect("slot"), 4242) };
                env.push("LISTEN_PID=4242".into());
            } else {
                assert!(r.pid_slot.is_none());
            }
            assert_eq!(strings(r.envp), env);
            // SAFETY: `groups` points at the job's copy, of that length.
            let g = unsafe { std::slice::from_raw_parts(r.groups.0, r.groups.1) };
            assert_eq!(g, [7, 8]);
            assert_eq!(r.ids, Some((1, 2)));
        }
    }

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
