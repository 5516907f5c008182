//! Floods a handler or a peer can aim at the supervisor (issue 16, items 4
//! and 5): a handler's stderr, and two UDP echo services bouncing one
//! datagram between them.

use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::harness::{eventually, field, talk, user_line, Dir, Server};
use crate::require_root;

#[test]
fn stderr_flood_is_rate_limited() {
    let dir = Dir::new();
    let script = dir.write("flood.sh", "#!/bin/sh\nexec timeout 5 yes flood >&2\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = format!(
        "[[service]]\nname = \"flood\"\nlisten = \"127.0.0.1:0\"\nserver = \"{}\"\nstderr = \"log\"\n{}\n\n\
         [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n",
        script.display(),
        user_line()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let echo = s.addr("echo");
    let _flood = TcpStream::connect(s.addr("flood")).unwrap();
    s.expect_line(&["stderr service=flood", "line=flood"]);
    // The supervisor does not read the flood at full speed: past its byte
    // budget the pipe is left unwatched and `yes` waits on it. Unbounded,
    // reading and dropping took a whole core.
    let before = cpu_ticks(s.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(s.pid()) - before;
    assert!(used < 30, "supervisor CPU over 1 s of flood: {used}/100 s");
    // While it floods (5 s), every echo request is answered. 50 requests
    // with 10 ms between them take well under a second when the loop is
    // fair; without the bound on a pipe's share of a turn each one waited
    // for seconds, and the flood ended before the fifth.
    for i in 0..50 {
        let msg = format!("ping {i}\n");
        assert_eq!(talk(echo, &msg), msg);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        s.count(&["exit service=flood"]),
        0,
        "the flood ended before the echo requests were answered"
    );
    s.expect_line(&["exit service=flood"]);
    // 100 lines a second with a burst of 200, for 5 s: about 700 lines
    // (it wrote millions).
    let logged = s.count(&["stderr service=flood", "line=flood"]);
    assert!(logged < 2_000, "{logged} stderr lines logged");
    let dropped: u64 = s
        .lines()
        .iter()
        .filter(|l| l.contains("stderr-dropped service=flood"))
        .filter_map(|l| field(l, "lines").and_then(|n| n.parse::<u64>().ok()))
        .sum();
    assert!(dropped > 0, "no stderr-dropped count:\n{}", s.log());
    // At most one count a second, plus the rest at exit.
    let reports = s.count(&["stderr-dropped service=flood"]);
    assert!(reports <= 10, "{reports} stderr-dropped lines");
}

/// A UDP datagram from `from` to `to`, with a source address the sender
/// does not own (IP_HDRINCL: the IP header is ours; the kernel fills in
/// its checksum, and a UDP checksum of 0 means none).
fn spoof_udp(from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&from.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&from.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    let raw = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .expect("raw socket");
    let dest = SockAddr::from(SocketAddrV4::new(*to.ip(), 0));
    raw.send_to(&p, &dest).expect("send spoofed datagram");
}

/// User and system CPU time of `pid` so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of proc(5), counted from 1, the
    // first after the command name (`state`) being field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => panic!("{addr} is not IPv4"),
    }
}

#[test]
fn udp_echo_ping_pong_between_two_instances_stops() {
    require_root!();
    let config = "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nserver = \"internal:echo\"\n";
    let a = Server::start(config);
    let b = Server::start(config);
    let (addr_a, addr_b) = (a.addr("echo"), b.addr("echo"));
    assert!(addr_a.port() >= 1024 && addr_b.port() >= 1024);
    // One datagram "from" A's echo to B's: B answers A, A answers B, ...
    spoof_udp(v4(addr_a), v4(addr_b), b"ping-pong");
    let named = |s: &Server, peer: SocketAddr| {
        s.lines().iter().any(|l| {
            l.contains("reply-dropped service=echo") && l.contains(&format!("peer={peer}"))
        })
    };
    assert!(
        eventually(|| named(&a, addr_b) || named(&b, addr_a)),
        "no reply-dropped line naming the peer\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    // Both supervisors are near idle once it settles (a bouncing datagram
    // kept each at about half a core).
    std::thread::sleep(Duration::from_secs(2));
    let before = (cpu_ticks(a.pid()), cpu_ticks(b.pid()));
    std::thread::sleep(Duration::from_secs(1));
    let used = (cpu_ticks(a.pid()) - before.0, cpu_ticks(b.pid()) - before.1);
    assert!(
        used.0 < 20 && used.1 < 20,
        "CPU over 1 s, in 1/100 s: A {} B {}",
        used.0,
        used.1
    );
    // Both still answer others.
    for s in [&a, &b] {
        let reply = crate::harness::udp_ask(s.addr("echo"), b"hello").unwrap();
        assert_eq!(reply, b"hello");
    }
}
