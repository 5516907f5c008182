//! Binding listening sockets: TCP and UDP over IPv4 and IPv6, and
//! UNIX-domain stream and datagram sockets.
//!
//! `*:PORT` is one dual-stack IPv6 socket (`IPV6_V6ONLY` off), falling back
//! to IPv4 when the host has no IPv6; peers then show as IPv4-mapped
//! addresses, which `spawn::unmap` turns back into IPv4.
//!
//! A service's socket options (`SockOpts`: backlog, reuseport, freebind,
//! bind_device, v6only, keepalive, nodelay, defer_accept) are set at bind; those that
//! can still change are set on a socket given at start too
//! (`adjust_given`). A UNIX-domain path: a stale file is replaced, the
//! owner and mode set, the file removed on close if it is still ours (its
//! directories are `sockdir`'s). A listener is blocking or not as its
//! service's mode needs.

use std::ffi::OsStr;
use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmodat, fstatat, umask, FchmodatFlags, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};

use crate::config::{BindAddr, ListenKey, SocketFile, SocketKind};
use crate::sockdir;

/// Pending connections the kernel holds while a service is at its limit.
pub const BACKLOG: i32 = 1024;

/// Bind and (for TCP) listen on `key`. The socket is close-on-exec, and
/// non-blocking from its creation when `nonblocking` (no fcntl per socket:
/// a thousand services bind in a thousand fewer round trips). A UNIX-domain
/// socket's file gets `file`'s owner and mode; its identity is returned.
pub fn bind(
    key: &ListenKey,
    nonblocking: bool,
    file: &SocketFile,
) -> io::Result<(Socket, Option<FileId>)> {
    bind_with(key, nonblocking, file, false)
}

/// Like `bind`, with `SO_REUSEPORT` set (TCP over IP): on a reload, the
/// socket replacing one on the same port (`127.0.0.1:P` for `*:P`, or the
/// other way round) is bound while the old one, given `SO_REUSEPORT` too
/// by `share_port`, still listens. `share_port(.., false)` ends the sharing
/// once the old one is closed.
pub fn bind_alongside(
    key: &ListenKey,
    nonblocking: bool,
    file: &SocketFile,
) -> io::Result<(Socket, Option<FileId>)> {
    bind_with(key, nonblocking, file, true)
}

/// Let another socket of ours bind this one's port (`SO_REUSEPORT`), or
/// stop letting it.
pub fn share_port(s: &Socket, on: bool) -> io::Result<()> {
    s.set_reuse_port(on)
}

fn bind_with(
    key: &ListenKey,
    nonblocking: bool,
    file: &SocketFile,
    share: bool,
) -> io::Result<(Socket, Option<FileId>)> {
    let (ty, proto) = match key.kind {
        SocketKind::Stream => (Type::STREAM, SockProto::TCP),
        SocketKind::Dgram => (Type::DGRAM, SockProto::UDP),
        // UNIX-domain only (the config refuses it over IP).
        SocketKind::Seqpacket => (Type::SEQPACKET, SockProto::TCP),
    };
    let ty = if nonblocking { ty.nonblocking() } else { ty };
    let mut id = None;
    let opts = &key.opts;
    let socket = match key.addr {
        BindAddr::Unix(ref path) => {
            let s = Socket::new(Domain::UNIX, ty, None)?;
            id = Some(bind_unix(&s, path, ty, file)?);
            s
        }
        BindAddr::Ip(addr) => {
            let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
            if addr.is_ipv6() {
                s.set_only_v6(opts.v6only.unwrap_or(true))?;
            }
            prepare(&s, key, share, addr.is_ipv6())?;
            s.bind(&addr.into())
                .map_err(|e| not_here(e, opts.freebind))?;
            s
        }
        BindAddr::Any(port) => match Socket::new(Domain::IPV6, ty, Some(proto)) {
            Ok(s) => {
                s.set_only_v6(false)?;
                prepare(&s, key, share, true)?;
                s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
                s
            }
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
                prepare(&s, key, share, false)?;
                s.bind(&SocketAddr::new([0, 0, 0, 0].into(), port).into())?;
                s
            }
            Err(e) => return Err(e),
        },
    };
    if key.kind.is_connected() {
        if let Err(e) = socket.listen(opts.backlog()) {
            if let (BindAddr::Unix(path), Some(id)) = (&key.addr, id) {
                remove_file(path, id);
            }
            return Err(e);
        }
    }
    Ok((socket, id))
}

/// The options of `key` that a socket bound already can still take, for a
/// socket given at start (socket activation, the fd store, a re-exec):
/// `reuseport`, `bind_device`, `keepalive`, `nodelay`, `defer_accept`,
/// and `backlog` (a
/// second `listen(2)` sets it). Only those set: a giver's own settings
/// stay. `v6only` and `freebind` are the socket's as it was bound.
pub fn adjust_given(s: &Socket, key: &ListenKey) -> io::Result<()> {
    let opts = &key.opts;
    if matches!(key.addr, BindAddr::Unix(_)) {
        if opts.backlog.is_some() && key.kind.is_connected() {
            s.listen(opts.backlog())?;
        }
        return Ok(());
    }
    if opts.reuseport {
        s.set_reuse_port(true)?;
    }
    set_common(s, key)?;
    if opts.backlog.is_some() && key.kind.is_connected() {
        s.listen(opts.backlog())?;
    }
    Ok(())
}

