//! Issue 18, "systemd, both ways": listeners taken from outside instead
//! of bound (socket activation), and handed over across a restart (the
//! fd store; re-exec on SIGUSR2) without refusing a connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use nix::sys::signal::Signal;

use crate::harness::{eventually, field, need, talk, user_line, Dir, Server, PATIENCE};

fn svc(name: &str, listen: &str, server: &str, args: &str) -> String {
    let args = match args {
        "" => String::new(),
        a => format!("args = [{a}]\n"),
    };
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nserver = \"{server}\"\n{args}{}\n",
        user_line()
    )
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `input` through socat, the answer.
fn socat(addr: SocketAddr, input: &str) -> String {
    let socat = need("socat", "socat");
    let mut child = Command::new(socat)
        .arg("-t5")
        .arg("-")
        .arg(format!("TCP:{addr}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn systemd_socket_activate_hands_sockets_and_the_unused_one_is_logged() {
    let activate = need("systemd-socket-activate", "systemd");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let dir = Dir::new();
    let config = format!(
        "{}{}{}",
        svc("up", &format!("127.0.0.1:{p1}"), "upper.sh", ""),
        // Port 0 here: the socket named after it is its, wherever it is.
        svc("named", "127.0.0.1:0", "upper.sh", ""),
        svc("env", "127.0.0.1:0", "/usr/bin/env", ""),
    );
    let path = dir.write("oxinetd.toml", &config);
    let mut cmd = Command::new(activate);
    for p in [p1, p2, p3] {
        cmd.arg("-l").arg(format!("127.0.0.1:{p}"));
    }
    cmd.arg("--fdname=a:b:named")
        .arg(crate::harness::bin())
        .arg("-f")
        .arg(&path)
        .args(["--log", "stderr"]);
    let mut s = Server::launch(dir, path, cmd);
    // It execs oxinetd at the first connection, which waits meanwhile:
    // served by oxinetd, through the socket it was given.
    let last = format!("Listening on 127.0.0.1:{p3} as 5.");
    assert!(s.wait_for(|l| l.contains(&last)).is_some(), "{}", s.log());
    let first: SocketAddr = ([127, 0, 0, 1], p1).into();
    assert_eq!(socat(first, "first\n"), "FIRST\n");
    assert!(
        s.wait_for(|l| l.contains(" ready ")).is_some(),
        "not ready:\n{}",
        s.log()
    );
    let up = s.expect_line(&["listen service=up "]);
    assert_eq!(field(&up, "inherited_fd"), Some("3"), "{up}");
    assert_eq!(s.addr("up").port(), p1);
    let named = s.expect_line(&["listen service=named "]);
    assert_eq!(field(&named, "inherited_fd"), Some("5"), "{named}");
    assert_eq!(s.addr("named").port(), p3);
    let env = s.expect_line(&["listen service=env "]);
    assert_eq!(field(&env, "inherited_fd"), None, "{env}");
    let unused = s.expect_line(&["warning ", "given fd 4 (name b, "]);
    assert!(unused.contains(&format!("127.0.0.1:{p2}")), "{unused}");
    assert!(unused.contains("no service listens there"), "{unused}");

    // A real client, served through the given sockets.
    assert_eq!(socat(s.addr("up"), "hi\n"), "HI\n");
    assert_eq!(socat(s.addr("named"), "there\n"), "THERE\n");
    // The unused one was closed (nobody else held it): refused.
    let refused = TcpStream::connect(("127.0.0.1", p2)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    // Handlers never see the variables oxinetd was started with.
    let env = talk(s.addr("env"), "");
    assert!(!env.contains("LISTEN_"), "{env}");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}

/// Counts of a client connecting over and over while a restart happens.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    refused: AtomicUsize,
    reset: AtomicUsize,
    other: Mutex<Vec<String>>,
}

struct Looper {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    thread: Option<JoinHandle<()>>,
}

impl Looper {
    /// Connect to `addr`, send a line, expect it uppercased; again.
    fn start(addr: SocketAddr) -> Looper {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let (st, t) = (Arc::clone(&stop), Arc::clone(&tally));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                let once = || -> std::io::Result<String> {
                    let mut c = TcpStream::connect(addr)?;
                    c.set_read_timeout(Some(PATIENCE))?;
                    c.write_all(b"ping\n")?;
                    c.shutdown(std::net::Shutdown::Write)?;
                    let mut out = String::new();
                    c.read_to_string(&mut out)?;
                    Ok(out)
                };
                match once() {
                    Ok(out) if out == "PING\n" => {
                        t.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(out) => t.other.lock().unwrap().push(format!("answer {out:?}")),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        t.refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                        t.reset.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => t.other.lock().unwrap().push(e.to_string()),
                }
            }
        });
        Looper {
            stop,
            tally,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> usize {
        self.tally.ok.load(Ordering::SeqCst)
    }

    /// Wait for `more` successful rounds from now.
    fn served(&self, more: usize) {
        let at = self.ok();
        assert!(
            eventually(|| self.ok() >= at + more),
            "the client loop stalled"
        );
    }

    /// Stop; the counts: (ok, refused, reset, other).
    fn finish(mut self) -> (usize, usize, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        let t = &self.tally;
        (
            t.ok.load(Ordering::SeqCst),
            t.refused.load(Ordering::SeqCst),
            t.reset.load(Ordering::SeqCst),
            std::mem::take(&mut *t.other.lock().unwrap()),
        )
    }
}

/// A connection to the `slow` service (answers `done` after a while),
/// read in a thread of its own.
fn slow_client(addr: SocketAddr) -> JoinHandle<std::io::Result<String>> {
    std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr)?;
        c.set_read_timeout(Some(PATIENCE))?;
        let mut out = String::new();
        c.read_to_string(&mut out)?;
        Ok(out)
    })
}

