//! The child's side of a spawn, from clone to `execve`: a fixed list of
//! raw system calls.

use std::os::fd::RawFd;

use libc::{c_char, c_int, c_long, gid_t};

use super::{Limits, Sandbox, Step};
use crate::sys::signal::KernelSigaction;

/// What the child reads: plain values, and pointers to memory the parent
/// leaves alone until the child has exec'd or exited.
#[derive(Clone, Copy)]
pub(super) struct Ready {
    pub path: *const c_char,
    pub argv: *const *const c_char,
    pub envp: *const *const c_char,
    pub ids: Option<(u32, u32)>,
    pub groups: (*const gid_t, usize),
    pub stdio: [RawFd; 3],
    pub listen: Option<RawFd>,
    /// Where the child writes its pid in decimal, NUL-terminated: the 21
    /// bytes after a `LISTEN_PID=` that `envp` points to.
    pub pid_slot: Option<*mut u8>,
    pub nofile: Option<libc::rlimit>,
    pub limits: Limits,
    /// `(RLIMIT_*, value)` pairs and their count.
    pub rlimits: (*const (u32, u64), usize),
    pub sandbox: Sandboxed,
}

/// [`Sandbox`] as the child reads it: null for a path not given.
#[derive(Clone, Copy)]
pub(super) struct Sandboxed {
    pub unshare: usize,
    pub tmp: [*const c_char; 2],
    pub chroot: *const c_char,
}

impl Sandboxed {
    /// Pointers to the caller's strings (the `vfork` launcher, whose
    /// caller waits until the child has exec'd; none for an empty one).
    pub fn in_place(s: &Sandbox<'_>) -> Sandboxed {
        let ptr = |p: Option<&std::ffi::CStr>| p.map_or(std::ptr::null(), |p| p.as_ptr());
        Sandboxed {
            unshare: s.unshare as usize,
            tmp: [ptr(s.tmp[0]), ptr(s.tmp[1])],
            chroot: ptr(s.chroot),
        }
    }
}

/// Signals with a handler or an ignore in the supervisor: signal-hook's
/// (HUP, TERM, INT, USR1, CHLD), the ones `signals::IGNORED` ignores, the
/// Rust runtime's (PIPE ignored; SEGV and BUS for stack overflows). The
/// child resets them all and unblocks everything: a handler
/// starts with an empty mask and no signal ignored (`prepare_process`
/// reset every other one at startup).
const HANDLED_SIGNALS: &[c_int] = &[
    libc::SIGHUP,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGCHLD,
    libc::SIGPIPE,
    libc::SIGSEGV,
    libc::SIGBUS,
    // signals::IGNORED (a unit test checks they are all here)
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

/// A system call that leaves `errno` alone: returns the kernel's result,
/// `-errno` on failure.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(all(target_arch = "x86_64", not(feature = "spawn-vfork")))]
pub(super) unsafe fn raw_syscall(nr: c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the x86_64 system call convention: number in rax, arguments
    // in rdi, rsi, rdx, r10, r8, r9, result in rax; the instruction
    // clobbers rcx and r11 and touches no user memory of its own. The
    // caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
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
#[cfg(all(target_arch = "aarch64", not(feature = "spawn-vfork")))]
pub(super) unsafe fn raw_syscall(nr: c_long, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the aarch64 system call convention: number in x8, arguments
    // in x0-x5, result in x0. The caller vouches for the arguments.
    unsafe {
        std::arch::asm!(
            "svc 0",
            in("x8") nr,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1],
            in("x2") a[2],
            in("x3") a[3],
            in("x4") a[4],
            in("x5") a[5],
            options(nostack)
        );
    }
    ret
}

/// A system call through libc's `syscall`, for the default launcher's
/// child (`vfork.rs`): returns the kernel's result, `-errno` on failure.
///
/// # Safety
/// The arguments must be valid for system call `nr`; only for a child of
/// `clone(CLONE_VM | CLONE_VFORK)`.
#[cfg(not(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    not(feature = "spawn-vfork")
)))]
pub(super) unsafe fn raw_syscall(nr: c_long, a: [usize; 6]) -> isize {
    // SAFETY: the caller vouches for the arguments. `syscall` writes
    // `errno` on failure, in the TLS of the thread the child was cloned
    // from: the supervisor's one thread, suspended in `clone` until this
    // child has exec'd or exited (CLONE_VFORK), and which reads `errno`
    // only if the clone failed. `syscall` is a plain wrapper: no lock, no
    // allocation, nothing shared with other threads (of which there are
    // none), unlike glibc's `setuid` family.
    match unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) } {
        -1 => -(nix::errno::Errno::last_raw() as isize),
        r => r as isize,
    }
}

