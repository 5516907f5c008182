//! Socket options of a service's listeners (`backlog`, `reuseport`,
//! `freebind`, `bind_device`, scoped IPv6 addresses, `v6only`,
//! `keepalive`, `nodelay`, `defer_accept`): each seen from outside, in
//! `ss` or with
//! `getsockopt` on the handler's fd 0, and through a reload.

use std::net::SocketAddr;
use std::process::Command;

use crate::harness::{run_ok, talk, Dir, Netns, Server};

/// The handler: SO_KEEPALIVE and TCP_NODELAY of its connection (fd 0).
const PROBE: &str = r#"server = "/usr/bin/python3"
args = ["-c", "import socket; s = socket.socket(fileno=0); print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))"]
user = "nobody""#;

/// The `ss -tlnpe` (or `-ulnpe`) line of the socket listening on `port`,
/// run through `ns` when given.
fn ss_line(ns: Option<&Netns>, udp: bool, port: u16) -> String {
    let flags = if udp { "-ulnpe" } else { "-tlnpe" };
    let mut cmd = match ns {
        Some(ns) => ns.command("ss"),
        None => Command::new("ss"),
    };
    let out = run_ok(cmd.arg(flags));
    let tag = format!(":{port} ");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(&tag)).collect();
    assert_eq!(lines.len(), 1, "one socket on port {port}:\n{out}");
    lines[0].to_owned()
}

/// Columns of an `ss -l` line: state, Recv-Q, Send-Q (the backlog), local.
fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn bind_beside(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

#[test]
fn listener_options_show_in_ss_and_accepted_sockets_inherit_them() {
    crate::require_root!(); // bind_device needs CAP_NET_RAW
    let config = format!(
        r#"
[[service]]
name = "tuned"
listen = ["127.0.0.1:0", "[::]:0"]
backlog = 77
keepalive = true
nodelay = true
reuseport = true
v6only = false
bind_device = "lo"
{PROBE}

[[service]]
name = "plain"
listen = ["127.0.0.1:0", "[::]:0"]
{PROBE}
"#
    );
    let s = Server::start(&config);
    let tuned = s.addrs("tuned");
    let plain = s.addrs("plain");
    let line = ss_line(None, false, tuned[0].port());
    let c = columns(&line);
    assert_eq!(
        (c[2], c[3]),
        ("77", &*format!("127.0.0.1%lo:{}", tuned[0].port())),
        "{line}"
    );
    let line = ss_line(None, false, tuned[1].port());
    assert!(
        line.contains("v6only:0") && columns(&line)[2] == "77",
        "{line}"
    );
    let line = ss_line(None, false, plain[0].port());
    let c = columns(&line);
    assert_eq!(
        (c[2], c[3]),
        ("1024", &*format!("127.0.0.1:{}", plain[0].port())),
        "{line}"
    );
    assert!(ss_line(None, false, plain[1].port()).contains("v6only:1"));

    // Accepted connections inherit keepalive and nodelay from the listener.
    assert_eq!(talk(tuned[0], ""), "1 1\n");
    assert_eq!(talk(plain[0], ""), "0 0\n");
    // v6only = false: the [::] socket takes IPv4 too.
    let mapped: SocketAddr = format!("127.0.0.1:{}", tuned[1].port()).parse().unwrap();
    assert_eq!(talk(mapped, ""), "1 1\n");

    // reuseport: another socket (of the same user) may bind the port.
    let beside = bind_beside(tuned[0]).expect("SO_REUSEPORT lets a second socket bind");
    drop(beside);
    let err = bind_beside(plain[0]).expect_err("no SO_REUSEPORT without reuseport");
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse, "{err}");
}

#[test]
fn a_reload_rebinds_a_listener_whose_options_changed_and_keeps_the_others() {
    let config = |backlog: u32| {
        format!(
            r#"
[[service]]
name = "a"
listen = "127.0.0.1:0"
server = "internal:echo"
backlog = {backlog}

[[service]]
name = "b"
listen = "127.0.0.1:0"
server = "internal:echo"
nodelay = true
"#
        )
    };
    let s = Server::start(&config(50));
    let (a, b) = (s.addr("a"), s.addr("b"));
    assert_eq!(columns(&ss_line(None, false, a.port()))[2], "50");
    let b_inode = ss_line(None, false, b.port());
    // Same options: kept (same socket); other options: bound again.
    let outcome = s.reload(&config(50));
    assert!(outcome.contains("kept=2 "), "{outcome}");
    let outcome = s.reload(&config(60));
    assert!(
        outcome.contains("kept=1 ") && outcome.contains("closed=1"),
        "{outcome}"
    );
    // Port 0 is the same listener for the same service only: the new
    // socket has a new port.
    let a2 = *s.addrs("a").last().unwrap();
    assert_eq!(columns(&ss_line(None, false, a2.port()))[2], "60");
    let inode = |l: &str| {
        l.split_whitespace()
            .find(|w| w.starts_with("ino:"))
            .map(str::to_owned)
    };
    assert_eq!(inode(&ss_line(None, false, b.port())), inode(&b_inode));
    assert_eq!(talk(a2, "again\n"), "again\n");
}

