//! `forward`: connections relayed upstream by oxinetd itself, to real
//! servers (git daemon, sshd, upstreams in Python that count, half-close
//! early, and read the PROXY header); the upstream down or not answering.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

use crate::harness::{eventually, field, git_bare_repo, run_ok, Dir, Server, PATIENCE};

/// The upstreams of `forward_upstream.py`, killed (by pid) when dropped.
struct Upstreams {
    child: Child,
    count: u16,
    early: u16,
    proxy: u16,
}

impl Upstreams {
    fn start(dir: &Dir) -> Upstreams {
        let python = crate::harness::need("python3", "python3");
        let mut child = Command::new(python)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/it/forward_upstream.py"
            ))
            .arg(dir.path().join("early.count"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start forward_upstream.py");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("ready line");
        let ports: Vec<u16> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(ports.len(), 3, "{line:?}");
        Upstreams {
            child,
            count: ports[0],
            early: ports[1],
            proxy: ports[2],
        }
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn service(name: &str, target: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nforward = \"{target}\"\n\
         log_on_success = [\"HOST\", \"DURATION\", \"TRAFFIC\"]\n{extra}\n"
    )
}

/// A loopback port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn connect(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % (251 * 64) % 251) as u8).collect()
}

/// 10 MiB up, then the client's half-close; the upstream sees every byte
/// and its EOF, and its answer (5 MiB after a line) comes back whole. The
/// other way round: an upstream that half-closes first still gets
/// everything the client sends after that.
#[test]
fn bulk_both_ways_with_half_close() {
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let config = format!(
        "{}{}",
        service("count", &format!("127.0.0.1:{}", up.count), ""),
        service("early", &format!("127.0.0.1:{}", up.early), ""),
    );
    let s = Server::start_in(dir.clone(), &config, &[], |_| {});

    let data = pattern(10 << 20);
    let mut c = connect(s.addr("count"));
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    let nl = reply.iter().position(|&b| b == b'\n').expect("a line");
    let line = String::from_utf8_lossy(&reply[..nl]).into_owned();
    let sha = run_sha256(&data);
    assert_eq!(line, format!("{} {sha}", data.len()));
    assert!(reply[nl + 1..] == pattern(5 << 20)[..], "the reply differs");
    let done = s.expect_line(&["done service=count", "bytes_in=10485760"]);
    assert_eq!(field(&done, "bytes_out"), Some(&*reply.len().to_string()));
    assert!(done.contains(" upstream=127.0.0.1:"), "{done}");
    assert!(!done.contains("reason="), "{done}");

    // The upstream half-closes first: the client reads its line and EOF,
    // and still sends 1 MiB, all of which arrives.
    let mut c = connect(s.addr("early"));
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"early\n");
    c.write_all(&pattern(1 << 20)).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let counted = dir.path().join("early.count");
    assert!(
        eventually(|| std::fs::read_to_string(&counted).is_ok_and(|t| t == "1048576\n")),
        "upstream counted {:?}",
        std::fs::read_to_string(&counted)
    );
    s.expect_line(&["done service=early", "bytes_in=1048576 bytes_out=6"]);
    // The client's socket sees the end too: nothing is left open.
    assert_eq!(c.read(&mut [0; 1]).unwrap(), 0);
}

