//! `oxinetd check`: every error as FILE:LINE:COL, golden files for the
//! wording, and the shipped configs.

use std::path::Path;
use std::process::Command;

use crate::harness::{bin, is_root, Dir};

/// Run `oxinetd check -f NAME` in `dir` as an unprivileged user (nobody
/// when the tests run as root), so the identity rules give the same answer
/// everywhere. Returns (exit code, stdout, stderr).
fn check_in(dir: &Path, name: &str) -> (i32, String, String) {
    let mut cmd = if is_root() {
        let mut c = Command::new(crate::harness::need("setpriv", "util-linux"));
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(bin());
        c
    } else {
        Command::new(bin())
    };
    let out = cmd
        .arg("check")
        .arg("-f")
        .arg(name)
        .current_dir(dir)
        .output()
        .expect("run oxinetd check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configs_match_their_golden_errors() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut seen = 0;
    for entry in std::fs::read_dir(&fixtures).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let dir = Dir::new();
        dir.write(&name, &std::fs::read_to_string(&path).unwrap());
        let (code, _, stderr) = check_in(dir.path(), &name);
        let golden = path.with_extension("stderr");
        if std::env::var_os("OXINETD_BLESS").is_some() {
            std::fs::write(&golden, &stderr).unwrap();
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|_| {
            panic!(
                "{} is missing (OXINETD_BLESS=1 writes it)",
                golden.display()
            )
        });
        assert_eq!(stderr, want, "{name}");
        assert_eq!(code, 1, "{name}");
        seen += 1;
    }
    assert!(seen >= 5, "only {seen} fixtures");
}

#[test]
fn a_valid_config_passes() {
    let dir = Dir::new();
    dir.write(
        "ok.toml",
        "[[service]]\nname = \"a\"\nlisten = [\"127.0.0.1:tftp\", \"[::1]:6969\"]\nsocket = \"dgram\"\nserver = \"/bin/cat\"\n",
    );
    let (code, stdout, stderr) = check_in(dir.path(), "ok.toml");
    assert_eq!(
        (code, stdout.as_str(), stderr.as_str()),
        (0, "ok.toml: OK, 1 service\n", "")
    );
}

#[test]
fn root_must_name_a_user() {
    crate::require_root!();
    let dir = Dir::new();
    let cfg = dir.write(
        "c.toml",
        "[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\nserver = \"/bin/cat\"\n",
    );
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!(
            "{}:2:1: service \"a\": no user: oxinetd runs as root",
            cfg.display()
        )),
        "{stderr}"
    );
}

/// Issue 18: as root, `check` finds a program its handlers' user cannot
/// reach (a checkout in a 0700 home) and names the directory that blocks,
/// at the `server` value; root's own services are not affected.
#[test]
fn a_server_its_user_cannot_reach_is_an_error_naming_the_directory() {
    use std::os::unix::fs::PermissionsExt;
    crate::require_root!();
    let dir = Dir::new();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::copy(dir.path().join("upper.sh"), home.join("upper.sh")).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cfg = dir.write(
        "c.toml",
        "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:1\"\nserver = \"home/upper.sh\"\n\
         user = \"nobody\"\n\n[[service]]\nname = \"r\"\nlisten = \"127.0.0.1:2\"\n\
         server = \"home/upper.sh\"\nuser = \"root\"\n",
    );
    let check = || {
        let out = Command::new(bin())
            .arg("check")
            .arg("-f")
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, stderr) = check();
    assert_eq!(code, Some(1), "{stderr}");
    let want = format!(
        "{}:4:10: server \"home/upper.sh\" (relative to the config file's directory): \
         {} is not searchable by nobody (mode 0700, owner root)\n",
        cfg.display(),
        home.display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
    assert!(stderr.contains("(1 valid service would run)"), "{stderr}");

    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, stdout, stderr) = check();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with(": OK, 2 services\n"), "{stdout}");
}

