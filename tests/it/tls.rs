//! `tls`: TLS in front of a shell handler, with real clients (`openssl
//! s_client`, `curl`) and certificates made by `openssl` at test time (a
//! CA, a server, a client, and a client of another CA). The handler sees
//! plaintext and the `SSL_*` variables; a required client certificate is
//! checked; bad handshakes end only their own connection; `check` finds a
//! key that is not the certificate's; the process that parses TLS runs as
//! the service's user; a reload's new certificate is served to the next
//! client while an open connection goes on. For internal services and
//! forwards (`socat` and `curl` as clients, `forward_upstream.py` as a
//! plain upstream, another oxinetd as a TLS one): TLS in, TLS out
//! (verified: a wrong CA or name is refused and logged), both, and TLS
//! behind HAProxy's PROXY header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{bin, field, user_line, Dir, Server, PATIENCE};

/// Run openssl with `args` in `dir`, panicking on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key and a certificate `NAME.key`, `NAME.pem` for `cn`, signed by
/// `ca` (`ca.pem`, `ca.key`), with the extensions `ext`.
fn issue(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("write ext");
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    );
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "30",
            "-extfile",
            &ext_file,
        ],
    );
}

/// A CA `NAME.pem`/`NAME.key`.
fn authority(dir: &Path, name: &str, cn: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={cn}"),
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &pem,
            "-days",
            "30",
            "-subj",
            &subj,
        ],
    );
}

const SERVER_EXT: &str = "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
const CLIENT_EXT: &str = "extendedKeyUsage=clientAuth\n";

/// A directory with `ca`, `server` (CN server-one), `server2` (CN
/// server-two), `client` (CN alice) and `stranger` (CN mallory, of
/// another CA `other`); the keys readable by their owner only.
fn pki() -> Dir {
    let dir = Dir::new();
    let d = dir.path();
    authority(d, "ca", "oxinetd test CA");
    authority(d, "other", "another CA");
    issue(d, "server", "server-one", "ca", SERVER_EXT);
    issue(d, "server2", "server-two", "ca", SERVER_EXT);
    issue(
        d,
        "other-name",
        "other-name",
        "ca",
        "subjectAltName=DNS:other.example,DNS:www.wild.example\nextendedKeyUsage=serverAuth\n",
    );
    issue(d, "client", "alice", "ca", CLIENT_EXT);
    issue(d, "stranger", "mallory", "other", CLIENT_EXT);
    for key in [
        "ca",
        "other",
        "server",
        "server2",
        "other-name",
        "client",
        "stranger",
    ] {
        let p = d.join(format!("{key}.key"));
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod key");
    }
    dir
}

/// A handler: reads a line, writes it upper-cased, then its TLS variables.
const UPPER: &str = r#"#!/bin/sh
IFS= read -r line
printf '%s\n' "$line" | tr '[:lower:]' '[:upper:]'
env | grep -E '^SSL_' | sort
"#;

fn service(name: &str, tls: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"{{dir}}/upper-tls.sh\"\n\
         stderr = \"log\"\n{}\ntls = {{ {tls} }}\n{extra}\n",
        user_line()
    )
}

fn start(dir: &Dir, config: &str) -> Server {
    let h = dir.write("upper-tls.sh", UPPER);
    std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod handler");
    Server::start_in(dir.clone(), config, &[], |_| {})
}

