//! Limits that hold under abuse: instances and max_processes as
//! backpressure, per_source and cps as refusals, and exhaustion of fds and
//! processes, with the supervisor's CPU measured from /proc.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{
    accept_queue, connect_from, eventually, need, talk_from, user_line, Dir, Server,
};

/// A handler that answers its first line and exits: it runs exactly as
/// long as its client wants.
fn line_service(name: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\nargs = [\"-c\", \"read x; echo \\\"got $x\\\"\"]\n{}\n{extra}\n",
        user_line()
    )
}

fn finish(mut c: TcpStream, line: &str) -> String {
    c.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn instances_is_backpressure_not_refusal() {
    let s = Server::start(&line_service("two", "instances = 2"));
    let addr = s.addr("two");
    let a = connect_from("127.0.0.1", addr).unwrap();
    let b = connect_from("127.0.0.1", addr).unwrap();
    s.expect_line(&["start service=two"]);
    assert!(eventually(|| s.count(&["start service=two"]) == 2));
    // The third waits in the kernel's backlog: accepted by nobody yet.
    let c = connect_from("127.0.0.1", addr).unwrap();
    assert!(
        eventually(|| accept_queue(addr) == 1),
        "third connection not queued"
    );
    assert_eq!(s.count(&["start service=two"]), 2);
    assert_eq!(finish(a, "a"), "got a\n");
    // A handler exited: the queued connection is taken and served.
    assert_eq!(finish(c, "c"), "got c\n");
    assert_eq!(finish(b, "b"), "got b\n");
    assert_eq!(s.count(&["refuse"]), 0);
}

#[test]
fn per_source_refuses_the_extra_connection_of_one_client() {
    let s = Server::start(&line_service("ps", "per_source = 1"));
    let addr = s.addr("ps");
    let first = connect_from("127.0.0.2", addr).unwrap();
    s.expect_line(&["start service=ps", "peer=127.0.0.2:"]);
    let mut second = connect_from("127.0.0.2", addr).unwrap();
    let mut out = Vec::new();
    let _ = second.read_to_end(&mut out);
    assert!(out.is_empty());
    s.expect_line(&[
        "refuse service=ps",
        "peer=127.0.0.2:",
        "reason=per_source limit=1",
    ]);
    // Another client is not affected, and the first one is still served.
    let other = connect_from("127.0.0.3", addr).unwrap();
    assert_eq!(finish(other, "3"), "got 3\n");
    assert_eq!(finish(first, "2"), "got 2\n");
    // Its handler reaped, the client may connect again. (The reply can reach
    // the client before the supervisor has reaped the handler: wait for it.)
    assert!(eventually(|| s.count(&["exit service=ps"]) == 2));
    assert_eq!(
        finish(connect_from("127.0.0.2", addr).unwrap(), "again"),
        "got again\n"
    );
}

/// `per_source_rate = [3, 60]`: the fourth connection of one client within
/// the minute is refused and logged with the reason; another client still
/// gets in, and the service is not paused for anyone.
#[test]
fn per_source_rate_refuses_a_client_past_its_count_in_the_window() {
    let s = Server::start(&line_service("psr", "per_source_rate = [3, 60]"));
    let addr = s.addr("psr");
    for i in 0..3 {
        let c = connect_from("127.0.0.1", addr).unwrap();
        assert_eq!(finish(c, &i.to_string()), format!("got {i}\n"));
    }
    let mut fourth = connect_from("127.0.0.1", addr).unwrap();
    let mut out = Vec::new();
    let _ = fourth.read_to_end(&mut out);
    assert!(out.is_empty(), "{out:?}");
    let refuse = s.expect_line(&["refuse service=psr", "peer=127.0.0.1:"]);
    assert!(
        refuse.ends_with(" reason=per_source_rate limit=3/60s"),
        "{refuse}"
    );
    let other = connect_from("127.0.0.2", addr).unwrap();
    assert_eq!(finish(other, "other"), "got other\n");
    assert!(eventually(|| s.count(&["start service=psr"]) == 4));
    assert_eq!(s.count(&["rate-pause"]), 0, "{}", s.log());
    // Refused attempts count too: the first client stays refused.
    let mut again = connect_from("127.0.0.1", addr).unwrap();
    let _ = again.read_to_end(&mut out);
    assert!(out.is_empty(), "{out:?}");
    assert!(eventually(|| s.count(&["reason=per_source_rate"]) == 2));
}

/// FreeBSD inetd.conf's `nowait/max-child/max-conn-per-ip-per-min`: the
/// per-minute field is enforced per client, as `per_source_rate = [N,
/// 60]`, and `import` writes it so.
#[test]
fn an_inetd_conf_per_ip_per_minute_field_limits_each_client() {
    let user = match crate::harness::is_root() {
        true => "nobody".to_string(),
        false => nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .expect("the invoking user's name"),
    };
    let inetd = format!("127.0.0.1:0 stream tcp nowait//2 {user} /bin/cat cat\n");
    let s = Server::start_in(Dir::new(), &inetd, &["--format", "inetd"], |_| {});
    let addr = s.addr("0-tcp");
    for i in 0..2 {
        assert_eq!(
            talk_from("127.0.0.1", addr, &format!("{i}\n")),
            format!("{i}\n")
        );
    }
    assert_eq!(talk_from("127.0.0.1", addr, "3\n"), "");
    s.expect_line(&[
        "refuse service=0-tcp",
        "peer=127.0.0.1:",
        "reason=per_source_rate limit=2/60s",
    ]);
    assert_eq!(talk_from("127.0.0.2", addr, "other\n"), "other\n");
    let out = Command::new(crate::harness::bin())
        .args(["import", "--format", "inetd"])
        .arg(&s.config)
        .output()
        .unwrap();
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(toml.contains("\nper_source_rate = [2, 60]\n"), "{toml}");
    assert!(!toml.contains("instances"), "{toml}");
}

#[test]
fn cps_pauses_the_service_then_it_resumes_by_itself() {
    let s = Server::start(&line_service("rate", "cps = [3, 1]"));
    let addr = s.addr("rate");
    let held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.1", addr).unwrap())
        .collect();
    assert!(eventually(|| s.count(&["start service=rate"]) == 3));
    // The fourth within the second is refused and the service pauses.
    let mut fourth = connect_from("127.0.0.1", addr).unwrap();
    let mut out = Vec::new();
    let _ = fourth.read_to_end(&mut out);
    s.expect_line(&["rate-pause service=rate", "cps=3", "paused_ms=1000"]);
    s.expect_line(&["refuse service=rate", "reason=cps limit=3"]);
    // While paused a new client waits in the backlog; after the pause it is
    // served without anyone doing anything.
    let waiting = connect_from("127.0.0.1", addr).unwrap();
    s.expect_line(&["resume service=rate reason=rate"]);
    assert_eq!(finish(waiting, "later"), "got later\n");
    for (i, c) in held.into_iter().enumerate() {
        assert_eq!(finish(c, &i.to_string()), format!("got {i}\n"));
    }
}

#[test]
fn max_processes_is_shared_by_all_services() {
    let config = format!(
        "[global]\nmax_processes = 1\n{}{}",
        line_service("one", ""),
        line_service("two", "")
    );
    let s = Server::start(&config);
    let a = connect_from("127.0.0.1", s.addr("one")).unwrap();
    s.expect_line(&["start service=one"]);
    let b = connect_from("127.0.0.1", s.addr("two")).unwrap();
    assert!(eventually(|| accept_queue(s.addr("two")) == 1));
    assert_eq!(s.count(&["start service=two"]), 0);
    assert_eq!(finish(a, "a"), "got a\n");
    assert_eq!(finish(b, "b"), "got b\n");
}

fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Run the server under `prlimit` (and as nobody when `as_nobody`).
/// Start under `prlimit` limits, as uid/gid `user` when given.
fn limited(dir: Dir, config: &str, prlimit: &[&str], user: Option<&str>) -> Server {
    let prlimit_bin = need("prlimit", "util-linux");
    let setpriv = need("setpriv", "util-linux");
    let prlimit: Vec<String> = prlimit.iter().map(|s| s.to_string()).collect();
    Server::start_in(dir, config, &[], move |cmd| {
        let prog = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let mut c = Command::new(&prlimit_bin);
        c.args(&prlimit).arg("--");
        if let Some(user) = user {
            c.arg(&setpriv)
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={user}"))
                .args(["--clear-groups", "--"]);
        }
        c.arg(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        *cmd = c;
    })
}

#[test]
fn out_of_fds_the_loop_does_not_spin_and_recovers() {
    // No per-service limit in the way (internal services have defaults
    // sized from the fd limit): only the fd reserve stops the flood.
    let config =
        "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n\
                  instances = 1000\nper_source = 1000\n";
    let s = limited(Dir::new(), config, &["--nofile=40:40"], None);
    let addr = s.addr("echo");
    // Hold more connections than the supervisor has fds for.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            held.push(c);
        }
    }
    // Internal connections leave the last descriptors to exec'd services
    // (harden_internal.rs): refused before the supervisor runs out.
    s.expect_line(&["refuse service=echo", "reason=fd_reserve"]);
    // Under sustained pressure, the supervisor sleeps instead of spinning.
    let cpu_before = cpu_seconds(s.pid());
    let wall = Instant::now();
    let deadline = wall + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            held.push(c);
        }
        if held.len() > 400 {
            held.drain(..200);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let cpu = cpu_seconds(s.pid()) - cpu_before;
    let elapsed = wall.elapsed().as_secs_f64();
    eprintln!("supervisor CPU during the fd flood: {cpu:.2}s over {elapsed:.2}s");
    assert!(
        cpu < 0.5 * elapsed,
        "supervisor used {cpu:.2}s CPU in {elapsed:.2}s"
    );
    assert_eq!(s.count(&["exhausted service=echo"]), 0, "{}", s.log());
    // Pressure gone, the service works again by itself.
    drop(held);
    assert!(eventually(|| {
        matches!(crate::harness::exchange(addr, b"back\n"), Ok(out) if out == b"back\n")
    }));
}

