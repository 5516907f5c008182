//! README, "Try it": the run command as a newcomer types it, in a checkout
//! under a 0700 home, as an ordinary user and as root, every demo service
//! answering a real client (`nc`), its handlers never running as root.
//!
//! The command is read out of README.md (the block after
//! `<!-- run-command -->`), so the two cannot drift. It is
//! `cargo run --release -- ARGS`, which builds `target/release/oxinetd` and
//! runs it with ARGS in the checkout; here the binary under test is put
//! where cargo leaves it, in a copy of the checkout, and run with ARGS
//! there (a second release build per test would test cargo, not oxinetd).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{bin, is_root, wait_exec, Dir, Netns, Server};

/// README's run command: the arguments after `cargo run --release --`.
fn readme_run_args() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let block: Vec<&str> = readme
        .split_once("<!-- run-command -->\n```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block.lines().collect())
        .expect("README.md: no ```sh block right after <!-- run-command -->");
    assert_eq!(
        block.len(),
        1,
        "README's run command is one line: {block:?}"
    );
    let args = block[0]
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| {
            panic!(
                "README's run command is not `cargo run --release -- ARGS`: {}",
                block[0]
            )
        });
    assert!(
        !args.contains(['"', '\'', '\\', '$', '`']),
        "README's run command needs no quoting: {args}"
    );
    args.split_whitespace().map(str::to_owned).collect()
}

