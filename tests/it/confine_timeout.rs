//! Issue 19, time limits: `timeout` ends a handler's whole process group
//! (SIGTERM, then SIGKILL after `kill_grace`) in every mode, a `wait`
//! service re-arms after it, a reload or a re-exec leaves a running
//! handler's deadline as it was; `idle_timeout` is for connections oxinetd
//! carries (its test: `harden_internal::idle_timeout_closes_a_silent_
//! internal_connection`) and an error on an exec'd service.
//!
//! No test measures time: each waits (up to `PATIENCE`) for log lines and
//! for processes to end; the only figures checked are lower bounds a
//! timer cannot beat (`after_ms` is at least the timeout).

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::harness::{bin, ended, eventually, field, talk, user_line, Dir, Server, PATIENCE};

/// A service running `sh -c SCRIPT`, with `extra` keys.
fn sh_service(name: &str, script: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"{script}\"]\n{extra}\n{}\n",
        user_line()
    )
}

/// The processes whose process group is `pgid`.
fn group(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command name: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if rest.split_whitespace().nth(2).and_then(|g| g.parse().ok()) == Some(pgid) {
            out.push(pid);
        }
    }
    out
}

/// The pid of the handler a `start` line names.
fn pid_of(line: &str) -> i32 {
    field(line, "pid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line}"))
}

/// The handler's group once it has `n` members (the handler and what it
/// started), waiting for its background processes to start.
fn group_of_at_least(pgid: i32, n: usize) -> Vec<i32> {
    let mut members = Vec::new();
    assert!(
        eventually(|| {
            members = group(pgid);
            members.len() >= n
        }),
        "group {pgid} never had {n} processes: {members:?}"
    );
    members
}

fn all_ended(pids: &[i32]) -> bool {
    eventually(|| pids.iter().all(|&p| ended(p)))
}

#[test]
fn timeout_ends_the_handler_and_every_process_of_its_group() {
    let config = format!(
        "{}{}",
        sh_service("hang", "sleep 3600 & sleep 3600", "timeout = 1"),
        sh_service("quick", "echo hi", "timeout = 1"),
    );
    let s = Server::start(&config);
    // A handler that ends in time is not touched: no timeout line, no
    // reason on its exit line.
    assert_eq!(talk(s.addr("quick"), ""), "hi\n");
    let quick = s.expect_line(&["exit service=quick "]);
    assert_eq!(field(&quick, "status"), Some("0"), "{quick}");
    assert_eq!(field(&quick, "reason"), None, "{quick}");

    let mut client = TcpStream::connect(s.addr("hang")).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=hang "]));
    // The shell and its background sleep (and the foreground one, unless
    // the shell exec'd it), all in the handler's group.
    let members = group_of_at_least(pid, 2);
    assert!(members.contains(&pid), "{members:?}");

    let timeout = s.expect_line(&["timeout service=hang "]);
    assert_eq!(pid_of(&timeout), pid, "{timeout}");
    assert_eq!(field(&timeout, "signal"), Some("SIGTERM"), "{timeout}");
    let after: u64 = field(&timeout, "after_ms").unwrap().parse().unwrap();
    assert!(after >= 1000, "{timeout}");
    let exit = s.expect_line(&["exit service=hang "]);
    assert_eq!(pid_of(&exit), pid, "{exit}");
    assert_eq!(field(&exit, "signal"), Some("SIGTERM"), "{exit}");
    assert_eq!(field(&exit, "reason"), Some("timeout"), "{exit}");
    // Every process of the group ended, not just the handler.
    assert!(all_ended(&members), "still running: {:?}", group(pid));
    // And its client's connection is closed.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(s.count(&["timeout service="]), 1, "{}", s.log());
}

#[test]
fn a_handler_ignoring_sigterm_gets_sigkill_after_kill_grace() {
    let config = sh_service(
        "stubborn",
        "trap '' TERM; sleep 3600 & sleep 3600",
        "timeout = 1\nkill_grace = 1",
    );
    let s = Server::start(&config);
    let _client = TcpStream::connect(s.addr("stubborn")).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=stubborn "]));
    let members = group_of_at_least(pid, 2);
    s.expect_line(&["timeout service=stubborn ", "signal=SIGTERM"]);
    let kill = s.expect_line(&["timeout service=stubborn ", "signal=SIGKILL"]);
    assert_eq!(pid_of(&kill), pid, "{kill}");
    // SIGKILL comes kill_grace after SIGTERM, which came after timeout.
    let after: u64 = field(&kill, "after_ms").unwrap().parse().unwrap();
    assert!(after >= 2000, "{kill}");
    let exit = s.expect_line(&["exit service=stubborn "]);
    assert_eq!(field(&exit, "signal"), Some("SIGKILL"), "{exit}");
    assert_eq!(field(&exit, "reason"), Some("timeout"), "{exit}");
    assert!(all_ended(&members), "still running: {:?}", group(pid));
}

