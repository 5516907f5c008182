//! Real programs as handlers and real clients: git daemon and in.tftpd
//! (the bundled demo: `demo.rs`).

use std::process::Command;

use crate::harness::{is_root, need, run_ok, Dir, Server};

#[test]
fn git_daemon_inetd_serves_a_clone() {
    let git = crate::need!("git", "git");
    let dir = Dir::new();
    crate::harness::git_bare_repo(&dir.path().join("repos/project.git"), "served by oxinetd\n");
    // The repository belongs to the user running the tests; so does the
    // handler (as root that must be said explicitly).
    let user = if is_root() { "user = \"root\"" } else { "" };
    let config = format!(
        "[[service]]\nname = \"git\"\nlisten = \"127.0.0.1:0\"\nserver = \"{}\"\nargs = [\"daemon\", \"--inetd\", \"--export-all\", \"--base-path={{dir}}/repos\", \"{{dir}}/repos\"]\n{user}\n",
        git.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let port = s.addr("git").port();
    let clone = s.dir.path().join("clone");
    run_ok(
        Command::new(&git)
            .args(["clone", "-q"])
            .arg(format!("git://127.0.0.1:{port}/project.git"))
            .arg(&clone),
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "served by oxinetd\n"
    );
    s.expect_line(&["exit service=git", "status=0"]);
}

#[test]
fn tftpd_as_a_udp_wait_service_twice_in_a_row() {
    crate::require_root!();
    let tftpd = need("in.tftpd", "tftpd-hpa");
    let tftp = need("tftp", "tftp-hpa");
    let dir = Dir::new();
    let root = dir.path().join("tftp");
    std::fs::create_dir(&root).unwrap();
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("image.bin"), &payload).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        root.join("image.bin"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    // in.tftpd chroots (-s) and drops to nobody itself (-u), so it starts as
    // root; -t 1 makes it exit 1 s after its last request, so the second
    // fetch needs a new handler.
    let config = format!(
        "[[service]]\nname = \"tftp\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nwait = true\nuser = \"root\"\nserver = \"{}\"\nargs = [\"-s\", \"{{dir}}/tftp\", \"-u\", \"nobody\", \"-t\", \"1\"]\n",
        tftpd.display()
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let port = s.addr("tftp").port().to_string();
    for round in 1..=2 {
        let out = s.dir.path().join(format!("got{round}.bin"));
        run_ok(
            Command::new("timeout")
                .arg("60")
                .arg(&tftp)
                .args(["-m", "binary", "127.0.0.1", &port, "-c", "get", "image.bin"])
                .arg(&out),
        );
        assert!(
            std::fs::read(&out).unwrap() == payload,
            "round {round}: bytes differ"
        );
        // Wait until this handler is gone, so the next fetch re-spawns.
        let exits = s.count(&["exit service=tftp"]);
        let deadline = std::time::Instant::now() + crate::harness::PATIENCE;
        while s.count(&["exit service=tftp"]) == exits && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(
            s.count(&["exit service=tftp", "status=0"]),
            round,
            "{}",
            s.log()
        );
    }
    assert_eq!(s.count(&["start service=tftp"]), 2);
    assert_eq!(s.count(&["looping"]), 0);
}