fn manager_pid(line: &str) -> i32 {
    field(line, "pid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

/// `systemctl restart` with the fd store, systemd's side played over the
/// real protocol (`fd_manager.py`): the listeners are stored (FDSTORE=1,
/// FDNAME=service), the old oxinetd is stopped and has exited before the
/// new one starts with them as LISTEN_FDS; a client looping the whole
/// time is never refused nor reset, and a handler running across the
/// restart ends normally. A service a reload removes is removed from the
/// store: its port then refuses.
#[test]
fn a_restart_through_the_fd_store_refuses_no_connection() {
    let python = need("python3", "python3");
    let dir = Dir::new();
    let base = format!(
        "{}{}",
        svc("up", "127.0.0.1:0", "upper.sh", ""),
        svc("slow", "127.0.0.1:0", "slow.sh", "\"2\""),
    );
    let path = dir.write("oxinetd.toml", &base);
    let notify = dir.path().join("notify.sock");
    let mut cmd = Command::new(python);
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/fd_manager.py"
    ))
    .arg(&notify)
    .arg(crate::harness::bin())
    .arg("-f")
    .arg(&path)
    .args(["--log", "stderr"]);
    let mut s = Server::launch(dir, path.clone(), cmd);
    let ready = |n: usize| {
        eventually(|| s.count(&["manager: notified", "READY=1"]) >= n)
            || panic!("not ready:\n{}", s.log())
    };
    ready(1);
    let first = manager_pid(&s.expect_line(&["manager: started pid="]));
    s.expect_line(&["manager: stored up fds=1"]);
    s.expect_line(&["manager: stored slow fds=1"]);
    let (up, slow) = (s.addr("up"), s.addr("slow"));

    let waiting = slow_client(slow);
    s.expect_line(&["start service=slow"]);
    let looper = Looper::start(up);
    looper.served(5);
    s.signal(Signal::SIGUSR1); // the manager: restart
    ready(2);
    looper.served(20);
    let (ok, refused, reset, other) = looper.finish();
    assert_eq!((refused, reset), (0, 0), "ok {ok}, other {other:?}");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(waiting.join().unwrap().unwrap(), "done\n");

    // The old one ended after its handler, with status 0; the new one took
    // the same sockets, given, not bound.
    let exited = s.expect_line(&["manager: exited pid="]);
    assert_eq!(manager_pid(&exited), first);
    assert!(exited.ends_with("status=0"), "{exited}");
    let lines = s.lines();
    let stopped = lines.iter().position(|l| l == &exited).unwrap();
    assert!(
        lines[..stopped]
            .iter()
            .any(|l| l.contains("exit service=slow ")),
        "{}",
        s.log()
    );
    let second = s.lines()[stopped..]
        .iter()
        .find(|l| l.contains("manager: started pid="))
        .map(|l| manager_pid(l))
        .expect("a second start");
    let relisten: Vec<&String> = lines[stopped..]
        .iter()
        .filter(|l| l.contains("listen service=up "))
        .collect();
    assert_eq!(relisten.len(), 1, "{}", s.log());
    assert!(
        field(relisten[0], "inherited_fd").is_some(),
        "{}",
        relisten[0]
    );
    assert_eq!(field(relisten[0], "addr"), Some(up.to_string().as_str()));

    // A reload that drops `slow` removes it from the store: closed there
    // too, its port refuses.
    let skip = s.lines().len();
    std::fs::write(&path, svc("up", "127.0.0.1:0", "upper.sh", "")).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(second), Signal::SIGHUP).unwrap();
    s.expect_line_after(skip, &["manager: removed slow"]);
    s.expect_line_after(skip, &[" reload "]);
    let gone = TcpStream::connect(slow).unwrap_err();
    assert_eq!(gone.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_eq!(talk(up, "x\n"), "X\n");
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}

