//! UNIX-domain services: stream nowait and wait, datagram wait; the socket
//! file's owner and mode; stale files; reload and shutdown remove only the
//! files oxinetd bound.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::harness::{eventually, field, need, talk_unix, Dir, Server, PATIENCE};

/// A handler that reports what it was told about the connection.
const ENV_HANDLER: &str = r#"read -r line; printf '%s uid=%s proto=%s path=%s peer_uid=%s peer_pid=%s\n' "$line" "$(id -u)" "$PROTO" "$UNIXLOCALPATH" "$UNIXREMOTEEUID" "$UNIXREMOTEPID""#;

/// A stream service of `ENV_HANDLER` (written into the config's directory
/// as `env.sh` by `Dir::write`'s caller, see `with_handler`).
fn stream_service(name: &str, path: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = [\"{path}\"]\nserver = \"/bin/sh\"\n\
         args = [\"{{dir}}/env.sh\"]\nuser = \"nobody\"\n{extra}\n"
    )
}

fn with_handler() -> Dir {
    let dir = Dir::new();
    dir.write("env.sh", ENV_HANDLER);
    dir
}

/// socat as `nobody`: what a local unprivileged client gets.
fn socat_as_nobody(path: &Path, input: &str) -> Result<String, String> {
    let mut child = Command::new(need("setpriv", "util-linux"))
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(need("socat", "socat"))
        .args(["-t", "2", "-T", "10", "-"])
        .arg(format!("UNIX-CONNECT:{}", path.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // socat refused a connection may exit before reading its input: a
    // broken pipe here is that refusal, which the exit status reports.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

#[test]
fn stream_nowait_tells_the_handler_who_connected() {
    crate::require_root!();
    let dir = with_handler();
    let path = dir.path().join("env.sock");
    let config = stream_service("env", &path.display().to_string(), "");
    let s = Server::start_in(dir, &config, &[], |_| {});
    let listen = s.expect_line(&["listen service=env", "proto=unix"]);
    assert_eq!(field(&listen, "addr"), Some(path.to_str().unwrap()));

    let reply = talk_unix(&path, "hello\n");
    let me = std::process::id();
    assert_eq!(
        reply,
        format!(
            "hello uid=65534 proto=UNIX path={} peer_uid=0 peer_pid={me}\n",
            path.display()
        )
    );
    s.expect_line(&["start service=env", "peer_uid=0", &format!("peer_pid={me}")]);
    s.expect_line(&["exit service=env", "status=0"]);
    // Another client, a real one.
    let reply = socat_as_nobody(&path, "again\n").unwrap();
    assert!(reply.starts_with("again uid=65534 proto=UNIX"), "{reply}");
    assert!(reply.contains("peer_uid=65534"), "{reply}");
}

#[test]
fn the_socket_file_owner_and_mode_decide_who_may_connect() {
    crate::require_root!();
    let dir = with_handler();
    let path = dir.path().join("private.sock");
    let p = path.display().to_string();
    let closed = stream_service("private", &p, "socket_mode = \"0600\"");
    let s = Server::start_in(dir, &closed, &[], |_| {});
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    let err = socat_as_nobody(&path, "x\n").unwrap_err();
    assert!(err.contains("Permission denied"), "{err}");
    assert!(talk_unix(&path, "root\n").starts_with("root uid=65534"));

    // A reload gives the same socket to nobody, without rebinding it.
    let before = inode(&path);
    let open = stream_service(
        "private",
        &p,
        "socket_mode = 0o600\nsocket_owner = \"nobody:nogroup\"",
    );
    let outcome = s.reload(&open);
    assert!(outcome.contains("kept=1"), "{outcome}");
    assert_eq!(inode(&path), before);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    let reply = socat_as_nobody(&path, "now\n").unwrap();
    assert!(reply.starts_with("now uid=65534"), "{reply}");
}

#[test]
fn a_stale_socket_is_replaced_and_other_files_are_left_alone() {
    crate::require_root!();
    let dir = with_handler();
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap()); // the file stays; nobody listens
    let busy = dir.path().join("busy.sock");
    let other = UnixListener::bind(&busy).unwrap(); // a live socket of someone else
    let file = dir.path().join("data.sock");
    std::fs::write(&file, "not a socket").unwrap();
    let config = [
        stream_service("stale", &stale.display().to_string(), ""),
        stream_service("busy", &busy.display().to_string(), ""),
        stream_service("file", &file.display().to_string(), ""),
    ]
    .concat();
    let s = Server::start_in(dir, &config, &[], |_| {});
    s.expect_line(&["error service=busy", "in use by another process"]);
    s.expect_line(&["error service=file", "exists and is not a socket"]);
    assert!(talk_unix(&stale, "fresh\n").starts_with("fresh uid=65534"));
    // The other process still has its socket, the file its content.
    let _client = UnixStream::connect(&busy).unwrap();
    other.set_nonblocking(true).unwrap();
    assert!(other.accept().is_ok());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a socket");
}

#[test]
fn reload_and_shutdown_remove_the_files_oxinetd_bound() {
    crate::require_root!();
    let dir = with_handler();
    let a = dir.path().join("a.sock");
    let b = dir.path().join("b.sock");
    let sa = stream_service("a", &a.display().to_string(), "");
    let sb = stream_service("b", &b.display().to_string(), "");
    let mut s = Server::start_in(dir, &format!("{sa}{sb}"), &[], |_| {});
    let kept = inode(&a);

    let outcome = s.reload(&sa);
    assert!(
        outcome.contains("kept=1") && outcome.contains("closed=1"),
        "{outcome}"
    );
    assert!(!b.exists(), "b.sock outlived its service");
    assert_eq!(inode(&a), kept);
    assert!(talk_unix(&a, "still\n").starts_with("still uid=65534"));

    s.signal(Signal::SIGTERM);
    assert!(s.wait_exit().success());
    assert!(!a.exists(), "a.sock outlived oxinetd");
}

#[test]
fn stream_wait_hands_the_listening_socket_over() {
    crate::require_root!();
    let dir = Dir::new();
    let path = dir.path().join("activated.sock");
    let config = format!(
        "[[service]]\nname = \"activated\"\nlisten = [\"{}\"]\nwait = true\n\
         server = \"/usr/bin/python3\"\nargs = [\"{}/activation.py\"]\nuser = \"nobody\"\n",
        path.display(),
        dir.path().display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    // The handler answers without reading.
    let reply = talk_unix(&path, "");
    assert_eq!(
        reply,
        "fds=0,1,2,3 LISTEN_FDS=1 LISTEN_PID_OK=True LISTEN_FDNAMES=activated\n"
    );
    s.expect_line(&["exit service=activated", "status=0"]);
}

#[test]
fn datagram_wait_gives_the_handler_the_socket() {
    crate::require_root!();
    let dir = Dir::new();
    let path = dir.path().join("log.sock");
    let out = dir.path().join("received");
    // dd reads one datagram and exits; the next one starts a new handler.
    let config = format!(
        "[[service]]\nname = \"sink\"\nlisten = [\"{}\"]\nprotocol = \"unix\"\nsocket = \"dgram\"\n\
         wait = true\nserver = \"/bin/sh\"\nargs = [\"-c\", \"dd bs=65536 count=1 status=none >> {}\"]\n\
         user = \"root\"\n",
        path.display(),
        out.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    s.expect_line(&["listen service=sink", "proto=unix-dgram"]);
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"first\n", &path).unwrap();
    assert!(eventually(
        || std::fs::read_to_string(&out).is_ok_and(|t| t == "first\n")
    ));
    s.expect_line(&["exit service=sink", "status=0"]);
    client.send_to(b"second\n", &path).unwrap();
    assert!(eventually(
        || std::fs::read_to_string(&out).is_ok_and(|t| t == "first\nsecond\n")
    ));
}

#[test]
fn seqpacket_keeps_message_boundaries() {
    crate::require_root!();
    let dir = Dir::new();
    let path = dir.path().join("packets.sock");
    let config = format!(
        "[[service]]\nname = \"packets\"\nlisten = [\"{}\"]\nsocket = \"seqpacket\"\n\
         server = \"/bin/cat\"\nuser = \"nobody\"\n",
        path.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    s.expect_line(&["listen service=packets", "proto=unix-seqpacket"]);
    let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
    sock.connect(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    // Both are queued before cat reads: each read still gets one message,
    // and each write comes back as one.
    sock.send(b"first").unwrap();
    sock.send(b"second").unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut buf = [0u8; 64];
        let n = (&sock).read(&mut buf).unwrap();
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert_eq!(got, ["first", "second"]);
}