/// One raw system call of the child, with up to six arguments (the
/// others are 0: `prctl` refuses garbage in the ones it does not use);
/// `Err((step, errno))` when it fails.
///
/// # Safety
/// The arguments must be valid for system call `nr`.
unsafe fn call<const N: usize>(
    step: Step,
    nr: c_long,
    args: [usize; N],
) -> Result<c_long, (Step, i32)> {
    let mut a = [0usize; 6];
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

// The child passes `libc::rlimit` to prlimit64, which takes two u64s.
const _: () = assert!(std::mem::size_of::<libc::rlim_t>() == 8);

/// The child side, up to `execve`; returns only on failure.
///
/// # Safety
/// Must only run in the child of `spawn`, on its own stack, with every
/// signal of ours blocked, `img` pointing to memory the parent leaves
/// alone until this child has exec'd or exited.
pub(super) unsafe fn setup_and_exec(img: &Ready) -> Result<std::convert::Infallible, (Step, i32)> {
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
        sandbox(&img.sandbox)?;
        limit(&img.limits, img.rlimits)?;
        if let Some((uid, gid)) = img.ids {
            let (list, n) = img.groups;
            call(Step::Setgroups, libc::SYS_setgroups, [n, list as usize])?;
            let (u, g) = (uid as usize, gid as usize);
            call(Step::Setgid, libc::SYS_setresgid, [g, g, g])?;
            call(Step::Setuid, libc::SYS_setresuid, [u, u, u])?;
            verify_ids(uid, gid)?;
        }
        capabilities(&img.limits)?;
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
        if img.limits.no_new_privs {
            let nnp = libc::PR_SET_NO_NEW_PRIVS as usize;
            call(Step::NoNewPrivs, libc::SYS_prctl, [nnp, 1, 0, 0, 0])?;
        }
        let (path, argv, envp) = (img.path as usize, img.argv as usize, img.envp as usize);
        call(Step::Exec, libc::SYS_execve, [path, argv, envp])?;
        // execve returns only on failure, and `call` turned that into Err.
        Err((Step::Exec, libc::EINVAL))
    }
}

/// While still root, first: the handler's own namespaces, its root
/// directory, then a fresh tmpfs on its /tmp and /var/tmp (`chdir("/")`
/// comes later).
///
/// # Safety
/// Only for the child of `spawn`; the non-null pointers of `s` are
/// NUL-terminated strings the parent leaves alone until exec.
unsafe fn sandbox(s: &Sandboxed) -> Result<(), (Step, i32)> {
    // SAFETY: unshare takes flags; mount and chroot read the
    // NUL-terminated strings of `s` and of static literals.
    unsafe {
        if s.unshare != 0 {
            call(Step::Unshare, libc::SYS_unshare, [s.unshare])?;
        }
        let tmp = s.tmp.iter().filter(|t| !t.is_null());
        if tmp.clone().next().is_some() {
            // Nothing mounted here may reach the host's namespace.
            let private = (libc::MS_REC | libc::MS_PRIVATE) as usize;
            let root = c"/".as_ptr() as usize;
            call(
                Step::PrivateMounts,
                libc::SYS_mount,
                [0, root, 0, private, 0],
            )?;
        }
        if !s.chroot.is_null() {
            call(Step::Chroot, libc::SYS_chroot, [s.chroot as usize])?;
        }
        // After the chroot: the paths resolve inside the handler's root,
        // a link there never to the host's tree.
        let flags = (libc::MS_NOSUID | libc::MS_NODEV) as usize;
        let (fs, data) = (c"tmpfs".as_ptr() as usize, c"mode=1777".as_ptr() as usize);
        for &t in tmp {
            call(
                Step::MountTmp,
                libc::SYS_mount,
                [fs, t as usize, fs, flags, data],
            )?;
        }
    }
    Ok(())
}

