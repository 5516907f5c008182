//! Debian's inetd ecosystem: oxinetd as the `inet-superserver` that
//! packages register their services with through update-inetd(8), which
//! edits /etc/inetd.conf and then wakes "the" inetd (oxinetd(8), "inetd.conf
//! and update-inetd").
//!
//! The end-to-end test installs the oxinetd .deb and fingerd, a package
//! whose postinst runs `update-inetd --add`, into this machine (as root,
//! one package test at a time), all in a network namespace of its own so
//! that finger's port 79 is free whatever the machine runs (where systemd
//! runs the machine, oxinetd.service runs outside any namespace: then the
//! test needs ports 79 and 17 free), and uses the real `finger` client. fingerd's .deb comes from `OXINETD_TEST_DEBS`, by
//! default target/test-debs (`.ci/run` fetches it there with `apt-get
//! download`, so that its postinst runs in the test, after oxinetd's
//! package made /etc/inetd.conf).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{bin, eventually, run_ok, user_line, Dir, Netns};
use crate::packaging::{
    build_deb, default_target, dpkg_lock, have_cargo_deb, installed, package_installed,
    running_installed, systemd_is_init, tool, Installed, Restore,
};

/// A TOML config's `include` may name an inetd.conf (the shipped config
/// includes /etc/inetd.conf): its lines run as services beside the TOML
/// ones, `[defaults]` filling what a line leaves unset, its disabled
/// (`#<off>#`) lines and a pattern matching nothing ignored.
#[test]
fn an_included_inetd_conf_runs_beside_the_toml_services() {
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into());
    let dir = Dir::new();
    dir.write(
        "inetd.conf",
        &format!(
            "# update-inetd's file\n\
             127.0.0.1:echo stream tcp nowait {user} /bin/cat cat\n\
             #<off># 127.0.0.1:daytime stream tcp nowait {user} internal\n"
        ),
    );
    let config = dir.write(
        "oxinetd.toml",
        &format!(
            "include = [\"conf.d/*.toml\", \"inetd.conf\", \"nowhere/inetd.conf\"]\n\
             [defaults]\n\
             only_from = [\"127.0.0.1\"]\n\
             {user_line}\n\
             [[service]]\n\
             name = \"upper\"\n\
             listen = \"127.0.0.1:2001\"\n\
             server = \"{{dir}}/upper.sh\"\n",
            user_line = user_line()
        ),
    );
    let out = run_ok(
        Command::new(bin())
            .args(["check", "--list", "-f"])
            .arg(&config),
    );
    let inetd_conf = dir.path().join("inetd.conf");
    assert!(
        out.contains(&format!("# from {}:2:", inetd_conf.display())),
        "{out}"
    );
    let echo = out
        .split("[[service]]")
        .find(|s| s.contains("name = \"echo-tcp\""))
        .unwrap_or_else(|| panic!("no echo service from inetd.conf:\n{out}"));
    assert!(echo.contains("server = \"/bin/cat\""), "{echo}");
    assert!(echo.contains("listen = [\"127.0.0.1:7\"]"), "{echo}");
    // From [defaults]; the line's own setting (stderr on the socket, as
    // under every inetd) is kept.
    assert!(echo.contains("only_from = [\"127.0.0.1/32\"]"), "{echo}");
    assert!(echo.contains("stderr = \"socket\""), "{echo}");
    assert!(!out.contains("daytime"), "{out}");
    assert!(out.contains(": OK, 2 services"), "{out}");
}

