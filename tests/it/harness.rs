//! Start the real `oxinetd` binary on a temporary config and talk to it.
//!
//! Each `Server` owns a temporary directory (mode 0755, so handlers running
//! as `nobody` can reach it) holding the config and copies of the test
//! handlers. The server runs in the foreground with `--log stderr`; a reader
//! thread collects its log lines, and tests wait for lines rather than
//! sleeping. On drop the server is killed by its pid; if the test failed,
//! the config and the whole log are printed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for; reaching it is a failure, not
/// a measurement.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_oxinetd")
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Say that `test` is skipped and why, as one `SKIPPED: needs ...` line
/// on the test process's own stderr: libtest captures what `eprintln!`
/// writes in a passing test, and nobody would ever see it.
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}: {test}");
}

/// The running test's name (`module::function`), for `SKIPPED` lines.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        let name = name.strip_suffix("::here").unwrap_or(name);
        name.strip_prefix("it::").unwrap_or(name)
    }};
}

/// Tests that need root say so, loudly, and pass without running. CI runs
/// as root, so there they always run.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::harness::is_root() {
            $crate::harness::skipped($crate::test_name!(), "needs root (CI runs as root)");
            return;
        }
    };
}

/// The path of program `name`, from Debian package `package`, for a test
/// that cannot run without it. Missing, the test is a failure naming the
/// package as root (CI installs every one: a missing one must not pass
/// unseen), and otherwise skipped with a `SKIPPED: needs PACKAGE` line.
#[macro_export]
macro_rules! need {
    ($name:expr, $package:expr) => {
        match $crate::harness::which($name) {
            Some(path) => path,
            None => {
                $crate::harness::missing($crate::test_name!(), $name, $package);
                return;
            }
        }
    };
}

/// `need!` without the program: as root a failure naming `package`,
/// otherwise the `SKIPPED` line.
pub fn missing(test: &str, name: &str, package: &str) {
    if is_root() {
        panic!("{test}: {name} is missing: apt-get install {package} (`.ci/run packages` installs every test package)");
    }
    skipped(
        test,
        &format!("needs {package} (no {name}; apt-get install {package})"),
    );
}

/// The `user` line a service needs to run here: as root, handlers must be
/// given a user; otherwise they run as the invoking user.
pub fn user_line() -> &'static str {
    if is_root() {
        "user = \"nobody\""
    } else {
        ""
    }
}

/// A 0755 temporary directory with the test handlers copied in; clones
/// share it, and it is removed with the last one.
#[derive(Clone)]
pub struct Dir {
    pub tmp: Arc<tempfile::TempDir>,
}

impl Dir {
    pub fn new() -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("oxinetd-test")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let handlers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/handlers");
        for entry in std::fs::read_dir(handlers).expect("tests/handlers") {
            let entry = entry.expect("entry");
            let to = tmp.path().join(entry.file_name());
            std::fs::copy(entry.path(), &to).expect("copy handler");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))
                .expect("chmod handler");
        }
        Dir { tmp: Arc::new(tmp) }
    }

    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Write `text` to `name` in the directory, replacing `{dir}` with the
    /// directory's path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        let text = text.replace("{dir}", &self.path().display().to_string());
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }
}

type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

pub struct Server {
    pub dir: Dir,
    pub config: PathBuf,
    child: Option<Child>,
    lines: Lines,
    status: Option<ExitStatus>,
}

impl Server {
    /// Start on `config` (written into a fresh `Dir`) and wait for `ready`.
    pub fn start(config: &str) -> Server {
        Server::start_in(Dir::new(), config, &[], |_| {})
    }

    /// Start with extra arguments and a hook to adjust the command.
    pub fn start_in(
        dir: Dir,
        config: &str,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        let s = Server::spawn(dir, config, args, adjust);
        if s.wait_for(|l| l.contains(" ready ")).is_none() {
            panic!("oxinetd did not become ready:\n{}", s.log());
        }
        s
    }

    /// Start without waiting for anything.
    pub fn spawn(
        dir: Dir,
        config: &str,
        args: &[&str],
        adjust: impl FnOnce(&mut Command),
    ) -> Server {
        let path = dir.write("oxinetd.toml", config);
        let mut cmd = Command::new(bin());
        cmd.arg("-f").arg(&path);
        if !args.iter().any(|a| a.starts_with("--syslog-socket")) {
            cmd.arg("--log").arg("stderr");
        }
        cmd.args(args);
        adjust(&mut cmd);
        Server::launch(dir, path, cmd)
    }

