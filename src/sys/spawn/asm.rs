//! The launcher on x86_64 and aarch64: `clone(CLONE_VM | CLONE_CHILD_CLEARTID |
//! SIGCHLD)` as a raw system call in inline assembly (musl's `clone`
//! refuses `CLONE_CHILD_CLEARTID`). Unlike `vfork` and glibc's
//! `posix_spawn`, the supervisor is not suspended until the child has
//! called `execve`: it goes back to its loop at once, and the child
//! finishes its setup on the other CPU or when the scheduler gets to it.
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
//!   to every thread through shared state).
//!
//! The kernel tells the parent when the child is gone from the slot: with
//! `CLONE_CHILD_CLEARTID` it writes 0 to the slot's `ctid` word (and wakes
//! futex waiters) when the child releases the shared memory, which happens
//! in `execve` once the new program is loaded, or when the child exits.
//! Until then the slot is not reused. When `IN_FLIGHT` children are
//! between clone and exec, `spawn` waits for one of them to leave (a futex
//! wait on its `ctid`, 10 ms at most) before it starts another. A failed
//! child's slot is kept until the supervisor reaps that child and asks
//! [`Launcher::failure`].

use std::ffi::CStr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use libc::{c_char, c_int, c_void, gid_t, pid_t};
use nix::errno::Errno;

use super::child::{raw_syscall, setup_and_exec, Ready, Sandboxed};
use super::stack::ChildStack;
use super::{failure_word, from_failure_word, CloneError, ExecImage, Failure, Limits};

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
    rlimits: Vec<(u32, u64)>,
    /// Pointers into the buffers above, and the rest of the image; set
    /// once the buffers are complete (they do not move afterwards).
    ready: Ready,
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
            rlimits: Vec::new(),
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
                limits: Limits::default(),
                rlimits: (std::ptr::null(), 0),
                sandbox: Sandboxed::in_place(&super::Sandbox::default()),
            },
        }
    }

    /// Copy `img` in. Only while no child uses this job.
    fn fill(&mut self, img: &ExecImage<'_>) {
        self.bytes.clear();
        self.starts.clear();
        self.ptrs.clear();
        self.groups.clear();
        self.rlimits.clear();
        self.rlimits.extend_from_slice(img.rlimits);
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
        // The sandbox's paths: private /tmp targets, then the chroot.
        let sb = img.sandbox;
        let mut sb_at = [None; 3];
        for (at, path) in sb_at.iter_mut().zip([sb.tmp[0], sb.tmp[1], sb.chroot]) {
            *at = path.map(|p| {
                let at = self.bytes.len();
                self.bytes.extend_from_slice(p.to_bytes_with_nul());
                at
            });
        }
        // `bytes` is complete and does not move from here on.
        let base = self.bytes.as_mut_ptr();
        let sb_ptr = |at: Option<usize>| {
            at.map_or(std::ptr::null(), |at| {
                base.wrapping_add(at) as *const c_char
            })
        };
        let sandbox = Sandboxed {
            unshare: sb.unshare as usize,
            tmp: [sb_ptr(sb_at[0]), sb_ptr(sb_at[1])],
            chroot: sb_ptr(sb_at[2]),
        };
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
            limits: *img.limits,
            rlimits: (self.rlimits.as_ptr(), self.rlimits.len()),
            sandbox,
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
///
/// The wait is for the oldest child. Waiting instead for the one just
/// cloned, so that one sleep covers three children (0.33 waits per
/// connection at c=8 instead of 0.55), took the c=8 ratio to `floor-duty`
/// from about 1.09 to 1.02, but doubled p99 at c=64 (about 60 ms against
/// 30; 48–64 ms with that wait bounded at 0.2, 1 or 3 ms), with the
/// supervisor in a session of its own as `bench/run` and service managers
/// start it (run from a shell's session it did not: the scheduler's
/// autogroups, one per session, are part of it). Cloning that third
/// child with `CLONE_VFORK` did as well at c=8, and would wait without a
/// bound for a child stuck before exec (a hung file system), which is
/// what the bound above is for.
const IN_FLIGHT: usize = 2;

/// Slots kept when free: the steady state's `IN_FLIGHT`, and as many
/// again for a child that is slow to leave.
const SPARE_SLOTS: usize = 2 * IN_FLIGHT;

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
        let failure = from_failure_word(slot.job.failure.swap(0, Ordering::Relaxed));
        self.release_spare();
        failure
    }

    /// Unmap the free slots at the end past `SPARE_SLOTS`. A burst of
    /// children failing before exec (each keeps its slot until reaped) or
    /// of slow execs makes slots, and the stack pages their children
    /// touched stayed in the supervisor's RSS for good: bench/soak's minute
    /// of process exhaustion left 190 KiB. Past the spare ones, a slot is
    /// free only after such a burst, so this costs nothing per connection.
    /// Each slot's job buffers (about 1.7 KiB) go back to the heap; once
    /// the burst is over (only the spare slots left), the heap is trimmed:
    /// the maps' trims came earlier, when they shrank, and 300 failing
    /// children left 108 KiB of freed job buffers in the RSS otherwise.
    fn release_spare(&mut self) {
        let had = self.slots.len();
        while self.slots.len() > SPARE_SLOTS
            && self.slots.last().is_some_and(|s| s.pid == 0 && s.left())
        {
            // Dropping unmaps the stack: no child is on it (it has left).
            self.slots.pop();
        }
        if self.slots.len() < had && self.slots.len() <= SPARE_SLOTS {
            crate::sys::trim_heap();
        }
    }

    /// A slot no child uses, made if needed.
    fn acquire(&mut self) -> Result<usize, CloneError> {
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
            return Err(CloneError::Clone(Errno::EAGAIN));
        }
        let stack = ChildStack::new()
            .map_err(|e| CloneError::Stack(Errno::from_raw(e.raw_os_error().unwrap_or(0))))?;
        self.slots.push(Slot {
            job: Box::new(Job::new()),
            stack,
            pid: 0,
        });
        Ok(self.slots.len() - 1)
    }
}

