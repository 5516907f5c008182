//! SIGHUP: listeners kept by key, services added and removed, running
//! handlers untouched, bad configs refused whole.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::harness::{exchange, talk, user_line, Server, PATIENCE};

fn svc(name: &str, listen: &str, server: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nserver = \"{server}\"\n{}\n",
        user_line()
    )
}

#[test]
fn reload_under_continuous_connections_refuses_none() {
    let base = svc("upper", "127.0.0.1:0", "upper.sh");
    let s = Server::start(&base);
    let addr = s.addr("upper");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut bad) = (0u32, Vec::new());
            // Bounded in count as well as by the stop flag.
            while !stop.load(Ordering::SeqCst) && ok + (bad.len() as u32) < 5000 {
                match exchange(addr, b"ping\n") {
                    Ok(out) if out == b"PING\n" => ok += 1,
                    Ok(out) => bad.push(format!("reply {:?}", String::from_utf8_lossy(&out))),
                    Err(e) => bad.push(e.to_string()),
                }
            }
            (ok, bad)
        })
    };
    for i in 0..6 {
        // Alternate between adding and removing a second service.
        let config = if i % 2 == 0 {
            format!("{base}{}", svc("other", "127.0.0.1:0", "upper.sh"))
        } else {
            base.clone()
        };
        let outcome = s.reload(&config);
        assert!(outcome.contains(" reload "), "{outcome}");
        assert!(outcome.contains("kept=1"), "{outcome}");
    }
    stop.store(true, Ordering::SeqCst);
    let (ok, bad) = client.join().unwrap();
    assert!(
        bad.is_empty(),
        "{} failures during reloads: {:?}",
        bad.len(),
        bad
    );
    assert!(ok > 0);
    assert_eq!(s.addr("upper"), addr);
}

#[test]
fn reload_adds_removes_and_leaves_running_handlers_alone() {
    let first = format!(
        "{}{}",
        svc("keep", "127.0.0.1:0", "upper.sh"),
        svc("gone", "127.0.0.1:0", "slow.sh")
    );
    let s = Server::start(&first);
    let gone = s.addr("gone");
    // A handler of the service about to be removed is mid-connection.
    let mut running = TcpStream::connect(gone).unwrap();
    running.set_read_timeout(Some(PATIENCE)).unwrap();
    s.expect_line(&["start service=gone"]);

    let second = format!(
        "{}{}",
        svc("keep", "127.0.0.1:0", "upper.sh"),
        svc("new", "127.0.0.1:0", "upper.sh")
    );
    let outcome = s.reload(&second);
    assert!(outcome.contains("kept=1 bound=1 closed=1"), "{outcome}");
    s.expect_line(&["close service=gone"]);
    // Not by connecting: another test may have bound the freed port since.
    assert!(
        !crate::harness::listening_pids(gone).contains(&s.pid()),
        "removed service still listening"
    );
    assert_eq!(talk(s.addr("new"), "fresh\n"), "FRESH\n");
    assert_eq!(talk(s.addr("keep"), "kept\n"), "KEPT\n");

    let mut out = String::new();
    running.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n", "the running handler was disturbed");
}

#[test]
fn invalid_reload_logs_every_error_and_keeps_running_config() {
    let good = svc("upper", "127.0.0.1:0", "upper.sh");
    let s = Server::start(&good);
    let bad = format!(
        "{good}[[service]]\nname = \"b\"\nlisten = \"nonsense\"\nservr = \"x\"\n{}\n",
        user_line()
    );
    let outcome = s.reload(&bad);
    assert!(outcome.contains("reload-failed errors=3"), "{outcome}");
    let cfg = s.config.display().to_string();
    s.expect_line(&["config-error", &format!("at={cfg}:")]);
    s.expect_line(&["unknown key", "did you mean"]);
    assert_eq!(talk(s.addr("upper"), "still\n"), "STILL\n");
    // A syntax error is refused the same way.
    let outcome = s.reload("[[service]\n");
    assert!(outcome.contains("reload-failed"), "{outcome}");
    assert_eq!(talk(s.addr("upper"), "still\n"), "STILL\n");
}
