//! The packages and `make install`: what they contain, and the .deb
//! installed on this machine and purged again (README, "Install").
//!
//! The release binary is built once per run and shared by the .deb, the
//! .rpm and their checks. The .deb is installed for real (as root), so a
//! guard purges it whatever happens, and the test refuses to run where an
//! oxinetd package is already installed rather than take it away.
//! Where a needed tool is missing, root (CI) fails with the package to
//! install; an ordinary user sees a SKIPPED line.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};

use crate::harness::{bin, is_root, run_ok, which, Dir};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool the test needs: found, or (as root, where CI installs it) a
/// failure naming the package, or (otherwise) a SKIPPED line and `None`.
pub(crate) fn tool(test: &str, name: &str, package: &str) -> Option<PathBuf> {
    if let Some(path) = which(name) {
        return Some(path);
    }
    if is_root() {
        panic!("{test}: {name} is missing: apt-get install {package} (`.ci/run packages` does)");
    }
    crate::harness::skipped(
        test,
        &format!("needs {package} (no {name}; apt-get install {package})"),
    );
    None
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// `cargo deb` works: as root, a failure naming the install command.
pub(crate) fn have_cargo_deb(test: &str) -> bool {
    let works = Command::new(cargo())
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !works {
        let hint = "cargo install cargo-deb --locked; `.ci/run packages` does";
        if is_root() {
            panic!("{test}: cargo-deb is missing: {hint}");
        }
        crate::harness::skipped(test, &format!("needs cargo-deb ({hint})"));
    }
    works
}

/// The packages are made from the default target's release build; the
/// musl run of the suite (README, "Release builds") repeats everything
/// else, not this.
pub(crate) fn default_target(test: &str) -> bool {
    if cfg!(target_env = "musl") {
        crate::harness::skipped(
            test,
            "needs the default target (packages are built and checked on it)",
        );
        return false;
    }
    true
}

/// The target directory this test binary was built in.
fn target_dir() -> PathBuf {
    let debug = Path::new(bin()).parent().expect("bin has a directory");
    debug.parent().expect("target directory").to_path_buf()
}

/// `cargo build --release`, once per run (a no-op when already built).
fn release_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        run_ok(
            Command::new(cargo())
                .args(["build", "--release", "--locked"])
                .env("CARGO_TARGET_DIR", target_dir())
                .current_dir(repo()),
        );
        target_dir().join("release/oxinetd")
    })
}

/// Regular files and symlinks under `root`, as absolute paths inside it.
fn files_under(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).expect("under root");
                out.insert(format!("/{}", rel.display()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// What every install holds, below its prefix (`/usr` or `/usr/local`),
/// besides the config in /etc and the zsh completion, whose directory
/// differs between Debian and the others.
const UNDER_PREFIX: &[&str] = &[
    "/sbin/oxinetd",
    "/libexec/oxinetd/oxinetd-tls",
    "/lib/systemd/system/oxinetd.service",
    "/share/man/man8/oxinetd.8.gz",
    "/share/man/man5/oxinetd.toml.5.gz",
    "/share/bash-completion/completions/oxinetd",
    "/share/fish/vendor_completions.d/oxinetd.fish",
    "/share/doc/oxinetd/README.md",
    "/share/doc/oxinetd/LICENSE-MIT",
    "/share/doc/oxinetd/LICENSE-APACHE",
    "/share/doc/oxinetd/examples/oxinetd.toml",
];
const CONFIG: &[&str] = &[
    "/etc/oxinetd/oxinetd.toml",
    "/etc/oxinetd/conf.d/README",
    "/etc/fail2ban/filter.d/oxinetd.conf",
    "/etc/fail2ban/jail.d/oxinetd.conf",
];

/// What only the .deb holds: Debian's inet-superserver parts (oxinetd(8),
/// "inetd.conf and update-inetd").
const DEB_ONLY: &[&str] = &[
    "/etc/init.d/oxinetd",
    "/usr/lib/systemd/system/oxinetd-inetd.path",
    "/usr/lib/systemd/system/oxinetd-inetd.service",
];

fn expected(prefix: &str, zsh_dir: &str) -> Vec<String> {
    let mut paths: Vec<String> = UNDER_PREFIX
        .iter()
        .map(|p| format!("{prefix}{p}"))
        .collect();
    paths.extend(CONFIG.iter().map(|p| p.to_string()));
    paths.push(format!("{prefix}/share/zsh/{zsh_dir}/_oxinetd"));
    paths
}

fn assert_holds(what: &str, files: &BTreeSet<String>, paths: &[String]) {
    for p in paths {
        assert!(files.contains(p), "{what} lacks {p}; it holds:\n{files:#?}");
    }
}

#[test]
fn committed_completions_are_the_binarys() {
    for (shell, file) in [
        ("bash", "oxinetd.bash"),
        ("zsh", "_oxinetd"),
        ("fish", "oxinetd.fish"),
    ] {
        let generated = run_ok(Command::new(bin()).args(["completions", shell]));
        let committed = std::fs::read_to_string(repo().join("packaging/completions").join(file))
            .expect("packaging/completions");
        assert!(
            generated == committed,
            "packaging/completions/{file} is stale: run `make completions`"
        );
    }
}

/// The shipped config passes `check` with an empty conf.d, and each of
/// its commented examples does once uncommented (but the backup one, whose
/// program is the admin's to write).
#[test]
fn shipped_config_and_its_examples_check_clean() {
    crate::require_root!();
    let test = "shipped_config_and_its_examples_check_clean";
    if tool(test, "in.tftpd", "tftpd-hpa").is_none() || tool(test, "git", "git").is_none() {
        return;
    }
    let dir = Dir::new();
    std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir conf.d");
    // Its /etc/inetd.conf include names the test's own (absent) file:
    // this machine's may hold anything, among others the update-inetd
    // test's entries.
    let shipped = std::fs::read_to_string(repo().join("etc/packaged.toml"))
        .expect("read")
        .replace("\"/etc/inetd.conf\"", "\"inetd.conf\"");
    let config = dir.write("oxinetd.toml", &shipped);
    let out = run_ok(Command::new(bin()).arg("check").arg("-f").arg(&config));
    assert_eq!(out, format!("{}: OK, 0 services\n", config.display()));

    // "# key = value" and "# [[service]]" lines are the examples' lines.
    let uncommented: String = shipped
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest == "[[service]]"
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let examples = dir.write("examples.toml", &uncommented);
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&examples)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Errors are FILE:LINE:COL: message; the last line is the verdict.
    let at = format!("{}:", examples.display());
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            l.strip_prefix(&at)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .collect();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("/usr/local/sbin/run-backup"), "{stderr}");
}

