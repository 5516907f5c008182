//! sd_notify: readiness and state changes to the service manager, when
//! `NOTIFY_SOCKET` is set (a path, or `@name` for the abstract namespace);
//! and the listeners kept in its fd store across a restart.
//!
//! The fd store (systemd.service(5) `FileDescriptorStoreMax=`): each
//! service's listening sockets are sent with `FDSTORE=1`,
//! `FDNAME=<service name>` (a service name is a valid fd name: letters,
//! digits and `-_.@`) and `FDPOLL=0` (a listener never hangs up), after
//! an `FDSTOREREMOVE=1` of that name, so the store holds exactly the
//! sockets the service has now. systemd passes them back to the next run
//! like socket-activated ones (`LISTEN_FDS`, `LISTEN_FDNAMES`), which
//! `handover` takes in.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

/// At most this many fds per message (the kernel's `SCM_MAX_FD`).
const MAX_FDS: usize = 253;

pub struct Notifier {
    target: Option<Target>,
    /// Whether listeners go to the fd store: `NOTIFY_SOCKET` is set, and
    /// `FDSTORE` (set by systemd 254 and later to the unit's
    /// `FileDescriptorStoreMax=`) is not 0.
    fd_store: bool,
}

struct Target {
    sock: UnixDatagram,
    addr: SocketAddr,
    /// The same address for `sendmsg`, which carries fds.
    raw: UnixAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET`; a no-op notifier when unset or unusable.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let (addr, raw) = match bytes.strip_prefix(b"@") {
                Some(name) => (
                    SocketAddr::from_abstract_name(name).ok()?,
                    UnixAddr::new_abstract(name).ok()?,
                ),
                None => (
                    SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
                    UnixAddr::new(std::path::Path::new(&path)).ok()?,
                ),
            };
            Some(Target {
                sock: UnixDatagram::unbound().ok()?,
                addr,
                raw,
            })
        });
        let max = std::env::var("FDSTORE").ok();
        let fd_store = target.is_some() && max.is_none_or(|m| m.trim() != "0");
        Notifier { target, fd_store }
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn reloading(&self) {
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={now}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Whether listeners are kept in the service manager's fd store.
    pub fn fd_store(&self) -> bool {
        self.fd_store
    }

    /// Make `fds` the store's sockets named `name` (none: remove them).
    pub fn store(&self, name: &str, fds: &[BorrowedFd<'_>]) {
        if !self.fd_store {
            return;
        }
        self.send(&format!("FDSTOREREMOVE=1\nFDNAME={name}"));
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let msg = format!("FDSTORE=1\nFDNAME={name}\nFDPOLL=0");
        for chunk in raw.chunks(MAX_FDS) {
            self.send_fds(&msg, chunk);
        }
    }

    fn send(&self, msg: &str) {
        if let Some(t) = &self.target {
            // Best effort: the manager may be gone; nothing else depends on it.
            let _ = t.sock.send_to_addr(msg.as_bytes(), &t.addr);
        }
    }

    fn send_fds(&self, msg: &str, fds: &[RawFd]) {
        if let Some(t) = &self.target {
            let iov = [IoSlice::new(msg.as_bytes())];
            let cmsg = [ControlMessage::ScmRights(fds)];
            let flags = MsgFlags::empty();
            let _ = sendmsg(t.sock.as_raw_fd(), &iov, &cmsg, flags, Some(&t.raw));
        }
    }
}
