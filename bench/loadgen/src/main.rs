//! Load generator for the oxinetd benchmarks. Every mode is bounded in time
//! (and most in count), and ends by printing one machine-readable line of
//! `key=value` pairs on stdout; diagnostics go to stderr.
//!
//! ```text
//! oxinetd-loadgen tcp  ADDR [--conc N] [--secs S] [--max N] [--timeout-ms MS] [--proxy v1|v2] [--rate R]
//! oxinetd-loadgen udp  ADDR [--conc N] [--secs S] [--max N] [--timeout-ms MS] [--rate R]
//! oxinetd-loadgen bulk ADDR [--secs S] [--chunk BYTES] [--timeout-ms MS]
//! oxinetd-loadgen idle ADDR [--conns N] [--hold-secs S] [--secs S] [--timeout-ms MS]
//! oxinetd-loadgen ADDR CONC SECS        (the old form: tcp mode)
//! ```
//!
//! * `tcp`: N workers, each doing connect → send a line → read the echo →
//!   close, until the time (or the total count) is up. Rate and latency
//!   percentiles of the successful connections; errors by kind. With
//!   `--proxy v1|v2`, each connection starts with a PROXY protocol header
//!   (its own addresses, TCP4) in the same write as the line, as a load
//!   balancer would put it in front (for a `proxy_protocol` service).
//!   The summary also says when the first and last errors fell
//!   (`first_err_s`, `last_err_s`, seconds into the run; `start_unix`),
//!   for a run across an event such as a backend killed (tests/fleet).
//! * `--rate R` (tcp, udp): at most R requests a second across the workers,
//!   each worker pacing its own share (R/N) on a fixed schedule; a worker
//!   that falls behind starts its schedule again rather than bursting. For
//!   a steady load below capacity (`bench/soak`); without it, every worker
//!   goes as fast as the server answers.
//! * `udp`: N workers, each with its own socket, sending one datagram and
//!   waiting for its echo (late echoes of earlier requests are ignored).
//!   A request unanswered within the timeout counts as lost. The socket is
//!   connected, so a reply from another address than ADDR is never read:
//!   it counts as lost too.
//! * `bulk`: one connection; 64 KiB chunks of a known pattern written,
//!   the echo read back (up to 1 MiB per read) and checked, both by one
//!   thread on a non-blocking socket. Echoed MB/s.
//! * `tls`, `tlsbulk` (`--ca PEM`): `tcp` and `bulk` through TLS, a full
//!   handshake per connection (bench/loadgen/src/tls.rs).
//! * `idle`: opens N connections one after another and keeps them all open
//!   (the fd limit is raised to the hard limit), prints a `phase=opened`
//!   line, waits, then checks that every one of them echoes.

mod bulk;
mod idle;
mod stats;
mod tcp;
mod tls;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Options common to the modes, with their defaults.
pub struct Opts {
    pub addr: SocketAddr,
    pub conc: usize,
    pub secs: f64,
    /// Upper bound on requests (tcp, udp) across all workers.
    pub max: u64,
    pub timeout: Duration,
    pub chunk: usize,
    pub conns: usize,
    pub hold_secs: f64,
    /// `--proxy`: the PROXY protocol version to send first (tcp).
    pub proxy: Option<u8>,
    /// `--ca`: the CA file of the `tls` and `tlsbulk` modes.
    pub ca: Option<String>,
    /// `--rate`: requests a second across all workers (tcp, udp); 0: no pacing.
    pub rate: f64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("oxinetd-loadgen: {msg}");
            eprintln!("usage: oxinetd-loadgen tcp|udp|bulk|idle|tls|tlsbulk ADDR [--conc N] [--secs S] [--max N] [--timeout-ms MS] [--chunk BYTES] [--conns N] [--hold-secs S] [--proxy v1|v2] [--ca PEM] [--rate R]");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    // The old positional form `ADDR CONC SECS`, kept for bench/exec-handler.sh.
    if args.len() == 3 && args[0].parse::<SocketAddr>().is_ok() {
        let opts = parse(
            "tcp",
            &args[0],
            &["--conc", &args[1], "--secs", &args[2]].map(String::from),
        )?;
        tcp::run(&opts);
        return Ok(());
    }
    let [mode, addr, rest @ ..] = args else {
        return Err("missing MODE or ADDR".into());
    };
    let opts = parse(mode, addr, rest)?;
    match mode.as_str() {
        "tcp" => tcp::run(&opts),
        "udp" => udp::run(&opts),
        "bulk" => bulk::run(&opts),
        "idle" => idle::run(&opts),
        "tls" | "tlsbulk" => {
            let ca = opts
                .ca
                .as_deref()
                .ok_or("--ca is required with tls, tlsbulk")?;
            let cfg = tls::config(ca)?;
            if mode == "tls" {
                tls::run(&opts, cfg);
            } else {
                tls::bulk(&opts, cfg);
            }
        }
        _ => return Err(format!("unknown mode {mode}")),
    }
    Ok(())
}

