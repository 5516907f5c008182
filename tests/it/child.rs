//! What a handler process gets: fds, signals, session, cwd, identity.

use std::process::Command;

use crate::harness::{bin, talk, user_line, Dir, Server};
use crate::require_root;

fn one(server: &str, args: &str, extra: &str) -> (Server, String) {
    let config = format!(
        "[[service]]\nname = \"h\"\nlisten = \"127.0.0.1:0\"\nserver = \"{server}\"\nargs = {args}\n{extra}\n"
    );
    let s = Server::start(&config);
    let out = talk(s.addr("h"), "");
    (s, out)
}

#[test]
fn only_fds_0_1_2_are_open_in_the_handler() {
    for stderr in ["log", "null", "socket"] {
        let (_s, out) = one(
            "/bin/sh",
            r#"["-c", "ls /proc/$$/fd"]"#,
            &format!("stderr = \"{stderr}\"\n{}", user_line()),
        );
        assert_eq!(out, "0\n1\n2\n", "stderr = {stderr}");
    }
}

#[test]
fn signal_mask_and_dispositions_are_clean() {
    let (_s, out) = one("/bin/cat", r#"["/proc/self/status"]"#, user_line());
    for key in ["SigBlk:", "SigIgn:", "SigCgt:"] {
        let line = out.lines().find(|l| l.starts_with(key)).expect(key);
        assert!(
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .chars()
                .all(|c| c == '0'),
            "{line}"
        );
    }
}

#[test]
fn handler_leads_its_own_session_in_root_dir() {
    let (_s, out) = one(
        "/bin/sh",
        r#"["-c", "cat /proc/$$/stat; pwd"]"#,
        user_line(),
    );
    let mut lines = out.lines();
    let stat = lines.next().unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let pid = stat.split_whitespace().next().unwrap();
    // state ppid pgrp session
    assert_eq!(
        (f[2], f[3]),
        (pid, pid),
        "pgrp and session of {pid}: {stat}"
    );
    assert_eq!(lines.next(), Some("/"));
}

fn ids(out: &str, key: &str) -> String {
    out.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} in {out}"))
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn runs_as_configured_user_group_and_groups() {
    require_root!();
    let (_s, out) = one(
        "/bin/cat",
        r#"["/proc/self/status"]"#,
        "user = \"nobody\"\ngroup = \"nogroup\"",
    );
    assert_eq!(ids(&out, "Uid:"), "65534 65534 65534 65534");
    assert_eq!(ids(&out, "Gid:"), "65534 65534 65534 65534");
    assert_eq!(ids(&out, "Groups:"), "65534");

    // An explicit group becomes the gid (and, as with initgroups, the
    // supplementary list is that group plus the user's memberships).
    let (_s, out) = one(
        "/bin/cat",
        r#"["/proc/self/status"]"#,
        "user = \"nobody\"\ngroup = \"daemon\"",
    );
    assert_eq!(ids(&out, "Uid:"), "65534 65534 65534 65534");
    assert_eq!(ids(&out, "Gid:"), "1 1 1 1");
    assert_eq!(ids(&out, "Groups:"), "1");

    // Without a group, the user's primary group and exactly the groups the
    // system's own `id` reports for that user.
    for user in ["daemon", "root"] {
        let (_s, out) = one("/usr/bin/id", "[]", &format!("user = \"{user}\""));
        let want = crate::harness::run_ok(std::process::Command::new("id").arg(user));
        let field = |s: &str, k: &str| {
            s.split_whitespace()
                .find(|w| w.starts_with(k))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        for k in ["uid=", "gid=", "groups="] {
            assert_eq!(field(&out, k), field(&want, k), "{user} {k}");
        }
    }
}

/// A user and groups that only an NSS module knows (libnss-extrausers,
/// in a private mount namespace, so the machine's own files are left
/// alone): glibc builds find them through nsswitch, musl builds through
/// the system's `getent`.
#[test]
fn users_known_only_to_an_nss_module_run_handlers() {
    require_root!();
    assert!(
        std::path::Path::new("/usr/lib/x86_64-linux-gnu/libnss_extrausers.so.2").exists()
            || std::path::Path::new("/usr/lib/libnss_extrausers.so.2").exists(),
        "this test needs Debian's libnss-extrausers (.ci/run installs it)"
    );
    let dir = Dir::new();
    let nss = dir.write(
        "nsswitch.conf",
        "passwd: files extrausers\ngroup: files extrausers\n",
    );
    let users = dir.path().join("extrausers");
    std::fs::create_dir(&users).expect("mkdir");
    std::fs::write(
        users.join("passwd"),
        "oxiext:x:4242:4243:oxinetd test:/nonexistent:/usr/sbin/nologin\n",
    )
    .expect("passwd");
    std::fs::write(
        users.join("group"),
        "oxiextg:x:4243:\noxiextm:x:4244:oxiext\n",
    )
    .expect("group");
    let config = dir.write(
        "oxinetd.toml",
        "[[service]]\nname = \"h\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"id -u; id -g; id -G\"]\nuser = \"oxiext\"\n",
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "sh", "-c"])
        .arg(
            "mount --bind \"$1\" /etc/nsswitch.conf && \
             mount --bind \"$2\" /var/lib/extrausers && \
             exec \"$3\" -f \"$4\" --log stderr",
        )
        .arg("sh")
        .arg(&nss)
        .arg(&users)
        .arg(bin())
        .arg(&config);
    let s = Server::launch(dir, config.clone(), cmd);
    if s.wait_for(|l| l.contains(" ready ")).is_none() {
        panic!("oxinetd did not become ready:\n{}", s.log());
    }
    assert_eq!(
        talk(s.addr("h"), ""),
        "4242\n4243\n4243 4244\n",
        "{}",
        s.log()
    );
    // The machine itself does not know the user.
    let outside = Command::new("getent")
        .args(["passwd", "oxiext"])
        .output()
        .expect("getent");
    assert_eq!(
        outside.status.code(),
        Some(2),
        "oxiext exists outside the test"
    );
}

#[test]
fn failed_privilege_drop_never_runs_the_handler() {
    require_root!();
    let setpriv = crate::harness::need("setpriv", "util-linux");
    let dir = crate::harness::Dir::new();
    let marker = dir.path().join("ran");
    let config = format!(
        "[[service]]\nname = \"h\"\nlisten = \"127.0.0.1:0\"\nserver = \"marker.sh\"\nargs = [\"{}\"]\nuser = \"nobody\"\n",
        marker.display()
    );
    // oxinetd is root but without CAP_SETUID: setuid in the child fails.
    let s = Server::start_in(dir, &config, &[], |cmd| {
        let prog = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        *cmd = std::process::Command::new(&setpriv);
        cmd.arg("--bounding-set=-setuid")
            .arg("--inh-caps=-setuid")
            .arg("--")
            .arg(prog)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
    });
    let out = talk(s.addr("h"), "");
    assert_eq!(out, "");
    s.expect_line(&[
        "error service=h",
        "unable to setuid for handler: Operation not permitted",
    ]);
    s.expect_line(&["exit service=h", "status=127"]);
    assert!(
        !marker.exists(),
        "the handler ran despite the failed setuid"
    );
}

/// A test directory with `private/marker.sh`, reachable by everyone until
/// `make_private` (the config check would otherwise refuse the service
/// before any handler could fail at execve).
fn dir_with_private_marker() -> crate::harness::Dir {
    let dir = crate::harness::Dir::new();
    let private = dir.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::copy(dir.path().join("marker.sh"), private.join("marker.sh")).unwrap();
    dir
}

/// `private/` becomes 0700, after the config was loaded: root can reach
/// the marker, nobody (the handler, at execve) cannot.
fn make_private(dir: &crate::harness::Dir) {
    use std::os::unix::fs::PermissionsExt;
    let private = dir.path().join("private");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn exec_failure_is_reported_with_its_errno() {
    require_root!();
    let dir = dir_with_private_marker();
    let marker = dir.path().join("ran");
    let config = format!(
        "[[service]]\nname = \"h\"\nlisten = \"127.0.0.1:0\"\nserver = \"private/marker.sh\"\nargs = [\"{}\"]\nuser = \"nobody\"\n",
        marker.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    make_private(&s.dir);
    for _ in 0..3 {
        assert_eq!(talk(s.addr("h"), ""), "");
    }
    // The line names the service, the program and the user (issue 18).
    let program = s.dir.path().join("private/marker.sh");
    s.expect_line(&[
        "error service=h",
        "unable to exec for handler: Permission denied",
        &format!("(server {}, user nobody)", program.display()),
    ]);
    assert!(
        crate::harness::eventually(|| s.count(&["exit service=h", "status=127"]) == 3),
        "three exits with status 127"
    );
    assert_eq!(s.count(&["unable to exec for handler"]), 3);
    assert!(!marker.exists(), "the handler ran");
}

/// Handlers are started without waiting for each one to exec, each from a
/// slot of its own: under concurrent connections every handler must still
/// get its own argv and environment, and every failed exec its own error,
/// logged for the right service.
#[test]
fn concurrent_spawns_keep_their_own_arguments_and_failures() {
    require_root!();
    // "bad" fails at execve.
    let dir = dir_with_private_marker();
    let long = "x".repeat(3000);
    let config = format!(
        "[[service]]\nname = \"ok\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"echo $TCPREMOTEPORT $0 ${{#1}} $MARK\", \"zero\", \"{long}\"]\n\
         env = {{ MARK = \"m{long}\" }}\nuser = \"nobody\"\n\
         [[service]]\nname = \"bad\"\nlisten = \"127.0.0.1:0\"\n\
         server = \"private/marker.sh\"\nargs = [\"{}\"]\nuser = \"nobody\"\n",
        dir.path().join("ran").display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    make_private(&s.dir);
    let (ok, bad) = (s.addr("ok"), s.addr("bad"));
    const ROUNDS: usize = 25;
    let clients: Vec<_> = (0..8)
        .map(|n| {
            let long = long.clone();
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    if n % 4 == 3 {
                        assert_eq!(talk(bad, ""), "");
                        continue;
                    }
                    let mut c = std::net::TcpStream::connect(ok).expect("connect");
                    let port = c.local_addr().expect("local address").port();
                    c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                        .expect("timeout");
                    let mut out = String::new();
                    std::io::Read::read_to_string(&mut c, &mut out).expect("read");
                    assert_eq!(out, format!("{port} zero {} m{long}\n", long.len()));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    let failed = 2 * ROUNDS;
    assert!(
        crate::harness::eventually(|| s.count(&["exit service=bad", "status=127"]) == failed),
        "{failed} exits with status 127:\n{}",
        s.log()
    );
    assert_eq!(
        s.count(&[
            "error service=bad",
            "unable to exec for handler: Permission denied"
        ]),
        failed
    );
    assert_eq!(s.count(&["unable to"]), failed, "{}", s.log());
    assert!(
        crate::harness::eventually(|| s.count(&["exit service=ok", "status=0"]) == 6 * ROUNDS),
        "{}",
        s.log()
    );
}