/// SHA-256 of `data` as hex, by the system's sha256sum.
fn run_sha256(data: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `forward_proxy_protocol`: the upstream reads a v1 line or a v2 block
/// naming the client's address and port and the address it came to,
/// then the client's bytes as sent.
#[test]
fn proxy_headers_name_the_client() {
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let target = format!("127.0.0.1:{}", up.proxy);
    let config = format!(
        "{}{}",
        service("v1", &target, "forward_proxy_protocol = \"v1\""),
        service("v2", &target, "forward_proxy_protocol = \"v2\""),
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    for (name, prefix) in [("v1", "v1"), ("v2", "v2 tcp4")] {
        let addr = s.addr(name);
        let mut c = connect(addr);
        let me = c.local_addr().unwrap();
        c.write_all(b"after the header\n").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        let expected = format!(
            "{prefix} {} {} {} {}{}\nafter the header\n",
            me.ip(),
            me.port(),
            addr.ip(),
            addr.port(),
            if name == "v2" { " cmd=21" } else { "" }
        );
        assert_eq!(got, expected, "{name}");
        // The header is not counted as the client's bytes.
        s.expect_line(&[&format!("done service={name} "), "bytes_in=17 "]);
    }
}

/// A UNIX-domain listener forwards too; its clients have no address, so
/// the PROXY header says so (v1 `UNKNOWN`, v2 no address).
#[test]
fn a_unix_listener_forwards_with_an_addressless_header() {
    crate::require_root!();
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let target = format!("127.0.0.1:{}", up.proxy);
    let mut config = String::new();
    for v in ["v1", "v2"] {
        config.push_str(&format!(
            "[[service]]\nname = \"unix-{v}\"\nlisten = \"{{dir}}/{v}.sock\"\n\
             forward = \"{target}\"\nforward_proxy_protocol = \"{v}\"\n\n"
        ));
    }
    let s = Server::start_in(dir.clone(), &config, &[], |_| {});
    for (v, line) in [("v1", "v1 unknown"), ("v2", "v2 unspec cmd=21")] {
        let reply = crate::harness::talk_unix(&dir.path().join(format!("{v}.sock")), "local\n");
        assert_eq!(reply, format!("{line}\nlocal\n"));
        s.expect_line(&[&format!("done service=unix-{v} "), "bytes_in=6 bytes_out="]);
    }
}

/// The upstream refuses: the client is closed at once, and the failure is
/// logged with the client and the target. An upstream that never
/// answers (its accept queue full) is given up after `forward_timeout`.
/// Other services go on meanwhile.
#[test]
fn an_unreachable_upstream_closes_only_its_client() {
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let refused = closed_port();
    // A listener whose queue is full: SYNs beyond it are dropped, so a
    // connect to it neither succeeds nor fails.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    full.listen(0).unwrap();
    let full_addr = full.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&full_addr.into());
        fillers.push(s);
    }
    let config = format!(
        "{}{}{}",
        service("refused", &format!("127.0.0.1:{refused}"), ""),
        service("silent", &full_addr.to_string(), "forward_timeout = 0.5"),
        service("count", &format!("127.0.0.1:{}", up.count), ""),
    );
    let s = Server::start_in(dir, &config, &[], |_| {});

    let mut c = connect(s.addr("refused"));
    let me = c.local_addr().unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    let line = s.expect_line(&[
        "error service=refused",
        &format!("peer={me}"),
        &format!("unable to connect to 127.0.0.1:{refused}: Connection refused"),
    ]);
    assert!(line.contains("msg="), "{line}");

    let mut c = connect(s.addr("silent"));
    // Meanwhile another service is served.
    let mut other = connect(s.addr("count"));
    other.write_all(b"x").unwrap();
    other.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    other.read_to_end(&mut reply).unwrap();
    assert!(
        reply.starts_with(b"1 "),
        "{:?}",
        &reply[..20.min(reply.len())]
    );
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    s.expect_line(&[
        "error service=silent",
        &format!("unable to connect to {full_addr}: timed out after 500ms"),
    ]);
    drop(fillers);
}

/// `idle_timeout` closes a forwarded connection nobody speaks on, with
/// `reason=idle`; both sides see the end.
#[test]
fn idle_forwards_are_closed() {
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let config = service(
        "idle",
        &format!("127.0.0.1:{}", up.count),
        "idle_timeout = 1",
    );
    let s = Server::start_in(dir, &config, &[], |_| {});
    let mut c = connect(s.addr("idle"));
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    s.expect_line(&["done service=idle", "reason=idle"]);
}