#[test]
fn spawn_failures_back_off_and_the_service_recovers() {
    crate::require_root!();
    // RLIMIT_NPROC counts every process of the uid, so run as one that no
    // other test uses (no passwd entry needed): oxinetd plus 3 handlers.
    let config = line_service("held", "");
    let s = limited(
        Dir::new(),
        &config.replace("user = \"nobody\"\n", ""),
        &["--nproc=4"],
        Some("64999"),
    );
    let addr = s.addr("held");
    let held: Vec<TcpStream> = (0..12)
        .filter_map(|_| connect_from("127.0.0.1", addr).ok())
        .collect();
    s.expect_line(&["error service=held", "unable to clone"]);
    let cpu_before = cpu_seconds(s.pid());
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = cpu_seconds(s.pid()) - cpu_before;
    assert!(
        cpu < 0.5 * wall.elapsed().as_secs_f64(),
        "supervisor busy: {cpu:.2}s"
    );
    drop(held);
    // Its handlers gone, the service forks again.
    assert!(eventually(|| {
        // While forks still fail the connection is closed: try again.
        let Ok(mut c) = connect_from("127.0.0.1", addr) else {
            return false;
        };
        let mut out = String::new();
        c.write_all(b"ok\n").is_ok() && c.read_to_string(&mut out).is_ok() && out == "got ok\n"
    }));
}
