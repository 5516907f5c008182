//! The portable launcher (other architectures, or the `spawn-vfork`
//! feature): `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)` through libc. The supervisor is suspended in `clone` until the child
//! has exec'd or exited (`CLONE_VFORK`), so the child reads the caller's
//! own buffers where they are, one stack serves every child, and its
//! failure, if any, is in [`Job::failure`] when `clone` returns.

use std::sync::atomic::{AtomicU64, Ordering};

use libc::{c_char, c_int, c_void, pid_t};
use nix::errno::Errno;

use super::child::{setup_and_exec, Ready, Sandboxed};
use super::stack::ChildStack;
use super::{failure_word, from_failure_word, CloneError, ExecImage, Failure};

/// What the child reads, and where it says why it did not exec.
struct Job {
    ready: Ready,
    /// 0, or the child's failure (`failure_word`).
    failure: AtomicU64,
}

/// `LISTEN_PID=`, then room for a pid in decimal and its NUL.
const LISTEN_PID: &[u8] = b"LISTEN_PID=";

/// Starts handlers: the stack they run on until they exec, and the
/// failures of children not reaped yet.
pub struct Launcher {
    stack: ChildStack,
    /// The caller's envp plus `LISTEN_PID`, when the handler is told it.
    envp: Vec<*const c_char>,
    /// `LISTEN_PID=` and the 21 bytes the child writes its pid into.
    listen_pid: [u8; LISTEN_PID.len() + 21],
    /// Children that failed before exec, until they are reaped.
    failed: Vec<(pid_t, Failure)>,
}

impl Launcher {
    pub fn new() -> std::io::Result<Launcher> {
        let mut listen_pid = [0; LISTEN_PID.len() + 21];
        listen_pid[..LISTEN_PID.len()].copy_from_slice(LISTEN_PID);
        Ok(Launcher {
            stack: ChildStack::new()?,
            envp: Vec::with_capacity(32),
            listen_pid,
            failed: Vec::new(),
        })
    }

    /// Whether a child is between clone and exec: never once `spawn` has
    /// returned.
    pub fn busy(&self) -> bool {
        false
    }

    /// Why child `pid` did not get to exec, if it failed before; for a
    /// reaped child.
    pub fn failure(&mut self, pid: pid_t) -> Option<Failure> {
        let i = self.failed.iter().position(|(p, _)| *p == pid)?;
        Some(self.failed.swap_remove(i).1)
    }
}

/// Start `img` in a new process; returns its pid once it has exec'd or
/// exited. Whether it got to exec is known when it is reaped:
/// [`Launcher::failure`].
///
/// The caller keeps every signal it handles blocked (`signals` does,
/// outside the loop's wait), so none of its handlers can run in the child
/// before the child has reset them to default; the mask is not touched per
/// spawn.
pub fn spawn(img: &ExecImage<'_>, launcher: &mut Launcher) -> Result<pid_t, CloneError> {
    debug_assert!(img.argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(img.envp.last().is_some_and(|p| p.is_null()));
    let (envp, pid_slot) = if img.listen_pid {
        launcher.envp.clear();
        let given = img.envp.iter().take_while(|p| !p.is_null());
        launcher.envp.extend(given);
        let entry = launcher.listen_pid.as_mut_ptr();
        launcher.envp.push(entry.cast_const().cast());
        launcher.envp.push(std::ptr::null());
        let digits = entry.wrapping_add(LISTEN_PID.len());
        (launcher.envp.as_ptr(), Some(digits))
    } else {
        (img.envp.as_ptr(), None)
    };
    let job = Job {
        ready: Ready {
            path: img.path.as_ptr(),
            argv: img.argv.as_ptr(),
            envp,
            ids: img.ids.as_ref().map(|i| (i.uid, i.gid)),
            groups: img.ids.as_ref().map_or((std::ptr::null(), 0), |i| {
                (i.groups.as_ptr(), i.groups.len())
            }),
            stdio: img.stdio,
            listen: img.listen,
            pid_slot,
            nofile: img.nofile,
            limits: *img.limits,
            rlimits: (img.rlimits.as_ptr(), img.rlimits.len()),
            sandbox: Sandboxed::in_place(&img.sandbox),
        },
        failure: AtomicU64::new(0),
    };
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let arg = std::ptr::addr_of!(job) as *mut c_void;
    // SAFETY: `child_main` runs on the launcher's stack (its top, 16-byte
    // aligned), which no other child uses: with CLONE_VFORK this thread is
    // suspended here until the child has exec'd or exited, so the previous
    // child is gone from it (and `&mut` keeps other threads off this
    // launcher), and everything `job` points to (the caller's `img`, the launcher's
    // `envp` and `listen_pid`) stays alive and unchanged while the child
    // reads it. The child writes only its stack, `job.failure` and the
    // `listen_pid` digits.
    let pid = unsafe { libc::clone(child_main, launcher.stack.top(), flags, arg) };
    if pid == -1 {
        return Err(CloneError::Clone(Errno::last()));
    }
    if let Some(failure) = from_failure_word(job.failure.load(Ordering::Acquire)) {
        launcher.failed.push((pid, failure));
    }
    Ok(pid)
}

/// The child's entry point, on the launcher's stack.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the job `spawn` passed to clone, alive and
    // unchanged while the parent is suspended.
    let job = unsafe { &*(arg as *const Job) };
    // SAFETY: we are the child `spawn` describes.
    let Err((step, errno)) = unsafe { setup_and_exec(&job.ready) };
    job.failure
        .store(failure_word(step, errno), Ordering::Release);
    // SAFETY: ends this process (exit_group; not the parent's: no
    // CLONE_THREAD) without running atexit handlers or anything else of
    // the parent's.
    unsafe { libc::_exit(127) }
}
