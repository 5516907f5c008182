//! The blocking steps both relays take before they relay: waiting on a
//! socket by a deadline and a TLS handshake. Each relay is a process of
//! one connection, so blocking in `poll` is its whole scheduling.

use std::io;
use std::os::fd::AsFd;
use std::time::Instant;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::ConnectionCommon;
use socket2::Socket;

/// A non-blocking socket's "not now" (or a signal: try again).
pub fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Wait until `fd` is ready for `events` or `deadline` passes.
pub fn wait(fd: &Socket, events: PollFlags, deadline: Instant) -> Result<(), String> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timed out".into());
        }
        let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), events)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
    }
}

/// Either side's handshake on `sock` with `peer` (named in the error),
/// by `deadline`.
pub fn handshake<D>(
    tls: &mut ConnectionCommon<D>,
    mut sock: &Socket,
    peer: &str,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        while tls.wants_write() {
            match tls.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if would_block(&e) => wait(sock, PollFlags::POLLOUT, deadline)?,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if !tls.is_handshaking() {
            return Ok(());
        }
        match tls.read_tls(&mut sock) {
            Ok(0) => return Err(format!("the {peer} closed the connection")),
            Ok(_) => {
                if let Err(e) = tls.process_new_packets() {
                    // The alert rustls queued, best effort.
                    let _ = tls.write_tls(&mut sock);
                    return Err(e.to_string());
                }
            }
            Err(e) if would_block(&e) => wait(sock, PollFlags::POLLIN, deadline)?,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}
