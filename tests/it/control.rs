//! The control socket: `oxinetd status`, `reload` and `stop` against the
//! running binary, and the bounds that keep its clients from holding up
//! the supervisor.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::harness::{talk, user_line, Server, PATIENCE};

fn svc(name: &str, listen: &str, server: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"{listen}\"\nserver = \"{server}\"\n{}\n{extra}\n",
        user_line()
    )
}

fn sock(s: &Server) -> PathBuf {
    s.dir.path().join("control.sock")
}

/// Run `oxinetd ARGS --control <s's socket>`.
fn ctl(s: &Server, args: &[&str]) -> Output {
    let out = Command::new(crate::harness::bin())
        .args(args)
        .arg("--control")
        .arg(sock(s))
        .arg("-f")
        .arg(&s.config)
        .stdin(Stdio::null())
        .output()
        .expect("run oxinetd");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `python3 -c` on `json`, which it reads as `j`; prints what `expr` gives.
fn json_query(json: &str, expr: &str) -> String {
    let mut p = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import json,sys; j=json.load(sys.stdin); print({expr})"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    p.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python3: {}\n{json}",
        text(&out.stderr)
    );
    text(&out.stdout).trim().to_string()
}

#[test]
fn status_shows_busy_paused_and_failed_listeners_with_their_reasons() {
    // A port in use: the service asking for it cannot be bound.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "{}{}{}{}",
        svc(
            "busy",
            "127.0.0.1:0",
            "slow.sh",
            "wait = true\nargs = [\"30\"]"
        ),
        svc("limited", "127.0.0.1:0", "upper.sh", "cps = [1, 60]"),
        svc("clash", &format!("127.0.0.1:{port}"), "upper.sh", ""),
        svc("ok", "127.0.0.1:0", "upper.sh", ""),
    );
    let s = Server::start(&config);
    // The wait service's handler takes the socket and holds it.
    let _waiting = TcpStream::connect(s.addr("busy")).unwrap();
    s.expect_line(&["start service=busy"]);
    // Two connections within a second: the second pauses `limited`.
    let limited = s.addr("limited");
    assert_eq!(talk(limited, "a\n"), "A\n");
    let _second = TcpStream::connect(limited).unwrap();
    s.expect_line(&["refuse service=limited", "reason=cps"]);
    assert_eq!(talk(s.addr("ok"), "x\n"), "X\n");

    let out = ctl(&s, &["status"]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}{}", text(&out.stderr));
    let line = |service: &str| {
        let at = table
            .find(&format!("\n{service} ("))
            .unwrap_or_else(|| panic!("no {service} in:\n{table}"));
        table[at..].lines().nth(2).unwrap_or("").to_string()
    };
    assert!(line("busy").contains("busy (pid "), "{table}");
    assert!(line("limited").contains("paused for"), "{table}");
    assert!(line("limited").contains("cps exceeded (1/s)"), "{table}");
    assert!(
        line("clash").contains("failed: Address in use")
            || line("clash").contains("failed: Address already in use"),
        "{table}"
    );
    assert!(line("ok").contains("armed"), "{table}");
    assert!(table.contains("handler pid"), "{table}");

    let out = ctl(&s, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json = text(&out.stdout);
    let state = |svc: &str| {
        json_query(
            &json,
            &format!(
                "[(l['state'], l['why'] or '') for s in j['services'] if s['name']=='{svc}' \
                 for l in s['listeners']][0]"
            ),
        )
    };
    assert!(state("busy").starts_with("('busy'"), "{json}");
    assert_eq!(
        state("limited"),
        "('paused', 'cps exceeded (1/s)')",
        "{json}"
    );
    assert!(state("clash").starts_with("('failed', 'Address"), "{json}");
    assert_eq!(state("ok"), "('armed', '')", "{json}");
    let counts = json_query(
        &json,
        "[(s['total']['accepted'], s['total']['spawned'], s['total']['refused']['rate']) \
         for s in j['services'] if s['name']=='limited'][0]",
    );
    assert_eq!(counts, "(1, 1, 1)", "{json}");
    let busy_pid = json_query(
        &json,
        "[s['handlers'][0]['pid'] == s['listeners'][0]['pid'] for s in j['services'] \
         if s['name']=='busy'][0]",
    );
    assert_eq!(busy_pid, "True", "{json}");
    assert_eq!(json_query(&json, "j['max_processes']"), "4096");

    // One service, and one that does not exist.
    let out = ctl(&s, &["status", "ok", "--json"]);
    assert_eq!(json_query(&text(&out.stdout), "len(j['services'])"), "1");
    let out = ctl(&s, &["status", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no service named \"nosuch\""));
    drop(taken);
}