/// A checkout as the README's reader has one: `etc/` and, where `cargo run
/// --release` leaves it, the binary, in `home/src/oxinetd` under `dir`,
/// `home` being 0700 and everything in it owned by `uid`/`gid`, as a home
/// is. Returns the checkout.
fn checkout_in_private_home(dir: &Dir, uid: u32, gid: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let home = dir.path().join("home");
    let checkout = home.join("src/oxinetd");
    std::fs::create_dir_all(checkout.join("etc")).unwrap();
    std::fs::create_dir_all(checkout.join("target/release")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate::check::copy_tree(&repo.join("etc"), &checkout.join("etc"));
    std::fs::copy(bin(), checkout.join("target/release/oxinetd")).unwrap();
    chown_tree(&home, uid, gid);
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    checkout
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

/// Run README's command in `checkout`, behind `prefix` (a `setpriv`
/// command line, or nothing), inside `ns` when given; wait for `ready`.
fn serve_demo(dir: Dir, checkout: &Path, ns: Option<&Netns>, prefix: &[&str]) -> Server {
    let exe = checkout.join("target/release/oxinetd");
    let mut argv: Vec<std::ffi::OsString> = prefix.iter().map(Into::into).collect();
    argv.push(exe.into_os_string());
    argv.extend(readme_run_args().into_iter().map(Into::into));
    let mut cmd = match ns {
        Some(ns) => ns.command(&argv[0]),
        None => Command::new(&argv[0]),
    };
    cmd.args(&argv[1..]).current_dir(checkout);
    let s = Server::launch(dir, checkout.join("etc/demo.toml"), cmd);
    if s.wait_for(|l| l.contains(" ready ")).is_none() {
        panic!("the demo did not become ready:\n{}", s.log());
    }
    s
}

/// `nc ARGS` (inside `ns` when given) with `input` on its stdin, until it
/// exits; its output.
fn nc(ns: Option<&Netns>, nc: &Path, args: &[&str], input: &str) -> String {
    let child = spawn_nc(ns, nc, args);
    finish_nc(child, input)
}

/// `nc ARGS`, bounded by `timeout` (a hung client fails the test), its
/// stdin left open.
fn spawn_nc(ns: Option<&Netns>, nc: &Path, args: &[&str]) -> std::process::Child {
    let mut cmd = match ns {
        Some(ns) => ns.command("timeout"),
        None => Command::new("timeout"),
    };
    cmd.arg(crate::harness::PATIENCE.as_secs().to_string())
        .arg(nc)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nc")
}

/// Write `input` to `nc`, close its stdin and collect its output.
fn finish_nc(mut child: std::process::Child, input: &str) -> String {
    let mut stdin = child.stdin.take().expect("nc's stdin");
    stdin.write_all(input.as_bytes()).expect("write to nc");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for nc");
    assert!(
        out.status.success(),
        "nc: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("nc's output is text")
}

/// The uid process `pid` runs as.
fn uid_of(pid: &str) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("handler status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
        .expect("Uid: line")
}

/// Every service the README lists answers as it says, through `nc` (`-N`:
/// close the connection at the end of the input), and handlers run as
/// `uid`.
fn every_service_answers(s: &Server, ns: Option<&Netns>, nc_bin: &Path, uid: u32) {
    let port = |service: &str| s.addr(service).port().to_string();

    // upper: the handler, caught while the client holds the connection.
    let upper = spawn_nc(ns, nc_bin, &["-N", "127.0.0.1", &port("upper")]);
    let start = s.expect_line(&["start service=upper "]);
    let pid = crate::harness::field(&start, "pid").expect("pid= in the start line");
    wait_exec(pid);
    assert_eq!(uid_of(pid), uid, "the upper handler's uid");
    assert_eq!(finish_nc(upper, "hello demo\n"), "HELLO DEMO\n");

    let stamped = nc(
        ns,
        nc_bin,
        &["-N", "127.0.0.1", &port("stamp")],
        "one\ntwo\n",
    );
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 2, "{stamped:?}");
    for (line, word) in lines.iter().zip(["one", "two"]) {
        assert!(
            line.starts_with('[') && line.ends_with(&format!("]: {word}")),
            "{line:?}"
        );
    }

    let now = nc(ns, nc_bin, &["-N", "127.0.0.1", &port("daytime")], "");
    assert!(
        now.ends_with('\n') && now.lines().count() == 1 && now.matches(", ").count() >= 2,
        "{now:?}"
    );

    // The README's own client line, with more patience than its -w1.
    let reply = nc(
        ns,
        nc_bin,
        &["-u", "-w5", "127.0.0.1", &port("udp-stamp")],
        "hi\n",
    );
    assert!(
        reply.starts_with('[') && reply.ends_with("]: hi\n"),
        "{reply:?}"
    );
    s.expect_line(&["exit service=udp-stamp", "status=0"]);
}

#[test]
fn readme_run_command_as_root_from_a_0700_home() {
    crate::require_root!();
    let nc = crate::need!("nc.openbsd", "netcat-openbsd");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    // /root, or another user's home under sudo: root's, mode 0700.
    let dir = Dir::new();
    let checkout = checkout_in_private_home(&dir, 0, 0);
    // The demo's fixed ports, in a network namespace of the test's own.
    let ns = Netns::new();
    let s = serve_demo(dir, &checkout, Some(&ns), &[]);
    every_service_answers(&s, Some(&ns), &nc, nobody.uid.as_raw());
}

#[test]
fn readme_run_command_as_an_ordinary_user_from_a_0700_home() {
    let nc = crate::need!("nc.openbsd", "netcat-openbsd");
    let dir = Dir::new();
    if !is_root() {
        let (uid, gid) = (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        );
        let checkout = checkout_in_private_home(&dir, uid, gid);
        let s = serve_demo(dir, &checkout, None, &[]);
        every_service_answers(&s, None, &nc, uid);
        return;
    }
    // As root, nobody plays the ordinary user, in a home of its own.
    let setpriv = crate::need!("setpriv", "util-linux");
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let (uid, gid) = (nobody.uid.as_raw(), nobody.gid.as_raw());
    let checkout = checkout_in_private_home(&dir, uid, gid);
    let ns = Netns::new();
    let (reuid, regid) = (format!("--reuid={uid}"), format!("--regid={gid}"));
    let s = serve_demo(
        dir,
        &checkout,
        Some(&ns),
        &[
            setpriv.to_str().expect("setpriv's path"),
            &reuid,
            &regid,
            "--clear-groups",
            "--",
        ],
    );
    every_service_answers(&s, Some(&ns), &nc, uid);
}
