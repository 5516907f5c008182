//! Logging: syslog datagrams in the documented grammar, a real rsyslogd,
//! and the stderr fallback.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{talk, user_line, Dir, Server, PATIENCE};

fn config() -> String {
    format!(
        "[[service]]\nname = \"upper\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\nargs = [\"-c\", \"echo oops >&2; tr a-z A-Z\"]\n{}\n",
        user_line()
    )
}

/// Read syslog datagrams until one contains every part.
fn recv_until(sock: &UnixDatagram, seen: &mut Vec<String>, parts: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    if let Some(l) = seen.iter().find(|l| parts.iter().all(|p| l.contains(p))) {
        return l.clone();
    }
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let line = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(line.clone());
            if parts.iter().all(|p| line.contains(p)) {
                return line;
            }
        }
    }
    panic!(
        "no syslog message with {parts:?}; got:\n{}",
        seen.join("\n")
    );
}

#[test]
fn syslog_messages_follow_the_grammar() {
    let dir = Dir::new();
    let path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let arg = format!("--syslog-socket={}", path.display());
    let s = Server::spawn(dir, &config(), &[&arg], |_| {});
    let mut seen = Vec::new();
    let pid = s.pid();
    let head = format!("<30>oxinetd[{pid}]: "); // daemon.info
    let listen = recv_until(&sock, &mut seen, &["listen service=upper"]);
    assert!(listen.starts_with(&head), "{listen}");
    let addr = crate::harness::field(&listen, "addr")
        .unwrap()
        .parse()
        .unwrap();
    recv_until(&sock, &mut seen, &["ready listeners=1"]);
    assert_eq!(talk(addr, "abc\n"), "ABC\n");
    let start = recv_until(
        &sock,
        &mut seen,
        &["start service=upper", "peer=127.0.0.1:"],
    );
    let child = crate::harness::field(&start, "pid").unwrap().to_string();
    let line = recv_until(&sock, &mut seen, &["stderr service=upper", "line=oops"]);
    assert!(line.contains(&format!("pid={child} ")), "{line}");
    let exit = recv_until(&sock, &mut seen, &["exit service=upper", "status=0"]);
    assert!(
        exit.starts_with(&head) && exit.contains(&format!("pid={child} ")),
        "{exit}"
    );
    assert!(
        crate::harness::field(&exit, "duration_ms").is_some(),
        "{exit}"
    );
    // Nothing went to stderr while syslog worked.
    assert!(s.lines().is_empty(), "{}", s.log());
}

#[test]
fn unreachable_syslog_falls_back_to_stderr() {
    let s = Server::start_in(
        Dir::new(),
        &config(),
        &["--syslog-socket=/nonexistent/log.sock"],
        |_| {},
    );
    s.expect_line(&[
        "warning",
        "unable to connect to syslog at /nonexistent/log.sock",
    ]);
    assert_eq!(talk(s.addr("upper"), "x\n"), "X\n");
    s.expect_line(&["exit service=upper", "status=0"]);
}

struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_rsyslogd_receives_the_lines() {
    let rsyslogd = crate::need!("rsyslogd", "rsyslog");
    let dir = Dir::new();
    let d = dir.path().display().to_string();
    let conf = dir.write(
        "rsyslog.conf",
        r#"
global(workDirectory="{dir}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{dir}/log.sock" RateLimit.Interval="0")
template(name="plain" type="string" string="%syslogfacility-text%.%syslogseverity-text% %programname%[%procid%]:%msg%\n")
*.* action(type="omfile" file="{dir}/messages" template="plain")
"#,
    );
    let daemon = Rsyslogd(
        Command::new(rsyslogd)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(format!("{d}/rsyslogd.pid"))
            .stdin(Stdio::null())
            .spawn()
            .expect("start rsyslogd"),
    );
    let sock = format!("{d}/log.sock");
    let deadline = Instant::now() + PATIENCE;
    while !std::path::Path::new(&sock).exists() {
        assert!(
            Instant::now() < deadline,
            "rsyslogd did not create its socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let arg = format!("--syslog-socket={sock}");
    let s = Server::spawn(dir, &config(), &[&arg], |_| {});
    let messages = format!("{d}/messages");
    let wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = std::fs::read_to_string(&messages).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.contains(needle)) {
                return l.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd never wrote {needle:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let pid = s.pid();
    let listen = wait_for("listen service=upper");
    assert!(
        listen.starts_with(&format!(
            "daemon.info oxinetd[{pid}]: listen service=upper proto=tcp addr=127.0.0.1:"
        )),
        "{listen}"
    );
    let addr = crate::harness::field(&listen, "addr")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(talk(addr, "real\n"), "REAL\n");
    let exit = wait_for("exit service=upper");
    assert!(
        exit.starts_with(&format!(
            "daemon.info oxinetd[{pid}]: exit service=upper pid="
        )),
        "{exit}"
    );
    drop(s);
    drop(daemon);
}

#[test]
fn log_on_success_and_failure_choose_the_fields() {
    let config = format!(
        "[[service]]\nname = \"host-only\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nlog_on_success = [\"HOST\"]\nlog_on_failure = [\"ATTEMPT\"]\nno_access = \"127.0.0.3\"\n{user}\n\n\
         [[service]]\nname = \"quiet\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nlog_on_success = []\nlog_on_failure = []\nno_access = \"127.0.0.3\"\n{user}\n\n\
         [[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\nlog_on_success = [\"TRAFFIC\"]\n",
        user = user_line()
    );
    let s = Server::start(&config);
    assert_eq!(talk(s.addr("host-only"), "a"), "a");
    let start = s.expect_line(&["start service=host-only"]);
    assert!(
        start.contains(" peer=127.0.0.1:") && !start.contains("pid="),
        "{start}"
    );
    let exit = s.expect_line(&["exit service=host-only"]);
    assert!(exit.ends_with("exit service=host-only"), "{exit}");
    assert_eq!(
        crate::harness::talk_from("127.0.0.3", s.addr("host-only"), ""),
        ""
    );
    let refuse = s.expect_line(&["refuse service=host-only"]);
    assert!(
        refuse.ends_with("refuse service=host-only reason=no_access rule=127.0.0.3/32"),
        "{refuse}"
    );

    assert_eq!(talk(s.addr("quiet"), "q"), "q");
    assert_eq!(
        crate::harness::talk_from("127.0.0.3", s.addr("quiet"), ""),
        ""
    );
    assert_eq!(talk(s.addr("echo"), "four"), "four");
    let done = s.expect_line(&["done service=echo"]);
    assert!(
        done.ends_with("done service=echo bytes_in=4 bytes_out=4"),
        "{done}"
    );
    // By now the quiet service's lines would have been logged.
    assert_eq!(
        s.count(&["service=quiet"]) - s.count(&["listen service=quiet"]),
        0,
        "{}",
        s.log()
    );
}

/// Issue 18: `--log stderr` lines start with the local time (RFC 3339,
/// milliseconds), unless stderr is the journal, which stamps them itself:
/// systemd says so with JOURNAL_STREAM, the device and inode of the stream,
/// and a stderr elsewhere that merely inherited the variable is stamped.
#[test]
fn stderr_lines_carry_a_timestamp_unless_stderr_is_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let stamped = |line: &str| {
        let b = line.as_bytes();
        b.len() > 30
            && b[..4].iter().all(u8::is_ascii_digit)
            && (b[4], b[10], b[19]) == (b'-', b'T', b'.')
            && line[29..].starts_with(" oxinetd[")
    };
    // A pipe, with JOURNAL_STREAM naming something else.
    let s = Server::start_in(Dir::new(), "", &[], |cmd| {
        cmd.env("JOURNAL_STREAM", "1:1");
    });
    let ready = s.expect_line(&["ready listeners=0"]);
    assert!(stamped(&ready), "{ready}");
    drop(s);

    // stderr is the "journal": a file whose device and inode are given.
    let dir = Dir::new();
    let conf = dir.write("oxinetd.toml", "");
    let log_path = dir.path().join("journal");
    let log = std::fs::File::create(&log_path).unwrap();
    let meta = log.metadata().unwrap();
    let mut child = Command::new(crate::harness::bin())
        .arg("-f")
        .arg(&conf)
        .args(["--log", "stderr"])
        .arg("--control")
        .arg(dir.path().join("control.sock"))
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let ready = crate::harness::eventually(|| read().contains(" ready listeners=0"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(ready, "{}", read());
    let text = read();
    // Each line starts with its priority instead (issue 22).
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("<6>oxinetd[") || l.starts_with("<4>oxinetd[")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>") && l.contains(" idle ")),
        "{text}"
    );
}

/// When stderr is the journal (`JOURNAL_STREAM` names its device and
/// inode), each line starts with its priority, `<N>` (sd-daemon(3)), and
/// no timestamp; the rest of the line is the same grammar. The "journal"
/// here is a socket pair the test holds, as journald's stream is.
#[test]
fn journal_lines_carry_their_priority() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream;

    let (journal, theirs) = UnixStream::pair().unwrap();
    let st = nix::sys::stat::fstat(&theirs).unwrap();
    let stream = format!("{}:{}", st.st_dev, st.st_ino);
    let dir = Dir::new();
    // One good service (info lines), one refused by its value (an error);
    // syslog unreachable gives the warning.
    let config = dir.write(
        "oxinetd.toml",
        "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n\n\
         [[service]]\nname = \"broken\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\ninstances = 0\n",
    );
    let mut child = Command::new(crate::harness::bin())
        .arg("-f")
        .arg(&config)
        .arg("--syslog-socket=/nonexistent/log.sock")
        .arg("--control")
        .arg(dir.path().join("control.sock"))
        .env("JOURNAL_STREAM", &stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::os::fd::OwnedFd::from(theirs))
        .spawn()
        .expect("start oxinetd");
    journal.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(&journal);
    while !lines.iter().any(|l: &String| l.contains(" ready ")) {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(n) if n > 0 => lines.push(line.trim_end().to_string()),
            _ => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    let find = |part: &str| {
        lines
            .iter()
            .find(|l| l.contains(part))
            .unwrap_or_else(|| panic!("no line with {part:?}:\n{log}"))
    };
    let pid = child.id();
    assert!(
        find("listen service=echo ").starts_with(&format!("<6>oxinetd[{pid}]: listen ")),
        "{log}"
    );
    assert!(
        find("ready ").starts_with(&format!("<6>oxinetd[{pid}]: ready ")),
        "{log}"
    );
    assert!(
        find("unable to connect to syslog").starts_with(&format!("<4>oxinetd[{pid}]: warning ")),
        "{log}"
    );
    assert!(
        find("config-error").starts_with(&format!("<3>oxinetd[{pid}]: config-error ")),
        "{log}"
    );
    // Every line has its priority, none a timestamp.
    assert!(
        lines
            .iter()
            .all(|l| matches!(l.get(..3), Some("<3>" | "<4>" | "<6>"))),
        "{log}"
    );
}
