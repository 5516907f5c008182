//! `proxy_protocol` behind a real HAProxy (Debian's, TCP mode, with
//! `send-proxy-v2` and `send-proxy`): the client (on 127.0.0.2) is the
//! peer for the handler, `only_from` and the logs; HAProxy (on 127.0.0.1)
//! is `PROXY_PEER` and `via=`. Headers from outside `proxy_from`,
//! malformed, cut short or late close only their own connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};

use crate::harness::{
    connect_from, eventually, listening_pids, need, talk_from, user_line, Dir, Server, PATIENCE,
};

/// A handler that reads one line and prints it with its environment's
/// connection variables, sorted.
const ENV_ARGS: &str = r#"args = ["-c", 'read -r line; echo "got=$line"; env | grep -E "^(TCPREMOTEIP|TCPLOCALIP|TCPLOCALPORT|REMOTE_ADDR|PROXY_PEER|PROXY_PEER_PORT|PROXY_AUTHORITY)=" | sort']"#;

fn env_service(name: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n{ENV_ARGS}\n\
         proxy_protocol = true\nproxy_from = \"127.0.0.1\"\n{}\n{extra}\n",
        user_line()
    )
}

/// HAProxy in the foreground (`-db`), a child of the test, killed by its
/// pid when dropped.
pub(crate) struct Haproxy {
    child: Child,
    /// Its frontends, one per backend given.
    pub(crate) fronts: Vec<SocketAddr>,
    dir: Dir,
}

