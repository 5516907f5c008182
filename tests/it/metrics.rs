//! `internal:metrics`: the Prometheus page scraped with a real HTTP client
//! (python3's urllib), checked by the real parser (`promtool check
//! metrics`, Debian's prometheus), its figures against what the test did;
//! the HTTP errors; clients that hold a connection without a request; and
//! the Prometheus server itself scraping it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{eventually, talk, talk_from, user_line, Server, PATIENCE};

fn svc(name: &str, server: &str, extra: &str) -> String {
    let user = if server.starts_with("internal:") {
        ""
    } else {
        user_line()
    };
    format!(
        "[[service]]\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\nserver = \"{server}\"\n{user}\n{extra}\n"
    )
}

/// What a GET (or another method) through python3's urllib got: status,
/// the Content-Type header, the body.
struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

const SCRAPER: &str = r#"
import sys, urllib.request, urllib.error
url, method = sys.argv[1], sys.argv[2]
data = b"x=1" if method == "POST" else None
req = urllib.request.Request(url, data=data, method=method)
try:
    r = urllib.request.urlopen(req, timeout=20)
except urllib.error.HTTPError as e:
    r = e
body = r.read()
sys.stdout.write("%d\n%s\n" % (r.status, r.headers.get("Content-Type")))
sys.stdout.flush()
sys.stdout.buffer.write(body)
"#;

fn scrape_with(addr: SocketAddr, path: &str, method: &str) -> Answer {
    let out = Command::new("python3")
        .args(["-c", SCRAPER, &format!("http://{addr}{path}"), method])
        .stdin(Stdio::null())
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python3 urllib: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut parts = text.splitn(3, '\n');
    Answer {
        status: parts.next().unwrap_or_default().parse().unwrap_or(0),
        content_type: parts.next().unwrap_or_default().to_string(),
        body: parts.next().unwrap_or_default().to_string(),
    }
}

fn scrape(addr: SocketAddr) -> String {
    let a = scrape_with(addr, "/metrics", "GET");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "text/plain; version=0.0.4; charset=utf-8");
    a.body
}

/// `promtool check metrics` on `page`: the real parser and its lint.
fn promtool_accepts(promtool: &std::path::Path, page: &str) {
    let mut p = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    p.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels as written).
fn value(page: &str, series: &str) -> f64 {
    let prefix = format!("{series} ");
    match page.lines().find_map(|l| l.strip_prefix(&prefix)) {
        Some(v) => v.parse().unwrap_or_else(|_| panic!("{series}: {v}")),
        None => panic!("no sample {series} in\n{page}"),
    }
}

