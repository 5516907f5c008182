//! Issue 19, the handler's own filesystem and network: `chroot`,
//! `private_tmp` and `private_network`, on real handlers over real TCP
//! connections; each compared with the same handler without the key, so
//! the tests can fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{bin, talk, Dir, Server};

/// A root directory for a chroot under `dir`: root's, 0755, with the
/// static busybox as /bin/busybox and a 1777 /tmp.
fn prepared_root(dir: &Dir, busybox: &Path) -> PathBuf {
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
    for d in [&root, &root.join("bin")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    root
}

/// The static busybox (Debian's busybox-static), or the test is skipped.
macro_rules! static_busybox {
    () => {{
        let busybox = crate::need!("busybox", "busybox-static");
        // glibc's ldd: "not a dynamic executable" for a static one.
        let ldd = Command::new("ldd").arg(&busybox).output();
        let is_static = ldd.is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).contains("not a dynamic executable")
                || String::from_utf8_lossy(&o.stderr).contains("not a dynamic executable")
        });
        if !is_static {
            crate::harness::missing(crate::test_name!(), "a static busybox", "busybox-static");
            return;
        }
        busybox
    }};
}

#[test]
fn a_chrooted_handler_sees_only_its_root() {
    crate::require_root!();
    let busybox = static_busybox!();
    let dir = Dir::new();
    let root = prepared_root(&dir, &busybox);
    let config = format!(
        "[[service]]\nname = \"jail\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{r}\"\n\
         server = \"/bin/busybox\"\nargs = [\"sh\", \"-c\", \"echo inside; /bin/busybox ls /; /bin/busybox pwd\"]\n\
         user = \"nobody\"\n\n\
         [[service]]\nname = \"free\"\nlisten = \"127.0.0.1:0\"\nserver = \"{r}/bin/busybox\"\n\
         args = [\"sh\", \"-c\", \"/bin/busybox ls / | /bin/busybox grep -c .\"]\nuser = \"nobody\"\n",
        r = root.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    assert_eq!(talk(s.addr("jail"), ""), "inside\nbin\ntmp\n/\n");
    // The same program outside a chroot sees the host's root.
    let entries: usize = talk(s.addr("free"), "").trim().parse().unwrap();
    assert!(entries > 5, "{entries}");
    // The list shows it as configured.
    let list = Command::new(bin())
        .args(["check", "--list", "-f"])
        .arg(&s.config)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains(&format!("chroot = \"{}\"", root.display())),
        "{list}"
    );
}

#[test]
fn a_private_network_handler_cannot_connect_but_serves_its_client() {
    crate::require_root!();
    let bash = crate::need!("bash", "bash");
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = target.local_addr().unwrap().port();
    let script = format!(
        "if exec 3<>/dev/tcp/127.0.0.1/{port}; then echo connected; else echo unreachable; fi 2>/dev/null"
    );
    let config = format!(
        "[[service]]\nname = \"isolated\"\nlisten = \"127.0.0.1:0\"\nserver = \"{b}\"\n\
         args = [\"-c\", \"{script}\"]\nuser = \"nobody\"\nprivate_network = true\n\n\
         [[service]]\nname = \"open\"\nlisten = \"127.0.0.1:0\"\nserver = \"{b}\"\n\
         args = [\"-c\", \"{script}\"]\nuser = \"nobody\"\n",
        b = bash.display()
    );
    let s = Server::start_in(Dir::new(), &config, &[], |_| {});
    assert_eq!(talk(s.addr("isolated"), ""), "unreachable\n");
    assert_eq!(talk(s.addr("open"), ""), "connected\n");
}

#[test]
fn a_private_tmp_is_fresh_for_each_connection() {
    crate::require_root!();
    let probe = format!("/tmp/oxinetd-private-tmp-{}", std::process::id());
    let script = format!("test -e {probe} && echo seen || echo fresh; touch {probe}");
    let config = format!(
        "[[service]]\nname = \"private\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"{script}\"]\nuser = \"nobody\"\nprivate_tmp = true\n\n\
         [[service]]\nname = \"shared\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/sh\"\n\
         args = [\"-c\", \"{script}\"]\nuser = \"nobody\"\n"
    );
    let s = Server::start_in(Dir::new(), &config, &[], |_| {});
    assert_eq!(talk(s.addr("private"), ""), "fresh\n");
    assert_eq!(talk(s.addr("private"), ""), "fresh\n");
    assert!(!Path::new(&probe).exists(), "written to the host's /tmp");
    // Without it the file stays for the next connection.
    assert_eq!(talk(s.addr("shared"), ""), "fresh\n");
    assert_eq!(talk(s.addr("shared"), ""), "seen\n");
    let _ = std::fs::remove_file(&probe);
}