/// `openssl s_client` to `addr` (SNI localhost, verifying against the
/// test CA) with `extra` arguments; `input` then EOF (`-ign_eof`: the
/// answer is read to the server's close). Its stdout and stderr, and
/// whether it exited 0.
fn s_client(dir: &Path, addr: SocketAddr, extra: &[&str], input: &str) -> (bool, String) {
    let mut child = Command::new("timeout")
        .arg(PATIENCE.as_secs().to_string())
        .arg("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(["-CAfile", "ca.pem", "-verify_return_error", "-ign_eof"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    let out = child.wait_with_output().expect("s_client output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn s_client_and_curl_talk_to_a_shell_handler_through_tls() {
    let dir = pki();
    let http = dir.write(
        "http.sh",
        "#!/bin/sh\nIFS= read -r request\nprintf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n'\n\
         printf 'you asked %s over %s\\n' \"$request\" \"$SSL_PROTOCOL\"\n",
    );
    std::fs::set_permissions(&http, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let config = format!(
        "{}[[service]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\nserver = \"{{dir}}/http.sh\"\n{}\n\
         tls = {{ cert = \"server.pem\", key = \"server.key\", alpn = [\"http/1.1\"] }}\n",
        service("up", r#"cert = "server.pem", key = "server.key""#, ""),
        user_line()
    );
    let s = start(&dir, &config);
    let (ok, out) = s_client(dir.path(), s.addr("up"), &[], "hello tls\n");
    assert!(ok, "s_client failed:\n{out}\nlog:\n{}", s.log());
    assert!(out.contains("HELLO TLS\n"), "{out}");
    assert!(out.contains("SSL_PROTOCOL=TLSv1.3\n"), "{out}");
    assert!(out.contains("SSL_CIPHER=TLS_"), "{out}");
    assert!(out.contains("SSL_TLS_SNI=localhost\n"), "{out}");
    assert!(out.contains("SSL_CLIENT_VERIFY=NONE\n"), "{out}");
    assert!(
        out.contains("server-one"),
        "the server's certificate: {out}"
    );
    // TLS 1.2 is accepted by default.
    let (ok, out) = s_client(dir.path(), s.addr("up"), &["-tls1_2"], "twelve\n");
    assert!(
        ok && out.contains("TWELVE\n") && out.contains("SSL_PROTOCOL=TLSv1.2\n"),
        "{out}"
    );

    let web = s.addr("web");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", "ca.pem", "--http1.1"])
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", web.port()))
        .arg(format!("https://localhost:{}/hello", web.port()))
        .current_dir(dir.path())
        .output()
        .expect("curl (apt-get install curl)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    assert!(
        body.contains("you asked GET /hello HTTP/1.1") && body.contains("over TLSv1.3"),
        "{body}"
    );
}

#[test]
fn a_client_certificate_is_required_and_its_subject_given_to_the_handler() {
    let dir = pki();
    let s = start(
        &dir,
        &service(
            "mtls",
            r#"cert = "server.pem", key = "server.key", client_ca = "ca.pem""#,
            "",
        ),
    );
    let addr = s.addr("mtls");
    let (ok, out) = s_client(
        dir.path(),
        addr,
        &["-cert", "client.pem", "-key", "client.key"],
        "with cert\n",
    );
    assert!(
        ok && out.contains("WITH CERT\n"),
        "{out}\nlog:\n{}",
        s.log()
    );
    assert!(out.contains("SSL_CLIENT_S_DN=CN=alice\n"), "{out}");
    assert!(
        out.contains("SSL_CLIENT_I_DN=CN=oxinetd test CA\n"),
        "{out}"
    );
    assert!(out.contains("SSL_CLIENT_VERIFY=SUCCESS\n"), "{out}");
    assert!(out.contains("SSL_CLIENT_M_SERIAL="), "{out}");
    let fp = out
        .lines()
        .find_map(|l| l.strip_prefix("SSL_CLIENT_FINGERPRINT="))
        .unwrap_or_default();
    assert!(
        fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()),
        "{out}"
    );

    // Without a certificate, and with one of another CA: no handler.
    for extra in [
        &[][..],
        &["-cert", "stranger.pem", "-key", "stranger.key"][..],
    ] {
        let skip = s.lines().len();
        let (_, out) = s_client(dir.path(), addr, extra, "let me in\n");
        assert!(!out.contains("LET ME IN"), "served with {extra:?}: {out}");
        let Some(line) = s.wait_for_after(skip, |l| l.contains("handshake failed")) else {
            panic!("refusal not logged ({extra:?}):\n{}", s.log());
        };
        // That relay's own exit (an earlier connection's may come after
        // `skip` too).
        let pid = format!("pid={} ", field(&line, "pid").expect("pid"));
        let exit = s.expect_line_after(skip, &["exit ", "service=mtls", &pid]);
        assert_eq!(field(&exit, "status"), Some("1"), "{exit}");
    }
    // Optional: asked for, not required.
    let s2 = start(
        &dir,
        &service(
            "opt",
            r#"cert = "server.pem", key = "server.key", client_ca = "ca.pem", client_auth = "optional""#,
            "",
        ),
    );
    let (ok, out) = s_client(dir.path(), s2.addr("opt"), &[], "anonymous\n");
    assert!(
        ok && out.contains("ANONYMOUS\n") && out.contains("SSL_CLIENT_VERIFY=NONE"),
        "{out}"
    );
}

/// Read from `s` until EOF or an error; true if it ended within PATIENCE.
fn closed_by_server(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn bad_handshakes_end_only_their_own_connection() {
    let dir = pki();
    let s = start(
        &dir,
        &service(
            "up",
            r#"cert = "server.pem", key = "server.key", handshake_timeout = 1"#,
            "",
        ),
    );
    let addr = s.addr("up");
    // A client that stalls mid-handshake, open during the good one.
    let stalled = TcpStream::connect(addr).expect("connect");
    // Garbage instead of a ClientHello.
    let mut garbage = TcpStream::connect(addr).expect("connect");
    garbage
        .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .expect("write");
    // Half a ClientHello, then gone.
    let mut quitter = TcpStream::connect(addr).expect("connect");
    quitter
        .write_all(&[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ])
        .expect("write");
    drop(quitter);
    let (ok, out) = s_client(dir.path(), addr, &[], "still served\n");
    assert!(
        ok && out.contains("STILL SERVED\n"),
        "{out}\nlog:\n{}",
        s.log()
    );
    assert!(closed_by_server(garbage), "garbage connection left open");
    assert!(
        closed_by_server(stalled),
        "stalled handshake never timed out"
    );
    for what in ["timed out", "the client closed the connection"] {
        assert!(
            s.wait_for(|l| l.contains("handshake failed") && l.contains(what))
                .is_some(),
            "no \"{what}\" line:\n{}",
            s.log()
        );
    }
    // Three failed, one served: every one exited on its own.
    assert!(
        crate::harness::eventually(|| s.count(&["exit ", "status=1"]) == 3),
        "{}",
        s.log()
    );
    assert!(
        crate::harness::eventually(|| s.count(&["exit ", "status=0"]) == 1),
        "{}",
        s.log()
    );
}

#[test]
fn check_reports_a_key_that_is_not_the_certificates() {
    let dir = pki();
    let text = service("up", r#"cert = "server.pem", key = "server2.key""#, "");
    dir.write("upper-tls.sh", UPPER);
    let path = dir.write("oxinetd.toml", &text);
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("tls"))
        .expect("tls line");
    let col = 1 + text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("\"server2.key\""))
        .expect("key");
    let want = format!(
        "{}:{line}:{col}: tls.key \"server2.key\": does not match the certificate's public key",
        path.display()
    );
    assert!(stderr.contains(&want), "want {want}\ngot {stderr}");

    // And the other places: not a datagram service, not with wait.
    let text = "[[service]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nsocket = \"dgram\"\nprotocol = \"udp\"\n\
                server = \"/bin/cat\"\nwait = true\ntls = { cert = \"server.pem\", key = \"server.key\" }\n";
    let path = dir.write("dgram.toml", text);
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:8:7: tls: only for stream services",
            path.display()
        )),
        "{stderr}"
    );
}