/// While still root (before the ids are switched): the resource limits,
/// the nice value, the umask, the bounding set, and `PR_SET_KEEPCAPS` when
/// capabilities are kept across the switch.
///
/// # Safety
/// Only for the child of `spawn`.
unsafe fn limit(l: &Limits, rlimits: (*const (u32, u64), usize)) -> Result<(), (Step, i32)> {
    // SAFETY: `rlimits` points at that many pairs the parent leaves alone
    // until exec; prlimit64 reads a local [u64; 2] (a struct rlimit64) and
    // writes nothing (no old-limit pointer); the others take numbers.
    unsafe {
        let (pairs, n) = rlimits;
        for i in 0..n {
            let (resource, value) = *pairs.add(i);
            let new = [value, value];
            call(
                Step::Rlimit,
                libc::SYS_prlimit64,
                [0, resource as usize, new.as_ptr() as usize, 0],
            )?;
        }
        if let Some(nice) = l.nice {
            let (which, n) = (libc::PRIO_PROCESS as usize, nice as isize as usize);
            call(Step::Nice, libc::SYS_setpriority, [which, 0, n])?;
        }
        if let Some(mask) = l.umask {
            call(Step::Umask, libc::SYS_umask, [mask as usize])?;
        }
        let drop = libc::PR_CAPBSET_DROP as usize;
        let mut caps = l.drop_bounding;
        while caps != 0 {
            let cap = caps.trailing_zeros() as usize;
            call(Step::DropCaps, libc::SYS_prctl, [drop, cap, 0, 0, 0])?;
            caps &= caps.wrapping_sub(1);
        }
        if l.keep != 0 {
            let keep = libc::PR_SET_KEEPCAPS as usize;
            call(Step::KeepCaps, libc::SYS_prctl, [keep, 1, 0, 0, 0])?;
        }
    }
    Ok(())
}

/// `capset`'s header (`_LINUX_CAPABILITY_VERSION_3`: two data words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One word of `capset`'s sets: capabilities 0-31, then 32-63.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// After the ids are switched: the kept capabilities made the handler's
/// (permitted, effective, inheritable, then raised in the ambient set
/// so they survive exec, and checked), or else the ambient set emptied;
/// and a root handler's inheritable set cut down to what it keeps.
///
/// # Safety
/// Only for the child of `spawn`.
unsafe fn capabilities(l: &Limits) -> Result<(), (Step, i32)> {
    let mut head = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let (h, ambient) = (
        &mut head as *mut CapHeader as usize,
        libc::PR_CAP_AMBIENT as usize,
    );
    // SAFETY: capget/capset read the local header and read or write the
    // two local data words; prctl takes numbers.
    unsafe {
        if l.keep != 0 {
            let word = |i: u32| {
                let bits = (l.keep >> (32 * i)) as u32;
                CapData {
                    effective: bits,
                    permitted: bits,
                    inheritable: bits,
                }
            };
            let data = [word(0), word(1)];
            call(Step::SetCaps, libc::SYS_capset, [h, data.as_ptr() as usize])?;
            let raise = libc::PR_CAP_AMBIENT_RAISE as usize;
            let mut caps = l.keep;
            while caps != 0 {
                let cap = caps.trailing_zeros() as usize;
                call(Step::SetCaps, libc::SYS_prctl, [ambient, raise, cap, 0, 0])?;
                caps &= caps.wrapping_sub(1);
            }
            // What the handler has is exactly what it keeps.
            let mut got = [word(0); 2];
            let out = got.as_mut_ptr() as usize;
            call(Step::SetCaps, libc::SYS_capget, [h, out])?;
            let set = |f: fn(&CapData) -> u32| u64::from(f(&got[0])) | u64::from(f(&got[1])) << 32;
            if set(|d| d.permitted) != l.keep || set(|d| d.effective) != l.keep {
                return Err((Step::SetCaps, libc::EPERM));
            }
        } else {
            let clear = libc::PR_CAP_AMBIENT_CLEAR_ALL as usize;
            match call(
                Step::ClearAmbient,
                libc::SYS_prctl,
                [ambient, clear, 0, 0, 0],
            ) {
                // A kernel before 4.3 has no ambient set to clear.
                Err((_, libc::EINVAL)) | Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(keep) = l.inheritable {
            let zero = CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            };
            let mut data = [zero; 2];
            call(
                Step::SetCaps,
                libc::SYS_capget,
                [h, data.as_mut_ptr() as usize],
            )?;
            data[0].inheritable &= keep as u32;
            data[1].inheritable &= (keep >> 32) as u32;
            call(Step::SetCaps, libc::SYS_capset, [h, data.as_ptr() as usize])?;
        }
    }
    Ok(())
}

/// Check that the ids took: real, effective and saved uid and gid are the
/// configured ones, and root cannot be had back. This runs right after
/// the switch, before `capabilities`: even a handler that keeps
/// capabilities (`PR_SET_KEEPCAPS`) has an empty effective set here, so
/// `setuid(0)` must fail; a kept `CAP_SETUID` is raised only afterwards,
/// as its config asks.
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
pub(super) unsafe fn write_decimal(out: *mut u8, n: u64) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handlers_get_every_ignored_signal_back_at_default() {
        for sig in crate::signals::IGNORED {
            assert!(HANDLED_SIGNALS.contains(&(sig as c_int)), "{sig}");
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