    /// Start `cmd` (an oxinetd command line, possibly behind `ip netns
    /// exec`) whose config is `config`; its stderr is the log.
    pub fn launch(dir: Dir, config: PathBuf, mut cmd: Command) -> Server {
        with_own_control(&mut cmd, &dir, &config);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let path = config;
        let mut child = cmd.spawn().expect("start oxinetd");
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*sink;
                m.lock().unwrap().push(line);
                cv.notify_all();
            }
        });
        Server {
            dir,
            config: path,
            child: Some(child),
            lines,
            status: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    pub fn log(&self) -> String {
        self.lines().join("\n")
    }

    /// The first line (from the start) matching `pred`, waiting up to PATIENCE.
    pub fn wait_for(&self, pred: impl Fn(&str) -> bool) -> Option<String> {
        self.wait_for_after(0, pred)
    }

    /// Like `wait_for`, looking only at lines after the first `skip`.
    pub fn wait_for_after(&self, skip: usize, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        let (m, cv) = &*self.lines;
        let mut lines = m.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().skip(skip).find(|l| pred(l)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = cv.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Wait for a line containing every one of `parts`; panic with the log if
    /// it never comes.
    pub fn expect_line(&self, parts: &[&str]) -> String {
        self.expect_line_after(0, parts)
    }

    pub fn expect_line_after(&self, skip: usize, parts: &[&str]) -> String {
        match self.wait_for_after(skip, |l| parts.iter().all(|p| l.contains(p))) {
            Some(l) => l,
            None => panic!("no log line with {parts:?}; log:\n{}", self.log()),
        }
    }

    /// Lines containing every one of `parts`.
    pub fn count(&self, parts: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    /// The addresses `service` listens on, from its `listen` lines.
    pub fn addrs(&self, service: &str) -> Vec<SocketAddr> {
        let tag = format!("listen service={service} ");
        self.lines()
            .iter()
            .filter(|l| l.contains(&tag))
            .filter_map(|l| field(l, "addr").and_then(|a| a.parse().ok()))
            .collect()
    }

    /// The first address of `service`.
    pub fn addr(&self, service: &str) -> SocketAddr {
        match self.addrs(service).first() {
            Some(a) => *a,
            None => panic!("service {service} is not listening; log:\n{}", self.log()),
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("kill");
    }

    /// Rewrite the config and send SIGHUP; wait for the outcome line.
    pub fn reload(&self, config: &str) -> String {
        let skip = self.lines().len();
        self.dir.write("oxinetd.toml", config);
        self.signal(nix::sys::signal::Signal::SIGHUP);
        match self.wait_for_after(skip, |l| {
            l.contains(" reload ") || l.contains(" reload-failed ")
        }) {
            Some(l) => l,
            None => panic!("no reload outcome; log:\n{}", self.log()),
        }
    }

    /// Wait for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(s) = self.status {
            return s;
        }
        let child = self.child.as_mut().expect("child");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                self.status = Some(s);
                return s;
            }
            if Instant::now() > deadline {
                panic!("oxinetd did not exit; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Open file descriptors of the supervisor.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Children of the supervisor that are zombies.
    pub fn zombies(&self) -> Vec<i32> {
        children_of(self.pid())
            .into_iter()
            .filter(|(_, state)| *state == 'Z')
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Living children of the supervisor.
    pub fn children(&self) -> Vec<i32> {
        children_of(self.pid())
            .into_iter()
            .map(|(p, _)| p)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.status.is_none() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let config = std::fs::read_to_string(&self.config).unwrap_or_default();
            eprintln!("--- config {}:\n{config}", self.config.display());
            eprintln!("--- oxinetd log:\n{}", self.log());
        }
    }
}

/// `(pid, state)` of each process whose parent is `ppid`.
pub fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // comm may contain spaces: fields resume after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push((pid, state));
        }
    }
    out
}

/// The value of `key=` in a log line (unquoted values only).
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!(" {key}=");
    let start = line.find(&pat)? + pat.len();
    line[start..].split_whitespace().next()
}

/// Connect, send `input`, half-close, read everything.
pub fn exchange(addr: SocketAddr, input: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE)?;
    s.set_read_timeout(Some(PATIENCE))?;
    s.write_all(input)?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// `exchange` as text, panicking on I/O errors.
pub fn talk(addr: SocketAddr, input: &str) -> String {
    match exchange(addr, input.as_bytes()) {
        Ok(out) => String::from_utf8_lossy(&out).into_owned(),
        Err(e) => panic!("talking to {addr}: {e}"),
    }
}

