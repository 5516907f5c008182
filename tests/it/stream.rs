//! TCP services: nowait per connection, wait with socket activation.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::harness::{talk, user_line, Server, PATIENCE};

#[test]
fn nowait_handler_gets_connection_and_exact_environment() {
    let config = format!(
        r#"
[[service]]
name = "env"
listen = "127.0.0.1:0"
server = "/usr/bin/env"
{user}
env = {{ LANG = "C.UTF-8" }}
passenv = ["OXI_PASSED", "OXI_ABSENT"]
"#,
        user = user_line()
    );
    let s = Server::start_in(crate::harness::Dir::new(), &config, &[], |cmd| {
        cmd.env("OXI_PASSED", "yes").env("OXI_LEAKED", "no");
    });
    let addr = s.addr("env");
    let mut conn = TcpStream::connect(addr).unwrap();
    let me = conn.local_addr().unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut out = String::new();
    conn.read_to_string(&mut out).unwrap();
    let got: BTreeSet<&str> = out.lines().collect();
    let want: BTreeSet<String> = [
        "PROTO=TCP".to_string(),
        format!("TCPREMOTEIP={}", me.ip()),
        format!("TCPREMOTEPORT={}", me.port()),
        format!("TCPLOCALIP={}", addr.ip()),
        format!("TCPLOCALPORT={}", addr.port()),
        format!("REMOTE_ADDR={}", me.ip()),
        format!("REMOTE_PORT={}", me.port()),
        "LANG=C.UTF-8".to_string(),
        "OXI_PASSED=yes".to_string(),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want.iter().map(String::as_str).collect());
    s.expect_line(&["start service=env", &format!("peer={me}")]);
    s.expect_line(&["exit service=env", "status=0", "duration_ms="]);
}

#[test]
fn ipv6_and_dual_stack_listeners() {
    let config = format!(
        r#"
[defaults]
server = "upper.sh"
{user}

[[service]]
name = "v6"
listen = "[::1]:0"

[[service]]
name = "any"
listen = "*:0"
server = "/usr/bin/env"
"#,
        user = user_line()
    );
    let s = Server::start(&config);
    assert_eq!(talk(s.addr("v6"), "over six\n"), "OVER SIX\n");
    let port = s.addr("any").port();
    // One dual-stack socket serves both families; IPv4 peers show as IPv4.
    let v4 = talk(([127, 0, 0, 1], port).into(), "");
    assert!(v4.lines().any(|l| l == "TCPREMOTEIP=127.0.0.1"), "{v4}");
    let v6 = talk((std::net::Ipv6Addr::LOCALHOST, port).into(), "");
    assert!(v6.lines().any(|l| l == "TCPREMOTEIP=::1"), "{v6}");
}

#[test]
fn thousand_connections_fifty_at_a_time_all_exact() {
    let config = format!(
        "[[service]]\nname = \"upper\"\nlisten = \"127.0.0.1:0\"\nserver = \"upper.sh\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let addr = s.addr("upper");
    let workers: Vec<_> = (0..50)
        .map(|w| {
            std::thread::spawn(move || {
                let mut bad = Vec::new();
                for i in 0..20 {
                    let line = format!("worker {w} request {i}\n");
                    match crate::harness::exchange(addr, line.as_bytes()) {
                        Ok(out) if out == line.to_uppercase().as_bytes() => {}
                        Ok(out) => {
                            bad.push(format!("{line:?} -> {:?}", String::from_utf8_lossy(&out)))
                        }
                        Err(e) => bad.push(format!("{line:?} -> {e}")),
                    }
                }
                bad
            })
        })
        .collect();
    let bad: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(
        bad.is_empty(),
        "{} bad replies, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    // Every connection had a handler started and reaped.
    let deadline = std::time::Instant::now() + PATIENCE;
    while s.count(&["exit service=upper", "status=0"]) < 1000
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s.count(&["start service=upper"]), 1000);
    assert_eq!(s.count(&["exit service=upper", "status=0"]), 1000);
}

#[test]
fn stream_wait_hands_over_the_listener_the_systemd_way() {
    let config = format!(
        "[[service]]\nname = \"act\"\nlisten = \"127.0.0.1:0\"\nwait = true\nserver = \"activation.py\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let addr = s.addr("act");
    for _ in 0..2 {
        // Each handler accepts one connection; the second needs a re-spawn
        // after the first handler exited and the listener was re-armed.
        let mut r = BufReader::new(TcpStream::connect(addr).unwrap());
        r.get_ref().set_read_timeout(Some(PATIENCE)).unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(
            line,
            "fds=0,1,2,3 LISTEN_FDS=1 LISTEN_PID_OK=True LISTEN_FDNAMES=act\n"
        );
        let _ = r.get_mut().write_all(b"");
    }
    assert!(
        crate::harness::eventually(|| s.count(&["start service=act"]) == 2),
        "{}",
        s.log()
    );
}

#[test]
fn argv0_and_args_reach_the_handler() {
    let config = format!(
        "[[service]]\nname = \"argv\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nargv0 = \"custom-name\"\nargs = [\"/proc/self/cmdline\"]\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    assert_eq!(
        talk(s.addr("argv"), ""),
        "custom-name\0/proc/self/cmdline\0"
    );
    // Without argv0, argv[0] is the server's file name.
    let s = Server::start(&config.replace("argv0 = \"custom-name\"\n", ""));
    assert_eq!(talk(s.addr("argv"), ""), "cat\0/proc/self/cmdline\0");
}
