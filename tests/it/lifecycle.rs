//! Startup, bind failures, reaping, shutdown, sd_notify, pidfile.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{talk, user_line, Dir, Server, PATIENCE};

fn svc(name: &str, listen: &str, server: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nserver = \"{server}\"\n{}\n",
        user_line()
    )
}

#[test]
fn a_service_that_cannot_bind_is_skipped_and_the_others_serve() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "{}{}",
        svc("blocked", &format!("127.0.0.1:{port}"), "upper.sh"),
        svc("fine", "127.0.0.1:0", "upper.sh")
    );
    let s = Server::start(&config);
    s.expect_line(&[
        "error service=blocked",
        "unable to bind",
        // EADDRINUSE, by number: glibc and musl word it differently.
        "(os error 98)",
    ]);
    assert_eq!(talk(s.addr("fine"), "ok\n"), "OK\n");
}

#[test]
fn nothing_bound_exits_71() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut s = Server::spawn(
        Dir::new(),
        &svc("blocked", &format!("127.0.0.1:{port}"), "upper.sh"),
        &[],
        |_| {},
    );
    assert_eq!(s.wait_exit().code(), Some(71));
    s.expect_line(&["fatal", "no listener could be bound"]);
}

#[test]
fn unusable_config_exits_78() {
    let mut s = Server::spawn(Dir::new(), "[[service]\nname=", &[], |_| {});
    assert_eq!(s.wait_exit().code(), Some(78));
    // Services were asked for and none can run (unlike a config that asks
    // for none, which runs idle).
    let mut s = Server::spawn(Dir::new(), "[[service]]\nname = \"x\"\n", &[], |_| {});
    assert_eq!(s.wait_exit().code(), Some(78));
    s.expect_line(&["fatal", "no valid service"]);
}

/// Issue 18: the packaged config enables no service; running it must not
/// fail the unit. oxinetd says it is idle, is ready (READY=1, no
/// listener), and a reload that adds a service serves it. An inetd.conf
/// whose every line is commented out, or an xinetd tree whose every
/// service is disabled, is the same case.
#[test]
fn a_config_without_services_runs_idle_until_a_reload_adds_one() {
    let dir = Dir::new();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    // Its /etc/inetd.conf include names the test's own (absent) file: this
    // machine's may hold anything, the update-inetd test's entries too.
    let packaged = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/packaged.toml"),
    )
    .unwrap()
    .replace("\"/etc/inetd.conf\"", "\"inetd.conf\"");
    // Its [defaults] name a user, which only root may switch to.
    let packaged = match crate::harness::is_root() {
        true => packaged,
        false => packaged.replace("user = \"nobody\"", ""),
    };
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    let mut s = Server::start_in(dir, &packaged, &[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path);
    });
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification");
    assert_eq!(&buf[..n], b"READY=1");
    let idle = s.expect_line(&["idle config=", "no service to run"]);
    assert!(idle.contains(&s.config.display().to_string()), "{idle}");
    s.expect_line(&["ready listeners=0"]);
    assert_eq!(s.count(&["fatal"]), 0, "{}", s.log());

    let added = format!("{packaged}\n{}", svc("upper", "127.0.0.1:0", "upper.sh"));
    let reload = s.reload(&added);
    assert!(reload.contains(" reload listeners=1 "), "{reload}");
    assert_eq!(talk(s.addr("upper"), "hi\n"), "HI\n");
    // Back to no service: idle again, not stopped.
    let skip = s.lines().len();
    let reload = s.reload(&packaged);
    assert!(reload.contains(" reload listeners=0 "), "{reload}");
    s.expect_line_after(skip, &["idle config="]);
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));

    for (name, text) in [
        ("inetd.conf", "#echo stream tcp nowait root internal\n"),
        (
            "xinetd.conf",
            "service echo\n{\n  disable = yes\n  type = INTERNAL\n  socket_type = stream\n  wait = no\n}\n",
        ),
    ] {
        let dir = Dir::new();
        let conf = dir.write(name, text);
        let mut cmd = std::process::Command::new(crate::harness::bin());
        cmd.arg("-f").arg(&conf).args(["--log", "stderr"]);
        let mut s = Server::launch(dir, conf, cmd);
        s.expect_line(&["idle config="]);
        s.expect_line(&["ready listeners=0"]);
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit().code(), Some(0), "{name}");
    }
}

