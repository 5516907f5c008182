//! Classic configs run as they are, and `oxinetd import` gives the same
//! services: inetd.conf in the OpenBSD, FreeBSD and inetutils dialects and an
//! xinetd tree, as distributions ship them (tests/fixtures/compat), each
//! served in a network namespace of its own so the standard ports are free,
//! and used with the real clients (tftp, rsync, git, socat).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{bin, need, run_ok, Dir, Netns, Server};

const TFTP_FILE: &str = "hello from the tftp root\n";
const RSYNC_FILE: &str = "fetched over rsync\n";

/// The fixture `name` copied into a fresh directory (@DIR@ replaced), with
/// what its services serve: a tftp root, an rsync module, a git repository.
fn fixture(name: &str) -> Dir {
    let dir = Dir::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/compat")
        .join(name);
    copy_templated(&src, dir.path(), dir.path());
    let root = dir.path();
    let mkdir = |p: &Path| {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    mkdir(&root.join("tftpboot"));
    dir.write("tftpboot/hello.txt", TFTP_FILE);
    mkdir(&root.join("rsync-data"));
    dir.write("rsync-data/file.txt", RSYNC_FILE);
    dir.write(
        "rsyncd.conf",
        "use chroot = no\n[data]\npath = {dir}/rsync-data\nread only = yes\n",
    );
    dir
}

fn copy_templated(from: &Path, to: &Path, dir: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy_templated(&path, &target, dir);
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&target, text.replace("@DIR@", &dir.display().to_string())).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A bare git repository under DIR/git, owned by nobody (the daemon's user).
fn git_repo(dir: &Dir) {
    crate::harness::git_bare_repo(
        &dir.path().join("git/project.git"),
        "cloned through inetd.d\n",
    );
    run_ok(
        Command::new("chown")
            .args(["-R", "nobody:nogroup"])
            .arg(dir.path().join("git")),
    );
}

/// `oxinetd check --list` of a config: one `[[service]]` block per service
/// that would run, without its `# from FILE:LINE:COL` line (which differs
/// between a file and its import by design).
fn services(config: &Path, format: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new(bin());
    cmd.args(["check", "--list", "-f"]).arg(config);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    let out = cmd.output().unwrap();
    let mut blocks: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split("\n\n")
        .filter(|b| b.contains("[[service]]"))
        .map(|b| {
            b.lines()
                .filter(|l| !l.starts_with("# from "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    blocks.sort();
    blocks
}

/// `oxinetd import SOURCE`, written to DIR/imported.toml.
fn import(dir: &Dir, source: &Path) -> (PathBuf, i32, String) {
    let out = Command::new(bin())
        .arg("import")
        .arg(source)
        .output()
        .unwrap();
    let path = dir.path().join("imported.toml");
    std::fs::write(&path, &out.stdout).unwrap();
    (
        path,
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Send `input` with socat inside `ns` and return what came back.
fn socat(ns: &Netns, address: &str, input: &[u8]) -> Vec<u8> {
    let mut child = ns
        .command(need("socat", "socat"))
        .args(["-t", "2", "-T", "10", "-", address])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "socat {address}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn tftp_get(ns: &Netns, dir: &Dir, host: &str) {
    let out = dir.path().join("got.txt");
    let _ = std::fs::remove_file(&out);
    run_ok(
        ns.command("timeout")
            .arg("60")
            .arg(need("tftp", "tftp-hpa"))
            .args([host, "-c", "get", "hello.txt"])
            .arg(&out),
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), TFTP_FILE);
}

fn rsync_get(ns: &Netns, dir: &Dir, host: &str) {
    let out = dir.path().join("rsynced.txt");
    let _ = std::fs::remove_file(&out);
    run_ok(
        ns.command("timeout")
            .arg("60")
            .arg(need("rsync", "rsync"))
            .arg(format!("rsync://{host}/data/file.txt"))
            .arg(&out),
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), RSYNC_FILE);
}

/// Run `config` in a namespace, then run its import in another: `check` is
/// the client session, done against both.
fn original_then_import(dir: &Dir, config: &Path, check: impl Fn(&Netns, &Server)) {
    let ns = Netns::new();
    let s = ns.serve(dir.clone(), config, &[]);
    check(&ns, &s);
    stop(s);
    let (imported, _, _) = import(dir, config);
    let ns = Netns::new();
    let s = ns.serve(dir.clone(), &imported, &[]);
    check(&ns, &s);
    stop(s);
}

/// Stop a server and the in.tftpd it started (as shipped it waits 15
/// minutes for another request): by pid, only one that never exited and is
/// still an in.tftpd.
fn stop(s: Server) {
    let lines = s.lines();
    let pid_of = |l: &String| crate::harness::field(l, "pid").map(str::to_owned);
    let exited: Vec<String> = lines
        .iter()
        .filter(|l| l.contains(" exit service="))
        .filter_map(pid_of)
        .collect();
    let running: Vec<i32> = lines
        .iter()
        .filter(|l| l.contains(" start service="))
        .filter_map(pid_of)
        .filter(|p| !exited.contains(p))
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "in.tftpd")
        })
        .filter_map(|p| p.parse().ok())
        .collect();
    drop(s);
    for pid in running {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
}

#[test]
fn import_gives_the_same_listeners_users_and_argv() {
    crate::require_root!();
    for (name, file, unconverted) in [
        ("openbsd", "inetd.conf", 0),
        ("freebsd", "inetd.conf", 1),
        ("inetutils", "inetd.conf", 0),
        ("xinetd", "xinetd.conf", 0),
    ] {
        let dir = fixture(name);
        let config = dir.path().join(file);
        let original = services(&config, None);
        assert!(original.len() >= 3, "{name}: {original:?}");
        let (imported, code, stderr) = import(&dir, &config);
        assert_eq!(code, i32::from(unconverted > 0), "{name}: {stderr}");
        assert_eq!(services(&imported, None), original, "{name}");
        // Every service names its source line; nothing is dropped silently.
        let text = std::fs::read_to_string(&imported).unwrap();
        let services = text
            .lines()
            .filter(|l| l.trim_start_matches("# ") == "[[service]]")
            .count();
        let origins = text
            .lines()
            .filter(|l| {
                l.strip_prefix("# ")
                    .and_then(|l| l.rsplit_once(':'))
                    .is_some_and(|(f, n)| !f.contains(' ') && n.parse::<u32>().is_ok())
            })
            .count();
        assert!(origins >= services, "{name}:\n{text}");
        assert_eq!(
            text.matches("# NOT CONVERTED").count(),
            unconverted,
            "{name}:\n{text}"
        );
    }
}

#[test]
fn openbsd_inetd_conf_runs_unchanged() {
    crate::require_root!();
    let dir = fixture("openbsd");
    let config = dir.path().join("inetd.conf");
    original_then_import(&dir, &config, |ns, s| {
        assert_eq!(socat(ns, "TCP:127.0.0.1:7", b"ping\n"), b"ping\n");
        assert_eq!(socat(ns, "UDP:127.0.0.1:7", b"dgram"), b"dgram");
        let day = socat(ns, "TCP:[::1]:13", b"");
        assert!(day.ends_with(b"\r\n") && day.len() > 20, "{day:?}");
        assert_eq!(socat(ns, "TCP:127.0.0.1:37", b"").len(), 4);
        assert_eq!(socat(ns, "TCP:127.0.0.1:9", b"into the void\n"), b"");
        tftp_get(ns, &dir, "127.0.0.1");
        s.expect_line(&["start service=tftp-udp"]);
        // A UNIX-domain line ignores the `*:` before it; root's only.
        let sock = dir.path().join("upper.sock");
        let unix = format!("UNIX-CONNECT:{}", sock.display());
        assert_eq!(socat(ns, &unix, b"ping\n"), b"PING\n");
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o200);
        let packets = dir.path().join("packets.sock");
        let unix = format!("UNIX-CONNECT:{},type=5", packets.display());
        assert_eq!(socat(ns, &unix, b"packet"), b"packet");
    });
}

#[test]
fn freebsd_inetd_conf_runs_with_its_limits_and_reports_what_it_cannot() {
    crate::require_root!();
    let dir = fixture("freebsd");
    let config = dir.path().join("inetd.conf");
    let listed = services(&config, Some("inetd")).join("\n");
    assert!(
        listed.contains("instances = 20\nper_source = 4\n"),
        "{listed}"
    );
    // max-conn-per-ip-per-min (issue 22).
    assert!(listed.contains("per_source_rate = [60, 60]\n"), "{listed}");
    assert!(listed.contains("per_source_rate = [30, 60]\n"), "{listed}");
    assert!(listed.contains("listen = [\"*:37\"]"), "{listed}");
    original_then_import(&dir, &config, |ns, s| {
        assert_eq!(socat(ns, "TCP:127.0.0.1:7", b"bsd\n"), b"bsd\n");
        assert_eq!(socat(ns, "TCP:[::1]:37", b"").len(), 4);
        rsync_get(ns, &dir, "127.0.0.1");
        tftp_get(ns, &dir, "127.0.0.1");
        s.expect_line(&["exit service=rsync-tcp", "status=0"]);
        // `:user:group:mode:` gives the socket file away.
        let sock = dir.path().join("echo.sock");
        let unix = format!("UNIX-CONNECT:{}", sock.display());
        assert_eq!(socat(ns, &unix, b"local\n"), b"local\n");
        let meta = std::fs::symlink_metadata(&sock).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    });
    // The original run named the lines it could not honour.
    let ns = Netns::new();
    let s = ns.serve(dir.clone(), &config, &["--format", "inetd"]);
    s.expect_line(&["config-skipped", "inetd.conf:9:", "RPC"]);
    s.expect_line(&["config-warning", "inetd.conf:8:", "IPsec"]);
}

#[test]
fn inetutils_reads_inetd_d_beside_the_file() {
    crate::require_root!();
    let dir = fixture("inetutils");
    git_repo(&dir);
    let config = dir.path().join("inetd.conf");
    original_then_import(&dir, &config, |ns, s| {
        let clone = dir.path().join("clone");
        let _ = std::fs::remove_dir_all(&clone);
        run_ok(
            ns.command(need("git", "git"))
                .args(["clone", "-q", "git://127.0.0.1/project.git"])
                .arg(&clone),
        );
        assert_eq!(
            std::fs::read_to_string(clone.join("README")).unwrap(),
            "cloned through inetd.d\n"
        );
        assert_eq!(socat(ns, "UDP:127.0.0.1:9", b"x").len(), 0);
        s.expect_line(&["exit service=git-tcp", "status=0"]);
    });
}

#[test]
fn xinetd_tree_runs_unchanged() {
    crate::require_root!();
    let dir = fixture("xinetd");
    let config = dir.path().join("xinetd.conf");
    // flags = NODELAY KEEPALIVE (rsync) are socket options now.
    let listed = services(&config, None).join("\n");
    assert!(
        listed.contains("keepalive = true\nnodelay = true\n"),
        "{listed}"
    );
    original_then_import(&dir, &config, |ns, s| {
        assert_eq!(socat(ns, "TCP:127.0.0.1:7", b"x\n"), b"x\n");
        assert_eq!(socat(ns, "UDP:127.0.0.1:7", b"u"), b"u");
        assert!(socat(ns, "TCP:127.0.0.1:13", b"").len() > 20);
        assert_eq!(socat(ns, "UDP:127.0.0.1:37", b"\n").len(), 4);
        // chargen streams until the client goes: read two lines and close.
        let chargen = run_ok(
            ns.command("sh")
                .args(["-c", "socat -u TCP:127.0.0.1:19 - | head -c 148"]),
        );
        assert_eq!(chargen.len(), 148, "{chargen}");
        assert_eq!(chargen.lines().next().map(str::len), Some(72), "{chargen}");
        tftp_get(ns, &dir, "127.0.0.1");
        rsync_get(ns, &dir, "127.0.0.1");
        // flags = IPv6: dual stack; only_from lets ::1 in.
        rsync_get(ns, &dir, "[::1]");
        // chargen-dgram is `disable = yes`: not bound.
        assert_eq!(s.count(&["listen service=chargen-dgram"]), 0);
        assert_eq!(s.count(&["listen service=chargen-stream"]), 1);
        s.expect_line(&["start service=tftp "]);
        // redirect (issue 20): port 25 relayed to the echo service.
        assert_eq!(
            socat(ns, "TCP:127.0.0.1:25", b"through redirect\n"),
            b"through redirect\n"
        );
        s.expect_line(&["done service=smtp", "upstream=127.0.0.1:7"]);
    });
    let ns = Netns::new();
    let s = ns.serve(dir.clone(), &config, &[]);
    // The forwarder runs (issue 20): nothing of the tree is refused.
    assert_eq!(s.count(&["config-skipped"]), 0, "{}", s.log());
    // nice and umask are applied now (issue 19), not warned about.
    assert_eq!(s.count(&["config-warning", "nice"]), 0, "{}", s.log());
    assert_eq!(s.count(&["config-warning", "umask"]), 0, "{}", s.log());
}

/// `oxinetd check` of `conf` fails, with an error on each `(line, text)`;
/// its stderr.
fn check_fails_at(conf: &Path, expected: &[(usize, &str)]) -> String {
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for (line, needle) in expected {
        let prefix = format!("{}:{line}:", conf.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "{prefix} {needle}:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn malformed_lines_are_errors_naming_the_line_and_the_rest_runs() {
    let dir = Dir::new();
    let conf = dir.write(
        "inetd.conf",
        "echo stream tcp nowait root internal\n\
         echo stream\n\
         x dgram tcp wait root /bin/cat cat\n\
         y stream tcp sometimes root /bin/cat cat\n\
         9 stream tcp nowait root internal\n\
         z stream tcp nowait.x root /bin/cat cat\n\
         127.0.0.1:0 stream tcp nowait nobody /no/such/program prog\n\
         /tmp/x.sock stream unix nowait nobody :nobody:0660:/bin/cat cat\n\
         relative.sock stream unix nowait nobody /bin/cat cat\n\
         /tmp/y.sock dgram unix nowait nobody /bin/cat cat\n",
    );
    let stderr = check_fails_at(
        &conf,
        &[
            (2, "at least 6 fields"),
            (3, "does not go with"),
            (4, "wait or nowait"),
            (5, "not a built-in"),
            (6, "per minute"),
            (7, "/no/such/program"),
            (8, "expected :user:group:mode:server-path"),
            (9, "needs an absolute path"),
            (10, "must be wait"),
        ],
    );
    assert!(stderr.contains("(1 valid service would run)"), "{stderr}");

    let conf = dir.write(
        "xinetd.conf",
        "service a\n{\n  socket_type = stream\n  wait = maybe\n  server = /bin/cat\n}\n\
         service b\n  socket_type = stream\n\
         defaults\n{\n  instances 5\n}\n\
         service c\n{\n  socket_type = stream\n  wait = no\n  server = /bin/cat\n  cps = fast\n",
    );
    check_fails_at(
        &conf,
        &[
            (4, "expected yes or no"),
            (7, "expected \"{\""),
            (11, "expected ATTRIBUTE = VALUE"),
            (13, "no closing"),
        ],
    );
}

/// Debian's xinetd package, as installed (tests/fixtures/debian-xinetd,
/// the files unchanged but for where `includedir` points): every service
/// disabled, so `check` is clean and oxinetd runs idle (issue 18). Enabled,
/// the `servers` and `services` built-ins are a warning with their line,
/// not an error.
#[test]
fn debian_stock_xinetd_config_checks_clean_and_runs_idle() {
    let dir = Dir::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debian-xinetd");
    let d = dir.path().join("xinetd.d");
    std::fs::create_dir(&d).unwrap();
    for entry in std::fs::read_dir(src.join("xinetd.d")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, d.join(path.file_name().unwrap())).unwrap();
    }
    let text = std::fs::read_to_string(src.join("xinetd.conf")).unwrap();
    assert!(text.contains("includedir /etc/xinetd.d\n"), "{text}");
    let conf = dir.write(
        "xinetd.conf",
        &text.replace("/etc/xinetd.d", &d.display().to_string()),
    );
    let check = || {
        let out = Command::new(bin())
            .args(["check", "-f"])
            .arg(&conf)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        check(),
        (
            Some(0),
            format!("{}: OK, 0 services\n", conf.display()),
            String::new()
        )
    );

    let mut cmd = Command::new(bin());
    cmd.arg("-f").arg(&conf).args(["--log", "stderr"]);
    let mut s = Server::launch(dir.clone(), conf.clone(), cmd);
    s.expect_line(&["idle config="]);
    s.expect_line(&["ready listeners=0"]);
    s.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(s.wait_exit().code(), Some(0), "{}", s.log());

    for name in ["servers", "services"] {
        let file = d.join(name);
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("disable\t\t= yes", "disable\t\t= no")).unwrap();
    }
    let (code, stdout, stderr) = check();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with(": OK, 0 services\n"), "{stdout}");
    for name in ["servers", "services"] {
        let at = format!("{}:6:", d.join(name).display());
        assert!(
            stderr.lines().any(|l| l.starts_with(&at)
                && l.contains(": warning: ")
                && l.contains("is not supported; service not run")),
            "{at}\n{stderr}"
        );
    }
}

#[test]
fn an_unknown_file_name_needs_format() {
    let dir = Dir::new();
    let conf = dir.write("services.conf", "echo stream tcp nowait root internal\n");
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    // One message, naming the file once (issue 18).
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("services.conf").count(), 1, "{stderr}");
    assert!(stderr.contains("--format toml|inetd|xinetd"), "{stderr}");
    // import names only the formats it converts.
    let out = Command::new(bin())
        .arg("import")
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(stderr.matches("services.conf").count(), 1, "{stderr}");
    assert!(stderr.contains("--format inetd|xinetd"), "{stderr}");
    let out = Command::new(bin())
        .args(["import", "--format", "inetd"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[[service]]"));
    let out = Command::new(bin())
        .args(["check", "--format", "inetd", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `oxinetd import --help` shows what applies to it (issue 18): no
/// `-f/--config`, and `--format` without toml.
#[test]
fn import_help_shows_only_what_applies() {
    let out = Command::new(bin())
        .args(["import", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{help}");
    assert!(
        !help.contains("--config") && !help.contains("-f,"),
        "{help}"
    );
    assert!(help.contains("--format <FORMAT>"), "{help}");
    assert!(help.contains("[possible values: inetd, xinetd]"), "{help}");
    assert!(!help.contains("toml,"), "{help}");
    let out = Command::new(bin())
        .args(["import", "--format", "toml", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sighup_rereads_an_inetd_conf() {
    let dir = Dir::new();
    let user = if crate::harness::is_root() {
        "nobody".to_owned()
    } else {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .unwrap()
            .name
    };
    let line = |name: &str| format!("127.0.0.1:0 stream tcp nowait {user} /bin/echo echo {name}\n");
    let conf = dir.write("inetd.conf", &line("first"));
    let mut cmd = Command::new(bin());
    cmd.arg("-f").arg(&conf).args(["--log", "stderr"]);
    let s = Server::launch(dir, conf.clone(), cmd);
    assert!(
        s.wait_for(|l| l.contains(" ready ")).is_some(),
        "{}",
        s.log()
    );
    let first = s.addr("0-tcp");
    assert_eq!(crate::harness::talk(first, ""), "first\n");
    // A second line on another port; the first is unchanged and kept.
    let text = format!("{}{}", line("first"), line("second"));
    std::fs::write(&conf, text).unwrap();
    s.signal(nix::sys::signal::Signal::SIGHUP);
    s.expect_line(&["reload listeners=2", "kept=1", "bound=1"]);
    assert_eq!(crate::harness::talk(first, ""), "first\n");
    let second = s.addrs("0-tcp-2");
    assert_eq!(crate::harness::talk(second[0], ""), "second\n");
}

// Issue 24: shapes of configs from the wild (tests/fixtures/compat/*),
// one per bug they hit.

/// `oxinetd check CONFIG`: exit code, stdout, stderr.
fn check(config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// No `config-*` problem line in a server's log.
fn no_config_problems(s: &Server) {
    assert_eq!(s.count(&["config-"]), 0, "{}", s.log());
}

/// OpenBSD's stock inetd.conf names each service twice, `tcp` (IPv4) and
/// `tcp6` (IPv6): two sockets, no overlap; both families answer.
#[test]
fn openbsd_stock_tcp_and_tcp6_pairs_serve_both_families() {
    crate::require_root!();
    let dir = fixture("openbsd-stock");
    let config = dir.path().join("inetd.conf");
    assert_eq!(
        check(&config),
        (
            Some(0),
            format!("{}: OK, 6 services\n", config.display()),
            String::new()
        )
    );
    original_then_import(&dir, &config, |ns, s| {
        for host in ["127.0.0.1", "[::1]"] {
            let day = socat(ns, &format!("TCP:{host}:13"), b"");
            assert!(day.ends_with(b"\r\n") && day.len() > 20, "{host}: {day:?}");
            assert_eq!(socat(ns, &format!("TCP:{host}:37"), b"").len(), 4, "{host}");
            assert_eq!(
                socat(ns, &format!("UDP:{host}:7"), b"both"),
                b"both",
                "{host}"
            );
        }
        // Two listeners per service: the IPv4 one and the IPv6 one.
        s.expect_line(&["listen service=daytime-tcp ", "addr=0.0.0.0:13"]);
        s.expect_line(&["listen service=daytime-tcp-13 ", "addr=[::]:13"]);
        no_config_problems(s);
    });
}

/// A container image's `defaults { cps = 0 0 }`: 0 turns xinetd's rate
/// limit off, so the service runs with no `cps` at all.
#[test]
fn cps_zero_zero_runs_without_a_limit() {
    crate::require_root!();
    let dir = fixture("xinetd-docker");
    let config = dir.path().join("xinetd.conf");
    let (code, _, stderr) = check(&config);
    assert_eq!((code, stderr.as_str()), (Some(0), ""));
    let listed = services(&config, None).join("\n");
    assert!(listed.contains("name = \"challenge\""), "{listed}");
    assert!(listed.contains("# rate: not set (no limit)"), "{listed}");
    assert!(
        !listed.contains("cps") && !listed.contains("rate = ["),
        "{listed}"
    );
    original_then_import(&dir, &config, |ns, s| {
        // More connections in a row than xinetd's default of 50 a second.
        for _ in 0..60 {
            assert_eq!(
                socat(ns, "TCP:127.0.0.1:31337", b""),
                b"welcome to the challenge\n"
            );
        }
        no_config_problems(s);
    });
}

/// Keywords and keyword values in any case, as xinetd compares them, and
/// a `protocol` without `socket_type` (xinetd infers it).
#[test]
fn upper_case_keywords_and_an_inferred_socket_type_run() {
    crate::require_root!();
    let dir = fixture("xinetd-case");
    let config = dir.path().join("xinetd.conf");
    assert_eq!(
        check(&config),
        (
            Some(0),
            format!("{}: OK, 3 services\n", config.display()),
            String::new()
        )
    );
    original_then_import(&dir, &config, |ns, s| {
        assert_eq!(socat(ns, "TCP:127.0.0.1:7", b"upper\n"), b"upper\n");
        assert_eq!(socat(ns, "UDP:127.0.0.1:37", b"\n").len(), 4);
        assert_eq!(socat(ns, "TCP:127.0.0.1:5666", b""), b"STATUS OK\n");
        s.expect_line(&["listen service=echo-stream ", "proto=tcp"]);
        s.expect_line(&["listen service=time-dgram ", "proto=udp"]);
        no_config_problems(s);
    });
}

/// `import` of an inetd.conf naming its server by a relative path, written
/// to another directory: the import checks and runs the same handler.
#[test]
fn an_import_written_elsewhere_runs_the_same_relative_server() {
    crate::require_root!();
    let dir = fixture("inetd-relative");
    let ftpd = dir.path().join("ftpd");
    std::fs::set_permissions(&ftpd, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.path().join("inetd.conf");
    assert_eq!(check(&config).0, Some(0));
    let other = dir.path().join("elsewhere");
    std::fs::create_dir(&other).unwrap();
    // Run from the directory above: the path as written is relative too.
    let out = Command::new(bin())
        .current_dir(dir.path().parent().unwrap())
        .arg("import")
        .arg(Path::new(dir.path().file_name().unwrap()).join("inetd.conf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let imported = other.join("oxinetd.toml");
    std::fs::write(&imported, &out.stdout).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("server = \"{}\"", ftpd.display())),
        "{text}"
    );
    assert!(text.contains("server \"ftpd\" was relative"), "{text}");
    let (code, stdout, stderr) = check(&imported);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(services(&imported, None), services(&config, None));
    for conf in [&config, &imported] {
        let ns = Netns::new();
        let s = ns.serve(dir.clone(), conf, &[]);
        assert_eq!(
            socat(&ns, "TCP:127.0.0.1:2121", b""),
            b"220 relative ftpd ready (-w)\n"
        );
        s.expect_line(&["start service=2121-tcp"]);
        stop(s);
    }
}

/// Disabled services that use what oxinetd refuses (`SENSOR`, a built-in
/// it does not have) or forwards (`redirect`) are no problem: `check` is
/// clean.
#[test]
fn disabled_refused_services_check_clean() {
    let dir = fixture("xinetd-disabled");
    let config = dir.path().join("xinetd.conf");
    assert_eq!(
        check(&config),
        (
            Some(0),
            format!("{}: OK, 1 service\n", config.display()),
            String::new()
        )
    );
    let (imported, code, stderr) = import(&dir, &config);
    assert_eq!((code, stderr.as_str()), (0, ""));
    let text = std::fs::read_to_string(&imported).unwrap();
    assert_eq!(text.matches("# disabled (").count(), 3, "{text}");
    assert_eq!(check(&imported).0, Some(0));
}

/// What `check` and a run ignore, they say: `USERID`, `log_type FILE`, an
/// `only_from` entry xinetd skips; xinetd's address forms are rules.
#[test]
fn ignored_settings_are_warnings_and_address_forms_are_rules() {
    crate::require_root!();
    let dir = fixture("xinetd-nagios");
    let config = dir.path().join("xinetd.conf");
    let nrpe = dir.path().join("xinetd.d/nrpe");
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings = [
        (
            nrpe.clone(),
            14,
            "log_on_failure USERID: no equivalent, not logged",
        ),
        (nrpe.clone(), 16, "only_from \"127.0.0.\": not an address"),
        (
            config.clone(),
            5,
            "log_type = FILE /var/log/xinetd.log: logging to a file is not supported",
        ),
    ];
    for (file, line, text) in &warnings {
        let at = format!("{}:{line}:", file.display());
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&at) && l.contains(": warning: ") && l.contains(text)),
            "{at} {text}\n{stderr}"
        );
    }
    assert_eq!(stderr.lines().count(), warnings.len(), "{stderr}");
    let listed = services(&config, None).join("\n");
    assert!(
        listed.contains(
            "only_from = [\"127.0.0.1/32\", \"10.20.0.0/16\", \"192.168.1.0/24\", \
             \"192.168.2.0/24\", \"172.16.0.0/12\"]\nno_access = [\"10.20.30.0/24\"]"
        ),
        "{listed}"
    );
    let ns = Netns::new();
    let s = ns.serve(dir.clone(), &config, &[]);
    s.expect_line(&["config-warning", "nrpe:14:", "USERID"]);
    s.expect_line(&["config-warning", "xinetd.conf:5:", "log_type = FILE"]);
    assert_eq!(socat(&ns, "TCP:127.0.0.1:5666", b""), b"NRPE OK\n");
    assert_eq!(socat(&ns, "TCP:127.0.0.1:6556", b""), b"<<<check_mk>>>\n");
    // 127.0.0.2 is in neither only_from.
    assert_eq!(socat(&ns, "TCP:127.0.0.1:6556,bind=127.0.0.2", b""), b"");
    s.expect_line(&["refuse service=check_mk", "127.0.0.2"]);
}