/// An `s_client` left open: its stdin to write to, its output read by a
/// thread into a channel.
struct Open {
    child: Child,
    stdin: Option<ChildStdin>,
    out: mpsc::Receiver<String>,
    seen: String,
}

impl Open {
    fn new(dir: &Path, addr: SocketAddr) -> Open {
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "localhost",
            ])
            .args(["-CAfile", "ca.pem", "-verify_return_error", "-ign_eof"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_client");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Open {
            child,
            stdin,
            out,
            seen: String::new(),
        }
    }

    /// Wait for a line containing `what`.
    fn expect(&mut self, what: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while !self.seen.contains(what) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.out.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(l) => {
                    self.seen.push_str(&l);
                    self.seen.push('\n');
                }
                Err(_) => panic!("no \"{what}\" from s_client; got:\n{}", self.seen),
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin");
        stdin.write_all(line.as_bytes()).expect("write to s_client");
        stdin.flush().expect("flush");
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `Uid:` line of /proc/PID/status.
fn uid_line(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn the_process_parsing_tls_runs_as_the_services_user() {
    crate::require_root!();
    let dir = pki();
    // The key is root's alone (0600): the relay, as nobody, could not
    // open it; it gets the contents from the supervisor.
    let s = start(
        &dir,
        &service("up", r#"cert = "server.pem", key = "server.key""#, ""),
    );
    let mut c = Open::new(dir.path(), s.addr("up"));
    c.expect("server-one");
    let start = s.expect_line(&["start ", "service=up"]);
    let pid = field(&start, "pid").expect("pid").to_owned();
    // The handshake is done: the relay (the supervisor's child) parsed it.
    assert_eq!(
        uid_line(&pid),
        "Uid:\t65534\t65534\t65534\t65534",
        "relay {pid}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.starts_with(b"oxinetd-tls\0relay\0"),
        "{}",
        String::from_utf8_lossy(&cmdline)
    );
    // The key material's memfd is closed once read: neither the relay
    // nor the handler (its child) holds it.
    let mut pids = vec![pid.clone()];
    // The handler is forked right after the handshake the client saw.
    let relay: i32 = pid.parse().expect("pid");
    assert!(crate::harness::eventually(|| !crate::harness::children_of(
        relay
    )
    .is_empty()));
    pids.extend(
        crate::harness::children_of(relay)
            .iter()
            .map(|(p, _)| p.to_string()),
    );
    assert_eq!(pids.len(), 2, "relay and handler: {pids:?}");
    for p in &pids {
        for fd in std::fs::read_dir(format!("/proc/{p}/fd"))
            .expect("fds")
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert!(
                !target.to_string_lossy().contains("memfd"),
                "{p}: {target:?}"
            );
        }
    }
    let handler = &pids[1];
    assert_eq!(uid_line(handler), "Uid:\t65534\t65534\t65534\t65534");
    c.send("as nobody\n");
    c.expect("AS NOBODY");
}

#[test]
fn a_reload_serves_the_new_certificate_while_an_open_connection_goes_on() {
    let dir = pki();
    let live = |name: &str| {
        for ext in ["pem", "key"] {
            let to = dir.path().join(format!("live.{ext}"));
            std::fs::copy(dir.path().join(format!("{name}.{ext}")), &to).expect("copy");
        }
    };
    // A renewal as certbot does it: the files replaced, the config as it
    // was, SIGHUP.
    live("server");
    let config = service("up", r#"cert = "live.pem", key = "live.key""#, "");
    let s = start(&dir, &config);
    let addr = s.addr("up");
    let mut old = Open::new(dir.path(), addr);
    old.expect("server-one");
    live("server2");
    let line = s.reload(&config);
    assert!(line.contains(" reload "), "{line}");
    let (ok, out) = s_client(dir.path(), addr, &[], "next\n");
    assert!(
        ok && out.contains("server-two") && out.contains("NEXT\n"),
        "{out}"
    );
    assert!(!out.contains("server-one"), "{out}");
    // The connection opened before the reload finishes on its own.
    old.send("still old\n");
    old.expect("STILL OLD");
}

#[test]
fn sni_picks_the_certificate_by_server_name() {
    let dir = pki();
    let s = start(
        &dir,
        &service(
            "sni",
            r#"cert = "server.pem", key = "server.key", sni = { "other.example" = { cert = "other-name.pem", key = "other-name.key" }, "*.wild.example" = { cert = "other-name.pem", key = "other-name.key" } }"#,
            "",
        ),
    );
    let addr = s.addr("sni");
    let ask = |name: &str| {
        let (ok, out) = s_client(
            dir.path(),
            addr,
            &["-servername", name, "-verify_hostname", name],
            "which\n",
        );
        assert!(
            ok && out.contains("WHICH\n"),
            "{name}: {out}\nlog:\n{}",
            s.log()
        );
        out
    };
    let out = ask("other.example");
    assert!(
        out.contains("other-name") && out.contains("SSL_TLS_SNI=other.example\n"),
        "{out}"
    );
    let out = ask("www.wild.example");
    assert!(out.contains("other-name"), "{out}");
    // Any other name (or none) gets the default certificate.
    let (ok, out) = s_client(dir.path(), addr, &[], "default\n");
    assert!(
        ok && out.contains("server-one") && !out.contains("other-name"),
        "{out}"
    );

    // An sni key that is not its certificate's: at the sni entry.
    let text = service(
        "bad",
        r#"cert = "server.pem", key = "server.key", sni = { "other.example" = { cert = "other-name.pem", key = "server.key" } }"#,
        "",
    );
    let path = dir.write("bad.toml", &text);
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("tls"))
        .expect("tls line");
    let col = 1 + text
        .lines()
        .nth(line - 1)
        .and_then(|l| l.find("{ \"other"))
        .expect("sni");
    assert!(
        stderr.contains(&format!(
            "{}:{line}:{col}: tls.sni \"other.example\":",
            path.display()
        )) && stderr.contains("does not match the certificate's public key"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_tls_when_the_user_may_not_run_the_relay() {
    crate::require_root!();
    let dir = pki();
    dir.write("upper-tls.sh", UPPER);
    // oxinetd and an oxinetd-tls beside it that only root may execute:
    // the relay could not start as nobody.
    let copy = dir.path().join("sbin");
    std::fs::create_dir(&copy).expect("mkdir");
    let oxinetd = copy.join("oxinetd");
    std::fs::copy(bin(), &oxinetd).expect("copy oxinetd");
    let relay = copy.join("oxinetd-tls");
    std::fs::copy(env!("CARGO_BIN_EXE_oxinetd-tls"), &relay).expect("copy oxinetd-tls");
    std::fs::set_permissions(&relay, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    // A forward with forward_tls only has the same relay.
    let text = format!(
        "{}[[service]]\nname = \"fwd\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:9\"\n{}\n\
         forward_tls = {{ ca = \"ca.pem\" }}\n",
        service("up", r#"cert = "server.pem", key = "server.key""#, ""),
        user_line()
    );
    let path = dir.write("oxinetd.toml", &text);
    let fwd_line = 1 + text
        .lines()
        .position(|l| l.starts_with("forward_tls"))
        .expect("forward_tls line");
    let check = || {
        Command::new(&oxinetd)
            .arg("check")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("check")
    };
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = 1 + text
        .lines()
        .position(|l| l.starts_with("tls"))
        .expect("tls line");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:{line}:7: tls: {} is not executable by nobody (mode 0700, owner root)",
            path.display(),
            relay.display()
        )) && stderr.contains(&format!(
            "{}:{fwd_line}:15: forward_tls: {} is not executable by nobody (mode 0700, owner root)",
            path.display(),
            relay.display()
        )),
        "{stderr}"
    );
    // And without it at all: named, with where it was looked for.
    std::fs::remove_file(&relay).expect("rm");
    let out = check();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:{line}:7: tls: oxinetd-tls not found (looked for {} and ",
            path.display(),
            relay.display()
        )) && stderr.contains(&format!(
            "{}:{fwd_line}:15: forward_tls: oxinetd-tls not found (looked for {} and ",
            path.display(),
            relay.display()
        )),
        "{stderr}"
    );
}

/// `socat` as a TLS client of `addr` from `from` (verifying the test CA
/// for "localhost"): `input`, then its half-close; what came back before
/// the server's close.
fn socat_tls(dir: &Path, from: &str, addr: SocketAddr, input: &str) -> String {
    let out = socat_tls_output(dir, from, addr, input);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `socat_tls`'s client, its stdout and stderr apart and as bytes.
fn socat_tls_output(dir: &Path, from: &str, addr: SocketAddr, input: &str) -> Output {
    let socat = crate::harness::need("socat", "socat");
    let mut child = Command::new("timeout")
        .arg(PATIENCE.as_secs().to_string())
        .arg(socat)
        .args(["-t", "10", "-"])
        .arg(format!(
            "OPENSSL:{addr},bind={from},cafile=ca.pem,commonname=localhost"
        ))
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("socat");
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes());
    child.wait_with_output().expect("socat output")
}

/// A plain client of `addr`: `input`, half-close, all of the answer.
fn plain(addr: SocketAddr, input: &str) -> String {
    String::from_utf8_lossy(&crate::harness::exchange(addr, input.as_bytes()).unwrap_or_default())
        .into_owned()
}

fn internal_tls(name: &str, server: &str, extra: &str) -> String {
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"internal:{server}\"\n{}\n\
         tls = {{ cert = \"server.pem\", key = \"server.key\" }}\n{extra}\n",
        user_line()
    )
}

#[test]
fn internal_echo_and_metrics_over_tls() {
    let dir = pki();
    let config = format!(
        "{}{}",
        internal_tls(
            "echo-tls",
            "echo",
            "log_on_success = [\"HOST\", \"PID\", \"EXIT\", \"TRAFFIC\"]"
        ),
        internal_tls("metrics-tls", "metrics", "")
    );
    let s = start(&dir, &config);
    let out = socat_tls(dir.path(), "127.0.0.1", s.addr("echo-tls"), "echo me\n");
    assert_eq!(out, "echo me\n", "log:\n{}", s.log());
    // The relay is the connection's process; the echo itself is served
    // by the supervisor on its side of the socketpair, the client as peer.
    let start = s.expect_line(&["start service=echo-tls", "peer=127.0.0.1:"]);
    let pid = field(&start, "pid").expect("pid").to_owned();
    s.expect_line(&["exit service=echo-tls", &format!("pid={pid}"), "status=0"]);
    s.expect_line(&["done service=echo-tls", "peer=127.0.0.1:", "bytes_in=8"]);
    // Nothing in clear on the wire: a plain client gets no echo.
    let raw = plain(s.addr("echo-tls"), "clear\n");
    assert!(!raw.contains("clear"), "{raw:?}");

    let web = s.addr("metrics-tls");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert", "ca.pem"])
        .arg("--resolve")
        .arg(format!("localhost:{}:127.0.0.1", web.port()))
        .arg(format!("https://localhost:{}/metrics", web.port()))
        .current_dir(dir.path())
        .output()
        .expect("curl (apt-get install curl)");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.contains("oxinetd_build_info"),
        "curl: {}\n{body}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
}

/// `forward_upstream.py`'s upstreams: the child (killed when the guard
/// drops), the PROXY one's port and the COUNT one's.
struct ProxyUpstream(Child, u16, u16);

impl ProxyUpstream {
    fn start(dir: &Dir) -> ProxyUpstream {
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
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        let port = |n| {
            line.split_whitespace()
                .nth(n)
                .and_then(|p| p.parse().ok())
                .expect("a port")
        };
        ProxyUpstream(child, port(3), port(1))
    }
}

impl Drop for ProxyUpstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn tls_in_forward_to_a_plain_upstream_with_the_clients_proxy_header() {
    let dir = pki();
    let up = ProxyUpstream::start(&dir);
    let config = format!(
        "[[service]]\nname = \"fwd\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:{}\"\n\
         forward_proxy_protocol = \"v2\"\n{}\ntls = {{ cert = \"server.pem\", key = \"server.key\" }}\n",
        up.1,
        user_line()
    );
    let s = start(&dir, &config);
    let addr = s.addr("fwd");
    let out = socat_tls(dir.path(), "127.0.0.2", addr, "through\n");
    // The upstream saw the client (127.0.0.2) and where it connected,
    // then the plaintext.
    assert!(
        out.starts_with("v2 tcp4 127.0.0.2 "),
        "{out:?}\nlog:\n{}",
        s.log()
    );
    assert!(
        out.contains(&format!(" 127.0.0.1 {} ", addr.port())) && out.ends_with("\nthrough\n"),
        "{out:?}"
    );
    s.expect_line(&["start service=fwd", "peer=127.0.0.2:"]);
    s.expect_line(&["exit service=fwd", "status=0"]);
}

#[test]
fn a_tls_forward_passes_the_clients_end_on_and_carries_bulk_back() {
    let dir = pki();
    let up = ProxyUpstream::start(&dir);
    let config = format!(
        "[[service]]\nname = \"count\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:{}\"\n{}\n\
         tls = {{ cert = \"server.pem\", key = \"server.key\" }}\n",
        up.2,
        user_line()
    );
    let s = start(&dir, &config);
    // The upstream answers only after the client's end of input (its
    // close_notify, passed on as a half-close; socat sends it in the
    // same segment as the data), then sends 5 MiB of a pattern.
    let out = socat_tls_output(dir.path(), "127.0.0.1", s.addr("count"), "hello\n");
    let head = b"6 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03\n";
    let body = out.stdout.strip_prefix(&head[..]).unwrap_or_else(|| {
        panic!(
            "{} bytes: {:?}\n{}\nlog:\n{}",
            out.stdout.len(),
            String::from_utf8_lossy(&out.stdout[..out.stdout.len().min(200)]),
            String::from_utf8_lossy(&out.stderr),
            s.log()
        )
    });
    assert_eq!(
        body.len(),
        5 * 1024 * 1024,
        "socat: {:?} {}\nlog:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        s.log()
    );
    let wrong = body
        .iter()
        .enumerate()
        .position(|(k, b)| usize::from(*b) != k % 251);
    assert_eq!(wrong, None, "the pattern differs there");
    s.expect_line(&["exit service=count", "status=0"]);
}

#[test]
fn forward_tls_verifies_the_upstream_and_refuses_a_wrong_one() {
    let dir = pki();
    let upstream = start(&dir, &internal_tls("echo-tls", "echo", ""));
    let target = upstream.addr("echo-tls");
    let fwd = |name: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nforward = \"{target}\"\n{}\n{extra}\n",
            user_line()
        )
    };
    let config = format!(
        "{}{}{}{}",
        fwd(
            "good",
            "forward_tls = { ca = \"ca.pem\", server_name = \"localhost\" }"
        ),
        fwd(
            "wrong-ca",
            "forward_tls = { ca = \"other.pem\", server_name = \"localhost\" }"
        ),
        fwd(
            "wrong-name",
            "forward_tls = { ca = \"ca.pem\", server_name = \"elsewhere.example\" }"
        ),
        fwd(
            "both",
            "forward_tls = { ca = \"ca.pem\", server_name = \"localhost\" }\n\
             tls = { cert = \"server2.pem\", key = \"server2.key\" }"
        ),
    );
    let dir2 = pki_copy(&dir);
    let s = Server::start_in(dir2.clone(), &config, &[], |_| {});
    assert_eq!(
        plain(s.addr("good"), "plain in\n"),
        "plain in\n",
        "{}",
        s.log()
    );
    s.expect_line(&["exit service=good", "status=0"]);
    // TLS both ways: the client's TLS ends in one relay, which is the
    // upstream's TLS client.
    let out = socat_tls(dir2.path(), "127.0.0.1", s.addr("both"), "both ways\n");
    assert_eq!(out, "both ways\n", "{}", s.log());

    assert_eq!(plain(s.addr("wrong-ca"), "x\n"), "");
    s.expect_line(&[
        "stderr service=wrong-ca",
        "upstream handshake failed: invalid peer certificate: UnknownIssuer",
    ]);
    s.expect_line(&["exit service=wrong-ca", "status=1"]);
    assert_eq!(plain(s.addr("wrong-name"), "x\n"), "");
    s.expect_line(&[
        "stderr service=wrong-name",
        "upstream handshake failed: invalid peer certificate",
    ]);
}