/// SIGUSR2 without systemd: the same process executes itself again,
/// keeping its listeners and its running handler, whose exit the new
/// image logs; a client looping meanwhile is never refused nor reset.
#[test]
fn sigusr2_re_executes_in_place_keeping_listeners_and_handlers() {
    let config = format!(
        "{}{}",
        svc("up", "127.0.0.1:0", "upper.sh", ""),
        svc("slow", "127.0.0.1:0", "slow.sh", "\"2\""),
    );
    let mut s = Server::start(&config);
    let pid = s.pid();
    let (up, slow) = (s.addr("up"), s.addr("slow"));
    let waiting = slow_client(slow);
    let started = s.expect_line(&["start service=slow"]);
    let looper = Looper::start(up);
    looper.served(5);
    s.signal(Signal::SIGUSR2);
    let upgrade = s.expect_line(&["upgrade exe="]);
    assert_eq!(field(&upgrade, "listeners"), Some("2"), "{upgrade}");
    assert!(
        field(&upgrade, "handlers").is_some_and(|n| n != "0"),
        "{upgrade}"
    );
    let at = s.lines().iter().position(|l| l == &upgrade).unwrap();
    s.expect_line_after(at, &[" ready "]);
    looper.served(20);
    let (ok, refused, reset, other) = looper.finish();
    assert_eq!((refused, reset), (0, 0), "ok {ok}, other {other:?}");
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(waiting.join().unwrap().unwrap(), "done\n");
    // Its exit, logged by the new image, with the pid its start named.
    let exit = s.expect_line_after(at, &["exit service=slow "]);
    assert_eq!(field(&exit, "pid"), field(&started, "pid"), "{exit}");
    assert_eq!(field(&exit, "status"), Some("0"), "{exit}");
    assert_eq!(s.pid(), pid);
    assert!(!crate::harness::ended(pid));
    // The same sockets: listed again as given, at the same addresses.
    let relisten = s.expect_line_after(at, &["listen service=up "]);
    assert!(field(&relisten, "inherited_fd").is_some(), "{relisten}");
    assert_eq!(s.addr("up"), up);
    assert_eq!(talk(up, "a\n"), "A\n");

    // A config the new image could not run: refused, nothing changes.
    let skip = s.lines().len();
    s.dir
        .write("oxinetd.toml", "[[service]]\nname = \"broken\"\n");
    s.signal(Signal::SIGUSR2);
    s.expect_line_after(skip, &["upgrade refused"]);
    assert_eq!(s.count(&[" ready "]), 2);
    assert_eq!(talk(up, "b\n"), "B\n");
    assert_eq!(s.pid(), pid);
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}