/// Send raw bytes, read the answer to the end (the server closes).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn metrics_count_what_happened_and_promtool_accepts_them() {
    let promtool = crate::need!("promtool", "prometheus");
    let config = format!(
        "{}{}{}{}",
        svc("upper", "upper.sh", ""),
        svc("echo", "internal:echo", ""),
        svc("guarded", "upper.sh", "only_from = [\"127.0.0.2\"]"),
        svc("metrics", "internal:metrics", ""),
    );
    let s = Server::start(&config);
    for i in 0..3 {
        assert_eq!(
            talk(s.addr("upper"), &format!("up{i}\n")),
            format!("UP{i}\n")
        );
    }
    for _ in 0..2 {
        assert_eq!(talk(s.addr("echo"), "hello\n"), "hello\n");
    }
    for _ in 0..2 {
        assert_eq!(talk_from("127.0.0.1", s.addr("guarded"), "x\n"), "");
    }
    // Handlers reaped and echo connections closed are counted.
    assert!(
        eventually(|| s.count(&["exit service=upper", "status=0"]) == 3
            && s.count(&["done service=echo"]) == 2),
        "{}",
        s.log()
    );
    s.expect_line(&["refuse service=guarded"]);

    let page = scrape(s.addr("metrics"));
    promtool_accepts(&promtool, &page);
    for (series, want) in [
        ("oxinetd_accepted_total{service=\"upper\"}", 3.0),
        ("oxinetd_spawned_total{service=\"upper\"}", 3.0),
        ("oxinetd_exits_total{service=\"upper\",status=\"ok\"}", 3.0),
        ("oxinetd_exits_total{service=\"upper\",status=\"error\"}", 0.0),
        ("oxinetd_accepted_total{service=\"echo\"}", 2.0),
        ("oxinetd_received_bytes_total{service=\"echo\"}", 12.0),
        ("oxinetd_sent_bytes_total{service=\"echo\"}", 12.0),
        ("oxinetd_accepted_total{service=\"guarded\"}", 0.0),
        (
            "oxinetd_refused_total{service=\"guarded\",reason=\"only_from\"}",
            2.0,
        ),
        (
            "oxinetd_refused_total{service=\"guarded\",reason=\"per_source\"}",
            0.0,
        ),
        // This scrape is the metrics service's first connection.
        ("oxinetd_accepted_total{service=\"metrics\"}", 1.0),
        ("oxinetd_running{service=\"metrics\"}", 1.0),
        ("oxinetd_running{service=\"upper\"}", 0.0),
        ("oxinetd_processes", 0.0),
        ("oxinetd_config_reloads_total", 0.0),
        (
            "oxinetd_listener_state{service=\"upper\",listen=\"{upper}\",proto=\"tcp\",state=\"armed\"}",
            1.0,
        ),
        (
            "oxinetd_listener_state{service=\"upper\",listen=\"{upper}\",proto=\"tcp\",state=\"paused\"}",
            0.0,
        ),
    ] {
        let series = series.replace("{upper}", &s.addr("upper").to_string());
        assert_eq!(value(&page, &series), want, "{series}\n{page}");
    }
    // Types: counters end in _total, and the others are gauges.
    assert!(page.contains("# TYPE oxinetd_refused_total counter\n"));
    assert!(page.contains("# TYPE oxinetd_running gauge\n"));
    // No peer anywhere in the page.
    assert!(!page.contains("127.0.0.2"), "{page}");
    // Exec'd services count no bytes.
    assert!(!page.contains("oxinetd_received_bytes_total{service=\"upper\"}"));

    // A reload does not reset the counters.
    let outcome = s.reload(&config);
    assert!(outcome.contains(" reload "), "{outcome}");
    let page = scrape(s.addr("metrics"));
    assert_eq!(value(&page, "oxinetd_config_reloads_total"), 1.0);
    assert_eq!(
        value(&page, "oxinetd_accepted_total{service=\"upper\"}"),
        3.0
    );
    assert_eq!(
        value(&page, "oxinetd_accepted_total{service=\"metrics\"}"),
        2.0
    );

    // HEAD: the headers without the page.
    let head = raw(
        s.addr("metrics"),
        b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("\r\nContent-Length: "), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    // `/` is the page too.
    assert_eq!(scrape_with(s.addr("metrics"), "/", "GET").status, 200);
}

