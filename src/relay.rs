//! Datagram `nowait` services: one handler per datagram, with the request
//! on its stdin and its stdout sent back to the peer as the reply.
//!
//! The request goes in a memfd rather than a pipe, so a request
//! of any size is ready to read before the handler starts and the supervisor
//! never blocks or buffers on the way in. The reply is collected from a
//! non-blocking pipe and sent when the handler closes its stdout or exits,
//! whichever comes first; several writes make one datagram.

use std::io::{Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;

use nix::sys::memfd::{memfd_create, MFdFlags};
use std::net::SocketAddr;

/// The largest UDP payload; a longer reply is cut there (and logged).
pub const MAX_REPLY: usize = 65507;

/// A reply being collected.
pub struct Reply {
    /// The listener whose socket sends it.
    pub listener: u64,
    pub peer: SocketAddr,
    /// The local address the request came to, the reply's source (a
    /// listener on a wildcard address); `None`: the socket's own.
    pub from: Option<crate::sys::Arrival>,
    /// Read end of the handler's stdout.
    pub out: OwnedFd,
    pub buf: Vec<u8>,
    /// Bytes beyond MAX_REPLY that were dropped.
    pub dropped: usize,
}

impl Reply {
    /// Read what the handler wrote so far; true once its stdout is closed.
    pub fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        loop {
            match nix::unistd::read(&self.out, &mut chunk) {
                Ok(0) => return true,
                Ok(n) => {
                    let room = MAX_REPLY.saturating_sub(self.buf.len()).min(n);
                    self.buf.extend_from_slice(&chunk[..room]);
                    self.dropped += n - room;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(_) => return true,
            }
        }
    }
}

/// A readable file holding `request`, positioned at its start.
pub fn request_file(request: &[u8]) -> std::io::Result<OwnedFd> {
    let fd = memfd_create(c"oxinetd-request", MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(fd);
    file.write_all(request)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file.into())
}