/// fingerd registered through update-inetd by its own postinst is served
/// by the running oxinetd to the real finger client, with no manual
/// reload; `update-inetd --disable` stops it answering and `--enable`
/// brings it back; a second service's `--add` (update-inetd's "restart")
/// and `--remove` ("force-reload") take effect too. Then both packages are
/// purged and /etc/inetd.conf is as it was.
///
/// update-inetd runs `invoke-rc.d oxinetd ACTION`, which runs
/// /etc/init.d/oxinetd where systemd does not run the machine (as in CI's
/// containers) and acts on oxinetd.service where it does (then the first
/// service is served through oxinetd-inetd.path). invoke-rc.d obeys
/// policy-rc.d, and a container's (Docker's exits 101) denies every
/// action: for the test, a policy-rc.d allowing oxinetd's alone stands
/// in, and the original is put back after.
#[test]
fn update_inetd_registers_fingerd_and_oxinetd_serves_it_without_a_manual_restart() {
    crate::require_root!();
    let test = "update_inetd_registers_fingerd_and_oxinetd_serves_it_without_a_manual_restart";
    if !default_target(test) || !have_cargo_deb(test) {
        return;
    }
    let tools = [
        ("update-inetd", "update-inetd"),
        ("tcpd", "tcpd"),
        ("ip", "iproute2"),
        ("nc", "netcat-openbsd"),
        ("finger", "finger"),
        ("invoke-rc.d", "init-system-helpers"),
    ];
    for (name, package) in tools {
        if tool(test, name, package).is_none() {
            return;
        }
    }
    if package_installed("fingerd") {
        crate::harness::skipped(
            test,
            "needs a machine without fingerd (the test installs and purges its own)",
        );
        return;
    }
    if systemd_is_init() {
        for port in [79, 17] {
            if port_in_use(port) {
                crate::harness::skipped(
                    test,
                    &format!(
                        "needs port {port} free (systemd runs oxinetd.service outside a namespace)"
                    ),
                );
                return;
            }
        }
    }
    let fingerd_deb = fingerd_deb();
    let _lock = dpkg_lock();
    let out = Dir::new();
    let deb = build_deb(&out);

    let ns = Place::new();
    let inetd_conf = Restore::new("/etc/inetd.conf");
    let policy = Restore::new(POLICY_RC_D);
    allow_only_oxinetd();
    let oxinetd = Installed;
    // Everything in the namespace: the init script starts oxinetd where
    // it is run (dpkg's postinst, then update-inetd's restart).
    dpkg(&ns, &["-i"], &deb);
    let pid = oxinetd_pid().unwrap_or_else(|| panic!("postinst did not start oxinetd"));
    assert!(running_installed().contains(&pid), "{pid} is not oxinetd");
    // The shipped config, /etc/inetd.conf included, checks clean.
    let check = run_ok(Command::new("/usr/sbin/oxinetd").arg("check"));
    assert!(
        check.starts_with("/etc/oxinetd/oxinetd.toml: OK, "),
        "{check}"
    );

    let fingerd = Purge("fingerd");
    // fingerd's postinst: update-inetd --group INFO --add "finger ...".
    dpkg(&ns, &["-i"], &fingerd_deb);
    let conf = std::fs::read_to_string("/etc/inetd.conf").expect("read /etc/inetd.conf");
    assert!(
        conf.lines()
            .any(|l| l.starts_with("finger") && l.contains("in.fingerd")),
        "{conf}"
    );
    expect(&ns, "fingerd added", || served(&finger(&ns)));
    // The same oxinetd, reloaded (update-inetd asked to "start" it).
    assert_eq!(oxinetd_pid(), Some(pid));

    update_inetd(&ns, &["--disable", "finger"]);
    expect(&ns, "finger disabled", || refused(&finger(&ns)));
    update_inetd(&ns, &["--enable", "finger"]);
    expect(&ns, "finger enabled", || served(&finger(&ns)));

    // With a service enabled, --add asks for a restart, --remove for a
    // force-reload.
    update_inetd(
        &ns,
        &[
            "--group",
            "OTHER",
            "--add",
            "qotd\tstream\ttcp\tnowait\tnobody\t/bin/echo\techo\tfrom-update-inetd",
        ],
    );
    expect(&ns, "qotd added", || {
        qotd(&ns).is_some_and(|o| o.contains("from-update-inetd"))
    });
    assert!(served(&finger(&ns)), "finger after the restart");
    update_inetd(&ns, &["--remove", "qotd"]);
    expect(&ns, "qotd removed", || qotd(&ns).is_none());
    assert!(served(&finger(&ns)), "finger after the reload");

    // Purged in the order apt would: fingerd's postrm removes its line.
    dpkg(&ns, &["--purge"], Path::new("fingerd"));
    drop(fingerd);
    dpkg(&ns, &["--purge"], Path::new("oxinetd"));
    drop(oxinetd);
    assert!(!installed(), "oxinetd is still installed after purge");
    assert_eq!(running_installed(), Vec::<i32>::new(), "oxinetd still runs");
    if !inetd_conf.existed() {
        assert!(
            !Path::new("/etc/inetd.conf").exists(),
            "/etc/inetd.conf is left after purge"
        );
    }
    drop(policy);
    drop(inetd_conf);
}

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// policy-rc.d(8) that lets invoke-rc.d run oxinetd's init script and
/// nothing else, whatever the runlevel (a container has none).
fn allow_only_oxinetd() {
    std::fs::write(
        POLICY_RC_D,
        "#!/bin/sh\n\
         # Written by oxinetd's tests/it/update_inetd.rs; the original is put back.\n\
         [ \"$1\" = --quiet ] && shift\n\
         [ \"$1\" = oxinetd ] && exit 0\n\
         exit 101\n",
    )
    .expect("write policy-rc.d");
    std::fs::set_permissions(POLICY_RC_D, std::fs::Permissions::from_mode(0o755))
        .expect("chmod policy-rc.d");
}

