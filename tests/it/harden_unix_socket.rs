//! Issue 16, section 1: oxinetd (root) must never change the owner or mode
//! of anything but the socket file it bound. A socket path whose
//! directories someone else could write, or that goes through a symbolic
//! link, is refused; a reload changes a kept socket's file only through
//! its checked directory.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{bin, field, need, talk_unix, Dir, Server};

/// A UNIX-domain `cat` service as nobody.
fn cat_service(name: &str, path: &Path, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = [\"{}\"]\nserver = \"/bin/cat\"\n\
         user = \"nobody\"\n{extra}\n",
        path.display()
    )
}

fn mkdir(path: &Path, mode: u32, owner: u32) {
    std::fs::create_dir(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(path, Some(owner), Some(owner)).unwrap();
}

/// `oxinetd check -f CONFIG`: (success, stdout and stderr).
fn check(config: &Path) -> (bool, String) {
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(config)
        .output()
        .expect("run oxinetd check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The attacker of the issue, as nobody: swaps a symlink to the victim
/// and a socket in and out of the socket's path for `secs`.
const ATTACKER: &str = r#"
import os, socket, sys, time
d, sock, victim, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
keep, t, t1 = os.path.join(d, "keep"), os.path.join(d, "t"), os.path.join(d, "t1")
end = time.time() + secs
while not os.path.exists(sock) and time.time() < end:
    time.sleep(0.01)
try:
    os.link(sock, keep)
except OSError:
    s = socket.socket(socket.AF_UNIX)
    s.bind(keep)
n = 0
while time.time() < end:
    for f in (lambda: os.symlink(victim, t), lambda: os.rename(t, sock),
              lambda: os.link(keep, t1), lambda: os.rename(t1, sock)):
        try:
            f()
        except OSError:
            pass
    n += 1
print("swaps", n)
"#;

#[test]
fn a_link_swapped_in_under_reloads_never_changes_the_victims_mode() {
    crate::require_root!();
    let dir = Dir::new();
    // Form 1: a sticky world-writable directory, the socket given to the
    // attacker. Form 2: a directory the attacker owns.
    let sticky = dir.path().join("pub");
    mkdir(&sticky, 0o1777, 0);
    let owned = dir.path().join("own");
    mkdir(&owned, 0o755, 65534);
    let vdir = dir.path().join("victim");
    mkdir(&vdir, 0o755, 0);
    let victim = vdir.join("v");
    std::fs::write(&victim, "secret\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    let safe = dir.path().join("safe");
    mkdir(&safe, 0o755, 0);
    let script = dir.path().join("attacker.py");
    std::fs::write(&script, ATTACKER).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();

    let a = sticky.join("r.sock");
    let b = owned.join("r.sock");
    let ok = safe.join("ok.sock");
    let config = [
        cat_service("a", &a, "socket_mode = \"0666\"\nsocket_owner = \"nobody\""),
        cat_service("b", &b, "socket_mode = \"0666\""),
        cat_service("ok", &ok, ""),
    ]
    .concat();
    let s = Server::start_in(dir.clone(), &config, &[], |_| {});
    assert_eq!(talk_unix(&ok, "still here\n"), "still here\n");

    const RELOADS: u32 = 200;
    let secs = f64::from(RELOADS) * 0.02 + 1.0;
    let attackers: Vec<_> = [(&sticky, &a), (&owned, &b)]
        .iter()
        .map(|(d, sock)| {
            Command::new(need("setpriv", "util-linux"))
                .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
                .arg(need("python3", "python3"))
                .arg(&script)
                .arg(d)
                .arg(sock)
                .arg(&victim)
                .arg(secs.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the attacker")
        })
        .collect();
    let mut changed = 0;
    for _ in 0..RELOADS {
        s.signal(Signal::SIGHUP);
        std::thread::sleep(Duration::from_millis(20));
        let m = std::fs::metadata(&victim).unwrap();
        if (m.mode() & 0o7777, m.uid(), m.gid()) != (0o600, 0, 0) {
            changed += 1;
            std::os::unix::fs::chown(&victim, Some(0), Some(0)).unwrap();
            std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    for a in attackers {
        let out = a.wait_with_output().unwrap();
        assert!(out.status.success(), "the attacker failed");
    }
    assert_eq!(
        changed, 0,
        "the victim changed after {changed} of {RELOADS} reloads"
    );

    // Both attacked paths are refused, with where and why.
    s.expect_line(&[
        "config-error",
        "oxinetd.toml:3:",
        &format!("{} is writable by anyone (mode 1777)", sticky.display()),
    ]);
    s.expect_line(&[
        "config-error",
        &format!("{} is owned by uid 65534", owned.display()),
    ]);
    // The other service ran all along.
    assert_eq!(talk_unix(&ok, "and now\n"), "and now\n");
}

#[test]
fn a_socket_directory_another_user_can_write_is_refused_and_other_services_run() {
    crate::require_root!();
    let dir = Dir::new();
    let theirs = dir.path().join("theirs");
    mkdir(&theirs, 0o755, 65534);
    let group = dir.path().join("group");
    mkdir(&group, 0o775, 0);
    let safe = dir.path().join("safe");
    mkdir(&safe, 0o755, 0);
    let ok = safe.join("ok.sock");
    let config = [
        cat_service("theirs", &theirs.join("s.sock"), ""),
        cat_service("group", &group.join("s.sock"), ""),
        cat_service("ok", &ok, ""),
    ]
    .concat();
    let path = dir.write("check.toml", &config);
    let (success, out) = check(&path);
    assert!(!success, "{out}");
    let at = path.display().to_string();
    assert!(
        out.contains(&format!(
            "{at}:3:11: listen \"{}\": {} is owned by uid 65534",
            theirs.join("s.sock").display(),
            theirs.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{at}:9:11: listen \"{}\": {} is writable by its group (mode 0775)",
            group.join("s.sock").display(),
            group.display()
        )),
        "{out}"
    );

    let s = Server::start_in(dir, &config, &[], |_| {});
    s.expect_line(&["config-error", "is owned by uid 65534"]);
    s.expect_line(&["config-error", "is writable by its group"]);
    assert!(!theirs.join("s.sock").exists());
    assert!(!group.join("s.sock").exists());
    let ready = s.expect_line(&["ready"]);
    assert_eq!(field(&ready, "listeners"), Some("1"), "{ready}");
    assert_eq!(talk_unix(&ok, "served\n"), "served\n");
}

#[test]
fn a_symlinked_parent_directory_is_not_followed() {
    crate::require_root!();
    let dir = Dir::new();
    let target = dir.path().join("target");
    mkdir(&target, 0o700, 0);
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let ok = dir.path().join("ok.sock");
    let config = [
        cat_service("linked", &link.join("made/s.sock"), ""),
        cat_service("ok", &ok, ""),
    ]
    .concat();
    let path = dir.write("check.toml", &config);
    let (success, out) = check(&path);
    assert!(!success, "{out}");
    assert!(
        out.contains(&format!("{} is a symbolic link", link.display())),
        "{out}"
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    s.expect_line(&["config-error", "is a symbolic link"]);
    assert_eq!(talk_unix(&ok, "served\n"), "served\n");
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn a_reload_changes_a_kept_socket_only_through_its_directory() {
    crate::require_root!();
    let strace = need("strace", "strace");
    let dir = Dir::new();
    let run = dir.path().join("run");
    mkdir(&run, 0o755, 0);
    let sock = run.join("s.sock");
    let s = Server::start_in(
        dir.clone(),
        &cat_service("s", &sock, "socket_mode = \"0600\""),
        &[],
        |_| {},
    );
    let trace = dir.path().join("trace");
    let mut tracer = Command::new(strace)
        .args(["-f", "-qq", "-e", "trace=%file,fchmod,fchown", "-o"])
        .arg(&trace)
        .arg("-p")
        .arg(s.pid().to_string())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strace");
    // strace says when it is attached; give it a moment otherwise.
    let mut err = BufReader::new(tracer.stderr.take().unwrap());
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    });
    assert!(crate::harness::eventually(|| trace.exists()));
    std::thread::sleep(Duration::from_millis(300));

    // Unchanged: the file is not touched. Changed: through the directory.
    let same = cat_service("s", &sock, "socket_mode = \"0600\"");
    assert!(s.reload(&same).contains("kept=1"));
    let open = cat_service(
        "s",
        &sock,
        "socket_mode = \"0660\"\nsocket_owner = \"nobody:nogroup\"",
    );
    assert!(s.reload(&open).contains("kept=1"));
    let m = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o660, 65534, 65534));
    assert_eq!(talk_unix(&sock, "hi\n"), "hi\n");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(tracer.id() as i32),
        Signal::SIGINT,
    )
    .unwrap();
    let _ = tracer.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("chmod") || l.contains("chown"))
        .collect();
    let full = sock.display().to_string();
    for l in &changes {
        assert!(
            !l.contains(&full) && !l.contains("AT_FDCWD"),
            "a change by path: {l}\n{text}"
        );
    }
    // Exactly one owner and one mode change, both relative to a descriptor.
    let by_dir = |call: &str| {
        changes
            .iter()
            .filter(|l| l.contains(call) && l.contains("\"s.sock\""))
            .count()
    };
    assert_eq!((by_dir("fchownat("), by_dir("fchmodat")), (1, 1), "{text}");
    drop(s);
}