#[test]
fn shipped_configs_are_valid() {
    let etc = Path::new(env!("CARGO_MANIFEST_DIR")).join("etc");
    let dir = Dir::new();
    copy_tree(&etc, dir.path());
    // The demo is for any ordinary user.
    let (code, stdout, stderr) = check_in(dir.path(), "demo.toml");
    assert_eq!(code, 0, "demo.toml: {stderr}");
    assert_eq!(stdout, "demo.toml: OK, 4 services\n");
    // The reference config is for a root-run system service.
    crate::require_root!();
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(dir.path().join("oxinetd.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "oxinetd.toml: {stderr}");
}

pub fn copy_tree(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn every_config_key_is_documented_in_the_man_page() {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man/oxinetd.toml.5"),
    )
    .expect("packaging/man/oxinetd.toml.5");
    let keys = oxinetd::config::SERVICE_KEYS
        .iter()
        .chain(oxinetd::config::GLOBAL_KEYS)
        .chain(oxinetd::config::ROOT_KEYS);
    let missing: Vec<&&str> = keys
        .filter(|k| !page.lines().any(|l| l.trim() == format!(".It Cm {k}")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from oxinetd.toml.5: {missing:?}"
    );
}

#[test]
fn includes_merge_services_and_errors_name_the_included_file() {
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    dir.write(
        "main.toml",
        "include = [\"conf.d/*.toml\"]\n[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:7000\"\nserver = \"/bin/cat\"\n",
    );
    dir.write(
        "conf.d/10-b.toml",
        "[[service]]\nname = \"b\"\nlisten = \"127.0.0.1:7001\"\nserver = \"/bin/cat\"\n",
    );
    let (code, stdout, _) = check_in(dir.path(), "main.toml");
    assert_eq!((code, stdout.as_str()), (0, "main.toml: OK, 2 services\n"));

    dir.write(
        "conf.d/20-c.toml",
        "[global]\nshutdown_grace = 1\n[[service]]\nname = \"a\"\nlisten = \"127.0.0.1:7002\"\nserver = \"/bin/cat\"\n",
    );
    let (code, _, stderr) = check_in(dir.path(), "main.toml");
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        "conf.d/20-c.toml:1:2: \"global\" may only be set in the main config file, not in an included one\n\
         conf.d/20-c.toml:4:1: duplicate service name \"a\" (first defined at main.toml:3:1)\n\
         main.toml: 2 errors (2 valid services would run)\n"
    );
}

#[test]
fn man_pages_lint_clean() {
    let mandoc = crate::need!("mandoc", "mandoc");
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man");
    let out = Command::new(mandoc)
        .args(["-T", "lint", "-W", "warning"])
        .arg(man.join("oxinetd.8"))
        .arg(man.join("oxinetd.toml.5"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `oxinetd check --list -f NAME` in `dir`, as the current user.
fn list_in(dir: &Path, name: &str) -> String {
    let out = Command::new(bin())
        .args(["check", "--list", "-f", name])
        .current_dir(dir)
        .output()
        .expect("run oxinetd check --list");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn list_prints_each_service_as_toml_that_loads_back_the_same() {
    crate::require_root!();
    let dir = Dir::new();
    std::fs::write(dir.path().join("banner"), "go away\n").unwrap();
    dir.write(
        "a.toml",
        "[defaults]\nuser = \"nobody\"\n\
         [[service]]\nname = \"cat\"\nlisten = [\"127.0.0.1:7101\", \"[::1]:7101\"]\n\
         server = \"/bin/cat\"\nargs = [\"-u\", \"it's \\\"quoted\\\"\"]\nenv = { B = \"2\", A = \"1\" }\n\
         only_from = [\"10.0.0.0/8\"]\naccess_times = [\"08:00-17:30\"]\ncps = [5, 2]\n\
         banner_fail = \"banner\"\nlog_on_failure = [\"attempt\"]\n\
         [[service]]\nname = \"echo\"\nlisten = \"*:7102\"\nsocket = \"dgram\"\nserver = \"internal:echo\"\n\
         [[service]]\nname = \"sock\"\nlisten = \"/run/oxinetd-list-test.sock\"\nprotocol = \"unix\"\n\
         server = \"/bin/cat\"\nsocket_mode = \"0660\"\n",
    );
    let listed = list_in(dir.path(), "a.toml");
    // Defaults are shown with the value they take.
    assert!(listed.contains("\ninstances = 256\n"), "{listed}");
    assert!(listed.contains("\nrate = [5, 1, 2]\n"), "{listed}");
    assert!(
        listed.contains("\nenv = { A = \"1\", B = \"2\" }\n"),
        "{listed}"
    );
    assert!(!listed.contains("Some("), "{listed}");
    // The listing, banner aside (its contents are read, not its path), is
    // a config with the same services.
    let again: String = listed
        .lines()
        .filter(|l| !l.contains(": OK, "))
        .map(|l| format!("{l}\n"))
        .collect();
    dir.write("b.toml", &again);
    let strip = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("# from ") && !l.contains(": OK, "))
            .map(str::to_owned)
            .collect()
    };
    let relisted = list_in(dir.path(), "b.toml");
    let without_banner = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .filter(|l| !l.starts_with("# banner_fail"))
            .collect()
    };
    assert_eq!(
        without_banner(strip(&relisted)),
        without_banner(strip(&listed))
    );
}

/// `check --list | head`: the reader gone before oxinetd writes, the
/// output stops there, quietly (Rust ignores SIGPIPE, and `print!` used
/// to panic on the closed pipe).
#[test]
fn list_to_a_closed_pipe_stops_without_a_panic() {
    let dir = Dir::new();
    let config = dir.write(
        "oxinetd.toml",
        "[[service]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:echo\"\n",
    );
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    let out = Command::new(bin())
        .args(["check", "--list", "-f"])
        .arg(&config)
        .stdout(std::process::Stdio::from(write))
        .output()
        .expect("run oxinetd check --list");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