/// What `prepare` and `adjust_given` both set: the interface, the
/// options accepted sockets inherit from their listener (Linux copies
/// `SO_KEEPALIVE` and `TCP_NODELAY` into each one `accept` returns), and
/// `TCP_DEFER_ACCEPT`.
fn set_common(s: &Socket, key: &ListenKey) -> io::Result<()> {
    let opts = &key.opts;
    if let Some(dev) = &opts.bind_device {
        s.bind_device(Some(dev.as_bytes()))
            .map_err(|e| with_context(e, &format!("bind_device {dev}")))?;
    }
    if key.kind.is_connected() {
        if opts.keepalive {
            s.set_keepalive(true)?;
        }
        if opts.nodelay {
            s.set_tcp_nodelay(true)?;
        }
        if opts.defer_accept > 0 {
            crate::sys::socket::defer_accept(s.as_fd(), opts.defer_accept)?;
        }
    }
    Ok(())
}

/// A bind to an address this host does not have says what would bind it.
fn not_here(e: io::Error, freebind: bool) -> io::Error {
    if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) && !freebind {
        let why = "the address is not configured on this host \
                   (freebind = true binds it before it is, e.g. a floating address)";
        return with_context(e, why);
    }
    e
}

/// `e` with what was being done, keeping its kind (`AddrInUse` decides
/// retries on reload).
fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// Bind `s` to `path`, replacing a socket file left behind by a process
/// that is gone (nobody accepts on it), never a live socket or another
/// kind of file, and give the file `file`'s owner and mode. Missing parent
/// directories are made (0755), as systemd does for socket units: /run is
/// empty after a boot.
///
/// Every directory on the path is checked first (`sockdir`): nobody but
/// root can change what the path names, so the file bound is the one
/// changed, through the directory's descriptor, never following a link.
fn bind_unix(s: &Socket, path: &Path, ty: Type, file: &SocketFile) -> io::Result<FileId> {
    let (dir, name) = sockdir::open_parent(path, true)?;
    let addr = SockAddr::unix(path)?;
    match bind_private(s, &addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            if !is_socket(&fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?) {
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
            unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir)?;
            bind_private(s, &addr)?;
        }
        other => other?,
    }
    let st = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let id = (st.st_dev, st.st_ino);
    if let Err(e) = own_file(&dir, name, file) {
        let _ = unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir);
        return Err(e);
    }
    Ok(id)
}

/// Bind with umask 0177: the file is root's and 0600 until `own_file`
/// gives it its owner and mode (the supervisor is single-threaded).
fn bind_private(s: &Socket, addr: &SockAddr) -> io::Result<()> {
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = s.bind(addr);
    umask(old);
    bound
}

fn is_socket(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFSOCK.bits()
}

/// Owner, then mode, of the socket `name` in `dir`, a directory only root
/// can write (checked by `sockdir`): nothing can be swapped in meanwhile.
fn own_file(dir: &OwnedFd, name: &OsStr, file: &SocketFile) -> io::Result<()> {
    if let Some((uid, gid)) = file.owner {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    fchmodat(
        dir,
        name,
        Mode::from_bits_truncate(file.mode),
        FchmodatFlags::FollowSymlink,
    )?;
    Ok(())
}

/// Identity of a socket file (device, inode), to remove it on close only
/// if it is still the one this process bound.
pub type FileId = (u64, u64);

/// Give the socket file this process bound at `path` (`id`) a new owner
/// and mode (a reload), if it is still that file and its directories still
/// pass `sockdir`'s check; never anything else found at the path.
pub fn update_file(path: &Path, id: FileId, file: &SocketFile) -> io::Result<()> {
    let (dir, name) = sockdir::open_parent(path, false)?;
    let st = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    if !is_socket(&st) || (st.st_dev, st.st_ino) != id {
        return Err(io::Error::other(format!(
            "{} is no longer the socket oxinetd bound",
            path.display()
        )));
    }
    own_file(&dir, name, file)
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
    let Ok((dir, name)) = sockdir::open_parent(path, false) else {
        return;
    };
    let ours = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| is_socket(&st) && (st.st_dev, st.st_ino) == id);
    if ours {
        let _ = unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir);
    }
}

/// Options set between creating an IP socket and binding it.
fn prepare(s: &Socket, key: &ListenKey, share: bool, v6: bool) -> io::Result<()> {
    let opts = &key.opts;
    if key.kind.is_connected() {
        s.set_reuse_address(true)?;
    }
    if opts.reuseport || (share && key.kind.is_connected()) {
        s.set_reuse_port(true)?;
    }
    if opts.freebind {
        if v6 {
            s.set_freebind_v6(true)?;
        } else {
            s.set_freebind_v4(true)?;
        }
    }
    set_common(s, key)
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
            kind: SocketKind::Stream,
            opts: Default::default(),
        }
    }

    #[test]
    fn a_stale_socket_is_replaced_a_live_one_and_a_file_are_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let file = SocketFile::default();
        let live = bind(&key(&path), true, &file).unwrap();
        let err = bind(&key(&path), true, &file).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        drop(live); // the file stays, nobody listens: stale
                    // Other tests in this process fork; a child between fork and exec
                    // still holds `live`, and the socket answers until it execs.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let (again, id) = loop {
            match bind(&key(&path), true, &file) {
                Err(e)
                    if e.kind() == io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        };
        let id = id.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o666);
        let private = SocketFile {
            mode: 0o600,
            owner: None,
        };
        update_file(&path, id, &private).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(again);
        remove_file(&path, id);
        assert!(!path.exists());
        // Not the file bound: left alone.
        assert!(update_file(&path, id, &file).is_err());

        std::fs::write(&path, "data").unwrap();
        let err = bind(&key(&path), true, &file).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn missing_parent_directories_are_made() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/oxinetd/s.sock");
        let _s = bind(&key(&path), true, &SocketFile::default()).unwrap();
        assert!(path.exists());
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
    }
}
