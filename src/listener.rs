//! Binding listening sockets, TCP and UDP, IPv4 and IPv6.
//!
//! `*:PORT` is one dual-stack IPv6 socket (`IPV6_V6ONLY` off), falling back
//! to IPv4 when the host has no IPv6; peers then show as IPv4-mapped
//! addresses, which `spawn::unmap` turns back into IPv4.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};

use crate::config::{BindAddr, ListenKey, Protocol};

/// Pending connections the kernel holds while a service is at its limit.
const BACKLOG: i32 = 1024;

/// Bind and (for TCP) listen on `key`. The socket is close-on-exec, and
/// non-blocking from its creation when `nonblocking` (no fcntl per socket:
/// a thousand services bind in a thousand fewer round trips).
pub fn bind(key: &ListenKey, nonblocking: bool) -> io::Result<Socket> {
    let (ty, proto) = match key.protocol {
        Protocol::Tcp => (Type::STREAM, SockProto::TCP),
        Protocol::Udp => (Type::DGRAM, SockProto::UDP),
    };
    let ty = if nonblocking { ty.nonblocking() } else { ty };
    let socket = match key.addr {
        BindAddr::Ip(addr) => {
            let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            prepare(&s, key.protocol)?;
            s.bind(&addr.into())?;
            s
        }
        BindAddr::Any(port) => match Socket::new(Domain::IPV6, ty, Some(proto)) {
            Ok(s) => {
                s.set_only_v6(false)?;
                prepare(&s, key.protocol)?;
                s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
                s
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
                prepare(&s, key.protocol)?;
                s.bind(&SocketAddr::new([0, 0, 0, 0].into(), port).into())?;
                s
            }
            Err(e) => return Err(e),
        },
    };
    if key.protocol == Protocol::Tcp {
        socket.listen(BACKLOG)?;
    }
    Ok(socket)
}

fn prepare(s: &Socket, protocol: Protocol) -> io::Result<()> {
    if protocol == Protocol::Tcp {
        s.set_reuse_address(true)?;
    }
    Ok(())
}

/// A socket address as a std address (IP families only).
pub fn ip_addr(a: &SockAddr) -> Option<SocketAddr> {
    a.as_socket()
}
