//! Issue 16 §3: include fan-out, include cycles and huge values must not
//! freeze `check` or the supervisor. Each file is read once, a cycle is one
//! error with its chain, and errors quote user text briefly.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bin, talk, Dir, Server};

/// The longest a `check` here may take before it counts as frozen. The fixed
/// build takes milliseconds; the unfixed one took minutes for these configs.
const CHECK_PATIENCE: Duration = Duration::from_secs(20);

/// Run `oxinetd check ARGS` in `dir`, killed (and failed) after
/// CHECK_PATIENCE. Output goes to files, so a flood cannot block it.
/// Returns (exit code, stdout, stderr).
fn check(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out_path = dir.join("check.stdout");
    let err_path = dir.join("check.stderr");
    let mut child = Command::new(bin())
        .arg("check")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("run oxinetd check");
    let deadline = Instant::now() + CHECK_PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("oxinetd check {args:?} still running after {CHECK_PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).expect("read")).into_owned();
    (
        status.code().unwrap_or(-1),
        read(&out_path),
        read(&err_path),
    )
}

const ECHO: &str =
    "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n";

/// `n` files `a1.toml`..`aN.toml`, each including `*.toml`; a1 also has a service.
fn fan_out(dir: &Dir, n: usize) {
    for i in 1..=n {
        let extra = if i == 1 { ECHO } else { "" };
        dir.write(
            &format!("a{i}.toml"),
            &format!("include = [\"*.toml\"]\n{extra}"),
        );
    }
}

#[test]
fn include_fan_out_is_read_once_with_one_cycle_error() {
    let dir = Dir::new();
    fan_out(&dir, 6);
    let (code, _, stderr) = check(dir.path(), &["-f", "a1.toml"]);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error and the summary:\n{stderr}");
    assert!(
        lines[0].starts_with("a1.toml:1:12: include cycle: a1.toml -> a1.toml ("),
        "{stderr}"
    );
    assert!(
        lines[0].contains("more include cycles not listed)"),
        "{stderr}"
    );
    assert_eq!(lines[1], "a1.toml: 1 error");
}

#[test]
fn self_include_through_a_glob_is_one_cycle_error() {
    let dir = Dir::new();
    dir.write("main.toml", &format!("include = [\"*.toml\"]\n{ECHO}"));
    let (code, _, stderr) = check(dir.path(), &["-f", "main.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "main.toml:1:12: include cycle: main.toml -> main.toml\nmain.toml: 1 error\n"
    );
}

#[test]
fn include_cycle_names_its_chain() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
    dir.write(
        "main.toml",
        &format!("include = [\"conf.d/b.toml\"]\n{ECHO}"),
    );
    dir.write("conf.d/b.toml", "include = [\"../main.toml\"]\n");
    let (code, _, stderr) = check(dir.path(), &["-f", "main.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "conf.d/b.toml:1:12: include cycle: main.toml -> conf.d/b.toml -> conf.d/../main.toml\n\
         main.toml: 1 error\n"
    );
}

#[test]
fn file_included_twice_is_read_once() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
    dir.write(
        "main.toml",
        &format!("include = [\"conf.d/a.toml\", \"conf.d/*.toml\"]\n{ECHO}"),
    );
    dir.write(
        "conf.d/a.toml",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:discard\"\n",
    );
    let (code, stdout, stderr) = check(dir.path(), &["-f", "main.toml"]);
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "main.toml: OK, 2 services\n", "")
    );
}