impl Haproxy {
    /// One frontend on 127.0.0.1 per `(server, option)`, each relaying to
    /// its server with that option (`send-proxy-v2`, `send-proxy`).
    pub(crate) fn start(dir: &Dir, backends: &[(SocketAddr, &str)]) -> Haproxy {
        let bin = need("haproxy", "haproxy");
        let mut cfg = String::from(
            "global\n    maxconn 200\ndefaults\n    mode tcp\n    timeout connect 5s\n    \
             timeout client 30s\n    timeout server 30s\n",
        );
        let mut fronts = Vec::new();
        for (i, (server, option)) in backends.iter().enumerate() {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let front: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
            cfg.push_str(&format!(
                "frontend f{i}\n    bind {front}\n    default_backend b{i}\n\
                 backend b{i}\n    server s{i} {server} {option}\n"
            ));
            fronts.push(front);
        }
        let path = dir.write("haproxy.cfg", &cfg);
        let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
        let child = Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        let h = Haproxy {
            child,
            fronts,
            dir: dir.clone(),
        };
        let up = eventually(|| h.fronts.iter().all(|f| !listening_pids(*f).is_empty()));
        assert!(up, "haproxy did not listen:\n{}", h.log());
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `NAME=value` lines of a handler's answer.
fn var<'a>(out: &'a str, name: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// A v2 header: PROXY over TCP4 from `src` to `dst`, then `tlvs`.
fn v2(src: SocketAddr, dst: SocketAddr, tlvs: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else {
        panic!("IPv4 only");
    };
    let mut body = Vec::new();
    body.extend_from_slice(&s.ip().octets());
    body.extend_from_slice(&d.ip().octets());
    body.extend_from_slice(&s.port().to_be_bytes());
    body.extend_from_slice(&d.port().to_be_bytes());
    body.extend_from_slice(tlvs);
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// Send `bytes` from `from`, half-close, read all.
fn send_from(from: &str, addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = connect_from(from, addr).expect("connect");
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn haproxy_v2_client_address_and_only_from() {
    let dir = Dir::new();
    let s = Server::start_in(
        dir.clone(),
        &env_service("env", "only_from = \"127.0.0.2\""),
        &[],
        |_| {},
    );
    let addr = s.addr("env");
    let h = Haproxy::start(&dir, &[(addr, "send-proxy-v2")]);
    let front = h.fronts[0];

    let out = talk_from("127.0.0.2", front, "hello\n");
    assert_eq!(var(&out, "got"), Some("hello"), "{out}\n{}", s.log());
    assert_eq!(var(&out, "TCPREMOTEIP"), Some("127.0.0.2"), "{out}");
    assert_eq!(var(&out, "REMOTE_ADDR"), Some("127.0.0.2"), "{out}");
    assert_eq!(var(&out, "PROXY_PEER"), Some("127.0.0.1"), "{out}");
    // The address the client connected to: HAProxy's frontend.
    let port = front.port().to_string();
    assert_eq!(var(&out, "TCPLOCALPORT"), Some(port.as_str()), "{out}");
    assert_eq!(var(&out, "PROXY_AUTHORITY"), None, "{out}");
    s.expect_line(&["start service=env", "peer=127.0.0.2:", "via=127.0.0.1:"]);

    // only_from judges the client, not HAProxy (which is 127.0.0.1).
    assert_eq!(talk_from("127.0.0.3", front, "x\n"), "");
    s.expect_line(&[
        "refuse service=env",
        "peer=127.0.0.3:",
        "via=127.0.0.1:",
        "reason=only_from",
    ]);
    assert_eq!(s.count(&["start service=env"]), 1);
}

#[test]
fn haproxy_v1_and_an_internal_service() {
    let dir = Dir::new();
    let config = format!(
        "{}[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n\
         proxy_protocol = true\nproxy_from = [\"127.0.0.0/30\"]\nlog_on_success = [\"HOST\", \"DURATION\"]\n",
        env_service("env", "")
    );
    let s = Server::start_in(dir.clone(), &config, &[], |_| {});
    let h = Haproxy::start(
        &dir,
        &[
            (s.addr("env"), "send-proxy"),
            (s.addr("echo"), "send-proxy-v2"),
        ],
    );
    let out = talk_from("127.0.0.2", h.fronts[0], "v1\n");
    assert_eq!(var(&out, "got"), Some("v1"), "{out}\n{}", s.log());
    assert_eq!(var(&out, "TCPREMOTEIP"), Some("127.0.0.2"), "{out}");
    assert_eq!(var(&out, "PROXY_PEER"), Some("127.0.0.1"), "{out}");

    assert_eq!(talk_from("127.0.0.2", h.fronts[1], "echoed\n"), "echoed\n");
    s.expect_line(&["done service=echo", "peer=127.0.0.2:", "via=127.0.0.1:"]);
}

#[test]
fn header_from_outside_proxy_from_is_refused() {
    let s = Server::start(&env_service("env", ""));
    let addr = s.addr("env");
    // A well-formed header, but from 127.0.0.2: not a trusted balancer.
    let header = v2(
        "192.0.2.7:4000".parse().expect("address"),
        "127.0.0.1:80".parse().expect("address"),
        &[],
    );
    let mut input = header.clone();
    input.extend_from_slice(b"sneaky\n");
    assert_eq!(send_from("127.0.0.2", addr, &input), "");
    s.expect_line(&["refuse service=env", "peer=127.0.0.2:", "reason=proxy_from"]);
    // The same header from the balancer's address is served, with the
    // authority TLV, and the client's bytes after the header intact.
    let mut input = v2(
        "192.0.2.7:4000".parse().expect("address"),
        "127.0.0.1:80".parse().expect("address"),
        b"\x02\x00\x0bexample.org",
    );
    input.extend_from_slice(b"fine\n");
    let out = send_from("127.0.0.1", addr, &input);
    assert_eq!(var(&out, "got"), Some("fine"), "{out}\n{}", s.log());
    assert_eq!(var(&out, "TCPREMOTEIP"), Some("192.0.2.7"), "{out}");
    assert_eq!(var(&out, "PROXY_AUTHORITY"), Some("example.org"), "{out}");
    // A LOCAL header (a health check) is served as from the balancer.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"check\n");
    let out = send_from("127.0.0.1", addr, &local);
    assert_eq!(var(&out, "got"), Some("check"), "{out}");
    assert_eq!(var(&out, "TCPREMOTEIP"), Some("127.0.0.1"), "{out}");
    assert!(
        eventually(|| s.count(&["start service=env"]) == 2),
        "{}",
        s.log()
    );
}

#[test]
fn bad_and_slow_headers_close_only_their_connection() {
    let dir = Dir::new();
    let s = Server::start_in(
        dir.clone(),
        &env_service("env", "proxy_timeout = 1"),
        &[],
        |_| {},
    );
    let addr = s.addr("env");
    let h = Haproxy::start(&dir, &[(addr, "send-proxy-v2")]);

    // Slow: connected, nothing sent; and a header cut in the middle.
    let slow = connect_from("127.0.0.1", addr).expect("connect");
    let mut partial = connect_from("127.0.0.1", addr).expect("connect");
    let header = v2(
        "192.0.2.7:4000".parse().expect("address"),
        "127.0.0.1:80".parse().expect("address"),
        &[],
    );
    partial.write_all(&header[..20]).expect("write");
    // Malformed: closed at once, not at the deadline.
    assert_eq!(send_from("127.0.0.1", addr, b"GET / HTTP/1.0\r\n\r\n"), "");
    s.expect_line(&[
        "refuse service=env",
        "peer=127.0.0.1:",
        "reason=proxy_header what=signature",
    ]);
    let mut bad_family = b"\r\n\r\n\0\r\nQUIT\n\x21\x31\x00\xd8".to_vec();
    bad_family.resize(16 + 216, 0);
    assert_eq!(send_from("127.0.0.1", addr, &bad_family), "");
    s.expect_line(&["reason=proxy_header what=family"]);
    // Cut short and closed.
    assert_eq!(send_from("127.0.0.1", addr, &header[..10]), "");
    s.expect_line(&["reason=proxy_header what=closed"]);

    // Meanwhile a client through HAProxy is served.
    let out = talk_from("127.0.0.2", h.fronts[0], "parallel\n");
    assert_eq!(var(&out, "got"), Some("parallel"), "{out}\n{}", s.log());
    assert_eq!(var(&out, "TCPREMOTEIP"), Some("127.0.0.2"), "{out}");

    // The slow ones are closed at their deadline, each logged.
    for mut conn in [slow, partial] {
        conn.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut buf = [0u8; 16];
        let n = conn.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "closed without an answer");
    }
    assert!(eventually(|| s
        .count(&["reason=proxy_header what=timeout"])
        == 2));
    assert_eq!(s.count(&["start service=env"]), 1);
    // And the service still serves.
    let out = talk_from("127.0.0.2", h.fronts[0], "after\n");
    assert_eq!(var(&out, "got"), Some("after"), "{out}");
}

#[test]
fn proxy_keys_are_checked() {
    let dir = Dir::new();
    let cases = [
        ("proxy_protocol = true\n", "needs proxy_from"),
        (
            "proxy_protocol = true\nproxy_from = \"127.0.0.1\"\nwait = true\n",
            "not for a wait service",
        ),
        (
            "proxy_protocol = true\nproxy_from = \"127.0.0.1\"\nsocket = \"dgram\"\n",
            "only for stream services",
        ),
        (
            "proxy_from = \"127.0.0.1\"\n",
            "only with proxy_protocol = true",
        ),
        (
            "proxy_protocol = true\nproxy_from = \"10.0.0.1/8\"\n",
            "host bits set",
        ),
    ];
    for (keys, message) in cases {
        let config = format!(
            "[[service]]\nname = \"p\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\n{keys}"
        );
        let path = dir.write("bad.toml", &config);
        let out = Command::new(crate::harness::bin())
            .arg("check")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("oxinetd check");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{keys}: accepted");
        assert!(err.contains(message), "{keys}: {err}");
        assert!(
            err.contains("bad.toml:5:") || err.contains("bad.toml:6:"),
            "{keys}: no FILE:LINE:COL: {err}"
        );
    }
}

/// Found while building tests/fleet, reading the upgrade path: a connection
/// accepted whose PROXY header had not come yet lived only in the old
/// image's memory, and SIGUSR2's exec closed it (the client got a reset
/// for a request it had every right to make). The upgrade now waits for
/// such connections (their header, or `proxy_timeout`), taking no new
/// ones meanwhile: those wait in the kernel's queue, carried over.
#[test]
fn upgrade_keeps_a_connection_waiting_for_its_proxy_header() {
    // Without defer_accept, so that oxinetd takes the silent connection
    // at once (with it, the kernel would hold it for a second).
    let s = Server::start(&env_service("env", "defer_accept = 0"));
    let addr = s.addr("env");
    let mut waiting = connect_from("127.0.0.1", addr).expect("connect");
    // Accepted by oxinetd, which now waits for the header.
    assert!(eventually(|| crate::harness::accept_queue(addr) == 0));
    s.signal(nix::sys::signal::Signal::SIGUSR2);
    let line = s.expect_line(&["upgrade "]);
    assert!(line.contains("upgrade deferred"), "{line}\n{}", s.log());
    // A client arriving meanwhile waits in the kernel's queue.
    let mut queued = connect_from("127.0.0.1", addr).expect("connect");
    let header = v2(
        "192.0.2.7:4000".parse().expect("address"),
        "127.0.0.1:80".parse().expect("address"),
        &[],
    );
    for (conn, text) in [(&mut waiting, "waited"), (&mut queued, "queued")] {
        let mut bytes = header.clone();
        bytes.extend_from_slice(format!("{text}\n").as_bytes());
        conn.write_all(&bytes).expect("write");
        conn.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut out = String::new();
        let _ = conn.read_to_string(&mut out);
        assert_eq!(var(&out, "got"), Some(text), "{out}\n{}", s.log());
        assert_eq!(var(&out, "TCPREMOTEIP"), Some("192.0.2.7"), "{out}");
    }
    let upgraded = s.expect_line(&["upgrade exe="]);
    assert!(upgraded.contains("listeners=1"), "{upgraded}");
    let out = send_from("127.0.0.1", addr, &[header, b"after\n".to_vec()].concat());
    assert_eq!(var(&out, "got"), Some("after"), "{out}\n{}", s.log());
}

/// A proxy_protocol service's listener defers accepting (TCP_DEFER_ACCEPT,
/// 1 s) unless the config says otherwise, and `check --list` shows it.
#[test]
fn a_proxy_service_defers_accepting_unless_told_otherwise() {
    let dir = Dir::new();
    let config = "[[service]]\nname = \"p\"\nlisten = \"127.0.0.1:2001\"\nserver = \"/bin/cat\"\nuser = \"nobody\"\n\
                  proxy_protocol = true\nproxy_from = \"127.0.0.1\"\n{}\n";
    for (extra, shown) in [
        ("", Some("defer_accept = 1")),
        ("defer_accept = 0", None),
        ("defer_accept = 2.5", Some("defer_accept = 3")),
    ] {
        let path = dir.write("p.toml", &config.replace("{}", extra));
        let out = Command::new(crate::harness::bin())
            .args(["check", "--list", "-f"])
            .arg(&path)
            .output()
            .expect("oxinetd check --list");
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{extra}: {err}");
        let line = text.lines().find(|l| l.starts_with("defer_accept"));
        assert_eq!(line, shown, "{extra}:\n{text}");
    }
}