/// A handler that dies at SIGTERM but leaves a process of its group that
/// ignores it: that one is killed when the handler is reaped (the group
/// can only be named safely while the handler's pid is not free), not
/// after a kill_grace of an hour.
#[test]
fn what_a_timed_out_handler_leaves_in_its_group_is_killed_when_it_is_reaped() {
    let config = sh_service(
        "leaver",
        "(trap '' TERM; exec sleep 3600) & sleep 3600",
        "timeout = 1\nkill_grace = 3600",
    );
    let s = Server::start(&config);
    let _client = TcpStream::connect(s.addr("leaver")).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=leaver "]));
    let members = group_of_at_least(pid, 2);
    let exit = s.expect_line(&["exit service=leaver "]);
    assert_eq!(field(&exit, "reason"), Some("timeout"), "{exit}");
    assert!(all_ended(&members), "still running: {:?}", group(pid));
    assert_eq!(
        s.count(&["timeout service=leaver ", "signal=SIGKILL"]),
        0,
        "{}",
        s.log()
    );
}

/// The handler of a stream `wait` service that never accepts is timed out,
/// and the listener re-arms: the connection it left waiting, and the next
/// one, are served by the handlers after it.
#[test]
fn a_timed_out_wait_handler_re_arms_its_listener() {
    let dir = Dir::new();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir.write(
        "wait-once.sh",
        "# The first handler never accepts; the others serve one connection.\n\
         if mkdir {dir}/state/first 2>/dev/null; then exec sleep 3600; fi\n\
         exec {dir}/activation.py\n",
    );
    let config = format!(
        "[[service]]\nname = \"w\"\nlisten = \"127.0.0.1:0\"\nwait = true\n\
         server = \"/bin/sh\"\nargs = [\"{}/wait-once.sh\"]\ntimeout = 1\n{}\n",
        dir.path().display(),
        user_line()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let addr = s.addr("w");
    let first = TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(PATIENCE)).unwrap();
    let timeout = s.expect_line(&["timeout service=w ", "signal=SIGTERM"]);
    let exit = s.expect_line(&["exit service=w ", "reason=timeout"]);
    assert_eq!(field(&exit, "pid"), field(&timeout, "pid"), "{exit}");
    for mut conn in [first, TcpStream::connect(addr).unwrap()] {
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut line = String::new();
        BufReader::new(&mut conn).read_line(&mut line).unwrap();
        assert!(line.starts_with("fds=0,1,2,3 "), "{line:?}");
    }
    assert!(
        eventually(|| s.count(&["start service=w "]) == 3),
        "{}",
        s.log()
    );
    assert_eq!(s.count(&["timeout service=w "]), 1, "{}", s.log());
    assert_eq!(s.count(&["looping"]), 0, "{}", s.log());
}

#[test]
fn timeout_holds_for_dgram_nowait_handlers() {
    let config = format!(
        "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\n\
         server = \"/bin/sh\"\nargs = [\"-c\", \"sleep 3600 & sleep 3600\"]\ntimeout = 1\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"x", s.addr("u")).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=u "]));
    let members = group_of_at_least(pid, 2);
    s.expect_line(&["timeout service=u ", "signal=SIGTERM"]);
    let exit = s.expect_line(&["exit service=u "]);
    assert_eq!(pid_of(&exit), pid, "{exit}");
    assert_eq!(field(&exit, "reason"), Some("timeout"), "{exit}");
    assert!(all_ended(&members), "still running: {:?}", group(pid));
}