#[test]
fn make_install_places_every_file_under_destdir_and_prefix() {
    let test = "make_install_places_every_file_under_destdir_and_prefix";
    let Some(make) = tool(test, "make", "make") else {
        return;
    };
    let dest = Dir::new();
    let install = |prefix: &str| {
        run_ok(
            Command::new(&make)
                .arg("-C")
                .arg(repo())
                .arg("install")
                .arg(format!("DESTDIR={}", dest.path().display()))
                .arg(format!("PREFIX={prefix}"))
                // Any binary will do for the layout; no release build.
                .arg(format!("BIN={}", bin())),
        )
    };
    install("/usr/local");
    let files = files_under(dest.path());
    assert_holds(
        "make install",
        &files,
        &expected("/usr/local", "site-functions"),
    );

    let root = dest.path();
    let mode = |p: &str| {
        std::fs::metadata(root.join(p.trim_start_matches('/')))
            .expect("installed")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("/usr/local/sbin/oxinetd"), 0o755);
    assert_eq!(mode("/etc/oxinetd/oxinetd.toml"), 0o644);
    let unit = std::fs::read_to_string(root.join("usr/local/lib/systemd/system/oxinetd.service"))
        .expect("unit");
    assert!(
        unit.contains("\nExecStart=/usr/local/sbin/oxinetd -f /etc/oxinetd/oxinetd.toml\n"),
        "{unit}"
    );
    assert!(!unit.contains("/usr/sbin/"), "{unit}");
    let shipped = std::fs::read(repo().join("etc/packaged.toml")).expect("read");
    assert_eq!(
        std::fs::read(root.join("etc/oxinetd/oxinetd.toml")).expect("read"),
        shipped
    );

    // A second install keeps the admin's config.
    std::fs::write(root.join("etc/oxinetd/oxinetd.toml"), "# mine\n").expect("write");
    let out = install("/usr/local");
    assert!(out.contains("keeping the existing"), "{out}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/oxinetd/oxinetd.toml")).expect("read"),
        "# mine\n"
    );
}

/// Whether `script` runs `command` on `unit` (cargo-deb names several units
/// in one command).
fn runs(script: &str, command: &str, unit: &str) -> bool {
    script.lines().any(|line| {
        line.trim_start()
            .strip_prefix(command)
            .is_some_and(|rest| rest.split_whitespace().any(|word| word == unit))
    })
}