/// Purges a package when dropped.
struct Purge(&'static str);

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", self.0]).output();
    }
}

/// fingerd's .deb: found in the test-debs directory, else fetched into it
/// (as `.ci/run` does; apt-get download installs nothing).
fn fingerd_deb() -> PathBuf {
    let dir = std::env::var_os("OXINETD_TEST_DEBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-debs"));
    let find = || {
        std::fs::read_dir(&dir).ok()?.find_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            (name.starts_with("fingerd_") && name.ends_with(".deb")).then_some(path)
        })
    };
    if let Some(deb) = find() {
        return deb;
    }
    let _ = std::fs::create_dir_all(&dir);
    let _ = Command::new("apt-get")
        .args(["download", "fingerd"])
        .current_dir(&dir)
        .output();
    find().unwrap_or_else(|| {
        panic!(
            "fingerd's .deb is missing: mkdir -p {d} && cd {d} && apt-get download fingerd \
             (.ci/run does)",
            d = dir.display()
        )
    })
}

fn dpkg(ns: &Place, args: &[&str], what: &Path) {
    run_ok(
        ns.command("dpkg")
            .args(args)
            .arg(what)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
}

fn update_inetd(ns: &Place, args: &[&str]) {
    run_ok(
        ns.command("update-inetd")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    );
}

/// Where the test runs its commands: a network namespace of its own, or
/// (where systemd runs oxinetd.service, outside any) this machine's.
enum Place {
    Netns(Netns),
    Host,
}

impl Place {
    fn new() -> Place {
        match systemd_is_init() {
            true => Place::Host,
            false => Place::Netns(Netns::new()),
        }
    }

    fn command(&self, program: &str) -> Command {
        match self {
            Place::Netns(ns) => ns.command(program),
            Place::Host => Command::new(program),
        }
    }
}

/// Whether something listens on TCP `port` here.
fn port_in_use(port: u16) -> bool {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2)");
    !out.stdout.is_empty()
}

/// The running oxinetd's pid: the unit's main pid under systemd, else the
/// one oxinetd wrote to the init script's pid file.
fn oxinetd_pid() -> Option<i32> {
    let pid = if systemd_is_init() {
        run_ok(Command::new("systemctl").args([
            "show",
            "-p",
            "MainPID",
            "--value",
            "oxinetd.service",
        ]))
    } else {
        std::fs::read_to_string("/run/oxinetd.pid").ok()?
    };
    pid.trim().parse().ok().filter(|&p| p > 0)
}

/// `finger root@127.0.0.1`, inside the namespace.
fn finger(ns: &Place) -> Output {
    ns.command("finger")
        .arg("root@127.0.0.1")
        .output()
        .expect("run finger")
}

/// in.fingerd answered, through tcpd, as the finger client shows it.
fn served(o: &Output) -> bool {
    o.status.success() && String::from_utf8_lossy(&o.stdout).contains("Login: root")
}

fn refused(o: &Output) -> bool {
    String::from_utf8_lossy(&o.stderr).contains("Connection refused")
}

/// What the qotd port (17) answers, or `None` when it refuses.
fn qotd(ns: &Place) -> Option<String> {
    let o = ns
        .command("nc")
        .args(["-N", "127.0.0.1", "17"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run nc");
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Wait for `cond`; on failure, say what oxinetd was serving.
fn expect(ns: &Place, what: &str, cond: impl FnMut() -> bool) {
    if eventually(cond) {
        return;
    }
    let conf = std::fs::read_to_string("/etc/inetd.conf").unwrap_or_default();
    let check = Command::new("/usr/sbin/oxinetd")
        .args(["check", "--list"])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default();
    let ss = ns
        .command("ss")
        .arg("-ltnp")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let f = finger(ns);
    panic!(
        "{what}: not seen in time\nfinger: {f:?}\nlisteners:\n{ss}\n/etc/inetd.conf:\n{conf}\n\
         oxinetd check --list:\n{check}\npid file: {:?}",
        oxinetd_pid()
    );
}
