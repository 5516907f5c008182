//! Socket options nix does not wrap: the accept queue's length, a
//! filter that refuses new connections, `TCP_DEFER_ACCEPT`; and datagrams received with the
//! local address they came to and answered from it (`IP_PKTINFO`,
//! `IPV6_PKTINFO`), with the control message on the stack.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::sys::socket::{
    recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
};

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
    // `prog` points at `code`, both live for the call; the kernel copies
    // the program and checks it before attaching it.
    set_option(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

/// `TCP_DEFER_ACCEPT` on a listening TCP socket: a connection reaches the
/// accept queue once its first data has come (or after about `secs`
/// seconds of silence, as a plain connection); 0 turns it off.
pub fn defer_accept(fd: BorrowedFd<'_>, secs: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    set_option(fd, libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, &value)
}

/// `setsockopt(2)` with `value` as the option's bytes, for the options nix
/// does not wrap.
fn set_option<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    let len = libc::socklen_t::try_from(std::mem::size_of::<T>())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` is readable for `len` bytes for the whole call, and
    // the kernel only reads them (copying them in; a pointer inside them
    // is checked by the kernel itself, EFAULT if bad).
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The local address a datagram came to, as its reply's source: for
/// IPv4 the kernel's `ipi_spec_dst` (the address itself for unicast, the
/// interface's address for a broadcast); for IPv6 the destination, with
/// its interface when it is link-local (otherwise routing chooses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    V4([u8; 4]),
    V6(Ipv6Addr, u32),
}

impl Arrival {
    /// The local address, as a handler's `TCPLOCALIP` shows it.
    pub fn ip(self) -> std::net::IpAddr {
        match self {
            Arrival::V4(a) => a.into(),
            Arrival::V6(a, _) => a.to_ipv4_mapped().map_or(a.into(), Into::into),
        }
    }
}

/// Ask the kernel for each datagram's local address (`IP_PKTINFO` on an
/// IPv4 socket, `IPV6_RECVPKTINFO` on an IPv6 one: a dual-stack socket
/// then reports IPv4 arrivals as mapped addresses); or stop asking.
pub fn want_arrival(fd: BorrowedFd<'_>, v6: bool, on: bool) -> io::Result<()> {
    if v6 {
        setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &on)?;
    } else {
        setsockopt(&fd, sockopt::Ipv4PacketInfo, &on)?;
    }
    Ok(())
}

/// Room for one `in6_pktinfo` control message (the larger of the two),
/// aligned as `cmsghdr` needs.
#[repr(C, align(8))]
struct CmsgSpace([u8; 64]);

/// Receive one datagram into `buf`: its length, its sender, and the local
/// address it came to if the socket reports it (`want_arrival`).
pub fn recv_arrival(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> nix::Result<(usize, Option<SockaddrStorage>, Option<Arrival>)> {
    let mut space = CmsgSpace([0; 64]);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space.0[..]),
        MsgFlags::empty(),
    )?;
    let mut arrival = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    arrival = Some(Arrival::V4(i.ipi_spec_dst.s_addr.to_ne_bytes()));
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    let a = Ipv6Addr::from(i.ipi6_addr.s6_addr);
                    let link = a.is_unicast_link_local();
                    arrival = Some(Arrival::V6(a, if link { i.ipi6_ifindex } else { 0 }));
                }
                _ => {}
            }
        }
    }
    Ok((msg.bytes, msg.address, arrival))
}

/// Send `data` to `peer` from the local address `from` (`IP_PKTINFO` /
/// `IPV6_PKTINFO` in the message; nix's `sendmsg` would allocate its
/// control buffer per call). An arrival the kernel will not send from (a
/// multicast or broadcast address: `EINVAL`) is answered from the address
/// routing picks.
pub fn send_from(
    fd: BorrowedFd<'_>,
    data: &[u8],
    peer: SocketAddr,
    from: Arrival,
) -> io::Result<usize> {
    let to = socket2::SockAddr::from(peer);
    let mut space = CmsgSpace([0; 64]);
    let (level, kind, len) = match from {
        Arrival::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            std::mem::size_of::<libc::in_pktinfo>(),
        ),
        Arrival::V6(..) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            std::mem::size_of::<libc::in6_pktinfo>(),
        ),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space_len = unsafe { libc::CMSG_SPACE(len as u32) } as usize;
    if space_len > space.0.len() {
        // Not on any Linux ABI (48 bytes at most); checked for the writes below.
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut iov = [io::IoSlice::new(data)];
    // SAFETY: msghdr is plain data; every field used is set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = to.as_ptr() as *mut libc::c_void;
    msg.msg_namelen = to.len();
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = space.0.as_mut_ptr().cast();
    msg.msg_controllen = space_len as _;
    // SAFETY: `msg` points at `space`, 8-aligned and at least
    // CMSG_SPACE(len) bytes long (checked above), so the first header and
    // its data lie inside it; the writes are unaligned-safe copies.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        (*c).cmsg_level = level;
        (*c).cmsg_type = kind;
        (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
        let data = libc::CMSG_DATA(c);
        match from {
            Arrival::V4(a) => {
                let info = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
            Arrival::V6(a, ifindex) => {
                let info = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: a.octets(),
                    },
                    ipi6_ifindex: ifindex,
                };
                std::ptr::write_unaligned(data.cast(), info);
            }
        }
    }
    // SAFETY: `msg` and everything it points at (the peer's address, the
    // iovec over `data`, the control message) live for the call.
    let rc = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if rc >= 0 {
        return Ok(rc as usize);
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EINVAL) => nix::sys::socket::sendto(
            fd.as_raw_fd(),
            data,
            &SockaddrStorage::from(peer),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from),
        e => Err(e),
    }
}

/// A received sender as a std address (IP families only).
pub fn ip_of(s: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
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
