//! Binding listening sockets: TCP and UDP over IPv4 and IPv6, and
//! UNIX-domain stream and datagram sockets.
//!
//! `*:PORT` is one dual-stack IPv6 socket (`IPV6_V6ONLY` off), falling back
//! to IPv4 when the host has no IPv6; peers then show as IPv4-mapped
//! addresses, which `spawn::unmap` turns back into IPv4.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};

use crate::config::{BindAddr, ListenKey, Protocol, SocketFile};

/// Pending connections the kernel holds while a service is at its limit.
pub const BACKLOG: i32 = 1024;

/// Bind and (for TCP) listen on `key`. The socket is close-on-exec, and
/// non-blocking from its creation when `nonblocking` (no fcntl per socket:
/// a thousand services bind in a thousand fewer round trips).
pub fn bind(key: &ListenKey, nonblocking: bool) -> io::Result<Socket> {
    bind_with(key, nonblocking, false)
}

/// Like `bind`, with `SO_REUSEPORT` set (TCP over IP): on a reload, the
/// socket replacing one on the same port (`127.0.0.1:P` for `*:P`, or the
/// other way round) is bound while the old one, given `SO_REUSEPORT` too
/// by `share_port`, still listens. `share_port(.., false)` ends the sharing
/// once the old one is closed.
pub fn bind_alongside(key: &ListenKey, nonblocking: bool) -> io::Result<Socket> {
    bind_with(key, nonblocking, true)
}

/// Let another socket of ours bind this one's port (`SO_REUSEPORT`), or
/// stop letting it.
pub fn share_port(s: &Socket, on: bool) -> io::Result<()> {
    s.set_reuse_port(on)
}

fn bind_with(key: &ListenKey, nonblocking: bool, share: bool) -> io::Result<Socket> {
    let (ty, proto) = match key.protocol {
        Protocol::Tcp => (Type::STREAM, SockProto::TCP),
        Protocol::Udp => (Type::DGRAM, SockProto::UDP),
    };
    let ty = if key.seqpacket { Type::SEQPACKET } else { ty };
    let ty = if nonblocking { ty.nonblocking() } else { ty };
    let socket = match key.addr {
        BindAddr::Unix(ref path) => {
            let s = Socket::new(Domain::UNIX, ty, None)?;
            bind_unix(&s, path, ty)?;
            s
        }
        BindAddr::Ip(addr) => {
            let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
            if addr.is_ipv6() {
                s.set_only_v6(true)?;
            }
            prepare(&s, key.protocol, share)?;
            s.bind(&addr.into())?;
            s
        }
        BindAddr::Any(port) => match Socket::new(Domain::IPV6, ty, Some(proto)) {
            Ok(s) => {
                s.set_only_v6(false)?;
                prepare(&s, key.protocol, share)?;
                s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
                s
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
                prepare(&s, key.protocol, share)?;
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

/// Bind `s` to `path`, replacing a socket file left behind by a process
/// that is gone (nobody accepts on it), never a live socket or another
/// kind of file. Missing parent directories are made (0755), as systemd
/// does for socket units: /run is empty after a boot.
fn bind_unix(s: &Socket, path: &Path, ty: Type) -> io::Result<()> {
    let addr = SockAddr::unix(path)?;
    let mut bound = s.bind(&addr);
    if bound
        .as_ref()
        .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
    {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)?;
            bound = s.bind(&addr);
        }
    }
    match bound {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        other => return other,
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    let probe = Socket::new(Domain::UNIX, ty.nonblocking(), None)?;
    match probe.connect(&addr) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ))
        }
    }
    std::fs::remove_file(path)?;
    s.bind(&addr)
}

/// Identity of a socket file (device, inode), to remove it on close only
/// if it is still the one this process bound.
pub type FileId = (u64, u64);

/// Give the socket file at `path` its owner and mode; its identity.
pub fn set_file(path: &Path, file: &SocketFile) -> io::Result<FileId> {
    if let Some((uid, gid)) = file.owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::other(format!(
            "{} is no longer a socket",
            path.display()
        )));
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(file.mode))?;
    Ok((meta.dev(), meta.ino()))
}

/// Remove the socket at `path`, if what is there is a socket.
pub fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// A socket file this process bound: removed when dropped, if it is still
/// the same file.
pub struct BoundFile {
    pub path: std::rc::Rc<Path>,
    pub id: FileId,
}

impl Drop for BoundFile {
    fn drop(&mut self) {
        remove_file(&self.path, self.id);
    }
}

/// Remove the socket file at `path` if it is still `id`: after a reload
/// another service (or another process) may have bound the path again.
pub fn remove_file(path: &Path, id: FileId) {
    let ours = std::fs::symlink_metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id);
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

fn prepare(s: &Socket, protocol: Protocol, share: bool) -> io::Result<()> {
    if protocol == Protocol::Tcp {
        s.set_reuse_address(true)?;
        if share {
            s.set_reuse_port(true)?;
        }
    }
    Ok(())
}

/// A socket address as a std address (IP families only).
pub fn ip_addr(a: &SockAddr) -> Option<SocketAddr> {
    a.as_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &Path) -> ListenKey {
        ListenKey {
            addr: BindAddr::Unix(path.to_owned()),
            protocol: Protocol::Tcp,
            seqpacket: false,
        }
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_and_a_file_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let live = bind(&key(&path), true).unwrap();
        let err = bind(&key(&path), true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(live); // the file stays, nobody listens: stale
        let again = bind(&key(&path), true).unwrap();
        let id = set_file(&path, &SocketFile::default()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        drop(again);
        remove_file(&path, id);
        assert!(!path.exists());

        std::fs::write(&path, "data").unwrap();
        let err = bind(&key(&path), true).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn missing_parent_directories_are_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/oxinetd/s.sock");
        let _s = bind(&key(&path), true).unwrap();
        assert!(path.exists());
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