/// `dpkg-deb` of `deb`, checked: files, conffiles, maintainer scripts.
fn inspect_deb(deb: &Path) {
    let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(deb));
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| !l.ends_with('/'))
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_string())
        .collect();
    let mut paths = expected("/usr", "vendor-completions");
    paths.extend(DEB_ONLY.iter().map(|p| p.to_string()));
    paths.push("/usr/share/doc/oxinetd/copyright".into());
    paths.push("/usr/share/doc/oxinetd/changelog.Debian.gz".into());
    assert_holds("the .deb", &files, &paths);
    let binary = listing
        .lines()
        .find(|l| l.ends_with(" ./usr/sbin/oxinetd"))
        .expect("the .deb lists its binary");
    assert!(binary.starts_with("-rwxr-xr-x 0/0 "), "{binary}");

    let copyright = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -xO ./usr/share/doc/oxinetd/copyright")
            .arg("sh")
            .arg(deb),
    );
    let ours = std::fs::read_to_string(repo().join("packaging/debian/copyright")).expect("read");
    assert_eq!(copyright, ours);

    let info = run_ok(Command::new("dpkg-deb").arg("-I").arg(deb));
    assert!(info.contains(" Package: oxinetd\n"), "{info}");
    let control = Dir::new();
    run_ok(
        Command::new("dpkg-deb")
            .arg("-e")
            .arg(deb)
            .arg(control.path()),
    );
    let read = |name: &str| {
        std::fs::read_to_string(control.path().join(name))
            .unwrap_or_else(|e| panic!("the .deb's {name}: {e}"))
    };
    assert_eq!(
        read("conffiles"),
        "/etc/oxinetd/oxinetd.toml\n/etc/oxinetd/conf.d/README\n\
         /etc/fail2ban/filter.d/oxinetd.conf\n/etc/fail2ban/jail.d/oxinetd.conf\n\
         /etc/init.d/oxinetd\n"
    );
    // A Debian inet-superserver, one at a time (Cargo.toml says why).
    for field in [
        "Provides: inet-superserver",
        "Conflicts: inet-superserver",
        "Recommends: tcpd",
    ] {
        assert!(info.contains(&format!(" {field}\n")), "{info}");
    }
    let postinst = read("postinst");
    for (command, unit) in [
        ("deb-systemd-helper enable", "oxinetd.service"),
        ("deb-systemd-helper enable", "oxinetd-inetd.path"),
        ("deb-systemd-invoke try-restart", "oxinetd.service"),
        ("deb-systemd-invoke start", "oxinetd.service"),
    ] {
        assert!(
            runs(&postinst, command, unit),
            "postinst lacks {command} {unit}:\n{postinst}"
        );
    }
    for part in [
        "update-rc.d oxinetd defaults",
        "invoke-rc.d oxinetd \"$action\"",
    ] {
        assert!(
            postinst.contains(part),
            "postinst lacks {part}:\n{postinst}"
        );
    }
    let preinst = read("preinst");
    assert!(
        preinst.contains(": > /run/oxinetd.dpkg-install")
            && preinst.contains("cat > /etc/inetd.conf <<'CONF'")
            && preinst.contains("\n#:INFO: Info services\n"),
        "{preinst}"
    );
    let prerm = read("prerm");
    assert!(
        prerm.contains("\"$1\" = remove")
            && runs(&prerm, "deb-systemd-invoke stop", "oxinetd.service")
            && prerm.contains("invoke-rc.d --skip-systemd-native oxinetd stop"),
        "{prerm}"
    );
    let postrm = read("postrm");
    assert!(
        runs(&postrm, "deb-systemd-helper purge", "oxinetd.service")
            && runs(&postrm, "deb-systemd-helper purge", "oxinetd-inetd.path")
            && postrm.contains("rmdir --ignore-fail-on-non-empty /etc/oxinetd/conf.d /etc/oxinetd")
            && postrm.contains("update-rc.d oxinetd remove"),
        "{postrm}"
    );
}

/// The links that enable the package's units.
const ENABLED: &[&str] = &[
    "/etc/systemd/system/multi-user.target.wants/oxinetd.service",
    "/etc/systemd/system/oxinetd.service.wants/oxinetd-inetd.path",
];

/// Whether systemd runs this machine (then the package's scripts start
/// and stop the service for real).
pub(crate) fn systemd_is_init() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Held by each test that installs the .deb: one at a time, and never
/// over an oxinetd package the machine already has.
pub(crate) fn dpkg_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let lock = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    assert!(
        !installed(),
        "an oxinetd package is installed on this machine; this test installs and purges its own"
    );
    lock
}