/// A second directory with `dir`'s certificates (a second oxinetd needs
/// its own oxinetd.toml).
fn pki_copy(dir: &Dir) -> Dir {
    let to = Dir::new();
    for entry in std::fs::read_dir(dir.path()).expect("pki dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n.ends_with(".pem") || n.ends_with(".key") {
            let dest = to.path().join(&name);
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
    to
}

#[test]
fn check_places_forward_tls_errors() {
    let dir = pki();
    let svc = |name: &str, tls: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nforward = \"127.0.0.1:9\"\n\
             forward_tls = {{ {tls} }}\n{}\n",
            user_line()
        )
    };
    let text = format!(
        "{}{}{}",
        svc("f", r#"ca = "ca.pem", cafile = "x""#),
        svc("g", r#"ca = "missing.pem""#),
        svc(
            "h",
            r#"ca = "ca.pem", cert = "client.pem", key = "stranger.key""#
        )
    );
    let path = dir.write("oxinetd.toml", &text);
    let out = Command::new(bin())
        .arg("check")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // Where `needle` is, on the nth forward_tls line.
    let at = |nth: usize, needle: &str| {
        let (line, text) = text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.starts_with("forward_tls"))
            .nth(nth)
            .expect("forward_tls line");
        format!("{}:{}", line + 1, 1 + text.find(needle).expect("needle"))
    };
    let p = path.display();
    for want in [
        format!(
            "{p}:{}: forward_tls: unknown key \"cafile\"",
            at(0, "\"x\"")
        ),
        format!(
            "{p}:{}: forward_tls.ca \"missing.pem\": No such file or directory",
            at(1, "\"missing.pem\"")
        ),
        format!(
            "{p}:{}: forward_tls.key \"stranger.key\": does not match the certificate's public key",
            at(2, "\"stranger.key\"")
        ),
    ] {
        assert!(stderr.contains(&want), "want {want}\ngot {stderr}");
    }
}