#[test]
fn one_broken_service_among_good_ones() {
    let config = format!(
        "{}[[service]]\nname = \"broken\"\nlisten = \"127.0.0.1:0\"\nserver = \"/nonexistent/prog\"\n{}\n{}",
        svc("good1", "127.0.0.1:0", "upper.sh"),
        user_line(),
        svc("good2", "127.0.0.1:0", "upper.sh"),
    );
    let s = Server::start(&config);
    let cfg = s.config.display().to_string();
    // The error names the file and the line of the broken server value.
    let line = s.expect_line(&["config-error", "/nonexistent/prog"]);
    let line_no = config
        .lines()
        .position(|l| l.contains("/nonexistent/prog"))
        .unwrap()
        + 1;
    assert!(line.contains(&format!("at={cfg}:{line_no}:")), "{line}");
    assert_eq!(talk(s.addr("good1"), "a\n"), "A\n");
    assert_eq!(talk(s.addr("good2"), "b\n"), "B\n");
    assert!(s.addrs("broken").is_empty());
}

#[test]
fn crashing_silent_and_hanging_handlers_leave_no_zombies_or_fds() {
    let config = format!(
        "{}{}{}{}",
        svc("crash", "127.0.0.1:0", "crash.sh"),
        svc("silent", "127.0.0.1:0", "/bin/true"),
        svc("hang", "127.0.0.1:0", "slow.sh"),
        svc("upper", "127.0.0.1:0", "upper.sh"),
    )
    .replace(
        "server = \"slow.sh\"",
        "server = \"slow.sh\"\nargs = [\"2\"]",
    );
    let s = Server::start(&config);
    assert_eq!(talk(s.addr("upper"), "warm\n"), "WARM\n");
    s.expect_line(&["exit service=upper"]);
    let fds_before = s.fd_count();

    for _ in 0..5 {
        assert_eq!(talk(s.addr("crash"), ""), "");
        assert_eq!(talk(s.addr("silent"), ""), "");
    }
    // The client gives up on the hanging handler long before it exits.
    let mut c = TcpStream::connect(s.addr("hang")).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(c.read(&mut buf).is_err(), "expected a client timeout");
    drop(c);

    s.expect_line(&["exit service=crash", "signal=SIGSEGV"]);
    s.expect_line(&["exit service=hang", "status=0"]);
    let deadline = std::time::Instant::now() + PATIENCE;
    while s.count(&["exit service="]) < 12 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.count(&["exit service="]), 12, "{}", s.log());
    assert_eq!(s.zombies(), Vec::<i32>::new());
    assert_eq!(s.children(), Vec::<i32>::new());
    // The exit line is logged just before the record's pipes are closed.
    assert!(
        crate::harness::eventually(|| s.fd_count() == fds_before),
        "fd leak: {} open, {fds_before} before",
        s.fd_count()
    );
}

#[test]
fn sigterm_stops_listening_and_waits_for_handlers() {
    let config = format!(
        "[global]\nshutdown_grace = 15\n{}",
        svc("slow", "127.0.0.1:0", "slow.sh")
    );
    let mut s = Server::start(&config);
    let addr = s.addr("slow");
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let start = s.expect_line(&["start service=slow"]);
    crate::harness::wait_exec(crate::harness::field(&start, "pid").unwrap());
    s.signal(Signal::SIGTERM);
    s.expect_line(&["stopping handlers=1"]);
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after SIGTERM"
    );
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert_eq!(out, "done\n");
    assert_eq!(s.wait_exit().code(), Some(0));
    s.expect_line(&["stopped"]);
}

/// The supervisor's signal handlers run only inside its wait (outside it
/// HUP, INT, TERM, USR1 and CHLD are blocked: `signals`' unit test). Seen
/// from outside, the idle supervisor is in that wait: they are let in
/// and caught; and they act.
#[test]
fn the_idle_supervisor_waits_with_its_signals_let_in() {
    let mut s = Server::start(&svc("e", "127.0.0.1:0", "/bin/cat"));
    assert_eq!(talk(s.addr("e"), "one\n"), "one\n");
    let bit = |sig: Signal| 1u64 << (sig as i32 - 1);
    let flagged = bit(Signal::SIGHUP)
        | bit(Signal::SIGINT)
        | bit(Signal::SIGTERM)
        | bit(Signal::SIGUSR1)
        | bit(Signal::SIGCHLD);
    // Read while the supervisor is back in its wait: just after the
    // handler's exit it may still be reaping, with every signal blocked.
    let (mut blocked, mut caught) = (0, 0);
    let idle = crate::harness::eventually(|| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
        let mask = |key: &str| {
            let line = status.lines().find(|l| l.starts_with(key)).expect(key);
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        (blocked, caught) = (mask("SigBlk:"), mask("SigCgt:"));
        blocked & flagged == 0
    });
    assert!(
        idle,
        "SigBlk {blocked:x}: HUP, INT, TERM, USR1, CHLD never let in"
    );
    assert_eq!(
        caught & flagged,
        flagged,
        "HUP, INT, TERM, USR1, CHLD caught"
    );
    s.signal(Signal::SIGINT);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.expect_line(&["stopped"]);
}