#[test]
fn xinetd_includedir_fan_out_is_read_once() {
    let dir = Dir::new();
    let d = dir.path().join("xinetd.d");
    std::fs::create_dir(&d).expect("mkdir");
    for i in 1..=8 {
        let service = if i == 1 {
            "service echo\n{\n type = INTERNAL\n socket_type = stream\n protocol = tcp\n wait = no\n}\n"
        } else {
            ""
        };
        dir.write(
            &format!("xinetd.d/s{i}"),
            &format!("includedir {}\n{service}", d.display()),
        );
    }
    let (code, _, stderr) = check(dir.path(), &["--format", "xinetd", "-f", "xinetd.d"]);
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one error and the summary:\n{stderr}");
    assert!(lines[0].contains(":1:1: include cycle: "), "{stderr}");
    assert!(
        lines[0].contains("include cycle: xinetd.d/s1 -> "),
        "{stderr}"
    );
    assert_eq!(lines[1], "xinetd.d: 1 error (1 valid service would run)");
}

#[test]
fn huge_unknown_key_is_quoted_short() {
    let dir = Dir::new();
    // Under the per-file limit: the key is quoted by a short prefix.
    let key = "k".repeat(3 << 20);
    dir.write("big.toml", &format!("{ECHO}{key} = 1\n"));
    let (code, _, stderr) = check(dir.path(), &["-f", "big.toml"]);
    assert_eq!(code, 1);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(first.len() < 300, "error line of {} bytes", first.len());
    assert!(
        first.starts_with("big.toml:5:1: unknown key \"kkkk")
            && first.ends_with("…\" in [[service]]"),
        "{first}"
    );
    assert_eq!(
        stderr.lines().count(),
        2,
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
}

#[test]
fn config_file_over_the_size_limit_is_refused() {
    let dir = Dir::new();
    // The reproduction: a 10 MB value in an unknown key.
    let value = "x".repeat(10 << 20);
    dir.write("big.toml", &format!("{ECHO}bogus = \"{value}\"\n"));
    let key = "k".repeat(10 << 20);
    dir.write("bigkey.toml", &format!("{ECHO}{key} = 1\n"));
    for name in ["big.toml", "bigkey.toml"] {
        let (code, _, stderr) = check(dir.path(), &["-f", name]);
        assert_eq!(code, 1);
        assert!(stderr.len() < 300, "{} bytes of errors", stderr.len());
        assert_eq!(
            stderr,
            format!("{name}:1:1: config file larger than 4 MiB\n{name}: 1 error\n")
        );
    }
}

#[test]
fn sighup_with_include_fan_out_keeps_serving() {
    let dir = Dir::new();
    let s = Server::start_in(dir.clone(), ECHO, &[], |_| {});
    let addr = s.addr("echo");
    // oxinetd.toml and a1..a6.toml each include *.toml: 7 files.
    fan_out(&dir, 6);
    let before = s.lines().len();
    let outcome = s.reload(&format!("include = [\"*.toml\"]\n{ECHO}"));
    assert!(outcome.contains("reload-failed errors=1"), "{outcome}");
    s.expect_line(&["config-error", "include cycle: "]);
    assert_eq!(talk(addr, "still\n"), "still\n");
    let logged = s.lines().len() - before;
    assert!(
        logged < 10,
        "{logged} log lines for one failed reload:\n{}",
        s.log()
    );
}

#[test]
fn include_of_a_fifo_does_not_block() {
    let dir = Dir::new();
    nix::unistd::mkfifo(
        &dir.path().join("pipe.toml"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    dir.write("main.toml", &format!("include = [\"pipe.toml\"]\n{ECHO}"));
    let (code, _, stderr) = check(dir.path(), &["-f", "main.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(
        stderr,
        "main.toml:1:12: include: not a regular file\nmain.toml: 1 error\n"
    );
}

/// A `banner_fail` naming a FIFO is refused, not read (which would wait
/// for a writer forever): the file is checked on the descriptor opened.
#[test]
fn banner_fifo_does_not_block() {
    let dir = Dir::new();
    nix::unistd::mkfifo(
        &dir.path().join("banner"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    dir.write("main.toml", &format!("{ECHO}banner_fail = \"banner\"\n"));
    let (code, _, stderr) = check(dir.path(), &["-f", "main.toml"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("banner_fail \"banner\": not a regular file"),
        "{stderr}"
    );
}