#[test]
fn a_fixed_port_whose_options_change_is_never_without_a_listener() {
    // On a fixed port the new socket is bound beside the old one
    // (SO_REUSEPORT) before the old one closes, as a port moving between
    // 127.0.0.1:P and *:P is.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let config = |nodelay: bool| {
        format!(
            "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:{port}\"\nserver = \"internal:echo\"\nnodelay = {nodelay}\n"
        )
    };
    let s = Server::start(&config(false));
    let before = ss_line(None, false, port);
    let outcome = s.reload(&config(true));
    assert!(
        outcome.contains("bound=1") && outcome.contains("closed=1"),
        "{outcome}"
    );
    assert_eq!(s.count(&["unable to bind"]), 0, "{}", s.log());
    let after = ss_line(None, false, port);
    assert_ne!(before, after, "a new socket");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(talk(addr, "x\n"), "x\n");
}

#[test]
fn freebind_binds_an_address_the_host_does_not_have_yet() {
    crate::require_root!();
    let ns = Netns::new();
    let dir = Dir::new();
    let conf = |freebind: bool| {
        format!(
            "[global]\ncontrol_socket = \"\"\n\n[[service]]\nname = \"floating\"\n\
             listen = \"192.0.2.10:7\"\nserver = \"internal:echo\"\nfreebind = {freebind}\n"
        )
    };
    // Without it: the bind fails, and says why.
    let path = dir.write("without.toml", &conf(false));
    let mut cmd = ns.command(crate::harness::bin());
    cmd.arg("-f").arg(&path).args(["--log", "stderr"]);
    let mut s = Server::launch(dir.clone(), path, cmd);
    s.expect_line(&[
        "service=floating",
        "unable to bind 192.0.2.10:7/tcp",
        "not configured on this host (freebind = true",
    ]);
    assert!(!s.wait_exit().success());
    // With it: bound before the address exists; served once it does.
    let path = dir.write("with.toml", &conf(true));
    let s = ns.serve(dir.clone(), &path, &[]);
    s.expect_line(&["listen service=floating", "addr=192.0.2.10:7"]);
    assert!(ss_line(Some(&ns), false, 7).contains("192.0.2.10:7"));
    run_ok(
        ns.command("ip")
            .args(["addr", "add", "192.0.2.10/32", "dev", "lo"]),
    );
    let echoed = run_ok(ns.command("python3").args([
        "-c",
        "import socket; c = socket.create_connection(('192.0.2.10', 7), 10); \
         c.sendall(b'afloat'); print(c.recv(64).decode())",
    ]));
    assert_eq!(echoed.trim(), "afloat");
}

#[test]
fn a_scoped_link_local_address_binds_on_its_interface() {
    crate::require_root!();
    let ns = Netns::new();
    // A veth pair (this kernel may lack the dummy driver), both ends up.
    run_ok(ns.command("ip").args([
        "link", "add", "oxdummy0", "type", "veth", "peer", "name", "oxdummy1",
    ]));
    run_ok(ns.command("ip").args(["link", "set", "oxdummy1", "up"]));
    run_ok(ns.command("ip").args(["link", "set", "oxdummy0", "up"]));
    run_ok(
        ns.command("ip")
            .args(["addr", "add", "fe80::1/64", "dev", "oxdummy0", "nodad"]),
    );
    // The same address on the other end: only the scope tells them apart.
    run_ok(
        ns.command("ip")
            .args(["addr", "add", "fe80::1/64", "dev", "oxdummy1", "nodad"]),
    );
    let dir = Dir::new();
    let path = dir.write(
        "oxinetd.toml",
        "[global]\ncontrol_socket = \"\"\n\n[[service]]\nname = \"ll\"\n\
         listen = [\"[fe80::1%oxdummy0]:2222\"]\nprotocol = \"udp\"\nserver = \"internal:echo\"\n",
    );
    let s = ns.serve(dir.clone(), &path, &[]);
    s.expect_line(&["listen service=ll", "proto=udp"]);
    let line = ss_line(Some(&ns), true, 2222);
    assert!(line.contains("[fe80::1]%oxdummy0:2222"), "{line}");
    // An echo over the link-local address, from another port.
    let echoed = run_ok(ns.command("python3").args([
        "-c",
        "import socket; i = socket.if_nametoindex('oxdummy0'); \
         c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); c.settimeout(10); \
         c.sendto(b'scoped', ('fe80::1', 2222, 0, i)); print(c.recv(64).decode())",
    ]));
    assert_eq!(echoed.trim(), "scoped");
}

