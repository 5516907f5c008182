//! Issue 16, section 6: signals an admin may send, handlers that ignore
//! SIGTERM, and Unicode controls in log lines.

use std::net::TcpStream;

use nix::sys::signal::Signal;

use crate::harness::{ended, field, talk, user_line, Server};

fn cat(name: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\n{}\n",
        user_line()
    )
}

/// Whether `pid` has ended (gone, or a zombie waiting for its reaper).
#[test]
fn usr1_alrm_quit_and_others_do_not_kill_the_supervisor() {
    let config = format!(
        "{}[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\ninstances = 7\n",
        cat("e")
    );
    let mut s = Server::start(&config);
    let addr = s.addr("e");
    for sig in [
        Signal::SIGUSR1,
        Signal::SIGALRM,
        Signal::SIGQUIT,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGTSTP,
        Signal::SIGPIPE,
        Signal::SIGPWR,
        Signal::SIGXFSZ,
        Signal::SIGXCPU,
        Signal::SIGSTKFLT,
        Signal::SIGWINCH,
    ] {
        s.signal(sig);
        assert_eq!(talk(addr, "hi\n"), "hi\n", "after {sig}:\n{}", s.log());
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid())).unwrap();
        assert!(!stat.contains(") T "), "stopped by {sig}");
    }
    // USR1 logged one state line per service and a summary.
    let e = s.expect_line(&["state service=e ", "mode=stream-nowait"]);
    // (the connection after USR1 may be running when the line is written)
    assert!(
        field(&e, "running").is_some_and(|r| r.ends_with("/256")),
        "{e}"
    );
    assert_eq!(field(&e, "paused"), Some("false"), "{e}");
    assert!(e.contains(&format!("listen={addr}/tcp")), "{e}");
    let echo = s.expect_line(&["state service=echo ", "mode=internal"]);
    assert_eq!(field(&echo, "running"), Some("0/7"), "{echo}");
    let summary = s.expect_line(&["state services=2 "]);
    assert_eq!(field(&summary, "listeners"), Some("2"), "{summary}");
    assert_eq!(s.count(&["state service="]), 2);
    // TERM still stops it.
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
}

#[test]
fn usr1_state_counts_running_handlers() {
    let config = format!(
        "[[service]]\nname = \"slow\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sleep\"\nargs = [\"30\"]\ninstances = 3\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    let _c = TcpStream::connect(s.addr("slow")).unwrap();
    s.expect_line(&["start service=slow"]);
    s.signal(Signal::SIGUSR1);
    let line = s.expect_line(&["state service=slow "]);
    assert_eq!(field(&line, "running"), Some("1/3"), "{line}");
    s.expect_line(&["state services=1 ", "handlers=1 "]);
}

#[test]
fn a_handler_ignoring_sigterm_is_killed_after_shutdown_grace() {
    // The handler and its child ignore TERM (the child inherits the ignore).
    let config = format!(
        "[global]\nshutdown_grace = 0.5\n[[service]]\nname = \"stubborn\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\nargs = [\"-c\", \"trap '' TERM; sleep 60 & echo child$! >&2; wait; wait\"]\nstderr = \"log\"\n{}\n",
        user_line()
    );
    let mut s = Server::start(&config);
    let _c = TcpStream::connect(s.addr("stubborn")).unwrap();
    let start = s.expect_line(&["start service=stubborn"]);
    let pid: i32 = field(&start, "pid").unwrap().parse().unwrap();
    let line = s.expect_line(&["stderr service=stubborn", "line=child"]);
    let child: i32 = field(&line, "line")
        .and_then(|l| l.strip_prefix("child"))
        .unwrap()
        .parse()
        .unwrap();
    s.signal(Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0));
    s.expect_line(&[
        "killed service=stubborn",
        &format!("pid={pid} "),
        "signal=SIGTERM",
    ]);
    s.expect_line(&[
        "killed service=stubborn",
        &format!("pid={pid} "),
        "signal=SIGKILL",
    ]);
    let stopped = s.expect_line(&["stopped"]);
    assert!(!stopped.contains("handlers_left"), "{stopped}");
    // The supervisor reaped the handler before it exited: no trace of it.
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "handler {pid} outlived the supervisor"
    );
    // Its group went with it (the child may wait a moment for its reaper).
    assert!(
        crate::harness::eventually(|| ended(child)),
        "handler's child {child} survived"
    );
}

#[test]
fn unicode_line_separators_and_bidi_controls_in_stderr_are_escaped() {
    // U+2028, U+2029, U+202E, U+FEFF, U+200F, U+2066 and NEL (U+0085).
    let config = format!(
        "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\nargs = [\"-c\", '''printf 'a\\342\\200\\250b\\342\\200\\251c\\342\\200\\256d\\357\\273\\277e\\342\\200\\217f\\342\\201\\246g\\302\\205h\\n' >&2''']\nstderr = \"log\"\n{}\n",
        user_line()
    );
    let s = Server::start(&config);
    talk(s.addr("u"), "");
    let line = s.expect_line(&["stderr service=u"]);
    assert_eq!(
        field(&line, "line"),
        Some(r#""a\u{2028}b\u{2029}c\u{202e}d\u{feff}e\u{200f}f\u{2066}g\x85h""#),
        "{line}"
    );
    let log = s.log();
    for c in [
        '\u{2028}', '\u{2029}', '\u{202e}', '\u{feff}', '\u{200f}', '\u{2066}', '\u{85}',
    ] {
        assert!(!log.contains(c), "raw U+{:04X} in the log", c as u32);
    }
}
