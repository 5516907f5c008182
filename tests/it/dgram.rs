//! UDP services: nowait (a handler per datagram, stdout is the reply) and
//! wait (the handler gets the socket).

use std::net::{SocketAddr, UdpSocket};

use crate::harness::{udp_ask, user_line, Server, PATIENCE};

#[test]
fn nowait_request_on_stdin_reply_from_stdout() {
    let config = format!(
        r#"
[[service]]
name = "u"
listen = "127.0.0.1:0"
socket = "dgram"
server = "/bin/sh"
args = ["-c", "cat; echo; echo \"$PROTO $UDPREMOTEIP:$UDPREMOTEPORT $REMOTE_ADDR\""]
{}
"#,
        user_line()
    );
    let s = Server::start(&config);
    let addr = s.addr("u");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let me = sock.local_addr().unwrap();
    sock.send_to(b"first request", addr).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(from, addr, "the reply comes from the service's address");
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        format!("first request\nUDP {me} 127.0.0.1\n")
    );
    s.expect_line(&["start service=u", &format!("peer={me}")]);
}

#[test]
fn nowait_answers_every_queued_datagram() {
    let config = format!(
        "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nprotocol = \"udp\"\nserver = \"/bin/cat\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    for i in 0..20 {
        sock.send_to(format!("req {i}").as_bytes(), s.addr("u"))
            .unwrap();
    }
    let mut got: Vec<String> = (0..20)
        .map(|_| {
            let mut buf = [0u8; 64];
            let n = sock.recv(&mut buf).expect("a reply for every request");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("req {i}")).collect();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn wait_handler_gets_the_socket_and_queued_datagrams_are_kept() {
    let config = format!(
        "[[service]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nwait = true\nserver = \"udp-once.py\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    // Sent back to back: most arrive while a handler runs. xinetd flushes
    // those; every one must be answered here, each by its own handler.
    for i in 0..10 {
        sock.send_to(format!("d{i}").as_bytes(), s.addr("w"))
            .unwrap();
    }
    let mut got: Vec<String> = (0..10)
        .map(|_| {
            let mut buf = [0u8; 64];
            let n = sock.recv(&mut buf).expect("every datagram answered");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..10).map(|i| format!("got d{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(s.count(&["looping"]), 0);
}

#[test]
fn wait_handler_that_never_reads_pauses_instead_of_looping() {
    let config = format!(
        "[global]\nloop_pause = 1\n[[service]]\nname = \"idle\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nwait = true\nserver = \"/bin/true\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"never read", s.addr("idle")).unwrap();
    let looping = s.expect_line(&["looping service=idle"]);
    assert!(looping.contains("paused_ms=1000"), "{looping}");
    // Exactly LOOP_LIMIT handlers ran before the pause...
    let before: Vec<String> = s.lines();
    let at = before.iter().position(|l| l.contains("looping")).unwrap();
    assert_eq!(
        before[..at]
            .iter()
            .filter(|l| l.contains("start service=idle"))
            .count(),
        3
    );
    // ...and the datagram was kept: after the pause it is tried again.
    let resumed = s.expect_line(&["resume service=idle"]);
    let n = s.lines().iter().position(|l| *l == resumed).unwrap();
    s.expect_line_after(n, &["start service=idle"]);
}

#[test]
fn nowait_over_ipv6() {
    let config = format!(
        "[[service]]\nname = \"u6\"\nlisten = \"[::1]:0\"\nsocket = \"dgram\"\nserver = \"/bin/sh\"\nargs = [\"-c\", \"echo $UDPREMOTEIP\"]\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    assert_eq!(udp_ask(s.addr("u6"), b"x").unwrap(), b"::1\n");
}

/// Send `request` from 127.0.0.1 to `to`: the reply and where it came from.
fn ask_from_loopback(to: SocketAddr, request: &[u8]) -> (String, SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.send_to(request, to).unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = sock.recv_from(&mut buf).expect("a reply");
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

#[test]
fn a_wildcard_listener_answers_from_the_address_the_request_came_to() {
    // Before IP_PKTINFO the replies left from 127.0.0.1 (the address the
    // route to the client picks), and a client that sent to 127.0.0.2
    // would drop them. Each of the three ways a wildcard is bound: the
    // dual-stack `*`, an IPv4-only and an IPv6-only socket.
    let config = format!(
        r#"
[[service]]
name = "echo"
listen = "*:0"
protocol = "udp"
server = "internal:echo"

[[service]]
name = "relay"
listen = "*:0"
protocol = "udp"
server = "/bin/sh"
args = ["-c", "cat; echo \" $UDPLOCALIP\""]
{user}

[[service]]
name = "relay4"
listen = ["0.0.0.0:0", "[::]:0"]
protocol = "udp"
server = "/bin/cat"
{user}
"#,
        user = user_line()
    );
    let s = Server::start(&config);
    let on = |service: &str, ip: &str| -> SocketAddr {
        let port = s.addr(service).port();
        SocketAddr::new(ip.parse().unwrap(), port)
    };
    for ip in ["127.0.0.2", "127.0.0.1"] {
        let to = on("echo", ip);
        assert_eq!(ask_from_loopback(to, b"ping"), ("ping".into(), to));
        let to = on("relay", ip);
        assert_eq!(ask_from_loopback(to, b"ping"), (format!("ping {ip}\n"), to));
        let to = on("relay4", ip);
        assert_eq!(ask_from_loopback(to, b"ping"), ("ping".into(), to));
    }
    // IPv6, on the dual-stack and on the IPv6-only socket.
    for service in ["echo", "relay4"] {
        let port = s.addrs(service).last().unwrap().port();
        let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        let sock = UdpSocket::bind("[::1]:0").unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        sock.send_to(b"six", to).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = sock.recv_from(&mut buf).expect("a reply over IPv6");
        assert_eq!((&buf[..n], from), (&b"six"[..], to));
    }
}

/// A UDP datagram to `to` from `from_port` on 127.0.0.1, whatever that
/// port is: 0, or one a socket holds (the service's own). No UDP socket
/// can send from those, so a raw one (root) with the UDP header written
/// here; the kernel adds the IP header. Checksum 0: none (IPv4).
fn raw_udp_from(from_port: u16, to: SocketAddr, payload: &[u8]) {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let mut datagram = Vec::new();
    datagram.extend_from_slice(&from_port.to_be_bytes());
    datagram.extend_from_slice(&to.port().to_be_bytes());
    datagram.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    datagram.extend_from_slice(&[0, 0]);
    datagram.extend_from_slice(payload);
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket");
    let dest: SocketAddr = "127.0.0.1:0".parse().unwrap();
    raw.send_to(&datagram, &SockAddr::from(dest))
        .expect("send raw datagram");
}

/// Regression (bench/soak): a datagram `nowait` service answering a
/// datagram that came from its own address sent the reply to itself,
/// which came back as the next request: a handler per datagram, forever.
/// Now refused as `reason=source-port`, as is a datagram from port 0.
#[test]
fn udp_nowait_reply_to_its_own_port_is_not_a_loop() {
    crate::require_root!();
    let config = format!(
        "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nserver = \"/bin/cat\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let addr = s.addr("u");
    raw_udp_from(addr.port(), addr, b"from my own port\n");
    s.expect_line(&[
        "refuse service=u",
        &format!("peer={addr}"),
        "reason=source-port",
    ]);
    raw_udp_from(0, addr, b"from port 0\n");
    s.expect_line(&["refuse service=u", "peer=127.0.0.1:0", "reason=source-port"]);
    // Still serving others, and no handler ran for the two above.
    assert_eq!(udp_ask(addr, b"ping").unwrap(), b"ping");
    assert!(
        crate::harness::eventually(|| s.count(&["start service=u"]) == 1),
        "{}",
        s.log()
    );
}

/// The same for a `wait` service: the datagram from its own port is taken
/// off the queue before a handler could answer it back into the socket.
#[test]
fn udp_wait_datagram_from_its_own_port_is_taken_off() {
    crate::require_root!();
    let config = format!(
        "[[service]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nwait = true\nserver = \"udp-once.py\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let addr = s.addr("w");
    raw_udp_from(addr.port(), addr, b"from my own port\n");
    s.expect_line(&["refuse service=w", "reason=source-port"]);
    assert_eq!(udp_ask(addr, b"ping").unwrap(), b"got ping");
    assert!(
        crate::harness::eventually(|| s.count(&["start service=w"]) == 1),
        "{}",
        s.log()
    );
    assert_eq!(s.count(&["looping"]), 0);
}