/// The .deb, built with cargo-deb from the release binary into `out`.
pub(crate) fn build_deb(out: &Dir) -> PathBuf {
    release_binary();
    run_ok(
        Command::new(cargo())
            .args(["deb", "--no-build", "--locked", "--output"])
            .arg(out.path())
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(repo()),
    );
    std::fs::read_dir(out.path())
        .expect("cargo deb output")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("cargo deb made a .deb")
}

/// A file of this machine's, put back as it was when dropped: its bytes
/// and mode, or its absence.
pub(crate) struct Restore {
    path: PathBuf,
    was: Option<(Vec<u8>, std::fs::Permissions)>,
}

impl Restore {
    pub(crate) fn new(path: &str) -> Restore {
        let was = std::fs::read(path)
            .ok()
            .and_then(|bytes| Some((bytes, std::fs::metadata(path).ok()?.permissions())));
        Restore {
            path: PathBuf::from(path),
            was,
        }
    }

    /// Whether the file was there.
    pub(crate) fn existed(&self) -> bool {
        self.was.is_some()
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.was {
            Some((bytes, perm)) => {
                let _ = std::fs::write(&self.path, bytes);
                let _ = std::fs::set_permissions(&self.path, perm.clone());
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// Purges the installed package when dropped, even after a failed check,
/// and leaves no failed unit or running oxinetd behind.
pub(crate) struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "oxinetd"]).output();
        if systemd_is_init() {
            let _ = Command::new("systemctl")
                .args(["reset-failed", "oxinetd.service"])
                .output();
        }
    }
}

/// Processes running the installed binary (also once it is deleted).
pub(crate) fn running_installed() -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().starts_with("/usr/sbin/oxinetd"))
        })
        .collect()
}

pub(crate) fn installed() -> bool {
    package_installed("oxinetd")
}

/// Whether dpkg has `package` installed (or half-installed).
pub(crate) fn package_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${db:Status-Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && !o.stdout.is_empty() && o.stdout != b"not-installed")
}

#[test]
fn debian_package_builds_inspects_installs_and_purges() {
    crate::require_root!();
    let test = "debian_package_builds_inspects_installs_and_purges";
    if !default_target(test) || !have_cargo_deb(test) {
        return;
    }
    let (Some(lintian), Some(analyze)) = (
        tool(test, "lintian", "lintian"),
        tool(test, "systemd-analyze", "systemd"),
    ) else {
        return;
    };
    // cargo-deb computes the Depends: line with it.
    let _ = tool(test, "dpkg-shlibdeps", "dpkg-dev");
    let _lock = dpkg_lock();

    let out = Dir::new();
    let deb = build_deb(&out);
    inspect_deb(&deb);
    run_ok(
        Command::new(lintian)
            .args([
                "--fail-on",
                "error,warning,info,pedantic",
                "-I",
                "--pedantic",
            ])
            .arg(&deb),
    );

    let inetd_conf = Restore::new("/etc/inetd.conf");
    let guard = Installed;
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    // postinst took preinst's note that this is an install, not an upgrade.
    assert!(!Path::new("/run/oxinetd.dpkg-install").exists());
    for f in expected("/usr", "vendor-completions")
        .into_iter()
        .chain(DEB_ONLY.iter().map(|p| p.to_string()))
    {
        assert!(Path::new(&f).is_file(), "{f} is not installed");
    }
    // update-inetd adds only to an existing /etc/inetd.conf.
    assert!(Path::new("/etc/inetd.conf").is_file());
    // Registered for init scripts' runlevels (update-rc.d).
    assert!(Path::new("/etc/rc2.d/S01oxinetd").exists());
    let version = run_ok(Command::new("/usr/sbin/oxinetd").arg("--version"));
    assert!(version.starts_with("oxinetd "), "{version}");
    if let Some(man) = which("man") {
        let paths = run_ok(Command::new(man).args(["-w", "oxinetd", "oxinetd.toml"]));
        assert!(paths.contains("/usr/share/man/man8/oxinetd.8"), "{paths}");
    }
    // Enabled: the units' WantedBy links (made with or without systemd).
    for link in ENABLED {
        assert!(Path::new(link).exists(), "{link} is missing");
    }
    // Also finds the man pages their Documentation= names.
    let verify = Command::new(&analyze)
        .args([
            "verify",
            "/usr/lib/systemd/system/oxinetd.service",
            "/usr/lib/systemd/system/oxinetd-inetd.path",
            "/usr/lib/systemd/system/oxinetd-inetd.service",
        ])
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "{stderr}"
    );
    let check = run_ok(Command::new("/usr/sbin/oxinetd").arg("check"));
    assert_eq!(check, "/etc/oxinetd/oxinetd.toml: OK, 0 services\n");

    run_ok(Command::new("dpkg").args(["--purge", "oxinetd"]));
    drop(guard);
    assert!(!installed(), "oxinetd is still installed after purge");
    let mut gone = vec!["/usr/sbin/oxinetd", "/etc/oxinetd", "/etc/init.d/oxinetd"];
    gone.extend(ENABLED);
    gone.push("/etc/rc2.d/S01oxinetd");
    // Made by preinst, removed by postrm when no service is enabled in it.
    if !inetd_conf.existed() {
        gone.push("/etc/inetd.conf");
    }
    for gone in gone {
        assert!(!Path::new(gone).exists(), "{gone} is left after purge");
    }
    drop(inetd_conf);
    assert_eq!(running_installed(), Vec::<i32>::new(), "oxinetd still runs");
}