/// A reload that removes the service's timeout leaves a running handler
/// the deadline it started with.
#[test]
fn a_running_handler_keeps_its_deadline_across_a_reload() {
    let with = sh_service("hang", "sleep 3600", "timeout = 4");
    let s = Server::start(&with);
    let _client = TcpStream::connect(s.addr("hang")).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=hang "]));
    let reload = s.reload(&sh_service("hang", "sleep 3600", ""));
    assert!(reload.contains(" reload "), "{reload}");
    let timeout = s.expect_line(&["timeout service=hang "]);
    assert_eq!(pid_of(&timeout), pid, "{timeout}");
    let lines = s.lines();
    let at = |l: &str| lines.iter().position(|x| x == l).unwrap();
    // The reload came first (else this test proves nothing).
    assert!(at(&reload) < at(&timeout), "{}", s.log());
    s.expect_line(&["exit service=hang ", "reason=timeout"]);
}

/// SIGUSR2: the new image adopts the handler with its deadline.
#[test]
fn a_re_exec_keeps_an_adopted_handlers_timeout() {
    let s = Server::start(&sh_service("hang", "sleep 3600", "timeout = 4"));
    let _client = TcpStream::connect(s.addr("hang")).unwrap();
    let pid = pid_of(&s.expect_line(&["start service=hang "]));
    s.signal(Signal::SIGUSR2);
    let upgrade = s.expect_line(&["upgrade exe="]);
    assert_eq!(field(&upgrade, "handlers"), Some("1"), "{upgrade}");
    let timeout = s.expect_line(&["timeout service=hang "]);
    assert_eq!(pid_of(&timeout), pid, "{timeout}");
    let after: u64 = field(&timeout, "after_ms").unwrap().parse().unwrap();
    assert!(after >= 4000, "{timeout}");
    let lines = s.lines();
    let at = |l: &str| lines.iter().position(|x| x == l).unwrap();
    // Logged by the new image (else this test proves nothing).
    assert!(at(&upgrade) < at(&timeout), "{}", s.log());
    let exit = s.expect_line(&["exit service=hang "]);
    assert_eq!(pid_of(&exit), pid, "{exit}");
    assert_eq!(field(&exit, "reason"), Some("timeout"), "{exit}");
}

/// `oxinetd check -f NAME` in `dir`: (exit code, stderr).
fn check(dir: &Dir, name: &str) -> (i32, String) {
    let out = Command::new(bin())
        .args(["check", "-f", name])
        .current_dir(dir.path())
        .output()
        .expect("run oxinetd check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn idle_timeout_on_an_exec_d_service_and_kill_grace_without_timeout_are_errors() {
    let dir = Dir::new();
    let user = user_line();
    dir.write(
        "bad.toml",
        &format!(
            "[[service]]\nname = \"cat\"\nlisten = \"127.0.0.1:7000\"\nserver = \"/bin/cat\"\n\
             {user}\nidle_timeout = 60\n\n\
             [[service]]\nname = \"grace\"\nlisten = \"127.0.0.1:7001\"\nserver = \"/bin/cat\"\n\
             {user}\nkill_grace = 10\n\n\
             [[service]]\nname = \"zero\"\nlisten = \"127.0.0.1:7002\"\nserver = \"/bin/cat\"\n\
             {user}\ntimeout = 0\n\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:7003\"\nserver = \"internal:echo\"\n\
             timeout = 10\n"
        ),
    );
    let (code, stderr) = check(&dir, "bad.toml");
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "bad.toml:6:16: idle_timeout: applies to connections oxinetd carries itself \
         (internal services), not to an exec'd handler's, whose socket is its own; \
         timeout bounds how long a handler runs\n\
         bad.toml:13:14: kill_grace: the service has no timeout (kill_grace is how long \
         timeout's SIGTERM waits before SIGKILL); set timeout or remove kill_grace\n\
         bad.toml:20:11: timeout: expected more than 0 seconds (leave it out for no limit)\n\
         bad.toml:26:11: timeout: has no meaning for an internal service (it runs inside oxinetd)\n\
         bad.toml: 4 errors\n"
    );

    // In [defaults] all three are fine: each applies where it means
    // something.
    dir.write(
        "ok.toml",
        &format!(
            "[defaults]\nidle_timeout = 30\ntimeout = 600\nkill_grace = 2\n\n\
             [[service]]\nname = \"cat\"\nlisten = \"127.0.0.1:7000\"\nserver = \"/bin/cat\"\n{user}\n\n\
             [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:7003\"\nserver = \"internal:echo\"\n\
             idle_timeout = 5\n"
        ),
    );
    let (code, stderr) = check(&dir, "ok.toml");
    assert_eq!((code, stderr.as_str()), (0, ""));
}