#[test]
fn a_chroot_gone_at_connection_time_is_logged_and_nothing_runs() {
    crate::require_root!();
    let busybox = static_busybox!();
    let dir = Dir::new();
    let root = prepared_root(&dir, &busybox);
    let config = format!(
        "[[service]]\nname = \"jail\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{r}\"\n\
         server = \"/bin/busybox\"\nargs = [\"echo\", \"served\"]\nuser = \"nobody\"\n",
        r = root.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    assert_eq!(talk(s.addr("jail"), ""), "served\n");
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(talk(s.addr("jail"), ""), "");
    s.expect_line(&[
        "error service=jail",
        "unable to chroot for handler: No such file or directory",
        "(server /bin/busybox, user nobody)",
    ]);
    s.expect_line(&["exit service=jail", "status=127"]);
}

#[test]
fn check_looks_for_the_server_inside_the_chroot_and_refuses_a_writable_root() {
    crate::require_root!();
    let dir = Dir::new();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    // /bin/sh exists on the host, not inside the root.
    let config = dir.write(
        "bad.toml",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{dir}/root\"\nserver = \"/bin/sh\"\nuser = \"nobody\"\n\n\
         [[service]]\nname = \"b\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{dir}/open\"\nserver = \"/bin/sh\"\nuser = \"nobody\"\n\n\
         [[service]]\nname = \"c\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{dir}/root\"\nserver = \"bin/sh\"\nuser = \"nobody\"\n\n\
         [[service]]\nname = \"d\"\nlisten = \"127.0.0.1:0\"\nserver = \"{dir}/upper.sh\"\nuser = \"nobody\"\nprivate_tmp = true\n",
    );
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.path().display();
    assert!(
        err.contains(&format!(
            "bad.toml:5:10: server \"/bin/sh\" (inside chroot {d}/root): No such file or directory"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "bad.toml:11:10: chroot \"{d}/open\": must be owned by root and writable by root only"
        )),
        "{err}"
    );
    assert!(
        err.contains("bad.toml:19:10: server \"bin/sh\": with chroot, give the program's absolute path inside"),
        "{err}"
    );
    // The test directory is under /tmp: the handler would be hidden.
    if dir.path().starts_with("/tmp") {
        assert!(
            err.contains("bad.toml:27:15: private_tmp: server "),
            "{err}"
        );
        assert!(
            err.contains("which private_tmp covers with an empty tmpfs"),
            "{err}"
        );
    }
}

/// Links inside the root resolve inside it: a /tmp that links to /srv
/// gets the fresh tmpfs where the handler's /tmp leads (the root's srv),
/// never the host's /srv, and stays private.
#[test]
fn a_linked_tmp_in_the_root_is_still_private() {
    crate::require_root!();
    let busybox = static_busybox!();
    let dir = Dir::new();
    let root = prepared_root(&dir, &busybox);
    std::fs::remove_dir(root.join("tmp")).unwrap();
    std::fs::create_dir(root.join("srv")).unwrap();
    std::fs::set_permissions(root.join("srv"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("/srv", root.join("tmp")).unwrap();
    let config = format!(
        "[[service]]\nname = \"jail\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{r}\"\nprivate_tmp = true\n\
         server = \"/bin/busybox\"\nargs = [\"sh\", \"-c\", \"/bin/busybox ls /tmp; echo hi > /tmp/seen && echo wrote\"]\n\
         user = \"nobody\"\n",
        r = root.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    assert_eq!(talk(s.addr("jail"), ""), "wrote\n");
    assert_eq!(talk(s.addr("jail"), ""), "wrote\n");
    assert!(
        !root.join("srv/seen").exists(),
        "written to the root's shared srv"
    );
}

/// A chroot reached through a link in a directory another user owns is
/// refused: that user could swap the root.
#[test]
fn a_chroot_through_another_users_directory_is_refused() {
    crate::require_root!();
    let dir = Dir::new();
    let bob = dir.path().join("bob");
    std::fs::create_dir_all(bob.join("srv/jail")).unwrap();
    for d in [bob.join("srv"), bob.join("srv/jail")] {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    nix::unistd::chown(&bob, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    std::os::unix::fs::symlink(bob.join("srv"), dir.path().join("link")).unwrap();
    let config = dir.write(
        "linked.toml",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{dir}/link/jail\"\nserver = \"/bin/sh\"\nuser = \"nobody\"\n",
    );
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{} can be changed by someone other than root",
            bob.display()
        )),
        "{err}"
    );
}

/// `check` follows links in the root as the handler will, inside it: a
/// program reached through an absolute link inside the root runs; a link
/// to a program only the host has, and a directory the user cannot
/// search inside the root, are errors at load.
#[test]
fn the_server_is_looked_up_inside_the_root_as_the_handler_sees_it() {
    crate::require_root!();
    let busybox = static_busybox!();
    let dir = Dir::new();
    let root = prepared_root(&dir, &busybox);
    std::os::unix::fs::symlink("/bin/busybox", root.join("bin/linked")).unwrap();
    // The host has /usr/bin/env; the root does not.
    std::os::unix::fs::symlink("/usr/bin/env", root.join("bin/env")).unwrap();
    let hidden = root.join("hidden");
    std::fs::create_dir(&hidden).unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(&busybox, hidden.join("busybox")).unwrap();
    let service = |name: &str, server: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{r}\"\n\
             server = \"{server}\"\nargv0 = \"sh\"\nargs = [\"-c\", \"echo via link\"]\nuser = \"nobody\"\n\n",
            r = root.display()
        )
    };
    let bad = dir.write(
        "bad.toml",
        &(service("host", "/bin/env") + &service("hidden", "/hidden/busybox")),
    );
    let out = Command::new(bin())
        .args(["check", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let r = root.display();
    assert!(
        err.contains(&format!(
            "bad.toml:5:10: server \"/bin/env\" (inside chroot {r}): No such file or directory"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "bad.toml:14:10: server \"/hidden/busybox\" (inside chroot {r}): {r}/hidden is not searchable by nobody"
        )),
        "{err}"
    );
    let s = Server::start_in(dir, &service("linked", "/bin/linked"), &[], |_| {});
    assert_eq!(talk(s.addr("linked"), ""), "via link\n");
}

/// The same when the link's target exists only inside the root (the host
/// has no such directory) and the root also has a /var/tmp: the
/// handler's /tmp still gets its tmpfs (it was judged on the host, found
/// missing, and only /var/tmp was covered).
#[test]
fn a_tmp_linked_to_a_directory_only_the_root_has_is_still_private() {
    crate::require_root!();
    let busybox = static_busybox!();
    let dir = Dir::new();
    let root = prepared_root(&dir, &busybox);
    let scratch = format!("oxinetd-scratch-{}", std::process::id());
    assert!(!Path::new("/").join(&scratch).exists());
    std::fs::remove_dir(root.join("tmp")).unwrap();
    for d in [root.join(&scratch), root.join("var/tmp")] {
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    }
    std::os::unix::fs::symlink(format!("/{scratch}"), root.join("tmp")).unwrap();
    let config = format!(
        "[[service]]\nname = \"jail\"\nlisten = \"127.0.0.1:0\"\nchroot = \"{r}\"\nprivate_tmp = true\n\
         server = \"/bin/busybox\"\nargs = [\"sh\", \"-c\", \"/bin/busybox ls /tmp /var/tmp; echo hi > /tmp/seen && echo hi > /var/tmp/seen && echo wrote\"]\n\
         user = \"nobody\"\n",
        r = root.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let fresh = "/tmp:\n\n/var/tmp:\nwrote\n";
    assert_eq!(talk(s.addr("jail"), ""), fresh);
    assert_eq!(talk(s.addr("jail"), ""), fresh);
    assert!(!root.join(&scratch).join("seen").exists());
}