#[test]
fn unknown_interfaces_and_misplaced_options_are_errors_at_their_line() {
    let dir = Dir::new();
    let path = dir.write(
        "bad.toml",
        r#"[[service]]
name = "a"
listen = ["[fe80::1%nosuchif9]:22"]
server = "internal:echo"

[[service]]
name = "b"
listen = "127.0.0.1:2001"
server = "internal:echo"
bind_device = "nosuchif9"

[[service]]
name = "c"
listen = "127.0.0.1:2002"
protocol = "udp"
server = "internal:echo"
backlog = 10
nodelay = true
defer_accept = 1

[[service]]
name = "d"
listen = "*:2003"
server = "internal:echo"
v6only = true
"#,
    );
    let out = Command::new(crate::harness::bin())
        .args(["check", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let at = |line: u32, text: &str| {
        let want = format!("bad.toml:{line}:");
        assert!(
            err.lines().any(|l| l.contains(&want) && l.contains(text)),
            "{want} {text}:\n{err}"
        );
    };
    at(3, "no network interface \"nosuchif9\"");
    at(10, "bind_device \"nosuchif9\": no such network interface");
    at(17, "backlog: only for stream and seqpacket sockets");
    at(18, "nodelay: only for TCP");
    at(19, "defer_accept: only for TCP");
    at(25, "v6only: applies to [IPv6]:PORT listen entries");
}

#[test]
fn a_socket_kept_across_sigusr2_takes_the_options_that_can_still_change() {
    let config = |extra: &str| {
        format!("[[service]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\n{extra}\n{PROBE}\n")
    };
    let s = Server::start(&config("backlog = 50"));
    let addr = s.addr("p");
    let before = ss_line(None, false, addr.port());
    assert_eq!(columns(&before)[2], "50");
    assert_eq!(talk(addr, ""), "0 0\n");
    s.dir
        .write("oxinetd.toml", &config("backlog = 70\nnodelay = true"));
    s.signal(nix::sys::signal::Signal::SIGUSR2);
    let upgrade = s.expect_line(&["upgrade exe="]);
    let at = s.lines().iter().position(|l| l == &upgrade).unwrap();
    s.expect_line_after(at, &[" ready "]);
    s.expect_line_after(at, &["listen service=p ", "inherited_fd="]);
    let after = ss_line(None, false, addr.port());
    let inode = |l: &str| {
        l.split_whitespace()
            .find(|w| w.starts_with("ino:"))
            .map(str::to_owned)
    };
    assert_eq!(inode(&after), inode(&before), "the same socket");
    assert_eq!(columns(&after)[2], "70");
    assert_eq!(talk(addr, ""), "0 1\n");
}

/// The server side of the connections to `port` still in SYN-RECV: the
/// client's ports (`ss` lists a deferred connection there until its data
/// comes).
fn syn_recv_peers(port: u16) -> Vec<u16> {
    let out = run_ok(Command::new("ss").args([
        "-Htn",
        "state",
        "syn-recv",
        &format!("( sport = :{port} )"),
    ]));
    out.lines()
        .filter_map(|l| {
            l.split_whitespace()
                .nth(3)?
                .rsplit(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[test]
fn defer_accept_hands_a_connection_over_once_its_data_has_come() {
    use std::io::{Read, Write};
    let config = format!(
        "[[service]]\nname = \"deferred\"\nlisten = \"127.0.0.1:0\"\ndefer_accept = 60\n\
         server = \"/bin/cat\"\nuser = \"nobody\"\n\n\
         [[service]]\nname = \"plain\"\nlisten = \"127.0.0.1:0\"\n{PROBE}\n"
    );
    let s = Server::start(&config);
    let (deferred, plain) = (s.addr("deferred"), s.addr("plain"));

    // Connected (the client's side is established) but silent: the kernel
    // keeps the deferred one to itself, and oxinetd starts no handler.
    let mut silent = std::net::TcpStream::connect(deferred).expect("connect");
    let port = silent.local_addr().expect("address").port();
    assert!(
        crate::harness::eventually(|| syn_recv_peers(deferred.port()) == [port]),
        "{:?}",
        syn_recv_peers(deferred.port())
    );
    let other = std::net::TcpStream::connect(plain).expect("connect");
    let mut buf = String::new();
    (&other)
        .read_to_string(&mut buf)
        .expect("the plain one is served");
    assert_eq!(buf, "0 0\n");
    assert_eq!(syn_recv_peers(deferred.port()), [port], "still held");
    assert_eq!(s.count(&["start service=deferred"]), 0, "{}", s.log());

    // Its first byte makes it a connection like any other.
    silent.write_all(b"first\n").expect("write");
    silent
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    silent
        .set_read_timeout(Some(crate::harness::PATIENCE))
        .expect("timeout");
    let mut out = String::new();
    silent.read_to_string(&mut out).expect("read");
    assert_eq!(out, "first\n");
    assert!(syn_recv_peers(deferred.port()).is_empty());
}