#[test]
fn reload_waits_and_prints_errors_or_counts() {
    let base = svc("up", "127.0.0.1:0", "upper.sh", "");
    let s = Server::start(&base);
    let addr = s.addr("up");
    // Broken: an unknown key and a bad value, on their lines.
    s.dir.write(
        "oxinetd.toml",
        &format!(
            "{base}{}",
            svc(
                "two",
                "127.0.0.1:0",
                "upper.sh",
                "instances = -1\nbogus = 1"
            )
        ),
    );
    let out = ctl(&s, &["reload"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let file = s.config.display().to_string();
    assert!(err.contains(&format!("{file}:12:")), "{err}");
    assert!(err.contains("unknown key \"bogus\""), "{err}");
    assert!(err.contains("the running config is unchanged"), "{err}");
    assert_eq!(talk(addr, "still\n"), "STILL\n");

    s.dir.write(
        "oxinetd.toml",
        &format!("{base}{}", svc("two", "127.0.0.1:0", "upper.sh", "")),
    );
    let out = ctl(&s, &["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "reloaded: kept 1, bound 1, closed 0\n");
    // The answer may come before the log line is read here.
    s.expect_line(&["listen service=two"]);
    assert_eq!(talk(s.addr("two"), "b\n"), "B\n");
    // Counted since start, and afresh since the reload.
    let json = text(&ctl(&s, &["status", "up", "--json"]).stdout);
    let c = json_query(
        &json,
        "(j['services'][0]['total']['accepted'], j['services'][0]['since_reload']['accepted'], \
         j['reloads'], j['reload_failures'])",
    );
    assert_eq!(c, "(1, 0, 1, 1)", "{json}");
}

#[test]
fn stop_returns_once_oxinetd_has_exited() {
    let mut s = Server::start(&svc("up", "127.0.0.1:0", "upper.sh", ""));
    let out = ctl(&s, &["stop", "--grace", "1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("stopped\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(s.wait_exit().success());
    assert!(!sock(&s).exists(), "the socket file is removed");
}

#[test]
fn control_socket_refuses_other_users() {
    crate::require_root!();
    let setpriv = crate::need!("setpriv", "util-linux");
    let as_nobody = |s: &Server, args: &[&str]| {
        Command::new(&setpriv)
            .args(["--reuid", "nobody", "--regid", "nogroup", "--clear-groups"])
            .arg(crate::harness::bin())
            .args(args)
            .arg("--control")
            .arg(sock(s))
            .stdin(Stdio::null())
            .output()
            .expect("setpriv")
    };
    let up = svc("up", "127.0.0.1:0", "upper.sh", "");
    let s = Server::start(&up);
    let out = as_nobody(&s, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out.stderr)
    );

    // control_group: status for the group, not reload or stop.
    let s = Server::start(&format!(
        "[global]\ncontrol_group = \"nogroup\"\ncontrol_socket = \"{{dir}}/control.sock\"\n{up}"
    ));
    let out = as_nobody(&s, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\nup ("));
    for req in [&["reload"][..], &["stop"]] {
        let out = as_nobody(&s, req);
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(
            err.contains("permission denied: uid 65534 may only ask for status"),
            "{err}"
        );
    }
    assert_eq!(talk(s.addr("up"), "x\n"), "X\n", "still serving");
}

#[test]
fn silent_and_flooding_control_clients_do_not_hold_up_services() {
    let s = Server::start(&svc("up", "127.0.0.1:0", "upper.sh", ""));
    // One connects and sends nothing.
    let silent = UnixStream::connect(sock(&s)).unwrap();
    // One sends 1 MiB without a newline.
    let mut flood = UnixStream::connect(sock(&s)).unwrap();
    flood.set_write_timeout(Some(PATIENCE)).unwrap();
    flood.set_read_timeout(Some(PATIENCE)).unwrap();
    let flooder = std::thread::spawn(move || {
        let mib = vec![b'x'; 1 << 20];
        // Cut off after 4 KiB: the write fails (EPIPE) or stops there.
        let _ = flood.write_all(&mib);
        let mut answer = Vec::new();
        let _ = flood.read_to_end(&mut answer);
        answer
    });
    // Both connected: a service connection and a status are answered.
    assert_eq!(talk(s.addr("up"), "served\n"), "SERVED\n");
    let out = ctl(&s, &["status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The flooding client is cut off, the silent one closed at its
    // deadline; neither needs anything from this side.
    let answer = flooder.join().unwrap();
    assert!(answer.is_empty() || text(&answer).contains("longer than 4096"));
    let mut silent = silent;
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        silent.read_to_end(&mut rest).unwrap(),
        0,
        "closed without an answer"
    );
    assert_eq!(talk(s.addr("up"), "again\n"), "AGAIN\n");
}