#[test]
fn metrics_answers_bad_requests_with_their_status_and_closes() {
    let s = Server::start(&svc("metrics", "internal:metrics", ""));
    let addr = s.addr("metrics");
    let a = scrape_with(addr, "/nope", "GET");
    assert_eq!(a.status, 404, "{}", a.body);
    let a = scrape_with(addr, "/metrics", "POST");
    assert_eq!(a.status, 405, "{}", a.body);
    let r = raw(
        addr,
        b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert!(r.contains("\r\nAllow: GET, HEAD\r\n"), "{r}");
    let r = raw(addr, b"hello there\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = raw(addr, b"GET /metrics HTTP/2.0\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 505 "), "{r}");
    // A request that ends before its blank line.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    // A head past 8 KiB: 431, and the connection is closed (read_to_end
    // returns) while the client still has more to send.
    let mut big = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
    big.resize(64 << 10, b'a');
    let r = raw(addr, &big);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    // Each ended as a `done` line with the peer and the status answered,
    // and the service still answers.
    assert!(eventually(|| s.count(&["done service=metrics"]) >= 7));
    for (status, n) in [("404", 1), ("405", 2), ("400", 2), ("505", 1), ("431", 1)] {
        let line = format!("status={status}");
        assert_eq!(
            s.count(&["done service=metrics", "peer=127.0.0.1:", &line]),
            n,
            "{status}\n{}",
            s.log()
        );
    }
    assert_eq!(scrape_with(addr, "/metrics", "GET").status, 200);
    s.expect_line(&["done service=metrics", "status=200"]);
}

#[test]
fn a_silent_metrics_client_delays_nobody_and_is_closed_by_idle_timeout() {
    let config = format!(
        "{}{}{}",
        svc("metrics", "internal:metrics", "idle_timeout = 1"),
        svc("echo", "internal:echo", ""),
        svc("upper", "upper.sh", ""),
    );
    let s = Server::start(&config);
    let addr = s.addr("metrics");
    // One connects and sends nothing; one sends half a request.
    let mut silent = TcpStream::connect(addr).unwrap();
    let mut partial = TcpStream::connect(addr).unwrap();
    partial.write_all(b"GET /metr").unwrap();
    // The others are served meanwhile, the metrics page too.
    assert_eq!(talk(s.addr("echo"), "still here\n"), "still here\n");
    assert_eq!(talk(s.addr("upper"), "abc\n"), "ABC\n");
    assert_eq!(scrape_with(addr, "/metrics", "GET").status, 200);
    // Both are closed by idle_timeout, without an answer.
    for c in [&mut silent, &mut partial] {
        c.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    }
    s.expect_line(&["done service=metrics", "reason=idle"]);
    // A request trickled a byte at a time is not activity: it must come
    // whole within idle_timeout, so this one is closed too.
    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + PATIENCE;
    let closed = loop {
        assert!(
            Instant::now() < deadline,
            "a trickling request kept its connection"
        );
        let mut b = [0u8; 64];
        match trickle.read(&mut b) {
            Ok(0) => break true,
            Ok(_) => break false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break true,
        }
        if trickle.write_all(b"G").is_err() {
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(closed);
}

#[test]
fn label_values_from_the_config_are_escaped() {
    crate::require_root!();
    let promtool = crate::need!("promtool", "prometheus");
    // A socket path with a double quote, a backslash and a line feed.
    let config = format!(
        "[[service]]\nname = \"odd\"\nlisten = [\"{{dir}}/q\\\"b\\\\s\\nl.sock\"]\n\
         server = \"/bin/cat\"\nuser = \"nobody\"\n\n{}",
        svc("metrics", "internal:metrics", "")
    );
    let s = Server::start(&config);
    let page = scrape(s.addr("metrics"));
    promtool_accepts(&promtool, &page);
    let dir = s.dir.path().display().to_string();
    let series = format!(
        "oxinetd_listener_state{{service=\"odd\",listen=\"{dir}/q\\\"b\\\\s\\nl.sock\",proto=\"unix\",state=\"armed\"}}"
    );
    assert_eq!(value(&page, &series), 1.0, "{series}\n{page}");
}

/// The Prometheus server itself (Debian's prometheus) scrapes the service
/// every second: its target is up with no scrape error, and a query finds
/// the counters with the values the test made.
#[test]
fn prometheus_scrapes_it() {
    let prometheus = crate::need!("prometheus", "prometheus");
    let config = format!(
        "{}{}",
        svc("guarded", "internal:echo", "only_from = [\"127.0.0.2\"]"),
        svc("metrics", "internal:metrics", ""),
    );
    let s = Server::start(&config);
    for _ in 0..3 {
        assert_eq!(talk_from("127.0.0.1", s.addr("guarded"), "x\n"), "");
    }
    let yml = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: oxinetd\n    \
         static_configs:\n      - targets: [\"{}\"]\n",
        s.addr("metrics")
    );
    let yml = s.dir.write("prometheus.yml", &yml);
    // A free port for its web API (taken back just before it binds it).
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = Command::new(prometheus)
        .arg(format!("--config.file={}", yml.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            s.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(p);
    // Its API through python3's urllib: what `expr` gives on the JSON.
    let api = |path: &str, expr: &str| -> String {
        // Asked a few times a second, not in a tight loop.
        std::thread::sleep(Duration::from_millis(200));
        let out = Command::new("python3")
            .arg("-c")
            .arg(format!(
                "import json,sys,urllib.request\n\
                 try:\n    j=json.load(urllib.request.urlopen('http://{web}{path}', timeout=5))\n\
                 except Exception as e:\n    print('unreachable', e); sys.exit(0)\n\
                 print({expr})"
            ))
            .output()
            .expect("python3");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let mut health = String::new();
    let up = crate::harness::eventually(|| {
        health = api(
            "/api/v1/targets",
            "[(t['health'], t['lastError']) for t in j['data']['activeTargets']]",
        );
        health.contains("('up', '')")
    });
    assert!(up, "the target never came up: {health}\n{}", s.log());
    let query = "/api/v1/query?query=oxinetd_refused_total%7Bservice%3D%22guarded%22%2Creason%3D%22only_from%22%7D";
    let mut got = String::new();
    let found = crate::harness::eventually(|| {
        got = api(query, "[r['value'][1] for r in j['data']['result']]");
        got == "['3']"
    });
    assert!(found, "query: {got}");
}