#[test]
fn proxy_protocol_in_front_of_tls_gives_the_real_client() {
    let dir = pki();
    let env = dir.write(
        "env-tls.sh",
        "#!/bin/sh\nIFS= read -r line\necho \"got=$line remote=$REMOTE_ADDR peer=$PROXY_PEER $SSL_PROTOCOL\"\n",
    );
    std::fs::set_permissions(&env, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let proxied = "proxy_protocol = true\nproxy_from = \"127.0.0.1\"";
    let config = format!(
        "[[service]]\nname = \"env\"\nlisten = \"127.0.0.1:0\"\nserver = \"{{dir}}/env-tls.sh\"\n{}\n\
         tls = {{ cert = \"server.pem\", key = \"server.key\" }}\n{proxied}\n{}",
        user_line(),
        internal_tls("echo-tls", "echo", &format!("{proxied}\nlog_on_success = [\"HOST\"]"))
    );
    let s = start(&dir, &config);
    let h = crate::proxy::Haproxy::start(
        &dir,
        &[
            (s.addr("env"), "send-proxy-v2"),
            (s.addr("echo-tls"), "send-proxy-v2"),
        ],
    );
    // The TLS is the client's, through HAProxy in TCP mode; the header
    // before it is HAProxy's.
    let out = socat_tls(dir.path(), "127.0.0.2", h.fronts[0], "hi\n");
    assert_eq!(
        out,
        "got=hi remote=127.0.0.2 peer=127.0.0.1 TLSv1.3\n",
        "log:\n{}",
        s.log()
    );
    s.expect_line(&["start service=env", "peer=127.0.0.2:", "via=127.0.0.1:"]);
    let out = socat_tls(dir.path(), "127.0.0.2", h.fronts[1], "echoed\n");
    assert_eq!(out, "echoed\n", "log:\n{}", s.log());
    s.expect_line(&["done service=echo-tls", "peer=127.0.0.2:", "via=127.0.0.1:"]);
}

#[test]
fn an_internal_tls_connection_counts_once_against_instances() {
    let dir = pki();
    let s = start(
        &dir,
        &internal_tls(
            "echo-tls",
            "echo",
            "instances = 1\nlog_on_success = [\"HOST\", \"PID\"]",
        ),
    );
    let addr = s.addr("echo-tls");
    let mut first = Open::new(dir.path(), addr);
    first.send("one\n");
    first.expect("one");
    // The relay holds the one place: the listener is closed, a second
    // client waits in the backlog, unserved.
    let (tx, rx) = mpsc::channel();
    let d = dir.path().to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(socat_tls(&d, "127.0.0.1", addr, "two\n"));
    });
    assert!(rx.recv_timeout(Duration::from_millis(1500)).is_err());
    assert_eq!(s.count(&["start service=echo-tls"]), 1, "{}", s.log());
    // The first leaves: the second is served.
    drop(first);
    let out = rx
        .recv_timeout(PATIENCE)
        .expect("the second client's answer");
    assert_eq!(out, "two\n", "{}", s.log());
    assert!(
        crate::harness::eventually(|| s.count(&["start service=echo-tls"]) == 2),
        "{}",
        s.log()
    );
}

