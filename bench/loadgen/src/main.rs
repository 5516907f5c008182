//! Load generator: N workers each doing connect → send a line → read the
//! reply → close, for a fixed time. Prints one machine-readable line:
//! `conns=... errors=... secs=... rate=... p50_us=... p99_us=... max_us=...`.
//!
//! Usage: oxinetd-loadgen ADDR CONCURRENCY SECONDS

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: {} ADDR CONCURRENCY SECONDS", args[0]);
        std::process::exit(2);
    }
    let (Ok(addr), Ok(conc), Ok(secs)) = (
        args[1].parse::<SocketAddr>(),
        args[2].parse::<usize>(),
        args[3].parse::<f64>(),
    ) else {
        eprintln!("bad arguments");
        std::process::exit(2);
    };
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match one(addr) {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                        Err(_) => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = 0;
    for w in workers {
        if let Ok((l, e)) = w.join() {
            lat.extend(l);
            errors += e;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "conns={} errors={errors} secs={elapsed:.2} rate={:.0} p50_us={} p99_us={} max_us={}",
        lat.len(),
        lat.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
}

fn one(addr: SocketAddr) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"ping\n")?;
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < 5 {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    if &buf[..n] == b"ping\n" {
        Ok(())
    } else {
        Err(std::io::Error::other("bad reply"))
    }
}