/// Send `input` over the UNIX-domain stream socket at `path`, close the
/// sending side, and read the answer to the end.
pub fn talk_unix(path: &Path, input: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(input.as_bytes()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One UDP request and its reply.
pub fn udp_ask(addr: SocketAddr, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let s = std::net::UdpSocket::bind(bind)?;
    s.set_read_timeout(Some(PATIENCE))?;
    s.send_to(request, addr)?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = s.recv_from(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// A command's output, panicking with everything when it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository at `repo` whose branch `main` holds one commit with a
/// `README` saying `readme` (made through a work tree at `repo`.work).
pub fn git_bare_repo(repo: &Path, readme: &str) {
    let git = need("git", "git");
    let work = repo.with_extension("work");
    run_ok(Command::new(&git).args(["init", "-q", "--bare"]).arg(repo));
    run_ok(Command::new(&git).args(["init", "-q"]).arg(&work));
    std::fs::write(work.join("README"), readme).expect("write README");
    let in_work = |args: &[&str]| {
        run_ok(
            Command::new(&git)
                .args(["-c", "user.name=t", "-c", "user.email=t@t", "-C"])
                .arg(&work)
                .args(args),
        )
    };
    in_work(&["add", "README"]);
    in_work(&["commit", "-q", "-m", "first"]);
    in_work(&[
        "push",
        "-q",
        repo.to_str().expect("utf-8 path"),
        "HEAD:refs/heads/main",
    ]);
    run_ok(Command::new(&git).arg("-C").arg(repo).args([
        "symbolic-ref",
        "HEAD",
        "refs/heads/main",
    ]));
}

/// A program's absolute path, from the usual places.
pub fn which(name: &str) -> Option<PathBuf> {
    [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(name))
    .find(|p| p.is_file())
}

/// Like `which`, panicking with an install hint when missing: for helpers
/// of tests that only run as root (where a missing package is a failure);
/// a test itself uses `need!`, which skips it for an ordinary user.
pub fn need(name: &str, package: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!("{name} is missing: apt-get install {package} (`.ci/run packages` installs every test package)")
    })
}

/// Wait until process `pid` (a handler just forked) runs its own program.
pub fn wait_exec(pid: &str) {
    let deadline = Instant::now() + PATIENCE;
    let exe = format!("/proc/{pid}/exe");
    while std::fs::read_link(&exe).is_ok_and(|p| p.ends_with("oxinetd")) {
        assert!(Instant::now() < deadline, "handler {pid} never exec'd");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Connect to `addr` from loopback address `from` (to play several clients).
pub fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let from: std::net::IpAddr = from.parse().expect("source address");
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&addr.into(), PATIENCE)?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(PATIENCE))?;
    Ok(s)
}

/// Send `input` from `from`, half-close, read all.
pub fn talk_from(from: &str, addr: SocketAddr, input: &str) -> String {
    let mut s = connect_from(from, addr).unwrap_or_else(|e| panic!("connect from {from}: {e}"));
    // A refused client may already be closed by the server: the write and the
    // half-close can fail, while what the server sent is still readable.
    let _ = s.write_all(input.as_bytes());
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Connections waiting in the accept queue of the TCP listener on `addr`
/// (the Recv-Q that `ss -ltn` shows).
pub fn accept_queue(addr: SocketAddr) -> usize {
    let out = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<usize>().ok())
        .sum()
}

/// Pids of the processes with a TCP listening socket on `addr` (`ss -p`).
pub fn listening_pids(addr: SocketAddr) -> Vec<i32> {
    let out = Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{}", addr.port())])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("pid=")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Wait until `cond` holds (bounded by PATIENCE); false if it never did.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether process `pid` has ended: gone, or a zombie waiting for its
/// reaper.
pub fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.contains(") Z "),
        Err(_) => true,
    }
}

/// A network namespace of the test's own, with only `lo` up: the standard
/// ports (7, 13, 69, ...) are free there, whatever else the machine runs.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("oxinetd-test-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run_ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        ns
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Start oxinetd inside the namespace on `config` with `args`, and
    /// wait for `ready`.
    pub fn serve(&self, dir: Dir, config: &Path, args: &[&str]) -> Server {
        let mut cmd = self.command(bin());
        cmd.arg("-f")
            .arg(config)
            .args(["--log", "stderr"])
            .args(args);
        let s = Server::launch(dir, config.to_path_buf(), cmd);
        if s.wait_for(|l| l.contains(" ready ")).is_none() {
            panic!("oxinetd did not become ready:\n{}", s.log());
        }
        s
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Give the oxinetd `cmd` runs its own control socket in `dir`, unless the
/// command line or `config` names one: tests run in parallel, and as root
/// they would all ask for the shared default, /run/oxinetd/control.sock.
/// `cmd` ends with oxinetd's arguments (after `ip netns exec` or
/// `systemd-socket-activate`).
pub fn with_own_control(cmd: &mut Command, dir: &Dir, config: &Path) {
    let named = cmd
        .get_args()
        .any(|a| a.to_str().is_some_and(|a| a.starts_with("--control")))
        || std::fs::read_to_string(config).is_ok_and(|c| c.contains("control_socket"));
    if !named {
        cmd.arg("--control").arg(dir.path().join("control.sock"));
    }
}