fn parse(mode: &str, addr: &str, rest: &[String]) -> Result<Opts, String> {
    let addr = addr
        .parse::<SocketAddr>()
        .map_err(|e| format!("bad address {addr}: {e}"))?;
    if !rest.len().is_multiple_of(2) {
        return Err("options come in --name value pairs".into());
    }
    let mut kv = HashMap::new();
    for pair in rest.chunks(2) {
        kv.insert(pair[0].as_str(), pair[1].as_str());
    }
    let num = |key: &str, default: f64| -> Result<f64, String> {
        match kv.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .ok_or_else(|| format!("bad value for {key}: {v}")),
        }
    };
    let known = [
        "--conc",
        "--secs",
        "--max",
        "--timeout-ms",
        "--chunk",
        "--conns",
        "--hold-secs",
        "--proxy",
        "--ca",
        "--rate",
    ];
    if let Some(k) = kv.keys().find(|k| !known.contains(k)) {
        return Err(format!("unknown option {k}"));
    }
    let proxy = match kv.get("--proxy").copied() {
        None => None,
        Some("v1") if mode == "tcp" => Some(1),
        Some("v2") if mode == "tcp" => Some(2),
        Some(v) => return Err(format!("--proxy {v}: v1 or v2, tcp mode only")),
    };
    let default_timeout = if mode == "udp" { 200.0 } else { 3000.0 };
    let opts = Opts {
        addr,
        conc: num("--conc", 1.0)? as usize,
        secs: num("--secs", 5.0)?,
        max: num("--max", 10_000_000.0)? as u64,
        timeout: Duration::from_secs_f64(num("--timeout-ms", default_timeout)? / 1000.0),
        chunk: num("--chunk", 65536.0)? as usize,
        conns: num("--conns", 10_000.0)? as usize,
        hold_secs: num("--hold-secs", 1.0)?,
        proxy,
        ca: kv.get("--ca").map(|s| s.to_string()),
        rate: num("--rate", 0.0)?,
    };
    if opts.conc == 0 || opts.conc > 4096 {
        return Err("--conc must be 1..4096".into());
    }
    if opts.secs > 3600.0 || opts.hold_secs > 600.0 {
        return Err("--secs at most 3600, --hold-secs at most 600".into());
    }
    if opts.timeout.is_zero() || opts.chunk == 0 || opts.chunk > 16 << 20 {
        return Err("--timeout-ms must be > 0, --chunk 1..16 MiB".into());
    }
    if opts.rate > 0.0 && !matches!(mode, "tcp" | "udp") {
        return Err("--rate: tcp and udp modes only".into());
    }
    Ok(opts)
}

/// One worker's schedule under `--rate`: its requests `interval` apart,
/// the first offset by its index so the workers do not start together.
pub struct Pace {
    interval: Option<Duration>,
    next: std::time::Instant,
}

impl Pace {
    pub fn new(o: &Opts, worker: usize) -> Pace {
        let interval = (o.rate > 0.0).then(|| Duration::from_secs_f64(o.conc as f64 / o.rate));
        let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(worker as f64 / o.conc as f64));
        Pace {
            interval,
            next: std::time::Instant::now() + offset,
        }
    }

    /// Sleep until this worker's next slot (at once without `--rate`).
    pub fn wait(&mut self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = std::time::Instant::now();
        if self.next > now {
            std::thread::sleep(self.next - now);
            self.next += interval;
        } else if now - self.next > interval {
            // Behind by more than a slot (the server stalled): start again
            // from now instead of sending the missed requests in a burst.
            self.next = now + interval;
        } else {
            self.next += interval;
        }
    }
}
