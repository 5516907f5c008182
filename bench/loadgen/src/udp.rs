//! `udp`: request/reply over datagrams, N workers, each with its own socket.
//!
//! Each request carries the worker and a sequence number, so a late echo of
//! an earlier (already counted as lost) request is recognised and skipped.

use std::io;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{percentiles, Errors};
use crate::{Opts, Pace};

#[derive(Default)]
struct Tally {
    lat: Vec<u64>,
    sent: u64,
    lost: u64,
    stale: u64,
    errors: Errors,
}

pub fn run(o: &Opts) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    let started = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..o.conc)
        .map(|w| {
            let (addr, timeout, max, started) = (o.addr, o.timeout, o.max, Arc::clone(&started));
            let mut pace = Pace::new(o, w);
            std::thread::spawn(move || -> io::Result<Tally> {
                // Loopback servers from loopback; any other (tests/fleet's
                // floating address across a bridge) from the routed source.
                let local = match (addr.is_ipv6(), addr.ip().is_loopback()) {
                    (true, true) => "[::1]:0",
                    (false, true) => "127.0.0.1:0",
                    (true, false) => "[::]:0",
                    (false, false) => "0.0.0.0:0",
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(addr)?;
                let mut t = Tally::default();
                let mut buf = [0u8; 256];
                let mut seq = 0u64;
                loop {
                    pace.wait();
                    if Instant::now() >= deadline || started.fetch_add(1, Ordering::Relaxed) >= max
                    {
                        break;
                    }
                    seq += 1;
                    let req = format!("w{w} s{seq}\n");
                    let sent_at = Instant::now();
                    t.sent += 1;
                    if let Err(e) = sock.send(req.as_bytes()) {
                        t.errors.count(&e);
                        t.lost += 1;
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    loop {
                        let left = timeout.saturating_sub(sent_at.elapsed());
                        if left.is_zero() {
                            t.lost += 1;
                            break;
                        }
                        sock.set_read_timeout(Some(left))?;
                        match sock.recv(&mut buf) {
                            Ok(n) if &buf[..n] == req.as_bytes() => {
                                t.lat.push(sent_at.elapsed().as_micros() as u64);
                                break;
                            }
                            Ok(_) => t.stale += 1,
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) =>
                            {
                                t.lost += 1;
                                break;
                            }
                            Err(e) => {
                                // ICMP port unreachable and the like: nobody listens.
                                t.errors.count(&e);
                                t.lost += 1;
                                std::thread::sleep(Duration::from_millis(1));
                                break;
                            }
                        }
                    }
                }
                Ok(t)
            })
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        match w.join() {
            Ok(Ok(t)) => {
                all.lat.extend(t.lat);
                all.sent += t.sent;
                all.lost += t.lost;
                all.stale += t.stale;
                all.errors.add(&t.errors);
            }
            Ok(Err(e)) => {
                eprintln!("udp worker: {e}");
                all.errors.count(&e);
            }
            Err(_) => all.errors.other += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let loss = if all.sent == 0 {
        1.0
    } else {
        all.lost as f64 / all.sent as f64
    };
    println!(
        "mode=udp conc={} replies={} sent={} lost={} loss={loss:.4} stale={} secs={elapsed:.3} rate={:.1}{}{}",
        o.conc,
        all.lat.len(),
        all.sent,
        all.lost,
        all.stale,
        all.lat.len() as f64 / elapsed,
        all.errors.fields(),
        percentiles(&mut all.lat)
    );
}
