//! `bulk`: one connection, 64 KiB writes, the echo read back (up to a MiB
//! per read) and checked.
//!
//! One thread does both directions on a non-blocking socket: it offers the
//! server the rest of the current 64 KiB chunk whenever the socket takes
//! it, reads whatever has come back, and sleeps in `poll` only when neither
//! moved. A writer and a reader thread on the one socket (the first
//! version) contend for the socket's lock: while the writer holds it, the
//! echo arriving for the reader waits in the socket's backlog until the
//! writer lets go, and the writer does the reader's receive work. That
//! client, not the servers, bounded the figure (bench/README.md).
//!
//! The stream is a repeating pattern of period 251 (prime, so it never lines
//! up with a buffer size), checked with one slice comparison per read.
//!
//! It is sent without a copy ([`SplicePipe`]: the pattern's pages mapped
//! into a pipe with `vmsplice`, then `splice`d into the socket): with
//! `write`, the client spent a whole core (99.5-100 % in every oxinetd
//! round of a full run, against 49-73 % for oxinetd) and its rate, not the
//! server's, was the figure; inetutils-inetd, CPU-bound at 94-98 %, read
//! the same. Sending by reference takes the send-side copy out of the
//! client (bench/README.md, "Bulk").

use std::io::{self, Read};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::stats::Errors;
use crate::Opts;

const PERIOD: usize = 251;

/// The client should spend less CPU per byte than the servers it measures,
/// which share its two cores: it takes whatever has arrived, up to a MiB.
const READ_SIZE: usize = 1 << 20;

fn pattern(len: usize) -> Vec<u8> {
    (0..len + PERIOD).map(|i| (i % PERIOD) as u8).collect()
}

pub fn run(o: &Opts) {
    let mut errors = Errors::default();
    let (written, read, secs, mismatch) = match transfer(o) {
        Ok(r) => r,
        Err(e) => {
            errors.count(&e);
            eprintln!("bulk: {e}");
            (0, 0, 0.0, false)
        }
    };
    // A different echo, or a short one (the server closed early).
    if mismatch || read != written {
        errors.bad_reply += 1;
    }
    let mbps = if secs > 0.0 {
        read as f64 / secs / 1e6
    } else {
        0.0
    };
    println!(
        "mode=bulk chunk={} written={written} echoed={read} secs={secs:.3} mbps={mbps:.1}{}",
        o.chunk,
        errors.fields()
    );
}

/// Whether a non-blocking call did something (`Ok(Some(n))`), would have
/// blocked (`Ok(None)`), or failed.
fn nonblocking(r: io::Result<usize>) -> io::Result<Option<usize>> {
    match r {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => Err(e),
    }
}

/// Wait until `s` is readable (or writable, with `write`), at most `timeout`.
pub fn wait(s: &TcpStream, write: bool, timeout: Duration) -> io::Result<()> {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | if write { libc::POLLOUT } else { 0 },
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: poll reads and writes the one pollfd on this stack.
    match unsafe { libc::poll(&mut p, 1, ms) } {
        0 => Err(io::Error::new(io::ErrorKind::TimedOut, "no progress")),
        r if r < 0 => {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => Ok(()),
                _ => Err(e),
            }
        }
        _ => Ok(()),
    }
}

/// Returns (bytes written, bytes echoed, seconds to the last echoed byte,
/// whether the echo differed from what was sent).
fn transfer(o: &Opts) -> io::Result<(u64, u64, f64, bool)> {
    // Before the socket, so dropped after it: the kernel may still hold
    // the pattern's pages (sent by reference) until the socket is gone.
    let pat = pattern(o.chunk.max(READ_SIZE));
    let mut pipe = SplicePipe::new()?;
    let mut s = TcpStream::connect_timeout(&o.addr, o.timeout)?;
    s.set_nonblocking(true)?;
    let chunk = o.chunk as u64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    let mut buf = vec![0u8; READ_SIZE];
    let (mut written, mut got) = (0u64, 0u64);
    let mut mismatch = false;
    let mut last = start;
    let mut writing = true;
    loop {
        let mut moved = false;
        if writing {
            // A chunk is done: time to stop?
            if written % chunk == 0 && Instant::now() >= deadline {
                writing = false;
                s.shutdown(Shutdown::Write)?;
            } else {
                let at = (written % PERIOD as u64) as usize;
                let rest = (chunk - written % chunk) as usize;
                if let Some(n) = pipe.send(&s, &pat[at..at + rest])? {
                    written += n as u64;
                    moved = true;
                }
            }
        }
        match nonblocking(s.read(&mut buf))? {
            Some(0) => break,
            Some(n) => {
                let at = (got % PERIOD as u64) as usize;
                if buf[..n] != pat[at..at + n] {
                    mismatch = true;
                }
                got += n as u64;
                last = Instant::now();
                moved = true;
            }
            None => {}
        }
        if !writing && got >= written {
            break;
        }
        if !moved {
            wait(&s, writing, o.timeout)?;
        }
    }
    Ok((written, got, (last - start).as_secs_f64(), mismatch))
}

/// Sending without a copy: the bytes' pages are mapped into a pipe
/// (`vmsplice`), then moved into the socket (`splice`). The pattern is
/// never written to while the run lasts, so pages still in flight keep
/// what was sent.
struct SplicePipe {
    r: OwnedFd,
    w: OwnedFd,
    /// Bytes in the pipe, not in the socket yet.
    held: usize,
}

impl SplicePipe {
    fn new() -> io::Result<SplicePipe> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two descriptors into the array on this stack.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just made and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(SplicePipe { r, w, held: 0 })
    }

    /// Send the start of `data` (or, while the pipe still holds bytes of an
    /// earlier call, those: they are `data`'s first bytes, since only what
    /// left the pipe is counted as written). Bytes that went into the
    /// socket; `None` when it took nothing.
    fn send(&mut self, s: &TcpStream, data: &[u8]) -> io::Result<Option<usize>> {
        if self.held == 0 {
            let iov = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            // SAFETY: the iovec points at `data`, part of the pattern, which
            // outlives the socket and is never written to.
            let n = unsafe { libc::vmsplice(self.w.as_raw_fd(), &iov, 1, libc::SPLICE_F_NONBLOCK) };
            if n < 0 {
                return nonblocking(Err(io::Error::last_os_error())).map(|_| None);
            }
            self.held = n as usize;
        }
        // SAFETY: a system call on descriptors this process owns; no memory
        // is passed.
        let n = unsafe {
            libc::splice(
                self.r.as_raw_fd(),
                std::ptr::null_mut(),
                s.as_raw_fd(),
                std::ptr::null_mut(),
                self.held,
                libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE,
            )
        };
        if n < 0 {
            return nonblocking(Err(io::Error::last_os_error()));
        }
        self.held -= n as usize;
        Ok(Some(n as usize))
    }
}