/// A real `git daemon` behind a forward: `git clone git://` through
/// oxinetd gets the repository.
#[test]
fn git_clone_through_a_forward() {
    let git = crate::need!("git", "git");
    let dir = Dir::new();
    let repo = dir.path().join("repo.git");
    git_bare_repo(&repo, "forwarded\n");
    let port = closed_port();
    // git-daemon itself, not `git daemon`, whose wrapper a kill would
    // leave it running behind.
    let exec_path = run_ok(Command::new(&git).arg("--exec-path"));
    let mut daemon = Command::new(std::path::Path::new(exec_path.trim()).join("git-daemon"))
        .args(["--reuseaddr", "--export-all", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", dir.path().display()))
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon");
    let up: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listening = eventually(|| TcpStream::connect(up).is_ok());
    let config = service("git", &up.to_string(), "");
    let s = Server::start_in(dir.clone(), &config, &[], |_| {});
    let clone = dir.path().join("clone");
    let result = std::panic::catch_unwind(|| {
        assert!(listening, "git daemon did not listen on {up}");
        run_ok(
            Command::new(&git)
                .args(["clone", "-q"])
                .arg(format!("git://{}/repo.git", s.addr("git")))
                .arg(&clone),
        );
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).unwrap(),
        "forwarded\n"
    );
    let done = s.expect_line(&["done service=git", &format!("upstream={up}")]);
    assert!(!done.contains("reason="), "{done}");
}

/// The config errors of `forward`, each at its place.
#[test]
fn forward_config_errors_name_their_place() {
    let dir = Dir::new();
    let conf = dir.write(
        "bad.toml",
        "[[service]]\nname = \"both\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nforward = \"127.0.0.1:7\"\n\n\
         [[service]]\nname = \"udp\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nforward = \"127.0.0.1:7\"\n\n\
         [[service]]\nname = \"v3\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:7\"\nforward_proxy_protocol = \"v3\"\n\n\
         [[service]]\nname = \"noport\"\nlisten = \"127.0.0.1:0\"\nforward = \"::1\"\n\n\
         [[service]]\nname = \"user\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:7\"\nuser = \"nobody\"\n\n\
         [[service]]\nname = \"exec\"\nlisten = \"127.0.0.1:0\"\nserver = \"/bin/cat\"\nuser = \"nobody\"\nforward_timeout = 3\n\n\
         [[service]]\nname = \"good\"\nlisten = \"127.0.0.1:0\"\nforward = \"[::1]:7\"\n",
    );
    let out = Command::new(crate::harness::bin())
        .args(["check", "-f"])
        .arg(&conf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let at = conf.display();
    for expected in [
        format!("{at}:5:11: forward: server is set too (at {at}:4:10)"),
        format!("{at}:11:11: forward: relays stream connections only"),
        format!("{at}:17:26: forward_proxy_protocol: \"v3\" is not one of v1, v2"),
        format!("{at}:22:11: forward \"::1\": expected HOST:PORT"),
        format!("{at}:28:8: user: has no meaning for a forward"),
        format!("{at}:35:19: forward_timeout: only for a service that forwards"),
        "(1 valid service would run)".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
}

/// A real `sshd` behind a forward, and the real `ssh` client through it:
/// key authentication, a command, and stdin carried to it.
#[test]
fn ssh_through_a_forward() {
    crate::require_root!();
    let sshd = crate::need!("sshd", "openssh-server");
    let ssh = crate::need!("ssh", "openssh-client");
    let keygen = crate::need!("ssh-keygen", "openssh-client");
    let dir = Dir::new();
    let at = |name: &str| dir.path().join(name);
    for key in ["host_key", "id"] {
        run_ok(
            Command::new(&keygen)
                .args(["-q", "-t", "ed25519", "-N", ""])
                .arg("-f")
                .arg(at(key)),
        );
    }
    std::fs::copy(at("id.pub"), at("authorized_keys")).unwrap();
    // sshd's privilege separation directory, as its package makes it.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let port = closed_port();
    let config = dir.write(
        "sshd_config",
        &format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {{dir}}/host_key\n\
             AuthorizedKeysFile {{dir}}/authorized_keys\nPidFile {{dir}}/sshd.pid\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             PermitRootLogin prohibit-password\nStrictModes no\n"
        ),
    );
    let mut daemon = Command::new(&sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sshd");
    let up: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listening = eventually(|| TcpStream::connect(up).is_ok());
    let s = Server::start_in(
        dir.clone(),
        &service("ssh", &up.to_string(), ""),
        &[],
        |_| {},
    );
    let via = s.addr("ssh");
    let result = std::panic::catch_unwind(|| {
        assert!(listening, "sshd did not listen on {up}");
        let mut child = Command::new(&ssh)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .arg("-i")
            .arg(at("id"))
            .args(["-p", &via.port().to_string(), "root@127.0.0.1"])
            .arg("echo through the forward; wc -c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&pattern(300_000)));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "ssh: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(stdout, "through the forward\n300000\n");
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    let done = s.expect_line(&["done service=ssh", &format!("upstream={up}")]);
    assert!(!done.contains("reason="), "{done}");
}

/// PROXY in and PROXY out: behind a balancer (`proxy_protocol`), a forward
/// sends upstream the client the balancer named, not the balancer; the
/// service's `only_from` judges that client, and the `done` line has the
/// balancer as `via`.
#[test]
fn a_forward_behind_a_balancer_passes_the_client_on() {
    let dir = Dir::new();
    let up = Upstreams::start(&dir);
    let target = format!("127.0.0.1:{}", up.proxy);
    let lines = "forward_proxy_protocol = \"v1\"\nproxy_protocol = true\n\
                 proxy_from = \"127.0.0.1\"\nonly_from = \"192.0.2.0/24\"";
    let s = Server::start_in(dir, &service("fwd", &target, lines), &[], |_| {});
    let addr = s.addr("fwd");
    let talk = |client: &str| {
        let mut c = connect(addr);
        let header = format!("PROXY TCP4 {client} 127.0.0.1 5555 {}\r\n", addr.port());
        c.write_all(header.as_bytes()).unwrap();
        c.write_all(b"after the header\n").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let mut got = String::new();
        let _ = c.read_to_string(&mut got);
        got
    };
    assert_eq!(
        talk("192.0.2.7"),
        format!(
            "v1 192.0.2.7 5555 127.0.0.1 {}\nafter the header\n",
            addr.port()
        ),
        "{}",
        s.log()
    );
    s.expect_line(&["done service=fwd ", "peer=192.0.2.7:5555", "via=127.0.0.1:"]);
    // A client outside only_from, through the same balancer: refused.
    assert_eq!(talk("198.51.100.9"), "");
    s.expect_line(&[
        "refuse service=fwd ",
        "peer=198.51.100.9:5555",
        "reason=only_from",
    ]);
}