#[test]
fn an_internal_service_that_closes_ends_its_relay_while_the_client_stays() {
    let dir = pki();
    let s = start(
        &dir,
        &internal_tls("day", "daytime", "log_on_success = [\"PID\", \"EXIT\"]"),
    );
    // socat keeps its side open after the server's close_notify (its
    // stdin stays open, -t 600): the relay must end anyway once daytime
    // has answered and closed its side, not wait for the client.
    let socat = crate::harness::need("socat", "socat");
    let mut client = Command::new(socat)
        .args(["-t", "600", "-"])
        .arg(format!(
            "OPENSSL:{},cafile=ca.pem,commonname=localhost",
            s.addr("day")
        ))
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat");
    let mut line = String::new();
    let out = client.stdout.take().expect("stdout");
    let _ = BufReader::new(out).read_line(&mut line);
    assert!(line.contains(':'), "{line:?}\n{}", s.log());
    s.expect_line(&["exit service=day", "status=0"]);
    let still = client.try_wait().ok().flatten().is_none();
    let _ = client.kill();
    let _ = client.wait();
    assert!(still, "the client was to stay connected");
    assert_eq!(s.count(&["stderr service=day"]), 0, "{}", s.log());
}

#[test]
fn the_relay_of_an_internal_service_runs_as_its_user_without_the_key() {
    crate::require_root!();
    let dir = pki();
    let s = start(&dir, &internal_tls("echo-tls", "echo", ""));
    let mut c = Open::new(dir.path(), s.addr("echo-tls"));
    c.send("still here\n");
    c.expect("still here");
    let start = s.expect_line(&["start ", "service=echo-tls"]);
    let pid = field(&start, "pid").expect("pid").to_owned();
    assert_eq!(
        uid_line(&pid),
        "Uid:\t65534\t65534\t65534\t65534",
        "relay {pid}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert_eq!(cmdline, b"oxinetd-tls\0relay\0--pipe\0");
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        assert!(!target.to_string_lossy().contains("memfd"), "{target:?}");
    }
}

