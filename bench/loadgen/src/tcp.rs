//! `tcp`: connect → send one line → read the echo → close, N workers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::stats::{percentiles, Errors};
use crate::Opts;

const LINE: &[u8] = b"ping\n";

pub fn run(o: &Opts) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(o.secs);
    // Requests started across all workers, against --max.
    let started = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..o.conc)
        .map(|_| {
            let (addr, timeout, max, started) = (o.addr, o.timeout, o.max, Arc::clone(&started));
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = Errors::default();
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < max {
                    let t = Instant::now();
                    match one(addr, timeout) {
                        Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                        Err(e) => {
                            errors.count(&e);
                            // A refusing server answers at once: don't spin.
                            if e.kind() == io::ErrorKind::ConnectionRefused {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = Errors::default();
    for w in workers {
        match w.join() {
            Ok((l, e)) => {
                lat.extend(l);
                errors.add(&e);
            }
            Err(_) => errors.other += 1,
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "mode=tcp conc={} conns={} secs={elapsed:.3} rate={:.1}{}{}",
        o.conc,
        lat.len(),
        lat.len() as f64 / elapsed,
        errors.fields(),
        percentiles(&mut lat)
    );
}

/// One connection. Errors of the reply itself come back as InvalidData.
fn one(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(LINE)?;
    let mut buf = [0u8; 16];
    let mut n = 0;
    while n < LINE.len() {
        match s.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    if &buf[..n] != LINE {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad reply"));
    }
    Ok(())
}