#[test]
fn rpm_package_builds_with_the_same_layout_and_systemd_scriptlets() {
    let test = "rpm_package_builds_with_the_same_layout_and_systemd_scriptlets";
    if !default_target(test) {
        return;
    }
    let (Some(rpmbuild), Some(rpm), Some(_make)) = (
        tool(test, "rpmbuild", "rpm"),
        tool(test, "rpm", "rpm"),
        tool(test, "make", "make"),
    ) else {
        return;
    };
    let binary = release_binary();
    let top = Dir::new();
    run_ok(
        Command::new(rpmbuild)
            .arg("-bb")
            .arg("--define")
            .arg(format!("_sourcedir {}", repo().display()))
            .arg("--define")
            .arg(format!("_topdir {}", top.path().display()))
            .arg("--define")
            .arg(format!("oxinetd_bin {}", binary.display()))
            .arg(repo().join("packaging/rpm/oxinetd.spec")),
    );
    let arch_dir = std::fs::read_dir(top.path().join("RPMS"))
        .expect("RPMS")
        .filter_map(|e| Some(e.ok()?.path()))
        .next()
        .expect("an RPMS/<arch> directory");
    let package = std::fs::read_dir(arch_dir)
        .expect("RPMS/<arch>")
        .filter_map(|e| Some(e.ok()?.path()))
        .find(|p| p.extension().is_some_and(|x| x == "rpm"))
        .expect("rpmbuild made an .rpm");

    let query = |args: &[&str]| run_ok(Command::new(&rpm).arg("-qp").args(args).arg(&package));
    let files: BTreeSet<String> = query(&["-l"]).lines().map(str::to_string).collect();
    assert_holds("the .rpm", &files, &expected("/usr", "site-functions"));
    assert_eq!(
        query(&["-c"]),
        "/etc/fail2ban/filter.d/oxinetd.conf\n/etc/fail2ban/jail.d/oxinetd.conf\n\
         /etc/oxinetd/conf.d/README\n/etc/oxinetd/oxinetd.toml\n"
    );
    let scripts = query(&["--scripts"]);
    for part in [
        "postinstall scriptlet",
        "systemctl --no-reload preset oxinetd.service",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now oxinetd.service",
        "postuninstall scriptlet",
        "systemctl try-restart oxinetd.service",
    ] {
        assert!(
            scripts.contains(part) || scripts.contains("systemd-update-helper"),
            "the .rpm's scriptlets lack {part}:\n{scripts}"
        );
    }
    let version = query(&["--qf", "%{VERSION}"]);
    assert_eq!(version, env!("CARGO_PKG_VERSION"));

    // Installable: into a root of its own (this machine's packages are
    // dpkg's, so no dependency is known to rpm), as root, who owns its files.
    if !is_root() {
        crate::harness::skipped(test, "needs root (to install the .rpm)");
        return;
    }
    let root = Dir::new();
    run_ok(
        Command::new(&rpm)
            .args(["-i", "--nodeps", "--noscripts", "--root"])
            .arg(root.path())
            .arg(&package),
    );
    let installed = files_under(root.path());
    assert_holds(
        "the .rpm, installed",
        &installed,
        &expected("/usr", "site-functions"),
    );
}

/// README's `cargo run --release -- ...` runs the supervisor: with two
/// binaries in the package (oxinetd-tls beside it), cargo must be told
/// which one (`default-run`), or the demo command fails.
#[test]
fn cargo_run_runs_the_supervisor() {
    release_binary();
    let out = run_ok(
        Command::new(cargo())
            .args(["run", "--release", "--locked", "--quiet", "--", "--version"])
            .env("CARGO_TARGET_DIR", target_dir())
            .current_dir(repo()),
    );
    assert!(out.starts_with("oxinetd "), "{out}");
}