#[test]
fn forward_tls_presents_a_client_certificate() {
    let dir = pki();
    let upstream = start(
        &dir,
        &service(
            "need-cert",
            r#"cert = "server.pem", key = "server.key", client_ca = "ca.pem""#,
            "",
        ),
    );
    let target = upstream.addr("need-cert");
    let fwd = |name: &str, extra: &str| {
        format!(
            "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nforward = \"{target}\"\n{}\n\
             forward_tls = {{ ca = \"ca.pem\", server_name = \"localhost\"{extra} }}\n",
            user_line()
        )
    };
    let config = format!(
        "{}{}",
        fwd("with", r#", cert = "client.pem", key = "client.key""#),
        fwd("without", "")
    );
    let dir2 = pki_copy(&dir);
    let s = Server::start_in(dir2, &config, &[], |_| {});
    let out = plain(s.addr("with"), "from alice\n");
    assert!(
        out.starts_with("FROM ALICE\n") && out.contains("SSL_CLIENT_S_DN=CN=alice\n"),
        "{out}\nlog:\n{}\nupstream:\n{}",
        s.log(),
        upstream.log()
    );
    // No certificate: the upstream refuses the handshake.
    let out = plain(s.addr("without"), "anonymous\n");
    assert!(!out.contains("ANONYMOUS"), "{out}");
    s.expect_line(&["exit service=without", "status=1"]);
}

#[test]
fn check_warns_about_a_certificate_that_expires_within_14_days() {
    let dir = pki();
    let h = dir.write("upper-tls.sh", UPPER);
    std::fs::set_permissions(&h, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod handler");
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "soon.key",
            "-out",
            "soon.pem",
            "-days",
            "5",
            "-subj",
            "/CN=soon",
        ],
    );
    let run = |cert: &str, key: &str| {
        let text = service("up", &format!(r#"cert = "{cert}", key = "{key}""#), "");
        let path = dir.write("oxinetd.toml", &text);
        let out = Command::new(bin())
            .arg("check")
            .arg("-f")
            .arg(&path)
            .output()
            .expect("check");
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with("tls"))
            .expect("tls line");
        let col = 1 + text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.find(&format!("\"{cert}\"")))
            .expect("cert");
        (out, format!("{}:{line}:{col}", path.display()))
    };
    // A warning: the config is valid, and says so.
    let (out, at) = run("soon.pem", "soon.key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Five days from openssl's "now", to the second: 4 days 23 hours, or
    // 5 days 0 hours when both fell within the same second.
    let warned = ["4 days 23 hours", "5 days 0 hours"].iter().any(|left| {
        stderr.contains(&format!(
            "{at}: warning: tls.cert \"soon.pem\": expires in {left}\n"
        ))
    });
    assert!(warned, "{stderr}");
    // The 30-day certificate gets none.
    let (out, _) = run("server.pem", "server.key");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("expires in"), "{stderr}");
}
