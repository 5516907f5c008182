//! Reload and `wait` corner cases (issue 16, section 6): `instances`
//! across a service's removal and return, a stream `wait` handler that
//! never accepts, and a port moving between `127.0.0.1:P` and `*:P`.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::harness::{accept_queue, eventually, exchange, talk, user_line, Server, PATIENCE};

/// A service of `instances = 1` whose handler answers `done` once the file
/// `go` exists in the test directory (bounded: 20 s at most).
fn held(name: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"i=0; while [ ! -e {{dir}}/go ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo done\"]\n\
         instances = 1\n{}\n",
        user_line()
    )
}

fn upper(name: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"upper.sh\"\n{}\n",
        user_line()
    )
}

#[test]
fn instances_hold_across_removal_and_return_of_a_service() {
    let with = format!("{}{}", upper("keep"), held("one"));
    let s = Server::start(&with);
    let mut first = TcpStream::connect(s.addr("one")).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    s.expect_line(&["start service=one"]);

    // Removed while its handler runs, then back (on a new port).
    let outcome = s.reload(&upper("keep"));
    assert!(outcome.contains("closed=1"), "{outcome}");
    let outcome = s.reload(&with);
    assert!(outcome.contains("bound=1"), "{outcome}");
    let again = *s.addrs("one").last().unwrap();

    let mut second = TcpStream::connect(again).unwrap();
    second.set_read_timeout(Some(PATIENCE)).unwrap();
    // The supervisor has gone round its loop since (it served `keep`), and
    // the connection is still waiting in the backlog: `instances = 1` is
    // the running handler of before the removal.
    assert_eq!(talk(s.addr("keep"), "x\n"), "X\n");
    assert!(
        eventually(|| accept_queue(again) == 1),
        "the second connection was taken"
    );
    assert_eq!(talk(s.addr("keep"), "y\n"), "Y\n");
    assert_eq!(
        s.count(&["start service=one"]),
        1,
        "a second handler ran with instances = 1"
    );

    // The first one ends: the second is served.
    s.dir.write("go", "");
    let mut out = String::new();
    first.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n");
    let mut out = String::new();
    second.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n");
    // Its `start` line may reach the log after the client's answer.
    assert!(eventually(|| s.count(&["start service=one"]) == 2));
}

#[test]
fn stream_wait_handler_that_never_accepts_pauses_instead_of_looping() {
    let service = |server: &str| {
        format!(
            "[global]\nloop_pause = 2\n[[service]]\nname = \"idle\"\nlisten = \"127.0.0.1:0\"\n\
             wait = true\nserver = \"{server}\"\n{}\n",
            user_line()
        )
    };
    let s = Server::start(&service("/bin/true"));
    let addr = s.addr("idle");
    let mut client = TcpStream::connect(addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();

    let looping = s.expect_line(&["looping service=idle"]);
    assert!(
        looping.contains("handlers_exited_without_accepting=3"),
        "{looping}"
    );
    assert!(looping.contains("paused_ms=2000"), "{looping}");
    let starts = s.count(&["start service=idle"]);
    assert!(starts < 20, "{starts} handlers for one pending connection");

    // Fixed: once the pause is over, the pending client is served.
    let outcome = s.reload(&service("activation.py"));
    assert!(outcome.contains("kept=1"), "{outcome}");
    let mut out = String::new();
    client.read_to_string(&mut out).unwrap();
    assert!(out.contains("LISTEN_FDS=1"), "{out:?}");
}

#[test]
fn unix_stream_wait_handler_that_never_accepts_pauses_too() {
    crate::require_root!();
    let dir = crate::harness::Dir::new();
    let path = dir.path().join("idle.sock");
    let config = format!(
        "[global]\nloop_pause = 30\n[[service]]\nname = \"idle\"\nlisten = [\"{}\"]\n\
         wait = true\nserver = \"/bin/true\"\nuser = \"nobody\"\n",
        path.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let looping = s.expect_line(&["looping service=idle"]);
    assert!(
        looping.contains("handlers_exited_without_accepting=3"),
        "{looping}"
    );
    let starts = s.count(&["start service=idle"]);
    assert!(starts < 20, "{starts} handlers for one pending connection");
}

/// A port no one listens on now (bound, then freed).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn listener_moving_between_loopback_and_any_refuses_no_connection() {
    let echo = |listen: &str| {
        format!("[[service]]\nname = \"echo\"\nlisten = \"{listen}\"\nserver = \"internal:echo\"\n")
    };
    // A port freed for us may be taken again (another test's listener)
    // before oxinetd binds it: then its clients would talk to that one.
    // Start again on another port until oxinetd holds its own.
    let (s, port) = (0..10)
        .find_map(|_| {
            let port = free_port();
            let s = Server::start(&echo(&format!("127.0.0.1:{port}")));
            let first = s.wait_for_after(0, |l| {
                l.contains("listen service=echo") || l.contains("unable to bind")
            });
            first
                .filter(|l| l.contains("listen service=echo"))
                .map(|_| (s, port))
        })
        .expect("a port oxinetd could bind in ten tries");
    let specific = echo(&format!("127.0.0.1:{port}"));
    let any = echo(&format!("*:{port}"));
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut bad) = (0u32, Vec::new());
            // Bounded in count as well as by the stop flag.
            while !stop.load(Ordering::SeqCst) && ok + (bad.len() as u32) < 50_000 {
                match exchange(addr, b"ping\n") {
                    Ok(out) if out == b"ping\n" => ok += 1,
                    Ok(out) => bad.push(format!("reply {:?}", String::from_utf8_lossy(&out))),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (ok, bad)
        })
    };
    assert!(eventually(|| s.count(&["done service=echo"]) > 0));
    for i in 0..20 {
        let config = if i % 2 == 0 { &any } else { &specific };
        let outcome = s.reload(config);
        assert!(outcome.contains("bound=1 closed=1"), "{outcome}");
    }
    // Some more connections after the last switch, then stop.
    let after = s.count(&["done service=echo"]);
    assert!(eventually(|| s.count(&["done service=echo"]) > after));
    stop.store(true, Ordering::SeqCst);
    let (ok, bad) = client.join().unwrap();
    eprintln!("switching 20 times: {ok} served, {} failed", bad.len());
    assert!(
        bad.is_empty(),
        "{} of {} connections failed while the listener moved: {:?}",
        bad.len(),
        ok as usize + bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert!(s.count(&["error"]) == 0, "{}", s.log());
    // The last config is `127.0.0.1:P` again, the only listener.
    assert_eq!(talk(addr, "last\n"), "last\n");
}