#[test]
fn shutdown_grace_is_a_limit() {
    let config = format!(
        "[global]\nshutdown_grace = 0.2\n{}",
        svc("slow", "127.0.0.1:0", "slow.sh").replace("slow.sh\"", "slow.sh\"\nargs = [\"60\"]")
    );
    let mut s = Server::start(&config);
    let _c = TcpStream::connect(s.addr("slow")).unwrap();
    let start = s.expect_line(&["start service=slow"]);
    let pid: i32 = crate::harness::field(&start, "pid")
        .unwrap()
        .parse()
        .unwrap();
    s.signal(Signal::SIGINT);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.expect_line(&["killed service=slow", "signal=SIGTERM"]);
    s.expect_line(&["stopped"]);
    // The handler's process group got SIGTERM.
    assert!(
        crate::harness::eventually(|| crate::harness::ended(pid)),
        "handler {pid} survived"
    );
}

#[test]
fn sd_notify_ready_reloading_stopping() {
    let dir = Dir::new();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let config = svc("u", "127.0.0.1:0", "upper.sh");
    let mut s = Server::start_in(dir, &config, &[], |cmd| {
        cmd.env("NOTIFY_SOCKET", &sock_path);
    });
    // The fd store's messages (tests/it/handover.rs) are not these.
    let recv = || loop {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !msg.starts_with("FDSTORE") {
            break msg;
        }
    };
    assert_eq!(recv(), "READY=1");
    s.signal(Signal::SIGHUP);
    let reloading = recv();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(recv(), "READY=1");
    s.signal(Signal::SIGTERM);
    assert_eq!(recv(), "STOPPING=1");
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[test]
fn pidfile_is_written_and_removed() {
    let dir = Dir::new();
    let pidfile = dir.path().join("oxinetd.pid");
    let pf = pidfile.display().to_string();
    let mut s = Server::start_in(
        dir,
        &svc("u", "127.0.0.1:0", "upper.sh"),
        &["--pidfile", &pf],
        |_| {},
    );
    assert_eq!(
        std::fs::read_to_string(&pidfile).unwrap(),
        format!("{}\n", s.pid())
    );
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
    assert!(!pidfile.exists());
}

/// A symbolic link at the pidfile's path is not followed: the file it
/// names keeps its contents, and the failure is logged; serving goes on.
#[test]
fn pidfile_symlink_is_not_followed() {
    let dir = Dir::new();
    let victim = dir.write("victim", "keep me\n");
    let pidfile = dir.path().join("oxinetd.pid");
    std::os::unix::fs::symlink(&victim, &pidfile).unwrap();
    let pf = pidfile.display().to_string();
    let mut s = Server::start_in(
        dir,
        &svc("u", "127.0.0.1:0", "upper.sh"),
        &["--pidfile", &pf],
        |_| {},
    );
    s.expect_line(&["unable to write pidfile"]);
    assert_eq!(talk(s.addr("u"), "hi\n"), "HI\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}

/// The shipped unit parses without complaint on this machine's systemd
/// (Debian 12: 252, which predates Type=notify-reload).
#[test]
fn systemd_unit_parses_on_this_systemd() {
    let analyze = crate::need!("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/systemd/oxinetd.service"
    ))
    .expect("read the unit");
    assert!(
        unit.contains("/usr/sbin/oxinetd"),
        "the unit runs /usr/sbin/oxinetd"
    );
    let dir = Dir::new();
    let path = dir.write(
        "oxinetd.service",
        &unit.replace("/usr/sbin/oxinetd", crate::harness::bin()),
    );
    let out = std::process::Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
