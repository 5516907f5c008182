//! Debian's inetd ecosystem: oxinetd as the `inet-superserver` that
//! packages register their services with through update-inetd(8), which
//! edits /etc/inetd.conf, included by the shipped config.

use std::process::Command;

use crate::harness::{bin, run_ok, user_line, Dir};

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
