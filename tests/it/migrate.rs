//! Migrating what oxinetd will not honour as written: host names in
//! xinetd's `only_from`/`no_access` (the service is kept out of the run,
//! and `import` writes it commented out with a FIXME naming the host), and
//! tcp_wrappers rules (`hosts.allow`, `hosts.deny`) for a service being
//! migrated, which `check`, `import` and a start warn about.

use std::process::{Command, Output};

use crate::harness::{bin, Dir};

fn oxinetd(dir: &Dir, args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(dir.path())
        .env(
            "OXINETD_TCPWRAPPERS_DIR",
            dir.path().join("etc").as_os_str(),
        )
        .output()
        .expect("run oxinetd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn xinetd_tree(dir: &Dir) {
    std::fs::create_dir_all(dir.path().join("xinetd.d")).unwrap();
    dir.write(
        "xinetd.conf",
        "defaults\n{\n\tinstances = 10\n}\nincludedir {dir}/xinetd.d\n",
    );
    dir.write(
        "xinetd.d/echo",
        "service echo\n{\n\ttype = INTERNAL\n\tsocket_type = stream\n\twait = no\n\
         \tport = 7\n\tonly_from = 127.0.0.1 trusted.example.com\n}\n",
    );
    dir.write(
        "xinetd.d/rsync",
        "service rsync\n{\n\tsocket_type = stream\n\twait = no\n\tuser = nobody\n\
         \tserver = /usr/bin/rsync\n\tserver_args = --daemon\n}\n",
    );
}

#[test]
fn a_host_name_keeps_the_service_out_and_import_writes_it_with_a_fixme() {
    let dir = Dir::new();
    xinetd_tree(&dir);
    let check = oxinetd(&dir, &["check", "-f", "xinetd.conf"]);
    let err = text(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{err}");
    assert!(
        err.contains("xinetd.d/echo:7:2: not run: service echo: only_from \"trusted.example.com\": host and network names are not supported"),
        "{err}"
    );
    let import = oxinetd(&dir, &["import", "xinetd.conf"]);
    let out = text(&import.stdout);
    assert_eq!(import.status.code(), Some(1), "{}", text(&import.stderr));
    // The service is there, commented out, under a FIXME naming the host.
    let fixme = out
        .lines()
        .position(|l| l.contains("FIXME: only_from \"trusted.example.com\" names a host"))
        .unwrap_or_else(|| panic!("no FIXME:\n{out}"));
    let rest: Vec<&str> = out.lines().skip(fixme + 1).take(8).collect();
    assert_eq!(rest[0], "# [[service]]", "{out}");
    assert!(rest.contains(&"# name = \"echo\""), "{out}");
    assert!(rest.contains(&"# only_from = [\"127.0.0.1/32\"]"), "{out}");
    // The other service is written to run, and the import checks clean
    // (the commented one is not run).
    assert!(out.contains("\n[[service]]\nname = \"rsync\"\n"), "{out}");
    dir.write("imported.toml", &out);
    let again = oxinetd(&dir, &["check", "-f", "imported.toml"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("OK, 1 service"),
        "{}",
        text(&again.stdout)
    );
}

#[test]
fn tcp_wrappers_rules_for_a_migrated_service_are_warned_about() {
    let dir = Dir::new();
    xinetd_tree(&dir);
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    dir.write(
        "etc/hosts.allow",
        "# in.fingerd: a comment is no rule\nsshd: ALL\nrsync, in.fingerd : 10.0.0.0/8\n",
    );
    dir.write("etc/hosts.deny", "ALL EXCEPT in.fingerd: ALL\n");
    dir.write(
        "inetd.conf",
        "finger stream tcp nowait nobody /usr/sbin/tcpd in.fingerd\n\
         127.0.0.1:2007 stream tcp nowait nobody /bin/cat cat\n",
    );
    let allow = dir.path().join("etc/hosts.allow").display().to_string();
    let deny = dir.path().join("etc/hosts.deny").display().to_string();

    // xinetd: rsync is named by hosts.allow line 3 and by hosts.deny's ALL;
    // echo is not run (its host name), so not warned about.
    let check = oxinetd(&dir, &["check", "-f", "xinetd.conf"]);
    let err = text(&check.stderr);
    assert!(
        err.contains(&format!("{allow}:3:1: warning: service rsync: hosts.allow has a rule for it (\"rsync, in.fingerd\")")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{deny}:1:1: warning: service rsync: hosts.deny has a rule"
        )),
        "{err}"
    );
    assert!(!err.contains("service echo: hosts."), "{err}");
    assert!(
        !err.contains(":1:1: warning: service rsync: hosts.allow"),
        "{err}"
    );
    let import = oxinetd(&dir, &["import", "xinetd.conf"]);
    let out = text(&import.stdout);
    assert!(
        out.contains(&format!(
            "# {allow}:3: FIXME: hosts.allow has a rule for it"
        )),
        "{out}"
    );
    assert!(text(&import.stderr).contains("does not read tcp_wrappers files"));

    // inetd.conf through tcpd: the daemon is argv[0] (in.fingerd); the
    // EXCEPT of hosts.deny takes it out there, hosts.allow names it.
    let check = oxinetd(&dir, &["check", "-f", "inetd.conf"]);
    let err = text(&check.stderr);
    assert!(
        err.contains(&format!("{allow}:3:1: warning: service finger")),
        "{err}"
    );
    assert!(
        !err.contains(&format!("{deny}:1:1: warning: service finger")),
        "{err}"
    );
    // The cat service is named by ALL in hosts.deny only.
    assert_eq!(err.matches("hosts.deny has a rule").count(), 1, "{err}");

    // Without the files: no warning.
    std::fs::remove_dir_all(dir.path().join("etc")).unwrap();
    let check = oxinetd(&dir, &["check", "-f", "inetd.conf"]);
    assert!(
        !text(&check.stderr).contains("tcp_wrappers"),
        "{}",
        text(&check.stderr)
    );
}