/// Wait until the child on `slot` has left it, or `timeout` has passed.
/// One wait does it, with no clock read: the only wake on `ctid` is the
/// kernel's as it clears it, and every signal we handle is blocked here.
/// A wait that ends early all the same (a stop and continue) is taken as
/// the timeout: the caller then uses another slot.
fn wait_left(slot: &Slot, timeout: std::time::Duration) {
    let ctid = &slot.job.ctid;
    if ctid.load(Ordering::Acquire) == 0 {
        return;
    }
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as _,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
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

/// Start `img` in a new process; returns its pid once it is cloned.
/// Whether it got to exec is known when it is reaped: [`Launcher::failure`].
///
/// The caller keeps every signal it handles blocked (`signals` does,
/// outside the loop's wait), so none of its handlers can run in the child
/// before the child has reset them to default; the mask is not touched per
/// spawn.
pub fn spawn(img: &ExecImage<'_>, launcher: &mut Launcher) -> Result<pid_t, CloneError> {
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
            Err(CloneError::Clone(e))
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

/// The child's entry point, on the slot's stack.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the job `spawn` passed to clone; it stays alive and
    // unchanged by the parent until this process execs or exits.
    let job = unsafe { &*(arg as *const Job) };
    // SAFETY: we are the child `spawn` describes.
    let Err((step, errno)) = unsafe { setup_and_exec(&job.ready) };
    job.failure
        .store(failure_word(step, errno), Ordering::Release);
    // SAFETY: ends this process (not the parent: no CLONE_THREAD) without
    // running anything of the parent's.
    unsafe { raw_syscall(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]) };
    127
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::spawn::child::write_decimal;
    use crate::sys::spawn::Ids;

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
    fn a_slot_whose_child_never_leaves_is_waited_for_only_until_the_timeout() {
        let slot = Slot {
            job: Box::new(Job::new()),
            stack: ChildStack::new().expect("stack"),
            pid: 0,
        };
        // No child: nothing will clear `ctid`, as with one blocked before exec.
        slot.job.ctid.store(1, Ordering::Relaxed);
        let t = std::time::Instant::now();
        wait_left(&slot, std::time::Duration::from_millis(20));
        assert!(t.elapsed() >= std::time::Duration::from_millis(20));
        assert!(!slot.left());
        // Gone already: no wait at all (returning is what is checked).
        slot.job.ctid.store(0, Ordering::Relaxed);
        wait_left(&slot, std::time::Duration::from_secs(3600));
        assert!(slot.left());
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
                limits: &Limits::default(),
                rlimits: &[(7, 64)],
                sandbox: super::super::Sandbox {
                    unshare: libc::CLONE_NEWNS,
                    tmp: [None, Some(c"/srv/root/var/tmp")],
                    chroot: Some(c"/srv/root"),
                },
            });
            let r = job.ready;
            // The sandbox's paths are the job's copies, after the strings.
            let sb = r.sandbox;
            assert_eq!(sb.unshare, libc::CLONE_NEWNS as usize);
            assert!(sb.tmp[0].is_null());
            // SAFETY: both point at NUL-terminated copies in `bytes`.
            let (tmp, root) = unsafe { (CStr::from_ptr(sb.tmp[1]), CStr::from_ptr(sb.chroot)) };
            assert_eq!((tmp, root), (c"/srv/root/var/tmp", c"/srv/root"));
            let bytes = job.bytes.as_ptr_range();
            assert!(bytes.contains(&(sb.chroot as *const u8)));
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
            // SAFETY: `rlimits` points at the job's copy, of that length.
            let rl = unsafe { std::slice::from_raw_parts(r.rlimits.0, r.rlimits.1) };
            assert_eq!(rl, [(7, 64)]);
        }
    }
}
