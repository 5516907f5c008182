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
