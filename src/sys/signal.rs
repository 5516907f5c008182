//! Signal dispositions through the raw system call (glibc refuses some
//! signals), and ignoring the ones the supervisor has no use for.

use nix::errno::Errno;
use nix::sys::signal::SigSet;

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

/// `struct sigaction` as the kernel's rt_sigaction takes it (x86_64 and
/// aarch64 layout).
#[repr(C)]
#[derive(Default)]
pub(crate) struct KernelSigaction {
    pub handler: libc::sighandler_t,
    pub flags: libc::c_ulong,
    pub restorer: usize,
    pub mask: u64,
}

/// Whether any of `signals` is pending for this thread: raised while
/// blocked, not yet delivered.
pub fn any_pending(signals: &[nix::sys::signal::Signal]) -> bool {
    let mut raw = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigpending writes one whole sigset_t through the pointer,
    // which points to one.
    if unsafe { libc::sigpending(raw.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: the successful call above initialised it.
    let pending = unsafe { SigSet::from_sigset_t_unchecked(raw.assume_init()) };
    signals.iter().any(|&sig| pending.contains(sig))
}
