//! Socket options nix does not wrap: the accept queue's length, and a
//! filter that refuses new connections.

use std::os::fd::{AsRawFd, BorrowedFd};

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
        match refuse_syn(l.as_fd()) {
            Ok(()) => {
                let late = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .unwrap();
                late.set_nonblocking(true).unwrap();
                let _ = late.connect(&addr.into());
                std::thread::sleep(std::time::Duration::from_millis(100));
                assert_eq!(accept_queue(l.as_fd()), Some(1));
                assert!(late.peer_addr().is_err(), "connected through the filter");
            }
            // Some kernels refuse socket filters to unprivileged users
            // (seen on 6.18 with kernel.unprivileged_bpf_disabled = 2);
            // the supervisor then does without the filter.
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM) && !nix::unistd::geteuid().is_root() =>
            {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED: needs root (SO_ATTACH_FILTER: {e}): \
                     sys::socket::tests::accept_queue_is_the_listeners_backlog_and_refuse_syn_keeps_it"
                );
            }
            Err(e) => panic!("refuse_syn: {e}"),
        }
        drop(l.accept().unwrap());
        // Not TCP: no answer.
        let (u, _) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(accept_queue(u.as_fd()), None);
    }
}
